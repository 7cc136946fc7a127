//! The daemon's web face: the dashboard for people, `/metrics`, `/healthz` and
//! `/api/status` for machines.
//!
//! Owns the HTTP server (axum, on a small runtime of its own) and what it shares between
//! requests ([`Page`]). Everything shown comes from what the daemon already keeps: the
//! latest judgement ([`crate::daemon::watch`]), the jobs running and due
//! ([`crate::daemon::Daemon`]), and the repository's snapshots and journal as [`cache`]
//! last read them in the background. No request of the page reads the store or waits for
//! a judgement, so it paints at once however large the repository; only `/metrics` reads
//! (as `strongroom metrics` does, at most every 30 seconds). Must not run jobs
//! itself: "run now" asks the daemon, which runs it as it runs scheduled ones.
//!
//! The parts: [`routes`] (what each address serves), [`actions`] (login, logout and
//! "run now", with their audit records), [`session`] (sessions and CSRF), [`login`]
//! (password hashes), [`cache`] (the lists), [`assets`] (the page itself, built into the
//! binary).

pub mod actions;
pub mod assets;
pub mod cache;
pub mod login;
pub mod routes;
pub mod session;

use crate::config::Config;
use crate::daemon::Daemon;
use crate::daemon::watch::Watch;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crossbeam_channel::Receiver;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where `--listen` without an address serves.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8600";

/// How long a `/metrics` answer is reused: a scrape every few seconds must not list the
/// whole repository each time.
const METRICS_FRESH: Duration = Duration::from_secs(30);

/// What the server shows, shared by every request.
pub struct Page {
    /// The running daemon.
    pub daemon: Arc<Daemon>,
    /// Its latest judgement.
    pub watch: Arc<Watch>,
    /// The repository.
    pub repo: Arc<Repository>,
    /// The configuration.
    pub config: Arc<Config>,
    /// The snapshots, journal and drill reports, read in the background.
    pub cache: Arc<cache::Cache>,
    /// Who is logged in.
    pub sessions: session::Sessions,
    /// Whether session cookies are marked `Secure` (set by [`serve`]: not on loopback).
    secure: std::sync::atomic::AtomicBool,
    metrics: Mutex<Option<(Instant, String)>>,
}

impl Page {
    /// A page over the daemon's state; its lists are read again whenever `job_ended`
    /// says a job ended.
    pub fn new(
        daemon: Arc<Daemon>,
        watch: Arc<Watch>,
        repo: Arc<Repository>,
        config: Arc<Config>,
        job_ended: Receiver<()>,
    ) -> Page {
        let cache = cache::spawn(
            Arc::clone(&repo),
            Arc::clone(&config),
            config.daemon.status_interval(),
            job_ended,
        );
        Page {
            sessions: session::Sessions::new(config.daemon.session_timeout()),
            daemon,
            watch,
            repo,
            config,
            cache,
            secure: std::sync::atomic::AtomicBool::new(false),
            metrics: Mutex::new(None),
        }
    }

    /// Whether session cookies are marked `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.secure.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Reads a `--listen` value: `HOST:PORT`, or a port alone (on loopback).
pub fn listen_address(s: &str) -> Result<SocketAddr> {
    let s = s.trim();
    let text = if s.parse::<u16>().is_ok() {
        format!("127.0.0.1:{s}")
    } else {
        s.to_string()
    };
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            Error::Config(format!(
                "--listen {s:?} is not an address to listen on: give HOST:PORT (127.0.0.1:8600) or a port"
            ))
        })
}

/// Starts serving `page` on `addr`; returns the address bound (port 0 picks one).
pub fn serve(addr: SocketAddr, page: Page) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::Config(format!(
            "cannot listen on {addr}: {e}; choose another address with --listen"
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Internal(format!("cannot set up the listener: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("cannot read the listening address: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dashboard")
        .enable_io()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the dashboard's runtime: {e}")))?;
    page.secure.store(
        !bound.ip().is_loopback(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let app = routes::router(Arc::new(page));
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("the dashboard cannot listen: {e}");
                    return;
                }
            };
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("the dashboard stopped: {e}");
            }
        });
    });
    Ok(bound)
}
