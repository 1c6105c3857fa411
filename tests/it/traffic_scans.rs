//! drop_scans() with packets: hand-made TCP segments with the flags of the
//! classic recon patterns, sent from a raw socket of the client namespace,
//! and the server's counters saying which rule dropped them. Needs root;
//! skips loudly without it (fails under CI).

use std::net::IpAddr;

use crate::common::netns::kernel_available;
use crate::traffic::docs::snippet;
use crate::traffic::packet::flags::{ACK, ALL, FIN, NONE, RST};
use crate::traffic::probe::{ANSWER, SILENCE};
use crate::traffic::topology::{Lan, CLIENT4, CLIENT6};

/// A closed port: what reaches it unfiltered gets a reset.
const CLOSED: u16 = 81;
/// An open port with a listener.
const OPEN: u16 = 80;

/// Sends one segment with `flags` to the open port and returns the owned
/// DROP rules whose counters rose. No answer may come back.
fn dropped_by(lan: &Lan, src: IpAddr, flags: u8) -> Vec<String> {
    let before = lan.counters(src);
    let answer = lan.segment(src, OPEN, flags, SILENCE);
    assert_eq!(answer, None, "flags {flags:#04x} from {src} were answered");
    let after = lan.counters(src);
    let drops = after.drops_since(&before);
    drops
        .into_iter()
        .filter(|rule| rule.contains("fws:"))
        .map(str::to_string)
        .collect()
}

/// The prober's segments are well-formed: without a firewall, the server's
/// TCP stack answers each one that can be answered with a reset.
fn prober_works(lan: &Lan, src: IpAddr) {
    for flags in [NONE, FIN, ACK] {
        let answer = lan.segment(src, CLOSED, flags, ANSWER);
        assert!(
            answer.is_some_and(|f| f & RST != 0),
            "flags {flags:#04x} from {src} to a closed port: {answer:?}"
        );
    }
}

#[track_caller]
fn assert_one(drops: &[String], what: &str, rule: &str) {
    assert!(
        drops.len() == 1 && drops[0].contains(rule),
        "{what}: expected one owned DROP rule with {rule:?} to count it, got {drops:#?}"
    );
}

#[test]
fn each_scan_pattern_is_dropped_and_counted_by_an_owned_drop_rule() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    let _web = lan.listen_tcp(OPEN);
    for src in [CLIENT4, CLIENT6] {
        prober_works(&lan, src);
    }
    lan.apply(&snippet("tutorial"));
    for src in [CLIENT4, CLIENT6] {
        // Conntrack classifies flag combinations that cannot occur in TCP
        // as INVALID, and the baseline drops INVALID before the deny stage
        // is reached.
        assert_one(&dropped_by(&lan, src, NONE), "null", "--ctstate INVALID");
        assert_one(&dropped_by(&lan, src, ALL), "xmas", "--ctstate INVALID");
        assert_one(&dropped_by(&lan, src, FIN), "fin", "--ctstate INVALID");
        // A lone ACK is valid: conntrack picks it up as a NEW connection.
        assert_one(&dropped_by(&lan, src, ACK), "ack", "new without syn");
    }
}

#[test]
fn without_the_invalid_rule_drop_scans_counts_null_and_xmas_itself() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("legacy");
    let _web = lan.listen_tcp(OPEN);
    lan.apply(&snippet("scans-without-invalid"));
    for src in [CLIENT4, CLIENT6] {
        assert_one(&dropped_by(&lan, src, NONE), "null", "null scan");
        assert_one(&dropped_by(&lan, src, ALL), "xmas", "xmas scan");
        assert_one(&dropped_by(&lan, src, ACK), "ack", "new without syn");
        // A lone FIN is INVALID, hence not NEW: nothing in drop_scans
        // matches it, and the allow stage accepts it.
        let accepted = lan.counters(src).of("--dport 80 ");
        assert_eq!(dropped_by(&lan, src, FIN), Vec::<String>::new(), "fin");
        assert!(
            lan.counters(src).of("--dport 80 ") > accepted,
            "fin is accepted"
        );
    }
}
