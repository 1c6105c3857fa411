//! Script stage: a Rhai script (plus stdlib, imported modules and address
//! lists) evaluates into a [`Plan`] (**script** → plan → render).

mod bounded;
mod carets;
mod chunks;
mod collector;
mod engine;
mod error;
mod files;
pub mod functions;
mod modules;
mod permissions;
mod rhai_errors;
mod rule_spec;
mod services;
mod session;
mod source;
mod stdlib;
mod values;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use engine::{sandbox, FnWatch};
pub use error::{Location, ScriptError};
pub use stdlib::{parse_list, ListEntries};
pub use values::{describe, is_hidden};

use crate::plan::{AddressListSource, Plan};
use engine::Deadline;
use session::{Session, SourceFile};
use values::Problem;

/// The evaluation runs on a thread of its own with this much stack
/// (reserved, not used): deep but bounded recursion inside Rhai (nested
/// arrays, call levels) stays far from the end of it, and a panic inside
/// the engine becomes an error instead of ending the process (a daemon).
const STACK: usize = 256 * 1024 * 1024;

/// Evaluates the script at `path` into a plan. Reads only the script, the
/// modules it imports and the address lists it names; never touches the
/// kernel; ends within [`engine::TIME_LIMIT`] of wall time.
pub fn evaluate(path: &Path) -> Result<Plan, ScriptError> {
    // A smaller stack when the address space is limited (ulimit -v); the
    // calling thread itself as the last resort.
    for stack in [STACK, STACK / 8] {
        let owned = path.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("script".into())
            .stack_size(stack)
            .spawn(move || evaluate_here(&owned));
        if let Ok(worker) = spawned {
            return worker.join().unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                Err(ScriptError {
                    message: format!("internal error while evaluating the script: {what}"),
                    location: None,
                    hint: Some("this is a bug in fwscript; the kernel was not touched".into()),
                })
            });
        }
    }
    evaluate_here(path)
}

fn evaluate_here(path: &Path) -> Result<Plan, ScriptError> {
    let deadline = Deadline::after(engine::TIME_LIMIT);
    let shown = path.display().to_string();
    let trusted_uid = permissions::effective_uid();
    let opened = files::open(path, &shown).map_err(plain)?;
    permissions::check(&opened, trusted_uid).map_err(plain)?;
    let real = opened.real.clone();
    let text = opened.read_text().map_err(plain)?;
    source::check(&text, &shown).map_err(plain)?;

    let shared = Rc::new(RefCell::new(Session {
        trusted_uid,
        entry: shown.clone(),
        root: folder_of(path)?,
        shown_root: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        importing: vec![(real, shown.clone())],
        ..Session::default()
    }));
    shared.borrow_mut().files.push(SourceFile {
        id: shown.clone(),
        path: path.to_path_buf(),
        text,
    });
    let engine = engine::build(&shared, deadline);

    let compiled = {
        let session = shared.borrow();
        let text = session.files[0].text.clone();
        drop(session);
        engine.compile(&text)
    };
    let mut ast =
        compiled.map_err(|err| rhai_errors::from_parse(&err, &shown, &shared.borrow()))?;
    ast.set_source(shown.as_str());
    engine
        .run_ast(&ast)
        .map_err(|err| rhai_errors::from_eval(&err, &shown, &shared.borrow()))?;

    drop(engine);
    let session = Rc::try_unwrap(shared)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| {
            // The engine is gone, so nothing else holds the session; take it anyway.
            std::mem::take(&mut *shared.borrow_mut())
        });
    let mut sources: Vec<PathBuf> = session.files.iter().map(|f| f.path.clone()).collect();
    sources.extend(session.lists.iter().map(|l| l.real.clone()));
    let address_lists = session
        .lists
        .into_iter()
        .map(|l| AddressListSource {
            shown: l.written,
            entries: l.entries,
        })
        .collect();
    Ok(session.collector.into_plan(sources, address_lists))
}

/// What any Rhai text fwscript runs (a test file too) must pass before it
/// is parsed: see [`source::check`].
pub fn check_source(text: &str, shown: &str) -> Result<(), ScriptError> {
    source::check(text, shown).map_err(plain)
}

/// `text` (a user's or a ruleset's) made safe to show on one line of a
/// terminal, a log or a `//` comment: a newline, carriage return, escape
/// or bidi control would end the line, forge another or turn text around,
/// so each such character is written as `\u{…}` (`\n`, `\r`). Tabs stay,
/// for carets. Applying it twice changes nothing more.
pub fn printable(text: &str) -> String {
    if !text.chars().any(|c| c != '\t' && is_hidden(c)) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A problem with the script file itself: no call to point at, unless it
/// names its own place (a line too long).
fn plain(problem: Problem) -> ScriptError {
    ScriptError {
        message: problem.message,
        location: problem.place.map(|place| *place),
        hint: problem.hint,
    }
}

/// The ruleset of last resort, for a boot with no good ruleset kept: the
/// baseline, and new connections to the SSH port from anywhere so an admin
/// can log in and fix the script.
pub fn emergency_plan(ssh_port: u16) -> Plan {
    use crate::netfilter::{Family, Hook, Table};
    use crate::plan::{Action, Matches, PortRange, Proto, Rule, Stage};
    let rule = Rule {
        matches: Matches {
            proto: Some(Proto::Tcp),
            dport: Some(PortRange::single(ssh_port)),
            ..Matches::default()
        },
        action: Action::Accept,
        comment: Some("emergency ruleset: no good ruleset was kept".into()),
        origin: None,
    };
    let mut collector = collector::Collector::default();
    for family in Family::ALL {
        collector.push(rule_spec::PlacedRule {
            family,
            table: Table::Filter,
            hook: Hook::Input,
            stage: Some(Stage::Allow),
            rule: rule.clone(),
        });
    }
    collector.into_plan(Vec::new(), Vec::new())
}

fn folder_of(path: &Path) -> Result<PathBuf, ScriptError> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    folder.canonicalize().map_err(|err| {
        ScriptError::plain(format!(
            "cannot open the folder of `{}`: {}",
            path.display(),
            crate::io_error::lowercase(&err)
        ))
    })
}

#[cfg(test)]
mod tests;
