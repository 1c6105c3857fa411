//! The JSON contract (command → **one JSON object** on stdout): the
//! envelope every `--json` command prints, and the error object that takes
//! its place when the command fails. docs/json.md describes both; bump
//! [`SCHEMA`] for any change that is not an added key.

use std::io::Write as _;

use serde::Serialize;

use crate::error::Error;

/// The version of the JSON contract.
pub const SCHEMA: u32 = 1;

/// `{"schema": 1, "command": …, <body>}`: the first two keys of every
/// object, success or error.
#[derive(Debug, Serialize)]
pub struct Envelope<'a, T: Serialize> {
    pub schema: u32,
    pub command: &'a str,
    #[serde(flatten)]
    pub body: T,
}

/// Prints `body` as the one JSON object of `command`, on one line.
pub fn print<T: Serialize>(command: &str, body: T) -> Result<(), Error> {
    let envelope = Envelope {
        schema: SCHEMA,
        command,
        body,
    };
    let mut text = serde_json::to_string(&envelope).expect("plain data serializes");
    text.push('\n');
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// The object a failed command prints instead of its report.
#[derive(Debug, Serialize)]
pub struct Failure {
    /// Whether the kernel was written before the failure (a write that
    /// held, then a state write that did not).
    pub changed: bool,
    pub dry_run: bool,
    pub error: ErrorBody,
}

/// What went wrong: the message on one line, and the script position when
/// a script (or a file it reads) caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub col: Option<usize>,
    pub hint: Option<String>,
}

impl ErrorBody {
    /// An error at a place in a file (a test file, an imported ruleset).
    pub fn at(message: impl Into<String>, file: &str, line: usize, col: usize) -> ErrorBody {
        ErrorBody {
            message: message.into(),
            file: Some(file.to_string()),
            line: Some(line),
            col: Some(col),
            hint: None,
        }
    }

    pub fn of(err: &Error) -> ErrorBody {
        if let Some(script) = script_error(err) {
            let location = script.location.as_ref();
            let mut body = ErrorBody {
                message: script.message.clone(),
                file: location.map(|l| l.file.clone()),
                line: location.map(|l| l.line),
                col: location.map(|l| l.column),
                hint: script.hint.clone(),
            };
            // At boot the script's error is only half the story.
            if let Error::FellBack {
                fallback,
                unrecorded,
                ..
            } = err
            {
                body.message = format!(
                    "{}; at boot the kernel must not stay open: {fallback} was applied instead",
                    body.message
                );
                if let Some(why) = unrecorded {
                    body.message = format!(
                        "{}; but the state folder could not record it: {why}",
                        body.message
                    );
                }
            }
            if let Error::LeftOpen { why, .. } = err {
                body.message = format!(
                    "{}; at boot the kernel must not stay open, but no fallback could be written \
                     either: {why}",
                    body.message
                );
            }
            return body;
        }
        let (message, hint) = split_text(&err.to_string());
        ErrorBody {
            message,
            file: None,
            line: None,
            col: None,
            hint,
        }
    }
}

fn script_error(err: &Error) -> Option<&crate::script::ScriptError> {
    match err {
        Error::Script(script) => Some(script),
        Error::FellBack { cause, .. } | Error::LeftOpen { cause, .. } => script_error(cause),
        _ => None,
    }
}

/// An error's text as the terminal shows it, as a message and a hint:
/// without `error: `, its lines joined, the `= hint:` lines apart.
pub fn split_text(text: &str) -> (String, Option<String>) {
    let mut message = Vec::new();
    let mut hints = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(hint) = line.strip_prefix("= hint: ") {
            hints.push(hint.to_string());
        } else if !line.is_empty() {
            let line = line.strip_prefix("error: ").unwrap_or(line);
            let line = line.strip_prefix("note: ").unwrap_or(line);
            message.push(line.to_string());
        }
    }
    let hint = (!hints.is_empty()).then(|| hints.join("; "));
    (message.join("; "), hint)
}

/// Prints the error object of `command`.
pub fn print_error(command: &str, err: &Error, dry_run: bool) -> Result<(), Error> {
    print(
        command,
        Failure {
            changed: crate::transaction::kernel_written(),
            dry_run,
            error: ErrorBody::of(err),
        },
    )
}

/// Whether the command line asks for JSON, before it could be parsed.
pub fn asked_for() -> bool {
    std::env::args_os().skip(1).any(|arg| arg == "--json")
}

/// A command line that did not parse, as the JSON error object (the
/// command named as far as it was given); returns the exit code, 1.
pub fn usage_error(err: &clap::Error) -> u8 {
    let cli = <crate::cli::Cli as clap::CommandFactory>::command();
    let command = std::env::args()
        .skip(1)
        .find(|arg| cli.find_subcommand(arg).is_some())
        .unwrap_or_default();
    let text = err.render().to_string();
    let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).collect();
    let (message, _) = split_text(&first.join("\n"));
    let message = message.replace(":; ", ": ");
    let body = Failure {
        changed: false,
        dry_run: false,
        error: ErrorBody {
            message,
            file: None,
            line: None,
            col: None,
            hint: Some(format!("`fwscript {command} --help` lists what it takes")),
        },
    };
    if print(&command, body).is_err() {
        eprintln!("{text}");
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_of_an_error_splits_into_message_and_hint() {
        let (message, hint) = split_text(
            "error: an `apply --confirm` of `fw.rhai` is waiting (5 s left)\n  = hint: run \
             `fwscript confirm`\n",
        );
        assert_eq!(
            message,
            "an `apply --confirm` of `fw.rhai` is waiting (5 s left)"
        );
        assert_eq!(hint.as_deref(), Some("run `fwscript confirm`"));
        assert_eq!(split_text("error: plain").1, None);
    }

    #[test]
    fn a_script_error_names_its_place() {
        let err = Error::Script(crate::script::ScriptError {
            message: "port 70000 is out of range 1..65535".into(),
            location: Some(crate::script::Location {
                file: "fw.rhai".into(),
                line: 3,
                column: 16,
                source_line: Some("allow_tcp([22, 70000]);".into()),
            }),
            hint: None,
        });
        let body = ErrorBody::of(&err);
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "message": "port 70000 is out of range 1..65535",
                "file": "fw.rhai", "line": 3, "col": 16, "hint": null
            })
        );
    }
}
