//! `fwscript explain` against what the packets did: for the packet a probe
//! sent, the offline verdict must be the one the kernel gave.

use std::path::Path;
use std::process::Command;

use super::probe::Reach;

/// Asserts that `fwscript explain SCRIPT PACKET…` (flags describing the
/// probe's packet, a new connection) gives the verdict the kernel showed by
/// `reach`.
#[track_caller]
pub fn agrees(script: &Path, packet: &[&str], reach: Reach) {
    let output = Command::new(env!("CARGO_BIN_EXE_fwscript"))
        .arg("explain")
        .arg(script)
        .args(packet)
        .output()
        .expect("fwscript runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "explain {packet:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verdict = stdout.lines().next().unwrap_or_default();
    assert_eq!(
        verdict,
        seen(reach),
        "explain {packet:?} disagrees with the kernel ({reach:?}):\n{stdout}"
    );
}

/// The verdict a probe's outcome shows the kernel gave.
pub fn seen(reach: Reach) -> &'static str {
    match reach {
        Reach::Open | Reach::Refused => "ACCEPT",
        Reach::Unreachable => "REJECT",
        Reach::Filtered => "DROP",
    }
}
