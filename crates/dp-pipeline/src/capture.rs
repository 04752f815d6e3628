//! Packet capture (CaptureStart): copies of what captured ports receive and transmit, wrapped
//! in Ethernet + IPv6 + UDP to the sink node, sent out of an uplink.
//!
//! # Format (dpservice's `dp_configure_pkt_capture_action`)
//!
//! ```text
//! | Ethernet: router MAC ← uplink MAC, 0x86dd | IPv6: host --ipv6 → sink, UDP, hop limit 64 |
//! | UDP: configured ports, length, checksum | the captured Ethernet frame |
//! ```
//!
//! 62 bytes in front of the frame, as dpservice's (whose hardware leaves the IPv6 payload length
//! and the UDP checksum 0; ours are filled in: IPv6 requires a UDP checksum). A copy whose IPv6
//! packet would exceed `--underlay-mtu` carries the frame's first bytes only (counted as
//! truncated); the IPv6 and UDP lengths describe what is carried.
//!
//! # Where
//!
//! * Received frames of a captured port (VFs, pf0 and pf1) are copied at the start of a
//!   [`Graph::run`](crate::Graph::run), as they came in: the classify input batch.
//! * Transmitted frames of a captured port (dpservice does not copy these) are copied when the
//!   port's batch is handed to the worker's transmit path (`Capture::flush`), as they go out.
//! * The copies wait in a vector of their own and go out of the uplink (pf0, or pf1 when pf0
//!   cannot send, as the encapsulation chooses) after every port's batch
//!   (`Capture::flush_copies`); a copy never joins a batch being flushed, and copies are
//!   never copied again. A frame an uplink receives that is a copy for our sink (UDP to the sink
//!   and the destination port) is not captured, so a sink behind our own uplink cannot loop.
//! * Superframes (a TAP's segmentation offload request) are not copied (counted as
//!   `skipped_offload`): they are not what travels on a wire, and their segments are cut only
//!   when the transmit path needs them. A partial checksum (`NEEDS_CSUM`) is finished in the
//!   copy, so it shows what the receiver sees.
//!
//! # Cost
//!
//! Off (no capture in the snapshot): one predictable branch per run and one per port batch
//! handed over. On: the copies come from the worker's [`BufferPool`] (no allocation; none left
//! → the drop `capture_no_buffer`); a copy is counted as originated, then sent or dropped, so a
//! worker's frames still balance.

use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use dp_packet::IpProtocol;
use dp_tables::{CaptureConfig, PortId};

use crate::buffer::{BufferPool, PacketBuf};
use crate::drop::DropReason;
use crate::graph::{GraphCounters, TxSink, BATCH_SIZE};
use crate::node::Ctx;
use crate::nodes::uplink::{Uplink, UplinkChoice};

/// Bytes put in front of a captured frame: Ethernet, IPv6 and UDP headers.
pub const CAPTURE_HEADER_LEN: usize = ETH_LEN + IPV6_LEN + UDP_LEN;
const ETH_LEN: usize = 14;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
/// The outer hop limit (dpservice's `DP_IP6_HOP_LIMIT`).
const HOP_LIMIT: u8 = 64;
/// Copies waiting to be sent; a full vector is sent at once.
const COPIES_CAPACITY: usize = 2 * BATCH_SIZE;

/// A worker's capture figures (readable from other threads).
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// Copies made (and handed to the uplink).
    pub copies: AtomicU64,
    /// Copies that carry only the first bytes of their frame (the underlay MTU).
    pub truncated: AtomicU64,
    /// Superframes not copied.
    pub skipped_offload: AtomicU64,
}

/// A worker's capture state: the configuration as of the current run and the copies waiting.
#[derive(Debug)]
pub(crate) struct Capture {
    on: Option<Active>,
    copies: Vec<PacketBuf>,
}

/// What a copy needs, read once per run.
#[derive(Debug, Clone, Copy)]
struct Active {
    cfg: CaptureConfig,
    uplink: Result<Uplink, DropReason>,
    src: Ipv6Addr,
    /// Most frame bytes a copy carries.
    max_frame: usize,
}

impl Capture {
    pub(crate) fn new() -> Self {
        Capture {
            on: None,
            copies: Vec::with_capacity(COPIES_CAPACITY),
        }
    }

    /// At the start of a run (or a tick): reads the snapshot's capture; when one is active,
    /// copies what captured ports received (`rx`, the classify batch).
    #[inline]
    pub(crate) fn begin(
        &mut self,
        ctx: &Ctx<'_>,
        rx: Option<&Vec<PacketBuf>>,
        pool: &mut BufferPool,
        counters: &GraphCounters,
    ) {
        match &ctx.tables.capture {
            None => self.on = None,
            Some(cfg) => self.begin_on(cfg, ctx, rx, pool, counters),
        }
    }

    #[cold]
    #[inline(never)]
    fn begin_on(
        &mut self,
        cfg: &CaptureConfig,
        ctx: &Ctx<'_>,
        rx: Option<&Vec<PacketBuf>>,
        pool: &mut BufferPool,
        counters: &GraphCounters,
    ) {
        let a = Active {
            cfg: *cfg,
            uplink: UplinkChoice::read(ctx).primary().copied(),
            src: ctx.config.underlay_ipv6,
            max_frame: usize::from(ctx.config.underlay_mtu).saturating_sub(IPV6_LEN + UDP_LEN),
        };
        self.on = Some(a);
        let Some(rx) = rx else {
            return;
        };
        if !a.cfg.directions.rx {
            return;
        }
        // Packets come in runs per port: decide once per run.
        let mut last: Option<(PortId, bool)> = None;
        for pkt in rx {
            let port = pkt.meta.in_port;
            let captured = match last {
                Some((p, c)) if p == port => c,
                _ => {
                    let c = a.cfg.captures(port);
                    last = Some((port, c));
                    c
                }
            };
            if captured && !is_own_copy(pkt.data(), &a.cfg) {
                self.copy(&a, pkt, pool, counters);
            }
        }
    }

    /// Hands `port`'s batch to `sink` (instead of `sink.flush`), copying it first when the
    /// port's transmissions are captured.
    #[inline]
    pub(crate) fn flush(
        &mut self,
        port: PortId,
        batch: &mut Vec<PacketBuf>,
        pool: &mut BufferPool,
        sink: &mut dyn TxSink,
        counters: &GraphCounters,
    ) {
        if let Some(a) = self.on {
            if a.cfg.captures_tx(port) {
                self.copy_batch(&a, batch, pool, sink, counters);
            }
        }
        sink.flush(port, batch, pool, counters);
    }

    /// Sends the copies waiting (after every port's batch).
    #[inline]
    pub(crate) fn flush_copies(
        &mut self,
        pool: &mut BufferPool,
        sink: &mut dyn TxSink,
        counters: &GraphCounters,
    ) {
        if !self.copies.is_empty() {
            self.send_copies(pool, sink, counters);
        }
    }

    #[cold]
    #[inline(never)]
    fn copy_batch(
        &mut self,
        a: &Active,
        batch: &[PacketBuf],
        pool: &mut BufferPool,
        sink: &mut dyn TxSink,
        counters: &GraphCounters,
    ) {
        for pkt in batch {
            if self.copies.len() >= BATCH_SIZE {
                self.send_copies(pool, sink, counters);
            }
            self.copy(a, pkt, pool, counters);
        }
    }

    #[cold]
    fn send_copies(
        &mut self,
        pool: &mut BufferPool,
        sink: &mut dyn TxSink,
        counters: &GraphCounters,
    ) {
        let port = self.copies.first().map_or(PortId::MAX, |c| c.meta.out_port);
        sink.flush(port, &mut self.copies, pool, counters);
    }

    /// One copy of `pkt` into the waiting vector, counted as originated (then sent or dropped).
    fn copy(
        &mut self,
        a: &Active,
        pkt: &PacketBuf,
        pool: &mut BufferPool,
        counters: &GraphCounters,
    ) {
        if pkt.meta.offload.is_gso() {
            counters
                .capture
                .skipped_offload
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        counters.originated.fetch_add(1, Ordering::Relaxed);
        let made = match a.uplink {
            Err(reason) => Err(reason),
            Ok(ref uplink) if self.copies.len() < self.copies.capacity() => {
                wrap(a, uplink, pkt, pool, counters)
            }
            Ok(_) => Err(DropReason::CaptureNoBuffer),
        };
        match made {
            Ok(copy) => {
                self.copies.push(copy);
                counters.capture.copies.fetch_add(1, Ordering::Relaxed);
            }
            Err(reason) => counters.count_drop(None, reason, 1),
        }
    }
}

/// Whether `frame` is one of our copies on its way to the sink (seen again on an uplink).
fn is_own_copy(frame: &[u8], cfg: &CaptureConfig) -> bool {
    let Some(h) = frame.first_chunk::<CAPTURE_HEADER_LEN>() else {
        return false;
    };
    h[12..14] == [0x86, 0xdd]
        && h[20] == IpProtocol::UDP.0
        && h[38..54] == cfg.sink.octets()
        && h[56..58] == cfg.udp_dst_port.to_be_bytes()
}

/// A new buffer holding the headers and (the first bytes of) `pkt`'s frame.
fn wrap(
    a: &Active,
    uplink: &Uplink,
    pkt: &PacketBuf,
    pool: &mut BufferPool,
    counters: &GraphCounters,
) -> Result<PacketBuf, DropReason> {
    let mut copy = pool.alloc().ok_or(DropReason::CaptureNoBuffer)?;
    let frame = pkt.data();
    let room = copy.tailroom().saturating_sub(CAPTURE_HEADER_LEN);
    let n = frame.len().min(a.max_frame).min(room);
    if n < frame.len() {
        counters.capture.truncated.fetch_add(1, Ordering::Relaxed);
    }
    let written = copy
        .set_len(CAPTURE_HEADER_LEN + n)
        .ok()
        .and_then(|()| {
            let out = copy.data_mut();
            let (h, body) = out.split_first_chunk_mut::<CAPTURE_HEADER_LEN>()?;
            body.copy_from_slice(frame.get(..n)?);
            // The frame as its receiver sees it: a checksum its sender left partial, finished.
            if n == frame.len() && pkt.meta.offload.needs_csum() {
                let off = pkt.meta.offload;
                crate::offload::finish_requested(
                    body,
                    usize::from(off.csum_start),
                    usize::from(off.csum_offset),
                );
            }
            write_headers(h, a, uplink, n);
            let udp_len = UDP_LEN + n;
            let check = dp_packet::checksum::transport_v6(
                &a.src,
                &a.cfg.sink,
                IpProtocol::UDP,
                out.get(ETH_LEN + IPV6_LEN..)?,
            );
            let check = if check == 0 { 0xffff } else { check };
            out.get_mut(ETH_LEN + IPV6_LEN + 6..ETH_LEN + IPV6_LEN + 8)?
                .copy_from_slice(&check.to_be_bytes());
            Some(udp_len)
        })
        .is_some();
    if !written {
        pool.free(copy);
        return Err(DropReason::NoRoom);
    }
    copy.meta.out_port = uplink.port;
    Ok(copy)
}

/// Ethernet, IPv6 and UDP headers for `n` bytes of frame (the UDP checksum 0, filled after).
fn write_headers(h: &mut [u8; CAPTURE_HEADER_LEN], a: &Active, uplink: &Uplink, n: usize) {
    let udp_len = u16::try_from(UDP_LEN + n).unwrap_or(u16::MAX);
    let [l0, l1] = udp_len.to_be_bytes();
    h[..14].copy_from_slice(&uplink.eth[..14]);
    h[14..18].copy_from_slice(&0x6000_0000u32.to_be_bytes());
    h[18..22].copy_from_slice(&[l0, l1, IpProtocol::UDP.0, HOP_LIMIT]);
    h[22..38].copy_from_slice(&a.src.octets());
    h[38..54].copy_from_slice(&a.cfg.sink.octets());
    h[54..56].copy_from_slice(&a.cfg.udp_src_port.to_be_bytes());
    h[56..58].copy_from_slice(&a.cfg.udp_dst_port.to_be_bytes());
    h[58..60].copy_from_slice(&[l0, l1]);
    h[60..62].copy_from_slice(&[0, 0]);
}
