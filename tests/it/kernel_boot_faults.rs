//! The one-shot apply at boot against a state folder that is damaged,
//! read-only, missing or untrusted, and with `--confirm`: whatever the
//! fault, the booted kernel ends up with the script's rules, the last good
//! ruleset or the emergency one — never nothing — and the command says
//! which, and what it could not do. A reboot is the namespace deleted and
//! made again with the state folder kept.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::case::Case;
use crate::common::netns::{kernel_available, Netns, Run};

const GOOD: &str = "allow_tcp(80);\nssh_from(\"203.0.113.7\");\n";
const NEWER: &str = "allow_tcp([80, 8443]);\nssh_from(\"203.0.113.7\");\n";
const BROKEN: &str = "allow_tcp(80);\nallow_tcp(99999);\n";

fn has_port(rules: &str, port: u16) -> bool {
    rules.contains(&format!("--dport {port} "))
}

/// The IPv4 rules: closed (INPUT DROP) and holding exactly `open` of the
/// ports these tests use.
#[track_caller]
fn assert_holds(netns: &Netns, open: &[u16], context: &Run) {
    let rules = netns.save("ipv4", false);
    assert!(
        rules.contains(":INPUT DROP"),
        "the host is open:\n{rules}\n{context:#?}"
    );
    for port in [22, 80, 8443] {
        assert_eq!(
            has_port(&rules, port),
            open.contains(&port),
            "port {port}:\n{rules}\n{context:#?}"
        );
    }
    assert!(
        netns.save("ipv6", false).contains(":INPUT DROP"),
        "IPv6 is open"
    );
}

/// `fwscript --state-dir STATE ARGS…` in a mount namespace of its own,
/// after `setup` (shell, `$S` is the state folder) made its mounts there:
/// the host's mounts never change.
fn run_mounted(netns: &Netns, state: &Path, setup: &str, args: &[&str]) -> Run {
    let command = format!(
        "{setup} && exec ip netns exec {} {} --state-dir \"$S\" {}",
        netns.name,
        env!("CARGO_BIN_EXE_fwscript"),
        args.join(" ")
    );
    let output = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &command])
        .env("S", state)
        .env("FWSCRIPT_IPTABLES", netns.flavor)
        .output()
        .expect("unshare runs");
    Run::from(output)
}

const READ_ONLY: &str = "mount --bind \"$S\" \"$S\" && mount -o remount,bind,ro \"$S\"";

/// A good apply, then a reboot: the kernel is empty, the records kept.
fn applied_then_rebooted(netns: &Netns, case: &Case) {
    case.run(netns, &["apply"]).expect(0);
    netns.reboot();
    assert!(!netns.save("ipv4", false).contains("FWS-"));
}

/// A power cut leaves a record empty or cut short; the boot still closes
/// the host, with the script when it evaluates and with the last good
/// ruleset when it does not, and the damage is named. Found: an emptied
/// `applied.json` made the implicit boot (`apply` from rc.local) fail
/// before anything went in, a damaged `last-good.json` or
/// `pending-confirm.json` made `apply --boot` fail the same way.
#[test]
fn a_damaged_record_at_boot_never_leaves_the_host_open() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("nft");
    let case = Case::new(GOOD);

    // `applied.json` emptied: the implicit boot cannot read the boot id,
    // so the kernel decides: it holds none of fwscript's rules.
    applied_then_rebooted(&netns, &case);
    std::fs::write(case.state.join("applied.json"), "").unwrap();
    let run = case.run(&netns, &["apply"]).expect(0);
    assert!(
        run.stderr.contains("applied.json` is damaged")
            && run
                .stderr
                .contains("the kernel holds none of fwscript's rules: counted as a boot"),
        "{run:#?}"
    );
    assert_holds(&netns, &[22, 80], &run);
    // … and with a broken script, the last good ruleset.
    netns.reboot();
    std::fs::write(case.state.join("applied.json"), "{\"script\": \"/e").unwrap();
    case.edit(BROKEN);
    let run = case.run(&netns, &["apply"]).expect(1);
    assert!(
        run.stderr.contains("port 99999 is out of range")
            && run.stderr.contains("the last good ruleset (`"),
        "{run:#?}"
    );
    assert_holds(&netns, &[22, 80], &run);
    // Not at boot (fwscript's rules are in), the broken script changes
    // nothing, as ever.
    let before = netns.saves();
    case.run(&netns, &["apply"]).expect(1);
    assert_eq!(netns.saves(), before);

    // `last-good.json` cut short: its rules are whole, and are what the
    // boot falls back to.
    case.edit(GOOD);
    applied_then_rebooted(&netns, &case);
    std::fs::write(case.state.join("last-good.json"), "{\"script\": \"/e").unwrap();
    case.edit(BROKEN);
    let run = case.run(&netns, &["apply", "--boot"]).expect(1);
    assert!(
        run.stderr.contains("port 99999 is out of range")
            && run.stderr.contains(
                "the last good ruleset (its record `last-good.json` is damaged) was applied instead"
            ),
        "{run:#?}"
    );
    assert_holds(&netns, &[22, 80], &run);
    // `last-good.rules` that is not fwscript's: the emergency ruleset.
    netns.reboot();
    std::fs::write(case.state.join("last-good.rules"), "\0\0garbage\n").unwrap();
    let run = case.run(&netns, &["apply", "--boot"]).expect(1);
    assert!(run.stderr.contains("the emergency ruleset"), "{run:#?}");
    assert_holds(&netns, &[22], &run);

    // `pending-confirm.json` cut short: whether the script is the plan
    // that was never confirmed cannot be told, so the last good ruleset
    // goes in, not the script.
    let case = Case::new(GOOD);
    applied_then_rebooted(&netns, &case);
    std::fs::write(case.state.join("pending-confirm.json"), "{\"deadline\": 1").unwrap();
    case.edit(NEWER);
    let run = case.run(&netns, &["apply", "--boot"]).expect(1);
    assert!(
        run.stderr.contains("pending-confirm.json` is damaged")
            && run.stderr.contains("the last good ruleset (`")
            && run.stderr.contains("was applied instead"),
        "{run:#?}"
    );
    assert_holds(&netns, &[22, 80], &run);
    // Not at boot it changes nothing and says so, as before.
    let before = netns.saves();
    let run = case.run(&netns, &["apply"]).expect(1);
    assert!(
        run.stderr.contains("pending-confirm.json` is damaged"),
        "{run:#?}"
    );
    assert_eq!(netns.saves(), before);
}

/// A root file system mounted read-only after a crash, with an
/// `apply --confirm` lost in it: recording the rejection failed first, and
/// the host stayed open. And a broken script on a read-only folder: the
/// error now names the script error as well as what went in.
#[test]
fn a_read_only_state_folder_at_boot_still_gets_a_fallback_and_says_why() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("nft");
    let case = Case::new(GOOD);
    case.run(&netns, &["apply"]).expect(0);
    case.edit(NEWER);
    case.run(&netns, &["apply", "--confirm", "300"]).expect(0);
    crate::common::confirm::kill_timer(&case.state);
    netns.reboot();
    let script = case.script();
    let run = run_mounted(&netns, &case.state, READ_ONLY, &["apply", "--boot", script]).expect(1);
    assert!(
        run.stderr.contains("read-only file system")
            && run.stderr.contains("the last good ruleset (`")
            && run.stderr.contains("was applied instead"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("the state folder could not record it"),
        "{run:#?}"
    );
    assert_holds(&netns, &[22, 80], &run);

    // A broken script: the script error, then what went in instead, then
    // what could not be recorded.
    std::fs::remove_file(case.state.join("pending-confirm.json")).unwrap();
    case.edit(BROKEN);
    netns.reboot();
    let run = run_mounted(&netns, &case.state, READ_ONLY, &["apply", "--boot", script]).expect(1);
    assert!(
        run.stderr.contains("fw.rhai:2:") && run.stderr.contains("port 99999 is out of range"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("the last good ruleset (`")
            && run.stderr.contains("was applied instead")
            && run.stderr.contains("the state folder could not record it")
            && run.stderr.contains("read-only file system"),
        "{run:#?}"
    );
    assert_holds(&netns, &[22, 80], &run);
}

/// A state folder fwscript must not use (anyone may write it) or cannot
/// make (a read-only root): at boot the script's rules go in all the
/// same, with nothing read from or written to the folder, and the command
/// fails with the refusal; a broken script gets the emergency ruleset,
/// never a last good ruleset from a folder that cannot be believed. Not at
/// boot the refusal changes nothing, as ever.
#[test]
fn an_untrusted_or_missing_state_folder_at_boot_still_closes_the_host() {
    if !kernel_available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let netns = Netns::new("nft");
    let case = Case::new(GOOD);
    applied_then_rebooted(&netns, &case);
    // A planted last good ruleset that opens everything.
    std::fs::write(
        case.state.join("last-good.rules"),
        "# ipv4\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
    )
    .unwrap();
    std::fs::set_permissions(&case.state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let listing = |state: &Path| {
        let mut files: Vec<_> = std::fs::read_dir(state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        files.sort();
        files
    };
    let files = listing(&case.state);
    case.edit(NEWER);
    let run = case.run(&netns, &["apply", "--boot"]).expect(1);
    assert!(
        run.stderr.contains("refusing to use the state folder")
            && run.stderr.contains(&format!(
                "the kernel was changed: it now holds the rules of `{}`",
                case.script()
            )),
        "{run:#?}"
    );
    assert_holds(&netns, &[22, 80, 8443], &run);
    assert_eq!(
        listing(&case.state),
        files,
        "the untrusted folder was written"
    );

    // Not at boot: refused, nothing changed.
    let before = netns.saves();
    case.edit(GOOD);
    let run = case.run(&netns, &["apply", "--boot"]).expect(1);
    assert!(
        run.stderr.contains("refusing to use the state folder")
            && !run.stderr.contains("the kernel was changed"),
        "{run:#?}"
    );
    assert_eq!(netns.saves(), before);

    // A broken script: the emergency ruleset, not the planted rules.
    netns.reboot();
    case.edit(BROKEN);
    let run = case.run(&netns, &["apply", "--boot"]).expect(1);
    assert!(
        run.stderr.contains("port 99999 is out of range")
            && run.stderr.contains("refusing to use the state folder")
            && run.stderr.contains("the emergency ruleset"),
        "{run:#?}"
    );
    assert_holds(&netns, &[22], &run);

    // A state folder that does not exist on a read-only file system.
    netns.reboot();
    case.edit(GOOD);
    let parent = case.state.parent().unwrap().join("ro");
    std::fs::create_dir(&parent).unwrap();
    let state = parent.join("state");
    let setup = format!(
        "mount --bind {0} {0} && mount -o remount,bind,ro {0}",
        parent.display()
    );
    let run = run_mounted(&netns, &state, &setup, &["apply", "--boot", case.script()]).expect(1);
    assert!(
        run.stderr.contains("cannot create the state folder")
            && run
                .stderr
                .contains("the kernel was changed: it now holds the rules of"),
        "{run:#?}"
    );
    assert_holds(&netns, &[22, 80], &run);
}

/// `apply --confirm` at boot: its snapshot was the empty kernel, so an
/// expiry put the open kernel back. Now the fallback goes in first and is
/// what the expiry puts back.
#[test]
fn an_apply_with_confirm_at_boot_expires_into_the_fallback() {
    if !kernel_available() {
        return;
    }
    let netns = Netns::new("nft");
    for (first_boot, kept) in [(false, &[22, 80][..]), (true, &[22][..])] {
        let case = Case::new(GOOD);
        if !first_boot {
            applied_then_rebooted(&netns, &case);
        } else {
            netns.reboot();
        }
        case.edit(NEWER);
        let run = case
            .run(&netns, &["apply", "--boot", "--confirm", "1"])
            .expect(0);
        assert_holds(&netns, &[22, 80, 8443], &run);
        // The timer rolls back within a second or two of the deadline.
        let deadline = Instant::now() + Duration::from_secs(20);
        while case.state.join("pending-confirm.json").exists() {
            assert!(Instant::now() < deadline, "the timer never rolled back");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_holds(&netns, kept, &run);
    }
}

/// The kernel rejects the script's rules at boot (a module this kernel
/// lacks: here a stand-in `iptables-nft-restore` first on PATH refuses
/// any input that opens port 8443). The write put back what the kernel
/// held, which at boot is nothing: the host stayed open. Now the last good
/// ruleset goes in, and when the kernel rejects that too, the emergency
/// ruleset.
#[test]
fn rules_the_kernel_rejects_at_boot_give_the_fallback() {
    if !kernel_available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let netns = Netns::new("nft");
    let case = Case::new(GOOD);
    let bin = case.state.parent().unwrap().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("iptables-nft-restore");
    let real = [
        "/usr/sbin/iptables-nft-restore",
        "/sbin/iptables-nft-restore",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap();
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ninput=$(cat)\ncase \"$input\" in *\"$REJECT\"*) echo 'iptables-restore: line 2 failed: Extension not found' >&2; exit 1;; esac\nprintf '%s\\n' \"$input\" | exec {real} \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let boot = |reject: &str| {
        let output = netns
            .command(env!("CARGO_BIN_EXE_fwscript"))
            .env("PATH", &path)
            .env("REJECT", reject)
            .arg("--state-dir")
            .arg(&case.state)
            .args(["apply", "--boot", case.script()])
            .output()
            .unwrap();
        Run::from(output)
    };
    applied_then_rebooted(&netns, &case);
    case.edit(NEWER);
    let run = boot("--dport 8443 ").expect(1);
    assert!(
        run.stderr.contains("writing the ipv4 rules failed")
            && run.stderr.contains("Extension not found")
            && run.stderr.contains("the last good ruleset (`")
            && run.stderr.contains("was applied instead"),
        "{run:#?}"
    );
    assert_holds(&netns, &[22, 80], &run);

    // The last good ruleset is rejected too: the emergency ruleset.
    netns.reboot();
    let run = boot("--dport 80 ").expect(1);
    assert!(
        run.stderr.contains(
            "the emergency ruleset (the baseline and SSH on port 22: the last good ruleset could not be written) was applied instead"
        ),
        "{run:#?}"
    );
    assert_holds(&netns, &[22], &run);

    // The kernel rejects everything (here: every write holds a comment):
    // nothing can go in, and the message says so after the kernel's own
    // rejection, instead of that rejection alone.
    netns.reboot();
    let run = boot("--comment").expect(1);
    assert!(
        run.stderr.contains("Extension not found")
            && run.stderr.contains(
                "note: at boot the kernel must not stay open, but no fallback could be written \
                 either: "
            ),
        "{run:#?}"
    );
    assert!(!netns.save("ipv4", false).contains("FWS-"));
}
