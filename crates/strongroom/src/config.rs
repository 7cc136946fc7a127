//! The one typed configuration (`strongroom.toml`), validated when it is loaded.
//!
//! Owns parsing and validating the file and resolving a SOURCE argument to a source. A file's
//! problems are reported all at once, each naming its key and line ([`problems`]). Must not open repositories or databases, nor read a config
//! file but through [`crate::trust`]: the file names commands strongroom runs.

use crate::error::{Error, Result};
use crate::retention::KeepRules;
use crate::source::{
    DEFAULT_LOCK_TIMEOUT, Location, RowCounts, Source, SourceMatch, SqlCheck, identity_of,
    parse_location,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod alerts;
mod objectives;
mod problems;
#[cfg(test)]
mod reference;
mod replicate;
mod schedule;
pub use objectives::{Effective, Objectives, SourceObjectives};
use problems::{KeyPath, Problems};
pub use replicate::ReplicateSettings;
pub use schedule::{
    AFTER_BACKUP, DEFAULT_SCHEDULES, DaemonSettings, DashboardUser, OFF, ScheduleConfig,
};

pub use alerts::AlertConfig;

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Repository URL (a path, `file://`, `s3://`, `azblob://`, `gs://`).
    pub repository: Option<String>,
    /// A command whose standard output (first line) is the repository password.
    pub password_command: Option<String>,
    /// A file whose first line is the repository password.
    pub password_file: Option<PathBuf>,
    /// Named sources.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Retention policy (`[retention]`; the strategy's when the table is absent).
    #[serde(default)]
    pub retention: KeepRules,
    /// How prune reclaims space.
    #[serde(default)]
    pub prune: PruneSettings,
    /// Recovery objectives.
    #[serde(default)]
    pub objectives: Objectives,
    /// Verification settings.
    #[serde(default)]
    pub verify: VerifySettings,
    /// Where alerts go (`[[alerts]]`): a webhook or a command each.
    #[serde(default)]
    pub alerts: Vec<AlertConfig>,
    /// Who to call (`[[contacts]]`), for the runbook and drill reports.
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// Other repositories `strongroom copy` keeps in step with this one (`[[copies]]`).
    #[serde(default)]
    pub copies: Vec<CopyConfig>,
    /// How `strongroom daemon` runs (`[daemon]`).
    #[serde(default)]
    pub daemon: DaemonSettings,
    /// `[replicate]`: continuous capture of SQLite sources.
    #[serde(default)]
    pub replicate: ReplicateSettings,
}

/// One `[[copies]]` table: a repository made with `init --copy-of` that `strongroom copy`
/// (without `--to`) copies snapshots and WAL into.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CopyConfig {
    /// What `status`, `metrics` and the runbook call the copy (`offsite`); the repository
    /// URL without credentials when unset ([`CopyConfig::name`]).
    pub name: Option<String>,
    /// The copy's repository URL.
    pub repository: String,
    /// A file whose first line is the copy's password (or key file).
    pub password_file: Option<PathBuf>,
    /// A command whose first line of output is the copy's password.
    pub password_command: Option<String>,
    /// The copy's own retention (`[copies.retention]`), applied by `forget` run on the copy;
    /// the primary's `[retention]` when absent.
    pub retention: Option<KeepRules>,
}

impl CopyConfig {
    /// The copy's name: `name` when set, else its repository URL without credentials
    /// (stable, and unique among copies as long as the repositories are).
    pub fn name(&self) -> String {
        match self.name.as_deref().map(str::trim) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => self.repository_shown(),
        }
    }

    /// The repository URL as messages and metrics show it: without credentials or a
    /// query string, without a trailing slash.
    pub fn repository_shown(&self) -> String {
        let url = crate::alert::without_credentials(self.repository.trim());
        match url.trim_end_matches('/') {
            "" => url,
            trimmed => trimmed.to_string(),
        }
    }
}

/// One `[[contacts]]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// What they are called on for, e.g. "Database administrator".
    pub role: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
}

/// One `[sources.NAME]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `sqlite:PATH` or `postgres://…`.
    pub url: String,
    /// A query whose single value is the schema version; wins over migration-table detection.
    pub schema_version_query: Option<String>,
    /// Checks run after every test restore.
    #[serde(default)]
    pub checks: Vec<SqlCheck>,
    /// Shell command run before a restore replaces the database (e.g. stop the application).
    pub before_restore: Option<String>,
    /// Shell command run after a restore replaced the database (e.g. start the application);
    /// also runs when the restore failed after `before_restore` ran.
    pub after_restore: Option<String>,
    /// PostgreSQL: `exact` (the default: `count(*)` of every table, in the dump's snapshot)
    /// or `estimate` (the planner's statistics: instant on huge databases, not compared at
    /// restore).
    #[serde(default)]
    pub row_counts: RowCounts,
    /// SQLite: how long a backup waits and retries while writers hold the database locked
    /// (e.g. `"5m"`, the default) before it gives up.
    pub lock_timeout: Option<String>,
    /// Objectives of this source, overriding `[objectives]` key by key.
    #[serde(default)]
    pub objectives: Option<SourceObjectives>,
    /// SQLite in rollback-journal mode: the directory where a backup spools the pages it read,
    /// so writers can go on while they are uploaded (default: the system's temporary
    /// directory). Needs room for the whole database.
    pub spool_dir: Option<PathBuf>,
    /// When the daemon runs each job for this source (`[sources.NAME.schedule]`); the
    /// strategy's schedules when absent.
    pub schedule: Option<ScheduleConfig>,
    /// Continuous capture in the daemon (SQLite WAL frames, PostgreSQL WAL streaming), the
    /// contract's key. Not built yet: the daemon says so at start and runs the schedule.
    #[serde(default)]
    pub continuous: bool,
    /// PostgreSQL: the physical replication slot `wal receive` streams through (default
    /// `strongroom`); `status` checks it.
    pub slot: Option<String>,
    /// PostgreSQL: how much WAL the slot may hold back on the server before `status` warns
    /// (a size such as `"1GiB"`, the default).
    pub slot_max_retained: Option<String>,
}

impl SourceConfig {
    /// The replication slot `wal receive` uses.
    pub fn slot_name(&self) -> &str {
        self.slot
            .as_deref()
            .unwrap_or(crate::engine::postgres::receive::DEFAULT_SLOT)
    }

    /// How much WAL the slot may retain before `status` warns, in bytes.
    pub fn slot_max_retained_bytes(&self) -> u64 {
        self.slot_max_retained
            .as_deref()
            .and_then(|s| crate::parse_size(s).ok())
            .unwrap_or(1 << 30)
    }
}

/// `[prune]`: how prune reclaims space.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PruneSettings {
    /// Packs whose needed share of bytes is below this fraction are repacked (default 0.5).
    pub repack_below: f64,
    /// How much of old segments one prune's repack reads at most, a size or a share of the
    /// repository's packs, the packs that free most per byte read first (default `5%`, at
    /// least 64 MiB); the rest waits for the next prune.
    pub max_repack: String,
    /// How long a prune waits for older jobs before leaving its deletion to the next prune
    /// (default `10m`).
    pub max_wait: String,
}

impl Default for PruneSettings {
    fn default() -> Self {
        PruneSettings {
            repack_below: 0.5,
            max_repack: "5%".into(),
            max_wait: "10m".into(),
        }
    }
}

/// `[verify]`: where test restores happen.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySettings {
    /// Directory for test-restored files (default: the system's temporary directory).
    pub scratch_dir: Option<PathBuf>,
    /// PostgreSQL server for test restores of logical snapshots (default: the source's own
    /// server), e.g. `postgres://verify@scratch-db:5432/postgres`.
    pub scratch_postgres: Option<String>,
}

impl Config {
    /// Parses configuration text; `origin` names the file in errors. Every problem found is
    /// reported at once, one line each naming its key and line (a TOML syntax error stops
    /// the reading, so it is reported alone).
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let mut problems = Problems::parse(text, origin)?;
        let cfg: Option<Config> = problems.deserialize();
        if let Some(cfg) = &cfg {
            cfg.validate(&mut problems);
        }
        problems.finish(cfg)
    }

    /// Checks what the types alone do not: URLs, durations, sizes, alert settings.
    fn validate(&self, problems: &mut Problems<'_>) {
        let duration = |problems: &mut Problems<'_>, path: KeyPath, v: &str| {
            if let Err(e) = crate::parse_duration(v) {
                problems.at(path, e);
            }
        };
        for (name, s) in &self.sources {
            let at = KeyPath::of(&["sources", name]);
            if parse_location(&s.url).is_none() {
                problems.at(
                    at.clone().key("url"),
                    format!("{:?} is neither sqlite:PATH nor postgres://…", s.url),
                );
            }
            if let Some(t) = &s.lock_timeout {
                duration(problems, at.clone().key("lock_timeout"), t);
            }
            if let Some(slot) = &s.slot
                && let Err(e) = crate::engine::postgres::receive::check_slot_name(slot)
            {
                problems.at(at.clone().key("slot"), e.to_string());
            }
            if let Some(v) = &s.slot_max_retained
                && let Err(e) = crate::parse_size(v)
            {
                problems.at(at.clone().key("slot_max_retained"), e);
            }
            for (i, c) in s.checks.iter().enumerate() {
                if c.sql.trim().is_empty() {
                    problems.at(
                        at.clone().key("checks").index(i).key("sql"),
                        format!("check {:?} has an empty sql", c.name),
                    );
                }
            }
        }
        alerts::validate(self, problems);
        objectives::validate(self, problems);
        schedule::validate(self, problems);
        replicate::validate(self, problems);
        duration(
            problems,
            KeyPath::of(&["prune", "max_wait"]),
            &self.prune.max_wait,
        );
        let keep_durations = |problems: &mut Problems<'_>, at: KeyPath, rules: &KeepRules| {
            for (key, v) in [
                ("keep_within", rules.keep_within.as_ref()),
                ("pitr_window", rules.pitr_window.as_ref()),
            ] {
                if let Some(v) = v {
                    duration(problems, at.clone().key(key), v);
                }
            }
            for (tag, v) in &rules.tag_within {
                duration(problems, at.clone().key("tag_within").key(tag), v);
            }
        };
        keep_durations(problems, KeyPath::of(&["retention"]), &self.retention);
        for (i, c) in self.copies.iter().enumerate() {
            let at = KeyPath::of(&["copies"]).index(i);
            if c.repository.trim().is_empty() {
                problems.at(
                    at.clone().key("repository"),
                    "is empty: give the copy's repository URL",
                );
            }
            if c.password_file.is_some() && c.password_command.is_some() {
                problems.at(
                    at.clone(),
                    "needs at most one of password_file and password_command",
                );
            }
            if let Some(r) = &c.retention {
                keep_durations(problems, at.clone().key("retention"), r);
            }
            if c.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                problems.at(
                    at.clone().key("name"),
                    "is empty: give the copy a name (`offsite`), or leave it out",
                );
            } else if self.copies[..i].iter().any(|o| o.name() == c.name()) {
                problems.at(
                    at.clone().key("name"),
                    format!(
                        "{:?} names another [[copies]] entry too: give each copy a name of its own",
                        c.name()
                    ),
                );
            }
        }
        if let Err(e) = crate::jobs::prune::RepackBudget::parse(&self.prune.max_repack) {
            problems.at(KeyPath::of(&["prune", "max_repack"]), e);
        }
        if !(0.0..=1.0).contains(&self.prune.repack_below) {
            problems.at(
                KeyPath::of(&["prune", "repack_below"]),
                format!(
                    "{} is not a fraction between 0 and 1 (e.g. 0.5)",
                    self.prune.repack_below
                ),
            );
        }
    }

    /// Reads and parses a configuration file, refusing one another user controls
    /// ([`crate::trust::read_file`]): it names commands strongroom runs.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::trust::read_file(path, crate::error::Obeyed::ConfigFile)?;
        Self::parse(&text, path)
    }

    /// Resolves a SOURCE argument: a configured name, a URL, or (when `None`) the only
    /// configured source.
    pub fn source(&self, arg: Option<&str>) -> Result<Source> {
        let from_config = |name: &str, s: &SourceConfig| Source {
            name: name.to_string(),
            location: parse_location(&s.url).expect("validated at load"),
            schema_version_query: s.schema_version_query.clone(),
            checks: s.checks.clone(),
            before_restore: s.before_restore.clone(),
            after_restore: s.after_restore.clone(),
            row_counts: s.row_counts,
            config_name: Some(name.to_string()),
            lock_timeout: s
                .lock_timeout
                .as_deref()
                .map(|t| crate::parse_duration(t).expect("validated at load"))
                .unwrap_or(DEFAULT_LOCK_TIMEOUT),
            spool_dir: s.spool_dir.clone(),
        };
        match arg {
            None => match self.sources.len() {
                1 => {
                    let (n, s) = self.sources.iter().next().expect("one source");
                    Ok(from_config(n, s))
                }
                0 => Err(Error::Config(
                    "no SOURCE given and no source configured; pass sqlite:PATH or postgres://… or add [sources.NAME] to the config".into(),
                )),
                _ => Err(Error::Config(format!(
                    "no SOURCE given and several are configured ({}); name one",
                    self.sources.keys().cloned().collect::<Vec<_>>().join(", ")
                ))),
            },
            Some(a) => {
                if let Some(s) = self.sources.get(a) {
                    return Ok(from_config(a, s));
                }
                let location = parse_location(a).ok_or_else(|| {
                    Error::Config(format!(
                        "unknown source {a:?}: neither a configured source name{} nor sqlite:PATH or postgres://…",
                        if self.sources.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", self.sources.keys().cloned().collect::<Vec<_>>().join(", "))
                        }
                    ))
                })?;
                // A URL that a configured source also names is that source: one database,
                // one identity, whatever spelling was typed; its checks and settings, and its
                // connection settings too (a recorded name never holds the password the
                // configured URL may hold), unless the URL given has a password of its own.
                let identity = location.identity();
                if let Some((name, s)) = self
                    .sources
                    .iter()
                    .find(|(_, s)| identity_of(&s.url).as_deref() == Some(identity.as_str()))
                {
                    let has_password = matches!(&location,
                        Location::Postgres(p) if crate::source::conninfo::has_password(p));
                    let configured = from_config(name, s);
                    return Ok(Source {
                        location: if has_password {
                            location
                        } else {
                            configured.location.clone()
                        },
                        ..configured
                    });
                }
                // The identity never carries a password (docs/ARCHITECTURE.md, "Invariants":
                // secrets never appear).
                Ok(Source::new(identity, location))
            }
        }
    }

    /// The source a `wal push` archives for, when the config says: the only configured
    /// PostgreSQL source (archive_command names no source; with several, none is guessed).
    pub fn wal_source(&self) -> Option<String> {
        let mut pg = self
            .sources
            .iter()
            .filter(|(_, s)| matches!(parse_location(&s.url), Some(Location::Postgres(_))));
        match (pg.next(), pg.next()) {
            (Some((name, _)), None) => Some(name.clone()),
            _ => None,
        }
    }

    /// The configured source whose database is at `location` (whoever connects to it).
    pub fn source_at(&self, location: &Location) -> Option<Source> {
        let wanted = location.database();
        let (name, _) = self
            .sources
            .iter()
            .find(|(_, s)| parse_location(&s.url).is_some_and(|l| l.database() == wanted))?;
        self.source(Some(name)).ok()
    }

    /// Every spelling of the source a `--source` value names: the value, its identity when
    /// it is a URL, and the configured source's name and URL when it names one.
    pub fn source_match(&self, typed: &str) -> SourceMatch {
        let mut m = SourceMatch::new(typed);
        let identity = identity_of(typed);
        for (name, s) in &self.sources {
            if name == typed || (identity.is_some() && identity_of(&s.url) == identity) {
                m.add(name);
                m.add(&s.url);
            }
        }
        m
    }

    /// The configured name of a source recorded by URL: a snapshot or job recorded before
    /// the config named its database is shown under that name, so one database is one
    /// source in every listing. `None` when `recorded` is not a URL a configured source has.
    pub fn configured_name(&self, recorded: &str) -> Option<&str> {
        let identity = identity_of(recorded)?;
        self.sources
            .iter()
            .find(|(_, s)| identity_of(&s.url).as_deref() == Some(identity.as_str()))
            .map(|(name, _)| name.as_str())
    }

    /// The `[[copies]]` entry whose repository is at `url` (spelled as the config spells it,
    /// or the same path written another way), if one is.
    pub fn copy_at(&self, url: &str) -> Option<&CopyConfig> {
        let wanted = repository_identity(url);
        self.copies
            .iter()
            .find(|c| repository_identity(&c.repository) == wanted)
    }

    /// The keep rules for the repository at `url`: a `[[copies]]` entry's own
    /// `[copies.retention]` when `url` is that copy's and it has one, else `[retention]`
    /// (the primary's rules serve a copy that sets none).
    pub fn retention_for(&self, url: &str) -> &KeepRules {
        self.copy_at(url)
            .and_then(|c| c.retention.as_ref())
            .unwrap_or(&self.retention)
    }

    /// The source a snapshot's recorded source name refers to, when it still resolves.
    pub fn source_for(&self, recorded: &str) -> Option<Source> {
        self.source(Some(recorded)).ok()
    }

    /// Where the database a snapshot was taken of is now: its configured source's location
    /// (the config may have moved it), else the recorded name when it is a URL, else the
    /// location recorded beside a config name.
    pub fn location_of(&self, recorded: &str, location: Option<&str>) -> Option<Location> {
        self.source_for(recorded)
            .map(|s| s.location)
            .or_else(|| parse_location(recorded))
            .or_else(|| location.and_then(parse_location))
    }
}

/// Whether two URLs name the same repository (see [`repository_identity`]).
pub fn same_repository(a: &str, b: &str) -> bool {
    repository_identity(a) == repository_identity(b)
}

/// One spelling of a repository URL, for telling whether two name the same repository:
/// object-store URLs without a trailing slash, local paths (plain or `file://`) made
/// absolute without their trailing slash.
fn repository_identity(url: &str) -> String {
    let url = url.trim();
    if url.contains("://") && !url.starts_with("file://") {
        return url.trim_end_matches('/').to_string();
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    let abs = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
    let mut clean = PathBuf::new();
    for part in abs.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    clean.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Location;

    #[test]
    fn copies_parse_and_a_copy_has_its_own_retention() {
        let text = r#"
repository = "/srv/backups"
[retention]
keep_daily = 7
[[copies]]
repository = "s3://offsite/hotel/"
password_file = "/etc/strongroom/offsite"
[copies.retention]
keep_daily = 90
[[copies]]
repository = "/mnt/usb/hotel"
password_command = "pass show usb"
"#;
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        assert_eq!(c.copies.len(), 2);
        assert_eq!(c.retention_for("s3://offsite/hotel").keep_daily, Some(90));
        assert_eq!(c.retention_for("/mnt/usb/./hotel/").keep_daily, Some(7));
        assert_eq!(c.retention_for("file:///mnt/usb/hotel").keep_daily, Some(7));
        assert_eq!(c.retention_for("/srv/backups").keep_daily, Some(7));
        assert!(c.copy_at("s3://offsite/other").is_none());
        assert_eq!(
            c.copy_at("/mnt/usb/hotel")
                .unwrap()
                .password_command
                .as_deref(),
            Some("pass show usb")
        );
        let both = "[[copies]]\nrepository = \"/x\"\npassword_file = \"/a\"\npassword_command = \"b\"\n[copies.retention]\nkeep_within = \"soon\"\n";
        let e = Config::parse(both, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("copies[0]: needs at most one"), "{e}");
        assert!(e.contains("copies[0].retention.keep_within"), "{e}");
        let e = Config::parse("[[copies]]\npassword_file = \"/a\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("repository"), "{e}");
    }

    #[test]
    fn a_copy_is_named_by_its_name_else_its_url_without_credentials_and_names_are_unique() {
        let text = r#"
[[copies]]
name = "offsite"
repository = "s3://offsite/hotel/"
[[copies]]
repository = "s3://key:secret@other/hotel/?sas=token"
[[copies]]
repository = "/mnt/usb/hotel"
"#;
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        let names: Vec<String> = c.copies.iter().map(CopyConfig::name).collect();
        assert_eq!(names, ["offsite", "s3://other/hotel", "/mnt/usb/hotel"]);
        let twice = "[[copies]]\nname = \"a\"\nrepository = \"/x\"\n[[copies]]\nname = \"a\"\nrepository = \"/y\"\n[[copies]]\nname = \" \"\nrepository = \"/z\"\n";
        let e = Config::parse(twice, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("copies[1].name"), "{e}");
        assert!(e.contains("copies[2].name: is empty"), "{e}");
    }

    const EXAMPLE: &str = r#"
repository = "/srv/backups"
[sources.hotel]
url = "sqlite:hotel.db"
[[sources.hotel.checks]]
name = "bookings exist"
sql = "SELECT count(*) > 0 FROM bookings"
[sources.prod]
url = "postgres://app@db:5432/hotel"
"#;

    #[test]
    fn parses_and_resolves_sources() {
        let c = Config::parse(EXAMPLE, Path::new("s.toml")).unwrap();
        assert_eq!(c.retention.keep_daily, Some(30));
        let s = c.source(Some("hotel")).unwrap();
        assert_eq!(s.location, Location::Sqlite("hotel.db".into()));
        assert_eq!(s.checks.len(), 1);
        let u = c.source(Some("sqlite:./hotel.db")).unwrap();
        assert_eq!(u.name, "hotel", "a configured source's URL is that source");
        assert_eq!(u.checks.len(), 1);
        let other = c.source(Some("sqlite:other.db")).unwrap();
        assert_eq!(other.name, identity_of("sqlite:other.db").unwrap());
        let pg = c.source(Some("postgresql://app:pw@db/hotel")).unwrap();
        assert_eq!(pg.name, "prod");
        let m = c.source_match("hotel");
        assert!(m.matches("hotel") && m.matches(&identity_of("sqlite:hotel.db").unwrap()));
        assert!(c.source_match("postgres://app@db/hotel").matches("prod"));
        assert!(!c.source_match("prod").matches("hotel"));
        assert!(c.source(None).unwrap_err().to_string().contains("several"));
        assert!(
            c.source(Some("nope"))
                .unwrap_err()
                .to_string()
                .contains("hotel, prod")
        );
        assert!(matches!(
            c.source(Some("postgresql://x/y")).unwrap().location,
            Location::Postgres(_)
        ));
    }

    #[test]
    fn the_contract_keys_parse() {
        let text = r#"
repository = "/srv/backups"
[objectives]
rpo = "15m"
rto = "1h"
[sources.hotel]
url = "sqlite:/abs/hotel.db"
continuous = true
before_restore = "systemctl stop hotel-api"
after_restore = "systemctl start hotel-api"
[sources.hotel.schedule]
timezone = "UTC"
full = "0 2 * * *"
verify = "0 4 * * 0"
drill = "off"
[daemon]
heartbeat_url = "http://127.0.0.1:9/ping"
[retention]
keep_daily = 30
keep_weekly = 13
keep_monthly = 12
pitr_window = "7d"
[[alerts]]
webhook = "http://127.0.0.1:9/hook"
[[alerts]]
command = "cat >> /tmp/alerts"
[[contacts]]
role = "Database administrator"
name = "Ana"
phone = "+33 1 23 45 67 89"
email = "ana@example.com"
"#;
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        assert_eq!(c.alerts.len(), 2);
        assert_eq!(
            c.contacts[0].role.as_deref(),
            Some("Database administrator")
        );
        assert_eq!(c.retention.pitr_window.as_deref(), Some("7d"));
        let sched = c.sources["hotel"].schedule.as_ref().unwrap();
        assert_eq!(
            (sched.line("verify"), sched.line("drill")),
            ("0 4 * * 0", "off")
        );
        assert!(c.daemon.heartbeat_url.is_some());
        let both = "[[alerts]]\nwebhook = \"http://x\"\ncommand = \"y\"\n";
        let e = Config::parse(both, Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
        let bad = "[retention]\npitr_window = \"a week\"\n";
        let e = Config::parse(bad, Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("retention.pitr_window"), "{e}");
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../strongroom.example.toml");
        let c = Config::parse(text, Path::new("strongroom.example.toml")).unwrap();
        let prod = c.source(Some("prod")).unwrap();
        assert!(matches!(prod.location, Location::Postgres(_)));
        assert!(prod.before_restore.is_some() && prod.after_restore.is_some());
        assert_eq!(prod.row_counts, RowCounts::Exact);
        // A password in a URL given on the command line never becomes the recorded name.
        let s = c
            .source(Some("postgres://app:hunter2@elsewhere/hotel"))
            .unwrap();
        assert_eq!(s.name, "postgres://app@elsewhere:5432/hotel");
    }

    #[test]
    fn a_recorded_url_finds_its_configured_source_and_settings() {
        let text = r#"
[sources.prod]
url = "postgres://app:s3cret@db:5432/hotel"
[sources.hotel]
url = "sqlite:hotel.db"
lock_timeout = "90s"
spool_dir = "/var/tmp"
"#;
        let c = Config::parse(text, Path::new("c.toml")).unwrap();
        // Old snapshots record the URL without its password: the configured source it names
        // supplies it, as it did for the backup (and is the source, by name).
        let s = c.source(Some("postgres://app@db:5432/hotel")).unwrap();
        assert_eq!(s.name, "prod");
        assert_eq!(
            s.location,
            Location::Postgres("postgres://app:s3cret@db:5432/hotel".into())
        );
        assert_eq!(s.config_name.as_deref(), Some("prod"));
        // A password given with the URL wins.
        let s = c
            .source(Some("postgres://app:other@db:5432/hotel"))
            .unwrap();
        assert_eq!(
            s.location,
            Location::Postgres("postgres://app:other@db:5432/hotel".into())
        );
        assert_eq!(s.name, "prod");
        let s = c.source(Some("postgres://app@elsewhere/hotel")).unwrap();
        assert_eq!(s.config_name, None);
        let h = c.source(Some("sqlite:hotel.db")).unwrap();
        assert_eq!(h.lock_timeout, std::time::Duration::from_secs(90));
        assert_eq!(h.spool_dir.as_deref(), Some(Path::new("/var/tmp")));
        assert_eq!(
            c.source(Some("prod")).unwrap().lock_timeout,
            DEFAULT_LOCK_TIMEOUT
        );
        let bad = "[sources.a]\nurl = \"sqlite:a.db\"\nlock_timeout = \"soon\"\n";
        let e = Config::parse(bad, Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("sources.a.lock_timeout"), "{e}");
    }

    #[test]
    fn errors_point_at_the_line() {
        let e = Config::parse(
            "repository = \"x\"\n[sources.a]\nurl = 5\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("c.toml:3:"), "{e}");
        let e = Config::parse("repositry = \"x\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml:1:") && e.contains("repositry"), "{e}");
        let e = Config::parse("[sources.a]\nurl = \"mysql://x\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sources.a.url"), "{e}");
        let e = Config::parse(
            "[objectives]\nrpo = \"soon\"\nrto = \"1h\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("objectives.rpo"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_in_one_run() {
        let text = r#"repository = "/srv/backups"
retention_days = 30
[sources.prod]
url = "mysql://db/hotel"
lock_timout = "5m"
[sources.hotel]
url = 5
[sources."db.old"]
url = "sqlite:old.db"
lock_timeout = "soon"
[objectives]
rpo = "a while"
[objectives.interval]
weekly = "7d"
[retention]
keep_daily = -1
pitr_window = "a week"
[[alerts]]
webhook = "http://x"
format = "teams"
[[alerts]]
webhook = "http://x"
command = "cat"
"#;
        let e = Config::parse(text, Path::new("c.toml")).unwrap_err();
        assert_eq!(e.kind().name(), "bad_input");
        let e = e.to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines[0], "c.toml has 11 problems:", "{e}");
        let expected = [
            "c.toml:2:1: retention_days: unknown field `retention_days`",
            "c.toml:4:1: sources.prod.url: \"mysql://db/hotel\" is neither",
            "c.toml:5:1: sources.prod.lock_timout: unknown field `lock_timout`",
            "c.toml:7:7: sources.hotel.url: invalid type: integer `5`, expected a string",
            "c.toml:10:1: sources.\"db.old\".lock_timeout: ",
            "c.toml:12:1: objectives.rpo: ",
            "c.toml:14:1: objectives.interval.weekly: unknown kind",
            "c.toml:16:14: retention.keep_daily: invalid value: integer `-1`",
            "c.toml:17:1: retention.pitr_window: ",
            "c.toml:20:1: alerts[0].format: \"teams\" is not a format",
            "c.toml:21:1: alerts[1]: needs exactly one",
        ];
        for (line, want) in lines[1..].iter().zip(expected) {
            assert!(
                line.trim_start().starts_with(want),
                "{line:?} is not {want:?}:\n{e}"
            );
        }
        assert_eq!(lines.len(), expected.len() + 1, "{e}");
        // A problem alone keeps the one-line form; a syntax error stops the reading.
        let e = Config::parse("[prune]\nmax_wait = \"never\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml:2:1: prune.max_wait: ") && !e.contains('\n'),
            "{e}"
        );
        let e = Config::parse("[sources.a\nurl = 5\nnope = 1\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:1:") && !e.contains('\n'), "{e}");
    }
}
