//! A worker thread: polls its ports in bursts, runs the graph, transmits — and sleeps in epoll
//! when there is nothing to do, so an idle daemon leaves the CPU to others.
//!
//! Every [`TICK_INTERVAL_NS`] (100 ms), loaded or idle, the worker also does its slow-path
//! housekeeping: it reads link states from the ports ([`Worker::poll_links`]: every uplink, and
//! up to [`VF_LINKS_PER_TICK`] VFs in turn — reading may cost a few system calls) into the
//! [`PortTable`], where the nodes see them at the next packet; then it runs [`Graph::tick`] (the
//! nodes' timers: the underlay router's neighbor discovery, the probes of silent VMs) and sends
//! what that made ([`Worker::tick`]). So a link that goes down moves its flows to the other
//! uplink within ~100 ms of the port noticing.
//!
//! # Several workers
//! With `--workers N` each worker owns one queue of every port (the kernel hashes flows to
//! queues), its own pool and graph; they share the tables and the port table. Only the
//! *leader* (worker 0, [`Worker::run`]) reads the links and probes for the router; every worker
//! ticks its graph, which probes the silent VMs of its share of the ports
//! ([`WorkerCtx::owns_port`]) and will age its own flows. A
//! router's answer may reach any worker: what it teaches (the router MAC, when it was
//! confirmed) is in the shared port table, where the leader's tick sees it.
//!
//! # Flow affinity
//! With several workers, each has rings to and from every other ([`dp_pipeline::affinity`]):
//! the graph hands a packet of a flow another worker owns to that worker, and every round the
//! worker takes what the others handed it ([`Graph::receive_handoffs`], counted as received),
//! runs it with its ports' frames, and then wakes the workers it handed packets to if they
//! sleep ([`Graph::notify_handoffs`]). Its [`Wakeup`] (an eventfd) is in its epoll set, and
//! around a sleep it says it sleeps (`Rings::set_sleeping`): no hand-off waits for a timeout.
//! The logic is dp-pipeline's; the worker wires it.
//!
//! # Commands
//! Each tick the worker serves a few commands of its queue ([`dp_pipeline::commands`]): what
//! the control side asks a worker directly (today a report of its pool and hand-off counters;
//! flow dumps, capture on/off and learned MACs are to come this way).
//!
//! # Polling
//! A worker busy-polls while traffic flows and for `SPIN_ROUNDS` empty rounds after the last
//! frame, then sleeps in `epoll_wait` on its ports' descriptors until a frame arrives or the
//! next tick is due (at most `IDLE_WAIT`). Idle, every worker wakes 10 times a second for its
//! tick (its nodes' timers): well under 1% of a core (see BENCHMARKS.md).
//!
//! The spin adapts: when a frame ends a sleep sooner than `QUICK_WAKE_FACTOR` times the spin
//! that preceded it (a flood with short gaps, e.g. while the sender's core runs something
//! else), the next spin lasts twice as long, up to `SPIN_MAX_NS`; a sleep that ends later, or
//! by its timeout, brings it back to `SPIN_ROUNDS`. A steady trickle of frames (gaps much
//! longer than the spin) and an idle worker keep the short spin; a flood does not pay a wake-up
//! (an inter-processor interrupt on the sender's core) per gap.
//!
//! Superframes change the trade-off: once a round has received a TCP superframe (an offload
//! request from a TAP with virtio-net headers) the worker sleeps at the first empty round, until
//! its next sleep, without spinning, and keeps the epoll set armed. Each superframe costs two
//! 64 KiB copies (the `read` and the `write`) and the receiving stack's work, which the kernel
//! does inside our `write`: tens of microseconds against the few of a wake-up; a spin would only
//! take the CPU from the threads at both ends of the stream (on a small host, the VMs' own
//! vCPUs). Measured with iperf3 through TAPs on 2 vCPUs: the same throughput on an otherwise
//! idle machine with less than half the `readv` calls and ~1% instead of ~9% of the worker's
//! time in empty polls; more throughput when other work competes for the CPUs (BENCHMARKS.md).
//!
//! The ports' descriptors are in the epoll set only around sleeps: a descriptor in an epoll
//! set has a waiter on its socket's wait queue, and then the kernel wakes that queue (a lock,
//! the epoll callback) for every frame or batch it delivers — on the *sender's* core (for a
//! veth or a TAP, the VM's). So the set is armed (`EPOLL_CTL_ADD`, which also reports frames
//! that arrived meanwhile: level-triggered) just before the first sleep, stays armed while
//! the worker alternates between short bursts and sleeps (low rates: no churn), and is
//! disarmed once traffic has kept the worker awake for `DISARM_AFTER_ROUNDS` rounds with
//! frames. The worker logs at exit how its time split between rounds with frames, empty
//! polls and sleep (its headroom under load).
//!
//! # Offload
//! Frames from a TAP with virtio-net headers may carry an offload request (a partial checksum,
//! a TCP superframe; see `dp_pipeline::offload`). A port that takes them gets them as they are;
//! for any other the worker finishes the checksum or cuts the superframe into segments (from
//! the pool) on transmit. The extra segments count as originated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dp_packet::MacAddr;
use dp_pipeline::commands::{self, CommandQueue, WorkerView};
use dp_pipeline::{
    BufferPool, Ctx, DpConfig, DropReason, Graph, GraphCounters, PacketMeta, PortKind, PortTable,
    TxSink, WorkerCtx, BATCH_SIZE, TICK_INTERVAL_NS,
};
use dp_ports::{IdlePoll, Port, RxEpoll, Wakeup};
use dp_tables::{PortId, SnapshotReader};

/// Polls without sleeping for this many empty rounds after the last packet before blocking
/// in epoll: cheap latency under load, no spinning when idle.
const SPIN_ROUNDS: u32 = 64;
/// Longest epoll sleep: bounds how late a shutdown request (or a tick) is noticed.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Rounds with frames, without a sleep in between, after which the epoll set is disarmed (the
/// ports' descriptors leave it until the next sleep): see "Polling".
const DISARM_AFTER_ROUNDS: u32 = 8;
/// Longest adaptive spin after the last frame (see "Polling").
const SPIN_MAX_NS: u64 = 1_000_000;
/// A sleep shorter than this many times the spin before it doubles the next spin.
const QUICK_WAKE_FACTOR: u64 = 4;
/// VF link states read per tick (round-robin): with up to this many VFs each is read every tick,
/// with more, each is read every `VFs / VF_LINKS_PER_TICK` ticks.
pub const VF_LINKS_PER_TICK: usize = 32;

/// The workers' clock: nanoseconds since the first call in this process (monotonic, shared by
/// every worker, so times stored in the shared port table compare across workers).
pub fn clock_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Everything one worker owns.
pub struct Worker {
    pub ports: Vec<Box<dyn Port>>,
    pub graph: Graph,
    pub pool: BufferPool,
    pub tables: SnapshotReader,
    pub port_table: Arc<PortTable>,
    pub config: Arc<DpConfig>,
    pub stop: Arc<AtomicBool>,
    /// This worker's own context for the nodes (its index among the workers, and with several
    /// workers its rings to the others).
    pub worker: WorkerCtx,
    /// Wakes this worker from its epoll sleep (other workers handed it packets); in its epoll
    /// set. With several workers.
    pub wakeup: Option<Arc<Wakeup>>,
    /// Its command queue ([`dp_pipeline::commands`]), served a few commands per tick.
    pub commands: Option<CommandQueue>,
}

/// A worker's [`Wakeup`] as the rings' [`dp_pipeline::affinity::Wake`] (dp-ports knows nothing
/// of the pipeline, the pipeline nothing of descriptors).
pub struct EventfdWake(pub Arc<Wakeup>);

impl dp_pipeline::affinity::Wake for EventfdWake {
    fn wake(&self) {
        self.0.wake();
    }
}

/// The epoll data of a worker's [`Wakeup`] (the ports' is their index).
const WAKEUP_EVENT: u64 = u64::MAX;

impl Worker {
    /// Runs until `stop` is set, as the leader (with the periodic housekeeping).
    pub fn run(self) {
        self.run_as(true);
    }

    /// Runs until `stop` is set; only a `leader` polls links (every worker ticks its graph).
    pub fn run_as(mut self, leader: bool) {
        let mut fds: Vec<_> = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, port)| port.rx_fd().map(|fd| (fd, i as u64)))
            .collect();
        if let Some(w) = &self.wakeup {
            fds.push((w.fd(), WAKEUP_EVENT));
        }
        let mut epoll = RxEpoll::from_fds(fds);
        let mut rx = Vec::with_capacity(BATCH_SIZE);
        let mut housekeeping = Housekeeping::new(self.port_table.len());
        let mut next_tick = 0u64;
        let mut time = LoopTime::default();
        // One clock read per round: the end of a round is the start of the next.
        let mut now_ns = clock_ns();
        let mut pacer = Pacer::new(now_ns);
        let mut idle = vec![IdlePoll::default(); self.ports.len()];
        while !self.stop.load(Ordering::Relaxed) {
            if now_ns >= next_tick {
                // Every worker runs its nodes' timers; the leader alone reads the links.
                if leader {
                    self.poll_links(&mut housekeeping.vf_cursor);
                }
                self.tick(now_ns);
                self.serve_commands();
                if leader {
                    housekeeping.log_changes(&self.port_table);
                }
                next_tick = now_ns.saturating_add(TICK_INTERVAL_NS);
            }
            let round = self.poll_round(&mut rx, now_ns, &mut idle);
            let end = clock_ns();
            let spent = end.saturating_sub(now_ns);
            now_ns = end;
            if round.received > 0 {
                time.busy_ns += spent;
                time.busy_rounds += 1;
                time.packets += round.received as u64;
                time.publish(&self.graph.counters().polls);
                if pacer.busy(round, end) {
                    if let Some(e) = epoll.as_mut() {
                        e.disarm();
                    }
                }
                continue;
            }
            time.empty_ns += spent;
            time.empty_rounds += 1;
            time.publish(&self.graph.counters().polls);
            if pacer.empty(end) {
                // Every port (no short circuit) gets ready to wake us (a vhost-user guest is
                // asked to kick again); one that has frames already keeps us polling.
                let mut waiting = false;
                for port in self.ports.iter_mut() {
                    waiting |= port.prepare_sleep();
                }
                if waiting {
                    continue;
                }
                // Not when another worker handed us packets meanwhile (it may not wake us).
                if !self.worker.rings().is_none_or(|r| r.set_sleeping(true)) {
                    if let Some(r) = self.worker.rings() {
                        r.set_sleeping(false);
                    }
                    continue;
                }
                // Sleep until a frame arrives, but not past the next tick.
                let until_tick = Duration::from_nanos(next_tick.saturating_sub(end))
                    .clamp(Duration::from_millis(1), IDLE_WAIT);
                let armed = epoll.as_mut().is_some_and(RxEpoll::arm);
                let woken = match &epoll {
                    Some(e) if armed => e.wait(until_tick),
                    _ => {
                        std::thread::sleep(Duration::from_millis(1));
                        false
                    }
                };
                if let Some(r) = self.worker.rings() {
                    r.set_sleeping(false);
                }
                if let Some(w) = &self.wakeup {
                    w.clear();
                }
                now_ns = clock_ns();
                idle.iter_mut().for_each(IdlePoll::wake);
                pacer.slept(end, now_ns, woken);
                time.sleep_ns += now_ns.saturating_sub(end);
                time.sleeps += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        time.log(leader);
    }

    /// Reads the link state of every uplink and of up to [`VF_LINKS_PER_TICK`] VFs, from the
    /// VF at `*vf_cursor` on (which then moves past them), into the port table.
    pub fn poll_links(&mut self, vf_cursor: &mut usize) {
        let count = self.ports.len();
        let mut vf_budget = VF_LINKS_PER_TICK;
        let mut vf_seen = 0;
        for index in 0..count {
            let port_id = PortId::try_from(index).unwrap_or(PortId::MAX);
            let Some(entry) = self.port_table.get(port_id) else {
                continue;
            };
            if entry.kind == PortKind::Vf {
                // VFs in turn: only those at or after the cursor, within the budget.
                let nth = vf_seen;
                vf_seen += 1;
                if nth < *vf_cursor || vf_budget == 0 {
                    continue;
                }
                vf_budget -= 1;
            }
            let Some(port) = self.ports.get(index) else {
                continue;
            };
            let up = port.link_up();
            if entry.set_link_up(up) != up {
                tracing::info!(port = %entry.name, "link {}", if up { "up" } else { "down" });
            }
        }
        *vf_cursor += VF_LINKS_PER_TICK - vf_budget;
        if *vf_cursor >= vf_seen {
            *vf_cursor = 0;
        }
    }

    /// The graph's periodic work at `now_ns`; the frames it makes are sent at once.
    pub fn tick(&mut self, now_ns: u64) {
        let tables = self.tables.load();
        let ctx = Ctx {
            tables: &tables,
            config: &self.config,
            ports: &self.port_table,
            now_ns,
        };
        // Probes carry no offload request: no scratch needed.
        let mut scratch = Vec::new();
        let mut sink = PortSink {
            ports: &mut self.ports,
            scratch: &mut scratch,
            offload_seen: false,
        };
        self.graph
            .tick(&ctx, &mut self.worker, &mut self.pool, &mut sink);
        self.graph.flush_tx(&mut self.pool, &mut sink);
    }

    /// Serves a few waiting commands of the worker's queue (bounded work per tick).
    pub fn serve_commands(&mut self) -> usize {
        let Some(queue) = &self.commands else {
            return 0;
        };
        let view = WorkerView {
            index: self.worker.index(),
            pool: &self.pool,
            counters: self.graph.counters(),
            flows: &self.worker.flows,
        };
        commands::serve(queue, &view)
    }

    /// One round: a burst from every port through the graph and out. Returns frames received.
    pub fn poll_once(&mut self, rx: &mut Vec<dp_pipeline::PacketBuf>, now_ns: u64) -> usize {
        self.poll_round(rx, now_ns, &mut []).received
    }

    /// [`Worker::poll_once`], also telling whether a TCP superframe came in; `idle` holds the
    /// read schedule of the ports that read by system call (a port without one is read).
    fn poll_round(
        &mut self,
        rx: &mut Vec<dp_pipeline::PacketBuf>,
        now_ns: u64,
        idle: &mut [IdlePoll],
    ) -> Round {
        let mut received = 0;
        let mut offload_seen = false;
        let mut superframes = false;
        for (index, port) in self.ports.iter_mut().enumerate() {
            let schedule = idle.get_mut(index).filter(|_| port.reads_by_syscall());
            if schedule.as_ref().is_some_and(|s| !s.due(now_ns)) {
                continue;
            }
            // Ports receive straight into the first node's batch (no hand-over per packet).
            let Some(batch) = self.graph.rx_batch() else {
                break;
            };
            let start = batch.len();
            let room = BATCH_SIZE.saturating_sub(start);
            if room == 0 {
                break;
            }
            let port_id = PortId::try_from(index).unwrap_or(PortId::MAX);
            // The frames come out of the pool stamped with their port and time.
            self.pool.set_fresh_meta(PacketMeta {
                in_port: port_id,
                rx_time_ns: now_ns,
                ..PacketMeta::default()
            });
            let n = port.rx_burst(&mut self.pool, batch, room);
            self.pool.set_fresh_meta(PacketMeta::default());
            if let Some(s) = schedule {
                s.read(now_ns, n);
            }
            received += n;
            // A port that overfilled the batch (it must not) loses the excess, counted.
            let mut excess = 0u64;
            while batch.len() > BATCH_SIZE {
                if let Some(pkt) = batch.pop() {
                    self.pool.free(pkt);
                    excess += 1;
                }
            }
            // Only a port that takes offload requests hands them out (`Port::offloads`).
            if port.offloads() {
                for pkt in batch.iter().skip(start) {
                    offload_seen |= pkt.meta.offload.is_set();
                    superframes |= pkt.meta.offload.is_gso();
                }
            }
            if excess > 0 {
                self.graph
                    .counters()
                    .count_drop(None, DropReason::QueueFull, excess);
            }
        }
        // What other workers handed us (their flows' packets), and the buffers owed back.
        received += self
            .graph
            .receive_handoffs(&mut self.worker, &mut self.pool);
        if received == 0 {
            return Round::default();
        }
        // One snapshot load per batch: control-plane changes take effect between batches.
        let tables = self.tables.load();
        let ctx = Ctx {
            tables: &tables,
            config: &self.config,
            ports: &self.port_table,
            now_ns,
        };
        // `rx` stays empty (ports receive into the graph): the scratch batch for segmentation.
        let mut sink = PortSink {
            ports: &mut self.ports,
            scratch: rx,
            offload_seen,
        };
        self.graph
            .run(&ctx, &mut self.worker, &mut self.pool, &mut sink);
        self.graph.flush_tx(&mut self.pool, &mut sink);
        self.graph.notify_handoffs(&mut self.worker);
        Round {
            received,
            superframes,
        }
    }
}

/// The worker's transmit path: a port's batch goes out of the port, after the graph's run or
/// when it fills up during one ([`TxSink`]). When `offload_seen` (a received frame carried an
/// offload request), a port that does not take offload gets its batch through
/// [`dp_pipeline::tx::software_offload`], with `scratch` (empty, capacity [`BATCH_SIZE`]) as the batch.
struct PortSink<'a> {
    ports: &'a mut [Box<dyn Port>],
    scratch: &'a mut Vec<dp_pipeline::PacketBuf>,
    offload_seen: bool,
}

impl TxSink for PortSink<'_> {
    fn flush(
        &mut self,
        port_id: PortId,
        batch: &mut Vec<dp_pipeline::PacketBuf>,
        pool: &mut BufferPool,
        counters: &GraphCounters,
    ) {
        let Some(port) = self.ports.get_mut(usize::from(port_id)) else {
            counters.count_drop(None, DropReason::DstPortDown, batch.len() as u64);
            for pkt in batch.drain(..) {
                pool.free(pkt);
            }
            return;
        };
        let port = port.as_mut();
        if self.offload_seen && !port.offloads() && batch.iter().any(|p| p.meta.offload.is_set()) {
            dp_pipeline::tx::software_offload(batch, self.scratch, pool, counters, |b, pool| {
                send(port, b, pool, counters)
            });
            return;
        }
        send(port, batch, pool, counters);
    }
}

/// Sends `batch` out of `port` and leaves it empty: what the port could not send is counted
/// (`tx_failed`) and freed.
fn send(
    port: &mut dyn Port,
    batch: &mut Vec<dp_pipeline::PacketBuf>,
    pool: &mut BufferPool,
    counters: &GraphCounters,
) {
    let queued = batch.len();
    let sent = port.tx_burst(batch, pool);
    counters
        .tx_packets
        .fetch_add(sent as u64, Ordering::Relaxed);
    counters.count_drop(
        None,
        DropReason::TxFailed,
        queued.saturating_sub(sent) as u64,
    );
    // A port hands back what it could not send (it must not): freed, counted above.
    for pkt in batch.drain(..) {
        pool.free(pkt);
    }
}

/// What one round ([`Worker::poll_round`]) received.
#[derive(Clone, Copy, Debug, Default)]
struct Round {
    /// Frames.
    received: usize,
    /// Whether one of them was a TCP superframe (a segmentation offload request).
    superframes: bool,
}

/// The polling policy (see "Polling" in the module docs): after each round, whether to poll
/// again or to sleep, and when to disarm the epoll set.
#[derive(Debug)]
struct Pacer {
    /// Empty rounds since the last frame.
    idle_rounds: u32,
    /// Rounds with frames since the last sleep.
    busy_rounds: u32,
    /// The current adaptive spin.
    spin_ns: u64,
    /// When the last round with frames ended.
    last_frame_ns: u64,
    /// A superframe came in since the last sleep: sleep at the first empty round.
    superframes: bool,
}

impl Pacer {
    fn new(now_ns: u64) -> Pacer {
        Pacer {
            idle_rounds: 0,
            busy_rounds: 0,
            spin_ns: 0,
            last_frame_ns: now_ns,
            superframes: false,
        }
    }

    /// A round that received frames, ending at `now_ns`; whether to disarm the epoll set now.
    fn busy(&mut self, round: Round, now_ns: u64) -> bool {
        self.last_frame_ns = now_ns;
        self.idle_rounds = 0;
        self.busy_rounds = self.busy_rounds.saturating_add(1);
        self.superframes |= round.superframes;
        // Superframes: the set stays armed (its cost per frame is nothing beside a 64 KiB
        // copy, and the worker sleeps between bursts anyway).
        self.busy_rounds == DISARM_AFTER_ROUNDS && !self.superframes
    }

    /// A round that found nothing, ending at `now_ns`: whether to sleep (else poll again).
    fn empty(&mut self, now_ns: u64) -> bool {
        self.idle_rounds = self.idle_rounds.saturating_add(1);
        self.superframes
            || (self.idle_rounds > SPIN_ROUNDS
                && now_ns.saturating_sub(self.last_frame_ns) >= self.spin_ns)
    }

    /// A sleep from `from_ns` to `now_ns`, ended by a frame if `woken`: the next spin.
    fn slept(&mut self, from_ns: u64, now_ns: u64, woken: bool) {
        let spun = from_ns.saturating_sub(self.last_frame_ns);
        let slept = now_ns.saturating_sub(from_ns);
        self.spin_ns =
            if !self.superframes && woken && slept < spun.saturating_mul(QUICK_WAKE_FACTOR) {
                spun.saturating_mul(2).min(SPIN_MAX_NS)
            } else {
                0
            };
        self.busy_rounds = 0;
        self.superframes = false;
    }
}

/// What the run loop remembers between ticks: the next VF whose link to read, and, to log
/// changes, the router MAC last seen on each uplink.
struct Housekeeping {
    vf_cursor: usize,
    routers: Vec<Option<MacAddr>>,
}

impl Housekeeping {
    fn new(ports: usize) -> Self {
        Housekeeping {
            vf_cursor: 0,
            routers: vec![None; ports],
        }
    }

    fn log_changes(&mut self, ports: &PortTable) {
        for ((_, entry), seen) in ports.iter().zip(self.routers.iter_mut()) {
            if entry.kind != PortKind::Uplink {
                continue;
            }
            let now = entry.peer_mac();
            if now != *seen {
                match now {
                    Some(mac) => tracing::info!(port = %entry.name, %mac, "underlay router found"),
                    None => tracing::warn!(
                        port = %entry.name,
                        "underlay router lost: no answer to neighbor solicitations"
                    ),
                }
                *seen = now;
            }
        }
    }
}

/// Where a worker's time went, logged when it stops.
#[derive(Default)]
struct LoopTime {
    /// In rounds that received frames (graph and transmit included).
    busy_ns: u64,
    /// In rounds that found nothing (polling, spinning).
    empty_ns: u64,
    /// In `epoll_wait` (or the fallback sleep).
    sleep_ns: u64,
    busy_rounds: u64,
    empty_rounds: u64,
    packets: u64,
    sleeps: u64,
}

impl LoopTime {
    /// Makes the counts readable by other threads (metrics, telemetry): plain stores, this
    /// worker being their only writer. The sleep of an idle round shows with the next round.
    #[inline]
    fn publish(&self, polls: &dp_pipeline::PollCounters) {
        polls.busy.store(self.busy_rounds, Ordering::Relaxed);
        polls.idle.store(self.empty_rounds, Ordering::Relaxed);
        polls.busy_ns.store(self.busy_ns, Ordering::Relaxed);
        polls
            .idle_ns
            .store(self.empty_ns + self.sleep_ns, Ordering::Relaxed);
    }

    fn log(&self, leader: bool) {
        let total = (self.busy_ns + self.empty_ns + self.sleep_ns).max(1) as f64;
        let pct = |ns: u64| format!("{:.1}", 100.0 * ns as f64 / total);
        tracing::info!(
            leader,
            seconds = format!("{:.1}", total / 1e9),
            packets = self.packets,
            busy_rounds = self.busy_rounds,
            empty_rounds = self.empty_rounds,
            busy_pct = pct(self.busy_ns),
            empty_poll_pct = pct(self.empty_ns),
            sleep_pct = pct(self.sleep_ns),
            sleeps = self.sleeps,
            "worker stopped; its time: rounds with frames (busy), empty polls, sleep"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dp_pipeline::{GraphCounters, PortEntry};
    use dp_ports::{MemoryPort, MemoryPortHandle, PortDevice, PortQueue};
    use dp_tables::{Iface, Publisher, RouteTarget, Snapshot, UnderlayTarget, VniTable};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ROUTER: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0xff, 0]);
    const VM_MAC: MacAddr = MacAddr([0x66, 0, 0, 0, 0, 2]);

    fn own(p: u16) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 1, p as u8])
    }

    /// A worker on memory ports: pf0, pf1, then `vfs` VFs; VF 0 (port 2) has an interface in
    /// VNI 100 with a remote route for 10.100.2.0/24.
    fn worker(vfs: u16) -> (Worker, Vec<MemoryPortHandle>, Publisher) {
        let mut ports: Vec<Box<dyn Port>> = Vec::new();
        let mut handles = Vec::new();
        let mut entries = Vec::new();
        for p in 0..2 + vfs {
            let (port, handle) = MemoryPort::new(format!("p{p}"), VM_MAC);
            ports.push(Box::new(port));
            handles.push(handle);
            let kind = if p < 2 {
                PortKind::Uplink
            } else {
                PortKind::Vf
            };
            let e = PortEntry::new(kind, format!("p{p}"), own(p));
            if kind == PortKind::Vf {
                e.learn_peer_mac(VM_MAC);
            }
            entries.push(e);
        }
        let iface = Iface {
            id: "vm1".into(),
            vni: 100,
            port: 2,
            ipv4: Ipv4Addr::new(10, 100, 1, 1),
            ipv6: Ipv6Addr::UNSPECIFIED,
            underlay_ipv6: "fc00:1::2".parse().unwrap(),
            hostname: None,
            pxe: None,
            prefixes_v4: vec![],
            prefixes_v6: vec![],
            services: Default::default(),
            meter: Default::default(),
        };
        let mut table = VniTable::default();
        table
            .v4
            .insert(u32::from(iface.ipv4), 32, RouteTarget::Local { port: 2 })
            .unwrap();
        table
            .v4
            .insert(
                u32::from(Ipv4Addr::new(10, 100, 2, 0)),
                24,
                RouteTarget::Remote {
                    vni: 100,
                    underlay: "fc00:2::2".parse().unwrap(),
                    public: false,
                },
            )
            .unwrap();
        let mut ifaces_by_port = vec![None; usize::from(2 + vfs)];
        ifaces_by_port[2] = Some(Arc::new(iface.clone()));
        let mut snapshot = Snapshot {
            ifaces_by_port: Arc::new(ifaces_by_port),
            vnis: [(100, Arc::new(table))].into_iter().collect(),
            ..Snapshot::default()
        };
        snapshot.set_underlay(
            iface.underlay_ipv6,
            UnderlayTarget::Iface { port: 2, vni: 100 },
        );
        let publisher = Publisher::new(snapshot);
        let port_count = ports.len();
        let w = Worker {
            ports,
            graph: Graph::new(port_count, Arc::new(GraphCounters::default())),
            pool: BufferPool::new(256, 2048),
            tables: publisher.reader(),
            port_table: Arc::new(PortTable::new(entries)),
            config: Arc::new(DpConfig {
                underlay_ipv6: "fc00:1::1".parse().unwrap(),
                router: Some("fe80::ffff".parse().unwrap()),
                ..DpConfig::default()
            }),
            stop: Arc::new(AtomicBool::new(false)),
            worker: WorkerCtx::single(),
            wakeup: None,
            commands: None,
        };
        (w, handles, publisher)
    }

    fn link_states(w: &Worker) -> Vec<bool> {
        w.port_table.iter().map(|(_, e)| e.link_up()).collect()
    }

    #[test]
    fn links_are_read_uplinks_every_tick_vfs_in_turn() {
        let (mut w, handles, _p) = worker(40);
        for h in &handles {
            h.set_link_up(false);
        }
        let mut cursor = 0;
        w.poll_links(&mut cursor);
        let s = link_states(&w);
        assert!(!s[0] && !s[1], "uplinks read");
        assert_eq!(
            s[2..].iter().filter(|&&up| !up).count(),
            32,
            "32 VFs per tick"
        );
        assert_eq!(cursor, 32);
        w.poll_links(&mut cursor);
        assert!(
            link_states(&w).iter().all(|&up| !up),
            "the other 8 next tick"
        );
        assert_eq!(cursor, 0, "and round again");
        handles[0].set_link_up(true);
        w.poll_links(&mut cursor);
        assert!(link_states(&w)[0]);
    }

    /// A neighbor advertisement from the router (fe80::ffff) to our link-local on uplink `p`.
    fn router_na(p: u16) -> Vec<u8> {
        let src: Ipv6Addr = "fe80::ffff".parse().unwrap();
        let dst = dp_pipeline::nodes::link_local(own(p));
        let mut icmp = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
        icmp.extend_from_slice(&src.octets());
        icmp.extend_from_slice(&[2, 1]);
        icmp.extend_from_slice(&ROUTER.0);
        let c = dp_packet::checksum::transport_v6(&src, &dst, dp_packet::IpProtocol::ICMPV6, &icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut f = own(p).0.to_vec();
        f.extend_from_slice(&ROUTER.0);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        f.extend_from_slice(&[58, 255]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(&icmp);
        f
    }

    /// A UDP frame from the VM on port 2 to 10.100.2.1 (a remote route).
    fn vm_to_remote() -> Vec<u8> {
        let mut f = own(2).0.to_vec();
        f.extend_from_slice(&VM_MAC.0);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 29, 0, 1, 0, 0, 64, 17, 0, 0, 10, 100, 1, 1, 10, 100, 2, 1,
        ];
        let c = dp_packet::checksum::finish(dp_packet::checksum::data(&ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x9c, 0x40, 0x13, 0x88, 0, 9, 0, 0, b'x']);
        f
    }

    #[test]
    fn router_discovery_and_uplink_fail_over_through_the_worker() {
        let (mut w, handles, _p) = worker(1);
        let mut rx = Vec::with_capacity(BATCH_SIZE);
        let mut cursor = 0;
        // No router yet: solicitations out of both uplinks, and VM traffic is not sent.
        w.poll_links(&mut cursor);
        w.tick(0);
        for h in &handles[..2] {
            let sent = h.take_sent();
            assert_eq!(sent.len(), 1);
            assert_eq!(
                &sent[0][0..3],
                &[0x33, 0x33, 0xff],
                "solicited-node multicast"
            );
        }
        handles[2].inject(&vm_to_remote());
        w.poll_once(&mut rx, 1);
        assert!(handles[0].take_sent().is_empty() && handles[1].take_sent().is_empty());
        assert_eq!(w.graph.counters().drops(DropReason::NoRouterMac), 1);

        // The router answers on both uplinks: encapsulated out of pf0 (--wcmp 100).
        handles[0].inject(&router_na(0));
        handles[1].inject(&router_na(1));
        w.poll_once(&mut rx, 2);
        handles[2].inject(&vm_to_remote());
        w.poll_once(&mut rx, 3);
        let out = handles[0].take_sent();
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][0..6], &ROUTER.0);
        assert_eq!(&out[0][12..14], &[0x86, 0xdd]);
        assert_eq!(out[0][20], 4);

        // pf0 goes down: the next link poll moves the flow to pf1.
        handles[0].set_link_up(false);
        w.poll_links(&mut cursor);
        handles[2].inject(&vm_to_remote());
        w.poll_once(&mut rx, 4);
        assert!(handles[0].take_sent().is_empty());
        assert_eq!(handles[1].take_sent().len(), 1);
        // And back.
        handles[0].set_link_up(true);
        w.poll_links(&mut cursor);
        handles[2].inject(&vm_to_remote());
        w.poll_once(&mut rx, 5);
        assert_eq!(handles[0].take_sent().len(), 1);
    }

    /// A second worker of the same dataplane as `w`: its own memory ports (pf0, pf1, one VF),
    /// pool and graph; the same tables, port table and settings.
    fn second_worker(w: &Worker, tables: &Publisher) -> (Worker, Vec<MemoryPortHandle>) {
        let mut ports: Vec<Box<dyn Port>> = Vec::new();
        let mut handles = Vec::new();
        for p in 0..w.ports.len() {
            let (port, handle) = MemoryPort::new(format!("p{p}"), VM_MAC);
            ports.push(Box::new(port));
            handles.push(handle);
        }
        let port_count = ports.len();
        let second = Worker {
            ports,
            graph: Graph::new(port_count, Arc::new(GraphCounters::default())),
            pool: BufferPool::new(256, 2048),
            tables: tables.reader(),
            port_table: Arc::clone(&w.port_table),
            config: Arc::clone(&w.config),
            stop: Arc::new(AtomicBool::new(false)),
            worker: WorkerCtx::single(),
            wakeup: None,
            commands: None,
        };
        (second, handles)
    }

    /// Flow `i` of the affinity test from the VM: 10.100.1.1:(10000 + i) → 10.100.2.x:5000.
    fn forward(i: u16) -> Vec<u8> {
        let mut f = own(2).0.to_vec();
        f.extend_from_slice(&VM_MAC.0);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&udp4(
            Ipv4Addr::new(10, 100, 1, 1),
            Ipv4Addr::new(10, 100, 2, 1 + (i % 200) as u8),
            10000 + i,
            5000,
        ));
        f
    }

    /// Its reply from the remote hypervisor (fc00:2::2) on pf0, to the VM's underlay address:
    /// 10.100.2.x:5000 → 10.100.1.1:(10000 + i), the reversed 5-tuple.
    fn reply(i: u16) -> Vec<u8> {
        let inner = udp4(
            Ipv4Addr::new(10, 100, 2, 1 + (i % 200) as u8),
            Ipv4Addr::new(10, 100, 1, 1),
            5000,
            10000 + i,
        );
        let mut f = own(0).0.to_vec();
        f.extend_from_slice(&ROUTER.0);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        f.extend_from_slice(&[4, 64]);
        f.extend_from_slice(&"fc00:2::2".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&"fc00:1::2".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&inner);
        f
    }

    /// An IPv4 UDP datagram with one byte of payload (no UDP checksum).
    fn udp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 29, 0, 1, 0, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        let c = dp_packet::checksum::finish(dp_packet::checksum::data(&ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&sport.to_be_bytes());
        ip.extend_from_slice(&dport.to_be_bytes());
        ip.extend_from_slice(&[0, 9, 0, 0, b'x']);
        ip
    }

    /// The proof: two workers, the forward direction of 1,000 flows received by worker
    /// 0 (from the VM), their replies by worker 1 (from the underlay); each flow's both
    /// directions leave from the one worker that owns it.
    #[test]
    fn both_directions_of_every_flow_meet_one_worker() {
        const FLOWS: u16 = 1000;
        let (mut w0, h0, publisher) = worker(1);
        let (mut w1, h1) = second_worker(&w0, &publisher);
        for uplink in 0..2 {
            w0.port_table.get(uplink).unwrap().confirm_peer(ROUTER, 0);
        }
        let mut rings =
            dp_pipeline::affinity::mesh(2, dp_pipeline::affinity::RING_CAPACITY, vec![]);
        w1.worker = WorkerCtx::with_rings(rings.pop().unwrap());
        w0.worker = WorkerCtx::with_rings(rings.pop().unwrap());
        for i in 0..FLOWS {
            h0[2].inject(&forward(i));
            h1[0].inject(&reply(i));
        }
        // Where each flow's forward packet left (encapsulated, on an uplink) and where its
        // reply did (to the VF).
        let mut forward_from = vec![None; usize::from(FLOWS)];
        let mut reply_from = vec![None; usize::from(FLOWS)];
        let mut rx = Vec::with_capacity(BATCH_SIZE);
        for round in 0..200u64 {
            w0.poll_once(&mut rx, round);
            w1.poll_once(&mut rx, round);
            for (index, handles) in [(0usize, &h0), (1, &h1)] {
                for uplink in &handles[..2] {
                    for f in uplink.take_sent() {
                        // Outer Ethernet and IPv6, inner IPv4: the inner source port.
                        assert_eq!(&f[12..14], &[0x86, 0xdd]);
                        let sport = u16::from_be_bytes([f[14 + 40 + 20], f[14 + 40 + 21]]);
                        let flow = usize::from(sport - 10000);
                        assert_eq!(forward_from[flow].replace(index), None, "once");
                    }
                }
                for f in handles[2].take_sent() {
                    let dport = u16::from_be_bytes([f[14 + 22], f[14 + 23]]);
                    let flow = usize::from(dport - 10000);
                    assert_eq!(reply_from[flow].replace(index), None, "once");
                }
            }
        }
        assert!(
            forward_from.iter().all(Option::is_some),
            "every forward packet out"
        );
        assert!(reply_from.iter().all(Option::is_some), "every reply out");
        assert_eq!(
            forward_from, reply_from,
            "both directions of each flow on one worker"
        );
        let on_0 = forward_from.iter().filter(|w| **w == Some(0)).count();
        assert!(
            (350..650).contains(&on_0),
            "both workers own about half: {on_0}"
        );

        // Conservation over both workers, and every buffer home.
        let (c0, c1) = (w0.graph.counters(), w1.graph.counters());
        let sum = |f: &dyn Fn(&GraphCounters) -> u64| f(c0) + f(c1);
        let rx_total = sum(&|c| c.node_packets(dp_pipeline::NodeId::Classify));
        assert_eq!(rx_total, 2 * u64::from(FLOWS));
        assert_eq!(sum(&|c| c.total_drops()), 0);
        assert_eq!(
            rx_total + sum(&|c| c.originated()) + sum(&|c| c.handed_in()),
            sum(&|c| c.tx_packets.load(Ordering::Relaxed))
                + sum(&|c| c.total_drops())
                + sum(&|c| c.handed_off())
        );
        assert_eq!(sum(&|c| c.handed_off()), sum(&|c| c.handed_in()));
        assert_eq!(
            c0.handed_off() as usize,
            usize::from(FLOWS) - on_0,
            "w0 hands w1's forward packets"
        );
        assert_eq!(c1.handed_off() as usize, on_0, "w1 hands w0's replies");
        assert_eq!(w0.pool.available(), w0.pool.capacity());
        assert_eq!(w1.pool.available(), w1.pool.capacity());
    }

    const NAT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const VM_IP: Ipv4Addr = Ipv4Addr::new(10, 100, 1, 1);

    fn public_router() -> Ipv6Addr {
        "fc00::ffff:1".parse().unwrap()
    }

    fn nat_underlay() -> Ipv6Addr {
        "fc00:1::200:2".parse().unwrap()
    }

    fn vip_underlay() -> Ipv6Addr {
        "fc00:1::100:2".parse().unwrap()
    }

    /// Two workers as in the affinity proof, meshed, the router known on both uplinks; the VM's
    /// interface given `services` as the control plane publishes them (its public addresses
    /// and their underlay routes), and a public default route in VNI 100.
    fn nat_workers(
        services: dp_tables::IfaceServices,
    ) -> ([Worker; 2], [Vec<MemoryPortHandle>; 2], Publisher) {
        let (mut w0, h0, publisher) = worker(1);
        let (mut w1, h1) = second_worker(&w0, &publisher);
        for uplink in 0..2 {
            w0.port_table.get(uplink).unwrap().confirm_peer(ROUTER, 0);
        }
        let mut rings =
            dp_pipeline::affinity::mesh(2, dp_pipeline::affinity::RING_CAPACITY, vec![]);
        w1.worker = WorkerCtx::with_rings(rings.pop().unwrap());
        w0.worker = WorkerCtx::with_rings(rings.pop().unwrap());
        let mut s = (*publisher.current()).clone();
        let mut iface = s.iface(2).unwrap().clone();
        iface.services = services;
        let public = Arc::make_mut(&mut s.public);
        if let Some(nat) = iface.services.nat {
            public.insert((100, u32::from(nat.ip)), dp_tables::PublicTarget::Nat);
            s.set_underlay(nat_underlay(), UnderlayTarget::Nat { port: 2, vni: 100 });
        }
        let public = Arc::make_mut(&mut s.public);
        if let Some(vip) = iface.services.vip {
            public.insert(
                (100, u32::from(vip)),
                dp_tables::PublicTarget::Vip {
                    port: 2,
                    private: iface.ipv4,
                },
            );
            s.set_underlay(vip_underlay(), UnderlayTarget::Vip { port: 2, vni: 100 });
        }
        s.set_iface(2, Some(Arc::new(iface)));
        let mut table = (**s.vnis.get(&100).unwrap()).clone();
        table
            .v4
            .insert(
                0,
                0,
                RouteTarget::Remote {
                    vni: 100,
                    underlay: public_router(),
                    public: true,
                },
            )
            .unwrap();
        s.vnis.insert(100, Arc::new(table));
        publisher.publish(s);
        ([w0, w1], [h0, h1], publisher)
    }

    /// An IPv4 TCP segment (no payload) with both checksums.
    fn tcp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8, ttl: u8) -> Vec<u8> {
        let mut tcp = sport.to_be_bytes().to_vec();
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, u8::from(flags & 0x10 != 0)]);
        tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        let c = dp_packet::checksum::transport_v4(&src, &dst, dp_packet::IpProtocol::TCP, &tcp);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0, 0, ttl, 6, 0, 0];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        let c = dp_packet::checksum::finish(dp_packet::checksum::data(&ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&tcp);
        ip
    }

    /// The VM on port 2 sends `ip`.
    fn from_vm(ip: &[u8]) -> Vec<u8> {
        let mut f = own(2).0.to_vec();
        f.extend_from_slice(&VM_MAC.0);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(ip);
        f
    }

    /// What the VM on port 2 receives: `ip` from our MAC.
    fn to_vm(ip: &[u8]) -> Vec<u8> {
        let mut f = VM_MAC.0.to_vec();
        f.extend_from_slice(&own(2).0);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(ip);
        f
    }

    /// The router sends `inner` from the public router's underlay address to `dst` on pf0.
    fn from_router(dst: Ipv6Addr, inner: &[u8]) -> Vec<u8> {
        let mut f = own(0).0.to_vec();
        f.extend_from_slice(&ROUTER.0);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        f.extend_from_slice(&[4, 64]);
        f.extend_from_slice(&public_router().octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(inner);
        f
    }

    /// What a worker sent: out of its uplinks, and to its VF.
    type Sent = (Vec<Vec<u8>>, Vec<Vec<u8>>);

    /// Polls both workers `rounds` times; what each sent out of its uplinks and its VF.
    fn run_both(
        w: &mut [Worker; 2],
        h: &[Vec<MemoryPortHandle>; 2],
        rounds: u64,
        now: &mut u64,
    ) -> [Sent; 2] {
        let mut rx = Vec::with_capacity(BATCH_SIZE);
        let mut out: [Sent; 2] = Default::default();
        for _ in 0..rounds {
            *now += 1000;
            for w in w.iter_mut() {
                w.poll_once(&mut rx, *now);
            }
            for (out, h) in out.iter_mut().zip(h) {
                for uplink in &h[..2] {
                    out.0.extend(uplink.take_sent());
                }
                out.1.extend(h[2].take_sent());
            }
        }
        out
    }

    /// How many packets both workers handed to the other so far.
    fn handed_off(w: &[Worker; 2]) -> u64 {
        w.iter().map(|w| w.graph.counters().handed_off()).sum()
    }

    /// The two workers' graph counters: no drop, conservation, every buffer home.
    fn assert_both_clean(w: &[Worker; 2]) {
        let (c0, c1) = (w[0].graph.counters(), w[1].graph.counters());
        assert_eq!(c0.total_drops() + c1.total_drops(), 0, "no drop");
        let sum = |f: &dyn Fn(&GraphCounters) -> u64| f(c0) + f(c1);
        assert_eq!(
            sum(&|c| c.node_packets(dp_pipeline::NodeId::Classify)) + sum(&|c| c.originated()),
            sum(&|c| c.tx_packets.load(Ordering::Relaxed)),
            "every packet sent"
        );
        assert_eq!(sum(&|c| c.handed_off()), sum(&|c| c.handed_in()));
        for w in w {
            assert_eq!(w.pool.available(), w.pool.capacity());
        }
    }

    /// NAT return traffic with two workers: VM1's SYNs, received alternately by both workers,
    /// are translated by the worker that owns their flow, with NAT ports that worker owns; the
    /// SYN-ACKs to the NAT address, all received by the *other* worker, are steered by their
    /// destination port to the flow and reach the VM translated back.
    #[test]
    fn nat_replies_meet_their_flow_on_the_other_worker() {
        const FLOWS: u16 = 500;
        let (mut w, h, _publisher) = nat_workers(dp_tables::IfaceServices {
            nat: Some(dp_tables::NatRange {
                ip: NAT_IP,
                min_port: 1024,
                max_port: 3072,
            }),
            ..Default::default()
        });
        for i in 0..FLOWS {
            let syn = tcp4(VM_IP, SERVER, 20000 + i, 80, 0x02, 64);
            h[usize::from(i % 2)][2].inject(&from_vm(&syn));
        }
        let mut now = 0;
        let out = run_both(&mut w, &h, 50, &mut now);
        // Each SYN left once, from the worker that owns its flow, with a NAT port it owns.
        let mut nat_port = vec![None; usize::from(FLOWS)];
        for (index, (uplinks, vf)) in out.iter().enumerate() {
            assert!(vf.is_empty());
            for f in uplinks {
                assert_eq!(&f[14 + 24..14 + 40], &public_router().octets());
                let inner = &f[14 + 40..];
                assert_eq!(&inner[12..16], &NAT_IP.octets(), "source translated");
                assert_eq!(&inner[16..20], &SERVER.octets());
                let port = u16::from_be_bytes([inner[20], inner[21]]);
                assert!((1024..3072).contains(&port));
                assert_eq!(
                    dp_pipeline::affinity::nat_port_owner(port, 2),
                    index,
                    "port {port} owned by the worker that allocated it"
                );
                // Which flow: the one of that worker with this NAT port (one destination).
                let flow = w[index]
                    .worker
                    .flows
                    .iter()
                    .find(|(_, fl)| fl.reply.dst_port == port)
                    .map(|(_, fl)| fl.original.src_port - 20000)
                    .expect("a flow with that NAT port");
                assert_eq!(nat_port[usize::from(flow)].replace((port, index)), None);
            }
        }
        assert!(nat_port.iter().all(Option::is_some), "every SYN out");
        assert!(!w[0].worker.flows.is_empty() && !w[1].worker.flows.is_empty());
        assert_eq!(
            w[0].worker.flows.len() + w[1].worker.flows.len(),
            usize::from(FLOWS)
        );
        for (index, w) in w.iter().enumerate() {
            assert!(w
                .worker
                .flows
                .iter()
                .all(
                    |(_, fl)| dp_pipeline::affinity::nat_port_owner(fl.reply.dst_port, 2) == index
                ));
        }
        let handed_before = handed_off(&w);
        // The SYN-ACKs, each received by the worker that does not own its flow.
        for &(port, owner) in nat_port.iter().flatten() {
            let synack = tcp4(SERVER, NAT_IP, 80, port, 0x12, 60);
            h[1 - owner][0].inject(&from_router(nat_underlay(), &synack));
        }
        let out = run_both(&mut w, &h, 50, &mut now);
        let mut delivered = vec![false; usize::from(FLOWS)];
        for (index, (uplinks, vf)) in out.iter().enumerate() {
            assert!(uplinks.is_empty(), "{uplinks:?}");
            for f in vf {
                let dport = u16::from_be_bytes([f[14 + 22], f[14 + 23]]);
                let flow = usize::from(dport - 20000);
                let (port, owner) = nat_port[flow].unwrap();
                assert_eq!(owner, index, "delivered by the flow's worker");
                // Exactly the SYN-ACK the server sent, to the VM's own address and port, every
                // checksum right.
                let want = to_vm(&tcp4(SERVER, VM_IP, 80, 20000 + flow as u16, 0x12, 60));
                assert_eq!(f, &want, "flow {flow} (NAT port {port})");
                assert!(!std::mem::replace(&mut delivered[flow], true), "once");
            }
        }
        assert!(delivered.iter().all(|&d| d), "every SYN-ACK reached the VM");
        assert_eq!(
            handed_off(&w) - handed_before,
            u64::from(FLOWS),
            "every reply handed over"
        );
        assert_both_clean(&w);
    }

    /// The VIP variant: clients' SYNs for VM1's VIP, received alternately by both workers, are
    /// delivered (translated to VM1's address) by the worker that owns their flow; VM1's
    /// SYN-ACKs, all received by the other worker's VF queue, are handed to it and leave from
    /// the VIP.
    #[test]
    fn vip_flows_meet_their_worker_in_both_directions() {
        const FLOWS: u16 = 500;
        const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);
        let (mut w, h, _publisher) = nat_workers(dp_tables::IfaceServices {
            vip: Some(VIP),
            ..Default::default()
        });
        for i in 0..FLOWS {
            let syn = tcp4(CLIENT, VIP, 30000 + i, 22, 0x02, 60);
            h[usize::from(i % 2)][0].inject(&from_router(vip_underlay(), &syn));
        }
        let mut now = 0;
        let out = run_both(&mut w, &h, 50, &mut now);
        let mut owner_of = vec![None; usize::from(FLOWS)];
        for (index, (uplinks, vf)) in out.iter().enumerate() {
            assert!(uplinks.is_empty(), "{uplinks:?}");
            for f in vf {
                let sport = u16::from_be_bytes([f[14 + 20], f[14 + 21]]);
                let flow = usize::from(sport - 30000);
                assert_eq!(f, &to_vm(&tcp4(CLIENT, VM_IP, sport, 22, 0x02, 60)));
                assert_eq!(owner_of[flow].replace(index), None, "once");
            }
        }
        assert!(owner_of.iter().all(Option::is_some), "every SYN delivered");
        assert!(!w[0].worker.flows.is_empty() && !w[1].worker.flows.is_empty());
        let handed_before = handed_off(&w);
        for (i, owner) in owner_of.iter().enumerate() {
            let synack = tcp4(VM_IP, CLIENT, 22, 30000 + i as u16, 0x12, 64);
            h[1 - owner.unwrap()][2].inject(&from_vm(&synack));
        }
        let out = run_both(&mut w, &h, 50, &mut now);
        let mut sent = vec![false; usize::from(FLOWS)];
        for (index, (uplinks, vf)) in out.iter().enumerate() {
            assert!(vf.is_empty(), "{vf:?}");
            for f in uplinks {
                assert_eq!(&f[14 + 24..14 + 40], &public_router().octets());
                let inner = &f[14 + 40..];
                let dport = u16::from_be_bytes([inner[22], inner[23]]);
                let flow = usize::from(dport - 30000);
                assert_eq!(owner_of[flow], Some(index), "sent by the flow's worker");
                assert_eq!(inner, &tcp4(VIP, CLIENT, 22, dport, 0x12, 63)[..]);
                assert!(!std::mem::replace(&mut sent[flow], true), "once");
            }
        }
        assert!(sent.iter().all(|&s| s), "every SYN-ACK out from the VIP");
        assert_eq!(handed_off(&w) - handed_before, u64::from(FLOWS));
        assert_both_clean(&w);
    }

    /// Load balancing with two workers: a flow's packets, received by either worker, reach its
    /// owner and keep the Maglev target the first one got; removing a target moves only the
    /// flows that had it.
    #[test]
    fn lb_flows_keep_their_target_across_two_workers() {
        const FLOWS: u16 = 400;
        const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);
        const LB_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 80);
        let lb_underlay: Ipv6Addr = "fc00:1::300:1".parse().unwrap();
        let targets: Vec<Ipv6Addr> = (1..=4)
            .map(|i| format!("fc00:{}::400:1", i + 2).parse().unwrap())
            .collect();
        let (mut w, h, publisher) = nat_workers(dp_tables::IfaceServices::default());
        let set_targets = |targets: &[Ipv6Addr]| {
            let mut s = (*publisher.current()).clone();
            let ip = std::net::IpAddr::V4(LB_IP);
            let mut lb = dp_tables::LoadBalancer::new(
                "lb".into(),
                100,
                ip,
                vec![dp_tables::LbPort {
                    proto: dp_packet::IpProtocol::TCP,
                    port: 80,
                }],
                lb_underlay,
            );
            lb.set_targets(targets.to_vec());
            Arc::make_mut(&mut s.load_balancers)
                .insert(dp_tables::lb::lb_key(100, ip), Arc::new(lb));
            s.set_underlay(lb_underlay, UnderlayTarget::LoadBalancer { vni: 100, ip });
            s.lb_generation += 1;
            publisher.publish(s);
        };
        set_targets(&targets);
        // Sent on towards `(target, sport)`, each flow once.
        let collect = |out: &[Sent; 2]| {
            let mut seen = vec![None; usize::from(FLOWS)];
            for (uplinks, vf) in out {
                assert!(vf.is_empty(), "{vf:?}");
                for f in uplinks {
                    let target =
                        Ipv6Addr::from(<[u8; 16]>::try_from(&f[14 + 24..14 + 40]).unwrap());
                    let inner = &f[14 + 40..];
                    let sport = u16::from_be_bytes([inner[20], inner[21]]);
                    let flow = usize::from(sport - 30000);
                    assert_eq!(seen[flow].replace(target), None, "once");
                }
            }
            assert!(seen.iter().all(Option::is_some), "every packet sent on");
            seen.into_iter().map(Option::unwrap).collect::<Vec<_>>()
        };
        let mut now = 0;
        for i in 0..FLOWS {
            let syn = tcp4(CLIENT, LB_IP, 30000 + i, 80, 0x02, 60);
            h[usize::from(i % 2)][0].inject(&from_router(lb_underlay, &syn));
        }
        let first = collect(&run_both(&mut w, &h, 50, &mut now));
        assert!(!w[0].worker.flows.is_empty() && !w[1].worker.flows.is_empty());
        // The next packets arrive at the other worker: same target.
        for i in 0..FLOWS {
            let ack = tcp4(CLIENT, LB_IP, 30000 + i, 80, 0x10, 60);
            h[usize::from(1 - i % 2)][0].inject(&from_router(lb_underlay, &ack));
        }
        let again = collect(&run_both(&mut w, &h, 50, &mut now));
        assert_eq!(again, first);
        // One target removed: its flows move, no other does.
        let removed = targets[1];
        let rest: Vec<_> = targets.iter().copied().filter(|&t| t != removed).collect();
        set_targets(&rest);
        for i in 0..FLOWS {
            let ack = tcp4(CLIENT, LB_IP, 30000 + i, 80, 0x10, 60);
            h[usize::from(i % 2)][0].inject(&from_router(lb_underlay, &ack));
        }
        let after = collect(&run_both(&mut w, &h, 50, &mut now));
        let mut moved = 0;
        for (before, after) in first.iter().zip(&after) {
            if *before == removed {
                assert_ne!(after, &removed);
                moved += 1;
            } else {
                assert_eq!(after, before);
            }
        }
        assert!(moved > 50, "the removed target had its share: {moved}");
        assert_both_clean(&w);
    }

    /// The command queue through the worker: a report of its pool and hand-off counters.
    #[test]
    fn a_worker_answers_a_report_command() {
        let (mut w, _h, _p) = worker(1);
        let (tx, queue) = dp_pipeline::commands::queue();
        w.commands = Some(queue);
        let (reply, answers) = std::sync::mpsc::sync_channel(1);
        tx.send(dp_pipeline::commands::WorkerCommand::Report { reply })
            .unwrap();
        assert_eq!(w.serve_commands(), 1);
        let report = answers.try_recv().unwrap();
        assert_eq!(
            (report.index, report.pool_available, report.pool_capacity),
            (0, 256, 256)
        );
        assert_eq!(w.serve_commands(), 0);
    }

    /// A port that hands out one TCP superframe (an offload request), then nothing.
    struct SuperframePort {
        frame: Option<Vec<u8>>,
        counters: Arc<dp_ports::PortCounters>,
    }

    impl PortQueue for SuperframePort {
        fn rx_burst(
            &mut self,
            pool: &mut BufferPool,
            out: &mut Vec<dp_pipeline::PacketBuf>,
            _max: usize,
        ) -> usize {
            let Some(frame) = self.frame.take() else {
                return 0;
            };
            let mut buf = pool.alloc().unwrap();
            buf.receive_area()[..frame.len()].copy_from_slice(&frame);
            buf.set_len(frame.len()).unwrap();
            buf.meta.offload = dp_pipeline::Offload {
                flags: dp_pipeline::Offload::NEEDS_CSUM,
                gso_type: dp_pipeline::Offload::GSO_TCPV4,
                hdr_len: 54,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
            };
            out.push(buf);
            1
        }
        fn tx_burst(
            &mut self,
            pkts: &mut Vec<dp_pipeline::PacketBuf>,
            pool: &mut BufferPool,
        ) -> usize {
            let n = pkts.len();
            for p in pkts.drain(..) {
                pool.free(p);
            }
            n
        }
        fn rx_fd(&self) -> Option<std::os::fd::RawFd> {
            None
        }
        fn offloads(&self) -> bool {
            true
        }
    }

    /// The device half of a test port (`$port` with a `counters` field): always up, a VM's MAC.
    macro_rules! test_port_device {
        ($port:ty, $name:literal) => {
            impl PortDevice for $port {
                fn name(&self) -> &str {
                    $name
                }
                fn link_up(&self) -> bool {
                    true
                }
                fn mac(&self) -> MacAddr {
                    VM_MAC
                }
                fn counters(&self) -> &Arc<dp_ports::PortCounters> {
                    &self.counters
                }
            }
        };
    }

    test_port_device!(SuperframePort, "superframes");

    /// A port that reads by system call and never has a frame; counts its reads.
    struct IdleSyscallPort {
        reads: Arc<std::sync::atomic::AtomicUsize>,
        counters: Arc<dp_ports::PortCounters>,
    }

    impl PortQueue for IdleSyscallPort {
        fn rx_burst(
            &mut self,
            _pool: &mut BufferPool,
            _out: &mut Vec<dp_pipeline::PacketBuf>,
            _max: usize,
        ) -> usize {
            self.reads.fetch_add(1, Ordering::Relaxed);
            0
        }
        fn tx_burst(
            &mut self,
            pkts: &mut Vec<dp_pipeline::PacketBuf>,
            pool: &mut BufferPool,
        ) -> usize {
            for p in pkts.drain(..) {
                pool.free(p);
            }
            0
        }
        fn rx_fd(&self) -> Option<std::os::fd::RawFd> {
            None
        }
        fn reads_by_syscall(&self) -> bool {
            true
        }
    }

    test_port_device!(IdleSyscallPort, "idle-tap");

    #[test]
    fn an_idle_port_read_by_system_call_is_read_once_per_gap_while_others_are_busy() {
        let (mut w, handles, _p) = worker(1);
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        w.ports[0] = Box::new(IdleSyscallPort {
            reads: Arc::clone(&reads),
            counters: dp_ports::PortCounters::new(),
        });
        let mut idle = vec![IdlePoll::default(); w.ports.len()];
        let mut rx = Vec::with_capacity(BATCH_SIZE);
        // 100 rounds of 1 µs, a VM sending in every one: the VM's frames all go through.
        let mut received = 0;
        for round in 0..100u64 {
            handles[2].inject(&vm_to_remote());
            received += w.poll_round(&mut rx, 1 + round * 1_000, &mut idle).received;
        }
        assert_eq!(received, 100);
        assert_eq!(reads.load(Ordering::Relaxed), 4 + 96 / 20);
        // Without a schedule (`poll_once`) it is read every round.
        w.poll_once(&mut rx, 200_000);
        w.poll_once(&mut rx, 200_001);
        assert_eq!(reads.load(Ordering::Relaxed), 4 + 96 / 20 + 2);
        // After a sleep it is read in the next round.
        idle.iter_mut().for_each(IdlePoll::wake);
        w.poll_round(&mut rx, 200_002, &mut idle);
        assert_eq!(reads.load(Ordering::Relaxed), 4 + 96 / 20 + 3);
    }

    #[test]
    fn a_round_tells_whether_a_superframe_came_in() {
        let (mut w, handles, _p) = worker(1);
        let mut rx = Vec::with_capacity(BATCH_SIZE);
        handles[2].inject(&vm_to_remote());
        let round = w.poll_round(&mut rx, 1, &mut []);
        assert_eq!((round.received, round.superframes), (1, false));
        w.ports[2] = Box::new(SuperframePort {
            frame: Some(vm_to_remote()),
            counters: dp_ports::PortCounters::new(),
        });
        let round = w.poll_round(&mut rx, 2, &mut []);
        assert_eq!((round.received, round.superframes), (1, true));
        assert_eq!(w.poll_round(&mut rx, 3, &mut []).received, 0);
    }

    const SMALL: Round = Round {
        received: 1,
        superframes: false,
    };
    const SUPER: Round = Round {
        received: 1,
        superframes: true,
    };

    #[test]
    fn the_worker_spins_after_small_frames_and_sleeps_at_once_after_superframes() {
        let mut p = Pacer::new(0);
        // Small frames: SPIN_ROUNDS empty rounds of polling, then a sleep.
        p.busy(SMALL, 10);
        for i in 0..SPIN_ROUNDS {
            assert!(!p.empty(11 + u64::from(i)), "spins (empty round {i})");
        }
        assert!(p.empty(100));
        p.slept(100, 5_000, false);
        // A superframe: the first empty round sleeps, even after small frames since.
        p.busy(SUPER, 6_000);
        p.busy(SMALL, 6_100);
        assert!(p.empty(6_200), "sleeps at once");
        // Woken quickly, but no longer spin: the spin does not grow.
        p.slept(6_200, 6_300, true);
        assert_eq!(p.spin_ns, 0);
        // The sleep ends the superframe state: small frames spin again.
        p.busy(SMALL, 7_000);
        assert!(!p.empty(7_001));
    }

    #[test]
    fn the_adaptive_spin_still_grows_for_small_frames() {
        let mut p = Pacer::new(0);
        p.busy(SMALL, 1_000);
        for i in 0..SPIN_ROUNDS {
            assert!(!p.empty(1_001 + u64::from(i)));
        }
        assert!(p.empty(2_000));
        // Woken 100 ns into the sleep after a 1000 ns spin: the next spin doubles.
        p.slept(2_000, 2_100, true);
        assert_eq!(p.spin_ns, 2_000);
    }

    #[test]
    fn the_epoll_set_is_disarmed_under_small_frames_only() {
        let mut p = Pacer::new(0);
        let disarms: Vec<bool> = (0..2 * DISARM_AFTER_ROUNDS)
            .map(|i| p.busy(SMALL, u64::from(i)))
            .collect();
        assert_eq!(disarms.iter().filter(|&&d| d).count(), 1);
        assert!(disarms[DISARM_AFTER_ROUNDS as usize - 1]);
        p.slept(100, 200, true);
        p.busy(SUPER, 300);
        assert!((0..2 * DISARM_AFTER_ROUNDS).all(|i| !p.busy(SMALL, 400 + u64::from(i))));
    }
}
