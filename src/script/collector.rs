//! What a script asks for while it runs, and how that becomes a [`Plan`]:
//! the user's rules in their stages, each stage its own owned chain, in the
//! order the kernel evaluates them: the deny stage first (its jump sits at
//! the top of the built-in chain), then the baseline of docs/functions.md and
//! the stages that can accept (reached from the end of the built-in chain).

use std::collections::{BTreeMap, HashMap, HashSet};

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::chunks::{jump_to, Chunker};
use super::rule_spec::{Expansion, Given, PlacedRule};
use crate::netfilter::{Family, Hook, Policy, Table, SET_PREFIX};
use crate::plan::{
    net_family, Action, AddressListSource, ChainPlan, ChainPolicy, CtState, FamilyPlan, IcmpType,
    Matches, Origin, Plan, Proto, Rule, SetPlan, SetRef, SetSource, Stage, TablePlan,
};

/// The pieces of the baseline a script can switch off with `baseline()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    pub loopback: bool,
    pub established: bool,
    pub invalid: bool,
    pub icmp: bool,
}

impl Baseline {
    pub const KEYS: [&'static str; 4] = ["loopback", "established", "invalid", "icmp"];
}

impl Default for Baseline {
    fn default() -> Baseline {
        Baseline {
            loopback: true,
            established: true,
            invalid: true,
            icmp: true,
        }
    }
}

/// A script may not make more rules than this: past it, the addresses
/// belong in a set, not in rules (docs/design.md).
pub const MAX_RULES: usize = 200_000;

#[derive(Debug, Default)]
pub struct Collector {
    /// The rules of each built-in chain, in script order: kept apart as
    /// they come (by stage, cut into chunks, in the filter table), so
    /// assembling the plan moves no rule (a rule is a few hundred bytes; a
    /// 10,000-call script makes 20,000 of them).
    rules: BTreeMap<(Family, Table, Hook), HookRules>,
    count: usize,
    policies: BTreeMap<Hook, ChainPolicy>,
    pub baseline: Baseline,
    /// The owned sets the rules match, in the order made, with the call
    /// that made each.
    sets: Vec<(SetRef, Origin, Given)>,
    /// How often each set key was used, for the occurrence in a set's name.
    set_keys: HashMap<String, usize>,
    set_names: HashSet<String>,
}

/// One built-in chain's rules.
#[derive(Debug, Default)]
struct HookRules {
    /// The filter table's, by stage in [`Stage::ALL`] order.
    staged: [Chunker; Stage::ALL.len()],
    /// The nat and mangle tables', which have no stages.
    plain: Vec<Rule>,
}

impl HookRules {
    fn push(&mut self, placed: PlacedRule) {
        if placed.table != Table::Filter {
            self.plain.push(placed.rule);
        } else if let Some(at) = Stage::ALL.iter().position(|&s| Some(s) == placed.stage) {
            self.staged[at].push(placed.rule);
        }
    }
}

impl Collector {
    pub fn add(&mut self, mut rules: Expansion) -> Result<(), String> {
        let count = rules.count();
        if self.count + count > MAX_RULES {
            return Err(format!("the script makes more than {MAX_RULES} rules"));
        }
        self.count += count;
        self.name_sets(&mut rules);
        rules.for_each(|rule| self.push_rule(rule));
        Ok(())
    }

    /// Names the sets of an expansion after where and how they are used
    /// (family, table, chain, stage, the rest of the rule, `src` or `dst`,
    /// and the occurrence of all that), never after their entries: adding
    /// or removing an address keeps the name, so the set is edited in
    /// place and the rule matching it keeps its id and its counters.
    fn name_sets(&mut self, rules: &mut Expansion) {
        // Almost no call makes a set: the key is the rule's whole text.
        if rules.sets_mut().next().is_none() {
            return;
        }
        let key = rules.set_key();
        let origin = rules.origin().clone();
        let mut made = Vec::new();
        for (direction, set, given) in rules.sets_mut() {
            let key = format!("{}|{}|{key}", set.family, direction.name());
            let occurrence = self.set_keys.entry(key.clone()).or_default();
            let mut counter = *occurrence as u64;
            *occurrence += 1;
            set.name = loop {
                let name = set_name(&key, counter);
                // A 48-bit collision, or a key and occurrence that happen
                // to meet another's: draw again, the name stays unique.
                if self.set_names.insert(name.clone()) {
                    break name;
                }
                counter += 1 << 32;
            };
            made.push((set.clone(), origin.clone(), given));
        }
        self.sets.extend(made);
    }

    /// One rule made by fwscript itself (the emergency ruleset), not by a
    /// script call.
    pub fn push(&mut self, rule: PlacedRule) {
        self.count += 1;
        self.push_rule(rule);
    }

    fn push_rule(&mut self, rule: PlacedRule) {
        self.rules
            .entry((rule.family, rule.table, rule.hook))
            .or_default()
            .push(rule);
    }

    pub fn set_policy(&mut self, hook: Hook, policy: Policy, origin: Origin) {
        self.policies.insert(
            hook,
            ChainPolicy {
                policy,
                origin: Some(origin),
            },
        );
    }

    pub fn into_plan(mut self, sources: Vec<PathBuf>, lists: Vec<AddressListSource>) -> Plan {
        let mut sets = set_plans(std::mem::take(&mut self.sets), &lists);
        let families = Family::ALL
            .into_iter()
            .map(|family| {
                let mut plan = self.family_plan(family);
                plan.sets = sets.remove(&family).unwrap_or_default();
                (family, plan)
            })
            .collect();
        Plan {
            sources,
            address_lists: lists,
            families,
        }
    }

    fn family_plan(&mut self, family: Family) -> FamilyPlan {
        let mut tables = BTreeMap::new();
        for table in Table::ALL {
            let plan = self.table_plan(family, table);
            if !plan.policies.is_empty() || !plan.chains.is_empty() {
                tables.insert(table, plan);
            }
        }
        FamilyPlan {
            tables,
            sets: Vec::new(),
        }
    }

    /// Consumes the rules of `family` and `table`, moving each into its
    /// chain's plan: a long list is held once.
    fn table_plan(&mut self, family: Family, table: Table) -> TablePlan {
        let mut plan = TablePlan::default();
        if table == Table::Filter {
            plan.policies = self.filter_policies();
        }
        for &hook in table.builtin_chains() {
            let rules = self
                .rules
                .remove(&(family, table, hook))
                .unwrap_or_default();
            if table == Table::Filter {
                let output_drops = plan
                    .policies
                    .get(&Hook::Output)
                    .is_some_and(|p| p.policy == Policy::Drop);
                let baseline = baseline_rules(self.baseline, family, hook, output_drops);
                plan.chains
                    .extend(staged_chains(hook, baseline, rules.staged));
            } else {
                if rules.plain.is_empty() {
                    continue;
                }
                plan.chains.push(ChainPlan {
                    name: hook.owned_chain(),
                    hook,
                    stage: None,
                    rules: rules.plain,
                });
            }
        }
        plan
    }

    fn filter_policies(&self) -> BTreeMap<Hook, ChainPolicy> {
        let defaults = [
            (Hook::Input, Policy::Drop),
            (Hook::Forward, Policy::Drop),
            (Hook::Output, Policy::Accept),
        ];
        defaults
            .into_iter()
            .map(|(hook, policy)| {
                let chosen = self.policies.get(&hook).cloned().unwrap_or(ChainPolicy {
                    policy,
                    origin: None,
                });
                (hook, chosen)
            })
            .collect()
    }
}

/// `fws-` and 12 hex digits of a hash of what the set is used for: 16
/// characters, well within ipset's 31.
fn set_name(key: &str, occurrence: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update([0]);
    hasher.update(occurrence.to_le_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{SET_PREFIX}{hex}")
}

/// The plan's sets per family, sorted by name, each with its source: the
/// address list whose entries of that family the call handed over as read
/// (same addresses, same order), or else the call that made it.
fn set_plans(
    made: Vec<(SetRef, Origin, Given)>,
    lists: &[AddressListSource],
) -> BTreeMap<Family, Vec<SetPlan>> {
    // Each list's entries of a family in brief, made only when a set of
    // that family needs them.
    let mut briefs: HashMap<(usize, Family), Given> = HashMap::new();
    let mut plans: BTreeMap<Family, Vec<SetPlan>> = BTreeMap::new();
    for (set, origin, given) in made {
        // The addresses came as the list file gave them, in its order.
        let list = lists.iter().enumerate().find(|&(i, list)| {
            let brief = briefs.entry((i, set.family)).or_insert_with(|| {
                Given::of(list.entries.iter().filter(|n| net_family(n) == set.family))
            });
            *brief == given
        });
        let source = match list {
            Some((_, list)) => SetSource::List(list.shown.clone()),
            None => SetSource::Call(origin),
        };
        plans.entry(set.family).or_default().push(SetPlan {
            name: set.name,
            family: set.family,
            entries: set.entries,
            source,
        });
    }
    for sets in plans.values_mut() {
        sets.sort_by(|a, b| a.name.cmp(&b.name));
    }
    plans
}

/// The entry chain for `hook` and one chain per non-empty stage, the entry
/// chain jumping to them in [`Stage::ALL`] order: deny, baseline, limit,
/// allow, log. Render lifts the jump to the deny stage out of the entry
/// chain to the top of the built-in chain ([`TablePlan::hooks`]).
fn staged_chains(
    hook: Hook,
    mut baseline: Vec<Rule>,
    user: [Chunker; Stage::ALL.len()],
) -> Vec<ChainPlan> {
    let mut stages: Vec<Vec<ChainPlan>> = Vec::new();
    for (stage, mut rules) in Stage::ALL.into_iter().zip(user) {
        if stage == Stage::Baseline && !baseline.is_empty() {
            // The baseline comes first in its stage, and chunk boundaries
            // count from a chunk's start: cut again with it in front.
            let mut whole = Chunker::default();
            for rule in std::mem::take(&mut baseline)
                .into_iter()
                .chain(rules.into_rules())
            {
                whole.push(rule);
            }
            rules = whole;
        }
        if !rules.is_empty() {
            stages.push(rules.finish(stage.chain_name(hook), hook, Some(stage)));
        }
    }
    if stages.is_empty() {
        return Vec::new();
    }
    let jumps = stages
        .iter()
        .map(|chains| jump_to(&chains[0].name))
        .collect();
    let mut chains = vec![ChainPlan {
        name: hook.owned_chain(),
        hook,
        stage: None,
        rules: jumps,
    }];
    chains.extend(stages.into_iter().flatten());
    chains
}

fn baseline_rules(baseline: Baseline, family: Family, hook: Hook, output_drops: bool) -> Vec<Rule> {
    let rule = |matches: Matches, action: Action| Rule {
        matches,
        action,
        comment: None,
        origin: None,
    };
    let mut rules = Vec::new();
    let incoming = hook == Hook::Input;
    let guarded = match hook {
        Hook::Input | Hook::Forward => true,
        // An accepting OUTPUT needs no help; a dropping one needs the same
        // basics as INPUT or the host cannot answer anyone.
        Hook::Output => output_drops,
        Hook::Prerouting | Hook::Postrouting => false,
    };
    if !guarded {
        return rules;
    }
    if baseline.loopback && hook != Hook::Forward {
        let lo = Some("lo".to_string());
        let matches = if incoming {
            Matches {
                iface: lo,
                ..Matches::default()
            }
        } else {
            Matches {
                oface: lo,
                ..Matches::default()
            }
        };
        rules.push(rule(matches, Action::Accept));
    }
    if baseline.established {
        let state = vec![CtState::Established, CtState::Related];
        rules.push(rule(
            Matches {
                state,
                ..Matches::default()
            },
            Action::Accept,
        ));
    }
    if baseline.invalid {
        rules.push(rule(
            Matches {
                state: vec![CtState::Invalid],
                ..Matches::default()
            },
            Action::Drop,
        ));
    }
    if baseline.icmp && hook != Hook::Forward {
        let (proto, types): (Proto, &[(&str, u8)]) = match (family, incoming) {
            (Family::Ipv4, true) => (
                Proto::Icmp,
                &[("destination-unreachable", 3), ("time-exceeded", 11)],
            ),
            // Outgoing IPv4 errors are RELATED to the connection they are about.
            (Family::Ipv4, false) => (Proto::Icmp, &[]),
            (Family::Ipv6, true) => (Proto::Icmpv6, ICMP6_NEEDED),
            (Family::Ipv6, false) => (Proto::Icmpv6, ICMP6_DISCOVERY),
        };
        for &(name, number) in types {
            let matches = Matches {
                proto: Some(proto),
                icmp_type: Some(IcmpType {
                    name: name.into(),
                    number,
                }),
                ..Matches::default()
            };
            rules.push(rule(matches, Action::Accept));
        }
    }
    rules
}

/// IPv6 without these is broken: neighbour and router discovery replace
/// ARP and DHCP, and packet-too-big replaces fragmentation on the way.
const ICMP6_NEEDED: &[(&str, u8)] = &[
    ("destination-unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("router-solicitation", 133),
    ("router-advertisement", 134),
    ("neighbour-solicitation", 135),
    ("neighbour-advertisement", 136),
];

const ICMP6_DISCOVERY: &[(&str, u8)] = &[
    ("router-solicitation", 133),
    ("neighbour-solicitation", 135),
    ("neighbour-advertisement", 136),
];
