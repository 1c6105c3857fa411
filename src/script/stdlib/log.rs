//! Logging: the `log` stage, the last thing a packet meets before the
//! policy.

use rhai::Dynamic;

use super::{Call, Spec};
use crate::plan::Stage;
use crate::script::rule_spec::{Extras, Key};
use crate::script::values::Checked;

pub fn drops(call: &Call) -> Checked<Dynamic> {
    let prefix = call.arg(0, "its prefix")?;
    let mut spec = Spec::new();
    spec.word(Key::Limit, "5/min")
        .set(Key::Burst, 10_i64)
        .word(Key::Action, "log")
        .arg(Key::LogPrefix, prefix, 0);
    call.add(
        &spec,
        &Extras {
            stage: Some(Stage::Log),
            ..Extras::default()
        },
    )?;
    Ok(Dynamic::UNIT)
}
