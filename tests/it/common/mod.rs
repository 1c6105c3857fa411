//! Shared helpers for the integration tests.

pub mod hostile;
pub mod netns;
