//! The container runner: Tier1 (Docker's default runtime) and Tier2 (gVisor's `runsc`) through
//! the Docker Engine API, so dockerd and podman's compatible socket both work.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};

use crate::supervisor::{LaunchError, Limits};
use crate::tier::SecurityTier;

/// Every container carries these labels, so leftovers of a dead supervisor can be found.
pub const LABEL_SUPERVISOR: &str = "symbiont.supervisor";
pub const LABEL_PID: &str = "symbiont.pid";
pub const LABEL_RUN: &str = "symbiont.run";

/// Where agents' working directories appear inside their containers.
pub const WORKDIR: &str = "/work";

/// Within this long a missing daemon is reported, not waited for.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a Docker-compatible daemon.
#[derive(Debug, Clone)]
pub struct ContainerRuntime {
    docker: Docker,
    /// Where the daemon was reached, for messages.
    pub host: String,
}

/// One container to run.
#[derive(Debug, Clone)]
pub struct ContainerSpec<'a> {
    pub name: String,
    pub image: &'a str,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    /// Mounted at [`WORKDIR`].
    pub workdir: &'a Path,
    pub limits: &'a Limits,
    pub tier: SecurityTier,
    pub network: bool,
    /// Moderate and Strict: the root filesystem read-only, the working directory and a
    /// private `/tmp` writable.
    pub read_only: bool,
    pub labels: HashMap<String, String>,
    /// Copied into the container's standard input (which is closed at its end); none leaves
    /// the container without one.
    pub stdin: Option<&'a std::fs::File>,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerExit {
    pub code: i64,
    pub oom_killed: bool,
}

/// One chunk of a container's output.
pub enum Output {
    Stdout(bytes::Bytes),
    Stderr(bytes::Bytes),
}

fn fix_for_daemon(host: &str) -> String {
    format!(
        "no container daemon answers at {host}. Start dockerd (or `podman system service`), or point DOCKER_HOST \
         (or containers.docker_host in the config) at its socket; this project's scripts/container-runtime starts a private one"
    )
}

impl ContainerRuntime {
    /// Connects to `docker_host` (a `unix://` path or `tcp://` address), else `$DOCKER_HOST`,
    /// else the standard socket, and checks within a bounded time that the daemon answers.
    pub async fn connect(docker_host: Option<&str>) -> Result<ContainerRuntime, String> {
        let host = docker_host
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| {
                if cfg!(windows) {
                    "npipe:////./pipe/docker_engine"
                } else {
                    "unix:///var/run/docker.sock"
                }
                .to_string()
            });
        #[cfg(unix)]
        let local = host.starts_with("unix://") || host.starts_with('/');
        #[cfg(windows)]
        let local = host.starts_with("npipe://");
        let docker = if local {
            #[cfg(unix)]
            let d = Docker::connect_with_unix(&host, 120, bollard::API_DEFAULT_VERSION);
            #[cfg(windows)]
            let d = Docker::connect_with_named_pipe(&host, 120, bollard::API_DEFAULT_VERSION);
            d
        } else {
            Docker::connect_with_http(&host, 120, bollard::API_DEFAULT_VERSION)
        }
        .map_err(|e| format!("{} ({e})", fix_for_daemon(&host)))?;
        match tokio::time::timeout(CONNECT_TIMEOUT, docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("{} ({e})", fix_for_daemon(&host))),
            Err(_) => {
                return Err(format!(
                    "{} (no answer within {}s)",
                    fix_for_daemon(&host),
                    CONNECT_TIMEOUT.as_secs()
                ))
            }
        }
        // Speak the daemon's API version (dockerd 20.10 and podman serve 1.41).
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        Ok(ContainerRuntime { docker, host })
    }

    /// Refuses, with what is missing and how to get it, a tier or image this daemon cannot run.
    pub async fn preflight(
        &self,
        agent: &str,
        tier: SecurityTier,
        image: &str,
    ) -> Result<(), LaunchError> {
        if tier == SecurityTier::Tier2 {
            let info = self
                .docker
                .info()
                .await
                .map_err(|e| LaunchError::DaemonUnreachable {
                    agent: agent.into(),
                    tier,
                    message: format!("{}: {e}", self.host),
                })?;
            let has = info
                .runtimes
                .as_ref()
                .is_some_and(|r| r.contains_key("runsc"));
            if !has {
                return Err(LaunchError::RuntimeMissing {
                    agent: agent.into(),
                    message: format!(
                    "tier Tier2 (gvisor) needs the `runsc` runtime, which the daemon at {} does not have: install gVisor \
                     (Debian: apt-get install runsc) and register it in daemon.json as \
                     \"runtimes\": {{\"runsc\": {{\"path\": \"/usr/bin/runsc\", \"runtimeArgs\": [\"--network=none\"]}}}}",
                    self.host
                ),
                });
            }
        }
        if self.docker.inspect_image(image).await.is_err() {
            return Err(LaunchError::ImageMissing {
                agent: agent.into(),
                image: image.into(),
                message: format!(
                "image `{image}` is not on the daemon at {}: pull it (docker pull {image}) or import it (docker import); \
                 choose the image with `security {{ image: \"...\" }}`, --image or containers.default_image",
                self.host
            ),
            });
        }
        Ok(())
    }

    /// Creates and starts a container. Returns its id and the host pid of its first process.
    pub async fn start(&self, c: &ContainerSpec<'_>) -> Result<(String, Option<i64>), String> {
        let mb = |b: u64| b as i64;
        // gVisor's own threads count against the pids limit: below 256 it cannot start.
        let pids = c.limits.max_processes.map(|p| {
            if c.tier == SecurityTier::Tier2 {
                (p as i64).max(256)
            } else {
                p as i64
            }
        });
        let host = HostConfig {
            memory: c.limits.memory_bytes.map(mb),
            memory_swap: c.limits.memory_bytes.map(mb),
            nano_cpus: c.limits.cpu_cores.map(|x| (x * 1e9) as i64),
            pids_limit: pids,
            network_mode: Some(if c.network { "default" } else { "none" }.to_string()),
            binds: Some(vec![format!("{}:{WORKDIR}", c.workdir.display())]),
            readonly_rootfs: c.read_only.then_some(true),
            tmpfs: c
                .read_only
                .then(|| HashMap::from([("/tmp".to_string(), "rw,nosuid,nodev".to_string())])),
            runtime: (c.tier == SecurityTier::Tier2).then(|| "runsc".to_string()),
            ulimits: c.limits.file_size_bytes.map(|b| {
                vec![bollard::models::ResourcesUlimits {
                    name: Some("fsize".into()),
                    soft: Some(b as i64),
                    hard: Some(b as i64),
                }]
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(c.image.to_string()),
            cmd: Some(c.argv.to_vec()),
            env: Some(c.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: Some(WORKDIR.to_string()),
            labels: Some(c.labels.clone()),
            host_config: Some(host),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(c.stdin.is_some()),
            attach_stdin: Some(c.stdin.is_some()),
            stdin_once: Some(c.stdin.is_some()),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&c.name)
            .build();
        let created = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| format!("create: {e}"))?;
        let id = created.id;
        if let Some(f) = c.stdin {
            if let Err(e) = self.feed_stdin(&id, f).await {
                self.remove(&id).await;
                return Err(format!("attach stdin: {e}"));
            }
        }
        if let Err(e) = self.docker.start_container(&id, None).await {
            self.remove(&id).await;
            return Err(format!("start: {e}"));
        }
        let pid = self
            .docker
            .inspect_container(&id, None)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.pid);
        Ok((id, pid.filter(|&p| p > 0)))
    }

    /// Attaches to the created container's stdin and copies `f` into it in the background,
    /// closing it at the end of `f`.
    async fn feed_stdin(&self, id: &str, f: &std::fs::File) -> Result<(), String> {
        let opts = AttachContainerOptions {
            stdin: true,
            stream: true,
            ..Default::default()
        };
        let attached = self
            .docker
            .attach_container(id, Some(opts))
            .await
            .map_err(|e| e.to_string())?;
        let mut from = tokio::fs::File::from_std(f.try_clone().map_err(|e| e.to_string())?);
        let mut input = attached.input;
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // Ends when the container stops reading: nobody is left to tell.
            let _ = tokio::io::copy(&mut from, &mut input).await;
            let _ = input.shutdown().await;
        });
        Ok(())
    }

    /// The container's output from its start, until it ends.
    pub fn output(&self, id: &str) -> impl Stream<Item = Output> + use<> {
        let opts = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        self.docker
            .logs(id, Some(opts))
            .filter_map(|item| async move {
                match item {
                    Ok(bollard::container::LogOutput::StdOut { message }) => {
                        Some(Output::Stdout(message))
                    }
                    Ok(bollard::container::LogOutput::StdErr { message }) => {
                        Some(Output::Stderr(message))
                    }
                    Ok(bollard::container::LogOutput::Console { message }) => {
                        Some(Output::Stdout(message))
                    }
                    _ => None,
                }
            })
    }

    /// Waits for the container to stop; an exit code comes back as a normal result.
    pub async fn wait(&self, id: &str) -> Result<ContainerExit, String> {
        let mut s = self.docker.wait_container(id, None);
        let code = match s.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(format!("wait: {e}")),
            None => return Err("wait: the daemon closed the stream".into()),
        };
        let oom = self
            .docker
            .inspect_container(id, None)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false);
        Ok(ContainerExit {
            code,
            oom_killed: oom,
        })
    }

    /// Sends a signal to the container's first process (SIGKILL stops it at once: a busybox
    /// `sh` as PID 1 ignores SIGTERM).
    pub async fn kill(&self, id: &str, signal: &str) {
        let opts = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        // A container that has stopped already cannot be signalled: the wait sees its end.
        if let Err(e) = self.docker.kill_container(id, Some(opts)).await {
            tracing::debug!("container {id}: cannot send {signal}: {e}");
        }
    }

    /// Freezes or thaws every process of the container.
    pub async fn pause(&self, id: &str, paused: bool) -> bool {
        if paused {
            self.docker.pause_container(id).await.is_ok()
        } else {
            self.docker.unpause_container(id).await.is_ok()
        }
    }

    /// Removes the container, stopping it first if needed.
    pub async fn remove(&self, id: &str) {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => tracing::warn!("cannot remove the container {id}: {e}"),
        }
    }

    /// Removes every container labelled by a supervisor that is no longer alive (or, with
    /// `own`, by this one). Returns how many were removed.
    pub async fn sweep(&self, own: Option<&str>) -> usize {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![LABEL_SUPERVISOR.to_string()]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = match self.docker.list_containers(Some(opts)).await {
            Ok(list) => list,
            Err(e) => {
                tracing::debug!("no sweep of stale containers: cannot list them: {e}");
                return 0;
            }
        };
        let mut n = 0;
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let sup = labels.get(LABEL_SUPERVISOR).cloned().unwrap_or_default();
            let pid: i32 = labels
                .get(LABEL_PID)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let dead = pid <= 0 || !Path::new(&format!("/proc/{pid}")).exists();
            if dead || own == Some(sup.as_str()) {
                if let Some(id) = c.id {
                    self.remove(&id).await;
                    n += 1;
                }
            }
        }
        n
    }

    /// The ids of this supervisor's containers that still exist.
    pub async fn list_own(&self, supervisor: &str) -> Vec<String> {
        let mut filters = HashMap::new();
        filters.insert(
            "label".to_string(),
            vec![format!("{LABEL_SUPERVISOR}={supervisor}")],
        );
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(opts))
            .await
            .map(|l| l.into_iter().filter_map(|c| c.id).collect())
            .unwrap_or_default()
    }
}
