//! symbiont: launch agents on a security tier, enforce limits on them, watch and kill them.
//!
//! The supervisor core ([`supervisor`]) knows nothing of terminals; the headless printer
//! ([`headless`]), the dashboard ([`tui`]) and the library API ([`SandboxOrchestrator`]) are
//! its clients. The `symbiont` binary only parses its arguments and picks a client.
//!
//! A run's life is written once ([`supervisor`]'s lifecycle) against a small interface each
//! tier implements in [`tier`]; platform mechanisms sit at the edges ([`process`],
//! [`sandbox`], [`runner`], [`sampler`]). `ARCHITECTURE.md` at the repository's root draws
//! the rooms and the data flow, and says where to add a tier or a client.

// Every `unsafe` block says why it is sound (CI runs clippy with -D warnings).
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod diagnostic;
pub mod dsl;
pub mod headless;
pub mod logging;
pub mod runner;
pub mod sampler;
pub mod sandbox;
pub mod stop;
pub mod supervisor;
pub mod tier;
pub mod tui;

pub use config::Config;
pub use tier::{SandboxLevel, SecurityTier};
pub mod orchestrator;
pub mod plan;
pub mod policy;
pub mod process;
pub mod report;
pub mod secrets;
#[cfg(unix)]
pub mod service;

pub use orchestrator::{Error, ExecutionResult, SandboxOrchestrator};
