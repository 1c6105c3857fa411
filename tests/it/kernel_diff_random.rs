//! Random round trips through the real kernel: from one random owned state
//! to another, with drift made by hand in between, on both backends. Each
//! apply must verify (the kernel read back equals the target), and someone
//! else's rules and chains must come through untouched. Seeded, so a
//! failure names the seed that reproduces it.

use crate::common::netns::{kernel_available, Netns, FLAVORS};
use fwscript::apply;
use fwscript::backend::iptables::{Flavor, Iptables};
use fwscript::backend::Backend;
use fwscript::live::LiveState;
use fwscript::netfilter::{Family, Hook, Policy, Table};
use fwscript::ruleset::{
    id_comment, HookRule, OwnedChain, OwnedRule, RuleId, Ruleset, TableRuleset,
};

const ROUNDS: usize = 40;

/// xorshift64*: small, deterministic, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Builds rules the way render does: ids from content and occurrence.
struct ChainBuilder {
    family: Family,
    name: String,
    rules: Vec<OwnedRule>,
}

impl ChainBuilder {
    fn new(family: Family, name: &str) -> ChainBuilder {
        ChainBuilder {
            family,
            name: name.to_string(),
            rules: Vec::new(),
        }
    }

    fn push(&mut self, matches: &str, target: &str) {
        let content = format!("{matches}\u{1f}\u{1f}{target}");
        let occurrence = self
            .rules
            .iter()
            .filter(|r| r.spec.starts_with(matches) && r.spec.ends_with(target))
            .count();
        let id = RuleId::compute(self.family, Table::Filter, &self.name, &content, occurrence);
        let comment = format!("-m comment --comment \"{}\"", id_comment(&id, None));
        let spec = [matches, &comment, target]
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        self.rules.push(OwnedRule {
            id,
            spec,
            origin: None,
        });
    }
}

fn random_ruleset(rng: &mut Rng, family: Family) -> Ruleset {
    let ports = [22, 25, 80, 443, 993, 8080];
    let has = |rng: &mut Rng| rng.chance(70);
    let (with_a, with_b, with_forward) = (has(rng), has(rng), has(rng));
    let leaf = |rng: &mut Rng, name: &str| {
        let mut chain = ChainBuilder::new(family, name);
        for _ in 0..rng.below(12) {
            let port = ports[rng.below(ports.len())];
            let target = if rng.chance(20) {
                "-j DROP"
            } else {
                "-j ACCEPT"
            };
            chain.push(&format!("-p tcp -m tcp --dport {port}"), target);
        }
        OwnedChain {
            name: chain.name,
            rules: chain.rules,
        }
    };
    let mut chains = Vec::new();
    let mut entry = ChainBuilder::new(family, "FWS-INPUT");
    for _ in 0..rng.below(6) {
        match rng.below(3) {
            0 if with_a => entry.push("", "-j FWS-INPUT-A"),
            1 if with_b => entry.push("", "-j FWS-INPUT-B"),
            _ => entry.push(
                &format!("-p udp -m udp --dport {}", ports[rng.below(ports.len())]),
                "-j ACCEPT",
            ),
        }
    }
    chains.push(OwnedChain {
        name: entry.name,
        rules: entry.rules,
    });
    if with_a {
        chains.push(leaf(rng, "FWS-INPUT-A"));
    }
    if with_b {
        chains.push(leaf(rng, "FWS-INPUT-B"));
    }
    let mut hooks = vec![hook(family, Hook::Input)];
    if with_forward {
        chains.push(leaf(rng, "FWS-FORWARD"));
        hooks.push(hook(family, Hook::Forward));
    }
    let policy = |rng: &mut Rng| {
        if rng.chance(50) {
            Policy::Drop
        } else {
            Policy::Accept
        }
    };
    let policies = [
        (Hook::Input, policy(rng)),
        (Hook::Forward, policy(rng)),
        (Hook::Output, Policy::Accept),
    ]
    .into();
    let mut ruleset = Ruleset::empty(family);
    ruleset.tables.insert(
        Table::Filter,
        TableRuleset {
            policies,
            hooks,
            chains,
        },
    );
    ruleset
}

fn hook(family: Family, hook: Hook) -> HookRule {
    let mut chain = ChainBuilder::new(family, hook.chain_name());
    chain.push("", &format!("-j {}", hook.owned_chain()));
    HookRule {
        hook,
        rule: chain.rules.remove(0),
    }
}

/// What someone else keeps in the kernel: must never change.
const FOREIGN: &str =
    "$T -A INPUT -s $A -j ACCEPT && $T -N f2b-test && $T -A f2b-test -s $B -j DROP";

/// Someone edits fwscript's chains by hand. Returns how many edits.
fn drift(rng: &mut Rng, netns: &Netns, tool: &str, live: &LiveState) -> usize {
    let Some(filter) = live.tables.get(&Table::Filter) else {
        return 0;
    };
    let owned: Vec<_> = filter.owned_chains().collect();
    if owned.is_empty() {
        return 0;
    }
    let mut edits = 0;
    if rng.chance(70) {
        let chain = owned[rng.below(owned.len())];
        let line = if !chain.rules.is_empty() && rng.chance(50) {
            format!(
                "{tool} -D {} {}",
                chain.name,
                1 + rng.below(chain.rules.len())
            )
        } else {
            format!(
                "{tool} -I {} {} -p udp --dport 9 -j ACCEPT",
                chain.name,
                1 + rng.below(chain.rules.len() + 1)
            )
        };
        netns.sh(&line);
        edits += 1;
    }
    if rng.chance(20) {
        if let Some(comment) = hook_comment(filter) {
            netns.sh(&format!(
                "{tool} -D INPUT -m comment --comment \"{comment}\" -j FWS-INPUT"
            ));
            edits += 1;
        }
    }
    edits
}

/// The comment of the INPUT hook, to delete it by hand.
fn hook_comment(filter: &fwscript::live::LiveTable) -> Option<String> {
    let (_, _, rule) = filter.hooks().find(|(hook, _, _)| *hook == Hook::Input)?;
    let start = rule.spec.find("fws:")?;
    Some(rule.spec[start..start + 4 + RuleId::LEN].to_string())
}

fn foreign_lines(save: &str) -> Vec<String> {
    let foreign =
        |l: &str| l.contains("192.0.2.77") || l.contains("2001:db8::77") || l.contains("f2b-test");
    save.lines()
        .filter(|l| foreign(l))
        .map(str::to_string)
        .collect()
}

#[test]
fn random_targets_and_drift_always_verify_and_keep_foreign_rules() {
    if !kernel_available() {
        return;
    }
    for (flavor, kind) in FLAVORS.into_iter().zip([Flavor::Nft, Flavor::Legacy]) {
        let seed = 0x5eed_0000_u64 + u64::from(kind == Flavor::Legacy);
        let mut rng = Rng(seed);
        let netns = Netns::new(flavor);
        let backend = Iptables::new(kind, Some(&netns.name)).unwrap();
        for (tool, a, b) in [
            ("iptables", "192.0.2.77", "198.51.100.1"),
            ("ip6tables", "2001:db8::77", "2001:db8:1::1"),
        ] {
            netns.sh(&FOREIGN
                .replace("$T", &netns.tool(tool))
                .replace("$A", a)
                .replace("$B", b));
        }
        let foreign = [
            foreign_lines(&netns.save("ipv4", false)),
            foreign_lines(&netns.save("ipv6", false)),
        ];
        let (mut changes, mut drifted) = (0, 0);

        for round in 0..ROUNDS {
            let desired = vec![
                random_ruleset(&mut rng, Family::Ipv4),
                random_ruleset(&mut rng, Family::Ipv6),
            ];
            let survey = apply::survey(&backend, desired.clone()).unwrap();
            changes += survey.change_count();
            apply::apply(&backend, &survey)
                .unwrap_or_else(|err| panic!("{flavor}, seed {seed:#x}, round {round}: {err}"));
            for (i, family) in Family::ALL.into_iter().enumerate() {
                let live = LiveState::parse(family, &backend.save(family).unwrap()).unwrap();
                let owned = live.owned();
                let want = &desired[i].tables[&Table::Filter];
                let got = &owned.tables[&Table::Filter];
                let ids = |chains: &[OwnedChain]| -> Vec<(String, Vec<RuleId>)> {
                    chains
                        .iter()
                        .map(|c| {
                            (
                                c.name.clone(),
                                c.rules.iter().map(|r| r.id.clone()).collect(),
                            )
                        })
                        .collect()
                };
                let mut want_chains = ids(&want.chains);
                let mut got_chains = ids(&got.chains);
                want_chains.sort();
                got_chains.sort();
                assert_eq!(
                    got_chains, want_chains,
                    "{flavor} {family}, seed {seed:#x}, round {round}"
                );
                assert_eq!(
                    got.policies, want.policies,
                    "{flavor} {family}, round {round}"
                );
                let save = backend.save(family).unwrap();
                assert_eq!(
                    foreign_lines(&save),
                    foreign[i],
                    "{flavor} {family}, round {round}: foreign rules changed"
                );
                drifted += drift(&mut rng, &netns, &netns.tool(family.tool()), &live);
            }
        }
        // Not vacuous: the rounds changed a lot and drift happened often.
        assert!(changes > ROUNDS * 10, "{flavor}: only {changes} changes");
        assert!(drifted > ROUNDS / 2, "{flavor}: only {drifted} drift edits");
    }
}
