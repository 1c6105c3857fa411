//! The rules a packet meets at each built-in chain, in order, with jumps
//! into user chains followed (import: rules → **flatten** → placement).
//! A jump's matches are joined to every rule of the chain it jumps to; a
//! RETURN ends the chain for the packets it matches, so the rules after it
//! stay exact only where they cannot meet those packets. What cannot be
//! followed exactly becomes an [`Entry::Unexpressed`], never nothing.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::model;
use super::owners::{self, Owner};
use super::rule::{self, RuleMatch, SavedRule, Target};
use crate::live::LiveState;
use crate::netfilter::{Family, Hook, Policy, Table, CONTINUING_TARGETS};
use crate::plan::PortRange;

/// One family's tables as read from a save file.
#[derive(Debug, Clone)]
pub struct FamilyRules {
    pub family: Family,
    pub tables: BTreeMap<Table, Vec<Chain>>,
    /// Rules of tables fwscript does not write (`raw`, `security`), as
    /// `*raw: -A PREROUTING …`.
    pub other_tables: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Chain {
    pub name: String,
    pub policy: Option<Policy>,
    pub rules: Vec<SavedRule>,
}

impl FamilyRules {
    /// Reads `text`, the output of `iptables-save` or `ip6tables-save`.
    pub fn read(family: Family, text: &str) -> Result<FamilyRules, crate::live::ParseError> {
        let live = LiveState::parse(family, text)?;
        let tables = live
            .tables
            .iter()
            .map(|(&table, live_table)| {
                let chains = live_table
                    .chains
                    .iter()
                    .map(|chain| Chain {
                        name: chain.name.clone(),
                        policy: chain.policy,
                        rules: chain
                            .rules
                            .iter()
                            .map(|r| rule::read(family, table.name(), &chain.name, &r.spec))
                            .collect(),
                    })
                    .collect();
                (table, chains)
            })
            .collect();
        Ok(FamilyRules {
            family,
            tables,
            other_tables: other_table_rules(text),
        })
    }

    pub fn chain(&self, table: Table, name: &str) -> Option<&Chain> {
        self.tables.get(&table)?.iter().find(|c| c.name == name)
    }

    /// Nothing to import: no rule anywhere and every policy ACCEPT, which
    /// is what a host that never set up this family's firewall shows.
    pub fn is_blank(&self) -> bool {
        self.other_tables.is_empty()
            && self.tables.values().flatten().all(|chain| {
                chain.rules.is_empty() && chain.policy.is_none_or(|p| p == Policy::Accept)
            })
    }
}

/// `-A` lines of the tables the live stage skips.
fn other_table_rules(text: &str) -> Vec<String> {
    let mut table: Option<&str> = None;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim_end) {
        if let Some(name) = line.strip_prefix('*') {
            table = Table::parse(name).is_none().then_some(name);
        } else if line == "COMMIT" {
            table = None;
        } else if let Some(name) = table {
            let rule = match line.strip_prefix('[') {
                Some(rest) => rest.split_once("] ").map_or(line, |(_, r)| r),
                None => line,
            };
            if rule.starts_with("-A ") {
                out.push(format!("*{name}: {rule}"));
            }
        }
    }
    out
}

/// What a packet meets at one point of a built-in chain.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Flat(Box<Flat>),
    /// A rule of another program's (a jump into its chain, a rule about
    /// its bridge).
    Owned {
        owner: Owner,
        line: String,
    },
    /// A rule fwscript cannot say, with the reason.
    Unexpressed {
        lines: Vec<String>,
        why: String,
        /// When the rule may end a packet's walk other than by accepting
        /// (a drop, a reject, a jump that cannot be followed): at least
        /// every packet it may so end.
        blocks: Option<Box<RuleMatch>>,
    },
    /// A rule no packet can reach here.
    Dead {
        line: String,
        why: String,
    },
}

/// A rule with its jumps joined in: every packet it matches meets it here.
#[derive(Debug, Clone, PartialEq)]
pub struct Flat {
    /// The jumps that lead here, outermost first, then the rule itself.
    pub lines: Vec<String>,
    pub matches: RuleMatch,
    pub target: Target,
}

impl Flat {
    /// The rule's own line.
    pub fn line(&self) -> &str {
        self.lines.last().map_or("", String::as_str)
    }
}

/// One built-in chain, flattened.
#[derive(Debug, Clone)]
pub struct Hooked {
    pub hook: Hook,
    pub policy: Option<Policy>,
    pub entries: Vec<Entry>,
}

/// Every built-in chain of `table`, flattened; chains the save does not
/// declare are left out.
pub fn flatten(rules: &FamilyRules, table: Table) -> Vec<Hooked> {
    let mut out = Vec::new();
    for &hook in table.builtin_chains() {
        let Some(chain) = rules.chain(table, hook.chain_name()) else {
            continue;
        };
        let mut walk = Walk {
            rules,
            table,
            builtin_policy: chain.policy,
            entries: Vec::new(),
            neighbour_nets: neighbour_nets(rules, table),
        };
        walk.chain(chain, &RuleMatch::default(), &[], &mut Vec::new());
        out.push(Hooked {
            hook,
            policy: chain.policy,
            entries: walk.entries,
        });
    }
    out
}

/// What a rule the import cannot say may block: every packet its readable
/// matches take in (its unreadable ones and the jumps to it only narrow
/// that), unless it can only accept or let the packet go on. A RETURN
/// from a built-in chain leaves the packet to the policy.
fn blocks(rule: &super::rule::SavedRule, builtin: bool) -> Option<Box<RuleMatch>> {
    let goes_on = match &rule.target {
        Target::Accept | Target::Log { .. } | Target::None => true,
        Target::Return => !builtin,
        Target::Other(text) => {
            let name = text.trim_start_matches("-j ").split_whitespace().next();
            name.is_some_and(|n| CONTINUING_TARGETS.contains(&n))
        }
        _ => false,
    };
    (!goes_on).then(|| {
        Box::new(RuleMatch {
            comment: None,
            ..rule.matches.clone()
        })
    })
}

struct Walk<'a> {
    rules: &'a FamilyRules,
    table: Table,
    builtin_policy: Option<Policy>,
    entries: Vec<Entry>,
    /// Networks a neighbour's nat rules are about (Docker's bridge
    /// network): its other nat rules about them are its too.
    neighbour_nets: Vec<(IpNet, Owner)>,
}

/// In the nat table, the networks a neighbour's own rules name: the
/// sources it masquerades, the containers it forwards to. Its hairpin
/// rules name no bridge, only these.
fn neighbour_nets(rules: &FamilyRules, table: Table) -> Vec<(IpNet, Owner)> {
    let mut nets = Vec::new();
    if table != Table::Nat {
        return nets;
    }
    for chain in rules.tables.get(&Table::Nat).into_iter().flatten() {
        let chain_owner = owners::chain_owner(&chain.name);
        for rule in &chain.rules {
            let Some(owner) = owners::rule_owner(rule).or(chain_owner) else {
                continue;
            };
            if let Some(src) = rule.matches.src {
                if src.prefix_len() > 0 {
                    nets.push((src, owner));
                }
            }
            if let Target::Dnat { to } = &rule.target {
                nets.push((IpNet::from(to.addr), owner));
            }
        }
    }
    nets
}

impl Walk<'_> {
    fn chain(
        &mut self,
        chain: &Chain,
        context: &RuleMatch,
        lines: &[String],
        stack: &mut Vec<String>,
    ) {
        let builtin = stack.is_empty();
        stack.push(chain.name.clone());
        // RETURNs met so far in this chain: later rules hold only for the
        // packets they did not send back.
        let mut returns: Vec<RuleMatch> = Vec::new();
        let mut unreadable_return: Option<String> = None;
        let mut ended_by: Option<String> = None;
        let family = self.rules.family;
        for rule in &chain.rules {
            let mut here = lines.to_vec();
            here.push(rule.line.clone());
            if let Some(by) = &ended_by {
                self.entries.push(Entry::Dead {
                    line: rule.line.clone(),
                    why: format!("`{by}` above decides every packet first"),
                });
                continue;
            }
            let about_neighbour = || {
                self.neighbour_nets.iter().find_map(|(net, owner)| {
                    let inside = |n: &Option<IpNet>| n.is_some_and(|n| net.contains(&n));
                    (inside(&rule.matches.src) || inside(&rule.matches.dst)).then_some(*owner)
                })
            };
            if let Some(owner) = owners::rule_owner(rule).or_else(about_neighbour) {
                self.entries.push(Entry::Owned {
                    owner,
                    line: rule.line.clone(),
                });
                continue;
            }
            if let Some(ret) = &unreadable_return {
                self.entries.push(Entry::Unexpressed {
                    lines: here,
                    blocks: blocks(rule, builtin),
                    why: format!(
                        "it holds only for packets that `{ret}` does not send back, \
                         which fwscript cannot read"
                    ),
                });
                continue;
            }
            if let Target::Other(text) = &rule.target {
                self.entries.push(Entry::Unexpressed {
                    lines: here,
                    blocks: blocks(rule, builtin),
                    why: format!("fwscript has no action like `{text}`"),
                });
                continue;
            }
            if !rule.unknown.is_empty() {
                if rule.target == Target::Return {
                    unreadable_return = Some(rule.line.clone());
                    self.entries.push(Entry::Unexpressed {
                        lines: here,
                        blocks: blocks(rule, builtin),
                        why: unknown_why(rule),
                    });
                    continue;
                }
                self.entries.push(Entry::Unexpressed {
                    lines: here,
                    blocks: blocks(rule, builtin),
                    why: unknown_why(rule),
                });
                continue;
            }
            let joined = match conjoin(context, &rule.matches) {
                Joined::Never => {
                    self.entries.push(Entry::Dead {
                        line: rule.line.clone(),
                        why: format!(
                            "no packet that the jump `{}` sends here matches it",
                            lines.last().map_or("", String::as_str)
                        ),
                    });
                    continue;
                }
                Joined::Inexpressible(why) => {
                    self.entries.push(Entry::Unexpressed {
                        lines: here,
                        why,
                        blocks: blocks(rule, builtin),
                    });
                    continue;
                }
                Joined::Match(m) => *m,
            };
            if let Some(ret) = returns.iter().find(|r| model::overlap(family, r, &joined)) {
                let _ = ret;
                self.entries.push(Entry::Unexpressed {
                    lines: here,
                    blocks: blocks(rule, builtin),
                    why: format!(
                        "it holds only for packets that a RETURN above in `{}` does not \
                         send back, and fwscript has no negation",
                        chain.name
                    ),
                });
                continue;
            }
            match &rule.target {
                Target::Return if builtin => {
                    // RETURN from a built-in chain: the policy decides.
                    let target = match (self.table, self.builtin_policy) {
                        (Table::Filter, Some(Policy::Drop)) => Target::Drop,
                        (Table::Filter, _) => Target::Accept,
                        _ => Target::Return,
                    };
                    let unconditional = joined.is_any();
                    self.entries.push(Entry::Flat(Box::new(Flat {
                        lines: here,
                        matches: joined,
                        target,
                    })));
                    if unconditional {
                        ended_by = Some(rule.line.clone());
                    }
                }
                Target::Return => {
                    if rule.matches.is_any() {
                        // Everything left in this chain is for nobody.
                        ended_by = Some(rule.line.clone());
                    } else {
                        returns.push(joined);
                    }
                }
                Target::Jump(name) => {
                    if stack.contains(name) {
                        self.entries.push(Entry::Unexpressed {
                            lines: here,
                            blocks: blocks(rule, builtin),
                            why: format!("it jumps back into `{name}`, a loop"),
                        });
                        continue;
                    }
                    let Some(target) = self.rules.chain(self.table, name) else {
                        self.entries.push(Entry::Unexpressed {
                            lines: here,
                            blocks: blocks(rule, builtin),
                            why: format!("it jumps to `{name}`, a chain the ruleset lacks"),
                        });
                        continue;
                    };
                    self.chain(target, &joined, &here, stack);
                }
                target => {
                    let ends = joined.is_any() && target.is_verdict();
                    self.entries.push(Entry::Flat(Box::new(Flat {
                        lines: here,
                        matches: joined,
                        target: target.clone(),
                    })));
                    if ends {
                        ended_by = Some(rule.line.clone());
                    }
                }
            }
        }
        stack.pop();
        let _ = builtin;
    }
}

fn unknown_why(rule: &SavedRule) -> String {
    let parts: Vec<String> = rule.unknown.iter().map(|u| format!("`{u}`")).collect();
    format!("fwscript cannot say {}", parts.join(", "))
}

impl RuleMatch {
    /// Matches every packet.
    pub fn is_any(&self) -> bool {
        let RuleMatch {
            src,
            dst,
            iface,
            oface,
            proto,
            sports,
            dports,
            tcp_flags,
            icmp_type,
            states,
            limit,
            recent,
            hop_limit_255,
            comment: _,
        } = self;
        src.is_none()
            && dst.is_none()
            && iface.is_none()
            && oface.is_none()
            && proto.is_none()
            && sports.is_empty()
            && dports.is_empty()
            && tcp_flags.is_none()
            && icmp_type.is_none()
            && states.is_empty()
            && limit.is_none()
            && recent.is_none()
            && !hop_limit_255
    }
}

/// Two sets of matches joined: a jump's and a rule's in the chain it
/// jumps to.
#[derive(Debug, Clone, PartialEq)]
pub enum Joined {
    Match(Box<RuleMatch>),
    /// No packet matches both.
    Never,
    /// Both restrict something in ways one rule cannot say.
    Inexpressible(String),
}

pub fn conjoin(outer: &RuleMatch, inner: &RuleMatch) -> Joined {
    let mut m = inner.clone();
    macro_rules! narrow {
        ($field:ident, $join:expr) => {
            match (&outer.$field, &inner.$field) {
                (Some(o), Some(i)) => match $join(o, i) {
                    Some(v) => m.$field = Some(v),
                    None => return Joined::Never,
                },
                (Some(o), None) => m.$field = Some(o.clone()),
                _ => {}
            }
        };
    }
    narrow!(src, join_nets);
    narrow!(dst, join_nets);
    narrow!(iface, join_ifaces);
    narrow!(oface, join_ifaces);
    narrow!(proto, |a: &rule::Proto, b: &rule::Proto| (a == b)
        .then_some(*a));
    narrow!(icmp_type, |a: &u8, b: &u8| (a == b).then_some(*a));
    for (o, i, field) in [
        (&outer.sports, &inner.sports, &mut m.sports),
        (&outer.dports, &inner.dports, &mut m.dports),
    ] {
        match (o.is_empty(), i.is_empty()) {
            (false, true) => *field = o.clone(),
            (false, false) => {
                let joined = join_ranges(o, i);
                if joined.is_empty() {
                    return Joined::Never;
                }
                *field = joined;
            }
            _ => {}
        }
    }
    match (&outer.states[..], &inner.states[..]) {
        ([], _) => {}
        (o, []) => m.states = o.to_vec(),
        (o, i) => {
            let both: Vec<_> = i.iter().copied().filter(|s| o.contains(s)).collect();
            if both.is_empty() {
                return Joined::Never;
            }
            m.states = both;
        }
    }
    let twice = |what: &str| {
        Joined::Inexpressible(format!(
            "both the jump and the rule test {what}, which one rule cannot"
        ))
    };
    match (&outer.tcp_flags, &inner.tcp_flags) {
        (Some(o), Some(i)) if o != i => return twice("TCP flags"),
        (Some(o), None) => m.tcp_flags = Some(o.clone()),
        _ => {}
    }
    match (&outer.limit, &inner.limit) {
        (Some(_), Some(_)) => return twice("a rate limit"),
        (Some(o), None) => m.limit = Some(o.clone()),
        _ => {}
    }
    match (&outer.recent, &inner.recent) {
        (Some(_), Some(_)) => return twice("a `recent` list"),
        (Some(o), None) => m.recent = Some(o.clone()),
        _ => {}
    }
    m.hop_limit_255 = outer.hop_limit_255 || inner.hop_limit_255;
    if m.comment.is_none() {
        m.comment = outer.comment.clone();
    }
    Joined::Match(Box::new(m))
}

fn join_nets(a: &IpNet, b: &IpNet) -> Option<IpNet> {
    if a.contains(b) {
        Some(*b)
    } else if b.contains(a) {
        Some(*a)
    } else {
        None
    }
}

fn join_ifaces(a: &String, b: &String) -> Option<String> {
    match (a.strip_suffix('+'), b.strip_suffix('+')) {
        (Some(pa), Some(pb)) if pa.starts_with(pb) => Some(a.clone()),
        (Some(pa), Some(pb)) if pb.starts_with(pa) => Some(b.clone()),
        (Some(pa), None) if b.starts_with(pa) => Some(b.clone()),
        (None, Some(pb)) if a.starts_with(pb) => Some(a.clone()),
        (None, None) if a == b => Some(a.clone()),
        _ => None,
    }
}

fn join_ranges(a: &[PortRange], b: &[PortRange]) -> Vec<PortRange> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let first = x.first.max(y.first);
            let last = x.last.min(y.last);
            if first <= last {
                out.push(PortRange { first, last });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> FamilyRules {
        FamilyRules::read(Family::Ipv4, text).unwrap()
    }

    fn lines(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match e {
                Entry::Flat(f) => format!("flat {}", f.line()),
                Entry::Owned { owner, line } => format!("owned({owner}) {line}"),
                Entry::Unexpressed { lines, .. } => {
                    format!("unexpressed {}", lines.last().unwrap())
                }
                Entry::Dead { line, .. } => format!("dead {line}"),
            })
            .collect()
    }

    #[test]
    fn jumps_are_followed_and_their_matches_joined() {
        let text = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:web - [0:0]\n\
            -A INPUT -i eth0 -j web\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n\
            -A web -p tcp -m tcp --dport 80 -j ACCEPT\n-A web -p udp -j RETURN\n-A web -p tcp -m tcp --dport 443 -j ACCEPT\nCOMMIT\n";
        let hooked = flatten(&rules(text), Table::Filter);
        let input = &hooked[0];
        assert_eq!(input.hook, Hook::Input);
        let Entry::Flat(first) = &input.entries[0] else {
            panic!("{:?}", input.entries)
        };
        assert_eq!(first.matches.iface.as_deref(), Some("eth0"));
        assert_eq!(first.matches.dports, [PortRange::single(80)]);
        assert_eq!(first.lines.len(), 2);
        // The RETURN for UDP cannot meet TCP/443, so that rule stays exact.
        let Entry::Flat(second) = &input.entries[1] else {
            panic!("{:?}", input.entries)
        };
        assert_eq!(second.matches.dports, [PortRange::single(443)]);
        assert_eq!(input.entries.len(), 3);
    }

    #[test]
    fn what_follows_a_return_it_cannot_read_is_unexpressed() {
        let text = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:not-local - [0:0]\n\
            -A INPUT -j not-local\n-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\n\
            -A not-local -m addrtype --dst-type LOCAL -j RETURN\n-A not-local -j DROP\nCOMMIT\n";
        let hooked = flatten(&rules(text), Table::Filter);
        assert_eq!(
            lines(&hooked[0].entries),
            [
                "unexpressed -A not-local -m addrtype --dst-type LOCAL -j RETURN",
                "unexpressed -A not-local -j DROP",
                "flat -A INPUT -p tcp -m tcp --dport 80 -j ACCEPT"
            ]
        );
    }

    #[test]
    fn a_rule_for_everyone_ends_the_chain() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
            -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -j REJECT --reject-with icmp-host-prohibited\n\
            -A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n";
        let hooked = flatten(&rules(text), Table::Filter);
        assert_eq!(
            lines(&hooked[0].entries),
            [
                "flat -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
                "flat -A INPUT -j REJECT --reject-with icmp-host-prohibited",
                "dead -A INPUT -p tcp -m tcp --dport 80 -j ACCEPT"
            ]
        );
    }

    #[test]
    fn neighbours_and_other_tables_are_named() {
        let text = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -j CT --notrack\nCOMMIT\n\
            *filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:f2b-sshd - [0:0]\n\
            -A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd\n-A f2b-sshd -s 192.0.2.9/32 -j REJECT\n-A f2b-sshd -j RETURN\nCOMMIT\n";
        let rules = rules(text);
        assert_eq!(rules.other_tables, ["*raw: -A PREROUTING -j CT --notrack"]);
        let hooked = flatten(&rules, Table::Filter);
        assert_eq!(
            lines(&hooked[0].entries),
            ["owned(fail2ban) -A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd"]
        );
    }

    #[test]
    fn joins() {
        let read = |spec: &str| rule::read(Family::Ipv4, "filter", "X", spec).matches;
        assert_eq!(conjoin(&read("-p tcp"), &read("-p udp")), Joined::Never);
        let Joined::Match(m) = conjoin(
            &read("-s 10.0.0.0/8 -p tcp -m multiport --dports 20:30,80"),
            &read("-s 10.1.0.0/16 -p tcp -m tcp --dport 25"),
        ) else {
            panic!()
        };
        assert_eq!(m.src, Some("10.1.0.0/16".parse().unwrap()));
        assert_eq!(m.dports, [PortRange::single(25)]);
        assert!(matches!(
            conjoin(
                &read("-m limit --limit 3/min"),
                &read("-m limit --limit 1/sec")
            ),
            Joined::Inexpressible(_)
        ));
    }
}
