//! The `symbiont` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use symbiont::config::{self, LoadedConfig};
use symbiont::headless;
use symbiont::plan::{self, Flags, Host, SourceFile};
use symbiont::supervisor::{Event, RunRecord, Supervisor, SupervisorOptions};
use symbiont::tier::SecurityTier;

#[derive(Parser, Debug)]
#[command(
    name = "symbiont",
    version,
    about = "Run AI agents and scripts on a security tier, with enforced limits and a kill that leaves nothing behind"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load agent files, fire their triggers and supervise the runs.
    Run(RunArgs),
    /// Run one command under the same policy and limits, and print its result.
    Exec(ExecArgs),
    /// Validate the configuration and agent files; print every effective setting and its origin.
    Check(CheckArgs),
    /// Open the dashboard with no agent started; launch agents from it.
    Dashboard(DashboardArgs),
}

#[derive(Args, Debug)]
struct DashboardArgs {
    /// Agent files whose agents the launch dialog offers (none is started).
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    policy: PolicyArgs,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        Ok(_) => Err("must be a positive number".into()),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

#[derive(Args, Debug, Clone)]
struct PolicyArgs {
    /// Run on tier None: a plain host process, no isolation (the operator's consent to native execution).
    #[arg(long)]
    native: bool,
    /// The security tier: none|native, tier1|docker, tier2|gvisor, tier3|firecracker.
    #[arg(long = "sandbox-tier", value_name = "TIER", value_parser = |s: &str| s.parse::<SecurityTier>().map_err(|e| e.to_string()))]
    sandbox_tier: Option<SecurityTier>,
    /// Container image for container tiers.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Memory limit of each agent's whole process tree, in MB.
    #[arg(long = "max-memory", value_name = "MB", value_parser = clap::value_parser!(u64).range(1..))]
    max_memory: Option<u64>,
    /// CPU bandwidth limit, in cores (e.g. 1.5).
    #[arg(long = "max-cpu", value_name = "CORES", value_parser = positive_f64)]
    max_cpu: Option<f64>,
    /// Wall-clock timeout, in seconds.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// The configuration file (else $SYMBIONT_CONFIG, else ./config.toml, else defaults).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

impl PolicyArgs {
    fn flags(&self, triggers: Vec<String>) -> Flags {
        Flags {
            native: self.native,
            sandbox_tier: self.sandbox_tier,
            image: self.image.clone(),
            max_memory_mb: self.max_memory,
            max_cpu: self.max_cpu,
            timeout: self.timeout,
            triggers,
        }
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Agent files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Fire only this trigger (repeatable); default: every `on start` and `on trigger` block.
    #[arg(long = "trigger", value_name = "NAME")]
    triggers: Vec<String>,
    /// No dashboard: one line per event and a summary table.
    #[arg(long)]
    headless: bool,
    /// JSON Lines events and a final JSON array of run records (implies --headless).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ExecArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// Code for `native_execution.default_executable` (bash -c, python3 -c, node -e ...) instead of a command.
    #[arg(long, value_name = "CODE", conflicts_with = "command")]
    code: Option<String>,
    /// Print the run record as JSON.
    #[arg(long)]
    json: bool,
    /// The command and its arguments (after --).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// The configuration file.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    #[arg(long)]
    native: bool,
    /// Agent files to validate.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// A failure before anything ran: printed with its location, exit code 2.
struct Usage(String);

impl From<config::ConfigError> for Usage {
    fn from(e: config::ConfigError) -> Self {
        Usage(e.to_string())
    }
}

impl From<plan::PlanError> for Usage {
    fn from(e: plan::PlanError) -> Self {
        Usage(e.0)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("symbiont: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Run(a) => cmd_run(a).await,
            Command::Exec(a) => cmd_exec(a).await,
            Command::Check(a) => cmd_check(a),
            Command::Dashboard(a) => cmd_dashboard(a).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Usage(m)) => {
            eprintln!("symbiont: {m}");
            ExitCode::from(2)
        }
    }
}

fn load_files(paths: &[PathBuf]) -> Result<Vec<SourceFile>, Usage> {
    paths
        .iter()
        .map(|f| SourceFile::load(f).map_err(Usage::from))
        .collect()
}

fn load_config(path: Option<&std::path::Path>, flags: &Flags) -> Result<LoadedConfig, Usage> {
    let mut loaded = config::load(path)?;
    flags.apply(&mut loaded);
    Ok(loaded)
}

fn start_supervisor(loaded: &LoadedConfig) -> Result<Supervisor, Usage> {
    let mut opts = SupervisorOptions::from_config(&loaded.config);
    opts.own_all_children = true;
    Supervisor::new(opts).map_err(|e| Usage(format!("cannot start the supervisor: {e}")))
}

/// Waits for every run, printing events; stops them all on SIGINT, SIGTERM or SIGHUP.
/// Prints events until every run has ended (judged by the runs themselves, not by counting
/// events, which a lagging channel may drop); stops them all on SIGINT, SIGTERM or SIGHUP.
async fn supervise(
    sup: &Supervisor,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    json: bool,
) -> Vec<Arc<RunRecord>> {
    let mut stop = symbiont::stop::StopSignals::new().ok();
    let mut stopping = false;
    let all = sup.wait_all();
    tokio::pin!(all);
    let records = loop {
        let stop = async {
            match stop.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut all => break r,
            e = events.recv() => match e {
                Ok(e) => headless::print_event(&e, json),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    if !json {
                        eprintln!("symbiont: {n} events were not shown (output too slow)");
                    }
                }
                Err(_) => {}
            },
            _ = stop, if !stopping => {
                stopping = true;
                if !json {
                    eprintln!("symbiont: stopping every agent");
                }
                for id in sup.run_ids() {
                    sup.kill(id);
                }
            }
        }
    };
    // The last events (the final exits) may still be queued.
    while let Ok(e) = events.try_recv() {
        headless::print_event(&e, json);
    }
    records
}

async fn cmd_run(a: RunArgs) -> Result<u8, Usage> {
    let flags = a.policy.flags(a.triggers.clone());
    let loaded = load_config(a.policy.config.as_deref(), &flags)?;
    let files = load_files(&a.files)?;
    let specs = plan::plan_runs(&loaded, &flags, &files, &Host::real())?;
    if specs.is_empty() {
        return Err(Usage(
            "nothing to run: no agent has an `on start` or `on trigger` block with a statement"
                .into(),
        ));
    }
    let json = a.json;
    let sup = start_supervisor(&loaded)?;
    sup.preflight(&specs)
        .await
        .map_err(|e| Usage(e.to_string()))?;
    if !a.headless && !json && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let all = plan::plan_runs(
            &loaded,
            &Flags {
                triggers: Vec::new(),
                ..flags.clone()
            },
            &files,
            &Host::real(),
        )?;
        let records = dashboard(sup, &loaded, &flags, specs, all).await?;
        return Ok(exit_code(&records));
    }
    let events = sup.subscribe();
    for spec in specs {
        if let Err(e) = sup.launch(spec) {
            sup.shutdown().await;
            return Err(Usage(e.to_string()));
        }
    }
    let records = supervise(&sup, events, json).await;
    if json {
        println!(
            "{}",
            serde_json::to_string(&records.iter().map(|r| &**r).collect::<Vec<_>>())
                .unwrap_or_default()
        );
    } else {
        println!();
        print!("{}", headless::summary(&records));
        println!("audit log: {}", sup.audit_path().display());
    }
    Ok(exit_code(&records))
}

fn exit_code(records: &[Arc<RunRecord>]) -> u8 {
    if records.iter().all(|r| r.success()) {
        0
    } else {
        1
    }
}

/// Opens the dashboard: `initial` starts at once, `offered` fills the launch dialog.
async fn dashboard(
    sup: Supervisor,
    loaded: &LoadedConfig,
    flags: &Flags,
    initial: Vec<symbiont::supervisor::RunSpec>,
    offered: Vec<symbiont::supervisor::RunSpec>,
) -> Result<Vec<Arc<RunRecord>>, Usage> {
    use symbiont::tui::{app::App, app::Launchable, keymap::Keymap, Dashboard};
    let c = &loaded.config;
    let keymap = Keymap::new(&c.dashboard.keys).map_err(Usage)?;
    let app = App::new(
        keymap,
        c.dashboard.warn_ratio,
        c.dashboard.critical_ratio,
        std::time::Duration::from_millis(c.dashboard.refresh_ms),
    );
    let launchables = offered
        .into_iter()
        .map(|s| {
            (
                Launchable {
                    agent: s.agent.clone(),
                    trigger: s.trigger.clone(),
                    tier: s.tier,
                },
                s,
            )
        })
        .collect();
    let (loaded2, flags2) = (loaded.clone(), flags.clone());
    let plan_command = Box::new(move |command: &str, tier: SecurityTier| {
        let argv = shell_words::split(command).map_err(|e| format!("command: {e}"))?;
        let f = Flags {
            sandbox_tier: Some(tier),
            native: false,
            ..flags2.clone()
        };
        let name = argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
            .unwrap_or_default();
        let mut spec =
            plan::plan_command(&loaded2, &f, argv, &[], &Host::real()).map_err(|e| e.0)?;
        // The row is named after the command; the agent's environment says the same.
        spec.agent = format!("cmd:{name}");
        spec.trigger = "command".into();
        for (k, v) in &mut spec.env {
            match k.as_str() {
                "SYMBIONT_AGENT" => *v = spec.agent.clone(),
                "SYMBIONT_TRIGGER" => *v = spec.trigger.clone(),
                _ => {}
            }
        }
        Ok(spec)
    });
    let d = Dashboard {
        supervisor: sup,
        initial,
        launchables,
        plan_command,
        app,
    };
    d.run().await.map_err(|e| Usage(format!("dashboard: {e}")))
}

async fn cmd_dashboard(a: DashboardArgs) -> Result<u8, Usage> {
    let flags = a.policy.flags(Vec::new());
    let loaded = load_config(a.policy.config.as_deref(), &flags)?;
    let files = load_files(&a.files)?;
    let offered = if files.is_empty() {
        Vec::new()
    } else {
        plan::plan_runs(&loaded, &flags, &files, &Host::real())?
    };
    let sup = start_supervisor(&loaded)?;
    let records = dashboard(sup, &loaded, &flags, Vec::new(), offered).await?;
    Ok(exit_code(&records))
}

async fn cmd_exec(a: ExecArgs) -> Result<u8, Usage> {
    let flags = a.policy.flags(Vec::new());
    let loaded = load_config(a.policy.config.as_deref(), &flags)?;
    let argv = match (&a.code, a.command.is_empty()) {
        (Some(code), _) => {
            symbiont::policy::code_argv(&loaded.config.native_execution.default_executable, code)
        }
        (None, false) => a.command.clone(),
        (None, true) => {
            return Err(Usage(
                "exec needs a command after `--` (or --code CODE)".into(),
            ))
        }
    };
    let spec = plan::plan_command(&loaded, &flags, argv, &[], &Host::real())?;
    let sup = start_supervisor(&loaded)?;
    sup.preflight(std::slice::from_ref(&spec))
        .await
        .map_err(|e| Usage(e.to_string()))?;
    let events = sup.subscribe();
    sup.launch(spec).map_err(|e| Usage(e.to_string()))?;
    // Events go to stderr here: stdout is the command's own output.
    let records = {
        let mut ev = events;
        let sup_ref = &sup;
        let forward = async {
            while let Ok(e) = ev.recv().await {
                if !a.json && !matches!(e, Event::Launched { .. } | Event::Exited { .. }) {
                    eprintln!("{}", headless::event_line(&e, false));
                }
                if matches!(e, Event::Exited { .. }) {
                    break;
                }
            }
        };
        tokio::select! {
            _ = forward => {}
            _ = tokio::signal::ctrl_c() => { for s in sup_ref.snapshot() { sup_ref.kill(s.id); } }
        }
        sup.wait_all().await
    };
    let Some(r) = records.first() else {
        return Ok(1);
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&**r).unwrap_or_default());
    } else {
        use std::io::Write;
        let out = std::fs::read(&r.stdout_log).unwrap_or_default();
        let err = std::fs::read(&r.stderr_log).unwrap_or_default();
        let _ = std::io::stdout().write_all(&out);
        let _ = std::io::stderr().write_all(&err);
        if !r.success() && r.reason != symbiont::supervisor::Reason::Exited {
            eprintln!(
                "symbiont: {} ({}){}",
                r.reason.as_str(),
                r.signal.as_deref().unwrap_or("-"),
                r.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(match (r.reason, r.exit_code) {
        (symbiont::supervisor::Reason::Exited, Some(c)) => c.clamp(0, 255) as u8,
        _ => 1,
    })
}

fn cmd_check(a: CheckArgs) -> Result<u8, Usage> {
    let flags = Flags {
        native: a.native,
        ..Flags::default()
    };
    let loaded = load_config(a.config.as_deref(), &flags)?;
    println!(
        "config file: {}",
        loaded
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none (built-in defaults)".into())
    );
    print!("{}", loaded.render_effective());
    let files = load_files(&a.files)?;
    for f in &files {
        println!(
            "agent file {}: {} agent(s)",
            f.file.path.display(),
            f.file.agents.len()
        );
        for ag in &f.file.agents {
            let triggers: Vec<&str> = ag.handlers.iter().map(|h| h.kind.name()).collect();
            let tier = ag
                .tier
                .map(|(t, _)| t)
                .unwrap_or(loaded.config.security.default_sandbox_tier);
            println!(
                "  {} tier={} triggers=[{}]",
                ag.name,
                tier,
                triggers.join(", ")
            );
        }
    }
    if !files.is_empty() {
        plan::plan_runs(&loaded, &flags, &files, &Host::real())?;
    }
    let rt = tokio::runtime::Handle::current();
    let _g = rt.enter();
    println!("enforcement on this machine:");
    match Supervisor::new(SupervisorOptions::from_config(&loaded.config)) {
        Ok(s) => {
            for m in s.mechanisms() {
                println!("  {m}");
            }
        }
        Err(e) => println!("  supervisor cannot start: {e}"),
    }
    println!("ok");
    Ok(0)
}
