//! How the commands that read or write the kernel report: the changes per
//! family, table and chain with their script origins, the warnings, and the
//! JSON object provisioning tools read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use serde::Serialize;

use super::Outcome;
use crate::apply::Survey;
use crate::diff::{Change, ForeignWarning};
use crate::error::Error;
use crate::netfilter::{Family, Hook, Table};
use crate::plan::Plan;
use crate::transaction::Transaction;

pub fn report(
    transaction: &Transaction,
    plan: Option<&Plan>,
    dry_run: bool,
    json: bool,
) -> Result<Outcome, Error> {
    let survey = &transaction.survey;
    if json {
        print_json(survey, !survey.in_sync())?;
        return Ok(Outcome::Done);
    }
    let mut out = describe(survey, plan);
    out.push_str(&match (survey.change_count(), dry_run) {
        (0, _) => "no changes\n".to_string(),
        (n, true) => format!("dry run: {n} changes not applied\n"),
        (n, false) => format!("applied {n} changes\n"),
    });
    print(survey, &out)?;
    Ok(Outcome::Done)
}

/// The changes per family, table and chain, each with what causes it.
pub fn describe(survey: &Survey, plan: Option<&Plan>) -> String {
    let mut out = String::new();
    crate::sets::describe_changes(survey.set_changes(), &mut out);
    for family in &survey.families {
        for table in &family.changes.tables {
            let _ = writeln!(out, "{} {}", family.live.family, table.table);
            // Group by chain in order of first appearance; each chain's
            // edits stay in the order their positions assume.
            let mut chains: Vec<(&str, Vec<&Change>)> = Vec::new();
            for change in &table.changes {
                match chains.iter_mut().find(|(name, _)| *name == change.chain()) {
                    Some((_, list)) => list.push(change),
                    None => chains.push((change.chain(), vec![change])),
                }
            }
            for (chain, changes) in chains {
                let _ = writeln!(out, "  {chain}");
                for change in changes {
                    let cause = cause(change, family.live.family, table.table, plan);
                    let _ = writeln!(out, "    {change}{cause}");
                }
            }
        }
    }
    out
}

fn cause(change: &Change, family: Family, table: Table, plan: Option<&Plan>) -> String {
    if let Some(origin) = change.origin() {
        return format!("  [{origin}]");
    }
    if let (Change::SetPolicy { hook, .. }, Some(plan)) = (change, plan) {
        return match policy_origin(plan, family, table, *hook) {
            Some(origin) => format!("  [{origin}]"),
            None => "  [baseline]".to_string(),
        };
    }
    String::new()
}

fn policy_origin(plan: &Plan, family: Family, table: Table, hook: Hook) -> Option<String> {
    let policy = plan
        .family(family)?
        .tables
        .get(&table)?
        .policies
        .get(&hook)?;
    Some(policy.origin.as_ref()?.to_string())
}

/// Prints the report to standard output and the warnings to standard error.
pub fn print(survey: &Survey, out: &str) -> Result<(), Error> {
    for line in warnings(survey) {
        eprintln!("warning: {line}");
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

fn warnings(survey: &Survey) -> Vec<String> {
    let skipped = survey
        .skipped
        .iter()
        .map(|(family, reason)| format!("{family} skipped: {reason}"));
    let foreign = survey.warnings().map(ForeignWarning::to_string);
    skipped.chain(foreign).collect()
}

/// One object for provisioning tools: `changed`, the changes, the warnings.
pub fn print_json(survey: &Survey, changed: bool) -> Result<(), Error> {
    #[derive(Serialize)]
    struct Report<'a> {
        changed: bool,
        changes: Vec<JsonChange<'a>>,
        warnings: Vec<String>,
        skipped: BTreeMap<Family, &'a str>,
        /// The ipset edits (`create_set`, `update_set`, …), apart from the
        /// rule changes.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        sets: Vec<&'a crate::sets::SetChange>,
    }
    #[derive(Serialize)]
    struct JsonChange<'a> {
        family: Family,
        table: Table,
        #[serde(flatten)]
        change: &'a Change,
    }
    let report = Report {
        changed,
        changes: survey
            .changes()
            .map(|(family, table, change)| JsonChange {
                family,
                table,
                change,
            })
            .collect(),
        warnings: survey.warnings().map(ToString::to_string).collect(),
        skipped: survey
            .skipped
            .iter()
            .map(|(family, reason)| (*family, reason.as_str()))
            .collect(),
        sets: survey.set_changes().collect(),
    };
    let mut text = serde_json::to_string(&report).expect("plain data serializes");
    text.push('\n');
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
