//! `confirm`, `rollback` and the hidden `confirm-timer`: keeping or undoing
//! what the last apply wrote (state → **confirm** → kernel).

use std::path::Path;

use super::report;
use super::Outcome;
use crate::backend::iptables::Iptables;
use crate::confirm::{self, Settled};
use crate::error::Error;
use crate::state::StateDir;

pub fn confirm(state_dir: &Path) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    let locked = state.lock("confirm")?;
    let pending = confirm::confirm(&backend, &locked)?;
    println!(
        "confirmed: the rules applied from `{}` stay",
        pending.script
    );
    Ok(Outcome::Done)
}

pub fn rollback(state_dir: &Path) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    let locked = state.lock("rollback")?;
    match confirm::settle(&backend, &locked)? {
        Settled::Nothing => {}
        Settled::Expired(_) => {
            println!("rolled back: an unconfirmed apply had expired");
            return Ok(Outcome::Done);
        }
        Settled::Lost { fallback, .. } => {
            println!(
                "an unconfirmed apply was lost with the kernel's rules: {} is in the kernel",
                fallback.describe()
            );
            return Ok(Outcome::Done);
        }
    }
    let transaction = confirm::rollback(&backend, &locked, "rollback")?;
    locked.clear_pending_confirm()?;
    report::report(&transaction, None, false, false)
}

/// The detached timer `apply --confirm` starts.
pub fn confirm_timer(state_dir: &Path, token: &str) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    confirm::run_timer(&backend, &state, token)?;
    Ok(Outcome::Done)
}
