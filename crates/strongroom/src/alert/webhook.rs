//! Webhook targets: one HTTP POST per attempt, and the Slack-compatible body.
//!
//! Owns the HTTP client (reqwest's blocking client over rustls), one POST (body, headers,
//! credentials), what a webhook answer means (2xx delivered, anything else a failure the
//! caller may retry), the format a URL's host calls for, and how a URL is shown in logs. Must not retry or decide who gets what (`deliver` does), and must never show a
//! webhook's path or query: Slack webhook URLs are secrets in their path.

use super::{Alert, AlertEvent, Format};
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

/// The format a webhook with no `format` gets, from its host: `hooks.slack.com` Slack's,
/// `ntfy.sh` ntfy's, `hc-ping.com` (Healthchecks.io) pings; anything else the JSON document.
pub(super) fn format_for_host(url: &str) -> Format {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    match host.as_deref() {
        Some("hooks.slack.com") => Format::Slack,
        Some("ntfy.sh") => Format::Ntfy,
        Some("hc-ping.com") => Format::Healthchecks,
        _ => Format::Json,
    }
}

/// One POST: where, and what it carries.
pub(super) struct Post {
    /// The URL as requested (credentials in it become Basic auth, reqwest's way, unless
    /// `auth` took them out).
    pub url: String,
    /// The body's `Content-Type`.
    pub content_type: &'static str,
    /// More headers (names as sent); values must be visible ASCII.
    pub headers: Vec<(&'static str, String)>,
    /// An `Authorization` header to send.
    pub auth: Option<Auth>,
    /// The body.
    pub body: Vec<u8>,
}

impl Post {
    /// A POST of a JSON body to `url`.
    pub(super) fn json(url: &str, body: Vec<u8>) -> Post {
        Post {
            url: url.to_string(),
            content_type: "application/json",
            headers: Vec::new(),
            auth: None,
            body,
        }
    }
}

/// Credentials for the `Authorization` header.
pub(super) enum Auth {
    /// `Basic`, user and password.
    Basic(String, String),
    /// `Bearer`, a token.
    Bearer(String),
}

/// `url` without its `user:password@`, and those as [`Auth`]: a password with no user is a
/// token (`https://:tk_…@ntfy.example/topic`, shoutrrr's spelling), anything else Basic.
/// Percent-escapes in them are decoded. A URL that does not parse comes back as it was.
pub(super) fn split_credentials(url: &str) -> (String, Option<Auth>) {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return (url.to_string(), None);
    };
    let user = percent_decode(u.username());
    let password = u.password().map(percent_decode);
    if user.is_empty() && password.is_none() {
        return (url.to_string(), None);
    }
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let auth = match password {
        Some(token) if user.is_empty() => Auth::Bearer(token),
        password => Auth::Basic(user, password.unwrap_or_default()),
    };
    (u.to_string(), Some(auth))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// One POST of `post`: `Ok` on a 2xx answer, else the sentence saying why.
pub(super) fn post(
    client: &reqwest::blocking::Client,
    post: &Post,
    timeout: Duration,
) -> Result<(), String> {
    let mut request = client
        .post(&post.url)
        .header(reqwest::header::CONTENT_TYPE, post.content_type)
        .body(post.body.clone());
    for (name, value) in &post.headers {
        request = request.header(*name, value);
    }
    request = match &post.auth {
        Some(Auth::Basic(user, password)) => request.basic_auth(user, Some(password)),
        Some(Auth::Bearer(token)) => request.bearer_auth(token),
        None => request,
    };
    let answer = request.send().map_err(|e| {
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
