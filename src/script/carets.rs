//! Where the caret goes (script stage, errors): under the argument at
//! fault, and inside it when the argument is written as an array or map
//! literal (`allow_tcp([22, 70000])` puts it under `70000`). Only an error
//! pays for this: the file is parsed again and the call looked up.

use rhai::{ASTNode, Engine, Expr, OptimizationLevel, Position, Stmt};

use super::values::Step;

/// The position of the value `at` leads to, in the call written at `call`
/// in `text`; the call itself when the path cannot be followed (the
/// argument is a variable, not a literal).
pub fn refine(text: &str, call: Position, at: &[Step]) -> Position {
    if at.is_empty() || call.is_none() {
        return call;
    }
    let mut engine = Engine::new_raw();
    engine.set_optimization_level(OptimizationLevel::None);
    engine.set_max_expr_depths(64, 32);
    let Ok(ast) = engine.compile(text) else {
        return call;
    };
    let mut found = None;
    ast.walk(&mut |path: &[ASTNode]| {
        let args = match path.last() {
            Some(ASTNode::Stmt(Stmt::FnCall(x, pos))) if *pos == call => &x.args,
            Some(ASTNode::Expr(Expr::FnCall(x, pos))) if *pos == call => &x.args,
            _ => return true,
        };
        found = Some(follow(args, at).unwrap_or(call));
        false
    });
    found.unwrap_or(call)
}

fn follow(args: &[Expr], at: &[Step]) -> Option<Position> {
    let Some(Step::Arg(i)) = at.first() else {
        return None;
    };
    let mut expr = args.get(*i)?;
    for step in &at[1..] {
        if let (Step::KeyName(key), Expr::Map(map, _)) = (step, expr) {
            return map
                .0
                .iter()
                .find(|(name, _)| name.name.as_str() == key)
                .map(|(name, _)| name.pos)
                .or(Some(expr.start_position()));
        }
        let inner = match (step, expr) {
            (Step::Item(n), Expr::Array(items, _)) => items.get(*n),
            (Step::Key(key), Expr::Map(map, _)) => map
                .0
                .iter()
                .find(|(name, _)| name.name.as_str() == key)
                .map(|(_, value)| value),
            _ => None,
        };
        match inner {
            Some(inner) => expr = inner,
            None => break,
        }
    }
    Some(expr.start_position())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(text: &str, call_col: u16, at: &[Step]) -> usize {
        let call = Position::new(1, call_col);
        refine(text, call, at).position().unwrap()
    }

    #[test]
    fn the_caret_follows_arrays_and_maps() {
        let text = "allow_tcp([22, 70000], #{ from: cfg.nte, comment: \"x\" });";
        assert_eq!(column(text, 1, &[Step::Arg(0)]), 11);
        assert_eq!(column(text, 1, &[Step::Arg(0), Step::Item(1)]), 16);
        assert_eq!(
            column(text, 1, &[Step::Arg(1), Step::Key("from".into())]),
            33
        );
        assert_eq!(
            column(text, 1, &[Step::Arg(1), Step::Key("nope".into())]),
            24
        );
        assert_eq!(
            column(text, 1, &[Step::Arg(1), Step::KeyName("from".into())]),
            27
        );
        assert_eq!(column(text, 1, &[]), 1);
    }

    #[test]
    fn a_variable_argument_gets_the_caret_under_it() {
        let text = "let p = [1, 2];\nallow_tcp(p);";
        let pos = refine(text, Position::new(2, 1), &[Step::Arg(0), Step::Item(1)]);
        assert_eq!((pos.line(), pos.position()), (Some(2), Some(11)));
    }
}
