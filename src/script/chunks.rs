//! Long stage chains are split into chunks (plan assembly). nf_tables
//! edits a rule by position in time proportional to its chain's length:
//! 70 ms in a chain of 10,000 rules, 10 ms in one of 500 (docs/design.md). So
//! a stage past [`SPLIT_ABOVE`] rules jumps to chunks instead.
//!
//! Chunk boundaries are content-defined (as in rsync): a chunk ends after a
//! rule whose content hashes to a multiple of [`TARGET`]. Inserting or
//! deleting a rule then changes only the chunk it lands in; the others keep
//! their names, their rules and their counters. Past [`SOFT`] rules a
//! weaker test ends a chunk too, so almost none is cut at [`MAX`]: a cut
//! made by counting moves with every insert before it and renames (so
//! rewrites) the chunk after it.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::netfilter::{Hook, MAX_CHAIN_NAME};
use crate::plan::{Action, ChainPlan, Matches, PortRange, Rule, Stage};
use crate::render::target_text;

/// Stages up to this many rules stay one chain.
pub const SPLIT_ABOVE: usize = 1024;
/// The chunk size aimed at.
const TARGET: u64 = 256;
/// No boundary closer than this to the last one…
const MIN: usize = 64;
/// …from here on one rule in [`SOFT_TARGET`] ends a chunk, not one in
/// [`TARGET`] (a 10,000-address script had a chunk cut at [`MAX`], and an
/// insert there rewrote the 180 rules of the next chunk)…
const SOFT: usize = 512;
const SOFT_TARGET: u64 = 64;
/// …and one at the latest here, whatever the content.
const MAX: usize = 1024;

/// A jump from one owned chain to another, made by fwscript itself.
pub fn jump_to(chain: &str) -> Rule {
    Rule {
        matches: Matches::default(),
        action: Action::Jump {
            chain: chain.to_string(),
        },
        comment: None,
        origin: None,
    }
}

/// The stage chain, and its chunks when it is long. A stage holding a
/// `return` stays whole: in a chunk it would end the chunk, not the stage.
#[cfg(test)]
pub fn split(stage: ChainPlan) -> Vec<ChainPlan> {
    let mut chunker = Chunker::default();
    for rule in stage.rules {
        chunker.push(rule);
    }
    chunker.finish(stage.name, stage.hook, stage.stage)
}

/// A stage's rules as the script makes them, cut into chunks on the way:
/// a boundary depends only on a rule and how far it is into its chunk, so
/// each rule is moved once, into the chunk it stays in, instead of into a
/// stage first and a chunk later (a rule is a few hundred bytes; a
/// 10,000-call script makes 20,000 of them).
#[derive(Debug, Default)]
pub struct Chunker {
    chunks: Vec<Vec<Rule>>,
    /// The last chunk has ended: the next rule starts another.
    ended: bool,
    len: usize,
    has_return: bool,
    /// What a rule's content hash is taken over, kept between rules.
    scratch: Vec<u8>,
}

impl Chunker {
    pub fn push(&mut self, rule: Rule) {
        self.has_return |= rule.action == Action::Return;
        self.len += 1;
        if self.ended || self.chunks.is_empty() {
            // Most stages are short: only a stage already past its first
            // chunk gets room for a whole one up front.
            let room = if self.chunks.is_empty() { 0 } else { SOFT };
            self.chunks.push(Vec::with_capacity(room));
            self.ended = false;
        }
        let chunk = self.chunks.last_mut().expect("a chunk was just made");
        // Only a rule at least MIN into its chunk can end it, so only
        // those are hashed.
        let len = chunk.len() + 1;
        self.ended = len >= MAX
            || match len {
                ..MIN => false,
                MIN..SOFT => content_hash(&rule, &mut self.scratch).is_multiple_of(TARGET),
                _ => content_hash(&rule, &mut self.scratch).is_multiple_of(SOFT_TARGET),
            };
        chunk.push(rule);
    }

    /// The rules pushed, in order, chunks undone.
    pub fn into_rules(self) -> impl Iterator<Item = Rule> {
        self.chunks.into_iter().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The stage chain `name`, and its chunks when it is long.
    pub fn finish(self, name: String, hook: Hook, stage: Option<Stage>) -> Vec<ChainPlan> {
        let mut chunks = self.chunks;
        if self.len <= SPLIT_ABOVE || self.has_return {
            let rules = if chunks.len() == 1 {
                chunks.pop().unwrap_or_default()
            } else {
                let mut rules = Vec::with_capacity(self.len);
                for chunk in chunks {
                    rules.extend(chunk);
                }
                rules
            };
            return vec![ChainPlan {
                name,
                hook,
                stage,
                rules,
            }];
        }
        let mut names = Names::default();
        let chunks: Vec<ChainPlan> = chunks
            .into_iter()
            .map(|mut rules| {
                rules.shrink_to_fit();
                names.chunk(&name, hook, stage, rules)
            })
            .collect();
        let jumps = chunks.iter().map(|c| jump_to(&c.name)).collect();
        let mut chains = vec![ChainPlan {
            name,
            hook,
            stage,
            rules: jumps,
        }];
        chains.extend(chunks);
        chains
    }
}

/// A hash of everything that makes a rule what it is (not its origin),
/// fed field by field: formatting each rule's text only to hash it was the
/// larger part of assembling a 10,000-rule plan.
fn content_hash(rule: &Rule, scratch: &mut Vec<u8>) -> u64 {
    scratch.clear();
    let mut feed = Feed(scratch);
    let m = &rule.matches;
    feed.net(b's', m.src.as_ref());
    feed.net(b'd', m.dst.as_ref());
    feed.text(b'x', m.src_set.as_ref().map(|s| s.name.as_str()));
    feed.text(b'y', m.dst_set.as_ref().map(|s| s.name.as_str()));
    feed.text(b'i', m.iface.as_deref());
    feed.text(b'o', m.oface.as_deref());
    feed.text(b'p', m.proto.map(|p| p.iptables_name()));
    feed.ports(b'S', m.sport);
    feed.ports(b'D', m.dport);
    for state in &m.state {
        feed.text(b'c', Some(state.name()));
    }
    if let Some(port) = m.dnat_from_port {
        feed.bytes(b'n', &port.to_le_bytes());
    }
    // Rare in long stages: their plain-data form is exact enough.
    if let Some(flags) = &m.tcp_flags {
        feed.text(b'f', Some(&format!("{flags:?}")));
    }
    if let Some(icmp) = &m.icmp_type {
        feed.text(b'I', Some(&icmp.name));
    }
    if let Some(limit) = &m.limit {
        feed.text(b'l', Some(&format!("{limit:?}")));
    }
    if let Some(recent) = &m.recent {
        feed.text(b'r', Some(&format!("{recent:?}")));
    }
    feed.text(b'#', rule.comment.as_deref());
    match &rule.action {
        Action::Accept => feed.text(b'j', Some("ACCEPT")),
        Action::Drop => feed.text(b'j', Some("DROP")),
        Action::Reject => feed.text(b'j', Some("REJECT")),
        Action::Return => feed.text(b'j', Some("RETURN")),
        other => feed.text(b'J', Some(&target_text(other))),
    }
    // Hashed whole: one call on a few dozen bytes, not one per field.
    let digest = Sha256::digest(&*feed.0);
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Tagged, length-prefixed fields, so no two rules feed the same bytes.
struct Feed<'a>(&'a mut Vec<u8>);

impl Feed<'_> {
    fn bytes(&mut self, tag: u8, bytes: &[u8]) {
        self.0.push(tag);
        self.0.extend((bytes.len() as u32).to_le_bytes());
        self.0.extend_from_slice(bytes);
    }

    fn text(&mut self, tag: u8, text: Option<&str>) {
        if let Some(text) = text {
            self.bytes(tag, text.as_bytes());
        }
    }

    fn net(&mut self, tag: u8, net: Option<&IpNet>) {
        let Some(net) = net else {
            return;
        };
        let mut bytes = [0; 17];
        let len = match net.addr() {
            IpAddr::V4(addr) => {
                bytes[..4].copy_from_slice(&addr.octets());
                4
            }
            IpAddr::V6(addr) => {
                bytes[..16].copy_from_slice(&addr.octets());
                16
            }
        };
        bytes[len] = net.prefix_len();
        self.bytes(tag, &bytes[..=len]);
    }

    fn ports(&mut self, tag: u8, ports: Option<PortRange>) {
        if let Some(ports) = ports {
            let [a, b] = ports.first.to_le_bytes();
            let [c, d] = ports.last.to_le_bytes();
            self.bytes(tag, &[a, b, c, d]);
        }
    }
}

/// Chunk names come from the chunk's first rule, so they stay put when
/// another chunk changes: `FWS-INPUT-ALLOW-3fa2c1`. Two chunks that start
/// with the same rule (a rule repeated over a whole chunk) get names drawn
/// from the first name and a counter until one is free: names are unique
/// whatever the rules.
#[derive(Default)]
struct Names {
    used: HashSet<String>,
}

impl Names {
    fn chunk(
        &mut self,
        stage_name: &str,
        hook: Hook,
        stage: Option<Stage>,
        rules: Vec<Rule>,
    ) -> ChainPlan {
        let digits = (MAX_CHAIN_NAME - stage_name.len() - 1).min(16);
        let first = content_hash(&rules[0], &mut Vec::new());
        let mut name = format!("{stage_name}-{}", &format!("{first:016x}")[..digits]);
        let mut round: u64 = 0;
        while !self.used.insert(name.clone()) {
            round += 1;
            let mut feed = Sha256::new();
            feed.update(first.to_le_bytes());
            feed.update(round.to_le_bytes());
            let digest = feed.finalize();
            let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            name = format!("{stage_name}-{}", &hex[..digits]);
        }
        ChainPlan {
            name,
            hook,
            stage,
            rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{PortRange, Proto};

    fn allow(port: u16) -> Rule {
        Rule {
            matches: Matches {
                proto: Some(Proto::Tcp),
                dport: Some(PortRange::single(port)),
                ..Matches::default()
            },
            ..jump_to("x")
        }
    }

    fn stage(ports: impl Iterator<Item = u16>) -> ChainPlan {
        let rules = ports
            .map(|p| Rule {
                action: Action::Accept,
                ..allow(p)
            })
            .collect();
        ChainPlan {
            name: "FWS-INPUT-ALLOW".into(),
            hook: Hook::Input,
            stage: Some(Stage::Allow),
            rules,
        }
    }

    fn chunk_names(chains: &[ChainPlan]) -> Vec<String> {
        chains[1..].iter().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn short_stages_stay_whole() {
        let chains = split(stage(1..=1024));
        assert_eq!(chains.len(), 1);
        assert_eq!(chains[0].rules.len(), 1024);
    }

    #[test]
    fn long_stages_split_in_order_within_bounds() {
        let chains = split(stage(1..=10_000));
        let chunks = &chains[1..];
        assert_eq!(chains[0].rules.len(), chunks.len(), "one jump per chunk");
        assert!(
            chunks.len() >= 10 && chunks.len() <= 156,
            "{} chunks",
            chunks.len()
        );
        assert!(chunks.iter().all(|c| c.rules.len() <= MAX));
        assert!(chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c.rules.len() >= MIN));
        let ports: Vec<u16> = chunks
            .iter()
            .flat_map(|c| &c.rules)
            .map(|r| r.matches.dport.unwrap().first)
            .collect();
        assert_eq!(
            ports,
            (1..=10_000).collect::<Vec<_>>(),
            "script order is kept"
        );
        assert!(chunks
            .iter()
            .all(|c| c.name.len() <= MAX_CHAIN_NAME && c.name.starts_with("FWS-INPUT-ALLOW-")));
        let mut names = chunk_names(&chains);
        names.sort();
        names.dedup();
        assert_eq!(names.len(), chunks.len(), "chunk names are unique");
    }

    /// Which chunk each port's rule is in.
    fn chunk_of(chains: &[ChainPlan]) -> std::collections::HashMap<u16, String> {
        chains[1..]
            .iter()
            .flat_map(|c| {
                c.rules
                    .iter()
                    .map(move |r| (r.matches.dport.unwrap().first, c.name.clone()))
            })
            .collect()
    }

    #[test]
    fn inserts_almost_never_move_other_rules() {
        // Ports spread over the whole range, as the addresses or ports of
        // a real list would be; three lists, an insert every 199 rules.
        let mut moving = 0;
        let mut tried = 0;
        for offset in 1..=3u32 {
            let ports: Vec<u16> = (0..10_000u32).map(|i| (i * 6 + offset) as u16).collect();
            let before = split(stage(ports.iter().copied()));
            assert!(
                before[1..].iter().all(|c| c.rules.len() < MAX),
                "no chunk is cut by counting"
            );
            let chunk = chunk_of(&before);
            // Not at 0: a new first rule renames the first chunk, by design.
            for at in (199..ports.len()).step_by(199) {
                let mut edited = ports.clone();
                edited.insert(at, 60_001);
                let after = chunk_of(&split(stage(edited.into_iter())));
                tried += 1;
                if ports.iter().any(|p| chunk[p] != after[p]) {
                    moving += 1;
                }
            }
        }
        assert!(
            moving * 100 <= tried,
            "{moving} of {tried} inserts moved other rules"
        );
    }

    #[test]
    fn an_insert_changes_one_chunk() {
        let before = split(stage(1..=10_000));
        let after = split(stage((1..=5_000).chain([60_000]).chain(5_001..=10_000)));
        let before_names = chunk_names(&before);
        let after_names = chunk_names(&after);
        let changed: Vec<_> = after[1..]
            .iter()
            .filter(|c| !before[1..].contains(c))
            .collect();
        assert!(changed.len() <= 2, "{} chunks changed", changed.len());
        let kept = after_names
            .iter()
            .filter(|n| before_names.contains(n))
            .count();
        assert!(
            kept + 2 >= before_names.len(),
            "{kept} of {} chunk names kept",
            before_names.len()
        );
    }

    #[test]
    fn identical_rules_never_share_a_chunk_name() {
        for count in [1_025, 2_049, 70_000] {
            let chains = split(stage(std::iter::repeat_n(22, count)));
            let mut names = chunk_names(&chains);
            let total = names.len();
            names.sort();
            names.dedup();
            assert_eq!(
                names.len(),
                total,
                "{count} identical rules: chunk names repeat"
            );
            assert!(names.iter().all(|n| n.len() <= MAX_CHAIN_NAME));
            assert_eq!(
                chains[1..].iter().map(|c| c.rules.len()).sum::<usize>(),
                count
            );
        }
    }

    #[test]
    fn a_stage_with_return_is_not_split() {
        let mut long = stage(1..=2_000);
        long.rules[10].action = Action::Return;
        assert_eq!(split(long).len(), 1);
    }
}
