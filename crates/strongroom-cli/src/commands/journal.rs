//! `strongroom journal`: job records, oldest first, filtered.

use crate::args::JournalArgs;
use crate::context::Ctx;
use crate::failure::fail;
use crate::output::{Align, Table, fmt_time, print_json, short};
use anyhow::Result;
use strongroom::ErrorKind;
use strongroom::repository::journal::JournalQuery;

/// `--since`: a time, or a duration back from now.
fn since(text: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp> {
    if let Ok(d) = strongroom::parse_duration(text) {
        let d = jiff::SignedDuration::try_from(d)
            .map_err(|_| fail(ErrorKind::BadInput, format!("--since {text}: too long")))?;
        return Ok(now.checked_sub(d).unwrap_or(jiff::Timestamp::MIN));
    }
    strongroom::parse_time(text).map_err(|e| {
        fail(
            ErrorKind::BadInput,
            format!("--since {e}, nor a duration like 7d"),
        )
    })
}

/// Prints the records the flags select.
pub fn run(ctx: &Ctx, args: JournalArgs) -> Result<()> {
    let query = JournalQuery {
        source: args.source.map(|s| ctx.config.source_match(&s)),
        job: args.job,
        failed: args.failed,
        since: args
            .since
            .map(|t| since(&t, jiff::Timestamp::now()))
            .transpose()?,
    };
    let repo = ctx.open()?;
    let mut records = repo.query_journal(&query)?;
    for r in &mut records {
        r.source = r.source.as_deref().map(|s| ctx.source_name(s));
    }
    if ctx.json() {
        return print_json(&records);
    }
    if records.is_empty() {
        eprintln!("no journal records match");
        return Ok(());
    }
    let mut table = Table::new(&[
        ("finished (UTC)", Align::Left),
        ("job", Align::Left),
        ("source", Align::Left),
        ("snapshot", Align::Left),
        ("seconds", Align::Right),
        ("result", Align::Left),
    ]);
    for r in &records {
        let what = r
            .snapshot
            .as_deref()
            .map(short)
            .or(r.wal.as_ref().map(|w| w.first.as_str()))
            .unwrap_or("-");
        let result = if r.ok {
            let mut s = "ok".to_string();
            if let Some(k) = &r.kind {
                s.push_str(&format!(" ({k})"));
            }
            if let Some(d) = &r.drill {
                s.push_str(&format!(
                    ", recovered in {:.1}s of {:.0}s allowed",
                    d.rto_seconds, d.rto_objective_seconds
                ));
            }
            s
        } else {
            format!(
                "FAILED [{}] {}",
                r.error_kind.as_deref().unwrap_or("?"),
                r.error.as_deref().unwrap_or("")
            )
        };
        // The dashboard's audit records say who acted.
        let result = match &r.by {
            Some(by) => format!("{result}, by {by}"),
            None => result,
        };
        table.row([
            fmt_time(r.finished_at),
            r.job.clone(),
            r.source.clone().unwrap_or_else(|| "-".into()),
            what.to_string(),
            format!("{:.1}", r.seconds),
            result,
        ]);
    }
    table.print()
}
