//! Which addresses become an owned ipset, and what it is called: more than
//! eight addresses of one family in one rule's `src` or `dst` are one set
//! matched by one rule; its name follows from where and how it is used,
//! never from its entries. No kernel needed.

use std::path::Path;

use fwscript::netfilter::{Family, Table};
use fwscript::plan::{Plan, Rule, SetPlan, SetSource};
use fwscript::script;
use fwscript::transaction;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn evaluate(dir: &Path, script: &str) -> Plan {
    write(dir, "fw.rhai", script);
    script::evaluate(&dir.join("fw.rhai")).unwrap_or_else(|e| panic!("{e}"))
}

fn quoted(addresses: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = addresses.into_iter().map(|a| format!("\"{a}\"")).collect();
    format!("[{}]", items.join(", "))
}

fn v4(n: u32) -> Vec<String> {
    (1..=n)
        .map(|i| format!("198.51.{}.{}", i / 250, i % 250 + 1))
        .collect()
}

fn v6(n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("2001:db8:bad::{i:x}")).collect()
}

fn chain<'a>(plan: &'a Plan, family: Family, name: &str) -> &'a [Rule] {
    plan.family(family).unwrap().tables[&Table::Filter]
        .chain(name)
        .map_or(&[], |c| &c.rules)
}

fn sets(plan: &Plan, family: Family) -> &[SetPlan] {
    &plan.family(family).unwrap().sets
}

/// `(rule id, set names)` of every rule rendered, both families.
fn rendered(plan: &Plan) -> Vec<String> {
    transaction::desired(plan)
        .iter()
        .flat_map(|r| r.tables.values())
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .map(|r| r.spec.clone())
        .collect()
}

#[test]
fn more_than_eight_addresses_of_a_family_are_one_set() {
    let dir = tempfile::tempdir().unwrap();
    let plan = evaluate(dir.path(), &format!("block({});\n", quoted(v4(8))));
    assert_eq!(chain(&plan, Family::Ipv4, "FWS-INPUT-DENY").len(), 8);
    assert!(sets(&plan, Family::Ipv4).is_empty());

    let plan = evaluate(dir.path(), &format!("block({});\n", quoted(v4(9))));
    let deny = chain(&plan, Family::Ipv4, "FWS-INPUT-DENY");
    assert_eq!(deny.len(), 1);
    let set = &sets(&plan, Family::Ipv4)[0];
    assert_eq!(set.entries.len(), 9);
    assert_eq!(deny[0].matches.src_set.as_ref().unwrap().name, set.name);
    assert_eq!(deny[0].matches.src, None);
    assert!(
        set.name.starts_with("fws-") && set.name.len() <= 31,
        "{}",
        set.name
    );
    assert!(matches!(&set.source, SetSource::Call(o) if o.line == 1));
    // The rule matches it in the kernel's words.
    assert!(rendered(&plan)
        .iter()
        .any(|spec| spec.starts_with(&format!("-m set --match-set {} src ", set.name))));
}

#[test]
fn families_are_counted_apart() {
    let dir = tempfile::tempdir().unwrap();
    // 20 IPv4 addresses are a set; 3 IPv6 ones stay rules.
    let mut mixed = v4(20);
    mixed.extend(v6(3));
    let plan = evaluate(dir.path(), &format!("block({});\n", quoted(mixed)));
    assert_eq!(sets(&plan, Family::Ipv4).len(), 1);
    assert!(sets(&plan, Family::Ipv6).is_empty());
    assert_eq!(chain(&plan, Family::Ipv4, "FWS-INPUT-DENY").len(), 1);
    assert_eq!(chain(&plan, Family::Ipv6, "FWS-INPUT-DENY").len(), 3);

    // Both over the line: one set per family, each its family's own.
    let mut both = v6(12);
    both.extend(v4(30));
    let plan = evaluate(dir.path(), &format!("block({});\n", quoted(both)));
    let (four, six) = (&sets(&plan, Family::Ipv4)[0], &sets(&plan, Family::Ipv6)[0]);
    assert_eq!((four.entries.len(), six.entries.len()), (30, 12));
    assert_eq!(four.family, Family::Ipv4);
    assert_eq!(six.family, Family::Ipv6);
    assert_ne!(four.name, six.name);
    assert!(six.entries.iter().all(|n| n.addr().is_ipv6()));
}

#[test]
fn duplicates_count_once_and_a_slash_zero_stays_a_rule() {
    let dir = tempfile::tempdir().unwrap();
    // Twelve items, seven addresses: rules, not a set.
    let mut repeated = v4(7);
    repeated.extend(v4(5));
    let plan = evaluate(dir.path(), &format!("block({});\n", quoted(repeated)));
    assert!(sets(&plan, Family::Ipv4).is_empty());

    // Nine addresses, each twice, and host bits cleared into one of them.
    let mut nine = v4(9);
    nine.extend(v4(9));
    nine.push("198.51.0.2/32".into());
    let plan = evaluate(dir.path(), &format!("block({});\n", quoted(nine)));
    assert_eq!(sets(&plan, Family::Ipv4)[0].entries.len(), 9);

    // hash:net cannot hold a /0: it stays a rule of its own beside the set.
    let mut everyone = v4(10);
    everyone.insert(3, "0.0.0.0/0".into());
    let plan = evaluate(dir.path(), &format!("block({});\n", quoted(everyone)));
    let deny = chain(&plan, Family::Ipv4, "FWS-INPUT-DENY");
    assert_eq!(deny.len(), 2);
    assert!(deny[0].matches.src_set.is_some());
    assert_eq!(deny[1].matches.src.unwrap().prefix_len(), 0);
    assert!(sets(&plan, Family::Ipv4)[0]
        .entries
        .iter()
        .all(|n| n.prefix_len() > 0));
}

#[test]
fn a_list_file_of_100_000_addresses_is_one_rule_and_one_set_named_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let list: String = (0..100_000u32)
        .map(|i| format!("10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    write(
        dir.path(),
        "lists/blocklist.txt",
        &format!("{list}2001:db8::/48\n"),
    );
    let plan = evaluate(
        dir.path(),
        "allow_tcp(22);\nblock(address_list(\"lists/blocklist.txt\"));\n",
    );
    assert_eq!(chain(&plan, Family::Ipv4, "FWS-INPUT-DENY").len(), 1);
    assert_eq!(chain(&plan, Family::Ipv6, "FWS-INPUT-DENY").len(), 1);
    let set = &sets(&plan, Family::Ipv4)[0];
    assert_eq!(set.entries.len(), 100_000);
    assert_eq!(set.source, SetSource::List("lists/blocklist.txt".into()));
    assert!(plan.rule_count() < 40, "{}", plan.rule_count());
    // The records and `render` hold the set first, then the rules.
    let text = transaction::rules_text(&transaction::desired(&plan));
    assert!(text.starts_with(&format!(
        "# ipset\ncreate {} hash:net family inet hashsize 65536 maxelem 262144\nadd {} 10.0.0.0\n",
        set.name, set.name
    )));
    assert!(text.contains("\n# ipv4\n*filter\n"));

    // A list the script changed first is not the file's any more.
    write(dir.path(), "lists/small.txt", &v4(20).join("\n"));
    let plan = evaluate(
        dir.path(),
        "let l = address_list(\"lists/small.txt\");\nblock(l.filter(|a| a != \"198.51.0.2\"));\n",
    );
    let set = &sets(&plan, Family::Ipv4)[0];
    assert_eq!(set.entries.len(), 19);
    assert!(
        matches!(&set.source, SetSource::Call(o) if o.line == 2),
        "{:?}",
        set.source
    );
}

#[test]
fn a_set_keeps_its_name_and_its_rule_its_id_when_entries_change() {
    let dir = tempfile::tempdir().unwrap();
    let script = "allow_tcp([80, 443], #{ from: address_list(\"lists/partners.txt\") });\n\
                  block(address_list(\"lists/block.txt\"));\n";
    write(dir.path(), "lists/partners.txt", &v4(20).join("\n"));
    write(dir.path(), "lists/block.txt", &v6(30).join("\n"));
    let before = evaluate(dir.path(), script);
    let mut partners = v4(20);
    partners.remove(4);
    partners.push("203.0.113.200".into());
    write(dir.path(), "lists/partners.txt", &partners.join("\n"));
    write(dir.path(), "lists/block.txt", &v6(3000).join("\n"));
    let after = evaluate(dir.path(), script);
    for family in Family::ALL {
        let names = |plan: &Plan| -> Vec<String> {
            sets(plan, family).iter().map(|s| s.name.clone()).collect()
        };
        assert_eq!(names(&before), names(&after), "{family}");
    }
    assert_ne!(
        sets(&before, Family::Ipv4)[0].entries,
        sets(&after, Family::Ipv4)[0].entries
    );
    assert_eq!(
        rendered(&before),
        rendered(&after),
        "every rule keeps its id"
    );
    // Two ports, two rules, one set between them.
    let allow = chain(&after, Family::Ipv4, "FWS-INPUT-ALLOW");
    assert_eq!(allow.len(), 2);
    assert_eq!(sets(&after, Family::Ipv4).len(), 1);
    // Another port keeps the set too.
    let wider = evaluate(dir.path(), &script.replace("[80, 443]", "[80, 443, 8443]"));
    assert_eq!(
        sets(&wider, Family::Ipv4)[0].name,
        sets(&after, Family::Ipv4)[0].name
    );
}

#[test]
fn names_differ_by_use_direction_and_occurrence() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "lists/l.txt", &v4(20).join("\n"));
    let plan = evaluate(
        dir.path(),
        "let l = address_list(\"lists/l.txt\");\n\
         block(l);\n\
         block(l);\n\
         allow_from(l);\n\
         rule(#{ chain: \"output\", dst: l, action: \"reject\" });\n\
         rule(#{ chain: \"forward\", src: l, dst: l, action: \"accept\" });\n",
    );
    let names: Vec<&str> = sets(&plan, Family::Ipv4)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "{names:?}");
    assert!(names.iter().all(|n| n.len() == 16 && n.starts_with("fws-")));
    // Every one of them came from the list file.
    assert!(sets(&plan, Family::Ipv4)
        .iter()
        .all(|s| s.source == SetSource::List("lists/l.txt".into())));
    // The same script, evaluated again, names them the same.
    let again = evaluate(
        dir.path(),
        &std::fs::read_to_string(dir.path().join("fw.rhai")).unwrap(),
    );
    assert_eq!(sets(&again, Family::Ipv4), sets(&plan, Family::Ipv4));
}
