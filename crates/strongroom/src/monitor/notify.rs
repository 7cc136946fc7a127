//! Alerting on state changes: what was last sent, kept in the repository (`state/alerts`).
//!
//! Owns deciding that a source's level changed since the last alert about it, building the
//! alert, and remembering it once delivered. An alert fires on a change (ok → warning or
//! critical, warning ↔ critical, and back to ok as a recovery notice), not on every run, so
//! `status` can run every few minutes from cron without flooding anyone. When no target
//! took the alert, the old state is kept: the next run tries again. Kept in the repository,
//! not on the host, so a status run from another host (a failover monitor) knows what was
//! already said. Must not deliver alerts itself: delivery is handed in (see
//! [`crate::alert::send`]), so this is tested without a network.

use super::{Health, Level, SourceHealth};
use crate::alert::{Alert, AlertCheck, AlertEvent};
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::repository::layout::ObjectKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const STATE_AAD: &[u8] = b"strongroom state alerts";
const STATE_NAME: &str = "alerts";

/// What the last alert about a source said.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LastSent {
    /// The level it reported.
    pub level: Level,
    /// When.
    pub at: jiff::Timestamp,
}

/// The alert state of the repository.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AlertState {
    /// Per source.
    pub sources: BTreeMap<String, LastSent>,
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Level::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown level {s:?}")))
    }
}

/// The object that holds the alert state (`state/alerts`).
pub fn state_key() -> String {
    ObjectKind::State.key(STATE_NAME)
}

/// Reads the alert state (empty when none was written yet).
pub fn read_state(repo: &Repository) -> Result<AlertState> {
    let key = state_key();
    let raw = match repo.storage().get(&key) {
        Ok(r) => r,
        Err(Error::Missing { .. }) => return Ok(AlertState::default()),
        Err(e) => return Err(e),
    };
    let body = repo.key().open(&key, STATE_AAD, &raw)?;
    serde_json::from_slice(&body)
        .map_err(|e| Error::corrupt(&key, format!("malformed alert state: {e}")))
}

fn write_state(repo: &Repository, state: &AlertState) -> Result<()> {
    let key = state_key();
    let body = serde_json::to_vec(state).expect("alert state serializes");
    repo.storage().put(&key, &repo.key().seal(STATE_AAD, &body))
}

/// One alert `notify` sent or tried to send.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Notice {
    /// The source.
    pub source: String,
    /// The level before.
    pub from: Level,
    /// The level now.
    pub to: Level,
    /// Whether a target took it (or none is configured).
    pub delivered: bool,
}

/// The alert for a source whose level went from `from` to its current level.
pub fn alert_for(s: &SourceHealth, from: Level, repository: &str, now: jiff::Timestamp) -> Alert {
    let bad: Vec<AlertCheck> = s
        .checks
        .iter()
        .filter(|c| c.level != Level::Ok)
        .map(|c| AlertCheck {
            name: c.name.clone(),
            level: c.level.name().into(),
            detail: c.detail.clone(),
        })
        .collect();
    let summary = match (s.level, bad.first()) {
        (Level::Ok, _) => format!(
            "{} has recovered: every check is ok again (it was {})",
            s.source,
            from.name()
        ),
        (level, Some(first)) => format!(
            "{} is {}: {}{}",
            s.source,
            level.name(),
            first.detail,
            if bad.len() > 1 {
                format!(" (and {} more)", bad.len() - 1)
            } else {
                String::new()
            }
        ),
        (level, None) => format!("{} is {}", s.source, level.name()),
    };
    Alert {
        event: if s.level == Level::Ok {
            AlertEvent::Recovered
        } else {
            AlertEvent::StateChanged
        },
        source: Some(s.source.clone()),
        level: s.level.name().into(),
        previous_level: Some(from.name().into()),
        summary,
        hint: bad.first().map(|_| {
            format!(
                "run `strongroom status --source {}` for every finding",
                s.source
            )
        }),
        checks: bad,
        job: None,
        error_kind: None,
        error: None,
        at: now,
        hostname: crate::hostname(),
        repository: repository.to_string(),
    }
}

/// Sends an alert for every source whose level changed since the last alert about it, and
/// remembers what was delivered. A source never alerted about counts as having been ok.
/// `deliver` returns whether a target took the alert (true when none is configured).
pub fn notify(
    repo: &Repository,
    health: &Health,
    now: jiff::Timestamp,
    deliver: &dyn Fn(&Alert) -> bool,
) -> Result<Vec<Notice>> {
    let mut state = read_state(repo)?;
    let mut notices = Vec::new();
    let mut changed = false;
    for s in &health.sources {
        let from = state.sources.get(&s.source).map_or(Level::Ok, |l| l.level);
        if from == s.level {
            continue;
        }
        let alert = alert_for(s, from, repo.storage().url(), now);
        let delivered = deliver(&alert);
        if delivered {
            state.sources.insert(
                s.source.clone(),
                LastSent {
                    level: s.level,
                    at: now,
                },
            );
            changed = true;
        }
        notices.push(Notice {
            source: s.source.clone(),
            from,
            to: s.level,
            delivered,
        });
    }
    if changed {
        write_state(repo, &state)?;
    }
    Ok(notices)
}
