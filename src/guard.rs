//! The lockout guard (plan → explain → **guard** → apply): run over SSH, an
//! apply that would drop a new connection from this session's client to
//! this server's SSH port is refused before anything is written
//! (DESIGN.md 6).

use std::net::IpAddr;

use crate::explain::{self, Explanation};
use crate::plan::Plan;

/// This SSH session, from `SSH_CONNECTION`: "client port server port".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshSession {
    pub client: IpAddr,
    pub server_port: u16,
}

impl SshSession {
    /// `None` when not run over SSH, or when the variable is not what sshd
    /// writes (then there is no session to protect).
    pub fn from_env() -> Option<SshSession> {
        SshSession::parse(&std::env::var("SSH_CONNECTION").ok()?)
    }

    pub fn parse(text: &str) -> Option<SshSession> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [client, _client_port, _server, server_port] = fields[..] else {
            return None;
        };
        // sshd writes an IPv6 link-local client with its zone: `fe80::1%eth0`.
        let client = client.split('%').next()?.parse().ok()?;
        Some(SshSession {
            client,
            server_port: server_port.parse().ok()?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to apply: this SSH session would be cut off. A new connection from {client} to port \
     {port} would be {verdict} by {decided_by}\n  = hint: allow it first (for example \
     `ssh_from(\"{client}\")`), or pass --force if you are sure"
)]
pub struct Lockout {
    pub client: IpAddr,
    pub port: u16,
    pub verdict: String,
    pub decided_by: String,
}

/// Refuses a plan under which `session`'s client could not connect again.
pub fn check(plan: &Plan, session: SshSession) -> Result<(), Lockout> {
    let explanation: Explanation =
        explain::would_accept_new_tcp(plan, session.client, session.server_port);
    if explanation.accepts() {
        return Ok(());
    }
    Err(Lockout {
        client: session.client.to_canonical(),
        port: session.server_port,
        verdict: match explanation.verdict {
            explain::Verdict::Reject => "rejected".into(),
            _ => "dropped".into(),
        },
        decided_by: explanation.decided_by.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_connection_is_read_as_sshd_writes_it() {
        let session = SshSession::parse("203.0.113.7 51234 192.0.2.1 22").unwrap();
        assert_eq!(session.client.to_string(), "203.0.113.7");
        assert_eq!(session.server_port, 22);
        let v6 = SshSession::parse("fe80::1%eth0 51234 fe80::2%eth0 2222").unwrap();
        assert_eq!(v6.client.to_string(), "fe80::1");
        assert_eq!(v6.server_port, 2222);
        assert_eq!(SshSession::parse(""), None);
        assert_eq!(SshSession::parse("nonsense 1 2 x"), None);
    }
}
