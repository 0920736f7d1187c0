//! The seed's "Example 1: development mode", as written but for the crate name
//! (`symbi_runtime` -> `symbiont`) and the `HashMap` import the seed leaves out.
use std::collections::HashMap;

use symbiont::{Config, SandboxOrchestrator, SecurityTier};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Enable native execution for development
    let mut config = Config::default();
    config.security.allow_native_execution = true;
    config.security.default_sandbox_tier = SecurityTier::None;

    let orchestrator = SandboxOrchestrator::new(config)?;

    // Execute code natively
    let result = orchestrator
        .execute_code(
            SecurityTier::None,
            "print('Hello from native execution!')",
            HashMap::new(),
        )
        .await?;

    println!("Output: {}", result.stdout);
    Ok(())
}
