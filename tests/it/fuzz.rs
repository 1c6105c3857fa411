//! Seeded random harnesses (no nightly, no cargo-fuzz): the script engine
//! and the `iptables-save` parser get inputs built from their own corpora,
//! mutated and spliced with hostile pieces. Neither may panic, hang or
//! answer with anything but a result or a well-formed error. A bounded
//! number of cases runs with every `cargo test`; for a longer run:
//!
//! ```text
//! FWSCRIPT_FUZZ_CASES=20000 cargo test --release --test it fuzz -- --nocapture
//! FWSCRIPT_FUZZ_SEED=12345 cargo test --test it fuzz   # replay one seed
//! ```
//!
//! A failure names its seed and case, and leaves the input in the temp
//! folder it prints.

use std::panic::{catch_unwind, AssertUnwindSafe};

use fwscript::live::LiveState;
use fwscript::netfilter::Family;
use fwscript::{render, script};

/// xorshift64*: small and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Case seeds: one given seed, or `count` from a fixed start.
fn seeds(default_cases: u64) -> Vec<u64> {
    match std::env::var("FWSCRIPT_FUZZ_SEED") {
        Ok(seed) => vec![seed.parse().expect("FWSCRIPT_FUZZ_SEED is a number")],
        Err(_) => (1..=setting("FWSCRIPT_FUZZ_CASES", default_cases))
            .map(|n| n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect(),
    }
}

// ---------------------------------------------------------------- scripts

const CORPUS: &[&str] = &[
    include_str!("../../scripts/tutorial.rhai"),
    include_str!("../../scripts/minimal.rhai"),
    include_str!("../../scripts/redirect.rhai"),
    include_str!("../../scripts/nat-gateway.rhai"),
];

/// Pieces a careless or hostile script is made of.
const PIECES: &[&str] = &[
    "allow_tcp(",
    "allow_udp(",
    "ssh_from(",
    "block(",
    "allow_from(",
    "limit_tcp(",
    "redirect_tcp(",
    "forward_tcp(",
    "masquerade(",
    "log_drops(",
    "policy(",
    "baseline(",
    "rule(",
    "allow_service(",
    "allow_ping()",
    "drop_scans()",
    "address_list(",
    "__rule(",
    "fn rule(x) {}",
    "fn f(n) { f(n) }",
    "import \"x\" as x;",
    "import \"fw\" as me;",
    "#{ from: cfg.nope }",
    "#{ proto: \"tcp\", dport: 22, action: \"accept\" }",
    "#{}",
    "()",
    "[22, 70000]",
    "[]",
    "[()]",
    "\"https\"",
    "\"htps\"",
    "\"6000:6010\"",
    "\"10.0.0.0/8\"",
    "\"::/0\"",
    "\"0.0.0.0/0\"",
    "\"2001:db8::1\"",
    "\"eth0\"",
    "\"\u{202e}\"",
    "\"\u{2028}\"",
    "\"a\\nb\"",
    "\"\\\"\"",
    "\"x\"",
    "-1",
    "0",
    "65536",
    "9223372036854775807",
    "1.5",
    "true",
    "'c'",
    "let x",
    "let cfg = #{};",
    "cfg.x",
    "x",
    ";",
    ",",
    ")",
    "(",
    "[",
    "]",
    "{",
    "}",
    "#{",
    "/*",
    "*/",
    "//",
    "\n",
    "`",
    "${",
    "\"",
    "loop {",
    "while true {",
    "for i in 0..3 {",
    "if x {",
    "else",
    "return",
    "throw",
    "print(",
    "sleep(1)",
    "exit()",
    "Fn(\"allow_tcp\")",
    ".call(",
    "\u{feff}",
    "\r\n",
    "\u{0}",
    "🦀",
];

/// A script: a corpus script mutated, or pieces strung together.
fn random_script(rng: &mut Rng) -> String {
    if rng.chance(50) {
        let mut text: Vec<char> = rng.pick(CORPUS).chars().collect();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(text.len() + 1);
            match rng.below(4) {
                0 => {
                    let end = (at + rng.below(20)).min(text.len());
                    text.drain(at..end);
                }
                1 => {
                    let piece = rng.pick(PIECES);
                    text.splice(at..at, piece.chars());
                }
                2 => {
                    if let Some(c) = text.get_mut(at) {
                        *c = char::from_u32(rng.below(0x3000) as u32).unwrap_or('?');
                    }
                }
                _ => {
                    let from = rng.below(text.len());
                    let end = (from + rng.below(40)).min(text.len());
                    let copy: Vec<char> = text[from..end].to_vec();
                    text.splice(at..at, copy);
                }
            }
        }
        text.into_iter().collect()
    } else {
        let mut text = String::new();
        for _ in 0..1 + rng.below(30) {
            text.push_str(rng.pick(PIECES));
            if rng.chance(30) {
                text.push(' ');
            }
        }
        text
    }
}

#[test]
fn fuzz_the_script_engine() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.rhai"), "allow_tcp(1);\n").unwrap();
    let path = dir.path().join("fw.rhai");
    for seed in seeds(300) {
        let mut rng = Rng(seed | 1);
        let text = random_script(&mut rng);
        std::fs::write(&path, &text).unwrap();
        let lines = text.lines().count().max(1);
        let result = catch_unwind(AssertUnwindSafe(|| script::evaluate(&path)));
        let fail = |why: String| -> ! {
            panic!(
                "seed {seed}: {why}\n--- script (kept in {}) ---\n{text}",
                path.display()
            )
        };
        match result {
            Err(_) => fail("evaluate panicked".into()),
            Ok(Err(err)) => {
                if err.message.is_empty() || err.message.contains("internal error") {
                    fail(format!("a bad error: {err}"));
                }
                if let Some(loc) = &err.location {
                    if loc.file.ends_with("fw.rhai") && loc.line > lines + 1 {
                        fail(format!("an error past the end of the script: {err}"));
                    }
                }
                let shown = err.to_string();
                if shown.contains("panicked") || shown.contains("rhai::") {
                    fail(format!("internals leak: {shown}"));
                }
            }
            Ok(Ok(plan)) => {
                let rendered = catch_unwind(AssertUnwindSafe(|| render::restore_files(&plan)));
                let Ok(text) = rendered else {
                    fail("render panicked".into());
                };
                if text.chars().any(|c| c.is_control() && c != '\n') {
                    fail(format!(
                        "a control character reached the restore file:\n{text}"
                    ));
                }
            }
        }
    }
}

// ------------------------------------------------------- iptables-save

const SAVES: &[(Family, &str)] = &[
    (Family::Ipv4, include_str!("../fixtures/nft-ipv4.save")),
    (Family::Ipv6, include_str!("../fixtures/nft-ipv6.save")),
    (Family::Ipv4, include_str!("../fixtures/legacy-ipv4.save")),
    (Family::Ipv6, include_str!("../fixtures/legacy-ipv6.save")),
    (
        Family::Ipv4,
        include_str!("../fixtures/nft-ipv4-counters.save"),
    ),
    (
        Family::Ipv4,
        include_str!("../fixtures/legacy-ipv4-counters.save"),
    ),
];

const SAVE_PIECES: &[&str] = &[
    "*filter",
    "*nat",
    "*mangle",
    "*raw",
    "*security",
    "COMMIT",
    ":INPUT DROP [0:0]",
    ":FWS-INPUT - [0:0]",
    ":X",
    ":",
    "-A INPUT -j FWS-INPUT",
    "-A FWS-INPUT",
    "-m comment --comment \"fws:0123456789ab\"",
    "-m comment --comment \"fws:",
    "--comment \"unterminated",
    "\"",
    "\\\"",
    "[12:34]",
    "[",
    "]",
    "-j",
    "-j ACCEPT",
    "-s",
    "-p tcp -m tcp --dport 22",
    "!",
    "-N x",
    "-P INPUT ACCEPT",
    "-I INPUT 1",
    "#",
    "\t",
    "\u{202e}",
    "é",
    "\u{0}",
    "                                                  ",
];

fn random_save(rng: &mut Rng) -> (Family, String) {
    let (family, base) = rng.pick(SAVES);
    let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(lines.len() + 1);
        match rng.below(5) {
            0 if at < lines.len() => {
                lines.remove(at);
            }
            1 => {
                let from = rng.below(lines.len());
                let copy = lines.get(from).cloned().unwrap_or_default();
                lines.insert(at, copy);
            }
            2 => {
                let mut line = String::new();
                for _ in 0..1 + rng.below(6) {
                    line.push_str(rng.pick(SAVE_PIECES));
                    line.push(' ');
                }
                lines.insert(at, line);
            }
            3 if at < lines.len() => {
                let line = &mut lines[at];
                let cut = rng.below(line.len() + 1);
                if line.is_char_boundary(cut) {
                    line.insert_str(cut, rng.pick(SAVE_PIECES));
                }
            }
            _ if at < lines.len() => {
                let line = &mut lines[at];
                let cut = rng.below(line.len() + 1);
                if line.is_char_boundary(cut) {
                    line.truncate(cut);
                }
            }
            _ => {}
        }
    }
    (family, lines.join("\n") + "\n")
}

#[test]
fn fuzz_the_iptables_save_parser() {
    for seed in seeds(3_000) {
        let mut rng = Rng(seed | 1);
        let (family, text) = random_save(&mut rng);
        let lines = text.lines().count();
        let first = catch_unwind(|| LiveState::parse(family, &text));
        let Ok(first) = first else {
            panic!("seed {seed}: LiveState::parse panicked on:\n{text}");
        };
        if let Err(err) = &first {
            assert!(
                err.line >= 1 && err.line <= lines,
                "seed {seed}: an error at line {} of {lines}: {err}\n{text}",
                err.line
            );
        }
        assert_eq!(
            LiveState::parse(family, &text),
            first,
            "seed {seed}: two parses of the same text differ"
        );
    }
}
