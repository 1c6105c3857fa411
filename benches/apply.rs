//! Whole-command benchmark (the design contract's performance section):
//! `fwscript apply SCRIPT` run as a user runs it — a process that starts,
//! evaluates, reads, diffs, writes, verifies and keeps its state records —
//! timed beside the raw iptables tools doing the same job on the same
//! firewall written by hand, in the same run, inside throwaway network
//! namespaces, for both iptables backends. Medians of several runs, each
//! fwscript run and its raw counterpart taken one after the other so a busy
//! machine slows both alike; peak memory from the child's rusage. Not a
//! timed test: it prints a table (markdown, ready for the README).
//!
//! ```text
//! sudo cargo bench --bench apply
//! FWSCRIPT_BENCH_RULES=2000 FWSCRIPT_BENCH_RUNS=3 FWSCRIPT_BENCH_FLAVORS=nft \
//!     FWSCRIPT_BENCH_ONLY=ports sudo -E cargo bench --bench apply
//! ```
//!
//! `FWSCRIPT_BENCH_STATE` puts the state folders under another folder (the
//! default is a temporary folder on the disk of `/var/tmp`, as
//! `/var/lib/fwscript` would be: its fsyncs are part of the cost).
//! `FWSCRIPT_BENCH_BIN` times another `fwscript` binary (an older build,
//! to compare) instead of the one cargo built.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let settings = Settings::from_env();
    let work = tempfile::Builder::new()
        .prefix("fwscript-bench-")
        .tempdir_in(&settings.state_parent)
        .expect("a folder for scripts and state");
    println!(
        "fwscript whole-command benchmark: {} rules, median of {} runs, {} cpus, {}, {}",
        settings.rules,
        settings.runs,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        tool_version(),
        settings.binary.display(),
    );
    println!();
    println!(
        "| scenario | backend | operation | fwscript | raw tools | ratio | goal | fwscript peak memory |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let scenarios = rule_scenarios(settings.rules)
        .into_iter()
        .chain(blocklist_scenarios())
        .filter(|s| s.name.contains(settings.only.as_str()));
    for scenario in scenarios {
        let files = scenario.write(work.path());
        for flavor in &settings.flavors {
            for row in &scenario.rows {
                let measured = measure(&settings, &scenario, &files, *flavor, row);
                println!(
                    "| {} | {} | {} | {} | {} | {:.2}× | ≤ {}× | {} |",
                    scenario.name,
                    flavor.label(),
                    row.label(&measured),
                    ms(measured.ours),
                    ms(measured.raw),
                    measured.ours.as_secs_f64() / measured.raw.as_secs_f64(),
                    row.goal,
                    mib(measured.ours_peak_kib),
                );
            }
        }
    }
    println!();
    println!(
        "fwscript: `fwscript --state-dir DIR apply SCRIPT` as a process in the namespace. raw: the \
         same firewall as an admin would write it (one rule per source or port, no comments, \
         straight in INPUT), run through `iptables-*` and `ip6tables-*` one after the other."
    );
}

/// The firewalls measured: 10,000 rules that cannot become one set.
fn rule_scenarios(rules: usize) -> Vec<Scenario> {
    let source = |i: usize| format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    let sources = Scenario {
        name: format!("{} sources", thousands(rules)),
        // Both scripts the same lines, so only the rule differs.
        script: format!(
            "for i in 0..{rules} {{\n    allow_tcp([22], #{{ from: `10.${{i / 65536}}.${{i / 256 % 256}}.${{i % 256}}` }});\n}}\n"
        ),
        // The same loop with one more source half way.
        edited: format!(
            "for i in 0..{rules} {{\n    allow_tcp([22], #{{ from: `10.${{i / 65536}}.${{i / 256 % 256}}.${{i % 256}}` }});\n    if i == {} {{ allow_tcp([22], #{{ from: \"192.0.2.1\" }}); }}\n}}\n",
            rules / 2
        ),
        hand: [
            by_hand(Family::V4, (0..rules).map(|i| format!("-s {}/32 -p tcp -m tcp --dport 22", source(i)))),
            by_hand(Family::V6, std::iter::empty()),
        ],
        hand_edited: [
            by_hand(
                Family::V4,
                (0..rules).flat_map(|i| {
                    let mut lines = vec![format!("-s {}/32 -p tcp -m tcp --dport 22", source(i))];
                    if i == rules / 2 {
                        lines.push("-s 192.0.2.1/32 -p tcp -m tcp --dport 22".into());
                    }
                    lines
                }),
            ),
            by_hand(Family::V6, std::iter::empty()),
        ],
        rows: standard_rows(),
    };
    let ports = Scenario {
        name: format!("{} ports", thousands(rules)),
        script: format!("for p in 1..={rules} {{\n    allow_tcp(p);\n}}\n"),
        // One more port half way: IPv4 and IPv6 both change.
        edited: format!(
            "for p in 1..={rules} {{\n    allow_tcp(p);\n    if p == {} {{ allow_tcp(60001); }}\n}}\n",
            rules / 2
        ),
        hand: Family::ALL.map(|family| {
            by_hand(family, (1..=rules).map(|p| format!("-p tcp -m tcp --dport {p}")))
        }),
        hand_edited: Family::ALL.map(|family| {
            by_hand(
                family,
                (1..=rules).flat_map(|p| {
                    let mut lines = vec![format!("-p tcp -m tcp --dport {p}")];
                    if p == rules / 2 {
                        lines.push("-p tcp -m tcp --dport 60001".into());
                    }
                    lines
                }),
            )
        }),
        rows: standard_rows(),
    };
    vec![sources, ports]
}

/// The 100,000-address blocklist (`block(address_list(…))`, kept in an
/// ipset) goes here once sets exist: cold apply against `ipset restore` of
/// the same entries (≤ 1.5×), the no-op against `ipset save` plus both
/// `*-save` (≤ 1.5×), one address added and one removed against the no-op
/// apply (≤ 1.3×), and peak memory under 128 MiB. Those compare with other
/// raw commands than the rule scenarios: add them as [`Raw`] variants.
fn blocklist_scenarios() -> Vec<Scenario> {
    Vec::new()
}

/// The three goals of a firewall of rules (the issue's table).
fn standard_rows() -> Vec<Row> {
    vec![
        Row {
            ours: Ours::Noop,
            raw: Raw::Saves,
            goal: 1.3,
        },
        Row {
            ours: Ours::NoopAfterNeighbour,
            raw: Raw::Saves,
            goal: 1.3,
        },
        Row {
            ours: Ours::Edit,
            raw: Raw::Reload,
            goal: 0.6,
        },
        Row {
            ours: Ours::Cold,
            raw: Raw::Restore,
            goal: 1.5,
        },
    ]
}

/// The firewall of `rules` (match specs) as an admin would write it: the
/// policies and the baseline fwscript gives every script, then one rule
/// per line, straight in INPUT, no comments.
fn by_hand(family: Family, rules: impl Iterator<Item = String>) -> String {
    let icmp: &[&str] = match family {
        Family::V4 => &[
            "-p icmp -m icmp --icmp-type destination-unreachable",
            "-p icmp -m icmp --icmp-type time-exceeded",
        ],
        Family::V6 => &[
            "-p ipv6-icmp -m icmp6 --icmpv6-type destination-unreachable",
            "-p ipv6-icmp -m icmp6 --icmpv6-type packet-too-big",
            "-p ipv6-icmp -m icmp6 --icmpv6-type time-exceeded",
            "-p ipv6-icmp -m icmp6 --icmpv6-type router-solicitation",
            "-p ipv6-icmp -m icmp6 --icmpv6-type router-advertisement",
            "-p ipv6-icmp -m icmp6 --icmpv6-type neighbour-solicitation",
            "-p ipv6-icmp -m icmp6 --icmpv6-type neighbour-advertisement",
        ],
    };
    let mut text = String::from(
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -i lo -j ACCEPT\n\
         -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A INPUT -m conntrack --ctstate INVALID -j DROP\n",
    );
    for spec in icmp.iter().map(|s| s.to_string()).chain(rules) {
        text.push_str(&format!("-A INPUT {spec} -j ACCEPT\n"));
    }
    text.push_str(
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n",
    );
    text
}

struct Scenario {
    name: String,
    /// The script, and the same script with one rule more.
    script: String,
    edited: String,
    /// The same firewall by hand, as iptables-restore files (IPv4, IPv6),
    /// and the edited one.
    hand: [String; 2],
    hand_edited: [String; 2],
    rows: Vec<Row>,
}

/// Where a scenario's files are on disk.
struct Files {
    script: PathBuf,
    edited: PathBuf,
    hand: [PathBuf; 2],
    hand_edited: [PathBuf; 2],
    folder: PathBuf,
}

impl Scenario {
    fn write(&self, parent: &Path) -> Files {
        let folder = parent.join(self.name.replace([' ', ','], "-"));
        std::fs::create_dir_all(&folder).unwrap();
        let put = |name: &str, text: &str| {
            let path = folder.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        Files {
            script: put("fw.rhai", &self.script),
            edited: put("edited.rhai", &self.edited),
            hand: [put("hand.v4", &self.hand[0]), put("hand.v6", &self.hand[1])],
            hand_edited: [
                put("hand-edited.v4", &self.hand_edited[0]),
                put("hand-edited.v6", &self.hand_edited[1]),
            ],
            folder,
        }
    }
}

/// One line of the goals table: what is timed of fwscript, against what of
/// the raw tools, and the ratio to stay under.
struct Row {
    ours: Ours,
    raw: Raw,
    goal: f64,
}

#[derive(Clone, Copy)]
enum Ours {
    /// `apply` on an empty kernel with an empty state folder.
    Cold,
    /// `apply` of the script already applied.
    Noop,
    /// The same, each time after a neighbour's commit (a chain of its own
    /// made and removed): on nf_tables the read kept by the last apply no
    /// longer holds, and the kernel is read.
    NoopAfterNeighbour,
    /// `apply` of the script with one rule more, then of the script again,
    /// alternately: each run adds or removes one rule.
    Edit,
}

#[derive(Clone, Copy)]
enum Raw {
    /// `*-restore` of the hand-written files into an empty kernel.
    Restore,
    /// `*-save` of both families, of the hand-written firewall.
    Saves,
    /// A full `*-restore` (no `--noflush`) of the hand-written files that
    /// the edit changes, alternately the edited and the first ones.
    Reload,
}

impl Row {
    fn label(&self, measured: &Measured) -> String {
        let ours = match self.ours {
            Ours::Cold => "cold apply".to_string(),
            Ours::Noop => "no-op apply".to_string(),
            Ours::NoopAfterNeighbour => "no-op apply after a neighbour's commit".to_string(),
            Ours::Edit => format!("one-rule edit ({})", measured.changes),
        };
        let raw = match self.raw {
            Raw::Restore => "`*-restore` of the rules by hand",
            Raw::Saves => "`iptables-save` + `ip6tables-save`",
            Raw::Reload => "full `*-restore` of the edited rules by hand",
        };
        format!("{ours} vs. {raw}")
    }
}

struct Measured {
    ours: Duration,
    raw: Duration,
    ours_peak_kib: u64,
    /// What fwscript said it changed, for the edit.
    changes: String,
}

fn measure(
    settings: &Settings,
    scenario: &Scenario,
    files: &Files,
    flavor: Flavor,
    row: &Row,
) -> Measured {
    let state_dirs = AtomicUsize::new(0);
    let fresh_state = || {
        files.folder.join(format!(
            "state-{}",
            state_dirs.fetch_add(1, Ordering::Relaxed)
        ))
    };
    let fwscript = |netns: &Netns, state: &Path, script: &Path| {
        let run = netns.run(
            &settings.binary,
            &[
                "--state-dir".as_ref(),
                state.as_os_str(),
                "apply".as_ref(),
                script.as_os_str(),
            ],
            None,
            flavor,
        );
        assert!(run.ok, "fwscript apply failed:\n{}", run.stderr);
        run
    };
    // The families whose hand-written file the edit changes.
    let edited_families: Vec<usize> = (0..2)
        .filter(|&f| scenario.hand[f] != scenario.hand_edited[f])
        .collect();
    let mut ours = Vec::new();
    let mut raw = Vec::new();
    let mut peaks = Vec::new();
    let mut changes = Vec::new();
    match (row.ours, row.raw) {
        (Ours::Cold, Raw::Restore) => {
            for _ in 0..settings.runs {
                let netns = Netns::new();
                let run = fwscript(&netns, &fresh_state(), &files.script);
                ours.push(run.elapsed);
                peaks.push(run.peak_kib);
                let netns = Netns::new();
                raw.push(restore(&netns, flavor, &files.hand, &[0, 1], true));
            }
        }
        (Ours::Noop | Ours::NoopAfterNeighbour, Raw::Saves) => {
            let (mine, state) = (Netns::new(), fresh_state());
            fwscript(&mine, &state, &files.script);
            let theirs = Netns::new();
            restore(&theirs, flavor, &files.hand, &[0, 1], true);
            for _ in 0..settings.runs {
                if matches!(row.ours, Ours::NoopAfterNeighbour) {
                    let neighbour = flavor.tool(Family::V4, "restore");
                    let input = files.folder.join("neighbour.v4");
                    std::fs::write(
                        &input,
                        "*filter\n:neighbour - [0:0]\n-X neighbour\nCOMMIT\n",
                    )
                    .unwrap();
                    let made = mine.run(&neighbour, &["--noflush".as_ref()], Some(&input), flavor);
                    assert!(made.ok, "{}", made.stderr);
                }
                let run = fwscript(&mine, &state, &files.script);
                assert!(run.stdout.contains("no changes"), "{}", run.stdout);
                ours.push(run.elapsed);
                peaks.push(run.peak_kib);
                let mut elapsed = Duration::ZERO;
                for family in Family::ALL {
                    let save = theirs.run(&flavor.tool(family, "save"), &[], None, flavor);
                    assert!(save.ok, "{}", save.stderr);
                    elapsed += save.elapsed;
                }
                raw.push(elapsed);
            }
        }
        (Ours::Edit, Raw::Reload) => {
            let (mine, state) = (Netns::new(), fresh_state());
            fwscript(&mine, &state, &files.script);
            let theirs = Netns::new();
            restore(&theirs, flavor, &files.hand, &[0, 1], true);
            for run in 0..settings.runs {
                let (script, hand) = match run % 2 {
                    0 => (&files.edited, &files.hand_edited),
                    _ => (&files.script, &files.hand),
                };
                let done = fwscript(&mine, &state, script);
                ours.push(done.elapsed);
                peaks.push(done.peak_kib);
                changes.push(last_line(&done.stdout));
                raw.push(restore(&theirs, flavor, hand, &edited_families, false));
            }
        }
        _ => unreachable!("no such row"),
    }
    changes.sort();
    changes.dedup();
    Measured {
        ours: median(ours),
        raw: median(raw),
        ours_peak_kib: median(peaks),
        changes: changes.join("; "),
    }
}

/// Runs `*-restore` of the given families' files, one after the other;
/// `noflush: false` replaces the tables (a reload).
fn restore(
    netns: &Netns,
    flavor: Flavor,
    files: &[PathBuf; 2],
    which: &[usize],
    noflush: bool,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    for &index in which {
        let family = Family::ALL[index];
        let args: &[&std::ffi::OsStr] = match noflush {
            true => &["--noflush".as_ref()],
            false => &[],
        };
        let run = netns.run(
            &flavor.tool(family, "restore"),
            args,
            Some(&files[index]),
            flavor,
        );
        assert!(run.ok, "restore failed: {}", run.stderr);
        elapsed += run.elapsed;
    }
    elapsed
}

fn last_line(stdout: &str) -> String {
    stdout.lines().last().unwrap_or("").trim().to_string()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Nft,
    Legacy,
}

impl Flavor {
    fn label(self) -> &'static str {
        match self {
            Flavor::Nft => "nf_tables",
            Flavor::Legacy => "legacy",
        }
    }

    fn tool(self, family: Family, verb: &str) -> PathBuf {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let flavor = match self {
            Flavor::Nft => "nft",
            Flavor::Legacy => "legacy",
        };
        PathBuf::from(format!("/usr/sbin/{base}-{flavor}-{verb}"))
    }
}

#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

impl Family {
    const ALL: [Family; 2] = [Family::V4, Family::V6];
}

struct Settings {
    rules: usize,
    runs: usize,
    flavors: Vec<Flavor>,
    only: String,
    state_parent: PathBuf,
    binary: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let flavors = std::env::var("FWSCRIPT_BENCH_FLAVORS")
            .unwrap_or_else(|_| "nft,legacy".into())
            .split(',')
            .map(|name| match name.trim() {
                "nft" => Flavor::Nft,
                "legacy" => Flavor::Legacy,
                other => panic!("unknown backend `{other}`: nft or legacy"),
            })
            .collect();
        Settings {
            rules: number("FWSCRIPT_BENCH_RULES", 10_000),
            runs: number("FWSCRIPT_BENCH_RUNS", 5).max(1),
            flavors,
            only: std::env::var("FWSCRIPT_BENCH_ONLY").unwrap_or_default(),
            state_parent: std::env::var_os("FWSCRIPT_BENCH_STATE")
                .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from),
            binary: std::env::var_os("FWSCRIPT_BENCH_BIN").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_fwscript")),
                PathBuf::from,
            ),
        }
    }
}

/// What one process did: wall time from spawn to exit, peak resident
/// memory (`ru_maxrss` of the child and the children it waited for).
struct Run {
    ok: bool,
    elapsed: Duration,
    peak_kib: u64,
    stdout: String,
    stderr: String,
}

/// A throwaway network namespace, deleted on drop.
struct Netns {
    name: String,
    handle: File,
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
        assert!(
            status.success(),
            "ip netns add {name}: the benchmark needs root"
        );
        let handle = File::open(format!("/run/netns/{name}")).unwrap();
        Netns { name, handle }
    }

    /// Runs `program` inside the namespace: the child enters it before
    /// exec (no `ip netns exec` in between, whose own start would be timed).
    fn run(
        &self,
        program: &Path,
        args: &[&std::ffi::OsStr],
        stdin: Option<&Path>,
        flavor: Flavor,
    ) -> Run {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(match stdin {
                Some(path) => Stdio::from(File::open(path).unwrap()),
                None => Stdio::null(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Not the lockout guard of whoever runs the benchmark.
            .env_remove("SSH_CONNECTION")
            .env_remove("SSH_CLIENT")
            .env_remove("FWSCRIPT_IPTABLES");
        if flavor == Flavor::Legacy {
            // nf_tables is the host's own: fwscript finds it as a user's
            // would; legacy has to be asked for.
            command.env("FWSCRIPT_IPTABLES", "legacy");
        }
        let fd = self.handle.as_raw_fd();
        // SAFETY: setns is async-signal-safe and touches only the child.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        // Reaped below by wait4, which also gives its rusage.
        #[allow(clippy::zombie_processes)]
        let mut child = command.spawn().unwrap();
        let mut err_pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            err_pipe.read_to_string(&mut text).unwrap();
            text
        });
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it for our child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for the child just spawned, which nothing else reaps.
        let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        let elapsed = started.elapsed();
        assert_eq!(pid, child.id() as i32, "wait4");
        Run {
            ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            elapsed,
            peak_kib: usage.ru_maxrss as u64,
            stdout,
            stderr: stderr.join().unwrap(),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn tool_version() -> String {
    Command::new("/usr/sbin/iptables-nft")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn median<T: Ord + Copy>(mut values: Vec<T>) -> T {
    values.sort();
    values[values.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn thousands(n: usize) -> String {
    match n {
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}
