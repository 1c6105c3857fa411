//! The kernel's ipsets as read (kernel → **live sets** → diff): `ipset
//! save` parsed into fwscript's own `fws-…` sets with their headers and
//! entries, and `ipset list -t` into headers and entry counts (what verify
//! reads back). Every other set is skipped unread: it is not fwscript's.

use std::collections::HashMap;

use ipnet::IpNet;

use super::{parse_entry, parse_ipset_family, OwnedSet, SET_TYPE};
use crate::netfilter::{Family, SET_PREFIX};

/// One `fws-…` set as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSet {
    pub header: SetHeader,
    /// Its plain entries, sorted.
    pub entries: crate::plan::SetEntries,
    /// Entries with options of their own (`nomatch`, a timeout) or that do
    /// not read as networks, as ipset printed them: never what fwscript
    /// wrote, so they go.
    pub odd: Vec<String>,
}

/// What a set is, from its `create` line (`ipset save`) or its `Type:` and
/// `Header:` lines (`ipset list -t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetHeader {
    pub name: String,
    /// `hash:net`, or what someone else made under an owned name.
    pub kind: String,
    /// `None` for a type without a family (`list:set`, `bitmap:port`).
    pub family: Option<Family>,
    pub maxelem: u32,
    /// Options fwscript never gives (`timeout 30`, `counters`,
    /// `forceadd`, …): a set with any is not one fwscript made.
    pub extras: Vec<String>,
    /// `Number of entries:` (`ipset list -t` only).
    pub count: Option<usize>,
}

impl SetHeader {
    /// The family whose survey holds the set: its own, or IPv4 for a type
    /// without one.
    pub fn owner(&self) -> Family {
        self.family.unwrap_or(Family::Ipv4)
    }

    /// Whether fwscript can keep using it for `family` by editing its
    /// entries, or by swapping in a new one (`ipset swap` needs the same
    /// type and family).
    pub fn compatible(&self, family: Family) -> bool {
        self.kind == SET_TYPE && self.family == Some(family)
    }

    /// A header with nothing read yet.
    pub fn named(name: &str) -> SetHeader {
        SetHeader {
            name: name.to_string(),
            kind: String::new(),
            family: None,
            // ipset's default, when a `create` line gives none.
            maxelem: super::MIN_MAXELEM,
            extras: Vec::new(),
            count: None,
        }
    }

    /// Options given at `create` are `KEY VALUE` or a lone flag.
    pub(crate) fn read_options<'a>(&mut self, mut words: impl Iterator<Item = &'a str>) {
        while let Some(word) = words.next() {
            match word {
                "family" => self.family = words.next().and_then(parse_ipset_family),
                "maxelem" => {
                    self.maxelem = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                }
                // Sizing and hashing details ipset picks for itself.
                "hashsize" | "bucketsize" | "initval" => {
                    words.next();
                }
                "timeout" | "netmask" | "markmask" | "size" | "range" => {
                    let value = words.next().unwrap_or("");
                    self.extras.push(format!("{word} {value}"));
                }
                flag => self.extras.push(flag.to_string()),
            }
        }
    }
}

impl From<&LiveSet> for OwnedSet {
    fn from(live: &LiveSet) -> OwnedSet {
        OwnedSet {
            name: live.header.name.clone(),
            family: live.header.owner(),
            maxelem: live.header.maxelem,
            entries: live.entries.clone(),
            source: None,
        }
    }
}

/// Output that is not what `ipset save` or `ipset list -t` prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read `ipset {command}` output, line {line}: {message}: `{text}`")]
pub struct SetParseError {
    pub command: &'static str,
    pub line: usize,
    pub text: String,
    pub message: &'static str,
}

/// fwscript's sets in `ipset save` output, in the order listed. Lines of
/// other sets are skipped with a glance at their name.
pub fn parse_save(text: &str) -> Result<Vec<LiveSet>, SetParseError> {
    struct Building {
        header: SetHeader,
        entries: Vec<IpNet>,
        odd: Vec<String>,
    }
    let mut sets: Vec<Building> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    // The set the last `add` line went to: a save lists each set's entries
    // together, so this saves a lookup per line.
    let mut last: Option<(String, usize)> = None;
    for (number, line) in text.lines().enumerate() {
        let error = |message| SetParseError {
            command: "save",
            line: number + 1,
            text: line.to_string(),
            message,
        };
        if let Some(rest) = line.strip_prefix("add ") {
            let (name, entry) = rest
                .split_once(' ')
                .ok_or_else(|| error("entry without a value"))?;
            if !name.starts_with(SET_PREFIX) {
                continue;
            }
            let at = match &last {
                Some((last_name, at)) if last_name == name => *at,
                _ => {
                    let at = *index
                        .get(name)
                        .ok_or_else(|| error("entry of a set not created"))?;
                    last = Some((name.to_string(), at));
                    at
                }
            };
            let set = &mut sets[at];
            match (entry.contains(' '), parse_entry(entry)) {
                (false, Some(net)) => set.entries.push(net),
                _ => set.odd.push(entry.to_string()),
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("create ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                return Err(error("set without a type"));
            };
            if !name.starts_with(SET_PREFIX) {
                continue;
            }
            let mut header = SetHeader {
                kind: kind.to_string(),
                ..SetHeader::named(name)
            };
            header.read_options(words);
            index.insert(name.to_string(), sets.len());
            sets.push(Building {
                header,
                entries: Vec::new(),
                odd: Vec::new(),
            });
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        return Err(error("expected `create` or `add`"));
    }
    Ok(sets
        .into_iter()
        .map(|mut set| {
            set.entries.sort_unstable();
            set.entries.dedup();
            LiveSet {
                header: set.header,
                entries: set.entries.into(),
                odd: set.odd,
            }
        })
        .collect())
}

/// Sets kept as `ipset restore` input (a snapshot, the records' `# ipset`
/// section), back into the sets they make.
pub fn parse_owned(text: &str) -> Result<Vec<OwnedSet>, SetParseError> {
    Ok(parse_save(text)?.iter().map(OwnedSet::from).collect())
}

/// fwscript's sets in `ipset list -t` output (name, type, header, number of
/// entries), in the order listed.
pub fn parse_headers(text: &str) -> Result<Vec<SetHeader>, SetParseError> {
    let mut headers: Vec<SetHeader> = Vec::new();
    // Whether the set being read is fwscript's.
    let mut ours = false;
    for (number, line) in text.lines().enumerate() {
        let error = |message| SetParseError {
            command: "list -t",
            line: number + 1,
            text: line.to_string(),
            message,
        };
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Name" => {
                ours = value.starts_with(SET_PREFIX);
                if ours {
                    headers.push(SetHeader::named(value));
                }
            }
            _ if !ours => {}
            "Type" => last(&mut headers, error)?.kind = value.to_string(),
            "Header" => last(&mut headers, error)?.read_options(value.split_whitespace()),
            "Number of entries" => {
                let count = value
                    .parse()
                    .map_err(|_| error("not a number of entries"))?;
                last(&mut headers, error)?.count = Some(count);
            }
            _ => {}
        }
    }
    Ok(headers)
}

fn last(
    headers: &mut [SetHeader],
    error: impl Fn(&'static str) -> SetParseError,
) -> Result<&mut SetHeader, SetParseError> {
    headers
        .last_mut()
        .ok_or_else(|| error("a set's details before its name"))
}
