//! The device side of a vhost-user port: the protocol with the frontend (QEMU), through the
//! `vhost` crate's backend request handler, and the guest memory map and ring set-up it
//! leads to, published to the worker that owns the queues as an immutable [`DataPath`].
//!
//! Why not `vhost-user-backend`'s daemon: it keeps each vring behind a lock and processes
//! queues on threads of its own, woken by the guest's kicks; here a worker thread polls the
//! rings in its own loop with the rest of the graph and owns the queue state. So the protocol
//! is the `vhost` crate's (`VhostUserBackendReqHandlerMut`, `BackendReqHandler`) and the state
//! it sets up reaches the worker as an RCU-style snapshot ([`Shared`]): one atomic load per
//! burst, no lock on the packet path.
//!
//! Ring life cycle (the vhost-user spec's "ring states"): a ring *starts* when it has a size,
//! addresses and a kick descriptor and the memory map is known; it runs unless the frontend
//! disabled it with SET_VRING_ENABLE(0). (The spec has a ring with protocol features start
//! disabled until SET_VRING_ENABLE(1); but QEMU 7.2 sends its enables *before* SET_FEATURES,
//! and the `vhost` crate refuses an enable before protocol features are acked, so that
//! enable never reaches us: a ring is enabled by default, as DPDK's vhost library has it in
//! effect for QEMU.) It
//! *stops* at GET_VRING_BASE, whose answer — the next index to read — is the worker's: the
//! device publishes the stop, wakes the worker, waits until it acknowledged the new snapshot
//! (bounded), and reads the index the worker left.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    BackendReqHandler, Error as VuError, GpuBackend, Result as VuResult,
    VhostUserBackendReqHandlerMut,
};
use vhost::VhostUserMemoryRegionBase;
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap};

use super::dirty_log::DirtyLog;
use super::port::Running;

/// In each queue pair, the guest's receive queue (we write into it) and transmit queue (we
/// read from it): pair `p` has rings `2p + RX_QUEUE` and `2p + TX_QUEUE`.
pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
/// Most queue pairs a port serves (one per worker).
pub const MAX_QUEUE_PAIRS: usize = 64;

/// Largest ring the device accepts.
pub const MAX_QUEUE_SIZE: u16 = 1024;

const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const VIRTIO_NET_F_CSUM: u64 = 1 << 0;
const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << 1;
const VIRTIO_NET_F_GUEST_TSO4: u64 = 1 << 7;
const VIRTIO_NET_F_GUEST_TSO6: u64 = 1 << 8;
const VIRTIO_NET_F_GUEST_ECN: u64 = 1 << 9;
const VIRTIO_NET_F_HOST_TSO4: u64 = 1 << 11;
const VIRTIO_NET_F_HOST_TSO6: u64 = 1 << 12;
const VIRTIO_NET_F_HOST_ECN: u64 = 1 << 13;
const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
/// The guest announces itself (gratuitous ARP, unsolicited NA) when QEMU asks it to, after a
/// migration: the destination's dataplane learns its MAC at once.
const VIRTIO_NET_F_GUEST_ANNOUNCE: u64 = 1 << 21;
/// More than one queue pair (offered when the port has them).
pub const VIRTIO_NET_F_MQ: u64 = 1 << 22;
const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// Notification suppression by ring index (`used_event` / `avail_event`).
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
const VIRTIO_F_NOTIFY_ON_EMPTY: u64 = 1 << 24;
/// The backend logs the pages it writes while QEMU migrates the guest ([`DirtyLog`]).
const VHOST_F_LOG_ALL: u64 = 1 << 26;

/// Checksum and TCP segmentation offload, both ways, with ECN: the set the TAP ports ask of
/// their kernel. A guest that acks all of it exchanges partial checksums and superframes with
/// the graph ([`ring::Offloads::PassOn`](super::ring::Offloads)); one that acks less gets and
/// must send complete frames.
pub const OFFLOAD_FEATURES: u64 = VIRTIO_NET_F_CSUM
    | VIRTIO_NET_F_GUEST_CSUM
    | VIRTIO_NET_F_GUEST_TSO4
    | VIRTIO_NET_F_GUEST_TSO6
    | VIRTIO_NET_F_GUEST_ECN
    | VIRTIO_NET_F_HOST_TSO4
    | VIRTIO_NET_F_HOST_TSO6
    | VIRTIO_NET_F_HOST_ECN;

/// The virtio features offered: version 1, mergeable receive buffers, indirect descriptors,
/// ring-index notification suppression, the offloads, dirty logging for live migration.
pub const FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_NET_F_MRG_RXBUF
    | VIRTIO_RING_F_INDIRECT_DESC
    | VIRTIO_RING_F_EVENT_IDX
    | VIRTIO_F_NOTIFY_ON_EMPTY
    | VIRTIO_NET_F_GUEST_ANNOUNCE
    | OFFLOAD_FEATURES
    | VHOST_F_LOG_ALL
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

/// How long GET_VRING_BASE waits for the worker to let go of a ring.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// One ring as the worker runs it.
#[derive(Debug)]
pub struct QueueSpec {
    /// Changes whenever the ring (re)starts: the worker builds a fresh queue state for a new
    /// epoch and keeps its own indices within one.
    pub epoch: u64,
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// Where to start (SET_VRING_BASE).
    pub next_avail: u16,
    /// The guest's "available buffer" notification (eventfd): kept open by the snapshot while
    /// a worker may still read it.
    pub kick: Option<Arc<File>>,
    /// The guest's "used buffer" notification (eventfd), if it wants them.
    pub call: Option<Arc<File>>,
}

/// What the worker needs, as one immutable snapshot.
#[derive(Debug, Default)]
pub struct DataPath {
    pub generation: u64,
    /// The virtio features the frontend acked.
    pub features: u64,
    pub memory: Option<Arc<GuestMemoryMmap>>,
    /// Per ring (`2p + RX_QUEUE`, `2p + TX_QUEUE` for pair `p`): the running rings.
    pub queues: Vec<Option<QueueSpec>>,
    /// The dirty-page log, while the frontend has logging on (a migration runs).
    pub log: Option<Arc<DirtyLog>>,
}

/// What the device shares with the worker of one queue pair.
#[derive(Debug)]
pub struct PairShared {
    /// The generation this pair's worker runs.
    pub(crate) acked: AtomicU64,
    /// The worker's index in the pair's transmit ring, for GET_VRING_BASE.
    pub(crate) next_avail: AtomicU16,
    /// The queue's `rx_fd`: an epoll set holding the pair's transmit ring's kick descriptor
    /// and the `wake` eventfd; readable when either is.
    pub(crate) poll: OwnedFd,
    /// Written by the device to make the worker look at a new snapshot now.
    pub(crate) wake: OwnedFd,
    /// The transmit ring's kick descriptor as registered in `poll`, kept open until it is
    /// removed from there (device side only).
    kick_in_poll: Mutex<Option<Arc<File>>>,
    /// The pair's receive ring (our frames into the guest), behind a lock taken once per
    /// transmit burst: uncontended while every worker has a pair of its own, shared when the
    /// guest runs fewer pairs than there are workers (a 1-vCPU Linux guest runs one). DPDK's
    /// vhost library takes the same kind of per-ring lock per burst.
    pub(crate) rx_ring: Mutex<Option<Running>>,
    /// The epoch + 1 of the transmit and of the receive ring last counted as refused (0:
    /// none): see [`Shared::refuse_ring`].
    pub(crate) tx_refused: AtomicU64,
    pub(crate) rx_refused: AtomicU64,
}

/// Between the device (protocol thread) and the queues (workers, one per queue pair).
#[derive(Debug)]
pub struct Shared {
    pub(crate) data_path: ArcSwap<DataPath>,
    /// The generation last published: each worker compares it with its own (one load).
    pub(crate) published: AtomicU64,
    pub(crate) pairs: Vec<Arc<PairShared>>,
    pub(crate) connected: AtomicBool,
    /// Bad rings and memory maps the device refused (counted).
    pub(crate) refused: AtomicU64,
    /// A handle on the current frontend's socket, to hang up on it when the port goes.
    connection: Mutex<Option<UnixStream>>,
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd has no memory preconditions; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn epoll_ctl(epfd: RawFd, op: libc::c_int, fd: RawFd) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: fd as u64,
    };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    if unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we hold; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads an eventfd's counter (clears it); a no-op when it is not readable.
pub(crate) fn drain_eventfd(fd: RawFd) {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v`; the descriptor is non-blocking.
    let _ = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

/// Adds 1 to an eventfd (a notification to the guest or to the worker).
pub(crate) fn signal_eventfd(fd: RawFd) {
    let v = 1u64;
    // SAFETY: writes 8 bytes from `v`.
    let _ = unsafe { libc::write(fd, (&v as *const u64).cast(), 8) };
}

impl PairShared {
    fn new() -> io::Result<PairShared> {
        // SAFETY: epoll_create1 has no memory preconditions; the result is checked.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ep` is a fresh descriptor we own.
        let poll = unsafe { OwnedFd::from_raw_fd(ep) };
        let wake = eventfd()?;
        epoll_ctl(poll.as_raw_fd(), libc::EPOLL_CTL_ADD, wake.as_raw_fd())?;
        Ok(PairShared {
            acked: AtomicU64::new(0),
            next_avail: AtomicU16::new(0),
            poll,
            wake,
            kick_in_poll: Mutex::new(None),
            rx_ring: Mutex::new(None),
            tx_refused: AtomicU64::new(0),
            rx_refused: AtomicU64::new(0),
        })
    }

    /// Makes `kick` (or nothing) the transmit ring's descriptor in the pair's poll set.
    fn set_kick_in_poll(&self, kick: Option<Arc<File>>) {
        let Ok(mut registered) = self.kick_in_poll.lock() else {
            return;
        };
        let same = match (&*registered, &kick) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        if let Some(old) = registered.take() {
            let _ = epoll_ctl(self.poll.as_raw_fd(), libc::EPOLL_CTL_DEL, old.as_raw_fd());
        }
        if let Some(fd) = &kick {
            let _ = epoll_ctl(self.poll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd());
        }
        *registered = kick;
    }
}

impl Shared {
    /// Counts a ring a worker will not run (outside guest memory) in `refused`, once per
    /// ring epoch (`marker`: the ring's field in [`PairShared`]): the worker tries it again
    /// at every snapshot, a receive ring at every burst. Returns whether it was counted now.
    pub(crate) fn refuse_ring(&self, marker: &AtomicU64, epoch: u64) -> bool {
        if marker.swap(epoch.wrapping_add(1), Ordering::Relaxed) == epoch.wrapping_add(1) {
            return false;
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The shared state of a port with `pairs` queue pairs (1 to [`MAX_QUEUE_PAIRS`]).
    pub(crate) fn new(pairs: usize) -> io::Result<Shared> {
        Ok(Shared {
            data_path: ArcSwap::from_pointee(DataPath::default()),
            published: AtomicU64::new(0),
            pairs: (0..pairs.clamp(1, MAX_QUEUE_PAIRS))
                .map(|_| PairShared::new().map(Arc::new))
                .collect::<io::Result<_>>()?,
            connected: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            connection: Mutex::new(None),
        })
    }

    /// Ends the current frontend's connection (the port is going away).
    pub(crate) fn hang_up(&self) {
        if let Some(conn) = self.connection.lock().ok().and_then(|mut c| c.take()) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Publishes `dp` and wakes the workers.
    fn publish(&self, dp: DataPath) {
        let generation = dp.generation;
        self.data_path.store(Arc::new(dp));
        self.published.store(generation, Ordering::Release);
        for p in &self.pairs {
            signal_eventfd(p.wake.as_raw_fd());
        }
    }

    /// Waits (bounded) until the worker of `pair` runs `generation` or later.
    fn wait_acked(&self, pair: &PairShared, generation: u64) -> bool {
        let deadline = Instant::now() + STOP_WAIT;
        while pair.acked.load(Ordering::Acquire) < generation {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        true
    }
}

/// A region of the frontend's address space and where it is in guest memory (vring addresses
/// come in the frontend's address space).
#[derive(Clone, Copy, Debug)]
struct Mapping {
    frontend_addr: u64,
    size: u64,
    guest_addr: u64,
}

#[derive(Debug, Default)]
struct Vring {
    size: u16,
    /// Guest addresses of the descriptor table, available and used rings.
    addrs: Option<(u64, u64, u64)>,
    base: u16,
    kick: Option<Arc<File>>,
    call: Option<Arc<File>>,
    /// SET_VRING_ENABLE(0) was the last word on this ring.
    disabled: bool,
    started: bool,
    epoch: u64,
}

/// The protocol state of one connection (and what survives a reconnect: nothing).
#[derive(Debug)]
pub(crate) struct Handler {
    shared: Arc<Shared>,
    acked_features: u64,
    protocol_features: u64,
    memory: Option<Arc<GuestMemoryMmap>>,
    mappings: Vec<Mapping>,
    /// Two per queue pair.
    vrings: Vec<Vring>,
    /// SET_LOG_BASE's bitmap (used only while VHOST_F_LOG_ALL is acked).
    log: Option<Arc<DirtyLog>>,
    generation: u64,
    epochs: u64,
}

impl Handler {
    pub(crate) fn new(shared: Arc<Shared>) -> Handler {
        let rings = 2 * shared.pairs.len();
        Handler {
            shared,
            acked_features: 0,
            protocol_features: 0,
            memory: None,
            mappings: Vec::new(),
            vrings: (0..rings).map(|_| Vring::default()).collect(),
            log: None,
            generation: 0,
            epochs: 0,
        }
    }

    /// The virtio features offered: [`FEATURES`], and multi-queue when the port has pairs.
    fn features(&self) -> u64 {
        FEATURES
            | if self.shared.pairs.len() > 1 {
                VIRTIO_NET_F_MQ
            } else {
                0
            }
    }

    fn vring(&mut self, index: u32) -> VuResult<&mut Vring> {
        self.vrings
            .get_mut(index as usize)
            .ok_or(VuError::InvalidParam)
    }

    fn to_guest(&self, frontend_addr: u64) -> VuResult<u64> {
        self.mappings
            .iter()
            .find(|m| frontend_addr >= m.frontend_addr && frontend_addr - m.frontend_addr < m.size)
            .map(|m| frontend_addr - m.frontend_addr + m.guest_addr)
            .ok_or(VuError::InvalidParam)
    }

    /// Starts the rings that have all they need, then publishes what runs.
    fn update(&mut self) {
        let have_memory = self.memory.is_some();
        for v in &mut self.vrings {
            if !v.started && have_memory && v.size > 0 && v.addrs.is_some() && v.kick.is_some() {
                v.started = true;
                self.epochs += 1;
                v.epoch = self.epochs;
                tracing::debug!(
                    size = v.size,
                    base = v.base,
                    disabled = v.disabled,
                    "vhost-user ring started"
                );
            }
        }
        self.generation = self
            .shared
            .published
            .load(Ordering::Acquire)
            .max(self.generation)
            + 1;
        let spec = |v: &Vring| -> Option<QueueSpec> {
            let (desc, avail, used) = v.addrs?;
            (v.started && !v.disabled).then(|| QueueSpec {
                epoch: v.epoch,
                size: v.size,
                desc,
                avail,
                used,
                next_avail: v.base,
                kick: v.kick.clone(),
                call: v.call.clone(),
            })
        };
        // Only a ring a worker runs may wake it: a kick on a disabled ring would keep the
        // worker's poll readable with nobody to clear it.
        for (pair, rings) in self.shared.pairs.iter().zip(self.vrings.chunks(2)) {
            let tx_kick = rings
                .get(TX_QUEUE)
                .filter(|tx| tx.started && !tx.disabled)
                .and_then(|tx| tx.kick.clone());
            pair.set_kick_in_poll(tx_kick);
        }
        let logging = self.acked_features & VHOST_F_LOG_ALL != 0;
        self.shared.publish(DataPath {
            generation: self.generation,
            features: self.acked_features,
            memory: self.memory.clone(),
            queues: self.vrings.iter().map(spec).collect(),
            log: self.log.clone().filter(|_| logging),
        });
    }

    /// The frontend went away: nothing runs until the next one set it all up again.
    pub(crate) fn disconnect(&mut self) {
        self.vrings.iter_mut().for_each(|v| *v = Vring::default());
        self.memory = None;
        self.mappings.clear();
        self.log = None;
        self.acked_features = 0;
        self.update();
        // The receive rings the workers share: gone with the memory they point into.
        for pair in &self.shared.pairs {
            if let Ok(mut ring) = pair.rx_ring.lock() {
                *ring = None;
            }
        }
        self.shared.connected.store(false, Ordering::Release);
    }
}

fn unsupported<T>(what: &'static str) -> VuResult<T> {
    Err(VuError::InvalidOperation(what))
}

impl VhostUserBackendReqHandlerMut for Handler {
    fn set_owner(&mut self) -> VuResult<()> {
        self.shared.connected.store(true, Ordering::Release);
        Ok(())
    }

    fn reset_owner(&mut self) -> VuResult<()> {
        self.disconnect();
        Ok(())
    }

    fn reset_device(&mut self) -> VuResult<()> {
        self.disconnect();
        Ok(())
    }

    fn get_features(&mut self) -> VuResult<u64> {
        Ok(self.features())
    }

    fn set_features(&mut self, features: u64) -> VuResult<()> {
        tracing::debug!(
            features = format_args!("{features:#x}"),
            "vhost-user SET_FEATURES"
        );
        if features & !self.features() != 0 {
            return Err(VuError::InvalidParam);
        }
        self.acked_features = features;
        self.update();
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        postcopy_listening: Option<bool>,
    ) -> VuResult<Option<Vec<VhostUserMemoryRegionBase>>> {
        if postcopy_listening.is_some() {
            return unsupported("postcopy");
        }
        let mut regions = Vec::with_capacity(ctx.len());
        let mut mappings = Vec::with_capacity(ctx.len());
        for (region, file) in ctx.iter().zip(files) {
            let mapped = GuestRegionMmap::new(
                region.mmap_region(file)?,
                GuestAddress(region.guest_phys_addr),
            )
            .ok_or(VuError::InvalidParam)?;
            mappings.push(Mapping {
                frontend_addr: region.user_addr,
                size: region.memory_size,
                guest_addr: region.guest_phys_addr,
            });
            regions.push(mapped);
        }
        let memory = GuestMemoryMmap::from_regions(regions).map_err(|e| {
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            VuError::ReqHandlerError(io::Error::other(e))
        })?;
        self.memory = Some(Arc::new(memory));
        self.mappings = mappings;
        self.update();
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        if num == 0 || num > u32::from(MAX_QUEUE_SIZE) || !num.is_power_of_two() {
            return Err(VuError::InvalidParam);
        }
        // A ring set up anew while it ran restarts (a new epoch: the worker rebuilds it).
        let v = self.vring(index)?;
        v.size = num as u16;
        v.started = false;
        Ok(())
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VuResult<()> {
        let addrs = (
            self.to_guest(descriptor)?,
            self.to_guest(available)?,
            self.to_guest(used)?,
        );
        let v = self.vring(index)?;
        // QEMU sends a running ring's addresses again, with the log flag, when a migration
        // starts or ends: that ring goes on as it is (restarting it would go back to its
        // SET_VRING_BASE index).
        if v.started && v.addrs == Some(addrs) {
            return Ok(());
        }
        v.addrs = Some(addrs);
        v.started = false;
        self.update();
        Ok(())
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        let v = self.vring(index)?;
        v.base = base as u16;
        v.started = false;
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        let v = self.vring(index)?;
        let was_running = v.started;
        let epoch = v.epoch;
        v.started = false;
        v.kick = None;
        v.call = None;
        self.update();
        let shared = Arc::clone(&self.shared);
        let pair = shared
            .pairs
            .get(index as usize / 2)
            .ok_or(VuError::InvalidParam)?;
        let next = if index as usize % 2 == RX_QUEUE {
            // A receive ring: taken from under the workers' lock (after the publish above,
            // no worker builds it again), its index is final.
            pair.rx_ring
                .lock()
                .ok()
                .and_then(|mut r| r.take())
                .filter(|r| r.epoch == epoch)
                .map(|r| r.next_avail())
        } else {
            // The worker must have let go of the ring before its index means anything.
            if was_running && !shared.wait_acked(pair, self.generation) {
                tracing::warn!("vhost-user: the worker did not release ring {index} in time");
            }
            was_running.then(|| pair.next_avail.load(Ordering::Acquire))
        };
        let next = match next {
            Some(n) if was_running => n,
            _ => self.vring(index)?.base,
        };
        self.vring(index)?.base = next;
        Ok(VhostUserVringState::new(index, u32::from(next)))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        // The worker clears kicks with read(2), which must not block on an empty counter.
        // (The flag is the file's, shared with the frontend, which only writes to it.)
        if let Some(f) = &fd {
            set_nonblocking(f.as_raw_fd()).map_err(VuError::ReqHandlerError)?;
        }
        self.vring(u32::from(index))?.kick = fd.map(Arc::new);
        self.update();
        Ok(())
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.vring(u32::from(index))?.call = fd.map(Arc::new);
        self.update();
        Ok(())
    }

    fn set_vring_err(&mut self, _index: u8, _fd: Option<File>) -> VuResult<()> {
        Ok(())
    }

    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        let mq = if self.shared.pairs.len() > 1 {
            VhostUserProtocolFeatures::MQ
        } else {
            VhostUserProtocolFeatures::empty()
        };
        Ok(VhostUserProtocolFeatures::REPLY_ACK | VhostUserProtocolFeatures::LOG_SHMFD | mq)
    }

    fn set_protocol_features(&mut self, features: u64) -> VuResult<()> {
        self.protocol_features = features;
        Ok(())
    }

    /// Queue pairs (what QEMU's `queues=` may ask for at most).
    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok(self.shared.pairs.len() as u64)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        self.vring(index)?.disabled = !enable;
        self.update();
        Ok(())
    }

    fn get_config(
        &mut self,
        _offset: u32,
        _size: u32,
        _flags: VhostUserConfigFlags,
    ) -> VuResult<Vec<u8>> {
        unsupported("config space")
    }

    fn set_config(
        &mut self,
        _offset: u32,
        _buf: &[u8],
        _flags: VhostUserConfigFlags,
    ) -> VuResult<()> {
        unsupported("config space")
    }

    fn set_gpu_socket(&mut self, _gpu_backend: GpuBackend) -> VuResult<()> {
        unsupported("gpu")
    }

    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> VuResult<File> {
        unsupported("shared objects")
    }

    fn get_inflight_fd(
        &mut self,
        _inflight: &VhostUserInflight,
    ) -> VuResult<(VhostUserInflight, File)> {
        unsupported("inflight")
    }

    fn set_inflight_fd(&mut self, _inflight: &VhostUserInflight, _file: File) -> VuResult<()> {
        unsupported("inflight")
    }

    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        Ok(32)
    }

    fn add_mem_region(
        &mut self,
        _region: &VhostUserSingleMemoryRegion,
        _fd: File,
        _postcopy_listening: Option<bool>,
    ) -> VuResult<Option<VhostUserMemoryRegionBase>> {
        unsupported("memory slots")
    }

    fn remove_mem_region(&mut self, _region: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        unsupported("memory slots")
    }

    fn set_device_state_fd(
        &mut self,
        _direction: VhostTransferStateDirection,
        _phase: VhostTransferStatePhase,
        _fd: File,
    ) -> VuResult<Option<File>> {
        unsupported("device state")
    }

    fn check_device_state(&mut self) -> VuResult<()> {
        unsupported("device state")
    }

    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        unsupported("shared memory")
    }

    fn set_log_base(&mut self, log: &VhostUserLog, file: File) -> VuResult<()> {
        let mapped = DirtyLog::map(&file, log.mmap_size, log.mmap_offset).map_err(|e| {
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            VuError::ReqHandlerError(e)
        })?;
        tracing::info!(
            pages = mapped.pages(),
            "vhost-user dirty log mapped (migration)"
        );
        self.log = Some(Arc::new(mapped));
        self.update();
        Ok(())
    }
}

/// Serves the socket at `path`: one frontend at a time; when it goes, the port waits for the
/// next (QEMU's `reconnect=`), until `stop`.
pub(crate) fn serve(
    path: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    listener: UnixListener,
) {
    let handler = Arc::new(Mutex::new(Handler::new(Arc::clone(&shared))));
    while !stop.load(Ordering::Relaxed) {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                tracing::warn!(socket = %path.display(), "vhost-user accept: {e}");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        tracing::info!(socket = %path.display(), "vhost-user frontend connected");
        if let Err(e) = connection(stream, &handler, &shared, &stop) {
            tracing::info!(socket = %path.display(), "vhost-user frontend gone: {e}");
        }
        if let Ok(mut h) = handler.lock() {
            h.disconnect();
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// Serves one frontend until it goes away or the port is stopped ([`Shared::hang_up`] shuts
/// the socket down, which ends the blocking read).
fn connection(
    stream: UnixStream,
    handler: &Arc<Mutex<Handler>>,
    shared: &Shared,
    stop: &AtomicBool,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    if let Ok(mut conn) = shared.connection.lock() {
        *conn = Some(stream.try_clone()?);
    }
    // A stop that came before the clone was registered.
    if stop.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut req = BackendReqHandler::from_stream(stream, Arc::clone(handler));
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        match req.handle_request() {
            Ok(()) => {}
            Err(VuError::SocketRetry(_)) => {}
            // The connection is gone, or speaks garbage: wait for the next frontend.
            Err(
                e @ (VuError::Disconnected
                | VuError::PartialMessage
                | VuError::SocketBroken(_)
                | VuError::SocketError(_)
                | VuError::SocketConnect(_)
                | VuError::InvalidMessage
                | VuError::OversizedMsg
                | VuError::IncorrectFds),
            ) => break Err(io::Error::other(e.to_string())),
            // A request we refused (answered with an error where the frontend asked for
            // replies): the connection goes on, nothing changed.
            Err(e) => {
                shared.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("vhost-user request refused: {e}");
            }
        }
    };
    if let Ok(mut conn) = shared.connection.lock() {
        *conn = None;
    }
    result
}

/// Binds `path` (a stale socket replaced).
pub(crate) fn bind(path: &Path) -> io::Result<UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
