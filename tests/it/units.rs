//! The systemd units in `dist/`: `systemd-analyze verify` finds nothing
//! wrong, and their sandbox keeps the exposure `systemd-analyze security`
//! measures low. Nothing is started; the units are checked against a root
//! made for the purpose, holding the binaries they name.

use std::path::Path;
use std::process::Command;

const UNITS: [&str; 2] = ["fwscript-watch.service", "fwscript-apply.service"];

fn analyze_available() -> bool {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("systemd-analyze is missing and CI=true forbids skipping the unit checks");
        }
        eprintln!("SKIP: the unit checks need systemd-analyze (Debian's `systemd`)");
    }
    found
}

/// A root with the units in /etc/systemd/system and every program they
/// run where systemd looks for it.
fn root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dirs = ["usr/local/bin", "usr/bin", "etc/systemd/system"];
    for dir in dirs {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    std::os::unix::fs::symlink("usr/bin", root.path().join("bin")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_fwscript"),
        root.path().join("usr/local/bin/fwscript"),
    )
    .unwrap();
    for tool in ["kill", "touch"] {
        std::fs::copy(
            Path::new("/usr/bin").join(tool),
            root.path().join("usr/bin").join(tool),
        )
        .unwrap();
    }
    for unit in UNITS {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("dist")
                .join(unit),
            root.path().join("etc/systemd/system").join(unit),
        )
        .unwrap();
    }
    root
}

#[test]
fn the_units_verify_clean() {
    if !analyze_available() {
        return;
    }
    let root = root();
    for unit in UNITS {
        // The man page the units name comes with the package, not here.
        let output = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", root.path().display()))
            .arg(unit)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && said.trim().is_empty(),
            "{unit}: {said}"
        );
    }
}

#[test]
fn the_units_are_sandboxed() {
    if !analyze_available() {
        return;
    }
    for unit in UNITS {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("dist")
            .join(unit);
        let output = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let exposure: f32 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1)?.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no exposure figure in:\n{text}"));
        // 9.5 ("UNSAFE") without the sandbox; docs/boot.md has the figures.
        assert!(exposure <= 3.0, "{unit}: exposure {exposure}\n{text}");
    }
}

#[test]
fn the_units_run_command_lines_fwscript_takes() {
    use clap::Parser;
    for unit in UNITS {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("dist")
                .join(unit),
        )
        .unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter_map(|l| {
                l.strip_prefix("ExecStart=")
                    .or(l.strip_prefix("ExecReload="))
            })
            .filter(|l| l.starts_with("fwscript "))
            .collect();
        assert!(!lines.is_empty(), "{unit}");
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Err(err) = fwscript::cli::Cli::try_parse_from(&words) {
                panic!("{unit}: `{line}` does not parse: {err}");
            }
            assert!(
                line.ends_with(" /etc/fwscript/firewall.rhai"),
                "{unit}: the script is /etc/fwscript/firewall.rhai: {line}"
            );
        }
    }
}
