//! Alerting on state changes: what was last sent, kept in the repository (`state/alerts`).
//!
//! Owns deciding that a source's level changed since the last alert about it, or that a
//! check is failing that was not then, building the alert, and remembering it once
//! delivered. An alert fires on a change (ok → warning or critical, warning ↔ critical, back
//! to ok as a recovery notice, and a new problem at an unchanged level: a vanished table
//! must not hide behind "no drill yet"), not on every run, so `status` can run every few
//! minutes from cron without flooding anyone. When no target took the alert, the old state
//! is kept: the next run tries again. Kept in the repository,
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
    /// The checks that were not ok then, with their levels; `None` in a state written
    /// before they were remembered (then nothing counts as new until they are).
    #[serde(default)]
    pub checks: Option<BTreeMap<String, Level>>,
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

/// What became of an alert handed to delivery.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Told {
    /// A target took it.
    Sent,
    /// Every target is set to hear only of higher levels (`min_level`); remembered as said.
    NotWanted,
    /// Every target that wanted it failed; not remembered, so the next run tries again.
    Failed,
}

/// One alert `notify` sent or tried to send.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Notice {
    /// The source.
    pub source: String,
    /// The level the last alert about it reported (or `ok`, when it was first seen ok);
    /// `None` when nothing was known of it.
    pub from: Option<Level>,
    /// The level now.
    pub to: Level,
    /// Checks failing now that were not (or less badly) when the last alert was sent.
    pub new_checks: Vec<String>,
    /// What became of it.
    pub told: Told,
    /// Whether it is remembered as said (a target took it, or none wanted it).
    pub delivered: bool,
}

/// The checks of `s` that are not ok, by name.
fn failing(s: &SourceHealth) -> BTreeMap<String, Level> {
    s.checks
        .iter()
        .filter(|c| c.level != Level::Ok)
        .map(|c| (c.name.clone(), c.level))
        .collect()
}

/// The checks in `now` that are worse than the last alert knew them (new ones included).
fn grown(before: Option<&LastSent>, now: &BTreeMap<String, Level>) -> Vec<String> {
    let known = match before {
        None => &BTreeMap::new(),
        Some(LastSent { checks: None, .. }) => return Vec::new(),
        Some(LastSent {
            checks: Some(c), ..
        }) => c,
    };
    now.iter()
        .filter(|(name, level)| known.get(*name).is_none_or(|was| was < level))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The alert for a source whose last alert reported `from` (`None`: there was none), and
/// whose `new_checks` got worse since.
pub fn alert_for(
    s: &SourceHealth,
    from: Option<Level>,
    new_checks: &[String],
    repository: &str,
    now: jiff::Timestamp,
) -> Alert {
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
    // The new problem leads: it is why this alert went out.
    let lead = bad
        .iter()
        .find(|c| new_checks.contains(&c.name))
        .or(bad.first());
    let more = if bad.len() > 1 {
        format!(" (and {} more)", bad.len() - 1)
    } else {
        String::new()
    };
    let summary = match (s.level, lead) {
        (Level::Ok, _) => format!(
            "{} has recovered: every check is ok again (it was {})",
            s.source,
            from.unwrap_or(Level::Ok).name()
        ),
        (level, Some(first)) if from == Some(level) => format!(
            "{} has a new problem (still {}): {}{more}",
            s.source,
            level.name(),
            first.detail
        ),
        (level, Some(first)) => format!("{} is {}: {}{more}", s.source, level.name(), first.detail),
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
        previous_level: from.map(|l| l.name().into()),
        new_checks: new_checks.to_vec(),
        summary,
        hint: lead.map(|_| {
            format!(
                "run `strongroom status --source {}` for every finding",
                s.source
            )
        }),
        checks: bad,
        job: None,
        error_kind: None,
        error: None,
        segment: None,
        at: now,
        hostname: crate::hostname(),
        repository: repository.to_string(),
    }
}

/// Sends an alert for every source whose level changed since the last alert about it, or
/// that has a check failing that was not (or less badly) then, and remembers what was
/// delivered. A source first seen ok is remembered as ok without an alert; one first seen
/// not ok is alerted with no previous level. A set of failing checks that only shrank is
/// remembered without an alert, so a problem that comes back is new again. `deliver` says
/// what became of an alert.
pub fn notify(
    repo: &Repository,
    health: &Health,
    now: jiff::Timestamp,
    deliver: &dyn Fn(&Alert) -> Told,
) -> Result<Vec<Notice>> {
    let mut state = read_state(repo)?;
    let mut notices = Vec::new();
    let mut changed = false;
    for s in &health.sources {
        let before = state.sources.get(&s.source);
        let from = before.map(|l| l.level);
        let failing = failing(s);
        let new_checks = grown(before, &failing);
        let remembered = LastSent {
            level: s.level,
            at: now,
            checks: Some(failing),
        };
        if from.unwrap_or(Level::Ok) == s.level && new_checks.is_empty() {
            // Remembered quietly: a shrunk set, or a source first seen ok (so a later
            // alert truly comes from ok).
            match before {
                Some(b) if b.checks != remembered.checks => {
                    let quiet = LastSent {
                        at: b.at,
                        ..remembered
                    };
                    state.sources.insert(s.source.clone(), quiet);
                    changed = true;
                }
                None => {
                    state.sources.insert(s.source.clone(), remembered);
                    changed = true;
                }
                Some(_) => {}
            }
            continue;
        }
        let alert = alert_for(s, from, &new_checks, repo.storage().url(), now);
        let told = deliver(&alert);
        if told != Told::Failed {
            state.sources.insert(s.source.clone(), remembered);
            changed = true;
        }
        notices.push(Notice {
            source: s.source.clone(),
            from,
            to: s.level,
            new_checks,
            told,
            delivered: told != Told::Failed,
        });
    }
    if changed {
        write_state(repo, &state)?;
    }
    Ok(notices)
}
