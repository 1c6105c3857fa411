//! The state folder and one writer at a time, against real kernels in
//! throwaway namespaces: two applies at once, a held lock, a full or
//! read-only state folder, a folder or files planted by another user, a
//! daemon on the same folder, and reset putting back the policies it found.
//! Each case asserts what the kernel holds and what the user was told.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::netns::{kernel_available, Netns, Run};

struct Host {
    netns: Netns,
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        Host::with("nft")
    }

    fn with(flavor: &'static str) -> Host {
        Host {
            netns: Netns::new(flavor),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn script(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn run(&self, args: &[&str]) -> Run {
        self.netns.fwscript(&self.state(), args)
    }

    fn spawn(&self, args: &[&str], vars: &[(&str, &str)]) -> Child {
        self.netns
            .command(env!("CARGO_BIN_EXE_fwscript"))
            .arg("--state-dir")
            .arg(self.state())
            .args(args)
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fwscript starts")
    }

    /// Runs `args` in a mount namespace of its own where the state folder
    /// is mounted read-only: the host's mounts never change.
    fn run_read_only(&self, args: &[&str]) -> Run {
        let state = self.state().display().to_string();
        let command = format!(
            "mount --bind {state} {state} && mount -o remount,bind,ro {state} && exec ip netns exec {} {} --state-dir {state} {}",
            self.netns.name,
            env!("CARGO_BIN_EXE_fwscript"),
            args.join(" ")
        );
        let output = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &command])
            .env("FWSCRIPT_IPTABLES", self.netns.flavor)
            .output()
            .expect("unshare runs");
        Run::from(output)
    }
}

fn input_policy(rules: &str) -> &str {
    if rules.contains(":INPUT DROP") {
        "DROP"
    } else {
        "ACCEPT"
    }
}

#[test]
fn two_applies_at_once_end_in_exactly_one_scripts_state() {
    if !kernel_available() {
        return;
    }
    for flavor in ["nft", "legacy"] {
        two_applies_at_once(flavor);
    }
}

fn two_applies_at_once(flavor: &'static str) {
    let host = Host::with(flavor);
    let a = host.script("a.rhai", "allow_tcp(1001);\nssh_from(\"203.0.113.7\");\n");
    let b = host.script(
        "b.rhai",
        "allow_tcp(2002);\npolicy(\"input\", \"accept\");\n",
    );
    for round in 0..10 {
        let first = host.spawn(&["apply", &a], &[]);
        let second = host.spawn(&["apply", &b], &[]);
        for child in [first, second] {
            let run = Run::from(child.wait_with_output().unwrap());
            assert_eq!(run.code, 0, "{flavor} round {round}: {run:#?}");
        }
        let in_sync: Vec<bool> = [&a, &b]
            .iter()
            .map(|script| host.run(&["plan", script]).code == 0)
            .collect();
        assert_eq!(
            in_sync.iter().filter(|&&s| s).count(),
            1,
            "{flavor} round {round}: the kernel must be exactly one script's: {in_sync:?}\n{}",
            host.netns.save("ipv4", false)
        );
        let rules = host.netns.save("ipv4", false);
        let winner_drops = in_sync[0];
        assert_eq!(
            input_policy(&rules),
            if winner_drops { "DROP" } else { "ACCEPT" },
            "round {round}: INPUT policy is the winner's\n{rules}"
        );
        assert!(rules.contains("--dport 1001") != rules.contains("--dport 2002"));
    }
}

#[test]
fn a_held_lock_makes_a_writer_wait_then_give_up_clearly() {
    if !kernel_available() {
        return;
    }
    let host = Host::new();
    let script = host.script("fw.rhai", "allow_tcp(80);\n");
    host.run(&["apply", &script]).expect(0);
    let before = host.netns.saves();
    std::fs::write(host.dir.path().join("fw.rhai"), "allow_tcp(81);\n").unwrap();
    // Someone holds the state folder's lock (as a second fwscript would).
    // `-o`: only flock itself holds the lock, so killing it frees it.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(host.state())
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    wait_until_locked(&host.state());
    let run = Run::from(
        host.spawn(&["apply", &script], &[("FWSCRIPT_LOCK_WAIT", "1")])
            .wait_with_output()
            .unwrap(),
    )
    .expect(1);
    assert!(
        run.stderr
            .contains("another fwscript is changing the firewall; gave up waiting after 1 s"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("FWSCRIPT_LOCK_WAIT"), "{run:#?}");
    assert_eq!(host.netns.saves(), before, "a writer that gave up wrote");
    // Every other writer waits the same way and writes nothing.
    for command in [
        vec!["reset", "--yes"],
        vec!["rollback"],
        vec!["confirm"],
        vec!["apply", "--confirm", "60", script.as_str()],
    ] {
        let run = Run::from(
            host.spawn(&command, &[("FWSCRIPT_LOCK_WAIT", "1")])
                .wait_with_output()
                .unwrap(),
        )
        .expect(1);
        assert!(
            run.stderr
                .contains("another fwscript is changing the firewall; gave up waiting after 1 s"),
            "{command:?}: {run:#?}"
        );
        assert_eq!(host.netns.saves(), before, "{command:?} wrote");
    }

    // A writer that waits long enough gets its turn.
    let waiting = host.spawn(&["apply", &script], &[("FWSCRIPT_LOCK_WAIT", "30")]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    Run::from(waiting.wait_with_output().unwrap()).expect(0);
    assert!(host.netns.save("ipv4", false).contains("--dport 81"));
}

/// Polls until `flock -n` on the folder fails: someone holds it.
fn wait_until_locked(folder: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Command::new("flock")
        .args(["-n"])
        .arg(folder)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was not taken"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_full_state_folder_fails_before_the_kernel_is_touched() {
    if !kernel_available() {
        return;
    }
    let host = Host::new();
    std::fs::create_dir(host.state()).unwrap();
    std::fs::set_permissions(host.state(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let big: String = (1..=2000).map(|p| format!("allow_tcp({p});\n")).collect();
    let script = host.script("fw.rhai", &big);
    // Room for a snapshot, not for the plan's records; a mount namespace of
    // its own keeps the mount off the host. What the folder holds after is
    // listed before the mount goes.
    let state = host.state().display().to_string();
    let command = format!(
        "mount -t tmpfs -o size=8k,mode=0700 tmpfs {state} && ip netns exec {} {} --state-dir {state} apply {script}; code=$?; echo \"left: $(ls -A {state})\" >&2; exit $code",
        host.netns.name,
        env!("CARGO_BIN_EXE_fwscript"),
    );
    let run = Run::from(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &command])
            .env("FWSCRIPT_IPTABLES", "nft")
            .output()
            .unwrap(),
    )
    .expect(1);
    assert!(
        run.stderr
            .contains("no space left on device; nothing was changed"),
        "{run:#?}"
    );
    assert!(
        !host.netns.save("ipv4", false).contains("FWS-"),
        "the kernel was touched"
    );
    // The files staged beside the one that did not fit are gone, and no
    // snapshot took the place of the one from before.
    let left = run.stderr.lines().find(|l| l.starts_with("left:")).unwrap();
    assert!(!left.contains('.'), "{left}");
}

#[test]
fn rollback_on_a_read_only_state_folder_rolls_back_and_says_so() {
    if !kernel_available() {
        return;
    }
    let host = Host::new();
    let before = host.script("before.rhai", "allow_tcp(80);\n");
    let after = host.script("after.rhai", "allow_tcp([80, 443]);\n");
    host.run(&["apply", &before]).expect(0);
    let wanted = host.netns.saves();
    host.run(&["apply", &after]).expect(0);

    // An apply on a read-only folder writes nothing and says so.
    let run = host.run_read_only(&["apply", &before]).expect(1);
    assert!(
        run.stderr
            .contains("read-only file system; nothing was changed"),
        "{run:#?}"
    );
    assert!(host.netns.save("ipv4", false).contains("--dport 443"));

    // A rollback puts the rules back all the same, and tells the truth.
    let run = host.run_read_only(&["rollback"]).expect(1);
    assert!(
        run.stderr
            .contains("the kernel was changed: it now holds the rules from before"),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains("but the state folder could not record it"),
        "{run:#?}"
    );
    assert_eq!(host.netns.saves(), wanted, "rolled back");
}

/// A root file system mounted read-only after a crash: at boot the host
/// must not stay open for want of a place to write the records. The
/// script's rules go in, and the command fails saying so.
#[test]
fn a_boot_on_a_read_only_state_folder_still_loads_the_script() {
    if !kernel_available() {
        return;
    }
    let host = Host::new();
    let before = host.script("before.rhai", "allow_tcp(80);\n");
    let after = host.script("after.rhai", "allow_tcp([80, 443]);\n");
    host.run(&["apply", &before]).expect(0);
    host.netns.reboot();
    assert!(!host.netns.save("ipv4", false).contains("FWS-"));

    let run = host.run_read_only(&["apply", "--boot", &after]).expect(1);
    assert!(
        run.stderr.contains(&format!(
            "the kernel was changed: it now holds the rules of `{after}`"
        )),
        "{run:#?}"
    );
    assert!(run.stderr.contains("read-only file system"), "{run:#?}");
    let rules = host.netns.save("ipv4", false);
    assert!(
        rules.contains(":INPUT DROP") && rules.contains("--dport 443 "),
        "{rules}"
    );
    // `--boot` where fwscript's rules are in (a unit restarted) is no open
    // host: a read-only folder changes nothing, as outside boot.
    let run = host.run_read_only(&["apply", "--boot", &before]).expect(1);
    assert!(
        run.stderr
            .contains("read-only file system; nothing was changed"),
        "{run:#?}"
    );
    assert_eq!(host.netns.save("ipv4", false), rules);

    // A boot with a writable folder keeps no snapshot of the open boot
    // kernel and drops the one from before the reboot: a rollback has
    // nothing to put back, rather than emptying the kernel.
    host.netns.reboot();
    host.run(&["apply", "--boot", &after]).expect(0);
    let rules = host.netns.save("ipv4", false);
    let run = host.run(&["rollback"]).expect(1);
    assert!(run.stderr.contains("nothing to roll back"), "{run:#?}");
    assert_eq!(host.netns.save("ipv4", false), rules);
}

#[test]
fn a_state_folder_another_user_controls_is_refused() {
    if !kernel_available() {
        return;
    }
    let host = Host::new();
    let script = host.script("fw.rhai", "allow_tcp(80);\n");
    host.run(&["apply", &script]).expect(0);
    let kernel = host.netns.saves();

    // The folder handed to another user: nothing in it can be believed.
    std::os::unix::fs::chown(host.state(), Some(1000), None).unwrap();
    let run = host.run(&["rollback"]).expect(1);
    assert!(
        run.stderr.contains(&format!(
            "refusing to use the state folder `{}`",
            host.state().display()
        )),
        "{run:#?}"
    );
    assert!(run.stderr.contains("belongs to user id 1000"), "{run:#?}");
    assert!(run.stderr.contains("hint: make it root's"), "{run:#?}");
    std::os::unix::fs::chown(host.state(), Some(0), None).unwrap();

    // A snapshot planted by that user is not installed by root's rollback.
    let planted = host.state().join("snapshot.json");
    let text = std::fs::read_to_string(&planted).unwrap();
    std::fs::write(&planted, text.replace("DROP", "ACCEPT")).unwrap();
    std::os::unix::fs::chown(&planted, Some(1000), None).unwrap();
    let run = host.run(&["rollback"]).expect(1);
    assert!(
        run.stderr
            .contains("snapshot.json` belongs to user id 1000"),
        "{run:#?}"
    );
    assert_eq!(host.netns.saves(), kernel, "a refused rollback wrote");
    std::fs::remove_file(&planted).unwrap();

    // A symlink planted where fwscript reads and writes: refused, and the
    // file it points at is untouched (root would have overwritten it).
    let victim = host.dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    for name in ["applied.json", "last-good.rules"] {
        let planted = host.state().join(name);
        std::fs::remove_file(&planted).unwrap();
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
    }
    let other = host.script("other.rhai", "allow_tcp(81);\n");
    let run = host.run(&["apply", &other]).expect(1);
    assert!(
        run.stderr.contains("refusing to use the state file")
            && run
                .stderr
                .contains("it is a symlink, which fwscript never writes"),
        "{run:#?}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(host.netns.saves(), kernel, "a refused apply wrote");
}

#[test]
fn apply_warns_when_a_daemon_keeps_another_script() {
    if !kernel_available() {
        return;
    }
    let host = Host::new();
    let watched = host.script("watched.rhai", "allow_tcp(80);\n");
    let other = host.script("other.rhai", "allow_tcp(81);\n");
    let mut daemon = host.spawn(&["watch", "--resync", "300", &watched], &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !host.netns.save("ipv4", false).contains("--dport 80") {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon applied nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let run = host.run(&["apply", &other]).expect(0);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        run.stderr.contains("`fwscript watch` (pid")
            && run
                .stderr
                .contains("watched.rhai` applied with this state folder")
            && run.stderr.contains("undoing this apply"),
        "{run:#?}"
    );
}

/// A reset while a daemon runs is undone at its next drift check: the
/// reset says so, and the daemon puts its rules back, saying why.
#[test]
fn reset_warns_when_a_daemon_will_put_the_rules_back() {
    if !kernel_available() {
        return;
    }
    let host = Host::new();
    let watched = host.script("watched.rhai", "allow_tcp(80);\n");
    let daemon = host.spawn(&["watch", "--resync", "1", &watched], &[]);
    // Killed if an assertion fails before it is waited on.
    struct Reaped(Option<Child>);
    impl Drop for Reaped {
        fn drop(&mut self) {
            if let Some(child) = self.0.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let mut daemon = Reaped(Some(daemon));
    let wait_for = |what: &str, check: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while !check(&host.netns.save("ipv4", false)) {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_for("the daemon applied", &|r| r.contains("--dport 80"));
    let run = host.run(&["reset", "--yes"]).expect(0);
    wait_for("the daemon put its rules back", &|r| {
        r.contains("--dport 80")
    });
    // SIGTERM: the daemon ends after the write under way, its line said.
    assert!(Command::new("kill")
        .args(["-s", "TERM", &daemon.0.as_ref().unwrap().id().to_string()])
        .status()
        .unwrap()
        .success());
    let output = daemon.0.take().unwrap().wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        run.stderr.contains("`fwscript watch` (pid") && run.stderr.contains("undoing this reset"),
        "{run:#?}"
    );
    assert!(log.contains("the kernel drifted from the script"), "{log}");
}

#[test]
fn reset_puts_back_the_policies_fwscript_found() {
    if !kernel_available() {
        return;
    }
    let host = Host::new();
    // Docker sets FORWARD to DROP itself; INPUT was left at ACCEPT.
    host.netns
        .sh("$IPT -P FORWARD DROP && $IPT -A FORWARD -j ACCEPT -s 172.17.0.0/16");
    let script = host.script("fw.rhai", "allow_tcp(80);\n");
    host.run(&["apply", &script]).expect(0);
    let applied = host.netns.save("ipv4", false);
    assert!(applied.contains(":INPUT DROP") && applied.contains(":FORWARD DROP"));

    let run = host.run(&["reset"]).expect(0);
    let reset = host.netns.save("ipv4", false);
    assert!(
        reset.contains(":INPUT ACCEPT"),
        "INPUT back to ACCEPT:\n{reset}"
    );
    assert!(
        reset.contains(":FORWARD DROP"),
        "reset must not open a Docker host's FORWARD:\n{reset}\n{run:#?}"
    );
    assert!(reset.contains("-A FORWARD -s 172.17.0.0/16 -j ACCEPT"));
    assert!(!reset.contains("FWS-"), "{reset}");

    // Applied and reset again: the same policies come back.
    host.run(&["apply", &script]).expect(0);
    host.run(&["reset"]).expect(0);
    assert_eq!(host.netns.save("ipv4", false), reset);
}
