//! IPv4 longest-prefix match for the packet path: a multibit trie (stride 8, four levels) in front
//! of the per-length hash maps of [`Lpm`](crate::Lpm), which stay the record of what is installed.
//!
//! Why not [`Lpm`] for IPv4 too: it probes one hash map per prefix length present, longest first,
//! and a VNI with /32 VMs, /24 and /20 routes and a /16 pays four probes (~200 instructions, a
//! fifth of a forwarded packet) for a destination under the /16. The trie walks at most four
//! 256-entry nodes, one array index per byte of the address, whatever lengths are present; most
//! lookups stop after one or two. (dpservice uses DPDK's `rte_rib`/`rte_lpm`.)
//!
//! Layout: node `n`'s slot `b` holds the value of the longest prefix ending in this node's level
//! that covers the slot (a prefix of length `l` lives at level `(l - 1) / 8` and covers
//! `2^(8·(level+1) − l)` consecutive slots) and the child node for the next byte. A lookup keeps
//! the last value it met on the way down; deeper nodes hold only longer prefixes. No leaf
//! pushing, so an insert writes at most 128 slots of one node and never rewrites a subtree.
//! Nodes that hold nothing any more are recycled.
//!
//! Memory: 2 KiB (+ 256 B of lengths) per node; a table holding one /32 uses four nodes.

use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;

use crate::lpm::LpmKey;

const FANOUT: usize = 256;
const LEVELS: usize = 4;

/// One slot: the covering value's index + 1 and the child node's index + 1 (0 = none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    value: u32,
    child: u32,
}

#[derive(Clone, Debug)]
struct Node {
    slots: [Slot; FANOUT],
    /// The prefix length of each slot's value (0 when none): an insert only overwrites shorter.
    lens: [u8; FANOUT],
    /// Slots holding a value or a child; the node is recycled when this drops to 0.
    used: u16,
}

impl Node {
    fn empty() -> Node {
        Node {
            slots: [Slot::default(); FANOUT],
            lens: [0; FANOUT],
            used: 0,
        }
    }
}

/// An IPv4 longest-prefix-match table from prefixes to values `V`.
#[derive(Clone, Debug)]
pub struct Lpm4<V> {
    /// `nodes[0]` is the root (always there); freed nodes are kept for reuse.
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    /// Where the values are; the trie and `by_len` hold indices into it.
    values: Vec<Option<V>>,
    free_values: Vec<u32>,
    /// `by_len[l]`: the prefixes of length `l` (masked address → value index).
    by_len: Vec<FxHashMap<u32, u32>>,
    /// The default route's value index + 1 (0 = none).
    default: u32,
    len: usize,
}

impl<V> Default for Lpm4<V> {
    fn default() -> Self {
        Self::new()
    }
}

#[inline(always)]
fn byte_at(addr: u32, level: usize) -> usize {
    ((addr >> (24 - 8 * level)) & 0xff) as usize
}

impl<V> Lpm4<V> {
    pub fn new() -> Self {
        Lpm4 {
            nodes: vec![Node::empty()],
            free_nodes: Vec::new(),
            values: Vec::new(),
            free_values: Vec::new(),
            by_len: (0..=32).map(|_| FxHashMap::default()).collect(),
            default: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of the longest prefix containing `addr`.
    // Always inlined: left out of line, the call and its register spills cost as much as the walk.
    #[inline(always)]
    pub fn lookup(&self, addr: u32) -> Option<&V> {
        let mut best = self.default;
        let mut node = 0usize;
        for level in 0..LEVELS {
            let Some(slot) = self
                .nodes
                .get(node)
                .and_then(|n| n.slots.get(byte_at(addr, level)))
            else {
                break;
            };
            if slot.value != 0 {
                best = slot.value;
            }
            if slot.child == 0 {
                break;
            }
            node = slot.child as usize - 1;
        }
        self.value(best)
    }

    /// The longest matching prefix's length and value.
    pub fn lookup_with_len(&self, addr: u32) -> Option<(u8, &V)> {
        let mut best = (0u8, self.default);
        let mut node = 0usize;
        for level in 0..LEVELS {
            let b = byte_at(addr, level);
            let Some(n) = self.nodes.get(node) else { break };
            let (Some(slot), Some(&len)) = (n.slots.get(b), n.lens.get(b)) else {
                break;
            };
            if slot.value != 0 {
                best = (len, slot.value);
            }
            if slot.child == 0 {
                break;
            }
            node = slot.child as usize - 1;
        }
        self.value(best.1).map(|v| (best.0, v))
    }

    /// The value stored for exactly this prefix.
    pub fn get_exact(&self, addr: u32, len: u8) -> Option<&V> {
        let index = *self.by_len.get(usize::from(len))?.get(&addr.masked(len))?;
        self.value(index + 1)
    }

    /// Every prefix, longest first (order within a length is unspecified).
    pub fn iter(&self) -> impl Iterator<Item = (u32, u8, &V)> {
        self.by_len
            .iter()
            .enumerate()
            .rev()
            .flat_map(move |(len, m)| {
                m.iter().filter_map(move |(&k, &i)| {
                    self.value(i + 1).map(|v| (k, len as u8, v)) // len ≤ 32
                })
            })
    }

    #[inline]
    fn value(&self, index_plus_one: u32) -> Option<&V> {
        let i = index_plus_one.checked_sub(1)?;
        self.values.get(i as usize)?.as_ref()
    }

    /// Inserts a prefix; returns the value back if the exact prefix already exists.
    /// Host bits of `addr` are ignored; a `len` beyond 32 is clamped.
    pub fn insert(&mut self, addr: u32, len: u8, value: V) -> Result<(), V> {
        let len = len.min(32);
        let key = addr.masked(len);
        let Some(map) = self.by_len.get_mut(usize::from(len)) else {
            return Err(value);
        };
        let Entry::Vacant(vacant) = map.entry(key) else {
            return Err(value);
        };
        let index = match self.free_values.pop() {
            Some(i) => {
                if let Some(slot) = self.values.get_mut(i as usize) {
                    *slot = Some(value);
                }
                i
            }
            None => {
                self.values.push(Some(value));
                (self.values.len() - 1) as u32
            }
        };
        vacant.insert(index);
        self.len += 1;
        if len == 0 {
            self.default = index + 1;
            return Ok(());
        }
        let level = usize::from(len - 1) / 8;
        let node = self.node_for(key, level);
        let (first, span) = covered_slots(key, len, level);
        if let Some(n) = self.nodes.get_mut(node) {
            for b in first..first + span {
                if let (Some(slot), Some(l)) = (n.slots.get_mut(b), n.lens.get_mut(b)) {
                    if *l <= len {
                        if *slot == Slot::default() {
                            n.used += 1;
                        }
                        slot.value = index + 1;
                        *l = len;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the exact prefix, returning its value.
    pub fn remove(&mut self, addr: u32, len: u8) -> Option<V> {
        let len = len.min(32);
        let key = addr.masked(len);
        let index = self.by_len.get_mut(usize::from(len))?.remove(&key)?;
        let value = self.values.get_mut(index as usize)?.take();
        self.free_values.push(index);
        self.len -= 1;
        if len == 0 {
            self.default = 0;
            return value;
        }
        let level = usize::from(len - 1) / 8;
        // The nodes on the way down, to recycle the ones left empty.
        let mut path = [0usize; LEVELS];
        let mut node = 0usize;
        for (l, step) in path.iter_mut().enumerate().take(level + 1) {
            *step = node;
            if l == level {
                break;
            }
            let child = self
                .nodes
                .get(node)
                .and_then(|n| n.slots.get(byte_at(key, l)))
                .map_or(0, |s| s.child);
            if child == 0 {
                return value; // cannot happen: the insert made the path
            }
            node = child as usize - 1;
        }
        let (first, span) = covered_slots(key, len, level);
        for b in first..first + span {
            let holds_it = self
                .nodes
                .get(node)
                .and_then(|n| n.slots.get(b))
                .is_some_and(|s| s.value == index + 1);
            if !holds_it {
                continue; // a longer prefix of this level covers the slot
            }
            // The next-longest prefix of this level covering the slot, if any.
            let slot_addr =
                (key & !(0xffu32 << (24 - 8 * level))) | ((b as u32) << (24 - 8 * level));
            let level_min = (level * 8 + 1) as u8;
            let replacement = (level_min..len).rev().find_map(|l| {
                self.by_len
                    .get(usize::from(l))
                    .and_then(|m| m.get(&slot_addr.masked(l)))
                    .map(|&i| (l, i + 1))
            });
            if let Some(n) = self.nodes.get_mut(node) {
                if let (Some(slot), Some(l)) = (n.slots.get_mut(b), n.lens.get_mut(b)) {
                    let (new_len, new_value) = replacement.unwrap_or((0, 0));
                    slot.value = new_value;
                    *l = new_len;
                    if *slot == Slot::default() {
                        n.used = n.used.saturating_sub(1);
                    }
                }
            }
        }
        self.prune(key, &path, level);
        value
    }

    /// The node at `level` on the way to `key`, creating the missing ones.
    fn node_for(&mut self, key: u32, level: usize) -> usize {
        let mut node = 0usize;
        for l in 0..level {
            let b = byte_at(key, l);
            let child = self
                .nodes
                .get(node)
                .and_then(|n| n.slots.get(b))
                .map_or(0, |s| s.child);
            let next = if child != 0 {
                child as usize - 1
            } else {
                let fresh = self.alloc_node();
                if let Some(n) = self.nodes.get_mut(node) {
                    if let Some(slot) = n.slots.get_mut(b) {
                        if *slot == Slot::default() {
                            n.used += 1;
                        }
                        slot.child = fresh as u32 + 1;
                    }
                }
                fresh
            };
            node = next;
        }
        node
    }

    fn alloc_node(&mut self) -> usize {
        match self.free_nodes.pop() {
            Some(i) => i as usize,
            None => {
                self.nodes.push(Node::empty());
                self.nodes.len() - 1
            }
        }
    }

    /// Unlinks the empty nodes at the end of `path[..=level]` (never the root).
    fn prune(&mut self, key: u32, path: &[usize; LEVELS], level: usize) {
        for l in (1..=level).rev() {
            let (Some(&node), Some(&parent)) = (path.get(l), path.get(l - 1)) else {
                return;
            };
            if self.nodes.get(node).is_none_or(|n| n.used != 0) {
                return;
            }
            if let Some(n) = self.nodes.get_mut(node) {
                *n = Node::empty();
            }
            self.free_nodes.push(node as u32);
            if let Some(p) = self.nodes.get_mut(parent) {
                if let Some(slot) = p.slots.get_mut(byte_at(key, l - 1)) {
                    slot.child = 0;
                    if *slot == Slot::default() {
                        p.used = p.used.saturating_sub(1);
                    }
                }
            }
        }
    }

    /// Nodes in use (the root included): for tests and memory accounting.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free_nodes.len()
    }
}

/// The slots of its level's node a prefix covers: the first and how many.
#[inline]
fn covered_slots(key: u32, len: u8, level: usize) -> (usize, usize) {
    let span = 1usize << (8 * (level + 1) - usize::from(len));
    let first = byte_at(key, level) & !(span - 1);
    (first, span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lpm::Lpm;
    use std::net::Ipv4Addr;

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = Lpm4::new();
        t.insert(v4("0.0.0.0"), 0, "default").unwrap();
        t.insert(v4("10.0.0.0"), 8, "ten").unwrap();
        t.insert(v4("10.1.0.0"), 16, "ten-one").unwrap();
        t.insert(v4("10.1.2.3"), 32, "host").unwrap();
        t.insert(v4("10.1.2.0"), 25, "half").unwrap();
        assert_eq!(t.lookup(v4("10.1.2.3")), Some(&"host"));
        assert_eq!(t.lookup(v4("10.1.2.4")), Some(&"half"));
        assert_eq!(t.lookup(v4("10.1.2.200")), Some(&"ten-one"));
        assert_eq!(t.lookup(v4("10.2.0.1")), Some(&"ten"));
        assert_eq!(t.lookup(v4("11.0.0.1")), Some(&"default"));
        assert_eq!(t.lookup_with_len(v4("10.9.9.9")), Some((8, &"ten")));
        assert_eq!(t.lookup_with_len(v4("10.1.2.5")), Some((25, &"half")));
        assert_eq!(t.len(), 5);
        assert_eq!(t.get_exact(v4("10.1.2.99"), 25), Some(&"half"));
        assert_eq!(t.iter().count(), 5);
        assert_eq!(t.iter().next().map(|(_, l, _)| l), Some(32));
    }

    #[test]
    fn remove_restores_the_covering_prefix_and_recycles_nodes() {
        let mut t = Lpm4::new();
        t.insert(v4("10.0.0.0"), 9, 9).unwrap();
        t.insert(v4("10.0.0.0"), 12, 12).unwrap();
        t.insert(v4("10.0.0.0"), 16, 16).unwrap();
        assert_eq!(t.lookup(v4("10.0.1.1")), Some(&16));
        assert_eq!(t.insert(v4("10.0.77.0"), 16, 0), Err(0));
        assert_eq!(t.remove(v4("10.0.0.0"), 16), Some(16));
        assert_eq!(t.lookup(v4("10.0.1.1")), Some(&12));
        assert_eq!(t.remove(v4("10.0.0.0"), 12), Some(12));
        assert_eq!(t.lookup(v4("10.0.1.1")), Some(&9));
        assert_eq!(t.lookup(v4("10.127.1.1")), Some(&9));
        assert_eq!(t.lookup(v4("10.128.1.1")), None);
        assert_eq!(t.remove(v4("10.0.0.0"), 12), None);
        t.insert(v4("192.168.1.7"), 32, 32).unwrap();
        assert_eq!(
            t.node_count(),
            5,
            "root, 10.x (the /9 .. /16) and three under 192"
        );
        assert_eq!(t.remove(v4("192.168.1.7"), 32), Some(32));
        assert_eq!(t.node_count(), 2, "the empty nodes under 192 are recycled");
        assert_eq!(t.remove(v4("10.0.0.0"), 9), Some(9));
        assert_eq!(t.node_count(), 1);
        assert!(t.is_empty());
        assert_eq!(t.lookup(v4("10.0.1.1")), None);
    }

    /// Random inserts and removes agree with the hash-per-length table on every lookup.
    #[test]
    fn agrees_with_the_hash_table() {
        let mut x = 0x1234_5678u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut trie = Lpm4::new();
        let mut reference: Lpm<u32, u32> = Lpm::new();
        let mut installed = Vec::new();
        for round in 0..4000u32 {
            // Addresses from a few /8s so prefixes nest and overlap.
            let addr = (rnd() & 0x03ff_ffff) | 0x0a00_0000;
            let len = [0u8, 1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32][(rnd() % 13) as usize];
            if rnd() % 3 == 0 && !installed.is_empty() {
                let (a, l) = installed.swap_remove((rnd() as usize) % installed.len());
                assert_eq!(trie.remove(a, l), reference.remove(a, l));
            } else if trie.insert(addr, len, round).is_ok() {
                assert!(reference.insert(addr, len, round).is_ok());
                installed.push((addr, len));
            }
            for _ in 0..8 {
                let probe = (rnd() & 0x03ff_ffff) | 0x0a00_0000;
                assert_eq!(trie.lookup(probe), reference.lookup(probe), "round {round}");
                assert_eq!(
                    trie.lookup_with_len(probe),
                    reference.lookup_with_len(probe)
                );
            }
        }
        assert_eq!(trie.len(), reference.len());
        for (a, l) in installed.drain(..) {
            assert_eq!(trie.remove(a, l), reference.remove(a, l));
        }
        assert_eq!(trie.node_count(), 1);
    }
}
