//! `confirm`, `rollback` and the hidden `confirm-timer`: keeping or undoing
//! what the last apply wrote (state → **confirm** → kernel).

use std::path::Path;

use serde_json::json;

use super::json;
use super::report::{changes_word, Report};
use super::{Outcome, Ui};
use crate::backend::iptables::Iptables;
use crate::confirm::{self, Settled};
use crate::error::Error;
use crate::state::StateDir;

pub fn confirm(ui: &Ui, as_json: bool, state_dir: &Path) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    let locked = state.lock("confirm")?;
    let pending = confirm::confirm(&backend, &locked)?;
    if as_json {
        json::print(
            "confirm",
            json!({
                "changed": crate::transaction::kernel_written(),
                "dry_run": false,
                "confirmed": { "script": pending.script },
            }),
        )?;
    } else {
        ui.out(&format!(
            "confirmed: the rules applied from `{}` stay\n",
            pending.script
        ))?;
    }
    Ok(Outcome::Done)
}

pub fn rollback(ui: &Ui, as_json: bool, state_dir: &Path) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    let locked = state.lock("rollback")?;
    let settled = match confirm::settle(&backend, &locked)? {
        Settled::Nothing => None,
        Settled::Expired(_) => Some("rolled back: an unconfirmed apply had expired".to_string()),
        Settled::Lost { fallback, .. } => Some(format!(
            "an unconfirmed apply was lost with the kernel's rules: {} is in the kernel",
            fallback.describe()
        )),
    };
    if let Some(message) = settled {
        if as_json {
            json::print(
                "rollback",
                json!({
                    "changed": crate::transaction::kernel_written(),
                    "dry_run": false,
                    "in_sync": false,
                    "changes": [],
                    "counts": super::changes::counts(&[]),
                    "warnings": [],
                    "skipped": [],
                    "sets": [],
                    "message": message,
                }),
            )?;
        } else {
            ui.out(&format!("{message}\n"))?;
        }
        return Ok(Outcome::Done);
    }
    let transaction = confirm::rollback(&backend, &locked, "rollback")?;
    locked.clear_pending_confirm()?;
    let last = match transaction.survey.change_count() {
        0 => "no changes".to_string(),
        n => format!(
            "applied {}: the rules from before are back",
            changes_word(n)
        ),
    };
    let report = Report {
        command: "rollback",
        json: as_json,
        ..Report::default()
    };
    report.print(ui, &transaction.survey, &last)?;
    Ok(Outcome::Done)
}

/// The detached timer `apply --confirm` starts.
pub fn confirm_timer(state_dir: &Path, token: &str) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    confirm::run_timer(&backend, &state, token)?;
    Ok(Outcome::Done)
}
