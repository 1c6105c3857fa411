//! Each rendered example is accepted by the real `iptables-restore --test`
//! and `ip6tables-restore --test`, nf_tables and legacy, inside a throwaway
//! network namespace (`unshare -n`: it dies with the process, so nothing is
//! left behind even when a test fails). Needs root: skips loudly on a
//! laptop, fails under CI.

use std::io::Write;
use std::process::{Command, Stdio};

fn kernel_tests_possible() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let tools = [
        "unshare",
        "iptables-nft-restore",
        "ip6tables-nft-restore",
        "iptables-legacy-restore",
        "ip6tables-legacy-restore",
    ]
    .iter()
    .all(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if root && tools {
        return true;
    }
    let why = if root {
        "iptables tools are missing"
    } else {
        "not running as root"
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "kernel test cannot run under CI: {why}"
    );
    eprintln!("SKIP: kernel test skipped: {why} (it runs under CI=true)");
    false
}

fn render(script: &str, family: &str) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_fwscript"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["render", script, "--family", family])
        .output()
        .expect("run fwscript");
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Feeds `input` to `tool --test`, then loads it for real, in a fresh
/// network namespace: nf_tables' `--test` does not ask the kernel, the real
/// load does.
fn restore_test(tool: &str, input: &[u8]) -> Result<(), String> {
    let script = format!("f=$(mktemp) && cat > \"$f\" && {tool} --test < \"$f\" && {tool} < \"$f\"; rc=$?; rm -f \"$f\"; exit $rc");
    let mut child = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

const SCRIPTS: &[&str] = &[
    "scripts/minimal.rhai",
    "scripts/tutorial.rhai",
    "scripts/redirect.rhai",
    "scripts/nat-gateway.rhai",
    "scripts/modular/main.rhai",
];

#[test]
fn rendered_examples_load_into_both_backends() {
    if !kernel_tests_possible() {
        return;
    }
    let mut failures = Vec::new();
    for script in SCRIPTS {
        for (family, tool) in [("ipv4", "iptables"), ("ipv6", "ip6tables")] {
            let input = render(script, family);
            for backend in ["nft", "legacy"] {
                let tool = format!("{tool}-{backend}-restore");
                if let Err(err) = restore_test(&tool, &input) {
                    failures.push(format!("{script} ({family}) rejected by {tool}: {err}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_kernel_check_really_rejects_bad_input() {
    if !kernel_tests_possible() {
        return;
    }
    // Guards the test above against passing vacuously.
    let bad = b"*filter\n-A INPUT -j FWS-NOWHERE\nCOMMIT\n";
    assert!(restore_test("iptables-nft-restore", bad).is_err());
    assert!(restore_test("iptables-legacy-restore", bad).is_err());
}
