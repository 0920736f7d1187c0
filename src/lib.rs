//! symbiont: launch agents on a security tier, enforce limits on them, watch and kill them.
//!
//! The supervisor core ([`supervisor`]) knows nothing of terminals; the headless printer,
//! the dashboard and the library API ([`SandboxOrchestrator`]) are its clients.

pub mod config;
pub mod dsl;
pub mod headless;
pub mod runner;
pub mod sampler;
pub mod sandbox;
pub mod stop;
pub mod supervisor;
pub mod tier;
pub mod tui;

pub use config::Config;
pub use tier::SecurityTier;
pub mod orchestrator;
pub mod plan;
pub mod policy;
pub mod process;

pub use orchestrator::{Error, ExecutionResult, SandboxOrchestrator};
