//! The listeners of `fwscript test --kernel`: in each namespace, TCP and
//! UDP sockets on every port a probe may arrive at, each answering with
//! the address and port the packet arrived at (after NAT), so the sender
//! learns where it landed. One thread per namespace serves them all until
//! the value drops.

use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::netns::inside;
use super::KernelError;

/// Listeners serving in one namespace.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens in `netns` on TCP `tcp_ports` (every address, both
    /// families) and UDP `udp_ports` of each of `addrs` (a UDP answer must
    /// come from the address asked, so each is bound on its own).
    pub fn start(
        netns: &str,
        tcp_ports: &[u16],
        udp_ports: &[u16],
        addrs: &[IpAddr],
    ) -> Result<Server, KernelError> {
        let (tcp, udp) = inside(
            netns,
            || -> io::Result<(Vec<TcpListener>, Vec<UdpSocket>)> {
                let mut tcp = Vec::new();
                for &port in tcp_ports {
                    let listener =
                        TcpListener::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))?;
                    listener.set_nonblocking(true)?;
                    tcp.push(listener);
                }
                let mut udp = Vec::new();
                for &addr in addrs {
                    for &port in udp_ports {
                        let socket = UdpSocket::bind(SocketAddr::new(addr, port))?;
                        socket.set_nonblocking(true)?;
                        udp.push(socket);
                    }
                }
                Ok((tcp, udp))
            },
        )?
        .map_err(|e| KernelError::Setup {
            what: format!("listen in `{netns}`"),
            message: e.to_string(),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || serve(&tcp, &udp, &flag));
        Ok(Server {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(tcp: &[TcpListener], udp: &[UdpSocket], stop: &AtomicBool) {
    let mut fds: Vec<libc::pollfd> = tcp
        .iter()
        .map(|l| l.as_raw_fd())
        .chain(udp.iter().map(|s| s.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `fds` is a valid array of `pollfd` of its length.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if rc <= 0 {
            if fds.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        }
        for listener in tcp {
            while let Ok((mut stream, _)) = listener.accept() {
                if let Ok(local) = stream.local_addr() {
                    let _ = stream.set_nonblocking(false);
                    let _ = writeln!(stream, "{} {}", unmapped(local.ip()), local.port());
                }
            }
        }
        for socket in udp {
            let mut buf = [0u8; 512];
            while let Ok((_, peer)) = socket.recv_from(&mut buf) {
                if let Ok(local) = socket.local_addr() {
                    let answer = format!("{} {}\n", unmapped(local.ip()), local.port());
                    let _ = socket.send_to(answer.as_bytes(), peer);
                }
            }
        }
    }
}

fn unmapped(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}
