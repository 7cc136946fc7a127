//! The page itself: HTML, script and style, built into the binary.
//!
//! Owns serving `assets/index.html`, `assets/app.js` and `assets/app.css` (compiled in with
//! `include_str!`: no CDN, no external fonts, nothing fetched from elsewhere, so the page
//! works on an air-gapped host and paints at once). Must not hold data: the script asks the
//! JSON routes ([`super::routes`]) for it.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The page's HTML.
pub const INDEX: &str = include_str!("assets/index.html");
/// The page's script: fetches the JSON, draws the page and its plots (hand-made SVG).
pub const SCRIPT: &str = include_str!("assets/app.js");
/// The page's style, light and dark.
pub const STYLE: &str = include_str!("assets/app.css");

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, kind)], body).into_response();
    // Revalidated each load: a new binary serves new assets at once.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `GET /`.
pub async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /assets/app.js`.
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /assets/app.css`.
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
