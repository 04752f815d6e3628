//! The graph's own clock for per-node timing: the CPU's time-stamp counter, read once when a
//! node starts its batch and once when it is done. Not time as the nodes see it (that is
//! `Ctx::now_ns`, passed in): only instrumentation, converted to nanoseconds by whoever reads
//! the counters (the daemon calibrates the counter against its clock once).

/// The time-stamp counter (x86-64), or 0 where there is none (no per-node timing there).
#[inline(always)]
pub fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` has no preconditions; every x86-64 CPU has it.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Counter ticks per nanosecond, measured over `span` against the monotonic clock (cold: the
/// daemon calls it once at start). 0.0 where there is no counter.
pub fn ticks_per_ns(span: std::time::Duration) -> f64 {
    let (t0, c0) = (std::time::Instant::now(), now());
    std::thread::sleep(span);
    let (elapsed, c1) = (t0.elapsed(), now());
    let ns = elapsed.as_nanos() as f64;
    if ns <= 0.0 {
        return 0.0;
    }
    c1.wrapping_sub(c0) as f64 / ns
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_counter_advances_and_calibrates() {
        let a = super::now();
        let rate = super::ticks_per_ns(std::time::Duration::from_millis(5));
        if cfg!(target_arch = "x86_64") {
            assert!(super::now() > a);
            assert!(rate > 0.1 && rate < 20.0, "{rate} ticks per ns");
        }
    }
}
