//! Longest-prefix match: one hash map per prefix length, probed from the longest length present.
//!
//! A VNI holds few distinct prefix lengths (a /32 per VM, a handful of routes), so a lookup is a
//! few hash probes on integer keys; inserts and deletes are O(1), which keeps the control plane fast.

use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};

use rustc_hash::FxHashMap;

/// An address as an integer, most significant bit first.
pub trait LpmKey: Copy + Eq + Hash {
    const BITS: u8;
    /// The address with every bit after the first `len` cleared.
    fn masked(self, len: u8) -> Self;
}

impl LpmKey for u32 {
    const BITS: u8 = 32;
    #[inline]
    fn masked(self, len: u8) -> Self {
        match len {
            0 => 0,
            1..=31 => self & (u32::MAX << (32 - len)),
            _ => self,
        }
    }
}

impl LpmKey for u128 {
    const BITS: u8 = 128;
    #[inline]
    fn masked(self, len: u8) -> Self {
        match len {
            0 => 0,
            1..=127 => self & (u128::MAX << (128 - len)),
            _ => self,
        }
    }
}

/// A longest-prefix-match table from prefixes of `K` to values `V`.
#[derive(Clone, Debug)]
pub struct Lpm<K: LpmKey, V> {
    /// `by_len[l]` holds the prefixes of length `l`, keyed by their masked address.
    by_len: Vec<FxHashMap<K, V>>,
    /// Lengths with at least one prefix, longest first.
    lengths: Vec<u8>,
    len: usize,
}

impl<K: LpmKey, V> Default for Lpm<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: LpmKey, V> Lpm<K, V> {
    pub fn new() -> Self {
        Lpm {
            by_len: (0..=K::BITS).map(|_| FxHashMap::default()).collect(),
            lengths: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts a prefix; returns the value back if the exact prefix already exists.
    /// Host bits of `addr` are ignored. A `len` beyond the key width is clamped.
    pub fn insert(&mut self, addr: K, len: u8, value: V) -> Result<(), V> {
        let len = len.min(K::BITS);
        let Some(map) = self.by_len.get_mut(usize::from(len)) else {
            return Err(value);
        };
        match map.entry(addr.masked(len)) {
            Entry::Occupied(_) => return Err(value),
            Entry::Vacant(v) => {
                v.insert(value);
            }
        }
        self.len += 1;
        if !self.lengths.contains(&len) {
            self.lengths.push(len);
            self.lengths.sort_unstable_by(|a, b| b.cmp(a));
        }
        Ok(())
    }

    /// Removes the exact prefix, returning its value.
    pub fn remove(&mut self, addr: K, len: u8) -> Option<V> {
        let len = len.min(K::BITS);
        let map = self.by_len.get_mut(usize::from(len))?;
        let value = map.remove(&addr.masked(len))?;
        if map.is_empty() {
            self.lengths.retain(|&l| l != len);
        }
        self.len -= 1;
        Some(value)
    }

    /// The value stored for exactly this prefix.
    pub fn get_exact(&self, addr: K, len: u8) -> Option<&V> {
        self.by_len.get(usize::from(len))?.get(&addr.masked(len))
    }

    /// The value of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: K) -> Option<&V> {
        self.lookup_with_len(addr).map(|(_, v)| v)
    }

    /// The longest matching prefix's length and value.
    #[inline]
    pub fn lookup_with_len(&self, addr: K) -> Option<(u8, &V)> {
        for &len in &self.lengths {
            if let Some(v) = self
                .by_len
                .get(usize::from(len))
                .and_then(|m| m.get(&addr.masked(len)))
            {
                return Some((len, v));
            }
        }
        None
    }

    /// Every prefix, longest first (order within a length is unspecified).
    pub fn iter(&self) -> impl Iterator<Item = (K, u8, &V)> {
        self.lengths.iter().flat_map(move |&len| {
            self.by_len
                .get(usize::from(len))
                .into_iter()
                .flat_map(move |m| m.iter().map(move |(k, v)| (*k, len, v)))
        })
    }
}

/// Whether `addr` lies inside `net/len`.
#[inline]
pub fn prefix_contains_v4(net: Ipv4Addr, len: u8, addr: Ipv4Addr) -> bool {
    u32::from(net).masked(len) == u32::from(addr).masked(len)
}

/// Whether `addr` lies inside `net/len`.
#[inline]
pub fn prefix_contains_v6(net: Ipv6Addr, len: u8, addr: Ipv6Addr) -> bool {
    u128::from(net).masked(len) == u128::from(addr).masked(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = Lpm::new();
        t.insert(v4("0.0.0.0"), 0, "default").unwrap();
        t.insert(v4("10.0.0.0"), 8, "ten").unwrap();
        t.insert(v4("10.1.0.0"), 16, "ten-one").unwrap();
        t.insert(v4("10.1.2.3"), 32, "host").unwrap();
        assert_eq!(t.lookup(v4("10.1.2.3")), Some(&"host"));
        assert_eq!(t.lookup(v4("10.1.2.4")), Some(&"ten-one"));
        assert_eq!(t.lookup(v4("10.2.0.1")), Some(&"ten"));
        assert_eq!(t.lookup(v4("11.0.0.1")), Some(&"default"));
        assert_eq!(t.lookup_with_len(v4("10.9.9.9")), Some((8, &"ten")));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn duplicate_and_remove() {
        let mut t = Lpm::new();
        t.insert(v4("192.168.1.77"), 24, 1).unwrap();
        // Host bits are ignored: the same /24 again is a duplicate.
        assert_eq!(t.insert(v4("192.168.1.0"), 24, 2), Err(2));
        assert_eq!(t.get_exact(v4("192.168.1.0"), 24), Some(&1));
        assert_eq!(t.remove(v4("192.168.1.0"), 25), None);
        assert_eq!(t.remove(v4("192.168.1.5"), 24), Some(1));
        assert!(t.is_empty());
        assert_eq!(t.lookup(v4("192.168.1.1")), None);
        assert!(t.lengths.is_empty());
    }

    #[test]
    fn ipv6_and_masks() {
        let mut t = Lpm::new();
        let a = u128::from("2000:100:2::".parse::<Ipv6Addr>().unwrap());
        t.insert(a, 104, 'r').unwrap();
        t.insert(u128::from(Ipv6Addr::UNSPECIFIED), 0, 'd').unwrap();
        let inside = u128::from("2000:100:2::ff:1".parse::<Ipv6Addr>().unwrap());
        let outside = u128::from("2000:100:2::1:0:1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(t.lookup(inside), Some(&'r'));
        assert_eq!(t.lookup(outside), Some(&'d'));
        assert_eq!(u32::MAX.masked(0), 0);
        assert_eq!(u32::MAX.masked(33), u32::MAX);
        assert!(prefix_contains_v4(
            "10.0.0.0".parse().unwrap(),
            8,
            "10.255.0.1".parse().unwrap()
        ));
        assert_eq!(t.iter().count(), 2);
    }
}
