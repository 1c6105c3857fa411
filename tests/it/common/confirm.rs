//! The `apply --confirm` timer as tests end it: a crash, or a reboot that
//! takes it with the kernel.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Kills (SIGKILL) the timer of the confirm pending in the state folder
/// `state`, by its token, and waits until no such process is left.
pub fn kill_timer(state: &Path) {
    let pending = std::fs::read_to_string(state.join("pending-confirm.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&pending).unwrap();
    let pattern = format!("confirm-timer {}", value["token"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while Command::new("pkill")
        .args(["-9", "-f", &pattern])
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "the timer outlives its kills");
        std::thread::sleep(Duration::from_millis(20));
    }
}
