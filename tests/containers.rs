//! Container tiers against a real daemon: Tier1 (Docker's runc) and Tier2 (gVisor's runsc).
//!
//! They need `DOCKER_HOST` pointing at a daemon with the `runsc` runtime and the image
//! `$SYMBIONT_TEST_IMAGE` (default `symbiont-busybox:latest`); `scripts/container-runtime`
//! starts such a daemon. Without one every test here says loudly that it is SKIPPED, and with
//! `SYMBIONT_REQUIRE_RUNTIMES=1` (set by CI) it fails instead.
#![cfg(unix)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn image() -> String {
    std::env::var("SYMBIONT_TEST_IMAGE").unwrap_or_else(|_| "symbiont-busybox:latest".into())
}

/// The daemon's socket, or None (after saying so) when there is none.
fn runtime(test: &str) -> Option<String> {
    let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
    let ok = host
        .as_deref()
        .and_then(|h| h.strip_prefix("unix://"))
        .is_some_and(|p| std::path::Path::new(p).exists());
    if ok {
        return host;
    }
    skip(
        test,
        &format!("no container runtime (DOCKER_HOST={host:?}); run scripts/container-runtime"),
    );
    None
}

/// Containers of any symbiont supervisor that still exist on the daemon.
fn leftover_containers(host: &str) -> Vec<String> {
    let out = std::process::Command::new(docker_cli())
        .args([
            "-H",
            host,
            "ps",
            "-a",
            "-q",
            "--filter",
            "label=symbiont.supervisor",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn docker_cli() -> &'static str {
    if std::path::Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    }
}

fn exec(s: &Scratch, tier: &str, extra: &[&str], cmd: &[&str]) -> std::process::Output {
    let cfg = s.path("config.toml");
    let img = image();
    let mut args = vec![
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--sandbox-tier",
        tier,
        "--image",
        &img,
        "--json",
    ];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(cmd);
    s.run(&args)
}

fn record(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(o), stderr(o)))
}

const TIERS: [&str; 2] = ["tier1", "tier2"];

#[test]
fn exit_codes_and_both_streams_come_back() {
    let Some(_) = runtime("exit_codes_and_both_streams_come_back") else {
        return;
    };
    let s = Scratch::new("ct-exit");
    s.config("");
    for tier in TIERS {
        let o = exec(
            &s,
            tier,
            &[],
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
        );
        assert_eq!(o.status.code(), Some(3), "{tier}: {}", stderr(&o));
        let r = record(&o);
        assert_eq!(r["exit_code"], 3);
        assert_eq!(r["reason"], "exited");
        assert_eq!(r["stdout_tail"][0], "out", "{tier}");
        assert_eq!(r["stderr_tail"][0], "err", "{tier}");
        assert!(r["container_id"].as_str().is_some_and(|c| c.len() >= 12));
        assert_eq!(r["tier"], if tier == "tier1" { "Tier1" } else { "Tier2" });
    }
}

#[test]
fn an_oom_in_the_container_is_memory_limit() {
    let Some(_) = runtime("an_oom_in_the_container_is_memory_limit") else {
        return;
    };
    let s = Scratch::new("ct-oom");
    s.config("");
    for tier in TIERS {
        let o = exec(
            &s,
            tier,
            &["--max-memory=32"],
            &["sh", "-c", "head -c 200m /dev/zero | tail"],
        );
        let r = record(&o);
        assert_eq!(r["reason"], "memory_limit", "{tier}: {r}");
        // exec's status for the memory limit, as for a SIGKILL (128+9).
        assert_eq!(o.status.code(), Some(137));
    }
}

#[test]
fn the_pids_limit_makes_fork_fail() {
    let Some(_) = runtime("the_pids_limit_makes_fork_fail") else {
        return;
    };
    let s = Scratch::new("ct-pids");
    // gVisor needs at least 256 for itself, so both tiers get 256 and try to start 400.
    s.config("max_processes = 256");
    for tier in TIERS {
        let o = exec(
            &s,
            tier,
            &[],
            &[
                "sh",
                "-c",
                "for i in $(seq 400); do sleep 5 & done; echo all-400-started",
            ],
        );
        let r = record(&o);
        assert_ne!(
            r["stdout_tail"][0], "all-400-started",
            "{tier}: all 400 forks succeeded under a pids limit of 256: {r}"
        );
        assert_ne!(r["exit_code"], 0, "{tier}: {r}");
        // runc passes the shell's "can't fork" through; under gVisor the shell dies silently.
        if tier == "tier1" {
            let err = r["stderr_tail"].to_string();
            assert!(
                err.contains("fork"),
                "{tier}: the shell should say it can't fork: {r}"
            );
        }
    }
}

#[test]
fn a_container_sees_only_loopback_unless_it_asks_for_the_network() {
    let Some(_) = runtime("a_container_sees_only_loopback_unless_it_asks_for_the_network") else {
        return;
    };
    let s = Scratch::new("ct-net");
    s.config("");
    for tier in TIERS {
        let o = exec(
            &s,
            tier,
            &[],
            &["sh", "-c", "grep : /proc/net/dev | cut -d: -f1 | tr -d ' '"],
        );
        let r = record(&o);
        assert_eq!(r["stdout_tail"], serde_json::json!(["lo"]), "{tier}: {r}");
    }
}

#[test]
fn the_working_directory_is_mounted_and_env_follows_the_policy() {
    let Some(_) = runtime("the_working_directory_is_mounted_and_env_follows_the_policy") else {
        return;
    };
    let s = Scratch::new("ct-work");
    s.config("");
    s.write("work/input.txt", "from the host\n");
    let o = s
        .command(&[
            "exec",
            "--config",
            s.path("config.toml").to_str().unwrap(),
            "--sandbox-tier",
            "tier1",
            "--image",
            &image(),
            "--json",
            "--",
            "sh",
            "-c",
            "cat input.txt; pwd; echo \"[$SECRET]\"",
        ])
        .env("SECRET", "hunter2")
        .output()
        .unwrap();
    let r = record(&o);
    assert_eq!(
        r["stdout_tail"],
        serde_json::json!(["from the host", "/work", "[]"]),
        "{r}"
    );
}

#[test]
fn timeout_and_operator_kill_leave_no_container() {
    let Some(host) = runtime("timeout_and_operator_kill_leave_no_container") else {
        return;
    };
    let s = Scratch::new("ct-kill");
    s.config("");
    for tier in TIERS {
        let t = Instant::now();
        let o = exec(
            &s,
            tier,
            &["--timeout=2"],
            &["sh", "-c", "trap '' TERM; sleep 100"],
        );
        let r = record(&o);
        assert_eq!(r["reason"], "timeout", "{tier}: {r}");
        assert!(t.elapsed() < Duration::from_secs(20));
        let cid = r["container_id"].as_str().unwrap().to_string();
        assert!(
            !leftover_containers(&host)
                .iter()
                .any(|c| cid.starts_with(c.as_str())),
            "{tier}: container left after a timeout"
        );
    }
    // The operator's kill from the headless client (SIGTERM to the supervisor stops every agent).
    s.write(
        "k.dsl",
        &format!("agent CtKill {{ security {{ tier: Tier1 image: \"{}\" }} on start {{ execute(\"sh -c 'echo up; sleep 100'\") }} }}\n", image()),
    );
    let mut child = s
        .command(&["run", "k.dsl", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    assert!(lines.next().unwrap().unwrap().contains("launched"));
    std::thread::sleep(Duration::from_millis(500));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(child.wait().unwrap().code(), Some(1));
    let records: Vec<serde_json::Value> = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(records[0]["reason"], "killed_by_operator", "{rest:?}");
    let cid = records[0]["container_id"].as_str().unwrap().to_string();
    assert!(
        !leftover_containers(&host)
            .iter()
            .any(|c| cid.starts_with(c.as_str())),
        "container left after an operator kill"
    );
}

#[test]
fn leftovers_of_a_dead_supervisor_are_removed() {
    let Some(host) = runtime("leftovers_of_a_dead_supervisor_are_removed") else {
        return;
    };
    // A container labelled by a supervisor (pid 999999) that no longer exists.
    let out = std::process::Command::new(docker_cli())
        .args([
            "-H",
            &host,
            "create",
            "--network",
            "none",
            "--label",
            "symbiont.supervisor=999999-0",
            "--label",
            "symbiont.pid=999999",
            &image(),
            "sleep",
            "100",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stale = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let s = Scratch::new("ct-sweep");
    s.config("");
    let o = exec(&s, "tier1", &[], &["true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        !leftover_containers(&host)
            .iter()
            .any(|c| stale.starts_with(c.as_str())),
        "the dead supervisor's container is still there"
    );
}

#[test]
fn the_seed_hybrid_example_runs_native_docker_and_a_microvm_in_one_program() {
    let test = "the_seed_hybrid_example_runs_native_docker_and_a_microvm_in_one_program";
    let Some(_) = runtime(test) else {
        return;
    };
    // The example's Config::default() reads the guest from the default data directory.
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".local/state")
        });
    if !state.join("symbiont/microvm/vmlinux").is_file() {
        skip(test, "no Tier3 guest: run scripts/microvm-assets");
        return;
    }
    let s = Scratch::new("ct-hybrid");
    let example = bin().parent().unwrap().join("examples/hybrid");
    let o = std::process::Command::new(example)
        .current_dir(&s.dir)
        .env("SYMBIONT_IMAGE", image())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("native: trusted: native on"), "{out}");
    assert!(
        out.contains("docker: untrusted: isolated\n1\n"),
        "only loopback in the container: {out}"
    );
    let host = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .unwrap();
    let vm = out
        .lines()
        .find_map(|l| l.strip_prefix("microvm: kernel "))
        .unwrap_or_else(|| panic!("no microvm line: {out}"));
    assert_ne!(vm, stdout(&host).trim(), "a kernel of its own: {out}");
}

#[test]
fn a_dead_daemon_fails_clearly_and_quickly() {
    // No runtime needed: this is the case without one.
    let s = Scratch::new("ct-dead");
    s.config("");
    let t = Instant::now();
    let o = s
        .command(&[
            "exec",
            "--sandbox-tier",
            "tier2",
            "--image",
            "busybox",
            "--",
            "true",
        ])
        .env("DOCKER_HOST", "unix:///tmp/symbiont-no-daemon.sock")
        .output()
        .unwrap();
    // exec's own failure before its command ran (env(1)'s 125).
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("no container daemon answers at unix:///tmp/symbiont-no-daemon.sock"),
        "{}",
        stderr(&o)
    );
    assert!(t.elapsed() < Duration::from_secs(6));
}

#[test]
fn a_missing_image_and_a_missing_runtime_are_refused() {
    let Some(_) = runtime("a_missing_image_and_a_missing_runtime_are_refused") else {
        return;
    };
    let s = Scratch::new("ct-missing");
    s.config("");
    let cfg = s.path("config.toml");
    let o = s.run(&[
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--sandbox-tier",
        "tier1",
        "--image",
        "symbiont-no-such-image:latest",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("image `symbiont-no-such-image:latest` is not on the daemon"),
        "{}",
        stderr(&o)
    );
}

/// Moderate and Strict on a container tier: the root filesystem is read-only, the working
/// directory and a private /tmp writable; Permissive writes anywhere in the container.
#[test]
fn a_confined_container_has_a_read_only_root() {
    let Some(_) = runtime("a_confined_container_has_a_read_only_root") else {
        return;
    };
    let s = Scratch::new("ct-readonly");
    s.config("");
    let probe = "touch /work/w && echo work-ok; touch /tmp/t && echo tmp-ok; \
                 touch /etc/x 2>/dev/null && echo root-ok || echo root-denied";
    for tier in TIERS {
        for (level, root) in [
            ("permissive", "root-ok"),
            ("moderate", "root-denied"),
            ("strict", "root-denied"),
        ] {
            let o = exec(&s, tier, &["--sandbox", level], &["sh", "-c", probe]);
            let r = record(&o);
            assert_eq!(
                r["stdout_tail"],
                serde_json::json!(["work-ok", "tmp-ok", root]),
                "{tier} {level}: {r}"
            );
        }
    }
}
