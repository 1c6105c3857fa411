//! One apply, as `apply`, `watch` and `rollback` all run it (ruleset →
//! survey → **guard → snapshot → write → remember**): the single path that
//! changes the kernel, so the daemon cannot drift from the command.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::apply::{self, Survey};
use crate::backend::Backend;
use crate::error::Error;
use crate::guard::{self, SshSession};
use crate::netfilter::Family;
use crate::plan::Plan;
use crate::render;
use crate::ruleset::Ruleset;
use crate::state::{FamilySnapshot, Snapshot, StateDir};

/// What the caller wants done besides reading.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// Survey only; write nothing.
    pub dry_run: bool,
    /// The SSH session to keep reachable, when run over SSH and not forced.
    pub guard: Option<SshSession>,
}

#[derive(Debug)]
pub struct Transaction {
    pub survey: Survey,
    /// Families written; empty when in sync or on a dry run.
    pub written: Vec<Family>,
}

/// What each family should own under `plan`.
pub fn desired(plan: &Plan) -> Vec<Ruleset> {
    Family::ALL
        .map(|family| render::ruleset(plan, family))
        .to_vec()
}

/// Brings the kernel to `plan`. With a state folder, the kernel as it was
/// is kept for `rollback` and the plan is remembered.
pub fn apply_plan(
    backend: &dyn Backend,
    plan: &Plan,
    script: &Path,
    state: Option<&StateDir>,
    mode: Mode,
) -> Result<Transaction, Error> {
    if let Some(session) = mode.guard {
        for warning in guard::check(plan, session)? {
            tracing::warn!("{warning}");
        }
    }
    let transaction = write(backend, desired(plan), script, state, mode.dry_run)?;
    if let (Some(state), false) = (state, transaction.written.is_empty()) {
        // The rulesets the survey already rendered: no second render of a
        // big plan on the hot path of every write.
        let applied = transaction.survey.families.iter().map(|f| &f.desired);
        state.save_last_plan(&render::restore_text(applied))?;
    }
    Ok(transaction)
}

/// Brings the kernel to `desired` (a plan's, an empty one for `reset`, a
/// snapshot's for `rollback`), keeping a snapshot first when it writes.
pub fn write(
    backend: &dyn Backend,
    desired: Vec<Ruleset>,
    script: &Path,
    state: Option<&StateDir>,
    dry_run: bool,
) -> Result<Transaction, Error> {
    let survey = apply::survey(backend, desired)?;
    if dry_run || survey.in_sync() {
        return Ok(Transaction {
            survey,
            written: Vec::new(),
        });
    }
    if let Some(state) = state {
        state.save_snapshot(&snapshot(&survey, script))?;
    }
    let written = apply::apply(backend, &survey)?;
    Ok(Transaction { survey, written })
}

fn snapshot(survey: &Survey, script: &Path) -> Snapshot {
    Snapshot {
        taken_at: now(),
        script: script.display().to_string(),
        families: survey
            .families
            .iter()
            .map(|f| FamilySnapshot {
                family: f.live.family,
                save: render::restore_file(&f.live.owned()),
            })
            .collect(),
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
