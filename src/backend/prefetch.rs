//! Reading the kernel ahead of time (backend ↔ kernel, started early):
//! `plan` and `apply` start one `*-save` per family as soon as they may
//! read (for `apply`: once it holds the lock and has settled an expired
//! confirm), then evaluate the script while the tools run. On a
//! 10,000-rule firewall the script and its rendering take about as long as
//! the read, so a no-op apply costs little more than the read itself.
//!
//! Each family's early read answers the first [`Backend::save`] of that
//! family and nothing else: every later read (the read-back after a
//! write) runs the tool again. A write through this backend throws away the
//! early reads not yet taken, so a read never predates a write made
//! through it. Between the early read and its use only other programs can
//! change the kernel (the lock keeps other fwscripts out), exactly as they
//! can between any read and write; the verify after a write catches it.

use std::sync::Mutex;
use std::thread::JoinHandle;

use super::{Backend, BackendError};
use crate::netfilter::{Family, Table};

type Read = JoinHandle<Result<String, BackendError>>;

pub struct Prefetch<B> {
    inner: B,
    early: Mutex<Vec<(Family, Read)>>,
}

impl<B: Backend + Clone + Send + 'static> Prefetch<B> {
    /// Starts reading every family the host can do, each on a thread.
    pub fn start(inner: B) -> Prefetch<B> {
        let early = Family::ALL
            .into_iter()
            .filter(|&family| inner.availability(family).is_ok())
            .map(|family| {
                let backend = inner.clone();
                let read = std::thread::spawn(move || backend.save(family));
                (family, read)
            })
            .collect();
        Prefetch {
            inner,
            early: Mutex::new(early),
        }
    }
}

impl<B> Prefetch<B> {
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn take(&self, family: Family) -> Option<Read> {
        let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
        let at = early.iter().position(|(f, _)| *f == family)?;
        Some(early.swap_remove(at).1)
    }

    /// Waits for the early reads not taken and drops them.
    fn discard(&self) {
        let early = std::mem::take(&mut *self.early.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, read) in early {
            let _ = read.join();
        }
    }
}

impl<B: Backend> Backend for Prefetch<B> {
    fn availability(&self, family: Family) -> Result<(), String> {
        self.inner.availability(family)
    }

    fn save(&self, family: Family) -> Result<String, BackendError> {
        match self.take(family) {
            Some(read) => read
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => self.inner.save(family),
        }
    }

    fn restore(&self, family: Family, input: &str) -> Result<(), BackendError> {
        self.discard();
        self.inner.restore(family, input)
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
}

impl<B> Drop for Prefetch<B> {
    /// A command that ends before its survey (a script error) does not wait
    /// for reads it will never use: their threads are let go, and a tool
    /// still running ends on the closed pipe once the process is gone.
    fn drop(&mut self) {
        self.early
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
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
    fn families_the_host_cannot_do_are_not_read() {
        let kernel = Arc::new(Fake::new().without(Family::Ipv6));
        let backend = Prefetch::start(Shared(kernel.clone()));
        assert!(backend.save(Family::Ipv4).is_ok());
        assert_eq!(kernel.saves(), 1);
    }
}
