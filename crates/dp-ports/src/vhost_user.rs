//! vhost-user VM ports (issue #14): the guest's virtio-net rings in shared memory, read and
//! written by the worker directly.
//!
//! - [`device`]: the vhost-user protocol with the frontend (QEMU) on the `vhost` crate, and the
//!   guest memory map and ring set-up it leads to, published as a snapshot;
//! - [`port`]: [`VhostUserPort`], the worker's half, polled like any other port;
//! - [`ring`]: the copies between guest rings and our buffers;
//! - [`split`]: the split virtqueue itself, on host pointers (hand-written: a benchmark showed
//!   virtio-queue's cost);
//! - [`dirty_log`]: the pages we write, logged for QEMU while it migrates the guest.

pub mod device;
pub mod dirty_log;
pub mod port;
pub mod ring;
pub mod split;

pub use port::VhostUserPort;
