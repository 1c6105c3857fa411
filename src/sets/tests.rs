use ipnet::IpNet;

use super::diff::{restore_input, temp_name};
use super::live::{parse_headers, parse_owned, parse_save};
use super::*;
use crate::plan::SetSource;

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

/// `count` distinct IPv4 hosts and a few networks, sorted as a set keeps
/// them.
fn entries(count: u32) -> SetEntries {
    let mut nets: Vec<IpNet> = (0..count)
        .map(|i| IpNet::from(std::net::IpAddr::from((0x0a00_0000 + i * 7).to_be_bytes())))
        .collect();
    nets.push(net("192.0.2.0/24"));
    nets.push(net("198.51.0.0/16"));
    nets.sort();
    nets.dedup();
    nets.into()
}

fn wanted(name: &str, family: Family, entries: SetEntries) -> OwnedSet {
    OwnedSet {
        name: name.into(),
        family,
        maxelem: maxelem_for(entries.len()),
        entries,
        source: Some(SetSource::List("lists/blocklist.txt".into())),
    }
}

/// What the kernel would hold after loading `sets` (`ipset save` of it).
fn live(sets: &[&OwnedSet]) -> Vec<LiveSet> {
    parse_save(&restore_file(sets.iter().copied())).unwrap()
}

#[test]
fn maxelem_leaves_room_to_grow() {
    assert_eq!(maxelem_for(0), 65_536);
    assert_eq!(maxelem_for(9), 65_536);
    assert_eq!(maxelem_for(32_768), 65_536);
    assert_eq!(maxelem_for(32_769), 131_072);
    assert_eq!(maxelem_for(100_000), 262_144);
    assert!(maxelem_for(100_000) as usize >= 2 * 100_000);
    assert_eq!(maxelem_for(usize::MAX), u32::MAX);
    assert_eq!(hashsize_for(9), 1024);
    assert_eq!(hashsize_for(100_000), 65_536);
}

#[test]
fn entries_read_as_ipset_prints_them() {
    for (text, want) in [
        ("198.51.100.7", Some("198.51.100.7/32")),
        ("0.0.0.1", Some("0.0.0.1/32")),
        ("255.255.255.255", Some("255.255.255.255/32")),
        ("10.0.0.0/8", Some("10.0.0.0/8")),
        ("10.0.0.0/32", Some("10.0.0.0/32")),
        ("2001:db8::1", Some("2001:db8::1/128")),
        ("2001:db8::/32", Some("2001:db8::/32")),
        // Host bits set, out of range, not an address: not what ipset
        // prints for fwscript's sets.
        ("10.0.0.1/8", None),
        ("256.0.0.1", None),
        ("1.2.3", None),
        ("1.2.3.4.5", None),
        ("1..2.3", None),
        ("1.2.3.4/33", None),
        ("1.2.3.4/", None),
        ("", None),
        ("example.org", None),
        ("10.0.0.0/8,eth0", None),
    ] {
        assert_eq!(parse_entry(text), want.map(net), "{text}");
    }
    // The fast reader and the general one agree on every octet.
    for octet in 0..=255u8 {
        let text = format!("{octet}.{octet}.0.{octet}");
        assert_eq!(
            parse_entry(&text),
            text.parse::<std::net::IpAddr>().ok().map(IpNet::from),
            "{text}"
        );
    }
    assert_eq!(
        entry_text(&net("198.51.100.7/32")).to_string(),
        "198.51.100.7"
    );
    assert_eq!(
        entry_text(&net("2001:db8::/48")).to_string(),
        "2001:db8::/48"
    );
}

#[test]
fn a_rendered_set_reads_back_as_it_was_100_000_entries() {
    let set = wanted("fws-0123456789ab", Family::Ipv4, entries(100_000));
    let text = restore_file([&set]);
    assert_eq!(text.lines().count(), 1 + 100_002);
    assert_eq!(
        text.lines().next().unwrap(),
        "create fws-0123456789ab hash:net family inet hashsize 65536 maxelem 262144"
    );
    assert!(text.contains("\nadd fws-0123456789ab 10.0.0.7\n"));
    assert!(text.contains("\nadd fws-0123456789ab 192.0.2.0/24\n"));
    let back = parse_owned(&text).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].entries, set.entries);
    assert_eq!(back[0].maxelem, 262_144);
    assert_eq!(back[0].family, Family::Ipv4);
    // Nothing to do between them.
    assert!(diff_sets(&live(&[&set]), &[&set]).is_empty());
}

#[test]
fn a_save_is_read_for_fwscripts_sets_only() {
    let save = "create other hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1\n\
                add other 1.2.3.4\n\
                add other 1.2.3.5\n\
                create fws-a hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x2\n\
                add fws-a 10.0.0.0/24\n\
                add fws-a 10.1.1.1\n\
                add fws-a 10.9.0.0/16 nomatch\n\
                create fws-b hash:net family inet6 hashsize 1024 maxelem 65536 timeout 30 bucketsize 12 initval 0x3\n\
                add fws-b 2001:db8::1 timeout 25\n\
                create f2b-sshd hash:ip family inet hashsize 1024 maxelem 65536\n\
                add f2b-sshd 203.0.113.9\n";
    let sets = parse_save(save).unwrap();
    let names: Vec<&str> = sets.iter().map(|s| s.header.name.as_str()).collect();
    assert_eq!(names, ["fws-a", "fws-b"]);
    let a = &sets[0];
    assert_eq!(a.header.kind, "hash:net");
    assert_eq!(a.header.family, Some(Family::Ipv4));
    assert!(a.header.extras.is_empty());
    assert!(a.header.compatible(Family::Ipv4));
    assert!(!a.header.compatible(Family::Ipv6));
    assert_eq!(&a.entries[..], [net("10.0.0.0/24"), net("10.1.1.1/32")]);
    assert_eq!(a.odd, ["10.9.0.0/16 nomatch"]);
    let b = &sets[1];
    assert_eq!(b.header.owner(), Family::Ipv6);
    assert_eq!(b.header.extras, ["timeout 30"]);
    assert_eq!(b.odd, ["2001:db8::1 timeout 25"]);
    for (bad, line) in [
        ("add fws-a 10.0.0.1\n", 1),
        ("create fws-a\n", 1),
        ("create fws-a hash:net family inet\nbogus\n", 2),
    ] {
        assert_eq!(parse_save(bad).unwrap_err().line, line, "{bad}");
    }
}

#[test]
fn headers_give_type_family_size_and_count() {
    let text = "Name: other\nType: hash:ip\nRevision: 6\nHeader: family inet hashsize 1024 maxelem 65536\n\
                Size in memory: 216\nReferences: 0\nNumber of entries: 3\n\n\
                Name: fws-a\nType: hash:net\nRevision: 7\n\
                Header: family inet6 hashsize 1024 maxelem 262144 bucketsize 12 initval 0x90c2ea32\n\
                Size in memory: 1416\nReferences: 1\nNumber of entries: 100000\n";
    let headers = parse_headers(text).unwrap();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].name, "fws-a");
    assert_eq!(headers[0].kind, "hash:net");
    assert_eq!(headers[0].family, Some(Family::Ipv6));
    assert_eq!(headers[0].maxelem, 262_144);
    assert_eq!(headers[0].count, Some(100_000));
    assert!(headers[0].extras.is_empty());
    assert!(parse_headers("Name: fws-a\nNumber of entries: many\n").is_err());
}

#[test]
fn one_address_added_and_one_removed_is_two_lines_of_100_000() {
    let before = entries(100_000);
    let mut after: Vec<IpNet> = before
        .iter()
        .copied()
        .filter(|n| *n != net("10.0.0.7/32"))
        .collect();
    after.push(net("203.0.113.9/32"));
    after.sort();
    let old = wanted("fws-a", Family::Ipv4, before);
    let new = wanted("fws-a", Family::Ipv4, after.into());
    let changes = diff_sets(&live(&[&old]), &[&new]);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].edit,
        SetEdit::UpdateSet {
            added: vec![net("203.0.113.9/32")],
            removed: vec!["10.0.0.7".into()],
        }
    );
    assert_eq!(
        changes[0].to_string(),
        "+1 \u{2212}1 entries in set fws-a (lists/blocklist.txt)"
    );
    let input = restore_input(&changes);
    assert_eq!(input.before, "del fws-a 10.0.0.7\nadd fws-a 203.0.113.9\n");
    assert!(input.after.is_empty());
}

#[test]
fn new_sets_are_made_and_unwanted_ones_destroyed_after() {
    let keep = wanted("fws-keep", Family::Ipv4, entries(20));
    let gone = wanted("fws-gone", Family::Ipv6, vec![net("2001:db8::/32")].into());
    let new = wanted("fws-new", Family::Ipv6, vec![net("2001:db8::1/128")].into());
    let changes = diff_sets(&live(&[&keep, &gone]), &[&new, &keep]);
    let shown: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "create set fws-new: hash:net inet6, 1 entries, maxelem 65536 (lists/blocklist.txt)",
            "destroy set fws-gone (1 entries)",
        ]
    );
    let input = restore_input(&changes);
    assert_eq!(
        input.before,
        "create fws-new hash:net family inet6 hashsize 1024 maxelem 65536\nadd fws-new 2001:db8::1\n"
    );
    assert_eq!(input.after, "destroy fws-gone\n");
}

#[test]
fn a_set_too_small_or_with_a_timeout_is_made_anew_and_swapped_in() {
    let want = wanted("fws-a", Family::Ipv4, entries(100));
    let mut small = wanted("fws-a", Family::Ipv4, entries(10));
    small.maxelem = 50;
    let changes = diff_sets(&live(&[&small]), &[&want]);
    assert!(
        matches!(&changes[0].edit, SetEdit::RecreateSet { why, leftover: false, .. } if why == "its maxelem 50 is too small for 102 entries"),
        "{changes:?}"
    );
    let input = restore_input(&changes);
    let lines: Vec<&str> = input.before.lines().collect();
    assert_eq!(
        lines[0],
        "create fws-a-new hash:net family inet hashsize 1024 maxelem 65536"
    );
    assert_eq!(lines.len(), 1 + 102 + 2);
    assert_eq!(lines[lines.len() - 2], "swap fws-a-new fws-a");
    assert_eq!(lines[lines.len() - 1], "destroy fws-a-new");

    // Someone made it with a timeout, and a swap was interrupted before.
    let save = format!(
        "create fws-a hash:net family inet maxelem 65536 timeout 300\n\
         create {} hash:net family inet maxelem 65536\nadd {} 10.0.0.1\n",
        temp_name("fws-a"),
        temp_name("fws-a")
    );
    let changes = diff_sets(&parse_save(&save).unwrap(), &[&want]);
    assert_eq!(
        changes.len(),
        1,
        "the leftover goes with the swap: {changes:?}"
    );
    assert!(
        matches!(&changes[0].edit, SetEdit::RecreateSet { why, leftover: true, .. } if why == "it has `timeout 300`")
    );
    assert!(restore_input(&changes)
        .before
        .starts_with("destroy fws-a-new\ncreate fws-a-new "));
}

#[test]
fn a_set_of_another_type_or_family_is_refused() {
    let want = wanted("fws-a", Family::Ipv4, entries(10));
    for save in [
        "create fws-a hash:ip family inet maxelem 65536\n",
        "create fws-a hash:net family inet6 maxelem 65536\n",
        "create fws-a list:set size 8\n",
    ] {
        let changes = diff_sets(&parse_save(save).unwrap(), &[&want]);
        assert_eq!(changes.len(), 1, "{save}");
        let found = changes[0]
            .conflict()
            .unwrap_or_else(|| panic!("{save}: {changes:?}"));
        assert!(found.contains("fwscript reset"), "{found}");
        assert!(restore_input(&changes).is_empty());
    }
}

#[test]
fn entries_added_or_flagged_by_hand_are_taken_out() {
    let want = wanted(
        "fws-a",
        Family::Ipv4,
        vec![net("10.0.0.0/24"), net("10.1.1.1/32")].into(),
    );
    let save = "create fws-a hash:net family inet maxelem 65536\nadd fws-a 10.0.0.0/24 nomatch\n\
                add fws-a 10.1.1.1\nadd fws-a 10.2.2.2\n";
    let changes = diff_sets(&parse_save(save).unwrap(), &[&want]);
    assert_eq!(
        restore_input(&changes).before,
        "del fws-a 10.2.2.2\ndel fws-a 10.0.0.0/24\nadd fws-a 10.0.0.0/24\n"
    );
}

#[test]
fn described_changes_list_few_entries_and_count_many() {
    let one = SetChange {
        set: "fws-a".into(),
        family: Family::Ipv4,
        source: Some(SetSource::List("lists/blocklist.txt".into())),
        edit: SetEdit::UpdateSet {
            added: vec![net("198.51.100.9/32")],
            removed: vec![],
        },
    };
    let many = SetChange {
        edit: SetEdit::UpdateSet {
            added: entries(5_000).to_vec(),
            removed: vec![],
        },
        ..one.clone()
    };
    let mut out = String::new();
    describe_changes([&one], &mut out);
    assert_eq!(
        out,
        "ipv4 ipset\n  +1 \u{2212}0 entries in set fws-a (lists/blocklist.txt)\n      + 198.51.100.9\n"
    );
    let mut out = String::new();
    describe_changes([&many], &mut out);
    assert_eq!(out.lines().count(), 2, "{out}");
}
