//! What the daemon says of itself (daemon → **status** → systemd, logs,
//! `fwscript status`): one `STATUS=` line built from what is in the kernel
//! and what went wrong, `READY=1` once some ruleset is in the kernel, and
//! each failure logged once, not at every retry.

use std::time::Duration;

use super::systemd;
use crate::state::{DaemonRecord, StateDir};

pub struct Reporter {
    record: DaemonRecord,
    script_error: Option<String>,
    write_error: Option<(String, Duration)>,
    /// What the kernel holds, in words; `None` until something is in.
    kernel: Option<String>,
    ready: bool,
    /// The last write failure logged, so a retry that fails the same way
    /// says nothing new.
    logged_failure: Option<String>,
    logged_fallback_failure: Option<String>,
}

impl Reporter {
    /// Records the daemon in the state folder at once, so an `apply` run
    /// meanwhile can say a daemon will undo it.
    pub fn new(record: DaemonRecord, state: &StateDir) -> Reporter {
        if let Err(err) = state.save_daemon(&record) {
            tracing::warn!("cannot record the daemon in the state folder: {err}");
        }
        Reporter {
            record,
            script_error: None,
            write_error: None,
            kernel: None,
            ready: false,
            logged_failure: None,
            logged_fallback_failure: None,
        }
    }

    /// The script evaluates again; the write that follows says what it
    /// led to.
    pub fn script_ok(&mut self) {
        self.script_error = None;
    }

    pub fn script_failed(&mut self, message: String, state: &StateDir) {
        self.script_error = Some(message);
        self.publish(state);
    }

    /// A write (or a check that found the kernel in sync) succeeded.
    /// `script`: it was the script's plan, so no write error stands.
    pub fn written(&mut self, kernel: String, script: bool, state: &StateDir) {
        if script {
            self.write_error = None;
            self.logged_failure = None;
        }
        self.logged_fallback_failure = None;
        self.kernel = Some(kernel);
        self.publish(state);
    }

    pub fn write_failed(&mut self, message: &str, retry_in: Duration, state: &StateDir) {
        if self.logged_failure.as_deref() == Some(message) {
            tracing::debug!("still not applied: {message}");
        } else {
            tracing::error!(
                "not applied: {message}; trying again in {} s, then less and less often",
                retry_in.as_secs()
            );
            self.logged_failure = Some(message.to_string());
        }
        self.write_error = Some((message.to_string(), retry_in));
        self.publish(state);
    }

    /// The fallback could not be written either, while the script's plan
    /// waits for its retry: logged once per distinct failure.
    pub fn fallback_failed(&mut self, message: &str) {
        if self.logged_fallback_failure.as_deref() == Some(message) {
            tracing::debug!("the fallback is still not applied: {message}");
        } else {
            tracing::error!("the fallback could not be applied either: {message}");
            self.logged_fallback_failure = Some(message.to_string());
        }
    }

    /// The one line systemd shows: what went wrong, then what the kernel
    /// holds.
    fn status(&self) -> String {
        let mut parts = Vec::new();
        if let Some(error) = &self.script_error {
            parts.push(error.clone());
        }
        if let Some((error, retry_in)) = &self.write_error {
            parts.push(format!(
                "not applied: {error} (trying again in {} s)",
                retry_in.as_secs()
            ));
        }
        parts.push(
            self.kernel
                .clone()
                .unwrap_or_else(|| "nothing is applied yet".to_string()),
        );
        parts.join("; ")
    }

    fn publish(&mut self, state: &StateDir) {
        let status = self.status();
        // Ready once some ruleset is in the kernel: units ordered after the
        // firewall then start protected.
        let ready = if !self.ready && self.kernel.is_some() {
            self.ready = true;
            "READY=1\n"
        } else {
            ""
        };
        if ready.is_empty() && status == self.record.status {
            return;
        }
        systemd::notify(&format!("{ready}STATUS={status}"));
        self.record.status = status;
        self.record.last_error = self
            .write_error
            .as_ref()
            .map(|(e, _)| e.clone())
            .or_else(|| self.script_error.clone());
        if let Err(err) = state.save_daemon(&self.record) {
            tracing::debug!("cannot record the daemon's status: {err}");
        }
    }
}
