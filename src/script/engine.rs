//! The sandboxed Rhai engine a script runs in: no `eval`, bounded work,
//! depth and sizes, imports confined to the script's folder, and the
//! embedded stdlib always in scope.

use std::path::PathBuf;

use rhai::{Engine, Module, Scope};

use super::modules::ConfinedResolver;
use super::natives;
use super::session::{Shared, STDLIB_SOURCE};

/// Operations a script may run. A 10,000-rule script needs about a tenth of
/// this; a runaway loop hits it in about 0.3 s of CPU (README, "Limits").
pub const MAX_OPERATIONS: u64 = 5_000_000;
pub const MAX_CALL_LEVELS: usize = 48;
pub const MAX_STRING: usize = 64 * 1024;
pub const MAX_ARRAY: usize = 200_000;
pub const MAX_MAP: usize = 10_000;
pub const MAX_MODULES: usize = 64;

/// The stdlib, embedded so the binary is self-contained: (file, text).
pub const STDLIB: &[(&str, &str)] = &[
    ("rule.rhai", include_str!("../../stdlib/rule.rhai")),
    ("allow.rhai", include_str!("../../stdlib/allow.rhai")),
    ("deny.rhai", include_str!("../../stdlib/deny.rhai")),
    ("limit.rhai", include_str!("../../stdlib/limit.rhai")),
    ("nat.rhai", include_str!("../../stdlib/nat.rhai")),
    ("log.rhai", include_str!("../../stdlib/log.rhai")),
];

pub fn build(shared: &Shared, root: PathBuf, shown_root: PathBuf) -> Engine {
    let mut engine = Engine::new();
    engine.disable_symbol("eval");
    engine.set_max_operations(MAX_OPERATIONS);
    engine.set_max_call_levels(MAX_CALL_LEVELS);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(MAX_STRING);
    engine.set_max_array_size(MAX_ARRAY);
    engine.set_max_map_size(MAX_MAP);
    engine.set_max_modules(MAX_MODULES);
    engine.on_print(|text| tracing::info!(target: "script", "{text}"));
    engine.on_debug(|text, source, pos| tracing::debug!(target: "script", "{}:{pos}: {text}", source.unwrap_or("")));
    // A registered debugger is what keeps the call stack, which natives read
    // to find the user's call site; it never stops the script.
    #[allow(deprecated)]
    engine.register_debugger(
        |_, debugger| debugger,
        |_, _, _, _, _| Ok(rhai::debugger::DebuggerCommand::Continue),
    );
    natives::register(&mut engine, shared);
    engine.set_module_resolver(ConfinedResolver::new(root, shown_root, shared.clone()));

    for (name, text) in STDLIB {
        let mut ast = engine
            .compile(text)
            .unwrap_or_else(|err| panic!("stdlib/{name} does not compile: {err}"));
        let id = format!("{STDLIB_SOURCE}{name}");
        ast.set_source(id.as_str());
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, &engine)
            .unwrap_or_else(|err| panic!("stdlib/{name} does not evaluate: {err}"));
        module.set_id(id);
        engine.register_global_module(module.into());
    }
    engine
}
