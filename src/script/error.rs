//! Script errors, rendered like a compiler's: `file:line:col`, the source
//! line, a caret under the column, and a hint where one helps. Whatever
//! a message quotes of the user's text is shown escaped, on its line.

use std::fmt;

use super::printable;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScriptError {
    pub message: String,
    pub location: Option<Location>,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The text of that line, for the caret display.
    pub source_line: Option<String>,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", printable(&self.message))?;
        if let Some(loc) = &self.location {
            writeln!(
                f,
                "  --> {}:{}:{}",
                printable(&loc.file),
                loc.line,
                loc.column
            )?;
            if let Some(text) = &loc.source_line {
                let text = &printable(text);
                let number = loc.line.to_string();
                let pad = " ".repeat(number.len());
                writeln!(f, "{pad} |")?;
                writeln!(f, "{number} | {text}")?;
                let indent: String = text
                    .chars()
                    .take(loc.column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                writeln!(f, "{pad} | {indent}^")?;
            }
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "  = hint: {}", printable(hint))?;
        }
        Ok(())
    }
}

impl ScriptError {
    /// An error with no place in a script (the script cannot be read).
    pub fn plain(message: impl Into<String>) -> ScriptError {
        ScriptError {
            message: message.into(),
            location: None,
            hint: None,
        }
    }
}

impl ScriptError {
    /// The error on one line, for logs: `fw.rhai:3:1: port 0 is out of range
    /// 1..65535 (hint: …)`. Quoted user text cannot break it in two.
    pub fn one_line(&self) -> String {
        let mut line = match &self.location {
            Some(loc) => format!("{}:{}:{}: {}", loc.file, loc.line, loc.column, self.message),
            None => self.message.clone(),
        };
        if let Some(hint) = &self.hint {
            line.push_str(&format!(" (hint: {hint})"));
        }
        printable(&line)
    }
}
