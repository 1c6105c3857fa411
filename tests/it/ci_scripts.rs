//! The README's two commands find cargo themselves (`.ci/cargo-env`): on
//! PATH, in `${CARGO_HOME:-$HOME/.cargo}/bin` when PATH lost it (as `sudo`
//! does), and they refuse a Rust older than Cargo.toml's `rust-version`,
//! or none, saying how to get it. A fake `cargo` in a temporary home
//! stands in for the toolchain.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// A home whose `.cargo/bin/cargo` reports `version`.
fn home_with_cargo(version: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join(".cargo/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cargo = bin.join("cargo");
    std::fs::write(
        &cargo,
        format!("#!/bin/sh\necho \"cargo {version} (fake 2026-01-01)\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    home
}

/// Sources `.ci/cargo-env` with a PATH that has no cargo, as under sudo.
fn cargo_env(home: &Path, extra: &[(&str, &str)]) -> std::process::Output {
    Command::new("/bin/bash")
        .args(["-c", "source .ci/cargo-env && command -v cargo"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", home)
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

fn rust_version() -> String {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string()
}

/// A system cargo (Debian's `cargo` package) on the bare PATH would be
/// found first, rightly; these tests need a PATH without one.
fn system_cargo() -> bool {
    let found = ["/usr/bin/cargo", "/bin/cargo", "/usr/sbin/cargo"]
        .iter()
        .any(|p| Path::new(p).exists());
    if found {
        eprintln!("SKIP: a system cargo is installed; the fake one would not be looked for");
    }
    found
}

#[test]
fn cargo_is_found_where_sudo_hides_it() {
    if system_cargo() {
        return;
    }
    let home = home_with_cargo("1.95.0");
    let run = cargo_env(home.path(), &[]);
    assert!(run.status.success(), "{run:?}");
    let found = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        found.trim(),
        home.path().join(".cargo/bin/cargo").to_str().unwrap()
    );

    // CARGO_HOME wins over HOME.
    let other = home_with_cargo("1.95.0");
    let cargo_home = other.path().join(".cargo");
    let run = cargo_env(home.path(), &[("CARGO_HOME", cargo_home.to_str().unwrap())]);
    assert!(run.status.success(), "{run:?}");
    assert!(String::from_utf8_lossy(&run.stdout).starts_with(cargo_home.to_str().unwrap()));
}

#[test]
fn an_old_rust_or_none_is_refused_with_the_version_needed() {
    if system_cargo() {
        return;
    }
    let needed = rust_version();
    let old = home_with_cargo("1.70.0");
    let run = cargo_env(old.path(), &[]);
    assert_eq!(run.status.code(), Some(1));
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(
        said.contains(&format!(
            "fwscript needs Rust {needed} or newer; cargo is 1.70.0"
        )),
        "{said}"
    );
    let none = tempfile::tempdir().unwrap();
    let run = cargo_env(none.path(), &[("SUDO_USER", "nobody")]);
    assert_eq!(run.status.code(), Some(1));
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(said.contains("cargo is not installed"), "{said}");
    assert!(said.contains(&format!("Rust {needed} or newer")), "{said}");
    assert!(said.contains("~nobody/.cargo/bin"), "{said}");
}

#[test]
fn the_two_commands_say_they_need_root() {
    if !crate::common::netns::kernel_available() {
        return;
    }
    // Copies nobody can read, wherever the checkout is: the check comes
    // before anything else the scripts do.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for script in ["run", "try-example"] {
        let copy = dir.path().join(script);
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(".ci")
                .join(script),
            &copy,
        )
        .unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"])
            .arg(&copy)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(1), "{script}: {run:?}");
        let said = String::from_utf8_lossy(&run.stderr);
        assert!(said.contains("must run as root"), "{script}: {said}");
        assert!(said.contains("sudo bash"), "{script}: {said}");
    }
}
