//! The kernel boundary (backend ↔ kernel): the only place fwscript reads or
//! writes netfilter state. Everything above it is pure and works on text, so
//! it is tested against [`fake::Fake`]; [`iptables::Iptables`] runs the real
//! tools.

pub mod fake;
pub mod generation;
pub mod iptables;
pub mod prefetch;

use std::time::Duration;

use crate::live::{LiveState, ParseError};
use crate::netfilter::{Family, Policy, Table};
pub use generation::Generation;

/// Reads and writes one family's tables as text.
///
/// `Sync` so both families can be read at the same time.
pub trait Backend: Sync {
    /// `Err(reason)` when this host cannot do `family` at all (no
    /// ip6tables, IPv6 disabled): that half is skipped with a warning.
    fn availability(&self, family: Family) -> Result<(), String>;

    /// All tables of `family`, as `iptables-save` prints them.
    fn save(&self, family: Family) -> Result<String, BackendError>;

    /// All tables of `family`, parsed: [`Backend::save`] read as a state.
    fn live(&self, family: Family) -> Result<LiveState, BackendError> {
        Ok(LiveState::parse(family, &self.save(family)?)?)
    }

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

    /// fwscript's ipsets with their entries: [`Backend::save_sets`] parsed.
    fn live_sets(&self) -> Result<Vec<crate::sets::LiveSet>, BackendError> {
        Ok(crate::sets::live::parse_save(&self.save_sets()?)?)
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

    /// The generation of the rules [`Backend::save`] reads, where the
    /// backend can tell one: equal generations mean nothing changed in
    /// between, so a read made at one still holds (nf_tables only).
    fn generation(&self) -> Option<Generation> {
        None
    }

    /// Told after a verified write of `commits` table blocks: `now` is what
    /// the kernel holds, every family, if nothing but the write changed it
    /// since it was read. A backend that keeps reads keeps these.
    fn written(&self, commits: u32, now: &[&LiveState]) {
        let _ = (commits, now);
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

    /// On an nf_tables host, `family`'s iptables-legacy tables as
    /// `iptables-legacy-save` prints them, when there are any: the kernel
    /// runs their rules too. `None` where there are none or it cannot tell.
    fn legacy_save(&self, _family: Family) -> Option<String> {
        None
    }

    /// The nf_tables chains of the namespace as `nft -j list chains`
    /// prints them (no rules: a few milliseconds whatever the ruleset),
    /// and whether iptables itself is nf_tables here; `None` without the
    /// `nft` tool. Other programs' chains on the same hooks run too.
    fn nft_chains(&self) -> Option<(String, bool)> {
        None
    }

    /// One nf_tables table with its rules, as `nft -j list table FAMILY
    /// NAME` prints it.
    fn nft_table(&self, _family: &str, _name: &str) -> Option<String> {
        None
    }
}

/// A backend shared between threads or with a test that changes the kernel
/// behind the commands' back.
impl<B: Backend + Send + ?Sized> Backend for std::sync::Arc<B> {
    fn legacy_save(&self, family: Family) -> Option<String> {
        (**self).legacy_save(family)
    }
    fn nft_chains(&self) -> Option<(String, bool)> {
        (**self).nft_chains()
    }
    fn nft_table(&self, family: &str, name: &str) -> Option<String> {
        (**self).nft_table(family, name)
    }
    fn availability(&self, family: Family) -> Result<(), String> {
        (**self).availability(family)
    }
    fn save(&self, family: Family) -> Result<String, BackendError> {
        (**self).save(family)
    }
    fn live(&self, family: Family) -> Result<LiveState, BackendError> {
        (**self).live(family)
    }
    fn save_counters(&self, family: Family) -> Result<String, BackendError> {
        (**self).save_counters(family)
    }
    fn restore(&self, family: Family, input: &str) -> Result<(), BackendError> {
        (**self).restore(family, input)
    }
    fn save_sets(&self) -> Result<String, BackendError> {
        (**self).save_sets()
    }
    fn live_sets(&self) -> Result<Vec<crate::sets::LiveSet>, BackendError> {
        (**self).live_sets()
    }
    fn list_sets(&self) -> Result<String, BackendError> {
        (**self).list_sets()
    }
    fn restore_sets(&self, input: &str) -> Result<(), BackendError> {
        (**self).restore_sets(input)
    }
    fn generation(&self) -> Option<Generation> {
        (**self).generation()
    }
    fn written(&self, commits: u32, now: &[&LiveState]) {
        (**self).written(commits, now)
    }
    fn lists_chains_cheaply(&self) -> bool {
        (**self).lists_chains_cheaply()
    }
    fn list_chain(
        &self,
        family: Family,
        table: Table,
        chain: &str,
    ) -> Result<Option<String>, BackendError> {
        (**self).list_chain(family, table, chain)
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
