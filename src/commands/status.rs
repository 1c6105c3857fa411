//! `status`: what is applied, read from the state folder and the kernel
//! (state + kernel → **status**): the last write, whether the kernel still
//! matches it, a pending confirm, the daemon, and the kernel's counters
//! summed per script line. Reads only and takes no lock; as another user
//! than root it shows what it can read and says what needs root.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::changes::{self, ChangeView, OriginView};
use super::report;
use super::style::{Paint, Ui};
use super::warnings::{self, Warning};
use super::{json, root, Outcome};
use crate::apply::{self, FamilySurvey, SetSurvey, Survey};
use crate::backend::iptables::Iptables;
use crate::backend::Backend;
use crate::cli::StatusArgs;
use crate::confirm::utc;
use crate::counters::{self, Counted};
use crate::diff::diff;
use crate::error::Error;
use crate::fallback;
use crate::foreign::{foreign_warnings, summarise};
use crate::forms::KernelForms;
use crate::live::LiveState;
use crate::netfilter::{Family, ID_TAG};
use crate::origins::{is_jump, Found, RuleOrigins};
use crate::ruleset::{Origin, RuleId, Ruleset};
use crate::sets::{describe_changes, diff_sets, OwnedSet, SetChange};
use crate::state::{Applied, AppliedRules, DaemonRecord, PendingConfirm, StateDir};
use crate::transaction::now;

pub fn status(ui: &Ui, args: &StatusArgs, state_dir: &Path) -> Result<Outcome, Error> {
    let rule = args.rule.as_deref().map(parse_id).transpose()?;
    let backend = Iptables::detect(None);
    let backend = backend.as_ref().map(|b| b as &dyn Backend);
    let status = Status::read(backend.map_err(|e| e.to_string()), state_dir);
    if let Some(id) = &rule {
        return status.print_rule(ui, id, args.json);
    }
    match args.json {
        true => json::print("status", status.json())?,
        false => ui.out(&status.text(ui))?,
    }
    Ok(Outcome::Done)
}

/// `fws:0123456789ab` or `0123456789ab`.
fn parse_id(text: &str) -> Result<RuleId, Error> {
    let hex = text.trim().strip_prefix(ID_TAG).unwrap_or(text.trim());
    RuleId::from_comment(&format!("{ID_TAG}{hex}"))
        .filter(|id| id.as_str() == hex)
        .ok_or_else(|| {
            Error::Refused(format!(
                "`{text}` is not a rule id: fwscript's ids are {} lowercase hex digits, as in the \
                 comment `fws:0123456789ab` of `iptables -S`",
                RuleId::LEN
            ))
        })
}

/// Everything `status` could read, and what it could not.
#[derive(Debug, Default)]
pub struct Status {
    applied: Option<Applied>,
    expected: Option<Vec<Ruleset>>,
    pending: Option<PendingConfirm>,
    daemon: Option<(DaemonRecord, bool)>,
    origins: RuleOrigins,
    /// The kernel's survey against the rules last written.
    survey: Option<Survey>,
    counted: Vec<Counted>,
    kernel_read: bool,
    /// Rules the kernel runs beside fwscript's that its reads do not show.
    hidden: Vec<Warning>,
    /// What could not be read, and why.
    problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
struct Problem {
    /// `state` or `kernel`.
    part: &'static str,
    message: String,
}

impl Status {
    /// Reads the state folder at `state_dir` and the kernel through
    /// `backend` (or why there is none). Never fails: what cannot be read
    /// is a problem listed with the rest.
    pub fn read(backend: Result<&dyn Backend, String>, state_dir: &Path) -> Status {
        let mut status = Status::default();
        let mut forms = KernelForms::default();
        match StateDir::open_existing(state_dir) {
            Ok(Some(state)) => status.read_state(&state, &mut forms),
            Ok(None) => {}
            Err(err) => match root::roots_folder(&err) {
                Some(text) => status.problem("state", &format!("must run as root: {text}")),
                None => status.problem("state", &err.to_string()),
            },
        }
        match backend {
            Ok(backend) => status.read_kernel(backend, &forms),
            Err(err) => status.problem("kernel", &err),
        }
        status
    }

    fn problem(&mut self, part: &'static str, message: &str) {
        let mut text = message.trim_start_matches("error: ").to_string();
        let permission = [
            "permission denied",
            "you must be root",
            "belongs to user id 0",
        ]
        .iter()
        .any(|w| text.to_lowercase().contains(w));
        if permission && !root::is_root() && !text.starts_with("must run as root") {
            text = format!("must run as root: {text}");
        }
        let (message, _) = json::split_text(&text);
        self.problems.push(Problem { part, message });
    }

    fn read_state(&mut self, state: &StateDir, forms: &mut KernelForms) {
        macro_rules! read {
            ($what:expr) => {
                match $what {
                    Ok(value) => value,
                    Err(err) => {
                        self.problem("state", &err.to_string());
                        Default::default()
                    }
                }
            };
        }
        self.applied = read!(state.applied());
        self.pending = read!(state.pending_confirm());
        self.daemon = read!(state.daemon()).map(|d| {
            let alive = d.is_alive();
            (d, alive)
        });
        self.origins = read!(state.rule_origins());
        // The same diff as apply: rules whose form was never recorded are
        // among what it would write again.
        *forms = read!(state.kernel_forms()).relearning();
        let rules: Option<AppliedRules> = read!(state.applied_rules());
        // Kept in the write's own rules file: the pending one while a
        // confirm is pending, else the last good one.
        let text = match &rules {
            Some(AppliedRules {
                text: Some(text), ..
            }) => Some(text.clone()),
            Some(_) if self.pending.is_some() => read!(state.pending_rules()),
            Some(_) => read!(state.last_good_rules()),
            None => None,
        };
        self.expected = match (rules, text) {
            (Some(rules), Some(text)) => match expected(&text, &rules, &self.origins) {
                Ok(rulesets) => Some(rulesets),
                Err(err) => {
                    self.problem("state", &format!("the rules last written: {err}"));
                    None
                }
            },
            _ => None,
        };
    }

    fn read_kernel(&mut self, backend: &dyn Backend, forms: &KernelForms) {
        self.hidden = super::apply::hidden_rules_warnings(backend);
        let mut families = Vec::new();
        let mut skipped = Vec::new();
        for family in Family::ALL {
            if let Err(reason) = backend.availability(family) {
                skipped.push((family, reason));
                continue;
            }
            let text = match backend.save_counters(family) {
                Ok(text) => text,
                Err(err) => {
                    self.problem("kernel", &format!("cannot read the {family} rules: {err}"));
                    continue;
                }
            };
            let parsed = LiveState::parse(family, &text)
                .and_then(|live| Ok((live, counters::parse(family, &text)?)));
            match parsed {
                Ok((live, counted)) => {
                    self.counted.extend(counted);
                    families.push(live);
                }
                Err(err) => self.problem("kernel", &err.to_string()),
            }
        }
        self.kernel_read = !families.is_empty() || self.problems.iter().all(|p| p.part != "kernel");
        let Some(expected) = &self.expected else {
            return;
        };
        let mut warnings = Vec::new();
        let families = families
            .into_iter()
            .map(|live| {
                let desired = expected
                    .iter()
                    .find(|r| r.family == live.family)
                    .cloned()
                    .unwrap_or_else(|| Ruleset::empty(live.family));
                warnings.extend(foreign_warnings(&live, &desired));
                FamilySurvey {
                    changes: diff(&live, &desired, forms),
                    live,
                    desired,
                }
            })
            .collect();
        let sets = self.set_survey(backend, &expected.clone());
        self.survey = Some(Survey {
            families,
            skipped,
            warnings: summarise(warnings),
            sets,
        });
    }

    /// fwscript's ipsets against the ones last written: read only when
    /// the last write made some, so a host without the tool is no problem.
    fn set_survey(&mut self, backend: &dyn Backend, expected: &[Ruleset]) -> SetSurvey {
        let wanted: Vec<&OwnedSet> = expected.iter().flat_map(|r| &r.sets).collect();
        if wanted.is_empty() {
            return SetSurvey::default();
        }
        match apply::read_sets(backend) {
            Ok(live) => SetSurvey {
                changes: diff_sets(&live, &wanted),
                live,
            },
            Err(err) => {
                self.problem("kernel", &format!("cannot read the ipsets: {err}"));
                SetSurvey::default()
            }
        }
    }

    /// The kernel's counters summed per script line, busiest first.
    fn lines(&self) -> Vec<LineCount> {
        let index = self.origins.index();
        let mut sums: BTreeMap<Key, LineCount> = BTreeMap::new();
        for counted in self.counted.iter().filter(|c| c.in_owned_chain()) {
            let id = counted.id.as_ref().expect("owned rules carry ids");
            let (key, line) = match index.get(id) {
                Some(Found::Line(line)) => (
                    Key::Line(line.file.clone(), line.line),
                    LineCount::new(
                        "line",
                        Some(OriginView {
                            file: line.file.clone(),
                            line: line.line,
                            col: line.col,
                        }),
                        line.source.clone(),
                    ),
                ),
                Some(Found::Baseline) => (Key::Baseline, LineCount::new("baseline", None, None)),
                None if is_jump(&counted.spec) => continue,
                None => (Key::Unknown, LineCount::new("unrecorded", None, None)),
            };
            let sum = sums.entry(key).or_insert(line);
            sum.packets += counted.packets;
            sum.bytes += counted.bytes;
            sum.rules += 1;
        }
        let mut lines: Vec<LineCount> = sums.into_values().collect();
        lines.sort_by(|a, b| {
            (b.packets, b.bytes)
                .cmp(&(a.packets, a.bytes))
                .then_with(|| a.place().cmp(&b.place()))
        });
        lines
    }

    fn views(&self) -> Vec<ChangeView> {
        self.survey
            .as_ref()
            .map(|s| changes::views(s, None))
            .unwrap_or_default()
    }

    fn json(&self) -> StatusJson {
        let views = self.views();
        let sets: Vec<SetChange> = self
            .survey
            .as_ref()
            .map(|s| s.set_changes().cloned().collect())
            .unwrap_or_default();
        let views = changes::in_order(views, &sets);
        let kernel = KernelJson {
            read: self.kernel_read,
            in_sync: self.survey.as_ref().map(Survey::in_sync),
            counts: changes::counts(&views),
            changes: views,
            warnings: self
                .survey
                .as_ref()
                .map(warnings::of_survey)
                .unwrap_or_default()
                .into_iter()
                .chain(self.hidden.iter().cloned())
                .collect(),
            sets,
        };
        StatusJson {
            changed: false,
            dry_run: true,
            applied: self.applied.as_ref().map(|a| AppliedJson {
                script: a.script.clone(),
                command: a.command.clone(),
                at: a.at,
                at_utc: utc(a.at),
                digest: a.digest.clone(),
            }),
            kernel,
            pending_confirm: self.pending.as_ref().map(|p| PendingJson {
                script: p.script.clone(),
                deadline: p.deadline,
                deadline_utc: utc(p.deadline),
                seconds_left: p.deadline.saturating_sub(now()),
                expired: p.deadline <= now(),
            }),
            daemon: self.daemon.as_ref().map(|(d, alive)| DaemonJson {
                pid: d.pid,
                running: *alive,
                script: d.script.clone(),
                started_at: d.started_at,
                status: d.status.clone(),
                last_error: d.last_error.clone(),
            }),
            counters: self.lines(),
            problems: self.problems.clone(),
        }
    }

    fn text(&self, ui: &Ui) -> String {
        let mut out = String::new();
        let heading = |text: &str| ui.paint(Paint::Heading, text);
        match &self.applied {
            Some(a) => {
                let _ = writeln!(
                    out,
                    "{} `{}` by `fwscript {}`, {} ({} ago)",
                    heading("applied:"),
                    a.script,
                    a.command,
                    utc(a.at),
                    ago(now().saturating_sub(a.at))
                );
            }
            None if self.problems.iter().any(|p| p.part == "state") => {}
            None => {
                let _ = writeln!(
                    out,
                    "{} nothing, with this state folder",
                    heading("applied:")
                );
            }
        }
        match (&self.survey, self.kernel_read) {
            (Some(survey), _) if survey.in_sync() => {
                let _ = writeln!(
                    out,
                    "{} in sync with the rules last written",
                    heading("kernel:")
                );
            }
            (Some(survey), _) => {
                let views = self.views();
                let _ = writeln!(
                    out,
                    "{} drifted: {} would put back the rules last written (`fwscript apply` or \
                     the daemon's next check repairs it)",
                    heading("kernel:"),
                    report::changes_word(survey.change_count())
                );
                // Set edits first, as apply runs them: a set emptied by hand
                // is drift as much as a deleted rule.
                let mut sets = String::new();
                describe_changes(survey.set_changes(), &mut sets);
                sets.push_str(&report::summary(&Ui::default(), &views));
                for line in sets.lines() {
                    let _ = writeln!(out, "  {line}");
                }
                let drift = views.iter().filter(|v| v.why == Some("drift")).count();
                let changed = views
                    .iter()
                    .filter(|v| v.why == Some("changed_behind_fwscripts_back"))
                    .count();
                if drift + changed > 0 {
                    let _ = writeln!(
                        out,
                        "  {drift} rules added and {changed} changed behind fwscript's back"
                    );
                }
            }
            (None, true) if self.expected.is_none() && self.applied.is_some() => {
                let _ = writeln!(
                    out,
                    "{} no record of the rules last written to compare with",
                    heading("kernel:")
                );
            }
            _ => {}
        }
        let surveyed = self.survey.as_ref().map(warnings::of_survey);
        for warning in surveyed.iter().flatten().chain(&self.hidden) {
            let _ = writeln!(
                out,
                "  {} {}",
                ui.paint(Paint::Warning, "warning:"),
                warning.message
            );
        }
        if let Some(p) = &self.pending {
            let now = now();
            let _ = match p.deadline > now {
                true => writeln!(
                    out,
                    "{} the apply of `{}` waits for `fwscript confirm`: {} s left (until {}), \
                     then the rules from before come back",
                    heading("confirm:"),
                    p.script,
                    p.deadline - now,
                    utc(p.deadline)
                ),
                false => writeln!(
                    out,
                    "{} {}",
                    heading("confirm:"),
                    Warning::confirm_expired(p, now).message
                ),
            };
        }
        if let Some((d, alive)) = &self.daemon {
            match alive {
                true => {
                    let _ = writeln!(
                        out,
                        "{} `fwscript watch` (pid {}) on `{}`: {}",
                        heading("daemon:"),
                        d.pid,
                        d.script,
                        d.status
                    );
                    if let Some(error) = &d.last_error {
                        let _ = writeln!(out, "  last error: {error}");
                    }
                }
                false => {
                    let _ = writeln!(
                        out,
                        "{} not running (pid {} recorded for `{}` is gone)",
                        heading("daemon:"),
                        d.pid,
                        d.script
                    );
                }
            }
        }
        let lines = self.lines();
        if !lines.is_empty() {
            let _ = writeln!(
                out,
                "{}",
                heading("counters (since each rule was written, both families, busiest first):")
            );
            let place = lines
                .iter()
                .map(|l| l.place().chars().count())
                .max()
                .unwrap_or(0);
            // A long line (a literal list of addresses) is cut, so the
            // counters stay in a column a terminal shows.
            let sources: Vec<String> = lines
                .iter()
                .map(|l| shortened(l.source.as_deref().unwrap_or(""), SOURCE_WIDTH))
                .collect();
            let source = sources.iter().map(|s| s.chars().count()).max().unwrap_or(0);
            let packets = lines
                .iter()
                .map(|l| counters::thousands(l.packets).len())
                .max()
                .unwrap_or(0);
            for (line, text) in lines.iter().zip(&sources) {
                let _ = writeln!(
                    out,
                    "  {:place$}  {:source$}  {:>packets$} packets  {:>9}",
                    line.place(),
                    text,
                    counters::thousands(line.packets),
                    counters::bytes(line.bytes),
                );
            }
        }
        for problem in &self.problems {
            let _ = writeln!(
                out,
                "{} {}",
                ui.paint(Paint::Warning, &format!("{}:", problem.part)),
                problem.message
            );
        }
        out
    }

    /// `status --rule ID`: the script line behind one rule.
    fn print_rule(&self, ui: &Ui, id: &RuleId, as_json: bool) -> Result<Outcome, Error> {
        let in_kernel: Vec<&Counted> = self
            .counted
            .iter()
            .filter(|c| c.id.as_ref() == Some(id))
            .collect();
        let found = self.origins.find(id);
        let written = self.expected.as_ref().is_some_and(|rulesets| {
            rulesets.iter().any(|r| {
                r.tables.values().any(|t| {
                    t.hooks.iter().any(|h| &h.rule.id == id)
                        || t.chains.iter().flat_map(|c| &c.rules).any(|r| &r.id == id)
                })
            })
        });
        let what = match (found, written) {
            (Some(Found::Line(line)), _) => RuleJson {
                kind: "line",
                origin: Some(OriginView {
                    file: line.file.clone(),
                    line: line.line,
                    col: line.col,
                }),
                source: line.source.clone(),
            },
            (Some(Found::Baseline), _) => RuleJson {
                kind: "baseline",
                origin: None,
                source: None,
            },
            (None, true) => RuleJson {
                kind: "jump",
                origin: None,
                source: None,
            },
            (None, false) => {
                let mut message = format!("no applied plan has the rule id `{ID_TAG}{id}`");
                if !in_kernel.is_empty() {
                    message.push_str(
                        " (the kernel holds a rule with it, written by another state folder or \
                         by hand?)",
                    );
                }
                for problem in &self.problems {
                    message.push_str(&format!("; {}: {}", problem.part, problem.message));
                }
                return Err(Error::Refused(message));
            }
        };
        let places: Vec<RulePlace> = in_kernel
            .iter()
            .map(|c| RulePlace {
                family: c.family,
                table: c.table.name(),
                chain: c.chain.clone(),
                text: c.spec.clone(),
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect();
        if as_json {
            let mut body = serde_json::to_value(&what).expect("plain data");
            if let Value::Object(map) = &mut body {
                map.insert("id".into(), Value::String(id.to_string()));
                map.insert(
                    "kernel".into(),
                    serde_json::to_value(&places).expect("plain data"),
                );
            }
            json::print(
                "status",
                serde_json::json!({ "changed": false, "dry_run": true, "rule": body }),
            )?;
            return Ok(Outcome::Done);
        }
        let mut out = String::new();
        let said = match (&what.origin, what.kind) {
            (Some(o), _) => format!(
                "{}:{}:{} {}",
                o.file,
                o.line,
                o.col,
                what.source.as_deref().unwrap_or("")
            ),
            (None, "baseline") => "fwscript's own rule (the baseline), from no script line".into(),
            _ => "one of fwscript's jumps between its own chains (a hook or a stage), from no \
                  script line"
                .into(),
        };
        let _ = writeln!(out, "{ID_TAG}{id}: {}", said.trim_end());
        if places.is_empty() {
            let _ = writeln!(out, "  not in the kernel now");
        }
        for place in &places {
            let _ = writeln!(
                out,
                "  {} {} {}: {} ({} packets, {})",
                place.family,
                place.table,
                place.chain,
                place.text,
                counters::thousands(place.packets),
                counters::bytes(place.bytes)
            );
        }
        ui.out(&out)?;
        Ok(Outcome::Done)
    }
}

/// The rulesets of the last write, with only the policies it decided and
/// each rule's recorded script line.
fn expected(
    text: &str,
    rules: &AppliedRules,
    origins: &RuleOrigins,
) -> Result<Vec<Ruleset>, String> {
    let mut rulesets = fallback::parse_rules(text)?;
    let index = origins.index();
    for rule in rulesets
        .iter_mut()
        .flat_map(|r| r.tables.values_mut())
        .flat_map(|t| t.chains.iter_mut())
        .flat_map(|c| c.rules.iter_mut())
    {
        if let Some(Found::Line(line)) = index.get(&rule.id) {
            rule.origin = Some(Origin {
                file: line.file.clone(),
                line: line.line,
                column: line.col,
            });
        }
    }
    for ruleset in &mut rulesets {
        let decided = rules.policies.get(&ruleset.family);
        for (table, tables) in ruleset.tables.iter_mut() {
            tables.policies = decided
                .and_then(|d| d.get(table))
                .cloned()
                .unwrap_or_default();
        }
    }
    Ok(rulesets)
}

/// `5 min`, `3 h`, `2 days`.
fn ago(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Line(String, usize),
    Baseline,
    Unknown,
}

/// The counters of one script line (or of the baseline, or of rules whose
/// line was not recorded).
#[derive(Debug, Clone, Serialize)]
struct LineCount {
    /// `line`, `baseline` or `unrecorded`.
    kind: &'static str,
    origin: Option<OriginView>,
    source: Option<String>,
    packets: u64,
    bytes: u64,
    /// How many kernel rules (both families) it sums.
    rules: usize,
}

impl LineCount {
    fn new(kind: &'static str, origin: Option<OriginView>, source: Option<String>) -> LineCount {
        LineCount {
            kind,
            origin,
            source,
            packets: 0,
            bytes: 0,
            rules: 0,
        }
    }

    /// `fw.rhai:3`, `baseline`, `(no recorded line)`.
    fn place(&self) -> String {
        match (&self.origin, self.kind) {
            (Some(o), _) => format!("{}:{}", o.file, o.line),
            (None, "baseline") => "baseline".into(),
            _ => "(no recorded line)".into(),
        }
    }
}

#[derive(Debug, Serialize)]
struct StatusJson {
    changed: bool,
    dry_run: bool,
    applied: Option<AppliedJson>,
    kernel: KernelJson,
    pending_confirm: Option<PendingJson>,
    daemon: Option<DaemonJson>,
    counters: Vec<LineCount>,
    problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
struct AppliedJson {
    script: String,
    command: String,
    at: u64,
    at_utc: String,
    digest: String,
}

#[derive(Debug, Serialize)]
struct KernelJson {
    /// Whether the kernel's rules could be read.
    read: bool,
    /// `null` when there is nothing to compare (no record, or no read).
    in_sync: Option<bool>,
    changes: Vec<ChangeView>,
    counts: BTreeMap<&'static str, usize>,
    warnings: Vec<Warning>,
    /// The set edits that would put fwscript's ipsets back, as a survey's
    /// `sets` array has them.
    sets: Vec<SetChange>,
}

#[derive(Debug, Serialize)]
struct PendingJson {
    script: String,
    deadline: u64,
    deadline_utc: String,
    seconds_left: u64,
    /// The deadline passed and nothing has put the rules from before back
    /// yet: the next command that writes does.
    expired: bool,
}

#[derive(Debug, Serialize)]
struct DaemonJson {
    pid: u32,
    running: bool,
    script: String,
    started_at: u64,
    status: String,
    last_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct RuleJson {
    /// `line`, `baseline` or `jump`.
    kind: &'static str,
    origin: Option<OriginView>,
    source: Option<String>,
}

#[derive(Debug, Serialize)]
struct RulePlace {
    family: Family,
    table: &'static str,
    chain: String,
    text: String,
    packets: u64,
    bytes: u64,
}

/// The widest script line the counters show whole.
const SOURCE_WIDTH: usize = 60;

/// `text` cut to `width` characters, `…` saying it was.
fn shortened(text: &str, width: usize) -> String {
    match text.chars().count() > width {
        true => text.chars().take(width - 1).chain(['…']).collect(),
        false => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::shortened;

    #[test]
    fn long_script_lines_are_cut_with_an_ellipsis() {
        assert_eq!(shortened("allow_tcp(22);", 60), "allow_tcp(22);");
        let list = format!("block([{}]);", ["\"198.51.100.1\""; 10].join(", "));
        let cut = shortened(&list, 60);
        assert_eq!(cut.chars().count(), 60);
        assert!(cut.ends_with('…') && list.starts_with(cut.trim_end_matches('…')));
    }
}
