//! The set diff (live sets + wanted sets → **set changes** → `ipset
//! restore`): per set, the entries to add and delete, a new set, a set
//! made anew and swapped in, or one to destroy; and the `ipset restore`
//! input of those, split in what must run before the rules are written and
//! what only after. Pure.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt::{self, Write as _};

use ipnet::IpNet;
use serde::{Serialize, Serializer};

use super::{entry_text, ipset_family, push_add, LiveSet, OwnedSet, SET_TYPE};
use crate::netfilter::Family;
use crate::plan::{SetEntries, SetSource};

/// One set's edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetChange {
    pub set: String,
    pub family: Family,
    /// The list file or script call its entries come from, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SetSource>,
    #[serde(flatten)]
    pub edit: SetEdit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SetEdit {
    /// A new set with all its entries, made before the rules that use it.
    CreateSet {
        maxelem: u32,
        #[serde(serialize_with = "count")]
        entries: SetEntries,
    },
    /// Entries added and deleted in place: the rules matching the set keep
    /// their counters, and an edit of one line writes one line.
    UpdateSet {
        added: Vec<IpNet>,
        /// As ipset printed them, so `del` names exactly them.
        removed: Vec<String>,
    },
    /// Made anew beside the old one, filled, and swapped in (`ipset swap`),
    /// so the rules matching it never see it half filled: its `maxelem` is
    /// too small for the list, or someone gave it options fwscript never
    /// does (a timeout).
    RecreateSet {
        maxelem: u32,
        #[serde(serialize_with = "count")]
        entries: SetEntries,
        why: String,
        /// A set by the temporary name is left from an interrupted write:
        /// destroyed first.
        #[serde(skip)]
        leftover: bool,
    },
    /// Destroyed after the last rule using it is gone.
    DestroySet { entries: usize },
    /// An owned name held by a set fwscript cannot edit or swap (another
    /// type or family): a write refuses rather than guess.
    Conflict { found: String },
}

fn count<S: Serializer>(entries: &SetEntries, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(entries.len() as u64)
}

impl SetChange {
    /// What a write must refuse over, in words.
    pub fn conflict(&self) -> Option<&str> {
        match &self.edit {
            SetEdit::Conflict { found } => Some(found),
            _ => None,
        }
    }
}

impl fmt::Display for SetChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = &self.set;
        match &self.edit {
            SetEdit::CreateSet { maxelem, entries } => write!(
                f,
                "create set {set}: {SET_TYPE} {}, {} entries, maxelem {maxelem}",
                ipset_family(self.family),
                entries.len()
            )?,
            SetEdit::UpdateSet { added, removed } => write!(
                f,
                "+{} \u{2212}{} entries in set {set}",
                added.len(),
                removed.len()
            )?,
            SetEdit::RecreateSet {
                maxelem,
                entries,
                why,
                ..
            } => write!(
                f,
                "recreate set {set} ({why}): {} entries, maxelem {maxelem}, swapped in for the old one",
                entries.len()
            )?,
            SetEdit::DestroySet { entries } => {
                return write!(f, "destroy set {set} ({entries} entries)")
            }
            SetEdit::Conflict { found } => {
                return write!(f, "set {set} cannot be used: {found}")
            }
        }
        match &self.source {
            Some(source) => write!(f, " ({source})"),
            None => Ok(()),
        }
    }
}

/// The edits that turn the kernel's owned sets `live` into `wanted`.
/// Wanted sets come first, by name; then the sets nothing wants any more.
pub fn diff_sets(live: &[LiveSet], wanted: &[&OwnedSet]) -> Vec<SetChange> {
    let mut changes = Vec::new();
    let mut wanted: Vec<&OwnedSet> = wanted.to_vec();
    wanted.sort_by(|a, b| a.name.cmp(&b.name));
    let find = |name: &str| live.iter().find(|l| l.header.name == name);
    // Temporary sets this diff destroys itself before reusing the name.
    let mut reused: HashSet<String> = HashSet::new();
    for want in &wanted {
        let change = |edit| SetChange {
            set: want.name.clone(),
            family: want.family,
            source: want.source.clone(),
            edit,
        };
        let Some(have) = find(&want.name) else {
            changes.push(change(SetEdit::CreateSet {
                maxelem: want.maxelem,
                entries: want.entries.clone(),
            }));
            continue;
        };
        let header = &have.header;
        if !header.compatible(want.family) {
            let family = header.family.map_or("no family".to_string(), |f| {
                format!("family {}", ipset_family(f))
            });
            changes.push(change(SetEdit::Conflict {
                found: format!(
                    "the kernel has it as {} {family}, not {SET_TYPE} family {}; \
                     `ipset destroy {}` once no rule uses it, or `fwscript reset`",
                    header.kind,
                    ipset_family(want.family),
                    want.name
                ),
            }));
            continue;
        }
        let why = if !header.extras.is_empty() {
            Some(format!("it has `{}`", header.extras.join(" ")))
        } else if (header.maxelem as usize) < want.entries.len() {
            Some(format!(
                "its maxelem {} is too small for {} entries",
                header.maxelem,
                want.entries.len()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            let temp = temp_name(&want.name);
            let leftover = find(&temp).is_some();
            if leftover {
                reused.insert(temp);
            }
            changes.push(change(SetEdit::RecreateSet {
                maxelem: want.maxelem,
                entries: want.entries.clone(),
                why,
                leftover,
            }));
            continue;
        }
        let (added, mut removed) = entry_changes(&have.entries, &want.entries);
        removed.extend(
            have.odd
                .iter()
                .map(|odd| odd.split(' ').next().unwrap_or(odd).to_string()),
        );
        if !added.is_empty() || !removed.is_empty() {
            changes.push(change(SetEdit::UpdateSet { added, removed }));
        }
    }
    for have in live {
        let name = &have.header.name;
        if wanted.iter().any(|w| &w.name == name) || reused.contains(name) {
            continue;
        }
        changes.push(SetChange {
            set: name.clone(),
            family: have.header.owner(),
            source: None,
            edit: SetEdit::DestroySet {
                entries: have.entries.len() + have.odd.len(),
            },
        });
    }
    changes
}

/// What `have` lacks of `want` and holds beyond it: one walk of two sorted
/// lists.
fn entry_changes(have: &[IpNet], want: &[IpNet]) -> (Vec<IpNet>, Vec<String>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < have.len() || j < want.len() {
        let order = match (have.get(i), want.get(j)) {
            (Some(h), Some(w)) => h.cmp(w),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match order {
            Ordering::Equal => {
                i += 1;
                j += 1;
            }
            Ordering::Less => {
                removed.push(entry_text(&have[i]).to_string());
                i += 1;
            }
            Ordering::Greater => {
                added.push(want[j]);
                j += 1;
            }
        }
    }
    (added, removed)
}

/// The name a set is made under before it is swapped in: owned, so one
/// left behind by an interrupted write is cleaned up by the next.
pub fn temp_name(name: &str) -> String {
    format!("{name}-new")
}

/// Set changes as `ipset restore` input: `before` makes and fills sets,
/// and runs before any rule is written, so every rule finds its set;
/// `after` destroys sets, and runs once no rule uses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetRestore {
    pub before: String,
    pub after: String,
}

impl SetRestore {
    pub fn is_empty(&self) -> bool {
        self.before.is_empty() && self.after.is_empty()
    }
}

pub fn restore_input<'a>(changes: impl IntoIterator<Item = &'a SetChange>) -> SetRestore {
    let mut input = SetRestore::default();
    for change in changes {
        let name = &change.set;
        let out = &mut input.before;
        let create = |maxelem: u32, as_name: &str, entries: usize| {
            let mut line = super::create_line(as_name, change.family, entries, maxelem);
            line.push('\n');
            line
        };
        let fill = |out: &mut String, as_name: &str, entries: &[IpNet]| {
            out.reserve(entries.len() * (as_name.len() + 20));
            for entry in entries {
                push_add(out, as_name, entry);
            }
        };
        match &change.edit {
            SetEdit::CreateSet { maxelem, entries } => {
                out.push_str(&create(*maxelem, name, entries.len()));
                fill(out, name, entries);
            }
            // Deletions first: they make room.
            SetEdit::UpdateSet { added, removed } => {
                for entry in removed {
                    let _ = writeln!(out, "del {name} {entry}");
                }
                fill(out, name, added);
            }
            SetEdit::RecreateSet {
                maxelem,
                entries,
                leftover,
                ..
            } => {
                let temp = temp_name(name);
                if *leftover {
                    let _ = writeln!(out, "destroy {temp}");
                }
                out.push_str(&create(*maxelem, &temp, entries.len()));
                fill(out, &temp, entries);
                // The rules now match the new entries; the old ones sit
                // under the temporary name, used by nothing.
                let _ = writeln!(out, "swap {temp} {name}");
                let _ = writeln!(out, "destroy {temp}");
            }
            SetEdit::DestroySet { .. } => {
                let _ = writeln!(input.after, "destroy {name}");
            }
            SetEdit::Conflict { .. } => {}
        }
    }
    input
}
