//! The jobs: what an operator (or cron, or PostgreSQL) asks strongroom to do, each a whole
//! operation with its journal record.
//!
//! Owns the sequence of each job over the layers below it: `backup` (source → engine →
//! writer → manifest), `restore` (the restore safety sequence), `verify` (test restores),
//! `integrity` (`check`), `forget`, `prune`, `repair`, `drill`, `export` (a snapshot as
//! the database's own artifact), `wal_push` (PostgreSQL's `archive_command`), `copy` (into
//! a second repository of the family), `locking` (object-lock upkeep: renewing locks for
//! `forget --prune`, their coverage for `check`) and `demo` (the whole story over the
//! others). Each
//! records itself in the journal; the command line writes no records. Must not hold what
//! the jobs share:
//! engines (`crate::engine`), the repository's objects (`crate::repository`), the policy
//! (`crate::retention`), monitoring (`crate::monitor`) and alerting (`crate::alert`) are
//! layers of their own, so a job is read top to bottom here and a subsystem is reused by
//! several jobs without one job importing another's internals (the exceptions are listed in
//! docs/ARCHITECTURE.md, "Module map").
//!
//! Why a folder: rustic_core's `commands/` shows the layer in the file list. Here the jobs
//! used to sit at the crate root beside the subsystems they use, and nothing but the docs
//! said which was which.

pub mod backup;
pub mod copy;
pub mod demo;
pub mod drill;
pub mod export;
pub mod forget;
pub mod integrity;
pub mod locking;
pub mod prune;
pub mod repair;
pub mod replicate;
pub mod restore;
pub mod verify;
pub mod wal_push;
