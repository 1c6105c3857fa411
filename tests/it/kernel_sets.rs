//! Owned ipsets in real kernels, one throwaway namespace per case (ipsets
//! are per network namespace): a 100,000-address list applied as one set
//! and one rule; an edit of one line written as one `ipset` line, every
//! other entry, the rule and its counters untouched; drift in a set and in
//! its rule repaired; `reset` and `rollback`; a foreign ipset never
//! touched; the boot fallback with its sets; a host without the tool.

use std::path::{Path, PathBuf};

use crate::common::netns::{kernel_available, Netns, Run, FLAVORS};

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(script: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lists")).unwrap();
        std::fs::write(dir.path().join("fw.rhai"), script).unwrap();
        let case = Case { dir };
        // `ipset` that writes each `restore` input it runs to a log first.
        let real = ["/usr/sbin/ipset", "/sbin/ipset", "/usr/bin/ipset"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("ipset is installed");
        let wrapper = format!(
            "#!/bin/sh\nif [ \"$1\" = restore ]; then\n  tee -a {log} | {real} \"$@\"\n  status=$?\n  echo '--' >> {log}\n  exit $status\nfi\nexec {real} \"$@\"\n",
            log = case.path("ipset-restores.log").display()
        );
        std::fs::write(case.path("ipset"), wrapper).unwrap();
        std::process::Command::new("chmod")
            .args(["755", case.path("ipset").to_str().unwrap()])
            .status()
            .unwrap();
        case
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn list(&self, addresses: &[String]) {
        std::fs::write(self.path("lists/blocklist.txt"), addresses.join("\n")).unwrap();
    }

    /// `fwscript ARGS [fw.rhai]` inside the namespace, through the logging
    /// `ipset`.
    fn run(&self, netns: &Netns, args: &[&str]) -> Run {
        self.run_with(netns, args, &self.path("ipset"))
    }

    fn run_with(&self, netns: &Netns, args: &[&str], ipset: &Path) -> Run {
        let mut command = netns.command(env!("CARGO_BIN_EXE_fwscript"));
        command
            .arg("--state-dir")
            .arg(self.path("state"))
            .args(args)
            .env("FWSCRIPT_IPSET", ipset)
            .current_dir(self.dir.path());
        if matches!(args.first(), Some(&("apply" | "plan" | "try"))) {
            command.arg("fw.rhai");
        }
        Run::from(command.output().unwrap())
    }

    /// The `ipset restore` inputs fwscript ran, in order.
    fn restores(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.path("ipset-restores.log")).unwrap_or_default();
        log.split("--\n")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

const SCRIPT: &str = "allow_tcp(22);\nblock(address_list(\"lists/blocklist.txt\"));\n";

/// `count` distinct IPv4 hosts, 10.0.0.1 first, and one IPv6 network.
fn addresses(count: u32) -> Vec<String> {
    let mut list: Vec<String> = (1..=count)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    list.push("2001:db8:bad::/48".into());
    for i in 0..20 {
        list.push(format!("2001:db8:{i:x}::/64"));
    }
    list
}

/// fwscript's sets and their entries, sorted, as `ipset save` prints them.
fn owned_sets(netns: &Netns) -> Vec<String> {
    let mut lines: Vec<String> = netns
        .sh("ipset save")
        .lines()
        .filter(|l| l.starts_with("add fws-"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn set_names(netns: &Netns) -> Vec<String> {
    netns
        .sh("ipset list -n")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The IPv4 set's name, from the rule that matches it.
fn v4_set(netns: &Netns) -> String {
    let save = netns.save("ipv4", false);
    let rule = save
        .lines()
        .find(|l| l.contains("--match-set"))
        .unwrap_or_else(|| panic!("no set rule: {save}"));
    let at = rule.find("--match-set ").unwrap() + "--match-set ".len();
    rule[at..].split(' ').next().unwrap().to_string()
}

/// The set rule's line with its counters (`-c`).
fn counted(netns: &Netns) -> String {
    netns
        .save("ipv4", true)
        .lines()
        .find(|l| l.contains("--match-set"))
        .unwrap()
        .to_string()
}

#[test]
fn a_100000_address_list_is_one_set_and_an_edit_of_one_line_writes_one_line() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        // The full size once; the other backend's rules are the same one
        // rule, so a smaller list proves the same there.
        let count = if flavor == "nft" { 100_000 } else { 7_000 };
        let netns = Netns::new(flavor);
        let case = Case::new(SCRIPT);
        let list = addresses(count);
        case.list(&list);
        let first = case.run(&netns, &["apply"]).expect(0);
        assert!(
            first.stdout.contains("ipv4 ipset\n  create set fws-"),
            "{first:?}"
        );
        let name = v4_set(&netns);
        let terse = netns.sh(&format!("ipset list -t {name}"));
        assert!(
            terse.contains(&format!("Number of entries: {count}\n")),
            "{terse}"
        );
        assert!(terse.contains("Type: hash:net\n"), "{terse}");
        assert!(terse.contains("family inet "), "{terse}");
        let v4 = netns.save("ipv4", false);
        assert_eq!(v4.matches("--match-set").count(), 1, "{flavor}: one rule");
        assert!(
            v4.lines().count() < 40,
            "{flavor}: {} lines",
            v4.lines().count()
        );
        let v6 = netns.save("ipv6", false);
        assert_eq!(v6.matches("--match-set fws-").count(), 1, "{flavor}: {v6}");
        assert_eq!(case.restores().len(), 1);
        assert_eq!(case.restores()[0].lines().count(), 2 + count as usize + 21);

        // A packet from a listed address is counted by the set's rule: a
        // listed address on loopback, sent to itself.
        netns.sh("ip addr add 10.0.0.1/32 dev lo");
        netns.sh("bash -c 'for i in 1 2; do echo x > /dev/udp/10.0.0.1/9; done'");
        let before = counted(&netns);
        assert!(!before.starts_with("[0:0]"), "{flavor}: {before}");
        let entries = owned_sets(&netns);

        // One line more in the file.
        let mut more = list.clone();
        more.push("198.51.100.9".into());
        case.list(&more);
        let plan = case.run(&netns, &["plan"]).expect(2);
        assert!(
            plan.stdout.contains(&format!(
                "  +1 \u{2212}0 entries in set {name} (lists/blocklist.txt)\n      + 198.51.100.9\n"
            )),
            "{plan:?}"
        );
        assert!(plan.stdout.ends_with("1 change pending\n"), "{plan:?}");
        let json = case.run(&netns, &["plan", "--json"]).expect(2);
        let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(report["changed"], false, "plan writes nothing");
        assert_eq!(report["in_sync"], false);
        assert_eq!(report["sets"][0]["action"], "update_set", "{report}");
        assert_eq!(report["sets"][0]["set"], name.as_str());
        assert_eq!(report["sets"][0]["added"][0], "198.51.100.9/32");
        assert_eq!(report["sets"][0]["source"]["list"], "lists/blocklist.txt");
        let edit = case.run(&netns, &["apply"]).expect(0);
        assert!(edit.stdout.ends_with("applied 1 change\n"), "{edit:?}");
        assert_eq!(
            case.restores().last().unwrap(),
            &format!("add {name} 198.51.100.9\n"),
            "{flavor}: exactly one ipset line"
        );
        assert_eq!(
            counted(&netns),
            before,
            "{flavor}: the rule and its counters stay"
        );
        let after = owned_sets(&netns);
        let mut expected = entries.clone();
        expected.push(format!("add {name} 198.51.100.9"));
        expected.sort();
        assert_eq!(after, expected, "{flavor}: every other entry stays");

        // And one line less.
        case.list(&list);
        case.run(&netns, &["apply"]).expect(0);
        assert_eq!(
            case.restores().last().unwrap(),
            &format!("del {name} 198.51.100.9\n")
        );
        assert_eq!(owned_sets(&netns), entries);
        assert_eq!(counted(&netns), before);
        let again = case.run(&netns, &["apply"]).expect(0);
        assert_eq!(again.stdout, "no changes\n");
    }
}

#[test]
fn reset_removes_the_sets_rollback_brings_them_back_and_a_foreign_set_stays() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        netns.sh(
            "ipset create other hash:ip && ipset add other 192.0.2.1 && ipset add other 192.0.2.2",
        );
        let foreign = netns.sh("ipset save other");
        let case = Case::new(SCRIPT);
        case.list(&addresses(500));
        case.run(&netns, &["apply"]).expect(0);
        let entries = owned_sets(&netns);
        let names = set_names(&netns);
        assert_eq!(names.len(), 3, "{flavor}: {names:?}");
        assert!(names.contains(&"other".to_string()));

        let reset = case.run(&netns, &["reset"]).expect(0);
        assert!(reset.stdout.contains("destroy set fws-"), "{reset:?}");
        assert_eq!(set_names(&netns), ["other"], "{flavor}");
        assert!(!netns.save("ipv4", false).contains("fws"), "{flavor}");
        assert_eq!(netns.sh("ipset save other"), foreign);

        case.run(&netns, &["rollback"]).expect(0);
        assert_eq!(owned_sets(&netns), entries, "{flavor}: the sets are back");
        assert_eq!(netns.save("ipv4", false).matches("--match-set").count(), 1);
        assert_eq!(netns.sh("ipset save other"), foreign);
        // The kernel is the script's again: nothing to do.
        assert_eq!(
            case.run(&netns, &["apply"]).expect(0).stdout,
            "no changes\n"
        );
        assert_eq!(netns.sh("ipset save other"), foreign);
    }
}

#[test]
fn entries_and_a_set_rule_changed_by_hand_are_drift_and_repaired() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        let case = Case::new(SCRIPT);
        case.list(&addresses(50));
        case.run(&netns, &["apply"]).expect(0);
        let name = v4_set(&netns);
        let entries = owned_sets(&netns);
        let rules = netns.save("ipv4", false);

        netns.sh(&format!(
            "ipset add {name} 192.0.2.66 && ipset del {name} 10.0.0.3"
        ));
        let plan = case.run(&netns, &["plan"]).expect(2);
        assert!(
            plan.stdout.contains(&format!(
                "+1 \u{2212}1 entries in set {name} (lists/blocklist.txt)\n      \u{2212} 192.0.2.66\n      + 10.0.0.3\n"
            )),
            "{plan:?}"
        );
        case.run(&netns, &["apply"]).expect(0);
        assert_eq!(owned_sets(&netns), entries, "{flavor}");

        // The rule matching the set, turned to match destinations instead,
        // its id comment kept.
        let rule = rules
            .lines()
            .find(|l| l.contains("--match-set"))
            .unwrap()
            .to_string();
        let chain = rule.split(' ').nth(1).unwrap().to_string();
        let spec = rule
            .splitn(3, ' ')
            .nth(2)
            .unwrap()
            .replace(" src ", " dst ");
        netns.sh(&format!("$IPT -R {chain} 1 {spec}"));
        let plan = case.run(&netns, &["plan"]).expect(2);
        assert!(
            plan.stdout.contains("(changed behind fwscript's back)"),
            "{flavor}: {plan:?}"
        );
        case.run(&netns, &["apply"]).expect(0);
        assert_eq!(netns.save("ipv4", false), rules, "{flavor}");
    }
}

#[test]
fn the_boot_fallback_brings_the_sets_back_with_the_rules() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("nft");
    let case = Case::new(SCRIPT);
    case.list(&addresses(300));
    case.run(&netns, &["apply"]).expect(0);
    let entries = owned_sets(&netns);
    let rules = netns.saves();
    // The script breaks, the machine reboots: the kernel starts empty.
    std::fs::write(case.path("fw.rhai"), "allow_tcp(;\n").unwrap();
    netns.reboot();
    assert!(set_names(&netns).is_empty());
    let boot = case.run(&netns, &["apply", "--boot"]).expect(1);
    assert!(boot.stderr.contains("the last good ruleset"), "{boot:?}");
    assert_eq!(owned_sets(&netns), entries);
    assert_eq!(netns.saves(), rules);
}

#[test]
fn try_shows_the_sets_it_made() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("nft");
    let case = Case::new(SCRIPT);
    case.list(&addresses(40));
    let tried = case.run(&netns, &["try"]).expect(0);
    assert!(
        tried.stdout.contains("ipv4 ipset\n  create set fws-"),
        "{tried:?}"
    );
    assert!(
        tried.stdout.contains("# ipset list -t\nName: fws-"),
        "{tried:?}"
    );
    assert!(
        tried.stdout.contains("Number of entries: 40\n"),
        "{tried:?}"
    );
    // Its own namespace: this one has no sets.
    assert!(set_names(&netns).is_empty());
}

#[test]
fn without_the_ipset_tool_a_script_with_sets_changes_nothing_and_says_what_to_install() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        let case = Case::new(SCRIPT);
        case.list(&addresses(40));
        let missing = case.path("no-such-ipset");
        let before = netns.saves();
        let refused = case.run_with(&netns, &["apply"], &missing).expect(1);
        assert!(
            refused.stderr.contains("the script keeps the address list lists/blocklist.txt in ipsets, and this host cannot make them"),
            "{refused:?}"
        );
        assert!(
            refused.stderr.contains("install the `ipset` package"),
            "{refused:?}"
        );
        assert!(
            refused.stderr.contains("nothing was changed"),
            "{refused:?}"
        );
        assert_eq!(netns.saves(), before, "{flavor}: nothing changed");
        // A list short enough to stay rules needs no ipset.
        case.list(&addresses(8)[..8]);
        case.run_with(&netns, &["apply"], &missing).expect(0);
        assert!(
            netns.save("ipv4", false).contains("-s 10.0.0.8/32"),
            "{flavor}"
        );
    }
}
