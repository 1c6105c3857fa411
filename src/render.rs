//! Render: plan → ruleset (rule text with ids) → iptables-restore input.
//! Pure and deterministic: the same plan renders to byte-identical text.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::netfilter::{Family, Table};
use crate::plan::{Action, FamilyPlan, Matches, Plan, RateUnit, RecentCheck, Rule, TablePlan};
use crate::ruleset::{id_comment, HookRule, OwnedChain, OwnedRule, RuleId, Ruleset, TableRuleset};

/// Renders one family of the plan into the text form the diff works on.
pub fn ruleset(plan: &Plan, family: Family) -> Ruleset {
    let mut ruleset = Ruleset::empty(family);
    if let Some(family_plan) = plan.family(family) {
        ruleset.tables = render_family(family_plan, family);
    }
    ruleset
}

fn render_family(
    plan: &FamilyPlan,
    family: Family,
) -> std::collections::BTreeMap<Table, TableRuleset> {
    plan.tables
        .iter()
        .map(|(&table, table_plan)| (table, render_table(table_plan, family, table)))
        .collect()
}

fn render_table(plan: &TablePlan, family: Family, table: Table) -> TableRuleset {
    let policies = plan
        .policies
        .iter()
        .map(|(&hook, p)| (hook, p.policy))
        .collect();
    let hooks = plan
        .hooks()
        .map(|hook| {
            let mut ids = IdAllocator::default();
            let spec = RuleText {
                matches: String::new(),
                comment: None,
                target: format!("-j {}", hook.owned_chain()),
            };
            HookRule {
                hook,
                rule: spec.into_owned(&mut ids, family, table, hook.chain_name(), None),
            }
        })
        .collect();
    let chains = plan
        .chains
        .iter()
        .map(|chain| {
            let mut ids = IdAllocator::default();
            let rules = chain
                .rules
                .iter()
                .map(|rule| {
                    rule_text(rule).into_owned(
                        &mut ids,
                        family,
                        table,
                        &chain.name,
                        rule.origin.clone(),
                    )
                })
                .collect();
            OwnedChain {
                name: chain.name.clone(),
                rules,
            }
        })
        .collect();
    TableRuleset {
        policies,
        hooks,
        chains,
    }
}

/// Counts identical rules within one chain so each gets its own id.
#[derive(Default)]
struct IdAllocator {
    seen: HashMap<String, usize>,
}

impl IdAllocator {
    fn next(&mut self, family: Family, table: Table, chain: &str, content: String) -> RuleId {
        let occurrence = self.seen.entry(content.clone()).or_default();
        let id = RuleId::compute(family, table, chain, &content, *occurrence);
        *occurrence += 1;
        id
    }
}

/// A rule's text in three parts, so the id can be hashed from everything
/// but itself and then placed in the comment.
struct RuleText {
    matches: String,
    comment: Option<String>,
    target: String,
}

impl RuleText {
    fn into_owned(
        self,
        ids: &mut IdAllocator,
        family: Family,
        table: Table,
        chain: &str,
        origin: Option<crate::ruleset::Origin>,
    ) -> OwnedRule {
        let content = format!(
            "{}\u{1f}{}\u{1f}{}",
            self.matches,
            self.comment.as_deref().unwrap_or(""),
            self.target
        );
        let id = ids.next(family, table, chain, content);
        let mut spec = self.matches;
        if !spec.is_empty() {
            spec.push(' ');
        }
        let _ = write!(
            spec,
            "-m comment --comment {}",
            quote(&id_comment(&id, self.comment.as_deref()))
        );
        if !self.target.is_empty() {
            spec.push(' ');
            spec.push_str(&self.target);
        }
        OwnedRule { id, spec, origin }
    }
}

fn rule_text(rule: &Rule) -> RuleText {
    RuleText {
        matches: matches_text(&rule.matches),
        comment: rule.comment.clone(),
        target: target_text(&rule.action),
    }
}

/// Match arguments in the order iptables-save prints them, so `iptables -S`
/// reads like what `render` shows.
pub(crate) fn matches_text(m: &Matches) -> String {
    let mut args: Vec<String> = Vec::new();
    if let Some(src) = &m.src {
        args.push(format!("-s {src}"));
    }
    if let Some(dst) = &m.dst {
        args.push(format!("-d {dst}"));
    }
    if let Some(iface) = &m.iface {
        args.push(format!("-i {iface}"));
    }
    if let Some(oface) = &m.oface {
        args.push(format!("-o {oface}"));
    }
    if let Some(proto) = m.proto {
        args.push(format!("-p {}", proto.iptables_name()));
        if proto.has_ports() && (m.sport.is_some() || m.dport.is_some() || m.tcp_flags.is_some()) {
            args.push(format!("-m {}", proto.iptables_name()));
        }
    }
    if let Some(sport) = m.sport {
        args.push(format!("--sport {sport}"));
    }
    if let Some(dport) = m.dport {
        args.push(format!("--dport {dport}"));
    }
    if let Some(flags) = &m.tcp_flags {
        let list = |flags: &[crate::plan::TcpFlag]| {
            if flags.is_empty() {
                "NONE".to_string()
            } else {
                flags.iter().map(|f| f.name()).collect::<Vec<_>>().join(",")
            }
        };
        let negation = if flags.negated { "! " } else { "" };
        args.push(format!(
            "{negation}--tcp-flags {} {}",
            list(&flags.mask),
            list(&flags.set)
        ));
    }
    if let Some(icmp) = &m.icmp_type {
        match m.proto {
            Some(crate::plan::Proto::Icmpv6) => {
                args.push(format!("-m icmp6 --icmpv6-type {}", icmp.name))
            }
            _ => args.push(format!("-m icmp --icmp-type {}", icmp.name)),
        }
    }
    if !m.state.is_empty() {
        let states: Vec<_> = m.state.iter().map(|s| s.name()).collect();
        args.push(format!("-m conntrack --ctstate {}", states.join(",")));
    }
    if let Some(port) = m.dnat_from_port {
        args.push(format!(
            "-m conntrack --ctstate DNAT --ctorigdstport {port}"
        ));
    }
    if let Some(recent) = &m.recent {
        match recent.check {
            RecentCheck::Set => {
                args.push(format!("-m recent --set --name {} --rsource", recent.list))
            }
            RecentCheck::Update { seconds, hits } => args.push(format!(
                "-m recent --update --seconds {seconds} --hitcount {hits} --name {} --rsource",
                recent.list
            )),
        }
    }
    if let Some(limit) = &m.limit {
        let unit = match limit.per {
            RateUnit::Second => "sec",
            RateUnit::Minute => "min",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        };
        let mut text = format!("-m limit --limit {}/{unit}", limit.count);
        if let Some(burst) = limit.burst {
            let _ = write!(text, " --limit-burst {burst}");
        }
        args.push(text);
    }
    args.join(" ")
}

pub(crate) fn target_text(action: &Action) -> String {
    match action {
        Action::Accept => "-j ACCEPT".into(),
        Action::Drop => "-j DROP".into(),
        Action::Reject => "-j REJECT".into(),
        Action::Return => "-j RETURN".into(),
        Action::Masquerade => "-j MASQUERADE".into(),
        Action::Log {
            prefix: Some(prefix),
        } => format!("-j LOG --log-prefix {}", quote(prefix)),
        Action::Log { prefix: None } => "-j LOG".into(),
        Action::Jump { chain } => format!("-j {chain}"),
        Action::Redirect { to_port } => format!(
            "-j REDIRECT --to-ports {}",
            to_port.to_string().replace(':', "-")
        ),
        Action::Dnat { to } => format!("-j DNAT --to-destination {to}"),
        Action::Snat { to } => format!("-j SNAT --to-source {to}"),
        Action::None => String::new(),
    }
}

/// Every value that reaches here was validated by the script stage to hold
/// no quote, backslash or control character, so wrapping is enough.
fn quote(text: &str) -> String {
    debug_assert!(
        !text.contains(['"', '\\', '\n', '\r']),
        "unvalidated value {text:?}"
    );
    format!("\"{text}\"")
}

/// The complete iptables-restore input for one family: loads as is (it
/// flushes the tables it names, like any restore file without `--noflush`).
pub fn restore_file(ruleset: &Ruleset) -> String {
    let mut out = String::new();
    for (table, rules) in &ruleset.tables {
        let _ = writeln!(out, "*{table}");
        for &hook in table.builtin_chains() {
            let policy = rules.policies.get(&hook).map_or("ACCEPT", |p| p.name());
            let _ = writeln!(out, ":{hook} {policy} [0:0]");
        }
        for chain in &rules.chains {
            let _ = writeln!(out, ":{} - [0:0]", chain.name);
        }
        for HookRule { hook, rule } in &rules.hooks {
            let _ = writeln!(out, "-A {hook} {}", rule.spec);
        }
        for chain in &rules.chains {
            for rule in &chain.rules {
                let _ = writeln!(out, "-A {} {}", chain.name, rule.spec);
            }
        }
        let _ = writeln!(out, "COMMIT");
    }
    out
}

/// `render` without `--family`: both files, each introduced by `# ipv4` or
/// `# ipv6`.
pub fn restore_files(plan: &Plan) -> String {
    let rulesets = Family::ALL.map(|family| ruleset(plan, family));
    restore_text(&rulesets)
}

/// Restore files of rulesets already rendered, each introduced by its
/// family's `# ipv4` / `# ipv6` line.
pub fn restore_text<'a>(rulesets: impl IntoIterator<Item = &'a Ruleset>) -> String {
    let mut out = String::new();
    for ruleset in rulesets {
        let _ = writeln!(out, "# {}", ruleset.family);
        out.push_str(&restore_file(ruleset));
    }
    out
}
