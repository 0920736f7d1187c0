//! The private temp directories of confined runs (SPEC 3.1: Moderate and Strict agents write
//! beneath their working directory and a `TMPDIR` made for the run, removed after it).
//!
//! A few are made ahead of time, off the launch path: making a directory took a launch 0.04 to
//! 0.13 ms on this machine's ext4 `/tmp` (figure 11), a large part of what a confined launch adds
//! to a plain one. Each is named after the supervisor's process id and held with a shared
//! `flock` while the supervisor has it, so that a supervisor that was killed before it could
//! remove its directories has them removed by the next one, and one that lives (in another pid
//! namespace sharing `/tmp` too) keeps them.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

/// How many directories wait for the next confined runs.
const STOCK: usize = 2;
/// Every directory's name starts so, then the supervisor's pid and `-`.
const PREFIX: &str = "symbiont-tmp";

/// The stock of one supervisor; what is left in it is removed when it is dropped.
pub struct TempDirs {
    base: PathBuf,
    stock: Mutex<Stock>,
}

/// A run's temp directory, held (its lock) until it is dropped.
pub struct RunTmp {
    pub path: PathBuf,
    _held: Flock<std::fs::File>,
}

impl std::fmt::Debug for RunTmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.path.fmt(f)
    }
}

#[derive(Default)]
struct Stock {
    dirs: Vec<RunTmp>,
    /// A confined run asked for one: the stock is kept full from then on.
    wanted: bool,
    /// Leftovers of dead supervisors were looked for (once, off the launch path).
    swept: bool,
}

impl Default for TempDirs {
    fn default() -> Self {
        TempDirs::new(std::env::temp_dir())
    }
}

impl TempDirs {
    /// The stock of directories beneath `base` (the temp directory); nothing is made yet.
    pub fn new(base: PathBuf) -> TempDirs {
        TempDirs {
            base,
            stock: Mutex::new(Stock::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stock> {
        self.stock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new, empty directory (mode 0700) for a run: one made ahead, else one made now.
    pub fn take(&self) -> io::Result<RunTmp> {
        loop {
            let ready = {
                let mut s = self.lock();
                s.wanted = true;
                s.dirs.pop()
            };
            let Some(dir) = ready else {
                return self.make();
            };
            // Still ours as made: a stocked directory may wait long in a service, and what
            // cleans the temp directory (systemd-tmpfiles, after ten idle days) may have removed
            // it, and someone else made one of that name.
            if still_ours(&dir.path) {
                return Ok(dir);
            }
            tracing::warn!(
                "the temp directory {} made ahead is gone or not this user's any more: another is made",
                dir.path.display()
            );
        }
    }

    fn make(&self) -> io::Result<RunTmp> {
        let template = self
            .base
            .join(format!("{PREFIX}{}-XXXXXX", std::process::id()));
        let fail = |e: &dyn std::fmt::Display| {
            io::Error::other(format!(
                "cannot make the run's temp directory {}: {e}",
                template.display()
            ))
        };
        let path = nix::unistd::mkdtemp(&template).map_err(|e| fail(&e))?;
        let held = std::fs::File::open(&path)
            .map_err(|e| fail(&e))
            .and_then(|f| Flock::lock(f, FlockArg::LockSharedNonblock).map_err(|(_, e)| fail(&e)));
        match held {
            Ok(held) => Ok(RunTmp { path, _held: held }),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                Err(e)
            }
        }
    }

    /// Fills the stock up again, once confined runs have asked for directories. Called off the
    /// launch path (after the agent started).
    pub fn refill(&self) {
        let (missing, sweep) = {
            let mut s = self.lock();
            if !s.wanted {
                return;
            }
            let sweep = !std::mem::replace(&mut s.swept, true);
            (STOCK.saturating_sub(s.dirs.len()), sweep)
        };
        if sweep {
            sweep_dead(&self.base, PREFIX);
        }
        for _ in 0..missing {
            match self.make() {
                Ok(dir) => self.lock().dirs.push(dir),
                Err(e) => {
                    // Runs make their own then, and say why if they cannot.
                    tracing::debug!("{e}");
                    return;
                }
            }
        }
    }
}

impl Drop for TempDirs {
    fn drop(&mut self) {
        for dir in std::mem::take(&mut self.lock().dirs) {
            if let Err(e) = std::fs::remove_dir(&dir.path) {
                tracing::warn!(
                    "cannot remove the unused temp directory {}: {e}",
                    dir.path.display()
                );
            }
        }
    }
}

/// Whether `path` is still a directory of this user's, mode 0700, not a link.
fn still_ours(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| {
        m.is_dir()
            && m.uid() == nix::unistd::getuid().as_raw()
            && m.permissions().mode() & 0o777 == 0o700
    })
}

/// Whether no process holds the directory (a supervisor's lock goes with it).
fn unheld(path: &Path) -> bool {
    std::fs::File::open(path).is_ok_and(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok())
}

/// Removes the directories beneath `base` named `<prefix><supervisor pid>-...` of supervisors of
/// this user that no longer run (killed before they could remove them), with whatever their
/// runs left inside; one that some process holds (`flock`) stays.
pub(crate) fn sweep_dead(base: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let uid = nix::unistd::getuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let dead = pid > 0
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::ESRCH);
        // Not a link, and this user's own: never anything another user made to look alike;
        // and held by no one (a supervisor in another pid namespace holds its own).
        let ours = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if dead && ours && unheld(&entry.path()) {
            let path = entry.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::info!(
                    "removed {}, left by a supervisor that no longer runs",
                    path.display()
                ),
                Err(e) => tracing::debug!("cannot remove {}: {e}", path.display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_takes_a_stocked_directory_and_the_rest_goes_with_the_stock() {
        let base =
            std::env::temp_dir().join(format!("symbiont-tmpdirs-test-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        // A dead supervisor's leftover (pid 0x7fff_fff0 is never a live process here), with
        // a file inside; a live one's (pid 1 runs: kept); a "dead" one's that a supervisor in
        // another pid namespace still holds (kept).
        let dead = base.join(format!("{PREFIX}2147483632-abcdef"));
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::write(dead.join("f"), "x").unwrap();
        let live = base.join(format!("{PREFIX}1-abcdef"));
        std::fs::create_dir_all(&live).unwrap();
        let held = base.join(format!("{PREFIX}2147483631-abcdef"));
        std::fs::create_dir_all(&held).unwrap();
        let holder = Flock::lock(
            std::fs::File::open(&held).unwrap(),
            FlockArg::LockSharedNonblock,
        )
        .unwrap();
        let dirs = TempDirs::new(base.clone());
        // Nothing is stocked before a run asks.
        dirs.refill();
        assert_eq!(std::fs::read_dir(&base).unwrap().count(), 3);
        let first = dirs.take().unwrap();
        assert!(first.path.is_dir() && first.path.starts_with(&base));
        dirs.refill();
        assert!(!dead.exists(), "the dead supervisor's directory is removed");
        assert!(live.exists(), "pid 1 runs: its directory stays");
        assert!(held.exists(), "a held directory stays");
        drop(holder);
        let stocked: Vec<PathBuf> = dirs.lock().dirs.iter().map(|d| d.path.clone()).collect();
        assert_eq!(stocked.len(), STOCK);
        // One made ahead that is no longer ours as made (here: its mode changed) is not handed
        // out; the other is.
        std::fs::set_permissions(&stocked[1], std::fs::Permissions::from_mode(0o755)).unwrap();
        let second = dirs.take().unwrap();
        assert_eq!(second.path, stocked[0]);
        drop(dirs);
        assert!(
            first.path.exists() && second.path.exists(),
            "taken ones are the runs'"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
