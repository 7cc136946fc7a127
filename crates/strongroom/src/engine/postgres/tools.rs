//! PostgreSQL's client programs (`pg_dump`, `pg_restore`, `pg_dumpall`): finding one new
//! enough, and running it with bounded, useful error output.
//!
//! Why version matching matters: `pg_dump` refuses servers newer than itself, and
//! `pg_restore` refuses archives written by a newer `pg_dump`. Among the programs found we
//! pick the *oldest* major version that is new enough, so the archive stays readable by as
//! many `pg_restore`s as possible. Must not build SQL or touch repositories.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A client program and its version.
#[derive(Clone, Debug)]
pub struct Tool {
    /// Executable path.
    pub path: PathBuf,
    /// Major version (15 for 15.4; 9 for 9.6 is reported as 9).
    pub major: u32,
    /// Full version text, e.g. `15.18`.
    pub version: String,
}

/// Directories searched, in order: `STRONGROOM_PG_BINDIR` alone when set; else
/// `/usr/lib/postgresql/*/bin` (Debian), `/usr/pgsql-*/bin` (RHEL), `pg_config --bindir`, PATH.
fn search_dirs() -> Vec<PathBuf> {
    if let Some(d) = std::env::var_os("STRONGROOM_PG_BINDIR") {
        return std::env::split_paths(&d).collect();
    }
    let mut dirs = Vec::new();
    for (root, pattern) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(pattern) && (!pattern.is_empty() || name.parse::<u32>().is_ok())
                {
                    dirs.push(e.path().join("bin"));
                }
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

/// Parses `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into (major, "15.18").
pub fn parse_version(text: &str) -> Option<(u32, String)> {
    let v = text
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let v: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let v = v.trim_end_matches('.');
    let major = v.split('.').next()?.parse().ok()?;
    Some((major, v.to_string()))
}

fn probe(path: &Path) -> Option<Tool> {
    let mut cmd = Command::new(path);
    // Asked only for its version: it needs no secret of ours.
    crate::process::withhold_store_secrets(&mut cmd).env_remove("PGPASSWORD");
    let out = cmd.arg("--version").stdin(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let (major, version) = parse_version(&String::from_utf8_lossy(&out.stdout))?;
    Some(Tool {
        path: path.to_path_buf(),
        major,
        version,
    })
}

/// Every copy of `program` found, with its version.
pub fn all(program: &str) -> Vec<Tool> {
    let mut seen = std::collections::HashSet::new();
    search_dirs()
        .into_iter()
        .map(|d| d.join(program))
        .filter(|p| p.is_file())
        .filter(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())))
        .filter_map(|p| probe(&p))
        .collect()
}

/// The oldest `program` whose major version is at least `min_major`, preferring `prefer`'s
/// directory (so `pg_dumpall` comes from beside the chosen `pg_dump`).
pub fn find(program: &str, min_major: u32, need: &str) -> Result<Tool> {
    let found = all(program);
    if let Some(t) = found
        .iter()
        .filter(|t| t.major >= min_major)
        .min_by_key(|t| t.major)
    {
        return Ok(t.clone());
    }
    let hint = format!(
        "install them (Debian: apt install postgresql-client-{min_major}) or point \
         STRONGROOM_PG_BINDIR at their directory"
    );
    Err(Error::Source(match found.iter().max_by_key(|t| t.major) {
        None => format!(
            "no {program} found (searched STRONGROOM_PG_BINDIR, or /usr/lib/postgresql/*/bin, \
             pg_config --bindir and PATH); {need}, so {program} {min_major} or newer is needed; {hint}"
        ),
        Some(t) => format!(
            "the newest {program} found is {} ({}), but {need}, so {program} {min_major} or newer is needed; {hint}",
            t.version,
            t.path.display()
        ),
    }))
}

/// `program` from the same directory as `beside`, or any new-enough one.
pub fn sibling(beside: &Tool, program: &str) -> Result<Tool> {
    if let Some(dir) = beside.path.parent() {
        if let Some(t) = probe(&dir.join(program)) {
            return Ok(t);
        }
    }
    find(program, beside.major, "it must match the chosen pg_dump")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some((15, "15.18".into()))
        );
        assert_eq!(
            parse_version("pg_restore (PostgreSQL) 9.6.24"),
            Some((9, "9.6.24".into()))
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 17beta1"),
            Some((17, "17".into()))
        );
        assert_eq!(parse_version("nonsense"), None);
    }
}
