//! The script text (import: place, nat → **emit**): each family's calls in
//! the original's order, the two families merged where they say the same,
//! neighbouring calls of one kind joined into one, and a comment for every
//! rule that is not a call.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::calls::{self, Call, Value};
use super::nat::NatItem;
use super::place::{self, Aside, Chain, Kind, Place, Placement, Unit};
use super::rule::Proto;
use crate::netfilter::{Family, Hook, Policy, Table};
use crate::plan::PortRange;

/// One thing the script says, before the families are merged.
#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    Call {
        call: Call,
        /// Said above the call: how it differs from the original.
        notes: Vec<String>,
    },
    /// A rule that is not a call, as comment lines.
    Comment(Vec<String>),
}

/// An element with the families it holds for.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub element: Element,
    pub families: Vec<Family>,
}

/// One filter chain's elements, in the original's order.
/// With `explicit`, baseline pieces are written as the rules they are
/// (for a ruleset whose baseline is fwscript's own).
pub fn chain_elements(chain: &Chain, explicit: bool) -> Vec<Element> {
    let mut units: Vec<&Unit> = chain.units.iter().collect();
    units.sort_by_key(|u| u.index);
    // `drop_scans()` when the deny stage has all three of its rules.
    let scans: Vec<(usize, usize)> = units
        .iter()
        .enumerate()
        .filter(|(_, u)| chain.hook == Hook::Input && u.place == Place::Deny)
        .filter_map(|(i, u)| place::scan_kind(&u.matches).map(|k| (i, k)))
        .collect();
    let all_scans = (0..3).all(|k| scans.iter().any(|(_, kind)| *kind == k));
    let mut out = Vec::new();
    let mut asides = chain.asides.clone();
    asides.sort_by_key(|(at, _)| *at);
    let mut asides = asides.into_iter().peekable();
    let mut scans_written = false;
    for (i, unit) in units.iter().enumerate() {
        let position = chain.units.iter().filter(|u| u.index < unit.index).count();
        while let Some((_, aside)) = asides.next_if(|(at, _)| *at <= position) {
            out.push(Element::Comment(aside_lines(&aside)));
        }
        let is_scan = all_scans && scans.iter().any(|(at, _)| *at == i);
        if is_scan {
            if !scans_written {
                out.push(Element::Call {
                    call: Call::DropScans,
                    notes: Vec::new(),
                });
                scans_written = true;
            }
            continue;
        }
        if let Some(call) = unit_call(chain.family, chain.hook, unit, explicit) {
            out.push(Element::Call {
                call,
                notes: unit.notes.clone(),
            });
        }
    }
    for (_, aside) in asides {
        out.push(Element::Comment(aside_lines(&aside)));
    }
    out
}

fn unit_call(family: Family, hook: Hook, unit: &Unit, explicit: bool) -> Option<Call> {
    let m = &unit.matches;
    let rule = |action: &str, extra: Vec<(&'static str, Value)>| {
        let mut entries = calls::rule_entries(family, Table::Filter, hook, m);
        entries.push(("action", Value::Str(action.into())));
        entries.extend(extra);
        if let Some(comment) = m.comment.as_ref().filter(|c| place::valid_text(c, 200)) {
            entries.push(("comment", Value::Str(comment.clone())));
        }
        Call::Rule(entries)
    };
    let input = hook == Hook::Input;
    Some(match &unit.kind {
        _ if unit.place == Place::Base && !explicit => return None,
        Kind::Accept => {
            if let (true, Some((udp, ports, opts))) = (input, calls::ports_only(m)) {
                let ssh = !udp
                    && ports == [PortRange::single(22)]
                    && opts.from.is_some()
                    && opts.iface.is_none()
                    && opts.comment.is_none();
                if ssh {
                    Call::SshFrom(vec![opts.from.expect("checked")])
                } else {
                    Call::AllowPorts { udp, ports, opts }
                }
            } else if let (true, Some(src)) = (input, calls::source_only(m)) {
                Call::AllowFrom(vec![src])
            } else if input && is_ping(family, m) {
                Call::AllowPing
            } else {
                rule("accept", Vec::new())
            }
        }
        Kind::Deny { reject: false } if input && calls::source_only(m).is_some() => {
            Call::Block(vec![m.src.expect("source only")])
        }
        Kind::Deny { reject } => rule(if *reject { "reject" } else { "drop" }, Vec::new()),
        Kind::Log { prefix } => match (unit.place, prefix) {
            (Place::Log, Some(prefix)) => Call::LogDrops(prefix.clone()),
            (_, Some(prefix)) if place::valid_text(prefix, 29) => {
                rule("log", vec![("log_prefix", Value::Str(prefix.clone()))])
            }
            _ => rule("log", Vec::new()),
        },
        Kind::Limit { hits, seconds, .. } => Call::LimitTcp {
            ports: m.dports.clone(),
            hits: *hits,
            seconds: *seconds,
            opts: calls::Opts {
                from: m.src,
                iface: m.iface.clone(),
                comment: m.comment.clone().filter(|c| place::valid_text(c, 200)),
                family: None,
            },
        },
        Kind::PolicyReturn { .. } => rule("return", Vec::new()),
        Kind::CatchAll => Call::Rule(vec![
            ("chain", Value::Str(hook.script_name().into())),
            ("action", Value::Str("accept".into())),
        ]),
    })
}

fn is_ping(family: Family, m: &super::rule::RuleMatch) -> bool {
    let echo = match family {
        Family::Ipv4 => 8,
        Family::Ipv6 => 128,
    };
    let rest = super::rule::RuleMatch {
        proto: None,
        icmp_type: None,
        comment: None,
        ..m.clone()
    };
    m.proto == Some(Proto::Icmp) && m.icmp_type == Some(echo) && rest.is_any()
}

pub fn aside_lines(aside: &Aside) -> Vec<String> {
    match aside {
        Aside::Unexpressed { lines, why } => {
            let mut out = vec![format!(
                "NOT IMPORTED: {}",
                lines.last().map_or("", String::as_str)
            )];
            if lines.len() > 1 {
                out.push(format!(
                    "  reached through: {}",
                    lines[..lines.len() - 1].join(" → ")
                ));
            }
            out.push(format!("  why: {why}"));
            out
        }
        Aside::Covered { line, why } => vec![format!("covered: {line}"), format!("  ({why})")],
        Aside::Owned { owner, line } => vec![format!("{owner}'s: {line}")],
    }
}

/// Merges two families' elements: equal elements once, for both; the rest
/// for its own family, in an order that keeps each family's.
pub fn merge(a: (Family, Vec<Element>), b: (Family, Vec<Element>)) -> Vec<Merged> {
    let (fa, xs) = a;
    let (fb, ys) = b;
    let (n, m) = (xs.len(), ys.len());
    // Longest common subsequence.
    let mut table = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[i][j] = if xs[i] == ys[j] {
                table[i + 1][j + 1] + 1
            } else {
                table[i + 1][j].max(table[i][j + 1])
            };
        }
    }
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && xs[i] == ys[j] {
            out.push(Merged {
                element: xs[i].clone(),
                families: vec![fa, fb],
            });
            i += 1;
            j += 1;
        } else if j == m || (i < n && table[i + 1][j] >= table[i][j + 1]) {
            out.push(Merged {
                element: xs[i].clone(),
                families: vec![fa],
            });
            i += 1;
        } else {
            out.push(Merged {
                element: ys[j].clone(),
                families: vec![fb],
            });
            j += 1;
        }
    }
    out
}

/// Calls for a single family get that family said; then neighbouring calls
/// of one kind are joined.
pub fn finish(merged: Vec<Merged>, all: &BTreeSet<Family>) -> Vec<Element> {
    let mut out: Vec<Element> = Vec::new();
    for item in merged {
        let whole = item.families.len() == all.len();
        match item.element {
            Element::Call { call, notes } if !whole => {
                let family = item.families[0];
                for (i, call) in call.only(family).into_iter().enumerate() {
                    push_joined(
                        &mut out,
                        call,
                        if i == 0 { notes.clone() } else { Vec::new() },
                    );
                }
            }
            Element::Call { call, notes } => push_joined(&mut out, call, notes),
            Element::Comment(mut lines) => {
                if !whole && all.len() > 1 {
                    if let Some(first) = lines.first_mut() {
                        *first = format!("({}) {first}", item.families[0]);
                    }
                }
                out.push(Element::Comment(lines));
            }
        }
    }
    out
}

fn push_joined(out: &mut Vec<Element>, call: Call, notes: Vec<String>) {
    if notes.is_empty() {
        if let Some(Element::Call {
            call: last,
            notes: last_notes,
        }) = out.last_mut()
        {
            if last_notes.is_empty() && join(last, &call) {
                return;
            }
        }
    }
    out.push(Element::Call { call, notes });
}

/// Joins `next` into `last` when one call can say both.
fn join(last: &mut Call, next: &Call) -> bool {
    match (last, next) {
        (
            Call::AllowPorts { udp, ports, opts },
            Call::AllowPorts {
                udp: u2,
                ports: p2,
                opts: o2,
            },
        ) if udp == u2 && opts == o2 => {
            for p in p2 {
                if !ports.contains(p) {
                    ports.push(*p);
                }
            }
            true
        }
        (Call::SshFrom(a), Call::SshFrom(b))
        | (Call::AllowFrom(a), Call::AllowFrom(b))
        | (Call::Block(a), Call::Block(b)) => {
            for n in b {
                if !a.contains(n) {
                    a.push(*n);
                }
            }
            true
        }
        (Call::AllowPing, Call::AllowPing) | (Call::DropScans, Call::DropScans) => true,
        _ => false,
    }
}

/// Text of the original (a rule's line, a chain's name, a reason quoting
/// them) as it may stand in a `//` comment: iptables-save keeps a comment's
/// `\r` or control characters, and Rhai ends a `//` comment at a lone
/// `\r`, so copied raw, a rule's comment could become code of the script.
/// Every control, format or separator character is written escaped.
pub fn comment_text(text: &str) -> String {
    crate::script::printable(text).replace('\t', "\\t")
}

/// Lines of the script for `elements`.
pub fn write(out: &mut String, elements: &[Element]) {
    let returns = |element: &Element| match element {
        Element::Call {
            call: Call::Rule(entries),
            ..
        } => entries
            .iter()
            .any(|(k, v)| *k == "action" && *v == Value::Str("return".into())),
        _ => false,
    };
    for (i, element) in elements.iter().enumerate() {
        match element {
            Element::Call { call, notes } => {
                for note in notes {
                    let _ = writeln!(out, "// note: {}", comment_text(note));
                }
                // Said once for a run of them.
                if returns(element) && (i == 0 || !returns(&elements[i - 1])) {
                    out.push_str(
                        "// dropped by the policy: the original drops these only after \
                         accepts above, and a drop here would come first\n",
                    );
                }
                let _ = writeln!(out, "{};", call.text());
            }
            Element::Comment(lines) => {
                for line in lines {
                    let _ = writeln!(out, "// {}", comment_text(line));
                }
            }
        }
    }
}

/// The lines before the rules: what is switched off, the policies.
pub fn preamble(out: &mut String, placement: &Placement, mirrored: &[Family]) {
    let off: Vec<&'static str> = place::Piece::ALL
        .into_iter()
        .filter(|p| !placement.pieces.contains(p))
        .map(|p| p.key())
        .collect();
    if !off.is_empty() {
        out.push_str(
            "// The baseline of every fwscript script, minus what the original lacks\n\
             // (delete a key to get fwscript's default back):\n",
        );
        for (piece, why) in &placement.off {
            let _ = writeln!(out, "//   {}: {}", piece.key(), comment_text(why));
        }
        let _ = writeln!(out, "{};", Call::Baseline(off).text());
    }
    for (hook, policy) in &placement.policies {
        let default = match hook {
            Hook::Output => Policy::Accept,
            _ => Policy::Drop,
        };
        if *policy != default {
            let verdict = match policy {
                Policy::Accept => "accept",
                Policy::Drop => "drop",
            };
            let _ = writeln!(out, "{};", Call::Policy(*hook, verdict).text());
        }
    }
    if mirrored.contains(&Family::Ipv6) && !placement.pieces.contains(&place::Piece::Icmp) {
        out.push_str(
            "// IPv6 needs neighbour discovery and packet-too-big, which the baseline's\n\
             // `icmp` piece would give; switched off for the original's sake, they\n\
             // are written out for IPv6:\n",
        );
        for name in [
            "destination-unreachable",
            "packet-too-big",
            "time-exceeded",
            "router-solicitation",
            "router-advertisement",
            "neighbour-solicitation",
            "neighbour-advertisement",
        ] {
            let _ = writeln!(
                out,
                "rule(#{{ proto: \"icmpv6\", icmp_type: \"{name}\", action: \"accept\" }});"
            );
        }
    }
}

/// The nat items of one family as elements.
pub fn nat_elements(items: &[NatItem]) -> Vec<Element> {
    items
        .iter()
        .map(|item| match item {
            NatItem::Call { call, .. } => Element::Call {
                call: call.clone(),
                notes: Vec::new(),
            },
            NatItem::Aside(aside) => Element::Comment(aside_lines(aside)),
        })
        .collect()
}
