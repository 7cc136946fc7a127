//! A PostgreSQL server as strongroom reaches it: connection settings, SQL connections, and
//! the environment handed to `pg_dump` / `pg_restore`.
//!
//! Owns turning a `postgres://` URL plus libpq's `PG*` variables into settings, and keeping
//! the password out of argv, logs and messages (docs/ARCHITECTURE.md, "Invariants"; the
//! text of URLs and connection strings is [`crate::source::conninfo`]'s): child programs get it through
//! `PGPASSWORD` in their environment, displays never show it. Also owns phrasing connection
//! failures as one sentence a person can act on. Must not know about repositories.

use crate::error::{Error, Result};
use crate::source::conninfo::{
    conninfo_pairs, conninfo_string, is_url, percent_decode, redact_url,
};
use postgres::config::{Host, SslMode};
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

/// Connection settings for one database on one server.
#[derive(Clone)]
pub struct Conn {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    /// Where the password came from, for messages that say what was tried.
    password_from: PasswordFrom,
    dbname: String,
    /// libpq's `sslmode` name: disable, allow, prefer, require, verify-ca, verify-full.
    sslmode: String,
    sslrootcert: Option<PathBuf>,
    /// Client certificate and key, for servers that authenticate by certificate.
    client_cert: Option<(PathBuf, PathBuf)>,
}

/// TLS for a connection: whether it must be used (else it is only preferred) and the
/// rustls configuration that checks the server as `sslmode` says.
pub struct Tls {
    /// `require` and `verify-*`: no TLS, no connection.
    pub required: bool,
    /// The client configuration.
    pub config: rustls::ClientConfig,
}

/// Where a connection's password came from (never the password itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordFrom {
    /// The URL or connection string.
    Url,
    /// The `PGPASSWORD` environment variable.
    Env,
    /// The password file (`PGPASSFILE` or `~/.pgpass`).
    File(PathBuf),
    /// None was found.
    Nowhere,
}

impl std::fmt::Display for PasswordFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordFrom::Url => f.write_str("password from the URL"),
            PasswordFrom::Env => f.write_str("password from PGPASSWORD"),
            PasswordFrom::File(p) => write!(f, "password from {}", p.display()),
            PasswordFrom::Nowhere => {
                f.write_str("no password in the URL, PGPASSWORD or the password file")
            }
        }
    }
}

const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// The TLS parameters strongroom handles itself (the SQL client's own parser knows fewer
/// modes than libpq and no client certificates).
const SSL_PARAMS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Takes the [`SSL_PARAMS`] out of a URL's query, returning the rest of the URL and their
/// values in that order.
fn split_ssl_params(url: &str) -> (String, [Option<String>; 4]) {
    let mut found: [Option<String>; 4] = Default::default();
    if !is_url(url) {
        let mut kept = Vec::new();
        for (k, v) in conninfo_pairs(url) {
            match SSL_PARAMS.iter().position(|p| *p == k) {
                Some(i) => found[i] = Some(v),
                None => kept.push((k, v)),
            }
        }
        return (conninfo_string(&kept), found);
    }
    let Some(q) = url.find('?') else {
        return (url.to_string(), found);
    };
    let (base, query) = (&url[..q], &url[q + 1..]);
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match SSL_PARAMS.iter().position(|p| *p == k) {
                Some(i) => {
                    found[i] = Some(percent_decode(v));
                    false
                }
                None => true,
            }
        })
        .collect();
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, found)
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn current_os_user() -> String {
    env("USER")
        .or_else(|| env("LOGNAME"))
        .unwrap_or_else(|| "postgres".into())
}

impl Conn {
    /// Parses a `postgres://` / `postgresql://` URL (or a libpq key=value string); what it
    /// leaves out comes from `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, then
    /// libpq's defaults.
    pub fn parse(url: &str) -> Result<Conn> {
        let (rest, [sslmode, sslrootcert, sslcert, sslkey]) = split_ssl_params(url);
        let sslmode = sslmode
            .or_else(|| env("PGSSLMODE"))
            .unwrap_or_else(|| "prefer".into());
        if !SSL_MODES.contains(&sslmode.as_str()) {
            return Err(Error::Config(format!(
                "sslmode={sslmode} in {} is not one of {}",
                redact_url(url),
                SSL_MODES.join(", ")
            )));
        }
        let sslrootcert = sslrootcert
            .or_else(|| env("PGSSLROOTCERT"))
            .map(PathBuf::from);
        let client_cert = client_certificate(
            sslcert.or_else(|| env("PGSSLCERT")),
            sslkey.or_else(|| env("PGSSLKEY")),
        )
        .map_err(|e| Error::Config(format!("{e} (in {})", redact_url(url))))?;
        let cfg = postgres::Config::from_str(&rest).map_err(|e| {
            Error::Config(format!(
                "cannot parse PostgreSQL URL {}: {e}",
                redact_url(url)
            ))
        })?;
        let host = match cfg.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => env("PGHOST").unwrap_or_else(|| "/var/run/postgresql".into()),
        };
        let port = match cfg.get_ports().first() {
            Some(p) => *p,
            None => env("PGPORT").and_then(|p| p.parse().ok()).unwrap_or(5432),
        };
        let user = cfg
            .get_user()
            .map(str::to_string)
            .or_else(|| env("PGUSER"))
            .unwrap_or_else(current_os_user);
        let dbname = cfg
            .get_dbname()
            .map(str::to_string)
            .or_else(|| env("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        let (password, password_from) = match cfg.get_password() {
            Some(p) => (
                Some(String::from_utf8_lossy(p).into_owned()),
                PasswordFrom::Url,
            ),
            None => match env("PGPASSWORD") {
                Some(p) => (Some(p), PasswordFrom::Env),
                None => match pgpass(&host, port, &dbname, &user) {
                    Some((p, file)) => (Some(p), PasswordFrom::File(file)),
                    None => (None, PasswordFrom::Nowhere),
                },
            },
        };
        Ok(Conn {
            host,
            port,
            user,
            password,
            password_from,
            dbname,
            sslmode,
            sslrootcert,
            client_cert,
        })
    }

    /// The database name.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// The role name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Where the password came from.
    pub fn password_from(&self) -> &PasswordFrom {
        &self.password_from
    }

    /// The same server and credentials, another database.
    pub fn with_dbname(&self, dbname: &str) -> Conn {
        Conn {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    /// `host:port` (or the socket directory and port).
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A URL without the password, for messages and snapshot records.
    pub fn display(&self) -> String {
        if self.host.starts_with('/') {
            format!(
                "postgres://{}@/{}?host={}&port={}",
                self.user, self.dbname, self.host, self.port
            )
        } else {
            format!(
                "postgres://{}@{}:{}/{}",
                self.user, self.host, self.port, self.dbname
            )
        }
    }

    /// Opens a SQL connection, with failures phrased for people.
    pub fn connect(&self) -> Result<postgres::Client> {
        self.connect_raw()?
            .map_err(|e| Error::Source(self.explain(&e)))
    }

    /// Opens a SQL connection: `Err` when the settings cannot be used (TLS files, say), the
    /// inner `Err` with the server's or the network's own error.
    pub fn connect_raw(&self) -> Result<std::result::Result<postgres::Client, postgres::Error>> {
        let mut cfg = postgres::Config::new();
        if self.host.starts_with('/') {
            cfg.host_path(&self.host);
        } else {
            cfg.host(&self.host);
        }
        cfg.port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("strongroom")
            .connect_timeout(Duration::from_secs(15));
        if let Some(p) = &self.password {
            cfg.password(p);
        }
        let result = match self.tls()? {
            None => {
                cfg.ssl_mode(SslMode::Disable);
                cfg.connect(postgres::NoTls)
            }
            Some(t) => {
                cfg.ssl_mode(if t.required {
                    SslMode::Require
                } else {
                    SslMode::Prefer
                });
                cfg.connect(tokio_postgres_rustls::MakeRustlsConnect::new(t.config))
            }
        };
        Ok(result)
    }

    /// The TLS these settings ask for, with libpq's meanings of `sslmode`: `None` for none
    /// (`disable`, or a Unix socket, where libpq never uses TLS).
    pub fn tls(&self) -> Result<Option<Tls>> {
        use super::tls::{Verify, client_config};
        // libpq's root certificate: sslrootcert, else ~/.postgresql/root.crt if present.
        let default_root = || {
            let home = env("HOME")?;
            let p = std::path::Path::new(&home).join(".postgresql/root.crt");
            p.is_file().then_some(p)
        };
        let root = self.sslrootcert.clone().or_else(default_root);
        let (required, verify) = match self.sslmode.as_str() {
            // libpq never uses TLS on a Unix socket, whatever sslmode says.
            _ if self.is_socket() => return Ok(None),
            "disable" => return Ok(None),
            "allow" | "prefer" => (false, Verify::Nothing),
            // libpq: require with a root certificate behaves like verify-ca.
            "require" if root.is_none() => (true, Verify::Nothing),
            "require" | "verify-ca" => (true, Verify::Chain),
            _ => (true, Verify::Full),
        };
        let root = match root {
            // libpq 16+: the operating system's trusted roots.
            Some(p) if p.as_os_str() == "system" => None,
            Some(p) => Some(p),
            None if verify == Verify::Nothing => None,
            None => {
                return Err(Error::Config(format!(
                    "sslmode={} for {} needs a root certificate to check the server \
                     against: set sslrootcert (or PGSSLROOTCERT) to its file, or to \
                     \"system\" for the system's trusted roots, or put it in \
                     ~/.postgresql/root.crt",
                    self.sslmode,
                    self.display()
                )));
            }
        };
        let client = self
            .client_cert
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        let config = client_config(verify, root.as_deref(), client)
            .map_err(|e| Error::Config(format!("TLS for {}: {e}", self.display())))?;
        Ok(Some(Tls { required, config }))
    }

    /// Whether the host is a Unix socket directory.
    pub fn is_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// The host name, or the socket directory.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (also names the Unix socket, `.s.PGSQL.<port>`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password, when one was found (never shown: for the wire only).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// One sentence saying why a connection or statement failed, and what to do.
    pub fn explain(&self, e: &postgres::Error) -> String {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            return match code {
                "28000" if db.message().contains("certificate") => format!(
                    "PostgreSQL at {} rejected role {:?}: {}; name a client certificate the \
                     server trusts with sslcert and sslkey in the URL (or PGSSLCERT and PGSSLKEY)",
                    self.server(),
                    self.user,
                    db.message()
                ),
                "28P01" | "28000" => format!(
                    "PostgreSQL at {} rejected role {:?}: {}; check the password (URL or PGPASSWORD) \
                     and pg_hba.conf",
                    self.server(),
                    self.user,
                    db.message()
                ),
                "3D000" => format!(
                    "database {:?} does not exist on {}",
                    self.dbname,
                    self.server()
                ),
                "42501" => format!(
                    "role {:?} lacks a privilege on {}: {}",
                    self.user,
                    self.server(),
                    db.message()
                ),
                _ => format!("PostgreSQL at {} said: {}", self.server(), db.message()),
            };
        }
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            detail = s.to_string();
            src = s.source();
        }
        if detail.contains("invalid peer certificate") {
            return format!(
                "the TLS certificate of PostgreSQL at {} is not trusted ({}); check sslrootcert \
                 (or PGSSLROOTCERT), or use sslmode=require to encrypt without verifying",
                self.server(),
                detail.trim_start_matches("invalid peer certificate: ")
            );
        }
        if detail.contains("password missing") {
            return format!(
                "PostgreSQL at {} asks role {:?} for a password and none was given; put it in \
                 the URL, PGPASSWORD or ~/.pgpass",
                self.server(),
                self.user
            );
        }
        if e.is_closed() || detail.contains("refused") || detail.contains("No such file") {
            format!(
                "cannot connect to PostgreSQL at {}: {detail}; is the server running and the \
                 host and port right?",
                self.server()
            )
        } else {
            format!("PostgreSQL at {}: {detail}", self.server())
        }
    }

    /// Applies these settings to a child program (`pg_dump`, `pg_restore`, `pg_dumpall`,
    /// hooks): everything through libpq's environment, nothing in argv.
    pub fn apply_env(&self, cmd: &mut Command) {
        cmd.env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", &self.dbname)
            .env("PGAPPNAME", "strongroom")
            .env("PGSSLMODE", &self.sslmode)
            .env_remove("PGSERVICE");
        // The repository's password and the stores' keys are none of pg_dump's business.
        crate::process::withhold_store_secrets(cmd);
        if let Some(r) = &self.sslrootcert {
            cmd.env("PGSSLROOTCERT", r);
        }
        if let Some((c, k)) = &self.client_cert {
            cmd.env("PGSSLCERT", c).env("PGSSLKEY", k);
        }
        if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
            cmd.env("PGCONNECT_TIMEOUT", "15");
        }
        match &self.password {
            Some(p) => cmd.env("PGPASSWORD", p),
            None => cmd.env_remove("PGPASSWORD"),
        };
    }
}

/// The client certificate and key libpq would use: both named, or neither named and
/// `~/.postgresql/postgresql.crt` and `.key` present.
fn client_certificate(
    cert: Option<String>,
    key: Option<String>,
) -> std::result::Result<Option<(PathBuf, PathBuf)>, String> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c.into(), k.into()))),
        (Some(c), None) => {
            // libpq looks for the key beside the default certificate; be explicit instead.
            Err(format!(
                "sslcert={c} is set but sslkey is not; name the private key too (sslkey or PGSSLKEY)"
            ))
        }
        (None, Some(k)) => Err(format!(
            "sslkey={k} is set but sslcert is not; name the certificate too (sslcert or PGSSLCERT)"
        )),
        (None, None) => {
            let Some(home) = env("HOME") else {
                return Ok(None);
            };
            let dir = std::path::Path::new(&home).join(".postgresql");
            let (c, k) = (dir.join("postgresql.crt"), dir.join("postgresql.key"));
            Ok((c.is_file() && k.is_file()).then_some((c, k)))
        }
    }
}

/// The password libpq would take from the password file (`PGPASSFILE`, else `~/.pgpass`)
/// for these settings, and that file: `host:port:database:user:password` lines, `*` matching
/// anything.
fn pgpass(host: &str, port: u16, db: &str, user: &str) -> Option<(String, PathBuf)> {
    let path = env("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    let text = std::fs::read_to_string(&path).ok()?;
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        // Split on unescaped colons; `\:` and `\\` are literal.
        let mut fields = vec![String::new()];
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => fields.last_mut()?.extend(chars.next()),
                ':' if fields.len() < 5 => fields.push(String::new()),
                c => fields.last_mut()?.push(c),
            }
        }
        if fields.len() != 5 {
            continue;
        }
        let want = [host, port.as_str(), db, user];
        if fields[..4]
            .iter()
            .zip(want)
            .all(|(f, w)| f == "*" || f == w)
        {
            return fields.pop().map(|p| (p, path));
        }
    }
    None
}

/// Quotes an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn literal(s: &str) -> String {
    if s.contains('\\') {
        // E'' means the same whatever standard_conforming_strings says.
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_never_shows_the_password() {
        let c = Conn::parse("postgres://app:s3cret@127.0.0.1:6543/hotel").unwrap();
        assert_eq!(c.display(), "postgres://app@127.0.0.1:6543/hotel");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.with_dbname("postgres").dbname(), "postgres");
    }

    #[test]
    fn password_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        std::fs::write(
            &f,
            "# comment\ndb:5432:other:app:no\ndb:*:hotel:app:pa\\:ss\n*:*:*:*:fallback\n",
        )
        .unwrap();
        // SAFETY: this test alone reads PGPASSFILE.
        unsafe { std::env::set_var("PGPASSFILE", &f) };
        let pw = |h, p, d, u| pgpass(h, p, d, u).map(|(pw, file)| (pw, file == f));
        assert_eq!(pw("db", 5432, "hotel", "app"), Some(("pa:ss".into(), true)));
        assert_eq!(pw("x", 1, "y", "z"), Some(("fallback".into(), true)));
        unsafe { std::env::remove_var("PGPASSFILE") };
    }

    #[test]
    fn ssl_parameters() {
        let c = Conn::parse(
            "postgres://app@db/hotel?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(c.sslmode, "verify-full");
        assert_eq!(
            c.sslrootcert.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert!(Conn::parse("postgres://app@db/hotel?sslmode=sometimes").is_err());
        let c = Conn::parse(
            "postgres://app@db/hotel?sslcert=/my%20certs/app.crt&sslkey=/k.pem&sslmode=require",
        )
        .unwrap();
        assert_eq!(
            c.client_cert,
            Some(("/my certs/app.crt".into(), "/k.pem".into()))
        );
        assert_eq!(c.sslmode, "require");
        let e = Conn::parse("postgres://app@db/hotel?sslcert=/a.crt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslkey"), "{e}");
        // libpq key=value strings: the same parameters, and the password never shown.
        let kv =
            r"host=db dbname='my \'db\'' password = s3cret sslmode=verify-ca sslrootcert=/ca.pem";
        let (rest, [mode, root, ..]) = split_ssl_params(kv);
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/ca.pem"));
        assert_eq!(rest, r"host='db' dbname='my \'db\'' password='s3cret'");
        assert_eq!(
            redact_url(kv),
            r"host='db' dbname='my \'db\'' sslmode='verify-ca' sslrootcert='/ca.pem'"
        );
        let c = Conn::parse(kv).unwrap();
        assert_eq!((c.dbname(), c.sslmode.as_str()), ("my 'db'", "verify-ca"));
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"C:\dir's"), r"E'C:\\dir''s'");
    }
}
