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

use std::sync::Mutex;
use std::thread::JoinHandle;

use super::{Backend, BackendError};
use crate::netfilter::{Family, Table};

type Read = JoinHandle<Result<String, BackendError>>;

pub struct Prefetch<B> {
    inner: B,
    early: Mutex<Early>,
}

/// The reads not yet taken.
#[derive(Default)]
struct Early {
    families: Vec<(Family, Read)>,
    sets: Option<Read>,
}

impl<B: Backend + Clone + Send + 'static> Prefetch<B> {
    /// Starts reading every family the host can do, and the ipsets, each on
    /// a thread.
    pub fn start(inner: B) -> Prefetch<B> {
        let families = Family::ALL
            .into_iter()
            .filter(|&family| inner.availability(family).is_ok())
            .map(|family| {
                let backend = inner.clone();
                let read = std::thread::spawn(move || backend.save(family));
                (family, read)
            })
            .collect();
        let backend = inner.clone();
        let sets = Some(std::thread::spawn(move || backend.save_sets()));
        Prefetch {
            inner,
            early: Mutex::new(Early { families, sets }),
        }
    }
}

impl<B> Prefetch<B> {
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn early(&self) -> std::sync::MutexGuard<'_, Early> {
        self.early.lock().unwrap_or_else(|e| e.into_inner())
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
fn join(
    read: Read,
    again: impl FnOnce() -> Result<String, BackendError>,
) -> Result<String, BackendError> {
    read.join().unwrap_or_else(|_| again())
}

impl<B: Backend> Backend for Prefetch<B> {
    fn availability(&self, family: Family) -> Result<(), String> {
        self.inner.availability(family)
    }

    fn save(&self, family: Family) -> Result<String, BackendError> {
        match self.take(family) {
            Some(read) => join(read, || self.inner.save(family)),
            None => self.inner.save(family),
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

    /// Always the kernel as it is now, never cut from an early read.
    fn list_chain(
        &self,
        family: Family,
        table: Table,
        chain: &str,
    ) -> Result<Option<String>, BackendError> {
        self.inner.list_chain(family, table, chain)
    }

    /// Given once and handed over: a big set's save is megabytes, not worth
    /// a copy kept for nobody.
    fn save_sets(&self) -> Result<String, BackendError> {
        let early = self.early().sets.take();
        match early {
            Some(read) => join(read, || self.inner.save_sets()),
            None => self.inner.save_sets(),
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
        *self.early.get_mut().unwrap_or_else(|e| e.into_inner()) = Early::default();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::fake::Fake;

    /// A fake kernel shared with the test, so it can be changed behind the
    /// prefetching backend's back.
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

    const ONE_CHAIN: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FWS-A - [0:0]\nCOMMIT\n";

    #[test]
    fn the_early_read_answers_the_first_save_only() {
        let kernel = Arc::new(Fake::new().with_save(Family::Ipv4, ONE_CHAIN));
        let backend = Prefetch::start(Shared(kernel.clone()));
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
        let backend = Prefetch::start(Shared(kernel.clone()));
        backend
            .restore(Family::Ipv4, "*filter\n-X FWS-A\nCOMMIT\n")
            .unwrap();
        assert!(!backend.save(Family::Ipv4).unwrap().contains("FWS-A"));
        assert!(!backend.save(Family::Ipv6).unwrap().contains("FWS-A"));
    }

    #[test]
    fn the_sets_are_read_early_once_and_a_set_write_throws_the_reads_away() {
        let fake = Arc::new(Fake::new().without(Family::Ipv6));
        let backend = Prefetch::start(Shared(fake.clone()));
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
}
