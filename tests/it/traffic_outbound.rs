//! What the server itself sends, with packets: outbound SMTP and the
//! answers to its DNS queries, the tutorial readers' questions. The server
//! namespace connects to listeners in the client namespace. Needs root;
//! skips loudly without it (fails under CI).

use std::net::{IpAddr, SocketAddr};

use crate::common::netns::kernel_available;
use crate::traffic::docs::snippet;
use crate::traffic::probe::{self, Reach, ANSWER, SILENCE};
use crate::traffic::topology::{Lan, CLIENT4, CLIENT6};
use crate::traffic::{explain, listen};

/// A TCP connect from the server to `port` of `dst` (a client address).
#[track_caller]
fn connect_out(lan: &Lan, dst: IpAddr, port: u16, expected: Reach) {
    let src = Lan::server_for(dst);
    let dst = SocketAddr::new(dst, port);
    let reach = probe::tcp_connect(&lan.server.name, src, dst, expected.wait());
    assert_eq!(reach, expected, "tcp {src} → {dst}");
    let (src, dst_ip, port) = (src.to_string(), dst.ip().to_string(), port.to_string());
    let packet = [
        "--chain", "output", "--iface", "eth0", "--proto", "tcp", "--src", &src, "--dst", &dst_ip,
        "--dport", &port,
    ];
    explain::agrees(lan.script().expect("a script"), &packet, reach);
}

#[test]
fn outbound_smtp_needs_no_rule_and_a_closed_output_opens_it() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    let _smtp = listen::Tcp::bind(&lan.client.name, 25);
    let _web = listen::Tcp::bind(&lan.client.name, 80);
    lan.apply(&snippet("tutorial"));
    for dst in [CLIENT4, CLIENT6] {
        connect_out(&lan, dst, 25, Reach::Open);
        connect_out(&lan, dst, 80, Reach::Open);
    }
    lan.apply(&snippet("smtp-out"));
    for dst in [CLIENT4, CLIENT6] {
        connect_out(&lan, dst, 25, Reach::Open);
        // The SYN dies in OUTPUT; the connect never hears back.
        connect_out(&lan, dst, 80, Reach::Filtered);
    }
}

/// The server asks port 53 of `dst`, a client address; whether the answer
/// comes back.
fn dns_answered(lan: &Lan, dst: IpAddr) -> bool {
    let resolver = listen::Udp::bind_to(&lan.client.name, SocketAddr::new(dst, 53));
    let socket = probe::udp_socket(&lan.server.name, Lan::server_for(dst));
    socket.send_to(b"query", (dst, 53)).expect("send query");
    let (query, peer) = resolver.receive(ANSWER).expect("the query left");
    assert_eq!(query, b"query");
    resolver.reply(b"answer", peer);
    socket.set_read_timeout(Some(SILENCE)).unwrap();
    let mut buf = [0u8; 64];
    socket.recv(&mut buf).is_ok_and(|n| &buf[..n] == b"answer")
}

#[test]
fn answers_to_the_servers_dns_queries_come_back_by_the_baseline() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("legacy");
    let tutorial = snippet("tutorial");
    lan.apply(&tutorial);
    assert!(dns_answered(&lan, CLIENT4));
    assert!(dns_answered(&lan, CLIENT6));
    // The reader's firewall: no ESTABLISHED,RELATED rule, no answers.
    lan.apply(&format!("baseline(#{{ established: false }});\n{tutorial}"));
    assert!(!dns_answered(&lan, CLIENT4));
    assert!(!dns_answered(&lan, CLIENT6));
}

#[test]
fn a_dns_server_gets_queries_over_udp_and_tcp() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    let (udp, _tcp) = (lan.listen_udp(53), lan.listen_tcp(53));
    lan.apply(&snippet("tutorial"));
    lan.udp(CLIENT4, &udp, 53, false);
    lan.apply(&snippet("dns-server"));
    for src in [CLIENT4, CLIENT6] {
        lan.udp(src, &udp, 53, true);
        lan.tcp(src, 53, Reach::Open);
    }
}
