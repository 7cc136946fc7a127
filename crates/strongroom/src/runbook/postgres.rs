//! The PostgreSQL parts of a source's section: logical restores into a database, physical
//! restores into a data directory and the point-in-time window the archive can serve.
//!
//! Owns those commands' wording. Must not read anything but its inputs, and must never write
//! a password: the source's URL goes through `redact_url` first.

use super::steps::{hooks_note, latest_when_written, row_count_commands};
use super::{Entry, Inputs, fmt_time, sh_quote};
use crate::engine::postgres::physical::PhysicalMetadata;
use crate::repository::snapshot::{BackupKind, Snapshot};
use crate::source::conninfo::redact_url;
use std::fmt::Write;

pub(super) fn logical(md: &mut String, e: &Entry, url: &str) {
    let target = redact_url(url);
    let side = with_dbname(&target, "_restored");
    let name = sh_quote(&e.name);
    let when = latest_when_written(e, &BackupKind::Logical);
    line!(
        md,
        "Logical (pg_dump) snapshots: side copy into a new database, then in place:"
    );
    line!(md);
    line!(md, "```sh");
    line!(
        md,
        "strongroom restore latest --source {name} --target-db {}",
        sh_quote(&side)
    );
    line!(
        md,
        "strongroom restore latest --source {name} --target-db {} --force",
        sh_quote(&target)
    );
    line!(md, "```");
    line!(md);
    line!(
        md,
        "`latest` is the newest logical snapshot when you run it{when}. A logical snapshot \
         restores as of its own moment: to an earlier point, its id from `strongroom list \
         --source {name}`. The in-place restore refuses a database with open sessions: stop \
         the application first."
    );
    line!(md);
    hooks_note(md, e);
    line!(md, "Verify (the side copy):");
    line!(md);
    line!(md, "```sh");
    let q = sh_quote(&side);
    row_count_commands(md, e, &BackupKind::Logical, |sql| {
        format!("psql {q} -Atc {}", sh_quote(sql))
    });
    line!(md, "```");
    line!(md);
}

/// `url` (already without password) naming the database `<dbname><suffix>`.
pub(super) fn with_dbname(url: &str, suffix: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    let after = &base[scheme_end + 3..];
    match after.find('/') {
        Some(i) if i + 1 < after.len() => format!("{base}{suffix}{query}"),
        _ => {
            let user = after
                .split_once('@')
                .map(|(u, _)| u.split(':').next().unwrap_or(u))
                .filter(|u| !u.is_empty())
                .unwrap_or("postgres");
            let base = base.trim_end_matches('/');
            format!("{base}/{user}{suffix}{query}")
        }
    }
}

pub(super) fn physical(md: &mut String, inputs: &Inputs, e: &Entry) {
    let Some(newest) = e.newest(&BackupKind::Physical) else {
        return;
    };
    let name = sh_quote(&e.name);
    let recorded = PhysicalMetadata::of(newest);
    let dir = recorded
        .data_directory
        .clone()
        .unwrap_or_else(|| "/var/lib/postgresql/data".to_string());
    let side = sh_quote(&format!("{dir}.restored"));
    line!(
        md,
        "Physical snapshots and point-in-time recovery (on the database host, as root or the \
         database's system user):"
    );
    line!(md);
    let facts = cluster_of(newest).and_then(|c| inputs.wal_timelines.get(&c));
    let along = facts
        .map(|f| format!(" along timeline {}", f.source))
        .unwrap_or_default();
    match pitr_window(inputs, e) {
        Some((from, to)) => line!(
            md,
            "**The repository can recover any time from {} to about {}{along}** (the oldest \
             physical snapshot's end to the newest WAL segment archived without a gap on the \
             source's timeline). `strongroom wal verify` names any gap. A `--time` after the \
             last transaction the archive holds makes recovery stop with an error: for \"as \
             late as possible\", use `--latest`.",
            fmt_time(from),
            fmt_time(to)
        ),
        None => line!(
            md,
            "**No archived WAL for this cluster**: each snapshot restores only as of its own end \
             (`--immediate`)."
        ),
    }
    line!(md);
    if let Some(f) = facts.filter(|f| !f.forks.is_empty()) {
        timelines_note(md, f);
    }
    line!(md, "```sh");
    line!(
        md,
        "strongroom restore latest --source {name} --data-dir {side} --time 'YYYY-MM-DD HH:MM:SS' --start   # UTC"
    );
    line!(
        md,
        "strongroom restore latest --source {name} --data-dir {side} --latest --start   # all archived WAL"
    );
    line!(md, "```");
    line!(md);
    line!(
        md,
        "`latest` is the newest physical snapshot that ends before the target. `--start` starts \
         PostgreSQL on the copy (the cluster's port when free, else another) as the data \
         directory's owner, waits for it to promote, and prints the port, LSN and last commit \
         time reached, and the line that stops it. The server it starts fetches WAL with \
         `strongroom wal fetch` (its `restore_command`) as that user, with this shell's \
         environment: STRONGROOM_REPO and a key file that user can read \
         (`export STRONGROOM_PASSWORD_FILE=` the key file `archive_command` uses), not a \
         password file only root can read. In place, with the server stopped (a running \
         server's directory is always refused):"
    );
    line!(md);
    line!(md, "```sh");
    line!(
        md,
        "strongroom restore latest --source {name} --data-dir {} --force --time 'YYYY-MM-DD HH:MM:SS'",
        sh_quote(&dir)
    );
    line!(md, "```");
    line!(md);
    line!(
        md,
        "Then start the server as it is always started (Debian: `pg_ctlcluster` or `systemctl \
         start postgresql@…`): it recovers through the same `restore_command`, so its own \
         environment must hold STRONGROOM_REPO and STRONGROOM_PASSWORD_FILE, as for \
         `archive_command` (Debian: `/etc/postgresql/<version>/<cluster>/environment`)."
    );
    line!(md);
    line!(
        md,
        "Verify (the started copy, on the port `--start` printed; the role's password from \
         PGPASSWORD or ~/.pgpass, as for the backup):"
    );
    line!(md);
    line!(md, "```sh");
    let db = recorded.database.unwrap_or_else(|| "postgres".to_string());
    let psql = psql_as(e, newest);
    row_count_commands(md, e, &BackupKind::Physical, |sql| {
        format!("{psql} -p PORT -d {} -Atc {}", sh_quote(&db), sh_quote(sql))
    });
    line!(md, "```");
    line!(md);
}

/// `psql` aimed at the started copy as the source's URL connects (`-h HOST -U USER`), so it
/// works from root's shell: bare `psql` would try root's peer authentication over the
/// default socket. A URL that names a socket directory, or no host, connects over that
/// socket, where peer authentication wants the role's own system user: `runuser -u USER --
/// psql -h DIR -U USER`.
fn psql_as(e: &Entry, newest: &Snapshot) -> String {
    let url = match &e.location {
        Some(crate::source::Location::Postgres(u)) => redact_url(u),
        _ => String::new(),
    };
    let cfg = url.parse::<::postgres::Config>().ok();
    let user = cfg
        .as_ref()
        .and_then(|c| c.get_user().map(str::to_string))
        .or_else(|| PhysicalMetadata::of(newest).bootstrap_superuser)
        .unwrap_or_else(|| "postgres".into());
    let u = sh_quote(&user);
    match cfg.as_ref().and_then(|c| c.get_hosts().first().cloned()) {
        Some(::postgres::config::Host::Tcp(h)) => format!("psql -h {} -U {u}", sh_quote(&h)),
        Some(::postgres::config::Host::Unix(dir)) => format!(
            "runuser -u {u} -- psql -h {} -U {u}",
            sh_quote(&dir.display().to_string())
        ),
        None => format!("runuser -u {u} -- psql -U {u}"),
    }
}

/// Which timeline restores follow, and the forks beside it that they do not.
fn timelines_note(md: &mut String, f: &super::TimelineFacts) {
    let forks: Vec<&str> = f.forks.iter().map(|(_, d)| d.as_str()).collect();
    line!(
        md,
        "Restores follow {}. The archive also holds forks that restored copies archived, \
         which they do not follow unless `--timeline N` asks: {}.",
        f.described,
        forks.join("; ")
    );
    line!(md);
}

/// The cluster (system identifier) a snapshot recorded.
fn cluster_of(s: &Snapshot) -> Option<String> {
    crate::engine::postgres::timeline::judge::cluster_of(s)
}

/// From the oldest physical snapshot relying on the archive (its end) to the newest WAL
/// segment a recovery from the newest snapshot's along the source's timeline reaches.
pub(super) fn pitr_window(
    inputs: &Inputs,
    e: &Entry,
) -> Option<(jiff::Timestamp, jiff::Timestamp)> {
    let cluster = cluster_of;
    let newest = e.newest(&BackupKind::Physical)?;
    let id = cluster(newest)?;
    let to = *inputs.wal_newest.get(&id)?;
    let from = e
        .snaps
        .iter()
        .filter(|s| s.kind == BackupKind::Physical && !PhysicalMetadata::of(s).wal_included)
        .filter(|s| cluster(s).as_deref() == Some(id.as_str()))
        .map(|s| s.finished_at)
        .min()?;
    // As the store dates it: Azure to the whole second, so a segment archived in the
    // second a snapshot ended may be listed as archived before it.
    crate::storage::written_at_or_after(to, from).then_some((from, to))
}
