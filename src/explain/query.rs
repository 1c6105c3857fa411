//! From the command line's words to packets: one per family the request
//! fits, since a packet without addresses could be either.

use std::net::IpAddr;

use super::packet::{Packet, Transport};
use super::{explain, ExplainError, Explanation};
use crate::netfilter::{icmp_type_by_name, Family, Hook};
use crate::plan::{family_of, CtState, Plan};

/// What the user asked about, as typed.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub proto: &'a str,
    pub src: Option<&'a str>,
    pub dst: Option<&'a str>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// The incoming interface, or the outgoing one for the output chain.
    pub iface: Option<&'a str>,
    /// The outgoing interface of a forwarded packet.
    pub oface: Option<&'a str>,
    pub chain: &'a str,
    pub state: &'a str,
    pub icmp_type: Option<&'a str>,
}

/// A request made sense of: where the packet enters and the packet itself,
/// once per family it may belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub hook: Hook,
    pub packets: Vec<Packet>,
    /// What was assumed for values not given.
    pub notes: Vec<String>,
}

impl Query {
    pub fn parse(request: &Request) -> Result<Query, ExplainError> {
        let hook = parse_chain(request.chain)?;
        let state = parse_state(request.state)?;
        let src = parse_address("--src", request.src)?;
        let dst = parse_address("--dst", request.dst)?;
        let proto = parse_proto(request.proto)?;
        let iface = request.iface.map(parse_iface).transpose()?;
        let oface = request.oface.map(parse_iface).transpose()?;
        if oface.is_some() && matches!(hook, Hook::Input | Hook::Prerouting) {
            return Err(ExplainError::OfaceOnInput);
        }
        for (flag, port) in [("--sport", request.sport), ("--dport", request.dport)] {
            match port {
                Some(_) if !proto.has_ports() => {
                    return Err(ExplainError::PortWithoutPorts { flag })
                }
                Some(0) => return Err(ExplainError::PortZero { flag }),
                _ => {}
            }
        }
        if request.icmp_type.is_some() && !matches!(proto, Proto::Icmp(_)) {
            return Err(ExplainError::IcmpTypeWithoutIcmp);
        }

        let mut notes = Vec::new();
        let families = families(request, src, dst, proto)?;
        if families.len() > 1 {
            notes.push(
                "no address given: explained for IPv4 and IPv6; give `--src` or `--dst` \
                 to choose"
                    .to_string(),
            );
        }
        let mut packets = Vec::new();
        for family in families {
            let transport = match proto {
                Proto::Tcp => Transport::tcp(request.sport, request.dport, state),
                Proto::Udp => Transport::Udp {
                    sport: request.sport,
                    dport: request.dport,
                },
                Proto::Icmp(_) => {
                    let icmp_type = match request.icmp_type {
                        Some(text) => parse_icmp_type(text, family)?,
                        None => {
                            notes
                                .push("no `--icmp-type` given: assumed echo-request (ping)".into());
                            echo_request(family)
                        }
                    };
                    Transport::Icmp { icmp_type }
                }
                Proto::Other(number) => Transport::Other { number },
            };
            let (in_iface, out_iface) = match hook {
                Hook::Output | Hook::Postrouting => (None, oface.clone().or_else(|| iface.clone())),
                Hook::Forward => (iface.clone(), oface.clone()),
                Hook::Prerouting | Hook::Input => (iface.clone(), None),
            };
            packets.push(Packet {
                family,
                src,
                dst,
                transport,
                in_iface,
                out_iface,
                state,
                dnat_from_port: None,
            });
        }
        Ok(Query {
            hook,
            packets,
            notes,
        })
    }

    /// One explanation per packet, in family order.
    pub fn explain(&self, plan: &Plan) -> Vec<Explanation> {
        self.packets
            .iter()
            .map(|packet| explain(plan, packet, self.hook))
            .collect()
    }
}

/// The protocol as asked: ICMP stands for ICMP or ICMPv6, each tying the
/// packet to its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    Icmp(Family),
    Other(u8),
}

impl Proto {
    fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

fn parse_proto(text: &str) -> Result<Proto, ExplainError> {
    let proto = match text.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Proto::Tcp,
        "udp" | "17" => Proto::Udp,
        "icmp" | "1" => Proto::Icmp(Family::Ipv4),
        "icmpv6" | "ipv6-icmp" | "58" => Proto::Icmp(Family::Ipv6),
        other => match other.parse::<u8>() {
            Ok(number) => Proto::Other(number),
            Err(_) => return Err(ExplainError::UnknownProto(text.to_string())),
        },
    };
    Ok(proto)
}

/// The families the packet may be in: its addresses' and its protocol's.
fn families(
    request: &Request,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: Proto,
) -> Result<Vec<Family>, ExplainError> {
    let by_address = match (src, dst) {
        (Some(s), Some(d)) if family_of(&s) != family_of(&d) => {
            return Err(ExplainError::MixedFamilies {
                src: s.to_string(),
                dst: d.to_string(),
            })
        }
        (Some(addr), _) => Some(("--src", addr)),
        (None, Some(addr)) => Some(("--dst", addr)),
        (None, None) => None,
    };
    match (by_address, proto) {
        (Some((flag, addr)), Proto::Icmp(family)) if family_of(&addr) != family => {
            Err(ExplainError::ProtoFamily {
                proto: request.proto.to_string(),
                family: family_label(family),
                flag,
                address: format!("{addr} ({})", family_label(family_of(&addr))),
            })
        }
        (Some((_, addr)), _) => Ok(vec![family_of(&addr)]),
        (None, Proto::Icmp(family)) => Ok(vec![family]),
        (None, _) => Ok(Family::ALL.to_vec()),
    }
}

fn family_label(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "IPv4",
        Family::Ipv6 => "IPv6",
    }
}

fn parse_address(flag: &'static str, text: Option<&str>) -> Result<Option<IpAddr>, ExplainError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let addr: IpAddr = text.parse().map_err(|_| ExplainError::BadAddress {
        flag,
        text: text.to_string(),
    })?;
    // An IPv4-mapped IPv6 address is IPv4 on the wire, where iptables looks.
    Ok(Some(addr.to_canonical()))
}

fn parse_chain(text: &str) -> Result<Hook, ExplainError> {
    [Hook::Input, Hook::Forward, Hook::Output]
        .into_iter()
        .find(|hook| hook.script_name().eq_ignore_ascii_case(text))
        .ok_or_else(|| ExplainError::UnknownChain(text.to_string()))
}

fn parse_state(text: &str) -> Result<CtState, ExplainError> {
    CtState::ALL
        .into_iter()
        .find(|state| state.script_name().eq_ignore_ascii_case(text))
        .ok_or_else(|| ExplainError::UnknownState(text.to_string()))
}

fn parse_iface(text: &str) -> Result<String, ExplainError> {
    let valid = !text.is_empty() && text.len() <= 15 && !text.contains(char::is_whitespace);
    if valid {
        Ok(text.to_string())
    } else {
        Err(ExplainError::BadIface(text.to_string()))
    }
}

fn echo_request(family: Family) -> u8 {
    match family {
        Family::Ipv4 => 8,
        Family::Ipv6 => 128,
    }
}

fn parse_icmp_type(text: &str, family: Family) -> Result<u8, ExplainError> {
    if let Ok(number) = text.parse::<u8>() {
        return Ok(number);
    }
    icmp_type_by_name(family, text)
        .map(|(_, number)| number)
        .ok_or_else(|| ExplainError::UnknownIcmpType(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>() -> Request<'a> {
        Request {
            proto: "tcp",
            chain: "input",
            state: "new",
            ..Request::default()
        }
    }

    #[test]
    fn an_address_chooses_the_family() {
        let query = Query::parse(&Request {
            src: Some("2001:db8::7"),
            dport: Some(22),
            ..request()
        })
        .unwrap();
        assert_eq!(query.packets.len(), 1);
        assert_eq!(query.packets[0].family, Family::Ipv6);
        assert_eq!(query.hook, Hook::Input);
    }

    #[test]
    fn no_address_asks_both_families() {
        let query = Query::parse(&Request {
            dport: Some(80),
            ..request()
        })
        .unwrap();
        let families: Vec<_> = query.packets.iter().map(|p| p.family).collect();
        assert_eq!(families, Family::ALL);
        assert!(query.notes[0].contains("IPv4 and IPv6"));
    }

    #[test]
    fn icmp_ties_the_family_and_defaults_to_ping() {
        let query = Query::parse(&Request {
            proto: "icmpv6",
            ..request()
        })
        .unwrap();
        assert_eq!(query.packets[0].family, Family::Ipv6);
        assert_eq!(
            query.packets[0].transport,
            Transport::Icmp { icmp_type: 128 }
        );
        let named = Query::parse(&Request {
            proto: "icmpv6",
            icmp_type: Some("neighbor-solicitation"),
            ..request()
        })
        .unwrap();
        assert_eq!(
            named.packets[0].transport,
            Transport::Icmp { icmp_type: 135 }
        );
    }

    #[test]
    fn mapped_ipv4_addresses_are_ipv4() {
        let query = Query::parse(&Request {
            src: Some("::ffff:203.0.113.7"),
            ..request()
        })
        .unwrap();
        assert_eq!(query.packets[0].family, Family::Ipv4);
    }

    #[test]
    fn forwarded_packets_take_both_interfaces() {
        let query = Query::parse(&Request {
            chain: "forward",
            iface: Some("eth1"),
            oface: Some("eth0"),
            ..request()
        })
        .unwrap();
        assert_eq!(query.packets[0].in_iface.as_deref(), Some("eth1"));
        assert_eq!(query.packets[0].out_iface.as_deref(), Some("eth0"));
        let input = Query::parse(&Request {
            oface: Some("eth0"),
            ..request()
        });
        assert!(matches!(input, Err(ExplainError::OfaceOnInput)));
    }

    #[test]
    fn the_output_chain_takes_iface_as_outgoing() {
        let query = Query::parse(&Request {
            chain: "output",
            iface: Some("eth0"),
            src: Some("192.0.2.1"),
            ..request()
        })
        .unwrap();
        assert_eq!(query.packets[0].out_iface.as_deref(), Some("eth0"));
        assert_eq!(query.packets[0].in_iface, None);
    }

    #[test]
    fn mistakes_are_named_by_flag() {
        let err = |r: Request| Query::parse(&r).unwrap_err().to_string();
        assert_eq!(
            err(Request {
                src: Some("300.1.1.1"),
                ..request()
            }),
            "`--src` value `300.1.1.1` is not an IP address"
        );
        assert_eq!(
            err(Request {
                proto: "tpc",
                ..request()
            }),
            "unknown protocol `tpc`: expected tcp, udp, icmp, icmpv6 or a protocol number"
        );
        assert_eq!(
            err(Request {
                proto: "icmp",
                dport: Some(1),
                ..request()
            }),
            "`--dport` needs `--proto tcp` or `--proto udp`"
        );
        assert_eq!(
            err(Request {
                proto: "icmp",
                src: Some("2001:db8::1"),
                ..request()
            }),
            "protocol `icmp` is IPv4's, but `--src` is 2001:db8::1 (IPv6)"
        );
        assert_eq!(
            err(Request {
                src: Some("192.0.2.1"),
                dst: Some("2001:db8::1"),
                ..request()
            }),
            "`--src` 192.0.2.1 and `--dst` 2001:db8::1 are of different families"
        );
        assert_eq!(
            err(Request {
                chain: "prerouting",
                ..request()
            }),
            "unknown chain `prerouting`: expected input, forward or output"
        );
        assert_eq!(
            err(Request {
                state: "old",
                ..request()
            }),
            "unknown connection state `old`: expected new, established, related or invalid"
        );
        assert_eq!(
            err(Request {
                dport: Some(0),
                ..request()
            }),
            "`--dport` 0 is out of range 1..65535"
        );
    }
}
