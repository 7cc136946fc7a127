//! Where repository objects live: a local directory or an object store, chosen by URL.
//!
//! Owns: turning a repository URL into a backend, and the five operations the repository
//! needs (put, get, ranged get, list, delete). It is the only module that performs I/O against
//! the store. It must not know what the objects mean.
//!
//! Why two implementations: the local filesystem is written here with `std::fs` because a
//! backup tool must make every object write atomic *and durable* (temp file, fsync, rename,
//! fsync of the directory), which OpenDAL's fs service does not promise. Everything remote
//! (S3 and S3-compatible stores, Azure Blob, GCS) and the in-memory store used by unit tests go
//! through OpenDAL: one well-kept crate instead of three SDKs, with retries built in. Object
//! stores make a single PUT atomic by themselves. The library is synchronous; OpenDAL's async
//! calls run on a small runtime owned by the backend.

use crate::error::{Error, Result};
use crate::object_lock::{self, LockPolicy, ObjectLockState, ObjectVersion};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A repository's object store.
#[derive(Clone)]
pub struct Storage {
    url: String,
    backend: Backend,
    /// S3 only: the bucket and the prefix inside it, for the requests [`object_lock`] makes.
    s3_place: Option<(String, String)>,
    /// The repository's object-lock policy once [`Storage::with_object_lock`] set it.
    locking: Option<Arc<Locking>>,
}

/// What [`Storage::put`] and [`Storage::delete`] do on a repository with object lock.
struct Locking {
    s3: object_lock::S3Locks,
    policy: LockPolicy,
    /// Key prefixes written without a lock (and deleted with every version).
    unlocked: Vec<&'static str>,
}

impl Locking {
    fn locks(&self, key: &str) -> bool {
        !self.unlocked.iter().any(|p| key.starts_with(p))
    }
}

#[derive(Clone)]
enum Backend {
    /// A local directory; `owner` is the directory's owner when this process runs as root
    /// and the directory belongs to someone else (see [`local_owner`]).
    Local {
        root: PathBuf,
        owner: Option<(u32, u32)>,
    },
    Remote {
        op: opendal::Operator,
        rt: Arc<tokio::runtime::Runtime>,
    },
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Path relative to the repository root, with `/` separators.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was written, as the store reports it (file mtime, S3 LastModified).
    pub modified: Option<jiff::Timestamp>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.url)
    }
}

/// How long one request may stall before it is abandoned and retried: 60 s, or
/// `STRONGROOM_IO_TIMEOUT` (seconds; tests of stalling stores shorten it).
fn io_timeout() -> Duration {
    env("STRONGROOM_IO_TIMEOUT")
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(60))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn split_bucket(url: &str, rest: &str) -> Result<(String, String)> {
    let mut parts = rest.splitn(2, '/');
    let bucket = parts.next().unwrap_or_default().to_string();
    if bucket.is_empty() {
        return Err(Error::BadUrl {
            url: url.into(),
            detail: "the bucket or container name is missing".into(),
        });
    }
    let prefix = parts.next().unwrap_or_default().trim_matches('/');
    Ok((bucket, format!("/{prefix}")))
}

impl Storage {
    /// Opens the store a URL names: a plain path, `file:///abs/path`, `s3://bucket/prefix`,
    /// `azblob://container/prefix`, `gs://bucket/prefix` or `memory://` (tests).
    ///
    /// S3 reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`
    /// and `AWS_ENDPOINT_URL` (path-style addressing); Azure reads `AZURE_STORAGE_ACCOUNT`,
    /// `AZURE_STORAGE_KEY` and optionally `AZURE_STORAGE_ENDPOINT` (Azurite:
    /// `http://127.0.0.1:10000/devstoreaccount1`); GCS reads `GOOGLE_APPLICATION_CREDENTIALS`,
    /// or `STORAGE_EMULATOR_HOST` (`host:port` or a URL) for an emulator, which gets
    /// unsigned requests.
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |detail: &str| Error::BadUrl {
            url: url.into(),
            detail: detail.into(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, root) = split_bucket(url, rest)?;
            let mut b = opendal::services::S3::default()
                .bucket(&bucket)
                .root(&root)
                .region(
                    &env("AWS_REGION")
                        .or_else(|| env("AWS_DEFAULT_REGION"))
                        .unwrap_or_else(|| "us-east-1".into()),
                );
            if let Some(ep) = env("AWS_ENDPOINT_URL").or_else(|| env("AWS_ENDPOINT_URL_S3")) {
                b = b.endpoint(&ep);
            }
            if let Some(k) = env("AWS_ACCESS_KEY_ID") {
                b = b.access_key_id(&k);
            }
            if let Some(k) = env("AWS_SECRET_ACCESS_KEY") {
                b = b.secret_access_key(&k);
            }
            if let Some(k) = env("AWS_SESSION_TOKEN") {
                b = b.session_token(&k);
            }
            let mut storage = Self::remote(url, opendal::Operator::new(b))?;
            storage.s3_place = Some((bucket, root));
            return Ok(storage);
        }
        if let Some(rest) = url.strip_prefix("azblob://") {
            let (container, root) = split_bucket(url, rest)?;
            let account = env("AZURE_STORAGE_ACCOUNT")
                .ok_or_else(|| bad("AZURE_STORAGE_ACCOUNT is not set"))?;
            let endpoint = env("AZURE_STORAGE_ENDPOINT")
                .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
            let mut b = opendal::services::Azblob::default()
                .container(&container)
                .root(&root)
                .endpoint(&endpoint)
                .account_name(&account);
            if let Some(k) = env("AZURE_STORAGE_KEY") {
                b = b.account_key(&k);
            }
            return Self::remote(url, opendal::Operator::new(b));
        }
        if let Some(rest) = url.strip_prefix("gs://") {
            let (bucket, root) = split_bucket(url, rest)?;
            let mut b = opendal::services::Gcs::default()
                .bucket(&bucket)
                .root(&root);
            if let Some(host) = env("STORAGE_EMULATOR_HOST") {
                // As Google's own client libraries do: an emulator (fake-gcs-server, the
                // Cloud Storage testbench) takes plain HTTP and no credentials, so none are
                // looked for, neither on disk nor at the VM metadata server.
                let endpoint = if host.contains("://") {
                    host
                } else {
                    format!("http://{host}")
                };
                b = b
                    .endpoint(endpoint.trim_end_matches('/'))
                    .skip_signature()
                    .disable_vm_metadata()
                    .disable_config_load();
            } else if let Some(p) = env("GOOGLE_APPLICATION_CREDENTIALS") {
                b = b.credential_path(&p);
            }
            return Self::remote(url, opendal::Operator::new(b));
        }
        if url == "memory://" {
            return Self::remote(
                url,
                opendal::Operator::new(opendal::services::Memory::default()),
            );
        }
        let path = if let Some(p) = url.strip_prefix("file://") {
            if !p.starts_with('/') {
                return Err(bad(
                    "file:// URLs take an absolute path, e.g. file:///srv/backups",
                ));
            }
            PathBuf::from(p)
        } else if url.contains("://") {
            return Err(bad(
                "unknown scheme; use a path, file://, s3://, azblob:// or gs://",
            ));
        } else if url.is_empty() {
            return Err(bad("empty repository location"));
        } else {
            PathBuf::from(url)
        };
        // Said plainly here: otherwise the first read fails with the OS's "Not a directory".
        if path.is_file() {
            return Err(Error::RepositoryIsFile(path));
        }
        Ok(Storage {
            url: url.to_string(),
            backend: Backend::Local {
                owner: local_owner(&path),
                root: path,
            },
            s3_place: None,
            locking: None,
        })
    }

    fn remote(url: &str, op: opendal::Result<opendal::Operator>) -> Result<Self> {
        // OpenDAL needs a process-wide HTTP transport; installing it is idempotent.
        opendal::install_default();
        let op = op
            .map_err(|e| Error::BadUrl {
                url: url.into(),
                detail: e.to_string(),
            })?
            // Timeout inside retry: a request that stalls is abandoned and tried again,
            // instead of the stall ending the whole job (the timeout used to wrap the retries).
            .layer(
                opendal::layers::TimeoutLayer::new()
                    .with_timeout(io_timeout() * 2)
                    .with_io_timeout(io_timeout()),
            )
            .layer(
                opendal::layers::RetryLayer::new()
                    .with_max_times(4)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_jitter(),
            );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strongroom-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the I/O runtime for", url, e))?;
        Ok(Storage {
            url: url.to_string(),
            backend: Backend::Remote {
                op,
                rt: Arc::new(rt),
            },
            s3_place: None,
            locking: None,
        })
    }

    /// The client for object-lock requests; [`Error::NoObjectLock`] on a store that is not
    /// S3.
    fn s3_locks(&self) -> Result<object_lock::S3Locks> {
        match &self.s3_place {
            Some((bucket, root)) => {
                object_lock::S3Locks::new(&self.url, bucket, root, io_timeout() * 2)
            }
            None => Err(Error::NoObjectLock {
                url: self.url.clone(),
                reason: "only S3 buckets have object lock".into(),
            }),
        }
    }

    fn runtime(&self) -> Option<&tokio::runtime::Runtime> {
        match &self.backend {
            Backend::Remote { rt, .. } => Some(rt),
            Backend::Local { .. } => None,
        }
    }

    /// Checks that the store can lock objects: an S3 bucket with Object Lock enabled.
    /// [`Error::NoObjectLock`] otherwise (a local directory, Azure, GCS, a bucket made
    /// without it, a store such as Garage that has none).
    pub fn probe_object_lock(&self) -> Result<()> {
        let s3 = self.s3_locks()?;
        let rt = self.runtime().expect("S3 is remote");
        if rt.block_on(s3.bucket_locks())? {
            Ok(())
        } else {
            Err(Error::NoObjectLock {
                url: self.url.clone(),
                reason: "its bucket has no Object Lock enabled (S3 turns it on when the bucket is created, or for a versioned bucket afterwards)".into(),
            })
        }
    }

    /// This store with `policy` applied: every [`Storage::put`] under a key that starts with
    /// none of `unlocked` is written locked for `policy.days`; objects under `unlocked` are
    /// written without a lock, and [`Storage::delete`] removes every version of them.
    pub fn with_object_lock(
        mut self,
        policy: LockPolicy,
        unlocked: &[&'static str],
    ) -> Result<Self> {
        let s3 = self.s3_locks()?;
        self.locking = Some(Arc::new(Locking {
            s3,
            policy,
            unlocked: unlocked.to_vec(),
        }));
        Ok(self)
    }

    /// The object-lock policy writes follow, when the repository has one.
    pub fn object_lock(&self) -> Option<LockPolicy> {
        self.locking.as_ref().map(|l| l.policy)
    }

    fn locking(&self) -> Result<(&Locking, &tokio::runtime::Runtime)> {
        match (&self.locking, self.runtime()) {
            (Some(l), Some(rt)) => Ok((l, rt)),
            _ => Err(Error::NoObjectLock {
                url: self.url.clone(),
                reason: "the repository has no object lock".into(),
            }),
        }
    }

    /// The lock of `key`'s current version (or of `version`): `None` when the object (or
    /// version) does not exist. Object-lock repositories only.
    pub fn lock_of(&self, key: &str, version: Option<&str>) -> Result<Option<ObjectLockState>> {
        let (l, rt) = self.locking()?;
        rt.block_on(l.s3.lock_of(key, version))
    }

    /// Sets the lock of `key`'s current version (or of `version`) to `until`, in the
    /// repository's mode. S3 only ever lets it grow (a governance lock shrinks only with the
    /// bypass permission, a compliance lock never).
    pub fn extend_lock(
        &self,
        key: &str,
        version: Option<&str>,
        until: jiff::Timestamp,
    ) -> Result<()> {
        let (l, rt) = self.locking()?;
        rt.block_on(l.s3.extend(key, version, l.policy.mode, until))
    }

    /// Deletes one version of `key`; `Ok(false)` when the store refuses because it is
    /// still locked.
    pub fn delete_version(&self, key: &str, version: &str) -> Result<bool> {
        let (l, rt) = self.locking()?;
        rt.block_on(l.s3.delete_version(key, version))
    }

    /// Every version and delete marker under `prefix`.
    pub fn versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>> {
        let (l, rt) = self.locking()?;
        rt.block_on(l.s3.versions(prefix))
    }

    /// The URL this store was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The error for a failed request about `key`.
    ///
    /// "Not found" is a missing object only when an object was read. Azure and GCS answer a
    /// write or a listing in a container or bucket that does not exist with a plain 404
    /// (where S3 says `NoSuchBucket`), and a read there too (Azure with its
    /// `ContainerNotFound` code, GCS saying the bucket "does not exist"; fake-gcs-server
    /// says only "Not Found"): a repository in a missing place is no damage.
    fn remote_err(&self, key: &str, e: opendal::Error, asked: Asked) -> Error {
        let location = format!("{}/{}", self.url.trim_end_matches('/'), key);
        if e.kind() == opendal::ErrorKind::NotFound {
            if asked == Asked::ReadObject && !place_missing(&e) {
                return Error::Missing {
                    object: key.to_string(),
                    context: String::new(),
                };
            }
            let place = if self.url.starts_with("azblob://") {
                "container"
            } else {
                "bucket"
            };
            return Error::Storage {
                location,
                detail: format!(
                    "the {place} does not exist; create the {place} or fix the repository URL"
                ),
                transient: false,
            };
        }
        Error::Storage {
            location,
            detail: short_detail(&self.url, &e),
            // OpenDAL marks a temporary error persistent once its retries are used up: it is
            // still worth another run later. A refusal (403: credentials, a bucket policy)
            // is what it is however often it is asked.
            transient: e.kind() != opendal::ErrorKind::PermissionDenied
                && (e.is_temporary() || e.is_persistent() || is_unreachable(&e)),
        }
    }

    /// Writes an object atomically and durably; an existing object of that name is replaced.
    pub fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        match &self.backend {
            Backend::Local { root, owner } => {
                put_local(&root.join(key), data)?;
                if let Some(owner) = owner {
                    hand_over(root, key, *owner)?;
                }
                Ok(())
            }
            Backend::Remote { rt, .. }
                if let Some(l) = &self.locking
                    && l.locks(key) =>
            {
                let until = l.policy.until(jiff::Timestamp::now());
                rt.block_on(l.s3.put_locked(key, data, l.policy.mode, until))
            }
            Backend::Remote { op, rt } => rt
                .block_on(op.write(key, data.to_vec()))
                .map(|_| ())
                .map_err(|e| self.remote_err(key, e, Asked::Other)),
        }
    }

    /// Reads a whole object; [`Error::Missing`] when it does not exist.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        match &self.backend {
            Backend::Local { root, .. } => {
                let path = root.join(key);
                fs::read(&path).map_err(|e| local_read_err(key, &path, e))
            }
            Backend::Remote { op, rt } => rt
                .block_on(op.read(key))
                .map(|b| b.to_vec())
                .map_err(|e| self.remote_err(key, e, Asked::ReadObject)),
        }
    }

    /// Reads `len` bytes of an object starting at `offset`.
    pub fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.get_range_into(key, offset, len, &mut buf)?;
        Ok(buf)
    }

    /// [`Storage::get_range`] into `buf` (replacing what it held, keeping its allocation when
    /// it is large enough): for callers that read range after range.
    pub fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        buf.clear();
        match &self.backend {
            Backend::Local { root, .. } => {
                let path = root.join(key);
                let mut f = fs::File::open(&path).map_err(|e| local_read_err(key, &path, e))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| Error::io("seeking in", &path, e))?;
                buf.reserve_exact(len as usize);
                f.take(len)
                    .read_to_end(buf)
                    .map_err(|e| Error::io("reading", &path, e))?;
                if buf.len() as u64 != len {
                    return Err(Error::corrupt(key, "object is shorter than the index says"));
                }
                Ok(())
            }
            Backend::Remote { op, rt } => {
                let shorter = || Error::corrupt(key, "object is shorter than the index says");
                match rt.block_on(async { op.read_with(key).range(offset..offset + len).await }) {
                    Ok(b) => {
                        buf.reserve_exact(b.len());
                        b.for_each(|part| buf.extend_from_slice(&part));
                    }
                    // A range past the object's end is answered with a short body or
                    // "invalid range" (S3 and Azure 416, GCS's bare 416, Azurite's 206 with an
                    // empty Content-Range), which alone looks like a failing network: the
                    // object's size says whether it is damage, as a local read's EOF does.
                    Err(e) => {
                        let err = self.remote_err(key, e, Asked::ReadObject);
                        if matches!(err, Error::Storage { .. })
                            && let Ok(meta) = rt.block_on(op.stat(key))
                            && meta.content_length() < offset + len
                        {
                            return Err(shorter());
                        }
                        return Err(err);
                    }
                }
                if buf.len() as u64 != len {
                    return Err(shorter());
                }
                Ok(())
            }
        }
    }

    /// Whether an object exists.
    pub fn exists(&self, key: &str) -> Result<bool> {
        match &self.backend {
            Backend::Local { root, .. } => Ok(root.join(key).is_file()),
            Backend::Remote { op, rt } => match rt.block_on(op.stat(key)) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound && !place_missing(&e) => {
                    Ok(false)
                }
                Err(e) => Err(self.remote_err(key, e, Asked::ReadObject)),
            },
        }
    }

    /// Lists every object under `prefix` (a directory such as `snapshots/`), recursively.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        match &self.backend {
            Backend::Local { root, .. } => {
                let dir = root.join(prefix);
                if dir.is_dir() {
                    walk_local(root, &dir, Walk::Objects, &mut out)?;
                }
            }
            Backend::Remote { op, rt } => {
                let entries =
                    match rt.block_on(async { op.list_with(prefix).recursive(true).await }) {
                        Ok(e) => e,
                        // An empty prefix lists as empty on every store: "not found" here
                        // is the container or bucket.
                        Err(e) => return Err(self.remote_err(prefix, e, Asked::Other)),
                    };
                for e in entries {
                    if e.metadata().mode().is_file() {
                        out.push(ObjectInfo {
                            key: e.path().trim_start_matches('/').to_string(),
                            size: e.metadata().content_length(),
                            modified: e.metadata().last_modified().and_then(|t| {
                                jiff::Timestamp::from_nanosecond(t.into_inner().as_nanosecond())
                                    .ok()
                            }),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Temporary objects that interrupted writes left behind (local directories only: an
    /// object store's single PUT leaves nothing). [`Storage::list`] never shows them.
    pub fn list_temporary(&self) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        if let Backend::Local { root, .. } = &self.backend {
            walk_local(root, root, Walk::Temporary, &mut out)?;
        }
        Ok(out)
    }

    /// Deletes an object; deleting a missing object succeeds.
    ///
    /// On a repository with object lock (a versioned bucket) this hides the object behind a
    /// delete marker, which S3 allows whatever the lock, and the locked version stays until
    /// its date (`prune` deletes it then). An object written without a lock is deleted
    /// whole, every version.
    pub fn delete(&self, key: &str) -> Result<()> {
        if let Some(l) = &self.locking
            && !l.locks(key)
            && let Some(rt) = self.runtime()
        {
            let mut all_gone = true;
            for v in rt.block_on(l.s3.versions(key))? {
                if v.key == key {
                    all_gone &= rt.block_on(l.s3.delete_version(key, &v.version))?;
                }
            }
            if all_gone {
                return Ok(());
            }
            // A bucket's default retention locked it after all: hide it.
        }
        match &self.backend {
            Backend::Local { root, .. } => {
                let path = root.join(key);
                match fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Error::io("deleting", path, e)),
                }
            }
            Backend::Remote { op, rt } => rt
                .block_on(op.delete(key))
                .map_err(|e| self.remote_err(key, e, Asked::Other)),
        }
    }
}

/// What a failed request asked of the store, which decides what "not found" means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// Reading an object (get, ranged get, stat): "not found" is the object, unless the
    /// store says it is the container or bucket.
    ReadObject,
    /// Writing, listing, deleting: "not found" can only be the container or bucket.
    Other,
}

/// Whether a "not found" names the container or bucket rather than the object: Azure's
/// `ContainerNotFound` code, GCS's "The specified bucket does not exist.".
fn place_missing(e: &opendal::Error) -> bool {
    let full = format!("{e:?} {e}");
    full.contains("ContainerNotFound") || full.contains("bucket does not exist")
}

/// Whether an OpenDAL error says the store could not be reached at all.
fn is_unreachable(e: &opendal::Error) -> bool {
    let full = format!("{e:?} {e}");
    full.contains("error sending request")
        || full.contains("Connection refused")
        || full.contains("dns error")
}

/// One readable clause from an OpenDAL error, whose own text spans lines of context, with
/// what to check on the store `url` names.
fn short_detail(url: &str, e: &opendal::Error) -> String {
    let full = format!("{e:?} {e}");
    // S3 and Azure quote the server's code and message (Azure's message runs on with
    // RequestId and Time lines, which are cut off).
    let quoted = |field: &str| {
        let start = full.find(&format!("{field}: \""))? + field.len() + 3;
        let len = full[start..].find('"')?;
        let text = &full[start..start + len];
        let end = ["\\n", "RequestId:"]
            .iter()
            .filter_map(|cut| text.find(cut))
            .min()
            .unwrap_or(text.len());
        Some(text[..end].trim_end().to_string())
    };
    if let (Some(code), message) = (quoted("code"), quoted("message")) {
        let hint = match code.as_str() {
            "NoSuchBucket" => "; create the bucket or fix the repository URL",
            "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" => {
                "; check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket policy"
            }
            "AuthenticationFailed" | "AuthorizationFailure" => {
                "; check AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY"
            }
            _ => "",
        };
        // A HEAD's answer has no body: Azure's code then comes from a header, alone.
        return match message.filter(|m| !m.is_empty()) {
            Some(message) => format!("{code}: {message}{hint}"),
            None => format!("{code}{hint}"),
        };
    }
    if is_unreachable(e) {
        let check = if url.starts_with("azblob://") {
            "AZURE_STORAGE_ENDPOINT (or AZURE_STORAGE_ACCOUNT)"
        } else if url.starts_with("gs://") {
            "STORAGE_EMULATOR_HOST, when set,"
        } else {
            "AWS_ENDPOINT_URL"
        };
        return format!(
            "the object store is unreachable (connection failed after retries); check {check} and the network"
        );
    }
    match e.kind() {
        opendal::ErrorKind::PermissionDenied => {
            "access denied; check the credentials and the bucket policy".into()
        }
        kind => format!("{kind}: {}", one_line(e.message())),
    }
}

/// A server's error body as one clause: an XML body's `Code: Message` (S3's shape, which
/// proxies and emulators answer for any store), a JSON body's `error.message` (GCS's), else
/// the first line. Multi-line bodies would break the one-sentence error rule.
fn one_line(message: &str) -> String {
    let tag = |name: &str| {
        let start = message.find(&format!("<{name}>"))? + name.len() + 2;
        let len = message[start..].find(&format!("</{name}>"))?;
        Some(message[start..start + len].trim().to_string())
    };
    if let Some(code) = tag("Code") {
        return match tag("Message") {
            Some(m) if !m.is_empty() => format!("{code}: {m}"),
            _ => code,
        };
    }
    if let Some(m) = message
        .find('{')
        .and_then(|at| serde_json::from_str::<serde_json::Value>(&message[at..]).ok())
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
    {
        return m;
    }
    message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

fn local_read_err(key: &str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::Missing {
            object: key.to_string(),
            context: String::new(),
        }
    } else {
        Error::io("reading", path, e)
    }
}

/// The name prefix of [`put_local`]'s temporary files.
const TEMP_PREFIX: &str = ".tmp-";

/// What [`walk_local`] collects: the objects, or the temporary files interrupted writes left.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    Objects,
    Temporary,
}

/// Collects the files below `dir` that `what` asks for, keyed relative to `root`.
///
/// A file or folder that goes between being listed and being looked at is left out, as an
/// object store's listing leaves out what is deleted before it: another process (a WAL
/// receiver, a prune) renames its temporary files into place and deletes objects while a
/// backup lists the repository, and that must not fail the backup.
fn walk_local(root: &Path, dir: &Path, what: Walk, out: &mut Vec<ObjectInfo>) -> Result<()> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let rd = match fs::read_dir(dir) {
        Err(e) if gone(&e) && dir != root => return Ok(()),
        rd => rd.map_err(|e| Error::io("listing", dir, e))?,
    };
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let path = entry.path();
        let temporary = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
        let meta = match entry.metadata() {
            Err(e) if gone(&e) => continue,
            meta => meta.map_err(|e| Error::io("reading", &path, e))?,
        };
        if meta.is_dir() {
            walk_local(root, &path, what, out)?;
        } else if meta.is_file() && temporary == (what == Walk::Temporary) {
            let rel = path.strip_prefix(root).expect("walked below the root");
            out.push(ObjectInfo {
                key: rel.to_string_lossy().replace('\\', "/"),
                size: meta.len(),
                modified: meta
                    .modified()
                    .ok()
                    .and_then(|t| jiff::Timestamp::try_from(t).ok()),
            });
        }
    }
    Ok(())
}

/// Whether an object the store dates `dated` (an [`ObjectInfo::modified`]) was written at
/// or after `t`. Azure dates objects to the whole second (S3 to the millisecond, GCS to the
/// microsecond), so a date without a fraction of a second stands for any instant of its
/// second: an object written in the same second as `t` may have been written after it.
pub fn written_at_or_after(dated: jiff::Timestamp, t: jiff::Timestamp) -> bool {
    dated >= t || (dated.subsec_nanosecond() == 0 && dated.as_second() == t.as_second())
}

/// Reads in flight at once for [`read_each`]: one GET is ~50 ms on S3, so hundreds of small
/// objects (manifests, journal records) take a second this way, not tens of them.
pub const READS_IN_FLIGHT: usize = 8;

/// Calls `read` for every item on [`READS_IN_FLIGHT`] threads; the results come back in the
/// items' order. For many small objects whose latency, not bandwidth, is the cost.
pub fn read_each<I: Sync, T: Send>(items: &[I], read: impl Fn(&I) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..READS_IN_FLIGHT.min(items.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = read(item);
                    results.lock().expect("not poisoned").push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("not poisoned");
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// The owner new objects in a local repository get: when this process runs as root and the
/// repository directory belongs to another user, that user's.
///
/// Why: PostgreSQL's `archive_command` runs `wal push` as the database's system user, while a
/// base backup or a restore may run as root. Objects and folders root created would then be
/// unwritable for the archiver, and archiving would stop. A repository directory belongs to
/// its owner; root writing into it hands what it writes over, as git's shared repositories do.
fn local_owner(root: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let meta = fs::metadata(root).ok()?;
    (meta.uid() != 0).then(|| (meta.uid(), meta.gid()))
}

/// Gives `key` and every folder on its way below `root` to `owner` (see [`local_owner`]).
fn hand_over(root: &Path, key: &str, (uid, gid): (u32, u32)) -> Result<()> {
    let mut path = root.to_path_buf();
    for part in key.split('/') {
        path.push(part);
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))
            .map_err(|e| Error::io("handing over to the repository's owner", &path, e))?;
    }
    Ok(())
}

/// Atomic, durable write of a local file: temp file beside it, fsync, rename, fsync the dir.
pub(crate) fn put_local(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().expect("object paths have a parent");
    if !dir.is_dir() {
        // New directories must survive a crash too: sync the parent of each one created.
        let missing: Vec<&Path> = dir.ancestors().take_while(|a| !a.is_dir()).collect();
        fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
        for created in missing.iter().rev() {
            if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io("writing", path, e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("renaming into place", path, e.error))?;
    sync_dir(dir)
}

/// Fsyncs a directory so a rename inside it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", dir, e))
}

#[cfg(test)]
mod tests;
