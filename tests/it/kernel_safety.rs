//! Safety against real kernels, in throwaway network namespaces: the
//! lockout guard, confirm-or-roll-back, and rollback. Needs root; skips
//! loudly without it (fails under CI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::netns::{kernel_available, Netns, Run, FLAVORS};

/// The rules before: port 80 and SSH from the office.
const BEFORE: &str = "allow_tcp(80);\nssh_from([\"203.0.113.7\", \"2001:db8::7\"]);\n";
/// The change under test: adds 443.
const AFTER: &str = "allow_tcp([80, 443]);\nssh_from([\"203.0.113.7\", \"2001:db8::7\"]);\n";

struct Host {
    netns: Netns,
    dir: tempfile::TempDir,
}

impl Host {
    fn new(flavor: &'static str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("before.rhai"), BEFORE).unwrap();
        std::fs::write(dir.path().join("after.rhai"), AFTER).unwrap();
        Host {
            netns: Netns::new(flavor),
            dir,
        }
    }

    fn script(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn run(&self, args: &[&str]) -> Run {
        self.netns.fwscript(&self.state(), args)
    }

    fn run_over_ssh(&self, ssh_connection: &str, args: &[&str]) -> Run {
        let output = self
            .netns
            .command(env!("CARGO_BIN_EXE_fwscript"))
            .arg("--state-dir")
            .arg(self.state())
            .args(args)
            .env("SSH_CONNECTION", ssh_connection)
            .output()
            .expect("fwscript runs");
        Run::from(output)
    }

    fn apply(&self, name: &str) -> Run {
        self.run(&["apply", &self.script(name)]).expect(0)
    }

    fn pending(&self) -> Option<String> {
        std::fs::read_to_string(self.state().join("pending-confirm.json")).ok()
    }
}

/// Polls `done` until it holds or the deadline passes.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn timer_running(token: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", &format!("confirm-timer {token}")])
        .status()
        .is_ok_and(|s| s.success())
}

fn token_of(pending: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(pending).unwrap();
    value["token"].as_str().unwrap().to_string()
}

#[test]
fn the_lockout_guard_refuses_and_changes_nothing() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let host = Host::new(flavor);
        host.apply("before.rhai");
        let before = host.netns.saves();
        // A client the new rules do not let in, over SSH to port 22.
        let run = host
            .run_over_ssh(
                "198.51.100.1 50000 192.0.2.1 22",
                &["apply", &host.script("after.rhai")],
            )
            .expect(1);
        assert!(
            run.stderr.contains("this SSH session would be cut off"),
            "{run:#?}"
        );
        assert!(run.stderr.contains("198.51.100.1 to port 22"), "{run:#?}");
        assert!(
            run.stderr.contains("policy DROP of INPUT"),
            "names what drops it: {run:#?}"
        );
        assert_eq!(
            host.netns.saves(),
            before,
            "{flavor}: a refused apply changed the kernel"
        );

        // From the office, in either family, the same apply goes through.
        host.run_over_ssh(
            "203.0.113.7 50000 192.0.2.1 22",
            &["apply", "--dry-run", &host.script("after.rhai")],
        )
        .expect(0);
        host.run_over_ssh(
            "2001:db8::7 50000 2001:db8::1 22",
            &["apply", &host.script("after.rhai")],
        )
        .expect(0);
        assert_ne!(
            host.netns.saves(),
            before,
            "{flavor}: the allowed apply wrote nothing"
        );
    }
}

#[test]
fn force_overrides_the_lockout_guard() {
    if !kernel_available() {
        return;
    }
    let host = Host::new("nft");
    host.apply("before.rhai");
    let run = host.run_over_ssh(
        "198.51.100.1 50000 192.0.2.1 2222",
        &["apply", "--force", &host.script("after.rhai")],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(host.netns.save("ipv4", false).contains("--dport 443"));
}

#[test]
fn an_unconfirmed_apply_rolls_back_by_itself() {
    if !kernel_available() {
        return;
    }
    let host = Host::new("nft");
    host.apply("before.rhai");
    let before = host.netns.saves();

    let run = host
        .run(&["apply", "--confirm", "3", &host.script("after.rhai")])
        .expect(0);
    assert!(
        run.stderr.contains("run `fwscript confirm` within 3 s"),
        "{run:#?}"
    );
    assert!(
        host.netns.save("ipv4", false).contains("--dport 443"),
        "the change is applied at once"
    );
    // No second apply while one waits: it would replace the snapshot.
    host.run(&["apply", &host.script("before.rhai")]).expect(1);

    wait_for("the timer to roll back", Duration::from_secs(15), || {
        host.pending().is_none()
    });
    assert_eq!(
        host.netns.saves(),
        before,
        "the rules from before the apply are back"
    );

    // The plan nobody confirmed is not applied again unattended…
    let run = host.run(&["apply", &host.script("after.rhai")]).expect(1);
    assert!(run.stderr.contains("never confirmed"), "{run:#?}");
    // …but it is with --force.
    host.run(&["apply", "--force", &host.script("after.rhai")])
        .expect(0);
}

#[test]
fn a_confirmed_apply_stays_and_its_timer_ends() {
    if !kernel_available() {
        return;
    }
    let host = Host::new("nft");
    host.apply("before.rhai");
    host.run(&["apply", "--confirm", "60", &host.script("after.rhai")])
        .expect(0);
    let token = token_of(&host.pending().expect("a pending confirm"));
    assert!(timer_running(&token), "the timer runs detached");
    let after = host.netns.saves();

    let run = host.run(&["confirm"]).expect(0);
    assert!(run.stdout.contains("confirmed"), "{run:#?}");
    assert!(host.pending().is_none());
    wait_for("the timer to end", Duration::from_secs(10), || {
        !timer_running(&token)
    });
    assert_eq!(host.netns.saves(), after, "confirmed rules stay");
    host.run(&["confirm"]).expect(1);
}

#[test]
fn an_expired_confirm_whose_timer_died_rolls_back_on_the_next_run() {
    if !kernel_available() {
        return;
    }
    let host = Host::new("nft");
    host.apply("before.rhai");
    let before = host.netns.saves();
    host.run(&["apply", "--confirm", "1", &host.script("after.rhai")])
        .expect(0);
    let token = token_of(&host.pending().expect("a pending confirm"));
    // A crash: the timer dies before its deadline.
    let _ = Command::new("pkill")
        .args(["-KILL", "-f", &format!("confirm-timer {token}")])
        .status();
    wait_for("the timer to die", Duration::from_secs(10), || {
        !timer_running(&token)
    });
    assert!(
        host.pending().is_some(),
        "the deadline stays in the state folder"
    );
    let deadline = Instant::now() + Duration::from_millis(1100);
    wait_for("the deadline to pass", Duration::from_secs(5), || {
        Instant::now() > deadline
    });

    // Commands that only read say so, and change nothing: the kernel is
    // not settled, whatever the diff says.
    let after = host.netns.saves();
    let told = "was not confirmed by its deadline";
    // Not "in sync" for a kernel about to change: plan says so and exits 2.
    let plan = host.run(&["plan", &host.script("after.rhai")]).expect(2);
    assert!(plan.stderr.contains(told), "{plan:#?}");
    assert!(
        plan.stdout
            .ends_with("but an unconfirmed apply expired: the next `fwscript apply` first puts the rules from before back\n"),
        "{plan:#?}"
    );
    assert!(plan
        .stderr
        .contains("`fwscript apply`, `confirm` or `rollback`"));
    let dry = host
        .run(&["apply", "--dry-run", &host.script("after.rhai")])
        .expect(0);
    assert!(dry.stderr.contains(told), "{dry:#?}");
    assert!(
        dry.stdout
            .contains("a real apply first puts the rules from before back"),
        "{dry:#?}"
    );
    let json = host
        .run(&["plan", "--json", &host.script("after.rhai")])
        .expect(2);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["warnings"][0]["kind"], "confirm_expired", "{report}");
    let status = host.run(&["status"]).expect(0);
    assert!(status.stdout.contains(told), "{status:#?}");
    assert!(!status.stdout.contains("s left"), "{status:#?}");
    let status = host.run(&["status", "--json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["pending_confirm"]["expired"], true, "{status}");
    assert_eq!(host.netns.saves(), after);
    assert!(host.pending().is_some());

    let run = host.run(&["rollback"]).expect(0);
    assert!(
        run.stdout.contains("an unconfirmed apply had expired"),
        "{run:#?}"
    );
    assert_eq!(host.netns.saves(), before);
    assert!(host.pending().is_none());
}

#[test]
fn rollback_puts_back_the_state_before_the_last_apply() {
    if !kernel_available() {
        return;
    }
    for flavor in FLAVORS {
        let host = Host::new(flavor);
        host.run(&["rollback"]).expect(1);
        host.apply("before.rhai");
        let before = host.netns.saves();
        // Someone else's rule must survive the rollback untouched.
        host.netns.sh("$IPT -A INPUT -s 192.0.2.99 -j ACCEPT");
        host.apply("after.rhai");
        let run = host.run(&["rollback"]).expect(0);
        assert!(run.stdout.contains("applied 2 changes"), "{run:#?}");
        let now = host.netns.saves();
        assert_eq!(now[1], before[1], "{flavor}: ipv6 is back");
        assert!(
            now[0].contains("-A INPUT -s 192.0.2.99/32 -j ACCEPT"),
            "{flavor}: foreign rule kept"
        );
        assert!(
            !now[0].contains("--dport 443"),
            "{flavor}: the change is gone"
        );
        host.run(&["rollback"])
            .expect(0)
            .stdout
            .contains("no changes")
            .then_some(())
            .expect("second rollback: no changes");
    }
}

#[test]
fn state_files_are_private() {
    if !kernel_available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let host = Host::new("nft");
    host.apply("before.rhai");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&host.state()), 0o700);
    assert_eq!(mode(&host.state().join("snapshot.json")), 0o600);
    assert_eq!(mode(&host.state().join("last-good.rules")), 0o600);
    assert_eq!(mode(&host.state().join("applied.json")), 0o600);
}
