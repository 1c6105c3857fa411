//! Reads started early (backend ↔ **prefetch** ↔ iptables tools): `plan`
//! and `apply` start one `*-save` per family and one `ipset save` as soon as
//! they may read (for `apply`: once it holds the lock and has settled an
//! expired confirm), then evaluate the script while the tools run. On a
//! 10,000-rule firewall, or with a 100,000-address list, the script and its
//! rendering take about as long as the read, so a no-op apply costs little
//! more than the read itself.
//!
//! Each early read answers the first read of its kind and nothing else:
//! every later read (the read-back after a write) runs the tool again. A
//! write through this backend throws away the early reads not yet taken, so
//! a read never predates a write made through it. Between the early read and
//! its use only other programs can change the kernel (the lock keeps other
//! fwscripts out), exactly as they can between any read and write; the
//! verify after a write catches it.
//!
//! With a [`ReadCache`], a family's rules read at the nf_tables generation
//! the kernel is still at come from the cache instead of a save, and each
//! save made while the generation stood still is kept for the next command.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::{Backend, BackendError, Generation};
use crate::live::LiveState;
use crate::netfilter::{Family, Table};
use crate::sets::LiveSet;
use crate::state::ReadCache;

/// A read of the rules, and the generation it is known to be of.
type Rules<T> = Result<(T, Option<Generation>), BackendError>;
/// An early read of the rules, parsed on its own thread too.
type Read = JoinHandle<Rules<LiveState>>;
/// The early read of the sets, parsed on its thread.
type SetRead = JoinHandle<Result<Vec<LiveSet>, BackendError>>;

pub struct Prefetch<B> {
    inner: B,
    early: Mutex<Early>,
    cache: Option<Arc<ReadCache>>,
    /// The generation of each family's first read (the one a write is
    /// planned on), where known.
    read_at: Mutex<BTreeMap<Family, Option<Generation>>>,
}

/// The reads not yet taken.
#[derive(Default)]
struct Early {
    families: Vec<(Family, Read)>,
    sets: Option<SetRead>,
}

impl<B: Backend + Clone + Send + 'static> Prefetch<B> {
    /// Starts reading every family the host can do, and the ipsets, each on
    /// a thread; the rules through `cache` when there is one.
    pub fn start(inner: B, cache: Option<ReadCache>) -> Prefetch<B> {
        let cache = cache.map(Arc::new);
        let families = Family::ALL
            .into_iter()
            .filter(|&family| inner.availability(family).is_ok())
            .map(|family| {
                let backend = inner.clone();
                let cache = cache.clone();
                let read = std::thread::spawn(move || live(&backend, family, cache.as_deref()));
                (family, read)
            })
            .collect();
        let backend = inner.clone();
        let sets = Some(std::thread::spawn(move || backend.live_sets()));
        Prefetch {
            inner,
            early: Mutex::new(Early { families, sets }),
            cache,
            read_at: Mutex::new(BTreeMap::new()),
        }
    }
}

/// [`save`], parsed.
fn live<B: Backend + ?Sized>(
    backend: &B,
    family: Family,
    cache: Option<&ReadCache>,
) -> Rules<LiveState> {
    let (text, at) = save(backend, family, cache)?;
    Ok((LiveState::parse(family, &text)?, at))
}

/// A save of `family`, or the one kept at the generation the kernel is
/// still at, with that generation. A save is kept (and its generation
/// known) only when the generation was the same before and after it: a
/// commit in between may or may not be in its text.
fn save<B: Backend + ?Sized>(
    backend: &B,
    family: Family,
    cache: Option<&ReadCache>,
) -> Rules<String> {
    let Some(cache) = cache else {
        return Ok((backend.save(family)?, None));
    };
    let before = backend.generation();
    if let Some((text, at)) = before.and_then(|at| Some((cache.load(family, at)?, at))) {
        tracing::debug!("{family} rules as read before: nf_tables has not changed since");
        return Ok((text, Some(at)));
    }
    let text = backend.save(family)?;
    let at = before.filter(|&at| backend.generation() == Some(at));
    if let Some(at) = at {
        cache.store(family, at, &text);
    }
    Ok((text, at))
}

/// `live` with each table's chains in the order `iptables-nft-save` lists
/// them, built-in chains first, then the others by name: a chain a write
/// made was merged in at the end.
fn in_save_order(live: &LiveState) -> std::borrow::Cow<'_, LiveState> {
    use crate::live::LiveChain;
    // Built-in chains keep their order among themselves (equal keys).
    fn key(chain: &LiveChain) -> (bool, &str) {
        match chain.policy {
            Some(_) => (false, ""),
            None => (true, chain.name.as_str()),
        }
    }
    let order = |a: &LiveChain, b: &LiveChain| key(a).cmp(&key(b));
    let sorted = live
        .tables
        .values()
        .all(|table| table.chains.is_sorted_by(|a, b| order(a, b).is_le()));
    if sorted {
        return std::borrow::Cow::Borrowed(live);
    }
    let mut live = live.clone();
    for table in live.tables.values_mut() {
        table.chains.sort_by(order);
    }
    std::borrow::Cow::Owned(live)
}

impl<B> Prefetch<B> {
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn early(&self) -> std::sync::MutexGuard<'_, Early> {
        self.early.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes the generation the first read of `family` was made at.
    fn note<T>(&self, family: Family, read: Rules<T>) -> Result<T, BackendError> {
        let (value, at) = read?;
        let mut read_at = self.read_at.lock().unwrap_or_else(|e| e.into_inner());
        read_at.entry(family).or_insert(at);
        Ok(value)
    }

    fn take(&self, family: Family) -> Option<Read> {
        let mut early = self.early();
        let at = early.families.iter().position(|(f, _)| *f == family)?;
        Some(early.families.swap_remove(at).1)
    }

    /// Waits for the early reads not taken and drops them: a write must not
    /// race a read of the kernel it is changing.
    fn discard(&self) {
        let early = std::mem::take(&mut *self.early());
        for (_, read) in early.families {
            let _ = read.join();
        }
        if let Some(read) = early.sets {
            let _ = read.join();
        }
    }
}

/// The early read's result; a read that panicked is read again.
fn join<T>(
    read: JoinHandle<Result<T, BackendError>>,
    again: impl FnOnce() -> Result<T, BackendError>,
) -> Result<T, BackendError> {
    read.join().unwrap_or_else(|_| again())
}

impl<B: Backend> Backend for Prefetch<B> {
    fn availability(&self, family: Family) -> Result<(), String> {
        self.inner.availability(family)
    }

    /// The early read in iptables-save's form: the tables fwscript may
    /// write, as they were read.
    fn save(&self, family: Family) -> Result<String, BackendError> {
        let cache = self.cache.as_deref();
        let read = match self.take(family) {
            Some(read) => join(read, || live(&self.inner, family, cache))
                .map(|(live, at)| (live.to_string(), at)),
            None => save(&self.inner, family, cache),
        };
        self.note(family, read)
    }

    fn live(&self, family: Family) -> Result<LiveState, BackendError> {
        let cache = self.cache.as_deref();
        let read = match self.take(family) {
            Some(read) => join(read, || live(&self.inner, family, cache)),
            None => live(&self.inner, family, cache),
        };
        self.note(family, read)
    }

    fn generation(&self) -> Option<Generation> {
        self.inner.generation()
    }

    /// Keeps what the kernel holds after a write for the next command, when
    /// the kernel moved on by exactly the write's commits since every
    /// family was first read at one generation: then nobody else committed
    /// in between, and the families as read plus what the write changed
    /// (as read back) are the kernel at this generation.
    fn written(&self, commits: u32, now: &[&LiveState]) {
        // Only sets changed: nf_tables is as it was read, and kept so.
        if commits == 0 {
            return;
        }
        let (Some(cache), Some(at)) = (&self.cache, self.inner.generation()) else {
            return;
        };
        let read_at = self
            .read_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let planned_on = |live: &&LiveState| read_at.get(&live.family).copied().flatten();
        let before = Generation {
            id: at.id.wrapping_sub(commits),
            ..at
        };
        if now.iter().all(|live| planned_on(live) == Some(before)) {
            for live in now {
                cache.store(live.family, at, &in_save_order(live).to_string());
            }
        }
    }

    fn restore(&self, family: Family, input: &str) -> Result<(), BackendError> {
        self.discard();
        self.inner.restore(family, input)
    }

    /// Counters are read for `status`, never early.
    fn save_counters(&self, family: Family) -> Result<String, BackendError> {
        self.inner.save_counters(family)
    }

    fn lists_chains_cheaply(&self) -> bool {
        self.inner.lists_chains_cheaply()
    }

    fn legacy_save(&self, family: Family) -> Option<String> {
        self.inner.legacy_save(family)
    }

    fn nft_chains(&self) -> Option<(String, bool)> {
        self.inner.nft_chains()
    }

    fn nft_table(&self, family: &str, name: &str) -> Option<String> {
        self.inner.nft_table(family, name)
    }

    /// Always the kernel as it is now, never cut from an early read.
    fn list_chain(
        &self,
        family: Family,
        table: Table,
        chain: &str,
    ) -> Result<Option<String>, BackendError> {
        self.inner.list_chain(family, table, chain)
    }

    /// The sets are read early parsed ([`Backend::live_sets`]); asked for
    /// as text, they are read again.
    fn save_sets(&self) -> Result<String, BackendError> {
        self.early().sets.take();
        self.inner.save_sets()
    }

    /// Given once and handed over: a big set's entries are megabytes, not
    /// worth a copy kept for nobody.
    fn live_sets(&self) -> Result<Vec<LiveSet>, BackendError> {
        let early = self.early().sets.take();
        match early {
            Some(read) => join(read, || self.inner.live_sets()),
            None => self.inner.live_sets(),
        }
    }

    fn list_sets(&self) -> Result<String, BackendError> {
        self.inner.list_sets()
    }

    fn restore_sets(&self, input: &str) -> Result<(), BackendError> {
        self.discard();
        self.inner.restore_sets(input)
    }
}

impl<B> Drop for Prefetch<B> {
    /// A command that ends before its survey (a script error) does not wait
    /// for reads it will never use: their threads are let go, and a tool
    /// still running ends on the closed pipe once the process is gone.
    fn drop(&mut self) {
        let early = std::mem::take(self.early.get_mut().unwrap_or_else(|e| e.into_inner()));
        let running = !early.families.is_empty() || early.sets.is_some();
        if let (true, Some(cache)) = (running, &self.cache) {
            cache.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::fake::Fake;

    const ONE_CHAIN: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FWS-A - [0:0]\nCOMMIT\n";

    #[test]
    fn the_early_read_answers_the_first_save_only() {
        let kernel = Arc::new(Fake::new().with_save(Family::Ipv4, ONE_CHAIN));
        let backend = Prefetch::start(kernel.clone(), None);
        // Wait until both early reads ran, then change the kernel behind
        // the backend's back.
        while kernel.saves() < 2 {
            std::thread::yield_now();
        }
        kernel
            .restore(Family::Ipv4, "*filter\n-X FWS-A\nCOMMIT\n")
            .unwrap();
        assert!(
            backend.save(Family::Ipv4).unwrap().contains("FWS-A"),
            "early"
        );
        assert!(
            !backend.save(Family::Ipv4).unwrap().contains("FWS-A"),
            "read again"
        );
        assert_eq!(kernel.saves(), 3);
    }

    #[test]
    fn a_write_throws_the_early_reads_away() {
        let kernel = Arc::new(Fake::new().with_save(Family::Ipv4, ONE_CHAIN));
        let backend = Prefetch::start(kernel.clone(), None);
        backend
            .restore(Family::Ipv4, "*filter\n-X FWS-A\nCOMMIT\n")
            .unwrap();
        assert!(!backend.save(Family::Ipv4).unwrap().contains("FWS-A"));
        assert!(!backend.save(Family::Ipv6).unwrap().contains("FWS-A"));
    }

    #[test]
    fn the_sets_are_read_early_once_and_a_set_write_throws_the_reads_away() {
        let fake = Arc::new(Fake::new().without(Family::Ipv6));
        let backend = Prefetch::start(fake.clone(), None);
        assert_eq!(backend.save_sets().unwrap(), "");
        assert_eq!(fake.set_reads().0, 1, "read once, early");
        assert_eq!(backend.save_sets().unwrap(), "");
        assert_eq!(fake.set_reads().0, 2, "a second read goes to the kernel");
        fake.restore(Family::Ipv4, "*filter\n-N OTHER\nCOMMIT\n")
            .unwrap();
        backend
            .restore_sets("create fws-a hash:net family inet maxelem 65536\n")
            .unwrap();
        assert!(backend.save(Family::Ipv4).unwrap().contains(":OTHER - "));
        assert!(backend.save_sets().unwrap().contains("create fws-a "));
    }

    /// An nf_tables-like kernel with a state folder whose read cache the
    /// prefetching backends of one test share, as commands in turn would.
    struct Cached {
        kernel: Arc<Fake>,
        _dir: tempfile::TempDir,
        state: crate::state::StateDir,
    }

    impl Cached {
        fn new() -> Cached {
            let dir = tempfile::tempdir().unwrap();
            let state = crate::state::StateDir::open(&dir.path().join("state")).unwrap();
            let kernel = Arc::new(
                Fake::new()
                    .with_generation()
                    .with_save(Family::Ipv4, ONE_CHAIN),
            );
            Cached {
                kernel,
                _dir: dir,
                state,
            }
        }

        /// The next command's backend.
        fn command(&self) -> Prefetch<Arc<Fake>> {
            Prefetch::start(self.kernel.clone(), self.state.read_cache(true))
        }

        /// Both families as the next command reads them, its early reads
        /// all taken.
        fn both(&self) -> (LiveState, LiveState) {
            let backend = self.command();
            let v4 = backend.live(Family::Ipv4).unwrap();
            (v4, backend.live(Family::Ipv6).unwrap())
        }
    }

    #[test]
    fn an_unchanged_kernel_is_read_once_and_a_change_anywhere_reads_it_again() {
        let cached = Cached::new();
        let first = cached.both();
        let saves = cached.kernel.saves();
        let second = cached.both();
        assert_eq!(first, second);
        assert_eq!(cached.kernel.saves(), saves, "the same generation: no save");
        cached.kernel.commit_elsewhere();
        cached.both();
        assert_eq!(
            cached.kernel.saves(),
            saves + 2,
            "a commit elsewhere: read again"
        );
    }

    #[test]
    fn a_command_that_only_reads_keeps_nothing() {
        let cached = Cached::new();
        let reader = Prefetch::start(cached.kernel.clone(), cached.state.read_cache(false));
        reader.live(Family::Ipv4).unwrap();
        reader.live(Family::Ipv6).unwrap();
        let saves = cached.kernel.saves();
        cached.both();
        assert_eq!(cached.kernel.saves(), saves + 2);
    }

    /// The survey, the write and its read-back of a one-rule change, as
    /// `apply` makes them; what the next command reads.
    fn write_one_rule(cached: &Cached, between: impl FnOnce()) -> (LiveState, usize) {
        let backend = cached.command();
        let before = backend.live(Family::Ipv4).unwrap();
        backend.live(Family::Ipv6).unwrap();
        between();
        backend
            .restore(Family::Ipv4, "*filter\n-A FWS-A -j ACCEPT\nCOMMIT\n")
            .unwrap();
        let mut now = before.clone();
        let table = now.tables.get_mut(&Table::Filter).unwrap();
        table
            .chain_mut("FWS-A")
            .unwrap()
            .rules
            .push(crate::live::LiveRule::new("-j ACCEPT"));
        let v6 = LiveState::empty(Family::Ipv6);
        backend.written(1, &[&now, &v6]);
        let saves = cached.kernel.saves();
        let (next, _) = cached.both();
        (next, cached.kernel.saves() - saves)
    }

    #[test]
    fn after_a_write_the_next_command_reads_what_the_write_left() {
        let cached = Cached::new();
        let (next, saves) = write_one_rule(&cached, || {});
        assert_eq!(saves, 0, "taken from the write's record");
        assert_eq!(next, cached.kernel.state(Family::Ipv4));
        assert!(next.to_string().contains("-A FWS-A -j ACCEPT"));
    }

    #[test]
    fn a_commit_between_the_read_and_the_write_keeps_nothing() {
        let cached = Cached::new();
        let (next, saves) = write_one_rule(&cached, || {
            cached
                .kernel
                .restore(
                    Family::Ipv4,
                    "*filter\n-A INPUT -s 192.0.2.7/32 -j DROP\nCOMMIT\n",
                )
                .unwrap();
        });
        assert!(saves > 0, "read again");
        assert!(
            next.to_string()
                .contains("-A INPUT -s 192.0.2.7/32 -j DROP"),
            "{next}"
        );
    }

    #[test]
    fn a_kept_read_lists_chains_as_a_save_does() {
        let merged = LiveState::parse(
            Family::Ipv4,
            "*filter\n:INPUT DROP [0:0]\n:FWS-B - [0:0]\n:OUTPUT ACCEPT [0:0]\n:FWS-A - [0:0]\n\
             -A INPUT -j FWS-B\n-A FWS-A -j ACCEPT\nCOMMIT\n",
        )
        .unwrap();
        let chains: Vec<String> = in_save_order(&merged).tables[&Table::Filter]
            .chains
            .iter()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(chains, ["INPUT", "OUTPUT", "FWS-A", "FWS-B"]);
        let sorted = in_save_order(&merged).into_owned();
        assert!(matches!(
            in_save_order(&sorted),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
