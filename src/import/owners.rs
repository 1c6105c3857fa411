//! Chains and rules that belong to another program (import: save text →
//! **owners** → chains → script). Docker, fail2ban, kube-proxy and their
//! kind re-create their rules themselves; an import names them and leaves
//! them alone, and fwscript's own rules are recognised, since their script
//! is their source, not the kernel.

use std::fmt;

use super::rule::{SavedRule, Target};
use crate::live::words;
use crate::netfilter::is_owned_chain;
use crate::ruleset::RuleId;

/// A program that manages its own part of the kernel's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    Fwscript,
    Docker,
    Fail2ban,
    Kubernetes,
    Libvirt,
    CrowdSec,
    Sshguard,
}

impl Owner {
    pub fn name(self) -> &'static str {
        match self {
            Owner::Fwscript => "fwscript",
            Owner::Docker => "Docker",
            Owner::Fail2ban => "fail2ban",
            Owner::Kubernetes => "Kubernetes (kube-proxy, CNI)",
            Owner::Libvirt => "libvirt",
            Owner::CrowdSec => "CrowdSec",
            Owner::Sshguard => "sshguard",
        }
    }

    /// What happens to its rules, in one sentence for the script.
    pub fn keeps_them(self) -> &'static str {
        match self {
            Owner::Fwscript => {
                "the script that made them is their source (`fwscript status` names it), \
                 not the kernel"
            }
            Owner::Fail2ban => {
                "fail2ban re-creates them when it starts and inserts its jumps above \
                 fwscript's rules"
            }
            _ => "it re-creates them itself; fwscript leaves them alone",
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who owns a chain, by its name.
pub fn chain_owner(name: &str) -> Option<Owner> {
    if is_owned_chain(name) {
        Some(Owner::Fwscript)
    } else if name.starts_with("DOCKER") {
        Some(Owner::Docker)
    } else if name.starts_with("f2b-") || name.starts_with("fail2ban-") {
        Some(Owner::Fail2ban)
    } else if ["KUBE-", "cali-", "CNI-", "FLANNEL", "CILIUM_"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        Some(Owner::Kubernetes)
    } else if name.starts_with("LIBVIRT_") {
        Some(Owner::Libvirt)
    } else if name.starts_with("CROWDSEC") {
        Some(Owner::CrowdSec)
    } else if name == "sshguard" {
        Some(Owner::Sshguard)
    } else {
        None
    }
}

/// Who owns an interface a rule names: Docker's bridges, libvirt's,
/// the pod networks'.
fn iface_owner(name: &str) -> Option<Owner> {
    let name = name.trim_end_matches('+');
    let hex_suffix = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.len() == 12 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    if name == "docker0" || name == "docker_gwbridge" || hex_suffix("br-") {
        Some(Owner::Docker)
    } else if name.starts_with("virbr") {
        Some(Owner::Libvirt)
    } else if ["cni", "flannel", "cali", "cilium", "kube-"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        Some(Owner::Kubernetes)
    } else {
        None
    }
}

/// Who owns a rule of a built-in chain: a jump into someone's chain, a rule
/// about someone's interface, or a rule fwscript wrote (its id comment).
pub fn rule_owner(rule: &SavedRule) -> Option<Owner> {
    if let Target::Jump(chain) = &rule.target {
        if let Some(owner) = chain_owner(chain) {
            return Some(owner);
        }
    }
    let spec = rule
        .line
        .split_once(' ')
        .map_or("", |(_, rest)| rest)
        .split_once(' ')
        .map_or("", |(_, rest)| rest);
    let words = words(spec);
    for pair in words.windows(2) {
        if pair[0].quoted {
            continue;
        }
        match pair[0].text.as_str() {
            "-i" | "-o" | "--in-interface" | "--out-interface" => {
                if let Some(owner) = iface_owner(&pair[1].text) {
                    return Some(owner);
                }
            }
            "--comment" if RuleId::from_comment(&pair[1].text).is_some() => {
                return Some(Owner::Fwscript);
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::rule::read;
    use crate::netfilter::Family;

    fn owner(chain: &str, spec: &str) -> Option<Owner> {
        rule_owner(&read(Family::Ipv4, "filter", chain, spec))
    }

    #[test]
    fn neighbours_are_known_by_their_chains_and_bridges() {
        assert_eq!(owner("FORWARD", "-j DOCKER-USER"), Some(Owner::Docker));
        assert_eq!(
            owner(
                "FORWARD",
                "-o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
            ),
            Some(Owner::Docker)
        );
        assert_eq!(
            owner(
                "FORWARD",
                "-i br-0123456789ab ! -o br-0123456789ab -j ACCEPT"
            ),
            Some(Owner::Docker)
        );
        assert_eq!(
            owner("INPUT", "-p tcp -m multiport --dports 22 -j f2b-sshd"),
            Some(Owner::Fail2ban)
        );
        assert_eq!(
            owner(
                "INPUT",
                r#"-m comment --comment "fws:0a0a0a0a0a00" -j FWS-INPUT"#
            ),
            Some(Owner::Fwscript)
        );
        assert_eq!(owner("INPUT", "-i br0 -j ACCEPT"), None);
        assert_eq!(
            owner("INPUT", r#"-m comment --comment "web" -j ACCEPT"#),
            None
        );
        assert_eq!(chain_owner("KUBE-SERVICES"), Some(Owner::Kubernetes));
        assert_eq!(chain_owner("ufw-user-input"), None);
    }
}
