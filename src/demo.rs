//! The built-in demo: starts the simulator, fills its directory with a few apps and mailboxes
//! (healthy and broken), and writes a configuration that points the agent at it.

use crate::config::Config;
use crate::sim::Simulator;

/// A running demo: the simulator and the configuration for the agent.
pub struct Demo {
    pub sim: Simulator,
    pub config: Config,
    _dir: tempfile::TempDir,
}

impl Demo {
    pub async fn start() -> anyhow::Result<Demo> {
        anyhow::bail!("demo not wired yet")
    }
}
