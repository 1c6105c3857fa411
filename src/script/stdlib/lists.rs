//! `address_list("lists/blocklist.txt")`: addresses kept in a file beside
//! the script, one address or CIDR per line. The file is confined, checked
//! and read like a module; the list it gives is an ordinary array, usable
//! wherever addresses are.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use ipnet::IpNet;
use rhai::{Array, Dynamic};

use super::Call;
use crate::script::error::Location;
use crate::script::modules;
use crate::script::session::ListFile;
use crate::script::values::{self, Checked, Problem, Step};

/// The addresses of a list file: unique, in file order.
pub type ListEntries = Vec<IpNet>;

pub fn address_list(call: &Call) -> Checked<Dynamic> {
    let at_arg = |p: Problem| p.within(Step::Arg(0));
    let file = values::string(call.arg(0, "its file")?, "the list file").map_err(at_arg)?;
    let opened = modules::open_confined(call.shared, &file, "read the address list", false)
        .map_err(at_arg)?;
    let known = call
        .shared
        .borrow()
        .lists
        .iter()
        .find(|l| l.real == opened.real)
        .map(|l| l.entries.clone());
    let entries = match known {
        Some(entries) => entries,
        None => {
            let shown = opened.shown.clone();
            let real = opened.real.clone();
            let text = opened.read_text().map_err(at_arg)?;
            // A lone `\r` would hide an entry inside a comment line.
            crate::script::source::check_characters(&text, &shown)?;
            let entries = parse_list(&text).map_err(|(line, column, problem)| Problem {
                place: Some(Box::new(Location {
                    file: shown,
                    line,
                    column,
                    source_line: text.lines().nth(line - 1).map(str::to_string),
                })),
                ..problem
            })?;
            call.shared.borrow_mut().lists.push(ListFile {
                written: file.to_string(),
                real,
                entries: entries.clone(),
            });
            entries
        }
    };
    let array: Array = entries.iter().map(|net| Dynamic::from(text(net))).collect();
    Ok(Dynamic::from_array(array))
}

/// An address as a script writes it: a single host without its `/32`.
fn text(net: &IpNet) -> String {
    let mut text = String::with_capacity(18);
    crate::plan::push_net(&mut text, net);
    text
}

/// A multiply-rotate hash (as rustc's own tables use) for telling repeated
/// entries apart: the file is the user's own, so there is no one to flood
/// it with collisions, and the default hasher was a tenth of the time a
/// 100,000-line list took.
#[derive(Default)]
struct Quick(u64);

impl Hasher for Quick {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Reads a list: one address or CIDR per line, `#` starts a comment,
/// blank lines are skipped, a repeated entry counts once. An error gives
/// its line and column (from 1).
pub fn parse_list(text: &str) -> Result<ListEntries, (usize, usize, Problem)> {
    // A line is rarely shorter than 8 bytes: room for them all at once.
    let room = text.len() / 8;
    let mut seen: HashSet<IpNet, BuildHasherDefault<Quick>> =
        HashSet::with_capacity_and_hasher(room, BuildHasherDefault::default());
    let mut entries = Vec::with_capacity(room);
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        // Most lines are an address alone: no comment, nothing around it.
        let plain = !raw.is_empty()
            && raw
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'/'));
        if plain {
            if let Some(net) = crate::plan::parse_v4(raw).filter(|n| n.prefix_len() > 0) {
                if seen.insert(net) {
                    entries.push(net);
                }
                continue;
            }
        }
        let content = raw.split('#').next().unwrap_or("");
        let mut words = content.split_whitespace();
        let Some(word) = words.next() else {
            continue;
        };
        let column = |w: &str| {
            raw[..(w.as_ptr() as usize - raw.as_ptr() as usize)]
                .chars()
                .count()
                + 1
        };
        if let Some(extra) = words.next() {
            return Err((
                line,
                column(extra),
                Problem::new(format!("line {line} holds more than one address"))
                    .hint("write one address or CIDR per line; a comment starts with #"),
            ));
        }
        let net = values::address(word).map_err(|problem| (line, column(word), problem))?;
        if net.prefix_len() == 0 {
            return Err((
                line,
                column(word),
                Problem::new(format!(
                    "`{word}` is every {} address",
                    if net.addr().is_ipv4() { "IPv4" } else { "IPv6" }
                ))
                .hint("a list entry of /0 would block or allow everyone, which is almost surely a mistake; write the networks you mean"),
            ));
        }
        if seen.insert(net) {
            entries.push(net);
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> (usize, usize, String) {
        let (line, column, problem) = parse_list(text).unwrap_err();
        (line, column, problem.message)
    }

    #[test]
    fn comments_blank_lines_and_duplicates() {
        let text =
            "# office\n198.51.100.7\n\n  2001:db8::/32   # v6 too\r\n198.51.100.7\n10.1.2.3/8\n";
        let entries = parse_list(text).unwrap();
        let shown: Vec<String> = entries.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["198.51.100.7/32", "2001:db8::/32", "10.0.0.0/8"]);
        assert_eq!(parse_list("").unwrap(), Vec::new());
        assert_eq!(parse_list("# nothing\n\n").unwrap(), Vec::new());
    }

    #[test]
    fn bad_lines_are_named_with_their_place() {
        assert_eq!(
            error("198.51.100.7\n  300.1.2.3\n"),
            (2, 3, "`300.1.2.3` is not an IP address or CIDR".to_string())
        );
        assert_eq!(
            error("10.0.0.1 10.0.0.2\n"),
            (1, 10, "line 1 holds more than one address".to_string())
        );
        assert_eq!(
            error("host.example.com\n").2,
            "`host.example.com` is not an IP address or CIDR"
        );
        assert_eq!(
            error("10.0.0.0/33").2,
            "prefix length `/33` in `10.0.0.0/33` is out of range 0..32"
        );
    }

    #[test]
    fn a_slash_zero_is_refused() {
        assert_eq!(
            error("10.0.0.1\n0.0.0.0/0\n").2,
            "`0.0.0.0/0` is every IPv4 address"
        );
        assert_eq!(error("::/0\n").2, "`::/0` is every IPv6 address");
        // A /1 is wide, but it is what was written.
        assert_eq!(parse_list("128.0.0.0/1\n").unwrap().len(), 1);
    }

    #[test]
    fn mixed_families_and_long_lists() {
        let mixed = parse_list("192.0.2.1\n2001:db8::1\n").unwrap();
        assert!(mixed[0].addr().is_ipv4() && mixed[1].addr().is_ipv6());
        for count in [7_000_u32, 100_000] {
            let text: String = (0..count)
                .map(|i| format!("10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255))
                .collect();
            let entries = parse_list(&text).unwrap();
            assert_eq!(entries.len(), count as usize);
            assert_eq!(
                entries[count as usize - 1].addr().to_string(),
                format!(
                    "10.{}.{}.{}",
                    (count - 1) >> 16,
                    ((count - 1) >> 8) & 255,
                    (count - 1) & 255
                )
            );
        }
    }
}
