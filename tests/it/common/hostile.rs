//! The hostile and careless inputs of the script stage, one each: what a
//! typo or an attacker saves as the firewall script (or a module). Each
//! must end with exit 1 and one located message, widen nothing, crash
//! nothing and hang nothing; `script_hostile`, `kernel_hostile` and
//! `kernel_watch` run the same list through `check`, `apply` and `watch`.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// How a case is put on disk, beside a script named `fw.rhai` in `dir`.
pub enum Setup {
    /// `fw.rhai` holds this text.
    Script(String),
    /// `fw.rhai` holds the first text, `lib/<name>` the others.
    WithModules(String, Vec<(&'static str, String)>),
    /// `fw.rhai` is a FIFO: reading it would wait forever.
    Fifo,
    /// `fw.rhai` is a symlink to `/dev/zero`: reading it never ends.
    DevZero,
    /// `fw.rhai` is a folder.
    Folder,
}

pub struct Hostile {
    pub name: &'static str,
    pub setup: Setup,
    /// In the one error message.
    pub message: &'static str,
    /// `line:col` in `fw.rhai` (or a module), when the error has a place.
    pub place: Option<&'static str>,
}

fn script(
    name: &'static str,
    text: &str,
    message: &'static str,
    place: Option<&'static str>,
) -> Hostile {
    Hostile {
        name,
        setup: Setup::Script(text.to_string()),
        message,
        place,
    }
}

pub fn cases() -> Vec<Hostile> {
    vec![
        script(
            "a typo'd map key would open every port",
            "let cfg = #{ web_ports: [80] };\nallow_tcp(cfg.web_prot);\n",
            "`allow_tcp` got no value for its ports",
            Some("fw.rhai:2:11"),
        ),
        script(
            "a typo'd source would open to everyone",
            "let cfg = #{ admin_net: \"10.0.0.0/8\" };\nallow_tcp(22, #{ from: cfg.admin_nte });\n",
            "`allow_tcp` got no value for its option `from`",
            Some("fw.rhai:2:24"),
        ),
        script(
            "an unset variable as a block list",
            "let bad;\nblock(bad);\n",
            "`block` got no value for its addresses",
            Some("fw.rhai:2:7"),
        ),
        script(
            "rule() replaced by a no-op",
            "fn rule(spec) {}\nssh_from(\"203.0.113.7\");\n",
            "`rule` is a fwscript function and cannot be redefined",
            Some("fw.rhai:1:4"),
        ),
        script(
            "a native called directly",
            "__rule(#{ action: \"accept\" });\n",
            "unknown function `__rule`",
            Some("fw.rhai:1:1"),
        ),
        script(
            "a script importing itself",
            "import \"fw\" as me;\nallow_tcp(22);\n",
            "import cycle: fw.rhai → fw.rhai",
            Some("fw.rhai:1:8"),
        ),
        Hostile {
            name: "two modules importing each other",
            setup: Setup::WithModules(
                "import \"lib/a\" as a;\nallow_tcp(22);\n".into(),
                vec![
                    ("a.rhai", "import \"lib/b\" as b;\n".into()),
                    ("b.rhai", "import \"lib/a\" as a;\n".into()),
                ],
            ),
            message: "import cycle: lib/a.rhai → lib/b.rhai → lib/a.rhai",
            place: Some("lib/b.rhai:1:8"),
        },
        script(
            "an unterminated comment hiding the rest",
            "allow_tcp(22);\n/* block(\"198.51.100.0/24\");\nallow_tcp(80);\n",
            "this block comment is never closed",
            Some("fw.rhai:2:1"),
        ),
        script(
            "a sort and clone loop over a big array",
            "let a = [];\na.pad(150000, \"198.51.100.7\");\nloop { let b = a; b.sort(); a = b; }\n",
            "the script ran too long",
            None,
        ),
        script(
            "sleep for an hour",
            "sleep(3600);\n",
            "unknown function `sleep`",
            Some("fw.rhai:1:1"),
        ),
        script(
            "exit the host",
            "exit(0);\n",
            "unknown function `exit`",
            Some("fw.rhai:1:1"),
        ),
        script(
            "string doubling",
            "let s = \"x\";\nloop { s += s; }\n",
            "grew too large",
            Some("fw.rhai:2:10"),
        ),
        script(
            "array doubling",
            "let a = [1];\nloop { a += a; }\n",
            "grew too large",
            Some("fw.rhai:2:10"),
        ),
        script(
            "deep recursion",
            "fn f(n) { f(n + 1) }\nf(0);\n",
            "functions call each other more than",
            Some("fw.rhai:2:1"),
        ),
        script(
            "a runaway loop",
            "let n = 0;\nloop { n += 1; }\n",
            "the script ran too long",
            None,
        ),
        Hostile {
            name: "a FIFO as the script",
            setup: Setup::Fifo,
            message: "it is a FIFO, not a regular file",
            place: None,
        },
        Hostile {
            name: "/dev/zero as the script",
            setup: Setup::DevZero,
            message: "it is a character device, not a regular file",
            place: None,
        },
        Hostile {
            name: "a folder as the script",
            setup: Setup::Folder,
            message: "it is a folder, not a regular file",
            place: None,
        },
        script(
            "a right-to-left override in a comment",
            "allow_tcp(22, #{ comment: \"ssh\\u202Eevil\" });\n",
            "the invisible format character U+202E",
            Some("fw.rhai:1:27"),
        ),
        script(
            "a line separator in a log prefix",
            "log_drops(\"drop\\u2028ERROR\");\n",
            "the line separator U+2028",
            Some("fw.rhai:1:11"),
        ),
        script(
            "an empty log prefix",
            "log_drops(\"\");\n",
            "log prefix is empty",
            Some("fw.rhai:1:11"),
        ),
        // What a terminal shows is what runs.
        script(
            "a lone carriage return ends a comment for Rhai",
            "// note\rallow_from(\"0.0.0.0/0\");\nallow_tcp(22);\n",
            "holds a carriage return (`\\r`) that does not end a line",
            Some("fw.rhai:1:8"),
        ),
        script(
            "lone carriage returns hid 65535 lines in seven",
            &format!(
                "{}allow_tcp(22);\nallow_tcp(0);\n",
                format!("{}\n", "//\r".repeat(16_000)).repeat(5)
            ),
            "holds a carriage return",
            Some("fw.rhai:1:3"),
        ),
        Hostile {
            name: "a lone carriage return in a module",
            setup: Setup::WithModules(
                "import \"lib/m\" as m;\nallow_tcp(22);\n".into(),
                vec![("m.rhai", "// x\rallow_from(\"0.0.0.0/0\");\n".into())],
            ),
            message: "holds a carriage return",
            place: Some("lib/m.rhai:1:5"),
        },
        script(
            "a bidi control in a comment",
            "// admins only \u{202e}\nallow_tcp(22);\n",
            "holds the bidi control U+202E",
            Some("fw.rhai:1:16"),
        ),
        script(
            "an escape character in a comment",
            "// \u{1b}[2J\nallow_tcp(22);\n",
            "holds the control character U+001B",
            Some("fw.rhai:1:4"),
        ),
        // Quoted user text stays on its line, escaped.
        script(
            "a newline in an unknown service",
            "allow_tcp(\"http\\nERROR forged line\");\n",
            "unknown service `http\\nERROR forged line`",
            Some("fw.rhai:1:11"),
        ),
        script(
            "an escape sequence in an address",
            "block(\"1.2.3.4\\x1b[2J\");\n",
            "`1.2.3.4\\u{1b}[2J` is not an IP address",
            Some("fw.rhai:1:7"),
        ),
        script(
            "an escape and a newline in an import path",
            "import \"a\\x1b[2J\\nb\" as x;\n",
            "cannot import `a\\u{1b}[2J\\nb`",
            Some("fw.rhai:1:8"),
        ),
        script(
            "an escape in an option key",
            "allow_tcp(22, #{ \"fr\\x1bom\": \"x\" });\n",
            "unknown key `fr\\u{1b}om`",
            Some("fw.rhai:1:18"),
        ),
        script(
            "an escape in an address list's name",
            "address_list(\"l\\x1b[2J\");\n",
            "cannot read the address list `l\\u{1b}[2J`",
            Some("fw.rhai:1:14"),
        ),
        // One native call once built a gigabyte for seconds.
        script(
            "16 MiB split into characters",
            "let s = \"x\"; s.pad(16000000, \"x\");\nlet a = s.split(\"\");\n",
            "size of array grew too large",
            Some("fw.rhai:2:11"),
        ),
        script(
            "16 MiB split at every character",
            "let s = \"x\"; s.pad(16000000, \"x\");\nlet a = s.split_rev(\"x\");\n",
            "size of array grew too large",
            Some("fw.rhai:2:11"),
        ),
        script(
            "16 MiB made into characters",
            "let s = \"x\"; s.pad(16000000, \"x\");\nlet a = s.to_chars();\n",
            "size of array grew too large",
            Some("fw.rhai:2:11"),
        ),
        script(
            "16 MiB with every character doubled",
            "let s = \"x\"; s.pad(16000000, \"x\");\ns.replace(\"x\", \"xy\");\n",
            "length of string grew too large",
            Some("fw.rhai:2:3"),
        ),
        script(
            "a script too long for exact positions",
            &format!("{}allow_tcp(0);\n", "\n".repeat(70_000)),
            "has more than 65535 lines",
            Some("fw.rhai:65536:1"),
        ),
    ]
}

/// Puts `case` on disk in `dir` (which holds `lib/`), replacing what the
/// script or its modules were.
pub fn install(dir: &Path, case: &Hostile) {
    let script = dir.join("fw.rhai");
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_dir(&script);
    match &case.setup {
        Setup::Script(text) => std::fs::write(&script, text).unwrap(),
        Setup::WithModules(text, modules) => {
            std::fs::create_dir_all(dir.join("lib")).unwrap();
            for (name, module) in modules {
                std::fs::write(dir.join("lib").join(name), module).unwrap();
            }
            std::fs::write(&script, text).unwrap();
        }
        Setup::Fifo => {
            let status = Command::new("mkfifo").arg(&script).status().unwrap();
            assert!(status.success(), "mkfifo");
        }
        Setup::DevZero => std::os::unix::fs::symlink("/dev/zero", &script).unwrap(),
        Setup::Folder => std::fs::create_dir(&script).unwrap(),
    }
}

/// What every failure must look like: exit 1, exactly one `error:` line
/// naming the message and the place, with the source line and a caret
/// when it has one, and nothing of Rhai's internals or a panic.
pub fn problems(case: &Hostile, code: Option<i32>, stderr: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if code != Some(1) {
        problems.push(format!("exit code {code:?}, want 1"));
    }
    if !stderr.contains(case.message) {
        problems.push(format!("no `{}` in the message", case.message));
    }
    if stderr.lines().filter(|l| l.starts_with("error: ")).count() != 1 {
        problems.push("not exactly one error".into());
    }
    if let Some(place) = case.place {
        if !stderr.contains(&format!("--> {place}\n")) {
            problems.push(format!("no `--> {place}`"));
        }
        if !stderr
            .lines()
            .any(|l| l.trim_start().starts_with("| ") && l.trim_end().ends_with('^'))
        {
            problems.push("no caret".into());
        }
    } else if case.message.contains("ran too long") && !stderr.contains("--> fw.rhai:") {
        problems.push("a runaway script names no place".into());
    }
    // Nothing the user wrote reaches a terminal or log raw.
    if stderr.contains('\u{1b}') || stderr.contains('\r') {
        problems.push("a raw escape or carriage return reaches the terminal".into());
    }
    if stderr.lines().any(|l| l.starts_with("ERROR")) {
        problems.push("a forged line".into());
    }
    for word in [
        "panicked",
        "RUST_BACKTRACE",
        "rhai::",
        "ImmutableString",
        "stack overflow",
    ] {
        if stderr.contains(word) {
            problems.push(format!("`{word}` leaks"));
        }
    }
    problems
}
