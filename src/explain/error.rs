//! What can be wrong with a request to explain: every one a mistake in the
//! command line, named by its flag.

/// A packet description `explain` cannot make sense of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("`{flag}` value `{text}` is not an IP address")]
    BadAddress { flag: &'static str, text: String },
    #[error("`--src` {src} and `--dst` {dst} are of different families")]
    MixedFamilies { src: String, dst: String },
    #[error("unknown protocol `{0}`: expected tcp, udp, icmp, icmpv6 or a protocol number")]
    UnknownProto(String),
    #[error("protocol `{proto}` is {family}'s, but `{flag}` is {address}")]
    ProtoFamily {
        proto: String,
        family: &'static str,
        flag: &'static str,
        address: String,
    },
    #[error("`{flag}` needs `--proto tcp` or `--proto udp`")]
    PortWithoutPorts { flag: &'static str },
    #[error("`{flag}` 0 is out of range 1..65535")]
    PortZero { flag: &'static str },
    #[error("`--icmp-type` needs `--proto icmp` or `--proto icmpv6`")]
    IcmpTypeWithoutIcmp,
    #[error("unknown icmp type `{0}`: expected a name such as `echo-request` or a number 0..255")]
    UnknownIcmpType(String),
    #[error("unknown chain `{0}`: expected input, forward or output")]
    UnknownChain(String),
    #[error("unknown connection state `{0}`: expected new, established, related or invalid")]
    UnknownState(String),
    #[error("interface name `{0}` is not valid: expected 1 to 15 characters without whitespace")]
    BadIface(String),
    #[error("`--oface` names the outgoing interface, which packets to this host do not have; use `--chain forward` or `--chain output`")]
    OfaceOnInput,
}
