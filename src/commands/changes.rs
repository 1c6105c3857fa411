//! The changes of a survey as commands report them (survey → **change
//! objects** → text and JSON): one shape for every action, with where in
//! the script each comes from, counted per action and summed up per family
//! and table.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::apply::Survey;
use crate::diff::Change;
use crate::forms::Content;
use crate::netfilter::{Family, Hook, Policy, Table};
use crate::plan::Plan;
use crate::ruleset::{Origin, OwnedRule, Placement};
use crate::sets::{SetChange, SetEdit};

/// Every action a rule change can have, in the order `counts` lists them.
pub const ACTIONS: [&str; 8] = [
    "create_chain",
    "insert_rule",
    "delete_rule",
    "insert_hook",
    "move_hook",
    "delete_hook",
    "delete_chain",
    "set_policy",
];

/// The actions of the set edits, change objects like the rules' (the
/// report's `sets` array has their entries). A `conflict` is not one: it is
/// a refusal, not an edit.
pub const SET_ACTIONS: [&str; 4] = ["create_set", "update_set", "recreate_set", "destroy_set"];

/// One change, the same keys for every action (`null` where a key does not
/// apply), so a consumer reads them without a case per action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeView {
    pub family: Family,
    /// `null` for a set edit: ipsets belong to no table.
    pub table: Option<Table>,
    /// The chain changed (a built-in chain for hooks and policies).
    pub chain: Option<String>,
    pub action: &'static str,
    /// 1-based, in the chain as it is when this change runs; `null` for an
    /// append (`placement: "bottom"`), a deletion by text, a policy.
    pub position: Option<usize>,
    /// For hooks: `top` (denials first) or `bottom` (permissions last).
    pub placement: Option<Placement>,
    pub rule: Option<RuleView>,
    pub policy: Option<PolicyView>,
    /// Why it goes or moves: `drift`, `changed_behind_fwscripts_back`,
    /// `no_longer_in_script`, `rules_after_hook`; for a policy `script`,
    /// `baseline` or `put_back`; `null` for what is added.
    pub why: Option<&'static str>,
    /// How many rules a deleted chain held; for a set edit, the entries it
    /// writes (made, added and removed, or destroyed).
    pub count: Option<usize>,
    /// The ipset a set edit changes; `null` for the rules' changes.
    pub set: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleView {
    /// `null` for a rule without fwscript's id (drift).
    pub id: Option<String>,
    /// The rule after `-A CHAIN`: as fwscript writes it for an insert, as
    /// the kernel printed it for a deletion.
    pub text: String,
    pub origin: Option<OriginView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OriginView {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl From<&Origin> for OriginView {
    fn from(origin: &Origin) -> OriginView {
        OriginView {
            file: origin.file.clone(),
            line: origin.line,
            col: origin.column,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyView {
    pub from: Policy,
    pub to: Policy,
    /// The `policy()` call that sets it; `null` for the baseline's or a
    /// policy put back.
    pub origin: Option<OriginView>,
}

/// Every change of `survey`, in the order they run; `plan` names the
/// `policy()` calls behind policies (without one, a policy is put back).
pub fn views(survey: &Survey, plan: Option<&Plan>) -> Vec<ChangeView> {
    survey
        .changes()
        .map(|(family, table, change)| view(family, table, change, plan))
        .collect()
}

fn rule_view(rule: &OwnedRule) -> RuleView {
    RuleView {
        id: Some(rule.id.to_string()),
        text: rule.spec.clone(),
        origin: rule.origin.as_ref().map(OriginView::from),
    }
}

pub fn view(family: Family, table: Table, change: &Change, plan: Option<&Plan>) -> ChangeView {
    let mut view = ChangeView {
        family,
        table: Some(table),
        chain: Some(change.chain().to_string()),
        action: "",
        position: None,
        placement: None,
        rule: None,
        policy: None,
        why: None,
        count: None,
        set: None,
    };
    match change {
        Change::CreateChain { .. } => view.action = "create_chain",
        Change::InsertRule { position, rule, .. } => {
            view.action = "insert_rule";
            view.position = Some(*position);
            view.rule = Some(rule_view(rule));
        }
        Change::DeleteRule {
            position,
            spec,
            id,
            content,
            ..
        } => {
            view.action = "delete_rule";
            view.position = Some(*position);
            view.rule = Some(RuleView {
                id: id.as_ref().map(ToString::to_string),
                text: spec.clone(),
                origin: None,
            });
            view.why = Some(deletion_why(id.is_some(), *content));
        }
        Change::InsertHook {
            placement, rule, ..
        } => {
            view.action = "insert_hook";
            view.placement = Some(*placement);
            view.position = (*placement == Placement::Top).then_some(1);
            view.rule = Some(rule_view(rule));
        }
        Change::MoveHook { rule, below, .. } => {
            view.action = "move_hook";
            view.placement = Some(Placement::Bottom);
            view.rule = Some(rule_view(rule));
            view.why = Some("rules_after_hook");
            view.count = Some(*below);
        }
        Change::DeleteHook { spec, content, .. } => {
            view.action = "delete_hook";
            view.rule = Some(RuleView {
                id: crate::live::LiveRule::new(spec.as_str())
                    .id
                    .map(|id| id.to_string()),
                text: spec.clone(),
                origin: None,
            });
            view.why = Some(deletion_why(true, *content));
        }
        Change::DeleteChain { rules, .. } => {
            view.action = "delete_chain";
            view.why = Some("no_longer_in_script");
            view.count = Some(*rules);
        }
        Change::SetPolicy { hook, from, to } => {
            view.action = "set_policy";
            let origin = plan.and_then(|plan| policy_origin(plan, family, table, *hook));
            view.why = Some(match (plan, &origin) {
                (None, _) => "put_back",
                (Some(_), Some(_)) => "script",
                (Some(_), None) => "baseline",
            });
            view.policy = Some(PolicyView {
                from: *from,
                to: *to,
                origin,
            });
        }
    }
    view
}

fn deletion_why(known_id: bool, content: Content) -> &'static str {
    match (known_id, content) {
        (false, _) => "drift",
        (true, Content::Changed) => "changed_behind_fwscripts_back",
        (true, Content::Unrecorded) => "form_unrecorded",
        (true, Content::AsWritten) => "no_longer_in_script",
    }
}

fn policy_origin(plan: &Plan, family: Family, table: Table, hook: Hook) -> Option<OriginView> {
    let policy = plan
        .family(family)?
        .tables
        .get(&table)?
        .policies
        .get(&hook)?;
    policy.origin.as_ref().map(OriginView::from)
}

/// How many changes of each action, rule changes and set edits, every
/// action listed.
pub fn counts(views: &[ChangeView]) -> BTreeMap<&'static str, usize> {
    let mut counts: BTreeMap<&'static str, usize> = ACTIONS
        .iter()
        .chain(&SET_ACTIONS)
        .map(|&a| (a, 0))
        .collect();
    for view in views {
        *counts.entry(view.action).or_default() += 1;
    }
    counts
}

/// Every change in the order a write runs it, as JSON lists them: the set
/// edits the rules need first (a set is made and filled before a rule
/// matches it), the rule changes, then the sets no rule uses any more,
/// destroyed once the rules matching them are gone.
pub fn in_order<'a>(
    rules: Vec<ChangeView>,
    sets: impl IntoIterator<Item = &'a SetChange>,
) -> Vec<ChangeView> {
    let (last, first): (Vec<ChangeView>, Vec<ChangeView>) = sets
        .into_iter()
        .filter_map(set_view)
        .partition(|view| view.action == "destroy_set");
    first.into_iter().chain(rules).chain(last).collect()
}

/// A set edit as a change object; `None` for a conflict.
fn set_view(change: &SetChange) -> Option<ChangeView> {
    let (action, count, why) = match &change.edit {
        SetEdit::CreateSet { entries, .. } => ("create_set", entries.len(), None),
        SetEdit::UpdateSet { added, removed } => ("update_set", added.len() + removed.len(), None),
        SetEdit::RecreateSet { entries, why, .. } => {
            // Outgrown (`its maxelem … is too small`), or options fwscript
            // never sets (`it has timeout 300`).
            let why = match why.contains("maxelem") {
                true => "set_size",
                false => "set_options",
            };
            ("recreate_set", entries.len(), Some(why))
        }
        SetEdit::DestroySet { entries } => ("destroy_set", *entries, Some("no_longer_in_script")),
        SetEdit::Conflict { .. } => return None,
    };
    Some(ChangeView {
        family: change.family,
        table: None,
        chain: None,
        action,
        position: None,
        placement: None,
        rule: None,
        policy: None,
        why,
        count: Some(count),
        set: Some(change.set.clone()),
    })
}

/// What one table's changes come to, for a summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSummary {
    /// Rules and hooks added.
    pub added: usize,
    /// Rules and hooks removed, those of deleted chains included.
    pub removed: usize,
    pub moved: usize,
    pub policies: Vec<(String, Policy, Policy)>,
}

/// `ipv4 filter: +8 −1, policy INPUT ACCEPT → DROP`, one line per family
/// and table with changes, in the order they run.
pub fn summary(views: &[ChangeView]) -> Vec<(Family, Table, TableSummary)> {
    let mut lines: Vec<(Family, Table, TableSummary)> = Vec::new();
    // Set edits have lines of their own (`+1 −0 entries in set …`).
    for (view, table) in views.iter().filter_map(|v| Some((v, v.table?))) {
        let index = match lines
            .iter()
            .position(|(f, t, _)| (*f, *t) == (view.family, table))
        {
            Some(index) => index,
            None => {
                lines.push((view.family, table, TableSummary::default()));
                lines.len() - 1
            }
        };
        let sum = &mut lines[index].2;
        match view.action {
            "insert_rule" | "insert_hook" => sum.added += 1,
            "delete_rule" | "delete_hook" => sum.removed += 1,
            "delete_chain" => sum.removed += view.count.unwrap_or(0),
            "move_hook" => sum.moved += 1,
            "set_policy" => {
                if let (Some(chain), Some(policy)) = (&view.chain, &view.policy) {
                    sum.policies.push((chain.clone(), policy.from, policy.to));
                }
            }
            _ => {}
        }
    }
    lines
}

impl TableSummary {
    /// `+8 −1, hook moved, policy INPUT ACCEPT → DROP`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("+{} \u{2212}{}", self.added, self.removed)];
        match self.moved {
            0 => {}
            1 => parts.push("1 hook moved".to_string()),
            n => parts.push(format!("{n} hooks moved")),
        }
        for (chain, from, to) in &self.policies {
            parts.push(format!("policy {chain} {from} \u{2192} {to}"));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::RuleId;

    fn rule(spec: &str, line: Option<usize>) -> OwnedRule {
        OwnedRule {
            id: RuleId::compute(Family::Ipv4, Table::Filter, "FWS-INPUT", spec, 0),
            spec: spec.to_string(),
            origin: line.map(|line| Origin {
                file: "fw.rhai".into(),
                line,
                column: 1,
            }),
        }
    }

    #[test]
    fn every_action_has_the_same_keys() {
        let changes = [
            Change::CreateChain {
                chain: "FWS-INPUT".into(),
            },
            Change::InsertRule {
                chain: "FWS-INPUT".into(),
                position: 1,
                append: true,
                rule: rule("-j ACCEPT", Some(3)),
            },
            Change::DeleteRule {
                chain: "FWS-INPUT".into(),
                position: 2,
                spec: "-j DROP".into(),
                id: None,
                content: Content::AsWritten,
            },
            Change::InsertHook {
                hook: Hook::Input,
                placement: Placement::Bottom,
                rule: rule("-j FWS-INPUT", None),
            },
            Change::MoveHook {
                hook: Hook::Input,
                spec: "-j FWS-INPUT".into(),
                rule: rule("-j FWS-INPUT", None),
                below: 2,
            },
            Change::DeleteHook {
                hook: Hook::Input,
                spec: "-j FWS-OLD".into(),
                content: Content::Changed,
            },
            Change::DeleteChain {
                chain: "FWS-OLD".into(),
                rules: 4,
            },
            Change::SetPolicy {
                hook: Hook::Input,
                from: Policy::Accept,
                to: Policy::Drop,
            },
        ];
        let views: Vec<ChangeView> = changes
            .iter()
            .map(|c| view(Family::Ipv4, Table::Filter, c, None))
            .collect();
        let keys = |v: &ChangeView| -> Vec<String> {
            match serde_json::to_value(v).unwrap() {
                serde_json::Value::Object(map) => map.keys().cloned().collect(),
                other => panic!("{other}"),
            }
        };
        for v in &views {
            assert_eq!(keys(v), keys(&views[0]), "{}", v.action);
            assert!(ACTIONS.contains(&v.action));
        }
        assert_eq!(views[2].why, Some("drift"));
        assert_eq!(views[5].why, Some("changed_behind_fwscripts_back"));
        assert_eq!(views[7].why, Some("put_back"));
        assert_eq!(
            views[1]
                .rule
                .as_ref()
                .unwrap()
                .origin
                .as_ref()
                .unwrap()
                .line,
            3
        );
        assert_eq!(counts(&views).values().sum::<usize>(), 8);
        let sum = summary(&views);
        assert_eq!(sum.len(), 1);
        assert_eq!(
            sum[0].2.describe(),
            "+2 \u{2212}6, 1 hook moved, policy INPUT ACCEPT \u{2192} DROP"
        );
    }

    #[test]
    fn set_edits_are_change_objects_in_the_order_they_run_and_a_conflict_is_not() {
        let edit = |edit| SetChange {
            set: "fws-a2e70862ce9a".into(),
            family: Family::Ipv4,
            source: None,
            edit,
        };
        let sets = [
            edit(SetEdit::CreateSet {
                maxelem: 65536,
                entries: Vec::new().into(),
            }),
            edit(SetEdit::UpdateSet {
                added: vec!["198.51.100.9/32".parse().unwrap()],
                removed: vec![],
            }),
            edit(SetEdit::UpdateSet {
                added: vec![],
                removed: vec!["198.51.100.3".into()],
            }),
            edit(SetEdit::DestroySet { entries: 3 }),
            edit(SetEdit::Conflict {
                found: "hash:ip".into(),
            }),
        ];
        let rule = view(
            Family::Ipv4,
            Table::Filter,
            &Change::CreateChain {
                chain: "FWS-INPUT".into(),
            },
            None,
        );
        let views = in_order(vec![rule.clone()], &sets);
        let actions: Vec<&str> = views.iter().map(|v| v.action).collect();
        assert_eq!(
            actions,
            [
                "create_set",
                "update_set",
                "update_set",
                "create_chain",
                "destroy_set"
            ],
            "made and filled before the rules, destroyed after"
        );
        let keys = |v: &ChangeView| -> Vec<String> {
            match serde_json::to_value(v).unwrap() {
                serde_json::Value::Object(map) => map.keys().cloned().collect(),
                other => panic!("{other}"),
            }
        };
        for v in &views {
            assert_eq!(keys(v), keys(&rule), "{}", v.action);
        }
        assert_eq!(views[0].set.as_deref(), Some("fws-a2e70862ce9a"));
        assert_eq!((views[0].table, views[0].chain.as_deref()), (None, None));
        assert_eq!(views[1].count, Some(1));
        assert_eq!(views[4].count, Some(3));
        assert_eq!(views[4].why, Some("no_longer_in_script"));
        assert_eq!(summary(&views).len(), 1, "set edits have no table line");
        let counts = counts(&views);
        assert_eq!(
            counts.len(),
            ACTIONS.len() + SET_ACTIONS.len(),
            "{counts:?}"
        );
        assert_eq!(counts["create_set"], 1);
        assert_eq!(counts["update_set"], 2);
        assert_eq!(counts["recreate_set"], 0);
        assert_eq!(counts["destroy_set"], 1);
        assert_eq!(counts["create_chain"], 1);
        assert_eq!(counts.values().sum::<usize>(), 5, "{counts:?}");
    }
    #[test]
    fn a_set_made_anew_says_whether_it_outgrew_its_size() {
        let recreate = |why: &str| SetChange {
            set: "fws-a2e70862ce9a".into(),
            family: Family::Ipv4,
            source: None,
            edit: SetEdit::RecreateSet {
                maxelem: 65536,
                entries: Vec::new().into(),
                why: why.into(),
                leftover: false,
            },
        };
        let outgrown = recreate("its maxelem 25 is too small for 30 entries");
        let timeout = recreate("it has `timeout 300`");
        let views = in_order(Vec::new(), [&outgrown, &timeout]);
        assert_eq!(views[0].why, Some("set_size"));
        assert_eq!(views[1].why, Some("set_options"));
    }
}
