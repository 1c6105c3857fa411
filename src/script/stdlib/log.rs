//! Logging: the `log` stage, the last thing a packet meets before the
//! policy.

use rhai::Dynamic;

use super::{Call, Spec};
use crate::plan::Stage;
use crate::script::rule_spec::Extras;
use crate::script::values::{Checked, Step};

pub fn drops(call: &Call) -> Checked<Dynamic> {
    let prefix = call.arg(0, "its prefix")?;
    let mut spec = Spec::new();
    spec.set("limit", "5/min")
        .set("burst", 10_i64)
        .set("action", "log")
        .user("log_prefix", prefix, vec![Step::Arg(0)]);
    call.add(
        &spec,
        &Extras {
            stage: Some(Stage::Log),
            ..Extras::default()
        },
    )?;
    Ok(Dynamic::UNIT)
}
