//! `fwscript explain` against what the packets did: for the packet a probe
//! sent, the offline verdict must be what the kernel did.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Once;

use super::probe::Reach;

/// The verdict `explain` gives a new TCP connection or, for `port` None,
/// an ICMP echo request; `None` while this build has no `explain`.
pub fn verdict(
    script: &Path,
    proto: &str,
    src: IpAddr,
    dst: IpAddr,
    port: Option<u16>,
) -> Option<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fwscript"));
    command.arg("explain").arg(script).args([
        "--proto",
        proto,
        "--src",
        &src.to_string(),
        "--dst",
        &dst.to_string(),
    ]);
    if let Some(port) = port {
        command.args(["--dport", &port.to_string()]);
    }
    let output = command.output().expect("fwscript runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("not implemented yet") {
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            eprintln!(
                "SKIP: `fwscript explain` is not implemented in this build; verdicts not compared"
            )
        });
        return None;
    }
    assert!(output.status.success(), "explain failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    Some(stdout.lines().next().unwrap_or_default().trim().to_string())
}

/// The verdict a probe's outcome shows the kernel gave.
pub fn seen(reach: Reach) -> &'static str {
    match reach {
        Reach::Open | Reach::Refused => "ACCEPT",
        Reach::Unreachable => "REJECT",
        Reach::Filtered => "DROP",
    }
}
