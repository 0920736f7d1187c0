//! Tier1/Tier2 launch latency against the docker CLI, same image, same run.
//!
//!   DOCKER_HOST=unix:///... cargo bench --bench containers [-- --quick] [--json PATH]
//!
//! Ours: `launch()` to the `Launched` event (the container is running) and to the `Exited`
//! event (result collected, container removed). Baseline: `docker run --rm IMAGE true`, which
//! returns once the container has exited and been removed.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::{ms, write_json, Args, Figure, Stats, Target};
use symbiont::supervisor::Limits;
use symbiont::supervisor::{Event, RunSpec, Step, Supervisor, SupervisorOptions};
use symbiont::tier::SecurityTier;

fn docker_cli() -> &'static str {
    if std::path::Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse("containers", &[]);
    let Some(host) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) else {
        eprintln!("SKIPPED: set DOCKER_HOST (scripts/container-runtime starts a private daemon)");
        write_json(
            &args.json,
            &json!({
                "bench": "containers",
                "skipped": "DOCKER_HOST is not set (scripts/container-runtime starts a private daemon)",
                "figures": [],
            }),
        );
        return;
    };
    let image =
        std::env::var("SYMBIONT_TEST_IMAGE").unwrap_or_else(|_| "symbiont-busybox:latest".into());
    let n = if args.quick { 5 } else { 15 };
    let dir = common::scratch_dir("ct");
    std::fs::create_dir_all(dir.join("work")).unwrap();
    let sup = Supervisor::new(SupervisorOptions {
        data_dir: dir.join("data"),
        audit_log: dir.join("audit.jsonl"),
        tail_lines: 50,
        max_log_mb: 64,
        first_run_id: 1,
        event_buffer: 4096,
        refresh: Duration::from_secs(1),
        watchdog_interval: Duration::from_millis(100),
        warn_ratio: 0.8,
        critical_ratio: 0.95,
        // The bench runs the docker CLI as its own child: the supervisor must not reap it.
        own_all_children: false,
        use_cgroups: true,
        docker_host: Some(host.clone()),
        microvm: Default::default(),
    })
    .unwrap();
    println!("daemon {host}, image {image}, {n} runs each, interleaved");
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    for tier in [SecurityTier::Tier1, SecurityTier::Tier2] {
        let (mut running, mut result, mut cli) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..=n {
            let spec = RunSpec {
                agent: format!("bench-ct-{i}"),
                trigger: "start".into(),
                tier,
                steps: vec![Step {
                    program: "true".into(),
                    argv: vec!["true".into()],
                }],
                cwd: dir.join("work"),
                env: vec![],
                limits: Limits {
                    memory_bytes: Some(256 << 20),
                    max_processes: Some(256),
                    ..Limits::default()
                },
                enforce_limits: true,
                kill_grace: Duration::from_secs(1),
                image: Some(image.clone()),
                network: false,
                sandbox: Default::default(),
                source: None,
            };
            let mut ev = sup.subscribe();
            let t = Instant::now();
            let id = sup.launch(spec).unwrap();
            let mut t_run = None;
            loop {
                match ev.recv().await {
                    Ok(Event::Launched { run_id, .. }) if run_id == id => t_run = Some(t.elapsed()),
                    Ok(Event::Exited { record }) if record.run_id == id => {
                        assert_eq!(record.exit_code, Some(0), "{record:?}");
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            let t_res = t.elapsed();
            let t0 = Instant::now();
            let mut args = vec!["-H", host.as_str(), "run", "--rm", "--network", "none"];
            if tier == SecurityTier::Tier2 {
                args.extend(["--runtime", "runsc"]);
            }
            args.extend([image.as_str(), "true"]);
            let st = std::process::Command::new(docker_cli())
                .args(&args)
                .output()
                .unwrap();
            assert!(
                st.status.success(),
                "{}",
                String::from_utf8_lossy(&st.stderr)
            );
            let t_cli = t0.elapsed();
            // The first round warms the daemon's caches and our connection; it is not counted.
            if i > 0 {
                running.push(ms(t_run.unwrap_or_default()));
                result.push(ms(t_res));
                cli.push(ms(t_cli));
            }
        }
        let t = tier.to_string();
        let base_what = format!(
            "docker run --rm --network none{} IMAGE true (CLI against the same daemon)",
            if tier == SecurityTier::Tier2 {
                " --runtime runsc"
            } else {
                ""
            }
        );
        let (sr, sres, sc) = (Stats::of(&running), Stats::of(&result), Stats::of(&cli));
        let key = t.to_lowercase();
        figures.push(
            Figure::new(
                format!("{key}_launch_result"),
                format!("9. {t} launch -> result (container removed)"),
                "ms",
            )
            .ours(result)
            .baseline(cli, base_what)
            .target(Target::Ratio(1.0))
            .json(),
        );
        figures.push(
            Figure::new(
                format!("{key}_launch_running"),
                format!("9b. {t} launch -> running"),
                "ms",
            )
            .ours(running)
            .no_baseline("none (the CLI does not say when the container runs)")
            .json(),
        );
        rows.push((tier, sr, sres, sc));
    }
    println!();
    println!("| tier | launch -> running (ms) | launch -> result (ms) | docker run --rm (ms) | result/CLI | target | result |");
    println!("|---|---|---|---|---|---|---|");
    // Whole milliseconds: median [min..max].
    let cell = |s: &Stats| format!("{:.0} [{:.0}..{:.0}]", s.median, s.min, s.max);
    for (tier, sr, sres, sc) in rows {
        println!(
            "| {tier} | {} | {} | {} | {:.2}x | no slower than the CLI | {} |",
            cell(&sr),
            cell(&sres),
            cell(&sc),
            sres.median / sc.median,
            if sres.median <= sc.median {
                "PASS"
            } else {
                "FAIL"
            }
        );
    }
    write_json(
        &args.json,
        &json!({
            "bench": "containers",
            "mode": args.mode(),
            "daemon": host,
            "image": image,
            "figures": figures,
        }),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
