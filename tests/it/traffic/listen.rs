//! Listeners on the server side: TCP and UDP sockets made inside a
//! namespace, bound to the wildcard address of both families.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use super::inside::inside;

/// A TCP listener. The kernel completes handshakes into its backlog, so a
/// connect succeeds whether or not the test accepts; `accept` tells which
/// listener a connection reached and from where.
pub struct Tcp(TcpListener);

impl Tcp {
    /// Listens on `port` of every address of `netns`, IPv4 and IPv6.
    pub fn bind(netns: &str, port: u16) -> Tcp {
        let listener = inside(netns, || TcpListener::bind(("::", port)))
            .unwrap_or_else(|e| panic!("listen on tcp/{port} in {netns}: {e}"));
        listener.set_nonblocking(true).expect("nonblocking");
        Tcp(listener)
    }

    /// The next connection that arrives within `wait`: its local and peer
    /// addresses (IPv4 ones unmapped from `::ffff:…`).
    pub fn accept(&self, wait: Duration) -> Option<(SocketAddr, SocketAddr)> {
        let deadline = Instant::now() + wait;
        loop {
            match self.0.accept() {
                Ok((stream, peer)) => {
                    let local = stream.local_addr().expect("local address");
                    return Some((unmapped(local), unmapped(peer)));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

/// A UDP listener: receives, and answers when told to.
pub struct Udp(UdpSocket);

impl Udp {
    /// Listens on `port` of every address of `netns`, IPv4 and IPv6.
    pub fn bind(netns: &str, port: u16) -> Udp {
        Udp::bind_to(netns, SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))
    }

    /// Listens on one address: its replies then come from that address,
    /// as a server's must for the client's conntrack to pair them.
    pub fn bind_to(netns: &str, addr: SocketAddr) -> Udp {
        let socket = inside(netns, || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("listen on udp {addr} in {netns}: {e}"));
        Udp(socket)
    }

    /// The next datagram that arrives within `wait`, and its source.
    pub fn receive(&self, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 1500];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.0.set_read_timeout(Some(left)).expect("read timeout");
            match self.0.recv_from(&mut buf) {
                Ok((n, from)) => return Some((buf[..n].to_vec(), unmapped(from))),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                // A signal, or an ICMP error queued for an earlier datagram:
                // not this one's fate.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => panic!("recv on {:?}: {e} ({:?})", self.0.local_addr(), e.kind()),
            }
        }
    }

    /// Sends `payload` back to `peer`, as a server answers a query.
    pub fn reply(&self, payload: &[u8], peer: SocketAddr) {
        // A wildcard socket is IPv6's: an IPv4 peer is `::ffff:a.b.c.d`.
        let ipv6_socket = self.0.local_addr().expect("local address").is_ipv6();
        let peer = match peer {
            SocketAddr::V4(v4) if ipv6_socket => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            other => other,
        };
        self.0.send_to(payload, peer).expect("send reply");
    }
}

fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}
