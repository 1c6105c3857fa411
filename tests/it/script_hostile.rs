//! Hostile and careless scripts through `check` (no kernel): every one
//! ends, within the time bound, with exit 1 and one located message. The
//! same list goes through `apply` in `kernel_hostile` and through a running
//! daemon in `kernel_watch`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::hostile::{self, Hostile};

/// Not a timing: a hang detector, far above the 1 s every evaluation gets.
const HANG: Duration = Duration::from_secs(30);

/// Runs `fwscript ARGS` in `dir` and waits for it, killing it past [`HANG`].
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fwscript"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fwscript");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            panic!("`fwscript {}` hung", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn check(dir: &Path) -> Output {
    run_in(dir, &["check", "fw.rhai"], &[])
}

#[test]
fn every_hostile_script_ends_with_one_located_error() {
    let mut failures = Vec::new();
    for case in hostile::cases() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        hostile::install(dir.path(), &case);
        let out = check(dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let problems = hostile::problems(&case, out.status.code(), &stderr);
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n{stderr}", case.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn check_text(dir: &Path, text: &str) -> (Option<i32>, String, String) {
    write(dir, "fw.rhai", text);
    let out = check(dir);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_module_is_evaluated_once_however_often_imported() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "lib/common.rhai",
        "allow_tcp(443);\nexport const ADMIN = \"203.0.113.7\";\n",
    );
    write(
        dir.path(),
        "lib/web.rhai",
        "import \"lib/common\" as c;\nfn open() { allow_tcp(80); }\n",
    );
    let (code, stdout, stderr) = check_text(
        dir.path(),
        "import \"lib/common\" as c;\nimport \"lib/web\" as web;\nimport \"lib/common\" as again;\nweb::open();\nssh_from(again::ADMIN);\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    let plan = fwscript::script::evaluate(&dir.path().join("fw.rhai")).unwrap();
    let sources: Vec<_> = plan
        .sources
        .iter()
        .filter(|p| p.ends_with("common.rhai"))
        .collect();
    assert_eq!(sources.len(), 1, "{:?}", plan.sources);
    // tcp/443 once per family, not once per import.
    let text = fwscript::render::restore_files(&plan);
    assert_eq!(text.matches("--dport 443 ").count(), 2, "{stdout}{text}");
}

#[test]
fn a_cycle_through_the_script_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "lib/a.rhai", "import \"fw\" as main;\n");
    let (code, _, stderr) = check_text(dir.path(), "import \"lib/a\" as a;\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("import cycle: fw.rhai → lib/a.rhai → fw.rhai"),
        "{stderr}"
    );
    assert!(stderr.contains("--> lib/a.rhai:1:8"), "{stderr}");
}

#[test]
fn a_bom_and_crlf_line_ends_are_read_with_exact_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) =
        check_text(dir.path(), "\u{feff}allow_tcp(22);\r\nallow_tcp(80);\r\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("ok"), "{stdout}");
    let (code, _, stderr) = check_text(
        dir.path(),
        "\u{feff}allow_tcp(22);\r\n\r\nallow_tcp(0);\r\n",
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--> fw.rhai:3:11\n"), "{stderr}");
    assert!(stderr.contains("3 | allow_tcp(0);\n"), "{stderr}");
}

#[test]
fn errors_deep_in_a_long_script_name_their_exact_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}allow_tcp(0);\n", "\n".repeat(65_534));
    let (code, _, stderr) = check_text(dir.path(), &text);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--> fw.rhai:65535:11\n"), "{stderr}");
    let wide = format!("allow_tcp(22);\nlet x = \"{}\";\n", "x".repeat(70_000));
    let (code, _, stderr) = check_text(dir.path(), &wide);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("line 2 of `fw.rhai` is longer than 65535 characters"),
        "{stderr}"
    );
}

#[test]
fn a_module_is_checked_like_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("lib/pipe.rhai");
    std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (code, _, stderr) = check_text(dir.path(), "import \"lib/pipe\" as p;\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("cannot import `lib/pipe`") || stderr.contains("a FIFO"),
        "{stderr}"
    );
    assert!(stderr.contains("--> fw.rhai:1:8"), "{stderr}");

    std::os::unix::fs::symlink("/dev/zero", dir.path().join("lib/zero.rhai")).unwrap();
    let (code, _, stderr) = check_text(dir.path(), "import \"lib/zero\" as z;\n");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("a character device"), "{stderr}");

    write(
        dir.path(),
        "lib/open.rhai",
        "allow_tcp(1);\n/* never closed\nallow_tcp(2);\n",
    );
    let (code, _, stderr) = check_text(dir.path(), "import \"lib/open\" as o;\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("this block comment is never closed"),
        "{stderr}"
    );
    assert!(stderr.contains("--> lib/open.rhai:2:1"), "{stderr}");

    write(dir.path(), "lib/slow.rhai", "loop { }\n");
    let (code, _, stderr) = check_text(dir.path(), "import \"lib/slow\" as s;\n");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("the script ran too long"), "{stderr}");
    assert!(stderr.contains("--> lib/slow.rhai:1:"), "{stderr}");

    write(dir.path(), "lib/evil.rhai", "fn allow_tcp(p) { }\n");
    let (code, _, stderr) = check_text(dir.path(), "import \"lib/evil\" as e;\nallow_tcp(22);\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("`allow_tcp` is a fwscript function and cannot be redefined"),
        "{stderr}"
    );
    assert!(stderr.contains("--> lib/evil.rhai:1:4"), "{stderr}");
}

#[test]
fn print_writes_one_escaped_log_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "fw.rhai",
        "print(\"hello\\nERROR forged \\u202E line\");\nallow_tcp(22);\n",
    );
    let out = run_in(dir.path(), &["check", "fw.rhai"], &[("RUST_LOG", "info")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let printed: Vec<&str> = stderr.lines().filter(|l| l.contains("hello")).collect();
    assert_eq!(printed.len(), 1, "{stderr}");
    assert!(
        printed[0].contains("hello\\nERROR forged \\u{202e} line"),
        "{stderr}"
    );
    assert!(!stderr.lines().any(|l| l.starts_with("ERROR")), "{stderr}");
}

#[test]
fn functions_lists_stdlib_and_the_builtins_left() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["functions"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for name in ["allow_tcp(ports, opts)", "address_list(file)", "rule(spec)"] {
        assert!(stdout.contains(name), "{stdout}");
    }
    let (stdlib, builtins) = stdout
        .split_once("Rhai built-ins")
        .expect("a built-ins list");
    let (_, builtins) = builtins
        .split_once("):\n")
        .expect("the list after its header");
    let builtins: Vec<&str> = builtins.split_whitespace().collect();
    for gone in [
        "sleep",
        "exit",
        "timestamp",
        "eval",
        "parse_json",
        "__rule",
        "allow_tcp",
    ] {
        assert!(!builtins.contains(&gone), "`{gone}` listed:\n{stdout}");
    }
    assert!(
        builtins.contains(&"push") && builtins.contains(&"len"),
        "{stdout}"
    );
    assert!(!stdlib.contains("__"), "{stdout}");
}

#[test]
fn hostile_case_names_are_unique() {
    let cases: Vec<Hostile> = hostile::cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len());
}

#[test]
fn a_symlink_swapped_while_checking_wins_nothing() {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    if effective_uid() != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the permission race must be tested as root under CI"
        );
        eprintln!("SKIP: the permission check applies to root only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.rhai");
    std::fs::write(&good, "allow_tcp(22);\n").unwrap();
    // Another user's script in another user's folder.
    let theirs = dir.path().join("user");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let evil = theirs.join("evil.rhai");
    std::fs::write(&evil, "allow_tcp(1);\n").unwrap();
    std::os::unix::fs::chown(&theirs, Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(&evil, Some(1000), Some(1000)).unwrap();

    let script = dir.path().join("fw.rhai");
    std::os::unix::fs::symlink(&good, &script).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, script, good, evil) = (stop.clone(), script.clone(), good.clone(), evil.clone());
        let temp = dir.path().join(".swap");
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let target = if swaps.is_multiple_of(2) {
                    &evil
                } else {
                    &good
                };
                let _ = std::fs::remove_file(&temp);
                std::os::unix::fs::symlink(target, &temp).unwrap();
                std::fs::rename(&temp, &script).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let (mut used, mut refused) = (0, 0);
    for _ in 0..1_500 {
        match fwscript::script::evaluate(&script) {
            Ok(plan) => {
                let text = fwscript::render::restore_files(&plan);
                assert!(
                    !text.contains("--dport 1 "),
                    "another user's script was used:\n{text}"
                );
                used += 1;
            }
            Err(err) => {
                assert!(
                    err.message.contains("refusing to use") || err.message.contains("changed"),
                    "{err}"
                );
                refused += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 100, "the symlink hardly moved ({swaps} swaps)");
    assert!(
        used > 0 && refused > 0,
        "the race was not run: {used} used, {refused} refused"
    );
}

fn effective_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(u32::MAX)
}
