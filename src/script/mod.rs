//! Script stage: a Rhai script (plus stdlib and imported modules) evaluates
//! into a [`Plan`] (**script** → plan → render).

mod chunks;
mod collector;
mod engine;
mod error;
pub mod functions;
mod modules;
mod natives;
mod permissions;
mod rhai_errors;
mod rule_spec;
mod services;
mod session;
mod values;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use error::{Location, ScriptError};

use crate::plan::Plan;
use session::{Session, SourceFile};

/// Evaluates the script at `path` into a plan. Reads only the script and the
/// modules it imports; never touches the kernel.
pub fn evaluate(path: &Path) -> Result<Plan, ScriptError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| {
        ScriptError::plain(format!(
            "cannot read `{shown}`: {}",
            modules::lowercase(&err)
        ))
    })?;
    let shown_root = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let root = folder_of(path)?;
    let trusted_uid = permissions::effective_uid();
    permissions::check(path, &shown, trusted_uid).map_err(|problem| ScriptError {
        message: problem.message,
        location: None,
        hint: problem.hint,
    })?;

    let shared = Rc::new(RefCell::new(Session {
        trusted_uid,
        ..Session::default()
    }));
    shared.borrow_mut().files.push(SourceFile {
        id: shown.clone(),
        path: path.to_path_buf(),
        text: text.clone(),
    });
    let engine = engine::build(&shared, root, shown_root);

    let mut ast = engine
        .compile(&text)
        .map_err(|err| rhai_errors::from_parse(&err, &shown, &shared.borrow()))?;
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
    let sources = session.files.iter().map(|f| f.path.clone()).collect();
    Ok(session.collector.into_plan(sources))
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
    let rules = Family::ALL
        .map(|family| rule_spec::PlacedRule {
            family,
            table: Table::Filter,
            hook: Hook::Input,
            stage: Some(Stage::Allow),
            rule: rule.clone(),
        })
        .to_vec();
    collector
        .add(rules)
        .expect("two rules are within the limit");
    collector.into_plan(Vec::new())
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
            modules::lowercase(&err)
        ))
    })
}

#[cfg(test)]
mod tests;
