//! Log set-up: one line per event through `tracing`, fit for journald.

use std::io::IsTerminal;

use tracing_subscriber::fmt::time::Uptime;
use tracing_subscriber::EnvFilter;

/// `quiet`: warnings and errors only (`--quiet`, which `-v` overrides).
pub fn init(verbose: u8, quiet: bool) {
    let default = match (verbose, quiet) {
        (0, true) => "warn",
        (0, false) => "info",
        (1, _) => "debug",
        _ => "trace",
    };
    // The watcher crates complain about watches the kernel already dropped
    // with a deleted folder: expected, and handled by watching it again.
    let quiet = "notify=error,notify_debouncer_full=error";
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},{quiet}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // journald and log files want plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match verbose {
        // `-vv`: the seconds since start before each line, to see where a
        // slow command spends its time (journald stamps lines itself).
        2.. => builder.with_timer(Uptime::default()).init(),
        _ => builder.without_time().init(),
    }
}
