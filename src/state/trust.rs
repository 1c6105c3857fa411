//! Whether the state folder and its files may be believed (state → **trust**):
//! a snapshot in it is put back into the kernel by `rollback`, so whoever
//! can write the folder decides the firewall. Root trusts a folder only if
//! root owns it, nobody else can write it, and the same holds for every
//! folder above it (as sshd's StrictModes checks a home folder); a file in
//! it is believed only if it is a regular file owned by root that nobody
//! else can write. Run by another user, that user stands in for root.

use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{FileType, Stat};

/// Why a folder or file is not trusted, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distrust {
    pub why: String,
    pub hint: String,
}

/// The user whose folders and files are trusted: the effective user.
pub fn trusted_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Checks the state folder at `real` (a canonical path, no symlinks) and
/// every folder above it. Returns the folder's own metadata, so the caller
/// can make sure the folder it then opens is this one.
pub fn check_folder_chain(real: &Path, uid: u32) -> Result<Stat, Distrust> {
    let mut own = None;
    for folder in real.ancestors().collect::<Vec<_>>().into_iter().rev() {
        let stat = rustix::fs::lstat(folder).map_err(|err| Distrust {
            why: format!("cannot inspect `{}`: {err}", folder.display()),
            hint: "check that the folder exists and is readable".into(),
        })?;
        let is_self = folder == real;
        check_folder(folder, &stat, uid, is_self)?;
        if is_self {
            own = Some(stat);
        }
    }
    own.ok_or_else(|| Distrust {
        why: format!("`{}` is not a folder path", real.display()),
        hint: "give the state folder as an absolute path".into(),
    })
}

fn check_folder(folder: &Path, stat: &Stat, uid: u32, is_self: bool) -> Result<(), Distrust> {
    let shown = folder.display();
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Err(Distrust {
            why: format!("`{shown}` is not a folder"),
            hint: "point --state-dir at a folder".into(),
        });
    }
    // Folders above may belong to root as well as to the trusted user:
    // `/var/lib` does even when a test runs fwscript as someone else.
    let owner_ok = stat.st_uid == uid || (!is_self && stat.st_uid == 0);
    if !owner_ok {
        return Err(Distrust {
            why: format!(
                "`{shown}` belongs to user id {}, who could plant the rules fwscript puts back",
                stat.st_uid
            ),
            hint: format!("make it root's: chown root {shown}"),
        });
    }
    let mode = stat.st_mode;
    let sticky = mode & 0o1000 != 0;
    // In a sticky folder (like /tmp) others cannot rename or remove what is
    // root's, so it is safe above the state folder, never as the folder.
    if mode & 0o022 != 0 && (is_self || !sticky) {
        return Err(Distrust {
            why: format!(
                "{} can write `{shown}`, and could plant the rules fwscript puts back",
                writers(mode)
            ),
            hint: format!("take the write permission away: chmod go-w {shown}"),
        });
    }
    Ok(())
}

/// Checks a file opened (without following symlinks) in the state folder.
pub fn check_file(file: impl AsFd, shown: &Path, uid: u32) -> Result<Stat, Distrust> {
    let stat = rustix::fs::fstat(file).map_err(|err| Distrust {
        why: format!("cannot inspect `{}`: {err}", shown.display()),
        hint: "check the state folder".into(),
    })?;
    let shown = shown.display();
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(Distrust {
            why: format!("`{shown}` is not a regular file"),
            hint: format!("remove it: rm -r {shown}"),
        });
    }
    if stat.st_uid != uid {
        return Err(Distrust {
            why: format!(
                "`{shown}` belongs to user id {}, not to the user running fwscript: it was not written by fwscript",
                stat.st_uid
            ),
            hint: format!("look at it, then remove it: rm {shown}"),
        });
    }
    if stat.st_mode & 0o022 != 0 {
        return Err(Distrust {
            why: format!(
                "{} can write `{shown}`: it cannot be believed",
                writers(stat.st_mode)
            ),
            hint: format!("look at it, then remove it: rm {shown}"),
        });
    }
    Ok(stat)
}

fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and everyone",
        (true, false) => "its group",
        _ => "everyone",
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_folder_under_sticky_tmp_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        check_folder_chain(&real, trusted_uid()).unwrap();
    }

    #[test]
    fn a_writable_folder_is_not_trusted_even_when_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        chmod(&real, 0o1777);
        let distrust = check_folder_chain(&real, trusted_uid()).unwrap_err();
        assert!(distrust.why.contains("everyone can write"), "{distrust:?}");
        assert!(distrust.hint.contains("chmod go-w"), "{distrust:?}");
    }

    #[test]
    fn a_writable_folder_above_is_not_trusted_unless_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let above = dir.path().canonicalize().unwrap();
        let state = above.join("state");
        std::fs::create_dir(&state).unwrap();
        chmod(&state, 0o700);
        chmod(&above, 0o777);
        let distrust = check_folder_chain(&state, trusted_uid()).unwrap_err();
        assert!(
            distrust.why.contains(&format!("`{}`", above.display())),
            "{distrust:?}"
        );
        chmod(&above, 0o1777);
        check_folder_chain(&state, trusted_uid()).unwrap();
    }

    #[test]
    fn someone_elses_folder_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        let distrust = check_folder_chain(&real, trusted_uid() + 1).unwrap_err();
        assert!(distrust.why.contains("belongs to user id"), "{distrust:?}");
    }
}
