//! Shared by the GPU tests: the two backends (fp32 and bf16) made once per test binary, the SKIPPED
//! protocol when there is no GPU, random data from the project's own Philox, and the comparisons.
#![allow(dead_code)]

use ernie_backend::RngStream;
use ernie_cuda::{CudaBackend, Precision};
use ernie_testkit::skipped;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::sync::OnceLock;

// Tolerances, as ||got - ref|| / ||ref|| against the f64 CPU reference (Cpu<f64>) on the same fp32 inputs.
//
// fp32 elementwise ops: a few correctly rounded operations, or erff/expf/tanhf/logf (<= 2 ulp), per
// element: about 1e-7 relative; 1e-5 leaves two orders of magnitude.
pub const F32_ELEM: f64 = 1e-5;
// fp32 reductions and GEMMs: sums of up to a few hundred terms in another order than the reference, cuBLAS
// in true fp32 (CUBLAS_COMPUTE_32F, no TF32): error grows like sqrt(k) * 6e-8, ~1e-6, a little more through
// the softmax backward's p (dp - dot). 1e-4 is still under the ~3e-4 TF32 would give, so an accidental TF32
// path fails.
pub const F32_RED: f64 = 1e-4;
// bf16 storage of the output only: one rounding to 8 significant bits, <= 2^-9 = 2e-3 relative per element,
// ~1.5e-3 in norm; 1e-2.
pub const BF16_ELEM: f64 = 1e-2;
// bf16 GEMM operands (each rounded, fp32 accumulation) and bf16 intermediates in chains of two or three
// products (LayerNorm and linear backward, attention forward): ~0.5-1% in norm (METHOD.md: bf16 operands
// land between 1e-3 and 1e-2); 3e-2.
pub const BF16_CHAIN: f64 = 3e-2;
// The attention backward in bf16: probabilities, their dropped copy and d(scores) are all stored in bf16
// and pass through three more bf16 products, and p (dp - dot) cancels; 5e-2.
pub const BF16_ATTN_BWD: f64 = 5e-2;

pub struct Gpus {
    pub f32: CudaBackend,
    pub bf16: CudaBackend,
    /// The host emulation (ernie_cuda::emu) rather than a GPU: slow, so fewer cases.
    pub emulated: bool,
}

impl Gpus {
    pub fn both(&self) -> [(&CudaBackend, Precision); 2] {
        [(&self.f32, Precision::F32), (&self.bf16, Precision::Bf16)]
    }
    /// Proptest cases: as asked on a GPU, a quarter (at least 3) under emulation.
    pub fn cases(&self, n: u32) -> u32 {
        if self.emulated {
            (n / 4).max(3)
        } else {
            n
        }
    }
}

static GPUS: OnceLock<Result<Gpus, String>> = OnceLock::new();
static EMULATED: OnceLock<Result<Gpus, String>> = OnceLock::new();

/// Runs `f` on the GPU backends, or prints `SKIPPED (no CUDA GPU): <test>`; then on the host emulation of
/// the kernels (ERNIE_FT_SKIP_EMULATION=1 turns that off), or prints why it cannot.
pub fn on_backends(test: &str, f: impl Fn(&Gpus)) {
    if let Some(g) = gpus(test) {
        f(g);
    }
    if std::env::var("ERNIE_FT_SKIP_EMULATION").map(|v| v == "1").unwrap_or(false) {
        return;
    }
    let r = EMULATED.get_or_init(|| {
        let f32 = CudaBackend::emulated(Precision::F32).map_err(|e| e.to_string())?;
        let bf16 = CudaBackend::emulated(Precision::Bf16).map_err(|e| e.to_string())?;
        Ok(Gpus { f32, bf16, emulated: true })
    });
    match r {
        Ok(g) => f(g),
        Err(e) => skipped!("SKIPPED (host emulation unavailable): {test} ({e})"),
    }
}

/// Both backends, or None after printing `SKIPPED (no CUDA GPU): <test>` to stderr.
pub fn gpus(test: &str) -> Option<&'static Gpus> {
    let r = GPUS.get_or_init(|| {
        let f32 = CudaBackend::with_precision(0, Precision::F32).map_err(|e| e.to_string())?;
        let bf16 = CudaBackend::with_precision(0, Precision::Bf16).map_err(|e| e.to_string())?;
        Ok(Gpus { f32, bf16, emulated: false })
    });
    match r {
        Ok(g) => Some(g),
        Err(e) => {
            skipped!("SKIPPED (no CUDA GPU): {test} ({e})");
            None
        }
    }
}

/// Runs `f` on `cases` random inputs. The case sequence is deterministic (a fixed ChaCha seed), so CI sees
/// the same shapes every run; ERNIE_FT_PROPTEST_RANDOM=1 draws fresh cases instead.
pub fn check<S: Strategy>(cases: u32, strategy: S, f: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = if std::env::var("ERNIE_FT_PROPTEST_RANDOM").map(|v| v == "1").unwrap_or(false) {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    };
    if let Err(e) = runner.run(&strategy, f) {
        panic!("{e}");
    }
}

/// n values uniform in [-scale, scale), from Philox stream (seed, k).
pub fn data(seed: u64, k: u64, n: usize, scale: f32) -> Vec<f32> {
    let r = RngStream::new(seed, k);
    (0..n as u64).map(|i| (r.uniform(i) * 2.0 - 1.0) * scale).collect()
}

/// n integers below `below`.
pub fn ints(seed: u64, k: u64, n: usize, below: u32) -> Vec<u32> {
    let r = RngStream::new(seed, k);
    (0..n as u64).map(|i| r.word(i) % below.max(1)).collect()
}

pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum::<f64>().sqrt();
    let den: f64 = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// Root mean square.
pub fn rms(v: &[f32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    (v.iter().map(|&x| x as f64 * x as f64).sum::<f64>() / v.len() as f64).sqrt()
}

/// As [`close`], for outputs that can cancel to near zero (a LayerNorm mean, the softmax backward, a
/// confident loss): the error is measured against max(||ref||, typical * sqrt(n)), `typical` being the size
/// an element has without cancellation, from the inputs' magnitudes. Rounding errors scale with the
/// operands, not with the cancelled result.
pub fn close_floor(what: &str, got: &[f32], want: &[f64], tol: f64, typical: f64) -> Result<(), TestCaseError> {
    let floor = typical * (want.len() as f64).sqrt();
    let norm: f64 = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    if norm >= floor || floor == 0.0 {
        return close(what, got, want, tol);
    }
    close(what, got, want, tol * floor / norm.max(f64::MIN_POSITIVE))
}

pub fn close(what: &str, got: &[f32], want: &[f64], tol: f64) -> Result<(), TestCaseError> {
    if got.len() != want.len() {
        return Err(TestCaseError::fail(format!("{what}: length {} vs reference {}", got.len(), want.len())));
    }
    if let Some(i) = got.iter().position(|v| !v.is_finite()) {
        return Err(TestCaseError::fail(format!("{what}: element {i} is {} (reference {})", got[i], want[i])));
    }
    let e = rel_err(got, want);
    if e > tol {
        let (i, d) = got
            .iter()
            .zip(want)
            .map(|(&g, &w)| (g as f64 - w).abs())
            .enumerate()
            .fold((0, 0.0), |a, (i, d)| if d > a.1 { (i, d) } else { a });
        return Err(TestCaseError::fail(format!(
            "{what}: relative error {e:.3e} > {tol:.1e} (worst element {i}: got {}, reference {}, |diff| {d:.3e})",
            got[i], want[i]
        )));
    }
    Ok(())
}

pub fn close64(what: &str, got: &[f64], want: &[f64], tol: f64, typical: f64) -> Result<(), TestCaseError> {
    let g: Vec<f32> = got.iter().map(|&x| x as f32).collect();
    close_floor(what, &g, want, tol, typical)
}

/// Bit-identical (NaN never passes).
pub fn exact(what: &str, got: &[f32], want: &[f32]) -> Result<(), TestCaseError> {
    if got.len() != want.len() {
        return Err(TestCaseError::fail(format!("{what}: length {} vs reference {}", got.len(), want.len())));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g.to_bits() != w.to_bits() || g.is_nan() {
            return Err(TestCaseError::fail(format!(
                "{what}: element {i}: got {g:e} ({:#x}), reference {w:e} ({:#x})",
                g.to_bits(),
                w.to_bits()
            )));
        }
    }
    Ok(())
}

/// Same zero pattern (dropout masks, padded keys).
pub fn same_zeros(what: &str, got: &[f32], want: &[f64]) -> Result<(), TestCaseError> {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if (*g == 0.0) != (*w == 0.0) {
            return Err(TestCaseError::fail(format!(
                "{what}: element {i}: got {g}, reference {w} (zero pattern differs)"
            )));
        }
    }
    Ok(())
}

pub fn tol(p: Precision, f32_tol: f64, bf16_tol: f64) -> f64 {
    match p {
        Precision::F32 => f32_tol,
        Precision::Bf16 => bf16_tol,
    }
}
