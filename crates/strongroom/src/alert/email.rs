//! E-mail targets: the message a `format = "email"` command (`sendmail -t`, `msmtp -t`) reads
//! on its standard input.
//!
//! Owns the message: RFC 5322 headers (`From`, `To`, `Subject`, `Date`, `Message-ID`, and
//! MIME's `text/plain; charset=utf-8` in 8 bits), a subject saying level, source and what
//! happened in one line (non-ASCII as RFC 2047 encoded words), and a body with the summary,
//! the failing checks, the error and what to do, wrapped at 78 columns. Lines end in LF, as
//! a message handed to `sendmail -t` does (the mail system writes CRLF on the wire). Must
//! not run the command (`command` does) nor judge the addresses (the config refuses
//! anything but printable ASCII in them, so nothing can end a header early).

use super::{Alert, AlertEvent};
use base64::Engine;

/// Widest line written where it can be helped.
const WIDTH: usize = 78;
/// The most a line may hold (RFC 5322 allows 998 octets); longer words are cut.
const HARD: usize = 900;

/// The whole message for `alert`, to `to` (one address or several, comma-separated), from
/// `from` or `strongroom@HOSTNAME`.
pub fn message(alert: &Alert, to: &str, from: Option<&str>) -> String {
    let host = mail_host(&alert.hostname);
    let from = from.map_or_else(|| format!("strongroom@{host}"), str::to_string);
    let date = jiff::fmt::rfc2822::to_string(&alert.at.to_zoned(jiff::tz::TimeZone::system()))
        .or_else(|_| jiff::fmt::rfc2822::to_string(&alert.at.to_zoned(jiff::tz::TimeZone::UTC)))
        .unwrap_or_default();
    let mut id = [0u8; 8];
    let _ = getrandom::fill(&mut id);
    let mut m = String::new();
    m.push_str(&fold("From", &from));
    m.push_str(&fold("To", to));
    m.push_str(&subject_header(&subject(alert)));
    m.push_str(&format!("Date: {date}\n"));
    m.push_str(&format!(
        "Message-ID: <{}.{}.{}@{host}>\n",
        alert.at.as_second(),
        std::process::id(),
        hex::encode(id)
    ));
    m.push_str("MIME-Version: 1.0\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\n");
    m.push_str("Content-Transfer-Encoding: 8bit\n");
    m.push_str("Auto-Submitted: auto-generated\n");
    m.push('\n');
    m.push_str(&body(alert));
    m
}

/// `[strongroom] CRITICAL hotel: backup failed on db1`, `[strongroom] WARNING hotel: newest
/// full snapshot is 27h old (rpo 24h)`, `[strongroom] RECOVERED hotel: every check is ok
/// again`.
pub(super) fn subject(alert: &Alert) -> String {
    let marker = match alert.event {
        AlertEvent::Recovered => "RECOVERED".to_string(),
        _ => alert.level.to_uppercase(),
    };
    let what = match alert.event {
        AlertEvent::JobFailed => format!(
            "{} failed on {}",
            alert.job.as_deref().unwrap_or("a job"),
            alert.hostname
        ),
        AlertEvent::Recovered => "every check is ok again".into(),
        AlertEvent::StateChanged => {
            // The check that made this alert go out leads, as in the summary.
            let lead = alert
                .checks
                .iter()
                .find(|c| alert.new_checks.contains(&c.name))
                .or(alert.checks.first());
            match lead {
                Some(c) if alert.checks.len() > 1 => {
                    format!("{} (and {} more)", c.detail, alert.checks.len() - 1)
                }
                Some(c) => c.detail.clone(),
                None => format!("it is {}", alert.level),
            }
        }
    };
    let what = shorten(&what, 120);
    match &alert.source {
        Some(s) => format!("[strongroom] {marker} {s}: {what}"),
        None => format!("[strongroom] {marker}: {what}"),
    }
}

/// The text: the summary, the failing checks, the error's kind, what to do, then where.
fn body(alert: &Alert) -> String {
    let mut paras: Vec<Vec<String>> = vec![vec![alert.summary.clone()]];
    if !alert.checks.is_empty() {
        let mut p = vec!["Failing checks:".to_string()];
        p.extend(
            alert
                .checks
                .iter()
                .map(|c| format!("- {} ({}): {}", c.name, c.level, c.detail)),
        );
        paras.push(p);
    }
    if let Some(kind) = &alert.error_kind {
        paras.push(vec![format!("Error kind: {kind}")]);
    }
    let todo = match (&alert.hint, alert.event) {
        (Some(h), _) => h.clone(),
        (None, AlertEvent::Recovered) => "nothing: every check is ok again".into(),
        (None, _) => format!(
            "run `strongroom status` on {} for every finding",
            alert.hostname
        ),
    };
    paras.push(vec![format!("What to do: {todo}")]);
    let mut about = Vec::new();
    if let Some(s) = &alert.source {
        about.push(format!("Source: {s}"));
    }
    if let Some(j) = &alert.job {
        about.push(format!("Job: {j}"));
    }
    if let Some(seg) = &alert.segment {
        about.push(format!("WAL segment: {seg}"));
    }
    about.push(format!("Host: {}", alert.hostname));
    about.push(format!("Repository: {}", alert.repository));
    about.push(format!(
        "At: {}",
        alert.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    ));
    paras.push(about);
    let mut out = String::new();
    for (i, p) in paras.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for line in p {
            let indent = if line.starts_with("- ") { "  " } else { "" };
            for l in wrap(line, indent) {
                out.push_str(&l);
                out.push('\n');
            }
        }
    }
    out
}

/// `line` in lines of at most [`WIDTH`] columns where spaces allow (at most [`HARD`] bytes
/// always), continuation lines starting with `indent`. No line ends in a space.
fn wrap(line: &str, indent: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in line.split(' ').filter(|w| !w.is_empty()) {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push(std::mem::take(&mut cur));
        }
        if cur.is_empty() {
            cur.push_str(if out.is_empty() { "" } else { indent });
        } else {
            cur.push(' ');
        }
        cur.push_str(word);
        while cur.len() > HARD {
            let mut cut = HARD;
            while !cur.is_char_boundary(cut) {
                cut -= 1;
            }
            let rest = cur.split_off(cut);
            out.push(std::mem::replace(&mut cur, format!("{indent}{rest}")));
        }
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

/// `Name: value`, folded at spaces so lines stay within [`WIDTH`] where they can (value is
/// printable ASCII).
fn fold(name: &str, value: &str) -> String {
    let mut out = format!("{name}:");
    let mut width = out.len();
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if width + 1 + word.len() > WIDTH && width > name.len() + 1 {
            out.push_str("\n ");
            width = 1;
        } else {
            out.push(' ');
            width += 1;
        }
        out.push_str(word);
        width += word.len();
    }
    out.push('\n');
    out
}

/// The `Subject` header: folded ASCII, or RFC 2047 encoded words (base64 of at most 45
/// bytes each, so each word stays within 75 characters) when it holds anything else.
fn subject_header(subject: &str) -> String {
    if subject.chars().all(|c| (' '..='~').contains(&c)) {
        return fold("Subject", subject);
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in subject.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(encoded_word(&chunk));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(encoded_word(&chunk));
    }
    format!("Subject: {}\n", words.join("\n "))
}

fn encoded_word(s: &str) -> String {
    format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(s)
    )
}

/// `s`, cut to at most `max` characters with `…` when longer.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The host name as a mail domain and message id part: letters, digits, `-` and `.` only.
fn mail_host(hostname: &str) -> String {
    let h: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    if h.is_empty() { "localhost".into() } else { h }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_wrap_at_spaces_and_never_past_the_hard_limit() {
        let words = "word ".repeat(40);
        let lines = wrap(&format!("- {words}"), "  ");
        assert!(lines.len() > 1, "{lines:?}");
        for l in &lines {
            assert!(l.chars().count() <= WIDTH && !l.ends_with(' '), "{l:?}");
        }
        assert!(
            lines[1..].iter().all(|l| l.starts_with("  word")),
            "{lines:?}"
        );
        let long = "x".repeat(2000);
        let lines = wrap(&long, "");
        assert!(lines.iter().all(|l| l.len() <= HARD), "{lines:?}");
        assert_eq!(lines.concat(), long);
        assert_eq!(wrap("", ""), vec![String::new()]);
        let folded = fold("To", &"someone@hotel.example, ".repeat(8));
        assert!(folded.lines().all(|l| l.len() <= WIDTH), "{folded}");
        assert!(
            folded.lines().skip(1).all(|l| l.starts_with(' ')),
            "{folded}"
        );
    }
}
