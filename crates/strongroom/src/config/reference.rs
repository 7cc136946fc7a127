//! docs/CONFIG.md, the reference of every `strongroom.toml` key, checked against the parser so
//! it cannot drift.
//!
//! Owns nothing but these tests. serde's derive gives no list of the keys it accepts, so the
//! list is taken from the structs themselves: [`fields!`] destructures each configuration
//! struct without `..`, so a field added to one stops this file compiling until it is listed
//! here, and the test then fails until docs/CONFIG.md documents it. The other way round, the
//! documented file with every key must parse with the real parser (`deny_unknown_fields`
//! refuses a key it does not know, so a documented key that was renamed or removed fails),
//! and the keys it holds must be exactly the documented ones. Defaults: for each table, the
//! documented defaults written out must resolve to the same effective configuration as
//! leaving them out (source settings, retention policy, objectives, prune, verify and alert
//! settings as the code uses them), so a default changed in the code or the page alone fails.

use super::objectives::{DEFAULT_CHECKLIST, DEFAULT_INTERVALS};
use super::*;
use std::collections::BTreeSet;

const DOC: &str = include_str!("../../../../docs/CONFIG.md");

/// The field names of a configuration struct, as a compile-time-exhaustive list: the
/// destructuring without `..` fails to compile when the struct gains or loses a field.
macro_rules! fields {
    ($t:ident { $($f:ident),* $(,)? }) => {{
        #[allow(dead_code)]
        fn exhaustive(v: $t) {
            let $t { $($f: _),* } = v;
        }
        [$(stringify!($f)),*]
    }};
}

/// Every key the parser accepts, spelled as docs/CONFIG.md spells them (`sources.NAME.url`,
/// `alerts[].webhook`; the kinds and checklist items of `interval` and `checklist` each a key).
fn accepted() -> BTreeSet<String> {
    let objectives = |prefix: &str, fields: &[&str]| -> Vec<String> {
        fields
            .iter()
            .flat_map(|f| match *f {
                "interval" => DEFAULT_INTERVALS
                    .iter()
                    .map(|(k, _)| format!("{prefix}.interval.{k}"))
                    .collect(),
                "checklist" => DEFAULT_CHECKLIST
                    .iter()
                    .map(|(k, _)| format!("{prefix}.checklist.{k}"))
                    .collect(),
                f => vec![format!("{prefix}.{f}")],
            })
            .collect()
    };
    let mut keys = BTreeSet::new();
    let top = fields!(Config {
        repository,
        password_command,
        password_file,
        sources,
        retention,
        prune,
        objectives,
        verify,
        alerts,
        contacts,
        copies,
        daemon,
        replicate,
    });
    for f in top {
        match f {
            "sources" => {
                let source = fields!(SourceConfig {
                    url,
                    schema_version_query,
                    checks,
                    before_restore,
                    after_restore,
                    row_counts,
                    lock_timeout,
                    objectives,
                    spool_dir,
                    schedule,
                    continuous,
                    slot,
                    slot_max_retained,
                });
                for g in source {
                    match g {
                        "checks" => {
                            for h in fields!(SqlCheck { name, sql }) {
                                keys.insert(format!("sources.NAME.checks[].{h}"));
                            }
                        }
                        "objectives" => keys.extend(objectives(
                            "sources.NAME.objectives",
                            &fields!(SourceObjectives {
                                rpo,
                                rto,
                                interval,
                                checklist,
                                min_size,
                            }),
                        )),
                        "schedule" => keys.extend(
                            fields!(ScheduleConfig {
                                timezone,
                                jitter,
                                full,
                                logical,
                                physical,
                                verify,
                                drill,
                                prune,
                                copy,
                                check,
                            })
                            .iter()
                            .map(|h| format!("sources.NAME.schedule.{h}")),
                        ),
                        g => {
                            keys.insert(format!("sources.NAME.{g}"));
                        }
                    }
                }
            }
            "retention" => {
                let retention = fields!(KeepRules {
                    keep_last,
                    keep_hourly,
                    keep_daily,
                    keep_weekly,
                    keep_monthly,
                    keep_yearly,
                    keep_within,
                    keep_tags,
                    pitr_window,
                    tag_within,
                });
                keys.extend(retention.iter().map(|g| format!("retention.{g}")));
            }
            "prune" => keys.extend(
                fields!(PruneSettings {
                    repack_below,
                    max_repack,
                    max_wait
                })
                .iter()
                .map(|g| format!("prune.{g}")),
            ),
            "objectives" => keys.extend(objectives(
                "objectives",
                &fields!(Objectives {
                    rpo,
                    rto,
                    interval,
                    checklist,
                    min_size,
                }),
            )),
            "replicate" => keys.extend(
                fields!(ReplicateSettings {
                    interval,
                    base_interval,
                    checkpoint_frames,
                    brake_frames
                })
                .iter()
                .map(|g| format!("replicate.{g}")),
            ),
            "verify" => keys.extend(
                fields!(VerifySettings {
                    scratch_dir,
                    scratch_postgres
                })
                .iter()
                .map(|g| format!("verify.{g}")),
            ),
            "alerts" => keys.extend(
                fields!(AlertConfig {
                    webhook,
                    command,
                    format,
                    min_level,
                    timeout,
                    email_to,
                    email_from,
                    jobs,
                })
                .iter()
                .map(|g| format!("alerts[].{g}")),
            ),
            // A copy's retention is one key: a table of `[retention]`'s keys.
            "copies" => keys.extend(
                fields!(CopyConfig {
                    name,
                    repository,
                    password_file,
                    password_command,
                    retention,
                })
                .iter()
                .map(|g| format!("copies[].{g}")),
            ),
            "daemon" => {
                for g in fields!(DaemonSettings {
                    heartbeat_url,
                    stop_timeout,
                    retries,
                    retry_delay,
                    status_interval,
                    session_timeout,
                    users,
                }) {
                    if g == "users" {
                        for h in fields!(DashboardUser {
                            name,
                            password_hash,
                            role
                        }) {
                            keys.insert(format!("daemon.users[].{h}"));
                        }
                    } else {
                        keys.insert(format!("daemon.{g}"));
                    }
                }
            }
            "contacts" => keys.extend(
                fields!(Contact {
                    role,
                    name,
                    phone,
                    email
                })
                .iter()
                .map(|g| format!("contacts[].{g}")),
            ),
            f => {
                keys.insert(f.to_string());
            }
        }
    }
    keys
}

/// One documented key: its name and its default as written (`None` for "—" or "required").
struct Documented {
    key: String,
    default: Option<String>,
}

/// The rows of docs/CONFIG.md's key tables.
fn documented() -> Vec<Documented> {
    DOC.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let key = cells[0]
                .trim_start_matches("| ")
                .trim_matches('`')
                .to_string();
            let default = cells[2].trim();
            let default = default
                .strip_prefix('`')
                .and_then(|d| d.split('`').next())
                .map(str::to_string);
            Documented { key, default }
        })
        .collect()
}

/// The documented file with every key.
fn full_example() -> &'static str {
    let at = DOC
        .find("## A file with every key")
        .expect("the full example's heading");
    let rest = &DOC[at..];
    let start = rest.find("```toml\n").expect("its toml block") + "```toml\n".len();
    let end = start + rest[start..].find("```").expect("the block's end");
    &rest[start..end]
}

/// The keys a TOML table holds, spelled as the reference spells them.
fn keys_of(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        let path = match prefix {
            "sources" => "sources.NAME".to_string(),
            "" => k.clone(),
            p => format!("{p}.{k}"),
        };
        match v {
            // A map of tags to durations is one key.
            toml::Value::Table(_)
                if path == "retention.tag_within" || path == "copies[].retention" =>
            {
                out.insert(path);
            }
            toml::Value::Table(t) if prefix == "sources" => keys_of(t, "sources.NAME", out),
            toml::Value::Table(t) => keys_of(t, &path, out),
            toml::Value::Array(items)
                if items.iter().all(|i| i.is_table()) && !items.is_empty() =>
            {
                for i in items {
                    keys_of(i.as_table().expect("a table"), &format!("{path}[]"), out);
                }
            }
            _ => {
                out.insert(path);
            }
        }
    }
}

#[test]
fn every_key_the_parser_accepts_is_documented_and_nothing_else() {
    let documented: BTreeSet<String> = documented().into_iter().map(|d| d.key).collect();
    let accepted = accepted();
    let undocumented: Vec<&String> = accepted.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(&accepted).collect();
    assert!(
        undocumented.is_empty(),
        "keys the parser takes that docs/CONFIG.md does not list: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "keys docs/CONFIG.md lists that the structs do not have: {unknown:?}"
    );
}

#[test]
fn the_documented_file_with_every_key_parses_and_holds_every_key() {
    let text = full_example();
    let cfg = Config::parse(text, Path::new("docs/CONFIG.md")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.sources.len(), 1);
    let mut held = BTreeSet::new();
    keys_of(&toml::from_str(text).unwrap(), "", &mut held);
    let documented: BTreeSet<String> = documented().into_iter().map(|d| d.key).collect();
    assert_eq!(
        held, documented,
        "the full example must hold every documented key once"
    );
}

/// The smallest config the defaults are judged in: one source (its keys need one), one
/// webhook (so do the alert keys), nothing else.
const MINIMAL: &str = "[sources.s]\nurl = \"sqlite:/var/lib/x.db\"\n\n[[alerts]]\nwebhook = \"http://127.0.0.1:9/hook\"\n";

/// Everything the documented keys decide, as the code resolves it.
fn resolved(c: &Config) -> String {
    let alerts: Vec<_> = c
        .alerts
        .iter()
        .map(|a| {
            (
                &a.webhook,
                &a.command,
                a.min_level_or_default().to_string(),
                a.timeout_or_default(),
                a.format_or_default(),
                (&a.email_to, &a.email_from, &a.jobs),
            )
        })
        .collect();
    format!(
        "{:#?}",
        (
            (&c.repository, &c.password_command, &c.password_file),
            c.source(Some("s")).ok(),
            c.retention.policy().unwrap(),
            c.objectives_of("s"),
            c.objectives_of("elsewhere"),
            &c.prune,
            &c.verify,
            alerts,
            &c.contacts,
            (&c.copies, c.replicate.options()),
            (
                schedule_of(c, "s"),
                c.sources["s"].continuous,
                c.sources["s"].slot_name(),
                c.sources["s"].slot_max_retained_bytes(),
            ),
            (
                &c.daemon.heartbeat_url,
                c.daemon.stop_timeout(),
                c.daemon.retries(),
                c.daemon.retry_delay(),
                c.daemon.status_interval(),
                c.daemon.session_timeout(),
                &c.daemon.users,
            ),
        )
    )
}

/// Source `name`'s schedule as the daemon reads it: every job's line, the time zone, the
/// jitter.
fn schedule_of(c: &Config, name: &str) -> (Vec<String>, String, std::time::Duration) {
    let sched = c.sources[name].schedule.clone().unwrap_or_default();
    let lines = crate::schedule::job_names()
        .map(|j| format!("{j}: {}", sched.line(j)))
        .collect();
    (lines, sched.timezone_name().to_string(), sched.jitter())
}

/// `text` with `value` (TOML) written at the documented `key`.
fn with(text: &str, key: &str, value: &str) -> String {
    let mut doc: toml::Table = toml::from_str(text).unwrap();
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .unwrap_or_else(|e| panic!("default of {key} is not TOML ({value}): {e}"))
        .remove("v")
        .expect("the value");
    let parts: Vec<&str> = key.split('.').collect();
    let mut table = &mut doc;
    for part in &parts[..parts.len() - 1] {
        let (name, array) = match part.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (*part, false),
        };
        let name = if *part == "NAME" { "s" } else { name };
        let entry = table
            .entry(name.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = if array {
            entry
                .as_array_mut()
                .and_then(|a| a.first_mut())
                .and_then(toml::Value::as_table_mut)
                .unwrap_or_else(|| panic!("{key}: the minimal config has one {name}"))
        } else {
            entry.as_table_mut().expect("a table")
        };
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    toml::to_string(&doc).unwrap()
}

#[test]
fn the_documented_defaults_are_the_defaults() {
    let path = Path::new("minimal.toml");
    let base = Config::parse(MINIMAL, path).unwrap();
    let mut tables: BTreeMap<String, Vec<Documented>> = BTreeMap::new();
    for d in documented() {
        if d.default.is_some() {
            let table = d
                .key
                .split(['.', '['])
                .next()
                .unwrap_or_default()
                .to_string();
            tables.entry(table).or_default().push(d);
        }
    }
    // The scan found the defaults the page states.
    assert!(
        tables.values().map(Vec::len).sum::<usize>() >= 15,
        "{:?}",
        tables.keys()
    );
    // A table's defaults written out together (a `[retention]` table is the whole policy:
    // one key alone would drop the others' defaults, which the next test pins).
    for (table, defaults) in &tables {
        let mut text = MINIMAL.to_string();
        for d in defaults {
            text = with(&text, &d.key, d.default.as_deref().expect("filtered"));
        }
        let written = Config::parse(&text, path).unwrap_or_else(|e| panic!("{table}: {e}"));
        let keys: Vec<&str> = defaults.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            resolved(&written),
            resolved(&base),
            "writing the documented defaults of {keys:?} changed the configuration:\n{text}"
        );
    }
    // And each default is one the code would otherwise not have: a different value changes
    // the configuration (else a default the code ignores would pass).
    for d in tables.values().flatten() {
        let other = match d.default.as_deref().expect("filtered") {
            "\"exact\"" => "\"estimate\"".to_string(),
            "\"json\"" => "\"slack\"".to_string(),
            "\"warning\"" => "\"critical\"".to_string(),
            "[]" => "[\"x\"]".to_string(),
            "\"UTC\"" => "\"Europe/Paris\"".to_string(),
            "\"after-backup\"" => "\"off\"".to_string(),
            v if v.contains('*') => "\"15 3 * * 1\"".to_string(),
            "0.5" => "0.25".to_string(),
            "\"1GiB\"" => "\"2GiB\"".to_string(),
            "\"5%\"" => "\"10%\"".to_string(),
            "false" => "true".to_string(),
            v if v.starts_with('{') => "{ x = \"1d\" }".to_string(),
            v if v.starts_with('"') => "\"3w\"".to_string(),
            v => format!("{}", v.parse::<u32>().expect("a count") + 1),
        };
        let changed = Config::parse(&with(MINIMAL, &d.key, &other), path)
            .unwrap_or_else(|e| panic!("{}: {e}", d.key));
        assert_ne!(
            resolved(&changed),
            resolved(&base),
            "{} = {other} changed nothing: is the key used?",
            d.key
        );
    }
}

#[test]
fn a_retention_table_is_the_whole_policy() {
    let path = Path::new("c.toml");
    let c = Config::parse("[retention]\nkeep_daily = 7\n", path).unwrap();
    let p = c.retention.policy().unwrap();
    assert_eq!(p.keep_daily, Some(7));
    assert_eq!((p.keep_weekly, p.keep_monthly), (None, None));
    assert_eq!(p.pitr_window, Some(crate::retention::DEFAULT_PITR_WINDOW));
    assert!(p.tag_within.iter().any(|(t, _)| t == "pre-migration"));
}
