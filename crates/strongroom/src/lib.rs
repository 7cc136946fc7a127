//! strongroom: encrypted, deduplicating, verified backups of SQLite and PostgreSQL databases.
//!
//! Every backup becomes a [`repository::snapshot::Snapshot`] in a [`repository::Repository`]
//! that lives on any object store ([`storage`]). Engines ([`engine`]) turn a live database into
//! chunks and back; the [`jobs`] (backup, restore, verify, check, forget, prune, drill, …)
//! are operations over snapshots, each with its journal record. The command-line crate `strongroom-cli` is a thin layer over this library.

pub mod access;
pub mod alert;
pub(crate) mod beneath;
pub mod chunker;
pub mod config;
pub mod copies;
pub mod crypto;
pub mod daemon;
pub mod dashboard;
pub mod device;
pub mod engine;
pub mod error;
pub mod fault;
pub mod hotel;
pub mod id;
pub mod interrupt;
pub mod jobs;
pub mod monitor;
pub mod object_lock;
pub mod pipe;
pub mod private_dir;
pub mod process;
pub mod progress;
pub mod recipient;
pub mod repository;
pub mod retention;
pub mod runbook;
pub mod schedule;
pub mod source;
pub mod state;
pub mod storage;
pub mod trust;

pub use error::{Error, ErrorKind, Result};

/// This machine's host name, for snapshots and journal records.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Parses a duration such as `90s`, `15m`, `26h`, `7d` or `2w` (and `250ms`).
pub fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 26h or 7d"))?;
    let secs = match unit.trim() {
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return Err(format!("{s:?} is not a duration like 90s, 15m, 26h or 7d")),
    };
    Ok(std::time::Duration::from_secs(n * secs))
}

/// Parses a size such as `1MiB`, `500MB`, `2 GiB` or `4096` (bytes).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 1MiB or 500MB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "MB" => 1000_u64.pow(2),
        "GB" => 1000_u64.pow(3),
        "TB" => 1000_u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(format!("{s:?} is not a size like 1MiB or 500MB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a time as the contract spells it: RFC 3339, or `YYYY-MM-DD HH:MM:SS` as UTC.
pub fn parse_time(text: &str) -> std::result::Result<jiff::Timestamp, String> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", text.trim())
        .or_else(|_| jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S%.f", text.trim()))
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC))
        .map(|z| z.timestamp())
        .map_err(|_| {
            format!(
                "{text:?} is not a time like 2026-12-01T22:59:00Z or '2026-12-01 22:59:00' (UTC)"
            )
        })
}

/// Formats a byte count for people (`1.5 MiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A count with its noun, for people: `no snapshots`, `1 snapshot`, `2 snapshots` (the
/// plural adds an `s`: pass nouns that follow that rule).
pub fn counted(n: usize, noun: &str) -> String {
    match n {
        0 => format!("no {noun}s"),
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(counted(0, "pack"), "no packs");
        assert_eq!(counted(1, "pack"), "1 pack");
        assert_eq!(counted(2, "damaged chunk"), "2 damaged chunks");
    }

    #[test]
    fn durations() {
        for (s, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("26h", 93_600),
            ("7d", 604_800),
            ("2w", 1_209_600),
        ] {
            assert_eq!(parse_duration(s).unwrap().as_secs(), secs, "{s}");
        }
        for bad in ["", "m", "15", "1y", "-5m", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        for (s, n) in [
            ("1MiB", 1 << 20),
            ("500MB", 500_000_000),
            ("2 GiB", 2 << 30),
            ("4096", 4096),
        ] {
            assert_eq!(parse_size(s).unwrap(), n, "{s}");
        }
        for bad in ["", "MiB", "1.5MiB", "1PB", "-1MB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
