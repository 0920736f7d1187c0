//! Removes the cgroups of ended runs, on one thread of its own.
//!
//! Removing a group (rmdir) happens under the kernel's single cgroup mutex, and on a v1 or
//! hybrid host each run has a group in several hierarchies: the removals of many runs cannot
//! go faster than one at a time. Done from a blocking task per run, a thousand runs ending
//! together (a `shutdown()`) started hundreds of threads that queued on that mutex and took
//! the CPU from the reaper and the runs' tasks: a run's removal then took 14-65 ms instead of
//! under 0.1 ms. One thread removing them in turn is as fast as the kernel allows and leaves
//! the other cores to everything else. Two threads were measured too: no faster.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::sandbox::cgroup::RunCgroup;

/// How long a group that still holds processes (killed on every attempt) is retried.
const RETRY_FOR: Duration = Duration::from_millis(500);
/// The pause between two attempts at groups that are not empty yet.
const RETRY_EVERY: Duration = Duration::from_millis(2);

struct Job {
    cg: RunCgroup,
    until: Instant,
    /// `None` once removed; the groups back if they could not be removed in time.
    done: oneshot::Sender<Option<RunCgroup>>,
}

/// The removal thread.
pub(crate) struct Remover {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Remover {
    pub fn start() -> Remover {
        let (tx, rx) = mpsc::channel();
        match std::thread::Builder::new()
            .name("symbiont-rmdir".into())
            .spawn(move || remove_loop(rx))
        {
            Ok(t) => Remover {
                tx: Some(tx),
                thread: Some(t),
            },
            Err(e) => {
                tracing::debug!("no cgroup removal thread ({e}): removals run on blocking tasks");
                Remover {
                    tx: None,
                    thread: None,
                }
            }
        }
    }

    /// Kills whatever is left in `cg` and removes its groups; `Some` gives them back when
    /// they could not be removed (a process that would not die).
    pub async fn remove(&self, cg: RunCgroup) -> Option<RunCgroup> {
        let (done, rx) = oneshot::channel();
        let job = Job {
            cg,
            until: Instant::now() + RETRY_FOR,
            done,
        };
        let job = match &self.tx {
            Some(tx) => match tx.send(job) {
                Ok(()) => return rx.await.unwrap_or(None),
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        // No removal thread (it could not be started): on a blocking task of its own.
        let mut cg = job.cg;
        match tokio::task::spawn_blocking(move || (cg.destroy(), cg)).await {
            Ok((false, cg)) => Some(cg),
            _ => None,
        }
    }

    /// Lets the thread finish what it was given, and waits for it to end.
    pub fn stop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            // A thread that panicked has said so on stderr already.
            let _ = t.join();
        }
    }
}

impl Drop for Remover {
    fn drop(&mut self) {
        self.stop();
    }
}

fn remove_loop(rx: Receiver<Job>) {
    let mut pending: Vec<Job> = Vec::new();
    let mut open = true;
    loop {
        if pending.is_empty() {
            if !open {
                return;
            }
            match rx.recv() {
                Ok(j) => pending.push(j),
                Err(_) => return,
            }
        }
        // Everything that has come in, in one pass.
        while let Ok(j) = rx.try_recv() {
            pending.push(j);
        }
        let now = Instant::now();
        let mut i = 0;
        while i < pending.len() {
            let removed = pending[i].cg.try_remove();
            if removed || now >= pending[i].until {
                let j = pending.swap_remove(i);
                // Nobody waits any more: the groups, dropped here, are removed or logged.
                let _ = j.done.send((!removed).then_some(j.cg));
            } else {
                i += 1;
            }
        }
        if !pending.is_empty() {
            // Groups still busy: their processes were just killed; new work meanwhile is
            // taken at once.
            match rx.recv_timeout(RETRY_EVERY) {
                Ok(j) => pending.push(j),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    std::thread::sleep(RETRY_EVERY);
                }
            }
        }
    }
}
