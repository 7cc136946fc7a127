//! The host's own schedulers: a user crontab, and systemd `.service` + `.timer` pairs.
//!
//! Owns how a run is spelled for them: the absolute program and global options, one line
//! or unit per run, a copy after its backup only when the backup succeeded, jitter, and
//! the time zone. Must not write files: [`super::write_files`] does.

use super::{ExportFile, Format, Options, Run, distinct, header, refused, sanitized, sh_quote};
use crate::error::Result;
use std::fmt::Write as _;
use std::time::Duration;

/// The command of one step, as a shell word list.
fn sh_command(opts: &Options, args: &[String]) -> String {
    std::iter::once(&opts.program)
        .chain(&opts.global)
        .chain(args)
        .map(|a| sh_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A user crontab: five fields and a command per run, every job with `--quiet` so cron
/// mails only errors (status's report goes to /dev/null; its alerts go through
/// `[[alerts]]`). A copy follows its backup with `&&`; jitter is a fixed `sleep` first.
/// Zones are set with `CRON_TZ=`, which cronie and systemd-cron read; Debian's cron does
/// not, and the header says so.
pub fn crontab(runs: &[Run], opts: &Options) -> Result<String> {
    let mut out = header(Format::Crontab, opts);
    out.push_str(
        "# A user crontab (install it with `crontab FILE`, as the user that runs the backups):\n\
         # the schedules `strongroom daemon` runs. Only errors reach cron's mail.\n\
         # CRON_TZ sets the zone the times are read in for cronie (Fedora, RHEL, Arch) and\n\
         # systemd-cron. Debian's and Ubuntu's cron ignore it and read every time in the\n\
         # host's zone (timedatectl): there, keep the host in that zone or export --format systemd.\n\
         SHELL=/bin/sh\n\
         PATH=/usr/local/bin:/usr/bin:/bin\n\
         NO_COLOR=1\n",
    );
    let mut zone = String::new();
    for run in runs {
        let when = super::Fields::of(&run.pattern)
            .cron()
            .map_err(|r| refused(run, Format::Crontab, r))?;
        if run.tz_name != zone {
            zone = run.tz_name.clone();
            let _ = write!(out, "\nCRON_TZ={zone}\n");
        }
        let mut commands: Vec<String> = run
            .steps
            .iter()
            .map(|s| sh_command(opts, &s.args))
            .collect();
        if run.name == "status" {
            for c in &mut commands {
                c.push_str(" >/dev/null");
            }
        }
        if !run.delay.is_zero() {
            commands.insert(0, format!("sleep {}", run.delay.as_secs()));
        }
        let _ = writeln!(out, "# {}: {:?}", run.what, run.pattern.text);
        // cron turns a bare % into a new line: escape it.
        let _ = writeln!(out, "{when} {}", commands.join(" && ").replace('%', "\\%"));
    }
    Ok(out)
}

/// A word of an `ExecStart=` line: `%` and `$` doubled (systemd's specifiers and
/// variables), and quoted when it holds a space, a quote or a backslash.
fn systemd_word(s: &str) -> String {
    let s = s.replace('%', "%%").replace('$', "$$");
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || "\"'\\;".contains(c)) {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

/// A `.service` and a `.timer` per run, named `strongroom-NAME`: a oneshot service whose
/// `ExecStart=` lines run in order (the copy only after its backup succeeded), and a timer
/// with one `OnCalendar=` per day rule in the run's zone, `Persistent=true` (a run missed
/// while the machine was off happens once at boot) and the jitter as
/// `RandomizedDelaySec=` with `FixedRandomDelay=true`. SIGTERM waits `stop_timeout`
/// (`[daemon] stop_timeout`), as in the daemon.
/// One difference stays: a time the spring-forward day skips (02:30 in Europe/Paris)
/// runs at 03:00 under the daemon (croner) and not at all that day under systemd.
pub fn systemd(runs: &[Run], opts: &Options, stop_timeout: Duration) -> Result<Vec<ExportFile>> {
    let names = runs
        .iter()
        .map(|r| format!("strongroom-{}", sanitized(&r.name, &['_', '.', '-'])))
        .collect();
    let names = distinct(runs, names, Format::Systemd)?;
    let mut files = Vec::new();
    for (run, name) in runs.iter().zip(names) {
        let fields = super::Fields::of(&run.pattern);
        let calendars = fields
            .on_calendar(&run.tz_name)
            .map_err(|r| refused(run, Format::Systemd, r))?;
        let what = run.what.replace('%', "%%");
        let mut service = header(Format::Systemd, opts);
        let _ = write!(
            service,
            "# Started by {name}.timer; by hand: systemctl start {name}.service\n\
             [Unit]\n\
             Description=strongroom: {what}\n\
             Wants=network-online.target\n\
             After=network-online.target\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             # Optional KEY=value lines (mode 0600), e.g. STRONGROOM_PASSWORD_FILE=…, AWS_*: secrets\n\
             # stay out of this file and off the command line.\n\
             EnvironmentFile=-/etc/strongroom/env\n\
             Environment=NO_COLOR=1\n"
        );
        for s in &run.steps {
            let words: Vec<String> = std::iter::once(&opts.program)
                .chain(&opts.global)
                .chain(&s.args)
                .map(|w| systemd_word(w))
                .collect();
            let _ = writeln!(service, "ExecStart={}", words.join(" "));
        }
        let _ = write!(
            service,
            "TimeoutStopSec={}\nNice=10\nIOSchedulingClass=best-effort\nIOSchedulingPriority=7\n",
            stop_timeout.as_secs().max(1)
        );
        let mut timer = header(Format::Systemd, opts);
        let _ = write!(
            timer,
            "# systemctl daemon-reload && systemctl enable --now {name}.timer\n\
             [Unit]\n\
             Description=strongroom: {what}, at {:?} ({})\n\
             \n\
             [Timer]\n",
            run.pattern.text, run.tz_name
        );
        for c in calendars {
            let _ = writeln!(timer, "OnCalendar={c}");
        }
        if !run.jitter.is_zero() {
            let _ = write!(
                timer,
                "RandomizedDelaySec={}\nFixedRandomDelay=true\n",
                run.jitter.as_secs().max(1)
            );
        }
        timer.push_str("Persistent=true\n\n[Install]\nWantedBy=timers.target\n");
        files.push(ExportFile {
            name: format!("{name}.service"),
            text: service,
        });
        files.push(ExportFile {
            name: format!("{name}.timer"),
            text: timer,
        });
    }
    Ok(files)
}

/// The files one after another, each after a `# ==> NAME <==` line (as `head` shows
/// several files): what `--format systemd` prints without `--output`.
pub fn concatenated(files: &[ExportFile]) -> String {
    let mut out = String::new();
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "# ==> {} <==", f.name);
        out.push_str(&f.text);
    }
    out
}
