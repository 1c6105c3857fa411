//! Explain: which rule decides a packet, offline, from the plan (script →
//! plan → **explain**). Pure: no kernel, no clock. The lockout guard of
//! `apply` asks the same evaluator, in its pessimistic reading, whether the
//! admin's SSH connection would survive a plan whatever it cannot know
//! (see [`Reading`]).
//!
//! The walk follows the kernel's order: mangle and nat PREROUTING (NAT for
//! the first packet of a connection only, and it may send the packet to
//! FORWARD instead of INPUT), then mangle and filter at the hook, each owned
//! chain with its jumps, RETURNs and the built-in chain's policy. What cannot
//! be known offline (rate limits, `recent` lists, foreign chains, fields the
//! user left out) is assumed for a first packet and said in a note.

mod describe;
mod error;
mod matching;
mod notes;
mod packet;
mod query;
mod reading;
mod walk;

#[cfg(test)]
mod tests;

use std::fmt;

pub use error::ExplainError;
pub use matching::{Assumption, Field};
pub use packet::{Packet, Transport};
pub use query::{Query, Request};
pub use reading::{Rates, Reading};

use crate::netfilter::{Family, Hook, Policy, Table};
use crate::plan::{Action, Origin, Plan};

/// The fate of a packet.
///
/// Ordered by strictness, so the stricter of two verdicts is the `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Accept,
    Reject,
    Drop,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Accept => "ACCEPT",
            Verdict::Reject => "REJECT",
            Verdict::Drop => "DROP",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule in an owned chain, as `iptables -L --line-numbers` counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    pub table: Table,
    pub chain: String,
    /// 1-based.
    pub index: usize,
    /// The rule in iptables syntax, without fwscript's id comment.
    pub text: String,
    /// The script call that made it; `None` for fwscript's own rules (the
    /// baseline).
    pub origin: Option<Origin>,
}

impl RuleRef {
    /// `FWS-INPUT-ALLOW rule 3`; other tables than filter are named, since
    /// nat and mangle chains share names.
    pub fn location(&self) -> String {
        match self.table {
            Table::Filter => format!("{} rule {}", self.chain, self.index),
            table => format!("{table} {} rule {}", self.chain, self.index),
        }
    }
}

/// Who set a built-in chain's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// fwscript's baseline (docs/functions.md).
    Baseline,
    /// A `policy()` call in the script.
    Script(Origin),
    /// Nobody: the plan leaves the chain alone, and the kernel's built-in
    /// chains start out accepting.
    KernelDefault,
}

/// What decided the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Rule(RuleRef),
    Policy {
        table: Table,
        hook: Hook,
        policy: Policy,
        source: PolicySource,
    },
}

impl fmt::Display for RuleRef {
    /// `FWS-INPUT-ALLOW rule 3 (fw.rhai:12:1): -s … -j ACCEPT`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = self
            .origin
            .as_ref()
            .map_or_else(|| "baseline".to_string(), ToString::to_string);
        write!(f, "{} ({origin}): {}", self.location(), self.text)
    }
}

impl fmt::Display for Decision {
    /// `FWS-INPUT-ALLOW rule 3 (fw.rhai:12:1): -s … -j ACCEPT`, or
    /// `policy DROP of INPUT (baseline)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Rule(rule) => rule.fmt(f),
            Decision::Policy {
                table,
                hook,
                policy,
                source,
            } => {
                let table = match table {
                    Table::Filter => String::new(),
                    table => format!("{table} "),
                };
                let source = match source {
                    PolicySource::Baseline => "baseline".to_string(),
                    PolicySource::Script(origin) => origin.to_string(),
                    PolicySource::KernelDefault => {
                        "not set by the script: the kernel's default".to_string()
                    }
                };
                write!(f, "policy {policy} of {table}{hook} ({source})")
            }
        }
    }
}

/// The answer for one packet in one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub family: Family,
    /// The built-in chain that decided: the one asked for, unless NAT sent
    /// the packet to the other side of the routing decision.
    pub hook: Hook,
    pub verdict: Verdict,
    pub decided_by: Decision,
    /// The chains entered, in order: `filter INPUT`, `FWS-INPUT`, …
    pub path: Vec<String>,
    /// What the verdict assumes or what happened on the way (NAT, logging).
    pub notes: Vec<String>,
    /// The packet as it was when decided, after any NAT.
    pub packet: Packet,
    /// The nat rule that rewrote the destination of a new connection
    /// (REDIRECT, DNAT) — or, read pessimistically, may have: one that may
    /// match, or a jump in nat the walk cannot follow.
    pub rewritten_by: Option<Rewrite>,
    /// Read pessimistically: what a verdict other than ACCEPT rests on that
    /// cannot be known offline — why the deciding rule may apply, then the
    /// accepts the walk went past because they may not. Empty when the
    /// verdict is certain, and always in the typical reading.
    pub doubts: Vec<Doubt>,
}

/// Something a pessimistic verdict rests on that cannot be known offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doubt {
    pub rule: RuleRef,
    pub kind: DoubtKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoubtKind {
    /// The rule may match, and the verdict follows if it does: the deciding
    /// rule, a jump on the way to it, or a RETURN that may send the packet
    /// back to where it meets its end.
    MayMatch(Vec<Assumption>),
    /// The rule would have accepted the packet but may not match, so the
    /// walk went on past it.
    MayNotMatch(Vec<Assumption>),
    /// The rule hands the packet to a target the plan does not hold
    /// (NFQUEUE, a foreign chain) or jumps back into a chain being walked:
    /// what happens there cannot be known offline.
    CannotFollow(String),
}

/// A nat rule that sends a new connection elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub rule: RuleRef,
    /// REDIRECT or DNAT; a jump when the walk could not follow it.
    pub action: Action,
    /// Why it may apply; empty when it certainly does.
    pub doubts: Vec<Doubt>,
}

impl Explanation {
    pub fn accepts(&self) -> bool {
        self.verdict == Verdict::Accept
    }
}

/// Walks `packet` through `plan` from the built-in chain `hook` (input,
/// forward or output) to its verdict, in the typical reading.
pub fn explain(plan: &Plan, packet: &Packet, hook: Hook) -> Explanation {
    explain_as(plan, packet, hook, Reading::Typical)
}

/// Like [`explain`], in the given reading of what cannot be known offline.
pub fn explain_as(plan: &Plan, packet: &Packet, hook: Hook, reading: Reading) -> Explanation {
    walk::Walk::new(plan.family(packet.family), packet.clone(), reading).run(hook)
}

/// One verdict for answers in both families: theirs when they agree, else
/// the stricter, so a script never reads "ACCEPT" for a packet one family
/// drops.
pub fn overall_verdict(explanations: &[Explanation]) -> Option<Verdict> {
    explanations.iter().map(|e| e.verdict).max()
}
