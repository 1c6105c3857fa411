//! `import`: an existing ruleset becomes a script. The script goes to
//! stdout; what could not be imported, and the summary, to stderr.

use std::io::Write as _;

use serde_json::json;

use super::{json, Outcome};
use crate::backend::iptables::Iptables;
use crate::backend::Backend;
use crate::cli::ImportArgs;
use crate::error::Error;
use crate::import::{self, ImportError, Source};
use crate::netfilter::Family;

pub fn import(args: &ImportArgs) -> Result<Outcome, Error> {
    match (run(args), args.json) {
        (Ok((imported, notes)), false) => {
            std::io::stdout()
                .lock()
                .write_all(imported.script.as_bytes())?;
            let mut err = std::io::stderr().lock();
            for line in notes.iter().chain(&imported.warnings) {
                let _ = writeln!(err, "{}", prefixed(line));
            }
            Ok(Outcome::Done)
        }
        (Ok((imported, notes)), true) => {
            let mut warnings = notes;
            warnings.extend(imported.warnings.iter().cloned());
            warnings.retain(|w| !w.starts_with("import: "));
            json::print(
                "import",
                json!({
                "changed": false,
                "dry_run": true,
                "script": imported.script,
                "summary": imported.summary,
                "warnings": warnings,
                }),
            )?;
            Ok(Outcome::Done)
        }
        // With --json, `commands::run` prints the error object.
        (Err(err), _) => Err(err),
    }
}

fn prefixed(line: &str) -> String {
    if line.starts_with("import: ") {
        line.to_string()
    } else {
        format!("warning: {line}")
    }
}

/// The import, and what was said about where its input came from.
fn run(args: &ImportArgs) -> Result<(import::Imported, Vec<String>), Error> {
    let mut notes = Vec::new();
    let mut sources = Vec::new();
    if args.from.is_none() && args.from6.is_none() {
        let backend = Iptables::detect(None)?;
        for family in Family::ALL {
            match backend.availability(family) {
                Ok(()) => sources.push(Source {
                    family,
                    name: format!("{}-save", family.tool()),
                    text: backend.save(family)?,
                }),
                Err(reason) => notes.push(format!("{family} not read: {reason}")),
            }
        }
        // A family nobody set up (no rules, every policy ACCEPT) is not an
        // open door to copy: it gets the other family's rules.
        let blank: Vec<Family> = sources
            .iter()
            .filter(|s| import::is_blank(s.family, &s.text))
            .map(|s| s.family)
            .collect();
        if blank.len() == 1 && sources.len() == 2 {
            notes.push(format!(
                "{} holds no rules and accepts everything: it is treated as not set up",
                blank[0].tool()
            ));
            sources.retain(|s| s.family != blank[0]);
        }
    } else {
        for (family, path) in [(Family::Ipv4, &args.from), (Family::Ipv6, &args.from6)] {
            let Some(path) = path else { continue };
            let name = path.display().to_string();
            let text = read_file(path, &name)?;
            sources.push(Source { family, name, text });
        }
    }
    let read: Vec<Family> = sources.iter().map(|s| s.family).collect();
    let mirrored: Vec<Family> = Family::ALL
        .into_iter()
        .filter(|f| !read.contains(f))
        .collect();
    let imported = import::import(&sources, &mirrored)?;
    Ok((imported, notes))
}

/// A save file: a regular file of sane size.
fn read_file(path: &std::path::Path, name: &str) -> Result<String, Error> {
    const MAX: u64 = 64 * 1024 * 1024;
    let fail = |message: String| {
        Error::from(ImportError::Read {
            name: name.to_string(),
            message,
        })
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(lowercase(&e)))?;
    if !meta.is_file() {
        return Err(fail("it is not a regular file".into()));
    }
    if meta.len() > MAX {
        return Err(fail(format!("it is larger than {} MiB", MAX >> 20)));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(lowercase(&e)))?;
    String::from_utf8(bytes).map_err(|_| fail("it is not text (UTF-8)".into()))
}

fn lowercase(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}
