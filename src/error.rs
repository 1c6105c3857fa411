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
}
