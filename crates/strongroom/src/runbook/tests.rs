//! The runbook's rendering, from constructed inputs: contacts, objectives, the commands for
//! each engine and kind, the PITR window, drill figures, and no secret anywhere.

use super::*;
use crate::repository::journal::{DrillFigures, JournalRecord};
use crate::repository::snapshot::{EngineKind, Metadata};

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-12-01T23:00:00Z";

fn config(text: &str) -> Config {
    Config::parse(
        text,
        std::path::Path::new("/etc/strongroom/strongroom.toml"),
    )
    .unwrap()
}

fn snap(id: &str, source: &str, engine: EngineKind, kind: BackupKind, at: &str) -> Snapshot {
    Snapshot {
        id: id.repeat(64 / id.len()),
        source: source.into(),
        source_location: None,
        engine,
        kind,
        tags: vec![],
        started_at: ts(at),
        finished_at: ts(at) + jiff::SignedDuration::from_secs(60),
        size: 3 * 1024 * 1024,
        added: 1024,
        metadata: Metadata {
            row_counts: [("bookings".into(), 300_000), ("users".into(), 1_000)].into(),
            ..Metadata::default()
        },
        wal: None,
        hostname: "db1".into(),
        program_version: "0.1.0".into(),
        files: vec![],
        append_only: false,
        unvouched: false,
    }
}

fn inputs(cfg: Config, snapshots: Vec<Snapshot>, drills: Vec<JournalRecord>) -> Inputs {
    Inputs {
        config: cfg,
        config_path: Some("/etc/strongroom/strongroom.toml".into()),
        repository: "s3://hotel-backups/prod".into(),
        snapshots,
        drills,
        wal_newest: BTreeMap::new(),
        wal_timelines: BTreeMap::new(),
        captured: BTreeMap::new(),
        only_source: None,
        now: ts(NOW),
        program: "/usr/local/bin/strongroom 0.1.0".into(),
        notes: vec![],
    }
}

const SQLITE: &str = r#"
[sources.hotel]
url = "sqlite:/var/lib/hotel/hotel.db"
before_restore = "systemctl stop hotel"
after_restore = "systemctl start hotel"
[[sources.hotel.checks]]
name = "rooms balance"
sql = "SELECT count(*) = 0 FROM room_inventory WHERE booked > capacity"
[objectives]
rpo = "15m"
rto = "1h"
[[contacts]]
role = "Database administrator"
name = "Ada Lovelace"
phone = "+44 20 7946 0000"
email = "ada@example.com"
[[contacts]]
role = "DevOps lead"
name = "Grace Hopper"
phone = "+1 555 0100"
"#;

#[test]
fn sqlite_commands_contacts_objectives_and_no_drill() {
    let mut pre = snap(
        "ab",
        "hotel",
        EngineKind::Sqlite,
        BackupKind::Full,
        "2026-11-30T10:00:00Z",
    );
    pre.tags = vec!["pre-migration".into()];
    let newest = snap(
        "cd",
        "hotel",
        EngineKind::Sqlite,
        BackupKind::Full,
        "2026-12-01T02:00:00Z",
    );
    let md = render(&inputs(config(SQLITE), vec![pre, newest], vec![])).unwrap();
    for want in [
        "# Emergency runbook: hotel",
        "Written 2026-12-01 23:00:00 UTC",
        "## First 5 minutes",
        "`systemctl stop hotel` (hotel)",
        "Call Database administrator, Ada Lovelace, +44 20 7946 0000",
        "export STRONGROOM_REPO=s3://hotel-backups/prod",
        "export STRONGROOM_CONFIG=/etc/strongroom/strongroom.toml",
        "export STRONGROOM_PASSWORD_FILE=…",
        "AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… AWS_REGION=…",
        "## Restore `hotel` (SQLite)",
        "strongroom restore latest --source hotel --to /var/lib/hotel/hotel.db.restored\n",
        "strongroom restore latest --source hotel --to /var/lib/hotel/hotel.db --force\n",
        "`latest` is the newest snapshot when you run it (snapshot cdcdcdcd when this was written)",
        "strongroom show latest --source hotel   # every table's row count",
        "- before_restore `systemctl stop hotel`: after the copy is checked, before the swap\n",
        "- after_restore `systemctl start hotel`: after the swap, also when it failed\n",
        "sqlite3 /var/lib/hotel/hotel.db.restored 'PRAGMA integrity_check'",
        "sqlite3 /var/lib/hotel/hotel.db.restored 'SELECT count(*) FROM bookings'   # expect 300000 (snapshot cdcdcdcd)",
        "'SELECT count(*) = 0 FROM room_inventory WHERE booked > capacity'   # rooms balance: expect 1",
        "| full | `cdcdcdcd` | 2026-12-01 02:00:00 UTC | 21 h ago | 3.0 MiB |  |",
        "| full | `abababab` | 2026-11-30 10:00:00 UTC | 1 d 13 h ago | 3.0 MiB | pre-migration |",
        "lose at most 15 min of data (RPO), back in service within 1 h (RTO); backups expected full every 1 d.",
        "Last drill: no drill on record — run `strongroom drill`.",
        "| Database administrator | Ada Lovelace | +44 20 7946 0000 | ada@example.com |",
        "| DevOps lead | Grace Hopper | +1 555 0100 | — |",
        "- Repository: `s3://hotel-backups/prod`",
        "- Configuration: `/etc/strongroom/strongroom.toml`",
        "daily 30, weekly 13, monthly 12; point-in-time recovery kept for 7 d",
        "- Program: `/usr/local/bin/strongroom 0.1.0`",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    no_command_pins_an_id(&md, &["cdcdcdcd", "abababab"]);
    // The commands come before the reference material.
    let at = |s: &str| md.find(s).unwrap();
    assert!(at("## First 5 minutes") < at("## Restore"));
    assert!(at("## Restore") < at("## Whom to call"));
    assert!(at("## Whom to call") < at("## Where the backups are"));
}

/// No command in the page's `sh` blocks names a snapshot by id: printed on paper, an id goes
/// stale with the next backup (a comment saying what was expected of which snapshot may).
fn no_command_pins_an_id(md: &str, ids: &[&str]) {
    let mut in_block = false;
    for line in md.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        let command = line.split("   # ").next().unwrap_or(line);
        if in_block {
            for id in ids {
                assert!(
                    !command.contains(id),
                    "{line:?} pins snapshot {id} in\n{md}"
                );
            }
        }
    }
}

#[test]
fn postgres_logical_and_physical_without_secrets() {
    let cfg = config(
        r#"
repository = "s3://AKIAEXAMPLE:wJalrXUtnFEMI@hotel-backups/prod?secret=x"
password_command = "echo hunter2"
[sources.prod]
url = "postgres://app:s3cretpw@db.internal:5432/hotel?sslmode=require"
[sources.prod.objectives]
rto = "30m"
[sources.prod.objectives.interval]
physical = "6h"
"#,
    );
    let logical = snap(
        "11",
        "prod",
        EngineKind::Postgres,
        BackupKind::Logical,
        "2026-12-01T02:00:00Z",
    );
    let mut old = snap(
        "22",
        "prod",
        EngineKind::Postgres,
        BackupKind::Physical,
        "2026-11-24T03:00:00Z",
    );
    let mut new = snap(
        "33",
        "prod",
        EngineKind::Postgres,
        BackupKind::Physical,
        "2026-12-01T21:00:00Z",
    );
    for s in [&mut old, &mut new] {
        s.metadata
            .extra
            .insert("system_identifier".into(), "7301".into());
        s.metadata.extra.insert(
            "data_directory".into(),
            "/var/lib/postgresql/15/main".into(),
        );
        s.metadata.extra.insert("database".into(), "hotel".into());
    }
    let mut i = inputs(cfg.clone(), vec![old, logical, new], vec![]);
    i.repository = cfg.repository.clone().unwrap();
    i.wal_newest
        .insert("7301".into(), ts("2026-12-01T22:55:00Z"));
    let md = render(&i).unwrap();
    for secret in [
        "s3cretpw",
        "hunter2",
        "wJalrXUtnFEMI",
        "AKIAEXAMPLE",
        "secret=x",
    ] {
        assert!(!md.contains(secret), "{secret} leaked into\n{md}");
    }
    for want in [
        "export STRONGROOM_REPO=s3://hotel-backups/prod\n",
        "# password: password_command in the config",
        "export PGPASSWORD=…",
        "## Restore `prod` (PostgreSQL)",
        "strongroom restore latest --source prod --target-db 'postgres://app@db.internal:5432/hotel_restored?sslmode=require'\n",
        "strongroom restore latest --source prod --target-db 'postgres://app@db.internal:5432/hotel?sslmode=require' --force\n",
        "`latest` is the newest logical snapshot when you run it (snapshot 11111111 when this was written)",
        "psql 'postgres://app@db.internal:5432/hotel_restored?sslmode=require' -Atc 'SELECT count(*) FROM bookings'",
        "No before_restore/after_restore hooks are configured",
        "**The repository can recover any time from 2026-11-24 03:01:00 UTC to about 2026-12-01 22:55:00 UTC**",
        "strongroom restore latest --source prod --data-dir /var/lib/postgresql/15/main.restored --time 'YYYY-MM-DD HH:MM:SS' --start",
        "strongroom restore latest --source prod --data-dir /var/lib/postgresql/15/main.restored --latest --start",
        "strongroom restore latest --source prod --data-dir /var/lib/postgresql/15/main --force --time",
        "psql -h db.internal -U app -p PORT -d hotel -Atc 'SELECT count(*) FROM bookings'   # snapshot 33333333 estimated 300000 (planner statistics)",
        "# physical restores with --start: the server runs as the data directory's owner",
        "`export STRONGROOM_PASSWORD_FILE=` the key file `archive_command` uses",
        "and the line that stops it",
        "its own environment must hold STRONGROOM_REPO and STRONGROOM_PASSWORD_FILE",
        "| logical | `11111111` |",
        "| physical | `33333333` |",
        "back in service within 30 min (RTO); backups expected logical every 1 d, physical every 6 h.",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    no_command_pins_an_id(&md, &["11111111", "22222222", "33333333"]);
}

#[test]
fn psql_lines_work_from_roots_shell() {
    // Over a socket, peer authentication wants the role's own system user; over TCP, the
    // host and role of the source's URL (bare `psql` as root would try role "root").
    for (url, want) in [
        (
            "postgres://postgres@/hotel?host=/var/run/postgresql",
            "runuser -u postgres -- psql -h /var/run/postgresql -U postgres -p PORT -d hotel -Atc",
        ),
        (
            "postgres://backup:pw@127.0.0.1:5433/hotel",
            "psql -h 127.0.0.1 -U backup -p PORT -d hotel -Atc",
        ),
    ] {
        let cfg = config(&format!("[sources.prod]\nurl = {url:?}\n"));
        let mut s = snap(
            "55",
            "prod",
            EngineKind::Postgres,
            BackupKind::Physical,
            "2026-12-01T21:00:00Z",
        );
        s.metadata
            .extra
            .insert("system_identifier".into(), "9".into());
        s.metadata.extra.insert("database".into(), "hotel".into());
        let md = render(&inputs(cfg, vec![s], vec![])).unwrap();
        assert!(md.contains(want), "missing {want:?} in\n{md}");
        assert!(!md.contains(":pw@"), "{md}");
    }
}

#[test]
fn physical_without_archive_says_so() {
    let mut s = snap(
        "44",
        "postgres://app@db:5432/hotel",
        EngineKind::Postgres,
        BackupKind::Physical,
        "2026-12-01T21:00:00Z",
    );
    s.metadata
        .extra
        .insert("system_identifier".into(), "9".into());
    let md = render(&inputs(Config::default(), vec![s], vec![])).unwrap();
    assert!(
        md.contains("## Restore `postgres://app@db:5432/hotel` (PostgreSQL)"),
        "{md}"
    );
    assert!(md.contains("**No archived WAL for this cluster**"), "{md}");
    assert!(md.contains("No contacts configured"), "{md}");
}

fn drill_record(ok: bool, figures: Option<DrillFigures>) -> JournalRecord {
    let mut r = JournalRecord::new("drill", ts("2026-11-30T14:00:00Z"));
    r.finished_at = ts("2026-11-30T14:00:42Z");
    r.seconds = 42.0;
    r.source = Some("hotel".into());
    r.snapshot = Some("cd".repeat(32));
    r.ok = ok;
    r.drill = figures;
    if !ok {
        r.error = Some("row counts differ: bookings 10 != 12".into());
    }
    r
}

#[test]
fn drill_figures_are_rendered_against_their_objectives() {
    let figures = DrillFigures {
        rto_seconds: 42.3,
        rto_objective_seconds: 3600.0,
        rpo_seconds: Some(1500.0),
        rpo_objective_seconds: 900.0,
        report: Some("drills/20261130T140042Z-1a2b".into()),
    };
    let md = render(&inputs(
        config(SQLITE),
        vec![],
        vec![drill_record(true, Some(figures))],
    ))
    .unwrap();
    assert!(
        md.contains(
            "Last drill: 2026-11-30 14:00:42 UTC of snapshot `cdcdcdcd`: recovered in 42.3 s \
             (objective 1 h, met); data-loss window 25 min (objective 15 min, **missed**). \
             Report: `drills/20261130T140042Z-1a2b`."
        ),
        "{md}"
    );
    assert!(
        md.contains("**No snapshot of this source is in the repository.**"),
        "{md}"
    );

    let failed = render(&inputs(
        config(SQLITE),
        vec![],
        vec![drill_record(false, None)],
    ))
    .unwrap();
    assert!(
        failed.contains("**failed**: row counts differ: bookings 10 != 12"),
        "{failed}"
    );
    // A drill of another source is not this source's.
    let mut other = drill_record(true, None);
    other.source = Some("elsewhere".into());
    let none = render(&inputs(config(SQLITE), vec![], vec![other])).unwrap();
    assert!(none.contains("no drill on record"), "{none}");
}

#[test]
fn only_one_source_and_unknown_source() {
    let cfg = config(&format!(
        "{SQLITE}\n[sources.other]\nurl = \"sqlite:/srv/other.db\"\n"
    ));
    let mut i = inputs(cfg, vec![], vec![]);
    i.only_source = Some("other".into());
    let md = render(&i).unwrap();
    assert!(
        md.contains("## Restore `other`") && !md.contains("## Restore `hotel`"),
        "{md}"
    );
    i.only_source = Some("sqlite:/srv/other.db".into());
    assert!(render(&i).unwrap().contains("## Restore `other`"));
    i.only_source = Some("nope".into());
    assert!(
        render(&i)
            .unwrap_err()
            .to_string()
            .contains("no source \"nope\"")
    );
}

#[test]
fn hooks_are_shown_without_their_passwords() {
    assert_eq!(
        redact_command("PGPASSWORD=hunter2 psql 'postgres://app:hunter2@db/hotel' -c 'NOTIFY x'"),
        "PGPASSWORD=… psql 'postgres://app@db/hotel' -c 'NOTIFY x'"
    );
    assert_eq!(
        redact_command("systemctl stop hotel"),
        "systemctl stop hotel"
    );
    let cfg = config(
        "[sources.hotel]\nurl = \"sqlite:/srv/hotel.db\"\n\
         before_restore = \"curl -d password=hunter2 https://ops/stop\"\n",
    );
    let md = render(&inputs(cfg, vec![], vec![])).unwrap();
    assert!(!md.contains("hunter2"), "{md}");
    assert!(
        md.contains("- before_restore `curl -d password=… https://ops/stop`"),
        "{md}"
    );
}

#[test]
fn helpers() {
    assert_eq!(sh_quote("/var/lib/hotel.db"), "/var/lib/hotel.db");
    assert_eq!(sh_quote("/srv/my db/it's.db"), "'/srv/my db/it'\\''s.db'");
    assert_eq!(sh_quote(""), "''");
    assert_eq!(
        repository_without_credentials("s3://k:s@bucket/p?x=1"),
        "s3://bucket/p"
    );
    assert_eq!(
        repository_without_credentials("/srv/backups"),
        "/srv/backups"
    );
    let d = std::time::Duration::from_secs;
    assert_eq!(fmt_duration(d(900)), "15 min");
    assert_eq!(fmt_duration(d(5400)), "1 h 30 min");
    assert_eq!(fmt_duration(d(7 * 86_400)), "7 d");
    assert_eq!(fmt_seconds(42.25), "42.2 s");
    assert_eq!(
        postgres::with_dbname("postgres://app@db/hotel", "_restored"),
        "postgres://app@db/hotel_restored"
    );
    assert_eq!(
        postgres::with_dbname("postgres://app@db:5432", "_restored"),
        "postgres://app@db:5432/app_restored"
    );
}

#[test]
fn a_source_with_drills_turned_off_is_not_told_to_run_one() {
    let cfg = config(
        "[sources.dev]\nurl = \"sqlite:/srv/dev.db\"\n[sources.dev.objectives]\nchecklist = { drill = \"off\" }\n",
    );
    let s = snap(
        "cd",
        "dev",
        EngineKind::Sqlite,
        BackupKind::Full,
        "2026-12-01T02:00:00Z",
    );
    let md = render(&inputs(cfg, vec![s], vec![])).unwrap();
    assert!(
        md.contains("Last drill: none on record (drills are turned off for this source)."),
        "{md}"
    );
    assert!(!md.contains("run `strongroom drill`"), "{md}");
}

#[test]
fn the_window_names_the_source_timeline_and_the_forks_beside_it() {
    let mut s = snap(
        "44",
        "postgres://app@db:5432/hotel",
        EngineKind::Postgres,
        BackupKind::Physical,
        "2026-12-01T21:00:00Z",
    );
    s.metadata
        .extra
        .insert("system_identifier".into(), "9".into());
    let mut i = inputs(Config::default(), vec![s], vec![]);
    i.wal_newest.insert("9".into(), ts("2026-12-01T22:55:00Z"));
    let mut facts = super::TimelineFacts {
        source: 1,
        described: "timeline 1 (pushed from /srv/pg on db1), the source's: its data directory pushed to it last".into(),
        forks: vec![],
    };
    i.wal_timelines.insert("9".into(), facts.clone());
    let md = render(&i).unwrap();
    assert!(
        md.contains("to about 2026-12-01 22:55:00 UTC along timeline 1**"),
        "{md}"
    );
    assert!(!md.contains("forks"), "no forks, nothing to say: {md}");
    facts.forks = vec![(
        2,
        "timeline 2 (pushed from /srv/copy on db1), branched from timeline 1 at 0/5800000".into(),
    )];
    i.wal_timelines.insert("9".into(), facts);
    let md = render(&i).unwrap();
    assert!(
        md.contains("Restores follow timeline 1 (pushed from /srv/pg on db1), the source's")
            && md.contains("unless `--timeline N` asks: timeline 2 (pushed from /srv/copy on db1), branched from timeline 1 at 0/5800000."),
        "{md}"
    );
}

/// Azure dates objects to the whole second: a segment archived in the same second a
/// physical snapshot ended (at .6 s) is listed as archived before it, and the window
/// must still be there, compared at the store's precision.
#[test]
fn a_window_closed_within_the_second_of_the_snapshot_is_still_a_window() {
    let mut s = snap(
        "55",
        "postgres://app@db:5432/hotel",
        EngineKind::Postgres,
        BackupKind::Physical,
        "2026-12-01T21:00:00Z",
    );
    s.finished_at = ts("2026-12-01T21:01:00.600Z");
    s.metadata
        .extra
        .insert("system_identifier".into(), "9".into());
    let mut i = inputs(Config::default(), vec![s], vec![]);
    i.wal_newest.insert("9".into(), ts("2026-12-01T21:01:00Z"));
    let md = render(&i).unwrap();
    assert!(
        md.contains("**The repository can recover any time from 2026-12-01 21:01:00 UTC to about 2026-12-01 21:01:00 UTC**"),
        "{md}"
    );
    // A second before the snapshot's end is before it at any precision: no window.
    i.wal_newest.insert("9".into(), ts("2026-12-01T21:00:59Z"));
    let md = render(&i).unwrap();
    assert!(md.contains("**No archived WAL for this cluster**"), "{md}");
}

#[test]
fn each_copy_is_named_with_its_repository_password_and_restore_commands() {
    let cfg = config(
        r#"
repository = "/srv/backups"
[sources.hotel]
url = "sqlite:/var/lib/hotel/hotel.db"
[sources.prod]
url = "postgres://app:s3cretpw@db.internal:5432/hotel"
[[copies]]
name = "offsite"
repository = "s3://AKIAEXAMPLE:wJalrXUtnFEMI@offsite/hotel?sas=tok"
password_file = "/etc/strongroom/offsite"
[[copies]]
repository = "/mnt/usb/strongroom"
password_command = "pass show usb-hunter2"
"#,
    );
    let hotel = snap(
        "44",
        "hotel",
        EngineKind::Sqlite,
        BackupKind::Full,
        "2026-12-01T02:00:00Z",
    );
    let mut physical = snap(
        "55",
        "prod",
        EngineKind::Postgres,
        BackupKind::Physical,
        "2026-12-01T03:00:00Z",
    );
    physical.metadata.extra.insert(
        "data_directory".into(),
        "/var/lib/postgresql/15/main".into(),
    );
    let md = render(&inputs(cfg, vec![hotel, physical], vec![])).unwrap();
    for secret in [
        "s3cretpw",
        "hunter2",
        "wJalrXUtnFEMI",
        "AKIAEXAMPLE",
        "sas=tok",
    ] {
        assert!(!md.contains(secret), "{secret} leaked into\n{md}");
    }
    let section = &md[md.find("## Restore from a copy").expect("the section")..];
    for want in [
        "### Copy `offsite`\n\nRepository `s3://offsite/hotel`.",
        "export STRONGROOM_REPO=s3://offsite/hotel   # the copy",
        "unset STRONGROOM_PASSWORD; export STRONGROOM_PASSWORD_FILE=/etc/strongroom/offsite   # the copy's own password",
        "export AWS_ACCESS_KEY_ID=…",
        "### Copy `/mnt/usb/strongroom`\n\n```sh\n",
        "export STRONGROOM_REPO=/mnt/usb/strongroom   # the copy",
        "unset STRONGROOM_PASSWORD STRONGROOM_PASSWORD_FILE   # the copy's password_command in the config opens it",
        "strongroom restore latest --source hotel --to /var/lib/hotel/hotel.db.restored\n",
        "strongroom restore latest --source prod --data-dir /var/lib/postgresql/15/main.restored --latest --start",
        "STRONGROOM_PASSWORD_FILE must be a key file of the copy",
        "- Copies: `offsite` (`s3://offsite/hotel`), `/mnt/usb/strongroom` (see \"Restore from a copy\")",
    ] {
        assert!(section.contains(want), "missing {want:?} in\n{section}");
    }
    assert_eq!(
        section.matches("strongroom list   #").count(),
        2,
        "{section}"
    );
    no_command_pins_an_id(&md, &["44444444", "55555555"]);
    // No copy configured: no section.
    let md = render(&inputs(config(SQLITE), vec![], vec![])).unwrap();
    assert!(!md.contains("Restore from a copy"), "{md}");
}
