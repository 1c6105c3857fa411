//! `explain` on plans evaluated from real scripts: the verdicts an admin
//! expects from what the script says.

use std::net::IpAddr;

use fwscript::explain::{explain, Decision, Packet, Transport, Verdict};
use fwscript::guard::{self, SshSession};
use fwscript::netfilter::{Family, Hook};
use fwscript::plan::{family_of, CtState, Plan, TcpFlag};

fn evaluate(script: &str) -> Plan {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fw.rhai");
    std::fs::write(&path, script).unwrap();
    fwscript::script::evaluate(&path).unwrap()
}

fn syn(src: &str, dport: u16) -> Packet {
    let src: IpAddr = src.parse().unwrap();
    Packet {
        src: Some(src),
        ..Packet::new_tcp(family_of(&src), dport)
    }
}

fn verdict(plan: &Plan, packet: &Packet) -> Verdict {
    explain(plan, packet, Hook::Input).verdict
}

/// The classic CentOS iptables tutorial, as a script.
const TUTORIAL: &str = r#"
drop_scans();
allow_tcp(["http", "https"]);
allow_tcp(["smtp", "smtps"]);
allow_tcp(["pop3", "pop3s"]);
allow_tcp(["imap", "imaps"]);
ssh_from("203.0.113.7");
"#;

#[test]
fn the_tutorial_opens_mail_and_web_and_ssh_for_the_office() {
    let plan = evaluate(TUTORIAL);
    for port in [80, 443, 25, 465, 110, 995, 143, 993] {
        assert_eq!(
            verdict(&plan, &syn("192.0.2.50", port)),
            Verdict::Accept,
            "port {port}"
        );
        assert_eq!(
            verdict(&plan, &syn("2001:db8::50", port)),
            Verdict::Accept,
            "port {port} over IPv6"
        );
    }
    assert_eq!(verdict(&plan, &syn("203.0.113.7", 22)), Verdict::Accept);
    assert_eq!(verdict(&plan, &syn("203.0.113.8", 22)), Verdict::Drop);
    assert_eq!(verdict(&plan, &syn("192.0.2.50", 23)), Verdict::Drop);
}

#[test]
fn the_tutorial_names_the_ssh_rule_and_its_line() {
    let plan = evaluate(TUTORIAL);
    let answer = explain(&plan, &syn("203.0.113.7", 22), Hook::Input);
    let Decision::Rule(rule) = &answer.decided_by else {
        panic!("expected a rule, got {}", answer.decided_by);
    };
    assert_eq!(rule.chain, "FWS-INPUT-ALLOW");
    assert_eq!(rule.origin.as_ref().map(|o| o.line), Some(7));
    assert_eq!(
        rule.text,
        "-s 203.0.113.7/32 -p tcp -m tcp --dport 22 -j ACCEPT"
    );
    let telnet = explain(&plan, &syn("192.0.2.50", 23), Hook::Input);
    assert_eq!(
        telnet.decided_by.to_string(),
        "policy DROP of INPUT (baseline)"
    );
}

#[test]
fn the_tutorial_drops_scans() {
    let plan = evaluate(TUTORIAL);
    let with_flags = |flags: &[TcpFlag]| Packet {
        transport: Transport::Tcp {
            sport: Some(40000),
            dport: Some(80),
            flags: flags.iter().copied().collect(),
        },
        ..syn("192.0.2.50", 80)
    };
    for (flags, comment) in [
        (&[][..], "null scan"),
        (&TcpFlag::ALL[..], "xmas scan"),
        (&[TcpFlag::Ack][..], "new without syn"),
    ] {
        let answer = explain(&plan, &with_flags(flags), Hook::Input);
        assert_eq!(answer.verdict, Verdict::Drop, "{comment}");
        let Decision::Rule(rule) = &answer.decided_by else {
            panic!("{comment}: expected a rule, got {}", answer.decided_by);
        };
        assert!(rule.text.ends_with(&format!("/* {comment} */")), "{rule:?}");
        assert_eq!(rule.origin.as_ref().map(|o| o.line), Some(2));
    }
    assert_eq!(
        verdict(&plan, &with_flags(&[TcpFlag::Syn])),
        Verdict::Accept
    );
}

#[test]
fn a_block_wins_over_an_allow_written_before_it() {
    let plan = evaluate(
        r#"
allow_tcp(80);
block("198.51.100.0/24");
"#,
    );
    let answer = explain(&plan, &syn("198.51.100.1", 80), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Drop);
    assert_eq!(
        answer.decided_by.to_string(),
        format!(
            "FWS-INPUT-DENY rule 1 ({}:3:1): -s 198.51.100.0/24 -j DROP",
            plan.sources[0].display()
        )
    );
}

#[test]
fn the_baseline_keeps_ipv6_working_and_answers_replies() {
    let plan = evaluate("allow_tcp(443);");
    let neighbour = Packet::new(Family::Ipv6, Transport::Icmp { icmp_type: 135 });
    assert_eq!(verdict(&plan, &neighbour), Verdict::Accept);
    let ping = Packet::new(Family::Ipv4, Transport::Icmp { icmp_type: 8 });
    assert_eq!(verdict(&plan, &ping), Verdict::Drop);
    let reply = Packet {
        state: CtState::Established,
        transport: Transport::tcp(Some(443), Some(50000), CtState::Established),
        ..syn("192.0.2.50", 50000)
    };
    assert_eq!(verdict(&plan, &reply), Verdict::Accept);
    let loopback = Packet {
        in_iface: Some("lo".into()),
        ..syn("127.0.0.1", 5432)
    };
    assert_eq!(verdict(&plan, &loopback), Verdict::Accept);
}

#[test]
fn nat_scripts_redirect_and_forward() {
    let plan = evaluate(
        r#"
redirect_tcp(80, 8080);
forward_tcp(2222, "10.0.0.5:22");
"#,
    );
    let redirected = explain(&plan, &syn("192.0.2.50", 80), Hook::Input);
    assert_eq!(redirected.verdict, Verdict::Accept);
    assert_eq!(redirected.packet.transport.dport(), Some(8080));
    assert_eq!(verdict(&plan, &syn("192.0.2.50", 8080)), Verdict::Drop);

    let forwarded = explain(&plan, &syn("192.0.2.50", 2222), Hook::Input);
    assert_eq!(forwarded.verdict, Verdict::Accept);
    assert_eq!(forwarded.hook, Hook::Forward);
}

#[test]
fn a_policy_call_is_named_with_its_line() {
    let plan = evaluate("\npolicy(\"input\", \"accept\");\n");
    let answer = explain(&plan, &syn("192.0.2.50", 23), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Accept);
    assert!(answer.decided_by.to_string().ends_with(":2:1)"));
}

#[test]
fn the_lockout_guard_sees_a_script_that_shuts_ssh() {
    let session = SshSession::parse("203.0.113.7 50022 192.0.2.1 22");
    let open = evaluate(r#"ssh_from("203.0.113.7");"#);
    assert_eq!(guard::check(&open, session).unwrap(), []);
    let shut = evaluate(r#"allow_tcp(443); block("203.0.113.0/24");"#);
    let refusal = guard::check(&shut, session).unwrap_err().to_string();
    assert!(refusal.contains("-s 203.0.113.0/24"), "{refusal}");
    // What the guard refuses, explain (typical, certain) agrees with here.
    let office: IpAddr = "203.0.113.7".parse().unwrap();
    let answer = explain(
        &shut,
        &Packet {
            src: Some(office),
            ..Packet::new_tcp(family_of(&office), 22)
        },
        Hook::Input,
    );
    assert_eq!(answer.verdict, Verdict::Drop);
}

#[test]
fn the_command_prints_the_verdict_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fw.rhai");
    std::fs::write(&path, TUTORIAL).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fwscript"))
            .arg("explain")
            .arg(&path)
            .args(args)
            .output()
            .unwrap()
    };
    let allowed = run(&["--proto", "tcp", "--src", "203.0.113.7", "--dport", "22"]);
    assert!(allowed.status.success());
    let text = String::from_utf8(allowed.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("ACCEPT"));
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "decided by: FWS-INPUT-ALLOW rule 9 ({}:7:1): -s 203.0.113.7/32 -p tcp -m tcp --dport 22 -j ACCEPT",
                path.display()
            )
            .as_str()
        )
    );

    let dropped = run(&["--proto", "tcp", "--src", "198.51.100.1", "--dport", "23"]);
    assert!(dropped.status.success(), "any verdict is an answer");
    assert!(String::from_utf8(dropped.stdout)
        .unwrap()
        .starts_with("DROP\n"));

    let wrong = run(&["--proto", "tcp", "--src", "not-an-address"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(wrong.stderr).unwrap(),
        "error: `--src` value `not-an-address` is not an IP address\n"
    );
}
