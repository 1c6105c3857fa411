//! Hand-made TCP segments and ICMP echo requests, and reading the answers.
//! Raw sockets leave the IP header to the kernel; only the transport
//! header is built here.

use std::net::IpAddr;

/// TCP flag bits, as in the header.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const NONE: u8 = 0;
    pub const ALL: u8 = FIN | SYN | RST | PSH | ACK | URG;
}

const TCP: u8 = 6;

/// A 20-byte TCP header with these ports and flags, its checksum computed
/// for `src` → `dst`.
pub fn tcp_segment(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut segment = Vec::with_capacity(20);
    segment.extend(sport.to_be_bytes());
    segment.extend(dport.to_be_bytes());
    segment.extend(0x1234_5678u32.to_be_bytes()); // sequence
    let ack: u32 = if flags & flags::ACK != 0 {
        0x0bad_cafe
    } else {
        0
    };
    segment.extend(ack.to_be_bytes());
    segment.push(5 << 4); // data offset: five 32-bit words, no options
    segment.push(flags);
    segment.extend(1024u16.to_be_bytes()); // window
    segment.extend([0, 0, 0, 0]); // checksum, urgent pointer
    let sum = checksum(&[&pseudo_header(src, dst, TCP, segment.len()), &segment]);
    segment[16..18].copy_from_slice(&sum.to_be_bytes());
    segment
}

/// The flags of a TCP segment from `dport` back to `sport`, if `packet`
/// (as a raw socket of `family` delivers it) is one.
pub fn tcp_reply_flags(packet: &[u8], ipv4: bool, sport: u16, dport: u16) -> Option<u8> {
    let tcp = if ipv4 { strip_ipv4(packet)? } else { packet };
    let ports = (tcp.get(0..2)?, tcp.get(2..4)?);
    let from_them = ports.0 == dport.to_be_bytes() && ports.1 == sport.to_be_bytes();
    from_them.then(|| tcp.get(13).copied()).flatten()
}

/// An ICMP (IPv4) or ICMPv6 echo request. For ICMPv6 the kernel fills in
/// the checksum, as it does for every raw ICMPv6 socket.
pub fn echo_request(ipv4: bool, id: u16, seq: u16) -> Vec<u8> {
    let kind = if ipv4 { 8 } else { 128 };
    let mut message = vec![kind, 0, 0, 0];
    message.extend(id.to_be_bytes());
    message.extend(seq.to_be_bytes());
    message.extend(b"fwscript traffic test");
    if ipv4 {
        let sum = checksum(&[&message]);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    message
}

/// Whether `packet` is the echo reply to `echo_request(ipv4, id, _)`.
pub fn is_echo_reply(packet: &[u8], ipv4: bool, id: u16) -> bool {
    let (icmp, kind) = match ipv4 {
        true => (strip_ipv4(packet), 0),
        false => (Some(packet), 129),
    };
    icmp.is_some_and(|m| m.len() >= 8 && m[0] == kind && m[4..6] == id.to_be_bytes())
}

/// What follows the IPv4 header (raw IPv4 sockets deliver it).
fn strip_ipv4(packet: &[u8]) -> Option<&[u8]> {
    let header = usize::from(packet.first()? & 0x0f) * 4;
    packet.get(header..)
}

fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            header.extend(src.octets());
            header.extend(dst.octets());
            header.extend([0, protocol]);
            header.extend((len as u16).to_be_bytes());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            header.extend(src.octets());
            header.extend(dst.octets());
            header.extend((len as u32).to_be_bytes());
            header.extend([0, 0, 0, protocol]);
        }
        _ => panic!("{src} and {dst} are of different families"),
    }
    header
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`,
/// each of even length but the last.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&bytes]), !0xddf2);
    }

    #[test]
    fn a_segment_sums_to_zero_with_its_pseudo_header() {
        let (src, dst) = ("192.0.2.2".parse().unwrap(), "192.0.2.1".parse().unwrap());
        let segment = tcp_segment(src, dst, 40000, 80, flags::ACK);
        assert_eq!(checksum(&[&pseudo_header(src, dst, TCP, 20), &segment]), 0);
        assert_eq!(segment[13], flags::ACK);
    }
}
