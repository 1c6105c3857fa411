//! Rhai's errors in the user's words: each gets the place in the user's
//! script, a sentence instead of an internal signature, and a hint where
//! one helps.

use rhai::{EvalAltResult, ParseError, ParseErrorType, Position};

use super::carets;
use super::error::ScriptError;
use super::functions;
use super::rule_spec::closest;
use super::session::{Raised, Session, Syntax};
use super::{engine, values::Problem};

pub fn from_parse(err: &ParseError, source: &str, session: &Session) -> ScriptError {
    let (problem, position) = parse_problem(&err.0, err.1, session);
    located(session, source, position, problem)
}

pub fn from_eval(err: &EvalAltResult, entry: &str, session: &Session) -> ScriptError {
    // Walk from the outermost call inwards, remembering the deepest place
    // that lies in a user's file.
    let mut source = entry.to_string();
    let mut site: Option<(String, Position)> = None;
    let mut err = err;
    loop {
        let (inner, next_source, position) = match err {
            EvalAltResult::ErrorInFunctionCall(_, callee, inner, pos) => {
                (inner, Some(callee.clone()), *pos)
            }
            EvalAltResult::ErrorInModule(path, inner, pos) => (inner, Some(path.clone()), *pos),
            innermost => {
                let pos = innermost.position();
                if !pos.is_none() {
                    site = Some((source.clone(), pos));
                }
                break;
            }
        };
        if !position.is_none() {
            site = Some((source.clone(), position));
        }
        if let Some(next) = next_source.filter(|s| !s.is_empty()) {
            source = next;
        }
        err = inner;
    }

    if let (EvalAltResult::ErrorRuntime(value, _), Some(raised)) = (err, &session.raised) {
        if value.to_string() == raised.message {
            return from_raised(raised, session);
        }
    }
    if let EvalAltResult::ErrorParsing(kind, pos) = err {
        // A module that does not parse: its own position is the useful one.
        let (problem, position) = parse_problem(kind, *pos, session);
        return located(session, &source, position, problem);
    }
    let problem = eval_problem(err);
    match site {
        Some((source, position)) => located(session, &source, position, problem),
        None => ScriptError {
            message: problem.message,
            location: None,
            hint: problem.hint,
        },
    }
}

/// A problem a stdlib function or the resolver recorded: at its call, the
/// caret under the argument at fault, or in the file it lies in.
fn from_raised(raised: &Raised, session: &Session) -> ScriptError {
    let problem = &raised.problem;
    if let Some(place) = &problem.place {
        let called = session.location(&raised.site.source, raised.site.position);
        let read_by = format!(
            "reached from {}:{}:{}",
            called.file, called.line, called.column
        );
        return ScriptError {
            message: raised.message.clone(),
            location: Some((**place).clone()),
            hint: Some(match &problem.hint {
                Some(hint) => format!("{hint}; {read_by}"),
                None => read_by,
            }),
        };
    }
    let position = match session.text(&raised.site.source) {
        Some(text) => carets::refine(text, raised.site.position, &problem.at),
        None => raised.site.position,
    };
    ScriptError {
        message: raised.message.clone(),
        location: Some(session.location(&raised.site.source, position)),
        hint: problem.hint.clone(),
    }
}

fn located(session: &Session, source: &str, position: Position, problem: Problem) -> ScriptError {
    if let Some(place) = problem.place {
        return ScriptError {
            message: problem.message,
            location: Some(*place),
            hint: problem.hint,
        };
    }
    ScriptError {
        message: problem.message,
        location: Some(session.location(source, position)),
        hint: problem.hint,
    }
}

/// A parse error, or what the token hook refused (recorded in the
/// session, with its own position).
fn parse_problem(
    kind: &ParseErrorType,
    position: Position,
    session: &Session,
) -> (Problem, Position) {
    // The token hook refused a token: whatever the parser made of it,
    // the hook's reason is the one to give.
    if let Some((syntax, at)) = &session.syntax {
        return match syntax {
            Syntax::Reserved(name) => (
                Problem::new(format!(
                    "`{name}` is a fwscript function and cannot be redefined"
                ))
                .hint(format!(
                    "give your function another name, like `my_{name}`; `fwscript functions` lists the reserved ones"
                )),
                *at,
            ),
            Syntax::Deadline => (too_long(), *at),
        };
    }
    use rhai::ParseErrorType as P;
    let problem = match kind {
        P::Reserved(word) if word == "eval" => Problem::new("`eval` is not available in fwscript")
            .hint("a firewall script cannot run code built at run time"),
        P::Reserved(word) => Problem::new(format!("`{word}` is a reserved word")),
        other => Problem::new(sentence(&other.to_string())),
    };
    (problem, position)
}

fn too_long() -> Problem {
    Problem::new(format!(
        "the script ran too long: it was stopped after {} s",
        engine::TIME_LIMIT.as_secs()
    ))
    .hint("look for a loop that never ends, or work that grows with every round")
}

fn eval_problem(err: &EvalAltResult) -> Problem {
    use EvalAltResult as E;
    match err {
        E::ErrorFunctionNotFound(signature, _) => unknown_function(signature),
        E::ErrorVariableNotFound(name, _) => Problem::new(format!("unknown variable `{name}`")),
        E::ErrorPropertyNotFound(name, _) => Problem::new(format!("unknown property `{name}`")),
        E::ErrorModuleNotFound(name, _) => Problem::new(format!("cannot import `{name}`")),
        E::ErrorTooManyOperations(_) => Problem::new(format!(
            "the script ran too long: it was stopped after {} operations",
            engine::MAX_OPERATIONS
        ))
        .hint("look for a loop that never ends"),
        E::ErrorTerminated(value, _) if engine::is_deadline(value) => too_long(),
        E::ErrorStackOverflow(_) => Problem::new(format!(
            "functions call each other more than {} levels deep",
            engine::MAX_CALL_LEVELS
        ))
        .hint("look for a function that calls itself without end"),
        E::ErrorTooManyModules(_) => Problem::new(format!(
            "more than {} modules are imported",
            engine::MAX_MODULES
        ))
        .hint("look for modules that import each other in a circle"),
        E::ErrorTooManyVariables(_) => Problem::new("the script defines too many variables"),
        E::ErrorDataTooLarge(what, _) => Problem::new(format!("{} grew too large", sentence(what)))
            .hint(format!(
                "one value may hold at most {} MiB of text, {} array items and {} map keys, counting what it contains",
                engine::MAX_STRING >> 20,
                engine::MAX_ARRAY,
                engine::MAX_MAP
            )),
        E::ErrorMismatchDataType(expected, found, _) => Problem::new(format!(
            "expected {}, found {}",
            type_words(expected),
            type_words(found)
        )),
        E::ErrorMismatchOutputType(expected, found, _) => Problem::new(format!(
            "expected {}, found {}",
            type_words(expected),
            type_words(found)
        )),
        E::ErrorIndexingType(kind, _) => {
            Problem::new(format!("{} cannot be indexed", type_words(kind)))
        }
        E::ErrorArrayBounds(len, index, _) => Problem::new(format!(
            "index {index} is out of bounds: the array has {len} items"
        )),
        E::ErrorStringBounds(len, index, _) => Problem::new(format!(
            "index {index} is out of bounds: the string has {len} characters"
        )),
        E::ErrorFor(_) => Problem::new("`for` needs an array, a range or a string to loop over"),
        E::ErrorAssignmentToConstant(name, _) => {
            Problem::new(format!("cannot assign to the constant `{name}`"))
        }
        E::ErrorArithmetic(message, _) => Problem::new(sentence(message)),
        E::ErrorDotExpr(message, _) => Problem::new(sentence(message)),
        E::ErrorRuntime(value, _) => Problem::new(format!("script error: {value}")),
        E::ErrorTerminated(_, _) => Problem::new("the script was stopped"),
        other => Problem::new(sentence(&other.to_string())),
    }
}

/// `allow_tcp (i64, i64, i64)` → which function, and what it takes.
fn unknown_function(signature: &str) -> Problem {
    let name = signature
        .split(['(', ' '])
        .next()
        .unwrap_or(signature)
        .trim();
    let args = signature
        .split_once('(')
        .map_or("", |(_, rest)| rest.trim_end_matches(')'));
    let count = if args.trim().is_empty() {
        0
    } else {
        args.split(',').count()
    };
    let known = functions::signatures(name);
    if !known.is_empty() {
        let given = match count {
            1 => "1 argument".to_string(),
            n => format!("{n} arguments"),
        };
        return Problem::new(format!("`{name}` does not take {given}"))
            .hint(format!("write {}", known.join(" or ")));
    }
    let all = functions::all();
    let names: Vec<&str> = all.iter().map(|f| f.name.as_str()).collect();
    let problem = Problem::new(format!("unknown function `{name}`"));
    match closest(name, &names) {
        Some(near) => problem.hint(format!("did you mean `{near}`?")),
        None => problem.hint("`fwscript functions` lists what a script can call"),
    }
}

/// Rhai's type names as a user reads them.
fn type_words(name: &str) -> String {
    let words = match name.trim() {
        "i64" | "i32" | "INT" | "integer" => "a number",
        "f64" | "f32" | "FLOAT" | "float" => "a decimal number",
        "string" | "ImmutableString" | "&str" | "String" => "a string",
        "char" => "a character",
        "bool" => "`true` or `false`",
        "array" | "Array" => "an array",
        "map" | "Map" => "a map",
        "()" => "nothing",
        "Fn" | "FnPtr" => "a function",
        other if other.contains("Array") => "an array",
        other if other.contains("Map") => "a map",
        other if other.contains("String") => "a string",
        _ => "a value of another kind",
    };
    words.to_string()
}

/// Lowercase first letter, no trailing period: how messages read here.
fn sentence(text: &str) -> String {
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
