//! Retention policy: which snapshots to keep, and why.
//!
//! Owns the decision `forget` acts on: given a [`Policy`] and a list of snapshots, [`apply`]
//! says for every snapshot whether it is kept and names every rule that keeps it. Must not do
//! I/O or read the clock: the caller lists the snapshots and passes `now`, so the same inputs
//! always give the same answer, a dry run shows exactly what a real run will delete, and the
//! tests need no clock.
//!
//! The semantics are restic's `forget`, for the same reasons restic chose them:
//!
//! - **Rules count snapshots that exist, not calendar time.** `keep_daily = 30` keeps the newest
//!   snapshot of each of the 30 newest *days that hold a snapshot*, not "the last 30 days".
//!   Likewise `keep_within` and `tag_within` measure age from the group's newest snapshot, not
//!   from `now`. A policy that ages snapshots out against the clock deletes the only good
//!   backups exactly when backups have stopped (a dead cron, a broken credential), which is
//!   when they are needed most. Here, when backups stop, nothing more is deleted: a second run
//!   over the same snapshots keeps all of them.
//! - **Groups are independent.** Rules apply per `(source, kind)`: a logical dump and a
//!   physical base of the same database are different ways back, and frequent backups of one
//!   source must not push another source's history out.
//! - **Two safety rules no policy overrides.** The newest snapshot of each group is kept (a
//!   policy that matches nothing, such as a tag no snapshot carries, must not empty a group),
//!   and so is the newest snapshot with a successful verify on record: a backup that was never
//!   test-restored is a hope, the newest verified one is the last known way back.
//! - **PITR is the one wall-clock promise.** `pitr_window` promises recovery to any instant of
//!   the last window, so it is measured from `now`: the newest physical base that finished at
//!   or before `now - window` is needed to replay WAL up to the start of the window, and every
//!   later physical snapshot is kept too (each shortens the replay). If no base is that old
//!   yet, every physical snapshot is kept. SQLite base snapshots of continuous capture count
//!   as physical bases here (their captured frames are the log). This is the only use of
//!   `now`; logical snapshots are not affected.
//! - **An empty policy keeps everything** (reason [`Reason::NoPolicy`]). A `[retention]`
//!   section with no rule is far more likely a mistake than a wish to keep only the newest
//!   snapshot of each group; callers should still refuse it ([`Policy::is_empty`]).
//!
//! Order: within a group, snapshots are ranked newest first by `started_at`, ties broken by
//! `id` (the greater id counts as newer), so the result never depends on input order; unlike
//! restic, a snapshot dated in the future still counts as the newest. Buckets are UTC calendar
//! hours, days, ISO weeks (ISO year and week, so 2021-01-03 is in 2020-W53), months and years.
//! Unlike current restic, a bucket rule with count left over does not also keep the group's
//! oldest snapshot: `N` is an upper bound on what the rule keeps.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The PITR window when the config names none: a week, as the strategy's drills look back.
pub const DEFAULT_PITR_WINDOW: Duration = Duration::from_secs(7 * 86_400);

/// The keep rules as people write them: the `[retention]` table of the config and the
/// `forget --keep-*` flags are this one struct (serde fills it from the file, clap from the
/// flags; `KeepRules::over` puts flags over the config), and [`KeepRules::policy`] turns it
/// into the [`Policy`] the decision reads. Durations stay text until then, so a config
/// problem is named with its key and line (`config::problems`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct KeepRules {
    /// Keep the N newest snapshots.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours that have one.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days that have one.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have one.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months that have one.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years that have one.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot taken within DURATION of the newest one (e.g. 7d).
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION"))]
    pub keep_within: Option<String>,
    /// Keep every snapshot with this tag (repeatable).
    #[cfg_attr(feature = "clap", arg(long = "keep-tag", value_name = "TAG"))]
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// How far back point-in-time recovery must reach (default 7d): the physical snapshot
    /// at or before that point and every later one are kept, and the WAL they need.
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION"))]
    pub pitr_window: Option<String>,
    /// Per-tag rules (`[retention.tag_within]`, e.g. `pre-migration = "90d"`, the default):
    /// snapshots carrying the tag are kept this long, counted back from the newest snapshot
    /// of their source and kind. Config only.
    #[cfg_attr(feature = "clap", arg(skip))]
    #[serde(default = "default_tag_within")]
    pub tag_within: BTreeMap<String, String>,
}

fn default_tag_within() -> BTreeMap<String, String> {
    [("pre-migration".to_string(), "90d".to_string())].into()
}

impl Default for KeepRules {
    /// The strategy's policy: daily 30 days, weekly 3 months, monthly a year, pre-migration
    /// snapshots 90 days.
    fn default() -> Self {
        KeepRules {
            keep_last: None,
            keep_hourly: None,
            keep_daily: Some(30),
            keep_weekly: Some(13),
            keep_monthly: Some(12),
            keep_yearly: None,
            keep_within: None,
            keep_tags: Vec::new(),
            pitr_window: None,
            tag_within: default_tag_within(),
        }
    }
}

impl KeepRules {
    /// Whether any snapshot-keeping rule is set (`keep_*`); the PITR window and tag rules
    /// are not counted.
    pub fn any_keep(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .any(Option::is_some)
            || self.keep_within.is_some()
            || !self.keep_tags.is_empty()
    }

    /// These rules (typed as flags) over `base` (the config's): when any `keep_*` rule is
    /// given, the given ones are the whole set of keep rules, as the config's table is;
    /// the PITR window is the given one, else the base's; tag rules are the base's.
    pub fn over(self, base: &KeepRules) -> KeepRules {
        let keep = if self.any_keep() {
            self.clone()
        } else {
            base.clone()
        };
        KeepRules {
            pitr_window: self.pitr_window.or_else(|| base.pitr_window.clone()),
            tag_within: base.tag_within.clone(),
            ..keep
        }
    }

    /// The policy these rules describe; a duration that does not read is named by its key
    /// (`keep_within`, `pitr_window`, `tag_within.TAG`) with why.
    pub fn policy(&self) -> std::result::Result<Policy, (String, String)> {
        let d = |key: &str, v: &Option<String>| {
            v.as_deref()
                .map(|v| crate::parse_duration(v).map_err(|e| (key.to_string(), e.to_string())))
                .transpose()
        };
        let mut tag_within = Vec::new();
        for (t, v) in &self.tag_within {
            let span =
                crate::parse_duration(v).map_err(|e| (format!("tag_within.{t}"), e.to_string()))?;
            tag_within.push((t.clone(), span));
        }
        Ok(Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: d("keep_within", &self.keep_within)?,
            keep_tags: self.keep_tags.clone(),
            tag_within,
            pitr_window: Some(d("pitr_window", &self.pitr_window)?.unwrap_or(DEFAULT_PITR_WINDOW)),
        })
    }
}

/// Which snapshots to keep: a snapshot is kept when any rule (or a safety rule) keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep the N newest snapshots.
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest UTC hours that hold one.
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest UTC days that hold one.
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that hold one.
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest UTC months that hold one.
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest UTC years that hold one.
    pub keep_yearly: Option<u32>,
    /// Keep snapshots started within this long of the group's newest snapshot.
    pub keep_within: Option<Duration>,
    /// Keep every snapshot carrying any of these tags, whatever its age.
    pub keep_tags: Vec<String>,
    /// Keep snapshots carrying the tag that started within the duration of the group's newest.
    pub tag_within: Vec<(String, Duration)>,
    /// Keep the physical snapshots needed to recover to any instant of this long before `now`.
    pub pitr_window: Option<Duration>,
}

impl Policy {
    /// The strategy: daily 30, weekly 13, monthly 12, pre-migration tags 90 days, PITR 7 days
    /// (the default [`KeepRules`], the one place it is written).
    pub fn strategy() -> Self {
        KeepRules::default()
            .policy()
            .expect("the strategy's durations read")
    }

    /// Whether no rule is set (a count of 0 is unset, as in restic); [`apply`] then keeps all.
    pub fn is_empty(&self) -> bool {
        let counts = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        counts.iter().all(|c| c.unwrap_or(0) == 0)
            && self.keep_within.is_none()
            && self.keep_tags.is_empty()
            && self.tag_within.is_empty()
            && self.pitr_window.is_none()
    }
}

/// One snapshot as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Snapshot id.
    pub id: String,
    /// Source name; with `kind`, the group the rules count within.
    pub source: String,
    /// Backup kind (e.g. logical or physical); with `source`, the group.
    pub kind: String,
    /// When the backup started; ranks snapshots and picks their buckets.
    pub started_at: Timestamp,
    /// When the backup finished; only the PITR rule reads it.
    pub finished_at: Timestamp,
    /// Tags, matched exactly by `keep_tags` and `tag_within`.
    pub tags: Vec<String>,
    /// Whether a successful verify of this snapshot is on record.
    pub verified: bool,
    /// Whether this is a point-in-time base (the PITR rule applies).
    pub physical: bool,
}

/// Why a snapshot is kept; the variant order is the order reasons are listed in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Among the `keep_last` newest.
    Last,
    /// Newest of one of the `keep_hourly` newest hours.
    Hourly,
    /// Newest of one of the `keep_daily` newest days.
    Daily,
    /// Newest of one of the `keep_weekly` newest ISO weeks.
    Weekly,
    /// Newest of one of the `keep_monthly` newest months.
    Monthly,
    /// Newest of one of the `keep_yearly` newest years.
    Yearly,
    /// Started within `keep_within` of the group's newest.
    Within,
    /// Carries this tag from `keep_tags`.
    Tag(String),
    /// Carries this tag and started within its `tag_within` duration of the group's newest.
    TagWithin(String),
    /// The group's newest snapshot (safety rule).
    Newest,
    /// The group's newest verified snapshot (safety rule).
    NewestVerified,
    /// Needed for point-in-time recovery over `pitr_window`.
    Pitr,
    /// The policy is empty, so everything is kept.
    NoPolicy,
}

impl Reason {
    /// The reason as written in output: `daily`, `tag:<t>`, `tag-within:<t>`, `no-policy`, ….
    pub fn as_str(&self) -> Cow<'_, str> {
        Cow::Borrowed(match self {
            Reason::Last => "last",
            Reason::Hourly => "hourly",
            Reason::Daily => "daily",
            Reason::Weekly => "weekly",
            Reason::Monthly => "monthly",
            Reason::Yearly => "yearly",
            Reason::Within => "within",
            Reason::Tag(t) => return Cow::Owned(format!("tag:{t}")),
            Reason::TagWithin(t) => return Cow::Owned(format!("tag-within:{t}")),
            Reason::Newest => "newest",
            Reason::NewestVerified => "newest-verified",
            Reason::Pitr => "pitr",
            Reason::NoPolicy => "no-policy",
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// A string that names no [`Reason`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseReasonError(pub String);

impl fmt::Display for ParseReasonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown retention reason {:?}", self.0)
    }
}

impl std::error::Error for ParseReasonError {}

impl FromStr for Reason {
    type Err = ParseReasonError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(tag) = s.strip_prefix("tag:") {
            return Ok(Reason::Tag(tag.into()));
        }
        if let Some(tag) = s.strip_prefix("tag-within:") {
            return Ok(Reason::TagWithin(tag.into()));
        }
        Ok(match s {
            "last" => Reason::Last,
            "hourly" => Reason::Hourly,
            "daily" => Reason::Daily,
            "weekly" => Reason::Weekly,
            "monthly" => Reason::Monthly,
            "yearly" => Reason::Yearly,
            "within" => Reason::Within,
            "newest" => Reason::Newest,
            "newest-verified" => Reason::NewestVerified,
            "pitr" => Reason::Pitr,
            "no-policy" => Reason::NoPolicy,
            _ => return Err(ParseReasonError(s.into())),
        })
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The verdict on one snapshot (contract: `forget --json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Snapshot id.
    pub id: String,
    /// Source name.
    pub source: String,
    /// Backup kind.
    pub kind: String,
    /// Whether the snapshot is kept (exactly when `reasons` is not empty).
    pub keep: bool,
    /// Every rule that keeps it, in [`Reason`] order; empty when it is to be deleted.
    pub reasons: Vec<Reason>,
}

/// Decides, for each snapshot and in input order, whether `policy` keeps it and why.
pub fn apply(policy: &Policy, snapshots: &[Candidate], now: Timestamp) -> Vec<Decision> {
    let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, s) in snapshots.iter().enumerate() {
        groups.entry((&s.source, &s.kind)).or_default().push(i);
    }
    let mut reasons = vec![Vec::new(); snapshots.len()];
    for mut order in groups.into_values() {
        // Stable, so even full duplicates get a deterministic rank (their input order).
        order.sort_by(|&a, &b| {
            let (a, b) = (&snapshots[a], &snapshots[b]);
            (b.started_at, &b.id).cmp(&(a.started_at, &a.id))
        });
        apply_group(policy, snapshots, &order, now, &mut reasons);
    }
    snapshots
        .iter()
        .zip(reasons)
        .map(|(s, mut reasons)| {
            reasons.sort();
            reasons.dedup();
            Decision {
                id: s.id.clone(),
                source: s.source.clone(),
                kind: s.kind.clone(),
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect()
}

/// The earliest moment the policy could stop keeping a snapshot it keeps today for
/// `reasons` (as [`apply`] gave them at `now`); `None` when no passage of time releases it
/// (a kept tag, an empty policy). A lower bound, whatever backups follow: a bucket rule
/// keeping it among the N newest hours, days, ISO weeks, months or years needs N later
/// buckets to hold a snapshot, the first instant of the N-th is its bucket's start plus N
/// periods; `keep_within` and a tag's window need a newer snapshot started that much later;
/// the PITR window lets go of a base only that long after it finished; `last`, `newest` and
/// `newest-verified` can lapse at any moment, so they give `now`. A snapshot is released
/// only once every reason lapsed: the latest bound wins. Used to judge whether object locks
/// last as long as the snapshots that need them (`check` on a repository with object lock).
pub fn earliest_release(
    policy: &Policy,
    reasons: &[Reason],
    started_at: Timestamp,
    finished_at: Timestamp,
    now: Timestamp,
) -> Option<Timestamp> {
    let after = |d: Option<Duration>, from: Timestamp| {
        d.and_then(|d| jiff::SignedDuration::try_from(d).ok())
            .map_or(now, |d| from.saturating_add(d).unwrap_or(from))
    };
    let mut latest = now;
    for r in reasons {
        let bound = match r {
            Reason::Last | Reason::Newest | Reason::NewestVerified => now,
            Reason::Tag(_) | Reason::NoPolicy => return None,
            Reason::Hourly => Period::Hour.after(started_at, policy.keep_hourly),
            Reason::Daily => Period::Day.after(started_at, policy.keep_daily),
            Reason::Weekly => Period::Week.after(started_at, policy.keep_weekly),
            Reason::Monthly => Period::Month.after(started_at, policy.keep_monthly),
            Reason::Yearly => Period::Year.after(started_at, policy.keep_yearly),
            Reason::Within => after(policy.keep_within, started_at),
            Reason::TagWithin(t) => after(
                policy
                    .tag_within
                    .iter()
                    .find(|(tag, _)| tag == t)
                    .map(|(_, d)| *d),
                started_at,
            ),
            Reason::Pitr => after(policy.pitr_window, finished_at),
        };
        latest = latest.max(bound);
    }
    Some(latest)
}

/// A calendar period that bucket rules count.
#[derive(Clone, Copy)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    /// The UTC bucket `t` falls in; equal keys mean the same bucket.
    fn bucket(self, t: Timestamp) -> (i16, i8, i8, i8) {
        let dt = TimeZone::UTC.to_datetime(t);
        match self {
            Period::Hour => (dt.year(), dt.month(), dt.day(), dt.hour()),
            Period::Day => (dt.year(), dt.month(), dt.day(), 0),
            Period::Week => {
                let week = dt.date().iso_week_date();
                (week.year(), week.week(), 0, 0)
            }
            Period::Month => (dt.year(), dt.month(), 0, 0),
            Period::Year => (dt.year(), 0, 0, 0),
        }
    }
}

impl Period {
    /// The start of `t`'s bucket plus `n` periods (UTC): the first instant of the `n`-th
    /// bucket after `t`'s. `None` counts as no periods.
    fn after(self, t: Timestamp, n: Option<u32>) -> Timestamp {
        let n = i64::from(n.unwrap_or(0));
        let dt = TimeZone::UTC.to_datetime(t);
        let start = match self {
            Period::Hour => dt.date().at(dt.hour(), 0, 0, 0),
            Period::Day => dt.date().at(0, 0, 0, 0),
            Period::Week => {
                let back = i64::from(dt.date().weekday().to_monday_zero_offset());
                (dt.date() - jiff::Span::new().days(back)).at(0, 0, 0, 0)
            }
            Period::Month => dt.date().first_of_month().at(0, 0, 0, 0),
            Period::Year => dt.date().first_of_year().at(0, 0, 0, 0),
        };
        let span = match self {
            Period::Hour => jiff::Span::new().hours(n),
            Period::Day => jiff::Span::new().days(n),
            Period::Week => jiff::Span::new().weeks(n),
            Period::Month => jiff::Span::new().months(n),
            Period::Year => jiff::Span::new().years(n),
        };
        start
            .checked_add(span)
            .ok()
            .and_then(|d| TimeZone::UTC.to_timestamp(d).ok())
            .unwrap_or(Timestamp::MAX)
    }
}

/// Adds the reasons of one group, whose indices `order` lists newest first (never empty).
fn apply_group(
    policy: &Policy,
    snapshots: &[Candidate],
    order: &[usize],
    now: Timestamp,
    reasons: &mut [Vec<Reason>],
) {
    let newest = snapshots[order[0]].started_at;
    reasons[order[0]].push(Reason::Newest);
    if let Some(&i) = order.iter().find(|&&i| snapshots[i].verified) {
        reasons[i].push(Reason::NewestVerified);
    }
    if policy.is_empty() {
        for &i in order {
            reasons[i].push(Reason::NoPolicy);
        }
        return;
    }

    if let Some(n) = policy.keep_last {
        for &i in order.iter().take(n as usize) {
            reasons[i].push(Reason::Last);
        }
    }
    let bucket_rules = [
        (policy.keep_hourly, Period::Hour, Reason::Hourly),
        (policy.keep_daily, Period::Day, Reason::Daily),
        (policy.keep_weekly, Period::Week, Reason::Weekly),
        (policy.keep_monthly, Period::Month, Reason::Monthly),
        (policy.keep_yearly, Period::Year, Reason::Yearly),
    ];
    for (count, period, reason) in bucket_rules {
        let mut left = count.unwrap_or(0);
        let mut last_kept = None;
        for &i in order {
            if left == 0 {
                break;
            }
            let bucket = Some(period.bucket(snapshots[i].started_at));
            if bucket != last_kept {
                reasons[i].push(reason.clone());
                last_kept = bucket;
                left -= 1;
            }
        }
    }

    for &i in order {
        let s = &snapshots[i];
        if let Some(limit) = policy.keep_within {
            if at_most(newest.duration_since(s.started_at), limit) {
                reasons[i].push(Reason::Within);
            }
        }
        for tag in &policy.keep_tags {
            if s.tags.contains(tag) {
                reasons[i].push(Reason::Tag(tag.clone()));
            }
        }
        for (tag, limit) in &policy.tag_within {
            if s.tags.contains(tag) && at_most(newest.duration_since(s.started_at), *limit) {
                reasons[i].push(Reason::TagWithin(tag.clone()));
            }
        }
    }

    if let Some(window) = policy.pitr_window {
        let physical: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| snapshots[i].physical)
            .collect();
        // The base is old enough when now - finished_at >= window, i.e. finished_at <= cut.
        let base = physical.iter().position(|&i| {
            let age = now.duration_since(snapshots[i].finished_at);
            !age.is_negative() && age.unsigned_abs() >= window
        });
        let needed = match base {
            Some(base) => &physical[..=base],
            None => &physical[..],
        };
        for &i in needed {
            reasons[i].push(Reason::Pitr);
        }
    }
}

/// Whether `age` is at most `limit`; a negative age (a snapshot from the future) always is.
fn at_most(age: jiff::SignedDuration, limit: Duration) -> bool {
    age.is_negative() || age.unsigned_abs() <= limit
}

#[cfg(test)]
mod tests;
