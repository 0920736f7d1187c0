//! The seccomp filter of the native sandbox (SPEC 3.1), Linux: built once per kind in the
//! supervisor (a classic BPF program of about twenty instructions, see `program`), installed in the agent's own process just before its exec.
//!
//! - Without network: `socket()` only for Unix and netlink sockets, and no io_uring (its
//!   requests open sockets without `socket()`).
//! - Strict: no `ptrace` and no `process_vm_readv`/`writev` (reading or steering another
//!   process), no io_uring.
//!
//! A denied call fails with EPERM, as Docker's default profile does, so programs fall back (an
//! io_uring user to plain reads, a resolver to its Unix socket) instead of crashing.

use std::sync::OnceLock;

/// The x32 ABI's system calls carry this bit.
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
    if AUDIT_ARCH == 0 {
        return Err(format!(
            "cannot build the seccomp filter: no rules for the {} architecture",
            std::env::consts::ARCH
        ));
    }
    let mut denied = vec![
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ];
    if syscalls {
        denied.extend([
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
        ]);
    }
    let errno = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let insns = program(&denied, network, errno);
    // The rules' own refusals (not the x32 guard's) go to the supervisor first.
    let notify = program(&denied, network, libc::SECCOMP_RET_USER_NOTIF);
    Ok(Filter { insns, notify })
}

/// The filter, written here rather than by seccompiler: installing a filter, the kernel compiles
/// it and runs it once for every system call number (to find those it always allows), so each
/// instruction costs every confined launch. seccompiler's program for these rules (47
/// instructions, every rule tested in turn) took 64 µs to install; this one, a binary search on
/// the call's number, is a third of its length.
///
/// - another architecture: the process is killed (its numbers mean other calls);
/// - a call of the x32 ABI (this architecture, numbers with the x32 bit): EPERM, so no rule is
///   bypassed by it;
/// - `denied` (and, with `network`, `socket()` but for Unix and netlink sockets): `refuse`;
/// - everything else is allowed.
fn program(denied: &[i64], network: bool, refuse: u32) -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
    // Offsets in `struct seccomp_data`: the call's number, its architecture, and the low half
    // of its first argument (little-endian, as the architectures above are).
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    const ARG0: u32 = 16;
    /// Where a jump goes: `n` instructions further (0: the next one), or an answer.
    #[derive(Clone, Copy)]
    enum To {
        Skip(usize),
        Allow,
        Refuse,
        Socket,
    }
    struct Insn {
        code: u16,
        k: u32,
        jt: To,
        jf: To,
    }
    fn jump(code: u16, k: u32, jt: To, jf: To) -> Insn {
        Insn { code, k, jt, jf }
    }
    fn stmt(code: u16, k: u32) -> Insn {
        jump(code, k, To::Skip(0), To::Skip(0))
    }
    /// The search among `calls` (sorted by number), the number loaded: each goes to its
    /// answer, any other call is allowed.
    fn search(calls: &[(u32, To)], out: &mut Vec<Insn>) {
        if calls.len() <= 2 {
            for &(nr, to) in calls {
                out.push(jump(JEQ, nr, to, To::Skip(0)));
            }
            out.push(jump(JA, 0, To::Allow, To::Allow));
            return;
        }
        let (low, high) = calls.split_at(calls.len() / 2);
        let mut left = Vec::new();
        search(low, &mut left);
        out.push(jump(JGE, high[0].0, To::Skip(left.len()), To::Skip(0)));
        out.extend(left);
        search(high, out);
    }
    let mut calls: Vec<(u32, To)> = denied.iter().map(|&nr| (nr as u32, To::Refuse)).collect();
    if network {
        calls.push((libc::SYS_socket as u32, To::Socket));
    }
    calls.sort_by_key(|c| c.0);
    let mut out = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ, AUDIT_ARCH, To::Skip(1), To::Skip(0)),
        stmt(RET, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD_W_ABS, NR),
        jump(JSET, X32_SYSCALL_BIT, To::Skip(0), To::Skip(1)),
        stmt(RET, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ];
    search(&calls, &mut out);
    // The answers, after the search.
    let socket_at = out.len();
    if network {
        out.extend([
            stmt(LD_W_ABS, ARG0),
            jump(JEQ, libc::AF_UNIX as u32, To::Allow, To::Skip(0)),
            jump(JEQ, libc::AF_NETLINK as u32, To::Allow, To::Refuse),
        ]);
    }
    let refuse_at = out.len();
    out.push(stmt(RET, refuse));
    let allow_at = out.len();
    out.push(stmt(RET, libc::SECCOMP_RET_ALLOW));
    out.iter()
        .enumerate()
        .map(|(i, insn)| {
            // A few dozen instructions: every jump is short.
            let to = |t: To| {
                let at = match t {
                    To::Skip(n) => i + 1 + n,
                    To::Allow => allow_at,
                    To::Refuse => refuse_at,
                    To::Socket => socket_at,
                };
                u8::try_from(at - i - 1).expect("a short filter")
            };
            let (k, jt, jf) = match insn.code {
                JA => (u32::from(to(insn.jt)), 0, 0),
                c if c & 0x07 == libc::BPF_JMP as u16 => (insn.k, to(insn.jt), to(insn.jf)),
                _ => (insn.k, 0, 0),
            };
            libc::sock_filter {
                code: insn.code,
                jt,
                jf,
                k,
            }
        })
        .collect()
}

/// This architecture's `AUDIT_ARCH_*` (0 elsewhere: no filter is built there).
const AUDIT_ARCH: u32 = if cfg!(target_arch = "x86_64") {
    0xc000_003e
} else if cfg!(target_arch = "aarch64") {
    0xc000_00b7
} else if cfg!(target_arch = "riscv64") {
    0xc000_00f3
} else {
    0
};

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a classic BPF program on one call, as the kernel would: its answer.
    fn run(prog: &[libc::sock_filter], data: &libc::seccomp_data) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                0 => data.nr as u32,
                4 => data.arch,
                16..=63 => {
                    let (arg, high) = ((off - 16) / 8, (off - 16) % 8 == 4);
                    let v = data.args[arg as usize];
                    if high {
                        (v >> 32) as u32
                    } else {
                        v as u32
                    }
                }
                _ => panic!("load at {off}"),
            }
        };
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            pc += 1;
            let cond = |taken: bool| if taken { i.jt } else { i.jf } as usize;
            match u32::from(i.code) {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => a = word(i.k),
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => a &= i.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += i.k as usize,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => pc += cond(a == i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => pc += cond(a > i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => pc += cond(a >= i.k),
                c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => pc += cond(a & i.k != 0),
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                c => panic!("instruction {c:#x} at {}", pc - 1),
            }
        }
    }

    #[test]
    fn every_call_gets_the_answer_its_rules_give() {
        let errno = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let families = [
            libc::AF_UNIX,
            libc::AF_NETLINK,
            libc::AF_INET,
            libc::AF_INET6,
        ];
        for (network, syscalls) in [(true, false), (false, true), (true, true)] {
            let f = filter(network, syscalls).unwrap().unwrap();
            for (notify, prog) in [(false, &f.insns), (true, &f.notify)] {
                let denied = if notify {
                    libc::SECCOMP_RET_USER_NOTIF
                } else {
                    errno
                };
                for arch in [AUDIT_ARCH, 0x4000_0003] {
                    for nr in (0..600).chain((0..600).map(|n| n | X32_SYSCALL_BIT)) {
                        for family in families {
                            // SAFETY: seccomp_data is plain integers.
                            let mut d: libc::seccomp_data = unsafe { std::mem::zeroed() };
                            d.nr = nr as i32;
                            d.arch = arch;
                            d.args[0] = family as u64;
                            let n = i64::from(nr);
                            let want = if arch != AUDIT_ARCH {
                                libc::SECCOMP_RET_KILL_PROCESS
                            } else if nr & X32_SYSCALL_BIT != 0 {
                                errno
                            } else if n == libc::SYS_socket && network {
                                if family == libc::AF_UNIX || family == libc::AF_NETLINK {
                                    libc::SECCOMP_RET_ALLOW
                                } else {
                                    denied
                                }
                            } else if [
                                libc::SYS_io_uring_setup,
                                libc::SYS_io_uring_enter,
                                libc::SYS_io_uring_register,
                            ]
                            .contains(&n)
                                || syscalls
                                    && [
                                        libc::SYS_ptrace,
                                        libc::SYS_process_vm_readv,
                                        libc::SYS_process_vm_writev,
                                    ]
                                    .contains(&n)
                            {
                                denied
                            } else {
                                libc::SECCOMP_RET_ALLOW
                            };
                            assert_eq!(
                                run(prog, &d),
                                want,
                                "call {nr:#x} arch {arch:#x} family {family} \
                                 (network {network}, syscalls {syscalls}, notify {notify})"
                            );
                        }
                    }
                }
            }
        }
    }
}
