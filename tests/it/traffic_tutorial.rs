//! The tutorial firewall of docs/tutorial.md, proven with packets: a client
//! namespace connects to a server namespace over IPv4 and IPv6, with each
//! iptables backend. Needs root; skips loudly without it (fails under CI).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::netns::{kernel_available, FLAVORS};
use crate::traffic::docs::snippet;
use crate::traffic::probe::Reach::{Filtered, Open};
use crate::traffic::probe::{tcp_connect, SILENCE};
use crate::traffic::topology::{Lan, CLIENT4, CLIENT6, OFFICE4, OFFICE6, SERVER4};

/// The ports the tutorial opens to everyone.
const OPEN: [u16; 8] = [80, 443, 25, 465, 110, 995, 143, 993];
/// Ports with a listener but no rule: telnet, MySQL, an app server.
const CLOSED: [u16; 3] = [23, 3306, 8080];

#[test]
fn every_tutorial_port_is_open_and_the_others_closed_in_both_families() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let mut lan = Lan::new(flavor);
        let _listeners: Vec<_> = OPEN
            .iter()
            .chain(&CLOSED)
            .chain(&[22])
            .map(|&port| lan.listen_tcp(port))
            .collect();
        // Before: no firewall, every listener answers.
        lan.tcp(CLIENT4, 3306, Open);
        lan.apply(&snippet("tutorial"));
        for src in [CLIENT4, CLIENT6] {
            for port in OPEN {
                lan.tcp(src, port, Open);
            }
            for port in CLOSED {
                lan.tcp(src, port, Filtered);
            }
        }
    }
}

/// Script lines without comments.
fn code(script: &str) -> Vec<&str> {
    script
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect()
}

#[test]
fn the_tutorial_built_step_by_step_opens_one_step_at_a_time() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    let _listeners: Vec<_> = [22, 25, 80].map(|port| lan.listen_tcp(port)).into();
    let mut script = String::new();
    let mut apply = |lan: &mut Lan, step: String| {
        script.push_str(&step);
        lan.apply(&script);
        script.clone()
    };
    apply(&mut lan, snippet("scans"));
    lan.tcp(CLIENT4, 80, Filtered);
    apply(&mut lan, snippet("web"));
    lan.tcp(CLIENT6, 80, Open);
    lan.tcp(CLIENT6, 25, Filtered);
    apply(&mut lan, snippet("mail"));
    lan.tcp(CLIENT4, 25, Open);
    lan.tcp(OFFICE4, 22, Filtered);
    let all = apply(&mut lan, snippet("ssh"));
    lan.tcp(OFFICE4, 22, Open);
    assert_eq!(
        code(&all),
        code(&snippet("tutorial")),
        "the steps make the whole"
    );
}

#[test]
fn ssh_is_open_only_from_the_office_in_both_families() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    let _ssh = lan.listen_tcp(22);
    lan.apply(&snippet("tutorial"));
    lan.tcp(OFFICE4, 22, Open);
    lan.tcp(OFFICE6, 22, Open);
    lan.tcp(CLIENT4, 22, Filtered);
    lan.tcp(CLIENT6, 22, Filtered);
}

#[test]
fn reset_lets_a_locked_out_admin_back_in() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("legacy");
    let _ssh = lan.listen_tcp(22);
    lan.apply(&snippet("tutorial"));
    lan.tcp(CLIENT4, 22, Filtered);
    let reset = lan.reset();
    assert!(reset.stdout.contains("applied"), "{reset:?}");
    lan.tcp(CLIENT4, 22, Open);
    lan.tcp(CLIENT6, 22, Open);
}

#[test]
fn the_lockout_guard_and_apply_confirm_keep_the_admin_in() {
    if !kernel_available() {
        return;
    }
    let lan = Lan::new("nft");
    let _ssh = lan.listen_tcp(22);
    let tutorial = snippet("tutorial");

    // Over SSH from 192.0.2.2, a script that would drop that session's
    // next connection is refused, and nothing changes.
    let session = [("SSH_CONNECTION", "192.0.2.2 50022 192.0.2.1 22")];
    let refused = lan.run_with(&["apply"], &tutorial, &session).expect(1);
    assert!(refused.stderr.contains("refusing to apply"), "{refused:?}");
    lan.tcp(CLIENT4, 22, Open);

    // Applied with --confirm and never confirmed: the rules go by
    // themselves, and the admin gets back in.
    lan.run_with(&["apply", "--confirm", "1"], &tutorial, &[])
        .expect(0);
    lan.tcp(CLIENT4, 22, Filtered);
    let deadline = Instant::now() + Duration::from_secs(20);
    let dst = SocketAddr::new(SERVER4, 22);
    while tcp_connect(&lan.client.name, CLIENT4, dst, SILENCE) != Open {
        assert!(
            Instant::now() < deadline,
            "the unconfirmed apply was never rolled back"
        );
    }
}
