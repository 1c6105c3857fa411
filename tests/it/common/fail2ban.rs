//! A real fail2ban inside a throwaway network namespace: Debian's
//! `fail2ban-server` with its own socket, pid file, database and log under
//! a temporary folder, and one jail whose iptables action (the stock
//! `iptables-multiport`) bans into the namespace's iptables of the
//! namespace's backend. The server stops when the value drops, panic or
//! not.

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::netns::Netns;

/// fail2ban is slow to start (Python); bans are quick.
const DEADLINE: Duration = Duration::from_secs(20);

/// The jail's name: its chain is `f2b-fws`.
pub const JAIL: &str = "fws";

/// Whether fail2ban is installed. Under CI (`CI=true`) it must be.
pub fn available() -> bool {
    let found = ["/usr/bin/fail2ban-server", "/usr/bin/fail2ban-client"]
        .iter()
        .all(|p| Path::new(p).is_file());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("fail2ban is not installed and CI=true forbids skipping its tests");
        }
        eprintln!("SKIP: fail2ban tests need Debian's fail2ban (apt-get install fail2ban)");
    }
    found
}

pub struct Fail2ban {
    dir: tempfile::TempDir,
    netns: String,
    flavor: &'static str,
    server: Option<Child>,
}

impl Fail2ban {
    /// Starts fail2ban in `netns` with one jail that watches a log file of
    /// its own and bans into iptables on the TCP `ports` (`"8080"` or
    /// `"80,443"`); waits until the server answers.
    pub fn start(netns: &Netns, ports: &str) -> Fail2ban {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let conf = root.join("conf");
        for sub in ["action.d", "filter.d"] {
            std::fs::create_dir_all(conf.join(sub)).unwrap();
        }
        // The stock actions, unchanged…
        for action in ["iptables.conf", "iptables-multiport.conf"] {
            std::fs::copy(
                Path::new("/etc/fail2ban/action.d").join(action),
                conf.join("action.d").join(action),
            )
            .unwrap_or_else(|e| panic!("copy the {action} of fail2ban: {e}"));
        }
        // …pointed at this namespace's backend the way fail2ban documents:
        // a `.local` beside the action.
        let write = |path: PathBuf, text: String| std::fs::write(path, text).unwrap();
        write(
            conf.join("action.d/iptables.local"),
            format!(
                "[Init]\niptables = iptables-{0} <lockingopt>\n\n\
                 [Init?family=inet6]\niptables = ip6tables-{0} <lockingopt>\n",
                netns.flavor
            ),
        );
        write(
            conf.join("filter.d/fws.conf"),
            "[Definition]\nfailregex = ^FAIL from <HOST>$\ndatepattern = {NONE}\n".into(),
        );
        let at = |name: &str| root.join(name).display().to_string();
        write(
            conf.join("fail2ban.conf"),
            format!(
                "[Definition]\nloglevel = INFO\nlogtarget = {}\nsyslogsocket = auto\n\
                 socket = {}\npidfile = {}\ndbfile = {}\ndbpurgeage = 1d\nallowipv6 = auto\n",
                at("fail2ban.log"),
                at("fail2ban.sock"),
                at("fail2ban.pid"),
                at("fail2ban.sqlite3"),
            ),
        );
        write(
            conf.join("jail.conf"),
            format!(
                "[DEFAULT]\nbackend = polling\n\n[{JAIL}]\nenabled = true\nfilter = fws\n\
                 logpath = {}\nport = {ports}\nprotocol = tcp\n\
                 action = iptables-multiport[name={JAIL}, port=\"{ports}\", protocol=tcp]\n\
                 maxretry = 1\nfindtime = 600\nbantime = 3600\n",
                at("auth.log"),
            ),
        );
        std::fs::write(root.join("auth.log"), "").unwrap();
        let mut fail2ban = Fail2ban {
            dir,
            netns: netns.name.clone(),
            flavor: netns.flavor,
            server: None,
        };
        fail2ban.launch();
        fail2ban
    }

    fn launch(&mut self) {
        let root = self.dir.path();
        let server = Command::new("ip")
            .args(["netns", "exec", &self.netns, "fail2ban-server", "-f", "-x"])
            .arg("-c")
            .arg(root.join("conf"))
            .arg("-s")
            .arg(root.join("fail2ban.sock"))
            .arg("-p")
            .arg(root.join("fail2ban.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("server.out")).unwrap())
            .spawn()
            .expect("fail2ban-server starts");
        self.server = Some(server);
        let deadline = Instant::now() + DEADLINE;
        while !String::from_utf8_lossy(&self.client(&["ping"]).stdout).contains("pong") {
            assert!(
                Instant::now() < deadline,
                "fail2ban-server did not answer:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fail2ban removes its rules) and starts it again:
    /// it bans what its database remembers anew, in its own time (see
    /// [`Fail2ban::wait_banned`]).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn client(&self, args: &[&str]) -> Output {
        let root = self.dir.path();
        Command::new("fail2ban-client")
            .arg("-c")
            .arg(root.join("conf"))
            .arg("-s")
            .arg(root.join("fail2ban.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("fail2ban-client runs")
    }

    /// fail2ban's own log, for failure messages.
    pub fn log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("server.out"), read("fail2ban.log"))
    }

    /// `fail2ban-client set fws banip ADDR`; returns once the ban is in the
    /// kernel.
    pub fn ban(&self, addr: IpAddr) {
        let out = self.client(&["set", JAIL, "banip", &addr.to_string()]);
        assert!(
            out.status.success(),
            "banip {addr}: {out:?}\n{}",
            self.log()
        );
        self.wait_banned(addr);
    }

    /// Writes a failure line for `addr` to the log the jail watches, as a
    /// daemon refusing a login would; returns once the ban is in the kernel.
    pub fn fail(&self, addr: IpAddr) {
        use std::io::Write as _;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("auth.log"))
            .unwrap();
        writeln!(log, "FAIL from {addr}").unwrap();
        drop(log);
        self.wait_banned(addr);
    }

    /// Waits until the jail's chain rejects `addr` in the kernel.
    pub fn wait_banned(&self, addr: IpAddr) {
        let deadline = Instant::now() + DEADLINE;
        let prefix = if addr.is_ipv4() { "32" } else { "128" };
        let needle = format!("-A f2b-{JAIL} -s {addr}/{prefix} -j REJECT");
        loop {
            let save = self.save(addr.is_ipv4());
            if save.contains(&needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fail2ban did not ban {addr}; rules:\n{save}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn save(&self, ipv4: bool) -> String {
        let tool = if ipv4 { "iptables" } else { "ip6tables" };
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(format!("{tool}-{}-save", self.flavor))
            .output()
            .expect("save runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let _ = self.client(&["stop"]);
        let deadline = Instant::now() + DEADLINE;
        while server.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = server.kill();
                let _ = server.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        self.stop();
    }
}
