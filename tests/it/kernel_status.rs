//! `fwscript status` against real kernels: counters summed per script line
//! from real packets, `--rule` naming the line behind a kernel rule (also
//! after the lines moved, and after a rollback), drift, a pending confirm,
//! a daemon killed with -9, and another user than root. Needs root; skips
//! loudly without it (fails under CI).

use std::process::Command;

use serde_json::Value;

use crate::common::netns::{kernel_available, Netns, Run};
use crate::common::watch::Watch;
use crate::traffic::probe::Reach::Open;
use crate::traffic::topology::{Lan, CLIENT4, CLIENT6};

const SCRIPT: &str = "allow_tcp(80);\nallow_udp(5353);\nallow_tcp(8080);\n";

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"))
}

/// The counters entry of script line `line`.
fn line(status: &Value, line: u64) -> &Value {
    status["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["origin"]["line"] == line)
        .unwrap_or_else(|| panic!("no line {line} in {status}"))
}

/// The id in the comment of the server's IPv4 rule matching `needle`.
fn id_of(lan: &Lan, needle: &str) -> String {
    let save = lan.server.sh("$IPT -S");
    save.lines()
        .find(|l| l.contains(needle) && l.contains("fws:"))
        .and_then(|l| l.split("fws:").nth(1))
        .map(|rest| rest[..12].to_string())
        .unwrap_or_else(|| panic!("no rule with `{needle}` in\n{save}"))
}

#[test]
fn counters_are_summed_per_script_line_busiest_first() {
    if !kernel_available() {
        return;
    }
    for flavor in ["nft", "legacy"] {
        let mut lan = Lan::new(flavor);
        let _web = lan.listen_tcp(80);
        let _alt = lan.listen_tcp(8080);
        lan.apply(SCRIPT);
        for _ in 0..3 {
            lan.tcp_again(CLIENT4, 80, Open);
        }
        lan.tcp_again(CLIENT6, 80, Open);
        lan.tcp_again(CLIENT4, 8080, Open);

        let status = json(&lan.fwscript(&["status", "--json"]).expect(0));
        let web = line(&status, 1);
        // Each new connection's SYN is counted by the line's rule; what
        // follows is established and counted by the baseline.
        assert_eq!(web["packets"], 4, "{flavor}: {web}");
        assert_eq!(web["rules"], 2, "{flavor}: one rule per family");
        assert_eq!(web["source"], "allow_tcp(80);");
        assert_eq!(line(&status, 3)["packets"], 1, "{flavor}");
        assert_eq!(line(&status, 2)["packets"], 0, "{flavor}");
        let baseline = status["counters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == "baseline")
            .expect("the baseline's line");
        assert!(baseline["packets"].as_u64().unwrap() > 4, "{baseline}");
        assert_eq!(status["kernel"]["in_sync"], true);

        // The text: busiest first, the line's text beside its place.
        let text = lan.fwscript(&["status"]).expect(0).stdout;
        let order: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("allow_"))
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(
            order,
            ["allow_tcp(80);", "allow_tcp(8080);", "allow_udp(5353);"],
            "{flavor}:\n{text}"
        );
        assert!(text.contains("4 packets"), "{text}");
        assert!(text.contains("kernel: in sync"), "{text}");
    }
}

#[test]
fn a_rule_id_names_its_script_line_even_after_the_lines_moved_or_a_rollback() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    lan.apply(SCRIPT);
    let alt = id_of(&lan, "--dport 8080");
    let run = lan
        .fwscript(&["status", "--rule", &format!("fws:{alt}")])
        .expect(0);
    assert!(
        run.stdout.starts_with(&format!("fws:{alt}: "))
            && run.stdout.contains("fw.rhai:3:1 allow_tcp(8080);"),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains("ipv4 filter FWS-INPUT-ALLOW: "),
        "{run:#?}"
    );
    // Without the prefix too.
    let bare = lan.fwscript(&["status", "--rule", &alt]).expect(0);
    assert_eq!(bare.stdout, run.stdout);

    // Two lines on top: the kernel is in sync, nothing is written, but the
    // lines now read 5.
    lan.apply(&format!("// web\n\n{SCRIPT}"));
    let moved = lan.fwscript(&["status", "--rule", &alt]).expect(0);
    assert!(
        moved.stdout.contains("fw.rhai:5:1 allow_tcp(8080);"),
        "{moved:#?}"
    );

    // Another script, then a rollback: the rule is back, and so is its line.
    let run = lan.run_with(&["apply"], "allow_tcp(22);\n", &[]).expect(0);
    assert!(run.stdout.contains("applied"), "{run:#?}");
    let gone = lan.fwscript(&["status", "--rule", &alt]).expect(0);
    assert!(gone.stdout.contains("not in the kernel now"), "{gone:#?}");
    lan.fwscript(&["rollback"]).expect(0);
    let back = lan.fwscript(&["status", "--rule", &alt]).expect(0);
    assert!(
        back.stdout.contains("fw.rhai:5:1 allow_tcp(8080);")
            && back.stdout.contains("FWS-INPUT-ALLOW"),
        "{back:#?}"
    );

    // A hook names no line; an id nobody wrote is an error.
    let hook = id_of(&lan, "-A INPUT ");
    let run = lan.fwscript(&["status", "--rule", &hook]).expect(0);
    assert!(
        run.stdout.contains("jumps between its own chains"),
        "{run:#?}"
    );
    let run = lan
        .fwscript(&["status", "--rule", "fws:0000000000ff"])
        .expect(1);
    assert!(
        run.stderr
            .contains("no applied plan has the rule id `fws:0000000000ff`"),
        "{run:#?}"
    );
    let run = lan.fwscript(&["status", "--rule", "fws:nope"]).expect(1);
    assert!(run.stderr.contains("is not a rule id"), "{run:#?}");
}

#[test]
fn drift_a_pending_confirm_and_a_dead_daemon_are_told() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    lan.apply(SCRIPT);
    lan.server
        .sh("$IPT -I FWS-INPUT-ALLOW 1 -s 192.0.2.99 -j ACCEPT && $IP6T -F FWS-INPUT-ALLOW");
    let run = lan.fwscript(&["status"]).expect(0);
    assert!(
        run.stdout.contains("kernel: drifted: 4 changes"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("ipv4 filter: +0 \u{2212}1"), "{run:#?}");
    assert!(run.stdout.contains("ipv6 filter: +3 \u{2212}0"), "{run:#?}");
    assert!(run.stdout.contains("1 rules added"), "{run:#?}");
    let status = json(&lan.fwscript(&["status", "--json"]).expect(0));
    assert_eq!(status["kernel"]["in_sync"], false);
    assert_eq!(status["changed"], false);
    // Status only reads: the drift is still there.
    assert!(lan
        .server
        .sh("$IPT -S FWS-INPUT-ALLOW")
        .contains("192.0.2.99"));
    let script = lan.script().unwrap().to_str().unwrap().to_string();
    lan.fwscript(&["apply", &script]).expect(0);

    let run = lan
        .run_with(&["apply", "--confirm", "60"], "allow_tcp(22);\n", &[])
        .expect(0);
    assert!(run.stderr.contains("fwscript confirm"), "{run:#?}");
    let status = json(&lan.fwscript(&["status", "--json"]).expect(0));
    let left = status["pending_confirm"]["seconds_left"].as_u64().unwrap();
    assert!((1..=60).contains(&left), "{status}");
    let text = lan.fwscript(&["status"]).expect(0).stdout;
    assert!(text.contains("waits for `fwscript confirm`"), "{text}");
    lan.fwscript(&["confirm"]).expect(0);
    let status = json(&lan.fwscript(&["status", "--json"]).expect(0));
    assert_eq!(status["pending_confirm"], Value::Null);
    assert_eq!(status["applied"]["command"], "apply");
    assert_eq!(status["kernel"]["in_sync"], true);

    // A daemon, running and then killed without a word.
    lan.reset().expect(0);
    let netns = Netns::new("nft");
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Watch::start(&netns, dir.path(), "allow_tcp(22);\n", 60);
    let state = dir.path().join("state");
    let run = netns.fwscript(&state, &["status"]).expect(0);
    assert!(
        run.stdout.contains("daemon: `fwscript watch` (pid "),
        "{run:#?}"
    );
    let status = json(&netns.fwscript(&state, &["status", "--json"]).expect(0));
    assert_eq!(status["daemon"]["running"], true);
    assert_eq!(status["applied"]["command"], "watch");
    watch.kill();
    let status = json(&netns.fwscript(&state, &["status", "--json"]).expect(0));
    assert_eq!(status["daemon"]["running"], false, "{status}");
    let run = netns.fwscript(&state, &["status"]).expect(0);
    assert!(run.stdout.contains("daemon: not running"), "{run:#?}");
}

/// fwscript as `nobody`, in `netns`.
fn as_nobody(netns: &Netns, args: &[&str]) -> Run {
    let output = netns
        .command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_fwscript"))
        .args(args)
        .output()
        .expect("setpriv runs");
    Run::from(output)
}

#[test]
fn another_user_is_told_what_needs_root() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("nft");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    netns.fwscript(&state, &["reset"]).expect(0);
    let state = state.to_str().unwrap();
    // The scripts must be readable by nobody: a folder of its own.
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("fw.rhai");
    std::fs::write(&script, "allow_tcp(22);\n").unwrap();
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(scripts.path())
        .status()
        .unwrap();
    let script = script.to_str().unwrap();

    let run = as_nobody(&netns, &["--state-dir", state, "status"]).expect(0);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("state: must run as root"), "{run:#?}");
    assert!(said.contains("kernel: must run as root"), "{run:#?}");
    let run = as_nobody(&netns, &["--state-dir", state, "apply", script]).expect(1);
    assert!(
        run.stderr.starts_with("error: must run as root: "),
        "{run:#?}"
    );
    assert!(run.stderr.contains("hint: run it as root"), "{run:#?}");
    let run = as_nobody(
        &netns,
        &["--state-dir", "/nonexistent/fws", "apply", script],
    )
    .expect(1);
    assert!(
        run.stderr
            .starts_with("error: must run as root: cannot create the state folder"),
        "{run:#?}"
    );
    let run = as_nobody(&netns, &["try", script]).expect(1);
    assert!(
        run.stderr
            .starts_with("error: must run as root: `fwscript try` creates a network namespace"),
        "{run:#?}"
    );
    let run = as_nobody(&netns, &["--state-dir", state, "apply", "--json", script]).expect(1);
    let error: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("must run as root"),
        "{error}"
    );
    // What needs no root still works.
    as_nobody(&netns, &["check", script]).expect(0);
}
