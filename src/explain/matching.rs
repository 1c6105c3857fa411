//! Does one rule match one packet? Each match kind as iptables decides it,
//! three-valued: yes, no, or "cannot be known offline" — and the reading
//! (see [`Reading`]) decides what an unknown counts as.
//!
//! A new match kind is one function returning a [`Test`] and one line in
//! [`rule_matches`]; what it cannot know offline is a new [`Assumption`]
//! with its line in [`Assumption::resolve`]. An owned ipset (`-m set
//! --match-set fws-… src`) is known exactly: the plan holds its entries.

use std::net::IpAddr;

use ipnet::IpNet;

use super::packet::{Packet, Transport};
use super::reading::{Rates, Reading};
use crate::netfilter::Family;
use crate::plan::{Matches, PortRange, Proto, RateLimit, Recent, RecentCheck, SetRef, TcpFlags};

/// A packet field the user may leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Src,
    Dst,
    Sport,
    Dport,
    InIface,
    OutIface,
}

impl Field {
    /// How the user would have given it, for explain's reading.
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

/// Something the outcome of one test rests on that cannot be known offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assumption {
    /// The packet lacks the field.
    Unspecified(Field),
    /// A rate limit (`-m limit`): how many packets came before is unknown.
    RateLimit(RateLimit),
    /// A `recent` list: which sources it holds is unknown.
    Recent(Recent),
}

impl Assumption {
    /// What the test counts as under `reading`: `Some` when the reading
    /// settles it, `None` when it stays open (the pessimistic readings).
    pub fn resolve(&self, reading: Reading) -> Option<bool> {
        let first_packet = match reading {
            Reading::Typical | Reading::Pessimistic(Rates::FirstPacket) => true,
            Reading::Pessimistic(Rates::Any) => false,
        };
        match self {
            // Explain: a value no rule names. The guard: any value at all.
            Assumption::Unspecified(_) => match reading {
                Reading::Typical => Some(false),
                Reading::Pessimistic(_) => None,
            },
            // `--set` records the source and always matches.
            Assumption::Recent(Recent {
                check: RecentCheck::Set,
                ..
            }) => Some(true),
            // A first packet is within every rate, and no list holds its
            // source yet.
            Assumption::RateLimit(_) => first_packet.then_some(true),
            Assumption::Recent(_) => first_packet.then_some(false),
        }
    }

    /// Whether this is about the state rate limits keep, not the packet.
    pub fn is_rate(&self) -> bool {
        matches!(self, Assumption::RateLimit(_) | Assumption::Recent(_))
    }
}

/// Whether a rule matches: certainly, certainly not, or perhaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Yes,
    No,
    /// It depends on something the reading leaves open.
    Maybe,
}

/// How a rule's matches came out for a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub matched: Match,
    /// What the outcome rests on: for `Yes`, the assumptions the reading
    /// took as passing; for `No`, those it took as failing (empty when a
    /// test the packet certainly fails decides); for `Maybe`, those it
    /// leaves open.
    pub assumptions: Vec<Assumption>,
}

/// One test's outcome.
pub(super) enum Test {
    Pass,
    Fail,
    Unknown(Assumption),
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
/// outcome; a certain failure makes every assumption irrelevant, and an
/// assumption taken as failing makes the open ones irrelevant.
pub fn rule_matches(m: &Matches, packet: &Packet, reading: Reading) -> RuleMatch {
    let tests = [
        address(m.src, packet.src, Field::Src),
        address(m.dst, packet.dst, Field::Dst),
        set(m.src_set.as_ref(), packet.src, Field::Src),
        set(m.dst_set.as_ref(), packet.dst, Field::Dst),
        iface(
            m.iface.as_deref(),
            packet.in_iface.as_deref(),
            Field::InIface,
            reading,
        ),
        iface(
            m.oface.as_deref(),
            packet.out_iface.as_deref(),
            Field::OutIface,
            reading,
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
    let mut open = Vec::new();
    for test in tests {
        match test {
            Test::Pass => {}
            Test::Fail => {
                return RuleMatch {
                    matched: Match::No,
                    assumptions: Vec::new(),
                }
            }
            Test::Unknown(assumption) => match assumption.resolve(reading) {
                Some(true) => passed.push(assumption),
                Some(false) => failed.push(assumption),
                None => open.push(assumption),
            },
        }
    }
    let (matched, assumptions) = if !failed.is_empty() {
        (Match::No, failed)
    } else if !open.is_empty() {
        (Match::Maybe, open)
    } else {
        (Match::Yes, passed)
    };
    RuleMatch {
        matched,
        assumptions,
    }
}

/// `-s`/`-d`: CIDR containment within the family. A missing address passes
/// a test that every address passes (`/0`) and is unknown to any other.
fn address(rule: Option<IpNet>, packet: Option<IpAddr>, field: Field) -> Test {
    match (rule, packet) {
        (None, _) => Test::Pass,
        (Some(net), Some(addr)) => Test::from(net.contains(&addr)),
        (Some(net), None) if net.prefix_len() == 0 => Test::Pass,
        (Some(_), None) => Test::Unknown(Assumption::Unspecified(field)),
    }
}

/// `-m set --match-set NAME src|dst`: within one of the set's networks. A
/// missing address is unknown (a set never holds a `/0`).
fn set(rule: Option<&SetRef>, packet: Option<IpAddr>, field: Field) -> Test {
    match (rule, packet) {
        (None, _) => Test::Pass,
        (Some(set), Some(addr)) => Test::from(set.contains(&addr)),
        (Some(_), None) => Test::Unknown(Assumption::Unspecified(field)),
    }
}

/// `-i`/`-o`: an exact name, or with iptables' trailing `+` any name that
/// starts with what precedes it (`+` alone: any interface).
fn iface(rule: Option<&str>, packet: Option<&str>, field: Field, reading: Reading) -> Test {
    match (rule, packet) {
        (None, _) => Test::Pass,
        (Some(rule), Some(name)) => Test::from(iface_matches(rule, name)),
        (Some("+"), None) => Test::Pass,
        // Explaining a packet without naming its interface means one from
        // the network: loopback is not worth a note on every answer. The
        // guard cannot rule loopback out.
        (Some("lo"), None) if reading == Reading::Typical => Test::Fail,
        (Some(_), None) => Test::Unknown(Assumption::Unspecified(field)),
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

/// `--sport`/`--dport`: inclusive ranges. A missing port passes the full
/// range and is unknown to any other.
fn port(rule: Option<PortRange>, packet: Option<u16>, field: Field) -> Test {
    match (rule, packet) {
        (None, _) => Test::Pass,
        (Some(range), Some(port)) => Test::from(range.contains(port)),
        (Some(range), None) if range.first <= 1 && range.last == u16::MAX => Test::Pass,
        (Some(_), None) => Test::Unknown(Assumption::Unspecified(field)),
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

/// `-m limit`: depends on the packets before this one.
fn limit(rule: Option<&RateLimit>) -> Test {
    match rule {
        None => Test::Pass,
        Some(limit) => Test::Unknown(Assumption::RateLimit(limit.clone())),
    }
}

/// `-m recent`: `--set` always matches (it records the source); `--update`
/// matches a source already seen often enough.
fn recent(rule: Option<&Recent>) -> Test {
    match rule {
        None => Test::Pass,
        Some(recent) => Test::Unknown(Assumption::Recent(recent.clone())),
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
        rule_matches(m, packet, Reading::Typical).matched == Match::Yes
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
    fn a_set_matches_an_address_within_any_of_its_networks() {
        let set = crate::plan::SetRef {
            name: "fws-0123456789ab".into(),
            family: Family::Ipv4,
            entries: ["198.51.100.7/32", "203.0.113.0/24"]
                .map(|n| n.parse::<IpNet>().unwrap())
                .to_vec()
                .into(),
        };
        let from = |src: &str| Packet {
            src: Some(src.parse().unwrap()),
            ..tcp_to(22)
        };
        let by_source = Matches {
            src_set: Some(set.clone()),
            ..Matches::default()
        };
        assert!(matched(&by_source, &from("198.51.100.7")));
        assert!(matched(&by_source, &from("203.0.113.200")));
        assert!(!matched(&by_source, &from("198.51.100.8")));
        // No source given: not known to be in it.
        assert_eq!(
            rule_matches(&by_source, &tcp_to(22), Reading::Typical),
            RuleMatch {
                matched: Match::No,
                assumptions: vec![Assumption::Unspecified(Field::Src)]
            }
        );
        let by_destination = Matches {
            dst_set: Some(set),
            ..Matches::default()
        };
        let to = Packet {
            dst: Some("203.0.113.9".parse().unwrap()),
            ..from("192.0.2.1")
        };
        assert!(matched(&by_destination, &to));
        assert!(!matched(&by_destination, &from("203.0.113.9")));
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
            rule_matches(&everyone, &packet, Reading::Typical),
            RuleMatch {
                matched: Match::Yes,
                assumptions: vec![]
            }
        );
        assert_eq!(
            rule_matches(&some, &packet, Reading::Typical),
            RuleMatch {
                matched: Match::No,
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
        assert_eq!(
            rule_matches(&rule, &tcp_to(22), Reading::Typical).assumptions,
            vec![]
        );
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
            rule_matches(&limited, &tcp_to(22), Reading::Typical),
            RuleMatch {
                matched: Match::Yes,
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
            Reading::Typical,
        );
        assert_eq!(update.matched, Match::No);
        assert!(matches!(update.assumptions[..], [Assumption::Recent(_)]));
    }

    fn pessimistic(m: &Matches, packet: &Packet) -> RuleMatch {
        rule_matches(m, packet, Reading::Pessimistic(Rates::FirstPacket))
    }

    #[test]
    fn the_pessimistic_reading_leaves_missing_fields_open() {
        let on_eth0 = Matches {
            iface: Some("eth0".into()),
            ..Matches::default()
        };
        let on_lo = Matches {
            iface: Some("lo".into()),
            ..Matches::default()
        };
        let high_ports = Matches {
            proto: Some(Proto::Tcp),
            sport: Some(PortRange {
                first: 1024,
                last: 65535,
            }),
            ..Matches::default()
        };
        for rule in [&on_eth0, &on_lo, &high_ports] {
            assert_eq!(
                rule_matches(rule, &tcp_to(22), Reading::Typical).matched,
                Match::No
            );
            assert_eq!(pessimistic(rule, &tcp_to(22)).matched, Match::Maybe);
        }
        assert_eq!(
            pessimistic(&high_ports, &tcp_to(22)).assumptions,
            [Assumption::Unspecified(Field::Sport)]
        );
        // Known fields stay certain.
        let from_eth1 = Packet {
            in_iface: Some("eth1".into()),
            ..tcp_to(22)
        };
        assert_eq!(pessimistic(&on_eth0, &from_eth1).matched, Match::No);
        let to_me = Matches {
            dst: net("192.0.2.1/32"),
            ..Matches::default()
        };
        let packet = Packet {
            dst: Some("192.0.2.1".parse().unwrap()),
            ..tcp_to(22)
        };
        assert_eq!(pessimistic(&to_me, &packet).matched, Match::Yes);
        // A certain failure beats an open question.
        let udp_on_eth0 = Matches {
            proto: Some(Proto::Udp),
            ..on_eth0
        };
        assert_eq!(
            pessimistic(&udp_on_eth0, &tcp_to(22)),
            RuleMatch {
                matched: Match::No,
                assumptions: vec![]
            }
        );
    }

    #[test]
    fn rates_are_a_first_packet_unless_read_as_any() {
        let limited = Matches {
            limit: Some(RateLimit {
                count: 5,
                per: RateUnit::Minute,
                burst: None,
            }),
            ..Matches::default()
        };
        let update = Matches {
            recent: Some(Recent {
                list: "fws4-test".into(),
                check: RecentCheck::Update {
                    seconds: 30,
                    hits: 6,
                },
            }),
            ..Matches::default()
        };
        let set = Matches {
            recent: Some(Recent {
                list: "fws4-test".into(),
                check: RecentCheck::Set,
            }),
            ..Matches::default()
        };
        let over_time = Reading::Pessimistic(Rates::Any);
        let outcome = |m: &Matches, reading| rule_matches(m, &tcp_to(22), reading).matched;
        assert_eq!(outcome(&limited, Reading::Typical), Match::Yes);
        assert_eq!(
            outcome(&limited, Reading::Pessimistic(Rates::FirstPacket)),
            Match::Yes
        );
        assert_eq!(outcome(&limited, over_time), Match::Maybe);
        assert_eq!(
            outcome(&update, Reading::Pessimistic(Rates::FirstPacket)),
            Match::No
        );
        assert_eq!(outcome(&update, over_time), Match::Maybe);
        assert_eq!(outcome(&set, over_time), Match::Yes);
    }
}
