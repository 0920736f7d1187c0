//! Runners: how a step of an agent becomes something running on its tier.

#[cfg(unix)]
pub mod native;
