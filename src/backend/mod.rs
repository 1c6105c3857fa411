//! The kernel boundary (backend ↔ kernel): the only place fwscript reads or
//! writes netfilter state. Everything above it is pure and works on text, so
//! it is tested against [`fake::Fake`]; [`iptables::Iptables`] runs the real
//! tools.

pub mod fake;
pub mod iptables;
pub mod prefetch;

use std::time::Duration;

use crate::live::{LiveState, ParseError};
use crate::netfilter::{Family, Policy, Table};

/// Reads and writes one family's tables as text.
///
/// `Sync` so both families can be read at the same time.
pub trait Backend: Sync {
    /// `Err(reason)` when this host cannot do `family` at all (no
    /// ip6tables, IPv6 disabled): that half is skipped with a warning.
    fn availability(&self, family: Family) -> Result<(), String>;

    /// All tables of `family`, as `iptables-save` prints them.
    fn save(&self, family: Family) -> Result<String, BackendError>;

    /// The same with each rule's packet and byte counters, as
    /// `iptables-save -c` prints them (`[packets:bytes] -A …`): for
    /// `status`, never for a diff.
    fn save_counters(&self, family: Family) -> Result<String, BackendError>;

    /// Runs `input` through `iptables-restore --noflush`: each table block is
    /// atomic, the whole input is not.
    fn restore(&self, family: Family, input: &str) -> Result<(), BackendError>;

    /// Every ipset (both families: ipsets are not per family), as `ipset
    /// save` prints them. [`BackendError::NotFound`] when this host has no
    /// ipset tool: only a plan with sets needs one.
    fn save_sets(&self) -> Result<String, BackendError> {
        Err(no_ipset())
    }

    /// Every ipset's header and number of entries, as `ipset list -t`
    /// prints them: what verify reads back, without the entries.
    fn list_sets(&self) -> Result<String, BackendError> {
        Err(no_ipset())
    }

    /// Runs `input` through `ipset restore`: line by line, stopping at the
    /// first it refuses, with every line before it done.
    fn restore_sets(&self, input: &str) -> Result<(), BackendError> {
        let _ = input;
        Err(no_ipset())
    }
    /// Whether [`Backend::list_chain`] costs less than a whole save when
    /// the chain is small: `false` unless the backend says so.
    fn lists_chains_cheaply(&self) -> bool {
        false
    }

    /// One chain as `iptables -t TABLE -S CHAIN` prints it (`-P` or `-N`,
    /// then its `-A` lines); `None` when there is no such chain. A write
    /// that touched a few chains of a big family reads back just those.
    fn list_chain(
        &self,
        family: Family,
        table: Table,
        chain: &str,
    ) -> Result<Option<String>, BackendError> {
        list_from_save(self, family, table, chain)
    }
}

/// [`Backend::list_chain`] cut out of a whole [`Backend::save`]: exact, and
/// as slow as the save.
pub fn list_from_save<B: Backend + ?Sized>(
    backend: &B,
    family: Family,
    table: Table,
    chain: &str,
) -> Result<Option<String>, BackendError> {
    let live = LiveState::parse(family, &backend.save(family)?)?;
    let Some(found) = live.table(table).and_then(|t| t.chain(chain)) else {
        return Ok(None);
    };
    let mut text = match found.policy {
        Some(policy) => format!("-P {chain} {}\n", Policy::name(policy)),
        None => format!("-N {chain}\n"),
    };
    for rule in &found.rules {
        match rule.spec.is_empty() {
            true => text.push_str(&format!("-A {chain}\n")),
            false => text.push_str(&format!("-A {chain} {}\n", rule.spec)),
        }
    }
    Ok(Some(text))
}

/// What a backend without sets says.
fn no_ipset() -> BackendError {
    BackendError::NotFound {
        tool: IPSET.to_string(),
    }
}

/// The tool, and the package that has it on every distribution.
pub const IPSET: &str = "ipset";

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("`{tool}` is not installed (looked in PATH, /usr/sbin and /sbin)")]
    NotFound { tool: String },
    #[error("cannot run `{tool}`: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("`{tool}` failed: {message}")]
    Failed { tool: String, message: String },
    #[error(
        "`{tool}` gave up waiting for the xtables lock after {} s: another program \
         is changing the firewall right now; try again",
        .waited.as_secs()
    )]
    LockTimeout { tool: String, waited: Duration },
    #[error("`{tool}` did not finish within {} s and was stopped", .limit.as_secs())]
    Timeout { tool: String, limit: Duration },
    #[error("the kernel rejected line {line} of the `{tool}` input, `{text}`: {message}")]
    Rejected {
        tool: String,
        line: usize,
        text: String,
        message: String,
    },
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    SetParse(#[from] crate::sets::SetParseError),
}
