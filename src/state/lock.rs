//! One writer at a time (state → **lock**): every command that may write
//! the kernel holds an exclusive lock on the state folder from its first
//! read to its last state write. Without it two applies at once each put
//! the other's half back and left an empty kernel with ACCEPT policies.
//!
//! The lock is `flock` on the folder itself, so it needs no file of its own
//! (a read-only state folder can still be locked, and `rollback` still
//! works there), and the kernel releases it when its holder dies, even by
//! `kill -9`. Who holds it is written, best effort, to `lock-holder` for
//! the message a waiting writer gives.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

/// How often a waiting writer tries again.
const POLL: Duration = Duration::from_millis(25);

/// The file that names the current holder, for people and messages.
pub const HOLDER: &str = "lock-holder";

/// Held while it lives; dropping it (or the process dying) releases it.
#[derive(Debug)]
pub struct WriterLock<'a> {
    folder: BorrowedFd<'a>,
}

/// Takes the lock, waiting up to `wait`. `Err(waited)` when another writer
/// kept it that long.
pub fn acquire(folder: BorrowedFd<'_>, wait: Duration) -> Result<WriterLock<'_>, Duration> {
    let started = Instant::now();
    loop {
        match rustix::fs::flock(folder, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(WriterLock { folder }),
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) if started.elapsed() >= wait => return Err(started.elapsed()),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

impl WriterLock<'_> {
    pub fn folder(&self) -> BorrowedFd<'_> {
        self.folder.as_fd()
    }
}

impl Drop for WriterLock<'_> {
    fn drop(&mut self) {
        // The holder's note goes first, so nobody reads a stale one.
        let _ = rustix::fs::unlinkat(self.folder, HOLDER, rustix::fs::AtFlags::empty());
        let _ = rustix::fs::flock(self.folder, FlockOperation::Unlock);
    }
}

/// The note `lock-holder` holds: who, doing what, since when.
pub fn holder_note(pid: u32, doing: &str, since: &str) -> String {
    format!("pid {pid}, `fwscript {doing}` since {since}")
}

/// Reads a holder's note back, unless its process is gone (killed with
/// the lock held: the kernel released the lock, the note stayed).
pub fn live_holder(note: &str) -> Option<String> {
    let pid = note.strip_prefix("pid ")?.split(',').next()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then(|| note.trim().to_string())
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;

    use rustix::fs::{Mode, OFlags, CWD};

    use super::*;

    fn open(path: &std::path::Path) -> OwnedFd {
        rustix::fs::openat(
            CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn a_second_writer_waits_then_gives_up_and_gets_it_once_free() {
        let dir = tempfile::tempdir().unwrap();
        // Two opens of one folder: two writers, as two processes would be.
        let (first, second) = (open(dir.path()), open(dir.path()));
        let held = acquire(first.as_fd(), Duration::ZERO).unwrap();
        let waited = acquire(second.as_fd(), Duration::from_millis(60)).unwrap_err();
        assert!(waited >= Duration::from_millis(60), "{waited:?}");
        drop(held);
        acquire(second.as_fd(), Duration::ZERO).unwrap();
    }
}
