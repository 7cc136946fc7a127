//! Restoring a logical snapshot into a database: inspect the target, build the new database
//! beside it, and the swap the library's restore sequence drives.
//!
//! Owns what is particular to PostgreSQL databases in the restore safety sequence
//! (`crate::jobs::restore`): emptiness means no user objects, "beside" is a new database on the
//! same server, the swap is two renames, the old data is a renamed database. Must not run
//! hooks or decide on `force`: the sequence does.

use super::super::properties::Properties;
use super::super::server::{Conn, ident};
use super::admin::{
    admin, create_scratch_db, database_exists, restore_roles, side_name, swap, user_objects,
};
use super::catalog::count_check;
use super::load::pg_restore_into;
use super::{DUMP_FILE, PROPERTIES_KEY, default_jobs, extra_str, facts, file};
use crate::engine::{RestoreOptions, Staged, Swapped, TargetState};
use crate::error::{Error, Result};
use crate::interrupt;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::snapshot::Snapshot;

/// Whether the target database exists and holds anything of the user's; also refuses a
/// role that cannot create the database a restore builds beside it.
pub fn inspect(url: &str) -> Result<TargetState> {
    let target = Conn::parse(url)?;
    let name = target.dbname().to_string();
    let (admin_conn, mut client) = admin(&target).map_err(|e| Error::Target(e.to_string()))?;
    let f = facts(&mut client, &admin_conn).map_err(|e| Error::Target(e.to_string()))?;
    if !f.superuser && !f.createdb {
        return Err(Error::Target(format!(
            "role {:?} may not create databases on {}; a restore builds the new database beside \
             the target, so grant it CREATEDB or restore as a role that has it",
            target.user(),
            target.server()
        )));
    }
    if !database_exists(&mut client, &admin_conn, &name)? {
        return Ok(TargetState::Absent);
    }
    let n = user_objects(&target)?;
    Ok(if n > 0 {
        TargetState::Occupied {
            what: format!(
                "database {name} on {} is not empty ({n} tables, views, sequences or functions)",
                target.server()
            ),
            old: "database",
        }
    } else {
        TargetState::Empty
    })
}

/// Restores a logical snapshot into a new database beside the one at `url`, with its roles,
/// owner and database-level properties, and checks its row counts.
pub fn stage(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    url: &str,
    state: &TargetState,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<Box<dyn Staged>> {
    let target = Conn::parse(url)?;
    let name = target.dbname().to_string();
    let (admin_conn, mut client) = admin(&target).map_err(|e| Error::Target(e.to_string()))?;
    let f = facts(&mut client, &admin_conn).map_err(|e| Error::Target(e.to_string()))?;
    let t = std::time::Instant::now();
    let tmp = side_name(&name, "restoring");
    let guard = create_scratch_db(&mut client, &admin_conn, snap, &tmp)?;
    if f.superuser {
        restore_roles(repo, index, snap, &mut client, &admin_conn, false)?;
    }
    let db = target.with_dbname(&tmp);
    let precounted = pg_restore_into(
        repo,
        index,
        snap,
        &db,
        f.superuser,
        opts.jobs.unwrap_or_else(default_jobs),
        &std::env::temp_dir(),
        progress,
    )?;
    if f.superuser {
        if let Some(owner) = extra_str(snap, "owner") {
            let _ = client.batch_execute(&format!(
                "ALTER DATABASE {} OWNER TO {}",
                ident(&tmp),
                ident(owner)
            ));
        }
    }
    let t_count = std::time::Instant::now();
    let counts = match precounted {
        Some(c) => c,
        None => count_check(&db, snap)?,
    };
    tracing::info!(
        seconds = t_count.elapsed().as_secs_f64(),
        "row counts checked"
    );
    if !counts.ok {
        return Err(Error::Failed(format!(
            "the restored copy of snapshot {} does not match its row counts ({}); the target was not touched",
            snap.short_id(),
            counts.detail
        )));
    }
    tracing::info!(
        seconds = t.elapsed().as_secs_f64(),
        "restored beside the target"
    );
    if let Some(p) = snap.metadata.extra.get(PROPERTIES_KEY) {
        let props: Properties = serde_json::from_value(p.clone()).map_err(|e| {
            Error::corrupt(
                format!("snapshot {}", snap.short_id()),
                format!("its metadata {PROPERTIES_KEY} is unreadable: {e}"),
            )
        })?;
        for (stmt, err) in props.apply(&mut client, &admin_conn, &tmp) {
            tracing::warn!(statement = %stmt, error = %err, "database property not restored");
        }
    }
    Ok(Box::new(StagedDatabase {
        // Without force the target was empty when the restore began; it must still be.
        must_be_empty: *state == TargetState::Empty && !opts.force,
        exists: state.exists(),
        bytes: file(snap, DUMP_FILE).map(|f| f.size).unwrap_or(0),
        guard: Some(guard),
        admin: None,
        old: None,
        target,
        name,
        tmp,
    }))
}

/// A restored, checked database beside its target on the same server.
struct StagedDatabase {
    target: Conn,
    /// The target database's name.
    name: String,
    /// The restored database's name until the swap.
    tmp: String,
    exists: bool,
    must_be_empty: bool,
    bytes: u64,
    /// Drops the restored database unless disarmed by the swap.
    guard: Option<interrupt::Guard>,
    /// The maintenance connection the swap uses, made by [`Staged::ready`].
    admin: Option<(Conn, postgres::Client)>,
    /// The old database's name once it is aside.
    old: Option<String>,
}

impl Staged for StagedDatabase {
    fn target(&self) -> String {
        self.target.display()
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    fn ready(&mut self) -> Result<()> {
        // A fresh connection: the first one has sat idle through the whole restore, and an
        // idle_session_timeout or a proxy may have closed it.
        let conn = admin(&self.target).map_err(|e| {
            Error::Target(format!(
                "{e}; the restored copy was dropped and the target was not touched"
            ))
        })?;
        self.admin = Some(conn);
        Ok(())
    }

    fn swap(&mut self) -> Result<Swapped> {
        let (admin_conn, client) = self.admin.as_mut().expect("ready before swap");
        let must_be_empty = self.must_be_empty.then_some(&self.target);
        let r = swap(
            client,
            admin_conn,
            &self.tmp,
            &self.name,
            self.exists,
            must_be_empty,
        );
        let guard = self.guard.take().expect("swapped once");
        match r {
            Ok(old) => {
                // The restored database is the target now: nothing to drop on exit.
                guard.disarm();
                self.old = old.clone();
                Ok(Swapped {
                    old: old.map(|o| format!("database {o}")),
                    ..Swapped::default()
                })
            }
            Err(e) => {
                drop(guard);
                Err(e)
            }
        }
    }

    fn discard_old(&mut self) -> Result<()> {
        let (Some(old), Some((admin_conn, client))) = (&self.old, self.admin.as_mut()) else {
            return Ok(());
        };
        client
            .batch_execute(&format!("DROP DATABASE {}", ident(old)))
            .map_err(|e| {
                Error::Target(format!(
                    "could not drop the old database {old}: {}",
                    admin_conn.explain(&e)
                ))
            })
    }
}
