//! The original ruleset's verdict for a packet, straight from the rules as
//! read (tests only): the yardstick the imported script's `explain` is
//! held against. Rate limits are not yet reached and `recent` lists are
//! empty (a first packet), as `explain` assumes.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::flatten::FamilyRules;
use super::model;
use super::place::{self, Kind, Place, Placement};
use super::rule::{Proto, RecentCheck, RuleMatch, Target};
use crate::explain::{Packet, Transport, Verdict};
use crate::netfilter::{Family, Hook, Policy, Table};
use crate::plan::{CtState, TcpFlag};

/// The filter table's verdict at `hook` for `packet`.
pub fn verdict(rules: &FamilyRules, hook: Hook, packet: &Packet) -> Verdict {
    let Some(chain) = rules.chain(Table::Filter, hook.chain_name()) else {
        return Verdict::Accept;
    };
    match walk(rules, &chain.name, packet, &mut Vec::new()) {
        Some(verdict) => verdict,
        None => match chain.policy {
            Some(Policy::Drop) => Verdict::Drop,
            _ => Verdict::Accept,
        },
    }
}

fn walk(
    rules: &FamilyRules,
    name: &str,
    packet: &Packet,
    stack: &mut Vec<String>,
) -> Option<Verdict> {
    let chain = rules.chain(Table::Filter, name)?;
    stack.push(name.to_string());
    let mut out = None;
    for rule in &chain.rules {
        // Neighbours' rules stay theirs, in the original and beside the
        // imported script alike: compared is the rest.
        if super::owners::rule_owner(rule).is_some() {
            continue;
        }
        if !rule.unknown.is_empty() || !matches(rules.family, &rule.matches, packet) {
            continue;
        }
        match &rule.target {
            Target::Accept => out = Some(Verdict::Accept),
            Target::Drop => out = Some(Verdict::Drop),
            Target::Reject { .. } => out = Some(Verdict::Reject),
            Target::Return => break,
            Target::Jump(next) if !stack.contains(next) => {
                if let Some(v) = walk(rules, next, packet, stack) {
                    out = Some(v);
                }
            }
            _ => continue,
        }
        if out.is_some() {
            break;
        }
    }
    stack.pop();
    out
}

/// The verdict of the placed units for `packet`, in fwscript's stage order
/// with the deny stage first: the import's own view of its script.
pub fn placed_verdict(
    placement: &Placement,
    family: Family,
    hook: Hook,
    packet: &Packet,
) -> Verdict {
    let Some(chain) = placement
        .chains
        .iter()
        .find(|c| c.family == family && c.hook == hook)
    else {
        return Verdict::Accept;
    };
    let script_policy = placement
        .policies
        .iter()
        .find(|(h, _)| *h == hook)
        .map_or(Policy::Accept, |(_, p)| *p);
    let output_drops = placement
        .policies
        .iter()
        .any(|(h, p)| *h == Hook::Output && *p == Policy::Drop);
    let mut rules: Vec<(Place, usize, usize, RuleMatch, Kind)> = Vec::new();
    for piece in place::pieces_at(family, hook, output_drops) {
        if placement.pieces.contains(&piece) {
            for (m, kind) in place::piece_rules(family, hook, piece) {
                rules.push((Place::Base, piece as usize, 0, m, kind));
            }
        }
    }
    for unit in &chain.units {
        if unit.place != Place::Base {
            rules.push((
                unit.place,
                0,
                unit.index,
                unit.matches.clone(),
                unit.kind.clone(),
            ));
        }
    }
    rules.sort_by_key(|(place, rank, index, _, _)| (*place, *rank, *index));
    for (_, _, _, m, kind) in &rules {
        let mut m = m.clone();
        // Limit pairs: the list is empty, the first connection passes.
        m.recent = None;
        if !matches(family, &m, packet) {
            continue;
        }
        match kind {
            Kind::Accept | Kind::CatchAll | Kind::Limit { .. } => return Verdict::Accept,
            Kind::Deny { reject: true } => return Verdict::Reject,
            Kind::Deny { reject: false } => return Verdict::Drop,
            // A reject kept after the accepts is said to become a drop;
            // the order is what is checked here.
            Kind::PolicyReturn { reject: true } => return Verdict::Reject,
            Kind::PolicyReturn { reject: false } => break,
            Kind::Log { .. } => {}
        }
    }
    match script_policy {
        Policy::Accept => Verdict::Accept,
        Policy::Drop => Verdict::Drop,
    }
}

fn net_ok(net: Option<&ipnet::IpNet>, addr: Option<IpAddr>) -> bool {
    match (net, addr) {
        (None, _) => true,
        (Some(net), Some(addr)) => net.contains(&addr),
        (Some(_), None) => false,
    }
}

fn matches(family: Family, m: &RuleMatch, p: &Packet) -> bool {
    let iface_ok = |pattern: &Option<String>, name: &Option<String>| match (pattern, name) {
        (None, _) => true,
        (Some(pattern), Some(name)) => model::iface_matches(pattern, name),
        (Some(_), None) => false,
    };
    if !net_ok(m.src.as_ref(), p.src)
        || !net_ok(m.dst.as_ref(), p.dst)
        || !iface_ok(&m.iface, &p.in_iface)
        || !iface_ok(&m.oface, &p.out_iface)
    {
        return false;
    }
    let proto = match &p.transport {
        Transport::Tcp { .. } => Proto::Tcp,
        Transport::Udp { .. } => Proto::Udp,
        Transport::Icmp { .. } => Proto::Icmp,
        Transport::Other { number } => Proto::Other(*number),
    };
    if m.proto.is_some_and(|want| want != proto) {
        return false;
    }
    let port_ok = |ranges: &[crate::plan::PortRange], port: Option<u16>| {
        ranges.is_empty() || port.is_some_and(|port| ranges.iter().any(|r| r.contains(port)))
    };
    if !port_ok(&m.sports, p.transport.sport()) || !port_ok(&m.dports, p.transport.dport()) {
        return false;
    }
    if let Some(test) = &m.tcp_flags {
        let Transport::Tcp { flags, .. } = &p.transport else {
            return false;
        };
        if !model::flags_match(test, bits(flags)) {
            return false;
        }
    }
    if let Some(want) = m.icmp_type {
        if !matches!(p.transport, Transport::Icmp { icmp_type } if icmp_type == want) {
            return false;
        }
    }
    if !m.states.is_empty() && !m.states.contains(&p.state) {
        return false;
    }
    if let Some(recent) = &m.recent {
        // Empty lists: a check never matches, a `--set` always does.
        if matches!(recent.check, RecentCheck::Seen { .. }) {
            return false;
        }
    }
    let _ = family;
    true
}

pub fn bits(flags: &BTreeSet<TcpFlag>) -> u8 {
    flags
        .iter()
        .map(|f| match f {
            TcpFlag::Fin => 0x01,
            TcpFlag::Syn => 0x02,
            TcpFlag::Rst => 0x04,
            TcpFlag::Psh => 0x08,
            TcpFlag::Ack => 0x10,
            TcpFlag::Urg => 0x20,
        })
        .fold(0, |a, b| a | b)
}

pub fn flag_set(bits: u8) -> BTreeSet<TcpFlag> {
    TcpFlag::ALL
        .into_iter()
        .filter(|f| {
            let bit = match f {
                TcpFlag::Fin => 0x01,
                TcpFlag::Syn => 0x02,
                TcpFlag::Rst => 0x04,
                TcpFlag::Psh => 0x08,
                TcpFlag::Ack => 0x10,
                TcpFlag::Urg => 0x20,
            };
            bits & bit != 0
        })
        .collect()
}

/// Packets to INPUT over a grid: the sources, ports and interfaces the
/// rules name and some they do not, each protocol, each state and TCP
/// flag combination conntrack can give together.
pub fn grid(rules: &FamilyRules, extra_sources: &[IpAddr]) -> Vec<Packet> {
    let family = rules.family;
    let mut sources: BTreeSet<IpAddr> = extra_sources.iter().copied().collect();
    let mut ports: BTreeSet<u16> = [1, 9, 1023, 40000].into_iter().collect();
    let mut ifaces: BTreeSet<String> = ["eth0", "lo"].map(String::from).into_iter().collect();
    for chain in rules.tables.values().flatten() {
        for rule in &chain.rules {
            let m = &rule.matches;
            if let Some(net) = m.src {
                sources.insert(net.network());
                sources.insert(net.broadcast());
            }
            for r in m.dports.iter().chain(&m.sports) {
                ports.insert(r.first);
                ports.insert(r.last);
                ports.insert(r.first.saturating_sub(1).max(1));
                ports.insert(r.last.saturating_add(1).max(1));
            }
            if let Some(i) = &m.iface {
                ifaces.insert(
                    i.trim_end_matches('+').to_string() + if i.ends_with('+') { "7" } else { "" },
                );
            }
        }
    }
    sources.insert(match family {
        Family::Ipv4 => "198.18.0.9".parse().unwrap(),
        Family::Ipv6 => "2001:2::9".parse().unwrap(),
    });
    sources.retain(|a| crate::plan::family_of(a) == family);
    let mut packets = Vec::new();
    let base = |src, iface: &String, transport, state| Packet {
        family,
        src: Some(src),
        dst: Some(match family {
            Family::Ipv4 => "198.18.1.1".parse().unwrap(),
            Family::Ipv6 => "2001:2::1:1".parse().unwrap(),
        }),
        transport,
        in_iface: Some(iface.clone()),
        out_iface: None,
        state,
        dnat_from_port: None,
    };
    let states = |list: &[model::State]| -> Vec<CtState> {
        list.iter()
            .filter_map(|s| match s {
                model::State::Tracked(s) => Some(*s),
                model::State::Untracked => None,
            })
            .collect()
    };
    for &src in &sources {
        for iface in &ifaces {
            for &port in &ports {
                for flags in [0x02u8, 0x10, 0x12, 0x04, 0x11, 0x00, 0x3f, 0x03, 0x14] {
                    for state in states(model::tcp_states(flags)) {
                        packets.push(base(
                            src,
                            iface,
                            Transport::Tcp {
                                sport: Some(40000),
                                dport: Some(port),
                                flags: flag_set(flags),
                            },
                            state,
                        ));
                    }
                }
                for state in CtState::ALL {
                    packets.push(base(
                        src,
                        iface,
                        Transport::Udp {
                            sport: Some(40000),
                            dport: Some(port),
                        },
                        state,
                    ));
                }
            }
            let icmp_types: &[u8] = match family {
                Family::Ipv4 => &[0, 3, 8, 11, 12, 13],
                Family::Ipv6 => &[1, 2, 3, 4, 128, 129],
            };
            for &icmp_type in icmp_types {
                for state in states(model::icmp_states(family, icmp_type)) {
                    packets.push(base(src, iface, Transport::Icmp { icmp_type }, state));
                }
            }
        }
    }
    packets
}
