//! The sandboxed Rhai engine a script runs in (script stage): no `eval`,
//! no clock, no `sleep` or `exit`; bounded work, depth, sizes and wall
//! time; imports confined to the script's folder; stdlib always in scope
//! and out of the script's reach.

use std::cell::Cell;
use std::time::Duration;

use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage,
    BasicMathPackage, BasicStringPackage, BitFieldPackage, LogicPackage, MoreStringPackage,
    Package,
};
use rhai::{Dynamic, Engine, LexError, OptimizationLevel, Position, Token};

use super::bounded;
use super::modules::ConfinedResolver;
use super::session::{Shared, Syntax};
use super::stdlib;
use super::values;

/// Operations a script may run. A 10,000-rule script needs a few percent of
/// this; a runaway loop meets it, or [`TIME_LIMIT`], well under a second.
pub const MAX_OPERATIONS: u64 = 5_000_000;
/// Every evaluation ends within this much wall time, whatever the script
/// does: reading, parsing, running, importing.
pub const TIME_LIMIT: Duration = Duration::from_secs(1);
pub const MAX_CALL_LEVELS: usize = 48;
/// Rhai counts the bytes of *all* strings inside one value against this,
/// so it is what bounds an address list: 200,000 IPv6 CIDRs fit.
pub const MAX_STRING: usize = 16 * 1024 * 1024;
pub const MAX_ARRAY: usize = 200_000;
pub const MAX_MAP: usize = 10_000;
pub const MAX_MODULES: usize = 64;
/// What one `print` may write to the log.
const MAX_PRINT: usize = 1_000;

/// The wall-clock end of one evaluation, on the coarse monotonic clock
/// (a few nanoseconds to read, so it can be checked at every operation).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at_ns: u64,
}

impl Deadline {
    pub fn after(limit: Duration) -> Deadline {
        Deadline {
            at_ns: now_ns().saturating_add(limit.as_nanos() as u64),
        }
    }

    pub fn passed(self) -> bool {
        now_ns() >= self.at_ns
    }
}

fn now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the pointer it is given,
    // which points at a live, writable one. Through libc (the vDSO glibc
    // already set up), not rustix, whose own vDSO lookup valgrind breaks.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// What the progress hook returns to stop a script past its deadline.
pub const DEADLINE_TOKEN: &str = "fwscript: past the deadline";

pub fn build(shared: &Shared, deadline: Deadline) -> Engine {
    let mut engine = sandbox();
    engine.set_max_operations(MAX_OPERATIONS);
    engine.set_max_call_levels(MAX_CALL_LEVELS);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(MAX_STRING);
    engine.set_max_array_size(MAX_ARRAY);
    engine.set_max_map_size(MAX_MAP);
    engine.set_max_modules(MAX_MODULES);
    // The clock every 16 operations: cheap, and no single operation is
    // long (sizes are bounded, before allocating: see `bounded`), so the
    // deadline still holds to the millisecond.
    engine.on_progress(move |ops| {
        (ops % 16 == 0 && deadline.passed()).then(|| DEADLINE_TOKEN.into())
    });
    engine.on_print(|text| tracing::info!(target: "script", "{}", one_line(text)));
    engine.on_debug(|text, source, pos| {
        tracing::debug!(target: "script", "{}:{pos}: {}", one_line(source.unwrap_or("")), one_line(text))
    });
    let guard = TokenGuard {
        shared: shared.clone(),
        after_fn: FnWatch::default(),
        tokens: Cell::new(0),
        deadline,
    };
    #[allow(deprecated)]
    engine.on_parse_token(move |token, pos, _| guard.check(token, pos));
    stdlib::register(&mut engine, shared);
    engine.set_module_resolver(ConfinedResolver::new(shared.clone()));
    engine
}

/// The language every Rhai text fwscript runs gets, scripts and test files
/// alike; each caller adds its limits, hooks and functions.
pub fn sandbox() -> Engine {
    let mut engine = Engine::new_raw();
    // The standard packages without LanguageCorePackage (`exit`, `sleep`,
    // `parse_json`, …), BasicTimePackage (`timestamp`) and the debugging
    // and blob packages: nothing that waits, ends the host or reads a clock.
    ArithmeticPackage::new().register_into_engine(&mut engine);
    BasicStringPackage::new().register_into_engine(&mut engine);
    BasicIteratorPackage::new().register_into_engine(&mut engine);
    BasicFnPackage::new().register_into_engine(&mut engine);
    LogicPackage::new().register_into_engine(&mut engine);
    BasicMathPackage::new().register_into_engine(&mut engine);
    BitFieldPackage::new().register_into_engine(&mut engine);
    BasicArrayPackage::new().register_into_engine(&mut engine);
    BasicMapPackage::new().register_into_engine(&mut engine);
    MoreStringPackage::new().register_into_engine(&mut engine);

    engine.disable_symbol("eval");
    // Literals stay as written, so an error can point into an array or map.
    engine.set_optimization_level(OptimizationLevel::None);
    bounded::register(&mut engine);
    engine
}

/// Every Rhai built-in a script can call besides stdlib, by name: for
/// `fwscript functions`, which lists exactly what a script can call.
pub fn builtin_names() -> Vec<String> {
    let shared = Shared::default();
    let engine = build(&shared, Deadline::after(TIME_LIMIT));
    let mut names: Vec<String> = engine.collect_fn_metadata(
        None,
        |info| {
            let name = info.metadata.name.as_str();
            let plain = name
                .strip_prefix("get$")
                .or_else(|| name.strip_prefix("set$"))
                .unwrap_or(name);
            let word = plain.chars().all(|c| c.is_alphanumeric() || c == '_');
            (word && !stdlib::is_reserved(plain) && !plain.is_empty()).then(|| plain.to_string())
        },
        true,
    );
    names.sort();
    names.dedup();
    names
}

/// `print` and `debug` write one log line each, whatever the text holds: a
/// newline or a control character could forge a line of its own.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_PRINT));
    for (count, c) in text.chars().enumerate() {
        if count == MAX_PRINT {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if values::is_hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Watches the tokens as they are parsed: a function named like a stdlib
/// one is refused at its name, and parsing stops at the deadline like
/// running does.
struct TokenGuard {
    shared: Shared,
    after_fn: FnWatch,
    /// Tokens seen, so the clock is read every few hundred of them.
    tokens: Cell<u32>,
    deadline: Deadline,
}

/// Follows the tokens of a definition (`fn NAME`, `private fn NAME`,
/// `fn TYPE.NAME`) so the name being defined is known as it is parsed;
/// test files use it too, for `expect`.
#[derive(Default)]
pub struct FnWatch {
    state: Cell<FnState>,
}

#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum FnState {
    #[default]
    Idle,
    /// `fn` seen: the name (or a method's type) comes next.
    Name,
    /// `fn TYPE` seen: a `.` makes it a method, whose name follows.
    Type,
    Method,
}

impl FnWatch {
    /// The name `token` gives a function being defined, if it does.
    pub fn defines<'t>(&self, token: &'t Token) -> Option<&'t str> {
        let was = self.state.get();
        let next = match (token, was) {
            (Token::Fn, _) => FnState::Name,
            (Token::Identifier(_), FnState::Name) => FnState::Type,
            (Token::StringConstant(_), FnState::Name) => FnState::Type,
            (Token::Period, FnState::Type) => FnState::Method,
            _ => FnState::Idle,
        };
        self.state.set(next);
        match (token, was) {
            (Token::Identifier(name), FnState::Name | FnState::Method) => Some(name.as_str()),
            _ => None,
        }
    }

    pub fn reset(&self) {
        self.state.set(FnState::Idle);
    }
}

impl TokenGuard {
    fn check(&self, token: Token, pos: Position) -> Token {
        let tokens = self.tokens.get().wrapping_add(1);
        self.tokens.set(tokens);
        if tokens.is_multiple_of(256) && self.deadline.passed() {
            return self.refuse(Syntax::Deadline, pos);
        }
        if let Some(name) = self.after_fn.defines(&token) {
            if stdlib::is_reserved(name) {
                let name = name.to_string();
                return self.refuse(Syntax::Reserved(name), pos);
            }
        }
        token
    }

    fn refuse(&self, syntax: Syntax, pos: Position) -> Token {
        self.after_fn.reset();
        let marker = syntax.marker();
        self.shared.borrow_mut().syntax = Some((syntax, pos));
        Token::LexError(Box::new(LexError::ImproperSymbol(
            marker.to_string(),
            marker.to_string(),
        )))
    }
}

/// A value the progress hook can end a script with.
pub fn is_deadline(value: &Dynamic) -> bool {
    value
        .read_lock::<rhai::ImmutableString>()
        .is_some_and(|s| s.as_str() == DEADLINE_TOKEN)
}
