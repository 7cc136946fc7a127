//! What a physical snapshot records about its cluster, as one typed value.
//!
//! Owns [`PhysicalMetadata`] and the names its facts have in a manifest's metadata (the
//! manifest's `metadata` object, [`crate::repository::snapshot::Metadata::extra`]): the one
//! place they are spelled. The backup writes it ([`PhysicalMetadata::write_into`]); restores,
//! the WAL archive's expiry and continuity, the runbook and monitoring read it
//! ([`PhysicalMetadata::of`]). Must not rename a key: manifests written by earlier builds
//! must read as they did, and a name that changed would silently read as absent.
//!
//! Reading is lenient, as each reader's own lookup was: a fact that is absent or not of its
//! type reads as absent (`None`, `false`, empty), and the others still read.

use crate::repository::snapshot::Snapshot;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// The facts a physical snapshot records about the cluster it was taken of. Each is
/// absent in a snapshot of another kind, and in one an older build took before it was
/// recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhysicalMetadata {
    /// The cluster's system identifier (text): whose WAL archive the snapshot belongs to.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub system_identifier: Option<String>,
    /// The cluster's WAL segment size in bytes.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub wal_segment_size: Option<u64>,
    /// Whether the snapshot carries the WAL from its start to its stop itself (archiving was
    /// off or went elsewhere): restorable to its end, not to later points.
    #[serde(default, deserialize_with = "lenient")]
    pub wal_included: bool,
    /// The server's data directory at backup time.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub data_directory: Option<String>,
    /// Owner (uid, gid) of the data directory at backup time.
    #[serde(
        rename = "data_directory_owner",
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub owner: Option<(u32, u32)>,
    /// The server's major version.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub major_version: Option<u32>,
    /// The server's block size in bytes (the size of the chunks files were cut into).
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub block_size: Option<u32>,
    /// The database the source URL names (whose tables `row_counts` lists).
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub database: Option<String>,
    /// The bootstrap superuser (role oid 10), for connecting to a test-restored cluster.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub bootstrap_superuser: Option<String>,
    /// Whether `row_counts` are the planner's estimates rather than exact counts.
    #[serde(default, deserialize_with = "lenient")]
    pub row_counts_estimated: bool,
    /// When the backup stopped, as the server's host's clock said.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_time: Option<jiff::Timestamp>,
    /// Tablespaces: oid → original location.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tablespaces: BTreeMap<String, String>,
    /// The earlier snapshot whose unchanged files this one took over.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub parent: Option<String>,
    /// How many files were taken over from the parent.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub files_reused: Option<u64>,
    /// How many bytes those files hold.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub bytes_reused: Option<u64>,
}

/// A value of its type, or the type's default when it is of another (as `as_str`,
/// `as_u64` and the like read it).
fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(T::deserialize(value).unwrap_or_default())
}

impl PhysicalMetadata {
    /// The facts `snap` records (none for a snapshot of another kind).
    pub fn of(snap: &Snapshot) -> PhysicalMetadata {
        PhysicalMetadata::read(&snap.metadata.extra)
    }

    /// The facts a manifest's metadata map holds.
    pub fn read(extra: &BTreeMap<String, serde_json::Value>) -> PhysicalMetadata {
        let map: serde_json::Map<String, serde_json::Value> =
            extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        // Every field reads leniently and has a default: only a non-object could fail.
        serde_json::from_value(serde_json::Value::Object(map)).unwrap_or_default()
    }

    /// Writes the facts into a manifest's metadata map, each under its recorded name; absent
    /// ones are left out.
    pub fn write_into(&self, extra: &mut BTreeMap<String, serde_json::Value>) {
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(self) {
            extra.extend(map);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A physical snapshot's metadata as a build before [`PhysicalMetadata`] wrote it, key by
    /// key.
    const OLD_MANIFEST_METADATA: &str = r#"{
        "row_counts": {"public.rooms": 40},
        "schema_version": null,
        "server_version": "PostgreSQL 15.8",
        "system_identifier": "7412345678901234567",
        "wal_segment_size": 16777216,
        "wal_included": false,
        "data_directory": "/var/lib/postgresql/15/main",
        "data_directory_owner": [105, 112],
        "major_version": 15,
        "block_size": 8192,
        "database": "hotel",
        "bootstrap_superuser": "postgres",
        "row_counts_estimated": true,
        "stop_time": "2026-12-01T22:59:00.123456Z",
        "tablespaces": {"16390": "/srv/ts1"},
        "parent": "ab12cd34",
        "files_reused": 1200,
        "bytes_reused": 44040192
    }"#;

    #[test]
    fn manifests_written_under_the_old_key_names_read_and_round_trip() {
        let md: crate::repository::snapshot::Metadata =
            serde_json::from_str(OLD_MANIFEST_METADATA).unwrap();
        let facts = PhysicalMetadata::read(&md.extra);
        assert_eq!(
            facts,
            PhysicalMetadata {
                system_identifier: Some("7412345678901234567".into()),
                wal_segment_size: Some(16 << 20),
                wal_included: false,
                data_directory: Some("/var/lib/postgresql/15/main".into()),
                owner: Some((105, 112)),
                major_version: Some(15),
                block_size: Some(8192),
                database: Some("hotel".into()),
                bootstrap_superuser: Some("postgres".into()),
                row_counts_estimated: true,
                stop_time: Some("2026-12-01T22:59:00.123456Z".parse().unwrap()),
                tablespaces: [("16390".to_string(), "/srv/ts1".to_string())].into(),
                parent: Some("ab12cd34".into()),
                files_reused: Some(1200),
                bytes_reused: Some(44040192),
            }
        );
        // Written back, the map is the one the old build wrote, key for key.
        let mut written = BTreeMap::new();
        facts.write_into(&mut written);
        assert_eq!(written, md.extra);
    }

    #[test]
    fn a_fact_of_the_wrong_type_reads_as_absent_and_the_others_still_read() {
        let mut extra = BTreeMap::new();
        extra.insert("major_version".to_string(), serde_json::json!("fifteen"));
        extra.insert("wal_included".to_string(), serde_json::json!("yes"));
        extra.insert("stop_time".to_string(), serde_json::json!("yesterday"));
        extra.insert("database".to_string(), serde_json::json!("hotel"));
        let facts = PhysicalMetadata::read(&extra);
        assert_eq!(facts.major_version, None);
        assert!(!facts.wal_included);
        assert_eq!(facts.stop_time, None);
        assert_eq!(facts.database.as_deref(), Some("hotel"));
        // A snapshot of another kind records none of them.
        assert_eq!(
            PhysicalMetadata::read(&BTreeMap::new()),
            PhysicalMetadata::default()
        );
    }
}
