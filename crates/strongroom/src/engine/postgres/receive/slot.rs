//! The replication slot `wal receive` streams through, as the server reports it
//! (`pg_replication_slots`), for `status`.
//!
//! Owns the query and its answer. Must not judge it: a missing slot, a lost one or one
//! that holds back too much WAL is `monitor`'s to weigh.

/// What the server says of a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotState {
    /// `wal_status`: `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes of WAL the slot holds back on the server (`pg_current_wal_lsn() -
    /// restart_lsn`).
    pub retained: Option<u64>,
    /// Whether a receiver is connected through it.
    pub active: bool,
}

/// Asks the server at `url` for slot `slot`: `Ok(None)` when it has none of that name;
/// `Err` with a sentence when the server cannot be asked.
pub fn ask(url: &str, slot: &str) -> std::result::Result<Option<SlotState>, String> {
    let conn = super::super::server::Conn::parse(url).map_err(|e| e.to_string())?;
    let mut client = conn.connect().map_err(|e| e.to_string())?;
    let row = client
        .query_opt(
            "SELECT wal_status, \
                    CASE WHEN pg_is_in_recovery() THEN NULL \
                         ELSE (pg_current_wal_lsn() - restart_lsn)::int8 END, \
                    active \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .map_err(|e| format!("pg_replication_slots: {}", conn.explain(&e)))?;
    Ok(row.map(|r| SlotState {
        wal_status: r.get(0),
        retained: r.get::<_, Option<i64>>(1).map(|b| b.max(0) as u64),
        active: r.get(2),
    }))
}
