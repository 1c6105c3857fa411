//! The daemon (`fwscript watch`): the same pipeline as `apply` (script →
//! plan → survey → guard → write), driven by events instead of a command
//! line: file changes, SIGHUP, retries and a resync timer that repairs
//! drift.
//!
//! The host is never left open (docs/boot.md): a script that does not
//! evaluate keeps the last good rules; at start, with nothing of the
//! script's applied yet, the last good ruleset from the state folder (or
//! the emergency one) goes in; a write that fails is tried again with
//! backoff and at every resync. SIGTERM and SIGINT leave the rules in place.

mod status;
mod systemd;
mod watcher;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::backend::Backend;
use crate::confirm;
use crate::diff::Change;
use crate::error::Error;
use crate::fallback::{self, Fallback};
use crate::forms::Content;
use crate::guard::SshSession;
use crate::hidden_rules;
use crate::netfilter::Family;
use crate::plan::Plan;
use crate::script;
use crate::state::{DaemonRecord, StateDir};
use crate::transaction::{self, Records, Transaction};
use status::Reporter;
use watcher::{folders_of, FolderWatcher};

/// What wakes the daemon.
#[derive(Debug)]
pub enum Event {
    /// Scripts or modules in a watched folder changed.
    Changed(Vec<PathBuf>),
    /// Things were created, removed or renamed: maybe a watched folder.
    Moved(Vec<PathBuf>),
    WatchFailed(String),
    Reload,
    Stop(&'static str),
}

/// How often watched folders are checked for having been deleted and
/// created again (a deploy replacing a folder, `git checkout`): a few
/// `stat`s, nothing a profiler would see.
const FOLDER_CHECK: Duration = Duration::from_secs(1);

/// The first wait before a failed write is tried again; it doubles up to
/// the resync period.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// What the daemon last put in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InKernel {
    Script,
    Fallback,
}

struct Daemon<'a> {
    script: PathBuf,
    backend: &'a dyn Backend,
    state: StateDir,
    /// The script's last good evaluation: what the kernel should hold.
    wanted: Option<Plan>,
    /// What this daemon last wrote (or found in sync).
    in_kernel: Option<InKernel>,
    /// A failed write of `wanted`, tried again at `at`.
    retry: Option<Retry>,
    resync: Duration,
    watcher: FolderWatcher,
    report: Reporter,
    /// Families this host cannot do, each logged once.
    skipped: HashSet<Family>,
    /// The start-up line naming the watched folders was logged; changes
    /// to them are logged from then on.
    announced: bool,
    /// The modules and list files of the last evaluation, as named: their
    /// folders are found again every second, since a symlink on the way
    /// may now lead elsewhere.
    sources: Vec<PathBuf>,
    /// The foreign rules that change what the script means, as last
    /// logged (without their position, which shifts): each is said once
    /// while it stands, and again if it comes back.
    foreign: BTreeSet<String>,
    /// The same for rules its reads do not show (iptables-legacy's, other
    /// programs' nf_tables chains), as last logged.
    hidden: BTreeSet<String>,
}

/// Why the daemon writes: for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Evaluated,
    Retry,
    Resync,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    at: Instant,
    backoff: Duration,
    attempts: u32,
}

/// Runs until SIGTERM or SIGINT.
pub fn watch(
    script: &Path,
    backend: &dyn Backend,
    state: StateDir,
    resync: Duration,
) -> Result<(), Error> {
    let (events, inbox) = mpsc::channel();
    let watcher = FolderWatcher::new(events.clone()).map_err(DaemonError::Watch)?;
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT]).map_err(DaemonError::Signals)?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let event = match signal {
                SIGHUP => Event::Reload,
                SIGTERM => Event::Stop("SIGTERM"),
                _ => Event::Stop("SIGINT"),
            };
            if events.send(event).is_err() {
                return;
            }
        }
    });

    // Another daemon on this folder: each puts its own script back at the
    // other's every write. Said, not refused: at boot a record of a process
    // that only looks alive must not keep the firewall from starting.
    if let Some(other) = state
        .daemon()
        .ok()
        .flatten()
        .filter(|d| d.pid != std::process::id() && d.is_alive())
    {
        tracing::warn!(
            "another `fwscript watch` (pid {}) keeps `{}` applied with this state folder: two \
             daemons on one folder undo each other's writes; stop one of them",
            other.pid,
            crate::script::printable(&other.script)
        );
    }
    let record = DaemonRecord {
        pid: std::process::id(),
        script: script
            .canonicalize()
            .unwrap_or_else(|_| script.to_path_buf())
            .display()
            .to_string(),
        started_at: transaction::now(),
        status: "starting".into(),
        last_error: None,
    };
    let mut daemon = Daemon {
        script: script.to_path_buf(),
        backend,
        report: Reporter::new(record, &state),
        state,
        wanted: None,
        in_kernel: None,
        retry: None,
        resync,
        watcher,
        skipped: HashSet::new(),
        announced: false,
        sources: Vec::new(),
        foreign: BTreeSet::new(),
        hidden: BTreeSet::new(),
    };
    // Watched before the first evaluation, so fixing a script that never
    // worked is seen too.
    daemon.follow_imports(&[]);
    daemon.reevaluate();
    tracing::info!(
        "watching `{}` (folders: {}); drift check every {} s",
        script.display(),
        daemon.watched(),
        resync.as_secs()
    );
    daemon.announced = true;
    let outcome = daemon.run(&inbox);
    let _ = daemon.state.clear_daemon();
    outcome
}

impl Daemon<'_> {
    fn run(&mut self, inbox: &Receiver<Event>) -> Result<(), Error> {
        let mut next_resync = Instant::now() + self.resync;
        let mut next_check = Instant::now() + FOLDER_CHECK;
        // An event met while merging a burst of changes, handled next.
        let mut deferred: Option<Event> = None;
        loop {
            let wake = [
                Some(next_resync),
                Some(next_check),
                self.retry.map(|r| r.at),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("two deadlines");
            let next = match deferred.take() {
                Some(event) => Ok(event),
                None => inbox.recv_timeout(wake.saturating_duration_since(Instant::now())),
            };
            match next {
                Ok(Event::Changed(paths)) => {
                    let changed;
                    (changed, deferred) = merge_changes(paths, inbox);
                    let names: Vec<String> =
                        changed.iter().map(|p| p.display().to_string()).collect();
                    tracing::info!("changed: {}", names.join(", "));
                    self.reevaluate();
                    next_resync = Instant::now() + self.resync;
                }
                Ok(Event::Moved(paths)) => {
                    if self.watcher.forget(&paths) {
                        self.rearm();
                    }
                }
                Ok(Event::Reload) => {
                    tracing::info!(
                        "SIGHUP: watching every folder anew and evaluating the script again"
                    );
                    self.watcher.rearm_all();
                    self.reevaluate();
                    next_resync = Instant::now() + self.resync;
                }
                Ok(Event::WatchFailed(message)) => {
                    tracing::error!("watching files failed: {message}")
                }
                Ok(Event::Stop(signal)) => {
                    systemd::notify("STOPPING=1");
                    tracing::info!("{signal}: stopping; the rules stay in place");
                    return Ok(());
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    if now >= next_check {
                        next_check = now + FOLDER_CHECK;
                        let rearmed = self.watcher.rearm_changed();
                        if !rearmed.is_empty() {
                            let names: Vec<String> =
                                rearmed.iter().map(|p| p.display().to_string()).collect();
                            tracing::info!("watching again, it was replaced: {}", names.join(", "));
                            self.reevaluate();
                        } else if self.folders_moved() {
                            // A deploy that flips a symlink (`current ->
                            // releases/N`): the path leads to other files,
                            // and nothing in the folders watched changed.
                            tracing::info!("the script's path leads elsewhere now");
                            self.reevaluate();
                        }
                    }
                    if self.retry.is_some_and(|r| now >= r.at) {
                        self.converge(Cause::Retry);
                    }
                    if now >= next_resync {
                        self.converge(Cause::Resync);
                        next_resync = Instant::now() + self.resync;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Err(DaemonError::Stopped.into()),
            }
        }
    }

    /// Watches replaced or reappeared folders again, and evaluates what is
    /// in them now.
    fn rearm(&mut self) {
        let rearmed = self.watcher.rearm_changed();
        if rearmed.is_empty() {
            return;
        }
        let names: Vec<String> = rearmed.iter().map(|p| p.display().to_string()).collect();
        tracing::info!("watching again, it was replaced: {}", names.join(", "));
        self.reevaluate();
    }

    /// Evaluates the script; a good one becomes what the kernel should
    /// hold, a broken one keeps what it holds.
    fn reevaluate(&mut self) {
        match script::evaluate(&self.script) {
            Ok(plan) => {
                self.follow_imports(&plan.sources);
                self.report.script_ok();
                self.wanted = Some(plan);
                // A new plan starts a new series of attempts.
                self.retry = None;
            }
            Err(err) => {
                // The folders as they are now, so fixing the script where
                // its path leads now is seen.
                let sources = std::mem::take(&mut self.sources);
                self.follow_imports(&sources);
                // "at" only before a place: an unreadable script has none.
                let said = match err.location {
                    Some(_) => format!("script error at {}", err.one_line()),
                    None => format!("script error: {}", err.one_line()),
                };
                tracing::error!("{said}; keeping the last good rules");
                self.report.script_failed(said, &self.state);
            }
        }
        self.converge(Cause::Evaluated);
    }

    /// Brings the kernel to what it should hold: the script's plan, or,
    /// while none of it is in, the fallback.
    fn converge(&mut self, cause: Cause) {
        let Some(plan) = self.wanted.clone() else {
            self.keep_fallback(cause);
            return;
        };
        match unrecorded_is_written(self.write_plan(&plan)) {
            Ok(transaction) => {
                self.log_written(&transaction, cause);
                if let Some(retry) = self.retry.take() {
                    tracing::info!("applied after {} failed attempts", retry.attempts);
                }
                let applied = format!("the rules of `{}` are applied", self.script.display());
                self.report.written(applied, true, &self.state);
                self.in_kernel = Some(InKernel::Script);
            }
            Err(err) => {
                let retry = self.schedule_retry();
                self.report
                    .write_failed(&one_line(&err), retry.backoff, &self.state);
                // Nothing of the script's is in: the host must not wait open.
                if self.in_kernel != Some(InKernel::Script) {
                    self.keep_fallback(cause);
                }
            }
        }
    }

    /// Puts the fallback in (or keeps it in, repairing drift).
    fn keep_fallback(&mut self, cause: Cause) {
        match self.write_fallback() {
            Ok((fallback, transaction)) => {
                self.log_written(&transaction, cause);
                if self.in_kernel != Some(InKernel::Fallback) {
                    tracing::warn!("{} is applied instead of the script", fallback.describe());
                }
                let applied = format!("{} is applied", fallback.describe());
                self.report.written(applied, false, &self.state);
                self.in_kernel = Some(InKernel::Fallback);
            }
            Err(err) => {
                if self.wanted.is_none() {
                    let retry = self.schedule_retry();
                    self.report
                        .write_failed(&one_line(&err), retry.backoff, &self.state);
                } else {
                    self.report.fallback_failed(&one_line(&err));
                }
            }
        }
    }

    fn write_plan(&mut self, plan: &Plan) -> Result<Transaction, Error> {
        let description = format!("watch {}", self.script.display());
        let locked = self.state.lock(&description)?;
        if let confirm::Settled::Lost { fallback, .. } = confirm::settle(self.backend, &locked)? {
            let applied = format!("{} is applied", fallback.describe());
            self.report.written(applied, false, &self.state);
            self.in_kernel = Some(InKernel::Fallback);
        }
        confirm::ensure_none_pending(&locked)?;
        let (mut intent, digest) = transaction::plan_intent(plan, &self.script, "watch");
        confirm::refuse_unconfirmed_again(&locked, &digest, false, false)?;
        // The plan the folder already keeps as the last good ruleset, put
        // back (drift repair after a flush): like a fallback, the kernel
        // matters more than the bookkeeping, so a folder gone read-only or
        // full does not keep the host open. A plan the folder does not know
        // yet waits for its records, and the rules from before stay.
        let recorded = locked.last_good().ok().flatten();
        if recorded.is_some_and(|good| good.digest == digest) {
            intent.records = Records::BestEffort;
        }
        transaction::apply_plan(
            self.backend,
            plan,
            intent,
            Some(&locked),
            SshSession::from_env(),
        )
    }

    fn write_fallback(&mut self) -> Result<(Fallback, Transaction), Error> {
        let locked = self.state.lock("watch (fallback)")?;
        confirm::settle(self.backend, &locked)?;
        confirm::ensure_none_pending(&locked)?;
        let fallback = fallback::choose(&locked)?;
        let transaction = unrecorded_is_written(fallback::apply(
            self.backend,
            &locked,
            &fallback,
            "watch",
            transaction::connected(SshSession::from_env()),
        ))?;
        Ok((fallback, transaction))
    }

    fn schedule_retry(&mut self) -> Retry {
        let retry = match self.retry {
            None => Retry {
                at: Instant::now() + FIRST_RETRY,
                backoff: FIRST_RETRY,
                attempts: 1,
            },
            Some(last) => {
                let backoff = (last.backoff * 2).min(self.resync);
                Retry {
                    at: Instant::now() + backoff,
                    backoff,
                    attempts: last.attempts + 1,
                }
            }
        };
        self.retry = Some(retry);
        retry
    }

    /// Logs each rule set the kernel runs beside fwscript's that its reads
    /// do not show, once while it stands and again if it comes back.
    fn log_hidden(&mut self) {
        let standing: BTreeSet<String> = hidden_rules::look(self.backend).messages().collect();
        for message in standing.difference(&self.hidden) {
            tracing::warn!("{}", crate::script::printable(message));
        }
        self.hidden = standing;
    }

    fn log_written(&mut self, transaction: &Transaction, cause: Cause) {
        self.log_hidden();
        for (family, reason) in &transaction.survey.skipped {
            if self.skipped.insert(*family) {
                tracing::warn!("{family} skipped: {reason}; only the other family is applied");
            }
        }
        let mut standing = BTreeSet::new();
        for warning in transaction.survey.warnings() {
            let key = format!(
                "{} {} {:?} {}",
                warning.family, warning.table, warning.chain, warning.spec
            );
            let said = self.foreign.contains(&key);
            standing.insert(key);
            if warning.hook_moves() {
                // Without an SSH session to keep (no `SSH_CONNECTION`), a
                // foreign catch-all drop or accept the hook moved below is
                // not refused: said once, as the move happens once.
                if !transaction.written.is_empty() {
                    tracing::warn!("{}", crate::script::printable(&warning.to_string()));
                }
            } else if !said {
                // An admin's `iptables -I INPUT 1 -j ACCEPT` changes no
                // rule of fwscript's: no drift, but the host is open.
                tracing::warn!("{}", crate::script::printable(&warning.to_string()));
            }
        }
        self.foreign = standing;
        match (cause, transaction.written.is_empty()) {
            (Cause::Resync, true) => tracing::debug!("drift check: in sync"),
            (Cause::Resync, false) => {
                let only_moves = transaction.survey.set_changes().next().is_none()
                    && transaction
                        .survey
                        .changes()
                        .all(|(_, _, change)| matches!(change, Change::MoveHook { .. }));
                // Rules written again only to learn their kernel form (no
                // record of it: a lost or damaged forms file) are no drift.
                let unrecorded = |change: &Change| match change {
                    Change::DeleteRule { content, .. } | Change::DeleteHook { content, .. } => {
                        *content == Content::Unrecorded
                    }
                    _ => false,
                };
                let relearned = transaction.survey.set_changes().next().is_none()
                    && transaction.survey.changes().any(|(_, _, c)| unrecorded(c))
                    && transaction.survey.changes().all(|(_, _, change)| {
                        unrecorded(change)
                            || matches!(
                                change,
                                Change::InsertRule { .. } | Change::InsertHook { .. }
                            )
                    });
                if relearned {
                    tracing::warn!(
                        "fwscript's rules were written again to record how the kernel prints \
                         them (no record was readable); rules changed behind its back are \
                         seen from now on"
                    );
                    log_applied(transaction, "rewritten:");
                    return;
                }
                if only_moves {
                    tracing::warn!(
                        "a foreign rule was added after fwscript's accepting hook; the hook \
                         moves below it, so the script's accepts do not bypass it"
                    );
                } else {
                    tracing::warn!(
                        "the kernel drifted from the script; someone changed fwscript's rules or sets"
                    );
                }
                log_applied(transaction, "drift repaired:");
            }
            // A retry that finds the fallback in place is no news: with a
            // folder that stays read-only it comes every resync period.
            (Cause::Retry, true) => tracing::debug!("no changes"),
            (_, true) => tracing::info!("no changes"),
            (_, false) => log_applied(transaction, "applied"),
        }
    }

    /// The folders the script and its sources are in now, symlinks
    /// followed.
    fn folders_now(&self) -> BTreeSet<PathBuf> {
        let mut folders = folders_of(&self.sources);
        folders.extend(folders_of([&self.script]));
        folders
    }

    /// Whether a symlink on the way to the script or a source leads to
    /// another folder than the one watched.
    fn folders_moved(&self) -> bool {
        self.folders_now() != self.watcher.folders()
    }

    /// Watches the script's folder and those of `sources` (its modules and
    /// list files).
    fn follow_imports(&mut self, sources: &[PathBuf]) {
        self.watcher.count_files(sources);
        self.sources = sources.to_vec();
        let folders = self.folders_now();
        let before = self.watcher.folders();
        let problems = self.watcher.watch_exactly(folders);
        for problem in problems {
            tracing::error!("{problem}; trying again every second");
        }
        if self.announced && before != self.watcher.folders() {
            tracing::info!("now watching: {}", self.watched());
        }
    }

    fn watched(&self) -> String {
        let folders: Vec<String> = self
            .watcher
            .folders()
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        folders.join(", ")
    }
}

/// One save often arrives as several events: takes every change already
/// queued, and hands back the first other event met, not to lose it.
fn merge_changes(
    first: Vec<PathBuf>,
    inbox: &Receiver<Event>,
) -> (BTreeSet<PathBuf>, Option<Event>) {
    let mut changed: BTreeSet<PathBuf> = first.into_iter().collect();
    while let Ok(event) = inbox.try_recv() {
        match event {
            Event::Changed(more) => changed.extend(more),
            other => return (changed, Some(other)),
        }
    }
    (changed, None)
}

/// One line per event: every change when there are a few (`applied 2
/// changes: ipv4 filter FWS-INPUT-ALLOW: + 3: …`), counts per family and
/// table when there are many (the full list at debug level).
fn log_applied(transaction: &Transaction, what: &str) {
    let sets = transaction
        .survey
        .set_changes()
        .map(|change| format!("{} ipset {change}", change.family));
    let changes: Vec<String> = sets
        .chain(
            transaction
                .survey
                .changes()
                .map(|(family, table, change)| format!("{family} {table} {}", describe(change))),
        )
        .collect();
    if changes.len() <= LISTED_CHANGES {
        tracing::info!("{what} {} changes: {}", changes.len(), changes.join("; "));
        return;
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    let keys = transaction
        .survey
        .set_changes()
        .map(|c| format!("{} ipset", c.family))
        .chain(
            transaction
                .survey
                .changes()
                .map(|(family, table, _)| format!("{family} {table}")),
        );
    for key in keys {
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    tracing::info!("{what} {} changes ({})", changes.len(), counts.join(", "));
    tracing::debug!("{what}: {}", changes.join("; "));
}

/// Past this many, a log line gives counts instead of every change.
const LISTED_CHANGES: usize = 8;

fn describe(change: &Change) -> String {
    let text = change.to_string();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("{}: {text}", change.chain())
}

/// A write the kernel took though the state folder could not record it
/// (read-only, full) counts as written: the rules are in. What the folder
/// missed is said.
fn unrecorded_is_written(written: Result<Transaction, Error>) -> Result<Transaction, Error> {
    match written {
        Err(Error::Unrecorded {
            holds,
            source,
            transaction,
        }) => {
            let source = crate::script::printable(&source.to_string());
            tracing::warn!(
                "the kernel was changed: {holds}; but the state folder could not record it: \
                 {source}; `fwscript status` and `fwscript rollback` do not know of this write"
            );
            Ok(*transaction)
        }
        other => other,
    }
}

fn one_line(err: &Error) -> String {
    let text = err.to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let text = text.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    // Quoted user text (a path, a name) cannot forge a line of the log.
    crate::script::printable(&text)
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot watch files: {0}")]
    Watch(String),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    #[error("the event loop stopped")]
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_a_burst_keeps_a_signal_that_arrived_with_it() {
        let (events, inbox) = mpsc::channel();
        events
            .send(Event::Changed(vec!["b.rhai".into(), "a.rhai".into()]))
            .unwrap();
        events.send(Event::Stop("SIGTERM")).unwrap();
        events.send(Event::Changed(vec!["c.rhai".into()])).unwrap();
        let (changed, deferred) = merge_changes(vec!["a.rhai".into()], &inbox);
        assert_eq!(
            changed.into_iter().collect::<Vec<_>>(),
            [PathBuf::from("a.rhai"), "b.rhai".into()]
        );
        assert!(matches!(deferred, Some(Event::Stop("SIGTERM"))));
        let (rest, none) = merge_changes(Vec::new(), &inbox);
        assert_eq!(rest.len(), 1);
        assert!(none.is_none());
    }
}
