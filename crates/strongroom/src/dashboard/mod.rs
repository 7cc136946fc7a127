//! The daemon's web face: the dashboard for people, `/metrics`, `/healthz` and
//! `/api/status` for machines.
//!
//! Owns the HTTP server (axum, on a small runtime of its own), its routes, and what each
//! serves. Everything shown comes from what the daemon already keeps: the latest judgement
//! ([`crate::daemon::watch`]), the jobs running and due ([`crate::daemon::Daemon`]), and the
//! repository's snapshots and journal. A request never waits for a judgement: `/api/status`
//! serves the latest one, so the page paints at once however large the repository. Must not
//! run jobs itself: "run now" asks the daemon, which runs it as it runs scheduled ones.

pub mod login;

use crate::config::Config;
use crate::daemon::Daemon;
use crate::daemon::watch::Watch;
use crate::error::{Error, Result};
use crate::monitor::{evaluate, evidence, metrics};
use crate::repository::Repository;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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
    metrics: Mutex<Option<(Instant, String)>>,
}

impl Page {
    /// A page over the daemon's state.
    pub fn new(
        daemon: Arc<Daemon>,
        watch: Arc<Watch>,
        repo: Arc<Repository>,
        config: Arc<Config>,
    ) -> Page {
        Page {
            daemon,
            watch,
            repo,
            config,
            metrics: Mutex::new(None),
        }
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
    let app = routes(Arc::new(page));
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

fn routes(page: Arc<Page>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/api/status", get(status))
        .with_state(page)
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(v).expect("serializes"),
    )
        .into_response()
}

/// The daemon answers: 200 with when it last judged (liveness, not health: health is
/// `/api/status`).
async fn healthz(State(page): State<Arc<Page>>) -> Response {
    let latest = page.watch.latest();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "status": "ok",
            "judged_at": latest.as_ref().map(|l| l.at.to_string()),
            "ticked_at": page.daemon.ticked_at().map(|t| t.to_string()),
            "judging_error": page.watch.last_error(),
            "running": page.daemon.running().len(),
        }),
    )
}

/// The `status --json` document of the latest judgement.
async fn status(State(page): State<Arc<Page>>) -> Response {
    match page.watch.latest() {
        Some(l) => json(StatusCode::OK, &*l.report),
        None if page.watch.previous().is_some() => {
            json(StatusCode::OK, page.watch.previous().expect("checked"))
        }
        None => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": {
                "kind": "not_ready",
                "message": page.watch.last_error().map_or_else(
                    || "the first judgement is under way; try again in a moment".to_string(),
                    |e| format!("the sources could not be judged: {e}")),
                "retryable": true,
            }}),
        ),
    }
}

/// `strongroom metrics`'s text, at most [`METRICS_FRESH`] old.
async fn metrics_text(State(page): State<Arc<Page>>) -> Response {
    let text = tokio::task::spawn_blocking(move || fresh_metrics(&page)).await;
    match text {
        Ok(Ok(t)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            t,
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn fresh_metrics(page: &Page) -> Result<String> {
    let mut cached = page.metrics.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, text)) = &*cached
        && at.elapsed() < METRICS_FRESH
    {
        return Ok(text.clone());
    }
    let scope = evidence::Scope {
        source: None,
        ask_servers: true,
        repository_size: true,
        copies: true,
        protection: false,
    };
    let now = jiff::Timestamp::now();
    let ev = evidence::gather(&page.repo, &page.config, &scope)?;
    let health = evaluate::evaluate(&page.config, &ev, now);
    let text = metrics::render(&page.config, &ev, &health, now);
    *cached = Some((Instant::now(), text.clone()));
    Ok(text)
}
