//! A PostgreSQL cluster as its data directory shows it: which cluster it is, and its LSNs.
//!
//! Owns reading the few facts strongroom needs straight from a data directory, without a
//! server: the system identifier (`global/pg_control`, first 8 bytes, the same layout in every
//! version since 9.0) and the major version (`PG_VERSION`). `wal push` and `wal fetch` run in
//! the data directory (PostgreSQL starts `archive_command` and `restore_command` there) and act
//! for the cluster they find, never for one named elsewhere: that is the wrong-cluster guard
//! pgBackRest calls a stanza check. Also owns LSN text (`16/B374D848`). Must not talk to a
//! server or to the repository.

use crate::error::{Error, Result};
use std::path::Path;

/// Which cluster a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterId {
    /// `initdb`'s random system identifier, shared by a primary, its standbys and every
    /// copy restored from their backups.
    pub system_identifier: u64,
    /// Major version (15, 18, …).
    pub major: u32,
}

impl ClusterId {
    /// The system identifier as text (as `pg_controldata` prints it and WAL folders use it).
    pub fn system_id(&self) -> String {
        self.system_identifier.to_string()
    }
}

/// Reads which cluster the data directory `dir` belongs to.
pub fn identify(dir: &Path) -> Result<ClusterId> {
    let control = dir.join("global/pg_control");
    let bytes = std::fs::read(&control).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::WrongCluster(format!(
                "{} is not a PostgreSQL data directory (it has no global/pg_control); \
                 `wal push` and `wal fetch` must run from PostgreSQL's archive_command and \
                 restore_command, which start in the data directory",
                dir.display()
            ))
        } else {
            Error::io("reading", &control, e)
        }
    })?;
    if bytes.len() < 16 {
        return Err(Error::WrongCluster(format!(
            "{} is too short to be a pg_control file",
            control.display()
        )));
    }
    let system_identifier = u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes"));
    let version_file = dir.join("PG_VERSION");
    let text = std::fs::read_to_string(&version_file)
        .map_err(|e| Error::io("reading", &version_file, e))?;
    let major = text.trim().parse().map_err(|_| {
        Error::WrongCluster(format!(
            "{} does not hold a PostgreSQL major version",
            version_file.display()
        ))
    })?;
    Ok(ClusterId {
        system_identifier,
        major,
    })
}

/// A WAL position (log sequence number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses `X/Y` (hex halves), as PostgreSQL prints LSNs.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn(((hi as u64) << 32) | lo as u64))
    }

    /// The number of the WAL segment holding this position.
    pub fn segment(self, segment_size: u64) -> u64 {
        self.0 / segment_size
    }

    /// The number of the segment holding the byte just before this position: the last
    /// segment a backup that stopped here needs (its stop LSN points past its end record).
    pub fn segment_before(self, segment_size: u64) -> u64 {
        Lsn(self.0.saturating_sub(1)).segment(segment_size)
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip_and_name_their_segment() {
        let l = Lsn::parse("16/B374D848").unwrap();
        assert_eq!(l.to_string(), "16/B374D848");
        assert_eq!(Lsn::parse("0/2000028").unwrap().0, 0x2000028);
        assert_eq!(Lsn::parse("0/2000028").unwrap().segment(16 << 20), 2);
        assert_eq!(Lsn::parse("0/3000000").unwrap().segment_before(16 << 20), 2);
        assert!(Lsn::parse("nonsense").is_none());
        assert!(Lsn::parse("1/").is_none());
        assert!(Lsn::parse("0/1") < Lsn::parse("1/0"));
    }

    #[test]
    fn identifies_a_data_directory_and_refuses_other_places() {
        let d = tempfile::tempdir().unwrap();
        let e = identify(d.path()).unwrap_err().to_string();
        assert!(e.contains("not a PostgreSQL data directory"), "{e}");
        std::fs::create_dir(d.path().join("global")).unwrap();
        let mut control = 7312345678901234567u64.to_le_bytes().to_vec();
        control.resize(8192, 0);
        std::fs::write(d.path().join("global/pg_control"), control).unwrap();
        std::fs::write(d.path().join("PG_VERSION"), "15\n").unwrap();
        let id = identify(d.path()).unwrap();
        assert_eq!(id.system_id(), "7312345678901234567");
        assert_eq!(id.major, 15);
    }
}
