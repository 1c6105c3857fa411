//! The input functions with packets, one server namespace each: ping,
//! block, limit_tcp, a port range, and a re-applied script changing what
//! gets through. Needs root; skips loudly without it (fails under CI).

use crate::common::netns::kernel_available;
use crate::traffic::docs::snippet;
use crate::traffic::probe::Reach::{Filtered, Open};
use crate::traffic::topology::{Lan, CLIENT4, CLIENT6, OTHER4, OTHER6};

#[test]
fn ping_is_closed_by_default_and_open_with_allow_ping() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    lan.ping(CLIENT4, true);
    lan.ping(CLIENT6, true);
    let tutorial = snippet("tutorial");
    lan.apply(&tutorial);
    lan.ping(CLIENT4, false);
    lan.ping(CLIENT6, false);
    lan.apply(&format!("{tutorial}{}", snippet("ping")));
    lan.ping(CLIENT4, true);
    lan.ping(CLIENT6, true);
}

#[test]
fn block_wins_over_an_earlier_allow_tcp() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    let _web = lan.listen_tcp(80);
    let script = snippet("block");
    assert!(
        script.find("allow_tcp") < script.find("block"),
        "the allow comes first"
    );
    lan.apply(&script);
    let dropped = lan.counters(OTHER4).of("-s 192.0.2.3/32");
    lan.tcp(OTHER4, 80, Filtered);
    assert!(lan.counters(OTHER4).of("-s 192.0.2.3/32") > dropped);
    lan.tcp(CLIENT4, 80, Open);
    // An IPv4 address blocks IPv4 only.
    lan.tcp(OTHER6, 80, Open);
}

#[test]
fn limit_tcp_lets_the_first_hits_through_and_drops_the_next() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("legacy");
    let _ssh = lan.listen_tcp(22);
    let script = snippet("ssh-limit");
    assert!(script.contains("hits: 3"), "{script}");
    lan.apply(&script);
    for src in [CLIENT4, CLIENT6] {
        lan.tcp(src, 22, Open);
        lan.tcp_again(src, 22, Open);
        lan.tcp_again(src, 22, Open);
        lan.tcp_again(src, 22, Filtered);
    }
    // The list is per source address.
    lan.tcp(OTHER4, 22, Open);
    lan.tcp(OTHER6, 22, Open);
}

#[test]
fn a_passive_ftp_port_range_is_open_to_its_last_port() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    let ports = [21, 50000, 50050, 50100, 50101];
    let _listeners: Vec<_> = ports.iter().map(|&p| lan.listen_tcp(p)).collect();
    lan.apply(&snippet("ftp"));
    for src in [CLIENT4, CLIENT6] {
        for port in [21, 50000, 50050, 50100] {
            lan.tcp(src, port, Open);
        }
        lan.tcp(src, 50101, Filtered);
    }
}

#[test]
fn re_applying_a_changed_script_changes_the_traffic() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    let _listeners: Vec<_> = [25, 80, 8080].map(|port| lan.listen_tcp(port)).into();
    let tutorial = snippet("tutorial");
    lan.apply(&tutorial);
    lan.tcp(CLIENT4, 25, Open);
    lan.tcp(CLIENT6, 8080, Filtered);

    // No more plain SMTP; an app server on 8080.
    let edited = tutorial
        .replace("[25, ", "[")
        .replace("\"https\"]", "\"https\", 8080]");
    assert_ne!(edited, tutorial);
    let run = lan.apply(&edited);
    assert!(run.stdout.contains("applied"), "{run:?}");
    for src in [CLIENT4, CLIENT6] {
        lan.tcp(src, 25, Filtered);
        lan.tcp(src, 8080, Open);
        lan.tcp(src, 80, Open);
    }
    assert_eq!(lan.apply(&edited).stdout, "no changes\n");
}

/// The kept read (docs/design.md, "Reading the kernel"), proved with
/// packets: with a read kept in the state folder, a rule an admin deletes
/// behind fwscript's back closes the port, and the next apply reads the
/// kernel again instead of trusting what it kept, and opens it.
#[test]
fn a_kept_read_never_hides_a_rule_deleted_behind_fwscripts_back() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    let _web = lan.listen_tcp(80);
    let script = "allow_tcp(80);\n";
    lan.apply(script);
    assert_eq!(lan.apply(script).stdout, "no changes\n");
    assert!(lan.dir().join("state/kernel-read.ipv4").exists());
    lan.tcp(CLIENT4, 80, Open);

    let v4 = lan.server.save("ipv4", false);
    let owned = v4
        .lines()
        .find(|l| l.contains("--dport 80 "))
        .expect("the port 80 rule");
    lan.server.sh(&format!("$IPT -D {}", &owned[3..]));
    // The script still says open (so `explain` is not asked): the kernel
    // has drifted.
    lan.tcp_again(CLIENT4, 80, Filtered);

    let repair = lan.apply(script);
    assert!(repair.stdout.contains("applied 1 change"), "{repair:?}");
    lan.tcp(CLIENT4, 80, Open);
    lan.tcp(CLIENT6, 80, Open);
    assert_eq!(lan.apply(script).stdout, "no changes\n");
}

/// On an nf_tables host the kernel runs the rules of iptables-legacy too: a
/// legacy DROP shuts a port the script opens, and no read of fwscript's
/// shows it. `plan` and `apply` say so, naming the tool that does.
#[test]
fn a_legacy_drop_beside_the_nft_rules_is_warned_about() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    let _web = lan.listen_tcp(80);
    let script = "allow_tcp(80);\n";
    let applied = lan.apply(script);
    assert!(!applied.stderr.contains("legacy"), "{applied:#?}");
    lan.tcp(CLIENT4, 80, Open);

    lan.server
        .sh("iptables-legacy -A INPUT -p tcp --dport 80 -j DROP");
    lan.tcp_again(CLIENT4, 80, Filtered);
    lan.tcp(CLIENT6, 80, Open);
    let said = "warning: iptables-legacy holds 1 rule beside fwscript's nf_tables rules: the \
                kernel runs both, so they can drop what the script accepts, and fwscript \
                neither sees nor changes them; see them with `iptables-legacy-save`";
    let plan = lan.fwscript(&["plan", lan.script().unwrap().to_str().unwrap()]);
    assert!(plan.stderr.contains(said), "{plan:#?}");
    assert!(!plan.stderr.contains("ip6tables-legacy"), "{plan:#?}");
    let json = lan.fwscript(&["plan", "--json", lan.script().unwrap().to_str().unwrap()]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let legacy: Vec<&serde_json::Value> = value["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "legacy_rules")
        .collect();
    assert_eq!(legacy.len(), 1, "{value:#}");
    assert_eq!(legacy[0]["family"], "ipv4");
    assert_eq!(legacy[0]["rules"], 1);
    let again = lan.apply(script);
    assert!(again.stderr.contains(said), "{again:#?}");
    let status = lan.fwscript(&["status"]);
    assert!(
        status
            .stdout
            .contains("warning: iptables-legacy holds 1 rule beside"),
        "{status:#?}"
    );
    // fwscript never touches them: the drop stays, and so does the warning.
    lan.tcp_again(CLIENT4, 80, Filtered);

    // Emptied, the legacy table that remains decides nothing: no warning.
    lan.server.sh("iptables-legacy -F INPUT");
    lan.tcp_again(CLIENT4, 80, Open);
    let plan = lan.fwscript(&["plan", lan.script().unwrap().to_str().unwrap()]);
    assert!(!plan.stderr.contains("legacy"), "{plan:#?}");
}

/// Other programs' nf_tables chains on the same hooks run too (firewalld,
/// an nftables.service ruleset; on a legacy host, rules put in with
/// iptables-nft): a chain of theirs that drops shuts what the script opens.
/// `plan` names the table; a known ban list (fail2ban's) is no surprise.
#[test]
fn another_programs_nft_chain_on_the_input_hook_is_warned_about() {
    if !kernel_available() {
        return;
    }
    for (flavor, add, table, holds) in [
        (
            "nft",
            "nft add table inet guard && nft add chain inet guard input \
             '{ type filter hook input priority 10; policy drop; }'",
            "inet guard",
            "has chains of its own on the input (policy drop) hook",
        ),
        (
            "legacy",
            "iptables-nft -A INPUT -p tcp --dport 80 -j DROP",
            "ip filter",
            "holds 1 rule and has chains of its own on the input (policy accept) hook",
        ),
    ] {
        let mut lan = Lan::new(flavor);
        let _web = lan.listen_tcp(80);
        lan.apply("allow_tcp(80);\n");
        // A ban list, and Debian's stock nftables.conf (empty chains that
        // accept): nothing to say about either.
        lan.server.sh(
            "nft add table inet f2b-table && nft add chain inet f2b-table f2b-chain \
             '{ type filter hook input priority -1; }' && nft add table inet stock && \
             nft add chain inet stock input '{ type filter hook input priority 0; }'",
        );
        let script = lan.script().unwrap().to_str().unwrap().to_string();
        let plan = lan.fwscript(&["plan", &script]);
        assert!(!plan.stderr.contains("nftables table"), "{plan:#?}");
        lan.tcp(CLIENT4, 80, Open);

        lan.server.sh(add);
        lan.tcp_again(CLIENT4, 80, Filtered);
        let plan = lan.fwscript(&["plan", &script]);
        let said = format!("warning: nftables table `{table}` {holds}: ");
        assert!(plan.stderr.contains(&said), "{flavor}: {plan:#?}");
        assert!(
            plan.stderr.contains(&format!(
                "the kernel runs them too, so they can drop what the script accepts, and \
                 fwscript neither sees nor changes them; see them with `nft list table {table}`"
            )),
            "{plan:#?}"
        );
        assert!(!plan.stderr.contains("f2b-table"), "{plan:#?}");
        assert!(!plan.stderr.contains("inet stock"), "{plan:#?}");
        let json = lan.fwscript(&["plan", "--json", &script]);
        let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert!(
            value["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["kind"] == "nft_table" && w["chains"][0]["hook"] == "input"),
            "{value:#}"
        );
    }
}
