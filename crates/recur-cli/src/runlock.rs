//! The run folder of `recur train`: never replaced by accident, and never
//! trained into by two processes at once.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Files that mark a folder as holding a run.
const RUN_FILES: [&str; 4] = [
    "run.json",
    "last.safetensors",
    "model.safetensors",
    "folds.json",
];

/// The lock file inside a run folder: the owner's process id.
const LOCK: &str = ".recur.lock";

/// Held while a process trains into a folder; removes the lock when dropped.
pub struct RunLock {
    path: PathBuf,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Refuses a folder that already holds a run, unless `overwrite`: a new
/// run must not silently replace an old one's model.
pub fn check_free(dir: &Path, overwrite: bool) -> anyhow::Result<()> {
    if overwrite {
        return Ok(());
    }
    if let Some(f) = RUN_FILES.iter().find(|f| dir.join(f).exists()) {
        bail!(
            "{0}: already holds a run ({f}); continue it with --resume {0}, or pass --overwrite to replace it",
            dir.display()
        );
    }
    Ok(())
}

/// Creates `dir` (for a new run) and locks it.
pub fn claim(dir: &Path) -> anyhow::Result<RunLock> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    lock(dir)
}

/// Locks a run folder for this process. A lock whose process is gone is
/// taken over; one whose process still runs is an error.
pub fn lock(dir: &Path) -> anyhow::Result<RunLock> {
    let path = dir.join(LOCK);
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                writeln!(f, "{}", std::process::id())
                    .with_context(|| format!("{}", path.display()))?;
                return Ok(RunLock { path });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let pid = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok());
                if let Some(pid) = pid.filter(|&p| alive(p)) {
                    bail!(
                        "{}: another recur process (pid {pid}) is training into this folder; wait for it, or remove {} if that process is not recur",
                        dir.display(),
                        path.display()
                    );
                }
                // Left by a process that is gone: take it over.
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("{}: cannot lock the run folder", path.display()))
            }
        }
    }
    bail!("{}: cannot lock the run folder", dir.display())
}

/// Whether process `pid` runs (Linux: /proc; elsewhere assumed, so a
/// stale lock is reported rather than taken over).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}
