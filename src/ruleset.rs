//! The owned kernel state as text, one family at a time: what `render`
//! produces from a plan, what `diff` compares the live kernel against, and
//! what a snapshot of the live kernel turns back into for `rollback`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::netfilter::{Family, Hook, Policy, Table, ID_TAG};

/// Where in the user's script a rule came from (the call site, never a line
/// inside stdlib/).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A rule's identity: a short hash of its family, table, chain, content and
/// occurrence. The diff compares these, never rule text, because
/// iptables-save prints rules in its own normal form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RuleId(String);

impl RuleId {
    /// Hex digits kept from the hash: 48 bits, collision-free in practice
    /// for the few thousand rules a chain holds.
    pub const LEN: usize = 12;

    pub fn compute(
        family: Family,
        table: Table,
        chain: &str,
        content: &str,
        occurrence: usize,
    ) -> RuleId {
        let mut hasher = Sha256::new();
        for part in [family.name(), table.name(), chain, content] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hasher.update(occurrence.to_le_bytes());
        let digest = hasher.finalize();
        let hex: String = digest
            .iter()
            .take(Self::LEN / 2)
            .map(|b| format!("{b:02x}"))
            .collect();
        RuleId(hex)
    }

    /// Reads an id from a comment that starts with `fws:`.
    pub fn from_comment(comment: &str) -> Option<RuleId> {
        let rest = comment.strip_prefix(ID_TAG)?;
        let hex = rest.split(' ').next()?;
        let valid = hex.len() == Self::LEN
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        valid.then(|| RuleId(hex.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One rule fwscript owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnedRule {
    pub id: RuleId,
    /// The rule's arguments after `-A CHAIN`, id comment included, exactly as
    /// fwscript writes them to iptables-restore (or, for a rule read back from
    /// the kernel, as iptables-save printed them).
    pub spec: String,
    /// The script call that made it; `None` for rules read from the kernel.
    pub origin: Option<Origin>,
}

/// A jump from a built-in chain into fwscript's own chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookRule {
    pub hook: Hook,
    pub rule: OwnedRule,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnedChain {
    pub name: String,
    pub rules: Vec<OwnedRule>,
}

/// What fwscript owns in one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableRuleset {
    /// Policies of built-in chains that fwscript decides; the others are left
    /// alone.
    pub policies: BTreeMap<Hook, Policy>,
    /// At most one hook per built-in chain.
    pub hooks: Vec<HookRule>,
    /// Owned chains, in the order they are declared and shown.
    pub chains: Vec<OwnedChain>,
}

impl TableRuleset {
    pub fn chain(&self, name: &str) -> Option<&OwnedChain> {
        self.chains.iter().find(|c| c.name == name)
    }

    pub fn hook(&self, hook: Hook) -> Option<&HookRule> {
        self.hooks.iter().find(|h| h.hook == hook)
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.hooks.is_empty() && self.chains.is_empty()
    }
}

/// Everything fwscript owns in one address family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ruleset {
    pub family: Family,
    pub tables: BTreeMap<Table, TableRuleset>,
}

impl Ruleset {
    pub fn empty(family: Family) -> Ruleset {
        Ruleset {
            family,
            tables: BTreeMap::new(),
        }
    }

    pub fn rule_count(&self) -> usize {
        self.tables
            .values()
            .map(|t| t.hooks.len() + t.chains.iter().map(|c| c.rules.len()).sum::<usize>())
            .sum()
    }
}

/// The comment argument that tags a rule: `fws:<id>` then the user's words.
pub fn id_comment(id: &RuleId, user_comment: Option<&str>) -> String {
    match user_comment {
        Some(text) => format!("{ID_TAG}{id} {text}"),
        None => format!("{ID_TAG}{id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_every_part() {
        let base = RuleId::compute(Family::Ipv4, Table::Filter, "FWS-INPUT", "-j ACCEPT", 0);
        assert_eq!(base.as_str().len(), RuleId::LEN);
        assert_ne!(
            base,
            RuleId::compute(Family::Ipv6, Table::Filter, "FWS-INPUT", "-j ACCEPT", 0)
        );
        assert_ne!(
            base,
            RuleId::compute(Family::Ipv4, Table::Nat, "FWS-INPUT", "-j ACCEPT", 0)
        );
        assert_ne!(
            base,
            RuleId::compute(Family::Ipv4, Table::Filter, "FWS-OUTPUT", "-j ACCEPT", 0)
        );
        assert_ne!(
            base,
            RuleId::compute(Family::Ipv4, Table::Filter, "FWS-INPUT", "-j DROP", 0)
        );
        assert_ne!(
            base,
            RuleId::compute(Family::Ipv4, Table::Filter, "FWS-INPUT", "-j ACCEPT", 1)
        );
        // Parts are separated, so moving text between them changes the id.
        assert_ne!(
            RuleId::compute(Family::Ipv4, Table::Filter, "FWS-A", "B", 0),
            RuleId::compute(Family::Ipv4, Table::Filter, "FWS-", "AB", 0)
        );
    }

    #[test]
    fn id_round_trips_through_comment() {
        let id = RuleId::compute(Family::Ipv4, Table::Filter, "FWS-INPUT", "-j ACCEPT", 0);
        assert_eq!(
            RuleId::from_comment(&id_comment(&id, None)),
            Some(id.clone())
        );
        assert_eq!(
            RuleId::from_comment(&id_comment(&id, Some("web server"))),
            Some(id)
        );
        assert_eq!(RuleId::from_comment("fws:xyz"), None);
        assert_eq!(RuleId::from_comment("f2b-sshd"), None);
        assert_eq!(RuleId::from_comment("fws:0123456789AB"), None);
    }
}
