//! The SSH session to protect, from `SSH_CONNECTION`: not over SSH, a
//! session, or a variable that is set but not what sshd writes — which the
//! guard refuses rather than guess (fail closed).

use std::fmt;
use std::net::IpAddr;

use crate::netfilter::Family;
use crate::plan::family_of;

/// What `SSH_CONNECTION` says, when it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshSession {
    Connected(SshConnection),
    /// Set, but not sshd's four fields: the guard cannot tell which
    /// connection to keep, so it refuses unless forced.
    Malformed(Malformed),
}

/// sshd's `client_ip client_port server_ip server_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshConnection {
    /// As iptables sees it: an IPv4 client that sshd reports as
    /// `::ffff:a.b.c.d` is IPv4 on the wire.
    pub client: IpAddr,
    pub client_port: u16,
    /// The address the client connected to: this host's, as the session's
    /// packets carry it.
    pub server: IpAddr,
    pub server_port: u16,
}

/// What is wrong with a set `SSH_CONNECTION`. Small and `Copy`: the guard
/// travels inside the apply's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    NotText,
    /// Not four fields; how many there were.
    Fields(usize),
    Address(End),
    Port(End),
    /// The client and server addresses are of different families.
    Families,
}

/// One end of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Client,
    Server,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Client => "client",
            End::Server => "server",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotText => f.write_str("it is not text"),
            Malformed::Fields(1) => f.write_str("it has 1 field, not 4"),
            Malformed::Fields(n) => write!(f, "it has {n} fields, not 4"),
            Malformed::Address(end) => write!(f, "the {} address is not an IP address", end.name()),
            Malformed::Port(end) => {
                write!(f, "the {} port is not a number from 1 to 65535", end.name())
            }
            Malformed::Families => {
                f.write_str("the client and server addresses are of different families")
            }
        }
    }
}

impl SshSession {
    /// `None` when not run over SSH (the variable is unset).
    pub fn from_env() -> Option<SshSession> {
        let value = std::env::var_os("SSH_CONNECTION")?;
        Some(match value.to_str() {
            Some(text) => SshSession::parse(text),
            None => SshSession::Malformed(Malformed::NotText),
        })
    }

    pub fn parse(text: &str) -> SshSession {
        match SshConnection::parse(text) {
            Ok(connection) => SshSession::Connected(connection),
            Err(malformed) => SshSession::Malformed(malformed),
        }
    }
}

impl SshConnection {
    pub fn parse(text: &str) -> Result<SshConnection, Malformed> {
        let fields: Vec<&str> = text.split_whitespace().take(5).collect();
        let [client, client_port, server, server_port] = fields[..] else {
            return Err(Malformed::Fields(text.split_whitespace().count()));
        };
        let client = address(client).ok_or(Malformed::Address(End::Client))?;
        let server = address(server).ok_or(Malformed::Address(End::Server))?;
        let client_port = port(client_port).ok_or(Malformed::Port(End::Client))?;
        let server_port = port(server_port).ok_or(Malformed::Port(End::Server))?;
        if family_of(&client) != family_of(&server) {
            return Err(Malformed::Families);
        }
        Ok(SshConnection {
            client,
            client_port,
            server,
            server_port,
        })
    }

    pub fn family(&self) -> Family {
        family_of(&self.client)
    }

    /// Whether the session's packets travel over loopback: from a loopback
    /// address (a tunnel ending on this host), or from this host to itself.
    pub fn is_loopback(&self) -> bool {
        self.client.is_loopback() || self.client == self.server
    }
}

/// sshd writes an IPv6 link-local address with its zone (`fe80::1%eth0`),
/// and an IPv4 client of a dual-stack socket as `::ffff:a.b.c.d`.
fn address(text: &str) -> Option<IpAddr> {
    let addr: IpAddr = text.split('%').next()?.parse().ok()?;
    Some(addr.to_canonical())
}

fn port(text: &str) -> Option<u16> {
    text.parse().ok().filter(|&port| port != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(text: &str) -> SshConnection {
        match SshSession::parse(text) {
            SshSession::Connected(connection) => connection,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    fn malformed(text: &str) -> Malformed {
        match SshSession::parse(text) {
            SshSession::Malformed(why) => why,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn ssh_connection_is_read_as_sshd_writes_it() {
        let session = connected("203.0.113.7 51234 192.0.2.1 22");
        assert_eq!(session.client.to_string(), "203.0.113.7");
        assert_eq!(session.client_port, 51234);
        assert_eq!(session.server.to_string(), "192.0.2.1");
        assert_eq!(session.server_port, 22);
        let v6 = connected("fe80::1%eth0 51234 fe80::2%eth0 2222");
        assert_eq!(v6.client.to_string(), "fe80::1");
        assert_eq!(v6.server.to_string(), "fe80::2");
        assert_eq!(v6.server_port, 2222);
        let mapped = connected("::ffff:203.0.113.7 51234 ::ffff:192.0.2.1 22");
        assert_eq!(mapped.family(), Family::Ipv4);
        assert_eq!(mapped.client.to_string(), "203.0.113.7");
    }

    #[test]
    fn anything_else_is_malformed_and_says_why() {
        assert_eq!(malformed(""), Malformed::Fields(0));
        assert_eq!(
            malformed("203.0.113.7 51234 192.0.2.1"),
            Malformed::Fields(3)
        );
        assert_eq!(
            malformed("203.0.113.7 51234 192.0.2.1 22 extra"),
            Malformed::Fields(5)
        );
        assert_eq!(
            malformed("nonsense 1 192.0.2.1 22"),
            Malformed::Address(End::Client)
        );
        assert_eq!(
            malformed("203.0.113.7 1 192.0.2.300 22"),
            Malformed::Address(End::Server)
        );
        assert_eq!(
            malformed("203.0.113.7 51234 192.0.2.1 ssh"),
            Malformed::Port(End::Server)
        );
        assert_eq!(
            malformed("203.0.113.7 0 192.0.2.1 22"),
            Malformed::Port(End::Client)
        );
        assert_eq!(
            malformed("203.0.113.7 51234 192.0.2.1 65536"),
            Malformed::Port(End::Server)
        );
        assert_eq!(
            malformed("203.0.113.7 51234 2001:db8::1 22"),
            Malformed::Families
        );
        assert_eq!(
            Malformed::Port(End::Server).to_string(),
            "the server port is not a number from 1 to 65535"
        );
    }

    #[test]
    fn loopback_sessions_are_known_by_their_addresses() {
        assert!(connected("127.0.0.1 40000 127.0.0.1 22").is_loopback());
        assert!(connected("192.0.2.1 40000 192.0.2.1 22").is_loopback());
        assert!(!connected("192.0.2.2 40000 192.0.2.1 22").is_loopback());
    }
}
