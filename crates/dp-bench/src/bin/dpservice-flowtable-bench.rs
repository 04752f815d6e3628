//! The flow table alone, and the memory under it: how much of a stateful packet's time at a
//! million flows is the table's lookup, and how far that is from what this machine's memory
//! allows.
//!
//! Cases, each per flow count (`--flows`), in a table sized as `dpservice-bench` sizes it
//! (twice the flows):
//!
//! * `raw_one`: one random cache line of a buffer as large as the table's index, read in
//!   batches of 64 whose lines are all prefetched first — the floor of one random access.
//! * `raw_two`: a random line of an index-sized buffer, then the line it names in a
//!   slab-sized buffer (both prefetched batch-wise, the second once the first is in) — the
//!   floor of a lookup that reads an index slot and then the flow it points to.
//! * `raw_flow`: as `raw_two`, but two adjacent lines of the slab (a flow is 128 bytes) and 48
//!   bytes of a stream read in order (the key) — the floor of a lookup that reads both lines
//!   of a flow (a reply, a translated flow); the lookups below are of untranslated flows in
//!   their original direction, which read one line: their floor is `raw_two` and the key.
//! * `lookup`: [`FlowTable`] lookups of live flows in a random order, as the conntrack node
//!   makes them (keys hashed and index slots prefetched for a batch of 64, each flow prefetched
//!   four lookups ahead, the flow's expiry written), keys read from a key stream in order
//!   (as frames arrive). `lookup_staged`: every flow of the batch prefetched once all index
//!   slots are (a staging tried against the four-ahead one); `lookup_noprefetch`: no
//!   prefetches.
//!
//! `--work N` adds N steps of register-only arithmetic after each lookup or line read (a
//! multiply-rotate chain that depends on nothing read from memory), standing for the rest of a
//! packet's work: comparing a case at 1,000 and at 1,000,000 flows with the same `--work` shows
//! how much of the memory time the work hides (all of it, if the two are equal) and how much
//! it only adds to.
//!
//! Prints `FLOWTABLE case=... flows=... work=... ns_per_lookup=...` lines. Timings are wall
//! clock on one thread; compare them only within one run.

use std::time::Instant;

use clap::Parser;
use dp_packet::IpProtocol;
use dp_tables::{ConnKey, Flow, FlowTable};

#[derive(Parser, Debug)]
#[command(about = "Flow table lookups against the memory floor of this machine")]
struct Args {
    /// Flow counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1_000usize, 100_000, 1_000_000])]
    flows: Vec<usize>,
    /// Lookups per case.
    #[arg(long, default_value_t = 20_000_000)]
    lookups: usize,
    /// Only these cases (comma-separated: raw_one, raw_two, raw_flow, lookup, lookup_staged,
    /// lookup_noprefetch).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// How many lookups ahead `lookup` prefetches a flow (the conntrack node: 4).
    #[arg(long, default_value_t = FLOW_AHEAD)]
    ahead: usize,
    /// Steps of register-only arithmetic after each lookup or line read (a dependent multiply
    /// and rotate each: ~0.85 ns on the EPYC VMs we measure on; see the module's docs).
    #[arg(long, default_value_t = 0)]
    work: u32,
}

/// What the conntrack node batches (`dp_pipeline::graph::BATCH_SIZE`).
const BATCH: usize = 64;
/// How far ahead the conntrack node prefetches a flow (`PREFETCH_FLOW_AHEAD`).
const FLOW_AHEAD: usize = 4;
/// A cache line.
type Line = [u64; 8];

fn main() {
    let args = Args::parse();
    if args.lookups == 0 || args.flows.contains(&0) {
        eprintln!("--lookups and every --flows must be at least 1");
        std::process::exit(2);
    }
    let wants = |case: &str| args.only.is_empty() || args.only.iter().any(|c| c == case);
    for &flows in &args.flows {
        let capacity = flows * 2;
        // As `FlowTable::with_seeds` sizes them: four index slots of 8 bytes per flow of
        // capacity (rounded up to a power of two), 128 bytes per flow.
        let index_lines = ((capacity * 4).next_power_of_two() * 8 / 64).max(1);
        let slab_lines = flows * 2;
        if wants("raw_one") {
            let ns = raw(index_lines, None, Shape::Line, args.lookups, args.work);
            report("raw_one", flows, args.work, ns);
        }
        if wants("raw_two") {
            let ns = raw(
                index_lines,
                Some(slab_lines),
                Shape::Line,
                args.lookups,
                args.work,
            );
            report("raw_two", flows, args.work, ns);
        }
        if wants("raw_flow") {
            let ns = raw(
                index_lines,
                Some(slab_lines),
                Shape::Flow,
                args.lookups,
                args.work,
            );
            report("raw_flow", flows, args.work, ns);
        }
        if wants("lookup") || wants("lookup_staged") || wants("lookup_noprefetch") {
            let (mut table, keys) = filled(flows, capacity);
            for (case, prefetching) in [
                ("lookup", Prefetch::Ahead),
                ("lookup_staged", Prefetch::Staged),
                ("lookup_noprefetch", Prefetch::None),
            ] {
                if wants(case) {
                    let run = Lookups {
                        count: args.lookups,
                        prefetching,
                        flow_ahead: args.ahead,
                        work: args.work,
                    };
                    let ns = run.time(&mut table, &keys);
                    report(case, flows, args.work, ns);
                }
            }
        }
    }
}

fn report(case: &str, flows: usize, work: u32, ns: f64) {
    println!(
        "FLOWTABLE case={case} flows={flows} work={work} ns_per_lookup={ns:.1} mlookups_per_s={:.2}",
        1e3 / ns
    );
}

/// `steps` steps of a multiply-rotate chain from `seed`: work that needs no memory and that the
/// compiler can neither fold nor hoist (the step count is a run-time value).
#[inline(always)]
fn busy(seed: u64, steps: u32) -> u64 {
    let mut w = seed | 1;
    for _ in 0..steps {
        w = w.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7);
    }
    w
}

/// A xorshift generator: cheap, and the same sequence every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[inline(always)]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults and reads nothing into the program.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// What a raw case reads per item besides the random line of the first buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The line of the second buffer it names.
    Line,
    /// The two lines of the second buffer it names (a 128-byte flow), and 48 bytes of a
    /// stream read in order (the key).
    Flow,
}

/// ns per item of batch-prefetched random line reads: one line of `first` each, or that line
/// and then what of `second` it names (`shape`).
fn raw(
    first_lines: usize,
    second_lines: Option<usize>,
    shape: Shape,
    items: usize,
    work: u32,
) -> f64 {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let second_len = second_lines.unwrap_or(1);
    let mut first: Vec<Line> = vec![[0; 8]; first_lines];
    for line in &mut first {
        line[0] = rng.below(second_len) as u64;
        line[1] = rng.next();
    }
    let second: Vec<Line> = (0..second_len).map(|i| [i as u64; 8]).collect();
    let flow = shape == Shape::Flow;
    let stream: Vec<[u64; 6]> = vec![[1; 6]; if flow { second_len / 2 } else { 1 }];
    let mut at = 0usize;
    let mut batch = [0usize; BATCH];
    let mut sum = 0u64;
    let mut busy_sum = 0u64;
    let start = Instant::now();
    let mut done = 0;
    while done < items {
        for slot in batch.iter_mut() {
            *slot = rng.below(first_lines);
            if flow {
                sum = sum.wrapping_add(stream.get(at).map_or(0, |k| k[0] ^ k[5]));
                at = (at + 1) % stream.len();
            }
            if let Some(line) = first.get(*slot) {
                prefetch(line);
            }
        }
        if second_lines.is_some() {
            for slot in batch.iter_mut() {
                *slot = first.get(*slot).map_or(0, |l| l[0] as usize);
                if flow {
                    *slot &= !1;
                }
                if let Some(line) = second.get(*slot) {
                    prefetch(line);
                }
                if flow {
                    if let Some(line) = second.get(*slot + 1) {
                        prefetch(line);
                    }
                }
            }
            for &slot in &batch {
                sum = sum.wrapping_add(second.get(slot).map_or(0, |l| l[1]));
                if flow {
                    sum = sum.wrapping_add(second.get(slot + 1).map_or(0, |l| l[2]));
                }
                busy_sum ^= busy(slot as u64, work);
            }
        } else {
            for &slot in &batch {
                sum = sum.wrapping_add(first.get(slot).map_or(0, |l| l[1]));
                busy_sum ^= busy(slot as u64, work);
            }
        }
        done += BATCH;
    }
    let ns = start.elapsed().as_nanos() as f64 / done as f64;
    std::hint::black_box((sum, busy_sum));
    ns
}

/// The key of flow `i`: a UDP flow from one VM to a destination per flow, as dpservice-bench's.
fn key(i: usize) -> ConnKey {
    ConnKey {
        src: u128::from(0x0a00_0001u32),
        dst: u128::from(0x0a01_0000u32 | (i as u32 & 0xffff)),
        vni: 100,
        src_port: 1000 + (i >> 16) as u16,
        dst_port: 4789,
        proto: IpProtocol::UDP,
        is_v6: false,
    }
}

/// A table of `capacity` holding `flows` flows, and a stream of their keys in a random order
/// (every flow once, repeated as needed by the lookups).
fn filled(flows: usize, capacity: usize) -> (FlowTable, Vec<ConnKey>) {
    let mut table = FlowTable::new(capacity);
    for i in 0..flows {
        let k = key(i);
        // The bench's keys are distinct and the table has room: an error here is a bug.
        if table.insert(Flow::new(k, k.reversed(), u64::MAX)).is_err() {
            eprintln!("flow {i} not inserted");
            std::process::exit(1);
        }
    }
    let mut keys: Vec<ConnKey> = (0..flows).map(key).collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.below(i + 1));
    }
    (table, keys)
}

/// How a batch prefetches its flows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prefetch {
    None,
    /// Flows prefetched `--ahead` lookups ahead.
    Ahead,
    /// Every flow of the batch prefetched after every index slot.
    Staged,
}

/// A timed run of lookups.
struct Lookups {
    count: usize,
    prefetching: Prefetch,
    flow_ahead: usize,
    /// Steps of [`busy`] after each lookup.
    work: u32,
}

impl Lookups {
    /// ns per lookup of `count` lookups of `keys` (cycled) in `table`, the conntrack node's way.
    fn time(&self, table: &mut FlowTable, keys: &[ConnKey]) -> f64 {
        let mut hashes = [0u64; BATCH];
        let mut found = 0u64;
        let mut busy_sum = 0u64;
        let mut now = 1u64;
        let start = Instant::now();
        let mut done = 0;
        let mut next = 0;
        while done < self.count {
            let from = next;
            for h in hashes.iter_mut() {
                *h = keys.get(next).map_or(0, |k| table.hash(k));
                if self.prefetching != Prefetch::None {
                    table.prefetch(*h);
                }
                next = (next + 1) % keys.len().max(1);
            }
            let ahead = match self.prefetching {
                Prefetch::None => 0,
                Prefetch::Ahead => self.flow_ahead,
                Prefetch::Staged => BATCH,
            };
            for &h in hashes.iter().take(ahead) {
                table.prefetch_flow(h);
            }
            for i in 0..BATCH {
                if self.prefetching == Prefetch::Ahead {
                    if let Some(&ahead) = hashes.get(i + self.flow_ahead) {
                        table.prefetch_flow(ahead);
                    }
                }
                let Some(k) = keys.get((from + i) % keys.len().max(1)) else {
                    continue;
                };
                let h = hashes.get(i).copied().unwrap_or(0);
                if let Some((_, _, flow)) = table.find_mut(k, h) {
                    flow.expires_ns = now;
                    found += 1;
                }
                busy_sum ^= busy(i as u64 ^ now, self.work);
            }
            now += 1;
            done += BATCH;
        }
        let ns = start.elapsed().as_nanos() as f64 / done as f64;
        std::hint::black_box(busy_sum);
        if found != done as u64 {
            eprintln!("only {found} of {done} lookups found their flow");
            std::process::exit(1);
        }
        ns
    }
}
