//! Sampling through sysinfo where there is no /proc (Windows, macOS): one `System` per
//! sampling thread, refreshed only for the pids asked about.

use std::cell::RefCell;
use std::collections::HashMap;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::ProcSample;

thread_local! {
    static SYS: RefCell<Option<System>> = const { RefCell::new(None) };
}

fn with_system<R>(f: impl FnOnce(&mut System) -> R) -> Option<R> {
    SYS.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            *s = System::new().ok();
        }
        s.as_mut().map(f)
    })
}

fn pid_of(p: i32) -> Pid {
    Pid::from_u32(p as u32)
}

/// CPU time, resident memory, parent and name of each of `pids` still alive.
pub fn sample(pids: &[i32]) -> Vec<ProcSample> {
    let out = read(pids);
    if out.iter().any(|p| p.name.is_empty()) {
        // Nameless: sysinfo caught it while it was created (seen under Wine on a loaded
        // machine) and keeps what it saw then, an empty path or no handle at all (and
        // without a handle no CPU time or memory is ever read either). Start afresh: the next
        // sample opens every process again. CPU time is cumulative; nothing is lost.
        SYS.with(|s| *s.borrow_mut() = None);
    }
    out
}

fn read(pids: &[i32]) -> Vec<ProcSample> {
    with_system(|s| {
        let list: Vec<Pid> = pids.iter().map(|&p| pid_of(p)).collect();
        s.refresh_processes_specifics(
            ProcessesToUpdate::Some(&list),
            true,
            // The executable's path once: the name a process is first seen with can be empty
            // (Windows, a process caught while it is created), and is never read again.
            ProcessRefreshKind::nothing()
                .with_memory()
                .with_cpu()
                .with_exe(sysinfo::UpdateKind::OnlyIfNotSet),
        );
        pids.iter()
            .filter_map(|&p| {
                let pr = s.process(pid_of(p))?;
                let name = name_of(pr);
                Some(ProcSample {
                    pid: p,
                    ppid: pr.parent().map_or(0, |q| q.as_u32() as i32),
                    pgid: 0,
                    state: 'R',
                    cpu_ns: pr.accumulated_cpu_time().saturating_mul(1_000_000),
                    rss_bytes: pr.memory(),
                    name,
                    start: pr.start_time(),
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The process's name, or its executable's file name where the name is empty.
fn name_of(pr: &sysinfo::Process) -> String {
    match pr.name().to_string_lossy() {
        n if n.is_empty() => pr
            .exe()
            .and_then(|e| e.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        n => n.into_owned(),
    }
}

/// Reads the processes of one tree: one sysinfo refresh of just their pids per sample.
#[derive(Debug, Default)]
pub struct Reader;

impl Reader {
    /// The processes among `pids` still alive.
    pub fn read(&mut self, pids: &[i32], _buf: &mut Vec<u8>) -> Vec<ProcSample> {
        sample(pids)
    }
}

/// `main` and every live descendant of it, by the parent links of the whole process table.
pub fn descendants(main: i32) -> Vec<i32> {
    if main <= 0 {
        return Vec::new();
    }
    with_system(|s| {
        s.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing());
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for (pid, p) in s.processes() {
            if let Some(pp) = p.parent() {
                children
                    .entry(pp.as_u32() as i32)
                    .or_default()
                    .push(pid.as_u32() as i32);
            }
        }
        let mut out = Vec::new();
        if s.process(pid_of(main)).is_some() {
            let mut todo = vec![main];
            while let Some(p) = todo.pop() {
                if out.contains(&p) {
                    continue;
                }
                out.push(p);
                todo.extend(children.get(&p).into_iter().flatten());
            }
        }
        out
    })
    .unwrap_or_default()
}

/// A run's processes without a cgroup: `main` and its descendants (the process group is not
/// in sysinfo's view).
pub fn tree_pids(main: i32, _pgid: i32) -> Vec<i32> {
    descendants(main)
}

/// Processes whose environment holds `marker`: these systems do not show another process's
/// environment, so none are found this way.
pub fn pids_with_env(_marker: &str) -> Vec<i32> {
    Vec::new()
}

/// As `pids_with_env`: none are found this way here.
pub fn pids_with_env_prefix(_prefix: &str) -> Vec<i32> {
    Vec::new()
}

/// How many processes `uid` runs: not counted here; a generous guess, as RLIMIT_NPROC is
/// only the fallback where nothing else counts a run's processes.
pub fn user_process_count(_uid: u32) -> u64 {
    256
}
