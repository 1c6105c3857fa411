//! The guard on plans evaluated from real scripts: each way a plan can cut
//! a session is refused with the rule, its line and a way on; the plans
//! that keep the session are let through, with a warning where a rate limit
//! counts its connections.

use super::*;
use crate::explain::{Decision, DoubtKind};

/// The session every test protects: 192.0.2.2 logged in to 192.0.2.1:22.
const SESSION: &str = "192.0.2.2 50022 192.0.2.1 22";

struct Script {
    _dir: tempfile::TempDir,
    plan: Plan,
}

fn evaluate(script: &str) -> Script {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fw.rhai");
    std::fs::write(&path, script).unwrap();
    let plan = crate::script::evaluate(&path).unwrap();
    Script { _dir: dir, plan }
}

fn check_as(script: &str, ssh_connection: &str) -> Result<Vec<Warning>, Lockout> {
    check(&evaluate(script).plan, SshSession::parse(ssh_connection))
}

fn refusal(script: &str) -> Lockout {
    match check_as(script, SESSION) {
        Err(lockout) => lockout,
        Ok(warnings) => panic!("not refused: {script}\nwarnings: {warnings:?}"),
    }
}

/// The refusal's text with the temporary folder taken out.
fn message(lockout: &Lockout) -> String {
    let text = lockout.to_string();
    let re_path = |text: &str| {
        text.split(' ')
            .map(|word| match word.find("fw.rhai") {
                Some(at) => {
                    let start = word[..at].find('/').unwrap_or(at);
                    format!("{}{}", &word[..start], &word[at..])
                }
                None => word.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    re_path(&text)
}

fn blocked(lockout: &Lockout) -> (Leg, &Explanation) {
    match lockout {
        Lockout::Blocked { leg, answer, .. } => (*leg, answer),
        other => panic!("expected a blocked packet, got {other}"),
    }
}

fn decided_line(answer: &Explanation) -> Option<usize> {
    match &answer.decided_by {
        Decision::Rule(rule) => rule.origin.as_ref().map(|o| o.line),
        Decision::Policy { .. } => None,
    }
}

#[test]
fn a_drop_by_the_servers_own_address_is_refused() {
    let lockout = refusal(
        r#"allow_tcp(22);
rule(#{ dst: "192.0.2.1", proto: "tcp", dport: 22, action: "drop" });"#,
    );
    let (leg, answer) = blocked(&lockout);
    assert_eq!(leg, Leg::NewConnection);
    assert_eq!(decided_line(answer), Some(2));
    // Certain: the address is known. Only the baseline's loopback accept
    // (the interface is unknown) was passed over.
    assert!(
        answer.doubts.iter().all(|d| d.rule.origin.is_none()),
        "{:?}",
        answer.doubts
    );
    assert_eq!(
        message(&lockout),
        "refusing to apply: this SSH session would be cut off. A new connection from \
         192.0.2.2 to port 22 would be dropped by FWS-INPUT-DENY rule 1 (fw.rhai:2:1): \
         -d 192.0.2.1/32 -p tcp -m tcp --dport 22 -j DROP\n  \
         = hint: change the rule at fw.rhai:2:1 so it spares this session (192.0.2.2), or \
         pass --force if you are sure"
    );
}

#[test]
fn a_drop_by_source_port_range_is_refused() {
    let lockout = refusal(
        r#"allow_tcp(22);
rule(#{ proto: "tcp", sport: "1024:65535", dport: 22, action: "drop" });"#,
    );
    let (leg, answer) = blocked(&lockout);
    assert_eq!(leg, Leg::NewConnection);
    assert_eq!(decided_line(answer), Some(2));
    let text = message(&lockout);
    assert!(text.contains("may be dropped by FWS-INPUT-DENY rule 1 (fw.rhai:2:1): -p tcp -m tcp --sport 1024:65535 --dport 22 -j DROP"), "{text}");
    assert!(
        text.contains("\n  it may match: it tests the source port, and a new connection comes from whichever port the client picks"),
        "{text}"
    );
}

#[test]
fn a_drop_on_an_interface_is_refused_since_the_sessions_is_unknown() {
    let lockout = refusal(
        r#"allow_tcp(22);
rule(#{ iface: "eth0", proto: "tcp", dport: 22, action: "drop" });"#,
    );
    let (_, answer) = blocked(&lockout);
    assert_eq!(decided_line(answer), Some(2));
    assert!(message(&lockout).contains(
        "it may match: it tests the incoming interface (`-i`), and the interface the session \
         arrives on cannot be known offline"
    ));
}

#[test]
fn an_accept_on_an_interface_does_not_count() {
    let lockout = refusal(
        r#"
rule(#{ iface: "eth0", proto: "tcp", dport: 22, action: "accept" });"#,
    );
    let (_, answer) = blocked(&lockout);
    assert_eq!(
        answer.decided_by.to_string(),
        "policy DROP of INPUT (baseline)"
    );
    let scripted: Vec<_> = answer
        .doubts
        .iter()
        .filter(|d| d.rule.origin.is_some())
        .collect();
    assert!(matches!(scripted[..], [d] if matches!(d.kind, DoubtKind::MayNotMatch(_))));
    assert_eq!(
        message(&lockout),
        "refusing to apply: this SSH session could be cut off. A new connection from \
         192.0.2.2 to port 22 may be dropped by policy DROP of INPUT (baseline)\n  \
         FWS-INPUT-ALLOW rule 1 (fw.rhai:2:1): -i eth0 -p tcp -m tcp --dport 22 -j ACCEPT \
         would accept it, but may not match: it tests the incoming interface (`-i`), and the \
         interface the session arrives on cannot be known offline\n  \
         = hint: accept this session with a rule the guard can check, without an interface \
         or source port condition (for example `ssh_from(\"192.0.2.2\")`), or pass --force \
         if you are sure"
    );
}

#[test]
fn redirecting_the_ssh_port_is_refused() {
    let lockout = refusal("allow_tcp(22);\nredirect_tcp(22, 2222);");
    let Lockout::Rewritten { rewrite, .. } = &lockout else {
        panic!("expected a rewrite, got {lockout}");
    };
    assert_eq!(rewrite.rule.origin.as_ref().map(|o| o.line), Some(2));
    assert_eq!(
        message(&lockout),
        "refusing to apply: this SSH session would be cut off. nat FWS-PREROUTING rule 1 \
         (fw.rhai:2:1): -p tcp -m tcp --dport 22 -j REDIRECT --to-ports 2222 would send a \
         new connection from 192.0.2.2 to port 22 to port 2222 instead\n  \
         = hint: keep port 22 out of the rewrite at fw.rhai:2:1, or first move the session \
         to where it leads (connect there and apply from that session); or pass --force if \
         you are sure"
    );
    // Another port's redirect is none of the guard's business.
    assert_eq!(
        check_as("allow_tcp(22);\nredirect_tcp(80, 8080);", SESSION).unwrap(),
        []
    );
}

#[test]
fn a_jump_to_nfqueue_or_a_foreign_chain_is_refused() {
    // A jump may accept, so it sits with the permissions, in script order:
    // written before the allow, it sees the session first.
    for target in ["NFQUEUE", "f2b-sshd"] {
        let lockout = refusal(&format!(
            "rule(#{{ proto: \"tcp\", dport: 22, action: \"jump:{target}\" }});\nallow_tcp(22);"
        ));
        let (_, answer) = blocked(&lockout);
        assert_eq!(decided_line(answer), Some(1));
        let text = message(&lockout);
        assert!(
            text.contains(&format!(
                "may be dropped by FWS-INPUT-ALLOW rule 1 (fw.rhai:1:1): -p tcp -m tcp --dport \
                 22 -j {target}\n  it hands the packet to `{target}`, which cannot be \
                 followed offline: the guard assumes the worst of it\n  = hint: change \
                 the rule at fw.rhai:1:1 so this session does not go to `{target}`"
            )),
            "{text}"
        );
        // Written after the allow, it never sees the session.
        check_as(
            &format!(
                "allow_tcp(22);\nrule(#{{ proto: \"tcp\", dport: 22, action: \"jump:{target}\" }});"
            ),
            SESSION,
        )
        .unwrap_or_else(|lockout| panic!("{lockout}"));
    }
}

#[test]
fn dropping_the_replies_is_refused() {
    let lockout = refusal(
        r#"baseline(#{ established: false });
policy("output", "drop");
allow_tcp(22);"#,
    );
    let (leg, answer) = blocked(&lockout);
    assert_eq!(leg, Leg::Reply(&[TcpFlag::Syn, TcpFlag::Ack]));
    assert_eq!(answer.hook, Hook::Output);
    assert_eq!(
        message(&lockout),
        "refusing to apply: this SSH session would be cut off. This server's replies with \
         SYN,ACK from port 22 to 192.0.2.2 would be dropped by policy DROP of OUTPUT \
         (fw.rhai:2:1)\n  \
         = hint: let the replies out first (keep the baseline's `established` rule, or \
         accept output from port 22), or pass --force if you are sure"
    );
    // With the baseline's established rule, the same policy is fine.
    assert_eq!(
        check_as("policy(\"output\", \"drop\");\nallow_tcp(22);", SESSION).unwrap(),
        []
    );
}

#[test]
fn a_drop_of_replies_by_outgoing_interface_is_refused() {
    let lockout = refusal(
        r#"allow_tcp(22);
rule(#{ chain: "output", oface: "eth1", action: "drop" });"#,
    );
    let (leg, answer) = blocked(&lockout);
    assert!(matches!(leg, Leg::Reply(_)));
    assert_eq!(decided_line(answer), Some(2));
    assert!(message(&lockout).contains("it tests the outgoing interface (`-o`)"));
}

#[test]
fn packets_of_an_open_session_must_get_in_too() {
    // Only new connections to 22 are let in, and without the baseline's
    // established rule the rest of the session is not.
    let lockout = refusal(
        r#"baseline(#{ established: false });
rule(#{ proto: "tcp", dport: 22, state: "new", action: "accept" });"#,
    );
    let (leg, _) = blocked(&lockout);
    assert_eq!(leg, Leg::FromClient(&[TcpFlag::Ack]));
    assert!(message(&lockout).contains(
        "In an open session, the client's packets with ACK from 192.0.2.2 to port 22 would be \
         dropped by policy DROP of INPUT (baseline)"
    ));
}

#[test]
fn a_malformed_ssh_connection_is_refused_and_says_why() {
    for (text, why) in [
        ("", "it has 0 fields, not 4"),
        ("192.0.2.2 50022 192.0.2.1", "it has 3 fields, not 4"),
        (
            "192.0.2.2 50022 192.0.2.1 ssh",
            "the server port is not a number from 1 to 65535",
        ),
        (
            "host.example 50022 192.0.2.1 22",
            "the client address is not an IP address",
        ),
    ] {
        let lockout = check_as("allow_tcp(22);", text).unwrap_err();
        assert!(matches!(lockout, Lockout::Malformed(_)));
        assert_eq!(
            lockout.to_string(),
            format!(
                "refusing to apply: `SSH_CONNECTION` is set, but not as sshd writes it \
                 (`client_ip client_port server_ip server_port`): {why}. The lockout guard \
                 cannot tell which session to keep reachable, so it refuses rather than \
                 guess\n  = hint: run apply from the SSH session itself, or pass --force if \
                 you are sure"
            )
        );
    }
}

#[test]
fn limit_tcp_on_the_ssh_port_is_a_warning_naming_the_connection() {
    let warnings = check_as("limit_tcp(22);", SESSION).expect("not a refusal");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let text = warnings[0].to_string();
    let text = &text[text.find("fw.rhai").unwrap()..];
    assert_eq!(
        text,
        "fw.rhai:1:1 drops this client's 7th new SSH connection within 30 s \
         (FWS-INPUT-LIMIT rule 1: -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m \
         recent --update --seconds 30 --hitcount 6 --name fws4-e5d11115 --rsource -j DROP); \
         it stays shut while the client keeps trying"
    );
    assert!(warnings[0].to_string().starts_with("limit_tcp at /"));
    let custom = check_as("limit_tcp(22, #{ hits: 2, seconds: 60 });", SESSION).unwrap();
    assert!(custom[0]
        .to_string()
        .contains("drops this client's 3rd new SSH connection within 60 s"));
    // Another port's limit says nothing.
    assert_eq!(
        check_as("allow_tcp(22);\nlimit_tcp(25);", SESSION).unwrap(),
        []
    );
}

#[test]
fn a_rate_limited_accept_is_a_warning_naming_the_burst() {
    let warnings = check_as(
        r#"rule(#{ proto: "tcp", dport: 22, limit: "5/minute", burst: 10, action: "accept" });"#,
        SESSION,
    )
    .expect("not a refusal");
    let text = warnings[0].to_string();
    assert!(
        text.contains("accepts new SSH connections at 5/minute with bursts of 10"),
        "{text}"
    );
    assert!(
        text.contains("the 11th new connection in a burst from 192.0.2.2 is dropped by policy DROP of INPUT (baseline)"),
        "{text}"
    );
}

#[test]
fn plans_that_keep_the_session_pass() {
    for script in [
        r#"ssh_from("192.0.2.2");"#,
        "allow_tcp(22);",
        r#"ssh_from("192.0.2.0/24"); block("198.51.100.0/24");"#,
        // The tutorial: scan drops test flags no working session sends.
        r#"drop_scans(); allow_tcp([80, 443]); ssh_from("192.0.2.2");"#,
        r#"policy("output", "drop"); allow_tcp(22);"#,
        // The interface known for loopback sessions only, so naming it for
        // another port is fine.
        r#"allow_tcp(22); rule(#{ iface: "eth0", proto: "tcp", dport: 80, action: "drop" });"#,
    ] {
        assert_eq!(check_as(script, SESSION).unwrap(), [], "{script}");
    }
}

#[test]
fn the_session_is_checked_in_its_own_family() {
    let v6 = "2001:db8::2 50022 2001:db8::1 22";
    assert_eq!(check_as(r#"ssh_from("2001:db8::2");"#, v6).unwrap(), []);
    let lockout = check_as(r#"ssh_from("192.0.2.2");"#, v6).unwrap_err();
    assert!(lockout
        .to_string()
        .contains("A new connection from 2001:db8::2 to port 22 would be dropped by policy DROP of INPUT (baseline)"));
    let dst = check_as(
        r#"allow_tcp(22); rule(#{ dst: "2001:db8::1", proto: "tcp", dport: 22, action: "drop" });"#,
        v6,
    )
    .unwrap_err();
    assert!(dst.to_string().contains("-d 2001:db8::1/128"), "{dst}");
    // sshd on a dual-stack socket reports IPv4 as mapped: still IPv4.
    assert_eq!(
        check_as(
            r#"ssh_from("192.0.2.2");"#,
            "::ffff:192.0.2.2 50022 ::ffff:192.0.2.1 22"
        )
        .unwrap(),
        []
    );
}

#[test]
fn a_session_over_loopback_is_known_to_arrive_on_lo() {
    let tunnel = "127.0.0.1 50022 127.0.0.1 22";
    // The baseline accepts loopback; nothing else is open.
    assert_eq!(check_as("allow_tcp(80);", tunnel).unwrap(), []);
    let off = check_as("baseline(#{ loopback: false }); allow_tcp(80);", tunnel).unwrap_err();
    assert!(off.to_string().contains("policy DROP of INPUT"), "{off}");
}

#[test]
fn the_other_ssh_port_is_the_one_protected() {
    let session = "192.0.2.2 50022 192.0.2.1 2222";
    assert!(check_as("allow_tcp(22);", session).is_err());
    assert_eq!(check_as("allow_tcp(2222);", session).unwrap(), []);
}

#[test]
fn a_plan_without_ssh_is_refused_with_the_policy_and_ssh_from_as_the_way() {
    let lockout = refusal("allow_tcp(80);");
    assert_eq!(
        message(&lockout),
        "refusing to apply: this SSH session would be cut off. A new connection from \
         192.0.2.2 to port 22 would be dropped by policy DROP of INPUT (baseline)\n  \
         = hint: allow it first (for example `ssh_from(\"192.0.2.2\")`), or pass --force if \
         you are sure"
    );
}

#[test]
fn a_jump_out_of_nat_prerouting_may_send_the_session_anywhere() {
    let lockout = refusal(
        r#"allow_tcp(22);
rule(#{ table: "nat", chain: "prerouting", proto: "tcp", action: "jump:DOCKER" });"#,
    );
    let Lockout::Rewritten { rewrite, .. } = &lockout else {
        panic!("expected a rewrite, got {lockout}");
    };
    assert_eq!(rewrite.rule.origin.as_ref().map(|o| o.line), Some(2));
    let text = message(&lockout);
    assert!(text.contains("could be cut off. nat FWS-PREROUTING rule 1 (fw.rhai:2:1): -p tcp -j DOCKER may send a new connection from 192.0.2.2 to port 22 to `DOCKER`, which cannot be followed offline"), "{text}");
}

#[test]
fn mangle_is_walked_too() {
    let lockout = refusal(
        r#"allow_tcp(22);
rule(#{ table: "mangle", chain: "prerouting", iface: "eth0", action: "drop" });"#,
    );
    let (_, answer) = blocked(&lockout);
    assert_eq!(decided_line(answer), Some(2));
    assert!(message(&lockout).contains("may be dropped by mangle FWS-PREROUTING rule 1"));
}

#[test]
fn a_set_holding_the_client_is_refused_and_one_without_it_is_not() {
    // Nine addresses are a set; the client is within one of its networks.
    let listed: Vec<String> = (10..18)
        .map(|i| format!("\"198.51.100.{i}\""))
        .chain(["\"192.0.2.0/28\"".to_string()])
        .collect();
    let script = format!("allow_tcp(22);\nblock([{}]);\n", listed.join(", "));
    let lockout = refusal(&script);
    let (leg, answer) = blocked(&lockout);
    assert_eq!(leg, Leg::NewConnection);
    assert_eq!(decided_line(answer), Some(2));
    let text = message(&lockout);
    assert!(
        text.contains(
            "would be dropped by FWS-INPUT-DENY rule 1 (fw.rhai:2:1): -m set --match-set fws-"
        ),
        "{text}"
    );
    // The same set without the client's network lets the session be.
    let spared = script.replace("\"192.0.2.0/28\"", "\"192.0.2.16/28\"");
    assert!(check_as(&spared, SESSION).is_ok());
}
