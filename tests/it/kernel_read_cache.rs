//! The kept kernel read (docs/design.md, "Reading the kernel"): on
//! nf_tables an apply or plan whose kernel is still at the generation of
//! the last read takes the rules from the state folder instead of running
//! `iptables-save`; any commit in between — a neighbour's rule, a rule
//! changed behind fwscript's back — or another network namespace (a
//! reboot, a container started again) makes it read the kernel. Legacy has
//! no generation and always reads. Real kernels, both backends.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::case::Case;
use crate::common::netns::{kernel_available, Netns, Run, FLAVORS};

const SCRIPT: &str = "allow_tcp([22, 80]);\nallow_udp(53);\n";

/// The rule saves a `-vv` run made before writing (`ipset save` is always
/// made: sets have no generation).
fn rule_saves(run: &Run) -> usize {
    run.stderr
        .lines()
        .take_while(|l| !l.contains("-restore"))
        .filter(|l| l.contains("DEBUG running") && l.contains("tables-") && l.contains("-save"))
        .count()
}

fn kept(run: &Run) -> bool {
    run.stderr
        .contains("as read before: nf_tables has not changed since")
}

#[test]
fn an_unchanged_kernel_is_not_read_again_and_any_change_is_seen() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        let case = Case::new(SCRIPT);
        case.run(&netns, &["-vv", "apply"]).expect(0);
        let again = case.run(&netns, &["-vv", "apply"]).expect(0);
        assert!(again.stdout.ends_with("no changes\n"), "{}", again.stdout);
        match flavor {
            "nft" => {
                assert!(kept(&again), "{}", again.stderr);
                assert_eq!(rule_saves(&again), 0, "{}", again.stderr);
                let plan = case.run(&netns, &["-vv", "plan"]).expect(0);
                assert!(kept(&plan) && rule_saves(&plan) == 0, "{}", plan.stderr);
            }
            _ => {
                assert!(!kept(&again), "{}", again.stderr);
                assert_eq!(rule_saves(&again), 2, "{}", again.stderr);
                assert!(!case.state.join("kernel-read.ipv4").exists());
            }
        }

        // Behind fwscript's back: an owned rule deleted, and an admin's
        // ACCEPT above the accepting hook. Both are seen at once.
        let v4 = netns.save("ipv4", false);
        let owned = v4
            .lines()
            .find(|l| l.contains("--dport 80 "))
            .expect("the port 80 rule");
        netns.sh(&format!("$IPT -D {}", &owned[3..]));
        netns.sh("$IPT -I INPUT 1 -s 198.51.100.9/32 -j ACCEPT");
        let repair = case.run(&netns, &["-vv", "apply"]).expect(0);
        assert_eq!(rule_saves(&repair), 2, "read again: {}", repair.stderr);
        assert!(
            repair.stdout.contains("applied 1 change"),
            "{}",
            repair.stdout
        );
        assert!(
            format!("{}{}", repair.stdout, repair.stderr).contains("198.51.100.9"),
            "the neighbour's ACCEPT is warned about: {}",
            repair.stderr
        );
        assert!(netns.save("ipv4", false).contains("--dport 80 "));

        // The repair's record is what the next command reads: in sync.
        let settled = case.run(&netns, &["-vv", "apply"]).expect(0);
        assert!(
            settled.stdout.ends_with("no changes\n"),
            "{}",
            settled.stdout
        );
        assert_eq!(kept(&settled), flavor == "nft", "{}", settled.stderr);
    }
}

#[test]
fn another_network_namespace_with_the_same_state_folder_is_read_and_written() {
    if !kernel_available() {
        return;
    }
    // A container started again, or a reboot: a new namespace, the state
    // folder kept. Its kernel is empty, whatever generation it is at.
    let netns = Netns::new("nft");
    let case = Case::new(SCRIPT);
    case.run(&netns, &["-vv", "apply"]).expect(0);
    netns.reboot();
    let there = case.run(&netns, &["-vv", "apply"]).expect(0);
    assert!(!kept(&there), "{}", there.stderr);
    assert!(there.stdout.contains("applied"), "{}", there.stdout);
    assert!(netns.save("ipv4", false).contains("--dport 80 "));
}

#[test]
fn an_edit_leaves_its_own_record_and_the_next_apply_trusts_only_that() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("nft");
    let case = Case::new(SCRIPT);
    case.run(&netns, &["-vv", "apply"]).expect(0);
    case.edit(&format!("{SCRIPT}allow_tcp(443);\n"));
    let edit = case.run(&netns, &["-vv", "apply"]).expect(0);
    assert!(edit.stdout.contains("applied"), "{}", edit.stdout);
    // The kernel as the edit left it comes from the edit's record, and it
    // is what a save prints.
    let next = case.run(&netns, &["-vv", "plan"]).expect(0);
    assert!(kept(&next) && rule_saves(&next) == 0, "{}", next.stderr);
    let kept_text = std::fs::read_to_string(case.state.join("kernel-read.ipv4")).unwrap();
    let saved = netns.save("ipv4", false);
    let rules = |text: &str| -> Vec<String> {
        let mut rules: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("-A ") || l.starts_with(':'))
            // A built-in chain's packet counters are the kernel's to move.
            .map(|l| match l.starts_with(':') {
                true => l.split_whitespace().take(2).collect::<Vec<_>>().join(" "),
                false => l.to_string(),
            })
            .collect();
        rules.sort();
        rules
    };
    assert_eq!(rules(&kept_text), rules(&saved));
}

/// A table made with nft's `owner` flag vanishes when the process that made
/// it closes its socket, and the kernel does not move the generation on
/// for that: a read kept while such a table was there would show its rules
/// for good. A neighbour's compatible `mangle` table, owned by an `nft -i`.
#[test]
fn a_table_that_vanishes_with_its_owner_is_never_kept() {
    if !kernel_available() {
        return;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "nft missing");
        eprintln!("SKIP: nft missing");
        return;
    }
    let netns = Netns::new("nft");
    let case = Case::new(SCRIPT);
    case.run(&netns, &["-vv", "apply"]).expect(0);
    let mut owner = netns
        .command("nft")
        .arg("-i")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nft runs");
    let mut input = owner.stdin.take().unwrap();
    input
        .write_all(
            b"add table ip mangle { flags owner; }\n\
              add chain ip mangle PREROUTING { type filter hook prerouting priority -150; policy accept; }\n\
              add rule ip mangle PREROUTING counter accept\n",
        )
        .unwrap();
    let phantom = "-A PREROUTING -j ACCEPT";
    poll(
        || netns.save("ipv4", false).contains(phantom),
        "the owned table",
    );
    // Read while the owned table is there: twice, so a kept read is used.
    case.run(&netns, &["-vv", "apply"]).expect(0);
    case.run(&netns, &["-vv", "apply"]).expect(0);
    drop(input);
    owner.wait().unwrap();
    poll(
        || !netns.save("ipv4", false).contains(phantom),
        "the owner gone",
    );

    let plan = case.run(&netns, &["-vv", "plan"]).expect(0);
    assert_eq!(rule_saves(&plan), 2, "read again: {}", plan.stderr);
    let kept_text =
        std::fs::read_to_string(case.state.join("kernel-read.ipv4")).unwrap_or_default();
    assert!(!kept_text.contains(phantom), "{kept_text}");
    // Once gone, reads are kept again.
    case.run(&netns, &["-vv", "apply"]).expect(0);
    assert!(kept(&case.run(&netns, &["-vv", "plan"]).expect(0)));
}

fn poll(done: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "waited for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A big family's edit reads back only the chains it touched. A table the
/// write made (nat, for `masquerade`) is then known only in those chains,
/// not as a save prints it: the next command reads the kernel whole, and
/// after that keeps reads again.
#[test]
fn a_table_a_write_makes_is_read_whole_next_time() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("nft");
    let case = Case::new(SCRIPT);
    let big = "for p in 1..=1500 { allow_tcp(p); }\n";
    case.edit(big);
    case.run(&netns, &["-vv", "apply"]).expect(0);
    case.edit(&format!("{big}masquerade(\"fws-out\");\n"));
    let nat = case.run(&netns, &["-vv", "apply"]).expect(0);
    assert!(nat.stdout.contains("applied"), "{}", nat.stdout);
    let next = case.run(&netns, &["-vv", "apply"]).expect(0);
    assert!(next.stdout.ends_with("no changes\n"), "{}", next.stdout);
    assert!(!kept(&next), "{}", next.stderr);
    assert_eq!(rule_saves(&next), 2, "{}", next.stderr);
    let again = case.run(&netns, &["-vv", "plan"]).expect(0);
    assert!(kept(&again), "{}", again.stderr);
}
