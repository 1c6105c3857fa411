//! The script functions users can call, from the one table stdlib is
//! registered from, so `fwscript functions` and the engine cannot disagree.

use super::engine;
use super::stdlib::FUNCTIONS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDoc {
    pub name: String,
    pub params: Vec<String>,
    /// The documentation, as lines of at most about 76 characters.
    pub doc: Vec<String>,
}

impl FunctionDoc {
    pub fn signature(&self) -> String {
        format!("{}({})", self.name, self.params.join(", "))
    }
}

/// Every stdlib function, one entry per arity, in the order of the table.
pub fn all() -> Vec<FunctionDoc> {
    FUNCTIONS
        .iter()
        .map(|f| FunctionDoc {
            name: f.name.to_string(),
            params: f.params.iter().map(|p| p.to_string()).collect(),
            doc: wrap(f.doc, 76),
        })
        .collect()
}

/// Rhai's own functions a script may also call (on numbers, strings,
/// arrays, maps), by name: no clock, no `sleep`, no `exit`, no `eval`.
pub fn builtins() -> Vec<String> {
    engine::builtin_names()
}

/// The signatures of one function name, for "takes 1 or 2 arguments" hints.
pub fn signatures(name: &str) -> Vec<String> {
    FUNCTIONS
        .iter()
        .filter(|f| f.name == name)
        .map(|f| f.signature())
        .collect()
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signature_is_listed_with_its_doc() {
        assert_eq!(
            signatures("allow_tcp"),
            ["allow_tcp(ports)", "allow_tcp(ports, opts)"]
        );
        assert!(all().iter().all(|f| !f.doc.is_empty()));
    }

    #[test]
    fn the_builtins_hold_nothing_that_waits_ends_or_reads_a_clock() {
        let builtins = builtins();
        for gone in [
            "sleep",
            "exit",
            "timestamp",
            "elapsed",
            "eval",
            "parse_json",
            "back_trace",
        ] {
            assert!(!builtins.iter().any(|b| b == gone), "`{gone}` is callable");
        }
        for kept in ["len", "push", "contains", "to_string", "keys", "sort"] {
            assert!(builtins.iter().any(|b| b == kept), "`{kept}` is missing");
        }
        assert!(
            !builtins.iter().any(|b| b == "allow_tcp"),
            "stdlib is listed on its own"
        );
    }
}
