//! Asking systemd for a cgroup of our own: a transient scope with `Delegate=yes`, over D-Bus.
//!
//! On a systemd host an ordinary user owns no cgroup but what the user's manager
//! (`user@UID.service`) delegates, and the cgroup a terminal or an SSH login puts us in is
//! either root's (`session-N.scope`) or shared with other processes. The way out, the one
//! rootless podman and `systemd-run --user --scope -p Delegate=yes` take, is to ask the manager
//! for a scope holding just this process: `org.freedesktop.systemd1.Manager.StartTransientUnit`
//! with `PIDs=[our pid]` and `Delegate=true`. The scope is then ours to divide (see
//! `cgroup.rs`). As root the same request goes to the system manager.
//!
//! The call is made with zbus (a pure-Rust D-Bus client) on a thread of its own with a
//! one-off tokio runtime: callers are often inside the supervisor's runtime, where blocking on
//! another future is not allowed. It costs one connection, `Hello` and one method call.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use zbus::zvariant::Value;

/// How long a connection and a call to systemd may take.
const BUS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long systemd may take to move us into the new scope once it accepted the job.
const MOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether systemd is this host's init (what `sd_booted()` checks).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Whether systemd delegated the cgroup `dir` (it marks such groups with the extended attribute
/// `trusted.delegate`, or `user.delegate` from a user manager, since systemd 251). A group
/// systemd manages but did not delegate is not ours to divide, even where we can write it.
/// A user manager marks nothing (`user.*` attributes need systemd 253 or later); then the unit
/// the group belongs to is asked over D-Bus.
pub fn delegated(dir: &Path) -> bool {
    if marked_delegated(dir) {
        return true;
    }
    let Some(unit) = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.ends_with(".scope") || n.ends_with(".service"))
    else {
        return false;
    };
    unit_delegates(unit, Manager::for_this_user()).unwrap_or(false)
}

fn marked_delegated(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    ["trusted.delegate", "user.delegate"].iter().any(|attr| {
        let name = std::ffi::CString::new(*attr).expect("no NUL in a constant");
        let mut value = [0u8; 8];
        // SAFETY: `path` and `name` are NUL-terminated strings that outlive the call, and the
        // kernel writes at most `value.len()` bytes into `value`, a live local buffer.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        n > 0 && value[0] == b'1'
    })
}

/// Which systemd manager is asked: the user's own, or (as root) the system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    User,
    System,
}

impl Manager {
    pub fn for_this_user() -> Manager {
        if nix::unistd::geteuid().is_root() {
            Manager::System
        } else {
            Manager::User
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Manager::User => "your systemd user manager",
            Manager::System => "the systemd system manager",
        }
    }
}

/// Moves this process into a new transient scope `name` (e.g. `symbiont-123.scope`) with
/// `Delegate=yes`, and waits until the kernel shows it there. Returns the scope's cgroup path
/// (as in `/proc/self/cgroup`), or why it could not.
pub fn move_into_scope(name: &str, manager: Manager) -> Result<String, String> {
    start_transient_scope(name, std::process::id(), manager)?;
    // The job runs after the call returns: the move is seen in /proc once it has.
    let until = Instant::now() + MOVE_TIMEOUT;
    loop {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if let Some(path) =
            super::cgroup::own_path(&own, None).filter(|p| p.ends_with(&format!("/{name}")))
        {
            return Ok(path);
        }
        if Instant::now() >= until {
            return Err(format!(
                "{} accepted the scope {name} but did not move this process into it within {} s",
                manager.describe(),
                MOVE_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether `manager`'s unit `unit` has `Delegate=yes`.
fn unit_delegates(unit: &str, manager: Manager) -> Result<bool, String> {
    let interface = if unit.ends_with(".scope") {
        "org.freedesktop.systemd1.Scope"
    } else {
        "org.freedesktop.systemd1.Service"
    };
    on_bus(manager, |conn| async move {
        let err = |e: zbus::Error| e.to_string();
        let path: zbus::zvariant::OwnedObjectPath = conn
            .call_method(
                Some("org.freedesktop.systemd1"),
                "/org/freedesktop/systemd1",
                Some("org.freedesktop.systemd1.Manager"),
                "GetUnit",
                &(unit,),
            )
            .await
            .map_err(err)?
            .body()
            .deserialize()
            .map_err(err)?;
        let value: zbus::zvariant::OwnedValue = conn
            .call_method(
                Some("org.freedesktop.systemd1"),
                &path,
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(interface, "Delegate"),
            )
            .await
            .map_err(err)?
            .body()
            .deserialize()
            .map_err(err)?;
        bool::try_from(value).map_err(|e| e.to_string())
    })
}

fn start_transient_scope(name: &str, pid: u32, manager: Manager) -> Result<(), String> {
    on_bus(manager, |conn| async move {
        let properties: Vec<(&str, Value<'_>)> = vec![
            (
                "Description",
                Value::from("symbiont supervisor and its agents"),
            ),
            ("PIDs", Value::from(vec![pid])),
            ("Delegate", Value::from(true)),
            // Gone once it is empty, also if something in it failed.
            ("CollectMode", Value::from("inactive-or-failed")),
        ];
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        conn.call_method(
            Some("org.freedesktop.systemd1"),
            "/org/freedesktop/systemd1",
            Some("org.freedesktop.systemd1.Manager"),
            "StartTransientUnit",
            &(name, "fail", properties, aux),
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "{} refused a delegated scope ({})",
                manager.describe(),
                match e {
                    zbus::Error::MethodError(n, Some(m), _) => format!("{n}: {m}"),
                    e => e.to_string(),
                }
            )
        })
    })
}

/// Connects to `manager`'s bus and runs `f` on a thread of its own with a one-off runtime (the
/// caller may be inside the supervisor's runtime, where blocking on a future is not allowed).
fn on_bus<T, F, Fut>(manager: Manager, f: F) -> Result<T, String>
where
    T: Send,
    F: FnOnce(zbus::Connection) -> Fut + Send,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    std::thread::scope(|s| {
        s.spawn(|| on_bus_here(manager, f))
            .join()
            .unwrap_or_else(|_| Err("the D-Bus thread panicked".into()))
    })
}

fn on_bus_here<T, F, Fut>(manager: Manager, f: F) -> Result<T, String>
where
    F: FnOnce(zbus::Connection) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime for D-Bus: {e}"))?;
    // A bus that accepts the connection and never answers must not hold the supervisor's
    // start: it goes on without a delegated scope, and `check` says why.
    let call = async {
        let conn = match manager {
            Manager::User => zbus::Connection::session().await,
            Manager::System => zbus::Connection::system().await,
        }
        .map_err(|e| {
            format!(
                "cannot reach {} over D-Bus ({e}){}",
                manager.describe(),
                match manager {
                    Manager::User if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() =>
                        ": DBUS_SESSION_BUS_ADDRESS is not set (not a login session?)",
                    _ => "",
                }
            )
        })?;
        f(conn).await
    };
    rt.block_on(async {
        tokio::time::timeout(BUS_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{} did not answer over D-Bus within {} s",
                    manager.describe(),
                    BUS_TIMEOUT.as_secs()
                ))
            })
    })
}
