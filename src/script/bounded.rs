//! Rhai's string natives whose result can dwarf their input, replaced
//! (script stage, inside the sandbox of [`super::engine`]): Rhai checks a
//! value's size only after the native returns, so `s.split("")` on a
//! 16 MiB string first built 16 million strings (a gigabyte, seconds of
//! one uninterruptible call) before the array limit said no. These count
//! as they go and stop at the engine's array or string limit, before the
//! memory is taken.

use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, NativeCallContext, INT};

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

/// Rhai's rule: an empty string splits into itself.
macro_rules! split {
    ($ctx:ident, $s:ident, $pieces:expr) => {
        if $s.is_empty() {
            Ok(vec![Dynamic::from($s.clone())])
        } else {
            pieces(&$ctx, $pieces)
        }
    };
}

/// Registers the bounded versions over Rhai's own: functions registered
/// on the engine are found before those of its packages.
pub fn register(engine: &mut Engine) {
    engine.register_fn("to_chars", |ctx: NativeCallContext, s: &str| {
        pieces(&ctx, s.chars().map(Dynamic::from_char))
    });
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, s: &mut ImmutableString| {
            split!(ctx, s, s.split_whitespace().map(piece))
        },
    );
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, s: &mut ImmutableString, by: &str| {
            split!(ctx, s, s.split(by).map(piece))
        },
    );
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, s: &mut ImmutableString, by: char| {
            split!(ctx, s, s.split(by).map(piece))
        },
    );
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, s: &mut ImmutableString, by: &str, n: INT| {
            split!(ctx, s, s.splitn(segments(n), by).map(piece))
        },
    );
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, s: &mut ImmutableString, by: char, n: INT| {
            split!(ctx, s, s.splitn(segments(n), by).map(piece))
        },
    );
    engine.register_fn(
        "split_rev",
        |ctx: NativeCallContext, s: &mut ImmutableString, by: &str| {
            split!(ctx, s, s.rsplit(by).map(piece))
        },
    );
    engine.register_fn(
        "split_rev",
        |ctx: NativeCallContext, s: &mut ImmutableString, by: char| {
            split!(ctx, s, s.rsplit(by).map(piece))
        },
    );
    engine.register_fn(
        "split_rev",
        |ctx: NativeCallContext, s: &mut ImmutableString, by: &str, n: INT| {
            split!(ctx, s, s.rsplitn(segments(n), by).map(piece))
        },
    );
    engine.register_fn(
        "split_rev",
        |ctx: NativeCallContext, s: &mut ImmutableString, by: char, n: INT| {
            split!(ctx, s, s.rsplitn(segments(n), by).map(piece))
        },
    );
    engine.register_fn(
        "replace",
        |ctx: NativeCallContext, s: &mut ImmutableString, find: &str, with: &str| {
            replace(&ctx, s, find, with)
        },
    );
    engine.register_fn(
        "replace",
        |ctx: NativeCallContext, s: &mut ImmutableString, find: &str, with: char| {
            replace(&ctx, s, find, with.encode_utf8(&mut [0; 4]))
        },
    );
    engine.register_fn(
        "replace",
        |ctx: NativeCallContext, s: &mut ImmutableString, find: char, with: &str| {
            replace(&ctx, s, find.encode_utf8(&mut [0; 4]), with)
        },
    );
    engine.register_fn(
        "replace",
        |ctx: NativeCallContext, s: &mut ImmutableString, find: char, with: char| {
            replace(
                &ctx,
                s,
                find.encode_utf8(&mut [0; 4]),
                with.encode_utf8(&mut [0; 4]),
            )
        },
    );
    engine.register_fn(
        "pad",
        |ctx: NativeCallContext, s: &mut ImmutableString, len: INT, with: char| {
            pad(&ctx, s, len, with.encode_utf8(&mut [0; 4]))
        },
    );
    engine.register_fn(
        "pad",
        |ctx: NativeCallContext, s: &mut ImmutableString, len: INT, with: &str| {
            pad(&ctx, s, len, with)
        },
    );
}

fn piece(text: &str) -> Dynamic {
    text.into()
}

/// Rhai's rule: fewer than one segment is one.
fn segments(n: INT) -> usize {
    usize::try_from(n.max(1)).unwrap_or(usize::MAX)
}

/// Collects at most the engine's array limit of pieces.
fn pieces(ctx: &NativeCallContext, items: impl Iterator<Item = Dynamic>) -> Result<Array> {
    let max = ctx.engine().max_array_size();
    let mut out = Array::new();
    for item in items {
        if max > 0 && out.len() >= max {
            return Err(too_large("Size of array", ctx));
        }
        out.push(item);
    }
    Ok(out)
}

/// The result's size is known before it is built: occurrences times the
/// growth of each.
fn replace(ctx: &NativeCallContext, s: &mut ImmutableString, find: &str, with: &str) -> Result<()> {
    if s.is_empty() {
        return Ok(());
    }
    let max = ctx.engine().max_string_size();
    if max > 0 && with.len() > find.len() {
        let mut size = s.len();
        for _ in s.matches(find) {
            size += with.len() - find.len();
            if size > max {
                return Err(too_large("Length of string", ctx));
            }
        }
    }
    *s = s.replace(find, with).into();
    Ok(())
}

/// Rhai's `pad` bounds the characters, not the bytes: 16 million
/// four-byte characters are 64 MiB.
fn pad(ctx: &NativeCallContext, s: &mut ImmutableString, len: INT, with: &str) -> Result<()> {
    let have = s.chars().count();
    let Ok(len) = usize::try_from(len) else {
        return Ok(());
    };
    if len <= have || with.is_empty() {
        return Ok(());
    }
    let missing = len - have;
    let widest = with.chars().map(char::len_utf8).max().unwrap_or(1);
    let max = ctx.engine().max_string_size();
    if max > 0 && s.len().saturating_add(missing.saturating_mul(widest)) > max {
        return Err(too_large("Length of string", ctx));
    }
    let mut out = String::with_capacity(s.len() + missing * widest);
    out.push_str(s);
    // Whole copies first: a copy is one memcpy, a character a loop round.
    let each = with.chars().count();
    out.push_str(&with.repeat(missing / each));
    out.extend(with.chars().take(missing % each));
    *s = out.into();
    Ok(())
}

fn too_large(what: &str, ctx: &NativeCallContext) -> Box<EvalAltResult> {
    EvalAltResult::ErrorDataTooLarge(what.into(), ctx.call_position()).into()
}
