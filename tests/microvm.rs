//! Tier3 for real: agents in a QEMU `microvm` guest (software emulation on these machines).
//!
//! They need `qemu-system-x86_64` and the guest that `scripts/microvm-assets` builds (in
//! `$SYMBIONT_MICROVM_DIR`, else `~/.local/state/symbiont/microvm`). Without them every test
//! here says loudly that it is SKIPPED, and with `SYMBIONT_REQUIRE_RUNTIMES=1` (set by CI) it
//! fails instead. Each boot takes seconds under emulation: the tests that need the guest's
//! result boot once each; the others stop the VM as soon as it runs.
#![cfg(target_os = "linux")]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::pty::Pty;
use common::*;

/// The guest's kernel and initramfs, or None (after saying so) where they or QEMU are missing.
fn assets(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("SYMBIONT_MICROVM_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let state = std::env::var_os("XDG_STATE_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var("HOME").unwrap()).join(".local/state")
                });
            state.join("symbiont/microvm")
        });
    let qemu = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("qemu-system-x86_64").is_file());
    if qemu && dir.join("vmlinux").is_file() && dir.join("initramfs.img").is_file() {
        return Some(dir);
    }
    skip(
        test,
        &format!(
            "no QEMU ({qemu}) or no guest in {}: run scripts/microvm-assets",
            dir.display()
        ),
    );
    None
}

fn command(s: &Scratch, dir: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = s.command(args);
    c.env("SYMBIONT_MICROVM_DIR", dir);
    c
}

fn exec(s: &Scratch, dir: &std::path::Path, extra: &[&str], cmd: &[&str]) -> std::process::Output {
    let cfg = s.path("config.toml");
    let mut args = vec![
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--sandbox-tier=tier3",
        "--json",
    ];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(cmd);
    command(s, dir, &args).output().unwrap()
}

fn record(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(o), stderr(o)))
}

/// QEMU processes of the supervisor `pid` (their control share is named after it).
fn vms_of(pid: u32) -> Vec<i32> {
    pids_with_cmdline(format!("symbiont-vm-{pid}-").as_bytes())
}

/// Every QEMU whose control share lives in this test's temporary directory.
fn any_vm_of_this_machine_test(s: &Scratch) -> Vec<i32> {
    pids_with_cmdline(s.work().to_string_lossy().as_bytes())
}

fn uname_r() -> String {
    let o = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .unwrap();
    stdout(&o).trim().to_string()
}

#[test]
fn exec_returns_the_guests_output_and_exit_code_from_its_own_kernel() {
    let Some(dir) = assets("exec_returns_the_guests_output_and_exit_code_from_its_own_kernel")
    else {
        return;
    };
    let s = Scratch::new("vm-exec");
    s.config("");
    s.write("work/input.txt", "from the host\n");
    let o = exec(
        &s,
        &dir,
        &[],
        &[
            "sh",
            "-c",
            "echo hi; echo oops >&2; uname -r; cat input.txt; echo made > made.txt; exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    let r = record(&o);
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["reason"], "exited");
    assert_eq!(r["tier"], "Tier3");
    let out: Vec<String> = r["stdout_tail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(out[0], "hi", "{r}");
    assert_eq!(
        r["stderr_tail"][0], "oops",
        "stdout and stderr stay apart: {r}"
    );
    // A kernel of its own: Debian's, not the host's.
    assert_ne!(out[1], uname_r(), "{r}");
    assert!(out[1].contains("amd64"), "{r}");
    // The working directory is the host's, shared.
    assert_eq!(out[2], "from the host");
    assert_eq!(
        std::fs::read_to_string(s.work().join("made.txt")).unwrap(),
        "made\n"
    );
    // The record says how the VM ran.
    let note = r["message"].as_str().unwrap_or_default();
    assert!(note.contains("microVM") && note.contains("vCPU"), "{r}");
    assert!(any_vm_of_this_machine_test(&s).is_empty(), "a QEMU is left");
    // Plain exec streams the guest's output through, and its stdin in, to its end.
    let o = command(
        &s,
        &dir,
        &[
            "exec",
            "--config",
            s.path("config.toml").to_str().unwrap(),
            "--sandbox-tier=microvm",
            "--",
            "sh",
            "-c",
            "echo streamed; echo apart >&2; cat",
        ],
    )
    .stdin(std::fs::File::open(s.write("stdin.txt", "typed in\n")).unwrap())
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "streamed\ntyped in\n");
    assert!(stderr(&o).contains("apart"), "{}", stderr(&o));
    // `check` says what runs Tier3 here, with the accelerator the runs above used.
    let o = command(
        &s,
        &dir,
        &["check", "--config", s.path("config.toml").to_str().unwrap()],
    )
    .output()
    .unwrap();
    let line = stdout(&o)
        .lines()
        .find(|l| l.contains("Tier3 (microVM)"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{}", stdout(&o)));
    assert!(
        line.contains(note.split(", ").nth(1).unwrap_or("?")),
        "check and the record agree on the accelerator: {line} / {note}"
    );
}

#[test]
fn filling_memory_past_the_limit_is_memory_limit() {
    let Some(dir) = assets("filling_memory_past_the_limit_is_memory_limit") else {
        return;
    };
    let s = Scratch::new("vm-oom");
    s.config("");
    // A shell variable that grows past 32 MB: the guest kernel's OOM killer ends it.
    let o = exec(
        &s,
        &dir,
        &["--max-memory=32"],
        &[
            "sh",
            "-c",
            "echo filling; x=$(head -c 200000000 /dev/zero | tr '\\0' x); echo survived",
        ],
    );
    let r = record(&o);
    assert_eq!(r["reason"], "memory_limit", "{r}");
    assert_eq!(o.status.code(), Some(137));
    assert_eq!(r["stdout_tail"][0], "filling");
}

#[test]
fn the_guests_process_and_file_size_limits_hold() {
    let Some(dir) = assets("the_guests_process_and_file_size_limits_hold") else {
        return;
    };
    let s = Scratch::new("vm-pids");
    s.config("max_processes = 5\nmax_file_size_mb = 1");
    // A file past 1 MB stops at 1 MB (SIGXFSZ to its writer); a fork past 5 processes is
    // refused in the guest, and the watchdog ends the run as it ends a native one.
    let o = exec(
        &s,
        &dir,
        &[],
        &[
            "sh",
            "-c",
            "head -c 3000000 /dev/zero > big.bin; sh -c 'for i in 1 2 3 4 5 6 7 8; do sleep 30 & done'; echo inner=$?; sleep 60",
        ],
    );
    let r = record(&o);
    assert_eq!(r["reason"], "process_limit", "{r}");
    assert_eq!(r["killed_by"], "watchdog", "{r}");
    assert_eq!(
        std::fs::metadata(s.work().join("big.bin")).unwrap().len(),
        1 << 20
    );
}

#[test]
fn a_timeout_stops_the_vm() {
    let Some(dir) = assets("a_timeout_stops_the_vm") else {
        return;
    };
    let s = Scratch::new("vm-timeout");
    s.config("");
    let o = exec(&s, &dir, &["--timeout=3"], &["sleep", "1000"]);
    let r = record(&o);
    assert_eq!(r["reason"], "timeout", "{r}");
    assert_eq!(o.status.code(), Some(124));
    assert!(any_vm_of_this_machine_test(&s).is_empty(), "a QEMU is left");
}

#[test]
fn the_supervisor_killed_takes_its_vm_with_it() {
    let Some(dir) = assets("the_supervisor_killed_takes_its_vm_with_it") else {
        return;
    };
    let s = Scratch::new("vm-sigkill");
    s.config("");
    let cfg = s.path("config.toml");
    let mut child = command(
        &s,
        &dir,
        &[
            "exec",
            "--config",
            cfg.to_str().unwrap(),
            "--sandbox-tier=tier3",
            "--",
            "sleep",
            "1000",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let pid = child.id();
    assert!(
        wait_for(|| !vms_of(pid).is_empty(), Duration::from_secs(60)),
        "no QEMU started"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    assert!(
        wait_for(|| vms_of(pid).is_empty(), Duration::from_secs(20)),
        "QEMU outlived its supervisor: {:?}",
        vms_of(pid)
    );
    // Its control share stays until the next VM's start sweeps it: not this machine's litter.
    for e in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with(&format!("symbiont-vm-{pid}-"))
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[test]
fn an_operator_kill_from_the_dashboard_stops_the_vm() {
    let Some(dir) = assets("an_operator_kill_from_the_dashboard_stops_the_vm") else {
        return;
    };
    let s = Scratch::new("vm-dash");
    s.config("");
    let f = s.write(
        "vm.dsl",
        "agent VmSleeper { security { tier: Tier3 } on start { execute(\"sleep 1000\") } }\n",
    );
    let cfg = s.path("config.toml");
    let mut p = Pty::spawn(
        command(
            &s,
            &dir,
            &[
                "run",
                "--config",
                cfg.to_str().unwrap(),
                f.to_str().unwrap(),
            ],
        ),
        160,
        40,
    );
    p.wait_for("VmSleeper", Duration::from_secs(20));
    let pid = p.child.id();
    assert!(
        wait_for(|| !vms_of(pid).is_empty(), Duration::from_secs(60)),
        "no QEMU started"
    );
    // The row gets its tier with the run's start, which the next frame shows.
    assert!(
        wait_for(
            || p.line_with("VmSleeper")
                .is_some_and(|(_, l)| l.contains("microvm")),
            Duration::from_secs(10)
        ),
        "the tier column: {:?}",
        p.line_with("VmSleeper")
    );
    p.send("X");
    p.wait_for("killed by operator", Duration::from_secs(20));
    assert!(
        wait_for(|| vms_of(pid).is_empty(), Duration::from_secs(10)),
        "the VM runs on"
    );
    p.send("q");
    assert_eq!(p.wait_exit(Duration::from_secs(15)), Some(1));
}

#[test]
fn missing_assets_or_qemu_are_refused_with_the_fix() {
    let s = Scratch::new("vm-missing");
    s.config("");
    let empty = s.path("no-guest");
    std::fs::create_dir_all(&empty).unwrap();
    let o = exec(&s, &empty, &[], &["true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("scripts/microvm-assets") && (e.contains("vmlinux") || e.contains("QEMU")),
        "{e}"
    );
    let o = command(
        &s,
        &empty,
        &["check", "--config", s.path("config.toml").to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(
        stdout(&o).contains("Tier3 (microVM): not available")
            && stdout(&o).contains("scripts/microvm-assets"),
        "{}",
        stdout(&o)
    );
    // `run` refuses it as bad usage, naming what to install.
    let f = s.write(
        "vm.dsl",
        "agent VmMissing { security { tier: microvm } on start { execute(\"true\") } }\n",
    );
    let cfg = s.path("config.toml");
    let o = command(
        &s,
        &empty,
        &[
            "run",
            "--headless",
            "--config",
            cfg.to_str().unwrap(),
            f.to_str().unwrap(),
        ],
    )
    .env("SYMBIONT_QEMU", s.path("no-qemu"))
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs QEMU") && stderr(&o).contains("apt-get install qemu-system-x86"),
        "{}",
        stderr(&o)
    );
    // A kernel the config names that is not there is refused, naming the key.
    let cfg = s.config("");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{text}\n[microvm]\nkernel = \"{}\"\n",
            s.path("no-vmlinux").display()
        ),
    )
    .unwrap();
    let o = exec(&s, &empty, &[], &["true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("microvm.kernel") && stderr(&o).contains("no-vmlinux"),
        "{}",
        stderr(&o)
    );
}
