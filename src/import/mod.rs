//! Import: an existing ruleset (`iptables-save` output) becomes a script
//! (save text → rules → flatten → place → calls → **script**). The script
//! gives the same verdicts as the original: every rule is placed in
//! fwscript's stages only where that changes no verdict, and a rule that
//! cannot be said is a comment with its line and the reason, a warning
//! and a count in the summary — never dropped silently.

mod calls;
mod emit;
mod flatten;
mod model;
mod nat;
mod owners;
mod place;
#[cfg(test)]
mod reference;
mod rule;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fmt::Write as _;

use serde::Serialize;

use crate::netfilter::{Family, Hook, Table};
use emit::{Element, Merged};
use flatten::FamilyRules;
use owners::Owner;
use place::{Aside, Chain};

/// One family's ruleset as text.
#[derive(Debug, Clone)]
pub struct Source {
    pub family: Family,
    /// Where it came from, for messages: a file name or `iptables-save`.
    pub name: String,
    pub text: String,
}

/// What went wrong reading a ruleset.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read `{name}`: {message}")]
    Read { name: String, message: String },
    #[error("`{name}` is not {tool}-save output: {source}")]
    Parse {
        name: String,
        tool: &'static str,
        source: crate::live::ParseError,
    },
    #[error("`{name}` is not {tool}-save output: it has no table (no `*filter` line){hint}")]
    NoTable {
        name: String,
        tool: &'static str,
        hint: &'static str,
    },
    #[error("`{name}` holds {found} addresses ({example}), but was given as the {expected} ruleset{hint}")]
    WrongFamily {
        name: String,
        found: &'static str,
        expected: &'static str,
        example: String,
        hint: &'static str,
    },
}

/// The import's result.
#[derive(Debug, Clone)]
pub struct Imported {
    pub script: String,
    /// One line each, for stderr: every rule not imported, every
    /// difference said in the script.
    pub warnings: Vec<String>,
    pub summary: Summary,
}

/// The counts the summary line gives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// `-A` lines read.
    pub rules: usize,
    pub imported: usize,
    /// Rules that never decide a packet, or only as another rule does.
    pub covered: usize,
    /// Rules of Docker, fail2ban, fwscript itself…
    pub owned: usize,
    pub owners: Vec<String>,
    pub not_imported: usize,
    /// Rules imported with a difference the script names.
    pub approximated: usize,
    /// Calls in the script.
    pub calls: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rules read: {} imported as {} call{}, {} covered by other rules, {} left to their owners",
            self.rules,
            self.imported,
            self.calls,
            if self.calls == 1 { "" } else { "s" },
            self.covered,
            self.owned
        )?;
        if !self.owners.is_empty() {
            write!(f, " ({})", self.owners.join(", "))?;
        }
        write!(
            f,
            ", {} approximated, {} not imported",
            self.approximated, self.not_imported
        )
    }
}

/// How a rule of the original fared, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    NotImported,
    Imported,
    Covered,
    Owned,
}

/// The families read, and which of them stand in for a missing one.
#[derive(Debug, Clone)]
pub struct Families {
    pub sources: Vec<Source>,
    /// Families with no ruleset of their own: the script gives them what
    /// it gives the others.
    pub mirrored: Vec<Family>,
}

/// Turns rulesets into a script. `sources` has at most one per family; a
/// family without one gets the same calls as the other.
pub fn import(sources: &[Source], mirrored: &[Family]) -> Result<Imported, ImportError> {
    let mut rulesets = Vec::new();
    for source in sources {
        rulesets.push(read(source)?);
    }
    let checked: BTreeSet<Family> = rulesets.iter().map(|r| r.family).collect();
    let all: BTreeSet<Family> = Family::ALL.into_iter().collect();

    let placement = placement(&rulesets, &checked);
    // A ruleset fwscript applied: its baseline and policies are the
    // script's; what is left to import are the rules beside it.
    let beside_fwscript = placement.chains.iter().any(|c| {
        c.asides.iter().any(|(_, a)| {
            matches!(
                a,
                Aside::Owned {
                    owner: Owner::Fwscript,
                    ..
                }
            )
        })
    });

    let mut nat = Vec::new();
    let mut other = Vec::new();
    for rules in &rulesets {
        let filter: Vec<&Chain> = placement
            .chains
            .iter()
            .filter(|c| c.family == rules.family)
            .collect();
        let hooked = flatten::flatten(rules, Table::Nat);
        nat.push((rules.family, nat::translate(rules.family, &hooked, &filter)));
        let mut asides = Vec::new();
        for chain in rules.tables.get(&Table::Mangle).into_iter().flatten() {
            for rule in &chain.rules {
                asides.push(Aside::Unexpressed {
                    lines: vec![rule.line.clone()],
                    why: "the import leaves the mangle table alone".into(),
                });
            }
        }
        for line in &rules.other_tables {
            asides.push(Aside::Unexpressed {
                lines: vec![line.clone()],
                why: "fwscript does not write this table".into(),
            });
        }
        other.push((rules.family, asides));
    }

    // Sections, each merged over the families.
    let section = |per_family: Vec<(Family, Vec<Element>)>| -> Vec<Element> {
        let merged: Vec<Merged> = match per_family.len() {
            1 => {
                let (_, elements) = per_family.into_iter().next().expect("one");
                elements
                    .into_iter()
                    .map(|element| Merged {
                        element,
                        families: all.iter().copied().collect(),
                    })
                    .collect()
            }
            _ => {
                let mut it = per_family.into_iter();
                let a = it.next().expect("two");
                let b = it.next().expect("two");
                emit::merge(a, b)
            }
        };
        emit::finish(merged, &all)
    };
    let hooks = [
        (Hook::Input, ""),
        (Hook::Forward, "Forwarded traffic (FORWARD)."),
        (Hook::Output, "Outgoing traffic (OUTPUT)."),
    ];
    let mut body = String::new();
    let mut call_count = 0;
    let mut count = |elements: &[Element]| {
        call_count += elements
            .iter()
            .filter(|e| matches!(e, Element::Call { .. }))
            .count();
    };
    for (hook, title) in hooks {
        let per_family: Vec<(Family, Vec<Element>)> = placement
            .chains
            .iter()
            .filter(|c| c.hook == hook)
            .map(|c| (c.family, emit::chain_elements(c, beside_fwscript)))
            .collect();
        let elements = section(per_family);
        if elements.is_empty() {
            continue;
        }
        count(&elements);
        if !title.is_empty() {
            let _ = writeln!(body, "\n// {title}");
        } else {
            body.push('\n');
        }
        emit::write(&mut body, &elements);
    }
    let nat_elements = section(
        nat.iter()
            .map(|(family, items)| (*family, emit::nat_elements(items)))
            .collect(),
    );
    if !nat_elements.is_empty() {
        count(&nat_elements);
        body.push_str("\n// Address translation (nat).\n");
        emit::write(&mut body, &nat_elements);
    }
    let other_elements = section(
        other
            .iter()
            .map(|(family, asides)| {
                (
                    *family,
                    asides
                        .iter()
                        .map(|a| Element::Comment(emit::aside_lines(a)))
                        .collect(),
                )
            })
            .collect(),
    );
    if !other_elements.is_empty() {
        body.push_str("\n// Other tables.\n");
        emit::write(&mut body, &other_elements);
    }

    // What became of every rule.
    let mut fates: BTreeMap<(Family, String), Fate> = BTreeMap::new();
    let mut note = |family: Family, line: &str, fate: Fate| {
        let entry = fates.entry((family, line.to_string())).or_insert(fate);
        *entry = (*entry).min(fate);
    };
    let mut warnings = Vec::new();
    let mut approximated = BTreeSet::new();
    let mut owners_seen = BTreeSet::new();
    let mut aside_fate =
        |family: Family,
         aside: &Aside,
         warnings: &mut Vec<String>,
         note: &mut dyn FnMut(Family, &str, Fate)| match aside {
            Aside::Unexpressed { lines, why } => {
                let line = lines.last().map_or("", String::as_str);
                for jump in &lines[..lines.len().saturating_sub(1)] {
                    note(family, jump, Fate::Imported);
                }
                note(family, line, Fate::NotImported);
                let warning = format!("not imported ({family}): {line}: {why}");
                if !warnings.contains(&warning) {
                    warnings.push(warning);
                }
            }
            Aside::Covered { line, .. } => note(family, line, Fate::Covered),
            Aside::Owned { owner, line } => {
                owners_seen.insert(*owner);
                note(family, line, Fate::Owned);
            }
        };
    for chain in &placement.chains {
        for unit in &chain.units {
            for line in &unit.lines {
                note(chain.family, line, Fate::Imported);
            }
            if !unit.notes.is_empty() {
                if let Some(line) = unit.lines.last() {
                    approximated.insert((chain.family, line.clone()));
                    for n in &unit.notes {
                        warnings.push(format!("approximated ({}): {line}: {n}", chain.family));
                    }
                }
            }
        }
        for (_, aside) in &chain.asides {
            aside_fate(chain.family, aside, &mut warnings, &mut note);
        }
    }
    for (family, items) in &nat {
        for item in items {
            match item {
                nat::NatItem::Call { lines, .. } => {
                    for line in lines {
                        note(*family, line, Fate::Imported);
                    }
                }
                nat::NatItem::Aside(aside) => aside_fate(*family, aside, &mut warnings, &mut note),
            }
        }
    }
    for (family, asides) in &other {
        for aside in asides {
            aside_fate(*family, aside, &mut warnings, &mut note);
        }
    }
    let mut summary = Summary {
        calls: call_count,
        approximated: approximated.len(),
        ..Summary::default()
    };
    for rules in &rulesets {
        for (table, chains) in &rules.tables {
            for chain in chains {
                let owner = owners::chain_owner(&chain.name);
                for rule in &chain.rules {
                    let fate = match (owner, fates.get(&(rules.family, rule.line.clone()))) {
                        (Some(owner), _) => {
                            owners_seen.insert(owner);
                            Fate::Owned
                        }
                        (None, Some(fate)) => *fate,
                        // A chain nothing jumps to: no packet meets it.
                        (None, None) => Fate::Covered,
                    };
                    let _ = table;
                    match fate {
                        Fate::NotImported => summary.not_imported += 1,
                        Fate::Imported => summary.imported += 1,
                        Fate::Covered => summary.covered += 1,
                        Fate::Owned => summary.owned += 1,
                    }
                    summary.rules += 1;
                }
            }
        }
        summary.rules += rules.other_tables.len();
        summary.not_imported += rules.other_tables.len();
    }
    summary.owners = owners_seen.iter().map(|o| o.name().to_string()).collect();

    // The header: where it came from, what it holds.
    let mut script = String::new();
    let names: Vec<String> = sources
        .iter()
        .map(|s| format!("{} ({})", emit::comment_text(&s.name), s.family))
        .collect();
    let _ = writeln!(
        script,
        "// Imported by `fwscript import` from {}.",
        names.join(" and ")
    );
    let _ = writeln!(script, "// {summary}.");
    for family in mirrored {
        let _ = writeln!(
            script,
            "// No {family} ruleset was read: every call below holds for {family} too, as \
             fwscript's calls do unless an address or `family` limits them."
        );
        warnings.push(format!(
            "no {family} ruleset was read: the script protects {family} like the other family"
        ));
    }
    if beside_fwscript {
        let _ = writeln!(
            script,
            "// fwscript's own rules are in this ruleset: {}. Below are only the rules \
             beside them, each as a call, to add to that script where it belongs; the \
             baseline and the policies are that script's.",
            Owner::Fwscript.keeps_them()
        );
    }
    for owner in owners_seen.iter().filter(|o| **o != Owner::Fwscript) {
        let _ = writeln!(
            script,
            "// {owner}'s chains and rules are named below, not imported: {}.",
            owner.keeps_them()
        );
    }
    for difference in placement.differences.iter().filter(|_| !beside_fwscript) {
        let _ = writeln!(script, "// note: {}.", emit::comment_text(difference));
    }
    script.push_str(
        "//\n// fwscript evaluates in stages — denials, the baseline, limits, accepts,\n\
         // logging, the policy — not in the order written. Each rule below was placed\n\
         // where it decides as it did in the original; where that was impossible,\n\
         // a NOT IMPORTED comment says why.\n",
    );
    let mut preamble = String::new();
    if !beside_fwscript {
        emit::preamble(&mut preamble, &placement, mirrored);
    }
    if !preamble.is_empty() {
        script.push('\n');
        script.push_str(&preamble);
    }
    script.push_str(&body);
    warnings.push(format!("import: {summary}"));
    // Warnings quote the original's lines: to a terminal, escaped too.
    let warnings = warnings
        .iter()
        .map(|w| crate::script::printable(w))
        .collect();
    Ok(Imported {
        script,
        warnings,
        summary,
    })
}

/// Filter chains of every family, placed together: `baseline()` and
/// `policy()` hold for both.
fn placement(rulesets: &[FamilyRules], checked: &BTreeSet<Family>) -> place::Placement {
    let mut chains = Vec::new();
    for rules in rulesets {
        let hooked = flatten::flatten(rules, Table::Filter);
        for &hook in Table::Filter.builtin_chains() {
            match hooked.iter().find(|h| h.hook == hook) {
                Some(h) => chains.push(place::units(rules.family, h)),
                None => chains.push(Chain {
                    family: rules.family,
                    hook,
                    policy: crate::netfilter::Policy::Accept,
                    units: Vec::new(),
                    asides: Vec::new(),
                    blockers: Vec::new(),
                }),
            }
        }
    }
    place::resolve(chains, checked.clone())
}

fn read(source: &Source) -> Result<FamilyRules, ImportError> {
    let tool = source.family.tool();
    let has_table = source.text.lines().any(|l| l.trim_start().starts_with('*'));
    if !has_table {
        let looks_like_commands = source
            .text
            .lines()
            .any(|l| l.trim_start().starts_with("iptables") || l.contains(" -A "));
        return Err(ImportError::NoTable {
            name: source.name.clone(),
            tool,
            hint: if looks_like_commands {
                "; it looks like a script of iptables commands: run it in a throwaway \
                 namespace (`ip netns add t && ip netns exec t sh SCRIPT && ip netns exec t \
                 iptables-save > rules.v4`) and import what iptables-save prints"
            } else {
                ""
            },
        });
    }
    let rules = FamilyRules::read(source.family, &source.text).map_err(|source_error| {
        ImportError::Parse {
            name: source.name.clone(),
            tool,
            source: source_error,
        }
    })?;
    // An IPv6 ruleset given as IPv4 (or the other way) reads, but means
    // nothing: refuse it.
    for chain in rules.tables.values().flatten() {
        for rule in &chain.rules {
            for net in [rule.matches.src, rule.matches.dst].into_iter().flatten() {
                let family = crate::plan::net_family(&net);
                if family != source.family {
                    let (found, expected, hint) = match family {
                        Family::Ipv6 => ("IPv6", "IPv4", ": give it with `--from6`"),
                        Family::Ipv4 => ("IPv4", "IPv6", ": give it with `--from`"),
                    };
                    return Err(ImportError::WrongFamily {
                        name: source.name.clone(),
                        found,
                        expected,
                        example: net.to_string(),
                        hint,
                    });
                }
            }
        }
    }
    Ok(rules)
}

/// Whether `text` is a ruleset with nothing in it: no rules, every
/// policy ACCEPT (a host that never set this family up).
pub fn is_blank(family: Family, text: &str) -> bool {
    FamilyRules::read(family, text).is_ok_and(|r| r.is_blank())
}

#[cfg(test)]
mod tests;
