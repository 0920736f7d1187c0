//! The `symbiont` command: parses its arguments, plans, and hands the runs to a client (the
//! headless printer or the dashboard), whose exit status it returns.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use symbiont::config::{self, LoadedConfig};
use symbiont::headless;
use symbiont::plan::{self, Flags, Host, SourceFile};
use symbiont::report::exit_code;
use symbiont::supervisor::{LaunchError, RunSpec, Supervisor, SupervisorOptions};
use symbiont::tier::SecurityTier;
use symbiont::tui::Dashboard;

#[derive(Parser, Debug)]
#[command(
    name = "symbiont",
    version,
    about = "Run AI agents and scripts on a security tier, with enforced limits and a kill that leaves nothing behind",
    after_help = "The diagnostic log (warnings by default; -v, -q, SYMBIONT_LOG) goes to stderr; while the dashboard \
                  shows (dashboard, run, attach), to symbiont.log in the data directory \
                  (supervisor.data_dir, by default ~/.local/state/symbiont/symbiont.log)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More of the diagnostic log: -v what symbiont does, -vv its details (cgroups, kills,
    /// clean-up). SYMBIONT_LOG (e.g. `symbiont=debug`) chooses in env-filter syntax.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors in the diagnostic log, no warnings.
    #[arg(short = 'q', long = "quiet", global = true)]
    quiet: bool,
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
    /// Run this user's service in the foreground: agents handed to it outlive the terminal that
    /// asked for them (`run --detach`, `exec`), and `ps`, `kill`, `logs`, `history`, `attach`
    /// reach them from any shell. Stops every agent on SIGTERM, SIGINT, SIGHUP or `shutdown`.
    Serve {
        /// The configuration file (else $SYMBIONT_CONFIG, else ./config.toml, else defaults).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// The dashboard on the service's agents: quitting leaves them running (the quit dialog
    /// offers to stop them instead).
    Attach {
        /// The configuration file for the dashboard's keys and colours (else $SYMBIONT_CONFIG,
        /// else ./config.toml, else defaults).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// List the service's runs: agent, run id, state, pid, CPU, memory, elapsed, reason, command.
    Ps {
        /// A JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Signal a run of the service, whole tree (as the dashboard's kill).
    Kill {
        /// A run id, or an agent name (every live run of it).
        #[arg(value_name = "TARGET")]
        target: String,
        /// TERM (KILL after the grace period), KILL, INT, HUP, STOP or CONT.
        #[arg(long, short = 's', value_name = "NAME")]
        signal: Option<String>,
    },
    /// Print a run's logs (the latest run of an agent), live or ended, this service's or an
    /// earlier one's.
    Logs {
        /// A run id, or an agent name (its latest run).
        #[arg(value_name = "TARGET")]
        target: String,
        /// Keep printing new output until the run ends.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Which stream: stdout, stderr or both.
        #[arg(long, value_name = "STREAM", default_value = "both", value_parser = ["stdout", "stderr", "both"])]
        stream: String,
    },
    /// The records of ended runs, kept beside their logs (they survive the service).
    History {
        /// A JSON array of run records instead of the table.
        #[arg(long)]
        json: bool,
        /// Only the newest N.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Stop every agent of the service, then the service.
    Shutdown,
    /// Print the completion script for a shell (e.g. `symbiont completions bash > /etc/bash_completion.d/symbiont`).
    Completions {
        /// The shell: bash, zsh, fish, powershell or elvish.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; `symbiont man | man -l -`), or write one page per command.
    Man {
        /// Write symbiont.1 and one page per subcommand (symbiont-run.1 ...) into DIR instead.
        #[arg(long = "out-dir", value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Internal: what the guardian runs once its supervisor died (kills every process whose
    /// environment carries a `SYMBIONT_RUN` marker starting with PREFIX).
    #[command(name = "__sweep", hide = true)]
    Sweep {
        /// The marker prefix of the dead supervisor's runs.
        prefix: String,
    },
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

/// `--timeout`: a duration as agent files write it, in whole seconds (the configuration's unit).
fn timeout_secs(s: &str) -> Result<u64, String> {
    // A bare number is seconds, up to u64::MAX (in milliseconds it would not fit).
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u64>() {
            Ok(0) => Err(format!("`{s}` is not a positive duration")),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("`{s}` is too large")),
        };
    }
    let d = symbiont::dsl::parse_duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err(format!(
            "`{s}` is not a whole number of seconds (the timeout's unit)"
        ));
    }
    Ok(d.as_secs())
}

#[derive(Args, Debug, Clone)]
struct PolicyArgs {
    /// Run on tier None: a plain host process, no isolation (the operator's consent to native execution).
    #[arg(long)]
    native: bool,
    /// The security tier: none|native, tier1|docker, tier2|gvisor, tier3|microvm|firecracker.
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
    /// Wall-clock timeout, as in agent files: 30s, 5m, 1h, or a number of seconds.
    #[arg(long, value_name = "DURATION", value_parser = timeout_secs)]
    timeout: Option<u64>,
    /// The configuration file (else $SYMBIONT_CONFIG, else ./config.toml, else defaults).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

impl PolicyArgs {
    fn flags(&self) -> Flags {
        Flags {
            native: self.native,
            sandbox_tier: self.sandbox_tier,
            image: self.image.clone(),
            max_memory_mb: self.max_memory,
            max_cpu: self.max_cpu,
            timeout: self.timeout,
            pass_env: Vec::new(),
            sandbox: None,
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
    /// Pass the host variable NAME to the agents (repeatable), e.g. an API key; its value is masked in logs.
    #[arg(long = "pass-env", value_name = "NAME")]
    pass_env: Vec<String>,
    /// Fire only this trigger (repeatable); default: every `on start` and `on trigger` block.
    #[arg(long = "trigger", value_name = "NAME")]
    triggers: Vec<String>,
    /// No dashboard: one line per event and a summary table.
    #[arg(long)]
    headless: bool,
    /// JSON Lines events and a final JSON array of run records (implies --headless).
    #[arg(long)]
    json: bool,
    /// Hand the agents to this user's service (starting it if needed) and return: they outlive
    /// this terminal; `symbiont ps`, `logs`, `kill` and `attach` reach them.
    #[arg(long, conflicts_with_all = ["headless", "json"])]
    detach: bool,
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
    /// Pass the host variable NAME to the command (repeatable), e.g. an API key; its value is masked in logs.
    #[arg(long = "pass-env", value_name = "NAME")]
    pass_env: Vec<String>,
    /// The command's sandbox level: Permissive, Moderate (writes only in the working and temp
    /// directories, no network) or Strict (also no reads of secrets, ptrace or io_uring); never
    /// below native_execution.min_sandbox.
    #[arg(long, value_name = "LEVEL")]
    sandbox: Option<symbiont::SandboxLevel>,
    /// Run in this process even when this user's service runs (by default the command goes
    /// through the service, so it shows in `ps` and the dashboard).
    #[arg(long)]
    standalone: bool,
    /// The command and its arguments (after --).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// The configuration file (else $SYMBIONT_CONFIG, else ./config.toml, else defaults).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Check as `run --native` would: native execution allowed (the operator's consent).
    #[arg(long)]
    native: bool,
    /// One JSON object instead of the text: the config file, every setting with its value and
    /// origin, the agents and the enforcement on this machine.
    #[arg(long)]
    json: bool,
    /// Agent files to validate.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// A failure before anything ran, as printed (a message after `symbiont: `, or a report that
/// points into a file); exit code 2 for bad usage, config or agent files, 1 for what the host
/// refused (`Usage::failed`).
struct Usage(String, u8);

impl Usage {
    fn bad(m: String) -> Usage {
        Usage(format!("symbiont: {m}"), 2)
    }

    fn failed(m: String) -> Usage {
        Usage(format!("symbiont: {m}"), 1)
    }

    /// A report rendered by `symbiont::diagnostic` (it starts with `error:`), exit code 2.
    fn report(m: String) -> Usage {
        Usage(m.trim_end().to_string(), 2)
    }
}

impl From<config::ConfigError> for Usage {
    fn from(e: config::ConfigError) -> Self {
        match e.location() {
            Some(_) => Usage::report(e.render(symbiont::diagnostic::use_color())),
            None => Usage::bad(e.to_string()),
        }
    }
}

impl From<plan::PlanError> for Usage {
    fn from(e: plan::PlanError) -> Self {
        match e.diagnostic() {
            Some(_) => Usage::report(e.render(symbiont::diagnostic::use_color())),
            None => Usage::bad(e.to_string()),
        }
    }
}

impl From<LaunchError> for Usage {
    fn from(e: LaunchError) -> Self {
        // The audit log or the run's logs could not be written (a full or failing disk):
        // nothing about the command line was wrong.
        match e {
            LaunchError::Audit { .. } | LaunchError::LogDirectory { .. } => {
                Usage::failed(e.to_string())
            }
            e => Usage::bad(e.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // `exec` keeps 125 for its own bad usage (env(1)): 1 and 2 are its command's.
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ if std::env::args().nth(1).as_deref() == Some("exec") => EXEC_FAILED,
                _ => 2,
            };
            return ExitCode::from(code);
        }
    };
    // The service's log (its service.log when detached) wants the time of each line.
    let timestamps = matches!(cli.command, Command::Serve { .. });
    symbiont::logging::install(cli.verbose, cli.quiet, timestamps);
    match &cli.command {
        Command::Sweep { prefix } => {
            symbiont::process::sweep(prefix);
            return ExitCode::SUCCESS;
        }
        Command::Completions { shell } => {
            let mut out = std::io::stdout();
            clap_complete::generate(*shell, &mut Cli::command(), "symbiont", &mut out);
            return ExitCode::SUCCESS;
        }
        Command::Man { out_dir } => return man(out_dir.as_deref()),
        _ => {}
    }
    // The commands whose supervisor may hold thousands of idle runs for hours.
    if matches!(
        cli.command,
        Command::Serve { .. } | Command::Run(_) | Command::Dashboard(_)
    ) {
        symbiont::process::one_heap_arena();
    }
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
            Command::Serve { config } => cmd_serve(config).await,
            Command::Attach { config } => cmd_attach(config).await,
            c @ (Command::Ps { .. }
            | Command::Kill { .. }
            | Command::Logs { .. }
            | Command::History { .. }
            | Command::Shutdown) => service_client(c).await,
            Command::Sweep { .. } | Command::Completions { .. } | Command::Man { .. } => Ok(0),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Usage(m, code)) => {
            eprintln!("{m}");
            ExitCode::from(code)
        }
    }
}

/// `symbiont man`: the page of `symbiont` on stdout, or every command's page written to `dir`.
fn man(dir: Option<&std::path::Path>) -> ExitCode {
    let result = match dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `symbiont man | head`: the reader had enough.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let what = dir.map_or("stdout".into(), |d| d.display().to_string());
            eprintln!("symbiont: cannot write the manual page to {what}: {e}");
            ExitCode::from(1)
        }
    }
}

fn load_files(paths: &[PathBuf]) -> Result<Vec<SourceFile>, Usage> {
    paths
        .iter()
        .map(|f| SourceFile::load(f).map_err(Usage::from))
        .collect()
}

/// The configuration with the flags written into it: from here on the flags' values are read
/// from the configuration only.
fn load_config(path: Option<&std::path::Path>, flags: &Flags) -> Result<LoadedConfig, Usage> {
    let mut loaded = config::load(path)?;
    flags.check().map_err(Usage::bad)?;
    flags.apply(&mut loaded);
    Ok(loaded)
}

fn start_supervisor(loaded: &LoadedConfig) -> Result<Supervisor, Usage> {
    let mut opts = SupervisorOptions::from_config(&loaded.config);
    opts.own_all_children = true;
    symbiont::process::enable_sweep();
    Supervisor::new(opts).map_err(|e| Usage::bad(format!("cannot start the supervisor: {e}")))
}

async fn cmd_run(a: RunArgs) -> Result<u8, Usage> {
    let flags = Flags {
        pass_env: a.pass_env.clone(),
        ..a.policy.flags()
    };
    if a.detach {
        flags.check().map_err(Usage::bad)?;
        return detach(&a, &flags).await;
    }
    let loaded = load_config(a.policy.config.as_deref(), &flags)?;
    let files = load_files(&a.files)?;
    let specs = plan::plan_runs(&loaded, &a.triggers, &files, &Host::real())?;
    if specs.is_empty() {
        return Err(Usage::bad(
            "nothing to run: no agent has an `on start` or `on trigger` block with a statement"
                .into(),
        ));
    }
    let tui = !a.headless && !a.json && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let note = if tui { log_to_file(&loaded) } else { None };
    let sup = start_supervisor(&loaded)?;
    sup.preflight(&specs).await?;
    if tui {
        // The launch dialog offers every trigger, not only the ones fired.
        let offered = plan::plan_runs(&loaded, &[], &files, &Host::real())?;
        return dashboard(sup, &loaded, specs, offered, note).await;
    }
    Ok(headless::run(sup, specs, a.json).await?)
}

/// Opens the dashboard: `initial` starts at once, `offered` fills the launch dialog, `note`
/// on the status line.
async fn dashboard(
    sup: Supervisor,
    loaded: &LoadedConfig,
    initial: Vec<RunSpec>,
    offered: Vec<RunSpec>,
    note: Option<String>,
) -> Result<u8, Usage> {
    let mut d = Dashboard::from_plan(sup, loaded, initial, offered).map_err(Usage::bad)?;
    d.app.message = note;
    let records = d
        .run()
        .await
        .map_err(|e| Usage::failed(format!("dashboard: {e}")))?;
    Ok(exit_code(&records))
}

/// The dashboard owns the terminal from here on (from before the supervisor starts, so that
/// nothing is printed under it): the diagnostic log goes to its file in the data directory.
/// A file that cannot be opened is said on the dashboard's status line.
fn log_to_file(loaded: &LoadedConfig) -> Option<String> {
    let path = symbiont::logging::file_path(&loaded.config.supervisor.data_dir);
    symbiont::logging::to_file(&path).err().map(|e| {
        format!(
            "the diagnostic log is off: cannot open {}: {e}",
            path.display()
        )
    })
}

async fn cmd_dashboard(a: DashboardArgs) -> Result<u8, Usage> {
    let loaded = load_config(a.policy.config.as_deref(), &a.policy.flags())?;
    let files = load_files(&a.files)?;
    let offered = if files.is_empty() {
        Vec::new()
    } else {
        plan::plan_runs(&loaded, &[], &files, &Host::real())?
    };
    let note = log_to_file(&loaded);
    let sup = start_supervisor(&loaded)?;
    dashboard(sup, &loaded, Vec::new(), offered, note).await
}

/// `exec`'s exit status for what stopped it before its command ran, as env(1) has it: 127 for
/// a program not found, 126 for one policy refused, 125 for everything else (bad usage, config).
async fn cmd_exec(a: ExecArgs) -> Result<u8, Usage> {
    exec_inner(a).await.map_err(|Usage(m, code)| {
        let code = match code {
            EXEC_NOT_FOUND | EXEC_REFUSED => code,
            _ => EXEC_FAILED,
        };
        Usage(m, code)
    })
}

use symbiont::report::{EXEC_NOT_FOUND, EXEC_REFUSED, FAILED as EXEC_FAILED};

async fn exec_inner(a: ExecArgs) -> Result<u8, Usage> {
    let flags = Flags {
        pass_env: a.pass_env.clone(),
        sandbox: a.sandbox,
        ..a.policy.flags()
    };
    if !a.standalone {
        if let Some(code) = exec_through_service(&a, &flags).await? {
            return Ok(code);
        }
    }
    let loaded = load_config(a.policy.config.as_deref(), &flags)?;
    let argv = match (a.code, a.command.is_empty()) {
        (Some(code), _) => {
            symbiont::policy::code_argv(&loaded.config.native_execution.default_executable, &code)
        }
        (None, false) => a.command,
        (None, true) => {
            return Err(Usage::bad(
                "exec needs a command after `--` (or --code CODE)".into(),
            ))
        }
    };
    let spec = plan::plan_command(&loaded, argv, &[], &Host::real()).map_err(|e| {
        let code = symbiont::report::exec_refusal_status(&e);
        Usage(Usage::from(e).0, code)
    })?;
    let sup = start_supervisor(&loaded)?;
    Ok(headless::exec(sup, spec, a.json).await?)
}

fn cmd_check(a: CheckArgs) -> Result<u8, Usage> {
    let flags = Flags {
        native: a.native,
        ..Flags::default()
    };
    let loaded = load_config(a.config.as_deref(), &flags)?;
    // The env file is checked (owner, permissions, lines); only its names are ever shown.
    let operator = plan::operator_env(&loaded, &Host::real())?;
    headless::check(&loaded, &a.files, a.json)?;
    if let (Some(p), false) = (&loaded.config.native_execution.env_file, a.json) {
        let names: Vec<&str> = operator.iter().map(|(k, _)| k.as_str()).collect();
        println!("env file {}: {}", p.display(), names.join(" "));
    }
    Ok(0)
}

/// `symbiont serve`.
#[cfg(unix)]
async fn cmd_serve(config: Option<PathBuf>) -> Result<u8, Usage> {
    let loaded = load_config(config.as_deref(), &Flags::default())?;
    let mut opts = SupervisorOptions::from_config(&loaded.config);
    opts.own_all_children = true;
    symbiont::process::enable_sweep();
    let dir = symbiont::service::runtime_dir();
    symbiont::service::server::serve(loaded, opts, &dir, |socket| {
        eprintln!("symbiont: serving on {}", socket.display());
    })
    .await
    .map_err(|e| Usage::failed(format!("service: {e}")))?;
    Ok(0)
}

/// `symbiont attach`.
#[cfg(unix)]
async fn cmd_attach(config: Option<PathBuf>) -> Result<u8, Usage> {
    let loaded = load_config(config.as_deref(), &Flags::default())?;
    let client = symbiont::service::Client::at(symbiont::service::socket_path());
    client
        .health()
        .await
        .map_err(|e| Usage::failed(e.to_string()))?;
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(Usage::bad(
            "attach needs a terminal (`symbiont ps` lists the service's runs)".into(),
        ));
    }
    let note = log_to_file(&loaded);
    let mut d = Dashboard::attach(client, &loaded).map_err(Usage::bad)?;
    d.app.message = note;
    d.run()
        .await
        .map_err(|e| Usage::failed(format!("dashboard: {e}")))?;
    Ok(0)
}

/// `ps`, `kill`, `logs`, `history` and `shutdown`: clients of this user's service.
#[cfg(unix)]
async fn service_client(c: Command) -> Result<u8, Usage> {
    use symbiont::service::{commands, Client};
    let client = Client::at(symbiont::service::socket_path());
    Ok(match c {
        Command::Ps { json } => commands::ps(&client, json).await,
        Command::Kill { target, signal } => commands::kill(&client, &target, signal).await,
        Command::Logs {
            target,
            follow,
            stream,
        } => commands::logs(&client, &target, &stream, follow).await,
        Command::History { json, limit } => commands::history(&client, json, limit).await,
        Command::Shutdown => commands::shutdown(&client).await,
        _ => 2,
    })
}

/// `run --detach`.
#[cfg(unix)]
async fn detach(a: &RunArgs, flags: &Flags) -> Result<u8, Usage> {
    use symbiont::service::{api::LaunchFlags, commands};
    Ok(commands::detach(
        &a.files,
        a.triggers.clone(),
        LaunchFlags::from_flags(flags),
        a.policy.config.as_deref(),
    )
    .await)
}

/// `exec` through this user's service when one answers; `None` when none runs.
#[cfg(unix)]
async fn exec_through_service(a: &ExecArgs, flags: &Flags) -> Result<Option<u8>, Usage> {
    use symbiont::service::{api::LaunchFlags, api::LaunchRequest, commands, Client};
    let client = Client::at(symbiont::service::socket_path());
    if client.health().await.is_err() {
        return Ok(None);
    }
    flags.check().map_err(Usage::bad)?;
    let req = LaunchRequest {
        command: a.command.clone(),
        code: a.code.clone(),
        flags: LaunchFlags::from_flags(flags),
        env: commands::client_env(),
        ..LaunchRequest::default()
    };
    Ok(Some(commands::exec(&client, req, a.json).await))
}

#[cfg(not(unix))]
const NO_SERVICE: &str = "the service (serve, run --detach, attach, ps, kill, logs, history, shutdown) is not available on Windows yet";

#[cfg(not(unix))]
async fn cmd_serve(_config: Option<PathBuf>) -> Result<u8, Usage> {
    Err(Usage::failed(NO_SERVICE.into()))
}

#[cfg(not(unix))]
async fn cmd_attach(_config: Option<PathBuf>) -> Result<u8, Usage> {
    Err(Usage::failed(NO_SERVICE.into()))
}

#[cfg(not(unix))]
async fn service_client(_c: Command) -> Result<u8, Usage> {
    Err(Usage::failed(NO_SERVICE.into()))
}

#[cfg(not(unix))]
async fn detach(_a: &RunArgs, _flags: &Flags) -> Result<u8, Usage> {
    Err(Usage::failed(NO_SERVICE.into()))
}

#[cfg(not(unix))]
async fn exec_through_service(_a: &ExecArgs, _flags: &Flags) -> Result<Option<u8>, Usage> {
    Ok(None)
}
