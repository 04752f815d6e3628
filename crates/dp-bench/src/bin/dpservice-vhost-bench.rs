//! The vhost-user data path without a guest: the copies between a guest's split virtqueues and
//! our buffers (`dp_ports::vhost_user::ring`), driven by an in-process "driver" that posts
//! descriptor chains in guest memory as a virtio-net driver would (issue #14).
//!
//! Cases: `guest_tx` (frames the guest sends, copied out of its transmit ring into pool
//! buffers) and `guest_rx` (our frames copied into its receive ring), each for 64- and
//! 1400-byte frames, 32 per burst. Prints one line per case:
//! `BENCH path=vhost_<case> size=<bytes> mpps=<x> ns_per_pkt=<x> allocs_per_pkt=<x>`.
//! The driver's own work (writing avail entries, reading nothing back) is included; it is a
//! few stores per packet, through a host pointer (through vm-memory's `write_obj` it was ~250
//! instructions per packet, as much as the ring itself). Run under callgrind for instruction
//! counts (BENCHMARKS.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dp_ports::vhost_user::ring::{self, Offloads, RingStats, NET_HDR_LEN};
use dp_ports::vhost_user::split::SplitRing;
use dp_ports::{BufferPool, PacketBuf};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

struct CountingAlloc;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[derive(Parser)]
#[command(
    name = "dpservice-vhost-bench",
    about = "vhost-user ring copies without a guest"
)]
struct Args {
    /// Seconds per case (default 1, 0.1 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Short runs (CI smoke test).
    #[arg(long)]
    quick: bool,
    /// Only this many bursts per case (for callgrind), instead of a time.
    #[arg(long)]
    bursts: Option<u64>,
    /// Only this case (guest_tx or guest_rx).
    #[arg(long)]
    case: Option<String>,
    /// Only this frame size.
    #[arg(long)]
    size: Option<usize>,
}

const QUEUE_SIZE: u16 = 256;
const BURST: usize = 32;
const MEM: usize = 16 << 20;
const RING_AT: u64 = 0x1000;
const BUFS_AT: u64 = 0x10_0000;
const BUF_SIZE: u64 = 2048;

/// Where the rings of a queue of `QUEUE_SIZE` at `RING_AT` are.
fn layout() -> (u64, u64, u64) {
    let desc = RING_AT;
    let avail = desc + 16 * u64::from(QUEUE_SIZE);
    let used = (avail + 6 + 2 * u64::from(QUEUE_SIZE)).next_multiple_of(4);
    (desc, avail, used)
}

/// A virtio driver's half of one queue: every descriptor `i` points at buffer `i`; posting
/// puts descriptor heads in the available ring.
struct Driver {
    mem: Arc<GuestMemoryMmap>,
    /// The avail ring's host address, as `u16`s (flags, idx, ring): inside `mem`'s mapping.
    avail: *mut u16,
    avail_idx: u16,
}

impl Driver {
    fn new(write_only: bool, frame: &[u8]) -> Driver {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).expect("guest memory");
        let (desc, avail, _) = layout();
        for i in 0..u64::from(QUEUE_SIZE) {
            let buf = BUFS_AT + i * BUF_SIZE;
            let len = if write_only {
                BUF_SIZE as u32
            } else {
                (NET_HDR_LEN + frame.len()) as u32
            };
            let flags: u16 = if write_only { 2 } else { 0 };
            let at = GuestAddress(desc + 16 * i);
            mem.write_obj(buf, at).expect("desc");
            mem.write_obj(len, GuestAddress(at.0 + 8)).expect("desc");
            mem.write_obj(flags, GuestAddress(at.0 + 12)).expect("desc");
            mem.write_obj(0u16, GuestAddress(at.0 + 14)).expect("desc");
            if !write_only {
                mem.write_slice(&[0; NET_HDR_LEN], GuestAddress(buf))
                    .expect("hdr");
                mem.write_slice(frame, GuestAddress(buf + NET_HDR_LEN as u64))
                    .expect("frame");
            }
        }
        // The whole avail ring inside the (one) region, its host address aligned.
        assert!(avail + 6 + 2 * u64::from(QUEUE_SIZE) <= MEM as u64);
        let avail = mem
            .get_host_address(GuestAddress(avail))
            .expect("avail ring")
            .cast::<u16>();
        assert!(avail.is_aligned());
        Driver {
            mem: Arc::new(mem),
            avail,
            avail_idx: 0,
        }
    }

    /// The device's half of the queue.
    fn ring(&self) -> SplitRing {
        let (desc, avail, used) = layout();
        SplitRing::new(
            Arc::clone(&self.mem),
            QUEUE_SIZE,
            desc,
            avail,
            used,
            0,
            false,
        )
        .expect("ring inside guest memory")
    }

    /// Makes `n` more chains available (the backend returns them all each burst).
    fn post(&mut self, n: usize) {
        for _ in 0..n {
            let slot = self.avail_idx % QUEUE_SIZE;
            // SAFETY: entry `slot` < QUEUE_SIZE of the avail ring, which `new` checked lies in
            // the mapping (kept alive by `self.mem`), aligned; the backend reads it volatile.
            unsafe {
                std::ptr::write_volatile(self.avail.add(2 + usize::from(slot)), slot.to_le())
            };
            self.avail_idx = self.avail_idx.wrapping_add(1);
        }
        // SAFETY: `avail.idx`, inside the mapping and aligned (as above); accessed atomically
        // by both sides.
        unsafe { AtomicU16::from_ptr(self.avail.add(1)) }
            .store(self.avail_idx.to_le(), Ordering::Release);
    }
}

struct Outcome {
    packets: u64,
    elapsed: Duration,
    allocs: u64,
}

fn run(case: &str, size: usize, budget: Budget) -> Outcome {
    let frame: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let guest_tx = case == "guest_tx";
    let mut driver = Driver::new(!guest_tx, &frame);
    let mut queue = driver.ring();
    let mut pool = BufferPool::new(4 * BURST, 2048);
    let mut bufs: Vec<PacketBuf> = Vec::with_capacity(BURST);
    let mut stats = RingStats::default();
    let mut packets = 0u64;
    let allocs0 = ALLOCS.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut bursts = 0u64;
    while budget.more(bursts, start) {
        driver.post(BURST);
        if guest_tx {
            packets += ring::receive(
                &mut queue,
                &mut pool,
                &mut bufs,
                BURST,
                &mut stats,
                Offloads::PassOn,
            ) as u64;
            for b in bufs.drain(..) {
                pool.free(b);
            }
        } else {
            for _ in 0..BURST {
                if let Some(mut b) = pool.alloc() {
                    if b.set_frame(&frame).is_ok() {
                        bufs.push(b);
                    } else {
                        pool.free(b);
                    }
                }
            }
            packets += ring::transmit(
                &mut queue,
                &mut bufs,
                &mut pool,
                &mut stats,
                Offloads::PassOn,
                None,
            ) as u64;
        }
        bursts += 1;
    }
    let elapsed = start.elapsed();
    assert_eq!(
        stats.bad_chains + stats.no_room + stats.no_buffer,
        0,
        "{case}: {stats:?}"
    );
    Outcome {
        packets,
        elapsed,
        allocs: ALLOCS.load(Ordering::Relaxed) - allocs0,
    }
}

#[derive(Clone, Copy)]
enum Budget {
    Time(Duration),
    Bursts(u64),
}

impl Budget {
    fn more(self, bursts: u64, start: Instant) -> bool {
        match self {
            // The clock read every 64 bursts only.
            Budget::Time(d) => !bursts.is_multiple_of(64) || start.elapsed() < d,
            Budget::Bursts(n) => bursts < n,
        }
    }
}

fn main() {
    let args = Args::parse();
    let seconds = args.seconds.unwrap_or(if args.quick { 0.1 } else { 1.0 });
    let budget = match args.bursts {
        Some(n) => Budget::Bursts(n),
        None => Budget::Time(Duration::from_secs_f64(seconds)),
    };
    for case in ["guest_tx", "guest_rx"] {
        if args.case.as_deref().is_some_and(|c| c != case) {
            continue;
        }
        for size in [64, 1400] {
            if args.size.is_some_and(|s| s != size) {
                continue;
            }
            let o = run(case, size, budget);
            let ns = o.elapsed.as_nanos() as f64 / o.packets.max(1) as f64;
            println!(
                "BENCH path=vhost_{case} size={size} mpps={:.3} ns_per_pkt={ns:.1} allocs_per_pkt={:.4}",
                o.packets as f64 / o.elapsed.as_secs_f64() / 1e6,
                o.allocs as f64 / o.packets.max(1) as f64
            );
        }
    }
}
