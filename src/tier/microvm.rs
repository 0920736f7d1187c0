//! Tier3: each step of a run in a QEMU `microvm` guest (KVM where it boots the guest, software
//! emulation otherwise) with Debian's kernel and our initramfs (`scripts/microvm-assets`).
//!
//! QEMU itself is the run's host process: started, limited (CPU quota), sampled, guarded and
//! killed through the native tier's own target, so the dashboard shows the VM like any run and
//! the guardian takes it down with the supervisor. Inside, our guest agent (`guest/agent.c`)
//! runs the command in a cgroup of the guest kernel holding the agent's memory and process
//! limits, under its rlimits, with stdout and stderr on two virtio serial ports that QEMU writes
//! to its own stdout and stderr (and stdin on a third, read from QEMU's); it writes how the command ended to the control share and
//! powers the VM off. The working directory is shared with the guest (virtio-9p), not copied:
//! what the agent writes there is on the host as it writes it, and a large tree costs nothing
//! to start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map};

use super::native::{NativeHost, NativeTarget};
use crate::supervisor::target::{Actions, Exit, Finals, Prepared, Sinks, Started, Target, Tree};
use crate::supervisor::watchdog::OsEnforced;
use crate::supervisor::{LaunchError, Limits, RunId, RunSpec, Sig, Step};

/// The guest's own memory on top of the agent's limit, measured with Debian's 6.1 kernel and our
/// initramfs (README, "Tier3"): what the kernel reserves (about 50 MB, plus 18 MB per GB for its
/// page descriptors and tables) and what it uses once booted (the unpacked initramfs, the guest
/// agent, caches: 33 MB, 44 MB at 2 GB), and the free pages the kernel keeps in reserve. Hence
/// 128 MB plus 1/16 of the agent's memory, so the agent reaches its own cgroup limit in the guest
/// before the guest runs out (1/32 left it 2,024 MB available of 2,048).
pub(crate) const GUEST_OVERHEAD_MB: u64 = 128;

/// Where the guest's kernel and initramfs are: `$SYMBIONT_MICROVM_DIR`, else the data
/// directory's `microvm/` folder (what `scripts/microvm-assets` fills by default).
fn assets_dir(data_dir: &Path) -> PathBuf {
    let d = match std::env::var_os("SYMBIONT_MICROVM_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => data_dir.join("microvm"),
    };
    // QEMU runs in the agent's working directory.
    std::path::absolute(&d).unwrap_or(d)
}

/// The command that builds the guest, said wherever it is missing.
fn fix(dir: &Path) -> String {
    let default = crate::config::default_data_dir(&|k| std::env::var(k).ok()).join("microvm");
    if dir == default {
        "scripts/microvm-assets".to_string()
    } else {
        format!("scripts/microvm-assets --dir {}", dir.display())
    }
}

/// What a VM is made of on this machine.
#[derive(Debug, Clone)]
pub(crate) struct Assets {
    qemu: PathBuf,
    kernel: PathBuf,
    initramfs: PathBuf,
}

/// How QEMU runs the guest's CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation, and why not KVM.
    Tcg(String),
}

impl Accel {
    fn describe(&self) -> String {
        match self {
            Accel::Kvm => "KVM".to_string(),
            Accel::Tcg(why) => format!("software emulation (TCG; {why})"),
        }
    }
}

/// The microVM tier's share of a supervisor: where its assets are, and which accelerator boots
/// the guest here (found once, by booting it).
pub(crate) struct MicrovmHost {
    data_dir: PathBuf,
    /// `[microvm] kernel` and `initramfs`, where the config names them.
    guest: crate::config::MicrovmConfig,
    accel: tokio::sync::OnceCell<Accel>,
}

impl MicrovmHost {
    pub fn new(data_dir: &Path, guest: &crate::config::MicrovmConfig) -> MicrovmHost {
        MicrovmHost {
            data_dir: data_dir.to_path_buf(),
            guest: guest.clone(),
            accel: tokio::sync::OnceCell::new(),
        }
    }

    /// QEMU, the kernel and the initramfs, or what is missing and the command that fixes it.
    pub fn assets(&self) -> Result<Assets, String> {
        let qemu = match std::env::var_os("SYMBIONT_QEMU") {
            Some(q) if !q.is_empty() => std::path::absolute(PathBuf::from(q))
                .ok()
                .filter(|q| q.is_file()),
            _ => crate::runner::native::which(
                "qemu-system-x86_64",
                std::env::var_os("PATH").as_deref(),
            ),
        };
        let Some(qemu) = qemu else {
            return Err(
                "tier Tier3 (microvm) needs QEMU, and qemu-system-x86_64 is not on PATH \
                 (or SYMBIONT_QEMU): install it (Debian/Ubuntu: apt-get install qemu-system-x86; \
                 Fedora: dnf install qemu-system-x86-core), then run scripts/microvm-assets"
                    .to_string(),
            );
        };
        let dir = assets_dir(&self.data_dir);
        let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        let kernel = self
            .guest
            .kernel
            .as_ref()
            .map_or(dir.join("vmlinux"), absolute);
        let initramfs = self
            .guest
            .initramfs
            .as_ref()
            .map_or(dir.join("initramfs.img"), absolute);
        for (f, key, named) in [
            (&kernel, "microvm.kernel", self.guest.kernel.is_some()),
            (
                &initramfs,
                "microvm.initramfs",
                self.guest.initramfs.is_some(),
            ),
        ] {
            if named && !f.is_file() {
                return Err(format!(
                    "tier Tier3 (microvm): the config's {key} names {}, which is not a file: \
                     correct it, or remove it to use what `{}` builds",
                    f.display(),
                    fix(&dir)
                ));
            }
            if !f.is_file() {
                return Err(format!(
                    "tier Tier3 (microvm) needs its guest kernel and initramfs, and {} is missing: \
                     run `{}` (it fetches Debian's kernel and busybox and builds them)",
                    f.display(),
                    fix(&dir)
                ));
            }
        }
        Ok(Assets {
            qemu,
            kernel,
            initramfs,
        })
    }

    /// Refuses, before anything starts, a run this machine cannot boot.
    pub fn preflight(&self, s: &RunSpec) -> Result<(), LaunchError> {
        self.assets()
            .map(|_| ())
            .map_err(|message| LaunchError::RuntimeMissing {
                agent: s.agent.clone(),
                message,
            })
    }

    /// The accelerator, probed on the first run of this supervisor.
    async fn accel(&self, a: &Assets) -> Accel {
        self.accel
            .get_or_init(|| {
                let a = a.clone();
                async move {
                    tokio::task::spawn_blocking(move || probe_cached(&a, true))
                        .await
                        .unwrap_or_else(|_| Accel::Tcg("the probe of KVM failed".into()))
                }
            })
            .await
            .clone()
    }

    /// What runs Tier3 here, for `symbiont check` (boots the guest once where /dev/kvm may
    /// be usable, to see whether KVM runs it).
    pub fn describe(&self) -> String {
        match self.assets() {
            Ok(a) => format!(
                "Tier3 (microVM): QEMU microvm ({}), {}; guest memory: the agent's limit + {} MB + 1/16 \
                 (the guest kernel's cgroup holds the agent's memory and process limits, its rlimits \
                 file size and CPU time); kernel {}, initramfs {}",
                a.qemu.display(),
                probe_cached(&a, false).describe(),
                GUEST_OVERHEAD_MB,
                a.kernel.display(),
                a.initramfs.display()
            ),
            Err(e) => format!("Tier3 (microVM): not available: {e}"),
        }
    }

    /// A microVM run of `spec`: QEMU runs as a native run of `native`, with `marker` in its
    /// environment and `stdin` (the agent's) as its own.
    pub fn target(
        self: &Arc<Self>,
        id: RunId,
        spec: Arc<RunSpec>,
        native: &Arc<NativeHost>,
        marker: String,
        stdin: Option<std::fs::File>,
    ) -> Result<MicrovmTarget, LaunchError> {
        let limits = Limits {
            // The VM's host CPU; memory, processes, file size and CPU time are the guest's.
            cpu_cores: spec.limits.cpu_cores,
            ..Limits::default()
        };
        let mut env = vec![(
            "PATH".to_string(),
            "/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        )];
        if let Some((k, v)) = marker.split_once('=') {
            env.push((k.to_string(), v.to_string()));
        }
        let qemu_spec = RunSpec {
            steps: Vec::new(),
            env,
            limits,
            // The VM is the boundary (SPEC 3.1): QEMU itself runs unconfined.
            sandbox: Default::default(),
            ..(*spec).clone()
        };
        let inner = native.target(id, Arc::new(qemu_spec), marker, stdin);
        let tree = Arc::new(VmTree {
            host: inner.tree(),
            ctl: std::sync::Mutex::new(None),
        });
        Ok(MicrovmTarget {
            host: self.clone(),
            id,
            spec,
            inner,
            tree,
            assets: None,
            accel: None,
            ctl: None,
        })
    }
}

/// The probe's verdict, kept beside the assets for as long as QEMU, the kernel and /dev/kvm are
/// the same files (a probe that fails takes its whole bound, 10 s). `store`: keep a new verdict
/// (`symbiont check` writes nothing).
fn probe_cached(a: &Assets, store: bool) -> Accel {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)))
            .map_or("-".to_string(), |(l, t)| format!("{l}@{t:?}"))
    };
    let key = format!(
        "{} {} {} {}",
        a.qemu.display(),
        stamp(&a.qemu),
        stamp(&a.kernel),
        stamp(Path::new("/dev/kvm"))
    );
    let file = a.kernel.with_file_name("accel");
    if std::env::var_os("SYMBIONT_MICROVM_ACCEL").is_none() {
        if let Ok(c) = std::fs::read_to_string(&file) {
            match c.split_once('\n') {
                Some((k, "kvm")) if k == key => return Accel::Kvm,
                Some((k, why)) if k == key => {
                    return Accel::Tcg(why.strip_prefix("tcg ").unwrap_or(why).to_string())
                }
                _ => {}
            }
        }
    }
    let accel = probe(a);
    if store && std::env::var_os("SYMBIONT_MICROVM_ACCEL").is_none() {
        let v = match &accel {
            Accel::Kvm => "kvm".to_string(),
            Accel::Tcg(why) => format!("tcg {why}"),
        };
        let _ = std::fs::write(&file, format!("{key}\n{v}"));
    }
    accel
}

/// Whether KVM boots the guest here: /dev/kvm can be opened and a probe VM runs our agent to its
/// end. A KVM that cannot run stock kernels (a paravirtual /dev/kvm) fails or hangs: TCG then.
fn probe(a: &Assets) -> Accel {
    match std::env::var("SYMBIONT_MICROVM_ACCEL").as_deref() {
        Ok("tcg") => return Accel::Tcg("SYMBIONT_MICROVM_ACCEL=tcg".into()),
        Ok("kvm") => return Accel::Kvm,
        _ => {}
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Accel::Tcg(format!("/dev/kvm: {e}"));
    }
    let Ok(ctl) = ControlDir::new(&format!("{}-probe", std::process::id())) else {
        return Accel::Tcg("no directory for the KVM probe".into());
    };
    if ctl.write_spec(&["probe", "1"]).is_err() {
        return Accel::Tcg("no directory for the KVM probe".into());
    }
    let argv = qemu_argv(a, &Accel::Kvm, 128, 1, &ctl.path, None);
    let mut cmd = std::process::Command::new(&a.qemu);
    cmd.args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // A probe VM that hangs must not outlive a supervisor killed meanwhile (no guardian knows
    // it): it dies with the thread that waits for it.
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the hook runs in the forked child before exec and makes one
        // async-signal-safe system call (prctl), touching no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
    }
    let Ok(mut child) = cmd.spawn() else {
        return Accel::Tcg("QEMU could not be started for the KVM probe".into());
    };
    // A guest that does not boot under this KVM hangs rather than fails: a bound.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let ended = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if std::time::Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => break None,
        }
    };
    if ended.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    match ctl.status() {
        Some(s) if s.starts_with("exit 0") => Accel::Kvm,
        _ if ended.is_none() => {
            Accel::Tcg("KVM is present but did not boot the guest within 10 s".into())
        }
        _ => Accel::Tcg("KVM is present but QEMU could not boot the guest with it".into()),
    }
}

/// QEMU's argv for one VM. `work`: the working directory, shared at the same path.
fn qemu_argv(
    a: &Assets,
    accel: &Accel,
    memory_mb: u64,
    vcpus: u32,
    ctl: &Path,
    work: Option<&Path>,
) -> Vec<String> {
    let p = |p: &Path| p.display().to_string().replace(',', ",,");
    let (accel, cpu) = match accel {
        Accel::Kvm => ("kvm", "host"),
        Accel::Tcg(_) => ("tcg", "max"),
    };
    // Under software emulation the guest's TSC ticks at the host's rate; measuring it against
    // the PIT fails on a busy host and then the guest hangs: it is told the rate instead.
    let tsc = match (accel, host_tsc_khz()) {
        ("tcg", Some(khz)) => format!(" tsc_early_khz={khz}"),
        _ => String::new(),
    };
    let mut v: Vec<String> = [
        &a.qemu.display().to_string(),
        "-M",
        "microvm",
        "-accel",
        accel,
        "-cpu",
        cpu,
        "-m",
        &memory_mb.to_string(),
        "-smp",
        &vcpus.to_string(),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        &format!("file:{}", ctl.join("console.log").display()),
        "-kernel",
        &a.kernel.display().to_string(),
        "-initrd",
        &a.initramfs.display().to_string(),
        "-append",
        &format!("console=ttyS0 quiet panic=-1{tsc}"),
        "-device",
        "virtio-serial-device",
        // The agent's output: QEMU's own stdout and stderr, which the native tier drains.
        "-chardev",
        "file,id=out,path=/proc/self/fd/1",
        "-device",
        "virtserialport,chardev=out,name=stdout",
        "-chardev",
        "file,id=err,path=/proc/self/fd/2",
        "-device",
        "virtserialport,chardev=err,name=stderr",
        // Its stdin: QEMU's; at its end of file the port closes, which the guest reads as one.
        "-chardev",
        "file,id=in,path=/dev/null,input-path=/proc/self/fd/0",
        "-device",
        "virtserialport,chardev=in,name=stdin",
        "-fsdev",
        &format!("local,id=ctl,path={},security_model=none", p(ctl)),
        "-device",
        "virtio-9p-device,fsdev=ctl,mount_tag=ctl",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(w) = work {
        v.extend(
            [
                "-fsdev",
                &format!("local,id=work,path={},security_model=none", p(w)),
                "-device",
                "virtio-9p-device,fsdev=work,mount_tag=work",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
    }
    v
}

/// The host's TSC rate in kHz (`cpu MHz` of /proc/cpuinfo on a host with a constant TSC).
fn host_tsc_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64).filter(|k| *k > 0)
}

/// QEMU (`argv`) run by a shell that boots the VM again, twice at most, when it ended before
/// its guest agent marked the start of the agent's command (`ctl/started`) and wrote no result:
/// under software emulation on a busy host about one boot in 40 powered off at once with
/// nothing on its console (seen here; the cause is not found). Nothing of the agent's ran then,
/// and its stdin was not read (QEMU reads it only once the guest opens its port). The shell is
/// the run's main process; the VM is its child, in the same groups, killed with the tree.
fn boot_again_if_it_never_started(argv: Vec<String>, ctl: &Path) -> Step {
    const SCRIPT: &str = r#"ctl=$1; shift
for attempt in 1 2 3; do
  "$@"; rc=$?
  if [ -e "$ctl/started" ] || [ -e "$ctl/status" ] || [ "$rc" -ne 0 ]; then exit "$rc"; fi
  [ "$attempt" -lt 3 ] && echo "symbiont: the VM stopped before its agent started; booting it again" >&2
done
exit "$rc""#;
    let mut shell = vec![
        "sh".to_string(),
        "-c".to_string(),
        SCRIPT.to_string(),
        "symbiont-vm-boot".to_string(),
        ctl.display().to_string(),
    ];
    shell.extend(argv);
    Step {
        program: PathBuf::from("/bin/sh"),
        argv: shell,
    }
}

/// The VM's memory in MB: the agent's limit and the guest's own (see [`GUEST_OVERHEAD_MB`]).
pub(crate) fn vm_memory_mb(agent_bytes: Option<u64>) -> u64 {
    // Without a limit the agent gets what a default run gets natively.
    let agent = agent_bytes.unwrap_or(2048 << 20).div_ceil(1 << 20);
    agent + agent.div_ceil(16) + GUEST_OVERHEAD_MB
}

/// The VM's vCPUs: the agent's CPU cores rounded up, at most the host's.
fn vcpus(cores: Option<f64>) -> u32 {
    let host = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    match cores {
        Some(c) if c > 0.0 => (c.ceil() as u32).clamp(1, host.max(1)),
        _ => 1,
    }
}

/// A VM's control share: the spec the guest agent reads, the status it writes back, the
/// guest's console log. Removed when dropped.
struct ControlDir {
    path: PathBuf,
}

impl ControlDir {
    /// Removes the control shares of supervisors that died without removing them (SIGKILL).
    fn sweep() {
        crate::sandbox::tmpdir::sweep_dead(&std::env::temp_dir(), "symbiont-vm-");
    }

    fn new(name: &str) -> std::io::Result<ControlDir> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("symbiont-vm-{name}"));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(ControlDir { path })
    }

    /// Keys and values, each NUL-terminated (see guest/agent.c).
    fn write_spec<S: AsRef<str>>(&self, pairs: &[S]) -> std::io::Result<()> {
        let mut b = Vec::new();
        for s in pairs {
            b.extend_from_slice(s.as_ref().as_bytes());
            b.push(0);
        }
        std::fs::write(self.path.join("spec"), b)
    }

    fn status(&self) -> Option<String> {
        std::fs::read_to_string(self.path.join("status")).ok()
    }

    /// The last lines of the guest's console, for a VM that ended without a result.
    fn console_tail(&self) -> String {
        let c = std::fs::read_to_string(self.path.join("console.log")).unwrap_or_default();
        let lines: Vec<&str> = c.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// How the guest agent says the command ended (`ctl/status`).
fn guest_exit(status: &str) -> Result<Exit, String> {
    let mut e = Exit::default();
    let mut seen = false;
    for l in status.lines() {
        let (k, v) = l.split_once(' ').unwrap_or((l, ""));
        let n = v.trim().parse::<i64>().ok();
        match (k, n) {
            ("exit", Some(c)) => {
                e.code = Some(c as i32);
                seen = true;
            }
            ("signal", Some(s)) => {
                let s = s as i32;
                e.signal = Some(crate::process::signal::name(s));
                e.killed = s == crate::process::signal::SIGKILL;
                e.cpu_limit = s == crate::process::signal::SIGXCPU;
                seen = true;
            }
            ("oom", Some(n)) => e.oom = n > 0,
            ("error", _) => return Err(format!("the VM's guest agent failed: {v}")),
            _ => {}
        }
    }
    if seen {
        Ok(e)
    } else {
        Err(format!("the VM's guest agent wrote no result ({status:?})"))
    }
}

/// The VM's processes on the host (QEMU's tree, the native tier's), and what the guest says of
/// its agent while it runs: the forks its process limit refused.
#[derive(Debug)]
struct VmTree {
    host: Arc<dyn Tree>,
    /// The current step's control share.
    ctl: std::sync::Mutex<Option<PathBuf>>,
}

impl Tree for VmTree {
    fn pids(&self) -> Vec<i32> {
        self.host.pids()
    }
    fn samples(&self) -> Option<Vec<crate::sampler::ProcSample>> {
        self.host.samples()
    }
    fn kill_now(&self) {
        self.host.kill_now()
    }
    fn oom_kills(&self) -> u64 {
        self.host.oom_kills()
    }
    fn fork_refusals(&self) -> u64 {
        let ctl = self.ctl.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let guest = ctl
            .and_then(|c| std::fs::read_to_string(c.join("pids_refused")).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        self.host.fork_refusals() + guest
    }
    fn cpu_counter(&self) -> Option<(PathBuf, bool)> {
        self.host.cpu_counter()
    }
}

/// What the operator can do to a run of this tier.
pub(crate) const ACTIONS: Actions = Actions {
    choices: &[
        (Sig::Term, "stop the VM at once"),
        (Sig::Stop, "STOP (pause the VM)"),
        (Sig::Cont, "CONT (resume the VM)"),
    ],
    signal_names: true,
    one_process: false,
    graceful_term: false,
    pause: true,
};

/// One microVM run.
pub(crate) struct MicrovmTarget {
    host: Arc<MicrovmHost>,
    id: RunId,
    /// The agent's run, as planned.
    spec: Arc<RunSpec>,
    /// QEMU, as a native run.
    inner: NativeTarget,
    tree: Arc<VmTree>,
    assets: Option<Assets>,
    accel: Option<Accel>,
    /// The current step's control share.
    ctl: Option<Arc<ControlDir>>,
}

impl MicrovmTarget {
    /// The guest agent's spec of step `step`.
    fn guest_spec(&self, step: &Step) -> Vec<String> {
        let l = &self.spec.limits;
        let mut s = vec!["cwd".to_string(), self.spec.cwd.display().to_string()];
        let mut put = |k: &str, v: Option<u64>| {
            if let (Some(v), true) = (v, self.spec.enforce_limits) {
                s.extend([k.to_string(), v.to_string()]);
            }
        };
        put("memory", l.memory_bytes);
        put("pids", l.max_processes);
        put("fsize", l.file_size_bytes);
        put("cpu", l.cpu_seconds);
        for a in &step.argv {
            s.extend(["arg".to_string(), a.clone()]);
        }
        for (k, v) in &self.spec.env {
            s.extend(["env".to_string(), format!("{k}={v}")]);
        }
        s
    }
}

impl Target for MicrovmTarget {
    fn actions(&self) -> Actions {
        ACTIONS
    }

    fn tree(&self) -> Arc<dyn Tree> {
        self.tree.clone()
    }

    async fn prepare(&mut self) -> Prepared {
        let assets = match self.host.assets() {
            Ok(a) => a,
            Err(e) => {
                return Prepared {
                    fatal: Some(e),
                    ..Prepared::default()
                }
            }
        };
        let accel = self.host.accel(&assets).await;
        let mut p = self.inner.prepare().await;
        let (mb, cpus) = (
            vm_memory_mb(self.spec.limits.memory_bytes),
            vcpus(self.spec.limits.cpu_cores),
        );
        let mut vm = Map::new();
        vm.insert("accel".into(), json!(accel.describe()));
        vm.insert("memory_mb".into(), json!(mb));
        vm.insert("vcpus".into(), json!(cpus));
        vm.insert("kernel".into(), json!(assets.kernel));
        vm.insert("initramfs".into(), json!(assets.initramfs));
        p.audit.insert("vm".into(), serde_json::Value::Object(vm));
        p.audit.insert("program".into(), json!([assets.qemu]));
        for k in ["cgroup_memory", "cgroup_pids", "rlimit_data"] {
            p.audit_limits.remove(k);
        }
        p.audit_limits
            .insert("guest_kernel".into(), json!(self.spec.enforce_limits));
        let note = format!(
            "microVM: QEMU microvm, {}, {cpus} vCPU, {mb} MB",
            accel.describe()
        );
        p.note = Some(match p.note.take() {
            Some(n) => format!("{note}; {n}"),
            None => note,
        });
        // The guest kernel holds the agent's memory and process count; the watchdog keeps the
        // VM's CPU time and the timeout.
        p.os = OsEnforced {
            memory: true,
            pids: true,
            per_process_memory: false,
        };
        self.assets = Some(assets);
        self.accel = Some(accel);
        p
    }

    async fn start(&mut self, n: usize, step: &Step) -> Result<Started, String> {
        let (Some(a), Some(accel)) = (self.assets.clone(), self.accel.clone()) else {
            return Err("the microVM's assets were not found".into());
        };
        if n == 0 {
            ControlDir::sweep();
        }
        let ctl = ControlDir::new(&format!("{}-{}-{n}", std::process::id(), self.id))
            .map_err(|e| format!("cannot make the VM's control directory: {e}"))?;
        ctl.write_spec(&self.guest_spec(step))
            .map_err(|e| format!("cannot write the VM's spec: {e}"))?;
        let argv = qemu_argv(
            &a,
            &accel,
            vm_memory_mb(self.spec.limits.memory_bytes),
            vcpus(self.spec.limits.cpu_cores),
            &ctl.path,
            Some(&self.spec.cwd),
        );
        let qemu = boot_again_if_it_never_started(argv, &ctl.path);
        let ctl = Arc::new(ctl);
        *self.tree.ctl.lock().unwrap_or_else(|e| e.into_inner()) = Some(ctl.path.clone());
        self.ctl = Some(ctl.clone());
        let started = self.inner.start(n, &qemu).await?;
        let vm_exit = started.exit;
        Ok(Started {
            pid: started.pid,
            container_id: None,
            exit: Box::pin(async move {
                let q = vm_exit.await?;
                match ctl.status() {
                    Some(s) => guest_exit(&s),
                    // Stopped from here (a kill, the timeout): the lifecycle knows why.
                    None if q.signal.is_some() => Ok(q),
                    None => Err(format!(
                        "the VM ended without the agent's result (QEMU exit code {}; guest console: {})",
                        q.code.map_or("none".into(), |c| c.to_string()),
                        ctl.console_tail()
                    )),
                }
            }),
        })
    }

    fn drain(&mut self, sinks: Sinks) {
        self.inner.drain(sinks);
    }

    async fn signal(&self, sig: Sig, pid: Option<i32>) -> bool {
        if pid.is_some() {
            return false;
        }
        // TERM and KILL stop the VM at once: there is nothing of the agent's to save in it.
        let sig = match sig {
            Sig::Term | Sig::Kill => Sig::Kill,
            s => s,
        };
        self.inner.signal(sig, None).await
    }

    async fn pause(&self, paused: bool) -> bool {
        self.inner.pause(paused).await
    }

    async fn end_step(&mut self) {
        self.inner.end_step().await;
        *self.tree.ctl.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.ctl = None;
    }

    async fn finish(&mut self) -> Finals {
        self.inner.finish().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_agents_status_reads_as_an_exit() {
        let e = guest_exit("exit 3\noom 0\npids_refused 0\n").unwrap();
        assert_eq!(e.code, Some(3));
        assert!(!e.oom && e.signal.is_none());
        let e = guest_exit("signal 9\noom 1\n").unwrap();
        assert_eq!(e.signal.as_deref(), Some("SIGKILL"));
        assert!(e.oom && e.killed && e.code.is_none());
        assert!(guest_exit("signal 24\n").unwrap().cpu_limit);
        assert!(guest_exit("error mount: No such device\n")
            .unwrap_err()
            .contains("No such device"));
        assert!(guest_exit("").is_err());
    }

    #[test]
    fn a_vm_that_stopped_before_its_agent_started_is_booted_again_twice_at_most() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("symbiont-boot-again-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A stand-in for QEMU: counts its runs; with `mark`, its second run marks the start.
        let fake = dir.join("fake-qemu");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho x >> {d}/runs\n[ \"$1\" = mark ] && [ $(wc -l < {d}/runs) -ge 2 ] && touch {d}/started\nexit 0\n",
                d = dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (arg, runs, again) in [("nomark", 3, 2), ("mark", 2, 1)] {
            let _ = std::fs::remove_file(dir.join("runs"));
            let _ = std::fs::remove_file(dir.join("started"));
            let step = boot_again_if_it_never_started(
                vec![fake.display().to_string(), arg.to_string()],
                &dir,
            );
            let out = std::process::Command::new(&step.program)
                .args(&step.argv[1..])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0));
            let counted = std::fs::read_to_string(dir.join("runs")).unwrap();
            assert_eq!(counted.lines().count(), runs, "{arg}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.matches("booting it again").count(), again, "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_vm_has_the_agents_memory_and_the_guests_own() {
        assert_eq!(vm_memory_mb(Some(64 << 20)), 64 + 4 + GUEST_OVERHEAD_MB);
        assert_eq!(
            vm_memory_mb(Some(2048 << 20)),
            2048 + 128 + GUEST_OVERHEAD_MB
        );
        assert_eq!(vcpus(Some(0.5)), 1);
        assert_eq!(vcpus(None), 1);
    }
}
