//! The packet `explain` follows through the plan: plain data, with "not
//! given" as a value of its own so the evaluator can say when a verdict
//! rests on something the user left out.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::netfilter::Family;
use crate::plan::{CtState, TcpFlag};

/// One packet as the kernel would see it at the start of its walk.
///
/// A field that is `None` was not given: it stands for a value that no rule
/// names specifically, so it only passes tests that accept every value (an
/// address in `0.0.0.0/0`, a port in `1:65535`). The evaluator notes every
/// verdict that rests on such a stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub family: Family,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub transport: Transport,
    /// The interface it came in on (`-i`); absent on locally made packets.
    pub in_iface: Option<String>,
    /// The interface it leaves through (`-o`); unknown before routing.
    pub out_iface: Option<String>,
    pub state: CtState,
    /// The original destination port when the connection was DNAT'd or
    /// redirected (`--ctstate DNAT --ctorigdstport`).
    pub dnat_from_port: Option<u16>,
}

/// What the packet carries above IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        sport: Option<u16>,
        dport: Option<u16>,
        flags: BTreeSet<TcpFlag>,
    },
    Udp {
        sport: Option<u16>,
        dport: Option<u16>,
    },
    /// ICMP in IPv4, ICMPv6 in IPv6: the family says which.
    Icmp { icmp_type: u8 },
    /// Any other IP protocol, by number (`47` for GRE): no rule with `-p`
    /// tcp, udp or icmp matches it.
    Other { number: u8 },
}

impl Transport {
    /// TCP with the flags a packet in `state` carries: a plain SYN opens a
    /// connection, everything after it carries ACK.
    pub fn tcp(sport: Option<u16>, dport: Option<u16>, state: CtState) -> Transport {
        let flags = match state {
            CtState::New => BTreeSet::from([TcpFlag::Syn]),
            CtState::Established | CtState::Related | CtState::Invalid => {
                BTreeSet::from([TcpFlag::Ack])
            }
        };
        Transport::Tcp {
            sport,
            dport,
            flags,
        }
    }

    pub fn dport(&self) -> Option<u16> {
        match self {
            Transport::Tcp { dport, .. } | Transport::Udp { dport, .. } => *dport,
            Transport::Icmp { .. } | Transport::Other { .. } => None,
        }
    }

    pub fn sport(&self) -> Option<u16> {
        match self {
            Transport::Tcp { sport, .. } | Transport::Udp { sport, .. } => *sport,
            Transport::Icmp { .. } | Transport::Other { .. } => None,
        }
    }

    /// What NAT does to the destination port; no-op without ports.
    pub(super) fn set_dport(&mut self, port: u16) {
        match self {
            Transport::Tcp { dport, .. } | Transport::Udp { dport, .. } => *dport = Some(port),
            Transport::Icmp { .. } | Transport::Other { .. } => {}
        }
    }
}

impl Packet {
    /// A packet of a new connection; addresses, ports and interfaces not
    /// given, to be filled in with struct update syntax.
    pub fn new(family: Family, transport: Transport) -> Packet {
        Packet {
            family,
            src: None,
            dst: None,
            transport,
            in_iface: None,
            out_iface: None,
            state: CtState::New,
            dnat_from_port: None,
        }
    }

    /// The first packet of a TCP connection to `dport`: a plain SYN.
    pub fn new_tcp(family: Family, dport: u16) -> Packet {
        Packet::new(family, Transport::tcp(None, Some(dport), CtState::New))
    }

    /// The protocol's name as `-p` spells it in this family.
    pub fn proto_name(&self) -> String {
        match (&self.transport, self.family) {
            (Transport::Tcp { .. }, _) => "tcp".into(),
            (Transport::Udp { .. }, _) => "udp".into(),
            (Transport::Icmp { .. }, Family::Ipv4) => "icmp".into(),
            (Transport::Icmp { .. }, Family::Ipv6) => "icmpv6".into(),
            (Transport::Other { number }, _) => format!("protocol {number}"),
        }
    }
}
