//! `plan` and `apply`: the script's plan against the live kernel (script →
//! plan → survey → **guard → write**), and at boot the fallback when the
//! script cannot be applied.

use std::path::Path;

use super::report::{self, print, print_json};
use super::Outcome;
use crate::apply;
use crate::backend::iptables::Iptables;
use crate::backend::prefetch::Prefetch;
use crate::backend::Backend;
use crate::cli::{ApplyArgs, PlanArgs};
use crate::confirm::{self, Settled};
use crate::error::Error;
use crate::fallback;
use crate::guard::SshSession;
use crate::script;
use crate::state::{boot_id, Locked, StateDir};
use crate::transaction::{self, Keep};

pub fn plan(args: &PlanArgs, state_dir: &Path) -> Result<Outcome, Error> {
    // The kernel is read while the script evaluates.
    let backend = Prefetch::start(Iptables::detect(None)?);
    let plan = script::evaluate(&args.script)?;
    // Read only: a state folder that does not exist yet is not made, and
    // one that cannot be trusted only costs the drift-by-content check.
    let state = StateDir::open_existing(state_dir).unwrap_or_else(|err| {
        tracing::warn!("{err}; rules changed behind fwscript's back go unseen this time");
        None
    });
    let forms = transaction::recorded_forms(state.as_ref());
    let survey = apply::survey(&backend, transaction::desired(&plan), &forms)?;
    let pending = !survey.in_sync();
    if args.json {
        print_json(&survey, pending)?;
    } else {
        let mut out = report::describe(&survey, Some(&plan));
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
    let backend = Iptables::detect(None)?;
    if args.dry_run {
        // A dry run writes nothing, not even an overdue rollback, so it
        // needs no lock either.
        let backend = Prefetch::start(backend);
        let plan = script::evaluate(&args.script)?;
        transaction::check_guard(&plan, guard(args)?)?;
        let state = StateDir::open_existing(state_dir)?;
        let transaction =
            transaction::preview(&backend, transaction::desired(&plan), state.as_ref())?;
        return report::report(&transaction, Some(&plan), true, args.json);
    }
    let state = StateDir::open(state_dir)?;
    let locked = state.lock(&format!("apply {}", args.script.display()))?;
    // Holding the lock, the kernel is read while the script evaluates:
    // neither needs the other, and with a long address list each takes
    // about as long as the rest of the apply.
    let backend = Prefetch::start(backend);
    let evaluated = script::evaluate(&args.script);
    warn_about_daemon(&locked, &args.script);
    let at_boot = args.boot || first_run_since_boot(&backend, &locked)?;
    let settled = confirm::settle(&backend, &locked)?;
    let plan = match evaluated {
        Ok(plan) => plan,
        Err(err) if at_boot => return fall_back(&backend, &locked, err.into(), settled),
        Err(err) => return Err(err.into()),
    };
    confirm::ensure_none_pending(&locked)?;
    let (mut intent, digest) = transaction::plan_intent(&plan, &args.script, "apply");
    let confirming = args.confirm.is_some();
    if let Err(refused) =
        confirm::refuse_unconfirmed_again(&locked, &digest, args.force, confirming)
    {
        return match at_boot {
            true => fall_back(&backend, &locked, refused, settled),
            false => Err(refused),
        };
    }
    let pending = args
        .confirm
        .map(|secs| confirm::pending(&intent.script, secs, &digest));
    if let Some(pending) = &pending {
        intent.keep = Keep::Pending(pending.clone());
    }
    let transaction =
        transaction::apply_plan(&backend, &plan, intent, Some(&locked), guard(args)?)?;
    let outcome = report::report(&transaction, Some(&plan), false, args.json)?;
    if let (Some(pending), Some(secs), false) =
        (pending, args.confirm, transaction.written.is_empty())
    {
        confirm::start_timer(&backend, &locked, &pending)?;
        eprintln!(
            "run `fwscript confirm` within {secs} s to keep these rules; otherwise the rules from before come back"
        );
    }
    Ok(outcome)
}

/// The session to keep reachable: none without SSH or with `--force`.
fn guard(args: &ApplyArgs) -> Result<Option<SshSession>, Error> {
    Ok(SshSession::from_env().filter(|_| !args.force))
}

/// At boot, a script that cannot be applied leaves the last good ruleset
/// (or the emergency one) in the kernel, never nothing; the command still
/// fails, saying what it applied instead.
fn fall_back(
    backend: &dyn Backend,
    state: &Locked,
    cause: Error,
    settled: Settled,
) -> Result<Outcome, Error> {
    let fallback = match settled {
        // Settling already put it in after a lost confirm.
        Settled::Lost { fallback, .. } => fallback,
        Settled::Nothing | Settled::Expired(_) => {
            let fallback = fallback::choose(state)?;
            fallback::apply(backend, state, &fallback, "apply")?;
            fallback
        }
    };
    Err(Error::FellBack {
        cause: Box::new(cause),
        fallback: fallback.describe(),
    })
}

/// The first fwscript run since the machine started, on a kernel without
/// fwscript's rules: a boot, even without `--boot` (a provisioning tool or
/// rc.local running `fwscript apply`).
fn first_run_since_boot(backend: &dyn Backend, state: &StateDir) -> Result<bool, Error> {
    let Some(applied) = state.applied()? else {
        return Ok(false);
    };
    if applied.boot_id.is_empty() || applied.boot_id == boot_id() {
        return Ok(false);
    }
    Ok(!fallback::kernel_holds_fwscript(backend)?)
}

/// A `watch` daemon on the same state folder puts its own script back at
/// its next event or resync: say so before it surprises anyone.
fn warn_about_daemon(state: &StateDir, script: &Path) {
    let Ok(Some(daemon)) = state.daemon() else {
        return;
    };
    if !daemon.is_alive() {
        return;
    }
    let ours = script
        .canonicalize()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if daemon.script != ours {
        eprintln!(
            "warning: `fwscript watch` (pid {}) keeps `{}` applied with this state folder; it will \
             put that script's rules back at its next change or drift check, undoing this apply",
            daemon.pid, daemon.script
        );
    }
}
