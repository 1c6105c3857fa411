//! `reset`: remove everything fwscript owns, and put back the policies the
//! built-in chains had before fwscript first changed them. On a terminal it
//! shows what goes and asks first, unless `--yes`; without one it never
//! asks (and so never waits for an answer nobody can give). `--json` on a
//! terminal cannot ask, so there it needs `--yes`.

use std::fmt;
use std::io::{BufRead as _, IsTerminal as _};
use std::path::Path;

use super::report::{changes_word, Report};
use super::warnings::Warning;
use super::{Outcome, Ui};
use crate::backend::iptables::Iptables;
use crate::backend::{Backend, BackendError};
use crate::cli::ResetArgs;
use crate::confirm;
use crate::error::Error;
use crate::foreign;
use crate::live::LiveState;
use crate::netfilter::{Family, Hook, Policy, Table};
use crate::ruleset::{Ruleset, TableRuleset};
use crate::state::{OriginalPolicies, StateDir};
use crate::transaction::{self, Intent, Keep, Records};

pub fn reset(ui: &Ui, args: &ResetArgs, state_dir: &Path) -> Result<Outcome, Error> {
    let terminal = !args.yes && !args.dry_run && on_a_terminal();
    if terminal && args.json {
        // Someone is at the keyboard, but a question would break the one
        // JSON object: rather than remove everything unasked, refuse.
        return Err(Error::Refused(
            "`reset --json` on a terminal does not ask, so it needs `--yes`: nothing was \
             changed\n  = hint: `fwscript reset --dry-run --json` shows what would go"
                .to_string(),
        ));
    }
    let backend = Iptables::detect(None)?;
    let ask = terminal;
    if args.dry_run || ask {
        // Read only, without the lock: a question may wait a long time.
        let state = StateDir::open_existing(state_dir)?;
        let originals = match &state {
            Some(state) => state.original_policies()?,
            None => OriginalPolicies::default(),
        };
        let mut rulesets = rulesets(&originals);
        let kept = keep_neighbours_policies(&backend, &mut rulesets)?;
        let preview = transaction::preview(&backend, rulesets, state.as_ref())?;
        let survey = &preview.survey;
        let report = Report {
            command: "reset",
            dry_run: true,
            json: args.json,
            warnings: kept
                .iter()
                .map(Warning::policy_kept)
                .chain(state.as_ref().and_then(daemon_warning))
                .collect(),
            ..Report::default()
        };
        if args.dry_run {
            let last = match survey.change_count() {
                0 => "no changes: fwscript owns nothing here".to_string(),
                n => format!("dry run: {} not applied", changes_word(n)),
            };
            report.print(ui, survey, &last)?;
            return Ok(Outcome::Done);
        }
        if !survey.in_sync() {
            let last = format!("reset: {} to make", changes_word(survey.change_count()));
            report.print(ui, survey, &last)?;
            eprint!("remove everything fwscript owns and put the policies back? [y/N] ");
            if !answered_yes() {
                return Err(Error::Refused(
                    "reset cancelled: nothing was changed".to_string(),
                ));
            }
        }
    }
    let state = StateDir::open(state_dir)?;
    let locked = state.lock("reset")?;
    confirm::settle(&backend, &locked)?;
    confirm::ensure_none_pending(&locked)?;
    let originals = locked.original_policies()?;
    let mut rulesets = rulesets(&originals);
    let kept = keep_neighbours_policies(&backend, &mut rulesets)?;
    let intent = Intent {
        rulesets,
        script: "(reset)".into(),
        command: "reset",
        keep: Keep::Unchanged,
        snapshot: true,
        // Put back, they are the kernel's own again: the next apply that
        // changes one learns it anew.
        policies: Some(OriginalPolicies::default()),
        records: Records::Required,
        // A reset removes fwscript's hooks; it moves none.
        session: None,
    };
    let transaction = transaction::write(&backend, intent, Some(&locked))?;
    let last = match transaction.survey.change_count() {
        0 => "no changes: fwscript owns nothing here".to_string(),
        n => format!("reset: {} applied", changes_word(n)),
    };
    let report = Report {
        command: "reset",
        json: args.json,
        warnings: kept
            .iter()
            .map(Warning::policy_kept)
            .chain(daemon_warning(&locked))
            .collect(),
        ..Report::default()
    };
    report.print(ui, &transaction.survey, &last)?;
    Ok(Outcome::Done)
}

/// A `watch` daemon on the same state folder puts its script's rules back
/// at its next event or drift check.
fn daemon_warning(state: &StateDir) -> Option<Warning> {
    let daemon = state.daemon().ok()??;
    daemon.is_alive().then(|| Warning::daemon_reset(&daemon))
}

fn rulesets(originals: &OriginalPolicies) -> Vec<Ruleset> {
    Family::ALL
        .map(|family| reset_ruleset(family, originals))
        .to_vec()
}

/// Someone can answer: both the keyboard and the screen are a terminal.
fn on_a_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn answered_yes() -> bool {
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

/// Nothing owned, and every policy fwscript changed back to what it was
/// before. A policy fwscript never changed is left as it is: a DROP that
/// Docker set on FORWARD stays.
pub fn reset_ruleset(family: Family, originals: &OriginalPolicies) -> Ruleset {
    let mut ruleset = Ruleset::empty(family);
    for table in Table::ALL {
        let policies = table
            .builtin_chains()
            .iter()
            .filter_map(|&hook| Some((hook, originals.get(family, table, hook)?)))
            .collect();
        ruleset.tables.insert(
            table,
            TableRuleset {
                policies,
                ..TableRuleset::default()
            },
        );
    }
    ruleset
}

/// A policy reset leaves as it is instead of opening it: a known
/// neighbour's rules sit in the chain and count on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptPolicy {
    pub family: Family,
    pub table: Table,
    pub hook: Hook,
    /// What the chain has now, and keeps.
    pub policy: Policy,
    /// What fwscript found before it first changed it.
    pub original: Policy,
    pub neighbour: &'static str,
}

impl fmt::Display for KeptPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chain = self.hook.chain_name();
        let tool = match self.family {
            Family::Ipv4 => "iptables",
            Family::Ipv6 => "ip6tables",
        };
        write!(
            f,
            "{} {} {chain} keeps its policy {}, not the {} fwscript found before it first changed \
             it: rules of {} sit in {chain} and count on it (opening it would let through what \
             {} drops); set it yourself with `{tool} -P {chain} {}` if you mean it",
            self.family,
            self.table,
            self.policy,
            self.original,
            self.neighbour,
            self.neighbour,
            self.original
        )
    }
}

/// Reset never opens a built-in chain to ACCEPT while a known neighbour's
/// rules sit in it: fwscript may have recorded ACCEPT before the neighbour
/// started (Docker after it at boot) and set DROP itself. Such policies are
/// taken out of `rulesets`, so they stay as they are, and returned to be
/// said.
fn keep_neighbours_policies(
    backend: &dyn Backend,
    rulesets: &mut [Ruleset],
) -> Result<Vec<KeptPolicy>, Error> {
    let mut kept = Vec::new();
    for ruleset in rulesets {
        let family = ruleset.family;
        if backend.availability(family).is_err() {
            // The write skips it too, and says so.
            continue;
        }
        let text = backend.save(family)?;
        let live = LiveState::parse(family, &text).map_err(BackendError::from)?;
        for (&table, wanted) in ruleset.tables.iter_mut() {
            let Some(live_table) = live.table(table) else {
                continue;
            };
            wanted.policies.retain(|&hook, &mut original| {
                if original != Policy::Accept {
                    return true;
                }
                let Some((_, chain)) = live_table.builtin_chains().find(|(h, _)| *h == hook) else {
                    return true;
                };
                let policy = chain.policy.unwrap_or(Policy::Accept);
                let neighbour = foreign::neighbour_in(&chain.rules);
                match (policy, neighbour) {
                    (Policy::Accept, _) | (_, None) => true,
                    (policy, Some(neighbour)) => {
                        kept.push(KeptPolicy {
                            family,
                            table,
                            hook,
                            policy,
                            original,
                            neighbour,
                        });
                        false
                    }
                }
            });
        }
    }
    Ok(kept)
}
