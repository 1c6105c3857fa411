//! Explain: which rule decides a packet, offline, from the plan (script →
//! plan → **explain**). Pure: no kernel, no clock. The lockout guard of
//! `apply` asks the same evaluator whether the admin's SSH connection would
//! survive a plan (DESIGN.md 6).
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
mod packet;
mod query;
mod walk;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

pub use error::ExplainError;
pub use packet::{Packet, Transport};
pub use query::{Query, Request};

use crate::netfilter::{Family, Hook, Policy, Table};
use crate::plan::{family_of, Origin, Plan};

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
    /// fwscript's baseline (DESIGN.md 2.1).
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

impl fmt::Display for Decision {
    /// `FWS-INPUT-ALLOW rule 3 (fw.rhai:12:1): -s … -j ACCEPT`, or
    /// `policy DROP of INPUT (baseline)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Rule(rule) => {
                let origin = rule
                    .origin
                    .as_ref()
                    .map_or_else(|| "baseline".to_string(), ToString::to_string);
                write!(f, "{} ({origin}): {}", rule.location(), rule.text)
            }
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
}

impl Explanation {
    pub fn accepts(&self) -> bool {
        self.verdict == Verdict::Accept
    }
}

/// Walks `packet` through `plan` from the built-in chain `hook` (input,
/// forward or output) to its verdict.
pub fn explain(plan: &Plan, packet: &Packet, hook: Hook) -> Explanation {
    walk::Walk::new(plan.family(packet.family), packet.clone()).run(hook)
}

/// For the lockout guard: would a new TCP connection from `client` to this
/// host's `server_port` get in? The server address and interface count as
/// not given (see [`Packet`]); build a [`Packet`] to say more.
pub fn would_accept_new_tcp(plan: &Plan, client: IpAddr, server_port: u16) -> Explanation {
    // sshd on a dual-stack socket reports IPv4 clients as `::ffff:a.b.c.d`,
    // but on the wire, where iptables sees them, they are IPv4.
    let client = client.to_canonical();
    let packet = Packet {
        src: Some(client),
        ..Packet::new_tcp(family_of(&client), server_port)
    };
    explain(plan, &packet, Hook::Input)
}

/// One verdict for answers in both families: theirs when they agree, else
/// the stricter, so a script never reads "ACCEPT" for a packet one family
/// drops.
pub fn overall_verdict(explanations: &[Explanation]) -> Option<Verdict> {
    explanations.iter().map(|e| e.verdict).max()
}
