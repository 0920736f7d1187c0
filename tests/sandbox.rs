//! The native sandbox (SPEC 3.1), probed as an attacker would: one test per cell of the table
//! in the README ("Sandbox levels"), each run as root and as an ordinary user (root creates
//! `symbiont-test` and runs the binary through `setpriv`; anyone else runs it as themselves).
//!
//! Each cell runs one agent whose program is a probe in Python: it tries one thing and prints
//! `PROBE <name> allowed` or `PROBE <name> denied`. The agent's home is a scratch directory with
//! a planted SSH key, and a python3 and a node "installed" there (hard links, else copies).
#![cfg(target_os = "linux")]

mod common;

use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

const PROBE: &str = r#"
import ctypes, os, socket, subprocess, sys
name = sys.argv[1]
arg = sys.argv[2] if len(sys.argv) > 2 else ""
def fail_errno():
    e = ctypes.get_errno()
    raise OSError(e, os.strerror(e))
try:
    if name == "read_ssh_key":
        open(os.path.expanduser("~/.ssh/id_ed25519")).read()
    elif name == "write_workdir":
        open("probe-out.txt", "w").write("x")
    elif name == "write_home":
        open(os.path.expanduser("~/probe-out.txt"), "w").write("x")
    elif name == "write_tmp":
        p = "/tmp/symbiont-probe-%d" % os.getpid()
        open(p, "w").write("x")
        os.unlink(p)
    elif name == "read_passwd":
        open("/etc/passwd").read()
    elif name == "tcp_connect":
        s = socket.create_connection(("127.0.0.1", int(arg)), timeout=5)
        s.sendall(b"hi")
        s.close()
    elif name == "udp_send":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"hi", ("127.0.0.1", int(arg)))
    elif name == "io_uring":
        libc = ctypes.CDLL(None, use_errno=True)
        params = ctypes.create_string_buffer(120)
        fd = libc.syscall(425, 4, params)  # io_uring_setup(4 entries)
        if fd < 0:
            fail_errno()
        os.close(fd)
    elif name == "ptrace":
        child = subprocess.Popen(["sleep", "30"])
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        try:
            if libc.ptrace(16, child.pid, None, None) != 0:  # PTRACE_ATTACH
                fail_errno()
            os.waitpid(child.pid, 0)
            libc.ptrace(17, child.pid, None, None)  # PTRACE_DETACH
        finally:
            child.kill()
            child.wait()
    else:
        raise SystemExit("unknown probe " + name)
except OSError as e:
    print("PROBE %s denied (%s)" % (name, e))
    sys.exit(0)
print("PROBE %s allowed" % name)
"#;

/// Who the binary runs as: root itself, and the ordinary user.
#[derive(Clone, Copy)]
struct User {
    uid: u32,
    gid: u32,
    /// Run through setpriv as `uid`.
    switch: bool,
}

/// Every user a cell runs as: the one running the tests and, as root, `symbiont-test`.
fn users() -> Vec<User> {
    let me = User {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        switch: false,
    };
    if !nix::unistd::getuid().is_root() {
        return vec![me];
    }
    let (uid, gid) = test_user();
    vec![
        me,
        User {
            uid,
            gid,
            switch: true,
        },
    ]
}

/// `src` at `dst`: a hard link where both are on one filesystem, else a copy.
fn install(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    let src = std::fs::canonicalize(src).unwrap();
    if std::fs::hard_link(&src, dst).is_err() {
        std::fs::copy(&src, dst).unwrap();
    }
}

/// One cell's world: a scratch directory with a home (an SSH key, interpreters under it) and a
/// working directory, owned by the user.
struct Cell {
    s: Scratch,
    user: User,
    agent: String,
}

impl Cell {
    fn new(name: &str, user: User) -> Cell {
        let s = Scratch::new(&format!("sandbox-{name}-{}", user.uid));
        let home = s.path("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
        std::fs::create_dir_all(s.path("data")).unwrap();
        std::fs::write(s.work().join("probe.py"), PROBE).unwrap();
        Cell {
            s,
            user,
            agent: format!("Probe_{}_{}", name.replace('-', "_"), user.uid),
        }
    }

    fn python_home(&self) -> PathBuf {
        self.s.path("home/.pyenv/versions/3/bin/python3")
    }

    fn node_home(&self) -> PathBuf {
        self.s.path("home/.nvm/versions/node/v20/bin/node")
    }

    /// Runs `command` as the agent `security { sandbox: LEVEL capabilities: CAPS }`.
    fn run(&self, level: &str, caps: &[&str], command: &str) -> Output {
        let caps: Vec<String> = caps.iter().map(|c| format!("\"{c}\"")).collect();
        let file = self.s.write(
            "probe.dsl",
            &format!(
                "agent {} {{\n  security {{ tier: None sandbox: {level} capabilities: [{}] }}\n  \
                 on start {{ execute_native(\"{}\") }}\n}}\n",
                self.agent,
                caps.join(", "),
                command.replace('\\', "\\\\").replace('"', "\\\"")
            ),
        );
        let cfg = self.s.config(&format!(
            "allowed_executables = [\"/usr/bin/python3\", \"{}\", \"{}\"]\nmax_execution_time_seconds = 30",
            self.python_home().display(),
            self.node_home().display()
        ));
        if self.user.switch {
            let st = Command::new("chown")
                .args(["-R", &format!("{}:{}", self.user.uid, self.user.gid)])
                .arg(&self.s.dir)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let mut c = bin_as(self.user.switch.then_some((self.user.uid, self.user.gid)));
        c.arg("run")
            .arg(&file)
            .args(["--native", "--json", "--config"])
            .arg(&cfg)
            .current_dir(&self.s.dir);
        without_symbiont_env(&mut c);
        c.env("PATH", PATH)
            .env("HOME", self.s.path("home"))
            .env("XDG_RUNTIME_DIR", self.s.path("run"));
        let out = c.output().unwrap();
        assert_none_left(&self.agent);
        out
    }

    /// The probe's verdict, "allowed" or "denied", from the run's stdout.
    fn probe(&self, level: &str, caps: &[&str], probe: &str, arg: &str) -> String {
        let out = self.run(
            level,
            caps,
            &format!("/usr/bin/python3 probe.py {probe} {arg}"),
        );
        verdict(&out, probe)
    }
}

fn verdict(out: &Output, probe: &str) -> String {
    let recs = records(out);
    let tail = tail_of(&recs[0], "stdout");
    let line = tail
        .iter()
        .find(|l| l.starts_with(&format!("PROBE {probe} ")))
        .unwrap_or_else(|| {
            panic!(
                "no verdict for {probe}: record {}\nstderr: {}",
                recs[0],
                stderr(out)
            )
        });
    line.split_whitespace().nth(2).unwrap().to_string()
}

/// The columns of the table: level and capabilities.
const PERMISSIVE: (&str, &[&str]) = ("Permissive", &[]);
const MODERATE: (&str, &[&str]) = ("Moderate", &[]);
const STRICT: (&str, &[&str]) = ("Strict", &[]);
const STRICT_NET: (&str, &[&str]) = ("Strict", &["network"]);
const STRICT_FS: (&str, &[&str]) = ("Strict", &["local_filesystem"]);

/// Runs `probe` in the column as every user, expecting `want` ("allowed" or "denied").
fn cell(name: &str, column: (&str, &[&str]), probe: &str, want: &str) {
    for user in users() {
        let c = Cell::new(name, user);
        // A listener of the test's for the network probes, on a port the kernel picks.
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = match probe {
            "tcp_connect" => tcp.local_addr().unwrap().port().to_string(),
            "udp_send" => udp.local_addr().unwrap().port().to_string(),
            _ => String::new(),
        };
        let got = c.probe(column.0, column.1, probe, &port);
        assert_eq!(
            got, want,
            "{probe} under {} {:?} as uid {}",
            column.0, column.1, user.uid
        );
        if probe == "udp_send" && want == "allowed" {
            udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 8];
            assert_eq!(udp.recv(&mut buf).unwrap(), 2, "the datagram arrived");
        }
        if probe == "write_home" {
            let written = c.s.path("home/probe-out.txt").exists();
            assert_eq!(written, want == "allowed", "the file is there iff allowed");
        }
    }
}

/// A home-installed interpreter runs as the agent's program in the column.
fn interpreter(name: &str, column: (&str, &[&str]), node: bool) {
    for user in users() {
        let c = Cell::new(name, user);
        let (program, code) = if node {
            let Ok(node) = which("node") else {
                skip(name, "node is not installed");
                return;
            };
            install(&node, &c.node_home());
            (c.node_home(), "-e 'console.log(\"PROBE home allowed\")'")
        } else {
            install(Path::new("/usr/bin/python3"), &c.python_home());
            (c.python_home(), "-c 'print(\"PROBE home allowed\")'")
        };
        let out = c.run(column.0, column.1, &format!("{} {code}", program.display()));
        assert_eq!(
            verdict(&out, "home"),
            "allowed",
            "{} under {} as uid {}",
            program.display(),
            column.0,
            user.uid
        );
    }
}

fn which(name: &str) -> Result<PathBuf, ()> {
    for dir in PATH.split(':') {
        let p = Path::new(dir).join(name);
        if std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0) {
            return Ok(p);
        }
    }
    Err(())
}

macro_rules! cells {
    ($($test:ident: $probe:literal in $column:ident => $want:literal;)*) => {
        $(
            #[test]
            fn $test() {
                cell(stringify!($test), $column, $probe, $want);
            }
        )*
    };
}

// The README's table, cell by cell.
cells! {
    permissive_reads_ssh_key: "read_ssh_key" in PERMISSIVE => "allowed";
    moderate_reads_ssh_key: "read_ssh_key" in MODERATE => "allowed";
    strict_denies_ssh_key: "read_ssh_key" in STRICT => "denied";
    strict_network_denies_ssh_key: "read_ssh_key" in STRICT_NET => "denied";
    strict_fs_reads_ssh_key: "read_ssh_key" in STRICT_FS => "allowed";

    permissive_writes_workdir: "write_workdir" in PERMISSIVE => "allowed";
    moderate_writes_workdir: "write_workdir" in MODERATE => "allowed";
    strict_writes_workdir: "write_workdir" in STRICT => "allowed";
    strict_network_writes_workdir: "write_workdir" in STRICT_NET => "allowed";
    strict_fs_writes_workdir: "write_workdir" in STRICT_FS => "allowed";

    permissive_writes_home: "write_home" in PERMISSIVE => "allowed";
    moderate_denies_home_write: "write_home" in MODERATE => "denied";
    strict_denies_home_write: "write_home" in STRICT => "denied";
    strict_network_denies_home_write: "write_home" in STRICT_NET => "denied";
    strict_fs_writes_home: "write_home" in STRICT_FS => "allowed";

    permissive_writes_tmp: "write_tmp" in PERMISSIVE => "allowed";
    moderate_denies_tmp_write: "write_tmp" in MODERATE => "denied";
    strict_denies_tmp_write: "write_tmp" in STRICT => "denied";
    strict_network_denies_tmp_write: "write_tmp" in STRICT_NET => "denied";
    strict_fs_writes_tmp: "write_tmp" in STRICT_FS => "allowed";

    permissive_reads_passwd: "read_passwd" in PERMISSIVE => "allowed";
    moderate_reads_passwd: "read_passwd" in MODERATE => "allowed";
    strict_reads_passwd: "read_passwd" in STRICT => "allowed";
    strict_network_reads_passwd: "read_passwd" in STRICT_NET => "allowed";
    strict_fs_reads_passwd: "read_passwd" in STRICT_FS => "allowed";

    permissive_connects_tcp: "tcp_connect" in PERMISSIVE => "allowed";
    moderate_denies_tcp: "tcp_connect" in MODERATE => "denied";
    strict_denies_tcp: "tcp_connect" in STRICT => "denied";
    strict_network_connects_tcp: "tcp_connect" in STRICT_NET => "allowed";
    strict_fs_denies_tcp: "tcp_connect" in STRICT_FS => "denied";

    permissive_sends_udp: "udp_send" in PERMISSIVE => "allowed";
    moderate_denies_udp: "udp_send" in MODERATE => "denied";
    strict_denies_udp: "udp_send" in STRICT => "denied";
    strict_network_sends_udp: "udp_send" in STRICT_NET => "allowed";
    strict_fs_denies_udp: "udp_send" in STRICT_FS => "denied";

    permissive_creates_io_uring: "io_uring" in PERMISSIVE => "allowed";
    moderate_denies_io_uring: "io_uring" in MODERATE => "denied";
    strict_denies_io_uring: "io_uring" in STRICT => "denied";
    strict_network_denies_io_uring: "io_uring" in STRICT_NET => "denied";
    strict_fs_denies_io_uring: "io_uring" in STRICT_FS => "denied";

    permissive_ptraces: "ptrace" in PERMISSIVE => "allowed";
    moderate_ptraces: "ptrace" in MODERATE => "allowed";
    strict_denies_ptrace: "ptrace" in STRICT => "denied";
    strict_network_denies_ptrace: "ptrace" in STRICT_NET => "denied";
    strict_fs_denies_ptrace: "ptrace" in STRICT_FS => "denied";
}

macro_rules! interpreters {
    ($($test:ident: $column:ident, $node:literal;)*) => {
        $(
            #[test]
            fn $test() {
                interpreter(stringify!($test), $column, $node);
            }
        )*
    };
}

interpreters! {
    permissive_runs_home_python: PERMISSIVE, false;
    moderate_runs_home_python: MODERATE, false;
    strict_runs_home_python: STRICT, false;
    strict_network_runs_home_python: STRICT_NET, false;
    strict_fs_runs_home_python: STRICT_FS, false;
    permissive_runs_home_node: PERMISSIVE, true;
    moderate_runs_home_node: MODERATE, true;
    strict_runs_home_node: STRICT, true;
    strict_network_runs_home_node: STRICT_NET, true;
    strict_fs_runs_home_node: STRICT_FS, true;
}

/// Without Landlock (the probe made to report ABI 0), Moderate and Strict agents are refused
/// with the reason and nothing runs; Permissive still runs.
#[test]
fn without_landlock_confined_agents_are_refused() {
    let s = Scratch::new("sandbox-no-landlock");
    let cfg = s.config("allowed_executables = [\"sh\"]");
    let marker = s.work().join("ran");
    for level in ["Moderate", "Strict"] {
        let file = s.write(
            "a.dsl",
            &format!(
                "agent NoLandlock {{ security {{ tier: None sandbox: {level} }} on start {{ execute_native(\"sh -c 'touch {}'\") }} }}",
                marker.display()
            ),
        );
        let out = s
            .command(&[
                "run",
                file.to_str().unwrap(),
                "--native",
                "--headless",
                "--config",
            ])
            .arg(&cfg)
            .env("SYMBIONT_LANDLOCK_ABI", "0")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{level}: {err}");
        assert!(
            err.contains("Landlock") && err.contains("refused") && err.contains("a.dsl:1"),
            "{level}: {err}"
        );
        assert!(!marker.exists(), "{level}: nothing ran");
    }
    // `exec` refuses with 126, as for any refusal by policy.
    let out = s
        .command(&[
            "exec",
            "--standalone",
            "--native",
            "--sandbox",
            "strict",
            "--config",
        ])
        .arg(&cfg)
        .args(["--", "sh", "-c", "echo ran"])
        .env("SYMBIONT_LANDLOCK_ABI", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(!stdout(&out).contains("ran"));
    // Permissive needs nothing of the kernel.
    let out = s
        .command(&["exec", "--standalone", "--native", "--config"])
        .arg(&cfg)
        .args(["--", "sh", "-c", "echo ran"])
        .env("SYMBIONT_LANDLOCK_ABI", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("ran"));
}

/// A Moderate run gets its own TMPDIR, writable, and removed when the run ends; the operator's
/// `min_sandbox` raises a Permissive agent, and the audit log says the level.
#[test]
fn moderate_run_has_its_own_temp_directory_and_the_floor_holds() {
    let s = Scratch::new("sandbox-tmpdir");
    let cfg = s.config("allowed_executables = [\"sh\"]\nmin_sandbox = \"Moderate\"");
    let file = s.write(
        "a.dsl",
        "agent TmpUser { security { tier: None sandbox: Permissive } on start { execute_native(\"sh -c 'echo T=$TMPDIR; echo x > $TMPDIR/f && echo tmp-ok; echo y > /tmp/symbiont-floor-probe || echo tmp-denied'\") } }",
    );
    let out = s
        .command(&[
            "run",
            file.to_str().unwrap(),
            "--native",
            "--json",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    let recs = records(&out);
    let tail = tail_of(&recs[0], "stdout");
    let tmp = tail
        .iter()
        .find_map(|l| l.strip_prefix("T="))
        .unwrap_or_else(|| panic!("{tail:?}"));
    // Named after the supervisor, which made more ahead for the next runs and removed them
    // when it ended.
    let supervisor = Path::new(tmp)
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("symbiont-tmp"))
        .and_then(|n| n.split_once('-'))
        .map(|(pid, _)| format!("symbiont-tmp{pid}-"))
        .unwrap_or_else(|| panic!("{tmp}"));
    let left: Vec<_> = std::fs::read_dir(Path::new(tmp).parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&supervisor))
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(tail.iter().any(|l| l == "tmp-ok"), "{tail:?}");
    assert!(
        tail.iter().any(|l| l == "tmp-denied"),
        "the floor confined it: {tail:?}"
    );
    assert!(!Path::new("/tmp/symbiont-floor-probe").exists());
    assert!(!Path::new(tmp).exists(), "{tmp} removed after the run");
    let audit = std::fs::read_to_string(s.path("data/audit.jsonl")).unwrap();
    assert!(audit.contains("\"level\":\"Moderate\""), "{audit}");
    assert_none_left("TmpUser");
}

/// A confined agent's refused calls reach the dashboard while it runs (a count on its row, the
/// list in the detail pane), then its record and the audit log's exit line.
#[test]
fn denials_show_on_the_dashboard_and_in_the_audit_log() {
    let s = Scratch::new("sandbox-denials");
    let cfg = s.config("allowed_executables = [\"/usr/bin/python3\"]");
    std::fs::write(
        s.work().join("deny.py"),
        "import socket, time\ntry:\n    socket.create_connection(('127.0.0.1', 9))\nexcept OSError as e:\n    print('refused', e, flush=True)\ntime.sleep(60)\n",
    )
    .unwrap();
    let file = s.write(
        "d.dsl",
        "agent Denied { security { tier: None sandbox: Moderate } on start { execute_native(\"/usr/bin/python3 deny.py\") } }",
    );
    let mut cmd = s.command(&["run", file.to_str().unwrap(), "--native", "--config"]);
    cmd.arg(&cfg);
    let mut p = common::pty::Pty::spawn(cmd, 160, 80);
    p.wait_for("⊘1 denied", Duration::from_secs(15));
    let (_, line) = p.line_with("Denied").unwrap();
    assert!(line.contains("native/M"), "{line}");
    p.send("\r");
    p.wait_for("⊘ socket(AF_INET): network", Duration::from_secs(5));
    p.send("q");
    p.wait_for("still running", Duration::from_secs(5));
    p.send("y");
    p.wait_exit(Duration::from_secs(15));
    assert_none_left("Denied");
    let audit = std::fs::read_to_string(s.path("data/audit.jsonl")).unwrap();
    let exit = audit
        .lines()
        .find(|l| l.contains("\"event\":\"exit\""))
        .unwrap_or_else(|| panic!("{audit}"));
    assert!(
        exit.contains("\"denials\":1") && exit.contains("socket(AF_INET): network"),
        "{exit}"
    );
    // The record beside the run's logs (data/runs/SESSION/RUN/record.json).
    let records: Vec<String> = std::fs::read_dir(s.path("data/runs"))
        .unwrap()
        .flatten()
        .flat_map(|session| std::fs::read_dir(session.path()).unwrap().flatten())
        .filter_map(|run| std::fs::read_to_string(run.path().join("record.json")).ok())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let r: serde_json::Value = serde_json::from_str(&records[0]).unwrap();
    assert_eq!(r["denials"], 1, "{r}");
    assert_eq!(r["sandbox"], "Moderate", "{r}");
}

/// The operator's `allow_read` opens one file beneath a denied location, and nothing else.
#[test]
fn allow_read_opens_one_file_beneath_a_secret_location() {
    let s = Scratch::new("sandbox-allow-read");
    let home = s.path("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    std::fs::write(home.join(".ssh/known_hosts"), "host ssh-ed25519 AAAA").unwrap();
    let cfg = s.config(
        "allowed_executables = [\"sh\"]\nallow_read = [\"~/.ssh/known_hosts\"]\ndeny_read = [\"~/notes\"]",
    );
    std::fs::write(home.join("notes"), "private notes").unwrap();
    let out = s
        .command(&["exec", "--standalone", "--native", "--sandbox", "strict", "--config"])
        .arg(&cfg)
        .args([
            "--",
            "sh",
            "-c",
            "cat ~/.ssh/known_hosts; cat ~/.ssh/id_ed25519 || echo key-denied; cat ~/notes || echo notes-denied",
        ])
        .env("HOME", &home)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("host ssh-ed25519"), "{text}{}", stderr(&out));
    assert!(
        text.contains("key-denied") && !text.contains("PRIVATE"),
        "{text}"
    );
    assert!(
        text.contains("notes-denied") && !text.contains("private notes"),
        "{text}"
    );
}
