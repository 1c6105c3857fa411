//! Opening things up: these rules land in the `allow` stage, after every
//! deny, so a `block()` written later still wins.

use rhai::Dynamic;

use super::{nonempty_addresses, Call, Spec};
use crate::script::rule_spec::{Extras, Key};
use crate::script::services;
use crate::script::values::{self, Checked, Problem, Step};

const OPTIONS: &[&str] = &["from", "iface", "comment", "family"];
/// Each option under the `rule()` key it becomes.
const AS_KEYS: &[(&str, Key)] = &[
    ("from", Key::Src),
    ("iface", Key::Iface),
    ("comment", Key::Comment),
    ("family", Key::Family),
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
    spec.word(Key::Proto, proto)
        .arg(Key::Dport, ports, 0)
        .options(&opts, AS_KEYS)
        .word(Key::Action, "accept");
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
            spec.word(Key::Proto, proto.script_name())
                .set(Key::Dport, i64::from(service.port))
                .word(Key::Action, "accept");
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
    spec.word(Key::Proto, "tcp")
        .set(Key::Dport, 22_i64)
        .arg(Key::Src, addrs, 0)
        .word(Key::Action, "accept");
    call.add(&spec, &Extras::default())?;
    Ok(Dynamic::UNIT)
}

pub fn from(call: &Call) -> Checked<Dynamic> {
    let addrs = nonempty_addresses(call, 0)?;
    let mut spec = Spec::new();
    spec.arg(Key::Src, addrs, 0).word(Key::Action, "accept");
    call.add(&spec, &Extras::default())?;
    Ok(Dynamic::UNIT)
}

pub fn ping(call: &Call) -> Checked<Dynamic> {
    for proto in ["icmp", "icmpv6"] {
        let mut spec = Spec::new();
        spec.word(Key::Proto, proto)
            .word(Key::IcmpType, "echo-request")
            .word(Key::Action, "accept");
        call.add(&spec, &Extras::default())?;
    }
    Ok(Dynamic::UNIT)
}
