//! The latency histogram every stage timing goes through (the loop's, `bench`'s, the status
//! line's): [`hdrhistogram`] with three significant digits (a bucket is at most 1/1024 of its
//! values wide; 224 KiB whatever the run length) from 1 ns to 100 s, plus the exact count,
//! minimum, maximum and sum beside it.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The largest latency kept apart; longer ones are counted at this value (min, max and mean stay
/// exact).
const HIGHEST_NS: u64 = 100_000_000_000;
/// Significant decimal digits of every bucket.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Latencies in nanoseconds. Exact count, min, max and sum; quantiles at most 0.1 % high.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
    min_ns: u64,
    max_ns: u64,
    sum_ns: u128,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        // Constant bounds that hdrhistogram accepts (1 <= low, 2 * low <= high, digits <= 5).
        let hist = Histogram::new_with_bounds(1, HIGHEST_NS, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        Self {
            hist,
            min_ns: u64::MAX,
            max_ns: 0,
            sum_ns: 0,
        }
    }

    pub fn record(&mut self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn record_ns(&mut self, ns: u64) {
        self.hist.saturating_record(ns.clamp(1, HIGHEST_NS));
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        self.sum_ns += u128::from(ns);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn min_ns(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.min_ns)
    }

    pub fn max_ns(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.max_ns)
    }

    pub fn mean_ns(&self) -> Option<f64> {
        let n = self.count();
        (n > 0).then(|| self.sum_ns as f64 / n as f64)
    }

    /// The nearest-rank quantile (the smallest recorded value with at least `q` of the samples
    /// at or below it), reported as the upper edge of its bucket: never below the true value,
    /// at most 0.1 % above it, never above the largest sample; exact for min (`q = 0`) and max
    /// (`q = 1`).
    pub fn quantile_ns(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        if q == 0.0 {
            return Some(self.min_ns);
        }
        let rank = ((q * n as f64).ceil() as u64).max(1);
        if rank >= n {
            return Some(self.max_ns);
        }
        // The upper edge of the bucket holding the rank-th value.
        let mut seen = 0u64;
        for bucket in self.hist.iter_recorded() {
            seen += bucket.count_since_last_iteration();
            if seen >= rank {
                let upper = self.hist.highest_equivalent(bucket.value_iterated_to());
                return Some(upper.clamp(self.min_ns, self.max_ns));
            }
        }
        Some(self.max_ns)
    }

    /// The `q`-quantile in milliseconds (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.quantile_ns(q).map(|ns| ns as f64 / 1e6).unwrap_or(0.0)
    }

    /// The largest sample in milliseconds (0 when empty).
    pub fn max_ms(&self) -> f64 {
        self.max_ns().map(|ns| ns as f64 / 1e6).unwrap_or(0.0)
    }

    /// Adds another histogram's samples to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.sum_ns += other.sum_ns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_exact_nearest_rank_within_one_percent() {
        // A deterministic spread over five decades (xorshift).
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut values = Vec::new();
        let mut h = LatencyHistogram::new();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = 1_000 + (x % 100_000_000) / (1 + (x >> 60));
            values.push(v);
            h.record_ns(v);
        }
        values.sort_unstable();
        for q in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let rank = ((q * values.len() as f64).ceil() as usize).max(1);
            let exact = values[rank - 1] as f64;
            let got = h.quantile_ns(q).unwrap() as f64;
            assert!(
                (got - exact).abs() / exact < 0.01,
                "q={q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.min_ns(), values.first().copied());
        assert_eq!(h.max_ns(), values.last().copied());
    }

    #[test]
    fn empty_histogram_has_no_quantiles() {
        assert_eq!(LatencyHistogram::new().quantile_ns(0.5), None);
    }
}
