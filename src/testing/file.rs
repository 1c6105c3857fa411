//! A test file read into expectations (test file → **expectations** →
//! verdicts). Test files are Rhai run in the firewall script's sandbox
//! (the same language: no `eval`, `exit`, `sleep` or clock; the same
//! source checks) with tighter limits and no imports. Two functions exist,
//! and cannot be redefined: `expect(packet, verdict)` and
//! `expect_nat(packet, translated)`. Every mistake in a call is an error
//! at its `file:line:col`, before anything is checked, and so is a file
//! that expects nothing: it would pass whatever the script does.

use std::cell::RefCell;
use std::io::Read as _;
use std::net::IpAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, LexError, Map, NativeCallContext, Position, Token};

use crate::explain::{Query, Request, Verdict};
use crate::script::{describe, FnWatch, Location, ScriptError};

/// The functions a test file has; defining its own would make it pass.
const RESERVED: &[&str] = &["expect", "expect_nat"];

/// The packet keys of `explain`, as a test file spells them.
pub const PACKET_KEYS: &[&str] = &[
    "proto",
    "src",
    "dst",
    "sport",
    "dport",
    "iface",
    "oface",
    "chain",
    "state",
    "icmp_type",
];

/// What `expect_nat` may say of the packet after translation.
pub const NAT_KEYS: &[&str] = &["dst", "dport"];

/// Limits of the sandbox: what a test file may do before it is stopped.
const MAX_OPERATIONS: u64 = 1_000_000;
const MAX_CALL_LEVELS: usize = 32;
const MAX_STRING: usize = 64 * 1024;
const MAX_ARRAY: usize = 10_000;
const MAX_MAP: usize = 1_000;
const MAX_EXPECTATIONS: usize = 10_000;
const MAX_FILE: u64 = 4 * 1024 * 1024;
/// Wall time a test file may take to run (not to check).
const DEADLINE: Duration = Duration::from_secs(1);

/// A packet as a test describes it: `explain`'s flags, owned.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PacketSpec {
    pub proto: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oface: Option<String>,
    pub chain: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<String>,
}

impl PacketSpec {
    pub fn request(&self) -> Request<'_> {
        Request {
            proto: &self.proto,
            src: self.src.as_deref(),
            dst: self.dst.as_deref(),
            sport: self.sport,
            dport: self.dport,
            iface: self.iface.as_deref(),
            oface: self.oface.as_deref(),
            chain: &self.chain,
            state: &self.state,
            icmp_type: self.icmp_type.as_deref(),
        }
    }

    /// `tcp from 203.0.113.7 to port 22`, for messages.
    pub fn describe(&self) -> String {
        let mut out = self.proto.clone();
        if let Some(src) = &self.src {
            out.push_str(&format!(" from {src}"));
        }
        if let Some(dst) = &self.dst {
            out.push_str(&format!(" to {dst}"));
        }
        if let Some(port) = self.dport {
            out.push_str(&format!(" port {port}"));
        }
        if let Some(t) = &self.icmp_type {
            out.push_str(&format!(" {t}"));
        }
        if let Some(i) = &self.iface {
            out.push_str(&format!(" in {i}"));
        }
        if let Some(o) = &self.oface {
            out.push_str(&format!(" out {o}"));
        }
        if self.chain != "input" {
            out.push_str(&format!(" ({})", self.chain));
        }
        if self.state != "new" {
            out.push_str(&format!(" [{}]", self.state));
        }
        out
    }
}

/// What a test expects of its packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Verdict(Verdict),
    /// Accepted, and arriving translated to these.
    Nat {
        dst: Option<IpAddr>,
        dport: Option<u16>,
    },
}

/// One `expect` or `expect_nat` call.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub packet: PacketSpec,
    pub expected: Expected,
    /// The packet made sense of, once per family it may be in.
    pub query: Query,
}

struct Loaded {
    file: String,
    text: String,
    expectations: Vec<Expectation>,
    /// The error a native raised, with its place; Rhai carries only the
    /// message up.
    raised: Option<ScriptError>,
    /// A definition of `expect` or `expect_nat` the parser was stopped at.
    redefined: Option<(String, Position)>,
}

/// Reads and runs the test file at `path` (shown as `shown`).
pub fn load(path: &Path, shown: &str) -> Result<Vec<Expectation>, ScriptError> {
    let text = read_regular(path, shown)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text).to_string();
    crate::script::check_source(&text, shown)?;
    let shared = Rc::new(RefCell::new(Loaded {
        file: shown.to_string(),
        text: text.clone(),
        expectations: Vec::new(),
        raised: None,
        redefined: None,
    }));
    let engine = engine(&shared);
    let ast = engine.compile(&text).map_err(|err| {
        let loaded = shared.borrow();
        if let Some((name, at)) = &loaded.redefined {
            return located(
                &loaded,
                *at,
                format!("`{name}` is a function of test files and cannot be redefined"),
                Some("name your own function differently".into()),
            );
        }
        located(&loaded, err.1, sentence(&err.0.to_string()), None)
    })?;
    if let Err(err) = engine.run_ast(&ast) {
        let loaded = shared.borrow();
        if let Some(raised) = &loaded.raised {
            return Err(raised.clone());
        }
        return Err(eval_error(&loaded, &err));
    }
    drop(engine);
    let loaded = Rc::try_unwrap(shared)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| Loaded {
            expectations: std::mem::take(&mut shared.borrow_mut().expectations),
            file: String::new(),
            text: String::new(),
            raised: None,
            redefined: None,
        });
    if loaded.expectations.is_empty() {
        return Err(ScriptError {
            message: format!("`{shown}` expects nothing"),
            location: Some(Location {
                file: shown.to_string(),
                line: 1,
                column: 1,
                // Even an empty file gets its caret: the place is the file.
                source_line: Some(text.lines().next().unwrap_or("").to_string()),
            }),
            hint: Some(
                "a test file with no `expect` or `expect_nat` call that runs would pass \
                 whatever the script does"
                    .into(),
            ),
        });
    }
    Ok(loaded.expectations)
}

/// Only a regular file of sane size is read, from the descriptor that was
/// checked.
fn read_regular(path: &Path, shown: &str) -> Result<String, ScriptError> {
    let fail =
        |what: String| ScriptError::plain(format!("cannot read test file `{shown}`: {what}"));
    // Non-blocking, so a FIFO is not waited on before it is refused.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| fail(lowercase(&e)))?
    };
    let meta = file.metadata().map_err(|e| fail(lowercase(&e)))?;
    if !meta.is_file() {
        return Err(fail("it is not a regular file".into()));
    }
    if meta.len() > MAX_FILE {
        return Err(fail(format!("it is larger than {} MiB", MAX_FILE >> 20)));
    }
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(lowercase(&e)))?;
    Ok(text.replace("\r\n", "\n"))
}

fn lowercase(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    sentence(text)
}

fn engine(shared: &Rc<RefCell<Loaded>>) -> Engine {
    // The script's language, so a test file can neither wait (`sleep`),
    // end the run early and green (`exit`) nor read a clock.
    let mut engine = crate::script::sandbox();
    engine.set_max_operations(MAX_OPERATIONS);
    engine.set_max_call_levels(MAX_CALL_LEVELS);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(MAX_STRING);
    engine.set_max_array_size(MAX_ARRAY);
    engine.set_max_map_size(MAX_MAP);
    // Tests import nothing: everything they need is `expect`.
    engine.set_max_modules(0);
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    let started = Instant::now();
    engine.on_progress(move |_| (started.elapsed() > DEADLINE).then(|| Dynamic::from("deadline")));
    let watch = FnWatch::default();
    let s = shared.clone();
    #[allow(deprecated)]
    engine.on_parse_token(move |token, pos, _| match watch.defines(&token) {
        Some(name) if RESERVED.contains(&name) => {
            s.borrow_mut().redefined = Some((name.to_string(), pos));
            Token::LexError(Box::new(LexError::ImproperSymbol(
                "reserved".into(),
                "reserved".into(),
            )))
        }
        _ => token,
    });

    let s = shared.clone();
    engine.register_fn(
        "expect",
        move |ctx: NativeCallContext, packet: Dynamic, verdict: Dynamic| {
            record(&s, ctx.call_position(), &packet, |_| verdict_of(&verdict))
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "expect_nat",
        move |ctx: NativeCallContext, packet: Dynamic, translated: Dynamic| {
            record(&s, ctx.call_position(), &packet, |_| nat_of(&translated))
        },
    );
    engine
}

/// A mistake in a call: message and hint, placed at the call.
struct Problem {
    message: String,
    hint: Option<String>,
}

impl Problem {
    fn new(message: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Problem {
        self.hint = Some(hint.into());
        self
    }
}

fn record(
    shared: &Rc<RefCell<Loaded>>,
    position: Position,
    packet: &Dynamic,
    expected: impl FnOnce(&PacketSpec) -> Result<Expected, Problem>,
) -> Result<(), Box<EvalAltResult>> {
    let outcome = packet_of(packet).and_then(|spec| {
        let expected = expected(&spec)?;
        let query = Query::parse(&spec.request()).map_err(|e| Problem::new(e.to_string()))?;
        if let (Expected::Nat { dst: Some(dst), .. }, Some(packet)) =
            (&expected, query.packets.first())
        {
            if crate::plan::family_of(dst) != packet.family && query.packets.len() == 1 {
                return Err(Problem::new(format!(
                    "the translated `dst` {dst} is not of the packet's family ({})",
                    packet.family
                )));
            }
        }
        Ok((spec, expected, query))
    });
    let mut loaded = shared.borrow_mut();
    match outcome {
        Ok((packet, expected, query)) => {
            if loaded.expectations.len() >= MAX_EXPECTATIONS {
                let error = located(
                    &loaded,
                    position,
                    format!("a test file may hold at most {MAX_EXPECTATIONS} expectations"),
                    None,
                );
                return Err(raise(&mut loaded, error));
            }
            let line = position.line().unwrap_or(0);
            let column = position.position().unwrap_or(0);
            let file = loaded.file.clone();
            loaded.expectations.push(Expectation {
                file,
                line,
                column,
                packet,
                expected,
                query,
            });
            Ok(())
        }
        Err(problem) => {
            let error = located(&loaded, position, problem.message, problem.hint);
            Err(raise(&mut loaded, error))
        }
    }
}

fn raise(loaded: &mut Loaded, error: ScriptError) -> Box<EvalAltResult> {
    let message = error.message.clone();
    loaded.raised = Some(error);
    EvalAltResult::ErrorRuntime(message.into(), Position::NONE).into()
}

fn located(
    loaded: &Loaded,
    position: Position,
    message: String,
    hint: Option<String>,
) -> ScriptError {
    let line = position.line().unwrap_or(0);
    ScriptError {
        message,
        location: Some(Location {
            file: loaded.file.clone(),
            line,
            column: position.position().unwrap_or(0),
            source_line: loaded
                .text
                .lines()
                .nth(line.saturating_sub(1))
                .map(str::to_string),
        }),
        hint,
    }
}

fn eval_error(loaded: &Loaded, err: &EvalAltResult) -> ScriptError {
    use EvalAltResult as E;
    let (message, hint) = match err {
        E::ErrorFunctionNotFound(signature, _) => {
            let name = signature.split([' ', '(']).next().unwrap_or(signature);
            match name {
                "expect" | "expect_nat" => (
                    format!("`{name}` takes two arguments"),
                    Some(format!("write {name}(#{{ proto: \"tcp\", dport: 22 }}, {})", if name == "expect" { "\"accept\"" } else { "#{ dport: 8080 }" })),
                ),
                _ => (
                    format!("unknown function `{name}`"),
                    Some("a test file calls `expect(packet, verdict)` and `expect_nat(packet, translated)`".into()),
                ),
            }
        }
        E::ErrorTooManyOperations(_) | E::ErrorTerminated(..) => (
            "the test file ran too long and was stopped".into(),
            Some("look for a loop that never ends".into()),
        ),
        E::ErrorTooManyModules(_) | E::ErrorModuleNotFound(..) => {
            ("test files cannot import modules".into(), None)
        }
        E::ErrorVariableNotFound(name, _) => (format!("unknown variable `{name}`"), None),
        other => (sentence(&other.to_string()), None),
    };
    located(loaded, err.position(), message, hint)
}

/// Lowercase first letter, no trailing period, no Rhai position suffix.
fn sentence(text: &str) -> String {
    let text = text.split(" (line ").next().unwrap_or(text);
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let next = (row[j + 1] + 1)
                    .min(row[j] + 1)
                    .min(prev + usize::from(ca != *cb));
                prev = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    };
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

fn map_of(value: &Dynamic, what: &str, example: &str) -> Result<rhai::Map, Problem> {
    value.read_lock::<Map>().map(|m| m.clone()).ok_or_else(|| {
        Problem::new(format!(
            "{what} must be a map like {example}, found {}",
            describe(value)
        ))
    })
}

fn check_keys(map: &Map, known: &[&str], what: &str) -> Result<(), Problem> {
    let mut unknown: Vec<&str> = map
        .keys()
        .map(|k| k.as_str())
        .filter(|k| !known.contains(k))
        .collect();
    unknown.sort_unstable();
    if let Some(first) = unknown.first() {
        let problem = Problem::new(format!("unknown key `{first}` in {what}"));
        return Err(match closest(first, known) {
            Some(near) => problem.hint(format!("did you mean `{near}`?")),
            None => problem.hint(format!("the keys are: {}", known.join(", "))),
        });
    }
    Ok(())
}

fn text(map: &Map, key: &str) -> Result<Option<String>, Problem> {
    match map.get(key) {
        None => Ok(None),
        Some(v) if v.is_string() => Ok(Some(v.to_string())),
        Some(v) => Err(Problem::new(format!(
            "`{key}` must be a string, found {}",
            describe(v)
        ))),
    }
}

fn port(map: &Map, key: &str) -> Result<Option<u16>, Problem> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => match v.as_int() {
            Ok(n) if (1..=65535).contains(&n) => Ok(Some(n as u16)),
            Ok(n) => Err(Problem::new(format!(
                "`{key}` {n} is out of range 1..65535"
            ))),
            Err(_) => Err(Problem::new(format!(
                "`{key}` must be a port number, found {}",
                describe(v)
            ))),
        },
    }
}

fn packet_of(value: &Dynamic) -> Result<PacketSpec, Problem> {
    let map = map_of(value, "the packet", "#{ proto: \"tcp\", dport: 22 }")?;
    check_keys(&map, PACKET_KEYS, "the packet")?;
    // A key given as `()` is a mistake (a typo'd variable), never "any".
    if let Some((key, _)) = map.iter().find(|(_, v)| v.is_unit()) {
        return Err(Problem::new(format!("`{key}` has no value")));
    }
    let proto = text(&map, "proto")?.ok_or_else(|| {
        Problem::new("the packet needs `proto`").hint("one of: tcp, udp, icmp, icmpv6")
    })?;
    let icmp_type = match map.get("icmp_type") {
        None => None,
        Some(v) if v.is_int() => Some(v.to_string()),
        Some(v) if v.is_string() => Some(v.to_string()),
        Some(v) => {
            return Err(Problem::new(format!(
                "`icmp_type` must be a name or a number, found {}",
                describe(v)
            )))
        }
    };
    Ok(PacketSpec {
        proto,
        src: text(&map, "src")?,
        dst: text(&map, "dst")?,
        sport: port(&map, "sport")?,
        dport: port(&map, "dport")?,
        iface: text(&map, "iface")?,
        oface: text(&map, "oface")?,
        chain: text(&map, "chain")?.unwrap_or_else(|| "input".into()),
        state: text(&map, "state")?.unwrap_or_else(|| "new".into()),
        icmp_type,
    })
}

fn verdict_of(value: &Dynamic) -> Result<Expected, Problem> {
    let text = value
        .read_lock::<rhai::ImmutableString>()
        .map(|s| s.to_string());
    let verdict = match text.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("accept") => Verdict::Accept,
        Some("drop") => Verdict::Drop,
        Some("reject") => Verdict::Reject,
        Some(other) => {
            let problem = Problem::new(format!("unknown verdict `{other}`"));
            return Err(match closest(other, &["accept", "drop", "reject"]) {
                Some(near) => problem.hint(format!("did you mean \"{near}\"?")),
                None => problem.hint("expected \"accept\", \"drop\" or \"reject\""),
            });
        }
        None => {
            return Err(Problem::new(format!(
                "the verdict must be \"accept\", \"drop\" or \"reject\", found {}",
                describe(value)
            )))
        }
    };
    Ok(Expected::Verdict(verdict))
}

fn nat_of(value: &Dynamic) -> Result<Expected, Problem> {
    let map = map_of(
        value,
        "the translation",
        "#{ dport: 8080 } or #{ dst: \"10.0.0.10\", dport: 22 }",
    )?;
    check_keys(&map, NAT_KEYS, "the translation")?;
    let dst = match text(&map, "dst")? {
        Some(t) => Some(
            t.parse::<IpAddr>()
                .map(|a| a.to_canonical())
                .map_err(|_| Problem::new(format!("`dst` value `{t}` is not an IP address")))?,
        ),
        None => None,
    };
    let dport = port(&map, "dport")?;
    if dst.is_none() && dport.is_none() {
        return Err(
            Problem::new("the translation names nothing").hint("give `dst`, `dport` or both")
        );
    }
    Ok(Expected::Nat { dst, dport })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Vec<Expectation>, ScriptError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fw.test.rhai");
        std::fs::write(&path, text).unwrap();
        load(&path, "fw.test.rhai")
    }

    #[test]
    fn reads_expectations_with_their_lines() {
        let found = load_text(
            "// ssh from the office\nexpect(#{ proto: \"tcp\", src: \"203.0.113.7\", dport: 22 }, \"accept\");\n\
             for port in [23, 3306] {\n    expect(#{ proto: \"tcp\", dport: port }, \"drop\");\n}\n\
             expect_nat(#{ proto: \"tcp\", dport: 80 }, #{ dport: 8080 });\n",
        )
        .unwrap();
        assert_eq!(found.len(), 4);
        assert_eq!((found[0].line, found[0].column), (2, 1));
        assert_eq!(found[0].expected, Expected::Verdict(Verdict::Accept));
        assert_eq!(found[2].packet.dport, Some(3306));
        assert_eq!(found[2].line, 4);
        assert_eq!(
            found[3].expected,
            Expected::Nat {
                dst: None,
                dport: Some(8080)
            }
        );
    }

    #[test]
    fn mistakes_are_errors_at_their_call() {
        let err = |text: &str| load_text(text).unwrap_err();
        let e = err("expect(#{ proto: \"tcp\", dprot: 22 }, \"accept\");");
        assert_eq!(e.message, "unknown key `dprot` in the packet");
        assert_eq!(e.hint.as_deref(), Some("did you mean `dport`?"));
        assert_eq!(e.location.as_ref().unwrap().line, 1);
        let e = err("\n  expect(#{ proto: \"tcp\", dport: 22 }, \"acept\");");
        assert_eq!(e.message, "unknown verdict `acept`");
        let loc = e.location.unwrap();
        assert_eq!((loc.line, loc.column), (2, 3));
        let e = err("expect(#{ proto: \"icmp\", src: \"2001:db8::1\" }, \"drop\");");
        assert_eq!(
            e.message,
            "protocol `icmp` is IPv4's, but `--src` is 2001:db8::1 (IPv6)"
        );
        let e =
            err("expect(#{ proto: \"tcp\", src: \"192.0.2.1\", dst: \"2001:db8::1\" }, \"drop\");");
        assert!(e.message.contains("different families"), "{e}");
        let e = err("expect(#{ proto: \"tcp\", dport: 70000 }, \"drop\");");
        assert_eq!(e.message, "`dport` 70000 is out of range 1..65535");
        let e = err("let cfg = #{}; expect(#{ proto: \"tcp\", dport: cfg.port }, \"drop\");");
        assert_eq!(e.message, "`dport` has no value");
        let e = err("expect_nat(#{ proto: \"tcp\", src: \"192.0.2.1\", dport: 80 }, #{ dst: \"2001:db8::1\" });");
        assert!(e.message.contains("not of the packet's family"), "{e}");
        let e = err("expekt(#{ proto: \"tcp\" }, \"drop\");");
        assert_eq!(e.message, "unknown function `expekt`");
        let e = err("eval(\"1\");");
        assert!(e.location.is_some());
        let e = err("import \"x\" as x;");
        assert!(e.message.contains("import"), "{e}");
        let e = err("expect(#{ proto: \"tcp\" }, \"drop\"");
        assert_eq!(e.location.unwrap().line, 1);
    }

    #[test]
    fn a_runaway_test_file_is_stopped() {
        let started = Instant::now();
        let e = load_text("let s = \"x\"; loop { s += \"\"; }").unwrap_err();
        assert!(e.message.contains("ran too long"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_test_file_runs_in_the_scripts_sandbox() {
        let err = |text: &str| load_text(text).unwrap_err();
        let ok = "expect(#{ proto: \"tcp\", dport: 80 }, \"accept\");\n";
        let fails = "expect(#{ proto: \"tcp\", dport: 22 }, \"drop\");\n";
        // Each of these once passed in CI whatever the script did.
        let started = Instant::now();
        let e = err(&format!("sleep(5);\n{ok}"));
        assert_eq!(e.message, "unknown function `sleep`");
        assert!(started.elapsed() < Duration::from_secs(5));
        let e = err(&format!("{ok}exit();\n{fails}"));
        assert_eq!(e.message, "unknown function `exit`");
        assert_eq!(e.location.unwrap().line, 2);
        let e = err("let t = timestamp();\n");
        assert_eq!(e.message, "unknown function `timestamp`");
        let e = err(&format!("{ok}/* the rest\n{fails}"));
        assert_eq!(e.message, "this block comment is never closed");
        assert_eq!(e.location.unwrap().line, 2);
        let e = err(&format!("fn expect(p, v) {{ }}\n{fails}"));
        assert_eq!(
            e.message,
            "`expect` is a function of test files and cannot be redefined"
        );
        let loc = e.location.unwrap();
        assert_eq!((loc.line, loc.column), (1, 4));
        let e = err("private fn expect_nat(p, t) { }\n");
        assert!(e.message.starts_with("`expect_nat` is a function"), "{e}");
        let e = err(&format!("// note\r{fails}"));
        assert!(e.message.contains("carriage return"), "{e}");
        // A file that expects nothing would pass for any script.
        for nothing in [
            "",
            "// to do\n",
            "let x = 1;\n",
            "if false { expect(#{ proto: \"tcp\" }, \"drop\"); }\n",
        ] {
            let e = err(nothing);
            assert_eq!(e.message, "`fw.test.rhai` expects nothing", "{nothing:?}");
            let loc = e.location.unwrap();
            assert_eq!((loc.line, loc.column), (1, 1));
        }
        // The natives that once built gigabytes in one call stop first.
        let e = err("let s = \"x\"; s.pad(60000, \"x\"); let a = s.split(\"\");\n");
        assert!(e.message.contains("too large"), "{e}");
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path(), "tests").unwrap_err();
        assert_eq!(
            e.message,
            "cannot read test file `tests`: it is not a regular file"
        );
    }
}
