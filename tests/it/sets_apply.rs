//! Owned ipsets through apply, against the in-memory kernel (which refuses
//! a rule matching a set that does not exist and the destruction of a set
//! a rule still matches, as the kernel does): sets made before their rules
//! and destroyed after, an edit of one address written as one line, the
//! put-back when a later write fails, drift in a set's entries, a foreign
//! set left alone, and a host without the ipset tool.

use std::path::Path;

use fwscript::apply::{self, ApplyError, Survey};
use fwscript::backend::fake::Fake;
use fwscript::backend::Backend;
use fwscript::forms::KernelForms;
use fwscript::netfilter::Family;
use fwscript::ruleset::Ruleset;
use fwscript::{script, transaction};

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lists")).unwrap();
        std::fs::write(
            dir.path().join("fw.rhai"),
            "allow_tcp(22);\nblock(address_list(\"lists/block.txt\"));\n",
        )
        .unwrap();
        Setup { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The script's rulesets with the list holding `addresses`.
    fn rulesets(&self, addresses: &[String]) -> Vec<Ruleset> {
        std::fs::write(self.path().join("lists/block.txt"), addresses.join("\n")).unwrap();
        let plan = script::evaluate(&self.path().join("fw.rhai")).unwrap_or_else(|e| panic!("{e}"));
        transaction::desired(&plan)
    }
}

fn addresses(n: u32) -> Vec<String> {
    let mut list: Vec<String> = (0..n)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    list.push("2001:db8:bad::/48".into());
    list
}

fn survey(backend: &dyn Backend, desired: Vec<Ruleset>) -> Result<Survey, ApplyError> {
    apply::survey(backend, desired, &KernelForms::default())
}

fn run(backend: &dyn Backend, desired: Vec<Ruleset>) -> Result<Survey, ApplyError> {
    let survey = survey(backend, desired)?;
    apply::apply(backend, &survey)?;
    Ok(survey)
}

/// The one owned IPv4 set's name.
fn set_name(desired: &[Ruleset]) -> String {
    desired[0].sets[0].name.clone()
}

fn foreign_sets(fake: &Fake) {
    fake.restore_sets(
        "create other hash:ip family inet maxelem 65536\nadd other 192.0.2.1\n\
         create f2b-sshd hash:ip family inet maxelem 65536\nadd f2b-sshd 203.0.113.9\n",
    )
    .unwrap();
}

#[test]
fn sets_come_before_their_rules_and_an_edit_of_one_address_is_one_line() {
    let setup = Setup::new();
    let fake = Fake::new();
    let list = addresses(7_000);
    let desired = setup.rulesets(&list);
    let name = set_name(&desired);
    // The fake refuses a rule whose set does not exist: the order is right
    // when this succeeds.
    run(&fake, desired.clone()).unwrap();
    assert_eq!(fake.set_entries(&name).unwrap().len(), 7_000);
    assert_eq!(fake.set_restores().len(), 1);
    assert!(fake.set_restores()[0].starts_with(&format!("create {name} hash:net family inet ")));
    let rule_writes = fake.restores().len();

    // In sync: read once, nothing written.
    let (saves, _) = fake.set_reads();
    let again = survey(&fake, desired).unwrap();
    assert!(again.in_sync());
    assert!(apply::apply(&fake, &again).unwrap().is_empty());
    assert_eq!(fake.set_reads().0, saves + 1);
    assert_eq!(fake.set_restores().len(), 1);

    // One address more: one `add` line, no rule written, and the change
    // says so.
    let mut more = list.clone();
    more.push("198.51.100.9".into());
    let edit = run(&fake, setup.rulesets(&more)).unwrap();
    assert_eq!(
        fake.set_restores().last().unwrap(),
        &format!("add {name} 198.51.100.9\n")
    );
    assert_eq!(fake.restores().len(), rule_writes, "no rule was written");
    let shown: Vec<String> = edit.set_changes().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [format!(
            "+1 \u{2212}0 entries in set {name} (lists/block.txt)"
        )]
    );
    assert_eq!(edit.change_count(), 1);
    // One less: one `del` line.
    run(&fake, setup.rulesets(&list)).unwrap();
    assert_eq!(
        fake.set_restores().last().unwrap(),
        &format!("del {name} 198.51.100.9\n")
    );
    assert_eq!(fake.set_entries(&name).unwrap().len(), 7_000);
}

#[test]
fn sets_no_rule_uses_are_destroyed_after_the_rules_and_foreign_sets_stay() {
    let setup = Setup::new();
    let fake = Fake::new();
    foreign_sets(&fake);
    let desired = setup.rulesets(&addresses(20));
    let name = set_name(&desired);
    run(&fake, desired).unwrap();
    // A reset: nothing owned. The fake refuses to destroy a set a rule
    // still matches, so this proves the rules went first.
    let reset = run(&fake, Family::ALL.map(Ruleset::empty).to_vec()).unwrap();
    assert!(reset
        .set_changes()
        .any(|c| c.to_string() == format!("destroy set {name} (20 entries)")));
    assert_eq!(fake.set_names(), ["f2b-sshd", "other"]);
    assert_eq!(fake.set_entries("other").unwrap(), ["192.0.2.1"]);
    assert_eq!(fake.set_entries("f2b-sshd").unwrap(), ["203.0.113.9"]);
    // A list shrunk below the line: its rules come back one per address
    // and the set goes.
    run(&fake, setup.rulesets(&addresses(20))).unwrap();
    run(&fake, setup.rulesets(&addresses(3))).unwrap();
    assert!(fake.set_entries(&name).is_none());
    assert_eq!(fake.set_names(), ["f2b-sshd", "other"]);
}

#[test]
fn a_failed_rule_write_puts_the_sets_back() {
    let setup = Setup::new();
    let fake = Fake::new();
    let desired = setup.rulesets(&addresses(20));
    let name = set_name(&desired);
    run(&fake, desired).unwrap();
    let before = fake.set_entries(&name).unwrap();
    let rules_before = [fake.state(Family::Ipv4), fake.state(Family::Ipv6)];
    // An edit of the list and of the rules; the IPv6 rules are refused.
    std::fs::write(
        setup.path().join("fw.rhai"),
        "allow_tcp([22, 80]);\nblock(address_list(\"lists/block.txt\"));\n",
    )
    .unwrap();
    let mut list = addresses(20);
    list.push("198.51.100.9".into());
    let desired = setup.rulesets(&list);
    fake.fail_next_restore(Family::Ipv6);
    let error = run(&fake, desired).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(&error, ApplyError::Write { family: Family::Ipv6, restored, sets_restored: true, .. } if restored == &[Family::Ipv4]),
        "{error:?}"
    );
    assert!(
        message.ends_with("ipv4 and the ipsets put back as they were"),
        "{message}"
    );
    assert_eq!(fake.set_entries(&name).unwrap(), before);
    assert_eq!(fake.state(Family::Ipv4), rules_before[0]);
    assert_eq!(fake.state(Family::Ipv6), rules_before[1]);
}

#[test]
fn a_set_write_refused_half_way_is_put_back() {
    let setup = Setup::new();
    let fake = Fake::new();
    foreign_sets(&fake);
    // The first apply's set restore is refused at its last line, after
    // every line before it was done (ipset restore is not atomic).
    fake.fail_next_set_restore();
    let error = run(&fake, setup.rulesets(&addresses(20))).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            &error,
            ApplyError::WriteSets {
                sets_restored: true,
                set: Some(_),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        message.contains("(lists/block.txt)") || message.contains("from lists/block.txt"),
        "{message}"
    );
    assert!(
        message.ends_with("the ipsets put back as they were"),
        "{message}"
    );
    assert_eq!(
        fake.set_names(),
        ["f2b-sshd", "other"],
        "the half-made set is gone"
    );
    assert!(
        fake.state(Family::Ipv4).tables.is_empty(),
        "no rule written"
    );
}

#[test]
fn entries_changed_by_hand_are_drift_and_repaired() {
    let setup = Setup::new();
    let fake = Fake::new();
    let desired = setup.rulesets(&addresses(20));
    let name = set_name(&desired);
    run(&fake, desired.clone()).unwrap();
    let before = fake.set_entries(&name).unwrap();
    fake.restore_sets(&format!("add {name} 192.0.2.66\ndel {name} 10.0.0.3\n"))
        .unwrap();
    let drift = survey(&fake, desired.clone()).unwrap();
    let shown: Vec<String> = drift.set_changes().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [format!(
            "+1 \u{2212}1 entries in set {name} (lists/block.txt)"
        )]
    );
    apply::apply(&fake, &drift).unwrap();
    assert_eq!(fake.set_entries(&name).unwrap(), before);
    assert!(survey(&fake, desired).unwrap().in_sync());
}

#[test]
fn a_set_of_another_kind_under_an_owned_name_is_refused() {
    let setup = Setup::new();
    let fake = Fake::new();
    let desired = setup.rulesets(&addresses(20));
    let name = set_name(&desired);
    fake.restore_sets(&format!(
        "create {name} hash:ip family inet maxelem 65536\n"
    ))
    .unwrap();
    let survey = survey(&fake, desired).unwrap();
    let error = apply::apply(&fake, &survey).unwrap_err();
    assert!(matches!(error, ApplyError::SetConflict { .. }), "{error:?}");
    assert!(error.to_string().contains("nothing was changed"), "{error}");
    // What `--json` reports as `changed`: nothing was written.
    assert!(error.wrote_nothing());
    assert!(fake.state(Family::Ipv4).tables.is_empty());
    assert!(fake.set_restores().len() == 1, "only the test's own write");
}

#[test]
fn a_set_grown_past_its_size_is_made_anew_and_swapped_in() {
    let setup = Setup::new();
    let fake = Fake::new();
    let desired = setup.rulesets(&addresses(20));
    let name = set_name(&desired);
    // Someone shrank it: made anew with room for only 25.
    fake.restore_sets(&format!("create {name} hash:net family inet maxelem 25\n"))
        .unwrap();
    run(&fake, desired.clone()).unwrap();
    run(&fake, setup.rulesets(&addresses(30))).unwrap();
    let last = fake.set_restores().last().unwrap().clone();
    assert!(
        last.starts_with(&format!("create {name}-new hash:net family inet ")),
        "{last}"
    );
    assert!(
        last.ends_with(&format!("swap {name}-new {name}\ndestroy {name}-new\n")),
        "{last}"
    );
    assert_eq!(fake.set_entries(&name).unwrap().len(), 30);
    assert!(survey(&fake, setup.rulesets(&addresses(30)))
        .unwrap()
        .in_sync());
}

#[test]
fn without_the_ipset_tool_only_a_script_with_sets_is_refused() {
    let setup = Setup::new();
    let fake = Fake::new().without_ipset();
    let error = survey(&fake, setup.rulesets(&addresses(20))).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ApplyError::NoIpset { .. }), "{error:?}");
    assert!(
        message.contains("the address list lists/block.txt"),
        "{message}"
    );
    assert!(message.contains("install the `ipset` package"), "{message}");
    assert!(message.ends_with("nothing was changed"), "{message}");
    assert!(fake.restores().is_empty());
    // Eight addresses are rules: no set, no tool needed.
    run(&fake, setup.rulesets(&addresses(8))).unwrap();
    assert!(!fake.state(Family::Ipv4).tables.is_empty());
}
