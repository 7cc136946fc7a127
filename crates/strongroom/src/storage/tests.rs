use super::*;

fn exercise(s: &Storage) {
    assert!(s.list("snapshots/").unwrap().is_empty());
    s.put("snapshots/aa", b"one").unwrap();
    s.put("data/0a/0abc", b"0123456789").unwrap();
    s.put("snapshots/aa", b"two").unwrap();
    assert_eq!(s.get("snapshots/aa").unwrap(), b"two");
    assert_eq!(s.get_range("data/0a/0abc", 3, 4).unwrap(), b"3456");
    assert!(s.exists("data/0a/0abc").unwrap());
    assert!(!s.exists("data/0a/nope").unwrap());
    assert!(matches!(s.get("nope"), Err(Error::Missing { .. })));
    let keys: Vec<_> = s
        .list("data/")
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(keys, vec![("data/0a/0abc".to_string(), 10)]);
    s.delete("snapshots/aa").unwrap();
    s.delete("snapshots/aa").unwrap();
    assert!(s.list("snapshots/").unwrap().is_empty());
}

/// [`exercise`] and what the repository relies on beyond it (a range past an object's
/// end is damage; listings carry write times), on each object store the test run has:
/// a fresh prefix under `STRONGROOM_TEST_S3`, `_AZURE` and `_GCS` (`./scripts/test`
/// starts Garage, Azurite and fake-gcs-server). Under CI a missing one fails.
#[test]
fn object_store_backends() {
    for var in [
        "STRONGROOM_TEST_S3",
        "STRONGROOM_TEST_AZURE",
        "STRONGROOM_TEST_GCS",
    ] {
        let Some(base) = env(var) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{var} is not set: run the suite through ./scripts/test"
            );
            eprintln!("note: {var} unset, skipped (./scripts/test sets it)");
            continue;
        };
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let url = format!("{}/unit-{t:x}", base.trim_end_matches('/'));
        let s = Storage::from_url(&url).unwrap();
        exercise(&s);
        s.put("data/0a/0abc", b"0123456789").unwrap();
        for (offset, len) in [(8, 4), (10, 1), (20, 4)] {
            let e = s.get_range("data/0a/0abc", offset, len).unwrap_err();
            assert!(
                matches!(e, Error::Corrupt { .. }),
                "{url}: {offset}+{len} of 10 bytes: {e:?}"
            );
        }
        let listed = s.list("data/").unwrap();
        assert!(listed[0].modified.is_some(), "{url}: {listed:?}");
        s.delete("data/0a/0abc").unwrap();
    }
}

#[test]
fn memory_backend() {
    exercise(&Storage::from_url("memory://").unwrap());
}

#[test]
fn local_backend_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::from_url(dir.path().to_str().unwrap()).unwrap();
    exercise(&s);
    let url = format!("file://{}", dir.path().display());
    exercise(&Storage::from_url(&url).unwrap());
    let leftovers: Vec<_> = walkdir(dir.path())
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walkdir(p: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            v.extend(walkdir(&e.path()));
        } else {
            v.push(e.path().display().to_string());
        }
    }
    v
}

#[test]
fn bad_urls_are_refused_with_a_reason() {
    for (u, want) in [
        ("ftp://x", "unknown scheme"),
        ("s3://", "bucket"),
        ("file://relative", "absolute"),
        ("", "empty"),
    ] {
        let e = Storage::from_url(u).unwrap_err().to_string();
        assert!(e.contains(want), "{u}: {e}");
    }
}

#[test]
fn a_servers_error_body_becomes_one_clause() {
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>x</RequestId></Error>\n";
    assert_eq!(one_line(xml), "SlowDown: Please reduce your request rate.");
    let json = "{\"error\": {\"code\": 503, \"message\": \"Backend Error\"}}";
    assert_eq!(one_line(json), "Backend Error");
    assert_eq!(one_line("\n  first\nsecond"), "first");
}
