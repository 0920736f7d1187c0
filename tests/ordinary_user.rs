//! Limits for an ordinary user without any usable cgroup (issue 13): the built binary run as
//! such a user. As root, the tests create the user `symbiont-test` if it is missing and run the
//! binary through `setpriv` as that user; as anyone else, they run it as themselves.
//!
//! Python 3, Node and a JVM are needed: where one is missing the test says loudly that it is
//! SKIPPED, and fails instead with `SYMBIONT_REQUIRE_RUNTIMES=1` (CI). Every test checks that
//! the user runs no process afterwards that it did not run before. The tests of this file run
//! one at a time: that check counts every process of the user.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use common::*;

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// One test at a time: each counts the user's processes.
static SERIAL: Mutex<()> = Mutex::new(());

/// Who the binary runs as.
struct User {
    uid: u32,
    gid: u32,
    /// Root runs the binary through setpriv as `uid`; an ordinary user as itself.
    switch: bool,
}

fn user() -> User {
    let me = nix::unistd::getuid();
    if !me.is_root() {
        return User {
            uid: me.as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            switch: false,
        };
    }
    let (uid, gid) = test_user();
    User {
        uid,
        gid,
        switch: true,
    }
}

/// The user's live processes (zombies waiting for their parent do not run).
fn processes_of(uid: u32) -> HashSet<i32> {
    live_processes()
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == uid))
        .collect()
}

/// A test's world: a scratch directory the user may write, the user, and its processes before.
struct World {
    s: Scratch,
    user: User,
    before: HashSet<i32>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl World {
    fn new(name: &str) -> World {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let user = user();
        let s = Scratch::new(&format!("ordinary-{name}"));
        s.config("allowed_executables = [\"python3\", \"node\", \"java\", \"bash\", \"sh\"]");
        std::fs::create_dir_all(s.path("data")).unwrap();
        std::fs::create_dir_all(s.path("home")).unwrap();
        if user.switch {
            let st = Command::new("chown")
                .args(["-R", &format!("{}:{}", user.uid, user.gid)])
                .arg(&s.dir)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let before = processes_of(user.uid);
        World {
            s,
            user,
            before,
            _serial: serial,
        }
    }

    /// The binary with `args`, as the user, in the scratch directory.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = bin_as(self.user.switch.then_some((self.user.uid, self.user.gid)));
        c.args(args).current_dir(&self.s.dir);
        without_symbiont_env(&mut c);
        // Never a service of the user running the tests.
        c.env("PATH", PATH)
            .env("HOME", self.s.path("home"))
            .env("XDG_RUNTIME_DIR", self.s.path("run"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// A file the user can read, in the working directory.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.s.work().join(name);
        std::fs::write(&p, text).unwrap();
        if self.user.switch {
            std::os::unix::fs::chown(&p, Some(self.user.uid), Some(self.user.gid)).unwrap();
        }
        p
    }
}

impl Drop for World {
    /// Nothing of the user's may be left that was not there before (killed, then reported).
    fn drop(&mut self) {
        let uid = self.user.uid;
        let mut left = Vec::new();
        wait_for(
            || {
                left = processes_of(uid)
                    .difference(&self.before)
                    .copied()
                    .collect();
                left.is_empty()
            },
            Duration::from_secs(5),
        );
        let names: Vec<String> = left
            .iter()
            .map(|p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                format!("{p} {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .collect();
        for &p in &left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "processes left behind: {names:?}");
        }
    }
}

/// The runtime's path, or `None` after saying the test is skipped.
fn runtime(test: &str, name: &str) -> Option<PathBuf> {
    let found = symbiont::runner::native::which(name, Some(std::ffi::OsStr::new(PATH)));
    if found.is_none() {
        skip(
            test,
            &format!("{name} is not installed (scripts/setup installs it)"),
        );
    }
    found
}

fn record(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    let start = out
        .find("{\n")
        .or_else(|| out.find('{'))
        .unwrap_or_else(|| panic!("no record in:\n{out}\nstderr:\n{}", stderr(o)));
    serde_json::from_str(&out[start..])
        .unwrap_or_else(|e| panic!("{e}: {out}\nstderr:\n{}", stderr(o)))
}

fn reason(r: &serde_json::Value) -> &str {
    r["reason"].as_str().unwrap_or_default()
}

#[test]
fn one_gib_under_256_mb_ends_memory_limit() {
    let test = "one_gib_under_256_mb_ends_memory_limit";
    if runtime(test, "python3").is_none() {
        return;
    }
    let w = World::new("gib");
    let o = w.run(&[
        "exec",
        "--native",
        "--json",
        "--max-memory=256",
        "--",
        "python3",
        "-c",
        "b = bytearray(1 << 30)",
    ]);
    let r = record(&o);
    assert_eq!(reason(&r), "memory_limit", "{r:#}");
    assert!(stderr(&o).contains("MemoryError") || r.to_string().contains("MemoryError"));
    // The weaker mechanism the host forces is said in the record itself.
    let message = r["message"].as_str().unwrap_or("");
    assert!(
        message.contains("no cgroup") && message.contains("RLIMIT_DATA"),
        "{r:#}"
    );
}

#[test]
fn node_webassembly_and_a_jvm_start_under_the_default_limit() {
    let test = "node_webassembly_and_a_jvm_start_under_the_default_limit";
    let (Some(_), Some(_)) = (runtime(test, "node"), runtime(test, "java")) else {
        return;
    };
    let w = World::new("runtimes");
    let o = w.run(&[
        "exec",
        "--native",
        "--",
        "node",
        "-e",
        "new WebAssembly.Memory({initial: 256}); console.log('wasm ok')",
    ]);
    assert!(o.status.success(), "node: {}", stderr(&o));
    assert!(stdout(&o).contains("wasm ok"));
    w.file(
        "Alloc.java",
        "public class Alloc { public static void main(String[] a) {\n\
         int[] x = new int[50_000_000];\n\
         for (int i = 0; i < x.length; i += 1024) x[i] = i;\n\
         System.out.println(\"allocated \" + (x.length * 4L >> 20) + \" MB\");\n} }\n",
    );
    let o = w.run(&["exec", "--native", "--", "java", "-Xmx512m", "Alloc.java"]);
    assert!(o.status.success(), "java: {}", stderr(&o));
    assert!(stdout(&o).contains("allocated 190 MB"), "{}", stdout(&o));
}

/// The daemon of `daemon.py`: `setsid` keeps its environment; `double` forks twice, calls
/// setsid, execs itself with an empty environment and renames itself.
const DAEMON: &str = r#"
import os, sys, time
mode, linger, pidfile = sys.argv[1], float(sys.argv[2]), sys.argv[3]
if os.fork() == 0:
    os.setsid()
    if mode == "double" and os.fork() != 0:
        os._exit(0)
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pidfile + ".tmp", pidfile)
    if mode == "double":
        os.execve(sys.executable, ["innocent", "-c",
            "import ctypes, time; ctypes.CDLL(None).prctl(15, b'innocent', 0, 0, 0); time.sleep(300)"], {})
    time.sleep(300)
    os._exit(0)
time.sleep(linger)
"#;

fn pid_in(p: &Path) -> Option<i32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    live_processes().iter().any(|(p, _)| *p == pid)
}

#[test]
fn a_setsid_escapee_dies_when_the_supervisor_is_killed() {
    let test = "a_setsid_escapee_dies_when_the_supervisor_is_killed";
    if runtime(test, "python3").is_none() {
        return;
    }
    let w = World::new("escapee");
    w.file("daemon.py", DAEMON);
    let pidfile = w.s.work().join("escapee.pid");
    let mut sup = w
        .command(&[
            "exec",
            "--native",
            "--",
            "python3",
            "daemon.py",
            "setsid",
            "60",
            pidfile.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(|| pid_in(&pidfile).is_some(), Duration::from_secs(10)),
        "the daemon never started"
    );
    let daemon = pid_in(&pidfile).unwrap();
    assert!(alive(daemon));
    // setpriv execs the binary: this child is the supervisor itself.
    sup.kill().unwrap();
    sup.wait().unwrap();
    assert!(
        wait_for(|| !alive(daemon), Duration::from_secs(5)),
        "the setsid daemon {daemon} outlived its SIGKILLed supervisor"
    );
}

#[test]
fn a_renamed_double_forked_daemon_without_its_environment_dies_at_run_end() {
    let test = "a_renamed_double_forked_daemon_without_its_environment_dies_at_run_end";
    if runtime(test, "python3").is_none() {
        return;
    }
    let w = World::new("daemon");
    w.file("daemon.py", DAEMON);
    // Two agents at once: A leaves the daemon and ends; B, still running (so the supervisor
    // and its guardian play no part), reports whether A's end took the daemon with it.
    w.file(
        "watch.sh",
        "for i in $(seq 300); do\n\
         \x20 if [ -f daemon.pid ]; then\n\
         \x20   if ! kill -0 $(cat daemon.pid) 2>/dev/null; then echo DEAD; exit 0; fi\n\
         \x20   tr '\\0' ' ' < /proc/$(cat daemon.pid)/cmdline > daemon.cmdline\n\
         \x20 fi\n\
         \x20 sleep 0.1\n\
         done\n\
         echo ALIVE\n",
    );
    let f = w.file(
        "two.agent",
        "agent A {\n security { tier: None }\n on start { execute_native(\"python3 daemon.py double 0.5 daemon.pid\") }\n}\n\
         agent B {\n security { tier: None }\n on start { execute_native(\"bash watch.sh\") }\n}\n",
    );
    let o = w.run(&["run", f.to_str().unwrap(), "--json"]);
    let recs = records(&o);
    let b = recs
        .iter()
        .find(|r| r["agent"] == "B")
        .unwrap_or_else(|| panic!("{recs:?}"));
    // The daemon did rename itself and lose the marker before A ended.
    let cmdline = std::fs::read_to_string(w.s.work().join("daemon.cmdline")).unwrap_or_default();
    assert!(cmdline.starts_with("innocent"), "{cmdline:?}");
    assert_eq!(b["stdout_tail"], serde_json::json!(["DEAD"]), "{recs:?}");
}

#[test]
fn a_pool_of_four_150_mb_workers_under_256_mb_ends_memory_limit_with_no_worker_left() {
    let test = "a_pool_of_four_150_mb_workers_under_256_mb_ends_memory_limit_with_no_worker_left";
    if runtime(test, "python3").is_none() {
        return;
    }
    let w = World::new("pool");
    w.file(
        "pool.py",
        "import multiprocessing as mp, time\n\
         def work(i):\n\
         \x20   b = bytearray(150 << 20)\n\
         \x20   for j in range(0, len(b), 4096): b[j] = 1\n\
         \x20   time.sleep(30)\n\
         \x20   return i\n\
         if __name__ == '__main__':\n\
         \x20   with mp.Pool(4) as p: print(p.map(work, range(4)))\n",
    );
    let o = w.run(&[
        "exec",
        "--native",
        "--json",
        "--max-memory=256",
        "--",
        "python3",
        "pool.py",
    ]);
    let r = record(&o);
    assert_eq!(reason(&r), "memory_limit", "{r:#}");
    let peak = r["peak_memory_bytes"].as_u64().unwrap_or(0);
    eprintln!(
        "pool of 4 x 150 MB under 256 MB: peak {} MB, ended by {}",
        peak >> 20,
        r["killed_by"]
    );
    // The workers: the world's end checks that none is left.
}

#[test]
fn check_names_the_watchdog_and_its_interval() {
    let w = World::new("check");
    let o = w
        .command(&["check"])
        .env("SYMBIONT_DISABLE_CGROUPS", "1")
        .env("SYMBIONT_NATIVE_WATCHDOG_INTERVAL_MS", "40")
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let memory = out
        .lines()
        .find(|l| l.trim_start().starts_with("memory:"))
        .unwrap_or_else(|| panic!("no memory line:\n{out}"));
    assert!(memory.contains("RLIMIT_DATA"), "{memory}");
    assert!(memory.contains("watchdog"), "{memory}");
    assert!(memory.contains("every 40 ms"), "{memory}");
    assert!(!out.contains("RLIMIT_AS"), "{out}");
}

#[test]
fn another_user_cannot_reach_the_service() {
    let w = World::new("socket");
    if !w.user.switch {
        skip(
            "another_user_cannot_reach_the_service",
            "it needs root to run a second user",
        );
        return;
    }
    // This process's user's service (root's), in a runtime directory of its own.
    let rt = w.s.path("root-run");
    std::fs::create_dir_all(&rt).unwrap();
    let cfg = w.s.path("config.toml");
    let mut service = Command::new(bin())
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("XDG_RUNTIME_DIR", &rt)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let socket = rt.join("symbiont/api.sock");
    assert!(wait_for(
        || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        Duration::from_secs(10)
    ));
    // The other user, pointed at it, is turned away by the kernel.
    let o = w
        .command(&["ps"])
        .env("XDG_RUNTIME_DIR", &rt)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    let o = w
        .command(&["kill", "1"])
        .env("XDG_RUNTIME_DIR", &rt)
        .output()
        .unwrap();
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    // The owner still gets in.
    let o = Command::new(bin())
        .args(["shutdown"])
        .env("XDG_RUNTIME_DIR", &rt)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(service.wait().unwrap().code(), Some(0));
}

/// The kernel counts every pipe's capacity against its user: past `fs.pipe-user-pages-soft`
/// (64 MiB), an ordinary user's new pipes get 8 KiB, in every program of the session. Forty idle
/// agents (eighty output pipes) must leave the user's other pipes their usual 64 KiB, and a
/// chatty agent's output still arrives whole.
#[test]
fn forty_idle_agents_leave_the_users_other_pipes_their_size() {
    let test = "forty_idle_agents_leave_the_users_other_pipes_their_size";
    if runtime(test, "python3").is_none() {
        return;
    }
    let w = World::new("pipes");
    let mut agents = String::new();
    for i in 0..40 {
        agents += &format!(
            "agent Idle{i} {{\n security {{ tier: None }}\n on start {{ execute_native(\"sh -c 'sleep 4'\") }}\n}}\n"
        );
    }
    // A chatty one: 16 MiB through its pipe (the log keeps 32 MiB), counted on the other side.
    agents += "agent Chatty {\n security { tier: None }\n on start { execute_native(\"sh -c 'head -c 16777216 /dev/zero'\") }\n}\n";
    agents += "agent Probe {\n security { tier: None }\n on start { execute_native(\"python3 probe.py\") }\n}\n";
    w.file(
        "probe.py",
        "import os, fcntl, time\ntime.sleep(2)\nr, w = os.pipe()\nprint('pipe', fcntl.fcntl(r, 1032))\n",
    );
    let f = w.file("many.agent", &agents);
    let o = w.run(&["run", f.to_str().unwrap(), "--json"]);
    let recs = records(&o);
    assert_eq!(recs.len(), 42, "{}", stderr(&o));
    let probe = recs
        .iter()
        .find(|r| r["agent"] == "Probe")
        .unwrap_or_else(|| panic!("{recs:?}"));
    assert_eq!(
        probe["stdout_tail"],
        serde_json::json!(["pipe 65536"]),
        "{probe:#}"
    );
    let chatty = recs.iter().find(|r| r["agent"] == "Chatty").unwrap();
    let log = chatty["stdout_log"].as_str().unwrap();
    assert_eq!(
        std::fs::metadata(log).map(|m| m.len()).ok(),
        Some(16 << 20),
        "{chatty:#}"
    );
}
