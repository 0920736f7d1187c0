//! The seed's "Example 3: hybrid execution": native for trusted local code, Tier1 (Docker)
//! for untrusted code, in one program, extended to a third tier: Tier3, a microVM with a kernel
//! of its own (its guest is built by `scripts/microvm-assets`). The seed's snippet is wrapped in
//! a `main` and its variables get values. The container image is `$SYMBIONT_IMAGE` (default
//! `busybox:latest`); the daemon is `$DOCKER_HOST` (default: the standard socket).
use std::collections::HashMap;

use symbiont::{Config, SandboxOrchestrator, SecurityTier};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::default();
    config.security.allow_native_execution = true;
    // One interpreter that both the host and a busybox image have.
    config.native_execution.default_executable = "sh".into();
    config.containers.default_image =
        Some(std::env::var("SYMBIONT_IMAGE").unwrap_or_else(|_| "busybox:latest".into()));
    let orchestrator = SandboxOrchestrator::new(config)?;

    let local_code = "echo trusted: native on $(uname -n)";
    let untrusted_code = "echo untrusted: isolated; cat /proc/net/dev | grep -c :";
    let mut env_vars = HashMap::new();
    env_vars.insert("AGENT_MODE".to_string(), "hybrid".to_string());

    // Use native execution for trusted local operations
    let local_result = orchestrator
        .execute_code(SecurityTier::None, local_code, env_vars.clone())
        .await?;
    print!("native: {}", local_result.stdout);

    // Use Docker for external/untrusted operations
    let isolated_result = orchestrator
        .execute_code(SecurityTier::Tier1, untrusted_code, env_vars.clone())
        .await?;
    print!("docker: {}", isolated_result.stdout);

    // And a virtual machine for what must not share the host's kernel
    let vm_result = orchestrator
        .execute_code(SecurityTier::Tier3, "echo kernel $(uname -r)", env_vars)
        .await?;
    print!("microvm: {}", vm_result.stdout);
    Ok(())
}
