//! Probes sent from a namespace: each says whether its packet reached the
//! other side, as seen from the sender (an answer came) or, for UDP, from
//! the listener (see `listen`).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::inside::inside;
use super::packet;
use super::socket::Socket;

/// How long a probe waits for an answer that should come. Generous: an
/// answer ends the wait at once, so this only bounds a failing test.
pub const ANSWER: Duration = Duration::from_secs(5);

/// How long a probe listens before it concludes that its packet was
/// dropped. An answer between namespaces on one host takes well under a
/// millisecond.
pub const SILENCE: Duration = Duration::from_millis(500);

/// What became of a TCP connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The handshake completed: a listener is there and the path is open.
    Open,
    /// A reset came back: the path is open, nothing listens.
    Refused,
    /// An ICMP error came back (a REJECT, or no route).
    Unreachable,
    /// No answer at all: something dropped the SYN (or its answer).
    Filtered,
}

impl Reach {
    /// How long a probe expecting this outcome waits.
    pub fn wait(self) -> Duration {
        match self {
            Reach::Filtered => SILENCE,
            _ => ANSWER,
        }
    }
}

/// A TCP connect from `src` (an address of namespace `netns`) to `dst`.
pub fn tcp_connect(netns: &str, src: IpAddr, dst: SocketAddr, wait: Duration) -> Reach {
    inside(netns, || {
        let socket = Socket::bound(src, libc::SOCK_STREAM, 0);
        socket.start_connect(dst);
        if !socket.wait_writable(wait) {
            return Reach::Filtered;
        }
        match socket.take_error() {
            0 => Reach::Open,
            libc::ECONNREFUSED => Reach::Refused,
            libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES | libc::EPERM => {
                Reach::Unreachable
            }
            libc::ETIMEDOUT => Reach::Filtered,
            other => panic!(
                "connect {src} → {dst}: {}",
                std::io::Error::from_raw_os_error(other)
            ),
        }
    })
}

/// A UDP socket of namespace `netns` bound to `src`, any port.
pub fn udp_socket(netns: &str, src: IpAddr) -> UdpSocket {
    inside(netns, || UdpSocket::bind(SocketAddr::new(src, 0))).expect("bind udp")
}

/// One UDP datagram from `src` to `dst`; whether it arrived is for the
/// listener to say.
pub fn udp_send(netns: &str, src: IpAddr, dst: SocketAddr, payload: &[u8]) {
    let socket = udp_socket(netns, src);
    socket.send_to(payload, dst).expect("send udp");
}

/// An ICMP or ICMPv6 echo request from `src` to `dst`: whether the reply
/// came within `wait`.
pub fn ping(netns: &str, src: IpAddr, dst: IpAddr, wait: Duration) -> bool {
    let ipv4 = dst.is_ipv4();
    let protocol = match ipv4 {
        true => libc::IPPROTO_ICMP,
        false => libc::IPPROTO_ICMPV6,
    };
    let socket = inside(netns, || Socket::bound(src, libc::SOCK_RAW, protocol));
    let id = next_id();
    socket.send_to(&packet::echo_request(ipv4, id, 1), dst);
    let deadline = Instant::now() + wait;
    while let Some((bytes, from)) = socket.recv_until(deadline) {
        if from == dst && packet::is_echo_reply(&bytes, ipv4, id) {
            return true;
        }
    }
    false
}

/// One hand-made TCP segment with exactly `flags` from `src` to `dst`,
/// outside any connection: the flags of the segment that answered it within
/// `wait` (a reset, usually), or `None`.
pub fn tcp_segment(
    netns: &str,
    src: IpAddr,
    dst: SocketAddr,
    flags: u8,
    wait: Duration,
) -> Option<u8> {
    let socket = inside(netns, || {
        Socket::bound(src, libc::SOCK_RAW, libc::IPPROTO_TCP)
    });
    let sport = 40_000 + next_id() % 20_000;
    let segment = packet::tcp_segment(src, dst.ip(), sport, dst.port(), flags);
    socket.send_to(&segment, dst.ip());
    let deadline = Instant::now() + wait;
    while let Some((bytes, from)) = socket.recv_until(deadline) {
        if from != dst.ip() {
            continue;
        }
        if let Some(flags) = packet::tcp_reply_flags(&bytes, dst.is_ipv4(), sport, dst.port()) {
            return Some(flags);
        }
    }
    None
}

/// Distinct ICMP ids and source ports for probes running in parallel.
fn next_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let pid = std::process::id() as u16;
    pid.wrapping_mul(31)
        .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}
