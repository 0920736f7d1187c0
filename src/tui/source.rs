//! Where the dashboard's agents are: the supervisor of this process, or this user's service
//! (`symbiont attach`). The dashboard draws and commands both the same way; only this file
//! knows which it has. The service is Unix only for now: on Windows only the local source
//! exists, and what serves the remote one is unused there.
#![cfg_attr(not(unix), allow(unused_imports, unused_variables))]

use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use super::app::{self, App};
use crate::supervisor::{Control, Event, RunId, RunSpec, RunState, Scope, Sig, Supervisor};
use crate::tier::SecurityTier;

/// The agents a dashboard shows.
pub enum Source {
    Local(Supervisor),
    #[cfg(unix)]
    Remote(Remote),
}

/// A dashboard attached to the service: the latest view fetched in the background (the screen
/// never waits on the socket), and the operator's commands sent as requests.
#[cfg(unix)]
pub struct Remote {
    client: crate::service::Client,
    latest: watch::Receiver<Fetched>,
    /// Every answer of the service in order: each holds only the rows that changed.
    deltas: mpsc::UnboundedReceiver<Delta>,
    /// The selected run's tail, and which run and stream it is of.
    tail: Option<(RunId, bool, Vec<String>)>,
    /// When the rows were last brought up to date: a live run's clock goes on meanwhile.
    applied_at: std::time::Instant,
    want: watch::Sender<(Option<RunId>, bool)>,
    /// Answers to the operator's commands that the status line shows (a refusal).
    notes_tx: mpsc::UnboundedSender<String>,
    notes: mpsc::UnboundedReceiver<String>,
    /// Runs seen alive since attaching, for the summary at the end.
    seen: std::collections::BTreeSet<RunId>,
}

/// One answer of the service, with the selection it was asked for.
#[cfg(unix)]
type Delta = (Option<RunId>, bool, crate::service::api::DashboardView);

/// The last answer of the service: its view, or why there is none.
#[cfg(unix)]
#[derive(Clone, Default)]
pub enum Fetched {
    #[default]
    Nothing,
    /// An answer came (its rows wait in `Remote::deltas`).
    Fresh,
    Lost(String),
}

/// What tells the dashboard that something changed.
pub enum Changes {
    Local(broadcast::Receiver<Event>),
    #[cfg(unix)]
    Remote(watch::Receiver<Fetched>),
}

impl Changes {
    /// Waits for the next change; false once there will be none (the source has gone).
    pub async fn next(&mut self) -> bool {
        match self {
            Changes::Local(rx) => {
                !matches!(rx.recv().await, Err(broadcast::error::RecvError::Closed))
            }
            #[cfg(unix)]
            Changes::Remote(rx) => rx.changed().await.is_ok(),
        }
    }
}

impl Source {
    pub fn changes(&self) -> Changes {
        match self {
            Source::Local(sup) => Changes::Local(sup.subscribe()),
            #[cfg(unix)]
            Source::Remote(r) => Changes::Remote(r.latest.clone()),
        }
    }

    pub fn attached(&self) -> bool {
        !matches!(self, Source::Local(_))
    }

    /// Copies the latest figures into the app; true when something changed.
    pub fn refresh_rows(&mut self, app: &mut App) -> bool {
        match self {
            Source::Local(sup) => super::refresh_rows(sup, app),
            #[cfg(unix)]
            Source::Remote(r) => {
                let selected = app.selected_row().map(|row| row.id);
                let _ = r.want.send_if_modified(|w| {
                    std::mem::replace(w, (selected, app.stream == app::Stream::Stderr)) != *w
                });
                r.apply(app)
            }
        }
    }

    /// The selected run's output tail.
    pub fn tail(&self, id: RunId, stderr: bool) -> Option<Vec<String>> {
        match self {
            Source::Local(sup) => sup.tail(id, stderr),
            #[cfg(unix)]
            Source::Remote(r) => match &r.tail {
                Some((i, e, t)) if (*i, *e) == (id, stderr) => Some(t.clone()),
                _ => None,
            },
        }
    }

    /// Why the source is gone (the service stopped), once it is.
    pub fn lost(&self) -> Option<String> {
        match self {
            Source::Local(_) => None,
            #[cfg(unix)]
            Source::Remote(r) => match &*r.latest.borrow() {
                Fetched::Lost(m) => Some(m.clone()),
                _ => None,
            },
        }
    }

    /// A note for the status line (a command the service refused), if one came.
    pub fn note(&mut self) -> Option<String> {
        match self {
            Source::Local(_) => None,
            #[cfg(unix)]
            Source::Remote(r) => r.notes.try_recv().ok(),
        }
    }

    /// Sends a command to a run; false where it is known to be refused.
    pub fn control(&self, id: RunId, c: Control) -> bool {
        match self {
            Source::Local(sup) => sup.control(id, c),
            #[cfg(unix)]
            Source::Remote(r) => {
                let (signal, pid) = match c {
                    Control::Kill { sig, scope, .. } => (
                        sig.name(),
                        match scope {
                            Scope::Tree => None,
                            Scope::Process(p) => Some(p),
                        },
                    ),
                    Control::Pause => ("STOP", None),
                    Control::Resume => ("CONT", None),
                };
                r.request(move |client| async move {
                    let req = crate::service::api::KillRequest {
                        signal: Some(signal.to_string()),
                        pid,
                    };
                    client.kill(&id.to_string(), &req).await.map(|_| ())
                });
                true
            }
        }
    }

    /// The operator's kill: TERM, then KILL after the grace period, to the whole tree.
    pub fn kill(&self, id: RunId) -> bool {
        self.control(id, Control::by_operator(Sig::Term, Scope::Tree))
    }

    /// Every live run's id.
    pub fn live(&self, app: &App) -> Vec<RunId> {
        match self {
            Source::Local(sup) => sup.run_ids(),
            #[cfg(unix)]
            Source::Remote(_) => app
                .rows
                .iter()
                .filter(|r| r.alive())
                .map(|r| r.id)
                .collect(),
        }
    }

    pub fn is_running(&self, id: RunId) -> bool {
        match self {
            Source::Local(sup) => sup.status(id).is_some_and(|s| s.state != RunState::Exited),
            #[cfg(unix)]
            // An attached dashboard restarts nothing (see `launch`).
            Source::Remote(_) => {
                let _ = id;
                false
            }
        }
    }

    /// Starts a planned run (a launchable of a loaded file, or a restart).
    pub fn launch(&self, spec: RunSpec) -> Result<RunId, String> {
        match self {
            Source::Local(sup) => sup.launch(spec).map_err(|e| e.to_string()),
            #[cfg(unix)]
            Source::Remote(_) => Err(
                "an attached dashboard starts commands only; `symbiont run FILE --detach` starts agents"
                    .into(),
            ),
        }
    }

    /// Starts an ad-hoc command in the service on `tier`, planned under the service's policy.
    /// `None` for a local source: the dashboard plans it itself.
    pub fn launch_command(
        &self,
        command: &str,
        tier: SecurityTier,
    ) -> Option<Result<String, String>> {
        match self {
            Source::Local(_) => None,
            #[cfg(unix)]
            Source::Remote(r) => Some(match shell_words::split(command) {
                Err(e) => Err(format!("command: {e}")),
                Ok(argv) => {
                    let req = crate::service::api::LaunchRequest {
                        command: argv,
                        flags: crate::service::api::LaunchFlags {
                            sandbox_tier: Some(tier),
                            native: tier.is_native(),
                            ..Default::default()
                        },
                        env: crate::service::commands::client_env(),
                        ..Default::default()
                    };
                    r.request(move |client| async move { client.launch(&req).await.map(|_| ()) });
                    Ok(format!("asked the service to start `{command}`"))
                }
            }),
        }
    }

    /// SIGKILL to every live run's whole tree at once.
    pub fn kill_all_now(&self, app: &App) {
        match self {
            Source::Local(sup) => sup.kill_all_now(),
            #[cfg(unix)]
            Source::Remote(_) => {
                for id in self.live(app) {
                    self.control(id, Control::by_operator(Sig::Kill, Scope::Tree));
                }
            }
        }
    }

    /// Stops every live run (TERM, KILL after the grace period).
    pub fn stop_all(&self, app: &App) {
        for id in self.live(app) {
            self.kill(id);
        }
    }
}

#[cfg(unix)]
impl Remote {
    /// Attaches to the service behind `client`: fetches its view every `refresh` and at each of
    /// its events.
    pub fn start(client: crate::service::Client, refresh: Duration) -> Remote {
        let (latest_tx, latest) = watch::channel(Fetched::Nothing);
        let (deltas_tx, deltas) = mpsc::unbounded_channel();
        let (want, mut want_rx) = watch::channel((None, false));
        let (notes_tx, notes) = mpsc::unbounded_channel();
        let fetcher = client.clone();
        tokio::spawn(async move {
            let mut events = fetcher.events().await.ok();
            let mut tick = tokio::time::interval(refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Only what changed comes over the socket: the screen merges it.
            let mut since = None;
            loop {
                let (selected, stderr) = *want_rx.borrow_and_update();
                match fetcher.dashboard(selected, stderr, since).await {
                    Ok(v) => {
                        since = Some(v.stamp);
                        if deltas_tx.send((selected, stderr, v)).is_err() {
                            return;
                        }
                        // The screen's cue: something came.
                        if latest_tx.send(Fetched::Fresh).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = latest_tx.send(Fetched::Lost(e.to_string()));
                        return;
                    }
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = want_rx.changed() => {}
                    e = async {
                        match events.as_mut() {
                            Some(ev) => ev.next().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        if e.is_none() {
                            events = None;
                        }
                        // A burst of events is one fetch.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ = latest_tx.closed() => return,
                }
            }
        });
        Remote {
            client,
            latest,
            deltas,
            tail: None,
            applied_at: std::time::Instant::now(),
            want,
            notes_tx,
            notes,
            seen: Default::default(),
        }
    }

    /// Brings the app's rows up to date with what the service sent: the changed rows replace
    /// theirs, runs the service no longer holds go, and every other live run's clock moves on.
    /// True when the rows changed (a live run's clock always does).
    fn apply(&mut self, app: &mut App) -> bool {
        let now = std::time::Instant::now();
        let passed = now.saturating_duration_since(self.applied_at);
        self.applied_at = now;
        let mut changed = false;
        let mut fresh = std::collections::HashSet::new();
        while let Ok((selected, stderr, v)) = self.deltas.try_recv() {
            if let Some(id) = selected {
                self.tail = Some((id, stderr, v.tail));
            }
            if !v.rows.is_empty() {
                let mut at: std::collections::HashMap<RunId, usize> = app
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.id, i))
                    .collect();
                for row in v.rows {
                    fresh.insert(row.id);
                    if row.alive() {
                        self.seen.insert(row.id);
                    }
                    match at.get(&row.id) {
                        Some(&i) => app.rows[i] = row,
                        None => {
                            at.insert(row.id, app.rows.len());
                            app.rows.push(row);
                        }
                    }
                }
                changed = true;
            }
            let same = app.rows.len() == v.ids.len()
                && app.rows.iter().zip(&v.ids).all(|(r, id)| r.id == *id);
            if !same {
                app.rows.retain(|r| v.ids.binary_search(&r.id).is_ok());
                app.rows.sort_by_key(|r| r.id);
                changed = true;
            }
        }
        for r in app
            .rows
            .iter_mut()
            .filter(|r| r.alive() && !fresh.contains(&r.id))
        {
            r.elapsed += passed;
            changed = true;
        }
        if changed {
            let keep = app.selected_key();
            app.rebuild(keep);
        }
        changed
    }

    /// Runs a request in the background; a refusal reaches the status line.
    fn request<F>(&self, f: impl FnOnce(crate::service::Client) -> F + Send + 'static)
    where
        F: std::future::Future<Output = Result<(), crate::service::ClientError>> + Send,
    {
        let client = self.client.clone();
        let notes = self.notes_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = f(client).await {
                let _ = notes.send(e.to_string());
            }
        });
    }

    /// What the terminal keeps once an attached dashboard has gone.
    pub fn farewell(&self, app: &App) {
        match &*self.latest.borrow() {
            Fetched::Lost(m) => println!("the service is gone: {m}"),
            _ => println!(
                "detached: {} agent(s) still running in the service (`symbiont ps`, `symbiont attach`); {} run(s) seen",
                app.alive(),
                self.seen.len()
            ),
        }
    }

    pub fn client(&self) -> &crate::service::Client {
        &self.client
    }
}
