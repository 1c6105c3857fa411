//! How text reaches people (report → **terminal**): `--quiet` keeps only
//! errors and warnings, colour only on a terminal and never when
//! `NO_COLOR` is set (no-color.org), never in JSON.

use std::io::{IsTerminal, Write as _};

use crate::error::Error;

/// What a command may print, and how.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ui {
    pub quiet: bool,
    /// Colour on standard output.
    pub colour: bool,
    /// Colour on standard error.
    pub colour_err: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    Added,
    Removed,
    Moved,
    Heading,
    Warning,
    Error,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Added => "32",
            Paint::Removed => "31",
            Paint::Moved => "33",
            Paint::Heading => "1",
            Paint::Warning => "1;33",
            Paint::Error => "1;31",
        }
    }
}

/// Whether `NO_COLOR` asks for no colour: set to anything but empty.
pub fn no_colour_asked() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

impl Ui {
    pub fn new(quiet: bool) -> Ui {
        let allowed = !no_colour_asked();
        Ui {
            quiet,
            colour: allowed && std::io::stdout().is_terminal(),
            colour_err: allowed && std::io::stderr().is_terminal(),
        }
    }

    /// `text` painted for standard output.
    pub fn paint(&self, paint: Paint, text: &str) -> String {
        paint_if(self.colour, paint, text)
    }

    /// The report on standard output, unless `--quiet`.
    pub fn out(&self, text: &str) -> Result<(), Error> {
        if !self.quiet {
            std::io::stdout().lock().write_all(text.as_bytes())?;
        }
        Ok(())
    }

    /// `warning: …` on standard error, `--quiet` or not.
    pub fn warn(&self, message: &str) {
        let label = paint_if(self.colour_err, Paint::Warning, "warning:");
        eprintln!("{label} {message}");
    }

    /// A note on standard error, which `--quiet` keeps back.
    pub fn note(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// An error as the terminal shows it: `error:` painted.
    pub fn error_text(&self, text: &str) -> String {
        match text.strip_prefix("error:") {
            Some(rest) if self.colour_err => {
                format!("{}{rest}", paint_if(true, Paint::Error, "error:"))
            }
            _ => text.to_string(),
        }
    }
}

fn paint_if(colour: bool, paint: Paint, text: &str) -> String {
    match colour {
        true => format!("\u{1b}[{}m{text}\u{1b}[0m", paint.code()),
        false => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paint_only_when_asked() {
        let plain = Ui::default();
        assert_eq!(plain.paint(Paint::Added, "+ 1"), "+ 1");
        let colour = Ui {
            colour: true,
            ..Ui::default()
        };
        assert_eq!(colour.paint(Paint::Added, "+ 1"), "\u{1b}[32m+ 1\u{1b}[0m");
    }
}
