//! Bad input, one test case each: exit 1, one message with `file:line:col`,
//! the source line and a caret under the column, saying what was expected;
//! never a Rhai internal type name, never a panic.

use std::path::Path;
use std::process::{Command, Output};

struct Case {
    script: &'static str,
    line: usize,
    column: usize,
    message: &'static str,
}

const fn case(script: &'static str, line: usize, column: usize, message: &'static str) -> Case {
    Case {
        script,
        line,
        column,
        message,
    }
}

const CASES: &[Case] = &[
    // Syntax.
    case(
        "allow_tcp([80, 443);\n",
        1,
        19,
        "expecting ',' to separate the items of this array literal",
    ),
    case("let x = ;\n", 1, 9, "unexpected ';'"),
    case("allow_tcp(80\n", 2, 1, "expecting ')'"),
    // Unknown functions and wrong arity.
    case("alow_tcp(80);\n", 1, 1, "unknown function `alow_tcp`"),
    case(
        "allow_tcp(80, #{}, 3);\n",
        1,
        1,
        "`allow_tcp` does not take 3 arguments",
    ),
    case(
        "drop_scans(1);\n",
        1,
        1,
        "`drop_scans` does not take 1 argument",
    ),
    // Wrong types and values.
    case("allow_tcp(\"eighty\");\n", 1, 1, "unknown service `eighty`"),
    case(
        "allow_tcp(true);\n",
        1,
        1,
        "expected a port: a number, a service name",
    ),
    case("allow_tcp(0);\n", 1, 1, "port 0 is out of range 1..65535"),
    case(
        "drop_scans();\n  allow_tcp([22, 70000]);\n",
        2,
        3,
        "port 70000 is out of range 1..65535",
    ),
    case(
        "allow_udp(\"6010:6000\");\n",
        1,
        1,
        "port range \"6010:6000\" runs backwards",
    ),
    case(
        "allow_tcp(\"ntp\");\n",
        1,
        1,
        "service `ntp` does not use tcp",
    ),
    case(
        "allow_tcp(80, \"eth0\");\n",
        1,
        1,
        "the options of `allow_tcp` must be a map",
    ),
    case(
        "limit_tcp(22, #{ hits: 50 });\n",
        1,
        1,
        "`hits` 50 is out of range 1..20",
    ),
    // Addresses.
    case(
        "ssh_from(\"300.1.2.3\");\n",
        1,
        1,
        "`300.1.2.3` is not an IP address or CIDR",
    ),
    case(
        "block(\"10.0.0.0/33\");\n",
        1,
        1,
        "prefix length `/33` in `10.0.0.0/33` is out of range 0..32",
    ),
    case(
        "ssh_from(\"office.example.com\");\n",
        1,
        1,
        "is not an IP address",
    ),
    case(
        "ssh_from([]);\n",
        1,
        1,
        "`ssh_from` needs at least one address",
    ),
    case(
        "rule(#{ src: \"10.0.0.1\", dst: \"2001:db8::1\", action: \"accept\" });\n",
        1,
        1,
        "no address family fits",
    ),
    case(
        "rule(#{ proto: \"icmp\", src: \"2001:db8::1\", action: \"accept\" });\n",
        1,
        1,
        "no address family fits",
    ),
    // Unknown keys.
    case(
        "allow_tcp(80, #{ form: \"10.0.0.1\" });\n",
        1,
        1,
        "unknown key `form` in the options of `allow_tcp`",
    ),
    case(
        "rule(#{ action: \"accept\", port: 80 });\n",
        1,
        1,
        "unknown key `port` in the options of `rule`",
    ),
    case(
        "baseline(#{ icmpv6: false });\n",
        1,
        1,
        "unknown key `icmpv6`",
    ),
    // Values that could break out of their field.
    case(
        "allow_tcp(80, #{ iface: \"averyveryverylongname\" });\n",
        1,
        1,
        "longer than 15 characters",
    ),
    case(
        "allow_tcp(80, #{ iface: \"eth 0\" });\n",
        1,
        1,
        "contains a space",
    ),
    case(
        "allow_tcp(80, #{ iface: \"eth0\\\"\" });\n",
        1,
        1,
        "contains a double quote",
    ),
    case(
        "allow_tcp(80, #{ comment: \"web\\\" -j ACCEPT\" });\n",
        1,
        1,
        "comment \"web\\\" -j ACCEPT\" contains a double quote",
    ),
    case(
        "allow_tcp(80, #{ comment: \"two\\nlines\" });\n",
        1,
        1,
        "contains a newline",
    ),
    case("log_drops(\"it's\");\n", 1, 1, "contains a single quote"),
    case(
        "log_drops(\"drop\\n-A INPUT -j ACCEPT\");\n",
        1,
        1,
        "contains a newline",
    ),
    case(
        "log_drops(\"a prefix that is much too long!!\");\n",
        1,
        1,
        "the most is 29",
    ),
    // Unknown names.
    case(
        "rule(#{ chain: \"inptu\", action: \"accept\" });\n",
        1,
        1,
        "unknown chain `inptu`",
    ),
    case(
        "rule(#{ table: \"raw\", action: \"accept\" });\n",
        1,
        1,
        "unknown table `raw`",
    ),
    case(
        "rule(#{ action: \"allow\" });\n",
        1,
        1,
        "unknown action `allow`",
    ),
    case(
        "rule(#{ action: \"jump:bad chain\" });\n",
        1,
        1,
        "chain name \"bad chain\" contains a space",
    ),
    case(
        "rule(#{ table: \"nat\", chain: \"prerouting\", action: \"drop\" });\n",
        1,
        1,
        "action `drop` cannot be used in the nat table",
    ),
    case(
        "policy(\"input\", \"reject\");\n",
        1,
        1,
        "unknown policy `reject`",
    ),
    case(
        "rule(#{ chain: \"output\", iface: \"eth0\", action: \"accept\" });\n",
        1,
        1,
        "`iface` (the incoming interface) cannot be used in the `output` chain",
    ),
    case(
        "rule(#{ chain: \"input\", oface: \"eth0\", action: \"accept\" });\n",
        1,
        1,
        "`oface` (the outgoing interface) cannot be used in the `input` chain",
    ),
    case(
        "rule(#{ proto: \"gre\", action: \"accept\" });\n",
        1,
        1,
        "unknown protocol `gre`",
    ),
    // Imports that escape the folder.
    case(
        "import \"../outside\" as o;\n",
        1,
        8,
        "cannot import `../outside`: it is outside the script's folder",
    ),
    case(
        "import \"/etc/passwd\" as o;\n",
        1,
        8,
        "outside the script's folder",
    ),
    case(
        "import \"missing\" as m;\n",
        1,
        8,
        "cannot import `missing`",
    ),
    // Runaway scripts and sandbox limits.
    case(
        "let n = 0;\nloop { n += 1; }\n",
        2,
        8,
        "the script ran too long",
    ),
    case(
        "fn f(n) { f(n + 1) }\nf(0);\n",
        2,
        1,
        "functions call each other more than",
    ),
    case(
        "let s = \"x\";\nloop { s += s; }\n",
        2,
        10,
        "grew too large",
    ),
    case("eval(\"allow_tcp(1)\");\n", 1, 1, "eval"),
    // Rhai type errors, in words.
    case("let x = 1 + true;\n", 1, 11, "unknown function `+`"),
    case(
        "let a = [1];\nlet b = a[5];\n",
        2,
        11,
        "index 5 is out of bounds",
    ),
    case("throw \"stop here\";\n", 1, 1, "script error: stop here"),
];

fn check(dir: &Path, script: &str) -> Output {
    std::fs::write(dir.join("bad.rhai"), script).expect("write script");
    Command::new(env!("CARGO_BIN_EXE_fwscript"))
        .current_dir(dir)
        .args(["check", "bad.rhai"])
        .output()
        .expect("run fwscript")
}

const RHAI_INTERNALS: &[&str] = &[
    "i64",
    "ImmutableString",
    "rhai::",
    "Dynamic",
    "panicked",
    "RUST_BACKTRACE",
];

#[test]
fn every_bad_input_gets_one_located_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for case in CASES {
        let out = check(dir.path(), case.script);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let mut problems = Vec::new();
        if out.status.code() != Some(1) {
            problems.push(format!("exit code {:?}, want 1", out.status.code()));
        }
        if !stderr.contains(case.message) {
            problems.push(format!("no `{}` in the message", case.message));
        }
        let place = format!("--> bad.rhai:{}:{}\n", case.line, case.column);
        if !stderr.contains(&place) {
            problems.push(format!("no `{}`", place.trim()));
        }
        let source_line = case.script.lines().nth(case.line - 1).unwrap_or("");
        if !source_line.is_empty() {
            let shown = format!("{} | {source_line}\n", case.line);
            let caret = format!("| {}^\n", " ".repeat(case.column - 1));
            if !stderr.contains(&shown) {
                problems.push("source line not shown".into());
            }
            if !stderr.contains(&caret) {
                problems.push(format!("no caret under column {}", case.column));
            }
        }
        if stderr.lines().filter(|l| l.starts_with("error: ")).count() != 1 {
            problems.push("not exactly one error".into());
        }
        if let Some(word) = RHAI_INTERNALS.iter().find(|w| stderr.contains(*w)) {
            problems.push(format!("internal word `{word}` leaks"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{:?}: {}\n{stderr}",
                case.script,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn errors_inside_modules_point_into_the_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(
        dir.path().join("lib/web.rhai"),
        "fn open() {\n    allow_tcp(99999);\n}\n",
    )
    .unwrap();
    let out = check(dir.path(), "import \"lib/web\" as web;\nweb::open();\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--> lib/web.rhai:2:5\n"), "{stderr}");
    assert!(stderr.contains("2 |     allow_tcp(99999);\n"), "{stderr}");
    assert!(stderr.contains("port 99999 is out of range"), "{stderr}");
}

#[test]
fn a_symlink_cannot_smuggle_a_module_in_from_outside() {
    let outer = tempfile::tempdir().expect("tempdir");
    let inner = outer.path().join("fw");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(outer.path().join("secret.rhai"), "allow_tcp(1);\n").unwrap();
    std::os::unix::fs::symlink(outer.path().join("secret.rhai"), inner.join("link.rhai")).unwrap();
    let out = check(&inner, "import \"link\" as l;\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("outside the script's folder"), "{stderr}");
}

#[test]
fn a_missing_script_is_a_plain_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_fwscript"))
        .args(["check", "/nonexistent/fw.rhai"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: cannot read `/nonexistent/fw.rhai`: no such file or directory"),
        "{stderr}"
    );
}

#[test]
fn as_root_a_script_others_can_write_is_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("bad.rhai");
    std::fs::write(&script, "allow_tcp(80);\n").unwrap();
    if std::fs::metadata(&script).unwrap().uid() != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the permission check must be tested as root under CI"
        );
        eprintln!("SKIP: the permission check applies to root only");
        return;
    }
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o646)).unwrap();
    let out = check(dir.path(), "allow_tcp(80);\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to use `bad.rhai`: everyone can write it"),
        "{stderr}"
    );
    assert!(stderr.contains("chmod go-w bad.rhai"), "{stderr}");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(check(dir.path(), "allow_tcp(80);\n").status.code(), Some(0));
}
