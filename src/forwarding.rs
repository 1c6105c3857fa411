//! Whether the kernel routes what the script forwards (plan → **forwarding**
//! → warning): a script that accepts in FORWARD, DNATs to another host or
//! masquerades does nothing while the family's forwarding sysctl is off,
//! and nobody notices until the packets do not arrive.

use std::net::IpAddr;

use crate::netfilter::{Family, Hook, Table};
use crate::plan::{Action, Plan};
use crate::ruleset::Origin;

/// The first rule of a family that only works with forwarding on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwards {
    pub family: Family,
    /// What it does, in words: `accepts forwarded packets`, …
    pub what: &'static str,
    pub origin: Option<Origin>,
}

/// A family whose rules forward while the kernel does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingOff {
    pub forwards: Forwards,
    /// `net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`.
    pub setting: &'static str,
}

impl std::fmt::Display for ForwardingOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = match &self.forwards.origin {
            Some(origin) => format!(" (at {origin})"),
            None => String::new(),
        };
        write!(
            f,
            "the script {}{at}, but {} forwarding is off ({} = 0): the kernel routes no packet \
             between interfaces, so these rules never see one; turn it on with `sysctl -w {}=1` \
             (and in /etc/sysctl.d/ to keep it)",
            self.forwards.what, self.forwards.family, self.setting, self.setting
        )
    }
}

/// The sysctl that turns forwarding on for `family`, and its file.
pub fn setting(family: Family) -> (&'static str, &'static str) {
    match family {
        Family::Ipv4 => ("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"),
        Family::Ipv6 => (
            "net.ipv6.conf.all.forwarding",
            "/proc/sys/net/ipv6/conf/all/forwarding",
        ),
    }
}

/// Per family, the first of the script's rules that needs forwarding: an
/// accept in FORWARD, a DNAT to another host, a masquerade or SNAT. The
/// baseline's own FORWARD rules (established traffic) do not count.
pub fn needed(plan: &Plan) -> Vec<Forwards> {
    let mut found = Vec::new();
    for (&family, family_plan) in &plan.families {
        let first = family_plan.tables.iter().find_map(|(&table, table_plan)| {
            table_plan.chains.iter().find_map(|chain| {
                chain.rules.iter().find_map(|rule| {
                    let origin = rule.origin.clone()?;
                    let what = match (&rule.action, table, chain.hook) {
                        (Action::Accept, Table::Filter, Hook::Forward) => {
                            "accepts forwarded packets"
                        }
                        (Action::Dnat { to }, Table::Nat, _) if !is_local(&to.addr) => {
                            "forwards connections to another host"
                        }
                        (Action::Masquerade | Action::Snat { .. }, Table::Nat, _) => {
                            "masquerades forwarded traffic"
                        }
                        _ => return None,
                    };
                    Some(Forwards {
                        family,
                        what,
                        origin: Some(origin),
                    })
                })
            })
        });
        found.extend(first);
    }
    found
}

fn is_local(addr: &IpAddr) -> bool {
    addr.is_loopback()
}

/// The families whose rules forward while forwarding is off, `read`
/// giving the text of a sysctl file (on the host whose kernel it is:
/// inside the namespace for `try`). An unreadable setting warns of
/// nothing: it is a hint, not a check.
pub fn off(plan: &Plan, read: &dyn Fn(&str) -> Option<String>) -> Vec<ForwardingOff> {
    needed(plan)
        .into_iter()
        .filter_map(|forwards| {
            let (setting, path) = setting(forwards.family);
            let value = read(path)?;
            (value.trim() == "0").then_some(ForwardingOff { forwards, setting })
        })
        .collect()
}

/// Reads a sysctl file of this host.
pub fn read_here(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(source: &str) -> Plan {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fw.rhai");
        std::fs::write(&path, source).unwrap();
        crate::script::evaluate(&path).unwrap()
    }

    #[test]
    fn forwarding_rules_are_found_per_family() {
        assert!(needed(&plan("allow_tcp(22);")).is_empty(), "baseline only");
        let found = needed(&plan("allow_tcp(22);\nmasquerade(\"eth0\");"));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].what, "masquerades forwarded traffic");
        assert_eq!(found[0].origin.as_ref().unwrap().line, 2);
        let dnat = needed(&plan("forward_tcp(8080, \"192.168.1.10:80\");"));
        assert_eq!(dnat.len(), 1, "an IPv4 host: IPv4 only");
        assert_eq!(dnat[0].family, Family::Ipv4);
    }

    #[test]
    fn only_a_setting_that_reads_zero_warns() {
        let plan = plan("masquerade(\"eth0\");");
        let off_v4 = |path: &str| Some(if path.contains("ipv4") { "0\n" } else { "1\n" }.into());
        let found = off(&plan, &off_v4);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].setting, "net.ipv4.ip_forward");
        assert!(found[0].to_string().contains("fw.rhai:1:1"), "{}", found[0]);
        assert!(off(&plan, &|_| Some("1".into())).is_empty());
        assert!(off(&plan, &|_| None).is_empty());
    }
}
