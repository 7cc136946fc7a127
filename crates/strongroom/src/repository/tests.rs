//! The repository's own tests: init and open, passwords and key slots, format versions.

use super::*;

fn fast() -> KdfParams {
    KdfParams {
        m_kib: 1024,
        t: 1,
        p: 1,
    }
}

#[test]
fn init_open_passwords_and_versions() {
    let s = Storage::from_url("memory://").unwrap();
    let repo = Repository::init(s.clone(), Some(b"pw1"), fast()).unwrap();
    assert!(matches!(
        Repository::init(s.clone(), Some(b"x"), fast()),
        Err(Error::RepositoryExists(_))
    ));
    assert!(matches!(
        Repository::open(s.clone(), Some(b"nope")),
        Err(Error::WrongPassword { slots: 1 })
    ));
    assert!(matches!(
        Repository::open(s.clone(), None),
        Err(Error::PasswordMissing)
    ));
    repo.add_password(b"pw2", fast(), "second").unwrap();
    let a = Repository::open(s.clone(), Some(b"pw1")).unwrap();
    let b = Repository::open(s.clone(), Some(b"pw2")).unwrap();
    assert_eq!(a.key().chunk_id(b"x"), b.key().chunk_id(b"x"));

    // a newer format is refused by name
    let mut cfg = a.config().clone();
    cfg.version = FORMAT_VERSION + 1;
    s.put(
        layout::CONFIG,
        &crypto::seal_plain(CONFIG_AAD, &serde_json::to_vec(&cfg).unwrap()),
    )
    .unwrap();
    let e = Repository::open(s.clone(), Some(b"pw1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("newer"), "{e}");
    // an altered (re-checksummed) config no longer matches the keys
    cfg.version = FORMAT_VERSION;
    cfg.compression_level = 19;
    s.put(
        layout::CONFIG,
        &crypto::seal_plain(CONFIG_AAD, &serde_json::to_vec(&cfg).unwrap()),
    )
    .unwrap();
    let e = Repository::open(s, Some(b"pw1")).unwrap_err().to_string();
    assert!(e.contains("does not match"), "{e}");
}

/// A new repository lays dumps out by columns; one of format 1 (made by an older build,
/// which cannot read that layout) keeps writing them as they are.
#[test]
fn only_a_repository_of_format_2_gets_the_column_layout() {
    let s = Storage::from_url("memory://").unwrap();
    let repo = Repository::init(s, Some(b"pw"), fast()).unwrap();
    assert_eq!(repo.config().version, 2);
    assert_eq!(repo.config().stream_layout(), pack::Layout::Columns);
    let mut old = repo.config().clone();
    old.version = 1;
    assert_eq!(old.stream_layout(), pack::Layout::AsIs);
}

#[test]
fn key_slots_list_damage_and_removal_keeps_one() {
    let s = Storage::from_url("memory://").unwrap();
    assert!(matches!(
        Repository::init(s.clone(), Some(b""), fast()),
        Err(Error::EmptyPassword)
    ));
    let repo = Repository::init(s.clone(), Some(b"pw1"), fast()).unwrap();
    assert!(matches!(
        repo.add_password(b"", fast(), "empty"),
        Err(Error::EmptyPassword)
    ));
    let first = repo.key_slot_names().unwrap().remove(0);
    let second = repo.add_password(b"pw2", fast(), "second").unwrap();
    // a damaged slot is listed with why, and does not lock out the other password
    s.put(&ObjectKind::Key.key(&first), b"garbage").unwrap();
    let slots = repo.key_slots().unwrap();
    assert_eq!(slots.len(), 2);
    let (bad, good): (Vec<_>, Vec<_>) = slots.iter().partition(|(_, r)| r.is_err());
    assert_eq!(bad[0].0, first);
    assert_eq!(good[0].1.as_ref().unwrap().label, "second");
    assert!(Repository::open(s.clone(), Some(b"pw2")).is_ok());
    // the last readable slot stays; a short or unknown reference is refused
    assert!(matches!(
        repo.remove_key_slot(&second[..6]),
        Err(Error::LastKeySlot(_))
    ));
    assert!(matches!(
        repo.remove_key_slot(&second[..5]),
        Err(Error::BadReference(_))
    ));
    assert!(matches!(
        repo.remove_key_slot("ffffffffff"),
        Err(Error::NoKeySlot(_))
    ));
    assert_eq!(repo.remove_key_slot(&first).unwrap(), first);
    assert_eq!(repo.key_slot_names().unwrap(), [second]);
}

#[test]
fn missing_repository_and_unencrypted() {
    let s = Storage::from_url("memory://").unwrap();
    assert!(matches!(
        Repository::open(s.clone(), None),
        Err(Error::NoRepository(_))
    ));
    let r = Repository::init(s.clone(), None, fast()).unwrap();
    assert!(!r.key().is_encrypted());
    let r2 = Repository::open(s, None).unwrap();
    assert_eq!(r.key().chunk_id(b"a"), r2.key().chunk_id(b"a"));
}
