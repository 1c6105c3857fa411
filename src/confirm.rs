//! Confirm or roll back (apply → **confirm** → state): `apply --confirm
//! SECS` arms a timer that puts the snapshot back unless `fwscript confirm`
//! runs in time, and `rollback` puts it back on demand.
//!
//! The timer is a detached `fwscript` process, so it needs no terminal and
//! survives the SSH session that ran the apply. Should it die, the deadline
//! is still in the state folder: the next fwscript that writes sees it has
//! passed and rolls back first. Should the machine reboot (or the kernel
//! lose fwscript's rules) before the deadline, the unconfirmed change can
//! never be confirmed: it counts as rejected at once and the last good
//! ruleset goes back in, never nothing (see docs/safety.md).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::backend::Backend;
use crate::error::Error;
use crate::fallback::{self, Fallback};
use crate::live::LiveState;
use crate::state::{boot_id, LastGood, Locked, PendingConfirm, Rejected, StateDir};
use crate::transaction::{self, now, Intent, Keep, Records, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("there is nothing to confirm: no `apply --confirm` is waiting")]
    NothingPending,
    #[error(
        "there is nothing to confirm: the apply of `{script}` was not confirmed in time and \
         the rules from before it are back"
    )]
    Expired { script: String },
    #[error(
        "there is nothing to confirm: the apply of `{script}` was lost when the kernel lost \
         fwscript's rules (a reboot?); {fallback} is in the kernel now"
    )]
    Lost { script: String, fallback: String },
    #[error("there is no snapshot to roll back to: nothing has been applied with this state folder (`{0}`)")]
    NoSnapshot(String),
    #[error(
        "there is nothing to roll back: the state folder (`{0}`) holds no snapshot, as the last \
         write put the fallback into a kernel that held none of fwscript's rules (a boot), and \
         putting that empty kernel back would open the host; nothing was changed\n  = hint: \
         fix the script and apply it, or `fwscript reset` to remove fwscript's rules"
    )]
    NothingSinceBoot(String),
    #[error("the snapshot in the state folder is unreadable: {0}")]
    BadSnapshot(String),
    #[error(
        "refusing to apply: this exact plan was applied with --confirm and never confirmed, so it was rolled \
         back at {}\n  = hint: apply it again with --confirm SECS and confirm it, or pass --force",
        utc(*.at)
    )]
    NeverConfirmed { at: u64 },
    #[error(
        "an `apply --confirm` of `{script}` is waiting for `fwscript confirm` ({left} s left)\n  = hint: run \
         `fwscript confirm` to keep it or `fwscript rollback` to undo it, then try again"
    )]
    Pending { script: String, left: u64 },
    #[error("cannot start the confirm timer ({0}), so the change was rolled back at once")]
    Timer(std::io::Error),
}

/// A new write while a confirm is pending would replace the snapshot the
/// timer is to put back; refuse it.
pub fn ensure_none_pending(state: &StateDir) -> Result<(), Error> {
    match state.pending_confirm()? {
        Some(pending) => Err(ConfirmError::Pending {
            left: pending.deadline.saturating_sub(now()),
            script: pending.script,
        }
        .into()),
        None => Ok(()),
    }
}

/// The record of an apply of `script` that `fwscript confirm` must keep
/// within `secs`.
pub fn pending(script: &str, secs: u64, digest: &str) -> PendingConfirm {
    PendingConfirm {
        deadline: now() + secs,
        token: format!("{:x}{:x}", std::process::id(), now()),
        script: script.to_string(),
        plan_digest: digest.to_string(),
        boot_id: boot_id(),
    }
}

/// After an apply with `--confirm` wrote: starts the timer. If it cannot
/// start, nothing would ever roll back, so the change is rolled back now.
pub fn start_timer(
    backend: &dyn Backend,
    state: &Locked,
    pending: &PendingConfirm,
) -> Result<(), Error> {
    let spawned = std::env::current_exe().and_then(|exe| {
        let mut timer = Command::new(exe);
        timer
            .arg("--state-dir")
            .arg(state.path())
            .args(["confirm-timer", &pending.token])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: setsid is async-signal-safe; it detaches the timer from
        // the session so a closed SSH connection does not take it down.
        unsafe {
            timer.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        timer.spawn()
    });
    if let Err(err) = spawned {
        expire(backend, state, pending)?;
        return Err(ConfirmError::Timer(err).into());
    }
    Ok(())
}

/// `fwscript confirm`: keep what the pending apply wrote. The unconfirmed
/// rules become the last good ruleset.
pub fn confirm(backend: &dyn Backend, state: &Locked) -> Result<PendingConfirm, Error> {
    match settle(backend, state)? {
        Settled::Nothing => {}
        Settled::Expired(pending) => {
            return Err(ConfirmError::Expired {
                script: pending.script,
            }
            .into())
        }
        Settled::Lost { pending, fallback } => {
            return Err(ConfirmError::Lost {
                script: pending.script,
                fallback: fallback.describe(),
            }
            .into())
        }
    }
    let pending = state
        .pending_confirm()?
        .ok_or(ConfirmError::NothingPending)?;
    state.promote_pending(&LastGood {
        script: pending.script.clone(),
        applied_at: now(),
        digest: pending.plan_digest.clone(),
    })?;
    state.clear_pending_confirm()?;
    state.clear_rejected()?;
    Ok(pending)
}

/// What [`settle`] found and did.
#[derive(Debug)]
pub enum Settled {
    /// No confirm is pending, or one is and may still be confirmed.
    Nothing,
    /// Its deadline passed: the snapshot from before it is back.
    Expired(PendingConfirm),
    /// The kernel lost it (a reboot): the last good ruleset is back.
    Lost {
        pending: PendingConfirm,
        fallback: Fallback,
    },
}

/// Ends a pending confirm that can no longer be confirmed: its deadline
/// passed (its timer is gone, or this runs first), or the machine rebooted
/// (the kernel no longer holds it). Either way it counts as rejected.
pub fn settle(backend: &dyn Backend, state: &Locked) -> Result<Settled, Error> {
    let Some(pending) = state.pending_confirm()? else {
        return Ok(Settled::Nothing);
    };
    if now() >= pending.deadline {
        expire(backend, state, &pending)?;
        tracing::warn!(
            "the apply of `{}` was not confirmed in time: the rules from before it are back",
            pending.script
        );
        return Ok(Settled::Expired(pending));
    }
    let rebooted = !pending.boot_id.is_empty() && pending.boot_id != boot_id();
    if !rebooted && fallback::kernel_holds_fwscript(backend)? {
        return Ok(Settled::Nothing);
    }
    // The unconfirmed rules are gone from the kernel: they can never be
    // confirmed, and what is in the kernel now is not a firewall.
    reject(state, &pending)?;
    let fallback = fallback::choose(state)?;
    fallback::apply(backend, state, &fallback, "boot", None)?;
    tracing::warn!(
        "the apply of `{}` was never confirmed and the kernel lost it (a reboot?): {} is in the kernel",
        pending.script,
        fallback.describe()
    );
    Ok(Settled::Lost { pending, fallback })
}

fn expire(backend: &dyn Backend, state: &Locked, pending: &PendingConfirm) -> Result<(), Error> {
    rollback(backend, state, "confirm-timer")?;
    reject(state, pending)
}

fn reject(state: &Locked, pending: &PendingConfirm) -> Result<(), Error> {
    state.save_rejected(&Rejected {
        plan_digest: pending.plan_digest.clone(),
        rolled_back_at: now(),
    })?;
    state.clear_pending_confirm()?;
    Ok(())
}

/// The timer: waits for the deadline, then rolls back unless this apply was
/// confirmed (or replaced by a newer one) meanwhile.
pub fn run_timer(backend: &dyn Backend, state: &StateDir, token: &str) -> Result<(), Error> {
    loop {
        let Some(pending) = state.pending_confirm()? else {
            return Ok(());
        };
        if pending.token != token {
            return Ok(());
        }
        if now() >= pending.deadline {
            let locked = state.lock("confirm-timer")?;
            // Confirmed while this waited for the lock: nothing to do.
            if locked.pending_confirm()?.is_some_and(|p| p.token == token) {
                return expire(backend, &locked, &pending);
            }
            return Ok(());
        }
        // Short naps, so a confirm ends the timer within a second.
        std::thread::sleep(Duration::from_secs((pending.deadline - now()).min(1)));
    }
}

/// Refuses, unattended, the plan an expired confirm rolled back.
pub fn refuse_unconfirmed_again(
    state: &StateDir,
    digest: &str,
    forced: bool,
    confirming: bool,
) -> Result<(), Error> {
    if forced || confirming {
        return Ok(());
    }
    match state.rejected()? {
        Some(rejected) if rejected.plan_digest == digest => Err(ConfirmError::NeverConfirmed {
            at: rejected.rolled_back_at,
        }
        .into()),
        _ => Ok(()),
    }
}

/// Puts fwscript's part of the kernel back as the snapshot has it. Keeps no
/// new snapshot, so a second rollback changes nothing; what it puts back is
/// the last good ruleset from then on.
pub fn rollback(
    backend: &dyn Backend,
    state: &Locked,
    command: &'static str,
) -> Result<Transaction, Error> {
    let Some(snapshot) = state.snapshot()? else {
        let folder = state.path().display().to_string();
        // Something was applied, but the snapshot is gone: the boot
        // fallback removes it rather than make the empty kernel the
        // rollback target.
        return Err(match state.applied()? {
            Some(_) => ConfirmError::NothingSinceBoot(folder),
            None => ConfirmError::NoSnapshot(folder),
        }
        .into());
    };
    let rulesets = snapshot
        .families
        .iter()
        .map(|f| {
            let mut owned = LiveState::parse(f.family, &f.save)
                .map_err(|err| err.to_string())?
                .owned();
            owned.sets = crate::sets::live::parse_owned(&f.sets).map_err(|err| err.to_string())?;
            Ok(owned)
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(ConfirmError::BadSnapshot)?;
    let digest = transaction::plan_digest(&rulesets);
    let intent = Intent {
        rulesets,
        script: format!("(the rules from before `{}`)", snapshot.script),
        command,
        keep: Keep::Good { digest },
        snapshot: false,
        policies: None,
        records: Records::BestEffort,
        // Putting back what was there: the rules from before are the ones
        // the session came in under.
        session: None,
    };
    transaction::write(backend, intent, Some(state))
}

/// `2026-11-25 02:30:58 UTC`, from seconds since the epoch.
pub(crate) fn utc(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn timestamps_read_as_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_573_658), "2026-11-25 02:27:38 UTC");
    }
}
