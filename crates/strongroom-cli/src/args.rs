//! The command line's shape: every command, flag and help text, as clap definitions.
//!
//! Owns what a user can type and what `--help` says (with examples), nothing else: each
//! command's work is in `commands/`. Global options are flagged `global = true` so they are
//! accepted after the command too.
//!
//! Each group of options is written once: a command with more than one option has its own
//! `…Args` struct here (a tuple variant of [`Command`]), which its handler takes whole; a
//! command with one keeps it inline. Groups that several commands share ([`FilterArgs`],
//! [`PruneLimits`], the library's `KeepRules`, [`RecoveryPointArgs`] inside restore's) are
//! flattened into them, never repeated.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use strongroom::config::Config;
use strongroom::repository::snapshot::Filter;

const AFTER_HELP: &str = "\
Examples:
  export STRONGROOM_REPO=s3://hotel-backups/prod STRONGROOM_PASSWORD=…
  strongroom init
  strongroom backup sqlite:/var/lib/hotel/hotel.db --tag daily
  strongroom list
  strongroom verify latest
  strongroom restore latest --to /var/lib/hotel/hotel.db --force
  strongroom check --read-data
  strongroom status                 # can we recover, and how much would we lose (exit 1: attention)
  strongroom drill                  # a timed recovery rehearsal against the RTO and RPO
  strongroom runbook > RUNBOOK.md   # the emergency procedure for this deployment
  strongroom copy --to s3://offsite/hotel   # a second copy elsewhere (made with init --copy-of)
  strongroom demo

Exit codes: 0 success, 1 failure (a sentence on stderr says what and what to do; for status:
something needs attention), 2 usage error.
Environment (every variable strongroom reads):
  STRONGROOM_REPO, STRONGROOM_PASSWORD_FILE, STRONGROOM_CONFIG: as --repo, --password-file,
    --config; STRONGROOM_PASSWORD: the password itself
  STRONGROOM_FROM_PASSWORD: the password of the repository init --copy-of copies;
    STRONGROOM_TO_PASSWORD: the password of the repository copy writes to
  STRONGROOM_STATE_DIR, STRONGROOM_CACHE_DIR: local state and index cache (default under
    XDG_STATE_HOME and XDG_CACHE_HOME, else HOME)
  STRONGROOM_LOG: log filter (e.g. strongroom=debug); NO_COLOR: no colours; COLUMNS: help
    width when not on a terminal
  STRONGROOM_PG_BINDIR: PostgreSQL programs (else Debian's, pg_config --bindir, then PATH)
  STRONGROOM_FETCH_RETRIES (4), STRONGROOM_FETCH_AHEAD (4): wal fetch's tries and read-ahead
  STRONGROOM_ALERT_REPEAT (1h): how long a repeated job-failure alert is held back
  STRONGROOM_DRILL_SEED: replay a drill's random choices
  STRONGROOM_IO_TIMEOUT (60): seconds an object-store request may stall before a retry
  STRONGROOM_PG_PLAIN_RESTORE: logical restores through pg_restore alone (no parallel COPY)
  S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
    AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3
  Azure: AZURE_STORAGE_ACCOUNT, AZURE_STORAGE_KEY, AZURE_STORAGE_ENDPOINT
  GCS: GOOGLE_APPLICATION_CREDENTIALS; STORAGE_EMULATOR_HOST (an emulator: no credentials)
  PostgreSQL, as libpq reads them: PGHOST, PGPORT, PGUSER (else USER, LOGNAME), PGDATABASE,
    PGPASSWORD, PGPASSFILE, PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY, PGCONNECT_TIMEOUT,
    PGOPTIONS (a logical restore puts a larger maintenance_work_mem first; yours win)
  HOSTNAME: this host's name when /proc does not say; TMPDIR: spool and scratch files
  Test hooks, leave unset: STRONGROOM_FAULT, STRONGROOM_FAULT_DIR,
    STRONGROOM_ALERT_BACKOFF_MS, STRONGROOM_LOCK_HEARTBEAT";

/// Encrypted, deduplicating, verified backups of SQLite and PostgreSQL databases.
#[derive(Parser)]
#[command(name = "strongroom", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes; `--help` lists them apart from the command's own.
#[derive(Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Repository URL: a path, file:///abs/path, s3://bucket/prefix, azblob://…, gs://…
    #[arg(long, global = true, env = "STRONGROOM_REPO", value_name = "URL")]
    pub repo: Option<String>,
    /// Read the repository password (or key file) from the first line of FILE.
    #[arg(
        long,
        global = true,
        env = "STRONGROOM_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// Configuration file (default: ./strongroom.toml when present).
    #[arg(long, global = true, env = "STRONGROOM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print one JSON document on stdout instead of human text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress bars; and nothing on stdout when backup, copy, verify, check, drill,
    /// export, forget, prune or unlock succeed (for cron: errors still go to stderr).
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a repository (encrypted unless --encryption none).
    #[command(
        after_help = "Examples:\n  STRONGROOM_PASSWORD=… strongroom --repo /srv/backups init\n  STRONGROOM_FROM_PASSWORD=… STRONGROOM_PASSWORD=… strongroom --repo s3://offsite/hotel init --copy-of /srv/backups\n\n--copy-of makes a second copy (see `strongroom copy`): a repository of its own (its own id,\npasswords, journal and locks) that shares the other's keys and settings, so snapshots and WAL\nare copied into it as they are stored, without being decrypted and encrypted again. The\nsource's password comes from --from-password-file, else STRONGROOM_FROM_PASSWORD, else the\nconfig when URL is its repository; the copy's from --password-file, STRONGROOM_PASSWORD or\nthe config, as for any new repository. A copy of an unencrypted repository is unencrypted.\n\n--object-lock DAYS (S3 only, a bucket created with Object Lock enabled) writes every object\nlocked for DAYS: nobody holding this host's credentials can delete or overwrite a backup\nbefore then. `forget --prune` keeps what kept snapshots need locked DAYS ahead, and prune\ndeletes what they no longer need once its lock ends. Locks, deletion marks and prune's\nlist of what waits are written unlocked. WARNING: --lock-mode compliance cannot be\nshortened or removed by anyone, the account owner included, and every object written\nis stored and billed for the whole DAYS whatever you delete; governance (the default)\ncan be lifted by a user with s3:BypassGovernanceRetention. With --copy-of, the copy is\nlocked (the primary need not be).\n  strongroom --repo s3://vault/hotel init --object-lock 30\n  strongroom --repo s3://vault/hotel init --object-lock 90 --lock-mode compliance\n  strongroom --repo s3://vault/hotel init --copy-of /srv/backups --object-lock 30"
    )]
    Init(InitArgs),
    /// Take a snapshot of a source.
    #[command(
        after_help = "Examples:\n  strongroom backup sqlite:hotel.db --tag daily\n  strongroom backup hotel --tag pre-migration   # a [sources.hotel] from the config\n  strongroom backup postgres://app@db:5432/hotel?sslmode=require\n\nPostgreSQL: the password comes from the URL, PGPASSWORD or ~/.pgpass and reaches pg_dump\nonly through its environment; it is never recorded. pg_dump is searched in\nSTRONGROOM_PG_BINDIR, /usr/lib/postgresql/*/bin, pg_config --bindir and PATH; the oldest\none at least as new as the server is used."
    )]
    Backup(BackupArgs),
    /// List snapshots, oldest first.
    #[command(
        after_help = "Examples:\n  strongroom list\n  strongroom list --source hotel --tag pre-migration\n  strongroom list --json | jq -r '.[].id'"
    )]
    List {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Show one snapshot.
    #[command(
        after_help = "Examples:\n  strongroom show latest\n  strongroom show 3fa4c1\n  strongroom show latest --source hotel --tag pre-migration --json"
    )]
    Show(ShowArgs),
    /// Restore a snapshot.
    #[command(
        after_help = "Examples:\n  strongroom restore latest --to hotel.db\n  strongroom restore 3fa4c1 --to /var/lib/hotel/hotel.db --force --keep-old\n  strongroom restore latest --source prod --target-db postgres://app@db/hotel --force\n  strongroom restore latest --source prod --data-dir /srv/pg/restored --time '2026-12-01 22:59:00' --start\n  strongroom restore latest --data-dir /srv/pg/restored --lsn 16/B374D848\n  strongroom restore latest --data-dir /srv/pg/restored --timeline 2 --latest\n  strongroom restore latest --data-dir /var/lib/postgresql/16/main --force --start\n\nPhysical: the snapshot is written beside DIR, global/pg_control last, with recovery.signal and\nrestore_command = '<this program> wal fetch %f %p' (the server needs STRONGROOM_REPO and the key\nin its environment, as archive_command does); the recovery target goes into\npostgresql.auto.conf with recovery_target_action = promote. `latest` is the newest physical\nsnapshot that ends before the target. Recovery follows the timeline the source is on (not a\ncopy's fork) unless --timeline says otherwise; a target no timeline reaches is refused\nbefore anything is written. Anywhere but the source's own data directory the copy gets\narchive_mode = off (--archive keeps archiving).\n\nPostgreSQL logical: the snapshot is restored into a new database beside the target and checked\n(row counts); then the source's before_restore hook runs, the old database is renamed\naside, the new one renamed into place, after_restore runs, and the old one is dropped\n(kept with --keep-old, and when after_restore fails)."
    )]
    Restore(RestoreArgs),
    /// Write a snapshot as the database's own artifact, readable without strongroom (optionally encrypted to an age or OpenPGP key).
    #[command(after_help = EXPORT_HELP)]
    Export(ExportArgs),
    /// Prove snapshots restore: test-restore each, check integrity, row counts and configured checks.
    #[command(
        after_help = "Examples:\n  strongroom verify            # the latest snapshot\n  strongroom verify --all --json"
    )]
    Verify(VerifyArgs),
    /// Rehearse a recovery: restore a snapshot into a scratch place, time every phase, run the checks, and keep the report.
    #[command(
        after_help = "Examples:\n  strongroom drill                                # a random recent snapshot of the only source\n  strongroom drill --source prod --report drill.md\n  strongroom drill --snapshot 3fa4c1 --json\n  STRONGROOM_DRILL_SEED=42 strongroom drill       # replay the random choices of a drill\n  strongroom drill --history                      # the trend: RTO and RPO against the objectives\n\nThe snapshot is random among the source's snapshots of the last 7 days (else its newest 3).\nSQLite restores into a temporary file; PostgreSQL logical into a temporary database on\n[verify] scratch_postgres or the source's server (always dropped); PostgreSQL physical into a\nscratch data directory, where a throwaway server with archive_mode=off recovers through\n`strongroom wal fetch` to a random WAL position after the snapshot. Then the engine's checks,\nrow counts and the source's configured checks. RTO is the sum of the phases (fetch, restore,\nrecovery, checks); RPO is now minus the newest archived WAL segment (physical with archiving)\nor the newest snapshot. Both are measured against [objectives]. The report is kept in the\nrepository (drills/) and journaled. Exit 0 when the drill passed, 1 when it failed."
    )]
    Drill(DrillArgs),
    /// Copy snapshots and the WAL archive into a second repository made with `init --copy-of`.
    #[command(
        after_help = "Examples:\n  strongroom copy                                    # into every [[copies]] of the config\n  STRONGROOM_TO_PASSWORD=… strongroom copy --to s3://offsite/hotel\n  strongroom copy --to /mnt/usb/hotel --to-password-file /etc/strongroom/usb latest\n  strongroom copy --json | jq '.copies[] | {repository, snapshots_copied, bytes_written}'\n  30 3 * * *  strongroom copy --quiet                # crontab: after the nightly backup\n\nEvery snapshot the destination lacks (or the REFs named, narrowed by --source and --tag) and\nevery archived WAL file it lacks is copied as stored: each pack, manifest and WAL file is\nread from this repository, authenticated (a pack checked against its name, every segment\nopened and every chunk hashed), and written there; a damaged one is named with the snapshots\nit affects and never copied, and the rest is. A second run moves only what is new. Killed at\nany moment, the destination stays consistent (a snapshot's manifest is written last) and the\nnext run does not copy again what is there. Exit 0 only when everything asked for is durable\nthere. The destination's password: --to-password-file, else STRONGROOM_TO_PASSWORD, else its\n[[copies]] entry's password_file or password_command."
    )]
    Copy(CopyArgs),
    /// Check the repository's consistency; --read-data also reads and authenticates every object.
    #[command(
        after_help = "Examples:\n  strongroom check               # every referenced object is present\n  strongroom check --read-data   # and every object reads back intact\n\nExit 1 names each damaged object and the snapshots it affects."
    )]
    Check {
        /// Read and authenticate every stored object.
        #[arg(long)]
        read_data: bool,
    },
    /// Remove snapshots the retention policy does not keep (--prune: and the data only they used).
    #[command(
        after_help = "Examples:\n  strongroom forget --dry-run                  # the [retention] policy: what it keeps, and why\n  strongroom forget --prune                    # apply it, then delete data nothing needs\n  strongroom forget --keep-daily 7 --keep-weekly 4 --source hotel --json\n  strongroom forget 3fa4c1 --prune             # forget one snapshot by id\n\nBuckets are restic's: --keep-daily 7 keeps the newest snapshot of each of the 7 newest days\nthat have one (UTC), so when backups stop nothing ages out. Per source and kind, whatever the\npolicy: the newest snapshot, the newest verified one, and for physical snapshots the one at or\nbefore now minus pitr_window and every later one are kept. Flags replace [retention]'s keep_*\nand keep_within; its tag_within (pre-migration = \"90d\" by default) and pitr_window still apply."
    )]
    Forget(ForgetArgs),
    /// Delete data no snapshot needs: unused packs, WAL older than any kept physical snapshot needs.
    #[command(
        after_help = "Examples:\n  strongroom prune --dry-run\n  strongroom prune --max-wait 1h\n\nSafe beside running jobs: packs are first marked, and deleted only once every job that\nstarted before the mark has ended (at most --max-wait; else the next prune finishes). Backups\nand WAL archiving never wait for a prune."
    )]
    Prune(PruneArgs),
    /// Remove stale locks (of jobs whose process is gone), saying which.
    #[command(
        after_help = "Examples:\n  strongroom unlock\n  strongroom unlock --all   # also live-looking ones: only when no strongroom job runs anywhere"
    )]
    Unlock {
        /// Remove every lock, not only stale ones.
        #[arg(long)]
        all: bool,
    },
    /// Can we recover, and how much would we lose: health per source against [objectives].
    #[command(
        after_help = "Per source: the newest snapshot of each kind against its expected interval, the WAL\narchive's age against the RPO (and PostgreSQL's archiver when the server answers), the\nnewest verify, drill and check, anomalies against the source's own history, failed jobs,\nretention, and the strategy's checklist ticked from the journal.\n\nAlerts: when a source's level changed since the last alert, or a check fails that did\nnot then ([[alerts]] in the config; without a target nothing is sent), one is sent; what was sent is remembered in the repository (state/alerts). Run it from cron.\n\nExit codes: 0 everything ok, 1 anything at warning or critical (or the repository could\nnot be read), 2 usage error.\n\nExamples:\n  strongroom status\n  strongroom status --source hotel --json | jq '.sources[].checks[] | select(.level != \"ok\")'\n  */10 * * * *  strongroom status --quiet > /dev/null   # crontab: alerts on changes"
    )]
    Status(StatusArgs),
    /// Job records (backup, verify, wal push failures, prune, drill, …), oldest first.
    #[command(
        after_help = "Examples:\n  strongroom journal --since 7d --failed\n  strongroom journal --source hotel --job backup --json\n  strongroom journal --job 'wal push' --since '2026-12-01 00:00:00'"
    )]
    Journal(JournalArgs),
    /// Prometheus text exposition format on stdout (node_exporter's textfile collector).
    #[command(
        after_help = "Example (crontab; write then rename, so the collector never reads half a file):\n  */5 * * * *  strongroom metrics > /var/lib/node_exporter/strongroom.prom.$$ && mv /var/lib/node_exporter/strongroom.prom.$$ /var/lib/node_exporter/strongroom.prom\n\nAlert rule example:\n  time() - strongroom_last_success_timestamp_seconds{kind=\"full\"} > 26 * 3600"
    )]
    Metrics {
        /// Only this source.
        #[arg(long, value_name = "S")]
        source: Option<String>,
    },
    /// Run the config's schedules until SIGTERM; with --listen, serve the dashboard.
    #[command(
        after_help = "Examples:\n  strongroom daemon                      # the schedules of strongroom.toml, logs on stderr\n  strongroom daemon --listen             # and the dashboard on http://127.0.0.1:8600/\n  strongroom daemon --listen 0.0.0.0:8600 -v\n  strongroom daemon --hash-password      # a password hash for [[daemon.users]]\n\nEach source runs the jobs of its [sources.NAME.schedule] (the strategy's when absent: a\nbackup daily at 02:00 UTC, physical every 6 hours, verify weekly, a drill each quarter,\nforget --prune daily, copies after each backup). A run missed while the host was down,\nasleep or had its clock moved runs once. Jobs of different sources run side by side;\neach job is `strongroom <job>` as a child, journaled and alerted as when run by hand, and\nretried with doubling delays when it failed for a reason worth retrying. SIGTERM or Ctrl-C\nlets running jobs finish ([daemon] stop_timeout, 5m), then interrupts them; a second\nsignal interrupts at once. The dashboard is read-only unless [[daemon.users]] lets\nsomeone log in; /metrics, /healthz and /api/status serve machines."
    )]
    Daemon(DaemonArgs),
    /// Capture a SQLite source's commits continuously (about a second after each) until SIGTERM.
    #[command(
        after_help = "Examples:\n  strongroom replicate hotel                      # [sources.hotel] of strongroom.toml\n  strongroom replicate sqlite:/var/lib/hotel/hotel.db -v\n  strongroom restore latest --source hotel --to /tmp/hotel.db                  # the newest captured state\n  strongroom restore latest --source hotel --to /tmp/hotel.db --time '2026-12-07 09:14:00'\n  strongroom status --source hotel               # how many seconds a loss would cost now\n\nThe database must be in WAL mode. Every second while it is written (`[replicate] interval`),\nthe transactions committed since the last round are read from its WAL, checked (salts and\nchecksums) and stored as one encrypted segment; nothing is stored while it is idle. The\nfirst run takes a base snapshot (tag `continuous`); a restarted run goes on from where the\nlast stopped, and a new base follows every `[replicate] base_interval` (1h), or when the WAL\nwas reset while nothing captured it. strongroom never writes to the database: it holds a\nread transaction for about a second at a time and runs its own checkpoints (PASSIVE, and a\nTRUNCATE that never waits as a brake when the WAL file passes `brake_frames`). `strongroom daemon` runs this for\nsources with `continuous = true`. SIGTERM or Ctrl-C stores what was committed, then exits 0."
    )]
    Replicate(ReplicateArgs),
    /// Repair the repository's index.
    Repair {
        #[command(subcommand)]
        action: RepairAction,
    },
    /// PostgreSQL WAL archiving: archive_command, restore_command and continuity.
    #[command(
        after_help = "In postgresql.conf (the repository and key come from the environment or the config,\nnever the command line):\n  archive_mode = on\n  archive_command = '/usr/local/bin/strongroom wal push %p'\n  restore_command = '/usr/local/bin/strongroom wal fetch %f %p'   # written by restore\n\nExamples:\n  strongroom wal verify\n  strongroom wal verify --json"
    )]
    Wal {
        #[command(subcommand)]
        action: WalAction,
    },
    /// Manage the passwords (key slots) that open the repository.
    #[command(
        after_help = "Examples:\n  strongroom key add --new-password-file /run/secrets/ops --label ops-team\n  strongroom key list\n  strongroom key remove 3fa4c1"
    )]
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Write the emergency procedure for this deployment, as Markdown on stdout.
    #[command(
        after_help = "Examples:\n  strongroom runbook > RUNBOOK.md              # every source; print it and keep it by the servers\n  strongroom runbook --source hotel | lp       # one source, straight to the printer\n  strongroom runbook --json | jq -r .markdown\n\nWritten from the config and the repository as they are now: whom to call ([[contacts]]), the\nfirst five minutes, the environment to set (names only, never values), per source the exact\nrestore commands (a side copy first, then in place; for PostgreSQL physical snapshots, the\npoint-in-time window the archive can serve), how to verify the result, the newest snapshots,\nthe objectives and the last drill's figures. No password or key appears in it. Write it\nagain after changing the config, and after drills."
    )]
    Runbook {
        /// Only this source: its config name or its URL in any spelling.
        #[arg(long, value_name = "S")]
        source: Option<String>,
    },
    /// The whole story on an embedded hotel database and a local repository.
    #[command(
        after_help = "Examples:\n  strongroom demo\n  strongroom demo --dir /tmp/strongroom-demo --bookings 20000 --json\n\nNeeds no repository or password: it makes its own in DIR."
    )]
    Demo(DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  strongroom completions bash > /etc/bash_completion.d/strongroom\n  strongroom completions zsh > \"${fpath[1]}/_strongroom\"\n  strongroom completions fish > ~/.config/fish/completions/strongroom.fish"
    )]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the configured source names, one per line: what shell completion offers for
    /// `--source` and backup's SOURCE (the scripts of `completions` call it).
    #[command(hide = true)]
    SourceNames,
    /// Print the manual page (roff), or write one page per command into a directory.
    #[command(
        after_help = "Examples:\n  strongroom man | man -l -\n  strongroom man --dir /usr/local/share/man/man1"
    )]
    Man {
        /// Write strongroom.1 and one page per command (strongroom-backup.1, …) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The daemon's schedules for a scheduler you already run (see `schedule export`).
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
    },
    /// Test and benchmark helpers: hotel databases.
    #[command(hide = true)]
    Hotel {
        #[command(subcommand)]
        action: HotelAction,
    },
}

impl Command {
    /// Whether this command does a job cron runs, whose report `--quiet` leaves out on
    /// success. Reads (list, status, …) print what was asked for, and restore is run by a
    /// person who needs its start line.
    pub fn is_job(&self) -> bool {
        matches!(
            self,
            Command::Backup(_)
                | Command::Replicate(_)
                | Command::Copy(_)
                | Command::Verify(_)
                | Command::Check { .. }
                | Command::Drill(_)
                | Command::Export(_)
                | Command::Forget(_)
                | Command::Prune(_)
                | Command::Unlock { .. }
        )
    }
}

/// `strongroom replicate`'s options.
#[derive(Args)]
pub struct ReplicateArgs {
    /// The SQLite source: a configured name or sqlite:PATH (default: the only configured source).
    pub source: Option<String>,
}

/// `strongroom init`'s options: encrypted or not, or a copy of another repository.
#[derive(Args)]
pub struct InitArgs {
    /// `none` for an unencrypted repository (objects are still checksummed).
    #[arg(long, value_parser = ["none", "xchacha20poly1305"], default_value = "xchacha20poly1305")]
    pub encryption: String,
    /// Make a copy of the repository at URL: it shares that repository's keys, so `strongroom
    /// copy` moves snapshots and WAL into it as they are; it has its own password.
    #[arg(long, value_name = "URL")]
    pub copy_of: Option<String>,
    /// With --copy-of: read the password of the repository at URL from the first line of FILE.
    #[arg(long, value_name = "FILE", requires = "copy_of")]
    pub from_password_file: Option<PathBuf>,
    /// S3 only: write every object under an S3 Object Lock of at least DAYS (the bucket must
    /// have Object Lock enabled). With --copy-of, the copy is locked.
    #[arg(long, value_name = "DAYS")]
    pub object_lock: Option<u32>,
    /// With --object-lock: governance (default; users with s3:BypassGovernanceRetention can
    /// lift it) or compliance (nobody can shorten it, the account owner included).
    #[arg(long, value_name = "MODE", value_parser = ["governance", "compliance"], requires = "object_lock")]
    pub lock_mode: Option<String>,
}

/// `strongroom copy`'s options: which snapshots, and where to.
#[derive(Args)]
pub struct CopyArgs {
    /// Snapshots to copy (id, unique prefix of 6+ characters, or `latest`); default: every
    /// one the destination lacks.
    #[arg(value_name = "REF")]
    pub references: Vec<String>,
    /// The repository to copy into (made with `init --copy-of`); default: every [[copies]]
    /// entry of the config.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Read the destination's password (or key file) from the first line of FILE.
    #[arg(long, value_name = "FILE", requires = "to")]
    pub to_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `strongroom backup`'s options: which source, what kind, which tags.
#[derive(Args)]
pub struct BackupArgs {
    /// A configured source name, sqlite:PATH or postgres://… (default: the only configured source).
    pub source: Option<String>,
    /// full (SQLite), logical or physical (PostgreSQL).
    #[arg(long, value_parser = ["full", "logical", "physical"])]
    pub kind: Option<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

/// `strongroom show`'s options.
#[derive(Args)]
pub struct ShowArgs {
    /// Snapshot id, unique prefix (6+ characters) or `latest`.
    pub reference: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `strongroom restore`'s options: which snapshot, where to, and where recovery stops.
#[derive(Args)]
pub struct RestoreArgs {
    /// Snapshot id, unique prefix (6+ characters) or `latest`.
    pub reference: String,
    /// SQLite: the database file to write.
    #[arg(long, value_name = "PATH")]
    pub to: Option<PathBuf>,
    /// PostgreSQL logical: the database to restore into.
    #[arg(long, value_name = "URL")]
    pub target_db: Option<String>,
    /// PostgreSQL physical: the data directory to write (empty or absent; --force replaces).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub point: RecoveryPointArgs,
    /// Physical: the timeline to follow: a number, `current` (the snapshot's own) or
    /// `latest` (the newest that passes through the snapshot). Default: the one the
    /// source itself is on (its server's, else the one its data directory archived to last).
    #[arg(long, value_name = "N|current|latest", requires = "data_dir")]
    pub timeline: Option<strongroom::engine::postgres::timeline::TimelineRequest>,
    /// Physical: keep WAL archiving on in a directory that is not the source's own data
    /// directory (off by default, so a side copy never archives its timeline into the
    /// source's repository).
    #[arg(long, requires = "data_dir")]
    pub archive: bool,
    /// Physical: also start PostgreSQL on the directory, wait until it promoted, and
    /// report the position and time it recovered to.
    #[arg(long, requires = "data_dir")]
    pub start: bool,
    /// With --start: the port to listen on (default: the cluster's own when free, else
    /// a free one).
    #[arg(long, value_name = "PORT", requires = "start")]
    pub port: Option<u16>,
    /// Replace an existing target (the old data is kept aside until the restore succeeded).
    #[arg(long)]
    pub force: bool,
    /// With --force: keep the replaced data aside after success.
    #[arg(long)]
    pub keep_old: bool,
    /// Run SQLite's full `PRAGMA integrity_check` (slow: ~30 s/GB) instead of `quick_check`.
    #[arg(long)]
    pub full_check: bool,
    /// PostgreSQL: parallel pg_restore jobs (default: one per core; 1 streams without a
    /// temporary file).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Run the source's before_restore/after_restore hooks even though the target is not
    /// the source's own database (they run by themselves only when it is).
    #[arg(long)]
    pub run_hooks: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

const EXPORT_HELP: &str = "\
Examples:
  strongroom export latest --to hotel.db                    # SQLite: the database file
  strongroom export latest --source prod --kind logical --to hotel.dump   # and hotel.dump.globals.sql
  strongroom export latest --source prod --kind physical --to pgdata.tar --gpg-recipient ops@example.com
  strongroom export latest --to hotel.db.age --age-recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p

Back with the database's own tools alone:
  sqlite3 hotel.db 'PRAGMA integrity_check'
  psql -f hotel.dump.globals.sql postgres && createdb hotel && pg_restore -d hotel hotel.dump
  install -d -m 700 -o postgres -g postgres /srv/pg/copy && tar -xf pgdata.tar -C /srv/pg/copy
  runuser -u postgres -- pg_ctl -D /srv/pg/copy start
  age -d -i key.txt hotel.db.age > hotel.db
  gpg -d pgdata.tar.gpg | tar -x -C /srv/pg/copy

SQLite: the database file, page for page. PostgreSQL logical: the pg_dump custom-format archive
exactly as pg_dump wrote it (uncompressed) at FILE, and the roles and tablespaces (pg_dumpall
--globals-only) as SQL at FILE.globals.sql. PostgreSQL physical: one tar of the data directory
(extract it into an empty directory) with backup_label and the WAL from the backup's start to
its stop in pg_wal/: PostgreSQL started on it replays that WAL and opens, consistent, with no
archive and no strongroom. The copy gets archive_mode = off in postgresql.auto.conf (ALTER
SYSTEM RESET archive_mode undoes it); tablespaces are inside it, under strongroom_tablespaces/,
linked from pg_tblspc/; a cluster configured in /etc/postgresql gets a minimal postgresql.conf.

Each file is written as .NAME.strongroom-export-*.tmp beside it (mode 0600) and renamed into
place once complete and synced: a file at FILE is always whole, and an existing one (refused
without --force) stays until the new one is complete. With a recipient every file is encrypted
to it and no plaintext is written to disk. gpg uses its own keyring (GNUPGHOME) and its trust:
import the public key and make it valid (gpg --lsign-key) first; keys are never fetched from
the network. Memory stays flat whatever the size: everything streams.";

/// `strongroom export`'s options: which snapshot, where to, and to whom it is encrypted.
#[derive(Args)]
pub struct ExportArgs {
    /// Snapshot id, unique prefix (6+ characters) or `latest`.
    pub reference: String,
    /// The file to write (PostgreSQL logical: FILE.globals.sql too).
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Encrypt to this age X25519 recipient (age1…); `age -d -i KEYFILE` decrypts.
    #[arg(long, value_name = "KEY", conflicts_with = "gpg_recipient")]
    pub age_recipient: Option<String>,
    /// Encrypt to this OpenPGP key of the local GnuPG keyring (fingerprint, key id or user
    /// id); `gpg -d` decrypts.
    #[arg(long, value_name = "ID")]
    pub gpg_recipient: Option<String>,
    /// Only snapshots of this kind: full (SQLite), logical or physical (PostgreSQL); a
    /// source with both logical and physical snapshots otherwise exports its newest.
    #[arg(long, value_parser = ["full", "logical", "physical"])]
    pub kind: Option<String>,
    /// Replace FILE (and FILE.globals.sql) when they exist; each stays as it is until the
    /// new one is complete.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Where a restore's recovery stops: at most one of these (the `recovery_target` group);
/// `--lsn`, `--xid` and `--name` only with `--data-dir`.
#[derive(Args)]
#[group(id = "recovery_target", multiple = false)]
pub struct RecoveryPointArgs {
    /// Recover to the last transaction committed at or before T (RFC 3339, or `YYYY-MM-DD
    /// HH:MM:SS` as UTC): physical snapshots through the WAL archive, SQLite through the
    /// transactions `strongroom replicate` captured (as it saw them commit).
    #[arg(long, value_name = "T")]
    pub time: Option<String>,
    /// Physical: recover to this WAL position (`0/3000148`).
    #[arg(long, value_name = "L", requires = "data_dir")]
    pub lsn: Option<String>,
    /// Physical: recover up to and including this transaction id.
    #[arg(long, value_name = "X", requires = "data_dir")]
    pub xid: Option<u64>,
    /// Physical: recover to a restore point made with pg_create_restore_point(N).
    #[arg(long, value_name = "N", requires = "data_dir")]
    pub name: Option<String>,
    /// Recover only until the snapshot is consistent (its own end; SQLite: no captured
    /// transactions on top).
    #[arg(long)]
    pub immediate: bool,
    /// Recover to the end of the archive or of the captured transactions (default).
    #[arg(long)]
    // The default when none is given: here to be accepted and to exclude the others.
    pub latest: bool,
}

/// `strongroom verify`'s options: one snapshot, or every one the filter keeps.
#[derive(Args)]
pub struct VerifyArgs {
    /// Snapshot id, unique prefix or `latest` (default).
    pub reference: Option<String>,
    /// Verify every snapshot (that matches --source/--tag).
    #[arg(long, conflicts_with = "reference")]
    pub all: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `strongroom drill`'s options.
#[derive(Args)]
pub struct DrillArgs {
    /// Drill this snapshot (id, unique prefix of 6+ characters, or `latest`) instead of a random recent one.
    #[arg(long, value_name = "REF")]
    pub snapshot: Option<String>,
    /// Also write the report as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// List earlier drills instead (date, source, snapshot, RTO and RPO against objectives, result).
    #[arg(long, conflicts_with_all = ["snapshot", "report"])]
    pub history: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `strongroom forget`'s options: which snapshots go (ids or keep rules), and the prune after.
#[derive(Args)]
pub struct ForgetArgs {
    /// Snapshot ids (or unique prefixes of 6+ characters) to forget instead of applying a policy.
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub keep: strongroom::retention::KeepRules,
    /// Say what would be removed (and, with --prune, freed); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Then delete the data no remaining snapshot needs (see `strongroom prune`).
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub limits: PruneLimits,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `strongroom daemon`'s options.
#[derive(Args)]
pub struct DaemonArgs {
    /// Serve the dashboard, /metrics, /healthz and /api/status on ADDR (HOST:PORT, or a port
    /// alone for loopback; 127.0.0.1:8600 when ADDR is left out).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8600")]
    pub listen: Option<String>,
    /// Print the Argon2id hash of a password (asked on the terminal, or the first line of
    /// standard input) for [[daemon.users]], and exit.
    #[arg(long, conflicts_with = "listen")]
    pub hash_password: bool,
}

/// `strongroom prune`'s options.
#[derive(Args)]
pub struct PruneArgs {
    /// Say what would be deleted and freed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub limits: PruneLimits,
}

/// `strongroom status`'s options.
#[derive(Args)]
pub struct StatusArgs {
    /// Only this source.
    #[arg(long, value_name = "S")]
    pub source: Option<String>,
    /// Neither send alerts nor remember state (a look that changes nothing).
    #[arg(long)]
    pub no_alerts: bool,
}

/// `strongroom journal`'s options: which records.
#[derive(Args)]
pub struct JournalArgs {
    /// Only records of this source.
    #[arg(long, value_name = "S")]
    pub source: Option<String>,
    /// Only records of this job (backup, restore, verify, check, forget, prune, drill,
    /// wal push, …).
    #[arg(long, value_name = "JOB")]
    pub job: Option<String>,
    /// Only failures.
    #[arg(long)]
    pub failed: bool,
    /// Only jobs that finished at or after T (RFC 3339 or `YYYY-MM-DD HH:MM:SS`), or
    /// within DURATION (`90s`, `15m`, `26h`, `7d`).
    #[arg(long, value_name = "T|DURATION")]
    pub since: Option<String>,
}

/// `strongroom demo`'s options.
#[derive(Args)]
pub struct DemoArgs {
    /// Where to run (made fresh).
    #[arg(long, default_value = "strongroom-demo")]
    pub dir: PathBuf,
    /// Bookings in the generated database.
    #[arg(long, default_value_t = 300_000)]
    pub bookings: u64,
}

/// `strongroom repair …`.
#[derive(Subcommand)]
pub enum RepairAction {
    /// Rebuild the index from the packs' own trailers.
    #[command(
        after_help = "Example:\n  strongroom repair index\n\nAfter damage or a lost index object: the new index names only chunks whose packs exist and\nopen, so no later backup builds on data that is gone."
    )]
    Index,
}

#[derive(Subcommand)]
pub enum WalAction {
    /// Archive one WAL file (PostgreSQL's archive_command: `strongroom wal push %p`).
    #[command(
        after_help = "Runs in the data directory, as PostgreSQL starts it, and archives for the cluster found\nthere (its system identifier). Exit 0 only once the file is durable in the repository, or\nwhen the same content was archived already; exit 1 otherwise (PostgreSQL retries).\n\nFast opening: give it a key file (`strongroom key add --new-key-file FILE`) through\nSTRONGROOM_PASSWORD_FILE, not a password: a password costs a memory-hard derivation on\nevery segment."
    )]
    Push {
        /// The WAL file, relative to the data directory (`%p`).
        path: PathBuf,
    },
    /// Restore one WAL file (PostgreSQL's restore_command: `strongroom wal fetch %f %p`).
    #[command(
        after_help = "Exit codes: 0 written to DEST; 1 the repository was read and NAME is not in it (PostgreSQL\nthen ends recovery there); 254 any other failure after retrying (repository unreachable,\nwrong key, damaged object), which makes PostgreSQL stop recovery instead of promoting\nearly at the wrong point. STRONGROOM_FETCH_RETRIES (default 4) sets the attempts."
    )]
    Fetch {
        /// The file PostgreSQL asks for (`%f`).
        name: String,
        /// Where to write it, relative to the data directory (`%p`).
        dest: PathBuf,
    },
    /// Stream WAL over replication into the repository, durable within a second (or before
    /// each commit returns, with --synchronous), until SIGTERM or Ctrl-C.
    #[command(
        after_help = "Connects to SOURCE (a configured name, a postgres:// URL, or the only configured source)\nas a physical replication client named `strongroom`, through the replication slot\n`strongroom` (sources.NAME.slot), which it creates when missing so the server keeps WAL\nuntil it is received. Received WAL is written to the repository as pieces, each durable\nwithin 0.7 s of arriving (after every burst with --synchronous), and each complete segment under its own\nname, as archive_command would archive it: both may run, and `wal fetch` prefers the\ncomplete segment. The server hears as written, flushed and applied only what is durable\nin the repository. On SIGTERM or Ctrl-C it writes what it received, then exits 0.\n\nOn the server:\n  # postgresql.conf\n  wal_level = replica                      # the default\n  max_wal_senders = 10                     # the default\n  synchronous_standby_names = 'strongroom' # only with --synchronous: RPO 0\n  # pg_hba.conf: the role needs REPLICATION (ALTER ROLE backup REPLICATION)\n  host  replication  backup  10.0.0.5/32  scram-sha-256\n\nWith synchronous_standby_names = 'strongroom', a commit returns only once its WAL is\ndurable in the repository; while strongroom is down, commits wait (take the setting\nout, or list another standby too, to let them go on).\n\nExamples:\n  strongroom wal receive prod\n  strongroom wal receive prod --synchronous\n  strongroom wal receive 'postgres://backup@db1/postgres'"
    )]
    Receive {
        /// A configured source name or a postgres:// URL (default: the only configured source).
        source: Option<String>,
        /// Write and acknowledge after every burst of WAL, so a server naming `strongroom` in
        /// synchronous_standby_names loses no committed transaction.
        #[arg(long)]
        synchronous: bool,
    },
    /// WAL continuity per cluster and timeline, gaps named.
    #[command(
        after_help = "Exit 1 when a gap lies where a physical snapshot needs WAL to recover (at or after its\nstart, on its timeline or a later one).\n\nExamples:\n  strongroom wal verify\n  strongroom wal verify --json"
    )]
    Verify,
}

#[derive(Subcommand)]
pub enum KeyAction {
    /// Add a password (read from the first line of FILE), or make a key file.
    #[command(
        after_help = "Examples:\n  strongroom key add --new-password-file /run/secrets/ops --label ops-team\n  strongroom key add --new-key-file /var/lib/postgresql/strongroom.key --label wal-archiving\n  strongroom key add --append-only --new-key-file /var/lib/postgresql/strongroom.key --label db1\n\nA key file holds 256 random bits. Give it as the password file (--password-file,\nSTRONGROOM_PASSWORD_FILE or password_file in the config): it opens the repository without the\nmemory-hard password stretching, which is what lets `wal push` archive hundreds of segments a\nminute. Keep it readable by the database's system user only, as the data it protects.\n\nAn append-only key (--append-only) is what a database host should hold: its backups and WAL\nare sealed so that only full keys read them, even the host cannot read them back. It cannot\nrestore, verify, check, forget, prune, export, copy, read the journal or `wal fetch`\n(restore_command needs a full key), and it never deletes. Give the host store credentials\nthat cannot delete or overwrite either (a bucket policy), and see `strongroom status` for\nwhat protects each repository."
    )]
    #[command(group = clap::ArgGroup::new("secret").required(true))]
    Add {
        /// File holding the new password.
        #[arg(long, value_name = "FILE", group = "secret")]
        new_password_file: Option<PathBuf>,
        /// Generate a key file at FILE (created with mode 0600; must not exist yet).
        #[arg(long, value_name = "FILE", group = "secret")]
        new_key_file: Option<PathBuf>,
        /// A label for the slot (who or what it is for).
        #[arg(long, default_value = "")]
        label: String,
        /// Make an append-only key, for a database host: it may `backup`, `wal push` and
        /// `list` its own snapshots, and nothing that reads contents or deletes.
        #[arg(long)]
        append_only: bool,
    },
    /// List key slots: id, label, kind and when each was made.
    #[command(after_help = "Examples:\n  strongroom key list\n  strongroom key list --json")]
    List,
    /// Remove a key slot, so its password no longer opens the repository.
    #[command(
        after_help = "Examples:\n  strongroom key list\n  strongroom key remove 3fa4c1   # a unique id prefix of 6+ characters\n\nThe last readable slot cannot be removed: add another password first."
    )]
    Remove {
        /// The slot's id (from `strongroom key list`) or a unique prefix of 6+ characters.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum HotelAction {
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
        /// Fill the tables as an application would (random values, timestamps with
        /// microseconds, notes of varying length) rather than by formula.
        #[arg(long)]
        varied: bool,
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

/// Which snapshots a command looks at: `--source` and `--tag`.
#[derive(Args, Clone)]
pub struct FilterArgs {
    /// Only snapshots of this source: its config name or its URL in any spelling.
    #[arg(long, value_name = "S")]
    pub source: Option<String>,
    /// Only snapshots with this tag (repeatable: all must match).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
}

impl FilterArgs {
    /// The library's filter for these flags; `config` knows every spelling of a source.
    pub fn filter(&self, config: &Config) -> Filter {
        Filter {
            source: self.source.as_deref().map(|s| config.source_match(s)),
            tags: self.tags.clone(),
        }
    }
}

/// What a prune may do: which packs it repacks, and how long it waits for older jobs
/// (`prune`, and `forget --prune`).
#[derive(Args)]
pub struct PruneLimits {
    /// Repack packs whose needed share of bytes is below this fraction (default: [prune] repack_below, 0.5).
    #[arg(long, value_name = "FRACTION")]
    pub repack_below: Option<f64>,
    /// Read at most this much of old packs to repack them, a size or a share of the repository, the packs that free most per byte read first (default: [prune] max_repack, 5%, at least 64MiB).
    #[arg(long, value_name = "SIZE|PERCENT")]
    pub max_repack: Option<String>,
    /// Wait at most this long for jobs older than the deletion (default: [prune] max_wait, 10m).
    #[arg(long, value_name = "DURATION")]
    pub max_wait: Option<String>,
}

// --- `strongroom schedule …` (kept in one block) -------------------------------------

const SCHEDULE_EXPORT_HELP: &str = "\
Examples:
  strongroom --config /etc/strongroom/strongroom.toml schedule export --format crontab > strongroom.crontab
  strongroom --config /etc/strongroom/strongroom.toml schedule export --format systemd --output /etc/systemd/system
  systemctl daemon-reload && systemctl enable --now $(cd /etc/systemd/system && ls strongroom-*.timer)
  strongroom --config deploy/strongroom.toml schedule export --format github-actions > .github/workflows/strongroom.yml
  strongroom --config strongroom.toml schedule export --format kubernetes --image registry.example.com/strongroom:0.1.0 | kubectl apply -f -

The same schedules `strongroom daemon` runs, from the same [sources.NAME.schedule] tables, so
the daemon stays optional: every scheduled job (a backup followed by its copy when copy =
\"after-backup\", the repository check once however many sources schedule it) and `status`
every [daemon] status_interval (at least 5 minutes; hourly on GitHub Actions), for the alerts.

Each job runs with --quiet. The crontab and the systemd units run this program by its
absolute path with --config FILE (absolute), and --repo and --password-file when given here;
the password comes as for any command (the config's password_file or password_command,
STRONGROOM_PASSWORD, or /etc/strongroom/env for the units), never from these files. GitHub
Actions and Kubernetes run `strongroom` from PATH, with the config from the checkout (the
--config path as given, relative to the repository's root) or a ConfigMap, and the password
and store credentials from secrets (each file's header says which).

Time zones: systemd timers and CronJobs take the zone; a crontab gets CRON_TZ= lines, which
cronie reads but Debian's cron ignores (a warning says when the zone is not this host's);
GitHub Actions runs in UTC only, so a zone with a fixed offset is converted and one with
daylight saving is refused. Jitter: RandomizedDelaySec= for systemd, a fixed sleep below it
in a crontab or CronJob, none on GitHub Actions. Patterns with croner's L, W or # are refused
where the format cannot say them (systemd says L and #), with the source and job named.

--output DIR writes the files there (systemd: strongroom-SOURCE-JOB.service and .timer; else
one file) each through a temporary file and a rename, replaces only files an earlier export
wrote unless --force, and names files of earlier exports that are no longer scheduled.";

#[derive(Subcommand)]
pub enum ScheduleAction {
    /// Print the schedules for cron, systemd, GitHub Actions or Kubernetes.
    #[command(after_help = SCHEDULE_EXPORT_HELP)]
    Export(ScheduleExportArgs),
}

/// `strongroom schedule export`'s options.
#[derive(Args)]
pub struct ScheduleExportArgs {
    /// The scheduler to write for.
    #[arg(long, value_enum)]
    pub format: strongroom::schedule::export::Format,
    /// Only this source's schedules (with the check, if it schedules one, and its status).
    #[arg(long, value_name = "S")]
    pub source: Option<String>,
    /// Write the files into DIR instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// With --output: replace files there that an earlier export did not write.
    #[arg(long, requires = "output")]
    pub force: bool,
    /// Kubernetes: the container image, with strongroom in its PATH.
    #[arg(long, value_name = "IMAGE", default_value = concat!("strongroom:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
}
