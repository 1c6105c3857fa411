//! The script calls an import writes, and their text (import: place →
//! **calls** → script). A call is plain data until it is written, so the
//! two families' calls can be compared and merged.

use std::fmt::Write as _;

use ipnet::IpNet;

use super::rule::{Proto, RuleMatch};
use crate::netfilter::{icmp_types, Family, Hook, Table};
use crate::plan::{CtState, Endpoint, PortRange, RateUnit, TcpFlag, TcpFlags};

/// A value in a call's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    List(Vec<Value>),
    Map(Vec<(&'static str, Value)>),
}

impl Value {
    fn write(&self, out: &mut String) {
        match self {
            Value::Str(text) => {
                let _ = write!(out, "\"{text}\"");
            }
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Value::Map(entries) => {
                out.push_str("#{ ");
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "{key}: ");
                    value.write(out);
                }
                out.push_str(" }");
            }
        }
    }

    /// One item, or an array of them.
    pub fn one_or_list(mut items: Vec<Value>) -> Value {
        if items.len() == 1 {
            items.remove(0)
        } else {
            Value::List(items)
        }
    }
}

pub fn port(range: PortRange) -> Value {
    if range.first == range.last {
        Value::Int(i64::from(range.first))
    } else {
        Value::Str(format!("{}:{}", range.first, range.last))
    }
}

pub fn ports(ranges: &[PortRange]) -> Value {
    Value::one_or_list(ranges.iter().map(|r| port(*r)).collect())
}

pub fn address(net: &IpNet) -> Value {
    if net.prefix_len() == net.max_prefix_len() {
        Value::Str(net.addr().to_string())
    } else {
        Value::Str(net.to_string())
    }
}

pub fn addresses(nets: &[IpNet]) -> Value {
    Value::one_or_list(nets.iter().map(address).collect())
}

/// The options most stdlib functions take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opts {
    pub from: Option<IpNet>,
    pub iface: Option<String>,
    pub comment: Option<String>,
    pub family: Option<Family>,
}

impl Opts {
    fn entries(&self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if let Some(from) = &self.from {
            out.push(("from", address(from)));
        }
        if let Some(iface) = &self.iface {
            out.push(("iface", Value::Str(iface.clone())));
        }
        if let Some(comment) = &self.comment {
            out.push(("comment", Value::Str(comment.clone())));
        }
        if let Some(family) = self.family {
            out.push(("family", Value::Str(family.name().into())));
        }
        out
    }
}

/// One call of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `allow_tcp` or `allow_udp`.
    AllowPorts {
        udp: bool,
        ports: Vec<PortRange>,
        opts: Opts,
    },
    SshFrom(Vec<IpNet>),
    AllowFrom(Vec<IpNet>),
    Block(Vec<IpNet>),
    AllowPing,
    DropScans,
    LimitTcp {
        ports: Vec<PortRange>,
        hits: u32,
        seconds: u32,
        opts: Opts,
    },
    LogDrops(String),
    RedirectTcp {
        port: u16,
        to_port: u16,
        opts: Opts,
    },
    ForwardTcp {
        port: u16,
        to: Endpoint,
        opts: Opts,
    },
    Masquerade {
        iface: String,
        opts: Opts,
    },
    Rule(Vec<(&'static str, Value)>),
    Policy(Hook, &'static str),
    Baseline(Vec<&'static str>),
}

impl Call {
    /// The script text of the call, without the `;`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let with_opts =
            |out: &mut String, name: &str, first: Vec<Value>, opts: Vec<(&'static str, Value)>| {
                let _ = write!(out, "{name}(");
                let mut args = first;
                if !opts.is_empty() {
                    args.push(Value::Map(opts));
                }
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    arg.write(out);
                }
                out.push(')');
            };
        match self {
            Call::AllowPorts {
                udp,
                ports: p,
                opts,
            } => {
                let name = if *udp { "allow_udp" } else { "allow_tcp" };
                with_opts(&mut out, name, vec![ports(p)], opts.entries());
            }
            Call::SshFrom(nets) => with_opts(&mut out, "ssh_from", vec![addresses(nets)], vec![]),
            Call::AllowFrom(nets) => {
                with_opts(&mut out, "allow_from", vec![addresses(nets)], vec![])
            }
            Call::Block(nets) => with_opts(&mut out, "block", vec![addresses(nets)], vec![]),
            Call::AllowPing => out.push_str("allow_ping()"),
            Call::DropScans => out.push_str("drop_scans()"),
            Call::LimitTcp {
                ports: p,
                hits,
                seconds,
                opts,
            } => {
                let mut entries = Vec::new();
                if *hits != 6 {
                    entries.push(("hits", Value::Int(i64::from(*hits))));
                }
                if *seconds != 30 {
                    entries.push(("seconds", Value::Int(i64::from(*seconds))));
                }
                entries.extend(opts.entries());
                with_opts(&mut out, "limit_tcp", vec![ports(p)], entries);
            }
            Call::LogDrops(prefix) => with_opts(
                &mut out,
                "log_drops",
                vec![Value::Str(prefix.clone())],
                vec![],
            ),
            Call::RedirectTcp {
                port: p,
                to_port,
                opts,
            } => with_opts(
                &mut out,
                "redirect_tcp",
                vec![Value::Int(i64::from(*p)), Value::Int(i64::from(*to_port))],
                opts.entries(),
            ),
            Call::ForwardTcp { port: p, to, opts } => with_opts(
                &mut out,
                "forward_tcp",
                vec![Value::Int(i64::from(*p)), Value::Str(to.to_string())],
                opts.entries(),
            ),
            Call::Masquerade { iface, opts } => with_opts(
                &mut out,
                "masquerade",
                vec![Value::Str(iface.clone())],
                opts.entries(),
            ),
            Call::Rule(entries) => {
                with_opts(&mut out, "rule", vec![Value::Map(entries.clone())], vec![])
            }
            Call::Policy(hook, verdict) => {
                let _ = write!(out, "policy(\"{}\", \"{verdict}\")", hook.script_name());
            }
            Call::Baseline(off) => {
                let entries = off
                    .iter()
                    .map(|key| (*key, Value::Str(String::new())))
                    .collect::<Vec<_>>();
                out.push_str("baseline(#{ ");
                for (i, (key, _)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "{key}: false");
                }
                out.push_str(" })");
            }
        }
        out
    }

    /// Whether the call already ties itself to one family (an address, or
    /// ICMP of one family), so it needs no `family` option.
    pub fn family_bound(&self) -> bool {
        match self {
            Call::AllowPorts { opts, .. }
            | Call::LimitTcp { opts, .. }
            | Call::RedirectTcp { opts, .. }
            | Call::Masquerade { opts, .. } => opts.from.is_some(),
            Call::SshFrom(_) | Call::AllowFrom(_) | Call::Block(_) | Call::ForwardTcp { .. } => {
                true
            }
            Call::Rule(entries) => entries.iter().any(|(key, value)| {
                matches!(*key, "src" | "dst" | "to")
                    || (*key == "proto"
                        && matches!(value, Value::Str(p) if p == "icmp" || p == "icmpv6"))
            }),
            Call::AllowPing | Call::DropScans | Call::LogDrops(_) => false,
            Call::Policy(..) | Call::Baseline(_) => true,
        }
    }

    /// The same call limited to `family`; calls without a `family` option
    /// become the `rule()`s they stand for.
    pub fn only(&self, family: Family) -> Vec<Call> {
        if self.family_bound() {
            return vec![self.clone()];
        }
        let with = |opts: &Opts| Opts {
            family: Some(family),
            ..opts.clone()
        };
        match self {
            Call::AllowPorts { udp, ports, opts } => vec![Call::AllowPorts {
                udp: *udp,
                ports: ports.clone(),
                opts: with(opts),
            }],
            Call::LimitTcp {
                ports,
                hits,
                seconds,
                opts,
            } => vec![Call::LimitTcp {
                ports: ports.clone(),
                hits: *hits,
                seconds: *seconds,
                opts: with(opts),
            }],
            Call::RedirectTcp {
                port,
                to_port,
                opts,
            } => vec![Call::RedirectTcp {
                port: *port,
                to_port: *to_port,
                opts: with(opts),
            }],
            Call::Masquerade { iface, opts } => vec![Call::Masquerade {
                iface: iface.clone(),
                opts: with(opts),
            }],
            Call::AllowPing => {
                let proto = match family {
                    Family::Ipv4 => "icmp",
                    Family::Ipv6 => "icmpv6",
                };
                vec![Call::Rule(vec![
                    ("proto", Value::Str(proto.into())),
                    ("icmp_type", Value::Str("echo-request".into())),
                    ("action", Value::Str("accept".into())),
                ])]
            }
            Call::DropScans => scan_rules(Some(family)),
            Call::LogDrops(prefix) => vec![Call::Rule(vec![
                ("limit", Value::Str("5/min".into())),
                ("burst", Value::Int(10)),
                ("action", Value::Str("log".into())),
                ("log_prefix", Value::Str(prefix.clone())),
                ("family", Value::Str(family.name().into())),
            ])],
            Call::Rule(entries) => {
                let mut entries = entries.clone();
                if !entries.iter().any(|(key, _)| *key == "family") {
                    entries.push(("family", Value::Str(family.name().into())));
                }
                vec![Call::Rule(entries)]
            }
            other => vec![other.clone()],
        }
    }
}

/// `drop_scans()`'s three rules, for one family.
fn scan_rules(family: Option<Family>) -> Vec<Call> {
    let mut out = Vec::new();
    for (flags, state, comment) in [
        (
            Value::Map(vec![
                ("mask", Value::Str("all".into())),
                ("set", Value::Str("none".into())),
            ]),
            None,
            "null scan",
        ),
        (
            Value::Map(vec![
                ("mask", Value::Str("all".into())),
                ("set", Value::Str("all".into())),
            ]),
            None,
            "xmas scan",
        ),
        (Value::Str("!syn".into()), Some("new"), "new without syn"),
    ] {
        let mut entries = vec![("proto", Value::Str("tcp".into())), ("tcp_flags", flags)];
        if let Some(state) = state {
            entries.push(("state", Value::Str(state.into())));
        }
        entries.push(("action", Value::Str("drop".into())));
        entries.push(("comment", Value::Str(comment.into())));
        if let Some(family) = family {
            entries.push(("family", Value::Str(family.name().into())));
        }
        out.push(Call::Rule(entries));
    }
    out
}

/// `rule()`'s keys for matches fwscript can say (the caller has checked).
pub fn rule_entries(
    family: Family,
    table: Table,
    hook: Hook,
    m: &RuleMatch,
) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    if table != Table::Filter {
        out.push(("table", Value::Str(table.name().into())));
    }
    if hook != Hook::Input {
        out.push(("chain", Value::Str(hook.script_name().into())));
    }
    if let Some(proto) = m.proto {
        out.push(("proto", Value::Str(proto.script_name(family))));
    }
    if let Some(src) = &m.src {
        out.push(("src", address(src)));
    }
    if let Some(dst) = &m.dst {
        out.push(("dst", address(dst)));
    }
    if let Some(iface) = &m.iface {
        out.push(("iface", Value::Str(iface.clone())));
    }
    if let Some(oface) = &m.oface {
        out.push(("oface", Value::Str(oface.clone())));
    }
    if !m.sports.is_empty() {
        out.push(("sport", ports(&m.sports)));
    }
    if !m.dports.is_empty() {
        out.push(("dport", ports(&m.dports)));
    }
    if !m.states.is_empty() {
        out.push((
            "state",
            Value::one_or_list(
                m.states
                    .iter()
                    .map(|s| Value::Str(state_name(*s).into()))
                    .collect(),
            ),
        ));
    }
    if let Some(flags) = &m.tcp_flags {
        out.push(("tcp_flags", tcp_flags(flags)));
    }
    if let Some(t) = m.icmp_type {
        let name = icmp_types(family)
            .iter()
            .find(|(_, n)| *n == t)
            .map(|(name, _)| Value::Str((*name).to_string()));
        out.push(("icmp_type", name.unwrap_or(Value::Int(i64::from(t)))));
    }
    if let Some(limit) = &m.limit {
        let unit = match limit.per {
            RateUnit::Second => "sec",
            RateUnit::Minute => "min",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        };
        out.push(("limit", Value::Str(format!("{}/{unit}", limit.count))));
        if let Some(burst) = limit.burst {
            out.push(("burst", Value::Int(i64::from(burst))));
        }
    }
    out
}

fn state_name(state: CtState) -> &'static str {
    state.script_name()
}

fn tcp_flags(flags: &TcpFlags) -> Value {
    if *flags == TcpFlags::syn() {
        return Value::Str("syn".into());
    }
    if *flags
        == (TcpFlags {
            negated: true,
            ..TcpFlags::syn()
        })
    {
        return Value::Str("!syn".into());
    }
    let list = |flags: &[TcpFlag]| {
        if flags.len() == TcpFlag::ALL.len() {
            Value::Str("all".into())
        } else if flags.is_empty() {
            Value::Str("none".into())
        } else {
            Value::one_or_list(
                flags
                    .iter()
                    .map(|f| Value::Str(f.name().to_lowercase()))
                    .collect(),
            )
        }
    };
    Value::Map(vec![("mask", list(&flags.mask)), ("set", list(&flags.set))])
}

/// Whether `m` is a plain "these ports over TCP or UDP" match.
pub fn ports_only(m: &RuleMatch) -> Option<(bool, Vec<PortRange>, Opts)> {
    let proto = m.proto?;
    if !matches!(proto, Proto::Tcp | Proto::Udp) || m.dports.is_empty() {
        return None;
    }
    let rest = RuleMatch {
        proto: None,
        dports: Vec::new(),
        src: None,
        iface: None,
        comment: None,
        ..m.clone()
    };
    if !rest.is_any() {
        return None;
    }
    let opts = Opts {
        from: m.src,
        iface: m.iface.clone(),
        comment: m
            .comment
            .clone()
            .filter(|c| super::place::valid_text(c, 200)),
        family: None,
    };
    Some((proto == Proto::Udp, m.dports.clone(), opts))
}

/// Whether `m` matches only a source address.
pub fn source_only(m: &RuleMatch) -> Option<IpNet> {
    let rest = RuleMatch {
        src: None,
        comment: None,
        ..m.clone()
    };
    if rest.is_any() {
        m.src
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_read_like_a_person_wrote_them() {
        let web = Call::AllowPorts {
            udp: false,
            ports: vec![PortRange::single(80), PortRange::single(443)],
            opts: Opts::default(),
        };
        assert_eq!(web.text(), "allow_tcp([80, 443])");
        assert_eq!(
            web.only(Family::Ipv4)[0].text(),
            r#"allow_tcp([80, 443], #{ family: "ipv4" })"#
        );
        let ssh = Call::SshFrom(vec![
            "203.0.113.7/32".parse().unwrap(),
            "2001:db8::/48".parse().unwrap(),
        ]);
        assert_eq!(ssh.text(), r#"ssh_from(["203.0.113.7", "2001:db8::/48"])"#);
        let limit = Call::LimitTcp {
            ports: vec![PortRange::single(22)],
            hits: 2,
            seconds: 30,
            opts: Opts::default(),
        };
        assert_eq!(limit.text(), "limit_tcp(22, #{ hits: 2 })");
        assert_eq!(
            Call::AllowPing.only(Family::Ipv6)[0].text(),
            r#"rule(#{ proto: "icmpv6", icmp_type: "echo-request", action: "accept" })"#
        );
        assert_eq!(
            Call::Baseline(vec!["invalid", "icmp"]).text(),
            "baseline(#{ invalid: false, icmp: false })"
        );
    }
}
