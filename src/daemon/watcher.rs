//! File events for the daemon: the folders of the script and of every
//! module it imports are watched, not the files, because editors save by
//! writing a new file and renaming it over the old one. Bursts are
//! debounced into one event; the daemon's own reads are not events.
//!
//! A watch belongs to the folder it was made on, not to its path: a folder
//! deleted and created again (a deploy tool replacing a directory, a `git
//! checkout` of another branch) is a new folder nobody watches. So each
//! watched folder's identity is kept and checked, and a replaced or
//! reappeared folder is watched again.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify_debouncer_full::notify::event::{AccessKind, AccessMode, EventKind};
use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};

use super::Event;

/// How long a burst of writes must be quiet before it counts as one save.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

pub struct FolderWatcher {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    /// Each folder wanted, and the identity (device, inode) of the folder
    /// watched at that path; `None` while it could not be watched.
    folders: BTreeMap<PathBuf, Option<(u64, u64)>>,
    /// Files read that are not `*.rhai` (address lists): their changes
    /// count too.
    files: Arc<Mutex<BTreeSet<PathBuf>>>,
}

impl FolderWatcher {
    pub fn new(events: Sender<Event>) -> Result<FolderWatcher, String> {
        let files: Arc<Mutex<BTreeSet<PathBuf>>> = Arc::default();
        let read = files.clone();
        let handler = move |result: DebounceEventResult| {
            let events_of_this_burst = match result {
                Ok(events) => events,
                Err(errors) => {
                    let message = errors.iter().map(ToString::to_string).collect::<Vec<_>>();
                    let _ = events.send(Event::WatchFailed(message.join("; ")));
                    return;
                }
            };
            let read = read.lock().map(|f| f.clone()).unwrap_or_default();
            let mut scripts = BTreeSet::new();
            let mut moved = BTreeSet::new();
            for event in &events_of_this_burst {
                for path in &event.event.paths {
                    // A symlink made or renamed into place (`lib ->
                    // libB`, `lists -> listsB`) may lead a module or a list
                    // elsewhere: the script is evaluated again.
                    let counted = is_script(path) || read.contains(path) || is_symlink(path);
                    if counted && is_change(&event.event.kind) {
                        scripts.insert(path.clone());
                    } else if is_move(&event.event.kind) {
                        moved.insert(path.clone());
                    }
                }
            }
            // Folders first: a replaced folder must be watched again before
            // the changes in it are evaluated.
            if !moved.is_empty() {
                let _ = events.send(Event::Moved(moved.into_iter().collect()));
            }
            if !scripts.is_empty() {
                let _ = events.send(Event::Changed(scripts.into_iter().collect()));
            }
        };
        // A tick of half the debounce: the watcher thread naps between checks
        // instead of spinning.
        let debouncer =
            new_debouncer(DEBOUNCE, Some(DEBOUNCE / 2), handler).map_err(|e| e.to_string())?;
        Ok(FolderWatcher {
            debouncer,
            folders: BTreeMap::new(),
            files,
        })
    }

    /// Counts changes of these files too, whatever their names (the
    /// address lists a script read), by their real paths.
    pub fn count_files<'a>(&self, sources: impl IntoIterator<Item = &'a PathBuf>) {
        let files: BTreeSet<PathBuf> = sources
            .into_iter()
            .filter(|p| !is_script(p))
            .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
            .collect();
        if let Ok(mut read) = self.files.lock() {
            *read = files;
        }
    }

    /// Watches exactly `wanted`: new imports' folders are added, folders no
    /// module lives in any more are dropped. Returns what could not be
    /// watched (yet): those folders stay wanted and are tried again.
    pub fn watch_exactly(&mut self, wanted: BTreeSet<PathBuf>) -> Vec<String> {
        let gone: Vec<PathBuf> = self
            .folders
            .keys()
            .filter(|f| !wanted.contains(*f))
            .cloned()
            .collect();
        for folder in gone {
            if let Some(Some(_)) = self.folders.remove(&folder) {
                let _ = self.debouncer.unwatch(&folder);
            }
        }
        let mut problems = Vec::new();
        for folder in wanted {
            if self.folders.contains_key(&folder) {
                continue;
            }
            let identity = self.arm(&folder).map_err(|e| problems.push(e)).ok();
            self.folders.insert(folder, identity);
        }
        problems
    }

    /// The folders wanted.
    pub fn folders(&self) -> BTreeSet<PathBuf> {
        self.folders.keys().cloned().collect()
    }

    /// Watches again every folder that was replaced, or that reappeared
    /// since it could not be watched. Returns those folders: their files
    /// may have changed unseen.
    pub fn rearm_changed(&mut self) -> Vec<PathBuf> {
        let mut rearmed = Vec::new();
        let folders: Vec<(PathBuf, Option<(u64, u64)>)> =
            self.folders.iter().map(|(f, i)| (f.clone(), *i)).collect();
        for (folder, watched) in folders {
            let now = identity(&folder);
            if now == watched {
                continue;
            }
            if watched.is_some() {
                let _ = self.debouncer.unwatch(&folder);
            }
            let identity = match now {
                Some(_) => self
                    .arm(&folder)
                    .map_err(|err| tracing::debug!("{err}; trying again"))
                    .ok(),
                None => None,
            };
            if identity.is_some() {
                rearmed.push(folder.clone());
            }
            self.folders.insert(folder, identity);
        }
        rearmed
    }

    /// Forgets the watches of wanted folders among `paths` (removed or
    /// renamed away: a folder created again at the same path may even get
    /// the same inode). Returns whether any was wanted; [`Self::rearm_changed`]
    /// then watches them again where they are back.
    pub fn forget(&mut self, paths: &[PathBuf]) -> bool {
        let mut hit = false;
        for path in paths {
            if let Some(identity) = self.folders.get_mut(path) {
                if identity.take().is_some() {
                    let _ = self.debouncer.unwatch(path);
                }
                hit = true;
            }
        }
        hit
    }

    /// Watches every folder anew (SIGHUP): whatever happened to them.
    pub fn rearm_all(&mut self) {
        let folders: Vec<PathBuf> = self.folders.keys().cloned().collect();
        for folder in folders {
            if let Some(Some(_)) = self.folders.get(&folder) {
                let _ = self.debouncer.unwatch(&folder);
            }
            let identity = self.arm(&folder).ok();
            self.folders.insert(folder, identity);
        }
    }

    fn arm(&mut self, folder: &Path) -> Result<(u64, u64), String> {
        let before = identity(folder);
        self.debouncer
            .watch(folder, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch `{}`: {e}", folder.display()))?;
        before.ok_or_else(|| format!("cannot watch `{}`: it is gone", folder.display()))
    }
}

/// A folder's identity: which folder is at that path now.
fn identity(folder: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(folder).ok()?;
    meta.is_dir().then(|| (meta.dev(), meta.ino()))
}

/// Writes, creations, renames, deletions and permission changes count;
/// opening and reading (the daemon's own evaluation) do not.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Creations, removals and renames: how a folder is replaced.
fn is_move(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(notify_debouncer_full::notify::event::ModifyKind::Name(_))
    )
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Scripts and modules end in `.rhai`; an editor's swap and backup files
/// (`.fw.rhai.swp`, `fw.rhai~`, vim's `4913`) do not. Address lists count
/// by their exact path (see [`FolderWatcher::count_files`]).
fn is_script(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rhai")
}

/// The folders holding `sources` (the script first).
pub fn folders_of<'a>(sources: impl IntoIterator<Item = &'a PathBuf>) -> BTreeSet<PathBuf> {
    sources
        .into_iter()
        .filter_map(|p| p.canonicalize().ok().or_else(|| Some(p.clone())))
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect()
}

#[cfg(test)]
mod tests {
    use notify_debouncer_full::notify::event::{CreateKind, ModifyKind, RenameMode};

    use super::*;

    #[test]
    fn own_reads_are_not_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
    }

    #[test]
    fn editor_droppings_are_not_scripts() {
        assert!(is_script(Path::new("/etc/fw/fw.rhai")));
        for other in [".fw.rhai.swp", "fw.rhai~", "4913", "fw.rhai.tmp"] {
            assert!(!is_script(Path::new(other)), "{other}");
        }
    }
}
