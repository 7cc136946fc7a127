//! `[objectives]` and `[sources.NAME.objectives]`: what `status`, `metrics` and `drill`
//! measure against, with the strategy's defaults.
//!
//! Owns the objective keys, their defaults, their validation and how a source's overrides
//! merge with the global table ([`Config::objectives_of`]). Must not judge anything: the
//! rules that use these figures are `monitor`'s.

use super::Config;
use super::problems::{KeyPath, Problems};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[objectives]`: recovery point and time objectives, and how often each kind of backup is
/// expected (what `status` measures against).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Objectives {
    /// Recovery point objective, e.g. `15m`: the most data a recovery may lose.
    pub rpo: String,
    /// Recovery time objective, e.g. `1h`: the longest a recovery may take.
    pub rto: String,
    /// Expected time between snapshots, per kind (`[objectives.interval]`, e.g.
    /// `physical = "6h"`). Defaults: `full` and `logical` daily, `physical` every 6 hours.
    pub interval: BTreeMap<String, String>,
    /// The strategy's checklist as periods (`[objectives.checklist]`, e.g. `verify = "1d"`):
    /// the longest time since the newest successful verify, check and drill. Defaults:
    /// verify `7d` (weekly test restore), check `31d` (monthly), drill `92d` (quarterly);
    /// `"off"` drops an item.
    pub checklist: BTreeMap<String, String>,
    /// A newest snapshot smaller than this is suspect (e.g. `1MiB`, the strategy's floor for
    /// production); none by default, since anomalies already compare each snapshot with the
    /// source's own history.
    pub min_size: Option<String>,
}

/// `[sources.NAME.objectives]`: the keys of `[objectives]` this source sets differently.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceObjectives {
    /// Recovery point objective of this source.
    pub rpo: Option<String>,
    /// Recovery time objective of this source.
    pub rto: Option<String>,
    /// Expected time between snapshots, per kind.
    pub interval: BTreeMap<String, String>,
    /// Checklist periods of this source.
    pub checklist: BTreeMap<String, String>,
    /// Smallest believable snapshot of this source.
    pub min_size: Option<String>,
}

impl Default for Objectives {
    fn default() -> Self {
        Objectives {
            rpo: "15m".into(),
            rto: "1h".into(),
            interval: BTreeMap::new(),
            checklist: BTreeMap::new(),
            min_size: None,
        }
    }
}

/// The objectives one source is held to, with every default filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Effective {
    /// Recovery point objective.
    pub rpo: std::time::Duration,
    /// Recovery time objective.
    pub rto: std::time::Duration,
    /// Expected time between snapshots, per kind (`full`, `logical`, `physical`).
    pub interval: BTreeMap<String, std::time::Duration>,
    /// Longest time since the newest successful `verify`, `check` and `drill`; an item
    /// set to `"off"` is absent (a development database needs no quarterly drill).
    pub checklist: BTreeMap<String, std::time::Duration>,
    /// Smallest believable snapshot, in bytes.
    pub min_size: Option<u64>,
}

/// Kinds and checklist items with their defaults.
pub(super) const DEFAULT_INTERVALS: [(&str, u64); 3] = [
    ("full", 86_400),
    ("logical", 86_400),
    ("physical", 6 * 3600),
];
pub(super) const DEFAULT_CHECKLIST: [(&str, u64); 3] = [
    ("verify", 7 * 86_400),
    ("check", 31 * 86_400),
    ("drill", 92 * 86_400),
];

impl Config {
    /// The objectives `source` (a configured name, or anything else for the global ones)
    /// is held to.
    pub fn objectives_of(&self, source: &str) -> Effective {
        let d = |v: &str| crate::parse_duration(v).expect("validated at load");
        let over = self
            .sources
            .get(source)
            .and_then(|s| s.objectives.clone())
            .unwrap_or_default();
        let merged = |defaults: &[(&str, u64)],
                      global: &BTreeMap<String, String>,
                      own: &BTreeMap<String, String>| {
            let mut m: BTreeMap<String, std::time::Duration> = defaults
                .iter()
                .map(|(k, s)| (k.to_string(), std::time::Duration::from_secs(*s)))
                .collect();
            for (k, v) in global.iter().chain(own) {
                if v == "off" {
                    m.remove(k);
                } else {
                    m.insert(k.clone(), d(v));
                }
            }
            m
        };
        Effective {
            rpo: d(over.rpo.as_deref().unwrap_or(&self.objectives.rpo)),
            rto: d(over.rto.as_deref().unwrap_or(&self.objectives.rto)),
            interval: merged(
                &DEFAULT_INTERVALS,
                &self.objectives.interval,
                &over.interval,
            ),
            checklist: merged(
                &DEFAULT_CHECKLIST,
                &self.objectives.checklist,
                &over.checklist,
            ),
            min_size: over
                .min_size
                .as_deref()
                .or(self.objectives.min_size.as_deref())
                .map(|v| crate::parse_size(v).expect("validated at load")),
        }
    }
}

/// Checks every objective's duration, size, kind and checklist item, noting each key at
/// fault.
pub(super) fn validate(cfg: &Config, problems: &mut Problems<'_>) {
    let mut tables = vec![(
        KeyPath::of(&["objectives"]),
        Some(&cfg.objectives.rpo),
        Some(&cfg.objectives.rto),
        &cfg.objectives.interval,
        &cfg.objectives.checklist,
        &cfg.objectives.min_size,
    )];
    for (name, s) in &cfg.sources {
        if let Some(o) = &s.objectives {
            tables.push((
                KeyPath::of(&["sources", name, "objectives"]),
                o.rpo.as_ref(),
                o.rto.as_ref(),
                &o.interval,
                &o.checklist,
                &o.min_size,
            ));
        }
    }
    let duration = |problems: &mut Problems<'_>, path: KeyPath, v: &str| {
        if let Err(e) = crate::parse_duration(v) {
            problems.at(path, e);
        }
    };
    for (at, rpo, rto, interval, checklist, min_size) in tables {
        for (k, v) in [("rpo", rpo), ("rto", rto)] {
            if let Some(v) = v {
                duration(problems, at.clone().key(k), v);
            }
        }
        for (k, v) in interval {
            let path = at.clone().key("interval").key(k);
            if DEFAULT_INTERVALS.iter().any(|(d, _)| d == k) {
                duration(problems, path, v);
            } else {
                problems.at(path, "unknown kind; use full, logical or physical");
            }
        }
        for (k, v) in checklist {
            let path = at.clone().key("checklist").key(k);
            if !DEFAULT_CHECKLIST.iter().any(|(d, _)| d == k) {
                problems.at(path, "unknown item; use verify, check or drill");
            } else if v != "off" {
                duration(problems, path, v);
            }
        }
        if let Some(v) = min_size {
            if let Err(e) = crate::parse_size(v) {
                problems.at(at.clone().key("min_size"), e);
            }
        }
    }
}
