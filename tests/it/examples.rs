//! Every file under scripts/ passes `fwscript check`, modules included
//! (test files, `*.test.rhai`, are `fwscript test`'s: see test_command).

use std::path::{Path, PathBuf};
use std::process::Command;

fn rhai_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read scripts/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rhai_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rhai")
            && !path.to_string_lossy().ends_with(".test.rhai")
        {
            out.push(path);
        }
    }
}

#[test]
fn every_script_passes_check() {
    let mut files = Vec::new();
    rhai_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts"),
        &mut files,
    );
    assert!(
        files.len() >= 8,
        "expected the bundled examples, found {files:?}"
    );
    for file in files {
        let out = Command::new(env!("CARGO_BIN_EXE_fwscript"))
            .arg("check")
            .arg(&file)
            .output()
            .expect("run fwscript");
        assert!(
            out.status.success(),
            "{} fails check:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(": ok, "),
            "no ok line for {}",
            file.display()
        );
    }
}
