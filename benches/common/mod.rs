//! What the four benches share: their arguments, the statistics, the figure JSON that
//! `scripts/bench` merges into one table, the result file and the `/proc` readers.
//!
//! Each bench includes it with `mod common;` and uses what it needs (hence `dead_code` is
//! allowed here: no bench uses all of it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

pub type Res<T> = Result<T, String>;

/// Every process a bench starts carries `SYMBIONT_AGENT=...` in its environment (the
/// supervisor sets it for each agent; the native bench sets it for its bare baselines too), so
/// that anything left behind can be found in /proc afterwards.
pub const MARK: &str = "SYMBIONT_AGENT";

// ---------------------------------------------------------------- arguments

/// The arguments every bench takes:
/// `[--quick] [--json PATH | --json=PATH] [--keep] [--only LIST | --only=LIST]`.
pub struct Args {
    /// The bench's name: `bench-NAME.json`, and what its messages start with.
    pub bench: &'static str,
    /// Fewer rounds, shorter windows.
    pub quick: bool,
    /// Where the figures go (default `$CARGO_TARGET_DIR/bench-NAME.json`).
    pub json: PathBuf,
    /// `--only`: the figures to run (benches that take it), else all.
    pub only: Option<Vec<String>>,
    /// `--keep`: leave the scratch directory in place.
    pub keep: bool,
}

impl Args {
    /// Parses the process's arguments. `figures` lists what `--only` picks from; a bench that
    /// passes none does not take `--only`. `--bench` (which cargo passes to a
    /// `harness = false` bench) is ignored; anything else is reported and ignored.
    pub fn parse(bench: &'static str, figures: &[&str]) -> Args {
        let mut a = Args {
            bench,
            quick: false,
            json: target_dir().join(format!("bench-{bench}.json")),
            only: None,
            keep: false,
        };
        let list = |l: &str| Some(l.split(',').map(|s| s.trim().to_string()).collect());
        let mut it = std::env::args().skip(1);
        while let Some(x) = it.next() {
            match x.as_str() {
                "--quick" => a.quick = true,
                "--keep" => a.keep = true,
                "--json" => match it.next() {
                    Some(p) => a.json = PathBuf::from(p),
                    None => fail(bench, "--json needs a path"),
                },
                "--only" if !figures.is_empty() => match it.next() {
                    Some(l) => a.only = list(&l),
                    None => fail(
                        bench,
                        &format!("--only needs a list: {}", figures.join(",")),
                    ),
                },
                "--bench" => {}
                s => {
                    if let Some(p) = s.strip_prefix("--json=") {
                        a.json = PathBuf::from(p);
                    } else if let Some(l) =
                        s.strip_prefix("--only=").filter(|_| !figures.is_empty())
                    {
                        a.only = list(l);
                    } else {
                        eprintln!("{bench} bench: ignoring argument {s:?}");
                    }
                }
            }
        }
        a
    }

    /// Whether `--only` (if given) names `what`.
    pub fn wants(&self, what: &str) -> bool {
        match &self.only {
            None => true,
            Some(o) => o.iter().any(|x| x == what),
        }
    }

    /// `"quick"` or `"full"`, as the JSON says.
    pub fn mode(&self) -> &'static str {
        if self.quick {
            "quick"
        } else {
            "full"
        }
    }

    /// Reports a fatal error in the bench's name and exits with status 2.
    pub fn fail(&self, msg: &str) -> ! {
        fail(self.bench, msg)
    }
}

pub fn fail(bench: &str, msg: &str) -> ! {
    eprintln!("{bench} bench: {msg}");
    std::process::exit(2)
}

/// `$CARGO_TARGET_DIR`, else the package's `target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// A bench's scratch directory: `symbiont-bench-TAG-PID` in the temporary directory
/// (`symbiont-bench-PID` for an empty tag).
pub fn scratch_dir(tag: &str) -> PathBuf {
    let sep = if tag.is_empty() { "" } else { "-" };
    std::env::temp_dir().join(format!("symbiont-bench-{tag}{sep}{}", std::process::id()))
}

/// Writes the bench's JSON (making its directory) and says where.
pub fn write_json(path: &Path, out: &Value) {
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    match std::fs::write(
        path,
        serde_json::to_string_pretty(out).unwrap_or_default() + "\n",
    ) {
        Ok(()) => println!("results: {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

// ---------------------------------------------------------------- statistics

/// n, min, p10, median, p90, max of a set of samples, as the suite's JSON writes them. The
/// quantiles are the nearest sample; the median of an even count is the mean of the middle two.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub n: usize,
    pub min: f64,
    pub p10: f64,
    pub median: f64,
    pub p90: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(v: &[f64]) -> Stats {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        if n == 0 {
            let nan = f64::NAN;
            return Stats {
                n,
                min: nan,
                p10: nan,
                median: nan,
                p90: nan,
                max: nan,
            };
        }
        let q = |p: f64| s[((n - 1) as f64 * p).round() as usize];
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Stats {
            n,
            min: s[0],
            p10: q(0.1),
            median,
            p90: q(0.9),
            max: s[n - 1],
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "n": self.n, "min": self.min, "p10": self.p10, "median": self.median,
            "p90": self.p90, "max": self.max,
        })
    }

    /// `p10..p90 [min..max]` from ten samples on, else `[min..max]`.
    pub fn spread(&self) -> String {
        if self.n >= 10 {
            format!(
                "{}..{} [{}..{}]",
                num(self.p10),
                num(self.p90),
                num(self.min),
                num(self.max)
            )
        } else {
            format!("[{}..{}]", num(self.min), num(self.max))
        }
    }
}

/// A figure for a table: 1 decimal from 100 on, 2 from 1 on, 3 below; `-` for none.
pub fn num(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The median of `v`, written as `num` writes it.
pub fn num_median(v: &[f64]) -> String {
    num(Stats::of(v).median)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------- figures

/// What a figure must meet.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// Our median at most this times the baseline's.
    Ratio(f64),
    /// Our median at least this times the baseline's.
    MinRatio(f64),
    /// Our median at most this.
    Median(f64),
    /// Every one of our samples (the maximum) at most this.
    Max(f64),
    /// Every one of our samples (the maximum) under this.
    MaxBelow(f64),
    /// Our median at most this above the baseline's (what a feature adds to the same path).
    OverBaseline(f64),
    /// Reported, no target.
    Info,
}

/// One figure of the table, in the shape `scripts/bench` reads: our samples, the baseline's
/// (measured in the same run) and the target.
#[derive(Clone, Debug)]
pub struct Figure {
    pub key: String,
    pub name: String,
    pub unit: &'static str,
    /// `"lower"` or `"higher"`.
    pub better: &'static str,
    pub ours: Vec<f64>,
    pub base: Option<Vec<f64>>,
    pub base_what: String,
    pub target: Target,
    /// What the table should say next to the figure (repetitions that could not be measured).
    pub note: Option<String>,
}

impl Figure {
    /// A figure where lower is better, with no baseline and no target yet.
    pub fn new(key: impl Into<String>, name: impl Into<String>, unit: &'static str) -> Figure {
        Figure {
            key: key.into(),
            name: name.into(),
            unit,
            better: "lower",
            ours: Vec::new(),
            base: None,
            base_what: String::new(),
            target: Target::Info,
            note: None,
        }
    }

    pub fn ours(mut self, samples: Vec<f64>) -> Figure {
        self.ours = samples;
        self
    }

    pub fn baseline(mut self, samples: Vec<f64>, what: impl Into<String>) -> Figure {
        self.base = Some(samples);
        self.base_what = what.into();
        self
    }

    /// No baseline, and why.
    pub fn no_baseline(mut self, why: impl Into<String>) -> Figure {
        self.base = None;
        self.base_what = why.into();
        self
    }

    pub fn target(mut self, t: Target) -> Figure {
        self.target = t;
        self
    }

    pub fn note(mut self, note: Option<String>) -> Figure {
        self.note = note;
        self
    }

    pub fn higher_is_better(mut self) -> Figure {
        self.better = "higher";
        self
    }

    pub fn ours_stats(&self) -> Stats {
        Stats::of(&self.ours)
    }

    pub fn base_stats(&self) -> Option<Stats> {
        self.base.as_deref().map(Stats::of)
    }

    /// Our median over the baseline's.
    pub fn ratio(&self) -> Option<f64> {
        self.base_stats()
            .map(|b| self.ours_stats().median / b.median)
            .filter(|r| r.is_finite())
    }

    pub fn pass(&self) -> Option<bool> {
        let o = self.ours_stats();
        match self.target {
            Target::Ratio(r) => Some(self.ratio().is_some_and(|x| x <= r)),
            Target::MinRatio(r) => Some(self.ratio().is_some_and(|x| x >= r)),
            Target::Median(m) => Some(o.median <= m),
            Target::Max(m) => Some(o.max <= m),
            Target::MaxBelow(m) => Some(o.max < m),
            Target::OverBaseline(m) => {
                Some(self.base_stats().is_some_and(|b| o.median - b.median <= m))
            }
            Target::Info => None,
        }
    }

    pub fn target_text(&self) -> String {
        let u = self.unit;
        match self.target {
            Target::Ratio(r) => format!("ratio <= {r}"),
            Target::MinRatio(r) => format!("ratio >= {r}"),
            Target::Median(m) => format!("<= {m} {u}"),
            Target::Max(m) => format!("max <= {m} {u}"),
            Target::MaxBelow(m) => format!("max < {m} {u}"),
            Target::OverBaseline(m) => format!("median - baseline <= {m} {u}"),
            Target::Info => "-".into(),
        }
    }

    pub fn json(&self) -> Value {
        let samples = match &self.base {
            Some(b) => json!({"ours": self.ours, "baseline": b}),
            None => json!({"ours": self.ours}),
        };
        let mut v = json!({
            "key": self.key,
            "figure": self.name,
            "unit": self.unit,
            "better": self.better,
            "ours": self.ours_stats().json(),
            "baseline": self.base_stats().map(|b| b.json()),
            "baseline_is": self.base_what,
            "ratio": self.ratio(),
            "target": self.target_text(),
            "pass": self.pass(),
            "samples": samples,
        });
        if let Some(n) = &self.note {
            v["note"] = json!(n);
        }
        v
    }
}

// ---------------------------------------------------------------- the machine and /proc

/// A small file's text, trimmed; `?` if it cannot be read.
pub fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The machine's facts for a bench's JSON: cores, CPU model, memory, load, kernel, uid.
pub fn machine_facts() -> Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "?".into());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    #[cfg(unix)]
    let uid = Some(nix::unistd::getuid().as_raw());
    #[cfg(not(unix))]
    let uid: Option<u32> = None;
    json!({
        "cores": cores,
        "cpu_model": model,
        "memory_mib": mem_kb / 1024,
        "load_average": read_trim("/proc/loadavg"),
        "kernel": read_trim("/proc/sys/kernel/osrelease"),
        "uid": uid,
    })
}

/// A program on PATH, its links resolved (`python3` through a version manager's shim is not
/// resolved: that is a script).
#[cfg(unix)]
pub fn which(name: &str) -> Option<PathBuf> {
    symbiont::runner::native::which(name, std::env::var_os("PATH").as_deref())
        .and_then(|p| p.canonicalize().ok())
}

/// Every process in /proc but this one.
pub fn proc_pids() -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&p| p != me)
                .collect()
        })
        .unwrap_or_default()
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`, `VmPTE`, ...); None once the process
/// is gone or a zombie.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A field of this process's /proc/self/status in KiB; NaN if it has none.
pub fn own_status_kib(field: &str) -> f64 {
    status_kib(std::process::id(), field).map_or(f64::NAN, |k| k as f64)
}

/// utime and stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    Some((rest.get(11)?.parse().ok()?, rest.get(12)?.parse().ok()?))
}

/// Clock ticks per second (what `cpu_ticks` counts in).
#[cfg(unix)]
pub fn clk_tck() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// Live processes whose environment carries `SYMBIONT_AGENT=<value>` (or starts with it
/// when `prefix`), as (pid, name). Zombies have no environment and are not counted here.
pub fn marked(value: &str, prefix: bool) -> Vec<(i32, String)> {
    let needle = format!("{MARK}={value}");
    proc_pids()
        .into_iter()
        .filter(|pid| {
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                return false;
            };
            env.split(|&b| b == 0).any(|var| {
                let var = String::from_utf8_lossy(var);
                if prefix {
                    var.starts_with(&needle)
                } else {
                    var == needle
                }
            })
        })
        .map(|pid| (pid as i32, read_trim(&format!("/proc/{pid}/comm"))))
        .collect()
}

/// Waits (for `within` at most) until the supervisor's launcher pool is full again, then
/// `settle`: a refill joins v1 cgroups, which stalls every fork and exec on the host for up to
/// an RCU grace period, and must not land inside a measurement (of ours or of a baseline).
pub async fn pool_quiet(
    sup: &symbiont::supervisor::Supervisor,
    within: Duration,
    settle: Duration,
) {
    let until = std::time::Instant::now() + within;
    loop {
        let (ready, size) = sup.launchers();
        if ready >= size || std::time::Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(settle).await;
}

/// Live processes whose working directory is under `dir` (a bench's agents and what they left).
#[cfg(target_os = "linux")]
pub fn processes_in(dir: &Path) -> Vec<u32> {
    proc_pids()
        .into_iter()
        .filter(|p| std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c.starts_with(dir)))
        .collect()
}

/// Every side of a throughput figure starts with no dirty page of an earlier one still being
/// written back (the writeback of a deleted file's pages otherwise lands in whichever side comes
/// next).
#[cfg(target_os = "linux")]
pub fn settle() {
    nix::unistd::sync();
    std::thread::sleep(Duration::from_millis(200));
}

/// The baseline of the output figures: seconds, spawn to wait(), for `bash` to write `size` zero
/// bytes straight to `file` (or, with `relay`, through a pipe to `cat`, which writes the file:
/// the cost of one pipe hop), the file removed after.
#[cfg(target_os = "linux")]
pub fn write_to_file_secs(bash: &Path, file: &Path, size: u64, relay: bool) -> Res<f64> {
    settle();
    let t = std::time::Instant::now();
    let st = std::process::Command::new(bash)
        .arg("-c")
        .arg(format!(
            "head -c {size} /dev/zero {}> '{}'",
            if relay { "| cat " } else { "" },
            file.display()
        ))
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("baseline bash: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(file);
    if !st.success() || len != size {
        return Err(format!("baseline: {st}, wrote {len} of {size} bytes"));
    }
    Ok(secs)
}
