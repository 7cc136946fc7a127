//! Bucket policies for the fault proxy: which objects exist, as far as the proxy can tell, and
//! the plan that answers like the bucket policy of an append-only key.
//!
//! # The append-only key
//!
//! A database host that holds an append-only key may write backups and nothing else: the
//! store refuses it deletes, overwrites and reads of the backups' contents, as a bucket policy
//! would. [`Plan::append_only_bucket_policy`] answers these with [`Fault::Forbidden`] (`403`,
//! `AccessDenied`), never forwarding them:
//!
//! - every `DELETE` (objects, versions, and aborting a multipart upload) and every multi-object
//!   delete (`POST /BUCKET?delete`);
//! - an overwrite: a `PUT` of an object that exists (sub-resources such as `?retention`,
//!   `?tagging` and the parts of a multipart upload, `?partNumber=..&uploadId=..`, are not
//!   overwrites), and completing a multipart upload (`POST ..?uploadId=..`) onto one;
//! - `GET` and `HEAD` of objects whose path contains one of [`APPEND_ONLY_UNREADABLE`]
//!   (`/data/`, `/index/`, `/snapshots/`, `/journal/`), except the sub-resources a policy
//!   grants apart from the contents (`?retention`, `?legal-hold`, `?tagging`, `?acl`).
//!   [`Plan::append_only_bucket_policy_unreadable`] takes other path parts.
//!
//! Everything else passes: listings, writes of new objects, reading `config`, `keys/`,
//! `catalogs/`, `deletions/`, `damage/`, `wal/`. A repository lives under a prefix in its
//! bucket (`/BUCKET/some/prefix/data/ab/abcd…`), so the rules match on a path *containing*
//! `/data/`; a repository whose own prefix contains one of these parts (`/BUCKET/data/repo/`)
//! would have all its objects refused, so tests name theirs otherwise. The plan's rules come
//! first; rules a test adds after them only see what the policy lets through. Locks are
//! objects too: refreshing one (a `PUT` onto it) and releasing it (a `DELETE`) are refused
//! like any other, so a job that must work with an append-only key cannot rely on either.
//!
//! Real S3 cannot say "no overwrite" in a bucket policy; what is modelled is a store that
//! refuses a write onto an existing key with a 403, as a policy on the key's prefix, object
//! lock or a conditional write (`If-None-Match: *`, which answers `412` instead) would.
//!
//! # Which objects exist
//!
//! The proxy cannot sign requests of its own, so it cannot ask the server. It learns from what
//! passes through it, over all plans:
//!
//! - an object exists once a `PUT`, `GET` or `HEAD` of it was answered `2xx` or `304` (not the
//!   `?uploadId=` requests of a multipart upload), once a multipart upload onto it completed
//!   (`200` without an `<Error>` in the body), and once it was named in a listing
//!   (`ListObjects` or `ListObjectsV2`, `<Key>` in a `<ListBucketResult>`);
//! - it no longer exists once a `DELETE` of it, or a multi-object delete naming it under
//!   `<Deleted>`, succeeded.
//!
//! Tests can tell it of objects written past it with [`FaultProxy::add_known_keys`].
//!
//! Limits: an object written straight to the server (past the proxy), and never read or listed
//! through it, is not known, so its overwrite passes; so does the second of two writes of a
//! new key sent at the same time (each is checked before either is answered). Only path-style
//! S3 requests (`/BUCKET/KEY`) are understood; listings sent compressed (`Content-Encoding`)
//! teach nothing. Keys are compared decoded: the request's path percent-decoded, a listing's
//! keys XML-unescaped (and percent-decoded under `encoding-type=url`).
//!
//! Must not change a byte that passes: a listing is read whole before it is relayed, but
//! relayed as read.

use super::*;

/// The path parts whose objects an append-only key may not read (`GET`, `HEAD`): the backups'
/// contents. `config`, `keys/`, `catalogs/`, `deletions/`, `damage/` and `wal/` stay readable.
pub const APPEND_ONLY_UNREADABLE: [&str; 4] = ["/data/", "/index/", "/snapshots/", "/journal/"];

/// Sub-resources of an object that a policy grants apart from its contents: a `GET` of them is
/// not a read and a `PUT` not an overwrite.
const SUBRESOURCES: [&str; 4] = ["retention", "legal-hold", "tagging", "acl"];

impl Plan {
    /// The bucket policy of an append-only key (see [`crate::s3proxy::policy`]): deletes,
    /// overwrites, and reads of objects under [`APPEND_ONLY_UNREADABLE`] answered
    /// `403 Forbidden`. Seeded as [`Plan::new`]; more rules can follow.
    pub fn append_only_bucket_policy() -> Plan {
        Plan::append_only_bucket_policy_unreadable(&APPEND_ONLY_UNREADABLE)
    }

    /// [`Plan::append_only_bucket_policy`], with `GET` and `HEAD` refused on paths containing
    /// one of `unreadable` (`"/data/"`, ...) instead.
    pub fn append_only_bucket_policy_unreadable(unreadable: &[&str]) -> Plan {
        let no = || Rule::new(Fault::Forbidden);
        let except_subresources =
            |rule: Rule| SUBRESOURCES.iter().fold(rule, |r, s| r.except_query(s));
        let mut plan = Plan::new()
            .rule(no().method("DELETE"))
            .rule(no().method("POST").query("delete"))
            .rule(except_subresources(
                no().method("PUT").existing().except_query("uploadId"),
            ))
            .rule(no().method("POST").query("uploadId").existing());
        for part in unreadable {
            for method in ["GET", "HEAD"] {
                plan = plan.rule(except_subresources(no().method(method).path(part)));
            }
        }
        plan
    }
}

impl FaultProxy {
    /// Tells the proxy that these objects of `bucket` exist (written past it), so that
    /// [`Rule::existing`] takes them; `keys` as the store names them (`prefix/config`).
    pub fn add_known_keys<I>(&self, bucket: &str, keys: I)
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let bucket = bucket.trim_matches('/');
        let mut st = self.shared.state();
        for key in keys {
            st.known.insert(format!("/{bucket}/{}", key.as_ref()));
        }
    }

    /// The objects the proxy knows exist, as decoded paths `/BUCKET/KEY`, in order.
    pub fn known_keys(&self) -> Vec<String> {
        self.shared.state().known.iter().cloned().collect()
    }
}

impl Shared {
    /// Learns from a request and the server's final status (and, for the responses
    /// [`wants_body`] names, their content) which objects exist.
    pub(super) fn learn(&self, req: &Request, status: u16, body: Option<&[u8]>) {
        let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
        let method = req.method.as_str();
        let ok = (200..300).contains(&status);
        let multipart = query.contains("uploadId");
        match (object_path(path), body) {
            (Some(object), None) if !multipart => {
                let seen = matches!(method, "GET" | "HEAD" | "PUT") && (ok || status == 304);
                if seen {
                    self.state().known.insert(object);
                } else if method == "DELETE" && ok {
                    self.state().known.remove(&object);
                }
            }
            // A completed multipart upload; S3 may answer 200 with an error in the body.
            (Some(object), Some(body))
                if method == "POST" && multipart && !contains(body, b"<Error>") =>
            {
                self.state().known.insert(object);
            }
            (None, Some(body)) => {
                let bucket = path.trim_matches('/');
                if method == "GET" && contains(body, b"<ListBucketResult") {
                    let url = query.split('&').any(|p| p == "encoding-type=url");
                    let keys = tags(body, "Key").into_iter().map(|k| listed_key(&k, url));
                    let keys: Vec<String> = keys.map(|k| format!("/{bucket}/{k}")).collect();
                    self.state().known.extend(keys);
                } else if method == "POST" {
                    let deleted: Vec<String> = tags(body, "Deleted")
                        .into_iter()
                        .flat_map(|d| tags(d.as_bytes(), "Key"))
                        .map(|k| format!("/{bucket}/{}", unescape(&k)))
                        .collect();
                    let mut st = self.state();
                    for k in deleted {
                        st.known.remove(&k);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether the proxy reads this response's body whole to learn from it: a listing (any `GET`
/// of a bucket), a multi-object delete's outcome, a completed multipart upload's.
pub(super) fn wants_body(req: &Request, status: u16) -> bool {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    status == 200
        && match (object_path(path).is_some(), req.method.as_str()) {
            (false, "GET") => true,
            (false, "POST") => query.contains("delete"),
            (true, "POST") => query.contains("uploadId"),
            _ => false,
        }
}

/// The decoded path `/BUCKET/KEY` of a request's path when it names an object, `None` for a
/// bucket (`/BUCKET`, `/BUCKET/`) or the service (`/`).
pub(super) fn object_path(path: &str) -> Option<String> {
    let (bucket, key) = path.trim_start_matches('/').split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| percent_decode(&format!("/{bucket}/{key}")))
}

/// A body's content: chunked framing removed (as read when it cannot be).
pub(super) fn content(raw: &[u8], body: Body) -> Vec<u8> {
    if body != Body::Chunked {
        return raw.to_vec();
    }
    let mut r = raw;
    let mut data = Vec::new();
    loop {
        let Ok(size) = read_chunk_line(&mut r).and_then(|l| chunk_size(&l)) else {
            return raw.to_vec();
        };
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size == 0 || size > r.len() {
            return if size == 0 { data } else { raw.to_vec() };
        }
        data.extend_from_slice(&r[..size]);
        r = &r[size..];
        let _ = read_chunk_line(&mut r);
    }
}

fn contains(body: &[u8], part: &[u8]) -> bool {
    body.windows(part.len()).any(|w| w == part)
}

/// The text of each `<tag>…</tag>` in an XML body, as written (not unescaped).
fn tags(body: &[u8], tag: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = &*text;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        found.push(after[..end].to_string());
        rest = &after[end + close.len()..];
    }
    found
}

/// A key as a listing names it: XML-unescaped, and percent-decoded (`+` a space) when the
/// listing was asked for with `encoding-type=url`.
fn listed_key(key: &str, url: bool) -> String {
    let key = unescape(key);
    if url {
        percent_decode(&key.replace('+', " "))
    } else {
        key
    }
}

/// XML's character references and the five predefined entities, replaced.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `%XX` escapes replaced by their bytes (kept as written when not two hex digits).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
