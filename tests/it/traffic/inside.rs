//! Running a closure inside a network namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Runs `f` on a thread of its own that has joined the namespace `netns`
/// (made by `ip netns add`), and returns what it returns. Sockets made in
/// `f` belong to that namespace for good, whichever thread uses them later;
/// the thread itself ends with `f`, so no other code ever runs inside.
pub fn inside<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = Path::new("/run/netns").join(netns);
    let handle = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            // SAFETY: joins a namespace on this thread only; the fd is valid
            // for the duration of the call.
            let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {netns}: {}", io::Error::last_os_error());
            f()
        });
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
