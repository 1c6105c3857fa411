//! Golden tests: the render of every example script, byte for byte.
//! `FWSCRIPT_UPDATE_GOLDEN=1 cargo test --test golden` rewrites them; review
//! the diff like any other change to what fwscript writes to the kernel.

use std::path::{Path, PathBuf};
use std::process::Command;

fn render(script: &Path, family: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fwscript"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("render")
        .arg(script);
    if let Some(family) = family {
        cmd.args(["--family", family]);
    }
    let out = cmd.output().expect("run fwscript");
    assert!(
        out.status.success(),
        "render {} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Compares `actual` with `tests/golden/NAME`, or rewrites it under
/// `FWSCRIPT_UPDATE_GOLDEN=1`.
pub fn check_golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("FWSCRIPT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing {}; run with FWSCRIPT_UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = similar::TextDiff::from_lines(expected.as_str(), actual)
            .unified_diff()
            .header("golden", "actual")
            .to_string()
            .lines()
            .take(60)
            .map(str::to_string)
            .collect();
        panic!(
            "{name} differs from tests/golden/{name} (FWSCRIPT_UPDATE_GOLDEN=1 rewrites it):\n{}",
            diff.join("\n")
        );
    }
}

const EXAMPLES: &[(&str, &str)] = &[
    ("scripts/minimal.rhai", "minimal.rules"),
    ("scripts/tutorial.rhai", "tutorial.rules"),
    ("scripts/redirect.rhai", "redirect.rules"),
    ("scripts/nat-gateway.rhai", "nat-gateway.rules"),
    ("scripts/modular/main.rhai", "modular.rules"),
];

#[test]
fn every_example_renders_as_its_golden_file() {
    for (script, golden) in EXAMPLES {
        check_golden(golden, &render(Path::new(script), None));
    }
}

#[test]
fn render_is_deterministic_and_families_split_the_whole() {
    for (script, _) in EXAMPLES {
        let both = render(Path::new(script), None);
        assert_eq!(
            both,
            render(Path::new(script), None),
            "{script} renders differently twice"
        );
        let ipv4 = render(Path::new(script), Some("ipv4"));
        let ipv6 = render(Path::new(script), Some("ipv6"));
        assert_eq!(
            both,
            format!("# ipv4\n{ipv4}# ipv6\n{ipv6}"),
            "{script}: --family files do not make up the whole"
        );
    }
}

#[test]
fn every_example_is_listed_here() {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        let test_file = path.to_string_lossy().ends_with(".test.rhai");
        if path.extension().is_some_and(|e| e == "rhai") && !test_file {
            found.push(format!(
                "scripts/{}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    for script in found {
        assert!(
            EXAMPLES.iter().any(|(s, _)| *s == script),
            "{script} has no golden file; add it to EXAMPLES"
        );
    }
}
