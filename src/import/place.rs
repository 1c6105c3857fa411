//! Where each rule of a built-in chain lands in fwscript's order
//! (import: flatten → **place** → calls → script). fwscript evaluates a
//! chain in stages, not in the order rules were written:
//!
//! ```text
//! deny (drop, reject) → baseline → limit → allow (accept, log, return) → log → policy
//! ```
//!
//! (the kernel layout of the design contract: the deny stage at the top of
//! the built-in chain, everything that can accept after it). Moving a rule
//! to its stage changes no verdict as long as every pair of rules whose
//! order flips either gives the same verdict or can never meet the same
//! packet; [`resolve`] checks every such pair with [`model::overlap`] and,
//! where the order matters, moves a rule to where its order holds (a drop
//! after the accepts becomes a `return` to the policy) or gives it up as
//! not expressible, with the reason.

use std::collections::BTreeSet;

use super::flatten::{Entry, Flat, Hooked};
use super::model;
use super::rule::{Proto, RecentCheck, RuleMatch, Target};
use crate::netfilter::{Family, Hook, Policy};
use crate::plan::{CtState, RateUnit, TcpFlag, TcpFlags};

/// fwscript's stages in the order the kernel meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    Deny,
    Base,
    Limit,
    Allow,
    Log,
}

/// The pieces of the baseline, each switchable with `baseline()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Piece {
    Loopback,
    Established,
    Invalid,
    Icmp,
}

impl Piece {
    pub const ALL: [Piece; 4] = [
        Piece::Loopback,
        Piece::Established,
        Piece::Invalid,
        Piece::Icmp,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Piece::Loopback => "loopback",
            Piece::Established => "established",
            Piece::Invalid => "invalid",
            Piece::Icmp => "icmp",
        }
    }
}

/// A verdict as the check compares them. REJECT counts apart from DROP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
}

impl Verdict {
    pub fn of_policy(policy: Policy) -> Verdict {
        match policy {
            Policy::Accept => Verdict::Accept,
            Policy::Drop => Verdict::Drop,
        }
    }
}

/// What one unit of a chain is, as fwscript will say it.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Accepts what it matches.
    Accept,
    /// Drops or rejects what it matches.
    Deny { reject: bool },
    /// Logs, then lets the packet on.
    Log { prefix: Option<String> },
    /// A `recent` pair (with the accept it guards, when there is one
    /// right after it): `limit_tcp`.
    Limit {
        hits: u32,
        seconds: u32,
        reject: bool,
    },
    /// A drop that must stay after accepts it overlaps: a `return` from
    /// the allow stage, which leaves the packet to the DROP policy.
    PolicyReturn { reject: bool },
    /// An accept at the very end: the policy of a family whose chain
    /// accepts, where the other family's drops.
    CatchAll,
}

/// One rule (or a recognised group of rules) of a built-in chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// Position in the chain as the original has it.
    pub index: usize,
    pub matches: RuleMatch,
    pub kind: Kind,
    pub place: Place,
    /// The baseline piece this unit is, when it is one.
    pub piece: Option<Piece>,
    /// The original lines, for comments.
    pub lines: Vec<String>,
    /// What fwscript says differently from the original (a reject's kind,
    /// a limit's count of SYNs as new connections).
    pub notes: Vec<String>,
}

impl Unit {
    /// The verdict this unit gives in `world`: 0 — every list and limit
    /// fresh (a first packet); 1 — every list full and limit spent.
    pub fn verdict(&self, world: usize) -> Option<Verdict> {
        let limited = self.matches.limit.is_some();
        let active = !(limited && world == 1);
        match &self.kind {
            Kind::Accept | Kind::CatchAll if active => Some(Verdict::Accept),
            Kind::Deny { reject } | Kind::PolicyReturn { reject } if active => Some(if *reject {
                Verdict::Reject
            } else {
                Verdict::Drop
            }),
            Kind::Limit { reject, .. } => Some(match world {
                0 => Verdict::Accept,
                _ if *reject => Verdict::Reject,
                _ => Verdict::Drop,
            }),
            _ => None,
        }
    }

    fn has_verdict(&self) -> bool {
        self.verdict(0).is_some() || self.verdict(1).is_some()
    }
}

/// Something of the chain that is not a unit: comments in the script.
#[derive(Debug, Clone, PartialEq)]
pub enum Aside {
    /// Cannot be said in fwscript.
    Unexpressed { lines: Vec<String>, why: String },
    /// Never decides a packet, or decides only what another rule decides
    /// the same way.
    Covered { line: String, why: String },
    /// Another program's.
    Owned {
        owner: super::owners::Owner,
        line: String,
    },
}

/// One built-in chain of one family, translated.
#[derive(Debug, Clone)]
pub struct Chain {
    pub family: Family,
    pub hook: Hook,
    /// The original's policy (ACCEPT when the save has no such chain).
    pub policy: Policy,
    pub units: Vec<Unit>,
    /// Asides with the position they had among the units.
    pub asides: Vec<(usize, Aside)>,
    /// Rules left out that may drop (or otherwise end the walk of)
    /// packets: what comes after them may not accept those packets in
    /// the script, or the script would be wider than the original.
    pub blockers: Vec<Blocker>,
}

/// A rule of the original that may end packets' walk but is not in the
/// script.
#[derive(Debug, Clone)]
pub struct Blocker {
    /// Its position in the chain, as [`Unit::index`] counts.
    pub index: usize,
    /// At least every packet it may end.
    pub matches: RuleMatch,
    pub line: String,
}

impl Chain {
    /// The first blocker before position `index` that may end some of
    /// the packets `m` matches.
    fn blocker_before(&self, index: usize, m: &RuleMatch) -> Option<&Blocker> {
        self.blockers
            .iter()
            .find(|b| b.index < index && model::overlap(self.family, &b.matches, m))
    }

    /// Takes out every unit that accepts some packet a blocker before it
    /// may end, as a rule not imported (and, for a limit, which also
    /// drops, a blocker itself). Narrower, never wider.
    fn shadow(&mut self) {
        let mut kept = Vec::new();
        let units = std::mem::take(&mut self.units);
        for unit in units {
            let accepts = matches!(
                unit.kind,
                Kind::Accept | Kind::Limit { .. } | Kind::CatchAll
            );
            let by = accepts
                .then(|| self.blocker_before(unit.index, &unit.matches))
                .flatten()
                .map(|b| b.line.clone());
            let Some(by) = by else {
                kept.push(unit);
                continue;
            };
            if matches!(unit.kind, Kind::Limit { .. }) {
                self.blockers.push(Blocker {
                    index: unit.index,
                    matches: unit.matches.clone(),
                    line: unit.lines.last().cloned().unwrap_or_default(),
                });
            }
            let at = kept.len();
            self.asides.push((
                at,
                Aside::Unexpressed {
                    lines: unit.lines.clone(),
                    why: shadowed_why(&by),
                },
            ));
        }
        self.units = kept;
    }
}

fn shadowed_why(by: &str) -> String {
    format!(
        "it accepts packets that `{by}` before it may drop, and that rule is not \
         imported: left out too, so the script is never wider than the original \
         (narrower, until both are written by hand)"
    )
}

/// Within the baseline stage the pieces come in the collector's order.
fn base_rank(unit: &Unit) -> usize {
    match (unit.place, unit.piece) {
        (Place::Base, Some(piece)) => piece as usize,
        _ => 0,
    }
}

/// Reads one flattened filter chain into units and asides, recognising
/// baseline pieces, scan drops and `recent` pairs.
pub fn units(family: Family, hooked: &Hooked) -> Chain {
    let policy = hooked.policy.unwrap_or(Policy::Accept);
    let mut chain = Chain {
        family,
        hook: hooked.hook,
        policy,
        units: Vec::new(),
        asides: Vec::new(),
        blockers: Vec::new(),
    };
    let entries = &hooked.entries;
    let mut i = 0;
    while i < entries.len() {
        let at = chain.units.len();
        match &entries[i] {
            Entry::Owned { owner, line } => chain.asides.push((
                at,
                Aside::Owned {
                    owner: *owner,
                    line: line.clone(),
                },
            )),
            Entry::Unexpressed { lines, why, blocks } => {
                if let Some(matches) = blocks {
                    chain.blockers.push(Blocker {
                        index: i,
                        matches: (**matches).clone(),
                        line: lines.last().cloned().unwrap_or_default(),
                    });
                }
                chain.asides.push((
                    at,
                    Aside::Unexpressed {
                        lines: lines.clone(),
                        why: why.clone(),
                    },
                ))
            }
            Entry::Dead { line, why } => chain.asides.push((
                at,
                Aside::Covered {
                    line: line.clone(),
                    why: why.clone(),
                },
            )),
            Entry::Flat(flat) => {
                if let Some((unit, used)) = limit_pair(family, hooked.hook, &entries[i..], i) {
                    chain.units.push(unit);
                    i += used;
                    continue;
                }
                match unit(family, hooked.hook, flat, i) {
                    Ok(unit) => chain.units.push(unit),
                    Err(why) => {
                        let goes_on = matches!(
                            flat.target,
                            Target::Accept | Target::Log { .. } | Target::None
                        );
                        if !goes_on {
                            chain.blockers.push(Blocker {
                                index: i,
                                matches: flat.matches.clone(),
                                line: flat.line().to_string(),
                            });
                        }
                        chain.asides.push((
                            at,
                            Aside::Unexpressed {
                                lines: flat.lines.clone(),
                                why,
                            },
                        ))
                    }
                }
            }
        }
        i += 1;
    }
    chain.shadow();
    chain
}

fn unit(family: Family, hook: Hook, flat: &Flat, index: usize) -> Result<Unit, String> {
    let m = &flat.matches;
    if m.recent.is_some() {
        return Err(
            "a `recent` rule fwscript can only make as one of `limit_tcp`'s pair, \
             and this one is not part of such a pair"
                .into(),
        );
    }
    if m.hop_limit_255 && !is_neighbour_discovery(family, m) {
        return Err("fwscript cannot say `-m hl --hl-eq 255`".into());
    }
    let (kind, mut notes) = match &flat.target {
        Target::Accept => (Kind::Accept, Vec::new()),
        Target::Drop => (Kind::Deny { reject: false }, Vec::new()),
        Target::Reject { with } => {
            let notes = with
                .iter()
                .map(|w| {
                    format!("the original rejects with {w}; fwscript rejects with the default (port unreachable)")
                })
                .collect();
            (Kind::Deny { reject: true }, notes)
        }
        Target::Log { prefix } => {
            let kept = prefix.clone().filter(|p| valid_text(p, 29));
            let notes = match (prefix, &kept) {
                (Some(p), None) => vec![format!(
                    "its log prefix {p:?} is left out: fwscript takes at most 29 bytes without quotes, backslashes or control characters"
                )],
                _ => Vec::new(),
            };
            (Kind::Log { prefix: kept }, notes)
        }
        Target::None => {
            return Err("a rule without a target only counts packets".into());
        }
        other => return Err(format!("fwscript cannot use `{other:?}` in a filter chain")),
    };
    expressible(m, hook, &mut notes)?;
    let piece = piece_of(family, hook, m, &kind);
    let mut unit = Unit {
        index,
        matches: m.clone(),
        kind,
        place: Place::Allow,
        piece,
        lines: flat.lines.clone(),
        notes,
    };
    unit.place = match (&unit.kind, piece) {
        (_, Some(_)) => Place::Base,
        (Kind::Deny { .. }, None) => Place::Deny,
        (Kind::Log { .. }, None) if hook == Hook::Input && is_log_drops(&unit) => Place::Log,
        _ => Place::Allow,
    };
    Ok(unit)
}

fn is_neighbour_discovery(family: Family, m: &RuleMatch) -> bool {
    family == Family::Ipv6
        && m.proto == Some(Proto::Icmp)
        && m.icmp_type.is_some_and(|t| (133..=137).contains(&t))
}

/// What `rule()` has no key for.
fn expressible(m: &RuleMatch, hook: Hook, notes: &mut Vec<String>) -> Result<(), String> {
    if let Some(flags) = &m.tcp_flags {
        if flags.negated
            && *flags
                != (TcpFlags {
                    negated: true,
                    ..TcpFlags::syn()
                })
        {
            return Err("fwscript can negate only `--syn`, not other `--tcp-flags`".into());
        }
    }
    if let Some(Proto::Other(n)) = m.proto {
        return Err(format!("fwscript cannot match protocol {n}"));
    }
    for name in [&m.iface, &m.oface].into_iter().flatten() {
        if !valid_iface(name) {
            return Err(format!("fwscript cannot write the interface name `{name}`"));
        }
    }
    if m.iface.is_some() && matches!(hook, Hook::Output | Hook::Postrouting) {
        return Err("an incoming interface in an outgoing chain".into());
    }
    if let Some(comment) = &m.comment {
        if !valid_text(comment, 200) {
            notes.push(format!("its comment {comment:?} is left out: fwscript refuses quotes, backslashes and control characters in comments"));
        }
    }
    Ok(())
}

pub fn valid_iface(name: &str) -> bool {
    let body = name.strip_suffix('+').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 15
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

pub fn valid_text(text: &str, max: usize) -> bool {
    !text.trim().is_empty()
        && text.len() <= max
        && !text
            .chars()
            .any(|c| crate::script::is_hidden(c) || matches!(c, '"' | '\'' | '\\' | '`'))
}

/// The baseline piece a rule is, exactly as the collector writes it.
fn piece_of(family: Family, hook: Hook, m: &RuleMatch, kind: &Kind) -> Option<Piece> {
    let bare = RuleMatch {
        comment: None,
        hop_limit_255: false,
        ..m.clone()
    };
    let only = |check: &dyn Fn(&mut RuleMatch)| {
        let mut rest = bare.clone();
        check(&mut rest);
        rest.is_any()
    };
    match kind {
        Kind::Accept => {
            if hook == Hook::Input
                && bare.iface.as_deref() == Some("lo")
                && only(&|r| r.iface = None)
            {
                return Some(Piece::Loopback);
            }
            if hook == Hook::Output
                && bare.oface.as_deref() == Some("lo")
                && only(&|r| r.oface = None)
            {
                return Some(Piece::Loopback);
            }
            if bare.states == [CtState::Established, CtState::Related]
                && only(&|r| r.states.clear())
            {
                return Some(Piece::Established);
            }
            if bare.proto == Some(Proto::Icmp)
                && bare
                    .icmp_type
                    .is_some_and(|t| icmp_piece_types(family, hook).contains(&t))
                && only(&|r| {
                    r.proto = None;
                    r.icmp_type = None;
                })
            {
                return Some(Piece::Icmp);
            }
            None
        }
        Kind::Deny { reject: false }
            if bare.states == [CtState::Invalid] && only(&|r| r.states.clear()) =>
        {
            Some(Piece::Invalid)
        }
        _ => None,
    }
}

/// The ICMP types the baseline accepts at `hook` (the collector's lists).
pub fn icmp_piece_types(family: Family, hook: Hook) -> &'static [u8] {
    match (family, hook) {
        (Family::Ipv4, Hook::Input) => &[3, 11],
        (Family::Ipv6, Hook::Input) => &[1, 2, 3, 133, 134, 135, 136],
        (Family::Ipv6, Hook::Output) => &[133, 135, 136],
        _ => &[],
    }
}

/// The pieces the baseline puts into `hook` (as the collector does).
pub fn pieces_at(family: Family, hook: Hook, output_drops: bool) -> Vec<Piece> {
    match hook {
        Hook::Input => Piece::ALL.to_vec(),
        Hook::Forward => vec![Piece::Established, Piece::Invalid],
        Hook::Output if output_drops => {
            let mut pieces = vec![Piece::Loopback, Piece::Established, Piece::Invalid];
            if family == Family::Ipv6 {
                pieces.push(Piece::Icmp);
            }
            pieces
        }
        _ => Vec::new(),
    }
}

/// The rules of one baseline piece at `hook`, as matches and verdicts.
pub fn piece_rules(family: Family, hook: Hook, piece: Piece) -> Vec<(RuleMatch, Kind)> {
    let accept = |m: RuleMatch| (m, Kind::Accept);
    match piece {
        Piece::Loopback if hook == Hook::Input => vec![accept(RuleMatch {
            iface: Some("lo".into()),
            ..RuleMatch::default()
        })],
        Piece::Loopback if hook == Hook::Output => vec![accept(RuleMatch {
            oface: Some("lo".into()),
            ..RuleMatch::default()
        })],
        Piece::Loopback => Vec::new(),
        Piece::Established => vec![accept(RuleMatch {
            states: vec![CtState::Established, CtState::Related],
            ..RuleMatch::default()
        })],
        Piece::Invalid => vec![(
            RuleMatch {
                states: vec![CtState::Invalid],
                ..RuleMatch::default()
            },
            Kind::Deny { reject: false },
        )],
        Piece::Icmp => icmp_piece_types(family, hook)
            .iter()
            .map(|&t| {
                accept(RuleMatch {
                    proto: Some(Proto::Icmp),
                    icmp_type: Some(t),
                    ..RuleMatch::default()
                })
            })
            .collect(),
    }
}

/// A `recent` pair at the start of `entries`: `--set` and a check that
/// drops or rejects (either order), with the same matches; plus an accept
/// with those matches right after, which `limit_tcp` also makes. Rules
/// that only log may sit between them (the log is said to be lost).
fn limit_pair(
    family: Family,
    hook: Hook,
    entries: &[Entry],
    index: usize,
) -> Option<(Unit, usize)> {
    if hook != Hook::Input {
        return None;
    }
    let mut flats = Vec::new();
    let mut used = 0;
    let mut logs = Vec::new();
    for entry in entries {
        let Entry::Flat(flat) = entry else { break };
        used += 1;
        if let Target::Log { .. } = flat.target {
            if flats.len() == 1 {
                logs.push(flat.line().to_string());
                continue;
            }
            used -= 1;
            break;
        }
        flats.push(flat);
        if flats.len() == 2 {
            break;
        }
    }
    let [first, second] = flats[..] else {
        return None;
    };
    let recent = |f: &Flat| f.matches.recent.clone();
    let (r1, r2) = (recent(first)?, recent(second)?);
    if r1.name != r2.name {
        return None;
    }
    let strip = |f: &Flat| RuleMatch {
        recent: None,
        comment: None,
        ..f.matches.clone()
    };
    if strip(first) != strip(second) {
        return None;
    }
    let guarded = strip(first);
    // (set first, then check), as the readers of the tutorial write it, or
    // (check first, then set and accept), as `limit_tcp` writes it.
    let (seconds, hits, deny, set_accepts) =
        match (r1.check, &first.target, r2.check, &second.target) {
            (RecentCheck::Set, Target::None, RecentCheck::Seen { seconds, hits }, deny) => {
                (seconds, hits.checked_sub(1)?, deny, false)
            }
            (RecentCheck::Seen { seconds, hits }, deny, RecentCheck::Set, Target::Accept) => {
                (seconds, hits, deny, true)
            }
            _ => return None,
        };
    let reject = match deny {
        Target::Drop => false,
        Target::Reject { .. } => true,
        _ => return None,
    };
    if hits == 0 || hits > 20 || seconds == 0 || seconds > 86_400 {
        return None;
    }
    // `limit_tcp` guards new TCP connections to ports, optionally from an
    // address or on an interface.
    let shape = RuleMatch {
        src: None,
        iface: None,
        dports: Vec::new(),
        proto: None,
        states: Vec::new(),
        tcp_flags: None,
        ..guarded.clone()
    };
    let syn = guarded.tcp_flags.as_ref() == Some(&TcpFlags::syn());
    let new = guarded.states == [CtState::New];
    if guarded.proto != Some(Proto::Tcp)
        || guarded.dports.is_empty()
        || !shape.is_any()
        || !(syn && guarded.states.is_empty() || new && guarded.tcp_flags.is_none())
    {
        return None;
    }
    let mut notes = Vec::new();
    if syn {
        notes.push(
            "the original counts SYN packets; `limit_tcp` counts new connections, \
             which is the same for every connection that starts with a handshake"
                .to_string(),
        );
    }
    if reject {
        notes.push("the original rejects a source over the limit; `limit_tcp` drops it".into());
    }
    for log in logs {
        notes.push(format!(
            "the log of a source over the limit is not kept: {log}"
        ));
    }
    let mut lines: Vec<String> = first.lines.clone();
    lines.push(second.line().to_string());
    let _ = set_accepts;
    let _ = family;
    Some((
        Unit {
            index,
            matches: guarded,
            kind: Kind::Limit {
                hits,
                seconds,
                reject,
            },
            place: Place::Limit,
            piece: None,
            lines,
            notes,
        },
        used,
    ))
}

/// The baseline decision and every chain's placement, settled together
/// since `baseline()` and `policy()` hold for both families.
#[derive(Debug, Clone)]
pub struct Placement {
    pub chains: Vec<Chain>,
    /// Pieces of the baseline left on.
    pub pieces: BTreeSet<Piece>,
    /// Why each piece is off.
    pub off: Vec<(Piece, String)>,
    /// The policy each filter hook gets in the script.
    pub policies: Vec<(Hook, Policy)>,
    /// Differences known and accepted (baseline rules in FORWARD and
    /// OUTPUT the original lacks), for the script's header.
    pub differences: Vec<String>,
}

/// Settles the baseline, the policies and every unit's place.
pub fn resolve(mut chains: Vec<Chain>, checked: BTreeSet<Family>) -> Placement {
    // Shadowed and redundant rules first: they would only add conflicts.
    for chain in &mut chains {
        prune(chain);
    }
    let hooks = [Hook::Input, Hook::Forward, Hook::Output];
    let mut policies: Vec<(Hook, Policy)> = hooks
        .iter()
        .map(|&hook| {
            let drops = chains
                .iter()
                .any(|c| c.hook == hook && c.policy == Policy::Drop);
            (hook, if drops { Policy::Drop } else { Policy::Accept })
        })
        .collect();
    // Every piece starts on; the checks below switch off each one that
    // would change a verdict, where the original lacks it or has it in
    // another place.
    blocked_policies(&chains, &mut policies);
    let mut pieces: BTreeSet<Piece> = Piece::ALL.into_iter().collect();
    let mut off: Vec<(Piece, String)> = Vec::new();
    // The baseline accepts before every rule of the script; a piece that
    // would accept what a rule left out may drop first is off.
    let output_drops = policy_of(&policies, Hook::Output) == Policy::Drop;
    for chain in chains.iter().filter(|c| checked.contains(&c.family)) {
        for piece in pieces_at(chain.family, chain.hook, output_drops) {
            let own = chain
                .units
                .iter()
                .filter(|u| u.piece == Some(piece))
                .map(|u| u.index)
                .min();
            let accepts: Vec<RuleMatch> = piece_rules(chain.family, chain.hook, piece)
                .into_iter()
                .filter(|(_, kind)| *kind == Kind::Accept)
                .map(|(m, _)| m)
                .collect();
            let blocker = chain.blockers.iter().find(|b| {
                own.is_none_or(|own| b.index < own)
                    && accepts
                        .iter()
                        .any(|m| model::overlap(chain.family, &b.matches, m))
            });
            if let (Some(b), true) = (blocker, pieces.contains(&piece)) {
                pieces.remove(&piece);
                off.push((
                    piece,
                    format!(
                        "`{}` may drop some of its packets first, and that rule is not imported",
                        b.line
                    ),
                ));
            }
        }
    }
    for chain in &mut chains {
        for unit in &mut chain.units {
            if unit.piece.is_some_and(|p| !pieces.contains(&p)) {
                demote_piece(unit);
            }
        }
    }
    // Each round fixes one conflict; every fix moves a unit later or
    // gives it up, so this ends.
    // Each round fixes every conflict of one chain (or switches one piece
    // off, which holds for all); every fix moves a unit later or gives it
    // up, so this ends.
    for _ in 0..100_000 {
        let output_drops = policy_of(&policies, Hook::Output) == Policy::Drop;
        let found = chains
            .iter()
            .enumerate()
            .filter(|(_, c)| checked.contains(&c.family))
            .find_map(|(ci, c)| {
                let conflicts = find_conflicts(c, &pieces, output_drops);
                (!conflicts.is_empty()).then_some((ci, conflicts))
            });
        let Some((ci, conflicts)) = found else {
            break;
        };
        if let Some(Conflict::Piece(piece, why)) = conflicts
            .iter()
            .find(|c| matches!(c, Conflict::Piece(..)))
            .cloned()
        {
            pieces.remove(&piece);
            off.push((piece, why));
            for chain in &mut chains {
                for unit in &mut chain.units {
                    if unit.piece == Some(piece) {
                        demote_piece(unit);
                    }
                }
            }
            continue;
        }
        let chain = &mut chains[ci];
        let policy = policy_of(&policies, chain.hook);
        let mut given_up = Vec::new();
        let mut flip_policy = false;
        for conflict in &conflicts {
            let Conflict::Pair { later, earlier } = *conflict else {
                continue;
            };
            let before = chain.units[earlier]
                .lines
                .last()
                .cloned()
                .unwrap_or_default();
            let u = &mut chain.units[later];
            match (&u.kind, policy) {
                (Kind::Deny { reject }, Policy::Drop) => {
                    let reject = *reject;
                    u.kind = Kind::PolicyReturn { reject };
                    u.place = Place::Allow;
                    if reject {
                        u.notes.push("the original rejects these; here the policy drops them, since the rule must stay after the accepts above".into());
                    }
                }
                // A drop that must stay after accepts needs a dropping
                // policy: the accepting family gets its accept at the end
                // instead.
                (Kind::Deny { .. }, Policy::Accept) if chain.hook != Hook::Output => {
                    flip_policy = true;
                }
                _ => given_up.push((later, before)),
            }
        }
        given_up.sort_by_key(|(later, _)| std::cmp::Reverse(*later));
        let given_up_any = !given_up.is_empty();
        for (later, before) in given_up {
            let unit = chain.units.remove(later);
            let at = chain.units.iter().filter(|u| u.index < unit.index).count();
            if !matches!(unit.kind, Kind::Accept | Kind::Log { .. }) {
                chain.blockers.push(Blocker {
                    index: unit.index,
                    matches: unit.matches.clone(),
                    line: unit.lines.last().cloned().unwrap_or_default(),
                });
            }
            chain.asides.push((
                at,
                Aside::Unexpressed {
                    lines: unit.lines.clone(),
                    why: format!(
                        "fwscript's stages would put it before `{before}`, which \
                         decides some of the same packets the other way"
                    ),
                },
            ));
        }
        if given_up_any {
            chain.shadow();
        }
        if flip_policy {
            let hook = chain.hook;
            for (h, p) in &mut policies {
                if *h == hook {
                    *p = Policy::Drop;
                }
            }
        }
    }
    blocked_policies(&chains, &mut policies);
    // Families whose chain accepts by policy while the script's drops.
    for chain in &mut chains {
        if chain.policy == Policy::Accept && policy_of(&policies, chain.hook) == Policy::Drop {
            if let Some(by) = chain.blockers.first() {
                // Accepting the rest would accept what the rule left out
                // may drop: the script's DROP policy stands for this family.
                let why = format!(
                    "the policy accepts what `{}` before it may drop, and that rule is not \
                     imported: the script's DROP policy stands instead, so the script is \
                     never wider than the original (narrower, until both are written by hand)",
                    by.line
                );
                chain.asides.push((
                    chain.units.len(),
                    Aside::Unexpressed {
                        lines: vec![format!(":{} ACCEPT", chain.hook.chain_name())],
                        why,
                    },
                ));
                continue;
            }
            chain.units.push(Unit {
                index: usize::MAX,
                matches: RuleMatch::default(),
                kind: Kind::CatchAll,
                place: Place::Allow,
                piece: None,
                lines: Vec::new(),
                notes: Vec::new(),
            });
        }
    }
    let output_drops = policy_of(&policies, Hook::Output) == Policy::Drop;
    let mut differences = Vec::new();
    for chain in &chains {
        if chain.hook == Hook::Input || !checked.contains(&chain.family) {
            continue;
        }
        for piece in pieces_at(chain.family, chain.hook, output_drops) {
            if pieces.contains(&piece) && !has_piece(chain, piece) {
                differences.push(format!(
                    "the baseline's `{}` piece also applies to {} {}, where the original \
                     has no such rule",
                    piece.key(),
                    chain.family,
                    chain.hook
                ));
            }
        }
    }
    off.sort_by_key(|(p, _)| *p);
    off.dedup_by_key(|(p, _)| *p);
    Placement {
        chains,
        pieces,
        off,
        policies,
        differences,
    }
}

/// A chain whose policy accepts, after a rule left out that may drop:
/// the policy would accept what that rule dropped, so the script's policy
/// for the hook drops (families that accept get an accept at the end).
fn blocked_policies(chains: &[Chain], policies: &mut [(Hook, Policy)]) {
    for chain in chains {
        if chain.policy == Policy::Accept && !chain.blockers.is_empty() {
            for (hook, policy) in policies.iter_mut() {
                if *hook == chain.hook {
                    *policy = Policy::Drop;
                }
            }
        }
    }
}

fn policy_of(policies: &[(Hook, Policy)], hook: Hook) -> Policy {
    policies
        .iter()
        .find(|(h, _)| *h == hook)
        .map_or(Policy::Accept, |(_, p)| *p)
}

fn has_piece(chain: &Chain, piece: Piece) -> bool {
    let wanted = piece_rules(chain.family, chain.hook, piece);
    !wanted.is_empty()
        && wanted.iter().all(|(m, _)| {
            chain
                .units
                .iter()
                .any(|u| u.piece == Some(piece) && strip(&u.matches) == *m)
        })
}

fn strip(m: &RuleMatch) -> RuleMatch {
    RuleMatch {
        comment: None,
        hop_limit_255: false,
        ..m.clone()
    }
}

/// A piece switched off: its rules become ordinary rules where they were.
fn demote_piece(unit: &mut Unit) {
    unit.piece = None;
    unit.place = match unit.kind {
        Kind::Deny { .. } => Place::Deny,
        _ => Place::Allow,
    };
}

/// Rules that can never decide a packet (an earlier rule takes all of it),
/// then rules whose every packet a later rule decides the same way with
/// nothing between them deciding otherwise.
fn prune(chain: &mut Chain) {
    let family = chain.family;
    let mut i = 0;
    while i < chain.units.len() {
        let unit = &chain.units[i];
        let shadow = unit.has_verdict().then(|| {
            chain.units[..i].iter().find(|earlier| {
                earlier.verdict(0).is_some()
                    && earlier.verdict(0) == earlier.verdict(1)
                    && model::contains(family, &earlier.matches, &unit.matches)
            })
        });
        match shadow.flatten() {
            Some(earlier) => {
                let why = format!(
                    "never decides a packet: `{}` above takes every packet it matches",
                    earlier.lines.last().map_or("", String::as_str)
                );
                let unit = chain.units.remove(i);
                let line = unit.lines.last().cloned().unwrap_or_default();
                chain.asides.push((i, Aside::Covered { line, why }));
            }
            None => i += 1,
        }
    }
    let mut i = 0;
    while i < chain.units.len() {
        let unit = &chain.units[i];
        let steady = unit.has_verdict() && unit.verdict(0) == unit.verdict(1);
        let mut covering = None;
        if steady && unit.piece.is_none() {
            for later in &chain.units[i + 1..] {
                if !later.has_verdict() {
                    continue;
                }
                let same =
                    later.verdict(0) == unit.verdict(0) && later.verdict(1) == unit.verdict(1);
                if same && model::contains(family, &later.matches, &unit.matches) {
                    covering = Some(later);
                    break;
                }
                if !same && model::overlap(family, &later.matches, &unit.matches) {
                    break;
                }
            }
        }
        match covering {
            Some(later) => {
                let why = format!(
                    "`{}` below decides every packet it matches the same way",
                    later.lines.last().map_or("", String::as_str)
                );
                let unit = chain.units.remove(i);
                let line = unit.lines.last().cloned().unwrap_or_default();
                chain.asides.push((i, Aside::Covered { line, why }));
            }
            None => i += 1,
        }
    }
}

#[derive(Clone)]
enum Conflict {
    /// Switch a baseline piece off, for this reason.
    Piece(Piece, String),
    /// `later` (in the original) would come before `earlier` in fwscript's
    /// order, and they decide a packet differently.
    Pair { later: usize, earlier: usize },
}

/// The conflicts of one chain: every unit the stages would put before an
/// earlier one that decides some of its packets otherwise (the first such
/// earlier one each), or the baseline pieces that change a verdict.
fn find_conflicts(chain: &Chain, pieces: &BTreeSet<Piece>, output_drops: bool) -> Vec<Conflict> {
    let family = chain.family;
    let mut order: Vec<usize> = (0..chain.units.len()).collect();
    order.sort_by_key(|&i| {
        let u = &chain.units[i];
        (u.place, base_rank(u), u.index)
    });
    let mut rank = vec![0; chain.units.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    let mut out = Vec::new();
    for (j, later) in chain.units.iter().enumerate() {
        for (i, earlier) in chain.units[..j].iter().enumerate() {
            if rank[j] > rank[i] {
                continue;
            }
            if !differ(earlier, later) || !model::overlap(family, &earlier.matches, &later.matches)
            {
                continue;
            }
            // A piece out of order is switched off before anything else
            // moves.
            if let Some(piece) = later.piece {
                return vec![Conflict::Piece(
                    piece,
                    format!(
                        "the original decides some of its packets first with `{}`",
                        earlier.lines.last().map_or("", String::as_str)
                    ),
                )];
            }
            out.push(Conflict::Pair {
                later: j,
                earlier: i,
            });
            break;
        }
    }
    if !out.is_empty() {
        return out;
    }
    // Baseline rules the original's chain lacks: in INPUT they must change
    // nothing; elsewhere they are reported differences.
    if chain.hook != Hook::Input {
        return Vec::new();
    }
    for piece in pieces_at(family, chain.hook, output_drops) {
        if !pieces.contains(&piece) || has_piece(chain, piece) {
            continue;
        }
        for (m, kind) in piece_rules(family, chain.hook, piece) {
            let inserted = Unit {
                index: usize::MAX,
                matches: m,
                kind,
                place: Place::Base,
                piece: Some(piece),
                lines: Vec::new(),
                notes: Vec::new(),
            };
            // What falls through gets the original's policy: the script's,
            // or the accept added at the end where the two differ.
            if let Some(why) = insertion_changes(chain, &inserted, chain.policy) {
                return vec![Conflict::Piece(piece, why)];
            }
        }
    }
    Vec::new()
}

fn differ(a: &Unit, b: &Unit) -> bool {
    (0..2).any(|world| match (a.verdict(world), b.verdict(world)) {
        (Some(x), Some(y)) => x != y,
        _ => false,
    })
}

/// Why a rule the original lacks would change a verdict, if it would.
fn insertion_changes(chain: &Chain, inserted: &Unit, policy: Policy) -> Option<String> {
    let family = chain.family;
    let rank = |u: &Unit| (u.place, base_rank(u));
    let after: Vec<&Unit> = chain
        .units
        .iter()
        .filter(|u| rank(u) > rank(inserted))
        .collect();
    // States that rules before it decide whole (the baseline's established
    // and invalid rules) never reach it.
    let mut reaching: Vec<model::State> = vec![model::State::Untracked];
    for state in CtState::ALL {
        let decided = chain
            .units
            .iter()
            .filter(|u| rank(u) < rank(inserted))
            .any(|u| {
                let state_only = RuleMatch {
                    states: Vec::new(),
                    ..strip(&u.matches)
                }
                .is_any();
                state_only
                    && u.matches.states.contains(&state)
                    && u.verdict(0).is_some()
                    && u.verdict(0) == u.verdict(1)
            });
        if !decided {
            reaching.push(model::State::Tracked(state));
        }
    }
    if !model::can_be(family, &inserted.matches, &reaching) {
        return None;
    }
    for world in 0..2 {
        let Some(verdict) = inserted.verdict(world) else {
            continue;
        };
        for unit in &after {
            if let Some(other) = unit.verdict(world) {
                if other != verdict && model::overlap(family, &unit.matches, &inserted.matches) {
                    return Some(format!(
                        "the original decides some of its packets otherwise, with `{}`",
                        unit.lines.last().map_or("", String::as_str)
                    ));
                }
            }
        }
        let covered = after.iter().any(|u| {
            u.verdict(world) == Some(verdict)
                && model::contains(family, &u.matches, &inserted.matches)
        });
        if !covered && Verdict::of_policy(policy) != verdict {
            return Some(format!(
                "the original has no such rule and its {} policy is {}",
                chain.hook, policy
            ));
        }
    }
    None
}

/// `log_drops`'s own rule: 5 a minute, burst 10, nothing else matched.
pub fn is_log_drops(unit: &Unit) -> bool {
    let Kind::Log {
        prefix: Some(prefix),
    } = &unit.kind
    else {
        return false;
    };
    let limit = RuleMatch {
        limit: Some(crate::plan::RateLimit {
            count: 5,
            per: RateUnit::Minute,
            burst: Some(10),
        }),
        ..RuleMatch::default()
    };
    strip(&unit.matches) == limit && valid_text(prefix, 29)
}

/// The three rules of `drop_scans()`, as the collector renders them.
pub fn scan_kind(m: &RuleMatch) -> Option<usize> {
    let tcp_only = |r: &RuleMatch| {
        let rest = RuleMatch {
            proto: None,
            tcp_flags: None,
            states: Vec::new(),
            comment: None,
            ..r.clone()
        };
        rest.is_any() && r.proto == Some(Proto::Tcp)
    };
    if !tcp_only(m) {
        return None;
    }
    let flags = m.tcp_flags.as_ref()?;
    let all = TcpFlag::ALL.to_vec();
    if !flags.negated && flags.mask == all && flags.set.is_empty() && m.states.is_empty() {
        Some(0)
    } else if !flags.negated && flags.mask == all && flags.set == all && m.states.is_empty() {
        Some(1)
    } else if *flags
        == (TcpFlags {
            negated: true,
            ..TcpFlags::syn()
        })
        && m.states == [CtState::New]
    {
        Some(2)
    } else {
        None
    }
}
