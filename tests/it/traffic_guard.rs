//! The lockout guard with real connections. A client namespace holds an
//! open TCP connection to the server's port 22, and `fwscript apply` runs
//! on the server with `SSH_CONNECTION` describing exactly that connection.
//! Each plan that could cut the session is refused (exit 1, the rule and
//! its script line named, the kernel unchanged, the session still carrying
//! bytes); applied anyway with `--force`, a new connection from the client
//! fails, which proves the refusal right. Both families, both backends.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::common::netns::{kernel_available, Run};
use crate::traffic::inside::inside;
use crate::traffic::probe::Reach::{self, Filtered, Open, Refused};
use crate::traffic::probe::{ANSWER, SILENCE};
use crate::traffic::topology::{Lan, CLIENT4, CLIENT6};

/// The families a case runs in, each on its own backend so both are
/// covered without running every case twice over.
const FAMILIES: [(IpAddr, &str); 2] = [(CLIENT4, "nft"), (CLIENT6, "legacy")];

/// sshd's side, as far as the firewall can tell: a listener on port 22.
struct Sshd(TcpListener);

impl Sshd {
    fn start(lan: &Lan) -> Sshd {
        let listener = inside(&lan.server.name, || TcpListener::bind(("::", 22)))
            .expect("listen on 22 in the server namespace");
        listener.set_nonblocking(true).expect("nonblocking");
        Sshd(listener)
    }

    fn accept(&self) -> TcpStream {
        let deadline = Instant::now() + ANSWER;
        loop {
            match self.0.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).expect("blocking");
                    return stream;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the session never arrived");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

/// An open connection from the client to the server's port 22: the admin's
/// SSH session, both ends held.
struct Session {
    client: TcpStream,
    server: TcpStream,
    /// The client's address, as the kernel chose it.
    client_ip: IpAddr,
    /// `SSH_CONNECTION` as sshd would write it for this connection.
    ssh_connection: String,
}

impl Session {
    /// Connects from the client to the server address of `family`'s.
    fn open(lan: &Lan, sshd: &Sshd, family: IpAddr) -> Session {
        let dst = SocketAddr::new(Lan::server_for(family), 22);
        let client = inside(&lan.client.name, || {
            TcpStream::connect_timeout(&dst, ANSWER)
        })
        .expect("the session connects before any rule");
        let server = sshd.accept();
        let local = client.local_addr().expect("local address");
        Session {
            client,
            server,
            client_ip: local.ip(),
            ssh_connection: format!("{} {} {} {}", local.ip(), local.port(), dst.ip(), 22),
        }
    }

    /// Bytes go both ways within `wait`.
    fn carries_on(&mut self, wait: Duration) -> bool {
        static ROUND: AtomicU32 = AtomicU32::new(0);
        let message = ROUND.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let (client, server) = (&mut self.client, &mut self.server);
        send_and_receive(client, server, &message, wait)
            && send_and_receive(server, client, &message, wait)
    }
}

fn send_and_receive(
    from: &mut TcpStream,
    to: &mut TcpStream,
    bytes: &[u8],
    wait: Duration,
) -> bool {
    to.set_read_timeout(Some(wait)).expect("read timeout");
    let mut got = vec![0; bytes.len()];
    from.write_all(bytes).is_ok() && to.read_exact(&mut got).is_ok() && got == bytes
}

/// A server that already has a firewall (SSH open to all), so that the
/// kernel tracks the session from its first packet. On a server without
/// any rule, conntrack only starts with the first apply and picks an open
/// connection up mid-stream as NEW, which is not what these tests are
/// about (see docs/safety.md).
fn server_with_a_firewall(flavor: &'static str) -> Lan {
    let mut lan = Lan::new(flavor);
    lan.apply("allow_tcp(22);");
    lan
}

/// The server's rules in both families, without the packet counters that
/// legacy iptables-save prints for built-in chains even without `-c`.
fn rules(lan: &Lan) -> Vec<String> {
    lan.server
        .saves()
        .iter()
        .map(|save| {
            save.lines()
                .map(|line| match (line.starts_with(':'), line.rfind(" [")) {
                    (true, Some(at)) => &line[..at],
                    _ => line,
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// What became of a new connection from `src` to the server's port 22.
fn new_connection(lan: &Lan, src: IpAddr, expected: Reach) {
    lan.tcp_again(src, 22, expected);
}

/// A plan that could cut the session.
struct Case {
    /// Shell run in the server namespace first (a neighbour's chain).
    setup: &'static str,
    script: String,
    /// What the refusal must say, the rule's script line among it.
    says: Vec<String>,
    /// What a new connection from the client gets once forced through.
    forced: Reach,
    /// Whether the open session outlives the forced apply.
    session_outlives_force: bool,
}

/// Over the session, `case.script` is refused and changes nothing; forced,
/// it does what the refusal said.
fn refused(case: Case, family: IpAddr, flavor: &'static str) {
    let lan = server_with_a_firewall(flavor);
    if !case.setup.is_empty() {
        lan.server.sh(case.setup);
    }
    let sshd = Sshd::start(&lan);
    let mut session = Session::open(&lan, &sshd, family);
    let ssh_connection = session.ssh_connection.clone();
    let env = [("SSH_CONNECTION", ssh_connection.as_str())];
    let before = rules(&lan);

    let run = lan.run_with(&["apply"], &case.script, &env).expect(1);
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr.starts_with("error: refusing to apply: "),
        "{run:?}"
    );
    for part in &case.says {
        assert!(
            run.stderr.contains(part.as_str()),
            "the refusal does not say {part:?}:\n{}",
            run.stderr
        );
    }
    assert!(
        run.stderr.contains("or pass --force if you are sure"),
        "{run:?}"
    );
    assert_eq!(rules(&lan), before, "a refused apply changed the kernel");
    assert!(
        session.carries_on(ANSWER),
        "the session died with nothing applied"
    );
    new_connection(&lan, session.client_ip, Open);

    // The refusal was right: forced through, the client cannot come back.
    lan.run_with(&["apply", "--force"], &case.script, &env)
        .expect(0);
    assert_ne!(rules(&lan), before);
    new_connection(&lan, session.client_ip, case.forced);
    if case.session_outlives_force {
        assert!(
            session.carries_on(ANSWER),
            "the forced plan cut the open session"
        );
    } else {
        assert!(
            !session.carries_on(SILENCE),
            "the forced plan left the session working"
        );
    }
}

/// The line a rule came from, as a refusal names it.
fn line(n: u32) -> String {
    format!("other.rhai:{n}:1")
}

fn server_of(family: IpAddr) -> IpAddr {
    Lan::server_for(family)
}

fn prefix_len(family: IpAddr) -> u8 {
    if family.is_ipv4() {
        32
    } else {
        128
    }
}

#[test]
fn a_drop_by_the_servers_own_address_is_refused() {
    if !kernel_available() {
        return;
    }
    for (family, flavor) in FAMILIES {
        let server = server_of(family);
        let case = Case {
            setup: "",
            script: format!(
                "allow_tcp(22);\nrule(#{{ dst: \"{server}\", proto: \"tcp\", dport: 22, action: \"drop\" }});"
            ),
            says: vec![
                "would be dropped by FWS-INPUT-DENY rule 1 (/".into(),
                format!(
                    "{}): -d {server}/{} -p tcp -m tcp --dport 22 -j DROP",
                    line(2),
                    prefix_len(family)
                ),
            ],
            forced: Filtered,
            // The deny stage comes before the baseline's accept of
            // established packets: forced, the drop cuts the open session too.
            session_outlives_force: false,
        };
        refused(case, family, flavor);
    }
}

#[test]
fn a_drop_by_source_port_range_is_refused() {
    if !kernel_available() {
        return;
    }
    for (family, flavor) in FAMILIES {
        let case = Case {
            setup: "",
            script: "allow_tcp(22);\nrule(#{ proto: \"tcp\", sport: \"1024:65535\", dport: 22, action: \"drop\" });".into(),
            says: vec![
                "may be dropped by FWS-INPUT-DENY rule 1 (/".into(),
                format!("{}): -p tcp -m tcp --sport 1024:65535 --dport 22 -j DROP", line(2)),
                "a new connection comes from whichever port the client picks".into(),
            ],
            forced: Filtered,
            // The deny stage comes before the baseline's accept of
            // established packets: forced, the drop cuts the open session too.
            session_outlives_force: false,
        };
        refused(case, family, flavor);
    }
}

#[test]
fn a_drop_on_the_interface_the_session_uses_is_refused() {
    if !kernel_available() {
        return;
    }
    for (family, flavor) in FAMILIES {
        let case = Case {
            setup: "",
            script: "allow_tcp(22);\nrule(#{ iface: \"eth0\", proto: \"tcp\", dport: 22, action: \"drop\" });".into(),
            says: vec![
                format!("{}): -i eth0 -p tcp -m tcp --dport 22 -j DROP", line(2)),
                "the interface the session arrives on cannot be known offline".into(),
            ],
            forced: Filtered,
            // The deny stage comes before the baseline's accept of
            // established packets: forced, the drop cuts the open session too.
            session_outlives_force: false,
        };
        refused(case, family, flavor);
    }
}

#[test]
fn an_accept_on_an_interface_is_not_counted_on() {
    if !kernel_available() {
        return;
    }
    for (family, flavor) in FAMILIES {
        // The admin thought the session came in on eth1; it comes in on
        // eth0, which the guard could not have known either.
        let case = Case {
            setup: "",
            script: "\nrule(#{ iface: \"eth1\", proto: \"tcp\", dport: 22, action: \"accept\" });"
                .into(),
            says: vec![
                "may be dropped by policy DROP of INPUT (baseline)".into(),
                format!("{}): -i eth1 -p tcp -m tcp --dport 22 -j ACCEPT would accept it, but may not match", line(2)),
                "ssh_from(".into(),
            ],
            forced: Filtered,
            session_outlives_force: true,
        };
        refused(case, family, flavor);
    }
}

#[test]
fn redirecting_the_ssh_port_is_refused() {
    if !kernel_available() {
        return;
    }
    for (family, flavor) in FAMILIES {
        let case = Case {
            setup: "",
            script: "allow_tcp(22);\nredirect_tcp(22, 2222);".into(),
            says: vec![
                "nat FWS-PREROUTING rule 1 (/".into(),
                format!(
                    "{}): -p tcp -m tcp --dport 22 -j REDIRECT --to-ports 2222 would send a new connection",
                    line(2)
                ),
                "to port 2222 instead".into(),
            ],
            // Nothing listens on 2222: the client's next login is refused.
            forced: Refused,
            session_outlives_force: true,
        };
        refused(case, family, flavor);
    }
}

#[test]
fn a_jump_to_nfqueue_is_refused() {
    if !kernel_available() {
        return;
    }
    for (family, flavor) in FAMILIES {
        let case = Case {
            setup: "",
            // Before the allow: a jump sits with the permissions, in script
            // order, so only written first does it see the session.
            script:
                "rule(#{ proto: \"tcp\", dport: 22, action: \"jump:NFQUEUE\" });\nallow_tcp(22);"
                    .into(),
            says: vec![
                format!("{}): -p tcp -m tcp --dport 22 -j NFQUEUE", line(1)),
                "it hands the packet to `NFQUEUE`, which cannot be followed offline".into(),
            ],
            // No program reads the queue: the kernel drops what it holds.
            forced: Filtered,
            session_outlives_force: true,
        };
        refused(case, family, flavor);
    }
}

#[test]
fn a_jump_to_a_neighbours_chain_is_refused() {
    if !kernel_available() {
        return;
    }
    // fail2ban has banned the admin's network, in a chain of its own.
    let setup = "$IPT -N f2b-sshd && $IPT -A f2b-sshd -s 192.0.2.0/24 -j DROP && \
                 $IP6T -N f2b-sshd && $IP6T -A f2b-sshd -s 2001:db8::/32 -j DROP";
    for (family, flavor) in FAMILIES {
        let case = Case {
            setup,
            // Before the allow: a jump sits with the permissions, in script
            // order, so only written first does it see the session.
            script:
                "rule(#{ proto: \"tcp\", dport: 22, action: \"jump:f2b-sshd\" });\nallow_tcp(22);"
                    .into(),
            says: vec![
                format!("{}): -p tcp -m tcp --dport 22 -j f2b-sshd", line(1)),
                "it hands the packet to `f2b-sshd`, which cannot be followed offline".into(),
            ],
            forced: Filtered,
            session_outlives_force: true,
        };
        refused(case, family, flavor);
    }
}

#[test]
fn dropping_the_replies_is_refused() {
    if !kernel_available() {
        return;
    }
    for (family, flavor) in FAMILIES {
        let case = Case {
            setup: "",
            script:
                "baseline(#{ established: false });\npolicy(\"output\", \"drop\");\nallow_tcp(22);"
                    .into(),
            says: vec![
                "This server's replies with SYN,ACK from port 22 to".into(),
                "would be dropped by policy DROP of OUTPUT (/".into(),
                format!("{})", line(2)),
                "let the replies out first".into(),
            ],
            forced: Filtered,
            // The open session's replies go the same way.
            session_outlives_force: false,
        };
        refused(case, family, flavor);
    }
}

#[test]
fn a_malformed_ssh_connection_is_refused_unless_forced() {
    if !kernel_available() {
        return;
    }
    for (family, flavor) in FAMILIES {
        let lan = server_with_a_firewall(flavor);
        let sshd = Sshd::start(&lan);
        let mut session = Session::open(&lan, &sshd, family);
        // The script would lock the client out: only a working guard
        // stands between it and the kernel.
        let script = "allow_tcp(80);";
        let before = rules(&lan);
        for (value, why) in [
            ("", "it has 0 fields, not 4"),
            ("192.0.2.2 50022", "it has 2 fields, not 4"),
            (
                "192.0.2.2 50022 192.0.2.1 ssh",
                "the server port is not a number from 1 to 65535",
            ),
        ] {
            let run: Run = lan
                .run_with(&["apply"], script, &[("SSH_CONNECTION", value)])
                .expect(1);
            assert!(
                run.stderr.contains(&format!(
                    "`SSH_CONNECTION` is set, but not as sshd writes it (`client_ip \
                     client_port server_ip server_port`): {why}."
                )),
                "{run:?}"
            );
            assert!(
                run.stderr.contains("pass --force if you are sure"),
                "{run:?}"
            );
            assert_eq!(rules(&lan), before, "{value:?} changed the kernel");
            assert!(session.carries_on(ANSWER));
        }
        lan.run_with(&["apply", "--force"], script, &[("SSH_CONNECTION", "junk")])
            .expect(0);
        new_connection(&lan, session.client_ip, Filtered);
    }
}

#[test]
fn plans_that_keep_the_session_are_applied() {
    if !kernel_available() {
        return;
    }
    for (family, flavor) in FAMILIES {
        let lan = server_with_a_firewall(flavor);
        let sshd = Sshd::start(&lan);
        let mut session = Session::open(&lan, &sshd, family);
        let ssh_connection = session.ssh_connection.clone();
        let env = [("SSH_CONNECTION", ssh_connection.as_str())];
        for script in [
            format!("ssh_from(\"{}\");", session.client_ip),
            "allow_tcp(22);".to_string(),
            format!(
                "drop_scans();\npolicy(\"output\", \"drop\");\nssh_from(\"{}\");",
                session.client_ip
            ),
        ] {
            let run = lan.run_with(&["apply"], &script, &env).expect(0);
            assert!(!run.stderr.contains("refusing"), "{run:?}");
            assert!(!run.stderr.contains("WARN"), "{run:?}");
            assert!(session.carries_on(ANSWER), "{script}");
            new_connection(&lan, session.client_ip, Open);
        }
    }
}

#[test]
fn limit_tcp_on_the_ssh_port_warns_and_drops_the_seventh_connection() {
    if !kernel_available() {
        return;
    }
    for (family, flavor) in FAMILIES {
        let lan = server_with_a_firewall(flavor);
        let sshd = Sshd::start(&lan);
        let mut session = Session::open(&lan, &sshd, family);
        let run = lan
            .run_with(
                &["apply"],
                "limit_tcp(22);",
                &[("SSH_CONNECTION", &session.ssh_connection)],
            )
            .expect(0);
        assert!(
            run.stderr.contains("warning: limit_tcp at /")
                && run.stderr.contains(&format!(
                    "{} drops this client's 7th new SSH connection within 30 s",
                    line(1)
                )),
            "{run:?}"
        );
        assert!(session.carries_on(ANSWER));
        // The warning tells the truth: six get in, the seventh does not.
        for _ in 0..6 {
            new_connection(&lan, session.client_ip, Open);
        }
        new_connection(&lan, session.client_ip, Filtered);
        assert!(
            session.carries_on(ANSWER),
            "the open session is not counted"
        );
    }
}

/// The position of `rule` (`-A INPUT …` as `-S` prints it) in INPUT.
fn position_in_input(lan: &Lan, tool: &str, rule: &str) -> usize {
    let input = lan.server.sh(&format!("{tool} -S INPUT"));
    let rules: Vec<&str> = input.lines().filter(|l| l.starts_with("-A ")).collect();
    rules
        .iter()
        .position(|l| *l == rule)
        .unwrap_or_else(|| panic!("no `{rule}` in\n{input}"))
        + 1
}

/// An admin's "default deny" appended after fwscript's accepting hook is
/// harmless until the next apply moves the hook to the end, below it: then
/// it drops everything, the open session too. Over SSH that apply is
/// refused, naming the rule; forced, the session dies, which proves the
/// refusal right.
#[test]
fn an_apply_that_moves_the_hook_below_an_admins_drop_is_refused() {
    if !kernel_available() {
        return;
    }
    for (family, flavor) in FAMILIES {
        let lan = server_with_a_firewall(flavor);
        let script = lan.script().unwrap().to_str().unwrap().to_string();
        let sshd = Sshd::start(&lan);
        let mut session = Session::open(&lan, &sshd, family);
        let ssh_connection = session.ssh_connection.clone();
        let env = [("SSH_CONNECTION", ssh_connection.as_str())];
        lan.server
            .sh("$IPT -A INPUT -j DROP && $IP6T -A INPUT -j DROP");
        let (tool, name) = match family.is_ipv4() {
            true => ("$IPT", "iptables"),
            false => ("$IP6T", "ip6tables"),
        };
        let at = position_in_input(&lan, tool, "-A INPUT -j DROP");
        assert!(
            session.carries_on(ANSWER),
            "the drop after the hook is not reached yet"
        );
        new_connection(&lan, session.client_ip, Open);
        let before = rules(&lan);

        // Without SSH: a warning that says what the move does.
        let plan = lan.fwscript(&["plan", &script]).expect(2);
        let fam = if family.is_ipv4() { "ipv4" } else { "ipv6" };
        assert!(
            plan.stderr.contains(&format!(
                "warning: {fam} filter INPUT rule {at} is not fwscript's and comes after its \
                 accepting hook, which apply moves below it: from then on it drops every \
                 packet before the script's allow rules see it, established connections (an \
                 SSH session) included: `-j DROP`"
            )),
            "{plan:#?}"
        );
        let json = lan.fwscript(&["plan", "--json", &script]).expect(2);
        let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        let drops: Vec<&serde_json::Value> = value["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["kind"] == "catch_all_drop")
            .collect();
        assert_eq!(drops.len(), 2, "both families: {value:#}");
        assert!(drops
            .iter()
            .all(|w| w["hook_moves"] == true && w["rule"] == "-j DROP"));

        // Over SSH: refused, dry run or not, naming the rule and where it is.
        for args in [&["apply", "--dry-run", &script][..], &["apply", &script]] {
            let run = lan.run_with_env(args, &env).expect(1);
            assert!(run.stdout.is_empty(), "{run:#?}");
            let says = [
                format!(
                    "error: refusing to apply: this SSH session would be cut off. A new \
                     connection from {} to port 22 would be dropped by {fam} filter INPUT rule \
                     {at}, which is not fwscript's: `-j DROP`",
                    session.client_ip
                ),
                "it comes after fwscript's accepting hook now, and this apply moves the hook \
                 to the end of INPUT, below it, where the rule decides first"
                    .to_string(),
                format!(
                    "= hint: delete that rule (`{name} -D INPUT {at}`) or move it above \
                     fwscript's hook"
                ),
                "or pass --force to apply anyway if you are sure".to_string(),
            ];
            for part in says {
                assert!(run.stderr.contains(&part), "no {part:?} in\n{}", run.stderr);
            }
            assert_eq!(rules(&lan), before, "a refused apply changed the kernel");
            assert!(
                session.carries_on(ANSWER),
                "the session died with nothing applied"
            );
        }
        new_connection(&lan, session.client_ip, Open);

        // The refusal was right: forced, nothing gets in, the session dies.
        let forced = lan
            .run_with_env(&["apply", "--force", &script], &env)
            .expect(0);
        assert!(
            forced
                .stdout
                .contains("hook moved to the end, below the 1 rule that came after it"),
            "{forced:#?}"
        );
        let input = lan.server.sh(&format!("{tool} -S INPUT"));
        assert!(input.trim_end().ends_with("-j FWS-INPUT"), "{input}");
        assert!(
            !session.carries_on(SILENCE),
            "the forced move left the session working"
        );
        new_connection(&lan, session.client_ip, Filtered);
    }
}

/// Unknown means refuse: an inline IPS's `-j NFQUEUE` appended after the
/// hook hands every SSH packet to a program the guard cannot see. Over SSH
/// the move is refused, saying why; forced, with no program on the queue,
/// the kernel drops the session's packets, which proves the refusal right.
#[test]
fn an_apply_that_moves_the_hook_below_an_nfqueue_is_refused() {
    if !kernel_available() {
        return;
    }
    let (family, flavor) = FAMILIES[0];
    let lan = server_with_a_firewall(flavor);
    let script = lan.script().unwrap().to_str().unwrap().to_string();
    let sshd = Sshd::start(&lan);
    let mut session = Session::open(&lan, &sshd, family);
    let ssh_connection = session.ssh_connection.clone();
    let env = [("SSH_CONNECTION", ssh_connection.as_str())];
    lan.server
        .sh("$IPT -A INPUT -p tcp --dport 22 -j NFQUEUE --queue-num 7");
    let at = position_in_input(
        &lan,
        "$IPT",
        "-A INPUT -p tcp -m tcp --dport 22 -j NFQUEUE --queue-num 7",
    );
    assert!(session.carries_on(ANSWER), "the queue is not reached yet");
    let before = rules(&lan);

    let run = lan.run_with_env(&["apply", &script], &env).expect(1);
    for part in [
        format!(
            "error: refusing to apply: this SSH session could be cut off. A new connection \
             from {} to port 22 may be dropped by ipv4 filter INPUT rule {at}, which is not \
             fwscript's: `-p tcp -m tcp --dport 22 -j NFQUEUE --queue-num 7`",
            session.client_ip
        ),
        "it hands the packet to `NFQUEUE`, whose verdict the guard cannot know offline, so \
         it counts as a drop"
            .to_string(),
        format!("= hint: delete that rule (`iptables -D INPUT {at}`)"),
    ] {
        assert!(run.stderr.contains(&part), "no {part:?} in\n{}", run.stderr);
    }
    assert_eq!(rules(&lan), before, "a refused apply changed the kernel");
    assert!(session.carries_on(ANSWER));

    lan.run_with_env(&["apply", "--force", &script], &env)
        .expect(0);
    assert!(
        !session.carries_on(SILENCE),
        "nothing listens on queue 7, yet the session lives"
    );
    new_connection(&lan, session.client_ip, Filtered);
}

/// A RETURN in INPUT hands packets to the chain's policy: harmless while
/// it accepts, a cut once fwscript's baseline closes it. On a first apply
/// over SSH (no hook yet) that is refused; forced, the session dies.
#[test]
fn a_first_apply_that_closes_the_policy_behind_a_return_is_refused() {
    if !kernel_available() {
        return;
    }
    let (family, flavor) = FAMILIES[0];
    let lan = Lan::new(flavor);
    let sshd = Sshd::start(&lan);
    let mut session = Session::open(&lan, &sshd, family);
    let ssh_connection = session.ssh_connection.clone();
    let env = [("SSH_CONNECTION", ssh_connection.as_str())];
    lan.server.sh("$IPT -A INPUT -p tcp --dport 22 -j RETURN");
    assert!(session.carries_on(ANSWER), "the policy accepts for now");
    let script = "allow_tcp(22);\n";

    let run = lan.run_with(&["apply"], script, &env).expect(1);
    for part in [
        "would be dropped by ipv4 filter INPUT rule 1, which is not fwscript's: \
         `-p tcp -m tcp --dport 22 -j RETURN`",
        "it hands the packet back to INPUT's policy, which accepts now and which this apply \
         sets to DROP",
        "= hint: delete that rule (`iptables -D INPUT 1`) or make it accept the session's \
         packets",
    ] {
        assert!(run.stderr.contains(part), "no {part:?} in\n{}", run.stderr);
    }
    assert!(
        !lan.server.sh("$IPT -S").contains("FWS-"),
        "refused, yet written"
    );
    assert!(session.carries_on(ANSWER));

    lan.run_with(&["apply", "--force"], script, &env).expect(0);
    assert!(
        !session.carries_on(SILENCE),
        "the RETURN met the DROP policy, yet the session lives"
    );
}

/// The guard judges the foreign rules the move puts ahead in their order:
/// an admin who lets SSH in before the "default deny" keeps the session,
/// so the apply goes through and the ban of others holds.
#[test]
fn an_apply_that_moves_the_hook_below_an_accept_of_ssh_then_a_drop_goes_through() {
    if !kernel_available() {
        return;
    }
    for (family, flavor) in FAMILIES {
        let lan = server_with_a_firewall(flavor);
        let _web = lan.listen_tcp(8080);
        let script = "allow_tcp(22);\nallow_tcp(8080);";
        lan.run_with(&["apply"], script, &[]).expect(0);
        let sshd = Sshd::start(&lan);
        let mut session = Session::open(&lan, &sshd, family);
        let ssh_connection = session.ssh_connection.clone();
        let env = [("SSH_CONNECTION", ssh_connection.as_str())];
        lan.server.sh(
            "for t in $IPT $IP6T; do $t -A INPUT -p tcp --dport 22 -j ACCEPT && \
             $t -A INPUT -j DROP; done",
        );
        // Below the hook, the admin's drop is not reached yet.
        lan.tcp_again(session.client_ip, 8080, Open);
        let run = lan.run_with(&["apply"], script, &env).expect(0);
        assert!(!run.stderr.contains("refusing"), "{run:#?}");
        assert!(
            run.stdout
                .contains("hook moved to the end, below the 2 rules that came after it"),
            "{run:#?}"
        );
        assert!(session.carries_on(ANSWER));
        new_connection(&lan, session.client_ip, Open);
        // The admin's drop now decides first: port 8080, which the
        // script opens, is shut, as the warning said.
        assert!(
            run.stderr.contains("from then on it drops every packet"),
            "{run:#?}"
        );
        lan.tcp_again(session.client_ip, 8080, Filtered);
    }
}

/// The daemon: with the session in its environment it refuses the move
/// like `apply` (the session lives, the hook stays); without one it moves
/// the hook and says once what that does — the session dies, as it said.
#[test]
fn the_daemon_refuses_the_move_over_ssh_and_warns_once_without() {
    use crate::common::watch::Watch;

    if !kernel_available() {
        return;
    }
    let (family, flavor) = FAMILIES[0];
    for with_session in [true, false] {
        let lan = server_with_a_firewall(flavor);
        let sshd = Sshd::start(&lan);
        let mut session = Session::open(&lan, &sshd, family);
        let ssh_connection = session.ssh_connection.clone();
        let env: &[(&str, &str)] = match with_session {
            true => &[("SSH_CONNECTION", ssh_connection.as_str())],
            false => &[],
        };
        let watch = Watch::start_with(
            &lan.server,
            lan.dir(),
            "allow_tcp(22);\nallow_tcp(80);",
            1,
            env,
        );
        lan.server.sh("$IPT -A INPUT -j DROP");
        let at = position_in_input(&lan, "$IPT", "-A INPUT -j DROP");
        if with_session {
            watch.wait_log(
                &format!(
                    "refusing to apply: this SSH session would be cut off. A new connection from \
                     {} to port 22 would be dropped by ipv4 filter INPUT rule {at}, which is not \
                     fwscript's: `-j DROP`",
                    session.client_ip
                ),
                1,
            );
            let input = lan.server.sh("$IPT -S INPUT");
            assert!(input.trim_end().ends_with("-A INPUT -j DROP"), "{input}");
            assert!(session.carries_on(ANSWER), "{}", watch.log());
            new_connection(&lan, session.client_ip, Open);
        } else {
            let warning = format!(
                "ipv4 filter INPUT rule {at} is not fwscript's and comes after its accepting \
                 hook, which apply moves below it: from then on it drops every packet"
            );
            watch.wait_log(&warning, 1);
            watch.wait_log("hook moved to the end", 1);
            let input = lan.server.sh("$IPT -S INPUT");
            assert!(input.trim_end().ends_with("-j FWS-INPUT"), "{input}");
            assert!(
                !session.carries_on(SILENCE),
                "the warning said it would die"
            );
            new_connection(&lan, session.client_ip, Filtered);
            // Two more resyncs find the kernel in sync: said once.
            std::thread::sleep(Duration::from_millis(2500));
            assert_eq!(watch.log().matches(&warning).count(), 1, "{}", watch.log());
        }
    }
}
