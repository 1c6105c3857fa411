//! Reads started early (backend ↔ **prefetch** ↔ iptables tools): a
//! command that is about to evaluate a script starts reading the kernel at
//! the same time, since neither needs the other. With a 100,000-address
//! list, evaluating and `ipset save` each take about as long as everything
//! else a no-op apply does together.
//!
//! The reads are the kernel as it is now: a command starts them once it
//! holds the state folder's lock, as it would read then anyway. They stand
//! for every read until the first write through this backend, after which
//! each read goes to the kernel again.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::thread::JoinHandle;

use super::{Backend, BackendError};
use crate::netfilter::Family;

pub struct Prefetch<B> {
    inner: B,
    reads: Mutex<Reads>,
}

type Pending = JoinHandle<Result<String, BackendError>>;

/// Each read: started, done, or none (after a write, or a failed read,
/// which the next call tries again).
enum Read {
    Started(Pending),
    Done(String),
}

#[derive(Default)]
struct Reads {
    families: BTreeMap<Family, Read>,
    sets: Option<Read>,
}

impl<B: Backend + Clone + Send + 'static> Prefetch<B> {
    /// Starts reading every family this host can do, and the ipsets.
    pub fn start(inner: B) -> Prefetch<B> {
        let mut reads = Reads::default();
        for family in Family::ALL {
            if inner.availability(family).is_ok() {
                let backend = inner.clone();
                let read = std::thread::spawn(move || backend.save(family));
                reads.families.insert(family, Read::Started(read));
            }
        }
        let backend = inner.clone();
        reads.sets = Some(Read::Started(std::thread::spawn(move || {
            backend.save_sets()
        })));
        Prefetch {
            inner,
            reads: Mutex::new(reads),
        }
    }
}

impl<B> Prefetch<B> {
    fn reads(&self) -> std::sync::MutexGuard<'_, Reads> {
        self.reads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything read so far is the past once this backend writes.
    fn forget(&self) {
        *self.reads() = Reads::default();
    }
}

/// The read's text, waiting for it if needed; `None` when there is none
/// to give (the caller reads afresh).
fn take(slot: &mut Option<Read>) -> Option<Result<String, BackendError>> {
    match slot.take()? {
        Read::Done(text) => {
            *slot = Some(Read::Done(text.clone()));
            Some(Ok(text))
        }
        Read::Started(pending) => match pending.join() {
            Ok(Ok(text)) => {
                *slot = Some(Read::Done(text.clone()));
                Some(Ok(text))
            }
            Ok(Err(err)) => Some(Err(err)),
            // The read panicked: read again.
            Err(_) => None,
        },
    }
}

impl<B: Backend> Backend for Prefetch<B> {
    fn availability(&self, family: Family) -> Result<(), String> {
        self.inner.availability(family)
    }

    fn save(&self, family: Family) -> Result<String, BackendError> {
        let mut reads = self.reads();
        let mut slot = reads.families.remove(&family);
        let read = take(&mut slot);
        if let Some(slot) = slot {
            reads.families.insert(family, slot);
        }
        drop(reads);
        read.unwrap_or_else(|| self.inner.save(family))
    }

    fn restore(&self, family: Family, input: &str) -> Result<(), BackendError> {
        self.forget();
        self.inner.restore(family, input)
    }

    /// Counters are read for `status`, never early.
    fn save_counters(&self, family: Family) -> Result<String, BackendError> {
        self.inner.save_counters(family)
    }

    /// Given once: only the survey reads the sets, and a big set's save is
    /// megabytes, not worth a copy kept for nobody.
    fn save_sets(&self) -> Result<String, BackendError> {
        let pending = self.reads().sets.take();
        match pending {
            Some(Read::Started(read)) => read.join().unwrap_or_else(|_| self.inner.save_sets()),
            Some(Read::Done(text)) => Ok(text),
            None => self.inner.save_sets(),
        }
    }

    fn list_sets(&self) -> Result<String, BackendError> {
        self.inner.list_sets()
    }

    fn restore_sets(&self, input: &str) -> Result<(), BackendError> {
        self.forget();
        self.inner.restore_sets(input)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::fake::Fake;

    /// A fake shared between the prefetcher's threads and the test.
    #[derive(Clone)]
    struct Shared(Arc<Fake>);

    impl Backend for Shared {
        fn availability(&self, family: Family) -> Result<(), String> {
            self.0.availability(family)
        }
        fn save(&self, family: Family) -> Result<String, BackendError> {
            self.0.save(family)
        }
        fn restore(&self, family: Family, input: &str) -> Result<(), BackendError> {
            self.0.restore(family, input)
        }
        fn save_counters(&self, family: Family) -> Result<String, BackendError> {
            self.0.save_counters(family)
        }
        fn save_sets(&self) -> Result<String, BackendError> {
            self.0.save_sets()
        }
        fn list_sets(&self) -> Result<String, BackendError> {
            self.0.list_sets()
        }
        fn restore_sets(&self, input: &str) -> Result<(), BackendError> {
            self.0.restore_sets(input)
        }
    }

    #[test]
    fn reads_stand_until_the_first_write() {
        let fake = Arc::new(Fake::new().without(Family::Ipv6));
        let backend = Prefetch::start(Shared(fake.clone()));
        let first = backend.save(Family::Ipv4).unwrap();
        assert_eq!(backend.save(Family::Ipv4).unwrap(), first);
        assert_eq!(backend.save_sets().unwrap(), "");
        assert_eq!(fake.saves(), 1, "read once, early");
        assert_eq!(fake.set_reads().0, 1);
        // The sets are given once; a second read goes to the kernel.
        assert_eq!(backend.save_sets().unwrap(), "");
        assert_eq!(fake.set_reads().0, 2);
        // Someone else's change is not seen until this backend writes…
        fake.restore(Family::Ipv4, "*filter\n-N OTHER\nCOMMIT\n")
            .unwrap();
        assert_eq!(backend.save(Family::Ipv4).unwrap(), first);
        // …and every read after that goes to the kernel.
        backend
            .restore_sets("create fws-a hash:net family inet maxelem 65536\n")
            .unwrap();
        assert!(backend.save(Family::Ipv4).unwrap().contains(":OTHER - "));
        assert!(backend.save_sets().unwrap().contains("create fws-a "));
        assert_eq!(fake.saves(), 2);
        assert_eq!(fake.set_reads().0, 3);
    }
}
