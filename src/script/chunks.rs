//! Long stage chains are split into chunks (plan assembly). nf_tables
//! edits a rule by position in time proportional to its chain's length:
//! 70 ms in a chain of 10,000 rules, 10 ms in one of 500 (DESIGN.md 8). So
//! a stage past [`SPLIT_ABOVE`] rules jumps to chunks instead.
//!
//! Chunk boundaries are content-defined (as in rsync): a chunk ends after a
//! rule whose content hashes to a multiple of [`TARGET`]. Inserting or
//! deleting a rule then changes only the chunk it lands in; the others keep
//! their names, their rules and their counters.

use sha2::{Digest, Sha256};

use crate::netfilter::MAX_CHAIN_NAME;
use crate::plan::{Action, ChainPlan, Matches, Rule};
use crate::render::{matches_text, target_text};

/// Stages up to this many rules stay one chain.
pub const SPLIT_ABOVE: usize = 1024;
/// The chunk size aimed at.
const TARGET: u64 = 256;
/// No boundary closer than this to the last one…
const MIN: usize = 64;
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
pub fn split(mut stage: ChainPlan) -> Vec<ChainPlan> {
    let has_return = stage.rules.iter().any(|r| r.action == Action::Return);
    if stage.rules.len() <= SPLIT_ABOVE || has_return {
        return vec![stage];
    }
    let mut chunks: Vec<ChainPlan> = Vec::new();
    let mut current: Vec<Rule> = Vec::new();
    let mut names = Names::default();
    for rule in std::mem::take(&mut stage.rules) {
        let hash = content_hash(&rule);
        current.push(rule);
        let boundary = current.len() >= MAX || (current.len() >= MIN && hash % TARGET == 0);
        if boundary {
            chunks.push(names.chunk(&stage.name, &stage, std::mem::take(&mut current)));
        }
    }
    if !current.is_empty() {
        chunks.push(names.chunk(&stage.name, &stage, current));
    }
    let jumps = chunks.iter().map(|c| jump_to(&c.name)).collect();
    let mut chains = vec![ChainPlan {
        rules: jumps,
        ..stage
    }];
    chains.extend(chunks);
    chains
}

fn content_hash(rule: &Rule) -> u64 {
    let text = format!(
        "{}|{}|{}",
        matches_text(&rule.matches),
        rule.comment.as_deref().unwrap_or(""),
        target_text(&rule.action)
    );
    let digest = Sha256::digest(text.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Chunk names come from the chunk's first rule, so they stay put when
/// another chunk changes: `FWS-INPUT-ALLOW-3fa2c1`.
#[derive(Default)]
struct Names {
    used: std::collections::HashMap<String, usize>,
}

impl Names {
    fn chunk(&mut self, stage_name: &str, stage: &ChainPlan, rules: Vec<Rule>) -> ChainPlan {
        let digits = MAX_CHAIN_NAME - stage_name.len() - 1;
        let first = format!("{:016x}", content_hash(&rules[0]));
        let mut name = format!("{stage_name}-{}", &first[..digits.min(16)]);
        // Identical first rules (the same rule twice) still get two chains.
        let seen = self.used.entry(name.clone()).or_default();
        *seen += 1;
        if *seen > 1 {
            name.truncate(name.len() - 2);
            name.push_str(&format!("{:02x}", *seen % 256));
        }
        ChainPlan {
            name,
            hook: stage.hook,
            stage: stage.stage,
            rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::Hook;
    use crate::plan::{PortRange, Proto, Stage};

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
    fn a_stage_with_return_is_not_split() {
        let mut long = stage(1..=2_000);
        long.rules[10].action = Action::Return;
        assert_eq!(split(long).len(), 1);
    }
}
