//! The CPU backend: reference kernels in f32 (real work) or f64 (gradient checks), threads via rayon.

pub mod host_alloc;
pub mod matmul;
pub mod ops;

use crate::backend::{AdamWStep, Backend, NoiseNorm, ParamSlot, TokenBatch};
use crate::philox::RngStream;
use crate::Float;
use ops::AttnShape;
use rayon::prelude::*;
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
pub struct Cpu<T: Float = f32>(PhantomData<T>);

impl<T: Float> Cpu<T> {
    /// The backend; the first one made in a process also tunes the host allocator so that activation
    /// buffers are reused between steps instead of page-faulted afresh ([`host_alloc`]).
    pub fn new() -> Self {
        host_alloc::keep_freed_buffers();
        Self(PhantomData)
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

    fn name(&self) -> String {
        format!("cpu-{} ({} threads)", T::NAME, rayon::current_num_threads())
    }

    fn upload(&self, data: &[f32]) -> Vec<T> {
        data.iter().map(|&v| T::from_f32(v)).collect()
    }
    fn upload_f64(&self, data: &[f64]) -> Vec<T> {
        data.iter().map(|&v| T::from_f64(v)).collect()
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
    fn zeros(&self, len: usize) -> Vec<T> {
        vec![T::zero(); len]
    }
    fn len(&self, buf: &Vec<T>) -> usize {
        buf.len()
    }
    fn copy(&self, buf: &Vec<T>) -> Vec<T> {
        buf.clone()
    }

    fn embed_sum(&self, t: &TokenBatch<Vec<u32>>, word: &Vec<T>, pos: &Vec<T>, typ: &Vec<T>, task: Option<&Vec<T>>) -> Vec<T> {
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
        let (h, l) = (t.shape.hidden, t.shape.seq);
        ops::embed_scatter_add(dy, |i| t.ids[i] as usize, h, dword);
        ops::embed_scatter_add(dy, |i| i % l, h, dpos);
        ops::embed_scatter_add(dy, |i| t.type_ids[i] as usize, h, dtyp);
        if let Some(dtask) = dtask {
            ops::embed_scatter_add(dy, |i| t.task_ids[i] as usize, h, dtask);
        }
    }

    fn layer_norm(&self, x: &Vec<T>, res: Option<&Vec<T>>, w: &Vec<T>, b: &Vec<T>, eps: f64, cols: usize) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
        ops::layer_norm_fwd(x, res.map(|r| &r[..]), w, b, eps, cols)
    }

    fn layer_norm_bwd(&self, dy: &Vec<T>, s: &Vec<T>, w: &Vec<T>, mean: &Vec<T>, rstd: &Vec<T>, cols: usize, dw: &mut Vec<T>, db: &mut Vec<T>) -> Vec<T> {
        ops::layer_norm_bwd(dy, s, w, mean, rstd, cols, dw, db)
    }

    fn linear(&self, x: &Vec<T>, w: &Vec<T>, b: Option<&Vec<T>>, m: usize, n: usize, k: usize) -> Vec<T> {
        ops::linear_fwd(x, w, b.map(|b| &b[..]), m, n, k)
    }
    fn linear_bwd_input(&self, dy: &Vec<T>, w: &Vec<T>, m: usize, n: usize, k: usize) -> Vec<T> {
        ops::linear_bwd_input(dy, w, m, n, k)
    }
    fn linear_bwd_params(&self, dy: &Vec<T>, x: &Vec<T>, m: usize, n: usize, k: usize, dw: &mut Vec<T>, db: Option<&mut Vec<T>>) {
        ops::linear_bwd_params(dy, x, m, n, k, dw, db.map(|d| &mut d[..]))
    }

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

    fn attention(&self, a: AttnShape, q: &Vec<T>, k: &Vec<T>, v: &Vec<T>, mask: &Vec<u32>, delta: Option<&Vec<T>>, p: f32, rng: RngStream) -> (Vec<T>, Vec<T>) {
        ops::attention_fwd(a, q, k, v, mask, delta.map(|d| &d[..]), p, rng)
    }
    fn attention_bwd(&self, a: AttnShape, dctx: &Vec<T>, q: &Vec<T>, k: &Vec<T>, v: &Vec<T>, probs: &Vec<T>, p: f32, rng: RngStream, want: bool) -> (Vec<T>, Vec<T>, Vec<T>, Option<Vec<T>>) {
        ops::attention_bwd(a, dctx, q, k, v, probs, p, rng, want)
    }

    fn gather_rows(&self, x: &Vec<T>, rows: &[usize], cols: usize) -> Vec<T> {
        rows.iter().flat_map(|&r| x[r * cols..(r + 1) * cols].iter().copied()).collect()
    }
    fn scatter_rows(&self, dy: &Vec<T>, rows: &[usize], cols: usize, total_rows: usize) -> Vec<T> {
        let mut out = vec![T::zero(); total_rows * cols];
        for (i, &r) in rows.iter().enumerate() {
            for j in 0..cols {
                out[r * cols + j] += dy[i * cols + j];
            }
        }
        out
    }
    fn slice_rows(&self, x: &Vec<T>, start: usize, count: usize, cols: usize) -> Vec<T> {
        x[start * cols..(start + count) * cols].to_vec()
    }
    fn concat_rows(&self, a: &Vec<T>, b: &Vec<T>) -> Vec<T> {
        let mut out = Vec::with_capacity(a.len() + b.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        out
    }

    fn softmax_ce(&self, logits: &Vec<T>, labels: &Vec<u32>, classes: usize, s: f64) -> (Vec<f64>, Vec<T>) {
        let (l, d) = ops::softmax_ce(logits, labels, classes, s);
        (l.iter().map(|v| v.as_f64()).collect(), d)
    }
    fn sym_kl(&self, a: &Vec<T>, b: &Vec<T>, classes: usize, s: f64) -> (Vec<f64>, Vec<T>, Vec<T>) {
        let (k, da, db) = ops::sym_kl(a, b, classes, s);
        (k.iter().map(|v| v.as_f64()).collect(), da, db)
    }
    fn kl_detached(&self, a: &Vec<T>, b: &Vec<T>, classes: usize, s: f64) -> (Vec<f64>, Vec<T>) {
        let (k, db) = ops::kl_detached(a, b, classes, s);
        (k.iter().map(|v| v.as_f64()).collect(), db)
    }

    fn randn_key_masked(&self, a: AttnShape, mask: &Vec<u32>, sigma: f32, rng: RngStream) -> Vec<T> {
        let l = a.seq;
        let mut out = vec![T::zero(); a.score_len()];
        out.par_chunks_mut(l).enumerate().for_each(|(row, o)| {
            let b = row / (a.heads * l);
            for j in 0..l {
                if mask[b * l + j] != 0 {
                    o[j] = T::from_f32(sigma * rng.normal((row * l + j) as u64));
                }
            }
        });
        out
    }

    fn normalize_per_example(&self, g: &Vec<T>, batch: usize, eps: f32, norm: NoiseNorm) -> Vec<T> {
        let per = g.len() / batch;
        let mut out = vec![T::zero(); g.len()];
        out.par_chunks_mut(per).zip(g.par_chunks(per)).for_each(|(o, gi)| {
            let n = match norm {
                NoiseNorm::L2 => gi.iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>().sqrt(),
                NoiseNorm::Max => gi.iter().map(|v| v.as_f64().abs()).fold(0.0, f64::max),
            };
            // A zero gradient gives zero noise rather than NaN.
            let s = if n > 0.0 { eps as f64 / n } else { 0.0 };
            for (a, b) in o.iter_mut().zip(gi) {
                *a = T::from_f64(b.as_f64() * s);
            }
        });
        out
    }

    fn axpby(&self, y: &mut Vec<T>, a: f64, x: &Vec<T>, b: f64) {
        let (a, b) = (T::from_f64(a), T::from_f64(b));
        y.par_iter_mut().zip(x.par_iter()).for_each(|(y, &x)| *y = a * *y + b * x);
    }
    fn fill(&self, buf: &mut Vec<T>, value: f32) {
        buf.fill(T::from_f32(value));
    }
    fn sum_squares(&self, bufs: &[&Vec<T>]) -> f64 {
        // Fixed-order per-buffer sums: the same result on any thread count.
        bufs.iter()
            .map(|b| b.par_chunks(1 << 14).map(|c| c.iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>()).collect::<Vec<_>>().iter().sum::<f64>())
            .sum()
    }
    fn adamw(&self, slots: &mut [ParamSlot<'_, Vec<T>>], st: &AdamWStep) {
        let bc1 = 1.0 - st.beta1.powi(st.step as i32);
        let bc2 = 1.0 - st.beta2.powi(st.step as i32);
        for s in slots.iter_mut() {
            let lr = st.lr * s.lr_mult;
            let wd = if s.decay { st.weight_decay } else { 0.0 };
            let (p, g, m, v) = (&mut **s.param, &**s.grad, &mut **s.m, &mut **s.v);
            p.par_iter_mut().zip(g.par_iter()).zip(m.par_iter_mut()).zip(v.par_iter_mut()).for_each(|(((p, &g), m), v)| {
                // f64 arithmetic per element: the reference the GPU kernel is compared against.
                let g = g.as_f64() * st.grad_scale;
                let mn = st.beta1 * m.as_f64() + (1.0 - st.beta1) * g;
                let vn = st.beta2 * v.as_f64() + (1.0 - st.beta2) * g * g;
                let mut pv = p.as_f64();
                pv -= lr * wd * pv;
                pv -= lr * (mn / bc1) / ((vn / bc2).sqrt() + st.eps);
                *m = T::from_f64(mn);
                *v = T::from_f64(vn);
                *p = T::from_f64(pv);
            });
        }
    }
}
