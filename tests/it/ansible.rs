//! The Ansible module (contrib/ansible/fwscript.py) run by real
//! ansible-core (from PyPI, in the venv `.ci/install` makes under
//! target/ansible-venv) on three throwaway network namespaces as hosts,
//! each over a local connection: `--check` reports the pending change and
//! writes nothing, `--diff` shows the plan, the first run changes, the
//! second does not, an edit of an address list alone (its ipset) is a
//! change in the message and the diff, a broken script fails with the
//! script's error and changes nothing, and `state: reset` removes it all.
//! The README's example play runs as it stands there, twice: the second
//! run, its confirm included, changes nothing; `state: confirmed` after
//! the timer rolled back fails. Needs root; skips loudly without it or
//! without the venv (fails under CI).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::netns::{kernel_available, Netns, Run};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// ansible-playbook from the venv `.ci/install` makes.
fn ansible_playbook() -> Option<PathBuf> {
    let path = repo().join("target/ansible-venv/bin/ansible-playbook");
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{} is missing and CI=true forbids skipping; `bash .ci/install` makes it",
            path.display()
        );
    }
    eprintln!(
        "SKIP: the Ansible test needs `bash .ci/install` (ansible-core in target/ansible-venv)"
    );
    None
}

/// One managed host: a namespace with its own scripts and state folder.
struct Host {
    netns: Netns,
    dir: tempfile::TempDir,
    playbook: PathBuf,
}

/// What one run of the play said about its one task.
struct Played {
    run: Run,
    task: Value,
}

impl Host {
    fn new(playbook: PathBuf, port: u16) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fw.rhai"),
            format!("allow_tcp({port});\nssh_from(\"203.0.113.7\");\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("broken.rhai"),
            "allow_tcp(22);\nallow_tcp(70000);\n",
        )
        .unwrap();
        Host {
            netns: Netns::new("nft"),
            dir,
            playbook,
        }
    }

    /// ansible-playbook on `play`, in the namespace, as localhost.
    fn playbook(&self, play: &Path) -> std::process::Command {
        let venv = repo().join("target/ansible-venv/bin");
        let home = self.dir.path().join("ansible");
        let mut command = self.netns.command(&self.playbook);
        command
            .current_dir(self.dir.path())
            .env("ANSIBLE_LIBRARY", repo().join("contrib/ansible"))
            .env("ANSIBLE_HOME", &home)
            .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
            .env("ANSIBLE_REMOTE_TEMP", home.join("tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_PYTHON_INTERPRETER", venv.join("python"))
            .args(["-i", "localhost,", "-c", "local"])
            .arg(play);
        command
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `fwscript status --json` of this host's state folder.
    fn status(&self) -> Value {
        let run = self
            .netns
            .fwscript(&self.state_dir(), &["status", "--json"]);
        serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("{err}: {run:#?}"))
    }

    fn play(&self, vars: &[(&str, &str)], flags: &[&str]) -> Played {
        let mut command = self.playbook(&repo().join("tests/fixtures/ansible/firewall.yml"));
        command.args(flags);
        let state_dir = self.state_dir();
        let result = self.dir.path().join("result.json");
        let _ = std::fs::remove_file(&result);
        let fwscript = env!("CARGO_BIN_EXE_fwscript");
        let mut all: Vec<(String, String)> = vec![
            ("state_dir".into(), state_dir.display().to_string()),
            ("fwscript".into(), fwscript.into()),
            ("result".into(), result.display().to_string()),
        ];
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        for (key, value) in all {
            command.args(["-e", &format!("{key}={value}")]);
        }
        let run = Run::from(command.output().expect("ansible-playbook runs"));
        let text = std::fs::read_to_string(&result)
            .unwrap_or_else(|err| panic!("no result ({err}): {run:#?}"));
        let task: Value = serde_json::from_str(&text).unwrap();
        Played { run, task }
    }

    fn script(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn one_host(host: &Host, port: u16) {
    let script = host.script("fw.rhai");
    let before = host.netns.saves();

    // Check mode: the change is reported, nothing is written.
    let check = host.play(&[("script", &script)], &["--check", "--diff"]);
    assert_eq!(check.run.code, 0, "{:#?}", check.run);
    assert_eq!(check.task["changed"], true, "{:#}", check.task);
    assert_eq!(check.task["in_sync"], false);
    let diff = check.task["diff"]["prepared"].as_str().unwrap_or_default();
    assert!(
        diff.contains(&format!(
            "+ ipv4 filter FWS-INPUT-ALLOW 1: -p tcp -m tcp --dport {port} "
        )) && diff.contains("fw.rhai:1:1]"),
        "the plan as the diff: {diff}"
    );
    assert!(
        check.run.stdout.contains("changed: [localhost]"),
        "{:#?}",
        check.run
    );
    assert_eq!(host.netns.saves(), before, "check mode writes nothing");

    // The first run changes, the second does not.
    let first = host.play(&[("script", &script)], &[]);
    assert_eq!(first.run.code, 0, "{:#?}", first.run);
    assert_eq!(first.task["changed"], true, "{:#}", first.task);
    let applied = host.netns.saves();
    assert!(
        applied[0].contains(&format!("--dport {port} ")),
        "{}",
        applied[0]
    );
    let second = host.play(&[("script", &script)], &[]);
    assert_eq!(second.task["changed"], false, "{:#}", second.task);
    assert_eq!(second.task["msg"], "in sync: no changes");
    let recheck = host.play(&[("script", &script)], &["--check"]);
    assert_eq!(recheck.task["changed"], false, "{:#}", recheck.task);

    // A broken script fails with its error, and nothing changes.
    let broken = host.play(&[("script", &host.script("broken.rhai"))], &[]);
    assert_eq!(broken.run.code, 2, "a failed host: {:#?}", broken.run);
    assert_eq!(broken.task["failed"], true, "{:#}", broken.task);
    assert_eq!(broken.task["changed"], false);
    let msg = broken.task["msg"].as_str().unwrap();
    assert!(
        msg.contains("broken.rhai:2:") && msg.contains("port 70000 is out of range 1..65535"),
        "{msg}"
    );
    assert!(msg.ends_with("nothing was changed"), "{msg}");
    assert_eq!(
        host.netns.saves(),
        applied,
        "the failed run changed nothing"
    );

    // An address list edited alone: no rule changes, one set edit, which
    // the message and the diff say (it once said "in sync: no changes").
    let sets = host.script("sets.rhai");
    std::fs::write(&sets, blocklist(port, "198.51.100.3")).unwrap();
    let first = host.play(&[("script", &sets)], &[]);
    assert_eq!(first.task["changed"], true, "{:#}", first.task);
    std::fs::write(&sets, blocklist(port, "198.51.100.33")).unwrap();
    let check = host.play(&[("script", &sets)], &["--check", "--diff"]);
    assert_eq!(check.task["changed"], true, "{:#}", check.task);
    assert_eq!(
        check.task["msg"], "would change the firewall: 1 change (1 set edit)",
        "{:#}",
        check.task
    );
    let changes = check.task["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{:#}", check.task);
    assert_eq!(changes[0]["action"], "update_set", "{:#}", check.task);
    assert_eq!(check.task["counts"]["update_set"], 1, "{:#}", check.task);
    let diff = check.task["diff"]["prepared"].as_str().unwrap_or_default();
    assert!(
        diff.contains("~ ipv4 ipset fws-")
            && diff.contains(": +1 -1 entries  [")
            && diff.contains("sets.rhai:3:1]")
            && diff.contains("    - 198.51.100.3\n")
            && diff.contains("    + 198.51.100.33/32\n"),
        "the set edit as the diff: {diff}"
    );
    let edited = host.play(&[("script", &sets)], &[]);
    assert_eq!(edited.task["changed"], true, "{:#}", edited.task);
    assert_eq!(
        edited.task["msg"], "changed the firewall: 1 change (1 set edit)",
        "{:#}",
        edited.task
    );
    assert_eq!(edited.task["sets"][0]["action"], "update_set");
    let again = host.play(&[("script", &sets)], &[]);
    assert_eq!(again.task["changed"], false, "{:#}", again.task);
    assert_eq!(again.task["msg"], "in sync: no changes");
    let applied = host.netns.saves();

    // Reset: checked, done, and done again.
    let check = host.play(&[("fw_state", "reset")], &["--check"]);
    assert_eq!(check.task["changed"], true, "{:#}", check.task);
    assert_eq!(host.netns.saves(), applied);
    let reset = host.play(&[("fw_state", "reset")], &[]);
    assert_eq!(reset.task["changed"], true, "{:#}", reset.task);
    assert!(!host.netns.saves()[0].contains("FWS-"));
    let again = host.play(&[("fw_state", "reset")], &[]);
    assert_eq!(again.task["changed"], false, "{:#}", again.task);
}

/// The script of `port` with a literal list long enough to be an ipset,
/// `third` its third address.
fn blocklist(port: u16, third: &str) -> String {
    let hosts: Vec<String> = (1..=10)
        .map(|n| match n {
            3 => format!("\"{third}\""),
            n => format!("\"198.51.100.{n}\""),
        })
        .collect();
    format!(
        "allow_tcp({port});\nssh_from(\"203.0.113.7\");\nblock([{}]);\n",
        hosts.join(", ")
    )
}

/// The tasks of the README's Ansible example, as the README has them.
fn readme_example() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("<!-- ansible example -->")
        .expect("the README's Ansible example");
    let end = readme[start..]
        .find("<!-- end of ansible example -->")
        .expect("its end")
        + start;
    let block = &readme[start..end];
    let body = block
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(body, _)| body)
        .expect("a yaml block between the markers");
    body.to_string()
}

/// `ok=2 changed=0 … failed=0` of the play recap, as (ok, changed, failed).
fn recap(run: &Run) -> (u32, u32, u32) {
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("localhost") && l.contains(" ok="))
        .unwrap_or_else(|| panic!("no recap: {run:#?}"));
    let field = |name: &str| -> u32 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (field("ok"), field("changed"), field("failed"))
}

#[test]
fn the_readme_example_runs_twice_and_the_second_run_changes_nothing() {
    if !kernel_available() {
        return;
    }
    let Some(playbook) = ansible_playbook() else {
        return;
    };
    let host = Host::new(playbook, 8443);
    // The tasks word for word; only the script's path is this host's, and
    // the state folder and binary come from the play's module defaults.
    let tasks = readme_example();
    assert_eq!(
        tasks.matches("/etc/fwscript/firewall.rhai").count(),
        1,
        "{tasks}"
    );
    let tasks = tasks.replace("/etc/fwscript/firewall.rhai", &host.script("fw.rhai"));
    let indented: String = tasks.lines().map(|l| format!("    {l}\n")).collect();
    let play = format!(
        "- name: the README's example\n  hosts: all\n  gather_facts: false\n  \
         module_defaults:\n    fwscript:\n      state_dir: {}\n      executable: {}\n  \
         tasks:\n{indented}",
        host.state_dir().display(),
        env!("CARGO_BIN_EXE_fwscript"),
    );
    let path = host.dir.path().join("readme.yml");
    std::fs::write(&path, play).unwrap();

    let first = Run::from(host.playbook(&path).output().unwrap());
    assert_eq!(first.code, 0, "{first:#?}");
    assert_eq!(recap(&first), (2, 2, 0), "both tasks change: {first:#?}");
    let applied = host.netns.saves();
    assert!(applied[0].contains("--dport 8443 "), "{}", applied[0]);
    let status = host.status();
    assert_eq!(
        status["pending_confirm"],
        Value::Null,
        "confirmed: {status:#}"
    );
    assert_eq!(status["kernel"]["in_sync"], true, "{status:#}");

    let second = Run::from(host.playbook(&path).output().unwrap());
    assert_eq!(
        second.code, 0,
        "the confirm of no change is no failure: {second:#?}"
    );
    assert_eq!(recap(&second), (2, 0, 0), "nothing changes: {second:#?}");
    assert!(
        !second.stdout.contains("changed: [localhost]"),
        "{second:#?}"
    );
    assert_eq!(host.netns.saves(), applied);
    assert_eq!(host.status()["pending_confirm"], Value::Null);
}

#[test]
fn confirmed_keeps_a_waiting_apply_and_fails_after_a_rollback() {
    if !kernel_available() {
        return;
    }
    let Some(playbook) = ansible_playbook() else {
        return;
    };
    let host = Host::new(playbook, 8080);
    let state = host.state_dir();
    let confirmed = [("fw_state", "confirmed")];

    // Nothing applied yet: nothing to confirm, and nothing is pretended.
    let none = host.play(&confirmed, &[]);
    assert_eq!(none.task["failed"], true, "{:#}", none.task);
    let msg = none.task["msg"].as_str().unwrap();
    assert!(
        msg.contains("there is nothing to confirm: nothing was applied"),
        "{msg}"
    );

    // A waiting confirm: check mode says it would keep it and keeps
    // nothing; the real run keeps it; the next run has nothing to do.
    host.netns
        .fwscript(
            &state,
            &["apply", "--confirm", "60", &host.script("fw.rhai")],
        )
        .expect(0);
    let check = host.play(&confirmed, &["--check"]);
    assert_eq!(check.task["changed"], true, "{:#}", check.task);
    assert!(
        host.status()["pending_confirm"].is_object(),
        "still waiting"
    );
    let kept = host.play(&confirmed, &[]);
    assert_eq!(kept.task["changed"], true, "{:#}", kept.task);
    assert_eq!(kept.task["msg"], "confirmed: the rules applied stay");
    assert_eq!(host.status()["pending_confirm"], Value::Null);
    let again = host.play(&confirmed, &[]);
    assert_eq!(again.run.code, 0, "{:#?}", again.run);
    assert_eq!(again.task["changed"], false, "{:#}", again.task);
    assert!(
        again.task["msg"]
            .as_str()
            .unwrap()
            .starts_with("nothing to confirm: no confirm is waiting"),
        "{:#}",
        again.task
    );

    // An apply whose timer ran out was rolled back: confirming it now
    // must fail, not report the rules from before as kept.
    std::fs::write(host.script("late.rhai"), "allow_tcp(9999);\n").unwrap();
    host.netns
        .fwscript(
            &state,
            &["apply", "--confirm", "1", &host.script("late.rhai")],
        )
        .expect(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while host.status()["applied"]["command"] != "confirm-timer" {
        assert!(
            std::time::Instant::now() < deadline,
            "the timer never rolled back: {:#}",
            host.status()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let before = host.netns.saves();
    assert!(!before[0].contains("--dport 9999 "), "rolled back");
    let late = host.play(&confirmed, &[]);
    assert_eq!(late.run.code, 2, "{:#?}", late.run);
    assert_eq!(late.task["failed"], true, "{:#}", late.task);
    assert_eq!(late.task["changed"], false);
    let msg = late.task["msg"].as_str().unwrap();
    assert!(
        msg.contains("not confirmed in time") && msg.ends_with("nothing was changed"),
        "{msg}"
    );
    assert_eq!(host.netns.saves(), before);
}

#[test]
fn the_module_runs_a_play_over_three_hosts() {
    if !kernel_available() {
        return;
    }
    let Some(playbook) = ansible_playbook() else {
        return;
    };
    let ports = [80, 443, 8080];
    let hosts: Vec<(Host, u16)> = ports
        .iter()
        .map(|&port| (Host::new(playbook.clone(), port), port))
        .collect();
    std::thread::scope(|scope| {
        for (host, port) in &hosts {
            scope.spawn(move || one_host(host, *port));
        }
    });
}
