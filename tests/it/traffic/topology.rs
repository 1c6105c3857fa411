//! The networks the traffic tests run on, each a few namespaces joined by
//! veth pairs, addressed from the documentation ranges only.
//!
//! ```text
//! Lan:     client eth0 ───────── eth0 server
//!          192.0.2.2, .3            192.0.2.1
//!          2001:db8::2, ::3         2001:db8::1
//!          203.0.113.7              (on-link routes to the office
//!          2001:db8:7::7             addresses)
//!
//! Routed:  outside eth0 ─── eth0 gateway eth1 ─── eth0 inside
//!          198.51.100.2     198.51.100.1  192.0.2.1   192.0.2.10
//!          (no route to 192.0.2.0/24)                 (default via .1)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::counters::Counters;
use super::explain;
use super::listen;
use super::probe::{self, Reach};
use crate::common::netns::{Netns, Run};

pub const SERVER4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
pub const SERVER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
/// The client's ordinary addresses.
pub const CLIENT4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
pub const CLIENT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
/// A second client address on the same network, for `block()`.
pub const OTHER4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
pub const OTHER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3));
/// The office's fixed addresses of docs/tutorial.md, held by the client.
pub const OFFICE4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
pub const OFFICE6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 7));

/// Where a test script and fwscript's state live while a test runs.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Where `apply` writes the script.
    fn script(&self) -> PathBuf {
        self.dir.path().join("fw.rhai")
    }

    /// Writes `script` and applies it with the binary inside `netns`; it
    /// must succeed.
    fn apply(&self, netns: &Netns, script: &str) -> (PathBuf, Run) {
        let path = self.script();
        std::fs::write(&path, script).expect("write script");
        let run = self.fwscript(netns, &["apply", path.to_str().unwrap()]);
        (path, run)
    }

    /// Runs the binary inside `netns` with this state dir; it must succeed.
    fn fwscript(&self, netns: &Netns, args: &[&str]) -> Run {
        self.run(netns, args, &[]).expect(0)
    }

    /// Runs the binary inside `netns` with this state dir and `env`.
    fn run(&self, netns: &Netns, args: &[&str], env: &[(&str, &str)]) -> Run {
        let output = netns
            .command(env!("CARGO_BIN_EXE_fwscript"))
            .envs(env.iter().copied())
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .args(args)
            .output()
            .expect("fwscript runs");
        Run::from(output)
    }
}

/// Turns duplicate address detection off in a namespace before its
/// interfaces exist, so that IPv6 addresses are usable at once.
fn no_dad(netns: &Netns) {
    netns.sh("echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && \
         echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad");
}

/// A client and a server on one link. Rules go on the server.
pub struct Lan {
    pub server: Netns,
    pub client: Netns,
    work: Workdir,
    script: Option<PathBuf>,
}

impl Lan {
    /// `flavor`: the iptables backend the server uses, "nft" or "legacy".
    pub fn new(flavor: &'static str) -> Lan {
        let server = Netns::new(flavor);
        let client = Netns::new(flavor);
        no_dad(&server);
        no_dad(&client);
        server.sh(&format!(
            "ip link add eth0 type veth peer name eth0 netns {}",
            client.name
        ));
        server.sh("ip addr add 192.0.2.1/24 dev eth0 && \
             ip addr add 2001:db8::1/64 dev eth0 nodad && \
             ip link set eth0 up && \
             ip route add 203.0.113.7/32 dev eth0 && \
             ip route add 2001:db8:7::7/128 dev eth0");
        client.sh("ip addr add 192.0.2.2/24 dev eth0 && \
             ip addr add 192.0.2.3/24 dev eth0 && \
             ip addr add 203.0.113.7/32 dev eth0 && \
             ip addr add 2001:db8::2/64 dev eth0 nodad && \
             ip addr add 2001:db8::3/64 dev eth0 nodad && \
             ip addr add 2001:db8:7::7/128 dev eth0 nodad && \
             ip link set eth0 up");
        Lan {
            server,
            client,
            work: Workdir::new(),
            script: None,
        }
    }

    /// Applies `script` on the server.
    pub fn apply(&mut self, script: &str) -> Run {
        let (path, run) = self.work.apply(&self.server, script);
        self.script = Some(path);
        run
    }

    /// `fwscript ARGS… SCRIPT` on the server with `script` written out and
    /// `env` set, whatever its exit; what `script()` returns is unchanged.
    pub fn run_with(&self, args: &[&str], script: &str, env: &[(&str, &str)]) -> Run {
        let path = self.work.dir.path().join("other.rhai");
        std::fs::write(&path, script).expect("write script");
        let mut all = args.to_vec();
        all.push(path.to_str().unwrap());
        self.work.run(&self.server, &all, env)
    }

    /// `fwscript ARGS…` on the server with `env` set, whatever its exit.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.work.run(&self.server, args, env)
    }

    /// The script last applied, unless `reset` came after it.
    pub fn script(&self) -> Option<&Path> {
        self.script.as_deref()
    }

    /// `fwscript ARGS…` on the server with this topology's state folder,
    /// whatever its exit.
    pub fn fwscript(&self, args: &[&str]) -> Run {
        self.work.run(&self.server, args, &[])
    }

    /// The folder the scripts and the state folder (`state`) live in.
    pub fn dir(&self) -> &Path {
        self.work.dir.path()
    }

    /// `fwscript reset` on the server.
    pub fn reset(&mut self) -> Run {
        self.script = None;
        self.work.fwscript(&self.server, &["reset"])
    }

    pub fn listen_tcp(&self, port: u16) -> listen::Tcp {
        listen::Tcp::bind(&self.server.name, port)
    }

    pub fn listen_udp(&self, port: u16) -> listen::Udp {
        listen::Udp::bind(&self.server.name, port)
    }

    /// The server's address in the family of `src`.
    pub fn server_for(src: IpAddr) -> IpAddr {
        match src {
            IpAddr::V4(_) => SERVER4,
            IpAddr::V6(_) => SERVER6,
        }
    }

    /// A TCP connect from `src` to the server's `port` has the `expected`
    /// outcome, and `explain` (where it exists) agrees.
    #[track_caller]
    pub fn tcp(&self, src: IpAddr, port: u16, expected: Reach) {
        let dst = Lan::server_for(src);
        let reach = probe::tcp_connect(
            &self.client.name,
            src,
            SocketAddr::new(dst, port),
            expected.wait(),
        );
        assert_eq!(reach, expected, "tcp {src} → [{dst}]:{port}");
        self.explained("tcp", src, Some(port), reach);
    }

    /// Like `tcp`, for a probe whose outcome depends on the connections
    /// before it (a `recent` list): `explain` assumes a first connection,
    /// so it is not asked.
    #[track_caller]
    pub fn tcp_again(&self, src: IpAddr, port: u16, expected: Reach) {
        let dst = SocketAddr::new(Lan::server_for(src), port);
        let reach = probe::tcp_connect(&self.client.name, src, dst, expected.wait());
        assert_eq!(reach, expected, "tcp {src} → {dst} again");
    }

    /// An echo request from `src` to the server is answered, or not.
    #[track_caller]
    pub fn ping(&self, src: IpAddr, answered: bool) {
        let dst = Lan::server_for(src);
        let wait = if answered {
            probe::ANSWER
        } else {
            probe::SILENCE
        };
        let got = probe::ping(&self.client.name, src, dst, wait);
        assert_eq!(got, answered, "ping {src} → {dst}");
        let proto = if src.is_ipv4() { "icmp" } else { "icmpv6" };
        let reach = if got { Reach::Open } else { Reach::Filtered };
        self.explained(proto, src, None, reach);
    }

    /// A datagram from `src` to the server's `port` reaches `listener`, or
    /// not.
    #[track_caller]
    pub fn udp(&self, src: IpAddr, listener: &listen::Udp, port: u16, arrives: bool) {
        let dst = Lan::server_for(src);
        let payload = format!("from {src}");
        probe::udp_send(
            &self.client.name,
            src,
            SocketAddr::new(dst, port),
            payload.as_bytes(),
        );
        let wait = if arrives {
            probe::ANSWER
        } else {
            probe::SILENCE
        };
        let got = listener.receive(wait);
        match (got, arrives) {
            (Some((bytes, from)), true) => {
                assert_eq!((bytes, from.ip()), (payload.into_bytes(), src));
            }
            (None, false) => {}
            (got, _) => {
                panic!("udp {src} → [{dst}]:{port}: expected arrives={arrives}, got {got:?}")
            }
        }
        let reach = if arrives {
            Reach::Open
        } else {
            Reach::Filtered
        };
        self.explained("udp", src, Some(port), reach);
    }

    /// A hand-made TCP segment with `flags` from `src` to the server's
    /// `port`: the flags of the answer, if one came within `wait`.
    pub fn segment(
        &self,
        src: IpAddr,
        port: u16,
        flags: u8,
        wait: std::time::Duration,
    ) -> Option<u8> {
        let dst = SocketAddr::new(Lan::server_for(src), port);
        probe::tcp_segment(&self.client.name, src, dst, flags, wait)
    }

    /// The server's counters in the family of `src`.
    pub fn counters(&self, src: IpAddr) -> Counters {
        Counters::read(&self.server, family(src))
    }

    /// `explain` gives what the kernel did to a probe from `src` that
    /// arrived on the server's eth0.
    #[track_caller]
    fn explained(&self, proto: &str, src: IpAddr, port: Option<u16>, reach: Reach) {
        let Some(script) = &self.script else { return };
        let (src, dst) = (src.to_string(), Lan::server_for(src).to_string());
        let mut packet = vec![
            "--proto", proto, "--src", &src, "--dst", &dst, "--iface", "eth0",
        ];
        let port = port.map(|p| p.to_string());
        if let Some(port) = &port {
            packet.extend(["--dport", port]);
        }
        explain::agrees(script, &packet, reach);
    }
}

pub fn family(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "ipv4",
        IpAddr::V6(_) => "ipv6",
    }
}

pub const OUTSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
pub const GATEWAY_OUT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
pub const GATEWAY_IN: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
pub const INSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

/// An outside client, a gateway with IPv4 forwarding on, and a host on the
/// gateway's inside network. Rules go on the gateway, whose uplink is
/// `eth0` and inside interface `eth1`.
pub struct Routed {
    pub outside: Netns,
    pub gateway: Netns,
    pub inside: Netns,
    work: Workdir,
}

impl Routed {
    pub fn new(flavor: &'static str) -> Routed {
        let [outside, gateway, inside] = [(); 3].map(|()| Netns::new(flavor));
        gateway.sh(&format!(
            "ip link add eth0 type veth peer name eth0 netns {outside} && \
             ip link add eth1 type veth peer name eth0 netns {inside} && \
             ip addr add 198.51.100.1/24 dev eth0 && ip link set eth0 up && \
             ip addr add 192.0.2.1/24 dev eth1 && ip link set eth1 up && \
             echo 1 > /proc/sys/net/ipv4/ip_forward",
            outside = outside.name,
            inside = inside.name,
        ));
        outside.sh("ip addr add 198.51.100.2/24 dev eth0 && ip link set eth0 up");
        inside.sh(
            "ip addr add 192.0.2.10/24 dev eth0 && ip link set eth0 up && \
             ip route add default via 192.0.2.1",
        );
        Routed {
            outside,
            gateway,
            inside,
            work: Workdir::new(),
        }
    }

    /// Applies `script` on the gateway.
    pub fn apply(&self, script: &str) -> Run {
        self.work.apply(&self.gateway, script).1
    }

    /// `fwscript ARGS…` on the gateway with this topology's state folder,
    /// whatever its exit.
    pub fn fwscript(&self, args: &[&str]) -> Run {
        self.work.run(&self.gateway, args, &[])
    }

    /// Where `apply` wrote the gateway's script.
    pub fn script(&self) -> PathBuf {
        self.work.script()
    }
}
