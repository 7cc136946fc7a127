//! Dashboard sessions: who is logged in, their CSRF tokens, and when a session expires.
//!
//! Owns the session table (random 32-byte ids, kept in memory only: a restart logs everyone
//! out), expiry after `[daemon] session_timeout` without use, the per-session CSRF token and
//! its constant-time check, and the cookie and Origin rules every POST is held to. Every
//! visitor gets a session (anonymous until a login), so the login form itself carries a CSRF
//! token; a login replaces the session with a new id (no fixation). Must not check
//! passwords ([`super::login`] does) nor serve HTTP: the routes call these with the time
//! they read, so the rules are tested without waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "strongroom_session";

/// The header a POST carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The most sessions kept at once: anonymous ones are made per visitor, so a flood of
/// visitors must not grow memory without bound (the least recently used go first).
const MAX_SESSIONS: usize = 10_000;

/// What a logged-in user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May start a backup or a drill from the page.
    Operator,
    /// May only look.
    Viewer,
}

impl Role {
    /// Reads a `[[daemon.users]]` role (`operator` or `viewer`; anything else may only look).
    pub fn parse(s: &str) -> Role {
        if s == "operator" {
            Role::Operator
        } else {
            Role::Viewer
        }
    }
}

/// One session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The session's id (the cookie's value).
    pub id: String,
    /// Who is logged in, and as what; `None` for a visitor.
    pub user: Option<(String, Role)>,
    /// The token every POST of this session must send in [`CSRF_HEADER`].
    pub csrf: String,
    last_used: Instant,
}

/// The session table.
pub struct Sessions {
    timeout: Duration,
    table: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes, hex.
fn token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the system has randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `a` and `b` are equal, in a time that depends only on their lengths.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    /// An empty table whose sessions expire after `timeout` without use.
    pub fn new(timeout: Duration) -> Sessions {
        Sessions {
            timeout,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session with cookie value `id`, when it exists and has not expired at `now`;
    /// using it keeps it alive. An expired one is forgotten.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut t = self.table();
        let alive = t
            .get(id)
            .is_some_and(|s| now.saturating_duration_since(s.last_used) < self.timeout);
        if !alive {
            t.remove(id);
            return None;
        }
        let s = t.get_mut(id)?;
        s.last_used = now;
        Some(s.clone())
    }

    /// A new session for `user` (`None`: a visitor), with a fresh id and CSRF token.
    pub fn create(&self, user: Option<(String, Role)>, now: Instant) -> Session {
        let s = Session {
            id: token(),
            user,
            csrf: token(),
            last_used: now,
        };
        let mut t = self.table();
        let timeout = self.timeout;
        t.retain(|_, s| now.saturating_duration_since(s.last_used) < timeout);
        if t.len() >= MAX_SESSIONS
            && let Some(oldest) = t
                .values()
                .min_by_key(|s| (s.user.is_some(), s.last_used))
                .map(|s| s.id.clone())
        {
            t.remove(&oldest);
        }
        t.insert(s.id.clone(), s.clone());
        s
    }

    /// Logs `id`'s session out: it is forgotten.
    pub fn remove(&self, id: &str) {
        self.table().remove(id);
    }

    /// How many sessions are kept.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session cookie's value in a `Cookie` header.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value for session `id`: HttpOnly, SameSite=Strict, for the whole site;
/// `Secure` unless the page is served on loopback (plain HTTP there is the usual setup).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether a POST's `Origin` (when the browser sent one) names the host it was sent to
/// (`Host`): a page of another site cannot act here even with a stolen token.
pub fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    let Some(host) = host else { return false };
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    rest.is_some_and(|r| r.trim_end_matches('/').eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_expires_after_its_timeout_without_use_and_use_keeps_it() {
        let s = Sessions::new(Duration::from_secs(900));
        let t0 = Instant::now();
        let a = s.create(Some(("ann".into(), Role::Operator)), t0);
        assert_eq!(a.id.len(), 64);
        assert_ne!(a.id, a.csrf);
        // Used at 10 minutes: alive, and its clock restarts.
        let used = s.get(&a.id, t0 + Duration::from_secs(600)).unwrap();
        assert_eq!(used.user, Some(("ann".into(), Role::Operator)));
        assert!(s.get(&a.id, t0 + Duration::from_secs(1400)).is_some());
        // 15 minutes without use: gone, and forgotten.
        assert!(s.get(&a.id, t0 + Duration::from_secs(2300)).is_none());
        assert!(s.is_empty());
        assert!(s.get("not a session", t0).is_none());
    }

    #[test]
    fn every_session_has_its_own_id_and_token_and_a_logout_forgets_it() {
        let s = Sessions::new(Duration::from_secs(60));
        let now = Instant::now();
        let a = s.create(None, now);
        let b = s.create(None, now);
        assert_ne!(a.id, b.id);
        assert_ne!(a.csrf, b.csrf);
        s.remove(&a.id);
        assert!(s.get(&a.id, now).is_none());
        assert!(s.get(&b.id, now).is_some());
    }

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
        assert!(!same_token("", "a"));
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_strictly() {
        assert_eq!(
            cookie_value("a=1; strongroom_session=xyz; b=2"),
            Some("xyz")
        );
        assert_eq!(cookie_value("a=1"), None);
        assert_eq!(cookie_value("strongroom_session="), None);
        let c = set_cookie("xyz", false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/"));
        assert!(!c.contains("Secure"));
        assert!(set_cookie("xyz", true).ends_with("; Secure"));
    }

    #[test]
    fn a_post_from_another_origin_is_refused() {
        assert!(same_origin(None, Some("127.0.0.1:8600")));
        assert!(same_origin(
            Some("http://127.0.0.1:8600"),
            Some("127.0.0.1:8600")
        ));
        assert!(same_origin(
            Some("https://backup.example"),
            Some("backup.example")
        ));
        assert!(!same_origin(
            Some("http://evil.example"),
            Some("127.0.0.1:8600")
        ));
        assert!(!same_origin(Some("null"), Some("127.0.0.1:8600")));
        assert!(!same_origin(Some("http://127.0.0.1:8600"), None));
    }

    #[test]
    fn a_full_table_drops_the_least_recently_used_visitor_first() {
        let s = Sessions::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        let user = s.create(Some(("ann".into(), Role::Viewer)), t0);
        let first = s.create(None, t0 + Duration::from_millis(1));
        for i in 0..MAX_SESSIONS - 2 {
            s.create(None, t0 + Duration::from_millis(2 + i as u64));
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        let late = t0 + Duration::from_secs(10);
        s.create(None, late);
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&first.id, late).is_none(), "oldest visitor dropped");
        assert!(s.get(&user.id, late).is_some(), "the logged-in user kept");
    }
}
