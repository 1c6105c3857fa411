//! The watch daemon against a real kernel in a throwaway network namespace:
//! edits land (in place, renamed over, in a module), a broken edit keeps
//! the rules, drift is repaired, SIGHUP re-evaluates, SIGTERM leaves the
//! rules. Polls with deadlines; never sleeps for a fixed time.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::hostile::{self, Setup};
use crate::common::netns::{kernel_available, Netns};

const DEADLINE: Duration = Duration::from_secs(15);

struct Daemon {
    netns: Netns,
    dir: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn start(script: &str, module: &str, resync_secs: u32) -> Daemon {
        Daemon::start_with(script, module, resync_secs, &[])
    }

    /// `vars`: environment for the daemon, like `NOTIFY_SOCKET` or
    /// `SSH_CONNECTION`.
    fn start_with(script: &str, module: &str, resync_secs: u32, vars: &[(&str, String)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        std::fs::write(dir.path().join("fw.rhai"), script).unwrap();
        std::fs::write(dir.path().join("lib/web.rhai"), module).unwrap();
        let script = dir.path().join("fw.rhai");
        Daemon::spawn(dir, &script, resync_secs, vars)
    }

    /// The daemon on `script`, with its state and log in `dir`.
    fn spawn(
        dir: tempfile::TempDir,
        script: &Path,
        resync_secs: u32,
        vars: &[(&str, String)],
    ) -> Daemon {
        let netns = Netns::new("nft");
        let log = dir.path().join("daemon.log");
        let mut command = netns.command(env!("CARGO_BIN_EXE_fwscript"));
        command.envs(vars.iter().map(|(k, v)| (k, v)));
        let child = command
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["watch", "--resync", &resync_secs.to_string()])
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the daemon starts");
        let daemon = Daemon {
            netns,
            dir,
            child: Some(child),
            log,
        };
        daemon.wait_log("watching `", 1);
        daemon
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `needle` appears in the log at least `times` times.
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

    /// Waits until the IPv4 rules satisfy `check`.
    #[track_caller]
    fn wait_rules(&self, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let rules = self.netns.save("ipv4", false);
            if check(&rules) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached; rules:\n{rules}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .unwrap()
            .success());
    }

    fn wait_exit(&mut self) -> i32 {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

const SCRIPT: &str = "import \"lib/web\" as web;\nweb::open();\nssh_from(\"203.0.113.7\");\n";
const MODULE: &str = "fn open() { allow_tcp(80); }\n";

fn has_port(rules: &str, port: u16) -> bool {
    rules.contains(&format!("--dport {port} "))
}

#[test]
fn edits_land_and_a_broken_edit_keeps_the_rules() {
    if !kernel_available() {
        return;
    }
    let mut daemon = Daemon::start(SCRIPT, MODULE, 300);
    daemon.wait_rules("first apply", |r| has_port(r, 80) && has_port(r, 22));

    // Written in place.
    write(
        &daemon.path("fw.rhai"),
        &format!("{SCRIPT}allow_tcp(25);\n"),
    );
    daemon.wait_rules("in-place edit", |r| has_port(r, 25));

    // Written to a new file and renamed over the old one, as vim does.
    write(
        &daemon.path(".fw.rhai.new"),
        &format!("{SCRIPT}allow_tcp(26);\n"),
    );
    std::fs::rename(daemon.path(".fw.rhai.new"), daemon.path("fw.rhai")).unwrap();
    daemon.wait_rules("rename-over save", |r| has_port(r, 26) && !has_port(r, 25));

    // Deleted and recreated.
    std::fs::remove_file(daemon.path("fw.rhai")).unwrap();
    write(
        &daemon.path("fw.rhai"),
        &format!("{SCRIPT}allow_tcp(27);\n"),
    );
    daemon.wait_rules("delete and recreate", |r| {
        has_port(r, 27) && !has_port(r, 26)
    });

    // An imported module.
    write(
        &daemon.path("lib/web.rhai"),
        "fn open() { allow_tcp([80, 443]); }\n",
    );
    daemon.wait_rules("module edit", |r| has_port(r, 443));

    // A new import from a folder not watched so far: once the script
    // imports it, edits to it land too.
    std::fs::create_dir(daemon.path("mail")).unwrap();
    write(
        &daemon.path("mail/smtp.rhai"),
        "fn open() { allow_tcp(587); }\n",
    );
    write(
        &daemon.path("fw.rhai"),
        &format!("{SCRIPT}allow_tcp(27);\nimport \"mail/smtp\" as smtp;\nsmtp::open();\n"),
    );
    daemon.wait_rules("new import", |r| has_port(r, 587));
    write(
        &daemon.path("mail/smtp.rhai"),
        "fn open() { allow_tcp(465); }\n",
    );
    daemon.wait_rules("edit of the new module", |r| {
        has_port(r, 465) && !has_port(r, 587)
    });
    write(
        &daemon.path("fw.rhai"),
        &format!("{SCRIPT}allow_tcp(27);\n"),
    );
    daemon.wait_rules("import dropped", |r| !has_port(r, 465));

    // A broken save: logged with its place, rules kept, daemon alive.
    let before = daemon.netns.saves();
    write(
        &daemon.path("fw.rhai"),
        &format!("{SCRIPT}allow_tcp(99999);\n"),
    );
    daemon.wait_log(
        "fw.rhai:4:11: port 99999 is out of range 1..65535; keeping the last good rules",
        1,
    );
    assert_eq!(
        daemon.netns.saves(),
        before,
        "a broken script changed the kernel"
    );
    // The next good save applies.
    write(
        &daemon.path("fw.rhai"),
        &format!("{SCRIPT}allow_tcp(28);\n"),
    );
    daemon.wait_rules("good save after a broken one", |r| has_port(r, 28));

    // SIGHUP evaluates again (the script is unchanged: no changes).
    let applied = daemon.log().matches("no changes").count();
    daemon.signal("HUP");
    daemon.wait_log("SIGHUP: watching every folder anew", 1);
    daemon.wait_log("no changes", applied + 1);

    // SIGTERM: exit 0, rules stay.
    let before = daemon.netns.saves();
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), 0, "{}", daemon.log());
    assert_eq!(
        daemon.netns.saves(),
        before,
        "SIGTERM must leave the rules in place"
    );
}

#[test]
fn drift_is_repaired_within_the_resync_period() {
    if !kernel_available() {
        return;
    }
    let daemon = Daemon::start(SCRIPT, MODULE, 1);
    daemon.wait_rules("first apply", |r| has_port(r, 80));
    let wanted = daemon.netns.saves();

    // An owned rule deleted by hand, a stray rule added to an owned chain.
    daemon
        .netns
        .sh("$IPT -D FWS-INPUT-ALLOW 1 && $IPT -A FWS-INPUT-ALLOW -p tcp --dport 6666 -j ACCEPT");
    daemon.wait_rules("drift repaired", |r| r == wanted[0]);
    daemon.wait_log("drift repaired: 2 changes", 1);

    // `iptables -F INPUT`: the hook is gone.
    daemon.netns.sh("$IPT -F INPUT");
    daemon.wait_rules("hook put back", |r| r == wanted[0]);
    daemon.wait_log("INPUT: + end:", 1);
}

#[test]
fn a_state_folder_that_cannot_keep_the_forms_costs_no_rewrite_at_each_resync() {
    if !kernel_available() {
        return;
    }
    // A directory where the forms file goes: every save of the forms
    // fails. The daemon remembers what it recorded, so its resyncs do not
    // write every rule again to learn forms it already knows.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    write(&dir.path().join("fw.rhai"), SCRIPT);
    write(&dir.path().join("lib/web.rhai"), MODULE);
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::create_dir(state.join("kernel-forms.json")).unwrap();
    let script = dir.path().join("fw.rhai");
    let daemon = Daemon::spawn(dir, &script, 1, &[]);
    daemon.wait_rules("first apply", |r| has_port(r, 80));
    let wanted = daemon.netns.saves();
    // Three resyncs pass; then a real drift, repaired, shows the daemon
    // kept checking all along.
    std::thread::sleep(Duration::from_millis(3200));
    daemon.netns.sh("$IPT -D FWS-INPUT-ALLOW 1");
    daemon.wait_log("drift repaired:", 1);
    daemon.wait_rules("drift repaired", |r| r == wanted[0]);
    let log = daemon.log();
    assert_eq!(log.matches("drift repaired:").count(), 1, "{log}");
    assert!(!log.contains("rewritten:"), "{log}");
    assert!(
        log.contains("kernel-forms.json"),
        "the failed save is said: {log}"
    );
}

#[test]
fn a_first_boot_with_a_broken_script_gets_the_emergency_ruleset() {
    if !kernel_available() {
        return;
    }
    // No last good ruleset was ever kept: the host is not left open, but
    // SSH stays reachable so an admin can log in and fix the script.
    let daemon = Daemon::start("allow_tcp(0);\n", MODULE, 300);
    daemon.wait_log("script error at", 1);
    daemon.wait_rules("the emergency ruleset", |r| {
        r.contains(":INPUT DROP") && has_port(r, 22) && !has_port(r, 80)
    });
    daemon.wait_log("the emergency ruleset (the baseline and SSH on port 22", 1);
    write(&daemon.path("fw.rhai"), "allow_tcp(80);\n");
    daemon.wait_rules("first good save", |r| has_port(r, 80) && !has_port(r, 22));
}

#[test]
fn systemd_hears_ready_and_the_state() {
    if !kernel_available() {
        return;
    }
    use std::os::unix::net::UnixDatagram;
    let sockets = tempfile::tempdir().unwrap();
    let path = sockets.path().join("notify");
    let systemd = UnixDatagram::bind(&path).unwrap();
    systemd.set_read_timeout(Some(DEADLINE)).unwrap();
    let receive = || {
        let mut buffer = [0u8; 4096];
        let n = systemd.recv(&mut buffer).expect("a notification");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };

    // A script that does not evaluate: the emergency ruleset goes in, and
    // then the daemon is ready (some ruleset is in the kernel); the status
    // says why and which.
    let socket = ("NOTIFY_SOCKET", path.display().to_string());
    let daemon = Daemon::start_with("allow_tcp(0);\n", MODULE, 300, &[socket]);
    let mut heard = receive();
    while !heard.starts_with("READY=1") {
        assert!(heard.starts_with("STATUS=script error at "), "{heard}");
        heard = receive();
    }
    assert!(heard.contains("port 0 is out of range"), "{heard}");
    assert!(
        heard.ends_with("; the emergency ruleset (the baseline and SSH on port 22: no good ruleset was ever kept) is applied"),
        "{heard}"
    );

    write(&daemon.path("fw.rhai"), "allow_tcp(80);\n");
    let script = daemon.path("fw.rhai");
    assert_eq!(
        receive(),
        format!("STATUS=the rules of `{}` are applied", script.display())
    );
}

#[test]
fn started_over_ssh_the_daemon_will_not_cut_the_session_off() {
    if !kernel_available() {
        return;
    }
    let session = (
        "SSH_CONNECTION",
        "203.0.113.7 50000 192.0.2.1 22".to_string(),
    );
    let daemon = Daemon::start_with(SCRIPT, MODULE, 300, &[session]);
    daemon.wait_rules("first apply", |r| has_port(r, 22));
    let before = daemon.netns.saves();
    // The office loses SSH in this edit: refused, logged, nothing written.
    write(
        &daemon.path("fw.rhai"),
        "import \"lib/web\" as web;\nweb::open();\nssh_from(\"198.51.100.9\");\n",
    );
    daemon.wait_log("this SSH session would be cut off", 1);
    assert_eq!(daemon.netns.saves(), before);
}

#[test]
fn hostile_saves_never_end_the_daemon_and_the_rules_stay() {
    if !kernel_available() {
        return;
    }
    let mut daemon = Daemon::start(SCRIPT, MODULE, 300);
    daemon.wait_rules("first apply", |r| has_port(r, 80) && has_port(r, 22));
    let before = daemon.netns.saves();
    for case in hostile::cases() {
        // The daemon names files by the path it was given (absolute here).
        let needle = match case.message.split_once(" → ") {
            Some((start, _)) => start.rsplit_once(' ').map_or(start, |(s, _)| s),
            None => case.message,
        };
        for into_module in [false, true] {
            let seen = daemon.log().matches(needle).count();
            if into_module {
                // The same text saved into the module the script imports.
                let path = daemon.path("lib/web.rhai");
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_dir(&path);
                match &case.setup {
                    Setup::Script(text) => write(&path, text),
                    Setup::WithModules(..) => continue,
                    Setup::Fifo => {
                        assert!(Command::new("mkfifo")
                            .arg(&path)
                            .status()
                            .unwrap()
                            .success())
                    }
                    Setup::DevZero => std::os::unix::fs::symlink("/dev/zero", &path).unwrap(),
                    Setup::Folder => std::fs::create_dir(&path).unwrap(),
                }
                write(&daemon.path("fw.rhai"), SCRIPT);
            } else {
                hostile::install(daemon.dir.path(), &case);
            }
            daemon.wait_log(needle, seen + 1);
            let child = daemon.child.as_mut().unwrap();
            assert!(
                child.try_wait().unwrap().is_none(),
                "{} ({}): the daemon died:\n{}",
                case.name,
                if into_module { "module" } else { "script" },
                daemon.log()
            );
            assert_eq!(
                daemon.netns.saves(),
                before,
                "{}: the rules changed:\n{}",
                case.name,
                daemon.log()
            );
            // Back to good files, so the next case is a change again.
            let module = daemon.path("lib/web.rhai");
            let _ = std::fs::remove_file(&module);
            let _ = std::fs::remove_dir(&module);
            write(&module, MODULE);
            hostile::install(
                daemon.dir.path(),
                &hostile::Hostile {
                    name: "good",
                    setup: Setup::Script(SCRIPT.into()),
                    message: "",
                    place: None,
                },
            );
        }
    }
    let errors = daemon.log().matches("keeping the last good rules").count();
    assert!(errors >= hostile::cases().len(), "{}", daemon.log());
    // Still the same daemon, and it still applies a good edit.
    write(
        &daemon.path("fw.rhai"),
        &format!("{SCRIPT}allow_tcp(8443);\n"),
    );
    daemon.wait_rules("a good save after them all", |r| {
        has_port(r, 8443) && has_port(r, 80)
    });
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(), 0, "{}", daemon.log());
}

#[test]
fn a_deploy_that_flips_a_symlink_to_another_release_is_applied() {
    if !kernel_available() {
        return;
    }
    // Capistrano's layout: `current` leads to one release folder, and a
    // deploy points it at another with an atomic rename.
    let dir = tempfile::tempdir().unwrap();
    for (release, port) in [("rel1", 80), ("rel2", 81)] {
        std::fs::create_dir(dir.path().join(release)).unwrap();
        write(
            &dir.path().join(release).join("fw.rhai"),
            &format!("allow_tcp({port});\n"),
        );
    }
    std::os::unix::fs::symlink("rel1", dir.path().join("current")).unwrap();
    let script = dir.path().join("current/fw.rhai");
    let daemon = Daemon::spawn(dir, &script, 300, &[]);
    daemon.wait_rules("release 1", |r| has_port(r, 80));
    let flip = daemon.path("current.new");
    std::os::unix::fs::symlink("rel2", &flip).unwrap();
    std::fs::rename(&flip, daemon.path("current")).unwrap();
    daemon.wait_rules("release 2", |r| has_port(r, 81) && !has_port(r, 80));
    daemon.wait_log("the script's path leads elsewhere now", 1);
    // And the new release's folder is the one watched.
    write(&daemon.path("rel2/fw.rhai"), "allow_tcp(82);\n");
    daemon.wait_rules("an edit in release 2", |r| has_port(r, 82));
}

#[test]
fn a_flip_of_a_symlinked_module_or_list_folder_is_applied() {
    if !kernel_available() {
        return;
    }
    // The script stays; the folders it imports from are symlinks a deploy
    // flips: what they lead to now is what the kernel must hold.
    let dir = tempfile::tempdir().unwrap();
    for (folder, port, address) in [("A", 85, "198.51.100.50"), ("B", 86, "198.51.100.60")] {
        std::fs::create_dir(dir.path().join(format!("lib{folder}"))).unwrap();
        write(
            &dir.path().join(format!("lib{folder}/web.rhai")),
            &format!("fn open() {{ allow_tcp({port}); }}\n"),
        );
        std::fs::create_dir(dir.path().join(format!("lists{folder}"))).unwrap();
        write(
            &dir.path().join(format!("lists{folder}/block.txt")),
            &format!("{address}\n"),
        );
    }
    std::os::unix::fs::symlink("libA", dir.path().join("lib")).unwrap();
    std::os::unix::fs::symlink("listsA", dir.path().join("lists")).unwrap();
    write(
        &dir.path().join("fw.rhai"),
        "import \"lib/web\" as web;\nweb::open();\nblock(address_list(\"lists/block.txt\"));\n",
    );
    let script = dir.path().join("fw.rhai");
    let daemon = Daemon::spawn(dir, &script, 300, &[]);
    daemon.wait_rules("the A folders", |r| {
        has_port(r, 85) && r.contains("-s 198.51.100.50/32")
    });
    let flip = |name: &str, to: &str| {
        let temp = daemon.path(&format!("{name}.new"));
        std::os::unix::fs::symlink(to, &temp).unwrap();
        std::fs::rename(&temp, daemon.path(name)).unwrap();
    };
    flip("lib", "libB");
    daemon.wait_rules("the module of B", |r| has_port(r, 86) && !has_port(r, 85));
    flip("lists", "listsB");
    daemon.wait_rules("the list of B", |r| {
        r.contains("-s 198.51.100.60/32") && !r.contains("-s 198.51.100.50/32")
    });
    // And B's folders are the ones watched from now on.
    write(
        &daemon.path("libB/web.rhai"),
        "fn open() { allow_tcp(87); }\n",
    );
    daemon.wait_rules("an edit in B", |r| has_port(r, 87));
}

#[test]
fn quoted_user_text_forges_no_line_in_the_log_or_the_status() {
    if !kernel_available() {
        return;
    }
    let daemon = Daemon::start(SCRIPT, MODULE, 300);
    daemon.wait_rules("first apply", |r| has_port(r, 80));
    let state = daemon.path("state");
    let saves = [
        (
            "allow_tcp(\"http\\nERROR forged line\");\n",
            "unknown service `http\\nERROR forged line`",
        ),
        (
            "block(\"1.2.3.4\\x1b[2J\");\n",
            "`1.2.3.4\\u{1b}[2J` is not an IP address",
        ),
        (
            "import \"a\\x1b[2J\\nb\" as x;\n",
            "cannot import `a\\u{1b}[2J\\nb`",
        ),
    ];
    for (i, (text, said)) in saves.iter().enumerate() {
        write(&daemon.path("fw.rhai"), text);
        daemon.wait_log(said, 1);
        let status = daemon.netns.fwscript(&state, &["status"]);
        for (what, out) in [("log", daemon.log()), ("status", status.stdout.clone())] {
            assert!(
                !out.contains('\u{1b}') && !out.lines().any(|l| l.starts_with("ERROR forged")),
                "save {i}: the {what} holds a raw escape or a forged line:\n{out}"
            );
        }
        assert!(status.stdout.contains(said), "save {i}: {status:#?}");
    }
}

#[test]
fn an_address_list_edit_is_applied() {
    if !kernel_available() {
        return;
    }
    let script =
        "import \"lib/web\" as web;\nweb::open();\nblock(address_list(\"lists/block.txt\"));\n";
    // Started before the list exists: a script that never worked yet.
    let daemon = Daemon::start(script, MODULE, 300);
    std::fs::create_dir_all(daemon.path("lists")).unwrap();
    write(&daemon.path("lists/block.txt"), "198.51.100.7\n");
    write(&daemon.path("fw.rhai"), script);
    daemon.wait_rules("the list applied", |r| r.contains("-s 198.51.100.7/32"));
    write(
        &daemon.path("lists/block.txt"),
        "198.51.100.7\n# a second one\n203.0.113.9\n",
    );
    daemon.wait_rules("the list edit applied", |r| r.contains("-s 203.0.113.9/32"));
    // A bad line is an error; the rules stay.
    let before = daemon.netns.saves();
    write(
        &daemon.path("lists/block.txt"),
        "198.51.100.7\nnot-an-address\n",
    );
    daemon.wait_log(
        "block.txt:2:1: `not-an-address` is not an IP address or CIDR",
        1,
    );
    assert_eq!(daemon.netns.saves(), before);
}

#[test]
fn a_list_grown_into_a_set_is_applied_and_its_entries_kept_by_resync() {
    if !kernel_available() {
        return;
    }
    let script = "block(address_list(\"lists/block.txt\"));\nallow_tcp(80);\n";
    let daemon = Daemon::start(script, MODULE, 1);
    std::fs::create_dir_all(daemon.path("lists")).unwrap();
    write(&daemon.path("lists/block.txt"), "198.51.100.7\n");
    write(&daemon.path("fw.rhai"), script);
    daemon.wait_rules("the list applied", |r| r.contains("-s 198.51.100.7/32"));
    // Grown past eight addresses: one set, one rule.
    let list: String = (1..=40).map(|i| format!("198.51.100.{i}\n")).collect();
    write(&daemon.path("lists/block.txt"), &list);
    daemon.wait_rules("the set's rule", |r| {
        r.contains("--match-set fws-") && !r.contains("-s 198.51.100.7/32")
    });
    let name = daemon
        .netns
        .sh("ipset list -n")
        .lines()
        .find(|n| n.starts_with("fws-"))
        .expect("the set")
        .to_string();
    let entries = || {
        daemon
            .netns
            .sh(&format!("ipset list {name} | grep -c '^198'"))
    };
    assert_eq!(entries().trim(), "40");
    daemon.wait_log("ipv4 ipset create set fws-", 1);
    // An entry deleted by hand comes back at the next resync.
    daemon.netns.sh(&format!(
        "ipset del {name} 198.51.100.20 && ipset add {name} 192.0.2.99"
    ));
    daemon.wait_log("drift repaired:", 1);
    daemon.wait_log(&format!("+1 \u{2212}1 entries in set {name}"), 1);
    let deadline = Instant::now() + DEADLINE;
    while daemon
        .netns
        .sh(&format!("ipset test {name} 198.51.100.20 2>&1; true"))
        .contains("NOT")
    {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(entries().trim(), "40");
    assert!(
        daemon
            .log()
            .contains("someone changed fwscript's rules or sets"),
        "{}",
        daemon.log()
    );
}
