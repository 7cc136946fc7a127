//! One file per command: each turns its arguments into one library call and prints the
//! result (human text, or `--json` on stdout).
//!
//! Must not hold domain logic: what a command does is the library's; here is only which
//! call, with which options, and how its result looks.
//!
//! [`run`] only dispatches: each handler takes its command's clap struct from `args` whole.

pub mod backup;
pub mod check;
pub mod completions;
pub mod copy;
pub mod daemon;
pub mod demo;
pub mod drill;
pub mod export;
pub mod forget;
pub mod hotel;
pub mod init;
pub mod journal;
pub mod key;
pub mod list;
pub mod man;
pub mod metrics;
pub mod prune;
pub mod repair;
pub mod replicate;
pub mod restore;
pub mod runbook;
pub mod schedule;
pub mod show;
pub mod status;
pub mod unlock;
pub mod verify;
pub mod wal;

use crate::args::{Command, Global};
use crate::context::Ctx;
use anyhow::Result;

/// Runs one command. The config is read only for commands that use it, so completions, the
/// man page and the hotel helpers work beside a broken `strongroom.toml`.
pub fn run(global: Global, command: Command) -> Result<()> {
    let ctx = || Ctx::new(global.clone());
    if global.quiet && command.is_job() {
        crate::output::silence();
    }
    match command {
        Command::Init(a) => init::run(&ctx()?, a),
        Command::Backup(a) => backup::run(&ctx()?, a),
        Command::List { filter } => list::run(&ctx()?, &filter),
        Command::Show(a) => show::run(&ctx()?, a),
        Command::Restore(a) => restore::run(&ctx()?, a),
        Command::Export(a) => export::run(&ctx()?, a),
        Command::Verify(a) => verify::run(&ctx()?, a),
        Command::Copy(a) => copy::run(&ctx()?, a),
        Command::Check { read_data } => check::run(&ctx()?, read_data),
        Command::Drill(a) => drill::run(&ctx()?, a),
        Command::Forget(a) => forget::run(&ctx()?, a),
        Command::Prune(a) => prune::run(&ctx()?, a),
        Command::Status(a) => status::run(&ctx()?, a),
        Command::Journal(a) => journal::run(&ctx()?, a),
        Command::Daemon(a) => daemon::run(&ctx()?, a),
        Command::Replicate(a) => replicate::run(&ctx()?, a),
        Command::Metrics { source } => metrics::run(&ctx()?, source.as_deref()),
        Command::Unlock { all } => unlock::run(&ctx()?, all),
        Command::Repair { action } => repair::run(&ctx()?, action),
        Command::Key { action } => key::run(&ctx()?, action),
        Command::Wal { action } => wal::run(ctx(), action),
        Command::Runbook { source } => runbook::run(&ctx()?, source.as_deref()),
        Command::Demo(a) => demo::run(&ctx()?, a),
        Command::Completions { shell } => completions::run(shell),
        Command::SourceNames => completions::source_names(&global),
        Command::Man { dir } => man::run(dir.as_deref()),
        Command::Hotel { action } => hotel::run(action),
        Command::Schedule { action } => schedule::run(&ctx()?, action),
    }
}
