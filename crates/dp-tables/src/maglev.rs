//! Maglev consistent hashing (placeholder until the full table lands; same API).

use std::net::Ipv6Addr;

/// Maglev paper default, prime.
pub const MAGLEV_TABLE_SIZE: usize = 65_537;

/// A Maglev lookup table: each slot holds an index into the targets it was built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maglev {
    slots: Box<[u16]>,
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Maglev {
    pub fn build(targets: &[Ipv6Addr]) -> Option<Maglev> {
        Self::with_size(targets, MAGLEV_TABLE_SIZE)
    }

    pub fn with_size(targets: &[Ipv6Addr], size: usize) -> Option<Maglev> {
        let n = targets.len();
        if n == 0 || n >= usize::from(u16::MAX) || size <= n {
            return None;
        }
        let m = size as u64;
        let perm: Vec<(u64, u64)> = targets
            .iter()
            .map(|t| {
                let v = u128::from(*t);
                let h = mix((v as u64) ^ mix((v >> 64) as u64));
                (mix(h ^ 1) % m, mix(h ^ 2) % (m - 1) + 1)
            })
            .collect();
        let mut next = vec![0u64; n];
        let mut slots = vec![u16::MAX; size];
        let mut filled = 0;
        'fill: loop {
            for (i, &(offset, skip)) in perm.iter().enumerate() {
                loop {
                    let pos = ((offset + next[i] * skip) % m) as usize;
                    next[i] += 1;
                    if slots[pos] == u16::MAX {
                        slots[pos] = i as u16;
                        filled += 1;
                        break;
                    }
                }
                if filled == size {
                    break 'fill;
                }
            }
        }
        Some(Maglev {
            slots: slots.into_boxed_slice(),
        })
    }

    #[inline]
    pub fn pick(&self, flow_hash: u64) -> usize {
        let i = (flow_hash % self.slots.len() as u64) as usize;
        self.slots.get(i).map_or(0, |&s| usize::from(s))
    }

    pub fn size(&self) -> usize {
        self.slots.len()
    }
}
