//! Shared helpers for black-box tests of the `symbiont` binary: a scratch directory with its
//! own config, running the binary, and checking that no agent process is left behind.
#![allow(dead_code)]

pub mod pty;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_symbiont"))
}

/// A scratch directory: `work/` is the agents' working directory, `data/` the run logs.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("symbiont-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("work")).unwrap();
        Scratch { dir }
    }

    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A config.toml that allows native execution, with `extra_native` lines under
    /// [native_execution] and a fast watchdog.
    pub fn config(&self, extra_native: &str) -> PathBuf {
        self.write(
            "config.toml",
            &format!(
                "[security]\nallow_native_execution = true\ndefault_sandbox_tier = \"None\"\n\n\
                 [native_execution]\nworking_directory = \"{}\"\nkill_grace_seconds = 1\n{extra_native}\n\n\
                 [supervisor]\ndata_dir = \"{}\"\n\n[dashboard]\nrefresh_ms = 100\n",
                self.work().display(),
                self.dir.join("data").display()
            ),
        )
    }

    /// [`Scratch::config`] with `extra` lines under [supervisor].
    pub fn supervisor_config(&self, extra: &str) -> PathBuf {
        let p = self.config("");
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text.replacen("[supervisor]\n", &format!("[supervisor]\n{extra}\n"), 1);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs the binary in this directory with a clean, predictable environment.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        // This test's own service, if it starts one: never a service of the user running the tests.
        c.args(args)
            .current_dir(&self.dir)
            .env("XDG_RUNTIME_DIR", self.dir.join("run"));
        without_symbiont_env(&mut c);
        c
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes every `SYMBIONT_*` variable of the test's own environment from `c`: the binary sees
/// only what the test sets.
pub fn without_symbiont_env(c: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("SYMBIONT_") {
            c.env_remove(k);
        }
    }
    c
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The final JSON array of run records printed by `run --json`.
pub fn records(o: &Output) -> Vec<serde_json::Value> {
    let out = stdout(o);
    let last = out
        .lines()
        .rev()
        .find(|l| l.starts_with('['))
        .unwrap_or_else(|| panic!("no records in:\n{out}\nstderr:\n{}", stderr(o)));
    serde_json::from_str::<serde_json::Value>(last)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A record's `stdout_tail` or `stderr_tail` (`stream` is "stdout" or "stderr") as lines.
pub fn tail_of(record: &serde_json::Value, stream: &str) -> Vec<String> {
    record[format!("{stream}_tail")]
        .as_array()
        .unwrap_or_else(|| panic!("no {stream}_tail in {record}"))
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// Every live (not zombie) process, with the fields of its `/proc/PID/stat` after the name
/// (state first, then the parent's pid, ...).
pub fn live_processes() -> Vec<(i32, Vec<String>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<String> = rest.split_whitespace().map(String::from).collect();
        if fields.first().is_some_and(|s| s != "Z") {
            out.push((pid, fields));
        }
    }
    out
}

/// Pids of live processes whose command line holds `needle`, as the kernel keeps it: its
/// arguments separated by NUL (`"sleep\u{0}61"` is `sleep 61`, not a shell line that says so).
pub fn pids_with_cmdline(needle: &[u8]) -> Vec<i32> {
    live_processes()
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Pids of live processes whose environment holds `SYMBIONT_AGENT=<agent>` (every agent process
/// and its descendants carry it).
pub fn agent_pids(agent: &str) -> Vec<i32> {
    let needle = format!("SYMBIONT_AGENT={agent}\0");
    live_processes()
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// Waits up to `within` for every process of `agent` to be gone; returns the survivors.
pub fn survivors_after(agent: &str, within: Duration) -> Vec<i32> {
    let until = Instant::now() + within;
    loop {
        let left = agent_pids(agent);
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that no process of `agent` remains, killing any survivor so no test leaves one.
pub fn assert_none_left(agent: &str) {
    let left = survivors_after(agent, Duration::from_secs(3));
    for &p in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        left.is_empty(),
        "processes of agent {agent} left behind: {left:?}"
    );
}

pub fn wait_for(mut cond: impl FnMut() -> bool, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Whether CI asked for every runtime (`SYMBIONT_REQUIRE_RUNTIMES=1`): then a test that cannot
/// run here fails instead of skipping.
pub fn runtimes_required() -> bool {
    std::env::var("SYMBIONT_REQUIRE_RUNTIMES").is_ok_and(|v| v == "1")
}

/// Says loudly that `test` is SKIPPED because of `why`, or panics under
/// `SYMBIONT_REQUIRE_RUNTIMES=1`.
pub fn skip(test: &str, why: &str) {
    if runtimes_required() {
        panic!("{test}: {why} but SYMBIONT_REQUIRE_RUNTIMES=1");
    }
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// The ordinary user that tests running as root run the binary as (through `setpriv`).
pub const TEST_USER: &str = "symbiont-test";

fn test_user_id(flag: &str) -> Option<u32> {
    let o = Command::new("id").args([flag, TEST_USER]).output().ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// The uid and gid of [`TEST_USER`], creating the user if it is missing (root only).
pub fn test_user() -> (u32, u32) {
    if test_user_id("-u").is_none() {
        let st = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(TEST_USER)
            .status()
            .expect("useradd");
        // Another test binary may have made it meanwhile.
        assert!(
            st.success() || test_user_id("-u").is_some(),
            "cannot create {TEST_USER}"
        );
    }
    (
        test_user_id("-u").expect("uid"),
        test_user_id("-g").expect("gid"),
    )
}

/// The binary run as `uid`:`gid` through `setpriv` (root running it as the ordinary test
/// user), or, with `None`, as whoever runs the tests.
pub fn bin_as(user: Option<(u32, u32)>) -> Command {
    match user {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .args(["--clear-groups", "--"])
                .arg(bin());
            c
        }
        None => Command::new(bin()),
    }
}
