//! What a source is: a database strongroom backs up, named in the config or by URL.
//!
//! Owns the resolved [`Source`] (where the database is, its checks, hooks and settings), the
//! [`Location`] a source URL names, a source's one identity, and the text of PostgreSQL
//! connection strings ([`conninfo`]). Every layer speaks of sources through these types: the
//! config resolves a SOURCE argument to one, engines read from one. Must not open databases
//! or read files.
//!
//! Why an identity: `sqlite:hotel.db`, `sqlite:./hotel.db` and `sqlite:/srv/hotel.db` name
//! one database, as do `postgresql://app:pw@db/hotel` and `postgres://app@db:5432/hotel`. A
//! snapshot records its source's identity (or its config name), and `--source` matches any
//! spelling of it, so `latest` of one source can never be taken for another's.

pub mod conninfo;

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// How long a backup waits for a busy database to let it read, unless the source sets
/// `lock_timeout`.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How row counts are captured.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RowCounts {
    /// Count every row.
    #[default]
    Exact,
    /// Use the planner's estimates.
    Estimate,
}

/// A named SQL statement that must return one truthy value.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqlCheck {
    /// Shown in reports.
    pub name: String,
    /// The statement.
    pub sql: String,
}

/// What a SOURCE resolves to.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// The name recorded in snapshots: the config name, or the URL's [`Location::identity`].
    pub name: String,
    /// Where the database is.
    pub location: Location,
    /// The schema-version query, if configured.
    pub schema_version_query: Option<String>,
    /// Configured checks.
    pub checks: Vec<SqlCheck>,
    /// Command run before a restore replaces the database.
    pub before_restore: Option<String>,
    /// Command run after a restore replaced the database.
    pub after_restore: Option<String>,
    /// How row counts are captured.
    pub row_counts: RowCounts,
    /// The `[sources.NAME]` table this source comes from, when the config names it (by name
    /// or by URL): messages say where connection settings came from.
    pub config_name: Option<String>,
    /// How long a backup waits and retries for a busy database's read lock (SQLite).
    pub lock_timeout: Duration,
    /// Where a backup spools what it read so it can let writers go early (SQLite in
    /// rollback-journal mode); `None`: the system's temporary directory.
    pub spool_dir: Option<PathBuf>,
}

impl Source {
    /// A source named `name` at `location`, with no checks, hooks or settings of its own.
    pub fn new(name: impl Into<String>, location: Location) -> Source {
        Source {
            name: name.into(),
            location,
            schema_version_query: None,
            checks: Vec::new(),
            before_restore: None,
            after_restore: None,
            row_counts: RowCounts::default(),
            config_name: None,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            spool_dir: None,
        }
    }
}

/// A database location parsed from a source URL.
#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string.
    Postgres(String),
}

/// Parses `sqlite:PATH` or `postgres://…` / `postgresql://…`.
pub fn parse_location(url: &str) -> Option<Location> {
    if let Some(p) = url.strip_prefix("sqlite://") {
        return (!p.is_empty()).then(|| Location::Sqlite(PathBuf::from(p)));
    }
    if let Some(p) = url.strip_prefix("sqlite:") {
        return (!p.is_empty()).then(|| Location::Sqlite(PathBuf::from(p)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Some(Location::Postgres(url.to_string()));
    }
    None
}

impl Location {
    /// The one spelling of this location: `sqlite:` and an absolute path without `.` or
    /// `..` (relative paths are taken from the current directory; links are not followed),
    /// or `postgres://user@host:port/dbname` without password or parameters, the default
    /// host (`localhost`) and port (5432) spelled out.
    pub fn identity(&self) -> String {
        match self {
            Location::Sqlite(p) => format!("sqlite:{}", absolute(p).display()),
            Location::Postgres(url) => postgres_identity(url),
        }
    }
}

impl Location {
    /// The database this location names, whoever connects to it: the identity without the
    /// PostgreSQL user (a superuser restores what the application's role backs up), and for
    /// SQLite with the directory's links resolved when it exists. Two locations with the
    /// same database are one database to restore over.
    pub fn database(&self) -> String {
        match self {
            Location::Sqlite(p) => {
                let abs = absolute(p);
                let resolved = abs
                    .parent()
                    .and_then(|d| std::fs::canonicalize(d).ok())
                    .zip(abs.file_name())
                    .map(|(d, n)| d.join(n))
                    .unwrap_or(abs);
                format!("sqlite:{}", resolved.display())
            }
            Location::Postgres(url) => {
                let id = postgres_identity(url);
                let rest = id.trim_start_matches("postgres://");
                let host_on = rest.split_once('@').map_or(rest, |(_, h)| h);
                format!("postgres://{host_on}")
            }
        }
    }
}

/// The identity of a source URL, when `url` is one.
pub fn identity_of(url: &str) -> Option<String> {
    parse_location(url).map(|l| l.identity())
}

/// `path` made absolute against the current directory, `.` and `..` removed lexically.
fn absolute(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `postgres://user@host:port/dbname` from a URL or a `key=value` connection string, with
/// what the URL leaves out taken from libpq's environment (`PGHOST`, `PGPORT`, `PGUSER`,
/// `PGDATABASE`), as the connection itself takes it: `postgres:///hotel` with `PGPORT=5433`
/// is another cluster than with none, and must not share its snapshots' identity.
fn postgres_identity(url: &str) -> String {
    postgres_identity_in(url, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// [`postgres_identity`] with the environment given (tests pass their own).
fn postgres_identity_in(url: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut user = None;
    let mut host = None;
    let mut port = None;
    let mut dbname = None;
    let mut query: Vec<(String, String)> = Vec::new();
    if conninfo::is_url(url) {
        let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
        let (main, q) = rest.split_once('?').unwrap_or((rest, ""));
        for kv in q.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            query.push((k.to_string(), conninfo::percent_decode(v)));
        }
        let (authority, path) = main.split_once('/').unwrap_or((main, ""));
        // Credentials end at the last '@' of the authority (as the redaction reads them).
        let (creds, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        if let Some(c) = creds {
            let u = c.split(':').next().unwrap_or("");
            user = (!u.is_empty()).then(|| conninfo::percent_decode(u));
        }
        // The first host of a multi-host list; `[v6]:port` keeps its brackets.
        let first = hostport.split(',').next().unwrap_or("");
        let (h, p) = match first.rfind(':') {
            Some(i) if !first[i..].contains(']') => (&first[..i], Some(&first[i + 1..])),
            _ => (first, None),
        };
        host = (!h.is_empty()).then(|| conninfo::percent_decode(h));
        port = p.filter(|p| !p.is_empty()).map(str::to_string);
        dbname = (!path.is_empty()).then(|| conninfo::percent_decode(path));
    } else {
        query = conninfo::conninfo_pairs(url);
    }
    for (k, v) in query {
        match k.as_str() {
            "user" => user = Some(v),
            "host" | "hostaddr" if host.is_none() => host = Some(v),
            "port" => port = Some(v),
            "dbname" => dbname = Some(v),
            _ => {}
        }
    }
    let user = user.or_else(|| env("PGUSER"));
    let host = host
        .or_else(|| env("PGHOST"))
        // A socket directory is this host's server, as `localhost` is.
        .filter(|h| !h.starts_with('/'))
        .unwrap_or_else(|| "localhost".into());
    let port = port
        .or_else(|| env("PGPORT"))
        .unwrap_or_else(|| "5432".into());
    let dbname = dbname
        .or_else(|| env("PGDATABASE"))
        .or_else(|| user.clone())
        .unwrap_or_default();
    match user {
        Some(u) => format!("postgres://{u}@{host}:{port}/{dbname}"),
        None => format!("postgres://{host}:{port}/{dbname}"),
    }
}

/// Every spelling that names one source: its config name and its location's identity.
/// `--source` builds one of these, and a snapshot matches when its recorded source is one
/// of them or has the same identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceMatch {
    names: std::collections::BTreeSet<String>,
}

impl SourceMatch {
    /// What the user typed, and its identity when it is a URL.
    pub fn new(typed: &str) -> Self {
        let mut m = SourceMatch::default();
        m.add(typed);
        m
    }

    /// Adds another spelling (a config name, a URL) of the same source.
    pub fn add(&mut self, spelling: &str) {
        self.names.insert(spelling.to_string());
        if let Some(id) = identity_of(spelling) {
            self.names.insert(id);
        }
    }

    /// Whether a snapshot recorded with source `recorded` is of this source.
    pub fn matches(&self, recorded: &str) -> bool {
        self.names.contains(recorded)
            || identity_of(recorded).is_some_and(|i| self.names.contains(&i))
    }

    /// The spellings, for messages.
    pub fn spellings(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_database_has_one_identity() {
        let cwd = std::env::current_dir().unwrap();
        let abs = |p: &str| format!("sqlite:{}", cwd.join(p).display());
        assert_eq!(identity_of("sqlite:hotel.db").unwrap(), abs("hotel.db"));
        assert_eq!(
            identity_of("sqlite:./a/../hotel.db").unwrap(),
            abs("hotel.db")
        );
        assert_eq!(
            identity_of("sqlite:/srv/x/../hotel.db").unwrap(),
            "sqlite:/srv/hotel.db"
        );
        assert_eq!(
            identity_of("sqlite:///srv/hotel.db").unwrap(),
            "sqlite:/srv/hotel.db"
        );
        let pg = "postgres://app@db:5432/hotel";
        for spelling in [
            "postgresql://app:s3cret@db/hotel",
            "postgres://app@db:5432/hotel?sslmode=require",
            "postgres://app:p@ss@db/hotel",
            "postgres://db/hotel?user=app&password=x",
        ] {
            assert_eq!(identity_of(spelling).as_deref(), Some(pg), "{spelling}");
        }
        assert_eq!(
            identity_of("postgres://app@/hotel").unwrap(),
            "postgres://app@localhost:5432/hotel"
        );
        assert_eq!(
            identity_of("postgres://app@[::1]:6543").unwrap(),
            "postgres://app@[::1]:6543/app"
        );
        assert_eq!(identity_of("hotel"), None);
        // Whoever connects, one database.
        let db = |u: &str| Location::Postgres(u.into()).database();
        assert_eq!(
            db("postgres://postgres@db/hotel"),
            db("postgresql://app:pw@db:5432/hotel")
        );
        assert_ne!(db("postgres://app@db/hotel"), db("postgres://app@db/other"));
        // A libpq key=value string (a restore target may be one) has the same identity.
        assert_eq!(
            Location::Postgres("host=db user=app dbname=hotel password=x".into()).identity(),
            pg
        );
    }

    #[test]
    fn what_the_url_leaves_out_comes_from_libpqs_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let none = env(&[]);
        assert_eq!(
            postgres_identity_in("postgres:///hotel", &none),
            "postgres://localhost:5432/hotel"
        );
        let other = env(&[("PGPORT", "54666"), ("PGUSER", "app")]);
        assert_eq!(
            postgres_identity_in("postgres:///hotel", &other),
            "postgres://app@localhost:54666/hotel",
            "another port is another cluster"
        );
        // What the URL says wins over the environment.
        assert_eq!(
            postgres_identity_in("postgres://ops@db:5432/hotel", &other),
            "postgres://ops@db:5432/hotel"
        );
        // A socket directory is this host.
        let socket = env(&[("PGHOST", "/var/run/postgresql")]);
        assert_eq!(
            postgres_identity_in("postgres:///hotel", &socket),
            "postgres://localhost:5432/hotel"
        );
    }

    #[test]
    fn a_source_match_takes_every_spelling() {
        let mut m = SourceMatch::new("prod");
        m.add("postgresql://app:pw@db/hotel");
        assert!(m.matches("prod"));
        assert!(m.matches("postgres://app@db:5432/hotel"));
        assert!(
            m.matches("postgres://app@db/hotel"),
            "an old recording, not canonical"
        );
        assert!(!m.matches("postgres://app@db:5432/other"));
        assert!(!m.matches("staging"));
    }
}
