//! What an operator meets at the terminal, against real kernels: `reset`
//! asks first on a terminal (and never without one), refuses `--json`
//! there without `--yes`, `--yes` and `--dry-run`; `--quiet` as the boot unit runs it; the warning when a
//! script forwards while the kernel does not. Needs root; skips loudly
//! without it (fails under CI).

use crate::cli::on_a_terminal;
use crate::common::netns::{kernel_available, Netns};

fn workdir(script: &str) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fw.rhai");
    std::fs::write(&path, script).unwrap();
    let state = dir.path().join("state");
    let (path, state) = (
        path.to_str().unwrap().to_string(),
        state.to_str().unwrap().to_string(),
    );
    (dir, path, state)
}

#[test]
fn reset_asks_on_a_terminal_and_only_there() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("nft");
    let (_dir, script, state) = workdir("allow_tcp(22);\n");
    let state_dir = std::path::Path::new(&state);
    netns.fwscript(state_dir, &["apply", &script]).expect(0);
    let applied = netns.saves();

    let dry = netns.fwscript(state_dir, &["reset", "--dry-run"]).expect(0);
    assert!(dry.stdout.contains("dry run: "), "{dry:#?}");
    assert!(dry.stdout.contains("delete chain FWS-INPUT"), "{dry:#?}");
    assert_eq!(netns.saves(), applied, "a dry run writes nothing");

    let reset = format!(
        "ip netns exec {} {} --state-dir {state} reset",
        netns.name,
        env!("CARGO_BIN_EXE_fwscript")
    );
    let env = [("FWSCRIPT_IPTABLES", "nft")];
    let (code, said) = on_a_terminal(&reset, &env, "n\n");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("[y/N]"), "{said}");
    assert!(
        said.contains("reset cancelled: nothing was changed"),
        "{said}"
    );
    assert_eq!(netns.saves(), applied, "declined: nothing changed");
    // Enter alone is no.
    let (code, _) = on_a_terminal(&reset, &env, "\n");
    assert_eq!(code, Some(1));
    assert_eq!(netns.saves(), applied);

    // `--json` cannot ask on a terminal: without `--yes` it refuses, as
    // one JSON error object, and removes nothing (even when answered).
    let (code, said) = on_a_terminal(&format!("{reset} --json"), &env, "y\n");
    assert_eq!(code, Some(1), "{said}");
    assert!(!said.contains("[y/N]"), "{said}");
    let error: serde_json::Value = serde_json::from_str(
        said.lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON: {said}")),
    )
    .unwrap();
    assert_eq!(error["command"], "reset", "{said}");
    assert_eq!(error["changed"], false, "{said}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("needs `--yes`") && message.ends_with("nothing was changed"),
        "{message}"
    );
    assert_eq!(netns.saves(), applied, "refused: nothing changed");

    let (code, said) = on_a_terminal(&reset, &env, "y\n");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("reset: "), "{said}");
    assert!(!netns.saves()[0].contains("FWS-"));

    // --yes asks nothing, with --json too; without a terminal nothing is
    // asked either.
    netns.fwscript(state_dir, &["apply", &script]).expect(0);
    let (code, said) = on_a_terminal(&format!("{reset} --yes"), &env, "");
    assert_eq!(code, Some(0), "{said}");
    assert!(!said.contains("[y/N]"), "{said}");
    assert!(!netns.saves()[0].contains("FWS-"));
    netns.fwscript(state_dir, &["apply", &script]).expect(0);
    let (code, said) = on_a_terminal(&format!("{reset} --yes --json"), &env, "");
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(r#""command":"reset","changed":true"#),
        "{said}"
    );
    assert!(!netns.saves()[0].contains("FWS-"));
    netns.fwscript(state_dir, &["apply", &script]).expect(0);
    let piped = netns.fwscript(state_dir, &["reset"]).expect(0);
    assert!(!piped.stderr.contains("[y/N]"), "{piped:#?}");
    assert!(!netns.saves()[0].contains("FWS-"));
}

#[test]
fn quiet_is_what_the_boot_unit_runs() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("nft");
    let (_dir, script, state) = workdir("allow_tcp(22);\n");
    let state = std::path::Path::new(&state);
    let run = netns
        .fwscript(state, &["apply", "--boot", "--quiet", &script])
        .expect(0);
    assert_eq!(run.stdout, "", "{run:#?}");
    assert_eq!(run.stderr, "", "{run:#?}");
    assert!(netns.saves()[0].contains("FWS-INPUT"));
    // Errors still speak.
    std::fs::write(&script, "allow_tcp(0);\n").unwrap();
    let run = netns
        .fwscript(state, &["apply", "--quiet", &script])
        .expect(1);
    assert!(run.stderr.contains("error: "), "{run:#?}");
}

#[test]
fn a_forwarding_script_on_a_kernel_that_does_not_forward_is_warned_about() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("nft");
    let (_dir, script, state) = workdir("allow_tcp(22);\nmasquerade(\"eth0\");\n");
    let state = std::path::Path::new(&state);
    // A new namespace starts with forwarding off.
    let run = netns.fwscript(state, &["plan", &script]).expect(2);
    assert!(
        run.stderr.contains(&format!(
            "warning: the script masquerades forwarded traffic (at {script}:2:1), but ipv4 \
             forwarding is off (net.ipv4.ip_forward = 0)"
        )),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("net.ipv6.conf.all.forwarding = 0"),
        "{run:#?}"
    );
    let run = netns
        .fwscript(state, &["apply", "--json", &script])
        .expect(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let off: Vec<&serde_json::Value> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "forwarding_off")
        .collect();
    assert_eq!(off.len(), 2, "{report}");
    assert_eq!(off[0]["setting"], "net.ipv4.ip_forward");
    assert_eq!(off[0]["origin"]["line"], 2);

    netns.sh(
        "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding",
    );
    let run = netns.fwscript(state, &["plan", &script]).expect(0);
    assert!(!run.stderr.contains("forwarding is off"), "{run:#?}");
    // A script that does not forward is not warned about.
    std::fs::write(&script, "allow_tcp(22);\n").unwrap();
    netns.sh("echo 0 > /proc/sys/net/ipv4/ip_forward");
    let run = netns.fwscript(state, &["plan", &script]).expect(2);
    assert!(!run.stderr.contains("forwarding"), "{run:#?}");
}
