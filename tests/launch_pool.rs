//! The launcher pool (Linux with writable cgroups): a launch that finds a launcher ready runs
//! the agent before `launch()` returns, inside the launcher's groups with the run's limits, with
//! signals reset, and an unused launcher never outlives its supervisor. In a file of its own:
//! the last test counts this process's children.
#![cfg(target_os = "linux")]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use symbiont::supervisor::Limits;
use symbiont::supervisor::{Event, Reason, RunSpec, Step, Supervisor, SupervisorOptions};
use symbiont::SecurityTier;

/// One test at a time: the last one counts this process's children.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn supervisor(s: &Scratch) -> Supervisor {
    let mut o = SupervisorOptions::from_config(&symbiont::Config::default());
    o.data_dir = s.path("data");
    o.audit_log = s.path("data/audit.jsonl");
    o.refresh = Duration::from_millis(50);
    Supervisor::new(o).unwrap()
}

fn bash() -> PathBuf {
    symbiont::policy::lookup("bash", std::env::var_os("PATH").as_deref()).expect("bash")
}

fn spec(s: &Scratch, agent: &str, program: PathBuf, argv: &[&str], limits: Limits) -> RunSpec {
    RunSpec {
        agent: agent.into(),
        trigger: "start".into(),
        tier: SecurityTier::None,
        steps: vec![Step {
            program,
            argv: argv.iter().map(|a| a.to_string()).collect(),
        }],
        cwd: s.work(),
        env: vec![
            ("PATH".into(), std::env::var("PATH").unwrap()),
            ("SYMBIONT_AGENT".into(), agent.into()),
        ],
        limits,
        enforce_limits: true,
        kill_grace: Duration::from_millis(500),
        image: None,
        network: false,
        sandbox: Default::default(),
        source: None,
    }
}

/// Waits until the pool is full; `None` where this host has no pool (no writable cgroups).
async fn pool_ready(sup: &Supervisor) -> Option<usize> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (ready, size) = sup.launchers();
        if size == 0 {
            skip(
                "launch_pool",
                "no launcher pool on this host (no writable cgroups)",
            );
            return None;
        }
        if ready == size {
            return Some(size);
        }
        assert!(
            Instant::now() < until,
            "the pool never filled: {ready}/{size}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Through a ready launcher the agent is running when `launch` returns: its `Launched` event
/// is already there.
fn launched_by_now(events: &mut tokio::sync::broadcast::Receiver<Event>, id: u64) -> bool {
    matches!(events.try_recv(), Ok(Event::Launched { run_id, .. }) if run_id == id)
}

/// Whether the agent's `/proc/self/cgroup` (`out`) names a group of the pool (`z<n>`).
fn in_a_launchers_group(out: &str) -> bool {
    out.lines()
        .any(|l| l.contains("/z") && l.contains("symbiont-"))
}

/// Children of this process that are not zombies.
fn live_children() -> Vec<i32> {
    let me = (std::process::id() as i32).to_string();
    live_processes()
        .into_iter()
        .filter(|(_, f)| f.get(1) == Some(&me))
        .map(|(pid, _)| pid)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_launch_runs_in_the_launchers_groups_with_limits_and_clean_signals() {
    let _serial = SERIAL.lock().await;
    let s = Scratch::new("pool-run");
    let sup = supervisor(&s);
    let Some(size) = pool_ready(&sup).await else {
        return;
    };
    let mut events = sup.subscribe();
    let limits = Limits {
        memory_bytes: Some(96 << 20),
        max_processes: Some(40),
        ..Limits::default()
    };
    // The agent reports its groups, its memory and pids limits, and its signal state.
    let script = "cat /proc/self/cgroup; \
                  for c in $(sed -n 's/^[0-9]*:\\(memory\\|pids\\):\\(.*\\)$/\\1:\\2/p' /proc/self/cgroup); do \
                    ctl=${c%%:*}; path=${c#*:}; \
                    cat /sys/fs/cgroup/$ctl$path/memory.limit_in_bytes /sys/fs/cgroup/$ctl$path/pids.max 2>/dev/null; \
                  done; grep -E '^(SigBlk|SigIgn)' /proc/self/status";
    let id = sup
        .launch(spec(&s, "pooled", bash(), &["bash", "-c", script], limits))
        .unwrap();
    assert!(
        launched_by_now(&mut events, id),
        "no Launched event by the time launch() returned"
    );
    let rec = sup.wait(id).await.unwrap();
    assert_eq!(rec.reason, Reason::Exited, "{rec:?}");
    assert_eq!(rec.exit_code, Some(0), "{rec:?}");
    let out = std::fs::read_to_string(&rec.stdout_log).unwrap();
    assert!(
        in_a_launchers_group(&out),
        "not in a launcher's group:\n{out}"
    );
    let has_limit = |n: u64| out.lines().any(|l| l.trim() == n.to_string());
    if std::path::Path::new("/sys/fs/cgroup/memory").exists() {
        assert!(has_limit(96 << 20), "memory limit not written:\n{out}");
    }
    if std::path::Path::new("/sys/fs/cgroup/pids").exists() {
        assert!(has_limit(40), "pids limit not written:\n{out}");
    }
    // No blocked and no ignored signal reaches the agent.
    assert!(
        out.contains("SigBlk:\t0000000000000000"),
        "blocked signals:\n{out}"
    );
    // Bit 31 is glibc's internal signal 32, which the C library of the agent manages itself.
    let ign = out
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("SigIgn");
    assert_eq!(ign & 0x7fff_ffff, 0, "ignored signals:\n{out}");
    // The pool fills up again.
    assert_eq!(pool_ready(&sup).await, Some(size));
    drop(sup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_launch_applies_the_strict_sandbox_and_hands_over_its_denials() {
    let _serial = SERIAL.lock().await;
    let s = Scratch::new("pool-sandbox");
    let home = s.path("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    let c = symbiont::policy::confinement(
        &symbiont::config::NativeExecutionConfig::default(),
        "pooled-strict",
        symbiont::SandboxLevel::Strict,
        &[],
        Some(&home),
    )
    .unwrap();
    if let Err(e) = symbiont::sandbox::enforceable(&c) {
        skip(
            "launch_pool sandbox",
            &format!("no native sandbox here: {e}"),
        );
        return;
    }
    let sup = supervisor(&s);
    let Some(_) = pool_ready(&sup).await else {
        return;
    };
    // The first Strict run installs its filter at launch; the pool then makes launchers with
    // that filter installed ahead, and the next Strict run takes one of those.
    let first = strict_run_through_a_launcher(&s, &sup, &c, &home).await;
    pool_ready(&sup).await;
    let filtered = launchers_with_a_filter();
    assert!(
        !filtered.is_empty() && !filtered.contains(&first),
        "no launcher was made with the filter: {filtered:?}"
    );
    let second = strict_run_through_a_launcher(&s, &sup, &c, &home).await;
    assert!(
        filtered.contains(&second),
        "the second Strict run ({second}) did not take a launcher with its filter ({filtered:?})"
    );
    // A Permissive run never gets one of those.
    pool_ready(&sup).await;
    let mut events = sup.subscribe();
    let id = sup
        .launch(spec(
            &s,
            "pooled-permissive",
            bash(),
            &[
                "bash",
                "-c",
                "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
            ],
            Limits::default(),
        ))
        .unwrap();
    assert!(
        launched_by_now(&mut events, id),
        "not through a ready launcher"
    );
    let rec = sup.wait(id).await.unwrap();
    let out = std::fs::read_to_string(&rec.stdout_log).unwrap();
    assert!(
        out.contains("Seccomp:\t0") && out.contains("NoNewPrivs:\t0"),
        "a Permissive run was filtered:\n{out}"
    );
    drop(sup);
    assert!(
        launchers_with_a_filter().is_empty(),
        "launchers outlived their supervisor"
    );
}

/// The launchers among this process's children that have a seccomp filter installed.
fn launchers_with_a_filter() -> Vec<i32> {
    live_children()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .is_ok_and(|st| st.lines().any(|l| l == "Seccomp:\t2"))
        })
        .collect()
}

/// A Strict agent through a ready launcher, probing its sandbox: its pid.
async fn strict_run_through_a_launcher(
    s: &Scratch,
    sup: &Supervisor,
    c: &symbiont::supervisor::Confinement,
    home: &std::path::Path,
) -> i32 {
    let mut events = sup.subscribe();
    let outside = s.path("outside.txt");
    let script = format!(
        "cat /proc/self/cgroup; \
         echo x > \"$TMPDIR/t\" && echo tmp-written; \
         echo x > made.txt && echo workdir-written; \
         echo x > {} 2>/dev/null || echo outside-denied; \
         cat {} 2>/dev/null || echo key-denied; \
         (exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null || echo tcp-denied",
        outside.display(),
        home.join(".ssh/id_ed25519").display()
    );
    let mut sp = spec(
        s,
        "pooled-strict",
        bash(),
        &["bash", "-c", &script],
        Limits::default(),
    );
    sp.sandbox = c.clone();
    let id = sup.launch(sp).unwrap();
    assert!(
        launched_by_now(&mut events, id),
        "not through a ready launcher"
    );
    let rec = sup.wait(id).await.unwrap();
    assert_eq!(rec.exit_code, Some(0), "{rec:?}");
    let out = std::fs::read_to_string(&rec.stdout_log).unwrap();
    assert!(
        in_a_launchers_group(&out),
        "not in a launcher's group:\n{out}"
    );
    for want in [
        "tmp-written",
        "workdir-written",
        "outside-denied",
        "key-denied",
        "tcp-denied",
    ] {
        assert!(out.lines().any(|l| l == want), "{want}:\n{out}");
    }
    assert!(
        !outside.exists(),
        "a write outside the sandbox went through"
    );
    assert!(!out.contains("PRIVATE KEY"), "the key was read:\n{out}");
    // The denied socket reached the supervisor through the launcher's listener.
    assert!(rec.denials >= 1, "no denial counted: {rec:?}");
    assert!(
        rec.denied.iter().any(|d| d.contains("socket")),
        "{:?}",
        rec.denied
    );
    rec.pid.expect("pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_launch_of_a_missing_program_fails_to_start_and_a_memory_hog_is_killed() {
    let _serial = SERIAL.lock().await;
    let s = Scratch::new("pool-fail");
    let sup = supervisor(&s);
    if pool_ready(&sup).await.is_none() {
        return;
    }
    let id = sup
        .launch(spec(
            &s,
            "ghost",
            s.path("no-such-program"),
            &["ghost"],
            Limits::default(),
        ))
        .unwrap();
    let rec = sup.wait(id).await.unwrap();
    assert_eq!(rec.reason, Reason::FailedToStart, "{rec:?}");
    assert!(
        rec.message
            .as_deref()
            .is_some_and(|m| m.contains("No such file")),
        "{rec:?}"
    );
    pool_ready(&sup).await;
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        timeout: Some(Duration::from_secs(20)),
        ..Limits::default()
    };
    let py =
        symbiont::policy::lookup("python3", std::env::var_os("PATH").as_deref()).expect("python3");
    let id = sup
        .launch(spec(
            &s,
            "pool-hog",
            py,
            &[
                "python3",
                "-c",
                "import time\nb = bytearray(400 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\ntime.sleep(30)",
            ],
            limits,
        ))
        .unwrap();
    let rec = sup.wait(id).await.unwrap();
    assert_eq!(rec.reason, Reason::MemoryLimit, "{rec:?}");
    assert_none_left("pool-hog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_launchers_end_with_their_supervisor() {
    let _serial = SERIAL.lock().await;
    let s = Scratch::new("pool-end");
    let before = live_children();
    let sup = supervisor(&s);
    let Some(size) = pool_ready(&sup).await else {
        return;
    };
    let during: Vec<i32> = live_children()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    // The launchers, and the guardian.
    assert!(during.len() > size, "{during:?}");
    drop(sup);
    let gone = wait_for(
        || {
            live_children()
                .iter()
                .all(|p| before.contains(p) || !during.contains(p))
        },
        Duration::from_secs(5),
    );
    assert!(gone, "launchers left: {:?}", live_children());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_memory_limit_or_a_killed_launcher_takes_the_direct_path() {
    let _serial = SERIAL.lock().await;
    let s = Scratch::new("pool-edge");
    let sup = supervisor(&s);
    if pool_ready(&sup).await.is_none() {
        return;
    }
    // Under 16 MiB the run does not go through a launcher: an OOM kill during its exec would
    // take every process sharing the launcher's memory, this one included.
    let tiny = Limits {
        memory_bytes: Some(4 << 20),
        timeout: Some(Duration::from_secs(20)),
        ..Limits::default()
    };
    let id = sup
        .launch(spec(
            &s,
            "tiny",
            bash(),
            &["bash", "-c", "cat /proc/self/cgroup"],
            tiny,
        ))
        .unwrap();
    let rec = sup.wait(id).await.unwrap();
    let out = std::fs::read_to_string(&rec.stdout_log).unwrap_or_default();
    assert!(
        !out.contains("/z"),
        "a tiny limit went through a launcher:\n{out}"
    );
    assert_none_left("tiny");
    // Launchers killed from outside: the next launches still start, on the direct path.
    let me = std::fs::read(format!("/proc/{}/cmdline", std::process::id())).unwrap();
    let launchers: Vec<i32> = live_children()
        .into_iter()
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == me))
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                .is_ok_and(|c| c.lines().any(|l| l.contains("/z")))
        })
        .collect();
    assert!(!launchers.is_empty(), "no launcher found to kill");
    for &p in &launchers {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let id = sup
        .launch(spec(
            &s,
            "after-kill",
            bash(),
            &["bash", "-c", "echo started"],
            Limits::default(),
        ))
        .unwrap();
    let rec = sup.wait(id).await.unwrap();
    assert_eq!(rec.reason, Reason::Exited, "{rec:?}");
    assert_eq!(rec.exit_code, Some(0), "{rec:?}");
    assert!(rec.stdout_tail.iter().any(|l| l == "started"), "{rec:?}");
    assert_none_left("after-kill");
}

/// What the agent's groups enforce, as the agent itself reads them: `(memory, pids)`, `None`
/// for no limit, and its CPUs.
const REPORT: &str = "while IFS=: read -r _ ctl path; do \
      for d in /sys/fs/cgroup/$ctl$path /sys/fs/cgroup$path /sys/fs/cgroup/unified$path; do \
        for f in memory.limit_in_bytes memory.max; do [ -f $d/$f ] && echo \"mem $(cat $d/$f)\"; done; \
        [ -f $d/pids.max ] && echo \"pids $(cat $d/pids.max)\"; \
      done; \
    done < /proc/self/cgroup; grep Cpus_allowed_list /proc/self/status";

fn reported(out: &str, what: &str) -> Option<u64> {
    let v: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix(what)?.trim().parse().ok())
        // v1 spells "no memory limit" as the largest page-aligned value.
        .filter(|&n| n < 1 << 62)
        .collect();
    v.iter().min().copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_groups_carry_the_last_limits_and_lift_what_a_run_does_not_set() {
    let _serial = SERIAL.lock().await;
    let s = Scratch::new("pool-limits");
    let sup = supervisor(&s);
    let Some(size) = pool_ready(&sup).await else {
        return;
    };
    let mine = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list"))
        .unwrap()
        .to_string();
    let first = Limits {
        memory_bytes: Some(96 << 20),
        max_processes: Some(40),
        ..Limits::default()
    };
    let second = Limits {
        max_processes: Some(50),
        ..Limits::default()
    };
    // Fresh groups, then groups made after a launch with the same limits (they carry them
    // already), then other limits (one lifted, one changed), then the first ones again.
    let plan = std::iter::repeat_n(&first, size + 2)
        .chain(std::iter::repeat_n(&second, size + 1))
        .chain(std::iter::once(&first));
    for (i, limits) in plan.enumerate() {
        pool_ready(&sup).await;
        let agent = format!("pool-limits-{i}");
        let id = sup
            .launch(spec(
                &s,
                &agent,
                bash(),
                &["bash", "-c", REPORT],
                limits.clone(),
            ))
            .unwrap();
        let rec = sup.wait(id).await.unwrap();
        assert_eq!(rec.reason, Reason::Exited, "{rec:?}");
        let out = std::fs::read_to_string(&rec.stdout_log).unwrap();
        assert_eq!(
            reported(&out, "mem "),
            limits.memory_bytes,
            "run {i}:\n{out}"
        );
        assert_eq!(
            reported(&out, "pids "),
            limits.max_processes,
            "run {i}:\n{out}"
        );
        // Launched from another CPU than the supervisor's, the agent still has every CPU.
        assert!(out.contains(&mine), "run {i}: not {mine}:\n{out}");
        assert_none_left(&agent);
    }
    drop(sup);
}
