//! `check`, `render` and `functions`: the commands that need no kernel.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::{json, Outcome, Ui};
use crate::cli::CheckArgs;
use crate::error::Error;
use crate::netfilter::Family;
use crate::{render, script};

pub fn check(ui: &Ui, args: &CheckArgs) -> Result<Outcome, Error> {
    let path = &args.script;
    let plan = script::evaluate(path)?;
    if args.json {
        let rules: serde_json::Map<String, serde_json::Value> = Family::ALL
            .iter()
            .map(|&family| {
                let count = render::ruleset(&plan, family).rule_count();
                (family.name().to_string(), count.into())
            })
            .collect();
        json::print(
            "check",
            json!({
                "changed": false,
                "dry_run": true,
                "script": path.display().to_string(),
                "rules": plan.rule_count(),
                "sets": plan.sets().count(),
                "set_entries": plan.sets().map(|s| s.entries.len()).sum::<usize>(),
                "kernel_rules": rules,
                "warnings": [],
            }),
        )?;
    } else {
        let sets: Vec<_> = plan.sets().collect();
        let text = match sets.len() {
            0 => format!("{}: ok, {} rules\n", path.display(), plan.rule_count()),
            n => format!(
                "{}: ok, {} rules, {n} {} of {} addresses\n",
                path.display(),
                plan.rule_count(),
                if n == 1 { "ipset" } else { "ipsets" },
                sets.iter().map(|s| s.entries.len()).sum::<usize>()
            ),
        };
        ui.out(&text)?;
    }
    Ok(Outcome::Done)
}

/// `render`: the restore files of both families (the sets first, under
/// `# ipset`), one family's file loadable as is, or with `sets` the
/// `ipset restore` input that makes the sets those files match.
pub fn render(path: &Path, family: Option<Family>, sets: bool) -> Result<Outcome, Error> {
    let plan = script::evaluate(path)?;
    let text = match (family, sets) {
        (Some(family), false) => render::restore_file(&render::ruleset(&plan, family)),
        (None, false) => render::restore_files(&plan),
        (family, true) => {
            let families = family.map_or(Family::ALL.to_vec(), |f| vec![f]);
            let rulesets: Vec<_> = families
                .into_iter()
                .map(|f| render::ruleset(&plan, f))
                .collect();
            crate::sets::restore_file(rulesets.iter().flat_map(|r| &r.sets))
        }
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(Outcome::Done)
}

/// Exactly what a script can call: stdlib with its documentation, then
/// the names of the Rhai built-ins that remain.
pub fn functions() -> Result<Outcome, Error> {
    let mut out = String::new();
    for function in script::functions::all() {
        out.push_str(&function.signature());
        out.push('\n');
        for line in &function.doc {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(
        "Rhai built-ins, besides operators and the keywords Fn, call, curry, type_of,\n\
         is_def_fn, is_def_var, print and debug (there is no eval, sleep, exit or clock):\n",
    );
    let mut line = String::from("   ");
    for name in script::functions::builtins() {
        if line.len() + 1 + name.len() > 78 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("   ");
        }
        line.push(' ');
        line.push_str(&name);
    }
    out.push_str(&line);
    out.push('\n');
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(Outcome::Done)
}
