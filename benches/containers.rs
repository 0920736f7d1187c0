//! Tier1/Tier2 launch latency against the docker CLI, same image, same run.
//!
//!   DOCKER_HOST=unix:///... cargo bench --bench containers [-- --quick] [--json PATH]
//!
//! Ours: `launch()` to the `Launched` event (the container is running) and to the `Exited`
//! event (result collected, container removed). Baseline: `docker run --rm IMAGE true`, which
//! returns once the container has exited and been removed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use symbiont::supervisor::Limits;
use symbiont::supervisor::{Event, RunSpec, Step, Supervisor, SupervisorOptions};
use symbiont::tier::SecurityTier;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> String {
    format!(
        "[{:.0}..{:.0}]",
        v.first().unwrap_or(&0.0),
        v.last().unwrap_or(&0.0)
    )
}

/// n, min, p10, median, p90, max of `v`, as the suite's JSON writes them.
fn stats(v: &[f64]) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
    json!({"n": s.len(), "min": s[0], "p10": q(0.1), "median": q(0.5), "p90": q(0.9), "max": s[s.len() - 1]})
}

fn json_path() -> PathBuf {
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--json" {
            if let Some(p) = it.next() {
                return PathBuf::from(p);
            }
        } else if let Some(p) = a.strip_prefix("--json=") {
            return PathBuf::from(p);
        }
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench-containers.json")
}

fn write_json(out: Value) {
    let path = json_path();
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    match std::fs::write(
        &path,
        serde_json::to_string_pretty(&out).unwrap_or_default() + "\n",
    ) {
        Ok(()) => println!("results: {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

fn docker_cli() -> &'static str {
    if std::path::Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(host) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) else {
        eprintln!("SKIPPED: set DOCKER_HOST (scripts/container-runtime starts a private daemon)");
        write_json(json!({
            "bench": "containers",
            "skipped": "DOCKER_HOST is not set (scripts/container-runtime starts a private daemon)",
            "figures": [],
        }));
        return;
    };
    let image =
        std::env::var("SYMBIONT_TEST_IMAGE").unwrap_or_else(|_| "symbiont-busybox:latest".into());
    let n = if std::env::args().any(|a| a == "--quick") {
        5
    } else {
        15
    };
    let dir = std::env::temp_dir().join(format!("symbiont-bench-ct-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("work")).unwrap();
    let sup = Supervisor::new(SupervisorOptions {
        data_dir: dir.join("data"),
        audit_log: dir.join("audit.jsonl"),
        tail_lines: 50,
        refresh: Duration::from_secs(1),
        warn_ratio: 0.8,
        critical_ratio: 0.95,
        // The bench runs the docker CLI as its own child: the supervisor must not reap it.
        own_all_children: false,
        use_cgroups: true,
        docker_host: Some(host.clone()),
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
                running.push(t_run.unwrap_or_default().as_secs_f64() * 1e3);
                result.push(t_res.as_secs_f64() * 1e3);
                cli.push(t_cli.as_secs_f64() * 1e3);
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
        let (res_s, cli_s) = (stats(&result), stats(&cli));
        let ratio = res_s["median"].as_f64().unwrap_or(f64::NAN)
            / cli_s["median"].as_f64().unwrap_or(f64::NAN);
        let ratio = ratio.is_finite().then_some(ratio);
        figures.push(json!({
            "key": format!("{}_launch_result", t.to_lowercase()),
            "figure": format!("9. {t} launch -> result (container removed)"),
            "unit": "ms", "better": "lower",
            "ours": res_s, "baseline": cli_s, "baseline_is": base_what,
            "ratio": ratio, "target": "ratio <= 1",
            "pass": ratio.is_some_and(|r| r <= 1.0),
            "samples": {"ours": result, "baseline": cli},
        }));
        figures.push(json!({
            "key": format!("{}_launch_running", t.to_lowercase()),
            "figure": format!("9b. {t} launch -> running"),
            "unit": "ms", "better": "lower",
            "ours": stats(&running), "baseline": null,
            "baseline_is": "none (the CLI does not say when the container runs)",
            "ratio": null, "target": "-", "pass": null,
            "samples": {"ours": running},
        }));
        let (mr, mres, mc) = (median(&mut running), median(&mut result), median(&mut cli));
        rows.push((
            tier,
            mr,
            spread(&running),
            mres,
            spread(&result),
            mc,
            spread(&cli),
        ));
    }
    println!();
    println!("| tier | launch -> running (ms) | launch -> result (ms) | docker run --rm (ms) | result/CLI | target | result |");
    println!("|---|---|---|---|---|---|---|");
    for (tier, mr, sr, mres, sres, mc, sc) in rows {
        println!(
            "| {tier} | {mr:.0} {sr} | {mres:.0} {sres} | {mc:.0} {sc} | {:.2}x | no slower than the CLI | {} |",
            mres / mc,
            if mres <= mc { "PASS" } else { "FAIL" }
        );
    }
    write_json(json!({
        "bench": "containers",
        "mode": if n == 5 { "quick" } else { "full" },
        "daemon": host,
        "image": image,
        "figures": figures,
    }));
    let _ = std::fs::remove_dir_all(&dir);
}
