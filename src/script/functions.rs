//! The script functions users can call, read from stdlib's own doc comments
//! so `fwscript functions` and the code cannot disagree.

use super::engine::STDLIB;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDoc {
    pub name: String,
    pub params: Vec<String>,
    /// The `///` lines above the function, without the slashes.
    pub doc: Vec<String>,
}

impl FunctionDoc {
    pub fn signature(&self) -> String {
        format!("{}({})", self.name, self.params.join(", "))
    }
}

/// Every public stdlib function, one entry per arity, in stdlib order.
pub fn all() -> Vec<FunctionDoc> {
    STDLIB.iter().flat_map(|(_, text)| parse(text)).collect()
}

fn parse(text: &str) -> Vec<FunctionDoc> {
    let mut docs = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(doc) = line.strip_prefix("///") {
            pending.push(doc.trim().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("fn ") {
            let (name, params) = rest.split_once('(').unwrap_or((rest, ""));
            let params = params.split(')').next().unwrap_or("");
            let params: Vec<String> = params
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            if !name.starts_with("__") {
                docs.push(FunctionDoc {
                    name: name.trim().to_string(),
                    params,
                    doc: std::mem::take(&mut pending),
                });
            }
        }
        pending.clear();
    }
    docs
}

/// The signatures of one function name, for "takes 1 or 2 arguments" hints.
pub fn signatures(name: &str) -> Vec<String> {
    all()
        .into_iter()
        .filter(|f| f.name == name)
        .map(|f| f.signature())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_function_has_a_doc_and_the_contract_names_exist() {
        let docs = all();
        for doc in &docs {
            assert!(
                !doc.doc.is_empty(),
                "`{}` has no /// doc in stdlib",
                doc.signature()
            );
        }
        let names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
        for wanted in [
            "allow_tcp",
            "allow_udp",
            "allow_service",
            "ssh_from",
            "limit_tcp",
            "drop_scans",
            "allow_from",
            "block",
            "allow_ping",
            "redirect_tcp",
            "forward_tcp",
            "masquerade",
            "log_drops",
            "policy",
            "rule",
        ] {
            assert!(names.contains(&wanted), "stdlib lacks `{wanted}`");
        }
        assert_eq!(
            signatures("allow_tcp"),
            ["allow_tcp(ports)", "allow_tcp(ports, opts)"]
        );
    }
}
