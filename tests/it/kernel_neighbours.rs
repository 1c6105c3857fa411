//! Hand-typed neighbours, with packets: an admin's drop appended after
//! fwscript's hook is honoured once the next apply (or resync) moves the
//! hook below it, and a rule of fwscript's changed behind its back
//! (`iptables -R` keeping the `fws:` comment) is seen by `plan` and put
//! right by `apply` and by the daemon. Both families; both iptables
//! backends. Needs root; skips loudly without it (fails under CI).

use crate::common::netns::{kernel_available, FLAVORS};
use crate::common::watch::Watch;
use crate::traffic::probe::Reach::{Filtered, Open};
use crate::traffic::topology::{Lan, CLIENT4, CLIENT6, OTHER4, OTHER6};

const PORT: u16 = 8080;

fn warning_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect()
}

#[test]
fn an_admins_drop_appended_after_fwscript_is_honoured_after_the_next_apply() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let mut lan = Lan::new(flavor);
        let _web = lan.listen_tcp(PORT);
        lan.apply("allow_tcp(8080);\n").expect(0);
        let script = lan.script().unwrap().to_str().unwrap().to_string();
        lan.tcp(OTHER4, PORT, Open);

        // `iptables -A`: below fwscript's accepting hook, never reached.
        lan.server
            .sh("$IPT -A INPUT -s 192.0.2.3 -j DROP && $IP6T -A INPUT -s 2001:db8::3 -j DROP");
        lan.tcp_again(OTHER4, PORT, Open);
        lan.tcp_again(OTHER6, PORT, Open);

        let plan = lan.fwscript(&["plan", &script]).expect(2);
        let warnings = warning_lines(&plan.stderr);
        assert_eq!(warnings.len(), 2, "{flavor}: {plan:#?}");
        assert!(
            warnings[0].contains(
                "ipv4 filter INPUT rule 2 is not fwscript's and comes after its accepting hook: \
                 packets the script accepts never reach it; apply moves the hook below it: \
                 `-s 192.0.2.3/32 -j DROP`"
            ),
            "{warnings:?}"
        );
        assert!(
            plan.stdout
                .contains("hook moved to the end, below the 1 rule that came after it"),
            "{plan:#?}"
        );
        assert!(plan.stdout.contains("2 changes pending"), "{plan:#?}");

        lan.fwscript(&["apply", &script]).expect(0);
        lan.tcp_again(OTHER4, PORT, Filtered);
        lan.tcp_again(OTHER6, PORT, Filtered);
        lan.tcp_again(CLIENT4, PORT, Open);
        lan.tcp_again(CLIENT6, PORT, Open);
        let input = lan.server.sh("$IPT -S INPUT");
        assert!(
            input.trim_end().ends_with("-j FWS-INPUT"),
            "{flavor}:\n{input}"
        );

        let again = lan.fwscript(&["plan", &script]).expect(0);
        assert!(warning_lines(&again.stderr).is_empty(), "{again:#?}");
    }
}

/// `iptables -R` of the allow rule for `from`, without its source: the
/// comment, and so the id, stay.
fn open_to_everyone(lan: &Lan, tool: &str, from: &str) {
    let chain = lan.server.sh(&format!("{tool} -S FWS-INPUT-ALLOW"));
    let rules: Vec<&str> = chain.lines().skip(1).collect();
    let at = rules
        .iter()
        .position(|r| r.contains(&format!("-s {from}")))
        .unwrap_or_else(|| panic!("no rule for {from}:\n{chain}"));
    let opened = rules[at]
        .trim_start_matches("-A FWS-INPUT-ALLOW ")
        .replace(&format!("-s {from} "), "");
    assert!(opened.contains("fws:"), "{opened}");
    lan.server
        .sh(&format!("{tool} -R FWS-INPUT-ALLOW {} {opened}", at + 1));
}

/// Saves with the policies' packet counters (which nf_tables prints) left
/// out.
fn without_counters(saves: &[String; 2]) -> Vec<String> {
    saves
        .iter()
        .flat_map(|save| save.lines())
        .map(|line| match line.split_once(" [") {
            Some((declaration, _)) if line.starts_with(':') => declaration.to_string(),
            _ => line.to_string(),
        })
        .collect()
}

const SSH: &str = "ssh_from([\"192.0.2.2\", \"2001:db8::2\"]);\n";

#[test]
fn a_rule_changed_behind_fwscripts_back_is_seen_and_put_right() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let mut lan = Lan::new(flavor);
        let _ssh = lan.listen_tcp(22);
        lan.apply(SSH).expect(0);
        let script = lan.script().unwrap().to_str().unwrap().to_string();
        let clean = lan.server.saves();
        lan.tcp(CLIENT4, 22, Open);
        lan.tcp(OTHER4, 22, Filtered);

        open_to_everyone(&lan, "$IPT", "192.0.2.2/32");
        open_to_everyone(&lan, "$IP6T", "2001:db8::2/128");
        lan.tcp_again(OTHER4, 22, Open);
        lan.tcp_again(OTHER6, 22, Open);

        let plan = lan.fwscript(&["plan", &script]).expect(2);
        assert_eq!(
            plan.stdout
                .matches("(changed behind fwscript's back)")
                .count(),
            2,
            "{flavor}: {plan:#?}"
        );
        assert!(plan.stdout.contains("4 changes pending"), "{plan:#?}");
        // A dry run sees it as well, and writes nothing (the policies'
        // packet counters move with background IPv6 traffic meanwhile).
        let rules = || without_counters(&lan.server.saves());
        let before = rules();
        let dry = lan.fwscript(&["apply", "--dry-run", &script]).expect(0);
        assert!(
            dry.stdout.contains("dry run: 4 changes not applied"),
            "{dry:#?}"
        );
        assert_eq!(rules(), before);

        let json = lan.fwscript(&["apply", "--json", &script]).expect(0);
        let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        let deleted: Vec<&serde_json::Value> = report["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["action"] == "delete_rule")
            .collect();
        assert_eq!(deleted.len(), 2, "{report}");
        assert!(deleted
            .iter()
            .all(|c| c["why"] == "changed_behind_fwscripts_back" && c["rule"]["id"].is_string()));

        lan.tcp_again(OTHER4, 22, Filtered);
        lan.tcp_again(OTHER6, 22, Filtered);
        lan.tcp_again(CLIENT4, 22, Open);
        lan.tcp_again(CLIENT6, 22, Open);
        assert_eq!(
            without_counters(&lan.server.saves()),
            without_counters(&clean),
            "{flavor}: as fwscript wrote it"
        );
        lan.fwscript(&["plan", &script]).expect(0);

        // Without a record of the forms (a damaged file, a lost or new
        // state folder, one from an earlier version) a rule changed before
        // the record existed could go unseen for good: every owned rule is
        // written again once, and its form read back and recorded.
        let forms = lan.dir().join("state/kernel-forms.json");
        assert!(forms.is_file());
        std::fs::write(&forms, "{ half").unwrap();
        open_to_everyone(&lan, "$IPT", "192.0.2.2/32");
        lan.tcp_again(OTHER4, 22, Open);
        let plan = lan.fwscript(&["plan", &script]).expect(2);
        assert!(
            plan.stderr.contains("kernel-forms.json` is damaged")
                && plan.stderr.contains("written again to learn their forms"),
            "{plan:#?}"
        );
        let again = "(written again once: its kernel form was never recorded)";
        assert!(plan.stdout.matches(again).count() > 20, "{plan:#?}");
        let json = lan.fwscript(&["plan", "--json", &script]).expect(2);
        let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert!(report["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["action"] == "delete_rule")
            .all(|c| c["why"] == "form_unrecorded"));
        lan.fwscript(&["apply", &script]).expect(0);
        lan.tcp_again(OTHER4, 22, Filtered);
        lan.tcp_again(CLIENT4, 22, Open);
        let text = std::fs::read_to_string(&forms).unwrap();
        assert!(text.starts_with("{\n  \"ipv4\": {"), "{text}");
        lan.fwscript(&["plan", &script]).expect(0);

        // The same with no state folder at all: a rule changed behind
        // fwscript's back is written again by the first apply.
        std::fs::remove_dir_all(lan.dir().join("state")).unwrap();
        open_to_everyone(&lan, "$IP6T", "2001:db8::2/128");
        lan.tcp_again(OTHER6, 22, Open);
        lan.fwscript(&["apply", &script]).expect(0);
        lan.tcp_again(OTHER6, 22, Filtered);
        lan.tcp_again(CLIENT6, 22, Open);
        assert_eq!(
            without_counters(&lan.server.saves()),
            without_counters(&clean),
            "{flavor}: as fwscript wrote it"
        );
        let text = std::fs::read_to_string(&forms).unwrap();
        assert!(text.starts_with("{\n  \"ipv4\": {"), "{text}");
    }
}

#[test]
fn the_daemon_puts_right_what_was_changed_behind_its_back_and_moves_its_hook() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let lan = Lan::new(flavor);
        let _ssh = lan.listen_tcp(22);
        let watch = Watch::start(&lan.server, lan.dir(), SSH, 1);
        lan.tcp_again(OTHER4, 22, Filtered);

        open_to_everyone(&lan, "$IPT", "192.0.2.2/32");
        watch.wait_log("(changed behind fwscript's back)", 1);
        lan.tcp_again(OTHER4, 22, Filtered);
        lan.tcp_again(CLIENT4, 22, Open);

        // The hook narrowed to one source by `iptables -R`: everyone else
        // would skip the script's rules (and its baseline).
        let input = lan.server.sh("$IP6T -S INPUT");
        let at = input
            .lines()
            .skip(1)
            .position(|l| l.ends_with("-j FWS-INPUT"))
            .expect("the accepting hook");
        let hook = input
            .lines()
            .nth(at + 1)
            .unwrap()
            .trim_start_matches("-A INPUT ");
        lan.server.sh(&format!(
            "$IP6T -R INPUT {} -s 2001:db8::9/128 {hook}",
            at + 1
        ));
        watch.wait_log("(changed behind fwscript's back)", 2);
        lan.tcp_again(CLIENT6, 22, Open);

        lan.server.sh("$IPT -A INPUT -s 192.0.2.2 -j DROP");
        watch.wait_log("hook moved to the end", 1);
        lan.tcp_again(CLIENT4, 22, Filtered);
        assert!(!watch.log().contains("ERROR"), "{flavor}:\n{}", watch.log());
    }
}
