//! The notes of one explanation: in the order they were made, each once.
//! A walk through tens of thousands of rules may make a note for each, so
//! "each once" is a set lookup, never a scan of the notes so far.

use std::collections::HashSet;

#[derive(Debug, Default)]
pub(super) struct Notes {
    ordered: Vec<String>,
    seen: HashSet<String>,
}

impl Notes {
    /// Adds `note` unless it was made before; true when it was new.
    pub(super) fn insert(&mut self, note: String) -> bool {
        if self.seen.contains(&note) {
            return false;
        }
        self.seen.insert(note.clone());
        self.ordered.push(note);
        true
    }

    pub(super) fn into_vec(self) -> Vec<String> {
        self.ordered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_keep_their_order_and_come_once() {
        let mut notes = Notes::default();
        assert!(notes.insert("b".into()));
        assert!(notes.insert("a".into()));
        assert!(!notes.insert("b".into()));
        assert_eq!(notes.into_vec(), ["b", "a"]);
    }

    #[test]
    fn a_note_is_looked_up_in_the_set_not_in_the_list() {
        // Known to the set only: a scan of the list (what made explain
        // quadratic) would take it as new.
        let mut notes = Notes {
            ordered: Vec::new(),
            seen: HashSet::from(["made before".to_string()]),
        };
        assert!(!notes.insert("made before".into()));
        assert!(notes.into_vec().is_empty());
    }
}
