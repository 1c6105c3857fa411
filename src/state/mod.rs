//! What fwscript remembers between runs (apply → **state** → rollback,
//! confirm, boot, status), in one folder (`/var/lib/fwscript`).
//!
//! The folder is trusted only as the design contract says (see [`trust`]);
//! every file in it is opened without following symlinks and checked on
//! the open descriptor, and written whole or not at all: a new file made
//! with create-exclusive, synced, renamed over the old one, the folder
//! synced (notes worth nothing after a crash are not synced: who holds the
//! lock, the last kernel read). Writing needs the writer lock
//! ([`StateDir::lock`]), which also keeps a second fwscript out of the
//! kernel meanwhile.

mod lock;
mod read_cache;
mod records;
mod trust;

use std::borrow::Cow;
use std::io::{ErrorKind, Read};
use std::ops::Deref;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustix::fs::{AtFlags, Mode, OFlags, CWD};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::forms::KernelForms;
use crate::io_error::lowercase;
use crate::origins::RuleOrigins;

pub use lock::WriterLock;
pub use read_cache::ReadCache;
pub use records::{
    boot_id, Applied, AppliedRules, DaemonRecord, FamilySnapshot, LastGood, OriginalPolicies,
    PendingConfirm, Rejected, Snapshot,
};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the state folder `{path}`: {}", lowercase(.source))]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to use the state {what} `{path}`: {why}\n  = hint: {hint}")]
    Untrusted {
        /// `folder`, or `file` for one in it.
        what: &'static str,
        path: PathBuf,
        why: String,
        hint: String,
    },
    #[error(
        "another fwscript is changing the firewall{}; gave up waiting after {} s\n  = hint: \
         try again when it is done, or wait longer with FWSCRIPT_LOCK_WAIT=SECS",
        holder_note(.holder), .waited.as_secs()
    )]
    Busy {
        waited: Duration,
        holder: Option<String>,
    },
    #[error("{0}")]
    Setting(String),
    #[error("cannot write `{path}`: {}", lowercase(.source))]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read `{path}`: {}", lowercase(.source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is damaged ({source}); remove it to go on")]
    Damaged {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn holder_note(holder: &Option<String>) -> String {
    holder
        .as_deref()
        .map(|h| format!(" ({h})"))
        .unwrap_or_default()
}

const SNAPSHOT: &str = "snapshot.json";
const PENDING: &str = "pending-confirm.json";
const PENDING_RULES: &str = "pending.rules";
const REJECTED: &str = "rejected.json";
const APPLIED: &str = "applied.json";
const LAST_GOOD: &str = "last-good.json";
const LAST_GOOD_RULES: &str = "last-good.rules";
const POLICIES: &str = "original-policies.json";
const DAEMON: &str = "watch.json";
const KERNEL_FORMS: &str = "kernel-forms.json";
const APPLIED_RULES: &str = "applied-rules.json";
const ORIGINS: &str = "origins.json";

/// The largest state file read: the rules of 200,000 rules with room to
/// spare. Anything larger is not fwscript's.
const MAX_FILE: u64 = 256 << 20;

/// The state folder, opened and trusted.
#[derive(Debug)]
pub struct StateDir {
    /// As the user gave it, for messages.
    path: PathBuf,
    folder: OwnedFd,
    uid: u32,
}

impl StateDir {
    /// Opens the folder, creating it (readable by its owner only) when it
    /// does not exist yet.
    pub fn open(path: &Path) -> Result<StateDir, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| StateError::Create {
                path: path.to_path_buf(),
                source,
            })?;
        StateDir::open_trusted(path)
    }

    /// Opens the folder if it exists: for commands that only read.
    pub fn open_existing(path: &Path) -> Result<Option<StateDir>, StateError> {
        match std::fs::symlink_metadata(path) {
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
            _ => StateDir::open_trusted(path).map(Some),
        }
    }

    fn open_trusted(path: &Path) -> Result<StateDir, StateError> {
        let untrusted = |why: String, hint: String| StateError::Untrusted {
            what: "folder",
            path: path.to_path_buf(),
            why,
            hint,
        };
        let real = path
            .canonicalize()
            .map_err(|err| untrusted(lowercase(&err), "check the path".into()))?;
        let uid = trust::trusted_uid();
        let expected =
            trust::check_folder_chain(&real, uid).map_err(|d| untrusted(d.why, d.hint))?;
        let folder = rustix::fs::openat(
            CWD,
            &real,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| untrusted(err.to_string(), "check the path".into()))?;
        // The folder opened must be the folder checked, not one swapped in
        // between.
        let opened = rustix::fs::fstat(&folder)
            .map_err(|err| untrusted(err.to_string(), "check the path".into()))?;
        if (opened.st_dev, opened.st_ino) != (expected.st_dev, expected.st_ino) {
            return Err(untrusted(
                "it was replaced while being checked".into(),
                "find out who is changing it".into(),
            ));
        }
        Ok(StateDir {
            path: path.to_path_buf(),
            folder,
            uid,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The same folder, opened once more (the same trusted descriptor,
    /// duplicated): for a reader on another thread.
    pub fn try_clone(&self) -> std::io::Result<StateDir> {
        Ok(StateDir {
            path: self.path.clone(),
            folder: self.folder.try_clone()?,
            uid: self.uid,
        })
    }

    /// Takes the writer lock, waiting up to `FWSCRIPT_LOCK_WAIT` seconds
    /// (default 10) for another fwscript to finish. `doing` says what this
    /// process does, for the message the next writer gets.
    pub fn lock(&self, doing: &str) -> Result<Locked<'_>, StateError> {
        let wait = crate::env::lock_wait().map_err(StateError::Setting)?;
        let lock = lock::acquire(self.folder.as_fd(), wait).map_err(|waited| StateError::Busy {
            waited,
            holder: self
                .read_text(lock::HOLDER)
                .ok()
                .flatten()
                .and_then(|note| lock::live_holder(&note)),
        })?;
        let locked = Locked { state: self, lock };
        locked.sweep_leftovers();
        // Best effort: on a full or read-only folder the lock still holds.
        let holder = lock::holder_note(
            std::process::id(),
            doing,
            &crate::confirm::utc(crate::transaction::now()),
        );
        let _ = locked.write_unsynced(lock::HOLDER, holder.as_bytes());
        Ok(locked)
    }

    pub fn snapshot(&self) -> Result<Option<Snapshot>, StateError> {
        self.read_json(SNAPSHOT)
    }

    pub fn pending_confirm(&self) -> Result<Option<PendingConfirm>, StateError> {
        self.read_json(PENDING)
    }

    /// The rules an unconfirmed `apply --confirm` wrote.
    pub fn pending_rules(&self) -> Result<Option<String>, StateError> {
        self.read_text(PENDING_RULES)
    }

    pub fn rejected(&self) -> Result<Option<Rejected>, StateError> {
        self.read_json(REJECTED)
    }

    pub fn applied(&self) -> Result<Option<Applied>, StateError> {
        self.read_json(APPLIED)
    }

    pub fn last_good(&self) -> Result<Option<LastGood>, StateError> {
        self.read_json(LAST_GOOD)
    }

    /// The rules of the last good ruleset, as restore files per family.
    pub fn last_good_rules(&self) -> Result<Option<String>, StateError> {
        self.read_text(LAST_GOOD_RULES)
    }

    pub fn original_policies(&self) -> Result<OriginalPolicies, StateError> {
        Ok(self.read_json(POLICIES)?.unwrap_or_default())
    }

    pub fn daemon(&self) -> Result<Option<DaemonRecord>, StateError> {
        self.read_json(DAEMON)
    }

    /// The kernel's forms of fwscript's rules after the last verified write,
    /// to find rules changed behind its back; empty before the first.
    pub fn kernel_forms(&self) -> Result<KernelForms, StateError> {
        Ok(self.read_json(KERNEL_FORMS)?.unwrap_or_default())
    }

    /// The rules of the last write, whatever wrote them (an apply, reset,
    /// rollback, a fallback): what `status` compares the kernel with.
    pub fn applied_rules(&self) -> Result<Option<AppliedRules>, StateError> {
        self.read_json(APPLIED_RULES)
    }

    /// The script line behind each rule id of the last write and of the
    /// kernel before it; empty before the first write that recorded them.
    pub fn rule_origins(&self) -> Result<RuleOrigins, StateError> {
        Ok(self.read_json(ORIGINS)?.unwrap_or_default())
    }

    /// The daemon's own record, written outside transactions: only the
    /// daemon writes it, and nothing in the kernel depends on it.
    pub fn save_daemon(&self, record: &DaemonRecord) -> Result<(), StateError> {
        self.write_json(DAEMON, record)
    }

    pub fn clear_daemon(&self) -> Result<(), StateError> {
        self.remove(DAEMON)
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, StateError> {
        let Some(text) = self.read_text(name)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::Damaged {
                path: self.path.join(name),
                source,
            })
    }

    fn read_text(&self, name: &str) -> Result<Option<String>, StateError> {
        let shown = self.path.join(name);
        let fail = |source: std::io::Error| StateError::Read {
            path: shown.clone(),
            source,
        };
        let file = match rustix::fs::openat(
            &self.folder,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(file) => file,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(StateError::Untrusted {
                    what: "file",
                    path: shown.clone(),
                    why: "it is a symlink, which fwscript never writes".into(),
                    hint: format!("look at it, then remove it: rm {}", shown.display()),
                })
            }
            Err(err) => return Err(fail(err.into())),
        };
        let stat =
            trust::check_file(&file, &shown, self.uid).map_err(|d| StateError::Untrusted {
                what: "file",
                path: shown.clone(),
                why: d.why,
                hint: d.hint,
            })?;
        if stat.st_size as u64 > MAX_FILE {
            return Err(fail(std::io::Error::other(format!(
                "it holds {} bytes, more than fwscript ever writes",
                stat.st_size
            ))));
        }
        let mut text = String::new();
        std::fs::File::from(file)
            .read_to_string(&mut text)
            .map_err(fail)?;
        Ok(Some(text))
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        self.write(name, &json_bytes(value))
    }

    fn write(&self, name: &str, contents: &[u8]) -> Result<(), StateError> {
        self.stage(name, contents)?.commit()
    }

    /// Written whole or not at all, but not synced: for notes worth
    /// nothing after a crash (who holds the lock, the last kernel read),
    /// which would cost the command two journal commits each.
    fn write_unsynced(&self, name: &str, contents: &[u8]) -> Result<(), StateError> {
        self.stage_with(name, contents, false)?.rename()
    }

    /// Writes `contents` to a new temporary file beside `name`, ready to
    /// take its place: a full disk fails here, before the kernel is touched.
    fn stage(&self, name: &str, contents: &[u8]) -> Result<Staged<'_>, StateError> {
        self.stage_with(name, contents, true)
    }

    fn stage_with(
        &self,
        name: &str,
        contents: &[u8],
        sync: bool,
    ) -> Result<Staged<'_>, StateError> {
        let fail = |source: std::io::Error| StateError::Write {
            path: self.path.join(name),
            source,
        };
        let pid = std::process::id();
        let mut taken = 0;
        let (temporary, file) = loop {
            let temporary = temporary_name(name, pid, TEMPORARIES.fetch_add(1, Ordering::Relaxed));
            match rustix::fs::openat(
                &self.folder,
                temporary.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(file) => break (temporary, file),
                // The leftover of an earlier process with this pid, killed
                // while writing (a boot reuses pids): never ours to remove
                // here, and never a reason to fail; the next name is free.
                Err(Errno::EXIST) if taken < MAX_TAKEN_NAMES => taken += 1,
                Err(err) => return Err(fail(err.into())),
            }
        };
        let staged = Staged {
            state: self,
            temporary,
            name: name.to_string(),
            committed: false,
        };
        let mut file = std::fs::File::from(file);
        std::io::Write::write_all(&mut file, contents).map_err(fail)?;
        if sync {
            file.sync_all().map_err(fail)?;
        }
        Ok(staged)
    }

    fn remove(&self, name: &str) -> Result<(), StateError> {
        match rustix::fs::unlinkat(&self.folder, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(err) => Err(StateError::Write {
                path: self.path.join(name),
                source: err.into(),
            }),
        }
    }
}

/// Every file fwscript keeps in the folder, for telling its temporaries
/// from anything else.
const FILES: [&str; 15] = [
    SNAPSHOT,
    PENDING,
    PENDING_RULES,
    REJECTED,
    APPLIED,
    LAST_GOOD,
    LAST_GOOD_RULES,
    POLICIES,
    DAEMON,
    KERNEL_FORMS,
    APPLIED_RULES,
    ORIGINS,
    lock::HOLDER,
    read_cache::IPV4,
    read_cache::IPV6,
];

/// A temporary this old is no write under way.
const LEFTOVER_AGE_SECS: u64 = 60;

/// The pid that made `file`, when it is one of fwscript's temporaries.
fn leftover_of(file: &str) -> Option<u32> {
    let rest = file.strip_prefix('.')?;
    let (rest, n) = rest.rsplit_once('.')?;
    let (name, pid) = rest.rsplit_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(n) && FILES.contains(&name))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Numbers this process's temporary files.
static TEMPORARIES: AtomicUsize = AtomicUsize::new(0);

/// How many taken temporary names a write steps over before it gives up.
const MAX_TAKEN_NAMES: usize = 1000;

/// A temporary file made beside state file `name`: `.NAME.PID.N`.
fn temporary_name(name: &str, pid: u32, n: usize) -> String {
    format!(".{name}.{pid}.{n}")
}

fn json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).expect("state serialises");
    text.push(b'\n');
    text
}

/// A state file written but not yet in place. Dropped uncommitted, it is
/// removed and the old file stays.
#[derive(Debug)]
pub struct Staged<'a> {
    state: &'a StateDir,
    temporary: String,
    name: String,
    committed: bool,
}

impl Staged<'_> {
    /// Puts the file in place: a rename, which needs no space.
    pub fn commit(mut self) -> Result<(), StateError> {
        self.rename()?;
        self.sync_folder()
    }

    /// The rename alone; the folder still has to be synced for it to last.
    fn rename(&mut self) -> Result<(), StateError> {
        let folder = &self.state.folder;
        rustix::fs::renameat(folder, self.temporary.as_str(), folder, self.name.as_str()).map_err(
            |err| StateError::Write {
                path: self.state.path.join(&self.name),
                source: err.into(),
            },
        )?;
        self.committed = true;
        Ok(())
    }

    fn sync_folder(&self) -> Result<(), StateError> {
        rustix::fs::fsync(&self.state.folder).map_err(|err| StateError::Write {
            path: self.state.path.join(&self.name),
            source: err.into(),
        })
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = rustix::fs::unlinkat(
                &self.state.folder,
                self.temporary.as_str(),
                AtFlags::empty(),
            );
        }
    }
}

/// The state folder with the writer lock held: the only way to change it.
#[derive(Debug)]
pub struct Locked<'a> {
    state: &'a StateDir,
    #[allow(dead_code)]
    lock: WriterLock<'a>,
}

impl Deref for Locked<'_> {
    type Target = StateDir;

    fn deref(&self) -> &StateDir {
        self.state
    }
}

impl<'a> Locked<'a> {
    /// Removes the temporary files a fwscript killed while writing left
    /// behind (`kill -9`, a power cut): they are never read, but they
    /// would pile up. Only fwscript's own names, of a process that is no
    /// longer running, untouched for a minute (a process of another pid
    /// namespace sharing the folder might be writing one); best effort.
    fn sweep_leftovers(&self) {
        let Ok(entries) = rustix::fs::Dir::read_from(&self.state.folder) else {
            return;
        };
        let own = std::process::id();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for entry in entries.flatten() {
            let Ok(file) = entry.file_name().to_str() else {
                continue;
            };
            let Some(pid) = leftover_of(file) else {
                continue;
            };
            if pid == own || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let Ok(stat) = rustix::fs::statat(&self.state.folder, file, AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            if now.saturating_sub(stat.st_mtime.max(0) as u64) >= LEFTOVER_AGE_SECS {
                let _ = rustix::fs::unlinkat(&self.state.folder, file, AtFlags::empty());
            }
        }
    }

    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StateError> {
        self.write_json(SNAPSHOT, snapshot)
    }

    /// No snapshot: what `rollback` would put back is not worth having.
    pub fn clear_snapshot(&self) -> Result<(), StateError> {
        self.remove(SNAPSHOT)
    }

    pub fn save_pending_confirm(&self, pending: &PendingConfirm) -> Result<(), StateError> {
        self.write_json(PENDING, pending)
    }

    pub fn clear_pending_confirm(&self) -> Result<(), StateError> {
        self.remove(PENDING)?;
        self.remove(PENDING_RULES)
    }

    pub fn save_rejected(&self, rejected: &Rejected) -> Result<(), StateError> {
        self.write_json(REJECTED, rejected)
    }

    pub fn clear_rejected(&self) -> Result<(), StateError> {
        self.remove(REJECTED)
    }

    pub fn save_applied(&self, applied: &Applied) -> Result<(), StateError> {
        self.write_json(APPLIED, applied)
    }

    pub fn save_original_policies(&self, policies: &OriginalPolicies) -> Result<(), StateError> {
        self.write_json(POLICIES, policies)
    }

    /// Written after the kernel, from what it read back: not staged with a
    /// plan's records, which are written before.
    pub fn save_kernel_forms(&self, forms: &KernelForms) -> Result<(), StateError> {
        self.write_json(KERNEL_FORMS, forms)
    }

    /// Stages the records of a write about to be made: committed once the
    /// kernel holds it, dropped if the write fails.
    pub fn stage_plan(&self, plan: &PlanRecords) -> Result<StagedPlan<'a>, StateError> {
        let state: &'a StateDir = self.state;
        let mut contents: Vec<(&str, Cow<[u8]>)> = Vec::new();
        if let Some(rules) = &plan.rules {
            match &rules.last_good {
                Some(last_good) => {
                    contents.push((LAST_GOOD_RULES, rules.text.as_bytes().into()));
                    contents.push((LAST_GOOD, json_bytes(last_good).into()));
                }
                None => contents.push((PENDING_RULES, rules.text.as_bytes().into())),
            }
        }
        if let Some(pending) = &plan.pending {
            contents.push((PENDING, json_bytes(pending).into()));
        }
        if let Some(applied) = &plan.applied {
            contents.push((APPLIED, json_bytes(applied).into()));
        }
        if let Some(policies) = &plan.policies {
            contents.push((POLICIES, json_bytes(policies).into()));
        }
        if let Some(rules) = &plan.applied_rules {
            contents.push((APPLIED_RULES, json_bytes(rules).into()));
        }
        if let Some(origins) = &plan.origins {
            // An entry per script line: compact, as it is read at every
            // write.
            let mut text = serde_json::to_vec(origins).expect("state serialises");
            text.push(b'\n');
            contents.push((ORIGINS, text.into()));
        }
        // Written and synced all at the same time: concurrent fsyncs share
        // one journal commit, where one after the other each waited for
        // its own. A file that fails drops those staged beside it.
        let files = std::thread::scope(|scope| {
            let writers: Vec<_> = contents
                .iter()
                .map(|(name, bytes)| scope.spawn(move || state.stage(name, bytes)))
                .collect();
            writers
                .into_iter()
                .map(|w| w.join().expect("state writer panicked"))
                .collect::<Vec<_>>()
        });
        Ok(StagedPlan {
            files: files.into_iter().collect::<Result<_, _>>()?,
        })
    }

    /// A rollback snapshot staged to go in place after the plan's records
    /// are staged too, so both are written at the same time and a plan
    /// that cannot be recorded leaves the old snapshot.
    pub fn stage_snapshot(&self, snapshot: &Snapshot) -> Result<Staged<'a>, StateError> {
        let state: &'a StateDir = self.state;
        state.stage(SNAPSHOT, &json_bytes(snapshot))
    }

    /// `fwscript confirm`: the pending plan becomes the last good one.
    pub fn promote_pending(&self, last_good: &LastGood) -> Result<(), StateError> {
        let staged = self.stage(LAST_GOOD, &json_bytes(last_good))?;
        let folder = &self.state.folder;
        match rustix::fs::renameat(folder, PENDING_RULES, folder, LAST_GOOD_RULES) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(err) => {
                return Err(StateError::Write {
                    path: self.path.join(LAST_GOOD_RULES),
                    source: err.into(),
                })
            }
        }
        staged.commit()
    }
}

/// What a write records, prepared before the write.
#[derive(Debug, Default)]
pub struct PlanRecords {
    pub applied: Option<Applied>,
    pub rules: Option<RulesRecord>,
    /// Applied with `--confirm`: the deadline and what to roll back.
    pub pending: Option<PendingConfirm>,
    /// Original policies, with what this write taught.
    pub policies: Option<OriginalPolicies>,
    /// The rules written, for `status` (`applied-rules.json`).
    pub applied_rules: Option<AppliedRules>,
    /// The script line of each rule written (`origins.json`).
    pub origins: Option<RuleOrigins>,
}

/// The rules of a plan, as restore files of every family.
#[derive(Debug)]
pub struct RulesRecord {
    pub text: String,
    /// `Some`: they are the new last good ruleset; `None`: they wait for a
    /// confirm in `pending.rules` and the last good ruleset stays.
    pub last_good: Option<LastGood>,
}

/// The staged files of a plan, committed together after the write.
#[derive(Debug)]
pub struct StagedPlan<'a> {
    files: Vec<Staged<'a>>,
}

impl StagedPlan<'_> {
    /// Renames every file into place, then syncs the folder once for all
    /// of them (its own fsync per file cost a journal commit each).
    pub fn commit(mut self) -> Result<(), StateError> {
        let renamed = self.files.iter_mut().try_for_each(Staged::rename);
        // Those renamed before a failure are synced all the same.
        let synced = match self.files.iter().find(|f| f.committed) {
            Some(file) => file.sync_folder(),
            None => Ok(()),
        };
        renamed.and(synced)
    }
}

#[cfg(test)]
mod tests;
