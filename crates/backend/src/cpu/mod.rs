//! The CPU backend: reference kernels in f32 (real work) or f64 (gradient checks), threads via rayon. The
//! `Backend` methods below call the kernels of [`ops`] (one file per op family).

pub mod buffer;
pub mod host_alloc;
mod lanes;
pub mod matmul;
pub mod ops;

use crate::backend::{AdamWStep, AttnShape, Backend, Clip, NoiseNorm, ParamSlot, TokenBatch, MAX_COMBINE_TERMS};
use crate::philox::RngStream;
use crate::Float;
use std::marker::PhantomData;

/// The class of this host as far as the CPU kernels' last bits go: `gemm` runs AVX-512 microkernels where
/// the CPU has them and AVX2/FMA ones elsewhere, and the two sum in different orders. Results are
/// bit-identical within one class and differ in the last bits between classes, so anything that pins or
/// compares numbers across runs (tests, experiment cells) records and compares this.
pub fn simd_class() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "x86_64-avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "x86_64-avx2";
        }
        "x86_64"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH
    }
}

/// CPU backend computing in `T`.
#[derive(Clone, Copy, Debug)]
pub struct Cpu<T: Float = f32> {
    part_tokens: Option<usize>,
    weight_layout: WeightLayout,
    _float: PhantomData<T>,
}

/// How the CPU lays out linear weights for inference ([`Backend::prepare_linear`]); every choice computes
/// the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// Transposed where that measured faster on this host ([`ops::transposed_weight_pays`]).
    Auto,
    /// Every weight as it is (PyTorch's `[out, in]`).
    AsIs,
    /// Every weight transposed: the prepared path on any host (tests).
    Transposed,
}

/// Tokens per part of an inference batch on the CPU ([`Backend::inference_part_tokens`]): at 512 a part's
/// largest activation (its feed-forward block: 512 x 1536 floats at e5-small, 3 MB) stays in the caches.
/// Measured with `bench_cpu infer` (batch 32 x 128, e5-small, AVX2 host, 2 threads, nothing else running):
/// parts of 256 / 512 / 1,024 tokens ran 26.2-27.3 / 27.8-28.0 / 25.7-26.5 samples/s against 25.1 for
/// one part per lane (2,048 tokens).
pub const INFERENCE_PART_TOKENS: usize = 512;

impl<T: Float> Cpu<T> {
    /// The backend; the first one made in a process also tunes the host allocator so that activation
    /// buffers are reused between steps instead of page-faulted afresh ([`host_alloc`]).
    pub fn new() -> Self {
        host_alloc::keep_freed_buffers();
        Self { part_tokens: Some(INFERENCE_PART_TOKENS), weight_layout: WeightLayout::Auto, _float: PhantomData }
    }

    /// The same backend with inference batches cut into parts of about `tokens` tokens (`None`: one part
    /// per lane). Every row computes the same numbers whatever the parts (tests/inference_lanes.rs).
    pub fn with_inference_part_tokens(self, tokens: Option<usize>) -> Self {
        Self { part_tokens: tokens, ..self }
    }

    /// The same backend with inference's linear weights laid out as `layout` says (tests/inference_lanes.rs
    /// checks that every layout gives the same numbers).
    pub fn with_weight_layout(self, layout: WeightLayout) -> Self {
        Self { weight_layout: layout, ..self }
    }
}

impl<T: Float> Default for Cpu<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Backend for Cpu<T> {
    type Buf = Vec<T>;
    type Ids = Vec<u32>;
    type Stats = Vec<f64>;

    fn name(&self) -> String {
        format!("cpu-{} ({} threads)", T::NAME, rayon::current_num_threads())
    }

    // ----------------------------------------------------------------- lanes
    fn inference_lanes(&self) -> usize {
        rayon::current_num_threads()
    }
    fn inference_part_tokens(&self) -> Option<usize> {
        self.part_tokens
    }
    fn run_lanes<R: Send>(&self, n: usize, job: &(dyn Fn(usize) -> R + Sync)) -> Vec<R> {
        lanes::run(n, job)
    }

    // ----------------------------------------------------------------- copy: memory
    fn upload(&self, data: &[f32]) -> Vec<T> {
        data.iter().map(|&v| T::from_f32(v)).collect()
    }
    fn download(&self, buf: &Vec<T>) -> Vec<f32> {
        buf.iter().map(|v| v.as_f32()).collect()
    }
    fn download_f64(&self, buf: &Vec<T>) -> Vec<f64> {
        buf.iter().map(|v| v.as_f64()).collect()
    }
    fn upload_ids(&self, ids: &[u32]) -> Vec<u32> {
        ids.to_vec()
    }
    fn upload_ids_many(&self, parts: &[&[u32]]) -> Vec<Vec<u32>> {
        parts.iter().map(|p| p.to_vec()).collect()
    }
    fn zeros(&self, len: usize) -> Vec<T> {
        buffer::zeroed(len)
    }
    fn len(&self, buf: &Vec<T>) -> usize {
        buf.len()
    }
    fn copy(&self, buf: &Vec<T>) -> Vec<T> {
        buf.clone()
    }

    // ----------------------------------------------------------------- embedding
    fn embed_sum(
        &self,
        t: &TokenBatch<Vec<u32>>,
        word: &Vec<T>,
        pos: &Vec<T>,
        typ: &Vec<T>,
        task: Option<&Vec<T>>,
    ) -> Vec<T> {
        ops::embed_sum_fwd(t.shape, word, pos, typ, task.map(|v| &v[..]), &t.ids, &t.type_ids, &t.task_ids)
    }
    fn embed_sum_bwd(
        &self,
        t: &TokenBatch<Vec<u32>>,
        dy: &Vec<T>,
        dword: &mut Vec<T>,
        dpos: &mut Vec<T>,
        dtyp: &mut Vec<T>,
        dtask: Option<&mut Vec<T>>,
    ) {
        ops::embed_sum_bwd(t.shape, dy, &t.ids, &t.type_ids, &t.task_ids, dword, dpos, dtyp, dtask.map(|d| &mut d[..]))
    }

    // ----------------------------------------------------------------- layernorm
    fn layer_norm(
        &self,
        x: &Vec<T>,
        res: Option<&Vec<T>>,
        w: &Vec<T>,
        b: &Vec<T>,
        eps: f64,
        cols: usize,
    ) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
        ops::layer_norm_fwd(x, res.map(|r| &r[..]), w, b, eps, cols)
    }
    fn layer_norm_bwd(
        &self,
        dy: &Vec<T>,
        s: &Vec<T>,
        w: &Vec<T>,
        mean: &Vec<T>,
        rstd: &Vec<T>,
        cols: usize,
        dw: &mut Vec<T>,
        db: &mut Vec<T>,
    ) -> Vec<T> {
        ops::layer_norm_bwd(dy, s, w, mean, rstd, cols, dw, db)
    }

    // ----------------------------------------------------------------- linear
    fn linear(&self, x: &Vec<T>, w: &Vec<T>, b: Option<&Vec<T>>, m: usize, n: usize, k: usize) -> Vec<T> {
        ops::linear_fwd(x, w, b.map(|b| &b[..]), m, n, k)
    }
    fn prepare_linear(&self, w: &Vec<T>, n: usize, k: usize) -> Option<Vec<T>> {
        let transpose = match self.weight_layout {
            WeightLayout::Auto => ops::transposed_weight_pays(n, k),
            WeightLayout::AsIs => false,
            WeightLayout::Transposed => true,
        };
        transpose.then(|| ops::transpose(w, n, k))
    }
    #[allow(clippy::too_many_arguments)]
    fn linear_prepared(
        &self,
        x: &Vec<T>,
        w: &Vec<T>,
        wt: &Vec<T>,
        b: Option<&Vec<T>>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Vec<T> {
        let b = b.map(|b| &b[..]);
        if ops::transposed_weight_same_bits(m, n, k) {
            ops::linear_fwd_wt(x, wt, b, m, n, k)
        } else {
            ops::linear_fwd(x, w, b, m, n, k)
        }
    }
    fn linear_bwd_input(&self, dy: &Vec<T>, w: &Vec<T>, m: usize, n: usize, k: usize) -> Vec<T> {
        ops::linear_bwd_input(dy, w, m, n, k)
    }
    fn linear_bwd_params(
        &self,
        dy: &Vec<T>,
        x: &Vec<T>,
        m: usize,
        n: usize,
        k: usize,
        dw: &mut Vec<T>,
        db: Option<&mut Vec<T>>,
    ) {
        ops::linear_bwd_params(dy, x, m, n, k, dw, db.map(|d| &mut d[..]))
    }

    // ----------------------------------------------------------------- activation (and dropout)
    fn gelu(&self, x: &Vec<T>) -> Vec<T> {
        ops::gelu_fwd(x)
    }
    fn gelu_bwd(&self, dy: &Vec<T>, x: &Vec<T>) -> Vec<T> {
        ops::gelu_bwd(dy, x)
    }
    fn tanh(&self, x: &Vec<T>) -> Vec<T> {
        ops::tanh_fwd(x)
    }
    fn tanh_bwd(&self, dy: &Vec<T>, y: &Vec<T>) -> Vec<T> {
        ops::tanh_bwd(dy, y)
    }
    fn dropout(&self, x: &Vec<T>, p: f32, rng: RngStream) -> Vec<T> {
        ops::dropout(x, p, rng)
    }

    // ----------------------------------------------------------------- attention
    fn attention(
        &self,
        a: AttnShape,
        q: &Vec<T>,
        k: &Vec<T>,
        v: &Vec<T>,
        mask: &Vec<u32>,
        delta: Option<&Vec<T>>,
        p: f32,
        rng: RngStream,
    ) -> (Vec<T>, Vec<T>) {
        ops::attention_fwd(a, q, k, v, mask, delta.map(|d| &d[..]), p, rng)
    }
    fn attention_infer(&self, a: AttnShape, q: &Vec<T>, k: &Vec<T>, v: &Vec<T>, mask: &Vec<u32>) -> Vec<T> {
        ops::attention_infer(a, q, k, v, mask)
    }
    fn attention_bwd(
        &self,
        a: AttnShape,
        dctx: &Vec<T>,
        q: &Vec<T>,
        k: &Vec<T>,
        v: &Vec<T>,
        probs: &Vec<T>,
        p: f32,
        rng: RngStream,
        want: bool,
    ) -> (Vec<T>, Vec<T>, Vec<T>, Option<Vec<T>>) {
        ops::attention_bwd(a, dctx, q, k, v, probs, p, rng, want)
    }

    // ----------------------------------------------------------------- copy: rows
    fn gather_rows(&self, x: &Vec<T>, rows: &[usize], cols: usize) -> Vec<T> {
        ops::gather_rows(x, rows, cols)
    }
    fn scatter_rows(&self, dy: &Vec<T>, rows: &[usize], cols: usize, total_rows: usize) -> Vec<T> {
        ops::scatter_rows(dy, rows, cols, total_rows)
    }
    fn slice_rows(&self, x: &Vec<T>, start: usize, count: usize, cols: usize) -> Vec<T> {
        ops::slice_rows(x, start, count, cols)
    }
    fn concat_rows(&self, a: &Vec<T>, b: &Vec<T>) -> Vec<T> {
        ops::concat_rows(a, b)
    }

    // ----------------------------------------------------------------- loss
    fn softmax_ce(&self, logits: &Vec<T>, labels: &Vec<u32>, classes: usize, s: f64) -> (Vec<T>, Vec<T>) {
        ops::softmax_ce(logits, labels, classes, s)
    }
    fn sym_kl(&self, a: &Vec<T>, b: &Vec<T>, classes: usize, s: f64) -> (Vec<T>, Vec<T>, Vec<T>) {
        ops::sym_kl(a, b, classes, s)
    }
    fn kl_detached(&self, a: &Vec<T>, b: &Vec<T>, classes: usize, s: f64) -> (Vec<T>, Vec<T>) {
        ops::kl_detached(a, b, classes, s)
    }

    // ----------------------------------------------------------------- noise (adversarial)
    fn randn_key_masked(&self, a: AttnShape, mask: &Vec<u32>, sigma: f32, rng: RngStream) -> Vec<T> {
        ops::randn_key_masked(a, mask, sigma, rng)
    }
    fn normalize_per_example(&self, g: &Vec<T>, batch: usize, eps: f32, norm: NoiseNorm) -> Vec<T> {
        ops::normalize_per_example(g, batch, eps, norm)
    }

    // ----------------------------------------------------------------- vector
    fn axpby(&self, y: &mut Vec<T>, a: f64, x: &Vec<T>, b: f64) {
        ops::axpby(y, a, x, b)
    }
    fn fill(&self, buf: &mut Vec<T>, value: f32) {
        buf.fill(T::from_f32(value));
    }
    fn sum_squares(&self, bufs: &[&Vec<T>], stats: &mut Vec<f64>, slot: usize) {
        stats[slot] = ops::sum_squares(&bufs.iter().map(|b| &b[..]).collect::<Vec<_>>());
    }

    // ----------------------------------------------------------------- stats
    fn stats_zeros(&self, len: usize) -> Vec<f64> {
        vec![0.0; len]
    }
    fn stats_upload(&self, values: &[f64]) -> Vec<f64> {
        values.to_vec()
    }
    fn stats_download(&self, stats: &Vec<f64>) -> Vec<f64> {
        stats.clone()
    }
    fn stats_mean(&self, stats: &mut Vec<f64>, slot: usize, rows: &Vec<T>, scale: f64, divisor: f64) {
        stats[slot] = ops::stats_mean(rows, scale, divisor);
    }
    fn stats_correct(
        &self,
        stats: &mut Vec<f64>,
        slot: usize,
        logits: &Vec<T>,
        labels: &Vec<u32>,
        rows: usize,
        classes: usize,
    ) {
        stats[slot] = ops::count_correct(logits, labels, rows, classes) as f64;
    }
    fn stats_combine(&self, stats: &mut Vec<f64>, dst: usize, terms: &[(f64, usize)]) {
        assert!(terms.len() <= MAX_COMBINE_TERMS, "stats_combine: {} terms, at most {MAX_COMBINE_TERMS}", terms.len());
        stats[dst] = ops::combine(stats, terms);
    }
    fn clip_scale(&self, stats: &mut Vec<f64>, clip: &Clip) {
        ops::clip_scale(stats, clip)
    }

    // ----------------------------------------------------------------- adamw
    fn adamw(&self, slots: &mut [ParamSlot<'_, Vec<T>>], st: &AdamWStep, stats: &Vec<f64>) {
        ops::adamw(slots, st, stats[st.scale_slot])
    }
}
