//! The `--json` output of `import` and `test`: one object on stdout, with
//! `"schema": 1`, errors included. Kept in one place so the shared JSON
//! contract of the other commands can take it over.

use std::io::Write as _;

use serde_json::{json, Map, Value};

use crate::error::Error;

/// The version of the objects printed here.
pub const SCHEMA: u64 = 1;

/// Prints `fields` as one object, `"schema"` first.
pub fn print(fields: Value) -> Result<(), Error> {
    let mut object = Map::new();
    object.insert("schema".into(), json!(SCHEMA));
    if let Value::Object(rest) = fields {
        object.extend(rest);
    }
    let mut text = serde_json::to_string(&Value::Object(object)).expect("plain data serializes");
    text.push('\n');
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// `{"schema": 1, "error": {"message", "file", "line", "col", "hint"}}`.
pub fn print_error(err: &Error) -> Result<(), Error> {
    let mut error = Map::new();
    match err {
        Error::Script(script) => {
            error.insert("message".into(), json!(script.message));
            if let Some(loc) = &script.location {
                error.insert("file".into(), json!(loc.file));
                error.insert("line".into(), json!(loc.line));
                error.insert("col".into(), json!(loc.column));
            }
            if let Some(hint) = &script.hint {
                error.insert("hint".into(), json!(hint));
            }
        }
        other => {
            let text = other.to_string();
            let text = text
                .trim_end()
                .strip_prefix("error: ")
                .unwrap_or(text.trim_end());
            error.insert("message".into(), json!(text));
        }
    }
    print(json!({ "error": Value::Object(error) }))
}
