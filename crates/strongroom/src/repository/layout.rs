//! Where each kind of object lives in a repository: the one place that spells a folder.
//!
//! Owns the names of the repository's folders and how an object's key is built from its name
//! and read back. Every other module asks [`ObjectKind`] for a key or a folder to list, so a
//! layout change (sharding the index, say) is made here and nowhere else. Must not read or
//! write storage, and must not import anything but the ids: errors and the storage layer
//! name objects through it.
//!
//! ```text
//! config                    format version, repository id, encryption (plain, checksummed)
//! keys/<id>                 key slots: the master key wrapped by a password-derived key
//! data/<xx>/<pack id>       packs of sealed chunk segments, fanned out by the id's first byte
//! index/<id>                chunk id → pack, offset, length (one or more per backup)
//! snapshots/<id>            manifests; the commit point
//! journal/<time>-<rand>     one record per job run, success or failure
//! damage/<pack id>          packs found damaged or missing: backups store their chunks again
//! locks/<id>                who is using the repository (repository::lock)
//! deletions/<time>-<rand>   prune's deletion marks: what it deletes once older locks are gone
//! wal/<system id>/<tli>/<segment>   archived PostgreSQL WAL (repository::archive)
//! frames/<chain>/<seq>      captured SQLite WAL frames after a base snapshot (repository::frames)
//! drills/<time>-<rand>      recovery drill reports (drill)
//! state/<name>              what strongroom remembers between runs (the alerts last sent)
//! expiring/<time>-<rand>    object versions prune hid that wait for their object lock to end
//! catalogs/<id>/i-<hash>    what an append-only key stored, sealed for it (repository::catalog)
//! catalogs/<id>/s-<snap>    the manifest of a snapshot it committed
//! ```

use crate::id::PackId;

/// The object that marks a repository and holds its format version.
pub const CONFIG: &str = "config";

/// Every kind of object a repository stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// The repository's `config` (one object, no folder).
    Config,
    /// A key slot.
    Key,
    /// A pack of chunk segments.
    Pack,
    /// An index object.
    Index,
    /// A snapshot manifest.
    Snapshot,
    /// A job journal record.
    Journal,
    /// A record that a pack was found damaged or missing.
    Damage,
    /// A lock.
    Lock,
    /// A prune's deletion mark.
    Deletion,
    /// An archived WAL file.
    Wal,
    /// A segment of captured SQLite WAL frames (`repository::frames`).
    Frames,
    /// A recovery drill's report.
    Drill,
    /// A small document strongroom remembers between runs (e.g. `state/alerts`).
    State,
    /// Object versions a prune hid on a repository with object lock, waiting for their lock
    /// to end before they are deleted (`repository::expiring`).
    Expiring,
    /// What an append-only key stored, readable by that key (`repository::catalog`).
    Catalog,
}

impl ObjectKind {
    /// Every kind, in the order `check` reads them.
    pub const ALL: [ObjectKind; 15] = [
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Journal,
        ObjectKind::Damage,
        ObjectKind::Lock,
        ObjectKind::Deletion,
        ObjectKind::Wal,
        ObjectKind::Frames,
        ObjectKind::Drill,
        ObjectKind::State,
        ObjectKind::Expiring,
        ObjectKind::Catalog,
    ];

    /// Whether objects of this kind are written under the repository's object lock. Locks,
    /// deletion marks and the expiring list are not: they guard or schedule work and hold
    /// no data, are rewritten (a lock's heartbeat every minute) and must be deletable at
    /// once (a released lock); each locked version would stay stored for the whole lock.
    /// Deleting one loses no backup: at worst a prune waits less, or space is reclaimed
    /// later.
    pub fn locked(self) -> bool {
        !matches!(
            self,
            ObjectKind::Lock | ObjectKind::Deletion | ObjectKind::Expiring
        )
    }

    /// The folders of the kinds written without the object lock (see [`ObjectKind::locked`]).
    pub fn unlocked_folders() -> Vec<&'static str> {
        Self::ALL
            .into_iter()
            .filter(|k| !k.locked())
            .map(ObjectKind::folder)
            .collect()
    }

    /// The prefix under which objects of this kind are listed (`config` is its own key).
    pub fn folder(self) -> &'static str {
        match self {
            ObjectKind::Config => CONFIG,
            ObjectKind::Key => "keys/",
            ObjectKind::Pack => "data/",
            ObjectKind::Index => "index/",
            ObjectKind::Snapshot => "snapshots/",
            ObjectKind::Journal => "journal/",
            ObjectKind::Damage => "damage/",
            ObjectKind::Lock => "locks/",
            ObjectKind::Deletion => "deletions/",
            ObjectKind::Wal => "wal/",
            ObjectKind::Frames => "frames/",
            ObjectKind::Drill => "drills/",
            ObjectKind::State => "state/",
            ObjectKind::Expiring => "expiring/",
            ObjectKind::Catalog => "catalogs/",
        }
    }

    /// The key of the object of this kind called `name`. Packs are fanned out by the first
    /// two hex digits of their name, so no folder holds more than 1/256 of them.
    pub fn key(self, name: &str) -> String {
        match self {
            ObjectKind::Config => CONFIG.to_string(),
            ObjectKind::Pack => format!("data/{}/{name}", &name[..2.min(name.len())]),
            other => format!("{}{name}", other.folder()),
        }
    }

    /// The name of the object at `key` when `key` is of this kind.
    pub fn name_of(self, key: &str) -> Option<&str> {
        match self {
            ObjectKind::Config => (key == CONFIG).then_some(key),
            ObjectKind::Pack => {
                let rest = key.strip_prefix("data/")?;
                let (fan, name) = rest.split_once('/')?;
                (name.starts_with(fan) && !name.is_empty()).then_some(name)
            }
            other => key.strip_prefix(other.folder()).filter(|n| !n.is_empty()),
        }
    }

    /// The kind of the object at `key`, if it is one of the repository's.
    pub fn of_key(key: &str) -> Option<ObjectKind> {
        Self::ALL.into_iter().find(|k| k.name_of(key).is_some())
    }
}

impl PackId {
    /// The object key of this pack, e.g. `data/ab/ab12…`.
    pub fn object_key(&self) -> String {
        ObjectKind::Pack.key(&self.to_hex())
    }

    /// Parses a pack's object key back into its id.
    pub fn from_object_key(key: &str) -> Option<Self> {
        PackId::from_hex(ObjectKind::Pack.name_of(key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_per_kind() {
        let pack = "ab".repeat(32);
        for kind in ObjectKind::ALL {
            let key = kind.key(&pack);
            assert_eq!(ObjectKind::of_key(&key), Some(kind), "{key}");
            let want = if kind == ObjectKind::Config {
                CONFIG
            } else {
                pack.as_str()
            };
            assert_eq!(kind.name_of(&key), Some(want), "{key}");
        }
        assert_eq!(ObjectKind::Pack.key(&pack), format!("data/ab/{pack}"));
        let id = PackId([0xab; 32]);
        assert_eq!(PackId::from_object_key(&id.object_key()), Some(id));
        assert_eq!(ObjectKind::of_key("data/cd/ab12"), None, "wrong fan-out");
        assert_eq!(ObjectKind::of_key("elsewhere/x"), None);
        assert_eq!(ObjectKind::Snapshot.name_of("snapshots/"), None);
    }
}
