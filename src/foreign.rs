//! Other programs' rules next to fwscript's hooks (live + ruleset →
//! **warnings**): which foreign rules in a built-in chain fwscript hooks
//! change what the script means, and how, for `plan` and `apply` to say.
//!
//! Only consequences are warned about. A rule that accepts (or jumps to a
//! chain that can, however deep) before fwscript's accepting hook takes
//! packets away from the script's rules; a rule after that hook is never
//! reached by what the script accepts, until apply moves the hook below
//! it; a drop of every packet ahead of the hook makes the script's allows
//! moot. A ban (a conditional drop, fail2ban's jump to a chain that only
//! drops or returns) is what the hook contract is for, and is no alarm. A
//! known neighbour's rules (Docker's) are summed up in one line.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::live::{LiveRule, LiveState, LiveTable};
use crate::netfilter::{Family, Hook, Table};
use crate::plan::Stage;
use crate::ruleset::{Placement, Ruleset, TableRuleset};

/// A foreign rule that changes what the script means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignWarning {
    #[serde(flatten)]
    pub kind: WarningKind,
    pub family: Family,
    pub table: Table,
    pub chain: Hook,
    /// 1-based, as `iptables -L --line-numbers` counts, in the chain as it
    /// is now.
    pub position: usize,
    /// The rule as iptables-save prints it (for a summary, the first one).
    pub spec: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WarningKind {
    /// It accepts (or jumps to a chain that can) before fwscript's
    /// accepting hook: what it accepts never meets the script's rules.
    Bypass {
        /// Which of the script's rules it keeps packets from, in the order
        /// they come: `deny`, `baseline`, `limit`, `allow`, `log`, or the
        /// table's name for nat and mangle.
        skipped: Vec<String>,
        /// fwscript's deny hook comes before it: the script's denials still
        /// apply to what it accepts.
        denials_apply: bool,
        /// It comes after the accepting hook now, and the apply moves the
        /// hook below it: the bypass starts with this apply.
        hook_moves: bool,
    },
    /// It comes after fwscript's accepting hook and neither accepts nor
    /// drops everything (a ban): what the script accepts never reaches it
    /// until apply moves the hook below it, from when on it decides first.
    AfterAcceptHook,
    /// It drops or rejects every packet before fwscript's accepting hook,
    /// or will once the apply moves the hook below it.
    CatchAllDrop {
        /// It comes after the accepting hook now, and the apply moves the
        /// hook below it: from then on nothing gets through, an open SSH
        /// session included.
        hook_moves: bool,
    },
    /// `count` bypasses by a known neighbour's rules, in one line.
    Neighbour {
        name: String,
        count: usize,
        /// `ipv4 filter FORWARD`, … where they are.
        places: Vec<String>,
    },
}

impl fmt::Display for ForeignWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = format!(
            "{} {} {} rule {}",
            self.family, self.table, self.chain, self.position
        );
        let spec = &self.spec;
        match &self.kind {
            WarningKind::Bypass {
                skipped,
                denials_apply,
                hook_moves,
            } => {
                let (hook, verb) = match self.table {
                    Table::Filter if skipped.iter().any(|s| s != Stage::Deny.name()) => {
                        ("its accepting hook", "accepts")
                    }
                    Table::Nat => ("its hook", "translates or accepts"),
                    _ => ("its hook", "accepts"),
                };
                // Judged where the apply puts it: a rule the hook moves
                // below starts deciding first with this very apply.
                let place = match hook_moves {
                    true => format!("comes after {hook}, which apply moves below it: from then on"),
                    false => format!("comes before {hook}:"),
                };
                write!(
                    f,
                    "{at} is not fwscript's and {place} packets it {verb} never reach the \
                     script's {} rules",
                    list(skipped)
                )?;
                if *denials_apply {
                    f.write_str(" (the script's denials come before it and still apply)")?;
                }
                write!(f, ": `{spec}`")
            }
            WarningKind::AfterAcceptHook => write!(
                f,
                "{at} is not fwscript's and comes after its accepting hook: packets the script \
                 accepts never reach it; apply moves the hook below it: `{spec}`"
            ),
            WarningKind::CatchAllDrop { hook_moves: false } => write!(
                f,
                "{at} is not fwscript's and drops every packet before its accepting hook: packets \
                 it drops never reach the script's allow rules: `{spec}`"
            ),
            WarningKind::CatchAllDrop { hook_moves: true } => write!(
                f,
                "{at} is not fwscript's and comes after its accepting hook, which apply moves \
                 below it: from then on it drops every packet before the script's allow rules \
                 see it, established connections (an SSH session) included: `{spec}`"
            ),
            WarningKind::Neighbour {
                name,
                count,
                places,
            } => {
                let rules = if *count == 1 { "rule" } else { "rules" };
                write!(
                    f,
                    "{count} {rules} of {name} ({}) come before fwscript's accepting hooks: \
                     packets they accept never reach the script's rules",
                    places.join(", ")
                )?;
                match NEIGHBOURS.iter().find(|n| n.name == name) {
                    Some(neighbour) => write!(f, "; {}", neighbour.note),
                    None => Ok(()),
                }
            }
        }
    }
}

impl ForeignWarning {
    /// Whether the apply turns it from harmless into deciding first: a
    /// catch-all drop or an accept the accepting hook moves below.
    pub fn hook_moves(&self) -> bool {
        matches!(
            self.kind,
            WarningKind::Bypass {
                hook_moves: true,
                ..
            } | WarningKind::CatchAllDrop { hook_moves: true }
        )
    }
}

/// `a`, `a and b`, `a, b and c`.
fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Foreign rules in the built-in chains `desired` hooks that change what
/// the script means, judged against where fwscript's hooks will be once
/// `desired` is applied: a top hook where it is (or on top), the accepting
/// hook at the end.
pub fn foreign_warnings(live: &LiveState, desired: &Ruleset) -> Vec<ForeignWarning> {
    let mut warnings = Vec::new();
    for (&table, wanted) in &desired.tables {
        let Some(live_table) = live.table(table) else {
            continue;
        };
        let mut reach = Reach::new(live_table);
        let mut hooks: Vec<Hook> = wanted.hooks.iter().map(|h| h.hook).collect();
        hooks.dedup();
        for hook in hooks {
            let Some((_, chain)) = live_table.builtin_chains().find(|(h, _)| *h == hook) else {
                continue;
            };
            let judge = Judge::new(table, hook, wanted, &chain.rules);
            for (index, rule) in chain.rules.iter().enumerate() {
                if rule.id.is_some() {
                    continue;
                }
                if let Some(kind) = judge.judge(index + 1, rule, &mut reach) {
                    warnings.push(ForeignWarning {
                        kind,
                        family: live.family,
                        table,
                        chain: hook,
                        position: index + 1,
                        spec: rule.spec.clone(),
                    });
                }
            }
        }
    }
    warnings
}

/// Where fwscript's hooks of one built-in chain are and will be.
struct Judge {
    table: Table,
    /// Position of the top hook once applied: where it is, or 0 (a missing
    /// one goes above everything).
    top: Option<usize>,
    /// Whether there is an accepting hook, and where it is now.
    bottom: Option<Option<usize>>,
    /// The script's rule groups behind the accepting hook.
    accepting: Vec<String>,
}

impl Judge {
    fn new(table: Table, hook: Hook, wanted: &TableRuleset, rules: &[LiveRule]) -> Judge {
        let position = |placement| {
            let want = wanted.hook(hook, placement)?;
            Some(
                rules
                    .iter()
                    .rposition(|r| r.id.as_ref() == Some(&want.rule.id))
                    .map(|i| i + 1),
            )
        };
        let accepting = match table {
            Table::Filter => Stage::ALL
                .into_iter()
                .filter(|&s| s != Stage::Deny && wanted.chain(&s.chain_name(hook)).is_some())
                .map(|s| s.name().to_string())
                .collect(),
            _ => vec![table.name().to_string()],
        };
        Judge {
            table,
            top: position(Placement::Top).map(|at| at.unwrap_or(0)),
            bottom: position(Placement::Bottom),
            accepting,
        }
    }

    fn judge(&self, position: usize, rule: &LiveRule, reach: &mut Reach) -> Option<WarningKind> {
        let above_top = self.top.is_some_and(|top| position < top);
        match self.bottom {
            Some(bottom) => {
                // A rule after the accepting hook is judged where the apply
                // puts it: above the hook, which moves to the end.
                let hook_moves = bottom.is_some_and(|bottom| position > bottom);
                if reach.can_accept(rule) {
                    let mut skipped = self.accepting.clone();
                    if above_top {
                        skipped.insert(0, Stage::Deny.name().to_string());
                    }
                    Some(WarningKind::Bypass {
                        skipped,
                        denials_apply: self.top.is_some() && !above_top,
                        hook_moves,
                    })
                } else if drops_everything(rule) {
                    Some(WarningKind::CatchAllDrop { hook_moves })
                } else if hook_moves {
                    Some(WarningKind::AfterAcceptHook)
                } else {
                    None
                }
            }
            None if above_top && reach.can_accept(rule) => {
                let skipped = match self.table {
                    Table::Filter => vec![Stage::Deny.name().to_string()],
                    _ => self.accepting.clone(),
                };
                Some(WarningKind::Bypass {
                    skipped,
                    denials_apply: false,
                    hook_moves: false,
                })
            }
            None => None,
        }
    }
}

/// `-j DROP` or `-j REJECT` with nothing to match but a comment.
fn drops_everything(rule: &LiveRule) -> bool {
    matches!(rule.target().as_deref(), Some("DROP" | "REJECT")) && rule.matches_everything()
}

/// Targets that never accept: they drop, hand the packet back, or only
/// look at it and let it go on.
const NEVER_ACCEPTS: &[&str] = &[
    "DROP",
    "REJECT",
    "RETURN",
    "LOG",
    "NFLOG",
    "ULOG",
    "MARK",
    "CONNMARK",
    "CT",
    "NOTRACK",
    "TRACE",
    "CLASSIFY",
    "TCPMSS",
    "DSCP",
    "TOS",
    "TTL",
    "HL",
    "ECN",
    "SET",
    "CHECKSUM",
    "AUDIT",
    "SECMARK",
    "CONNSECMARK",
    "TEE",
    "IDLETIMER",
    "LED",
    "HMARK",
    "RATEEST",
];

/// Which chains of one live table can accept a packet, following jumps.
struct Reach<'a> {
    table: &'a LiveTable,
    known: HashMap<String, bool>,
}

impl<'a> Reach<'a> {
    fn new(table: &'a LiveTable) -> Reach<'a> {
        Reach {
            table,
            known: HashMap::new(),
        }
    }

    fn can_accept(&mut self, rule: &LiveRule) -> bool {
        match rule.target() {
            None => false,
            Some(target) => self.target_can_accept(&target),
        }
    }

    fn target_can_accept(&mut self, target: &str) -> bool {
        if NEVER_ACCEPTS.contains(&target) {
            return false;
        }
        let Some(chain) = self.table.chain(target).filter(|c| c.policy.is_none()) else {
            // ACCEPT, NFQUEUE (a program decides), the nat targets (they end
            // the nat table's walk), and any target not known here: it may.
            return true;
        };
        if let Some(&known) = self.known.get(target) {
            return known;
        }
        // A loop (which iptables refuses to load anyway) adds nothing.
        self.known.insert(target.to_string(), false);
        let accepts = chain.rules.iter().any(|rule| self.can_accept(rule));
        self.known.insert(target.to_string(), accepts);
        accepts
    }
}

/// A program whose rules are expected next to fwscript's and are summed up
/// in one line.
struct Neighbour {
    name: &'static str,
    /// Chains it jumps to from the built-in chains.
    chains: &'static [&'static str],
    /// Interfaces its rules name.
    interfaces: &'static [&'static str],
    note: &'static str,
}

const NEIGHBOURS: &[Neighbour] = &[
    Neighbour {
        name: "Docker",
        chains: &[
            "DOCKER",
            "DOCKER-USER",
            "DOCKER-FORWARD",
            "DOCKER-ISOLATION-STAGE-1",
            "DOCKER-ISOLATION-STAGE-2",
            "DOCKER-INGRESS",
            "DOCKER-CT",
            "DOCKER-BRIDGE",
        ],
        interfaces: &["docker0", "docker_gwbridge"],
        note: "expected on a Docker host, whose containers' traffic Docker decides itself \
               (filter it in the DOCKER-USER chain)",
    },
    Neighbour {
        name: "libvirt",
        chains: &[
            "LIBVIRT_INP",
            "LIBVIRT_OUT",
            "LIBVIRT_FWI",
            "LIBVIRT_FWO",
            "LIBVIRT_FWX",
            "LIBVIRT_PRT",
        ],
        interfaces: &["virbr0"],
        note: "expected on a libvirt host, which lets its virtual networks' DHCP, DNS and \
               traffic through itself",
    },
];

/// The known neighbour a rule belongs to, by the chain it jumps to or the
/// interface it names.
fn neighbour_of(spec: &str) -> Option<&'static Neighbour> {
    let rule = LiveRule::new(spec);
    let target = rule.target();
    let words: Vec<&str> = spec.split_whitespace().collect();
    let interfaces: Vec<&str> = words
        .windows(2)
        .filter(|w| w[0] == "-i" || w[0] == "-o")
        .map(|w| w[1])
        .collect();
    NEIGHBOURS.iter().find(|n| {
        target.as_deref().is_some_and(|t| n.chains.contains(&t))
            || interfaces.iter().any(|i| n.interfaces.contains(i))
    })
}

/// The known neighbour (by name) whose rules sit in a chain: a jump to one
/// of its chains, or a rule naming one of its interfaces.
pub fn neighbour_in(rules: &[LiveRule]) -> Option<&'static str> {
    rules
        .iter()
        .find_map(|rule| neighbour_of(&rule.spec))
        .map(|neighbour| neighbour.name)
}

/// The warnings with every bypass by a known neighbour's rules, in any
/// family, summed up in one line per neighbour where its first one was.
pub fn summarise(warnings: Vec<ForeignWarning>) -> Vec<ForeignWarning> {
    let mut out: Vec<ForeignWarning> = Vec::new();
    let mut summaries: HashMap<&'static str, usize> = HashMap::new();
    for warning in warnings {
        let neighbour = match warning.kind {
            WarningKind::Bypass { .. } => neighbour_of(&warning.spec),
            _ => None,
        };
        let Some(neighbour) = neighbour else {
            out.push(warning);
            continue;
        };
        let place = format!("{} {} {}", warning.family, warning.table, warning.chain);
        match summaries.get(neighbour.name) {
            Some(&index) => {
                if let WarningKind::Neighbour { count, places, .. } = &mut out[index].kind {
                    *count += 1;
                    if !places.contains(&place) {
                        places.push(place);
                    }
                }
            }
            None => {
                summaries.insert(neighbour.name, out.len());
                out.push(ForeignWarning {
                    kind: WarningKind::Neighbour {
                        name: neighbour.name.to_string(),
                        count: 1,
                        places: vec![place],
                    },
                    ..warning
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{HookRule, OwnedChain, OwnedRule, RuleId};

    fn id(n: u32) -> RuleId {
        RuleId::from_comment(&format!("fws:{n:012x}")).unwrap()
    }

    fn hook(hook: Hook, n: u32, target: &str) -> HookRule {
        HookRule {
            hook,
            placement: Placement::of(Table::Filter, target),
            rule: OwnedRule {
                id: id(n),
                spec: format!("-m comment --comment \"fws:{n:012x}\" -j {target}"),
                origin: None,
            },
        }
    }

    fn deny_hook() -> String {
        hook(Hook::Input, 1, "FWS-INPUT-DENY").rule.spec
    }

    fn accept_hook() -> String {
        hook(Hook::Input, 2, "FWS-INPUT").rule.spec
    }

    /// INPUT: a deny hook on top, an accepting hook into baseline and
    /// allow stages at the end; FORWARD: an accepting hook.
    fn desired() -> Ruleset {
        let mut filter = TableRuleset {
            hooks: vec![
                hook(Hook::Input, 1, "FWS-INPUT-DENY"),
                hook(Hook::Input, 2, "FWS-INPUT"),
                hook(Hook::Forward, 3, "FWS-FORWARD"),
            ],
            ..TableRuleset::default()
        };
        for name in [
            "FWS-INPUT",
            "FWS-INPUT-DENY",
            "FWS-INPUT-BASE",
            "FWS-INPUT-ALLOW",
            "FWS-FORWARD",
            "FWS-FORWARD-BASE",
        ] {
            filter.chains.push(OwnedChain {
                name: name.into(),
                rules: Vec::new(),
            });
        }
        let mut ruleset = Ruleset::empty(Family::Ipv4);
        ruleset.tables.insert(Table::Filter, filter);
        ruleset
    }

    /// A filter table with these INPUT rules and these user chains.
    fn live(input: &[String], chains: &[(&str, &[&str])]) -> LiveState {
        let mut text =
            String::from("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
        for (name, _) in chains {
            text.push_str(&format!(":{name} - [0:0]\n"));
        }
        for rule in input {
            text.push_str(&format!("-A INPUT {rule}\n"));
        }
        for (name, rules) in chains {
            for rule in *rules {
                text.push_str(&format!("-A {name} {rule}\n"));
            }
        }
        text.push_str("COMMIT\n");
        LiveState::parse(Family::Ipv4, &text).unwrap()
    }

    const F2B: (&str, &[&str]) = (
        "f2b-sshd",
        &[
            "-s 192.0.2.2/32 -j REJECT --reject-with icmp-port-unreachable",
            "-j RETURN",
        ],
    );

    fn kinds(warnings: &[ForeignWarning]) -> Vec<(usize, WarningKind)> {
        warnings
            .iter()
            .map(|w| (w.position, w.kind.clone()))
            .collect()
    }

    #[test]
    fn bans_are_no_alarm() {
        let input = [
            "-p tcp -m multiport --dports 22 -j f2b-sshd".to_string(),
            deny_hook(),
            "-s 198.51.100.9/32 -j DROP".into(),
            "-j LOG --log-prefix \"seen \"".into(),
            "-p tcp -m multiport --dports 80 -j f2b-web".into(),
            accept_hook(),
        ];
        // f2b-web returns through a nested chain that only drops.
        let chains: &[(&str, &[&str])] = &[
            F2B,
            ("f2b-web", &["-j f2b-web-inner", "-j RETURN"]),
            ("f2b-web-inner", &["-s 192.0.2.9/32 -j DROP"]),
        ];
        let warnings = foreign_warnings(&live(&input, chains), &desired());
        assert!(warnings.is_empty(), "{warnings:#?}");
    }

    #[test]
    fn an_accept_above_the_accepting_hook_is_a_bypass_naming_what_it_skips() {
        let input = [
            "-s 203.0.113.0/24 -j ACCEPT".to_string(),
            deny_hook(),
            "-i eth1 -j ACCEPT".into(),
            accept_hook(),
        ];
        let warnings = foreign_warnings(&live(&input, &[]), &desired());
        let skipped = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            kinds(&warnings),
            [
                (
                    1,
                    WarningKind::Bypass {
                        skipped: skipped(&["deny", "baseline", "allow"]),
                        denials_apply: false,
                        hook_moves: false
                    }
                ),
                (
                    3,
                    WarningKind::Bypass {
                        skipped: skipped(&["baseline", "allow"]),
                        denials_apply: true,
                        hook_moves: false
                    }
                ),
            ]
        );
        assert_eq!(
            warnings[0].to_string(),
            "ipv4 filter INPUT rule 1 is not fwscript's and comes before its accepting hook: \
             packets it accepts never reach the script's deny, baseline and allow rules: \
             `-s 203.0.113.0/24 -j ACCEPT`"
        );
        assert!(warnings[1].to_string().contains(
            "baseline and allow rules (the script's denials come before it and still apply)"
        ));
    }

    #[test]
    fn a_jump_that_can_accept_however_deep_is_a_bypass() {
        let input = ["-j outer".to_string(), "-j queue".into(), accept_hook()];
        let chains: &[(&str, &[&str])] = &[
            ("outer", &["-j middle", "-j RETURN"]),
            ("middle", &["-p udp -j inner"]),
            ("inner", &["-p udp --dport 53 -j ACCEPT"]),
            ("queue", &["-j NFQUEUE --queue-num 1"]),
        ];
        let warnings = foreign_warnings(&live(&input, chains), &desired());
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(warnings
            .iter()
            .all(|w| matches!(w.kind, WarningKind::Bypass { .. })));
    }

    #[test]
    fn a_rule_after_the_accepting_hook_is_never_reached_until_apply_moves_it() {
        let input = [accept_hook(), "-s 192.0.2.3/32 -j DROP".to_string()];
        let warnings = foreign_warnings(&live(&input, &[]), &desired());
        assert_eq!(kinds(&warnings), [(2, WarningKind::AfterAcceptHook)]);
        assert!(warnings[0]
            .to_string()
            .contains("packets the script accepts never reach it; apply moves the hook below it"));
    }

    #[test]
    fn a_drop_of_everything_is_worth_a_word() {
        for spec in [
            "-j DROP",
            "-m comment --comment \"catch all\" -j REJECT --reject-with icmp-host-prohibited",
        ] {
            let input = [spec.to_string(), accept_hook()];
            let warnings = foreign_warnings(&live(&input, &[]), &desired());
            assert_eq!(
                kinds(&warnings),
                [(1, WarningKind::CatchAllDrop { hook_moves: false })],
                "{spec}"
            );
            assert!(warnings[0]
                .to_string()
                .contains("packets it drops never reach"));
        }
    }

    #[test]
    fn a_missing_hook_is_judged_where_apply_will_put_it() {
        // No fwscript rule yet: the deny hook goes above everything, the
        // accepting one below everything.
        let input = ["-i lo -j ACCEPT".to_string(), "-j DROP".into()];
        let warnings = foreign_warnings(&live(&input, &[]), &desired());
        assert_eq!(warnings.len(), 2);
        assert!(matches!(
            &warnings[0].kind,
            WarningKind::Bypass { denials_apply: true, skipped, hook_moves: false }
                if skipped[0] == "baseline"
        ));
        assert_eq!(
            warnings[1].kind,
            WarningKind::CatchAllDrop { hook_moves: false }
        );
    }

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn a_docker_host_gets_one_line() {
        let mut warnings = Vec::new();
        for (family, file) in [
            (Family::Ipv4, "docker-ipv4.save"),
            (Family::Ipv6, "docker-ipv6.save"),
        ] {
            let live = LiveState::parse(family, &fixture(file)).unwrap();
            let mut desired = desired();
            desired.family = family;
            let found = foreign_warnings(&live, &desired);
            // DOCKER-USER only returns; DOCKER-FORWARD accepts containers'
            // traffic.
            assert_eq!(found.len(), 1, "{found:#?}");
            assert!(found[0].spec.ends_with("-j DOCKER-FORWARD"));
            warnings.extend(found);
        }
        let summary = summarise(warnings);
        assert_eq!(summary.len(), 1, "{summary:#?}");
        assert_eq!(
            summary[0].kind,
            WarningKind::Neighbour {
                name: "Docker".into(),
                count: 2,
                places: vec!["ipv4 filter FORWARD".into(), "ipv6 filter FORWARD".into()],
            }
        );
        let line = summary[0].to_string();
        assert!(
            line.starts_with("2 rules of Docker (ipv4 filter FORWARD, ipv6 filter FORWARD)"),
            "{line}"
        );
        assert!(line.contains("DOCKER-USER"), "{line}");
    }

    #[test]
    fn the_pre_28_docker_layout_is_summed_up_too() {
        // Docker before 28 put its accepts straight into FORWARD.
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
            :DOCKER - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n:DOCKER-ISOLATION-STAGE-2 - [0:0]\n:DOCKER-USER - [0:0]\n\
            -A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n\
            -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
            -A FORWARD -o docker0 -j DOCKER\n-A FORWARD -i docker0 ! -o docker0 -j ACCEPT\n\
            -A FORWARD -i docker0 -o docker0 -j ACCEPT\n\
            -A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT\n\
            -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2\n\
            -A DOCKER-ISOLATION-STAGE-1 -j RETURN\n-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP\n\
            -A DOCKER-ISOLATION-STAGE-2 -j RETURN\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
        let live = LiveState::parse(Family::Ipv4, text).unwrap();
        let warnings = foreign_warnings(&live, &desired());
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        let summary = summarise(warnings);
        assert_eq!(summary.len(), 1);
        assert!(matches!(
            &summary[0].kind,
            WarningKind::Neighbour { count: 4, .. }
        ));
    }

    #[test]
    fn rules_after_the_accepting_hook_are_judged_where_the_move_puts_them() {
        // An admin's `iptables -A INPUT -j DROP` / `-j ACCEPT` after the
        // hook: harmless now, everything once the hook moves below it.
        let input = [
            deny_hook(),
            accept_hook(),
            "-j DROP".to_string(),
            "-j ACCEPT".into(),
        ];
        let warnings = foreign_warnings(&live(&input, &[]), &desired());
        assert_eq!(
            kinds(&warnings),
            [
                (3, WarningKind::CatchAllDrop { hook_moves: true }),
                (
                    4,
                    WarningKind::Bypass {
                        skipped: vec!["baseline".into(), "allow".into()],
                        denials_apply: true,
                        hook_moves: true
                    }
                ),
            ]
        );
        assert_eq!(
            warnings[0].to_string(),
            "ipv4 filter INPUT rule 3 is not fwscript's and comes after its accepting hook, \
             which apply moves below it: from then on it drops every packet before the \
             script's allow rules see it, established connections (an SSH session) included: \
             `-j DROP`"
        );
        assert_eq!(
            warnings[1].to_string(),
            "ipv4 filter INPUT rule 4 is not fwscript's and comes after its accepting hook, \
             which apply moves below it: from then on packets it accepts never reach the \
             script's baseline and allow rules (the script's denials come before it and still \
             apply): `-j ACCEPT`"
        );
        let json = serde_json::to_value(&warnings[0]).unwrap();
        assert_eq!(json["kind"], "catch_all_drop");
        assert_eq!(json["hook_moves"], true);
    }

    #[test]
    fn warnings_serialize_with_their_kind() {
        let input = [accept_hook(), "-s 192.0.2.3/32 -j DROP".to_string()];
        let warnings = foreign_warnings(&live(&input, &[]), &desired());
        let json = serde_json::to_value(&warnings[0]).unwrap();
        assert_eq!(json["kind"], "after_accept_hook");
        assert_eq!(json["chain"], "input");
        assert_eq!(json["position"], 2);
        let bypass = ForeignWarning {
            kind: WarningKind::Bypass {
                skipped: vec!["allow".into()],
                denials_apply: true,
                hook_moves: false,
            },
            ..warnings[0].clone()
        };
        let json = serde_json::to_value(&bypass).unwrap();
        assert_eq!(json["kind"], "bypass");
        assert_eq!(json["skipped"][0], "allow");
    }

    #[test]
    fn nat_warns_only_about_what_decides_before_its_hook() {
        let mut nat = TableRuleset::default();
        let mut top = hook(Hook::Prerouting, 9, "FWS-PREROUTING");
        top.placement = Placement::Top;
        nat.hooks.push(top.clone());
        let mut desired = Ruleset::empty(Family::Ipv4);
        desired.tables.insert(Table::Nat, nat);
        let text = format!(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
             -A PREROUTING -p tcp --dport 81 -j DNAT --to-destination 192.0.2.9\n\
             -A PREROUTING {}\n-A PREROUTING -p tcp --dport 82 -j DNAT --to-destination 192.0.2.9\nCOMMIT\n",
            top.rule.spec
        );
        let live = LiveState::parse(Family::Ipv4, &text).unwrap();
        let warnings = foreign_warnings(&live, &desired);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert_eq!(warnings[0].position, 1);
        assert!(warnings[0]
            .to_string()
            .contains("packets it translates or accepts never reach the script's nat rules"));
    }
}
