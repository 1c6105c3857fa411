//! A Docker host's rules (tests/fixtures/docker-*.save, modelled on Docker
//! 28) loaded into a namespace: apply, an edit, rollback and reset leave
//! every rule and chain of Docker's, in every table, and its FORWARD DROP
//! byte-identical, and the warnings about them fit in one line. Needs root; skips loudly
//! without it (fails under CI).

use crate::common::netns::{kernel_available, Netns, FLAVORS};

const SCRIPT: &str = "allow_tcp([80, 443]);\nssh_from(\"203.0.113.7\");\ndrop_scans();\n";

/// An edit that touches nat too, where Docker's DNAT lives.
const EDITED: &str = "allow_tcp([80, 443, 8443]);\nssh_from(\"203.0.113.7\");\n\
                      drop_scans();\nblock(\"198.51.100.9\");\nredirect_tcp(8000, 80);\n";

struct Host {
    netns: Netns,
    dir: tempfile::TempDir,
}

impl Host {
    /// A namespace holding the Docker fixture's rules, both families.
    fn new(flavor: &'static str) -> Host {
        let netns = Netns::new(flavor);
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        netns.sh(&format!(
            "$IPT-restore < {fixtures}/docker-ipv4.save && $IP6T-restore < {fixtures}/docker-ipv6.save"
        ));
        Host {
            netns,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str], script: Option<&str>) -> crate::common::netns::Run {
        let mut all = args.to_vec();
        let path = self.dir.path().join("fw.rhai");
        if let Some(text) = script {
            std::fs::write(&path, text).unwrap();
            all.push(path.to_str().unwrap());
        }
        self.netns.fwscript(&self.dir.path().join("state"), &all)
    }

    /// Docker's part of both families' saves, every table: whatever is not
    /// fwscript's, with the built-in chains' policies (their counters
    /// dropped: legacy prints them).
    fn docker(&self) -> [Vec<String>; 2] {
        ["ipv4", "ipv6"].map(|family| {
            let tool = match family {
                "ipv4" => self.netns.tool("iptables"),
                _ => self.netns.tool("ip6tables"),
            };
            self.netns
                .sh(&format!("{tool}-save"))
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter(|l| !l.contains("fws:") && !l.contains("FWS-"))
                // fwscript decides INPUT's policy; Docker leaves it alone.
                .filter(|l| !l.starts_with(":INPUT "))
                .map(|l| match l.split_once(" [") {
                    Some((declaration, _)) if l.starts_with(':') => declaration.to_string(),
                    _ => l.to_string(),
                })
                .collect()
        })
    }
}

fn warning_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect()
}

#[test]
fn apply_edit_rollback_and_reset_leave_every_docker_rule_as_it_was() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let host = Host::new(flavor);
        let docker = host.docker();
        assert!(
            docker[0].len() > 40,
            "{flavor}: the fixture loaded: {docker:?}"
        );
        assert!(docker[0].contains(&":FORWARD DROP".to_string()));

        let plan = host.run(&["plan"], Some(SCRIPT)).expect(2);
        let warnings = warning_lines(&plan.stderr);
        assert_eq!(
            warnings.len(),
            1,
            "{flavor}: one line for Docker: {plan:#?}"
        );
        assert!(
            warnings[0].starts_with(
                "warning: 2 rules of Docker (ipv4 filter FORWARD, ipv6 filter FORWARD)"
            ),
            "{flavor}: {warnings:?}"
        );

        let applied = host.run(&["apply"], Some(SCRIPT)).expect(0);
        assert_eq!(warning_lines(&applied.stderr).len(), 1, "{applied:#?}");
        assert_eq!(host.docker(), docker, "{flavor}: after apply");

        host.run(&["apply"], Some(EDITED)).expect(0);
        assert_eq!(host.docker(), docker, "{flavor}: after an edit");
        let nat = host.netns.sh("$IPT -t nat -S PREROUTING");
        assert!(nat.contains("-j FWS-PREROUTING"), "{nat}");

        host.run(&["rollback"], None).expect(0);
        assert_eq!(host.docker(), docker, "{flavor}: after rollback");
        assert!(!host.netns.sh("$IPT -t nat -S").contains("FWS-"));

        // Reset puts back the policies from before fwscript: FORWARD stays
        // DROP as Docker set it, and INPUT goes back to ACCEPT.
        host.run(&["reset"], None).expect(0);
        assert_eq!(host.docker(), docker, "{flavor}: after reset");
        let [v4, v6] = host.netns.saves();
        assert!(!v4.contains("FWS-") && !v6.contains("FWS-"), "{flavor}");
        assert!(v4.contains(":FORWARD DROP") && v6.contains(":FORWARD DROP"));
        assert!(v4.contains(":INPUT ACCEPT") && v6.contains(":INPUT ACCEPT"));
    }
}
