//! A throwaway network namespace for kernel tests: every iptables command a
//! test runs goes into one, never into the host's firewall, and the
//! namespace is deleted when the value drops, panic or not.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Both iptables backends, as `FWSCRIPT_IPTABLES` names them.
pub const FLAVORS: [&str; 2] = ["nft", "legacy"];

/// Whether kernel tests can run here. Without root or the tools they skip
/// with a loud message, except under CI (`CI=true`), where that is a failure.
pub fn kernel_available() -> bool {
    let uid = Command::new("id").arg("-u").output().ok();
    let root = uid.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let tools = [
        "ip",
        "iptables-nft-restore",
        "iptables-legacy-restore",
        "ip6tables-nft-restore",
        "ip6tables-legacy-restore",
        "ipset",
    ];
    let missing: Vec<&str> = tools.into_iter().filter(|tool| !on_path(tool)).collect();
    let reason = match (root, missing.is_empty()) {
        (true, true) => return true,
        (false, _) => "not running as root".to_string(),
        (true, false) => format!("missing {}", missing.join(", ")),
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("kernel tests cannot run ({reason}) and CI=true forbids skipping them");
    }
    eprintln!("SKIP: kernel tests need root, the iptables tools and ipset: {reason}");
    false
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(tool).is_file())
}

pub struct Netns {
    pub name: String,
    /// `nft` or `legacy`: which iptables tools run inside.
    pub flavor: &'static str,
}

impl Netns {
    pub fn new(flavor: &'static str) -> Netns {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "fws-test-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip runs");
        assert!(status.success(), "ip netns add {name}");
        let netns = Netns { name, flavor };
        // Loopback up, so tests can send packets through the rules.
        netns.sh("ip link set lo up");
        netns
    }

    /// A reboot, as far as the kernel's tables go: the namespace is deleted
    /// and made again under the same name, empty. State folders stay.
    pub fn reboot(&self) {
        for args in [
            ["netns", "delete", &self.name],
            ["netns", "add", &self.name],
        ] {
            let status = Command::new("ip").args(args).status().expect("ip runs");
            assert!(status.success(), "ip {}", args.join(" "));
        }
        self.sh("ip link set lo up");
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name])
            .arg(program)
            .env("FWSCRIPT_IPTABLES", self.flavor);
        command
    }

    /// Runs a shell line inside the namespace; it must succeed. `$IPT` and
    /// `$IP6T` name this namespace's iptables and ip6tables.
    pub fn sh(&self, script: &str) -> String {
        let output = self
            .command("sh")
            .args(["-c", script])
            .env("IPT", self.tool("iptables"))
            .env("IP6T", self.tool("ip6tables"))
            .output()
            .expect("sh runs");
        assert!(
            output.status.success(),
            "`{script}` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `iptables-nft` or `ip6tables-legacy`…
    pub fn tool(&self, base: &str) -> String {
        format!("{base}-{}", self.flavor)
    }

    /// `iptables-save` of this flavour, without the comment lines that carry
    /// a date. `counters` adds `-c`.
    pub fn save(&self, family: &str, counters: bool) -> String {
        let tool = match family {
            "ipv4" => self.tool("iptables"),
            _ => self.tool("ip6tables"),
        };
        let flag = if counters { " -c" } else { "" };
        self.sh(&format!("{tool}-save{flag}"))
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    pub fn saves(&self) -> [String; 2] {
        [self.save("ipv4", false), self.save("ipv6", false)]
    }

    /// Runs the fwscript binary inside the namespace with a state dir of
    /// its own.
    pub fn fwscript(&self, state_dir: &Path, args: &[&str]) -> Run {
        let output = self
            .command(env!("CARGO_BIN_EXE_fwscript"))
            .arg("--state-dir")
            .arg(state_dir)
            .args(args)
            .output()
            .expect("fwscript runs");
        Run::from(output)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// What a run of the binary printed, and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(self.code, code, "unexpected exit: {self:#?}");
        self
    }
}
