//! `fwscript watch` as a test runs it beside other programs: a child
//! process in a namespace, its log in a file, waited on with deadlines.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::netns::Netns;

/// `fwscript watch` running in a namespace: it stops when the value drops.
pub struct Watch {
    child: Child,
    log: PathBuf,
}

impl Watch {
    /// Writes `script` to `dir/fw.rhai` and watches it in `netns`, with the
    /// state folder `dir/state`, resyncing every `resync` seconds; returns
    /// after the first apply.
    pub fn start(netns: &Netns, dir: &Path, script: &str, resync: u32) -> Watch {
        Watch::start_with(netns, dir, script, resync, &[])
    }

    /// [`Watch::start`] with `env` set for the daemon.
    pub fn start_with(
        netns: &Netns,
        dir: &Path,
        script: &str,
        resync: u32,
        env: &[(&str, &str)],
    ) -> Watch {
        Watch::start_on(netns, dir, &dir.join("state"), script, resync, env)
    }

    /// [`Watch::start_with`] on the state folder `state`, wherever it is
    /// (a second daemon on another daemon's folder).
    pub fn start_on(
        netns: &Netns,
        dir: &Path,
        state: &Path,
        script: &str,
        resync: u32,
        env: &[(&str, &str)],
    ) -> Watch {
        let path = dir.join("fw.rhai");
        std::fs::write(&path, script).unwrap();
        let log = dir.join("watch.log");
        let child = netns
            .command(env!("CARGO_BIN_EXE_fwscript"))
            .envs(env.iter().copied())
            .arg("--state-dir")
            .arg(state)
            .args(["watch", "--resync", &resync.to_string()])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the daemon starts");
        let watch = Watch { child, log };
        watch.wait_log("applied", 1);
        watch
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the daemon ends without a word (its record stays).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `needle` appears in the log at least `times` times.
    #[track_caller]
    pub fn wait_log(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.log().matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` ×{times} in the daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
