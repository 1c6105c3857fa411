//! `fwscript test`: every example's test file passes, offline and with
//! real packets (`--kernel`, both iptables backends); a failing
//! expectation is one line with the test's place, the verdict seen and the
//! rule that decided; a mistake in a test file is an error at its
//! `file:line:col`; `--json` is one object.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::netns::{kernel_available, Run, FLAVORS};

const EXAMPLES: [&str; 5] = [
    "scripts/tutorial.rhai",
    "scripts/minimal.rhai",
    "scripts/redirect.rhai",
    "scripts/nat-gateway.rhai",
    "scripts/modular/main.rhai",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fwscript(args: &[&str], env: &[(&str, &str)]) -> Run {
    Run::from(
        Command::new(env!("CARGO_BIN_EXE_fwscript"))
            .current_dir(root())
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("fwscript runs"),
    )
}

/// A folder with a script and its tests.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(script: &str, tests: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fw.rhai"), script).unwrap();
        std::fs::write(dir.path().join("fw.test.rhai"), tests).unwrap();
        Case { dir }
    }

    fn script(&self) -> String {
        self.dir.path().join("fw.rhai").display().to_string()
    }

    fn tests(&self) -> PathBuf {
        self.dir.path().join("fw.test.rhai")
    }
}

#[test]
fn every_example_passes_its_tests_offline() {
    for example in EXAMPLES {
        let run = fwscript(&["test", example], &[]).expect(0);
        let last = run.stdout.lines().last().unwrap_or_default();
        assert!(
            last.ends_with(" passed, 0 failed"),
            "{example}: {}",
            run.stdout
        );
        let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
        assert!(passed >= 5, "{example}: {}", run.stdout);
    }
}

#[test]
fn every_example_passes_its_tests_with_real_packets() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        for example in EXAMPLES {
            let run = fwscript(
                &["test", "--kernel", example],
                &[("FWSCRIPT_IPTABLES", flavor)],
            );
            assert_eq!(run.code, 0, "{example} ({flavor}): {run:?}");
            assert!(
                run.stdout.ends_with(" passed, 0 failed\n"),
                "{example}: {}",
                run.stdout
            );
        }
    }
    // Nothing is left behind: no namespace of a `--kernel` run
    // (`fws-test-PID-N-host`, `…-side1`) whose process is gone.
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let leaked: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|line| {
            let name = line.split_whitespace().next()?;
            let mut parts = name.strip_prefix("fws-test-")?.split('-');
            let pid = parts.next()?;
            let role = parts.nth(1)?;
            let ours = role == "host" || role.starts_with("side");
            let gone = !Path::new("/proc").join(pid).exists();
            (ours && gone).then(|| name.to_string())
        })
        .collect();
    assert!(leaked.is_empty(), "namespaces left behind: {leaked:?}");
}

const SCRIPT: &str = "allow_tcp(80);\nrule(#{ proto: \"tcp\", dport: 25, action: \"reject\" });\nredirect_tcp(8000, 80);\n";

const WRONG: &str = "expect(#{ proto: \"tcp\", dport: 80 }, \"accept\");\n\
    expect(#{ proto: \"tcp\", src: \"192.0.2.9\", dport: 80 }, \"drop\");\n\
    expect(#{ proto: \"tcp\", dport: 25 }, \"reject\");\n\
    expect_nat(#{ proto: \"tcp\", dport: 8000 }, #{ dport: 81 });\n";

#[test]
fn a_failure_names_its_line_the_verdict_and_the_rule() {
    let case = Case::new(SCRIPT, WRONG);
    let run = fwscript(&["test", &case.script()], &[]).expect(1);
    let tests = case.tests().display().to_string();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("{tests}:2: tcp from 192.0.2.9 port 80: expected DROP, got ACCEPT (ipv4): decided by FWS-INPUT-ALLOW rule 1 ({}:1:1): -p tcp -m tcp --dport 80 -j ACCEPT", case.script())
    );
    assert!(lines[1].starts_with(&format!("{tests}:4: tcp port 8000: expected ACCEPT, translated to port 81, got ACCEPT, translated to port 80 (ipv4)")), "{}", run.stdout);
    assert_eq!(*lines.last().unwrap(), "2 passed, 2 failed");
    // All passing is exit 0.
    let fixed = WRONG
        .replace("\"drop\");\n", "\"accept\");\n")
        .replace("dport: 81", "dport: 80");
    std::fs::write(case.tests(), fixed).unwrap();
    let run = fwscript(&["test", &case.script()], &[]).expect(0);
    assert_eq!(run.stdout, "4 passed, 0 failed\n");
}

#[test]
fn real_packets_find_the_same_failures() {
    if !kernel_available() {
        return;
    }
    let case = Case::new(SCRIPT, WRONG);
    let run = fwscript(&["test", "--kernel", &case.script()], &[]).expect(1);
    let tests = case.tests().display().to_string();
    assert!(run.stdout.contains(&format!("{tests}:2: tcp from 192.0.2.9 port 80: expected DROP, got ACCEPT (ipv4 with real packets)")), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("{tests}:4: tcp port 8000: expected ACCEPT, translated to port 81, got ACCEPT, translated to 198.18.1.1 port 80 (ipv4 with real packets)")), "{}", run.stdout);
    // The reject is seen as a reject in both families.
    assert!(!run.stdout.contains(":3:"), "{}", run.stdout);
    assert!(
        run.stdout.ends_with("2 passed, 2 failed\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn states_and_icmp_types_kernel_cannot_send_are_checked_offline_and_said() {
    if !kernel_available() {
        return;
    }
    let case = Case::new(
        "allow_tcp(22);\n",
        "expect(#{ proto: \"tcp\", dport: 22, state: \"invalid\" }, \"drop\");\n\
         expect(#{ proto: \"icmp\", icmp_type: \"time-exceeded\" }, \"accept\");\n",
    );
    let run = fwscript(&["test", "--kernel", &case.script()], &[]).expect(0);
    assert!(run.stdout.contains(":1: checked offline (ipv4): only the first packet of a new connection can be sent, not a `invalid` one"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(":2: checked offline (ipv4): only ICMP echo requests are sent, not type 11"),
        "{}",
        run.stdout
    );
}

#[test]
fn mistakes_in_a_test_file_are_errors_at_their_place() {
    for (tests, message, line_col) in [
        (
            "expect(#{ proto: \"tcp\", dprot: 22 }, \"accept\");",
            "unknown key `dprot` in the packet",
            "1:1",
        ),
        (
            "\n\n    expect(#{ proto: \"tcp\", dport: 22 }, \"allow\");",
            "unknown verdict `allow`",
            "3:5",
        ),
        (
            "expect(#{ proto: \"icmp\", src: \"2001:db8::1\" }, \"drop\");",
            "protocol `icmp` is IPv4's, but `--src` is 2001:db8::1 (IPv6)",
            "1:1",
        ),
        (
            "expect(#{ proto: \"tcp\", src: \"192.0.2.300\" }, \"drop\");",
            "`--src` value `192.0.2.300` is not an IP address",
            "1:1",
        ),
        (
            "expect_nat(#{ proto: \"tcp\", dport: 80 }, #{ port: 8080 });",
            "unknown key `port` in the translation",
            "1:1",
        ),
    ] {
        let case = Case::new("allow_tcp(22);\n", tests);
        let run = fwscript(&["test", &case.script()], &[]).expect(1);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        let place = format!("  --> {}:{line_col}\n", case.tests().display());
        assert!(
            run.stderr
                .starts_with(&format!("error: {message}\n{place}")),
            "{tests}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(" ^"), "a caret: {}", run.stderr);
    }
}

#[test]
fn hostile_test_files_end_quickly_and_change_nothing() {
    let case = Case::new("allow_tcp(22);\n", "let x = 1; while true { x += 1; }");
    let started = std::time::Instant::now();
    let run = fwscript(&["test", &case.script()], &[]).expect(1);
    assert!(run.stderr.contains("ran too long"), "{}", run.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    for (tests, message) in [
        (
            "eval(\"expect(#{ proto: \\\"tcp\\\" }, \\\"drop\\\")\");",
            "eval",
        ),
        ("import \"other\" as o;", "import"),
    ] {
        std::fs::write(case.tests(), tests).unwrap();
        let run = fwscript(&["test", &case.script()], &[]).expect(1);
        assert!(run.stderr.contains(message), "{tests}: {}", run.stderr);
    }
    // A FIFO is never read (a read would block).
    std::fs::remove_file(case.tests()).unwrap();
    let made = Command::new("mkfifo").arg(case.tests()).status().unwrap();
    assert!(made.success());
    let run = fwscript(&["test", &case.script()], &[]).expect(1);
    assert!(
        run.stderr.contains("it is not a regular file"),
        "{}",
        run.stderr
    );
}

/// Each of these once gave a green run whatever the script did (or, for
/// `sleep`, held CI for as long as it asked).
#[test]
fn a_test_file_cannot_pass_by_doing_nothing() {
    let ok = "expect(#{ proto: \"tcp\", dport: 22 }, \"accept\");\n";
    let fails = "expect(#{ proto: \"tcp\", dport: 80 }, \"accept\");\n";
    for (tests, message, line_col) in [
        (
            format!("sleep(3600);\n{ok}"),
            "unknown function `sleep`",
            "1:1",
        ),
        (
            format!("{ok}exit();\n{fails}"),
            "unknown function `exit`",
            "2:1",
        ),
        (
            format!("{ok}/* the rest\n{fails}"),
            "this block comment is never closed",
            "2:1",
        ),
        (
            format!("fn expect(p, v) {{ }}\n{fails}"),
            "`expect` is a function of test files and cannot be redefined",
            "1:4",
        ),
        (
            "let t = timestamp();\n".to_string(),
            "unknown function `timestamp`",
            "1:9",
        ),
        (
            format!("// note\r{fails}"),
            "holds a carriage return (`\\r`) that does not end a line",
            "1:8",
        ),
        (String::new(), "expects nothing", "1:1"),
        ("// later\n".to_string(), "expects nothing", "1:1"),
    ] {
        let case = Case::new("allow_tcp(22);\n", &tests);
        let started = std::time::Instant::now();
        let run = fwscript(&["test", &case.script()], &[]).expect(1);
        // A hang detector, not a timing: `sleep(3600)` once waited an hour.
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        assert!(run.stdout.is_empty(), "{tests:?}: {}", run.stdout);
        let place = format!("  --> {}:{line_col}\n", case.tests().display());
        assert!(
            run.stderr.contains(message) && run.stderr.contains(&place),
            "{tests:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(" ^"), "a caret: {}", run.stderr);
    }
}

#[test]
fn tests_are_found_beside_the_script_by_its_name() {
    let case = Case::new(
        "allow_tcp(22);\n",
        "expect(#{ proto: \"tcp\", dport: 22 }, \"accept\");",
    );
    std::fs::write(
        case.dir.path().join("fw.ssh.test.rhai"),
        "expect(#{ proto: \"tcp\", dport: 23 }, \"drop\");",
    )
    .unwrap();
    std::fs::write(
        case.dir.path().join("other.test.rhai"),
        "expect(#{ proto: \"tcp\", dport: 22 }, \"drop\");",
    )
    .unwrap();
    let run = fwscript(&["test", &case.script()], &[]).expect(0);
    assert_eq!(run.stdout, "2 passed, 0 failed\n");
    let lonely = tempfile::tempdir().unwrap();
    let script = lonely.path().join("fw.rhai");
    std::fs::write(&script, "allow_tcp(22);\n").unwrap();
    let run = fwscript(&["test", script.to_str().unwrap()], &[]).expect(1);
    assert!(run.stderr.contains("no test files for"), "{}", run.stderr);
    // Named on the command line, any test file is used.
    let run = fwscript(
        &[
            "test",
            script.to_str().unwrap(),
            case.dir.path().join("other.test.rhai").to_str().unwrap(),
        ],
        &[],
    )
    .expect(1);
    assert!(
        run.stdout.ends_with("0 passed, 1 failed\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn json_reports_every_test_and_errors() {
    let case = Case::new(SCRIPT, WRONG);
    let run = fwscript(&["test", "--json", &case.script()], &[]).expect(1);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("one object");
    assert_eq!(value["schema"], 1);
    assert_eq!(value["mode"], "offline");
    assert_eq!(value["passed"], 2);
    assert_eq!(value["failed"], 2);
    let second = &value["tests"][1];
    assert_eq!(second["line"], 2);
    assert_eq!(second["passed"], false);
    assert_eq!(second["expected"]["verdict"], "drop");
    assert_eq!(second["seen"][0]["verdict"], "accept");
    assert_eq!(second["seen"][0]["family"], "ipv4");
    assert!(second["seen"][0]["decided_by"]
        .as_str()
        .unwrap()
        .contains("fw.rhai:1:1"));

    std::fs::write(case.tests(), "expect(#{ proto: \"tcp\" }, \"maybe\");").unwrap();
    let run = fwscript(&["test", "--json", &case.script()], &[]).expect(1);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("one object");
    assert_eq!(value["error"]["message"], "unknown verdict `maybe`");
    assert_eq!(value["error"]["line"], 1);
    assert_eq!(value["error"]["col"], 1);
    assert_eq!(value["error"]["file"], case.tests().display().to_string());
}

#[test]
fn kernel_mode_needs_root_and_says_so() {
    if !kernel_available() {
        return;
    }
    // As an unprivileged user (nobody), --kernel refuses before it does
    // anything; offline still works.
    let case = Case::new(
        "allow_tcp(22);\n",
        "expect(#{ proto: \"tcp\", dport: 22 }, \"accept\");",
    );
    Command::new("chmod")
        .args(["-R", "a+rX", case.dir.path().to_str().unwrap()])
        .status()
        .unwrap();
    let as_nobody = |args: &[&str]| {
        Run::from(
            Command::new("setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    env!("CARGO_BIN_EXE_fwscript"),
                ])
                .args(args)
                .output()
                .expect("setpriv runs"),
        )
    };
    let run = as_nobody(&["test", "--kernel", &case.script()]).expect(1);
    assert!(
        run.stderr.contains("`--kernel` needs root"),
        "{}",
        run.stderr
    );
    as_nobody(&["test", &case.script()]).expect(0);
}

#[test]
fn a_killed_kernel_run_leaves_nothing_the_next_run_keeps() {
    if !kernel_available() {
        return;
    }
    // Many drops: each waits for silence, so the run takes seconds.
    let tests: String = (1000..1040)
        .map(|port| format!("expect(#{{ proto: \"tcp\", dport: {port} }}, \"drop\");\n"))
        .collect();
    let case = Case::new("allow_tcp(22);\n", &tests);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fwscript"))
        .args(["test", "--kernel", &case.script()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("fws-test-{}-", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mine = || -> Vec<String> {
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    };
    while mine().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run made no namespaces"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!mine().is_empty(), "kill -9 left them, as it must");
    // The next run removes what the dead one left.
    let quick = Case::new(
        "allow_tcp(22);\n",
        "expect(#{ proto: \"tcp\", dport: 22 }, \"accept\");",
    );
    fwscript(&["test", "--kernel", &quick.script()], &[]).expect(0);
    assert_eq!(mine(), Vec::<String>::new());
}
