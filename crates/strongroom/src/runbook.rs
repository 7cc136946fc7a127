//! The emergency runbook: this deployment's recovery procedure as Markdown, for reading on
//! paper during an outage (`strongroom runbook`).
//!
//! Owns what the runbook says and in which order: the first five minutes, the environment
//! to set (names, never values), per source the exact restore commands (side copy first,
//! then in place; point in time where the repository can serve it), how to check the result,
//! the newest snapshots, objectives and the last drill's figures, how to restore from each
//! `[[copies]]` repository with the primary gone, whom to call, and where the backups are. [`render`] is pure (its clock is [`Inputs::now`]); [`gather`] is the
//! thin part that reads the repository. Must not print, run commands or change the
//! repository, and must never write a secret: passwords are stripped from every URL, the
//! environment is named without values, `password_command` is not quoted, and hooks are shown
//! through [`redact_command`].

/// Appends one line to a `String` (formatting into a `String` cannot fail).
macro_rules! line {
    ($md:expr) => { $md.push('\n') };
    ($md:expr, $($arg:tt)*) => {{ let _ = writeln!($md, $($arg)*); }};
}

mod copies;
mod gather;
mod postgres;
mod sections;
mod steps;
#[cfg(test)]
mod tests;

pub use gather::{Context, gather};

use crate::config::{Config, SourceConfig};
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::{BackupKind, Snapshot};
use crate::source::{Location, SourceMatch, parse_location};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which timeline of a cluster's archive the point-in-time window follows, and the forks
/// a restore does not follow unless asked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimelineFacts {
    /// The source's timeline.
    pub source: u32,
    /// It, as people read it, with how it is known.
    pub described: String,
    /// The forks: id, and as people read it (where it branched).
    pub forks: Vec<(u32, String)>,
}

/// Everything a runbook is written from.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The configuration in force.
    pub config: Config,
    /// The config file it was read from, if any (absolute).
    pub config_path: Option<PathBuf>,
    /// The repository URL as given (credentials are stripped when rendered).
    pub repository: String,
    /// Every readable snapshot, oldest first.
    pub snapshots: Vec<Snapshot>,
    /// Journal records of drills (`job == "drill"`), oldest first.
    pub drills: Vec<JournalRecord>,
    /// Per PostgreSQL cluster (system identifier): when the newest WAL segment a recovery
    /// along the source's timeline reaches was stored.
    pub wal_newest: BTreeMap<String, jiff::Timestamp>,
    /// Per PostgreSQL cluster: the source's timeline and the forks beside it.
    pub wal_timelines: BTreeMap<String, TimelineFacts>,
    /// Per SQLite source with continuous capture (by the name its snapshots carry): the
    /// recovery point its captured commits reach, and what it was measured from.
    pub captured: BTreeMap<String, (jiff::Timestamp, String)>,
    /// Only this source (a config name or URL), when given.
    pub only_source: Option<String>,
    /// The time the runbook is written at.
    pub now: jiff::Timestamp,
    /// The program that restores, as the page names it (`/usr/local/bin/strongroom 0.1.0`).
    pub program: String,
    /// What could not be read, said at the top of the page (damaged manifests, an
    /// unreadable journal or WAL listing): the rest is still written.
    pub notes: Vec<String>,
}

/// One source the runbook covers: configured, or met only in snapshots.
pub(crate) struct Entry<'a> {
    /// The config name, or the source as snapshots recorded it.
    pub name: String,
    /// Where its database is, when known.
    pub location: Option<Location>,
    /// Its `[sources.NAME]` table, when configured.
    pub config: Option<&'a SourceConfig>,
    /// Its snapshots, oldest first.
    pub snaps: Vec<&'a Snapshot>,
    /// Its drill records, oldest first.
    pub drills: Vec<&'a JournalRecord>,
}

impl Entry<'_> {
    /// The newest snapshot of `kind`.
    pub fn newest(&self, kind: &BackupKind) -> Option<&Snapshot> {
        self.snaps.iter().rev().copied().find(|s| &s.kind == kind)
    }
}

/// The sources a runbook covers, configured ones first; an error when `only` names none.
pub(crate) fn entries(inputs: &Inputs) -> crate::Result<Vec<Entry<'_>>> {
    let cfg = &inputs.config;
    let mut taken = vec![false; inputs.snapshots.len()];
    let mut out = Vec::new();
    let collect = |m: &SourceMatch, taken: &mut [bool]| {
        let mut snaps = Vec::new();
        for (i, s) in inputs.snapshots.iter().enumerate() {
            if !taken[i] && m.matches(&s.source) {
                taken[i] = true;
                snaps.push(s);
            }
        }
        let drills = inputs
            .drills
            .iter()
            .filter(|r| r.job == "drill" && r.source.as_deref().is_some_and(|s| m.matches(s)))
            .collect::<Vec<_>>();
        (snaps, drills)
    };
    for (name, sc) in &cfg.sources {
        let (snaps, drills) = collect(&cfg.source_match(name), &mut taken);
        out.push(Entry {
            name: name.clone(),
            location: parse_location(&sc.url),
            config: Some(sc),
            snaps,
            drills,
        });
    }
    let mut others: Vec<String> = inputs
        .snapshots
        .iter()
        .enumerate()
        .filter(|(i, _)| !taken[*i])
        .map(|(_, s)| s.source.clone())
        .collect();
    others.sort();
    others.dedup();
    for name in others {
        let (snaps, drills) = collect(&SourceMatch::new(&name), &mut taken);
        let location = snaps
            .iter()
            .rev()
            .find_map(|s| s.source_location.as_deref().and_then(parse_location))
            .or_else(|| parse_location(&name));
        out.push(Entry {
            name,
            location,
            config: None,
            snaps,
            drills,
        });
    }
    if let Some(only) = &inputs.only_source {
        let m = cfg.source_match(only);
        out.retain(|e| m.matches(&e.name));
        if out.is_empty() {
            return Err(crate::Error::NoSnapshot(format!(
                "no source {only:?}: it is neither configured nor recorded in any snapshot"
            )));
        }
    }
    Ok(out)
}

/// The runbook as Markdown.
pub fn render(inputs: &Inputs) -> crate::Result<String> {
    let entries = entries(inputs)?;
    let mut md = String::new();
    sections::header(&mut md, inputs, &entries);
    sections::first_minutes(&mut md, inputs, &entries);
    sections::environment(&mut md, inputs, &entries);
    for e in &entries {
        sections::source(&mut md, inputs, e);
    }
    copies::copies(&mut md, inputs, &entries);
    sections::contacts(&mut md, inputs);
    sections::whereabouts(&mut md, inputs);
    Ok(md)
}

/// A repository URL without credentials: any `user:password@` and query string removed.
pub fn repository_without_credentials(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}{host}{path}")
}

/// A hook's shell command as the page shows it: a password in a PostgreSQL URL, and the
/// value of a `…PASSWORD=` or `password=` word, replaced by `…`.
pub fn redact_command(cmd: &str) -> String {
    cmd.split(' ')
        .map(|word| {
            let bare = word.trim_matches(|c| c == '\'' || c == '"');
            let postgres = bare.starts_with("postgres://") || bare.starts_with("postgresql://");
            if postgres && crate::source::conninfo::has_password(bare) {
                return word.replace(bare, &crate::source::conninfo::redact_url(bare));
            }
            // Any other URL: a password in its user part.
            if let Some((scheme, rest)) = bare.split_once("://") {
                let authority = rest.split(['/', '?']).next().unwrap_or_default();
                if let Some((user, host)) = authority.rsplit_once('@')
                    && let Some((name, _)) = user.split_once(':')
                {
                    let clean = format!("{scheme}://{name}:…@{host}{}", &rest[authority.len()..]);
                    return word.replace(bare, &clean);
                }
            }
            match word.split_once('=') {
                Some((k, v)) if k.to_ascii_lowercase().ends_with("password") && !v.is_empty() => {
                    format!("{k}=…")
                }
                _ => word.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` as one shell word: unchanged when it holds only safe characters, else single-quoted.
pub fn sh_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A whole-unit duration for people: `15 min`, `1 h`, `6 h`, `7 d`, else `1 h 30 min`.
pub fn fmt_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let parts = [(86_400, "d"), (3600, "h"), (60, "min"), (1, "s")];
    let mut left = s;
    let mut out: Vec<String> = Vec::new();
    for (unit, name) in parts {
        if left >= unit {
            out.push(format!("{} {name}", left / unit));
            left %= unit;
        }
        if out.len() == 2 {
            break;
        }
    }
    if out.is_empty() {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        out.join(" ")
    }
}

/// Seconds measured (a drill's figures): `42.3 s` below a minute, else as [`fmt_duration`].
pub fn fmt_seconds(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        fmt_duration(std::time::Duration::from_secs(secs.round() as u64))
    }
}

/// A UTC time for the page: `2026-12-01 22:59:00 UTC`.
pub fn fmt_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// How long before `now` `t` was: `3 h 12 min ago` (or `in the future`).
pub fn fmt_age(t: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let secs = (now - t).total(jiff::Unit::Second).unwrap_or(0.0);
    if secs < 0.0 {
        "in the future (check this host's clock)".into()
    } else if secs < 60.0 {
        "under a minute ago".into()
    } else {
        format!(
            "{} ago",
            fmt_duration(std::time::Duration::from_secs(secs as u64))
        )
    }
}
