//! The error every command returns: one variant per pipeline stage, each
//! carrying that stage's own typed error.

use crate::explain::ExplainError;
use crate::script::ScriptError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Script(#[from] ScriptError),
    #[error("error: {0}")]
    Explain(#[from] ExplainError),
    #[error("error: cannot write to standard output: {0}")]
    Output(#[from] std::io::Error),
    #[error("error: {0}")]
    Apply(#[from] crate::apply::ApplyError),
    #[error("error: {0}")]
    Backend(#[from] crate::backend::BackendError),
    #[error("error: {0}")]
    Lockout(#[from] crate::guard::Lockout),
    #[error("error: {0}")]
    State(#[from] crate::state::StateError),
    #[error("error: {0}")]
    Confirm(#[from] crate::confirm::ConfirmError),
    #[error("error: {0}")]
    Daemon(#[from] crate::daemon::DaemonError),
    #[error("error: {0}")]
    Import(#[from] crate::import::ImportError),
    #[error("error: {0}")]
    Kernel(#[from] crate::testing::kernel::KernelError),
    /// The script could not be applied at boot; the fallback was.
    #[error(
        "{}\nnote: at boot the kernel must not stay open: {fallback} was applied instead{}",
        .cause.to_string().trim_end(), unrecorded_note(.unrecorded)
    )]
    FellBack {
        cause: Box<Error>,
        fallback: String,
        /// Why the state folder could not record the fallback, if it could
        /// not: `rollback` and `status` do not know of it.
        unrecorded: Option<String>,
    },
    /// At boot, neither the script nor any fallback could be written: the
    /// host is open, and the message must say so.
    #[error(
        "{}\nnote: at boot the kernel must not stay open, but no fallback could be written \
         either: {why}",
        .cause.to_string().trim_end()
    )]
    LeftOpen { cause: Box<Error>, why: String },
    /// A state write that had to come before the kernel's failed: the
    /// kernel was not touched.
    #[error("error: {source}; nothing was changed")]
    NotWritten { source: crate::state::StateError },
    /// A request that cannot be carried out as asked (an unknown command
    /// for `help`, a reset declined at its question, a malformed rule id).
    #[error("error: {0}")]
    Refused(String),
    /// Run as another user, the command failed for want of root's rights
    /// (the state folder, the iptables tools, network namespaces).
    #[error("error: must run as root: {0}\n  = hint: run it as root, e.g. with sudo")]
    NeedsRoot(String),
    /// The kernel was written and verified, then recording it failed: the
    /// message must say the kernel changed (docs/design.md).
    #[error(
        "error: the kernel was changed: {holds}; but the state folder could not record it: \
         {source}\n  = hint: `fwscript rollback` and `fwscript status` do not know of this \
         change; apply again once the state folder can be written"
    )]
    Unrecorded {
        holds: String,
        source: crate::state::StateError,
        /// What was written, for a caller that goes on (the daemon).
        transaction: Box<crate::transaction::Transaction>,
    },
}

fn unrecorded_note(unrecorded: &Option<String>) -> String {
    unrecorded
        .as_deref()
        .map(|why| {
            format!(
                "\nnote: but the state folder could not record it (`fwscript rollback` and \
                 `fwscript status` do not know of this change): {why}"
            )
        })
        .unwrap_or_default()
}
