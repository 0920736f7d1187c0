//! The enforcement tests on a real systemd host (issue 13): Debian 12 in a VM from
//! `scripts/systemd-vm` (systemd PID 1, cgroup v2 only, logind), where the debug binary runs as
//! the ordinary user `dev` in a real login session and as root. The CI machines have neither
//! systemd nor an ordinary user's cgroups (shared/notes/real-hosts.md).
//!
//! Its own `main` (`harness = false`): the VM boots once for the whole suite (20-30 s under
//! software emulation) and is powered off at the end, after a failed case, a panic or SIGINT/
//! SIGTERM, unless it was already running when the suite started. Every case prints
//! `test NAME ... ok|FAILED` as libtest does, and the binary exits 1 if any failed. Without a
//! VM (no QEMU, no image and `scripts/systemd-vm build` fails, no boot) it says SKIPPED loudly,
//! and fails under `SYMBIONT_REQUIRE_RUNTIMES=1`. Arguments: name filters, `--exact`,
//! `--skip NAME`, `--list`, as libtest takes them.

#[cfg(target_os = "linux")]
mod common;

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    println!("systemd_vm: the systemd VM suite runs on Linux hosts only");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use crate::common;

    const MIB: f64 = 1024.0 * 1024.0;
    /// Longest one SSH session of a case may take (a JVM compiling under emulation is the slowest).
    const SESSION_LIMIT: Duration = Duration::from_secs(420);

    #[derive(Clone, Copy, PartialEq)]
    enum User {
        Dev,
        Root,
    }

    impl User {
        fn name(self) -> &'static str {
            match self {
                User::Dev => "dev",
                User::Root => "root",
            }
        }
    }

    type CaseFn = fn(&Case);

    const CASES: &[(&str, CaseFn)] = &[
        ("check_names_cgroup_v2_memory_pids_and_cpu", check),
        (
            "a_gibibyte_under_256_mb_is_memory_limit_at_the_limit",
            one_gibibyte,
        ),
        (
            "a_pool_of_four_150_mb_workers_under_256_mb_is_memory_limit",
            worker_pool,
        ),
        ("a_fork_bomb_under_50_processes_is_process_limit", fork_bomb),
        (
            "half_a_core_holds_a_busy_loop_near_half_a_core",
            half_a_core,
        ),
        (
            "node_webassembly_starts_under_the_default_limit",
            node_webassembly,
        ),
        ("a_jvm_starts_under_the_default_limit", jvm),
        ("a_setsid_daemon_dies_at_run_end", daemon_at_run_end),
        (
            "a_setsid_daemon_dies_with_an_operator_kill",
            daemon_operator_kill,
        ),
        (
            "a_setsid_daemon_dies_with_a_sigkilled_supervisor",
            daemon_supervisor_sigkill,
        ),
        (
            "started_in_a_delegated_scope_it_divides_that_scope",
            divides_a_delegated_scope,
        ),
        (
            "without_the_managers_bus_it_falls_back_and_names_the_step",
            without_the_bus,
        ),
        (
            "the_service_as_a_systemd_unit_holds_limits_and_stops_its_agents",
            service_unit,
        ),
    ];

    pub fn main() {
        let args = Args::parse();
        let selected: Vec<(String, CaseFn, User)> = [User::Dev, User::Root]
            .into_iter()
            .flat_map(|u| {
                CASES
                    .iter()
                    .map(move |&(n, f)| (format!("{n}::{}", u.name()), f, u))
            })
            .filter(|(n, _, _)| args.wants(n))
            .collect();
        if args.list {
            for (n, _, _) in &selected {
                println!("{n}: test");
            }
            return;
        }
        println!("\nrunning {} tests", selected.len());
        if selected.is_empty() {
            return;
        }
        let t0 = Instant::now();
        let vm = match Vm::start() {
            Ok(vm) => vm,
            Err(why) => {
                common::skip("systemd_vm", &why);
                return;
            }
        };
        let mut failed = Vec::new();
        // A failure is printed once, in the summary, as libtest does.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        for (name, f, user) in &selected {
            let t = Instant::now();
            let case = Case {
                vm: &vm,
                user: *user,
                name: name.split("::").next().unwrap().to_string(),
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&case)));
            let secs = t.elapsed().as_secs_f64();
            match outcome {
                Ok(()) => println!("test {name} ... ok ({secs:.1} s)"),
                Err(p) => {
                    println!("test {name} ... FAILED ({secs:.1} s)");
                    failed.push((name.clone(), panic_text(&p)));
                }
            }
        }
        std::panic::set_hook(hook);
        drop(vm);
        if !failed.is_empty() {
            println!("\nfailures:\n");
            for (n, why) in &failed {
                println!("---- {n} ----\n{why}\n");
            }
            println!("failures:");
            for (n, _) in &failed {
                println!("    {n}");
            }
        }
        println!(
            "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
            if failed.is_empty() { "ok" } else { "FAILED" },
            selected.len() - failed.len(),
            failed.len(),
            CASES.len() * 2 - selected.len(),
            t0.elapsed().as_secs_f64()
        );
        if !failed.is_empty() {
            std::process::exit(1);
        }
    }

    fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(a panic without a message)".into())
    }

    /// libtest's arguments, as far as they make sense here.
    struct Args {
        filters: Vec<String>,
        skips: Vec<String>,
        exact: bool,
        list: bool,
    }

    impl Args {
        fn parse() -> Args {
            let mut a = Args {
                filters: Vec::new(),
                skips: Vec::new(),
                exact: false,
                list: false,
            };
            let mut it = std::env::args().skip(1);
            while let Some(arg) = it.next() {
                match arg.as_str() {
                    "--list" => a.list = true,
                    "--exact" => a.exact = true,
                    "--skip" => a.skips.extend(it.next()),
                    // Options with a value that mean nothing here.
                    "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                        it.next();
                    }
                    s if s.starts_with('-') => {}
                    s => a.filters.push(s.to_string()),
                }
            }
            a
        }

        fn wants(&self, name: &str) -> bool {
            let hit = |f: &String| {
                if self.exact {
                    name == f
                } else {
                    name.contains(f.as_str())
                }
            };
            (self.filters.is_empty() || self.filters.iter().any(hit))
                && !self.skips.iter().any(|s| name.contains(s.as_str()))
        }
    }

    // ------------------------------------------------------------------------------------------
    // The VM.

    struct Vm {
        script: PathBuf,
        bin: PathBuf,
        /// Whether this suite booted it, and so powers it off.
        owned: bool,
        nonce: String,
    }

    impl Vm {
        fn start() -> Result<Vm, String> {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let script = root.join("scripts/systemd-vm");
            let mut vm = Vm {
                bin: guest_binary(),
                script,
                owned: false,
                nonce: format!("{}", std::process::id()),
            };
            let status = vm
                .command(&["status"])
                .output()
                .map_err(|e| format!("cannot run {}: {e}", vm.script.display()))?;
            if common::stdout(&status).starts_with("running") {
                println!(
                    "systemd_vm: using the VM that is already running (left running at the end)"
                );
                return Ok(vm);
            }
            // A no-op when the image is up to date; installs QEMU and debootstrap and builds the
            // image (about 140 s) when it is not.
            let t = Instant::now();
            let built = vm
                .command(&["build"])
                .stdout(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", vm.script.display()))?;
            if !built.status.success() {
                return Err(format!(
                    "no systemd VM: `scripts/systemd-vm build` failed ({}):\n{}",
                    built.status,
                    common::stderr(&built).trim_end()
                ));
            }
            if t.elapsed() > Duration::from_secs(5) {
                println!(
                    "systemd_vm: image built in {:.0} s",
                    t.elapsed().as_secs_f64()
                );
            }
            vm.owned = true;
            install_stop_on_signals(vm.script.clone());
            let t = Instant::now();
            let up = vm
                .command(&["run", "--root", "--", "true"])
                .output()
                .map_err(|e| e.to_string())?;
            if !up.status.success() {
                return Err(format!(
                    "no systemd VM: it did not boot ({}):\n{}",
                    up.status,
                    common::stderr(&up).trim_end()
                ));
            }
            eprint!("{}", common::stderr(&up));
            println!(
                "systemd_vm: VM booted and {} installed in {:.1} s",
                vm.bin.display(),
                t.elapsed().as_secs_f64()
            );
            Ok(vm)
        }

        fn command(&self, args: &[&str]) -> Command {
            let mut c = Command::new(&self.script);
            c.args(args)
                .env("SYMBIONT_BIN", &self.bin)
                .stdin(Stdio::null());
            c
        }

        /// One login session of `user` running `script` in bash, after copying `copies`
        /// (`HOST:GUEST`) in as that user.
        fn session(&self, user: User, copies: &[String], script: &str) -> Command {
            let mut args = vec!["run".to_string()];
            match user {
                User::Dev => args.extend(["--user".into(), "dev".into()]),
                User::Root => args.push("--root".into()),
            }
            for c in copies {
                args.extend(["--copy".into(), c.clone()]);
            }
            args.extend(["--".into(), "bash".into(), "-c".into(), script.into()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut c = self.command(&args);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c
        }
    }

    impl Drop for Vm {
        fn drop(&mut self) {
            if self.owned {
                let t = Instant::now();
                let _ = self.command(&["stop"]).stdout(Stdio::null()).status();
                println!(
                    "systemd_vm: VM stopped in {:.1} s",
                    t.elapsed().as_secs_f64()
                );
            }
        }
    }

    /// The test's debug binary without its debug info: a tenth of the size, so that copying
    /// it into the emulated guest takes a second or two instead of ten.
    fn guest_binary() -> PathBuf {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_symbiont"));
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("systemd-vm-symbiont");
        let ok = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&bin)
            .arg(&out)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            out
        } else {
            bin
        }
    }

    /// Ctrl-C or a SIGTERM to the suite powers the VM off too: a forgotten QEMU under software
    /// emulation would burn a host core. The signals are blocked here and waited for by a
    /// thread (children start with an empty mask: std resets it).
    fn install_stop_on_signals(script: PathBuf) {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        if set.thread_block().is_err() {
            return;
        }
        std::thread::spawn(move || {
            if let Ok(sig) = set.wait() {
                eprintln!("systemd_vm: {sig}: powering the VM off");
                let _ = Command::new(&script)
                    .arg("stop")
                    .stdin(Stdio::null())
                    .status();
                std::process::exit(128 + sig as i32);
            }
        });
    }

    /// Waits for `child` at most `limit`, reading both streams; kills it past the limit.
    fn wait_within(mut child: Child, limit: Duration) -> Result<Output, String> {
        let pipe = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut v);
                }
                v
            })
        };
        let out = pipe(child.stdout.take().map(|s| Box::new(s) as _));
        let err = pipe(child.stderr.take().map(|s| Box::new(s) as _));
        let until = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break s;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the session took more than {} s: killed\nstdout:\n{}\nstderr:\n{}",
                    limit.as_secs(),
                    String::from_utf8_lossy(&out.join().unwrap_or_default()),
                    String::from_utf8_lossy(&err.join().unwrap_or_default()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }

    // ------------------------------------------------------------------------------------------
    // A case: its scripts in the guest, and what they print.

    struct Case<'a> {
        vm: &'a Vm,
        user: User,
        name: String,
    }

    /// Helpers every guest script starts with. `$M` is the case's marker: every process of the
    /// case carries it in its command line (as an argument), and no script's own text does
    /// (it is spelt split), so `pgrep -f "$M"` finds exactly the case's processes.
    const GUEST_HELPERS: &str = r#"
set -u
section() { printf '\n@@section %s\n' "$1"; }
show() { section "$1"; cat "$2" 2>/dev/null; }
# await FILE SECONDS: until FILE is not empty
await() { local i; for i in $(seq $(( $2 * 10 ))); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
# gone PIDFILE SECONDS: "gone" once that process is gone (or a zombie), else what still lives
gone() {
  local pid st i
  pid=$(cat "$1" 2>/dev/null) || { echo "no pid file $1"; return; }
  for i in $(seq $(( $2 * 10 ))); do
    st=$(ps -o stat= -p "$pid")
    if [ -z "$st" ] || [[ $st == Z* ]]; then echo gone; return; fi
    sleep 0.1
  done
  echo "alive after $2 s: $(ps -o pid=,ppid=,sid=,user=,stat=,args= -p "$pid") in cgroup $(cat /proc/$pid/cgroup 2>/dev/null)"
}
new_cgroups() { find /sys/fs/cgroup -name 'symbiont*' 2>/dev/null | sort | comm -13 cgroups.before -; }
# finish: what the case left behind (after up to 5 s), then clean it up for the next case
finish() {
  local p= c= i
  for i in $(seq 50); do p=$(pgrep -a -f -- "$M"); [ -z "$p" ] && break; sleep 0.1; done
  section leftover_processes; [ -z "$p" ] || echo "$p"
  for i in $(seq 50); do c=$(new_cgroups); [ -z "$c" ] && break; sleep 0.1; done
  section leftover_cgroups; [ -z "$c" ] || echo "$c"
  for i in 1 2 3; do pkill -KILL -f -- "$M" 2>/dev/null || break; sleep 0.2; done
  [ -z "$c" ] || echo "$c" | sort -r | xargs rmdir 2>/dev/null
  section end
  exit 0
}
"#;

    /// A Python program that double-forks a `setsid` daemon which writes its pid to argv[1] and
    /// sleeps; the main process waits for that pid file, then exits (argv[2] == "end") or stays.
    const DAEMON_PY: &str = r#"import os, sys, time
pidfile, mode = sys.argv[1], sys.argv[2]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        time.sleep(300)
    os._exit(0)
os.wait()
while not os.path.exists(pidfile):
    time.sleep(0.05)
print("daemon", open(pidfile).read(), flush=True)
if mode == "stay":
    time.sleep(300)
"#;

    /// Four pool workers that each touch 150 MB and then hold it.
    const POOL_PY: &str = r#"import multiprocessing, sys, time
def work(i):
    b = bytearray(150 * 1024 * 1024)
    for j in range(0, len(b), 4096):
        b[j] = 1
    time.sleep(60)
    return len(b)
if __name__ == "__main__":
    with multiprocessing.Pool(4) as p:
        print(sum(p.map(work, range(4))))
"#;

    const HELLO_JAVA: &str = r#"public class Hello {
    public static void main(String[] args) {
        int[] a = new int[50_000_000]; // 200 MB of heap
        for (int i = 0; i < a.length; i += 1024) a[i] = i;
        System.out.println("hello from the JVM " + a.length);
    }
}
"#;

    impl Case<'_> {
        fn marker(&self) -> String {
            format!("{}-{}-{}", self.name, self.user.name(), self.vm.nonce)
        }

        /// The variables and helpers of every script of this case: `$M`, the case's directory
        /// `$D` (the current directory).
        fn vars(&self) -> String {
            format!(
                "M=svm''-{m}\nD=/tmp/svm''-{m}\n{GUEST_HELPERS}\ncd \"$D\" || exit 125\n",
                m = self.marker()
            )
        }

        /// A fresh `$D` with `config.toml` (native execution allowed, `timeout` seconds of
        /// wall clock, `extra` lines under [native_execution]) and the cgroups that exist before.
        fn setup(&self, timeout: u32, extra: &str) -> String {
            format!(
                "D0=/tmp/svm''-{m}\nrm -rf \"$D0\"; mkdir -p \"$D0/work\" \"$D0/data\"\n{vars}\
                 T={timeout}\n\
                 find /sys/fs/cgroup -name 'symbiont*' 2>/dev/null | sort > cgroups.before\n\
                 cat > config.toml <<EOF\n\
                 [security]\nallow_native_execution = true\ndefault_sandbox_tier = \"None\"\n\n\
                 [native_execution]\nworking_directory = \"$D/work\"\nkill_grace_seconds = 1\n\
                 allowed_executables = [\"bash\", \"sh\", \"python3\", \"node\", \"java\"]\n\
                 max_execution_time_seconds = {timeout}\n{extra}\n\n\
                 [supervisor]\ndata_dir = \"$D/data\"\nEOF\n",
                m = self.marker(),
                vars = self.vars()
            )
        }

        /// A script that sets up, runs `body` and reports what was left behind.
        fn script(&self, timeout: u32, extra: &str, body: &str) -> String {
            format!("{}{body}\nfinish\n", self.setup(timeout, extra))
        }

        /// A script that writes `prep`, then runs `argv` under `symbiont exec --json` (see
        /// [`Case::exec`]); what it printed and the run's record.
        fn exec_run(
            &self,
            timeout: u32,
            extra: &str,
            prep: &str,
            flags: &str,
            argv: &str,
        ) -> (Sections, Value) {
            let s = self.run(&self.script(
                timeout,
                extra,
                &format!("{prep}{}", Case::exec(flags, argv)),
            ));
            let r = s.exec_record();
            (s, r)
        }

        fn run(&self, script: &str) -> Sections {
            self.run_copying(&[], script)
        }

        fn run_copying(&self, copies: &[String], script: &str) -> Sections {
            let child = self
                .vm
                .session(self.user, copies, script)
                .spawn()
                .expect("scripts/systemd-vm");
            self.sections(wait_within(child, SESSION_LIMIT))
        }

        fn spawn(&self, script: &str) -> Child {
            self.vm
                .session(self.user, &[], script)
                .spawn()
                .expect("scripts/systemd-vm")
        }

        fn sections(&self, o: Result<Output, String>) -> Sections {
            let o = o.unwrap_or_else(|e| panic!("{}", e));
            let s = Sections::parse(&o);
            assert!(
                o.status.success(),
                "the session ended with {} (255: ssh failed; 125: scripts/systemd-vm failed)\n{}",
                o.status,
                s
            );
            s
        }

        /// `symbiont exec --json` of `argv` (with `flags` before `--`), as a guest script line
        /// whose record lands in the section `record`. A supervisor still running 30 s past the
        /// run's timeout has failed already: `timeout(1)` stops it, so that the emulated VM is
        /// not left to a fork bomb for minutes.
        fn exec(flags: &str, argv: &str) -> String {
            format!(
                "timeout -k 10 $((T + 30)) symbiont exec --config config.toml --json {flags} -- {argv} \"$M\" > out 2> err\n\
                 echo $? > rc\nshow record out; show stderr err; show rc rc\n"
            )
        }
    }

    /// What a guest script printed, by `@@section NAME`, plus the session's stderr.
    struct Sections(BTreeMap<String, String>);

    impl Sections {
        fn parse(o: &Output) -> Sections {
            let mut map = BTreeMap::new();
            let mut name = "(before any section)".to_string();
            let mut text = String::new();
            for line in common::stdout(o).lines() {
                if let Some(n) = line.strip_prefix("@@section ") {
                    map.insert(
                        std::mem::replace(&mut name, n.to_string()),
                        text.trim().to_string(),
                    );
                    text.clear();
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            map.insert(name, text.trim().to_string());
            map.insert(
                "session stderr".into(),
                common::stderr(o).trim().to_string(),
            );
            Sections(map)
        }

        fn get(&self, name: &str) -> &str {
            self.0
                .get(name)
                .map(String::as_str)
                .unwrap_or_else(|| panic!("the guest printed no section `{name}`:\n{self}"))
        }

        /// The `exec --json` record in `record`.
        fn exec_record(&self) -> Value {
            if matches!(self.0.get("rc").map(String::as_str), Some("124" | "137")) {
                assert!(
                    !self.get("record").is_empty(),
                    "the supervisor was still running 30 s past the run's timeout: timeout(1) \
                     stopped it (exit {}), no run record:\n{self}",
                    self.get("rc")
                );
            }
            serde_json::from_str(self.get("record"))
                .unwrap_or_else(|e| panic!("no run record ({e}):\n{self}"))
        }

        /// The one record of the final JSON array `run --json` prints, in `name`.
        fn run_record(&self, name: &str) -> Value {
            let last = self.get(name).lines().rev().find(|l| l.starts_with('['));
            let rs: Vec<Value> = last
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or_else(|| panic!("no run records in `{name}`:\n{self}"));
            assert_eq!(rs.len(), 1, "one run expected:\n{self}");
            rs[0].clone()
        }
    }

    impl std::fmt::Display for Sections {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            for (k, v) in &self.0 {
                if !v.is_empty() {
                    writeln!(f, "  [{k}]")?;
                    for l in v.lines().take(40) {
                        writeln!(f, "    {l}")?;
                    }
                }
            }
            Ok(())
        }
    }

    /// Every expectation of a case, checked in full so a failure names all that went wrong.
    struct Checks<'a> {
        s: &'a Sections,
        failed: Vec<String>,
    }

    impl<'a> Checks<'a> {
        fn new(s: &'a Sections) -> Checks<'a> {
            Checks {
                s,
                failed: Vec::new(),
            }
        }

        fn expect(&mut self, ok: bool, what: impl std::fmt::Display) {
            if !ok {
                self.failed.push(what.to_string());
            }
        }

        fn reason(&mut self, r: &Value, want: &str) {
            self.expect(
                r["reason"] == want,
                format!(
                    "reason {} (killed_by {}, exit {}, signal {}), expected {want}",
                    r["reason"], r["killed_by"], r["exit_code"], r["signal"]
                ),
            );
        }

        /// The record's peak memory is within 5 % of `limit_mib`.
        fn peak_near(&mut self, r: &Value, limit_mib: f64) {
            let peak = r["peak_memory_bytes"].as_f64().unwrap_or(0.0) / MIB;
            self.expect(
                (peak - limit_mib).abs() <= limit_mib * 0.05,
                format!("peak memory {peak:.1} MiB, not within 5 % of the {limit_mib} MiB limit"),
            );
        }

        fn gone(&mut self, section: &str, what: &str) {
            let v = self.s.get(section);
            self.expect(v == "gone", format!("{what}: {v}"));
        }

        /// No process of the case and no new `symbiont*` cgroup is left; then every check.
        fn done(mut self) {
            let p = self.s.get("leftover_processes");
            self.expect(p.is_empty(), format!("processes left behind:\n{p}"));
            let c = self.s.get("leftover_cgroups");
            self.expect(c.is_empty(), format!("cgroups left behind:\n{c}"));
            if !self.failed.is_empty() {
                panic!(
                    "{}\nwhat the guest printed:\n{}",
                    self.failed
                        .iter()
                        .map(|f| format!("- {f}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.s
                );
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // The cases.

    /// `check` names, among the mechanisms on this host for this user, cgroup v2 for memory,
    /// processes and CPU.
    fn check(c: &Case) {
        let s = c.run(&c.script(
            60,
            "",
            "symbiont check --config config.toml > out 2> err; echo $? > rc\n\
             show check out; show stderr err; show rc rc\n",
        ));
        let mut k = Checks::new(&s);
        k.expect(s.get("rc") == "0", "check did not exit 0");
        let out = s.get("check").to_lowercase();
        let mechanisms: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.contains("enforcement"))
            .collect();
        k.expect(!mechanisms.is_empty(), "no `enforcement` section");
        // One line per limit, naming the mechanism that holds it for this user.
        for (limit, file) in [
            ("memory:", "memory.max"),
            ("processes:", "pids.max"),
            ("cpu cores:", "cpu.max"),
        ] {
            let line = mechanisms
                .iter()
                .find(|l| l.trim_start().starts_with(limit))
                .copied()
                .unwrap_or("");
            k.expect(
                line.contains("cgroup v2") && line.contains(file),
                format!("`{limit}` is not held by cgroup v2 {file}: {line:?}"),
            );
        }
        k.expect(
            mechanisms.iter().any(|l| l.contains("delegat")),
            "check does not say where the delegated cgroup came from",
        );
        k.done();
    }

    /// The lines of `check`'s enforcement section, lower-cased.
    fn enforcement(check: &str) -> Vec<String> {
        check
            .to_lowercase()
            .lines()
            .skip_while(|l| !l.contains("enforcement"))
            .map(|l| l.trim().to_string())
            .collect()
    }

    /// Started by `systemd-run --scope -p Delegate=yes` (the user's manager for dev), symbiont
    /// owns its cgroup alone: it divides that one rather than asking for another, and the
    /// kernel holds the memory limit.
    fn divides_a_delegated_scope(c: &Case) {
        let wrap = match c.user {
            User::Dev => "systemd-run --user --scope -p Delegate=yes --quiet --",
            User::Root => "systemd-run --scope -p Delegate=yes --quiet --",
        };
        let s = c.run(&c.script(
            60,
            "",
            &format!(
                "{wrap} symbiont check --config config.toml > check 2> err; echo $? > rc
                 show check check; show stderr err; show rc rc
                 {wrap} {}",
                Case::exec("--max-memory=256", "python3 -c 'b = bytearray(1 << 30)'")
            ),
        ));
        let mut k = Checks::new(&s);
        let lines = enforcement(s.get("check"));
        k.expect(
            lines.iter().any(|l| l.contains("own cgroup, divided")),
            "check does not say it divided the delegated cgroup it was started in",
        );
        k.expect(
            !lines.iter().any(|l| l.contains("transient scope")),
            "it asked systemd for another scope although its own was delegated",
        );
        k.expect(
            lines
                .iter()
                .any(|l| l.starts_with("memory:") && l.contains("cgroup v2 memory.max")),
            "memory is not held by cgroup v2",
        );
        let r = s.exec_record();
        k.reason(&r, "memory_limit");
        k.expect(
            r["killed_by"] == "kernel",
            format!("killed_by {}: not the kernel's OOM kill", r["killed_by"]),
        );
        k.done();
    }

    /// With the manager's bus out of reach (no session bus for dev, a wrong system bus address
    /// for root), symbiont falls back to RLIMIT_DATA and the watchdog, holds the memory limit
    /// that way, and `check` names the step that would give kernel limits.
    fn without_the_bus(c: &Case) {
        let env = match c.user {
            User::Dev => "env -u DBUS_SESSION_BUS_ADDRESS XDG_RUNTIME_DIR=/nonexistent",
            User::Root => "env DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent",
        };
        let s = c.run(&c.script(
            60,
            "",
            &format!(
                "{env} symbiont check --config config.toml > check 2> err; echo $? > rc
                 show check check; show stderr err; show rc rc
                 {env} {}",
                Case::exec("--max-memory=256", "python3 -c 'b = bytearray(1 << 30)'")
            ),
        ));
        let mut k = Checks::new(&s);
        let lines = enforcement(s.get("check"));
        k.expect(
            lines.iter().any(|l| {
                l.starts_with("memory:") && l.contains("rlimit_data") && l.contains("watchdog")
            }),
            "check does not name RLIMIT_DATA and the watchdog for memory",
        );
        k.expect(
            lines
                .iter()
                .any(|l| l.starts_with("for limits the kernel enforces:")),
            "check does not name the step to kernel-enforced limits",
        );
        k.reason(&s.exec_record(), "memory_limit");
        k.done();
    }

    fn one_gibibyte(c: &Case) {
        let (s, r) = c.exec_run(
            60,
            "",
            "",
            "--max-memory=256",
            "python3 -c 'b = bytearray(1 << 30)'",
        );
        let mut k = Checks::new(&s);
        k.reason(&r, "memory_limit");
        k.expect(
            r["killed_by"] == "kernel",
            format!(
                "killed_by {}: not the kernel's OOM kill in the run's group",
                r["killed_by"]
            ),
        );
        k.peak_near(&r, 256.0);
        k.done();
    }

    fn worker_pool(c: &Case) {
        let (s, r) = c.exec_run(
            90,
            "",
            &format!("cat > work/pool.py <<'EOF'\n{POOL_PY}EOF\n"),
            "--max-memory=256",
            "python3 pool.py",
        );
        let mut k = Checks::new(&s);
        k.reason(&r, "memory_limit");
        k.peak_near(&r, 256.0);
        k.done();
    }

    fn fork_bomb(c: &Case) {
        // A bomb nothing contains makes the emulated VM crawl: 30 s of wall clock at most.
        let (s, r) = c.exec_run(
            30,
            "max_processes = 50",
            "",
            "",
            "bash -c 'f() { f | f & }; f; sleep 60'",
        );
        let mut k = Checks::new(&s);
        k.reason(&r, "process_limit");
        let n = r["processes"].as_u64().unwrap_or(u64::MAX);
        k.expect(n <= 50, format!("{n} processes under a limit of 50"));
        let d = r["duration_secs"].as_f64().unwrap_or(f64::INFINITY);
        k.expect(
            d < 30.0,
            format!("ended after {d:.0} s, past its 30 s timeout"),
        );
        k.done();
    }

    fn half_a_core(c: &Case) {
        let (s, r) = c.exec_run(
            60,
            "max_cpu_cores = 0.5",
            "",
            "",
            "python3 -c 'import time\nt = time.time()\nwhile time.time() - t < 6: pass'",
        );
        let mut k = Checks::new(&s);
        k.reason(&r, "exited");
        let cpu = r["cpu_seconds"].as_f64().unwrap_or(0.0);
        let wall = r["duration_secs"].as_f64().unwrap_or(f64::INFINITY);
        let ratio = cpu / wall;
        k.expect(
            (0.35..=0.65).contains(&ratio),
            format!("{cpu:.2} s of CPU in {wall:.2} s: {ratio:.2} cores, not about 0.5"),
        );
        k.done();
    }

    /// The record ended `exited` with status 0 and `line` in its stdout.
    fn succeeded(k: &mut Checks, r: &Value, line: &str) {
        k.reason(r, "exited");
        k.expect(r["exit_code"] == 0, format!("exit code {}", r["exit_code"]));
        let out = r["stdout_tail"].to_string();
        k.expect(out.contains(line), format!("`{line}` not in stdout {out}"));
    }

    fn node_webassembly(c: &Case) {
        let (s, r) = c.exec_run(
            120,
            "",
            "",
            "",
            "node -e 'new WebAssembly.Memory({initial:256}); console.log(\"wasm ok\")'",
        );
        let mut k = Checks::new(&s);
        succeeded(&mut k, &r, "wasm ok");
        k.done();
    }

    fn jvm(c: &Case) {
        let host = Path::new(env!("CARGO_TARGET_TMPDIR")).join("systemd-vm-Hello.java");
        std::fs::write(&host, HELLO_JAVA).unwrap();
        let guest = format!("/tmp/Hello-{}.java", c.marker());
        let s = c.run_copying(
            &[format!("{}:{guest}", host.display())],
            &c.script(
                300,
                "",
                &format!(
                    "mv {guest} work/Hello.java\n{}",
                    Case::exec("", "java -Xmx512m Hello.java")
                ),
            ),
        );
        let r = s.exec_record();
        let mut k = Checks::new(&s);
        succeeded(&mut k, &r, "hello from the JVM");
        k.done();
    }

    fn write_daemon() -> String {
        format!("cat > work/daemon.py <<'EOF'\n{DAEMON_PY}EOF\n")
    }

    /// An agent file running the daemon program in `mode`.
    fn daemon_agent(mode: &str) -> String {
        format!(
            "{}cat > agent.dsl <<EOF\nagent Daemon {{\n  security {{ tier: None }}\n  \
             on start {{ execute_native(\"python3 $D/work/daemon.py $D/daemon.pid {mode} $M\") }}\n}}\nEOF\n",
            write_daemon()
        )
    }

    fn daemon_at_run_end(c: &Case) {
        let s = c.run(&c.script(
            60,
            "",
            &format!(
                "{}{}section daemon; gone daemon.pid 5\n",
                write_daemon(),
                Case::exec("", "python3 daemon.py \"$D/daemon.pid\" end")
            ),
        ));
        let r = s.exec_record();
        let mut k = Checks::new(&s);
        succeeded(&mut k, &r, "daemon");
        k.gone("daemon", "the setsid daemon after the run ended");
        k.done();
    }

    /// The supervisor runs in one session; from a second one the operator stops it with
    /// SIGTERM (the headless client's kill: the CLI has no `kill` command yet).
    fn daemon_operator_kill(c: &Case) {
        let first = c.spawn(&format!(
            "{}{}symbiont run --config config.toml --json agent.dsl > out 2> err &\n\
             echo $! > supervisor.pid; wait $!; echo $? > rc\n\
             show records out; show stderr err; show rc rc\n",
            c.setup(120, ""),
            daemon_agent("stay")
        ));
        let second = c.run(&format!(
            "for i in $(seq 600); do [ -d /tmp/svm''-{} ] && break; sleep 0.1; done\n{}\
             for i in $(seq 600); do [ -s supervisor.pid ] && break; sleep 0.1; done\n\
             section started; await daemon.pid 120 && echo yes\n\
             kill -TERM \"$(cat supervisor.pid)\"\n\
             section daemon; gone daemon.pid 5\n\
             section supervisor; gone supervisor.pid 15\n",
            c.marker(),
            c.vars()
        ));
        let first = c.sections(wait_within(first, SESSION_LIMIT));
        let last = c.run(&format!("{}finish\n", c.vars()));
        let mut all = first.0.clone();
        all.extend(second.0.clone());
        all.extend(last.0.clone());
        let s = Sections(all);
        let mut k = Checks::new(&s);
        k.expect(s.get("started") == "yes", "the daemon never wrote its pid");
        k.gone("daemon", "the setsid daemon after the operator's kill");
        k.gone("supervisor", "the supervisor after SIGTERM");
        let r = s.run_record("records");
        k.reason(&r, "killed_by_operator");
        k.done();
    }

    fn daemon_supervisor_sigkill(c: &Case) {
        let s = c.run(&c.script(
            120,
            "",
            &format!(
                "{}symbiont run --config config.toml --json agent.dsl > out 2> err &\n\
                 sup=$!\nsection started; await daemon.pid 120 && echo yes\n\
                 kill -KILL $sup; wait $sup\n\
                 section daemon; gone daemon.pid 5\nshow stderr err\n",
                daemon_agent("stay")
            ),
        ));
        let mut k = Checks::new(&s);
        k.expect(s.get("started") == "yes", "the daemon never wrote its pid");
        k.gone(
            "daemon",
            "the setsid daemon 5 s after the supervisor was SIGKILLed",
        );
        k.done();
    }

    /// `symbiont serve` as the README's systemd unit (a user unit for dev, a system one for
    /// root, `Delegate=yes`): an agent handed over with `run --detach` is held to its memory
    /// limit by the kernel, a daemon it leaves dies with `systemctl stop`, and so does the
    /// service.
    fn service_unit(c: &Case) {
        let (ctl, dir) = match c.user {
            User::Dev => ("systemctl --user", "$HOME/.config/systemd/user"),
            User::Root => ("systemctl", "/etc/systemd/system"),
        };
        let s = c.run(&c.script(
            120,
            "",
            &format!(
                "{daemon}U=svm-$M.service
mkdir -p {dir}
                 export XDG_RUNTIME_DIR=$D/rt; mkdir -p $XDG_RUNTIME_DIR; chmod 700 $XDG_RUNTIME_DIR
                 cat > {dir}/$U <<EOF
[Service]
ExecStart=$(command -v symbiont) serve --config $D/config.toml
                 Environment=XDG_RUNTIME_DIR=$D/rt
Delegate=yes
KillMode=mixed
TimeoutStopSec=30
EOF
                 {ctl} daemon-reload; {ctl} start $U
                 for i in $(seq 100); do [ -S $D/rt/symbiont/api.sock ] && break; sleep 0.1; done
                 section active; {ctl} is-active $U
                 cat > hungry.dsl <<EOF
agent Hungry {{
  security {{ tier: None }}
  limits {{ max_memory_mb: 256 }}
                   on start {{ execute_native(\"python3 -c 'b = bytearray(1 << 30)' $M\") }}
}}
EOF
                 symbiont run hungry.dsl --detach --native > out 2> err; show detach err
                 for i in $(seq 300); do symbiont history --json > hist 2>/dev/null; grep -q memory_limit hist && break; sleep 0.2; done
                 show history hist
                 symbiont run agent.dsl --detach --native > out 2> err
                 section started; await daemon.pid 60 && echo yes
                 {ctl} stop $U; section stopped; {ctl} is-active $U
                 section daemon; gone daemon.pid 5
                 section journal; journalctl $( [ {user} = dev ] && echo --user ) -u $U --no-pager -n 20 2>/dev/null
                 rm -f {dir}/$U; {ctl} daemon-reload
",
                daemon = daemon_agent("stay"),
                user = c.user.name(),
            ),
        ));
        let mut k = Checks::new(&s);
        k.expect(s.get("active").trim() == "active", "the unit did not start");
        let hist: Value = serde_json::from_str(s.get("history")).unwrap_or(Value::Null);
        let hungry = hist
            .as_array()
            .and_then(|a| a.iter().find(|r| r["agent"] == "Hungry"))
            .cloned()
            .unwrap_or(Value::Null);
        k.reason(&hungry, "memory_limit");
        k.expect(
            hungry["killed_by"] == "kernel",
            format!(
                "killed_by {}: not the kernel's (a cgroup's) OOM kill; message {}",
                hungry["killed_by"], hungry["message"]
            ),
        );
        k.expect(s.get("started") == "yes", "the daemon never wrote its pid");
        k.expect(
            s.get("stopped").trim() != "active",
            "the unit still runs after systemctl stop",
        );
        k.gone("daemon", "the setsid daemon 5 s after systemctl stop");
        k.done();
    }
}
