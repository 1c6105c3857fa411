//! Hostile and careless scripts through `apply` against a real kernel in a
//! throwaway namespace: each fails with one located message and the kernel
//! keeps exactly what it had. And inputs that used to break apply itself
//! (1,025 identical rules, a byte-order mark) now apply.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::hostile;
use crate::common::netns::{kernel_available, Netns, Run, FLAVORS};

const GOOD: &str =
    "allow_tcp([80, 443]);\nssh_from(\"203.0.113.7\");\nblock(\"198.51.100.0/24\");\n";

/// A hang detector, far above the 1 s an evaluation may take.
const HANG: Duration = Duration::from_secs(30);

/// `fwscript apply fw.rhai` in `dir`, its output in files (a long plan
/// must not fill a pipe nobody reads yet).
fn apply(netns: &Netns, dir: &Path) -> Run {
    let out = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = netns
        .command(env!("CARGO_BIN_EXE_fwscript"))
        .current_dir(dir)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["apply", "fw.rhai"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("fwscript runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            panic!("apply hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(stdout).unwrap(),
        stderr: std::fs::read_to_string(stderr).unwrap(),
    }
}

#[test]
fn hostile_scripts_change_nothing_in_the_kernel() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("nft");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(dir.path().join("fw.rhai"), GOOD).unwrap();
    apply(&netns, dir.path()).expect(0);
    let before = netns.saves();
    assert!(before[0].contains("--dport 443"), "{}", before[0]);

    let mut failures = Vec::new();
    for case in hostile::cases() {
        hostile::install(dir.path(), &case);
        let out = apply(&netns, dir.path());
        let stderr = out.stderr;
        let mut problems = hostile::problems(&case, Some(out.code), &stderr);
        if netns.saves() != before {
            problems.push("the kernel changed".into());
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n{stderr}", case.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_thousand_identical_rules_and_a_bom_apply() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let netns = Netns::new(flavor);
        let dir = tempfile::tempdir().unwrap();
        // Identical rules fill identical chunks: their names must differ.
        std::fs::write(
            dir.path().join("fw.rhai"),
            "\u{feff}// a byte-order mark and CRLF line ends\r\nfor i in 0..2049 { allow_tcp(22, #{ comment: \"same\" }); }\r\n",
        )
        .unwrap();
        apply(&netns, dir.path()).expect(0);
        let [v4, _] = netns.saves();
        let chunks: Vec<&str> = v4
            .lines()
            .filter(|l| l.starts_with(":FWS-INPUT-ALLOW-"))
            .collect();
        assert!(chunks.len() >= 2, "{flavor}: {v4}");
        let rules = v4
            .lines()
            .filter(|l| l.contains("--dport 22") && l.contains("same"))
            .count();
        assert_eq!(rules, 2049, "{flavor}");
        let again = apply(&netns, dir.path()).expect(0);
        assert!(again.stdout.contains("no changes"), "{flavor}: {again:?}");
    }
}
