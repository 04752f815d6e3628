//! The transmit stage: what a batch needs before it goes out of a port that does not take
//! offload requests — partial checksums finished, TCP superframes cut into segments. Sans-IO:
//! the caller passes the function that hands a batch to the port.

use std::sync::atomic::Ordering;

use crate::buffer::{BufferPool, PacketBuf};
use crate::drop::DropReason;
use crate::graph::{GraphCounters, BATCH_SIZE};
use crate::offload::{finish_checksum, Offload, Segments};

/// Finishes every packet of `pending` in software and sends the result through `send` in
/// batches of at most [`BATCH_SIZE`], built in `scratch` (empty; capacity [`BATCH_SIZE`]).
/// `send` must leave the batch it is given empty. `pending` is left empty; the extra segments
/// count as originated, what cannot be finished as dropped (outside the nodes).
pub fn software_offload(
    pending: &mut Vec<PacketBuf>,
    scratch: &mut Vec<PacketBuf>,
    pool: &mut BufferPool,
    counters: &GraphCounters,
    mut send: impl FnMut(&mut Vec<PacketBuf>, &mut BufferPool),
) {
    let drop = |reason: DropReason, n: u64| counters.count_drop(None, reason, n);
    let mut flush = |scratch: &mut Vec<PacketBuf>, pool: &mut BufferPool| {
        if !scratch.is_empty() {
            send(scratch, pool);
        }
    };
    for mut pkt in pending.drain(..) {
        let off = pkt.meta.offload;
        if !off.is_gso() {
            if let Err(reason) = finish_checksum(&mut pkt) {
                drop(reason.into(), 1);
                pool.free(pkt);
                continue;
            }
            pkt.meta.offload = Offload::NONE;
            if scratch.len() >= BATCH_SIZE {
                flush(scratch, pool);
            }
            scratch.push(pkt);
            continue;
        }
        match Segments::new(pkt.data(), &off) {
            Err(reason) => drop(reason.into(), 1),
            Ok(segs) => {
                let count = segs.count();
                counters
                    .originated
                    .fetch_add(count.saturating_sub(1) as u64, Ordering::Relaxed);
                for i in 0..count {
                    if scratch.len() >= BATCH_SIZE {
                        flush(scratch, pool);
                    }
                    let Some(mut seg) = pool.alloc() else {
                        drop(DropReason::NoBuffer, (count - i) as u64);
                        break;
                    };
                    match segs.write(i, &mut seg, pkt.meta) {
                        Ok(()) => scratch.push(seg),
                        Err(reason) => {
                            drop(reason.into(), 1);
                            pool.free(seg);
                        }
                    }
                }
            }
        }
        pool.free(pkt);
    }
    flush(scratch, pool);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_packets_go_out_in_batches_and_nothing_is_lost() {
        let counters = GraphCounters::default();
        let mut pool = BufferPool::new(2 * BATCH_SIZE + 8, 256);
        let mut pending: Vec<PacketBuf> = (0..BATCH_SIZE + 5)
            .map(|i| {
                let mut p = pool.alloc().unwrap();
                p.set_frame(&[i as u8; 60]).unwrap();
                p
            })
            .collect();
        let mut scratch = Vec::with_capacity(BATCH_SIZE);
        let mut batches = Vec::new();
        software_offload(
            &mut pending,
            &mut scratch,
            &mut pool,
            &counters,
            |b, pool| {
                batches.push(b.iter().map(|p| p.data()[0]).collect::<Vec<u8>>());
                for p in b.drain(..) {
                    pool.free(p);
                }
            },
        );
        assert!(pending.is_empty() && scratch.is_empty());
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [64, 5]);
        // In order, every one.
        let all: Vec<u8> = batches.concat();
        assert_eq!(all, (0..BATCH_SIZE as u8 + 5).collect::<Vec<_>>());
        assert_eq!((counters.total_drops(), counters.originated()), (0, 0));
        assert_eq!(pool.available(), pool.capacity());
    }
}
