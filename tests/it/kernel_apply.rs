//! Apply against real kernels, one throwaway network namespace per case and
//! iptables backend. Needs root; skips loudly without it (fails under CI).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::case::Case;
use crate::common::netns::{kernel_available, Netns, FLAVORS};
use fwscript::apply::{self, ApplyError};
use fwscript::backend::iptables::{Flavor, Iptables};
use fwscript::forms::KernelForms;
use fwscript::netfilter::{Family, Table};
use fwscript::ruleset::{OwnedRule, RuleId};
use fwscript::{render, script};

const SCRIPT: &str = r#"
allow_tcp([80, 443]);
ssh_from("203.0.113.7");
ssh_from("2001:db8::7");
drop_scans();
allow_ping();
"#;

/// Rule lines of a save, without counters.
fn rules(save: &str) -> Vec<&str> {
    save.lines().filter(|l| l.starts_with("-A")).collect()
}

#[test]
fn first_apply_then_a_second_writes_nothing() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        let case = Case::new(SCRIPT);
        let plan = case.run(&netns, &["plan"]).expect(2);
        assert!(plan.stdout.contains("changes pending"), "{plan:?}");
        assert!(plan.stdout.contains("fw.rhai:2:1"), "{}", plan.stdout);

        let first = case.run(&netns, &["apply"]).expect(0);
        assert!(first.stdout.contains("applied"), "{first:?}");
        let [v4, v6] = netns.saves();
        assert!(v4.contains(":INPUT DROP"), "{v4}");
        assert!(
            v4.contains("-s 203.0.113.7/32 -p tcp -m tcp --dport 22"),
            "{v4}"
        );
        assert!(
            v6.contains("-s 2001:db8::7/128 -p tcp -m tcp --dport 22"),
            "{v6}"
        );
        assert!(!v4.contains("2001:db8::7") && !v6.contains("203.0.113.7"));

        let second = case.run(&netns, &["apply"]).expect(0);
        assert_eq!(second.stdout, "no changes\n", "{flavor}");
        assert_eq!(
            netns.saves(),
            [v4, v6],
            "{flavor}: the kernel is byte-identical"
        );

        let json = case.run(&netns, &["apply", "--json"]).expect(0);
        let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(report["changed"], false);
        assert_eq!(report["changes"].as_array().unwrap().len(), 0);
        case.run(&netns, &["plan"]).expect(0);
    }
}

#[test]
fn a_one_port_edit_changes_one_rule_per_family_and_keeps_counters() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        let case = Case::new(SCRIPT);
        case.run(&netns, &["apply"]).expect(0);
        // Traffic over loopback counts in the baseline's `-i lo` rule.
        netns.sh("bash -c 'for i in 1 2 3; do echo x > /dev/udp/127.0.0.1/9; done'");
        let lo_rule = |save: &str| -> String {
            save.lines()
                .find(|l| l.contains("-A FWS-INPUT-BASE -i lo"))
                .expect("the loopback rule")
                .to_string()
        };
        let before = lo_rule(&netns.save("ipv4", true));
        assert!(!before.starts_with("[0:0]"), "{before}");

        case.edit(&SCRIPT.replace("443", "8443"));
        let dry = case.run(&netns, &["apply", "--dry-run"]).expect(0);
        assert!(
            dry.stdout.contains("dry run: 4 changes not applied"),
            "{dry:?}"
        );
        let json = case.run(&netns, &["apply", "--json"]).expect(0);
        let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(report["changed"], true);
        let changes = report["changes"].as_array().unwrap();
        let actions: Vec<String> = changes
            .iter()
            .map(|c| format!("{} {}", c["family"], c["action"]))
            .collect();
        assert_eq!(
            actions,
            [
                r#""ipv4" "delete_rule""#,
                r#""ipv4" "insert_rule""#,
                r#""ipv6" "delete_rule""#,
                r#""ipv6" "insert_rule""#
            ],
            "{flavor}"
        );
        assert!(changes[1]["rule"]["text"]
            .as_str()
            .unwrap()
            .contains("--dport 8443"));
        assert_eq!(changes[1]["rule"]["origin"]["line"], 2);

        let after = lo_rule(&netns.save("ipv4", true));
        assert_eq!(
            after, before,
            "{flavor}: an untouched rule keeps its counters"
        );
        assert!(netns.save("ipv6", false).contains("--dport 8443"));
    }
}

const FOREIGN: &str = "
$IPT -N f2b-sshd
$IPT -A f2b-sshd -s 198.51.100.9/32 -j REJECT
$IPT -A f2b-sshd -j RETURN
$IPT -I INPUT 1 -p tcp -m multiport --dports 22 -j f2b-sshd
$IPT -A INPUT -s 192.0.2.0/24 -j ACCEPT
$IPT -N DOCKER
$IPT -N DOCKER-USER
$IPT -A DOCKER-USER -j RETURN
$IPT -A FORWARD -j DOCKER-USER
$IPT -t nat -N DOCKER
$IPT -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
$IPT -t nat -A DOCKER -i docker0 -j RETURN
$IP6T -N f2b-sshd
$IP6T -A f2b-sshd -j RETURN
$IP6T -I INPUT 1 -p tcp -m multiport --dports 22 -j f2b-sshd
";

/// Every line of `before` that is not fwscript's is in `after`, in order.
fn foreign_lines(save: &str) -> Vec<&str> {
    save.lines()
        .filter(|l| !l.contains("fws:") && !l.contains("FWS-"))
        .filter(|l| !l.starts_with(":INPUT") && !l.starts_with(":FORWARD"))
        .collect()
}

#[test]
fn foreign_rules_and_chains_survive_apply_and_reset() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        netns.sh(FOREIGN);
        let [v4, v6] = netns.saves();
        let case = Case::new(SCRIPT);
        let applied = case.run(&netns, &["apply"]).expect(0);
        // fail2ban's jump is no alarm; the hand-typed accept is.
        assert!(
            applied
                .stderr
                .contains("rule 2 is not fwscript's and comes before its accepting hook"),
            "{applied:?}"
        );
        assert!(!applied.stderr.contains("f2b-sshd"), "{applied:?}");
        let [v4_applied, v6_applied] = netns.saves();
        assert_eq!(foreign_lines(&v4_applied), foreign_lines(&v4), "{flavor}");
        assert_eq!(foreign_lines(&v6_applied), foreign_lines(&v6), "{flavor}");
        // The deny hook went on top, the accepting hook to the end, below
        // fail2ban's jump.
        let input = |save: &str| -> Vec<String> {
            rules(save)
                .into_iter()
                .filter(|l| l.starts_with("-A INPUT "))
                .map(|l| l.trim_start_matches("-A INPUT ").to_string())
                .collect()
        };
        let v4_input = input(&v4_applied);
        assert!(v4_input[0].ends_with("-j FWS-INPUT-DENY"), "{v4_input:?}");
        assert!(v4_input[1].ends_with("-j f2b-sshd"), "{v4_input:?}");
        assert!(v4_input[3].ends_with("-j FWS-INPUT"), "{v4_input:?}");
        let v6_input = input(&v6_applied);
        assert!(v6_input[1].ends_with("-j f2b-sshd"), "{v6_input:?}");
        assert!(v6_input[2].ends_with("-j FWS-INPUT"), "{v6_input:?}");

        // Someone moves the deny hook below fail2ban's jump: it stays there.
        let deny = &v4_input[0];
        netns.sh(&format!("$IPT -D INPUT 1 && $IPT -I INPUT 2 {deny}"));
        let moved = netns.save("ipv4", false);
        let again = case.run(&netns, &["apply"]).expect(0);
        assert_eq!(
            again.stdout, "no changes\n",
            "{flavor}: a moved deny hook is left alone"
        );
        assert_eq!(netns.save("ipv4", false), moved);
        // Someone moves the accepting hook to the top: it goes back to the
        // end, where nothing it accepts skips a foreign rule.
        let accept = &v4_input[3];
        netns.sh(&format!(
            "$IPT -D INPUT {accept} && $IPT -I INPUT 1 {accept}"
        ));
        let plan = case.run(&netns, &["plan"]).expect(2);
        assert!(
            plan.stdout
                .contains("hook moved to the end, below the 3 rules that came after it"),
            "{plan:?}"
        );
        case.run(&netns, &["apply"]).expect(0);
        assert_eq!(netns.save("ipv4", false), moved, "{flavor}");

        let reset = case.run(&netns, &["reset"]).expect(0);
        assert!(reset.stdout.contains("applied"), "{reset:?}");
        let [v4_reset, v6_reset] = netns.saves();
        assert!(!v4_reset.contains("FWS-") && !v6_reset.contains("FWS-"));
        assert!(!v4_reset.contains("fws:") && !v6_reset.contains("fws:"));
        assert!(v4_reset.contains(":INPUT ACCEPT") && v6_reset.contains(":FORWARD ACCEPT"));
        assert_eq!(foreign_lines(&v4_reset), foreign_lines(&v4), "{flavor}");
        assert_eq!(foreign_lines(&v6_reset), foreign_lines(&v6), "{flavor}");
        assert_eq!(
            case.run(&netns, &["reset"]).expect(0).stdout,
            "no changes: fwscript owns nothing here\n"
        );
    }
}

#[test]
fn drift_is_seen_by_plan_and_repaired_by_apply() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        let case = Case::new(SCRIPT);
        case.run(&netns, &["apply"]).expect(0);
        let clean = netns.saves();
        netns
            .sh("$IPT -D FWS-INPUT-ALLOW 1 && $IPT -A FWS-INPUT-ALLOW -p tcp --dport 23 -j ACCEPT");
        netns.sh("$IP6T -I FWS-INPUT-BASE 2 -j ACCEPT");
        let plan = case.run(&netns, &["plan"]).expect(2);
        assert!(
            plan.stdout.contains("drift, not written by fwscript"),
            "{plan:?}"
        );
        assert!(plan.stdout.contains("3 changes pending"), "{plan:?}");
        case.run(&netns, &["apply"]).expect(0);
        assert_eq!(netns.saves(), clean, "{flavor}");
        case.run(&netns, &["plan"]).expect(0);
    }
}

#[test]
fn a_broken_script_leaves_the_kernel_unchanged() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        let case = Case::new(SCRIPT);
        case.run(&netns, &["apply"]).expect(0);
        let before = netns.saves();
        case.edit("allow_tcp([80, 70000]);\n");
        let run = case.run(&netns, &["apply"]).expect(1);
        assert!(run.stderr.contains("fw.rhai:1"), "{run:?}");
        assert_eq!(netns.saves(), before, "{flavor}");
    }
}

/// A rule ip6tables refuses genuinely: `-m icmp` is IPv4's match.
fn rejected_by_ip6tables() -> OwnedRule {
    let id = RuleId::compute(Family::Ipv6, Table::Filter, "FWS-INPUT-ALLOW", "bad", 0);
    OwnedRule {
        spec: format!("-p icmp -m icmp --icmp-type 8 -m comment --comment \"fws:{id}\" -j ACCEPT"),
        id,
        origin: None,
    }
}

#[test]
fn a_rejected_ipv6_write_puts_ipv4_back() {
    if !kernel_available() {
        return;
    }
    for (flavor, kind) in FLAVORS.into_iter().zip([Flavor::Nft, Flavor::Legacy]) {
        let netns = Netns::new(flavor);
        let case = Case::new(SCRIPT);
        case.run(&netns, &["apply"]).expect(0);
        let before = netns.saves();

        case.edit(&SCRIPT.replace("443", "8443"));
        let plan = script::evaluate(&case.script).unwrap();
        let mut desired = Family::ALL.map(|f| render::ruleset(&plan, f)).to_vec();
        let chain = desired[1].tables.get_mut(&Table::Filter).unwrap();
        let allow = chain
            .chains
            .iter_mut()
            .find(|c| c.name == "FWS-INPUT-ALLOW")
            .unwrap();
        allow.rules.push(rejected_by_ip6tables());

        let backend = Iptables::new(kind, Some(&netns.name)).unwrap();
        let survey = apply::survey(&backend, desired, &KernelForms::default()).unwrap();
        let error = apply::apply(&backend, &survey).unwrap_err();
        match &error {
            ApplyError::Write {
                family, restored, ..
            } => {
                assert_eq!(*family, Family::Ipv6);
                assert_eq!(restored, &[Family::Ipv4], "{flavor}");
            }
            other => panic!("{flavor}: {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains("rejected line"), "{message}");
        assert!(message.contains("-m icmp --icmp-type 8"), "{message}");
        assert_eq!(netns.saves(), before, "{flavor}: both families as before");
    }
}

#[test]
fn a_held_xtables_lock_is_a_clear_error_not_a_hang() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("legacy");
    let case = Case::new(SCRIPT);
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("xtables.lock");
    std::fs::write(&lock, "").unwrap();
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&lock)
        .args(["sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .expect("flock runs");
    // Wait until the holder has the lock.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Command::new("flock")
        .args(["-n", "-x"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "flock never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }

    let started = Instant::now();
    let output = netns
        .command(env!("CARGO_BIN_EXE_fwscript"))
        .env("XTABLES_LOCKFILE", &lock)
        .env("FWSCRIPT_LOCK_WAIT", "1")
        .arg("--state-dir")
        .arg(&case.state)
        .args(["apply", case.script()])
        .output()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    let run = crate::common::netns::Run::from(output).expect(1);
    assert!(run.stderr.contains("xtables lock"), "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!netns.save("ipv4", false).contains("FWS-"));
}

#[test]
fn try_applies_in_a_namespace_of_its_own_and_removes_it() {
    if !kernel_available() {
        return;
    }
    let case = Case::new(SCRIPT);
    let output = Command::new(env!("CARGO_BIN_EXE_fwscript"))
        .arg("--state-dir")
        .arg(&case.state)
        .args(["try", case.script()])
        .output()
        .unwrap();
    let run = crate::common::netns::Run::from(output).expect(0);
    assert!(run.stdout.contains("# iptables-save"), "{run:?}");
    assert!(run.stdout.contains("# ip6tables-save"), "{run:?}");
    assert!(run
        .stdout
        .contains("-A FWS-INPUT-ALLOW -p tcp -m tcp --dport 443"));
    let name = run
        .stdout
        .split('`')
        .nth(1)
        .expect("the namespace is named");
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(name));
}
