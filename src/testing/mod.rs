//! `fwscript test`: expectations about a script's verdicts, written as
//! Rhai test files (`expect(#{ proto: "tcp", dport: 22 }, "accept");`),
//! checked offline through `explain`'s evaluator, or with real packets in
//! throwaway namespaces (script → plan → **expectations → verdicts**).

mod file;
pub mod kernel;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use file::{Expectation, Expected, PacketSpec};

use crate::explain::{Explanation, Verdict};
use crate::netfilter::Family;
use crate::plan::Plan;
use crate::script::ScriptError;

/// How an expectation was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Through `explain`'s evaluator.
    Offline,
    /// With a real packet through the applied rules.
    Kernel,
}

/// What one family's packet met.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Seen {
    pub family: Family,
    pub method: Method,
    /// Why a `--kernel` run checked this one offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_because: Option<String>,
    #[serde(serialize_with = "verdict_name")]
    pub verdict: Verdict,
    /// The rule or policy that decided, with its script line, as `explain`
    /// says it.
    pub decided_by: String,
    /// Where the packet arrived after NAT, when it was translated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translated_to: Option<Landing>,
    pub passed: bool,
}

/// Where a translated packet arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Landing {
    pub dst: Option<IpAddr>,
    pub dport: Option<u16>,
}

fn verdict_name<S: serde::Serializer>(verdict: &Verdict, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&verdict.name().to_ascii_lowercase())
}

/// One expectation and what came of it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub expectation: Expectation,
    pub seen: Vec<Seen>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.seen.iter().all(|s| s.passed)
    }
}

/// The test files `fwscript test SCRIPT` reads when none are named: those
/// beside the script named after it, `NAME.test.rhai` and
/// `NAME.*.test.rhai` for `NAME.rhai`.
pub fn default_files(script: &Path) -> Result<Vec<PathBuf>, ScriptError> {
    let folder = match script.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = script
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.strip_suffix(".rhai").unwrap_or(n).to_string())
        .unwrap_or_default();
    let entries = std::fs::read_dir(&folder).map_err(|e| {
        ScriptError::plain(format!(
            "cannot list the folder of `{}`: {e}",
            script.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|name| {
                name == format!("{stem}.test.rhai")
                    || (name.starts_with(&format!("{stem}.")) && name.ends_with(".test.rhai"))
            })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ScriptError {
            message: format!(
                "no test files for `{}`: looked for `{stem}.test.rhai` and `{stem}.*.test.rhai` beside it",
                script.display()
            ),
            location: None,
            hint: Some("name the test files on the command line, or create one: expect(#{ proto: \"tcp\", dport: 22 }, \"accept\");".into()),
        });
    }
    Ok(files)
}

/// Reads every test file; the first mistake in any is the error.
pub fn load(files: &[PathBuf]) -> Result<Vec<Expectation>, ScriptError> {
    let mut all = Vec::new();
    for path in files {
        all.extend(file::load(path, &path.display().to_string())?);
    }
    Ok(all)
}

/// Checks `expectations` against `plan` through `explain`.
pub fn offline(plan: &Plan, expectations: &[Expectation]) -> Vec<Outcome> {
    expectations
        .iter()
        .map(|e| Outcome {
            expectation: e.clone(),
            seen: e
                .query
                .explain(plan)
                .iter()
                .map(|x| judge(e, x, Method::Offline))
                .collect(),
        })
        .collect()
}

/// What `explain` says of one family's packet, judged.
pub fn judge(e: &Expectation, x: &Explanation, method: Method) -> Seen {
    let original = e.query.packets.iter().find(|p| p.family == x.family);
    let translated = original.is_some_and(|p| {
        p.dst != x.packet.dst || p.transport.dport() != x.packet.transport.dport()
    }) || x.packet.dnat_from_port.is_some();
    let landing = translated.then_some(Landing {
        dst: x.packet.dst,
        dport: x.packet.transport.dport(),
    });
    let passed = match &e.expected {
        Expected::Verdict(v) => x.verdict == *v,
        Expected::Nat { dst, dport } => {
            x.verdict == Verdict::Accept
                && translated
                && dst.is_none_or(|d| x.packet.dst == Some(d))
                && dport.is_none_or(|p| x.packet.transport.dport() == Some(p))
        }
    };
    Seen {
        family: x.family,
        method,
        offline_because: None,
        verdict: x.verdict,
        decided_by: x.decided_by.to_string(),
        translated_to: landing,
        passed,
    }
}

/// The expectation in words: `ACCEPT`, or `ACCEPT, translated to port 8080`.
pub fn expected_text(expected: &Expected) -> String {
    match expected {
        Expected::Verdict(v) => v.name().to_string(),
        Expected::Nat { dst, dport } => {
            let mut to = Vec::new();
            if let Some(d) = dst {
                to.push(d.to_string());
            }
            if let Some(p) = dport {
                to.push(format!("port {p}"));
            }
            format!("ACCEPT, translated to {}", to.join(" "))
        }
    }
}

/// One line for a failed family: `fw.test.rhai:3: expected …, got … (ipv4): decided by …`.
pub fn failure_line(outcome: &Outcome, seen: &Seen) -> String {
    let e = &outcome.expectation;
    let mut got = seen.verdict.name().to_string();
    match (&e.expected, &seen.translated_to) {
        (Expected::Nat { .. }, Some(landing)) => {
            got.push_str(", translated to");
            if let Some(d) = landing.dst {
                got.push_str(&format!(" {d}"));
            }
            if let Some(p) = landing.dport {
                got.push_str(&format!(" port {p}"));
            }
        }
        (Expected::Nat { .. }, None) => got.push_str(", not translated"),
        _ => {}
    }
    let how = match seen.method {
        Method::Offline => String::new(),
        Method::Kernel => " with real packets".to_string(),
    };
    format!(
        "{}:{}: {}: expected {}, got {got} ({}{how}): decided by {}",
        e.file,
        e.line,
        e.packet.describe(),
        expected_text(&e.expected),
        seen.family,
        seen.decided_by
    )
}
