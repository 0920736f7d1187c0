//! Landlock rulesets for the native sandbox (SPEC 3.1), Linux.
//!
//! The rulesets are built here, in the supervisor, and only enforced in the agent's own process
//! between clone and exec (`landlock_restrict_self` on a descriptor it inherits): the child makes
//! one system call per ruleset, whatever the number of rules, so a confined launch costs about
//! what a plain one does.
//!
//! Two layers, each handling its own access rights, so that together they give exactly the level:
//! - the write layer (Moderate and Strict) handles the write rights and allows them beneath the
//!   working directory, the run's own temp directory, the operator's `allow_write` and the
//!   devices every program writes to (`/dev/null`, terminals, `/dev/shm`). Made for each run.
//! - the read layer (Strict) handles the read rights and allows them everywhere except beneath
//!   the deny list. Landlock only allows, so "everything but" is the complement: for each
//!   directory on the way from `/` to a denied path, every other entry is allowed. Listing
//!   directories stays allowed everywhere (names, not contents). The layer is the same for every
//!   Strict run of the supervisor: built once and rebuilt only when a directory on those ways
//!   changes (a new entry in the home directory is then readable too).

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use landlock::{
    AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, ABI,
};

/// The ABI a write layer needs: 3 brings `truncate(2)` under the rules (before it, an agent could
/// empty any file it can reach); 2 brings renames and links across directories.
pub const WRITE_ABI: u32 = 3;
/// The ABI the read layer needs.
pub const READ_ABI: u32 = 1;
/// The ABI whose rulesets can ask for their denials to be logged after exec (audit).
pub const AUDIT_ABI: u32 = 7;
/// `LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON`: denials of the agent (which runs after our exec)
/// reach the audit log, where the host has one.
const LOG_NEW_EXEC_ON: u32 = 1 << 1;
/// `LANDLOCK_CREATE_RULESET_VERSION`.
const CREATE_RULESET_VERSION: u32 = 1 << 0;

/// The Landlock ABI of this kernel, 0 without Landlock. `SYMBIONT_LANDLOCK_ABI` lowers it, to
/// see how a host without Landlock (or with an older one) is treated.
pub fn abi() -> u32 {
    static ABI_VERSION: OnceLock<u32> = OnceLock::new();
    *ABI_VERSION.get_or_init(|| {
        // SAFETY: with a null attribute, size 0 and only the VERSION flag,
        // landlock_create_ruleset reads no memory and returns the ABI version (or -1 where the
        // kernel has no Landlock, or it is disabled).
        let v = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                CREATE_RULESET_VERSION,
            )
        };
        let real = u32::try_from(v).unwrap_or(0);
        match std::env::var("SYMBIONT_LANDLOCK_ABI")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            Some(lower) => real.min(lower),
            None => real,
        }
    })
}

/// The flags every `landlock_restrict_self` of an agent uses.
pub fn restrict_flags() -> u32 {
    if abi() >= AUDIT_ABI {
        LOG_NEW_EXEC_ON
    } else {
        0
    }
}

fn kernel_abi() -> ABI {
    ABI::from(abi() as i32)
}

/// The write rights the write layer handles: all of this ABI's but the ioctls on devices and
/// connecting to Unix sockets by path, which Moderate leaves alone.
fn write_rights(abi: ABI) -> BitFlags<AccessFs> {
    AccessFs::from_write(abi) & !(AccessFs::IoctlDev | AccessFs::ResolveUnix)
}

/// A rule allowing `access` beneath `path` (on a file: the rights a file can have). `None`
/// where the path does not exist.
fn rule(path: &Path, access: BitFlags<AccessFs>, abi: ABI) -> Option<PathBeneath<PathFd>> {
    let meta = std::fs::metadata(path).ok()?;
    let access = if meta.is_dir() {
        access
    } else {
        access & AccessFs::from_file(abi)
    };
    Some(PathBeneath::new(PathFd::new(path).ok()?, access))
}

/// Devices any program may write to, whatever the level.
const WRITABLE_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

/// The write layer of one run: writes only beneath `dirs` (the working and temp directories and
/// the operator's `allow_write`) and to the common devices.
pub fn write_layer(dirs: &[&Path]) -> Result<OwnedFd, String> {
    let abi = kernel_abi();
    let rights = write_rights(abi);
    let fail = |e: &dyn std::fmt::Display| format!("cannot build the Landlock write rules: {e}");
    let mut created = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(rights)
        .map_err(|e| fail(&e))?
        .create()
        .map_err(|e| fail(&e))?;
    for path in dirs.iter().copied() {
        if let Some(r) = rule(path, rights, abi) {
            created = created.add_rule(r).map_err(|e| fail(&e))?;
        }
    }
    for (fd, is_dir) in devices() {
        let access = if *is_dir {
            rights
        } else {
            rights & AccessFs::from_file(abi)
        };
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| fail(&e))?;
    }
    Option::<OwnedFd>::from(created).ok_or_else(|| fail(&"Landlock is not enabled"))
}

/// The common devices (those that exist), opened once (`O_PATH`) and kept for the life of the
/// process: every confined run's write layer names them without opening nine paths again.
fn devices() -> &'static [(PathFd, bool)] {
    static DEVICES: OnceLock<Vec<(PathFd, bool)>> = OnceLock::new();
    DEVICES.get_or_init(|| {
        WRITABLE_DEVICES
            .iter()
            .filter_map(|p| {
                let is_dir = std::fs::metadata(p).ok()?.is_dir();
                Some((PathFd::new(p).ok()?, is_dir))
            })
            .collect()
    })
}

/// The read layer for `deny` (with the exceptions `allow` beneath it), shared by every Strict
/// run while the directories on the way to the denied paths do not change.
pub fn read_layer(deny: &[PathBuf], allow: &[PathBuf]) -> Result<Arc<OwnedFd>, String> {
    struct Cached {
        deny: Vec<PathBuf>,
        allow: Vec<PathBuf>,
        watch: Watch,
        fd: Arc<OwnedFd>,
    }
    static CACHE: Mutex<Option<Cached>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = cache.as_mut() {
        if c.deny == deny && c.allow == allow && c.watch.unchanged() {
            return Ok(c.fd.clone());
        }
    }
    let ancestors = ancestors(deny);
    // Watched before they are read: a change while the layer is built makes the next run
    // build it again.
    let watch = Watch::new(&ancestors);
    let fd = Arc::new(build_read_layer(deny, allow, &ancestors)?);
    *cache = Some(Cached {
        deny: deny.to_vec(),
        allow: allow.to_vec(),
        watch,
        fd: fd.clone(),
    });
    Ok(fd)
}

/// How the read layer's cache learns that a directory on the way to a denied path changed (an
/// entry made, removed or renamed): inotify, so that a Strict launch asks one read of the
/// kernel instead of a `stat` per directory (0.04 ms a launch here); where inotify cannot be
/// had, each directory's modification time.
enum Watch {
    Inotify(nix::sys::inotify::Inotify),
    Stamps(Vec<(PathBuf, Option<SystemTime>)>),
}

impl Watch {
    fn new(dirs: &BTreeSet<PathBuf>) -> Watch {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let watched = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).and_then(|i| {
            let changes = AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_ONLYDIR;
            for d in dirs {
                match i.add_watch(d.as_path(), changes) {
                    // A directory that does not exist yet: its parent is watched too.
                    Ok(_) | Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(i)
        });
        match watched {
            Ok(i) => Watch::Inotify(i),
            Err(e) => {
                tracing::debug!(
                    "no inotify for the Strict read layer ({e}): modification times instead"
                );
                Watch::Stamps(dirs.iter().map(|d| (d.clone(), stamp(d))).collect())
            }
        }
    }

    /// Whether none of the directories changed since the watch began.
    fn unchanged(&mut self) -> bool {
        match self {
            // Any event (a queue overflow included) is a change; EAGAIN is none.
            Watch::Inotify(i) => matches!(i.read_events(), Err(nix::errno::Errno::EAGAIN)),
            Watch::Stamps(s) => s.iter().all(|(p, t)| stamp(p) == *t),
        }
    }
}

fn stamp(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The directories on the way from `/` to each of `deny` (real paths).
fn ancestors(deny: &[PathBuf]) -> BTreeSet<PathBuf> {
    deny.iter()
        .map(|p| real_path(p))
        .flat_map(|d| {
            d.ancestors()
                .skip(1)
                .map(Path::to_path_buf)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `p` with its existing part resolved (symbolic links, `..`), the rest as written: Landlock
/// sees the real hierarchy.
fn real_path(p: &Path) -> PathBuf {
    if let Ok(r) = std::fs::canonicalize(p) {
        return r;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) if parent != p => real_path(parent).join(name),
        _ => p.to_path_buf(),
    }
}

/// The read layer: everything readable but beneath `deny` (save `allow`), by the entries of
/// `ancestors`, the directories on the way to the denied paths.
fn build_read_layer(
    deny: &[PathBuf],
    allow: &[PathBuf],
    ancestors: &BTreeSet<PathBuf>,
) -> Result<OwnedFd, String> {
    let abi = kernel_abi();
    let read = AccessFs::from_read(abi);
    let fail = |e: &dyn std::fmt::Display| format!("cannot build the Landlock read rules: {e}");
    let denied: BTreeSet<PathBuf> = deny.iter().map(|p| real_path(p)).collect();
    let mut created = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(read)
        .map_err(|e| fail(&e))?
        .create()
        .map_err(|e| fail(&e))?;
    // Listing is allowed everywhere: names are not secrets, and tools list their parents.
    let root = PathFd::new("/").map_err(|e| fail(&e))?;
    created = created
        .add_rule(PathBeneath::new(root, AccessFs::ReadDir))
        .map_err(|e| fail(&e))?;
    for dir in ancestors {
        // Inside a denied tree, nothing is allowed.
        if dir.ancestors().any(|a| denied.contains(a)) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if denied.contains(&path) || ancestors.contains(&path) {
                continue;
            }
            // A link is followed to what it names, which has rules of its own (or none).
            if entry.file_type().map(|t| t.is_symlink()).unwrap_or(true) {
                continue;
            }
            if let Some(r) = rule(&path, read, abi) {
                created = created.add_rule(r).map_err(|e| fail(&e))?;
            }
        }
    }
    // The operator's exceptions: a rule beneath a denied directory allows just that.
    for path in allow {
        if let Some(r) = rule(&real_path(path), read, abi) {
            created = created.add_rule(r).map_err(|e| fail(&e))?;
        }
    }
    Option::<OwnedFd>::from(created).ok_or_else(|| fail(&"Landlock is not enabled"))
}

/// Whether this kernel can give the filesystem part of `c`; the reason and the fix where not.
pub fn check(c: &crate::supervisor::Confinement) -> Result<(), String> {
    let have = abi();
    let need = if c.writes { WRITE_ABI } else { READ_ABI };
    if !(c.writes || c.reads) || have >= need {
        return Ok(());
    }
    let what = if c.writes {
        "writes outside the working directory (truncate included)"
    } else {
        "reads of secret locations"
    };
    let have = if have == 0 {
        "this kernel has no Landlock (or it is not enabled: add `landlock` to the lsm= boot parameter)".to_string()
    } else {
        format!("this kernel has Landlock ABI {have}")
    };
    Err(format!(
        "the {} sandbox confines {what}, which needs Landlock ABI {need} (Linux 6.2 or later); \
         {have}. The agent is refused rather than run unconfined: run it on a container tier, \
         give it the `local_filesystem` capability, or use a newer kernel",
        c.level
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_layer_is_built_again_only_when_a_directory_on_the_way_changes() {
        if abi() < READ_ABI {
            eprintln!("SKIPPED: this kernel has no Landlock");
            return;
        }
        // Not in the temp directory: every directory on the way is watched, and other tests
        // make and remove entries there all the time.
        let base = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/lib-tests")
            .join(format!("read-layer-{}", std::process::id()));
        let home = base.join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(home.join("work")).unwrap();
        let home = home.canonicalize().unwrap();
        let deny = vec![home.join(".ssh"), home.join(".config/gcloud")];
        // Cached: the same layer twice in a row (a few tries, should a directory on the way
        // change meanwhile).
        let first = (0..5)
            .find_map(|_| {
                let a = read_layer(&deny, &[]).unwrap();
                Arc::ptr_eq(&a, &read_layer(&deny, &[]).unwrap()).then_some(a)
            })
            .expect("cached");
        // Inside an allowed directory: the layer still holds.
        std::fs::write(home.join("work/f"), "x").unwrap();
        assert!(Arc::ptr_eq(&first, &read_layer(&deny, &[]).unwrap()));
        // A new entry on the way (the home directory), and a missing directory on the way made:
        // each time, built again, then cached again.
        let mut last = first;
        for change in [home.join("new-file"), home.join(".config")] {
            if change.ends_with(".config") {
                std::fs::create_dir(&change).unwrap();
            } else {
                std::fs::write(&change, "x").unwrap();
            }
            let again = read_layer(&deny, &[]).unwrap();
            assert!(!Arc::ptr_eq(&last, &again), "{} was seen", change.display());
            assert!(Arc::ptr_eq(&again, &read_layer(&deny, &[]).unwrap()));
            last = again;
        }
        // Another deny list is another layer.
        assert!(!Arc::ptr_eq(&last, &read_layer(&deny[..1], &[]).unwrap()));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_missing_path_resolves_through_its_existing_parent() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let p = dir.join("symbiont-no-such-dir").join("x");
        assert_eq!(real_path(&p), p);
    }
}
