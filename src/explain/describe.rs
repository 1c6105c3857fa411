//! A rule as an admin reads it: iptables' own argument syntax, without the
//! id comment fwscript adds (that one only matters to the diff).

use crate::plan::{Action, Matches, Proto, RateUnit, RecentCheck, Rule, TcpFlag};

pub fn rule_text(rule: &Rule) -> String {
    let mut parts = matches_text(&rule.matches);
    parts.push(target_text(&rule.action));
    if let Some(comment) = &rule.comment {
        parts.push(format!("/* {comment} */"));
    }
    parts.join(" ")
}

fn matches_text(m: &Matches) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(src) = &m.src {
        parts.push(format!("-s {src}"));
    }
    if let Some(dst) = &m.dst {
        parts.push(format!("-d {dst}"));
    }
    if let Some(iface) = &m.iface {
        parts.push(format!("-i {iface}"));
    }
    if let Some(oface) = &m.oface {
        parts.push(format!("-o {oface}"));
    }
    if let Some(proto) = m.proto {
        parts.push(format!("-p {}", proto.iptables_name()));
    }
    if let Some(sport) = m.sport {
        parts.push(format!("--sport {sport}"));
    }
    if let Some(dport) = m.dport {
        parts.push(format!("--dport {dport}"));
    }
    if let Some(flags) = &m.tcp_flags {
        let negation = if flags.negated { "! " } else { "" };
        parts.push(format!(
            "{negation}--tcp-flags {} {}",
            flag_list(&flags.mask),
            flag_list(&flags.set)
        ));
    }
    if let Some(icmp) = &m.icmp_type {
        let option = match m.proto {
            Some(Proto::Icmpv6) => "--icmpv6-type",
            _ => "--icmp-type",
        };
        parts.push(format!("{option} {}", icmp.name));
    }
    if !m.state.is_empty() {
        let states: Vec<_> = m.state.iter().map(|s| s.name()).collect();
        parts.push(format!("--ctstate {}", states.join(",")));
    }
    if let Some(port) = m.dnat_from_port {
        parts.push(format!("--ctstate DNAT --ctorigdstport {port}"));
    }
    if let Some(recent) = &m.recent {
        parts.push(match recent.check {
            RecentCheck::Set => format!("-m recent --set --name {}", recent.list),
            RecentCheck::Update { seconds, hits } => format!(
                "-m recent --update --seconds {seconds} --hitcount {hits} --name {}",
                recent.list
            ),
        });
    }
    if let Some(limit) = &m.limit {
        let unit = match limit.per {
            RateUnit::Second => "sec",
            RateUnit::Minute => "min",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        };
        let mut text = format!("-m limit --limit {}/{unit}", limit.count);
        if let Some(burst) = limit.burst {
            text.push_str(&format!(" --limit-burst {burst}"));
        }
        parts.push(text);
    }
    parts
}

fn flag_list(flags: &[TcpFlag]) -> String {
    if flags.is_empty() {
        return "NONE".into();
    }
    let names: Vec<_> = flags.iter().map(|f| f.name()).collect();
    names.join(",")
}

pub fn target_text(action: &Action) -> String {
    match action {
        Action::Accept => "-j ACCEPT".into(),
        Action::Drop => "-j DROP".into(),
        Action::Reject => "-j REJECT".into(),
        Action::Return => "-j RETURN".into(),
        Action::Masquerade => "-j MASQUERADE".into(),
        Action::Log {
            prefix: Some(prefix),
        } => format!("-j LOG --log-prefix \"{prefix}\""),
        Action::Log { prefix: None } => "-j LOG".into(),
        Action::Jump { chain } => format!("-j {chain}"),
        Action::Redirect { to_port } => format!(
            "-j REDIRECT --to-ports {}",
            to_port.to_string().replace(':', "-")
        ),
        Action::Dnat { to } => format!("-j DNAT --to-destination {to}"),
        Action::Snat { to } => format!("-j SNAT --to-source {to}"),
        Action::None => "(no target)".into(),
    }
}
