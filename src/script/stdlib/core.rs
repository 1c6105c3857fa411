//! `rule`, `policy`, `baseline`: the primitives.

use rhai::{Dynamic, Map};

use super::Call;
use crate::netfilter::{Hook, Policy};
use crate::script::collector::Baseline;
use crate::script::rule_spec::{self, Extras, Fields};
use crate::script::values::{self, Checked, Problem, Step};

pub fn rule(call: &Call) -> Checked<Dynamic> {
    let value = call.arg(0, "its map")?;
    let map = value.read_lock::<Map>().ok_or_else(|| {
        Problem::new(format!(
            "`rule` takes a map like #{{ proto: \"tcp\", dport: 80, action: \"accept\" }}, found {}",
            values::describe(value)
        ))
        .within(Step::Arg(0))
    })?;
    let fields = Fields::from_map(&map).map_err(|p| p.within(Step::Arg(0)))?;
    // The keys are the user's own: a problem at one is already where the
    // caret goes, inside argument 0.
    let rules = rule_spec::expand(&fields, &Extras::default(), call.origin())
        .map_err(|p| p.within(Step::Arg(0)))?;
    call.collect(rules)?;
    Ok(Dynamic::UNIT)
}

pub fn policy(call: &Call) -> Checked<Dynamic> {
    let chain = values::string(call.arg(0, "its chain")?, "the chain")
        .map_err(|p| p.within(Step::Arg(0)))?;
    let hook = Hook::parse_script(&chain)
        .filter(|h| matches!(h, Hook::Input | Hook::Forward | Hook::Output))
        .ok_or_else(|| {
            Problem::new(format!("`policy` cannot set chain `{chain}`"))
                .hint("one of: input, forward, output")
                .within(Step::Arg(0))
        })?;
    let verdict = values::string(call.arg(1, "its verdict")?, "the verdict")
        .map_err(|p| p.within(Step::Arg(1)))?;
    let policy = match verdict.as_str() {
        "accept" => Policy::Accept,
        "drop" => Policy::Drop,
        other => {
            return Err(Problem::new(format!("unknown policy `{other}`"))
                .hint("a policy is \"accept\" or \"drop\"")
                .within(Step::Arg(1)))
        }
    };
    let origin = call.origin();
    call.shared
        .borrow_mut()
        .collector
        .set_policy(hook, policy, origin);
    Ok(Dynamic::UNIT)
}

pub fn baseline(call: &Call) -> Checked<Dynamic> {
    let value = call.arg(0, "its switches")?;
    let within = |p: Problem| p.within(Step::Arg(0));
    let map = value.read_lock::<Map>().ok_or_else(|| {
        within(Problem::new(format!(
            "`baseline` takes a map like #{{ icmp: false }}, found {}",
            values::describe(value)
        )))
    })?;
    rule_spec::check_keys(&map, &Baseline::KEYS, "baseline").map_err(within)?;
    let mut baseline = Baseline::default();
    for (key, value) in map.iter() {
        let at = |p: Problem| within(p.within(Step::Key(key.to_string())));
        let value = values::given(value, &format!("`{key}`")).map_err(at)?;
        let on = value.as_bool().map_err(|_| {
            at(Problem::new(format!(
                "`{key}` must be true or false, found {}",
                values::describe(value)
            )))
        })?;
        match key.as_str() {
            "loopback" => baseline.loopback = on,
            "established" => baseline.established = on,
            "invalid" => baseline.invalid = on,
            _ => baseline.icmp = on,
        }
    }
    call.shared.borrow_mut().collector.baseline = baseline;
    Ok(Dynamic::UNIT)
}
