//! A blocklist as an owned ipset, with packets: a listed source is dropped
//! by the one rule matching the set, an unlisted one passes, in both
//! families and both backends; `explain` gives the verdict the kernel gave
//! (every probe asks it); an edit of the list file changes the traffic;
//! and the lockout guard refuses a session from a listed source as
//! `explain` judges it. Needs root; skips loudly without it (fails under
//! CI).

use std::net::IpAddr;
use std::process::Command;

use crate::common::netns::kernel_available;
use crate::traffic::probe::Reach::{Filtered, Open};
use crate::traffic::topology::{Lan, CLIENT4, CLIENT6, OTHER4, OTHER6};

const SCRIPT: &str = "allow_tcp([22, 80]);\nblock(address_list(\"lists/blocklist.txt\"));\n";

/// A blocklist of many documentation and private addresses in both
/// families, holding the client's second addresses (`OTHER4`, `OTHER6`)
/// unless `without` names one, and never its first ones.
fn blocklist(without: Option<IpAddr>) -> String {
    let mut list = String::from("# a feed, as downloaded\n");
    for i in 0..2_000u32 {
        list.push_str(&format!("10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255));
    }
    for i in 0..300u32 {
        list.push_str(&format!("2001:db8:bad:{i:x}::/64\n"));
    }
    list.push_str("198.51.100.0/24\n");
    for listed in [OTHER4, OTHER6] {
        if Some(listed) != without {
            list.push_str(&format!("{listed}\n"));
        }
    }
    list
}

fn write_list(lan: &Lan, text: &str) {
    let lists = lan.dir().join("lists");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::write(lists.join("blocklist.txt"), text).unwrap();
}

#[test]
fn a_listed_source_is_dropped_and_an_unlisted_one_passes() {
    if !kernel_available() {
        return;
    }
    for flavor in ["nft", "legacy"] {
        let mut lan = Lan::new(flavor);
        let _web = lan.listen_tcp(80);
        write_list(&lan, &blocklist(None));
        let run = lan.apply(SCRIPT);
        assert!(
            run.stdout.contains("ipv4 ipset\n  create set fws-"),
            "{run:?}"
        );
        assert!(
            run.stdout.contains("ipv6 ipset\n  create set fws-"),
            "{run:?}"
        );
        let dropped = [OTHER4, OTHER6].map(|src| lan.counters(src).of("--match-set"));
        // `tcp` also asks `explain`, which must give the kernel's verdict.
        for (src, before) in [OTHER4, OTHER6].into_iter().zip(dropped) {
            lan.tcp(src, 80, Filtered);
            assert!(
                lan.counters(src).of("--match-set") > before,
                "{flavor}: the set's rule dropped {src}"
            );
        }
        lan.tcp(CLIENT4, 80, Open);
        lan.tcp(CLIENT6, 80, Open);

        // OTHER4 leaves the list: one entry deleted, and it gets through;
        // OTHER6 stays blocked.
        write_list(&lan, &blocklist(Some(OTHER4)));
        let run = lan.apply(SCRIPT);
        assert!(
            run.stdout.contains("+0 \u{2212}1 entries in set fws-"),
            "{run:?}"
        );
        assert!(
            run.stdout.contains(&format!("      \u{2212} {OTHER4}\n")),
            "{run:?}"
        );
        lan.tcp(OTHER4, 80, Open);
        lan.tcp(OTHER6, 80, Filtered);
    }
}

#[test]
fn the_guard_refuses_a_session_from_a_listed_source_as_explain_judges_it() {
    if !kernel_available() {
        return;
    }
    let lan = Lan::new("nft");
    write_list(&lan, &blocklist(None));
    for (client, server) in [(OTHER4, "192.0.2.1"), (OTHER6, "2001:db8::1")] {
        let session = format!("{client} 50022 {server} 22");
        let refused = lan.run_with(&["apply"], SCRIPT, &[("SSH_CONNECTION", &session)]);
        assert_eq!(refused.code, 1, "{refused:?}");
        assert!(refused.stderr.contains("refusing to apply"), "{refused:?}");
        assert!(
            refused.stderr.contains("-m set --match-set fws-")
                && refused.stderr.contains("other.rhai:2:1"),
            "{refused:?}"
        );
        // Nothing was written: no rule, no set.
        assert!(!lan.server.save("ipv4", false).contains("fws"));
        assert!(lan.server.sh("ipset list -n").is_empty());
        // `explain` says the same of that client.
        let explained = Command::new(env!("CARGO_BIN_EXE_fwscript"))
            .arg("explain")
            .arg(lan.dir().join("other.rhai"))
            .args([
                "--proto",
                "tcp",
                "--src",
                &client.to_string(),
                "--dport",
                "22",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&explained.stdout);
        assert!(stdout.starts_with("DROP\n"), "{stdout}");
        assert!(stdout.contains("(lists/blocklist.txt)"), "{stdout}");
    }
    // A client the list does not hold may apply it.
    for (client, server) in [(CLIENT4, "192.0.2.1"), (CLIENT6, "2001:db8::1")] {
        let session = format!("{client} 50022 {server} 22");
        let run = lan.run_with(&["apply"], SCRIPT, &[("SSH_CONNECTION", &session)]);
        assert_eq!(run.code, 0, "{run:?}");
    }
}
