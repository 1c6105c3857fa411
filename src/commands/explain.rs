//! `explain`: which rule decides a packet, offline. The verdict alone on the
//! first line, so a script can read it with `head -1`; then the deciding rule
//! with its script origin, the chains walked, and what was assumed.

use std::io::Write;

use super::Outcome;
use crate::cli::ExplainArgs;
use crate::error::Error;
use crate::explain::{self, Decision, Explanation, Query, Request};
use crate::plan::Plan;
use crate::script;

/// Any verdict is a successful answer: exit 0.
pub fn explain(args: &ExplainArgs) -> Result<Outcome, Error> {
    // The request is checked before the script runs, so a typo in a flag is
    // reported as such, not after a long evaluation.
    let query = Query::parse(&Request {
        proto: &args.proto,
        src: args.src.as_deref(),
        dst: args.dst.as_deref(),
        sport: args.sport,
        dport: args.dport,
        iface: args.iface.as_deref(),
        oface: args.oface.as_deref(),
        chain: &args.chain,
        state: &args.state,
        icmp_type: args.icmp_type.as_deref(),
    })?;
    let plan = script::evaluate(&args.script)?;
    let explanations = query.explain(&plan);
    std::io::stdout()
        .lock()
        .write_all(report(&query, &explanations, &plan).as_bytes())?;
    Ok(Outcome::Done)
}

/// The text `explain` prints. One family reads as one answer; two are
/// shown side by side under the stricter verdict.
fn report(query: &Query, explanations: &[Explanation], plan: &Plan) -> String {
    let Some(verdict) = explain::overall_verdict(explanations) else {
        return String::new();
    };
    let mut out = format!("{verdict}\n");
    match explanations {
        [only] => describe(&mut out, only, "", plan),
        several => {
            for explanation in several {
                out.push_str(&format!(
                    "{}: {}\n",
                    explanation.family, explanation.verdict
                ));
                describe(&mut out, explanation, "  ", plan);
            }
        }
    }
    for note in &query.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    if explanations.iter().any(|e| e.verdict != verdict) {
        out.push_str("note: the families disagree; the first line shows the stricter verdict\n");
    }
    out
}

fn describe(out: &mut String, explanation: &Explanation, indent: &str, plan: &Plan) {
    out.push_str(&format!("{indent}decided by: {}\n", explanation.decided_by));
    // The set a deciding rule matches: what it holds and where from.
    if let Decision::Rule(rule) = &explanation.decided_by {
        let mut words = rule.text.split(' ');
        while words.any(|w| w == "--match-set") {
            let Some(name) = words.next() else { break };
            if let Some(set) = plan.sets().find(|s| s.name == name) {
                out.push_str(&format!(
                    "{indent}set {name}: {} entries ({})\n",
                    set.entries.len(),
                    set.source
                ));
            }
        }
    }
    if !explanation.path.is_empty() {
        out.push_str(&format!(
            "{indent}path: {}\n",
            explanation.path.join(" -> ")
        ));
    }
    for note in &explanation.notes {
        out.push_str(&format!("{indent}note: {note}\n"));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::netfilter::{Family, Hook, Policy, Table};
    use crate::plan::{ChainPolicy, FamilyPlan, Plan, TablePlan};

    fn plan_with_input_policies(v4: Policy, v6: Policy) -> Plan {
        let family = |policy| FamilyPlan {
            tables: BTreeMap::from([(
                Table::Filter,
                TablePlan {
                    policies: BTreeMap::from([(
                        Hook::Input,
                        ChainPolicy {
                            policy,
                            origin: None,
                        },
                    )]),
                    chains: Vec::new(),
                },
            )]),
            sets: Vec::new(),
        };
        Plan {
            sources: Vec::new(),
            address_lists: Vec::new(),
            families: BTreeMap::from([(Family::Ipv4, family(v4)), (Family::Ipv6, family(v6))]),
        }
    }

    fn query(src: Option<&str>) -> Query {
        Query::parse(&Request {
            proto: "tcp",
            src,
            dport: Some(22),
            chain: "input",
            state: "new",
            ..Request::default()
        })
        .unwrap()
    }

    #[test]
    fn one_family_reads_as_one_answer() {
        let query = query(Some("192.0.2.1"));
        let plan = plan_with_input_policies(Policy::Drop, Policy::Accept);
        assert_eq!(
            report(&query, &query.explain(&plan), &plan),
            "DROP\n\
             decided by: policy DROP of INPUT (baseline)\n\
             path: filter INPUT\n"
        );
    }

    #[test]
    fn two_families_show_both_under_the_stricter_verdict() {
        let query = query(None);
        let plan = plan_with_input_policies(Policy::Accept, Policy::Drop);
        let text = report(&query, &query.explain(&plan), &plan);
        assert_eq!(
            text,
            "DROP\n\
             ipv4: ACCEPT\n  \
               decided by: policy ACCEPT of INPUT (baseline)\n  \
               path: filter INPUT\n\
             ipv6: DROP\n  \
               decided by: policy DROP of INPUT (baseline)\n  \
               path: filter INPUT\n\
             note: no address given: explained for IPv4 and IPv6; give `--src` or `--dst` to choose\n\
             note: the families disagree; the first line shows the stricter verdict\n"
        );
    }
}
