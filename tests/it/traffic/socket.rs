//! The few socket calls std does not offer: a TCP connect from a chosen
//! source address with a deadline, and raw sockets for hand-made packets.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub struct Socket(OwnedFd);

impl Socket {
    /// A non-blocking socket of `family(addr)`, bound to `source` (port 0:
    /// any).
    pub fn bound(source: IpAddr, kind: libc::c_int, protocol: libc::c_int) -> Socket {
        let domain = match source {
            IpAddr::V4(_) => libc::AF_INET,
            IpAddr::V6(_) => libc::AF_INET6,
        };
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::socket(domain, kind | flags, protocol) };
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let socket = Socket(unsafe { OwnedFd::from_raw_fd(fd) });
        let (addr, len) = sockaddr(SocketAddr::new(source, 0));
        // SAFETY: `addr` is a valid socket address of `len` bytes.
        let rc = unsafe { libc::bind(socket.fd(), (&raw const addr).cast(), len) };
        assert_eq!(rc, 0, "bind {source}: {}", io::Error::last_os_error());
        socket
    }

    fn fd(&self) -> libc::c_int {
        self.0.as_raw_fd()
    }

    /// Starts a TCP connect; the outcome is for `wait_writable` and
    /// `take_error`.
    pub fn start_connect(&self, dest: SocketAddr) {
        let (addr, len) = sockaddr(dest);
        // SAFETY: `addr` is a valid socket address of `len` bytes.
        let rc = unsafe { libc::connect(self.fd(), (&raw const addr).cast(), len) };
        let error = io::Error::last_os_error();
        assert!(
            rc == 0 || error.raw_os_error() == Some(libc::EINPROGRESS),
            "connect {dest}: {error}"
        );
    }

    /// Waits until the socket is writable (a connect has an outcome) or
    /// `wait` has passed; false when it passed.
    pub fn wait_writable(&self, wait: Duration) -> bool {
        self.poll(libc::POLLOUT, Instant::now() + wait)
    }

    /// The pending error of the socket (`SO_ERROR`), 0 for none.
    pub fn take_error(&self) -> i32 {
        let mut error: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `error` and `len` are valid for writes of their sizes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&raw mut error).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", io::Error::last_os_error());
        error
    }

    pub fn send_to(&self, bytes: &[u8], dest: IpAddr) {
        let (addr, len) = sockaddr(SocketAddr::new(dest, 0));
        // SAFETY: `bytes` and `addr` are valid for reads of their lengths.
        let sent = unsafe {
            libc::sendto(
                self.fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&raw const addr).cast(),
                len,
            )
        };
        assert_eq!(
            sent,
            bytes.len() as isize,
            "sendto {dest}: {}",
            io::Error::last_os_error()
        );
    }

    /// The next datagram that arrives before `deadline`, and who sent it.
    pub fn recv_until(&self, deadline: Instant) -> Option<(Vec<u8>, IpAddr)> {
        let mut buf = vec![0u8; 2048];
        loop {
            if !self.poll(libc::POLLIN, deadline) {
                return None;
            }
            // SAFETY: zeroed bytes are a valid `sockaddr_storage`.
            let mut from: libc::sockaddr_storage = unsafe { mem::zeroed() };
            let mut len = mem::size_of_val(&from) as libc::socklen_t;
            // SAFETY: `buf` and `from` are valid for writes of their lengths.
            let n = unsafe {
                libc::recvfrom(
                    self.fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let error = io::Error::last_os_error();
                assert_eq!(error.kind(), io::ErrorKind::WouldBlock, "recvfrom: {error}");
                continue;
            }
            buf.truncate(n as usize);
            return Some((buf, ip_of(&from)));
        }
    }

    /// Polls for `events` until `deadline`; false when it passed first.
    fn poll(&self, events: libc::c_short, deadline: Instant) -> bool {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fd = libc::pollfd {
                fd: self.fd(),
                events,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
            // SAFETY: one valid `pollfd`.
            let rc = unsafe { libc::poll(&mut fd, 1, ms) };
            match rc {
                0 => return false,
                n if n > 0 => return true,
                _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                _ => panic!("poll: {}", io::Error::last_os_error()),
            }
        }
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: zeroed bytes are a valid `sockaddr_storage`.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is larger than and aligned for
            // `sockaddr_in`.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in>().write(sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for `sockaddr_in6`.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in6>().write(sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn ip_of(storage: &libc::sockaddr_storage) -> IpAddr {
    let ptr = (storage as *const libc::sockaddr_storage).cast::<u8>();
    match storage.ss_family as libc::c_int {
        // SAFETY: the family says which address type the storage holds.
        libc::AF_INET => {
            let sin = unsafe { ptr.cast::<libc::sockaddr_in>().read() };
            IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
        }
        _ => {
            // SAFETY: as above.
            let sin6 = unsafe { ptr.cast::<libc::sockaddr_in6>().read() };
            IpAddr::from(sin6.sin6_addr.s6_addr)
        }
    }
}
