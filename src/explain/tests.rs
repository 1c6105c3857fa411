//! The evaluator on hand-built plans: every path a packet can take.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::*;
use crate::plan::family_of;
use crate::plan::{
    Action, ChainPlan, ChainPolicy, CtState, Endpoint, FamilyPlan, Matches, PortRange, Proto,
    RateLimit, RateUnit, Recent, RecentCheck, Rule, Stage, TablePlan,
};

fn origin(line: usize) -> Origin {
    Origin {
        file: "fw.rhai".into(),
        line,
        column: 1,
    }
}

fn rule(matches: Matches, action: Action, line: usize) -> Rule {
    Rule {
        matches,
        action,
        comment: None,
        origin: Some(origin(line)),
    }
}

fn tcp_dport(port: u16) -> Matches {
    Matches {
        proto: Some(Proto::Tcp),
        dport: Some(PortRange::single(port)),
        ..Matches::default()
    }
}

fn from(cidr: &str) -> Matches {
    Matches {
        src: Some(cidr.parse().unwrap()),
        ..Matches::default()
    }
}

fn jump(chain: &str) -> Rule {
    Rule {
        matches: Matches::default(),
        action: Action::Jump {
            chain: chain.into(),
        },
        comment: None,
        origin: None,
    }
}

/// A filter table for `hook` built the way the collector builds it: an
/// entry chain jumping to one chain per stage given.
fn staged(hook: Hook, stages: Vec<(Stage, Vec<Rule>)>) -> Vec<ChainPlan> {
    let entry = ChainPlan {
        name: hook.owned_chain(),
        hook,
        stage: None,
        rules: stages
            .iter()
            .map(|(stage, _)| jump(&stage.chain_name(hook)))
            .collect(),
    };
    let mut chains = vec![entry];
    chains.extend(stages.into_iter().map(|(stage, rules)| ChainPlan {
        name: stage.chain_name(hook),
        hook,
        stage: Some(stage),
        rules,
    }));
    chains
}

fn baseline_policy(policy: Policy) -> ChainPolicy {
    ChainPolicy {
        policy,
        origin: None,
    }
}

fn filter(chains: Vec<ChainPlan>) -> TablePlan {
    TablePlan {
        policies: BTreeMap::from([
            (Hook::Input, baseline_policy(Policy::Drop)),
            (Hook::Forward, baseline_policy(Policy::Drop)),
            (Hook::Output, baseline_policy(Policy::Accept)),
        ]),
        chains,
    }
}

fn plan_of(tables: Vec<(Family, Table, TablePlan)>) -> Plan {
    let mut families: BTreeMap<Family, FamilyPlan> = BTreeMap::new();
    for (family, table, plan) in tables {
        families
            .entry(family)
            .or_default()
            .tables
            .insert(table, plan);
    }
    Plan {
        sources: Vec::new(),
        address_lists: Vec::new(),
        families,
    }
}

fn ipv4(table: TablePlan) -> Plan {
    plan_of(vec![(Family::Ipv4, Table::Filter, table)])
}

fn syn_from(src: &str, dport: u16) -> Packet {
    let src: IpAddr = src.parse().unwrap();
    Packet {
        src: Some(src),
        ..Packet::new_tcp(family_of(&src), dport)
    }
}

fn decided_rule(explanation: &Explanation) -> &RuleRef {
    match &explanation.decided_by {
        Decision::Rule(rule) => rule,
        other => panic!("expected a rule to decide, got {other}"),
    }
}

fn established() -> Vec<Rule> {
    vec![Rule {
        matches: Matches {
            state: vec![CtState::Established, CtState::Related],
            ..Matches::default()
        },
        action: Action::Accept,
        comment: None,
        origin: None,
    }]
}

#[test]
fn an_unmatched_packet_meets_the_policy() {
    let plan = ipv4(filter(staged(
        Hook::Input,
        vec![(Stage::Allow, vec![rule(tcp_dport(80), Action::Accept, 1)])],
    )));
    let answer = explain(&plan, &syn_from("192.0.2.9", 23), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Drop);
    assert_eq!(
        answer.decided_by.to_string(),
        "policy DROP of INPUT (baseline)"
    );
    assert_eq!(
        answer.path,
        ["filter INPUT", "FWS-INPUT", "FWS-INPUT-ALLOW"]
    );
}

#[test]
fn a_policy_call_is_named_and_a_missing_policy_is_the_kernels() {
    let mut table = filter(Vec::new());
    table.policies.insert(
        Hook::Input,
        ChainPolicy {
            policy: Policy::Accept,
            origin: Some(origin(4)),
        },
    );
    table.policies.remove(&Hook::Output);
    let plan = ipv4(table);
    let input = explain(&plan, &syn_from("192.0.2.9", 23), Hook::Input);
    assert_eq!(input.verdict, Verdict::Accept);
    assert_eq!(
        input.decided_by.to_string(),
        "policy ACCEPT of INPUT (fw.rhai:4:1)"
    );
    let output = explain(&plan, &syn_from("192.0.2.9", 23), Hook::Output);
    assert_eq!(output.verdict, Verdict::Accept);
    assert_eq!(
        output.decided_by,
        Decision::Policy {
            table: Table::Filter,
            hook: Hook::Output,
            policy: Policy::Accept,
            source: PolicySource::KernelDefault,
        }
    );
}

#[test]
fn a_block_beats_an_earlier_allow_by_stage() {
    // allow_tcp(80) on line 1, block() on line 2: the deny stage comes first.
    let plan = ipv4(filter(staged(
        Hook::Input,
        vec![
            (
                Stage::Deny,
                vec![rule(from("198.51.100.0/24"), Action::Drop, 2)],
            ),
            (Stage::Allow, vec![rule(tcp_dport(80), Action::Accept, 1)]),
        ],
    )));
    let blocked = explain(&plan, &syn_from("198.51.100.1", 80), Hook::Input);
    assert_eq!(blocked.verdict, Verdict::Drop);
    assert_eq!(
        blocked.decided_by.to_string(),
        "FWS-INPUT-DENY rule 1 (fw.rhai:2:1): -s 198.51.100.0/24 -j DROP"
    );
    assert_eq!(
        blocked.path,
        ["filter INPUT", "FWS-INPUT", "FWS-INPUT-DENY"]
    );
    let other = explain(&plan, &syn_from("192.0.2.9", 80), Hook::Input);
    assert_eq!(other.verdict, Verdict::Accept);
    assert_eq!(
        decided_rule(&other).text,
        "-p tcp -m tcp --dport 80 -j ACCEPT"
    );
    assert_eq!(decided_rule(&other).index, 1);
    assert_eq!(decided_rule(&other).chain, "FWS-INPUT-ALLOW");
}

#[test]
fn reject_is_its_own_verdict() {
    let plan = ipv4(filter(staged(
        Hook::Input,
        vec![(Stage::Deny, vec![rule(tcp_dport(113), Action::Reject, 3)])],
    )));
    let answer = explain(&plan, &syn_from("192.0.2.9", 113), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Reject);
}

#[test]
fn jumps_enter_user_chains_and_return_comes_back() {
    // FWS-INPUT-DENY jumps to FWS-TRUSTED, which RETURNs for the office and
    // drops the rest of 10/8; the allow stage then decides.
    let mut chains = staged(
        Hook::Input,
        vec![
            (
                Stage::Deny,
                vec![rule(
                    from("10.0.0.0/8"),
                    Action::Jump {
                        chain: "FWS-TRUSTED".into(),
                    },
                    5,
                )],
            ),
            (Stage::Allow, vec![rule(tcp_dport(22), Action::Accept, 6)]),
        ],
    );
    chains.push(ChainPlan {
        name: "FWS-TRUSTED".into(),
        hook: Hook::Input,
        stage: None,
        rules: vec![
            rule(from("10.1.0.0/16"), Action::Return, 7),
            rule(Matches::default(), Action::Drop, 8),
        ],
    });
    let plan = ipv4(filter(chains));

    let office = explain(&plan, &syn_from("10.1.2.3", 22), Hook::Input);
    assert_eq!(office.verdict, Verdict::Accept);
    assert_eq!(
        office.path,
        [
            "filter INPUT",
            "FWS-INPUT",
            "FWS-INPUT-DENY",
            "FWS-TRUSTED",
            "FWS-INPUT-ALLOW"
        ]
    );
    let lab = explain(&plan, &syn_from("10.9.2.3", 22), Hook::Input);
    assert_eq!(lab.verdict, Verdict::Drop);
    assert_eq!(decided_rule(&lab).chain, "FWS-TRUSTED");
    assert_eq!(decided_rule(&lab).index, 2);
    let outside = explain(&plan, &syn_from("192.0.2.9", 22), Hook::Input);
    assert_eq!(outside.verdict, Verdict::Accept);
    assert!(!outside.path.contains(&"FWS-TRUSTED".to_string()));
}

#[test]
fn return_ends_the_stage_chain_early() {
    let plan = ipv4(filter(staged(
        Hook::Input,
        vec![(
            Stage::Allow,
            vec![
                rule(from("192.0.2.0/24"), Action::Return, 1),
                rule(tcp_dport(80), Action::Accept, 2),
            ],
        )],
    )));
    let answer = explain(&plan, &syn_from("192.0.2.9", 80), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Drop);
    assert!(matches!(answer.decided_by, Decision::Policy { .. }));
}

#[test]
fn a_foreign_jump_is_assumed_to_return() {
    let plan = ipv4(filter(staged(
        Hook::Input,
        vec![
            (
                Stage::Deny,
                vec![rule(
                    tcp_dport(22),
                    Action::Jump {
                        chain: "f2b-sshd".into(),
                    },
                    1,
                )],
            ),
            (Stage::Allow, vec![rule(tcp_dport(22), Action::Accept, 2)]),
        ],
    )));
    let answer = explain(&plan, &syn_from("192.0.2.9", 22), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Accept);
    assert!(answer.notes.iter().any(|n| n.contains(
        "FWS-INPUT-DENY rule 1 jumps to foreign chain `f2b-sshd`, which cannot be followed \
         offline: assumed it returns"
    )));
}

#[test]
fn each_family_has_its_own_rules() {
    let v4 = filter(staged(
        Hook::Input,
        vec![(
            Stage::Allow,
            vec![rule(
                Matches {
                    src: Some("203.0.113.7/32".parse().unwrap()),
                    ..tcp_dport(22)
                },
                Action::Accept,
                1,
            )],
        )],
    ));
    let v6 = filter(staged(
        Hook::Input,
        vec![(
            Stage::Allow,
            vec![rule(
                Matches {
                    src: Some("2001:db8:7::/48".parse().unwrap()),
                    ..tcp_dport(22)
                },
                Action::Accept,
                1,
            )],
        )],
    ));
    let plan = plan_of(vec![
        (Family::Ipv4, Table::Filter, v4),
        (Family::Ipv6, Table::Filter, v6),
    ]);
    let accepted = |src| explain(&plan, &syn_from(src, 22), Hook::Input).verdict;
    assert_eq!(accepted("203.0.113.7"), Verdict::Accept);
    assert_eq!(accepted("203.0.113.8"), Verdict::Drop);
    assert_eq!(accepted("2001:db8:7:1::5"), Verdict::Accept);
    assert_eq!(accepted("2001:db8:8::5"), Verdict::Drop);
    let answer = explain(&plan, &syn_from("2001:db8:7::1", 22), Hook::Input);
    assert_eq!(answer.family, Family::Ipv6);
}

#[test]
fn a_family_the_plan_leaves_alone_accepts() {
    let plan = ipv4(filter(Vec::new()));
    let answer = explain(&plan, &syn_from("2001:db8::1", 22), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Accept);
    assert!(answer.path.is_empty());
    assert!(matches!(
        answer.decided_by,
        Decision::Policy {
            source: PolicySource::KernelDefault,
            ..
        }
    ));
}

#[test]
fn a_missing_source_is_owned_up_to() {
    let plan = ipv4(filter(staged(
        Hook::Input,
        vec![
            (
                Stage::Deny,
                vec![
                    rule(from("198.51.100.0/24"), Action::Drop, 1),
                    rule(from("198.51.101.0/24"), Action::Drop, 2),
                ],
            ),
            (Stage::Allow, vec![rule(tcp_dport(80), Action::Accept, 3)]),
        ],
    )));
    let answer = explain(&plan, &Packet::new_tcp(Family::Ipv4, 80), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Accept);
    assert_eq!(
        answer.notes,
        [
            "no `--src` given: taken as an address no rule names, so FWS-INPUT-DENY rule 1 \
          does not match: -s 198.51.100.0/24 -j DROP"
        ]
    );
}

#[test]
fn established_packets_take_the_baseline() {
    let plan = ipv4(filter(staged(
        Hook::Input,
        vec![(Stage::Baseline, established())],
    )));
    let packet = Packet {
        state: CtState::Established,
        transport: Transport::tcp(Some(22), Some(50000), CtState::Established),
        ..syn_from("192.0.2.9", 50000)
    };
    let answer = explain(&plan, &packet, Hook::Input);
    assert_eq!(answer.verdict, Verdict::Accept);
    assert_eq!(
        answer.decided_by.to_string(),
        "FWS-INPUT-BASE rule 1 (baseline): -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
    );
}

#[test]
fn log_continues_and_its_limit_is_noted() {
    let log = rule(
        Matches {
            limit: Some(RateLimit {
                count: 5,
                per: RateUnit::Minute,
                burst: Some(10),
            }),
            ..Matches::default()
        },
        Action::Log {
            prefix: Some("fw: ".into()),
        },
        9,
    );
    let plan = ipv4(filter(staged(Hook::Input, vec![(Stage::Log, vec![log])])));
    let answer = explain(&plan, &syn_from("192.0.2.9", 23), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Drop);
    assert!(matches!(answer.decided_by, Decision::Policy { .. }));
    assert_eq!(
        answer.notes,
        [
            "FWS-INPUT-LOG rule 1: rate limit assumed not yet reached (first packet)",
            "FWS-INPUT-LOG rule 1 logs the packet with prefix \"fw: \"",
        ]
    );
}

#[test]
fn recent_lists_are_taken_as_empty() {
    let recent = |check| Matches {
        recent: Some(Recent {
            list: "fws4-abcd".into(),
            check,
        }),
        state: vec![CtState::New],
        ..tcp_dport(25)
    };
    let plan = ipv4(filter(staged(
        Hook::Input,
        vec![(
            Stage::Limit,
            vec![
                rule(
                    recent(RecentCheck::Update {
                        seconds: 30,
                        hits: 6,
                    }),
                    Action::Drop,
                    1,
                ),
                rule(recent(RecentCheck::Set), Action::Accept, 1),
            ],
        )],
    )));
    let answer = explain(&plan, &syn_from("192.0.2.9", 25), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Accept);
    assert_eq!(decided_rule(&answer).index, 2);
    assert_eq!(
        answer.notes,
        [
            "FWS-INPUT-LIMIT rule 1: recent list `fws4-abcd` assumed empty (first packet), so \
             the source is not over its limit",
            "FWS-INPUT-LIMIT rule 2: records the source in recent list `fws4-abcd`",
        ]
    );
}

/// redirect_tcp(80, 8080) and forward_tcp(2222, "10.0.0.5:22") as the
/// stdlib builds them.
fn nat_plan() -> Plan {
    let nat = TablePlan {
        policies: BTreeMap::new(),
        chains: vec![ChainPlan {
            name: Hook::Prerouting.owned_chain(),
            hook: Hook::Prerouting,
            stage: None,
            rules: vec![
                rule(
                    tcp_dport(80),
                    Action::Redirect {
                        to_port: PortRange::single(8080),
                    },
                    1,
                ),
                rule(
                    tcp_dport(2222),
                    Action::Dnat {
                        to: Endpoint {
                            addr: "10.0.0.5".parse().unwrap(),
                            port: Some(PortRange::single(22)),
                        },
                    },
                    2,
                ),
            ],
        }],
    };
    let mut chains = staged(
        Hook::Input,
        vec![(
            Stage::Allow,
            vec![rule(
                Matches {
                    dnat_from_port: Some(80),
                    ..tcp_dport(8080)
                },
                Action::Accept,
                1,
            )],
        )],
    );
    chains.extend(staged(
        Hook::Forward,
        vec![
            (Stage::Baseline, established()),
            (
                Stage::Allow,
                vec![rule(
                    Matches {
                        dst: Some("10.0.0.5/32".parse().unwrap()),
                        dnat_from_port: Some(2222),
                        ..tcp_dport(22)
                    },
                    Action::Accept,
                    2,
                )],
            ),
        ],
    ));
    plan_of(vec![
        (Family::Ipv4, Table::Filter, filter(chains)),
        (Family::Ipv4, Table::Nat, nat),
    ])
}

#[test]
fn a_redirect_rewrites_the_port_and_the_accept_sees_it() {
    let plan = nat_plan();
    let answer = explain(&plan, &syn_from("192.0.2.9", 80), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Accept);
    assert_eq!(answer.hook, Hook::Input);
    assert_eq!(answer.packet.transport.dport(), Some(8080));
    assert_eq!(answer.packet.dnat_from_port, Some(80));
    assert_eq!(
        answer.path,
        [
            "nat PREROUTING",
            "FWS-PREROUTING",
            "filter INPUT",
            "FWS-INPUT",
            "FWS-INPUT-ALLOW"
        ]
    );
    assert_eq!(
        answer.notes,
        ["nat FWS-PREROUTING rule 1 redirects the connection to port 8080 of this host"]
    );
    // The target port itself is not open: only redirected connections are.
    let direct = explain(&plan, &syn_from("192.0.2.9", 8080), Hook::Input);
    assert_eq!(direct.verdict, Verdict::Drop);
}

#[test]
fn a_dnat_elsewhere_is_decided_by_forward() {
    let plan = nat_plan();
    let answer = explain(&plan, &syn_from("192.0.2.9", 2222), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Accept);
    assert_eq!(answer.hook, Hook::Forward);
    assert_eq!(answer.packet.dst, Some("10.0.0.5".parse().unwrap()));
    assert_eq!(decided_rule(&answer).chain, "FWS-FORWARD-ALLOW");
    assert!(answer
        .notes
        .iter()
        .any(|n| n.contains("FORWARD decides, not INPUT")));
    // Asked about FORWARD directly, the same happens without the detour note.
    let forwarded = explain(&plan, &syn_from("192.0.2.9", 2222), Hook::Forward);
    assert_eq!(forwarded.verdict, Verdict::Accept);
    assert_eq!(forwarded.hook, Hook::Forward);
}

#[test]
fn a_redirect_asked_about_in_forward_is_decided_by_input() {
    let answer = explain(&nat_plan(), &syn_from("192.0.2.9", 80), Hook::Forward);
    assert_eq!(answer.hook, Hook::Input);
    assert_eq!(answer.verdict, Verdict::Accept);
}

#[test]
fn nat_only_sees_new_connections() {
    let packet = Packet {
        state: CtState::Established,
        ..syn_from("192.0.2.9", 2222)
    };
    let answer = explain(&nat_plan(), &packet, Hook::Input);
    assert_eq!(answer.hook, Hook::Input);
    assert!(!answer.path.contains(&"nat PREROUTING".to_string()));
}

#[test]
fn mangle_can_drop_before_filter() {
    let mangle = TablePlan {
        policies: BTreeMap::new(),
        chains: vec![ChainPlan {
            name: Hook::Prerouting.owned_chain(),
            hook: Hook::Prerouting,
            stage: None,
            rules: vec![rule(from("192.0.2.0/24"), Action::Drop, 1)],
        }],
    };
    let plan = plan_of(vec![
        (Family::Ipv4, Table::Filter, filter(Vec::new())),
        (Family::Ipv4, Table::Mangle, mangle),
    ]);
    let answer = explain(&plan, &syn_from("192.0.2.9", 22), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Drop);
    assert_eq!(
        decided_rule(&answer).location(),
        "mangle FWS-PREROUTING rule 1"
    );
}

#[test]
fn a_loop_of_jumps_ends() {
    let looping = |name: &str, to: &str| ChainPlan {
        name: name.into(),
        hook: Hook::Input,
        stage: None,
        rules: vec![jump(to)],
    };
    let plan = ipv4(filter(vec![
        looping("FWS-INPUT", "FWS-A"),
        looping("FWS-A", "FWS-INPUT"),
    ]));
    let answer = explain(&plan, &syn_from("192.0.2.9", 22), Hook::Input);
    assert_eq!(answer.verdict, Verdict::Drop);
    assert!(answer.notes[0].contains("a loop iptables would refuse"));
}

/// The guard's reading of a packet that does not say its interface or its
/// source port.
fn worst(plan: &Plan, packet: &Packet) -> Explanation {
    explain_as(
        plan,
        packet,
        Hook::Input,
        Reading::Pessimistic(Rates::FirstPacket),
    )
}

fn on_eth0(matches: Matches) -> Matches {
    Matches {
        iface: Some("eth0".into()),
        ..matches
    }
}

#[test]
fn read_pessimistically_an_accept_that_may_not_apply_is_passed_over() {
    let plan = ipv4(filter(staged(
        Hook::Input,
        vec![(
            Stage::Allow,
            vec![rule(on_eth0(tcp_dport(22)), Action::Accept, 1)],
        )],
    )));
    let packet = syn_from("192.0.2.9", 22);
    assert_eq!(explain(&plan, &packet, Hook::Input).verdict, Verdict::Drop);
    let answer = worst(&plan, &packet);
    assert_eq!(answer.verdict, Verdict::Drop);
    assert_eq!(
        answer.decided_by.to_string(),
        "policy DROP of INPUT (baseline)"
    );
    assert_eq!(answer.doubts.len(), 1);
    assert_eq!(answer.doubts[0].rule.location(), "FWS-INPUT-ALLOW rule 1");
    assert_eq!(
        answer.doubts[0].kind,
        DoubtKind::MayNotMatch(vec![Assumption::Unspecified(Field::InIface)])
    );
    // Told the interface, it is certain either way.
    let from_eth0 = Packet {
        in_iface: Some("eth0".into()),
        ..packet
    };
    let certain = worst(&plan, &from_eth0);
    assert_eq!(certain.verdict, Verdict::Accept);
    assert!(certain.doubts.is_empty());
}

#[test]
fn read_pessimistically_a_drop_that_may_apply_decides() {
    let plan = ipv4(filter(staged(
        Hook::Input,
        vec![
            (
                Stage::Deny,
                vec![rule(on_eth0(tcp_dport(22)), Action::Drop, 1)],
            ),
            (Stage::Allow, vec![rule(tcp_dport(22), Action::Accept, 2)]),
        ],
    )));
    let packet = syn_from("192.0.2.9", 22);
    let typical = explain(&plan, &packet, Hook::Input);
    assert_eq!(typical.verdict, Verdict::Accept);
    assert!(
        typical.doubts.is_empty(),
        "the typical reading has no doubts"
    );
    let answer = worst(&plan, &packet);
    assert_eq!(answer.verdict, Verdict::Drop);
    assert_eq!(decided_rule(&answer).location(), "FWS-INPUT-DENY rule 1");
    assert_eq!(
        answer.doubts,
        [Doubt {
            rule: decided_rule(&answer).clone(),
            kind: DoubtKind::MayMatch(vec![Assumption::Unspecified(Field::InIface)]),
        }]
    );
}

#[test]
fn read_pessimistically_a_return_that_may_apply_splits_the_walk() {
    // FWS-CHECK returns packets from eth0 and accepts the rest; the caller
    // drops what comes back. Some packets are dropped.
    let mut chains = staged(
        Hook::Input,
        vec![(
            Stage::Deny,
            vec![
                rule(
                    Matches::default(),
                    Action::Jump {
                        chain: "FWS-CHECK".into(),
                    },
                    1,
                ),
                rule(tcp_dport(22), Action::Drop, 2),
            ],
        )],
    );
    chains.push(ChainPlan {
        name: "FWS-CHECK".into(),
        hook: Hook::Input,
        stage: None,
        rules: vec![
            rule(on_eth0(Matches::default()), Action::Return, 3),
            rule(Matches::default(), Action::Accept, 4),
        ],
    });
    let plan = ipv4(filter(chains));
    let packet = syn_from("192.0.2.9", 22);
    assert_eq!(
        explain(&plan, &packet, Hook::Input).verdict,
        Verdict::Accept
    );
    let answer = worst(&plan, &packet);
    assert_eq!(answer.verdict, Verdict::Drop);
    assert_eq!(decided_rule(&answer).location(), "FWS-INPUT-DENY rule 2");
    assert_eq!(answer.doubts[0].rule.location(), "FWS-CHECK rule 1");
}

#[test]
fn read_pessimistically_a_jump_that_may_not_apply_cannot_accept() {
    let mut chains = staged(
        Hook::Input,
        vec![(
            Stage::Allow,
            vec![rule(
                on_eth0(Matches::default()),
                Action::Jump {
                    chain: "FWS-SSH".into(),
                },
                1,
            )],
        )],
    );
    chains.push(ChainPlan {
        name: "FWS-SSH".into(),
        hook: Hook::Input,
        stage: None,
        rules: vec![rule(tcp_dport(22), Action::Accept, 2)],
    });
    let plan = ipv4(filter(chains));
    let answer = worst(&plan, &syn_from("192.0.2.9", 22));
    assert_eq!(answer.verdict, Verdict::Drop);
    assert!(matches!(answer.decided_by, Decision::Policy { .. }));
    assert_eq!(answer.doubts[0].rule.location(), "FWS-INPUT-ALLOW rule 1");
    assert!(matches!(answer.doubts[0].kind, DoubtKind::MayNotMatch(_)));
}

#[test]
fn read_pessimistically_a_target_outside_the_plan_may_drop() {
    for target in ["NFQUEUE", "f2b-sshd"] {
        let plan = ipv4(filter(staged(
            Hook::Input,
            vec![
                (
                    Stage::Deny,
                    vec![rule(
                        tcp_dport(22),
                        Action::Jump {
                            chain: target.into(),
                        },
                        1,
                    )],
                ),
                (Stage::Allow, vec![rule(tcp_dport(22), Action::Accept, 2)]),
            ],
        )));
        let packet = syn_from("192.0.2.9", 22);
        assert_eq!(
            explain(&plan, &packet, Hook::Input).verdict,
            Verdict::Accept
        );
        let answer = worst(&plan, &packet);
        assert_eq!(answer.verdict, Verdict::Drop, "{target}");
        assert_eq!(decided_rule(&answer).location(), "FWS-INPUT-DENY rule 1");
        assert_eq!(
            answer.doubts[0].kind,
            DoubtKind::CannotFollow(target.into())
        );
    }
}

#[test]
fn read_pessimistically_a_redirect_that_may_apply_is_a_rewrite() {
    let plan = nat_plan();
    let answer = worst(&plan, &syn_from("192.0.2.9", 80));
    let rewrite = answer.rewritten_by.expect("the redirect is reported");
    assert_eq!(rewrite.rule.location(), "nat FWS-PREROUTING rule 1");
    assert!(rewrite.doubts.is_empty(), "it certainly applies");
    let typical = explain(&plan, &syn_from("192.0.2.9", 80), Hook::Input);
    assert_eq!(
        typical.rewritten_by.map(|r| r.action),
        Some(Action::Redirect {
            to_port: PortRange::single(8080)
        })
    );
    assert_eq!(worst(&plan, &syn_from("192.0.2.9", 22)).rewritten_by, None);
}

/// A plan whose log stage holds `n` rules that all match a packet to port
/// 22, each making a note of its own.
fn logging_plan(n: u16) -> Plan {
    let logs = (0..n)
        .map(|i| {
            rule(
                Matches {
                    dport: Some(PortRange {
                        first: 1,
                        last: 22 + i,
                    }),
                    ..tcp_dport(22)
                },
                Action::Log { prefix: None },
                usize::from(i) + 1,
            )
        })
        .collect();
    ipv4(filter(staged(Hook::Input, vec![(Stage::Log, logs)])))
}

fn work(plan: &Plan, reading: Reading) -> (Explanation, usize) {
    let packet = syn_from("192.0.2.9", 22);
    walk::Walk::new(plan.family(Family::Ipv4), packet, reading).run_counted(Hook::Input)
}

#[test]
fn the_walk_is_linear_in_the_rules() {
    // Counted, not timed: four times the rules is four times the work (the
    // quadratic walk this replaced compared every note with every other).
    for reading in [Reading::Typical, Reading::Pessimistic(Rates::FirstPacket)] {
        let (small, small_work) = work(&logging_plan(500), reading);
        let (big, big_work) = work(&logging_plan(2000), reading);
        assert_eq!(small.notes.len(), 500);
        assert_eq!(big.notes.len(), 2000);
        assert!(
            big_work <= 4 * small_work,
            "{reading:?}: 500 rules cost {small_work}, 2000 cost {big_work}"
        );
    }
}

#[test]
fn a_chain_jumped_to_again_is_not_walked_again() {
    // 1,000 rules jump to one chain of 1,000 rules: the kernel walks it
    // 1,000 times per packet, the evaluator once.
    let jumps = (0..1000)
        .map(|i| {
            rule(
                Matches::default(),
                Action::Jump {
                    chain: "FWS-SHARED".into(),
                },
                i,
            )
        })
        .collect();
    let mut chains = staged(Hook::Input, vec![(Stage::Allow, jumps)]);
    chains.push(ChainPlan {
        name: "FWS-SHARED".into(),
        hook: Hook::Input,
        stage: None,
        rules: (0..1000)
            .map(|i| rule(tcp_dport(1000 + i), Action::Accept, usize::from(i)))
            .collect(),
    });
    let plan = ipv4(filter(chains));
    for reading in [Reading::Typical, Reading::Pessimistic(Rates::FirstPacket)] {
        let (answer, work) = work(&plan, reading);
        assert_eq!(answer.verdict, Verdict::Drop);
        assert!(work < 5_000, "{reading:?}: {work} steps for 2,000 rules");
    }
}

#[test]
fn the_overall_verdict_is_the_strictest() {
    let plan = plan_of(vec![
        (Family::Ipv4, Table::Filter, filter(Vec::new())),
        (
            Family::Ipv6,
            Table::Filter,
            TablePlan {
                policies: BTreeMap::from([(Hook::Input, baseline_policy(Policy::Accept))]),
                chains: Vec::new(),
            },
        ),
    ]);
    let answers: Vec<_> = Family::ALL
        .into_iter()
        .map(|family| explain(&plan, &Packet::new_tcp(family, 22), Hook::Input))
        .collect();
    assert_eq!(answers[0].verdict, Verdict::Drop);
    assert_eq!(answers[1].verdict, Verdict::Accept);
    assert_eq!(overall_verdict(&answers), Some(Verdict::Drop));
    assert_eq!(overall_verdict(&[]), None);
}
