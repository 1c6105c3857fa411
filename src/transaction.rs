//! One write, as every command that changes the kernel runs it (rulesets →
//! survey → **stage records → snapshot → write → commit records**): the
//! single path that changes the kernel, so `apply`, `watch`, `reset`,
//! `rollback`, the confirm timer and the boot fallback cannot drift apart.
//!
//! Everything the state folder must learn from a write is written to new
//! files *before* the kernel is touched (a full disk fails there, with
//! nothing changed) and put in place by renames after the write is
//! verified. Should that last step still fail, the error says that the
//! kernel *was* changed and what it now holds.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::apply::{self, Survey};
use crate::backend::Backend;
use crate::diff::Change;
use crate::error::Error;
use crate::forms::KernelForms;
use crate::guard::{self, SshConnection, SshSession};
use crate::live::LiveState;
use crate::netfilter::Family;
use crate::origins::{self, RuleOrigins};
use crate::plan::Plan;
use crate::render;
use crate::ruleset::{RuleId, Ruleset};
use crate::state::{
    boot_id, Applied, AppliedRules, FamilySnapshot, LastGood, Locked, OriginalPolicies,
    PendingConfirm, PlanRecords, RulesRecord, Snapshot, StagedPlan, StateDir, StateError,
};

#[derive(Debug)]
pub struct Transaction {
    pub survey: Survey,
    /// Families written; empty when in sync or on a dry run.
    pub written: Vec<Family>,
}

/// A write and what the state folder should remember of it.
#[derive(Debug)]
pub struct Intent {
    pub rulesets: Vec<Ruleset>,
    /// What is written, for people: a script's path, `(reset)`, …
    pub script: String,
    /// The command writing it.
    pub command: &'static str,
    /// What the write becomes once it holds.
    pub keep: Keep,
    /// Keep a snapshot of the kernel as it was, for `rollback`.
    pub snapshot: bool,
    /// The original policies to remember afterwards; `None`: learn those
    /// this write changes for the first time.
    pub policies: Option<OriginalPolicies>,
    /// Whether the kernel write waits for the state folder. A plan's apply
    /// does: it needs its snapshot to be undone. Putting rules *back*
    /// (rollback, an expired confirm, the boot fallback) does not: the
    /// kernel matters more than the bookkeeping, so it writes anyway and
    /// then says what it could not record.
    pub records: Records,
    /// The SSH session the lockout guard keeps reachable, once the survey
    /// shows where the write puts foreign rules: moving the accepting hook
    /// to the end puts those appended after it ahead of it.
    pub session: Option<SshConnection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records {
    Required,
    BestEffort,
}

/// What a successful write means for the last good ruleset.
#[derive(Debug, Clone)]
pub enum Keep {
    /// It is the new last good ruleset.
    Good { digest: String },
    /// It waits for `fwscript confirm`; the last good one stays.
    Pending(PendingConfirm),
    /// It does not change what counts as good (`reset`).
    Unchanged,
}

/// What each family should own under `plan`.
pub fn desired(plan: &Plan) -> Vec<Ruleset> {
    Family::ALL
        .map(|family| render::ruleset(plan, family))
        .to_vec()
}

/// The restore files of rulesets, both families, as the state folder keeps
/// them and as their digest is taken.
pub fn rules_text(rulesets: &[Ruleset]) -> String {
    render::restore_text(rulesets)
}

/// A digest of everything a plan writes, to recognise it later.
pub fn digest(rules_text: &str) -> String {
    let digest = Sha256::digest(rules_text.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// [`digest`] of the rulesets' [`rules_text`], without writing out their
/// sets' entries, which a 100,000-address list made most of the time a
/// no-op apply spent on it: the rules' text, then each set's name, family,
/// size and entries as bytes. Without sets, the very digest of the text.
pub fn plan_digest(rulesets: &[Ruleset]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(render::family_files(rulesets).as_bytes());
    for set in rulesets.iter().flat_map(|r| &r.sets) {
        hasher.update(b"\0set\0");
        hasher.update(set.name.as_bytes());
        hasher.update([set.family as u8]);
        hasher.update(set.maxelem.to_le_bytes());
        hasher.update((set.entries.len() as u64).to_le_bytes());
        for entry in set.entries.iter() {
            match entry.addr() {
                std::net::IpAddr::V4(addr) => hasher.update(addr.octets()),
                std::net::IpAddr::V6(addr) => hasher.update(addr.octets()),
            }
            hasher.update([entry.prefix_len()]);
        }
    }
    let digest = hasher.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Brings the kernel to `plan` after the lockout guard agrees. `session`:
/// the SSH session to keep reachable, when run over SSH and not forced.
pub fn apply_plan(
    backend: &dyn Backend,
    plan: &Plan,
    mut intent: Intent,
    state: Option<&Locked>,
    session: Option<SshSession>,
) -> Result<Transaction, Error> {
    for warning in check_guard(plan, session)? {
        tracing::warn!("{warning}");
    }
    intent.session = connected(session);
    write(backend, intent, state)
}

/// The session the guard checks the kernel for: a malformed one is
/// refused by [`check_guard`] before any survey.
pub fn connected(session: Option<SshSession>) -> Option<SshConnection> {
    match session {
        Some(SshSession::Connected(session)) => Some(session),
        _ => None,
    }
}

/// The lockout guard's look at the kernel the survey read: a write that
/// puts a foreign rule dropping the session's packets ahead of fwscript's
/// accepting hook is refused.
pub fn check_kernel_guard(survey: &Survey, session: Option<SshConnection>) -> Result<(), Error> {
    let Some(session) = session else {
        return Ok(());
    };
    for family in &survey.families {
        guard::check_kernel(&session, &family.live, &family.desired)?;
    }
    Ok(())
}

/// The lockout guard's verdict on `plan`: an error when it refuses, else
/// its warnings (rate limits on the SSH port) for the caller to report.
pub fn check_guard(plan: &Plan, session: Option<SshSession>) -> Result<Vec<guard::Warning>, Error> {
    match session {
        Some(session) => Ok(guard::check(plan, session)?),
        None => Ok(Vec::new()),
    }
}

/// Set once this process has changed the kernel (a write that held, or
/// one that failed half way and may have left part of itself): what
/// reports call `changed`, errors included.
static KERNEL_WRITTEN: AtomicBool = AtomicBool::new(false);

/// Whether this process has changed the kernel.
pub fn kernel_written() -> bool {
    KERNEL_WRITTEN.load(Ordering::SeqCst)
}

/// [`apply::apply`], noting whether the kernel changed: a write that
/// failed and was put back changed nothing.
fn apply_noted(backend: &dyn Backend, survey: &Survey) -> Result<Vec<LiveState>, Error> {
    let result = apply::apply(backend, survey);
    if !matches!(&result, Err(err) if err.wrote_nothing()) {
        KERNEL_WRITTEN.store(true, Ordering::SeqCst);
    }
    Ok(result?)
}

/// What writing `rulesets` would change, writing nothing (a dry run): the
/// same survey, against the same recorded kernel forms, as a write.
pub fn preview(
    backend: &dyn Backend,
    rulesets: Vec<Ruleset>,
    state: Option<&StateDir>,
) -> Result<Transaction, Error> {
    let survey = apply::survey(backend, rulesets, &recorded_forms(state))?;
    Ok(Transaction {
        survey,
        written: Vec::new(),
    })
}

/// The intent of applying `plan`, made from `script`.
pub fn plan_intent(plan: &Plan, script: &Path, command: &'static str) -> (Intent, String) {
    let rulesets = desired(plan);
    let digest = plan_digest(&rulesets);
    let intent = Intent {
        rulesets,
        script: script.display().to_string(),
        command,
        keep: Keep::Good {
            digest: digest.clone(),
        },
        snapshot: true,
        policies: None,
        records: Records::Required,
        // Set by the caller that runs over SSH without --force.
        session: None,
    };
    (intent, digest)
}

/// Brings the kernel to the intent's rulesets, keeping a snapshot first and
/// recording what was written.
pub fn write(
    backend: &dyn Backend,
    intent: Intent,
    state: Option<&Locked>,
) -> Result<Transaction, Error> {
    let forms = recorded_forms(state.map(|locked| &**locked));
    write_forms(backend, intent, state, forms)
}

/// [`write`], with the [`recorded_forms`] of `state` already read.
pub fn write_with(
    backend: &dyn Backend,
    intent: Intent,
    state: &Locked,
    forms: KernelForms,
) -> Result<Transaction, Error> {
    write_forms(backend, intent, Some(state), forms)
}

fn write_forms(
    backend: &dyn Backend,
    intent: Intent,
    state: Option<&Locked>,
    forms: KernelForms,
) -> Result<Transaction, Error> {
    let survey = apply::survey(backend, intent.rulesets.clone(), &forms)?;
    tracing::debug!("kernel read and diffed: {} changes", survey.change_count());
    check_kernel_guard(&survey, intent.session)?;
    if survey.in_sync() {
        if let Some(state) = state {
            adopt_if_unrecorded(state, &intent)?;
            refresh_origins(state, &intent, &survey);
        }
        return Ok(Transaction {
            survey,
            written: Vec::new(),
        });
    }
    let Some(state) = state else {
        let written = families(&apply_noted(backend, &survey)?);
        return Ok(Transaction { survey, written });
    };
    // Before the kernel: a folder that cannot take them fails here, and
    // nothing has changed — or, for rules put back, is noted for after.
    let mut unrecorded = None;
    let mut prepare = |result: Result<(), StateError>| -> Result<(), Error> {
        match (result, intent.records) {
            (Ok(()), _) => Ok(()),
            (Err(source), Records::Required) => Err(Error::NotWritten { source }),
            (Err(source), Records::BestEffort) => {
                unrecorded.get_or_insert(source);
                Ok(())
            }
        }
    };
    let mut staged = None;
    // The records and the snapshot go to disk at the same time (their
    // fsyncs share a journal commit); the snapshot takes its place only
    // once the records are staged, as when they were written in turn.
    let (records, snapshot) = std::thread::scope(|scope| {
        let snapshot = intent
            .snapshot
            .then(|| scope.spawn(|| state.stage_snapshot(&snapshot(&survey, &intent.script))));
        let records = records(state, &intent, &survey).and_then(|r| state.stage_plan(&r));
        let snapshot = snapshot.map(|s| s.join().expect("snapshot writer panicked"));
        (records, snapshot)
    });
    prepare(records.map(|s| staged = Some(s)))?;
    if let Some(snapshot) = snapshot {
        prepare(snapshot.and_then(|s| s.commit()))?;
    }
    tracing::debug!("snapshot and records staged");
    let read_back = apply_noted(backend, &survey)?;
    tracing::debug!("written and verified");
    let transaction = Transaction {
        survey,
        written: families(&read_back),
    };
    // After the kernel, from what it read back, while the records go in
    // place. Old forms miss only the rules this write added, so a failure
    // here costs a warning.
    let recorded = forms.recorded(&read_back);
    let (committed, forms_saved) = std::thread::scope(|scope| {
        let forms = scope.spawn(|| state.save_kernel_forms(&recorded));
        let committed = staged.map(StagedPlan::commit);
        (committed, forms.join().expect("forms writer panicked"))
    });
    remember(recorded);
    tracing::debug!("records and kernel forms saved");
    if let Some(Err(source)) = committed {
        unrecorded.get_or_insert(source);
    }
    if let Err(err) = forms_saved {
        tracing::warn!("{err}; rules changed behind fwscript's back may go unseen");
    }
    match unrecorded {
        None => Ok(transaction),
        Some(source) => Err(Error::Unrecorded {
            holds: holds(&intent, &transaction),
            source,
            transaction: Box::new(transaction),
        }),
    }
}

fn families(read_back: &[LiveState]) -> Vec<Family> {
    read_back.iter().map(|live| live.family).collect()
}

/// The kernel's forms of fwscript's rules from its last verified write. They
/// only find drift by content: unreadable ones are not worth failing a
/// write over, and without them every rule with a known id counts as
/// fwscript's.
/// The forms this process recorded last, whether or not the state folder
/// took them: a daemon whose folder cannot keep them (full, a directory
/// where the file goes) writes its rules again once to learn them, not at
/// every resync.
static REMEMBERED: std::sync::Mutex<Option<KernelForms>> = std::sync::Mutex::new(None);

fn remember(forms: KernelForms) {
    *REMEMBERED.lock().unwrap_or_else(|e| e.into_inner()) = Some(forms);
}

fn remembered() -> KernelForms {
    REMEMBERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

pub fn recorded_forms(state: Option<&StateDir>) -> KernelForms {
    // Without a record of a rule's form (no state folder yet, a lost or
    // damaged one, one from an earlier version), the rule is written again
    // once and its form read back: otherwise a rule changed behind
    // fwscript's back before the record existed would go unseen for good.
    let Some(state) = state else {
        return remembered().relearning();
    };
    state
        .kernel_forms()
        .unwrap_or_else(|err| {
            // Once per process: a daemon reads them at every resync.
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            let text = "fwscript's rules without a record are written again to learn their forms";
            match SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                false => tracing::warn!("{err}; {text}"),
                true => tracing::debug!("{err}; {text}"),
            }
            KernelForms::default()
        })
        .or(remembered())
        .relearning()
}

/// A kernel already in sync with a plan the state folder does not know as
/// good (the folder was lost, or this is a first run on a configured host):
/// remember it, so a boot can fall back to it.
fn adopt_if_unrecorded(state: &Locked, intent: &Intent) -> Result<(), Error> {
    let Keep::Good { digest } = &intent.keep else {
        return Ok(());
    };
    let known = state
        .last_good()?
        .is_some_and(|good| &good.digest == digest);
    if known || state.pending_confirm()?.is_some() {
        return Ok(());
    }
    let records = PlanRecords {
        applied: None,
        rules: Some(RulesRecord {
            text: rules_text(&intent.rulesets),
            last_good: Some(last_good(intent, digest)),
        }),
        pending: None,
        policies: None,
        applied_rules: None,
        origins: None,
    };
    state.stage_plan(&records)?.commit()?;
    Ok(())
}

fn records(state: &Locked, intent: &Intent, survey: &Survey) -> Result<PlanRecords, StateError> {
    let rules = match &intent.keep {
        Keep::Good { digest } => Some(RulesRecord {
            text: rules_text(&intent.rulesets),
            last_good: Some(last_good(intent, digest)),
        }),
        Keep::Pending(_) => Some(RulesRecord {
            text: rules_text(&intent.rulesets),
            last_good: None,
        }),
        Keep::Unchanged => None,
    };
    let rules_kept = rules.is_some();
    let digest = match &intent.keep {
        Keep::Good { digest } => digest.clone(),
        Keep::Pending(pending) => pending.plan_digest.clone(),
        Keep::Unchanged => String::new(),
    };
    let policies = match &intent.policies {
        Some(replacement) => Some(replacement.clone()),
        None => learnt_policies(state.original_policies()?, survey),
    };
    Ok(PlanRecords {
        applied: Some(Applied {
            script: intent.script.clone(),
            command: intent.command.to_string(),
            at: now(),
            digest,
            boot_id: boot_id(),
            origins: origins::digest(&intent.rulesets, &mut origins::read_source),
        }),
        rules,
        pending: match &intent.keep {
            Keep::Pending(pending) => Some(pending.clone()),
            _ => None,
        },
        policies,
        applied_rules: Some(applied_rules(&intent.rulesets, rules_kept)),
        origins: Some(rule_origins(
            &state.rule_origins().unwrap_or_default(),
            intent,
            survey,
        )),
    })
}

/// The rules written and the policies they decide; `kept`: the write keeps
/// the rules in a rules file already (last good or pending).
pub fn applied_rules(rulesets: &[Ruleset], kept: bool) -> AppliedRules {
    AppliedRules {
        text: (!kept).then(|| rules_text(rulesets)),
        policies: rulesets
            .iter()
            .map(|ruleset| {
                let tables = ruleset
                    .tables
                    .iter()
                    .map(|(&table, rules)| (table, rules.policies.clone()))
                    .collect();
                (ruleset.family, tables)
            })
            .collect(),
    }
}

/// The script line of each rule the intent writes, and of each rule the
/// kernel held before (which a rollback may put back).
fn rule_origins(known: &RuleOrigins, intent: &Intent, survey: &Survey) -> RuleOrigins {
    let before: Vec<&RuleId> = survey
        .families
        .iter()
        .flat_map(|f| f.live.tables.values())
        .flat_map(|t| t.owned_chains())
        .flat_map(|c| &c.rules)
        .filter_map(|r| r.id.as_ref())
        .collect();
    origins::record(&intent.rulesets, &before, known, &mut origins::read_source)
}

/// A kernel in sync with a plan whose lines moved (a comment added above
/// them) or that now comes from another file: the record of the lines is
/// brought up to date, so `status` names the lines the script has now.
/// Best effort: it only tells people where rules came from. The digest
/// in `applied.json` tells in a few milliseconds whether anything moved,
/// so a no-op apply of a big script does not pay for the whole record.
fn refresh_origins(state: &Locked, intent: &Intent, survey: &Survey) {
    if !matches!(intent.keep, Keep::Good { .. } | Keep::Pending(_)) {
        return;
    }
    let Ok(Some(mut applied)) = state.applied() else {
        return;
    };
    let digest = origins::digest(&intent.rulesets, &mut origins::read_source);
    if applied.origins == digest {
        return;
    }
    let Ok(known) = state.rule_origins() else {
        return;
    };
    applied.origins = digest;
    let records = PlanRecords {
        origins: Some(rule_origins(&known, intent, survey)),
        applied: Some(applied),
        ..PlanRecords::default()
    };
    if let Err(err) = state
        .stage_plan(&records)
        .and_then(|staged| staged.commit())
    {
        tracing::warn!("{err}; `fwscript status` may name old script lines");
    }
}

fn last_good(intent: &Intent, digest: &str) -> LastGood {
    LastGood {
        script: intent.script.clone(),
        applied_at: now(),
        digest: digest.to_string(),
    }
}

/// The policies a write changes for the first time, added to those known:
/// `None` when it teaches nothing new.
fn learnt_policies(mut known: OriginalPolicies, survey: &Survey) -> Option<OriginalPolicies> {
    let mut learnt = false;
    for (family, table, change) in survey.changes() {
        if let Change::SetPolicy { hook, from, .. } = change {
            learnt |= known.remember(family, table, *hook, *from);
        }
    }
    learnt.then_some(known)
}

/// What the kernel holds after a write, in words, for an error that comes
/// after it.
fn holds(intent: &Intent, transaction: &Transaction) -> String {
    let what = match intent.command {
        "reset" => "nothing of fwscript's".to_string(),
        // Stand-ins like `(last good: fw.rhai)` describe themselves.
        _ if intent.script.starts_with('(') => intent
            .script
            .trim_start_matches('(')
            .trim_end_matches(')')
            .to_string(),
        _ => format!("the rules of `{}`", intent.script),
    };
    format!(
        "it now holds {what} ({} changes written and verified)",
        transaction.survey.change_count()
    )
}

fn snapshot(survey: &Survey, script: &str) -> Snapshot {
    Snapshot {
        taken_at: now(),
        script: script.to_string(),
        families: survey
            .families
            .iter()
            .map(|f| {
                let owned = survey.snapshot(f);
                FamilySnapshot {
                    family: f.live.family,
                    save: render::restore_file(&owned),
                    sets: crate::sets::restore_file(&owned.sets),
                }
            })
            .collect(),
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::backend::fake::Fake;
    use crate::backend::BackendError;
    use crate::state::StateDir;

    /// A kernel that takes the write, while something takes the state
    /// folder's staged files away (a disk failing between the steps).
    struct Sabotage {
        kernel: Fake,
        folder: PathBuf,
    }

    impl Backend for Sabotage {
        fn availability(&self, family: Family) -> Result<(), String> {
            self.kernel.availability(family)
        }
        fn save(&self, family: Family) -> Result<String, BackendError> {
            self.kernel.save(family)
        }
        fn save_counters(&self, family: Family) -> Result<String, BackendError> {
            self.kernel.save_counters(family)
        }
        fn restore(&self, family: Family, input: &str) -> Result<(), BackendError> {
            for entry in std::fs::read_dir(&self.folder).unwrap() {
                let path = entry.unwrap().path();
                if path.file_name().unwrap().to_string_lossy().starts_with('.') {
                    let _ = std::fs::remove_file(path);
                }
            }
            self.kernel.restore(family, input)
        }
    }

    #[test]
    fn a_record_lost_after_the_write_says_the_kernel_changed() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        let backend = Sabotage {
            kernel: Fake::new(),
            folder: state.path().to_path_buf(),
        };
        let plan = crate::script::emergency_plan(22);
        let (intent, _) = plan_intent(&plan, Path::new("fw.rhai"), "apply");
        let locked = state.lock("test").unwrap();
        let err = write(&backend, intent, Some(&locked)).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(
                "error: the kernel was changed: it now holds the rules of `fw.rhai` ("
            ),
            "{message}"
        );
        assert!(
            message.contains("but the state folder could not record it"),
            "{message}"
        );
        assert!(
            !backend.kernel.state(Family::Ipv4).tables.is_empty(),
            "the write did happen"
        );
        assert!(kernel_written(), "reports say `changed` with the error");
    }

    #[test]
    fn a_plan_without_sets_keeps_the_digest_of_its_text() {
        let rulesets = desired(&crate::script::emergency_plan(22));
        assert_eq!(plan_digest(&rulesets), digest(&rules_text(&rulesets)));
        // With a set, every entry counts.
        let dir = tempfile::tempdir().unwrap();
        let list = |extra: &str| {
            let text: String = (0..20).map(|i| format!("198.51.100.{i}\n")).collect();
            std::fs::write(dir.path().join("l.txt"), format!("{text}{extra}")).unwrap();
            std::fs::write(
                dir.path().join("fw.rhai"),
                "block(address_list(\"l.txt\"));\n",
            )
            .unwrap();
            desired(&crate::script::evaluate(&dir.path().join("fw.rhai")).unwrap())
        };
        let (one, two) = (list(""), list("192.0.2.1\n"));
        assert_ne!(plan_digest(&one), plan_digest(&two));
        assert_eq!(plan_digest(&one), plan_digest(&list("")));
        // Read back from the records, the same plan.
        let back = crate::fallback::parse_rules(&rules_text(&two)).unwrap();
        assert_eq!(plan_digest(&back), plan_digest(&two));
    }

    #[test]
    fn only_first_changes_teach_original_policies() {
        let backend = Fake::new().with_save(
            Family::Ipv4,
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
        );
        let plan = crate::script::emergency_plan(22);
        let survey = apply::survey(&backend, desired(&plan), &KernelForms::default()).unwrap();
        let learnt = learnt_policies(OriginalPolicies::default(), &survey).unwrap();
        use crate::netfilter::{Hook, Policy, Table};
        assert_eq!(
            learnt.get(Family::Ipv4, Table::Filter, Hook::Input),
            Some(Policy::Accept)
        );
        // FORWARD was DROP already (Docker's): nothing changed, nothing learnt.
        assert_eq!(learnt.get(Family::Ipv4, Table::Filter, Hook::Forward), None);
        // A fresh IPv6 table counts as ACCEPT.
        assert_eq!(
            learnt.get(Family::Ipv6, Table::Filter, Hook::Input),
            Some(Policy::Accept)
        );
        assert!(learnt_policies(learnt, &survey).is_none(), "nothing new");
    }
}
