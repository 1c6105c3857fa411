//! The state one evaluation shares between the engine's callbacks: the
//! collector, the texts of every file read (for error carets) and the last
//! error a native function raised.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use rhai::{EvalAltResult, Position};

use super::collector::Collector;
use super::error::{Location, ScriptError};
use super::values::Problem;
use crate::plan::Origin;

/// Every stdlib module's source id starts with this, which no path a user
/// script is read from does.
pub const STDLIB_SOURCE: &str = "<stdlib>/";

pub fn is_stdlib(source: Option<&str>) -> bool {
    source.is_some_and(|s| s.starts_with(STDLIB_SOURCE))
}

pub type Shared = Rc<RefCell<Session>>;

#[derive(Debug, Default)]
pub struct Session {
    pub collector: Collector,
    /// User files read so far: source id (the path as shown) and text.
    pub files: Vec<SourceFile>,
    /// The error a native function raised, with its place in the user's
    /// script; Rhai only carries its message up the call stack.
    pub raised: Option<ScriptError>,
    /// Files must belong to this user and be writable by no one else (when
    /// it is root).
    pub trusted_uid: u32,
}

#[derive(Debug)]
pub struct SourceFile {
    pub id: String,
    pub path: PathBuf,
    pub text: String,
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
    pub fn location(&self, source: &str, position: Position) -> Location {
        let line = position.line().unwrap_or(0);
        let source_line = self
            .files
            .iter()
            .find(|f| f.id == source)
            .and_then(|f| f.text.lines().nth(line.checked_sub(1)?))
            .map(str::to_string);
        Location {
            file: source.to_string(),
            line,
            column: position.position().unwrap_or(0),
            source_line,
        }
    }

    /// Records `problem` at `site` and returns the Rhai error that unwinds
    /// the script; [`super::evaluate`] swaps it back for the recorded one.
    pub fn raise(&mut self, site: &Site, problem: Problem) -> Box<EvalAltResult> {
        let error = ScriptError {
            message: problem.message.clone(),
            location: Some(self.location(&site.source, site.position)),
            hint: problem.hint,
        };
        self.raised = Some(error);
        EvalAltResult::ErrorRuntime(problem.message.into(), site.position).into()
    }
}
