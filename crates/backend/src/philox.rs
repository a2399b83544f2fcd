//! Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"), the counter-based RNG
//! behind every dropout mask and noise draw. The value for element `i` of stream `s` depends only on
//! (seed, s, i), so masks are identical for any thread count and on any device (the CUDA kernels use the
//! same function, see kernels/common.cuh).

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// One Philox4x32-10 block: 4 random words from a 128-bit counter and a 64-bit key.
#[inline]
pub fn philox4x32(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (ctr, key);
    for _ in 0..10 {
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

/// `N` Philox blocks at once, in structure-of-arrays form so that the compiler vectorises the rounds
/// (32x32->64 multiplies map to `vpmuludq`; 16 lanes fill AVX-512 registers, two AVX2 ones). Block `j`
/// uses counter `(b0 + j, stream)`; same results as `N` calls of [`philox4x32`]. Returns word `k` of
/// block `j` at `[k][j]`.
#[inline(always)]
pub fn philox4x32_xn<const N: usize>(b0: u64, stream: u64, key: [u32; 2]) -> [[u32; N]; 4] {
    let mut c0 = [0u32; N];
    let mut c1 = [0u32; N];
    for j in 0..N {
        let b = b0 + j as u64;
        c0[j] = b as u32;
        c1[j] = (b >> 32) as u32;
    }
    let mut c2 = [stream as u32; N];
    let mut c3 = [(stream >> 32) as u32; N];
    let (mut k0, mut k1) = (key[0], key[1]);
    for _ in 0..10 {
        let mut n0 = [0u32; N];
        let mut n1 = [0u32; N];
        let mut n2 = [0u32; N];
        let mut n3 = [0u32; N];
        for j in 0..N {
            let p0 = (M0 as u64) * (c0[j] as u64);
            let p1 = (M1 as u64) * (c2[j] as u64);
            n0[j] = (p1 >> 32) as u32 ^ c1[j] ^ k0;
            n1[j] = p1 as u32;
            n2[j] = (p0 >> 32) as u32 ^ c3[j] ^ k1;
            n3[j] = p0 as u32;
        }
        (c0, c1, c2, c3) = (n0, n1, n2, n3);
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    [c0, c1, c2, c3]
}

/// A random stream: `seed` is the run's seed, `stream` names one use (step, layer, site, pass).
/// `offset` is where a buffer starts in the stream's index space: a forward over rows `r0..r0+n` of a
/// larger batch sets it so that its masks are exactly those rows' masks in the full batch (R-Drop's one
/// 2B forward equals two B forwards; micro-batches equal the whole batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RngStream {
    pub seed: u64,
    pub stream: u64,
    pub offset: u64,
}

impl RngStream {
    pub fn new(seed: u64, stream: u64) -> Self {
        Self { seed, stream, offset: 0 }
    }

    /// The same stream seen from index `offset` on.
    pub fn with_offset(self, offset: u64) -> Self {
        Self { offset, ..self }
    }

    /// A derived stream for a sub-site, mixed so that nearby ids do not collide (offset 0).
    pub fn derive(self, site: u64) -> Self {
        let mut z = self.stream ^ site.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self { seed: self.seed, stream: z ^ (z >> 31), offset: 0 }
    }

    /// The random 32-bit word for element `i` of this stream (after the offset).
    #[inline]
    pub fn word(&self, i: u64) -> u32 {
        let i = i + self.offset;
        let block = i >> 2;
        let ctr = [block as u32, (block >> 32) as u32, self.stream as u32, (self.stream >> 32) as u32];
        philox4x32(ctr, [self.seed as u32, (self.seed >> 32) as u32])[(i & 3) as usize]
    }

    /// The four words of absolute block `b` (stream elements 4b..4b+3, offset not applied): kernels that
    /// walk contiguous runs use this when `offset + start` is a multiple of 4.
    #[inline]
    pub fn block(&self, b: u64) -> [u32; 4] {
        let ctr = [b as u32, (b >> 32) as u32, self.stream as u32, (self.stream >> 32) as u32];
        philox4x32(ctr, [self.seed as u32, (self.seed >> 32) as u32])
    }

    /// The words of stream elements `4*b0 .. 4*(b0 + N)` (`N` blocks, offset not applied) through the
    /// vectorised generator: element `4*(b0 + j) + k` is at `[k][j]`.
    #[inline(always)]
    pub fn blocks<const N: usize>(&self, b0: u64) -> [[u32; N]; 4] {
        philox4x32_xn::<N>(b0, self.stream, [self.seed as u32, (self.seed >> 32) as u32])
    }

    /// `out[k] = self.word(start + k)` for every `k`, through the vectorised generator: one Philox block
    /// gives four consecutive elements, where `word` computes a whole block for each. Any `start` and
    /// offset (blocks that straddle either end are computed whole and partly used).
    pub fn words(&self, start: u64, out: &mut [u32]) {
        const BLOCKS: usize = 16;
        let first = start + self.offset;
        let end = first + out.len() as u64;
        let mut b0 = first / 4;
        while 4 * b0 < end {
            let w = self.blocks::<BLOCKS>(b0);
            let lo = first.max(4 * b0);
            let hi = end.min(4 * (b0 + BLOCKS as u64));
            for e in lo..hi {
                out[(e - first) as usize] = w[(e % 4) as usize][(e / 4 - b0) as usize];
            }
            b0 += BLOCKS as u64;
        }
    }

    /// Uniform in [0, 1) with 24 random bits (exact in f32).
    #[inline]
    pub fn uniform(&self, i: u64) -> f32 {
        to_uniform(self.word(i))
    }

    /// Standard normal by Box-Muller from elements 2i and 2i+1 ([`box_muller`]; [`RngStream::words`]
    /// gives many at once).
    pub fn normal(&self, i: u64) -> f32 {
        box_muller(self.word(2 * i), self.word(2 * i + 1))
    }
}

/// The standard normal of two random words (elements 2i and 2i+1 of a stream for normal i).
#[inline]
pub fn box_muller(w1: u32, w2: u32) -> f32 {
    let u1 = (to_uniform(w1) as f64).max(1e-12);
    let u2 = to_uniform(w2) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

#[inline]
pub fn to_uniform(w: u32) -> f32 {
    (w >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Dropout keeps element `i` when its uniform draw is at or above `p`.
#[inline]
pub fn keep(rng: &RngStream, i: u64, p: f32) -> bool {
    rng.uniform(i) >= p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answer() {
        // Random123 known-answer vectors for philox4x32_10.
        assert_eq!(philox4x32([0, 0, 0, 0], [0, 0]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(philox4x32([0xffffffff; 4], [0xffffffff; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
        assert_eq!(
            philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn wide_philox_equals_scalar() {
        let r = RngStream::new(0xDEAD_BEEF_1234, 77);
        let (w8, w16) = (r.blocks::<8>(1000), r.blocks::<16>(1000));
        for j in 0..16 {
            for k in 0..4 {
                let scalar = r.word(4000 + 4 * j as u64 + k as u64);
                assert_eq!(w16[k][j], scalar);
                if j < 8 {
                    assert_eq!(w8[k][j], scalar);
                }
            }
        }
    }

    #[test]
    fn words_equal_word_for_any_start_offset_and_length() {
        for offset in [0u64, 1, 2, 3, 6, 1 << 33] {
            let r = RngStream::new(0x1234_5678_9ABC, 5).with_offset(offset);
            // Lengths around the generator's 16-block (64-word) chunks, starts on and off block bounds.
            for (start, len) in [(0u64, 0usize), (0, 1), (1, 3), (3, 64), (2, 65), (5, 130), (4096, 256), (7, 300)] {
                let mut got = vec![0u32; len];
                r.words(start, &mut got);
                let want: Vec<u32> = (0..len as u64).map(|k| r.word(start + k)).collect();
                assert_eq!(got, want, "offset {offset}, start {start}, len {len}");
            }
        }
        let r = RngStream::new(9, 3);
        let mut w = vec![0u32; 10];
        r.words(2 * 40, &mut w);
        assert_eq!(box_muller(w[0], w[1]).to_bits(), r.normal(40).to_bits());
    }

    #[test]
    fn uniform_mean_and_streams_differ() {
        let a = RngStream::new(7, 1);
        let b = a.derive(2);
        let n = 100_000;
        let mean: f64 = (0..n).map(|i| a.uniform(i) as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let same = (0..1000).filter(|&i| a.word(i) == b.word(i)).count();
        assert!(same < 3);
        let nm: f64 = (0..n).map(|i| a.normal(i) as f64).sum::<f64>() / n as f64;
        let nv: f64 = (0..n).map(|i| (a.normal(i) as f64).powi(2)).sum::<f64>() / n as f64;
        assert!(nm.abs() < 0.02 && (nv - 1.0).abs() < 0.03, "{nm} {nv}");
    }
}
