use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::netfilter::Family;

fn private(dir: &Path) -> StateDir {
    StateDir::open(&dir.join("state")).unwrap()
}

#[test]
fn files_round_trip_and_the_folder_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let state = private(dir.path());
    let mode = fs::metadata(state.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let locked = state.lock("test").unwrap();

    assert_eq!(locked.snapshot().unwrap(), None);
    let snapshot = Snapshot {
        taken_at: 1,
        script: "fw.rhai".into(),
        families: vec![FamilySnapshot {
            family: Family::Ipv4,
            save: "*filter\nCOMMIT\n".into(),
            sets: String::new(),
        }],
    };
    locked.save_snapshot(&snapshot).unwrap();
    assert_eq!(locked.snapshot().unwrap(), Some(snapshot));

    let pending = PendingConfirm {
        deadline: 9,
        token: "t".into(),
        script: "fw.rhai".into(),
        plan_digest: "d".into(),
        boot_id: boot_id(),
    };
    locked.save_pending_confirm(&pending).unwrap();
    assert_eq!(locked.pending_confirm().unwrap(), Some(pending));
    locked.clear_pending_confirm().unwrap();
    locked.clear_pending_confirm().unwrap();
    assert_eq!(locked.pending_confirm().unwrap(), None);

    let leftovers: Vec<_> = fs::read_dir(state.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn good(digest: &str) -> LastGood {
    LastGood {
        script: "fw.rhai".into(),
        applied_at: 5,
        digest: digest.into(),
    }
}

fn records(text: &str, last_good: Option<LastGood>) -> PlanRecords {
    PlanRecords {
        applied: Some(Applied {
            script: "fw.rhai".into(),
            command: "apply".into(),
            at: 5,
            digest: "d1".into(),
            boot_id: boot_id(),
            origins: String::new(),
        }),
        rules: Some(RulesRecord {
            text: text.into(),
            last_good,
        }),
        pending: None,
        policies: None,
        applied_rules: None,
        origins: None,
    }
}

#[test]
fn a_plan_is_recorded_only_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let state = private(dir.path());
    let locked = state.lock("test").unwrap();
    let filter = "# ipv4\n*filter\nCOMMIT\n";
    drop(
        locked
            .stage_plan(&records(filter, Some(good("d1"))))
            .unwrap(),
    );
    assert_eq!(locked.last_good().unwrap(), None, "dropped, not committed");
    assert_eq!(locked.applied().unwrap(), None);
    locked
        .stage_plan(&records(filter, Some(good("d1"))))
        .unwrap()
        .commit()
        .unwrap();
    assert_eq!(locked.last_good().unwrap().unwrap().digest, "d1");
    assert!(locked
        .last_good_rules()
        .unwrap()
        .unwrap()
        .contains("*filter"));
}

#[test]
fn a_confirm_keeps_the_last_good_until_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let state = private(dir.path());
    let locked = state.lock("test").unwrap();
    let filter = "# ipv4\n*filter\nCOMMIT\n";
    locked
        .stage_plan(&records(filter, Some(good("d1"))))
        .unwrap()
        .commit()
        .unwrap();
    let unconfirmed = records("# ipv4\n*nat\nCOMMIT\n", None);
    locked.stage_plan(&unconfirmed).unwrap().commit().unwrap();
    assert_eq!(locked.last_good().unwrap().unwrap().digest, "d1");
    assert!(locked
        .last_good_rules()
        .unwrap()
        .unwrap()
        .contains("*filter"));
    assert!(locked.pending_rules().unwrap().unwrap().contains("*nat"));

    locked.promote_pending(&good("d2")).unwrap();
    assert_eq!(locked.last_good().unwrap().unwrap().digest, "d2");
    assert!(locked.last_good_rules().unwrap().unwrap().contains("*nat"));
    assert_eq!(locked.pending_rules().unwrap(), None);
}

#[test]
fn a_damaged_file_is_reported_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let state = private(dir.path());
    fs::write(state.path().join(SNAPSHOT), "{ half").unwrap();
    fs::set_permissions(
        state.path().join(SNAPSHOT),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let err = state.snapshot().unwrap_err();
    assert!(err.to_string().contains("is damaged"), "{err}");
}

#[test]
fn planted_symlinks_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = private(dir.path());
    let target = dir.path().join("elsewhere");
    fs::write(&target, "{}").unwrap();
    std::os::unix::fs::symlink(&target, state.path().join(SNAPSHOT)).unwrap();
    let err = state.snapshot().unwrap_err().to_string();
    assert!(err.contains("is a symlink"), "{err}");

    // A write replaces the link itself, never what it points at.
    let locked = state.lock("test").unwrap();
    locked
        .save_rejected(&Rejected {
            plan_digest: "x".into(),
            rolled_back_at: 1,
        })
        .unwrap();
    std::os::unix::fs::symlink(&target, state.path().join(APPLIED)).unwrap();
    let applied = Applied {
        script: "fw.rhai".into(),
        command: "apply".into(),
        at: 1,
        digest: String::new(),
        boot_id: String::new(),
        origins: String::new(),
    };
    locked.save_applied(&applied).unwrap();
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        "{}",
        "the target is untouched"
    );
    assert_eq!(locked.applied().unwrap(), Some(applied));

    fs::write(state.path().join(POLICIES), "{}").unwrap();
    fs::set_permissions(
        state.path().join(POLICIES),
        fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let err = state.original_policies().unwrap_err().to_string();
    assert!(err.contains("can write"), "{err}");
}

#[test]
fn a_fifo_in_the_folder_does_not_hang_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let state = private(dir.path());
    rustix::fs::mknodat(
        CWD,
        state.path().join(SNAPSHOT),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let err = state.snapshot().unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn a_world_writable_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    fs::create_dir(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
    let err = StateDir::open(&path).unwrap_err().to_string();
    assert!(err.contains("refusing to use the state folder"), "{err}");
    assert!(err.contains("everyone can write"), "{err}");
    assert!(
        err.contains("hint: take the write permission away"),
        "{err}"
    );
}

/// A `kill -9` mid-write leaves `.NAME.PID.N`; after a reboot the next
/// fwscript may get that very pid (boots are alike). Its writes must not
/// fail on the names taken.
#[test]
fn a_leftover_temporary_of_the_same_pid_never_blocks_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let state = private(dir.path());
    let locked = state.lock("test").unwrap();
    let next = TEMPORARIES.load(Ordering::Relaxed);
    let pid = std::process::id();
    for n in next..next + 50 {
        fs::write(state.path().join(temporary_name(POLICIES, pid, n)), "").unwrap();
    }
    let policies = OriginalPolicies::default();
    locked.save_original_policies(&policies).unwrap();
    assert_eq!(state.original_policies().unwrap(), policies);
    assert!(state.path().join(POLICIES).exists());
}

#[test]
fn the_lock_sweeps_temporaries_of_dead_writers_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let state = private(dir.path());
    // Above the largest pid Linux hands out: never running.
    let dead = 4_194_999;
    let old = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    let make = |name: &str, modified: Option<std::time::SystemTime>| {
        let file = fs::File::create(state.path().join(name)).unwrap();
        if let Some(modified) = modified {
            file.set_modified(modified).unwrap();
        }
    };
    let swept = [
        temporary_name(SNAPSHOT, dead, 0),
        temporary_name(read_cache::IPV4, dead, 7),
    ];
    let kept = [
        // Written a moment ago: maybe a write under way in another pid namespace.
        (temporary_name(SNAPSHOT, dead, 1), None),
        // pid 1 is always running.
        (temporary_name(SNAPSHOT, 1, 0), Some(old)),
        // Not a file fwscript keeps, or not a temporary's name.
        (temporary_name("notes.txt", dead, 0), Some(old)),
        (format!(".{SNAPSHOT}.{dead}.x"), Some(old)),
        (format!(".{SNAPSHOT}.{dead}"), Some(old)),
        (SNAPSHOT.to_string(), Some(old)),
    ];
    for name in &swept {
        make(name, Some(old));
    }
    for (name, modified) in &kept {
        make(name, *modified);
    }

    let locked = state.lock("test").unwrap();
    for name in &swept {
        assert!(!state.path().join(name).exists(), "{name} was left");
    }
    for (name, _) in &kept {
        assert!(state.path().join(name).exists(), "{name} was removed");
    }
    drop(locked);
}
