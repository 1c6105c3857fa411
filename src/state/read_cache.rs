//! The last kernel read, kept for the next command (state → **read cache**
//! → prefetch): one family's `iptables-save` text with the nf_tables
//! generation it was read at. A later `plan` or `apply` that finds the
//! kernel still at that generation, in the same network namespace and the
//! same boot, takes the text from here instead of running the save: on
//! nf_tables a save of 10,000 rules costs 80 ms, asking the generation a
//! fraction of one (docs/design.md, "Reading the kernel").
//!
//! The generation moves on at every nf_tables commit, whoever makes it, so
//! a neighbour's rule, an admin's `iptables -I` or a reboot all make the
//! next command read the kernel again. Legacy iptables has no generation
//! and always reads. A file that does not match exactly (another boot,
//! namespace or generation, a length that is not the one recorded) is a
//! miss, never an error. A read is kept only with room to spare on the
//! folder's file system, so it never takes the space a write's records
//! need.

use std::sync::Mutex;

use super::StateDir;
use crate::netfilter::{Family, Generation};

/// The cached reads of one state folder.
#[derive(Debug)]
pub struct ReadCache {
    state: StateDir,
    boot: String,
    /// Whether reads made now may be kept: only by a command that holds
    /// the writer lock (`plan` only uses them).
    keep: bool,
    /// The command is ending without waiting for its reads: one still
    /// running keeps nothing (a file half written when the process exits
    /// would be left behind). Held across each write, so the command
    /// waits for a write under way, never for a read.
    abandoned: Mutex<bool>,
}

impl StateDir {
    /// The read cache of this folder; `keep`: this command holds the lock
    /// and may leave its reads for the next one. `None` when the folder
    /// cannot be opened twice or the boot is unknown.
    pub fn read_cache(&self, keep: bool) -> Option<ReadCache> {
        let boot = super::boot_id();
        if boot.is_empty() {
            return None;
        }
        Some(ReadCache {
            state: self.try_clone().ok()?,
            boot,
            keep,
            abandoned: Mutex::new(false),
        })
    }
}

impl ReadCache {
    /// The save of `family` read at generation `at`, if one was kept.
    pub fn load(&self, family: Family, at: Generation) -> Option<String> {
        let text = self.state.read_text(file(family)).ok()??;
        let (header, rest) = text.split_once('\n')?;
        (header == self.header(family, at, rest.len())).then(|| rest.to_string())
    }

    /// Keeps the save `text` of `family`, read at generation `at`. Best
    /// effort: a folder that cannot take it costs the next command a read.
    pub fn store(&self, family: Family, at: Generation, text: &str) {
        let abandoned = self.abandoned.lock().unwrap_or_else(|e| e.into_inner());
        if !self.keep || *abandoned || !self.room_for(text.len()) {
            return;
        }
        let header = self.header(family, at, text.len());
        let mut contents = String::with_capacity(header.len() + 1 + text.len());
        contents.push_str(&header);
        contents.push('\n');
        contents.push_str(text);
        if let Err(err) = self.state.write_unsynced(file(family), contents.as_bytes()) {
            tracing::debug!("kernel read not kept: {err}");
        }
    }

    /// Reads still running keep nothing from now on.
    pub fn abandon(&self) {
        *self.abandoned.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }

    /// Whether the folder's file system has room to spare for `bytes`: a
    /// read kept must never take the space the records of the next write
    /// need (they are refused before the kernel is touched).
    fn room_for(&self, bytes: usize) -> bool {
        const SPARE: u64 = 64 << 20;
        let Ok(fs) = rustix::fs::fstatvfs(&self.state.folder) else {
            return false;
        };
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        let room = free > (bytes as u64).saturating_mul(4).saturating_add(SPARE);
        if !room {
            tracing::debug!("kernel read not kept: {free} bytes free in the state folder");
        }
        room
    }

    fn header(&self, family: Family, at: Generation, length: usize) -> String {
        format!(
            "# fwscript: the {family} rules as read at boot {}, network namespace {}, \
             nf_tables generation {}; {length} bytes follow",
            self.boot, at.netns, at.id
        )
    }
}

/// The kept read of each family.
pub const IPV4: &str = "kernel-read.ipv4";
pub const IPV6: &str = "kernel-read.ipv6";

fn file(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => IPV4,
        Family::Ipv6 => IPV6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "*filter\n:INPUT DROP [0:0]\n-A INPUT -j FWS-INPUT\nCOMMIT\n";
    const AT: Generation = Generation { netns: 7, id: 42 };

    fn folder() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        (dir, state)
    }

    #[test]
    fn a_read_comes_back_only_at_its_own_generation_namespace_and_family() {
        let (_dir, state) = folder();
        let cache = state.read_cache(true).unwrap();
        cache.store(Family::Ipv4, AT, SAVE);
        assert_eq!(cache.load(Family::Ipv4, AT).as_deref(), Some(SAVE));
        let later = Generation { id: 43, ..AT };
        let elsewhere = Generation { netns: 8, ..AT };
        assert_eq!(cache.load(Family::Ipv4, later), None);
        assert_eq!(cache.load(Family::Ipv4, elsewhere), None);
        assert_eq!(cache.load(Family::Ipv6, AT), None);
    }

    #[test]
    fn a_command_without_the_lock_keeps_nothing() {
        let (_dir, state) = folder();
        state
            .read_cache(false)
            .unwrap()
            .store(Family::Ipv4, AT, SAVE);
        assert_eq!(state.read_cache(true).unwrap().load(Family::Ipv4, AT), None);
    }

    #[test]
    fn a_cut_or_lengthened_file_is_a_miss() {
        let (_dir, state) = folder();
        let cache = state.read_cache(true).unwrap();
        cache.store(Family::Ipv4, AT, SAVE);
        let path = state.path().join("kernel-read.ipv4");
        let whole = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 7]).unwrap();
        assert_eq!(cache.load(Family::Ipv4, AT), None, "cut");
        std::fs::write(&path, format!("{whole}-A INPUT -j ACCEPT\n")).unwrap();
        assert_eq!(cache.load(Family::Ipv4, AT), None, "lengthened");
    }

    #[test]
    fn another_boot_is_a_miss() {
        let (_dir, state) = folder();
        let cache = state.read_cache(true).unwrap();
        cache.store(Family::Ipv4, AT, SAVE);
        let rebooted = ReadCache {
            boot: "another-boot".into(),
            ..state.read_cache(true).unwrap()
        };
        assert_eq!(rebooted.load(Family::Ipv4, AT), None);
    }

    #[test]
    fn a_read_still_running_when_its_command_ends_keeps_nothing() {
        let (_dir, state) = folder();
        let cache = state.read_cache(true).unwrap();
        cache.abandon();
        cache.store(Family::Ipv4, AT, SAVE);
        assert_eq!(cache.load(Family::Ipv4, AT), None);
        let names: Vec<_> = std::fs::read_dir(state.path()).unwrap().collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn a_symlink_or_a_file_others_may_write_is_a_miss() {
        let (dir, state) = folder();
        let cache = state.read_cache(true).unwrap();
        cache.store(Family::Ipv4, AT, SAVE);
        let path = state.path().join("kernel-read.ipv4");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert_eq!(cache.load(Family::Ipv4, AT), None, "a symlink");
        std::fs::remove_file(&path).unwrap();
        cache.store(Family::Ipv4, AT, SAVE);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(cache.load(Family::Ipv4, AT), None, "writable by others");
    }
}
