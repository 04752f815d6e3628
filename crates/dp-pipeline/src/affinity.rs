//! Flow affinity across workers: both directions of a flow meet one worker, and so one state.
//!
//! With `--workers N` the kernel decides which worker receives a frame (a TAP queue by its flow
//! steering, AF_PACKET fanout by the outer header), so a VM's request and the underlay's reply may
//! arrive at different workers. As VPP's worker hand-off, the [`Handoff`](crate::nodes::Handoff)
//! node — right after the input (the lookups, which validate a VM's packets) and after
//! decapsulation — computes the flow's
//! [`symmetric_hash`](dp_packet::FlowKey::symmetric_hash), which is the same for both directions,
//! and the owner `hash → 0..N`. A packet of a flow another worker owns goes into a
//! single-producer single-consumer ring to that worker ([`Rings::send`]); the owner drains its
//! inbound rings every round like a port ([`Rings::receive`]) and the packets go on from the
//! hand-off node, marked so they are not handed on again.
//!
//! * **A ring per ordered pair of workers**, lock-free (`rtrb`): one atomic store per push and
//!   pop, no lock. A full ring drops the packet, counted as `handoff_ring_full`, rather than
//!   stalling the sender.
//! * **Buffers go home.** A handed-off packet came from the sender's pool and is freed into the
//!   owner's. So the owner returns a free buffer of the same kind for every packet it took, through
//!   a second ring per pair ([`Rings::settle`]): each pool keeps its size.
//! * **Waking a sleeping owner.** A worker that sleeps in epoll says so ([`Rings::set_sleeping`])
//!   and has a [`Wake`] (an eventfd in its epoll set); a sender that handed it packets wakes it
//!   once per round ([`Rings::notify`]). The flag is set before the owner's last look at its
//!   rings and read after the sender's push, both sequentially consistent, so no wake-up is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::buffer::{BufferPool, PacketBuf};

/// Packets a ring between two workers holds: sixteen batches.
pub const RING_CAPACITY: usize = 1024;

/// Wakes a worker sleeping until its ports or its rings have packets (an eventfd in its epoll
/// set, in the daemon).
pub trait Wake: Send + Sync {
    fn wake(&self);
}

/// What one worker sees of the others: its rings to and from each.
pub struct Rings {
    index: usize,
    count: usize,
    /// To worker `j` (none to itself).
    to: Vec<Option<rtrb::Producer<PacketBuf>>>,
    /// From worker `j`.
    from: Vec<Option<rtrb::Consumer<PacketBuf>>>,
    /// Free buffers back to worker `j`, for the packets it handed us.
    give_back: Vec<Option<rtrb::Producer<PacketBuf>>>,
    /// Free buffers back from worker `j`, for the packets we handed it.
    take_back: Vec<Option<rtrb::Consumer<PacketBuf>>>,
    /// Buffers owed to worker `j`: (normal, large).
    owed: Vec<(usize, usize)>,
    /// Whether worker `j` got packets from us this round (to wake it).
    sent_to: Vec<bool>,
    /// Every worker's "sleeping" flag and wake-up.
    sleeping: Arc<[AtomicBool]>,
    wakers: Vec<Option<Arc<dyn Wake>>>,
}

impl std::fmt::Debug for Rings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rings")
            .field("index", &self.index)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// Rings between every ordered pair of `count` workers, with `capacity` slots each: element `i`
/// is worker `i`'s side. `wakers[i]` (if any) wakes worker `i`.
pub fn mesh(count: usize, capacity: usize, wakers: Vec<Option<Arc<dyn Wake>>>) -> Vec<Rings> {
    let sleeping: Arc<[AtomicBool]> = (0..count).map(|_| AtomicBool::new(false)).collect();
    let mut workers: Vec<Rings> = (0..count)
        .map(|index| Rings {
            index,
            count,
            to: (0..count).map(|_| None).collect(),
            from: (0..count).map(|_| None).collect(),
            give_back: (0..count).map(|_| None).collect(),
            take_back: (0..count).map(|_| None).collect(),
            owed: vec![(0, 0); count],
            sent_to: vec![false; count],
            sleeping: Arc::clone(&sleeping),
            wakers: (0..count)
                .map(|j| wakers.get(j).cloned().flatten())
                .collect(),
        })
        .collect();
    for i in 0..count {
        for j in 0..count {
            if i == j {
                continue;
            }
            let (tx, rx) = rtrb::RingBuffer::new(capacity);
            let (back_tx, back_rx) = rtrb::RingBuffer::new(capacity);
            if let Some(w) = workers.get_mut(i) {
                set(&mut w.to, j, tx);
                set(&mut w.take_back, j, back_rx);
            }
            if let Some(w) = workers.get_mut(j) {
                set(&mut w.from, i, rx);
                set(&mut w.give_back, i, back_tx);
            }
        }
    }
    workers
}

fn set<T>(slots: &mut [Option<T>], at: usize, value: T) {
    if let Some(slot) = slots.get_mut(at) {
        *slot = Some(value);
    }
}

impl Rings {
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Hands `pkt` to worker `to`; gives it back when the ring is full (or there is none).
    #[inline]
    pub fn send(&mut self, to: usize, pkt: PacketBuf) -> Result<(), PacketBuf> {
        let Some(ring) = self.to.get_mut(to).and_then(Option::as_mut) else {
            return Err(pkt);
        };
        match ring.push(pkt) {
            Ok(()) => {
                if let Some(sent) = self.sent_to.get_mut(to) {
                    *sent = true;
                }
                Ok(())
            }
            Err(rtrb::PushError::Full(pkt)) => Err(pkt),
        }
    }

    /// Moves up to `room` handed-off packets into `into` (the hand-off node's batch), worker by
    /// worker, and notes the buffers owed for them. Returns how many came.
    pub fn receive(&mut self, into: &mut Vec<PacketBuf>, room: usize, pool: &BufferPool) -> usize {
        let mut taken = 0;
        // Owed in kind: a large buffer for a large one, when the pool has large ones.
        let large_above = (pool.large_room() > pool.data_room()).then_some(pool.data_room());
        for (ring, owed) in self.from.iter_mut().zip(self.owed.iter_mut()) {
            let Some(ring) = ring else { continue };
            while taken < room {
                let Ok(pkt) = ring.pop() else { break };
                if large_above.is_some_and(|room| pkt.capacity() > room) {
                    owed.1 += 1;
                } else {
                    owed.0 += 1;
                }
                into.push(pkt);
                taken += 1;
            }
        }
        taken
    }

    /// Whether a ring holds packets for this worker.
    pub fn has_inbound(&self) -> bool {
        self.from.iter().flatten().any(|r| !r.is_empty())
    }

    /// Keeps the pools even: returns a free buffer for every packet taken from another worker
    /// (as far as this pool and the ring allow; the rest next round), and takes back into `pool`
    /// the buffers the others returned. Called right after [`Rings::receive`], before the
    /// packets are freed: a pool at its capacity would let their buffers go.
    pub fn settle(&mut self, pool: &mut BufferPool) {
        for (j, ring) in self.give_back.iter_mut().enumerate() {
            let (Some(ring), Some(owed)) = (ring.as_mut(), self.owed.get_mut(j)) else {
                continue;
            };
            while owed.0 > 0 && ring.slots() > 0 {
                let Some(buf) = pool.alloc() else { break };
                if let Err(rtrb::PushError::Full(buf)) = ring.push(buf) {
                    pool.free(buf);
                    break;
                }
                owed.0 -= 1;
            }
            while owed.1 > 0 && ring.slots() > 0 {
                let Some(buf) = pool.alloc_large() else { break };
                if let Err(rtrb::PushError::Full(buf)) = ring.push(buf) {
                    pool.free(buf);
                    break;
                }
                owed.1 -= 1;
            }
        }
        for ring in self.take_back.iter_mut().flatten() {
            while let Ok(buf) = ring.pop() {
                pool.free(buf);
            }
        }
    }

    /// Wakes the workers that got packets from us since the last call, if they sleep.
    pub fn notify(&mut self) {
        for (j, sent) in self.sent_to.iter_mut().enumerate() {
            if !std::mem::take(sent) {
                continue;
            }
            let asleep = self
                .sleeping
                .get(j)
                .is_some_and(|s| s.load(Ordering::SeqCst));
            if asleep {
                if let Some(waker) = self.wakers.get(j).and_then(Option::as_ref) {
                    waker.wake();
                }
            }
        }
    }

    /// This worker is about to sleep (`true`) or is awake again. Returns, when going to sleep,
    /// whether it may: not when packets arrived meanwhile.
    pub fn set_sleeping(&self, sleeping: bool) -> bool {
        if let Some(flag) = self.sleeping.get(self.index) {
            flag.store(sleeping, Ordering::SeqCst);
        }
        !(sleeping && self.has_inbound())
    }
}

/// The worker that owns a flow with this symmetric hash, of `count`: multiply-shift on the low
/// 32 bits (no division).
#[inline(always)]
pub fn owner(hash: u64, count: usize) -> usize {
    ((u64::from(hash as u32) * count as u64) >> 32) as usize
}

/// The worker that owns NAT port `port` (of every NAT address): a worker gives its flows only
/// ports it owns, so a reply — whose key names just the NAT address and port — is steered to the
/// flow by its destination port alone.
#[inline]
pub fn nat_port_owner(port: u16, count: usize) -> usize {
    usize::from(port) % count.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct CountWakes(AtomicUsize);
    impl Wake for CountWakes {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn packet(pool: &mut BufferPool, byte: u8) -> PacketBuf {
        let mut pkt = pool.alloc().unwrap();
        pkt.set_frame(&[byte; 60]).unwrap();
        pkt
    }

    #[test]
    fn packets_cross_in_order_and_buffers_go_home() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let wake: Arc<dyn Wake> = wakes.clone();
        let mut rings = mesh(2, 8, vec![None, Some(wake)]);
        let mut b = rings.pop().unwrap();
        let mut a = rings.pop().unwrap();
        let (mut pool_a, mut pool_b) = (BufferPool::new(16, 256), BufferPool::new(16, 256));
        for i in 0..10u8 {
            let pkt = packet(&mut pool_a, i);
            let result = a.send(1, pkt);
            // Eight fit; the rest come back to the sender.
            match result {
                Ok(()) => assert!(i < 8),
                Err(pkt) => {
                    assert!(i >= 8);
                    pool_a.free(pkt);
                }
            }
        }
        match a.send(0, packet(&mut pool_a, 0)) {
            Err(pkt) => pool_a.free(pkt),
            Ok(()) => panic!("no ring to itself"),
        }
        assert_eq!(pool_a.available(), 8);
        // B sleeps: A's notify wakes it once.
        assert!(!b.set_sleeping(true), "packets wait: no sleep");
        a.notify();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        a.notify();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "nothing new sent");
        b.set_sleeping(false);

        let mut batch = Vec::new();
        assert_eq!(b.receive(&mut batch, 5, &pool_b), 5);
        assert_eq!(b.receive(&mut batch, 64, &pool_b), 3);
        let first: Vec<u8> = batch.iter().map(|p| p.data()[0]).collect();
        assert_eq!(first, (0..8).collect::<Vec<_>>());
        // B returns eight of its buffers to A at once, before the packets are freed into its
        // pool (a full pool would not take them).
        b.settle(&mut pool_b);
        assert_eq!(pool_b.available(), 8);
        for pkt in batch.drain(..) {
            pool_b.free(pkt);
        }
        assert_eq!(pool_b.available(), 16);
        a.settle(&mut pool_a);
        assert_eq!(pool_a.available(), 16);
        assert!(!b.has_inbound());
        assert!(b.set_sleeping(true));
    }

    #[test]
    fn owners_are_spread_and_in_range() {
        let mut per = [0usize; 3];
        for i in 0..3000u64 {
            let h = dp_packet::FlowKey {
                src_port: i as u16,
                ..Default::default()
            }
            .symmetric_hash();
            per[owner(h, 3)] += 1;
        }
        assert!(per.iter().all(|&n| (800..1200).contains(&n)), "{per:?}");
        assert_eq!(owner(u64::MAX, 1), 0);
    }
}
