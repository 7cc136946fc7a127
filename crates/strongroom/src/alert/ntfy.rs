//! ntfy targets: an alert as ntfy's publish request (a POST to the topic URL).
//!
//! Owns what a topic is sent: the summary, the failing checks and what to do as the
//! plain-text body; `Title` (`strongroom: hotel critical`), `Priority` (critical `urgent`,
//! warning `high`, a recovery `default`) and `Tags` (`rotating_light`, `warning`,
//! `white_check_mark`, which ntfy shows as emoji) as headers, a non-ASCII title as an
//! RFC 2047 encoded word (which ntfy decodes); and credentials in the topic URL turned into
//! an `Authorization` header (`user:password@`: Basic; `:token@`: Bearer). Must not send
//! (`webhook` does), nor show the URL.

use super::webhook::{self, Post};
use super::{Alert, AlertEvent};
use base64::Engine;

/// The publish request for `alert` to the topic at `url`.
pub(super) fn post(url: &str, alert: &Alert) -> Post {
    let (url, auth) = webhook::split_credentials(url);
    let (priority, tags) = match (alert.event, alert.level.as_str()) {
        (AlertEvent::Recovered, _) | (_, "ok") => ("default", "white_check_mark"),
        (_, "warning") => ("high", "warning"),
        _ => ("urgent", "rotating_light"),
    };
    Post {
        url,
        content_type: "text/plain; charset=utf-8",
        headers: vec![
            ("Title", header_value(&title(alert))),
            ("Priority", priority.into()),
            ("Tags", tags.into()),
        ],
        auth,
        body: text(alert).into_bytes(),
    }
}

/// The notification's title: `strongroom: hotel critical`, `strongroom: hotel recovered`,
/// `strongroom: backup of hotel failed`.
pub(super) fn title(alert: &Alert) -> String {
    let source = alert.source.as_deref();
    let what = match alert.event {
        AlertEvent::JobFailed => {
            let job = alert.job.as_deref().unwrap_or("a job");
            match source {
                Some(s) => format!("{job} of {s} failed"),
                None => format!("{job} failed"),
            }
        }
        AlertEvent::Recovered => format!("{} recovered", source.unwrap_or("a source")),
        AlertEvent::StateChanged => format!("{} {}", source.unwrap_or("a source"), alert.level),
    };
    format!("strongroom: {what}")
}

/// The message: the summary, then one line per failing check, what to do, and where.
fn text(alert: &Alert) -> String {
    let mut lines = vec![alert.summary.clone()];
    for c in &alert.checks {
        lines.push(format!("• {} ({}): {}", c.name, c.level, c.detail));
    }
    if let Some(kind) = &alert.error_kind {
        lines.push(format!("Error kind: {kind}"));
    }
    if let Some(hint) = &alert.hint {
        lines.push(format!("What to do: {hint}"));
    }
    lines.push(format!("{} · {}", alert.hostname, alert.repository));
    lines.join("\n")
}

/// `s` as a header value: itself when it is visible ASCII, else one RFC 2047 encoded word.
fn header_value(s: &str) -> String {
    if s.chars().all(|c| (' '..='~').contains(&c)) {
        s.to_string()
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }
}
