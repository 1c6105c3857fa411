//! The few socket calls std does not offer, for the probes of `fwscript
//! test --kernel` (and the project's own traffic tests): a non-blocking
//! socket bound where asked, a TCP connect with a deadline, raw sockets for
//! hand-made packets. Every call says what went wrong; the caller decides
//! whether that is a verdict or a broken test.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub struct Socket(OwnedFd);

impl Socket {
    /// A non-blocking socket of `family_of`'s family.
    pub fn new(family_of: IpAddr, kind: libc::c_int, protocol: libc::c_int) -> io::Result<Socket> {
        let domain = match family_of {
            IpAddr::V4(_) => libc::AF_INET,
            IpAddr::V6(_) => libc::AF_INET6,
        };
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                domain,
                kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        Ok(Socket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> libc::c_int {
        self.0.as_raw_fd()
    }

    /// The descriptor, for std to take over (a connected TCP socket).
    pub fn into_fd(self) -> OwnedFd {
        self.0
    }

    pub fn reuse_address(&self) -> io::Result<()> {
        let one: libc::c_int = 1;
        // SAFETY: `one` is valid for reads of its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&raw const one).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        checked(rc)
    }

    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        let (storage, len) = sockaddr(addr);
        // SAFETY: `storage` is a valid socket address of `len` bytes.
        let rc = unsafe { libc::bind(self.fd(), (&raw const storage).cast(), len) };
        checked(rc)
    }

    /// Starts a TCP connect; the outcome is for [`Socket::wait_writable`]
    /// and [`Socket::take_error`].
    pub fn start_connect(&self, dest: SocketAddr) -> io::Result<()> {
        let (storage, len) = sockaddr(dest);
        // SAFETY: as in `bind`.
        let rc = unsafe { libc::connect(self.fd(), (&raw const storage).cast(), len) };
        let error = io::Error::last_os_error();
        if rc == 0 || error.raw_os_error() == Some(libc::EINPROGRESS) {
            Ok(())
        } else {
            Err(error)
        }
    }

    /// Waits until the socket is writable (a connect has an outcome) or
    /// `wait` has passed; false when it passed.
    pub fn wait_writable(&self, wait: Duration) -> io::Result<bool> {
        self.poll(libc::POLLOUT, Instant::now() + wait)
    }

    /// The pending error of the socket (`SO_ERROR`), 0 for none.
    pub fn take_error(&self) -> io::Result<i32> {
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
        checked(rc).map(|()| error)
    }

    /// The port the socket is bound to; 0 when it cannot be told.
    pub fn local_port(&self) -> u16 {
        // SAFETY: zeroed bytes are a valid `sockaddr_storage`.
        let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut len = mem::size_of_val(&storage) as libc::socklen_t;
        // SAFETY: `storage` and `len` are valid for writes.
        let rc = unsafe { libc::getsockname(self.fd(), (&raw mut storage).cast(), &mut len) };
        if rc != 0 {
            return 0;
        }
        match storage.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a `sockaddr_in`.
                let sin = unsafe { (&raw const storage).cast::<libc::sockaddr_in>().read() };
                u16::from_be(sin.sin_port)
            }
            _ => {
                // SAFETY: as above, for `sockaddr_in6`.
                let sin6 = unsafe { (&raw const storage).cast::<libc::sockaddr_in6>().read() };
                u16::from_be(sin6.sin6_port)
            }
        }
    }

    pub fn send_to(&self, bytes: &[u8], dest: IpAddr) -> io::Result<()> {
        let (storage, len) = sockaddr(SocketAddr::new(dest, 0));
        // SAFETY: `bytes` and `storage` are valid for reads of their lengths.
        let sent = unsafe {
            libc::sendto(
                self.fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&raw const storage).cast(),
                len,
            )
        };
        if sent == bytes.len() as isize {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The next datagram that arrives before `deadline`, and who sent it;
    /// `None` when the deadline passed first. A failed receive other than
    /// "nothing yet" is an error.
    pub fn recv(&self, deadline: Instant) -> io::Result<Option<(Vec<u8>, IpAddr)>> {
        let mut buf = vec![0u8; 2048];
        loop {
            if !self.poll(libc::POLLIN, deadline)? {
                return Ok(None);
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
                match error.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => continue,
                    _ => return Err(error),
                }
            }
            buf.truncate(n as usize);
            return Ok(Some((buf, ip_of(&from))));
        }
    }

    /// Polls for `events` until `deadline`; false when it passed first.
    pub fn poll(&self, events: libc::c_short, deadline: Instant) -> io::Result<bool> {
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
                0 => return Ok(false),
                n if n > 0 => return Ok(true),
                _ => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        return Err(error);
                    }
                }
            }
        }
    }
}

fn checked(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
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
            // SAFETY: `sockaddr_storage` is larger than and aligned for it.
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
            // SAFETY: as above.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in6>().write(sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn ip_of(storage: &libc::sockaddr_storage) -> IpAddr {
    let ptr = (storage as *const libc::sockaddr_storage).cast::<u8>();
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says which address type the storage holds.
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
