//! An in-memory kernel (backend ↔ **fake kernel**) for tests: it keeps a
//! [`LiveState`] per family, prints it as `iptables-save` would, and runs
//! the `--noflush` commands fwscript writes, one atomic table block at a
//! time, refusing what the kernel would refuse.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::{Backend, BackendError};
use crate::live::{LiveChain, LiveRule, LiveState, LiveTable};
use crate::netfilter::{is_owned_chain, Family, Hook, Policy, Table};

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
                continue;
            }
            if fault && (line.starts_with("-A ") || line.starts_with("-I ")) {
                return Err(reject(number, "injected failure"));
            }
            run(current, line).map_err(|message| reject(number, message))?;
        }
        match block {
            Some(_) => Err(reject(input.lines().count(), "missing COMMIT")),
            None => Ok(()),
        }
    }
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
