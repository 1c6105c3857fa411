//! The nf_tables generation (backend → **generation** → read cache): a
//! counter the kernel moves on at every nf_tables commit in a network
//! namespace, whoever makes it (iptables-nft, nft, Docker, fail2ban). Two
//! reads at the same generation of the same namespace in the same boot see
//! the same rules; iptables-nft trusts its own rule cache on exactly this
//! (it asks for the generation before and after filling it).
//!
//! Asked over netlink (`NFT_MSG_GETGEN`), one request and one answer: a
//! fraction of a millisecond, where a save of 10,000 rules takes 80.
//!
//! One change comes without a commit: a table made with nft's `owner` flag
//! vanishes when the process that made it exits, and the generation stays.
//! While such a table exists the generation tells nothing (a second
//! request lists the tables to know), so nothing read then is kept; a table
//! only gets the flag when it is made, which is a commit.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub use crate::netfilter::Generation;

// From <linux/netfilter/nfnetlink.h> and <linux/netfilter/nf_tables.h>.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFT_TABLE_F_OWNER: u32 = 2;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
/// `SO_NETNS_COOKIE` (Linux 5.14), not in every libc crate yet.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The generation of the namespace this process runs in; `None` where it
/// cannot be known (no nf_tables, a kernel without namespace cookies, a
/// netlink error) or tells nothing (a table that vanishes with its owner
/// exists): then nothing is taken from an earlier read, nor kept.
pub fn current() -> Option<Generation> {
    let socket = netlink_socket()?;
    let netns = netns_cookie(&socket)?;
    let id = generation_id(&socket)?;
    if owned_table(&socket)? {
        tracing::debug!("an nf_tables table vanishes with its owner: no read is kept");
        return None;
    }
    Some(Generation { netns, id })
}

fn netlink_socket() -> Option<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the descriptor returned is
    // owned by nothing else.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor, checked to be one.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // The kernel answers before the request's send returns; a second is
    // only there so that an answer lost never holds a command up.
    let wait = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: the option reads exactly one timeval from a live value.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&wait as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    (set == 0).then_some(socket)
}

fn netns_cookie(socket: &OwnedFd) -> Option<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the option writes at most `len` bytes into `cookie`.
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    (done == 0 && len as usize == std::mem::size_of::<u64>()).then_some(cookie)
}

fn generation_id(socket: &OwnedFd) -> Option<u32> {
    send(socket, NFT_MSG_GETGEN, 0)?;
    let mut answer = [0u8; 512];
    parse_answer(receive(socket, &mut answer)?)
}

/// Whether any table of the namespace has the `owner` flag, from a dump of
/// them all; `None` on a netlink error.
fn owned_table(socket: &OwnedFd) -> Option<bool> {
    Some(dump_tables(socket)?.owned)
}

/// The nf_tables tables of the namespace this process runs in, by nft's
/// family name (`ip`, `ip6`, `inet`, … ) and name; `None` where it cannot
/// be known. A fraction of a millisecond, where starting `nft` takes
/// several.
pub fn tables() -> Option<Vec<(&'static str, String)>> {
    let socket = netlink_socket()?;
    Some(dump_tables(&socket)?.tables)
}

fn dump_tables(socket: &OwnedFd) -> Option<Seen> {
    send(socket, NFT_MSG_GETTABLE, libc::NLM_F_DUMP as u16)?;
    let mut answer = vec![0u8; 32 << 10];
    let mut all = Seen::default();
    loop {
        let (seen, done) = match parse_tables(receive(socket, &mut answer)?)? {
            Tables::More(seen) => (seen, false),
            Tables::Done(seen) => (seen, true),
        };
        all.owned |= seen.owned;
        all.tables.extend(seen.tables);
        if done {
            return Some(all);
        }
    }
}

/// nft's name of a netfilter family (`NFPROTO_*`).
fn family_name(family: u8) -> &'static str {
    match family {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => "other",
    }
}

fn send(socket: &OwnedFd, message: u16, flags: u16) -> Option<()> {
    let request = request(message, flags);
    // SAFETY: sends the bytes of a live buffer of the length given.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
        )
    };
    (sent == request.len() as isize).then_some(())
}

fn receive<'a>(socket: &OwnedFd, buffer: &'a mut [u8]) -> Option<&'a [u8]> {
    // SAFETY: receives into a live buffer of the length given.
    let got = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            0,
        )
    };
    let got = usize::try_from(got).ok()?;
    Some(&buffer[..got])
}

/// `nlmsghdr` + `nfgenmsg`: a request, in host order as netlink wants (the
/// attributes of the answer are big-endian).
fn request(message: u16, flags: u16) -> [u8; NLMSG_HDRLEN + NFGENMSG_LEN] {
    let mut request = [0u8; NLMSG_HDRLEN + NFGENMSG_LEN];
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | message;
    let length = (NLMSG_HDRLEN + NFGENMSG_LEN) as u32;
    request[0..4].copy_from_slice(&length.to_ne_bytes());
    request[4..6].copy_from_slice(&kind.to_ne_bytes());
    request[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16 | flags).to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // nfgenmsg: family AF_UNSPEC, version NFNETLINK_V0, resource id 0.
    request
}

/// One datagram of a table dump: what its tables are, and whether the
/// dump goes on.
#[derive(Debug, PartialEq, Eq)]
enum Tables {
    More(Seen),
    Done(Seen),
}

/// Tables seen: whether one has the `owner` flag, and each one's family
/// and name.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    owned: bool,
    tables: Vec<(&'static str, String)>,
}

fn parse_tables(mut datagram: &[u8]) -> Option<Tables> {
    let mut seen = Seen::default();
    while !datagram.is_empty() {
        let length = u32::from_ne_bytes(datagram.get(0..4)?.try_into().ok()?) as usize;
        if length < NLMSG_HDRLEN {
            return None;
        }
        let message = datagram.get(..length)?;
        let kind = u16::from_ne_bytes(message.get(4..6)?.try_into().ok()?);
        match kind {
            NLMSG_DONE => return Some(Tables::Done(seen)),
            NLMSG_ERROR => return None,
            _ if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE => {
                let flags = attribute(message, NFTA_TABLE_FLAGS)?;
                seen.owned |= u32::from_be_bytes(flags.try_into().ok()?) & NFT_TABLE_F_OWNER != 0;
                let name = attribute(message, NFTA_TABLE_NAME)?;
                let name = name.strip_suffix(b"\0").unwrap_or(name);
                let family = family_name(*message.get(NLMSG_HDRLEN)?);
                seen.tables
                    .push((family, String::from_utf8_lossy(name).into_owned()));
            }
            _ => return None,
        }
        datagram = datagram.get(length.div_ceil(4) * 4..).unwrap_or_default();
    }
    Some(Tables::More(seen))
}

/// The value of the attribute `kind` of one nfnetlink message.
fn attribute(message: &[u8], kind: u16) -> Option<&[u8]> {
    let u16_at = |at: usize| {
        Some(u16::from_ne_bytes(
            message.get(at..at + 2)?.try_into().ok()?,
        ))
    };
    let mut at = NLMSG_HDRLEN + NFGENMSG_LEN;
    while at + 4 <= message.len() {
        let attribute_length = u16_at(at)? as usize;
        if attribute_length < 4 {
            return None;
        }
        // The low bits are the type; the top two are flags.
        if u16_at(at + 2)? & 0x3fff == kind {
            return message.get(at + 4..at + attribute_length);
        }
        at += attribute_length.div_ceil(4) * 4;
    }
    None
}

/// The generation id in a `NFT_MSG_NEWGEN` answer; `None` for anything
/// else (an error answer, a message cut short).
fn parse_answer(answer: &[u8]) -> Option<u32> {
    let length = u32::from_ne_bytes(answer.get(0..4)?.try_into().ok()?) as usize;
    let kind = u16::from_ne_bytes(answer.get(4..6)?.try_into().ok()?);
    if kind != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN || length > answer.len() {
        return None;
    }
    let id = attribute(&answer[..length], NFTA_GEN_ID)?;
    Some(u32::from_be_bytes(id.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(kind: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![0u8; NFGENMSG_LEN];
        for (kind, value) in attributes {
            body.extend(((value.len() + 4) as u16).to_ne_bytes());
            body.extend(kind.to_ne_bytes());
            body.extend(*value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut message = Vec::new();
        message.extend(((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        message.extend(kind.to_ne_bytes());
        message.extend([0u8; 10]);
        message.extend(body);
        message
    }

    const NEWGEN: u16 = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN;

    #[test]
    fn the_generation_is_read_from_its_attribute_whatever_comes_before() {
        let text = answer(
            NEWGEN,
            &[
                (2, &7u32.to_be_bytes()),
                (NFTA_GEN_ID, &1234u32.to_be_bytes()),
            ],
        );
        assert_eq!(parse_answer(&text), Some(1234));
    }

    #[test]
    fn an_error_or_a_cut_answer_gives_no_generation() {
        // NLMSG_ERROR is type 2.
        assert_eq!(
            parse_answer(&answer(2, &[(NFTA_GEN_ID, &1u32.to_be_bytes())])),
            None
        );
        let whole = answer(NEWGEN, &[(NFTA_GEN_ID, &1u32.to_be_bytes())]);
        assert_eq!(parse_answer(&whole[..whole.len() - 2]), None);
        assert_eq!(parse_answer(&answer(NEWGEN, &[(0, &[0u8; 0])])), None);
    }

    const NEWTABLE: u16 = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE;

    fn table(flags: u32) -> Vec<u8> {
        answer(
            NEWTABLE,
            &[(1, b"filter\0"), (NFTA_TABLE_FLAGS, &flags.to_be_bytes())],
        )
    }

    fn seen(owned: bool, count: usize) -> Seen {
        Seen {
            owned,
            // `answer` writes family 0: not one nft names.
            tables: vec![("other", "filter".to_string()); count],
        }
    }

    #[test]
    fn a_table_dump_tells_whether_a_table_vanishes_with_its_owner() {
        let done = answer(NLMSG_DONE, &[]);
        let plain = [table(0), table(1)].concat();
        assert_eq!(parse_tables(&plain), Some(Tables::More(seen(false, 2))));
        let owned = [table(0), table(NFT_TABLE_F_OWNER), done.clone()].concat();
        assert_eq!(parse_tables(&owned), Some(Tables::Done(seen(true, 2))));
        assert_eq!(parse_tables(&done), Some(Tables::Done(seen(false, 0))));
    }

    #[test]
    fn a_table_dump_names_each_table_and_its_family() {
        let mut inet = table(0);
        inet[NLMSG_HDRLEN] = 1;
        match parse_tables(&inet) {
            Some(Tables::More(seen)) => assert_eq!(seen.tables, [("inet", "filter".into())]),
            other => panic!("{other:?}"),
        }
        assert_eq!(family_name(10), "ip6");
    }

    #[test]
    fn an_error_or_a_cut_table_dump_tells_nothing() {
        assert_eq!(parse_tables(&answer(NLMSG_ERROR, &[])), None);
        let whole = table(0);
        assert_eq!(parse_tables(&whole[..whole.len() - 3]), None);
        assert_eq!(parse_tables(&[0u8; 16]), None, "a zero length");
        assert_eq!(parse_tables(&answer(NEWTABLE, &[(1, b"x\0")])), None);
    }
}
