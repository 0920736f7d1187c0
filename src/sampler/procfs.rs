//! Linux /proc readers. One `stat` read gives a process's CPU ticks, resident pages, state,
//! parent and process group.

use std::fs;
use std::sync::OnceLock;

use super::budget::{FdBudget, Kept};
use super::ProcSample;

fn clock_ticks() -> u64 {
    static T: OnceLock<u64> = OnceLock::new();
    *T.get_or_init(
        || match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
            Ok(Some(t)) if t > 0 => t as u64,
            _ => 100,
        },
    )
}

fn page_size() -> u64 {
    static P: OnceLock<u64> = OnceLock::new();
    *P.get_or_init(
        || match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
            Ok(Some(p)) if p > 0 => p as u64,
            _ => 4096,
        },
    )
}

/// Parses the text of `/proc/PID/stat`.
pub fn parse_stat(text: &str) -> Option<ProcSample> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let name = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    let state = rest.first()?.chars().next()?;
    let ppid = field(4)? as i32;
    let pgid = field(5)? as i32;
    let ticks = field(14)? + field(15)?;
    let rss_pages = rest.get(24 - 3)?.parse::<i64>().ok()?.max(0) as u64;
    Some(ProcSample {
        pid,
        ppid,
        pgid,
        state,
        cpu_ns: ticks * (1_000_000_000 / clock_ticks()),
        rss_bytes: rss_pages * page_size(),
        name,
        start: field(22)?,
    })
}

pub fn read_proc(pid: i32) -> Option<ProcSample> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process on the host (the fallback when no cgroup holds the agent's tree).
pub fn all_processes() -> Vec<ProcSample> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_proc)
        .collect()
}

/// The processes of an agent without a cgroup: its process group plus every descendant of
/// its main process (a descendant that left the group with `setsid` is still found, as long
/// as its parent chain leads back; one orphaned to init is not, which is why cgroups are preferred).
pub fn tree_of(main_pid: i32, pgid: i32) -> Vec<ProcSample> {
    let all = all_processes();
    let mut member: std::collections::HashSet<i32> = all
        .iter()
        .filter(|p| (main_pid > 0 && p.pid == main_pid) || (pgid > 1 && p.pgid == pgid))
        .map(|p| p.pid)
        .collect();
    loop {
        let before = member.len();
        for p in &all {
            if member.contains(&p.ppid) {
                member.insert(p.pid);
            }
        }
        if member.len() == before {
            break;
        }
    }
    all.into_iter()
        .filter(|p| member.contains(&p.pid))
        .collect()
}

/// Pids whose environment holds `marker` (a `NAME=value` pair every process of a run inherits):
/// finds a run's descendants that left its process group and lost their parent link, when no
/// cgroup holds them. Costs a read per process on the host, so it runs at kill and clean-up time.
pub fn pids_with_env(marker: &str) -> Vec<i32> {
    pids_with_env_where(|kv| kv == marker.as_bytes())
}

/// Pids whose environment holds an entry starting with `prefix` (every run of one supervisor:
/// `SYMBIONT_RUN=<supervisor pid>-<instance>-`).
pub fn pids_with_env_prefix(prefix: &str) -> Vec<i32> {
    pids_with_env_where(|kv| kv.starts_with(prefix.as_bytes()))
}

fn pids_with_env_where(found: impl Fn(&[u8]) -> bool) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|&b| b == 0).any(&found))
                .unwrap_or(false)
        })
        .collect()
}

/// The value of `name` in the environment of `pid`, if it can be read.
pub fn env_value(pid: i32, name: &str) -> Option<String> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|kv| {
        let v = kv.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        String::from_utf8(v.to_vec()).ok()
    })
}

/// Reads the processes of one tree on every sample through kept-open `/proc/PID/stat` files:
/// one `pread` per process and refresh, while the budget of kept files has room (else an
/// open, read and close per process).
#[derive(Debug)]
pub struct Reader {
    stats: std::collections::HashMap<i32, Kept>,
    budget: &'static FdBudget,
}

impl Default for Reader {
    fn default() -> Reader {
        Reader::with_budget(FdBudget::global())
    }
}

impl Reader {
    pub fn with_budget(budget: &'static FdBudget) -> Reader {
        Reader {
            stats: std::collections::HashMap::new(),
            budget,
        }
    }

    /// The processes among `pids` still alive; files of processes not in `pids` are closed.
    pub fn read(&mut self, pids: &[i32], buf: &mut Vec<u8>) -> Vec<ProcSample> {
        self.stats.retain(|p, k| pids.contains(p) && !k.over());
        pids.iter()
            .filter_map(|&pid| {
                match self.stats.get(&pid) {
                    Some(k) => super::read_at(k.file(), buf)?,
                    None => {
                        let f = fs::File::open(format!("/proc/{pid}/stat")).ok()?;
                        let n = super::read_at(&f, buf);
                        if let Ok(k) = self.budget.keep(f) {
                            self.stats.insert(pid, k);
                        }
                        n?
                    }
                };
                std::str::from_utf8(buf).ok().and_then(parse_stat)
            })
            .collect()
    }

    /// How many files this reader keeps open.
    pub fn kept(&self) -> usize {
        self.stats.len()
    }
}

/// How many processes `uid` runs (what RLIMIT_NPROC counts).
pub fn user_process_count(uid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
                .filter(|e| e.metadata().map(|m| m.uid() == uid).unwrap_or(false))
                .count() as u64
        })
        .unwrap_or(0)
}

/// The pids of `tree_of`.
pub fn tree_pids(main_pid: i32, pgid: i32) -> Vec<i32> {
    tree_of(main_pid, pgid).into_iter().map(|p| p.pid).collect()
}

/// `main` and every live descendant of it (by the parent links in /proc).
pub fn descendants(main: i32) -> Vec<i32> {
    if main <= 0 {
        return Vec::new();
    }
    tree_of(main, 0).into_iter().map(|p| p.pid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parens() {
        let s = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 1000000 25 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let p = parse_stat(s).unwrap();
        assert_eq!(p.pid, 1234);
        assert_eq!(p.name, "my (odd) prog");
        assert_eq!(p.state, 'S');
        assert_eq!(p.ppid, 1);
        assert_eq!(p.pgid, 1234);
        assert_eq!(p.cpu_ns, 10 * (1_000_000_000 / clock_ticks()));
        assert_eq!(p.rss_bytes, 25 * page_size());
        assert_eq!(p.start, 100);
    }

    #[test]
    fn a_reader_keeps_files_only_within_its_budget() {
        let me = std::process::id() as i32;
        let mut buf = Vec::new();
        static NONE: FdBudget = FdBudget::with_limit(0);
        let mut r = Reader::with_budget(&NONE);
        for _ in 0..2 {
            assert_eq!(r.read(&[me], &mut buf)[0].pid, me);
            assert_eq!(r.kept(), 0);
        }
        static ROOM: FdBudget = FdBudget::with_limit(100_000);
        let mut r = Reader::with_budget(&ROOM);
        assert_eq!(r.read(&[me], &mut buf)[0].pid, me);
        assert_eq!((r.kept(), ROOM.held()), (1, 1));
        assert_eq!(r.read(&[me], &mut buf)[0].pid, me);
        assert!(r.read(&[], &mut buf).is_empty());
        assert_eq!((r.kept(), ROOM.held()), (0, 0));
    }

    #[test]
    fn reads_itself() {
        let me = read_proc(std::process::id() as i32).unwrap();
        assert!(me.rss_bytes > 0);
        assert_eq!(me.pid, std::process::id() as i32);
    }
}
