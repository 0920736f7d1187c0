//! Runners: how a step of an agent becomes something running on its tier.

pub mod container;
#[cfg(unix)]
pub mod native;
