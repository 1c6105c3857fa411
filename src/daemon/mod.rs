//! The daemon (`fwscript watch`): the same pipeline as `apply` (script →
//! plan → survey → guard → apply), driven by events instead of a command
//! line: file changes, SIGHUP, and a resync timer that repairs drift.
//! Nothing is written before the first evaluation succeeds; a script that
//! fails keeps the last good rules; SIGTERM and SIGINT leave them in place.

mod systemd;
mod watcher;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::backend::Backend;
use crate::confirm;
use crate::diff::Change;
use crate::error::Error;
use crate::guard::SshSession;
use crate::plan::Plan;
use crate::script;
use crate::state::StateDir;
use crate::transaction::{self, Mode, Transaction};
use watcher::{folders_of, FolderWatcher};

/// What wakes the daemon.
#[derive(Debug)]
pub enum Event {
    /// Scripts or modules in a watched folder changed.
    Changed(Vec<PathBuf>),
    WatchFailed(String),
    Reload,
    Stop(&'static str),
}

struct Daemon<'a> {
    script: PathBuf,
    backend: &'a dyn Backend,
    state: StateDir,
    /// The last plan that reached the kernel: what drift is measured against.
    current: Option<Plan>,
    watcher: FolderWatcher,
    ready: bool,
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

    let mut daemon = Daemon {
        script: script.to_path_buf(),
        backend,
        state,
        current: None,
        watcher,
        ready: false,
    };
    if let Err(err) = confirm::settle(backend, &daemon.state) {
        tracing::error!("{}", one_line(&err));
    }
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

    let mut next_resync = Instant::now() + resync;
    // An event met while merging a burst of changes, handled next.
    let mut deferred: Option<Event> = None;
    loop {
        let next = match deferred.take() {
            Some(event) => Ok(event),
            None => inbox.recv_timeout(next_resync.saturating_duration_since(Instant::now())),
        };
        match next {
            Ok(Event::Changed(paths)) => {
                let changed;
                (changed, deferred) = merge_changes(paths, &inbox);
                let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
                tracing::info!("changed: {}", names.join(", "));
                daemon.reevaluate();
                next_resync = Instant::now() + resync;
            }
            Ok(Event::Reload) => {
                tracing::info!("SIGHUP: evaluating the script again");
                daemon.reevaluate();
                next_resync = Instant::now() + resync;
            }
            Ok(Event::WatchFailed(message)) => tracing::error!("watching files failed: {message}"),
            Ok(Event::Stop(signal)) => {
                systemd::notify("STOPPING=1");
                tracing::info!("{signal}: stopping; the rules stay in place");
                return Ok(());
            }
            Err(RecvTimeoutError::Timeout) => {
                daemon.resync();
                next_resync = Instant::now() + resync;
            }
            Err(RecvTimeoutError::Disconnected) => return Err(DaemonError::Stopped.into()),
        }
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

impl Daemon<'_> {
    /// Evaluates the script and applies it; a failure keeps what the kernel
    /// has.
    fn reevaluate(&mut self) {
        let status = match script::evaluate(&self.script) {
            Err(err) => {
                tracing::error!(
                    "script error at {}; keeping the last good rules",
                    err.one_line()
                );
                format!("script error at {}", err.one_line())
            }
            Ok(plan) => {
                self.follow_imports(&plan.sources);
                match self.apply(&plan) {
                    Ok(transaction) => {
                        log_applied(&transaction, "applied");
                        self.current = Some(plan);
                        "rules applied".to_string()
                    }
                    Err(err) => {
                        tracing::error!(
                            "not applied: {}; keeping the last good rules",
                            one_line(&err)
                        );
                        format!("not applied: {}", one_line(&err))
                    }
                }
            }
        };
        // Ready after the first attempt, good or bad: a daemon that waits
        // for a fix must not be restarted in a loop by systemd. The status
        // line tells `systemctl status` which it was.
        let ready = if self.ready { "" } else { "READY=1\n" };
        self.ready = true;
        systemd::notify(&format!("{ready}STATUS={status}"));
    }

    /// Puts back what someone changed behind the daemon's back.
    fn resync(&mut self) {
        let Some(plan) = self.current.take() else {
            return;
        };
        match self.apply(&plan) {
            Ok(transaction) if transaction.written.is_empty() => {
                tracing::debug!("drift check: in sync")
            }
            Ok(transaction) => {
                tracing::warn!(
                    "the kernel drifted from the script; someone changed fwscript's rules"
                );
                log_applied(&transaction, "drift repaired:");
            }
            Err(err) => tracing::error!("drift check failed: {}", one_line(&err)),
        }
        self.current = Some(plan);
    }

    fn apply(&self, plan: &Plan) -> Result<Transaction, Error> {
        confirm::settle(self.backend, &self.state)?;
        confirm::ensure_none_pending(&self.state)?;
        confirm::refuse_unconfirmed_again(&self.state, plan, false, false)?;
        let mode = Mode {
            dry_run: false,
            guard: SshSession::from_env(),
        };
        transaction::apply_plan(self.backend, plan, &self.script, Some(&self.state), mode)
    }

    /// Watches the script's folder and those of `sources` (its modules and
    /// address lists).
    fn follow_imports(&mut self, sources: &[PathBuf]) {
        self.watcher.count_files(sources);
        let mut folders = folders_of(sources);
        folders.extend(folders_of([&self.script]));
        let before = self.watcher.folders().clone();
        if let Err(err) = self.watcher.watch_exactly(folders) {
            tracing::error!("{err}");
        } else if !before.is_empty() && &before != self.watcher.folders() {
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

/// One line per event: every change when there are a few (`applied 2
/// changes: ipv4 filter FWS-INPUT-ALLOW: + 3: …`), counts per family and
/// table when there are many (the full list at debug level).
fn log_applied(transaction: &Transaction, what: &str) {
    if transaction.written.is_empty() {
        tracing::info!("no changes");
        return;
    }
    let changes: Vec<String> = transaction
        .survey
        .changes()
        .map(|(family, table, change)| format!("{family} {table} {}", describe(change)))
        .collect();
    if changes.len() <= LISTED_CHANGES {
        tracing::info!("{what} {} changes: {}", changes.len(), changes.join("; "));
        return;
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for (family, table, _) in transaction.survey.changes() {
        let key = format!("{family} {table}");
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

fn one_line(err: &Error) -> String {
    let text = err.to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    text.lines().map(str::trim).collect::<Vec<_>>().join(" ")
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
