//! An in-memory kernel (backend ↔ **fake kernel**) for tests: it keeps a
//! [`LiveState`] per family, prints it as `iptables-save` would, and runs
//! the `--noflush` commands fwscript writes, one atomic table block at a
//! time, refusing what the kernel would refuse.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;

use ipnet::IpNet;

use super::{Backend, BackendError};
use crate::live::{LiveChain, LiveRule, LiveState, LiveTable};
use crate::netfilter::{is_owned_chain, Family, Hook, Policy, Table};
use crate::sets::{entry_text, ipset_family, parse_entry, SetHeader};

#[derive(Debug, Default)]
pub struct Fake {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    states: BTreeMap<Family, LiveState>,
    unavailable: BTreeSet<Family>,
    /// The next restore of this family is refused at its first rule line.
    fault: Option<Family>,
    saves: usize,
    restores: Vec<(Family, String)>,
    /// Packet and byte counters of rules by their fwscript id; every other
    /// rule counts nothing.
    counters: BTreeMap<(Family, String), (u64, u64)>,
    /// The ipsets, both families, by name.
    sets: BTreeMap<String, FakeSet>,
    /// This host has no ipset tool.
    no_ipset: bool,
    /// The next set restore is refused at its last line, the lines before
    /// it done (as ipset does).
    set_fault: bool,
    set_saves: usize,
    set_lists: usize,
    set_restores: Vec<String>,
    /// A generation counter as nf_tables keeps one (`None`: a legacy-like
    /// kernel without one): moved on by every table block committed.
    generation: Option<u32>,
}

/// One ipset: its `create` line's header and its entries, each with the
/// options it was added with (`nomatch`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FakeSet {
    header: SetHeader,
    entries: BTreeMap<IpNet, String>,
}

impl Fake {
    pub fn new() -> Fake {
        Fake::default()
    }

    /// Starts `family` from an `iptables-save` dump.
    pub fn with_save(self, family: Family, text: &str) -> Fake {
        let state = LiveState::parse(family, text).expect("fixture parses");
        self.lock().states.insert(family, state);
        self
    }

    pub fn without(self, family: Family) -> Fake {
        self.lock().unavailable.insert(family);
        self
    }

    /// Makes the next restore of `family` fail the way a rejected rule does.
    pub fn fail_next_restore(&self, family: Family) {
        self.lock().fault = Some(family);
    }

    /// A kernel that keeps a generation, as nf_tables does.
    pub fn with_generation(self) -> Fake {
        self.lock().generation = Some(1);
        self
    }

    /// A change made behind every reader's back, as a neighbour's commit.
    pub fn commit_elsewhere(&self) {
        if let Some(generation) = self.lock().generation.as_mut() {
            *generation += 1;
        }
    }

    /// A host without the ipset tool.
    pub fn without_ipset(self) -> Fake {
        self.lock().no_ipset = true;
        self
    }

    /// Makes the next set restore fail at its last line, with every line
    /// before it done.
    pub fn fail_next_set_restore(&self) {
        self.lock().set_fault = true;
    }

    /// Every set restore input accepted or refused so far, in order.
    pub fn set_restores(&self) -> Vec<String> {
        self.lock().set_restores.clone()
    }

    /// How often the sets were saved (with entries) and listed (headers).
    pub fn set_reads(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.set_saves, inner.set_lists)
    }

    /// A set's entries as ipset prints them, sorted; `None` when there is
    /// no such set.
    pub fn set_entries(&self, name: &str) -> Option<Vec<String>> {
        let inner = self.lock();
        let set = inner.sets.get(name)?;
        Some(
            set.entries
                .keys()
                .map(|e| entry_text(e).to_string())
                .collect(),
        )
    }

    /// The names of every set, sorted.
    pub fn set_names(&self) -> Vec<String> {
        self.lock().sets.keys().cloned().collect()
    }

    pub fn state(&self, family: Family) -> LiveState {
        let inner = self.lock();
        inner
            .states
            .get(&family)
            .cloned()
            .unwrap_or_else(|| LiveState::empty(family))
    }

    /// Sets the counters `save_counters` prints for the rule with fwscript
    /// id `id`, as if that many packets had matched it.
    pub fn count(&self, family: Family, id: &str, packets: u64, bytes: u64) {
        self.lock()
            .counters
            .insert((family, id.to_string()), (packets, bytes));
    }

    pub fn saves(&self) -> usize {
        self.lock().saves
    }

    /// Every restore input accepted or refused so far, in order.
    pub fn restores(&self) -> Vec<(Family, String)> {
        self.lock().restores.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for Fake {
    fn availability(&self, family: Family) -> Result<(), String> {
        match self.lock().unavailable.contains(&family) {
            true => Err(format!("`{}` is not installed", family.tool())),
            false => Ok(()),
        }
    }

    fn save(&self, family: Family) -> Result<String, BackendError> {
        let mut inner = self.lock();
        inner.saves += 1;
        Ok(inner
            .states
            .get(&family)
            .map(ToString::to_string)
            .unwrap_or_default())
    }

    fn generation(&self) -> Option<super::Generation> {
        let id = self.lock().generation?;
        Some(super::Generation { netns: 1, id })
    }

    fn save_counters(&self, family: Family) -> Result<String, BackendError> {
        let text = self.save(family)?;
        let inner = self.lock();
        let mut out = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("-A ") {
                let spec = rest.split_once(' ').map_or("", |(_, spec)| spec);
                let id = LiveRule::new(spec).id.map(|id| id.to_string());
                let (packets, bytes) = id
                    .and_then(|id| inner.counters.get(&(family, id)).copied())
                    .unwrap_or_default();
                out.push_str(&format!("[{packets}:{bytes}] "));
            }
            out.push_str(line);
            out.push('\n');
        }
        Ok(out)
    }

    fn restore(&self, family: Family, input: &str) -> Result<(), BackendError> {
        let mut inner = self.lock();
        inner.restores.push((family, input.to_string()));
        let tool = format!("{}-restore", family.tool());
        let reject = |line: usize, message: &str| BackendError::Rejected {
            tool: tool.clone(),
            line,
            text: input.lines().nth(line - 1).unwrap_or("").to_string(),
            message: message.to_string(),
        };
        let fault = inner.fault == Some(family);
        if fault {
            inner.fault = None;
        }
        let set_names: BTreeSet<String> = inner.sets.keys().cloned().collect();
        let inner = &mut *inner;
        let generation = &mut inner.generation;
        let state = inner
            .states
            .entry(family)
            .or_insert_with(|| LiveState::empty(family));
        let mut block: Option<(Table, LiveTable)> = None;
        for (index, line) in input.lines().enumerate() {
            let number = index + 1;
            if let Some(name) = line.strip_prefix('*') {
                let table = Table::parse(name).ok_or_else(|| reject(number, "no such table"))?;
                let current = state
                    .tables
                    .get(&table)
                    .cloned()
                    .unwrap_or_else(|| new_table(table));
                block = Some((table, current));
                continue;
            }
            let Some((_, current)) = block.as_mut() else {
                return Err(reject(number, "command outside a table"));
            };
            if line == "COMMIT" {
                let (table, current) = block.take().expect("inside a table");
                state.tables.insert(table, current);
                if let Some(generation) = generation.as_mut() {
                    *generation += 1;
                }
                continue;
            }
            if fault && (line.starts_with("-A ") || line.starts_with("-I ")) {
                return Err(reject(number, "injected failure"));
            }
            if !line.starts_with("-D ") {
                if let Some(set) = match_set(line) {
                    if !set_names.contains(set) {
                        return Err(reject(number, "set doesn't exist"));
                    }
                }
            }
            run(current, line).map_err(|message| reject(number, message))?;
        }
        match block {
            Some(_) => Err(reject(input.lines().count(), "missing COMMIT")),
            None => Ok(()),
        }
    }

    fn save_sets(&self) -> Result<String, BackendError> {
        let mut inner = self.no_ipset()?;
        inner.set_saves += 1;
        Ok(Fake::print_sets(&inner))
    }

    fn list_sets(&self) -> Result<String, BackendError> {
        let mut inner = self.no_ipset()?;
        inner.set_lists += 1;
        Ok(Fake::list_headers(&inner))
    }

    fn restore_sets(&self, input: &str) -> Result<(), BackendError> {
        let mut inner = self.no_ipset()?;
        inner.set_restores.push(input.to_string());
        let fault = std::mem::take(&mut inner.set_fault);
        let count = input.lines().count();
        for (index, line) in input.lines().enumerate() {
            let reject = |message: &str| BackendError::Rejected {
                tool: super::IPSET.to_string(),
                line: index + 1,
                text: line.to_string(),
                message: message.to_string(),
            };
            if fault && index + 1 == count {
                return Err(reject("injected failure"));
            }
            run_set(&mut inner, line).map_err(reject)?;
        }
        Ok(())
    }
}

impl Fake {
    fn no_ipset(&self) -> Result<std::sync::MutexGuard<'_, Inner>, BackendError> {
        let inner = self.lock();
        match inner.no_ipset {
            true => Err(BackendError::NotFound {
                tool: super::IPSET.to_string(),
            }),
            false => Ok(inner),
        }
    }
}

impl Fake {
    /// `ipset save`: every set and its entries, in name order.
    fn print_sets(inner: &Inner) -> String {
        let mut out = String::new();
        for (name, set) in &inner.sets {
            let _ = write!(out, "create {name} {}", set.header.kind);
            if let Some(family) = set.header.family {
                let _ = write!(out, " family {}", ipset_family(family));
            }
            let _ = write!(
                out,
                " hashsize 1024 maxelem {} bucketsize 12 initval 0x0badcafe",
                set.header.maxelem
            );
            for extra in &set.header.extras {
                let _ = write!(out, " {extra}");
            }
            out.push('\n');
            for (entry, options) in &set.entries {
                let _ = write!(out, "add {name} {}", entry_text(entry));
                if !options.is_empty() {
                    let _ = write!(out, " {options}");
                }
                out.push('\n');
            }
        }
        out
    }

    /// `ipset list -t`.
    fn list_headers(inner: &Inner) -> String {
        let mut out = String::new();
        for (name, set) in &inner.sets {
            let family = set
                .header
                .family
                .map(|f| format!("family {} ", ipset_family(f)))
                .unwrap_or_default();
            let extras: String = set.header.extras.iter().map(|e| format!(" {e}")).collect();
            let _ = writeln!(
                out,
                "Name: {name}\nType: {}\nRevision: 7\nHeader: {family}hashsize 1024 maxelem {}{extras} bucketsize 12 initval 0x0badcafe\nSize in memory: 1024\nReferences: {}\nNumber of entries: {}\n",
                set.header.kind,
                set.header.maxelem,
                references(inner, name),
                set.entries.len()
            );
        }
        out
    }
}

/// How many rules, in any family, match the set `name`.
fn references(inner: &Inner, name: &str) -> usize {
    inner
        .states
        .values()
        .flat_map(|s| s.tables.values())
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .filter(|r| match_set(&format!("-A X {}", r.spec)) == Some(name))
        .count()
}

/// The set a rule line matches with `-m set --match-set NAME`.
fn match_set(line: &str) -> Option<&str> {
    let mut words = line.split(' ');
    words.find(|w| *w == "--match-set")?;
    words.next()
}

/// One `ipset restore` command.
fn run_set(inner: &mut Inner, line: &str) -> Result<(), &'static str> {
    let mut words = line.split_whitespace();
    let command = words.next().ok_or("no command")?;
    let name = words.next().ok_or("no set name")?;
    match command {
        "create" => {
            if inner.sets.contains_key(name) {
                return Err("Set cannot be created: set with the same name already exists");
            }
            let mut header = SetHeader::named(name);
            header.kind = words.next().ok_or("no set type")?.to_string();
            header.read_options(words);
            if header.kind == "hash:net" && header.family.is_none() {
                header.family = Some(Family::Ipv4);
            }
            inner.sets.insert(
                name.to_string(),
                FakeSet {
                    header,
                    entries: BTreeMap::new(),
                },
            );
        }
        "add" | "del" => {
            let entry = words.next().ok_or("no entry")?;
            let options: Vec<&str> = words.collect();
            let set = inner
                .sets
                .get_mut(name)
                .ok_or("The set with the given name does not exist")?;
            let net = parse_entry(entry)
                .filter(|n| Some(crate::plan::net_family(n)) == set.header.family)
                .ok_or("Syntax error: cannot parse the element")?;
            if command == "del" {
                set.entries
                    .remove(&net)
                    .ok_or("Element cannot be deleted from the set: it's not added")?;
            } else if set.entries.contains_key(&net) {
                return Err("Element cannot be added to the set: it's already added");
            } else if set.entries.len() >= set.header.maxelem as usize {
                return Err("Hash is full, cannot add more elements");
            } else {
                set.entries.insert(net, options.join(" "));
            }
        }
        "destroy" => {
            if !inner.sets.contains_key(name) {
                return Err("The set with the given name does not exist");
            }
            if references(inner, name) > 0 {
                return Err("Set cannot be destroyed: it is in use by a kernel component");
            }
            inner.sets.remove(name);
        }
        "flush" => inner
            .sets
            .get_mut(name)
            .ok_or("The set with the given name does not exist")?
            .entries
            .clear(),
        "swap" => {
            let other = words.next().ok_or("no second set")?;
            let (Some(a), Some(b)) = (inner.sets.get(name), inner.sets.get(other)) else {
                return Err("The set with the given name does not exist");
            };
            if a.header.kind != b.header.kind || a.header.family != b.header.family {
                return Err("The sets cannot be swapped: their type does not match");
            }
            let (mut a, mut b) = (a.clone(), b.clone());
            std::mem::swap(&mut a.header.name, &mut b.header.name);
            inner.sets.insert(name.to_string(), b);
            inner.sets.insert(other.to_string(), a);
        }
        _ => return Err("unknown command"),
    }
    Ok(())
}

fn new_table(table: Table) -> LiveTable {
    LiveTable {
        chains: table
            .builtin_chains()
            .iter()
            .map(|hook| LiveChain {
                name: hook.chain_name().to_string(),
                policy: Some(Policy::Accept),
                rules: Vec::new(),
            })
            .collect(),
    }
}

/// One command of a `--noflush` restore, applied to a table.
fn run(table: &mut LiveTable, line: &str) -> Result<(), &'static str> {
    let (command, rest) = line.split_once(' ').ok_or("command without a chain")?;
    let (chain, args) = rest.split_once(' ').unwrap_or((rest, ""));
    match command {
        "-N" => {
            if table.chain(chain).is_some() {
                return Err("chain already exists");
            }
            table.chains.push(LiveChain {
                name: chain.to_string(),
                policy: None,
                rules: Vec::new(),
            });
        }
        "-X" => {
            let index = table
                .chains
                .iter()
                .position(|c| c.name == chain && c.policy.is_none())
                .ok_or("no such user chain")?;
            if !table.chains[index].rules.is_empty() {
                return Err("chain is not empty");
            }
            let jump = format!("-j {chain}");
            let referenced = table
                .chains
                .iter()
                .flat_map(|c| &c.rules)
                .any(|r| r.spec.ends_with(&jump) || r.spec.contains(&format!("{jump} ")));
            if referenced {
                return Err("chain is still referenced");
            }
            table.chains.remove(index);
        }
        "-F" => table.chain_mut(chain).ok_or("no such chain")?.rules.clear(),
        "-P" => {
            let policy = Policy::parse(args).ok_or("bad policy")?;
            let chain = table
                .chain_mut(chain)
                .filter(|c| c.policy.is_some())
                .ok_or("policy of a user chain")?;
            chain.policy = Some(policy);
        }
        "-A" | "-I" | "-D" | "-R" => {
            let target = jump_target(args);
            if let Some(target) = target {
                let known = table.chain(target).is_some()
                    || !(is_owned_chain(target) || Hook::parse_chain(target).is_some());
                if !known && command != "-D" {
                    return Err("jump to a chain that does not exist");
                }
            }
            let rules = &mut table.chain_mut(chain).ok_or("no such chain")?.rules;
            match command {
                "-A" => rules.push(LiveRule::new(args)),
                "-I" => {
                    let (position, spec) = args.split_once(' ').ok_or("-I without a rule")?;
                    let position: usize = position.parse().map_err(|_| "bad position")?;
                    if position == 0 || position > rules.len() + 1 {
                        return Err("index of insertion too big");
                    }
                    rules.insert(position - 1, LiveRule::new(spec));
                }
                "-R" => {
                    let (position, spec) = args.split_once(' ').ok_or("-R without a rule")?;
                    let position: usize = position.parse().map_err(|_| "bad position")?;
                    if position == 0 || position > rules.len() {
                        return Err("index of replacement too big");
                    }
                    rules[position - 1] = LiveRule::new(spec);
                }
                _ => match args.parse::<usize>() {
                    Ok(position) => {
                        if position == 0 || position > rules.len() {
                            return Err("index of deletion too big");
                        }
                        rules.remove(position - 1);
                    }
                    // By text: the first rule that reads so, as the
                    // kernel deletes the first that matches.
                    Err(_) => {
                        let index = rules
                            .iter()
                            .position(|r| r.spec == args)
                            .ok_or("bad rule (does a matching rule exist in that chain?)")?;
                        rules.remove(index);
                    }
                },
            }
        }
        _ => return Err("unknown command"),
    }
    Ok(())
}

/// The `-j TARGET` of a rule, good enough for the rules tests write.
fn jump_target(spec: &str) -> Option<&str> {
    let mut words = spec.split(' ');
    words.find(|w| *w == "-j")?;
    words.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_noflush_commands() {
        let fake = Fake::new();
        let input = "*filter\n-N FWS-A\n-A FWS-A -j ACCEPT\n-I FWS-A 1 -j DROP\n-I INPUT 1 -j FWS-A\n-P INPUT DROP\nCOMMIT\n";
        fake.restore(Family::Ipv4, input).unwrap();
        let text = fake.save(Family::Ipv4).unwrap();
        assert_eq!(
            text,
            "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:FWS-A - [0:0]\n\
             -A INPUT -j FWS-A\n-A FWS-A -j DROP\n-A FWS-A -j ACCEPT\nCOMMIT\n"
        );
        let remove = "*filter\n-D INPUT -j FWS-A\n-D FWS-A 2\n-F FWS-A\n-X FWS-A\nCOMMIT\n";
        fake.restore(Family::Ipv4, remove).unwrap();
        assert!(fake.state(Family::Ipv4).tables[&Table::Filter]
            .chain("FWS-A")
            .is_none());
    }

    #[test]
    fn deletes_by_text_the_first_copy_and_replaces_by_position() {
        let fake = Fake::new();
        let input = "*filter\n-A INPUT -s 192.0.2.1/32 -j DROP\n-A INPUT -j ACCEPT\n\
                     -A INPUT -s 192.0.2.1/32 -j DROP\nCOMMIT\n";
        fake.restore(Family::Ipv4, input).unwrap();
        fake.restore(
            Family::Ipv4,
            "*filter\n-D INPUT -s 192.0.2.1/32 -j DROP\n-R INPUT 1 -i lo -j ACCEPT\nCOMMIT\n",
        )
        .unwrap();
        let rules: Vec<String> = fake.state(Family::Ipv4).tables[&Table::Filter]
            .chain("INPUT")
            .unwrap()
            .rules
            .iter()
            .map(|r| r.spec.clone())
            .collect();
        assert_eq!(rules, ["-i lo -j ACCEPT", "-s 192.0.2.1/32 -j DROP"]);
        assert!(fake
            .restore(Family::Ipv4, "*filter\n-R INPUT 3 -j DROP\nCOMMIT\n")
            .is_err());
    }

    #[test]
    fn a_refused_block_changes_nothing() {
        let fake = Fake::new();
        fake.restore(Family::Ipv4, "*filter\n-N FWS-A\nCOMMIT\n")
            .unwrap();
        let before = fake.state(Family::Ipv4);
        for (input, line) in [
            ("*filter\n-A FWS-A -j ACCEPT\n-X FWS-A\nCOMMIT\n", 3),
            ("*filter\n-A FWS-A -j ACCEPT\n-D FWS-A 2\nCOMMIT\n", 3),
            ("*filter\n-A INPUT -j FWS-B\nCOMMIT\n", 2),
            ("*filter\n-N FWS-A\nCOMMIT\n", 2),
        ] {
            match fake.restore(Family::Ipv4, input) {
                Err(BackendError::Rejected { line: l, .. }) => assert_eq!(l, line, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
            assert_eq!(fake.state(Family::Ipv4), before);
        }
        fake.fail_next_restore(Family::Ipv4);
        assert!(fake
            .restore(Family::Ipv4, "*filter\n-A FWS-A -j ACCEPT\nCOMMIT\n")
            .is_err());
        assert!(fake
            .restore(Family::Ipv4, "*filter\n-A FWS-A -j ACCEPT\nCOMMIT\n")
            .is_ok());
    }
}
