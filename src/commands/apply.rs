//! `plan` and `apply`: the script's plan against the live kernel (script →
//! plan → survey → **guard → write**), and at boot the fallback when the
//! script cannot be applied.

use std::path::Path;

use serde_json::json;

use super::report::{changes_word, Report};
use super::warnings::Warning;
use super::{Outcome, Ui};
use crate::apply;
use crate::backend::iptables::Iptables;
use crate::backend::prefetch::Prefetch;
use crate::backend::Backend;
use crate::cli::{ApplyArgs, PlanArgs};
use crate::confirm::{self, Settled};
use crate::error::Error;
use crate::fallback::{self, Fallback};
use crate::forwarding;
use crate::guard::SshSession;
use crate::hidden_rules;
use crate::plan::Plan;
use crate::script;
use crate::state::{boot_id, Locked, StateDir, StateError};
use crate::transaction::{self, Keep, Records};

pub fn plan(ui: &Ui, args: &PlanArgs, state_dir: &Path) -> Result<Outcome, Error> {
    let opened = StateDir::open_existing(state_dir);
    // The kernel is read while the script evaluates; a script error is
    // still reported before a missing iptables or an untrusted folder.
    let cache = opened
        .as_ref()
        .ok()
        .and_then(|s| s.as_ref()?.read_cache(false));
    let backend = Iptables::detect(None).map(|backend| Prefetch::start(backend, cache));
    let (plan, hidden) = std::thread::scope(|scope| {
        let hidden = backend
            .as_ref()
            .ok()
            .map(|backend| scope.spawn(|| hidden_rules_warnings(backend)));
        let plan = script::evaluate(&args.script);
        let hidden = hidden.map(|h| h.join().expect("hidden rules reader panicked"));
        (plan, hidden.unwrap_or_default())
    });
    let plan = plan?;
    let backend = backend?;
    // Read only: a state folder that does not exist yet is not made, and
    // one that cannot be trusted only costs the drift-by-content check.
    let state = opened.unwrap_or_else(|err| {
        tracing::warn!("{err}; rules changed behind fwscript's back go unseen this time");
        None
    });
    let forms = transaction::recorded_forms(state.as_ref());
    let survey = apply::survey(&backend, transaction::desired(&plan), &forms)?;
    let expired = state.as_ref().and_then(expired_confirm);
    // An expired confirm is a change pending whatever the diff says: the
    // next apply puts the rules from before back first.
    let pending = !survey.in_sync() || expired.is_some();
    let mut warnings = forwarding_warnings(&plan);
    warnings.extend(hidden);
    warnings.extend(expired.clone());
    let report = Report {
        command: "plan",
        plan: Some(&plan),
        dry_run: true,
        json: args.json,
        warnings,
        ..Report::default()
    };
    let mut last = match survey.change_count() {
        0 => "in sync: no changes".to_string(),
        n => format!("{} pending", changes_word(n)),
    };
    if expired.is_some() {
        last = format!(
            "{last}; but an unconfirmed apply expired: the next `fwscript apply` first puts the \
             rules from before back"
        );
    }
    report.print(ui, &survey, &last)?;
    Ok(match pending {
        true => Outcome::ChangesPending,
        false => Outcome::Done,
    })
}

pub fn apply(ui: &Ui, args: &ApplyArgs, state_dir: &Path) -> Result<Outcome, Error> {
    let script_path = &args.script;
    let backend = Iptables::detect(None)?;
    if args.dry_run {
        // A dry run writes nothing, not even an overdue rollback, so it
        // needs no lock either; the kernel is read while the script
        // evaluates.
        let state = StateDir::open_existing(state_dir);
        let cache = state
            .as_ref()
            .ok()
            .and_then(|s| s.as_ref()?.read_cache(false));
        let backend = Prefetch::start(backend, cache);
        let plan = script::evaluate(script_path)?;
        let mut warnings: Vec<Warning> = transaction::check_guard(&plan, guard(args)?)?
            .iter()
            .map(Warning::guard)
            .collect();
        let state = state?;
        warnings.extend(state.as_ref().and_then(|s| daemon_warning(s, script_path)));
        let expired = state.as_ref().and_then(expired_confirm);
        warnings.extend(expired.clone());
        warnings.extend(forwarding_warnings(&plan));
        warnings.extend(hidden_rules_warnings(&backend));
        let transaction =
            transaction::preview(&backend, transaction::desired(&plan), state.as_ref())?;
        let survey = &transaction.survey;
        transaction::check_kernel_guard(survey, transaction::connected(guard(args)?))?;
        let mut last = match survey.change_count() {
            0 => "no changes".to_string(),
            n => format!("dry run: {} not applied", changes_word(n)),
        };
        if expired.is_some() {
            last = format!(
                "{last}; but an unconfirmed apply expired: a real apply first puts the rules \
                 from before back"
            );
        }
        let mut report = Report {
            command: "apply",
            plan: Some(&plan),
            dry_run: true,
            json: args.json,
            warnings,
            ..Report::default()
        };
        // The same keys as a real apply: a dry run arms no timer.
        report
            .extra
            .insert("confirm".into(), serde_json::Value::Null);
        report.print(ui, survey, &last)?;
        return Ok(Outcome::Done);
    }
    let state = match StateDir::open(state_dir) {
        Ok(state) => state,
        Err(refused) if args.boot => return boot_without_state(args, &backend, refused),
        Err(err) => return Err(err.into()),
    };
    let locked = state.lock(&format!("apply {}", script_path.display()))?;
    let mut warnings: Vec<Warning> = daemon_warning(&locked, script_path).into_iter().collect();
    let at_boot = args.boot || first_run_since_boot(&backend, &locked)?;
    let settled = match confirm::settle(&backend, &locked) {
        Ok(settled) => settled,
        // A damaged record of a pending confirm, or a rejection that
        // cannot be recorded (a read-only folder): whether the script is
        // the plan never confirmed cannot be known or kept, so the
        // fallback goes in.
        Err(err) if at_boot => return fall_back(&backend, &locked, err, Settled::Nothing),
        Err(err) => return Err(err),
    };
    // `--boot` on a host where fwscript's rules are in (a unit restarted,
    // or the fallback settling just put in) is not an open host: only an
    // open one trades records for rules.
    let open_host = at_boot && !fallback::kernel_holds_fwscript(&backend)?;
    // From here on nothing but this command writes, so the kernel is read
    // while the script evaluates: on a big firewall, or with a long address
    // list, each takes about as long as the other. A script error still
    // comes after the state folder's, as it always did.
    let backend = Prefetch::start(backend, locked.read_cache(true));
    let (evaluated, forms, hidden) = std::thread::scope(|scope| {
        // The kernel forms of the last write are read meanwhile too: on a
        // big firewall they are a file of megabytes. (A damaged one is
        // warned about even when the script then fails.) And the rules
        // the reads do not show: a process or two of their own.
        let forms = scope.spawn(|| transaction::recorded_forms(Some(&locked)));
        // Not while an open host waits for its rules: a warning is not
        // worth a moment of that.
        let hidden = (!open_host).then(|| scope.spawn(|| hidden_rules_warnings(&backend)));
        let evaluated = script::evaluate(script_path);
        (
            evaluated,
            forms.join().expect("forms reader panicked"),
            hidden
                .map(|h| h.join().expect("hidden rules reader panicked"))
                .unwrap_or_default(),
        )
    });
    let plan = match evaluated {
        Ok(plan) => plan,
        Err(err) if at_boot => return fall_back(&backend, &locked, err.into(), settled),
        Err(err) => return Err(err.into()),
    };
    tracing::debug!("script evaluated");
    confirm::ensure_none_pending(&locked)?;
    let (mut intent, digest) = transaction::plan_intent(&plan, script_path, "apply");
    if open_host && args.confirm.is_none() {
        // The host is open until a ruleset is in, and nobody waits at a
        // prompt: the kernel matters more than the bookkeeping (a root
        // file system mounted read-only after a crash, a full disk). The
        // command still fails, saying what the kernel holds. (A confirm
        // needs its records: the fallback goes in first, below.)
        intent.records = Records::BestEffort;
        // The open, empty kernel is nothing to roll back to, and the
        // snapshot from before the reboot describes a kernel that is gone:
        // `rollback` then says there is nothing to roll back.
        intent.snapshot = false;
        if let Err(err) = locked.clear_snapshot() {
            tracing::error!(
                "{err}; `fwscript rollback` may put back the kernel from before the reboot"
            );
        }
    }
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
    let session = guard(args)?;
    let guarded = transaction::check_guard(&plan, session)?;
    intent.session = transaction::connected(session);
    warnings.extend(guarded.iter().map(Warning::guard));
    warnings.extend(forwarding_warnings(&plan));
    warnings.extend(hidden);
    if open_host && pending.is_some() {
        // What an expiry puts back must not be the empty kernel of a boot:
        // the fallback goes in first (the last good ruleset, the emergency
        // one if the kernel rejects that), and is what the timer restores.
        write_fallback(&backend, &locked, fallback::choose(&locked)?)?;
    }
    let transaction = match transaction::write_with(&backend, intent, &locked, forms) {
        Ok(transaction) => transaction,
        // The kernel rejected the script's rules (a module this kernel
        // lacks, no ipset) and put back what it had: at boot, nothing.
        Err(err @ (Error::Apply(_) | Error::Backend(_))) if at_boot => {
            return fall_back(&backend, &locked, err, Settled::Nothing)
        }
        Err(err) => return Err(err),
    };
    let confirm_timer = match (&pending, transaction.written.is_empty()) {
        (Some(pending), false) => {
            confirm::start_timer(&backend, &locked, pending)?;
            Some(pending)
        }
        _ => None,
    };
    let survey = &transaction.survey;
    let last = match survey.change_count() {
        0 => "no changes".to_string(),
        n => format!("applied {}", changes_word(n)),
    };
    let mut report = Report {
        command: "apply",
        plan: Some(&plan),
        json: args.json,
        warnings,
        ..Report::default()
    };
    report.extra.insert(
        "confirm".into(),
        match confirm_timer {
            Some(pending) => json!({
                "deadline": pending.deadline,
                "deadline_utc": confirm::utc(pending.deadline),
                "seconds": args.confirm,
            }),
            None => serde_json::Value::Null,
        },
    );
    report.print(ui, survey, &last)?;
    if let (Some(secs), Some(_), false) = (args.confirm, confirm_timer, args.json) {
        // Said even with --quiet: the rules go unless someone acts.
        eprintln!(
            "run `fwscript confirm` within {secs} s to keep these rules; otherwise the rules from before come back"
        );
    }
    Ok(Outcome::Done)
}

/// Rules the kernel runs beside fwscript's that its reads do not show.
pub(super) fn hidden_rules_warnings(backend: &dyn Backend) -> Vec<Warning> {
    let hidden = hidden_rules::look(backend);
    let legacy = hidden.legacy.iter().map(Warning::legacy_rules);
    legacy
        .chain(hidden.nft.iter().map(Warning::nft_table))
        .collect()
}

/// The script's rules that forward, on a host that does not.
pub(super) fn forwarding_warnings(plan: &Plan) -> Vec<Warning> {
    forwarding::off(plan, &forwarding::read_here)
        .iter()
        .map(Warning::forwarding)
        .collect()
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
    let (fallback, unrecorded) = match settled {
        // Settling already put it in after a lost confirm.
        Settled::Lost { fallback, .. } => (fallback, None),
        Settled::Nothing | Settled::Expired(_) => {
            let chosen = fallback::choose(state)?;
            match write_fallback(backend, state, chosen) {
                Ok(written) => written,
                Err(err) => {
                    // Neither went in: both are said.
                    let (why, _) = super::json::split_text(&err.to_string());
                    return Err(Error::LeftOpen {
                        cause: Box::new(cause),
                        why,
                    });
                }
            }
        }
    };
    Err(Error::FellBack {
        cause: Box::new(cause),
        fallback: fallback.describe(),
        unrecorded,
    })
}

/// Writes `chosen`, and the emergency ruleset when a last good ruleset
/// the kernel rejects (a module gone with a kernel upgrade) cannot go in.
/// Returns what went in, and why it could not be recorded if it could not.
fn write_fallback(
    backend: &dyn Backend,
    state: &Locked,
    chosen: Fallback,
) -> Result<(Fallback, Option<String>), Error> {
    match fallback::apply(backend, state, &chosen, "apply", None) {
        Ok(_) => Ok((chosen, None)),
        Err(Error::Unrecorded { source, .. }) => Ok((chosen, Some(source.to_string()))),
        Err(err @ Error::Apply(_)) if matches!(chosen, Fallback::LastGood { .. }) => {
            tracing::error!(
                "{}; {} could not be written either",
                err.to_string().trim_end(),
                chosen.describe()
            );
            let emergency = fallback::emergency("the last good ruleset could not be written");
            write_fallback(backend, state, emergency)
        }
        Err(err) => Err(err),
    }
}

/// `apply --boot` with a state folder that cannot be used: one anyone may
/// write (nothing in it can be believed), or none where a read-only root
/// cannot make it. A kernel without fwscript's rules is an open host, so
/// the script's rules go in all the same — or, when the script cannot be
/// applied, the emergency ruleset, never a last good ruleset from that
/// folder — with nothing read from the folder or written to it, and the
/// command fails with the refusal. Where fwscript's rules are in, the
/// refusal changes nothing, as outside boot.
fn boot_without_state(
    args: &ApplyArgs,
    backend: &dyn Backend,
    refused: StateError,
) -> Result<Outcome, Error> {
    if fallback::kernel_holds_fwscript(backend)? {
        return Err(refused.into());
    }
    let cause: Error = match script::evaluate(&args.script) {
        Ok(plan) => {
            let session = guard(args)?;
            for warning in transaction::check_guard(&plan, session)? {
                tracing::warn!("{warning}");
            }
            let (mut intent, _) = transaction::plan_intent(&plan, &args.script, "apply");
            intent.session = transaction::connected(session);
            match transaction::write(backend, intent, None) {
                Ok(transaction) => {
                    // A confirm timer needs the folder: said, not dropped.
                    let untimed = match args.confirm {
                        Some(_) => ", with no `--confirm` timer: the state folder cannot keep one",
                        None => "",
                    };
                    return Err(Error::Unrecorded {
                        holds: format!(
                            "it now holds the rules of `{}` ({} changes written and verified){untimed}",
                            args.script.display(),
                            transaction.survey.change_count()
                        ),
                        source: refused,
                        transaction: Box::new(transaction),
                    });
                }
                Err(err @ (Error::Apply(_) | Error::Backend(_))) => err,
                Err(err) => return Err(err),
            }
        }
        Err(err) => err.into(),
    };
    let fallback =
        fallback::apply_emergency_unrecorded(backend, "apply", "the state folder cannot be used")
            .inspect_err(|_| {
            // Neither went in: both are said, the cause first.
            tracing::error!("{}", cause.to_string().trim_end());
            tracing::error!("{}", refused.to_string().trim_end());
        })?;
    Err(Error::FellBack {
        cause: Box::new(cause),
        fallback: fallback.describe(),
        unrecorded: Some(refused.to_string()),
    })
}

/// The first fwscript run since the machine started, on a kernel without
/// fwscript's rules: a boot, even without `--boot` (a provisioning tool or
/// rc.local running `fwscript apply`).
/// A damaged record of the last write (a power cut) cannot say which boot
/// it was in: the kernel decides alone, and the write records it afresh.
fn first_run_since_boot(backend: &dyn Backend, state: &StateDir) -> Result<bool, Error> {
    let applied = match state.applied() {
        Ok(applied) => applied,
        Err(err @ StateError::Damaged { .. }) => {
            let boot = !fallback::kernel_holds_fwscript(backend)?;
            if boot {
                tracing::warn!(
                    "{err}; the kernel holds none of fwscript's rules: counted as a boot"
                );
            } else {
                tracing::warn!("{err}; the next write to the kernel records it afresh");
            }
            return Ok(boot);
        }
        Err(err) => return Err(err.into()),
    };
    let Some(applied) = applied else {
        return Ok(false);
    };
    if applied.boot_id.is_empty() || applied.boot_id == boot_id() {
        return Ok(false);
    }
    Ok(!fallback::kernel_holds_fwscript(backend)?)
}

/// An unconfirmed apply past its deadline that nothing rolled back yet:
/// commands that only read must say so, or the kernel looks settled.
fn expired_confirm(state: &StateDir) -> Option<Warning> {
    let pending = state.pending_confirm().ok()??;
    let now = transaction::now();
    (pending.deadline <= now).then(|| Warning::confirm_expired(&pending, now))
}

/// A `watch` daemon on the same state folder puts its own script back at
/// its next event or resync: say so before it surprises anyone.
fn daemon_warning(state: &StateDir, script: &Path) -> Option<Warning> {
    let daemon = state.daemon().ok()??;
    if !daemon.is_alive() {
        return None;
    }
    let ours = script
        .canonicalize()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    (daemon.script != ours).then(|| Warning::daemon(&daemon))
}
