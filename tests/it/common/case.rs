//! A script and a state folder of their own, in a temporary folder: what
//! the kernel tests run fwscript with.

use std::path::PathBuf;

use super::netns::{Netns, Run};

pub struct Case {
    _dir: tempfile::TempDir,
    pub script: PathBuf,
    pub state: PathBuf,
}

impl Case {
    /// `fw.rhai` holding `text`, and a state folder not made yet.
    pub fn new(text: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fw.rhai");
        std::fs::write(&script, text).unwrap();
        let state = dir.path().join("state");
        Case {
            _dir: dir,
            script,
            state,
        }
    }

    /// The script now says `text`.
    pub fn edit(&self, text: &str) {
        std::fs::write(&self.script, text).unwrap();
    }

    pub fn script(&self) -> &str {
        self.script.to_str().unwrap()
    }

    /// `fwscript ARGS… SCRIPT` with this state folder (`reset` alone takes
    /// no script), whatever its exit.
    pub fn run(&self, netns: &Netns, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        if !matches!(args, ["reset"]) {
            all.push(self.script());
        }
        netns.fwscript(&self.state, &all)
    }
}
