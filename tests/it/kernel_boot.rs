//! The boot path and the daemon under faults, in throwaway namespaces: a
//! reboot is the namespace deleted and made again with the state folder
//! kept. Whatever happens, the kernel ends up with a ruleset — the script's,
//! the last good one, or the emergency one — never nothing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::netns::{kernel_available, Netns, Run};

const DEADLINE: Duration = Duration::from_secs(20);

const GOOD: &str = "allow_tcp(80);\nssh_from(\"203.0.113.7\");\n";
const NEWER: &str = "allow_tcp([80, 8443]);\nssh_from(\"203.0.113.7\");\n";

struct Host {
    netns: Netns,
    dir: tempfile::TempDir,
}

impl Host {
    fn new(flavor: &'static str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("fw")).unwrap();
        let host = Host {
            netns: Netns::new(flavor),
            dir,
        };
        host.write("fw.rhai", GOOD);
        host
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("fw").join(name)
    }

    fn script(&self) -> String {
        self.path("fw.rhai").display().to_string()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn run(&self, args: &[&str]) -> Run {
        self.netns.fwscript(&self.state(), args)
    }

    fn rules(&self) -> String {
        self.netns.save("ipv4", false)
    }

    fn watch(&self, vars: &[(&str, String)]) -> Watch {
        let log = self.dir.path().join(format!(
            "watch-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let child = self
            .netns
            .command(env!("CARGO_BIN_EXE_fwscript"))
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .arg("--state-dir")
            .arg(self.state())
            .args(["watch", "--resync", "300", &self.script()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the daemon starts");
        Watch { child, log }
    }

    #[track_caller]
    fn wait_rules(&self, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let rules = self.rules();
            if check(&rules) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached; rules:\n{rules}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

struct Watch {
    child: Child,
    log: PathBuf,
}

impl Watch {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[track_caller]
    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in the daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Resident memory in KiB.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Shows the daemon's log when the test fails.
struct PrintOnPanic(PathBuf);

impl Drop for PrintOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            eprintln!("daemon log:\n{log}");
        }
    }
}

fn has_port(rules: &str, port: u16) -> bool {
    rules.contains(&format!("--dport {port} "))
}

#[test]
fn a_failed_first_apply_is_retried_until_the_lock_is_free() {
    if !kernel_available() {
        return;
    }
    let host = Host::new("legacy");
    // Another program holds the xtables lock (the daemon is pointed at a
    // lock file of this test's, so the host's own is never held).
    let lock = host.dir.path().join("xtables.lock");
    std::fs::write(&lock, "").unwrap();
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let vars = [
        ("XTABLES_LOCKFILE", lock.display().to_string()),
        ("FWSCRIPT_LOCK_WAIT", "1".to_string()),
    ];
    let mut watch = host.watch(&vars);
    watch.wait_log("gave up waiting for the xtables lock");
    assert!(!host.rules().contains("FWS-"));
    std::thread::sleep(Duration::from_millis(2500));
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The resync is 300 s away: the backoff brings the rules in.
    host.wait_rules("the rules after the lock is free", |r| has_port(r, 80));
    watch.wait_log("applied after");
    assert!(watch.alive());
    let log = watch.log();
    assert_eq!(
        log.matches("not applied: ").count(),
        1,
        "each failure is logged once, not at every retry:\n{log}"
    );
}

#[test]
fn an_unconfirmed_apply_lost_in_a_reboot_gives_the_last_confirmed_rules() {
    if !kernel_available() {
        return;
    }
    let host = Host::new("nft");
    host.run(&["apply", &host.script()]).expect(0);
    host.write("fw.rhai", NEWER);
    let run = host
        .run(&["apply", "--confirm", "120", &host.script()])
        .expect(0);
    assert!(run.stderr.contains("fwscript confirm"), "{run:#?}");
    assert!(has_port(&host.rules(), 8443));
    // The timer dies, then the machine reboots before the deadline.
    crate::common::confirm::kill_timer(&host.state());
    host.netns.reboot();
    assert!(!host.rules().contains("FWS-"));

    // The one-shot apply at boot: never the unconfirmed rules, never nothing.
    let run = host.run(&["apply", "--boot", &host.script()]).expect(1);
    let rules = host.rules();
    assert!(has_port(&rules, 80) && !has_port(&rules, 8443), "{rules}");
    assert!(rules.contains(":INPUT DROP"), "{rules}");
    assert!(
        run.stderr
            .contains("this exact plan was applied with --confirm and never confirmed"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("the last good ruleset (`")
            && run.stderr.contains("was applied instead"),
        "{run:#?}"
    );
    assert!(!host.state().join("pending-confirm.json").exists());

    // The same at boot with the daemon instead.
    host.netns.reboot();
    let watch = host.watch(&[]);
    host.wait_rules("the last confirmed rules", |r| has_port(r, 80));
    watch.wait_log("never confirmed");
    let rules = host.rules();
    assert!(!has_port(&rules, 8443), "{rules}");

    // A new edit is applied as usual.
    host.write(
        "fw.rhai",
        "allow_tcp([80, 9000]);\nssh_from(\"203.0.113.7\");\n",
    );
    host.wait_rules("the next edit", |r| has_port(r, 9000));
}

#[test]
fn a_script_broken_before_a_reboot_falls_back_to_the_last_good_rules() {
    if !kernel_available() {
        return;
    }
    let host = Host::new("nft");
    host.run(&["apply", &host.script()]).expect(0);
    host.write("fw.rhai", "allow_tcp(80);\nallow_tcp(99999);\n");
    host.netns.reboot();

    let run = host.run(&["apply", "--boot", &host.script()]).expect(1);
    assert!(
        run.stderr.contains("fw.rhai:2:") && run.stderr.contains("port 99999 is out of range"),
        "the script error, with its place: {run:#?}"
    );
    assert!(run.stderr.contains("the last good ruleset (`"), "{run:#?}");
    let rules = host.rules();
    assert!(has_port(&rules, 80) && has_port(&rules, 22), "{rules}");

    // Without --boot and with the last good rules in, a broken script
    // changes nothing: it is no boot.
    let before = host.netns.saves();
    let run = host.run(&["apply", &host.script()]).expect(1);
    assert!(!run.stderr.contains("instead"), "{run:#?}");
    assert_eq!(host.netns.saves(), before);

    // The daemon at boot: the last good rules, the error with its place,
    // and the script as soon as it is fixed.
    host.netns.reboot();
    let watch = host.watch(&[]);
    host.wait_rules("the last good rules", |r| {
        has_port(r, 80) && has_port(r, 22)
    });
    watch.wait_log("fw.rhai:2:");
    watch.wait_log("the last good ruleset (`");
    host.write("fw.rhai", "allow_tcp(81);\nssh_from(\"203.0.113.7\");\n");
    host.wait_rules("the fixed script", |r| has_port(r, 81) && !has_port(r, 80));
}

/// A `kill -9` (or a power cut) while fwscript writes its state leaves a
/// temporary `.NAME.PID.N` behind. Boots are alike, so the first fwscript
/// after the reboot may get that very pid: its writes must step over the
/// names taken, not fail (it did: "cannot write `…`: file exists", and the
/// boot had no rules). Leftovers of writers that are gone are swept.
#[test]
fn a_boot_with_the_pid_of_a_writer_killed_mid_write_still_loads_the_rules() {
    if !kernel_available() {
        return;
    }
    let host = Host::new("nft");
    host.run(&["apply", &host.script()]).expect(0);
    let state = host.state();
    let files: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // In a pid namespace of its own fwscript is pid 1: leftovers of an
    // earlier pid 1, for every file it writes.
    for file in [
        "snapshot.json",
        "applied.json",
        "last-good.rules",
        "lock-holder",
    ]
    .iter()
    .map(|f| f.to_string())
    .chain(files)
    {
        for n in 0..40 {
            std::fs::write(state.join(format!(".{file}.1.{n}")), "half").unwrap();
        }
    }
    // And one of a writer whose pid is no longer running, an hour old.
    let gone = state.join(".snapshot.json.4194999.0");
    std::fs::File::create(&gone)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    host.netns.reboot();

    let output = host
        .netns
        .command("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_fwscript"))
        .arg("--state-dir")
        .arg(&state)
        .args(["apply", "--boot", &host.script()])
        .output()
        .expect("unshare runs");
    let run = Run::from(output).expect(0);
    assert!(!run.stderr.contains("file exists"), "{run:#?}");
    let rules = host.rules();
    assert!(has_port(&rules, 80) && has_port(&rules, 22), "{rules}");
    assert!(!gone.exists(), "the dead writer's leftover was not swept");
    // The next write (a new plan) works as well, and the kernel follows.
    host.write("fw.rhai", NEWER);
    host.run(&["apply", &host.script()]).expect(0);
    assert!(has_port(&host.rules(), 8443));
}

#[test]
fn a_first_boot_with_a_broken_script_gets_the_emergency_ruleset() {
    if !kernel_available() {
        return;
    }
    let host = Host::new("nft");
    host.write("fw.rhai", "allw_tcp(80);\n");
    let run = host.run(&["apply", "--boot", &host.script()]).expect(1);
    assert!(
        run.stderr.contains("unknown function `allw_tcp`"),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains("the emergency ruleset (the baseline and SSH on port 22"),
        "{run:#?}"
    );
    let rules = host.rules();
    assert!(
        rules.contains(":INPUT DROP") && has_port(&rules, 22),
        "{rules}"
    );
    assert!(!has_port(&rules, 80));
}

#[test]
fn the_daemon_follows_replaced_folders_and_survives_a_storm() {
    if !kernel_available() {
        return;
    }
    let host = Host::new("nft");
    std::fs::create_dir(host.path("lib")).unwrap();
    host.write("lib/web.rhai", "fn open() { allow_tcp(80); }\n");
    host.write(
        "fw.rhai",
        "import \"lib/web\" as web;\nweb::open();\nssh_from(\"203.0.113.7\");\n",
    );
    let mut watch = host.watch(&[]);
    host.wait_rules("first apply", |r| has_port(r, 80));
    let rss_before = watch.rss();
    let _log = PrintOnPanic(watch.log.clone());

    // A deploy tool replaces the module's folder.
    std::fs::remove_dir_all(host.path("lib")).unwrap();
    std::fs::create_dir(host.path("lib")).unwrap();
    host.write("lib/web.rhai", "fn open() { allow_tcp(81); }\n");
    host.wait_rules("the module in the new folder", |r| has_port(r, 81));
    // …and later saves there are seen too.
    host.write("lib/web.rhai", "fn open() { allow_tcp(82); }\n");
    host.wait_rules("a later save in the new folder", |r| has_port(r, 82));

    // The script's own folder replaced (a `git checkout`).
    let script_text = std::fs::read_to_string(host.path("fw.rhai")).unwrap();
    let fw = host.dir.path().join("fw");
    let moved = host.dir.path().join("fw.old");
    std::fs::rename(&fw, &moved).unwrap();
    std::fs::create_dir(&fw).unwrap();
    std::fs::create_dir(host.path("lib")).unwrap();
    host.write("lib/web.rhai", "fn open() { allow_tcp(83); }\n");
    host.write("fw.rhai", &script_text);
    host.wait_rules("the script in its new folder", |r| has_port(r, 83));

    // A module replaced by a folder: an error, the rules stay.
    std::fs::remove_file(host.path("lib/web.rhai")).unwrap();
    std::fs::create_dir(host.path("lib/web.rhai")).unwrap();
    watch.wait_log("keeping the last good rules");
    assert!(has_port(&host.rules(), 83));
    std::fs::remove_dir(host.path("lib/web.rhai")).unwrap();
    host.write("lib/web.rhai", "fn open() { allow_tcp(84); }\n");
    host.wait_rules("the module back as a file", |r| has_port(r, 84));

    // The script deleted and restored.
    std::fs::remove_file(host.path("fw.rhai")).unwrap();
    watch.wait_log("cannot read");
    host.write("fw.rhai", &script_text);
    host.write("lib/web.rhai", "fn open() { allow_tcp(85); }\n");
    host.wait_rules("the script restored", |r| has_port(r, 85));

    // 1,000 saves in about 2 s: the daemon ends on the last one.
    let started = Instant::now();
    for i in 0..1000u16 {
        host.write(
            "lib/web.rhai",
            &format!("fn open() {{ allow_tcp({}); }}\n", 10_000 + i),
        );
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    let storm = started.elapsed();
    host.wait_rules("the last save of the storm", |r| {
        has_port(r, 10_999) && !has_port(r, 10_998)
    });
    assert!(watch.alive(), "{}", watch.log());
    let rss_after = watch.rss();
    assert!(
        rss_after < rss_before * 2 + 8 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB over {storm:?} of saves"
    );
}

/// What `rollback` says and leaves after the boot put a fallback into the
/// empty kernel.
fn nothing_to_roll_back(host: &Host) {
    let before = host.netns.saves();
    let run = host.run(&["rollback"]).expect(1);
    assert!(
        run.stderr
            .starts_with("error: there is nothing to roll back: the state folder (`")
            && run.stderr.contains(
                "holds no snapshot, as the last write put the fallback into a kernel that held \
                 none of fwscript's rules (a boot), and putting that empty kernel back would \
                 open the host; nothing was changed"
            ),
        "{run:#?}"
    );
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert_eq!(
        host.netns.saves(),
        before,
        "a refused rollback changed the kernel"
    );
    let json = host.run(&["rollback", "--json"]).expect(1);
    assert!(
        json.stdout.contains("there is nothing to roll back"),
        "{json:#?}"
    );
    let rules = host.rules();
    assert!(
        rules.contains(":INPUT DROP") && has_port(&rules, 80) && has_port(&rules, 22),
        "the fallback stays: {rules}"
    );
}

#[test]
fn rollback_after_a_boot_fallback_does_not_open_the_host() {
    if !kernel_available() {
        return;
    }
    let host = Host::new("nft");
    host.run(&["apply", &host.script()]).expect(0);
    host.write("fw.rhai", NEWER);
    host.run(&["apply", &host.script()]).expect(0);
    // Before the reboot there was something to roll back to.
    assert!(host.state().join("snapshot.json").exists());
    host.write("fw.rhai", "allow_tcp(80);\nallow_tcp(99999);\n");
    host.netns.reboot();
    host.run(&["apply", "--boot", &host.script()]).expect(1);
    assert!(
        !host.state().join("snapshot.json").exists(),
        "the snapshot from before the reboot describes a kernel that is gone"
    );
    nothing_to_roll_back(&host);

    // An unconfirmed apply lost in a reboot: `rollback` settles it with
    // the last good rules, and then has nothing more to put back.
    host.write("fw.rhai", GOOD);
    host.run(&["apply", &host.script()]).expect(0);
    host.write("fw.rhai", NEWER);
    host.run(&["apply", "--confirm", "300", &host.script()])
        .expect(0);
    host.netns.reboot();
    let run = host.run(&["rollback"]).expect(0);
    assert!(
        run.stdout
            .contains("an unconfirmed apply was lost with the kernel's rules"),
        "{run:#?}"
    );
    nothing_to_roll_back(&host);
}
