//! `reset`: remove everything fwscript owns, and put back the policies the
//! built-in chains had before fwscript first changed them.

use std::path::Path;

use super::report;
use super::Outcome;
use crate::backend::iptables::Iptables;
use crate::confirm;
use crate::error::Error;
use crate::netfilter::{Family, Table};
use crate::ruleset::{Ruleset, TableRuleset};
use crate::state::{OriginalPolicies, StateDir};
use crate::transaction::{self, Intent, Keep, Records};

pub fn reset(state_dir: &Path) -> Result<Outcome, Error> {
    let backend = Iptables::detect(None)?;
    let state = StateDir::open(state_dir)?;
    let locked = state.lock("reset")?;
    confirm::settle(&backend, &locked)?;
    confirm::ensure_none_pending(&locked)?;
    let originals = locked.original_policies()?;
    let intent = Intent {
        rulesets: Family::ALL
            .map(|family| reset_ruleset(family, &originals))
            .to_vec(),
        text: None,
        script: "(reset)".into(),
        command: "reset",
        keep: Keep::Unchanged,
        snapshot: true,
        // Put back, they are the kernel's own again: the next apply that
        // changes one learns it anew.
        policies: Some(OriginalPolicies::default()),
        records: Records::Required,
    };
    let transaction = transaction::write(&backend, intent, Some(&locked))?;
    report::report(&transaction, None, false, false)
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
