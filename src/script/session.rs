//! The state one evaluation shares between the engine's callbacks: the
//! collector, the files read (for error carets, `watch` and `plan`), the
//! modules being imported (for cycles) and the last problem a stdlib
//! function or the parser raised.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use ipnet::IpNet;
use rhai::{EvalAltResult, Module, Position};

use super::collector::Collector;
use super::error::Location;
use super::values::Problem;
use crate::plan::Origin;

pub type Shared = Rc<RefCell<Session>>;

#[derive(Default)]
pub struct Session {
    pub collector: Collector,
    /// The entry script's source id: the path as the user gave it.
    pub entry: String,
    /// The script and the modules read so far, in order.
    pub files: Vec<SourceFile>,
    /// Address lists read so far, each once.
    pub lists: Vec<ListFile>,
    /// The problem a stdlib function or the module resolver raised, with
    /// its place; Rhai only carries its message up the call stack.
    pub raised: Option<Raised>,
    /// What the token hook refused while parsing, and where.
    pub syntax: Option<(Syntax, Position)>,
    /// Files must belong to this user and be writable by no one else (when
    /// it is root).
    pub trusted_uid: u32,
    /// The script's folder, canonical: imports and lists stay inside it.
    pub root: PathBuf,
    /// The same folder as the user named it, for messages and origins.
    pub shown_root: PathBuf,
    /// The files whose evaluation is under way, outermost first (the
    /// script, then each import): an import of one of them is a cycle.
    pub importing: Vec<(PathBuf, String)>,
    /// Modules already evaluated, by real path: a second import reuses one.
    pub modules: HashMap<PathBuf, rhai::Shared<Module>>,
}

pub struct SourceFile {
    /// The source id: the path as shown to the user.
    pub id: String,
    /// The path as given (the script) or as really read (a module).
    pub path: PathBuf,
    pub text: String,
}

/// One address list file, as `address_list()` read it.
pub struct ListFile {
    /// The path as the script wrote it: `lists/blocklist.txt`.
    pub written: String,
    pub real: PathBuf,
    /// Unique, in file order.
    pub entries: Vec<IpNet>,
}

pub struct Raised {
    pub site: Site,
    /// The full sentence, as Rhai carries it.
    pub message: String,
    pub problem: Problem,
}

/// What the token hook refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Syntax {
    /// `fn rule(...)`: a user function named like a stdlib one.
    Reserved(String),
    Deadline,
}

impl Syntax {
    pub fn marker(&self) -> &'static str {
        match self {
            Syntax::Reserved(_) => "fwscript: reserved name",
            Syntax::Deadline => "fwscript: deadline",
        }
    }
}

/// A place in a user's file.
#[derive(Debug, Clone)]
pub struct Site {
    pub source: String,
    pub position: Position,
}

impl Site {
    pub fn origin(&self) -> Origin {
        Origin {
            file: self.source.clone(),
            line: self.position.line().unwrap_or(0),
            column: self.position.position().unwrap_or(0),
        }
    }
}

impl Session {
    pub fn text(&self, source: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.id == source)
            .map(|f| f.text.as_str())
    }

    pub fn location(&self, source: &str, position: Position) -> Location {
        let line = position.line().unwrap_or(0);
        let source_line = self
            .text(source)
            .and_then(|text| text.lines().nth(line.checked_sub(1)?))
            .map(str::to_string);
        Location {
            file: source.to_string(),
            line,
            column: position.position().unwrap_or(0),
            source_line,
        }
    }

    /// Records `problem` at `site` (said by `function`, for a missing
    /// value) and returns the Rhai error that unwinds the script;
    /// [`super::evaluate`] swaps it back for the recorded one.
    pub fn raise(&mut self, site: &Site, function: &str, problem: Problem) -> Box<EvalAltResult> {
        let message = problem.sentence(function);
        self.raised = Some(Raised {
            site: site.clone(),
            message: message.clone(),
            problem,
        });
        EvalAltResult::ErrorRuntime(message.into(), site.position).into()
    }
}
