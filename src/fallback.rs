//! What goes into the kernel when the script cannot (boot → **fallback** →
//! write): the host is never left open (docs/boot.md). At boot a script that
//! does not evaluate, or an `apply --confirm` lost in a reboot, falls back
//! to the last good ruleset kept in the state folder; with none, to the
//! emergency ruleset: the baseline and SSH.

use crate::backend::Backend;
use crate::error::Error;
use crate::guard::SshConnection;
use crate::live::LiveState;
use crate::netfilter::Family;
use crate::ruleset::Ruleset;
use crate::state::{LastGood, Locked, StateDir, StateError};
use crate::transaction::{self, Intent, Keep, Records, Transaction};

/// The port the emergency ruleset keeps open, so an admin can log in and
/// fix the script.
pub const EMERGENCY_SSH_PORT: u16 = 22;

#[derive(Debug, Clone)]
pub enum Fallback {
    /// The last good ruleset from the state folder.
    LastGood {
        /// `None`: its record (`last-good.json`) is damaged, its rules are
        /// whole.
        meta: Option<LastGood>,
        rulesets: Vec<Ruleset>,
    },
    /// No good ruleset was ever kept: the baseline and SSH.
    Emergency {
        rulesets: Vec<Ruleset>,
        /// Why not a last good ruleset, for messages.
        why: String,
    },
}

impl Fallback {
    /// For logs, `STATUS=` and messages.
    pub fn describe(&self) -> String {
        match self {
            Fallback::LastGood {
                meta: Some(meta), ..
            } => format!(
                "the last good ruleset (`{}`, applied {})",
                meta.script,
                crate::confirm::utc(meta.applied_at)
            ),
            Fallback::LastGood { meta: None, .. } => {
                "the last good ruleset (its record `last-good.json` is damaged)".to_string()
            }
            Fallback::Emergency { why, .. } => format!(
                "the emergency ruleset (the baseline and SSH on port {EMERGENCY_SSH_PORT}: {why})"
            ),
        }
    }

    pub fn rulesets(&self) -> &[Ruleset] {
        match self {
            Fallback::LastGood { rulesets, .. } | Fallback::Emergency { rulesets, .. } => rulesets,
        }
    }
}

/// The last good ruleset, or the emergency one when there is none (or
/// what was kept owns nothing: a kernel without fwscript is no firewall).
/// It is chosen when the host must not stay open, so a kept ruleset that
/// cannot be read or believed (damaged by a power cut, a symlink, another
/// user's file) is logged and the emergency ruleset chosen, never an
/// error; whole rules whose record alone is damaged are still used.
pub fn choose(state: &StateDir) -> Result<Fallback, Error> {
    let mut why = "no good ruleset was ever kept";
    let mut unusable = |err: &dyn std::fmt::Display| {
        tracing::error!("{err}; the last good ruleset cannot be used");
        why = "the last good ruleset cannot be used";
    };
    let meta = match state.last_good() {
        Ok(Some(meta)) => Some(Some(meta)),
        Ok(None) => None,
        Err(err @ StateError::Damaged { .. }) => {
            tracing::error!("{err}; the last good ruleset's rules are used all the same");
            Some(None)
        }
        Err(err) => {
            unusable(&err);
            None
        }
    };
    let text = match meta.is_some().then(|| state.last_good_rules()) {
        Some(Ok(text)) => text,
        Some(Err(err)) => {
            unusable(&err);
            None
        }
        None => None,
    };
    if let (Some(meta), Some(text)) = (meta, text) {
        match parse_rules(&text) {
            Ok(rulesets) if owns_something(&rulesets) => {
                return Ok(Fallback::LastGood { meta, rulesets })
            }
            Ok(_) => {}
            Err(err) => {
                tracing::error!(
                    "the last good ruleset in `{}` is unreadable ({err}); using the emergency ruleset",
                    state.path().display()
                );
                why = "the last good ruleset cannot be used";
            }
        }
    }
    Ok(emergency(why))
}

/// The emergency ruleset: the baseline and SSH. `why`: why not a last
/// good one, for messages.
pub fn emergency(why: &str) -> Fallback {
    Fallback::Emergency {
        rulesets: transaction::desired(&crate::script::emergency_plan(EMERGENCY_SSH_PORT)),
        why: why.to_string(),
    }
}

/// Writes the fallback. It does not become the last good ruleset: the
/// script stays what fwscript tries to apply. `session`: the SSH session
/// the lockout guard keeps reachable, if any.
pub fn apply(
    backend: &dyn Backend,
    state: &Locked,
    fallback: &Fallback,
    command: &'static str,
    session: Option<SshConnection>,
) -> Result<Transaction, Error> {
    let script = match fallback {
        Fallback::LastGood {
            meta: Some(meta), ..
        } => format!("(last good: {})", meta.script),
        Fallback::LastGood { meta: None, .. } => "(last good)".to_string(),
        Fallback::Emergency { .. } => "(emergency ruleset)".to_string(),
    };
    // A kernel without fwscript's rules (a boot) is nothing to roll back
    // to: `rollback` would put the open, empty kernel back. So keep no
    // snapshot of it, and drop the one from before the reboot, which
    // describes a kernel that is gone: `rollback` then says there is
    // nothing to roll back.
    let boot_kernel = !kernel_holds_fwscript(backend)?;
    if boot_kernel {
        if let Err(err) = state.clear_snapshot() {
            tracing::error!(
                "{err}; `fwscript rollback` may put back the kernel from before the reboot"
            );
        }
    }
    let intent = Intent {
        rulesets: fallback.rulesets().to_vec(),
        script,
        command,
        keep: Keep::Unchanged,
        snapshot: !boot_kernel,
        policies: None,
        records: Records::BestEffort,
        // A kernel without fwscript's hooks (a boot) has no hook to move,
        // so the guard only refuses where fwscript's rules are in already.
        session,
    };
    transaction::write(backend, intent, Some(state))
}

/// Writes the emergency ruleset without a state folder: at boot, when the
/// folder cannot be used (docs/boot.md), nothing is read from it or
/// written to it.
pub fn apply_emergency_unrecorded(
    backend: &dyn Backend,
    command: &'static str,
    why: &str,
) -> Result<Fallback, Error> {
    let fallback = emergency(why);
    let intent = Intent {
        rulesets: fallback.rulesets().to_vec(),
        script: "(emergency ruleset)".to_string(),
        command,
        keep: Keep::Unchanged,
        snapshot: false,
        policies: None,
        records: Records::BestEffort,
        session: None,
    };
    transaction::write(backend, intent, None)?;
    Ok(fallback)
}

/// Whether the kernel holds any chain or hook of fwscript's, in either
/// family this host has.
pub fn kernel_holds_fwscript(backend: &dyn Backend) -> Result<bool, Error> {
    for family in crate::netfilter::Family::ALL {
        if backend.availability(family).is_err() {
            continue;
        }
        let live = backend.live(family)?;
        let owned = live.owned();
        if owned
            .tables
            .values()
            .any(|t| !t.chains.is_empty() || !t.hooks.is_empty())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn owns_something(rulesets: &[Ruleset]) -> bool {
    rulesets
        .iter()
        .flat_map(|r| r.tables.values())
        .any(|t| !t.chains.is_empty() || !t.hooks.is_empty())
}

/// Restore files as the state folder keeps them, each family introduced
/// by `# ipv4` or `# ipv6`, and the sets by `# ipset`, back into rulesets.
pub fn parse_rules(text: &str) -> Result<Vec<Ruleset>, String> {
    // `None`: the `# ipset` section.
    let mut sections: Vec<(Option<Family>, String)> = Vec::new();
    for line in text.lines() {
        let header = line
            .strip_prefix("# ")
            .map(str::trim)
            .and_then(|name| match name {
                "ipset" => Some(None),
                _ => Family::parse(name).map(Some),
            });
        match (header, sections.last_mut()) {
            (Some(section), _) => sections.push((section, String::new())),
            (None, Some((_, body))) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) if line.trim().is_empty() => {}
            (None, None) => {
                return Err("rules before the first `# ipv4`, `# ipv6` or `# ipset`".into())
            }
        }
    }
    let mut sets = Vec::new();
    let mut rulesets = Vec::new();
    for (section, body) in sections {
        match section {
            None => sets.extend(crate::sets::live::parse_owned(&body).map_err(|e| e.to_string())?),
            Some(family) => rulesets.push(
                LiveState::parse(family, &body)
                    .map(|live| live.owned())
                    .map_err(|err| err.to_string())?,
            ),
        }
    }
    for set in sets {
        let ruleset = rulesets
            .iter_mut()
            .find(|r| r.family == set.family)
            .ok_or_else(|| format!("set `{}` of a family without rules", set.name))?;
        ruleset.sets.push(set);
    }
    Ok(rulesets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_rules_read_back_per_family() {
        let plan = crate::script::emergency_plan(22);
        let rulesets = transaction::desired(&plan);
        let text = transaction::rules_text(&rulesets);
        let back = parse_rules(&text).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].family, Family::Ipv4);
        assert_eq!(back[1].family, Family::Ipv6);
        // The same owned state: the diff between them is empty.
        for (kept, rendered) in back.iter().zip(&rulesets) {
            let live =
                LiveState::parse(kept.family, &crate::render::restore_file(rendered)).unwrap();
            assert!(crate::diff::diff(&live, kept, &Default::default()).is_empty());
        }
        assert!(owns_something(&back));
        assert!(parse_rules("*filter\nCOMMIT\n").is_err());
    }

    #[test]
    fn kept_rules_hold_their_sets() {
        let dir = tempfile::tempdir().unwrap();
        let list: String = (0..20).map(|i| format!("198.51.100.{i}\n")).collect();
        std::fs::write(dir.path().join("l.txt"), list).unwrap();
        std::fs::write(
            dir.path().join("fw.rhai"),
            "block(address_list(\"l.txt\"));\n",
        )
        .unwrap();
        let plan = crate::script::evaluate(&dir.path().join("fw.rhai")).unwrap();
        let rulesets = transaction::desired(&plan);
        let text = transaction::rules_text(&rulesets);
        assert!(text.starts_with("# ipset\ncreate fws-"), "{text}");
        let back = parse_rules(&text).unwrap();
        assert_eq!(back[0].sets.len(), 1);
        assert!(back[1].sets.is_empty());
        assert_eq!(back[0].sets[0].entries, rulesets[0].sets[0].entries);
        assert_eq!(back[0].sets[0].name, rulesets[0].sets[0].name);
        assert_eq!(back[0].sets[0].maxelem, rulesets[0].sets[0].maxelem);
        // Read back, written again: the same records, so the same digest.
        assert_eq!(transaction::rules_text(&back), text);
        // A set section that does not read is refused, not half kept.
        assert!(parse_rules("# ipset\nadd fws-x 10.0.0.1\n# ipv4\n").is_err());
    }
}
