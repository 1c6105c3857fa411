//! The kernel's counters (kernel → **counters** → status): each rule's
//! packets and bytes as `iptables-save -c` prints them, read for people,
//! never for a diff.

use crate::live::{LiveRule, ParseError};
use crate::netfilter::{is_owned_chain, Family, Table};
use crate::ruleset::RuleId;

/// One rule and what it counted since it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub family: Family,
    pub table: Table,
    pub chain: String,
    pub id: Option<RuleId>,
    pub spec: String,
    pub packets: u64,
    pub bytes: u64,
}

impl Counted {
    /// A rule of fwscript's own chains (hooks in built-in chains only
    /// dispatch, and count what the chains behind them count).
    pub fn in_owned_chain(&self) -> bool {
        self.id.is_some() && is_owned_chain(&self.chain)
    }
}

/// Every rule of `text` (`iptables-save -c` output) with its counters, in
/// the tables fwscript may write to.
pub fn parse(family: Family, text: &str) -> Result<Vec<Counted>, ParseError> {
    let mut rules = Vec::new();
    let mut table: Option<Table> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let error = |message| ParseError {
            tool: family.tool(),
            line: index + 1,
            text: line.to_string(),
            message,
        };
        if let Some(name) = line.strip_prefix('*') {
            table = Table::parse(name);
            continue;
        }
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some(table) = table else { continue };
        let (counts, rule) = rest
            .split_once("] ")
            .ok_or_else(|| error("unterminated counters"))?;
        let (packets, bytes) = counts
            .split_once(':')
            .and_then(|(p, b)| Some((p.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| error("counters that are not numbers"))?;
        let Some(rest) = rule.strip_prefix("-A ") else {
            continue;
        };
        let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
        rules.push(Counted {
            family,
            table,
            chain: chain.to_string(),
            id: LiveRule::new(spec).id,
            spec: spec.to_string(),
            packets,
            bytes,
        });
    }
    Ok(rules)
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `98 KiB`, `1.5 MiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match value < 10.0 {
        true => format!("{value:.1} {}", UNITS[unit]),
        false => format!("{value:.0} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_of_both_backends() {
        for name in ["nft-ipv4-counters.save", "legacy-ipv4-counters.save"] {
            let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(path).unwrap();
            let rules = parse(Family::Ipv4, &text).unwrap();
            assert!(!rules.is_empty(), "{name}");
            assert!(rules.iter().any(|r| r.id.is_some()), "{name}");
        }
    }

    #[test]
    fn each_rule_keeps_its_numbers_and_id() {
        let text = "*filter\n:INPUT DROP [5:300]\n:FWS-INPUT - [0:0]\n\
                    [12:3456] -A INPUT -m comment --comment fws:0123456789ab -j FWS-INPUT\n\
                    [7:420] -A FWS-INPUT -p tcp -m comment --comment \"fws:ba9876543210 web\" -j ACCEPT\n\
                    [1:60] -A INPUT -s 192.0.2.1/32 -j DROP\nCOMMIT\n*raw\n[9:9] -A PREROUTING -j ACCEPT\nCOMMIT\n";
        let rules = parse(Family::Ipv4, text).unwrap();
        assert_eq!(rules.len(), 3, "raw is not fwscript's");
        assert_eq!((rules[0].packets, rules[0].bytes), (12, 3456));
        assert!(!rules[0].in_owned_chain(), "a hook");
        assert!(rules[1].in_owned_chain());
        assert_eq!(rules[1].id.as_ref().unwrap().as_str(), "ba9876543210");
        assert_eq!(rules[2].id, None);
        assert!(parse(Family::Ipv4, "*filter\n[x:1] -A INPUT -j ACCEPT\nCOMMIT\n").is_err());
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(100_352), "98 KiB");
        assert_eq!(bytes(1_572_864), "1.5 MiB");
    }
}
