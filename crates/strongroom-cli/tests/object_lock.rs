//! S3 Object Lock end to end (`init --object-lock`), against moto's S3 server, which
//! enforces it (`scripts/moto-up`; Garage has no object lock). Each test first proves the
//! enforcement: a direct DELETE of a locked object version must fail, and the same request
//! for an unlocked version must succeed (so the refusal is the lock's, not a bad request).
//!
//! moto's clock is real: lock expiry is not waited for. Commands run under `faketime`
//! where a later "now" matters (extension, check); the planning of deletes after expiry is
//! unit-tested with a faked clock in the library.

use serde_json::Value;
use std::sync::Mutex;
use strongroom::object_lock::{LockMode, LockPolicy};
use strongroom::repository::layout::ObjectKind;
use strongroom::storage::Storage;

mod common;
use common::{Env, unique};

/// The process environment holds Garage's AWS_* for the other stores; a Storage for moto is
/// built with moto's, under this lock, and the environment put back.
static ENV: Mutex<()> = Mutex::new(());

/// moto's endpoint and credentials, as `scripts/moto-up` exports them.
fn moto_vars() -> Option<Vec<(&'static str, String)>> {
    let get = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let Some(endpoint) = get("STRONGROOM_TEST_S3_LOCK_ENDPOINT") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "STRONGROOM_TEST_S3_LOCK_ENDPOINT is not set: run the suite through ./scripts/test"
        );
        eprintln!(
            "note: STRONGROOM_TEST_S3_LOCK unset, object-lock scenarios skipped (./scripts/test starts moto)"
        );
        return None;
    };
    Some(vec![
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", get("STRONGROOM_TEST_S3_LOCK_KEY_ID")?),
        (
            "AWS_SECRET_ACCESS_KEY",
            get("STRONGROOM_TEST_S3_LOCK_SECRET")?,
        ),
        ("AWS_REGION", "us-east-1".into()),
    ])
}

/// A repository on moto: a fresh prefix in the lock-enabled bucket (`lock`) or the plain one.
struct Moto {
    env: Env,
    vars: Vec<(&'static str, String)>,
}

impl Moto {
    fn new(lock: bool) -> Option<Moto> {
        let vars = moto_vars()?;
        let var = if lock {
            "STRONGROOM_TEST_S3_LOCK"
        } else {
            "STRONGROOM_TEST_S3_NOLOCK"
        };
        let base = std::env::var(var).expect("moto-up exports both buckets");
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
            repo: format!("{}/{}", base.trim_end_matches('/'), unique()),
        };
        Some(Moto { env, vars })
    }

    fn cmd(&self) -> assert_cmd::Command {
        let mut c = self.env.cmd();
        c.envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())));
        c
    }

    /// The binary under faketime from `at` on, with moto's variables.
    fn at(&self, at: &str) -> assert_cmd::Command {
        let mut c = self.env.at(at);
        c.envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())));
        c
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut c = self.cmd();
        c.args(args);
        common::json_of(c)
    }

    /// A Storage on this repository's prefix that writes and reads object locks as the
    /// repository does (`policy`).
    fn storage(&self, policy: LockPolicy) -> Storage {
        let _held = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let saved: Vec<(&str, Option<String>)> = self
            .vars
            .iter()
            .map(|(k, _)| (*k, std::env::var(k).ok()))
            .collect();
        for (k, v) in &self.vars {
            // SAFETY: under ENV; the tests of this file read these only under it.
            unsafe { std::env::set_var(k, v) };
        }
        let s = Storage::from_url(&self.env.repo)
            .and_then(|s| s.with_object_lock(policy, &ObjectKind::unlocked_folders()));
        for (k, v) in saved {
            match v {
                // SAFETY: as above.
                Some(v) => unsafe { std::env::set_var(k, v) },
                None => unsafe { std::env::remove_var(k) },
            }
        }
        s.unwrap()
    }

    /// Proves the store enforces object lock before a test relies on it: a locked
    /// version's DELETE is refused, an unlocked version's same DELETE succeeds.
    fn prove_enforcement(&self) {
        let s = self.storage(LockPolicy {
            days: 1,
            mode: LockMode::Governance,
        });
        s.put("proof/locked", b"locked").unwrap();
        let locked = s.lock_of("proof/locked", None).unwrap().unwrap();
        assert!(locked.until.is_some(), "{locked:?}");
        let v = locked.version.expect("a versioned bucket names versions");
        assert!(
            !s.delete_version("proof/locked", &v).unwrap(),
            "the store deleted a locked version: it does not enforce object lock"
        );
        // Locks are written without an object lock: the same request deletes it.
        s.put("locks/proof", b"unlocked").unwrap();
        let unlocked = s.lock_of("locks/proof", None).unwrap().unwrap();
        assert_eq!(unlocked.until, None);
        assert!(
            s.delete_version("locks/proof", &unlocked.version.unwrap())
                .unwrap()
        );
        assert!(s.lock_of("locks/proof", None).unwrap().is_none());
    }
}

fn sqlite_source(env: &Env) -> String {
    let db = env.path("hotel.db");
    common::make_db(&db, 200);
    format!("sqlite:{}", db.display())
}

/// Every object a backup writes is locked for the days asked, in the mode asked; locks are
/// not left behind; the repository restores.
#[test]
fn init_object_lock_locks_every_object() {
    for (days, mode) in [(2u32, "governance"), (1, "compliance")] {
        let Some(m) = Moto::new(true) else { return };
        m.prove_enforcement();
        let mut init = m.cmd();
        init.args(["init", "--object-lock", &days.to_string()]);
        if mode == "compliance" {
            init.args(["--lock-mode", mode]);
        }
        let doc = common::json_of(init);
        assert_eq!(doc["object_lock"]["days"], days, "{doc}");
        assert_eq!(doc["object_lock"]["mode"], mode, "{doc}");
        let src = sqlite_source(&m.env);
        let before = jiff::Timestamp::now();
        let snap = m.json(&["backup", &src]);
        let s = m.storage(LockPolicy {
            days,
            mode: LockMode::parse(mode).unwrap(),
        });
        let objects = s.list("").unwrap();
        let kinds: Vec<_> = objects
            .iter()
            .filter_map(|o| ObjectKind::of_key(&o.key))
            .collect();
        for want in [
            ObjectKind::Config,
            ObjectKind::Key,
            ObjectKind::Pack,
            ObjectKind::Index,
            ObjectKind::Snapshot,
            ObjectKind::Journal,
        ] {
            assert!(kinds.contains(&want), "{want:?} not in {objects:?}");
        }
        assert!(
            !kinds.contains(&ObjectKind::Lock),
            "the backup's lock was left: {objects:?}"
        );
        for o in objects.iter().filter(|o| !o.key.starts_with("proof/")) {
            let l = s.lock_of(&o.key, None).unwrap().unwrap();
            let until = l.until.unwrap_or_else(|| panic!("{} is not locked", o.key));
            let span = until.duration_since(before);
            assert!(
                span >= jiff::SignedDuration::from_hours(24 * i64::from(days))
                    - jiff::SignedDuration::from_secs(1),
                "{}: locked until {until}, written after {before}",
                o.key
            );
            assert_eq!(l.mode, LockMode::parse(mode), "{}", o.key);
            // And the store holds it: its version cannot be deleted.
            assert!(!s.delete_version(&o.key, &l.version.unwrap()).unwrap());
        }
        let to = m.env.path("restored.db");
        m.cmd()
            .args(["restore", snap["id"].as_str().unwrap(), "--to"])
            .arg(&to)
            .assert()
            .success();
        assert_eq!(common::bookings_in(&to), 200);
    }
}

/// A store that cannot lock is refused by init in one sentence, and nothing is written;
/// so are a lock of no days and a mode without a lock.
#[test]
fn init_object_lock_refuses_stores_without_it() {
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
        repo: "s3://nowhere/x".into(),
    };
    let out = env
        .cmd()
        .args(["init", "--lock-mode", "compliance"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    if let Some(m) = Moto::new(true) {
        let out = m
            .cmd()
            .args(["init", "--object-lock", "0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("out of range"), "{err}");
    }
    let mut places: Vec<(String, Vec<(&'static str, String)>)> = Vec::new();
    let local = tempfile::tempdir().unwrap();
    places.push((local.path().join("repo").display().to_string(), vec![]));
    if let Some(m) = Moto::new(false) {
        places.push((m.env.repo.clone(), m.vars.clone()));
    }
    if let Some(garage) = common::Store::S3.env() {
        let vars = [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ]
        .into_iter()
        .filter_map(|k| Some((k, std::env::var(k).ok()?)))
        .collect();
        places.push((garage.repo.clone(), vars));
    }
    for (repo, vars) in places {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
            repo: repo.clone(),
        };
        let _held = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let out = env
            .cmd()
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .args(["init", "--object-lock", "7"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{repo}: {err}");
        assert!(err.contains("cannot lock objects"), "{repo}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{repo}: {err}");
        let listed = env
            .cmd()
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .args(["list"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&listed.stderr).contains("no strongroom repository"),
            "{repo}: init wrote something: {}",
            String::from_utf8_lossy(&listed.stderr)
        );
    }
}

/// Versions (not delete markers) under `prefix` that are no longer current.
fn hidden_versions(s: &Storage, prefix: &str) -> Vec<strongroom::object_lock::ObjectVersion> {
    s.versions(prefix)
        .unwrap()
        .into_iter()
        .filter(|v| !v.latest && !v.delete_marker)
        .collect()
}

/// `forget --prune` hides what no kept snapshot needs at once (listings, restores and
/// check are as on any store) but never asks S3 to delete a locked version: it reports the
/// bytes waiting, and a later prune deletes those versions once their lock has ended; one
/// run when strongroom's clock says they ended but the store still holds them (moto's
/// clock is real) deletes nothing and keeps them waiting.
#[test]
fn prune_waits_for_the_lock_then_deletes_the_versions() {
    let Some(m) = Moto::new(true) else { return };
    m.prove_enforcement();
    m.cmd()
        .args(["init", "--object-lock", "1"])
        .assert()
        .success();
    let policy = LockPolicy {
        days: 1,
        mode: LockMode::Governance,
    };
    let s = m.storage(policy);
    let db = m.env.path("hotel.db");
    common::make_db(&db, 300);
    let src = format!("sqlite:{}", db.display());
    m.json(&["backup", &src]);
    std::fs::remove_file(&db).unwrap();
    strongroom::hotel::create(&db, strongroom::hotel::Scale::bookings(400), 7).unwrap();
    let kept = m.json(&["backup", &src]);
    let doc = m.json(&["forget", "--keep-last", "1", "--prune"]);
    let p = &doc["prune"];
    assert!(p["packs_deleted"].as_u64().unwrap() > 0, "{doc}");
    let waiting = p["bytes_waiting_for_lock"].as_u64().unwrap();
    let versions = p["versions_waiting_for_lock"].as_u64().unwrap();
    assert!(waiting >= p["bytes_deleted"].as_u64().unwrap(), "{doc}");
    assert_eq!(p["versions_released"], 0, "{doc}");
    assert!(p["next_lock_end"].is_string(), "{doc}");
    // Hidden, still stored, still locked.
    let hidden = hidden_versions(&s, "");
    assert_eq!(hidden.len() as u64, versions, "{hidden:?}");
    for v in &hidden {
        assert!(!s.delete_version(&v.key, &v.version).unwrap(), "{v:?}");
    }
    let text = m.cmd().args(["prune"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("waiting for their object lock to end"),
        "{text}"
    );

    // Two days later by strongroom's clock, but the store's locks hold: nothing deleted,
    // and the dates read again.
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(50))
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let mut c = m.at(&later);
    c.arg("prune");
    let p = common::json_of(c);
    assert_eq!(p["versions_released"], 0, "{p}");
    assert_eq!(
        p["versions_waiting_for_lock"].as_u64(),
        Some(versions),
        "{p}"
    );
    assert_eq!(hidden_versions(&s, "").len() as u64, versions);

    // The locks end (moto, unlike AWS, lets a test set a past date), and the next prune
    // deletes exactly the versions it hid, and the delete markers in front of them.
    for v in &hidden {
        s.extend_lock(
            &v.key,
            Some(&v.version),
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
        )
        .unwrap();
    }
    let mut c = m.at(&later);
    c.arg("prune");
    let p = common::json_of(c);
    assert_eq!(p["versions_released"].as_u64(), Some(versions), "{p}");
    assert_eq!(p["bytes_released"].as_u64(), Some(waiting), "{p}");
    assert_eq!(p["versions_waiting_for_lock"], 0, "{p}");
    assert!(hidden_versions(&s, "").is_empty());
    let markers: Vec<_> = s
        .versions("")
        .unwrap()
        .into_iter()
        .filter(|v| v.delete_marker && !v.key.starts_with("locks/"))
        .collect();
    assert!(markers.is_empty(), "{markers:?}");
    assert_eq!(m.json(&["check", "--read-data"])["ok"], true);
    let to = m.env.path("restored.db");
    m.cmd()
        .args(["restore", kept["id"].as_str().unwrap(), "--to"])
        .arg(&to)
        .assert()
        .success();
    assert_eq!(common::bookings_in(&to), 400);
}

/// `strongroom_time` as faketime takes it, `hours` from now.
fn hours_on(hours: i64) -> (jiff::Timestamp, String) {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(hours);
    (t, t.strftime("%Y-%m-%d %H:%M:%S").to_string())
}

/// `forget --prune` keeps what a restore needs locked the policy's days ahead of its clock
/// (extending each lock past that by a margin, so the next daily run extends nothing), and
/// leaves the journal with the lock it was written with.
#[test]
fn forget_prune_keeps_what_kept_snapshots_need_locked_ahead() {
    let Some(m) = Moto::new(true) else { return };
    m.prove_enforcement();
    m.cmd()
        .args(["init", "--object-lock", "2"])
        .assert()
        .success();
    let src = sqlite_source(&m.env);
    m.json(&["backup", &src]);
    let s = m.storage(LockPolicy {
        days: 2,
        mode: LockMode::Governance,
    });
    let journal_before: Vec<_> = s
        .list("journal/")
        .unwrap()
        .into_iter()
        .map(|o| {
            (
                o.key.clone(),
                s.lock_of(&o.key, None).unwrap().unwrap().until,
            )
        })
        .collect();
    // A day and a half on, every lock written with the backup ends within a day.
    let (later, at) = hours_on(36);
    let mut c = m.at(&at);
    c.args(["forget", "--keep-last", "5", "--prune"]);
    let doc = common::json_of(c);
    let r = &doc["object_lock"];
    let objects = r["objects"].as_u64().unwrap();
    assert!(objects >= 5, "{doc}");
    assert_eq!(r["extended"].as_u64(), Some(objects), "{doc}");
    let want = later + jiff::SignedDuration::from_hours(48);
    for kind in strongroom::jobs::locking::NEEDED_KINDS {
        let keys: Vec<String> = if kind == ObjectKind::Config {
            vec!["config".into()]
        } else {
            s.list(kind.folder())
                .unwrap()
                .into_iter()
                .map(|o| o.key)
                .collect()
        };
        for key in keys {
            let until = s.lock_of(&key, None).unwrap().unwrap().until.unwrap();
            assert!(until >= want, "{key}: locked until {until}, wanted {want}");
        }
    }
    for (key, until) in journal_before {
        assert_eq!(
            s.lock_of(&key, None).unwrap().unwrap().until,
            until,
            "{key}"
        );
    }
    // The next run the same day extends nothing: the margin holds.
    let mut c = m.at(&at);
    c.args(["forget", "--keep-last", "5", "--prune"]);
    let doc = common::json_of(c);
    assert_eq!(doc["object_lock"]["extended"], 0, "{doc}");
    assert_eq!(
        doc["object_lock"]["objects"].as_u64(),
        Some(objects),
        "{doc}"
    );
}

/// `check` reads the lock of every object the kept snapshots need and reports those whose
/// lock ends before the snapshots could be released (here: the strategy keeps a daily
/// snapshot at least until the 30th day after its own, and the lock is one day), and those
/// whose lock is already over, by its clock.
#[test]
fn check_reports_locks_that_end_before_the_snapshots_need() {
    let Some(m) = Moto::new(true) else { return };
    m.prove_enforcement();
    m.cmd()
        .args(["init", "--object-lock", "1"])
        .assert()
        .success();
    let src = sqlite_source(&m.env);
    let snap = m.json(&["backup", &src]);
    let doc = m.json(&["check"]);
    assert_eq!(doc["ok"], true, "{doc}");
    let c = &doc["object_lock"];
    assert_eq!(c["days"], 1, "{doc}");
    let objects = c["objects"].as_u64().unwrap();
    assert!(objects >= 4, "{doc}");
    assert_eq!(c["unprotected"], 0, "{doc}");
    assert_eq!(c["short"].as_u64(), Some(objects), "{doc}");
    let gaps = c["gaps"].as_array().unwrap();
    let short_id = &snap["short_id"];
    let pack = gaps
        .iter()
        .find(|g| g["object"].as_str().unwrap().starts_with("data/"))
        .unwrap_or_else(|| panic!("no pack among {gaps:?}"));
    assert!(
        pack["snapshots"].as_array().unwrap().contains(short_id),
        "{pack}"
    );
    let needed: jiff::Timestamp = pack["needed_until"].as_str().unwrap().parse().unwrap();
    assert!(
        needed >= jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 29),
        "{pack}"
    );
    let text = m.cmd().arg("check").output().unwrap();
    let err = String::from_utf8_lossy(&text.stderr);
    assert!(text.status.success(), "{err}");
    assert!(
        err.contains("lock ends before the snapshots that need"),
        "{err}"
    );

    // Three days on by its clock, every lock is over: unprotected now.
    let (_, at) = hours_on(72);
    let mut c = m.at(&at);
    c.arg("check");
    let doc = common::json_of(c);
    assert_eq!(
        doc["object_lock"]["unprotected"].as_u64(),
        Some(objects),
        "{doc}"
    );
}

/// What an intruder with the host's credentials can do to a pack: hide it behind a delete
/// marker. `check` names it missing (and says the locks could not be judged, without
/// hiding the damage), the locked version is still there, and removing the marker brings
/// the repository back whole.
#[test]
fn a_hidden_pack_is_damage_check_names_and_the_version_brings_back() {
    let Some(m) = Moto::new(true) else { return };
    m.prove_enforcement();
    m.cmd()
        .args(["init", "--object-lock", "1"])
        .assert()
        .success();
    let src = sqlite_source(&m.env);
    let snap = m.json(&["backup", &src]);
    let s = m.storage(LockPolicy {
        days: 1,
        mode: LockMode::Governance,
    });
    let pack = s.list("data/").unwrap().remove(0).key;
    s.delete(&pack).unwrap();
    assert!(s.list("data/").unwrap().is_empty());
    let out = m.cmd().arg("check").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&pack), "{err}");
    assert!(err.contains("could not be judged"), "{err}");
    // The locked version survived the DELETE; removing the marker in front of it restores it.
    let versions = s.versions(&pack).unwrap();
    let marker = versions.iter().find(|v| v.delete_marker).unwrap();
    assert!(versions.iter().any(|v| !v.delete_marker));
    assert!(s.delete_version(&pack, &marker.version).unwrap());
    assert_eq!(m.json(&["check", "--read-data"])["ok"], true);
    let to = m.env.path("restored.db");
    m.cmd()
        .args(["restore", snap["id"].as_str().unwrap(), "--to"])
        .arg(&to)
        .assert()
        .success();
    assert_eq!(common::bookings_in(&to), 200);
}

/// A sweep killed between recording a version and hiding its object leaves the version
/// listed while it is still the object's current one: a prune after its lock ended must
/// leave it (and the snapshot that needs it) alone.
#[test]
fn a_recorded_version_still_current_is_never_deleted() {
    let Some(m) = Moto::new(true) else { return };
    m.prove_enforcement();
    m.cmd()
        .args(["init", "--object-lock", "1"])
        .assert()
        .success();
    let src = sqlite_source(&m.env);
    let snap = m.json(&["backup", &src]);
    let s = m.storage(LockPolicy {
        days: 1,
        mode: LockMode::Governance,
    });
    let pack = s.list("data/").unwrap().remove(0);
    let state = s.lock_of(&pack.key, None).unwrap().unwrap();
    let version = state.version.clone().unwrap();
    // As a killed sweep leaves it: recorded, not hidden; and its lock over at the store.
    let repo =
        strongroom::repository::Repository::open(s.clone(), Some(common::PASSWORD.as_bytes()))
            .unwrap();
    repo.write_expiring(&[strongroom::repository::expiring::ExpiringVersion {
        key: pack.key.clone(),
        version: version.clone(),
        size: pack.size,
        until: state.until,
    }])
    .unwrap();
    s.extend_lock(
        &pack.key,
        Some(&version),
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
    )
    .unwrap();
    let (_, at) = hours_on(50);
    let mut c = m.at(&at);
    c.arg("prune");
    let p = common::json_of(c);
    assert_eq!(p["versions_released"], 0, "{p}");
    assert_eq!(p["versions_waiting_for_lock"], 1, "{p}");
    assert_eq!(
        s.lock_of(&pack.key, None).unwrap().unwrap().version,
        Some(version)
    );
    assert_eq!(m.json(&["check", "--read-data"])["ok"], true);
    let to = m.env.path("restored.db");
    m.cmd()
        .args(["restore", snap["id"].as_str().unwrap(), "--to"])
        .arg(&to)
        .assert()
        .success();
}

/// `status` shows the repository's lock and, once a kept snapshot's lock has ended (renewal
/// fell behind), warns in the source's `protection` check, naming the snapshot.
#[test]
fn status_shows_the_lock_and_warns_once_a_kept_snapshots_lock_ended() {
    let Some(m) = Moto::new(true) else { return };
    m.prove_enforcement();
    m.cmd()
        .args(["init", "--object-lock", "1"])
        .assert()
        .success();
    let src = sqlite_source(&m.env);
    let snap = m.json(&["backup", &src]);
    let short = snap["short_id"].as_str().unwrap().to_string();
    let status = |cmd: &mut assert_cmd::Command| -> Value {
        let out = cmd.args(["status", "--json"]).output().unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let protection_check = |doc: &Value| -> Value {
        doc["sources"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "protection")
            .unwrap_or_else(|| panic!("no protection check: {doc}"))
            .clone()
    };
    let now = status(&mut m.cmd());
    let p = &now["protection"][0];
    assert_eq!(p["object_lock"]["days"], 1, "{now}");
    assert_eq!(p["object_lock"]["mode"], "governance", "{now}");
    assert_eq!(p["full_keys"], 1, "{now}");
    assert_eq!(
        p["unlocked_snapshots"].as_array().unwrap().len(),
        0,
        "{now}"
    );
    let c = protection_check(&now);
    assert_eq!(c["level"], "ok", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("object lock governance 1 days"),
        "{c}"
    );
    // Three days on, nothing renewed the locks.
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(72))
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let then = status(&mut m.at(&later));
    let c = protection_check(&then);
    assert_eq!(c["level"], "warning", "{c}");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains(&short) && detail.contains("forget --prune"),
        "{detail}"
    );
}

/// `init --copy-of URL --object-lock DAYS`: a copy whose every object is locked, filled by
/// `copy` from an unlocked primary, restores; its packs cannot be deleted.
#[test]
fn a_copy_can_be_locked_where_its_primary_is_not() {
    let Some(m) = Moto::new(true) else { return };
    m.prove_enforcement();
    let primary = common::envs_on(&[common::Store::Local]).remove(0);
    primary.init();
    let src = sqlite_source(&primary);
    let snap = primary.json(&["backup", &src]);
    let mut init = m.cmd();
    init.args(["init", "--copy-of", &primary.repo, "--object-lock", "1"])
        .env("STRONGROOM_FROM_PASSWORD", common::PASSWORD);
    let doc = common::json_of(init);
    assert_eq!(doc["object_lock"]["days"], 1, "{doc}");
    let mut copy = primary.cmd();
    copy.args(["copy", "--to", &m.env.repo])
        .env("STRONGROOM_TO_PASSWORD", common::PASSWORD)
        .envs(m.vars.iter().map(|(k, v)| (*k, v.as_str())));
    let report = common::json_of(copy);
    assert_eq!(report["copies"][0]["snapshots_copied"], 1, "{report}");
    let s = m.storage(LockPolicy {
        days: 1,
        mode: LockMode::Governance,
    });
    let packs = s.list(ObjectKind::Pack.folder()).unwrap();
    assert!(!packs.is_empty());
    for o in packs
        .iter()
        .chain(&s.list(ObjectKind::Snapshot.folder()).unwrap())
    {
        let l = s.lock_of(&o.key, None).unwrap().unwrap();
        assert!(l.until.is_some(), "{} is not locked", o.key);
        assert!(!s.delete_version(&o.key, &l.version.unwrap()).unwrap());
    }
    let back = m.env.path("back.db");
    m.cmd()
        .args(["restore", snap["id"].as_str().unwrap(), "--to"])
        .arg(&back)
        .assert()
        .success();
    assert!(common::invariant_holds(&back));
}
