//! `fwscript test --kernel`: the expectations proven with real packets.
//! The script is applied in a throwaway "host" namespace; every interface
//! a test names (and a default one for tests that name none) is a veth
//! pair to a namespace of its own, which holds the addresses packets come
//! from or go to through it. Each expectation's packet is sent from where
//! it would come from, listeners everywhere answer with where it arrived,
//! and the verdict is what the sender sees (see [`probe`]). All
//! namespaces are removed at the end, failure or not.
//!
//! ```text
//!  side ns "eth0"            host ns (the script applied)           side ns "fwt-out"
//!  203.0.113.7 …  ── fwt-peer ═ eth0 │ FWS-… rules │ fwt-out ═ fwt-peer ── forwarded-to
//!  198.18.1.2                  198.18.1.1                 198.18.2.1      198.18.2.2
//! ```
//!
//! Neighbours are static (IPv6 neighbour discovery would otherwise depend
//! on the rules under test). What cannot be sent as a first packet — a
//! state other than new, an ICMP type other than echo-request, an
//! interface pattern — is checked offline and said so.

mod netns;
mod probe;
mod serve;
pub mod socket;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{judge, Expectation, Expected, Landing, Method, Outcome, Seen};
use crate::apply::{self, ApplyError};
use crate::backend::iptables::Iptables;
use crate::backend::BackendError;
use crate::explain::{Explanation, Packet, Transport, Verdict};
use crate::netfilter::{Family, Hook};
use crate::plan::{CtState, Plan};
use crate::transaction;
use netns::Netns;

/// Why `--kernel` could not run.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("`--kernel` needs root: it applies the script in throwaway network namespaces and sends packets through it; run it as root, or leave `--kernel` out to check offline")]
    NotRoot,
    #[error("cannot {what}: {message}")]
    Setup { what: String, message: String },
    #[error("cannot apply the script in the test namespace: {0}")]
    Apply(#[from] ApplyError),
    #[error("cannot apply the script in the test namespace: {0}")]
    Backend(#[from] BackendError),
}

/// The interface a test that names none comes in through, and the one
/// forwarded and outgoing packets leave through.
const DEFAULT_IN: &str = "fwt-in";
const DEFAULT_OUT: &str = "fwt-out";
const PEER: &str = "fwt-peer";

/// Where a probe is sent from, or an address lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Host,
    Side(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
    Ping,
}

/// One packet to send.
#[derive(Debug, Clone)]
struct Probe {
    from: Place,
    kind: Kind,
    src: IpAddr,
    sport: Option<u16>,
    dst: IpAddr,
    dport: u16,
}

/// A veth pair from the host to a side namespace.
#[derive(Debug, Clone)]
struct Link {
    /// The host side's name: what the rules see as `-i`/`-o`.
    name: String,
    /// The side's addresses beyond its default ones.
    addrs: BTreeSet<IpAddr>,
}

/// The namespaces, links and addresses the probes need.
#[derive(Debug, Default)]
struct Topology {
    links: Vec<Link>,
    /// Addresses of the host beyond its links' own (on its loopback).
    host: BTreeSet<IpAddr>,
    owners: BTreeMap<IpAddr, Place>,
    tcp_ports: BTreeSet<u16>,
    udp_ports: BTreeSet<u16>,
}

impl Topology {
    fn link(&mut self, name: &str) -> Result<usize, String> {
        if let Some(i) = self.links.iter().position(|l| l.name == name) {
            return Ok(i);
        }
        if self.links.len() >= 200 {
            return Err("more than 200 interfaces".into());
        }
        self.links.push(Link {
            name: name.to_string(),
            addrs: BTreeSet::new(),
        });
        Ok(self.links.len() - 1)
    }

    /// The host's address on link `i`, and the side's.
    fn link_addrs(i: usize, family: Family) -> (IpAddr, IpAddr) {
        let n = (i + 1) as u8;
        match family {
            Family::Ipv4 => (
                Ipv4Addr::new(198, 18, n, 1).into(),
                Ipv4Addr::new(198, 18, n, 2).into(),
            ),
            Family::Ipv6 => (
                Ipv6Addr::new(0x2001, 2, 0, u16::from(n), 0, 0, 0, 1).into(),
                Ipv6Addr::new(0x2001, 2, 0, u16::from(n), 0, 0, 0, 2).into(),
            ),
        }
    }

    /// Puts `addr` at `place`, unless it must be somewhere else already.
    fn claim(&mut self, addr: IpAddr, place: Place) -> Result<(), String> {
        let own = (0..self.links.len()).any(|i| {
            let (h, s) = Topology::link_addrs(i, crate::plan::family_of(&addr));
            (h == addr && place == Place::Host) || (s == addr && place == Place::Side(i))
        });
        if own || addr.is_loopback() && place == Place::Host {
            return Ok(());
        }
        if addr.is_loopback() || addr.is_multicast() || addr.is_unspecified() {
            return Err(format!("{addr} cannot be given to a test interface"));
        }
        if let IpAddr::V6(v6) = addr {
            if v6.is_unicast_link_local() {
                return Err(format!("{addr} is link-local"));
            }
        }
        match self.owners.get(&addr) {
            Some(existing) if *existing != place => {
                Err(format!("{addr} would have to be on two interfaces at once"))
            }
            _ => {
                self.owners.insert(addr, place);
                match place {
                    Place::Host => self.host.insert(addr),
                    Place::Side(i) => self.links[i].addrs.insert(addr),
                };
                Ok(())
            }
        }
    }
}

/// Proves `expectations` with packets through `plan` applied.
pub fn run(plan: &Plan, expectations: &[Expectation]) -> Result<Vec<Outcome>, KernelError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(KernelError::NotRoot);
    }
    netns::remove_stale();
    let explained: Vec<Vec<Explanation>> =
        expectations.iter().map(|e| e.query.explain(plan)).collect();
    let unnamed = unnamed_ports(plan);
    let mut topology = Topology::default();
    let mut planned: Vec<Vec<Result<Probe, String>>> = Vec::new();
    for (e, explanations) in expectations.iter().zip(&explained) {
        planned.push(
            e.query
                .packets
                .iter()
                .zip(explanations)
                .map(|(packet, x)| plan_probe(&mut topology, e, packet, x, unnamed))
                .collect(),
        );
    }

    let host = Netns::create("host")?;
    for (key, value) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv6/conf/all/forwarding", "1"),
        ("net/ipv4/conf/all/rp_filter", "0"),
        ("net/ipv4/conf/default/rp_filter", "0"),
    ] {
        host.sysctl(key, value)?;
    }
    let mut sides = Vec::new();
    for (i, link) in topology.links.iter().enumerate() {
        sides.push(connect(&host, i, link)?);
    }
    for addr in &topology.host {
        host.ip(&["addr", "add", &host_prefix(*addr), "dev", "lo", "nodad"])
            .or_else(|_| host.ip(&["addr", "add", &host_prefix(*addr), "dev", "lo"]))?;
    }

    let backend = Iptables::detect(Some(&host.name))?;
    // A fresh kernel of the test's own: no recorded forms to compare.
    let forms = crate::forms::KernelForms::default();
    let survey = apply::survey(&backend, transaction::desired(plan), &forms)?;
    apply::apply(&backend, &survey)?;

    let tcp: Vec<u16> = topology.tcp_ports.iter().copied().collect();
    let udp: Vec<u16> = topology.udp_ports.iter().copied().collect();
    let mut host_addrs: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    host_addrs.extend(topology.host.iter().copied());
    for i in 0..topology.links.len() {
        for family in Family::ALL {
            host_addrs.push(Topology::link_addrs(i, family).0);
        }
    }
    let mut servers = vec![serve::Server::start(&host.name, &tcp, &udp, &host_addrs)?];
    for (i, (side, link)) in sides.iter().zip(&topology.links).enumerate() {
        let mut addrs: Vec<IpAddr> = Family::ALL
            .iter()
            .map(|f| Topology::link_addrs(i, *f).1)
            .collect();
        addrs.extend(link.addrs.iter().copied());
        servers.push(serve::Server::start(&side.name, &tcp, &udp, &addrs)?);
    }

    let mut outcomes = Vec::new();
    for ((e, explanations), probes) in expectations.iter().zip(&explained).zip(planned) {
        let mut seen = Vec::new();
        for (x, probe) in explanations.iter().zip(probes) {
            match probe {
                Err(reason) => {
                    let mut offline = judge(e, x, Method::Offline);
                    offline.offline_because = Some(reason);
                    seen.push(offline);
                }
                Ok(probe) => {
                    let ns = match probe.from {
                        Place::Host => &host.name,
                        Place::Side(i) => &sides[i].name,
                    };
                    let found = match probe.kind {
                        Kind::Tcp => probe::tcp(
                            ns,
                            probe.src,
                            probe.sport,
                            SocketAddr::new(probe.dst, probe.dport),
                        )?,
                        Kind::Udp => probe::udp(
                            ns,
                            probe.src,
                            probe.sport,
                            SocketAddr::new(probe.dst, probe.dport),
                        )?,
                        Kind::Ping => probe::ping(ns, probe.src, probe.dst)?,
                    };
                    seen.push(kernel_seen(e, x, &probe, found));
                }
            }
        }
        outcomes.push(Outcome {
            expectation: e.clone(),
            seen,
        });
    }
    drop(servers);
    drop(sides);
    drop(host);
    Ok(outcomes)
}

/// The address with its full prefix, as `ip addr add` takes it.
fn host_prefix(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(_) => format!("{addr}/32"),
        IpAddr::V6(_) => format!("{addr}/128"),
    }
}

/// Makes the side namespace of link `i` and joins it to the host.
fn connect(host: &Netns, i: usize, link: &Link) -> Result<Netns, KernelError> {
    let side = Netns::create(&format!("side{}", i + 1))?;
    let n = i + 1;
    let host_mac = format!("02:fe:00:00:{:02x}:01", n);
    let peer_mac = format!("02:fe:00:00:{:02x}:02", n);
    host.ip(&[
        "link", "add", &link.name, "address", &host_mac, "type", "veth", "peer", "name", PEER,
        "address", &peer_mac, "netns", &side.name,
    ])?;
    for family in Family::ALL {
        let (h, s) = Topology::link_addrs(i, family);
        let (prefix, v) = match family {
            Family::Ipv4 => ("24", "-4"),
            Family::Ipv6 => ("64", "-6"),
        };
        host.ip(&[
            v,
            "addr",
            "add",
            &format!("{h}/{prefix}"),
            "dev",
            &link.name,
            "nodad",
        ])
        .or_else(|_| {
            host.ip(&[
                v,
                "addr",
                "add",
                &format!("{h}/{prefix}"),
                "dev",
                &link.name,
            ])
        })?;
        side.ip(&[
            v,
            "addr",
            "add",
            &format!("{s}/{prefix}"),
            "dev",
            PEER,
            "nodad",
        ])
        .or_else(|_| side.ip(&[v, "addr", "add", &format!("{s}/{prefix}"), "dev", PEER]))?;
    }
    host.ip(&["link", "set", &link.name, "up"])?;
    side.ip(&["link", "set", PEER, "up"])?;
    for family in Family::ALL {
        let (h, s) = Topology::link_addrs(i, family);
        let v = match family {
            Family::Ipv4 => "-4",
            Family::Ipv6 => "-6",
        };
        // Static neighbours: IPv6 neighbour discovery must not depend on
        // the rules under test.
        side.ip(&[
            v,
            "neigh",
            "replace",
            &h.to_string(),
            "lladdr",
            &host_mac,
            "dev",
            PEER,
            "nud",
            "permanent",
        ])?;
        host.ip(&[
            v,
            "neigh",
            "replace",
            &s.to_string(),
            "lladdr",
            &peer_mac,
            "dev",
            &link.name,
            "nud",
            "permanent",
        ])?;
        side.ip(&[
            v,
            "route",
            "add",
            "default",
            "via",
            &h.to_string(),
            "dev",
            PEER,
        ])?;
    }
    for addr in &link.addrs {
        let family = crate::plan::family_of(addr);
        let (_, s) = Topology::link_addrs(i, family);
        side.ip(&["addr", "add", &host_prefix(*addr), "dev", PEER, "nodad"])
            .or_else(|_| side.ip(&["addr", "add", &host_prefix(*addr), "dev", PEER]))?;
        host.ip(&[
            "route",
            "add",
            &host_prefix(*addr),
            "via",
            &s.to_string(),
            "dev",
            &link.name,
        ])?;
    }
    Ok(side)
}

/// A source and a destination port no rule names, for packets a test
/// gives none: `explain` takes a missing port as such a port.
fn unnamed_ports(plan: &Plan) -> u16 {
    let named: Vec<crate::plan::PortRange> = plan
        .families
        .values()
        .flat_map(|f| f.tables.values())
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .flat_map(|r| [r.matches.sport, r.matches.dport])
        .flatten()
        .collect();
    [59999u16, 49999, 39999, 29999, 19999, 9]
        .into_iter()
        .find(|p| !named.iter().any(|r| r.contains(*p)))
        .unwrap_or(9)
}

fn plan_probe(
    topology: &mut Topology,
    e: &Expectation,
    packet: &Packet,
    x: &Explanation,
    unnamed: u16,
) -> Result<Probe, String> {
    if packet.state != CtState::New {
        return Err(format!(
            "only the first packet of a new connection can be sent, not a `{}` one",
            e.packet.state
        ));
    }
    let family = packet.family;
    let (kind, sport, dport) = match &packet.transport {
        Transport::Tcp { sport, dport, .. } => (Kind::Tcp, *sport, dport.unwrap_or(unnamed)),
        Transport::Udp { sport, dport } => (Kind::Udp, *sport, dport.unwrap_or(unnamed)),
        Transport::Icmp { icmp_type } if *icmp_type == echo(family) => (Kind::Ping, None, 0),
        Transport::Icmp { icmp_type } => {
            return Err(format!(
                "only ICMP echo requests are sent, not type {icmp_type}"
            ))
        }
        Transport::Other { number } => return Err(format!("protocol {number} is not sent")),
    };
    let sport = sport.or((kind != Kind::Ping).then_some(unnamed));
    for name in [&packet.in_iface, &packet.out_iface].into_iter().flatten() {
        if name.contains('+') || name.contains('/') || name == PEER || name.starts_with("fwt-peer")
        {
            return Err(format!("`{name}` is not an interface a packet can use"));
        }
    }
    let default = |i: usize| Topology::link_addrs(i, family);
    let (from, src, dst) = match e.query.hook {
        Hook::Input if packet.in_iface.as_deref() == Some("lo") => {
            let lo: IpAddr = match family {
                Family::Ipv4 => Ipv4Addr::LOCALHOST.into(),
                Family::Ipv6 => Ipv6Addr::LOCALHOST.into(),
            };
            let src = packet.src.unwrap_or(lo);
            let dst = packet.dst.unwrap_or(lo);
            topology.claim(src, Place::Host)?;
            topology.claim(dst, Place::Host)?;
            (Place::Host, src, dst)
        }
        Hook::Input => {
            let i = topology.link(packet.in_iface.as_deref().unwrap_or(DEFAULT_IN))?;
            let src = packet.src.unwrap_or(default(i).1);
            let dst = packet.dst.unwrap_or(default(i).0);
            topology.claim(src, Place::Side(i))?;
            topology.claim(dst, Place::Host)?;
            (Place::Side(i), src, dst)
        }
        Hook::Forward => {
            let name_in = packet.in_iface.as_deref().unwrap_or(DEFAULT_IN);
            let name_out = packet.out_iface.as_deref().unwrap_or(DEFAULT_OUT);
            if name_in == name_out {
                return Err("a packet forwarded out of the interface it came in".into());
            }
            let i = topology.link(name_in)?;
            let o = topology.link(name_out)?;
            let src = packet.src.unwrap_or(default(i).1);
            let dst = packet.dst.unwrap_or(default(o).1);
            topology.claim(src, Place::Side(i))?;
            topology.claim(dst, Place::Side(o))?;
            (Place::Side(i), src, dst)
        }
        Hook::Output => {
            let o = topology.link(packet.out_iface.as_deref().unwrap_or(DEFAULT_OUT))?;
            let src = packet.src.unwrap_or(default(o).0);
            let dst = packet.dst.unwrap_or(default(o).1);
            topology.claim(src, Place::Host)?;
            topology.claim(dst, Place::Side(o))?;
            (Place::Host, src, dst)
        }
        Hook::Prerouting | Hook::Postrouting => return Err("not a chain tests start in".into()),
    };
    // Where the packet arrives when NAT sends it elsewhere: another host
    // behind the default outgoing interface.
    if let Some(target) = x.packet.dst.filter(|d| *d != dst) {
        if x.hook == Hook::Forward && e.query.hook == Hook::Input {
            let o = topology.link(DEFAULT_OUT)?;
            topology.claim(target, Place::Side(o))?;
        }
    }
    let ports = match kind {
        Kind::Tcp => Some(&mut topology.tcp_ports),
        Kind::Udp => Some(&mut topology.udp_ports),
        Kind::Ping => None,
    };
    if let Some(ports) = ports {
        ports.insert(dport);
        if let Some(p) = x.packet.transport.dport() {
            ports.insert(p);
        }
    }
    Ok(Probe {
        from,
        kind,
        src,
        sport,
        dst,
        dport,
    })
}

fn echo(family: Family) -> u8 {
    match family {
        Family::Ipv4 => 8,
        Family::Ipv6 => 128,
    }
}

/// What the kernel did, judged; `explain`'s deciding rule is named, and
/// where the two disagree, that is said.
fn kernel_seen(e: &Expectation, x: &Explanation, probe: &Probe, found: probe::Found) -> Seen {
    let translated_to = found
        .landing
        .filter(|l| l.dst != Some(probe.dst) || l.dport != Some(probe.dport));
    let passed = match &e.expected {
        Expected::Verdict(v) => found.verdict == *v,
        Expected::Nat { dst, dport } => {
            found.verdict == Verdict::Accept
                && translated_to.is_some_and(|l: Landing| {
                    dst.is_none_or(|d| l.dst == Some(d)) && dport.is_none_or(|p| l.dport == Some(p))
                })
        }
    };
    let mut decided_by = if found.verdict == x.verdict {
        x.decided_by.to_string()
    } else {
        format!(
            "the kernel, where `explain` says {} by {}",
            x.verdict, x.decided_by
        )
    };
    if let Some(note) = found.note {
        decided_by.push_str(&format!(" ({note})"));
    }
    Seen {
        family: x.family,
        method: Method::Kernel,
        offline_because: None,
        verdict: found.verdict,
        decided_by,
        translated_to,
        passed,
    }
}
