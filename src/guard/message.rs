//! What the guard tells the admin: a refusal naming the rule, its script
//! line, why it may apply and how to proceed; a warning naming which of the
//! client's connections a rate limit drops.

use std::fmt;

use super::foreign::{Ending, ForeignDrop};
use super::{Leg, Malformed, SshConnection};
use crate::explain::{
    Assumption, Decision, Doubt, DoubtKind, Explanation, Field, Rewrite, RuleRef, Verdict,
};
use crate::plan::{Action, RateLimit, Recent, RecentCheck, TcpFlag};

/// How many doubts a refusal spells out; the rest are counted.
const DOUBTS_SHOWN: usize = 4;

/// Why `apply` refuses to go on.
#[derive(Debug)]
pub enum Lockout {
    /// `SSH_CONNECTION` is set but not what sshd writes.
    Malformed(Malformed),
    /// A packet the session needs would, or may, not get through.
    Blocked {
        session: SshConnection,
        leg: Leg,
        answer: Box<Explanation>,
    },
    /// nat would, or may, send a new connection somewhere else.
    Rewritten {
        session: SshConnection,
        rewrite: Box<Rewrite>,
    },
    /// Moving the accepting hook to the end of its chain puts a foreign
    /// rule that drops a packet the session needs ahead of it.
    Foreign {
        session: SshConnection,
        leg: Leg,
        drop: Box<ForeignDrop>,
    },
}

impl std::error::Error for Lockout {}

impl fmt::Display for Lockout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lockout::Malformed(why) => write!(
                f,
                "refusing to apply: `SSH_CONNECTION` is set, but not as sshd writes it \
                 (`client_ip client_port server_ip server_port`): {why}. The lockout guard \
                 cannot tell which session to keep reachable, so it refuses rather than \
                 guess\n  = hint: run apply from the SSH session itself, or pass --force if \
                 you are sure"
            ),
            Lockout::Blocked {
                session,
                leg,
                answer,
            } => {
                let doubts = worth_saying(&answer.doubts);
                let (cut, modal) = modals(&doubts);
                write!(
                    f,
                    "refusing to apply: this SSH session {cut} be cut off. {} {modal} be {} \
                     by {}",
                    subject(session, *leg),
                    verdict_word(answer.verdict),
                    answer.decided_by
                )?;
                let decided = match &answer.decided_by {
                    Decision::Rule(rule) => Some(rule),
                    Decision::Policy { .. } => None,
                };
                write_doubts(f, &doubts, decided, *leg)?;
                write!(f, "\n  = hint: {}", blocked_hint(session, *leg, answer))
            }
            Lockout::Rewritten { session, rewrite } => {
                let doubts = worth_saying(&rewrite.doubts);
                let (cut, modal) = modals(&doubts);
                let elsewhere = match &rewrite.action {
                    Action::Redirect { to_port } => format!("to port {to_port} instead"),
                    Action::Dnat { to } => format!("to {to} instead"),
                    Action::Jump { chain } => format!(
                        "to `{chain}`, which cannot be followed offline and may send it anywhere"
                    ),
                    other => format!("elsewhere ({other:?})"),
                };
                write!(
                    f,
                    "refusing to apply: this SSH session {cut} be cut off. {} {modal} send a \
                     new connection from {} to port {} {elsewhere}",
                    rewrite.rule, session.client, session.server_port
                )?;
                write_doubts(f, &doubts, Some(&rewrite.rule), Leg::NewConnection)?;
                write!(
                    f,
                    "\n  = hint: keep port {} out of the {} at {}, or first move the session \
                     to where it leads (connect there and apply from that session); or pass \
                     --force if you are sure",
                    session.server_port,
                    match rewrite.action {
                        Action::Jump { .. } => "jump",
                        _ => "rewrite",
                    },
                    origin_of(&rewrite.rule)
                )
            }
            Lockout::Foreign { session, leg, drop } => {
                let (cut, modal) = match drop.is_certain() {
                    true => ("would", "would"),
                    false => ("could", "may"),
                };
                let done = drop.ending.done();
                let chain = drop.chain.chain_name();
                write!(
                    f,
                    "refusing to apply: this SSH session {cut} be cut off. {} {modal} be {done} \
                     by {} filter {chain} rule {}, which is not fwscript's: `{}`",
                    subject(session, *leg),
                    drop.family,
                    drop.position,
                    drop.spec
                )?;
                if let Some((inner, rule)) = &drop.inside {
                    write!(
                        f,
                        " (its chain `{inner}` {done_by} with `{rule}`)",
                        done_by = match (&drop.ending, done) {
                            (Ending::Unknown(_), _) => "may drop them",
                            (_, "rejected") => "rejects them",
                            _ => "drops them",
                        }
                    )?;
                }
                match drop.moved {
                    true => write!(
                        f,
                        "\n  it comes after fwscript's accepting hook now, and this apply moves \
                         the hook to the end of {chain}, below it, where the rule decides first"
                    )?,
                    false => write!(
                        f,
                        "\n  it hands the packet back to {chain}'s policy, which accepts now and \
                         which this apply sets to DROP"
                    )?,
                }
                match &drop.ending {
                    Ending::Target(_) => {}
                    Ending::Unknown(target) => write!(
                        f,
                        "\n  it hands the packet to `{target}`, whose verdict the guard cannot \
                         know offline, so it counts as a drop"
                    )?,
                    Ending::GotoEnd { chain: to, policy } => write!(
                        f,
                        "\n  it goes to `{to}` (`-g`), and a packet that comes back from there \
                         skips the rest of {chain}: its policy {} decides, before fwscript's hook",
                        policy.name()
                    )?,
                    // Said by the line above when the policy is what changes.
                    Ending::Return { .. } if !drop.moved => {}
                    Ending::Return { policy } => write!(
                        f,
                        "\n  its RETURN ends {chain} for the packet: the policy {} decides, \
                         before fwscript's hook",
                        policy.name()
                    )?,
                }
                if !drop.certain {
                    f.write_str(
                        "\n  it may match: the guard cannot know everything it matches (the \
                         interface the session arrives on, the port a new connection comes \
                         from, or a match it does not read), so it assumes it does",
                    )?;
                }
                let tool = match drop.family {
                    crate::netfilter::Family::Ipv4 => "iptables",
                    crate::netfilter::Family::Ipv6 => "ip6tables",
                };
                let instead = match drop.moved {
                    true => format!("move it above fwscript's hook (`{tool} -I {chain} …`)"),
                    false => "make it accept the session's packets".to_string(),
                };
                write!(
                    f,
                    "\n  = hint: delete that rule (`{tool} -D {chain} {}`) or {instead}, then \
                     apply again; or pass --force to apply anyway if you are sure",
                    drop.position
                )
            }
        }
    }
}

/// "would" for a certain outcome, "could"/"may" for one that rests on
/// something the guard cannot know.
fn modals(doubts: &[&Doubt]) -> (&'static str, &'static str) {
    if doubts.is_empty() {
        ("would", "would")
    } else {
        ("could", "may")
    }
}

/// The packet in question, as the admin would say it.
fn subject(session: &SshConnection, leg: Leg) -> String {
    let (client, port) = (session.client, session.server_port);
    match leg {
        Leg::NewConnection => format!("A new connection from {client} to port {port}"),
        Leg::FromClient(flags) => format!(
            "In an open session, the client's packets with {} from {client} to port {port}",
            flag_names(flags)
        ),
        Leg::Reply(flags) => format!(
            "This server's replies with {} from port {port} to {client}",
            flag_names(flags)
        ),
    }
}

fn flag_names(flags: &[TcpFlag]) -> String {
    let names: Vec<&str> = flags.iter().map(|flag| flag.name()).collect();
    names.join(",")
}

fn verdict_word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Reject => "rejected",
        Verdict::Drop | Verdict::Accept => "dropped",
    }
}

fn origin_of(rule: &RuleRef) -> String {
    rule.origin
        .as_ref()
        .map_or_else(|| rule.location(), ToString::to_string)
}

/// The doubts an admin can act on. The baseline's loopback accepts may not
/// apply to a session whose interface is unknown, but they are in every
/// plan, and a session from another host never arrives on `lo`: saying so
/// on every refusal would bury the rule that matters.
fn worth_saying(doubts: &[Doubt]) -> Vec<&Doubt> {
    doubts
        .iter()
        .filter(|d| !(matches!(d.kind, DoubtKind::MayNotMatch(_)) && d.rule.origin.is_none()))
        .collect()
}

/// One line per doubt: the deciding rule's as "it", the others named.
fn write_doubts(
    f: &mut fmt::Formatter<'_>,
    doubts: &[&Doubt],
    decided: Option<&RuleRef>,
    leg: Leg,
) -> fmt::Result {
    for doubt in doubts.iter().take(DOUBTS_SHOWN) {
        let it = if Some(&doubt.rule) == decided {
            "it".to_string()
        } else {
            doubt.rule.to_string()
        };
        match &doubt.kind {
            DoubtKind::MayMatch(assumptions) => {
                write!(f, "\n  {it} may match: {}", reasons(assumptions, leg))?
            }
            DoubtKind::MayNotMatch(assumptions) => write!(
                f,
                "\n  {it} would accept it, but may not match: {}",
                reasons(assumptions, leg)
            )?,
            DoubtKind::CannotFollow(target) => write!(
                f,
                "\n  {it} hands the packet to `{target}`, which cannot be followed offline: \
                 the guard assumes the worst of it"
            )?,
        }
    }
    if doubts.len() > DOUBTS_SHOWN {
        write!(
            f,
            "\n  and {} more rules the guard cannot decide offline",
            doubts.len() - DOUBTS_SHOWN
        )?;
    }
    Ok(())
}

fn reasons(assumptions: &[Assumption], leg: Leg) -> String {
    let reasons: Vec<String> = assumptions.iter().map(|a| reason(a, leg)).collect();
    reasons.join("; ")
}

fn reason(assumption: &Assumption, leg: Leg) -> String {
    let text = match assumption {
        Assumption::Unspecified(Field::InIface) => {
            "it tests the incoming interface (`-i`), and the interface the session arrives on \
             cannot be known offline"
        }
        Assumption::Unspecified(Field::OutIface) => {
            "it tests the outgoing interface (`-o`), and the interface the replies leave by \
             cannot be known offline"
        }
        Assumption::Unspecified(Field::Sport) if leg != Leg::NewConnection => {
            "it tests the source port, and the client's port is whichever it picked"
        }
        Assumption::Unspecified(Field::Sport) => {
            "it tests the source port, and a new connection comes from whichever port the \
             client picks"
        }
        Assumption::Unspecified(Field::Dport) => {
            "it tests the destination port, and the replies go to whichever port the client \
             picked"
        }
        Assumption::Unspecified(Field::Src | Field::Dst) => {
            "it tests an address the guard does not know"
        }
        Assumption::RateLimit(_) => {
            "it has a rate limit (`-m limit`), which depends on the connections before"
        }
        Assumption::Recent(_) => {
            "it checks a `recent` list, which depends on the connections before"
        }
    };
    text.to_string()
}

fn blocked_hint(session: &SshConnection, leg: Leg, answer: &Explanation) -> String {
    let force = "or pass --force if you are sure";
    let client = session.client;
    if let Leg::Reply(_) = leg {
        return format!(
            "let the replies out first (keep the baseline's `established` rule, or accept \
             output from port {}), {force}",
            session.server_port
        );
    }
    let passed_over = worth_saying(&answer.doubts)
        .iter()
        .any(|d| matches!(d.kind, DoubtKind::MayNotMatch(_)));
    let cannot_follow = answer.doubts.iter().find_map(|d| match &d.kind {
        DoubtKind::CannotFollow(target) => Some((target, &d.rule)),
        _ => None,
    });
    match (&answer.decided_by, cannot_follow) {
        (_, Some((target, rule))) => format!(
            "change the rule at {} so this session does not go to `{target}`, {force}",
            origin_of(rule)
        ),
        (Decision::Rule(rule), None) if rule.origin.is_some() => format!(
            "change the rule at {} so it spares this session ({client}), {force}",
            origin_of(rule)
        ),
        _ if passed_over => format!(
            "accept this session with a rule the guard can check, without an interface or \
             source port condition (for example `ssh_from(\"{client}\")`), {force}"
        ),
        _ => format!("allow it first (for example `ssh_from(\"{client}\")`), {force}"),
    }
}

/// A rate limit the session's client may run into: `apply` goes on, and
/// says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The rule with the limit, when the walk could name one.
    pub rule: Option<RuleRef>,
    text: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The warnings for `later`, a new connection read with rate limits and
/// `recent` lists in any state. The guard only asks after the first
/// connection passed, so whatever stops a later one is a rate limit.
pub(super) fn rate_warnings(session: &SshConnection, later: &Explanation) -> Vec<Warning> {
    if later.accepts() && later.rewritten_by.is_none() {
        return Vec::new();
    }
    let verdict = verdict_word(later.verdict);
    let mut warnings: Vec<Warning> = Vec::new();
    for doubt in &later.doubts {
        let (DoubtKind::MayMatch(assumptions) | DoubtKind::MayNotMatch(assumptions)) = &doubt.kind
        else {
            continue;
        };
        let rule = &doubt.rule;
        for assumption in assumptions.iter().filter(|a| a.is_rate()) {
            let accepts = matches!(doubt.kind, DoubtKind::MayNotMatch(_));
            let text = match (assumption, accepts) {
                (
                    Assumption::Recent(Recent {
                        check: RecentCheck::Update { seconds, hits },
                        ..
                    }),
                    false,
                ) => format!(
                    "limit_tcp at {} {verdict_verb} this client's {} new SSH connection within \
                     {seconds} s ({}: {}); it stays shut while the client keeps trying",
                    origin_of(rule),
                    ordinal(hits.saturating_add(1)),
                    rule.location(),
                    rule.text,
                    verdict_verb = verdict_verb(later.verdict),
                ),
                (Assumption::RateLimit(limit), true) => format!(
                    "the rate limit at {} accepts new SSH connections at {}, counted over all \
                     clients ({}: {}); past that, the {} new connection in a burst from \
                     {} is {verdict} by {}",
                    origin_of(rule),
                    rate_text(limit),
                    rule.location(),
                    rule.text,
                    ordinal(burst(limit).saturating_add(1)),
                    session.client,
                    later.decided_by
                ),
                _ => format!(
                    "{rule} depends on the connections before: a later new SSH connection from \
                     {} to port {} may be {verdict} by {}",
                    session.client, session.server_port, later.decided_by
                ),
            };
            let warning = Warning {
                rule: Some(rule.clone()),
                text,
            };
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
    }
    if warnings.is_empty() {
        warnings.push(Warning {
            rule: None,
            text: format!(
                "a later new SSH connection from {} to port {} may be {verdict} by {}, \
                 depending on the connections before it",
                session.client, session.server_port, later.decided_by
            ),
        });
    }
    warnings
}

fn verdict_verb(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Reject => "rejects",
        Verdict::Drop | Verdict::Accept => "drops",
    }
}

/// iptables' default burst is 5.
fn burst(limit: &RateLimit) -> u32 {
    limit.burst.unwrap_or(5)
}

fn rate_text(limit: &RateLimit) -> String {
    format!(
        "{}/{} with bursts of {}",
        limit.count,
        limit.per.name(),
        burst(limit)
    )
}

/// 1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, …, 21st.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_read_as_english() {
        let got: Vec<String> = [1, 2, 3, 4, 7, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "7th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }
}
