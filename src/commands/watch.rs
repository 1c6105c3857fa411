//! `watch`: the daemon, on the real kernel.

use std::path::Path;

use super::Outcome;
use crate::backend::iptables::Iptables;
use crate::cli::WatchArgs;
use crate::daemon;
use crate::error::Error;
use crate::state::StateDir;

pub fn watch(args: &WatchArgs, state_dir: &Path) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    let resync = std::time::Duration::from_secs(args.resync.max(1));
    daemon::watch(&args.script, &backend, state, resync)?;
    Ok(Outcome::Done)
}
