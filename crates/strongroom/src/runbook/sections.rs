//! The runbook's sections, one function each, in the order they are printed.
//!
//! Owns the wording and the commands (the PostgreSQL ones are in `postgres`). Must not read
//! anything but its inputs, and must never write a secret (the repository URL goes through
//! [`super::repository_without_credentials`]; `password_command` is named, not quoted).

use super::steps::{hooks_note, latest_when_written, row_count_commands};
use super::{
    Entry, Inputs, fmt_age, fmt_duration, fmt_seconds, fmt_time, redact_command,
    repository_without_credentials, sh_quote,
};
use crate::human_bytes;
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::{BackupKind, Snapshot};
use crate::source::Location;
use std::fmt::Write;

pub(super) fn header(md: &mut String, inputs: &Inputs, entries: &[Entry]) {
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    line!(md, "# Emergency runbook: {}", names.join(", "));
    line!(md);
    line!(
        md,
        "Written {} by `strongroom runbook` from the configuration and the repository as they \
         were then. Regenerate it after every change, and print it.",
        fmt_time(inputs.now)
    );
    line!(md);
    for n in &inputs.notes {
        line!(md, "> **Note:** {n}");
        line!(md);
    }
}

pub(super) fn first_minutes(md: &mut String, inputs: &Inputs, entries: &[Entry]) {
    line!(md, "## First 5 minutes");
    line!(md);
    let hooks: Vec<String> = entries
        .iter()
        .filter_map(|e| Some((e, e.config?.before_restore.as_deref()?)))
        .map(|(e, h)| format!("`{}` ({})", redact_command(h), e.name))
        .collect();
    let call = inputs
        .config
        .contacts
        .first()
        .map(|c| {
            let who = [c.role.as_deref(), c.name.as_deref(), c.phone.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
            format!(" Call {who} (all contacts: \"Whom to call\").")
        })
        .unwrap_or_default();
    line!(
        md,
        "1. **Stop the writers**: the application, cron jobs and workers that write to the \
         database{}.{call}",
        if hooks.is_empty() {
            String::new()
        } else {
            format!(
                " (the in-place restore runs the before_restore hook {}, but stop them now so \
                 nothing more is lost)",
                hooks.join(", ")
            )
        }
    );
    line!(
        md,
        "2. **Pick the point**: the newest snapshot, the last one before the damage \
         (`strongroom list --source NAME`; before a bad migration, the `pre-migration` one), \
         or for PostgreSQL with WAL archiving a time (`--time`)."
    );
    line!(
        md,
        "3. **Restore into a new place first** (\"side copy\" below): the live database stays \
         as it is."
    );
    line!(
        md,
        "4. **Verify** the copy: the checks under each source; compare row counts with the \
         snapshot's."
    );
    line!(
        md,
        "5. **Switch**: restore in place with `--force` (the old data is kept aside until the \
         new is complete; `--keep-old` keeps it after), start the writers, watch the \
         application's logs, then run `strongroom backup` once."
    );
    line!(md);
}

pub(super) fn environment(md: &mut String, inputs: &Inputs, entries: &[Entry]) {
    line!(md, "## Environment");
    line!(md);
    line!(
        md,
        "On the database host (as root, or the database's system user), before any command:"
    );
    line!(md);
    line!(md, "```sh");
    let repo = repository_without_credentials(&inputs.repository);
    line!(md, "export STRONGROOM_REPO={}", sh_quote(&repo));
    if let Some(p) = &inputs.config_path {
        line!(
            md,
            "export STRONGROOM_CONFIG={}",
            sh_quote(&p.display().to_string())
        );
    }
    let cfg = &inputs.config;
    if let Some(f) = &cfg.password_file {
        line!(
            md,
            "# password: password_file {} in the config (read by itself)",
            f.display()
        );
    } else if cfg.password_command.is_some() {
        line!(
            md,
            "# password: password_command in the config (runs by itself; needs its vault)"
        );
    } else {
        line!(
            md,
            "export STRONGROOM_PASSWORD_FILE=…   # a file holding the repository password (or set STRONGROOM_PASSWORD)"
        );
    }
    let append_only = inputs.snapshots.iter().any(|s| s.append_only);
    line!(
        md,
        "# which key restores: a full key (a password made by `init`, or by `key add` without --append-only){}",
        if append_only {
            "; the database host's key is append-only (`strongroom key list` shows each slot's kind) and cannot read backups or fetch WAL"
        } else {
            ""
        }
    );
    store_credentials(md, &repo);
    if entries
        .iter()
        .any(|e| e.newest(&BackupKind::Physical).is_some())
    {
        line!(
            md,
            "{}",
            if append_only {
                "# physical restores with --start: the server runs as the data directory's owner and reads the repository itself (restore_command), so STRONGROOM_PASSWORD_FILE must be a FULL key file that user can read: archive_command's is append-only; make one with `strongroom key add --new-key-file FILE` and remove it after the recovery (`strongroom key remove ID`)"
            } else {
                "# physical restores with --start: the server runs as the data directory's owner and reads the repository itself, so STRONGROOM_PASSWORD_FILE must be a key file that user can read (archive_command's)"
            }
        );
    }
    if entries
        .iter()
        .any(|e| matches!(e.location, Some(Location::Postgres(_))))
    {
        line!(
            md,
            "export PGPASSWORD=…   # or ~/.pgpass: the database role's password"
        );
    }
    line!(
        md,
        "strongroom list   # proves the repository opens: snapshots, oldest first"
    );
    line!(md, "```");
    line!(md);
}

/// The store's credential variables for the repository at `repo`, as placeholders.
pub(super) fn store_credentials(md: &mut String, repo: &str) {
    for (prefix, vars) in [
        (
            "s3://",
            "AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… AWS_REGION=…   # and AWS_ENDPOINT_URL for a non-AWS store",
        ),
        (
            "azblob://",
            "AZURE_STORAGE_ACCOUNT=… AZURE_STORAGE_KEY=…   # and AZURE_STORAGE_ENDPOINT outside Azure's public cloud",
        ),
        (
            "gs://",
            "GOOGLE_APPLICATION_CREDENTIALS=…   # or STORAGE_EMULATOR_HOST for an emulator",
        ),
    ] {
        if repo.starts_with(prefix) {
            line!(md, "export {vars}");
        }
    }
}

pub(super) fn source(md: &mut String, inputs: &Inputs, e: &Entry) {
    let what = match &e.location {
        Some(Location::Sqlite(_)) => "SQLite",
        Some(Location::Postgres(_)) => "PostgreSQL",
        None => "unknown engine",
    };
    line!(md, "## Restore `{}` ({what})", e.name);
    line!(md);
    if e.snaps.is_empty() {
        line!(
            md,
            "**No snapshot of this source is in the repository.** Nothing to restore from: \
             run `strongroom backup {}` as soon as the database is reachable.",
            sh_quote(&e.name)
        );
        line!(md);
    }
    match &e.location {
        Some(Location::Sqlite(_)) => sqlite(md, e),
        Some(Location::Postgres(url)) => {
            if e.newest(&BackupKind::Logical).is_some() || e.snaps.is_empty() {
                super::postgres::logical(md, e, url);
            }
            if e.newest(&BackupKind::Physical).is_some() {
                super::postgres::physical(md, inputs, e);
            }
        }
        None => {}
    }
    newest(md, inputs, e);
    objectives(md, inputs, e);
    let drills_expected = inputs
        .config
        .objectives_of(&e.name)
        .checklist
        .contains_key("drill");
    drill(md, e.drills.last().copied(), drills_expected);
}

/// The database file a SQLite source names, absolute.
pub(super) fn sqlite_path(e: &Entry) -> String {
    let id = e
        .location
        .as_ref()
        .map(Location::identity)
        .unwrap_or_default();
    id.strip_prefix("sqlite:").unwrap_or(&id).to_string()
}

fn sqlite(md: &mut String, e: &Entry) {
    let path = sqlite_path(e);
    let name = sh_quote(&e.name);
    let when = latest_when_written(e, &BackupKind::Full);
    let side = format!("{path}.restored");
    line!(md, "Side copy, then in place:");
    line!(md);
    line!(md, "```sh");
    line!(
        md,
        "strongroom restore latest --source {name} --to {}",
        sh_quote(&side)
    );
    line!(
        md,
        "strongroom restore latest --source {name} --to {} --force",
        sh_quote(&path)
    );
    line!(md, "```");
    line!(md);
    line!(
        md,
        "`latest` is the newest snapshot when you run it{when}. To an earlier point: its id \
         from `strongroom list --source {name}`, or `latest --tag pre-migration` for the one \
         before a migration."
    );
    line!(md);
    hooks_note(md, e);
    line!(
        md,
        "Verify the side copy (after the switch, the same on the live file):"
    );
    line!(md);
    line!(md, "```sh");
    let q = sh_quote(&side);
    line!(md, "sqlite3 {q} 'PRAGMA integrity_check'   # expect: ok");
    row_count_commands(md, e, &BackupKind::Full, |sql| {
        format!("sqlite3 {q} {}", sh_quote(sql))
    });
    line!(md, "```");
    line!(md);
}

fn newest(md: &mut String, inputs: &Inputs, e: &Entry) {
    if e.snaps.is_empty() {
        return;
    }
    line!(md, "Newest snapshots:");
    line!(md);
    line!(md, "| kind | id | taken | age | size | tags |");
    line!(md, "| --- | --- | --- | --- | --- | --- |");
    let mut kinds: Vec<&BackupKind> = e.snaps.iter().map(|s| &s.kind).collect();
    kinds.sort();
    kinds.dedup();
    let mut rows: Vec<&Snapshot> = kinds.into_iter().filter_map(|k| e.newest(k)).collect();
    if let Some(pre) = e
        .snaps
        .iter()
        .rev()
        .find(|s| s.tags.iter().any(|t| t == "pre-migration"))
        && !rows.iter().any(|r| r.id == pre.id)
    {
        rows.push(pre);
    }
    for s in rows {
        line!(
            md,
            "| {} | `{}` | {} | {} | {} | {} |",
            s.kind.as_str(),
            s.short_id(),
            fmt_time(s.started_at),
            fmt_age(s.started_at, inputs.now),
            human_bytes(s.size),
            s.tags.join(", ")
        );
    }
    line!(md);
}

fn objectives(md: &mut String, inputs: &Inputs, e: &Entry) {
    let o = inputs.config.objectives_of(&e.name);
    // The kinds this source is backed up as; a source with no snapshot yet, every kind
    // its engine takes.
    let mut kinds: Vec<&str> = e.snaps.iter().map(|s| s.kind.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() {
        kinds = match &e.location {
            Some(Location::Sqlite(_)) => vec!["full"],
            _ => vec!["logical", "physical"],
        };
    }
    let intervals: Vec<String> = kinds
        .iter()
        .filter_map(|k| Some(format!("{k} every {}", fmt_duration(*o.interval.get(*k)?))))
        .collect();
    line!(
        md,
        "Objectives: lose at most {} of data (RPO), back in service within {} (RTO); backups \
         expected {}.",
        fmt_duration(o.rpo),
        fmt_duration(o.rto),
        intervals.join(", ")
    );
    line!(md);
    if let Some(line) = would_lose(inputs, e) {
        line!(md, "{line}");
        line!(md);
    }
}

/// How much a loss now would cost: the age of the newest state a restore reaches (captured
/// commits, archived WAL, or the newest snapshot), and what it was measured from.
fn would_lose(inputs: &Inputs, e: &Entry) -> Option<String> {
    let newest = e.snaps.iter().max_by_key(|s| s.finished_at)?;
    let mut point = (
        newest.finished_at,
        format!("the newest snapshot, `{}`", newest.short_id()),
    );
    for s in &e.snaps {
        if let Some(t) = crate::engine::postgres::timeline::judge::cluster_of(s)
            .and_then(|c| inputs.wal_newest.get(&c))
            .filter(|t| **t > point.0)
        {
            point = (*t, "the newest archived WAL".into());
        }
    }
    let names = e.snaps.iter().map(|s| s.source.as_str());
    for name in std::iter::once(e.name.as_str()).chain(names) {
        if let Some((t, basis)) = inputs.captured.get(name).filter(|(t, _)| *t > point.0) {
            point = (*t, basis.clone());
        }
    }
    let secs = (inputs.now - point.0)
        .total(jiff::Unit::Second)
        .unwrap_or(0.0)
        .max(0.0);
    let cost = if secs < 120.0 {
        format!("{secs:.0} s")
    } else {
        fmt_duration(std::time::Duration::from_secs_f64(secs))
    };
    Some(format!(
        "How much a loss now would cost: the commits of the last {cost}, as of this page (measured from {}). Run `strongroom status` for the figure of the moment.",
        point.1
    ))
}

/// The last drill's figures, or that there is none (and whether one is due: a source whose
/// checklist turns drills off is not told to run one).
pub(super) fn drill(md: &mut String, last: Option<&JournalRecord>, expected: bool) {
    let Some(r) = last else {
        if expected {
            line!(
                md,
                "Last drill: no drill on record — run `strongroom drill`."
            );
        } else {
            line!(
                md,
                "Last drill: none on record (drills are turned off for this source)."
            );
        }
        line!(md);
        return;
    };
    let when = fmt_time(r.finished_at);
    let snap = r
        .snapshot
        .as_deref()
        .map(|s| {
            format!(
                " of snapshot `{}`",
                crate::repository::snapshot::short_id(s)
            )
        })
        .unwrap_or_default();
    if !r.ok {
        line!(
            md,
            "Last drill: {when}{snap}, **failed**: {}",
            r.error.as_deref().unwrap_or("no reason recorded")
        );
        line!(md);
        return;
    }
    let Some(f) = &r.drill else {
        line!(
            md,
            "Last drill: {when}{snap}, succeeded in {} (no figures recorded).",
            fmt_seconds(r.seconds)
        );
        line!(md);
        return;
    };
    let verdict = |v: f64, objective: f64| if v <= objective { "met" } else { "**missed**" };
    let rpo = match f.rpo_seconds {
        Some(v) => format!(
            "data-loss window {} (objective {}, {})",
            fmt_seconds(v),
            fmt_seconds(f.rpo_objective_seconds),
            verdict(v, f.rpo_objective_seconds)
        ),
        None => "data-loss window not measured".into(),
    };
    line!(
        md,
        "Last drill: {when}{snap}: recovered in {} (objective {}, {}); {rpo}.{}",
        fmt_seconds(f.rto_seconds),
        fmt_seconds(f.rto_objective_seconds),
        verdict(f.rto_seconds, f.rto_objective_seconds),
        f.report
            .as_deref()
            .map(|r| format!(" Report: `{r}`."))
            .unwrap_or_default()
    );
    line!(md);
}

pub(super) fn contacts(md: &mut String, inputs: &Inputs) {
    line!(md, "## Whom to call");
    line!(md);
    let contacts = &inputs.config.contacts;
    if contacts.is_empty() {
        line!(
            md,
            "No contacts configured: add `[[contacts]]` tables (role, name, phone, email) to the \
             configuration and write this runbook again."
        );
        line!(md);
        return;
    }
    line!(md, "| role | name | phone | email |");
    line!(md, "| --- | --- | --- | --- |");
    let cell = |v: &Option<String>| v.as_deref().unwrap_or("—").replace('|', "\\|");
    for c in contacts {
        line!(
            md,
            "| {} | {} | {} | {} |",
            cell(&c.role),
            cell(&c.name),
            cell(&c.phone),
            cell(&c.email)
        );
    }
    line!(md);
}

pub(super) fn whereabouts(md: &mut String, inputs: &Inputs) {
    line!(md, "## Where the backups are");
    line!(md);
    line!(
        md,
        "- Repository: `{}`",
        repository_without_credentials(&inputs.repository)
    );
    let copies = super::copies::listed(inputs);
    if !copies.is_empty() {
        line!(
            md,
            "- Copies: {} (see \"Restore from a copy\")",
            copies.join(", ")
        );
    }
    match &inputs.config_path {
        Some(p) => line!(md, "- Configuration: `{}`", p.display()),
        None => line!(md, "- Configuration: none (sources given as URLs)"),
    }
    let r = &inputs.config.retention;
    let keep: Vec<String> = [
        ("hourly", r.keep_hourly),
        ("daily", r.keep_daily),
        ("weekly", r.keep_weekly),
        ("monthly", r.keep_monthly),
        ("yearly", r.keep_yearly),
        ("last", r.keep_last),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some(format!("{k} {}", v?)))
    .collect();
    line!(
        md,
        "- Retention: {}; point-in-time recovery kept for {}",
        if keep.is_empty() {
            "everything".into()
        } else {
            keep.join(", ")
        },
        fmt_duration(
            r.policy()
                .ok()
                .and_then(|p| p.pitr_window)
                .unwrap_or(crate::retention::DEFAULT_PITR_WINDOW)
        )
    );
    line!(md, "- Program: `{}`", inputs.program);
    line!(
        md,
        "- Health: `strongroom status` (against the objectives), `strongroom verify latest \
         --source NAME` (test restore), `strongroom check` (every object present), `strongroom \
         journal --failed` (what went wrong lately)"
    );
    line!(md);
}
