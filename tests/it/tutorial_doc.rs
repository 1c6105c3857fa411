//! docs/tutorial.md shows only scripts that work: every ```` ```rhai ````
//! block passes `fwscript check`, is named, and is applied by a traffic
//! test that sends packets through it.

use std::path::Path;
use std::process::Command;

use crate::traffic::docs::tutorial;

#[test]
fn every_snippet_passes_check() {
    let snippets = tutorial();
    assert!(snippets.len() >= 10, "found {} snippets", snippets.len());
    let dir = tempfile::tempdir().unwrap();
    for snippet in snippets {
        let path = dir.path().join("snippet.rhai");
        std::fs::write(&path, &snippet.text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_fwscript"))
            .arg("check")
            .arg(&path)
            .output()
            .expect("fwscript runs");
        assert!(
            out.status.success(),
            "docs/tutorial.md:{}: fails check:\n{}",
            snippet.line,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_snippet_is_named_and_exercised_by_a_traffic_test() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let sources: String = std::fs::read_dir(&tests)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("traffic_") && name.ends_with(".rs")
        })
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    for snippet in tutorial() {
        let name = snippet.name.unwrap_or_else(|| {
            panic!(
                "docs/tutorial.md:{}: a snippet without a name",
                snippet.line
            )
        });
        assert!(
            sources.contains(&format!("snippet(\"{name}\")")),
            "docs/tutorial.md:{}: no traffic test uses snippet {name:?}",
            snippet.line
        );
    }
}
