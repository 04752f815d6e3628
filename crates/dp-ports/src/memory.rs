//! In-process ports for tests and benchmarks.
//!
//! - [`MemoryPort::new`] gives a port and a cloneable [`MemoryPortHandle`]: the handle injects
//!   frames for the port to receive and collects the frames it transmitted. Queues sit behind a
//!   mutex (this is the test backend); an eventfd is readable while frames wait, so a worker's
//!   epoll idle wait works with memory ports too.
//! - [`MemoryPort::replay`] is the benchmark source: every receive burst copies the next frames
//!   of a fixed set, round-robin, forever; transmit only counts and frees. No lock, no
//!   allocation.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{BufferPool, MacAddr, PacketBuf, PortCounters, PortDevice, PortQueue, PortStats};

/// Frames a memory port keeps for [`MemoryPortHandle::take_sent`] before it drops (counted in
/// `tx_dropped`), so a forgotten handle cannot eat the memory.
pub const DEFAULT_SENT_CAPACITY: usize = 65536;

/// An in-process port; see the module docs.
#[derive(Debug)]
pub struct MemoryPort {
    name: String,
    mac: MacAddr,
    counters: Arc<PortCounters>,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Queues(Arc<Shared>),
    Replay {
        /// Every frame back to back, each padded to whole 64-byte lines, and [`SHORT_COPY`]
        /// bytes of slack at the end (one allocation, read
        /// sequentially: what a NIC's receive ring would hand over), and where each one is in it.
        bytes: Vec<u8>,
        frames: Vec<ReplayFrame>,
        next: usize,
        link_up: bool,
    },
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Readable while `state.rx` is not empty. Signalled and reset under the state lock.
    event: Option<EventFd>,
    counters: Arc<PortCounters>,
}

#[derive(Debug)]
struct State {
    rx: VecDeque<Vec<u8>>,
    sent: Vec<Vec<u8>>,
    sent_capacity: usize,
    link_up: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not take the other side down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The test side of a [`MemoryPort`]. Cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct MemoryPortHandle {
    shared: Arc<Shared>,
}

impl MemoryPort {
    /// A queue-backed port named `name` whose peer has MAC `mac`, and the handle that drives it.
    /// The link starts up.
    pub fn new(name: impl Into<String>, mac: MacAddr) -> (MemoryPort, MemoryPortHandle) {
        let counters = PortCounters::new();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                rx: VecDeque::new(),
                sent: Vec::new(),
                sent_capacity: DEFAULT_SENT_CAPACITY,
                link_up: true,
            }),
            event: EventFd::new(),
            counters: counters.clone(),
        });
        let port = MemoryPort {
            name: name.into(),
            mac,
            counters,
            mode: Mode::Queues(shared.clone()),
        };
        (port, MemoryPortHandle { shared })
    }

    /// A benchmark source: each receive burst copies the next `frames`, round-robin, forever
    /// (none when `frames` is empty; a frame too large for a pool buffer counts as an
    /// `rx_errors`). Transmit counts and frees. No [`PortQueue::rx_fd`]: it always has frames.
    pub fn replay(name: impl Into<String>, mac: MacAddr, frames: Vec<Vec<u8>>) -> MemoryPort {
        let padded = |len: usize| len.div_ceil(LINE) * LINE;
        let total = frames.iter().map(|f| padded(f.len())).sum::<usize>() + SHORT_COPY;
        let mut bytes = Vec::with_capacity(total);
        let mut ranges: Vec<ReplayFrame> = frames
            .iter()
            .map(|f| {
                let start = bytes.len();
                bytes.extend_from_slice(f);
                bytes.resize(start + padded(f.len()), 0);
                ReplayFrame {
                    start,
                    len: f.len(),
                    ahead: 0,
                }
            })
            .collect();
        let starts: Vec<usize> = ranges.iter().map(|r| r.start).collect();
        for (i, range) in ranges.iter_mut().enumerate() {
            range.ahead = starts
                .get((i + PREFETCH_AHEAD) % starts.len())
                .copied()
                .unwrap_or(0);
        }
        bytes.resize(total, 0);
        MemoryPort {
            name: name.into(),
            mac,
            counters: PortCounters::new(),
            mode: Mode::Replay {
                bytes,
                frames: ranges,
                next: 0,
                link_up: true,
            },
        }
    }

    /// Sets the link state. While down, nothing is received (injected frames wait) and every
    /// transmitted frame counts as `tx_errors`.
    pub fn set_link_up(&mut self, up: bool) {
        match &mut self.mode {
            Mode::Queues(shared) => shared.lock().link_up = up,
            Mode::Replay { link_up, .. } => *link_up = up,
        }
    }
}

/// A replayed frame: where it starts in the replay buffer, and its length.
#[derive(Debug)]
struct ReplayFrame {
    start: usize,
    len: usize,
    /// Where the frame [`PREFETCH_AHEAD`] later starts (worked out once, not per packet).
    ahead: usize,
}

/// The unit replayed frames are padded to: a cache line, so every frame starts on one (the block
/// copy and the two-line prefetch below then touch exactly a frame's lines, as a NIC's DMA would).
const LINE: usize = 64;

/// Frames up to this size (every 64-byte benchmark frame, encapsulated or not) are copied as one
/// fixed-size block: a few vector moves, where a `copy_from_slice` of a run-time length is a call
/// into libc's `memcpy` (a fifth of this port's receive cost in callgrind, a tenth of the encap
/// path's time in `perf`). One size only: the compiler merges copies of different sizes into one
/// `memcpy` call again. A block may read past a short frame into the next one (read next anyway)
/// or the buffer's slack; what lands past `len` in the packet buffer is not part of the frame.
const SHORT_COPY: usize = 2 * LINE;

/// How many frames ahead of the one being copied the replay port prefetches.
const PREFETCH_AHEAD: usize = 8;

/// Asks the CPU to bring the two lines from `bytes[at]` on into the cache.
#[inline(always)]
fn prefetch(bytes: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // No bounds check: the address is only a hint (`at` is a frame's start in `bytes`).
        let line = bytes.as_ptr().wrapping_add(at).cast::<i8>();
        // SAFETY: a prefetch never faults and changes no memory, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(line);
            _mm_prefetch::<_MM_HINT_T0>(line.wrapping_add(LINE));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, at);
}

/// Copies a replayed frame (`len` bytes from `start` in `bytes`) to the start of `dst`; false if
/// it does not fit.
#[inline]
fn copy_frame(dst: &mut [u8], bytes: &[u8], start: usize, len: usize) -> bool {
    if len <= SHORT_COPY {
        let src = bytes
            .get(start..)
            .and_then(|b| b.first_chunk::<SHORT_COPY>());
        if let (Some(d), Some(s)) = (dst.first_chunk_mut::<SHORT_COPY>(), src) {
            *d = *s;
            return true;
        }
    }
    copy_long(dst, bytes.get(start..).unwrap_or(&[]), len)
}

/// [`copy_frame`] for the other frames, out of line so its `memcpy` stays apart.
#[inline(never)]
fn copy_long(dst: &mut [u8], src: &[u8], len: usize) -> bool {
    match (dst.get_mut(..len), src.get(..len)) {
        (Some(d), Some(s)) => {
            d.copy_from_slice(s);
            true
        }
        _ => false,
    }
}

/// Copies `frame` into a fresh buffer; `None` (and the buffer back in the pool) when it is empty
/// or does not fit.
#[inline]
fn fill(pool: &mut BufferPool, mut buf: PacketBuf, frame: &[u8]) -> Option<PacketBuf> {
    let fits = match buf.receive_area().get_mut(..frame.len()) {
        Some(area) if !frame.is_empty() => {
            area.copy_from_slice(frame);
            true
        }
        _ => false,
    };
    if fits && buf.set_len(frame.len()).is_ok() {
        Some(buf)
    } else {
        pool.free(buf);
        None
    }
}

impl PortQueue for MemoryPort {
    fn rx_burst(&mut self, pool: &mut BufferPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let mut d = PortStats::default();
        let mut got = 0;
        match &mut self.mode {
            Mode::Queues(shared) => {
                let mut st = shared.lock();
                if !st.link_up {
                    return 0;
                }
                while got < max && !st.rx.is_empty() {
                    let Some(buf) = pool.alloc() else {
                        d.rx_nombuf += 1;
                        break;
                    };
                    let Some(frame) = st.rx.pop_front() else {
                        pool.free(buf);
                        break;
                    };
                    match fill(pool, buf, &frame) {
                        Some(buf) => {
                            d.rx_packets += 1;
                            d.rx_bytes += frame.len() as u64;
                            out.push(buf);
                            got += 1;
                        }
                        None => d.rx_errors += 1,
                    }
                }
                if st.rx.is_empty() {
                    if let Some(ev) = &shared.event {
                        ev.reset();
                    }
                }
            }
            Mode::Replay {
                bytes,
                frames,
                next,
                link_up,
            } => {
                if !*link_up || frames.is_empty() {
                    return 0;
                }
                for _ in 0..max {
                    let Some(mut buf) = pool.alloc() else {
                        d.rx_nombuf += 1;
                        break;
                    };
                    let Some(frame) = frames.get(*next) else {
                        pool.free(buf);
                        break;
                    };
                    *next += 1;
                    if *next == frames.len() {
                        *next = 0;
                    }
                    // A NIC driver prefetches the packets it will hand over next; so does this
                    // one: the frames are read in order but cross a 4 KiB page every few dozen,
                    // where the hardware's stream prefetcher starts over (a third of the decap
                    // path's time was the first load of each frame in `perf annotate`).
                    prefetch(bytes, frame.ahead);
                    if frame.len > 0
                        && copy_frame(buf.receive_area(), bytes, frame.start, frame.len)
                        && buf.set_len(frame.len).is_ok()
                    {
                        d.rx_bytes += frame.len as u64;
                        out.push(buf);
                        got += 1;
                    } else {
                        d.rx_errors += 1;
                        pool.free(buf);
                    }
                }
                d.rx_packets = got as u64;
            }
        }
        self.counters.add(&d);
        got
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>, pool: &mut BufferPool) -> usize {
        let mut d = PortStats::default();
        match &mut self.mode {
            Mode::Queues(shared) => {
                let mut st = shared.lock();
                for pkt in pkts.drain(..) {
                    if !st.link_up {
                        d.tx_errors += 1;
                    } else if st.sent.len() >= st.sent_capacity {
                        d.tx_dropped += 1;
                    } else {
                        d.tx_packets += 1;
                        d.tx_bytes += pkt.len() as u64;
                        st.sent.push(pkt.data().to_vec());
                    }
                    pool.free(pkt);
                }
            }
            Mode::Replay { link_up, .. } => {
                for pkt in pkts.drain(..) {
                    if *link_up {
                        d.tx_packets += 1;
                        d.tx_bytes += pkt.len() as u64;
                    } else {
                        d.tx_errors += 1;
                    }
                    pool.free(pkt);
                }
            }
        }
        self.counters.add(&d);
        d.tx_packets as usize
    }

    fn rx_fd(&self) -> Option<RawFd> {
        match &self.mode {
            Mode::Queues(shared) => shared.event.as_ref().map(EventFd::raw),
            Mode::Replay { .. } => None,
        }
    }
}

impl PortDevice for MemoryPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_up(&self) -> bool {
        match &self.mode {
            Mode::Queues(shared) => shared.lock().link_up,
            Mode::Replay { link_up, .. } => *link_up,
        }
    }

    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn counters(&self) -> &Arc<PortCounters> {
        &self.counters
    }
}

impl MemoryPortHandle {
    /// Queues a copy of `frame` for the port to receive.
    pub fn inject(&self, frame: &[u8]) {
        let mut st = self.shared.lock();
        st.rx.push_back(frame.to_vec());
        if let Some(ev) = &self.shared.event {
            ev.signal();
        }
    }

    /// Frames queued and not yet received.
    pub fn rx_pending(&self) -> usize {
        self.shared.lock().rx.len()
    }

    /// Takes every frame the port transmitted so far, oldest first.
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.shared.lock().sent)
    }

    /// How many transmitted frames are kept for [`Self::take_sent`] before further ones are
    /// dropped; [`DEFAULT_SENT_CAPACITY`] unless changed.
    pub fn set_sent_capacity(&self, frames: usize) {
        self.shared.lock().sent_capacity = frames;
    }

    /// Sets the link state (see [`MemoryPort::set_link_up`]).
    pub fn set_link_up(&self, up: bool) {
        self.shared.lock().link_up = up;
    }

    pub fn link_up(&self) -> bool {
        self.shared.lock().link_up
    }

    /// The port's counters.
    pub fn stats(&self) -> PortStats {
        self.shared.counters.snapshot()
    }
}

/// A non-blocking eventfd used as a level-triggered "frames waiting" flag.
#[derive(Debug)]
struct EventFd(OwnedFd);

impl EventFd {
    /// `None` if the kernel refuses one (then the port simply has no `rx_fd`).
    fn new() -> Option<EventFd> {
        // SAFETY: eventfd takes no pointers; a non-negative return is a new fd that we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is a freshly created descriptor owned by nobody else.
        Some(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd. A failure (counter
        // saturated) leaves it readable, which is all we need.
        unsafe { libc::write(self.raw(), (&one as *const u64).cast(), 8) };
    }

    fn reset(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd; EAGAIN (not
        // signalled) is fine.
        unsafe { libc::read(self.raw(), (&mut value as *mut u64).cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n == 1 && pfd.revents & libc::POLLIN != 0
    }

    const MAC: MacAddr = MacAddr::new(2, 0, 0, 0, 0, 1);

    #[test]
    fn inject_receive_transmit_take() {
        let (mut port, h) = MemoryPort::new("vm0", MAC);
        let mut pool = BufferPool::new(8, 256);
        let mut out = Vec::with_capacity(8);
        assert_eq!(port.name(), "vm0");
        assert_eq!(port.mac(), MAC);
        assert_eq!(port.rx_burst(&mut pool, &mut out, 8), 0);

        h.inject(&[1, 2, 3]);
        h.inject(&[4, 5]);
        h.inject(&[6]);
        assert_eq!(h.rx_pending(), 3);
        // The frames carry the pool's fresh metadata: the caller's stamp.
        let stamp = dp_buffer::PacketMeta {
            in_port: 5,
            rx_time_ns: 99,
            ..Default::default()
        };
        pool.set_fresh_meta(stamp);
        assert_eq!(port.rx_burst(&mut pool, &mut out, 2), 2);
        pool.set_fresh_meta(Default::default());
        assert_eq!(out[0].data(), &[1, 2, 3]);
        assert_eq!(out[1].data(), &[4, 5]);
        assert_eq!((out[0].meta, out[1].meta), (stamp, stamp));
        assert_eq!(h.rx_pending(), 1);
        assert_eq!(pool.available(), 6);

        assert_eq!(port.tx_burst(&mut out, &mut pool), 2);
        assert!(out.is_empty());
        assert_eq!(pool.available(), 8);
        assert_eq!(h.take_sent(), vec![vec![1, 2, 3], vec![4, 5]]);
        assert!(h.take_sent().is_empty());

        let s = h.stats();
        assert_eq!((s.rx_packets, s.rx_bytes), (2, 5));
        assert_eq!((s.tx_packets, s.tx_bytes), (2, 5));
        assert_eq!(port.stats(), s);
    }

    #[test]
    fn rx_fd_is_readable_while_frames_wait() {
        let (mut port, h) = MemoryPort::new("vm0", MAC);
        let fd = port.rx_fd().expect("eventfd");
        let mut pool = BufferPool::new(8, 256);
        let mut out = Vec::with_capacity(8);
        assert!(!readable(fd));
        h.inject(&[1]);
        h.inject(&[2]);
        assert!(readable(fd));
        port.rx_burst(&mut pool, &mut out, 1);
        assert!(readable(fd), "one frame still waits");
        port.rx_burst(&mut pool, &mut out, 1);
        assert!(!readable(fd));
    }

    #[test]
    fn pool_exhaustion_and_oversize_are_counted() {
        let (mut port, h) = MemoryPort::new("vm0", MAC);
        let mut pool = BufferPool::new(2, 16);
        let mut out = Vec::with_capacity(8);
        h.inject(&[0u8; 17]); // too large for a 16-byte buffer
        h.inject(&[]); // empty
        h.inject(&[1; 16]);
        h.inject(&[2; 4]);
        h.inject(&[3; 4]);
        assert_eq!(port.rx_burst(&mut pool, &mut out, 8), 2);
        let s = port.stats();
        assert_eq!(s.rx_errors, 2);
        assert_eq!(s.rx_nombuf, 1);
        assert_eq!(h.rx_pending(), 1, "the frame that found no buffer waits");
        port.tx_burst(&mut out, &mut pool);
        assert_eq!(port.rx_burst(&mut pool, &mut out, 8), 1);
        assert_eq!(out[0].data(), &[3; 4]);
    }

    #[test]
    fn link_down_holds_rx_and_fails_tx() {
        let (mut port, h) = MemoryPort::new("vm0", MAC);
        let mut pool = BufferPool::new(4, 64);
        let mut out = Vec::with_capacity(4);
        h.inject(&[1]);
        h.set_link_up(false);
        assert!(!port.link_up());
        assert_eq!(port.rx_burst(&mut pool, &mut out, 4), 0);
        let mut tx = vec![pool.alloc().unwrap()];
        tx[0].set_frame(&[9]).unwrap();
        assert_eq!(port.tx_burst(&mut tx, &mut pool), 0);
        assert_eq!(port.stats().tx_errors, 1);
        assert_eq!(pool.available(), 4);
        port.set_link_up(true);
        assert!(h.link_up());
        assert_eq!(port.rx_burst(&mut pool, &mut out, 4), 1);
    }

    #[test]
    fn sent_capacity_bounds_memory() {
        let (mut port, h) = MemoryPort::new("vm0", MAC);
        h.set_sent_capacity(1);
        let mut pool = BufferPool::new(4, 64);
        let mut tx: Vec<_> = (0..3).map(|_| pool.alloc().unwrap()).collect();
        for b in &mut tx {
            b.set_frame(&[7]).unwrap();
        }
        assert_eq!(port.tx_burst(&mut tx, &mut pool), 1);
        assert_eq!(port.stats().tx_dropped, 2);
        assert_eq!(h.take_sent().len(), 1);
    }

    #[test]
    fn replay_cycles_forever_and_tx_counts() {
        let frames = vec![vec![1u8; 60], vec![2u8; 70], vec![3u8; 300]];
        let mut port = MemoryPort::replay("bench", MAC, frames);
        assert_eq!(port.rx_fd(), None);
        let mut pool = BufferPool::new(16, 128);
        let mut out = Vec::with_capacity(16);
        assert_eq!(port.rx_burst(&mut pool, &mut out, 5), 4);
        let firsts: Vec<u8> = out.iter().map(|b| b.data()[0]).collect();
        assert_eq!(firsts, vec![1, 2, 1, 2]); // the 300-byte frame never fits
        assert_eq!(out[1].len(), 70);
        let s = port.stats();
        assert_eq!((s.rx_packets, s.rx_errors), (4, 1));
        assert_eq!(port.tx_burst(&mut out, &mut pool), 4);
        assert_eq!(pool.available(), 16);
        assert_eq!(port.stats().tx_bytes, 260);
        for _ in 0..100 {
            port.rx_burst(&mut pool, &mut out, 16);
            port.tx_burst(&mut out, &mut pool);
        }
        assert_eq!(pool.available(), 16);
        port.set_link_up(false);
        assert_eq!(port.rx_burst(&mut pool, &mut out, 16), 0);
    }

    #[test]
    fn replay_copies_exact_bytes_with_or_without_room_for_a_block() {
        let odd: Vec<u8> = (0..=120u8).collect(); // 121 bytes: two lines, the last one partial
        let exact: Vec<u8> = (0..100u8).rev().collect(); // fills a 100-byte buffer exactly
        let mut port = MemoryPort::replay("bench", MAC, vec![odd.clone(), exact.clone()]);
        // A 100-byte data room is too short for the fixed-size block: the 100-byte frame is
        // copied byte-exact all the same, the 121-byte frame never fits.
        let mut small = BufferPool::new(4, 100);
        let mut out = Vec::with_capacity(4);
        assert_eq!(port.rx_burst(&mut small, &mut out, 2), 1);
        assert_eq!(out[0].data(), &exact[..]);
        assert_eq!(port.stats().rx_errors, 1);
        port.tx_burst(&mut out, &mut small);
        // With room for the block both are copied, and only their own bytes show.
        let mut pool = BufferPool::new(4, 256);
        assert_eq!(port.rx_burst(&mut pool, &mut out, 2), 2);
        assert_eq!(out[0].data(), &odd[..]);
        assert_eq!(out[1].data(), &exact[..]);
        assert_eq!(port.stats().rx_bytes, 100 + 121 + 100);
    }

    #[test]
    fn replay_of_nothing_receives_nothing() {
        let mut port = MemoryPort::replay("bench", MAC, Vec::new());
        let mut pool = BufferPool::new(4, 128);
        let mut out = Vec::with_capacity(4);
        assert_eq!(port.rx_burst(&mut pool, &mut out, 4), 0);
        assert_eq!(pool.available(), 4);
    }

    #[test]
    fn handle_works_across_threads() {
        let (mut port, h) = MemoryPort::new("vm0", MAC);
        let h2 = h.clone();
        std::thread::spawn(move || {
            for i in 0..100u8 {
                h2.inject(&[i]);
            }
        })
        .join()
        .unwrap();
        let mut pool = BufferPool::new(128, 64);
        let mut out = Vec::with_capacity(128);
        assert_eq!(port.rx_burst(&mut pool, &mut out, 128), 100);
        assert!(out.iter().enumerate().all(|(i, b)| b.data() == [i as u8]));
    }
}
