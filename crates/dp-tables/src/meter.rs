//! Rate limiting of a VM's traffic: a token bucket in integer arithmetic, told the time.
//!
//! A bucket holds up to `burst` bytes of credit and gains `rate` bytes per second; a packet is
//! admitted when the credit covers its length, which it then spends. Credit is kept in units of
//! 10⁻⁹ byte ("byte-nanoseconds per second"): `elapsed_ns × rate_bytes_per_s` is exactly the
//! credit gained, so no rounding accumulates — over any span the bucket admits exactly
//! `burst + rate × span` bytes (less what is left unused in it). No floating point; the clock is
//! passed in (`now_ns`, any monotonic nanosecond count).
//!
//! Rates are in Mbit/s as CreateInterface gives them, decimal (1 Mbit/s = 125,000 bytes/s, as
//! the kernel's VF rate limit that dpservice programs for `total_rate`).

/// Credit units per byte.
const UNITS_PER_BYTE: u64 = 1_000_000_000;

/// Bytes per second of one Mbit/s.
pub const BYTES_PER_MBIT: u64 = 125_000;

/// The smallest burst: two 64 KiB TSO/GSO superframes (a VM's kernel hands us those as one
/// packet, and a bucket smaller than one would never admit it), plus headers.
pub const MIN_BURST_BYTES: u64 = 2 * 65_536 + 2 * 1_024;

/// The burst as time at the rate: 200 ms (2.5 MB at 100 Mbit/s). A pure policer (dropping, not
/// queueing) starves TCP on the short round trips of VMs on one host unless its bucket absorbs
/// the sender's bursts: measured with iperf3 (TCP, 3 s, TSO on) at 100 Mbit/s, a burst of 4 ms
/// gave ~6 Mbit/s, 50 ms 28, 100 ms 56, 150 ms 75, 200 ms 98–100 (docs/compatibility.md,
/// "Metering"; BENCHMARKS.md).
pub const BURST_NS: u64 = 200_000_000;

/// The metering of an interface, as CreateInterface set it: Mbit/s, 0 = unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MeterConfig {
    /// Everything the VM sends that is routed (VM to VM on this host included).
    pub total_mbps: u64,
    /// What the VM sends over a public route (a default route out of the VNI: what leaves
    /// through NAT or a VIP), on top of `total_mbps`.
    pub public_mbps: u64,
}

impl MeterConfig {
    /// Whether any meter is set.
    #[inline]
    pub const fn is_metered(&self) -> bool {
        self.total_mbps != 0 || self.public_mbps != 0
    }
}

/// A token bucket (see the module docs). `rate 0` admits everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Bytes per second; 0: unlimited.
    rate: u64,
    /// Most credit, in units.
    cap: u64,
    /// Credit now, in units (≤ `cap`).
    credit: u64,
    /// The time credit was last added.
    last_ns: u64,
    /// Time after which an empty bucket is full again (no overflow past it).
    fill_ns: u64,
}

impl TokenBucket {
    /// An unlimited bucket.
    pub const UNLIMITED: TokenBucket = TokenBucket {
        rate: 0,
        cap: 0,
        credit: 0,
        last_ns: 0,
        fill_ns: 0,
    };

    /// A bucket of `mbps` Mbit/s with the default burst ([`burst_bytes`]), full at `now_ns`.
    pub fn from_mbps(mbps: u64, now_ns: u64) -> TokenBucket {
        let rate = mbps.saturating_mul(BYTES_PER_MBIT);
        TokenBucket::new(rate, burst_bytes(rate), now_ns)
    }

    /// A bucket of `rate` bytes per second holding at most `burst` bytes (at least one byte),
    /// full at `now_ns`. `rate` 0: unlimited.
    pub fn new(rate: u64, burst: u64, now_ns: u64) -> TokenBucket {
        if rate == 0 {
            return TokenBucket::UNLIMITED;
        }
        // Bounds that keep every product below in u64: a rate of at most ~18 Tbyte/s, a burst
        // of at most 16 GiB.
        let rate = rate.min(u64::MAX / UNITS_PER_BYTE / 1_000);
        let burst = burst.clamp(1, 1 << 34);
        let cap = burst * UNITS_PER_BYTE;
        TokenBucket {
            rate,
            cap,
            credit: cap,
            last_ns: now_ns,
            fill_ns: cap.div_ceil(rate),
        }
    }

    /// Whether the bucket limits at all.
    #[inline]
    pub const fn is_limited(&self) -> bool {
        self.rate != 0
    }

    /// Bytes per second (0: unlimited).
    pub const fn rate(&self) -> u64 {
        self.rate
    }

    /// The most bytes it admits at once.
    pub const fn burst(&self) -> u64 {
        self.cap / UNITS_PER_BYTE
    }

    /// Whole bytes of credit now (as of the last refill).
    pub const fn available(&self) -> u64 {
        self.credit / UNITS_PER_BYTE
    }

    /// Admits a packet of `bytes` at `now_ns`: adds the credit gained since the last call, then
    /// spends `bytes` if it is covered (`true`) or spends nothing (`false`).
    #[inline]
    pub fn admit(&mut self, now_ns: u64, bytes: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        self.refill(now_ns);
        self.take(bytes)
    }

    /// Adds the credit gained since the last refill, up to the burst. A clock that went back
    /// adds nothing (and the bucket follows it from there); a gap longer than the time to fill
    /// fills it (no overflow, whatever the gap).
    #[inline]
    pub fn refill(&mut self, now_ns: u64) {
        if self.rate == 0 {
            return;
        }
        let Some(elapsed) = now_ns.checked_sub(self.last_ns) else {
            // The clock went backwards: no credit, and the bucket follows it from there.
            self.last_ns = now_ns;
            return;
        };
        self.last_ns = now_ns;
        if elapsed >= self.fill_ns {
            self.credit = self.cap;
        } else {
            // elapsed < fill_ns = ⌈cap / rate⌉, so elapsed × rate < cap + rate: no overflow.
            self.credit = self
                .credit
                .saturating_add(elapsed * self.rate)
                .min(self.cap);
        }
    }

    /// Whether `bytes` are covered by the credit now (after [`TokenBucket::refill`]).
    #[inline]
    pub fn covers(&self, bytes: u64) -> bool {
        self.rate == 0 || bytes.saturating_mul(UNITS_PER_BYTE) <= self.credit
    }

    /// Spends `bytes` if covered; `false` (nothing spent) if not.
    #[inline]
    pub fn take(&mut self, bytes: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let cost = bytes.saturating_mul(UNITS_PER_BYTE);
        if cost > self.credit {
            return false;
        }
        self.credit -= cost;
        true
    }
}

/// The burst of a bucket of `rate` bytes per second: [`BURST_NS`] at the rate, at least
/// [`MIN_BURST_BYTES`].
pub const fn burst_bytes(rate: u64) -> u64 {
    let at_rate = rate.saturating_mul(BURST_NS) / 1_000_000_000;
    if at_rate > MIN_BURST_BYTES {
        at_rate
    } else {
        MIN_BURST_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    /// 100 Mbit/s in bytes per millisecond.
    const PER_MS_100M: u64 = 12_500;

    #[test]
    fn rate_zero_admits_everything() {
        let mut b = TokenBucket::from_mbps(0, 5);
        assert!(!b.is_limited());
        for t in [0, 1, u64::MAX, 3] {
            assert!(b.admit(t, u64::MAX));
        }
        assert_eq!(b, TokenBucket::UNLIMITED);
    }

    #[test]
    fn a_full_bucket_admits_exactly_its_burst_then_refills_at_the_rate() {
        let t0 = 1_000 * MS;
        let mut b = TokenBucket::new(12_500_000, 100_000, t0);
        assert_eq!(
            (b.rate(), b.burst(), b.available()),
            (12_500_000, 100_000, 100_000)
        );
        // 100 packets of 1000 bytes at once: the burst, not one more.
        for i in 0..100 {
            assert!(b.admit(t0, 1_000), "packet {i}");
        }
        assert!(!b.admit(t0, 1), "empty");
        // 1 ms later: exactly 12,500 bytes.
        assert!(b.admit(t0 + MS, 12_500));
        assert!(!b.admit(t0 + MS, 1));
        // 1 ns of 100 Mbit/s is 1/80 byte: 80 ns make one byte, 79 do not.
        assert!(!b.admit(t0 + MS + 79, 1));
        assert!(b.admit(t0 + MS + 80, 1));
        // A refused packet spends nothing: 1 ms less 80 ns is 12,499 bytes.
        assert!(!b.admit(t0 + 2 * MS, 12_500));
        assert!(b.admit(t0 + 2 * MS, 12_499));
        assert_eq!(b.available(), 0);
    }

    #[test]
    fn over_a_span_it_admits_burst_plus_rate_times_span() {
        // 100 Mbit/s, a packet of 1500 bytes offered every 10 µs (1.2 Gbit/s) for 100 ms.
        let mut b = TokenBucket::from_mbps(100, 0);
        let burst = b.burst();
        assert_eq!(burst, 2_500_000, "200 ms at 12.5 MB/s");
        let mut admitted = 0u64;
        let mut t = 0;
        while t <= 100 * MS {
            if b.admit(t, 1_500) {
                admitted += 1_500;
            }
            t += 10_000;
        }
        let allowed = burst + 100 * PER_MS_100M;
        // Exact up to the last packet that did not fit.
        assert!(admitted <= allowed, "{admitted} > {allowed}");
        assert!(admitted + 1_500 > allowed, "{admitted} + 1500 <= {allowed}");
        assert_eq!(admitted + b.available(), allowed);
    }

    #[test]
    fn the_burst_caps_credit_and_admits_a_superframe() {
        let mut b = TokenBucket::from_mbps(1, 0);
        // An hour idle: no more than the burst.
        b.refill(3_600_000 * MS);
        assert_eq!(b.available(), MIN_BURST_BYTES);
        assert!(b.admit(3_600_000 * MS, 65_535 + 40));
        assert!(b.admit(3_600_000 * MS, 65_535 + 40));
        assert!(!b.admit(3_600_000 * MS, 65_535 + 40));
        // At 10 Gbit/s the burst is 200 ms at the rate.
        assert_eq!(TokenBucket::from_mbps(10_000, 0).burst(), 250_000_000);
    }

    #[test]
    fn clock_going_back_and_huge_gaps_do_not_overflow() {
        let mut b = TokenBucket::new(1_000, 1_000, 10 * MS);
        assert!(b.admit(10 * MS, 1_000));
        // Back in time: no credit, and the bucket goes on from there.
        assert!(!b.admit(5 * MS, 1));
        assert!(b.admit(6 * MS, 1), "1 ms at 1000 B/s is one byte");
        // From 0 to the end of time and back to 0.
        let mut b = TokenBucket::new(u64::MAX, u64::MAX, 0);
        assert!(b.admit(u64::MAX, 1 << 34));
        assert!(!b.admit(0, 1));
        assert!(b.admit(u64::MAX / 2, 1 << 34));
        let mut b = TokenBucket::from_mbps(u64::MAX, u64::MAX);
        assert!(b.admit(0, u64::MAX / UNITS_PER_BYTE) || b.burst() < u64::MAX / UNITS_PER_BYTE);
        assert!(!TokenBucket::from_mbps(1, 0).admit(0, u64::MAX));
    }

    #[test]
    fn covers_and_take_split_admit() {
        let mut b = TokenBucket::new(1_000_000, 2_000, 0);
        b.refill(0);
        assert!(b.covers(2_000) && !b.covers(2_001));
        assert!(b.take(1_500));
        assert!(!b.covers(501) && b.covers(500));
        assert!(!b.take(501));
        assert_eq!(b.available(), 500);
        assert!(MeterConfig {
            total_mbps: 0,
            public_mbps: 1
        }
        .is_metered());
        assert!(!MeterConfig::default().is_metered());
    }
}
