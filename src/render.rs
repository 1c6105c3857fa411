//! Render: plan → ruleset (rule text with ids) → iptables-restore input.
//! Pure and deterministic: the same plan renders to byte-identical text.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::netfilter::{Family, Table};
use crate::plan::{
    Action, ChainPlan, FamilyPlan, Matches, Plan, RateUnit, RecentCheck, Rule, TablePlan,
};
use crate::ruleset::{id_comment, HookRule, OwnedChain, OwnedRule, RuleId, Ruleset, TableRuleset};
use crate::sets::{self, OwnedSet};

/// Renders one family of the plan into the text form the diff works on.
pub fn ruleset(plan: &Plan, family: Family) -> Ruleset {
    let mut ruleset = Ruleset::empty(family);
    if let Some(family_plan) = plan.family(family) {
        ruleset.tables = render_family(family_plan, family);
        ruleset.sets = family_plan.sets.iter().map(OwnedSet::planned).collect();
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
    let planned = plan.hooks(table);
    let hooks = planned
        .iter()
        .map(|planned| {
            let mut ids = IdAllocator::default();
            let spec = RuleText {
                matches: String::new(),
                comment: None,
                target: format!("-j {}", planned.chain),
            };
            HookRule {
                hook: planned.hook,
                placement: planned.placement,
                rule: spec.into_owned(&mut ids, family, table, planned.hook.chain_name(), None),
            }
        })
        .collect();
    let render_chain = |chain: &ChainPlan| {
        // The kernel reaches the deny stage from the built-in chain's
        // top, not through the entry chain; an entry chain left with
        // nothing else is not needed at all.
        let lifted = plan.lifted(table, chain);
        let hooked = chain.stage.is_some() || planned.iter().any(|h| h.chain == chain.name);
        if !hooked {
            return None;
        }
        let mut ids = IdAllocator::default();
        let rules = chain.rules[lifted.len()..]
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
        Some(OwnedChain {
            name: chain.name.clone(),
            rules,
        })
    };
    let chains = in_parallel(&plan.chains, |c| c.rules.len(), render_chain)
        .into_iter()
        .flatten()
        .collect();
    TableRuleset {
        policies,
        hooks,
        chains,
    }
}

/// `f` of each item, in order; with enough work (`weight` of the items) to
/// be worth it, the items are split between the CPUs in runs of about
/// equal weight. Chains render independently of each other, so a
/// 10,000-rule plan renders in about half the time on two.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    const WORTH_A_THREAD: usize = 2048;
    let total: usize = items.iter().map(&weight).sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
        .min(total / WORTH_A_THREAD);
    if threads < 2 {
        return items.iter().map(f).collect();
    }
    // Cut where the running weight passes each thread's share.
    let mut runs = Vec::new();
    let (mut start, mut running) = (0, 0);
    for (index, item) in items.iter().enumerate() {
        running += weight(item);
        if running * threads >= total * (runs.len() + 1) && runs.len() + 1 < threads {
            runs.push(&items[start..=index]);
            start = index + 1;
        }
    }
    runs.push(&items[start..]);
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = runs
            .into_iter()
            .map(|run| scope.spawn(move || run.iter().map(f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("renderer panicked"))
            .collect()
    })
}

/// Counts identical rules within one chain so each gets its own id.
#[derive(Default)]
struct IdAllocator {
    seen: HashMap<String, usize>,
}

impl IdAllocator {
    fn next(&mut self, family: Family, table: Table, chain: &str, content: String) -> RuleId {
        // Looked up, then moved in: no copy of every rule's text.
        let occurrence = self.seen.get(&content).copied().unwrap_or(0);
        let id = RuleId::compute(family, table, chain, &content, occurrence);
        self.seen.insert(content, occurrence + 1);
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
        // Built in one buffer of the right size: this runs for every rule
        // of every plan, and the formatting machinery was most of its cost.
        let comment = id_comment(&id, self.comment.as_deref());
        let mut spec = self.matches;
        spec.reserve(comment.len() + self.target.len() + 26);
        if !spec.is_empty() {
            spec.push(' ');
        }
        spec.push_str("-m comment --comment ");
        push_quoted(&mut spec, &comment);
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
    for (set, direction) in [(&m.src_set, "src"), (&m.dst_set, "dst")] {
        if let Some(set) = set {
            args.push(format!("-m set --match-set {} {direction}", set.name));
        }
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
    let mut quoted = String::with_capacity(text.len() + 2);
    push_quoted(&mut quoted, text);
    quoted
}

/// [`quote`] into an existing buffer.
fn push_quoted(out: &mut String, text: &str) {
    debug_assert!(
        !text.contains(['"', '\\', '\n', '\r']),
        "unvalidated value {text:?}"
    );
    out.push('"');
    out.push_str(text);
    out.push('"');
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
        for HookRule { hook, rule, .. } in &rules.hooks {
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
/// family's `# ipv4` / `# ipv6` line; when they have owned sets, the
/// `ipset restore` input that makes them comes first, introduced by
/// `# ipset` (the sets must exist before the rules that match them).
pub fn restore_text<'a>(rulesets: impl IntoIterator<Item = &'a Ruleset>) -> String {
    let rulesets: Vec<&Ruleset> = rulesets.into_iter().collect();
    let owned: Vec<&OwnedSet> = rulesets.iter().flat_map(|r| &r.sets).collect();
    if owned.is_empty() {
        return family_files(rulesets);
    }
    // One buffer of about the right size: a big set's text is megabytes,
    // and growing or copying it was most of the time this took.
    let rules = family_files(rulesets);
    let entries: usize = owned
        .iter()
        .map(|s| s.entries.len() * (s.name.len() + 20))
        .sum();
    let mut out = String::with_capacity(entries + rules.len() + 4096);
    out.push_str("# ipset\n");
    sets::push_restore_file(&mut out, owned);
    out.push_str(&rules);
    out
}

/// The rule files alone, each introduced by `# ipv4` / `# ipv6`: what
/// [`restore_text`] gives when there are no sets.
pub fn family_files<'a>(rulesets: impl IntoIterator<Item = &'a Ruleset>) -> String {
    let mut out = String::new();
    for ruleset in rulesets {
        let _ = writeln!(out, "# {}", ruleset.family);
        out.push_str(&restore_file(ruleset));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::Hook;
    use crate::ruleset::Placement;

    #[test]
    fn work_split_between_threads_comes_back_whole_and_in_order() {
        let weights: Vec<usize> = (0..57).map(|i| (i * 37) % 900 + 1).collect();
        let total: usize = weights.iter().sum();
        assert!(total > 4 * 2048, "enough to split");
        let doubled = in_parallel(&weights, |w| *w, |w| w * 2);
        assert_eq!(doubled, weights.iter().map(|w| w * 2).collect::<Vec<_>>());
        assert_eq!(in_parallel(&[1usize, 2], |w| *w, |w| w + 1), vec![2, 3]);
        assert!(in_parallel(&[] as &[usize], |w| *w, |w| *w).is_empty());
    }

    fn render(script: &str) -> [Ruleset; 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fw.rhai");
        std::fs::write(&path, script).expect("write script");
        let plan = crate::script::evaluate(&path).unwrap_or_else(|err| panic!("{err}"));
        Family::ALL.map(|family| ruleset(&plan, family))
    }

    /// `(built-in chain, placement, target)` of a table's hooks.
    fn hooks(ruleset: &Ruleset, table: Table) -> Vec<(Hook, Placement, String)> {
        ruleset.tables[&table]
            .hooks
            .iter()
            .map(|h| {
                let target = h.rule.spec.rsplit(' ').next().unwrap().to_string();
                (h.hook, h.placement, target)
            })
            .collect()
    }

    fn chain<'a>(ruleset: &'a Ruleset, table: Table, name: &str) -> Option<&'a OwnedChain> {
        ruleset.tables[&table].chain(name)
    }

    fn targets(chain: &OwnedChain) -> Vec<&str> {
        chain
            .rules
            .iter()
            .map(|r| r.spec.rsplit(' ').next().unwrap())
            .collect()
    }

    #[test]
    fn denials_are_hooked_on_top_and_permissions_at_the_end() {
        let [v4, v6] = render("allow_tcp(80);\nblock(\"198.51.100.0/24\");\ndrop_scans();\n");
        use Placement::{Bottom, Top};
        assert_eq!(
            hooks(&v4, Table::Filter),
            [
                (Hook::Input, Top, "FWS-INPUT-DENY".to_string()),
                (Hook::Input, Bottom, "FWS-INPUT".to_string()),
                (Hook::Forward, Bottom, "FWS-FORWARD".to_string()),
            ]
        );
        // The entry chain holds only what can accept; the deny stage is
        // reached from the top of INPUT, not through it.
        let entry = chain(&v4, Table::Filter, "FWS-INPUT").unwrap();
        assert_eq!(targets(entry), ["FWS-INPUT-BASE", "FWS-INPUT-ALLOW"]);
        assert_eq!(
            hooks(&v6, Table::Filter)[0].2,
            "FWS-INPUT-DENY",
            "drop_scans"
        );
        // A full restore file lists the top hook first.
        let text = restore_file(&v4);
        let deny = text.find("-A INPUT -m comment").unwrap();
        assert!(text[deny..]
            .lines()
            .next()
            .unwrap()
            .ends_with("-j FWS-INPUT-DENY"));
        assert!(text[deny..]
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("-j FWS-INPUT"));
    }

    #[test]
    fn a_script_without_denials_has_one_hook_per_chain_at_the_end() {
        let [v4, _] = render("allow_tcp(80);\n");
        assert!(hooks(&v4, Table::Filter)
            .iter()
            .all(|(_, placement, _)| *placement == Placement::Bottom));
        assert!(chain(&v4, Table::Filter, "FWS-INPUT-DENY").is_none());
    }

    #[test]
    fn jumps_and_returns_sit_with_the_permissions() {
        let [v4, _] = render(
            "rule(#{ proto: \"tcp\", dport: 25, action: \"jump:NFQUEUE\" });\n\
             rule(#{ proto: \"tcp\", dport: 26, action: \"return\" });\n\
             rule(#{ proto: \"tcp\", dport: 27, action: \"reject\" });\n",
        );
        let allow = chain(&v4, Table::Filter, "FWS-INPUT-ALLOW").unwrap();
        assert_eq!(targets(allow), ["NFQUEUE", "RETURN"]);
        let deny = chain(&v4, Table::Filter, "FWS-INPUT-DENY").unwrap();
        assert_eq!(targets(deny), ["REJECT"]);
    }

    #[test]
    fn an_output_chain_with_only_denials_has_only_a_top_hook() {
        let [v4, _] =
            render("rule(#{ chain: \"output\", dst: \"198.51.100.7\", action: \"drop\" });\n");
        let output: Vec<_> = hooks(&v4, Table::Filter)
            .into_iter()
            .filter(|h| h.0 == Hook::Output)
            .collect();
        assert_eq!(
            output,
            [(Hook::Output, Placement::Top, "FWS-OUTPUT-DENY".to_string())]
        );
        assert!(chain(&v4, Table::Filter, "FWS-OUTPUT").is_none());
        // Every jump has its target.
        for chain in &v4.tables[&Table::Filter].chains {
            for target in targets(chain) {
                if target.starts_with("FWS-") {
                    assert!(
                        v4.tables[&Table::Filter].chain(target).is_some(),
                        "{target}"
                    );
                }
            }
        }
    }

    #[test]
    fn nat_keeps_one_hook_on_top() {
        let [v4, _] = render("redirect_tcp(80, 8080);\n");
        assert_eq!(
            hooks(&v4, Table::Nat),
            [(
                Hook::Prerouting,
                Placement::Top,
                "FWS-PREROUTING".to_string()
            )]
        );
    }

    #[test]
    fn a_chunked_deny_stage_is_still_hooked_on_top() {
        let addrs: Vec<String> = (0..1500)
            .map(|i| format!("\"10.{}.{}.1\"", i / 256, i % 256))
            .collect();
        // One call per address: a list of them would be one set.
        let [v4, _] = render(&format!(
            "for a in [{}] {{ block(a); }}\nallow_tcp(80);\n",
            addrs.join(", ")
        ));
        assert_eq!(hooks(&v4, Table::Filter)[0].2, "FWS-INPUT-DENY");
        let deny = chain(&v4, Table::Filter, "FWS-INPUT-DENY").unwrap();
        assert!(targets(deny)
            .iter()
            .all(|t| t.starts_with("FWS-INPUT-DENY-")));
    }

    #[test]
    fn the_kernel_reads_hooks_back_in_the_placement_render_gave_them() {
        let [v4, _] =
            render("allow_tcp(80);\nblock(\"198.51.100.0/24\");\nredirect_tcp(80, 8080);\n");
        let live = crate::live::LiveState::parse(Family::Ipv4, &restore_file(&v4)).unwrap();
        let owned = live.owned();
        for table in [Table::Filter, Table::Nat] {
            assert_eq!(owned.tables[&table].hooks, {
                let mut hooks = v4.tables[&table].hooks.clone();
                for hook in &mut hooks {
                    hook.rule.origin = None;
                }
                hooks
            });
        }
    }
}
