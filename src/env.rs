//! The environment variables fwscript reads, in one place (README,
//! "Environment"), shared by the stages that need them.

use std::time::Duration;

/// `nft` or `legacy`: force an iptables backend instead of detecting it.
pub const IPTABLES: &str = "FWSCRIPT_IPTABLES";

/// The `ipset` program to run, instead of the one found in PATH or the
/// sbin folders.
pub const IPSET: &str = "FWSCRIPT_IPSET";

/// Seconds a writer waits for a lock held by someone else: the state
/// folder's (another fwscript) and the xtables lock (another program).
pub const LOCK_WAIT: &str = "FWSCRIPT_LOCK_WAIT";

/// The wait when [`LOCK_WAIT`] is not set.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// [`LOCK_WAIT`], or its default. A value that is not a number of seconds
/// is an error, not silently the default: the admin meant something.
pub fn lock_wait() -> Result<Duration, String> {
    match std::env::var(LOCK_WAIT) {
        Err(_) => Ok(DEFAULT_LOCK_WAIT),
        Ok(text) => text.trim().parse().map(Duration::from_secs).map_err(|_| {
            format!("`{LOCK_WAIT}` must be a whole number of seconds, found `{text}`")
        }),
    }
}
