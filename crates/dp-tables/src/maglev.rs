//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI 2016, §3.4): a lookup table of `M` slots (a prime), each naming one
//! target, filled so that every target owns `⌊M/N⌋` or `⌈M/N⌉` slots and a change of the target
//! set moves few slots.
//!
//! The table is built by the control plane, off the packet path, and shared in the snapshot (an
//! `Arc`); the packet path only calls [`Maglev::pick`]: one multiply and one load.
//!
//! **Order independence.** The result depends only on the *set* of target addresses, not on
//! the order they are given in: [`Maglev::build`] fills the table walking the targets in
//! ascending address order, and stores for each slot the index of that address in the slice it
//! was given. So `pick` returns an index into the caller's slice, and two hosts (or two runs)
//! that know the same targets, added in any order, send a flow hash to the same address.
//!
//! **Hashes.** Each target's offset and skip come from two fixed, seedless 64-bit mixes of its
//! 128-bit address (splitmix64's finaliser over both halves, two different constants): never
//! `std`'s `RandomState`, which differs per process.
//!
//! Unlike dpservice (`src/dp_maglev.c`: a 503-slot table, at most 64 targets), the table has
//! 65,537 slots by default and takes up to `u16::MAX` targets.

use std::net::Ipv6Addr;

/// The default table size: the Maglev paper's, a prime.
pub const MAGLEV_TABLE_SIZE: usize = 65_537;

/// Largest table [`Maglev::with_size`] builds (a bound on the memory a request can take).
pub const MAGLEV_MAX_TABLE_SIZE: usize = 1 << 24;

/// A Maglev lookup table over a list of targets (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maglev {
    /// Per slot: the index of its target in the slice the table was built from.
    slots: Box<[u16]>,
}

impl Maglev {
    /// The table of [`MAGLEV_TABLE_SIZE`] slots for `targets`; `None` when there are none (or
    /// more than `u16::MAX`). Deterministic and independent of the order of `targets` (module
    /// docs); `pick` returns an index into `targets`. Duplicate addresses each get a share.
    pub fn build(targets: &[Ipv6Addr]) -> Option<Maglev> {
        Maglev::with_size(targets, MAGLEV_TABLE_SIZE)
    }

    /// [`Maglev::build`] with `size` slots: `None` unless `size` is a prime larger than the
    /// number of targets (and at most [`MAGLEV_MAX_TABLE_SIZE`]).
    pub fn with_size(targets: &[Ipv6Addr], size: usize) -> Option<Maglev> {
        let n = targets.len();
        if n == 0 || n > usize::from(u16::MAX) || size <= n || size > MAGLEV_MAX_TABLE_SIZE {
            return None;
        }
        if !is_prime(size) {
            return None;
        }
        // Fill in ascending address order (ties by position), so the set decides, not the order.
        let mut order: Vec<u16> = (0..n).filter_map(|i| u16::try_from(i).ok()).collect();
        order.sort_by_key(|&i| (targets.get(usize::from(i)).copied(), i));
        let m = size as u64;
        // Per target (in fill order): its next preferred slot and its skip (the paper's
        // permutation[i][j] = (offset + j * skip) mod M, walked incrementally).
        let mut next: Vec<u64> = Vec::with_capacity(n);
        let mut skip: Vec<u64> = Vec::with_capacity(n);
        for &i in &order {
            let addr = targets.get(usize::from(i)).copied().map_or(0, u128::from);
            next.push(hash128(addr, OFFSET_SEED) % m);
            skip.push(hash128(addr, SKIP_SEED) % (m - 1) + 1);
        }
        const EMPTY: u16 = u16::MAX;
        // u16::MAX is never a target index (n ≤ u16::MAX, indices < n).
        let mut slots = vec![EMPTY; size].into_boxed_slice();
        let mut filled = 0usize;
        'fill: loop {
            for ((&target, pos), &step) in order.iter().zip(next.iter_mut()).zip(skip.iter()) {
                // The target's next preferred slot that is still free. `skip` is in 1..M and M
                // is prime, so its walk visits every slot: it finds one while any is free.
                loop {
                    let slot = slots.get_mut(*pos as usize)?;
                    *pos = (*pos + step) % m;
                    if *slot == EMPTY {
                        *slot = target;
                        break;
                    }
                }
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
        }
        Some(Maglev { slots })
    }

    /// The target (index into the slice the table was built from) for a flow hash. The hash is
    /// mapped onto the slots by multiply-shift (its high bits decide), so it should be well
    /// mixed over all 64 bits. Never panics.
    #[inline]
    pub fn pick(&self, flow_hash: u64) -> usize {
        let slot = ((u128::from(flow_hash) * self.slots.len() as u128) >> 64) as usize;
        self.slots.get(slot).map_or(0, |&t| usize::from(t))
    }

    /// The number of slots.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// How many slots each target owns, by index into the slice the table was built from.
    pub fn slot_counts(&self, targets: usize) -> Vec<usize> {
        let mut counts = vec![0; targets];
        for &t in self.slots.iter() {
            if let Some(c) = counts.get_mut(usize::from(t)) {
                *c += 1;
            }
        }
        counts
    }
}

const OFFSET_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const SKIP_SEED: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// splitmix64's finaliser: a fixed bijective mix of 64 bits.
#[inline]
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fixed, seedless hash of a 128-bit address (two mixing rounds, one per half).
#[inline]
const fn hash128(addr: u128, seed: u64) -> u64 {
    let hi = (addr >> 64) as u64;
    let lo = addr as u64;
    mix64(mix64(hi ^ seed).wrapping_add(lo) ^ seed.rotate_left(32))
}

fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// Synthetic, well-mixed flow hashes for tests and figures: splitmix64 of `0..`.
pub fn synthetic_flow_hash(i: u64) -> u64 {
    mix64(
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(0x6a09_e667_f3bc_c908),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOWS: u64 = 1_000_000;

    /// Backend addresses as a load balancer would have them: fc00:<host>::<n> style.
    fn targets(n: usize) -> Vec<Ipv6Addr> {
        (0..n)
            .map(|i| Ipv6Addr::new(0xfc00, 1 + (i / 7) as u16, 0, 0, 0, 0, 0x64, i as u16))
            .collect()
    }

    /// Flows per target over the synthetic flows.
    fn loads(table: &Maglev, n: usize) -> Vec<u64> {
        let mut load = vec![0u64; n];
        for i in 0..FLOWS {
            load[table.pick(synthetic_flow_hash(i))] += 1;
        }
        load
    }

    /// The share of flows whose target address changes from `a` (over `ta`) to `b` (over `tb`),
    /// and the share of flows of targets in both sets that moved.
    fn moved(a: &Maglev, ta: &[Ipv6Addr], b: &Maglev, tb: &[Ipv6Addr]) -> (f64, f64) {
        let (mut moved, mut kept_total, mut kept_moved) = (0u64, 0u64, 0u64);
        for i in 0..FLOWS {
            let h = synthetic_flow_hash(i);
            let before = ta[a.pick(h)];
            let after = tb[b.pick(h)];
            if before != after {
                moved += 1;
            }
            if tb.contains(&before) {
                kept_total += 1;
                if before != after {
                    kept_moved += 1;
                }
            }
        }
        (
            moved as f64 / FLOWS as f64,
            kept_moved as f64 / kept_total.max(1) as f64,
        )
    }

    #[test]
    fn empty_and_bad_sizes_are_refused() {
        assert!(Maglev::build(&[]).is_none());
        let t = targets(3);
        assert!(Maglev::with_size(&t, 3).is_none(), "not larger than N");
        assert!(Maglev::with_size(&t, 1000).is_none(), "not prime");
        assert!(Maglev::with_size(&t, 9).is_none(), "not prime");
        assert!(Maglev::with_size(&t, 1).is_none());
        assert!(Maglev::with_size(&t, 0).is_none());
        assert_eq!(Maglev::with_size(&t, 5).map(|m| m.size()), Some(5));
        assert_eq!(Maglev::with_size(&t, 503).map(|m| m.size()), Some(503));
        assert_eq!(Maglev::build(&t).map(|m| m.size()), Some(MAGLEV_TABLE_SIZE));
        assert!(Maglev::with_size(&t[..1], 2).is_some());
        assert!(is_prime(65_537) && is_prime(2) && !is_prime(65_535) && !is_prime(1));
    }

    #[test]
    fn every_target_gets_floor_or_ceil_of_the_slots() {
        for n in [1, 2, 3, 5, 7, 16, 63, 64, 65, 100, 1000] {
            let t = targets(n);
            let table = Maglev::build(&t).unwrap();
            let counts = table.slot_counts(n);
            let (lo, hi) = (MAGLEV_TABLE_SIZE / n, MAGLEV_TABLE_SIZE.div_ceil(n));
            assert!(
                counts.iter().all(|&c| c == lo || c == hi),
                "n={n}: {:?}",
                (counts.iter().min(), counts.iter().max())
            );
            assert_eq!(counts.iter().sum::<usize>(), MAGLEV_TABLE_SIZE);
        }
    }

    #[test]
    fn many_targets_beyond_dpservices_64() {
        // Nearly as many targets as slots: still every slot filled, one or two each.
        let t: Vec<Ipv6Addr> = (0..5000u32)
            .map(|i| Ipv6Addr::from(0xfc00_u128 << 112 | u128::from(i)))
            .collect();
        let table = Maglev::with_size(&t, 5003).unwrap();
        let counts = table.slot_counts(t.len());
        assert!(counts.iter().all(|&c| c == 1 || c == 2), "{counts:?}");
        let max = Maglev::build(
            &(0..u32::from(u16::MAX))
                .map(|i| Ipv6Addr::from(u128::from(i) << 16 | 7))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let counts = max.slot_counts(usize::from(u16::MAX));
        assert!(counts.iter().all(|&c| c == 1 || c == 2));
        assert!(Maglev::build(&vec![Ipv6Addr::LOCALHOST; usize::from(u16::MAX) + 1]).is_none());
    }

    #[test]
    fn load_is_even_over_a_million_flows() {
        for n in 2..=64 {
            let t = targets(n);
            let table = Maglev::build(&t).unwrap();
            let load = loads(&table, n);
            let (min, max) = (*load.iter().min().unwrap(), *load.iter().max().unwrap());
            let spread = max as f64 / min as f64;
            // The slots differ by at most one; what remains is the flows' sampling noise
            // (about 1 / sqrt(flows per target) per target): 1.042 measured at N = 63.
            assert!(spread <= 1.05, "n={n}: max/min {spread:.4} ({min}..{max})");
        }
    }

    #[test]
    fn removing_a_target_moves_little_more_than_its_share() {
        for n in 2..=64 {
            let t = targets(n);
            let before = Maglev::build(&t).unwrap();
            let gone = n / 2;
            let mut rest = t.clone();
            rest.remove(gone);
            let after = Maglev::build(&rest).unwrap();
            let (share, others) = moved(&before, &t, &after, &rest);
            let ideal = 1.0 / n as f64;
            // Its own flows must move (≈ 1/N); Maglev moves a few others too (the paper's
            // "disruption"): at most 0.8 % of the other targets' flows (measured ≤ 0.6 %).
            assert!(share >= ideal * 0.97, "n={n}: {share:.4} < {ideal:.4}");
            assert!(share <= ideal + 0.008, "n={n}: {share:.4} vs {ideal:.4}");
            assert!(
                others <= 0.008,
                "n={n}: {others:.4} of untouched flows moved"
            );
        }
    }

    #[test]
    fn adding_a_target_moves_little_more_than_its_share() {
        for n in 2..=64 {
            let all = targets(n + 1);
            let new = all[n];
            let before = Maglev::build(&all[..n]).unwrap();
            let after = Maglev::build(&all).unwrap();
            let (share, _) = moved(&before, &all[..n], &after, &all);
            let ideal = 1.0 / (n + 1) as f64;
            assert!(share >= ideal * 0.97, "n={n}: {share:.4} < {ideal:.4}");
            assert!(share <= ideal + 0.008, "n={n}: {share:.4} vs {ideal:.4}");
            // What moved went to the new target, but for the disruption between old ones.
            let to_new = (0..FLOWS)
                .map(synthetic_flow_hash)
                .filter(|&h| all[after.pick(h)] == new)
                .count() as f64
                / FLOWS as f64;
            assert!(
                share - to_new <= 0.008,
                "n={n}: {share:.4} moved, {to_new:.4} to the new one"
            );
        }
    }

    #[test]
    fn deterministic_and_independent_of_order() {
        let t = targets(20);
        let a = Maglev::build(&t).unwrap();
        assert_eq!(a, Maglev::build(&t).unwrap());
        let mut shuffled = t.clone();
        shuffled.reverse();
        shuffled.swap(3, 11);
        let b = Maglev::build(&shuffled).unwrap();
        for i in 0..100_000 {
            let h = synthetic_flow_hash(i);
            assert_eq!(t[a.pick(h)], shuffled[b.pick(h)]);
        }
        // Pinned: the same table on every host and run (a change here changes every host's
        // choice; a mixed fleet would disagree).
        let picks: Vec<usize> = (0..8).map(|i| a.pick(synthetic_flow_hash(i))).collect();
        assert_eq!(picks, PINNED_PICKS);
    }

    const PINNED_PICKS: [usize; 8] = [4, 13, 6, 9, 15, 0, 12, 0];

    #[test]
    fn pick_never_panics() {
        let table = Maglev::with_size(&targets(2), 3).unwrap();
        for h in [0, 1, u64::MAX, u64::MAX / 2, 1 << 63] {
            assert!(table.pick(h) < 2);
        }
    }
}
