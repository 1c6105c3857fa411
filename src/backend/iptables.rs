//! The real kernel (backend ↔ **iptables tools**): one `*-save` per family
//! to read, one `*-restore --noflush --wait` per family to write, with the
//! binaries of the iptables backend (nf_tables or legacy) the host uses,
//! optionally inside a network namespace.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{list_from_save, Backend, BackendError};
use crate::env::{self, DEFAULT_LOCK_WAIT};
use crate::netfilter::{Family, Table};

/// Which kernel interface the iptables tools drive. Rules written through
/// one are invisible to the other, so fwscript uses whichever `iptables`
/// itself uses on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Nft,
    Legacy,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Nft => "nft",
            Flavor::Legacy => "legacy",
        }
    }

    /// Reads the flavour from the names `iptables` links to, as
    /// alternatives and packages install it: `iptables-nft`,
    /// `xtables-legacy-multi`, … Saves running `iptables --version` at
    /// every start; `None` when no name says (a plain binary, a wrapper).
    pub fn from_links(iptables: &Path) -> Option<Flavor> {
        let mut path = iptables.to_path_buf();
        // Alternatives make two or three hops; a loop ends here too.
        for _ in 0..8 {
            let target = std::fs::read_link(&path).ok()?;
            let name = target.file_name()?.to_string_lossy();
            if name.contains("-nft") {
                return Some(Flavor::Nft);
            }
            if name.contains("-legacy") {
                return Some(Flavor::Legacy);
            }
            path = match path.parent() {
                Some(folder) => folder.join(target),
                None => target,
            };
        }
        None
    }

    /// Reads the flavour from `iptables --version`: `iptables v1.8.9
    /// (nf_tables)` or `(legacy)`; before 1.8 there was only legacy.
    pub fn from_version(version: &str) -> Flavor {
        if version.contains("nf_tables") {
            Flavor::Nft
        } else {
            Flavor::Legacy
        }
    }
}

/// A save of 100,000 rules with comments takes ~11 s on nf_tables
/// (docs/design.md); beyond this the tool is stuck, not slow.
const TOOL_LIMIT: Duration = Duration::from_secs(120);
/// A look that only feeds a warning: not worth waiting long for.
const LOOK_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Iptables {
    flavor: Flavor,
    netns: Option<String>,
    lock_wait: Duration,
    ipv4: Tools,
    /// `Err(reason)` when this host cannot do IPv6.
    ipv6: Result<Tools, String>,
    /// `None` when this host has no ipset tool: only a script with sets
    /// needs one.
    ipset: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct Tools {
    save: PathBuf,
    restore: PathBuf,
    /// `iptables` itself, for listing one chain; without it a chain is
    /// cut out of a whole save.
    list: Option<PathBuf>,
}

impl Iptables {
    /// Finds the tools of the flavour this host uses. With `netns`, every
    /// command runs as `ip netns exec NETNS …`.
    pub fn detect(netns: Option<&str>) -> Result<Iptables, BackendError> {
        let flavor = match std::env::var(env::IPTABLES).ok().as_deref() {
            Some("nft") => Flavor::Nft,
            Some("legacy") => Flavor::Legacy,
            Some(other) => {
                return Err(BackendError::Failed {
                    tool: env::IPTABLES.to_string(),
                    message: format!("`{other}` is neither `nft` nor `legacy`"),
                })
            }
            None => {
                let iptables = find("iptables").ok_or_else(|| BackendError::NotFound {
                    tool: "iptables".into(),
                })?;
                match Flavor::from_links(&iptables) {
                    Some(flavor) => flavor,
                    None => {
                        Flavor::from_version(&run(&iptables, &["--version"], None, TOOL_LIMIT)?)
                    }
                }
            }
        };
        let lock_wait = env::lock_wait().map_err(|message| BackendError::Failed {
            tool: env::LOCK_WAIT.to_string(),
            message,
        })?;
        Ok(Iptables::new(flavor, netns)?.with_lock_wait(lock_wait))
    }

    /// The tools of `flavor`, whatever this host uses by default.
    pub fn new(flavor: Flavor, netns: Option<&str>) -> Result<Iptables, BackendError> {
        let ipv4 =
            Tools::find(Family::Ipv4, flavor).map_err(|tool| BackendError::NotFound { tool })?;
        let ipv6 = if Path::new("/proc/sys/net/ipv6").exists() {
            Tools::find(Family::Ipv6, flavor).map_err(|tool| format!("`{tool}` is not installed"))
        } else {
            Err("IPv6 is disabled in this kernel".to_string())
        };
        let ipset = match std::env::var_os(env::IPSET) {
            Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
            None => find(super::IPSET),
        };
        Ok(Iptables {
            flavor,
            netns: netns.map(str::to_string),
            lock_wait: DEFAULT_LOCK_WAIT,
            ipv4,
            ipv6,
            ipset,
        })
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    pub fn with_lock_wait(mut self, wait: Duration) -> Iptables {
        self.lock_wait = wait;
        self
    }

    fn ipset(&self) -> Result<&Path, BackendError> {
        self.ipset.as_deref().ok_or_else(|| BackendError::NotFound {
            tool: super::IPSET.to_string(),
        })
    }

    fn tools(&self, family: Family) -> Result<&Tools, BackendError> {
        match family {
            Family::Ipv4 => Ok(&self.ipv4),
            Family::Ipv6 => self.ipv6.as_ref().map_err(|reason| BackendError::Failed {
                tool: "ip6tables".into(),
                message: reason.clone(),
            }),
        }
    }

    /// Runs `program args` here or inside the namespace.
    fn run(
        &self,
        program: &Path,
        args: &[&str],
        stdin: Option<&str>,
        limit: Duration,
    ) -> Result<String, BackendError> {
        match &self.netns {
            None => run(program, args, stdin, limit),
            Some(netns) => {
                let program = program.to_string_lossy();
                let mut all = vec!["netns", "exec", netns, &program];
                all.extend_from_slice(args);
                let ip = find("ip").ok_or_else(|| BackendError::NotFound { tool: "ip".into() })?;
                run(&ip, &all, stdin, limit).map_err(|e| match e {
                    // Name the tool, not `ip`.
                    BackendError::Failed { message, .. } => BackendError::Failed {
                        tool: tool_name(Path::new(&*program)),
                        message,
                    },
                    other => other,
                })
            }
        }
    }
}

impl Tools {
    fn find(family: Family, flavor: Flavor) -> Result<Tools, String> {
        let tool = family.tool();
        let pick = |verb: &str| {
            let flavored = format!("{tool}-{}-{verb}", flavor.name());
            // Older and minimal installs have only the plain name, which is
            // whatever `iptables` itself is.
            find(&flavored)
                .or_else(|| find(&format!("{tool}-{verb}")))
                .ok_or(flavored)
        };
        Ok(Tools {
            save: pick("save")?,
            restore: pick("restore")?,
            list: find(&format!("{tool}-{}", flavor.name())).or_else(|| find(tool)),
        })
    }
}

impl Backend for Iptables {
    fn availability(&self, family: Family) -> Result<(), String> {
        match family {
            Family::Ipv4 => Ok(()),
            Family::Ipv6 => self.ipv6.as_ref().map(|_| ()).map_err(Clone::clone),
        }
    }

    fn save(&self, family: Family) -> Result<String, BackendError> {
        let tools = self.tools(family)?;
        self.run(&tools.save, &[], None, TOOL_LIMIT)
    }

    fn save_counters(&self, family: Family) -> Result<String, BackendError> {
        let tools = self.tools(family)?;
        self.run(&tools.save, &["-c"], None, TOOL_LIMIT)
    }

    /// nf_tables has one; legacy's tables have none, and a namespace of
    /// `ip netns exec` is not the one this process would ask.
    fn generation(&self) -> Option<super::Generation> {
        match (self.flavor, &self.netns) {
            (Flavor::Nft, None) => super::generation::current(),
            _ => None,
        }
    }

    fn restore(&self, family: Family, input: &str) -> Result<(), BackendError> {
        let tools = self.tools(family)?;
        let wait = self.lock_wait.as_secs().max(1).to_string();
        let args = ["--noflush", "--wait", &wait];
        let limit = self.lock_wait + TOOL_LIMIT;
        match self.run(&tools.restore, &args, Some(input), limit) {
            Ok(_) => Ok(()),
            Err(BackendError::Failed { tool, message }) => {
                Err(classify_failure(tool, &message, input, self.lock_wait))
            }
            Err(other) => Err(other),
        }
    }

    /// nf_tables lists one chain alone (4 ms for 300 rules of a
    /// 10,000-rule table, whose save takes 85 ms). Legacy reads the whole
    /// table for every listing and takes the xtables lock to do it, so
    /// listings queue behind each other, while its save is quick anyway
    /// (10 ms for 10,000 rules).
    fn lists_chains_cheaply(&self) -> bool {
        self.flavor == Flavor::Nft
    }

    fn legacy_save(&self, family: Family) -> Option<String> {
        // Inside another namespace (`try`) this process's /proc is not
        // that namespace's.
        if self.flavor != Flavor::Nft || self.netns.is_some() {
            return None;
        }
        // The tables x_tables has made in this namespace: read before any
        // process is started, so a host without legacy tables pays nothing.
        let names = match family {
            Family::Ipv4 => "/proc/net/ip_tables_names",
            Family::Ipv6 => "/proc/net/ip6_tables_names",
        };
        if std::fs::read_to_string(names).ok()?.trim().is_empty() {
            return None;
        }
        let tool = find(&format!("{}-legacy-save", family.tool()))?;
        run(&tool, &[], None, LOOK_LIMIT).ok()
    }

    fn nft_chains(&self) -> Option<(String, bool)> {
        if self.netns.is_some() {
            return None;
        }
        let iptables_uses_nft = self.flavor == Flavor::Nft;
        // Starting nft costs milliseconds; asking the kernel for its tables
        // costs a fraction of one. Only another program's table is worth it.
        if let Some(tables) = super::generation::tables() {
            let others = tables.iter().any(|(family, name)| {
                crate::nft_tables::another_programs(family, name, iptables_uses_nft)
            });
            if !others {
                return None;
            }
        }
        let nft = find("nft")?;
        let json = run(&nft, &["-j", "list", "chains"], None, LOOK_LIMIT).ok()?;
        Some((json, iptables_uses_nft))
    }

    fn nft_table(&self, family: &str, name: &str) -> Option<String> {
        if self.netns.is_some() {
            return None;
        }
        let nft = find("nft")?;
        // `-t`: sets without their elements (a blocklist set holds MBs).
        run(
            &nft,
            &["-j", "-t", "list", "table", family, name],
            None,
            LOOK_LIMIT,
        )
        .ok()
    }

    fn list_chain(
        &self,
        family: Family,
        table: Table,
        chain: &str,
    ) -> Result<Option<String>, BackendError> {
        let tools = self.tools(family)?;
        let Some(list) = &tools.list else {
            return list_from_save(self, family, table, chain);
        };
        let wait = self.lock_wait.as_secs().max(1).to_string();
        let args = ["--wait", &wait, "-t", table.name(), "-S", chain];
        match self.run(list, &args, None, self.lock_wait + TOOL_LIMIT) {
            Ok(text) => Ok(Some(text)),
            Err(BackendError::Failed { message, .. }) if no_such_chain(&message) => Ok(None),
            Err(BackendError::Failed { tool, message }) if message.contains("xtables lock") => {
                Err(BackendError::LockTimeout {
                    tool,
                    waited: self.lock_wait,
                })
            }
            Err(other) => Err(other),
        }
    }

    fn save_sets(&self) -> Result<String, BackendError> {
        self.run(self.ipset()?, &["save"], None, TOOL_LIMIT)
    }

    fn list_sets(&self) -> Result<String, BackendError> {
        self.run(self.ipset()?, &["list", "-t"], None, TOOL_LIMIT)
    }

    fn restore_sets(&self, input: &str) -> Result<(), BackendError> {
        match self.run(self.ipset()?, &["restore"], Some(input), TOOL_LIMIT) {
            Ok(_) => Ok(()),
            Err(BackendError::Failed { tool, message }) => {
                Err(classify_set_failure(tool, &message, input))
            }
            Err(other) => Err(other),
        }
    }
}

/// How `iptables -S CHAIN` says there is no such chain: legacy with the
/// kernel's words, nf_tables 1.8 by calling it incompatible (it says so of
/// a missing table too).
fn no_such_chain(stderr: &str) -> bool {
    stderr.contains("No chain/target/match by that name")
        || stderr.contains("is incompatible, use 'nft' tool")
}

/// `ipset v7.17: Error in line 3: Element cannot be added to the set:
/// it's already added` into the line and what went wrong.
fn classify_set_failure(tool: String, stderr: &str, input: &str) -> BackendError {
    let first = stderr.lines().next().unwrap_or("");
    let message = match first.split_once(": ") {
        Some((prefix, rest)) if prefix.starts_with("ipset v") => rest,
        _ => first,
    };
    let Some(rest) = message.strip_prefix("Error in line ") else {
        return BackendError::Failed {
            tool,
            message: message.trim().to_string(),
        };
    };
    let (number, message) = rest.split_once(": ").unwrap_or((rest, "no message"));
    match number.parse::<usize>() {
        Ok(line) => rejected(tool, input, line, message.trim().to_string()),
        Err(_) => BackendError::Failed {
            tool,
            message: message.trim().to_string(),
        },
    }
}

/// A restore that refused line `line` (1-based) of `input`, with that
/// line's text.
fn rejected(tool: String, input: &str, line: usize, message: String) -> BackendError {
    BackendError::Rejected {
        text: input
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .to_string(),
        tool,
        line,
        message,
    }
}

/// Turns a restore's complaint into the error a user can act on.
fn classify_failure(tool: String, stderr: &str, input: &str, waited: Duration) -> BackendError {
    if stderr.contains("xtables lock") {
        return BackendError::LockTimeout { tool, waited };
    }
    let message = complaint(stderr);
    match rejected_line(stderr) {
        Some(line) => rejected(tool, input, line, message),
        None => BackendError::Failed { tool, message },
    }
}

/// The line a restore names in any of its forms: `Error occurred at line:
/// 4` (parse errors), `line 4 failed` (legacy commit), `line 6: CHAIN_DEL
/// failed` (nf_tables commit).
fn rejected_line(stderr: &str) -> Option<usize> {
    stderr.match_indices("line").find_map(|(at, word)| {
        let rest = stderr[at + word.len()..].trim_start_matches([':', ' ']);
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        rest[..digits].parse().ok()
    })
}

/// What went wrong, in the tool's words minus its boilerplate.
fn complaint(stderr: &str) -> String {
    let parts: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("Try `") && !l.starts_with("Error occurred at line"))
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            // `iptables-restore v1.8.9 (legacy): message`.
            match l.split_once(": ") {
                Some((prefix, rest)) if prefix.contains("tables-") => rest,
                _ => l,
            }
        })
        .map(|l| l.trim().trim_end_matches(':'))
        .filter(|l| !l.is_empty())
        .collect();
    if parts.is_empty() {
        "no message".to_string()
    } else {
        parts.join(": ")
    }
}

fn tool_name(program: &Path) -> String {
    program.file_name().map_or_else(
        || program.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Finds `name` in PATH, then in the sbin directories that a non-login
/// root shell or a systemd unit may not have in PATH.
pub(crate) fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs a command with a deadline and returns its standard output. A
/// non-zero exit is [`BackendError::Failed`] with standard error.
fn run(
    program: &Path,
    args: &[&str],
    stdin: Option<&str>,
    limit: Duration,
) -> Result<String, BackendError> {
    let tool = tool_name(program);
    tracing::debug!("running {} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args.iter().map(OsString::from))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Untranslated messages: they are parsed for line numbers.
        .env("LC_ALL", "C")
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => BackendError::NotFound { tool: tool.clone() },
            _ => BackendError::Spawn {
                tool: tool.clone(),
                source,
            },
        })?;
    // Threads feed and drain the pipes, so a child that writes a lot while
    // reading slowly cannot deadlock against us; the deadline below stays
    // in force whatever the child does.
    let writer = stdin.map(|text| {
        let mut pipe = child.stdin.take().expect("piped");
        let text = text.to_string();
        std::thread::spawn(move || {
            // A child that exits early closes the pipe; its exit status
            // says why.
            let _ = pipe.write_all(text.as_bytes());
        })
    });
    let (closed, pipes_closed) = mpsc::channel();
    let stdout = drain(child.stdout.take().expect("piped"), closed.clone());
    let stderr = drain(child.stderr.take().expect("piped"), closed);

    // The child closes both pipes when it exits: wake on that, at once,
    // rather than polling its status.
    let deadline = Instant::now() + limit;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if pipes_closed.recv_timeout(left).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BackendError::Timeout { tool, limit });
        }
    }
    let status = child.wait().map_err(|source| BackendError::Spawn {
        tool: tool.clone(),
        source,
    })?;
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        // Taken as is when valid, as it always is: `ipset save` of a big
        // set is megabytes, not worth copying.
        Ok(String::from_utf8(stdout)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    } else {
        let stderr = String::from_utf8_lossy(&stderr);
        let message = if stderr.trim().is_empty() {
            status.to_string()
        } else {
            stderr.trim().to_string()
        };
        Err(BackendError::Failed { tool, message })
    }
}

/// Reads a pipe to its end on a thread of its own, then says so.
fn drain(
    mut pipe: impl Read + Send + 'static,
    closed: mpsc::Sender<()>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = closed.send(());
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavor_from_version() {
        assert_eq!(
            Flavor::from_version("iptables v1.8.9 (nf_tables)"),
            Flavor::Nft
        );
        assert_eq!(
            Flavor::from_version("iptables v1.8.9 (legacy)"),
            Flavor::Legacy
        );
        assert_eq!(Flavor::from_version("iptables v1.6.1"), Flavor::Legacy);
    }

    #[test]
    fn flavor_from_links() {
        let dir = tempfile::tempdir().unwrap();
        let link = |name: &str, target: &str| {
            let path = dir.path().join(name);
            std::os::unix::fs::symlink(target, &path).unwrap();
            path
        };
        std::fs::write(dir.path().join("xtables-nft-multi"), "").unwrap();
        std::fs::write(dir.path().join("xtables-legacy-multi"), "").unwrap();
        // Debian's alternatives: iptables → alternative → iptables-nft.
        link("iptables-nft", "xtables-nft-multi");
        let alternative = link(
            "alternative",
            &dir.path().join("iptables-nft").display().to_string(),
        );
        let debian = link("iptables", &alternative.display().to_string());
        assert_eq!(Flavor::from_links(&debian), Some(Flavor::Nft));
        // Alpine and Arch: straight to the multi-call binary.
        let alpine = link("iptables-alpine", "xtables-legacy-multi");
        assert_eq!(Flavor::from_links(&alpine), Some(Flavor::Legacy));
        // A plain binary or a link that names neither: ask the tool.
        std::fs::write(dir.path().join("plain"), "").unwrap();
        assert_eq!(Flavor::from_links(&dir.path().join("plain")), None);
        let other = link("iptables-other", "plain");
        assert_eq!(Flavor::from_links(&other), None);
        let looped = link("loop", &dir.path().join("loop").display().to_string());
        assert_eq!(Flavor::from_links(&looped), None);
    }

    #[test]
    fn failures_name_the_rejected_line() {
        let input = "*filter\n-N FWS-A\n-A FWS-A -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n";
        // Real stderr of both backends, captured in a namespace.
        for stderr in [
            "iptables-nft-restore v1.8.9 (nf_tables): invalid port/service `99999' specified\nError occurred at line: 3\nTry `iptables-nft-restore -h' or 'iptables-nft-restore --help' for more information.\n",
            "iptables-restore v1.8.9 (legacy): invalid port/service `99999' specified\nError occurred at line: 3\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
        ] {
            match classify_failure("iptables-restore".into(), stderr, input, DEFAULT_LOCK_WAIT) {
                BackendError::Rejected { line, text, message, .. } => {
                    assert_eq!(line, 3);
                    assert_eq!(text, "-A FWS-A -p tcp --dport 99999 -j ACCEPT");
                    assert_eq!(message, "invalid port/service `99999' specified");
                }
                other => panic!("{other:?}"),
            }
        }
        let commit = "iptables-nft-restore v1.8.9 (nf_tables): \nline 2: CHAIN_DEL failed (Device or resource busy): chain FWS-NEW\n";
        assert!(matches!(
            classify_failure("t".into(), commit, input, DEFAULT_LOCK_WAIT),
            BackendError::Rejected { line: 2, .. }
        ));
        assert!(matches!(
            classify_failure(
                "t".into(),
                "iptables-restore: line 4 failed\n",
                input,
                DEFAULT_LOCK_WAIT
            ),
            BackendError::Rejected { line: 4, .. }
        ));
        let lock = "Another app is currently holding the xtables lock. Stopped waiting after 1s.\n";
        let error = classify_failure(
            "iptables-restore".into(),
            lock,
            input,
            Duration::from_secs(1),
        );
        assert!(matches!(error, BackendError::LockTimeout { .. }));
        assert!(error.to_string().contains("after 1 s"));
    }

    #[test]
    fn set_failures_name_the_rejected_line() {
        let input = "create fws-a hash:net family inet maxelem 65536\nadd fws-a 1.2.3.4\nadd fws-a 1.2.3.4\n";
        // Real stderr of ipset 7.17.
        let stderr = "ipset v7.17: Error in line 3: Element cannot be added to the set: it's already added\n";
        match classify_set_failure("ipset".into(), stderr, input) {
            BackendError::Rejected {
                line,
                text,
                message,
                ..
            } => {
                assert_eq!(line, 3);
                assert_eq!(text, "add fws-a 1.2.3.4");
                assert_eq!(
                    message,
                    "Element cannot be added to the set: it's already added"
                );
            }
            other => panic!("{other:?}"),
        }
        let usage = "ipset v7.17: No command specified: unknown argument bogus\nTry `ipset help' for more information.\n";
        assert!(matches!(
            classify_set_failure("ipset".into(), usage, "bogus\n"),
            BackendError::Failed { message, .. } if message == "No command specified: unknown argument bogus"
        ));
    }

    #[test]
    fn run_enforces_its_deadline() {
        let started = Instant::now();
        let error = run(Path::new("sleep"), &["5"], None, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(error, BackendError::Timeout { .. }), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            run(Path::new("cat"), &[], Some("through\n"), TOOL_LIMIT).unwrap(),
            "through\n"
        );
        assert!(matches!(
            run(Path::new("false"), &[], None, TOOL_LIMIT),
            Err(BackendError::Failed { .. })
        ));
        assert!(matches!(
            run(Path::new("no-such-tool-here"), &[], None, TOOL_LIMIT),
            Err(BackendError::NotFound { .. })
        ));
    }
}
