//! `strongroom`: the command-line face of the strongroom library.
//!
//! Owns argument parsing, finding the repository, password and config, output formatting
//! (human text or `--json` on stdout; logs, progress and errors on stderr) and exit codes:
//! 0 success, 1 failure (one plain sentence on stderr first), 2 usage error. Holds no domain
//! logic: every operation is a call into the library.

mod progress;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use strongroom::config::Config;
use strongroom::crypto::KdfParams;
use strongroom::engine::{RestoreOptions, Target};
use strongroom::repository::Repository;
use strongroom::repository::snapshot::{Filter, Snapshot};
use strongroom::storage::Storage;
use strongroom::{Error, human_bytes};

const AFTER_HELP: &str = "\
Examples:
  export STRONGROOM_REPO=s3://hotel-backups/prod STRONGROOM_PASSWORD=…
  strongroom init
  strongroom backup sqlite:/var/lib/hotel/hotel.db --tag daily
  strongroom list
  strongroom verify latest
  strongroom restore latest --to /var/lib/hotel/hotel.db --force
  strongroom check --read-data
  strongroom demo

Exit codes: 0 success, 1 failure (a sentence on stderr says what and what to do), 2 usage error.
Environment: STRONGROOM_REPO, STRONGROOM_PASSWORD, STRONGROOM_CONFIG, AWS_* for S3, NO_COLOR.";

/// Encrypted, deduplicating, verified backups of SQLite and PostgreSQL databases.
#[derive(Parser)]
#[command(name = "strongroom", version, after_help = AFTER_HELP, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Repository URL: a path, file:///abs/path, s3://bucket/prefix, azblob://…, gs://…
    #[arg(long, global = true, env = "STRONGROOM_REPO", value_name = "URL")]
    repo: Option<String>,
    /// Read the repository password from the first line of FILE.
    #[arg(long, global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Configuration file (default: ./strongroom.toml when present).
    #[arg(long, global = true, env = "STRONGROOM_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print one JSON document on stdout instead of human text.
    #[arg(long, global = true)]
    json: bool,
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No progress bars.
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create a repository (encrypted unless --encryption none).
    #[command(after_help = "Example:\n  STRONGROOM_PASSWORD=… strongroom --repo /srv/backups init")]
    Init {
        /// `none` for an unencrypted repository (objects are still checksummed).
        #[arg(long, value_parser = ["none", "xchacha20poly1305"], default_value = "xchacha20poly1305")]
        encryption: String,
    },
    /// Take a snapshot of a source.
    #[command(
        after_help = "Examples:\n  strongroom backup sqlite:hotel.db --tag daily\n  strongroom backup hotel --tag pre-migration   # a [sources.hotel] from the config\n  strongroom backup postgres://app@db:5432/hotel?sslmode=require\n\nPostgreSQL: the password comes from the URL, PGPASSWORD or ~/.pgpass and reaches pg_dump\nonly through its environment; it is never recorded. pg_dump is searched in\nSTRONGROOM_PG_BINDIR, /usr/lib/postgresql/*/bin, pg_config --bindir and PATH; the oldest\none at least as new as the server is used."
    )]
    Backup {
        /// A configured source name, sqlite:PATH or postgres://… (default: the only configured source).
        source: Option<String>,
        /// full (SQLite), logical or physical (PostgreSQL).
        #[arg(long, value_parser = ["full", "logical", "physical"])]
        kind: Option<String>,
        /// Tag the snapshot (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
    /// List snapshots, oldest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Show one snapshot.
    Show {
        /// Snapshot id, unique prefix (6+ characters) or `latest`.
        reference: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Restore a snapshot.
    #[command(
        after_help = "Examples:\n  strongroom restore latest --to hotel.db\n  strongroom restore 3fa4c1 --to /var/lib/hotel/hotel.db --force --keep-old\n  strongroom restore latest --source prod --target-db postgres://app@db/hotel --force\n\nPostgreSQL: the snapshot is restored into a new database beside the target and checked\n(row counts); then the source's before_restore hook runs, the old database is renamed\naside, the new one renamed into place, after_restore runs, and the old one is dropped\n(kept with --keep-old, and when after_restore fails)."
    )]
    Restore {
        /// Snapshot id, unique prefix (6+ characters) or `latest`.
        reference: String,
        /// SQLite: the database file to write.
        #[arg(long, value_name = "PATH")]
        to: Option<PathBuf>,
        /// PostgreSQL logical: the database to restore into.
        #[arg(long, value_name = "URL")]
        target_db: Option<String>,
        /// Replace an existing target (the old data is kept aside until the restore succeeded).
        #[arg(long)]
        force: bool,
        /// With --force: keep the replaced data aside after success.
        #[arg(long)]
        keep_old: bool,
        /// Run SQLite's full `PRAGMA integrity_check` (slow: ~30 s/GB) instead of `quick_check`.
        #[arg(long)]
        full_check: bool,
        /// PostgreSQL: parallel pg_restore jobs (default: one per core; 1 streams without a
        /// temporary file).
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Prove snapshots restore: test-restore each, check integrity, row counts and configured checks.
    #[command(
        after_help = "Examples:\n  strongroom verify            # the latest snapshot\n  strongroom verify --all --json"
    )]
    Verify {
        /// Snapshot id, unique prefix or `latest` (default).
        reference: Option<String>,
        /// Verify every snapshot (that matches --source/--tag).
        #[arg(long, conflicts_with = "reference")]
        all: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Check the repository's consistency; --read-data also reads and authenticates every object.
    Check {
        /// Read and authenticate every stored object.
        #[arg(long)]
        read_data: bool,
    },
    /// Manage the passwords (key slots) that open the repository.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// The whole story on an embedded hotel database and a local repository.
    Demo {
        /// Where to run (made fresh).
        #[arg(long, default_value = "strongroom-demo")]
        dir: PathBuf,
        /// Bookings in the generated database.
        #[arg(long, default_value_t = 300_000)]
        bookings: u64,
    },
    /// Test and benchmark helpers: hotel databases.
    #[command(hide = true)]
    Hotel {
        #[command(subcommand)]
        action: HotelAction,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Add a password; the new one is read from the first line of FILE.
    Add {
        /// File holding the new password.
        #[arg(long, value_name = "FILE")]
        new_password_file: PathBuf,
        /// A label for the slot (who or what it is for).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List key slots.
    List,
}

#[derive(Subcommand)]
enum HotelAction {
    /// Create a hotel database.
    Generate {
        path: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        bookings: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Print SQL that creates and fills a PostgreSQL hotel database (pipe it into psql).
    PostgresSql {
        #[arg(long, default_value_t = 100_000)]
        bookings: u64,
        /// Instead: print SQL updating this fraction of the bookings.
        #[arg(long)]
        update: Option<f64>,
    },
    /// Update a fraction of bookings at random.
    Update {
        path: PathBuf,
        #[arg(long, default_value_t = 0.01)]
        fraction: f64,
        #[arg(long, default_value_t = 2)]
        seed: u64,
    },
}

#[derive(Args, Clone)]
struct FilterArgs {
    /// Only snapshots of this source.
    #[arg(long, value_name = "S")]
    source: Option<String>,
    /// Only snapshots with this tag (repeatable: all must match).
    #[arg(long = "tag", value_name = "T")]
    tags: Vec<String>,
}

impl FilterArgs {
    fn filter(&self) -> Filter {
        Filter {
            source: self.source.clone(),
            tags: self.tags.clone(),
        }
    }
}

struct Ctx {
    global: Global,
    config: Config,
    progress: progress::Bars,
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

fn read_password_file(path: &Path) -> Result<String> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read password file {}: {e}", path.display()))?;
    Ok(first_line(&s))
}

impl Ctx {
    fn repo_url(&self) -> Result<String> {
        self.global.repo.clone().or_else(|| self.config.repository.clone()).ok_or_else(|| {
            anyhow!("no repository given: pass --repo URL, set STRONGROOM_REPO, or set `repository` in strongroom.toml")
        })
    }

    fn password(&self) -> Result<Option<String>> {
        if let Some(f) = &self.global.password_file {
            return read_password_file(f).map(Some);
        }
        if let Ok(p) = std::env::var("STRONGROOM_PASSWORD") {
            return Ok(Some(p));
        }
        if let Some(f) = &self.config.password_file {
            return read_password_file(f).map(Some);
        }
        if let Some(cmd) = &self.config.password_command {
            let out = std::process::Command::new("sh")
                .args(["-c", cmd])
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| anyhow!("cannot run password_command: {e}"))?;
            if !out.status.success() {
                bail!(
                    "password_command failed ({}); check the command in the config",
                    out.status
                );
            }
            return Ok(Some(first_line(&String::from_utf8_lossy(&out.stdout))));
        }
        Ok(None)
    }

    fn storage(&self) -> Result<Storage> {
        Ok(Storage::from_url(&self.repo_url()?)?)
    }

    fn open(&self) -> Result<Repository> {
        let pw = self.password()?;
        Ok(Repository::open(
            self.storage()?,
            pw.as_deref().map(str::as_bytes),
        )?)
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn fmt_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn print_snapshot(s: &Snapshot) {
    println!("snapshot {}", s.id);
    println!("  source      {} ({} {})", s.source, s.engine, s.kind);
    if !s.tags.is_empty() {
        println!("  tags        {}", s.tags.join(", "));
    }
    let secs = (s.finished_at - s.started_at)
        .total(jiff::Unit::Second)
        .unwrap_or(0.0);
    println!(
        "  taken       {} UTC ({secs:.1} s) on {}",
        fmt_time(s.started_at),
        s.hostname
    );
    println!(
        "  size        {} ({} added to the repository)",
        human_bytes(s.size),
        human_bytes(s.added)
    );
    println!("  version     {}", s.metadata.server_version);
    println!(
        "  schema      {}",
        s.metadata.schema_version.as_deref().unwrap_or("-")
    );
    let width = s
        .metadata
        .extra
        .keys()
        .map(|k| k.len())
        .max()
        .unwrap_or(0)
        .max(11);
    for (k, v) in &s.metadata.extra {
        let shown = match v {
            serde_json::Value::String(t) => t.clone(),
            serde_json::Value::Number(n) if k.ends_with("_size") => {
                human_bytes(n.as_u64().unwrap_or(0))
            }
            other => other.to_string(),
        };
        println!("  {k:<width$} {shown}");
    }
    println!("  row counts");
    for (t, n) in &s.metadata.row_counts {
        println!("    {t:<28} {n:>12}");
    }
}

fn resolve(repo: &Repository, reference: &str, filter: &FilterArgs) -> Result<Snapshot> {
    Ok(repo.resolve(reference, &filter.filter())?)
}

fn run(cli: Cli) -> Result<()> {
    let config_path = cli.global.config.clone().or_else(|| {
        let p = PathBuf::from("strongroom.toml");
        p.exists().then_some(p)
    });
    let config = match &config_path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let ctx = Ctx {
        progress: progress::Bars::new(!cli.global.quiet),
        global: cli.global,
        config,
    };
    let json = ctx.global.json;
    match cli.command {
        Command::Init { encryption } => {
            let storage = ctx.storage()?;
            let pw = if encryption == "none" {
                None
            } else {
                Some(ctx.password()?.ok_or_else(|| {
                    anyhow!("init needs a password for the new repository: set STRONGROOM_PASSWORD, --password-file or password_command (or pass --encryption none)")
                })?)
            };
            let repo = Repository::init(
                storage,
                pw.as_deref().map(str::as_bytes),
                KdfParams::default(),
            )?;
            if json {
                print_json(
                    &serde_json::json!({"repository": repo.storage().url(), "id": repo.config().id, "encryption": repo.config().encryption}),
                )?;
            } else {
                eprintln!(
                    "created {} repository {} at {}",
                    repo.config().encryption,
                    repo.config().id,
                    repo.storage().url()
                );
            }
        }
        Command::Backup { source, kind, tags } => {
            let repo = ctx.open()?;
            let src = ctx.config.source(source.as_deref())?;
            let opts = strongroom::backup::BackupOptions { tags, kind };
            let snap = strongroom::backup::run(&repo, &src, &opts, &ctx.progress)?;
            if json {
                print_json(&snap.summary())?;
            } else {
                let secs = (snap.finished_at - snap.started_at)
                    .total(jiff::Unit::Second)
                    .unwrap_or(0.0);
                println!(
                    "snapshot {} saved: {} of {}, {} added, {secs:.2} s",
                    snap.short_id(),
                    snap.source,
                    human_bytes(snap.size),
                    human_bytes(snap.added)
                );
            }
        }
        Command::List { filter } => {
            let repo = ctx.open()?;
            let f = filter.filter();
            let (all, damaged) = repo.snapshots_lenient()?;
            let snaps: Vec<Snapshot> = all.into_iter().filter(|s| f.matches(s)).collect();
            if json {
                print_json(&snaps.iter().map(Snapshot::summary).collect::<Vec<_>>())?;
            } else if snaps.is_empty() {
                eprintln!("no snapshots");
            } else {
                let w = snaps
                    .iter()
                    .map(|s| s.source.len())
                    .max()
                    .unwrap_or(0)
                    .max(6);
                println!(
                    "{:<8}  {:<19}  {:<w$}  {:<8}  {:>10}  {:>10}  tags",
                    "id", "taken (UTC)", "source", "kind", "size", "added"
                );
                for s in &snaps {
                    println!(
                        "{:<8}  {:<19}  {:<w$}  {:<8}  {:>10}  {:>10}  {}",
                        s.short_id(),
                        fmt_time(s.started_at),
                        s.source,
                        s.kind,
                        human_bytes(s.size),
                        human_bytes(s.added),
                        s.tags.join(",")
                    );
                }
                println!("{} snapshot(s)", snaps.len());
            }
            if let Some((id, e)) = damaged.first() {
                for (_, e) in &damaged {
                    eprintln!("damaged: {e}");
                }
                bail!(
                    "{} snapshot manifest(s) could not be read, first {}: {e}; the snapshots listed are intact, run `strongroom check` for the full picture",
                    damaged.len(),
                    &id[..8.min(id.len())]
                );
            }
        }
        Command::Show { reference, filter } => {
            let repo = ctx.open()?;
            let s = resolve(&repo, &reference, &filter)?;
            if json {
                print_json(&s.summary())?;
            } else {
                print_snapshot(&s);
            }
        }
        Command::Restore {
            reference,
            to,
            target_db,
            force,
            keep_old,
            full_check,
            jobs,
            filter,
        } => {
            let repo = ctx.open()?;
            let s = resolve(&repo, &reference, &filter)?;
            let target = match (s.engine.as_str(), to, target_db) {
                ("sqlite", Some(p), None) => Target::File(p),
                ("sqlite", _, _) => bail!(
                    "snapshot {} is a SQLite snapshot: give the file to write with --to PATH",
                    s.short_id()
                ),
                ("postgres", None, Some(url)) if s.kind == "logical" => Target::Database(url),
                ("postgres", _, _) if s.kind == "logical" => bail!(
                    "snapshot {} is a logical PostgreSQL snapshot: give the database with --target-db postgres://…",
                    s.short_id()
                ),
                (e, _, _) => bail!(
                    "restoring {e} {} snapshots is not available in this build",
                    s.kind
                ),
            };
            let source = ctx.config.source_for(&s.source);
            if matches!(target, Target::Database(_)) {
                strongroom::scratch::install_interrupt_cleanup();
            }
            let t = std::time::Instant::now();
            let out = strongroom::restore::run(
                &repo,
                &s,
                &target,
                &RestoreOptions {
                    force,
                    keep_old,
                    full_check,
                    jobs,
                    before_restore: source.as_ref().and_then(|s| s.before_restore.clone()),
                    after_restore: source.as_ref().and_then(|s| s.after_restore.clone()),
                },
                &ctx.progress,
            )?;
            if json {
                print_json(
                    &serde_json::json!({"snapshot": s.id, "target": out.target, "bytes": out.bytes,
                    "seconds": t.elapsed().as_secs_f64(), "old_kept_at": out.old_kept_at, "moved_aside": out.moved_aside}),
                )?;
            } else {
                let checked = match (s.engine.as_str(), full_check) {
                    ("sqlite", true) => "integrity_check ok",
                    ("sqlite", false) => "quick_check ok",
                    _ => "row counts match the snapshot",
                };
                println!(
                    "restored snapshot {} to {} ({}, {checked}) in {:.2} s",
                    s.short_id(),
                    out.target,
                    human_bytes(out.bytes),
                    t.elapsed().as_secs_f64()
                );
                if let Some(old) = &out.old_kept_at {
                    println!("the previous database is kept at {old}");
                }
                for m in &out.moved_aside {
                    eprintln!(
                        "note: moved a stray file aside to {m} (SQLite would have replayed it into the restored database)"
                    );
                }
            }
        }
        Command::Verify {
            reference,
            all,
            filter,
        } => {
            let repo = ctx.open()?;
            let snaps = if all {
                let f = filter.filter();
                let v: Vec<Snapshot> = repo
                    .snapshots()?
                    .into_iter()
                    .filter(|s| f.matches(s))
                    .collect();
                if v.is_empty() {
                    bail!("no snapshots to verify");
                }
                v
            } else {
                vec![resolve(
                    &repo,
                    reference.as_deref().unwrap_or("latest"),
                    &filter,
                )?]
            };
            let scratch = strongroom::engine::Scratch {
                dir: ctx
                    .config
                    .verify
                    .scratch_dir
                    .clone()
                    .unwrap_or_else(std::env::temp_dir),
                postgres: ctx.config.verify.scratch_postgres.clone(),
            };
            strongroom::scratch::install_interrupt_cleanup();
            let report = strongroom::verify::run(
                &repo,
                &snaps,
                &|src| ctx.config.source_for(src),
                &scratch,
                &ctx.progress,
            )?;
            if json {
                print_json(&report)?;
            } else {
                for s in &report.snapshots {
                    println!(
                        "snapshot {}: {} (test restore {:.2} s)",
                        &s.id[..8],
                        if s.ok { "ok" } else { "FAILED" },
                        s.restore_seconds
                    );
                    for c in &s.checks {
                        println!(
                            "  [{}] {}: {}",
                            if c.ok { "ok" } else { "FAIL" },
                            c.name,
                            c.detail
                        );
                    }
                }
            }
            if !report.ok {
                let bad: Vec<&str> = report
                    .snapshots
                    .iter()
                    .filter(|s| !s.ok)
                    .map(|s| &s.id[..8])
                    .collect();
                bail!(
                    "verification failed for snapshot(s) {}; see the checks above",
                    bad.join(", ")
                );
            }
        }
        Command::Check { read_data } => {
            let repo = ctx.open()?;
            let report = strongroom::check::run(&repo, read_data, &ctx.progress)?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "{} snapshot(s), {} pack(s), {} chunk(s){}",
                    report.snapshots,
                    report.packs,
                    report.chunks,
                    if read_data {
                        format!(
                            ", {} read and authenticated",
                            human_bytes(report.bytes_read)
                        )
                    } else {
                        String::new()
                    }
                );
                for p in &report.problems {
                    let affects = if p.snapshots.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (affects snapshot(s) {})",
                            p.snapshots
                                .iter()
                                .map(|s| &s[..8.min(s.len())])
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    eprintln!("damaged: {}: {}{affects}", p.object, p.detail);
                }
            }
            if !report.ok {
                let p = &report.problems[0];
                bail!(
                    "the repository has {} problem(s), first: {} ({}); restore affected snapshots from another copy or take new backups",
                    report.problems.len(),
                    p.object,
                    p.detail
                );
            } else if !json {
                println!("no problems found");
            }
        }
        Command::Key { action } => {
            let repo = ctx.open()?;
            match action {
                KeyAction::Add {
                    new_password_file,
                    label,
                } => {
                    let pw = read_password_file(&new_password_file)?;
                    if pw.is_empty() {
                        bail!(
                            "the new password in {} is empty",
                            new_password_file.display()
                        );
                    }
                    let name = repo.add_password(pw.as_bytes(), KdfParams::default(), &label)?;
                    eprintln!("added key slot {name}");
                }
                KeyAction::List => {
                    let slots = repo.storage().list("keys/")?;
                    if json {
                        print_json(
                            &slots
                                .iter()
                                .map(|s| s.key.trim_start_matches("keys/"))
                                .collect::<Vec<_>>(),
                        )?;
                    } else {
                        for s in slots {
                            println!("{}", s.key.trim_start_matches("keys/"));
                        }
                    }
                }
            }
        }
        Command::Demo { dir, bookings } => {
            let mut say = |line: &str| println!("{line}");
            let s = strongroom::demo::run(&dir, bookings, &mut say, &ctx.progress)?;
            if json {
                print_json(&s)?;
            } else {
                println!();
                println!("Summary");
                println!(
                    "  {:<28} {:>10} {:>10} {:>8}",
                    "backup", "size", "added", "seconds"
                );
                for b in &s.backups {
                    println!(
                        "  {:<28} {:>10} {:>10} {:>8.2}",
                        b.label,
                        human_bytes(b.size),
                        human_bytes(b.added),
                        b.seconds
                    );
                }
                let later: u64 = s.backups.iter().skip(1).map(|b| b.added).sum();
                let first = s.backups.first().map(|b| b.added).unwrap_or(1).max(1);
                println!(
                    "  later backups together added {} ({:.1}% of the first)",
                    human_bytes(later),
                    later as f64 * 100.0 / first as f64
                );
                println!(
                    "  repository on disk {}; verify {:.2} s; restore {:.2} s; counts match: {}",
                    human_bytes(s.repository_bytes),
                    s.verify_seconds,
                    s.restore_seconds,
                    s.counts_match
                );
                println!(
                    "  demo finished in {:.1} s; everything is in {}",
                    s.total_seconds,
                    s.dir.display()
                );
            }
        }
        Command::Hotel { action } => match action {
            HotelAction::Generate {
                path,
                bookings,
                seed,
            } => {
                strongroom::hotel::create(
                    &path,
                    strongroom::hotel::Scale::bookings(bookings),
                    seed,
                )
                .with_context(|| format!("generating {}", path.display()))?;
            }
            HotelAction::PostgresSql { bookings, update } => match update {
                Some(f) => println!("{}", strongroom::hotel::postgres_update_sql(f)),
                None => println!(
                    "{}",
                    strongroom::hotel::postgres_sql(strongroom::hotel::Scale::bookings(bookings))
                ),
            },
            HotelAction::Update {
                path,
                fraction,
                seed,
            } => {
                let mut c = rusqlite::Connection::open(&path)?;
                let n = strongroom::hotel::update_random_bookings(&mut c, fraction, seed)?;
                c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
                eprintln!("updated {n} bookings");
            }
        },
    }
    Ok(())
}

fn init_logs(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    // Other crates stay quiet unless asked: OpenDAL logs every retry with a backtrace.
    let default = match verbose {
        0 => "strongroom=warn,strongroom_cli=warn",
        1 => "strongroom=info,strongroom_cli=info",
        2 => "strongroom=debug,strongroom_cli=debug,opendal=info",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_env("STRONGROOM_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!no_color && std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() {
    let cli = Cli::parse();
    init_logs(cli.global.verbose);
    let result = run(cli);
    // A signal may have cut the work short: its cleanups finish before any exit.
    if let Some(code) = strongroom::scratch::settle() {
        std::process::exit(code);
    }
    if let Err(e) = result {
        let msg = match e.downcast_ref::<Error>() {
            Some(err) => err.to_string(),
            None => e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": "),
        };
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        if !no_color && std::io::stderr().is_terminal() {
            eprintln!("\x1b[31mstrongroom:\x1b[0m {msg}");
        } else {
            eprintln!("strongroom: {msg}");
        }
        std::process::exit(1);
    }
}
