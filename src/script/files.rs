//! Reading the files a script is made of (script stage): the script, its
//! modules and its address lists. Each is opened once; what is decided
//! about it (a regular file, at most [`MAX_FILE`] bytes, where it really
//! lives, who owns it) is decided on the open descriptor, and the text is
//! read from that same descriptor. A FIFO, a device or a folder is refused
//! before a byte is read, and a symlink swapped after the checks changes
//! nothing: the checked file is the one read.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, CWD};

use super::values::Problem;
use crate::io_error::lowercase;

/// The largest file fwscript reads: far beyond any hand-written firewall,
/// small enough that a wrong path (a log, a disk image) fails at once.
pub const MAX_FILE: u64 = 4 * 1024 * 1024;

/// A file opened for reading, not read yet.
pub struct Opened {
    fd: OwnedFd,
    pub stat: Stat,
    /// Where the opened file really lives: symlinks resolved, as the kernel
    /// names the descriptor.
    pub real: PathBuf,
    /// The path as the user wrote it, for messages.
    pub shown: String,
    /// The path it was opened by, symlinks and all: each symlink on it is
    /// checked too (who can re-point one chooses the file read).
    pub named: PathBuf,
}

/// Opens `path` (symlinks followed: a symlinked script is fine, what
/// counts is the file it leads to) and checks it is a regular file of at
/// most [`MAX_FILE`] bytes.
pub fn open(path: &Path, shown: &str) -> Result<Opened, Problem> {
    let cannot = |err: rustix::io::Errno| {
        Problem::new(format!(
            "cannot read `{shown}`: {}",
            lowercase(&std::io::Error::from(err))
        ))
    };
    // Looked at first so that opening a device (a tape that rewinds, a
    // FIFO that waits for a writer) never happens; the descriptor's own
    // fstat below is what decides.
    let before = rustix::fs::stat(path).map_err(cannot)?;
    regular(&before, shown)?;
    // O_NONBLOCK: should the path become a FIFO in between, opening it
    // does not wait for a writer.
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(cannot)?;
    let stat = rustix::fs::fstat(&fd).map_err(cannot)?;
    regular(&stat, shown)?;
    let real = real_path(&fd, path, &stat).ok_or_else(|| {
        Problem::new(format!(
            "cannot tell where `{shown}` really lives: it changed while being opened"
        ))
        .hint("run fwscript again once the file stays put")
    })?;
    Ok(Opened {
        fd,
        stat,
        real,
        shown: shown.to_string(),
        named: path.to_path_buf(),
    })
}

impl Opened {
    /// The whole text, read from the descriptor that was checked; a UTF-8
    /// byte-order mark is dropped.
    pub fn read_text(self) -> Result<String, Problem> {
        let shown = self.shown;
        let mut bytes = Vec::with_capacity(self.stat.st_size.max(0) as usize);
        let mut file = std::fs::File::from(self.fd);
        // One byte past the limit tells a file that grew after fstat.
        (&mut file)
            .take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| Problem::new(format!("cannot read `{shown}`: {}", lowercase(&err))))?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(too_large(&shown, bytes.len() as u64));
        }
        let text = String::from_utf8(bytes).map_err(|err| {
            let at = err.utf8_error().valid_up_to();
            let before = &err.as_bytes()[..at];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            Problem::new(format!(
                "`{shown}` is not UTF-8 text: line {line} has a byte that is not UTF-8"
            ))
            .hint("save the file as UTF-8")
        })?;
        Ok(match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_string(),
            None => text,
        })
    }

    pub fn identity(&self) -> (u64, u64) {
        (self.stat.st_dev, self.stat.st_ino)
    }
}

fn regular(stat: &Stat, shown: &str) -> Result<(), Problem> {
    let kind = FileType::from_raw_mode(stat.st_mode);
    let what = match kind {
        FileType::RegularFile => {
            let size = stat.st_size.max(0) as u64;
            return if size > MAX_FILE {
                Err(too_large(shown, size))
            } else {
                Ok(())
            };
        }
        FileType::Directory => "a folder",
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Socket => "a socket",
        FileType::Symlink | FileType::Unknown => "not a regular file",
    };
    let what = if what.starts_with("not") {
        what.to_string()
    } else {
        format!("{what}, not a regular file")
    };
    Err(
        Problem::new(format!("refusing to read `{shown}`: it is {what}"))
            .hint("scripts, modules and address lists are regular files"),
    )
}

fn too_large(shown: &str, size: u64) -> Problem {
    Problem::new(format!(
        "refusing to read `{shown}`: it is {size} bytes, more than the {} MiB fwscript reads",
        MAX_FILE >> 20
    ))
    .hint("is this the right file?")
}

/// The real path of what `fd` is: the kernel's name for the descriptor,
/// checked to still lead to the same file.
fn real_path(fd: &OwnedFd, path: &Path, stat: &Stat) -> Option<PathBuf> {
    let named = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ok()
        .filter(|p| p.is_absolute())
        .or_else(|| std::fs::canonicalize(path).ok())?;
    let now = rustix::fs::statat(CWD, &named, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    (now.st_dev == stat.st_dev && now.st_ino == stat.st_ino).then_some(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &Path) -> String {
        match open(path, "x") {
            Ok(opened) => opened.read_text().unwrap_err().message,
            Err(problem) => problem.message,
        }
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(refused(dir.path()).contains("a folder, not a regular file"));
        assert!(refused(Path::new("/dev/zero")).contains("a character device"));
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        assert!(refused(&fifo).contains("a FIFO"));
        let link = dir.path().join("zero.rhai");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(refused(&link).contains("a character device"));
    }

    #[test]
    fn big_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.rhai");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_FILE + 1).unwrap();
        assert!(
            refused(&big).contains("more than the 4 MiB"),
            "{}",
            refused(&big)
        );
        file.set_len(MAX_FILE).unwrap();
        assert_eq!(
            open(&big, "x").unwrap().read_text().unwrap().len() as u64,
            MAX_FILE
        );
    }

    #[test]
    fn a_symlink_is_followed_to_its_real_path_and_a_bom_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.rhai");
        std::fs::write(&real, "\u{feff}allow_tcp(1);\r\n").unwrap();
        let link = dir.path().join("link.rhai");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let opened = open(&link, "link.rhai").unwrap();
        assert_eq!(opened.real, real.canonicalize().unwrap());
        assert_eq!(opened.read_text().unwrap(), "allow_tcp(1);\r\n");
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("latin1.rhai");
        std::fs::write(&file, b"allow_tcp(1);\n// caf\xe9\n").unwrap();
        assert!(refused(&file).contains("line 2"), "{}", refused(&file));
    }
}
