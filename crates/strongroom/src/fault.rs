//! Test hooks: places where a test can stop a job at a known moment.
//!
//! Owns `STRONGROOM_FAULT=pause-<point>` with `STRONGROOM_FAULT_DIR=D`: at that point the job
//! writes `D/paused` and waits (up to a minute) for `D/go`, so an integration test can kill
//! a server, run a prune or SIGKILL the job at exactly that moment. Points: `backup-start`
//! (`after-backup-start`: physical, after `pg_backup_start`), `before-commit` (any backup, data stored, manifest
//! not yet written), `before-sweep` (prune, mark written, nothing deleted) and
//! `export-before-rename` (export, every file complete in its temporary file, none renamed). Must not
//! change what a job does when the variables are unset.

/// Pauses at `point` when the test hook asks for it.
pub fn pause(point: &str) {
    let Ok(fault) = std::env::var("STRONGROOM_FAULT") else {
        return;
    };
    if fault.strip_prefix("pause-") != Some(point) {
        return;
    }
    let Some(dir) = std::env::var_os("STRONGROOM_FAULT_DIR").map(std::path::PathBuf::from) else {
        return;
    };
    let _ = std::fs::write(dir.join("paused"), "");
    for _ in 0..1200 {
        if dir.join("go").exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
