//! Benchmark of the service (`symbiont serve`, SPEC 2.8 against the figures of section 6),
//! with the real `symbiont` binary and a service of its own (its own `XDG_RUNTIME_DIR`, its
//! own configuration with native execution allowed, its data under the scratch directory):
//!
//! 1. `exec` latency: `symbiont exec -- sh -c 'echo x'` through the service, the same with
//!    `--standalone`, and a bare `Command` spawn of `sh -c 'echo x'`, interleaved: time to the
//!    first byte of stdout and to exit.
//! 2. 1 GiB through `exec` (`bash -c 'head -c 1073741824 /dev/zero'`, read by this bench from
//!    the pipe) standalone and through the service, against the same command writing to a
//!    file; the supervisor's peak RSS (the service's VmRSS polled every 5 ms, and its VmHWM;
//!    standalone, the exec process's VmHWM).
//! 3. Idle CPU: 1000 `sleep 3600` agents under one service, the service's utime+stime over a
//!    window, as % of one core; against pueue's daemon (`pueued`, from
//!    `target/pueue/bin`, installed by `cargo install pueue --locked --root target/pueue`) with
//!    the same 1000 tasks, parallel 1000.
//! 4. Scale: 100, 1000 and 5000 idle agents: the service's VmRSS, its CPU idle and while a
//!    client polls `GET /v1/runs` once a second (the dashboard's refresh), and the time of
//!    one such request.
//!
//! Every agent is stopped at the end (`symbiont shutdown`), pueue's tasks killed and its
//! daemon stopped, and the bench checks that no process of its own is left.
//!
//! `cargo bench --profile profiling --bench service [-- --quick] [--json PATH] [--keep]
//! [--only exec,throughput,scale,pueue]`

mod common;

fn main() {
    #[cfg(target_os = "linux")]
    bench::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("the service benchmark reads /proc; nothing to do here");
}

#[cfg(target_os = "linux")]
mod bench {
    use super::common::{self, num, status_kib, write_json, Args, Figure, Res, Stats, Target};

    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    const SIZE: u64 = 1 << 30;
    const MIB: f64 = 1048576.0;
    const MIN_RATIO: f64 = 0.8;
    const MAX_RSS_MIB: f64 = 64.0;
    /// Descriptors the bench (and so the service it starts) may hold: 5000 agents hold some
    /// 30 000.
    const NOFILE: u64 = 65536;

    fn bin() -> &'static str {
        env!("CARGO_BIN_EXE_symbiont")
    }

    // ---------------------------------------------------------------- scratch

    struct Scratch {
        root: PathBuf,
        cfg: PathBuf,
        run: PathBuf,
        work: PathBuf,
        data: PathBuf,
    }

    fn scratch(root: &Path) -> Res<Scratch> {
        let work = root.join("work");
        let run = root.join("run");
        let data = root.join("data");
        for d in [&work, &run, &data] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let cfg = root.join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "[security]\nallow_native_execution = true\ndefault_sandbox_tier = \"None\"\n\n\
                 [native_execution]\nworking_directory = \"{}\"\n\
                 allowed_executables = [\"sh\", \"bash\", \"sleep\"]\n\
                 max_execution_time_seconds = 7200\nkill_grace_seconds = 1\n\n\
                 [supervisor]\ndata_dir = \"{}\"\nmax_log_mb = 2048\n",
                work.display(),
                data.display()
            ),
        )
        .map_err(|e| format!("{}: {e}", cfg.display()))?;
        Ok(Scratch {
            root: root.to_path_buf(),
            cfg,
            run,
            work,
            data,
        })
    }

    /// A `symbiont` command in the scratch directory, reaching the bench's own service.
    fn symbiont(sc: &Scratch) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(&sc.root)
            .env("XDG_RUNTIME_DIR", &sc.run)
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("SYMBIONT_") {
                c.env_remove(k);
            }
        }
        c
    }

    fn socket(sc: &Scratch) -> PathBuf {
        sc.run.join("symbiont").join("api.sock")
    }

    fn cpu_secs(pid: u32) -> Option<f64> {
        common::cpu_ticks(pid).map(|(u, s)| (u + s) as f64 / common::clk_tck())
    }

    /// Removes the big logs the 1 GiB runs left under the data directory.
    fn remove_big_files(dir: &Path) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => remove_big_files(&p),
                Ok(m) if m.len() > 1 << 20 => {
                    let _ = std::fs::remove_file(&p);
                }
                _ => {}
            }
        }
    }

    // ---------------------------------------------------------------- HTTP over the socket

    /// One `GET path` on the socket (a new connection, as every client of the service makes):
    /// the time to the whole answer and its body.
    fn http_get(sock: &Path, path: &str) -> Res<(f64, Vec<u8>)> {
        let t = Instant::now();
        let mut s =
            UnixStream::connect(sock).map_err(|e| format!("connect {}: {e}", sock.display()))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| format!("GET {path}: {e}"))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .map_err(|e| format!("GET {path}: {e}"))?;
        let secs = t.elapsed().as_secs_f64();
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("GET {path}: no header end"))?;
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
        }
        let mut body = buf[end + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        Ok((secs, body))
    }

    fn dechunk(mut b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
            let n = usize::from_str_radix(
                String::from_utf8_lossy(&b[..i])
                    .split(';')
                    .next()
                    .unwrap_or("0")
                    .trim(),
                16,
            )
            .unwrap_or(0);
            if n == 0 || b.len() < i + 2 + n {
                break;
            }
            out.extend_from_slice(&b[i + 2..i + 2 + n]);
            b = &b[(i + 4 + n).min(b.len())..];
        }
        out
    }

    fn runs(sc: &Scratch) -> Res<Vec<Value>> {
        let (_, body) = http_get(&socket(sc), "/v1/runs")?;
        serde_json::from_slice::<Vec<Value>>(&body).map_err(|e| format!("/v1/runs: {e}"))
    }

    // ---------------------------------------------------------------- the service

    struct Service {
        child: Child,
        pid: u32,
    }

    fn start_service(sc: &Scratch) -> Res<Service> {
        let log = std::fs::File::create(sc.root.join("serve.log")).map_err(|e| e.to_string())?;
        let child = symbiont(sc)
            .arg("serve")
            .arg("--config")
            .arg(&sc.cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("symbiont serve: {e}"))?;
        let pid = child.id();
        let mut svc = Service { child, pid };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if http_get(&socket(sc), "/v1/health").is_ok() {
                return Ok(svc);
            }
            if let Ok(Some(st)) = svc.child.try_wait() {
                return Err(format!(
                    "symbiont serve ended ({st}): {}",
                    std::fs::read_to_string(sc.root.join("serve.log")).unwrap_or_default()
                ));
            }
            if Instant::now() > until {
                let _ = svc.child.kill();
                let _ = svc.child.wait();
                return Err("symbiont serve did not answer within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `symbiont shutdown`, then waits for the service to exit; seconds the command took.
    fn stop_service(sc: &Scratch, svc: &mut Service) -> Res<f64> {
        let t = Instant::now();
        let out = symbiont(sc)
            .arg("shutdown")
            .output()
            .map_err(|e| format!("symbiont shutdown: {e}"))?;
        let secs = t.elapsed().as_secs_f64();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = svc.child.try_wait() {
                break;
            }
            if Instant::now() > until {
                let _ = svc.child.kill();
                let _ = svc.child.wait();
                return Err("the service did not exit within 60 s of `symbiont shutdown`".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !out.status.success() {
            return Err(format!(
                "symbiont shutdown: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(secs)
    }

    // ---------------------------------------------------------------- 1. exec latency

    /// Spawn to the first byte of stdout, and to exit, in ms; checks the output is `x\n`.
    fn timed(mut c: Command) -> Res<(f64, f64)> {
        c.stdout(Stdio::piped()).stderr(Stdio::null());
        let t = Instant::now();
        let mut child = c.spawn().map_err(|e| format!("spawn: {e}"))?;
        let mut out = child.stdout.take().ok_or("no stdout")?;
        let mut first = [0u8; 1];
        let n = out.read(&mut first).map_err(|e| e.to_string())?;
        let t_first = t.elapsed();
        let mut rest = Vec::new();
        out.read_to_end(&mut rest).map_err(|e| e.to_string())?;
        let st = child.wait().map_err(|e| e.to_string())?;
        let t_exit = t.elapsed();
        let all = [&first[..n], &rest[..]].concat();
        if !st.success() || all != b"x\n" {
            return Err(format!(
                "{c:?}: {st}, output {:?}",
                String::from_utf8_lossy(&all)
            ));
        }
        Ok((common::ms(t_first), common::ms(t_exit)))
    }

    struct Latency {
        first: [Vec<f64>; 3],
        exit: [Vec<f64>; 3],
    }

    fn exec_latency(sc: &Scratch, reps: usize) -> Res<Latency> {
        let mut l = Latency {
            first: Default::default(),
            exit: Default::default(),
        };
        let sh = common::which("sh").ok_or("sh not found")?;
        let cmd = |side: usize| -> Command {
            match side {
                0 => {
                    let mut c = symbiont(sc);
                    c.args(["exec", "--", "sh", "-c", "echo x"]);
                    c
                }
                1 => {
                    let mut c = symbiont(sc);
                    c.arg("exec")
                        .arg("--standalone")
                        .arg("--config")
                        .arg(&sc.cfg)
                        .args(["--", "sh", "-c", "echo x"]);
                    c
                }
                _ => {
                    let mut c = Command::new(&sh);
                    c.args(["-c", "echo x"])
                        .current_dir(&sc.work)
                        .stdin(Stdio::null());
                    c
                }
            }
        };
        // Warm-up: the binary's pages, the service's first launch.
        for side in 0..3 {
            timed(cmd(side))?;
        }
        for r in 0..reps {
            for k in 0..3 {
                let side = (r + k) % 3;
                let (f, e) = timed(cmd(side))?;
                l.first[side].push(f);
                l.exit[side].push(e);
                std::thread::sleep(Duration::from_millis(30));
            }
        }
        Ok(l)
    }

    // ---------------------------------------------------------------- 2. 1 GiB

    /// Polls a process's VmRSS and VmHWM every 5 ms until stopped: (max VmRSS, last VmHWM), KiB.
    struct Poller {
        stop: Arc<AtomicBool>,
        rss: Arc<AtomicU64>,
        hwm: Arc<AtomicU64>,
        thread: std::thread::JoinHandle<()>,
    }

    impl Poller {
        fn new(pid: u32) -> Poller {
            let stop = Arc::new(AtomicBool::new(false));
            let rss = Arc::new(AtomicU64::new(0));
            let hwm = Arc::new(AtomicU64::new(0));
            let thread = {
                let (stop, rss, hwm) = (stop.clone(), rss.clone(), hwm.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(k) = status_kib(pid, "VmRSS") {
                            rss.fetch_max(k, Ordering::Relaxed);
                        }
                        if let Some(k) = status_kib(pid, "VmHWM") {
                            hwm.fetch_max(k, Ordering::Relaxed);
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            };
            Poller {
                stop,
                rss,
                hwm,
                thread,
            }
        }

        /// (max VmRSS, max VmHWM) seen, MiB.
        fn finish(self) -> (f64, f64) {
            self.stop.store(true, Ordering::Relaxed);
            let _ = self.thread.join();
            (
                self.rss.load(Ordering::Relaxed) as f64 / 1024.0,
                self.hwm.load(Ordering::Relaxed) as f64 / 1024.0,
            )
        }
    }

    /// Runs `c`, reads its stdout to the end (every byte must be zero, 1 GiB of them): seconds
    /// from spawn to exit, and the peak memory of the process `watch` (None: the child itself)
    /// as (max VmRSS, VmHWM) in MiB.
    fn gib_through(mut c: Command, watch: Option<u32>) -> Res<(f64, (f64, f64))> {
        c.stdout(Stdio::piped()).stderr(Stdio::null());
        common::settle();
        let t = Instant::now();
        let mut child = c.spawn().map_err(|e| format!("spawn: {e}"))?;
        let poller = Poller::new(watch.unwrap_or(child.id()));
        let mut out = child.stdout.take().ok_or("no stdout")?;
        let mut buf = vec![0u8; 1 << 20];
        let (mut total, mut zero) = (0u64, true);
        loop {
            let n = out.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            total += n as u64;
            zero &= buf[..n].iter().all(|&b| b == 0);
        }
        let st = child.wait().map_err(|e| e.to_string())?;
        let secs = t.elapsed().as_secs_f64();
        let mem = poller.finish();
        if !st.success() || total != SIZE || !zero {
            return Err(format!(
                "{c:?}: {st}, read {total} of {SIZE} bytes (all zero: {zero})"
            ));
        }
        Ok((secs, mem))
    }

    #[derive(Default)]
    struct Gib {
        file: Vec<f64>,
        service: Vec<f64>,
        standalone: Vec<f64>,
        bare_pipe: Vec<f64>,
        service_rss: Vec<f64>,
        service_hwm: Vec<f64>,
        standalone_hwm: Vec<f64>,
        service_hwm_before: f64,
    }

    fn gib(sc: &Scratch, svc: &Service, reps: usize) -> Res<Gib> {
        let mut g = Gib {
            service_hwm_before: status_kib(svc.pid, "VmHWM").map_or(f64::NAN, |k| k as f64)
                / 1024.0,
            ..Gib::default()
        };
        let gib = SIZE as f64 / MIB;
        let cmd = format!("head -c {SIZE} /dev/zero");
        for r in 0..reps {
            for k in 0..4 {
                match (r + k) % 4 {
                    0 => g.file.push(
                        gib / common::write_to_file_secs(
                            Path::new("bash"),
                            &sc.root.join("baseline.out"),
                            SIZE,
                            false,
                        )?,
                    ),
                    1 => {
                        let mut c = symbiont(sc);
                        c.args(["exec", "--", "bash", "-c", &cmd]);
                        let (s, (rss, hwm)) = gib_through(c, Some(svc.pid))?;
                        g.service.push(gib / s);
                        g.service_rss.push(rss);
                        g.service_hwm.push(hwm);
                    }
                    2 => {
                        let mut c = symbiont(sc);
                        c.arg("exec")
                            .arg("--standalone")
                            .arg("--config")
                            .arg(&sc.cfg)
                            .args(["--", "bash", "-c", &cmd]);
                        let (s, (_, hwm)) = gib_through(c, None)?;
                        g.standalone.push(gib / s);
                        g.standalone_hwm.push(hwm);
                    }
                    _ => {
                        let mut c = Command::new("bash");
                        c.args(["-c", &cmd]).stdin(Stdio::null());
                        let (s, _) = gib_through(c, None)?;
                        g.bare_pipe.push(gib / s);
                    }
                }
                remove_big_files(&sc.data);
            }
            println!(
                "  rep {r}: file {} MiB/s, bare pipe {} MiB/s, service {} MiB/s (service VmRSS max {} MiB, VmHWM {} MiB), standalone {} MiB/s (VmHWM {} MiB)",
                num(*g.file.last().unwrap_or(&f64::NAN)),
                num(*g.bare_pipe.last().unwrap_or(&f64::NAN)),
                num(*g.service.last().unwrap_or(&f64::NAN)),
                num(*g.service_rss.last().unwrap_or(&f64::NAN)),
                num(*g.service_hwm.last().unwrap_or(&f64::NAN)),
                num(*g.standalone.last().unwrap_or(&f64::NAN)),
                num(*g.standalone_hwm.last().unwrap_or(&f64::NAN)),
            );
        }
        Ok(g)
    }

    // ---------------------------------------------------------------- 3. and 4. idle agents

    /// CPU of `pid` over `window`, as % of one core.
    fn cpu_over(pid: u32, window: Duration) -> Res<f64> {
        let a = cpu_secs(pid).ok_or("process gone")?;
        let t = Instant::now();
        std::thread::sleep(window);
        let b = cpu_secs(pid).ok_or("process gone")?;
        Ok((b - a) / t.elapsed().as_secs_f64() * 100.0)
    }

    struct Scale {
        n: usize,
        launch_secs: f64,
        rss_mib: f64,
        idle_cpu: f64,
        polled_cpu: f64,
        request_ms: Vec<f64>,
        body_bytes: usize,
        sleeps: usize,
        /// The service's RssAnon (MiB), threads and open descriptors, for the growth.
        anon_mib: f64,
        threads: f64,
        fds: usize,
    }

    fn agents_file(sc: &Scratch, from: usize, to: usize) -> Res<PathBuf> {
        let p = sc.root.join(format!("idle-{from}-{to}.dsl"));
        let mut text = String::new();
        for i in from..to {
            text.push_str(&format!(
                "agent Idle{i} {{ security {{ tier: None }} on start {{ execute_native(\"sleep 3600\") }} }}\n"
            ));
        }
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(p)
    }

    /// Waits until `n` runs are running (a pid each), for `within` at most.
    fn wait_running(sc: &Scratch, n: usize, within: Duration) -> Res<()> {
        let until = Instant::now() + within;
        loop {
            let r = runs(sc)?;
            let running = r
                .iter()
                .filter(|v| v["state"] == "running" && v["pid"].is_number())
                .count();
            if running >= n {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!("{running} of {n} agents running after {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// How long the agents idle before the service's memory is read: each run's CPU/RSS history
    /// (120 samples at the 1 s refresh) is full by then, as in a service that has run a while.
    /// The quick mode reads sooner, and so lower.
    const STEADY: Duration = Duration::from_secs(125);

    fn scales(
        sc: &Scratch,
        svc: &Service,
        counts: &[usize],
        window: Duration,
        settle_for: Duration,
    ) -> Res<Vec<Scale>> {
        let mut out = Vec::new();
        let mut have = 0;
        for &n in counts {
            let file = agents_file(sc, have, n)?;
            let t = Instant::now();
            let o = symbiont(sc)
                .arg("run")
                .arg("--detach")
                .arg("--config")
                .arg(&sc.cfg)
                .arg(&file)
                .output()
                .map_err(|e| format!("run --detach: {e}"))?;
            let launch_secs = t.elapsed().as_secs_f64();
            if !o.status.success() {
                return Err(format!(
                    "run --detach of {} agents: {}: {}",
                    n - have,
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            have = n;
            wait_running(sc, n, Duration::from_secs(120))?;
            std::thread::sleep(settle_for);
            let sleeps = common::processes_in(&sc.work).len();
            let rss_mib = status_kib(svc.pid, "VmRSS").map_or(f64::NAN, |k| k as f64) / 1024.0;
            let anon_mib = status_kib(svc.pid, "RssAnon").map_or(f64::NAN, |k| k as f64) / 1024.0;
            let threads = status_kib(svc.pid, "Threads").map_or(f64::NAN, |k| k as f64);
            let fds = std::fs::read_dir(format!("/proc/{}/fd", svc.pid))
                .map(|d| d.count())
                .unwrap_or(0);
            let idle_cpu = cpu_over(svc.pid, window)?;
            // A client polling /v1/runs once a second, as the dashboard refreshes.
            let stop = Arc::new(AtomicBool::new(false));
            let poll = {
                let (stop, sock) = (stop.clone(), socket(sc));
                std::thread::spawn(move || -> Res<(Vec<f64>, usize)> {
                    let mut times = Vec::new();
                    let mut size = 0;
                    let start = Instant::now();
                    let mut k = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let (secs, body) = http_get(&sock, "/v1/runs")?;
                        times.push(secs * 1e3);
                        size = body.len();
                        k += 1;
                        let next = start + Duration::from_secs(k as u64);
                        while !stop.load(Ordering::Relaxed) && Instant::now() < next {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    Ok((times, size))
                })
            };
            let polled_cpu = cpu_over(svc.pid, window);
            stop.store(true, Ordering::Relaxed);
            let (request_ms, body_bytes) = poll.join().map_err(|_| "poller panicked")??;
            let s = Scale {
                n,
                launch_secs,
                rss_mib,
                idle_cpu,
                polled_cpu: polled_cpu?,
                request_ms,
                body_bytes,
                sleeps,
                anon_mib,
                threads,
                fds,
            };
            println!(
                "  {n} agents ({} sleep processes): run --detach {:.2} s; service VmRSS {} MiB (anon {} MiB, {} threads, {} fds); CPU idle {} %, polled {} %; GET /v1/runs {} ms median {} ({} KiB)",
                s.sleeps,
                s.launch_secs,
                num(s.rss_mib),
                num(s.anon_mib),
                s.threads,
                s.fds,
                num(s.idle_cpu),
                num(s.polled_cpu),
                num(Stats::of(&s.request_ms).median),
                Stats::of(&s.request_ms).spread(),
                s.body_bytes / 1024
            );
            out.push(s);
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- pueue

    struct Pueue {
        cpu: f64,
        rss_mib: f64,
        add_secs: f64,
    }

    fn pueue_bins() -> Option<(PathBuf, PathBuf)> {
        let d = common::target_dir().join("pueue").join("bin");
        let (c, d) = (d.join("pueue"), d.join("pueued"));
        (c.exists() && d.exists()).then_some((c, d))
    }

    fn pueue(sc: &Scratch, n: usize, window: Duration) -> Res<Pueue> {
        let (cli, daemon) = pueue_bins().ok_or("pueue is not installed in target/pueue")?;
        let dir = sc.root.join("pueue");
        let work = dir.join("work");
        std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
        let cfg = dir.join("pueue.yml");
        std::fs::write(
            &cfg,
            format!(
                "shared:\n  pueue_directory: {0}/data\n  runtime_directory: {0}/run\n  \
                 use_unix_socket: true\n  unix_socket_path: {0}/run/pueue.socket\n",
                dir.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir.join("run")).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("pueued.log")).map_err(|e| e.to_string())?;
        let mut d = Command::new(&daemon)
            .arg("-c")
            .arg(&cfg)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("pueued: {e}"))?;
        let pid = d.id();
        let p = |args: &[&str]| -> Res<()> {
            let o = Command::new(&cli)
                .arg("-c")
                .arg(&cfg)
                .args(args)
                .current_dir(&work)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("pueue: {e}"))?;
            if o.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "pueue {args:?}: {}: {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
        };
        let result = (|| -> Res<Pueue> {
            let until = Instant::now() + Duration::from_secs(20);
            while p(&["status"]).is_err() {
                if Instant::now() > until {
                    return Err(format!(
                        "pueued did not answer within 20 s: {}",
                        std::fs::read_to_string(dir.join("pueued.log")).unwrap_or_default()
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            p(&["parallel", &n.to_string()])?;
            let t = Instant::now();
            let w = work.display().to_string();
            for _ in 0..n {
                p(&["add", "-w", &w, "--", "sleep 3600"])?;
            }
            let add_secs = t.elapsed().as_secs_f64();
            let until = Instant::now() + Duration::from_secs(120);
            loop {
                let have = common::processes_in(&work)
                    .iter()
                    .filter(|p| common::read_trim(&format!("/proc/{p}/comm")) == "sleep")
                    .count();
                if have >= n {
                    break;
                }
                if Instant::now() > until {
                    return Err(format!("{have} of {n} pueue tasks' sleeps running"));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            std::thread::sleep(Duration::from_secs(3));
            let rss_mib = status_kib(pid, "VmRSS").map_or(f64::NAN, |k| k as f64) / 1024.0;
            let cpu = cpu_over(pid, window)?;
            Ok(Pueue {
                cpu,
                rss_mib,
                add_secs,
            })
        })();
        // Clean up whatever happened.
        let _ = p(&["kill", "--all"]);
        let until = Instant::now() + Duration::from_secs(30);
        while !common::processes_in(&work).is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = p(&["shutdown"]);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = d.try_wait() {
                break;
            }
            if Instant::now() > until {
                let _ = d.kill();
                let _ = d.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for p in common::processes_in(&work) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        result
    }

    // ---------------------------------------------------------------- main

    fn raise_nofile() -> String {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((0, 0));
        if setrlimit(Resource::RLIMIT_NOFILE, NOFILE.max(soft), NOFILE.max(hard)).is_err() {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
        let (s2, h2) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((0, 0));
        format!("nofile {soft}/{hard} -> {s2}/{h2}")
    }

    fn print_fig(fig: &Value) {
        let o = &fig["ours"];
        let b = &fig["baseline"];
        let f = |v: &Value| num(v.as_f64().unwrap_or(f64::NAN));
        println!(
            "{:<58} ours {} {} [{}..{}]  baseline {}  ratio {}  target {}  {}",
            fig["figure"].as_str().unwrap_or(""),
            f(&o["median"]),
            fig["unit"].as_str().unwrap_or(""),
            f(&o["min"]),
            f(&o["max"]),
            f(&b["median"]),
            fig["ratio"]
                .as_f64()
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_else(|| "-".into()),
            fig["target"].as_str().unwrap_or(""),
            match fig["pass"].as_bool() {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "info",
            }
        );
    }

    pub fn main() {
        let args = Args::parse("service", &["exec", "throughput", "scale", "pueue"]);
        let facts = common::machine_facts();
        let root = common::scratch_dir("svc");
        let _ = std::fs::remove_dir_all(&root);
        let limits = raise_nofile();
        let (lat_reps, gib_reps, window) = if args.quick {
            (10, 1, Duration::from_secs(5))
        } else {
            (30, 3, Duration::from_secs(30))
        };
        println!(
            "symbiont service benchmark ({}): exec latency x{lat_reps}, 1 GiB x{gib_reps}, CPU windows of {} s; {limits}; scratch {}",
            args.mode(),
            window.as_secs(),
            root.display()
        );
        let started = Instant::now();
        let mut figures: Vec<Value> = Vec::new();
        let mut diag = json!({});
        let mut errors: Vec<String> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        let sc = match scratch(&root) {
            Ok(s) => s,
            Err(e) => args.fail(&e),
        };

        // ---- 1 and 2: one service.
        if args.wants("exec") || args.wants("throughput") {
            match start_service(&sc) {
                Err(e) => errors.push(e),
                Ok(mut svc) => {
                    if args.wants("exec") {
                        println!("exec latency ...");
                        match exec_latency(&sc, lat_reps) {
                            Ok(l) => {
                                let bare =
                                    "bare Command spawn of sh -c 'echo x' (same run, interleaved)";
                                for (i, (key, what)) in [
                                    ("service", "through the service"),
                                    ("standalone", "--standalone"),
                                ]
                                .iter()
                                .enumerate()
                                {
                                    figures.push(
                                        Figure::new(
                                            format!("exec_first_byte_{key}"),
                                            format!("S1. exec {what}: spawn -> first stdout byte"),
                                            "ms",
                                        )
                                        .ours(l.first[i].clone())
                                        .baseline(l.first[2].clone(), bare)
                                        .json(),
                                    );
                                    figures.push(
                                        Figure::new(
                                            format!("exec_exit_{key}"),
                                            format!("S1. exec {what}: spawn -> exit"),
                                            "ms",
                                        )
                                        .ours(l.exit[i].clone())
                                        .baseline(l.exit[2].clone(), bare)
                                        .json(),
                                    );
                                }
                            }
                            Err(e) => errors.push(format!("exec latency: {e}")),
                        }
                    }
                    if args.wants("throughput") {
                        println!("1 GiB through exec ...");
                        match gib(&sc, &svc, gib_reps) {
                            Ok(g) => {
                                let base = "bash -c 'head -c 1073741824 /dev/zero > FILE', bare spawn + wait";
                                figures.push(
                                    Figure::new(
                                        "exec_1gib_service",
                                        "S2. exec 1 GiB to stdout through the service",
                                        "MiB/s",
                                    )
                                    .higher_is_better()
                                    .ours(g.service.clone())
                                    .baseline(g.file.clone(), base)
                                    .target(Target::MinRatio(MIN_RATIO))
                                    .json(),
                                );
                                figures.push(
                                    Figure::new(
                                        "exec_1gib_standalone",
                                        "S2. exec 1 GiB to stdout, --standalone",
                                        "MiB/s",
                                    )
                                    .higher_is_better()
                                    .ours(g.standalone.clone())
                                    .baseline(g.file.clone(), base)
                                    .target(Target::MinRatio(MIN_RATIO))
                                    .json(),
                                );
                                figures.push(
                                    Figure::new(
                                        "exec_1gib_service_rss",
                                        "S2b. service peak VmRSS during it",
                                        "MiB",
                                    )
                                    .ours(g.service_rss.clone())
                                    .no_baseline("max of VmRSS of the symbiont serve process, polled every 5 ms")
                                    .target(Target::MaxBelow(MAX_RSS_MIB))
                                    .json(),
                                );
                                figures.push(
                                    Figure::new(
                                        "exec_1gib_standalone_rss",
                                        "S2b. exec --standalone peak RSS (VmHWM)",
                                        "MiB",
                                    )
                                    .ours(g.standalone_hwm.clone())
                                    .no_baseline("VmHWM of the exec process, polled every 5 ms")
                                    .target(Target::MaxBelow(MAX_RSS_MIB))
                                    .json(),
                                );
                                diag["gib"] = json!({
                                    "bare_pipe_read_by_bench_mib_s": Stats::of(&g.bare_pipe).json(),
                                    "service_vmhwm_mib": Stats::of(&g.service_hwm).json(),
                                    "service_vmhwm_before_mib": g.service_hwm_before,
                                    "max_log_mb": 2048,
                                });
                            }
                            Err(e) => errors.push(format!("1 GiB: {e}")),
                        }
                    }
                    if let Err(e) = stop_service(&sc, &mut svc) {
                        errors.push(e);
                    }
                }
            }
        }

        // ---- 3 and 4: a fresh service, 100, 1000, 5000 idle agents.
        let mut idle: Vec<(usize, f64)> = Vec::new();
        if args.wants("scale") {
            println!("idle agents ...");
            match start_service(&sc) {
                Err(e) => errors.push(e),
                Ok(mut svc) => {
                    let hwm0 = status_kib(svc.pid, "VmRSS").map_or(f64::NAN, |k| k as f64) / 1024.0;
                    let counts = [100, 1000, 5000];
                    let settle_for = if args.quick {
                        Duration::from_secs(3)
                    } else {
                        STEADY
                    };
                    let res = scales(&sc, &svc, &counts, window, settle_for);
                    let shutdown = stop_service(&sc, &mut svc);
                    match &shutdown {
                        Ok(s) => println!("  symbiont shutdown of every agent: {s:.2} s"),
                        Err(e) => errors.push(e.clone()),
                    }
                    match res {
                        Ok(sc_) => {
                            for s in &sc_ {
                                let at = s.n;
                                idle.push((at, s.idle_cpu));
                                figures.push(
                                    Figure::new(
                                        format!("service_rss_{at}"),
                                        format!("S4. service VmRSS, {at} idle agents"),
                                        "MiB",
                                    )
                                    .ours(vec![s.rss_mib])
                                    .no_baseline("")
                                    .target(if at == 5000 {
                                        Target::MaxBelow(MAX_RSS_MIB)
                                    } else {
                                        Target::Info
                                    })
                                    .json(),
                                );
                                figures.push(
                                    Figure::new(
                                        format!("service_polled_cpu_{at}"),
                                        format!("S4. service CPU, {at} agents, GET /v1/runs 1/s"),
                                        "% of a core",
                                    )
                                    .ours(vec![s.polled_cpu])
                                    .json(),
                                );
                                figures.push(
                                    Figure::new(
                                        format!("service_runs_request_{at}"),
                                        format!("S4. one GET /v1/runs, {at} agents"),
                                        "ms",
                                    )
                                    .ours(s.request_ms.clone())
                                    .json(),
                                );
                            }
                            diag["scale"] = json!(sc_
                                .iter()
                                .map(|s| json!({
                                    "agents": s.n,
                                    "sleep_processes": s.sleeps,
                                    "run_detach_secs": s.launch_secs,
                                    "vmrss_mib": s.rss_mib,
                                    "rss_anon_mib": s.anon_mib,
                                    "threads": s.threads,
                                    "fds": s.fds,
                                    "idle_cpu_pct": s.idle_cpu,
                                    "polled_cpu_pct": s.polled_cpu,
                                    "runs_body_bytes": s.body_bytes,
                                    "runs_request_ms": Stats::of(&s.request_ms).json(),
                                }))
                                .collect::<Vec<_>>());
                            diag["service_vmrss_empty_mib"] = json!(hwm0);
                            diag["shutdown_secs"] = json!(shutdown.ok());
                        }
                        Err(e) => errors.push(format!("scale: {e}")),
                    }
                }
            }
        }

        // ---- 3: pueued with the same 1000 sleeps.
        let mut pueue_cpu = None;
        if args.wants("pueue") || args.wants("scale") {
            if pueue_bins().is_none() {
                notes.push("pueue not installed in target/pueue (cargo install pueue --locked --root target/pueue): no pueued comparison".into());
            } else {
                println!("pueued with 1000 sleep 3600 ...");
                match pueue(&sc, 1000, window) {
                    Ok(p) => {
                        println!(
                            "  pueued: CPU {} % of a core, VmRSS {} MiB; 1000 pueue add: {:.1} s",
                            num(p.cpu),
                            num(p.rss_mib),
                            p.add_secs
                        );
                        pueue_cpu = Some(p.cpu);
                        diag["pueued"] = json!({"cpu_pct": p.cpu, "vmrss_mib": p.rss_mib, "add_1000_secs": p.add_secs});
                    }
                    Err(e) => notes.push(format!("pueued comparison failed: {e}")),
                }
            }
        }
        // The idle figures go before the scale figures, 1000 (against pueued) first.
        idle.sort_by_key(|&(n, _)| (n != 1000, n));
        let at = figures
            .iter()
            .position(|v| v["key"] == "service_rss_100")
            .unwrap_or(figures.len());
        for (k, &(n, ours)) in idle.iter().enumerate() {
            let mut f = Figure::new(
                format!("service_idle_cpu_{n}"),
                format!("S3. service CPU, {n} idle agents"),
                "% of a core",
            )
            .ours(vec![ours]);
            if n == 1000 {
                f = match pueue_cpu {
                    Some(p) => f.baseline(
                        vec![p],
                        "pueued with 1000 running `sleep 3600` tasks, parallel 1000",
                    ),
                    None => f.no_baseline("pueued not measured"),
                };
            }
            figures.insert(at + k, f.json());
        }

        std::thread::sleep(Duration::from_millis(300));
        let left = common::processes_in(&root);
        for p in &left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if !args.keep {
            let _ = std::fs::remove_dir_all(&root);
        }
        println!();
        for f in &figures {
            print_fig(f);
        }
        for n in &notes {
            println!("note: {n}");
        }
        println!("leftover processes of this bench: {}", left.len());
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        let out = json!({
            "bench": "service",
            "mode": args.mode(),
            "machine": facts,
            "limits": limits,
            "load_average_end": common::read_trim("/proc/loadavg"),
            "figures": figures,
            "diagnostics": diag,
            "notes": notes,
            "leftovers": {"processes": left.len()},
            "error": error,
            "elapsed_secs": started.elapsed().as_secs_f64(),
        });
        write_json(&args.json, &out);
        if let Some(e) = error {
            eprintln!("service bench failed: {e}");
            std::process::exit(1);
        }
        if !left.is_empty() {
            std::process::exit(1);
        }
    }
}
