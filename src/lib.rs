//! fwscript: a Linux firewall written as a Rhai program.
//!
//! ```text
//! script ──▶ Plan ──render──▶ Ruleset (restore text)
//!                                │
//! kernel ──▶ LiveState ──────────┴──diff──▶ Changeset ──apply──▶ kernel
//! ```

pub mod apply;
pub mod backend;
pub mod cli;
pub mod commands;
pub mod confirm;
pub mod counters;
pub mod daemon;
pub mod diff;
pub mod env;
pub mod error;
pub mod explain;
pub mod fallback;
pub mod foreign;
pub mod forms;
pub mod forwarding;
pub mod guard;
pub mod hidden_rules;
pub mod import;
pub mod io_error;
pub mod legacy_rules;
pub mod live;
pub mod logging;
pub mod netfilter;
pub mod nft_tables;
pub mod origins;
pub mod plan;
pub mod readback;
pub mod render;
pub mod ruleset;
pub mod script;
pub mod sets;
pub mod state;
pub mod testing;
pub mod transaction;
