//! The watch daemon under faults and neighbours, in throwaway namespaces:
//! its state folder turned read-only under it (in a mount namespace of its
//! own, so the host's mounts never change), an admin's rule in front of
//! fwscript's hook, a `reset` while it runs. Each case asserts what the
//! kernel holds — with packets where it matters — and what was said.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::netns::kernel_available;
use crate::traffic::probe::{self, Reach};
use crate::traffic::topology::{Lan, CLIENT4, SERVER4};

const DEADLINE: Duration = Duration::from_secs(20);

const SCRIPT: &str = "allow_tcp(8080);\nssh_from(\"203.0.113.7\");\n";

/// `fwscript watch` on the server of `lan`, in a mount namespace of its
/// own where its state folder is a bind mount that can be made read-only.
struct Daemon {
    child: Child,
    log: PathBuf,
    state: PathBuf,
}

impl Daemon {
    /// `read_only`: the state folder is read-only from the start (a root
    /// file system mounted read-only after a crash).
    fn start(lan: &Lan, script: &Path, resync: u32, read_only: bool) -> Daemon {
        let state = lan.dir().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let log = lan.dir().join("watch.log");
        let s = state.display();
        // `exec` twice: the child's pid is the daemon's, whose mount
        // namespace `nsenter` then enters.
        let remount = match read_only {
            true => format!("mount -o remount,bind,ro {s} && "),
            false => String::new(),
        };
        let command = format!(
            "mount --bind {s} {s} && {remount}exec ip netns exec {} {} --state-dir {s} watch --resync {resync} {}",
            lan.server.name,
            env!("CARGO_BIN_EXE_fwscript"),
            script.display()
        );
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &command])
            .env("FWSCRIPT_IPTABLES", lan.server.flavor)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the daemon starts");
        let daemon = Daemon { child, log, state };
        daemon.wait_log("watching `", 1);
        daemon
    }

    /// Remounts the state folder read-only (`true`) or writable, for the
    /// daemon only.
    fn read_only(&self, read_only: bool) {
        let mode = if read_only { "ro" } else { "rw" };
        let status = Command::new("nsenter")
            .args(["-t", &self.child.id().to_string(), "-m", "mount", "-o"])
            .arg(format!("remount,bind,{mode}"))
            .arg(&self.state)
            .status()
            .unwrap();
        assert!(status.success(), "remount {mode}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[track_caller]
    fn wait_log(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + DEADLINE;
        while self.log().matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` ×{times} in the daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[track_caller]
fn wait_rules(lan: &Lan, daemon: &Daemon, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rules = lan.server.save("ipv4", false);
        if check(&rules) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached; rules:\n{rules}\nlog:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reach(lan: &Lan, port: u16, wait: Duration) -> Reach {
    probe::tcp_connect(
        &lan.client.name,
        CLIENT4,
        SocketAddr::new(SERVER4, port),
        wait,
    )
}

/// A root file system remounted read-only under a running daemon, then
/// someone flushes the whole ruleset: the drift check puts the rules back
/// all the same (the state folder already records them as the last good
/// ones), and says the folder could not record the repair.
#[test]
fn a_read_only_state_folder_does_not_keep_a_flushed_host_open() {
    if !kernel_available() {
        return;
    }
    let lan = Lan::new("nft");
    let _web = lan.listen_tcp(8080);
    let _other = lan.listen_tcp(9090);
    let script = lan.dir().join("fw.rhai");
    std::fs::write(&script, SCRIPT).unwrap();
    let mut daemon = Daemon::start(&lan, &script, 1, false);
    wait_rules(&lan, &daemon, "first apply", |r| {
        r.contains("--dport 8080 ")
    });
    assert_eq!(reach(&lan, 8080, probe::ANSWER), Reach::Open);
    assert_eq!(reach(&lan, 9090, probe::SILENCE), Reach::Filtered);

    daemon.read_only(true);
    lan.server.sh("nft flush ruleset");
    assert_eq!(
        reach(&lan, 9090, probe::ANSWER),
        Reach::Open,
        "flushed: open"
    );
    wait_rules(&lan, &daemon, "the flush repaired", |r| {
        r.contains(":INPUT DROP") && r.contains("--dport 8080 ")
    });
    assert_eq!(reach(&lan, 9090, probe::SILENCE), Reach::Filtered);
    assert_eq!(reach(&lan, 8080, probe::ANSWER), Reach::Open);
    daemon.wait_log("drift repaired:", 1);
    daemon.wait_log("but the state folder could not record it", 1);
    assert!(
        daemon.log().contains("read-only file system"),
        "{}",
        daemon.log()
    );

    // An edit while the folder is read-only cannot be recorded: the rules
    // from before stay, and it lands once the folder takes it.
    std::fs::write(&script, format!("{SCRIPT}allow_tcp(9090);\n")).unwrap();
    daemon.wait_log("not applied: cannot write", 1);
    assert_eq!(reach(&lan, 9090, probe::SILENCE), Reach::Filtered);
    daemon.read_only(false);
    wait_rules(&lan, &daemon, "the edit once writable", |r| {
        r.contains("--dport 9090 ")
    });
    daemon.wait_log("applied after", 1);
    assert_eq!(reach(&lan, 9090, probe::ANSWER), Reach::Open);
    assert!(daemon.alive(), "{}", daemon.log());
}

/// A boot with the state folder read-only and a script edited since the
/// last good ruleset: the kernel gets that ruleset at once (written without
/// records), a flush is repaired, the retries that find it in place say
/// nothing, and the script's rules go in once the folder takes them.
#[test]
fn a_boot_on_a_read_only_state_folder_gets_the_last_good_rules_then_the_script() {
    if !kernel_available() {
        return;
    }
    let mut lan = Lan::new("nft");
    let _web = lan.listen_tcp(8080);
    let _other = lan.listen_tcp(9090);
    lan.apply(SCRIPT).expect(0);
    // A boot, as far as the kernel goes: nothing of fwscript's is in.
    lan.server.sh("nft flush ruleset");
    let script = lan.dir().join("fw.rhai");
    std::fs::write(&script, format!("{SCRIPT}allow_tcp(9090);\n")).unwrap();
    let mut daemon = Daemon::start(&lan, &script, 1, true);
    wait_rules(&lan, &daemon, "the last good ruleset", |r| {
        r.contains(":INPUT DROP") && r.contains("--dport 8080 ")
    });
    daemon.wait_log("the last good ruleset (`", 1);
    let log = daemon.log();
    assert!(log.contains("is applied instead of the script"), "{log}");
    assert!(!log.contains("could not be applied"), "{log}");
    assert!(
        log.contains("but the state folder could not record it"),
        "{log}"
    );
    assert_eq!(reach(&lan, 9090, probe::SILENCE), Reach::Filtered);

    // Flushed again while the folder stays read-only: put back.
    lan.server.sh("nft flush ruleset");
    wait_rules(&lan, &daemon, "the flush repaired", |r| {
        r.contains(":INPUT DROP") && r.contains("--dport 8080 ")
    });
    assert_eq!(reach(&lan, 9090, probe::SILENCE), Reach::Filtered);
    // The retries every second found the fallback in place: not a line
    // each; the script's failure was said once.
    let log = daemon.log();
    assert!(!log.contains("no changes"), "{log}");
    assert_eq!(log.matches("not applied: cannot write").count(), 1, "{log}");

    daemon.read_only(false);
    wait_rules(&lan, &daemon, "the script once writable", |r| {
        r.contains("--dport 9090 ")
    });
    daemon.wait_log("applied after", 1);
    assert_eq!(reach(&lan, 9090, probe::ANSWER), Reach::Open);
    assert!(daemon.alive(), "{}", daemon.log());
}

/// An admin's `iptables -I INPUT 1 -j ACCEPT` in front of fwscript's hook
/// opens the host without touching a rule of fwscript's, so the drift check
/// finds nothing to repair: it must still say so, once while it stands,
/// and again if it comes back. A fail2ban-like ban in front of it is no warning.
#[test]
fn a_foreign_rule_in_front_of_the_hook_is_logged_by_the_drift_check() {
    if !kernel_available() {
        return;
    }
    let netns = crate::common::netns::Netns::new("nft");
    let dir = tempfile::tempdir().unwrap();
    let watch = crate::common::watch::Watch::start(&netns, dir.path(), SCRIPT, 1);
    let warning = "INPUT rule 1 is not fwscript's and comes before its accepting hook";
    netns.sh("$IPT -I INPUT 1 -j ACCEPT");
    watch.wait_log(warning, 1);
    // Standing, it is said once, not at every drift check, also when a
    // fail2ban-like jump above it moves it down (a ban: no warning).
    netns.sh(
        "$IPT -N f2b-sshd && $IPT -A f2b-sshd -s 198.51.100.1 -j REJECT && \
         $IPT -A f2b-sshd -j RETURN && $IPT -I INPUT 1 -p tcp --dport 22 -j f2b-sshd",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let log = watch.log();
    assert_eq!(log.matches("`-j ACCEPT`").count(), 1, "{log}");
    assert!(!log.contains("f2b-sshd"), "{log}");
    // Gone, then back: said again.
    netns.sh("$IPT -D INPUT -j ACCEPT");
    std::thread::sleep(Duration::from_millis(1500));
    netns.sh("$IPT -I INPUT 1 -j ACCEPT");
    watch.wait_log("`-j ACCEPT`", 2);
    // The neighbours' rules stay: fwscript does not remove them.
    let rules = netns.save("ipv4", false);
    assert!(rules.contains("-A INPUT -j ACCEPT"), "{rules}");
    assert!(rules.contains("-j f2b-sshd"), "{rules}");
}

/// Rules the daemon's reads do not show but the kernel runs (here
/// iptables-legacy's on an nf_tables host) are logged once while they
/// stand, and again when they come back.
#[test]
fn legacy_rules_beside_the_daemons_are_logged_once_while_they_stand() {
    if !kernel_available() {
        return;
    }
    let netns = crate::common::netns::Netns::new("nft");
    let dir = tempfile::tempdir().unwrap();
    let watch = crate::common::watch::Watch::start(&netns, dir.path(), SCRIPT, 1);
    let warning = "iptables-legacy holds 1 rule beside fwscript's nf_tables rules";
    netns.sh("iptables-legacy -A INPUT -p tcp --dport 8080 -j DROP");
    watch.wait_log(warning, 1);
    // Two drift checks later, still said once.
    std::thread::sleep(Duration::from_millis(2500));
    let log = watch.log();
    assert_eq!(log.matches(warning).count(), 1, "{log}");
    netns.sh("iptables-legacy -F INPUT");
    std::thread::sleep(Duration::from_millis(1500));
    netns.sh("iptables-legacy -A INPUT -p tcp --dport 8080 -j DROP");
    watch.wait_log(warning, 2);
    // fwscript never touches them.
    let legacy = netns.sh("iptables-legacy -S INPUT");
    assert!(legacy.contains("--dport 8080 -j DROP"), "{legacy}");
}

/// A second daemon on the same state folder undoes the first's writes at
/// every drift check, and the first undoes its: it says so at start
/// (refusing could keep a boot's firewall from starting on a stale record).
#[test]
fn a_second_daemon_on_the_same_state_folder_says_so() {
    if !kernel_available() {
        return;
    }
    let netns = crate::common::netns::Netns::new("nft");
    let dir = tempfile::tempdir().unwrap();
    let first = crate::common::watch::Watch::start(&netns, dir.path(), SCRIPT, 60);
    let other = tempfile::tempdir().unwrap();
    let second = crate::common::watch::Watch::start_on(
        &netns,
        other.path(),
        &dir.path().join("state"),
        "allow_tcp(9090);\nssh_from(\"203.0.113.7\");\n",
        60,
        &[],
    );
    let said = second.log();
    assert!(
        said.contains(&format!(
            "another `fwscript watch` (pid {}) keeps `",
            first.pid()
        )) && said.contains("two daemons on one folder undo each other's writes"),
        "{said}"
    );
}
