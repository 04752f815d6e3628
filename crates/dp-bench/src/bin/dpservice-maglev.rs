//! Figures of the Maglev table (`dp_tables::maglev`): for N targets, the spread of 1,000,000
//! synthetic flows over them (max/min flows per target) and the share of flows that move when
//! one of the N is removed or one added, next to the ideal 1/N. Recorded in BENCHMARKS.md
//! ("Maglev (issue #12)").
//!
//! `dpservice-maglev [--size PRIME] [--flows N]`

use std::net::Ipv6Addr;

use clap::Parser;
use dp_tables::maglev::synthetic_flow_hash;
use dp_tables::{Maglev, MAGLEV_TABLE_SIZE};

#[derive(Parser)]
#[command(about = "Maglev table figures: load spread and disruption for 2..=64 targets")]
struct Args {
    /// Table size (a prime).
    #[arg(long, default_value_t = MAGLEV_TABLE_SIZE)]
    size: usize,
    /// Synthetic flows per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    flows: u64,
    /// Largest N.
    #[arg(long, default_value_t = 64)]
    max_targets: usize,
}

fn targets(n: usize) -> Vec<Ipv6Addr> {
    (0..n)
        .map(|i| Ipv6Addr::new(0xfc00, 1 + (i / 7) as u16, 0, 0, 0, 0, 0x64, i as u16))
        .collect()
}

fn main() {
    let args = Args::parse();
    let hashes: Vec<u64> = (0..args.flows).map(synthetic_flow_hash).collect();
    println!(
        "table {} slots, {} flows; removed: target N/2; added: one more address",
        args.size, args.flows
    );
    println!(
        "{:>3} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "N", "slots/N", "max/min", "1/N", "removed", "1/(N+1)", "added"
    );
    for n in 2..=args.max_targets {
        let all = targets(n + 1);
        let t = &all[..n];
        let Some(table) = Maglev::with_size(t, args.size) else {
            eprintln!("N={n}: no table of {} slots", args.size);
            std::process::exit(2);
        };
        let mut load = vec![0u64; n];
        for &h in &hashes {
            load[table.pick(h)] += 1;
        }
        let (min, max) = (
            *load.iter().min().unwrap_or(&0),
            *load.iter().max().unwrap_or(&0),
        );
        let gone = n / 2;
        let mut rest = t.to_vec();
        rest.remove(gone);
        let share = |after: &Maglev, tb: &[Ipv6Addr]| {
            let moved = hashes
                .iter()
                .filter(|&&h| t[table.pick(h)] != tb[after.pick(h)])
                .count();
            moved as f64 / args.flows as f64
        };
        let removed = Maglev::with_size(&rest, args.size).map_or(f64::NAN, |m| share(&m, &rest));
        let added = Maglev::with_size(&all, args.size).map_or(f64::NAN, |m| share(&m, &all));
        println!(
            "{n:>3} {:>9.1} {:>8.4} {:>9.4} {removed:>9.4} {:>9.4} {added:>9.4}",
            args.size as f64 / n as f64,
            max as f64 / min.max(1) as f64,
            1.0 / n as f64,
            1.0 / (n + 1) as f64,
        );
    }
}
