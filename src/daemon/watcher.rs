//! File events for the daemon: the folders of the script and of every
//! module it imports are watched, not the files, because editors save by
//! writing a new file and renaming it over the old one. Bursts are
//! debounced into one event; the daemon's own reads are not events.

use std::collections::BTreeSet;
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
    folders: BTreeSet<PathBuf>,
    /// Files read that are not `*.rhai` (address lists): their changes
    /// count too.
    files: Arc<Mutex<BTreeSet<PathBuf>>>,
}

impl FolderWatcher {
    pub fn new(events: Sender<Event>) -> Result<FolderWatcher, String> {
        let files: Arc<Mutex<BTreeSet<PathBuf>>> = Arc::default();
        let read = files.clone();
        let handler = move |result: DebounceEventResult| {
            let event = match result {
                Ok(events) => {
                    let read = read.lock().map(|f| f.clone()).unwrap_or_default();
                    let paths: BTreeSet<PathBuf> = events
                        .iter()
                        .filter(|e| is_change(&e.event.kind))
                        .flat_map(|e| e.event.paths.iter().cloned())
                        .filter(|p| is_script(p) || read.contains(p))
                        .collect();
                    if paths.is_empty() {
                        return;
                    }
                    Event::Changed(paths.into_iter().collect())
                }
                Err(errors) => Event::WatchFailed(
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            };
            let _ = events.send(event);
        };
        // A tick of half the debounce: the watcher thread naps between checks
        // instead of spinning.
        let debouncer =
            new_debouncer(DEBOUNCE, Some(DEBOUNCE / 2), handler).map_err(|e| e.to_string())?;
        Ok(FolderWatcher {
            debouncer,
            folders: BTreeSet::new(),
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
    /// module lives in any more are dropped.
    pub fn watch_exactly(&mut self, wanted: BTreeSet<PathBuf>) -> Result<(), String> {
        for gone in self.folders.difference(&wanted) {
            let _ = self.debouncer.unwatch(gone);
        }
        for new in wanted.difference(&self.folders) {
            self.debouncer
                .watch(new, RecursiveMode::NonRecursive)
                .map_err(|e| format!("cannot watch `{}`: {e}", new.display()))?;
        }
        self.folders = wanted;
        Ok(())
    }

    pub fn folders(&self) -> &BTreeSet<PathBuf> {
        &self.folders
    }
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
