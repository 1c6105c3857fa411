//! Evaluator tests: scripts in, plans out, no kernel.

use super::evaluate;
use crate::netfilter::{Family, Hook, Policy, Table};
use crate::plan::{Action, ChainPlan, Plan, PortRange, RecentCheck, Stage};

fn eval(text: &str) -> Plan {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fw.rhai");
    std::fs::write(&path, text).expect("write script");
    evaluate(&path).unwrap_or_else(|err| panic!("{err}"))
}

fn chain<'a>(plan: &'a Plan, family: Family, table: Table, name: &str) -> Option<&'a ChainPlan> {
    plan.family(family)?.tables.get(&table)?.chain(name)
}

fn dports(chain: &ChainPlan) -> Vec<u16> {
    chain
        .rules
        .iter()
        .filter_map(|r| r.matches.dport)
        .map(|p| p.first)
        .collect()
}

#[test]
fn the_baseline_alone_drops_input_and_keeps_ipv6_working() {
    let plan = eval("");
    for family in Family::ALL {
        let filter = &plan.family(family).unwrap().tables[&Table::Filter];
        assert_eq!(filter.policies[&Hook::Input].policy, Policy::Drop);
        assert_eq!(filter.policies[&Hook::Forward].policy, Policy::Drop);
        assert_eq!(filter.policies[&Hook::Output].policy, Policy::Accept);
        let names: Vec<&str> = filter.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "FWS-INPUT",
                "FWS-INPUT-BASE",
                "FWS-FORWARD",
                "FWS-FORWARD-BASE"
            ]
        );
    }
    let base6 = chain(&plan, Family::Ipv6, Table::Filter, "FWS-INPUT-BASE").unwrap();
    let icmp: Vec<&str> = base6
        .rules
        .iter()
        .filter_map(|r| r.matches.icmp_type.as_ref())
        .map(|t| t.name.as_str())
        .collect();
    for needed in [
        "neighbour-solicitation",
        "neighbour-advertisement",
        "router-advertisement",
        "packet-too-big",
    ] {
        assert!(icmp.contains(&needed), "IPv6 baseline lacks {needed}");
    }
}

#[test]
fn block_lands_before_allow_whatever_the_script_order() {
    let plan = eval("allow_tcp(22);\nblock(\"198.51.100.0/24\");\n");
    let entry = chain(&plan, Family::Ipv4, Table::Filter, "FWS-INPUT").unwrap();
    let order: Vec<String> = entry
        .rules
        .iter()
        .map(|r| match &r.action {
            Action::Jump { chain } => chain.clone(),
            other => panic!("entry chain holds {other:?}"),
        })
        .collect();
    assert_eq!(
        order,
        ["FWS-INPUT-DENY", "FWS-INPUT-BASE", "FWS-INPUT-ALLOW"]
    );
    // The IPv4 block has no IPv6 half.
    assert!(chain(&plan, Family::Ipv6, Table::Filter, "FWS-INPUT-DENY").is_none());
}

#[test]
fn addresses_split_the_rule_per_family() {
    let plan = eval("ssh_from([\"203.0.113.7\", \"2001:db8::/32\", \"198.51.100.9\"]);\n");
    let v4 = chain(&plan, Family::Ipv4, Table::Filter, "FWS-INPUT-ALLOW").unwrap();
    let v6 = chain(&plan, Family::Ipv6, Table::Filter, "FWS-INPUT-ALLOW").unwrap();
    let sources = |c: &ChainPlan| {
        c.rules
            .iter()
            .map(|r| r.matches.src.unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(sources(v4), ["203.0.113.7/32", "198.51.100.9/32"]);
    assert_eq!(sources(v6), ["2001:db8::/32"]);
    assert_eq!(dports(v4), [22, 22]);
}

#[test]
fn ports_expand_per_port_and_keep_ranges_whole() {
    let plan = eval("allow_tcp([80, \"https\", \"6000:6010\"]);\nallow_service(\"dns\");\n");
    let allow = chain(&plan, Family::Ipv4, Table::Filter, "FWS-INPUT-ALLOW").unwrap();
    let ports: Vec<PortRange> = allow.rules.iter().filter_map(|r| r.matches.dport).collect();
    assert_eq!(
        ports[2],
        PortRange {
            first: 6000,
            last: 6010
        }
    );
    assert_eq!(dports(allow), [80, 443, 6000, 53, 53]);
    let protos: Vec<&str> = allow
        .rules
        .iter()
        .map(|r| r.matches.proto.unwrap().script_name())
        .collect();
    assert_eq!(protos, ["tcp", "tcp", "tcp", "tcp", "udp"]);
}

#[test]
fn every_rule_remembers_the_users_call_site() {
    let plan = eval("// header\n\n  allow_tcp(80);\ndrop_scans();\n");
    let allow = chain(&plan, Family::Ipv4, Table::Filter, "FWS-INPUT-ALLOW").unwrap();
    let origin = allow.rules[0].origin.as_ref().unwrap();
    assert_eq!((origin.line, origin.column), (3, 3));
    assert!(origin.file.ends_with("fw.rhai"));
    let deny = chain(&plan, Family::Ipv4, Table::Filter, "FWS-INPUT-DENY").unwrap();
    assert_eq!(deny.rules.len(), 3);
    assert!(
        deny.rules
            .iter()
            .all(|r| r.origin.as_ref().unwrap().line == 4),
        "drop_scans rules point at line 4"
    );
    let base = chain(&plan, Family::Ipv4, Table::Filter, "FWS-INPUT-BASE").unwrap();
    assert!(
        base.rules.iter().all(|r| r.origin.is_none()),
        "baseline rules have no script origin"
    );
}

#[test]
fn limit_tcp_checks_then_counts_in_its_own_stage() {
    let plan = eval("limit_tcp(22, #{ hits: 4, seconds: 60 });\n");
    let limit = chain(&plan, Family::Ipv4, Table::Filter, "FWS-INPUT-LIMIT").unwrap();
    let checks: Vec<&RecentCheck> = limit
        .rules
        .iter()
        .map(|r| &r.matches.recent.as_ref().unwrap().check)
        .collect();
    assert_eq!(
        checks,
        [
            &RecentCheck::Update {
                seconds: 60,
                hits: 4
            },
            &RecentCheck::Set
        ]
    );
    assert_eq!(limit.rules[0].action, Action::Drop);
    assert_eq!(limit.rules[1].action, Action::Accept);
    let lists: Vec<&str> = limit
        .rules
        .iter()
        .map(|r| r.matches.recent.as_ref().unwrap().list.as_str())
        .collect();
    assert_eq!(lists[0], lists[1], "the pair shares one list");
}

#[test]
fn redirect_opens_only_redirected_connections() {
    let plan = eval("redirect_tcp(80, 8080);\n");
    let nat = chain(&plan, Family::Ipv4, Table::Nat, "FWS-PREROUTING").unwrap();
    assert_eq!(
        nat.rules[0].action,
        Action::Redirect {
            to_port: PortRange::single(8080)
        }
    );
    let allow = chain(&plan, Family::Ipv4, Table::Filter, "FWS-INPUT-ALLOW").unwrap();
    assert_eq!(allow.rules[0].matches.dport, Some(PortRange::single(8080)));
    assert_eq!(allow.rules[0].matches.dnat_from_port, Some(80));
}

#[test]
fn policies_and_baseline_switches_apply() {
    let plan = eval("policy(\"output\", \"drop\");\nbaseline(#{ icmp: false, invalid: false });\n");
    let filter = &plan.family(Family::Ipv6).unwrap().tables[&Table::Filter];
    let output = &filter.policies[&Hook::Output];
    assert_eq!(output.policy, Policy::Drop);
    assert_eq!(output.origin.as_ref().unwrap().line, 1);
    let base = filter.chain("FWS-INPUT-BASE").unwrap();
    assert_eq!(base.rules.len(), 2, "only loopback and established stay");
    // A dropping OUTPUT gets loopback and established too.
    assert!(filter.chain("FWS-OUTPUT-BASE").is_some());
}

#[test]
fn modules_resolve_beside_the_script_and_export_constants() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(
        dir.path().join("lib/office.rhai"),
        "export const ADDR = \"203.0.113.7\";\nfn open() { allow_tcp(443); }\n",
    )
    .unwrap();
    let script = dir.path().join("fw.rhai");
    std::fs::write(
        &script,
        "import \"lib/office\" as office;\nssh_from(office::ADDR);\noffice::open();\n",
    )
    .unwrap();
    let plan = evaluate(&script).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        plan.sources.len(),
        2,
        "script and module are both recorded: {:?}",
        plan.sources
    );
    let allow = chain(&plan, Family::Ipv4, Table::Filter, "FWS-INPUT-ALLOW").unwrap();
    assert_eq!(dports(allow), [22, 443]);
    assert!(allow.rules[1]
        .origin
        .as_ref()
        .unwrap()
        .file
        .ends_with("lib/office.rhai"));
}

#[test]
fn forward_tcp_adds_dnat_and_the_forward_accept() {
    let plan = eval("forward_tcp(2222, \"10.0.0.10:22\");\n");
    let nat = chain(&plan, Family::Ipv4, Table::Nat, "FWS-PREROUTING").unwrap();
    assert!(matches!(nat.rules[0].action, Action::Dnat { .. }));
    let forward = chain(
        &plan,
        Family::Ipv4,
        Table::Filter,
        Stage::Allow.chain_name(Hook::Forward).as_str(),
    )
    .unwrap();
    assert_eq!(
        forward.rules[0].matches.dst.unwrap().to_string(),
        "10.0.0.10/32"
    );
    assert_eq!(dports(forward), [22]);
    assert!(
        chain(&plan, Family::Ipv6, Table::Nat, "FWS-PREROUTING").is_none(),
        "an IPv4 target makes an IPv4-only rule"
    );
}
