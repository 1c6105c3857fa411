//! The integration tests: one binary, so CI links once. Pure tests run
//! the built `fwscript` or the library; `kernel_*` and `traffic_*` tests
//! create throwaway network namespaces (root only; under `CI=true` they
//! never skip).

mod common;
mod traffic;

mod ansible;
mod ci_scripts;
mod cli;
mod examples;
mod explain;
mod fuzz;
mod golden;
mod import;
mod import_equivalence;
mod json;
mod kernel_apply;
mod kernel_boot;
mod kernel_boot_faults;
mod kernel_cli;
mod kernel_diff_random;
mod kernel_hostile;
mod kernel_neighbours;
mod kernel_neighbours_docker;
mod kernel_neighbours_fail2ban;
mod kernel_read_cache;
mod kernel_readback;
mod kernel_render;
mod kernel_safety;
mod kernel_sets;
mod kernel_state;
mod kernel_status;
mod kernel_watch;
mod kernel_watch_faults;
mod package;
mod script_errors;
mod script_hostile;
mod script_lists;
mod script_sets;
mod sets_apply;
mod test_command;
mod traffic_guard;
mod traffic_nat;
mod traffic_outbound;
mod traffic_rules;
mod traffic_scans;
mod traffic_sets;
mod traffic_tutorial;
mod tutorial_doc;
mod units;
