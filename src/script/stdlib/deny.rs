//! Shutting things out: these rules land in the `deny` stage, before any
//! limit or allow, wherever they are written.

use rhai::{Dynamic, Map};

use super::{nonempty_addresses, Call, Spec};
use crate::script::rule_spec::{Extras, Key};
use crate::script::values::Checked;

pub fn block(call: &Call) -> Checked<Dynamic> {
    let addrs = nonempty_addresses(call, 0)?;
    let mut spec = Spec::new();
    spec.arg(Key::Src, addrs, 0).word(Key::Action, "drop");
    call.add(&spec, &Extras::default())?;
    Ok(Dynamic::UNIT)
}

pub fn drop_scans(call: &Call) -> Checked<Dynamic> {
    let flags = |mask: &str, set: &str| {
        let mut map = Map::new();
        map.insert("mask".into(), mask.into());
        map.insert("set".into(), set.into());
        Dynamic::from_map(map)
    };
    let rules: [(Dynamic, Option<&'static str>, &'static str); 3] = [
        (flags("all", "none"), None, "null scan"),
        (flags("all", "all"), None, "xmas scan"),
        ("!syn".into(), Some("new"), "new without syn"),
    ];
    for (tcp_flags, state, comment) in rules {
        let mut spec = Spec::new();
        spec.word(Key::Proto, "tcp").set(Key::TcpFlags, tcp_flags);
        if let Some(state) = state {
            spec.word(Key::State, state);
        }
        spec.word(Key::Action, "drop").word(Key::Comment, comment);
        call.add(&spec, &Extras::default())?;
    }
    Ok(Dynamic::UNIT)
}
