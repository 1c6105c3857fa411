//! The live kernel state, as read (kernel → **live** → diff): `iptables-save`
//! output parsed into tables, chains and rules, each rule kept as the text
//! the kernel printed plus the fwscript id found in its comment, if any.
//!
//! Rule text is never interpreted beyond finding that id: iptables-save
//! prints rules in its own normal form, and the diff compares ids only.

use std::collections::BTreeMap;
use std::fmt;

use crate::netfilter::{is_owned_chain, Family, Hook, Policy, Table};
use crate::ruleset::{HookRule, OwnedChain, OwnedRule, Placement, RuleId, Ruleset, TableRuleset};

/// One family's tables as the kernel has them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveState {
    pub family: Family,
    /// Only the tables fwscript may write to; `raw`, `security` and others
    /// are skipped when reading, because fwscript never touches them.
    pub tables: BTreeMap<Table, LiveTable>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveTable {
    /// In the order iptables-save lists them: built-in chains first.
    pub chains: Vec<LiveChain>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveChain {
    pub name: String,
    /// `Some` for built-in chains, `None` for user chains (`-` in the dump).
    pub policy: Option<Policy>,
    pub rules: Vec<LiveRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRule {
    /// The arguments after `-A CHAIN`, exactly as iptables-save printed them,
    /// so `-D CHAIN <spec>` names this very rule.
    pub spec: String,
    /// The fwscript id from the rule's `--comment`, when it carries one.
    pub id: Option<RuleId>,
}

impl LiveRule {
    pub fn new(spec: impl Into<String>) -> LiveRule {
        let spec = spec.into();
        let id = comment_id(&spec);
        LiveRule { spec, id }
    }

    /// The rule's target: what follows `-j` (or `-g`), `None` for a rule
    /// without one.
    pub fn target(&self) -> Option<String> {
        let words = words(&self.spec);
        let at = words
            .iter()
            .position(|w| !w.quoted && (w.text == "-j" || w.text == "-g"))?;
        Some(words.get(at + 1)?.text.clone())
    }

    /// Whether the rule goes to its chain (`-g`) rather than jumping
    /// (`-j`): coming back from it returns past the calling chain.
    pub fn goes_to(&self) -> bool {
        words(&self.spec)
            .iter()
            .any(|w| !w.quoted && w.text == "-g")
    }

    /// Whether the rule matches every packet: nothing but a comment before
    /// its target.
    pub fn matches_everything(&self) -> bool {
        let words = words(&self.spec);
        let mut rest = words
            .iter()
            .take_while(|w| w.quoted || (w.text != "-j" && w.text != "-g"));
        let mut only_comment = true;
        while let Some(word) = rest.next() {
            match word.text.as_str() {
                "-m" if !word.quoted => {
                    // `-m comment --comment TEXT` matches everything.
                    let module = rest.next().map(|w| w.text.as_str());
                    if module != Some("comment") {
                        only_comment = false;
                    }
                }
                "--comment" if !word.quoted => {
                    rest.next();
                }
                _ => only_comment = false,
            }
        }
        only_comment
    }
}

/// A rule fwscript does not own, in a built-in chain it hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignRule {
    pub hook: Hook,
    /// 1-based, as `iptables -L --line-numbers` counts.
    pub position: usize,
    pub spec: String,
}

/// Save output that is not what iptables-save prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read `{tool}-save` output, line {line}: {message}: `{text}`")]
pub struct ParseError {
    pub tool: &'static str,
    pub line: usize,
    pub text: String,
    pub message: &'static str,
}

impl LiveState {
    pub fn empty(family: Family) -> LiveState {
        LiveState {
            family,
            tables: BTreeMap::new(),
        }
    }

    /// Parses the output of `iptables-save` (either backend, with or without
    /// `-c` counters) for `family`.
    pub fn parse(family: Family, text: &str) -> Result<LiveState, ParseError> {
        let mut state = LiveState::empty(family);
        // `None` while inside a table fwscript ignores.
        let mut current: Option<Option<Table>> = None;
        // The chain the last rule went to, in the current table.
        let mut last = usize::MAX;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            let error = |message| ParseError {
                tool: family.tool(),
                line: index + 1,
                text: line.to_string(),
                message,
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('*') {
                let table = Table::parse(name);
                if let Some(table) = table {
                    state.tables.entry(table).or_default();
                }
                current = Some(table);
                continue;
            }
            let Some(table) = current else {
                return Err(error("line outside a table"));
            };
            if line == "COMMIT" {
                current = None;
                continue;
            }
            let Some(table) = table else { continue };
            let live = state.tables.get_mut(&table).expect("entered above");
            if let Some(declaration) = line.strip_prefix(':') {
                let mut words = declaration.split_whitespace();
                let (Some(name), Some(policy)) = (words.next(), words.next()) else {
                    return Err(error("chain declaration without a policy"));
                };
                let policy = match policy {
                    "-" => None,
                    other => Some(Policy::parse(other).ok_or_else(|| error("unknown policy"))?),
                };
                live.chains.push(LiveChain {
                    name: name.to_string(),
                    policy,
                    rules: Vec::new(),
                });
                continue;
            }
            // `-c` puts `[packets:bytes] ` before each rule.
            let rule = match line.strip_prefix('[') {
                Some(rest) => rest
                    .split_once("] ")
                    .map(|(_, rule)| rule)
                    .ok_or_else(|| error("unterminated counters"))?,
                None => line,
            };
            let Some(rest) = rule.strip_prefix("-A ") else {
                return Err(error(
                    "expected `-A CHAIN`, a chain declaration or `COMMIT`",
                ));
            };
            let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
            // A save lists each chain's rules together: try the chain of
            // the rule before first (chunk names share long prefixes).
            let at = match live.chains.get(last) {
                Some(c) if c.name == chain => last,
                _ => live
                    .chains
                    .iter()
                    .position(|c| c.name == chain)
                    .ok_or_else(|| error("rule in an undeclared chain"))?,
            };
            last = at;
            live.chains[at].rules.push(LiveRule::new(spec));
        }
        if current.is_some() {
            return Err(ParseError {
                tool: family.tool(),
                line: text.lines().count(),
                text: String::new(),
                message: "table without `COMMIT`",
            });
        }
        Ok(state)
    }

    pub fn table(&self, table: Table) -> Option<&LiveTable> {
        self.tables.get(&table)
    }

    /// What fwscript owns in the kernel now, as a ruleset: its hooks, its
    /// chains, and the policy of every built-in chain (so a snapshot taken
    /// before an apply puts policies back as well). Diffing the kernel later
    /// against this restores the owned state as it was.
    ///
    /// A kernel without a filter table (a fresh nf_tables host prints
    /// nothing at all) has, in effect, ACCEPT policies: putting such a
    /// state back must undo the DROP policies an apply set since.
    pub fn owned(&self) -> Ruleset {
        let mut tables: BTreeMap<Table, TableRuleset> = self
            .tables
            .iter()
            .map(|(&table, live)| (table, live.owned(table)))
            .collect();
        tables.entry(Table::Filter).or_insert_with(|| TableRuleset {
            policies: Table::Filter
                .builtin_chains()
                .iter()
                .map(|&hook| (hook, Policy::Accept))
                .collect(),
            ..TableRuleset::default()
        });
        Ruleset {
            family: self.family,
            tables,
            // Sets are read apart, once for both families (see
            // `apply::survey`).
            sets: Vec::new(),
        }
    }
}

impl LiveTable {
    pub fn chain(&self, name: &str) -> Option<&LiveChain> {
        self.chains.iter().find(|c| c.name == name)
    }

    pub fn chain_mut(&mut self, name: &str) -> Option<&mut LiveChain> {
        self.chains.iter_mut().find(|c| c.name == name)
    }

    pub fn owned_chains(&self) -> impl Iterator<Item = &LiveChain> {
        self.chains.iter().filter(|c| is_owned_chain(&c.name))
    }

    /// Built-in chains paired with the hook they are.
    pub fn builtin_chains(&self) -> impl Iterator<Item = (Hook, &LiveChain)> {
        self.chains
            .iter()
            .filter(|c| c.policy.is_some())
            .filter_map(|c| Hook::parse_chain(&c.name).map(|hook| (hook, c)))
    }

    /// fwscript's jumps in built-in chains: rules there that carry an id.
    pub fn hooks(&self) -> impl Iterator<Item = (Hook, usize, &LiveRule)> {
        self.builtin_chains().flat_map(|(hook, chain)| {
            chain
                .rules
                .iter()
                .enumerate()
                .filter(|(_, rule)| rule.id.is_some())
                .map(move |(index, rule)| (hook, index + 1, rule))
        })
    }

    /// Rules in the built-in chain `hook` that fwscript does not own.
    pub fn foreign_rules(&self, hook: Hook) -> Vec<ForeignRule> {
        self.builtin_chains()
            .filter(|&(h, _)| h == hook)
            .flat_map(|(_, chain)| chain.rules.iter().enumerate())
            .filter(|(_, rule)| rule.id.is_none())
            .map(|(index, rule)| ForeignRule {
                hook,
                position: index + 1,
                spec: rule.spec.clone(),
            })
            .collect()
    }

    fn owned(&self, table: Table) -> TableRuleset {
        let policies = self
            .builtin_chains()
            .filter_map(|(hook, chain)| chain.policy.map(|p| (hook, p)))
            .collect();
        let mut hooks: Vec<HookRule> = self
            .hooks()
            .filter_map(|(hook, _, rule)| {
                Some(HookRule {
                    hook,
                    placement: Placement::of(table, &rule.target().unwrap_or_default()),
                    rule: owned_rule(rule)?,
                })
            })
            .collect();
        // Top hooks first, as render lists them.
        hooks.sort_by_key(|h| (h.hook, h.placement));
        let chains = self
            .owned_chains()
            .map(|chain| OwnedChain {
                name: chain.name.clone(),
                // Drift has no id and is not fwscript's to restore.
                rules: chain.rules.iter().filter_map(owned_rule).collect(),
            })
            .collect();
        TableRuleset {
            policies,
            hooks,
            chains,
        }
    }
}

fn owned_rule(rule: &LiveRule) -> Option<OwnedRule> {
    Some(OwnedRule {
        id: rule.id.clone()?,
        spec: rule.spec.clone(),
        origin: None,
    })
}

/// Prints the state in iptables-save's form (without counters), so a parsed
/// dump prints back as it was read, minus comment lines.
impl fmt::Display for LiveState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (table, live) in &self.tables {
            writeln!(f, "*{table}")?;
            for chain in &live.chains {
                let policy = chain.policy.map_or("-", Policy::name);
                writeln!(f, ":{} {policy} [0:0]", chain.name)?;
            }
            for chain in &live.chains {
                for rule in &chain.rules {
                    if rule.spec.is_empty() {
                        writeln!(f, "-A {}", chain.name)?;
                    } else {
                        writeln!(f, "-A {} {}", chain.name, rule.spec)?;
                    }
                }
            }
            writeln!(f, "COMMIT")?;
        }
        Ok(())
    }
}

/// A word of a rule as iptables-save printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub(crate) text: String,
    /// Quoted words are always values, never options: a log prefix of
    /// `"--comment fws:…"` must not be read as a comment.
    pub(crate) quoted: bool,
}

/// Splits rule text the way iptables-restore does: whitespace separates
/// words, double quotes group, and a backslash inside quotes escapes the
/// next character.
pub(crate) fn words(spec: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut chars = spec.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        let mut word = Word {
            text: String::new(),
            quoted: first == '"',
        };
        let mut in_quotes = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => in_quotes = !in_quotes,
                '\\' if in_quotes => {
                    if let Some(escaped) = chars.next() {
                        word.text.push(escaped);
                    }
                }
                c if c.is_whitespace() && !in_quotes => break,
                c => word.text.push(c),
            }
        }
        words.push(word);
    }
    words
}

/// The fwscript id in the first `--comment` option of a rule, if any.
///
/// Runs for every rule of every read, so it walks the words as slices of
/// the rule and unquotes only the comment's own word: splitting every rule
/// into owned words was most of the time a 10,000-rule read took to parse.
fn comment_id(spec: &str) -> Option<RuleId> {
    // Cheap reject: most foreign rules carry no comment at all.
    if !spec.contains("--comment") {
        return None;
    }
    let mut raw = raw_words(spec);
    raw.find(|&word| word == "--comment")?;
    let value = raw.next()?;
    // iptables-save's own form, `"fws:…"`, needs no unquoting.
    if let Some(inside) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        if !inside.contains(['"', '\\']) {
            return RuleId::from_comment(inside);
        }
    }
    RuleId::from_comment(&words(value).into_iter().next()?.text)
}

/// The words of [`words`] as the slices of `spec` they come from, quotes
/// and escapes still in: a quoted word never equals an option's name.
fn raw_words(spec: &str) -> impl Iterator<Item = &str> {
    let mut chars = spec.char_indices().peekable();
    std::iter::from_fn(move || {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let &(start, _) = chars.peek()?;
        let mut end = spec.len();
        let mut in_quotes = false;
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => in_quotes = !in_quotes,
                '\\' if in_quotes => {
                    chars.next();
                }
                c if c.is_whitespace() && !in_quotes => {
                    end = at;
                    break;
                }
                _ => {}
            }
        }
        Some(&spec[start..end])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn id(hex: &str) -> RuleId {
        RuleId::from_comment(&format!("fws:{hex}")).unwrap()
    }

    #[test]
    fn words_honour_quotes_and_escapes() {
        let words = words(r#"-m comment --comment "fws:0a ssh \"admin\" \\" -j ACCEPT"#);
        let texts: Vec<_> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "-m",
                "comment",
                "--comment",
                r#"fws:0a ssh "admin" \"#,
                "-j",
                "ACCEPT"
            ]
        );
        assert!(words[3].quoted);
        assert!(!words[2].quoted);
    }

    #[test]
    fn raw_words_split_where_words_do() {
        for spec in [
            r#"-m comment --comment "fws:0a ssh \"admin\" \\" -j ACCEPT"#,
            r#"  -s 10.0.0.1/32   -j LOG --log-prefix "a b"x "c\"d" "#,
            "-p tcp\t--dport 22\u{a0}-j ACCEPT",
            r#"--comment "unterminated"#,
            "",
        ] {
            let raw: Vec<&str> = raw_words(spec).collect();
            assert_eq!(raw.len(), words(spec).len(), "{spec}");
            let again: Vec<Word> = raw.iter().flat_map(|w| words(w)).collect();
            assert_eq!(again, words(spec), "{spec}");
        }
    }

    #[test]
    fn ids_come_only_from_the_comment_option() {
        let rule = LiveRule::new(r#"-m comment --comment "fws:0a0a0a0a0a03 ssh" -j ACCEPT"#);
        assert_eq!(rule.id, Some(id("0a0a0a0a0a03")));
        let escaped = LiveRule::new(r#"-m comment --comment "fws:0a0a0a0a0a04 \"hi\"" -j ACCEPT"#);
        assert_eq!(escaped.id, Some(id("0a0a0a0a0a04")));
        let bare = LiveRule::new("-m comment --comment fws:0a0a0a0a0a06 -j ACCEPT");
        assert_eq!(bare.id, Some(id("0a0a0a0a0a06")));
        let fake = LiveRule::new(r#"-j LOG --log-prefix "--comment fws:0a0a0a0a0a05 ""#);
        assert_eq!(fake.id, None);
        let quoted_option = LiveRule::new(r#"-j LOG --log-prefix "--comment" "fws:0a0a0a0a0a05""#);
        assert_eq!(quoted_option.id, None);
        let foreign_comment = LiveRule::new(r#"-m comment --comment "docker" -j ACCEPT"#);
        assert_eq!(foreign_comment.id, None);
    }

    #[test]
    fn parses_fixtures_of_both_backends() {
        for flavor in ["nft", "legacy"] {
            for (family, file) in [
                (Family::Ipv4, format!("{flavor}-ipv4.save")),
                (Family::Ipv4, format!("{flavor}-ipv4-counters.save")),
                (Family::Ipv6, format!("{flavor}-ipv6.save")),
            ] {
                let state = LiveState::parse(family, &fixture(&file)).unwrap();
                let filter = state.table(Table::Filter).unwrap();
                let input = filter.chain("INPUT").unwrap();
                assert_eq!(input.policy, Some(Policy::Drop), "{file}");
                assert_eq!(filter.chain("FWS-INPUT").unwrap().policy, None);

                let hooks: Vec<_> = filter.hooks().collect();
                assert_eq!(hooks.len(), 1, "{file}");
                assert_eq!(hooks[0].0, Hook::Input);
                assert_eq!(hooks[0].1, 3, "the hook sits below two foreign rules");
                assert_eq!(hooks[0].2.id, Some(id("0a0a0a0a0a00")));

                let foreign = filter.foreign_rules(Hook::Input);
                assert_eq!(foreign.len(), 2, "{file}");
                assert_eq!(foreign[0].spec, "-i lo -j ACCEPT");
                assert_eq!(foreign[1].position, 2);

                let allow = filter.chain("FWS-INPUT-ALLOW").unwrap();
                let ids: Vec<_> = allow.rules.iter().map(|r| r.id.clone()).collect();
                assert_eq!(
                    ids,
                    [
                        Some(id("0a0a0a0a0a03")),
                        Some(id("0a0a0a0a0a04")),
                        None,
                        Some(id("0a0a0a0a0a06"))
                    ],
                    "{file}"
                );
                assert!(allow.rules[0].spec.starts_with("-p tcp -m tcp --dport 22"));

                let nat = state.table(Table::Nat).unwrap();
                assert!(nat.chain("DOCKER").is_some());
                assert!(nat.hooks().next().is_none());
            }
        }
    }

    #[test]
    fn owned_keeps_hooks_chains_and_policies_only() {
        let state = LiveState::parse(Family::Ipv4, &fixture("legacy-ipv4.save")).unwrap();
        let owned = state.owned();
        let filter = &owned.tables[&Table::Filter];
        assert_eq!(filter.policies[&Hook::Input], Policy::Drop);
        assert_eq!(filter.policies[&Hook::Forward], Policy::Accept);
        assert_eq!(filter.hooks.len(), 1);
        let names: Vec<_> = filter.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["FWS-INPUT", "FWS-INPUT-ALLOW"]);
        // The drift rule is not part of what fwscript owns.
        assert_eq!(filter.chain("FWS-INPUT-ALLOW").unwrap().rules.len(), 3);
        assert!(owned.tables[&Table::Nat].chains.is_empty());
        assert!(owned.tables[&Table::Nat].hooks.is_empty());
    }

    #[test]
    fn a_kernel_without_tables_owns_accept_policies() {
        // What a fresh nf_tables host prints: nothing. Putting that state
        // back after an apply must undo the apply's DROP policies.
        let owned = LiveState::parse(Family::Ipv6, "").unwrap().owned();
        let filter = &owned.tables[&Table::Filter];
        assert!(filter.policies.values().all(|&p| p == Policy::Accept));
        assert_eq!(filter.policies.len(), 3);
        assert!(filter.chains.is_empty() && filter.hooks.is_empty());
    }

    #[test]
    fn prints_back_what_it_read() {
        for file in ["nft-ipv4.save", "legacy-ipv6.save"] {
            let text = fixture(file);
            let family = if file.contains("ipv6") {
                Family::Ipv6
            } else {
                Family::Ipv4
            };
            let state = LiveState::parse(family, &text).unwrap();
            let printed = state.to_string();
            // Legacy lists nat before filter; the printout is by table order,
            // so compare table blocks as sets.
            let blocks = |t: &str| {
                let mut blocks: Vec<String> = t
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .split("COMMIT")
                    .map(|b| b.trim().to_string())
                    .collect();
                blocks.sort();
                blocks
            };
            assert_eq!(blocks(&printed), blocks(&text), "{file}");
            assert_eq!(LiveState::parse(family, &printed).unwrap(), state);
        }
    }

    #[test]
    fn skips_tables_fwscript_never_writes() {
        let text = "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j CT --notrack\nCOMMIT\n";
        let state = LiveState::parse(Family::Ipv4, text).unwrap();
        assert!(state.tables.is_empty());
    }

    #[test]
    fn rejects_what_save_never_prints() {
        for (text, line) in [
            ("-A INPUT -j ACCEPT\n", 1),
            (
                "*filter\n:INPUT ACCEPT [0:0]\n-A FOO -j ACCEPT\nCOMMIT\n",
                3,
            ),
            ("*filter\n:INPUT MAYBE [0:0]\nCOMMIT\n", 2),
            (
                "*filter\n:INPUT ACCEPT [0:0]\n-I INPUT 1 -j ACCEPT\nCOMMIT\n",
                3,
            ),
            ("*filter\n:INPUT ACCEPT [0:0]\n", 2),
        ] {
            let error = LiveState::parse(Family::Ipv4, text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}");
        }
    }
}
