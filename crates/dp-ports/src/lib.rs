//! Port backends: where frames enter and leave the dataplane.
//!
//! A port has two halves:
//!
//! - [`PortQueue`], the per-worker half: bursts in and out of [`PacketBuf`]s from a worker's
//!   [`BufferPool`], a file descriptor for idle waits ([`PortQueue::rx_fd`], watched by an
//!   [`RxEpoll`] set) and whether it takes offload requests;
//! - [`PortDevice`], the device half: name, link state, the peer's MAC, counters, how many
//!   queues the device has, and a hook for events that change the device ([`DeviceEvent`]:
//!   hot-plug, a new guest memory map).
//!
//! The split follows rust-vmm (`virtio_queue::QueueT` for a queue, `vhost_user_backend`'s
//! `VhostUserBackend` for the device): a vhost-user port is one device with a queue per worker,
//! whose memory map changes arrive at the device and reach the queues as a snapshot. Every
//! backend here is both halves in one object, a [`Port`] (the blanket implementation), one per
//! worker and queue. Backends:
//!
//! - [`memory`]: in-process queues ([`MemoryPort`] + [`MemoryPortHandle`]) for tests, and a
//!   lock-free replay mode ([`MemoryPort::replay`]) for benchmarks;
//! - [`tap`]: a Linux TAP device ([`TapPort`]);
//! - [`af_packet`]: an existing interface through `TPACKET_V3` rings ([`AfPacketPort`]);
//! - [`af_xdp`]: an existing interface through an AF_XDP socket and a small XDP program
//!   ([`AfXdpPort`]), without libbpf.
//!
//! Ports do not parse packets. Errors on the packet path are counted in [`PortCounters`], never
//! returned or panicked; only creating a port can fail ([`PortError`]).
//!
//! # Who sets the packet metadata
//! A port hands out buffers freshly allocated from the pool, with the pool's fresh metadata
//! (`BufferPool::set_fresh_meta`; the default, `in_port == 0` and `rx_time_ns == 0`, unless set).
//! A port does not know its `PortId` nor the worker's clock: **the caller sets the pool's fresh
//! metadata to the port's id and the time** before [`PortQueue::rx_burst`] (and back after), so
//! the frames arrive stamped at no cost per packet. A port itself sets only `meta.offload`, and
//! only a port that [takes offload requests](PortQueue::offloads) does.
//!
//! # Checksums
//! Which backend finishes a checksum a sender's offload left partial, and how, is decided in one
//! place, [`ChecksumPolicy`] (`dp_buffer::offload`): a TAP with virtio-net headers passes the
//! request on, AF_PACKET finishes what the kernel's header asks for, AF_XDP recognises a partial
//! checksum by its value.

#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use dp_buffer::offload::ChecksumPolicy;
pub use dp_buffer::{BufferPool, PacketBuf};
pub use dp_packet::MacAddr;

pub mod af_packet;
pub mod af_xdp;
pub mod epoll;
pub mod idle_poll;
pub mod memory;
pub mod neighbor;
mod sys;
pub mod tap;
pub mod vhost_user;
pub mod wakeup;

pub use af_packet::{AfPacketOptions, AfPacketPort};
pub use af_xdp::{AfXdpOptions, AfXdpPort, XdpAttach, XdpMode};
pub use epoll::RxEpoll;
pub use idle_poll::IdlePoll;
pub use memory::{MemoryPort, MemoryPortHandle};
pub use tap::{TapOptions, TapPort};
pub use vhost_user::VhostUserPort;
pub use wakeup::Wakeup;

/// The per-worker half of a port: one queue of a device, owned and polled by one worker thread
/// (like rust-vmm's `virtio_queue::QueueT`).
///
/// Contract shared by every backend:
/// - nothing blocks: when there is nothing to receive or the other side cannot take more,
///   the burst simply ends early;
/// - nothing on the packet path allocates: buffers come from and return to the pool, and `out`
///   must have spare capacity for `max` more buffers (ports never reserve);
/// - failures are counted in the device's [`PortDevice::counters`], never returned.
pub trait PortQueue: Send {
    /// Receives up to `max` frames into buffers allocated from `pool` and appends them to
    /// `out`. Returns how many were appended. Stops early when no frame is waiting or the pool is
    /// empty (counted in `rx_nombuf`). The appended buffers carry the pool's fresh metadata (see
    /// the crate docs), plus an offload request where the port [takes them](PortQueue::offloads).
    fn rx_burst(&mut self, pool: &mut BufferPool, out: &mut Vec<PacketBuf>, max: usize) -> usize;

    /// Transmits every frame in `pkts`, leaving `pkts` empty; every buffer goes back to `pool`
    /// whether sent or not. Returns how many were sent; the rest are counted in `tx_errors`
    /// (the link is down or the write failed) or `tx_dropped` (the other side is full).
    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>, pool: &mut BufferPool) -> usize;

    /// A file descriptor that is readable (level-triggered) while frames wait to be received,
    /// for a worker's epoll-based idle wait ([`RxEpoll`]); `None` when the port cannot provide one
    /// (then poll).
    fn rx_fd(&self) -> Option<RawFd>;

    /// Called before the worker sleeps until one of the ports' [`PortQueue::rx_fd`]s is
    /// readable: the port makes sure a frame arriving from now on makes its descriptor
    /// readable (a vhost-user port asks its guest to kick again, which it does not while the
    /// worker polls). Returns whether frames may already be waiting: the worker then polls
    /// again instead of sleeping. Default: nothing to do, false.
    fn prepare_sleep(&mut self) -> bool {
        false
    }

    /// Whether the port takes frames with an offload request (`meta.offload`: a partial
    /// checksum, a TCP superframe) and passes it on to the other side; when not, the pipeline's
    /// transmit stage (`dp_pipeline::tx`) finishes checksums and segments superframes in
    /// software before transmitting. Only such a port hands out received frames with an offload
    /// request. The backends decide it through one policy, [`ChecksumPolicy`]. Default: no.
    fn offloads(&self) -> bool {
        false
    }

    /// Whether every receive costs a system call, even one that finds nothing (a TAP): such a
    /// port is read less often while it stays idle ([`IdlePoll`]). Default: no.
    fn reads_by_syscall(&self) -> bool {
        false
    }

    /// Whether the port may come to take offload requests while it runs (a vhost-user port
    /// before its guest negotiated them): its worker then needs large buffers from the start.
    /// Default: [`PortQueue::offloads`].
    fn may_offload(&self) -> bool {
        self.offloads()
    }
}

/// The device half of a port: what is the same for all of its queues — its name, link, MAC and
/// counters, how many queues it has — and where the events that change the device arrive
/// (like rust-vmm's `vhost_user_backend::VhostUserBackend`). Read from a slow path, never per
/// packet.
pub trait PortDevice: Send {
    /// The port's name (the TAP device name, or the memory port's label).
    fn name(&self) -> &str;

    /// Whether the link is up as far as the port can tell. May cost a few system calls (TAP):
    /// poll it from a slow path (e.g. once a second), not per burst.
    fn link_up(&self) -> bool;

    /// The MAC address of the machine on the other side as known when the port was created
    /// (for a TAP: the kernel side's address), the initial MAC of a VM.
    fn mac(&self) -> MacAddr;

    /// The port's counters; clone the `Arc` to read them from another thread.
    fn counters(&self) -> &Arc<PortCounters>;

    /// A snapshot of the counters.
    fn stats(&self) -> PortStats {
        self.counters().snapshot()
    }

    /// How many queues the device has (one [`PortQueue`] per worker). Default: one.
    fn queue_count(&self) -> usize {
        1
    }

    /// A change to the device from outside the packet path (see [`DeviceEvent`]). Returns
    /// whether the device acted on it; a device without such events ignores them (the default).
    fn device_event(&self, event: &DeviceEvent) -> bool {
        let _ = event;
        false
    }
}

/// Something that happens to a device outside the packet path. None of today's backends has
/// such events (their kernel does it all); a vhost-user device will: its frontend connects and
/// goes, and sends a new guest memory map, which the device publishes as a snapshot that each
/// queue loads at its next burst (no lock on the packet path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceEvent {
    /// The device's other side appeared (hot-plug, a frontend connected).
    Attached,
    /// The device's other side went away (hot-unplug, a frontend disconnected): the link is down
    /// until it is attached again.
    Detached,
    /// A new memory map was published under this generation: queues switch to it at their next
    /// burst.
    MemoryMap {
        /// Increases with every map published for the device.
        generation: u64,
    },
}

/// A whole port: both halves on one object, the convenience every backend here uses (memory,
/// TAP, AF_PACKET, AF_XDP implement [`PortQueue`] and [`PortDevice`] and are a `Port` through
/// the blanket implementation). A worker holds `Box<dyn Port>`s; a backend whose device is
/// shared by several queues (vhost-user) would hand each worker a queue and keep the device
/// apart.
pub trait Port: PortQueue + PortDevice {}

impl<T: PortQueue + PortDevice + ?Sized> Port for T {}

/// A snapshot of a port's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received and handed out.
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames lost on receive: read errors, frames too large for a buffer, empty frames.
    pub rx_errors: u64,
    /// Times a receive burst stopped because the pool had no free buffer.
    pub rx_nombuf: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames not transmitted because of an error (link down, write error, short write).
    pub tx_errors: u64,
    /// Frames not transmitted because the other side could not take more (would block, full).
    pub tx_dropped: u64,
    /// Times the port was reset because its other side misbehaved (a vhost-user guest's
    /// hostile descriptor chain).
    pub resets: u64,
}

/// A port's live counters. Written only by the thread that owns the port (plain loads and
/// stores, no locked instructions), readable from any thread.
#[derive(Debug, Default)]
pub struct PortCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_errors: AtomicU64,
    rx_nombuf: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_errors: AtomicU64,
    tx_dropped: AtomicU64,
    resets: AtomicU64,
}

/// Single-writer increment: a load and a store, so no bus lock on the packet path.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

impl PortCounters {
    /// Fresh zeroed counters.
    pub fn new() -> Arc<PortCounters> {
        Arc::new(PortCounters::default())
    }

    /// Reads every counter (each one atomically; the set is not a consistent cut).
    pub fn snapshot(&self) -> PortStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PortStats {
            rx_packets: get(&self.rx_packets),
            rx_bytes: get(&self.rx_bytes),
            rx_errors: get(&self.rx_errors),
            rx_nombuf: get(&self.rx_nombuf),
            tx_packets: get(&self.tx_packets),
            tx_bytes: get(&self.tx_bytes),
            tx_errors: get(&self.tx_errors),
            tx_dropped: get(&self.tx_dropped),
            resets: get(&self.resets),
        }
    }

    /// Adds a burst's worth of counts (one store per non-zero field). Backends only.
    #[inline]
    pub(crate) fn add(&self, d: &PortStats) {
        bump(&self.rx_packets, d.rx_packets);
        bump(&self.rx_bytes, d.rx_bytes);
        bump(&self.rx_errors, d.rx_errors);
        bump(&self.rx_nombuf, d.rx_nombuf);
        bump(&self.tx_packets, d.tx_packets);
        bump(&self.tx_bytes, d.tx_bytes);
        bump(&self.tx_errors, d.tx_errors);
        bump(&self.tx_dropped, d.tx_dropped);
        bump(&self.resets, d.resets);
    }
}

/// Why a port could not be created.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("invalid interface name '{0}': must be 1 to 15 bytes, without '/', ':' or whitespace, and not '.' or '..'")]
    InvalidName(String),
    #[error("cannot use '{0}' as a TAP device: a network device of that name exists and is not a TAP device")]
    NotTap(String),
    #[error("cannot attach to '{0}': it is a TUN device or a TAP device with incompatible flags (e.g. multi-queue)")]
    IncompatibleTap(String),
    #[error("TAP device '{0}' is busy: another process has it open")]
    Busy(String),
    #[error("permission denied creating TAP device '{0}' (needs CAP_NET_ADMIN and access to /dev/net/tun)")]
    PermissionDenied(String),
    #[error("{what} for '{name}': {source}")]
    Io {
        name: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_snapshot() {
        let c = PortCounters::new();
        c.add(&PortStats {
            rx_packets: 2,
            rx_bytes: 120,
            tx_dropped: 1,
            ..PortStats::default()
        });
        c.add(&PortStats {
            rx_packets: 1,
            rx_bytes: 60,
            ..PortStats::default()
        });
        let s = c.snapshot();
        assert_eq!(s.rx_packets, 3);
        assert_eq!(s.rx_bytes, 180);
        assert_eq!(s.tx_dropped, 1);
        assert_eq!(s.tx_packets, 0);
    }
}
