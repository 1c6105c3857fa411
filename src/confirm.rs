//! Confirm or roll back (apply → **confirm** → state): `apply --confirm
//! SECS` arms a timer that puts the snapshot back unless `fwscript confirm`
//! runs in time, and `rollback` puts it back on demand.
//!
//! The timer is a detached `fwscript` process, so it needs no terminal and
//! survives the SSH session that ran the apply. Should it die (a crash, a
//! reboot), the deadline is still in the state folder: the next `apply`,
//! `reset`, `rollback`, `confirm` or `watch` sees it has passed and rolls
//! back first, and the plan that was never confirmed is not applied again
//! unattended (see docs/safety.md).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::backend::Backend;
use crate::error::Error;
use crate::live::LiveState;
use crate::plan::Plan;
use crate::render;
use crate::state::{PendingConfirm, Rejected, StateDir};
use crate::transaction::{self, now, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("there is nothing to confirm: no `apply --confirm` is waiting")]
    NothingPending,
    #[error("there is no snapshot to roll back to: nothing has been applied with this state folder (`{0}`)")]
    NoSnapshot(String),
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
    #[error("cannot start the confirm timer: {0}")]
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

/// A digest of everything the plan writes, to recognise it later.
pub fn digest(plan: &Plan) -> String {
    let digest = Sha256::digest(render::restore_files(plan).as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// After an apply with `--confirm SECS`: remember the deadline and start
/// the timer. Nothing to arm when nothing was written.
pub fn arm(
    state: &StateDir,
    script: &Path,
    plan: &Plan,
    secs: u64,
    transaction: &Transaction,
) -> Result<bool, Error> {
    if transaction.written.is_empty() {
        return Ok(false);
    }
    let token = format!("{:x}{:x}", std::process::id(), now());
    let pending = PendingConfirm {
        deadline: now() + secs,
        token: token.clone(),
        script: script.display().to_string(),
        plan_digest: digest(plan),
    };
    state.save_pending_confirm(&pending)?;
    let exe = std::env::current_exe().map_err(ConfirmError::Timer)?;
    let mut timer = Command::new(exe);
    timer
        .arg("--state-dir")
        .arg(state.path())
        .args(["confirm-timer", &token])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; it detaches the timer from the
    // session so a closed SSH connection does not take it down.
    unsafe {
        timer.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    timer.spawn().map_err(ConfirmError::Timer)?;
    Ok(true)
}

/// `fwscript confirm`: keep what the pending apply wrote.
pub fn confirm(backend: &dyn Backend, state: &StateDir) -> Result<PendingConfirm, Error> {
    if settle(backend, state)?.is_some() {
        return Err(ConfirmError::NothingPending.into());
    }
    let pending = state
        .pending_confirm()?
        .ok_or(ConfirmError::NothingPending)?;
    state.clear_pending_confirm()?;
    state.clear_rejected()?;
    Ok(pending)
}

/// Rolls back a pending confirm whose deadline has passed (its timer is
/// gone, or this runs first). Returns what was rolled back.
pub fn settle(backend: &dyn Backend, state: &StateDir) -> Result<Option<PendingConfirm>, Error> {
    let Some(pending) = state.pending_confirm()? else {
        return Ok(None);
    };
    if now() < pending.deadline {
        return Ok(None);
    }
    expire(backend, state, &pending)?;
    tracing::warn!(
        "the apply of `{}` was not confirmed in time: the rules from before it are back",
        pending.script
    );
    Ok(Some(pending))
}

fn expire(backend: &dyn Backend, state: &StateDir, pending: &PendingConfirm) -> Result<(), Error> {
    rollback(backend, state)?;
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
        let now = now();
        if now >= pending.deadline {
            return expire(backend, state, &pending);
        }
        // Short naps, so a confirm ends the timer within a second.
        std::thread::sleep(Duration::from_secs((pending.deadline - now).min(1)));
    }
}

/// Refuses, unattended, the plan an expired confirm rolled back.
pub fn refuse_unconfirmed_again(
    state: &StateDir,
    plan: &Plan,
    forced: bool,
    confirming: bool,
) -> Result<(), Error> {
    if forced || confirming {
        return Ok(());
    }
    match state.rejected()? {
        Some(rejected) if rejected.plan_digest == digest(plan) => {
            Err(ConfirmError::NeverConfirmed {
                at: rejected.rolled_back_at,
            }
            .into())
        }
        _ => Ok(()),
    }
}

/// Puts fwscript's part of the kernel back as the snapshot has it. Keeps no
/// new snapshot, so a second rollback changes nothing.
pub fn rollback(backend: &dyn Backend, state: &StateDir) -> Result<Transaction, Error> {
    let snapshot = state
        .snapshot()?
        .ok_or_else(|| ConfirmError::NoSnapshot(state.path().display().to_string()))?;
    let desired = snapshot
        .families
        .iter()
        .map(|f| LiveState::parse(f.family, &f.save).map(|live| live.owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| ConfirmError::BadSnapshot(err.to_string()))?;
    transaction::write(backend, desired, Path::new(&snapshot.script), None, false)
}

/// `2026-11-25 02:30:58 UTC`, from seconds since the epoch.
fn utc(secs: u64) -> String {
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
