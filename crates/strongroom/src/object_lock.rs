//! S3 Object Lock: the requests OpenDAL does not make.
//!
//! Owns a repository's lock policy ([`LockPolicy`]: days and mode, recorded in its config) and
//! the signed S3 requests that carry it: a PUT with `x-amz-object-lock-mode` and
//! `x-amz-object-lock-retain-until-date`, a HEAD that reads an object's lock, the
//! `PutObjectRetention` that extends one, the bucket's `GetObjectLockConfiguration`, the
//! versions of a key (`ListObjectVersions`) and the DELETE of one version. It must not decide
//! which objects to lock or when to delete them (`storage` applies the policy to every write;
//! `prune` plans the deletes), and it must not know what objects mean.
//!
//! Why here and not in OpenDAL: OpenDAL 0.59's S3 service has no option for object-lock
//! headers, versions of one key aside. Adding the headers below OpenDAL (its HTTP transport)
//! would send them unsigned, which AWS refuses (SigV4 must sign every `x-amz-*` header). So
//! these few requests are built here and signed with the same crates OpenDAL signs with
//! (`reqsign-aws-v4`, `reqsign-core`), sent through `reqwest`, which OpenDAL also uses. Reads,
//! listings and plain deletes still go through OpenDAL.
//!
//! AWS requires `Content-MD5` (or a checksum) on a PUT that sets a lock and on
//! `PutObjectRetention`; both carry it.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How strictly S3 holds a locked object version until its date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can delete or shorten the lock; nobody else.
    #[default]
    Governance,
    /// Nobody, the account's root user included, can delete the version or shorten its lock
    /// before the date.
    Compliance,
}

impl LockMode {
    /// The mode as S3 spells it in headers and XML.
    pub fn s3_name(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// The mode as strongroom spells it (`governance`, `compliance`).
    pub fn name(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }

    /// Parses `governance` or `compliance` (any case).
    pub fn parse(s: &str) -> Option<LockMode> {
        match s.to_ascii_lowercase().as_str() {
            "governance" => Some(LockMode::Governance),
            "compliance" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

/// A repository's object-lock policy (`init --object-lock DAYS --lock-mode M`), recorded in
/// its config: every object written (locks and deletion marks aside, see
/// `layout::ObjectKind::locked`) is locked until at least `days` days after its write, and
/// `forget --prune` keeps the objects kept snapshots need locked that far ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockPolicy {
    /// Days each write is locked for, and how far ahead maintenance keeps needed objects.
    pub days: u32,
    /// Governance or compliance.
    pub mode: LockMode,
}

impl LockPolicy {
    /// The longest lock accepted: 100 years (S3 allows more; a longer one is a typo).
    pub const MAX_DAYS: u32 = 36_500;

    /// The lock's length.
    pub fn span(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_hours(i64::from(self.days) * 24)
    }

    /// The retain-until date of an object written or extended at `now`: `now` plus the
    /// days, rounded up to the whole second (S3 dates carry no fraction).
    pub fn until(&self, now: jiff::Timestamp) -> jiff::Timestamp {
        let t = now + self.span();
        let up = if t.subsec_nanosecond() > 0 { 1 } else { 0 };
        jiff::Timestamp::from_second(t.as_second() + up).unwrap_or(t)
    }
}

/// One object version's lock, as a HEAD reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectLockState {
    /// The version the HEAD answered for.
    pub version: Option<String>,
    /// The object's size.
    pub size: u64,
    /// The retain-until date, when the version is locked.
    pub until: Option<jiff::Timestamp>,
    /// The lock's mode, when locked.
    pub mode: Option<LockMode>,
}

/// One entry of a key's version listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The object's key, relative to the repository.
    pub key: String,
    /// Its version id.
    pub version: String,
    /// Whether it is the current version (or delete marker).
    pub latest: bool,
    /// Whether it is a delete marker.
    pub delete_marker: bool,
    /// Its size (0 for a delete marker).
    pub size: u64,
}

/// Signed S3 requests against one bucket and prefix.
pub(crate) struct S3Locks {
    client: reqwest::Client,
    signer: reqsign_core::Signer<reqsign_aws_v4::Credential>,
    /// `scheme://host[:port]` and, path-style, `/bucket`: what object paths follow.
    base: String,
    /// The repository's prefix inside the bucket, without slashes at either end.
    prefix: String,
    /// The repository's URL, for messages.
    url: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Percent-encodes an object key for a request path (every byte but unreserved ones and `/`).
fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value (unreserved bytes only).
fn encode_query(v: &str) -> String {
    encode_path(v).replace('/', "%2F")
}

fn md5_base64(body: &[u8]) -> String {
    use base64::Engine;
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

fn sha256_hex(body: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(body))
}

/// An S3 date (`2026-12-07T21:04:05Z`, or with a fraction) as a timestamp.
fn parse_date(s: &str) -> Option<jiff::Timestamp> {
    s.trim().parse().ok()
}

/// A timestamp as S3 takes it: whole seconds, UTC.
fn s3_date(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What one request answered.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `<Code>` of an S3 error body.
    fn code(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.body);
        let start = text.find("<Code>")? + "<Code>".len();
        let len = text[start..].find("</Code>")?;
        Some(text[start..start + len].to_string())
    }

    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl S3Locks {
    /// The client for the repository at `s3://bucket/prefix` (`url`), with the endpoint,
    /// region and credentials OpenDAL reads (`AWS_ENDPOINT_URL` path-style, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, else the default
    /// chain: profile files, web identity, ECS, the EC2 instance metadata). `timeout`
    /// bounds each request, as OpenDAL's timeout layer bounds the others.
    pub(crate) fn new(url: &str, bucket: &str, prefix: &str, timeout: Duration) -> Result<S3Locks> {
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let base = match env("AWS_ENDPOINT_URL").or_else(|| env("AWS_ENDPOINT_URL_S3")) {
            Some(ep) => format!("{}/{bucket}", ep.trim_end_matches('/')),
            None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        };
        // OpenDAL's transport also serves the credential providers that ask over HTTP
        // (the EC2 instance metadata, ECS), as it does for OpenDAL's own signer.
        let ctx = reqsign_core::Context::new()
            .with_file_read(reqsign_file_read_tokio::TokioFileRead)
            .with_http_send(opendal::HttpTransporter::default())
            .with_env(reqsign_core::OsEnv);
        let request_signer = reqsign_aws_v4::RequestSigner::new("s3", &region);
        let signer = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(ak), Some(sk)) => {
                let mut p = reqsign_aws_v4::StaticCredentialProvider::new(&ak, &sk);
                if let Some(t) = env("AWS_SESSION_TOKEN") {
                    p = p.with_session_token(&t);
                }
                reqsign_core::Signer::new(ctx, p, request_signer)
            }
            _ => reqsign_core::Signer::new(
                ctx,
                reqsign_aws_v4::DefaultCredentialProvider::new(),
                request_signer,
            ),
        };
        let mut client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout);
        if base.contains("://127.0.0.1") || base.contains("://localhost") {
            // reqwest honours HTTP_PROXY even for loopback.
            client = client.no_proxy();
        }
        let client = client.build().map_err(|e| Error::Storage {
            location: url.to_string(),
            detail: format!("cannot build the HTTP client for object lock: {e}"),
            transient: false,
        })?;
        Ok(S3Locks {
            client,
            signer,
            base,
            prefix: prefix.trim_matches('/').to_string(),
            url: url.to_string(),
        })
    }

    /// The request path of `key` (relative to the repository).
    fn path_of(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            format!("{}/{}", self.base, encode_path(key))
        } else {
            format!(
                "{}/{}/{}",
                self.base,
                encode_path(&self.prefix),
                encode_path(key)
            )
        }
    }

    /// The full key in the bucket of `key`.
    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn err(&self, key: &str, detail: String, transient: bool) -> Error {
        Error::Storage {
            location: format!("{}/{key}", self.url.trim_end_matches('/')),
            detail,
            transient,
        }
    }

    /// Sends one signed request, retrying connection failures, throttling and 5xx answers
    /// up to 4 times (as the OpenDAL retry layer does for every other request).
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        key: &str,
    ) -> Result<Answer> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = http::Request::builder()
                .method(method.as_str())
                .uri(url)
                .header("x-amz-content-sha256", sha256_hex(&body));
            for (name, value) in headers {
                req = req.header(*name, value);
            }
            let (mut parts, ()) = req
                .body(())
                .map_err(|e| self.err(key, format!("bad request: {e}"), false))?
                .into_parts();
            self.signer
                .sign(&mut parts, None)
                .await
                .map_err(|e| self.err(key, format!("cannot sign the request: {e}"), false))?;
            let mut rb = self.client.request(method.clone(), url);
            for (name, value) in parts.headers.iter() {
                rb = rb.header(name.as_str(), value.as_bytes());
            }
            let result = rb.body(body.clone()).send().await;
            let retry = match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        // Throttling (429, 503 SlowDown) and server errors are retried.
                        Ok(b) if (status < 500 && status != 429) || attempt > 4 => {
                            return Ok(Answer {
                                status,
                                headers,
                                body: b.to_vec(),
                            });
                        }
                        Ok(_) => format!("HTTP {status}"),
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            if attempt > 4 {
                return Err(self.err(
                    key,
                    format!("the object store is unreachable ({retry}); check AWS_ENDPOINT_URL and the network"),
                    true,
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// The error for an answer that is not a success.
    fn refused(&self, key: &str, what: &str, a: &Answer) -> Error {
        let code = a.code().unwrap_or_else(|| format!("HTTP {}", a.status));
        let hint = match code.as_str() {
            "AccessDenied" => "; check the credentials and the bucket policy",
            "NoSuchBucket" => "; create the bucket or fix the repository URL",
            _ => "",
        };
        self.err(
            key,
            format!("{what}: {code}{hint}"),
            a.status >= 500 || a.status == 429,
        )
    }

    /// Whether the bucket has Object Lock enabled (`GetObjectLockConfiguration`). A bucket
    /// without it answers `ObjectLockConfigurationNotFoundError`; a store that does not know
    /// the request (Garage) answers something else that does not say `Enabled`.
    pub(crate) async fn bucket_locks(&self) -> Result<bool> {
        let a = self
            .send(
                reqwest::Method::GET,
                &format!("{}?object-lock", self.base),
                &[],
                Vec::new(),
                "",
            )
            .await?;
        let text = String::from_utf8_lossy(&a.body);
        if a.ok() {
            return Ok(text.contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>"));
        }
        match a.code().as_deref() {
            Some("NoSuchBucket" | "AccessDenied" | "InvalidAccessKeyId")
            | Some("SignatureDoesNotMatch") => {
                Err(self.refused("", "reading the bucket's object lock configuration", &a))
            }
            _ if a.status >= 500 && a.status != 501 => {
                Err(self.refused("", "reading the bucket's object lock configuration", &a))
            }
            _ => Ok(false),
        }
    }

    /// Writes `data` at `key` locked in `mode` until `until`.
    pub(crate) async fn put_locked(
        &self,
        key: &str,
        data: &[u8],
        mode: LockMode,
        until: jiff::Timestamp,
    ) -> Result<()> {
        let headers = [
            ("content-type", "application/octet-stream".to_string()),
            ("content-md5", md5_base64(data)),
            ("x-amz-object-lock-mode", mode.s3_name().to_string()),
            ("x-amz-object-lock-retain-until-date", s3_date(until)),
        ];
        let a = self
            .send(
                reqwest::Method::PUT,
                &self.path_of(key),
                &headers,
                data.to_vec(),
                key,
            )
            .await?;
        if a.ok() {
            Ok(())
        } else {
            Err(self.refused(key, "writing a locked object", &a))
        }
    }

    /// The lock of `key`'s current version (or of `version`); `None` when there is none.
    pub(crate) async fn lock_of(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<ObjectLockState>> {
        let mut url = self.path_of(key);
        if let Some(v) = version {
            url.push_str(&format!("?versionId={}", encode_query(v)));
        }
        let a = self
            .send(reqwest::Method::HEAD, &url, &[], Vec::new(), key)
            .await?;
        if a.status == 404 {
            return Ok(None);
        }
        if !a.ok() {
            return Err(self.refused(key, "reading an object's lock", &a));
        }
        Ok(Some(ObjectLockState {
            version: a.header("x-amz-version-id").map(str::to_string),
            size: a
                .header("content-length")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            until: a
                .header("x-amz-object-lock-retain-until-date")
                .and_then(parse_date),
            mode: a.header("x-amz-object-lock-mode").and_then(LockMode::parse),
        }))
    }

    /// Sets the lock of `key`'s current version (or `version`) to `until`
    /// (`PutObjectRetention`). S3
    /// refuses to shorten a lock (governance without the bypass, compliance always), so
    /// callers only ever extend.
    pub(crate) async fn extend(
        &self,
        key: &str,
        version: Option<&str>,
        mode: LockMode,
        until: jiff::Timestamp,
    ) -> Result<()> {
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            mode.s3_name(),
            s3_date(until)
        )
        .into_bytes();
        let headers = [
            ("content-type", "application/xml".to_string()),
            ("content-md5", md5_base64(&body)),
        ];
        let mut url = format!("{}?retention", self.path_of(key));
        if let Some(v) = version {
            url.push_str(&format!("&versionId={}", encode_query(v)));
        }
        let a = self
            .send(reqwest::Method::PUT, &url, &headers, body, key)
            .await?;
        if a.ok() {
            Ok(())
        } else {
            Err(self.refused(key, "extending an object's lock", &a))
        }
    }

    /// Deletes one version of `key` (or a delete marker). S3 refuses it while the version
    /// is locked (`AccessDenied`): `Ok(false)`.
    pub(crate) async fn delete_version(&self, key: &str, version: &str) -> Result<bool> {
        let url = format!("{}?versionId={}", self.path_of(key), encode_query(version));
        let a = self
            .send(reqwest::Method::DELETE, &url, &[], Vec::new(), key)
            .await?;
        match a.status {
            200..=299 | 404 => Ok(true),
            403 => Ok(false),
            _ => Err(self.refused(key, "deleting an object version", &a)),
        }
    }

    /// Every version and delete marker of the keys under `prefix` (relative to the
    /// repository), oldest listing order as S3 gives it (by key, newest version first).
    pub(crate) async fn versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>> {
        let full = self.full_key(prefix);
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut url = format!("{}?versions&prefix={}", self.base, encode_query(&full));
            if let Some((k, v)) = &markers {
                url.push_str(&format!(
                    "&key-marker={}&version-id-marker={}",
                    encode_query(k),
                    encode_query(v)
                ));
            }
            let a = self
                .send(reqwest::Method::GET, &url, &[], Vec::new(), prefix)
                .await?;
            if !a.ok() {
                return Err(self.refused(prefix, "listing object versions", &a));
            }
            let listing: ListVersionsResult = quick_xml::de::from_reader(a.body.as_slice())
                .map_err(|e| self.err(prefix, format!("unreadable version listing: {e}"), false))?;
            let entries = listing.versions.iter().map(|v| (v, false));
            for (v, marker) in entries.chain(listing.delete_markers.iter().map(|v| (v, true))) {
                let Some(key) = v.key.strip_prefix(&strip) else {
                    continue;
                };
                out.push(ObjectVersion {
                    key: key.to_string(),
                    version: v.version_id.clone(),
                    latest: v.is_latest,
                    delete_marker: marker,
                    size: v.size.unwrap_or(0),
                });
            }
            match (
                listing.is_truncated,
                listing.next_key_marker,
                listing.next_version_id_marker,
            ) {
                (true, Some(k), Some(v)) => markers = Some((k, v)),
                _ => break,
            }
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListVersionsResult {
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_version_id_marker: Option<String>,
    /// Versions and delete markers come interleaved (quick-xml's `overlapped-lists`).
    #[serde(rename = "Version", default)]
    versions: Vec<VersionXml>,
    #[serde(rename = "DeleteMarker", default)]
    delete_markers: Vec<VersionXml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersionXml {
    #[serde(default)]
    key: String,
    #[serde(default)]
    version_id: String,
    #[serde(default)]
    is_latest: bool,
    size: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_days_ahead_rounded_up_to_the_second() {
        let p = LockPolicy {
            days: 2,
            mode: LockMode::Governance,
        };
        let now: jiff::Timestamp = "2026-12-06T10:00:00.250Z".parse().unwrap();
        assert_eq!(p.until(now).to_string(), "2026-12-08T10:00:01Z");
        assert_eq!(s3_date(p.until(now)), "2026-12-08T10:00:01Z");
    }

    #[test]
    fn keys_are_encoded_for_paths() {
        assert_eq!(encode_path("data/ab/x y+z"), "data/ab/x%20y%2Bz");
        assert_eq!(encode_query("a/b=c"), "a%2Fb%3Dc");
    }

    #[test]
    fn a_version_listing_parses() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>true</IsTruncated><KeyMarker/><VersionIdMarker/><NextKeyMarker>p/b</NextKeyMarker><NextVersionIdMarker>v3</NextVersionIdMarker><DeleteMarker><Key>p/0</Key><VersionId>v0</VersionId><IsLatest>false</IsLatest></DeleteMarker><Version><ETag>"x"</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass><Key>p/a</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest><LastModified>2026-12-06T21:04:05.000Z</LastModified><Owner><ID>o</ID></Owner></Version><DeleteMarker><Owner><ID>o</ID></Owner><Key>p/a</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest><LastModified>2026-12-06T21:04:05.000Z</LastModified></DeleteMarker><Name>b</Name><Prefix>p/</Prefix><MaxKeys>1000</MaxKeys></ListVersionsResult>"#;
        let l: ListVersionsResult = quick_xml::de::from_str(xml).unwrap();
        assert!(l.is_truncated);
        assert_eq!(l.next_key_marker.as_deref(), Some("p/b"));
        let got: Vec<(String, bool)> = l
            .versions
            .iter()
            .map(|v| (v.version_id.clone(), v.is_latest))
            .collect();
        assert_eq!(got, vec![("v1".into(), false)]);
        assert_eq!(l.versions[0].size, Some(5));
        let markers: Vec<(String, bool)> = l
            .delete_markers
            .iter()
            .map(|v| (v.version_id.clone(), v.is_latest))
            .collect();
        assert_eq!(markers, vec![("v0".into(), false), ("v2".into(), true)]);
    }
}
