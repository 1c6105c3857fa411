//! Run as root, fwscript refuses a script or module that another user can
//! change: whoever can edit it controls the firewall (DESIGN.md 6). The
//! folder counts too, since whoever can write it can swap the file.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::values::Problem;

/// The effective user id, whose files are trusted.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks `file` (as read, symlinks followed) and its folder. `shown` is
/// the path as the user wrote it, for the message.
pub fn check(file: &Path, shown: &str, trusted_uid: u32) -> Result<(), Problem> {
    if trusted_uid != 0 {
        return Ok(());
    }
    let meta = std::fs::metadata(file)
        .map_err(|err| Problem::new(format!("cannot inspect `{shown}`: {err}")))?;
    if let Some(problem) = unsafe_owner_or_mode(&meta, shown, "", trusted_uid) {
        return Err(problem);
    }
    let folder = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let shown_folder = Path::new(shown)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let meta = std::fs::metadata(folder)
        .map_err(|err| Problem::new(format!("cannot inspect the folder of `{shown}`: {err}")))?;
    // A sticky folder (like /tmp) only lets owners rename or delete files.
    let sticky = meta.mode() & 0o1000 != 0;
    if !sticky {
        let folder_text = shown_folder.display().to_string();
        if let Some(problem) = unsafe_owner_or_mode(&meta, &folder_text, "the folder ", trusted_uid)
        {
            return Err(problem);
        }
    }
    Ok(())
}

fn unsafe_owner_or_mode(
    meta: &Metadata,
    shown: &str,
    what: &str,
    trusted_uid: u32,
) -> Option<Problem> {
    if meta.uid() != trusted_uid {
        return Some(
            Problem::new(format!(
                "refusing to use {what}`{shown}`: it belongs to user id {}, not root; whoever can edit it controls the firewall",
                meta.uid()
            ))
            .hint(format!("make root its owner: chown root {shown}")),
        );
    }
    let writers = match (meta.mode() & 0o020 != 0, meta.mode() & 0o002 != 0) {
        (true, true) => "its group and everyone",
        (true, false) => "its group",
        (false, true) => "everyone",
        (false, false) => return None,
    };
    Some(
        Problem::new(format!(
            "refusing to use {what}`{shown}`: {writers} can write it; whoever can edit it controls the firewall"
        ))
        .hint(format!("take the write permission away: chmod go-w {shown}")),
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn setup(mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fw.rhai");
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, file)
    }

    fn owner(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().uid()
    }

    #[test]
    fn a_private_file_passes() {
        let (_dir, file) = setup(0o644);
        assert_eq!(check(&file, "fw.rhai", owner(&file)), Ok(()));
        assert_eq!(check(&file, "fw.rhai", 0).is_ok(), owner(&file) == 0);
    }

    #[test]
    fn group_or_world_writable_files_are_refused_as_root() {
        for (mode, words) in [
            (0o664, "its group can"),
            (0o646, "everyone can"),
            (0o666, "its group and everyone"),
        ] {
            let (_dir, file) = setup(mode);
            if owner(&file) != 0 {
                eprintln!("SKIP: needs files owned by root");
                return;
            }
            let problem = check(&file, "fw.rhai", 0).unwrap_err();
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
        assert_eq!(check(&file, "fw.rhai", 1000), Ok(()));
    }

    #[test]
    fn a_file_owned_by_someone_else_is_refused() {
        let (_dir, file) = setup(0o644);
        if effective_uid() != 0 {
            eprintln!("SKIP: chown needs root");
            return;
        }
        std::os::unix::fs::chown(&file, Some(1000), None).unwrap();
        let problem = check(&file, "fw.rhai", 0).unwrap_err();
        assert!(
            problem.message.contains("belongs to user id 1000"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn a_writable_folder_is_refused_unless_sticky() {
        let (dir, file) = setup(0o644);
        if owner(&file) != 0 {
            eprintln!("SKIP: needs files owned by root");
            return;
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let problem = check(&file, "fw/fw.rhai", 0).unwrap_err();
        assert!(
            problem.message.contains("the folder `fw`"),
            "{}",
            problem.message
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(check(&file, "fw/fw.rhai", 0), Ok(()));
    }
}
