//! The commands that read or write the kernel (script → plan → render →
//! **survey → apply**): `plan`, `apply`, `try`, `reset`, `confirm`,
//! `rollback` and `watch`, and how they report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::Outcome;
use crate::apply::{self, Survey};
use crate::backend::iptables::{find, Iptables};
use crate::backend::{Backend, BackendError};
use crate::cli::{ApplyArgs, PlanArgs, WatchArgs};
use crate::diff::{Change, ForeignWarning};
use crate::error::Error;
use crate::forms::KernelForms;
use crate::guard::SshSession;
use crate::netfilter::{Family, Hook, Policy, Table};
use crate::plan::Plan;
use crate::ruleset::{Ruleset, TableRuleset};
use crate::script;
use crate::state::StateDir;
use crate::transaction::{self, Mode, Transaction};
use crate::{confirm, daemon};

pub fn plan(args: &PlanArgs, state_dir: &Path) -> Result<Outcome, Error> {
    let plan = script::evaluate(&args.script)?;
    let backend = Iptables::detect(None)?;
    // Read only: a state folder that does not exist yet is not made.
    let state = state_dir
        .is_dir()
        .then(|| StateDir::open(state_dir))
        .transpose()?;
    let forms = transaction::recorded_forms(state.as_ref());
    let survey = apply::survey(&backend, transaction::desired(&plan), &forms)?;
    let pending = !survey.in_sync();
    if args.json {
        print_json(&survey, pending)?;
    } else {
        let mut out = describe(&survey, Some(&plan));
        out.push_str(&match survey.change_count() {
            0 => "in sync: no changes\n".to_string(),
            n => format!("{n} changes pending\n"),
        });
        print(&survey, &out)?;
    }
    Ok(match pending {
        true => Outcome::ChangesPending,
        false => Outcome::Done,
    })
}

pub fn apply(args: &ApplyArgs, state_dir: &Path) -> Result<Outcome, Error> {
    let plan = script::evaluate(&args.script)?;
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    // A dry run writes nothing, not even an overdue rollback.
    if !args.dry_run {
        confirm::settle(&backend, &state)?;
        confirm::ensure_none_pending(&state)?;
        confirm::refuse_unconfirmed_again(&state, &plan, args.force, args.confirm.is_some())?;
    }
    let mode = Mode {
        dry_run: args.dry_run,
        guard: SshSession::from_env().filter(|_| !args.force),
    };
    let transaction = transaction::apply_plan(&backend, &plan, &args.script, Some(&state), mode)?;
    let outcome = report(&transaction, Some(&plan), args.dry_run, args.json)?;
    if let Some(secs) = args.confirm.filter(|_| !args.dry_run) {
        if confirm::arm(&state, &args.script, &plan, secs, &transaction)? {
            eprintln!(
                "run `fwscript confirm` within {secs} s to keep these rules; otherwise the rules from before come back"
            );
        }
    }
    Ok(outcome)
}

pub fn reset(state_dir: &Path) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    confirm::settle(&backend, &state)?;
    confirm::ensure_none_pending(&state)?;
    let desired = Family::ALL.map(reset_ruleset).to_vec();
    let transaction =
        transaction::write(&backend, desired, Path::new("(reset)"), Some(&state), false)?;
    report(&transaction, None, false, false)
}

pub fn confirm(state_dir: &Path) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    let pending = confirm::confirm(&backend, &state)?;
    println!(
        "confirmed: the rules applied from `{}` stay",
        pending.script
    );
    Ok(Outcome::Done)
}

pub fn rollback(state_dir: &Path) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    if confirm::settle(&backend, &state)?.is_some() {
        println!("rolled back: an unconfirmed apply had expired");
        return Ok(Outcome::Done);
    }
    let transaction = confirm::rollback(&backend, &state)?;
    state.clear_pending_confirm()?;
    report(&transaction, None, false, false)
}

pub fn watch(args: &WatchArgs, state_dir: &Path) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    let resync = std::time::Duration::from_secs(args.resync.max(1));
    daemon::watch(&args.script, &backend, state, resync)?;
    Ok(Outcome::Done)
}

/// The detached timer `apply --confirm` starts.
pub fn confirm_timer(state_dir: &Path, token: &str) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    confirm::run_timer(&backend, &state, token)?;
    Ok(Outcome::Done)
}

/// `apply` inside a namespace made for the purpose and removed afterwards:
/// safe on any machine, and shows what the script does to a clean kernel.
pub fn try_script(path: &Path) -> Result<Outcome, Error> {
    let plan = script::evaluate(path)?;
    let netns = Netns::create()?;
    let backend = Iptables::detect(Some(&netns.name))?;
    let survey = apply::survey(
        &backend,
        transaction::desired(&plan),
        &KernelForms::default(),
    )?;
    let mut out = format!("in a new network namespace `{}`:\n", netns.name);
    out.push_str(&describe(&survey, Some(&plan)));
    apply::apply(&backend, &survey)?;
    let _ = writeln!(out, "applied {} changes", survey.change_count());
    for family in &survey.families {
        let name = family.live.family;
        let _ = writeln!(out, "\n# {}-save", name.tool());
        out.push_str(&backend.save(name)?);
    }
    print(&survey, &out)?;
    Ok(Outcome::Done)
}

/// Nothing owned, and the policies fwscript sets back to ACCEPT.
pub fn reset_ruleset(family: Family) -> Ruleset {
    let policies = Table::Filter
        .builtin_chains()
        .iter()
        .map(|&hook| (hook, Policy::Accept))
        .collect();
    let mut ruleset = Ruleset::empty(family);
    ruleset.tables.insert(
        Table::Filter,
        TableRuleset {
            policies,
            ..TableRuleset::default()
        },
    );
    ruleset
}

fn report(
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
fn describe(survey: &Survey, plan: Option<&Plan>) -> String {
    let mut out = String::new();
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
fn print(survey: &Survey, out: &str) -> Result<(), Error> {
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
fn print_json(survey: &Survey, changed: bool) -> Result<(), Error> {
    #[derive(Serialize)]
    struct Report<'a> {
        changed: bool,
        changes: Vec<JsonChange<'a>>,
        warnings: Vec<String>,
        skipped: BTreeMap<Family, &'a str>,
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
    };
    let mut text = serde_json::to_string(&report).expect("plain data serializes");
    text.push('\n');
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// A network namespace that exists as long as this value does, even when
/// the command fails half way.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Result<Netns, Error> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("fws-try-{}-{nanos:x}", std::process::id());
        ip(&["netns", "add", &name])?;
        Ok(Netns { name })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(err) = ip(&["netns", "delete", &self.name]) {
            eprintln!(
                "warning: cannot remove network namespace `{}`: {err}",
                self.name
            );
        }
    }
}

fn ip(args: &[&str]) -> Result<(), BackendError> {
    let program = find("ip").ok_or_else(|| BackendError::NotFound { tool: "ip".into() })?;
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => BackendError::NotFound { tool: "ip".into() },
            _ => BackendError::Spawn {
                tool: "ip".into(),
                source,
            },
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(BackendError::Failed {
        tool: format!("ip {}", args.join(" ")),
        message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}
