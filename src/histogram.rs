//! Histograms as the state keeps them (bucket counts, sum and count) and the one table of
//! their bucket sets, keyed by what they measure. Ground floor: the state observes into them,
//! the metrics writer renders them, `/status` reads their quantiles.

/// What a histogram measures, and so its buckets (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buckets {
    /// Time spent in an SMTP phase: from a millisecond on loopback to the 30 s timeout.
    Latency,
    /// Canary delivery (accepted → received): Exchange delivers within seconds; minutes are worth
    /// seeing, beyond ten the message is as good as lost.
    Delivery,
    /// How late a scheduled run starts.
    Delay,
}

/// Latency buckets in seconds, from a millisecond on loopback to the 30 s timeout.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const DELIVERY_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0,
];

const DELAY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Buckets {
    /// The upper bounds, ascending (the `le` label values; `+Inf` is implied).
    pub fn bounds(self) -> &'static [f64] {
        match self {
            Buckets::Latency => LATENCY_BUCKETS,
            Buckets::Delivery => DELIVERY_BUCKETS,
            Buckets::Delay => DELAY_BUCKETS,
        }
    }
}

/// A histogram kept in the state: bucket counts (not cumulative), sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(buckets: Buckets) -> Self {
        let bounds = buckets.bounds();
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    /// Each bucket's upper bound with the count of observations at or below it (cumulative, as
    /// the exposition format writes `_bucket`).
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds
            .iter()
            .zip(&self.counts)
            .scan(0u64, |total, (bound, n)| {
                *total += n;
                Some((*bound, *total))
            })
    }

    /// The `q` quantile (0 to 1) estimated as Prometheus' `histogram_quantile` does: linear
    /// within the bucket it falls in.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q * self.count as f64;
        let mut below = 0u64;
        let mut lower = 0.0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            if (below + n) as f64 >= rank && *n > 0 {
                let within = (rank - below as f64) / *n as f64;
                return Some(lower + (bound - lower) * within);
            }
            below += n;
            lower = *bound;
        }
        Some(*self.bounds.last()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_cumulative_and_quantiles_linear_within_a_bucket() {
        let mut h = Histogram::new(Buckets::Latency);
        for v in [0.05, 0.5, 0.7, 3.0] {
            h.observe(v);
        }
        let c: Vec<(f64, u64)> = h.cumulative().collect();
        assert_eq!(c.len(), LATENCY_BUCKETS.len());
        assert!(c.contains(&(0.1, 1)) && c.contains(&(1.0, 3)) && c.contains(&(5.0, 4)));
        assert_eq!(h.count, 4);
        assert_eq!(h.sum, 4.25);
        // Rank 2 of 4 is the one observation in (0.25, 0.5]: its upper end.
        assert_eq!(h.quantile(0.5), Some(0.5));
        assert_eq!(Histogram::new(Buckets::Delay).quantile(0.5), None);
        for b in [Buckets::Latency, Buckets::Delivery, Buckets::Delay] {
            assert!(b.bounds().windows(2).all(|w| w[0] < w[1]), "{b:?}");
        }
    }
}
