//! Shared helpers for the integration tests.

pub mod fail2ban;
pub mod hostile;
pub mod netns;
pub mod watch;
