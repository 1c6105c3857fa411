//! The read after a write (apply → write → **read back** → verify): a
//! write that touched a few chains of a big family reads back just those
//! chains, each with `iptables -t TABLE -S CHAIN`, all at the same time,
//! instead of the whole family with `iptables-save` — on nf_tables, where
//! that is cheaper (legacy reads the whole table for a listing anyway).
//!
//! On nf_tables a save costs about 8 µs a rule (85 ms for 10,000), while
//! listing one chain costs a process start and its own rules: a one-rule
//! edit of a 10,000-rule script read back the whole family to check two
//! rules. The verify is as strict as before for everything the write
//! touched: every touched chain, read whole (foreign rules in a touched
//! built-in chain included), must need no change at all. Chains the write
//! did not touch were read moments before, under the lock, and needed no
//! change then; the family as recorded afterwards is that read with the
//! touched chains replaced by what was read back.

use std::collections::{BTreeMap, BTreeSet};

use crate::backend::{Backend, BackendError};
use crate::diff::Changeset;
use crate::live::{LiveState, ParseError};
use crate::netfilter::{Family, Hook, Table};
use crate::ruleset::{Ruleset, TableRuleset};

/// More chains than this are read back with one whole save: each chain is a
/// process of its own.
const MOST_CHAINS: usize = 4;
/// A family smaller than this is read back whole: its save costs little
/// more than one process start.
const FEWEST_RULES: usize = 1_000;

/// The chains a changeset writes, table by table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    tables: BTreeMap<Table, BTreeSet<String>>,
}

impl Touched {
    pub fn of(changes: &Changeset) -> Touched {
        let mut touched = Touched::default();
        for (table, change) in changes.changes() {
            touched
                .tables
                .entry(table)
                .or_default()
                .insert(change.chain().to_string());
        }
        touched
    }

    fn contains(&self, table: Table, chain: &str) -> bool {
        self.tables.get(&table).is_some_and(|c| c.contains(chain))
    }

    fn chains(&self) -> impl Iterator<Item = (Table, &str)> {
        self.tables
            .iter()
            .flat_map(|(&table, chains)| chains.iter().map(move |c| (table, c.as_str())))
    }

    /// Whether reading back only these chains beats one whole save of the
    /// family, as it was before the write: a few chains of a big family,
    /// holding at most half its rules.
    pub fn worth_reading_alone(&self, before: &LiveState) -> bool {
        let rules = |chains: &mut dyn Iterator<Item = (Table, &str)>| -> usize {
            chains
                .filter_map(|(table, name)| before.table(table)?.chain(name))
                .map(|c| c.rules.len())
                .sum()
        };
        let all =
            rules(&mut before.tables.iter().flat_map(|(&table, live)| {
                live.chains.iter().map(move |c| (table, c.name.as_str()))
            }));
        let touched = rules(&mut self.chains());
        self.chains().count() <= MOST_CHAINS && all >= FEWEST_RULES && touched * 2 <= all
    }

    /// The touched chains as the kernel holds them now, read one process a
    /// chain, all at the same time.
    pub fn read(&self, backend: &dyn Backend, family: Family) -> Result<LiveState, BackendError> {
        let chains: Vec<(Table, &str)> = self.chains().collect();
        let listings: Vec<Result<Option<String>, BackendError>> = std::thread::scope(|scope| {
            let readers: Vec<_> = chains
                .iter()
                .map(|&(table, chain)| {
                    scope.spawn(move || backend.list_chain(family, table, chain))
                })
                .collect();
            readers
                .into_iter()
                .map(|r| r.join().expect("reader panicked"))
                .collect()
        });
        let mut found = Vec::new();
        for (&(table, _), listing) in chains.iter().zip(listings) {
            if let Some(text) = listing? {
                found.push((table, text));
            }
        }
        Ok(parse_listings(family, &found)?)
    }

    /// `desired` cut to the touched chains: their rules, and the hooks and
    /// policies of touched built-in chains. Diffed against [`Touched::read`]
    /// it finds exactly what a whole diff finds in those chains, because
    /// the diff works chain by chain.
    pub fn restrict(&self, desired: &Ruleset) -> Ruleset {
        let tables = desired
            .tables
            .iter()
            .filter(|(table, _)| self.tables.contains_key(table))
            .map(|(&table, rules)| {
                let touched = |hook: Hook| self.contains(table, hook.chain_name());
                let cut = TableRuleset {
                    policies: rules
                        .policies
                        .iter()
                        .filter(|(&hook, _)| touched(hook))
                        .map(|(&hook, &policy)| (hook, policy))
                        .collect(),
                    hooks: rules
                        .hooks
                        .iter()
                        .filter(|h| touched(h.hook))
                        .cloned()
                        .collect(),
                    chains: rules
                        .chains
                        .iter()
                        .filter(|c| self.contains(table, &c.name))
                        .cloned()
                        .collect(),
                };
                (table, cut)
            })
            .collect();
        Ruleset {
            family: desired.family,
            tables,
            // The rule diff never looks at sets: they are verified apart.
            sets: Vec::new(),
        }
    }

    /// The family now: `before` (the read the write was planned on) with
    /// every touched chain as `read` back, or gone when it was not read.
    pub fn merge(&self, before: &LiveState, read: &LiveState) -> LiveState {
        let mut merged = before.clone();
        for (table, name) in self.chains() {
            let into = merged.tables.entry(table).or_default();
            match read.table(table).and_then(|t| t.chain(name)) {
                Some(now) => match into.chain_mut(name) {
                    Some(old) => *old = now.clone(),
                    None => into.chains.push(now.clone()),
                },
                None => into.chains.retain(|c| c.name != name),
            }
        }
        merged
    }
}

/// Listings of `iptables -S CHAIN` as one state: written out in
/// iptables-save's form (declarations first, then rules) and parsed as a
/// save is, so a rule reads exactly as a whole save would have it.
fn parse_listings(family: Family, listings: &[(Table, String)]) -> Result<LiveState, ParseError> {
    let mut text = String::new();
    for table in Table::ALL {
        let mine: Vec<&str> = listings
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, text)| text.as_str())
            .collect();
        if mine.is_empty() {
            continue;
        }
        text.push_str(&format!("*{table}\n"));
        let lines = || mine.iter().flat_map(|listing| listing.lines());
        for line in lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("-P"), Some(chain), Some(policy)) => {
                    text.push_str(&format!(":{chain} {policy} [0:0]\n"));
                }
                (Some("-N"), Some(chain), None) => text.push_str(&format!(":{chain} - [0:0]\n")),
                _ => {}
            }
        }
        for line in lines() {
            if !line.starts_with("-P ") && !line.starts_with("-N ") {
                // `-A` lines, and whatever else the parser should refuse.
                text.push_str(line);
                text.push('\n');
            }
        }
        text.push_str("COMMIT\n");
    }
    LiveState::parse(family, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply;
    use crate::backend::fake::Fake;
    use crate::diff::{diff, restore_input};
    use crate::forms::KernelForms;
    use crate::transaction::desired;

    fn plan(script: &str) -> Vec<Ruleset> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fw.rhai");
        std::fs::write(&path, script).unwrap();
        desired(&crate::script::evaluate(&path).unwrap())
    }

    /// A kernel holding `script`, and the survey of `edited` against it.
    fn written(script: &str, edited: &str) -> (Fake, apply::Survey) {
        let kernel = Fake::new();
        let first = apply::survey(&kernel, plan(script), &KernelForms::default()).unwrap();
        apply::apply(&kernel, &first).unwrap();
        let survey = apply::survey(&kernel, plan(edited), &KernelForms::default()).unwrap();
        (kernel, survey)
    }

    const BIG: &str = "for p in 1..=3000 { allow_tcp(p); }\n";

    #[test]
    fn a_one_rule_edit_of_a_big_family_reads_back_its_chains_only() {
        let (kernel, survey) = written(BIG, &format!("{BIG}allow_tcp(60001);\n"));
        let family = &survey.families[0];
        let touched = Touched::of(&family.changes);
        assert_eq!(touched.chains().count(), 1, "{touched:?}");
        assert!(touched.worth_reading_alone(&family.live));
        kernel
            .restore(Family::Ipv4, &restore_input(&family.changes).text)
            .unwrap();
        let read = touched.read(&kernel, Family::Ipv4).unwrap();
        assert_eq!(read.tables[&Table::Filter].chains.len(), 1);
        let left = diff(
            &read,
            &touched.restrict(&family.desired),
            &KernelForms::default(),
        );
        assert!(left.is_empty(), "{left:?}");
        // The merged family is what a whole read gives.
        assert_eq!(
            touched.merge(&family.live, &read),
            kernel.state(Family::Ipv4)
        );
    }

    #[test]
    fn a_partial_read_back_finds_what_a_whole_one_finds() {
        let (kernel, survey) = written(BIG, &format!("{BIG}allow_tcp(60001);\n"));
        let family = &survey.families[0];
        let touched = Touched::of(&family.changes);
        // The write "succeeded" but left the touched chain short of a rule.
        let mut input = restore_input(&family.changes).text;
        input = input
            .lines()
            .filter(|l| !l.contains("--dport 60001"))
            .map(|l| format!("{l}\n"))
            .collect();
        kernel.restore(Family::Ipv4, &input).unwrap();
        let read = touched.read(&kernel, Family::Ipv4).unwrap();
        let left = diff(
            &read,
            &touched.restrict(&family.desired),
            &KernelForms::default(),
        );
        let whole = diff(
            &kernel.state(Family::Ipv4),
            &family.desired,
            &KernelForms::default(),
        );
        assert_eq!(left, whole);
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn a_deleted_chain_reads_back_as_gone() {
        let (kernel, survey) = written(&format!("{BIG}block(\"192.0.2.1\");\n"), BIG);
        let family = &survey.families[0];
        let touched = Touched::of(&family.changes);
        assert!(
            family
                .changes
                .changes()
                .any(|(_, c)| matches!(c, crate::diff::Change::DeleteChain { .. })),
            "{touched:?}"
        );
        assert!(touched.worth_reading_alone(&family.live));
        kernel
            .restore(Family::Ipv4, &restore_input(&family.changes).text)
            .unwrap();
        let read = touched.read(&kernel, Family::Ipv4).unwrap();
        let merged = touched.merge(&family.live, &read);
        assert_eq!(merged, kernel.state(Family::Ipv4));
        assert!(diff(&merged, &family.desired, &KernelForms::default()).is_empty());
    }

    #[test]
    fn small_families_and_wide_writes_read_back_whole() {
        let (_, survey) = written(
            "for p in 1..=300 { allow_tcp(p); }\n",
            "for p in 1..=301 { allow_tcp(p); }\n",
        );
        let family = &survey.families[0];
        assert!(!Touched::of(&family.changes).worth_reading_alone(&family.live));
        // Every chunk rewritten: too many chains to list one by one.
        let (_, survey) = written(BIG, "for p in 1..=3000 { allow_tcp(p + 10000); }\n");
        let family = &survey.families[0];
        assert!(!Touched::of(&family.changes).worth_reading_alone(&family.live));
        // The first write of all: nothing to compare with.
        let kernel = Fake::new();
        let survey = apply::survey(&kernel, plan(BIG), &KernelForms::default()).unwrap();
        let family = &survey.families[0];
        assert!(!Touched::of(&family.changes).worth_reading_alone(&family.live));
    }

    #[test]
    fn listings_parse_as_a_save_does() {
        let listings = vec![
            (
                Table::Filter,
                "-P INPUT DROP\n-A INPUT -m comment --comment \"fws:0a0a0a0a0a01\" -j FWS-INPUT\n"
                    .to_string(),
            ),
            (
                Table::Filter,
                "-N FWS-INPUT\n-A FWS-INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n".to_string(),
            ),
        ];
        let live = parse_listings(Family::Ipv4, &listings).unwrap();
        let filter = &live.tables[&Table::Filter];
        assert_eq!(filter.chains.len(), 2);
        assert_eq!(filter.chain("INPUT").unwrap().rules.len(), 1);
        assert!(filter.chain("INPUT").unwrap().rules[0].id.is_some());
        assert_eq!(filter.chain("FWS-INPUT").unwrap().policy, None);
        let odd = vec![(Table::Filter, "-N FWS-A\n-Z FWS-A\n".to_string())];
        assert!(parse_listings(Family::Ipv4, &odd).is_err());
    }
}
