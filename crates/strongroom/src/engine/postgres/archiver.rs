//! PostgreSQL's own view of WAL archiving: `pg_stat_archiver` and the archiving settings.
//!
//! Owns the query and what its answer means (a failing archiver). Must not judge health:
//! what a failing archiver means for recovery is `monitor`'s.

/// What `pg_stat_archiver` and the settings say.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Archiver {
    /// `archive_mode`.
    pub archive_mode: String,
    /// `archive_timeout` in seconds (0: off).
    pub archive_timeout: u64,
    /// Files archived since the statistics were reset.
    pub archived_count: i64,
    /// The last file archived.
    pub last_archived_wal: Option<String>,
    /// When.
    pub last_archived_time: Option<jiff::Timestamp>,
    /// Failed attempts since the statistics were reset.
    pub failed_count: i64,
    /// The last file that failed.
    pub last_failed_wal: Option<String>,
    /// When.
    pub last_failed_time: Option<jiff::Timestamp>,
}

impl Archiver {
    /// Whether the archiver failed since it last archived a file.
    pub fn failing(&self) -> bool {
        self.failed_count > 0
            && self.last_failed_time.is_some()
            && self.last_failed_time > self.last_archived_time
    }
}

/// `pg_stat_archiver`'s counts of files archived and of failed attempts: what a backup
/// watches while it waits for its last segment (one cheap query, where looking at the
/// repository's archive is a listing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Files archived since the statistics were reset.
    pub archived: i64,
    /// Failed attempts since the statistics were reset.
    pub failed: i64,
}

/// The archiver's [`Counts`] now, on an open session; `None` when they cannot be read.
pub fn counts(client: &mut postgres::Client) -> Option<Counts> {
    client
        .query_one(
            "SELECT archived_count, failed_count FROM pg_stat_archiver",
            &[],
        )
        .map(|r| Counts {
            archived: r.get(0),
            failed: r.get(1),
        })
        .ok()
}

/// Asks a PostgreSQL server for `pg_stat_archiver` and the archiving settings.
pub fn ask(url: &str) -> std::result::Result<Archiver, String> {
    let conn = super::server::Conn::parse(url).map_err(|e| e.to_string())?;
    let mut client = conn.connect().map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT current_setting('archive_mode'), \
                    extract(epoch FROM current_setting('archive_timeout')::interval)::bigint, \
                    archived_count, last_archived_wal, \
                    extract(epoch FROM last_archived_time)::float8, \
                    failed_count, last_failed_wal, \
                    extract(epoch FROM last_failed_time)::float8 \
             FROM pg_stat_archiver",
            &[],
        )
        .map_err(|e| format!("pg_stat_archiver: {e}"))?;
    let ts =
        |v: Option<f64>| v.and_then(|s| jiff::Timestamp::from_nanosecond((s * 1e9) as i128).ok());
    Ok(Archiver {
        archive_mode: row.get(0),
        archive_timeout: row.get::<_, i64>(1).max(0) as u64,
        archived_count: row.get(2),
        last_archived_wal: row.get(3),
        last_archived_time: ts(row.get(4)),
        failed_count: row.get(5),
        last_failed_wal: row.get(6),
        last_failed_time: ts(row.get(7)),
    })
}
