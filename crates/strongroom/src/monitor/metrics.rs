//! `strongroom metrics`: the evidence as Prometheus text exposition format.
//!
//! Owns metric names, labels and the text format (for node_exporter's textfile collector:
//! run `strongroom metrics > /var/lib/node_exporter/strongroom.prom.tmp && mv …` from cron).
//! Times are exported as Unix timestamps (`*_timestamp_seconds`), so an alert rule computes
//! ages at query time however late the file was scraped; ages as of the run are exported
//! too, for dashboards. Must not judge: levels come from [`super::evaluate`].

use super::evidence::Evidence;
use super::{Health, Level};
use crate::config::Config;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One metric family being built.
struct Family {
    help: &'static str,
    kind: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// Metric families by name, rendered in name order.
#[derive(Default)]
struct Families(BTreeMap<&'static str, Family>);

impl Families {
    fn add(
        &mut self,
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        value: f64,
    ) {
        self.0
            .entry(name)
            .or_insert_with(|| Family {
                help,
                kind,
                samples: Vec::new(),
            })
            .samples
            .push((labels, value));
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.0 {
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            for (labels, value) in &f.samples {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape(v));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", number(*value));
            }
        }
        out
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn secs(t: jiff::Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// Renders the metrics of `ev` (and the levels of `health`) as of `now`.
pub fn render(config: &Config, ev: &Evidence, health: &Health, now: jiff::Timestamp) -> String {
    let mut m = Families::default();
    let age = |t: jiff::Timestamp| super::since(t, now).as_secs_f64();
    for h in &health.sources {
        let level = match h.level {
            Level::Ok => 0.0,
            Level::Warning => 1.0,
            Level::Critical => 2.0,
        };
        m.add(
            "strongroom_status_level",
            "gauge",
            "Health of the source: 0 ok, 1 warning, 2 critical (see strongroom status).",
            vec![("source", h.source.clone())],
            level,
        );
    }
    for s in &ev.sources {
        let src = || ("source", s.name.clone());
        let obj = config.objectives_of(&s.name);
        m.add(
            "strongroom_objective_rpo_seconds",
            "gauge",
            "Recovery point objective of the source.",
            vec![src()],
            obj.rpo.as_secs_f64(),
        );
        m.add(
            "strongroom_objective_rto_seconds",
            "gauge",
            "Recovery time objective of the source.",
            vec![src()],
            obj.rto.as_secs_f64(),
        );
        let mut kinds: Vec<String> = s.snapshots.iter().map(|x| x.kind.to_string()).collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            let of_kind: Vec<_> = s
                .snapshots
                .iter()
                .filter(|x| x.kind.to_string() == kind)
                .collect();
            let labels = || vec![src(), ("kind", kind.clone())];
            m.add(
                "strongroom_snapshots",
                "gauge",
                "Snapshots in the repository.",
                labels(),
                of_kind.len() as f64,
            );
            let Some(newest) = of_kind.last() else {
                continue;
            };
            m.add(
                "strongroom_last_success_timestamp_seconds",
                "gauge",
                "When the newest snapshot finished (Unix time).",
                labels(),
                secs(newest.finished_at),
            );
            m.add(
                "strongroom_last_success_age_seconds",
                "gauge",
                "Age of the newest snapshot when these metrics were written.",
                labels(),
                age(newest.finished_at),
            );
            m.add(
                "strongroom_last_snapshot_size_bytes",
                "gauge",
                "Bytes of data the newest snapshot holds, before dedup and compression.",
                labels(),
                newest.size as f64,
            );
            m.add(
                "strongroom_last_snapshot_added_bytes",
                "gauge",
                "Bytes the newest snapshot added to the repository.",
                labels(),
                newest.added as f64,
            );
            let job = s
                .records
                .iter()
                .rev()
                .find(|r| r.job == "backup" && r.ok && r.kind.as_deref() == Some(&kind));
            let seconds = job.map_or_else(
                || super::since(newest.started_at, newest.finished_at).as_secs_f64(),
                |r| r.seconds,
            );
            m.add(
                "strongroom_last_backup_duration_seconds",
                "gauge",
                "How long the newest successful backup took.",
                labels(),
                seconds,
            );
        }
        if let Some(Ok(a)) = &s.archiver {
            m.add(
                "strongroom_pg_archiver_failed_count",
                "gauge",
                "pg_stat_archiver.failed_count of the source's server.",
                vec![src()],
                a.failed_count as f64,
            );
            m.add(
                "strongroom_pg_archiver_failing",
                "gauge",
                "Whether the server's archiver failed since it last archived a file (1) or not (0).",
                vec![src()],
                f64::from(u8::from(a.failing())),
            );
        }
        if let Some(Ok(c)) = &s.capture {
            m.add(
                "strongroom_recovery_point_timestamp_seconds",
                "gauge",
                "Everything committed before this time (Unix) is stored: continuous capture's recovery point.",
                vec![src()],
                secs(c.point()),
            );
            m.add(
                "strongroom_capture_lag_seconds",
                "gauge",
                "Seconds of commits a loss would cost when these metrics were written (continuous capture).",
                vec![src()],
                age(c.point()),
            );
            m.add(
                "strongroom_capture_segments_last_day",
                "gauge",
                "Captured segments stored in the last 24 hours (one request each).",
                vec![src()],
                c.segments_last_day as f64,
            );
            if let Some(p) = &c.pulse {
                m.add(
                    "strongroom_capture_wal_bytes",
                    "gauge",
                    "Size of the SQLite -wal file, as this host's replicator last saw it.",
                    vec![src()],
                    p.wal_bytes as f64,
                );
                m.add(
                    "strongroom_capture_requests_total",
                    "counter",
                    "Requests this host's replicator made to the store since it started.",
                    vec![src()],
                    p.requests as f64,
                );
            }
        }
        for cluster in s.clusters() {
            let Some(w) = ev.wal.get(&cluster) else {
                continue;
            };
            let labels = || vec![src(), ("cluster", cluster.clone())];
            if let Some(t) = w.modified {
                m.add(
                    "strongroom_wal_last_archived_timestamp_seconds",
                    "gauge",
                    "When the newest WAL file was archived (Unix time).",
                    labels(),
                    secs(t),
                );
                m.add(
                    "strongroom_wal_archive_age_seconds",
                    "gauge",
                    "Age of the newest archived WAL file when these metrics were written.",
                    labels(),
                    age(t),
                );
            }
            m.add(
                "strongroom_wal_archived_files",
                "gauge",
                "WAL files in the repository's archive.",
                labels(),
                w.files as f64,
            );
            m.add(
                "strongroom_wal_archived_bytes",
                "gauge",
                "Bytes the WAL archive takes in the repository.",
                labels(),
                w.bytes as f64,
            );
        }
        for (job, metric_ts, metric_ok, help_ts, help_ok) in [
            (
                "verify",
                "strongroom_verify_last_success_timestamp_seconds",
                "strongroom_verify_last_ok",
                "When the newest successful verify finished (Unix time).",
                "Whether the newest verify succeeded (1) or failed (0).",
            ),
            (
                "drill",
                "strongroom_drill_last_success_timestamp_seconds",
                "strongroom_drill_last_ok",
                "When the newest successful drill finished (Unix time).",
                "Whether the newest drill succeeded (1) or failed (0).",
            ),
        ] {
            let of_job = || s.records.iter().rev().filter(|r| r.job == job);
            if let Some(r) = of_job().find(|r| r.ok) {
                m.add(
                    metric_ts,
                    "gauge",
                    help_ts,
                    vec![src()],
                    secs(r.finished_at),
                );
            }
            if let Some(r) = of_job().next() {
                m.add(
                    metric_ok,
                    "gauge",
                    help_ok,
                    vec![src()],
                    f64::from(u8::from(r.ok)),
                );
            }
        }
        if let Some(f) = s.last_drill() {
            m.add(
                "strongroom_drill_rto_seconds",
                "gauge",
                "Recovery time the newest drill measured.",
                vec![src()],
                f.rto_seconds,
            );
            if let Some(rpo) = f.rpo_seconds {
                m.add(
                    "strongroom_drill_rpo_seconds",
                    "gauge",
                    "Data-loss window the newest drill measured.",
                    vec![src()],
                    rpo,
                );
            }
        }
        for c in &s.copies {
            let Ok(st) = &c.standing else {
                continue;
            };
            let labels = || vec![src(), ("copy", c.name.clone())];
            m.add(
                "strongroom_copy_lag_seconds",
                "gauge",
                "How long the copy has lacked a snapshot or WAL of the source that the repository has (0 when level).",
                labels(),
                st.lag(now).as_secs_f64(),
            );
            m.add(
                "strongroom_copy_snapshots_missing",
                "gauge",
                "Snapshots of the source the copy lacks (less those its own retention removed).",
                labels(),
                st.snapshots_missing as f64,
            );
        }
        let mut counts: BTreeMap<(String, bool), u64> = BTreeMap::new();
        for r in &s.records {
            *counts.entry((r.job.clone(), r.ok)).or_default() += 1;
        }
        for ((job, ok), n) in counts {
            m.add(
                "strongroom_jobs_total",
                "counter",
                "Jobs on record in the journal, by job and result.",
                vec![
                    src(),
                    ("job", job),
                    ("result", if ok { "success" } else { "failure" }.into()),
                ],
                n as f64,
            );
        }
    }
    let checks = || ev.repository_jobs.iter().rev().filter(|r| r.job == "check");
    if let Some(r) = checks().find(|r| r.ok) {
        m.add(
            "strongroom_check_last_success_timestamp_seconds",
            "gauge",
            "When the newest successful repository check finished (Unix time).",
            vec![],
            secs(r.finished_at),
        );
    }
    if let Some(r) = checks().next() {
        m.add(
            "strongroom_check_last_ok",
            "gauge",
            "Whether the newest repository check succeeded (1) or failed (0).",
            vec![],
            f64::from(u8::from(r.ok)),
        );
    }
    for c in &ev.copies {
        m.add(
            "strongroom_copy_readable",
            "gauge",
            "Whether the copy could be opened and listed (1) or not (0).",
            vec![("copy", c.name.clone())],
            f64::from(u8::from(c.standing.is_ok())),
        );
    }
    if let Some(b) = ev.repository_bytes {
        m.add(
            "strongroom_repository_size_bytes",
            "gauge",
            "Bytes every object of the repository takes in its store.",
            vec![],
            b as f64,
        );
    }
    m.add(
        "strongroom_metrics_timestamp_seconds",
        "gauge",
        "When these metrics were written (Unix time).",
        vec![],
        secs(now),
    );
    m.render()
}
