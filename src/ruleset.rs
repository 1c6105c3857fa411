//! The owned kernel state as text, one family at a time: what `render`
//! produces from a plan, what `diff` compares the live kernel against, and
//! what a snapshot of the live kernel turns back into for `rollback`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::netfilter::{Family, Hook, Policy, Table, ID_TAG, OWNED_PREFIX};
use crate::sets::OwnedSet;

/// Where in the user's script a rule came from (the call site, never a line
/// inside stdlib/).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: usize,
    /// `col` in JSON, as every other location fwscript prints.
    #[serde(rename = "col")]
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
        // By hand: a `format!` per byte was a tenth of rendering a plan.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(Self::LEN);
        for b in &digest[..Self::LEN / 2] {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 15)]));
        }
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

/// Read back from the state folder: only a well-formed id is one.
impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RuleId, D::Error> {
        let hex = String::deserialize(deserializer)?;
        RuleId::from_comment(&format!("{ID_TAG}{hex}"))
            .filter(|id| id.0 == hex)
            .ok_or_else(|| serde::de::Error::custom(format!("`{hex}` is not a rule id")))
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

/// Where a hook sits in its built-in chain. fwscript's denials come first
/// and its permissions last, so that nothing it accepts skips a ban another
/// program (fail2ban, sshguard, an admin) put in the same chain, whichever
/// was there first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Inserted at position 1 when missing, left where found: the jump to
    /// a chain that can only drop, which bypasses nobody's ban.
    Top,
    /// Kept the last rule of the chain, moved below any rule that lands
    /// after it: the jump to everything that can accept.
    Bottom,
}

impl Placement {
    /// The placement of a hook that jumps to `target` in `table`. In the
    /// filter table the entry chain (`FWS-INPUT`) holds everything that can
    /// accept and goes last; every other hook (to a deny stage, or the one
    /// hook of a nat or mangle chain) goes on top. Render and the reading
    /// of the kernel both place hooks by this rule, so a snapshot read back
    /// from the kernel puts its hooks where render would.
    pub fn of(table: Table, target: &str) -> Placement {
        let entry = target
            .strip_prefix(OWNED_PREFIX)
            .and_then(Hook::parse_chain)
            .is_some();
        match (table, entry) {
            (Table::Filter, true) => Placement::Bottom,
            _ => Placement::Top,
        }
    }
}

/// A jump from a built-in chain into fwscript's own chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookRule {
    pub hook: Hook,
    pub placement: Placement,
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
    /// At most one hook per built-in chain and placement, in the order of
    /// the built-in chains, each chain's top hook before its bottom one.
    pub hooks: Vec<HookRule>,
    /// Owned chains, in the order they are declared and shown.
    pub chains: Vec<OwnedChain>,
}

impl TableRuleset {
    pub fn chain(&self, name: &str) -> Option<&OwnedChain> {
        self.chains.iter().find(|c| c.name == name)
    }

    pub fn hook(&self, hook: Hook, placement: Placement) -> Option<&HookRule> {
        self.hooks
            .iter()
            .find(|h| h.hook == hook && h.placement == placement)
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
    /// The owned ipsets of this family (`fws-…`), by name.
    #[serde(skip)]
    pub sets: Vec<OwnedSet>,
}

impl Ruleset {
    pub fn empty(family: Family) -> Ruleset {
        Ruleset {
            family,
            tables: BTreeMap::new(),
            sets: Vec::new(),
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

    #[test]
    fn ids_deserialize_only_when_well_formed() {
        let id: RuleId = serde_json::from_str("\"0123456789ab\"").unwrap();
        assert_eq!(id.as_str(), "0123456789ab");
        for bad in ["\"0123456789AB\"", "\"0123\"", "\"0123456789ab x\"", "7"] {
            assert!(serde_json::from_str::<RuleId>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_filter_entry_chain_is_hooked_at_the_bottom() {
        assert_eq!(Placement::of(Table::Filter, "FWS-INPUT"), Placement::Bottom);
        assert_eq!(
            Placement::of(Table::Filter, "FWS-FORWARD"),
            Placement::Bottom
        );
        assert_eq!(
            Placement::of(Table::Filter, "FWS-INPUT-DENY"),
            Placement::Top
        );
        assert_eq!(Placement::of(Table::Nat, "FWS-PREROUTING"), Placement::Top);
        assert_eq!(Placement::of(Table::Mangle, "FWS-INPUT"), Placement::Top);
        assert_eq!(Placement::of(Table::Filter, "f2b-sshd"), Placement::Top);
    }
}
