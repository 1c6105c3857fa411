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

/// The boot order the dist units set up: fwscript first (it finds FORWARD
/// at ACCEPT and sets DROP), Docker after it (its chains, its jumps, and
/// FORWARD DROP). `reset` must not open FORWARD to ACCEPT under Docker's
/// rules: it keeps DROP and says so; INPUT, which no neighbour holds, goes
/// back to ACCEPT. With packets through a gateway.
#[test]
fn reset_keeps_forward_shut_when_docker_started_after_fwscript() {
    use crate::traffic::listen::Tcp;
    use crate::traffic::probe::{self, Reach};
    use crate::traffic::topology::{Routed, GATEWAY_OUT, INSIDE, OUTSIDE};
    use std::net::SocketAddr;

    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let net = Routed::new(flavor);
        net.outside.sh("ip route add 192.0.2.0/24 via 198.51.100.1");
        let _web = Tcp::bind(&net.inside.name, 8080);
        let connect = |dst, port, expected: Reach| {
            let reach = probe::tcp_connect(
                &net.outside.name,
                OUTSIDE,
                SocketAddr::new(dst, port),
                expected.wait(),
            );
            assert_eq!(reach, expected, "{flavor}: tcp {OUTSIDE} → {dst}:{port}");
        };
        connect(INSIDE, 8080, Reach::Open);

        net.apply("allow_tcp(22);\n").expect(0);
        connect(INSIDE, 8080, Reach::Filtered);
        // Docker starts after fwscript.
        net.gateway.sh("for t in $IPT $IP6T; do \
               $t -N DOCKER-USER && $t -A DOCKER-USER -j RETURN && \
               $t -N DOCKER-FORWARD && $t -A DOCKER-FORWARD -i docker0 -j ACCEPT && \
               $t -P FORWARD DROP && $t -I FORWARD -j DOCKER-USER && \
               $t -A FORWARD -j DOCKER-FORWARD; \
             done");

        let dry = net.fwscript(&["reset", "--dry-run", "--json"]).expect(0);
        let value: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
        let kept: Vec<&serde_json::Value> = value["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["kind"] == "policy_kept")
            .collect();
        assert_eq!(kept.len(), 2, "{flavor}: both families: {value:#}");
        for (warning, family) in kept.iter().zip(["ipv4", "ipv6"]) {
            assert_eq!(warning["family"], family);
            assert_eq!(warning["chain"], "FORWARD");
            assert_eq!(warning["policy"], "DROP");
            assert_eq!(warning["original"], "ACCEPT");
            assert_eq!(warning["neighbour"], "Docker");
        }

        let run = net.fwscript(&["reset", "--yes"]).expect(0);
        let warnings = warning_lines(&run.stderr);
        assert_eq!(
            warnings,
            ["ipv4", "ipv6"].map(|family| {
                let tool = if family == "ipv4" {
                    "iptables"
                } else {
                    "ip6tables"
                };
                format!(
                    "warning: {family} filter FORWARD keeps its policy DROP, not the ACCEPT \
                     fwscript found before it first changed it: rules of Docker sit in FORWARD \
                     and count on it (opening it would let through what Docker drops); set it \
                     yourself with `{tool} -P FORWARD ACCEPT` if you mean it"
                )
            }),
            "{flavor}: {run:#?}"
        );
        // Only INPUT's policy is put back.
        assert_eq!(
            run.stdout.matches("policy DROP -> ACCEPT").count(),
            2,
            "{run:#?}"
        );
        assert!(
            run.stdout
                .contains("ipv4 filter: +0 \u{2212}13, policy INPUT DROP \u{2192} ACCEPT\n"),
            "{run:#?}"
        );
        assert!(!run.stdout.contains("policy FORWARD"), "{run:#?}");
        for tool in ["$IPT", "$IP6T"] {
            let forward = net.gateway.sh(&format!("{tool} -S FORWARD"));
            assert_eq!(
                forward.lines().collect::<Vec<_>>(),
                [
                    "-P FORWARD DROP",
                    "-A FORWARD -j DOCKER-USER",
                    "-A FORWARD -j DOCKER-FORWARD"
                ],
                "{flavor} {tool}"
            );
            assert!(net
                .gateway
                .sh(&format!("{tool} -S INPUT"))
                .starts_with("-P INPUT ACCEPT"));
        }
        // What was shut stays shut; the gateway itself is open again
        // (nothing listens: refused, not filtered).
        connect(INSIDE, 8080, Reach::Filtered);
        connect(GATEWAY_OUT, 8081, Reach::Refused);
    }
}
