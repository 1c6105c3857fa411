//! Does one rule match one packet? Each match kind as iptables decides it,
//! plus the assumptions (unknowable state, fields the user left out) that a
//! verdict may rest on.

use std::net::IpAddr;

use ipnet::IpNet;

use super::packet::{Packet, Transport};
use crate::netfilter::Family;
use crate::plan::{Matches, PortRange, Proto, RateLimit, Recent, RecentCheck, TcpFlags};

/// A packet field the user may leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    Src,
    Dst,
    Sport,
    Dport,
    InIface,
    OutIface,
}

impl Field {
    /// How the user would have given it.
    pub fn describe(self) -> &'static str {
        match self {
            Field::Src => "no `--src` given: taken as an address",
            Field::Dst => "no `--dst` given: taken as an address",
            Field::Sport => "no `--sport` given: taken as a port",
            Field::Dport => "no `--dport` given: taken as a port",
            Field::InIface => "no `--iface` given: taken as an interface",
            Field::OutIface => "the outgoing interface is not known offline: taken as one",
        }
    }
}

/// Something the verdict of one test rests on that cannot be known offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assumption {
    /// The packet lacks the field; it stands for a value no rule names.
    Unspecified(Field),
    /// A rate limit is taken as not yet reached: this is the first packet.
    RateLimit(RateLimit),
    /// A `recent` list is taken as empty: this is the first packet.
    Recent(Recent),
}

/// How a rule's matches came out for a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub matched: bool,
    /// The assumptions the outcome rests on: those that failed when the rule
    /// did not match, all of them when it did. Empty when a test the packet
    /// certainly fails already decides.
    pub assumptions: Vec<Assumption>,
}

/// One test's outcome.
enum Test {
    Pass,
    Fail,
    Assumed(bool, Assumption),
}

impl From<bool> for Test {
    fn from(passes: bool) -> Test {
        if passes {
            Test::Pass
        } else {
            Test::Fail
        }
    }
}

/// iptables ANDs a rule's matches, so their order does not change the
/// outcome; a certain failure makes every assumption irrelevant.
pub fn rule_matches(m: &Matches, packet: &Packet) -> RuleMatch {
    let tests = [
        address(m.src, packet.src, Field::Src),
        address(m.dst, packet.dst, Field::Dst),
        iface(
            m.iface.as_deref(),
            packet.in_iface.as_deref(),
            Field::InIface,
        ),
        iface(
            m.oface.as_deref(),
            packet.out_iface.as_deref(),
            Field::OutIface,
        ),
        proto(m.proto, packet),
        port(m.sport, packet.transport.sport(), Field::Sport),
        port(m.dport, packet.transport.dport(), Field::Dport),
        tcp_flags(m.tcp_flags.as_ref(), &packet.transport),
        icmp_type(m.icmp_type.as_ref().map(|t| t.number), &packet.transport),
        Test::from(m.state.is_empty() || m.state.contains(&packet.state)),
        Test::from(
            m.dnat_from_port
                .is_none_or(|p| packet.dnat_from_port == Some(p)),
        ),
        limit(m.limit.as_ref()),
        recent(m.recent.as_ref()),
    ];
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for test in tests {
        match test {
            Test::Pass => {}
            Test::Fail => {
                return RuleMatch {
                    matched: false,
                    assumptions: Vec::new(),
                }
            }
            Test::Assumed(true, assumption) => passed.push(assumption),
            Test::Assumed(false, assumption) => failed.push(assumption),
        }
    }
    if failed.is_empty() {
        RuleMatch {
            matched: true,
            assumptions: passed,
        }
    } else {
        RuleMatch {
            matched: false,
            assumptions: failed,
        }
    }
}

/// `-s`/`-d`: CIDR containment within the family. A missing address passes
/// only a test that every address passes (`/0`).
fn address(rule: Option<IpNet>, packet: Option<IpAddr>, field: Field) -> Test {
    match (rule, packet) {
        (None, _) => Test::Pass,
        (Some(net), Some(addr)) => Test::from(net.contains(&addr)),
        (Some(net), None) if net.prefix_len() == 0 => Test::Pass,
        (Some(_), None) => Test::Assumed(false, Assumption::Unspecified(field)),
    }
}

/// `-i`/`-o`: an exact name, or with iptables' trailing `+` any name that
/// starts with what precedes it (`+` alone: any interface).
fn iface(rule: Option<&str>, packet: Option<&str>, field: Field) -> Test {
    match (rule, packet) {
        (None, _) => Test::Pass,
        (Some(rule), Some(name)) => Test::from(iface_matches(rule, name)),
        (Some("+"), None) => Test::Pass,
        // Explaining a packet without naming its interface means one from
        // the network: loopback is not worth a note on every answer.
        (Some("lo"), None) => Test::Fail,
        (Some(_), None) => Test::Assumed(false, Assumption::Unspecified(field)),
    }
}

pub fn iface_matches(rule: &str, name: &str) -> bool {
    match rule.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => name == rule,
    }
}

/// `-p`: ICMP is `icmp` in IPv4 and `ipv6-icmp` in IPv6.
fn proto(rule: Option<Proto>, packet: &Packet) -> Test {
    let Some(rule) = rule else {
        return Test::Pass;
    };
    let matches = match (&packet.transport, rule) {
        (Transport::Tcp { .. }, Proto::Tcp) | (Transport::Udp { .. }, Proto::Udp) => true,
        (Transport::Icmp { .. }, Proto::Icmp) => packet.family == Family::Ipv4,
        (Transport::Icmp { .. }, Proto::Icmpv6) => packet.family == Family::Ipv6,
        (Transport::Other { number }, rule) => protocol_number(rule) == *number,
        _ => false,
    };
    Test::from(matches)
}

/// The IP protocol number `-p` stands for.
fn protocol_number(proto: Proto) -> u8 {
    match proto {
        Proto::Tcp => 6,
        Proto::Udp => 17,
        Proto::Icmp => 1,
        Proto::Icmpv6 => 58,
    }
}

/// `--sport`/`--dport`: inclusive ranges. A missing port passes only the
/// full range.
fn port(rule: Option<PortRange>, packet: Option<u16>, field: Field) -> Test {
    match (rule, packet) {
        (None, _) => Test::Pass,
        (Some(range), Some(port)) => Test::from(range.contains(port)),
        (Some(range), None) if range.first <= 1 && range.last == u16::MAX => Test::Pass,
        (Some(_), None) => Test::Assumed(false, Assumption::Unspecified(field)),
    }
}

/// `[!] --tcp-flags MASK SET`: of the flags in MASK, exactly those in SET
/// are on.
fn tcp_flags(rule: Option<&TcpFlags>, transport: &Transport) -> Test {
    let Some(rule) = rule else {
        return Test::Pass;
    };
    let Transport::Tcp { flags, .. } = transport else {
        return Test::Fail;
    };
    let exact = rule
        .mask
        .iter()
        .all(|flag| flags.contains(flag) == rule.set.contains(flag));
    Test::from(exact != rule.negated)
}

/// `--icmp-type`/`--icmpv6-type` by type number (the plan keeps no codes).
fn icmp_type(rule: Option<u8>, transport: &Transport) -> Test {
    match (rule, transport) {
        (None, _) => Test::Pass,
        (Some(wanted), Transport::Icmp { icmp_type }) => Test::from(wanted == *icmp_type),
        (Some(_), _) => Test::Fail,
    }
}

/// `-m limit`: the first packet is always within the rate.
fn limit(rule: Option<&RateLimit>) -> Test {
    match rule {
        None => Test::Pass,
        Some(limit) => Test::Assumed(true, Assumption::RateLimit(limit.clone())),
    }
}

/// `-m recent`: `--set` always matches (it records the source); `--update`
/// matches a source already seen often enough, and a first packet's source
/// has not been seen.
fn recent(rule: Option<&Recent>) -> Test {
    match rule {
        None => Test::Pass,
        Some(recent) => {
            let passes = matches!(recent.check, RecentCheck::Set);
            Test::Assumed(passes, Assumption::Recent(recent.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{CtState, IcmpType, RateUnit, TcpFlag};

    fn tcp_to(port: u16) -> Packet {
        Packet::new_tcp(Family::Ipv4, port)
    }

    fn net(text: &str) -> Option<IpNet> {
        Some(text.parse().unwrap())
    }

    fn matched(m: &Matches, packet: &Packet) -> bool {
        rule_matches(m, packet).matched
    }

    #[test]
    fn addresses_match_by_containment() {
        let packet = Packet {
            src: Some("198.51.100.77".parse().unwrap()),
            ..tcp_to(22)
        };
        let within = Matches {
            src: net("198.51.100.0/24"),
            ..Matches::default()
        };
        let outside = Matches {
            src: net("198.51.101.0/24"),
            ..Matches::default()
        };
        assert!(matched(&within, &packet));
        assert!(!matched(&outside, &packet));
    }

    #[test]
    fn a_missing_address_passes_only_the_whole_family() {
        let packet = tcp_to(22);
        let everyone = Matches {
            src: net("0.0.0.0/0"),
            ..Matches::default()
        };
        let some = Matches {
            src: net("10.0.0.0/8"),
            ..Matches::default()
        };
        assert_eq!(
            rule_matches(&everyone, &packet),
            RuleMatch {
                matched: true,
                assumptions: vec![]
            }
        );
        assert_eq!(
            rule_matches(&some, &packet),
            RuleMatch {
                matched: false,
                assumptions: vec![Assumption::Unspecified(Field::Src)]
            }
        );
    }

    #[test]
    fn a_certain_failure_hides_assumptions() {
        let rule = Matches {
            src: net("10.0.0.0/8"),
            proto: Some(Proto::Udp),
            ..Matches::default()
        };
        assert_eq!(rule_matches(&rule, &tcp_to(22)).assumptions, vec![]);
    }

    #[test]
    fn interfaces_honour_the_plus_wildcard() {
        assert!(iface_matches("eth0", "eth0"));
        assert!(!iface_matches("eth0", "eth01"));
        assert!(iface_matches("eth+", "eth1"));
        assert!(iface_matches("eth+", "eth"));
        assert!(!iface_matches("eth+", "wlan0"));
        assert!(iface_matches("+", "anything"));
        let rule = Matches {
            iface: Some("wg+".into()),
            ..Matches::default()
        };
        let from_wg = Packet {
            in_iface: Some("wg0".into()),
            ..tcp_to(22)
        };
        assert!(matched(&rule, &from_wg));
        assert!(!matched(&rule, &tcp_to(22)));
    }

    #[test]
    fn protocols_match_per_family() {
        let icmp = |family| Packet::new(family, Transport::Icmp { icmp_type: 8 });
        let rule = |proto| Matches {
            proto: Some(proto),
            ..Matches::default()
        };
        assert!(matched(&rule(Proto::Icmp), &icmp(Family::Ipv4)));
        assert!(!matched(&rule(Proto::Icmp), &icmp(Family::Ipv6)));
        assert!(matched(&rule(Proto::Icmpv6), &icmp(Family::Ipv6)));
        assert!(!matched(&rule(Proto::Udp), &tcp_to(53)));
        let gre = Packet::new(Family::Ipv4, Transport::Other { number: 47 });
        assert!(!matched(&rule(Proto::Tcp), &gre));
        assert!(matched(&Matches::default(), &gre));
        let tcp_by_number = Packet::new(Family::Ipv4, Transport::Other { number: 6 });
        assert!(matched(&rule(Proto::Tcp), &tcp_by_number));
    }

    #[test]
    fn ports_match_ranges() {
        let rule = Matches {
            proto: Some(Proto::Tcp),
            dport: Some(PortRange {
                first: 6000,
                last: 6010,
            }),
            sport: Some(PortRange {
                first: 1024,
                last: 65535,
            }),
            ..Matches::default()
        };
        let packet = |sport, dport| Packet {
            transport: Transport::tcp(Some(sport), Some(dport), CtState::New),
            ..tcp_to(dport)
        };
        assert!(matched(&rule, &packet(40000, 6000)));
        assert!(matched(&rule, &packet(40000, 6010)));
        assert!(!matched(&rule, &packet(40000, 6011)));
        assert!(!matched(&rule, &packet(80, 6005)));
    }

    #[test]
    fn tcp_flags_compare_under_the_mask() {
        let with = |flags: &[TcpFlag]| Packet {
            transport: Transport::Tcp {
                sport: None,
                dport: Some(80),
                flags: flags.iter().copied().collect(),
            },
            ..tcp_to(80)
        };
        let null = Matches {
            tcp_flags: Some(TcpFlags {
                mask: TcpFlag::ALL.to_vec(),
                set: vec![],
                negated: false,
            }),
            ..Matches::default()
        };
        let xmas = Matches {
            tcp_flags: Some(TcpFlags {
                mask: TcpFlag::ALL.to_vec(),
                set: TcpFlag::ALL.to_vec(),
                negated: false,
            }),
            ..Matches::default()
        };
        let not_syn = Matches {
            tcp_flags: Some(TcpFlags {
                negated: true,
                ..TcpFlags::syn()
            }),
            ..Matches::default()
        };
        assert!(matched(&null, &with(&[])));
        assert!(!matched(&null, &with(&[TcpFlag::Syn])));
        assert!(matched(&xmas, &with(&TcpFlag::ALL)));
        assert!(!matched(&xmas, &with(&[TcpFlag::Fin, TcpFlag::Psh])));
        assert!(!matched(&not_syn, &with(&[TcpFlag::Syn])));
        // PSH is outside --syn's mask, so SYN+PSH still counts as a SYN.
        assert!(!matched(&not_syn, &with(&[TcpFlag::Syn, TcpFlag::Psh])));
        assert!(matched(&not_syn, &with(&[TcpFlag::Syn, TcpFlag::Ack])));
        assert!(matched(&not_syn, &with(&[TcpFlag::Ack])));
        let udp = Packet::new(
            Family::Ipv4,
            Transport::Udp {
                sport: None,
                dport: Some(53),
            },
        );
        assert!(!matched(&not_syn, &udp));
    }

    #[test]
    fn icmp_types_match_by_number() {
        let rule = Matches {
            proto: Some(Proto::Icmp),
            icmp_type: Some(IcmpType {
                name: "echo-request".into(),
                number: 8,
            }),
            ..Matches::default()
        };
        let icmp = |icmp_type| Packet::new(Family::Ipv4, Transport::Icmp { icmp_type });
        assert!(matched(&rule, &icmp(8)));
        assert!(!matched(&rule, &icmp(0)));
    }

    #[test]
    fn states_match_any_listed() {
        let rule = Matches {
            state: vec![CtState::Established, CtState::Related],
            ..Matches::default()
        };
        let in_state = |state| Packet {
            state,
            ..tcp_to(22)
        };
        assert!(matched(&rule, &in_state(CtState::Established)));
        assert!(matched(&rule, &in_state(CtState::Related)));
        assert!(!matched(&rule, &in_state(CtState::New)));
        assert!(matched(&Matches::default(), &in_state(CtState::Invalid)));
    }

    #[test]
    fn dnat_from_port_needs_the_original_port() {
        let rule = Matches {
            dnat_from_port: Some(80),
            ..Matches::default()
        };
        let redirected = Packet {
            dnat_from_port: Some(80),
            ..tcp_to(8080)
        };
        assert!(matched(&rule, &redirected));
        assert!(!matched(&rule, &tcp_to(8080)));
        let from_elsewhere = Packet {
            dnat_from_port: Some(81),
            ..tcp_to(8080)
        };
        assert!(!matched(&rule, &from_elsewhere));
    }

    #[test]
    fn limits_and_recent_lists_assume_the_first_packet() {
        let rate = RateLimit {
            count: 5,
            per: RateUnit::Minute,
            burst: Some(10),
        };
        let limited = Matches {
            limit: Some(rate.clone()),
            ..Matches::default()
        };
        assert_eq!(
            rule_matches(&limited, &tcp_to(22)),
            RuleMatch {
                matched: true,
                assumptions: vec![Assumption::RateLimit(rate)]
            }
        );
        let recent = |check| Matches {
            recent: Some(Recent {
                list: "fws4-test".into(),
                check,
            }),
            ..Matches::default()
        };
        assert!(matched(&recent(RecentCheck::Set), &tcp_to(22)));
        let update = rule_matches(
            &recent(RecentCheck::Update {
                seconds: 30,
                hits: 6,
            }),
            &tcp_to(22),
        );
        assert!(!update.matched);
        assert!(matches!(update.assumptions[..], [Assumption::Recent(_)]));
    }
}
