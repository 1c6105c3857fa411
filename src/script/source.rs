//! Script text before Rhai parses it (script stage): texts too long for
//! exact error positions are refused, so are characters that would make
//! the text on screen differ from what runs (a lone carriage return, other
//! control characters, bidi controls), and an unterminated block comment,
//! which Rhai would take as the end of the script, is found at its start.

use rhai::{get_next_token, InputStream, Position, Token, TokenizeState};

use super::error::Location;
use super::values::Problem;

/// Rhai keeps lines and columns in 16 bits; past these, its positions
/// stop counting and an error would point at the wrong line.
pub const MAX_LINES: usize = u16::MAX as usize;
pub const MAX_COLUMNS: usize = u16::MAX as usize;

/// What must hold before Rhai parses `text`: positions it can report
/// exactly, and no block comment that swallows the rest of the file.
pub fn check(text: &str, shown: &str) -> Result<(), Problem> {
    check_characters(text, shown)?;
    check_size(text, shown)?;
    if let Some((line, column)) = unterminated_comment(text) {
        return Err(Problem {
            place: Some(Box::new(Location {
                file: shown.to_string(),
                line,
                column,
                source_line: text.lines().nth(line - 1).map(str::to_string),
            })),
            ..Problem::new("this block comment is never closed")
                .hint("close it with `*/`; without it the rest of the file would be ignored")
        });
    }
    Ok(())
}

/// Refuses characters that show as something other than what Rhai reads.
/// A lone `\r` ends a `//` comment for Rhai (the rest of the line runs)
/// while a terminal shows one comment line, and Rhai counts it as a new
/// line where `lines()` does not, which would shift every position after
/// it; the other controls hide or redraw text, and bidi controls turn it
/// around on screen. Only `\t`, `\n` and the `\r` of a CRLF pass.
pub fn check_characters(text: &str, shown: &str) -> Result<(), Problem> {
    // Printable ASCII, tabs and newlines, as almost every script and list
    // is: nothing to refuse, and a byte test is many times cheaper than
    // decoding each character (a 100,000-address list is 1.5 MB).
    if text
        .bytes()
        .all(|b| matches!(b, b' '..=b'~' | b'\n' | b'\t'))
    {
        return Ok(());
    }
    let mut line = 1;
    let mut line_start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let what = match c {
            '\n' => {
                line += 1;
                line_start = at + 1;
                continue;
            }
            '\t' => continue,
            '\r' if chars.peek().is_some_and(|(_, next)| *next == '\n') => continue,
            '\r' => "a carriage return (`\\r`) that does not end a line".to_string(),
            c if c.is_control() => format!("the control character U+{:04X}", c as u32),
            '\u{2028}' | '\u{2029}' => {
                format!("the line or paragraph separator U+{:04X}", c as u32)
            }
            c if is_bidi(c) => format!("the bidi control U+{:04X}", c as u32),
            _ => continue,
        };
        let column = text[line_start..at].chars().count() + 1;
        let hint = if c == '\r' {
            "Rhai would end a `//` comment there and run the rest of the line, which a \
             terminal shows as part of the comment; save the file with LF or CRLF line ends"
        } else {
            "it can make the text on screen differ from what runs; remove it, or in a \
             string write it as an escape like `\\u202E`"
        };
        return Err(Problem {
            place: Some(Box::new(Location {
                file: shown.to_string(),
                line,
                column,
                source_line: text[line_start..].lines().next().map(str::to_string),
            })),
            ..Problem::new(format!("`{shown}` holds {what}")).hint(hint)
        });
    }
    Ok(())
}

/// The characters that reorder text on screen (rustc refuses the same).
fn is_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Refuses a text whose positions Rhai could not report exactly.
pub fn check_size(text: &str, shown: &str) -> Result<(), Problem> {
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if number > MAX_LINES {
            return Err(Problem {
                place: Some(Box::new(Location {
                    file: shown.to_string(),
                    line: number,
                    column: 1,
                    source_line: Some(line.to_string()),
                })),
                ..Problem::new(format!(
                    "`{shown}` has more than {MAX_LINES} lines, past which errors cannot be placed exactly"
                ))
                .hint("put long address lists in a list file (address_list(\"…\")) and split the rest into modules")
            });
        }
        if line.len() > MAX_COLUMNS && line.chars().count() > MAX_COLUMNS {
            return Err(Problem {
                place: Some(Box::new(Location {
                    file: shown.to_string(),
                    line: number,
                    column: 1,
                    source_line: None,
                })),
                ..Problem::new(format!(
                    "line {number} of `{shown}` is longer than {MAX_COLUMNS} characters, past which errors cannot be placed exactly"
                ))
                .hint("break the line; a long address list fits in a list file (address_list(\"…\"))")
            });
        }
    }
    Ok(())
}

/// Where a block comment that never ends starts (line, column, from 1).
/// Rhai's own lexer decides whether there is one (it ends the script
/// there without a word); only texts holding a `/*` pay for the pass.
pub fn unterminated_comment(text: &str) -> Option<(usize, usize)> {
    if !text.contains("/*") {
        return None;
    }
    let mut stream = Chars {
        chars: text.chars(),
        back: Vec::new(),
    };
    let mut state = TokenizeState::default();
    let mut pos = Position::new(1, 0);
    // Brace depth inside each open `${…}` of a backtick string (its own
    // `{` counts one): the parser, not the lexer, says where the string's
    // text resumes.
    let mut interpolations: Vec<usize> = Vec::new();
    // Every token but the last takes at least one character: past that
    // many rounds the lexer is going nowhere, and the parser will say why.
    for _ in 0..=text.len() {
        let before = pos;
        let (token, _) = get_next_token(&mut stream, &mut state, &mut pos);
        match token {
            // A backtick string still open at the end: the lexer hands back
            // its text again and again (Rhai's own token iterator turns this
            // into "unterminated string"); the parser reports it.
            Token::StringConstant(_) if state.is_within_text_terminated_by.is_some() => {
                return None
            }
            Token::EOF => {
                if state.comment_level == 0 {
                    return None;
                }
                return Some(comment_start(text, before));
            }
            Token::LexError(_) => return None,
            Token::InterpolatedString(_) => interpolations.push(0),
            Token::LeftBrace | Token::MapStart => {
                if let Some(depth) = interpolations.last_mut() {
                    *depth += 1;
                }
            }
            Token::RightBrace => match interpolations.last_mut() {
                Some(1) => {
                    interpolations.pop();
                    state.is_within_text_terminated_by = Some("`".into());
                }
                Some(depth) => *depth -= 1,
                None => {}
            },
            _ => {}
        }
    }
    None
}

struct Chars<'a> {
    chars: std::str::Chars<'a>,
    back: Vec<char>,
}

impl InputStream for Chars<'_> {
    fn unget(&mut self, ch: char) {
        self.back.push(ch);
    }

    fn get_next(&mut self) -> Option<char> {
        self.back.pop().or_else(|| self.chars.next())
    }

    fn peek_next(&mut self) -> Option<char> {
        if self.back.is_empty() {
            let next = self.chars.next()?;
            self.back.push(next);
        }
        self.back.last().copied()
    }
}

/// The first `/*` at or after `from` that is not closed: between tokens,
/// only blanks and comments stand before it.
fn comment_start(text: &str, from: Position) -> (usize, usize) {
    let (line, column) = (from.line().unwrap_or(1), from.position().unwrap_or(0) + 1);
    let offset: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum::<usize>();
    let rest = &text[offset..];
    let skip: usize = rest.chars().take(column - 1).map(char::len_utf8).sum();
    let chars: Vec<char> = rest[skip..].chars().collect();
    let (mut l, mut c) = (line, column);
    let mut i = 0;
    let step = |i: &mut usize, l: &mut usize, c: &mut usize| {
        if chars[*i] == '\n' {
            *l += 1;
            *c = 1;
        } else {
            *c += 1;
        }
        *i += 1;
    };
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    step(&mut i, &mut l, &mut c);
                }
            }
            ('/', Some('*')) => {
                let start = (l, c);
                let mut depth = 0;
                while i < chars.len() {
                    match (chars[i], chars.get(i + 1)) {
                        ('/', Some('*')) => {
                            depth += 1;
                            step(&mut i, &mut l, &mut c);
                        }
                        ('*', Some('/')) => {
                            depth -= 1;
                            step(&mut i, &mut l, &mut c);
                        }
                        _ => {}
                    }
                    step(&mut i, &mut l, &mut c);
                    if depth == 0 {
                        break;
                    }
                }
                if depth > 0 {
                    return start;
                }
            }
            _ => step(&mut i, &mut l, &mut c),
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_of_an_unterminated_comment_is_found() {
        assert_eq!(
            unterminated_comment("a();\n  /* open\nb();\n"),
            Some((2, 3))
        );
        assert_eq!(unterminated_comment("/* a /* b */ c\n"), Some((1, 1)));
        assert_eq!(
            unterminated_comment("/* a */ b(); /* c /* d */ */ e();"),
            None
        );
        assert_eq!(
            unterminated_comment("let s = \"/* not a comment\";\n/*x"),
            Some((2, 1))
        );
        assert_eq!(
            unterminated_comment("let s = `${ \"}\" } /* in text`;\n// /* line\n  /* real"),
            Some((3, 3))
        );
        assert_eq!(unterminated_comment("let c = '/'; /*"), Some((1, 14)));
        // Found by the fuzz harness: a backtick string left open after an
        // interpolation once made the lexer go round for ever.
        assert_eq!(unterminated_comment("/* x */ let s = `a ${b} c"), None);
        assert_eq!(unterminated_comment("/**/`${}`${`"), None);
    }

    #[test]
    fn characters_that_hide_what_runs_are_refused_at_their_place() {
        let problem = check("// note\rallow_from(\"0.0.0.0/0\");\n", "fw.rhai").unwrap_err();
        assert_eq!(
            problem.message,
            "`fw.rhai` holds a carriage return (`\\r`) that does not end a line"
        );
        let place = problem.place.unwrap();
        assert_eq!((place.line, place.column), (1, 8));
        let problem = check("a();\nlet x = \"é\u{1b}[2J\";\n", "fw.rhai").unwrap_err();
        assert_eq!(
            problem.message,
            "`fw.rhai` holds the control character U+001B"
        );
        let place = problem.place.unwrap();
        assert_eq!((place.line, place.column), (2, 11));
        let problem = check("// ok \u{202e} evil\n", "fw.rhai").unwrap_err();
        assert_eq!(problem.message, "`fw.rhai` holds the bidi control U+202E");
        assert!(check("a();\r\n\tb();\r\n// é ✓\n", "fw.rhai").is_ok());
        // Plain ASCII takes a byte-wise path: its controls are refused too.
        for c in ['\0', '\u{b}', '\u{c}', '\u{1b}', '\u{7f}'] {
            let text = format!("a();\nlet x = \"{c}\";\n");
            let problem = check(&text, "fw.rhai").unwrap_err();
            assert_eq!(
                problem.message,
                format!("`fw.rhai` holds the control character U+{:04X}", c as u32)
            );
            let place = problem.place.unwrap();
            assert_eq!((place.line, place.column), (2, 10));
        }
        assert!(check("a();\n\tb(\"~ !\");\n", "fw.rhai").is_ok());
        // A CR at the very end is not a line end either.
        assert!(check("a();\r", "fw.rhai").is_err());
        // Lone CRs once let 65,535 lines hide in seven.
        let many = format!("{}\nallow_tcp(0);\n", "//\r".repeat(70_000));
        let problem = check(&many, "fw.rhai").unwrap_err();
        assert_eq!(problem.place.unwrap().line, 1);
    }

    #[test]
    fn texts_too_long_for_exact_positions_are_refused() {
        let ok = "x();\n".repeat(MAX_LINES);
        assert!(check_size(&ok, "fw.rhai").is_ok());
        let long = format!("{ok}y();\n");
        let problem = check_size(&long, "fw.rhai").unwrap_err();
        assert!(
            problem.message.contains("more than 65535 lines"),
            "{}",
            problem.message
        );
        assert_eq!(problem.place.unwrap().line, 65_536);
        let wide = format!("a();\nlet x = \"{}\";\n", "é".repeat(MAX_COLUMNS));
        let problem = check_size(&wide, "fw.rhai").unwrap_err();
        assert!(
            problem.message.starts_with("line 2 of `fw.rhai` is longer"),
            "{}",
            problem.message
        );
        // Bytes are not characters: a line of 40,000 two-byte characters fits.
        assert!(check_size(&"é".repeat(40_000), "fw.rhai").is_ok());
    }
}
