//! Cache-line round trip between two CPUs: two threads, one pinned to each, hand a counter in
//! one cache line back and forth; prints the nanoseconds of one round trip (the line moved
//! twice). Why: the vhost-user PVP benchmark (`scripts/bench-vhost-pvp.sh`) is bimodal on the
//! VMs it runs on, and every packet there moves lines between the generator's CPU and the
//! forwarder's. This measures that cost on its own, next to each case, so that a case can be
//! told to have run in a cheap or a dear placement of the two vCPUs.
//!
//! `dpservice-c2c [--cpus A,B] [--rounds N]` prints `c2c_ns=<median of 5 runs>`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;

#[derive(Parser)]
#[command(about = "cache-line round trip between two CPUs")]
struct Args {
    /// The two CPUs, e.g. 0,1.
    #[arg(long, default_value = "0,1", value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Round trips per run (5 runs).
    #[arg(long, default_value_t = 200_000)]
    rounds: u64,
}

/// The counter, alone in its line.
#[repr(align(128))]
struct Line(AtomicU64);

fn pin(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// One run: ns per round trip.
fn run(a: usize, b: usize, rounds: u64) -> Result<f64, String> {
    let line = Arc::new(Line(AtomicU64::new(0)));
    let other = Arc::clone(&line);
    let echo = std::thread::spawn(move || {
        if !pin(b) {
            return false;
        }
        // Answers every odd value with the next even one. Bounded: it stops after `rounds`.
        for i in 0..rounds {
            let want = 2 * i + 1;
            while other.0.load(Ordering::Acquire) != want {
                std::hint::spin_loop();
            }
            other.0.store(want + 1, Ordering::Release);
        }
        true
    });
    if !pin(a) {
        return Err(format!("cannot pin to CPU {a}"));
    }
    // The first tenth is not timed: it wakes the other CPU (an idle vCPU is halted).
    let warm = rounds / 10;
    let mut start = Instant::now();
    for i in 0..rounds {
        if i == warm {
            start = Instant::now();
        }
        line.0.store(2 * i + 1, Ordering::Release);
        let mut spins = 0u32;
        while line.0.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(65536) && start.elapsed().as_secs() > 10 {
                // Bounded: a CPU that never answers ends the run.
                return Err("the other CPU does not answer".into());
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / (rounds - warm) as f64;
    match echo.join() {
        Ok(true) => Ok(ns),
        _ => Err(format!("cannot pin to CPU {b}")),
    }
}

fn main() {
    let args = Args::parse();
    let &[a, b] = args.cpus.as_slice() else {
        eprintln!("dpservice-c2c: --cpus takes two CPUs, as A,B");
        std::process::exit(2);
    };
    let mut runs = Vec::new();
    for _ in 0..5 {
        match run(a, b, args.rounds.max(1)) {
            Ok(ns) => runs.push(ns),
            Err(e) => {
                eprintln!("dpservice-c2c: {e}");
                std::process::exit(1);
            }
        }
    }
    runs.sort_by(f64::total_cmp);
    println!(
        "c2c_ns={:.1} runs={}",
        runs[2],
        runs.iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join("/")
    );
}
