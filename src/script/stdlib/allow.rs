//! Opening things up: these rules land in the `allow` stage, after every
//! deny, so a `block()` written later still wins.

use rhai::Dynamic;

use super::{nonempty_addresses, Call, Spec};
use crate::script::rule_spec::Extras;
use crate::script::services;
use crate::script::values::{self, Checked, Problem, Step};

const OPTIONS: &[&str] = &["from", "iface", "comment", "family"];
/// Each option under the `rule()` key it becomes.
const AS_KEYS: &[(&str, &str)] = &[
    ("from", "src"),
    ("iface", "iface"),
    ("comment", "comment"),
    ("family", "family"),
];

pub fn tcp(call: &Call) -> Checked<Dynamic> {
    ports(call, "tcp")
}

pub fn udp(call: &Call) -> Checked<Dynamic> {
    ports(call, "udp")
}

fn ports(call: &Call, proto: &'static str) -> Checked<Dynamic> {
    let ports = call.arg(0, "its ports")?;
    let opts = call.opts(1, OPTIONS)?;
    let mut spec = Spec::new();
    spec.set("proto", proto)
        .user("dport", ports, vec![Step::Arg(0)])
        .options(&opts, AS_KEYS)
        .set("action", "accept");
    call.add(&spec, &Extras::default())?;
    Ok(Dynamic::UNIT)
}

pub fn service(call: &Call) -> Checked<Dynamic> {
    let names = call.arg(0, "its service names")?;
    let listed = names.is_array();
    let items = values::one_or_many(names);
    if items.is_empty() {
        return Err(Problem::new("the list of services is empty").within(Step::Arg(0)));
    }
    let mut specs = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = if listed {
            vec![Step::Arg(0), Step::Item(i)]
        } else {
            vec![Step::Arg(0)]
        };
        let at = |mut p: Problem| {
            let mut full = path.clone();
            full.append(&mut p.at);
            p.at = full;
            p
        };
        let name = values::string(item, "one of its service names").map_err(at)?;
        let service = services::lookup(&name).ok_or_else(|| at(services::unknown(&name)))?;
        for proto in service.protos() {
            let mut spec = Spec::new();
            spec.set("proto", proto.script_name())
                .set("dport", i64::from(service.port))
                .set("action", "accept");
            specs.push(spec);
        }
    }
    for spec in &specs {
        call.add(spec, &Extras::default())?;
    }
    Ok(Dynamic::UNIT)
}

pub fn ssh_from(call: &Call) -> Checked<Dynamic> {
    let addrs = nonempty_addresses(call, 0)?;
    let mut spec = Spec::new();
    spec.set("proto", "tcp")
        .set("dport", 22_i64)
        .user("src", addrs, vec![Step::Arg(0)])
        .set("action", "accept");
    call.add(&spec, &Extras::default())?;
    Ok(Dynamic::UNIT)
}

pub fn from(call: &Call) -> Checked<Dynamic> {
    let addrs = nonempty_addresses(call, 0)?;
    let mut spec = Spec::new();
    spec.user("src", addrs, vec![Step::Arg(0)])
        .set("action", "accept");
    call.add(&spec, &Extras::default())?;
    Ok(Dynamic::UNIT)
}

pub fn ping(call: &Call) -> Checked<Dynamic> {
    for proto in ["icmp", "icmpv6"] {
        let mut spec = Spec::new();
        spec.set("proto", proto)
            .set("icmp_type", "echo-request")
            .set("action", "accept");
        call.add(&spec, &Extras::default())?;
    }
    Ok(Dynamic::UNIT)
}
