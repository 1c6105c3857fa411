//! Script evaluation benchmark (issue: evaluation of a 10,000-call script in
//! at most 30 ms, release build). Not a timed test: it prints a table of
//! medians. Needs no root and no kernel.
//!
//! ```text
//! cargo bench --bench script
//! FWSCRIPT_BENCH_RUNS=21 cargo bench --bench script
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use fwscript::script;

fn main() {
    let runs: usize = std::env::var("FWSCRIPT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, String)> = vec![
        (
            "10,000 allow_tcp calls, one port each (a loop)",
            "for i in 1..=10000 { allow_tcp(i % 60000 + 1); }\n".into(),
        ),
        (
            "10,000 allow_tcp([22], #{ from }) lines, distinct sources",
            (0..10_000)
                .map(|i| {
                    format!(
                        "allow_tcp([22], #{{ from: \"10.{}.{}.{}\" }});\n",
                        (i >> 16) & 255,
                        (i >> 8) & 255,
                        i & 255
                    )
                })
                .collect(),
        ),
        (
            "block() of one 100,000-address literal array",
            format!(
                "block([{}]);\n",
                (0..100_000)
                    .map(|i| format!("\"10.{}.{}.{}\"", (i >> 16) & 255, (i >> 8) & 255, i & 255))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (
            "block(address_list()) of a 100,000-line file",
            "block(address_list(\"list.txt\"));\n".into(),
        ),
    ];
    let list: String = (0..100_000)
        .map(|i| format!("10.{}.{}.{}\n", (i >> 16) & 255, (i >> 8) & 255, i & 255))
        .collect();
    std::fs::write(dir.path().join("list.txt"), list).unwrap();

    println!(
        "script evaluation, median of {runs} runs (script::evaluate: read, run, assemble the plan)"
    );
    println!();
    for (name, text) in &cases {
        let path = dir.path().join("fw.rhai");
        std::fs::write(&path, text).unwrap();
        match time(&path, runs) {
            Ok(median) => println!("{name:<60} {:>8.1} ms", median.as_secs_f64() * 1000.0),
            Err(err) => println!("{name:<60} error: {}", err.one_line()),
        }
    }
}

fn time(path: &Path, runs: usize) -> Result<Duration, script::ScriptError> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let plan = script::evaluate(path)?;
        times.push(started.elapsed());
        assert!(plan.rule_count() > 0);
    }
    times.sort();
    Ok(times[times.len() / 2])
}
