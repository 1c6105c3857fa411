//! The lockout guard's look at the kernel (survey → **guard** → write): the
//! plan alone cannot see that moving fwscript's accepting hook to the end
//! of a built-in chain puts foreign rules appended after it (an admin's
//! `iptables -A INPUT -j DROP`) ahead of it, where they decide first. A
//! foreign rule that drops or rejects the session's packets there cuts the
//! session as surely as a rule of the script's, so the write is refused.
//!
//! Only rules the move puts ahead are judged: a rule already above the
//! hook decides the session's packets now, so this write does not change
//! what it does. Matches are read from the rule's text, three-valued as in
//! `explain`: a match the guard cannot read, or a field it cannot know (the
//! interface, the client's port of a new connection), may match. A drop
//! that may match refuses; an accept that may not match does not save the
//! session (the pessimistic reading).

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Lockout, SshConnection, LEGS};
use crate::explain::{Packet, Transport};
use crate::live::{words, LiveRule, LiveState, LiveTable};
use crate::netfilter::{Family, Hook, Policy, Table, CONTINUING_TARGETS};
use crate::plan::CtState;
use crate::ruleset::{Placement, Ruleset};

/// How deep the guard follows jumps into foreign chains; iptables refuses
/// loops, so this only bounds a pathological nesting.
const MAX_DEPTH: usize = 16;

/// A foreign rule the write puts ahead of the accepting hook, and which
/// drops or rejects one of the session's packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignDrop {
    pub family: Family,
    pub chain: Hook,
    /// 1-based, in the chain as it is now (as `iptables -D CHAIN N` counts).
    pub position: usize,
    pub spec: String,
    /// The rule that drops, when the built-in chain's rule only jumps to a
    /// foreign chain: that chain's name and the rule's text.
    pub inside: Option<(String, String)>,
    /// Whether it certainly matches; otherwise it may.
    pub certain: bool,
    pub ending: Ending,
    /// Whether the write moves the hook below it; otherwise it is the
    /// policy this write closes that the rule hands the packet to.
    pub moved: bool,
}

impl ForeignDrop {
    /// Whether the session's packet would certainly be cut, not only may.
    pub fn is_certain(&self) -> bool {
        self.certain && self.ending.is_certain()
    }
}

/// How the packet's way ends at the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// `DROP` or `REJECT`.
    Target(String),
    /// A target whose verdict cannot be known offline (`NFQUEUE` hands the
    /// packet to a program, `TARPIT` holds it): it may drop.
    Unknown(String),
    /// A `-g` into this chain, which the packet may leave at its end: then
    /// the built-in chain's policy decides, before fwscript's hook.
    GotoEnd { chain: String, policy: Policy },
    /// A RETURN in the built-in chain itself: its policy decides.
    Return { policy: Policy },
}

impl Ending {
    /// Whether the packet's way certainly ends here once the rule matches.
    pub fn is_certain(&self) -> bool {
        matches!(self, Ending::Target(_) | Ending::Return { .. })
    }

    /// Whether the chain's policy decides in the end.
    pub fn hands_to_policy(&self) -> bool {
        matches!(self, Ending::GotoEnd { .. } | Ending::Return { .. })
    }

    /// `rejected` or `dropped`.
    pub fn done(&self) -> &'static str {
        match self {
            Ending::Target(target) if target == "REJECT" => "rejected",
            _ => "dropped",
        }
    }
}

/// Refuses a write that puts a foreign rule dropping or rejecting one of
/// the session's packets ahead of fwscript's accepting hook in `live`'s
/// filter table, once `desired` is written.
pub fn check_kernel(
    session: &SshConnection,
    live: &LiveState,
    desired: &Ruleset,
) -> Result<(), Lockout> {
    if live.family != session.family() {
        return Ok(());
    }
    let (Some(table), Some(wanted)) = (
        live.table(Table::Filter),
        desired.tables.get(&Table::Filter),
    ) else {
        return Ok(());
    };
    for leg in LEGS {
        let hook = leg.hook();
        let Some(accepting) = wanted.hook(hook, Placement::Bottom) else {
            continue;
        };
        let Some((_, chain)) = table.builtin_chains().find(|(h, _)| *h == hook) else {
            continue;
        };
        let id = Some(&accepting.rule.id);
        // Where the hook is now; a missing one is appended below
        // everything, which moves nothing above it.
        let bottom = chain.rules.iter().rposition(|r| r.id.as_ref() == id);
        let packet = leg.packet(session);
        let walk = Walk {
            table,
            packet: &packet,
            // The policy once this write is in: fwscript's, or the one the
            // chain has.
            policy: wanted.policies.get(&hook).copied().or(chain.policy),
        };
        // A rule that hands packets to the policy (a RETURN, a `-g` they
        // come back from) does something new when this write closes the
        // policy, wherever it stands.
        let policy_closes = walk.policy == Some(Policy::Drop) && chain.policy != Some(Policy::Drop);
        for (index, rule) in chain.rules.iter().enumerate() {
            if rule.id.is_some() {
                // fwscript's own: the plan's check judges those.
                continue;
            }
            match walk.rule(rule, 0) {
                Decides::Accepts => break,
                Decides::Drops {
                    inside,
                    certain,
                    ending,
                } if bottom.is_some_and(|bottom| index > bottom)
                    || (policy_closes && ending.hands_to_policy()) =>
                {
                    let moved = bottom.is_some_and(|bottom| index > bottom);
                    return Err(Lockout::Foreign {
                        session: *session,
                        leg,
                        drop: Box::new(ForeignDrop {
                            family: live.family,
                            chain: hook,
                            position: index + 1,
                            spec: rule.spec.clone(),
                            inside,
                            certain,
                            ending,
                            moved,
                        }),
                    });
                }
                // Already above the hook: what it does now, it did before
                // this write too.
                Decides::Drops { .. } | Decides::Continues => {}
            }
        }
    }
    Ok(())
}

/// Three-valued, as `explain` reads a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    Yes,
    No,
    Maybe,
}

impl Test {
    fn of(yes: bool) -> Test {
        if yes {
            Test::Yes
        } else {
            Test::No
        }
    }

    fn negate(self, negated: bool) -> Test {
        match (self, negated) {
            (Test::Yes, true) => Test::No,
            (Test::No, true) => Test::Yes,
            (test, _) => test,
        }
    }

    fn and(self, other: Test) -> Test {
        match (self, other) {
            (Test::No, _) | (_, Test::No) => Test::No,
            (Test::Maybe, _) | (_, Test::Maybe) => Test::Maybe,
            _ => Test::Yes,
        }
    }
}

/// What a rule (with the chains it jumps to) does to the packet, read
/// pessimistically.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decides {
    /// It certainly accepts.
    Accepts,
    /// It drops or rejects, or may.
    Drops {
        inside: Option<(String, String)>,
        certain: bool,
        ending: Ending,
    },
    /// The packet goes on to the next rule (or may).
    Continues,
}

struct Walk<'a> {
    table: &'a LiveTable,
    packet: &'a Packet,
    /// The built-in chain's policy after the write (`None`: not known).
    policy: Option<Policy>,
}

impl Walk<'_> {
    fn rule(&self, rule: &LiveRule, depth: usize) -> Decides {
        let test = matches(&rule.spec, self.packet);
        if test == Test::No {
            return Decides::Continues;
        }
        let Some(target) = rule.target() else {
            return Decides::Continues;
        };
        let certain = test == Test::Yes;
        match target.as_str() {
            "RETURN" if depth == 0 => match self.policy {
                Some(Policy::Accept) if certain => Decides::Accepts,
                Some(Policy::Accept) => Decides::Continues,
                policy => Decides::Drops {
                    inside: None,
                    certain: certain && policy.is_some(),
                    ending: Ending::Return {
                        policy: policy.unwrap_or(Policy::Drop),
                    },
                },
            },
            "ACCEPT" if certain => Decides::Accepts,
            // An accept that may not match saves nothing.
            "ACCEPT" => Decides::Continues,
            "DROP" | "REJECT" => Decides::Drops {
                inside: None,
                certain,
                ending: Ending::Target(target),
            },
            name if CONTINUING_TARGETS.contains(&name) => Decides::Continues,
            name => match self.table.chain(name).filter(|c| c.policy.is_none()) {
                Some(chain) if depth < MAX_DEPTH => {
                    match self.chain(&chain.name, &chain.rules, depth + 1) {
                        Decides::Drops {
                            inside,
                            certain: inner,
                            ending,
                        } => Decides::Drops {
                            inside,
                            certain: inner && certain,
                            ending,
                        },
                        Decides::Accepts if certain => Decides::Accepts,
                        // Back from a `-g` (at the end, or at a RETURN) in a
                        // built-in chain's rule, the policy decides.
                        _ if depth == 0
                            && rule.goes_to()
                            && self.policy != Some(Policy::Accept) =>
                        {
                            Decides::Drops {
                                inside: None,
                                certain,
                                ending: Ending::GotoEnd {
                                    chain: chain.name.clone(),
                                    policy: self.policy.unwrap_or(Policy::Drop),
                                },
                            }
                        }
                        _ => Decides::Continues,
                    }
                }
                // Nested past any sensible depth: not followed.
                Some(_) => Decides::Continues,
                // NFQUEUE, TARPIT, …: unknown means it may drop.
                None => Decides::Drops {
                    inside: None,
                    certain,
                    ending: Ending::Unknown(target),
                },
            },
        }
    }

    fn chain(&self, name: &str, rules: &[LiveRule], depth: usize) -> Decides {
        for rule in rules {
            if rule.target().as_deref() == Some("RETURN") {
                if matches(&rule.spec, self.packet) == Test::Yes {
                    return Decides::Continues;
                }
                // A RETURN that may not match: the drops below it may
                // still come.
                continue;
            }
            match self.rule(rule, depth) {
                Decides::Continues => {}
                Decides::Drops {
                    inside: None,
                    certain,
                    ending,
                } => {
                    return Decides::Drops {
                        inside: Some((name.to_string(), rule.spec.clone())),
                        certain,
                        ending,
                    }
                }
                decided => return decided,
            }
        }
        Decides::Continues
    }
}

/// Whether the rule's matches (the words before its target) match the
/// packet. A match the guard cannot read may match.
fn matches(spec: &str, packet: &Packet) -> Test {
    let words = words(spec);
    let mut words = words
        .iter()
        .take_while(|w| w.quoted || (w.text != "-j" && w.text != "-g"))
        .peekable();
    let (sport, dport) = match &packet.transport {
        Transport::Tcp { sport, dport, .. } => (*sport, *dport),
        _ => (None, None),
    };
    let mut result = Test::Yes;
    let mut negated = false;
    while let Some(word) = words.next() {
        if word.quoted {
            // A value the loop did not expect: not read, so it may match.
            result = result.and(Test::Maybe);
            continue;
        }
        if word.text == "!" {
            negated = true;
            continue;
        }
        let mut value = || words.next().map_or("", |w| w.text.as_str());
        let test = match word.text.as_str() {
            "-s" | "--source" => address(value(), packet.src),
            "-d" | "--destination" => address(value(), packet.dst),
            "-p" | "--protocol" => match value() {
                "tcp" | "6" | "all" | "0" => Test::Yes,
                _ => Test::No,
            },
            "-i" | "--in-interface" => interface(value(), packet.in_iface.as_deref()),
            "-o" | "--out-interface" => interface(value(), packet.out_iface.as_deref()),
            // Loading a module matches nothing by itself.
            "-m" | "--match" => {
                value();
                Test::Yes
            }
            "--comment" => {
                value();
                Test::Yes
            }
            "--sport" | "--source-port" => ports(value(), sport),
            "--dport" | "--destination-port" => ports(value(), dport),
            "--sports" | "--source-ports" => ports(value(), sport),
            "--dports" | "--destination-ports" => ports(value(), dport),
            "--ports" => {
                let list = value();
                match (ports(list, sport), ports(list, dport)) {
                    (Test::Yes, _) | (_, Test::Yes) => Test::Yes,
                    (Test::No, Test::No) => Test::No,
                    _ => Test::Maybe,
                }
            }
            "--ctstate" | "--state" => state(value(), packet.state),
            _ => {
                // Not read here: it may match. Its arguments go with it.
                while words
                    .peek()
                    .is_some_and(|w| w.quoted || (!w.text.starts_with('-') && w.text != "!"))
                {
                    words.next();
                }
                Test::Maybe
            }
        };
        result = result.and(test.negate(negated));
        negated = false;
    }
    result
}

fn address(text: &str, addr: Option<IpAddr>) -> Test {
    let Some(addr) = addr else {
        return Test::Maybe;
    };
    let net = text
        .parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from));
    match net {
        Some(net) => Test::of(net.contains(&addr)),
        None => Test::Maybe,
    }
}

/// iptables' interface names: a trailing `+` matches any with that start.
/// The session's packet carries no interface unless it runs over
/// loopback (see [`super::Leg::packet`]): then it is not on `lo`.
fn interface(pattern: &str, iface: Option<&str>) -> Test {
    let Some(iface) = iface else {
        return match pattern {
            "lo" => Test::No,
            _ => Test::Maybe,
        };
    };
    Test::of(match pattern.strip_suffix('+') {
        Some(prefix) => iface.starts_with(prefix),
        None => iface == pattern,
    })
}

/// `22`, `1024:65535`, or multiport's `22,80,8000:8080`.
fn ports(list: &str, port: Option<u16>) -> Test {
    let Some(port) = port else {
        return Test::Maybe;
    };
    let mut result = Test::No;
    for item in list.split(',') {
        let (low, high) = item.split_once(':').unwrap_or((item, item));
        let low = if low.is_empty() {
            Ok(0)
        } else {
            low.parse::<u16>()
        };
        let high = if high.is_empty() {
            Ok(u16::MAX)
        } else {
            high.parse::<u16>()
        };
        match (low, high) {
            (Ok(low), Ok(high)) if (low..=high).contains(&port) => return Test::Yes,
            (Ok(_), Ok(_)) => {}
            // A service name the guard does not resolve.
            _ => result = Test::Maybe,
        }
    }
    result
}

fn state(list: &str, state: CtState) -> Test {
    let name = match state {
        CtState::New => "NEW",
        CtState::Established => "ESTABLISHED",
        CtState::Related => "RELATED",
        CtState::Invalid => "INVALID",
    };
    let mut result = Test::No;
    for item in list.split(',') {
        if item == name {
            return Test::Yes;
        }
        if !matches!(
            item,
            "NEW" | "ESTABLISHED" | "RELATED" | "INVALID" | "UNTRACKED"
        ) {
            result = Test::Maybe;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{HookRule, OwnedChain, OwnedRule, RuleId, TableRuleset};

    const SESSION: &str = "192.0.2.2 50000 192.0.2.1 22";

    fn session() -> SshConnection {
        SshConnection::parse(SESSION).unwrap()
    }

    fn accept_hook() -> HookRule {
        HookRule {
            hook: Hook::Input,
            placement: Placement::Bottom,
            rule: OwnedRule {
                id: RuleId::from_comment("fws:00000000000a").unwrap(),
                spec: "-m comment --comment \"fws:00000000000a\" -j FWS-INPUT".into(),
                origin: None,
            },
        }
    }

    fn desired() -> Ruleset {
        let filter = TableRuleset {
            hooks: vec![accept_hook()],
            chains: vec![OwnedChain {
                name: "FWS-INPUT".into(),
                rules: Vec::new(),
            }],
            ..TableRuleset::default()
        };
        let mut ruleset = Ruleset::empty(Family::Ipv4);
        ruleset.tables.insert(Table::Filter, filter);
        ruleset
    }

    /// INPUT as these rules, `HOOK` standing for fwscript's accepting hook.
    fn live(input: &[&str], chains: &str) -> LiveState {
        let mut text = String::from(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:FWS-INPUT - [0:0]\n",
        );
        text.push_str(chains);
        for rule in input {
            let rule = match *rule {
                "HOOK" => accept_hook().rule.spec,
                other => other.to_string(),
            };
            text.push_str(&format!("-A INPUT {rule}\n"));
        }
        text.push_str("COMMIT\n");
        LiveState::parse(Family::Ipv4, &text).unwrap()
    }

    fn check(input: &[&str], chains: &str) -> Result<(), Lockout> {
        check_kernel(&session(), &live(input, chains), &desired())
    }

    fn refused(input: &[&str], chains: &str) -> ForeignDrop {
        match check(input, chains) {
            Err(Lockout::Foreign { drop, .. }) => *drop,
            other => panic!("{input:?}: {other:?}"),
        }
    }

    #[test]
    fn a_catch_all_drop_the_hook_moves_below_is_refused() {
        let drop = refused(&["HOOK", "-j DROP"], "");
        assert_eq!((drop.position, drop.certain), (2, true));
        assert_eq!(drop.spec, "-j DROP");
        let reject = refused(
            &["HOOK", "-j REJECT --reject-with icmp-port-unreachable"],
            "",
        );
        assert_eq!(reject.ending, Ending::Target("REJECT".into()));
    }

    #[test]
    fn drops_that_miss_the_session_or_come_after_an_accept_of_it_pass() {
        for input in [
            &["HOOK", "-s 198.51.100.0/24 -j DROP"][..],
            &["HOOK", "-p udp -j DROP"],
            &["HOOK", "-p tcp -m tcp ! --dport 22 -j DROP"],
            &["HOOK", "! -s 192.0.2.0/24 -j DROP"],
            &["HOOK", "-m conntrack --ctstate INVALID -j DROP"],
            &["HOOK", "-i lo -j DROP"],
            // The session's packets are accepted before the drop.
            &[
                "-s 192.0.2.2/32 -p tcp -m tcp --dport 22 -j ACCEPT",
                "HOOK",
                "-j DROP",
            ],
            &["HOOK", "-s 192.0.2.0/24 -j ACCEPT", "-j DROP"],
            // Already above the hook: not this write's doing.
            &["-s 192.0.2.2/32 -j DROP", "HOOK"],
            // No hook yet: appended below everything, nothing moves.
            &["-j DROP"],
        ] {
            assert!(check(input, "").is_ok(), "{input:?}");
        }
    }

    #[test]
    fn what_cannot_be_read_or_known_may_drop() {
        // The interface a remote session arrives on is not known offline.
        let iface = refused(&["HOOK", "-i eth0 -j DROP"], "");
        assert!(!iface.certain);
        // A match the guard does not read.
        let unread = refused(&["HOOK", "-m addrtype --dst-type LOCAL -j DROP"], "");
        assert!(!unread.certain);
        // An accept that may not match does not save the session.
        let maybe = refused(&["HOOK", "-i eth0 -j ACCEPT", "-p tcp -j DROP"], "");
        assert_eq!(maybe.position, 3);
        assert!(maybe.certain);
    }

    #[test]
    fn a_jump_into_a_chain_that_drops_is_followed() {
        let chains = ":admin - [0:0]\n-A admin -s 198.51.100.9/32 -j RETURN\n\
                      -A admin -s 192.0.2.0/24 -j DROP\n";
        let drop = refused(&["HOOK", "-p tcp -j admin"], chains);
        assert_eq!(drop.position, 2);
        assert_eq!(
            drop.inside,
            Some(("admin".to_string(), "-s 192.0.2.0/24 -j DROP".to_string()))
        );
        let returns = ":admin - [0:0]\n-A admin -s 192.0.2.2/32 -j RETURN\n-A admin -j DROP\n";
        assert!(check(&["HOOK", "-j admin"], returns).is_ok());
    }

    /// Unknown means refuse: a target whose verdict cannot be known offline
    /// may drop; one that only logs or marks lets the packet go on.
    #[test]
    fn a_target_the_guard_cannot_follow_may_drop() {
        for target in ["NFQUEUE --queue-num 0", "TARPIT", "QUEUE"] {
            let rule = format!("-p tcp -m tcp --dport 22 -j {target}");
            let drop = refused(&["HOOK", &rule], "");
            let name = target.split(' ').next().unwrap();
            assert_eq!(drop.ending, Ending::Unknown(name.into()), "{target}");
            assert!(drop.certain && !drop.is_certain(), "{target}");
        }
        // Inside a chain it jumps to, too.
        let chains = ":ips - [0:0]\n-A ips -j NFQUEUE --queue-bypass\n";
        let drop = refused(&["HOOK", "-j ips"], chains);
        assert_eq!(drop.ending, Ending::Unknown("NFQUEUE".into()));
        assert_eq!(drop.inside.unwrap().0, "ips");
        for harmless in [
            "-j LOG --log-prefix \"in: \"",
            "-j NFLOG",
            "-j MARK --set-xmark 0x1/0xffffffff",
            "-j CONNMARK --save-mark",
        ] {
            assert!(check(&["HOOK", harmless], "").is_ok(), "{harmless}");
        }
        // A LOG, then a drop: the drop is what cuts.
        let drop = refused(&["HOOK", "-j LOG", "-j DROP"], "");
        assert_eq!(drop.position, 3);
    }

    /// A packet back from a `-g` chain, or a RETURN in the built-in chain
    /// itself, meets the chain's policy before fwscript's hook.
    #[test]
    fn a_goto_or_a_return_ahead_of_the_hook_meets_the_policy() {
        let chains = ":admin - [0:0]\n-A admin -s 198.51.100.9/32 -j DROP\n";
        let drop = refused(&["HOOK", "-p tcp -g admin"], chains);
        assert_eq!(
            drop.ending,
            Ending::GotoEnd {
                chain: "admin".into(),
                policy: Policy::Drop
            }
        );
        assert!(!drop.is_certain());
        // The same chain by `-j` hands the packet back: nothing cut.
        assert!(check(&["HOOK", "-p tcp -j admin"], chains).is_ok());
        // A goto into a chain that accepts the session is no harm.
        let accepts = ":admin - [0:0]\n-A admin -s 192.0.2.2/32 -j ACCEPT\n";
        assert!(check(&["HOOK", "-g admin"], accepts).is_ok());

        // Above the hook, a RETURN is what it was: the policy DROP now.
        assert!(check(&["-p tcp -j RETURN", "HOOK"], "").is_ok());

        let ret = refused(&["HOOK", "-p tcp -j RETURN"], "");
        assert_eq!(
            ret.ending,
            Ending::Return {
                policy: Policy::Drop
            }
        );
        assert!(ret.is_certain());
        assert!(check(&["HOOK", "-p udp -j RETURN"], "").is_ok());
    }

    /// A RETURN above the hook, or on a first apply with no hook yet,
    /// hands the session to the policy: harmless while it accepts, a cut
    /// once this write makes it DROP.
    #[test]
    fn a_return_meets_the_policy_this_write_closes() {
        let mut open = live(&["-p tcp -j RETURN", "HOOK"], "");
        let input = open
            .tables
            .get_mut(&Table::Filter)
            .unwrap()
            .chains
            .iter_mut()
            .find(|c| c.name == "INPUT")
            .unwrap();
        input.policy = Some(Policy::Accept);
        let mut closing = desired();
        closing
            .tables
            .get_mut(&Table::Filter)
            .unwrap()
            .policies
            .insert(Hook::Input, Policy::Drop);
        let refused = match check_kernel(&session(), &open, &closing) {
            Err(Lockout::Foreign { drop, .. }) => *drop,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused.position, 1);
        assert!(!refused.moved);
        // No hook yet (a first apply): the same.
        let mut first = open.clone();
        let input = first.tables.get_mut(&Table::Filter).unwrap();
        let input = input.chains.iter_mut().find(|c| c.name == "INPUT").unwrap();
        input.rules.retain(|r| r.id.is_none());
        assert_eq!(input.rules.len(), 1);
        assert!(check_kernel(&session(), &first, &closing).is_err());
        // A policy that stays ACCEPT: nothing new.
        assert!(check_kernel(&session(), &open, &desired()).is_ok());
    }

    #[test]
    fn another_family_is_not_this_sessions() {
        let v6 = SshConnection::parse("2001:db8::2 50000 2001:db8::1 22").unwrap();
        assert!(check_kernel(&v6, &live(&["HOOK", "-j DROP"], ""), &desired()).is_ok());
    }
}
