//! What a person may do from the dashboard: log in, log out, and ask for a backup or a
//! drill now; and the audit record each leaves in the journal.
//!
//! Owns the rules every POST is held to (same origin, a live session, its CSRF token in
//! [`session::CSRF_HEADER`], compared in constant time), logins against `[[daemon.users]]`
//! (a failure does not say whether the name or the password was wrong, and costs one
//! Argon2 verification either way), the operator role for "run now", and the audit
//! records: job `dashboard`, `kind` the action (`login`, `logout`, `full backup asked for`,
//! `drill asked for`, …), `by` who acted (the name tried, for a failed login), `source`
//! for a job asked for, `ok` false with the sentence shown for a refusal. Must not run
//! jobs: [`crate::daemon::Daemon::request`] does, as it runs scheduled ones.

use super::Page;
use super::routes::{json, refusal, session_of};
use super::session::{self, Role, Session};
use crate::config::DashboardUser;
use crate::repository::journal::JournalRecord;
use crate::schedule::Job;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Logins checked at once at most: each Argon2 verification takes 19 MiB and a core's
/// tens of milliseconds, so a flood of attempts is refused rather than queued.
const MAX_LOGINS_AT_ONCE: usize = 4;

/// Logins being checked now.
static LOGINS: AtomicUsize = AtomicUsize::new(0);

/// The sentence a failed login gets, whatever was wrong.
pub const WRONG_LOGIN: &str = "the name or the password is wrong; try again";

/// Checks what every POST must carry; the session it acts in, or the refusal to send.
pub fn guard(page: &Page, headers: &HeaderMap) -> Result<Session, Box<Response>> {
    let text = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    if !session::same_origin(text(header::ORIGIN), text(header::HOST))
        || text(header::HeaderName::from_static("sec-fetch-site")) == Some("cross-site")
    {
        return Err(Box::new(refusal(
            StatusCode::FORBIDDEN,
            "this request came from another site; use the dashboard's own page",
        )));
    }
    let expired = || {
        Box::new(refusal(
            StatusCode::FORBIDDEN,
            "the page's session expired or is unknown; reload the page",
        ))
    };
    let s = session_of(page, headers).ok_or_else(expired)?;
    let sent = text(header::HeaderName::from_static(session::CSRF_HEADER)).unwrap_or("");
    if !session::same_token(sent, &s.csrf) {
        return Err(expired());
    }
    Ok(s)
}

/// Whether `name` may log in with `password`, and as what: one Argon2 verification
/// whether or not the name exists.
pub fn authenticate(users: &[DashboardUser], name: &str, password: &str) -> Option<Role> {
    static DECOY: OnceLock<String> = OnceLock::new();
    let user = users.iter().find(|u| u.name == name);
    let hash = match user {
        Some(u) => u.password_hash.as_str(),
        None => DECOY.get_or_init(|| {
            super::login::hash_password("no user has this password").unwrap_or_default()
        }),
    };
    let matches = super::login::password_matches(password, hash);
    user.filter(|_| matches).map(|u| Role::parse(&u.role))
}

/// Writes an audit record; a failure is a warning (the action stands).
fn audit(page: &Page, action: &str, by: &str, source: Option<&str>, refused: Option<&str>) {
    let mut rec = JournalRecord::new("dashboard", jiff::Timestamp::now());
    rec.kind = Some(action.to_string());
    rec.by = Some(by.chars().take(64).collect());
    rec.source = source.map(str::to_string);
    if let Some(why) = refused {
        rec.ok = false;
        rec.error = Some(why.to_string());
        // An operator's refused request: listed, never counted against a source.
        rec.error_kind = Some("bad_input".into());
    }
    // Not `record`: that leaves refused requests out, and an audit keeps them.
    if let Err(e) = page.repo.journal(&rec) {
        tracing::warn!("the dashboard could not journal {action} by {by}: {e}");
    }
    page.cache.refresh_soon();
}

/// A login form.
#[derive(serde::Deserialize)]
pub struct LoginForm {
    /// The user's name.
    pub name: String,
    /// The password.
    pub password: String,
}

/// `POST /login`: a new session for the user, or [`WRONG_LOGIN`].
pub async fn login(
    State(page): State<Arc<Page>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let old = match guard(&page, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if LOGINS.fetch_add(1, Ordering::SeqCst) >= MAX_LOGINS_AT_ONCE {
        LOGINS.fetch_sub(1, Ordering::SeqCst);
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many logins at once; try again in a moment",
        );
    }
    let p = Arc::clone(&page);
    let outcome = tokio::task::spawn_blocking(move || {
        let role = authenticate(&p.config.daemon.users, &form.name, &form.password);
        LOGINS.fetch_sub(1, Ordering::SeqCst);
        audit(
            &p,
            "login",
            &form.name,
            None,
            role.is_none().then_some(WRONG_LOGIN),
        );
        (form.name, role)
    })
    .await;
    let (name, role) = match outcome {
        Ok((name, Some(role))) => (name, role),
        Ok((_, None)) => return refusal(StatusCode::UNAUTHORIZED, WRONG_LOGIN),
        Err(e) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    page.sessions.remove(&old.id);
    let s = page
        .sessions
        .create(Some((name.clone(), role)), Instant::now());
    let mut r = json(
        StatusCode::OK,
        &serde_json::json!({"user": name, "role": role, "csrf": s.csrf}),
    );
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&s.id, page.secure_cookies())) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /logout`: the session is forgotten.
pub async fn logout(State(page): State<Arc<Page>>, headers: HeaderMap) -> Response {
    let s = match guard(&page, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    page.sessions.remove(&s.id);
    if let Some((name, _)) = s.user {
        let p = Arc::clone(&page);
        let _ = tokio::task::spawn_blocking(move || audit(&p, "logout", &name, None, None)).await;
    }
    json(StatusCode::OK, &serde_json::json!({"user": null}))
}

/// A "run now" request.
#[derive(serde::Deserialize)]
pub struct RunForm {
    /// The source's config name.
    pub source: String,
    /// `full`, `logical`, `physical` or `drill`.
    pub job: String,
}

/// The jobs the page may ask for.
pub fn runnable(job: &str) -> Option<Job> {
    match job {
        "full" => Some(Job::Full),
        "logical" => Some(Job::Logical),
        "physical" => Some(Job::Physical),
        "drill" => Some(Job::Drill),
        _ => None,
    }
}

/// What the page says a job is.
fn job_words(job: Job) -> String {
    match job.backup_kind() {
        Some(k) => format!("{k} backup"),
        None => job.name().to_string(),
    }
}

/// `POST /api/run`: asks the daemon for a backup or a drill now, as an operator.
pub async fn run(
    State(page): State<Arc<Page>>,
    headers: HeaderMap,
    Form(form): Form<RunForm>,
) -> Response {
    let s = match guard(&page, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some((name, role)) = s.user else {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "log in as an operator to start a backup or a drill from here",
        );
    };
    if role != Role::Operator {
        return refusal(
            StatusCode::FORBIDDEN,
            &format!("only an operator may start a job from here: {name} may look but not act"),
        );
    }
    let Some(job) = runnable(&form.job) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            &format!(
                "{:?} cannot be started from here: ask for full, logical, physical or drill",
                form.job
            ),
        );
    };
    if !page.config.sources.contains_key(&form.source) {
        return refusal(
            StatusCode::NOT_FOUND,
            &format!(
                "no source is called {:?}: pick one from the overview",
                form.source
            ),
        );
    }
    let asked = page.daemon.request(&form.source, job, &name);
    let what = job_words(job);
    let p = Arc::clone(&page);
    let (source, refused) = (form.source.clone(), asked.clone().err());
    let _ = tokio::task::spawn_blocking(move || {
        audit(
            &p,
            &format!("{what} asked for"),
            &name,
            Some(&source),
            refused.as_deref(),
        )
    })
    .await;
    match asked {
        Ok(()) => json(
            StatusCode::ACCEPTED,
            &serde_json::json!({"message": format!(
                "The {} of {} has started; it shows under \"Running now\" until it ends.",
                job_words(job), form.source
            )}),
        ),
        Err(why) => refusal(StatusCode::CONFLICT, &capitalized(&why)),
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>() + ".",
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_needs_the_right_name_and_password_and_gets_the_users_role() {
        let user = |name: &str, password: &str, role: &str| DashboardUser {
            name: name.into(),
            password_hash: super::super::login::hash_password(password).unwrap(),
            role: role.into(),
        };
        let users = [
            user("ann", "pw-ann", "operator"),
            user("bob", "pw-bob", "viewer"),
        ];
        assert_eq!(authenticate(&users, "ann", "pw-ann"), Some(Role::Operator));
        assert_eq!(authenticate(&users, "bob", "pw-bob"), Some(Role::Viewer));
        assert_eq!(authenticate(&users, "ann", "pw-bob"), None);
        assert_eq!(authenticate(&users, "carl", "pw-ann"), None);
        assert_eq!(authenticate(&[], "ann", "pw-ann"), None);
    }

    #[test]
    fn only_backups_and_drills_may_be_asked_for() {
        assert_eq!(runnable("full"), Some(Job::Full));
        assert_eq!(runnable("drill"), Some(Job::Drill));
        assert_eq!(runnable("prune"), None);
        assert_eq!(runnable("check"), None);
        assert_eq!(job_words(Job::Full), "full backup");
        assert_eq!(
            capitalized("hotel has a job running"),
            "Hotel has a job running."
        );
    }
}
