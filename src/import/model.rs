//! What the import knows about packets, to decide whether two rules can
//! meet the same packet (import: rules → **model** → placement). It
//! reasons per field (addresses, interfaces, ports) and, for the fields
//! the kernel ties together, enumerates: conntrack marks TCP packets with
//! impossible flag combinations INVALID, never lets a SYN-ACK open a
//! connection, and leaves neighbour discovery untracked. Rate limits and
//! `recent` lists are taken as able to match at any time.

use ipnet::IpNet;

use super::rule::{Proto, RuleMatch};
use crate::netfilter::Family;
use crate::plan::{CtState, PortRange, TcpFlag, TcpFlags};

/// A connection-tracking state as the kernel can give it; `Untracked`
/// matches no `--ctstate` list the import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Tracked(CtState),
    Untracked,
}

const TRACKED: [State; 4] = [
    State::Tracked(CtState::New),
    State::Tracked(CtState::Established),
    State::Tracked(CtState::Related),
    State::Tracked(CtState::Invalid),
];

/// TCP flag bits as in the header.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;

fn bit(flag: TcpFlag) -> u8 {
    match flag {
        TcpFlag::Fin => FIN,
        TcpFlag::Syn => SYN,
        TcpFlag::Rst => RST,
        TcpFlag::Psh => PSH,
        TcpFlag::Ack => ACK,
        TcpFlag::Urg => URG,
    }
}

fn bits(flags: &[TcpFlag]) -> u8 {
    flags.iter().map(|f| bit(*f)).fold(0, |a, b| a | b)
}

/// Whether a segment with `flags` passes `[!] --tcp-flags MASK SET`.
pub fn flags_match(test: &TcpFlags, flags: u8) -> bool {
    let hit = flags & bits(&test.mask) == bits(&test.set);
    hit != test.negated
}

/// The states conntrack can give a TCP segment with `flags`
/// (nf_conntrack_proto_tcp: PSH does not count; only a SYN, or an ACK when
/// picking up a connection, may be NEW; the other valid combinations
/// belong to a connection; everything else is INVALID).
pub fn tcp_states(flags: u8) -> &'static [State] {
    const OPENING: &[State] = &TRACKED;
    const ONGOING: &[State] = &[
        State::Tracked(CtState::Established),
        State::Tracked(CtState::Related),
        State::Tracked(CtState::Invalid),
    ];
    const INVALID: &[State] = &[State::Tracked(CtState::Invalid)];
    match flags & !PSH {
        f if f == SYN || f == SYN | URG || f == ACK || f == ACK | URG => OPENING,
        f if f == SYN | ACK
            || f == RST
            || f == RST | ACK
            || f == FIN | ACK
            || f == FIN | ACK | URG =>
        {
            ONGOING
        }
        _ => INVALID,
    }
}

/// The states conntrack can give an ICMP message of `icmp_type`.
pub fn icmp_states(family: Family, icmp_type: u8) -> &'static [State] {
    const REQUEST: &[State] = &[
        State::Tracked(CtState::New),
        State::Tracked(CtState::Established),
        State::Tracked(CtState::Invalid),
    ];
    const REPLY: &[State] = &[
        State::Tracked(CtState::Established),
        State::Tracked(CtState::Invalid),
    ];
    const ERROR: &[State] = &[
        State::Tracked(CtState::Related),
        State::Tracked(CtState::Invalid),
    ];
    const UNTRACKED: &[State] = &[State::Untracked];
    match (family, icmp_type) {
        (Family::Ipv4, 8 | 13 | 15 | 17) => REQUEST,
        (Family::Ipv4, 0 | 14 | 16 | 18) => REPLY,
        (Family::Ipv4, 3 | 4 | 5 | 11 | 12) => ERROR,
        (Family::Ipv6, 128 | 139) => REQUEST,
        (Family::Ipv6, 129 | 140) => REPLY,
        (Family::Ipv6, 1..=4) => ERROR,
        // Multicast listener and neighbour discovery: not tracked at all.
        (Family::Ipv6, 130..=136 | 143) => UNTRACKED,
        _ => &TRACKED,
    }
}

fn state_ok(states: &[CtState], state: State) -> bool {
    match state {
        _ if states.is_empty() => true,
        State::Tracked(s) => states.contains(&s),
        State::Untracked => false,
    }
}

fn nets_overlap(a: Option<&IpNet>, b: Option<&IpNet>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.contains(b) || b.contains(a),
        _ => true,
    }
}

fn net_contains(outer: Option<&IpNet>, inner: Option<&IpNet>) -> bool {
    match (outer, inner) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(o), Some(i)) => o.contains(i),
    }
}

/// iptables' interface match: exact, or a prefix with a trailing `+`.
#[cfg(test)]
pub fn iface_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

fn ifaces_overlap(a: Option<&str>, b: Option<&str>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return true;
    };
    match (a.strip_suffix('+'), b.strip_suffix('+')) {
        (Some(pa), Some(pb)) => pa.starts_with(pb) || pb.starts_with(pa),
        (Some(pa), None) => b.starts_with(pa),
        (None, Some(pb)) => a.starts_with(pb),
        (None, None) => a == b,
    }
}

fn iface_contains(outer: Option<&str>, inner: Option<&str>) -> bool {
    match (outer, inner) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(o), Some(i)) => match (o.strip_suffix('+'), i.strip_suffix('+')) {
            (Some(po), Some(pi)) => pi.starts_with(po),
            (Some(po), None) => i.starts_with(po),
            (None, Some(_)) => false,
            (None, None) => o == i,
        },
    }
}

fn ranges_overlap(a: &[PortRange], b: &[PortRange]) -> bool {
    if a.is_empty() || b.is_empty() {
        return true;
    }
    a.iter()
        .any(|x| b.iter().any(|y| x.first <= y.last && y.first <= x.last))
}

fn ranges_contain(outer: &[PortRange], inner: &[PortRange]) -> bool {
    if outer.is_empty() {
        return true;
    }
    if inner.is_empty() {
        return false;
    }
    inner
        .iter()
        .all(|i| outer.iter().any(|o| o.first <= i.first && i.last <= o.last))
}

/// The protocols a packet matching both could have.
fn protos(a: Option<Proto>, b: Option<Proto>) -> Option<Vec<Proto>> {
    match (a, b) {
        (Some(x), Some(y)) if x != y => None,
        (Some(x), _) | (_, Some(x)) => Some(vec![x]),
        (None, None) => Some(vec![Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Other(47)]),
    }
}

/// The transport-level facts of a packet: protocol, flags or ICMP type,
/// and state, each combination one the kernel can produce.
#[derive(Debug, Clone, Copy)]
struct Transport {
    proto: Proto,
    flags: Option<u8>,
    icmp_type: Option<u8>,
    state: State,
}

fn transports(family: Family, proto: Proto) -> Vec<Transport> {
    let mut out = Vec::new();
    match proto {
        Proto::Tcp => {
            for flags in 0..64u8 {
                for &state in tcp_states(flags) {
                    out.push(Transport {
                        proto,
                        flags: Some(flags),
                        icmp_type: None,
                        state,
                    });
                }
            }
        }
        Proto::Icmp => {
            for icmp_type in 0..=255u8 {
                for &state in icmp_states(family, icmp_type) {
                    out.push(Transport {
                        proto,
                        flags: None,
                        icmp_type: Some(icmp_type),
                        state,
                    });
                }
            }
        }
        Proto::Udp | Proto::Other(_) => {
            for state in TRACKED {
                out.push(Transport {
                    proto,
                    flags: None,
                    icmp_type: None,
                    state,
                });
            }
        }
    }
    out
}

fn transport_ok(m: &RuleMatch, t: &Transport) -> bool {
    if m.proto.is_some_and(|p| p != t.proto) {
        return false;
    }
    if let Some(test) = &m.tcp_flags {
        match t.flags {
            Some(flags) if flags_match(test, flags) => {}
            _ => return false,
        }
    }
    if let Some(want) = m.icmp_type {
        if t.icmp_type != Some(want) {
            return false;
        }
    }
    state_ok(&m.states, t.state)
}

/// Whether some packet the kernel can produce matches both `a` and `b`.
/// Errs towards yes: a rate limit or a `recent` list can always match.
pub fn overlap(family: Family, a: &RuleMatch, b: &RuleMatch) -> bool {
    if !nets_overlap(a.src.as_ref(), b.src.as_ref())
        || !nets_overlap(a.dst.as_ref(), b.dst.as_ref())
        || !ifaces_overlap(a.iface.as_deref(), b.iface.as_deref())
        || !ifaces_overlap(a.oface.as_deref(), b.oface.as_deref())
        || !ranges_overlap(&a.sports, &b.sports)
        || !ranges_overlap(&a.dports, &b.dports)
    {
        return false;
    }
    let Some(protos) = protos(a.proto, b.proto) else {
        return false;
    };
    // Nothing that ties flags, types and states together: the fields
    // above decide.
    let plain =
        |m: &RuleMatch| m.tcp_flags.is_none() && m.icmp_type.is_none() && m.states.is_empty();
    if plain(a) && plain(b) {
        return true;
    }
    protos.into_iter().any(|proto| {
        // Ports only exist for TCP and UDP.
        let ported = !a.sports.is_empty()
            || !a.dports.is_empty()
            || !b.sports.is_empty()
            || !b.dports.is_empty();
        if ported && !proto.has_ports() {
            return false;
        }
        transports(family, proto)
            .iter()
            .any(|t| transport_ok(a, t) && transport_ok(b, t))
    })
}

/// Whether some packet the kernel can produce matches `m` in one of
/// `states`.
pub fn can_be(family: Family, m: &RuleMatch, states: &[State]) -> bool {
    let protos = match m.proto {
        Some(p) => vec![p],
        None => vec![Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Other(47)],
    };
    protos.into_iter().any(|proto| {
        transports(family, proto)
            .iter()
            .any(|t| states.contains(&t.state) && transport_ok(m, t))
    })
}

/// Whether every packet `inner` matches also matches `outer`. Errs towards
/// no: a rate limit or `recent` list in `outer` may not match.
pub fn contains(family: Family, outer: &RuleMatch, inner: &RuleMatch) -> bool {
    if outer.limit.is_some() || outer.recent.is_some() {
        return false;
    }
    if !net_contains(outer.src.as_ref(), inner.src.as_ref())
        || !net_contains(outer.dst.as_ref(), inner.dst.as_ref())
        || !iface_contains(outer.iface.as_deref(), inner.iface.as_deref())
        || !iface_contains(outer.oface.as_deref(), inner.oface.as_deref())
        || !ranges_contain(&outer.sports, &inner.sports)
        || !ranges_contain(&outer.dports, &inner.dports)
    {
        return false;
    }
    if outer.proto.is_some() && outer.proto != inner.proto {
        return false;
    }
    if outer.tcp_flags.is_none() && outer.icmp_type.is_none() && outer.states.is_empty() {
        return true;
    }
    let protos = match inner.proto {
        Some(p) => vec![p],
        None => vec![Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Other(47)],
    };
    protos.into_iter().all(|proto| {
        transports(family, proto)
            .iter()
            .filter(|t| transport_ok(inner, t))
            .all(|t| transport_ok(outer, t))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::rule::read;

    fn m(spec: &str) -> RuleMatch {
        let rule = read(Family::Ipv4, "filter", "INPUT", spec);
        assert!(rule.unknown.is_empty(), "{spec}: {:?}", rule.unknown);
        rule.matches
    }

    #[test]
    fn scans_never_meet_established_traffic() {
        let established = m("-m state --state RELATED,ESTABLISHED");
        let null = m("-p tcp -m tcp --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE");
        let xmas = m("-p tcp -m tcp --tcp-flags FIN,SYN,RST,PSH,ACK,URG FIN,SYN,RST,PSH,ACK,URG");
        let new_without_syn =
            m("-p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m state --state NEW");
        for scan in [&null, &xmas, &new_without_syn] {
            assert!(!overlap(Family::Ipv4, &established, scan), "{scan:?}");
        }
        // But a null packet can arrive on loopback, or at an open port.
        assert!(overlap(Family::Ipv4, &m("-i lo"), &null));
        assert!(overlap(Family::Ipv4, &m("-p tcp -m tcp --dport 80"), &null));
        assert!(!overlap(
            Family::Ipv4,
            &m("-p udp -m udp --dport 80"),
            &null
        ));
    }

    #[test]
    fn fields_and_states() {
        let ssh_office = m("-s 203.0.113.7/32 -p tcp -m tcp --dport 22");
        let ssh = m("-p tcp -m tcp --dport 22");
        let web = m("-p tcp -m multiport --dports 80,443");
        assert!(overlap(Family::Ipv4, &ssh, &ssh_office));
        assert!(!overlap(Family::Ipv4, &ssh, &web));
        assert!(contains(Family::Ipv4, &ssh, &ssh_office));
        assert!(!contains(Family::Ipv4, &ssh_office, &ssh));
        assert!(!overlap(
            Family::Ipv4,
            &m("-s 10.0.0.0/8"),
            &m("-s 192.168.0.0/16")
        ));
        assert!(!overlap(Family::Ipv4, &m("-i eth0"), &m("-i eth1")));
        assert!(overlap(Family::Ipv4, &m("-i eth+"), &m("-i eth1")));
        assert!(!overlap(
            Family::Ipv4,
            &m("-m state --state INVALID"),
            &m("-m state --state NEW")
        ));
        // A SYN-ACK never opens a connection.
        assert!(!overlap(
            Family::Ipv4,
            &m("-p tcp -m tcp --tcp-flags SYN,ACK SYN,ACK"),
            &m("-m state --state NEW")
        ));
        assert!(contains(
            Family::Ipv4,
            &m("-m state --state RELATED,ESTABLISHED,INVALID"),
            &m("-p tcp -m tcp --tcp-flags SYN,ACK SYN,ACK")
        ));
    }

    #[test]
    fn neighbour_discovery_is_untracked() {
        let ns = read(
            Family::Ipv6,
            "filter",
            "INPUT",
            "-p ipv6-icmp -m icmp6 --icmpv6-type 135",
        )
        .matches;
        let invalid = m("-m state --state INVALID");
        assert!(!overlap(Family::Ipv6, &ns, &invalid));
        assert!(!overlap(Family::Ipv6, &ns, &m("-m state --state NEW")));
        assert!(overlap(Family::Ipv6, &ns, &m("-i eth0")));
    }
}
