//! nf_tables tables of other programs (survey → **warning**): firewalld,
//! an `nftables.service` ruleset, Docker's nftables backend, or, on a host
//! whose iptables is legacy, rules put in with iptables-nft. The kernel
//! runs their chains on the same hooks as fwscript's, and a packet must get
//! through every one of them: a chain of theirs that drops shuts what the
//! script opens, and no read of fwscript's shows it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Tables that iptables-nft makes itself, by family.
const IPTABLES_TABLES: [&str; 5] = ["filter", "nat", "mangle", "raw", "security"];

/// Ban lists of known neighbours: drops aimed at attackers, which is what
/// they are for (the same as fail2ban's chains under iptables).
const BAN_TABLES: [&str; 4] = ["f2b-table", "sshguard", "crowdsec", "crowdsec6"];

/// The hooks on which a chain can drop what fwscript's rules accept.
const HOOKS: [&str; 4] = ["prerouting", "input", "forward", "output"];

/// One table of another program with chains on those hooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NftTable {
    /// nftables' family name: `inet`, `ip`, `ip6`.
    pub family: String,
    pub table: String,
    pub chains: Vec<BaseChain>,
    /// The rules in the whole table, once listed.
    pub rules: Option<usize>,
}

impl NftTable {
    /// A name to hand `nft list table` as one word: what nft's own syntax
    /// takes unquoted. Another table is not listed, only named.
    pub fn listable(&self) -> bool {
        let word = |s: &str| {
            s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        };
        word(&self.family) && word(&self.table)
    }

    /// Counts the rules in `json`, an `nft -j list table` of this table.
    pub fn count_rules(&mut self, json: &str) {
        let value: Option<serde_json::Value> = serde_json::from_str(json).ok();
        self.rules = value
            .as_ref()
            .and_then(|v| v.get("nftables")?.as_array())
            .map(|entries| entries.iter().filter(|e| e.get("rule").is_some()).count());
    }

    /// Whether it can decide a packet: a chain that drops by policy, or any
    /// rule (or rules not counted). Empty chains that accept decide nothing
    /// (Debian's stock `nftables.conf`).
    pub fn decides(&self) -> bool {
        self.rules != Some(0) || self.chains.iter().any(|c| c.policy != "accept")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseChain {
    pub name: String,
    pub hook: String,
    pub policy: String,
}

/// Whether table `table` of nft family `family` is another program's, one
/// worth a look: of a family whose hooks fwscript's rules share, not a
/// known ban list, and not iptables-nft's own on an nf_tables host.
pub fn another_programs(family: &str, table: &str, iptables_uses_nft: bool) -> bool {
    matches!(family, "inet" | "ip" | "ip6")
        && !BAN_TABLES.contains(&table)
        && !(iptables_uses_nft && family != "inet" && IPTABLES_TABLES.contains(&table))
}

/// The tables of other programs in `nft -j list chains` output: on an
/// nf_tables host (`iptables_uses_nft`) every table but iptables' own, on a
/// legacy host every one. `None` for output that is not nft's JSON.
pub fn found(json: &str, iptables_uses_nft: bool) -> Option<Vec<NftTable>> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let mut tables: BTreeMap<(String, String), Vec<BaseChain>> = BTreeMap::new();
    for entry in value.get("nftables")?.as_array()? {
        let Some(chain) = entry.get("chain") else {
            continue;
        };
        let text = |key: &str| chain.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let (Some(family), Some(table), Some(name)) = (text("family"), text("table"), text("name"))
        else {
            continue;
        };
        let Some(hook) = text("hook").filter(|h| HOOKS.contains(&h.as_str())) else {
            continue;
        };
        if !another_programs(&family, &table, iptables_uses_nft) {
            continue;
        }
        let policy = text("policy").unwrap_or_else(|| "accept".into());
        tables
            .entry((family, table))
            .or_default()
            .push(BaseChain { name, hook, policy });
    }
    Some(
        tables
            .into_iter()
            .map(|((family, table), chains)| NftTable {
                family,
                table,
                chains,
                rules: None,
            })
            .collect(),
    )
}

impl fmt::Display for NftTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hooks: Vec<String> = self
            .chains
            .iter()
            .map(|c| format!("{} (policy {})", c.hook, c.policy))
            .collect();
        let s = if hooks.len() > 1 { "s" } else { "" };
        let hooks = crate::hidden_rules::in_words(&hooks);
        let holds = match self.rules {
            Some(1) => "holds 1 rule and ".to_string(),
            Some(n) if n > 0 => format!("holds {n} rules and "),
            _ => String::new(),
        };
        write!(
            f,
            "nftables table `{family} {table}` {holds}has chains of its own on the {hooks} \
             hook{s}: the kernel runs them too, so they can drop what the script accepts, and \
             fwscript neither sees nor changes them; see them with `nft list table {family} \
             {table}`",
            family = self.family,
            table = self.table,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chains(entries: &[&str]) -> String {
        let mut all = vec!["{\"metainfo\": {\"version\": \"1.0.6\"}}"];
        all.extend(entries);
        format!("{{\"nftables\": [{}]}}", all.join(", "))
    }

    fn base(family: &str, table: &str, name: &str, hook: &str, policy: &str) -> String {
        format!(
            "{{\"chain\": {{\"family\": \"{family}\", \"table\": \"{table}\", \"name\": \
             \"{name}\", \"handle\": 1, \"type\": \"filter\", \"hook\": \"{hook}\", \"prio\": 0, \
             \"policy\": \"{policy}\"}}}}"
        )
    }

    #[test]
    fn only_other_programs_tables_with_chains_on_the_hooks_count() {
        let json = chains(&[
            &base("ip", "filter", "INPUT", "input", "drop"),
            &base("ip6", "nat", "PREROUTING", "prerouting", "accept"),
            &base("inet", "firewalld", "filter_INPUT", "input", "accept"),
            &base("inet", "firewalld", "filter_FORWARD", "forward", "drop"),
            &base("inet", "f2b-table", "f2b-chain", "input", "accept"),
            &base("netdev", "edge", "in", "ingress", "accept"),
            "{\"chain\": {\"family\": \"inet\", \"table\": \"guard\", \"name\": \"helper\", \
             \"handle\": 2}}",
        ]);
        let found = found(&json, true).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].table, "firewalld");
        assert_eq!(
            found[0].to_string(),
            "nftables table `inet firewalld` has chains of its own on the input (policy accept) \
             and forward (policy drop) hooks: the kernel runs them too, so they can drop what \
             the script accepts, and fwscript neither sees nor changes them; see them with `nft \
             list table inet firewalld`"
        );
        // On a legacy host, iptables-nft's tables are another program's.
        let legacy = found_tables(&json, false);
        assert_eq!(legacy, ["inet firewalld", "ip filter", "ip6 nat"]);
    }

    fn found_tables(json: &str, nft: bool) -> Vec<String> {
        found(json, nft)
            .unwrap()
            .iter()
            .map(|t| format!("{} {}", t.family, t.table))
            .collect()
    }

    #[test]
    fn empty_chains_that_accept_decide_nothing() {
        let json = chains(&[&base("inet", "filter", "input", "input", "accept")]);
        let mut table = found(&json, true).unwrap().remove(0);
        assert!(table.listable() && table.decides(), "not listed yet");
        table.count_rules(&chains(&[
            "{\"table\": {\"family\": \"inet\", \"name\": \"filter\"}}",
            &base("inet", "filter", "input", "input", "accept"),
        ]));
        assert_eq!(table.rules, Some(0));
        assert!(!table.decides());
        table.count_rules(&chains(&[
            "{\"rule\": {\"family\": \"inet\", \"table\": \"filter\", \"chain\": \"input\"}}",
            "{\"rule\": {\"family\": \"inet\", \"table\": \"filter\", \"chain\": \"input\"}}",
        ]));
        assert_eq!(table.rules, Some(2));
        assert!(table.decides());
        assert!(table
            .to_string()
            .starts_with("nftables table `inet filter` holds 2 rules and has chains of its own on the input (policy accept) hook:"));
        // A drop policy decides with no rule at all.
        let json = chains(&[&base("inet", "guard", "input", "input", "drop")]);
        let mut table = found(&json, true).unwrap().remove(0);
        table.count_rules(&chains(&[]));
        assert!(table.decides());
        // A name nft's syntax would not take as one word is not listed.
        let json = chains(&[&base("inet", "a b", "input", "input", "accept")]);
        assert!(!found(&json, true).unwrap()[0].listable());
    }

    #[test]
    fn output_that_is_not_nfts_json_tells_nothing() {
        assert_eq!(found("", true), None);
        assert_eq!(found("{\"other\": 1}", true), None);
        assert_eq!(found(&chains(&[]), true), Some(Vec::new()));
    }
}
