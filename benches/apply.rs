//! Apply benchmark (DESIGN.md 8): fwscript beside the raw iptables tools on a
//! 10,000-rule-per-family script, inside throwaway network namespaces, for
//! both iptables backends. Not a timed test: it prints a table.
//!
//! ```text
//! sudo cargo bench --bench apply
//! FWSCRIPT_BENCH_RULES=2000 FWSCRIPT_BENCH_RUNS=3 FWSCRIPT_BENCH_FLAVORS=nft sudo -E cargo bench --bench apply
//! ```

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fwscript::apply;
use fwscript::backend::iptables::{Flavor, Iptables};
use fwscript::backend::{Backend, BackendError};
use fwscript::forms::KernelForms;
use fwscript::netfilter::Family;
use fwscript::ruleset::Ruleset;
use fwscript::{render, script, transaction};

fn main() {
    let rules: usize = setting("FWSCRIPT_BENCH_RULES", 10_000);
    let runs: usize = setting("FWSCRIPT_BENCH_RUNS", 5);
    let flavors = std::env::var("FWSCRIPT_BENCH_FLAVORS").unwrap_or_else(|_| "nft,legacy".into());

    let dir = tempfile::tempdir().unwrap();
    // One allow rule per port: `rules` rules per family in FWS-INPUT-ALLOW.
    let full = dir.path().join("full.rhai");
    let edited = dir.path().join("edited.rhai");
    std::fs::write(&full, format!("for p in 1..={rules} {{ allow_tcp(p); }}\n")).unwrap();
    std::fs::write(
        &edited,
        format!(
            "for p in 1..={} {{ allow_tcp(p); }}\nallow_tcp({});\n",
            rules - 1,
            rules + 1
        ),
    )
    .unwrap();

    let evaluate = median(runs, || {
        let started = Instant::now();
        let plan = script::evaluate(&full).unwrap();
        let rendered = transaction::desired(&plan);
        let elapsed = started.elapsed();
        assert!(rendered[0].rule_count() >= rules);
        elapsed
    });
    let full_plan = transaction::desired(&script::evaluate(&full).unwrap());
    let edited_plan = transaction::desired(&script::evaluate(&edited).unwrap());
    let files = full_plan
        .iter()
        .map(render::restore_file)
        .collect::<Vec<_>>();

    println!(
        "fwscript apply benchmark: {rules} rules per family, median of {runs} runs, {} cpus",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "{:<8} {:<34} {:>10} {:>10} {:>7} {:>7}",
        "backend", "operation", "fwscript", "raw", "ratio", "goal"
    );
    println!(
        "{:<8} {:<34} {:>10} {:>10} {:>7} {:>7}",
        "-",
        "evaluate + render (both families)",
        ms(evaluate),
        "",
        "",
        ""
    );

    for flavor in flavors.split(',') {
        let kind = match flavor {
            "nft" => Flavor::Nft,
            "legacy" => Flavor::Legacy,
            other => panic!("unknown flavour {other}"),
        };
        let tool = |family: Family| format!("{}-{flavor}", family.tool());

        // Cold: an empty kernel to the full ruleset.
        let cold = median(runs, || {
            let netns = Netns::new();
            let backend = Counting::new(Iptables::new(kind, Some(&netns.name)).unwrap());
            let started = Instant::now();
            run_apply(&backend, &full_plan);
            started.elapsed()
        });
        let raw_cold = median(runs, || {
            let netns = Netns::new();
            let started = Instant::now();
            for (family, file) in Family::ALL.iter().zip(&files) {
                netns.run(&format!("{}-restore", tool(*family)), &[], Some(file));
            }
            started.elapsed()
        });

        let netns = Netns::new();
        let backend = Counting::new(Iptables::new(kind, Some(&netns.name)).unwrap());
        run_apply(&backend, &full_plan);

        // No-op: in sync, so one read per family and no write.
        let writes = backend.restores.load(Ordering::Relaxed);
        let noop = median(runs, || {
            let started = Instant::now();
            run_apply(&backend, &full_plan);
            started.elapsed()
        });
        assert_eq!(
            backend.restores.load(Ordering::Relaxed),
            writes,
            "no-op wrote"
        );
        let raw_saves = median(runs, || {
            let started = Instant::now();
            for family in Family::ALL {
                netns.run(&format!("{}-save", tool(family)), &[], None);
            }
            started.elapsed()
        });

        // One-rule edit: alternate between the two scripts, one rule per
        // family changes each time.
        let mut flip = false;
        let edit = median(runs, || {
            flip = !flip;
            let target = if flip { &edited_plan } else { &full_plan };
            let started = Instant::now();
            let changes = run_apply(&backend, target);
            let elapsed = started.elapsed();
            assert_eq!(changes, 4, "one delete and one insert per family");
            elapsed
        });
        if flip {
            run_apply(&backend, &full_plan);
        }
        let raw_reload = median(runs, || {
            let started = Instant::now();
            for (family, file) in Family::ALL.iter().zip(&files) {
                netns.run(&format!("{}-restore", tool(*family)), &[], Some(file));
            }
            started.elapsed()
        });

        for (operation, ours, raw, goal) in [
            ("no-op apply / 2 saves", noop, raw_saves, 1.3),
            ("one-rule edit / full reload", edit, raw_reload, 0.6),
            ("cold apply / 2 restores", cold, raw_cold, 1.5),
        ] {
            println!(
                "{:<8} {:<34} {:>10} {:>10} {:>6.2}x {:>6.1}x",
                flavor,
                operation,
                ms(ours),
                ms(raw),
                ours.as_secs_f64() / raw.as_secs_f64(),
                goal
            );
        }
    }
    println!();
    println!(
        "fwscript times are survey + apply + verify through the library (no process start, no \
         evaluation); add the evaluate row for the end-to-end command."
    );
}

/// Survey and apply; returns the number of changes written.
fn run_apply(backend: &dyn Backend, desired: &[Ruleset]) -> usize {
    let survey = apply::survey(backend, desired.to_vec(), &KernelForms::default()).unwrap();
    apply::apply(backend, &survey).unwrap();
    survey.change_count()
}

/// Counts writes, to prove the no-op writes nothing.
struct Counting<B> {
    inner: B,
    restores: AtomicUsize,
}

impl<B> Counting<B> {
    fn new(inner: B) -> Counting<B> {
        Counting {
            inner,
            restores: AtomicUsize::new(0),
        }
    }
}

impl<B: Backend> Backend for Counting<B> {
    fn availability(&self, family: Family) -> Result<(), String> {
        self.inner.availability(family)
    }

    fn save(&self, family: Family) -> Result<String, BackendError> {
        self.inner.save(family)
    }

    fn save_counters(&self, family: Family) -> Result<String, BackendError> {
        self.inner.save_counters(family)
    }

    fn restore(&self, family: Family, input: &str) -> Result<(), BackendError> {
        self.restores.fetch_add(1, Ordering::Relaxed);
        self.inner.restore(family, input)
    }
}

fn median(runs: usize, mut measure: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..runs).map(|_| measure()).collect();
    times.sort();
    times[times.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "fws-bench-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip runs; the benchmark needs root");
        assert!(status.success(), "ip netns add {name}");
        Netns { name }
    }

    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).unwrap();
        }
        drop(pipe);
        assert!(child.wait().unwrap().success(), "{program} failed");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}
