//! The library's sockets (`fwscript::testing::kernel::socket`), for the
//! traffic tests: any failure of the socket calls themselves is a broken
//! test, not a verdict, so it panics with what failed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use fwscript::testing::kernel::socket;

pub struct Socket(socket::Socket);

impl Socket {
    /// A non-blocking socket of `source`'s family, bound to `source` (port
    /// 0: any).
    pub fn bound(source: IpAddr, kind: libc::c_int, protocol: libc::c_int) -> Socket {
        let socket =
            socket::Socket::new(source, kind, protocol).unwrap_or_else(|e| panic!("socket: {e}"));
        socket
            .bind(SocketAddr::new(source, 0))
            .unwrap_or_else(|e| panic!("bind {source}: {e}"));
        Socket(socket)
    }

    /// Starts a TCP connect; the outcome is for `wait_writable` and
    /// `take_error`.
    pub fn start_connect(&self, dest: SocketAddr) {
        self.0
            .start_connect(dest)
            .unwrap_or_else(|e| panic!("connect {dest}: {e}"));
    }

    /// Waits until the socket is writable (a connect has an outcome) or
    /// `wait` has passed; false when it passed.
    pub fn wait_writable(&self, wait: Duration) -> bool {
        self.0
            .wait_writable(wait)
            .unwrap_or_else(|e| panic!("poll: {e}"))
    }

    /// The pending error of the socket (`SO_ERROR`), 0 for none.
    pub fn take_error(&self) -> i32 {
        self.0
            .take_error()
            .unwrap_or_else(|e| panic!("getsockopt: {e}"))
    }

    pub fn send_to(&self, bytes: &[u8], dest: IpAddr) {
        self.0
            .send_to(bytes, dest)
            .unwrap_or_else(|e| panic!("sendto {dest}: {e}"));
    }

    /// The next datagram that arrives before `deadline`, and who sent it.
    pub fn recv_until(&self, deadline: Instant) -> Option<(Vec<u8>, IpAddr)> {
        self.0
            .recv(deadline)
            .unwrap_or_else(|e| panic!("recvfrom: {e}"))
    }
}
