//! Owned ipsets (plan → render → **sets** → diff → `ipset restore`): the
//! `fws-…` sets that hold a long address list for one rule to match, as
//! fwscript writes them, as `ipset save` shows them, and the edits between
//! the two.
//!
//! Every set is `hash:net` of one family, named after where it is used
//! (never after its entries, so an edited list edits the set in place),
//! and sized for its list with room to grow.

pub mod diff;
pub mod live;

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::netfilter::Family;
use crate::plan::{SetEntries, SetPlan, SetSource};

pub use diff::{diff_sets, SetChange, SetEdit, SetRestore};
pub use live::{LiveSet, SetHeader, SetParseError};

/// The one set type fwscript makes: networks of any prefix length, one
/// family, matched by containment.
pub const SET_TYPE: &str = "hash:net";

/// ipset's own default: a set never gets less.
pub const MIN_MAXELEM: u32 = 65_536;

/// An owned set as fwscript wants it, or as the kernel holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnedSet {
    pub name: String,
    pub family: Family,
    /// The most entries it can hold.
    pub maxelem: u32,
    pub entries: SetEntries,
    /// Where its entries come from; `None` for a set read from the kernel.
    pub source: Option<SetSource>,
}

impl OwnedSet {
    /// The set a plan asks for, sized for its entries.
    pub fn planned(set: &SetPlan) -> OwnedSet {
        OwnedSet {
            name: set.name.clone(),
            family: set.family,
            maxelem: maxelem_for(set.entries.len()),
            entries: set.entries.clone(),
            source: Some(set.source.clone()),
        }
    }

    /// `create NAME hash:net family inet hashsize H maxelem M`: what `ipset
    /// restore` takes to make it (empty).
    pub fn create_line(&self, name: &str) -> String {
        create_line(name, self.family, self.entries.len(), self.maxelem)
    }
}

/// Its name, family, size and source: 100,000 entries are no one's debug
/// output.
impl fmt::Debug for OwnedSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} {}, maxelem {}, {} entries",
            self.name,
            SET_TYPE,
            ipset_family(self.family),
            self.maxelem,
            self.entries.len()
        )?;
        match &self.source {
            Some(source) => write!(f, ", {source})"),
            None => f.write_str(")"),
        }
    }
}

/// Room for the list twice over, as a power of two, and at least ipset's
/// default: a list can grow a long way before its set must be made anew
/// (100,000 entries get 262,144).
pub fn maxelem_for(entries: usize) -> u32 {
    let wanted = entries.saturating_mul(2).checked_next_power_of_two();
    wanted
        .and_then(|w| u32::try_from(w).ok())
        .unwrap_or(u32::MAX)
        .max(MIN_MAXELEM)
}

/// The `create` line of a set that is to hold `entries`.
pub fn create_line(name: &str, family: Family, entries: usize, maxelem: u32) -> String {
    format!(
        "create {name} {SET_TYPE} family {} hashsize {} maxelem {maxelem}",
        ipset_family(family),
        hashsize_for(entries)
    )
}

/// The hash table's first size: big enough that filling it does not make
/// the kernel grow it step by step (measured with 100,000 entries: 0.27 s
/// instead of 0.34 s). ipset picks the size it grows to itself, and a
/// later read ignores it.
pub fn hashsize_for(entries: usize) -> u32 {
    let wanted = (entries / 2).checked_next_power_of_two();
    wanted
        .and_then(|w| u32::try_from(w).ok())
        .unwrap_or(u32::MAX)
        .clamp(1024, 1 << 20)
}

/// ipset's name for a family.
pub fn ipset_family(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "inet",
        Family::Ipv6 => "inet6",
    }
}

pub fn parse_ipset_family(text: &str) -> Option<Family> {
    match text {
        "inet" => Some(Family::Ipv4),
        "inet6" => Some(Family::Ipv6),
        _ => None,
    }
}

/// An entry as ipset prints it: a host without its `/32` or `/128`.
pub fn entry_text(net: &IpNet) -> EntryText<'_> {
    EntryText(net)
}

pub struct EntryText<'a>(&'a IpNet);

impl fmt::Display for EntryText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Appends `add NAME ENTRY` and a newline: the line a set's restore input
/// has 100,000 of, so an IPv4 one is put together on the stack and pushed
/// once.
pub fn push_add(out: &mut String, name: &str, entry: &IpNet) {
    const PREFIX: usize = "add ".len();
    let mut line = [0u8; 64];
    match entry {
        IpNet::V4(net) if PREFIX + name.len() + 1 + crate::plan::V4_TEXT < line.len() => {
            line[..PREFIX].copy_from_slice(b"add ");
            let mut len = PREFIX;
            line[len..len + name.len()].copy_from_slice(name.as_bytes());
            len += name.len();
            line[len] = b' ';
            len += 1;
            len += crate::plan::v4_text(net, &mut line[len..]);
            line[len] = b'\n';
            len += 1;
            out.push_str(std::str::from_utf8(&line[..len]).expect("a name and digits"));
        }
        _ => {
            out.push_str("add ");
            out.push_str(name);
            out.push(' ');
            crate::plan::push_net(out, entry);
            out.push('\n');
        }
    }
}

/// An entry as ipset prints it, back into a network: `None` for anything
/// else.
pub fn parse_entry(text: &str) -> Option<IpNet> {
    if let Some(net) = crate::plan::parse_v4(text) {
        return Some(net);
    }
    match text.split_once('/') {
        None => text.parse::<IpAddr>().ok().map(IpNet::from),
        Some(_) => text.parse::<IpNet>().ok().filter(|n| *n == n.trunc()),
    }
}

/// The `ipset restore` input that makes `sets` from nothing: each one's
/// `create` line and its entries. What `render --sets` prints and the
/// records keep under `# ipset`.
pub fn restore_file<'a>(sets: impl IntoIterator<Item = &'a OwnedSet>) -> String {
    let mut out = String::new();
    push_restore_file(&mut out, sets);
    out
}

/// [`restore_file`] appended to `out`: a 100,000-entry set is 3.5 MB,
/// not worth a second buffer and a copy.
pub fn push_restore_file<'a>(out: &mut String, sets: impl IntoIterator<Item = &'a OwnedSet>) {
    for set in sets {
        out.push_str(&set.create_line(&set.name));
        out.push('\n');
        out.reserve(set.entries.len() * (set.name.len() + 20));
        for entry in set.entries.iter() {
            push_add(out, &set.name, entry);
        }
    }
}

/// Set changes for people, per family, an entry edit with the entries
/// themselves when there are few (`plan` never prints 100,000 lines):
///
/// ```text
/// ipv4 ipset
///   +1 −0 entries in set fws-2c1f0e9a7b3d (lists/blocklist.txt)
///       + 198.51.100.9
/// ```
pub fn describe_changes<'a>(changes: impl IntoIterator<Item = &'a SetChange>, out: &mut String) {
    const LISTED: usize = 10;
    let changes: Vec<&SetChange> = changes.into_iter().collect();
    for family in Family::ALL {
        let mut of_family = changes.iter().filter(|c| c.family == family).peekable();
        if of_family.peek().is_none() {
            continue;
        }
        let _ = writeln!(out, "{family} ipset");
        for change in of_family {
            let _ = writeln!(out, "  {change}");
            if let SetEdit::UpdateSet { added, removed } = &change.edit {
                if added.len() + removed.len() <= LISTED {
                    for entry in removed {
                        let _ = writeln!(out, "      \u{2212} {entry}");
                    }
                    for entry in added {
                        let _ = writeln!(out, "      + {}", entry_text(entry));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
