//! `try`: apply inside a throwaway network namespace and show the result,
//! safe on any machine (script → plan → **a fresh kernel**).

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::report::{changes_word, Report};
use super::warnings::Warning;
use super::{root, Outcome, Ui};
use crate::apply;
use crate::backend::iptables::{find, Iptables};
use crate::backend::{Backend, BackendError};
use crate::cli::TryArgs;
use crate::error::Error;
use crate::forms::KernelForms;
use crate::forwarding;
use crate::script;
use crate::transaction;

/// `apply` inside a namespace made for the purpose and removed afterwards:
/// safe on any machine, and shows what the script does to a clean kernel.
/// The host's own firewall is never read or written.
pub fn try_script(ui: &Ui, args: &TryArgs) -> Result<Outcome, Error> {
    let plan = script::evaluate(&args.script)?;
    root::require("`fwscript try` creates a network namespace to apply the script in")?;
    let netns = Netns::create()?;
    let backend = Iptables::detect(Some(&netns.name))?;
    let survey = apply::survey(
        &backend,
        transaction::desired(&plan),
        &KernelForms::default(),
    )?;
    apply::apply(&backend, &survey)?;
    // Forwarding as the namespace has it, where these rules now are.
    let read = |path: &str| netns.read(path);
    let warnings = forwarding::off(&plan, &read)
        .iter()
        .map(Warning::forwarding)
        .collect();
    let mut saves = Map::new();
    let mut text = String::new();
    for family in &survey.families {
        let name = family.live.family;
        let save = backend.save(name)?;
        text.push_str(&format!("\n# {}-save\n{save}", name.tool()));
        saves.insert(name.name().to_string(), Value::String(save));
    }
    if plan.sets().next().is_some() {
        let sets = backend.list_sets()?;
        text.push_str(&format!("\n# ipset list -t\n{sets}"));
        saves.insert("ipset".into(), Value::String(sets));
    }
    let mut report = Report {
        command: "try",
        plan: Some(&plan),
        json: args.json,
        warnings,
        ..Report::default()
    };
    report
        .extra
        .insert("namespace".into(), Value::String(netns.name.clone()));
    report.extra.insert("rules".into(), Value::Object(saves));
    if !args.json {
        ui.out(&format!("in a new network namespace `{}`:\n", netns.name))?;
    }
    let last = format!(
        "applied {} in the namespace (the host's firewall is untouched){text}",
        changes_word(survey.change_count())
    );
    report.print(ui, &survey, &last)?;
    Ok(Outcome::Done)
}

/// A network namespace that exists as long as this value does, even when
/// the command fails half way.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Result<Netns, Error> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("fws-try-{}-{nanos:x}", std::process::id());
        ip(&["netns", "add", &name])?;
        Ok(Netns { name })
    }

    /// A file as a process inside the namespace reads it (`/proc/sys/net`
    /// is per namespace).
    fn read(&self, path: &str) -> Option<String> {
        let program = find("ip")?;
        let output = Command::new(program)
            .args(["netns", "exec", &self.name, "cat", path])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(err) = ip(&["netns", "delete", &self.name]) {
            eprintln!(
                "warning: cannot remove network namespace `{}`: {err}",
                self.name
            );
        }
    }
}

fn ip(args: &[&str]) -> Result<(), BackendError> {
    let program = find("ip").ok_or_else(|| BackendError::NotFound { tool: "ip".into() })?;
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => BackendError::NotFound { tool: "ip".into() },
            _ => BackendError::Spawn {
                tool: "ip".into(),
                source,
            },
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(BackendError::Failed {
        tool: format!("ip {}", args.join(" ")),
        message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}
