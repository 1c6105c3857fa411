//! fail2ban's bans win over the ports a script opens, proved with packets
//! between two namespaces, whatever the order things start in: fail2ban
//! before fwscript, after it, across `reset` and a re-apply, a `rollback`,
//! and the resyncs of `watch`. Both families; both iptables backends.
//! Needs root and Debian's fail2ban; skips loudly without them (fails
//! under CI).

use std::net::IpAddr;

use crate::common::fail2ban::{self, Fail2ban};
use crate::common::netns::{kernel_available, FLAVORS};
use crate::common::watch::Watch;
use crate::traffic::probe::Reach::{Filtered, Open, Refused};
use crate::traffic::topology::{Lan, CLIENT4, CLIENT6, OFFICE4, OFFICE6, OTHER4, OTHER6};

/// The port the scripts open and fail2ban guards.
const PORT: u16 = 8080;

const SCRIPT: &str = "allow_tcp(8080);\nblock(\"198.51.100.1\");\n";

fn available() -> bool {
    kernel_available() && fail2ban::available()
}

/// Banned sources get fail2ban's reject (a port-unreachable, so `Refused`
/// with a listener there); the others reach the open port.
#[track_caller]
fn bans_hold(lan: &Lan, banned: &[IpAddr], free: &[IpAddr]) {
    for &src in banned {
        lan.tcp_again(src, PORT, Refused);
    }
    for &src in free {
        lan.tcp_again(src, PORT, Open);
    }
}

#[test]
fn bans_made_before_fwscript_starts_hold_on_the_ports_it_opens() {
    if !available() {
        return;
    }
    for flavor in FLAVORS {
        let mut lan = Lan::new(flavor);
        let _web = lan.listen_tcp(PORT);
        let mut f2b = Fail2ban::start(&lan.server, "8080");
        f2b.ban(CLIENT4);
        // The IPv6 one the way fail2ban usually bans: a failure in a log.
        f2b.fail(CLIENT6);
        bans_hold(&lan, &[CLIENT4, CLIENT6], &[OTHER4, OTHER6]);

        let applied = lan.apply(SCRIPT).expect(0);
        assert!(
            !applied.stderr.contains("f2b-"),
            "{flavor}: fail2ban's jump is no alarm: {applied:?}"
        );
        bans_hold(&lan, &[CLIENT4, CLIENT6], &[OTHER4, OTHER6]);

        // fail2ban restarted: it removes its rules, puts its jump back on
        // top and bans what its database remembers.
        f2b.restart();
        f2b.wait_banned(CLIENT4);
        f2b.wait_banned(CLIENT6);
        bans_hold(&lan, &[CLIENT4, CLIENT6], &[OTHER4, OTHER6]);
        let script = lan.script().unwrap().to_str().unwrap().to_string();
        assert_eq!(
            lan.fwscript(&["plan", &script]).expect(0).stdout,
            "in sync: no changes\n",
            "{flavor}"
        );
    }
}

#[test]
fn bans_made_after_fwscript_applied_hold_too() {
    if !available() {
        return;
    }
    for flavor in FLAVORS {
        let mut lan = Lan::new(flavor);
        let _web = lan.listen_tcp(PORT);
        lan.apply(SCRIPT).expect(0);
        bans_hold(&lan, &[], &[CLIENT4, CLIENT6, OTHER4, OTHER6]);

        let f2b = Fail2ban::start(&lan.server, "8080");
        f2b.ban(CLIENT4);
        f2b.ban(CLIENT6);
        bans_hold(&lan, &[CLIENT4, CLIENT6], &[OTHER4, OTHER6]);

        // An edit re-applies: fail2ban's jump, now above both of
        // fwscript's hooks, stays there.
        lan.apply(&format!("{SCRIPT}allow_tcp(8081);\n")).expect(0);
        bans_hold(&lan, &[CLIENT4, CLIENT6], &[OTHER4, OTHER6]);
        let input = lan.server.sh("$IPT -S INPUT");
        let f2b_at = input.find("-j f2b-fws").expect("fail2ban's jump");
        let hook_at = input.find("-j FWS-INPUT\n").expect("the accepting hook");
        assert!(f2b_at < hook_at, "{flavor}:\n{input}");
    }
}

#[test]
fn bans_hold_across_reset_reapply_and_rollback() {
    if !available() {
        return;
    }
    for flavor in FLAVORS {
        let mut lan = Lan::new(flavor);
        let _web = lan.listen_tcp(PORT);
        let _other = lan.listen_tcp(8081);
        let f2b = Fail2ban::start(&lan.server, "8080");
        f2b.ban(CLIENT4);
        f2b.ban(CLIENT6);
        lan.apply(SCRIPT).expect(0);

        lan.reset().expect(0);
        // Re-banning after the reset, with nothing of fwscript's there.
        f2b.ban(OFFICE4);
        f2b.ban(OFFICE6);
        let banned = [CLIENT4, CLIENT6, OFFICE4, OFFICE6];
        bans_hold(&lan, &banned, &[OTHER4, OTHER6]);

        lan.apply(SCRIPT).expect(0);
        bans_hold(&lan, &banned, &[OTHER4, OTHER6]);

        // An edit opens 8081; rollback takes it back; the bans stay.
        lan.apply(&format!("{SCRIPT}allow_tcp(8081);\n")).expect(0);
        lan.tcp_again(OTHER4, 8081, Open);
        let rolled = lan.fwscript(&["rollback"]).expect(0);
        assert!(rolled.stdout.contains("applied"), "{flavor}: {rolled:?}");
        lan.tcp_again(OTHER4, 8081, Filtered);
        bans_hold(&lan, &banned, &[OTHER4, OTHER6]);
    }
}

#[test]
fn bans_hold_through_watch_resyncs() {
    if !available() {
        return;
    }
    for flavor in FLAVORS {
        let lan = Lan::new(flavor);
        let _web = lan.listen_tcp(PORT);
        let watch = Watch::start(&lan.server, lan.dir(), SCRIPT, 1);
        let f2b = Fail2ban::start(&lan.server, "8080");
        f2b.ban(CLIENT4);
        f2b.ban(CLIENT6);
        bans_hold(&lan, &[CLIENT4, CLIENT6], &[OTHER4, OTHER6]);

        // Someone deletes fwscript's accepting hook: the resync appends it
        // again, below fail2ban's jump.
        let hook = lan
            .server
            .sh("$IPT -S INPUT")
            .lines()
            .find(|l| l.ends_with("-j FWS-INPUT"))
            .expect("the accepting hook")
            .trim_start_matches("-A INPUT ")
            .to_string();
        lan.server.sh(&format!("$IPT -D INPUT {hook}"));
        watch.wait_log("(hook at the end: permissions last)", 1);
        bans_hold(&lan, &[CLIENT4, CLIENT6], &[OTHER4, OTHER6]);

        // An admin's ban appended after the hook: the resync moves the hook
        // below it, and the ban holds.
        lan.server
            .sh("$IPT -A INPUT -s 192.0.2.3 -j DROP && $IP6T -A INPUT -s 2001:db8::3 -j DROP");
        watch.wait_log("hook moved to the end", 2);
        lan.tcp_again(OTHER4, PORT, Filtered);
        lan.tcp_again(OTHER6, PORT, Filtered);
        bans_hold(&lan, &[CLIENT4, CLIENT6], &[]);
        assert!(
            !watch.log().contains("ERROR"),
            "{flavor}:\n{}\n{}",
            watch.log(),
            f2b.log()
        );
    }
}
