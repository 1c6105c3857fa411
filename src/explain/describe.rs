//! A rule as an admin reads it: the arguments `render` writes (what
//! `iptables -S` shows), without the id comment fwscript adds (that one only
//! matters to the diff); a user comment is kept as a note.

use crate::plan::{Action, Rule};
use crate::render::{matches_text, target_text};

pub fn rule_text(rule: &Rule) -> String {
    let mut parts = vec![matches_text(&rule.matches)];
    parts.push(match rule.action {
        Action::None => "(no target)".into(),
        _ => target_text(&rule.action),
    });
    if let Some(comment) = &rule.comment {
        parts.push(format!("/* {comment} */"));
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}
