//! The sampler and watchdog: one thread samples every live run once per refresh, publishes
//! the figures into each run's status, warns near a limit, and orders a kill where the OS did
//! not enforce one. Nothing here waits on an agent or on a client.
//!
//! The fast path keeps files open and re-reads them with `pread`: the run's cgroup CPU counter
//! first, and only if it moved (the tree ran since the last sample) its process list and each
//! process's `/proc/PID/stat`. An idle agent costs one read per refresh.
//!
//! Runs whose memory no cgroup limits (an ordinary user without a delegated cgroup, macOS) have
//! only a per-process limit from the OS (RLIMIT_DATA), so the sum over their tree is this
//! thread's to hold: between refreshes it checks just their memory, every
//! [`Intervals::fast`] (`native_execution.watchdog_interval_ms`), so that a tree of fast
//! allocators is stopped within about one such interval of passing its limit.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use serde_json::json;

use super::target::Tree;
use super::{Actor, Control, Event, Reason, RunId, RunState, RunStatus, Scope, Sig};
use crate::sampler::ProcSample;
use crate::supervisor::Limits;

/// Samples kept per run for the sparklines (two minutes at the default refresh).
pub const HISTORY: usize = 120;

/// One process of a run's tree, as last sampled.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcRow {
    pub pid: i32,
    pub ppid: i32,
    pub name: String,
    pub cpu_pct: f64,
    pub rss_bytes: u64,
}

/// Limits the OS enforces for a run, which the watchdog then leaves to it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OsEnforced {
    /// A cgroup memory limit.
    pub memory: bool,
    /// A pids cgroup.
    pub pids: bool,
    /// No cgroup holds the memory, but each process has the memory limit as its own
    /// (RLIMIT_DATA): an allocation past it fails inside the agent.
    pub per_process_memory: bool,
}

/// A run under watch.
pub(crate) struct Watched {
    pub id: RunId,
    pub agent: String,
    pub status: Arc<Mutex<RunStatus>>,
    pub tree: Arc<dyn Tree>,
    pub ctl: super::control::ControlTx,
    pub limits: Limits,
    pub os: OsEnforced,
    probe: Probe,
    warned_mem: u8,
    warned_time: u8,
    killed: bool,
    /// The run has ended: dropped at the next refresh.
    done: bool,
}

impl Watched {
    pub fn new(
        id: RunId,
        agent: String,
        status: Arc<Mutex<RunStatus>>,
        tree: Arc<dyn Tree>,
        ctl: super::control::ControlTx,
        limits: Limits,
        os: OsEnforced,
    ) -> Watched {
        Watched {
            id,
            agent,
            status,
            tree,
            ctl,
            limits,
            os,
            probe: Probe::default(),
            warned_mem: 0,
            warned_time: 0,
            killed: false,
            done: false,
        }
    }
}

/// Kept-open files of one run.
#[derive(Default)]
struct Probe {
    /// The tree's CPU counter (cgroup), read first to skip idle runs: its path, and the file
    /// while the budget of kept files lets it stay open.
    cpu_path: Option<std::path::PathBuf>,
    cpu: Option<crate::sampler::budget::Kept>,
    cpu_v2: bool,
    opened: bool,
    /// The platform's reader of the tree's processes (where the tree does not sample itself).
    reader: crate::sampler::Reader,
    /// The last CPU time of each process.
    last_cpu: HashMap<i32, u64>,
    last_total_ns: Option<u64>,
    last_at: Option<Instant>,
}

fn parse_cpu(text: &[u8], v2: bool) -> Option<u64> {
    let t = std::str::from_utf8(text).ok()?;
    if v2 {
        let us: u64 = t
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))?
            .trim()
            .parse()
            .ok()?;
        Some(us * 1000)
    } else {
        t.trim().parse().ok()
    }
}

/// The figures of one sample.
struct Figures {
    rss: u64,
    total_cpu_ns: u64,
    procs: Vec<ProcRow>,
}

impl Probe {
    /// The tree's processes as sampled now: by the tree itself where it keeps them in view,
    /// else through this probe's reader.
    fn processes(&mut self, tree: &dyn Tree, buf: &mut Vec<u8>) -> Vec<ProcSample> {
        tree.samples()
            .unwrap_or_else(|| self.reader.read(&tree.pids(), buf))
    }

    /// The resident memory of the whole tree, now.
    fn rss(&mut self, tree: &dyn Tree, buf: &mut Vec<u8>) -> u64 {
        self.processes(tree, buf)
            .iter()
            .filter(|s| s.state != 'Z')
            .map(|s| s.rss_bytes)
            .sum()
    }

    fn open_cpu(&mut self, tree: &dyn Tree) {
        self.opened = true;
        if let Some((path, v2)) = tree.cpu_counter() {
            self.cpu_path = Some(path);
            self.cpu_v2 = v2;
        }
    }

    /// The tree's CPU time from its cgroup counter: through the kept-open file, else (no room
    /// in the budget of kept files) opened, read and closed.
    fn read_cpu(&mut self, buf: &mut Vec<u8>) -> Option<u64> {
        if self.cpu.as_ref().is_some_and(|k| k.over()) {
            self.cpu = None;
        }
        if let Some(k) = &self.cpu {
            return crate::sampler::read_at(k.file(), buf)
                .and_then(|_| parse_cpu(buf, self.cpu_v2));
        }
        let f = File::open(self.cpu_path.as_ref()?).ok()?;
        let total = crate::sampler::read_at(&f, buf).and_then(|_| parse_cpu(buf, self.cpu_v2));
        self.cpu = crate::sampler::budget::FdBudget::global().keep(f).ok();
        total
    }

    /// Samples the tree; `None` when the tree did not run since the last sample.
    fn sample(&mut self, tree: &dyn Tree, force: bool, buf: &mut Vec<u8>) -> Option<Figures> {
        if !self.opened {
            self.open_cpu(tree);
        }
        let now = Instant::now();
        let cg_total = self.read_cpu(buf);
        if let (Some(t), Some(last)) = (cg_total, self.last_total_ns) {
            if t == last && !force {
                return None;
            }
        }
        let dt = self
            .last_at
            .map(|t| now.duration_since(t).as_nanos() as f64)
            .unwrap_or(0.0);
        let samples = self.processes(tree, buf);
        self.last_cpu
            .retain(|p, _| samples.iter().any(|s| s.pid == *p));
        let mut procs = Vec::with_capacity(samples.len());
        let mut rss = 0;
        let mut sum_cpu = 0;
        for s in samples {
            if s.state == 'Z' {
                continue;
            }
            let prev = self.last_cpu.insert(s.pid, s.cpu_ns).unwrap_or(u64::MAX);
            let pct = if prev != u64::MAX && dt > 0.0 {
                s.cpu_ns.saturating_sub(prev) as f64 / dt * 100.0
            } else {
                0.0
            };
            rss += s.rss_bytes;
            sum_cpu += s.cpu_ns;
            procs.push(ProcRow {
                pid: s.pid,
                ppid: s.ppid,
                name: s.name,
                cpu_pct: pct,
                rss_bytes: s.rss_bytes,
            });
        }
        let total = cg_total.unwrap_or(sum_cpu);
        self.last_total_ns = Some(total);
        self.last_at = Some(now);
        Some(Figures {
            rss,
            total_cpu_ns: total,
            procs,
        })
    }
}

/// The figures of one run after a refresh, for the verdict and the warnings.
struct Published {
    sampled: bool,
    state: RunState,
    deadline: Option<Instant>,
    rss: u64,
    cpu_ns: u64,
    processes: u64,
}

/// The sampler thread's state.
struct Watchdog {
    warn_ratio: f64,
    critical_ratio: f64,
    events: tokio::sync::broadcast::Sender<Event>,
    audit: Arc<super::audit::AuditLog>,
    buf: Vec<u8>,
}

/// How often the watchdog looks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Intervals {
    /// Every run is sampled and published.
    pub refresh: Duration,
    /// The memory of runs no cgroup holds to their memory limit is checked.
    pub fast: Duration,
}

/// The sampler thread's main loop.
pub(crate) fn watch_loop(
    rx: Receiver<Watched>,
    intervals: Intervals,
    warn_ratio: f64,
    critical_ratio: f64,
    events: tokio::sync::broadcast::Sender<Event>,
    audit: Arc<super::audit::AuditLog>,
    fleet_counter: Option<(std::path::PathBuf, bool)>,
) {
    // The CPU counter of the group holding every run: when it has not moved, no run ran, and
    // a refresh of a thousand idle agents costs one read.
    let fleet = fleet_counter.and_then(|(p, v2)| File::open(p).ok().map(|f| (f, v2)));
    let mut fleet_last: Option<u64> = None;
    let mut runs: Vec<Watched> = Vec::new();
    let mut dog = Watchdog {
        warn_ratio,
        critical_ratio,
        events,
        audit,
        buf: Vec::with_capacity(4096),
    };
    let refresh = intervals.refresh;
    let mut next = Instant::now();
    let mut next_fast = next;
    loop {
        // Take new runs until the next sample (or memory check) is due.
        loop {
            let due = if runs.iter().any(Watched::fast) {
                next.min(next_fast)
            } else {
                next
            };
            let wait = due.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(w) => runs.push(w),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    if runs.is_empty() {
                        return;
                    }
                    std::thread::sleep(wait);
                    break;
                }
            }
        }
        let now = Instant::now();
        if now >= next_fast {
            next_fast += intervals.fast;
            if next_fast < now {
                next_fast = now + intervals.fast;
            }
        }
        if now < next {
            // Between refreshes: only the memory of the runs the OS does not hold in sum.
            for w in runs.iter_mut().filter(|w| w.fast()) {
                dog.check_memory(w);
            }
            continue;
        }
        next += refresh;
        if next < now {
            next = now + refresh;
        }
        runs.retain(|w| !w.done);
        let buf = &mut dog.buf;
        let fleet_now = fleet
            .as_ref()
            .and_then(|(f, v2)| crate::sampler::read_at(f, buf).and_then(|_| parse_cpu(buf, *v2)));
        let fleet_idle = fleet_now.is_some() && fleet_now == fleet_last;
        fleet_last = fleet_now;
        // How full the descriptor table is, for the files kept open only for speed: not while
        // the fleet is idle (no run ran, none started: the table is as it was), so an idle
        // supervisor does not list its descriptors every refresh.
        if !runs.is_empty() && !fleet_idle {
            crate::sampler::budget::FdBudget::global().recount();
        }
        for w in &mut runs {
            if let Some(p) = dog.refresh(w, fleet_idle) {
                dog.judge(w, &p);
            }
        }
    }
}

impl Watched {
    /// Only a per-process limit holds this run's memory: the watchdog checks its sum often.
    fn fast(&self) -> bool {
        !self.os.memory && !self.killed && !self.done && self.limits.memory_bytes.is_some()
    }
}

impl Watchdog {
    /// The memory check between refreshes of a run whose memory no cgroup limits: the tree's
    /// resident memory, its peak kept for the record, and a kill past the limit.
    fn check_memory(&mut self, w: &mut Watched) {
        let state = w.status.lock().unwrap_or_else(|e| e.into_inner()).state;
        if state != RunState::Running {
            return;
        }
        let rss = w.probe.rss(&*w.tree, &mut self.buf);
        {
            let mut s = w.status.lock().unwrap_or_else(|e| e.into_inner());
            if s.state != RunState::Running {
                return;
            }
            s.peak_rss_bytes = s.peak_rss_bytes.max(rss);
        }
        if w.limits.memory_bytes.is_some_and(|m| rss > m) {
            w.killed = true;
            // A run whose control loop has gone has ended: nothing is left to kill.
            let _ = w.ctl.send(Control::Kill {
                sig: Sig::Kill,
                scope: Scope::Tree,
                by: Actor::Watchdog,
                reason: Reason::MemoryLimit,
            });
        }
    }

    /// Samples one run (unless nothing of it can have changed) and publishes the figures into
    /// its status. `None` for a run not running yet, or over.
    fn refresh(&mut self, w: &mut Watched, fleet_idle: bool) -> Option<Published> {
        // The status is locked to read the state, then again to publish: never while the tree
        // is being read, so neither the run's task nor the dashboard waits on /proc.
        let state = w.status.lock().unwrap_or_else(|e| e.into_inner()).state;
        if state == RunState::Exited {
            w.done = true;
            return None;
        }
        if state == RunState::Starting {
            return None;
        }
        // A tree whose CPU counter did not move ran nothing since the last sample: no fork, no
        // allocation, no OOM kill (each costs CPU time), so its figures still hold. Only the
        // first sample is forced; runs without a counter are sampled every time. The fleet's
        // counter covers every run with a counter of its own, kept open or not (5,000 runs
        // outgrow the budget of kept files).
        let force = w.probe.last_total_ns.is_none();
        let fig = if fleet_idle && !force && w.probe.cpu_path.is_some() {
            None
        } else {
            w.probe.sample(&*w.tree, force, &mut self.buf)
        };
        let now = Instant::now();
        let mut s = w.status.lock().unwrap_or_else(|e| e.into_inner());
        // The run may have ended while its tree was read: its record's figures stand.
        if s.state == RunState::Exited {
            w.done = true;
            return None;
        }
        if let Some(f) = &fig {
            let dt = s
                .sampled_at
                .map(|t| now.duration_since(t).as_nanos() as f64)
                .unwrap_or(0.0);
            s.cpu_pct = if dt > 0.0 && s.cpu_ns > 0 {
                f.total_cpu_ns.saturating_sub(s.cpu_ns) as f64 / dt * 100.0
            } else {
                0.0
            };
            s.rss_bytes = f.rss;
            s.peak_rss_bytes = s.peak_rss_bytes.max(f.rss);
            s.cpu_ns = s.cpu_ns.max(f.total_cpu_ns);
            s.processes = f.procs.len() as u64;
            s.peak_processes = s.peak_processes.max(s.processes);
            s.procs = f.procs.clone();
            s.touch();
        } else if s.cpu_pct != 0.0 {
            s.cpu_pct = 0.0;
            for p in &mut s.procs {
                p.cpu_pct = 0.0;
            }
            s.touch();
        }
        if let Some(d) = w.tree.denials() {
            let n = d.count();
            if n != s.denials {
                s.denials = n;
                s.denied = d.recent();
                s.touch();
            }
        }
        s.sampled_at = Some(now);
        let (pct, rss) = (s.cpu_pct as f32, s.rss_bytes);
        s.history.push(pct, rss);
        Some(Published {
            sampled: fig.is_some(),
            state: s.state,
            deadline: s.deadline,
            rss: s.rss_bytes,
            cpu_ns: s.cpu_ns,
            processes: s.processes,
        })
    }

    /// The watchdog proper: the OS first, the supervisor wherever the OS did not act; then the
    /// early warnings.
    fn judge(&self, w: &mut Watched, p: &Published) {
        if w.killed || p.state != RunState::Running {
            return;
        }
        if let Some((reason, by)) = verdict(w, p) {
            w.killed = true;
            // A run whose control loop has gone has ended: nothing is left to kill.
            let _ = w.ctl.send(Control::Kill {
                sig: Sig::Kill,
                scope: Scope::Tree,
                by,
                reason,
            });
            return;
        }
        let l = &w.limits;
        if let Some(m) = l.memory_bytes {
            let lv = self.level(p.rss as f64 / m as f64);
            self.warn(
                w.id,
                &w.agent,
                "memory",
                p.rss as f64,
                m as f64,
                lv,
                &mut w.warned_mem,
            );
        }
        if let (Some(t), Some(d)) = (l.timeout, p.deadline) {
            let used = t.saturating_sub(d.saturating_duration_since(Instant::now()));
            let (used, max) = (used.as_secs_f64(), t.as_secs_f64());
            let lv = self.level(used / max);
            self.warn(w.id, &w.agent, "time", used, max, lv, &mut w.warned_time);
        }
    }

    fn level(&self, ratio: f64) -> u8 {
        if ratio >= self.critical_ratio {
            2
        } else if ratio >= self.warn_ratio {
            1
        } else {
            0
        }
    }

    /// Warns once per level reached.
    #[allow(clippy::too_many_arguments)]
    fn warn(
        &self,
        id: RunId,
        agent: &str,
        what: &'static str,
        value: f64,
        max: f64,
        lv: u8,
        warned: &mut u8,
    ) {
        if lv <= *warned {
            return;
        }
        *warned = lv;
        let name = if lv == 2 { "critical" } else { "warn" };
        self.audit.record(
            "warning",
            json!({"run_id": id, "agent": agent, "limit": what, "level": name, "value": value, "max": max}),
        );
        // No subscriber is no error: nobody is listening.
        let _ = self.events.send(Event::Warning {
            run_id: id,
            agent: agent.to_string(),
            limit: what,
            level: name,
            value,
            max,
        });
    }
}

/// Whether a run must be killed, and why: the kernel's own kills first (OOM, refused forks),
/// then the limits the OS does not hold for this run.
fn verdict(w: &Watched, p: &Published) -> Option<(Reason, Actor)> {
    let l = &w.limits;
    if p.sampled && w.tree.oom_kills() > 0 {
        Some((Reason::MemoryLimit, Actor::Kernel))
    } else if p.sampled && w.tree.fork_refusals() > 0 {
        Some((Reason::ProcessLimit, Actor::Watchdog))
    } else if !w.os.memory && l.memory_bytes.is_some_and(|m| p.rss > m) {
        Some((Reason::MemoryLimit, Actor::Watchdog))
    } else if l
        .cpu_seconds
        .is_some_and(|c| p.cpu_ns > c.saturating_mul(1_000_000_000))
    {
        Some((Reason::CpuLimit, Actor::Watchdog))
    } else if !w.os.pids && l.max_processes.is_some_and(|m| p.processes > m) {
        Some((Reason::ProcessLimit, Actor::Watchdog))
    } else {
        None
    }
}

/// The ratio of a run's use to each of its limits, the largest first: what the dashboard
/// highlights and what "only agents near a limit" filters on.
pub fn pressure(s: &RunStatus) -> f64 {
    let mut p: f64 = 0.0;
    if let Some(m) = s.limits.memory_bytes {
        p = p.max(s.rss_bytes as f64 / m as f64);
    }
    if let (Some(t), Some(d)) = (s.limits.timeout, s.deadline) {
        if s.state != RunState::Exited {
            let used = t.saturating_sub(d.saturating_duration_since(Instant::now()));
            p = p.max(used.as_secs_f64() / t.as_secs_f64());
        }
    }
    if let Some(c) = s.limits.cpu_seconds {
        p = p.max(s.cpu_ns as f64 / 1e9 / c as f64);
    }
    p
}

/// (CPU %, resident bytes) per refresh, oldest first, at most [`HISTORY`] of them, kept by every
/// run, idle or not. Repeated samples are stored once with a count: an idle agent (no CPU, the
/// same resident size) keeps one 12-byte entry instead of 120 samples (1,440 bytes); a busy
/// one at most [`HISTORY`] entries of 12 bytes.
#[derive(Debug, Clone, Default)]
pub struct History {
    runs: VecDeque<Sample>,
    len: usize,
}

/// A run of equal samples of [`History`]: the resident bytes split to keep 4-byte alignment
/// (48 bits: 256 TiB), and how many samples in a row had these values.
#[derive(Debug, Clone, Copy)]
struct Sample {
    cpu: f32,
    rss_lo: u32,
    rss_hi: u16,
    count: u16,
}

impl Sample {
    fn get(self) -> (f32, u64) {
        (
            self.cpu,
            u64::from(self.rss_hi) << 32 | u64::from(self.rss_lo),
        )
    }
}

impl History {
    /// Appends a sample, dropping the oldest past [`HISTORY`].
    pub fn push(&mut self, cpu_pct: f32, rss: u64) {
        if self.len >= HISTORY {
            if let Some(front) = self.runs.front_mut() {
                front.count -= 1;
                if front.count == 0 {
                    self.runs.pop_front();
                }
            }
            self.len -= 1;
        }
        let rss = rss.min((1 << 48) - 1);
        self.len += 1;
        if let Some(back) = self.runs.back_mut() {
            if back.get() == (cpu_pct, rss) && back.count < u16::MAX {
                back.count += 1;
                return;
            }
        }
        let n = self.runs.len();
        if n == self.runs.capacity() {
            let want = (n * 2).clamp(2, HISTORY.max(n + 1));
            self.runs.reserve_exact(want - n);
        }
        self.runs.push_back(Sample {
            cpu: cpu_pct,
            rss_lo: rss as u32,
            rss_hi: (rss >> 32) as u16,
            count: 1,
        });
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// (CPU %, resident bytes), oldest first, expanded as it goes (no copy: the dashboard reads
    /// every limited run's recent samples each refresh).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (f32, u64)> + ExactSizeIterator + '_ {
        Expanded {
            inner: self
                .runs
                .iter()
                .flat_map(|s| std::iter::repeat_n(s.get(), usize::from(s.count))),
            left: self.len,
        }
    }
}

/// The samples of a [`History`], with their count known.
struct Expanded<I> {
    inner: I,
    left: usize,
}

impl<I: Iterator<Item = (f32, u64)>> Iterator for Expanded<I> {
    type Item = (f32, u64);

    fn next(&mut self) -> Option<(f32, u64)> {
        let v = self.inner.next()?;
        self.left -= 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<I: DoubleEndedIterator<Item = (f32, u64)>> DoubleEndedIterator for Expanded<I> {
    fn next_back(&mut self) -> Option<(f32, u64)> {
        let v = self.inner.next_back()?;
        self.left -= 1;
        Some(v)
    }
}

impl<I: Iterator<Item = (f32, u64)>> ExactSizeIterator for Expanded<I> {}

impl FromIterator<(f32, u64)> for History {
    fn from_iter<I: IntoIterator<Item = (f32, u64)>>(it: I) -> History {
        let mut h = History::default();
        for (c, r) in it {
            h.push(c, r);
        }
        h
    }
}

#[cfg(test)]
mod history_tests {
    use super::{History, HISTORY};

    #[test]
    fn repeated_samples_are_stored_once_and_read_back_in_full() {
        let mut h = History::default();
        let mut want = Vec::new();
        // Idle stretches, a busy stretch, idle again: more than the history keeps.
        for i in 0..300u64 {
            let s = match i {
                0..=99 => (0.0, 4096),
                100..=179 => (i as f32, 4096 + i * 10),
                _ => (0.5, 1 << 40),
            };
            h.push(s.0, s.1);
            want.push(s);
        }
        let want = &want[want.len() - HISTORY..];
        assert_eq!(h.len(), HISTORY);
        assert_eq!(h.iter().collect::<Vec<_>>(), want);
        assert_eq!(h.iter().len(), HISTORY);
        assert_eq!(h.iter().next_back(), Some((0.5, 1 << 40)));
        // The idle tail is one entry.
        let mut idle = History::default();
        for _ in 0..1000 {
            idle.push(0.0, 1 << 20);
        }
        assert_eq!(idle.len(), HISTORY);
        assert_eq!(idle.runs.len(), 1);
        assert!(idle.runs.capacity() <= 2, "{}", idle.runs.capacity());
    }
}
