//! The read-back after a small write to a big firewall: on nf_tables only
//! the chains the write touched are listed (`iptables -S CHAIN`), on
//! legacy the family is saved whole as before; either way what the kernel
//! holds afterwards, what the next plan sees and what drift is found are
//! the same. Real kernels, both backends.

use crate::common::case::Case;
use crate::common::netns::{kernel_available, Netns, Run, FLAVORS};

/// 3,000 ports: enough rules per family that a one-rule edit reads back
/// its chain alone.
fn big(extra: &str) -> String {
    format!("for p in 1..=3000 {{\n    allow_tcp(p);\n    {extra}\n}}\n")
}

/// Applies (or plans) `script` with `-vv`, so the reads show.
fn run(case: &Case, netns: &Netns, command: &str, script: &str) -> Run {
    case.edit(script);
    case.run(netns, &["-vv", command])
}

/// The reads a `-vv` run says it made after its first write (the families
/// are written at the same time, so their lines interleave).
fn after_the_write(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .skip_while(|l| !l.contains("-restore --noflush"))
        .filter(|l| l.contains("DEBUG running") && !l.contains("-restore --noflush"))
        .collect()
}

/// Whether the reads after a write listed chains (nf_tables) or saved
/// whole families (legacy), `families` of them.
fn read_back_as_expected(flavor: &str, run: &Run, families: usize) -> bool {
    let reads = after_the_write(run);
    let listed = reads.iter().filter(|l| l.contains(" -S ")).count();
    let saved = reads.iter().filter(|l| l.contains("-save")).count();
    match flavor {
        "nft" => saved == 0 && listed >= families,
        _ => listed == 0 && saved == families,
    }
}

#[test]
fn a_one_rule_edit_reads_back_its_chain_and_leaves_the_kernel_in_sync() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        let case = Case::new("");
        run(&case, &netns, "apply", &big("")).expect(0);

        let edit = run(
            &case,
            &netns,
            "apply",
            &big("if p == 1500 { allow_tcp(60001); }"),
        )
        .expect(0);
        assert!(
            edit.stdout.ends_with("applied 2 changes\n"),
            "{}",
            edit.stdout
        );
        let listed = after_the_write(&edit);
        assert!(read_back_as_expected(flavor, &edit, 2), "{listed:?}");
        if flavor == "nft" {
            assert_eq!(listed.len(), 2, "one chain per family: {listed:?}");
            assert!(
                listed.iter().all(|l| l.contains(" -S FWS-INPUT-ALLOW-")),
                "{listed:?}"
            );
        }

        let [v4, v6] = netns.saves();
        for save in [&v4, &v6] {
            assert_eq!(save.matches("--dport 60001 ").count(), 1, "{save}");
            assert_eq!(save.lines().filter(|l| l.contains("-p tcp")).count(), 3001);
        }
        let again = run(
            &case,
            &netns,
            "plan",
            &big("if p == 1500 { allow_tcp(60001); }"),
        )
        .expect(0);
        assert!(again.stdout.contains("in sync"), "{}", again.stdout);

        // And back: one delete per family, read back the same way.
        let back = run(&case, &netns, "apply", &big("")).expect(0);
        assert!(
            back.stdout.ends_with("applied 2 changes\n"),
            "{}",
            back.stdout
        );
        assert!(read_back_as_expected(flavor, &back, 2), "{}", back.stderr);
        assert!(!netns.save("ipv4", false).contains("--dport 60001 "));
    }
}

#[test]
fn drift_is_found_in_chains_read_back_and_in_chains_not_touched() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        let case = Case::new("");
        run(&case, &netns, "apply", &big("")).expect(0);
        let edited = big("if p == 1500 { allow_tcp(60001); }");
        let edit = run(&case, &netns, "apply", &edited).expect(0);
        assert!(read_back_as_expected(flavor, &edit, 2), "{}", edit.stderr);

        // Someone rewrites a rule in place, keeping its comment: one far
        // from the edit (a chain not read back), one beside it (read back).
        let v4 = netns.save("ipv4", false);
        let rule_of = |port: &str| {
            let line = v4
                .lines()
                .find(|l| l.contains(&format!("--dport {port} ")))
                .unwrap();
            let chain = line.split_whitespace().nth(1).unwrap().to_string();
            let position = v4
                .lines()
                .filter(|l| l.starts_with(&format!("-A {chain} ")))
                .position(|l| l == line)
                .unwrap()
                + 1;
            (chain, position, line.replacen("-j ACCEPT", "-j DROP", 1))
        };
        for port in ["7", "60001"] {
            let (chain, position, changed) = rule_of(port);
            let spec = changed.splitn(3, ' ').nth(2).unwrap().to_string();
            netns.sh(&format!("$IPT -R {chain} {position} {spec}"));
        }
        let plan = run(&case, &netns, "plan", &edited).expect(2);
        assert!(plan.stdout.contains("4 changes pending"), "{}", plan.stdout);
        assert_eq!(
            plan.stdout.matches("changed behind").count(),
            2,
            "{}",
            plan.stdout
        );
        run(&case, &netns, "apply", &edited).expect(0);
        let repaired = netns.save("ipv4", false);
        let those: Vec<&str> = repaired
            .lines()
            .filter(|l| l.contains("--dport 7 ") || l.contains("--dport 60001 "))
            .collect();
        assert_eq!(those.len(), 2, "{repaired}");
        assert!(those.iter().all(|l| l.ends_with("-j ACCEPT")), "{those:?}");
    }
}

#[test]
fn a_new_and_a_deleted_chain_read_back_beside_a_neighbours_rule() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        let case = Case::new("");
        run(&case, &netns, "apply", &big("")).expect(0);
        // An admin's ban at the top of INPUT, which the read-back of INPUT
        // lists too.
        netns.sh("$IPT -I INPUT 1 -s 198.51.100.1/32 -j DROP");

        let blocked = format!("{}block(\"192.0.2.1\");\n", big(""));
        let add = run(&case, &netns, "apply", &blocked).expect(0);
        let listed = after_the_write(&add);
        assert!(read_back_as_expected(flavor, &add, 1), "{listed:?}");
        if flavor == "nft" {
            assert!(listed.iter().any(|l| l.ends_with("-S INPUT")), "{listed:?}");
            assert!(
                listed.iter().any(|l| l.contains("-S FWS-INPUT-DENY")),
                "{listed:?}"
            );
        }
        let v4 = netns.save("ipv4", false);
        assert!(v4.contains("-A INPUT -s 198.51.100.1/32 -j DROP"), "{v4}");
        assert!(v4.contains("-s 192.0.2.1/32"), "{v4}");

        let remove = run(&case, &netns, "apply", &big("")).expect(0);
        assert!(
            read_back_as_expected(flavor, &remove, 1),
            "{}",
            remove.stderr
        );
        let v4 = netns.save("ipv4", false);
        assert!(!v4.contains("FWS-INPUT-DENY"), "{v4}");
        assert!(v4.contains("-A INPUT -s 198.51.100.1/32 -j DROP"), "{v4}");
        let plan = run(&case, &netns, "plan", &big("")).expect(0);
        assert!(plan.stdout.contains("in sync"), "{}", plan.stdout);
    }
}
