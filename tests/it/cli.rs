//! Exit codes of DESIGN.md 5: 0 success, 1 any error (usage included),
//! 2 only for `plan` with changes pending.

use std::process::Command;

fn code(args: &[&str]) -> Option<i32> {
    Command::new(env!("CARGO_BIN_EXE_fwscript"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run fwscript")
        .status
        .code()
}

#[test]
fn usage_errors_exit_1_not_2() {
    assert_eq!(code(&["no-such-command"]), Some(1));
    assert_eq!(
        code(&["render", "scripts/minimal.rhai", "--family", "ipv5"]),
        Some(1)
    );
    assert_eq!(
        code(&[
            "explain",
            "scripts/minimal.rhai",
            "--proto",
            "tcp",
            "--dport",
            "70000"
        ]),
        Some(1)
    );
    assert_eq!(code(&["check"]), Some(1));
}

#[test]
fn help_and_version_exit_0() {
    assert_eq!(code(&["--help"]), Some(0));
    assert_eq!(code(&["--version"]), Some(0));
    assert_eq!(code(&["functions"]), Some(0));
}

#[test]
fn confirm_waits_at_most_a_day_and_says_so() {
    for secs in ["18446744073709551615", "86401", "0"] {
        let out = Command::new(env!("CARGO_BIN_EXE_fwscript"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "apply",
                "--dry-run",
                "--confirm",
                secs,
                "scripts/minimal.rhai",
            ])
            .output()
            .expect("run fwscript");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{secs}: {stderr}");
        assert!(
            stderr.contains("--confirm") && stderr.contains("is not in 1..=86400"),
            "{secs}: {stderr}"
        );
    }
    let help = Command::new(env!("CARGO_BIN_EXE_fwscript"))
        .args(["apply", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("(1 to 86400, one day)"));
}
