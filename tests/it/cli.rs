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
