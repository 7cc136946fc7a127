//! Webhook targets: one HTTP POST per attempt, and the Slack-compatible body.
//!
//! Owns the HTTP client (reqwest's blocking client over rustls), what a webhook answer means
//! (2xx delivered, anything else a failure the caller may retry) and how a URL is shown in
//! logs. Must not retry or decide who gets what (`deliver` does), and must never show a
//! webhook's path or query: Slack webhook URLs are secrets in their path.

use super::{Alert, AlertEvent};
use std::time::Duration;

/// How a webhook URL may be shown: `scheme://host[:port]/…` (the path, query and any
/// credentials left out). Something that does not parse as a URL is shown as `(invalid URL)`.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or_default();
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let more = (u.path() != "/" && !u.path().is_empty()) || u.query().is_some();
            format!(
                "{}://{host}{port}{}",
                u.scheme(),
                if more { "/…" } else { "" }
            )
        }
        Err(_) => "(invalid URL)".into(),
    }
}

/// Whether a webhook with no `format` gets the Slack body: its host is `hooks.slack.com`.
pub(super) fn is_slack(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.host_str() == Some("hooks.slack.com"))
}

/// The client for one target: `timeout` bounds each whole attempt (connect, send, answer);
/// redirects are not followed (a redirected POST would turn into a GET elsewhere). Proxies
/// from the environment (`HTTPS_PROXY`, `NO_PROXY`, …) apply, except to a loopback address.
pub(super) fn client(url: &str, timeout: Duration) -> Result<reqwest::blocking::Client, String> {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("strongroom/", env!("CARGO_PKG_VERSION")));
    if is_loopback(url) {
        b = b.no_proxy();
    }
    b.build()
        .map_err(|e| format!("cannot set up an HTTP client: {}", describe(e)))
}

pub(super) fn is_loopback(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let host = u.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One POST of `body` (JSON) to `url`: `Ok` on a 2xx answer, else the sentence saying why.
pub(super) fn post(
    client: &reqwest::blocking::Client,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    let answer = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {}", super::span(timeout))
            } else {
                describe(e)
            }
        })?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    // What the receiver said helps (Slack answers `invalid_payload`, `no_service`, …).
    let said = answer
        .text()
        .ok()
        .map(|t| crate::process::first_line(t.trim()))
        .filter(|t| !t.is_empty())
        .map(|mut t| {
            if t.len() > 200 {
                let mut cut = 200;
                while !t.is_char_boundary(cut) {
                    cut -= 1;
                }
                t.truncate(cut);
                t.push('…');
            }
            format!(": {t}")
        })
        .unwrap_or_default();
    Err(format!("answered {status}{said}"))
}

/// A reqwest error as a sentence without its URL (which may be a secret): for a connection
/// that failed, the innermost cause (`Connection refused`, a TLS alert, a name not found).
pub(super) fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut causes = Vec::new();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        causes.push(c.to_string());
        cause = c.source();
    }
    match causes.last() {
        Some(last) if e.is_connect() => format!("could not connect: {last}"),
        _ => std::iter::once(e.to_string())
            .chain(causes)
            .collect::<Vec<_>>()
            .join(": "),
    }
}

/// The Slack-compatible message for `alert`: a level marker (no emoji), the source and
/// summary on the first line, then the failing checks, the error and the hint, one per line.
/// Slack's three control characters (`&`, `<`, `>`) are escaped.
pub fn slack_text(alert: &Alert) -> String {
    let marker = match alert.event {
        AlertEvent::Recovered => "RECOVERED".to_string(),
        _ => alert.level.to_uppercase(),
    };
    let mut lines = Vec::new();
    // The source leads the line unless the summary names it already.
    let source = alert
        .source
        .as_deref()
        .filter(|s| !alert.summary.contains(s))
        .map(|s| format!("{s}: "))
        .unwrap_or_default();
    lines.push(format!("*[{marker}]* {source}{}", esc(&alert.summary)));
    for c in &alert.checks {
        lines.push(format!(
            "• {} ({}): {}",
            esc(&c.name),
            esc(&c.level),
            esc(&c.detail)
        ));
    }
    if let Some(kind) = &alert.error_kind {
        // The summary already quotes the error sentence; the kind is what scripts match on.
        lines.push(format!("Error kind: {}", esc(kind)));
    }
    if let Some(hint) = &alert.hint {
        lines.push(format!("What to do: {}", esc(hint)));
    }
    lines.push(format!(
        "_{} · {} · {}_",
        esc(&alert.hostname),
        esc(&alert.repository),
        alert.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    ));
    lines.join("\n")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Slack body: `{"text": …}`.
pub(super) fn slack_body(alert: &Alert) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "text": slack_text(alert) }))
        .expect("a JSON object serializes")
}
