//! Benchmark of an agent writing 1 GiB to stdout (SPEC section 6), against the same program
//! writing 1 GiB straight to a file in the same run:
//!
//! - ours: the `symbiont` binary, `run --json` on an agent `bash -c 'head -c 1073741824
//!   /dev/zero'`, in its own process; the speed is 1 GiB over the run's duration as the
//!   supervisor records it (launch to the `Exited` event). The run's stdout log must then hold
//!   every byte (its size and content are checked, then it is deleted).
//! - baseline: `bash -c 'head -c 1073741824 /dev/zero > FILE'`, a bare `Command` spawn + wait.
//! - the supervisor's peak resident memory during the run (VmHWM of its process, polled every
//!   5 ms while it runs), against the same supervisor running an agent that writes nothing.
//!
//! `cargo bench --bench output [-- --quick] [--json PATH] [--keep]`

mod common;

fn main() {
    #[cfg(target_os = "linux")]
    bench::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("the output benchmark reads /proc; nothing to do here");
}

#[cfg(target_os = "linux")]
mod bench {
    use super::common::{self, num, status_kib, write_json, Args, Figure, Res, Stats, Target};

    use std::io::{BufRead, BufReader, Read};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    /// What the agent writes.
    const SIZE: u64 = 1 << 30;
    const MIB: f64 = 1048576.0;
    /// Target: at least this share of the speed of writing to a file.
    const MIN_RATIO: f64 = 0.8;
    /// Target: supervisor peak resident memory under this, in MiB.
    const MAX_RSS_MIB: f64 = 64.0;

    // ---------------------------------------------------------------- /proc and files

    /// Size of `path` and whether every byte of it is zero.
    fn check_zeros(path: &Path) -> Res<(u64, bool)> {
        let mut f = std::fs::File::open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        let (mut total, mut zero) = (0u64, true);
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if zero && buf[..n].iter().any(|&b| b != 0) {
                zero = false;
            }
        }
        Ok((total, zero))
    }

    // ---------------------------------------------------------------- the two sides

    struct Scratch {
        root: PathBuf,
        cfg: PathBuf,
        writer: PathBuf,
        silent: PathBuf,
        bash: PathBuf,
    }

    fn scratch(root: &Path) -> Res<Scratch> {
        let work = root.join("work");
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let cfg = root.join("config.toml");
        let w = |p: &Path, text: String| {
            std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))
        };
        w(
            &cfg,
            format!(
                "[security]\nallow_native_execution = true\n\
                 [native_execution]\nworking_directory = \"{}\"\nallowed_executables = [\"bash\"]\n\
                 max_execution_time_seconds = 600\n\
                 [supervisor]\ndata_dir = \"{}\"\nmax_log_mb = 2048\n",
                work.display(),
                root.join("data").display()
            ),
        )?;
        let writer = root.join("writer.dsl");
        w(
            &writer,
            format!("agent Writer {{ security {{ tier: None }} on start {{ execute_native(\"bash -c 'head -c {SIZE} /dev/zero'\") }} }}\n"),
        )?;
        let silent = root.join("silent.dsl");
        w(
            &silent,
            "agent Silent { security { tier: None } on start { execute_native(\"bash -c 'sleep 1'\") } }\n"
                .into(),
        )?;
        let bash = common::which("bash").ok_or("bash not found on PATH")?;
        Ok(Scratch {
            root: root.to_path_buf(),
            cfg,
            writer,
            silent,
            bash,
        })
    }

    /// One `symbiont run --json` in its own process.
    struct SupRun {
        /// The run's duration as the supervisor recorded it (launch to Exited).
        run_secs: f64,
        /// Spawn of the supervisor process to its `exited` event line, seen here.
        wall_secs: f64,
        /// Peak resident memory of the supervisor process, MiB.
        hwm_mib: f64,
        /// VmHWM polls that found the process.
        polls: u64,
        /// CPU time of the supervisor process (user, system), seconds, as last seen.
        cpu: (f64, f64),
        stdout_log: PathBuf,
        exit_code: Option<i32>,
        reason: String,
    }

    fn supervised(sc: &Scratch, dsl: &Path) -> Res<SupRun> {
        common::settle();
        let t0 = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_symbiont"))
            .arg("run")
            .arg("--json")
            .arg("--config")
            .arg(&sc.cfg)
            .arg(dsl)
            .current_dir(&sc.root)
            .env_remove("SYMBIONT_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start symbiont: {e}"))?;
        let pid = child.id();
        let hwm = Arc::new(AtomicU64::new(0));
        let polls = Arc::new(AtomicU64::new(0));
        let ticks = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (hwm, polls, stop, ticks) =
                (hwm.clone(), polls.clone(), stop.clone(), ticks.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match status_kib(pid, "VmHWM") {
                        Some(k) => {
                            hwm.fetch_max(k, Ordering::Relaxed);
                            polls.fetch_add(1, Ordering::Relaxed);
                        }
                        None => break,
                    }
                    if let Some((u, s)) = common::cpu_ticks(pid) {
                        ticks.0.store(u, Ordering::Relaxed);
                        ticks.1.store(s, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let mut record: Option<Value> = None;
        let mut wall = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["event"] == "exited" {
                wall = Some(t0.elapsed().as_secs_f64());
                // Still alive: it prints the final records next.
                if let Some(k) = status_kib(pid, "VmHWM") {
                    hwm.fetch_max(k, Ordering::Relaxed);
                }
                record = Some(v["record"].clone());
            }
        }
        let status = child.wait().map_err(|e| format!("wait symbiont: {e}"))?;
        stop.store(true, Ordering::Relaxed);
        let _ = poller.join();
        let err = err_reader.join().unwrap_or_default();
        let rec = record.ok_or_else(|| {
            format!(
                "symbiont ({status}) printed no exited event; stderr: {}",
                err.trim()
            )
        })?;
        Ok(SupRun {
            run_secs: rec["duration_secs"].as_f64().unwrap_or(f64::NAN),
            wall_secs: wall.unwrap_or(f64::NAN),
            hwm_mib: hwm.load(Ordering::Relaxed) as f64 / 1024.0,
            polls: polls.load(Ordering::Relaxed),
            cpu: (
                ticks.0.load(Ordering::Relaxed) as f64 / common::clk_tck(),
                ticks.1.load(Ordering::Relaxed) as f64 / common::clk_tck(),
            ),
            stdout_log: PathBuf::from(rec["stdout_log"].as_str().unwrap_or("")),
            exit_code: rec["exit_code"].as_i64().map(|c| c as i32),
            reason: rec["reason"].as_str().unwrap_or("?").to_string(),
        })
    }

    /// Deletes a run's log directory.
    fn remove_run_dir(stdout_log: &Path) {
        if let Some(d) = stdout_log.parent() {
            if d.file_name().is_some() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }

    // ---------------------------------------------------------------- main

    struct Figures {
        ours_speed: Vec<f64>,
        base_speed: Vec<f64>,
        ours_rss: Vec<f64>,
        silent_rss: Vec<f64>,
        wall_speed: Vec<f64>,
        relay_speed: Vec<f64>,
        sup_user: Vec<f64>,
        sup_sys: Vec<f64>,
        polls: Vec<f64>,
        log_checks: Vec<Value>,
    }

    fn measure(sc: &Scratch, reps: usize) -> Res<Figures> {
        let mut f = Figures {
            ours_speed: vec![],
            base_speed: vec![],
            ours_rss: vec![],
            silent_rss: vec![],
            wall_speed: vec![],
            relay_speed: vec![],
            sup_user: vec![],
            sup_sys: vec![],
            polls: vec![],
            log_checks: vec![],
        };
        let gib = SIZE as f64 / MIB;
        for r in 0..reps {
            // The memory baseline, which also warms the binary's pages on the first round.
            let s = supervised(sc, &sc.silent)?;
            remove_run_dir(&s.stdout_log);
            f.silent_rss.push(s.hwm_mib);

            let mut ours = None;
            let mut base = None;
            // Alternate which side goes first.
            for side in if r % 2 == 0 { [0, 1] } else { [1, 0] } {
                if side == 0 {
                    base = Some(common::write_to_file_secs(
                        &sc.bash,
                        &sc.root.join("baseline.out"),
                        SIZE,
                        false,
                    )?);
                } else {
                    let o = supervised(sc, &sc.writer)?;
                    if o.exit_code != Some(0) || o.reason != "exited" {
                        remove_run_dir(&o.stdout_log);
                        return Err(format!(
                            "the writer ended with code {:?}, reason {}",
                            o.exit_code, o.reason
                        ));
                    }
                    let (len, zero) = check_zeros(&o.stdout_log)?;
                    remove_run_dir(&o.stdout_log);
                    f.log_checks.push(json!({"bytes": len, "all_zero": zero}));
                    if len != SIZE || !zero {
                        return Err(format!(
                            "the stdout log holds {len} of {SIZE} bytes (all zero: {zero})"
                        ));
                    }
                    ours = Some(o);
                }
            }
            let (o, b) = (ours.ok_or("no run")?, base.ok_or("no baseline")?);
            let relay =
                common::write_to_file_secs(&sc.bash, &sc.root.join("baseline.out"), SIZE, true)?;
            f.relay_speed.push(gib / relay);
            f.sup_user.push(o.cpu.0);
            f.sup_sys.push(o.cpu.1);
            f.ours_speed.push(gib / o.run_secs);
            f.wall_speed.push(gib / o.wall_secs);
            f.base_speed.push(gib / b);
            f.ours_rss.push(o.hwm_mib);
            f.polls.push(o.polls as f64);
            println!(
                "  rep {r}: supervised {} MiB/s ({:.3} s; {:.3} s from process start; supervisor CPU {:.2} s user + {:.2} s system), file {} MiB/s ({b:.3} s), head | cat > file {} MiB/s; supervisor VmHWM {} MiB, {} MiB with a silent agent",
                num(gib / o.run_secs),
                o.run_secs,
                o.wall_secs,
                o.cpu.0,
                o.cpu.1,
                num(gib / b),
                num(gib / relay),
                num(o.hwm_mib),
                num(s.hwm_mib)
            );
        }
        Ok(f)
    }

    pub fn main() {
        let args = Args::parse("output", &[]);
        let facts = common::machine_facts();
        let root = common::scratch_dir("out");
        let _ = std::fs::remove_dir_all(&root);
        let reps = if args.quick { 2 } else { 5 };
        println!(
            "symbiont output benchmark ({}): an agent writing 1 GiB to stdout, {reps} rounds; scratch {}",
            args.mode(),
            root.display()
        );
        let started = Instant::now();
        let result = scratch(&root).and_then(|sc| measure(&sc, reps));
        std::thread::sleep(Duration::from_millis(200));
        let left = common::processes_in(&root);
        if !args.keep {
            let _ = std::fs::remove_dir_all(&root);
        }
        let (figures, diag, error) = match result {
            Ok(f) => {
                let speed = Figure::new(
                    "stdout_1gib_speed",
                    "6. agent writes 1 GiB to stdout: speed supervised",
                    "MiB/s",
                )
                .higher_is_better()
                .ours(f.ours_speed)
                .baseline(
                    f.base_speed,
                    "bash -c 'head -c 1073741824 /dev/zero > FILE', bare Command spawn + wait",
                )
                .target(Target::MinRatio(MIN_RATIO))
                .json();
                let rss = Figure::new(
                    "stdout_1gib_supervisor_rss",
                    "6b. supervisor peak RSS while it does",
                    "MiB",
                )
                .ours(f.ours_rss)
                .baseline(
                    f.silent_rss,
                    "VmHWM of the same supervisor running an agent that writes nothing (sleep 1)",
                )
                .target(Target::MaxBelow(MAX_RSS_MIB))
                .json();
                let diag = json!({
                    "bytes": SIZE,
                    "speed_from_supervisor_process_start_mib_s": Stats::of(&f.wall_speed).json(),
                    "pipe_relay_head_cat_to_file_mib_s": Stats::of(&f.relay_speed).json(),
                    "supervisor_process_cpu_user_secs": Stats::of(&f.sup_user).json(),
                    "supervisor_process_cpu_system_secs": Stats::of(&f.sup_sys).json(),
                    "vmhwm_polls_per_run": Stats::of(&f.polls).json(),
                    "stdout_log_checks": f.log_checks,
                    "ours": "symbiont run --json on an agent bash -c 'head -c 1073741824 /dev/zero'; speed = 1 GiB / the record's duration_secs (launch to Exited)",
                });
                (vec![speed, rss], diag, None)
            }
            Err(e) => (vec![], json!({}), Some(e)),
        };
        println!();
        for fig in &figures {
            let o = &fig["ours"];
            let b = &fig["baseline"];
            let f = |v: &Value| num(v.as_f64().unwrap_or(f64::NAN));
            println!(
                "{:<52} ours {} {} [{}..{}]  baseline {} {}  ratio {}  target {}  {}",
                fig["figure"].as_str().unwrap_or(""),
                f(&o["median"]),
                fig["unit"].as_str().unwrap_or(""),
                f(&o["min"]),
                f(&o["max"]),
                f(&b["median"]),
                fig["unit"].as_str().unwrap_or(""),
                fig["ratio"]
                    .as_f64()
                    .map(|r| format!("{r:.2}x"))
                    .unwrap_or_else(|| "-".into()),
                fig["target"].as_str().unwrap_or(""),
                if fig["pass"] == true { "PASS" } else { "FAIL" }
            );
        }
        println!(
            "leftover processes in the scratch directory: {}",
            left.len()
        );
        let out = json!({
            "bench": "output",
            "mode": args.mode(),
            "machine": facts,
            "load_average_end": common::read_trim("/proc/loadavg"),
            "figures": figures,
            "diagnostics": diag,
            "leftovers": {"processes": left.len()},
            "error": error,
            "elapsed_secs": started.elapsed().as_secs_f64(),
        });
        write_json(&args.json, &out);
        if let Some(e) = error {
            eprintln!("output bench failed: {e}");
            std::process::exit(1);
        }
        if !left.is_empty() {
            std::process::exit(1);
        }
    }
}
