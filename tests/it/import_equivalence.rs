//! The promise of `fwscript import`, proven with packets: each original
//! ruleset is loaded into one server namespace, the script imported from
//! it is applied with fwscript in another, and a grid of real packets
//! (sources, ports, protocols) gets the same verdict from both kernels;
//! `explain` on the imported script agrees with its kernel on the same
//! grid. Corpus: the classic tutorial's ruleset as typed in its text, a
//! reader's script from its comments, a ruleset ufw makes, one ferm makes,
//! a Docker host, a fail2ban host, and a host where fwscript's own rules
//! sit beside an admin's. Needs root; skips loudly without it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use fwscript::explain::{self, Packet, Transport, Verdict};
use fwscript::netfilter::{Family, Hook};
use fwscript::plan::family_of;

use crate::common::netns::{kernel_available, Netns, Run};
use crate::traffic::probe::{self, Reach};
use crate::traffic::topology::{
    Lan, CLIENT4, CLIENT6, OFFICE4, OFFICE6, OTHER4, OTHER6, SERVER4, SERVER6,
};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/import/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A kernel's verdict as a probe sees it. Every probed port has a
/// listener, so a reset is a REJECT's `tcp-reset`, not a closed port.
fn verdict(reach: Reach) -> Verdict {
    match reach {
        Reach::Open => Verdict::Accept,
        Reach::Refused | Reach::Unreachable => Verdict::Reject,
        Reach::Filtered => Verdict::Drop,
    }
}

const SOURCES: [IpAddr; 6] = [CLIENT4, OTHER4, OFFICE4, CLIENT6, OTHER6, OFFICE6];

/// Ports the corpus names, and some it does not.
const TCP_PORTS: [u16; 16] = [
    21, 22, 23, 25, 53, 80, 110, 143, 443, 465, 993, 995, 2222, 3306, 5432, 8083,
];
const UDP_PORTS: [u16; 4] = [53, 123, 443, 51820];

/// What one probe met in the original and in the imported script.
#[derive(Debug, Clone)]
struct Compared {
    what: String,
    family: Family,
    original: Verdict,
    imported: Verdict,
    explained: Verdict,
}

/// Runs `fwscript import` on the saves of `original`; `families` are the
/// ones given as files.
fn import(original: &Netns, families: &[Family], dir: &Path) -> Run {
    let [v4, v6] = original.saves();
    let mut args: Vec<String> = vec!["import".into()];
    for (family, text, flag, name) in [
        (Family::Ipv4, v4, "--from", "original.v4"),
        (Family::Ipv6, v6, "--from6", "original.v6"),
    ] {
        if families.contains(&family) {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            args.push(flag.into());
            args.push(path.display().to_string());
        }
    }
    let output = Command::new(env!("CARGO_BIN_EXE_fwscript"))
        .args(&args)
        .output()
        .expect("fwscript runs");
    Run::from(output)
}

/// Sends the grid to both servers at once and compares, for the sources
/// of `families`.
fn compare(original: &Lan, imported: &Lan, script: &Path, families: &[Family]) -> Vec<Compared> {
    let sources: Vec<IpAddr> = SOURCES
        .into_iter()
        .filter(|s| families.contains(&family_of(s)))
        .collect();
    let plan = fwscript::script::evaluate(script).expect("the imported script evaluates");
    let _listeners: Vec<_> = [original, imported]
        .iter()
        .flat_map(|lan| TCP_PORTS.map(|p| lan.listen_tcp(p)))
        .collect();
    let udp: Vec<_> = [original, imported]
        .iter()
        .map(|lan| {
            UDP_PORTS.map(|p| {
                (
                    udp_listener(&lan.server.name, SocketAddr::new(SERVER4, p)),
                    udp_listener(&lan.server.name, SocketAddr::new(SERVER6, p)),
                )
            })
        })
        .collect();
    let explained = |packet: Packet| explain::explain(&plan, &packet, Hook::Input).verdict;
    let mut out = Vec::new();
    // TCP: every source to every port, all at once, both servers.
    let probes: Vec<(IpAddr, u16)> = sources
        .iter()
        .flat_map(|&src| TCP_PORTS.map(|port| (src, port)))
        .collect();
    let results: Vec<(Reach, Reach)> = std::thread::scope(|scope| {
        let handles: Vec<_> = probes
            .iter()
            .map(|&(src, port)| {
                scope.spawn(move || {
                    let dst = SocketAddr::new(Lan::server_for(src), port);
                    let wait = probe::SILENCE;
                    (
                        probe::tcp_connect(&original.client.name, src, dst, wait),
                        probe::tcp_connect(&imported.client.name, src, dst, wait),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (&(src, port), (a, b)) in probes.iter().zip(results) {
        let packet = Packet {
            src: Some(src),
            dst: Some(Lan::server_for(src)),
            in_iface: Some("eth0".into()),
            ..Packet::new_tcp(family_of(&src), port)
        };
        out.push(Compared {
            family: family_of(&src),
            what: format!("tcp {src} → port {port}"),
            original: verdict(a),
            imported: verdict(b),
            explained: explained(packet),
        });
    }
    // UDP: does the datagram arrive?
    for &src in &sources {
        for (i, &port) in UDP_PORTS.iter().enumerate() {
            let dst = SocketAddr::new(Lan::server_for(src), port);
            let mut arrived = Vec::new();
            for (lan, listeners) in [original, imported].iter().zip(&udp) {
                probe::udp_send(&lan.client.name, src, dst, b"grid");
                let listener = if src.is_ipv4() {
                    &listeners[i].0
                } else {
                    &listeners[i].1
                };
                arrived.push(arrives(listener));
            }
            let seen = |ok: bool| if ok { Verdict::Accept } else { Verdict::Drop };
            let packet = Packet {
                src: Some(src),
                dst: Some(Lan::server_for(src)),
                in_iface: Some("eth0".into()),
                ..Packet::new(
                    family_of(&src),
                    Transport::Udp {
                        sport: None,
                        dport: Some(port),
                    },
                )
            };
            let explained = match explained(packet) {
                Verdict::Reject => Verdict::Drop,
                v => v,
            };
            out.push(Compared {
                family: family_of(&src),
                what: format!("udp {src} → port {port}"),
                original: seen(arrived[0]),
                imported: seen(arrived[1]),
                explained,
            });
        }
    }
    // Ping.
    for &src in &sources {
        let dst = Lan::server_for(src);
        let answered: Vec<bool> = [original, imported]
            .iter()
            .map(|lan| probe::ping(&lan.client.name, src, dst, probe::SILENCE))
            .collect();
        let seen = |ok: bool| if ok { Verdict::Accept } else { Verdict::Drop };
        let family = family_of(&src);
        let echo = if family == Family::Ipv4 { 8 } else { 128 };
        let packet = Packet {
            src: Some(src),
            dst: Some(dst),
            in_iface: Some("eth0".into()),
            ..Packet::new(family, Transport::Icmp { icmp_type: echo })
        };
        let explained = match explained(packet) {
            Verdict::Reject => Verdict::Drop,
            v => v,
        };
        out.push(Compared {
            family,
            what: format!("ping {src}"),
            original: seen(answered[0]),
            imported: seen(answered[1]),
            explained,
        });
    }
    out
}

fn udp_listener(netns: &str, addr: SocketAddr) -> std::net::UdpSocket {
    let socket = crate::traffic::inside::inside(netns, || std::net::UdpSocket::bind(addr))
        .unwrap_or_else(|e| panic!("listen on udp {addr} in {netns}: {e}"));
    socket.set_read_timeout(Some(probe::SILENCE)).unwrap();
    socket
}

/// Whether a datagram arrives before the silence ends; a signal that
/// interrupts the wait is no answer.
fn arrives(socket: &std::net::UdpSocket) -> bool {
    let mut buf = [0u8; 64];
    let deadline = std::time::Instant::now() + probe::SILENCE;
    loop {
        match socket.recv_from(&mut buf) {
            Ok(_) => return true,
            Err(e)
                if e.kind() == std::io::ErrorKind::Interrupted
                    && std::time::Instant::now() < deadline => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            // An ICMP error queued on the socket (for an earlier datagram of
            // this port): a reject reached us, nothing arrived.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::HostUnreachable
                        | std::io::ErrorKind::NetworkUnreachable
                ) =>
            {
                return false
            }
            Err(e) => panic!("udp receive: {e} ({:?})", e.kind()),
        }
    }
}

/// Static neighbours on both sides of the LAN: IPv6 works even where the
/// original ruleset drops neighbour discovery (as ferm's example does).
fn static_neighbours(lan: &Lan) {
    let mac = |ns: &Netns| ns.sh("cat /sys/class/net/eth0/address").trim().to_string();
    let (server_mac, client_mac) = (mac(&lan.server), mac(&lan.client));
    for addr in ["2001:db8::2", "2001:db8::3", "2001:db8:7::7"] {
        lan.server.sh(&format!(
            "ip -6 neigh replace {addr} lladdr {client_mac} dev eth0 nud permanent"
        ));
    }
    lan.client.sh(&format!(
        "ip -6 neigh replace 2001:db8::1 lladdr {server_mac} dev eth0 nud permanent"
    ));
}

/// A corpus: how its original is loaded, which families the import reads.
struct Corpus {
    name: &'static str,
    flavor: &'static str,
    families: &'static [Family],
    /// Loads the original into the server namespace.
    load: Box<dyn Fn(&Netns)>,
    /// Loads what a neighbour (Docker, fail2ban) keeps beside the imported
    /// script, after it is applied.
    beside: Box<dyn Fn(&Netns)>,
    /// Sources a neighbour's rules decide for: `explain` knows only the
    /// script, so it is not asked about them.
    neighbours_decide: &'static [IpAddr],
}

/// Runs one corpus; returns the script and the import's stderr for corpus
/// checks.
fn prove(corpus: Corpus) -> (String, String) {
    let (script, stderr, _) = prove_grid(corpus);
    (script, stderr)
}

/// [`prove`], with every probe's verdicts.
fn prove_grid(corpus: Corpus) -> (String, String, Vec<Compared>) {
    let dir = tempfile::tempdir().unwrap();
    let original = Lan::new(corpus.flavor);
    static_neighbours(&original);
    (corpus.load)(&original.server);
    let run = import(&original.server, corpus.families, dir.path());
    assert_eq!(run.code, 0, "{}: import failed: {run:?}", corpus.name);
    let script_path = dir.path().join("imported.rhai");
    std::fs::write(&script_path, &run.stdout).unwrap();
    let mut imported = Lan::new(corpus.flavor);
    static_neighbours(&imported);
    let applied = imported.apply(&run.stdout);
    assert_eq!(
        applied.code, 0,
        "{}: apply failed: {applied:?}\n{}",
        corpus.name, run.stdout
    );
    (corpus.beside)(&imported.server);
    let approximated_drops = run.stderr.contains("here the policy drops them");
    // Accepts left out behind a rule the import cannot say, and said so.
    let narrowed = run
        .stderr
        .contains("so the script is never wider than the original");
    let all = compare(&original, &imported, &script_path, &Family::ALL);
    // A family the import did not read gets the same rules as the one it
    // did: the client's ordinary address meets the same verdicts in both.
    if corpus.families.len() == 1 {
        for port in TCP_PORTS {
            let at = |src: IpAddr| {
                all.iter()
                    .find(|c| c.what == format!("tcp {src} → port {port}"))
                    .map(|c| c.imported)
            };
            assert_eq!(
                at(CLIENT4),
                at(CLIENT6),
                "{}: port {port} differs between the families:\n{all:#?}\n{}",
                corpus.name,
                run.stdout
            );
        }
    }
    let compared: Vec<&Compared> = all
        .iter()
        .filter(|c| corpus.families.contains(&c.family))
        .collect();
    let wrong: Vec<String> = compared
        .iter()
        .filter(|c| {
            let said = (approximated_drops
                && c.original == Verdict::Reject
                && c.imported == Verdict::Drop)
                || (narrowed && c.original == Verdict::Accept && c.imported != Verdict::Accept);
            let blind = corpus
                .neighbours_decide
                .iter()
                .any(|src| c.what.contains(&format!(" {src} ")));
            (c.original != c.imported && !said) || (c.explained != c.imported && !blind)
        })
        .map(|c| format!("{c:?}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{}: {} of {} probes differ:\n{}\n--- imported script:\n{}\n--- stderr:\n{}",
        corpus.name,
        wrong.len(),
        compared.len(),
        wrong.join("\n"),
        run.stdout,
        run.stderr
    );
    // Never wider, whatever was said: what the original does not accept,
    // the imported script does not either.
    let wider: Vec<String> = compared
        .iter()
        .filter(|c| c.original != Verdict::Accept && c.imported == Verdict::Accept)
        .map(|c| format!("{c:?}"))
        .collect();
    assert!(
        wider.is_empty(),
        "{}: the imported script is wider:\n{}\n{}",
        corpus.name,
        wider.join("\n"),
        run.stdout
    );
    // The grid is no formality: both kernels accept some and drop some.
    assert!(
        compared.iter().any(|c| c.imported == Verdict::Accept),
        "{}",
        corpus.name
    );
    assert!(
        compared.iter().any(|c| c.imported != Verdict::Accept),
        "{}",
        corpus.name
    );
    let compared = compared.into_iter().cloned().collect();
    (run.stdout, run.stderr, compared)
}

/// Runs a file of `iptables …` lines inside `netns`, with `iptables` its
/// flavour's tool.
fn run_commands(netns: &Netns, text: &str) {
    let script =
        format!("iptables() {{ \"$IPT\" \"$@\"; }}\nip6tables() {{ \"$IP6T\" \"$@\"; }}\n{text}");
    netns.sh(&script);
}

fn restore(netns: &Netns, family: &str, text: &str) {
    let tool = match family {
        "ipv4" => format!("{}-restore", netns.tool("iptables")),
        _ => format!("{}-restore", netns.tool("ip6tables")),
    };
    let path = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(path.path(), text).unwrap();
    netns.sh(&format!("{tool} < {}", path.path().display()));
}

fn nothing() -> Box<dyn Fn(&Netns)> {
    Box::new(|_| {})
}

#[test]
fn the_tutorials_ruleset_as_typed() {
    if !kernel_available() {
        return;
    }
    for flavor in ["nft", "legacy"] {
        let (script, stderr) = prove(Corpus {
            name: "tutorial",
            flavor,
            families: &[Family::Ipv4],
            load: Box::new(|ns| run_commands(ns, &fixture("tutorial.sh"))),
            beside: nothing(),
            neighbours_decide: &[],
        });
        assert!(script.contains("drop_scans();"), "{script}");
        assert!(stderr.contains("0 not imported"), "{stderr}");
    }
}

#[test]
fn the_readers_script_from_the_comments() {
    if !kernel_available() {
        return;
    }
    // Without its `-f` drop, which fwscript cannot say: with it, every
    // ICMP accept after it is left out (`left_out_drops_*` below, and the
    // import's unit tests).
    let (script, stderr) = prove(Corpus {
        name: "reader",
        flavor: "nft",
        families: &[Family::Ipv4],
        load: Box::new(|ns| {
            let text = format!(
                "{}\niptables -D INPUT -p icmp -f -j DROP\n",
                fixture("reader.sh")
            );
            run_commands(ns, &text)
        }),
        beside: nothing(),
        neighbours_decide: &[],
    });
    assert!(script.contains("limit_tcp(22, #{ hits: 2 });"), "{script}");
    assert!(stderr.contains(", 0 not imported"), "{stderr}");
}

/// The audit's widening: rules the import cannot say (`! -s`, an
/// `iprange` blocklist) that drop before accepts of the same packets. The
/// accepts after them are left out and said; the script is narrower
/// there, never wider: what the original drops stays dropped.
#[test]
fn left_out_drops_never_make_the_script_wider() {
    if !kernel_available() {
        return;
    }
    let (script, stderr, grid) = prove_grid(Corpus {
        name: "left-out drops",
        flavor: "nft",
        families: &[Family::Ipv4],
        load: Box::new(|ns| {
            run_commands(
                ns,
                "iptables -P INPUT DROP\n\
                 iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n\
                 iptables -A INPUT -p tcp --dport 22 -j ACCEPT\n\
                 iptables -A INPUT ! -s 203.0.113.0/24 -p tcp --dport 3306 -j DROP\n\
                 iptables -A INPUT -p udp --dport 53 -j ACCEPT\n\
                 iptables -A INPUT -m iprange --src-range 192.0.2.3-192.0.2.9 -j DROP\n\
                 iptables -A INPUT -p tcp --dport 3306 -j ACCEPT\n\
                 iptables -A INPUT -p tcp --dport 80 -j ACCEPT\n\
                 iptables -A INPUT -p icmp --icmp-type echo-request -j ACCEPT\n",
            )
        }),
        beside: nothing(),
        neighbours_decide: &[],
    });
    for line in [
        "-A INPUT ! -s 203.0.113.0/24 -p tcp -m tcp --dport 3306 -j DROP",
        "-A INPUT -m iprange --src-range 192.0.2.3-192.0.2.9 -j DROP",
        "-A INPUT -p tcp -m tcp --dport 3306 -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT",
    ] {
        assert!(
            script.contains(&format!("// NOT IMPORTED: {line}\n")),
            "{line}:\n{script}"
        );
        assert!(
            stderr.contains(&format!("not imported (ipv4): {line}: ")),
            "{line}:\n{stderr}"
        );
    }
    // Before the drops, and beside them, the rest is imported.
    assert!(script.contains("allow_tcp(22);"), "{script}");
    assert!(script.contains("allow_udp(53);"), "{script}");
    let at = |what: &str| {
        grid.iter()
            .find(|c| c.what == what)
            .unwrap_or_else(|| panic!("no probe `{what}`: {grid:#?}"))
    };
    // The blocklisted source: dropped by both, though the script's accept
    // of port 80 once let it in.
    let blocked = at(&format!("tcp {OTHER4} → port 80"));
    assert_eq!(
        (blocked.original, blocked.imported),
        (Verdict::Drop, Verdict::Drop)
    );
    let outsider = at(&format!("tcp {CLIENT4} → port 3306"));
    assert_eq!(
        (outsider.original, outsider.imported),
        (Verdict::Drop, Verdict::Drop)
    );
    // The price, said: the office's MySQL is dropped until written by hand.
    let office = at(&format!("tcp {OFFICE4} → port 3306"));
    assert_eq!(
        (office.original, office.imported),
        (Verdict::Accept, Verdict::Drop)
    );
}

/// ufw keeps its state in /etc/ufw; a mount namespace gives it a private
/// copy, so the host's own ufw configuration is never touched.
fn ufw(ns: &Netns, commands: &[&str]) {
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .args(["-a", "/etc/ufw/.", &copy.path().display().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "copy /etc/ufw");
    let mut script = format!(
        "mount --bind {} /etc/ufw && ufw --force enable >/dev/null",
        copy.path().display()
    );
    for command in commands {
        script.push_str(&format!(" && ufw {command} >/dev/null"));
    }
    let output = ns
        .command("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare runs");
    assert!(
        output.status.success(),
        "ufw in {}: {}",
        ns.name,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_ruleset_ufw_makes() {
    if !kernel_available() {
        return;
    }
    if !require("ufw") {
        return;
    }
    let (script, stderr) = prove(Corpus {
        name: "ufw",
        flavor: default_flavor(),
        families: &[Family::Ipv4, Family::Ipv6],
        load: Box::new(|ns| {
            ufw(
                ns,
                &[
                    "allow 22/tcp",
                    "allow 80/tcp",
                    "allow 443",
                    "deny 3306",
                    "limit 2222/tcp",
                    "allow from 203.0.113.7 to any port 5432 proto tcp",
                ],
            )
        }),
        beside: nothing(),
        neighbours_decide: &[],
    });
    // ufw's own plumbing fwscript cannot say is named, never dropped.
    assert!(
        script.contains("NOT IMPORTED: -A ufw-not-local -j DROP"),
        "{script}"
    );
    assert!(
        stderr.contains("not imported (ipv4): -A ufw-not-local -j DROP"),
        "{stderr}"
    );
    // That DROP (ufw-not-local: packets to no local address) comes before
    // ufw's user rules, and fwscript cannot say which packets it takes:
    // the user rules are left out with it, and said, so the script is
    // narrower than ufw's, never wider (the grid above holds it to that).
    assert!(
        script.contains(
            "NOT IMPORTED: -A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT\n\
             //   reached through: -A INPUT -j ufw-before-input → -A ufw-before-input -j ufw-user-input\n\
             //   why: it accepts packets that `-A ufw-not-local"
        ),
        "{script}"
    );
    assert!(
        stderr.contains("not imported (ipv4): -A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT: it accepts packets that"),
        "{stderr}"
    );
}

/// Whether `tool` is installed; without it the test skips loudly, except
/// under CI, where that fails.
fn require(tool: &str) -> bool {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(tool).is_file());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`{tool}` is missing and CI=true forbids skipping (.ci/install installs it)"
        );
        eprintln!("SKIP: `{tool}` is not installed");
    }
    found
}

/// The flavour the plain `iptables` is on this host, which is what ufw runs.
fn default_flavor() -> &'static str {
    let output = Command::new("iptables").arg("--version").output();
    match output {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("legacy") => "legacy",
        _ => "nft",
    }
}

const FERM: &str = r#"# A small ferm configuration: what a ferm user writes.
domain (ip ip6) {
    table filter {
        chain INPUT {
            policy DROP;
            mod state state INVALID DROP;
            mod state state (ESTABLISHED RELATED) ACCEPT;
            interface lo ACCEPT;
            proto icmp icmp-type echo-request ACCEPT;
            proto tcp dport (http https smtp) ACCEPT;
            proto tcp dport ssh saddr 203.0.113.7 ACCEPT;
            proto udp dport 53 ACCEPT;
            proto tcp dport 3306 REJECT reject-with tcp-reset;
        }
        chain OUTPUT policy ACCEPT;
        chain FORWARD policy DROP;
    }
}
"#;

#[test]
fn a_ruleset_ferm_makes() {
    if !kernel_available() {
        return;
    }
    if !require("ferm") {
        return;
    }
    // ferm prefers the legacy tools when both are installed.
    let (script, stderr) = prove(Corpus {
        name: "ferm",
        flavor: "legacy",
        families: &[Family::Ipv4, Family::Ipv6],
        load: Box::new(|ns| {
            let dir = tempfile::tempdir().unwrap();
            let conf = dir.path().join("ferm.conf");
            std::fs::write(&conf, FERM).unwrap();
            let output = ns.command("ferm").arg(&conf).output().expect("ferm runs");
            assert!(
                output.status.success(),
                "ferm: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }),
        beside: nothing(),
        neighbours_decide: &[],
    });
    assert!(script.contains("allow_tcp([80, 443, 25]);"), "{script}");
    // ferm's IPv6 has no neighbour discovery: the import keeps that.
    assert!(
        script.contains("icmp: false") || script.contains("icmp"),
        "{script}"
    );
    assert!(stderr.contains("import: "), "{stderr}");
}

#[test]
fn a_docker_host() {
    if !kernel_available() {
        return;
    }
    let text = fixture("docker-host.v4");
    // Docker keeps its chains: the imported side gets them back the way
    // Docker would, without the admin's INPUT rules.
    // Docker sets FORWARD's policy, never INPUT's.
    let dockers: String = text
        .lines()
        .filter(|l| !l.starts_with("-A INPUT") && !l.starts_with(":INPUT"))
        .map(|l| format!("{l}\n"))
        .collect();
    let (script, _) = prove(Corpus {
        name: "docker",
        flavor: "nft",
        families: &[Family::Ipv4],
        load: Box::new(move |ns| restore(ns, "ipv4", &text)),
        beside: Box::new(move |ns| {
            // Docker's part comes as Docker starts: the fixture without the
            // admin's rules, put in with --noflush beside fwscript's.
            let path = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(path.path(), &dockers).unwrap();
            ns.sh(&format!(
                "{}-restore --noflush < {}",
                ns.tool("iptables"),
                path.path().display()
            ));
        }),
        neighbours_decide: &[],
    });
    assert!(
        script.contains("// Docker's: -A FORWARD -j DOCKER-USER"),
        "{script}"
    );
}

#[test]
fn a_fail2ban_host() {
    if !kernel_available() {
        return;
    }
    // fail2ban bans the grid's OTHER addresses in both namespaces, as it
    // would at run time; on the imported side it starts after fwscript and
    // puts its jump at the top of INPUT.
    let ban = |ns: &Netns| {
        ns.sh(&format!(
            "$IPT -I f2b-sshd 1 -s {OTHER4} -j REJECT --reject-with icmp-port-unreachable && \
             $IP6T -I f2b-sshd 1 -s {OTHER6} -j REJECT --reject-with icmp6-port-unreachable"
        ));
    };
    let (script, stderr) = prove(Corpus {
        name: "fail2ban",
        flavor: "nft",
        families: &[Family::Ipv4, Family::Ipv6],
        load: Box::new(move |ns| {
            restore(ns, "ipv4", &fixture("fail2ban-host.v4"));
            restore(ns, "ipv6", &fixture("fail2ban-host.v6"));
            ban(ns);
        }),
        beside: Box::new(move |ns| {
            ns.sh("for t in \"$IPT\" \"$IP6T\"; do \
                   $t -N f2b-sshd && $t -A f2b-sshd -j RETURN && \
                   $t -I INPUT 1 -p tcp -m multiport --dports 22 -j f2b-sshd; done");
            ban(ns);
        }),
        neighbours_decide: &[OTHER4, OTHER6],
    });
    assert!(
        script.contains("// fail2ban's: -A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd"),
        "{script}"
    );
    assert!(
        stderr.contains("left to their owners (fail2ban)"),
        "{stderr}"
    );
}

#[test]
fn fwscripts_own_rules_beside_an_admins() {
    if !kernel_available() {
        return;
    }
    let tutorial = std::fs::read_to_string(format!(
        "{}/scripts/tutorial.rhai",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut first = Lan::new("nft");
    static_neighbours(&first);
    let mut applied = Lan::new("nft");
    static_neighbours(&applied);
    // The original: the tutorial applied, then an admin's hand-typed rule.
    assert_eq!(first.apply(&tutorial).code, 0);
    first.server.sh(&format!(
        "$IPT -I INPUT 1 -s {OTHER4} -p tcp --dport 80 -j DROP"
    ));
    let state = tempfile::tempdir().unwrap();
    let run = first.server.fwscript(state.path(), &["import"]);
    assert_eq!(run.code, 0, "{run:?}");
    let script = &run.stdout;
    assert!(
        script.contains("fwscript's own rules are in this ruleset"),
        "{script}"
    );
    let calls: Vec<&str> = script
        .lines()
        .filter(|l| !l.starts_with("//") && !l.trim().is_empty())
        .collect();
    assert_eq!(
        calls,
        [format!(
            "rule(#{{ proto: \"tcp\", src: \"{OTHER4}\", dport: 80, action: \"drop\" }});"
        )],
        "{script}"
    );
    // The tutorial's script plus what the import found beside it gives the
    // same verdicts as the kernel it was imported from.
    let combined = format!("{tutorial}\n{script}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("combined.rhai");
    std::fs::write(&path, &combined).unwrap();
    assert_eq!(applied.apply(&combined).code, 0);
    let compared = compare(&first, &applied, &path, &Family::ALL);
    let wrong: Vec<_> = compared
        .iter()
        .filter(|c| c.original != c.imported || c.explained != c.imported)
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}
