//! The scalar types the CPU backend computes in: f32 for real work, f64 for gradient checks.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

pub trait Float:
    num_traits::Float + Copy + Send + Sync + Default + Debug + Sum + AddAssign + SubAssign + MulAssign + 'static
{
    const NAME: &'static str;
    fn from_f32(x: f32) -> Self;
    fn from_f64(x: f64) -> Self;
    fn as_f32(self) -> f32;
    fn as_f64(self) -> f64;
    fn erf(self) -> Self;
    /// `exp` for the hot loops (softmax, GELU'): a branch-free polynomial that vectorises in f32
    /// (within 2 ulp), the exact libm function in f64 (the reference for gradient checks).
    fn exp_fast(self) -> Self;
    #[inline(always)]
    fn c(x: f64) -> Self {
        Self::from_f64(x)
    }
}

impl Float for f32 {
    const NAME: &'static str = "f32";
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn as_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn erf(self) -> Self {
        erf_f32(self)
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        exp_f32(self)
    }
}

impl Float for f64 {
    const NAME: &'static str = "f64";
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x as f64
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn as_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erf(self)
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp()
    }
}

/// Branch-free f32 `exp` (Cephes `expf` range reduction and polynomial), so loops over it vectorise.
/// Inputs below -87.3 give ~0 (never NaN), above 88.7 clamp to ~1.7e38.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the coefficients as published
pub fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.33654, 88.72283);
    // Round to nearest with the 1.5 * 2^23 trick: unlike f32::round it compiles to vector adds.
    const MAGIC: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    // The same integer read from t's mantissa bits (t = 1.5 * 2^23 + n exactly): `n as i32` would be a
    // saturating conversion, which LLVM leaves scalar, and the whole loop with it.
    let ni = t.to_bits() as i32 - 0x4B40_0000;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * r * r + r + 1.0;
    // 2^n through the exponent bits; n is in [-126, 128] after the clamp.
    let scale = f32::from_bits(((ni + 127).clamp(1, 254) as u32) << 23);
    y * scale * if n > 127.0 { 2.0 } else { 1.0 }
}

/// Branch-free f32 `erf`: the rational approximation used by Eigen and XLA (a few ulp on [-4, 4];
/// |erf| rounds to 1 beyond).
#[inline(always)]
#[allow(clippy::excessive_precision)] // the coefficients as published
pub fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_600e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_2e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// Sum with 8 independent accumulators: vectorises (a serial float sum cannot be reordered by the
/// compiler) and is still a fixed order, so deterministic.
#[inline]
pub fn sum_lanes<T: Float>(x: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in rest {
        s += v;
    }
    s
}

/// `sum_i a_i * b_i` with 8 independent accumulators (see [`sum_lanes`]).
#[inline]
pub fn dot_lanes<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let n = a.len().min(b.len());
    let full = n / 8 * 8;
    for (ca, cb) in a[..full].chunks_exact(8).zip(b[..full].chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += ca[k] * cb[k];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for i in full..n {
        s += a[i] * b[i];
    }
    s
}

/// Maximum of `x[i]` over the `i` where `weight[i] > 0` (the real keys of an attention row), with 8
/// independent lanes; `-inf` when there is none.
#[inline]
pub fn max_lanes_where<T: Float>(x: &[T], weight: &[T]) -> T {
    let mut acc = [T::neg_infinity(); 8];
    let n = x.len().min(weight.len());
    let full = n / 8 * 8;
    for (c, w) in x[..full].chunks_exact(8).zip(weight[..full].chunks_exact(8)) {
        for k in 0..8 {
            acc[k] = if (w[k] > T::zero()) & (c[k] > acc[k]) { c[k] } else { acc[k] };
        }
    }
    let mut m = acc.iter().copied().fold(T::neg_infinity(), T::max);
    for i in full..n {
        if weight[i] > T::zero() {
            m = m.max(x[i]);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_and_erf_are_accurate() {
        let mut worst_exp = 0.0f64;
        let mut worst_erf = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let e = exp_f32(x) as f64;
            let want = (x as f64).exp();
            worst_exp = worst_exp.max((e - want).abs() / want);
            x += 0.0137;
        }
        let mut x = -6.0f32;
        while x < 6.0 {
            let want = libm::erf(x as f64);
            worst_erf = worst_erf.max((erf_f32(x) as f64 - want).abs());
            x += 0.000_37;
        }
        assert!(worst_exp < 3e-7, "exp rel err {worst_exp:e}");
        assert!(worst_erf < 5e-7, "erf abs err {worst_erf:e}");
        assert_eq!(exp_f32(-1000.0), exp_f32(-87.33654));
        assert!(exp_f32(-1000.0) < 1e-37 && exp_f32(f32::NEG_INFINITY) >= 0.0);
    }
}
