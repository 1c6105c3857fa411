//! The import of whole rulesets: the fixtures of tests/fixtures/import,
//! each imported, evaluated, and held against the original packet by
//! packet with `explain`.

use std::net::IpAddr;

use super::*;
use crate::explain::{self, Verdict};
use crate::plan::Plan;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/import/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn source(family: Family, name: &str, text: &str) -> Source {
    Source {
        family,
        name: name.to_string(),
        text: text.to_string(),
    }
}

/// The script evaluated by the script stage, as `apply` would.
fn evaluate(script: &str) -> Plan {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imported.rhai");
    std::fs::write(&path, script).unwrap();
    crate::script::evaluate(&path).unwrap_or_else(|e| panic!("{e}\n{script}"))
}

/// Whether the deny stage comes before the baseline (the kernel layout of
/// the design contract, in which a `block()` also cuts established
/// connections), which the import places rules for. With the baseline
/// first, packets the baseline accepts (loopback, established) are not
/// compared.
fn deny_first() -> bool {
    let plan = evaluate(r#"block("192.0.2.9");"#);
    let packet = explain::Packet {
        src: Some("192.0.2.9".parse().unwrap()),
        state: crate::plan::CtState::Established,
        ..explain::Packet::new_tcp(Family::Ipv4, 22)
    };
    explain::explain(&plan, &packet, Hook::Input).verdict != Verdict::Accept
}

/// Imports `sources`, evaluates the script, and checks that `explain` on
/// it gives the original's verdict for every packet of the grid.
fn check(sources: &[Source], mirrored: &[Family]) -> Imported {
    let imported = import(sources, mirrored).unwrap();
    placed_agrees(sources);
    let plan = evaluate(&imported.script);
    for source in sources {
        let rules = FamilyRules::read(source.family, &source.text).unwrap();
        let extra: Vec<IpAddr> = vec!["203.0.113.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        let mut wrong = Vec::new();
        let mut grid = reference::grid(&rules, &extra);
        if !deny_first() {
            grid.retain(|p| {
                p.state == crate::plan::CtState::New && p.in_iface.as_deref() != Some("lo")
            });
        }
        assert!(grid.len() > 100);
        for packet in &grid {
            let original = reference::verdict(&rules, Hook::Input, packet);
            let explained = explain::explain(&plan, packet, Hook::Input);
            if explained.verdict != original {
                wrong.push(format!(
                    "{packet:?}: original {original:?}, imported {:?} by {}",
                    explained.verdict, explained.decided_by
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} packets differ, e.g.\n{}\n{}",
            wrong.len(),
            grid.len(),
            wrong[..wrong.len().min(5)].join("\n"),
            imported.script
        );
    }
    imported
}

/// The import's placement, evaluated in the stage order it assumes (deny
/// first), gives the original's verdict on the whole grid.
fn placed_agrees(sources: &[Source]) {
    let rulesets: Vec<FamilyRules> = sources
        .iter()
        .map(|s| FamilyRules::read(s.family, &s.text).unwrap())
        .collect();
    let checked = rulesets.iter().map(|r| r.family).collect();
    let placement = placement(&rulesets, &checked);
    for rules in &rulesets {
        let extra: Vec<IpAddr> = vec!["203.0.113.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        let grid = reference::grid(rules, &extra);
        let wrong: Vec<String> = grid
            .iter()
            .filter_map(|packet| {
                let original = reference::verdict(rules, Hook::Input, packet);
                let placed = reference::placed_verdict(&placement, rules.family, Hook::Input, packet);
                (original != placed).then(|| format!("{packet:?}: original {original:?}, placed {placed:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{} differ, e.g.\n{}", wrong.len(), wrong[..wrong.len().min(5)].join("\n"));
    }
}

fn calls(script: &str) -> Vec<&str> {
    script
        .lines()
        .filter(|l| !l.starts_with("//") && !l.trim().is_empty())
        .collect()
}

#[test]
fn the_tutorial_reads_like_the_tutorial() {
    let imported = check(
        &[source(Family::Ipv4, "tutorial.v4", &fixture("tutorial.v4"))],
        &[Family::Ipv6],
    );
    let script = &imported.script;
    let calls = calls(script);
    assert!(calls.contains(&"drop_scans();"), "{script}");
    assert!(
        calls.contains(&"allow_tcp([80, 443, 25, 465, 110, 995, 143, 993]);"),
        "{script}"
    );
    assert!(calls.contains(&r#"ssh_from("203.0.113.7");"#), "{script}");
    assert!(calls.contains(&r#"policy("forward", "accept");"#), "{script}");
    // The tutorial accepts invalid packets to its open ports and drops
    // unsolicited ICMP errors: the import keeps both.
    assert!(
        calls.contains(&"baseline(#{ invalid: false, icmp: false });"),
        "{script}"
    );
    assert_eq!(imported.summary.not_imported, 0);
    assert_eq!(imported.summary.imported, 14);
    assert!(imported.warnings.last().unwrap().starts_with("import: 14 rules read"));
}

#[test]
fn the_readers_script_keeps_its_limit_and_says_what_it_cannot() {
    let imported = check(
        &[source(Family::Ipv4, "reader.v4", &fixture("reader.v4"))],
        &[Family::Ipv6],
    );
    let script = &imported.script;
    let calls = calls(script);
    assert!(calls.contains(&"limit_tcp(22, #{ hits: 2 });"), "{script}");
    assert!(
        script.contains("// NOT IMPORTED: -A INPUT -p icmp -f -j DROP"),
        "{script}"
    );
    assert_eq!(imported.summary.not_imported, 1);
    assert!(imported
        .warnings
        .iter()
        .any(|w| w.starts_with("not imported (ipv4): -A INPUT -p icmp -f -j DROP")));
    assert!(imported.summary.approximated >= 2);
    assert!(script.contains("tcp-reset"), "{script}");
}
