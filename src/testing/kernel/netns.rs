//! Throwaway network namespaces for `fwscript test --kernel`: made with
//! the `ip` tool, entered by a thread with `setns(2)` just long enough to
//! make a socket or set a sysctl (a socket stays in its namespace whichever
//! thread uses it later), and deleted when the value drops, failure or not.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::KernelError;
use crate::backend::iptables::find;

/// A network namespace that lives as long as this value.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace named `fws-test-PID-N-ROLE`, loopback up.
    pub fn create(role: &str) -> Result<Netns, KernelError> {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "fws-test-{}-{}-{role}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name])?;
        let netns = Netns { name };
        // Addresses usable at once: no duplicate address detection.
        netns.sysctl("net/ipv6/conf/all/accept_dad", "0")?;
        netns.sysctl("net/ipv6/conf/default/accept_dad", "0")?;
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// `ip -n NAME ARGS…`.
    pub fn ip(&self, args: &[&str]) -> Result<(), KernelError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Writes a sysctl of this namespace (`net/ipv4/ip_forward`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), KernelError> {
        let path = format!("/proc/sys/{key}");
        inside(&self.name, || std::fs::write(&path, value))?.map_err(|e| KernelError::Setup {
            what: format!("set {key} in `{}`", self.name),
            message: e.to_string(),
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(err) = ip(&["netns", "delete", &self.name]) {
            eprintln!(
                "warning: cannot remove network namespace `{}`: {err}",
                self.name
            );
        }
    }
}

/// Removes the namespaces of earlier `--kernel` runs whose process is gone
/// (killed before it could clean up): `fws-test-PID-N-host`, `…-sideN`.
/// Names without a role are the test suite's, and are left alone.
pub fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("fws-test-") else {
            continue;
        };
        let mut parts = rest.split('-');
        let (Some(pid), Some(_), Some(role)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let ours = role == "host" || role.starts_with("side");
        let alive = Path::new("/proc").join(pid).exists();
        if ours && !alive && pid.bytes().all(|b| b.is_ascii_digit()) {
            let _ = ip(&["netns", "delete", &name]);
        }
    }
}

/// Runs the `ip` tool; its complaint is the error.
pub fn ip(args: &[&str]) -> Result<(), KernelError> {
    let program = find("ip").ok_or_else(|| KernelError::Setup {
        what: "find the `ip` tool".into(),
        message: "it is not installed (iproute2)".into(),
    })?;
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| KernelError::Setup {
            what: format!("run `ip {}`", args.join(" ")),
            message: e.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(KernelError::Setup {
        what: format!("run `ip {}`", args.join(" ")),
        message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// Runs `f` on a thread of its own that joined the namespace `netns`, and
/// returns what it returns. The thread ends with `f`, so nothing else ever
/// runs inside.
pub fn inside<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, KernelError> {
    let path = Path::new("/run/netns").join(netns);
    let handle = File::open(&path).map_err(|e| KernelError::Setup {
        what: format!("open {}", path.display()),
        message: e.to_string(),
    })?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: joins a namespace on this thread only; the
                // descriptor is valid for the call.
                let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(KernelError::Setup {
                        what: format!("enter namespace `{netns}`"),
                        message: io::Error::last_os_error().to_string(),
                    });
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
