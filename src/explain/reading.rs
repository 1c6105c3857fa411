//! How the evaluator reads what it cannot know offline. One walk, two
//! readings: `explain` answers for a typical packet, the lockout guard
//! insists on an answer that holds whatever the unknowns turn out to be.

/// What the unknowns of a walk count as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// `explain`'s: a field the packet leaves out stands for a value no
    /// rule names; rate limits and `recent` lists are as for a first
    /// packet; a chain the plan does not hold is assumed to return. Every
    /// rule matches or not: the verdict is one path's.
    Typical,
    /// The lockout guard's: a field left out may hold any value, and a rule
    /// that may match counts as matching where that hurts (a DROP, REJECT,
    /// DNAT, REDIRECT) and as not matching where it helps (an ACCEPT); a
    /// jump to a target the plan does not hold may do anything, so it
    /// counts as a drop. The verdict is the worst over every path the
    /// unknowns allow: ACCEPT only if every path accepts.
    Pessimistic(Rates),
}

/// What rate limits and `recent` lists hold in a pessimistic reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rates {
    /// Nothing yet: the packet opens the first connection in a while.
    FirstPacket,
    /// Anything: the packet may come after many others.
    Any,
}

impl Reading {
    pub fn is_pessimistic(self) -> bool {
        matches!(self, Reading::Pessimistic(_))
    }
}
