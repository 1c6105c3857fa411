//! `try`: apply inside a throwaway network namespace and show the result,
//! safe on any machine (script → plan → **a fresh kernel**).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use super::report::{describe, print};
use super::Outcome;
use crate::apply;
use crate::backend::iptables::{find, Iptables};
use crate::backend::{Backend, BackendError};
use crate::error::Error;
use crate::forms::KernelForms;
use crate::script;
use crate::transaction;

/// `apply` inside a namespace made for the purpose and removed afterwards:
/// safe on any machine, and shows what the script does to a clean kernel.
pub fn try_script(path: &Path) -> Result<Outcome, Error> {
    let plan = script::evaluate(path)?;
    let netns = Netns::create()?;
    let backend = Iptables::detect(Some(&netns.name))?;
    let survey = apply::survey(
        &backend,
        transaction::desired(&plan),
        &KernelForms::default(),
    )?;
    let mut out = format!("in a new network namespace `{}`:\n", netns.name);
    out.push_str(&describe(&survey, Some(&plan)));
    apply::apply(&backend, &survey)?;
    let _ = writeln!(out, "applied {} changes", survey.change_count());
    for family in &survey.families {
        let name = family.live.family;
        let _ = writeln!(out, "\n# {}-save", name.tool());
        out.push_str(&backend.save(name)?);
    }
    if plan.sets().next().is_some() {
        out.push_str("\n# ipset list -t\n");
        out.push_str(&backend.list_sets()?);
    }
    print(&survey, &out)?;
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
