//! Exit codes (README, Commands): 0 success, 1 any error (usage included),
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

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fwscript"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run fwscript")
}

#[test]
fn help_answers_help_about_itself_and_every_command() {
    let own = run(&["help", "--help"]);
    assert!(own.status.success(), "{own:?}");
    assert!(String::from_utf8_lossy(&own.stdout).contains("Usage: fwscript help"));
    let apply = run(&["help", "apply"]);
    assert!(apply.status.success());
    assert_eq!(
        String::from_utf8_lossy(&apply.stdout),
        String::from_utf8_lossy(&run(&["apply", "--help"]).stdout)
    );
    let unknown = run(&["help", "aply"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no command `aply`"));
    // Arguments that had none have their help text now.
    let explain = String::from_utf8_lossy(&run(&["explain", "--help"]).stdout).into_owned();
    for (arg, help) in [
        ("<SCRIPT>", "The firewall script"),
        ("--dport <PORT>", "Destination port"),
        ("--sport <PORT>", "Source port"),
    ] {
        let line = explain.lines().find(|l| l.trim_start().starts_with(arg));
        assert!(line.is_some_and(|l| l.contains(help)), "{arg}: {explain}");
    }
}

#[test]
fn quiet_prints_nothing_but_problems() {
    let quiet = run(&["check", "scripts/minimal.rhai", "--quiet"]);
    assert!(quiet.status.success());
    assert!(
        quiet.stdout.is_empty() && quiet.stderr.is_empty(),
        "{quiet:?}"
    );
    let loud = run(&["check", "scripts/minimal.rhai"]);
    assert!(String::from_utf8_lossy(&loud.stdout).contains("ok, "));
    let broken = tempfile::tempdir().unwrap();
    let script = broken.path().join("fw.rhai");
    std::fs::write(&script, "allow_tcp(0);\n").unwrap();
    let error = run(&["-q", "check", script.to_str().unwrap()]);
    assert_eq!(error.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&error.stderr).contains("error: "));
}

#[test]
fn no_colour_off_a_terminal_or_in_json() {
    for args in [
        &["check", "scripts/tutorial.rhai"][..],
        &["check", "--json", "scripts/tutorial.rhai"][..],
        &["check", "scripts/nope.rhai"][..],
    ] {
        let out = run(args);
        assert!(
            !out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b),
            "{args:?}: {out:?}"
        );
    }
}

/// `args` run on a pseudo-terminal (util-linux `script`), with `env`.
pub fn on_a_terminal(args: &str, env: &[(&str, &str)], input: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new("script")
        .args(["-qec", args, "/dev/null"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn colour_on_a_terminal_unless_no_color() {
    let bin = env!("CARGO_BIN_EXE_fwscript");
    let (code, text) = on_a_terminal(&format!("{bin} check scripts/nope.rhai"), &[], "");
    assert_eq!(code, Some(1));
    assert!(text.contains("\u{1b}[1;31merror:\u{1b}[0m"), "{text:?}");
    let (_, text) = on_a_terminal(
        &format!("{bin} check scripts/nope.rhai"),
        &[("NO_COLOR", "1")],
        "",
    );
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

#[test]
fn completions_and_the_manual_are_made_from_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        for word in ["fwscript", "status", "dry-run", "state-dir"] {
            assert!(text.contains(word), "{shell} completion lacks {word}");
        }
    }
    let bash = run(&["completions", "bash"]).stdout;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fwscript.bash");
    std::fs::write(&file, &bash).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(syntax.status.success(), "{syntax:?}");
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(1));

    let man = String::from_utf8(run(&["man"]).stdout).unwrap();
    assert!(
        man.starts_with(".ie") || man.starts_with(".TH"),
        "{}",
        &man[..80]
    );
    for section in [
        ".TH fwscript 1",
        ".SH SYNOPSIS",
        ".SH COMMANDS",
        ".SH EXIT STATUS",
        ".SH ENVIRONMENT",
        ".SH FILES",
    ] {
        assert!(man.contains(section), "the manual lacks {section}");
    }
    for command in ["status", "reset", "apply", "completions"] {
        assert!(man.contains(&format!("fwscript {command}")), "{command}");
    }
    assert!(
        !man.contains("confirm\\-timer"),
        "internal commands stay out"
    );
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
