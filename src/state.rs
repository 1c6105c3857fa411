//! What fwscript remembers between runs (apply → **state** → rollback,
//! confirm): the last applied plan, the kernel as it was before that apply,
//! and a pending confirm. Every file is written whole or not at all (write
//! a temporary file, sync, rename, sync the folder), so a crash never
//! leaves half a state file.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::forms::KernelForms;
use crate::netfilter::Family;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the state folder `{path}`: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read `{path}`: {source}")]
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

/// The kernel's owned state from before an apply, per family, as an
/// iptables-restore file (fwscript's chains, hooks and the built-in chains'
/// policies; nothing of anyone else's): what `rollback` and an expired
/// confirm put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the epoch when it was taken.
    pub taken_at: u64,
    /// The script whose apply it precedes, as given on the command line.
    pub script: String,
    pub families: Vec<FamilySnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilySnapshot {
    pub family: Family,
    pub save: String,
}

/// An `apply --confirm SECS` that nobody has confirmed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingConfirm {
    /// Seconds since the epoch after which the snapshot comes back.
    pub deadline: u64,
    /// Tells this apply's timer from an earlier one's.
    pub token: String,
    pub script: String,
    /// What was applied, so a plan that was rolled back for want of a
    /// confirm is not applied again unattended.
    pub plan_digest: String,
}

/// A plan rolled back because nobody confirmed it: not applied again
/// unattended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub plan_digest: String,
    pub rolled_back_at: u64,
}

const REJECTED: &str = "rejected.json";
const SNAPSHOT: &str = "snapshot.json";
const PENDING: &str = "pending-confirm.json";
const LAST_PLAN: &str = "last-plan.rules";
const KERNEL_FORMS: &str = "kernel-forms.json";

pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Opens the folder, creating it readable by its owner only.
    pub fn open(path: &Path) -> Result<StateDir, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| StateError::Create {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(StateDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshot(&self) -> Result<Option<Snapshot>, StateError> {
        self.read_json(SNAPSHOT)
    }

    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StateError> {
        self.write_json(SNAPSHOT, snapshot)
    }

    pub fn pending_confirm(&self) -> Result<Option<PendingConfirm>, StateError> {
        self.read_json(PENDING)
    }

    pub fn save_pending_confirm(&self, pending: &PendingConfirm) -> Result<(), StateError> {
        self.write_json(PENDING, pending)
    }

    pub fn clear_pending_confirm(&self) -> Result<(), StateError> {
        self.remove(PENDING)
    }

    pub fn rejected(&self) -> Result<Option<Rejected>, StateError> {
        self.read_json(REJECTED)
    }

    pub fn save_rejected(&self, rejected: &Rejected) -> Result<(), StateError> {
        self.write_json(REJECTED, rejected)
    }

    pub fn clear_rejected(&self) -> Result<(), StateError> {
        self.remove(REJECTED)
    }

    /// The restore text of the last applied plan, both families, for people
    /// and for `watch` to compare against.
    pub fn save_last_plan(&self, text: &str) -> Result<(), StateError> {
        self.write(LAST_PLAN, text.as_bytes())
    }

    pub fn last_plan(&self) -> Result<Option<String>, StateError> {
        self.read(LAST_PLAN)
    }

    /// The kernel's forms of fwscript's rules after the last verified write,
    /// to find rules changed behind its back; empty before the first.
    pub fn kernel_forms(&self) -> Result<KernelForms, StateError> {
        Ok(self.read_json(KERNEL_FORMS)?.unwrap_or_default())
    }

    pub fn save_kernel_forms(&self, forms: &KernelForms) -> Result<(), StateError> {
        self.write_json(KERNEL_FORMS, forms)
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, StateError> {
        let Some(text) = self.read(name)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::Damaged {
                path: self.path.join(name),
                source,
            })
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let mut text = serde_json::to_string_pretty(value).expect("state serialises");
        text.push('\n');
        self.write(name, text.as_bytes())
    }

    fn read(&self, name: &str) -> Result<Option<String>, StateError> {
        let path = self.path.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    fn write(&self, name: &str, contents: &[u8]) -> Result<(), StateError> {
        let path = self.path.join(name);
        let temporary = self.path.join(format!(".{name}.{}", std::process::id()));
        let fail = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(contents)?;
            file.sync_all()?;
            fs::rename(&temporary, &path)?;
            // The rename is only durable once the folder is.
            File::open(&self.path)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        result.map_err(fail)
    }

    fn remove(&self, name: &str) -> Result<(), StateError> {
        let path = self.path.join(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Write { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn files_round_trip_and_the_folder_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        let mode = fs::metadata(state.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        assert_eq!(state.snapshot().unwrap(), None);
        let snapshot = Snapshot {
            taken_at: 1,
            script: "fw.rhai".into(),
            families: vec![FamilySnapshot {
                family: Family::Ipv4,
                save: "*filter\nCOMMIT\n".into(),
            }],
        };
        state.save_snapshot(&snapshot).unwrap();
        assert_eq!(state.snapshot().unwrap(), Some(snapshot));

        let pending = PendingConfirm {
            deadline: 9,
            token: "t".into(),
            script: "fw.rhai".into(),
            plan_digest: "d".into(),
        };
        state.save_pending_confirm(&pending).unwrap();
        assert_eq!(state.pending_confirm().unwrap(), Some(pending));
        state.clear_pending_confirm().unwrap();
        state.clear_pending_confirm().unwrap();
        assert_eq!(state.pending_confirm().unwrap(), None);

        state.save_last_plan("# ipv4\n").unwrap();
        assert_eq!(state.last_plan().unwrap().as_deref(), Some("# ipv4\n"));
        let leftovers: Vec<_> = fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn a_damaged_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        fs::write(dir.path().join(SNAPSHOT), "{ half").unwrap();
        let err = state.snapshot().unwrap_err();
        assert!(err.to_string().contains("is damaged"), "{err}");
    }
}
