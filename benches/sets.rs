//! Set benchmark (the design contract's performance goals for large address
//! lists): `fwscript apply` of a script that blocks a 100,000-address list,
//! run as a user runs it (the release binary, inside a throwaway network
//! namespace), beside the raw tools in the same run. Not a timed test: it
//! prints a table of medians.
//!
//! ```text
//! sudo cargo bench --bench sets
//! FWSCRIPT_BENCH_ADDRESSES=20000 FWSCRIPT_BENCH_RUNS=3 FWSCRIPT_BENCH_FLAVORS=nft,legacy sudo -E cargo bench --bench sets
//! ```
//!
//! | figure | compared with | goal |
//! |---|---|---|
//! | cold apply | `ipset restore` of the same entries | ≤ 1.5× |
//! | no-op apply | `ipset save` + `iptables-save` + `ip6tables-save` | ≤ 1.5× |
//! | one address added, one removed | the no-op apply | ≤ 1.3× |
//! | peak memory of apply | — | < 128 MiB |

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FWSCRIPT: &str = env!("CARGO_BIN_EXE_fwscript");

fn main() {
    let addresses: usize = setting("FWSCRIPT_BENCH_ADDRESSES", 100_000);
    let runs: usize = setting("FWSCRIPT_BENCH_RUNS", 7);
    let flavors = std::env::var("FWSCRIPT_BENCH_FLAVORS").unwrap_or_else(|_| "nft".into());
    if !rustix::process::geteuid().is_root() {
        eprintln!("the set benchmark needs root (network namespaces); skipped");
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let lists = dir.path().join("lists");
    std::fs::create_dir(&lists).unwrap();
    let entries = distinct_addresses(addresses + 2);
    let (base, extra) = entries.split_at(addresses);
    let list = |extra: &str| -> String {
        let mut text: String = base.iter().map(|a| format!("{a}\n")).collect();
        text.push_str(extra);
        text.push('\n');
        text
    };
    // Two versions of the list, each one address added and one removed
    // from the other.
    let versions = [list(&extra[0]), list(&extra[1])];
    let blocklist = lists.join("blocklist.txt");
    let script = dir.path().join("fw.rhai");
    std::fs::write(
        &script,
        "allow_tcp(22);\nblock(address_list(\"lists/blocklist.txt\"));\n",
    )
    .unwrap();
    // What a user would load by hand: the same entries, in a set of the
    // size the kernel grows it to (as `ipset save` prints it after
    // loading), and in a plain `create NAME hash:net`.
    let raw = |header: &str| -> PathBuf {
        let path = dir.path().join(format!("raw-{}.ipset", header.len()));
        let mut text = format!("create raw hash:net family inet{header}\n");
        for address in base.iter().chain(&extra[..1]) {
            text.push_str(&format!("add raw {address}\n"));
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    let raw_sized = raw(&format!(
        " hashsize {} maxelem {}",
        (addresses + 1).div_ceil(2).next_power_of_two().max(1024),
        (2 * (addresses + 1)).next_power_of_two().max(65_536)
    ));
    let raw_plain = raw(&format!(
        " maxelem {}",
        (2 * (addresses + 1)).next_power_of_two().max(65_536)
    ));

    println!(
        "fwscript set benchmark: a {addresses}-address blocklist, median of {runs} runs, {} cpus",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "{:<7} {:<40} {:>10} {:>10} {:>7} {:>7} {:>9}",
        "backend", "operation", "fwscript", "raw", "ratio", "goal", "fastest"
    );
    for flavor in flavors.split(',') {
        let netns = Netns::new(flavor);
        let state = dir.path().join(format!("state-{flavor}"));
        let apply = |expect: &str| -> (Duration, u64) {
            std::fs::write(&blocklist, &versions[0]).unwrap();
            netns.fwscript(flavor, &state, &script, expect)
        };

        // Cold: a fresh namespace and state folder every run, the raw
        // loads in between, so a busy machine weighs on both alike.
        let mut cold = Vec::new();
        let mut peak = 0;
        let mut raw_cold = Vec::new();
        let mut raw_cold_plain = Vec::new();
        for _ in 0..runs {
            netns.reset();
            let _ = std::fs::remove_dir_all(&state);
            let (took, memory) = apply("applied");
            cold.push(took);
            peak = peak.max(memory);
            for (file, times) in [
                (&raw_sized, &mut raw_cold),
                (&raw_plain, &mut raw_cold_plain),
            ] {
                netns.sh("ipset destroy raw 2>/dev/null; true");
                let started = Instant::now();
                netns.sh(&format!("ipset restore < {}", file.display()));
                times.push(started.elapsed());
            }
        }
        netns.sh("ipset destroy raw");
        row(flavor, "cold apply", &cold, Some(&raw_cold), Some(1.5));
        row(
            flavor,
            "  (raw: a plain `create NAME hash:net`)",
            &cold,
            Some(&raw_cold_plain),
            None,
        );

        // No-op: the kernel already holds the script.
        let mut noop = Vec::new();
        let mut raw_read = Vec::new();
        for _ in 0..runs {
            let (took, memory) = apply("no changes");
            noop.push(took);
            peak = peak.max(memory);
            let started = Instant::now();
            netns.sh(&format!(
                "ipset save >/dev/null; iptables-{flavor}-save >/dev/null; ip6tables-{flavor}-save >/dev/null"
            ));
            raw_read.push(started.elapsed());
        }
        row(flavor, "no-op apply", &noop, Some(&raw_read), Some(1.5));

        // One address added and one removed, alternating between the two
        // lists; the no-op runs between them are the comparison.
        let mut edit = Vec::new();
        let mut noop_between = Vec::new();
        for run in 0..runs {
            std::fs::write(&blocklist, &versions[(run + 1) % 2]).unwrap();
            let (took, memory) = netns.fwscript(flavor, &state, &script, "applied 1 change");
            edit.push(took);
            peak = peak.max(memory);
            noop_between.push(netns.fwscript(flavor, &state, &script, "no changes").0);
        }
        row(
            flavor,
            "one address added, one removed",
            &edit,
            Some(&noop_between),
            Some(1.3),
        );
        println!(
            "{flavor:<7} {:<40} {:>10} {:>10} {:>7} {:>7}",
            "peak memory of apply",
            format!("{:.0} MiB", peak as f64 / 1024.0),
            "",
            "",
            "128 MiB"
        );
    }
}

/// Medians, and the ratio of the fastest runs too: on a machine shared
/// with other work the median carries its noise, the fastest run less.
fn row(flavor: &str, what: &str, ours: &[Duration], raw: Option<&[Duration]>, goal: Option<f64>) {
    let ratio = |a: Duration, b: Duration| format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64());
    let fastest = |times: &[Duration]| times.iter().copied().min().unwrap_or_default();
    println!(
        "{flavor:<7} {what:<40} {:>10} {:>10} {:>7} {:>7} {:>9}",
        ms(median(ours)),
        raw.map(|r| ms(median(r))).unwrap_or_default(),
        raw.map(|r| ratio(median(ours), median(r)))
            .unwrap_or_default(),
        goal.map(|g| format!("<={g}x")).unwrap_or_default(),
        raw.map(|r| ratio(fastest(ours), fastest(r)))
            .unwrap_or_default(),
    );
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `count` distinct IPv4 host addresses, spread over the address space
/// like a real blocklist, the same on every run.
fn distinct_addresses(count: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let addr = (state >> 16) as u32;
        let first = (addr >> 24) as u8;
        if first == 0 || first >= 224 || first == 127 || !seen.insert(addr) {
            continue;
        }
        out.push(std::net::Ipv4Addr::from(addr).to_string());
    }
    out
}

/// A network namespace for one backend, deleted when dropped.
struct Netns {
    name: String,
}

impl Netns {
    fn new(flavor: &str) -> Netns {
        let netns = Netns {
            name: format!("fws-bench-sets-{flavor}-{}", std::process::id()),
        };
        netns.reset();
        netns
    }

    /// A fresh, empty namespace under the same name.
    fn reset(&self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stderr(Stdio::null())
            .status();
        let made = Command::new("ip")
            .args(["netns", "add", &self.name])
            .status()
            .unwrap();
        assert!(made.success(), "cannot make a network namespace");
    }

    fn sh(&self, command: &str) {
        let status = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", command])
            .status()
            .unwrap();
        assert!(status.success(), "{command}");
    }

    /// Runs `fwscript apply` as a user does, timed; with its peak resident
    /// memory in KiB (`/usr/bin/time`, which adds a little of its own).
    fn fwscript(&self, flavor: &str, state: &Path, script: &Path, expect: &str) -> (Duration, u64) {
        let started = Instant::now();
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "/usr/bin/time", "-f", "%M"])
            .arg(FWSCRIPT)
            .arg("apply")
            .arg("--state-dir")
            .arg(state)
            .arg(script)
            .env("FWSCRIPT_IPTABLES", flavor)
            .current_dir(script.parent().unwrap())
            .output()
            .unwrap();
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains(expect),
            "expected `{expect}`:\n{stdout}\n{stderr}"
        );
        let memory = stderr
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        (took, memory)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}
