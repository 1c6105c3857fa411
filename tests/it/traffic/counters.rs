//! Packet counters read back from the kernel (`iptables-save -c`): which
//! rule, or which policy, dropped the packets a test sent.

use std::collections::BTreeMap;

use crate::common::netns::Netns;

/// The packet counter of every rule and every built-in chain's policy in
/// one family, keyed by the rule as `iptables-save` prints it (owned rules
/// are unique by their `fws:` id) or by `policy CHAIN VERDICT`.
pub struct Counters(BTreeMap<String, u64>);

impl Counters {
    pub fn read(netns: &Netns, family: &str) -> Counters {
        let mut counters = BTreeMap::new();
        let mut table = String::new();
        for line in netns.save(family, true).lines() {
            if let Some(name) = line.strip_prefix('*') {
                table = name.to_string();
            } else if let Some(chain) = line.strip_prefix(':') {
                // `:INPUT DROP [3:180]`: the packets that met the policy.
                let mut fields = chain.split(' ');
                let (name, verdict) = (fields.next().unwrap(), fields.next().unwrap());
                if verdict != "-" {
                    let key = format!("{table} policy {name} {verdict}");
                    counters.insert(key, packets(fields.next().unwrap()));
                }
            } else if line.starts_with('[') {
                let (count, rule) = line.split_once(' ').expect("counted rule");
                counters.insert(format!("{table} {rule}"), packets(count));
            }
        }
        Counters(counters)
    }

    /// The rules with `-j DROP` and the DROP policies whose counters rose
    /// since `before`.
    pub fn drops_since(&self, before: &Counters) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key.ends_with(" DROP"))
            .filter(|(key, &count)| count > before.0.get(*key).copied().unwrap_or(0))
            .map(|(key, _)| key.as_str())
            .collect()
    }

    /// The counter of the one rule containing `needle`.
    pub fn of(&self, needle: &str) -> u64 {
        let matching: Vec<_> = self.0.iter().filter(|(k, _)| k.contains(needle)).collect();
        assert_eq!(matching.len(), 1, "rules with {needle:?}: {matching:?}");
        *matching[0].1
    }
}

/// `[packets:bytes]` → packets.
fn packets(field: &str) -> u64 {
    let inner = field.trim_start_matches('[').trim_end_matches(']');
    let (packets, _) = inner.split_once(':').expect("[packets:bytes]");
    packets.parse().expect("a packet count")
}
