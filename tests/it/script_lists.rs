//! `address_list("…")`: address lists in files beside the script, read
//! like modules (confined, regular files, checked) and usable wherever
//! addresses are.

use std::path::Path;
use std::process::Command;

use fwscript::netfilter::{Family, Table};
use fwscript::script;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn check(dir: &Path, text: &str) -> (Option<i32>, String) {
    write(dir, "fw.rhai", text);
    let out = Command::new(env!("CARGO_BIN_EXE_fwscript"))
        .current_dir(dir)
        .args(["check", "fw.rhai"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_list_blocks_each_address_once_in_its_family_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "lists/block.txt",
        "# known bad\n198.51.100.7\n203.0.113.0/24  # a whole net\n\n2001:db8:bad::/48\n198.51.100.7\n",
    );
    write(
        dir.path(),
        "fw.rhai",
        "let bad = address_list(\"lists/block.txt\");\nblock(bad);\nallow_tcp(443, #{ from: address_list(\"lists/block.txt\") });\n",
    );
    let plan = script::evaluate(&dir.path().join("fw.rhai")).unwrap_or_else(|e| panic!("{e}"));
    let deny = |family| {
        plan.family(family).unwrap().tables[&Table::Filter]
            .chain("FWS-INPUT-DENY")
            .unwrap()
            .rules
            .iter()
            .map(|r| r.matches.src.unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(deny(Family::Ipv4), ["198.51.100.7/32", "203.0.113.0/24"]);
    assert_eq!(deny(Family::Ipv6), ["2001:db8:bad::/48"]);
    assert_eq!(plan.address_lists.len(), 1, "read twice, recorded once");
    assert_eq!(plan.address_lists[0].entries.len(), 3);
    assert_eq!(plan.address_lists[0].shown, "lists/block.txt");
    assert!(
        plan.sources.iter().any(|p| p.ends_with("lists/block.txt")),
        "{:?}",
        plan.sources
    );
}

#[test]
fn a_bad_line_is_shown_in_the_list_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "lists/block.txt",
        "198.51.100.7\n# fine\n  198.51.100.300\n",
    );
    let (code, stderr) = check(
        dir.path(),
        "allow_tcp(22);\nblock(address_list(\"lists/block.txt\"));\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("error: `198.51.100.300` is not an IP address or CIDR"),
        "{stderr}"
    );
    assert!(stderr.contains("--> lists/block.txt:3:3\n"), "{stderr}");
    assert!(stderr.contains("3 |   198.51.100.300\n"), "{stderr}");
    assert!(stderr.contains("reached from fw.rhai:2:7"), "{stderr}");
}

#[test]
fn a_slash_zero_in_a_list_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "lists/block.txt", "198.51.100.7\n0.0.0.0/0\n");
    let (code, stderr) = check(dir.path(), "block(address_list(\"lists/block.txt\"));\n");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("`0.0.0.0/0` is every IPv4 address"),
        "{stderr}"
    );
    assert!(stderr.contains("--> lists/block.txt:2:1\n"), "{stderr}");
}

#[test]
fn lists_stay_inside_the_scripts_folder_and_are_regular_files() {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("fw");
    write(outer.path(), "outside.txt", "198.51.100.7\n");
    write(&dir, "lists/ok.txt", "198.51.100.7\n");
    std::os::unix::fs::symlink(outer.path().join("outside.txt"), dir.join("lists/link.txt"))
        .unwrap();
    assert!(Command::new("mkfifo")
        .arg(dir.join("lists/pipe.txt"))
        .status()
        .unwrap()
        .success());
    for (file, message) in [
        ("../outside.txt", "is outside the script's folder"),
        ("/etc/hosts", "is outside the script's folder"),
        ("lists/link.txt", "is outside the script's folder"),
        ("lists/pipe.txt", "it is a FIFO, not a regular file"),
        ("lists/missing.txt", "no such file or directory"),
        ("lists", "it is a folder, not a regular file"),
    ] {
        let (code, stderr) = check(&dir, &format!("block(address_list(\"{file}\"));\n"));
        assert_eq!(code, Some(1), "{file}: {stderr}");
        assert!(stderr.contains(message), "{file}: {stderr}");
        assert!(
            stderr.contains("--> fw.rhai:1:20\n"),
            "{file}: the caret goes under the file name: {stderr}"
        );
    }
    let (code, stderr) = check(&dir, "block(address_list(42));\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("the list file must be a string"),
        "{stderr}"
    );
}

#[test]
fn a_list_of_seven_thousand_addresses_works() {
    // Rhai used to count the bytes of every string in an array against the
    // limit of one string: 7,000 addresses failed with "length of string
    // grew too large". Now each list is one set, matched by one rule.
    let dir = tempfile::tempdir().unwrap();
    let list: String = (0..7_000u32)
        .map(|i| format!("10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    write(dir.path(), "lists/big.txt", &list);
    let literal: Vec<String> = (0..7_000u32)
        .map(|i| format!("\"10.9.{}.{}\"", (i >> 8) & 255, i & 255))
        .collect();
    let literal: Vec<String> = literal.chunks(8).map(|c| c.join(", ")).collect();
    let text = format!(
        "block(address_list(\"lists/big.txt\"));\nblock([\n{}\n]);\n",
        literal.join(",\n")
    );
    write(dir.path(), "fw.rhai", &text);
    let plan = script::evaluate(&dir.path().join("fw.rhai")).unwrap_or_else(|e| panic!("{e}"));
    let v4 = plan.family(Family::Ipv4).unwrap();
    let deny = v4.tables[&Table::Filter].chain("FWS-INPUT-DENY").unwrap();
    assert_eq!(deny.rules.len(), 2);
    let sizes: Vec<usize> = v4.sets.iter().map(|s| s.entries.len()).collect();
    assert_eq!(sizes, [7_000, 7_000]);
    let (_, stdout) = {
        let out = Command::new(env!("CARGO_BIN_EXE_fwscript"))
            .current_dir(dir.path())
            .args(["check", "fw.rhai"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(
        stdout.ends_with(", 2 ipsets of 14000 addresses\n"),
        "{stdout}"
    );
}
