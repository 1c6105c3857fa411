//! Watch-mode benchmark (issue 4): edit-to-kernel latency of the daemon for
//! the tutorial script, its idle memory and idle CPU. Runs the real binary
//! in a throwaway network namespace. Not a timed test: it prints figures.
//!
//! ```text
//! sudo cargo bench --bench watch
//! FWSCRIPT_BENCH_SAVES=50 FWSCRIPT_BENCH_IDLE_SECS=30 sudo -E cargo bench --bench watch
//! ```

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let saves: usize = setting("FWSCRIPT_BENCH_SAVES", 20);
    let idle_secs: u64 = setting("FWSCRIPT_BENCH_IDLE_SECS", 10);
    let netns = format!("fws-bench-watch-{}", std::process::id());
    run("ip", &["netns", "add", &netns]);
    let _cleanup = Cleanup(netns.clone());

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tutorial.rhai");
    let tutorial = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tutorial.rhai"),
    )
    .unwrap();
    std::fs::write(&script, &tutorial).unwrap();

    let mut daemon = Daemon(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                env!("CARGO_BIN_EXE_fwscript"),
                "--state-dir",
            ])
            .arg(dir.path().join("state"))
            .args(["watch", "--resync", "3600"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon"),
    );
    wait_until(&netns, "--dport 993 ");

    // Each save adds a port the kernel has not seen; the clock stops when
    // iptables-save shows it. Includes the 100 ms debounce.
    let mut latencies = Vec::new();
    for i in 0..saves {
        let port = 20_000 + i;
        let started = Instant::now();
        std::fs::write(&script, format!("{tutorial}allow_tcp({port});\n")).unwrap();
        wait_until(&netns, &format!("--dport {port} "));
        latencies.push(started.elapsed());
    }
    latencies.sort();

    // Idle: no file events, no resync due.
    std::thread::sleep(Duration::from_secs(1));
    let pid = daemon.0.id();
    let cpu_before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(idle_secs));
    let cpu_after = cpu_ticks(pid);
    let rss_kib = status_field(pid, "VmRSS:");
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let idle_cpu = (cpu_after - cpu_before) as f64 / ticks_per_sec / idle_secs as f64 * 100.0;

    println!("fwscript watch benchmark: tutorial script, {saves} saves");
    println!("| what | figure | goal |");
    println!("|---|---|---|");
    println!(
        "| edit-to-kernel latency, median (min, max) | {} ms ({}, {}) | < 500 ms |",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[0]),
        ms(latencies[latencies.len() - 1])
    );
    println!(
        "| idle resident memory | {:.1} MiB | < 15 MiB |",
        rss_kib as f64 / 1024.0
    );
    println!("| idle CPU over {idle_secs} s | {idle_cpu:.3} % | near zero |");
    daemon.0.kill().ok();
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn wait_until(netns: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", netns, "iptables-save"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never applied `{needle}`"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name: utime is 14th, stime 15th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn status_field(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(name)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn run(program: &str, args: &[&str]) {
    assert!(
        Command::new(program).args(args).status().unwrap().success(),
        "{program} {args:?}"
    );
}

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
