//! Small random-draw helpers on top of ChaCha8.
//!
//! The distributions are written out here instead of pulling in `rand_distr`: they are a few
//! lines each, and owning them keeps the output stable across dependency upgrades.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(crate) type SimRng = ChaCha8Rng;

/// Independent random streams, one per subsystem, so that (for example) turning fault
/// injection on never changes the valid events.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum Stream {
    Catalog = 1,
    Users = 2,
    Traffic = 3,
    Faults = 4,
}

pub(crate) fn rng_for(seed: u64, stream: Stream) -> SimRng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

/// Uniform in [0, 1).
pub(crate) fn unit(rng: &mut SimRng) -> f64 {
    rng.random::<f64>()
}

pub(crate) fn chance(rng: &mut SimRng, probability: f64) -> bool {
    unit(rng) < probability
}

/// Uniform in [low, high).
pub(crate) fn uniform(rng: &mut SimRng, low: f64, high: f64) -> f64 {
    low + (high - low) * unit(rng)
}

/// Uniform index in `0..len`; `len` must be positive.
pub(crate) fn index(rng: &mut SimRng, len: usize) -> usize {
    debug_assert!(len > 0);
    rng.random_range(0..len)
}

pub(crate) fn pick<'a, T>(rng: &mut SimRng, items: &'a [T]) -> &'a T {
    &items[index(rng, items.len())]
}

/// Standard normal (Box–Muller; one of the pair is discarded, which is simpler than caching).
pub(crate) fn normal(rng: &mut SimRng) -> f64 {
    let u1 = 1.0 - unit(rng); // in (0, 1], so ln is finite
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Log-normal with the given median and log-space standard deviation.
pub(crate) fn log_normal(rng: &mut SimRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

pub(crate) fn exponential(rng: &mut SimRng, mean: f64) -> f64 {
    -mean * (1.0 - unit(rng)).ln()
}

/// Number of failures before the first success, with the given mean.
pub(crate) fn geometric(rng: &mut SimRng, mean: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    let success = 1.0 / (1.0 + mean);
    let draw = ((1.0 - unit(rng)).ln() / (1.0 - success).ln()).floor();
    draw.min(1_000.0) as u32
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Sampling proportional to fixed weights in O(log n) per draw.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CumulativeWeights {
    running_totals: Vec<f64>,
}

impl CumulativeWeights {
    pub(crate) fn new(weights: impl IntoIterator<Item = f64>) -> Self {
        let mut total = 0.0;
        let running_totals = weights
            .into_iter()
            .map(|weight| {
                total += weight.max(0.0);
                total
            })
            .collect();
        Self { running_totals }
    }

    pub(crate) fn total(&self) -> f64 {
        self.running_totals.last().copied().unwrap_or(0.0)
    }

    /// An index drawn proportionally to its weight, or `None` when all weights are zero.
    pub(crate) fn sample(&self, rng: &mut SimRng) -> Option<usize> {
        let total = self.total();
        if total <= 0.0 {
            return None;
        }
        let target = unit(rng) * total;
        let found = self
            .running_totals
            .partition_point(|&running| running <= target);
        Some(found.min(self.running_totals.len() - 1))
    }
}

/// SplitMix64 finaliser: spreads a seed into a well-mixed 64-bit value.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_sampling_follows_the_weights() {
        let mut rng = rng_for(7, Stream::Traffic);
        let weights = CumulativeWeights::new([1.0, 0.0, 3.0]);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[weights.sample(&mut rng).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0, "a zero weight is never drawn");
        let share = f64::from(counts[2]) / 40_000.0;
        assert!(
            (share - 0.75).abs() < 0.01,
            "share of weight 3 of 4 was {share}"
        );
    }

    #[test]
    fn geometric_has_the_requested_mean() {
        let mut rng = rng_for(9, Stream::Traffic);
        let total: u64 = (0..50_000)
            .map(|_| u64::from(geometric(&mut rng, 2.5)))
            .sum();
        let mean = total as f64 / 50_000.0;
        assert!((mean - 2.5).abs() < 0.06, "mean was {mean}");
    }
}
