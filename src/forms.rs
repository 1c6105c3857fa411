//! Drift by content (apply → **forms** → the next diff): the kernel's
//! normal form of every rule fwscript owns, as read back after a verified
//! write. A rule that still carries its id but whose text the kernel now
//! prints differently was changed behind fwscript's back (`iptables -R`
//! keeping the `fws:` comment), and the diff treats it as drift.
//!
//! Ids alone cannot tell: iptables-save prints rules in its own normal form
//! (`-m tcp`, `/32`, `8` for `echo-request`), so fwscript's own text never
//! equals the kernel's, and only the kernel's text from a moment fwscript
//! knows to be right can be compared with a later read.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::live::LiveState;
use crate::netfilter::Family;
use crate::ruleset::RuleId;

/// Per family, each owned rule's id and a digest of its text as the kernel
/// printed it after the last verified write. A digest instead of the text
/// keeps the file small for big rulesets; whoever can change the rules is
/// root and can edit the state folder too, so it guards against mistakes,
/// not an attacker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KernelForms {
    families: BTreeMap<Family, BTreeMap<RuleId, Form>>,
    /// What a rule with no recorded form is taken for; not stored.
    #[serde(skip)]
    unrecorded: Unrecorded,
}

/// What the diff does with an owned rule whose kernel form was never
/// recorded (a new or lost state folder, one from an earlier version, a
/// damaged forms file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Unrecorded {
    /// Count it as fwscript's by its id: for the verify right after a
    /// write, which compares ids, and for tests.
    #[default]
    IdsOnly,
    /// Rewrite it once, so its form is read back and recorded: until then
    /// a rule changed behind fwscript's back would go unseen for good.
    Rewrite,
}

/// What the kernel's text of a rule with a known id says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// As fwscript last wrote it (or compared by id only).
    AsWritten,
    /// Not what the kernel printed after fwscript wrote it: changed behind
    /// its back (`iptables -R` keeping the comment).
    Changed,
    /// No record of how the kernel printed it: written again to learn it.
    Unrecorded,
}

impl KernelForms {
    /// The forms of a state folder: every rule without one is rewritten
    /// once, so drift by content is seen from then on.
    pub fn relearning(mut self) -> KernelForms {
        self.unrecorded = Unrecorded::Rewrite;
        self
    }

    /// These forms, with what they lack taken from `other`: a record this
    /// process made that the state folder could not keep.
    pub fn or(mut self, other: KernelForms) -> KernelForms {
        for (family, forms) in other.families {
            let mine = self.families.entry(family).or_default();
            for (id, form) in forms {
                mine.entry(id).or_insert(form);
            }
        }
        self
    }

    /// The recorded forms of one family, and what a rule without one means.
    pub fn family(&self, family: Family) -> FamilyForms<'_> {
        FamilyForms {
            forms: self.families.get(&family),
            unrecorded: self.unrecorded,
        }
    }

    /// These forms with each family in `read_back` (states read right after
    /// a verified write) recorded afresh: every owned rule and hook it holds.
    /// Families not written keep what they had.
    pub fn recorded<'a>(&self, read_back: impl IntoIterator<Item = &'a LiveState>) -> KernelForms {
        let mut forms = self.clone();
        for live in read_back {
            // What `LiveState::owned` holds (hooks, and the rules with an
            // id in owned chains), read in place rather than copied.
            let family: BTreeMap<RuleId, Form> = live
                .tables
                .values()
                .flat_map(|t| {
                    t.hooks()
                        .map(|(_, _, rule)| rule)
                        .chain(t.owned_chains().flat_map(|c| &c.rules))
                })
                .filter_map(|rule| Some((rule.id.clone()?, Form::of(&rule.spec))))
                .collect();
            forms.families.insert(live.family, family);
        }
        forms
    }

    pub fn rule_count(&self) -> usize {
        self.families.values().map(BTreeMap::len).sum()
    }
}

/// One family's recorded forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyForms<'a> {
    forms: Option<&'a BTreeMap<RuleId, Form>>,
    unrecorded: Unrecorded,
}

impl FamilyForms<'_> {
    /// What the kernel's `spec` for `id` says, against the form recorded
    /// for it.
    pub fn content(&self, id: &RuleId, spec: &str) -> Content {
        match (self.forms.and_then(|f| f.get(id)), self.unrecorded) {
            (Some(form), _) if *form == Form::of(spec) => Content::AsWritten,
            (Some(_), _) => Content::Changed,
            (None, Unrecorded::IdsOnly) => Content::AsWritten,
            (None, Unrecorded::Rewrite) => Content::Unrecorded,
        }
    }

    /// Whether any form of this family was recorded.
    pub fn is_recorded(&self) -> bool {
        self.forms.is_some()
    }
}

/// A digest of a rule's text: 64 bits of FNV-1a, stable across builds and
/// platforms (it is stored), and cheap enough to take of every owned rule
/// on every read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form(u64);

impl Form {
    pub fn of(spec: &str) -> Form {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in spec.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Form(hash)
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for Form {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Form {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Form, D::Error> {
        let text = String::deserialize(deserializer)?;
        let valid = text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit());
        valid
            .then(|| u64::from_str_radix(&text, 16).ok())
            .flatten()
            .map(Form)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a rule form")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        :FWS-INPUT - [0:0]\n\
        -A INPUT -p tcp -j f2b-sshd\n\
        -A INPUT -m comment --comment \"fws:00000000000a\" -j FWS-INPUT\n\
        -A FWS-INPUT -s 198.51.100.1/32 -p tcp -m tcp --dport 22 -m comment --comment \"fws:00000000000b\" -j ACCEPT\n\
        -A FWS-INPUT -p tcp -m tcp --dport 23 -j ACCEPT\n\
        COMMIT\n";

    fn id(hex: &str) -> RuleId {
        RuleId::from_comment(&format!("fws:{hex}")).unwrap()
    }

    fn live(text: &str) -> LiveState {
        let text = text.replace("*filter\n", "*filter\n:f2b-sshd - [0:0]\n");
        LiveState::parse(Family::Ipv4, &text).unwrap()
    }

    #[test]
    fn records_owned_rules_and_hooks_only() {
        let forms = KernelForms::default().recorded([&live(SAVE)]);
        assert_eq!(
            forms.rule_count(),
            2,
            "the hook and the owned rule, not drift"
        );
        let ipv4 = forms.family(Family::Ipv4);
        let ssh = "-s 198.51.100.1/32 -p tcp -m tcp --dport 22 -m comment --comment \"fws:00000000000b\" -j ACCEPT";
        assert_eq!(ipv4.content(&id("00000000000b"), ssh), Content::AsWritten);
        let opened = ssh.replace("-s 198.51.100.1/32 ", "");
        assert_eq!(ipv4.content(&id("00000000000b"), &opened), Content::Changed);
        let unknown = id("00000000000c");
        assert_eq!(ipv4.content(&unknown, "x"), Content::AsWritten, "ids only");
        assert!(!forms.family(Family::Ipv6).is_recorded());
        // A state folder's forms rewrite what they have no record of.
        let forms = forms.relearning();
        let ipv4 = forms.family(Family::Ipv4);
        assert_eq!(ipv4.content(&unknown, "x"), Content::Unrecorded);
        assert_eq!(ipv4.content(&id("00000000000b"), ssh), Content::AsWritten);
        let ipv6 = forms.family(Family::Ipv6);
        assert_eq!(ipv6.content(&unknown, "x"), Content::Unrecorded);
    }

    #[test]
    fn a_family_not_written_keeps_its_forms() {
        let forms = KernelForms::default().recorded([&live(SAVE)]);
        let v6 = LiveState::parse(Family::Ipv6, "").unwrap();
        let again = forms.recorded([&v6]);
        assert_eq!(again.family(Family::Ipv4), forms.family(Family::Ipv4));
        assert_eq!(again.families[&Family::Ipv6].len(), 0);
    }

    #[test]
    fn round_trips_through_json_and_refuses_garbage() {
        let forms = KernelForms::default().recorded([&live(SAVE)]);
        let text = serde_json::to_string(&forms).unwrap();
        assert!(text.starts_with("{\"ipv4\":{\"00000000000a\":\""), "{text}");
        assert_eq!(serde_json::from_str::<KernelForms>(&text).unwrap(), forms);
        for bad in [
            r#"{"ipv4":{"00000000000a":"xyz"}}"#,
            r#"{"ipv4":{"NOT-AN-ID":"0123456789abcdef"}}"#,
            r#"{"ipv5":{}}"#,
        ] {
            assert!(serde_json::from_str::<KernelForms>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_digest_is_stable() {
        // Stored on disk: it must never change between builds.
        assert_eq!(Form::of("").to_string(), "cbf29ce484222325");
        assert_eq!(
            Form::of("-j ACCEPT").to_string(),
            Form::of("-j ACCEPT").to_string()
        );
        assert_ne!(Form::of("-j ACCEPT"), Form::of("-j DROP"));
    }
}
