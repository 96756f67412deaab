//! Counter-based randomness: Philox4x32-10.
//!
//! Why counter-based: every random choice in zerofeed is a pure function of
//! `(seed, stream words, draw index)`. There is no generator state to share between
//! workers, to advance in the right order, or to save for resuming; any worker can
//! compute any draw in any order and get the same bits.
//!
//! Algorithm: Philox4x32 with 10 rounds, from J. K. Salmon, M. A. Moraes, R. O. Dror and
//! D. E. Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11
//! (doi:10.1145/2063384.2063405). The multipliers `0xD2511F53`, `0xCD9E8D57` and the
//! Weyl key increments `0x9E3779B9` (golden ratio), `0xBB67AE85` (sqrt(3) - 1) are the
//! paper's; the unit tests check the three `philox4x32 10` known-answer vectors of the
//! Random123 distribution (`kat_vectors`). It passes BigCrush with margin (the authors
//! report 7 rounds suffice), and costs a few nanoseconds per 128 bits.
//!
//! Key derivation (zerofeed's own, not part of Philox): the 64-bit seed is the initial
//! key; each stream word `w` at position `i` replaces the key by the first 64 output bits
//! of `philox(counter = [w_lo, w_hi, i, DERIVE_TAG], key)`. Draws then use the counter
//! `[draw_lo, draw_hi, attempt, 0]` with the derived key. The tag in the fourth counter word
//! keeps derivation blocks and draw blocks apart, and the position word keeps `[a, b]`
//! and `[b, a]` apart. Two different streams collide only if their 64-bit derived keys
//! do, which for a pseudo-random function is a 2^-64 event per pair.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;
/// Fourth counter word of key-derivation blocks; draws use 0 there.
const DERIVE_TAG: u32 = 0x5EED_5EED;

/// The Philox4x32-10 block function: 128 bits of output for a 128-bit counter and a
/// 64-bit key.
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

fn split(x: u64) -> [u32; 2] {
    [x as u32, (x >> 32) as u32]
}

fn join(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

/// A stateless random source addressed by draw index: the key is derived once from
/// `(seed, stream)`, and `u64(draw)` is a pure function of the draw index.
///
/// `Copy` and tiny on purpose: pass it around by value, share it between threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CounterRng {
    key: [u32; 2],
}

impl CounterRng {
    /// The source for `seed` and the stream words (for example
    /// `[domain::OPS, epoch, sample_index, op_index]`).
    pub fn new(seed: u64, stream: &[u64]) -> CounterRng {
        let mut key = split(seed);
        for (position, &word) in stream.iter().enumerate() {
            let [lo, hi] = split(word);
            let out = philox4x32_10([lo, hi, position as u32, DERIVE_TAG], key);
            key = [out[0], out[1]];
        }
        CounterRng { key }
    }

    /// 128 random bits for `(draw, attempt)`; `attempt` numbers the retries of a
    /// rejection sampler so that retries stay addressable too.
    #[inline]
    fn block(&self, draw: u64, attempt: u32) -> [u32; 4] {
        let [lo, hi] = split(draw);
        philox4x32_10([lo, hi, attempt, 0], self.key)
    }

    /// 64 uniformly random bits for draw number `draw`.
    #[inline]
    pub fn u64(&self, draw: u64) -> u64 {
        let b = self.block(draw, 0);
        join(b[0], b[1])
    }

    /// A uniform float in `[0, 1)` with 53 random bits (every multiple of 2^-53 equally
    /// likely), for draw number `draw`.
    #[inline]
    pub fn uniform_f64(&self, draw: u64) -> f64 {
        (self.u64(draw) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// An unbiased integer in `[0, n)` for draw number `draw`; `0` when `n == 0`.
    ///
    /// Lemire's multiply-and-reject method (D. Lemire, "Fast Random Integer Generation in
    /// an Interval", ACM TOMACS 29(1), 2019, doi:10.1145/3230636): the high word of
    /// `x * n` is uniform once the few low words below `2^64 mod n` are rejected. Each
    /// 128-bit block gives two candidates; rejected ones move to the next `attempt`, so the
    /// result is still a pure function of `(key, draw)`.
    #[inline]
    pub fn below(&self, draw: u64, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // 2^64 mod n, computed without 128-bit division.
        let threshold = n.wrapping_neg() % n;
        let mut attempt = 0u32;
        loop {
            let b = self.block(draw, attempt);
            for x in [join(b[0], b[1]), join(b[2], b[3])] {
                let m = u128::from(x) * u128::from(n);
                if (m as u64) >= threshold {
                    return (m >> 64) as u64;
                }
            }
            // Probability of getting here is below (n / 2^64)^2: practically never, but
            // the loop keeps the result exactly uniform.
            attempt = attempt.wrapping_add(1);
        }
    }
}

/// 64 random bits for `(seed, stream)`: draw 0 of [`CounterRng::new`]`(seed, stream)`.
pub fn random_u64(seed: u64, stream: &[u64]) -> u64 {
    CounterRng::new(seed, stream).u64(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123 `kat_vectors`, the three `philox4x32 10` lines.
    #[test]
    fn philox_known_answers() {
        let cases: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
            (
                [0; 4],
                [0; 2],
                [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
            ),
            (
                [u32::MAX; 4],
                [u32::MAX; 2],
                [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
            ),
            (
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0],
                [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
            ),
        ];
        for (counter, key, want) in cases {
            assert_eq!(philox4x32_10(counter, key), want);
        }
    }

    #[test]
    fn streams_are_order_and_length_sensitive() {
        let a = random_u64(1, &[2, 3]);
        assert_ne!(a, random_u64(1, &[3, 2]));
        assert_ne!(a, random_u64(1, &[2]));
        assert_ne!(a, random_u64(1, &[2, 3, 0]));
        assert_ne!(a, random_u64(2, &[2, 3]));
        assert_eq!(a, random_u64(1, &[2, 3]));
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let rng = CounterRng::new(7, &[]);
        let mut counts = [0u32; 6];
        for draw in 0..60_000 {
            counts[rng.below(draw, 6) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
        assert_eq!(rng.below(0, 0), 0);
        assert_eq!(rng.below(0, 1), 0);
        assert!(rng.below(3, u64::MAX) < u64::MAX);
    }

    #[test]
    fn uniform_is_in_unit_interval() {
        let rng = CounterRng::new(0, &[1]);
        let mean = (0..10_000).map(|d| rng.uniform_f64(d)).sum::<f64>() / 10_000.0;
        assert!((0.48..0.52).contains(&mean), "{mean}");
        assert!((0..1000).all(|d| (0.0..1.0).contains(&rng.uniform_f64(d))));
    }
}
