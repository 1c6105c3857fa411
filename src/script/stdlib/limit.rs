//! Rate limits: the `limit` stage, after denies and before allows.

use rhai::Dynamic;

use super::{Call, Spec};
use crate::plan::{RecentCheck, Stage};
use crate::script::rule_spec::{Extras, Key};
use crate::script::values::{self, Checked};

const OPTIONS: &[&str] = &["hits", "seconds", "from", "iface", "comment", "family"];

pub fn tcp(call: &Call) -> Checked<Dynamic> {
    let ports = call.arg(0, "its ports")?;
    let opts = call.opts(1, OPTIONS)?;
    let at = |key: &str| {
        let path = opts.path(key);
        move |mut p: crate::script::values::Problem| {
            let mut full = path.clone();
            full.append(&mut p.at);
            p.at = full;
            p
        }
    };
    // The kernel remembers at most 20 packets per source by default.
    let hits = match opts.get("hits") {
        Some(v) => values::bounded(v, "`hits`", 1..=20).map_err(at("hits"))?,
        None => 6,
    };
    let seconds = match opts.get("seconds") {
        Some(v) => values::bounded(v, "`seconds`", 1..=86_400).map_err(at("seconds"))?,
        None => 30,
    };
    let mut spec = Spec::new();
    spec.word(Key::Proto, "tcp")
        .arg(Key::Dport, ports, 0)
        .options(
            &opts,
            &[
                ("from", Key::Src),
                ("iface", Key::Iface),
                ("comment", Key::Comment),
                ("family", Key::Family),
            ],
        )
        .word(Key::State, "new");
    // Check first, then count: the source's first `hits` connections pass.
    let mut check = spec.clone();
    check.word(Key::Action, "drop");
    call.add(
        &check,
        &Extras {
            stage: Some(Stage::Limit),
            recent: Some(RecentCheck::Update { seconds, hits }),
            dnat_from_port: None,
        },
    )?;
    let mut count = spec;
    count.word(Key::Action, "accept");
    call.add(
        &count,
        &Extras {
            stage: Some(Stage::Limit),
            recent: Some(RecentCheck::Set),
            dnat_from_port: None,
        },
    )?;
    Ok(Dynamic::UNIT)
}
