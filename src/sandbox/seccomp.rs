//! The seccomp filter of the native sandbox (SPEC 3.1), Linux: compiled once per kind by
//! seccompiler in the supervisor, installed in the agent's own process just before its exec.
//!
//! - Without network: `socket()` only for Unix and netlink sockets, and no io_uring (its
//!   requests open sockets without `socket()`).
//! - Strict: no `ptrace` and no `process_vm_readv`/`writev` (reading or steering another
//!   process), no io_uring.
//!
//! A denied call fails with EPERM, as Docker's default profile does, so programs fall back (an
//! io_uring user to plain reads, a resolver to its Unix socket) instead of crashing.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The x32 ABI's system calls carry this bit; seccompiler's rules match the native numbers only.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A compiled filter, ready for `seccomp(SECCOMP_SET_MODE_FILTER)`: the same rules twice, one
/// answering a denied call itself (EPERM), one handing it to the supervisor first
/// (`SECCOMP_RET_USER_NOTIF`), which records the denial and answers EPERM.
pub struct Filter {
    insns: Vec<libc::sock_filter>,
    notify: Vec<libc::sock_filter>,
}

impl Filter {
    /// The program header the kernel takes; it points into `self`, which lives as long as the
    /// process (filters are cached in statics). `notify`: the supervisor hears of denials.
    pub fn prog(&'static self, notify: bool) -> libc::sock_fprog {
        let insns = if notify { &self.notify } else { &self.insns };
        libc::sock_fprog {
            len: insns.len() as u16,
            filter: insns.as_ptr() as *mut libc::sock_filter,
        }
    }
}

/// The filter for a run that is confined in `network` and/or `syscalls`; `None` when neither.
pub fn filter(network: bool, syscalls: bool) -> Result<Option<&'static Filter>, String> {
    static FILTERS: [OnceLock<Result<Filter, String>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match (network, syscalls) {
        (false, false) => return Ok(None),
        (true, false) => 0,
        (false, true) => 1,
        (true, true) => 2,
    };
    FILTERS[slot]
        .get_or_init(|| compile(network, syscalls))
        .as_ref()
        .map(Some)
        .map_err(Clone::clone)
}

fn compile(network: bool, syscalls: bool) -> Result<Filter, String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot build the seccomp filter: {e}");
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| fail(&e))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    // An empty rule list matches the call whatever its arguments.
    for nr in [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ] {
        rules.insert(nr, Vec::new());
    }
    if network {
        let not = |family: libc::c_int| {
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, family as u64)
                .map_err(|e| fail(&e))
        };
        let rule = SeccompRule::new(vec![not(libc::AF_UNIX)?, not(libc::AF_NETLINK)?])
            .map_err(|e| fail(&e))?;
        rules.insert(libc::SYS_socket, vec![rule]);
    }
    if syscalls {
        for nr in [
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
        ] {
            rules.insert(nr, Vec::new());
        }
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| fail(&e))?;
    let program: BpfProgram = filter.try_into().map_err(|e| fail(&e))?;
    let errno = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    // First, before seccompiler's architecture check and its rules: a call of the x32 ABI
    // (same audit architecture, numbers with the x32 bit) fails, so no rule is bypassed by it.
    let mut insns = vec![
        bpf_stmt(
            (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            0, // offsetof(struct seccomp_data, nr)
        ),
        bpf_jump(
            (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16,
            X32_SYSCALL_BIT,
            0,
            1,
        ),
        bpf_stmt((libc::BPF_RET | libc::BPF_K) as u16, errno),
    ];
    insns.extend(program.iter().map(|i| libc::sock_filter {
        code: i.code,
        jt: i.jt,
        jf: i.jf,
        k: i.k,
    }));
    if insns.len() > usize::from(u16::MAX) {
        return Err(fail(&"too many instructions"));
    }
    // The rules' own answer (not the x32 guard's, the first three) goes to the supervisor.
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let notify = insns
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut f = *f;
            if i >= 3 && f.code == ret && f.k == errno {
                f.k = libc::SECCOMP_RET_USER_NOTIF;
            }
            f
        })
        .collect();
    Ok(Filter { insns, notify })
}

fn bpf_stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn bpf_jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Whether this kernel filters system calls (it has since 3.5; a container may forbid it).
pub fn available() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointer and only reports this thread's mode.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
}

/// Whether this host can give the network and system-call parts of `c`.
pub fn check(c: &crate::supervisor::Confinement) -> Result<(), String> {
    if !(c.network || c.syscalls) || available() {
        return filter(c.network, c.syscalls).map(|_| ());
    }
    Err(format!(
        "the {} sandbox denies {}, which needs seccomp filters, and this kernel (or the \
         container it runs in) does not offer them: the agent is refused rather than run \
         unconfined; give it the `network` capability or run it on a container tier",
        c.level,
        if c.network {
            "network sockets"
        } else {
            "ptrace and io_uring"
        }
    ))
}

/// What a denied call was, for the dashboard and the audit log.
pub fn describe(data: &libc::seccomp_data) -> String {
    let nr = i64::from(data.nr);
    let arg0 = data.args[0];
    if nr == libc::SYS_socket {
        let family = match arg0 as libc::c_int {
            libc::AF_INET => "AF_INET".to_string(),
            libc::AF_INET6 => "AF_INET6".to_string(),
            libc::AF_PACKET => "AF_PACKET".to_string(),
            f => format!("family {f}"),
        };
        format!("socket({family}): network")
    } else if nr == libc::SYS_ptrace {
        format!("ptrace(request {arg0}, pid {})", data.args[1] as i32)
    } else if nr == libc::SYS_process_vm_readv || nr == libc::SYS_process_vm_writev {
        format!("process_vm_readv/writev(pid {})", arg0 as i32)
    } else if nr == libc::SYS_io_uring_setup
        || nr == libc::SYS_io_uring_enter
        || nr == libc::SYS_io_uring_register
    {
        "io_uring".to_string()
    } else {
        format!("system call {nr}")
    }
}

/// Answers the denials of one process's filter until no process uses it: each is recorded in
/// `denials` and refused with EPERM. `listener` is the filter's notification descriptor.
pub async fn serve_denials(
    listener: std::os::fd::OwnedFd,
    denials: impl Fn(String) + Send + 'static,
) {
    use std::os::fd::AsRawFd;
    // SAFETY: `listener` is an open descriptor that the `AsyncFd` owns (moved in) until it is
    // dropped here: it stays open and the same for the registration's whole life.
    let Ok(fd) = (unsafe { tokio::io::unix::AsyncFd::register(listener) }) else {
        return;
    };
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        if guard.ready().is_read_closed() {
            return;
        }
        // SAFETY: seccomp_notif is plain integers; all-zero is what RECV expects to be given.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: RECV writes one `seccomp_notif` into `req`, a live local of that type; the
        // descriptor is the filter's listener, owned by `fd` for the whole call.
        let r = unsafe {
            libc::ioctl(
                fd.get_ref().as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut req as *mut libc::seccomp_notif,
            )
        };
        guard.clear_ready();
        if r != 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                // The caller went away meanwhile, or a signal: wait for the next one.
                Some(libc::ENOENT) | Some(libc::EINTR) => continue,
                _ => return,
            }
        }
        denials(describe(&req.data));
        let mut resp = libc::seccomp_notif_resp {
            id: req.id,
            val: 0,
            error: -libc::EPERM,
            flags: 0,
        };
        // SAFETY: SEND reads one `seccomp_notif_resp` from `resp`, a live local; an answer to a
        // caller that has gone fails with ENOENT, which changes nothing.
        unsafe {
            libc::ioctl(
                fd.get_ref().as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &mut resp as *mut libc::seccomp_notif_resp,
            )
        };
    }
}
