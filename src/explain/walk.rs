//! The walk: one packet through the tables and chains of one family's plan,
//! in the order the kernel visits them, following jumps and returns.
//!
//! Its cost is linear in the plan: chains are found through an index built
//! once per table, a chain's outcome is remembered once walked (the packet
//! does not change within a table, so a second jump to it ends the same
//! way), notes are a set, and a rule is described only when it is named.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use super::describe;
use super::matching::{self, Assumption, Field, Match};
use super::notes::Notes;
use super::packet::Packet;
use super::reading::Reading;
use super::{Decision, Doubt, DoubtKind, Explanation, PolicySource, Rewrite, RuleRef, Verdict};
use crate::netfilter::{Hook, Policy, Table};
use crate::plan::{Action, ChainPlan, CtState, FamilyPlan, RecentCheck, Rule, TablePlan};

/// How many accepts that may not apply an explanation keeps as doubts: the
/// first few say why; a long list of them would only repeat it.
const PASSED_OVER_KEPT: usize = 8;

pub(super) struct Walk<'p> {
    plan: Option<&'p FamilyPlan>,
    reading: Reading,
    packet: Packet,
    path: Vec<String>,
    notes: Notes,
    /// Fields left out of the packet that a note already owned up to.
    noted_fields: BTreeSet<Field>,
    /// What let the packet through so far: the filter table's say wins over
    /// mangle's, which only stands when the plan has no filter table.
    accepted_by: Option<Decision>,
    rewritten_by: Option<Rewrite>,
    /// Why the step that ended the packet may apply (pessimistic reading).
    decisive: Vec<Doubt>,
    /// Accepts and RETURNs the walk went past because they may not apply
    /// (pessimistic reading): the first few.
    passed_over: Vec<Doubt>,
    /// Rules looked at, chains entered, notes made: what the cost test
    /// counts, since a walk must stay linear in the plan.
    work: usize,
}

/// One table at one hook: its chains by name, those being walked (a jump
/// back into one is a loop), and the outcome of those already walked.
struct TableWalk<'p> {
    table: Table,
    chains: HashMap<&'p str, &'p ChainPlan>,
    walking: HashSet<&'p str>,
    walked: HashMap<&'p str, Flow>,
    /// Loops met so far. A chain whose walk met one is not remembered: its
    /// outcome depended on where it was entered from.
    loops: usize,
}

impl<'p> TableWalk<'p> {
    fn new(table: Table, plan: &'p TablePlan) -> TableWalk<'p> {
        TableWalk {
            table,
            chains: plan.chains.iter().map(|c| (c.name.as_str(), c)).collect(),
            walking: HashSet::new(),
            walked: HashMap::new(),
            loops: 0,
        }
    }
}

/// How the walk through one chain ended.
#[derive(Debug, Clone)]
enum Flow {
    /// The chain ran out or hit RETURN: back to the caller. Read
    /// pessimistically, also when only some paths through it return: the
    /// caller goes on for those, the others ended well.
    Returned,
    /// A rule with a terminal action matched (or, read pessimistically, a
    /// harmful one may match, or a jump could not be followed).
    Ended(Ending),
}

#[derive(Debug, Clone)]
struct Ending {
    action: Action,
    rule: RuleRef,
    /// Why it may apply; empty when it certainly does.
    doubts: Vec<Doubt>,
}

/// One table's say at one hook: a rule's terminal action, or the policy.
struct Step {
    action: Action,
    decided_by: Decision,
    doubts: Vec<Doubt>,
}

/// Actions whose "maybe" a pessimistic reading takes as "yes": they end or
/// divert the packet. A jump only ends a walk when it could not be followed.
fn harmful(action: &Action) -> bool {
    matches!(
        action,
        Action::Drop
            | Action::Reject
            | Action::Redirect { .. }
            | Action::Dnat { .. }
            | Action::Jump { .. }
    )
}

impl<'p> Walk<'p> {
    pub(super) fn new(plan: Option<&'p FamilyPlan>, packet: Packet, reading: Reading) -> Walk<'p> {
        Walk {
            plan,
            reading,
            packet,
            path: Vec::new(),
            notes: Notes::default(),
            noted_fields: BTreeSet::new(),
            accepted_by: None,
            rewritten_by: None,
            decisive: Vec::new(),
            passed_over: Vec::new(),
            work: 0,
        }
    }

    pub(super) fn run(self, requested: Hook) -> Explanation {
        self.run_counted(requested).0
    }

    /// Follows the packet from where it enters (`requested`'s side of the
    /// routing decision) to its verdict, and says how much work that took.
    /// NAT is consulted for the first packet of a connection only, as
    /// conntrack does.
    pub(super) fn run_counted(mut self, requested: Hook) -> (Explanation, usize) {
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

    fn finish(
        self,
        hook: Hook,
        (verdict, decided_by): (Verdict, Decision),
    ) -> (Explanation, usize) {
        // The accepts passed over only matter to a packet that did not get
        // through.
        let mut doubts = self.decisive;
        if verdict != Verdict::Accept {
            doubts.extend(self.passed_over);
        }
        let explanation = Explanation {
            family: self.packet.family,
            hook,
            verdict,
            decided_by,
            path: self.path,
            notes: self.notes.into_vec(),
            packet: self.packet,
            rewritten_by: self.rewritten_by,
            doubts,
        };
        (explanation, self.work)
    }

    /// A filtering table (filter, mangle) at one hook: `Some` when it ends
    /// the packet, `None` when it lets it on.
    fn filter(&mut self, table: Table, hook: Hook) -> Option<(Verdict, Decision)> {
        let step = self.table_at(table, hook)?;
        let verdict = match step.action {
            Action::Drop => Verdict::Drop,
            Action::Reject => Verdict::Reject,
            // A target the walk could not follow (pessimistic reading only):
            // the worst it may do.
            Action::Jump { .. } => Verdict::Drop,
            // Validation keeps NAT targets out of filtering tables; anything
            // else terminal lets the packet on, like ACCEPT.
            _ => Verdict::Accept,
        };
        if verdict != Verdict::Accept {
            self.decisive = step.doubts;
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
        let Decision::Rule(rule) = step.decided_by else {
            return requested;
        };
        let original_port = self.packet.transport.dport();
        let next = match &step.action {
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
                    Hook::Input
                } else {
                    requested
                }
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
            // A target the walk could not follow (pessimistic reading
            // only): it may rewrite the destination to anything.
            Action::Jump { chain } => {
                self.note(format!(
                    "{} jumps to `{chain}`, which cannot be followed offline: it may \
                     rewrite the destination",
                    rule.location()
                ));
                requested
            }
            _ => return requested,
        };
        self.rewritten_by = Some(Rewrite {
            rule,
            action: step.action,
            doubts: step.doubts,
        });
        next
    }

    /// nat INPUT or POSTROUTING: SNAT and MASQUERADE rewrite the source on
    /// the way out; they never decide whether the packet passes.
    fn source_nat(&mut self, nat_hook: Hook) {
        let Some(Step {
            action,
            decided_by: Decision::Rule(rule),
            ..
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
        let mut walk = TableWalk::new(table, table_plan);
        let entry = walk.chains.get(hook.owned_chain().as_str()).copied();
        let policy = table_plan.policies.get(&hook);
        if entry.is_none() && policy.is_none() {
            return None;
        }
        self.path.push(format!("{table} {hook}"));
        if let Some(entry) = entry {
            if let Flow::Ended(ending) = self.chain(&mut walk, entry) {
                return Some(Step {
                    action: ending.action,
                    decided_by: Decision::Rule(ending.rule),
                    doubts: ending.doubts,
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
            doubts: Vec::new(),
        })
    }

    /// Walks one owned chain, or recalls how it ended the last time.
    fn chain(&mut self, walk: &mut TableWalk<'p>, chain: &'p ChainPlan) -> Flow {
        self.work += 1;
        self.path.push(chain.name.clone());
        if let Some(flow) = walk.walked.get(chain.name.as_str()) {
            return flow.clone();
        }
        walk.walking.insert(&chain.name);
        let loops_before = walk.loops;
        let flow = self.rules(walk, chain);
        walk.walking.remove(chain.name.as_str());
        if walk.loops == loops_before {
            walk.walked.insert(&chain.name, flow.clone());
        }
        flow
    }

    fn rules(&mut self, walk: &mut TableWalk<'p>, chain: &'p ChainPlan) -> Flow {
        let table = walk.table;
        // Read pessimistically, a RETURN that may match splits the walk:
        // the caller goes on for the packets it sends back, this chain for
        // the others.
        let mut may_have_returned = false;
        for (offset, rule) in chain.rules.iter().enumerate() {
            self.work += 1;
            let outcome = matching::rule_matches(&rule.matches, &self.packet, self.reading);
            // Described only when needed: the lockout guard walks big plans.
            let here = || RuleRef::new(table, &chain.name, offset + 1, rule);
            let certain = match outcome.matched {
                Match::No => {
                    self.note_assumptions(&outcome.assumptions, &here);
                    continue;
                }
                Match::Yes => {
                    self.note_assumptions(&outcome.assumptions, &here);
                    true
                }
                Match::Maybe => false,
            };
            let may_match = || Doubt {
                rule: here(),
                kind: DoubtKind::MayMatch(outcome.assumptions.clone()),
            };
            match &rule.action {
                Action::Return if certain => return Flow::Returned,
                Action::Return => {
                    may_have_returned = true;
                    self.pass_over(&may_match);
                }
                Action::Log { prefix } => {
                    if certain {
                        let prefix = prefix
                            .as_deref()
                            .map(|p| format!(" with prefix \"{p}\""))
                            .unwrap_or_default();
                        self.note(format!("{} logs the packet{prefix}", here().location()));
                    }
                }
                Action::None => {}
                Action::Jump { chain: target } => {
                    let flow = match walk.chains.get(target.as_str()).copied() {
                        Some(sub) if !walk.walking.contains(target.as_str()) => {
                            self.chain(walk, sub)
                        }
                        known => {
                            let looped = known.is_some();
                            if looped {
                                walk.loops += 1;
                            }
                            if self.reading.is_pessimistic() {
                                let mut doubts = vec![Doubt {
                                    rule: here(),
                                    kind: DoubtKind::CannotFollow(target.clone()),
                                }];
                                doubts.extend((!certain).then(may_match));
                                return Flow::Ended(Ending {
                                    action: rule.action.clone(),
                                    rule: here(),
                                    doubts,
                                });
                            }
                            let note = if looped {
                                format!(
                                    "{} jumps back into `{target}`, a loop iptables would \
                                     refuse: assumed it returns",
                                    here().location()
                                )
                            } else {
                                format!(
                                    "{} jumps to foreign chain `{target}`, which cannot be \
                                     followed offline: assumed it returns",
                                    here().location()
                                )
                            };
                            self.note(note);
                            continue;
                        }
                    };
                    match flow {
                        Flow::Returned => {}
                        Flow::Ended(mut ending) if harmful(&ending.action) => {
                            ending.doubts.extend((!certain).then(may_match));
                            return Flow::Ended(ending);
                        }
                        ended if certain => {
                            return match may_have_returned {
                                true => Flow::Returned,
                                false => ended,
                            }
                        }
                        // The jump may not be taken, and then neither is
                        // the accept it led to.
                        Flow::Ended(_) => self.pass_over(&|| Doubt {
                            rule: here(),
                            kind: DoubtKind::MayNotMatch(outcome.assumptions.clone()),
                        }),
                    }
                }
                action if harmful(action) => {
                    return Flow::Ended(Ending {
                        action: action.clone(),
                        rule: here(),
                        doubts: (!certain).then(may_match).into_iter().collect(),
                    })
                }
                action if certain => {
                    return match may_have_returned {
                        true => Flow::Returned,
                        false => Flow::Ended(Ending {
                            action: action.clone(),
                            rule: here(),
                            doubts: Vec::new(),
                        }),
                    }
                }
                // An accept that may not apply: the walk goes on as if it
                // did not.
                _ => self.pass_over(&|| Doubt {
                    rule: here(),
                    kind: DoubtKind::MayNotMatch(outcome.assumptions.clone()),
                }),
            }
        }
        Flow::Returned
    }

    fn pass_over(&mut self, doubt: &dyn Fn() -> Doubt) {
        if self.passed_over.len() < PASSED_OVER_KEPT {
            self.passed_over.push(doubt());
        }
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
        self.work += 1;
        self.notes.insert(note);
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
