//! The import of whole rulesets: the fixtures of tests/fixtures/import,
//! each imported, evaluated, and held against the original packet by
//! packet with `explain`.

use std::net::IpAddr;

use super::*;
use crate::explain::{self, Verdict};
use crate::plan::Plan;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/import/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
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
    placed_agrees(sources, left_out_for_safety(&imported));
    let plan = evaluate(&imported.script);
    for source in sources {
        let rules = FamilyRules::read(source.family, &source.text).unwrap();
        let extra: Vec<IpAddr> = vec![
            "203.0.113.7".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ];
        let mut wrong = Vec::new();
        let mut grid = reference::grid(&rules, &extra);
        if !deny_first() {
            grid.retain(|p| {
                p.state == crate::plan::CtState::New && p.in_iface.as_deref() != Some("lo")
            });
        }
        assert!(grid.len() > 20);
        for packet in &grid {
            let original = reference::verdict(&rules, Hook::Input, packet);
            let explained = explain::explain(&plan, packet, Hook::Input);
            // A reject that must stay after accepts is said to become the
            // policy's drop.
            let said = original == Verdict::Reject
                && explained.verdict == Verdict::Drop
                && imported
                    .warnings
                    .iter()
                    .any(|w| w.contains("here the policy drops them"));
            // Narrower where a rule left out may drop: said, never wider.
            let narrower = original == Verdict::Accept
                && explained.verdict != Verdict::Accept
                && left_out_for_safety(&imported);
            if explained.verdict != original && !said && !narrower {
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

/// Whether the import left accepts (or an accepting policy) out behind a
/// rule it could not say that may drop, and said so.
fn left_out_for_safety(imported: &Imported) -> bool {
    imported
        .warnings
        .iter()
        .any(|w| w.contains("so the script is never wider than the original"))
}

/// The import's placement, evaluated in the stage order it assumes (deny
/// first), gives the original's verdict on the whole grid.
fn placed_agrees(sources: &[Source], narrower_said: bool) {
    let rulesets: Vec<FamilyRules> = sources
        .iter()
        .map(|s| FamilyRules::read(s.family, &s.text).unwrap())
        .collect();
    let checked = rulesets.iter().map(|r| r.family).collect();
    let placement = placement(&rulesets, &checked);
    for rules in &rulesets {
        let extra: Vec<IpAddr> = vec![
            "203.0.113.7".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ];
        let grid = reference::grid(rules, &extra);
        let wrong: Vec<String> = grid
            .iter()
            .filter_map(|packet| {
                let original = reference::verdict(rules, Hook::Input, packet);
                let placed =
                    reference::placed_verdict(&placement, rules.family, Hook::Input, packet);
                let narrower =
                    narrower_said && original == Verdict::Accept && placed != Verdict::Accept;
                (original != placed && !narrower)
                    .then(|| format!("{packet:?}: original {original:?}, placed {placed:?}"))
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{} differ, e.g.\n{}",
            wrong.len(),
            wrong[..wrong.len().min(5)].join("\n")
        );
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
    assert!(
        calls.contains(&r#"policy("forward", "accept");"#),
        "{script}"
    );
    // The tutorial accepts invalid packets to its open ports and drops
    // unsolicited ICMP errors: the import keeps both.
    assert!(
        calls.contains(&"baseline(#{ invalid: false, icmp: false });"),
        "{script}"
    );
    assert_eq!(imported.summary.not_imported, 0);
    assert_eq!(imported.summary.imported, 14);
    assert!(imported
        .warnings
        .last()
        .unwrap()
        .starts_with("import: 14 rules read"));
}

/// The reader's script without its one rule fwscript cannot say (`-f`):
/// everything imported, the SSH limit too.
#[test]
fn the_readers_script_keeps_its_limit() {
    let text = fixture("reader.v4").replace("-A INPUT -p icmp -f -j DROP\n", "");
    let imported = check(&[source(Family::Ipv4, "reader.v4", &text)], &[Family::Ipv6]);
    let script = &imported.script;
    let calls = calls(script);
    assert!(calls.contains(&"limit_tcp(22, #{ hits: 2 });"), "{script}");
    assert_eq!(imported.summary.not_imported, 0, "{script}");
    assert!(imported.summary.approximated >= 2);
    assert!(script.contains("tcp-reset"), "{script}");
}

/// With it, the `-f` drop comes first: every accept after it that takes
/// ICMP packets (the loopback accept, established, the ICMP types, and
/// through the baseline, the SSH limit) is left out too, and said.
#[test]
fn the_readers_script_says_what_it_cannot_and_is_never_wider() {
    let imported = check(
        &[source(Family::Ipv4, "reader.v4", &fixture("reader.v4"))],
        &[Family::Ipv6],
    );
    let script = &imported.script;
    assert!(
        script.contains("// NOT IMPORTED: -A INPUT -p icmp -f -j DROP"),
        "{script}"
    );
    assert!(imported
        .warnings
        .iter()
        .any(|w| w.starts_with("not imported (ipv4): -A INPUT -p icmp -f -j DROP")));
    for line in [
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT",
        "-A INPUT -p icmp -m icmp --icmp-type 3 -j ACCEPT",
    ] {
        assert!(
            script.contains(&format!("// NOT IMPORTED: {line}\n//   why: it accepts packets that `-A INPUT -p icmp -f -j DROP` before it may drop")),
            "{line}:\n{script}"
        );
        assert!(
            imported.warnings.iter().any(|w| w.starts_with(&format!("not imported (ipv4): {line}: it accepts packets"))),
            "{line}: {:#?}",
            imported.warnings
        );
    }
    assert!(
        script.contains(
            "//   established: `-A INPUT -p icmp -f -j DROP` may drop some of its packets first"
        ),
        "{script}"
    );
    assert!(imported.summary.not_imported > 1, "{}", imported.summary);
}

/// The audit's cases: a rule the import cannot say that drops, before an
/// accept of some of the same packets. Once the accept was imported and
/// the script accepted what the original dropped.
#[test]
fn a_drop_left_out_never_lets_a_later_accept_widen_the_script() {
    for (first, why) in [
        (
            "-A INPUT ! -s 10.0.0.0/8 -p tcp -m tcp --dport 3306 -j DROP",
            "! -s 10.0.0.0/8",
        ),
        (
            "-A INPUT -p tcp -m iprange --src-range 192.0.2.1-192.0.2.9 -j DROP",
            "-m iprange",
        ),
        (
            "-A INPUT -p tcp -m owner --uid-owner 0 -j REJECT",
            "-m owner",
        ),
        ("-A INPUT -p tcp -j NOSUCHCHAIN", "NOSUCHCHAIN"),
        ("-A INPUT -p tcp -g elsewhere", "-g elsewhere"),
    ] {
        let text = format!(
            "{HEAD}{first}\n-A INPUT -p tcp -m tcp --dport 3306 -j ACCEPT\n\
             -A INPUT -p udp -m udp --dport 53 -j ACCEPT\nCOMMIT\n"
        );
        let imported = check(&[v4(&text)], &[Family::Ipv6]);
        let script = &imported.script;
        assert!(
            script.contains(&format!("// NOT IMPORTED: {first}")),
            "{why}:\n{script}"
        );
        assert!(
            script.contains("// NOT IMPORTED: -A INPUT -p tcp -m tcp --dport 3306 -j ACCEPT\n"),
            "{why}:\n{script}"
        );
        // What the left-out rule cannot take stays imported.
        assert!(
            calls(script).contains(&"allow_udp(53);"),
            "{why}:\n{script}"
        );
        assert_eq!(
            imported.summary.not_imported, 2,
            "{why}: {}",
            imported.summary
        );
        let plan = evaluate(script);
        let packet = explain::Packet {
            src: Some("192.0.2.5".parse().unwrap()),
            ..explain::Packet::new_tcp(Family::Ipv4, 3306)
        };
        assert_ne!(
            explain::explain(&plan, &packet, Hook::Input).verdict,
            Verdict::Accept,
            "{why}:\n{script}"
        );
    }
    // An accepting policy after such a rule: the script's policy drops.
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        -A INPUT -m iprange --src-range 192.0.2.1-192.0.2.9 -j DROP\nCOMMIT\n";
    let imported = check(&[v4(text)], &[Family::Ipv6]);
    let script = &imported.script;
    assert!(
        script.contains("// NOT IMPORTED: :INPUT ACCEPT\n"),
        "{script}"
    );
    assert!(
        !script.contains("policy(\"input\", \"accept\")"),
        "{script}"
    );
    let plan = evaluate(script);
    let packet = explain::Packet {
        src: Some("192.0.2.5".parse().unwrap()),
        ..explain::Packet::new_tcp(Family::Ipv4, 80)
    };
    assert_ne!(
        explain::explain(&plan, &packet, Hook::Input).verdict,
        Verdict::Accept,
        "{script}"
    );
    // An accept before the rule left out, and a target that goes on,
    // change nothing.
    let text = format!(
        "{HEAD}-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n\
         -A INPUT -m iprange --src-range 192.0.2.1-192.0.2.9 -j DROP\n\
         -A INPUT -p tcp -j TCPMSS --clamp-mss-to-pmtu\n-A INPUT -p udp -m udp --dport 53 -j ACCEPT\nCOMMIT\n"
    );
    let imported = import(&[v4(&text)], &[Family::Ipv6]).unwrap();
    assert!(
        calls(&imported.script).contains(&"allow_tcp(22);"),
        "{}",
        imported.script
    );
}

#[test]
fn a_docker_host_keeps_the_admins_rules_and_names_dockers() {
    let imported = check(
        &[source(
            Family::Ipv4,
            "docker-host.v4",
            &fixture("docker-host.v4"),
        )],
        &[Family::Ipv6],
    );
    let script = &imported.script;
    println!("{script}");
    let calls = calls(script);
    assert!(calls.contains(&r#"ssh_from("203.0.113.7");"#), "{script}");
    assert!(calls.contains(&"allow_tcp([80, 443]);"), "{script}");
    assert!(calls.contains(&"allow_ping();"), "{script}");
    // Nothing of Docker's becomes a call.
    assert!(
        !script
            .lines()
            .any(|l| !l.starts_with("//") && (l.contains("docker") || l.contains("172.17"))),
        "{script}"
    );
    assert!(
        script.contains("// Docker's: -A FORWARD -j DOCKER-USER"),
        "{script}"
    );
    assert!(
        script.contains("// Docker's: -A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32"),
        "{script}"
    );
    assert_eq!(imported.summary.not_imported, 0, "{script}");
    assert_eq!(imported.summary.owners, ["Docker"]);
    // The whole baseline is there: nothing is switched off.
    assert!(!script.contains("baseline("), "{script}");
}

#[test]
fn a_fail2ban_host_in_both_families() {
    let imported = check(
        &[
            source(
                Family::Ipv4,
                "fail2ban-host.v4",
                &fixture("fail2ban-host.v4"),
            ),
            source(
                Family::Ipv6,
                "fail2ban-host.v6",
                &fixture("fail2ban-host.v6"),
            ),
        ],
        &[],
    );
    let script = &imported.script;
    println!("{script}");
    let calls = calls(script);
    assert!(calls.contains(&"allow_tcp([22, 80, 443]);"), "{script}");
    assert!(calls.contains(&"allow_udp(51820);"), "{script}");
    assert!(
        calls.contains(
            &r#"rule(#{ proto: "icmpv6", icmp_type: "echo-request", action: "accept" });"#
        ),
        "{script}"
    );
    assert!(
        !script.contains("198.51.100.23")
            || script
                .lines()
                .filter(|l| l.contains("198.51.100.23"))
                .all(|l| l.starts_with("//"))
    );
    assert!(script.contains("fail2ban's"), "{script}");
    assert_eq!(imported.summary.owners, ["fail2ban"]);
    assert_eq!(imported.summary.not_imported, 0);
}

#[test]
fn fwscripts_own_rules_are_recognised() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/nft-ipv4.save",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let imported = import(&[source(Family::Ipv4, "nft-ipv4.save", &text)], &[]).unwrap();
    let script = &imported.script;
    println!("{script}");
    assert!(
        script.contains("fwscript's own rules are in this ruleset"),
        "{script}"
    );
    // Only the admin's rule beside them becomes a call; fwscript's rules in
    // FWS- chains are no call.
    let calls = calls(script);
    assert_eq!(
        calls,
        [r#"rule(#{ iface: "lo", action: "accept" });"#],
        "{script}"
    );
    assert!(!script.contains("baseline("), "{script}");
    assert_eq!(imported.summary.owners, ["fwscript", "Docker", "fail2ban"]);
    evaluate(script);
}

fn v4(text: &str) -> Source {
    source(Family::Ipv4, "rules.v4", text)
}

const HEAD: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n";

#[test]
fn centos_default_reject_at_the_end_is_the_policy() {
    // The file CentOS ships: ACCEPT policies and a REJECT at the end.
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p icmp -j ACCEPT\n\
        -A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT\n\
        -A INPUT -j REJECT --reject-with icmp-host-prohibited\n\
        -A FORWARD -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n";
    let imported = check(&[v4(text)], &[Family::Ipv6]);
    let script = &imported.script;
    let calls = calls(script);
    assert!(
        calls.contains(&r#"rule(#{ proto: "tcp", dport: 22, state: "new", action: "accept" });"#),
        "{script}"
    );
    assert!(
        calls.contains(&r#"rule(#{ proto: "icmp", action: "accept" });"#),
        "{script}"
    );
    assert!(script.contains("icmp-host-prohibited"), "{script}");
}

#[test]
fn a_drop_after_the_accepts_it_overlaps_stays_after_them() {
    // Established connections from the blocked address were accepted by
    // the original; a `block()` would cut them, so the import keeps the
    // order with a `return` to the DROP policy.
    let text = format!(
        "{HEAD}-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -i lo -j ACCEPT\n\
         -A INPUT -s 198.51.100.7/32 -j DROP\n-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n"
    );
    let imported = check(&[v4(&text)], &[Family::Ipv6]);
    let script = &imported.script;
    assert!(
        calls(script).contains(&r#"rule(#{ src: "198.51.100.7", action: "return" });"#),
        "{script}"
    );
    // A drop no accept before it overlaps is a plain block().
    let text = format!(
        "{HEAD}-A INPUT -s 198.51.100.7/32 -j DROP\n-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n\
         -A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n"
    );
    let imported = check(&[v4(&text)], &[Family::Ipv6]);
    assert!(
        calls(&imported.script).contains(&r#"block("198.51.100.7");"#),
        "{}",
        imported.script
    );
}

#[test]
fn loopback_before_a_reject_keeps_loopback_open() {
    // A database only local programs may reach: the original accepts it
    // on loopback before it rejects it for everyone else.
    let text = format!(
        "{HEAD}-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 3306 -j REJECT --reject-with tcp-reset\n\
         -A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n"
    );
    let imported = import(&[v4(&text)], &[Family::Ipv6]).unwrap();
    let script = &imported.script;
    assert!(
        calls(script).contains(&r#"rule(#{ proto: "tcp", dport: 3306, action: "return" });"#),
        "{script}"
    );
    assert!(script.contains("here the policy drops them"), "{script}");
    assert!(imported.summary.approximated >= 1);
    let plan = evaluate(script);
    let packet = |iface: &str| explain::Packet {
        in_iface: Some(iface.into()),
        ..explain::Packet::new_tcp(Family::Ipv4, 3306)
    };
    assert_eq!(
        explain::explain(&plan, &packet("lo"), Hook::Input).verdict,
        Verdict::Accept
    );
    assert_eq!(
        explain::explain(&plan, &packet("eth0"), Hook::Input).verdict,
        Verdict::Drop
    );
}

#[test]
fn families_with_different_policies_and_rules() {
    let v6 = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        -A INPUT -p tcp -m tcp --dport 25 -j DROP\nCOMMIT\n";
    let v4 = format!("{HEAD}-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 25 -j DROP\nCOMMIT\n");
    let imported = check(
        &[
            source(Family::Ipv4, "rules.v4", &v4),
            source(Family::Ipv6, "rules.v6", v6),
        ],
        &[],
    );
    let script = &imported.script;
    let calls = calls(script);
    assert!(
        calls.contains(&r#"rule(#{ chain: "input", action: "accept", family: "ipv6" });"#),
        "{script}"
    );
    // IPv4 accepts port 25 on loopback before it drops it; IPv6 does not.
    assert!(
        calls.contains(&r#"rule(#{ proto: "tcp", dport: 25, action: "return", family: "ipv4" });"#),
        "{script}"
    );
    assert!(
        calls.contains(&r#"rule(#{ proto: "tcp", dport: 25, action: "drop", family: "ipv6" });"#),
        "{script}"
    );
    assert!(
        calls.contains(&r#"allow_tcp(80, #{ family: "ipv4" });"#),
        "{script}"
    );
}

#[test]
fn nat_rules_become_the_calls_that_say_them() {
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
        -A PREROUTING -i eth1 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8080\n\
        -A PREROUTING -i eth0 -p tcp -m tcp --dport 2222 -j DNAT --to-destination 10.0.0.10:22\n\
        -A PREROUTING -i eth0 -p tcp -m tcp --dport 2223 -j DNAT --to-destination 10.0.0.11:22\n\
        -A POSTROUTING -s 10.0.0.0/24 -o eth0 -j MASQUERADE\nCOMMIT\n\
        *filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        -A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT\n\
        -A FORWARD -d 10.0.0.10/32 -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";
    let imported = import(&[v4(text)], &[Family::Ipv6]).unwrap();
    let script = &imported.script;
    let calls = calls(script);
    assert!(
        calls.contains(&r#"redirect_tcp(80, 8080, #{ iface: "eth1" });"#),
        "{script}"
    );
    assert!(
        calls.contains(&r#"forward_tcp(2222, "10.0.0.10:22", #{ iface: "eth0" });"#),
        "{script}"
    );
    // FORWARD does not accept what goes to .11: forward_tcp would open it.
    assert!(calls.contains(&r#"rule(#{ table: "nat", chain: "prerouting", proto: "tcp", iface: "eth0", dport: 2223, action: "dnat", to: "10.0.0.11:22" });"#), "{script}");
    assert!(
        calls.contains(&r#"masquerade("eth0", #{ from: "10.0.0.0/24" });"#),
        "{script}"
    );
    evaluate(script);
}

#[test]
fn bad_input_is_a_clear_error() {
    let err = |text: &str, family| {
        import(&[source(family, "x.v4", text)], &[])
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("", Family::Ipv4),
        "`x.v4` is not iptables-save output: it has no table (no `*filter` line)"
    );
    assert!(
        err("iptables -A INPUT -j ACCEPT\n", Family::Ipv4).contains("script of iptables commands")
    );
    assert!(err(
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\n",
        Family::Ipv4
    )
    .contains("table without `COMMIT`"));
    assert_eq!(
        err("*filter\n:INPUT DROP [0:0]\n-A INPUT -s 2001:db8::1/128 -j ACCEPT\nCOMMIT\n", Family::Ipv4),
        "`x.v4` holds IPv6 addresses (2001:db8::1/128), but was given as the IPv4 ruleset: give it with `--from6`"
    );
}

#[test]
fn hostile_text_in_the_ruleset_never_reaches_the_script_as_code() {
    // A comment and a log prefix made to break out of a string.
    let text = format!(
        "{HEAD}-A INPUT -p tcp -m tcp --dport 80 -m comment --comment \"x\\\"}});allow_from(\\\"0.0.0.0/0\\\");//\" -j ACCEPT\n\
         -A INPUT -m limit --limit 5/min -j LOG --log-prefix \"\\\");allow_from(\\\"::/0\"\n\
         -A INPUT -i eth0;rm -j ACCEPT\nCOMMIT\n"
    );
    let imported = import(&[v4(&text)], &[Family::Ipv6]).unwrap();
    let script = &imported.script;
    for line in calls(script) {
        assert!(!line.contains("allow_from"), "{line}\n{script}");
    }
    assert!(script.contains("its comment"), "{script}");
    assert!(script.contains("its log prefix"), "{script}");
    assert!(
        script.contains("NOT IMPORTED: -A INPUT -i eth0;rm -j ACCEPT"),
        "{script}"
    );
    evaluate(script);
}

#[test]
fn text_copied_into_comments_can_never_end_them() {
    // The audit's payload from a live kernel: iptables-save keeps the CR of
    // a rule's comment, and Rhai ends a `//` comment at a lone CR.
    for bad in [
        '\r', '\u{2028}', '\u{2029}', '\u{1b}', '\u{202e}', '\u{85}', '\u{b}',
    ] {
        let text = format!(
            "{HEAD}-A INPUT -m iprange --src-range 192.0.2.1-192.0.2.9 -m comment --comment \"x{bad}allow_from(`0.0.0.0/0`); //\" -j ACCEPT\n\
             -A INPUT -m owner --uid-owner 0 -m comment --comment \"y{bad}allow_tcp(9);\" -j DROP\n\
             -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"
        );
        let imported = import(
            &[source(Family::Ipv4, &format!("rules{bad}.v4"), &text)],
            &[Family::Ipv6],
        )
        .unwrap();
        let script = &imported.script;
        assert!(
            !script
                .chars()
                .any(|c| c != '\n' && crate::script::is_hidden(c)),
            "{bad:?} reached the script raw:\n{script}"
        );
        assert!(
            script.contains("--comment \"x\\"),
            "{bad:?}: the payload is shown, escaped:\n{script}"
        );
        for line in calls(script) {
            assert!(
                !line.contains("0.0.0.0") && !line.contains("(9)"),
                "{line}\n{script}"
            );
        }
        let plan = evaluate(script);
        for port in [9, 80] {
            let packet = explain::Packet {
                src: Some("198.51.100.1".parse().unwrap()),
                ..explain::Packet::new_tcp(Family::Ipv4, port)
            };
            assert_ne!(
                explain::explain(&plan, &packet, Hook::Input).verdict,
                Verdict::Accept,
                "{bad:?}, port {port}:\n{script}"
            );
        }
        for warning in &imported.warnings {
            assert!(
                !warning.chars().any(crate::script::is_hidden),
                "{warning:?}"
            );
        }
    }
}
