//! `ernie_backend::Backend` for [`CudaBackend`]: each method calls its op family in [`crate::ops`] (one file
//! per kernel source), as the CPU backend calls `ernie_backend::cpu::ops`. Construction is in
//! [`crate::device`].

use crate::buf::{CudaBuf, CudaIds, CudaStats, DType};
use crate::ops::{activation, adamw, attention, copy, embedding, layernorm, linear, loss, noise, stats, vector};
use crate::CudaBackend;
use ernie_backend::{AdamWStep, AttnShape, Backend, Clip, NoiseNorm, ParamSlot, RngStream, TokenBatch};

impl Backend for CudaBackend {
    type Buf = CudaBuf;
    type Ids = CudaIds;
    type Stats = CudaStats;

    fn name(&self) -> String {
        self.describe()
    }

    // ------------------------------------------------------------------ memory
    fn upload(&self, data: &[f32]) -> CudaBuf {
        copy::upload(self, data)
    }
    fn download(&self, buf: &CudaBuf) -> Vec<f32> {
        copy::download(self, buf)
    }
    fn download_f64(&self, buf: &CudaBuf) -> Vec<f64> {
        self.download(buf).into_iter().map(|x| x as f64).collect()
    }
    fn upload_ids(&self, ids: &[u32]) -> CudaIds {
        copy::upload_ids(self, ids)
    }
    fn upload_ids_many(&self, parts: &[&[u32]]) -> Vec<CudaIds> {
        copy::upload_ids_many(self, parts)
    }
    fn zeros(&self, len: usize) -> CudaBuf {
        self.alloc_zeroed(DType::F32, len)
    }
    fn len(&self, buf: &CudaBuf) -> usize {
        buf.len
    }
    fn copy(&self, buf: &CudaBuf) -> CudaBuf {
        self.to_dtype(buf, buf.dtype)
    }
    fn peak_bytes(&self) -> usize {
        self.mem.peak()
    }
    fn reset_peak(&self) {
        self.mem.reset_peak()
    }

    // ------------------------------------------------------------------ embedding
    fn embed_sum(
        &self,
        t: &TokenBatch<CudaIds>,
        word: &CudaBuf,
        pos: &CudaBuf,
        typ: &CudaBuf,
        task: Option<&CudaBuf>,
    ) -> CudaBuf {
        embedding::embed_sum(self, t, word, pos, typ, task)
    }
    fn embed_sum_bwd(
        &self,
        t: &TokenBatch<CudaIds>,
        dy: &CudaBuf,
        dword: &mut CudaBuf,
        dpos: &mut CudaBuf,
        dtyp: &mut CudaBuf,
        dtask: Option<&mut CudaBuf>,
    ) {
        embedding::embed_sum_bwd(self, t, dy, dword, dpos, dtyp, dtask)
    }

    // ------------------------------------------------------------------ layernorm
    fn layer_norm(
        &self,
        x: &CudaBuf,
        res: Option<&CudaBuf>,
        w: &CudaBuf,
        b: &CudaBuf,
        eps: f64,
        cols: usize,
    ) -> (CudaBuf, CudaBuf, CudaBuf, CudaBuf) {
        layernorm::layer_norm(self, x, res, w, b, eps, cols)
    }
    fn layer_norm_bwd(
        &self,
        dy: &CudaBuf,
        s: &CudaBuf,
        w: &CudaBuf,
        mean: &CudaBuf,
        rstd: &CudaBuf,
        cols: usize,
        dw: &mut CudaBuf,
        db: &mut CudaBuf,
    ) -> CudaBuf {
        layernorm::layer_norm_bwd(self, dy, s, w, mean, rstd, cols, dw, db)
    }

    // ------------------------------------------------------------------ linear
    fn linear(&self, x: &CudaBuf, w: &CudaBuf, b: Option<&CudaBuf>, m: usize, n: usize, k: usize) -> CudaBuf {
        linear::linear(self, x, w, b, (m, n, k))
    }
    fn linear_bwd_input(&self, dy: &CudaBuf, w: &CudaBuf, m: usize, n: usize, k: usize) -> CudaBuf {
        linear::linear_bwd_input(self, dy, w, (m, n, k))
    }
    fn linear_bwd_params(
        &self,
        dy: &CudaBuf,
        x: &CudaBuf,
        m: usize,
        n: usize,
        k: usize,
        dw: &mut CudaBuf,
        db: Option<&mut CudaBuf>,
    ) {
        linear::linear_bwd_params(self, dy, x, (m, n, k), dw, db)
    }

    // ------------------------------------------------------------------ activation
    fn gelu(&self, x: &CudaBuf) -> CudaBuf {
        activation::gelu(self, x)
    }
    fn gelu_bwd(&self, dy: &CudaBuf, x: &CudaBuf) -> CudaBuf {
        activation::gelu_bwd(self, dy, x)
    }
    fn tanh(&self, x: &CudaBuf) -> CudaBuf {
        activation::tanh(self, x)
    }
    fn tanh_bwd(&self, dy: &CudaBuf, y: &CudaBuf) -> CudaBuf {
        activation::tanh_bwd(self, dy, y)
    }
    fn dropout(&self, x: &CudaBuf, p: f32, rng: RngStream) -> CudaBuf {
        activation::dropout(self, x, p, rng)
    }

    // ------------------------------------------------------------------ attention
    fn attention(
        &self,
        a: AttnShape,
        q: &CudaBuf,
        k: &CudaBuf,
        v: &CudaBuf,
        mask: &CudaIds,
        delta: Option<&CudaBuf>,
        p: f32,
        rng: RngStream,
    ) -> (CudaBuf, CudaBuf) {
        attention::attention(self, a, q, k, v, mask, delta, p, rng)
    }
    fn attention_bwd(
        &self,
        a: AttnShape,
        dctx: &CudaBuf,
        q: &CudaBuf,
        k: &CudaBuf,
        v: &CudaBuf,
        probs: &CudaBuf,
        p: f32,
        rng: RngStream,
        want: bool,
    ) -> (CudaBuf, CudaBuf, CudaBuf, Option<CudaBuf>) {
        attention::attention_bwd(self, a, dctx, q, k, v, probs, p, rng, want)
    }

    // ------------------------------------------------------------------ copy (rows)
    fn gather_rows(&self, x: &CudaBuf, rows: &[usize], cols: usize) -> CudaBuf {
        copy::gather_rows(self, x, rows, cols)
    }
    fn scatter_rows(&self, dy: &CudaBuf, rows: &[usize], cols: usize, total_rows: usize) -> CudaBuf {
        copy::scatter_rows(self, dy, rows, cols, total_rows)
    }
    fn slice_rows(&self, x: &CudaBuf, start: usize, count: usize, cols: usize) -> CudaBuf {
        copy::slice_rows(self, x, start, count, cols)
    }
    fn concat_rows(&self, a: &CudaBuf, b: &CudaBuf) -> CudaBuf {
        copy::concat_rows(self, a, b)
    }

    // ------------------------------------------------------------------ loss
    fn softmax_ce(&self, logits: &CudaBuf, labels: &CudaIds, classes: usize, s: f64) -> (CudaBuf, CudaBuf) {
        loss::softmax_ce(self, logits, labels, classes, s)
    }
    fn sym_kl(&self, a: &CudaBuf, b: &CudaBuf, classes: usize, s: f64) -> (CudaBuf, CudaBuf, CudaBuf) {
        loss::sym_kl(self, a, b, classes, s)
    }
    fn kl_detached(&self, a: &CudaBuf, b: &CudaBuf, classes: usize, s: f64) -> (CudaBuf, CudaBuf) {
        loss::kl_detached(self, a, b, classes, s)
    }

    // ------------------------------------------------------------------ noise
    fn randn_key_masked(&self, a: AttnShape, mask: &CudaIds, sigma: f32, rng: RngStream) -> CudaBuf {
        noise::randn_key_masked(self, a, mask, sigma, rng)
    }
    fn normalize_per_example(&self, g: &CudaBuf, batch: usize, eps: f32, norm: NoiseNorm) -> CudaBuf {
        noise::normalize_per_example(self, g, batch, eps, norm)
    }

    // ------------------------------------------------------------------ vector
    fn axpby(&self, y: &mut CudaBuf, a: f64, x: &CudaBuf, b: f64) {
        vector::axpby(self, y, a, x, b)
    }
    fn fill(&self, buf: &mut CudaBuf, value: f32) {
        vector::fill(self, buf, value)
    }
    fn sum_squares(&self, bufs: &[&CudaBuf], st: &mut CudaStats, slot: usize) {
        vector::sum_squares(self, bufs, st, slot)
    }

    // ------------------------------------------------------------------ stats
    fn stats_zeros(&self, len: usize) -> CudaStats {
        stats::stats_zeros(self, len)
    }
    fn stats_upload(&self, values: &[f64]) -> CudaStats {
        stats::stats_upload(self, values)
    }
    fn stats_download(&self, st: &CudaStats) -> Vec<f64> {
        stats::stats_download(self, st)
    }
    fn stats_mean(&self, st: &mut CudaStats, slot: usize, rows: &CudaBuf, scale: f64, divisor: f64) {
        stats::stats_mean(self, st, slot, rows, scale, divisor)
    }
    fn stats_correct(
        &self,
        st: &mut CudaStats,
        slot: usize,
        logits: &CudaBuf,
        labels: &CudaIds,
        rows: usize,
        classes: usize,
    ) {
        stats::stats_correct(self, st, slot, logits, labels, rows, classes)
    }
    fn stats_combine(&self, st: &mut CudaStats, dst: usize, terms: &[(f64, usize)]) {
        stats::stats_combine(self, st, dst, terms)
    }
    fn clip_scale(&self, st: &mut CudaStats, clip: &Clip) {
        stats::clip_scale(self, st, clip)
    }

    // ------------------------------------------------------------------ adamw
    fn adamw(&self, slots: &mut [ParamSlot<'_, CudaBuf>], step: &AdamWStep, st: &CudaStats) {
        adamw::adamw(self, slots, step, st)
    }
}
