//! `test`: a script against the expectations of its test files, offline
//! or with real packets. One line per failure, then the count; exit 1 when
//! anything failed.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use serde_json::json;

use super::{json, Outcome};
use crate::cli::TestArgs;
use crate::error::Error;
use crate::script;
use crate::testing::{self, Expected};

pub fn test(args: &TestArgs) -> Result<Outcome, Error> {
    match (run(args), args.json) {
        (Ok((files, outcomes)), false) => {
            let text = report(&outcomes);
            std::io::stdout().lock().write_all(text.as_bytes())?;
            let _ = files;
            Ok(verdict(&outcomes))
        }
        (Ok((files, outcomes)), true) => {
            print_json(args, &files, &outcomes)?;
            Ok(verdict(&outcomes))
        }
        // With --json, `commands::run` prints the error object.
        (Err(err), _) => Err(err),
    }
}

fn verdict(outcomes: &[testing::Outcome]) -> Outcome {
    if outcomes.iter().all(testing::Outcome::passed) {
        Outcome::Done
    } else {
        Outcome::Failed
    }
}

fn run(args: &TestArgs) -> Result<(Vec<PathBuf>, Vec<testing::Outcome>), Error> {
    let files = if args.tests.is_empty() {
        testing::default_files(&args.script)?
    } else {
        args.tests.clone()
    };
    let expectations = testing::load(&files)?;
    let plan = script::evaluate(&args.script)?;
    let outcomes = if args.kernel {
        testing::kernel::run(&plan, &expectations)?
    } else {
        testing::offline(&plan, &expectations)
    };
    Ok((files, outcomes))
}

/// A line per failed family, the expectations `--kernel` could only check
/// offline, and the count.
fn report(outcomes: &[testing::Outcome]) -> String {
    let mut out = String::new();
    for outcome in outcomes {
        for seen in outcome.seen.iter().filter(|s| !s.passed) {
            let _ = writeln!(out, "{}", testing::failure_line(outcome, seen));
        }
    }
    let offline: Vec<String> = outcomes
        .iter()
        .flat_map(|o| {
            o.seen.iter().filter_map(move |s| {
                s.offline_because.as_ref().map(|why| {
                    format!(
                        "{}:{}: checked offline ({}): {why}",
                        o.expectation.file, o.expectation.line, s.family
                    )
                })
            })
        })
        .collect();
    for line in &offline {
        let _ = writeln!(out, "note: {line}");
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let _ = writeln!(out, "{} passed, {failed} failed", outcomes.len() - failed);
    out
}

fn print_json(
    args: &TestArgs,
    files: &[PathBuf],
    outcomes: &[testing::Outcome],
) -> Result<(), Error> {
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let tests: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            let e = &o.expectation;
            let expected = match &e.expected {
                Expected::Verdict(v) => json!({ "verdict": v.name().to_ascii_lowercase() }),
                Expected::Nat { dst, dport } => {
                    json!({ "verdict": "accept", "translated_to": { "dst": dst, "dport": dport } })
                }
            };
            json!({
                "file": e.file,
                "line": e.line,
                "col": e.column,
                "packet": e.packet,
                "expected": expected,
                "passed": o.passed(),
                "seen": o.seen,
            })
        })
        .collect();
    json::print(
        "test",
        json!({
        "changed": false,
        "dry_run": true,
        "script": args.script.display().to_string(),
        "mode": if args.kernel { "kernel" } else { "offline" },
        "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "passed": outcomes.len() - failed,
        "failed": failed,
        "tests": tests,
        }),
    )
}
