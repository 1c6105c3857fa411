//! The walk: one packet through the tables and chains of one family's plan,
//! in the order the kernel visits them, following jumps and returns.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::describe;
use super::matching::{self, Assumption, Field};
use super::packet::Packet;
use super::{Decision, Explanation, PolicySource, RuleRef, Verdict};
use crate::netfilter::{Hook, Policy, Table};
use crate::plan::{Action, CtState, FamilyPlan, RecentCheck, Rule, TablePlan};

pub(super) struct Walk<'p> {
    plan: Option<&'p FamilyPlan>,
    packet: Packet,
    path: Vec<String>,
    notes: Vec<String>,
    /// Fields left out of the packet that a note already owned up to.
    noted_fields: BTreeSet<Field>,
    /// What let the packet through so far: the filter table's say wins over
    /// mangle's, which only stands when the plan has no filter table.
    accepted_by: Option<Decision>,
}

/// How the walk through one chain ended.
enum Flow {
    /// The chain ran out or hit RETURN: back to the caller.
    Returned,
    /// A rule with a terminal action matched.
    Ended { action: Action, rule: RuleRef },
}

/// One table's say at one hook: a rule's terminal action, or the policy.
struct Step {
    action: Action,
    decided_by: Decision,
}

impl<'p> Walk<'p> {
    pub(super) fn new(plan: Option<&'p FamilyPlan>, packet: Packet) -> Walk<'p> {
        Walk {
            plan,
            packet,
            path: Vec::new(),
            notes: Vec::new(),
            noted_fields: BTreeSet::new(),
            accepted_by: None,
        }
    }

    /// Follows the packet from where it enters (`requested`'s side of the
    /// routing decision) to its verdict. NAT is consulted for the first
    /// packet of a connection only, as conntrack does.
    pub(super) fn run(mut self, requested: Hook) -> Explanation {
        let new = self.packet.state == CtState::New;
        let mut hook = requested;
        if matches!(requested, Hook::Input | Hook::Forward | Hook::Prerouting) {
            if let Some(dropped) = self.filter(Table::Mangle, Hook::Prerouting) {
                return self.finish(hook, dropped);
            }
            if new {
                hook = self.destination_nat(Hook::Prerouting, requested);
            }
        }
        if requested == Hook::Output {
            if let Some(dropped) = self.filter(Table::Mangle, Hook::Output) {
                return self.finish(hook, dropped);
            }
            if new {
                self.destination_nat(Hook::Output, requested);
            }
        }
        let rest: &[(Table, Hook)] = match hook {
            Hook::Prerouting => &[],
            Hook::Input => &[(Table::Mangle, Hook::Input), (Table::Filter, Hook::Input)],
            Hook::Forward => &[
                (Table::Mangle, Hook::Forward),
                (Table::Filter, Hook::Forward),
                (Table::Mangle, Hook::Postrouting),
            ],
            Hook::Output => &[
                (Table::Filter, Hook::Output),
                (Table::Mangle, Hook::Postrouting),
            ],
            Hook::Postrouting => &[(Table::Mangle, Hook::Postrouting)],
        };
        for &(table, at) in rest {
            if let Some(dropped) = self.filter(table, at) {
                return self.finish(hook, dropped);
            }
        }
        if new {
            match hook {
                Hook::Input => self.source_nat(Hook::Input),
                Hook::Forward | Hook::Output | Hook::Postrouting => {
                    self.source_nat(Hook::Postrouting)
                }
                Hook::Prerouting => {}
            }
        }
        let accepted = self.accepted_by.take().unwrap_or(Decision::Policy {
            table: Table::Filter,
            hook,
            policy: Policy::Accept,
            source: PolicySource::KernelDefault,
        });
        self.finish(hook, (Verdict::Accept, accepted))
    }

    fn finish(self, hook: Hook, (verdict, decided_by): (Verdict, Decision)) -> Explanation {
        Explanation {
            family: self.packet.family,
            hook,
            verdict,
            decided_by,
            path: self.path,
            notes: self.notes,
            packet: self.packet,
        }
    }

    /// A filtering table (filter, mangle) at one hook: `Some` when it ends
    /// the packet, `None` when it lets it on.
    fn filter(&mut self, table: Table, hook: Hook) -> Option<(Verdict, Decision)> {
        let step = self.table_at(table, hook)?;
        let verdict = match step.action {
            Action::Drop => Verdict::Drop,
            Action::Reject => Verdict::Reject,
            // Validation keeps NAT targets out of filtering tables; anything
            // else terminal lets the packet on, like ACCEPT.
            _ => Verdict::Accept,
        };
        if verdict != Verdict::Accept {
            return Some((verdict, step.decided_by));
        }
        if table == Table::Filter || self.accepted_by.is_none() {
            self.accepted_by = Some(step.decided_by);
        }
        None
    }

    /// nat PREROUTING or OUTPUT: REDIRECT and DNAT rewrite the destination
    /// before routing, which may send the packet to the other side of the
    /// routing decision. Returns the hook that now decides.
    fn destination_nat(&mut self, nat_hook: Hook, requested: Hook) -> Hook {
        let Some(step) = self.table_at(Table::Nat, nat_hook) else {
            return requested;
        };
        let Decision::Rule(rule) = &step.decided_by else {
            return requested;
        };
        let original_port = self.packet.transport.dport();
        match step.action {
            Action::Redirect { to_port } => {
                self.packet.transport.set_dport(to_port.first);
                self.packet.dnat_from_port = original_port;
                self.note(format!(
                    "{} redirects the connection to port {} of this host",
                    rule.location(),
                    to_port.first
                ));
                if requested == Hook::Forward {
                    self.note("redirected to this host, so INPUT decides, not FORWARD".into());
                    return Hook::Input;
                }
                requested
            }
            Action::Dnat { to } => {
                self.packet.dst = Some(to.addr);
                if let Some(port) = to.port {
                    self.packet.transport.set_dport(port.first);
                }
                self.packet.dnat_from_port = original_port;
                self.note(format!(
                    "{} rewrites the destination to {to}",
                    rule.location()
                ));
                let local = is_local(to.addr);
                match (requested, local) {
                    (Hook::Input, false) if nat_hook == Hook::Prerouting => {
                        self.note(format!(
                            "{} is taken as another host, so the packet is forwarded: \
                             FORWARD decides, not INPUT",
                            to.addr
                        ));
                        Hook::Forward
                    }
                    (Hook::Forward, true) => {
                        self.note(format!(
                            "{} is this host, so INPUT decides, not FORWARD",
                            to.addr
                        ));
                        Hook::Input
                    }
                    _ => requested,
                }
            }
            _ => requested,
        }
    }

    /// nat INPUT or POSTROUTING: SNAT and MASQUERADE rewrite the source on
    /// the way out; they never decide whether the packet passes.
    fn source_nat(&mut self, nat_hook: Hook) {
        let Some(Step {
            action,
            decided_by: Decision::Rule(rule),
        }) = self.table_at(Table::Nat, nat_hook)
        else {
            return;
        };
        match action {
            Action::Snat { to } => {
                self.note(format!("{} rewrites the source to {to}", rule.location()))
            }
            Action::Masquerade => self.note(format!(
                "{} rewrites the source to the outgoing interface's address",
                rule.location()
            )),
            _ => {}
        }
    }

    /// One table at one hook: its owned chain, then the built-in chain's
    /// policy. `None` when the plan has nothing there, which leaves the
    /// kernel's default ACCEPT.
    fn table_at(&mut self, table: Table, hook: Hook) -> Option<Step> {
        let table_plan = self.plan?.tables.get(&table)?;
        let entry = hook.owned_chain();
        let has_entry = table_plan.chain(&entry).is_some();
        let policy = table_plan.policies.get(&hook);
        if !has_entry && policy.is_none() {
            return None;
        }
        self.path.push(format!("{table} {hook}"));
        if has_entry {
            let mut stack = Vec::new();
            if let Flow::Ended { action, rule } = self.chain(table_plan, table, &entry, &mut stack)
            {
                return Some(Step {
                    action,
                    decided_by: Decision::Rule(rule),
                });
            }
        }
        let (policy, source) = match policy {
            Some(chosen) => (
                chosen.policy,
                chosen
                    .origin
                    .clone()
                    .map_or(PolicySource::Baseline, PolicySource::Script),
            ),
            None => (Policy::Accept, PolicySource::KernelDefault),
        };
        let action = match policy {
            Policy::Accept => Action::Accept,
            Policy::Drop => Action::Drop,
        };
        Some(Step {
            action,
            decided_by: Decision::Policy {
                table,
                hook,
                policy,
                source,
            },
        })
    }

    /// Walks one owned chain; `stack` holds the chains being walked, so a
    /// jump back into one of them (which iptables refuses to load) cannot
    /// loop forever here.
    fn chain(
        &mut self,
        table_plan: &TablePlan,
        table: Table,
        name: &str,
        stack: &mut Vec<String>,
    ) -> Flow {
        let Some(chain) = table_plan.chain(name) else {
            return Flow::Returned;
        };
        self.path.push(name.to_string());
        stack.push(name.to_string());
        let flow = self.rules(table_plan, table, name, &chain.rules, stack);
        stack.pop();
        flow
    }

    fn rules(
        &mut self,
        table_plan: &TablePlan,
        table: Table,
        chain: &str,
        rules: &[Rule],
        stack: &mut Vec<String>,
    ) -> Flow {
        for (offset, rule) in rules.iter().enumerate() {
            let outcome = matching::rule_matches(&rule.matches, &self.packet);
            // Described only when needed: the lockout guard walks big plans.
            let here = || RuleRef::new(table, chain, offset + 1, rule);
            self.note_assumptions(&outcome.assumptions, &here);
            if !outcome.matched {
                continue;
            }
            match &rule.action {
                Action::Return => return Flow::Returned,
                Action::Log { prefix } => {
                    let prefix = prefix
                        .as_deref()
                        .map(|p| format!(" with prefix \"{p}\""))
                        .unwrap_or_default();
                    self.note(format!("{} logs the packet{prefix}", here().location()));
                }
                Action::None => {}
                Action::Jump { chain: target } if stack.contains(target) => {
                    self.note(format!(
                        "{} jumps back into `{target}`, a loop iptables would refuse: \
                         assumed it returns",
                        here().location()
                    ));
                }
                Action::Jump { chain: target } if table_plan.chain(target).is_none() => {
                    self.note(format!(
                        "{} jumps to foreign chain `{target}`, which cannot be followed \
                         offline: assumed it returns",
                        here().location()
                    ));
                }
                Action::Jump { chain: target } => {
                    if let ended @ Flow::Ended { .. } = self.chain(table_plan, table, target, stack)
                    {
                        return ended;
                    }
                }
                action => {
                    return Flow::Ended {
                        action: action.clone(),
                        rule: here(),
                    }
                }
            }
        }
        Flow::Returned
    }

    fn note_assumptions(&mut self, assumptions: &[Assumption], here: &dyn Fn() -> RuleRef) {
        for assumption in assumptions {
            let note = match assumption {
                Assumption::Unspecified(field) => {
                    // Once per field: a long block list would say it for each.
                    if !self.noted_fields.insert(*field) {
                        continue;
                    }
                    let rule = here();
                    format!(
                        "{} no rule names, so {} does not match: {}",
                        field.describe(),
                        rule.location(),
                        rule.text
                    )
                }
                Assumption::RateLimit(_) => format!(
                    "{}: rate limit assumed not yet reached (first packet)",
                    here().location()
                ),
                Assumption::Recent(recent) => match recent.check {
                    RecentCheck::Set => format!(
                        "{}: records the source in recent list `{}`",
                        here().location(),
                        recent.list
                    ),
                    RecentCheck::Update { .. } => format!(
                        "{}: recent list `{}` assumed empty (first packet), so the source \
                         is not over its limit",
                        here().location(),
                        recent.list
                    ),
                },
            };
            self.note(note);
        }
    }

    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

/// Offline, only loopback is known to be this host; any other DNAT target
/// is taken as another machine, which is what DNAT is for.
fn is_local(addr: IpAddr) -> bool {
    addr.is_loopback()
}

impl RuleRef {
    fn new(table: Table, chain: &str, index: usize, rule: &Rule) -> RuleRef {
        RuleRef {
            table,
            chain: chain.to_string(),
            index,
            text: describe::rule_text(rule),
            origin: rule.origin.clone(),
        }
    }
}
