//! Script stage: a Rhai script (plus stdlib and imported modules) evaluates
//! into a [`Plan`] (**script** → plan → render).

mod error;

use std::path::Path;

pub use error::ScriptError;

use crate::plan::Plan;

/// Evaluates the script at `path` into a plan. Reads only the script and the
/// modules it imports; never touches the kernel.
pub fn evaluate(path: &Path) -> Result<Plan, ScriptError> {
    let _ = path;
    todo!("script engine")
}
