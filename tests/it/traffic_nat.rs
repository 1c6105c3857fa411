//! Address translation with packets: redirect_tcp on one host, and
//! forward_tcp and masquerade through a gateway namespace between an
//! outside client and an inside host. Needs root; skips loudly without it
//! (fails under CI).

use std::net::{IpAddr, SocketAddr};

use crate::common::netns::kernel_available;
use crate::traffic::docs::snippet;
use crate::traffic::explain;
use crate::traffic::probe::{self, Reach, ANSWER, SILENCE};
use crate::traffic::topology::{Lan, Routed, CLIENT4, CLIENT6, GATEWAY_OUT, INSIDE, OUTSIDE};

#[test]
fn redirect_tcp_80_reaches_the_8080_listener_until_removed() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    let (web, app) = (lan.listen_tcp(80), lan.listen_tcp(8080));
    lan.apply(&snippet("redirect"));
    for src in [CLIENT4, CLIENT6] {
        lan.tcp(src, 80, Reach::Open);
        let (local, peer) = app.accept(ANSWER).expect("the 8080 listener got it");
        assert_eq!((local.port(), peer.ip()), (8080, src));
        assert_eq!(web.accept(SILENCE), None, "nothing reached port 80");
        // 8080 itself stays closed from outside.
        lan.tcp(src, 8080, Reach::Filtered);
    }

    // Deleting the line and re-applying removes the nat rule too.
    let run = lan.apply(&snippet("web"));
    assert!(run.stdout.contains("ipv4 nat"), "{run:?}");
    for src in [CLIENT4, CLIENT6] {
        lan.tcp(src, 80, Reach::Open);
        let (local, _) = web.accept(ANSWER).expect("the port 80 listener got it");
        assert_eq!(local.port(), 80);
    }
    assert_eq!(app.accept(SILENCE), None);
}

/// The vpn-gateway snippet without its `masquerade(…)` line.
fn without_masquerade(script: &str) -> String {
    let kept: Vec<&str> = script
        .lines()
        .filter(|line| !line.starts_with("masquerade("))
        .collect();
    assert!(kept.len() < script.lines().count(), "{script}");
    kept.join("\n")
}

#[track_caller]
fn connect(
    from: &crate::common::netns::Netns,
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    expected: Reach,
) {
    let reach = probe::tcp_connect(&from.name, src, SocketAddr::new(dst, port), expected.wait());
    assert_eq!(reach, expected, "tcp {src} → {dst}:{port}");
}

#[test]
fn masquerade_hides_the_inside_network_behind_the_gateway() {
    if !kernel_available() {
        return;
    }
    let net = Routed::new("nft");
    let web = crate::traffic::listen::Tcp::bind(&net.outside.name, 80);
    let script = snippet("vpn-gateway");

    // Forwarded but not translated: the outside host has no route back.
    // `explain` is not asked in this test: its packets have no outgoing
    // interface, so it cannot match the forward rule's `-o eth0` (it says
    // so in a note), and here routing, not a rule, loses the answer.
    net.apply(&without_masquerade(&script));
    connect(&net.inside, INSIDE, OUTSIDE, 80, Reach::Filtered);

    let run = net.apply(&script);
    assert!(run.stdout.contains("MASQUERADE"), "{run:?}");
    connect(&net.inside, INSIDE, OUTSIDE, 80, Reach::Open);
    // Drain the connection the untranslated attempt may have left behind.
    let peers: Vec<IpAddr> = std::iter::from_fn(|| web.accept(SILENCE))
        .map(|(_, peer)| peer.ip())
        .collect();
    assert_eq!(peers, [GATEWAY_OUT], "the outside sees the gateway");
}

#[test]
fn forward_tcp_reaches_the_inside_host_through_the_gateway() {
    if !kernel_available() {
        return;
    }
    let net = Routed::new("legacy");
    let ssh = crate::traffic::listen::Tcp::bind(&net.inside.name, 22);
    // No firewall, nothing listens on the gateway's 2222.
    connect(&net.outside, OUTSIDE, GATEWAY_OUT, 2222, Reach::Refused);

    net.apply(&snippet("port-forward"));
    connect(&net.outside, OUTSIDE, GATEWAY_OUT, 2222, Reach::Open);
    let (local, peer) = ssh.accept(ANSWER).expect("the inside host got it");
    assert_eq!((local, peer.ip()), (SocketAddr::new(INSIDE, 22), OUTSIDE));
    // The gateway's own ports are not forwarded, and closed.
    connect(&net.outside, OUTSIDE, GATEWAY_OUT, 2223, Reach::Filtered);
    for (port, reach) in [("2222", Reach::Open), ("2223", Reach::Filtered)] {
        let packet = [
            "--iface",
            "eth0",
            "--proto",
            "tcp",
            "--src",
            "198.51.100.2",
            "--dst",
            "198.51.100.1",
            "--dport",
            port,
        ];
        explain::agrees(&net.script(), &packet, reach);
    }
}
