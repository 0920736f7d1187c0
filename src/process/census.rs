//! The census: every process of every run that no cgroup holds, found and remembered by one
//! look at /proc per interval for all the supervisor's runs together (Linux).
//!
//! Without a cgroup nothing in the kernel lists a run's processes, and a daemon can leave the
//! process group (`setsid`), lose its parent (double fork), clear its environment (the
//! `SYMBIONT_RUN` marker goes) and rename itself. What cannot be undone is where it came from:
//! - Each run's main process is a child subreaper (set between clone and exec, it survives
//!   `execve`), so a descendant orphaned while the main lives is re-parented to the main, and
//!   one orphaned later to the supervisor (a subreaper too): a descendant never leaves the
//!   supervisor's subtree.
//! - The census looks at /proc every interval (`native_execution.watchdog_interval_ms` for runs
//!   with a memory limit; the watchdog drives it) and classifies each process it has not seen
//!   yet, oldest first: a child of a member is a member of the same run; a child of the
//!   supervisor is the run whose marker it carries. Once a member, always a member, whatever it
//!   renames itself to or however it re-parents.
//! - A process is known by its pid and start time. Unchanged processes cost nothing per look:
//!   the directory entry's inode number of `/proc/PID` stays the same for one process, and only
//!   a new inode number has its `stat` read. Each member keeps its `stat` file open: a read of
//!   it fails once that process is gone, even if the pid is reused, so a member's figures (and
//!   its kills: `pidfd_open`, then a read of that file proves the pidfd names the member) never
//!   reach another process.
//!
//! Many runs share one census: each look costs one listing of /proc, a hash lookup per process
//! on the host, and one `pread` per member; runs are told apart by ancestry and by marker, both
//! unique to one run of one supervisor, so concurrent runs (and other supervisors) never mix.
//! Every member is also registered with the guardian, which kills those still alive (same pid,
//! same start time) if the supervisor dies.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::DirEntryExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::guardian::Guardian;
use crate::sampler::procfs::{env_value, parse_stat, read_proc};
use crate::sampler::{read_at, ProcSample};
use crate::supervisor::Sig;

/// One process the census has seen.
#[derive(Debug)]
struct Seen {
    /// Inode number of its `/proc/PID` entry: a different one is a different process (or the
    /// same one with its entry evicted, which one read of `stat` tells apart).
    ino: u64,
    start: u64,
    /// The run (marker) it belongs to, with its kept-open `stat` and last figures.
    member: Option<Member>,
}

#[derive(Debug)]
struct Member {
    run: Arc<str>,
    stat: File,
    last: Option<ProcSample>,
}

#[derive(Debug, Default)]
struct State {
    looked_at: Option<Instant>,
    seen: HashMap<i32, Seen>,
    /// The members of each run (by marker).
    runs: HashMap<Arc<str>, HashSet<i32>>,
    buf: Vec<u8>,
}

impl State {
    /// `p` (with its `/proc` inode `ino`) belongs to no run: remembered, so it is not looked
    /// at again.
    fn not_a_member(&mut self, p: &ProcSample, ino: u64) {
        self.seen.insert(
            p.pid,
            Seen {
                ino,
                start: p.start,
                member: None,
            },
        );
    }
}

/// The supervisor's census of its runs without a cgroup.
#[derive(Debug)]
pub struct Census {
    state: Mutex<State>,
    /// A look younger than this is reused.
    max_age: Duration,
    me: i32,
    guardian: Option<Arc<Guardian>>,
}

impl Census {
    pub fn new(interval: Duration, guardian: Option<Arc<Guardian>>) -> Census {
        Census {
            state: Mutex::default(),
            max_age: interval / 2,
            me: std::process::id() as i32,
            guardian,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A run starts: `marker` (`SYMBIONT_RUN=<token>`) names it.
    pub fn track(&self, marker: &str) {
        self.lock().runs.entry(marker.into()).or_default();
    }

    /// `pid` is the main process of the run `marker`.
    pub fn adopt(&self, marker: &str, pid: i32) {
        let mut st = self.lock();
        let Some(run) = st.runs.get_key_value(marker).map(|(k, _)| k.clone()) else {
            return;
        };
        if let Some(p) = read_proc(pid) {
            let ino = std::fs::metadata(format!("/proc/{pid}"))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap_or(0);
            self.join(&mut st, pid, ino, p.start, run);
        }
    }

    /// The run is over: its members are forgotten (and left to the guardian no more).
    pub fn forget(&self, marker: &str) {
        let mut st = self.lock();
        let Some(pids) = st.runs.remove(marker) else {
            return;
        };
        for pid in pids {
            if let Some(s) = st.seen.get_mut(&pid) {
                if s.member.take().is_some() {
                    if let Some(g) = &self.guardian {
                        g.unregister_process(pid, s.start);
                    }
                }
            }
        }
    }

    /// The live processes of the run `marker` as of a look at most half an interval old (or
    /// taken now, with `fresh`). Always `Some` here: the census keeps every run in view.
    pub fn samples(&self, marker: &str, fresh: bool) -> Option<Vec<ProcSample>> {
        let mut st = self.lock();
        if fresh || st.looked_at.is_none_or(|t| t.elapsed() >= self.max_age) {
            self.look(&mut st);
        }
        let Some(pids) = st.runs.get(marker) else {
            return Some(Vec::new());
        };
        Some(
            pids.iter()
                .filter_map(|p| st.seen.get(p)?.member.as_ref()?.last.clone())
                .collect(),
        )
    }

    /// Sends `sig` to every member of the run `marker` still alive, each through a pidfd that
    /// is proven to name it. Returns the members' pids (`None` where there is no census).
    pub fn signal(&self, marker: &str, sig: Sig) -> Option<Vec<i32>> {
        let mut st = self.lock();
        self.look(&mut st);
        let State {
            seen, runs, buf, ..
        } = &mut *st;
        let pids: Vec<i32> = runs.get(marker)?.iter().copied().collect();
        let num = super::signal::number(sig);
        for p in &pids {
            if let Some(m) = seen.get(p).and_then(|s| s.member.as_ref()) {
                signal_member(*p, &m.stat, num, buf);
            }
        }
        Some(pids)
    }

    fn join(&self, st: &mut State, pid: i32, ino: u64, start: u64, run: Arc<str>) {
        if st
            .seen
            .get(&pid)
            .is_some_and(|s| s.start == start && s.member.is_some())
        {
            return;
        }
        let Ok(stat) = File::open(format!("/proc/{pid}/stat")) else {
            return;
        };
        // The file opened must be the process whose start time was read.
        let mut buf = std::mem::take(&mut st.buf);
        let now = read_at(&stat, &mut buf)
            .and_then(|_| std::str::from_utf8(&buf).ok().and_then(parse_stat));
        st.buf = buf;
        let Some(now) = now.filter(|p| p.start == start) else {
            return;
        };
        if let Some(g) = &self.guardian {
            g.register_process(pid, start);
        }
        st.runs.entry(run.clone()).or_default().insert(pid);
        st.seen.insert(
            pid,
            Seen {
                ino,
                start,
                member: Some(Member {
                    run,
                    stat,
                    last: Some(now),
                }),
            },
        );
    }

    /// One look at /proc: new processes classified, members re-read, the gone forgotten.
    fn look(&self, st: &mut State) {
        st.looked_at = Some(Instant::now());
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        let mut listed = HashSet::with_capacity(st.seen.len() + 64);
        let mut changed = Vec::new();
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            listed.insert(pid);
            let ino = e.ino();
            if st.seen.get(&pid).is_none_or(|s| s.ino != ino) {
                changed.push((pid, ino));
            }
        }
        // Gone from /proc: forgotten.
        let gone: Vec<i32> = st
            .seen
            .keys()
            .filter(|p| !listed.contains(p))
            .copied()
            .collect();
        for pid in gone {
            self.drop_seen(st, pid);
        }
        // New (or re-listed) entries: the same process keeps its start time.
        let mut new = Vec::new();
        for (pid, ino) in changed {
            let Some(p) = read_proc(pid) else { continue };
            match st.seen.get_mut(&pid) {
                Some(s) if s.start == p.start => s.ino = ino,
                _ => {
                    self.drop_seen(st, pid);
                    new.push((p, ino));
                }
            }
        }
        // Oldest first, so a parent is classified before its children; a few passes settle
        // ties of the same tick.
        new.sort_by_key(|(p, _)| (p.start, p.pid));
        for _ in 0..3 {
            let mut rest = Vec::new();
            for (p, ino) in new {
                match self.run_of(st, &p) {
                    Some(Some(run)) => self.join(st, p.pid, ino, p.start, run),
                    Some(None) => st.not_a_member(&p, ino),
                    None => rest.push((p, ino)),
                }
            }
            new = rest;
            if new.is_empty() {
                break;
            }
        }
        for (p, ino) in new {
            st.not_a_member(&p, ino);
        }
        // Every member re-read through its own `stat`: the figures, or its end.
        let mut buf = std::mem::take(&mut st.buf);
        let mut dead = Vec::new();
        for (pid, s) in st.seen.iter_mut() {
            let Some(m) = s.member.as_mut() else { continue };
            m.last = read_at(&m.stat, &mut buf)
                .and_then(|_| std::str::from_utf8(&buf).ok().and_then(parse_stat));
            if m.last.is_none() {
                dead.push(*pid);
            }
        }
        st.buf = buf;
        for pid in dead {
            self.drop_seen(st, pid);
        }
    }

    /// The run a new process belongs to: `Some(Some(run))` a member, `Some(None)` not ours,
    /// `None` not known yet (its parent is new in this look too).
    fn run_of(&self, st: &State, p: &ProcSample) -> Option<Option<Arc<str>>> {
        if let Some(parent) = st.seen.get(&p.ppid) {
            if let Some(m) = &parent.member {
                // A child is younger than its parent; an older one is a reused pid's.
                return Some((p.start >= parent.start).then(|| m.run.clone()));
            }
            if p.ppid != self.me {
                return Some(None);
            }
        }
        if p.ppid == self.me {
            // Orphaned to the supervisor (or a main not adopted yet): its marker says whose.
            let marker = env_value(p.pid, "SYMBIONT_RUN").map(|t| format!("SYMBIONT_RUN={t}"));
            return Some(
                marker.and_then(|m| st.runs.get_key_value(m.as_str()).map(|(k, _)| k.clone())),
            );
        }
        // A parent not seen yet: unknown until it is.
        if st.seen.contains_key(&p.ppid) {
            Some(None)
        } else {
            None
        }
    }

    fn drop_seen(&self, st: &mut State, pid: i32) {
        let Some(s) = st.seen.remove(&pid) else {
            return;
        };
        if let Some(m) = s.member {
            if let Some(pids) = st.runs.get_mut(&m.run) {
                pids.remove(&pid);
            }
            if let Some(g) = &self.guardian {
                g.unregister_process(pid, s.start);
            }
        }
    }
}

/// Sends signal `num` to the member `pid` whose kept-open `stat` is `stat`: a pidfd is opened
/// first, then `stat` read; a successful read means the member was alive after the pidfd was
/// opened, so the pidfd names it and not a process that reused the pid.
fn signal_member(pid: i32, stat: &File, num: i32, buf: &mut Vec<u8>) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no memory
    // is passed. (nix has no wrapper for it.)
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` is the descriptor pidfd_open just returned, owned by nothing else.
    let fd: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    let alive = read_at(stat, buf)
        .and_then(|_| std::str::from_utf8(buf).ok().and_then(parse_stat))
        .is_some_and(|p| p.state != 'Z');
    if !alive {
        return false;
    }
    // SAFETY: pidfd_send_signal takes the pidfd (open, owned by `fd` until the end of this
    // function), a signal number, a null siginfo (as kill(2) would fill it) and flags 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            num,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
}
