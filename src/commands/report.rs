//! How the commands that read or write the kernel report (survey → **text
//! or JSON**): the changes per family, table and chain with their script
//! origins, a summary line per family and table, the warnings; or the one
//! JSON object of docs/json.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use super::changes::{self, ChangeView};
use super::json;
use super::style::{Paint, Ui};
use super::warnings::{self, Warning};
use crate::apply::Survey;
use crate::diff::Change;
use crate::error::Error;
use crate::netfilter::Family;
use crate::plan::Plan;

/// What a report says besides the survey.
#[derive(Debug, Default)]
pub struct Report<'a> {
    pub command: &'static str,
    /// The plan applied: names the `policy()` calls behind policies.
    pub plan: Option<&'a Plan>,
    pub dry_run: bool,
    pub json: bool,
    /// Warnings from outside the survey: the guard's, forwarding off, a
    /// running daemon.
    pub warnings: Vec<Warning>,
    /// Keys a command adds to its JSON object (`confirm`, `namespace`, …).
    pub extra: Map<String, Value>,
}

/// The JSON object of a command that surveyed the kernel.
#[derive(Debug, Serialize)]
struct SurveyJson<'a> {
    changed: bool,
    dry_run: bool,
    /// The kernel already matched: nothing to change.
    in_sync: bool,
    changes: &'a [ChangeView],
    counts: BTreeMap<&'static str, usize>,
    warnings: &'a [Warning],
    skipped: Vec<Skipped<'a>>,
    /// The ipset edits (`create_set`, `update_set`, …), apart from the
    /// rule changes (docs/json.md).
    sets: Vec<&'a crate::sets::SetChange>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(Debug, Serialize)]
struct Skipped<'a> {
    family: Family,
    reason: &'a str,
}

impl Report<'_> {
    /// Prints the report of `survey`, `last` closing the text (`applied 3
    /// changes`, …).
    pub fn print(&self, ui: &Ui, survey: &Survey, last: &str) -> Result<(), Error> {
        let views = changes::views(survey, self.plan);
        let mut all = warnings::of_survey(survey);
        all.extend(self.warnings.iter().cloned());
        if self.json {
            let views = changes::in_order(views, survey.set_changes());
            return json::print(
                self.command,
                SurveyJson {
                    changed: crate::transaction::kernel_written(),
                    dry_run: self.dry_run,
                    in_sync: survey.in_sync(),
                    changes: &views,
                    counts: changes::counts(&views),
                    warnings: &all,
                    skipped: survey
                        .skipped
                        .iter()
                        .map(|(family, reason)| Skipped {
                            family: *family,
                            reason,
                        })
                        .collect(),
                    sets: survey.set_changes().collect(),
                    extra: &self.extra,
                },
            );
        }
        for warning in &all {
            ui.warn(&warning.message);
        }
        let mut out = describe(ui, survey, &views);
        out.push_str(&summary(ui, &views));
        out.push_str(last);
        if !last.ends_with('\n') {
            out.push('\n');
        }
        ui.out(&out)
    }
}

/// The changes per family, table and chain, each with what causes it.
pub fn describe(ui: &Ui, survey: &Survey, views: &[ChangeView]) -> String {
    let mut out = String::new();
    crate::sets::describe_changes(survey.set_changes(), &mut out);
    let mut views = views.iter();
    for family in &survey.families {
        for table in &family.changes.tables {
            let heading = format!("{} {}", family.live.family, table.table);
            let _ = writeln!(out, "{}", ui.paint(Paint::Heading, &heading));
            // Group by chain in order of first appearance; each chain's
            // edits stay in the order their positions assume.
            let mut chains: Vec<(&str, Vec<(&Change, &ChangeView)>)> = Vec::new();
            for change in &table.changes {
                let view = views.next().expect("one view per change");
                match chains.iter_mut().find(|(name, _)| *name == change.chain()) {
                    Some((_, list)) => list.push((change, view)),
                    None => chains.push((change.chain(), vec![(change, view)])),
                }
            }
            for (chain, changes) in chains {
                let _ = writeln!(out, "  {chain}");
                for (change, view) in changes {
                    let line = format!("{change}{}", cause(view));
                    let paint = match line.chars().next() {
                        Some('+') => Some(Paint::Added),
                        Some('-') => Some(Paint::Removed),
                        Some('~') => Some(Paint::Moved),
                        _ => None,
                    };
                    let line = match paint {
                        Some(paint) => ui.paint(paint, &line),
                        None => line,
                    };
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
    }
    out
}

/// `  [fw.rhai:3:1]`: the script call behind a change, or where a policy
/// comes from.
fn cause(view: &ChangeView) -> String {
    let origin = view
        .rule
        .as_ref()
        .and_then(|r| r.origin.as_ref())
        .or_else(|| view.policy.as_ref().and_then(|p| p.origin.as_ref()));
    match (origin, view.action, view.why) {
        (Some(o), _, _) => format!("  [{}:{}:{}]", o.file, o.line, o.col),
        (None, "set_policy", Some("baseline")) => "  [baseline]".to_string(),
        (None, "set_policy", Some("put_back")) => "  [put back]".to_string(),
        _ => String::new(),
    }
}

/// One line per family and table that changes: `ipv4 filter: +8 −1,
/// policy INPUT ACCEPT → DROP`.
pub fn summary(ui: &Ui, views: &[ChangeView]) -> String {
    let mut out = String::new();
    for (family, table, sum) in changes::summary(views) {
        let line = format!("{family} {table}: {}", sum.describe());
        let _ = writeln!(out, "{}", ui.paint(Paint::Heading, &line));
    }
    out
}

/// `3 changes`, `1 change`.
pub fn changes_word(n: usize) -> String {
    match n {
        1 => "1 change".to_string(),
        n => format!("{n} changes"),
    }
}
