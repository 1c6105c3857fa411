//! The packets of `fwscript test --kernel`, sent from a namespace, and what
//! became of each as the sender sees it: a TCP handshake, a UDP answer or
//! an ICMP echo reply means the packet was accepted (the listener says
//! where it arrived, after any NAT); an ICMP error back means rejected;
//! silence until the deadline means dropped.

use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::netns::inside;
use super::socket::Socket;
use super::KernelError;
use crate::explain::Verdict;
use crate::testing::Landing;

/// How long a probe waits before it takes silence for a drop. An answer
/// between namespaces of one host comes in well under a millisecond; the
/// first SYN retransmission comes after a second.
pub const WAIT: Duration = Duration::from_millis(600);

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub verdict: Verdict,
    /// Where an accepted packet arrived, as the listener there saw it.
    pub landing: Option<Landing>,
    /// Something worth saying ("accepted, but nothing listened").
    pub note: Option<String>,
}

impl Found {
    fn verdict(verdict: Verdict) -> Found {
        Found {
            verdict,
            landing: None,
            note: None,
        }
    }
}

/// A TCP connect from `src` (port `sport`, or any) in namespace `netns`.
pub fn tcp(
    netns: &str,
    src: IpAddr,
    sport: Option<u16>,
    dst: SocketAddr,
) -> Result<Found, KernelError> {
    let (socket, icmp) = inside(netns, || -> io::Result<(Socket, Socket)> {
        let icmp = Socket::new(src, libc::SOCK_RAW, icmp_proto(src))?;
        let socket = Socket::new(src, libc::SOCK_STREAM, 0)?;
        socket.reuse_address()?;
        socket.bind(SocketAddr::new(src, sport.unwrap_or(0)))?;
        Ok((socket, icmp))
    })?
    .map_err(|e| setup(&format!("make a TCP socket for {src}"), e))?;
    socket
        .start_connect(dst)
        .map_err(|e| setup(&format!("connect to {dst}"), e))?;
    let sport = socket.local_port();
    let deadline = Instant::now() + WAIT;
    // An ICMP error back is a REJECT, whatever the connect makes of it
    // (IPv6 TCP takes the first one only as a soft error, and retries).
    loop {
        match poll_two(&socket, &icmp, deadline) {
            Ready::Neither => return Ok(Found::verdict(Verdict::Drop)),
            Ready::Icmp => {
                if icmp_error_seen(&icmp, src, sport, Instant::now()) {
                    return Ok(Found::verdict(Verdict::Reject));
                }
            }
            Ready::Socket => break,
        }
    }
    match socket.take_error().unwrap_or(libc::EIO) {
        0 => {
            let stream = TcpStream::from(socket.into_fd());
            stream.set_nonblocking(false).ok();
            stream.set_read_timeout(Some(WAIT)).ok();
            let landing = read_landing(BufReader::new(&stream));
            Ok(Found {
                verdict: Verdict::Accept,
                landing,
                note: None,
            })
        }
        libc::ECONNREFUSED => {
            // A reset (the path is open, nothing listened there) or an ICMP
            // port-unreachable (a REJECT): the raw socket tells which.
            let until = Instant::now() + Duration::from_millis(100);
            if icmp_error_seen(&icmp, src, sport, until) {
                Ok(Found::verdict(Verdict::Reject))
            } else {
                Ok(Found {
                    verdict: Verdict::Accept,
                    landing: None,
                    note: Some("accepted, but nothing listened where it arrived".into()),
                })
            }
        }
        libc::ETIMEDOUT => Ok(Found::verdict(Verdict::Drop)),
        // Host or network unreachable, prohibited: an ICMP error, a REJECT.
        _ => Ok(Found::verdict(Verdict::Reject)),
    }
}

enum Ready {
    Socket,
    Icmp,
    Neither,
}

/// Waits until the connect has an outcome or an ICMP message arrived.
fn poll_two(socket: &Socket, icmp: &Socket, deadline: Instant) -> Ready {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [
            libc::pollfd {
                fd: socket.fd(),
                events: libc::POLLOUT,
                revents: 0,
            },
            libc::pollfd {
                fd: icmp.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: two valid `pollfd`s.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        match rc {
            0 => return Ready::Neither,
            n if n > 0 => {
                if fds[0].revents != 0 {
                    return Ready::Socket;
                }
                return Ready::Icmp;
            }
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return Ready::Neither,
        }
    }
}

/// One datagram from `src`; the listener answers with where it arrived.
pub fn udp(
    netns: &str,
    src: IpAddr,
    sport: Option<u16>,
    dst: SocketAddr,
) -> Result<Found, KernelError> {
    let socket = inside(netns, || {
        UdpSocket::bind(SocketAddr::new(src, sport.unwrap_or(0)))
    })?
    .map_err(|e| setup(&format!("bind a UDP socket to {src}"), e))?;
    socket
        .connect(dst)
        .map_err(|e| setup(&format!("connect a UDP socket to {dst}"), e))?;
    socket.set_read_timeout(Some(WAIT)).ok();
    socket
        .send(b"fwscript test\n")
        .map_err(|e| setup(&format!("send to {dst}"), e))?;
    let mut buf = [0u8; 256];
    match socket.recv(&mut buf) {
        Ok(n) => Ok(Found {
            verdict: Verdict::Accept,
            landing: parse_landing(&String::from_utf8_lossy(&buf[..n])),
            note: None,
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Ok(Found::verdict(Verdict::Reject))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(Found::verdict(Verdict::Drop))
        }
        Err(_) => Ok(Found::verdict(Verdict::Reject)),
    }
}

/// An ICMP or ICMPv6 echo request from `src` to `dst`.
pub fn ping(netns: &str, src: IpAddr, dst: IpAddr) -> Result<Found, KernelError> {
    let socket = inside(netns, || -> io::Result<Socket> {
        let socket = Socket::new(src, libc::SOCK_RAW, icmp_proto(src))?;
        socket.bind(SocketAddr::new(src, 0))?;
        Ok(socket)
    })?
    .map_err(|e| setup(&format!("make an ICMP socket for {src}"), e))?;
    let id = (std::process::id() as u16) ^ 0x5a5a;
    socket
        .send_to(&echo_request(src.is_ipv4(), id), dst)
        .map_err(|e| setup(&format!("send an echo request to {dst}"), e))?;
    let deadline = Instant::now() + WAIT;
    while let Some((bytes, from)) = recv_until(&socket, deadline) {
        let icmp = if src.is_ipv4() {
            strip_ipv4(&bytes)
        } else {
            Some(&bytes[..])
        };
        let Some(icmp) = icmp else { continue };
        match (src.is_ipv4(), icmp.first()) {
            (true, Some(0)) | (false, Some(129)) if from == dst && echo_id(icmp) == Some(id) => {
                return Ok(Found::verdict(Verdict::Accept))
            }
            (true, Some(3)) | (false, Some(1)) => return Ok(Found::verdict(Verdict::Reject)),
            _ => {}
        }
    }
    Ok(Found::verdict(Verdict::Drop))
}

fn setup(what: &str, e: io::Error) -> KernelError {
    KernelError::Setup {
        what: what.to_string(),
        message: e.to_string(),
    }
}

fn icmp_proto(addr: IpAddr) -> libc::c_int {
    match addr {
        IpAddr::V4(_) => libc::IPPROTO_ICMP,
        IpAddr::V6(_) => libc::IPPROTO_ICMPV6,
    }
}

/// `ADDR PORT` as the listeners write it.
fn parse_landing(text: &str) -> Option<Landing> {
    let mut words = text.split_whitespace();
    let dst = words.next()?.parse().ok()?;
    let dport = words.next()?.parse().ok()?;
    Some(Landing {
        dst: Some(dst),
        dport: Some(dport),
    })
}

fn read_landing(mut reader: impl BufRead) -> Option<Landing> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    parse_landing(&line)
}

/// Whether an ICMP destination-unreachable about our source port arrived
/// by `deadline`.
fn icmp_error_seen(icmp: &Socket, src: IpAddr, sport: u16, deadline: Instant) -> bool {
    while let Some((bytes, _)) = recv_until(icmp, deadline) {
        let (kind, quoted) = if src.is_ipv4() {
            let Some(msg) = strip_ipv4(&bytes) else {
                continue;
            };
            let Some(inner) = msg.get(8..).and_then(strip_ipv4_header_only) else {
                continue;
            };
            (msg[0], inner)
        } else {
            let Some(inner) = bytes.get(8 + 40..) else {
                continue;
            };
            (bytes[0], inner)
        };
        let unreachable = (src.is_ipv4() && kind == 3) || (!src.is_ipv4() && kind == 1);
        if unreachable && quoted.get(0..2) == Some(&sport.to_be_bytes()[..]) {
            return true;
        }
    }
    false
}

/// The payload of an IPv4 packet as a raw socket delivers it.
fn strip_ipv4(packet: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    packet.get(ihl..)
}

fn strip_ipv4_header_only(packet: &[u8]) -> Option<&[u8]> {
    strip_ipv4(packet)
}

fn echo_id(icmp: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*icmp.get(4)?, *icmp.get(5)?]))
}

fn echo_request(ipv4: bool, id: u16) -> Vec<u8> {
    let kind = if ipv4 { 8 } else { 128 };
    let mut message = vec![kind, 0, 0, 0];
    message.extend(id.to_be_bytes());
    message.extend(1u16.to_be_bytes());
    message.extend(b"fwscript test");
    if ipv4 {
        // ICMPv6's checksum the kernel fills in; ICMP's is ours.
        let sum = checksum(&message);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    message
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The next datagram before `deadline`; a failed receive is waited past,
/// as silence is what the probe judges.
fn recv_until(socket: &Socket, deadline: Instant) -> Option<(Vec<u8>, IpAddr)> {
    loop {
        match socket.recv(deadline) {
            Ok(found) => return found,
            Err(_) if Instant::now() < deadline => {}
            Err(_) => return None,
        }
    }
}
