//! A worker thread: polls its ports in bursts, runs the graph, transmits — and sleeps in epoll
//! when there is nothing to do, so an idle daemon leaves the CPU to others.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dp_pipeline::{BufferPool, Ctx, DpConfig, DropReason, Graph, PortTable, BATCH_SIZE};
use dp_ports::Port;
use dp_tables::{PortId, SnapshotReader};

/// Polls without sleeping for this many empty rounds after the last packet before blocking
/// in epoll: cheap latency under load, no spinning when idle.
const SPIN_ROUNDS: u32 = 64;
/// Longest epoll sleep: bounds how late a shutdown request is noticed.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// Everything one worker owns.
pub struct Worker {
    pub ports: Vec<Box<dyn Port>>,
    pub graph: Graph,
    pub pool: BufferPool,
    pub tables: SnapshotReader,
    pub port_table: Arc<PortTable>,
    pub config: Arc<DpConfig>,
    pub stop: Arc<AtomicBool>,
}

impl Worker {
    /// Runs until `stop` is set.
    pub fn run(mut self) {
        let epoll = Epoll::new(&self.ports);
        let started = Instant::now();
        let mut rx = Vec::with_capacity(BATCH_SIZE);
        let mut idle_rounds = 0u32;
        while !self.stop.load(Ordering::Relaxed) {
            let now_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let received = self.poll_once(&mut rx, now_ns);
            if received > 0 {
                idle_rounds = 0;
                continue;
            }
            idle_rounds = idle_rounds.saturating_add(1);
            if idle_rounds > SPIN_ROUNDS {
                match &epoll {
                    Some(e) => e.wait(IDLE_WAIT),
                    None => std::thread::sleep(Duration::from_millis(1)),
                }
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// One round: a burst from every port through the graph and out. Returns frames received.
    pub fn poll_once(&mut self, rx: &mut Vec<dp_pipeline::PacketBuf>, now_ns: u64) -> usize {
        let mut received = 0;
        for (index, port) in self.ports.iter_mut().enumerate() {
            let room = self.graph.rx_room();
            if room == 0 {
                break;
            }
            let port_id = PortId::try_from(index).unwrap_or(PortId::MAX);
            let n = port.rx_burst(&mut self.pool, rx, room);
            received += n;
            for mut pkt in rx.drain(..) {
                pkt.meta.in_port = port_id;
                pkt.meta.rx_time_ns = now_ns;
                if let Err(pkt) = self.graph.push_rx(pkt) {
                    self.graph
                        .drop_packet(pkt, DropReason::QueueFull, &mut self.pool);
                }
            }
        }
        if received == 0 {
            return 0;
        }
        // One snapshot load per batch: control-plane changes take effect between batches.
        let tables = self.tables.load();
        let ctx = Ctx {
            tables: &tables,
            config: &self.config,
            ports: &self.port_table,
            now_ns,
        };
        self.graph.run(&ctx, &mut self.pool);
        for (index, port) in self.ports.iter_mut().enumerate() {
            let port_id = PortId::try_from(index).unwrap_or(PortId::MAX);
            if let Some(batch) = self.graph.tx_batch(port_id) {
                if batch.is_empty() {
                    continue;
                }
                let queued = batch.len();
                let sent = port.tx_burst(batch, &mut self.pool);
                let counters = self.graph.counters();
                counters
                    .tx_packets
                    .fetch_add(sent as u64, Ordering::Relaxed);
                if let Some(c) = counters.drops.get(DropReason::TxFailed.index()) {
                    c.fetch_add(queued.saturating_sub(sent) as u64, Ordering::Relaxed);
                }
            }
        }
        received
    }
}

/// An epoll set over the ports' receive descriptors.
struct Epoll {
    fd: std::os::fd::OwnedFd,
}

impl Epoll {
    fn new(ports: &[Box<dyn Port>]) -> Option<Epoll> {
        use std::os::fd::FromRawFd;
        // SAFETY: epoll_create1 has no memory preconditions; the result is checked.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let mut any = false;
        for (i, port) in ports.iter().enumerate() {
            let Some(port_fd) = port.rx_fd() else {
                continue;
            };
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: both descriptors are valid; `ev` outlives the call.
            let rc = unsafe {
                libc::epoll_ctl(
                    std::os::fd::AsRawFd::as_raw_fd(&fd),
                    libc::EPOLL_CTL_ADD,
                    port_fd,
                    &mut ev,
                )
            };
            any |= rc == 0;
        }
        any.then_some(Epoll { fd })
    }

    fn wait(&self, timeout: Duration) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `events` is a valid buffer of the length passed.
        unsafe {
            libc::epoll_wait(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                events.as_mut_ptr(),
                events.len() as i32,
                ms,
            );
        }
    }
}
