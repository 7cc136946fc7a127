//! PostgreSQL connection strings as text: libpq URLs and `key=value` strings.
//!
//! Owns reading and writing their text and removing passwords from it, for source names,
//! records and messages (docs/ARCHITECTURE.md, "Invariants": secrets never appear). Pure
//! string work: connecting, environment variables and defaults are the PostgreSQL engine's
//! (`engine::postgres::server`). Must not do I/O.

/// Whether `s` is a `postgres://` or `postgresql://` URL (else a libpq `key=value` string).
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The `key=value` pairs of a libpq connection string (`host=db dbname='my db'`).
pub fn conninfo_pairs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'=') {
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
    out
}

/// Quotes a value for a libpq connection string.
pub fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A libpq connection string of `pairs`, every value quoted.
pub fn conninfo_string(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", conninfo_value(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes `%XX` escapes in a URL query value (paths with spaces).
pub fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(x) = u8::from_str_radix(hex, 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a PostgreSQL URL or connection string carries a password (in its user part, or
/// as a `password` parameter).
pub fn has_password(url: &str) -> bool {
    // A trailing `?` is dropped by the redaction too; it is not a password.
    redact_url(url) != url.trim_end_matches('?')
}

/// A PostgreSQL URL with any password replaced, for records and messages.
pub fn redact_url(url: &str) -> String {
    if !is_url(url) {
        let kept: Vec<(String, String)> = conninfo_pairs(url)
            .into_iter()
            .filter(|(k, _)| k != "password")
            .collect();
        return conninfo_string(&kept);
    }
    let mut out = url.to_string();
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        // The credentials end at the first '@', wherever it is: that is how the URL parser
        // reads them, so a password holding '/' or '?' (base64 ones often do) connects,
        // and must not slip past here. A raw '@' in the password (which the parser cannot
        // take) goes too: up to the last '@' of the host part that follows.
        if let Some(first) = rest.find('@') {
            let host_end = rest[first..]
                .find(['/', '?'])
                .map_or(rest.len(), |i| first + i);
            let at = first + rest[first..host_end].rfind('@').unwrap_or(0);
            let user = rest[..at].split(':').next().unwrap_or("");
            out = format!("{}://{user}{}", &url[..scheme_end], &rest[at..]);
        }
    }
    // Drop a password= query parameter too.
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("password="))
            .collect();
        out = format!("{base}{}", kept.join("&"))
            .trim_end_matches('?')
            .to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/hotel"),
            "postgres://app@db:5432/hotel"
        );
        assert_eq!(
            redact_url("postgresql://app@db/hotel"),
            "postgresql://app@db/hotel"
        );
        assert_eq!(
            redact_url("postgres://app:p%40ss@db/hotel?password=x&sslmode=disable"),
            "postgres://app@db/hotel?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://db/hotel?password=x"),
            "postgres://db/hotel"
        );
        assert_eq!(
            redact_url("postgres://app:s/cr?t@db/hotel"),
            "postgres://app@db/hotel"
        );
        assert_eq!(
            redact_url("postgres://app:p@ss@db/hotel"),
            "postgres://app@db/hotel"
        );
    }

    #[test]
    fn values_are_quoted_and_decoded() {
        assert_eq!(conninfo_value(r"a'b\c"), r"'a\'b\\c'");
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
