//! Which script line each rule in the kernel came from (write → **origins**
//! → status): recorded at every write beside the rules, so `fwscript
//! status` can sum the kernel's counters per script line and name the line
//! behind an `fws:` id without evaluating a script that may have changed
//! since.
//!
//! The record keeps, for each rule id, the call site and the text of that
//! line as it read when the rules were written. It covers the rules written
//! and those of the kernel before the write (the snapshot `rollback` puts
//! back), so a rollback still knows where its rules came from.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::live::LiveRule;
use crate::netfilter::OWNED_PREFIX;
use crate::ruleset::{Origin, OwnedRule, RuleId, Ruleset};

/// Longest line text kept: a status line, not the file.
const MAX_SOURCE: usize = 200;

/// The script lines behind rule ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleOrigins {
    /// One entry per call site, with the ids of every rule it made.
    #[serde(default)]
    pub lines: Vec<ScriptLine>,
    /// fwscript's own rules (the baseline, the emergency ruleset): no
    /// script line made them.
    #[serde(default)]
    pub baseline: Vec<RuleId>,
}

/// A call site and what was written there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptLine {
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// The line's text when the rules were written, trimmed; `None` when
    /// the file could not be read again.
    pub source: Option<String>,
    pub ids: Vec<RuleId>,
}

impl ScriptLine {
    /// `fw.rhai:3`.
    pub fn place(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// What the record says of one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    Line(&'a ScriptLine),
    Baseline,
}

impl RuleOrigins {
    pub fn find(&self, id: &RuleId) -> Option<Found<'_>> {
        if self.baseline.contains(id) {
            return Some(Found::Baseline);
        }
        self.lines
            .iter()
            .find(|line| line.ids.contains(id))
            .map(Found::Line)
    }

    /// An index from id to what the record says of it.
    pub fn index(&self) -> HashMap<&RuleId, Found<'_>> {
        let mut index = HashMap::new();
        for line in &self.lines {
            for id in &line.ids {
                index.insert(id, Found::Line(line));
            }
        }
        for id in &self.baseline {
            index.insert(id, Found::Baseline);
        }
        index
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.baseline.is_empty()
    }
}

/// The record for a write of `written` over a kernel whose owned rules had
/// the ids `before`: each written rule with its call site (its line read
/// from `read`), or with what `known` (the record of the last write) says
/// of it when it carries no origin (rules put back from a snapshot); then
/// what `known` says of the rules in `before`, which a rollback may put
/// back.
pub fn record(
    written: &[Ruleset],
    before: &[&RuleId],
    known: &RuleOrigins,
    read: &mut dyn FnMut(&str) -> Option<String>,
) -> RuleOrigins {
    let known_index = known.index();
    let mut sites: HashMap<&Origin, Vec<RuleId>> = HashMap::new();
    let mut carried = Carried::default();
    let mut seen: HashSet<&RuleId> = HashSet::new();
    for rule in written.iter().flat_map(chain_rules) {
        if !seen.insert(&rule.id) {
            continue;
        }
        match (&rule.origin, known_index.get(&rule.id)) {
            (Some(origin), _) => sites.entry(origin).or_default().push(rule.id.clone()),
            (None, Some(found)) => carried.add(&rule.id, *found),
            (None, None) if is_jump(&rule.spec) => {}
            (None, None) => carried.baseline.push(rule.id.clone()),
        }
    }
    for &id in before {
        if seen.insert(id) {
            if let Some(found) = known_index.get(id) {
                carried.add(id, *found);
            }
        }
    }
    let mut texts: HashMap<&str, Option<String>> = HashMap::new();
    for origin in sites.keys() {
        texts
            .entry(origin.file.as_str())
            .or_insert_with(|| read(&origin.file));
    }
    let split: HashMap<&str, Vec<&str>> = texts
        .iter()
        .filter_map(|(file, text)| Some((*file, text.as_deref()?.lines().collect())))
        .collect();
    let mut lines: Vec<ScriptLine> = sites
        .into_iter()
        .map(|(origin, ids)| ScriptLine {
            file: origin.file.clone(),
            line: origin.line,
            col: origin.column,
            source: split
                .get(origin.file.as_str())
                .and_then(|lines| lines.get(origin.line.checked_sub(1)?))
                .map(|line| shorten(line.trim())),
            ids,
        })
        .collect();
    let mut at: HashMap<Site, usize> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| ((l.file.clone(), l.line, l.col), i))
        .collect();
    for (site, (source, ids)) in carried.lines {
        match at.get(&site) {
            // The same call site written again: its text is the new one.
            Some(&index) => lines[index].ids.extend(ids),
            None => {
                at.insert(site.clone(), lines.len());
                let (file, line, col) = site;
                lines.push(ScriptLine {
                    file,
                    line,
                    col,
                    source,
                    ids,
                });
            }
        }
    }
    lines.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    RuleOrigins {
        lines,
        baseline: carried.baseline,
    }
}

/// A call site: file, line, column.
type Site = (String, usize, usize);

/// What an earlier record says of rules written again without origins.
#[derive(Default)]
struct Carried {
    /// Each site's line text and the ids carried to it.
    lines: BTreeMap<Site, (Option<String>, Vec<RuleId>)>,
    baseline: Vec<RuleId>,
}

impl Carried {
    fn add(&mut self, id: &RuleId, found: Found<'_>) {
        match found {
            Found::Line(line) => self
                .lines
                .entry((line.file.clone(), line.line, line.col))
                .or_insert_with(|| (line.source.clone(), Vec::new()))
                .1
                .push(id.clone()),
            Found::Baseline => self.baseline.push(id.clone()),
        }
    }
}

/// A digest of what [`record`] would say of `written`: each rule's id and
/// call site, and the text of every file named. Cheap beside the record
/// itself, to tell whether the record must be made again.
pub fn digest(written: &[Ruleset], read: &mut dyn FnMut(&str) -> Option<String>) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    let mut files = std::collections::BTreeSet::new();
    for rule in written.iter().flat_map(chain_rules) {
        hasher.update(rule.id.as_str());
        if let Some(origin) = &rule.origin {
            hasher.update(origin.file.as_bytes());
            hasher.update(origin.line.to_le_bytes());
            hasher.update(origin.column.to_le_bytes());
            files.insert(origin.file.as_str());
        }
        hasher.update([0]);
    }
    for file in files {
        hasher.update(file);
        hasher.update([0]);
        hasher.update(read(file).unwrap_or_default());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The rules of owned chains: hooks only dispatch, and their counters are
/// the sum of what the chains behind them count.
fn chain_rules(ruleset: &Ruleset) -> impl Iterator<Item = &OwnedRule> {
    ruleset
        .tables
        .values()
        .flat_map(|t| t.chains.iter().flat_map(|c| &c.rules))
}

/// A jump between fwscript's own chains (into a stage or a chunk): it
/// counts what the rules behind it count, so it belongs to no line.
pub fn is_jump(spec: &str) -> bool {
    LiveRule::new(spec)
        .target()
        .is_some_and(|target| target.starts_with(OWNED_PREFIX))
}

fn shorten(line: &str) -> String {
    if line.chars().count() <= MAX_SOURCE {
        return line.to_string();
    }
    let mut short: String = line.chars().take(MAX_SOURCE - 1).collect();
    short.push('…');
    short
}

/// Reads a script file again for its line texts: the file named as the
/// origin names it, relative to where fwscript runs, like the script.
pub fn read_source(file: &str) -> Option<String> {
    let metadata = std::fs::metadata(file).ok()?;
    // Only what a script may be: a regular file of at most 4 MiB.
    if !metadata.is_file() || metadata.len() > 4 << 20 {
        return None;
    }
    std::fs::read_to_string(file).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::{Family, Table};
    use crate::ruleset::{OwnedChain, TableRuleset};

    fn rule(spec: &str, origin: Option<(usize, usize)>) -> OwnedRule {
        let id = RuleId::compute(Family::Ipv4, Table::Filter, "FWS-INPUT-ALLOW", spec, 0);
        OwnedRule {
            spec: format!("{spec} -m comment --comment fws:{id}"),
            id,
            origin: origin.map(|(line, column)| Origin {
                file: "fw.rhai".into(),
                line,
                column,
            }),
        }
    }

    fn ruleset(rules: Vec<OwnedRule>) -> Ruleset {
        let mut ruleset = Ruleset::empty(Family::Ipv4);
        ruleset.tables.insert(
            Table::Filter,
            TableRuleset {
                chains: vec![OwnedChain {
                    name: "FWS-INPUT-ALLOW".into(),
                    rules,
                }],
                ..TableRuleset::default()
            },
        );
        ruleset
    }

    fn script(_: &str) -> Option<String> {
        Some("// web\nallow_tcp([80, 443]);\n  ssh_from(\"192.0.2.7\");   \n".into())
    }

    #[test]
    fn each_rule_gets_its_line_and_its_text() {
        let web = rule("-p tcp --dport 80 -j ACCEPT", Some((2, 1)));
        let tls = rule("-p tcp --dport 443 -j ACCEPT", Some((2, 1)));
        let ssh = rule("-s 192.0.2.7 -j ACCEPT", Some((3, 3)));
        let base = rule("-i lo -j ACCEPT", None);
        let jump = rule("-j FWS-INPUT-ALLOW", None);
        let written = [ruleset(vec![
            web.clone(),
            tls.clone(),
            ssh.clone(),
            base.clone(),
            jump.clone(),
        ])];
        let got = record(&written, &[], &RuleOrigins::default(), &mut script);
        assert_eq!(got.lines.len(), 2);
        assert_eq!(got.lines[0].place(), "fw.rhai:2");
        assert_eq!(
            got.lines[0].source.as_deref(),
            Some("allow_tcp([80, 443]);")
        );
        assert_eq!(got.lines[0].ids, [web.id.clone(), tls.id]);
        assert_eq!(
            got.lines[1].source.as_deref(),
            Some("ssh_from(\"192.0.2.7\");")
        );
        assert_eq!(got.baseline, std::slice::from_ref(&base.id));
        assert_eq!(got.find(&jump.id), None, "a jump belongs to no line");
        assert_eq!(got.find(&base.id), Some(Found::Baseline));
        assert!(matches!(got.find(&web.id), Some(Found::Line(l)) if l.line == 2));
    }

    #[test]
    fn rules_put_back_keep_the_lines_known_before() {
        let web = rule("-p tcp --dport 80 -j ACCEPT", Some((2, 1)));
        let old = rule("-p tcp --dport 25 -j ACCEPT", Some((7, 1)));
        // The last apply wrote `web` over a kernel holding `old`.
        let first = record(
            &[ruleset(vec![old.clone()])],
            &[],
            &RuleOrigins::default(),
            &mut script,
        );
        let second = record(
            &[ruleset(vec![web.clone()])],
            &[&old.id],
            &first,
            &mut script,
        );
        assert!(
            second.find(&old.id).is_some(),
            "the snapshot's rule is kept"
        );
        // A rollback writes `old` back from the snapshot, without origins.
        let rolled = record(
            &[ruleset(vec![OwnedRule {
                origin: None,
                ..old.clone()
            }])],
            &[],
            &second,
            &mut |_| panic!("nothing to read"),
        );
        match rolled.find(&old.id) {
            Some(Found::Line(line)) => assert_eq!(line.line, 7),
            other => panic!("{other:?}"),
        }
        assert!(rolled.find(&web.id).is_none(), "what is gone is forgotten");
    }

    #[test]
    fn the_digest_changes_when_a_line_moves_or_its_text_changes() {
        let at = |line| ruleset(vec![rule("-p tcp --dport 80 -j ACCEPT", Some((line, 1)))]);
        let one = digest(&[at(2)], &mut script);
        assert_eq!(one, digest(&[at(2)], &mut script));
        assert_ne!(one, digest(&[at(3)], &mut script), "moved");
        assert_ne!(
            one,
            digest(&[at(2)], &mut |_| Some(
                "// web\nallow_tcp(80); // http\n".into()
            )),
            "the line's text changed"
        );
    }

    #[test]
    fn an_unreadable_file_leaves_the_text_out() {
        let web = rule("-p tcp --dport 80 -j ACCEPT", Some((2, 1)));
        let got = record(
            &[ruleset(vec![web])],
            &[],
            &RuleOrigins::default(),
            &mut |_| None,
        );
        assert_eq!(got.lines[0].source, None);
    }
}
