//! Gathering the evidence monitoring judges: snapshots, journal records, the WAL archive's
//! newest files, when the server answers PostgreSQL's own archiver statistics, and how each
//! `[[copies]]` repository stands against this one.
//!
//! Owns every read `status` and `metrics` make (each copy is opened and listed once per
//! run, whatever the number of sources). Must not judge: what the evidence means is
//! [`super::evaluate`]'s, so that the rules run on constructed evidence in tests.

use crate::access::{Access, PasswordVariable};
use crate::config::Config;
use crate::copies::{Primary, SourceStanding, Standing};
pub use crate::engine::postgres::archiver::Archiver;
use crate::engine::postgres::timeline::judge::{self, Judged};
use crate::engine::postgres::timeline::server_timeline;
use crate::error::Result;
use crate::repository::Repository;
use crate::repository::archive::Archive;

use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::{BackupKind, Snapshot};
use crate::source::{Location, SourceMatch};
use std::collections::BTreeMap;

/// What one source's history holds.
#[derive(Clone, Debug)]
pub struct SourceEvidence {
    /// Its name (config name, or the URL identity its snapshots carry).
    pub name: String,
    /// Its snapshots, oldest first.
    pub snapshots: Vec<Snapshot>,
    /// Its journal records, oldest first.
    pub records: Vec<JournalRecord>,
    /// PostgreSQL's archiver, when the source is PostgreSQL with physical snapshots:
    /// `Ok` with what the server said, `Err` with why it could not be asked.
    pub archiver: Option<std::result::Result<Archiver, String>>,
    /// How each `[[copies]]` repository stands for this source, in config order.
    pub copies: Vec<SourceCopy>,
    /// Continuous capture (SQLite), when the source has a base snapshot: how current it is,
    /// or why its chain could not be listed.
    pub capture: Option<std::result::Result<crate::jobs::replicate::Standing, String>>,
    /// Whether the config asks for continuous capture of this SQLite source.
    pub continuous_sqlite: bool,
    /// The replication slot `wal receive` streams through, when the source is PostgreSQL,
    /// the servers were asked, and the config expects one (`continuous`, `slot`) or the
    /// source has physical snapshots.
    pub slot: Option<SlotEvidence>,
}

/// A source's replication slot as its server reports it.
#[derive(Clone, Debug)]
pub struct SlotEvidence {
    /// The slot's name.
    pub name: String,
    /// Whether the config expects it (`continuous = true`, or `slot` set): missing is then
    /// critical, and an unreachable server a warning.
    pub expected: bool,
    /// How much retained WAL warns (`slot_max_retained`).
    pub max_retained: u64,
    /// What the server said (`None`: no such slot), or why it could not be asked.
    pub state:
        std::result::Result<Option<crate::engine::postgres::receive::slot::SlotState>, String>,
}

/// One copy as one source sees it.
#[derive(Clone, Debug)]
pub struct SourceCopy {
    /// The copy's name ([`crate::config::CopyConfig::name`]).
    pub name: String,
    /// Its repository URL without credentials.
    pub repository: String,
    /// How it stands for the source, or the sentence saying why it could not be read.
    pub standing: std::result::Result<SourceStanding, String>,
}

/// One `[[copies]]` repository against this one.
#[derive(Clone, Debug)]
pub struct CopyEvidence {
    /// The copy's name.
    pub name: String,
    /// Its repository URL without credentials.
    pub repository: String,
    /// How it stands, or the sentence saying why it could not be opened or read.
    pub standing: std::result::Result<Standing, String>,
}

impl SourceEvidence {
    /// The figures of the source's newest drill, when it has one on record.
    pub fn last_drill(&self) -> Option<&crate::repository::journal::DrillFigures> {
        self.records
            .iter()
            .rev()
            .find(|r| r.job == "drill")
            .and_then(|r| r.drill.as_ref())
    }

    /// The WAL clusters (system identifiers) its physical snapshots belong to, newest first.
    pub fn clusters(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.snapshots.iter().rev() {
            if s.kind != BackupKind::Physical {
                continue;
            }
            let id = crate::engine::postgres::physical::PhysicalMetadata::of(s).system_identifier;
            if let Some(id) = id.filter(|id| !out.contains(id)) {
                out.push(id);
            }
        }
        out
    }
}

/// One cluster's WAL archive, judged on the source's timeline
/// ([`crate::engine::postgres::timeline::judge`]): a fork a side copy archives neither hides
/// a stopped source archive nor, left behind, raises an alarm.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct WalNewest {
    /// The newest segment on the source's timeline (or its past), empty when there is none.
    pub name: String,
    /// When the store says it was written.
    pub modified: Option<jiff::Timestamp>,
    /// WAL files archived for the cluster, on every timeline (origin records not counted).
    pub files: usize,
    /// Bytes they take in the repository.
    pub bytes: u64,
    /// The source's timeline as people read it, with how it is known.
    pub timeline: String,
    /// The forks, as people read them (where each branched, when it last archived).
    pub forks: Vec<String>,
}

/// Everything monitoring judges.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// Per source.
    pub sources: Vec<SourceEvidence>,
    /// Jobs of the whole repository (`check`, `forget`, `prune`, `repair`), oldest first.
    pub repository_jobs: Vec<JournalRecord>,
    /// Per cluster (system identifier).
    pub wal: BTreeMap<String, WalNewest>,
    /// Bytes the repository's objects take, when asked for.
    pub repository_bytes: Option<u64>,
    /// Ids of snapshot manifests that cannot be read (damaged).
    pub damaged_manifests: Vec<String>,
    /// Each `[[copies]]` repository, when asked for.
    pub copies: Vec<CopyEvidence>,
    /// What protects the repository (first) and each copy that could be opened, when asked
    /// for (`Scope::protection`).
    pub protection: Vec<super::protection::Protection>,
}

/// What to gather.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Only this source (any spelling of it).
    pub source: Option<String>,
    /// Ask PostgreSQL servers for their archiver statistics.
    pub ask_servers: bool,
    /// Add up the size of every object (one listing of the whole repository).
    pub repository_size: bool,
    /// Open every `[[copies]]` repository and compare it with this one.
    pub copies: bool,
    /// Read what protects the repository and its copies (`monitor::protection`: key slots,
    /// and with an object lock one HEAD per manifest).
    pub protection: bool,
}

/// Reads the evidence for the sources `scope` names: the configured sources, or when none
/// are configured every source the repository has snapshots of.
pub fn gather(repo: &Repository, config: &Config, scope: &Scope) -> Result<Evidence> {
    repo.require_full("read the journal and the snapshots status judges")?;
    // A damaged manifest is itself a finding, not a reason to say nothing.
    let (snapshots, damaged) = repo.snapshot_headers()?;
    let records = repo.journal_records()?;
    let mut names: Vec<String> = if config.sources.is_empty() {
        let mut n: Vec<String> = snapshots.iter().map(|s| s.source.clone()).collect();
        n.extend(
            records
                .iter()
                .filter(|r| r.job == "backup")
                .filter_map(|r| r.source.clone()),
        );
        n.sort();
        n.dedup();
        n
    } else {
        config.sources.keys().cloned().collect()
    };
    if let Some(wanted) = &scope.source {
        let m = config.source_match(wanted);
        names.retain(|n| m.matches(n));
        if names.is_empty() {
            names.push(wanted.clone());
        }
    }
    let mut sources = Vec::new();
    // What the sources' servers say their timeline is, by cluster.
    let mut servers = BTreeMap::new();
    for name in names {
        let m: SourceMatch = config.source_match(&name);
        let mut ev = SourceEvidence {
            snapshots: snapshots
                .iter()
                .filter(|s| {
                    m.matches(&s.source)
                        || s.source_location.as_deref().is_some_and(|l| m.matches(l))
                })
                .cloned()
                .collect(),
            records: records
                .iter()
                .filter(|r| r.source.as_deref().is_some_and(|s| m.matches(s)))
                .cloned()
                .collect(),
            archiver: None,
            copies: Vec::new(),
            slot: None,
            capture: None,
            continuous_sqlite: config.sources.get(&name).is_some_and(|s| {
                s.continuous
                    && matches!(
                        crate::source::parse_location(&s.url),
                        Some(Location::Sqlite(_))
                    )
            }),
            name,
        };
        ev.capture = crate::jobs::replicate::standing_of(
            repo,
            &ev.snapshots,
            &ev.name,
            jiff::Timestamp::now(),
        )
        .map_err(|e| e.to_string())
        .transpose();
        ev.snapshots.sort_by_key(|s| s.finished_at);
        let physical = ev.snapshots.iter().any(|s| s.kind == BackupKind::Physical);
        if scope.ask_servers
            && let Some(sc) = config.sources.get(&ev.name)
            && let Some(Location::Postgres(url)) = crate::source::parse_location(&sc.url)
        {
            let expected = sc.continuous || sc.slot.is_some();
            if expected || physical {
                let name = sc.slot_name().to_string();
                ev.slot = Some(SlotEvidence {
                    state: crate::engine::postgres::receive::slot::ask(&url, &name),
                    name,
                    expected,
                    max_retained: sc.slot_max_retained_bytes(),
                });
            }
        }
        if scope.ask_servers && physical {
            if let Ok(src) = config.source(Some(&ev.name)) {
                if let Location::Postgres(url) = &src.location {
                    let asked = crate::engine::postgres::archiver::ask(url);
                    // Only a server that answered is asked again, for its timeline.
                    for c in ev.clusters().iter().filter(|_| asked.is_ok()) {
                        servers.extend(server_timeline(url, c).map(|t| (c.clone(), t)));
                    }
                    ev.archiver = Some(asked);
                }
            }
        }
        sources.push(ev);
    }
    let repository_jobs = records
        .iter()
        .filter(|r| {
            r.source.is_none() || matches!(r.job.as_str(), "check" | "prune" | "forget" | "repair")
        })
        .cloned()
        .collect();
    let wanted: Vec<String> = sources.iter().flat_map(|s| s.clusters()).collect();
    let mut wal = BTreeMap::new();
    for cluster in Archive::clusters(repo)? {
        if !wanted.contains(&cluster) && scope.source.is_some() {
            continue;
        }
        let judged = judge::read(repo, &cluster, &snapshots, servers.get(&cluster).copied())?;
        if judged.view.files > 0 {
            wal.insert(cluster, wal_newest(&judged));
        }
    }
    let now = jiff::Timestamp::now();
    let mut protection = Vec::new();
    if scope.protection {
        let shown = crate::runbook::repository_without_credentials(repo.storage().url());
        protection.push(super::protection::of(
            repo,
            "repository",
            &shown,
            &snapshots,
            now,
        )?);
    }
    let copies = if scope.copies && !config.copies.is_empty() {
        read_copies(
            repo,
            config,
            &snapshots,
            scope.protection.then_some((&mut protection, now)),
        )?
    } else {
        Vec::new()
    };
    for s in &mut sources {
        let m = config.source_match(&s.name);
        let cluster = s.clusters().into_iter().next();
        s.copies = copies
            .iter()
            .map(|c| SourceCopy {
                name: c.name.clone(),
                repository: c.repository.clone(),
                standing: c.standing.as_ref().map_err(Clone::clone).map(|st| {
                    st.of_source(
                        |mark| {
                            m.matches(&mark.source)
                                || mark
                                    .source_location
                                    .as_deref()
                                    .is_some_and(|l| m.matches(l))
                        },
                        cluster.as_deref(),
                    )
                }),
            })
            .collect();
    }
    let repository_bytes = if scope.repository_size {
        Some(repo.storage().list("")?.iter().map(|o| o.size).sum())
    } else {
        None
    };
    Ok(Evidence {
        sources,
        repository_jobs,
        wal,
        repository_bytes,
        damaged_manifests: damaged.into_iter().map(|(id, _)| id).collect(),
        copies,
        protection,
    })
}

/// Opens each `[[copies]]` repository (with its entry's password settings, as `copy`
/// does) and compares it with `repo`, whose `snapshots` are already read: the primary's
/// WAL is listed once for all of them. A copy that cannot be opened or read is a sentence
/// naming it, not an error: the others, and the primary's own health, are still judged.
fn read_copies(
    repo: &Repository,
    config: &Config,
    snapshots: &[crate::repository::snapshot::Snapshot],
    mut protection: Option<(&mut Vec<super::protection::Protection>, jiff::Timestamp)>,
) -> Result<Vec<CopyEvidence>> {
    let primary = Primary::with_snapshots(repo, snapshots)?;
    Ok(config
        .copies
        .iter()
        .map(|c| {
            let name = c.name();
            let repository = c.repository_shown();
            let standing = Access::other(&c.repository, None, PasswordVariable::To, config)
                .open()
                .and_then(|copy| {
                    crate::copies::check_family(repo, &copy)?;
                    if let Some((out, now)) = protection.as_mut() {
                        // Its manifests' locks are read only when it has a lock.
                        let kept = match copy.config().object_lock {
                            Some(_) => copy.snapshot_headers()?.0,
                            None => Vec::new(),
                        };
                        out.push(super::protection::of(&copy, &name, &repository, &kept, *now)?);
                    }
                    primary.standing_of(&copy)
                })
                .map_err(|e| {
                    format!(
                        "copy {} cannot be read: {e}; check its [[copies]] entry (repository, password_file or password_command) and that its store is reachable, then run `strongroom copy`",
                        crate::copies::label(&name, &repository)
                    )
                });
            CopyEvidence {
                name,
                repository,
                standing,
            }
        })
        .collect())
}

/// What `status` judges of one cluster's archive: the newest segment on the source's line,
/// the source's timeline and the forks beside it.
fn wal_newest(j: &Judged) -> WalNewest {
    let (name, modified) = j
        .newest()
        .map_or((String::new(), None), |(n, t)| (n, Some(t)));
    let forks = j
        .forks()
        .into_iter()
        .map(|id| {
            let last = j.view.timelines[&id].segments.values().flatten().max();
            match last {
                Some(t) => format!(
                    "{}, last archived {}",
                    j.describe_fork(id),
                    t.strftime("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => j.describe_fork(id),
            }
        })
        .collect();
    WalNewest {
        name,
        modified,
        files: j.view.files,
        bytes: j.view.stored,
        timeline: j.describe_source(),
        forks,
    }
}
