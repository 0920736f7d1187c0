//! Tier3 where QEMU's microVM is not built in (every platform but Linux): refused at launch.

use std::path::Path;
use std::sync::Arc;

use super::native::NativeHost;
use crate::supervisor::target::{Actions, Finals, Prepared, Sinks, Started, Target, Tree};
use crate::supervisor::{LaunchError, RunId, RunSpec, Sig, Step};

const WHY: &str = "tier Tier3 (microvm) runs agents in a QEMU microVM, which symbiont supports on \
                   Linux only: run the agent on Tier2 (gvisor) or Tier1 (docker) here";

pub(crate) struct MicrovmHost;

impl MicrovmHost {
    pub fn new(_data_dir: &Path, _guest: &crate::config::MicrovmConfig) -> MicrovmHost {
        MicrovmHost
    }

    pub fn preflight(&self, s: &RunSpec) -> Result<(), LaunchError> {
        Err(LaunchError::RuntimeMissing {
            agent: s.agent.clone(),
            message: WHY.to_string(),
        })
    }

    pub fn describe(&self) -> String {
        format!("Tier3 (microVM): not available: {WHY}")
    }

    /// Never reached: `preflight` refuses every run first.
    pub fn target(
        self: &Arc<Self>,
        _id: RunId,
        _spec: Arc<RunSpec>,
        _native: &Arc<NativeHost>,
        _marker: String,
        _stdin: Option<std::fs::File>,
    ) -> Result<MicrovmTarget, LaunchError> {
        Err(LaunchError::TierUnavailable {
            tier: crate::tier::SecurityTier::Tier3,
            message: WHY.to_string(),
        })
    }
}

/// No microVM run exists on this platform.
pub(crate) enum MicrovmTarget {}

pub(crate) const ACTIONS: Actions = Actions {
    choices: &[],
    signal_names: false,
    one_process: false,
    graceful_term: false,
    pause: false,
};

impl Target for MicrovmTarget {
    fn actions(&self) -> Actions {
        match *self {}
    }
    fn tree(&self) -> Arc<dyn Tree> {
        match *self {}
    }
    async fn prepare(&mut self) -> Prepared {
        match *self {}
    }
    async fn start(&mut self, _n: usize, _step: &Step) -> Result<Started, String> {
        match *self {}
    }
    fn drain(&mut self, _sinks: Sinks) {
        match *self {}
    }
    async fn signal(&self, _sig: Sig, _pid: Option<i32>) -> bool {
        match *self {}
    }
    async fn pause(&self, _paused: bool) -> bool {
        match *self {}
    }
    async fn end_step(&mut self) {
        match *self {}
    }
    async fn finish(&mut self) -> Finals {
        match *self {}
    }
}
