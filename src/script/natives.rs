//! The native functions stdlib is built on. Each validates what it is given
//! and reports problems at the user's call site, found on the call stack,
//! never at a line inside stdlib.

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, NativeCallContext};

use super::collector::Baseline;
use super::rule_spec::{self, Extras};
use super::services;
use super::session::{is_stdlib, Shared, Site};
use super::values::{self, Checked, Problem};
use crate::netfilter::{Hook, Policy};
use crate::plan::{RecentCheck, Stage};

type NativeResult<T> = Result<T, Box<EvalAltResult>>;

pub fn register(engine: &mut Engine, shared: &Shared) {
    let s = shared.clone();
    engine.register_fn("__rule", move |ctx: NativeCallContext, spec: Dynamic| {
        run(&ctx, &s, |site| add_rule(&s, site, &spec, &Dynamic::UNIT))
    });
    let s = shared.clone();
    engine.register_fn(
        "__rule",
        move |ctx: NativeCallContext, spec: Dynamic, extras: Dynamic| {
            run(&ctx, &s, |site| add_rule(&s, site, &spec, &extras))
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "__options",
        move |ctx: NativeCallContext, name: &str, opts: Dynamic, keys: Array| {
            run(&ctx, &s, |_| options(name, &opts, &keys))
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "__policy",
        move |ctx: NativeCallContext, chain: Dynamic, verdict: Dynamic| {
            run(&ctx, &s, |site| {
                let (hook, policy) = policy(&chain, &verdict)?;
                s.borrow_mut()
                    .collector
                    .set_policy(hook, policy, site.origin());
                Ok(())
            })
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "__baseline",
        move |ctx: NativeCallContext, switches: Dynamic| {
            run(&ctx, &s, |_| {
                let baseline = baseline(&switches)?;
                s.borrow_mut().collector.baseline = baseline;
                Ok(())
            })
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "__services",
        move |ctx: NativeCallContext, names: Dynamic| run(&ctx, &s, |_| service_list(&names)),
    );
    let s = shared.clone();
    engine.register_fn("__port", move |ctx: NativeCallContext, port: Dynamic| {
        run(&ctx, &s, |_| single_port(&port))
    });
    let s = shared.clone();
    engine.register_fn(
        "__endpoint",
        move |ctx: NativeCallContext, text: Dynamic| {
            run(&ctx, &s, |_| {
                let to = values::endpoint(&values::string(&text, "the target")?)?;
                let mut map = Map::new();
                map.insert("host".into(), to.addr.to_string().into());
                map.insert(
                    "port".into(),
                    to.port
                        .map_or(Dynamic::UNIT, |p| Dynamic::from(i64::from(p.first))),
                );
                Ok(map)
            })
        },
    );
    let s = shared.clone();
    engine.register_fn(
        "__nonempty",
        move |ctx: NativeCallContext, what: &str, value: Dynamic| {
            run(&ctx, &s, |_| {
                if value.is_unit() || value.read_lock::<Array>().is_some_and(|a| a.is_empty()) {
                    Err(Problem::new(format!("`{what}` needs at least one address")))
                } else {
                    Ok(value.clone())
                }
            })
        },
    );
}

/// Runs a native's body; a [`Problem`] becomes an error at the user's call
/// site.
fn run<T>(
    ctx: &NativeCallContext,
    shared: &Shared,
    body: impl FnOnce(&Site) -> Checked<T>,
) -> NativeResult<T> {
    let entry = shared
        .borrow()
        .files
        .first()
        .map(|f| f.id.clone())
        .unwrap_or_default();
    let site = user_site(ctx, &entry);
    body(&site).map_err(|problem| shared.borrow_mut().raise(&site, problem))
}

/// The innermost call made from a user's file. Each call-stack frame holds
/// the callee's module and the call's position in the caller, so frame `i`
/// was written in the module of frame `i - 1` (the entry script for the
/// first): walk down and keep the last frame written in a user's file.
pub fn user_site(ctx: &NativeCallContext, entry: &str) -> Site {
    let mut written_in = entry;
    let mut site = None;
    for frame in ctx.global_runtime_state().debugger().call_stack() {
        if !is_stdlib(Some(written_in)) {
            site = Some(Site {
                source: written_in.to_string(),
                position: frame.pos,
            });
        }
        written_in = frame.source.as_deref().unwrap_or(entry);
    }
    site.unwrap_or_else(|| Site {
        source: entry.to_string(),
        position: ctx.call_position(),
    })
}

fn add_rule(shared: &Shared, site: &Site, spec: &Dynamic, extras: &Dynamic) -> Checked<()> {
    let map = spec.read_lock::<Map>().ok_or_else(|| {
        Problem::new(format!("`rule` takes a map like #{{ proto: \"tcp\", dport: 80, action: \"accept\" }}, found {}", values::describe(spec)))
    })?;
    let extras = read_extras(extras)?;
    let rules = rule_spec::expand(&map, &extras, &site.origin())?;
    shared.borrow_mut().collector.add(rules).map_err(|message| {
        Problem::new(message).hint("put large address lists in an ipset and match the set")
    })
}

/// Stdlib's additions to a rule: only stdlib writes these, so a mistake
/// here is fwscript's bug, but it still gets a message, not a panic.
fn read_extras(value: &Dynamic) -> Checked<Extras> {
    let mut extras = Extras::default();
    let Some(map) = value.read_lock::<Map>() else {
        return Ok(extras);
    };
    if let Some(stage) = map.get("stage") {
        let name = values::string(stage, "stage")?;
        extras.stage = Some(
            Stage::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| Problem::new(format!("unknown stage `{name}`")))?,
        );
    }
    if let Some(recent) = map
        .get("recent")
        .and_then(|r| r.read_lock::<Map>().map(|m| m.clone()))
    {
        extras.recent = Some(match recent.get("seconds") {
            Some(seconds) => RecentCheck::Update {
                seconds: values::bounded(seconds, "`seconds`", 1..=86_400)?,
                // The kernel remembers at most 20 packets per source by default.
                hits: values::bounded(
                    recent.get("hits").unwrap_or(&Dynamic::UNIT),
                    "`hits`",
                    1..=20,
                )?,
            },
            None => RecentCheck::Set,
        });
    }
    if let Some(port) = map.get("dnat_from_port").filter(|p| !p.is_unit()) {
        extras.dnat_from_port = Some(single_port(port)? as u16);
    }
    Ok(extras)
}

/// A stdlib function's `opts`: a map with only the keys it takes, or
/// nothing (an empty map).
fn options(name: &str, opts: &Dynamic, keys: &Array) -> Checked<Map> {
    if opts.is_unit() {
        return Ok(Map::new());
    }
    let map = opts.read_lock::<Map>().ok_or_else(|| {
        Problem::new(format!(
            "the options of `{name}` must be a map like #{{ from: \"198.51.100.7\" }}, found {}",
            values::describe(opts)
        ))
    })?;
    let known: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    rule_spec::check_keys(&map, &known, name)?;
    Ok(map.clone())
}

fn policy(chain: &Dynamic, verdict: &Dynamic) -> Checked<(Hook, Policy)> {
    let chain = values::string(chain, "the chain")?;
    let hook = Hook::parse_script(&chain)
        .filter(|h| matches!(h, Hook::Input | Hook::Forward | Hook::Output))
        .ok_or_else(|| {
            Problem::new(format!("`policy` cannot set chain `{chain}`"))
                .hint("one of: input, forward, output")
        })?;
    let verdict = values::string(verdict, "the verdict")?;
    let policy = match verdict.as_str() {
        "accept" => Policy::Accept,
        "drop" => Policy::Drop,
        other => {
            return Err(Problem::new(format!("unknown policy `{other}`"))
                .hint("a policy is \"accept\" or \"drop\""))
        }
    };
    Ok((hook, policy))
}

fn baseline(value: &Dynamic) -> Checked<Baseline> {
    let map = value.read_lock::<Map>().ok_or_else(|| {
        Problem::new(format!(
            "`baseline` takes a map like #{{ icmp: false }}, found {}",
            values::describe(value)
        ))
    })?;
    rule_spec::check_keys(&map, &Baseline::KEYS, "baseline")?;
    let mut baseline = Baseline::default();
    for (key, value) in map.iter() {
        let on = value.as_bool().map_err(|_| {
            Problem::new(format!(
                "`{key}` must be true or false, found {}",
                values::describe(value)
            ))
        })?;
        match key.as_str() {
            "loopback" => baseline.loopback = on,
            "established" => baseline.established = on,
            "invalid" => baseline.invalid = on,
            _ => baseline.icmp = on,
        }
    }
    Ok(baseline)
}

/// `[#{ proto: "tcp", port: 53 }, #{ proto: "udp", port: 53 }]` for `"dns"`.
fn service_list(names: &Dynamic) -> Checked<Array> {
    let items = values::one_or_many(names);
    if items.is_empty() {
        return Err(Problem::new("the list of services is empty"));
    }
    let mut out = Array::new();
    for item in items {
        let name = values::string(&item, "a service name")?;
        let service = services::lookup(&name).ok_or_else(|| {
            Problem::new(format!("unknown service `{name}`"))
                .hint(format!("one of: {}", services::names()))
        })?;
        for proto in service.protos() {
            let mut entry = Map::new();
            entry.insert("proto".into(), proto.script_name().into());
            entry.insert("port".into(), Dynamic::from(i64::from(service.port)));
            out.push(entry.into());
        }
    }
    Ok(out)
}

fn single_port(value: &Dynamic) -> Checked<i64> {
    if value.is_array() {
        return Err(Problem::new("expected one port here, found an array"));
    }
    let ports = values::ports(value, None)?;
    match ports[..] {
        [range] if range.first == range.last => Ok(i64::from(range.first)),
        _ => Err(Problem::new("expected one port here, found a range")),
    }
}
