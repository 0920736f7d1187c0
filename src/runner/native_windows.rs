//! The native runner on Windows: one agent step as a host process, created suspended, put in
//! its run's job object, then resumed, so that not even its first child starts outside the job.

use std::ffi::OsStr;
use std::io;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::os::windows::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use windows_sys::Win32::Foundation::{CloseHandle, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::Threading::{
    OpenThread, ResumeThread, SuspendThread, TerminateProcess, CREATE_NEW_PROCESS_GROUP,
    CREATE_NO_WINDOW, CREATE_SUSPENDED, THREAD_SUSPEND_RESUME,
};

use crate::sandbox::job::Job;

/// Everything needed to start one process.
#[derive(Debug, Clone)]
pub struct NativeLaunch<'a> {
    /// The resolved program (checked against the allowlist by the policy).
    pub program: &'a Path,
    /// argv, argv[0] included (as the agent wrote it).
    pub argv: &'a [String],
    pub cwd: &'a Path,
    /// The complete environment: nothing else is inherited.
    pub env: &'a [(String, String)],
    /// The run's job: the process is in it before its first instruction.
    pub job: &'a Job,
    /// The process's standard input (a pipe or file the caller holds); NUL without one.
    pub stdin: Option<&'a std::fs::File>,
}

/// A started process and the read ends of its output pipes.
#[derive(Debug)]
pub struct Started {
    pub pid: i32,
    pub stdout: std::process::ChildStdout,
    pub stderr: std::process::ChildStderr,
    /// Keeps the pid from being reused while the supervisor still names the process by it.
    pub process: OwnedHandle,
}

fn is_cmd(program: &Path) -> bool {
    program
        .file_stem()
        .is_some_and(|s| s.eq_ignore_ascii_case("cmd"))
}

/// Starts the process suspended, assigns it to the job, resumes it.
pub fn spawn(l: &NativeLaunch<'_>) -> io::Result<Started> {
    let mut cmd = Command::new(l.program);
    let rest = l.argv.get(1..).unwrap_or_default();
    match rest.first() {
        // cmd does not parse its command line by the C rules: what follows /C is run as
        // written. /S strips exactly the quotes added here, /D skips AutoRun commands.
        Some(flag)
            if is_cmd(l.program)
                && (flag.eq_ignore_ascii_case("/c") || flag.eq_ignore_ascii_case("/k")) =>
        {
            cmd.args(["/D", "/S", flag.as_str()])
                .raw_arg(format!("\"{}\"", rest[1..].join(" ")));
        }
        _ => {
            cmd.args(rest);
        }
    }
    cmd.current_dir(l.cwd)
        .env_clear()
        .envs(l.env.iter().map(|(k, v)| (k, v)))
        .stdin(match l.stdin {
            Some(f) => Stdio::from(f.try_clone()?),
            None => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Agents never share the operator's console: no window, no console control events.
        .creation_flags(CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    if let Err(e) = l.job.assign(child.as_raw_handle()) {
        // SAFETY: the handle is the one `child` owns (from CreateProcess, with all access
        // rights), open until `child` is dropped below; TerminateProcess takes no pointer.
        unsafe { TerminateProcess(child.as_raw_handle() as _, 1) };
        let _ = child.wait();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot put the process in its job object: {e}"),
        ));
    }
    if set_suspended(&[pid as i32], false) == 0 {
        let e = io::Error::last_os_error();
        l.job.terminate();
        let _ = child.wait();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot resume the new process: {e}"),
        ));
    }
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let process: OwnedHandle = child.into();
    Ok(Started {
        pid: pid as i32,
        stdout,
        stderr,
        process,
    })
}

/// Suspends (or resumes) every thread of `pids`: the Windows form of STOP and CONT.
/// Returns the number of threads changed.
pub fn set_suspended(pids: &[i32], suspend: bool) -> usize {
    // SAFETY: no pointer argument; the result is a new handle this function owns (closed at
    // the end) or INVALID_HANDLE_VALUE, checked before any use.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if snap == INVALID_HANDLE_VALUE {
        return 0;
    }
    let mut n = 0;
    // SAFETY: THREADENTRY32 is a C struct of integers: all-zero is a valid value of it.
    let mut te: THREADENTRY32 = unsafe { std::mem::zeroed() };
    // The walk functions check `dwSize` and write at most that many bytes into `te`.
    te.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    // SAFETY: `snap` is the open snapshot handle from above; `te` is a live, mutably borrowed
    // THREADENTRY32 whose `dwSize` is its own size.
    let mut more = unsafe { Thread32First(snap, &mut te) } != 0;
    while more {
        if pids.contains(&(te.th32OwnerProcessID as i32)) {
            // SAFETY: no pointer argument; the result is a new handle owned (and closed) here,
            // or null, checked before use.
            let t = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, te.th32ThreadID) };
            if !t.is_null() {
                // SAFETY: `t` is the open thread handle from above, with the
                // THREAD_SUSPEND_RESUME right both calls need; neither takes a pointer.
                let r = unsafe {
                    if suspend {
                        SuspendThread(t)
                    } else {
                        ResumeThread(t)
                    }
                };
                if r != u32::MAX {
                    n += 1;
                }
                // SAFETY: `t` is owned here, closed exactly once and not used after.
                unsafe { CloseHandle(t) };
            }
        }
        // SAFETY: as for Thread32First: the open snapshot and a live, sized `te`.
        more = unsafe { Thread32Next(snap, &mut te) } != 0;
    }
    // SAFETY: `snap` is owned here, closed exactly once and not used after.
    unsafe { CloseHandle(snap) };
    n
}

/// Ends one process (the "single process" scope of a kill).
pub fn terminate_pid(pid: i32) -> bool {
    use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_TERMINATE};
    // SAFETY: no pointer argument; the result is a new handle owned (and closed) here, or
    // null, checked before use.
    let h = unsafe { OpenProcess(PROCESS_TERMINATE, 0, pid as u32) };
    if h.is_null() {
        return false;
    }
    // SAFETY: `h` is the open process handle from above, with PROCESS_TERMINATE access.
    let ok = unsafe { TerminateProcess(h, crate::sandbox::job::TERMINATED_EXIT_CODE) } != 0;
    // SAFETY: `h` is owned here, closed exactly once and not used after.
    unsafe { CloseHandle(h) };
    ok
}

/// The extensions a bare name may take, from `PATHEXT` (`.COM;.EXE;.BAT;.CMD` when unset).
fn path_exts() -> Vec<String> {
    let v = std::env::var("PATHEXT").unwrap_or_default();
    let mut exts: Vec<String> = v
        .split(';')
        .map(str::trim)
        .filter(|e| e.starts_with('.') && e.len() > 1)
        .map(str::to_ascii_lowercase)
        .collect();
    if exts.is_empty() {
        exts = [".com", ".exe", ".bat", ".cmd"].map(String::from).to_vec();
    }
    exts
}

/// The file `p` names, trying each `PATHEXT` extension when it has none of them already.
pub fn with_pathext(p: &Path) -> Option<PathBuf> {
    let exts = path_exts();
    let has_ext = p
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy().to_ascii_lowercase()))
        .is_some_and(|e| exts.contains(&e));
    if has_ext && p.is_file() {
        return Some(p.to_path_buf());
    }
    exts.iter().find_map(|e| {
        let mut s = p.as_os_str().to_os_string();
        s.push(e);
        let c = PathBuf::from(s);
        c.is_file().then_some(c)
    })
}

/// Looks a program name up in `path` (a PATH value) as Windows does, with `PATHEXT`; unlike
/// cmd, never in the current directory.
pub fn which(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    let path = path?;
    std::env::split_paths(path).find_map(|dir| {
        if dir.as_os_str().is_empty() {
            return None;
        }
        with_pathext(&dir.join(name))
    })
}
