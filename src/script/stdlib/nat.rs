//! Address translation: the nat table, plus the filter accepts that let the
//! translated packets through.

use rhai::Dynamic;

use super::{single_port, Call, Spec};
use crate::script::rule_spec::{Extras, Key};
use crate::script::values::{self, Checked, Step};

pub fn redirect(call: &Call) -> Checked<Dynamic> {
    let from_port = single_port(call.arg(0, "its port")?).map_err(|p| p.within(Step::Arg(0)))?;
    let to_port =
        single_port(call.arg(1, "its target port")?).map_err(|p| p.within(Step::Arg(1)))?;
    let opts = call.opts(2, &["from", "iface", "comment", "family"])?;
    let mut spec = Spec::new();
    spec.word(Key::Proto, "tcp").options(
        &opts,
        &[
            ("from", Key::Src),
            ("iface", Key::Iface),
            ("comment", Key::Comment),
            ("family", Key::Family),
        ],
    );
    let mut nat = spec.clone();
    nat.word(Key::Table, "nat")
        .word(Key::Chain, "prerouting")
        .set(Key::Dport, i64::from(from_port))
        .word(Key::Action, "redirect")
        .set(Key::ToPort, i64::from(to_port));
    call.add(&nat, &Extras::default())?;
    // Only redirected connections reach `to_port`; it is not opened itself.
    let mut accept = spec;
    accept
        .set(Key::Dport, i64::from(to_port))
        .word(Key::Action, "accept");
    call.add(
        &accept,
        &Extras {
            dnat_from_port: Some(from_port),
            ..Extras::default()
        },
    )?;
    Ok(Dynamic::UNIT)
}

pub fn forward(call: &Call) -> Checked<Dynamic> {
    let from_port = single_port(call.arg(0, "its port")?).map_err(|p| p.within(Step::Arg(0)))?;
    let target = call.arg(1, "its target")?;
    let to = values::string(target, "the target")
        .and_then(|text| values::endpoint(&text))
        .map_err(|p| p.within(Step::Arg(1)))?;
    let opts = call.opts(2, &["from", "iface", "comment"])?;
    let mut spec = Spec::new();
    spec.word(Key::Proto, "tcp").options(
        &opts,
        &[
            ("from", Key::Src),
            ("iface", Key::Iface),
            ("comment", Key::Comment),
        ],
    );
    let mut nat = spec.clone();
    nat.word(Key::Table, "nat")
        .word(Key::Chain, "prerouting")
        .set(Key::Dport, i64::from(from_port))
        .word(Key::Action, "dnat")
        .arg(Key::To, target, 1);
    call.add(&nat, &Extras::default())?;
    let to_port = to.port.map_or(from_port, |p| p.first);
    let mut accept = spec;
    accept
        .word(Key::Chain, "forward")
        .set(Key::Dst, to.addr.to_string())
        .set(Key::Dport, i64::from(to_port))
        .word(Key::Action, "accept");
    call.add(
        &accept,
        &Extras {
            dnat_from_port: Some(from_port),
            ..Extras::default()
        },
    )?;
    Ok(Dynamic::UNIT)
}

pub fn masquerade(call: &Call) -> Checked<Dynamic> {
    let iface = call.arg(0, "its interface")?;
    let opts = call.opts(1, &["from", "comment", "family"])?;
    let mut spec = Spec::new();
    spec.word(Key::Table, "nat")
        .word(Key::Chain, "postrouting")
        .arg(Key::Oface, iface, 0)
        .options(
            &opts,
            &[
                ("from", Key::Src),
                ("comment", Key::Comment),
                ("family", Key::Family),
            ],
        )
        .word(Key::Action, "masquerade");
    call.add(&spec, &Extras::default())?;
    Ok(Dynamic::UNIT)
}
