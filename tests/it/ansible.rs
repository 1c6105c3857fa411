//! The Ansible module (contrib/ansible/fwscript.py) run by real
//! ansible-core (from PyPI, in the venv `.ci/install` makes under
//! target/ansible-venv) on three throwaway network namespaces as hosts,
//! each over a local connection: `--check` reports the pending change and
//! writes nothing, `--diff` shows the plan, the first run changes, the
//! second does not, a broken script fails with the script's error and
//! changes nothing, and `state: reset` removes it all. Needs root; skips
//! loudly without it or without the venv (fails under CI).

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

    fn play(&self, vars: &[(&str, &str)], flags: &[&str]) -> Played {
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
            .arg(repo().join("tests/fixtures/ansible/firewall.yml"))
            .args(flags);
        let state_dir = self.dir.path().join("state");
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
