//! The worker's half of a vhost-user port: the guest's two rings as [`SplitRing`]s
//! over the published guest memory, polled in the worker's loop like any other port.
//!
//! Each burst starts with one atomic load: whether the device published a new [`DataPath`]
//! (a memory map, a ring started or stopped). Only then does the queue rebuild its rings, save
//! the indices of stopped ones for GET_VRING_BASE, and acknowledge the generation.
//!
//! Notifications, both ways:
//! - from the guest (kicks on its transmit ring): the kick eventfd sits in the port's poll set,
//!   which is the worker's [`PortQueue::rx_fd`], so an idle worker sleeps until the guest sends.
//!   The kick is cleared only when a burst found the ring empty — then the ring is looked at
//!   once more, so a frame queued just before is never left waiting for a kick already taken —
//!   on the first empty burst after a busy one and every [`DRAIN_EVERY`]th after that (a kick
//!   can land after its frame was taken: the worker then wakes in vain a few times, it does not
//!   spin). While the guest keeps the ring busy (a full burst), it is asked not to kick at all
//!   (`VRING_USED_F_NO_NOTIFY`): no system call here, no exit in the guest; once a burst
//!   drains the ring, kicks are asked for again and the ring looked at once more.
//! - to the guest (used buffers): the call eventfd is written after a burst that returned
//!   buffers, only if the guest asked to be interrupted (`needs_notification`: its
//!   `VRING_AVAIL_F_NO_INTERRUPT` flag, which virtio-net drivers set while they poll).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use vm_memory::GuestMemoryMmap;

use super::device::{self, DataPath, QueueSpec, Shared, RX_QUEUE, TX_QUEUE};
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

/// A running ring: the queue state and the epoch of the spec it was built from.
struct Running {
    epoch: u64,
    queue: SplitRing,
    kick: Option<Arc<File>>,
    call: Option<Arc<File>>,
    /// We told the guest not to kick (its ring was busy): see `rx_burst`.
    kicks_off: bool,
    /// With EVENT_IDX: the index up to which the guest was last asked to kick
    /// (`avail_event`), which must follow what we took before the worker may sleep.
    event_idx: Option<u16>,
    /// The used ring in guest memory (address, bytes), marked in the dirty log after a burst
    /// that wrote it while a migration runs.
    used_ring: (u64, usize),
}

impl Running {
    /// After a burst that returned buffers: the call to the guest (if it wants one) and, while
    /// a migration runs, the used ring marked dirty.
    fn used(&mut self, log: Option<&DirtyLog>) {
        if let Some(log) = log {
            log.mark(self.used_ring.0, self.used_ring.1);
        }
        if self.queue.needs_notification() {
            if let Some(call) = &self.call {
                device::signal_eventfd(call.as_raw_fd());
            }
        }
    }
}

/// How often an idle port clears its kick (see the module docs): every this many empty bursts.
const DRAIN_EVERY: u32 = 256;

/// A vhost-user VM port: the daemon listens on a unix socket, the frontend (QEMU) connects,
/// and the guest's virtio-net rings are read and written here directly.
pub struct VhostUserPort {
    name: String,
    path: PathBuf,
    counters: Arc<PortCounters>,
    shared: Arc<Shared>,
    /// The snapshot the rings below were built from.
    data_path: Arc<DataPath>,
    generation: u64,
    memory: Option<Arc<GuestMemoryMmap>>,
    /// `[RX_QUEUE, TX_QUEUE]`.
    rings: [Option<Running>; 2],
    /// Receive bursts in a row that found the guest's transmit ring empty.
    idle_bursts: u32,
    /// What the frontend negotiated (from the snapshot).
    offloads: Offloads,
    _server: Server,
}

impl std::fmt::Debug for VhostUserPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostUserPort")
            .field("name", &self.name)
            .field("path", &self.path)
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
        tracing::warn!(port = %self.name, ring, "vhost-user guest queued a bad descriptor chain: port reset");
        self.counters.add(&PortStats {
            resets: 1,
            ..PortStats::default()
        });
        self.rings = [None, None];
        self.memory = None;
        self.shared.hang_up();
    }

    /// Listens on `path` (a stale socket there is replaced) for the frontend of the port
    /// `name`. The port is down until a frontend has set up both rings.
    pub fn listen(path: &Path, name: &str) -> io::Result<VhostUserPort> {
        let listener = device::bind(path)?;
        let shared = Arc::new(Shared::new()?);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (path, shared, stop) = (path.to_path_buf(), Arc::clone(&shared), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("vhost-{name}"))
                .spawn(move || device::serve(path, shared, stop, listener))?
        };
        Ok(VhostUserPort {
            name: name.to_string(),
            path: path.to_path_buf(),
            counters: PortCounters::new(),
            data_path: shared.data_path.load_full(),
            shared: Arc::clone(&shared),
            generation: 0,
            memory: None,
            rings: [None, None],
            idle_bursts: 0,
            offloads: Offloads::None,
            _server: Server {
                stop,
                shared: Arc::clone(&shared),
                thread: Some(thread),
            },
        })
    }

    /// The socket the frontend connects to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Ring set-ups and memory maps the device refused, and rings the queue would not run
    /// (addresses outside guest memory).
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
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
        device::drain_eventfd(self.shared.wake.as_raw_fd());
        let dp = self.shared.data_path.load_full();
        for (index, slot) in self.rings.iter_mut().enumerate() {
            let spec = dp.queues.get(index).and_then(Option::as_ref);
            let same_memory =
                dp.memory.as_ref().map(Arc::as_ptr) == self.memory.as_ref().map(Arc::as_ptr);
            if let (Some(ring), Some(spec), true) = (slot.as_mut(), spec, same_memory) {
                if ring.epoch == spec.epoch {
                    // The same ring: only its eventfds may have changed (QEMU swaps the call
                    // eventfd when the guest masks or unmasks the queue's interrupt).
                    ring.kick.clone_from(&spec.kick);
                    ring.call.clone_from(&spec.call);
                    continue;
                }
            }
            if let Some(old) = slot.take() {
                // Where the guest's next frame is: GET_VRING_BASE's answer.
                if let Some(a) = self.shared.next_avail.get(index) {
                    a.store(old.queue.next_avail(), Ordering::Release);
                }
            }
            let event_idx = dp.features & device::VIRTIO_RING_F_EVENT_IDX != 0;
            *slot = match (spec, dp.memory.as_ref()) {
                (Some(spec), Some(mem)) => build_queue(spec, mem, event_idx).or_else(|| {
                    tracing::warn!(port = %self.name, ring = index, "vhost-user ring outside guest memory: not run");
                    self.shared.refused.fetch_add(1, Ordering::Relaxed);
                    None
                }),
                _ => None,
            };
        }
        tracing::debug!(port = %self.name, generation = dp.generation,
            rx = self.rings[RX_QUEUE].is_some(), tx = self.rings[TX_QUEUE].is_some(), "vhost-user rings");
        self.memory = dp.memory.clone();
        self.offloads = if dp.features & device::OFFLOAD_FEATURES == device::OFFLOAD_FEATURES {
            Offloads::PassOn
        } else {
            Offloads::None
        };
        self.generation = dp.generation;
        self.data_path = dp;
        self.idle_bursts = 0;
        self.shared.acked.store(self.generation, Ordering::Release);
    }
}

/// A queue over `mem` as `spec` describes it, if its rings lie inside guest memory.
fn build_queue(spec: &QueueSpec, mem: &Arc<GuestMemoryMmap>, event_idx: bool) -> Option<Running> {
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
    // Kicks on: a ring that ran before may have been left with them off.
    q.enable_notification();
    Some(Running {
        epoch: spec.epoch,
        kick: spec.kick.clone(),
        call: spec.call.clone(),
        kicks_off: false,
        event_idx: event_idx.then_some(spec.next_avail),
        // flags, idx, the entries, avail_event.
        used_ring: q.used_ring(),
        queue: q,
    })
}

impl PortQueue for VhostUserPort {
    fn rx_burst(&mut self, pool: &mut BufferPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.refresh();
        let (Some(_), Some(ring)) = (self.memory.as_deref(), self.rings[TX_QUEUE].as_mut()) else {
            return 0;
        };
        let mut stats = RingStats::default();
        let offloads = self.offloads;
        let mut got = ring::receive(&mut ring.queue, pool, out, max, &mut stats, offloads);
        if got < max && stats.no_buffer == 0 {
            // Drained. Kicks must be on before the worker may sleep: asked for again after a
            // busy spell, and with EVENT_IDX re-armed at what we took (the guest kicks only
            // when it passes `avail_event`). Then one more look: a frame queued while they
            // were off is otherwise never announced.
            let rearm = ring.kicks_off
                || ring
                    .event_idx
                    .is_some_and(|at| at != ring.queue.next_avail());
            if rearm {
                ring.kicks_off = false;
                let armed_at = ring.queue.next_avail();
                let more = ring.queue.enable_notification();
                if ring.event_idx.is_some() {
                    ring.event_idx = Some(armed_at);
                }
                if more {
                    got +=
                        ring::receive(&mut ring.queue, pool, out, max - got, &mut stats, offloads);
                }
            }
            if self.idle_bursts % DRAIN_EVERY == 0 {
                if let Some(kick) = &ring.kick {
                    device::drain_eventfd(kick.as_raw_fd());
                }
                device::drain_eventfd(self.shared.wake.as_raw_fd());
                got += ring::receive(&mut ring.queue, pool, out, max - got, &mut stats, offloads);
            }
            self.idle_bursts = if got == 0 {
                self.idle_bursts.wrapping_add(1)
            } else {
                0
            };
        } else {
            self.idle_bursts = 0;
            // Busy: the guest need not kick while we poll anyway (VRING_USED_F_NO_NOTIFY),
            // which saves it an exit per kick.
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

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>, pool: &mut BufferPool) -> usize {
        self.refresh();
        let (Some(_), Some(ring)) = (self.memory.as_deref(), self.rings[RX_QUEUE].as_mut()) else {
            // No guest (yet): the link is down.
            let n = pkts.len() as u64;
            for p in pkts.drain(..) {
                pool.free(p);
            }
            self.counters.add(&PortStats {
                tx_errors: n,
                ..PortStats::default()
            });
            return 0;
        };
        let mut stats = RingStats::default();
        let log = self.data_path.log.as_deref();
        let sent = ring::transmit(&mut ring.queue, pkts, pool, &mut stats, self.offloads, log);
        if stats.used {
            ring.used(log);
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
        Some(self.shared.poll.as_raw_fd())
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

    fn link_up(&self) -> bool {
        let dp = self.shared.data_path.load();
        dp.memory.is_some() && dp.queues.iter().all(Option::is_some)
    }

    /// The guest's MAC is QEMU's to set: unknown until the guest's first frame says.
    fn mac(&self) -> MacAddr {
        MacAddr([0; 6])
    }

    fn counters(&self) -> &Arc<PortCounters> {
        &self.counters
    }
}
