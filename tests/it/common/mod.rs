//! Shared helpers for the integration tests.

pub mod case;
pub mod confirm;
pub mod fail2ban;
pub mod hostile;
pub mod netns;
pub mod watch;
