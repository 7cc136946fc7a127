//! The conversions, against croner itself: a pattern written out again (or moved to UTC)
//! must name the very times croner names for the original; refusals name what they
//! refuse. The schedulers' own checks (systemd-analyze, crontab -n, the schemas) run in
//! the command-line tests.

use super::super::{Plan, pattern, time_zone};
use super::*;
use std::path::Path;

fn fields(text: &str) -> Fields {
    Fields::of(&pattern(text).expect("a pattern"))
}

fn t(s: &str) -> Timestamp {
    s.parse().expect("an RFC 3339 time")
}

/// The first `n` times of `patterns` (any of them) in `tz` after 2026-01-01.
fn times(patterns: &[String], tz: &str, n: usize) -> Vec<Timestamp> {
    let tz = time_zone(tz).expect("a zone");
    let ps: Vec<Pattern> = patterns
        .iter()
        .map(|p| pattern(p).expect("parses"))
        .collect();
    let mut out = Vec::new();
    let mut cursor = t("2026-01-01T00:00:00Z");
    while out.len() < n {
        let Some(next) = ps.iter().filter_map(|p| p.next_after(cursor, &tz)).min() else {
            break;
        };
        out.push(next);
        cursor = next;
    }
    out
}

#[test]
fn croner_bits_are_read_as_croner_sets_them() {
    assert!(fields("0 2 L * *").last_day);
    let w = fields("0 2 15W * *");
    assert!(w.nearest_weekday && !w.last_day);
    let lw = fields("0 2 LW * *");
    assert!(lw.nearest_weekday && !lw.last_day);
    assert_eq!(fields("0 2 * * 1#2").nth, [(1, 2)]);
    assert_eq!(fields("0 2 * * 5#5").nth, [(5, 5)]);
    assert_eq!(fields("0 2 * * 5L").last_weekdays, [5]);
    assert!(fields("0 2 1 * +1").both);
    let plain = fields("0 2 * * 7");
    assert_eq!(plain.weekdays, [0]);
    assert!(plain.nth.is_empty() && plain.last_weekdays.is_empty() && !plain.last_day);
}

#[test]
fn cron_fields_come_out_as_numbers_every_cron_reads() {
    for (given, written) in [
        ("0 2 * * *", "0 2 * * *"),
        ("*/15 9-17 * JAN,APR MON-FRI", "*/15 9-17 * 1,4 1-5"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("0 2 * * 7", "0 2 * * 0"),
        ("5-59/20 * * * *", "5,25,45 * * * *"),
        ("0 0 ? * *", "0 0 * * *"),
        ("0 */6 * * *", "0 */6 * * *"),
        ("0 5 1 1,4,7,10 *", "0 5 1 1,4,7,10 *"),
        ("0 0 1-31 * 1", "0 0 1-31 * 1"),
        ("0 0 1,15 * 1,3", "0 0 1,15 * 1,3"),
        ("0 1-2,4 * * SUN,SAT", "0 1,2,4 * * 0,6"),
    ] {
        let cron = fields(given).cron().expect("expressible");
        assert_eq!(cron, written, "{given}");
        // And croner reads the result as the same times.
        assert_eq!(
            times(&[cron], "UTC", 300),
            times(&[given.to_string()], "UTC", 300),
            "{given}"
        );
    }
}

#[test]
fn croner_only_features_are_refused_by_cron_never_dropped() {
    for (given, refusal) in [
        ("0 2 L * *", Refusal::LastDay),
        ("0 2 15W * *", Refusal::NearestWeekday),
        ("0 2 * * 1#2", Refusal::NthWeekday),
        ("0 2 * * 5L", Refusal::LastWeekday),
        ("0 2 1 * +1", Refusal::BothDays),
        ("0 2 1,L * *", Refusal::LastDay),
    ] {
        assert_eq!(fields(given).cron(), Err(refusal), "{given}");
    }
}

#[test]
fn on_calendar_says_what_croner_says() {
    for (given, tz, lines) in [
        ("0 2 * * *", "UTC", vec!["*-*-* 02:00:00 UTC"]),
        (
            "*/15 9-17 * JAN,APR MON-FRI",
            "Europe/Paris",
            vec!["Mon..Fri *-01,04-* 09..17:00/15:00 Europe/Paris"],
        ),
        (
            "0 5 1 1,4,7,10 *",
            "UTC",
            vec!["*-01,04,07,10-01 05:00:00 UTC"],
        ),
        ("30 3 L * *", "UTC", vec!["*-*~01 03:30:00 UTC"]),
        ("0 2 * * 1#2", "UTC", vec!["Mon *-*-08..14 02:00:00 UTC"]),
        ("0 2 * * 5L", "UTC", vec!["Fri *-*~07/1 02:00:00 UTC"]),
        (
            "0 2 1,15 * 1",
            "UTC",
            vec!["*-*-01,15 02:00:00 UTC", "Mon *-*-* 02:00:00 UTC"],
        ),
        ("0 2 1 * +1", "UTC", vec!["Mon *-*-01 02:00:00 UTC"]),
        (
            "0,30 0-3,12 * * *",
            "UTC",
            vec!["*-*-* 00..03,12:00/30:00 UTC"],
        ),
        ("0 0 * * 6,0", "UTC", vec!["Sun,Sat *-*-* 00:00:00 UTC"]),
    ] {
        assert_eq!(
            fields(given).on_calendar(tz).expect(given),
            lines,
            "{given}"
        );
    }
    assert_eq!(
        fields("0 2 15W * *").on_calendar("UTC"),
        Err(Refusal::NearestWeekday)
    );
}

#[test]
fn moved_to_utc_the_times_stay_the_same() {
    for (given, tz, offset) in [
        ("0 2 * * *", "Asia/Kolkata", 330),
        ("*/20 1-3 * * *", "Asia/Kolkata", 330),
        ("0 2 * * 1-5", "Asia/Tokyo", 540),
        ("0 0,12 * * 1", "Asia/Tokyo", 540),
        ("45 23 * * 0", "America/Panama", -300),
        ("0 10 1,15 * *", "Asia/Tokyo", 540),
        ("0 8 2,15 * 3", "Asia/Tokyo", 540),
        ("0 2 * * *", "UTC", 0),
    ] {
        let moved: Vec<String> = fields(given)
            .to_utc(offset)
            .expect(given)
            .iter()
            .map(|f| f.cron().expect("plain"))
            .collect();
        assert_eq!(
            times(&moved, "UTC", 400),
            times(&[given.to_string()], tz, 400),
            "{given} in {tz} as {moved:?}"
        );
    }
    assert_eq!(
        fields("0 5 1 1,4,7,10 *").to_utc(540),
        Err(Refusal::NotMovable),
        "the first of a month at 05:00 in Tokyo is the last of the month before in UTC"
    );
    assert_eq!(fields("0 2 1 * *").to_utc(180), Err(Refusal::NotMovable));
    assert_eq!(fields("0 2 * 6 *").to_utc(180), Err(Refusal::NotMovable));
    assert_eq!(fields("0 2 L * *").to_utc(0), Err(Refusal::LastDay));
}

#[test]
fn status_runs_as_often_as_cron_can_say_without_running_more_often() {
    for (secs, p) in [
        (60, "* * * * *"),
        (300, "*/5 * * * *"),
        (420, "*/10 * * * *"),
        (2700, "0 * * * *"),
        (3600, "0 * * * *"),
        (5 * 3600, "0 */6 * * *"),
        (30 * 3600, "0 0 * * *"),
    ] {
        assert_eq!(status_pattern(Duration::from_secs(secs)), p, "{secs}s");
    }
}

fn config(toml: &str) -> Config {
    Config::parse(toml, Path::new("s.toml")).expect("parses")
}

fn opts() -> Options {
    Options {
        program: "/usr/local/bin/strongroom".into(),
        global: vec!["--config".into(), "/etc/strongroom/strongroom.toml".into()],
        workflow_config: "deploy/strongroom.toml".into(),
        config_shown: "/etc/strongroom/strongroom.toml".into(),
        image: "strongroom:test".into(),
        now: t("2026-12-07T00:00:00Z"),
    }
}

fn exported(format: Format, toml: &str) -> Result<Vec<ExportFile>> {
    let c = config(toml);
    export(format, &Plan::of(&c).expect("a plan"), &c, None, &opts())
}

const TWO: &str = "[sources.hotel]\nurl = \"sqlite:/srv/hotel.db\"\n[sources.db]\nurl = \"postgres://app@db/hotel\"\n[[copies]]\nrepository = \"/mnt/copy\"\n";

#[test]
fn runs_follow_the_plan_with_copies_after_backups_and_one_check() {
    let c = config(TWO);
    let runs = runs(&Plan::of(&c).unwrap(), None, Duration::from_secs(300)).unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "db-logical",
            "db-physical",
            "db-verify",
            "db-drill",
            "db-prune",
            "check",
            "hotel-full",
            "hotel-verify",
            "hotel-drill",
            "hotel-prune",
            "status"
        ]
    );
    let full = &runs[6];
    let steps: Vec<&[String]> = full.steps.iter().map(|s| s.args.as_slice()).collect();
    assert_eq!(
        steps,
        [
            &["backup", "hotel", "--kind", "full", "--quiet"][..],
            &["copy", "--source", "hotel", "--quiet"][..]
        ]
    );
    assert_eq!(full.what, "full backup of hotel, then its copy");
    assert_eq!(runs[10].pattern.text, "*/5 * * * *");
    // Only one source's runs: its check, and status for it alone.
    let one = super::runs(
        &Plan::of(&c).unwrap(),
        Some("hotel"),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(one.len(), 6);
    assert_eq!(
        one[5].steps[0].args,
        ["status", "--source", "hotel", "--quiet"]
    );
}

#[test]
fn refusals_name_the_source_the_job_and_the_format() {
    let last = "[sources.hotel]\nurl = \"sqlite:/srv/hotel.db\"\n[sources.hotel.schedule]\nverify = \"0 4 L * *\"\n";
    for format in [Format::Crontab, Format::Kubernetes, Format::GithubActions] {
        let e = exported(format, last).unwrap_err().to_string();
        assert!(
            e.contains(
                "sources.hotel.schedule.verify = \"0 4 L * *\" uses L (the last day of the month)"
            ) && e.contains(format.called()),
            "{e}"
        );
    }
    // systemd can say it.
    let units = exported(Format::Systemd, last).unwrap();
    let timer = units
        .iter()
        .find(|f| f.name == "strongroom-hotel-verify.timer")
        .unwrap();
    assert!(
        timer.text.contains("OnCalendar=*-*~01 04:00:00 UTC\n"),
        "{}",
        timer.text
    );

    let paris = "[sources.hotel]\nurl = \"sqlite:/srv/hotel.db\"\n[sources.hotel.schedule]\ntimezone = \"Europe/Paris\"\n";
    let e = exported(Format::GithubActions, paris)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sources.hotel.schedule.timezone = \"Europe/Paris\" changes its UTC offset")
            && e.contains("timezone = \"UTC\""),
        "{e}"
    );
    let e = exported(Format::Crontab, "repository = \"/srv/r\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("names no sources"), "{e}");
}

#[test]
fn github_actions_moves_a_fixed_zone_to_utc() {
    let kolkata = "[sources.hotel]\nurl = \"sqlite:/srv/hotel.db\"\n[sources.hotel.schedule]\ntimezone = \"Asia/Kolkata\"\n";
    // The strategy's drill, 05:00 on the first of a quarter's month, is 23:30 UTC on the
    // last day of the month before: cron cannot say that.
    let e = exported(Format::GithubActions, kolkata)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sources.hotel.schedule.drill = \"0 5 1 1,4,7,10 *\" uses times that fall on another date"), "{e}");
    let kolkata = format!("{kolkata}drill = \"0 12 1 1,4,7,10 *\"\n");
    let text = &exported(Format::GithubActions, &kolkata).unwrap()[0].text;
    // 02:00 in Kolkata is 20:30 UTC the day before.
    assert!(text.contains("    - cron: \"30 20 * * *\"\n"), "{text}");
    assert!(text.contains("github.event.schedule == '30 20 * * *' || inputs.run == 'hotel-full'"));
    assert!(text.contains("STRONGROOM_PASSWORD: ${{ secrets.STRONGROOM_PASSWORD }}"));
    assert!(text.contains("STRONGROOM_REPO: ${{ secrets.STRONGROOM_REPO }}"));
    assert!(text.contains("group: \"strongroom-hotel\""));
}

#[test]
fn systemd_units_chain_the_copy_and_keep_missed_runs() {
    let jitter = format!("{TWO}[sources.hotel.schedule]\njitter = \"10m\"\n");
    let units = exported(Format::Systemd, &jitter).unwrap();
    let get = |n: &str| &units.iter().find(|f| f.name == n).unwrap().text;
    let service = get("strongroom-hotel-full.service");
    let run = "ExecStart=/usr/local/bin/strongroom --config /etc/strongroom/strongroom.toml";
    assert!(
        service.contains(&format!(
            "{run} backup hotel --kind full --quiet\n{run} copy --source hotel --quiet\n"
        )),
        "{service}"
    );
    let timer = get("strongroom-hotel-full.timer");
    for line in [
        "OnCalendar=*-*-* 02:00:00 UTC\n",
        "RandomizedDelaySec=600\n",
        "Persistent=true\n",
    ] {
        assert!(timer.contains(line), "{line} in {timer}");
    }
    assert!(!get("strongroom-db-logical.timer").contains("RandomizedDelaySec"));
    assert!(units.iter().all(|f| f.text.starts_with(MARKER)));
}

#[test]
fn crontab_lines_are_quiet_escaped_and_delayed() {
    let mut o = opts();
    o.global = vec!["--config".into(), "/etc/100%/strongroom.toml".into()];
    let c = config(&format!(
        "{TWO}[sources.hotel.schedule]\njitter = \"10m\"\n"
    ));
    let text = &export(Format::Crontab, &Plan::of(&c).unwrap(), &c, None, &o).unwrap()[0].text;
    let line = text
        .lines()
        .find(|l| l.contains("backup hotel"))
        .expect("the hotel backup");
    assert!(line.starts_with("0 2 * * * sleep "), "{line}");
    assert!(
        line.contains(
            "--config '/etc/100\\%/strongroom.toml' backup hotel --kind full --quiet && "
        )
    );
    assert!(line.ends_with("copy --source hotel --quiet"), "{line}");
    let delay: u64 = line["0 2 * * * sleep ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(delay < 600);
    assert!(text.contains("status --quiet >/dev/null\n"));
    assert!(text.contains("\nCRON_TZ=UTC\n"));
}

#[test]
fn files_are_replaced_only_when_an_export_wrote_them() {
    let dir = tempfile::tempdir().unwrap();
    let ours = |name: &str, body: &str| ExportFile {
        name: name.into(),
        text: format!("{MARKER} --format systemd` from x: …\n{body}"),
    };
    write_files(
        dir.path(),
        &[
            ours("strongroom-a.timer", "1"),
            ours("strongroom-b.timer", "1"),
        ],
        false,
    )
    .unwrap();
    std::fs::write(dir.path().join("strongroom-c.timer"), "mine\n").unwrap();
    let stale = write_files(dir.path(), &[ours("strongroom-a.timer", "2")], false).unwrap();
    assert_eq!(stale, [dir.path().join("strongroom-b.timer")]);
    assert!(
        std::fs::read_to_string(dir.path().join("strongroom-a.timer"))
            .unwrap()
            .ends_with("2")
    );
    let e = write_files(
        dir.path(),
        &[
            ours("strongroom-a.timer", "3"),
            ours("strongroom-c.timer", "3"),
        ],
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("strongroom-c.timer exists and was not written by"),
        "{e}"
    );
    // Nothing was written: the refusal comes first.
    assert!(
        std::fs::read_to_string(dir.path().join("strongroom-a.timer"))
            .unwrap()
            .ends_with("2")
    );
    write_files(dir.path(), &[ours("strongroom-c.timer", "4")], true).unwrap();
    assert!(
        std::fs::read_to_string(dir.path().join("strongroom-c.timer"))
            .unwrap()
            .ends_with("4")
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
