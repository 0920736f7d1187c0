//! Policy: what may run natively, decided once before launch and testable without spawning.
//! The operator's configuration is the only source of policy; an agent file can tighten limits
//! but never enable native execution, widen the allowlist or reach a host variable.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

/// A refusal, with everything the operator needs to fix it (the `Display` is the message).
#[derive(Debug)]
pub enum PolicyError {
    /// A run on tier None while native execution is disabled. `what` names the run
    /// (`agent Worker`, `this command`).
    NativeDisabled { what: String },
    /// A statement or command without a program.
    EmptyCommand,
    /// A program given as a path (`./tool`, `/opt/x/tool`) that does not exist.
    NoSuchFile { command: String },
    /// A bare program name that is not on PATH; `path` is the PATH searched.
    NotOnPath { command: String, path: String },
    /// A program that exists but is not in `native_execution.allowed_executables`.
    NotAllowed {
        command: String,
        /// Where the command resolved.
        resolved: PathBuf,
        /// The allowlist as the message shows it.
        allowed: String,
    },
    /// The native working directory cannot be used.
    WorkingDirectory {
        dir: PathBuf,
        problem: WorkingDirectoryProblem,
    },
    /// The operator's env file is unsafe or unreadable.
    EnvFile(crate::secrets::EnvFileError),
    /// `--pass-env NAME` for a variable that is not set.
    PassEnvUnset { name: String },
    /// A sandbox name that is not a level, in an agent file.
    UnknownSandbox { agent: String, name: String },
    /// Strict without a home directory to find the secret locations in.
    NoHome { agent: String },
}

/// What is wrong with the native working directory.
#[derive(Debug)]
pub enum WorkingDirectoryProblem {
    /// It is missing and cannot be created.
    Create(std::io::Error),
    /// It exists and is not a directory.
    NotADirectory,
    /// It is not writable (or not searchable) by this user.
    NotWritable,
    /// Its canonical path cannot be found.
    Resolve(std::io::Error),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::NativeDisabled { what } => f.write_str(&native_disabled_message(what)),
            PolicyError::EmptyCommand => f.write_str("empty command"),
            PolicyError::UnknownSandbox { agent, name } => write!(
                f,
                "agent {agent}: {}",
                crate::tier::UnknownSandbox(name.clone())
            ),
            PolicyError::NoHome { agent } => write!(
                f,
                "agent {agent}: the Strict sandbox denies reads of secret locations under the home \
                 directory, and HOME is not set: set HOME (or pass it with native_execution.env_passthrough)"
            ),
            PolicyError::EnvFile(e) => write!(f, "{e}"),
            PolicyError::PassEnvUnset { name } => write!(
                f,
                "--pass-env {name}: the variable {name} is not set in this environment"
            ),
            PolicyError::NoSuchFile { command } => {
                write!(f, "`{command}`: no such file (command not found)")
            }
            PolicyError::NotOnPath { command, path } => write!(
                f,
                "`{command}` was not found on PATH (command not found); PATH={path}. \
                 Install it, add its directory to PATH, or list its absolute path in native_execution.allowed_executables"
            ),
            PolicyError::NotAllowed {
                command,
                resolved,
                allowed,
            } => write!(
                f,
                "`{command}` ({}) is not an allowed executable. Allowed: {allowed}. \
                 To allow it, add its name or absolute path to native_execution.allowed_executables",
                resolved.display()
            ),
            PolicyError::WorkingDirectory { dir, problem } => {
                let fix = format!(
                    "mkdir -p {0} && chmod 755 {0}, or set native_execution.working_directory (SYMBIONT_NATIVE_WORKING_DIR)",
                    dir.display()
                );
                match problem {
                    WorkingDirectoryProblem::Create(e) => {
                        // Only a refusal by the OS is "permission denied"; a missing parent is not.
                        #[cfg(unix)]
                        let read_only = e.raw_os_error() == Some(libc::EROFS);
                        #[cfg(not(unix))]
                        let read_only = false;
                        let denied = if e.kind() == std::io::ErrorKind::PermissionDenied || read_only
                        {
                            "; permission denied"
                        } else {
                            ""
                        };
                        write!(
                            f,
                            "cannot create the working directory {} ({e}{denied}): {fix}",
                            dir.display()
                        )
                    }
                    WorkingDirectoryProblem::NotADirectory => write!(
                        f,
                        "the working directory {} is not a directory: {fix}",
                        dir.display()
                    ),
                    WorkingDirectoryProblem::NotWritable => write!(
                        f,
                        "the working directory {} is not writable (permission denied): {fix}",
                        dir.display()
                    ),
                    WorkingDirectoryProblem::Resolve(e) => {
                        write!(f, "working directory {}: {e}", dir.display())
                    }
                }
            }
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PolicyError::WorkingDirectory {
                problem: WorkingDirectoryProblem::Create(e) | WorkingDirectoryProblem::Resolve(e),
                ..
            } => Some(e),
            _ => None,
        }
    }
}

/// The message for a native run while native execution is disabled: the three ways to enable it.
pub fn native_disabled_message(what: &str) -> String {
    format!(
        "{what} needs native execution (tier None: a host process with no isolation), which is disabled. \
         Enable it in one of three ways: pass --native (or --sandbox-tier=none) for this run; \
         set `allow_native_execution = true` under [security] (or `enabled = true` under [native_execution]) in the config file; \
         or export SYMBIONT_ALLOW_NATIVE_EXECUTION=true"
    )
}

/// One allowlist entry, resolved once.
#[derive(Debug, Clone)]
struct Allowed {
    configured: String,
    /// Where the entry resolved: PATH lookup for a name, the path itself for an absolute path.
    path: Option<PathBuf>,
    /// `entry_key` of `path`, worked out once.
    key: Option<(PathBuf, OsString)>,
}

/// The executable allowlist, resolved through PATH once.
#[derive(Debug, Clone)]
pub struct Allowlist {
    entries: Vec<Allowed>,
    path_var: Option<OsString>,
    /// Bare names already resolved and allowed: a file of 100k agents naming `sh` looks it
    /// up once, not 100k times (PATH does not change while a plan is made).
    resolved: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>>,
}

/// `dir/name` with `dir` canonical: two paths name the same directory entry when these match.
/// A symlink elsewhere that points at an allowed program is a different entry, and refused.
/// On Windows names are compared without case, as the file system does.
fn entry_key(p: &Path) -> Option<(PathBuf, OsString)> {
    let name = p.file_name()?.to_os_string();
    #[cfg(windows)]
    let name = OsString::from(name.to_string_lossy().to_lowercase());
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Some((dir.canonicalize().ok()?, name))
}

impl Allowlist {
    pub fn new(allowed: &[String], path_var: Option<&OsStr>) -> Allowlist {
        let entries = allowed
            .iter()
            .map(|a| {
                let p = Path::new(a);
                let path = if p.is_absolute() {
                    Some(p.to_path_buf())
                } else {
                    lookup(a, path_var)
                };
                Allowed {
                    configured: a.clone(),
                    key: path.as_deref().and_then(entry_key),
                    path,
                }
            })
            .collect();
        Allowlist {
            entries,
            path_var: path_var.map(OsStr::to_os_string),
            resolved: Default::default(),
        }
    }

    /// What is allowed, as the refusal message lists it.
    pub fn describe(&self) -> String {
        self.entries
            .iter()
            .map(|a| match &a.path {
                Some(p) if p.as_os_str() != a.configured.as_str() => {
                    format!("{} ({})", a.configured, p.display())
                }
                Some(_) => a.configured.clone(),
                None => format!("{} (not found)", a.configured),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One line per entry, as `check` prints it: what the entry allows. A name resolves through
    /// PATH (trusting it); an absolute path pins one file. A script shows its `#!` line: the
    /// program that really runs (a pyenv shim named `python3` runs `pyenv`'s script).
    pub fn explain(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .entries
            .iter()
            .map(|a| {
                let how = if Path::new(&a.configured).is_absolute() {
                    "this file only"
                } else {
                    "found on PATH"
                };
                match &a.path {
                    None => format!("{} -> not found ({how})", a.configured),
                    Some(p) => {
                        let real = p
                            .canonicalize()
                            .ok()
                            .filter(|r| r != p)
                            .map(|r| format!(" (-> {})", r.display()))
                            .unwrap_or_default();
                        let script = shebang(p)
                            .map(|l| format!(", a script run by `{l}`"))
                            .unwrap_or_default();
                        format!("{} -> {}{real} ({how}{script})", a.configured, p.display())
                    }
                }
            })
            .collect();
        for d in untrusted_dirs(self.path_var.as_deref()) {
            out.push(format!(
                "PATH directory {} skipped: others can write it",
                d.display()
            ));
        }
        out
    }

    /// Resolves argv[0] and checks it: a bare name through PATH, a path relative to `cwd`.
    /// The result is the program to execute.
    pub fn resolve(&self, argv0: &str, cwd: &Path) -> Result<PathBuf, PolicyError> {
        if argv0.is_empty() {
            return Err(PolicyError::EmptyCommand);
        }
        let bare = !(argv0.contains('/') || argv0.contains(std::path::MAIN_SEPARATOR));
        if bare {
            let known = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = known.get(argv0) {
                return Ok(p.clone());
            }
        }
        let candidate = if !bare {
            let p = Path::new(argv0);
            let abs = if p.is_absolute() {
                p.to_path_buf()
            } else {
                cwd.join(p)
            };
            // Windows runs `dir\prog` as `dir\prog.exe` (or another PATHEXT extension).
            #[cfg(windows)]
            let abs = crate::runner::native::with_pathext(&abs).unwrap_or(abs);
            if !abs.exists() {
                return Err(PolicyError::NoSuchFile {
                    command: argv0.to_string(),
                });
            }
            abs
        } else {
            match lookup(argv0, self.path_var.as_deref()) {
                Some(p) => p,
                None => {
                    let path = self
                        .path_var
                        .as_deref()
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    return Err(PolicyError::NotOnPath {
                        command: argv0.to_string(),
                        path,
                    });
                }
            }
        };
        let key = entry_key(&candidate);
        let ok = key.is_some() && self.entries.iter().any(|a| a.key == key);
        if ok {
            if bare {
                self.resolved
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(argv0.to_string(), candidate.clone());
            }
            Ok(candidate)
        } else {
            Err(PolicyError::NotAllowed {
                command: argv0.to_string(),
                resolved: candidate,
                allowed: self.describe(),
            })
        }
    }
}

/// Looks a name up on a PATH value (on Windows with the `PATHEXT` extensions), skipping the
/// directories others can write (`trusted_dir`): a name in the allowlist trusts the operator's
/// PATH, and a directory anyone else may fill must not decide what runs under that name.
pub fn lookup(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let path_var = path_var?;
    std::env::split_paths(path_var)
        .filter(|d| !d.as_os_str().is_empty() && trusted_dir(d))
        .find_map(|d| crate::runner::native::which(name, Some(d.as_os_str())))
}

/// Whether a PATH directory is one only this user or root can change, as sudo and ssh demand:
/// owned by this user or root, and neither group nor world writable. A directory that cannot
/// be read is not trusted. (Windows: every directory; its ACLs are not checked.)
pub fn trusted_dir(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dir).is_ok_and(|m| {
            let owner = m.uid();
            (owner == 0 || owner == nix::unistd::geteuid().as_raw()) && m.mode() & 0o022 == 0
        })
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        true
    }
}

/// The PATH directories `lookup` skips, as a message names them.
pub fn untrusted_dirs(path_var: Option<&OsStr>) -> Vec<PathBuf> {
    path_var
        .map(|p| {
            std::env::split_paths(p)
                .filter(|d| !d.as_os_str().is_empty() && d.exists() && !trusted_dir(d))
                .collect()
        })
        .unwrap_or_default()
}

/// The `#!` line of a script (without `#!`), if `p` is one.
fn shebang(p: &Path) -> Option<String> {
    use std::io::Read;
    let mut buf = [0u8; 256];
    let n = std::fs::File::open(p).ok()?.read(&mut buf).ok()?;
    let head = buf[..n].strip_prefix(b"#!")?;
    let line = head.split(|&b| b == b'\n').next()?;
    Some(crate::report::visible(String::from_utf8_lossy(line).trim()).into_owned())
}

/// The operator's variables for every agent, set over the agent file's own: the lines of
/// `env_file`, then the `--pass-env` variables from the host. Every one of their values, and
/// the value of each passthrough variable whose name looks secret, is registered for masking
/// ([`crate::secrets`]).
pub fn operator_environment(
    env_file: Option<&Path>,
    pass_env: &[String],
    passthrough: &[String],
    host: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, PolicyError> {
    let mut out = match env_file {
        Some(p) => crate::secrets::read_env_file(p).map_err(PolicyError::EnvFile)?,
        None => Vec::new(),
    };
    for name in pass_env {
        let value = host(name).ok_or_else(|| PolicyError::PassEnvUnset { name: name.clone() })?;
        out.retain(|(k, _)| k != name);
        out.push((name.clone(), value));
    }
    for (_, v) in &out {
        crate::secrets::register(v);
    }
    for name in passthrough
        .iter()
        .filter(|n| crate::secrets::looks_secret(n))
    {
        if let Some(v) = host(name) {
            crate::secrets::register(&v);
        }
    }
    Ok(out)
}

/// The agent's complete environment: the passthrough variables from the host, then the
/// agent's own variables, then the run's identity.
pub fn environment(
    passthrough: &[String],
    host: &dyn Fn(&str) -> Option<String>,
    agent_env: &[(String, String)],
    identity: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| {
        if let Some(e) = env.iter_mut().find(|(ek, _)| ek == k) {
            e.1 = v;
        } else {
            env.push((k.to_string(), v));
        }
    };
    for k in passthrough {
        if let Some(v) = host(k) {
            set(k, v);
        }
    }
    for (k, v) in agent_env {
        set(k, v.clone());
    }
    for (k, v) in identity {
        set(k, v.to_string());
    }
    env
}

/// Creates the working directory if missing (mode 0755) and checks that it is writable.
pub fn prepare_working_directory(dir: &Path) -> Result<PathBuf, PolicyError> {
    let refuse = |problem| PolicyError::WorkingDirectory {
        dir: dir.to_path_buf(),
        problem,
    };
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o755);
        }
        b.create(dir)
            .map_err(|e| refuse(WorkingDirectoryProblem::Create(e)))?;
    }
    if !dir.is_dir() {
        return Err(refuse(WorkingDirectoryProblem::NotADirectory));
    }
    if !writable(dir) {
        return Err(refuse(WorkingDirectoryProblem::NotWritable));
    }
    dir.canonicalize()
        .map_err(|e| refuse(WorkingDirectoryProblem::Resolve(e)))
}

/// What [`prepare_working_directory`] would decide, without making anything: a directory
/// that does not exist yet must be makeable (its nearest existing ancestor a directory this
/// user can write). Returns the path a run would use.
pub fn check_working_directory(dir: &Path) -> Result<PathBuf, PolicyError> {
    if dir.exists() {
        let refuse = |problem| PolicyError::WorkingDirectory {
            dir: dir.to_path_buf(),
            problem,
        };
        if !dir.is_dir() {
            return Err(refuse(WorkingDirectoryProblem::NotADirectory));
        }
        if !writable(dir) {
            return Err(refuse(WorkingDirectoryProblem::NotWritable));
        }
        return dir
            .canonicalize()
            .map_err(|e| refuse(WorkingDirectoryProblem::Resolve(e)));
    }
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let parent = abs.ancestors().skip(1).find(|a| a.exists());
    let makeable = parent.is_some_and(|p| p.is_dir() && writable(p));
    if !makeable {
        return Err(PolicyError::WorkingDirectory {
            dir: dir.to_path_buf(),
            problem: WorkingDirectoryProblem::Create(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} cannot be made here",
                    parent.map_or(abs.display().to_string(), |p| p.display().to_string())
                ),
            )),
        });
    }
    Ok(abs)
}

fn writable(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use nix::unistd::{access, AccessFlags};
        access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_ok()
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(dir)
            .map(|m| !m.permissions().readonly())
            .unwrap_or(false)
    }
}

/// How `default_executable` takes a piece of code as an argument.
pub fn code_argv(executable: &str, code: &str) -> Vec<String> {
    let base = Path::new(executable)
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let flag = match base.as_str() {
        "node" | "nodejs" | "deno" | "perl" | "ruby" => "-e",
        "cmd" => "/C",
        "powershell" | "pwsh" => "-Command",
        _ => "-c",
    };
    vec![executable.to_string(), flag.to_string(), code.to_string()]
}

/// Secret locations under the home directory that a Strict agent never reads (SPEC 3.1); the
/// operator adds more with `native_execution.deny_read`.
pub const SECRET_LOCATIONS: &[&str] = &[
    ".ssh",
    ".aws",
    ".gnupg",
    ".config/gcloud",
    ".kube",
    ".docker",
    ".netrc",
    ".git-credentials",
    ".azure",
    ".password-store",
    ".config/gh",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".local/share/keyrings",
    ".vault-token",
];

/// `~` and `~/...` against `home`; anything else as written. `None`: `~` without a home.
fn expand_home(p: &str, home: Option<&Path>) -> Option<PathBuf> {
    match (p.strip_prefix('~'), home) {
        (Some(""), Some(h)) => Some(h.to_path_buf()),
        (Some(rest), Some(h)) if rest.starts_with('/') => {
            Some(h.join(rest.trim_start_matches('/')))
        }
        (Some(_), None) => None,
        _ => Some(PathBuf::from(p)),
    }
}

/// What a native agent is confined to (SPEC 3.1): the level it asks for, raised to the
/// operator's floor; `local_filesystem` lifts the filesystem part and `network` the network
/// part, but never below what the floor itself confines. `home` is the user's home directory
/// (for the secret locations and `~` in the operator's paths).
pub fn confinement(
    native: &crate::config::NativeExecutionConfig,
    agent: &str,
    asked: crate::tier::SandboxLevel,
    capabilities: &[String],
    home: Option<&Path>,
) -> Result<crate::supervisor::Confinement, PolicyError> {
    use crate::tier::SandboxLevel::{Moderate, Strict};
    let floor = native.min_sandbox;
    let level = asked.max(floor);
    let has = |c: &str| capabilities.iter().any(|x| x.eq_ignore_ascii_case(c));
    let (fs_cap, net_cap) = (has("local_filesystem"), has("network"));
    let mut c = crate::supervisor::Confinement {
        level,
        writes: (level >= Moderate && !fs_cap) || floor >= Moderate,
        reads: (level >= Strict && !fs_cap) || floor >= Strict,
        network: (level >= Moderate && !net_cap) || floor >= Moderate,
        syscalls: level >= Strict,
        deny_read: Vec::new(),
        allow_write: Vec::new(),
        allow_read: Vec::new(),
    };
    if c.reads {
        let home = home.ok_or_else(|| PolicyError::NoHome {
            agent: agent.to_string(),
        })?;
        c.deny_read = SECRET_LOCATIONS.iter().map(|s| home.join(s)).collect();
        c.deny_read.extend(
            native
                .deny_read
                .iter()
                .filter_map(|p| expand_home(p, Some(home))),
        );
        c.allow_read = native
            .allow_read
            .iter()
            .filter_map(|p| expand_home(p, Some(home)))
            .collect();
    }
    if c.writes {
        c.allow_write = native
            .allow_write
            .iter()
            .filter_map(|p| expand_home(p, home))
            .collect();
    }
    Ok(c)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn path() -> OsString {
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into())
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("symbiont-policy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn allowed_names_resolve_and_others_are_refused() {
        let p = path();
        let l = Allowlist::new(&["sh".into(), "bash".into()], Some(&p));
        let cwd = Path::new("/");
        assert!(l.resolve("sh", cwd).is_ok());
        assert!(l.resolve("bash", cwd).is_ok());
        let e = l.resolve("env", cwd).unwrap_err();
        assert!(
            matches!(&e, PolicyError::NotAllowed { command, .. } if command == "env"),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains("not an allowed executable") && e.contains("Allowed: sh"),
            "{e}"
        );
        let e = l.resolve("no-such-program-xyz", cwd).unwrap_err();
        assert!(matches!(e, PolicyError::NotOnPath { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("command not found") && e.contains("PATH="),
            "{e}"
        );
        assert!(matches!(l.resolve("", cwd), Err(PolicyError::EmptyCommand)));
        assert!(matches!(
            l.resolve("./no-such-file-xyz", cwd),
            Err(PolicyError::NoSuchFile { .. })
        ));
    }

    #[test]
    fn a_symlink_or_copy_elsewhere_is_refused() {
        let p = path();
        let d = tmpdir("bypass");
        std::os::unix::fs::symlink("/bin/sh", d.join("python3")).unwrap();
        std::fs::copy(lookup("sh", Some(&p)).unwrap(), d.join("bash")).unwrap();
        let l = Allowlist::new(&["python3".into(), "bash".into(), "sh".into()], Some(&p));
        for cmd in ["./python3", "./bash"] {
            let e = l.resolve(cmd, &d).unwrap_err();
            assert!(matches!(e, PolicyError::NotAllowed { .. }), "{cmd}: {e:?}");
            assert!(
                e.to_string().contains("not an allowed executable"),
                "{cmd}: {e}"
            );
        }
        let abs = d.join("bash");
        assert!(l.resolve(abs.to_str().unwrap(), Path::new("/")).is_err());
        // The same program through a directory symlink (/bin -> /usr/bin) is the same entry.
        let sh = lookup("sh", Some(&p)).unwrap();
        assert!(l.resolve(sh.to_str().unwrap(), Path::new("/")).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn path_directories_others_can_write_are_skipped() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("groupw");
        let fake = d.join("sh");
        std::fs::write(&fake, "#!/bin/sh\necho pwned\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p =
            std::env::join_paths([d.as_path(), Path::new("/usr/bin"), Path::new("/bin")]).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(lookup("sh", Some(&p)), Some(fake.clone()));
        let l = Allowlist::new(&["sh".into()], Some(&p));
        assert!(
            l.explain()[0].contains("a script run by `/bin/sh`"),
            "{:?}",
            l.explain()
        );
        for mode in [0o775, 0o757, 0o1777] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
            let found = lookup("sh", Some(&p)).unwrap();
            assert_ne!(found, fake, "mode {mode:o}");
            let l = Allowlist::new(&["sh".into()], Some(&p));
            assert_eq!(l.resolve("sh", Path::new("/")).unwrap(), found);
            assert!(
                l.explain()
                    .iter()
                    .any(|e| e.contains("skipped: others can write it")),
                "{:?}",
                l.explain()
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn absolute_entries_match_exactly() {
        let sh = lookup("sh", Some(&path())).unwrap();
        let l = Allowlist::new(&[sh.to_string_lossy().into_owned()], Some(OsStr::new("")));
        assert_eq!(l.resolve(sh.to_str().unwrap(), Path::new("/")).unwrap(), sh);
        assert!(
            l.resolve("sh", Path::new("/")).is_err(),
            "a bare name needs PATH"
        );
    }

    #[test]
    fn environment_is_only_passthrough_plus_agent() {
        let host = |k: &str| match k {
            "PATH" => Some("/usr/bin".to_string()),
            "SECRET" => Some("x".to_string()),
            _ => None,
        };
        let env = environment(
            &["PATH".into(), "HOME".into()],
            &host,
            &[("A".into(), "1".into())],
            &[("SYMBIONT_AGENT", "w")],
        );
        assert_eq!(
            env,
            vec![
                ("PATH".into(), "/usr/bin".into()),
                ("A".into(), "1".into()),
                ("SYMBIONT_AGENT".into(), "w".into())
            ]
        );
    }

    #[test]
    fn code_goes_to_the_interpreter_flag() {
        assert_eq!(
            code_argv("python3", "print(1)"),
            vec!["python3", "-c", "print(1)"]
        );
        assert_eq!(
            code_argv("/usr/bin/node", "1"),
            vec!["/usr/bin/node", "-e", "1"]
        );
        assert_eq!(code_argv("cmd.exe", "dir"), vec!["cmd.exe", "/C", "dir"]);
    }

    #[test]
    fn working_directory_is_created_and_checked() {
        let d = tmpdir("wd").join("a/b");
        let got = prepare_working_directory(&d).unwrap();
        assert!(got.is_dir());
        let f = d.join("file");
        std::fs::write(&f, "").unwrap();
        let e = prepare_working_directory(&f).unwrap_err();
        assert!(
            matches!(
                &e,
                PolicyError::WorkingDirectory {
                    dir,
                    problem: WorkingDirectoryProblem::NotADirectory
                } if *dir == f
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("not a directory"), "{e}");
    }

    #[test]
    fn confinement_follows_level_capabilities_and_floor() {
        use crate::tier::SandboxLevel::*;
        let mut n = crate::config::NativeExecutionConfig::default();
        let home = Path::new("/home/u");
        let caps = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = confinement(&n, "a", Permissive, &[], Some(home)).unwrap();
        assert!(!c.any());
        let c = confinement(&n, "a", Moderate, &[], Some(home)).unwrap();
        assert!(c.writes && c.network && !c.reads && !c.syscalls);
        let c = confinement(&n, "a", Strict, &caps(&["network"]), Some(home)).unwrap();
        assert!(c.writes && c.reads && !c.network && c.syscalls);
        assert!(c.deny_read.contains(&home.join(".ssh")));
        let c = confinement(&n, "a", Strict, &caps(&["local_filesystem"]), Some(home)).unwrap();
        assert!(!c.writes && !c.reads && c.network && c.syscalls);
        // The floor raises the level, and a capability cannot lift what the floor confines.
        n.min_sandbox = Moderate;
        n.deny_read = vec!["~/.secrets".into()];
        let c = confinement(
            &n,
            "a",
            Permissive,
            &caps(&["local_filesystem"]),
            Some(home),
        )
        .unwrap();
        assert_eq!(c.level, Moderate);
        assert!(c.writes && c.network);
        n.min_sandbox = Strict;
        let c = confinement(&n, "a", Permissive, &[], Some(home)).unwrap();
        assert!(c.deny_read.contains(&home.join(".secrets")));
        assert!(matches!(
            confinement(&n, "a", Strict, &[], None),
            Err(PolicyError::NoHome { .. })
        ));
    }
}
