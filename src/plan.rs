//! The plan: what a script evaluates to, as plain data (script → **plan** →
//! render). Families → tables → owned chains → ordered rules, each rule
//! structured (so `explain` can evaluate it) and carrying its script origin.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Serialize, Serializer};

use crate::netfilter::{Family, Hook, Policy, Table, OWNED_PREFIX};
pub use crate::ruleset::Origin;
use crate::ruleset::Placement;

/// The evaluated script: the owned state it asks for in both families.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The script, every module it imported and every address list it
    /// read, as read from disk. `watch` watches them.
    pub sources: Vec<PathBuf>,
    /// The address lists the script read (`address_list()`), each once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub address_lists: Vec<AddressListSource>,
    pub families: BTreeMap<Family, FamilyPlan>,
}

/// One address list file and what it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressListSource {
    /// The path as the script wrote it (`lists/blocklist.txt`), relative
    /// to the script's folder.
    pub shown: String,
    /// Unique, in file order.
    pub entries: Vec<IpNet>,
}

impl Plan {
    pub fn family(&self, family: Family) -> Option<&FamilyPlan> {
        self.families.get(&family)
    }

    /// Every owned set, both families.
    pub fn sets(&self) -> impl Iterator<Item = &SetPlan> {
        self.families.values().flat_map(|f| &f.sets)
    }

    pub fn rule_count(&self) -> usize {
        self.families
            .values()
            .flat_map(|f| f.tables.values())
            .flat_map(|t| &t.chains)
            .map(|c| c.rules.len())
            .sum()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FamilyPlan {
    pub tables: BTreeMap<Table, TablePlan>,
    /// The owned ipsets this family's rules match, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<SetPlan>,
}

impl FamilyPlan {
    pub fn set(&self, name: &str) -> Option<&SetPlan> {
        self.sets.iter().find(|s| s.name == name)
    }
}

/// A rule's `src` or `dst` of more than this many addresses of one family
/// becomes an owned ipset matched by one rule, instead of one rule per
/// address: a few rules are easier to read in `iptables -S` and keep their
/// own counters; past that, a set is cheaper to write, to read and to match.
pub const SET_THRESHOLD: usize = 8;

/// An ipset's entries: sorted, unique, host bits cleared, never a `/0`
/// (`hash:net` cannot hold one). Shared between the plan's rules and its
/// sets, so a 100,000-entry list is held once.
pub type SetEntries = Arc<[IpNet]>;

/// An owned ipset (`fws-…`, `hash:net`) as the plan has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetPlan {
    pub name: String,
    pub family: Family,
    #[serde(serialize_with = "entry_count")]
    pub entries: SetEntries,
    pub source: SetSource,
}

/// Where a set's entries come from, for people: the list file they equal,
/// or the script call that gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SetSource {
    /// An address list, as the script named it (`lists/blocklist.txt`).
    List(String),
    /// A literal array, or a list the script changed (filtered, joined).
    Call(Origin),
}

impl fmt::Display for SetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetSource::List(file) => f.write_str(file),
            SetSource::Call(origin) => write!(f, "{origin}"),
        }
    }
}

/// A rule's match on an owned set: `-m set --match-set NAME src|dst`.
#[derive(Clone)]
pub struct SetRef {
    /// `fws-<12 hex>`; empty until the collector names it.
    pub name: String,
    pub family: Family,
    pub entries: SetEntries,
}

impl SetRef {
    /// Whether `addr` is in the set: within one of its networks.
    pub fn contains(&self, addr: &IpAddr) -> bool {
        self.entries.iter().any(|net| net.contains(addr))
    }
}

impl PartialEq for SetRef {
    fn eq(&self, other: &SetRef) -> bool {
        self.name == other.name
            && self.family == other.family
            && (Arc::ptr_eq(&self.entries, &other.entries) || self.entries == other.entries)
    }
}

/// Its name and size: a set's entries are the set's business, not every
/// rule's.
impl fmt::Debug for SetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} entries)", self.name, self.entries.len())
    }
}

impl Serialize for SetRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

fn entry_count<S: Serializer>(entries: &SetEntries, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(entries.len() as u64)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TablePlan {
    /// Built-in chain policies the script (or baseline) decides.
    pub policies: BTreeMap<Hook, ChainPolicy>,
    /// Owned chains in evaluation order: for each hook its entry chain
    /// (`FWS-INPUT`), which jumps to one chain per non-empty stage in the
    /// order the kernel evaluates them (`FWS-INPUT-DENY`,
    /// `FWS-INPUT-BASE`, …). In the kernel, the jump to a stage that can
    /// only drop is taken from the top of the built-in chain instead of
    /// from the entry chain (see [`TablePlan::hooks`]); read in order, the
    /// entry chain is what the kernel does with a packet that no foreign
    /// rule decides.
    pub chains: Vec<ChainPlan>,
}

/// A jump from a built-in chain into an owned chain, and where in the
/// built-in chain it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedHook {
    pub hook: Hook,
    pub placement: Placement,
    /// The owned chain it jumps to.
    pub chain: String,
}

impl TablePlan {
    pub fn chain(&self, name: &str) -> Option<&ChainPlan> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The hooks this table needs (the hook contract: denials first,
    /// permissions last). For each built-in chain with an entry chain: a
    /// jump at the top to each stage the entry chain starts with that can
    /// only drop (the deny stage), then one jump to the entry chain for
    /// the rest, at the end of a filter chain and at the top of a nat or
    /// mangle one (see [`Placement::of`]). An entry chain left with nothing
    /// else gets no hook.
    pub fn hooks(&self, table: Table) -> Vec<PlannedHook> {
        let mut hooks = Vec::new();
        for entry in self.chains.iter().filter(|c| c.stage.is_none()) {
            let lifted = self.lifted(table, entry);
            hooks.extend(lifted.iter().map(|&chain| PlannedHook {
                hook: entry.hook,
                placement: Placement::Top,
                chain: chain.to_string(),
            }));
            if entry.rules.len() > lifted.len() {
                hooks.push(PlannedHook {
                    hook: entry.hook,
                    placement: Placement::of(table, &entry.name),
                    chain: entry.name.clone(),
                });
            }
        }
        hooks
    }

    /// The stage chains a filter entry chain starts with that the kernel
    /// reaches from the top of the built-in chain instead: leading jumps to
    /// deny stages that can never accept. nat and mangle have no stages.
    pub fn lifted<'a>(&'a self, table: Table, entry: &'a ChainPlan) -> Vec<&'a str> {
        if table != Table::Filter || entry.stage.is_some() {
            return Vec::new();
        }
        entry
            .rules
            .iter()
            .map_while(|rule| match &rule.action {
                Action::Jump { chain }
                    if rule.matches == Matches::default()
                        && self
                            .chain(chain)
                            .is_some_and(|c| c.stage == Some(Stage::Deny))
                        && self.only_drops(chain, 0) =>
                {
                    Some(chain.as_str())
                }
                _ => None,
            })
            .collect()
    }

    /// Whether an owned chain can only drop, reject or hand the packet
    /// back, never accept (following its jumps into owned chains).
    fn only_drops(&self, chain: &str, depth: usize) -> bool {
        let Some(chain) = self.chain(chain).filter(|_| depth < 8) else {
            return false;
        };
        chain.rules.iter().all(|rule| match &rule.action {
            Action::Drop | Action::Reject | Action::Return | Action::Log { .. } | Action::None => {
                true
            }
            Action::Jump { chain } => self.only_drops(chain, depth + 1),
            _ => false,
        })
    }
}

/// A built-in chain's policy and the `policy()` call that set it (`None`: the
/// baseline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainPolicy {
    pub policy: Policy,
    pub origin: Option<Origin>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainPlan {
    pub name: String,
    /// The built-in chain this owned chain serves.
    pub hook: Hook,
    /// `None` for a hook's entry chain, which only dispatches to stages.
    pub stage: Option<Stage>,
    pub rules: Vec<Rule>,
}

/// The input path is evaluated in stages, so a `block()` wins even when it
/// is written after an `allow_*` (docs/functions.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Deny,
    Baseline,
    Limit,
    Allow,
    Log,
}

impl Stage {
    /// In the order the kernel evaluates them: the deny stage ahead of
    /// everything, since its jump sits at the top of the built-in chain,
    /// above every foreign rule; then what can accept, reached from the
    /// end of the built-in chain.
    pub const ALL: [Stage; 5] = [
        Stage::Deny,
        Stage::Baseline,
        Stage::Limit,
        Stage::Allow,
        Stage::Log,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            Stage::Baseline => "BASE",
            Stage::Deny => "DENY",
            Stage::Limit => "LIMIT",
            Stage::Allow => "ALLOW",
            Stage::Log => "LOG",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::Baseline => "baseline",
            Stage::Deny => "deny",
            Stage::Limit => "limit",
            Stage::Allow => "allow",
            Stage::Log => "log",
        }
    }

    /// `FWS-INPUT-DENY`.
    pub fn chain_name(self, hook: Hook) -> String {
        format!("{OWNED_PREFIX}{}-{}", hook.chain_name(), self.suffix())
    }
}

/// One rule: what it matches, what it does, where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub matches: Matches,
    pub action: Action,
    pub comment: Option<String>,
    /// The user's call site; `None` for rules fwscript adds itself (the
    /// baseline and the jumps between its own chains).
    pub origin: Option<Origin>,
}

/// Everything a rule can match on. `None`/empty means "any".
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Matches {
    pub src: Option<IpNet>,
    pub dst: Option<IpNet>,
    /// The source is in this owned set (`-m set --match-set NAME src`).
    pub src_set: Option<SetRef>,
    /// The destination is in this owned set.
    pub dst_set: Option<SetRef>,
    pub iface: Option<String>,
    pub oface: Option<String>,
    pub proto: Option<Proto>,
    pub sport: Option<PortRange>,
    pub dport: Option<PortRange>,
    pub tcp_flags: Option<TcpFlags>,
    pub icmp_type: Option<IcmpType>,
    pub state: Vec<CtState>,
    /// Only packets whose connection was DNAT'd from this destination port
    /// (`-m conntrack --ctstate DNAT --ctorigdstport`): the accept that
    /// `redirect_tcp` and `forward_tcp` need, without opening the target port.
    pub dnat_from_port: Option<u16>,
    pub limit: Option<RateLimit>,
    pub recent: Option<Recent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

impl Proto {
    /// The name iptables takes after `-p`.
    pub fn iptables_name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Icmpv6 => "ipv6-icmp",
        }
    }

    pub fn script_name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Icmpv6 => "icmpv6",
        }
    }

    /// ICMP exists in one family only.
    pub fn family(self) -> Option<Family> {
        match self {
            Proto::Icmp => Some(Family::Ipv4),
            Proto::Icmpv6 => Some(Family::Ipv6),
            Proto::Tcp | Proto::Udp => None,
        }
    }

    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

/// A port or an inclusive range of ports, `first <= last`, both in 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn single(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }

    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum TcpFlag {
    Fin,
    Syn,
    Rst,
    Psh,
    Ack,
    Urg,
}

impl TcpFlag {
    pub const ALL: [TcpFlag; 6] = [
        TcpFlag::Fin,
        TcpFlag::Syn,
        TcpFlag::Rst,
        TcpFlag::Psh,
        TcpFlag::Ack,
        TcpFlag::Urg,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TcpFlag::Fin => "FIN",
            TcpFlag::Syn => "SYN",
            TcpFlag::Rst => "RST",
            TcpFlag::Psh => "PSH",
            TcpFlag::Ack => "ACK",
            TcpFlag::Urg => "URG",
        }
    }

    pub fn parse(text: &str) -> Option<TcpFlag> {
        TcpFlag::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(text))
    }
}

/// `--tcp-flags MASK SET`: of the flags in `mask`, exactly those in `set`
/// are on; `negated` inverts the match (`! --syn`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpFlags {
    pub mask: Vec<TcpFlag>,
    pub set: Vec<TcpFlag>,
    pub negated: bool,
}

impl TcpFlags {
    /// `--syn`: SYN on, ACK, RST and FIN off: the first packet of a connection.
    pub fn syn() -> TcpFlags {
        TcpFlags {
            mask: vec![TcpFlag::Fin, TcpFlag::Syn, TcpFlag::Rst, TcpFlag::Ack],
            set: vec![TcpFlag::Syn],
            negated: false,
        }
    }
}

/// An ICMP or ICMPv6 type, by its iptables name (`echo-request`) or number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IcmpType {
    pub name: String,
    pub number: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
}

impl CtState {
    pub const ALL: [CtState; 4] = [
        CtState::New,
        CtState::Established,
        CtState::Related,
        CtState::Invalid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CtState::New => "NEW",
            CtState::Established => "ESTABLISHED",
            CtState::Related => "RELATED",
            CtState::Invalid => "INVALID",
        }
    }

    pub fn script_name(self) -> &'static str {
        match self {
            CtState::New => "new",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::Invalid => "invalid",
        }
    }
}

/// `-m limit --limit RATE --limit-burst BURST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    pub count: u32,
    pub per: RateUnit,
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl RateUnit {
    pub fn name(self) -> &'static str {
        match self {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        }
    }
}

/// `-m recent`: remember sources in a named list (`limit_tcp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recent {
    pub list: String,
    pub check: RecentCheck,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecentCheck {
    /// `--set`: add the source, always matches.
    Set,
    /// `--update --seconds S --hitcount H`: matches a source seen at least
    /// `hits` times within `seconds`.
    Update { seconds: u32, hits: u32 },
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Action {
    Accept,
    Drop,
    Reject,
    Log {
        prefix: Option<String>,
    },
    Return,
    /// Jump to a chain: one of fwscript's stage chains, or a chain the user
    /// names (`jump:NAME`).
    Jump {
        chain: String,
    },
    Redirect {
        to_port: PortRange,
    },
    Dnat {
        to: Endpoint,
    },
    Snat {
        to: Endpoint,
    },
    Masquerade,
    /// No target: the rule only has side effects (unused by stdlib today).
    None,
}

impl Action {
    /// Actions that end a packet's walk through the tables.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Action::Accept
                | Action::Drop
                | Action::Reject
                | Action::Redirect { .. }
                | Action::Dnat { .. }
                | Action::Snat { .. }
                | Action::Masquerade
        )
    }
}

/// `host[:port]` for DNAT and SNAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: Option<PortRange>,
}

impl Endpoint {
    pub fn family(&self) -> Family {
        family_of(&self.addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.addr, self.port) {
            (IpAddr::V4(addr), Some(port)) => {
                write!(f, "{addr}:{}", port.to_string().replace(':', "-"))
            }
            (IpAddr::V6(addr), Some(port)) => {
                write!(f, "[{addr}]:{}", port.to_string().replace(':', "-"))
            }
            (addr, None) => write!(f, "{addr}"),
        }
    }
}

/// `a.b.c.d` or `a.b.c.d/n` as ipset prints them and lists hold them (no
/// leading zeros, host bits clear), read by hand: a big list or set is
/// 100,000 of these, and the general parser takes four times as long.
/// `None` for anything else, which the general parser then reads.
pub fn parse_v4(text: &str) -> Option<IpNet> {
    let mut octets = [0u8; 4];
    let mut prefix = 32u8;
    let mut part = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    let mut in_prefix = false;
    for &byte in text.as_bytes() {
        match byte {
            b'0'..=b'9' if digits < 3 && !(digits == 1 && value == 0) => {
                value = value * 10 + u32::from(byte - b'0');
                digits += 1;
            }
            b'.' if !in_prefix && part < 3 && digits > 0 && value <= 255 => {
                octets[part] = value as u8;
                part += 1;
                (value, digits) = (0, 0);
            }
            b'/' if !in_prefix && part == 3 && digits > 0 && value <= 255 => {
                octets[3] = value as u8;
                in_prefix = true;
                (value, digits) = (0, 0);
            }
            _ => return None,
        }
    }
    if digits == 0 || part != 3 {
        return None;
    }
    if in_prefix {
        prefix = u8::try_from(value).ok().filter(|p| *p <= 32)?;
    } else {
        octets[3] = u8::try_from(value).ok()?;
    }
    let net = ipnet::Ipv4Net::new(octets.into(), prefix).ok()?;
    (net == net.trunc()).then_some(IpNet::V4(net))
}

/// Appends an address as a script and ipset write it: a host without its
/// `/32` or `/128`. IPv4 without the formatting machinery, which was most
/// of the time a 100,000-line address list took to hand to the script.
pub fn push_net(out: &mut String, net: &IpNet) {
    match net {
        IpNet::V4(net) => {
            let mut buf = [0u8; V4_TEXT];
            let len = v4_text(net, &mut buf);
            out.push_str(std::str::from_utf8(&buf[..len]).expect("ASCII digits"));
        }
        IpNet::V6(net) if net.prefix_len() == 128 => {
            use fmt::Write as _;
            let _ = write!(out, "{}", net.addr());
        }
        IpNet::V6(net) => {
            use fmt::Write as _;
            let _ = write!(out, "{net}");
        }
    }
}

/// The longest IPv4 network as text: `255.255.255.255/32`.
pub const V4_TEXT: usize = 18;

/// Writes an IPv4 network as [`push_net`] does into `buf`; its length.
pub fn v4_text(net: &ipnet::Ipv4Net, buf: &mut [u8]) -> usize {
    fn put(n: u8, buf: &mut [u8], len: &mut usize) {
        if n >= 100 {
            buf[*len] = b'0' + n / 100;
            *len += 1;
        }
        if n >= 10 {
            buf[*len] = b'0' + n / 10 % 10;
            *len += 1;
        }
        buf[*len] = b'0' + n % 10;
        *len += 1;
    }
    let mut len = 0;
    for (i, octet) in net.addr().octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        put(octet, buf, &mut len);
    }
    if net.prefix_len() != 32 {
        buf[len] = b'/';
        len += 1;
        put(net.prefix_len(), buf, &mut len);
    }
    len
}

pub fn family_of(addr: &IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::Ipv4,
        IpAddr::V6(_) => Family::Ipv6,
    }
}

pub fn net_family(net: &IpNet) -> Family {
    match net {
        IpNet::V4(_) => Family::Ipv4,
        IpNet::V6(_) => Family::Ipv6,
    }
}
