//! The graph's trace tap: what `dpservice-dump` shows. While a dump client is attached, a worker
//! copies the packets it is asked for — received and sent ones, the verdicts of chosen nodes,
//! drops — into a byte ring of its own ([`rtrb`], single producer, single consumer), which the
//! daemon's dump server drains; nothing is ever waited for: a full ring loses the record,
//! counted ([`TraceControl::lost`]).
//!
//! What is wanted is one word of flags and one word of nodes ([`TraceControl`]), read once per
//! graph run: with nothing attached the tap costs that load and a predictable branch per run,
//! and a branch per node and batch (the one `--graphtrace-loglevel` already had).
//!
//! A record is `len: u16` (the whole record), then a fixed header (`HEADER_LEN` bytes, little-endian),
//! then the frame's first `cap_len` bytes; [`Record::decode`] reads one back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::buffer::PacketBuf;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::Verdict;

/// Received and sent frames (dpservice-dump's default).
pub const WANT_PORTS: u64 = 1 << 0;
/// Dropped packets, with their reason (`--drops`).
pub const WANT_DROPS: u64 = 1 << 1;
/// The verdicts of the nodes in the node mask (`--nodes REGEX`).
pub const WANT_NODES: u64 = 1 << 2;

/// The most bytes of a frame a record keeps (a whole standard frame and an underlay header).
pub const SNAP_LEN: usize = 1600;

/// The bytes of each worker's ring: about 600 full frames, more small ones.
pub const RING_BYTES: usize = 1 << 20;

/// What the dump server wants, shared by every worker's tap.
#[derive(Debug, Default)]
pub struct TraceControl {
    flags: AtomicU64,
    nodes: AtomicU64,
    lost: AtomicU64,
}

impl TraceControl {
    /// Starts tracing `flags` ([`WANT_PORTS`]…) and, with [`WANT_NODES`], the nodes whose bit
    /// ([`NodeId::index`]) is set in `nodes`.
    pub fn enable(&self, flags: u64, nodes: u64) {
        self.nodes.store(nodes, Ordering::Relaxed);
        self.flags.store(flags, Ordering::Release);
    }

    /// Stops tracing (the next graph run of every worker sees it).
    pub fn disable(&self) {
        self.flags.store(0, Ordering::Release);
    }

    pub fn flags(&self) -> u64 {
        self.flags.load(Ordering::Acquire)
    }

    /// Records lost to full rings since the start.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// The kind of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Received on `port`.
    Rx,
    /// Handed to `port` for transmission.
    Tx,
    /// `node` decided `verdict` (a drop is a verdict too).
    Node,
}

/// One record, as decoded: borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub event: Event,
    pub worker: u8,
    /// The node of an [`Event::Node`] record.
    pub node: Option<NodeId>,
    /// The node's verdict ([`Event::Node`]).
    pub verdict: Option<Verdict>,
    /// The receiving port ([`Event::Rx`], [`Event::Node`]: the packet's in-port) or the
    /// sending one ([`Event::Tx`]).
    pub port: u16,
    /// The worker's clock at the graph run (ns).
    pub now_ns: u64,
    /// The frame's length; `data` may be shorter ([`SNAP_LEN`]).
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// `event, worker, node, verdict tag, verdict value: u16, port: u16, now_ns: u64, orig_len: u32`.
const HEADER_LEN: usize = 1 + 1 + 1 + 1 + 2 + 2 + 8 + 4;
const LEN_PREFIX: usize = 2;
const NO_NODE: u8 = u8::MAX;

fn verdict_parts(v: Option<Verdict>) -> (u8, u16) {
    match v {
        None => (0, 0),
        Some(Verdict::Next(n)) => (1, n.index() as u16),
        Some(Verdict::Tx(p)) => (2, p),
        Some(Verdict::Drop(r)) => (3, r.index() as u16),
        Some(Verdict::Handoff(w)) => (4, w),
    }
}

fn verdict_from(tag: u8, value: u16) -> Option<Verdict> {
    let i = usize::from(value);
    match tag {
        1 => NodeId::ORDER.get(i).map(|&n| Verdict::Next(n)),
        2 => Some(Verdict::Tx(value)),
        3 => DropReason::ALL.get(i).map(|&r| Verdict::Drop(r)),
        4 => Some(Verdict::Handoff(value)),
        _ => None,
    }
}

impl Record<'_> {
    /// Reads one record (without its length prefix); `None` when malformed.
    pub fn decode(bytes: &[u8]) -> Option<Record<'_>> {
        let h = bytes.get(..HEADER_LEN)?;
        let event = match h.first()? {
            0 => Event::Rx,
            1 => Event::Tx,
            2 => Event::Node,
            _ => return None,
        };
        let u16_at = |i: usize| Some(u16::from_le_bytes(h.get(i..i + 2)?.try_into().ok()?));
        let node = match *h.get(2)? {
            NO_NODE => None,
            i => Some(*NodeId::ORDER.get(usize::from(i))?),
        };
        Some(Record {
            event,
            worker: *h.get(1)?,
            node,
            verdict: verdict_from(*h.get(3)?, u16_at(4)?),
            port: u16_at(6)?,
            now_ns: u64::from_le_bytes(h.get(8..16)?.try_into().ok()?),
            orig_len: u32::from_le_bytes(h.get(16..20)?.try_into().ok()?),
            data: bytes.get(HEADER_LEN..)?,
        })
    }

    /// The record's bytes (without length prefix), as [`Record::decode`] reads them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (tag, value) = verdict_parts(self.verdict);
        out.push(match self.event {
            Event::Rx => 0,
            Event::Tx => 1,
            Event::Node => 2,
        });
        out.push(self.worker);
        out.push(self.node.map_or(NO_NODE, |n| n.index() as u8));
        out.push(tag);
        out.extend_from_slice(&value.to_le_bytes());
        out.extend_from_slice(&self.port.to_le_bytes());
        out.extend_from_slice(&self.now_ns.to_le_bytes());
        out.extend_from_slice(&self.orig_len.to_le_bytes());
        out.extend_from_slice(self.data);
    }
}

/// A worker's end of its trace ring, owned by its graph ([`crate::Graph::set_trace_tap`]).
pub struct TraceTap {
    control: Arc<TraceControl>,
    ring: rtrb::Producer<u8>,
    worker: u8,
    /// Per run: the flags and nodes wanted (read once per run).
    pub(crate) flags: u64,
    pub(crate) nodes: u64,
}

impl std::fmt::Debug for TraceTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceTap")
            .field("worker", &self.worker)
            .field("flags", &self.flags)
            .finish()
    }
}

/// The dump server's end of one worker's ring.
pub struct TraceReader {
    ring: rtrb::Consumer<u8>,
}

impl std::fmt::Debug for TraceReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceReader").finish_non_exhaustive()
    }
}

/// A tap for worker `worker` and the reader of its ring ([`RING_BYTES`] long).
pub fn tap(
    control: Arc<TraceControl>,
    worker: usize,
    ring_bytes: usize,
) -> (TraceTap, TraceReader) {
    let (producer, consumer) = rtrb::RingBuffer::new(ring_bytes.max(HEADER_LEN + SNAP_LEN + 2));
    (
        TraceTap {
            control,
            ring: producer,
            worker: u8::try_from(worker).unwrap_or(u8::MAX),
            flags: 0,
            nodes: 0,
        },
        TraceReader { ring: consumer },
    )
}

impl TraceTap {
    /// Reads what is wanted, once per graph run.
    #[inline]
    pub(crate) fn refresh(&mut self) -> u64 {
        self.flags = self.control.flags.load(Ordering::Acquire);
        if self.flags & WANT_NODES != 0 {
            self.nodes = self.control.nodes.load(Ordering::Relaxed);
        }
        self.flags
    }

    /// Whether frames in and out are wanted.
    #[inline]
    pub(crate) fn wants_ports(&self) -> bool {
        self.flags & WANT_PORTS != 0
    }

    /// Whether the verdicts of `node` are wanted (all of them, or its drops only).
    #[inline]
    pub(crate) fn wants_node(&self, node: NodeId) -> bool {
        self.flags & WANT_DROPS != 0
            || (self.flags & WANT_NODES != 0 && self.nodes & (1 << node.index()) != 0)
    }

    /// Records `node`'s verdicts on `batch` as wanted.
    #[cold]
    pub(crate) fn node_batch(
        &mut self,
        node: NodeId,
        batch: &[PacketBuf],
        verdicts: &[Verdict],
        now_ns: u64,
    ) {
        let all = self.flags & WANT_NODES != 0 && self.nodes & (1 << node.index()) != 0;
        let drops = self.flags & WANT_DROPS != 0;
        for (pkt, &verdict) in batch.iter().zip(verdicts) {
            if all || (drops && matches!(verdict, Verdict::Drop(_))) {
                self.record(
                    Event::Node,
                    Some(node),
                    Some(verdict),
                    pkt.meta.in_port,
                    pkt,
                    now_ns,
                );
            }
        }
    }

    /// Records one drop outside a node's batch decision (a full batch, a graph loop).
    #[cold]
    pub(crate) fn drop_one(
        &mut self,
        node: NodeId,
        reason: DropReason,
        pkt: &PacketBuf,
        now_ns: u64,
    ) {
        if self.flags & WANT_DROPS != 0 {
            let verdict = Some(Verdict::Drop(reason));
            self.record(
                Event::Node,
                Some(node),
                verdict,
                pkt.meta.in_port,
                pkt,
                now_ns,
            );
        }
    }

    /// Records the frames of `batch` as received (`Event::Rx`) or sent out of `port`.
    #[cold]
    pub(crate) fn port_batch(
        &mut self,
        event: Event,
        port: Option<u16>,
        batch: &[PacketBuf],
        now_ns: u64,
    ) {
        for pkt in batch {
            self.record(
                event,
                None,
                None,
                port.unwrap_or(pkt.meta.in_port),
                pkt,
                now_ns,
            );
        }
    }

    fn record(
        &mut self,
        event: Event,
        node: Option<NodeId>,
        verdict: Option<Verdict>,
        port: u16,
        pkt: &PacketBuf,
        now_ns: u64,
    ) {
        let data = pkt.data();
        let data = data.get(..SNAP_LEN).unwrap_or(data);
        let len = LEN_PREFIX + HEADER_LEN + data.len();
        let Ok(mut chunk) = self.ring.write_chunk(len) else {
            self.control.lost.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (tag, value) = verdict_parts(verdict);
        let mut header = [0u8; LEN_PREFIX + HEADER_LEN];
        let fields: [&[u8]; 9] = [
            &(len as u16).to_le_bytes(),
            &[match event {
                Event::Rx => 0,
                Event::Tx => 1,
                Event::Node => 2,
            }],
            &[self.worker],
            &[node.map_or(NO_NODE, |n| n.index() as u8)],
            &[tag],
            &value.to_le_bytes(),
            &port.to_le_bytes(),
            &now_ns.to_le_bytes(),
            &(pkt.len() as u32).to_le_bytes(),
        ];
        let mut at = 0;
        for f in fields {
            if let Some(dst) = header.get_mut(at..at + f.len()) {
                dst.copy_from_slice(f);
            }
            at += f.len();
        }
        let (a, b) = chunk.as_mut_slices();
        copy_across(a, b, 0, &header);
        copy_across(a, b, header.len(), data);
        chunk.commit_all();
    }
}

/// Copies `src` to offset `at` of the two slices `a` then `b` (a ring's free space, which
/// may wrap).
fn copy_across(a: &mut [u8], b: &mut [u8], at: usize, src: &[u8]) {
    let in_a = a.len().saturating_sub(at).min(src.len());
    let (head, tail) = src.split_at(in_a);
    if let Some(dst) = a.get_mut(at..at + in_a) {
        dst.copy_from_slice(head);
    }
    let b_at = (at + in_a).saturating_sub(a.len());
    if let Some(dst) = b.get_mut(b_at..b_at + tail.len()) {
        dst.copy_from_slice(tail);
    }
}

impl TraceReader {
    /// Takes the next record into `out` (cleared first, without the length prefix); false
    /// when the ring holds no whole record.
    pub fn next_record(&mut self, out: &mut Vec<u8>) -> bool {
        out.clear();
        let len = match self.ring.read_chunk(LEN_PREFIX) {
            Ok(chunk) => {
                let (a, b) = chunk.as_slices();
                let mut l = [0u8; 2];
                for (dst, src) in l.iter_mut().zip(a.iter().chain(b)) {
                    *dst = *src;
                }
                usize::from(u16::from_le_bytes(l))
            }
            Err(_) => return false,
        };
        // Written in one commit: the whole record is there.
        let Ok(chunk) = self.ring.read_chunk(len.max(LEN_PREFIX)) else {
            return false;
        };
        let (a, b) = chunk.as_slices();
        out.extend(a.iter().chain(b).skip(LEN_PREFIX));
        chunk.commit_all();
        true
    }

    /// Throws away every waiting record (before a new client's session).
    pub fn discard(&mut self) {
        let n = self.ring.slots();
        if let Ok(chunk) = self.ring.read_chunk(n) {
            chunk.commit_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufferPool;

    #[test]
    fn records_round_trip_through_the_ring_across_its_end() {
        let control = Arc::new(TraceControl::default());
        let (mut tap, mut reader) = tap(Arc::clone(&control), 3, 4096);
        let mut pool = BufferPool::new(4, 2048);
        let mut pkt = pool.alloc().unwrap();
        pkt.set_frame(&[0xab; 1000]).unwrap();
        control.enable(WANT_PORTS | WANT_DROPS, 0);
        assert_eq!(tap.refresh(), WANT_PORTS | WANT_DROPS);
        let mut out = Vec::new();
        // 1022+2 bytes a record in a 4096-byte ring: the fourth wraps.
        for round in 0..10u64 {
            tap.port_batch(Event::Tx, Some(7), std::slice::from_ref(&pkt), round);
            tap.drop_one(NodeId::Classify, DropReason::GraphLoop, &pkt, round);
            assert!(reader.next_record(&mut out));
            let r = Record::decode(&out).unwrap();
            assert_eq!(
                (r.event, r.port, r.worker, r.now_ns),
                (Event::Tx, 7, 3, round)
            );
            assert_eq!((r.orig_len, r.data), (1000, &[0xab; 1000][..]));
            assert!(reader.next_record(&mut out));
            let r = Record::decode(&out).unwrap();
            assert_eq!(r.node, Some(NodeId::Classify));
            assert_eq!(r.verdict, Some(Verdict::Drop(DropReason::GraphLoop)));
            assert!(!reader.next_record(&mut out));
        }
        // A full ring loses records, counted; nothing blocks.
        for _ in 0..5 {
            tap.port_batch(Event::Rx, None, std::slice::from_ref(&pkt), 0);
        }
        assert_eq!(
            control.lost(),
            1,
            "four 1022-byte records fit in 4096 bytes"
        );
        reader.discard();
        assert!(!reader.next_record(&mut out));
        let mut again = Vec::new();
        let r = Record {
            event: Event::Node,
            worker: 1,
            node: Some(NodeId::Lb),
            verdict: Some(Verdict::Next(NodeId::IpipEncap)),
            port: 2,
            now_ns: 9,
            orig_len: 3,
            data: &[1, 2, 3],
        };
        r.encode(&mut again);
        assert_eq!(Record::decode(&again), Some(r));
        pool.free(pkt);
    }
}
