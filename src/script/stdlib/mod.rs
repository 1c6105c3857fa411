//! The functions a script can call (script stage), in native Rust: one
//! table holds each function with its documentation, so the engine,
//! `fwscript functions` and the reserved names cannot disagree. Natives
//! keep stdlib out of the script's reach: nothing here can be redefined or
//! bypassed from Rhai, and problems are reported at the user's call.

mod allow;
mod core;
mod deny;
mod limit;
mod lists;
mod log;
mod nat;

use std::any::TypeId;

use rhai::{Dynamic, Engine, EvalAltResult, Map, NativeCallContext};

use super::rule_spec::{self, Extras, Fields, Key};
use super::session::{Shared, Site};
use super::values::{self, Checked, Problem, Step};
use crate::plan::Origin;

pub use lists::{parse_list, ListEntries};

/// A function a script can call: one entry per arity.
pub struct Function {
    pub name: &'static str,
    pub params: &'static [&'static str],
    /// What `fwscript functions` prints, one paragraph.
    pub doc: &'static str,
    body: fn(&Call) -> Checked<Dynamic>,
}

impl Function {
    pub fn signature(&self) -> String {
        format!("{}({})", self.name, self.params.join(", "))
    }
}

const fn function(
    name: &'static str,
    params: &'static [&'static str],
    doc: &'static str,
    body: fn(&Call) -> Checked<Dynamic>,
) -> Function {
    Function {
        name,
        params,
        doc,
        body,
    }
}

/// Every function a script can call, in the order `fwscript functions`
/// lists them.
pub static FUNCTIONS: &[Function] = &[
    function(
        "rule",
        &["spec"],
        "Add one rule from a map of keys: chain, table, proto, dport, sport, src, dst, iface, oface, state, tcp_flags, icmp_type, limit, burst, action, to_port, to, log_prefix, comment, family (see docs/functions.md). A key left out means no restriction; a key given `()` is an error.",
        core::rule,
    ),
    function(
        "policy",
        &["chain", "verdict"],
        "Set a built-in chain's policy: `chain` is \"input\", \"forward\" or \"output\", `verdict` is \"accept\" or \"drop\". Both families.",
        core::policy,
    ),
    function(
        "baseline",
        &["switches"],
        "Switch parts of the baseline off, e.g. #{ icmp: false }. Keys: loopback, established, invalid, icmp; each true (the default) or false.",
        core::baseline,
    ),
    function(
        "allow_tcp",
        &["ports"],
        "Accept new TCP connections to these destination ports: a port, a service name (\"https\"), a range (\"6000:6010\"), or an array of these.",
        allow::tcp,
    ),
    function(
        "allow_tcp",
        &["ports", "opts"],
        "Like `allow_tcp(ports)`, with options: from, iface, comment, family.",
        allow::tcp,
    ),
    function(
        "allow_udp",
        &["ports"],
        "Accept UDP packets to these destination ports (as for `allow_tcp`).",
        allow::udp,
    ),
    function(
        "allow_udp",
        &["ports", "opts"],
        "Like `allow_udp(ports)`, with options: from, iface, comment, family.",
        allow::udp,
    ),
    function(
        "allow_service",
        &["names"],
        "Accept services by name, over TCP and/or UDP as each service uses them: \"dns\" opens tcp/53 and udp/53. A name or an array of names.",
        allow::service,
    ),
    function(
        "ssh_from",
        &["addrs"],
        "Accept SSH (tcp/22) only from these sources: an address, a CIDR, or an array of them (an `address_list(...)` too).",
        allow::ssh_from,
    ),
    function(
        "allow_from",
        &["addrs"],
        "Accept everything from these sources: an address, a CIDR, or an array.",
        allow::from,
    ),
    function(
        "allow_ping",
        &[],
        "Accept ICMP and ICMPv6 echo requests (ping).",
        allow::ping,
    ),
    function(
        "block",
        &["addrs"],
        "Drop everything from these sources: an address, a CIDR, or an array (an `address_list(...)` too).",
        deny::block,
    ),
    function(
        "drop_scans",
        &[],
        "Drop TCP null packets (no flags), XMAS packets (all flags) and new connections that do not start with SYN: the recon and flood patterns of the classic tutorial.",
        deny::drop_scans,
    ),
    function(
        "limit_tcp",
        &["ports"],
        "Accept new TCP connections to these ports, but drop a source that opens more than 6 within 30 seconds (the `recent` module, per source address).",
        limit::tcp,
    ),
    function(
        "limit_tcp",
        &["ports", "opts"],
        "Like `limit_tcp(ports)`, with options: hits (1..20, default 6), seconds (default 30), from, iface, comment, family.",
        limit::tcp,
    ),
    function(
        "redirect_tcp",
        &["port", "to_port"],
        "Redirect TCP connections for `port` to `to_port` on this host (nat PREROUTING REDIRECT), e.g. redirect_tcp(80, 8080). Only redirected connections reach `to_port`; it is not opened itself.",
        nat::redirect,
    ),
    function(
        "redirect_tcp",
        &["port", "to_port", "opts"],
        "Like `redirect_tcp(port, to_port)`, with options: from, iface, comment, family.",
        nat::redirect,
    ),
    function(
        "forward_tcp",
        &["port", "target"],
        "Forward TCP connections for `port` to another host, \"host:port\" or \"host\" (nat PREROUTING DNAT, plus the FORWARD accept it needs).",
        nat::forward,
    ),
    function(
        "forward_tcp",
        &["port", "target", "opts"],
        "Like `forward_tcp(port, target)`, with options: from, iface, comment.",
        nat::forward,
    ),
    function(
        "masquerade",
        &["iface"],
        "Masquerade (source-NAT to the interface's address) what leaves through `iface`: a NAT gateway's uplink.",
        nat::masquerade,
    ),
    function(
        "masquerade",
        &["iface", "opts"],
        "Like `masquerade(iface)`, with options: from (the inside network), comment, family.",
        nat::masquerade,
    ),
    function(
        "log_drops",
        &["prefix"],
        "Log, rate-limited to 5 a minute, what the input policy is about to drop. `prefix` starts each kernel log line (1 to 29 characters).",
        log::drops,
    ),
    function(
        "address_list",
        &["file"],
        "The addresses in a list file beside the script (\"lists/blocklist.txt\"): one address or CIDR per line, `#` comments, blank lines; duplicates count once. An array, usable wherever addresses are: block(address_list(\"lists/blocklist.txt\")). More than 8 addresses of a family in one rule become an owned ipset (fws-...) matched by one rule; an edit of the file edits the set in place.",
        lists::address_list,
    ),
];

/// A user function may not take one of these names: stdlib cannot be
/// replaced from a script.
pub fn is_reserved(name: &str) -> bool {
    FUNCTIONS.iter().any(|f| f.name == name)
}

pub fn register(engine: &mut Engine, shared: &Shared) {
    for function in FUNCTIONS {
        let shared = shared.clone();
        // `Dynamic` parameters take any value, so a wrong type gets our
        // sentence, not Rhai's "function not found" with type names.
        let types = vec![TypeId::of::<Dynamic>(); function.params.len()];
        engine.register_raw_fn(
            function.name,
            types,
            move |ctx: NativeCallContext,
                  args: &mut [&mut Dynamic]|
                  -> Result<Dynamic, Box<EvalAltResult>> {
                let call = Call::new(function, &ctx, args, &shared);
                (function.body)(&call).map_err(|problem| call.fail(problem))
            },
        );
    }
}

/// One call of a stdlib function: its arguments and where it was written.
pub struct Call<'a> {
    function: &'static Function,
    args: &'a [&'a mut Dynamic],
    pub site: Site,
    pub shared: &'a Shared,
}

impl<'a> Call<'a> {
    fn new(
        function: &'static Function,
        ctx: &NativeCallContext,
        args: &'a [&'a mut Dynamic],
        shared: &'a Shared,
    ) -> Call<'a> {
        // A native is always called from a user's file: the innermost
        // script function's module, or the entry script.
        let source = match ctx.call_source() {
            Some(source) => source.to_string(),
            None => shared.borrow().entry.clone(),
        };
        Call {
            function,
            args,
            site: Site {
                source,
                position: ctx.call_position(),
            },
            shared,
        }
    }

    pub fn name(&self) -> &'static str {
        self.function.name
    }

    /// Argument `i`, never `()`.
    pub fn arg(&self, i: usize, what: &str) -> Checked<&Dynamic> {
        values::given(self.args[i], what).map_err(|p| p.within(Step::Arg(i)))
    }

    /// The options map at argument `i`, when the call has one: only the
    /// keys in `known`, none of them `()`.
    pub fn opts(&self, i: usize, known: &[&str]) -> Checked<Opts<'a>> {
        let Some(value) = self.args.get(i) else {
            return Ok(Opts { arg: i, map: None });
        };
        let value: &'a Dynamic = value;
        let within = |p: Problem| p.within(Step::Arg(i));
        let value = values::given(value, "its options").map_err(within)?;
        let map = value.read_lock::<Map>().ok_or_else(|| {
            within(Problem::new(format!(
                "the options of `{}` must be a map like #{{ from: \"198.51.100.7\" }}, found {}",
                self.name(),
                values::describe(value)
            )))
        })?;
        rule_spec::check_keys(&map, known, self.name()).map_err(within)?;
        for (key, value) in map.iter() {
            if value.is_unit() {
                return Err(within(
                    Problem::missing(format!("its option `{key}`"))
                        .within(Step::Key(key.to_string())),
                ));
            }
        }
        Ok(Opts {
            arg: i,
            map: Some(map),
        })
    }

    pub fn origin(&self) -> Origin {
        self.site.origin()
    }

    /// Expands `spec` into rules and adds them to the plan.
    pub fn add(&self, spec: &Spec, extras: &Extras) -> Checked<()> {
        let rules = rule_spec::expand(&spec.fields, extras, self.origin())
            .map_err(|p| spec.translate(p))?;
        self.collect(rules)
    }

    /// Adds rules to the plan.
    pub fn collect(&self, rules: rule_spec::Expansion) -> Checked<()> {
        self.shared
            .borrow_mut()
            .collector
            .add(rules)
            .map_err(Problem::new)
    }

    /// Records `problem` at this call and returns the Rhai error that
    /// unwinds the script.
    fn fail(&self, problem: Problem) -> Box<EvalAltResult> {
        self.shared
            .borrow_mut()
            .raise(&self.site, self.name(), problem)
    }
}

/// An options map as given, with the argument it came in.
pub struct Opts<'a> {
    arg: usize,
    map: Option<rhai::DynamicReadLock<'a, Map>>,
}

impl Opts<'_> {
    pub fn get(&self, key: &str) -> Option<&Dynamic> {
        self.map.as_ref()?.get(key)
    }

    /// Where the option `key` was written, for the caret.
    pub fn path(&self, key: &str) -> Vec<Step> {
        vec![Step::Arg(self.arg), Step::Key(key.to_string())]
    }
}

/// A rule's keys as a stdlib function fills them, remembering which came
/// from which argument of the user's call.
#[derive(Clone, Default)]
pub struct Spec<'a> {
    fields: Fields<'a>,
    from_user: Vec<(Key, UserPath)>,
}

/// Where the user wrote a value: an argument, or a key of the options map
/// in one.
#[derive(Clone, Copy)]
enum UserPath {
    Arg(usize),
    Option(usize, &'static str),
}

impl UserPath {
    fn steps(self) -> Vec<Step> {
        match self {
            UserPath::Arg(i) => vec![Step::Arg(i)],
            UserPath::Option(i, key) => vec![Step::Arg(i), Step::Key(key.to_string())],
        }
    }
}

impl<'a> Spec<'a> {
    pub fn new() -> Spec<'a> {
        Spec::default()
    }

    /// A key stdlib decides (`action: "accept"`).
    pub fn set(&mut self, key: Key, value: impl Into<Dynamic>) -> &mut Spec<'a> {
        self.fields.set(key, value.into());
        self
    }

    /// A fixed word (`"tcp"`, `"accept"`), shared rather than allocated
    /// for every rule.
    pub fn word(&mut self, key: Key, word: &'static str) -> &mut Spec<'a> {
        self.fields.set(key, fixed(word));
        self
    }

    /// A key whose value is argument `arg` of the user's call.
    pub fn arg(&mut self, key: Key, value: &'a Dynamic, arg: usize) -> &mut Spec<'a> {
        self.fields.lend(key, value);
        self.from_user.push((key, UserPath::Arg(arg)));
        self
    }

    /// The options given, each under its `rule()` key: `(option, key)`.
    pub fn options(&mut self, opts: &'a Opts, keys: &[(&'static str, Key)]) -> &mut Spec<'a> {
        for (option, key) in keys {
            if let Some(value) = opts.get(option) {
                self.fields.lend(*key, value);
                self.from_user
                    .push((*key, UserPath::Option(opts.arg, option)));
            }
        }
        self
    }

    /// A problem `expand` found at a `rule()` key, moved to where the user
    /// wrote that value; one at a key stdlib set points at the call.
    fn translate(&self, mut problem: Problem) -> Problem {
        let user_path = match problem.at.first() {
            Some(Step::Key(name)) => self
                .from_user
                .iter()
                .find(|(k, _)| k.name() == name)
                .map(|(_, path)| path.steps()),
            _ => None,
        };
        problem.at = match user_path {
            Some(mut path) => {
                path.extend(problem.at.drain(1..));
                path
            }
            None => Vec::new(),
        };
        problem
    }
}

/// The words stdlib writes into rules, each allocated once per thread.
fn fixed(word: &'static str) -> Dynamic {
    thread_local! {
        static WORDS: std::cell::RefCell<Vec<(&'static str, rhai::ImmutableString)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    WORDS.with(|words| {
        let mut words = words.borrow_mut();
        let text = match words
            .iter()
            .find(|(w, _)| std::ptr::eq(*w, word) || *w == word)
        {
            Some((_, text)) => text.clone(),
            None => {
                let text = rhai::ImmutableString::from(word);
                words.push((word, text.clone()));
                text
            }
        };
        Dynamic::from(text)
    })
}

/// One port, not a list and not a range (`redirect_tcp`, `forward_tcp`).
pub fn single_port(value: &Dynamic) -> Checked<u16> {
    if value.is_array() {
        return Err(Problem::new("expected one port here, found an array"));
    }
    let ports = values::ports(value, None)?;
    match ports[..] {
        [range] if range.first == range.last => Ok(range.first),
        _ => Err(Problem::new("expected one port here, found a range")),
    }
}

/// Addresses that must not be an empty list (`ssh_from([])` would be easy
/// to misread as "from anywhere").
pub fn nonempty_addresses<'c>(call: &'c Call, i: usize) -> Checked<&'c Dynamic> {
    let value = call.arg(i, "its addresses")?;
    if value
        .read_lock::<rhai::Array>()
        .is_some_and(|a| a.is_empty())
    {
        return Err(
            Problem::new(format!("`{}` needs at least one address", call.name()))
                .within(Step::Arg(i)),
        );
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_has_a_doc_and_the_contract_names_exist() {
        for f in FUNCTIONS {
            assert!(!f.doc.is_empty(), "`{}` has no doc", f.signature());
            assert!(!f.name.starts_with("__"), "`{}` looks internal", f.name);
        }
        for wanted in [
            "allow_tcp",
            "allow_udp",
            "allow_service",
            "ssh_from",
            "limit_tcp",
            "drop_scans",
            "allow_from",
            "block",
            "allow_ping",
            "redirect_tcp",
            "forward_tcp",
            "masquerade",
            "log_drops",
            "policy",
            "rule",
            "address_list",
        ] {
            assert!(is_reserved(wanted), "stdlib lacks `{wanted}`");
        }
    }
}
