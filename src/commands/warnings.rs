//! Warnings as commands report them (stages → **warning objects** → text
//! and JSON): every kind has a `kind` and a `message`, and the facts behind
//! it as keys of their own, so a provisioning tool can act on a kind
//! without reading sentences.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::apply::Survey;
use crate::diff::ForeignWarning;
use crate::forwarding::ForwardingOff;
use crate::legacy_rules::LegacyRules;
use crate::netfilter::Family;
use crate::nft_tables::NftTable;
use crate::state::{DaemonRecord, PendingConfirm};

use super::changes::OriginView;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    /// `bypass`, `after_accept_hook`, `catch_all_drop`, `neighbour` (foreign
    /// rules), `rate_limit` (the lockout guard), `skipped_family`,
    /// `forwarding_off`, `daemon_running`, `policy_kept` (reset),
    /// `legacy_rules`, `nft_table`.
    pub kind: String,
    /// The warning as the text output says it.
    pub message: String,
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl Warning {
    fn new(kind: &str, message: String, details: Value) -> Warning {
        let details = match details {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Warning {
            kind: kind.to_string(),
            message,
            details,
        }
    }

    pub fn foreign(warning: &ForeignWarning) -> Warning {
        let mut details = match serde_json::to_value(warning) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let kind = match details.remove("kind") {
            Some(Value::String(kind)) => kind,
            _ => "foreign_rule".to_string(),
        };
        // The names change objects use: the chain as iptables names it,
        // the rule's text as `rule`.
        details.insert("chain".into(), warning.chain.chain_name().into());
        if let Some(spec) = details.remove("spec") {
            details.insert("rule".into(), spec);
        }
        Warning {
            kind,
            message: warning.to_string(),
            details,
        }
    }

    pub fn guard(warning: &crate::guard::Warning) -> Warning {
        let rule = warning.rule.as_ref().map(|rule| {
            json!({
                "table": rule.table,
                "chain": rule.chain,
                "position": rule.index,
                "text": rule.text,
                "origin": rule.origin.as_ref().map(OriginView::from),
            })
        });
        Warning::new("rate_limit", warning.to_string(), json!({ "rule": rule }))
    }

    pub fn skipped(family: Family, reason: &str) -> Warning {
        Warning::new(
            "skipped_family",
            format!("{family} skipped: {reason}"),
            json!({ "family": family, "reason": reason }),
        )
    }

    pub fn forwarding(off: &ForwardingOff) -> Warning {
        Warning::new(
            "forwarding_off",
            off.to_string(),
            json!({
                "family": off.forwards.family,
                "setting": off.setting,
                "origin": off.forwards.origin.as_ref().map(OriginView::from),
            }),
        )
    }

    pub fn legacy_rules(found: &LegacyRules) -> Warning {
        Warning::new(
            "legacy_rules",
            crate::script::printable(&found.to_string()),
            json!({
                "family": found.family,
                "rules": found.rules,
                "policies": found.policies,
            }),
        )
    }

    pub fn nft_table(table: &NftTable) -> Warning {
        Warning::new(
            "nft_table",
            crate::script::printable(&table.to_string()),
            json!({
                "nft_family": table.family,
                "table": table.table,
                "chains": table.chains,
                "rules": table.rules,
            }),
        )
    }

    pub fn policy_kept(kept: &super::reset::KeptPolicy) -> Warning {
        Warning::new(
            "policy_kept",
            kept.to_string(),
            json!({
                "family": kept.family,
                "table": kept.table,
                "chain": kept.hook.chain_name(),
                "policy": kept.policy.name(),
                "original": kept.original.name(),
                "neighbour": kept.neighbour,
            }),
        )
    }

    /// A reset while a daemon runs: undone at its next drift check.
    pub fn daemon_reset(daemon: &DaemonRecord) -> Warning {
        Warning::new(
            "daemon_running",
            format!(
                "`fwscript watch` (pid {}) keeps `{}` applied with this state folder; it will put \
                 that script's rules back at its next change or drift check, undoing this reset \
                 (stop it first: `systemctl stop fwscript-watch`)",
                daemon.pid, daemon.script
            ),
            json!({ "pid": daemon.pid, "script": daemon.script }),
        )
    }

    pub fn daemon(daemon: &DaemonRecord) -> Warning {
        Warning::new(
            "daemon_running",
            format!(
                "`fwscript watch` (pid {}) keeps `{}` applied with this state folder; it will put \
                 that script's rules back at its next change or drift check, undoing this apply",
                daemon.pid, daemon.script
            ),
            json!({ "pid": daemon.pid, "script": daemon.script }),
        )
    }
}

impl Warning {
    /// An unconfirmed apply whose deadline passed while nothing put the
    /// rules from before back (its timer was killed, or the machine slept):
    /// the kernel still holds the unconfirmed rules until the next command
    /// that writes settles it.
    pub fn confirm_expired(pending: &PendingConfirm, now: u64) -> Warning {
        Warning::new(
            "confirm_expired",
            format!(
                "the apply of `{}` was not confirmed by its deadline ({} s ago) and its timer \
                 did not put the rules from before back: the kernel still holds it until the \
                 next `fwscript apply`, `confirm` or `rollback`, which puts them back",
                pending.script,
                now.saturating_sub(pending.deadline)
            ),
            json!({ "script": pending.script, "deadline": pending.deadline }),
        )
    }
}

/// The survey's own warnings: families skipped, then foreign rules.
pub fn of_survey(survey: &Survey) -> Vec<Warning> {
    let skipped = survey
        .skipped
        .iter()
        .map(|(family, reason)| Warning::skipped(*family, reason));
    let foreign = survey.warnings().map(Warning::foreign);
    skipped.chain(foreign).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foreign::WarningKind;
    use crate::netfilter::{Hook, Table};

    #[test]
    fn a_foreign_warning_keeps_its_facts_as_keys() {
        let warning = ForeignWarning {
            kind: WarningKind::AfterAcceptHook,
            family: Family::Ipv4,
            table: Table::Filter,
            chain: Hook::Input,
            position: 4,
            spec: "-s 192.0.2.1/32 -j DROP".into(),
        };
        let value = serde_json::to_value(Warning::foreign(&warning)).unwrap();
        assert_eq!(value["kind"], "after_accept_hook");
        assert_eq!(value["family"], "ipv4");
        assert_eq!(value["chain"], "INPUT");
        assert_eq!(value["position"], 4);
        assert_eq!(value["rule"], "-s 192.0.2.1/32 -j DROP");
        assert!(value["message"]
            .as_str()
            .unwrap()
            .contains("apply moves the hook"));
    }
}
