//! Runners: how a step of an agent becomes something running on its tier.

pub mod container;
#[cfg(unix)]
pub mod native;
#[cfg(windows)]
#[path = "native_windows.rs"]
pub mod native;
#[cfg(target_os = "linux")]
mod vfork;
#[cfg(target_os = "linux")]
pub use vfork::reserve_slots;
#[cfg(target_os = "linux")]
pub mod zygote;
