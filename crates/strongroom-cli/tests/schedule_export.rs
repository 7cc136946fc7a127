//! `strongroom schedule export`, run as the real binary, its output checked by each
//! scheduler's own tools: `systemd-analyze verify` on the units (and `systemd-analyze
//! calendar` must name the very times croner names), Debian cron's `crontab -n` on the
//! crontab and on every CronJob and workflow schedule, `check-jsonschema`'s GitHub
//! workflow schema, and `kubernetes-validate`'s strict CronJob schema. A missing tool is a
//! skip with a note, except under CI (CI set), where ./scripts/test has installed them all.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use strongroom::config::Config;
use strongroom::schedule::Plan;
use strongroom::schedule::export::runs;

/// Where ./scripts/test installs check-jsonschema and kubernetes-validate (pip --target).
const SCHEMA_TOOLS: &str = "/var/cache/strongroom-test/schema-tools";

/// Every job a plan can hold, in zones with and without daylight saving and with a fixed
/// offset, jitter, a copy after each backup, and patterns with lists, ranges, steps and
/// names: what every format can express.
const PLAIN: &str = r#"
repository = "s3://hotel-backups/prod"

[sources.hotel]
url = "sqlite:/srv/hotel.db"

[sources.hotel.schedule]
jitter = "10m"
verify = "*/30 9-17 * JAN,APR MON-FRI"
drill = "@monthly"

[sources.db]
url = "postgres://app@db/hotel"

[sources.db.schedule]
timezone = "Asia/Kolkata"
drill = "0 12 1 1,4,7,10 *"
check = "15 3 * * SUN"

[[copies]]
repository = "s3://offsite/hotel"
"#;

/// croner's L and #: systemd says them, the cron formats refuse them.
const CRONER_ONLY: &str = r#"
[sources.hotel]
url = "sqlite:/srv/hotel.db"

[sources.hotel.schedule]
timezone = "Europe/Paris"
verify = "0 9 * * 1#1"
prune = "30 3 L * *"
drill = "0 5 * * 5L"
"#;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(config: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("strongroom.toml"), config).unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `strongroom --config strongroom.toml schedule export ARGS`, in the setup's directory.
    fn export(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .current_dir(self.dir.path())
            .env("STRONGROOM_STATE_DIR", self.path("state"))
            .env_remove("STRONGROOM_REPO")
            .env_remove("STRONGROOM_PASSWORD_FILE")
            .env_remove("STRONGROOM_CONFIG")
            .args(["--config", "strongroom.toml", "schedule", "export"])
            .args(args)
            .output()
            .unwrap()
    }

    fn exported(&self, args: &[&str]) -> String {
        let out = self.export(args);
        assert!(
            out.status.success(),
            "export {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Whether `tool` can run; when not, says the test skips it (or fails under CI).
fn present(tool: &str, probe: &mut Command) -> bool {
    let ok = probe.output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} missing: ./scripts/test installs it"
        );
        eprintln!("skipped: {tool} is not installed (./scripts/test installs it)");
    }
    ok
}

fn python(module: &str) -> Command {
    let mut c = Command::new("python3");
    c.env("PYTHONPATH", SCHEMA_TOOLS).args(["-m", module]);
    c
}

/// `crontab -n` accepts `text` (when cron is installed).
fn crontab_accepts(text: &str, dir: &Path) {
    if !present(
        "crontab (Debian's cron)",
        Command::new("sh").args(["-c", "command -v crontab"]),
    ) {
        return;
    }
    let file = dir.join("check.crontab");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("crontab")
        .arg("-n")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crontab -n refused:\n{text}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The quoted value after `key: ` on each line that has it.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.trim_start().trim_start_matches("- ").strip_prefix(key))
        .map(|v| v.trim().trim_matches('"'))
        .collect()
}

/// The first `n` times `systemd-analyze calendar` names for the timer's `OnCalendar=`
/// lines together, from 2026-01-01 UTC.
fn systemd_times(timer: &str, n: usize) -> Vec<jiff::Timestamp> {
    let mut out = Vec::new();
    for spec in timer.lines().filter_map(|l| l.strip_prefix("OnCalendar=")) {
        let o = Command::new("systemd-analyze")
            .env("TZ", "UTC")
            .args(["calendar", "--base-time=2026-01-01 00:00:00 UTC"])
            .arg(format!("--iterations={n}"))
            .arg(spec)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{spec}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        for line in String::from_utf8(o.stdout).unwrap().lines() {
            let line = line.trim();
            if line.starts_with("Next elapse:") || line.starts_with("Iter. #") {
                let words: Vec<&str> = line.split_whitespace().collect();
                let at = &words[words.len() - 3..words.len() - 1].join("T");
                let civil: jiff::civil::DateTime = at.parse().unwrap();
                out.push(civil.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp());
            }
        }
    }
    out.sort();
    out.dedup();
    out.truncate(n);
    out
}

#[test]
fn systemd_units_pass_systemd_analyze_and_fire_when_croner_says() {
    for config in [PLAIN, CRONER_ONLY] {
        let s = Setup::new(config);
        let printed = s.exported(&["--format", "systemd"]);
        assert!(printed.starts_with("# ==> strongroom-"), "{printed}");
        let listing = s.exported(&["--format", "systemd", "--output", "units"]);
        let files: Vec<PathBuf> = std::fs::read_dir(s.path("units"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(listing.lines().count(), files.len(), "{listing}");
        // The files hold what was printed, file by file.
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            let name = f.file_name().unwrap().to_string_lossy();
            assert!(
                printed.contains(&format!("# ==> {name} <==\n{text}")),
                "{name}"
            );
        }
        if !present(
            "systemd-analyze",
            Command::new("systemd-analyze").arg("--version"),
        ) {
            return;
        }
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .args(&files)
            .output()
            .unwrap();
        // It logs what it ignores (an OnCalendar= it cannot read) and still exits 0.
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Config::parse(config, Path::new("strongroom.toml")).unwrap();
        let plan = Plan::of(&c).unwrap();
        for run in runs(&plan, None, std::time::Duration::from_secs(300)).unwrap() {
            let timer = std::fs::read_to_string(
                s.path("units")
                    .join(format!("strongroom-{}.timer", run.name)),
            )
            .unwrap();
            let n = 40;
            let mut croner = Vec::new();
            let mut t: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
            while croner.len() < n {
                t = run.pattern.next_after(t, &run.tz).unwrap();
                croner.push(t);
            }
            assert_eq!(
                systemd_times(&timer, n),
                croner,
                "{} ({:?} in {})",
                run.name,
                run.pattern.text,
                run.tz_name
            );
        }
    }
}

#[test]
fn the_crontab_passes_crontab_n_and_every_job_is_quiet() {
    let s = Setup::new(PLAIN);
    let text = s.exported(&["--format", "crontab"]);
    let jobs: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit() || c == '*'))
        .collect();
    assert_eq!(jobs.len(), 12, "{text}");
    for line in &jobs {
        assert!(line.contains(" --quiet"), "{line}");
        assert!(line.contains(env!("CARGO_BIN_EXE_strongroom")), "{line}");
    }
    assert!(text.contains(&format!(
        "--config {} backup hotel --kind full --quiet && ",
        s.path("strongroom.toml").display()
    )));
    assert!(text.contains("\nCRON_TZ=Asia/Kolkata\n"));
    crontab_accepts(&text, s.dir.path());
}

#[test]
fn croner_only_patterns_are_refused_in_one_sentence_where_a_format_cannot_say_them() {
    let s = Setup::new(CRONER_ONLY);
    for (format, called) in [
        ("crontab", "a crontab"),
        ("kubernetes", "a Kubernetes CronJob"),
        ("github-actions", "GitHub Actions"),
    ] {
        let out = s.export(&["--format", format]);
        assert_eq!(out.status.code(), Some(1), "{format}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        let said = match format {
            // UTC only: the zone is refused before any pattern is read.
            "github-actions" => {
                "sources.hotel.schedule.timezone = \"Europe/Paris\" changes its UTC offset"
            }
            _ => {
                "sources.hotel.schedule.verify = \"0 9 * * 1#1\" uses # (the nth weekday of the month)"
            }
        };
        assert!(err.contains(said) && err.contains(called), "{err}");
    }
}

#[test]
fn the_github_workflow_passes_its_schema_in_utc() {
    let s = Setup::new(PLAIN);
    let text = s.exported(&["--format", "github-actions"]);
    std::fs::write(s.path("workflow.yml"), &text).unwrap();
    // 02:00 in Kolkata is 20:30 UTC; the config is named as in the checkout.
    assert!(text.contains("    - cron: \"30 20 * * *\"\n"), "{text}");
    assert!(
        text.contains(
            "run: \"strongroom --config strongroom.toml backup db --kind logical --quiet\""
        )
    );
    assert!(text.contains("STRONGROOM_PASSWORD: ${{ secrets.STRONGROOM_PASSWORD }}"));
    assert!(text.contains("AWS_SECRET_ACCESS_KEY: ${{ secrets.AWS_SECRET_ACCESS_KEY }}"));
    let crons = values(&text, "cron:");
    assert!(crons.len() >= 8, "{crons:?}");
    crontab_accepts(
        &crons
            .iter()
            .map(|c| format!("{c} true\n"))
            .collect::<String>(),
        s.dir.path(),
    );
    if !present(
        "check-jsonschema",
        python("check_jsonschema").arg("--version"),
    ) {
        return;
    }
    let out = python("check_jsonschema")
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(s.path("workflow.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-jsonschema: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_cronjobs_pass_the_kubernetes_schema() {
    let s = Setup::new(PLAIN);
    let text = s.exported(&[
        "--format",
        "kubernetes",
        "--image",
        "registry.example.com/strongroom:1",
    ]);
    std::fs::write(s.path("cronjobs.yaml"), &text).unwrap();
    let kinds = values(&text, "kind:");
    assert_eq!(kinds.len(), 12, "{text}");
    assert_eq!(values(&text, "concurrencyPolicy:"), vec!["Forbid"; 12]);
    for zone in values(&text, "timeZone:") {
        assert!(
            Path::new("/usr/share/zoneinfo").join(zone).exists(),
            "{zone}"
        );
    }
    assert!(text.contains("secretKeyRef:\n"));
    // Retried as the daemon retries, except status, whose exit 1 a retry does not change.
    let mut limits = vec!["3"; 11];
    limits.push("0");
    assert_eq!(values(&text, "backoffLimit:"), limits);
    let schedules = values(&text, "schedule:");
    crontab_accepts(
        &schedules
            .iter()
            .map(|c| format!("{c} true\n"))
            .collect::<String>(),
        s.dir.path(),
    );
    if !present(
        "kubernetes-validate",
        python("kubernetes_validate").arg("--version"),
    ) {
        return;
    }
    let out = python("kubernetes_validate")
        .args(["--strict", "--quiet"])
        .arg(s.path("cronjobs.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubernetes-validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn output_replaces_only_what_an_export_wrote() {
    let s = Setup::new(PLAIN);
    std::fs::create_dir(s.path("units")).unwrap();
    let mine = s.path("units/strongroom-hotel-full.timer");
    std::fs::write(&mine, "[Timer]\nOnCalendar=daily\n").unwrap();
    let out = s.export(&["--format", "systemd", "--output", "units"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(
            "strongroom-hotel-full.timer exists and was not written by `strongroom schedule export`"
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(s.path("units")).unwrap().count(),
        1,
        "nothing else written"
    );
    s.exported(&["--format", "systemd", "--output", "units", "--force"]);
    assert!(
        std::fs::read_to_string(&mine)
            .unwrap()
            .contains("Persistent=true")
    );
    // A job turned off: its old units are named, not removed.
    std::fs::write(
        s.path("strongroom.toml"),
        PLAIN.replace("drill = \"@monthly\"", "drill = \"off\""),
    )
    .unwrap();
    let listing = s.exported(&["--format", "systemd", "--output", "units"]);
    assert!(
        listing
            .contains("no longer scheduled, left in place (remove it after disabling its timer): "),
        "{listing}"
    );
    assert!(
        listing.contains("units/strongroom-hotel-drill.timer"),
        "{listing}"
    );
    assert!(s.path("units/strongroom-hotel-drill.timer").exists());
}

#[test]
fn without_sources_there_is_nothing_to_export() {
    let s = Setup::new("repository = \"/srv/backups\"\n");
    let out = s.export(&["--format", "crontab"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("the config names no sources"), "{err}");
    // No config at all: the same exit, saying where a config is looked for.
    let out = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .current_dir(s.path("state"))
        .env("STRONGROOM_STATE_DIR", s.path("state"))
        .env_remove("STRONGROOM_CONFIG")
        .args(["schedule", "export", "--format", "systemd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no config file: give it with --config FILE"),
        "{err}"
    );
    let help = s.exported(&["--help"]);
    assert!(
        help.contains("Examples:") && help.contains("--format <FORMAT>"),
        "{help}"
    );
}
