//! The lockout guard (plan → explain → **guard** → apply): run over SSH, an
//! apply under which this session's client could not connect again, or its
//! connection could not carry on, is refused before anything is written.
//!
//! It asks the `explain` evaluator in its pessimistic reading: whatever the
//! guard cannot know offline (the interface the session arrives on, the
//! port a new connection comes from, what a target outside the plan does)
//! may take any value, and the verdict must be ACCEPT for all of them. A
//! rate limit on the way is not a refusal but a warning, naming which of the
//! client's connections it drops. Once the kernel is read, [`check_kernel`]
//! also refuses a write whose hook move puts a foreign drop of the
//! session's packets ahead of fwscript's accepting hook.

mod foreign;
mod message;
mod session;

use std::collections::BTreeSet;

pub use foreign::{check_kernel, ForeignDrop};
pub use message::{Lockout, Warning};
pub use session::{End, Malformed, SshConnection, SshSession};

use crate::explain::{self, Explanation, Packet, Rates, Reading, Transport};
use crate::netfilter::Hook;
use crate::plan::{CtState, Plan, TcpFlag};

/// A packet the session needs to get through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The SYN that opens a new connection from the client.
    NewConnection,
    /// The client's packets once connected, with these flags.
    FromClient(&'static [TcpFlag]),
    /// This server's answers, from the handshake on, with these flags.
    Reply(&'static [TcpFlag]),
}

/// Every packet a working session sends or receives, by the flags iptables
/// can tell apart: the handshake, data, acknowledgements and the close.
const LEGS: [Leg; 8] = {
    use TcpFlag::{Ack, Fin, Psh, Syn};
    [
        Leg::NewConnection,
        Leg::FromClient(&[Ack]),
        Leg::FromClient(&[Psh, Ack]),
        Leg::FromClient(&[Fin, Ack]),
        Leg::Reply(&[Syn, Ack]),
        Leg::Reply(&[Ack]),
        Leg::Reply(&[Psh, Ack]),
        Leg::Reply(&[Fin, Ack]),
    ]
};

impl Leg {
    /// The packet as iptables sees it, with what the guard cannot know
    /// left out: the client's port of a new connection, and the interface
    /// unless the session runs over loopback.
    pub fn packet(self, session: &SshConnection) -> Packet {
        let iface = session.is_loopback().then(|| "lo".to_string());
        let (state, flags) = match self {
            Leg::NewConnection => (CtState::New, &[TcpFlag::Syn][..]),
            Leg::FromClient(flags) | Leg::Reply(flags) => (CtState::Established, flags),
        };
        let flags: BTreeSet<TcpFlag> = flags.iter().copied().collect();
        // A new connection comes from whichever port the client picks.
        let (ssh_port, client_port) = (Some(session.server_port), None);
        let (src, dst, sport, dport, in_iface, out_iface) = match self {
            Leg::NewConnection | Leg::FromClient(_) => (
                session.client,
                session.server,
                client_port,
                ssh_port,
                iface,
                None,
            ),
            Leg::Reply(_) => (
                session.server,
                session.client,
                ssh_port,
                client_port,
                None,
                iface,
            ),
        };
        Packet {
            family: session.family(),
            src: Some(src),
            dst: Some(dst),
            transport: Transport::Tcp {
                sport,
                dport,
                flags,
            },
            in_iface,
            out_iface,
            state,
            dnat_from_port: None,
        }
    }

    /// Where the packet enters: the client's come in, the replies go out.
    pub fn hook(self) -> Hook {
        match self {
            Leg::NewConnection | Leg::FromClient(_) => Hook::Input,
            Leg::Reply(_) => Hook::Output,
        }
    }

    fn explain(self, plan: &Plan, session: &SshConnection, rates: Rates) -> Explanation {
        explain::explain_as(
            plan,
            &self.packet(session),
            self.hook(),
            Reading::Pessimistic(rates),
        )
    }
}

/// Refuses a plan under which `session` could be cut off; otherwise the
/// warnings about rate limits the session's client may run into.
pub fn check(plan: &Plan, session: SshSession) -> Result<Vec<Warning>, Lockout> {
    let session = match session {
        SshSession::Connected(session) => session,
        SshSession::Malformed(why) => return Err(Lockout::Malformed(why)),
    };
    for leg in LEGS {
        let answer = leg.explain(plan, &session, Rates::FirstPacket);
        if let Some(rewrite) = answer.rewritten_by {
            return Err(Lockout::Rewritten {
                session,
                rewrite: Box::new(rewrite),
            });
        }
        if !answer.accepts() {
            return Err(Lockout::Blocked {
                session,
                leg,
                answer: Box::new(answer),
            });
        }
    }
    // The first connection gets in; what of one after many?
    let later = Leg::NewConnection.explain(plan, &session, Rates::Any);
    Ok(message::rate_warnings(&session, &later))
}

#[cfg(test)]
mod tests;
