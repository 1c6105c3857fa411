//! The diff (live + ruleset → **changeset** → apply): the smallest set of
//! positioned edits that turns what fwscript owns in the kernel into what
//! the script asks for, and its rendering as `iptables-restore --noflush`
//! input. Pure: no kernel access, deterministic output.

use std::collections::{BTreeSet, HashMap};
use std::fmt::{self, Write as _};

use serde::Serialize;

pub use crate::foreign::{foreign_warnings, ForeignWarning};
use crate::forms::{Content, FamilyForms, KernelForms};
use crate::live::{LiveChain, LiveRule, LiveState, LiveTable};
use crate::netfilter::{Family, Hook, Policy, Table};
use crate::ruleset::{HookRule, Origin, OwnedRule, Placement, RuleId, Ruleset, TableRuleset};

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
        /// For a rule with a known id: whether the kernel's text of it is
        /// what it was after fwscript wrote it, was changed behind
        /// fwscript's back (`iptables -R` keeping the comment), or was
        /// never recorded (then it is written again to learn it).
        content: Content,
    },
    /// A jump into an owned chain: at the top of a built-in chain
    /// (`-I CHAIN 1`) or at its end (`-A CHAIN`).
    InsertHook {
        hook: Hook,
        placement: Placement,
        rule: OwnedRule,
    },
    /// The accepting hook, back to the end of its built-in chain from above
    /// rules that came after it: deleted by its text and appended, in the
    /// same atomic table block.
    MoveHook {
        hook: Hook,
        /// Its text as the kernel printed it, to delete it by.
        spec: String,
        rule: OwnedRule,
        /// How many rules it moves below.
        below: usize,
    },
    /// A stale, duplicate or changed jump, deleted by its text: its position
    /// in a built-in chain shared with other programs is not fwscript's to
    /// rely on.
    DeleteHook {
        hook: Hook,
        spec: String,
        /// As for [`Change::DeleteRule`].
        content: Content,
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
            | Change::MoveHook { hook, .. }
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
                position,
                spec,
                id,
                content,
                ..
            } => {
                let why = match (id, content) {
                    (None, _) => "drift, not written by fwscript",
                    (Some(_), Content::Changed) => CHANGED,
                    (Some(_), Content::Unrecorded) => UNRECORDED,
                    (Some(_), Content::AsWritten) => "no longer in the script",
                };
                write!(f, "- {position}: {spec} ({why})")
            }
            Change::InsertHook {
                placement: Placement::Top,
                rule,
                ..
            } => write!(f, "+ 1: {} (hook on top: denials first)", rule.spec),
            Change::InsertHook {
                placement: Placement::Bottom,
                rule,
                ..
            } => write!(
                f,
                "+ end: {} (hook at the end: permissions last)",
                rule.spec
            ),
            Change::MoveHook { spec, below, .. } => {
                let rules = if *below == 1 { "rule" } else { "rules" };
                write!(
                    f,
                    "~ end: {spec} (hook moved to the end, below the {below} {rules} that came after it)"
                )
            }
            Change::DeleteHook {
                spec,
                content: Content::Changed,
                ..
            } => write!(f, "- {spec} ({CHANGED})"),
            Change::DeleteHook {
                spec,
                content: Content::Unrecorded,
                ..
            } => write!(f, "- {spec} ({UNRECORDED})"),
            Change::DeleteHook { spec, .. } => write!(f, "- {spec} (stale hook)"),
            Change::DeleteChain { chain, rules } => {
                let noun = if *rules == 1 { "rule" } else { "rules" };
                write!(f, "delete chain {chain} ({rules} {noun})")
            }
            Change::SetPolicy { from, to, .. } => write!(f, "policy {from} -> {to}"),
        }
    }
}

/// Why a rule with a known id goes when its text is not the kernel's form of
/// it from fwscript's last write.
const CHANGED: &str = "changed behind fwscript's back";
const UNRECORDED: &str = "written again once: its kernel form was never recorded";

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
/// Foreign rules and chains are never part of them. `forms` are the
/// kernel's texts of fwscript's rules from its last verified write: a rule
/// whose text differs from its recorded form is replaced (drift by
/// content); pass [`KernelForms::default`] to compare ids only.
pub fn diff(live: &LiveState, desired: &Ruleset, forms: &KernelForms) -> Changeset {
    debug_assert_eq!(live.family, desired.family);
    let forms = forms.family(live.family);
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
                forms,
            ),
        })
        .filter(|t| !t.changes.is_empty())
        .collect();
    Changeset {
        family: live.family,
        tables,
    }
}

/// What the kernel's text of `rule` says, when it carries a known id.
fn content(rule: &LiveRule, forms: FamilyForms) -> Content {
    match &rule.id {
        Some(id) => forms.content(id, &rule.spec),
        None => Content::AsWritten,
    }
}

/// Whether `rule` is kept as it is: its id is fwscript's and its text as
/// fwscript wrote it.
fn as_written(rule: &LiveRule, forms: FamilyForms) -> bool {
    content(rule, forms) == Content::AsWritten
}

fn diff_table(live: &LiveTable, desired: &TableRuleset, forms: FamilyForms) -> Vec<Change> {
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
        edit_chain(&chain.name, live_rules, &chain.rules, forms, &mut changes);
    }

    // Hooks once the chains they enter are complete.
    let hooks: BTreeSet<Hook> = live
        .hooks()
        .map(|(hook, _, _)| hook)
        .chain(desired.hooks.iter().map(|h| h.hook))
        .collect();
    for hook in hooks {
        let rules = live
            .builtin_chains()
            .find(|(h, _)| *h == hook)
            .map_or(&[][..], |(_, c)| &c.rules[..]);
        edit_hooks(hook, rules, desired, forms, &mut changes);
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

/// fwscript's jumps in one built-in chain `rules` (the hook contract): the
/// top hook is inserted at position 1 when missing and left where found;
/// the bottom hook is appended when missing and moved back to the end when
/// anything sits below it; every other jump fwscript owns there goes.
///
/// Every edit here works by text or at a fixed end (`-D CHAIN SPEC`,
/// `-I CHAIN 1`, `-A CHAIN`), never at a computed position, since other
/// programs edit the chain too. A delete by text removes the first rule
/// with that text, so of identical copies the last one is kept.
fn edit_hooks(
    hook: Hook,
    rules: &[LiveRule],
    desired: &TableRuleset,
    forms: FamilyForms,
    changes: &mut Vec<Change>,
) {
    let wanted: Vec<&HookRule> = [Placement::Top, Placement::Bottom]
        .into_iter()
        .filter_map(|placement| desired.hook(hook, placement))
        .collect();
    // A hook is a bare jump whose text the kernel prints as fwscript writes
    // it: one with no recorded form but that very text is kept where it is.
    // Written again, it would move (the top hook above an admin's
    // exception inserted before it), which a relearn must never do.
    let kept_as_is = |rule: &LiveRule, want: &HookRule| {
        as_written(rule, forms)
            || (content(rule, forms) == Content::Unrecorded && rule.spec == want.rule.spec)
    };
    let kept: Vec<(&HookRule, Option<usize>)> = wanted
        .iter()
        .map(|&want| {
            let at = rules.iter().rposition(|rule| {
                rule.id.as_ref() == Some(&want.rule.id) && kept_as_is(rule, want)
            });
            (want, at)
        })
        .collect();
    let is_kept = |index: usize| kept.iter().any(|&(_, at)| at == Some(index));
    for (index, rule) in rules.iter().enumerate() {
        if rule.id.is_some() && !is_kept(index) {
            changes.push(Change::DeleteHook {
                hook,
                spec: rule.spec.clone(),
                content: content(rule, forms),
            });
        }
    }
    for &(want, at) in &kept {
        match (want.placement, at) {
            (_, None) => changes.push(Change::InsertHook {
                hook,
                placement: want.placement,
                rule: want.rule.clone(),
            }),
            (Placement::Top, Some(_)) => {}
            (Placement::Bottom, Some(at)) => {
                // What stays below it once the stale hooks are gone.
                let below = rules[at + 1..]
                    .iter()
                    .enumerate()
                    .filter(|&(offset, rule)| rule.id.is_none() || is_kept(at + 1 + offset))
                    .count();
                if below > 0 {
                    changes.push(Change::MoveHook {
                        hook,
                        spec: rules[at].spec.clone(),
                        rule: want.rule.clone(),
                        below,
                    });
                }
            }
        }
    }
}

/// The minimal edit of one owned chain: keep the longest common subsequence
/// of ids in place (their counters keep counting), delete the other live
/// rules, insert the missing ones. A rule whose text changed behind
/// fwscript's back is not kept.
fn edit_chain(
    chain: &str,
    live: &[LiveRule],
    desired: &[OwnedRule],
    forms: FamilyForms,
    changes: &mut Vec<Change>,
) {
    let contents: Vec<Content> = live.iter().map(|rule| content(rule, forms)).collect();
    let ids: Vec<Option<&RuleId>> = live
        .iter()
        .zip(&contents)
        .map(|(rule, content)| rule.id.as_ref().filter(|_| *content == Content::AsWritten))
        .collect();
    let kept = common_subsequence(&ids, desired);
    let (mut i, mut j) = (0, 0);
    // `position` is the 0-based index the walk has reached in the chain as
    // edited so far, `len` that chain's length.
    let (mut position, mut len) = (0, live.len());
    for &(keep_i, keep_j) in kept.iter().chain([(live.len(), desired.len())].iter()) {
        for (rule, content) in live[i..keep_i].iter().zip(&contents[i..keep_i]) {
            changes.push(Change::DeleteRule {
                chain: chain.to_string(),
                position: position + 1,
                spec: rule.spec.clone(),
                id: rule.id.clone(),
                content: *content,
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
fn common_subsequence(live: &[Option<&RuleId>], desired: &[OwnedRule]) -> Vec<(usize, usize)> {
    let mut index: HashMap<&RuleId, usize> = HashMap::with_capacity(desired.len());
    for (j, rule) in desired.iter().enumerate() {
        index.entry(&rule.id).or_insert(j);
    }
    let pairs: Vec<(usize, usize)> = live
        .iter()
        .enumerate()
        .filter_map(|(i, id)| Some((i, *index.get((*id)?)?)))
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
                Change::InsertHook {
                    hook,
                    placement: Placement::Top,
                    rule,
                } => line(
                    &mut input,
                    format_args!("-I {hook} 1 {}", rule.spec),
                    origin,
                ),
                Change::InsertHook {
                    hook,
                    placement: Placement::Bottom,
                    rule,
                } => line(&mut input, format_args!("-A {hook} {}", rule.spec), origin),
                Change::MoveHook {
                    hook, spec, rule, ..
                } => {
                    line(&mut input, format_args!("-D {hook} {spec}"), None);
                    line(&mut input, format_args!("-A {hook} {}", rule.spec), None);
                }
                Change::DeleteHook { hook, spec, .. } => {
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
    use crate::live::LiveChain;
    use crate::ruleset::{HookRule, OwnedChain};

    fn diff(live: &LiveState, desired: &Ruleset) -> Changeset {
        super::diff(live, desired, &KernelForms::default())
    }

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
        jump_hook(hook, n, &hook.owned_chain())
    }

    fn jump_hook(hook: Hook, n: u32, target: &str) -> HookRule {
        HookRule {
            hook,
            placement: Placement::of(Table::Filter, target),
            rule: OwnedRule {
                id: id(n),
                spec: format!("-m comment --comment \"fws:{n:012x}\" -j {target}"),
                origin: None,
            },
        }
    }

    /// The deny hook of [`with_deny`].
    fn deny_spec() -> String {
        jump_hook(Hook::Input, 2000, "FWS-INPUT-DENY").rule.spec
    }

    /// `desired(rules)` plus a deny stage dropping 198.51.100.1, reached
    /// from the top of INPUT.
    fn with_deny(rules: &[u32]) -> Ruleset {
        let mut ruleset = desired(rules);
        let filter = ruleset.tables.get_mut(&Table::Filter).unwrap();
        filter
            .hooks
            .insert(0, jump_hook(Hook::Input, 2000, "FWS-INPUT-DENY"));
        filter.chains.push(OwnedChain {
            name: "FWS-INPUT-DENY".into(),
            rules: vec![OwnedRule {
                id: id(2001),
                spec: format!(
                    "-s 198.51.100.1/32 -m comment --comment \"fws:{:012x}\" -j DROP",
                    2001
                ),
                origin: None,
            }],
        });
        ruleset
    }

    /// Runs the hook edits of a changeset on INPUT the way the kernel does:
    /// `-I 1`, `-A`, and `-D` by text removing the first rule with it.
    fn replay_input(mut input: Vec<String>, changes: &Changeset) -> Vec<String> {
        for line in restore_input(changes).text.lines() {
            if let Some(spec) = line.strip_prefix("-I INPUT 1 ") {
                input.insert(0, spec.to_string());
            } else if let Some(spec) = line.strip_prefix("-A INPUT ") {
                input.push(spec.to_string());
            } else if let Some(spec) = line.strip_prefix("-D INPUT ") {
                let at = input
                    .iter()
                    .position(|r| r == spec)
                    .expect("deleted rule exists");
                input.remove(at);
            }
        }
        input
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
                "*filter\n-N FWS-INPUT\n-A FWS-INPUT {}\n-A FWS-INPUT {}\n-A INPUT {}\n-P INPUT DROP\nCOMMIT\n",
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
            let live = live_rules(from);
            let ids: Vec<Option<&RuleId>> = live.iter().map(|r| r.id.as_ref()).collect();
            let lcs =
                common_subsequence(&ids, &desired(to).tables[&Table::Filter].chains[0].rules).len();
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
    fn an_accepting_hook_below_foreign_rules_stays() {
        let input = vec!["-i lo -j ACCEPT".to_string(), hook_spec()];
        let state = live_with(&input, &specs(&[1]));
        assert!(diff(&state, &desired(&[1])).is_empty());
    }

    #[test]
    fn a_missing_accepting_hook_is_appended_and_stale_ones_go() {
        let stale = hook_rule(Hook::Input, 999).rule.spec;
        let foreign = "-p tcp -j f2b-sshd".to_string();
        let state = live_with(&[foreign.clone(), stale.clone()], &specs(&[1]));
        let changes = diff(&state, &desired(&[1]));
        let text = restore_input(&changes).text;
        assert_eq!(
            text,
            format!(
                "*filter\n-D INPUT {stale}\n-A INPUT {}\nCOMMIT\n",
                hook_spec()
            )
        );
        assert!(!text.contains(&format!("-D INPUT {foreign}")));
        assert_eq!(
            replay_input(vec![foreign.clone(), stale], &changes),
            [foreign, hook_spec()]
        );
    }

    #[test]
    fn an_accepting_hook_with_rules_after_it_moves_to_the_end() {
        // An admin's `iptables -A INPUT -s X -j DROP` after fwscript applied.
        let ban = "-s 192.0.2.3/32 -j DROP".to_string();
        let input = vec![hook_spec(), ban.clone()];
        let state = live_with(&input, &specs(&[1]));
        let changes = diff(&state, &desired(&[1]));
        assert_eq!(
            changes.tables[0].changes,
            [Change::MoveHook {
                hook: Hook::Input,
                spec: hook_spec(),
                rule: hook_rule(Hook::Input, 1000).rule,
                below: 1,
            }]
        );
        assert_eq!(
            restore_input(&changes).text,
            format!("*filter\n-D INPUT {0}\n-A INPUT {0}\nCOMMIT\n", hook_spec())
        );
        assert_eq!(replay_input(input, &changes), [ban, hook_spec()]);
        assert!(changes.tables[0].changes[0]
            .to_string()
            .contains("below the 1 rule that came after it"));
    }

    #[test]
    fn a_deny_hook_goes_on_top_when_missing_and_stays_where_found() {
        let f2b = "-p tcp -m multiport --dports 22 -j f2b-sshd".to_string();
        // Missing: inserted at 1, above fail2ban's jump (it only drops).
        let state = live_with(&[f2b.clone(), hook_spec()], &specs(&[1]));
        let changes = diff(&state, &with_deny(&[1]));
        let text = restore_input(&changes).text;
        assert!(
            text.contains(&format!("-I INPUT 1 {}\n", deny_spec())),
            "{text}"
        );
        assert!(!text.contains("-D INPUT"), "{text}");
        let input = replay_input(vec![f2b.clone(), hook_spec()], &changes);
        assert_eq!(input, [deny_spec(), f2b.clone(), hook_spec()]);

        // fail2ban started later inserts above it: both stay where they are.
        let input = vec![f2b.clone(), deny_spec(), hook_spec()];
        let mut state = live_with(&input, &specs(&[1]));
        add_chain(&mut state, "FWS-INPUT-DENY", &[deny_rule()]);
        assert!(diff(&state, &with_deny(&[1])).is_empty());
    }

    fn deny_rule() -> String {
        format!(
            "-s 198.51.100.1/32 -m comment --comment \"fws:{:012x}\" -j DROP",
            2001
        )
    }

    fn add_chain(state: &mut LiveState, name: &str, rules: &[String]) {
        let filter = state.tables.get_mut(&Table::Filter).unwrap();
        filter.chains.push(LiveChain {
            name: name.into(),
            policy: None,
            rules: rules.iter().cloned().map(LiveRule::new).collect(),
        });
    }

    #[test]
    fn every_order_of_hooks_and_foreign_rules_ends_in_the_contract() {
        // Whatever the order INPUT holds fwscript's hooks and foreign rules
        // in, one diff leaves: the deny hook where it was (or on top), every
        // foreign rule in its order, and the accepting hook last.
        let foreign = [
            "-p tcp -m multiport --dports 22 -j f2b-sshd".to_string(),
            "-s 192.0.2.3/32 -j DROP".to_string(),
            "-i lo -j ACCEPT".to_string(),
        ];
        let stale = hook_rule(Hook::Input, 999).rule.spec;
        let pieces: Vec<String> = foreign
            .iter()
            .cloned()
            .chain([deny_spec(), hook_spec(), hook_spec(), stale])
            .collect();
        let mut orders = 0;
        // Every subset and order of up to 4 pieces.
        for mask in 1u32..(1 << pieces.len()) {
            let chosen: Vec<&String> = (0..pieces.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| &pieces[i])
                .collect();
            if chosen.len() > 4 {
                continue;
            }
            for order in permutations(chosen.len()) {
                let input: Vec<String> = order.iter().map(|&i| chosen[i].clone()).collect();
                let mut state = live_with(&input, &specs(&[1]));
                add_chain(&mut state, "FWS-INPUT-DENY", &[deny_rule()]);
                let changes = diff(&state, &with_deny(&[1]));
                let after = replay_input(input.clone(), &changes);
                orders += 1;
                let foreign_before: Vec<&String> =
                    input.iter().filter(|r| foreign.contains(r)).collect();
                let foreign_after: Vec<&String> =
                    after.iter().filter(|r| foreign.contains(r)).collect();
                assert_eq!(foreign_after, foreign_before, "{input:#?}");
                assert_eq!(after.last(), Some(&hook_spec()), "{input:#?} -> {after:#?}");
                assert_eq!(
                    after.iter().filter(|r| r.contains("fws:")).count(),
                    2,
                    "{input:#?} -> {after:#?}"
                );
                let deny_at = after.iter().position(|r| *r == deny_spec()).unwrap();
                match input.iter().position(|r| *r == deny_spec()) {
                    None => assert_eq!(deny_at, 0, "{input:#?}"),
                    // Left where found: the same foreign rules above it.
                    Some(was) => assert_eq!(
                        after[..deny_at]
                            .iter()
                            .filter(|r| foreign.contains(r))
                            .count(),
                        input[..was].iter().filter(|r| foreign.contains(r)).count(),
                        "{input:#?} -> {after:#?}"
                    ),
                }
                // And a second diff finds nothing to do.
                let mut again = live_with(&after, &specs(&[1]));
                add_chain(&mut again, "FWS-INPUT-DENY", &[deny_rule()]);
                assert!(diff(&again, &with_deny(&[1])).is_empty(), "{after:#?}");
            }
        }
        assert!(orders > 500, "{orders}");
    }

    /// Every order of `0..n`.
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![Vec::new()];
        }
        let mut all = Vec::new();
        for rest in permutations(n - 1) {
            for at in 0..=rest.len() {
                let mut order = rest.clone();
                order.insert(at, n - 1);
                all.push(order);
            }
        }
        all
    }

    #[test]
    fn duplicate_hooks_keep_one() {
        let foreign = "-i lo -j ACCEPT".to_string();
        let input = vec![hook_spec(), foreign.clone(), hook_spec()];
        let state = live_with(&input, &specs(&[1]));
        let changes = diff(&state, &desired(&[1]));
        assert_eq!(
            changes.tables[0].changes,
            [Change::DeleteHook {
                hook: Hook::Input,
                spec: hook_spec(),
                content: Content::AsWritten,
            }]
        );
        // The kernel deletes the first copy: the last, below the foreign
        // rule, stays.
        assert_eq!(replay_input(input, &changes), [foreign, hook_spec()]);
    }

    /// Forms recorded from `state` as it is: what apply records after a
    /// verified write.
    fn forms_of(state: &LiveState) -> KernelForms {
        KernelForms::default().recorded([state])
    }

    #[test]
    fn a_rule_changed_behind_fwscripts_back_is_replaced() {
        let ssh = format!(
            "-s 198.51.100.1/32 -p tcp -m tcp --dport 22 -m comment --comment \"fws:{:012x}\" -j ACCEPT",
            2
        );
        let written = live_with(&[hook_spec()], &[spec(1), ssh.clone(), spec(3)]);
        let forms = forms_of(&written);
        // `iptables -R FWS-INPUT 2` without the source, keeping the comment.
        let opened = ssh.replace("-s 198.51.100.1/32 ", "");
        let state = live_with(&[hook_spec()], &[spec(1), opened.clone(), spec(3)]);
        let mut want = desired(&[1, 2, 3]);
        want.tables.get_mut(&Table::Filter).unwrap().chains[0].rules[1].spec = ssh.clone();

        // Ids alone see nothing.
        assert!(diff(&state, &want).is_empty());
        let changes = super::diff(&state, &want, &forms);
        assert_eq!(changes.len(), 2, "{changes:?}");
        let text: Vec<String> = changes.changes().map(|(_, c)| c.to_string()).collect();
        assert_eq!(
            text[0],
            format!("- 2: {opened} (changed behind fwscript's back)")
        );
        assert!(matches!(
            &changes.tables[0].changes[0],
            Change::DeleteRule {
                content: Content::Changed,
                id: Some(_),
                ..
            }
        ));
        assert_eq!(
            restore_input(&changes).text,
            format!("*filter\n-D FWS-INPUT 2\n-I FWS-INPUT 2 {ssh}\nCOMMIT\n")
        );
        // The kernel as written is in sync with its own forms.
        assert!(super::diff(&written, &want, &forms).is_empty());
    }

    #[test]
    fn a_hook_changed_behind_fwscripts_back_is_replaced() {
        let written = live_with(&[hook_spec()], &specs(&[1]));
        let forms = forms_of(&written);
        // Narrowed to one source: everyone else now skips the script.
        let narrowed = format!("-s 192.0.2.9/32 {}", hook_spec());
        let state = live_with(std::slice::from_ref(&narrowed), &specs(&[1]));
        assert!(diff(&state, &desired(&[1])).is_empty());
        let changes = super::diff(&state, &desired(&[1]), &forms);
        assert_eq!(
            restore_input(&changes).text,
            format!(
                "*filter\n-D INPUT {narrowed}\n-A INPUT {}\nCOMMIT\n",
                hook_spec()
            )
        );
        assert!(changes.tables[0].changes[0]
            .to_string()
            .ends_with("(changed behind fwscript's back)"));
    }

    #[test]
    fn forms_of_the_other_family_or_none_change_nothing() {
        let written = live_with(&[hook_spec()], &specs(&[1]));
        let mut v6 = written.clone();
        v6.family = Family::Ipv6;
        let forms = forms_of(&v6);
        let opened = live_with(&[hook_spec()], &[format!("-p tcp {}", spec(1))]);
        assert!(super::diff(&opened, &desired(&[1]), &forms).is_empty());
    }

    #[test]
    fn without_a_record_a_state_folders_forms_rewrite_every_owned_rule_once() {
        let foreign = "-p tcp -j f2b-sshd".to_string();
        let input = vec![foreign.clone(), hook_spec()];
        let state = live_with(&input, &specs(&[1, 2]));
        let forms = KernelForms::default().relearning();
        let changes = super::diff(&state, &desired(&[1, 2]), &forms);
        let text: Vec<String> = changes.changes().map(|(_, c)| c.to_string()).collect();
        let deletions: Vec<&String> = text.iter().filter(|t| t.starts_with("- ")).collect();
        assert_eq!(deletions.len(), 2, "{text:?}");
        assert!(
            deletions
                .iter()
                .all(|t| t.ends_with("(written again once: its kernel form was never recorded)")),
            "{text:?}"
        );
        // Both rules written again, in place; the hook, printed exactly as
        // fwscript writes it, stays where it is (a relearn never moves a
        // hook), and the foreign rule is not fwscript's.
        assert_eq!(changes.len(), 4, "{text:?}");
        assert_eq!(replay(specs(&[1, 2]), &changes), specs(&[1, 2]));
        assert_eq!(replay_input(input.clone(), &changes), input);
        // Once recorded, nothing more.
        let recorded = forms_of(&state).relearning();
        assert!(super::diff(&state, &desired(&[1, 2]), &recorded).is_empty());
        // A hook whose text is not fwscript's (narrowed to one source) and
        // has no record is written again.
        let narrowed = format!("-s 192.0.2.9/32 {}", hook_spec());
        let state = live_with(std::slice::from_ref(&narrowed), &specs(&[1, 2]));
        let recorded = forms_of(&live_with(&[], &specs(&[1, 2]))).relearning();
        let changes = super::diff(&state, &desired(&[1, 2]), &recorded);
        assert_eq!(
            restore_input(&changes).text,
            format!(
                "*filter\n-D INPUT {narrowed}\n-A INPUT {}\nCOMMIT\n",
                hook_spec()
            )
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
