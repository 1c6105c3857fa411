//! Run as root, fwscript refuses a script, module or address list that
//! another user can change: whoever can edit it controls the firewall
//! (docs/safety.md). Like sshd's StrictModes, the check covers the file's real
//! path from `/` down: the file and every folder above it must belong to
//! root and be writable by no one else (a sticky folder such as `/tmp` may
//! be, since there only owners can rename or delete). It is decided on the
//! descriptor that was opened and then read, so a symlink swapped in
//! between wins nothing. Each symlink on the path as named must be root's
//! and sit in a folder root alone can change: whoever can re-point it
//! chooses which root-owned file is read (an old release that opens more).

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Stat};

use super::files::Opened;
use super::values::Problem;

/// The effective user id, whose files are trusted.
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Checks the opened file and the folders of its real path. Only root is
/// held to this: anyone else can only ever change their own firewall view
/// (`check`, `render`), not the kernel.
pub fn check(opened: &Opened, trusted_uid: u32) -> Result<(), Problem> {
    if trusted_uid != 0 {
        return Ok(());
    }
    let shown = opened.shown.as_str();
    if let Some(problem) = owner_or_mode(&opened.stat, shown, None, trusted_uid) {
        return Err(problem);
    }
    let (folders, name) = match (opened.real.parent(), opened.real.file_name()) {
        (Some(folders), Some(name)) => (folders, name),
        _ => return Err(moved(shown)),
    };
    let last = walk_folders(folders, shown, trusted_uid)?;
    // The file now at the real path is the one opened: nothing was swapped
    // in beneath folders that only root can change.
    let now =
        rustix::fs::statat(&last, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|_| moved(shown))?;
    if (now.st_dev, now.st_ino) != opened.identity() {
        return Err(moved(shown));
    }
    check_symlinks(&opened.named, shown, trusted_uid)
}

/// Every symlink on `named` (a prefix of it that is one) must belong to
/// root and sit in a folder that passes the folder check.
fn check_symlinks(named: &Path, shown: &str, trusted_uid: u32) -> Result<(), Problem> {
    let absolute = match named.is_absolute() {
        true => named.to_path_buf(),
        false => match std::env::current_dir() {
            Ok(dir) => dir.join(named),
            Err(_) => return Err(moved(shown)),
        },
    };
    let mut prefix = PathBuf::new();
    for component in absolute.components() {
        prefix.push(component);
        let Ok(link) = rustix::fs::lstat(&prefix) else {
            return Err(moved(shown));
        };
        if link.st_mode & 0o170000 != 0o120000 {
            continue;
        }
        let what = format!("the symlink `{}`", prefix.display());
        if link.st_uid != trusted_uid {
            return Err(Problem::new(format!(
                "refusing to use `{shown}`: {what} on its path belongs to user id {}, not \
                 root; whoever owns it can point it at another file",
                link.st_uid
            ))
            .hint(format!(
                "make root its owner: chown -h root {}",
                prefix.display()
            )));
        }
        let Some(folder) = prefix.parent() else {
            continue;
        };
        let stat = rustix::fs::stat(folder).map_err(|_| moved(shown))?;
        if let Some(problem) = owner_or_mode(&stat, shown, Some(folder), trusted_uid) {
            return Err(Problem::new(format!(
                "{}, and with it {what}, which can be pointed at another file",
                problem.message
            ))
            .hint(format!(
                "take the write permission away: chmod go-w {}",
                folder.display()
            )));
        }
    }
    Ok(())
}

/// Opens each folder from `/` down to `folders` without following
/// symlinks (the real path has none) and checks its owner and mode.
fn walk_folders(folders: &Path, shown: &str, trusted_uid: u32) -> Result<OwnedFd, Problem> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let cannot = |folder: &Path, err: rustix::io::Errno| {
        Problem::new(format!(
            "cannot inspect the folder `{}` of `{shown}`: {}",
            folder.display(),
            crate::io_error::lowercase(&std::io::Error::from(err))
        ))
    };
    let root = Path::new("/");
    let mut dir = rustix::fs::open(root, flags, Mode::empty()).map_err(|e| cannot(root, e))?;
    let mut walked = PathBuf::from("/");
    check_folder(&dir, &walked, shown, trusted_uid)?;
    for component in folders.components() {
        let name: &OsStr = match component {
            Component::RootDir => continue,
            Component::Normal(name) => name,
            // A real path has no `.`, `..` or prefixes; one that does was
            // not produced by the kernel.
            _ => return Err(moved(shown)),
        };
        walked.push(name);
        dir =
            rustix::fs::openat(&dir, name, flags, Mode::empty()).map_err(|e| cannot(&walked, e))?;
        check_folder(&dir, &walked, shown, trusted_uid)?;
    }
    Ok(dir)
}

fn check_folder(dir: &OwnedFd, path: &Path, shown: &str, trusted_uid: u32) -> Result<(), Problem> {
    let stat = rustix::fs::fstat(dir).map_err(|_| moved(shown))?;
    match owner_or_mode(&stat, shown, Some(path), trusted_uid) {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// What is wrong with the owner or mode of the file (`folder` `None`) or
/// of a folder above it.
fn owner_or_mode(
    stat: &Stat,
    shown: &str,
    folder: Option<&Path>,
    trusted_uid: u32,
) -> Option<Problem> {
    let (it, subject, why) = match folder {
        None => (
            "it".to_string(),
            shown.to_string(),
            "whoever can edit it controls the firewall",
        ),
        Some(folder) => (
            format!("its folder `{}`", folder.display()),
            folder.display().to_string(),
            "whoever can change that folder can swap the file",
        ),
    };
    if stat.st_uid != trusted_uid {
        return Some(
            Problem::new(format!(
                "refusing to use `{shown}`: {it} belongs to user id {}, not root; {why}",
                stat.st_uid
            ))
            .hint(format!("make root its owner: chown root {subject}")),
        );
    }
    // A sticky folder (like /tmp) only lets owners rename or delete.
    if folder.is_some() && stat.st_mode & 0o1000 != 0 {
        return None;
    }
    let writers = match (stat.st_mode & 0o020 != 0, stat.st_mode & 0o002 != 0) {
        (true, true) => "its group and everyone",
        (true, false) => "its group",
        (false, true) => "everyone",
        (false, false) => return None,
    };
    let writers = match folder {
        None => writers.to_string(),
        Some(_) => writers.replace("its group", "the folder's group"),
    };
    Some(
        Problem::new(format!(
            "refusing to use `{shown}`: {writers} can write {it}; {why}"
        ))
        .hint(format!(
            "take the write permission away: chmod go-w {subject}"
        )),
    )
}

fn moved(shown: &str) -> Problem {
    Problem::new(format!(
        "refusing to use `{shown}`: it was moved or replaced while being checked"
    ))
    .hint("run fwscript again once the file stays put")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use crate::script::files;

    fn setup(mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fw.rhai");
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, file)
    }

    fn owner(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().uid()
    }

    fn checked(file: &Path, shown: &str, uid: u32) -> Result<(), Problem> {
        check(&files::open(file, shown).unwrap(), uid)
    }

    fn as_root() -> bool {
        if effective_uid() == 0 {
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the permission check must be tested as root under CI"
        );
        eprintln!("SKIP: the permission check applies to root only");
        false
    }

    #[test]
    fn a_private_file_passes() {
        let (_dir, file) = setup(0o644);
        assert_eq!(checked(&file, "fw.rhai", owner(&file)), Ok(()));
        assert_eq!(checked(&file, "fw.rhai", 0).is_ok(), owner(&file) == 0);
    }

    #[test]
    fn group_or_world_writable_files_are_refused_as_root() {
        if !as_root() {
            return;
        }
        for (mode, words) in [
            (0o664, "its group can"),
            (0o646, "everyone can"),
            (0o666, "its group and everyone"),
        ] {
            let (_dir, file) = setup(mode);
            let problem = checked(&file, "fw.rhai", 0).unwrap_err();
            assert!(
                problem.message.contains(words),
                "{mode:o}: {}",
                problem.message
            );
            assert_eq!(
                problem.hint.as_deref(),
                Some("take the write permission away: chmod go-w fw.rhai")
            );
        }
    }

    #[test]
    fn only_root_is_this_strict() {
        let (_dir, file) = setup(0o666);
        assert_eq!(checked(&file, "fw.rhai", 1000), Ok(()));
    }

    #[test]
    fn a_file_owned_by_someone_else_is_refused() {
        if !as_root() {
            return;
        }
        let (_dir, file) = setup(0o644);
        std::os::unix::fs::chown(&file, Some(1000), None).unwrap();
        let problem = checked(&file, "fw.rhai", 0).unwrap_err();
        assert!(
            problem.message.contains("belongs to user id 1000"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn every_folder_up_to_the_root_counts_unless_sticky() {
        if !as_root() {
            return;
        }
        let outer = tempfile::tempdir().unwrap();
        let middle = outer.path().join("middle");
        let inner = middle.join("fw");
        std::fs::create_dir_all(&inner).unwrap();
        let file = inner.join("fw.rhai");
        std::fs::write(&file, "").unwrap();
        assert_eq!(checked(&file, "fw/fw.rhai", 0), Ok(()));
        // Not the folder holding the file: one above it.
        std::fs::set_permissions(&middle, std::fs::Permissions::from_mode(0o777)).unwrap();
        let problem = checked(&file, "fw/fw.rhai", 0).unwrap_err();
        assert!(
            problem.message.contains(&format!(
                "its folder `{}`",
                middle.canonicalize().unwrap().display()
            )),
            "{}",
            problem.message
        );
        std::fs::set_permissions(&middle, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(checked(&file, "fw/fw.rhai", 0), Ok(()));
        std::os::unix::fs::chown(&middle, Some(1000), None).unwrap();
        let problem = checked(&file, "fw/fw.rhai", 0).unwrap_err();
        assert!(
            problem.message.contains("belongs to user id 1000"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn a_symlink_others_can_re_point_is_refused() {
        if !as_root() {
            return;
        }
        // The file is root's and private; the symlink leading to it sits
        // in a folder its group can write.
        let (_safe, target) = setup(0o600);
        let shared = tempfile::tempdir().unwrap();
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
        let link = shared.path().join("current.rhai");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let problem = checked(&link, "current.rhai", 0).unwrap_err();
        assert!(
            problem.message.contains("the folder's group can write")
                && problem.message.contains("can be pointed at another file"),
            "{}",
            problem.message
        );
        // In a folder only root can change, a symlink of another user's
        // is refused too (in a sticky folder its owner could re-point it).
        let private = tempfile::tempdir().unwrap();
        let theirs = private.path().join("theirs.rhai");
        std::os::unix::fs::symlink(&target, &theirs).unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            &theirs,
            Some(rustix::process::Uid::from_raw(65534)),
            None,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let problem = checked(&theirs, "theirs.rhai", 0).unwrap_err();
        assert!(
            problem.message.contains("belongs to user id 65534"),
            "{}",
            problem.message
        );
        // Root's symlink in root's private folder is fine.
        let ours = private.path().join("ours.rhai");
        std::os::unix::fs::symlink(&target, &ours).unwrap();
        checked(&ours, "ours.rhai", 0).unwrap();
    }

    #[test]
    fn a_symlink_into_a_folder_others_can_write_is_refused() {
        if !as_root() {
            return;
        }
        let safe = tempfile::tempdir().unwrap();
        let open = tempfile::tempdir().unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let target = open.path().join("fw.rhai");
        std::fs::write(&target, "").unwrap();
        let link = safe.path().join("fw.rhai");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let problem = checked(&link, "fw.rhai", 0).unwrap_err();
        assert!(
            problem.message.contains("everyone can write it"),
            "{}",
            problem.message
        );
    }
}
