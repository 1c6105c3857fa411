//! One rule of `iptables-save` output read into its parts (save text →
//! **rule** → chains → script). The live stage keeps rule text raw, since
//! the diff needs only ids; the import needs to know what a rule matches
//! and what it does. Whatever is not understood is kept, word for word, in
//! [`SavedRule::unknown`], so it can never be dropped silently.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::live::{words, Word};
use crate::netfilter::{icmp_type_by_name, Family};
use crate::plan::{CtState, Endpoint, PortRange, RateLimit, RateUnit, TcpFlag, TcpFlags};

/// A rule as read: where it sits, what it matches, what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedRule {
    pub family: Family,
    pub table: String,
    pub chain: String,
    /// `-A CHAIN …` as the save file has it, for comments in the script.
    pub line: String,
    pub matches: RuleMatch,
    pub target: Target,
    /// What could not be read, each as `-m addrtype --dst-type LOCAL`.
    pub unknown: Vec<String>,
}

/// The protocol after `-p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMP in IPv4, ICMPv6 in IPv6.
    Icmp,
    Other(u8),
}

impl Proto {
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }

    /// The name `rule()` takes in this family.
    pub fn script_name(self, family: Family) -> String {
        match (self, family) {
            (Proto::Tcp, _) => "tcp".into(),
            (Proto::Udp, _) => "udp".into(),
            (Proto::Icmp, Family::Ipv4) => "icmp".into(),
            (Proto::Icmp, Family::Ipv6) => "icmpv6".into(),
            (Proto::Other(n), _) => n.to_string(),
        }
    }
}

/// Everything a rule matches on; `None` or empty means any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleMatch {
    pub src: Option<IpNet>,
    pub dst: Option<IpNet>,
    pub iface: Option<String>,
    pub oface: Option<String>,
    pub proto: Option<Proto>,
    /// `--sport` or `-m multiport --sports`: any of these.
    pub sports: Vec<PortRange>,
    pub dports: Vec<PortRange>,
    pub tcp_flags: Option<TcpFlags>,
    pub icmp_type: Option<u8>,
    /// `--state` or `--ctstate`: any of these.
    pub states: Vec<CtState>,
    pub limit: Option<RateLimit>,
    pub recent: Option<Recent>,
    /// `-m hl --hl-eq 255`: what the kernel itself demands of neighbour
    /// discovery, so on those messages it changes nothing.
    pub hop_limit_255: bool,
    pub comment: Option<String>,
}

/// `-m recent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recent {
    pub name: String,
    pub check: RecentCheck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecentCheck {
    /// `--set`: records the source; always matches.
    Set,
    /// `--update` or `--rcheck` with `--seconds` and `--hitcount`: matches
    /// a source seen at least `hits` times within `seconds`.
    Seen { seconds: u32, hits: u32 },
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Accept,
    Drop,
    /// `--reject-with`, when given and not the default.
    Reject {
        with: Option<String>,
    },
    Return,
    Log {
        prefix: Option<String>,
    },
    /// A jump to a user chain.
    Jump(String),
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
    /// No `-j`: the rule only counts (or records, with `-m recent --set`).
    None,
    /// A target fwscript has no action for (`MARK`, `CT`, `TCPMSS`, a
    /// `--goto`), with its words.
    Other(String),
}

impl Target {
    pub fn is_verdict(&self) -> bool {
        matches!(self, Target::Accept | Target::Drop | Target::Reject { .. })
    }
}

impl fmt::Display for SavedRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

/// The modules whose options this reader knows.
const KNOWN_MODULES: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "icmpv6",
    "state",
    "conntrack",
    "multiport",
    "limit",
    "recent",
    "comment",
];

/// Reads the `spec` (what follows `-A CHAIN`) of one rule.
pub fn read(family: Family, table: &str, chain: &str, spec: &str) -> SavedRule {
    let line = if spec.is_empty() {
        format!("-A {chain}")
    } else {
        format!("-A {chain} {spec}")
    };
    let mut reader = Reader {
        family,
        words: words(spec),
        at: 0,
        rule: SavedRule {
            family,
            table: table.to_string(),
            chain: chain.to_string(),
            line,
            matches: RuleMatch::default(),
            target: Target::None,
            unknown: Vec::new(),
        },
        module: None,
        recent: RecentParts::default(),
        limit_burst: None,
    };
    reader.run();
    reader.rule
}

#[derive(Default)]
struct RecentParts {
    seen: bool,
    name: Option<String>,
    set: bool,
    check: bool,
    seconds: Option<u32>,
    hits: Option<u32>,
    /// Options that change what the list means (`--rdest`, `--mask`,
    /// `--rttl`, `--remove`, `--reap`), which `limit_tcp` cannot say.
    odd: Vec<String>,
}

struct Reader {
    family: Family,
    words: Vec<Word>,
    at: usize,
    rule: SavedRule,
    /// The module whose options come next, after `-m NAME`.
    module: Option<String>,
    recent: RecentParts,
    limit_burst: Option<u32>,
}

impl Reader {
    fn next(&mut self) -> Option<String> {
        let word = self.words.get(self.at)?.text.clone();
        self.at += 1;
        Some(word)
    }

    fn peek(&self) -> Option<&Word> {
        self.words.get(self.at)
    }

    fn unknown(&mut self, text: impl Into<String>) {
        self.rule.unknown.push(text.into());
    }

    /// The value of `option`; a missing value is recorded as unknown.
    fn value(&mut self, option: &str) -> Option<String> {
        let value = self.next();
        if value.is_none() {
            self.unknown(format!("`{option}` without a value"));
        }
        value
    }

    fn run(&mut self) {
        while let Some(word) = self.next() {
            let negated = word == "!" && !self.words[self.at - 1].quoted;
            let option = if negated {
                match self.next() {
                    Some(option) => option,
                    None => {
                        self.unknown("a lone `!`");
                        break;
                    }
                }
            } else {
                word
            };
            self.option(&option, negated);
        }
        self.finish_recent();
        if let (Some(burst), Some(limit)) = (self.limit_burst, self.rule.matches.limit.as_mut()) {
            limit.burst = Some(burst);
        }
    }

    fn option(&mut self, option: &str, negated: bool) {
        // Negation is something `rule()` has no key for, except on the
        // TCP flags (`! --syn`).
        let negatable = matches!(option, "--syn" | "--tcp-flags");
        if negated && !negatable {
            let value = self.option_words(option);
            self.unknown(format!("! {option}{value}"));
            return;
        }
        match option {
            "-s" | "--source" | "--src" => {
                if let Some(v) = self.value(option) {
                    self.rule.matches.src = self.net(option, &v);
                }
            }
            "-d" | "--destination" | "--dst" => {
                if let Some(v) = self.value(option) {
                    self.rule.matches.dst = self.net(option, &v);
                }
            }
            "-i" | "--in-interface" => self.rule.matches.iface = self.value(option),
            "-o" | "--out-interface" => self.rule.matches.oface = self.value(option),
            "-p" | "--protocol" => {
                if let Some(v) = self.value(option) {
                    self.proto(&v);
                }
            }
            "-f" | "--fragment" => self.unknown("-f (fragments)"),
            "-m" | "--match" => {
                if let Some(name) = self.value(option) {
                    self.module(&name);
                }
            }
            "-j" | "--jump" => {
                if let Some(target) = self.value(option) {
                    self.target(&target);
                }
            }
            "-g" | "--goto" => {
                let rest = self.rest();
                self.rule.target = Target::Other(format!("-g {rest}"));
            }
            other => self.module_option(other, negated),
        }
    }

    /// The values that follow an option up to the next option, for an
    /// unknown option's record: ` LOCAL` for `--dst-type LOCAL`.
    fn option_words(&mut self, _option: &str) -> String {
        let mut text = String::new();
        while let Some(word) = self.peek() {
            if !word.quoted && word.text.starts_with('-') && word.text.len() > 1 {
                break;
            }
            if !word.quoted && word.text == "!" {
                break;
            }
            let word = self.next().expect("peeked");
            text.push(' ');
            text.push_str(&quote_if_needed(&word));
        }
        text
    }

    /// Everything left, for a target fwscript cannot express.
    fn rest(&mut self) -> String {
        let mut parts = Vec::new();
        while let Some(word) = self.next() {
            parts.push(quote_if_needed(&word));
        }
        parts.join(" ")
    }

    fn net(&mut self, option: &str, text: &str) -> Option<IpNet> {
        match parse_net(text) {
            Some(net) => Some(net),
            None => {
                self.unknown(format!("{option} {text}"));
                None
            }
        }
    }

    fn proto(&mut self, text: &str) {
        let proto = match text.to_ascii_lowercase().as_str() {
            "tcp" | "6" => Some(Proto::Tcp),
            "udp" | "17" => Some(Proto::Udp),
            "icmp" | "1" if self.family == Family::Ipv4 => Some(Proto::Icmp),
            "icmpv6" | "ipv6-icmp" | "58" if self.family == Family::Ipv6 => Some(Proto::Icmp),
            "all" | "0" => None,
            other => match other.parse::<u8>() {
                Ok(n) => Some(Proto::Other(n)),
                Err(_) => {
                    self.unknown(format!("-p {text}"));
                    None
                }
            },
        };
        if let Some(Proto::Other(n)) = proto {
            self.unknown(format!("-p {n}"));
        }
        self.rule.matches.proto = proto;
    }

    fn module(&mut self, name: &str) {
        if name == "hl" {
            let at = self.at;
            let options = self.module_words();
            if options == " --hl-eq 255" {
                self.rule.matches.hop_limit_255 = true;
                self.module = None;
                return;
            }
            self.at = at;
        }
        if KNOWN_MODULES.contains(&name) {
            if name == "recent" {
                self.recent.seen = true;
            }
            self.module = Some(name.to_string());
            return;
        }
        self.module = None;
        let options = self.module_words();
        self.unknown(format!("-m {name}{options}"));
    }

    /// The options of an unknown module: everything up to the next `-m`,
    /// `-j` or basic option.
    fn module_words(&mut self) -> String {
        let mut text = String::new();
        while let Some(word) = self.peek() {
            let stop = !word.quoted
                && matches!(
                    word.text.as_str(),
                    "-m" | "--match"
                        | "-j"
                        | "--jump"
                        | "-g"
                        | "--goto"
                        | "-s"
                        | "-d"
                        | "-i"
                        | "-o"
                        | "-p"
                );
            if stop {
                break;
            }
            let word = self.next().expect("peeked");
            text.push(' ');
            text.push_str(&quote_if_needed(&word));
        }
        text
    }

    fn module_option(&mut self, option: &str, negated: bool) {
        let m = &mut self.rule.matches;
        match option {
            "--sport" | "--source-port" => {
                if let Some(v) = self.value(option) {
                    if let Some(range) = self.port_range(option, &v) {
                        self.rule.matches.sports = vec![range];
                    }
                }
            }
            "--dport" | "--destination-port" => {
                if let Some(v) = self.value(option) {
                    if let Some(range) = self.port_range(option, &v) {
                        self.rule.matches.dports = vec![range];
                    }
                }
            }
            "--sports" | "--source-ports" => {
                if let Some(v) = self.value(option) {
                    self.rule.matches.sports = self.port_list(option, &v);
                }
            }
            "--dports" | "--destination-ports" => {
                if let Some(v) = self.value(option) {
                    self.rule.matches.dports = self.port_list(option, &v);
                }
            }
            "--syn" => {
                m.tcp_flags = Some(TcpFlags {
                    negated,
                    ..TcpFlags::syn()
                });
            }
            "--tcp-flags" => {
                let (Some(mask), Some(set)) = (self.value(option), self.value(option)) else {
                    return;
                };
                match (flag_list(&mask), flag_list(&set)) {
                    (Some(mask), Some(set)) => {
                        self.rule.matches.tcp_flags = Some(TcpFlags { mask, set, negated })
                    }
                    _ => self.unknown(format!("--tcp-flags {mask} {set}")),
                }
            }
            "--icmp-type" | "--icmpv6-type" => {
                if let Some(v) = self.value(option) {
                    match icmp_type(self.family, &v) {
                        Some(number) => self.rule.matches.icmp_type = Some(number),
                        None => self.unknown(format!("{option} {v}")),
                    }
                }
            }
            "--state" | "--ctstate" => {
                if let Some(v) = self.value(option) {
                    self.states(option, &v);
                }
            }
            "--limit" => {
                if let Some(v) = self.value(option) {
                    match parse_rate(&v) {
                        Some(rate) => self.rule.matches.limit = Some(rate),
                        None => self.unknown(format!("--limit {v}")),
                    }
                }
            }
            "--limit-burst" => {
                if let Some(v) = self.value(option) {
                    match v.parse::<u32>() {
                        Ok(n) if (1..=10_000).contains(&n) => self.limit_burst = Some(n),
                        _ => self.unknown(format!("--limit-burst {v}")),
                    }
                }
            }
            "--comment" => self.rule.matches.comment = self.value(option),
            "--set" => self.recent.set = true,
            "--update" | "--rcheck" => self.recent.check = true,
            "--rsource" => {}
            "--name" => self.recent.name = self.value(option),
            "--seconds" => {
                if let Some(v) = self.value(option) {
                    self.recent.seconds = v.parse().ok();
                    if self.recent.seconds.is_none() {
                        self.recent.odd.push(format!("--seconds {v}"));
                    }
                }
            }
            "--hitcount" => {
                if let Some(v) = self.value(option) {
                    self.recent.hits = v.parse().ok();
                    if self.recent.hits.is_none() {
                        self.recent.odd.push(format!("--hitcount {v}"));
                    }
                }
            }
            "--mask" if self.module.as_deref() == Some("recent") => {
                if let Some(v) = self.value(option) {
                    // A full mask is the default: one entry per address.
                    let full = v
                        .parse::<IpAddr>()
                        .is_ok_and(|mask| mask == full_mask(self.family));
                    if !full {
                        self.recent.odd.push(format!("--mask {v}"));
                    }
                }
            }
            "--rdest" | "--remove" | "--reap" | "--rttl" => {
                self.recent.odd.push(option.to_string());
            }
            other => {
                let value = self.option_words(other);
                self.unknown(format!("{other}{value}"));
            }
        }
    }

    fn states(&mut self, option: &str, text: &str) {
        let mut states = Vec::new();
        for name in text.split(',') {
            match CtState::ALL.into_iter().find(|s| s.name() == name) {
                Some(state) => states.push(state),
                None => {
                    self.unknown(format!("{option} {text}"));
                    return;
                }
            }
        }
        states.sort();
        states.dedup();
        self.rule.matches.states = states;
    }

    fn port_range(&mut self, option: &str, text: &str) -> Option<PortRange> {
        let range = parse_port_range(text);
        if range.is_none() {
            self.unknown(format!("{option} {text}"));
        }
        range
    }

    fn port_list(&mut self, option: &str, text: &str) -> Vec<PortRange> {
        let ranges: Option<Vec<PortRange>> = text.split(',').map(parse_port_range).collect();
        match ranges {
            Some(ranges) if !ranges.is_empty() => ranges,
            _ => {
                self.unknown(format!("{option} {text}"));
                Vec::new()
            }
        }
    }

    fn target(&mut self, name: &str) {
        self.module = None;
        let target = match name {
            "ACCEPT" => Target::Accept,
            "DROP" => Target::Drop,
            "RETURN" => Target::Return,
            "MASQUERADE" => Target::Masquerade,
            "REJECT" => Target::Reject { with: None },
            "LOG" => Target::Log { prefix: None },
            "REDIRECT" | "DNAT" | "SNAT" => Target::None,
            // Chain names are what iptables allows; targets are upper case
            // by convention, chains anything else (`f2b-sshd`, `DOCKER`).
            other if is_extension_target(other) => {
                let rest = self.rest();
                let text = if rest.is_empty() {
                    format!("-j {other}")
                } else {
                    format!("-j {other} {rest}")
                };
                self.rule.target = Target::Other(text);
                return;
            }
            chain => Target::Jump(chain.to_string()),
        };
        self.rule.target = target;
        self.target_options(name);
    }

    fn target_options(&mut self, name: &str) {
        while let Some(option) = self.next() {
            match (name, option.as_str()) {
                ("REJECT", "--reject-with") => {
                    if let Some(with) = self.value(&option) {
                        let default = matches!(
                            with.as_str(),
                            "icmp-port-unreachable" | "icmp6-port-unreachable"
                        );
                        self.rule.target = Target::Reject {
                            with: (!default).then_some(with),
                        };
                    }
                }
                ("LOG", "--log-prefix") => {
                    let prefix = self.value(&option);
                    self.rule.target = Target::Log { prefix };
                }
                ("LOG", "--log-level") => {
                    // Only the default level (warning, 4) is what `rule()`
                    // writes; any other is a difference in the log, not in
                    // the verdict, but it is still said.
                    if let Some(level) = self.value(&option) {
                        if !matches!(level.as_str(), "4" | "warning" | "warn") {
                            self.unknown(format!("--log-level {level}"));
                        }
                    }
                }
                ("REDIRECT", "--to-ports") => {
                    if let Some(v) = self.value(&option) {
                        match parse_port_range(&v.replace('-', ":")) {
                            Some(to_port) => self.rule.target = Target::Redirect { to_port },
                            None => self.unknown(format!("--to-ports {v}")),
                        }
                    }
                }
                ("DNAT", "--to-destination") | ("SNAT", "--to-source") => {
                    if let Some(v) = self.value(&option) {
                        match parse_endpoint(&v) {
                            Some(to) if name == "DNAT" => self.rule.target = Target::Dnat { to },
                            Some(to) => self.rule.target = Target::Snat { to },
                            None => self.unknown(format!("{option} {v}")),
                        }
                    }
                }
                _ => {
                    let value = self.option_words(&option);
                    self.unknown(format!("{option}{value}"));
                }
            }
        }
        if matches!(name, "REDIRECT" | "DNAT" | "SNAT") && self.rule.target == Target::None {
            self.unknown(format!("-j {name} without a destination"));
        }
    }

    fn finish_recent(&mut self) {
        if !self.recent.seen {
            return;
        }
        let parts = std::mem::take(&mut self.recent);
        if !parts.odd.is_empty() {
            self.unknown(format!("-m recent {}", parts.odd.join(" ")));
            return;
        }
        let name = parts.name.unwrap_or_else(|| "DEFAULT".to_string());
        let check = match (parts.set, parts.check, parts.seconds, parts.hits) {
            (true, false, None, None) => RecentCheck::Set,
            (false, true, Some(seconds), Some(hits)) if seconds > 0 && hits > 0 => {
                RecentCheck::Seen { seconds, hits }
            }
            _ => {
                self.unknown(format!(
                    "-m recent --name {name} with a check fwscript's `limit_tcp` does not make"
                ));
                return;
            }
        };
        self.rule.matches.recent = Some(Recent { name, check });
    }
}

/// Targets that are extensions rather than chains: upper case by
/// iptables' convention, and never a chain name fwscript would jump to.
fn is_extension_target(name: &str) -> bool {
    const TARGETS: &[&str] = &[
        "MARK",
        "CONNMARK",
        "CT",
        "NOTRACK",
        "TCPMSS",
        "TOS",
        "DSCP",
        "TTL",
        "HL",
        "NFQUEUE",
        "NFLOG",
        "ULOG",
        "TEE",
        "TPROXY",
        "CHECKSUM",
        "CLASSIFY",
        "SECMARK",
        "CONNSECMARK",
        "SET",
        "AUDIT",
        "NETMAP",
        "TRACE",
        "SYNPROXY",
        "IDLETIMER",
        "LED",
        "RATEEST",
        "CLUSTERIP",
        "HMARK",
    ];
    TARGETS.contains(&name)
}

fn quote_if_needed(word: &str) -> String {
    if word.is_empty() || word.contains(char::is_whitespace) {
        format!("\"{word}\"")
    } else {
        word.to_string()
    }
}

fn full_mask(family: Family) -> IpAddr {
    match family {
        Family::Ipv4 => IpAddr::from([255u8; 4]),
        Family::Ipv6 => IpAddr::from([0xffu8; 16]),
    }
}

/// An address or CIDR as iptables-save prints it; host bits are cleared,
/// as the kernel does.
pub fn parse_net(text: &str) -> Option<IpNet> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(IpNet::from(addr));
    }
    let (addr, prefix) = text.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let prefix: u8 = match prefix.parse() {
        Ok(p) => p,
        // A dotted mask (`255.255.255.0`), as some tools write.
        Err(_) => mask_prefix(prefix.parse().ok()?)?,
    };
    IpNet::new(addr, prefix).ok().map(|n| n.trunc())
}

fn mask_prefix(mask: IpAddr) -> Option<u8> {
    let bits: u128 = match mask {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    };
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// `80`, `1000:2000`; an open end (`1024:`) reaches 65535.
pub fn parse_port_range(text: &str) -> Option<PortRange> {
    let port = |t: &str, default: u16| -> Option<u16> {
        if t.is_empty() {
            return Some(default);
        }
        t.parse::<u16>().ok()
    };
    let (first, last) = match text.split_once(':') {
        Some((a, b)) => (port(a, 0)?, port(b, 65535)?),
        None => {
            let p = text.parse::<u16>().ok()?;
            (p, p)
        }
    };
    (first <= last).then_some(PortRange { first, last })
}

fn flag_list(text: &str) -> Option<Vec<TcpFlag>> {
    let mut flags = Vec::new();
    for name in text.split(',') {
        match name {
            "ALL" => flags.extend(TcpFlag::ALL),
            "NONE" => {}
            other => flags.push(TcpFlag::parse(other)?),
        }
    }
    flags.sort();
    flags.dedup();
    Some(flags)
}

/// A type by number or name; a `type/code` or a code-only name (such as
/// `port-unreachable`) is not a type `rule()` can match, so it is `None`.
fn icmp_type(family: Family, text: &str) -> Option<u8> {
    if let Ok(number) = text.parse::<u8>() {
        return Some(number);
    }
    if text == "any" {
        return None;
    }
    icmp_type_by_name(family, text).map(|(_, n)| n)
}

fn parse_rate(text: &str) -> Option<RateLimit> {
    let (count, unit) = text.split_once('/')?;
    let count: u32 = count.parse().ok()?;
    let per = match unit {
        "sec" | "second" | "s" => RateUnit::Second,
        "min" | "minute" | "m" => RateUnit::Minute,
        "hour" | "h" => RateUnit::Hour,
        "day" | "d" => RateUnit::Day,
        _ => return None,
    };
    (1..=10_000).contains(&count).then_some(RateLimit {
        count,
        per,
        burst: None,
    })
}

/// `192.0.2.10`, `192.0.2.10:8080`, `[2001:db8::10]:8080`; a port range
/// (`8080-8090`) or an address range is more than `rule()`'s `to` says.
fn parse_endpoint(text: &str) -> Option<Endpoint> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else if text.matches(':').count() == 1 {
        let (host, port) = text.split_once(':')?;
        (host, Some(port))
    } else {
        (text, None)
    };
    let addr: IpAddr = host.parse().ok()?;
    let port = match port {
        Some(p) => Some(PortRange::single(p.parse().ok().filter(|p| *p > 0)?)),
        None => None,
    };
    Some(Endpoint { addr, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(spec: &str) -> SavedRule {
        read(Family::Ipv4, "filter", "INPUT", spec)
    }

    #[test]
    fn reads_the_usual_matches() {
        let rule = v4("-s 203.0.113.7/32 -i eth0 -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT");
        assert!(rule.unknown.is_empty(), "{:?}", rule.unknown);
        let m = &rule.matches;
        assert_eq!(m.src, Some("203.0.113.7/32".parse().unwrap()));
        assert_eq!(m.iface.as_deref(), Some("eth0"));
        assert_eq!(m.proto, Some(Proto::Tcp));
        assert_eq!(m.dports, [PortRange::single(22)]);
        assert_eq!(m.states, [CtState::New, CtState::Established]);
        assert_eq!(rule.target, Target::Accept);
    }

    #[test]
    fn reads_multiport_flags_icmp_limit_and_recent() {
        let rule = v4("-p tcp -m multiport --dports 80,443,8000:8010 -j ACCEPT");
        assert_eq!(rule.matches.dports.len(), 3);
        assert_eq!(
            rule.matches.dports[2],
            PortRange {
                first: 8000,
                last: 8010
            }
        );
        let rule =
            v4("-p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m state --state NEW -j DROP");
        let flags = rule.matches.tcp_flags.unwrap();
        assert!(flags.negated);
        assert_eq!(flags.set, [TcpFlag::Syn]);
        let rule = v4("-p tcp -m tcp --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE -j DROP");
        assert_eq!(rule.matches.tcp_flags.unwrap().set, []);
        let rule = v4("-p icmp -m icmp --icmp-type 8 -j ACCEPT");
        assert_eq!(rule.matches.icmp_type, Some(8));
        let rule =
            v4("-p tcp -m tcp --tcp-flags SYN,RST,ACK,FIN RST -m limit --limit 1/sec -j ACCEPT");
        assert_eq!(rule.matches.limit.unwrap().count, 1);
        let rule = v4("-p tcp -m tcp --dport 22 --tcp-flags FIN,SYN,RST,ACK SYN -m recent --update --seconds 30 --hitcount 3 --name dmitro --mask 255.255.255.255 --rsource -j DROP");
        assert!(rule.unknown.is_empty(), "{:?}", rule.unknown);
        assert_eq!(
            rule.matches.recent.unwrap().check,
            RecentCheck::Seen {
                seconds: 30,
                hits: 3
            }
        );
    }

    #[test]
    fn keeps_what_it_cannot_read() {
        let rule = v4("-p icmp -f -j DROP");
        assert_eq!(rule.unknown, ["-f (fragments)"]);
        let rule = v4("-m addrtype --dst-type LOCAL -j RETURN");
        assert_eq!(rule.unknown, ["-m addrtype --dst-type LOCAL"]);
        assert_eq!(rule.target, Target::Return);
        let rule = v4("! -s 10.0.0.0/8 -j DROP");
        assert_eq!(rule.unknown, ["! -s 10.0.0.0/8"]);
        let rule = v4("-p tcp -j MARK --set-xmark 0x1/0xffffffff");
        assert_eq!(
            rule.target,
            Target::Other("-j MARK --set-xmark 0x1/0xffffffff".into())
        );
        let rule = v4(r#"-m comment --comment "a b" -j LOG --log-prefix "[UFW BLOCK] ""#);
        assert_eq!(rule.matches.comment.as_deref(), Some("a b"));
        assert_eq!(
            rule.target,
            Target::Log {
                prefix: Some("[UFW BLOCK] ".into())
            }
        );
    }

    #[test]
    fn reads_targets() {
        assert_eq!(
            v4("-p tcp -j REJECT --reject-with tcp-reset").target,
            Target::Reject {
                with: Some("tcp-reset".into())
            }
        );
        assert_eq!(
            v4("-j REJECT --reject-with icmp-port-unreachable").target,
            Target::Reject { with: None }
        );
        assert_eq!(v4("-j f2b-sshd").target, Target::Jump("f2b-sshd".into()));
        let nat = read(
            Family::Ipv4,
            "nat",
            "PREROUTING",
            "-i eth1 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8080",
        );
        assert_eq!(
            nat.target,
            Target::Redirect {
                to_port: PortRange::single(8080)
            }
        );
        let dnat = read(
            Family::Ipv4,
            "nat",
            "PREROUTING",
            "-p tcp -m tcp --dport 2222 -j DNAT --to-destination 10.0.0.10:22",
        );
        assert!(
            matches!(dnat.target, Target::Dnat { to } if to.port == Some(PortRange::single(22)))
        );
    }

    #[test]
    fn reads_long_option_names_and_ipv6() {
        let rule = read(
            Family::Ipv6,
            "filter",
            "INPUT",
            "--protocol ipv6-icmp --match icmp6 --icmpv6-type neighbor-solicitation --jump ACCEPT",
        );
        assert!(rule.unknown.is_empty(), "{:?}", rule.unknown);
        assert_eq!(rule.matches.proto, Some(Proto::Icmp));
        assert_eq!(rule.matches.icmp_type, Some(135));
    }
}
