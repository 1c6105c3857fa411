//! `fwscript import` as a user runs it on save files: the script on
//! stdout, warnings and the summary on stderr, `--json`, and every bad
//! input a clear error that prints no script. (The proof with packets is
//! in import_equivalence.)

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::netns::Run;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

fn fwscript(args: &[&str]) -> Run {
    Run::from(
        Command::new(env!("CARGO_BIN_EXE_fwscript"))
            .args(args)
            .output()
            .expect("fwscript runs"),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_script_goes_to_stdout_and_evaluates() {
    for name in [
        "tutorial.v4",
        "reader.v4",
        "docker-host.v4",
        "fail2ban-host.v4",
    ] {
        let run = fwscript(&["import", "--from", path(&fixture(name))]).expect(0);
        assert!(
            run.stdout.starts_with("// Imported by `fwscript import`"),
            "{name}: {}",
            run.stdout
        );
        let summary = run.stderr.lines().last().unwrap();
        assert!(
            summary.starts_with("import: ") && summary.contains(" rules read: "),
            "{name}: {}",
            run.stderr
        );
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("imported.rhai");
        std::fs::write(&script, &run.stdout).unwrap();
        fwscript(&["check", path(&script)]).expect(0);
    }
}

#[test]
fn what_cannot_be_imported_is_said_three_times() {
    let run = fwscript(&["import", "--from", path(&fixture("reader.v4"))]).expect(0);
    // In the script, as a comment with the original line …
    assert!(run.stdout.contains("// NOT IMPORTED: -A INPUT -p icmp -f -j DROP\n//   why: fwscript cannot say `-f (fragments)`"), "{}", run.stdout);
    // … as a warning …
    assert!(
        run.stderr
            .contains("warning: not imported (ipv4): -A INPUT -p icmp -f -j DROP"),
        "{}",
        run.stderr
    );
    // … and in the count.
    assert!(
        run.stderr.trim_end().ends_with("9 not imported"),
        "{}",
        run.stderr
    );
    // The accepts after that drop that take some of its packets are left
    // out with it (the script would accept what the original drops), and
    // said the same three ways.
    let shadowed = "-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT";
    let why = "it accepts packets that `-A INPUT -p icmp -f -j DROP` before it may drop";
    assert!(
        run.stdout
            .contains(&format!("// NOT IMPORTED: {shadowed}\n//   why: {why}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains(&format!("warning: not imported (ipv4): {shadowed}: {why}")),
        "{}",
        run.stderr
    );
}

#[test]
fn both_families_merge_into_one_script() {
    let run = fwscript(&[
        "import",
        "--from",
        path(&fixture("fail2ban-host.v4")),
        "--from6",
        path(&fixture("fail2ban-host.v6")),
    ])
    .expect(0);
    assert!(
        run.stdout.contains("\nallow_tcp([22, 80, 443]);\n"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("No ipv6 ruleset"), "{}", run.stdout);
    let v4_only = fwscript(&["import", "--from", path(&fixture("fail2ban-host.v4"))]).expect(0);
    assert!(
        v4_only.stdout.contains("No ipv6 ruleset was read"),
        "{}",
        v4_only.stdout
    );
    assert!(
        v4_only.stderr.contains("warning: no ipv6 ruleset was read"),
        "{}",
        v4_only.stderr
    );
}

#[test]
fn json_is_one_object() {
    let run = fwscript(&["import", "--json", "--from", path(&fixture("reader.v4"))]).expect(0);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    assert_eq!(value["schema"], 1);
    assert!(value["script"].as_str().unwrap().contains("allow_tcp(["));
    assert_eq!(value["summary"]["not_imported"], 9);
    assert_eq!(value["summary"]["rules"], 24);
    assert!(value["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("-f")));
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    let run = fwscript(&["import", "--json", "--from", "/nonexistent/rules.v4"]).expect(1);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    assert_eq!(value["schema"], 1);
    assert_eq!(
        value["error"]["message"],
        "cannot read `/nonexistent/rules.v4`: no such file or directory"
    );
}

#[test]
fn bad_input_is_an_error_and_prints_no_script() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--from".into(), path(&fixture("reader.sh")).into()],
            "it looks like a script of iptables commands",
        ),
        (
            vec!["--from".into(), path(&write("empty.v4", "")).into()],
            "is not iptables-save output: it has no table",
        ),
        (
            vec![
                "--from".into(),
                path(&write(
                    "cut.v4",
                    "*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\n",
                ))
                .into(),
            ],
            "table without `COMMIT`",
        ),
        (
            vec![
                "--from".into(),
                path(&write(
                    "v6.v4",
                    "*filter\n:INPUT DROP [0:0]\n-A INPUT -s 2001:db8::1/128 -j ACCEPT\nCOMMIT\n",
                ))
                .into(),
            ],
            "give it with `--from6`",
        ),
        (
            vec!["--from".into(), path(dir.path()).into()],
            "it is not a regular file",
        ),
        (
            vec!["--from".into(), path(&write("bin.v4", "")).into()],
            "it is not text (UTF-8)",
        ),
        (
            vec![
                "--from".into(),
                path(&fixture("tutorial.v4")).into(),
                "--from6".into(),
                "/nonexistent".into(),
            ],
            "cannot read `/nonexistent`",
        ),
    ];
    std::fs::write(dir.path().join("bin.v4"), [0xff, 0xfe, b'*']).unwrap();
    for (args, message) in cases {
        let mut all = vec!["import"];
        all.extend(args.iter().map(String::as_str));
        let run = fwscript(&all).expect(1);
        assert!(run.stdout.is_empty(), "{args:?} printed {}", run.stdout);
        assert!(
            run.stderr.starts_with("error: ") && run.stderr.contains(message),
            "{args:?}: {}",
            run.stderr
        );
    }
}
