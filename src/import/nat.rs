//! The nat table, translated (import: flatten → **nat** → script). fwscript
//! keeps nat rules in script order, so only the choice of call needs care:
//! `redirect_tcp` and `forward_tcp` also open the filter side for exactly
//! the translated connections, so they are used only where the original's
//! filter chain already accepts those packets; elsewhere the translation
//! is written as a plain `rule()` and the filter side stays as it was.

use super::calls::{self, Call, Opts, Value};
use super::flatten::{Entry, Hooked};
use super::model;
use super::place::{self, Aside, Chain, Kind, Verdict};
use super::rule::{Proto, RuleMatch, Target};
use crate::netfilter::{Family, Hook, Policy, Table};
use crate::plan::PortRange;

/// One nat call or comment, in the original's order.
#[derive(Debug, Clone, PartialEq)]
pub enum NatItem {
    Call { call: Call, lines: Vec<String> },
    Aside(Aside),
}

/// Translates one family's nat chains; `filter` are the same family's
/// filter chains, to check what `redirect_tcp` and `forward_tcp` add.
pub fn translate(family: Family, hooked: &[Hooked], filter: &[&Chain]) -> Vec<NatItem> {
    let mut out = Vec::new();
    for chain in hooked {
        for entry in &chain.entries {
            match entry {
                Entry::Owned { owner, line } => out.push(NatItem::Aside(Aside::Owned {
                    owner: *owner,
                    line: line.clone(),
                })),
                Entry::Unexpressed { lines, why, .. } => {
                    out.push(NatItem::Aside(Aside::Unexpressed {
                        lines: lines.clone(),
                        why: why.clone(),
                    }))
                }
                Entry::Dead { line, why } => out.push(NatItem::Aside(Aside::Covered {
                    line: line.clone(),
                    why: why.clone(),
                })),
                Entry::Flat(flat) => {
                    match call(family, chain.hook, &flat.matches, &flat.target, filter) {
                        Ok(call) => out.push(NatItem::Call {
                            call,
                            lines: flat.lines.clone(),
                        }),
                        Err(why) => out.push(NatItem::Aside(Aside::Unexpressed {
                            lines: flat.lines.clone(),
                            why,
                        })),
                    }
                }
            }
        }
    }
    out
}

fn call(
    family: Family,
    hook: Hook,
    m: &RuleMatch,
    target: &Target,
    filter: &[&Chain],
) -> Result<Call, String> {
    if m.recent.is_some() || m.hop_limit_255 {
        return Err("fwscript cannot say this match in the nat table".into());
    }
    if let Some(Proto::Other(n)) = m.proto {
        return Err(format!("fwscript cannot match protocol {n}"));
    }
    for name in [&m.iface, &m.oface].into_iter().flatten() {
        if !place::valid_iface(name) {
            return Err(format!("fwscript cannot write the interface name `{name}`"));
        }
    }
    if let Some(flags) = &m.tcp_flags {
        if flags.negated {
            return Err("fwscript cannot negate TCP flags in the nat table".into());
        }
    }
    let comment = m.comment.clone().filter(|c| place::valid_text(c, 200));
    let opts = |m: &RuleMatch| Opts {
        from: m.src,
        iface: m.iface.clone(),
        comment: comment.clone(),
        family: None,
    };
    // The matches the stdlib calls take: one TCP port, a source, an
    // interface.
    let simple_tcp_port = |m: &RuleMatch| -> Option<u16> {
        let rest = RuleMatch {
            proto: None,
            dports: Vec::new(),
            src: None,
            iface: None,
            comment: None,
            ..m.clone()
        };
        match (m.proto, &m.dports[..]) {
            (Some(Proto::Tcp), [range]) if range.first == range.last && rest.is_any() => {
                Some(range.first)
            }
            _ => None,
        }
    };
    let mut entries = calls::rule_entries(family, Table::Nat, hook, m);
    let action = |entries: &mut Vec<(&'static str, Value)>, action: &str| {
        entries.push(("action", Value::Str(action.into())));
    };
    match target {
        Target::Masquerade if hook == Hook::Postrouting => {
            let rest = RuleMatch {
                oface: None,
                src: None,
                comment: None,
                ..m.clone()
            };
            if let (Some(iface), true) = (&m.oface, rest.is_any()) {
                return Ok(Call::Masquerade {
                    iface: iface.clone(),
                    opts: Opts {
                        iface: None,
                        ..opts(m)
                    },
                });
            }
            action(&mut entries, "masquerade");
        }
        Target::Redirect { to_port } if matches!(hook, Hook::Prerouting | Hook::Output) => {
            if !m.proto.is_some_and(Proto::has_ports) {
                return Err("a REDIRECT without a TCP or UDP protocol".into());
            }
            let single = to_port.first == to_port.last;
            if let (Some(port), true, Hook::Prerouting) = (simple_tcp_port(m), single, hook) {
                let redirected = RuleMatch {
                    proto: Some(Proto::Tcp),
                    dports: vec![*to_port],
                    src: m.src,
                    iface: m.iface.clone(),
                    ..RuleMatch::default()
                };
                if accepted(family, filter, Hook::Input, &redirected) {
                    return Ok(Call::RedirectTcp {
                        port,
                        to_port: to_port.first,
                        opts: opts(m),
                    });
                }
            }
            action(&mut entries, "redirect");
            entries.push(("to_port", calls::port(*to_port)));
        }
        Target::Dnat { to } if matches!(hook, Hook::Prerouting | Hook::Output) => {
            if to.port.is_some() && !m.proto.is_some_and(Proto::has_ports) {
                return Err("a DNAT to a port without a TCP or UDP protocol".into());
            }
            if let (Some(port), Hook::Prerouting) = (simple_tcp_port(m), hook) {
                let forwarded = RuleMatch {
                    proto: Some(Proto::Tcp),
                    dst: Some(to.addr.into()),
                    dports: vec![to.port.unwrap_or(PortRange::single(port))],
                    src: m.src,
                    iface: m.iface.clone(),
                    ..RuleMatch::default()
                };
                let single = to.port.is_none_or(|p| p.first == p.last);
                if single && accepted(family, filter, Hook::Forward, &forwarded) {
                    return Ok(Call::ForwardTcp {
                        port,
                        to: *to,
                        opts: Opts {
                            family: None,
                            ..opts(m)
                        },
                    });
                }
            }
            action(&mut entries, "dnat");
            entries.push(("to", Value::Str(to.to_string())));
        }
        Target::Snat { to } if matches!(hook, Hook::Postrouting | Hook::Input) => {
            if to.port.is_some() && !m.proto.is_some_and(Proto::has_ports) {
                return Err("an SNAT to a port without a TCP or UDP protocol".into());
            }
            action(&mut entries, "snat");
            entries.push(("to", Value::Str(to.to_string())));
        }
        Target::Accept => action(&mut entries, "accept"),
        Target::Return => action(&mut entries, "return"),
        Target::Log { prefix } => {
            action(&mut entries, "log");
            if let Some(prefix) = prefix {
                if !place::valid_text(prefix, 29) {
                    return Err(format!("fwscript cannot write the log prefix {prefix:?}"));
                }
                entries.push(("log_prefix", Value::Str(prefix.clone())));
            }
        }
        other => return Err(format!("fwscript cannot use `{other:?}` in nat {hook}")),
    }
    if let Some(comment) = comment {
        entries.push(("comment", Value::Str(comment)));
    }
    Ok(Call::Rule(entries))
}

/// Whether the original's filter chain at `hook` accepts every packet of
/// `class`: its first rule that can meet them accepts all of them, or none
/// can and the policy accepts.
fn accepted(family: Family, filter: &[&Chain], hook: Hook, class: &RuleMatch) -> bool {
    let Some(chain) = filter.iter().find(|c| c.hook == hook && c.family == family) else {
        // No such chain in the save: the kernel's empty chain accepts.
        return true;
    };
    let mut units: Vec<&place::Unit> = chain.units.iter().collect();
    units.sort_by_key(|u| u.index);
    for unit in units {
        if matches!(unit.kind, Kind::Log { .. } | Kind::CatchAll) {
            continue;
        }
        if !model::overlap(family, &unit.matches, class) {
            continue;
        }
        let accepts = (0..2).all(|w| unit.verdict(w) == Some(Verdict::Accept));
        return accepts && model::contains(family, &unit.matches, class);
    }
    chain.policy == Policy::Accept
}
