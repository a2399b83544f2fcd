//! The device abstraction. The model, the optimizer and the strategies are written once against
//! [`Backend`]; the CPU backend (here) is the reference, the CUDA backend (crate `ernie-cuda`) implements
//! the same trait with hand-written kernels. Buffers are flat; shapes are carried by the caller, which is
//! the one that knows what a tensor means.

use crate::philox::RngStream;

/// Shape of a token batch: `batch` rows of `seq` tokens.
#[derive(Clone, Copy, Debug)]
pub struct TokShape {
    pub batch: usize,
    pub seq: usize,
    pub hidden: usize,
}

/// Geometry of multi-head self-attention on `[batch*seq, heads*head_dim]` activations.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    pub fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Elements of one `[batch, heads, seq, seq]` score tensor.
    pub fn score_len(&self) -> usize {
        self.batch * self.heads * self.seq * self.seq
    }
}

/// One AdamW update's hyper-parameters, shared by every parameter of the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Base learning rate of this step (after the schedule).
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// 1-based step count, for bias correction.
    pub step: u64,
    /// Multiplies every gradient before use: the global-norm clip factor (1.0 when not clipping).
    pub grad_scale: f64,
}

/// A parameter's slot in an optimizer step.
pub struct ParamSlot<'a, Buf> {
    pub param: &'a mut Buf,
    pub grad: &'a Buf,
    pub m: &'a mut Buf,
    pub v: &'a mut Buf,
    /// The parameter's learning-rate multiplier (layer decay); 1.0 otherwise.
    pub lr_mult: f64,
    /// Whether decoupled weight decay applies (not on biases and LayerNorm).
    pub decay: bool,
}

/// How adversarial noise is normalised per example.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NoiseNorm {
    /// `delta = eps * g / ||g||_2`
    #[default]
    L2,
    /// `delta = eps * g / max|g|`
    Max,
}

/// Token inputs of a batch, on the device.
pub struct TokenBatch<Ids> {
    pub shape: TokShape,
    pub ids: Ids,
    pub type_ids: Ids,
    pub task_ids: Ids,
    /// 1 for real tokens, 0 for padding, `[batch, seq]`.
    pub key_mask: Ids,
}

/// Everything the encoder, optimizer and strategies need from a device.
///
/// The methods are grouped by op family. A family's CPU reference is `cpu/ops/<family>.rs`; on CUDA its
/// kernels are `kernels/<family>.cu`, launched by `crates/cuda/src/ops/<family>.rs` (docs/design.md).
pub trait Backend: Send + Sync {
    /// A flat buffer of scalars on the device.
    type Buf: Send + Sync;
    /// A flat buffer of u32 on the device (token ids, masks, labels).
    type Ids: Send + Sync;

    fn name(&self) -> String;

    // ----------------------------------------------------------------- copy: memory
    fn upload(&self, data: &[f32]) -> Self::Buf;
    fn download(&self, buf: &Self::Buf) -> Vec<f32>;
    fn download_f64(&self, buf: &Self::Buf) -> Vec<f64>;
    fn upload_ids(&self, ids: &[u32]) -> Self::Ids;
    fn zeros(&self, len: usize) -> Self::Buf;
    fn len(&self, buf: &Self::Buf) -> usize;
    fn copy(&self, buf: &Self::Buf) -> Self::Buf;
    /// Peak bytes held on the device since the last reset (0 where not tracked).
    fn peak_bytes(&self) -> usize {
        0
    }
    fn reset_peak(&self) {}

    // ----------------------------------------------------------------- embedding
    /// `word[ids] + pos[0..seq] + type[type_ids] (+ task[task_ids])`, `[batch*seq, hidden]`.
    fn embed_sum(
        &self,
        tokens: &TokenBatch<Self::Ids>,
        word: &Self::Buf,
        pos: &Self::Buf,
        typ: &Self::Buf,
        task: Option<&Self::Buf>,
    ) -> Self::Buf;
    /// Deterministic scatter-add of `dy` into the tables' gradients.
    fn embed_sum_bwd(
        &self,
        tokens: &TokenBatch<Self::Ids>,
        dy: &Self::Buf,
        dword: &mut Self::Buf,
        dpos: &mut Self::Buf,
        dtyp: &mut Self::Buf,
        dtask: Option<&mut Self::Buf>,
    );

    // ----------------------------------------------------------------- layernorm
    /// `s = x + residual` (when given), `y = LN(s)`. Returns `(s, y, mean, rstd)`; `s` is empty when there
    /// is no residual (the input is then `x` itself).
    #[allow(clippy::type_complexity)]
    fn layer_norm(
        &self,
        x: &Self::Buf,
        residual: Option<&Self::Buf>,
        w: &Self::Buf,
        b: &Self::Buf,
        eps: f64,
        cols: usize,
    ) -> (Self::Buf, Self::Buf, Self::Buf, Self::Buf);
    /// Given the LN input `s`, returns `ds` and adds into `dw`, `db`.
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_bwd(
        &self,
        dy: &Self::Buf,
        s: &Self::Buf,
        w: &Self::Buf,
        mean: &Self::Buf,
        rstd: &Self::Buf,
        cols: usize,
        dw: &mut Self::Buf,
        db: &mut Self::Buf,
    ) -> Self::Buf;

    // ----------------------------------------------------------------- linear
    /// `y[m,n] = x[m,k] w[n,k]^T + b`.
    fn linear(&self, x: &Self::Buf, w: &Self::Buf, b: Option<&Self::Buf>, m: usize, n: usize, k: usize) -> Self::Buf;
    /// `dx[m,k] = dy[m,n] w[n,k]`.
    fn linear_bwd_input(&self, dy: &Self::Buf, w: &Self::Buf, m: usize, n: usize, k: usize) -> Self::Buf;
    /// `dw += dy^T x`, `db += colsum(dy)`.
    #[allow(clippy::too_many_arguments)]
    fn linear_bwd_params(
        &self,
        dy: &Self::Buf,
        x: &Self::Buf,
        m: usize,
        n: usize,
        k: usize,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
    );

    // ----------------------------------------------------------------- activation (and dropout)
    fn gelu(&self, x: &Self::Buf) -> Self::Buf;
    fn gelu_bwd(&self, dy: &Self::Buf, x: &Self::Buf) -> Self::Buf;
    fn tanh(&self, x: &Self::Buf) -> Self::Buf;
    /// Backward of tanh given its output.
    fn tanh_bwd(&self, dy: &Self::Buf, y: &Self::Buf) -> Self::Buf;
    /// Inverted dropout with a counter-based mask; calling it on the gradient with the same stream is the
    /// backward.
    fn dropout(&self, x: &Self::Buf, p: f32, rng: RngStream) -> Self::Buf;

    // ----------------------------------------------------------------- attention
    /// Fused scale + key mask + noise + softmax + dropout + context. Returns `(ctx, probs)`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        shape: AttnShape,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        key_mask: &Self::Ids,
        delta: Option<&Self::Buf>,
        dropout_p: f32,
        rng: RngStream,
    ) -> (Self::Buf, Self::Buf);
    /// Returns `(dq, dk, dv, dscores)`; `dscores` (the gradient w.r.t. the noise) only when asked.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn attention_bwd(
        &self,
        shape: AttnShape,
        dctx: &Self::Buf,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        probs: &Self::Buf,
        dropout_p: f32,
        rng: RngStream,
        want_dscores: bool,
    ) -> (Self::Buf, Self::Buf, Self::Buf, Option<Self::Buf>);

    // ----------------------------------------------------------------- copy: rows
    /// `out[r] = x[rows[r]]` for rows of `cols` scalars.
    fn gather_rows(&self, x: &Self::Buf, rows: &[usize], cols: usize) -> Self::Buf;
    /// `out` of `total_rows` rows, zero but `out[rows[r]] = dy[r]`.
    fn scatter_rows(&self, dy: &Self::Buf, rows: &[usize], cols: usize, total_rows: usize) -> Self::Buf;
    /// Rows `[start, start+count)` of a matrix with `cols` columns, as a new buffer.
    fn slice_rows(&self, x: &Self::Buf, start: usize, count: usize, cols: usize) -> Self::Buf;
    /// The rows of `a` followed by the rows of `b`.
    fn concat_rows(&self, a: &Self::Buf, b: &Self::Buf) -> Self::Buf;

    // ----------------------------------------------------------------- loss
    /// Fused softmax cross-entropy: `(loss per row, (softmax - onehot) * grad_scale)`.
    fn softmax_ce(&self, logits: &Self::Buf, labels: &Self::Ids, classes: usize, grad_scale: f64) -> (Vec<f64>, Self::Buf);
    /// Fused symmetric KL `0.5 (KL(p||q) + KL(q||p))` per row with both gradients (scaled).
    fn sym_kl(&self, a: &Self::Buf, b: &Self::Buf, classes: usize, grad_scale: f64) -> (Vec<f64>, Self::Buf, Self::Buf);
    /// `KL(softmax(a) || softmax(b))` per row with `a` detached, and its gradient w.r.t. `b` (scaled).
    fn kl_detached(&self, a: &Self::Buf, b: &Self::Buf, classes: usize, grad_scale: f64) -> (Vec<f64>, Self::Buf);

    // ----------------------------------------------------------------- noise (adversarial)
    /// Noise `N(0, sigma^2)` on `[batch, heads, seq, seq]` scores, zero on padded keys.
    fn randn_key_masked(&self, shape: AttnShape, key_mask: &Self::Ids, sigma: f32, rng: RngStream) -> Self::Buf;
    /// `g * eps / norm(g[b])` with the norm taken over each example's `[heads, seq, seq]` block.
    fn normalize_per_example(&self, g: &Self::Buf, batch: usize, eps: f32, norm: NoiseNorm) -> Self::Buf;

    // ----------------------------------------------------------------- vector
    /// `y = a*y + b*x`.
    fn axpby(&self, y: &mut Self::Buf, a: f64, x: &Self::Buf, b: f64);
    fn fill(&self, buf: &mut Self::Buf, value: f32);
    /// Sum of squares over all buffers, accumulated in f64 (global gradient norm).
    fn sum_squares(&self, bufs: &[&Self::Buf]) -> f64;

    // ----------------------------------------------------------------- adamw
    /// One AdamW step over all parameters (few launches on a GPU).
    fn adamw(&self, slots: &mut [ParamSlot<'_, Self::Buf>], step: &AdamWStep);
}
