//! `rule(map)`: the primitive every stdlib function is built from. Turns one
//! map of docs/functions.md keys into validated rules, split per family and
//! expanded over address and port lists.

use std::borrow::Cow;

use ipnet::IpNet;
use rhai::{Dynamic, Map};
use sha2::{Digest, Sha256};

use super::values::{self, Checked, Problem, Step};
use crate::netfilter::{Family, Hook, Table};
use crate::plan::{
    net_family, Action, CtState, Matches, Origin, PortRange, Proto, Recent, RecentCheck, Rule,
    SetEntries, SetRef, Stage, TcpFlag, TcpFlags, SET_THRESHOLD,
};

pub const KEYS: &[&str] = &[
    "chain",
    "table",
    "proto",
    "dport",
    "sport",
    "src",
    "dst",
    "iface",
    "oface",
    "state",
    "tcp_flags",
    "icmp_type",
    "limit",
    "burst",
    "action",
    "to_port",
    "to",
    "log_prefix",
    "comment",
    "family",
];

/// A `rule()` key, by position in [`KEYS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Chain,
    Table,
    Proto,
    Dport,
    Sport,
    Src,
    Dst,
    Iface,
    Oface,
    State,
    TcpFlags,
    IcmpType,
    Limit,
    Burst,
    Action,
    ToPort,
    To,
    LogPrefix,
    Comment,
    Family,
}

impl Key {
    pub const ALL: [Key; KEYS.len()] = [
        Key::Chain,
        Key::Table,
        Key::Proto,
        Key::Dport,
        Key::Sport,
        Key::Src,
        Key::Dst,
        Key::Iface,
        Key::Oface,
        Key::State,
        Key::TcpFlags,
        Key::IcmpType,
        Key::Limit,
        Key::Burst,
        Key::Action,
        Key::ToPort,
        Key::To,
        Key::LogPrefix,
        Key::Comment,
        Key::Family,
    ];

    pub fn name(self) -> &'static str {
        KEYS[self as usize]
    }

    pub fn parse(name: &str) -> Option<Key> {
        KEYS.iter().position(|k| *k == name).map(|i| Key::ALL[i])
    }
}

/// The values of one rule's keys, as given: an absent key is `None`. The
/// user's values are borrowed from the call, not copied: copying an array
/// copies every item (a list can hold 100,000 addresses).
#[derive(Debug, Clone, Default)]
pub struct Fields<'a>([Option<Cow<'a, Dynamic>>; KEYS.len()]);

impl<'a> Fields<'a> {
    pub fn set(&mut self, key: Key, value: Dynamic) {
        self.0[key as usize] = Some(Cow::Owned(value));
    }

    /// A value of the user's call.
    pub fn lend(&mut self, key: Key, value: &'a Dynamic) {
        self.0[key as usize] = Some(Cow::Borrowed(value));
    }

    pub fn get(&self, key: Key) -> Option<&Dynamic> {
        self.0[key as usize].as_deref()
    }

    /// A `rule()` map: only known keys (an unknown one is an error, never
    /// ignored).
    pub fn from_map(map: &'a Map) -> Checked<Fields<'a>> {
        check_keys(map, KEYS, "rule")?;
        let mut fields = Fields::default();
        for (name, value) in map.iter() {
            if let Some(key) = Key::parse(name) {
                fields.lend(key, value);
            }
        }
        Ok(fields)
    }
}

/// What stdlib may add to a rule beyond the public keys.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub stage: Option<Stage>,
    pub recent: Option<RecentCheck>,
    pub dnat_from_port: Option<u16>,
}

/// A rule with its place in the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedRule {
    pub family: Family,
    pub table: Table,
    pub hook: Hook,
    /// `None` outside the filter table, whose chains are not staged.
    pub stage: Option<Stage>,
    pub rule: Rule,
}

/// Reads one `rule()` map; `origin` is the user's call site.
pub fn expand(fields: &Fields, extras: &Extras, origin: Origin) -> Checked<Expansion> {
    // Only an absent key means "any"; `()` (a typo'd map key, an unset
    // variable) is a mistake that must never widen the rule.
    for key in Key::ALL {
        if fields.get(key).is_some_and(Dynamic::is_unit) {
            let name = key.name();
            return Err(Problem::missing(format!("`{name}`")).within(Step::Key(name.to_string())));
        }
    }
    let spec = Spec { fields };

    let table = match spec.get(Key::Table) {
        Some(v) => key("table", || {
            let text = values::string(v, "`table`")?;
            Table::parse(&text).ok_or_else(|| {
                Problem::new(format!("unknown table `{text}`")).hint("one of: filter, nat, mangle")
            })
        })?,
        None => Table::Filter,
    };
    let hook = match spec.get(Key::Chain) {
        Some(v) => key("chain", || {
            let text = values::string(v, "`chain`")?;
            Hook::parse_script(&text).ok_or_else(|| {
                Problem::new(format!("unknown chain `{text}`"))
                    .hint("one of: input, forward, output, prerouting, postrouting")
            })
        })?,
        None => Hook::Input,
    };
    if !table.builtin_chains().contains(&hook) {
        let names: Vec<_> = table
            .builtin_chains()
            .iter()
            .map(|h| h.script_name())
            .collect();
        return key("chain", || {
            Err(Problem::new(format!(
                "the {table} table has no `{}` chain",
                hook.script_name()
            ))
            .hint(format!(
                "the {table} table's chains are: {}",
                names.join(", ")
            )))
        });
    }

    let proto = match spec.get(Key::Proto) {
        Some(v) => key("proto", || parse_proto(&values::string(v, "`proto`")?))?,
        None => None,
    };
    let action = parse_action(&spec, table, hook, proto)?;

    let mut matches = Matches::default();
    let port_list = |which: Key| -> Checked<Vec<Option<PortRange>>> {
        let name = which.name();
        match spec.get(which) {
            None => Ok(vec![None]),
            Some(v) => key(name, || {
                if !proto.is_some_and(Proto::has_ports) {
                    return Err(Problem::new(format!(
                        "`{name}` needs `proto` \"tcp\" or \"udp\""
                    )));
                }
                Ok(values::ports(v, proto)?.into_iter().map(Some).collect())
            }),
        }
    };
    let dports = port_list(Key::Dport)?;
    let sports = port_list(Key::Sport)?;
    let address_list = |which: Key| -> Checked<Vec<Addr>> {
        let name = which.name();
        match spec.get(which) {
            None => Ok(vec![Addr::Any]),
            Some(v) => key(name, || Ok(choices(values::addresses(v)?))),
        }
    };
    let srcs = address_list(Key::Src)?;
    let dsts = address_list(Key::Dst)?;

    matches.iface = interface(&spec, hook, Key::Iface)?;
    matches.oface = interface(&spec, hook, Key::Oface)?;
    if let Some(v) = spec.get(Key::State) {
        matches.state = key("state", || parse_states(v))?;
    }
    if let Some(v) = spec.get(Key::TcpFlags) {
        matches.tcp_flags = Some(key("tcp_flags", || {
            if proto != Some(Proto::Tcp) {
                return Err(Problem::new("`tcp_flags` needs `proto` \"tcp\""));
            }
            parse_tcp_flags(v)
        })?);
    }
    if let Some(v) = spec.get(Key::IcmpType) {
        matches.icmp_type = Some(key("icmp_type", || {
            let p = proto
                .filter(|p| matches!(p, Proto::Icmp | Proto::Icmpv6))
                .ok_or_else(|| Problem::new("`icmp_type` needs `proto` \"icmp\" or \"icmpv6\""))?;
            values::icmp_type(v, p)
        })?);
    }
    if let Some(v) = spec.get(Key::Limit) {
        matches.limit = Some(key("limit", || {
            values::rate(&values::string(v, "`limit`")?)
        })?);
    }
    if let Some(v) = spec.get(Key::Burst) {
        let burst = key("burst", || {
            if matches.limit.is_none() {
                return Err(Problem::new("`burst` needs `limit`"));
            }
            values::bounded(v, "`burst`", 1..=10_000)
        })?;
        if let Some(limit) = matches.limit.as_mut() {
            limit.burst = Some(burst);
        }
    }
    matches.proto = proto;
    matches.dnat_from_port = extras.dnat_from_port;

    let comment = match spec.get(Key::Comment) {
        Some(v) => Some(key("comment", || {
            values::free_text(
                &values::string(v, "`comment`")?,
                "comment",
                values::MAX_COMMENT,
            )
        })?),
        None => None,
    };

    // Families the rule may live in, before addresses narrow it down.
    let mut families: Vec<Family> = Family::ALL.to_vec();
    let mut narrow = |only: Family, why: String| -> Checked<()> {
        if !families.contains(&only) {
            return Err(Problem::new(format!(
                "{why} is {}, but the rule is limited to {}",
                only_name(only),
                names(&families)
            )));
        }
        families.retain(|f| *f == only);
        Ok(())
    };
    if let Some(v) = spec.get(Key::Family) {
        key("family", || narrow(values::family(v)?, "`family`".into()))?;
    }
    if let Some(family) = proto.and_then(Proto::family) {
        narrow(
            family,
            format!("`proto` \"{}\"", proto.map_or("", Proto::script_name)),
        )?;
    }
    match &action {
        Action::Dnat { to } | Action::Snat { to } => {
            narrow(to.family(), format!("`to` {}", to.addr))?
        }
        _ => {}
    }

    let stage = match table {
        Table::Filter => Some(extras.stage.unwrap_or_else(|| stage_of(&action))),
        Table::Nat | Table::Mangle => None,
    };

    let expansion = Expansion {
        table,
        hook,
        stage,
        matches,
        action,
        comment,
        origin,
        recent: extras.recent.clone(),
        families,
        srcs,
        dsts,
        sports,
        dports,
    };
    if expansion.count() == 0 {
        return Err(family_conflict(
            &expansion.srcs,
            &expansion.dsts,
            &expansion.families,
        ));
    }
    Ok(expansion)
}

/// One source or destination of an [`Expansion`].
#[derive(Debug, Clone)]
enum Addr {
    /// The key is absent: any address, both families.
    Any,
    Net(IpNet),
    /// More than [`SET_THRESHOLD`] addresses of one family: an owned set,
    /// named by the collector, and the addresses in the order given (to
    /// tell which list file they are).
    Set(SetRef, Given),
}

/// Addresses as given, in order, in brief: enough to recognise an address
/// list handed over as it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Given {
    pub count: usize,
    pub digest: u64,
}

impl Given {
    /// FNV-1a over each address and prefix: stable, and cheap next to
    /// anything else done with 100,000 addresses.
    pub fn of<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Given {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut count = 0;
        let mut feed = |byte: u8| {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        };
        for net in nets {
            count += 1;
            match net.addr() {
                std::net::IpAddr::V4(addr) => addr.octets().into_iter().for_each(&mut feed),
                std::net::IpAddr::V6(addr) => addr.octets().into_iter().for_each(&mut feed),
            }
            feed(net.prefix_len());
        }
        Given {
            count,
            digest: hash,
        }
    }
}

impl Addr {
    fn family(&self) -> Option<Family> {
        match self {
            Addr::Any => None,
            Addr::Net(net) => Some(net_family(net)),
            Addr::Set(set, _) => Some(set.family),
        }
    }
}

/// A rule's addresses as the rules it makes will match them: each family's
/// addresses become one set when there are more than [`SET_THRESHOLD`]
/// of them (a `/0` stays a rule of its own: `hash:net` cannot hold it),
/// otherwise one rule each, in the order given.
fn choices(nets: Vec<IpNet>) -> Vec<Addr> {
    // Too few for any family to make a set: the common call, spared the
    // sorting below.
    if nets.len() <= SET_THRESHOLD {
        return nets.into_iter().map(Addr::Net).collect();
    }
    let mut sets: Vec<(Family, SetEntries, Given)> = Vec::new();
    for family in Family::ALL {
        let of_family = |n: &&IpNet| net_family(n) == family && n.prefix_len() > 0;
        let mut entries: Vec<IpNet> = nets.iter().filter(of_family).copied().collect();
        let given = Given::of(&entries);
        entries.sort_unstable();
        entries.dedup();
        if entries.len() > SET_THRESHOLD {
            sets.push((family, entries.into(), given));
        }
    }
    if sets.is_empty() {
        return nets.into_iter().map(Addr::Net).collect();
    }
    let mut placed = [false; 2];
    let mut choices = Vec::new();
    for net in nets {
        let family = net_family(&net);
        let set = sets.iter().find(|(f, _, _)| *f == family);
        match set {
            Some((_, entries, given)) if net.prefix_len() > 0 => {
                let done = &mut placed[family as usize];
                if !*done {
                    *done = true;
                    let set = SetRef {
                        name: String::new(),
                        family,
                        entries: entries.clone(),
                    };
                    choices.push(Addr::Set(set, *given));
                }
            }
            _ => choices.push(Addr::Net(net)),
        }
    }
    choices
}

/// Which address of a rule a set stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Src,
    Dst,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Src => "src",
            Direction::Dst => "dst",
        }
    }
}

/// The rules one `rule()` map stands for, not built yet: each source,
/// destination, family and port makes one. Handed to the collector whole,
/// so a list of 100,000 addresses is never a list of rules twice over.
pub struct Expansion {
    table: Table,
    hook: Hook,
    stage: Option<Stage>,
    matches: Matches,
    action: Action,
    comment: Option<String>,
    origin: Origin,
    recent: Option<RecentCheck>,
    families: Vec<Family>,
    srcs: Vec<Addr>,
    dsts: Vec<Addr>,
    sports: Vec<Option<PortRange>>,
    dports: Vec<Option<PortRange>>,
}

impl Expansion {
    /// The families a rule with these addresses lives in.
    fn families_of(&self, src: &Addr, dst: &Addr) -> impl Iterator<Item = Family> + '_ {
        let (src, dst) = (src.family(), dst.family());
        self.families
            .iter()
            .copied()
            .filter(move |f| src.is_none_or(|s| s == *f) && dst.is_none_or(|d| d == *f))
    }

    /// The sets its rules match, unnamed until the collector names them,
    /// with what names them: everything about the rule but its addresses
    /// and ports (`key`), so adding an address or a port keeps the name.
    pub fn sets_mut(&mut self) -> impl Iterator<Item = (Direction, &mut SetRef, Given)> {
        let srcs = self.srcs.iter_mut().map(|a| (Direction::Src, a));
        let dsts = self.dsts.iter_mut().map(|a| (Direction::Dst, a));
        srcs.chain(dsts).filter_map(|(direction, addr)| match addr {
            Addr::Set(set, given) => Some((direction, set, *given)),
            _ => None,
        })
    }

    /// What a set of this expansion is named after, but for its family,
    /// direction and occurrence: the table, chain, stage and the rest of
    /// the rule.
    pub fn set_key(&self) -> String {
        format!(
            "{}|{}|{:?}|{}|{}|{}|{:?}",
            self.table,
            self.hook.chain_name(),
            self.stage,
            crate::render::matches_text(&self.matches),
            crate::render::target_text(&self.action),
            self.comment.as_deref().unwrap_or(""),
            self.recent,
        )
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// How many rules [`Expansion::for_each`] makes.
    pub fn count(&self) -> usize {
        let ports = self.sports.len() * self.dports.len();
        let mut count = 0;
        for src in &self.srcs {
            for dst in &self.dsts {
                count += self.families_of(src, dst).count() * ports;
            }
        }
        count
    }

    /// Makes each rule, in script order: by source, destination, family,
    /// source port, destination port.
    pub fn for_each(&self, mut take: impl FnMut(PlacedRule)) {
        let net = |addr: &Addr| match addr {
            Addr::Net(net) => Some(*net),
            _ => None,
        };
        let set = |addr: &Addr| match addr {
            Addr::Set(set, _) => Some(set.clone()),
            _ => None,
        };
        for src in &self.srcs {
            for dst in &self.dsts {
                for family in self.families_of(src, dst) {
                    for sport in &self.sports {
                        for dport in &self.dports {
                            let mut m = self.matches.clone();
                            m.src = net(src);
                            m.dst = net(dst);
                            m.src_set = set(src);
                            m.dst_set = set(dst);
                            m.sport = *sport;
                            m.dport = *dport;
                            m.recent = self.recent.clone().map(|check| Recent {
                                list: recent_list(family, &m),
                                check,
                            });
                            take(PlacedRule {
                                family,
                                table: self.table,
                                hook: self.hook,
                                stage: self.stage,
                                rule: Rule {
                                    matches: m,
                                    action: self.action.clone(),
                                    comment: self.comment.clone(),
                                    origin: Some(self.origin.clone()),
                                },
                            });
                        }
                    }
                }
            }
        }
    }
}

struct Spec<'a> {
    fields: &'a Fields<'a>,
}

impl Spec<'_> {
    /// A key's value; never `()`, which [`expand`] refuses up front.
    fn get(&self, key: Key) -> Option<&Dynamic> {
        self.fields.get(key)
    }
}

/// Whatever goes wrong in `body` lies in the value of key `name`.
fn key<T>(name: &str, body: impl FnOnce() -> Checked<T>) -> Checked<T> {
    body().map_err(|p| p.within(Step::Key(name.to_string())))
}

/// `iface` or `oface`, where the packet has such an interface: none comes
/// in on output and postrouting, none goes out yet on input and prerouting.
fn interface(spec: &Spec, hook: Hook, which: Key) -> Checked<Option<String>> {
    let name = which.name();
    let Some(value) = spec.get(which) else {
        return Ok(None);
    };
    let (direction, other, other_direction, lacking): (&str, &str, &str, &[Hook]) = match name {
        "iface" => (
            "incoming",
            "oface",
            "outgoing",
            &[Hook::Output, Hook::Postrouting],
        ),
        _ => (
            "outgoing",
            "iface",
            "incoming",
            &[Hook::Input, Hook::Prerouting],
        ),
    };
    if lacking.contains(&hook) {
        return Err(Problem::new(format!(
            "`{name}` (the {direction} interface) cannot be used in the `{}` chain",
            hook.script_name()
        ))
        .hint(format!("use `{other}` for the {other_direction} interface"))
        .within(Step::Key(name.into())));
    }
    key(name, || {
        values::iface(&values::string(value, &format!("`{name}`"))?).map(Some)
    })
}

/// An unknown key is an error, never ignored (docs/functions.md).
pub fn check_keys(map: &Map, known: &[&str], what: &str) -> Checked<()> {
    let mut unknown: Vec<&str> = map
        .keys()
        .map(|k| k.as_str())
        .filter(|k| !known.contains(k))
        .collect();
    unknown.sort_unstable();
    let Some(first) = unknown.first() else {
        return Ok(());
    };
    let hint = match closest(first, known) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!("the keys {what} takes: {}", known.join(", ")),
    };
    Err(
        Problem::new(format!("unknown key `{first}` in the options of `{what}`"))
            .hint(hint)
            .within(Step::KeyName(first.to_string())),
    )
}

/// The known name nearest to a misspelling, if one is near enough.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn parse_proto(text: &str) -> Checked<Option<Proto>> {
    match text {
        "tcp" => Ok(Some(Proto::Tcp)),
        "udp" => Ok(Some(Proto::Udp)),
        "icmp" => Ok(Some(Proto::Icmp)),
        "icmpv6" | "ipv6-icmp" => Ok(Some(Proto::Icmpv6)),
        "all" => Ok(None),
        _ => Err(Problem::new(format!("unknown protocol `{text}`"))
            .hint("one of: tcp, udp, icmp, icmpv6, all")),
    }
}

fn parse_action(spec: &Spec, table: Table, hook: Hook, proto: Option<Proto>) -> Checked<Action> {
    let value = spec.get(Key::Action).ok_or_else(|| {
        Problem::new("the rule has no `action`")
            .hint("add `action: \"accept\"` (or drop, reject, …)")
    })?;
    let text = key("action", || values::string(value, "`action`"))?;
    let only_with = |key: Key, action: &str| -> Checked<()> {
        let key = key.name();
        match spec.get(Key::parse(key).unwrap_or(Key::Action)) {
            Some(_) => Err(
                Problem::new(format!("`{key}` only goes with `action` \"{action}\""))
                    .within(Step::Key(key.into())),
            ),
            None => Ok(()),
        }
    };
    if text != "log" {
        only_with(Key::LogPrefix, "log")?;
    }
    if text != "redirect" {
        only_with(Key::ToPort, "redirect")?;
    }
    if !matches!(text.as_str(), "dnat" | "snat") {
        only_with(Key::To, "dnat\" or \"snat")?;
    }
    let place = |tables: &[Table], hooks: &[Hook]| -> Checked<()> {
        if tables.contains(&table) && hooks.contains(&hook) {
            return Ok(());
        }
        let chains: Vec<_> = hooks.iter().map(|h| h.script_name()).collect();
        let tables: Vec<_> = tables.iter().map(|t| t.name()).collect();
        Err(Problem::new(format!(
            "action `{text}` cannot be used in the {table} table's `{}` chain",
            hook.script_name()
        ))
        .hint(format!(
            "`{text}` works in the {} table, chains {}",
            tables.join("/"),
            chains.join(", ")
        ))
        .within(Step::Key("action".into())))
    };
    let needs_ports = |what: &str| -> Checked<()> {
        if proto.is_some_and(Proto::has_ports) {
            Ok(())
        } else {
            Err(
                Problem::new(format!("action `{what}` needs `proto` \"tcp\" or \"udp\""))
                    .within(Step::Key("action".into())),
            )
        }
    };
    let all_hooks = &Hook::ALL;
    let action = match text.as_str() {
        "accept" => Action::Accept,
        "return" => Action::Return,
        "drop" => {
            place(&[Table::Filter, Table::Mangle], all_hooks)?;
            Action::Drop
        }
        "reject" => {
            place(&[Table::Filter], &[Hook::Input, Hook::Forward, Hook::Output])?;
            Action::Reject
        }
        "log" => {
            let prefix = spec
                .get(Key::LogPrefix)
                .map(|v| key("log_prefix", || values::free_text(&values::string(v, "`log_prefix`")?, "log prefix", values::MAX_LOG_PREFIX)))
                .transpose()?;
            Action::Log { prefix }
        }
        "redirect" => {
            place(&[Table::Nat], &[Hook::Prerouting, Hook::Output])?;
            needs_ports("redirect")?;
            let to_port = spec.get(Key::ToPort).ok_or_else(|| Problem::new("action `redirect` needs `to_port`"))?;
            let ports = key("to_port", || values::ports(to_port, proto))?;
            let [to_port] = ports[..] else {
                return Err(Problem::new("`to_port` must be one port or one range").within(Step::Key("to_port".into())));
            };
            Action::Redirect { to_port }
        }
        "dnat" => {
            place(&[Table::Nat], &[Hook::Prerouting, Hook::Output])?;
            let to = endpoint(spec)?;
            if to.port.is_some() {
                needs_ports("dnat")?;
            }
            Action::Dnat { to }
        }
        "snat" => {
            place(&[Table::Nat], &[Hook::Postrouting, Hook::Input])?;
            let to = endpoint(spec)?;
            if to.port.is_some() {
                needs_ports("snat")?;
            }
            Action::Snat { to }
        }
        "masquerade" => {
            place(&[Table::Nat], &[Hook::Postrouting])?;
            Action::Masquerade
        }
        other => match other.strip_prefix("jump:") {
            Some(chain) => Action::Jump { chain: key("action", || values::jump_chain(chain))? },
            None => {
                return Err(Problem::new(format!("unknown action `{other}`")).hint(
                    "one of: accept, drop, reject, log, return, jump:NAME, redirect, dnat, snat, masquerade",
                ).within(Step::Key("action".into())))
            }
        },
    };
    Ok(action)
}

fn endpoint(spec: &Spec) -> Checked<crate::plan::Endpoint> {
    let to = spec
        .get(Key::To)
        .ok_or_else(|| Problem::new("this action needs `to`: \"host[:port]\""))?;
    key("to", || values::endpoint(&values::string(to, "`to`")?))
}

/// Rules land in a stage by what they do: drops first, then accepts.
/// The stage a `rule()` lands in by its action. Only what can never
/// accept goes to the deny stage, whose jump sits at the top of the
/// built-in chain, above other programs' bans: a jump (to a foreign chain,
/// NFQUEUE) or a return may accept, so it sits with the permissions, below
/// every foreign rule.
fn stage_of(action: &Action) -> Stage {
    match action {
        Action::Drop | Action::Reject => Stage::Deny,
        _ => Stage::Allow,
    }
}

fn parse_states(value: &Dynamic) -> Checked<Vec<CtState>> {
    let mut states = Vec::new();
    let listed = value.is_array();
    for (i, item) in values::one_or_many(value).iter().enumerate() {
        let within = |p: Problem| if listed { p.within(Step::Item(i)) } else { p };
        let text = values::string(item, "one of its states").map_err(within)?;
        let state = CtState::ALL
            .into_iter()
            .find(|s| s.script_name() == text)
            .ok_or_else(|| {
                within(
                    Problem::new(format!("unknown connection state `{text}`"))
                        .hint("one of: new, established, related, invalid"),
                )
            })?;
        if !states.contains(&state) {
            states.push(state);
        }
    }
    if states.is_empty() {
        return Err(
            Problem::new("`state` is an empty list").hint("leave `state` out to match every state")
        );
    }
    states.sort();
    Ok(states)
}

/// `"syn"`, `"!syn"`, or `#{ mask: [...], set: [...] }` with flag names or
/// `"all"`.
fn parse_tcp_flags(value: &Dynamic) -> Checked<TcpFlags> {
    if let Some(text) = value.read_lock::<rhai::ImmutableString>() {
        return match text.as_str() {
            "syn" => Ok(TcpFlags::syn()),
            "!syn" => Ok(TcpFlags {
                negated: true,
                ..TcpFlags::syn()
            }),
            other => Err(
                Problem::new(format!("unknown `tcp_flags` shorthand `{other}`")).hint(
                    "write \"syn\", \"!syn\" or #{ mask: [\"syn\", \"ack\"], set: [\"syn\"] }",
                ),
            ),
        };
    }
    let map = value.read_lock::<Map>().ok_or_else(|| {
        Problem::new(format!(
            "`tcp_flags` must be \"syn\" or a map with `mask` and `set`, found {}",
            values::describe(value)
        ))
    })?;
    check_keys(&map, &["mask", "set"], "tcp_flags")?;
    let flags = |key: &str| -> Checked<Vec<TcpFlag>> {
        let v = map
            .get(key)
            .ok_or_else(|| Problem::new(format!("`tcp_flags` needs `{key}`")))?;
        let mut flags = Vec::new();
        for item in values::one_or_many(v).iter() {
            let name = values::string(item, "a tcp flag")?;
            if name.eq_ignore_ascii_case("all") {
                flags.extend(TcpFlag::ALL);
            } else if !name.eq_ignore_ascii_case("none") {
                flags.push(TcpFlag::parse(&name).ok_or_else(|| {
                    Problem::new(format!("unknown tcp flag `{name}`"))
                        .hint("one of: syn, ack, fin, rst, psh, urg, all, none")
                })?);
            }
        }
        flags.sort();
        flags.dedup();
        Ok(flags)
    };
    let (mask, set) = (flags("mask")?, flags("set")?);
    if let Some(extra) = set.iter().find(|f| !mask.contains(f)) {
        return Err(Problem::new(format!(
            "tcp flag `{}` is in `set` but not in `mask`",
            extra.name().to_lowercase()
        )));
    }
    Ok(TcpFlags {
        mask,
        set,
        negated: false,
    })
}

/// The `recent` list a limit rule pair shares: named after what it guards,
/// so the pair agrees and editing another rule does not reset its memory.
fn recent_list(family: Family, m: &Matches) -> String {
    let mut key = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}",
        m.proto, m.dport, m.src, m.iface, m.dst
    );
    // Only when there is one, so lists without sets keep their names.
    for set in [&m.src_set, &m.dst_set].into_iter().flatten() {
        key.push('|');
        key.push_str(&set.name);
    }
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let tag = if family == Family::Ipv4 { "4" } else { "6" };
    format!("fws{tag}-{hex}")
}

fn only_name(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "IPv4",
        Family::Ipv6 => "IPv6",
    }
}

fn names(families: &[Family]) -> String {
    families
        .iter()
        .map(|f| only_name(*f))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn family_conflict(srcs: &[Addr], dsts: &[Addr], families: &[Family]) -> Problem {
    let describe = |list: &[Addr]| -> String {
        list.iter()
            .filter_map(|a| match a {
                Addr::Any => None,
                Addr::Net(n) => Some(format!("{n} ({})", only_name(net_family(n)))),
                Addr::Set(set, _) => Some(format!(
                    "{} {} addresses",
                    set.entries.len(),
                    only_name(set.family)
                )),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if srcs.iter().any(|a| !matches!(a, Addr::Any)) {
        parts.push(format!("`src` {}", describe(srcs)));
    }
    if dsts.iter().any(|a| !matches!(a, Addr::Any)) {
        parts.push(format!("`dst` {}", describe(dsts)));
    }
    Problem::new(format!(
        "no address family fits this rule: {} while the rule is limited to {}",
        parts.join(" and "),
        names(families)
    ))
    .hint("IPv4 and IPv6 addresses cannot be mixed within one rule; split it in two")
}
