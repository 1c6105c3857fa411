//! What the state folder holds (apply → **state records** → rollback,
//! confirm, boot, status): plain data, one JSON file each, plus the rule
//! files of the last good and the pending plan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::netfilter::{Family, Hook, Policy, Table};

/// The kernel's owned state from before an apply, per family, as an
/// iptables-restore file (fwscript's chains, hooks and the built-in chains'
/// policies; nothing of anyone else's): what `rollback` and an expired
/// confirm put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the epoch when it was taken.
    pub taken_at: u64,
    /// The script whose apply it precedes, as given on the command line.
    pub script: String,
    pub families: Vec<FamilySnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilySnapshot {
    pub family: Family,
    pub save: String,
    /// fwscript's ipsets of this family as `ipset restore` input (their
    /// `create` lines and entries); empty when it had none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sets: String,
}

/// An `apply --confirm SECS` that nobody has confirmed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingConfirm {
    /// Seconds since the epoch after which the snapshot comes back.
    pub deadline: u64,
    /// Tells this apply's timer from an earlier one's.
    pub token: String,
    pub script: String,
    /// What was applied, so a plan that was rolled back for want of a
    /// confirm is not applied again unattended.
    pub plan_digest: String,
    /// The boot it was applied in: after a reboot it can never be
    /// confirmed, since the kernel lost it.
    #[serde(default)]
    pub boot_id: String,
}

/// A plan rolled back because nobody confirmed it: not applied again
/// unattended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub plan_digest: String,
    pub rolled_back_at: u64,
}

/// The last write to the kernel: for `status`, and to tell a boot (the
/// first fwscript run since the machine started) from any other run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// What was written: a script's path, or what stood in for one
    /// (`(reset)`, `(rollback)`, `(last good)`).
    pub script: String,
    /// The command that wrote it: `apply`, `watch`, `reset`, …
    pub command: String,
    pub at: u64,
    /// The plan's digest; empty for writes that are not a script's plan.
    pub digest: String,
    pub boot_id: String,
    /// A digest of the script lines behind the rules written (and of the
    /// files they are in): an apply that finds the kernel in sync tells
    /// by it, cheaply, whether `origins.json` needs writing afresh.
    #[serde(default)]
    pub origins: String,
}

/// The rules of the last write, whatever wrote them (an apply, reset,
/// rollback, a fallback): what `status` compares the kernel with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRules {
    /// Restore files per family, each introduced by `# ipv4` / `# ipv6`,
    /// as `last-good.rules` holds them. `None` when the same write kept
    /// them in a rules file of its own, not to write them twice:
    /// `pending.rules` while a confirm is pending, else `last-good.rules`.
    pub text: Option<String>,
    /// The built-in chains' policies the write decided. A restore file
    /// names a policy for every built-in chain; only these are fwscript's.
    pub policies: BTreeMap<Family, BTreeMap<Table, BTreeMap<Hook, Policy>>>,
}

/// The last good ruleset (docs/boot.md): the last plan applied and, when it
/// was applied with `--confirm`, confirmed. Its rules are in
/// `last-good.rules`; this is what a boot falls back to when the script
/// does not evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastGood {
    pub script: String,
    pub applied_at: u64,
    pub digest: String,
}

/// The policy each built-in chain had before fwscript first changed it:
/// what `reset` puts back (Docker sets FORWARD to DROP itself; a reset must
/// not open it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalPolicies {
    pub families: BTreeMap<Family, BTreeMap<Table, BTreeMap<Hook, Policy>>>,
}

impl OriginalPolicies {
    pub fn get(&self, family: Family, table: Table, hook: Hook) -> Option<Policy> {
        self.families.get(&family)?.get(&table)?.get(&hook).copied()
    }

    /// Remembers `before` unless a first value is already known. Returns
    /// whether anything new was learnt.
    pub fn remember(&mut self, family: Family, table: Table, hook: Hook, before: Policy) -> bool {
        let chains = self
            .families
            .entry(family)
            .or_default()
            .entry(table)
            .or_default();
        if chains.contains_key(&hook) {
            return false;
        }
        chains.insert(hook, before);
        true
    }
}

/// A running `fwscript watch`, for `apply` to warn about and for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonRecord {
    pub pid: u32,
    /// The script, canonical.
    pub script: String,
    pub started_at: u64,
    /// What the daemon last told systemd (`STATUS=`).
    pub status: String,
    /// The last error, if the latest event ended in one.
    pub last_error: Option<String>,
}

impl DaemonRecord {
    /// Whether that process still runs and is a fwscript.
    pub fn is_alive(&self) -> bool {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        cmdline
            .split(|&b| b == 0)
            .next()
            .is_some_and(|program| program.ends_with(b"fwscript"))
    }
}

/// This boot's id; a reboot changes it.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}
