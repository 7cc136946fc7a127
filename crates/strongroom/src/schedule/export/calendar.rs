//! A cron pattern as each external scheduler writes it: five plain cron fields (crontab,
//! Kubernetes, GitHub Actions), systemd's `OnCalendar=` lines, and the same times moved to
//! UTC for schedulers that know no other zone.
//!
//! Owns reading croner's parsed pattern back into value sets ([`Fields`]) and writing them
//! out again, so lists, ranges, steps, names (`MON`, `JAN`), `7` for Sunday, `?` and
//! `@daily` all come out as numbers every scheduler reads the same way. A croner-only
//! feature (`L`, `W`, `#`, `+`) that a target cannot express is refused with a [`Refusal`]
//! naming it, never dropped. Must not name sources or jobs: the caller words the sentence.

use super::super::Pattern;

// croner's bit layout (croner 4, `component.rs`; its module is private). The unit tests
// pin each one to a pattern that sets it, so a change in croner fails there.
const ALL: u8 = 1;
const LAST: u8 = 1 << 6;
const NEAREST_WEEKDAY: u8 = 1 << 7;

/// A croner feature a scheduler's syntax has no way to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `L` in the day of month.
    LastDay,
    /// `W` or `LW` in the day of month.
    NearestWeekday,
    /// `#` in the day of week.
    NthWeekday,
    /// `L` in the day of week (`5L`).
    LastWeekday,
    /// `+` before the day of week, or the parser's option: both day fields must match.
    BothDays,
    /// Moving the times to UTC moves some of them to another date in a way cron cannot
    /// say: across a month's end, or out of the months the pattern names.
    NotMovable,
}

impl Refusal {
    /// The feature in words, for "… uses THIS, which FORMAT cannot express".
    pub fn what(self) -> &'static str {
        match self {
            Refusal::LastDay => "L (the last day of the month)",
            Refusal::NearestWeekday => "W (the weekday nearest a day of the month)",
            Refusal::NthWeekday => "# (the nth weekday of the month)",
            Refusal::LastWeekday => "L on a weekday (the last such weekday of the month)",
            Refusal::BothDays => "+ (a day must match both the day of month and the weekday)",
            Refusal::NotMovable => {
                "times that fall on another date in UTC, across a month's end or out of the months it names"
            }
        }
    }
}

/// A pattern's value sets, as croner parsed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    /// 0-59.
    pub minutes: Vec<u8>,
    /// 0-23.
    pub hours: Vec<u8>,
    /// 1-31, plain days only.
    pub days: Vec<u8>,
    /// 1-12.
    pub months: Vec<u8>,
    /// 0-6, Sunday 0; plain weekdays only.
    pub weekdays: Vec<u8>,
    /// The day-of-month field was `*` (or `?`).
    pub star_dom: bool,
    /// The day-of-week field was `*` (or `?`).
    pub star_dow: bool,
    /// Both day fields must match (`+`); else either does, as in every cron.
    pub both: bool,
    /// `L` in the day of month.
    pub last_day: bool,
    /// `W` or `LW` in the day of month.
    pub nearest_weekday: bool,
    /// `D#N`: weekday D, its Nth occurrence (1-5) in the month.
    pub nth: Vec<(u8, u8)>,
    /// `DL`: weekday D, its last occurrence in the month.
    pub last_weekdays: Vec<u8>,
}

fn set(c: &croner::CronComponent, bit: u8) -> Vec<u8> {
    (c.min..=c.max)
        .filter(|v| c.is_bit_set(*v, bit).unwrap_or(false))
        .map(|v| v as u8)
        .collect()
}

impl Fields {
    /// Reads `p`'s parsed fields.
    pub fn of(p: &Pattern) -> Fields {
        let c = &p.cron.pattern;
        let mut weekdays = set(&c.days_of_week, ALL);
        weekdays.retain(|d| *d < 7);
        let mut nth = Vec::new();
        let mut last_weekdays = Vec::new();
        for d in 0..7u16 {
            for n in 1..=5u8 {
                if c.days_of_week.is_bit_set(d, 1 << n).unwrap_or(false) {
                    nth.push((d as u8, n));
                }
            }
            if c.days_of_week.is_bit_set(d, LAST).unwrap_or(false) {
                last_weekdays.push(d as u8);
            }
        }
        let nearest =
            c.days.is_feature_enabled(NEAREST_WEEKDAY) || !set(&c.days, NEAREST_WEEKDAY).is_empty();
        Fields {
            minutes: set(&c.minutes, ALL),
            hours: set(&c.hours, ALL),
            days: set(&c.days, ALL),
            months: set(&c.months, ALL),
            weekdays,
            star_dom: c.is_dom_wildcard(),
            star_dow: c.is_dow_wildcard(),
            both: c.matches_dom_and_dow(),
            last_day: c.days.is_feature_enabled(LAST) && !nearest,
            nearest_weekday: nearest,
            nth,
            last_weekdays,
        }
    }

    /// The first croner-only feature used, if any.
    fn croner_only(&self) -> Option<Refusal> {
        if self.nearest_weekday {
            Some(Refusal::NearestWeekday)
        } else if self.last_day {
            Some(Refusal::LastDay)
        } else if !self.nth.is_empty() {
            Some(Refusal::NthWeekday)
        } else if !self.last_weekdays.is_empty() {
            Some(Refusal::LastWeekday)
        } else if self.both && !self.star_dom && !self.star_dow {
            Some(Refusal::BothDays)
        } else {
            None
        }
    }

    /// The five fields every cron reads the same way (Vixie cron, cronie, Kubernetes,
    /// GitHub Actions): numbers, ranges and `*/N` only, a day field `*` exactly when it
    /// was written so (cron's either-day rule turns on that).
    pub fn cron(&self) -> Result<String, Refusal> {
        if let Some(r) = self.croner_only() {
            return Err(r);
        }
        let dom = if self.star_dom {
            "*".into()
        } else {
            list(&self.days, "-")
        };
        let dow = if self.star_dow {
            "*".into()
        } else {
            list(&self.weekdays, "-")
        };
        Ok(format!(
            "{} {} {} {} {}",
            compact(&self.minutes, 0, 59),
            compact(&self.hours, 0, 23),
            dom,
            if self.months.len() == 12 {
                "*".into()
            } else {
                list(&self.months, "-")
            },
            dow
        ))
    }

    /// systemd `OnCalendar=` values (one or more: a timer fires at any of them) in zone
    /// `tz`. systemd says what croner's `L`, `#` and `DL` say; only `W` is refused.
    pub fn on_calendar(&self, tz: &str) -> Result<Vec<String>, Refusal> {
        if self.nearest_weekday {
            return Err(Refusal::NearestWeekday);
        }
        let time = format!(
            "{}:{}:00",
            systemd_values(&self.hours, 0, 23),
            systemd_values(&self.minutes, 0, 59)
        );
        let months = if self.months.len() == 12 {
            "*".to_string()
        } else {
            runs(&self.months)
                .iter()
                .map(|(a, b)| range_text(*a, *b, "..", |v| format!("{v:02}")))
                .collect::<Vec<_>>()
                .join(",")
        };
        // What a day matches, as (weekdays, day part) pairs; the timer fires on any.
        let mut specs: Vec<(String, String)> = Vec::new();
        let plain_days = || {
            runs(&self.days)
                .iter()
                .map(|(a, b)| range_text(*a, *b, "..", |v| format!("{v:02}")))
                .collect::<Vec<_>>()
                .join(",")
        };
        let plain_weekdays = || weekday_list(&self.weekdays);
        let dom_specs = |specs: &mut Vec<(String, String)>| {
            if !self.days.is_empty() {
                specs.push((String::new(), format!("-{}", plain_days())));
            }
            if self.last_day {
                specs.push((String::new(), "~01".into()));
            }
        };
        let dow_specs = |specs: &mut Vec<(String, String)>| {
            if !self.weekdays.is_empty() {
                specs.push((plain_weekdays(), "-*".into()));
            }
            for (d, n) in &self.nth {
                let first = (n - 1) * 7 + 1;
                specs.push((
                    weekday_list(&[*d]),
                    format!("-{:02}..{:02}", first, first + 6),
                ));
            }
            for d in &self.last_weekdays {
                specs.push((weekday_list(&[*d]), "~07/1".into()));
            }
        };
        match (self.star_dom, self.star_dow) {
            (true, true) => specs.push((String::new(), "-*".into())),
            (false, true) => dom_specs(&mut specs),
            (true, false) => dow_specs(&mut specs),
            (false, false) if self.both => {
                if self.last_day || !self.nth.is_empty() || !self.last_weekdays.is_empty() {
                    return Err(Refusal::BothDays);
                }
                specs.push((plain_weekdays(), format!("-{}", plain_days())));
            }
            (false, false) => {
                dom_specs(&mut specs);
                dow_specs(&mut specs);
            }
        }
        Ok(specs
            .into_iter()
            .map(|(wd, day)| {
                let wd = if wd.is_empty() { wd } else { format!("{wd} ") };
                format!("{wd}*-{months}{day} {time} {tz}")
            })
            .collect())
    }

    /// The same times `offset_minutes` east of UTC, written in UTC: one or more patterns
    /// (times that land on the next or the previous day need their own). Refused when a
    /// date would cross a month's end or leave the months named.
    pub fn to_utc(&self, offset_minutes: i32) -> Result<Vec<Fields>, Refusal> {
        if let Some(r) = self.croner_only() {
            return Err(r);
        }
        if offset_minutes == 0 {
            return Ok(vec![self.clone()]);
        }
        // Every (minute, hour) moved, grouped by how many days it moved.
        let mut moved: std::collections::BTreeMap<i32, Vec<(u8, u8)>> = Default::default();
        for h in &self.hours {
            for m in &self.minutes {
                let t = *h as i32 * 60 + *m as i32 - offset_minutes;
                let day = t.div_euclid(1440);
                let t = t.rem_euclid(1440);
                moved
                    .entry(day)
                    .or_default()
                    .push(((t % 60) as u8, (t / 60) as u8));
            }
        }
        let any_day = self.star_dom && self.star_dow;
        let mut out = Vec::new();
        for (shift, times) in moved {
            let mut f = self.clone();
            if shift != 0 && self.months.len() != 12 {
                return Err(Refusal::NotMovable);
            }
            if shift != 0 && !any_day {
                if !self.star_dow {
                    f.weekdays = self
                        .weekdays
                        .iter()
                        .map(|d| (*d as i32 + shift).rem_euclid(7) as u8)
                        .collect();
                    f.weekdays.sort_unstable();
                }
                if !self.star_dom {
                    // Only days every month has, staying inside the month.
                    let inside = |d: &u8| *d <= 28 && (1..=28).contains(&(*d as i32 + shift));
                    if !self.days.iter().all(inside) {
                        return Err(Refusal::NotMovable);
                    }
                    f.days = self
                        .days
                        .iter()
                        .map(|d| (*d as i32 + shift) as u8)
                        .collect();
                }
            }
            // Hours sharing the same minutes make one pattern.
            let mut by_minutes: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
            let mut per_hour: std::collections::BTreeMap<u8, Vec<u8>> = Default::default();
            for (m, h) in times {
                per_hour.entry(h).or_default().push(m);
            }
            for (h, mut ms) in per_hour {
                ms.sort_unstable();
                ms.dedup();
                by_minutes.entry(ms).or_default().push(h);
            }
            for (minutes, hours) in by_minutes {
                out.push(Fields {
                    minutes,
                    hours,
                    ..f.clone()
                });
            }
        }
        Ok(out)
    }
}

/// Consecutive runs in sorted `v`: (first, last).
fn runs(v: &[u8]) -> Vec<(u8, u8)> {
    let mut out: Vec<(u8, u8)> = Vec::new();
    for x in v {
        match out.last_mut() {
            Some((_, b)) if *b + 1 == *x => *b = *x,
            _ => out.push((*x, *x)),
        }
    }
    out
}

fn range_text(a: u8, b: u8, sep: &str, show: impl Fn(u8) -> String) -> String {
    match b - a {
        0 => show(a),
        1 => format!("{},{}", show(a), show(b)),
        _ => format!("{}{sep}{}", show(a), show(b)),
    }
}

fn list(v: &[u8], sep: &str) -> String {
    runs(v)
        .iter()
        .map(|(a, b)| range_text(*a, *b, sep, |x| x.to_string()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The step `s` when `v` is exactly lo, lo+s, lo+2s, … up to hi.
fn step_of(v: &[u8], lo: u8, hi: u8) -> Option<u8> {
    if v.len() < 2 || v[0] != lo {
        return None;
    }
    let s = v[1] - v[0];
    let expected: Vec<u8> = (lo..=hi).step_by(s as usize).collect();
    (expected == v).then_some(s)
}

/// A minute or hour field: `*`, `*/N`, or a list of numbers and ranges.
fn compact(v: &[u8], lo: u8, hi: u8) -> String {
    if v.len() == (hi - lo + 1) as usize {
        return "*".into();
    }
    match step_of(v, lo, hi) {
        Some(s) if s > 1 => format!("*/{s}"),
        _ => list(v, "-"),
    }
}

/// An hour or minute for systemd: `*`, `00/N`, or a list of two-digit values and ranges.
fn systemd_values(v: &[u8], lo: u8, hi: u8) -> String {
    if v.len() == (hi - lo + 1) as usize {
        return "*".into();
    }
    match step_of(v, lo, hi) {
        Some(s) if s > 1 => format!("{lo:02}/{s}"),
        _ => runs(v)
            .iter()
            .map(|(a, b)| range_text(*a, *b, "..", |x| format!("{x:02}")))
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn weekday_list(v: &[u8]) -> String {
    const NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    runs(v)
        .iter()
        .map(|(a, b)| range_text(*a, *b, "..", |x| NAMES[x as usize].to_string()))
        .collect::<Vec<_>>()
        .join(",")
}
