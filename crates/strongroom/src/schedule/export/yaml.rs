//! The schedulers elsewhere: Kubernetes CronJobs and a GitHub Actions workflow, as YAML.
//!
//! Owns how a run is spelled where the config and the secrets come from the platform:
//! `strongroom` in PATH, the config from a ConfigMap or the checkout, the password and
//! the store's credentials from Secrets, never written here. Every scalar that is not a
//! key is written as a JSON string, which YAML reads as the same string. Must not write
//! files: [`super::write_files`] does.

use super::{
    Fields, Format, Options, Refusal, Run, distinct, header, refused, sanitized, sh_quote,
};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::source::{Location, parse_location};
use jiff::Timestamp;
use std::fmt::Write as _;
use std::time::Duration;

/// Where the CronJobs' containers find the config (a ConfigMap's key, mounted as one file).
pub const KUBERNETES_CONFIG: &str = "/etc/strongroom/strongroom.toml";

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The store schemes the config's repositories use (`s3`, `azblob`, `gs`); `None` when
/// the repository is not in the config (it then comes from a secret).
fn schemes(config: &Config) -> Option<Vec<&'static str>> {
    let repo = config.repository.as_deref()?;
    let mut out = Vec::new();
    for url in std::iter::once(repo).chain(config.copies.iter().map(|c| c.repository.as_str())) {
        for scheme in ["s3", "azblob", "gs"] {
            if url.starts_with(&format!("{scheme}://")) && !out.contains(&scheme) {
                out.push(scheme);
            }
        }
    }
    Some(out)
}

fn postgres(config: &Config, source: &str) -> bool {
    config
        .sources
        .get(source)
        .is_some_and(|s| matches!(parse_location(&s.url), Some(Location::Postgres(_))))
}

/// The longest wait between two of the pattern's times (over its next 400, from a fixed
/// day so the output does not depend on today), at least a minute and at most a week.
fn longest_gap(run: &Run) -> Duration {
    let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("a fixed time");
    let mut last = start;
    let mut longest = 0i64;
    for _ in 0..400 {
        let Some(next) = run.pattern.next_after(last, &run.tz) else {
            break;
        };
        if last != start {
            longest = longest.max(next.as_second() - last.as_second());
        }
        last = next;
    }
    let week = 7 * 86_400;
    Duration::from_secs(if longest == 0 {
        week
    } else {
        longest.clamp(60, week)
    } as u64)
}

/// A CronJob or container name: lower-case letters, digits and `-`, at most `max`.
fn dns_name(name: &str, max: usize) -> String {
    let s = sanitized(&name.to_ascii_lowercase(), &[]);
    let s = s.trim_matches('-').to_string();
    if s.len() <= max {
        return s;
    }
    let hash = blake3::hash(name.as_bytes()).to_hex();
    format!("{}-{}", s[..max - 7].trim_end_matches('-'), &hash[..6])
}

/// One CronJob per run in one multi-document file: `concurrencyPolicy: Forbid` (runs of
/// one CronJob never overlap), `timeZone`, `startingDeadlineSeconds` of the pattern's
/// longest gap (a run the controller missed still starts once, until the next is due),
/// `backoffLimit` of `[daemon] retries` (0 for status). A copy runs after its backup as the next
/// container (the backup is an init container, so the copy starts only when it
/// succeeded); jitter is a fixed `sleep` init container (the image needs `sleep`). The
/// config comes from the ConfigMap `strongroom-config` (key `strongroom.toml`), the
/// password from the Secret `strongroom` (key `password`), the store's credentials from
/// the optional Secret `strongroom-env` (every key becomes a variable).
pub fn kubernetes(runs: &[Run], opts: &Options, config: &Config) -> Result<String> {
    let names = runs
        .iter()
        .map(|r| dns_name(&format!("strongroom-{}", r.name), 52))
        .collect();
    let names = distinct(runs, names, Format::Kubernetes)?;
    let mut out = header(Format::Kubernetes, opts);
    let _ = write!(
        out,
        "# The schedules `strongroom daemon` runs, as CronJobs. Before `kubectl apply -f` this file:\n\
         #   kubectl create configmap strongroom-config --from-file=strongroom.toml={}\n\
         #   kubectl create secret generic strongroom --from-literal=password=…\n\
         #   kubectl create secret generic strongroom-env --from-env-file=store.env   # optional: AWS_*, PGPASSWORD, …\n\
         # The image ({}) needs strongroom in its PATH (pg_dump too for PostgreSQL sources,\n\
         # and sleep when a schedule has jitter); paths the config names must exist in the pod.\n",
        opts.config_shown, opts.image
    );
    let mut env = String::new();
    let _ = write!(
        env,
        "env:\n- name: STRONGROOM_PASSWORD\n  valueFrom:\n    secretKeyRef:\n      name: strongroom\n      key: password\n"
    );
    if config.repository.is_none() {
        let _ = write!(
            env,
            "- name: STRONGROOM_REPO\n  valueFrom:\n    secretKeyRef:\n      name: strongroom\n      key: repository\n"
        );
    }
    let _ = write!(
        env,
        "- name: STRONGROOM_STATE_DIR\n  value: \"/var/lib/strongroom/state\"\n\
         - name: STRONGROOM_CACHE_DIR\n  value: \"/var/lib/strongroom/cache\"\n\
         - name: NO_COLOR\n  value: \"1\"\n\
         envFrom:\n- secretRef:\n    name: strongroom-env\n    optional: true\n\
         volumeMounts:\n- name: config\n  mountPath: {}\n  subPath: strongroom.toml\n  readOnly: true\n\
         - name: work\n  mountPath: \"/var/lib/strongroom\"\n",
        q(KUBERNETES_CONFIG)
    );
    for (run, name) in runs.iter().zip(names) {
        // status's exit 1 means "attention needed", which a retry does not change.
        let retries = if run.lane == "status" {
            0
        } else {
            config.daemon.retries()
        };
        let schedule = Fields::of(&run.pattern)
            .cron()
            .map_err(|r| refused(run, Format::Kubernetes, r))?;
        let mut containers: Vec<String> = Vec::new();
        if !run.delay.is_zero() {
            containers.push(format!(
                "- name: jitter\n  image: {}\n  command: [\"sleep\", {}]\n",
                q(&opts.image),
                q(&run.delay.as_secs().to_string())
            ));
        }
        for s in &run.steps {
            let args: Vec<String> = ["--config", KUBERNETES_CONFIG]
                .iter()
                .map(|a| a.to_string())
                .chain(s.args.iter().cloned())
                .map(|a| q(&a))
                .collect();
            let mut c = format!(
                "- name: {}\n  image: {}\n  command: [\"strongroom\"]\n  args: [{}]\n",
                dns_name(s.name, 63),
                q(&opts.image),
                args.join(", ")
            );
            for line in env.lines() {
                let _ = writeln!(c, "  {line}");
            }
            containers.push(c);
        }
        let main = containers.pop().unwrap_or_default();
        let indent = |text: &str, n: usize| {
            text.lines()
                .map(|l| format!("{}{l}\n", " ".repeat(n)))
                .collect::<String>()
        };
        let _ = write!(
            out,
            "---\n# {}: {:?} ({})\n\
             apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {name}\n  labels:\n    app.kubernetes.io/name: strongroom\n    app.kubernetes.io/component: {}\n\
             spec:\n  schedule: {}\n  timeZone: {}\n  concurrencyPolicy: Forbid\n  startingDeadlineSeconds: {}\n  successfulJobsHistoryLimit: 3\n  failedJobsHistoryLimit: 3\n\
             \x20 jobTemplate:\n    spec:\n      backoffLimit: {retries}\n      template:\n        metadata:\n          labels:\n            app.kubernetes.io/name: strongroom\n        spec:\n          restartPolicy: Never\n",
            run.what,
            run.pattern.text,
            run.tz_name,
            dns_name(&run.name, 63),
            q(&schedule),
            q(&run.tz_name),
            longest_gap(run).as_secs(),
        );
        if !containers.is_empty() {
            out.push_str("          initContainers:\n");
            for c in &containers {
                out.push_str(&indent(c, 10));
            }
        }
        out.push_str("          containers:\n");
        out.push_str(&indent(&main, 10));
        out.push_str(
            "          volumes:\n          - name: config\n            configMap:\n              name: strongroom-config\n              defaultMode: 292 # 0444\n          - name: work\n            emptyDir: {}\n",
        );
    }
    Ok(out)
}

/// The UTC offset of `run`'s zone in minutes, when it no longer changes after `now`.
fn fixed_offset(run: &Run, now: Timestamp) -> Result<i32> {
    if run.tz.following(now).next().is_some() {
        let key = if run.source.is_empty() {
            "the status schedule".to_string()
        } else {
            format!("sources.{}.schedule.timezone", run.source)
        };
        return Err(Error::Config(format!(
            "{key} = {:?} changes its UTC offset during the year and GitHub Actions runs schedules in UTC only: write [sources.{}.schedule] in UTC (timezone = \"UTC\"), or export another format",
            run.tz_name, run.source
        )));
    }
    Ok(run.tz.to_offset(now).seconds() / 60)
}

/// A workflow: `on.schedule` with each run's times in UTC (a zone with a fixed offset is
/// converted; one with daylight saving is refused), `workflow_dispatch` to start any run
/// by hand, and one job per run that checks out the repository (the config is
/// `opts.workflow_config` in it), installs strongroom from the `STRONGROOM_URL` variable
/// (checked against `STRONGROOM_SHA256`) and runs the steps in order. Jobs of one source
/// share a `concurrency` group, so they do not overlap. Secrets: `STRONGROOM_PASSWORD`,
/// `STRONGROOM_REPO` when the config has no repository, the store's credentials by its
/// scheme, `STRONGROOM_TO_PASSWORD` with `[[copies]]`, `PGPASSWORD` for PostgreSQL.
/// Jitter is not added: GitHub starts scheduled runs late under load by itself, and a
/// wait would be billed.
pub fn github_actions(runs: &[Run], opts: &Options, config: &Config) -> Result<String> {
    let names = runs
        .iter()
        .map(|r| {
            let n = sanitized(&r.name, &['_', '-']);
            if n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                n
            } else {
                format!("_{n}")
            }
        })
        .collect();
    let names = distinct(runs, names, Format::GithubActions)?;
    let mut crons: Vec<Vec<String>> = Vec::new();
    for run in runs {
        let offset = fixed_offset(run, opts.now)?;
        let moved = Fields::of(&run.pattern)
            .to_utc(offset)
            .map_err(|r| refused(run, Format::GithubActions, r))?;
        let lines = moved
            .iter()
            .map(Fields::cron)
            .collect::<std::result::Result<Vec<_>, Refusal>>()
            .map_err(|r| refused(run, Format::GithubActions, r))?;
        crons.push(lines);
    }
    let mut out = header(Format::GithubActions, opts);
    out.push_str(
        "# The schedules `strongroom daemon` runs, for .github/workflows/. Times are UTC, as GitHub\n\
         # reads them. Repository secrets: STRONGROOM_PASSWORD and the store's credentials (below);\n\
         # variables STRONGROOM_URL and STRONGROOM_SHA256: a strongroom binary you host, and its sha256.\n",
    );
    if runs.iter().any(|r| !r.jitter.is_zero()) {
        out.push_str(
            "# Jitter is not added: GitHub starts scheduled runs late under load, and a wait is billed.\n",
        );
    }
    out.push_str("name: strongroom schedule\non:\n  schedule:\n");
    let mut seen: Vec<&str> = Vec::new();
    for c in crons.iter().flatten() {
        if !seen.contains(&c.as_str()) {
            seen.push(c);
            let _ = writeln!(out, "    - cron: {}", q(c));
        }
    }
    out.push_str(
        "  workflow_dispatch:\n    inputs:\n      run:\n        description: \"The run to start now\"\n        type: choice\n        options:\n",
    );
    for n in &names {
        let _ = writeln!(out, "          - {}", q(n));
    }
    out.push_str("permissions:\n  contents: read\njobs:\n");
    let mut env = String::from(
        "      NO_COLOR: \"1\"\n      STRONGROOM_PASSWORD: ${{ secrets.STRONGROOM_PASSWORD }}\n",
    );
    let schemes = schemes(config);
    if schemes.is_none() {
        env.push_str("      STRONGROOM_REPO: ${{ secrets.STRONGROOM_REPO }}\n");
        env.push_str(
            "      # The store's credentials (AWS_*, AZURE_STORAGE_*, …): add them here from secrets.\n",
        );
    }
    let schemes = schemes.unwrap_or_default();
    if schemes.contains(&"s3") {
        env.push_str(
            "      AWS_ACCESS_KEY_ID: ${{ secrets.AWS_ACCESS_KEY_ID }}\n      AWS_SECRET_ACCESS_KEY: ${{ secrets.AWS_SECRET_ACCESS_KEY }}\n      AWS_REGION: ${{ vars.AWS_REGION }}\n",
        );
    }
    if schemes.contains(&"azblob") {
        env.push_str(
            "      AZURE_STORAGE_ACCOUNT: ${{ vars.AZURE_STORAGE_ACCOUNT }}\n      AZURE_STORAGE_KEY: ${{ secrets.AZURE_STORAGE_KEY }}\n",
        );
    }
    if !config.copies.is_empty() {
        env.push_str("      STRONGROOM_TO_PASSWORD: ${{ secrets.STRONGROOM_TO_PASSWORD }}\n");
    }
    for ((run, name), lines) in runs.iter().zip(&names).zip(&crons) {
        let when: Vec<String> = lines
            .iter()
            .map(|c| format!("github.event.schedule == '{c}'"))
            .chain([format!("inputs.run == '{name}'")])
            .collect();
        let _ = write!(
            out,
            "  {name}:\n    name: {}\n    if: {}\n    runs-on: ubuntu-latest\n    concurrency:\n      group: {}\n      cancel-in-progress: false\n    env:\n{env}",
            q(&format!(
                "{} ({} {})",
                run.what, run.pattern.text, run.tz_name
            )),
            q(&when.join(" || ")),
            q(&format!("strongroom-{}", run.lane)),
        );
        let pg = run.lane == run.source && postgres(config, &run.source);
        if pg {
            out.push_str("      PGPASSWORD: ${{ secrets.PGPASSWORD }}\n");
        }
        out.push_str(
            "    steps:\n      - uses: actions/checkout@v4\n      - name: Install strongroom\n        env:\n          STRONGROOM_URL: ${{ vars.STRONGROOM_URL }}\n          STRONGROOM_SHA256: ${{ vars.STRONGROOM_SHA256 }}\n        run: |\n",
        );
        if pg {
            out.push_str(
                "          sudo apt-get update -q && sudo apt-get install -y -q postgresql-client\n",
            );
        }
        out.push_str(
            "          curl -fsSL \"$STRONGROOM_URL\" -o \"$RUNNER_TEMP/strongroom\"\n          echo \"$STRONGROOM_SHA256  $RUNNER_TEMP/strongroom\" | sha256sum -c -\n          sudo install -m 0755 \"$RUNNER_TEMP/strongroom\" /usr/local/bin/strongroom\n",
        );
        if schemes.contains(&"gs") {
            out.push_str(
                "      - name: GCS credentials\n        env:\n          KEY: ${{ secrets.GOOGLE_APPLICATION_CREDENTIALS_JSON }}\n        run: |\n          umask 077 && printf '%s' \"$KEY\" > \"$RUNNER_TEMP/gcs.json\"\n          echo \"GOOGLE_APPLICATION_CREDENTIALS=$RUNNER_TEMP/gcs.json\" >> \"$GITHUB_ENV\"\n",
            );
        }
        for s in &run.steps {
            let words: Vec<String> = ["strongroom", "--config", &opts.workflow_config]
                .iter()
                .map(|w| w.to_string())
                .chain(s.args.iter().cloned())
                .map(|w| sh_quote(&w))
                .collect();
            let _ = write!(
                out,
                "      - name: {}\n        run: {}\n",
                q(s.name),
                q(&words.join(" "))
            );
        }
    }
    Ok(out)
}
