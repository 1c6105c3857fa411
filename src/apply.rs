//! Apply (changeset → **kernel** → verify): read each family once, diff,
//! write each family that differs in one restore, put back what was
//! written when a later write fails, then read back and diff again.
//!
//! Split in two steps, [`survey`] then [`apply`], so what runs between them
//! (showing the plan, a lockout check, saving a rollback snapshot from
//! [`FamilySurvey::live`]) sees exactly what will be written.

use crate::backend::{Backend, BackendError, IPSET};
use crate::diff::{diff, restore_input, Change, Changeset};
use crate::foreign::{foreign_warnings, summarise, ForeignWarning};
use crate::forms::KernelForms;
use crate::live::LiveState;
use crate::netfilter::{Family, Table};
use crate::readback::Touched;
use crate::ruleset::{Origin, Ruleset};
use crate::sets::{self, diff_sets, LiveSet, OwnedSet, SetChange};

/// The kernel as read, and what it takes to match the desired rulesets.
#[derive(Debug, Clone)]
pub struct Survey {
    /// Families this host can do, IPv4 first.
    pub families: Vec<FamilySurvey>,
    /// Families this host cannot do, with the reason; their half of the
    /// script is not applied.
    pub skipped: Vec<(Family, String)>,
    /// Foreign rules that change what the script means, both families, a
    /// known neighbour's summed up in one line.
    pub warnings: Vec<ForeignWarning>,
    /// fwscript's ipsets, both families at once (ipsets are not per
    /// family).
    pub sets: SetSurvey,
}

#[derive(Debug, Clone)]
pub struct FamilySurvey {
    /// The snapshot: the kernel as read before any write.
    pub live: LiveState,
    pub desired: Ruleset,
    pub changes: Changeset,
}

/// The owned sets as read, and the edits they need.
#[derive(Debug, Clone, Default)]
pub struct SetSurvey {
    /// The snapshot of fwscript's sets (of the families this host can do)
    /// before any write; empty when they could not be read and the script
    /// needs none.
    pub live: Vec<LiveSet>,
    /// Creates, entry edits, swaps and destroys, wanted sets first.
    pub changes: Vec<SetChange>,
}

impl SetSurvey {
    /// The sets as read, as the ruleset of `family` holds them: what a
    /// snapshot keeps and `rollback` puts back.
    pub fn owned(&self, family: Family) -> Vec<OwnedSet> {
        self.live
            .iter()
            .filter(|set| set.header.owner() == family)
            .map(OwnedSet::from)
            .collect()
    }
}

impl Survey {
    pub fn in_sync(&self) -> bool {
        self.families.iter().all(|f| f.changes.is_empty()) && self.sets.changes.is_empty()
    }

    /// Rule and chain changes, plus one per set edited.
    pub fn change_count(&self) -> usize {
        self.families.iter().map(|f| f.changes.len()).sum::<usize>() + self.sets.changes.len()
    }

    /// The rule, chain and policy changes (the set changes are
    /// [`Survey::set_changes`]).
    pub fn changes(&self) -> impl Iterator<Item = (Family, Table, &Change)> {
        self.families.iter().flat_map(|f| {
            f.changes
                .changes()
                .map(move |(table, change)| (f.live.family, table, change))
        })
    }

    pub fn set_changes(&self) -> impl Iterator<Item = &SetChange> {
        self.sets.changes.iter()
    }

    pub fn warnings(&self) -> impl Iterator<Item = &ForeignWarning> {
        self.warnings.iter()
    }

    /// The kernel's owned state of `family` as read, sets included: the
    /// snapshot a write keeps.
    pub fn snapshot(&self, family: &FamilySurvey) -> Ruleset {
        let mut owned = family.live.owned();
        owned.sets = self.sets.owned(family.live.family);
        owned
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot read the {family} rules: {source}")]
    Read {
        family: Family,
        source: Box<BackendError>,
    },
    #[error("cannot read the ipsets: {source}")]
    ReadSets { source: Box<BackendError> },
    #[error(
        "the script keeps {sets} in ipsets, and this host cannot make them: {source}; \
         install the `{IPSET}` package (`apt-get install {IPSET}`, `dnf install {IPSET}`), \
         nothing was changed"
    )]
    NoIpset {
        /// What needs the sets: `lists/blocklist.txt`, …
        sets: String,
        source: Box<BackendError>,
    },
    #[error("refusing to write: {change}; nothing was changed")]
    SetConflict { change: String },
    #[error("writing the {family} rules failed: {source}{}{}", origin_note(.origin), rollback_note(.restored, *.sets_restored))]
    Write {
        family: Family,
        source: Box<BackendError>,
        /// The script call behind the rejected line, when it is a rule.
        origin: Option<Origin>,
        /// Families put back to their snapshot after part of them was written.
        restored: Vec<Family>,
        /// Whether the sets were put back too.
        sets_restored: bool,
    },
    #[error("writing the ipsets failed: {source}{}{}", set_note(.set), rollback_note(&[], *.sets_restored))]
    WriteSets {
        source: Box<BackendError>,
        /// The set of the rejected line, and where its entries come from.
        set: Option<String>,
        sets_restored: bool,
    },
    #[error(
        "writing the {what} failed: {source}; putting {restoring} back failed as \
         well, so the kernel may hold part of the change: {rollback}"
    )]
    Rollback {
        /// `ipv4 rules`, `ipv6 rules` or `ipsets`: the write that failed.
        what: String,
        source: Box<BackendError>,
        /// `ipv4`, `ipv6`, or `the ipsets`.
        restoring: String,
        rollback: Box<ApplyError>,
    },
    #[error(
        "the {family} rules still differ from the script after writing them ({remaining} \
         changes, first: {first}); is another program changing the firewall?"
    )]
    Verify {
        family: Family,
        remaining: usize,
        first: String,
    },
    #[error("set {set} is not what was written: {found}; is another program changing the ipsets?")]
    VerifySet { set: String, found: String },
}

impl ApplyError {
    /// Whether the kernel is as it was: refused before any write, or a
    /// failed write put back.
    pub fn wrote_nothing(&self) -> bool {
        match self {
            ApplyError::SetConflict { .. } | ApplyError::NoIpset { .. } => true,
            ApplyError::Write { .. } => true,
            ApplyError::WriteSets { sets_restored, .. } => *sets_restored,
            _ => false,
        }
    }
}

fn origin_note(origin: &Option<Origin>) -> String {
    origin
        .as_ref()
        .map(|o| format!(" (the rule from {o})"))
        .unwrap_or_default()
}

fn set_note(set: &Option<String>) -> String {
    set.as_ref()
        .map(|s| format!(" (set {s})"))
        .unwrap_or_default()
}

fn rollback_note(restored: &[Family], sets: bool) -> String {
    let mut names: Vec<&str> = restored.iter().map(|f| f.name()).collect();
    if sets {
        names.push("the ipsets");
    }
    match names.as_slice() {
        [] => "; nothing was changed".to_string(),
        [one] if !sets => format!("; {one} put back as it was"),
        _ => format!("; {} put back as they were", names.join(" and ")),
    }
}

/// Reads every available family once (both at the same time, and the
/// ipsets beside them) and diffs it against its desired ruleset; `forms`
/// (the kernel's texts of fwscript's rules from its last verified write)
/// find rules changed behind its back.
///
/// The ipsets are read with `ipset save`. A host without the ipset tool
/// fails here, before anything is written, only when the rulesets want a
/// set: a script without sets never needs the tool.
pub fn survey(
    backend: &dyn Backend,
    desired: Vec<Ruleset>,
    forms: &KernelForms,
) -> Result<Survey, ApplyError> {
    let mut skipped = Vec::new();
    let mut wanted = Vec::new();
    for ruleset in desired {
        match backend.availability(ruleset.family) {
            Ok(()) => wanted.push(ruleset),
            Err(reason) => skipped.push((ruleset.family, reason)),
        }
    }
    let families: Vec<Family> = wanted.iter().map(|r| r.family).collect();
    let (lives, sets) = read_all(backend, &families)?;
    let wanted_sets: Vec<&OwnedSet> = wanted.iter().flat_map(|r| &r.sets).collect();
    let live_sets = match sets {
        Ok(sets) => sets,
        Err(source) if wanted_sets.is_empty() => {
            // Nothing to make, and nothing fwscript made can be seen: a
            // host without ipsets has none of fwscript's either.
            tracing::debug!("ipsets not read: {source}");
            Vec::new()
        }
        Err(ApplyError::ReadSets { source })
            if matches!(*source, BackendError::NotFound { .. }) =>
        {
            return Err(ApplyError::NoIpset {
                sets: needing_sets(&wanted_sets),
                source,
            })
        }
        Err(other) => return Err(other),
    };
    let live_sets: Vec<LiveSet> = live_sets
        .into_iter()
        .filter(|set| families.contains(&set.header.owner()))
        .collect();
    let set_changes = diff_sets(&live_sets, &wanted_sets);
    let mut warnings = Vec::new();
    let families = lives
        .into_iter()
        .zip(wanted)
        .map(|(live, desired)| {
            warnings.extend(foreign_warnings(&live, &desired));
            FamilySurvey {
                changes: diff(&live, &desired, forms),
                live,
                desired,
            }
        })
        .collect();
    Ok(Survey {
        families,
        skipped,
        warnings: summarise(warnings),
        sets: SetSurvey {
            live: live_sets,
            changes: set_changes,
        },
    })
}

/// The list files (or script lines) whose sets a host without ipset
/// cannot make, for the error.
fn needing_sets(sets: &[&OwnedSet]) -> String {
    let mut sources: Vec<String> = sets
        .iter()
        .map(|s| {
            s.source
                .as_ref()
                .map_or(s.name.clone(), ToString::to_string)
        })
        .collect();
    sources.sort();
    sources.dedup();
    let what = if sources.len() == 1 { "list" } else { "lists" };
    format!("the address {what} {}", sources.join(", "))
}

/// Writes what the survey found, then verifies. Returns each family written
/// as read back right after its write, verified (what a caller records as
/// the kernel's forms of fwscript's rules); a family whose rules were in
/// sync but whose sets changed comes back as read before the write; none
/// when the kernel was in sync.
///
/// The order keeps every rule's set in place: sets are made and filled
/// first (one `ipset restore`), then the families are written at the same
/// time (each restore is its own process and kernel transaction, neither
/// waits on the other), and sets no rule uses any more are destroyed last.
/// When a write fails, everything written before it is put back from the
/// snapshot. Each family is read back as soon as its write is done; the
/// sets by their headers and number of entries (`ipset list -t`), which
/// costs nothing like reading 100,000 entries again: every add and delete
/// was already checked one by one by `ipset restore`.
pub fn apply(backend: &dyn Backend, survey: &Survey) -> Result<Vec<LiveState>, ApplyError> {
    if let Some(change) = survey.sets.changes.iter().find(|c| c.conflict().is_some()) {
        return Err(ApplyError::SetConflict {
            change: change.to_string(),
        });
    }
    let set_input = sets::diff::restore_input(&survey.sets.changes);
    let sets_first = !set_input.before.is_empty();
    if sets_first {
        tracing::debug!("writing {} set changes", survey.sets.changes.len());
        if let Err(source) = backend.restore_sets(&set_input.before) {
            let set = rejected_set(&source, &survey.sets.changes);
            return Err(put_back(
                backend,
                survey,
                &[],
                true,
                Failed::Sets {
                    source: Box::new(source),
                    set,
                },
            ));
        }
    }
    let pending: Vec<&FamilySurvey> = survey
        .families
        .iter()
        .filter(|f| !f.changes.is_empty())
        .collect();
    let outcomes: Vec<Result<(ReadBack, u32), Failure>> = std::thread::scope(|scope| {
        let workers: Vec<_> = pending
            .iter()
            .map(|&family| scope.spawn(move || write_and_read(backend, family)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("writer panicked"))
            .collect()
    });
    let mut read_back = Vec::new();
    let mut failed_write = None;
    let mut commits = 0;
    for (family, outcome) in pending.iter().zip(outcomes) {
        match outcome {
            Err(Failure::Write { source, origin }) => {
                failed_write.get_or_insert((family.live.family, source, origin));
            }
            Err(Failure::Read(err)) => read_back.push((family, Err(err))),
            Ok((read, blocks)) => {
                commits += blocks;
                read_back.push((family, Ok(read)));
            }
        }
    }
    if let Some((family, source, origin)) = failed_write {
        // Legacy commits table by table, so the failing family may be half
        // written too: put back every family that was attempted.
        return Err(put_back(
            backend,
            survey,
            &pending,
            sets_first,
            Failed::Rules {
                family,
                source: Box::new(source),
                origin,
            },
        ));
    }
    if !set_input.after.is_empty() {
        destroy_sets(backend, &set_input.after);
    }
    let mut families = Vec::new();
    // A table the write made, read back only in the chains it touched, is
    // not known as a save prints a table: the next command reads it whole.
    let mut partly_known = false;
    for (family, read) in read_back {
        let live = match read? {
            ReadBack::Whole(live) => {
                verify(&live, &family.desired)?;
                live
            }
            ReadBack::Chains { touched, live } => {
                verify(&live, &touched.restrict(&family.desired))?;
                let merged = touched.merge(&family.live, &live);
                partly_known |= merged
                    .tables
                    .keys()
                    .any(|table| !family.live.tables.contains_key(table));
                merged
            }
        };
        families.push(live);
    }
    if !survey.sets.changes.is_empty() {
        verify_sets(backend, survey)?;
        // Families whose rules were in sync, but whose sets changed: the
        // rules are as read.
        for family in &survey.families {
            let name = family.live.family;
            let touched = survey.sets.changes.iter().any(|c| c.family == name);
            if touched && !families.iter().any(|l: &LiveState| l.family == name) {
                families.push(family.live.clone());
            }
        }
        families.sort_by_key(|l| l.family);
    }
    // What the kernel holds now, every family, for the next command's read:
    // those written as verified, the others as read before.
    let now: Vec<&LiveState> = survey
        .families
        .iter()
        .map(|f| {
            families
                .iter()
                .find(|l| l.family == f.live.family)
                .unwrap_or(&f.live)
        })
        .collect();
    if !partly_known {
        backend.written(commits, &now);
    }
    Ok(families)
}

/// What was read back after a family's write: all of it, or only the
/// chains the write touched (see [`crate::readback`]).
enum ReadBack {
    Whole(LiveState),
    Chains { touched: Touched, live: LiveState },
}

fn read_back(backend: &dyn Backend, family: &FamilySurvey) -> Result<ReadBack, ApplyError> {
    let name = family.live.family;
    let touched = Touched::of(&family.changes);
    if !backend.lists_chains_cheaply() || !touched.worth_reading_alone(&family.live) {
        return read(backend, name).map(ReadBack::Whole);
    }
    match touched.read(backend, name) {
        Ok(live) => Ok(ReadBack::Chains { touched, live }),
        Err(source) => Err(ApplyError::Read {
            family: name,
            source: Box::new(source),
        }),
    }
}

enum Failure {
    Write {
        source: BackendError,
        origin: Option<Origin>,
    },
    Read(ApplyError),
}

/// The write that failed and made a put-back necessary.
enum Failed {
    Rules {
        family: Family,
        source: Box<BackendError>,
        origin: Option<Origin>,
    },
    Sets {
        source: Box<BackendError>,
        set: Option<String>,
    },
}

/// The set of the line `ipset restore` rejected, with its source.
fn rejected_set(source: &BackendError, changes: &[SetChange]) -> Option<String> {
    let BackendError::Rejected { text, .. } = source else {
        return None;
    };
    let name = text.split_whitespace().nth(1)?;
    let name = name.strip_suffix("-new").unwrap_or(name);
    let change = changes.iter().find(|c| c.set == name)?;
    Some(match &change.source {
        Some(source) => format!("{name}, from {source}"),
        None => name.to_string(),
    })
}

/// The family written and read back, with the number of table blocks the
/// write committed (nf_tables commits each block on its own).
fn write_and_read(
    backend: &dyn Backend,
    family: &FamilySurvey,
) -> Result<(ReadBack, u32), Failure> {
    let name = family.live.family;
    let input = restore_input(&family.changes);
    tracing::debug!("writing {} {name} changes", family.changes.len());
    if let Err(source) = backend.restore(name, &input.text) {
        let origin = match &source {
            BackendError::Rejected { line, .. } => {
                input.line(*line).and_then(|(_, origin)| origin.cloned())
            }
            _ => None,
        };
        return Err(Failure::Write { source, origin });
    }
    // nf_tables moves its generation once per block it commits, and only
    // for a block that changes something: every block written here does
    // (a table without changes gets no block), so the count is exact and a
    // neighbour's commit in between can never hide behind it.
    let blocks = input.text.lines().filter(|l| l.starts_with('*')).count() as u32;
    read_back(backend, family)
        .map(|read| (read, blocks))
        .map_err(Failure::Read)
}

/// Puts back every family in `undo`, then the sets when `sets` were
/// written, and says what failed and what was put back.
fn put_back(
    backend: &dyn Backend,
    survey: &Survey,
    undo: &[&FamilySurvey],
    sets: bool,
    failed: Failed,
) -> ApplyError {
    let mut restored = Vec::new();
    let rollback = |restoring: String, rollback: ApplyError, failed: Failed| {
        let (what, source) = match failed {
            Failed::Rules { family, source, .. } => (format!("{family} rules"), source),
            Failed::Sets { source, .. } => ("ipsets".to_string(), source),
        };
        ApplyError::Rollback {
            what,
            source,
            restoring,
            rollback: Box::new(rollback),
        }
    };
    for earlier in undo.iter().rev() {
        match restore_snapshot(backend, earlier) {
            Ok(true) => restored.push(earlier.live.family),
            Ok(false) => {}
            Err(err) => return rollback(earlier.live.family.to_string(), err, failed),
        }
    }
    let mut sets_restored = false;
    if sets {
        match restore_sets(backend, survey) {
            Ok(changed) => sets_restored = changed,
            Err(err) => return rollback("the ipsets".to_string(), err, failed),
        }
    }
    restored.sort();
    match failed {
        Failed::Rules {
            family,
            source,
            origin,
        } => ApplyError::Write {
            family,
            source,
            origin,
            restored,
            sets_restored,
        },
        Failed::Sets { source, set } => ApplyError::WriteSets {
            source,
            set,
            sets_restored,
        },
    }
}

/// Puts a family's owned state back to its snapshot. `Ok(false)`: it had
/// not changed.
fn restore_snapshot(backend: &dyn Backend, family: &FamilySurvey) -> Result<bool, ApplyError> {
    let name = family.live.family;
    let now = read(backend, name)?;
    let back = diff(&now, &family.live.owned(), &KernelForms::default());
    if back.is_empty() {
        return Ok(false);
    }
    tracing::warn!("putting {name} back: {} changes", back.len());
    backend
        .restore(name, &restore_input(&back).text)
        .map_err(|source| ApplyError::Write {
            family: name,
            source: Box::new(source),
            origin: None,
            restored: Vec::new(),
            sets_restored: false,
        })?;
    Ok(true)
}

/// Puts fwscript's sets back as the survey read them, once the rules are
/// back (so no rule uses a set made by the failed write). `Ok(false)`:
/// they had not changed.
fn restore_sets(backend: &dyn Backend, survey: &Survey) -> Result<bool, ApplyError> {
    let now = read_sets(backend)?;
    let before: Vec<OwnedSet> = survey.sets.live.iter().map(OwnedSet::from).collect();
    let families: Vec<Family> = survey.families.iter().map(|f| f.live.family).collect();
    let now: Vec<LiveSet> = now
        .into_iter()
        .filter(|s| families.contains(&s.header.owner()))
        .collect();
    let back = diff_sets(&now, &before.iter().collect::<Vec<_>>());
    if back.is_empty() {
        return Ok(false);
    }
    tracing::warn!("putting the ipsets back: {} changes", back.len());
    let input = sets::diff::restore_input(&back);
    let write_error = |source| ApplyError::WriteSets {
        source: Box::new(source),
        set: None,
        sets_restored: false,
    };
    backend.restore_sets(&input.before).map_err(write_error)?;
    if !input.after.is_empty() {
        backend.restore_sets(&input.after).map_err(write_error)?;
    }
    Ok(true)
}

/// Destroys sets no rule of fwscript's uses any more. A set that cannot
/// go (a rule of someone else's matches it) costs nothing kept: it is
/// logged, tried again by the next write, and the rest still go.
fn destroy_sets(backend: &dyn Backend, input: &str) {
    let mut lines: Vec<&str> = input.lines().collect();
    while !lines.is_empty() {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        match backend.restore_sets(&text) {
            Ok(()) => return,
            Err(BackendError::Rejected { line, message, .. })
                if line >= 1 && line <= lines.len() =>
            {
                tracing::warn!(
                    "cannot remove an ipset no longer used (`{}`): {message}; it stays until the next apply",
                    lines[line - 1]
                );
                lines.drain(..line);
            }
            Err(err) => {
                tracing::warn!("cannot remove the ipsets no longer used: {err}");
                return;
            }
        }
    }
}

/// The sets written must be there as the script wants them: the right
/// type, family and size, and each with its number of entries. Read with
/// `ipset list -t`, headers only.
fn verify_sets(backend: &dyn Backend, survey: &Survey) -> Result<(), ApplyError> {
    let text = backend.list_sets().map_err(|source| ApplyError::ReadSets {
        source: Box::new(source),
    })?;
    let headers = sets::live::parse_headers(&text).map_err(|err| ApplyError::ReadSets {
        source: Box::new(err.into()),
    })?;
    for family in &survey.families {
        for want in &family.desired.sets {
            let failed = |found: String| ApplyError::VerifySet {
                set: want.name.clone(),
                found,
            };
            let Some(have) = headers.iter().find(|h| h.name == want.name) else {
                return Err(failed("it is missing".into()));
            };
            if !have.compatible(want.family) || !have.extras.is_empty() {
                return Err(failed(format!("it is a {}", have.kind)));
            }
            if have.count != Some(want.entries.len()) {
                return Err(failed(format!(
                    "it holds {} entries, not {}",
                    have.count.unwrap_or(0),
                    want.entries.len()
                )));
            }
        }
    }
    Ok(())
}

/// The read-back must need no change at all. By ids only: the texts just
/// read are the kernel's forms of what was just written.
fn verify(live: &LiveState, desired: &Ruleset) -> Result<(), ApplyError> {
    let left = diff(live, desired, &KernelForms::default());
    let first = left
        .changes()
        .next()
        .map(|(table, change)| format!("{table} {}: {change}", change.chain()));
    match first {
        None => Ok(()),
        Some(first) => Err(ApplyError::Verify {
            family: live.family,
            remaining: left.len(),
            first,
        }),
    }
}

fn read(backend: &dyn Backend, family: Family) -> Result<LiveState, ApplyError> {
    let read_error = |source| ApplyError::Read {
        family,
        source: Box::new(source),
    };
    backend.live(family).map_err(read_error)
}

/// fwscript's sets, both families, with their entries.
pub fn read_sets(backend: &dyn Backend) -> Result<Vec<LiveSet>, ApplyError> {
    let read_error = |source| ApplyError::ReadSets {
        source: Box::new(source),
    };
    backend.live_sets().map_err(read_error)
}

type Reads = (Vec<LiveState>, Result<Vec<LiveSet>, ApplyError>);

/// Reads the families and the sets at the same time: each save is one
/// process that mostly waits on the kernel. The sets' result is given as
/// is: whether a failure matters depends on what the script wants.
fn read_all(backend: &dyn Backend, families: &[Family]) -> Result<Reads, ApplyError> {
    std::thread::scope(|scope| {
        let sets = scope.spawn(|| read_sets(backend));
        let readers: Vec<_> = families
            .iter()
            .map(|&family| scope.spawn(move || read(backend, family)))
            .collect();
        let lives = readers
            .into_iter()
            .map(|reader| reader.join().expect("reader panicked"))
            .collect::<Result<Vec<_>, _>>();
        let sets = sets.join().expect("reader panicked");
        Ok((lives?, sets))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::Fake;
    use crate::netfilter::{Hook, Policy};
    use crate::ruleset::{HookRule, OwnedChain, OwnedRule, Placement, RuleId, TableRuleset};

    fn rule(family: Family, chain: &str, text: &str, line: usize) -> OwnedRule {
        let id = RuleId::compute(family, Table::Filter, chain, text, 0);
        OwnedRule {
            spec: format!("{text} -m comment --comment \"fws:{id}\" -j ACCEPT"),
            id,
            origin: Some(Origin {
                file: "fw.rhai".into(),
                line,
                column: 1,
            }),
        }
    }

    /// INPUT DROP, a hook, and FWS-INPUT accepting the given TCP ports.
    fn ruleset(family: Family, ports: &[u16]) -> Ruleset {
        let hook_id = RuleId::compute(family, Table::Filter, "INPUT", "hook", 0);
        let mut table = TableRuleset::default();
        table.policies.insert(Hook::Input, Policy::Drop);
        table.hooks.push(HookRule {
            hook: Hook::Input,
            placement: Placement::Bottom,
            rule: OwnedRule {
                spec: format!("-m comment --comment \"fws:{hook_id}\" -j FWS-INPUT"),
                id: hook_id,
                origin: None,
            },
        });
        table.chains.push(OwnedChain {
            name: "FWS-INPUT".into(),
            rules: ports
                .iter()
                .enumerate()
                .map(|(i, port)| {
                    rule(
                        family,
                        "FWS-INPUT",
                        &format!("-p tcp --dport {port}"),
                        i + 1,
                    )
                })
                .collect(),
        });
        let mut ruleset = Ruleset::empty(family);
        ruleset.tables.insert(Table::Filter, table);
        ruleset
    }

    fn both(ports: &[u16]) -> Vec<Ruleset> {
        Family::ALL.map(|f| ruleset(f, ports)).to_vec()
    }

    fn survey(backend: &dyn Backend, desired: Vec<Ruleset>) -> Result<Survey, ApplyError> {
        super::survey(backend, desired, &KernelForms::default())
    }

    fn run(backend: &Fake, desired: Vec<Ruleset>) -> Result<Vec<Family>, ApplyError> {
        let survey = survey(backend, desired)?;
        let read_back = apply(backend, &survey)?;
        Ok(read_back.iter().map(|live| live.family).collect())
    }

    const FOREIGN: &str =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        :f2b-sshd - [0:0]\n-A INPUT -p tcp -j f2b-sshd\n-A f2b-sshd -j RETURN\nCOMMIT\n";

    #[test]
    fn first_apply_then_nothing() {
        let fake = Fake::new()
            .with_save(Family::Ipv4, FOREIGN)
            .with_save(Family::Ipv6, FOREIGN);
        assert_eq!(run(&fake, both(&[22, 80])).unwrap(), Family::ALL);
        assert_eq!(fake.restores().len(), 2);
        let after = fake.state(Family::Ipv4);
        let filter = &after.tables[&Table::Filter];
        assert_eq!(filter.chain("INPUT").unwrap().policy, Some(Policy::Drop));
        assert_eq!(filter.chain("FWS-INPUT").unwrap().rules.len(), 2);
        // Foreign state untouched, the accepting hook below it.
        assert_eq!(filter.chain("f2b-sshd").unwrap().rules.len(), 1);
        assert_eq!(filter.chain("FORWARD").unwrap().policy, Some(Policy::Drop));
        let input = &filter.chain("INPUT").unwrap().rules;
        assert_eq!(input[0].spec, "-p tcp -j f2b-sshd");
        assert!(input[1].id.is_some());

        let saves = fake.saves();
        let survey = survey(&fake, both(&[22, 80])).unwrap();
        assert!(survey.in_sync());
        assert!(apply(&fake, &survey).unwrap().is_empty());
        assert_eq!(fake.restores().len(), 2, "a second apply writes nothing");
        assert_eq!(fake.saves(), saves + 2, "and reads each family once");
    }

    #[test]
    fn an_edit_writes_only_the_difference() {
        let fake = Fake::new();
        run(&fake, both(&[22, 80, 443])).unwrap();
        run(&fake, both(&[22, 8080, 443])).unwrap();
        let restores = fake.restores();
        assert_eq!(restores.len(), 4);
        for (_, input) in &restores[2..] {
            let commands: Vec<&str> = input.lines().filter(|l| l.starts_with('-')).collect();
            assert_eq!(commands.len(), 2, "{input}");
            assert_eq!(commands[0], "-D FWS-INPUT 2");
            assert!(commands[1].starts_with("-I FWS-INPUT 2 -p tcp --dport 8080"));
        }
    }

    #[test]
    fn a_failed_ipv6_write_puts_ipv4_back() {
        let fake = Fake::new();
        run(&fake, both(&[22])).unwrap();
        let before = [fake.state(Family::Ipv4), fake.state(Family::Ipv6)];
        fake.fail_next_restore(Family::Ipv6);
        let error = run(&fake, both(&[22, 80])).unwrap_err();
        assert_eq!(fake.state(Family::Ipv4), before[0]);
        assert_eq!(fake.state(Family::Ipv6), before[1]);
        let message = error.to_string();
        assert!(
            matches!(&error, ApplyError::Write { family: Family::Ipv6, restored, origin: Some(o), .. }
                if restored == &[Family::Ipv4] && o.line == 2),
            "{error:?}"
        );
        assert!(message.contains("rejected line 2"), "{message}");
        assert!(
            message.contains("-A FWS-INPUT -p tcp --dport 80"),
            "{message}"
        );
        assert!(message.contains("(the rule from fw.rhai:2:1)"), "{message}");
        assert!(message.ends_with("ipv4 put back as it was"), "{message}");
    }

    #[test]
    fn a_failed_ipv4_write_leaves_both_families_as_they_were() {
        let fake = Fake::new();
        fake.fail_next_restore(Family::Ipv4);
        let error = run(&fake, both(&[22])).unwrap_err();
        // IPv6 was written at the same time, and is put back.
        assert!(
            matches!(&error, ApplyError::Write { family: Family::Ipv4, restored, .. } if restored == &[Family::Ipv6]),
            "{error:?}"
        );
        assert!(
            error.to_string().ends_with("ipv6 put back as it was"),
            "{error}"
        );
        assert!(fake.state(Family::Ipv4).tables.is_empty());
        assert!(fake
            .state(Family::Ipv6)
            .owned()
            .tables
            .values()
            .all(|t| t.chains.is_empty() && t.hooks.is_empty()));
    }

    #[test]
    fn a_host_without_ipv6_gets_the_ipv4_half() {
        let fake = Fake::new().without(Family::Ipv6);
        let survey = survey(&fake, both(&[22])).unwrap();
        assert_eq!(survey.skipped.len(), 1);
        assert_eq!(survey.skipped[0].0, Family::Ipv6);
        let read_back = apply(&fake, &survey).unwrap();
        assert_eq!(read_back.len(), 1);
        assert_eq!(read_back[0], fake.state(Family::Ipv4), "what was read back");
    }

    #[test]
    fn drift_is_repaired() {
        let fake = Fake::new();
        run(&fake, both(&[22, 80])).unwrap();
        fake.restore(
            Family::Ipv4,
            "*filter\n-D FWS-INPUT 1\n-A FWS-INPUT -p tcp --dport 23 -j ACCEPT\nCOMMIT\n",
        )
        .unwrap();
        let survey = survey(&fake, both(&[22, 80])).unwrap();
        assert_eq!(survey.change_count(), 2);
        apply(&fake, &survey).unwrap();
        assert!(survey_in_sync(&fake, both(&[22, 80])));
    }

    fn survey_in_sync(fake: &Fake, desired: Vec<Ruleset>) -> bool {
        survey(fake, desired).unwrap().in_sync()
    }

    #[test]
    fn verify_catches_a_kernel_that_does_not_keep_the_change() {
        /// Accepts writes and forgets them.
        struct Forgetful(Fake);
        impl Backend for Forgetful {
            fn availability(&self, family: Family) -> Result<(), String> {
                self.0.availability(family)
            }
            fn save(&self, family: Family) -> Result<String, BackendError> {
                self.0.save(family)
            }
            fn save_counters(&self, family: Family) -> Result<String, BackendError> {
                self.0.save_counters(family)
            }
            fn restore(&self, _: Family, _: &str) -> Result<(), BackendError> {
                Ok(())
            }
        }
        let backend = Forgetful(Fake::new());
        let survey = survey(&backend, both(&[22])).unwrap();
        let error = apply(&backend, &survey).unwrap_err();
        assert!(
            matches!(
                error,
                ApplyError::Verify {
                    family: Family::Ipv4,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    /// `ruleset(family, ports)` plus a deny stage dropping `blocked`,
    /// reached from the top of INPUT.
    fn with_block(family: Family, ports: &[u16], blocked: &str) -> Ruleset {
        let mut ruleset = ruleset(family, ports);
        let filter = ruleset.tables.get_mut(&Table::Filter).unwrap();
        let hook_id = RuleId::compute(family, Table::Filter, "INPUT", "deny hook", 0);
        filter.hooks.insert(
            0,
            HookRule {
                hook: Hook::Input,
                placement: Placement::Top,
                rule: OwnedRule {
                    spec: format!("-m comment --comment \"fws:{hook_id}\" -j FWS-INPUT-DENY"),
                    id: hook_id,
                    origin: None,
                },
            },
        );
        let id = RuleId::compute(family, Table::Filter, "FWS-INPUT-DENY", blocked, 0);
        filter.chains.push(OwnedChain {
            name: "FWS-INPUT-DENY".into(),
            rules: vec![OwnedRule {
                spec: format!("-s {blocked} -m comment --comment \"fws:{id}\" -j DROP"),
                id,
                origin: None,
            }],
        });
        ruleset
    }

    fn blocking(ports: &[u16]) -> Vec<Ruleset> {
        vec![
            with_block(Family::Ipv4, ports, "198.51.100.1/32"),
            with_block(Family::Ipv6, ports, "2001:db8:1::1/128"),
        ]
    }

    /// What fail2ban's iptables-multiport action runs at its start: its
    /// chain, and a jump inserted at the top of INPUT (if missing).
    fn fail2ban_starts(fake: &Fake) {
        for family in Family::ALL {
            let input = fake.state(family);
            let has_chain = input
                .table(Table::Filter)
                .is_some_and(|t| t.chain("f2b-sshd").is_some());
            let mut text = String::from("*filter\n");
            if !has_chain {
                text.push_str("-N f2b-sshd\n-A f2b-sshd -j RETURN\n");
            }
            text.push_str("-I INPUT 1 -p tcp -m multiport --dports 22 -j f2b-sshd\nCOMMIT\n");
            fake.restore(family, &text).unwrap();
        }
    }

    /// fail2ban bans an address: a rule at the top of its chain.
    fn ban(fake: &Fake, n: u8) {
        for (family, addr) in [
            (Family::Ipv4, format!("192.0.2.{n}/32")),
            (Family::Ipv6, format!("2001:db8::{n}/128")),
        ] {
            let text = format!("*filter\n-I f2b-sshd 1 -s {addr} -j REJECT\nCOMMIT\n");
            fake.restore(family, &text).unwrap();
        }
    }

    /// INPUT of each family, each rule named by what it is.
    fn input(fake: &Fake) -> [Vec<&'static str>; 2] {
        Family::ALL.map(|family| {
            let state = fake.state(family);
            state.tables[&Table::Filter]
                .chain("INPUT")
                .unwrap()
                .rules
                .iter()
                .map(|rule| match rule.target().as_deref() {
                    Some("FWS-INPUT-DENY") => "deny hook",
                    Some("FWS-INPUT") => "accept hook",
                    Some("f2b-sshd") => "f2b",
                    _ if rule.spec.contains("fws:") => "other fwscript",
                    _ => "admin",
                })
                .collect()
        })
    }

    #[track_caller]
    fn assert_input(fake: &Fake, expected: &[&str]) {
        let [v4, v6] = input(fake);
        assert_eq!(v4, expected, "ipv4");
        assert_eq!(v6, expected, "ipv6");
    }

    #[test]
    fn fail2ban_started_before_fwscript_keeps_its_bans_ahead_of_every_accept() {
        let fake = Fake::new();
        fail2ban_starts(&fake);
        ban(&fake, 2);
        run(&fake, blocking(&[22, 80])).unwrap();
        assert_input(&fake, &["deny hook", "f2b", "accept hook"]);
        assert!(survey_in_sync(&fake, blocking(&[22, 80])));
    }

    #[test]
    fn fail2ban_started_after_fwscript_goes_on_top_and_stays_there() {
        let fake = Fake::new();
        run(&fake, both(&[22])).unwrap();
        fail2ban_starts(&fake);
        ban(&fake, 2);
        assert_input(&fake, &["f2b", "accept hook"]);
        // An edit adding a deny stage puts its hook above fail2ban's jump,
        // which only drops, and leaves the rest.
        run(&fake, blocking(&[22, 80])).unwrap();
        assert_input(&fake, &["deny hook", "f2b", "accept hook"]);
        assert_eq!(run(&fake, blocking(&[22, 80])).unwrap(), []);
    }

    #[test]
    fn a_reset_and_a_new_ban_then_an_apply_keep_the_bans_ahead() {
        let fake = Fake::new();
        fail2ban_starts(&fake);
        run(&fake, blocking(&[22])).unwrap();
        let reset: Vec<Ruleset> = Family::ALL.map(Ruleset::empty).to_vec();
        run(&fake, reset).unwrap();
        assert_input(&fake, &["f2b"]);
        ban(&fake, 3);
        // A second fail2ban jump, as a restarted jail whose check missed
        // its first one would add: on top as well.
        fail2ban_starts(&fake);
        run(&fake, blocking(&[22])).unwrap();
        assert_input(&fake, &["deny hook", "f2b", "f2b", "accept hook"]);
    }

    #[test]
    fn a_rollback_puts_the_accepting_hook_last_too() {
        let fake = Fake::new();
        run(&fake, both(&[22])).unwrap();
        fail2ban_starts(&fake);
        // The snapshot apply keeps before the next write.
        let before = survey(&fake, blocking(&[22, 80])).unwrap();
        let snapshot: Vec<Ruleset> = before.families.iter().map(|f| f.live.owned()).collect();
        apply(&fake, &before).unwrap();
        // An admin's ban appended after fwscript's hook meanwhile.
        for family in Family::ALL {
            fake.restore(family, "*filter\n-A INPUT -i eth9 -j DROP\nCOMMIT\n")
                .unwrap();
        }
        assert_input(&fake, &["deny hook", "f2b", "accept hook", "admin"]);
        run(&fake, snapshot).unwrap();
        assert_input(&fake, &["f2b", "admin", "accept hook"]);
    }

    #[test]
    fn an_admins_appended_ban_moves_the_accepting_hook_below_it() {
        let fake = Fake::new();
        run(&fake, blocking(&[22])).unwrap();
        for family in Family::ALL {
            fake.restore(family, "*filter\n-A INPUT -i eth9 -j DROP\nCOMMIT\n")
                .unwrap();
        }
        let survey = survey(&fake, blocking(&[22])).unwrap();
        assert_eq!(survey.change_count(), 2, "one move per family");
        assert!(survey
            .warnings()
            .all(|w| w.kind == crate::foreign::WarningKind::AfterAcceptHook));
        apply(&fake, &survey).unwrap();
        assert_input(&fake, &["deny hook", "admin", "accept hook"]);
        assert!(survey_in_sync(&fake, blocking(&[22])));
    }

    #[test]
    fn the_old_layout_with_its_hook_on_top_is_brought_to_the_contract() {
        // What an earlier fwscript wrote: one hook at position 1 into an
        // entry chain that jumped to the deny stage too, above fail2ban.
        let fake = Fake::new();
        fail2ban_starts(&fake);
        let desired = blocking(&[22]);
        for (family, ruleset) in Family::ALL.into_iter().zip(&desired) {
            let filter = &ruleset.tables[&Table::Filter];
            let accept_hook = &filter.hook(Hook::Input, Placement::Bottom).unwrap().rule;
            let mut text = String::from("*filter\n-N FWS-INPUT\n-N FWS-INPUT-DENY\n");
            for rule in &filter.chain("FWS-INPUT-DENY").unwrap().rules {
                text.push_str(&format!("-A FWS-INPUT-DENY {}\n", rule.spec));
            }
            text.push_str(
                "-A FWS-INPUT -m comment --comment \"fws:0123456789ab\" -j FWS-INPUT-DENY\n",
            );
            for rule in &filter.chain("FWS-INPUT").unwrap().rules {
                text.push_str(&format!("-A FWS-INPUT {}\n", rule.spec));
            }
            text.push_str(&format!("-I INPUT 1 {}\nCOMMIT\n", accept_hook.spec));
            fake.restore(family, &text).unwrap();
        }
        assert_input(&fake, &["accept hook", "f2b"]);
        run(&fake, desired.clone()).unwrap();
        assert_input(&fake, &["deny hook", "f2b", "accept hook"]);
        assert!(survey_in_sync(&fake, desired));
    }

    #[test]
    fn a_rule_changed_behind_fwscripts_back_is_put_right() {
        let fake = Fake::new();
        let survey1 = survey(&fake, both(&[22, 80])).unwrap();
        let read_back = apply(&fake, &survey1).unwrap();
        let forms = KernelForms::default().recorded(&read_back);
        // `iptables -R` of the first allow rule, comment kept, port changed.
        let state = fake.state(Family::Ipv4);
        let first = &state.tables[&Table::Filter]
            .chain("FWS-INPUT")
            .unwrap()
            .rules[0];
        let opened = first.spec.replace("--dport 22", "--dport 23");
        fake.restore(
            Family::Ipv4,
            &format!("*filter\n-R FWS-INPUT 1 {opened}\nCOMMIT\n"),
        )
        .unwrap();
        assert!(
            survey_in_sync(&fake, both(&[22, 80])),
            "ids alone see nothing"
        );
        let survey2 = super::survey(&fake, both(&[22, 80]), &forms).unwrap();
        let changes: Vec<String> = survey2.changes().map(|(_, _, c)| c.to_string()).collect();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(
            changes[0].ends_with("(changed behind fwscript's back)"),
            "{changes:?}"
        );
        apply(&fake, &survey2).unwrap();
        assert_eq!(fake.state(Family::Ipv4), read_back[0]);
    }
}
