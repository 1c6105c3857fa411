//! The kernel's vocabulary shared by every pipeline stage: address families,
//! tables, built-in chains and the names fwscript owns.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Chains whose name starts with this are fwscript's, whole (docs/design.md).
pub const OWNED_PREFIX: &str = "FWS-";

/// ipsets whose name starts with this are fwscript's, whole (docs/design.md).
pub const SET_PREFIX: &str = "fws-";

/// Every rule fwscript writes carries `fws:<id>` at the start of its comment.
pub const ID_TAG: &str = "fws:";

/// iptables allows chain names of at most this many bytes.
pub const MAX_CHAIN_NAME: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// The command prefix: `iptables` or `ip6tables`.
    pub fn tool(self) -> &'static str {
        match self {
            Family::Ipv4 => "iptables",
            Family::Ipv6 => "ip6tables",
        }
    }

    pub fn parse(text: &str) -> Option<Family> {
        match text {
            "ipv4" => Some(Family::Ipv4),
            "ipv6" => Some(Family::Ipv6),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Filter,
    Nat,
    Mangle,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Filter, Table::Nat, Table::Mangle];

    pub fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
            Table::Mangle => "mangle",
        }
    }

    pub fn parse(text: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == text)
    }

    /// The built-in chains this table has, in the order iptables-save lists them.
    pub fn builtin_chains(self) -> &'static [Hook] {
        match self {
            Table::Filter => &[Hook::Input, Hook::Forward, Hook::Output],
            Table::Nat => &[
                Hook::Prerouting,
                Hook::Input,
                Hook::Output,
                Hook::Postrouting,
            ],
            Table::Mangle => &[
                Hook::Prerouting,
                Hook::Input,
                Hook::Forward,
                Hook::Output,
                Hook::Postrouting,
            ],
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A built-in chain: where a packet enters the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub const ALL: [Hook; 5] = [
        Hook::Prerouting,
        Hook::Input,
        Hook::Forward,
        Hook::Output,
        Hook::Postrouting,
    ];

    /// The name users write in scripts: `"input"`.
    pub fn script_name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }

    /// The kernel's name: `INPUT`.
    pub fn chain_name(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }

    pub fn parse_script(text: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.script_name() == text)
    }

    pub fn parse_chain(text: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.chain_name() == text)
    }

    /// The owned chain the hook jumps to: `FWS-INPUT`.
    pub fn owned_chain(self) -> String {
        format!("{OWNED_PREFIX}{}", self.chain_name())
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.chain_name())
    }
}

/// A built-in chain's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }

    pub fn parse(text: &str) -> Option<Policy> {
        match text {
            "ACCEPT" => Some(Policy::Accept),
            "DROP" => Some(Policy::Drop),
            _ => None,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub fn is_owned_chain(name: &str) -> bool {
    name.starts_with(OWNED_PREFIX)
}

/// ICMP and ICMPv6 types by the names iptables and ip6tables use.
pub fn icmp_types(family: Family) -> &'static [(&'static str, u8)] {
    match family {
        Family::Ipv4 => ICMP4_TYPES,
        Family::Ipv6 => ICMP6_TYPES,
    }
}

/// A type's canonical name and number from its name; the American
/// `neighbor-` spelling is accepted too.
pub fn icmp_type_by_name(family: Family, name: &str) -> Option<(&'static str, u8)> {
    let wanted = name.to_ascii_lowercase().replace("neighbor", "neighbour");
    icmp_types(family)
        .iter()
        .copied()
        .find(|(known, _)| *known == wanted)
}

const ICMP4_TYPES: &[(&str, u8)] = &[
    ("echo-reply", 0),
    ("destination-unreachable", 3),
    ("source-quench", 4),
    ("redirect", 5),
    ("echo-request", 8),
    ("router-advertisement", 9),
    ("router-solicitation", 10),
    ("time-exceeded", 11),
    ("parameter-problem", 12),
    ("timestamp-request", 13),
    ("timestamp-reply", 14),
];

const ICMP6_TYPES: &[(&str, u8)] = &[
    ("destination-unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("parameter-problem", 4),
    ("echo-request", 128),
    ("echo-reply", 129),
    ("router-solicitation", 133),
    ("router-advertisement", 134),
    ("neighbour-solicitation", 135),
    ("neighbour-advertisement", 136),
    ("redirect", 137),
];

/// Where and when the rules were read: equal values mean an unchanged
/// nf_tables ruleset (backend/generation.rs asks the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    /// The network namespace's cookie: unique for the whole boot, never
    /// reused the way namespace inode numbers are.
    pub netns: u64,
    /// The nf_tables generation of that namespace.
    pub id: u32,
}

/// Targets after which the packet goes on to the next rule: they log, mark
/// or count it, and decide nothing whatever the rule matches. Any other
/// target the guard and the import cannot follow may end the packet's way.
pub const CONTINUING_TARGETS: &[&str] = &[
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CONNMARK",
    "CONNSECMARK",
    "CT",
    "DSCP",
    "HL",
    "IDLETIMER",
    "LED",
    "LOG",
    "MARK",
    "NFLOG",
    "NOTRACK",
    "RATEEST",
    "SECMARK",
    "SET",
    "TCPMSS",
    "TEE",
    "TOS",
    "TRACE",
    "TTL",
    "ULOG",
];
