//! The diff (live + ruleset → **changeset** → apply): the smallest set of
//! positioned edits that turns what fwscript owns in the kernel into what
//! the script asks for, and its rendering as `iptables-restore --noflush`
//! input. Pure: no kernel access, deterministic output.

use std::collections::{BTreeSet, HashMap};
use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::live::{ForeignRule, LiveChain, LiveRule, LiveState, LiveTable};
use crate::netfilter::{Family, Hook, Policy, Table};
use crate::ruleset::{Origin, OwnedRule, RuleId, Ruleset, TableRuleset};

/// Every edit one family needs, table by table, in the order they must run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changeset {
    pub family: Family,
    /// Only tables with at least one change, in [`Table`] order.
    pub tables: Vec<TableChanges>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableChanges {
    pub table: Table,
    pub changes: Vec<Change>,
}

/// One edit. Positions are 1-based and count the chain as it is when this
/// edit runs, after every earlier edit in the same table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    CreateChain {
        chain: String,
    },
    InsertRule {
        chain: String,
        position: usize,
        /// The position is one past the end: written as `-A`, which costs
        /// the nf_tables backend no walk to the position.
        #[serde(skip)]
        append: bool,
        rule: OwnedRule,
    },
    DeleteRule {
        chain: String,
        position: usize,
        spec: String,
        /// `None`: the rule carries no fwscript id, someone added it by hand
        /// (drift).
        id: Option<RuleId>,
    },
    /// A jump into an owned chain, put at the top of a built-in chain.
    InsertHook {
        hook: Hook,
        rule: OwnedRule,
    },
    /// A stale or duplicate jump, deleted by its text: its position in a
    /// built-in chain shared with other programs is not fwscript's to rely on.
    DeleteHook {
        hook: Hook,
        spec: String,
    },
    /// Flush, then delete an owned chain the script no longer has.
    DeleteChain {
        chain: String,
        rules: usize,
    },
    SetPolicy {
        hook: Hook,
        from: Policy,
        to: Policy,
    },
}

impl Change {
    /// The chain the change is made in.
    pub fn chain(&self) -> &str {
        match self {
            Change::CreateChain { chain }
            | Change::InsertRule { chain, .. }
            | Change::DeleteRule { chain, .. }
            | Change::DeleteChain { chain, .. } => chain,
            Change::InsertHook { hook, .. }
            | Change::DeleteHook { hook, .. }
            | Change::SetPolicy { hook, .. } => hook.chain_name(),
        }
    }

    /// The script call that causes the change, for rules it adds.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            Change::InsertRule { rule, .. } | Change::InsertHook { rule, .. } => {
                rule.origin.as_ref()
            }
            _ => None,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateChain { chain } => write!(f, "create chain {chain}"),
            Change::InsertRule { position, rule, .. } => write!(f, "+ {position}: {}", rule.spec),
            Change::DeleteRule {
                position, spec, id, ..
            } => {
                let why = if id.is_some() {
                    "no longer in the script"
                } else {
                    "drift, not written by fwscript"
                };
                write!(f, "- {position}: {spec} ({why})")
            }
            Change::InsertHook { rule, .. } => write!(f, "+ 1: {} (hook)", rule.spec),
            Change::DeleteHook { spec, .. } => write!(f, "- {spec} (stale hook)"),
            Change::DeleteChain { chain, rules } => {
                write!(f, "delete chain {chain} ({rules} rules)")
            }
            Change::SetPolicy { from, to, .. } => write!(f, "policy {from} -> {to}"),
        }
    }
}

impl Changeset {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.changes.len()).sum()
    }

    pub fn changes(&self) -> impl Iterator<Item = (Table, &Change)> {
        self.tables
            .iter()
            .flat_map(|t| t.changes.iter().map(move |c| (t.table, c)))
    }
}

/// The changes that make what fwscript owns in `live` equal `desired`.
/// Foreign rules and chains are never part of them.
pub fn diff(live: &LiveState, desired: &Ruleset) -> Changeset {
    debug_assert_eq!(live.family, desired.family);
    let names: BTreeSet<Table> = live
        .tables
        .keys()
        .chain(desired.tables.keys())
        .copied()
        .collect();
    let empty_live = LiveTable::default();
    let empty_desired = TableRuleset::default();
    let tables = names
        .into_iter()
        .map(|table| TableChanges {
            table,
            changes: diff_table(
                live.tables.get(&table).unwrap_or(&empty_live),
                desired.tables.get(&table).unwrap_or(&empty_desired),
            ),
        })
        .filter(|t| !t.changes.is_empty())
        .collect();
    Changeset {
        family: live.family,
        tables,
    }
}

fn diff_table(live: &LiveTable, desired: &TableRuleset) -> Vec<Change> {
    let mut changes = Vec::new();

    // Chains first, so every jump below has its target.
    for chain in &desired.chains {
        if live.chain(&chain.name).is_none() {
            changes.push(Change::CreateChain {
                chain: chain.name.clone(),
            });
        }
    }
    for chain in &desired.chains {
        let live_rules = live.chain(&chain.name).map_or(&[][..], |c| &c.rules[..]);
        edit_chain(&chain.name, live_rules, &chain.rules, &mut changes);
    }

    // Hooks once the chains they enter are complete.
    let hooks: BTreeSet<Hook> = live
        .hooks()
        .map(|(hook, _, _)| hook)
        .chain(desired.hooks.iter().map(|h| h.hook))
        .collect();
    for hook in hooks {
        let wanted = desired.hook(hook).map(|h| &h.rule);
        let mut kept = false;
        for (_, _, rule) in live.hooks().filter(|(h, _, _)| *h == hook) {
            let keep = !kept && wanted.is_some_and(|w| rule.id.as_ref() == Some(&w.id));
            kept |= keep;
            if !keep {
                changes.push(Change::DeleteHook {
                    hook,
                    spec: rule.spec.clone(),
                });
            }
        }
        if let (Some(rule), false) = (wanted, kept) {
            changes.push(Change::InsertHook {
                hook,
                rule: rule.clone(),
            });
        }
    }

    // Chains go last, after every jump into them is gone.
    for chain in live.owned_chains() {
        if desired.chain(&chain.name).is_none() {
            changes.push(Change::DeleteChain {
                chain: chain.name.clone(),
                rules: chain.rules.len(),
            });
        }
    }

    for (&hook, &to) in &desired.policies {
        // A table the kernel does not have yet starts with ACCEPT policies.
        let from = live
            .chain(hook.chain_name())
            .and_then(|c: &LiveChain| c.policy)
            .unwrap_or(Policy::Accept);
        if from != to {
            changes.push(Change::SetPolicy { hook, from, to });
        }
    }
    changes
}

/// The minimal edit of one owned chain: keep the longest common subsequence
/// of ids in place (their counters keep counting), delete the other live
/// rules, insert the missing ones.
fn edit_chain(chain: &str, live: &[LiveRule], desired: &[OwnedRule], changes: &mut Vec<Change>) {
    let kept = common_subsequence(live, desired);
    let (mut i, mut j) = (0, 0);
    // `position` is the 0-based index the walk has reached in the chain as
    // edited so far, `len` that chain's length.
    let (mut position, mut len) = (0, live.len());
    for &(keep_i, keep_j) in kept.iter().chain([(live.len(), desired.len())].iter()) {
        for rule in &live[i..keep_i] {
            changes.push(Change::DeleteRule {
                chain: chain.to_string(),
                position: position + 1,
                spec: rule.spec.clone(),
                id: rule.id.clone(),
            });
            len -= 1;
        }
        for rule in &desired[j..keep_j] {
            changes.push(Change::InsertRule {
                chain: chain.to_string(),
                position: position + 1,
                append: position == len,
                rule: rule.clone(),
            });
            position += 1;
            len += 1;
        }
        // Step over the kept rule itself.
        position += 1;
        (i, j) = (keep_i + 1, keep_j + 1);
    }
}

/// Pairs `(live index, desired index)` of a longest common subsequence of
/// ids. Desired ids are unique within a chain (render counts occurrences
/// into them), so this is a longest increasing subsequence of the desired
/// indices in live order: O(n log n), exact, and fast on a 10,000-rule
/// chain replaced wholesale, where a generic O(ND) diff is not.
fn common_subsequence(live: &[LiveRule], desired: &[OwnedRule]) -> Vec<(usize, usize)> {
    let mut index: HashMap<&RuleId, usize> = HashMap::with_capacity(desired.len());
    for (j, rule) in desired.iter().enumerate() {
        index.entry(&rule.id).or_insert(j);
    }
    let pairs: Vec<(usize, usize)> = live
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| Some((i, *index.get(rule.id.as_ref()?)?)))
        .collect();

    // Patience: `tails[k]` is the pair ending the best increasing run of
    // length k + 1 found so far; `previous` links each pair to the one
    // before it in its run.
    let mut tails: Vec<usize> = Vec::new();
    let mut previous: Vec<Option<usize>> = Vec::with_capacity(pairs.len());
    for (k, &(_, j)) in pairs.iter().enumerate() {
        let length = tails.partition_point(|&t| pairs[t].1 < j);
        previous.push(length.checked_sub(1).map(|l| tails[l]));
        if length == tails.len() {
            tails.push(k);
        } else {
            tails[length] = k;
        }
    }
    let mut run = Vec::with_capacity(tails.len());
    let mut next = tails.last().copied();
    while let Some(k) = next {
        run.push(pairs[k]);
        next = previous[k];
    }
    run.reverse();
    run
}

/// A foreign rule in a built-in chain that fwscript hooks: it decides
/// packets before fwscript (above the hook) or sees what fwscript's chains
/// let through (below).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignWarning {
    pub family: Family,
    pub table: Table,
    pub chain: Hook,
    pub position: usize,
    pub spec: String,
    pub above_hook: bool,
}

impl fmt::Display for ForeignWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let effect = if self.above_hook {
            "above fwscript's hook: packets it matches never reach the script's rules"
        } else {
            "below fwscript's hook"
        };
        write!(
            f,
            "{} {} {} rule {} is not fwscript's ({effect}): `{}`",
            self.family, self.table, self.chain, self.position, self.spec
        )
    }
}

/// Foreign rules in the built-in chains `desired` hooks, for `plan` to show.
pub fn foreign_warnings(live: &LiveState, desired: &Ruleset) -> Vec<ForeignWarning> {
    let mut warnings = Vec::new();
    for (&table, wanted) in &desired.tables {
        let Some(live_table) = live.table(table) else {
            continue;
        };
        for hook in &wanted.hooks {
            // Where the hook will be: where it is now, or at the top.
            let hook_position = live_table
                .hooks()
                .find(|(h, _, rule)| *h == hook.hook && rule.id.as_ref() == Some(&hook.rule.id))
                .map_or(0, |(_, position, _)| position);
            for ForeignRule {
                hook: chain,
                position,
                spec,
            } in live_table.foreign_rules(hook.hook)
            {
                warnings.push(ForeignWarning {
                    family: live.family,
                    table,
                    chain,
                    position,
                    spec,
                    above_hook: position < hook_position,
                });
            }
        }
    }
    warnings
}

/// A changeset as `iptables-restore --noflush` input, with the script origin
/// of each line so a line the kernel rejects can be traced to the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreInput {
    pub text: String,
    /// One entry per line of `text`.
    pub origins: Vec<Option<Origin>>,
}

impl RestoreInput {
    /// Line `number` (1-based) and its origin.
    pub fn line(&self, number: usize) -> Option<(&str, Option<&Origin>)> {
        let text = self.text.lines().nth(number.checked_sub(1)?)?;
        Some((text, self.origins.get(number - 1)?.as_ref()))
    }
}

/// Renders the changeset for `iptables-restore --noflush`. Only commands
/// appear, never `:CHAIN` declarations: with `--noflush` a declaration of an
/// existing user chain flushes it, which would reset every counter.
pub fn restore_input(changes: &Changeset) -> RestoreInput {
    let mut input = RestoreInput {
        text: String::new(),
        origins: Vec::new(),
    };
    let line = |input: &mut RestoreInput, text: fmt::Arguments, origin: Option<&Origin>| {
        let _ = input.text.write_fmt(text);
        input.text.push('\n');
        input.origins.push(origin.cloned());
    };
    for TableChanges { table, changes } in &changes.tables {
        line(&mut input, format_args!("*{table}"), None);
        for change in changes {
            let origin = change.origin();
            match change {
                Change::CreateChain { chain } => line(&mut input, format_args!("-N {chain}"), None),
                Change::InsertRule {
                    chain,
                    append: true,
                    rule,
                    ..
                } => line(&mut input, format_args!("-A {chain} {}", rule.spec), origin),
                Change::InsertRule {
                    chain,
                    position,
                    rule,
                    ..
                } => line(
                    &mut input,
                    format_args!("-I {chain} {position} {}", rule.spec),
                    origin,
                ),
                Change::DeleteRule {
                    chain, position, ..
                } => line(&mut input, format_args!("-D {chain} {position}"), None),
                Change::InsertHook { hook, rule } => line(
                    &mut input,
                    format_args!("-I {hook} 1 {}", rule.spec),
                    origin,
                ),
                Change::DeleteHook { hook, spec } => {
                    line(&mut input, format_args!("-D {hook} {spec}"), None)
                }
                // Flushed here, deleted below once every doomed chain is
                // empty: they may jump to each other.
                Change::DeleteChain { chain, .. } => {
                    line(&mut input, format_args!("-F {chain}"), None)
                }
                Change::SetPolicy { hook, to, .. } => {
                    line(&mut input, format_args!("-P {hook} {to}"), None)
                }
            }
        }
        for change in changes {
            if let Change::DeleteChain { chain, .. } = change {
                line(&mut input, format_args!("-X {chain}"), None);
            }
        }
        line(&mut input, format_args!("COMMIT"), None);
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{HookRule, OwnedChain};

    fn id(n: u32) -> RuleId {
        RuleId::from_comment(&format!("fws:{n:012x}")).unwrap()
    }

    fn spec(n: u32) -> String {
        format!("-m comment --comment \"fws:{n:012x}\" -j ACCEPT")
    }

    fn owned(n: u32) -> OwnedRule {
        OwnedRule {
            id: id(n),
            spec: spec(n),
            origin: Some(Origin {
                file: "fw.rhai".into(),
                line: n as usize,
                column: 1,
            }),
        }
    }

    fn hook_rule(hook: Hook, n: u32) -> HookRule {
        HookRule {
            hook,
            rule: OwnedRule {
                id: id(n),
                spec: format!(
                    "-m comment --comment \"fws:{n:012x}\" -j {}",
                    hook.owned_chain()
                ),
                origin: None,
            },
        }
    }

    /// A desired ruleset: filter, INPUT DROP, hook 1000 into FWS-INPUT with
    /// the given rules.
    fn desired(rules: &[u32]) -> Ruleset {
        let mut table = TableRuleset::default();
        table.policies.insert(Hook::Input, Policy::Drop);
        table.hooks.push(hook_rule(Hook::Input, 1000));
        table.chains.push(OwnedChain {
            name: "FWS-INPUT".into(),
            rules: rules.iter().map(|&n| owned(n)).collect(),
        });
        let mut ruleset = Ruleset::empty(Family::Ipv4);
        ruleset.tables.insert(Table::Filter, table);
        ruleset
    }

    fn live(text: &str) -> LiveState {
        LiveState::parse(Family::Ipv4, text).unwrap()
    }

    /// Live state with INPUT DROP, the given INPUT rules and FWS-INPUT rules.
    fn live_with(input: &[String], chain: &[String]) -> LiveState {
        let mut text = String::from(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:FWS-INPUT - [0:0]\n",
        );
        for rule in input {
            text.push_str(&format!("-A INPUT {rule}\n"));
        }
        for rule in chain {
            text.push_str(&format!("-A FWS-INPUT {rule}\n"));
        }
        text.push_str("COMMIT\n");
        live(&text)
    }

    fn hook_spec() -> String {
        hook_rule(Hook::Input, 1000).rule.spec
    }

    /// Applies a changeset's FWS-INPUT edits to a list of specs, the way the
    /// kernel would, to check positions.
    fn replay(mut chain: Vec<String>, changes: &Changeset) -> Vec<String> {
        for (_, change) in changes.changes() {
            match change {
                Change::InsertRule {
                    position,
                    rule,
                    append,
                    ..
                } => {
                    assert_eq!(*append, *position == chain.len() + 1);
                    chain.insert(position - 1, rule.spec.clone());
                }
                Change::DeleteRule { position, spec, .. } => {
                    assert_eq!(&chain.remove(position - 1), spec);
                }
                _ => {}
            }
        }
        chain
    }

    fn specs(ns: &[u32]) -> Vec<String> {
        ns.iter().map(|&n| spec(n)).collect()
    }

    #[test]
    fn creates_everything_in_dependency_order() {
        let changes = diff(&LiveState::empty(Family::Ipv4), &desired(&[1, 2]));
        let input = restore_input(&changes);
        assert_eq!(
            input.text,
            format!(
                "*filter\n-N FWS-INPUT\n-A FWS-INPUT {}\n-A FWS-INPUT {}\n-I INPUT 1 {}\n-P INPUT DROP\nCOMMIT\n",
                spec(1),
                spec(2),
                hook_spec()
            )
        );
        assert_eq!(input.line(3).unwrap().1.unwrap().line, 1);
        assert_eq!(input.origins.len(), input.text.lines().count());
    }

    #[test]
    fn in_sync_is_empty() {
        let state = live_with(&[hook_spec()], &specs(&[1, 2, 3]));
        let changes = diff(&state, &desired(&[1, 2, 3]));
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(restore_input(&changes).text, "");
    }

    #[test]
    fn one_changed_rule_is_one_delete_and_one_insert() {
        let state = live_with(&[hook_spec()], &specs(&[1, 2, 3, 4]));
        let changes = diff(&state, &desired(&[1, 2, 5, 4]));
        assert_eq!(changes.len(), 2);
        let text = restore_input(&changes).text;
        assert_eq!(
            text,
            format!(
                "*filter\n-D FWS-INPUT 3\n-I FWS-INPUT 3 {}\nCOMMIT\n",
                spec(5)
            )
        );
    }

    #[test]
    fn positions_account_for_earlier_edits() {
        let cases: &[(&[u32], &[u32])] = &[
            (&[1, 2, 3, 4, 5], &[5, 4, 3, 2, 1]),
            (&[1, 2, 3], &[]),
            (&[], &[1, 2, 3]),
            (&[1, 2, 3, 4, 5, 6], &[7, 2, 8, 4, 9, 6, 10]),
            (&[1, 1, 2, 2, 3], &[1, 2, 3]),
            (&[3, 1, 2], &[1, 2, 3]),
            (&[1, 2, 3], &[0, 1, 2, 3, 4]),
        ];
        for &(from, to) in cases {
            let state = live_with(&[hook_spec()], &specs(from));
            let changes = diff(&state, &desired(to));
            assert_eq!(
                replay(specs(from), &changes),
                specs(to),
                "{from:?} -> {to:?}"
            );
            // Minimal: the edit distance through the longest common subsequence.
            let edits = changes
                .changes()
                .filter(|(_, c)| matches!(c, Change::InsertRule { .. } | Change::DeleteRule { .. }))
                .count();
            let lcs = common_subsequence(
                &live_rules(from),
                &desired(to).tables[&Table::Filter].chains[0].rules,
            )
            .len();
            assert_eq!(edits, from.len() + to.len() - 2 * lcs, "{from:?} -> {to:?}");
        }
        // A reorder moves the fewest rules.
        let state = live_with(&[hook_spec()], &specs(&[3, 1, 2]));
        assert_eq!(diff(&state, &desired(&[1, 2, 3])).len(), 2);
    }

    fn live_rules(ns: &[u32]) -> Vec<LiveRule> {
        specs(ns).into_iter().map(LiveRule::new).collect()
    }

    #[test]
    fn drift_is_deleted() {
        let mut chain = specs(&[1, 2]);
        chain.insert(1, "-p tcp -m tcp --dport 23 -j ACCEPT".into());
        chain.push(r#"-j LOG --log-prefix "--comment fws:000000000003""#.into());
        let state = live_with(&[hook_spec()], &chain);
        let changes = diff(&state, &desired(&[1, 2, 3]));
        let kinds: Vec<String> = changes.changes().map(|(_, c)| c.to_string()).collect();
        assert_eq!(changes.len(), 3, "{kinds:?}");
        assert!(kinds[0].starts_with("- 2: -p tcp"), "{kinds:?}");
        assert!(kinds[0].ends_with("(drift, not written by fwscript)"));
        assert_eq!(replay(chain, &changes), specs(&[1, 2, 3]));
    }

    #[test]
    fn hook_stays_where_it_is() {
        let input = vec!["-i lo -j ACCEPT".to_string(), hook_spec()];
        let state = live_with(&input, &specs(&[1]));
        assert!(diff(&state, &desired(&[1])).is_empty());
    }

    #[test]
    fn missing_hook_goes_on_top_and_stale_ones_go() {
        let stale = hook_rule(Hook::Input, 999).rule.spec;
        let foreign = "-i lo -j ACCEPT".to_string();
        let state = live_with(&[foreign.clone(), stale.clone()], &specs(&[1]));
        let changes = diff(&state, &desired(&[1]));
        let text = restore_input(&changes).text;
        assert_eq!(
            text,
            format!(
                "*filter\n-D INPUT {stale}\n-I INPUT 1 {}\nCOMMIT\n",
                hook_spec()
            )
        );
        assert!(!text.contains(&format!("-D INPUT {foreign}")));
    }

    #[test]
    fn duplicate_hooks_keep_the_first() {
        let foreign = "-i lo -j ACCEPT".to_string();
        let state = live_with(&[hook_spec(), foreign, hook_spec()], &specs(&[1]));
        let changes = diff(&state, &desired(&[1]));
        assert_eq!(
            changes.tables[0].changes,
            [Change::DeleteHook {
                hook: Hook::Input,
                spec: hook_spec()
            }]
        );
    }

    #[test]
    fn empty_desired_removes_only_what_fwscript_owns() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/nft-ipv4.save"
        ))
        .unwrap();
        let state = live(&text);
        let mut reset = Ruleset::empty(Family::Ipv4);
        let mut filter = TableRuleset::default();
        for hook in Table::Filter.builtin_chains() {
            filter.policies.insert(*hook, Policy::Accept);
        }
        reset.tables.insert(Table::Filter, filter);
        let text = restore_input(&diff(&state, &reset)).text;
        assert_eq!(
            text,
            "*filter\n\
             -D INPUT -m comment --comment \"fws:0a0a0a0a0a00\" -j FWS-INPUT\n\
             -F FWS-INPUT\n\
             -F FWS-INPUT-ALLOW\n\
             -P INPUT ACCEPT\n\
             -X FWS-INPUT\n\
             -X FWS-INPUT-ALLOW\n\
             COMMIT\n"
        );
        assert!(!text.contains("f2b") && !text.contains("DOCKER") && !text.contains("*nat"));
    }

    #[test]
    fn snapshot_diff_restores_the_snapshot() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/legacy-ipv4.save"
        ))
        .unwrap();
        let state = live(&text);
        let snapshot = state.owned();
        // The drift rule is not in the snapshot, so it is the one change.
        let changes = diff(&state, &snapshot);
        assert_eq!(changes.len(), 1);
        assert!(matches!(
            changes.tables[0].changes[0],
            Change::DeleteRule {
                id: None,
                position: 3,
                ..
            }
        ));
    }

    #[test]
    fn policies_of_absent_tables_start_at_accept() {
        let mut ruleset = Ruleset::empty(Family::Ipv4);
        let mut nat = TableRuleset::default();
        nat.policies.insert(Hook::Prerouting, Policy::Accept);
        ruleset.tables.insert(Table::Nat, nat);
        assert!(diff(&LiveState::empty(Family::Ipv4), &ruleset).is_empty());
    }

    #[test]
    fn warns_about_foreign_rules_around_the_hook() {
        let input = vec![
            "-j ACCEPT".to_string(),
            hook_spec(),
            "-p tcp -j f2b-sshd".to_string(),
        ];
        let state = live_with(&input, &specs(&[1]));
        let warnings = foreign_warnings(&state, &desired(&[1]));
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].above_hook);
        assert_eq!(warnings[0].position, 1);
        assert!(!warnings[1].above_hook);
        assert!(warnings[0].to_string().contains("never reach"));
    }

    #[test]
    fn replacing_a_huge_chain_is_fast() {
        let from: Vec<u32> = (0..10_000).collect();
        let to: Vec<u32> = (10_000..20_000).collect();
        let state = live_with(&[hook_spec()], &specs(&from));
        let started = std::time::Instant::now();
        let changes = diff(&state, &desired(&to));
        assert_eq!(changes.len(), 20_000);
        // Generous even for a debug build; an O(ND) diff takes far longer.
        assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    }
}
