//! The workers' half of a vhost-user port: the guest's rings as [`SplitRing`]s over
//! the published guest memory, polled in each worker's loop like any other port. A port has
//! one queue pair per worker ([`VhostUserPort::listen_queues`]; virtio-net multi-queue): the
//! object of pair `p` receives from the guest's transmit ring `2p + 1` and transmits into its
//! receive ring `2p` — or, when the guest runs fewer pairs than there are workers (a Linux
//! guest runs one per vCPU), into the receive ring of a running pair, `p` modulo their number.
//! A receive ring therefore sits behind a lock in the device's [`Shared`] state, taken once per
//! transmit burst (uncontended while every worker has a pair of its own).
//!
//! Each burst starts with one atomic load: whether the device published a new [`DataPath`]
//! (a memory map, a ring started or stopped). Only then does the queue rebuild its transmit
//! ring, save the index of a stopped one for GET_VRING_BASE, pick the receive ring, and
//! acknowledge the generation.
//!
//! Notifications, both ways:
//! - from the guest (kicks on its transmit ring): the kick eventfd sits in the pair's poll set,
//!   which is the worker's [`PortQueue::rx_fd`], so an idle worker sleeps until the guest sends.
//!   From the first burst that finds frames until the worker is about to sleep, the guest is
//!   asked not to kick at all (`VRING_USED_F_NO_NOTIFY`, or with EVENT_IDX `avail_event` left
//!   behind): no system call here, no exit or system call in the guest, however often the
//!   worker drains the ring while it polls — and an empty poll is one load of `avail.idx`.
//!   Before it sleeps the worker asks every port ([`PortQueue::prepare_sleep`]): the kick (and
//!   the device's wake) eventfd is cleared, kicks are asked for again (EVENT_IDX:
//!   `avail_event` set to what was taken), and the ring looked at once more, so a frame queued
//!   before the clear is never left waiting for a kick already taken; frames found there keep
//!   the worker polling. DPDK's vhost PMD and OVS-DPDK keep kicks off for good (they never
//!   sleep). Until 2026-12-08 kicks were asked for again, and the eventfds cleared (two
//!   system calls), on the first burst that drained the ring: a guest that sends more slowly
//!   than we forward then cost a kick and two reads per burst.
//!   The guest's *receive* rings never kick: a kick there (new buffers) would wake nobody.
//! - to the guest (used buffers): the call eventfd is written after a burst that returned
//!   buffers, when the guest wants it: with EVENT_IDX (which Linux negotiates) by its
//!   `used_event`; without, unless it set `VRING_AVAIL_F_NO_INTERRUPT`.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use vm_memory::GuestMemoryMmap;

use super::device::{self, DataPath, PairShared, QueueSpec, Shared, RX_QUEUE, TX_QUEUE};
use super::dirty_log::DirtyLog;
use super::ring::{self, Offloads, RingStats};
use super::split::SplitRing;
use crate::{BufferPool, MacAddr, PacketBuf, PortCounters, PortDevice, PortQueue, PortStats};

/// The protocol thread of one port's socket; stopped and joined when the port goes.
#[derive(Debug)]
struct Server {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.shared.hang_up();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running ring: the queue state, the memory it runs over and the epoch of the spec it was
/// built from.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) epoch: u64,
    /// The snapshot generation the eventfds below were taken from (a shared receive ring
    /// follows a new call eventfd once per snapshot, not per burst).
    synced: u64,
    queue: SplitRing,
    kick: Option<Arc<File>>,
    call: Option<Arc<File>>,
    /// We told the guest not to kick (its ring was busy, or it is a receive ring): see
    /// `rx_burst` and `prepare_sleep`.
    kicks_off: bool,
    /// With EVENT_IDX: the index up to which the guest was last asked to kick
    /// (`avail_event`), which must follow what we took before the worker may sleep.
    event_idx: Option<u16>,
}

impl Running {
    /// Where the guest's next frame is (GET_VRING_BASE's answer).
    pub(crate) fn next_avail(&self) -> u16 {
        self.queue.next_avail()
    }

    /// After a burst that returned buffers: the call to the guest (if it wants one) and, while
    /// a migration runs, the used ring marked dirty.
    fn used(&mut self, log: Option<&DirtyLog>) {
        if let Some(log) = log {
            let (at, len) = self.queue.used_ring();
            log.mark(at, len);
        }
        if self.queue.needs_notification() {
            if let Some(call) = &self.call {
                device::signal_eventfd(call.as_raw_fd());
            }
        }
    }
}

/// One queue pair of a vhost-user VM port: the daemon listens on a unix socket, the frontend
/// (QEMU) connects, and the guest's virtio-net rings are read and written here directly.
pub struct VhostUserPort {
    name: String,
    path: PathBuf,
    /// This queue pair's counters (a multi-queue port's are summed by the reader).
    counters: Arc<PortCounters>,
    shared: Arc<Shared>,
    /// Which queue pair this is, and what the device shares with it.
    pair: usize,
    pair_shared: Arc<PairShared>,
    /// The snapshot the rings below were built from.
    data_path: Arc<DataPath>,
    generation: u64,
    memory: Option<Arc<GuestMemoryMmap>>,
    /// The guest's transmit ring of our pair (we receive from it).
    tx_ring: Option<Running>,
    /// The pair whose receive ring our frames go into: ours while it runs.
    rx_pair: Option<usize>,
    /// What the frontend negotiated (from the snapshot).
    offloads: Offloads,
    _server: Arc<Server>,
}

impl std::fmt::Debug for VhostUserPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostUserPort")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("pair", &self.pair)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl VhostUserPort {
    /// The guest's ring held a hostile chain (outside its memory, a loop, lengths no frame
    /// has): the chains were returned to it, and now the port is reset — its rings stopped
    /// here and the connection cut, so the frontend (QEMU, `reconnect=`) sets it all up
    /// again from what the guest's rings say. Counted (`resets`); no other port notices.
    #[cold]
    fn reset(&mut self, ring: &str) {
        tracing::warn!(port = %self.name, pair = self.pair, ring, "vhost-user guest queued a bad descriptor chain: port reset");
        self.counters.add(&PortStats {
            resets: 1,
            ..PortStats::default()
        });
        self.tx_ring = None;
        self.rx_pair = None;
        self.memory = None;
        self.shared.hang_up();
    }

    /// Listens on `path` (a stale socket there is replaced) for the frontend of the port
    /// `name`, with one queue pair. The port is down until a frontend has set up its rings.
    pub fn listen(path: &Path, name: &str) -> io::Result<VhostUserPort> {
        let mut queues = Self::listen_queues(path, name, 1)?;
        queues
            .pop()
            .ok_or_else(|| io::Error::other("no queue pair"))
    }

    /// Listens on `path` for the frontend of the port `name` with `pairs` queue pairs (1 to
    /// [`device::MAX_QUEUE_PAIRS`]; QEMU's `-netdev vhost-user,queues=` may ask for up to as
    /// many): one object per pair, each polled by one worker.
    pub fn listen_queues(path: &Path, name: &str, pairs: usize) -> io::Result<Vec<VhostUserPort>> {
        let listener = device::bind(path)?;
        let shared = Arc::new(Shared::new(pairs)?);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (path, shared, stop) = (path.to_path_buf(), Arc::clone(&shared), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("vhost-{name}"))
                .spawn(move || device::serve(path, shared, stop, listener))?
        };
        let server = Arc::new(Server {
            stop,
            shared: Arc::clone(&shared),
            thread: Some(thread),
        });
        Ok((0..shared.pairs.len())
            .zip(shared.pairs.iter())
            .map(|(pair, pair_shared)| VhostUserPort {
                name: name.to_string(),
                path: path.to_path_buf(),
                counters: PortCounters::new(),
                data_path: shared.data_path.load_full(),
                shared: Arc::clone(&shared),
                pair,
                pair_shared: Arc::clone(pair_shared),
                generation: 0,
                memory: None,
                tx_ring: None,
                rx_pair: None,
                offloads: Offloads::None,
                _server: Arc::clone(&server),
            })
            .collect())
    }

    /// The socket the frontend connects to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Which queue pair this object serves.
    pub fn pair(&self) -> usize {
        self.pair
    }

    /// Ring set-ups and memory maps the device refused, and rings the queue would not run
    /// (addresses outside guest memory).
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    fn pair_shared(&self) -> &PairShared {
        &self.pair_shared
    }

    /// Takes a newly published snapshot, if any (one atomic load when none).
    #[inline]
    fn refresh(&mut self) {
        if self.shared.published.load(Ordering::Acquire) != self.generation {
            self.apply();
        }
    }

    #[cold]
    fn apply(&mut self) {
        device::drain_eventfd(self.pair_shared().wake.as_raw_fd());
        let dp = self.shared.data_path.load_full();
        let index = 2 * self.pair + TX_QUEUE;
        let spec = dp.queues.get(index).and_then(Option::as_ref);
        let same_memory =
            dp.memory.as_ref().map(Arc::as_ptr) == self.memory.as_ref().map(Arc::as_ptr);
        let keep = match (self.tx_ring.as_mut(), spec) {
            (Some(ring), Some(spec)) if same_memory && ring.epoch == spec.epoch => {
                // The same ring: only its eventfds may have changed (QEMU swaps the call
                // eventfd when the guest masks or unmasks the queue's interrupt).
                ring.kick.clone_from(&spec.kick);
                ring.call.clone_from(&spec.call);
                true
            }
            _ => false,
        };
        if !keep {
            if let Some(old) = self.tx_ring.take() {
                // Where the guest's next frame is: GET_VRING_BASE's answer.
                self.pair_shared()
                    .next_avail
                    .store(old.next_avail(), Ordering::Release);
            }
            let event_idx = dp.features & device::VIRTIO_RING_F_EVENT_IDX != 0;
            self.tx_ring = match (spec, dp.memory.as_ref()) {
                (Some(spec), Some(mem)) => build_or_refuse(
                    &self.shared,
                    &self.pair_shared.tx_refused,
                    spec,
                    mem,
                    event_idx,
                    dp.generation,
                    (&self.name, index),
                ),
                _ => None,
            };
        }
        // Our receive ring if it runs, else one of those that do.
        let runs = |p: &usize| matches!(dp.queues.get(2 * p + RX_QUEUE), Some(Some(_)));
        let pairs = 0..self.shared.pairs.len();
        let running = pairs.clone().filter(runs).count();
        self.rx_pair = if runs(&self.pair) {
            Some(self.pair)
        } else {
            pairs.filter(runs).nth(self.pair % running.max(1))
        };
        tracing::debug!(port = %self.name, pair = self.pair, generation = dp.generation,
            tx = self.tx_ring.is_some(), rx = ?self.rx_pair, "vhost-user rings");
        self.memory = dp.memory.clone();
        self.offloads = if dp.features & device::OFFLOAD_FEATURES == device::OFFLOAD_FEATURES {
            Offloads::PassOn
        } else {
            Offloads::None
        };
        self.generation = dp.generation;
        self.data_path = dp;
        self.pair_shared()
            .acked
            .store(self.generation, Ordering::Release);
    }
}

/// The receive ring in `slot` as the snapshot `dp` has it: kept while it is the same ring,
/// else built anew — from the *latest* published snapshot, so that a ring the device stopped
/// meanwhile (GET_VRING_BASE publishes first, then takes the ring from under this lock) is not
/// started again from an older one.
fn rx_ring_for<'a>(
    slot: &'a mut Option<Running>,
    dp: &DataPath,
    shared: &Shared,
    (name, index): (&str, usize),
) -> Option<&'a mut Running> {
    let fits = |ring: &Running, dp: &DataPath| {
        dp.queues
            .get(index)
            .and_then(Option::as_ref)
            .is_some_and(|s| s.epoch == ring.epoch)
            && dp
                .memory
                .as_ref()
                .is_some_and(|m| std::ptr::eq(&**m, ring.queue.memory()))
    };
    if slot.as_ref().is_some_and(|r| fits(r, dp)) {
        if let (Some(ring), Some(spec)) =
            (slot.as_mut(), dp.queues.get(index).and_then(Option::as_ref))
        {
            // QEMU swaps call eventfds at run time: taken once per snapshot.
            if ring.synced != dp.generation {
                ring.call.clone_from(&spec.call);
                ring.synced = dp.generation;
            }
        }
        return slot.as_mut();
    }
    let latest = shared.data_path.load();
    if slot.as_ref().is_some_and(|r| fits(r, &latest)) {
        return slot.as_mut();
    }
    let event_idx = latest.features & device::VIRTIO_RING_F_EVENT_IDX != 0;
    *slot = match (
        latest.queues.get(index).and_then(Option::as_ref),
        latest.memory.as_ref(),
    ) {
        (Some(spec), Some(mem)) => shared.pairs.get(index / 2).and_then(|pair| {
            build_or_refuse(
                shared,
                &pair.rx_refused,
                spec,
                mem,
                event_idx,
                latest.generation,
                (name, index),
            )
        }),
        _ => None,
    };
    slot.as_mut()
}

/// [`build_queue`], or, for a ring outside guest memory, nothing: counted and logged once per
/// ring epoch (`refused`: the ring's marker, see `Shared::refuse_ring`), cleared once the ring
/// runs (a new memory map may hold it).
fn build_or_refuse(
    shared: &Shared,
    refused: &AtomicU64,
    spec: &QueueSpec,
    mem: &Arc<GuestMemoryMmap>,
    event_idx: bool,
    generation: u64,
    (name, index): (&str, usize),
) -> Option<Running> {
    // Kicks on a receive ring (new buffers) would wake nobody: the guest is never asked for
    // them, which spares it a system call or an exit after each refill.
    let kicks = index % 2 == TX_QUEUE;
    let ring = build_queue(spec, mem, event_idx, generation, kicks);
    if ring.is_some() {
        refused.store(0, Ordering::Relaxed);
    } else if shared.refuse_ring(refused, spec.epoch) {
        tracing::warn!(port = %name, ring = index, "vhost-user ring outside guest memory: not run");
    }
    ring
}

/// A queue over `mem` as `spec` describes it, if its rings lie inside guest memory.
/// `generation` is the snapshot `spec` is from.
fn build_queue(
    spec: &QueueSpec,
    mem: &Arc<GuestMemoryMmap>,
    event_idx: bool,
    generation: u64,
    kicks: bool,
) -> Option<Running> {
    // Size, alignment and every ring inside one region of the map (SplitRing's checks).
    let mut q = SplitRing::new(
        Arc::clone(mem),
        spec.size,
        spec.desc,
        spec.avail,
        spec.used,
        spec.next_avail,
        event_idx,
    )?;
    // Kicks on (a ring that ran before may have been left with them off), or off for good.
    if kicks {
        q.enable_notification();
    } else {
        q.disable_notification();
    }
    Some(Running {
        epoch: spec.epoch,
        synced: generation,
        kick: spec.kick.clone(),
        call: spec.call.clone(),
        kicks_off: !kicks,
        event_idx: event_idx.then_some(spec.next_avail),
        queue: q,
    })
}

impl PortQueue for VhostUserPort {
    fn rx_burst(&mut self, pool: &mut BufferPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.refresh();
        let (Some(_), Some(ring)) = (self.memory.as_deref(), self.tx_ring.as_mut()) else {
            return 0;
        };
        let mut stats = RingStats::default();
        let offloads = self.offloads;
        let got = ring::receive(&mut ring.queue, pool, out, max, &mut stats, offloads);
        if got > 0 {
            // Busy: the guest need not kick while we poll anyway (VRING_USED_F_NO_NOTIFY),
            // which saves it a system call or an exit per kick. Asked for again only when
            // the worker is about to sleep (`prepare_sleep`).
            if !ring.kicks_off {
                ring.queue.disable_notification();
                ring.kicks_off = true;
            }
        }
        if stats.used {
            ring.used(self.data_path.log.as_deref());
        }
        self.counters.add(&PortStats {
            rx_packets: stats.packets,
            rx_bytes: stats.bytes,
            rx_errors: stats.bad_chains,
            rx_nombuf: stats.no_buffer,
            ..PortStats::default()
        });
        if stats.bad_chains > 0 {
            self.reset("transmit");
        }
        got
    }

    /// Kicks must be on before the worker sleeps: asked for again after a busy spell, and
    /// with EVENT_IDX re-armed at what we took (the guest kicks only when it passes
    /// `avail_event`). Then one more look: a frame queued while they were off, or before the
    /// kick was cleared, is otherwise never announced.
    fn prepare_sleep(&mut self) -> bool {
        // Level-triggered in the worker's epoll set: a wake already acted on, or a kick taken
        // (or one that landed after its frame was taken), would end the sleep at once. A
        // snapshot published before the clear is looked at by the next burst instead.
        device::drain_eventfd(self.pair_shared.wake.as_raw_fd());
        if self.shared.published.load(Ordering::Acquire) != self.generation {
            return true;
        }
        let Some(ring) = self.tx_ring.as_mut() else {
            return false;
        };
        if let Some(kick) = &ring.kick {
            device::drain_eventfd(kick.as_raw_fd());
        }
        let rearm = ring.kicks_off
            || ring
                .event_idx
                .is_some_and(|at| at != ring.queue.next_avail());
        if !rearm {
            // Kicks on all along: a frame queued before the clear above is still looked for.
            return ring.queue.has_available();
        }
        ring.kicks_off = false;
        let armed_at = ring.queue.next_avail();
        let more = ring.queue.enable_notification();
        if ring.event_idx.is_some() {
            ring.event_idx = Some(armed_at);
        }
        more
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>, pool: &mut BufferPool) -> usize {
        self.refresh();
        let mut stats = RingStats::default();
        let mut sent = 0;
        let mut down = true;
        if let Some(pair) = self.rx_pair.and_then(|p| self.shared.pairs.get(p)) {
            let index = 2 * self.rx_pair.unwrap_or(0) + RX_QUEUE;
            if let Ok(mut slot) = pair.rx_ring.lock() {
                if let Some(ring) = rx_ring_for(
                    &mut slot,
                    &self.data_path,
                    &self.shared,
                    (&self.name, index),
                ) {
                    down = false;
                    let log = self.data_path.log.as_deref();
                    sent =
                        ring::transmit(&mut ring.queue, pkts, pool, &mut stats, self.offloads, log);
                    if stats.used {
                        ring.used(log);
                    }
                }
            }
        }
        if down {
            // No guest (yet), or its receive ring stopped: the link is down.
            let n = pkts.len() as u64;
            for p in pkts.drain(..) {
                pool.free(p);
            }
            self.counters.add(&PortStats {
                tx_errors: n,
                ..PortStats::default()
            });
            return 0;
        }
        self.counters.add(&PortStats {
            tx_packets: stats.packets,
            tx_bytes: stats.bytes,
            tx_errors: stats.bad_chains,
            tx_dropped: stats.no_room,
            ..PortStats::default()
        });
        if stats.bad_chains > 0 {
            self.reset("receive");
        }
        sent
    }

    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.pair_shared().poll.as_raw_fd())
    }

    fn offloads(&self) -> bool {
        self.offloads == Offloads::PassOn
    }

    /// A guest may negotiate offloads whenever it connects: the worker keeps large buffers.
    fn may_offload(&self) -> bool {
        true
    }
}

impl PortDevice for VhostUserPort {
    fn name(&self) -> &str {
        &self.name
    }

    /// Up while the guest runs its first queue pair: both rings set up, and neither refused by
    /// the worker as lying outside guest memory (`Shared::refuse_ring`).
    fn link_up(&self) -> bool {
        let dp = self.shared.data_path.load();
        let Some(pair) = self.shared.pairs.first() else {
            return false;
        };
        let runs = |spec: &device::QueueSpec, refused: &AtomicU64| {
            refused.load(Ordering::Relaxed) != spec.epoch.wrapping_add(1)
        };
        match (dp.memory.as_ref(), dp.queues.get(..2)) {
            (Some(_), Some([Some(rx), Some(tx)])) => {
                runs(rx, &pair.rx_refused) && runs(tx, &pair.tx_refused)
            }
            _ => false,
        }
    }

    /// The guest's MAC is QEMU's to set: unknown until the guest's first frame says.
    fn mac(&self) -> MacAddr {
        MacAddr([0; 6])
    }

    fn counters(&self) -> &Arc<PortCounters> {
        &self.counters
    }
}
