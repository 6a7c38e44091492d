//! A fixed-size log-linear latency histogram: 128 sub-buckets per power of two, so every
//! recorded value is kept to within 1/128 (0.8 %) of itself, in 59 KiB whatever the run length.

use std::time::Duration;

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this are counted exactly, one bucket each.
const LINEAR: u64 = 2 * SUB;
const BUCKETS: usize = (LINEAR + (63 - SUB_BITS as u64) * SUB) as usize;

/// Latencies in nanoseconds. Exact count, min, max and sum; quantiles within 0.8 %.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    count: u64,
    min_ns: u64,
    max_ns: u64,
    sum_ns: u128,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < LINEAR {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros() as u64; // >= SUB_BITS + 1
    let sub = (ns >> (exp - SUB_BITS as u64)) & (SUB - 1);
    (LINEAR + (exp - SUB_BITS as u64 - 1) * SUB + sub) as usize
}

/// The lowest value and the width of a bucket.
fn bucket_range(index: usize) -> (u64, u64) {
    let i = index as u64;
    if i < LINEAR {
        return (i, 1);
    }
    let exp = (i - LINEAR) / SUB + SUB_BITS as u64 + 1;
    let sub = (i - LINEAR) % SUB;
    let shift = exp - SUB_BITS as u64;
    ((SUB + sub) << shift, 1 << shift)
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            sum_ns: 0,
        }
    }

    pub fn record(&mut self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn record_ns(&mut self, ns: u64) {
        self.counts[bucket_of(ns)] += 1;
        self.count += 1;
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        self.sum_ns += ns as u128;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn min_ns(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min_ns)
    }

    pub fn max_ns(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max_ns)
    }

    pub fn mean_ns(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ns as f64 / self.count as f64)
    }

    /// The nearest-rank quantile (the smallest recorded value with at least `q` of the samples
    /// at or below it), to within 0.8 %; exact for min (`q = 0`) and max (`q = 1`).
    pub fn quantile_ns(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        if rank >= self.count {
            return Some(self.max_ns);
        }
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bucket_range(i);
                let mid = low + (width - 1) / 2;
                return Some(mid.clamp(self.min_ns, self.max_ns));
            }
        }
        Some(self.max_ns)
    }

    /// Adds another histogram's samples to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.sum_ns += other.sum_ns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for shift in 0..64u32 {
            for v in [
                1u64 << shift,
                (1u64 << shift).saturating_sub(1),
                (1u64 << shift) | 0x55,
            ] {
                let i = bucket_of(v);
                assert!(i < BUCKETS);
                let (low, width) = bucket_range(i);
                assert!(low <= v && v - low < width, "v={v} low={low} width={width}");
            }
            let i = bucket_of(1u64 << shift);
            assert!(i >= last);
            last = i;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

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
