//! Script evaluation benchmark (issue: evaluation of a 10,000-call script in
//! at most 30 ms, release build). Not a timed test: it prints a table of
//! medians. Needs no root and no kernel.
//!
//! ```text
//! cargo bench --bench script
//! FWSCRIPT_BENCH_RUNS=21 FWSCRIPT_BENCH_ONLY="one port" cargo bench --bench script
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
            "10,000 allow_tcp calls, one port each (a loop; 20,000 rules)",
            "for i in 1..=10000 { allow_tcp(i % 60000 + 1); }\n".into(),
        ),
        (
            "10,000 allow_tcp([22], #{ from }) calls, distinct sources (a loop)",
            "for i in 0..10000 { allow_tcp([22], #{ from: `10.0.${i / 256}.${i % 256}` }); }\n"
                .into(),
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
            // Ten to a line: a script line is at most 65,535 characters.
            format!(
                "block([\n{}]);\n",
                (0..100_000)
                    .map(|i| format!("\"10.{}.{}.{}\",", (i >> 16) & 255, (i >> 8) & 255, i & 255))
                    .collect::<Vec<_>>()
                    .chunks(10)
                    .map(|line| line.join(" "))
                    .collect::<Vec<_>>()
                    .join("\n")
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
        "script evaluation (script::evaluate: read, run, assemble the plan), {runs} runs: \
         wall time median and minimum, CPU time median (steadier on a shared machine)"
    );
    println!();
    println!("{:<66} {:>8} {:>8} {:>8}", "script", "median", "min", "cpu");
    let only = std::env::var("FWSCRIPT_BENCH_ONLY").unwrap_or_default();
    for (name, text) in cases
        .iter()
        .filter(|(name, _)| name.contains(only.as_str()))
    {
        let path = dir.path().join("fw.rhai");
        std::fs::write(&path, text).unwrap();
        match time(&path, runs) {
            Ok((median, min, cpu)) => println!(
                "{name:<66} {:>5.1} ms {:>5.1} ms {:>5.1} ms",
                ms(median),
                ms(min),
                ms(cpu)
            ),
            Err(err) => println!("{name:<66} error: {}", err.one_line()),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Wall median, wall minimum and CPU median of `runs` evaluations.
fn time(path: &Path, runs: usize) -> Result<(Duration, Duration, Duration), script::ScriptError> {
    let mut wall = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (started, cpu_started) = (Instant::now(), cpu_time());
        let plan = script::evaluate(path)?;
        wall.push(started.elapsed());
        cpu.push(cpu_time().saturating_sub(cpu_started));
        assert!(plan.rule_count() > 0);
    }
    wall.sort();
    cpu.sort();
    Ok((wall[runs / 2], wall[0], cpu[runs / 2]))
}

/// CPU time of the whole process (the evaluation runs on a thread of its own).
fn cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a live, writable one.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
