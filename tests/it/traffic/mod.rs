//! Proof with packets. Network namespaces joined by veth pairs, listeners on
//! one side, probes from the other, and the kernel's own counters: what a
//! firewall does, not what its rules say.
//!
//! No helper processes: a thread joins a namespace just long enough to make
//! a socket there, and the socket stays in that namespace wherever it is
//! used afterwards. Dropping a topology deletes its namespaces, and with
//! them every interface, address and rule in them, panic or not.

#![allow(dead_code)]

pub mod counters;
pub mod docs;
pub mod explain;
pub mod inside;
pub mod listen;
pub mod packet;
pub mod probe;
pub mod socket;
pub mod topology;
