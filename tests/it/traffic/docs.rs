//! The script snippets of docs/tutorial.md. A fence opened with
//! ```` ```rhai name=NAME ```` names its snippet, so that a test can use
//! exactly the script the reader is shown.

use std::path::Path;

pub struct Snippet {
    pub name: Option<String>,
    /// The line of the opening fence, 1-based.
    pub line: usize,
    pub text: String,
}

pub fn tutorial() -> Vec<Snippet> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tutorial.md");
    let text = std::fs::read_to_string(&path).expect("docs/tutorial.md");
    snippets(&text)
}

/// The snippet named `name` in docs/tutorial.md.
pub fn snippet(name: &str) -> String {
    let mut found = tutorial()
        .into_iter()
        .filter(|s| s.name.as_deref() == Some(name));
    let snippet = found.next().unwrap_or_else(|| panic!("no snippet {name}"));
    assert!(found.next().is_none(), "two snippets named {name}");
    snippet.text
}

fn snippets(markdown: &str) -> Vec<Snippet> {
    let mut out = Vec::new();
    let mut open: Option<Snippet> = None;
    for (index, line) in markdown.lines().enumerate() {
        match open.take() {
            Some(snippet) if line.trim_end() == "```" => out.push(snippet),
            Some(mut snippet) => {
                snippet.text.push_str(line);
                snippet.text.push('\n');
                open = Some(snippet);
            }
            None => {
                let Some(info) = line.strip_prefix("```rhai") else {
                    continue;
                };
                let name = info.trim().strip_prefix("name=").map(str::to_string);
                open = Some(Snippet {
                    name,
                    line: index + 1,
                    text: String::new(),
                });
            }
        }
    }
    assert!(open.is_none(), "a ```rhai fence is never closed");
    out
}
