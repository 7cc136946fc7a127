//! What each address of the dashboard serves.
//!
//! Owns the router, the static page ([`super::assets`]), and the read-only JSON the page
//! draws from: `/api/status` (the latest judgement), `/api/daemon` (what runs now and
//! next), `/api/source/{name}` (one source's timeline, plots and last drill),
//! `/api/journal` (filtered, paged), `/api/session` (who is logged in, and the CSRF
//! token); and `/healthz` and `/metrics` for machines. Every answer carries headers that
//! keep the page from being framed or fed scripts from elsewhere. Must not read the store
//! per request (`/metrics` is the exception, at most every 30 s) nor act: POSTs are
//! [`super::actions`].

use super::session::{self, Session};
use super::{METRICS_FRESH, Page, actions, assets};
use crate::error::Result;
use crate::monitor::{evaluate, evidence, metrics};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::time::Instant;

/// The most journal rows one request returns.
pub const MAX_ROWS: usize = 200;

/// Every address the dashboard answers.
pub fn router(page: Arc<Page>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/app.js", get(assets::script))
        .route("/assets/app.css", get(assets::style))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/api/status", get(status))
        .route("/api/daemon", get(daemon))
        .route("/api/session", get(session_info))
        .route("/api/source/{name}", get(source))
        .route("/api/journal", get(journal))
        .route("/login", post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/api/run", post(actions::run))
        .layer(axum::middleware::map_response(guard_headers))
        .with_state(page)
}

/// Headers every answer carries: no framing, no script or style from elsewhere, no
/// sniffing, no referrer.
async fn guard_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// A JSON answer, pretty (small documents people read too).
pub fn json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(v).expect("serializes"),
    )
        .into_response()
}

/// A JSON answer already serialized.
fn raw_json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `{"error": sentence}` with `status`.
pub fn refusal(status: StatusCode, sentence: &str) -> Response {
    json(status, &serde_json::json!({ "error": sentence }))
}

/// The request's live session, when its cookie names one.
pub fn session_of(page: &Page, headers: &HeaderMap) -> Option<Session> {
    let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
    page.sessions
        .get(session::cookie_value(cookie)?, Instant::now())
}

/// Who is logged in, and the token the page's POSTs carry; a visitor without a session
/// gets one (so the login form has a token too).
async fn session_info(State(page): State<Arc<Page>>, headers: HeaderMap) -> Response {
    let (s, new) = match session_of(&page, &headers) {
        Some(s) => (s, false),
        None => (page.sessions.create(None, Instant::now()), true),
    };
    let mut r = json(
        StatusCode::OK,
        &serde_json::json!({
            "user": s.user.as_ref().map(|u| &u.0),
            "role": s.user.as_ref().map(|u| u.1),
            "csrf": s.csrf,
            "logins": !page.config.daemon.users.is_empty(),
        }),
    );
    if new && let Ok(v) = HeaderValue::from_str(&session::set_cookie(&s.id, page.secure_cookies()))
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// What runs now, what runs next, and how fresh the page's figures are.
async fn daemon(State(page): State<Arc<Page>>) -> Response {
    let latest = page.watch.latest();
    let data = page.cache.latest();
    let upcoming: Vec<_> = page
        .daemon
        .upcoming()
        .into_iter()
        .map(|(key, line, next)| serde_json::json!({"key": key, "line": line, "next": next}))
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "running": page.daemon.running(),
            "upcoming": upcoming,
            "judged_at": latest.as_ref().map(|l| l.at),
            "judging_error": page.watch.last_error(),
            "heartbeat": latest.as_ref().and_then(|l| l.heartbeat),
            "lists_read_at": data.as_ref().map(|d| d.at),
            "lists_error": page.cache.error(),
            "snapshots": data.as_ref().map(|d| d.snapshots),
            "records": data.as_ref().map(|d| d.journal.len()),
            "sources": data.as_ref().map(|d| d.sources.keys().cloned().collect::<Vec<_>>()),
        }),
    )
}

fn not_ready(page: &Page) -> Response {
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        &page.cache.error().map_or_else(
            || "the repository is being read; this fills in shortly".to_string(),
            |e| format!("the repository could not be read: {e}"),
        ),
    )
}

/// One source's timeline, plots and last drill, as the last refresh made them.
async fn source(State(page): State<Arc<Page>>, Path(name): Path<String>) -> Response {
    let Some(data) = page.cache.latest() else {
        return not_ready(&page);
    };
    match data.sources.get(&name) {
        Some(body) => raw_json(StatusCode::OK, String::clone(body)),
        None => refusal(
            StatusCode::NOT_FOUND,
            &format!("no source is called {name:?}: pick one from the overview"),
        ),
    }
}

/// `/api/journal`'s filters and page.
#[derive(serde::Deserialize, Default)]
pub struct JournalParams {
    /// A source's config name.
    pub source: Option<String>,
    /// A job's name.
    pub job: Option<String>,
    /// Failures only (`1`, `true`, `on`).
    pub failed: Option<String>,
    /// Rows to skip.
    pub offset: Option<usize>,
    /// Rows to return (at most [`MAX_ROWS`]).
    pub limit: Option<usize>,
}

/// The journal, failures first then newest first, filtered and paged.
async fn journal(State(page): State<Arc<Page>>, Query(q): Query<JournalParams>) -> Response {
    let Some(data) = page.cache.latest() else {
        return not_ready(&page);
    };
    let source = q.source.filter(|s| !s.is_empty());
    let job = q.job.filter(|s| !s.is_empty());
    let failed = q
        .failed
        .is_some_and(|f| matches!(f.as_str(), "1" | "true" | "on" | "yes"));
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_ROWS);
    let mut jobs = std::collections::BTreeSet::new();
    let mut total = 0;
    let mut rows = Vec::new();
    for r in &data.journal {
        jobs.insert(r.record.job.as_str());
        let wanted = source
            .as_deref()
            .is_none_or(|s| r.source_name.as_deref() == Some(s))
            && job.as_deref().is_none_or(|j| r.record.job == j)
            && (!failed || !r.record.ok);
        if !wanted {
            continue;
        }
        if total >= offset && rows.len() < limit {
            rows.push(serde_json::json!({
                "row": r,
                "text": super::cache::describe(&r.record),
            }));
        }
        total += 1;
    }
    raw_json(
        StatusCode::OK,
        serde_json::to_string(&serde_json::json!({
            "total": total,
            "offset": offset,
            "limit": limit,
            "jobs": jobs,
            "rows": rows,
        }))
        .expect("serializes"),
    )
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
