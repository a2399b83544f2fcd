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
    /// Where in the step's [`Backend::Stats`] the gradient multiplier lies (the global-norm clip factor that
    /// [`Backend::clip_scale`] wrote, 1.0 when not clipping): the optimizer reads it on the device, so no
    /// value of the step has to come back to the host first. NaN there skips the update entirely:
    /// parameters and moments stay as they were.
    pub scale_slot: usize,
}

/// The global-norm clip of one step, computed on the device from values in a [`Backend::Stats`]
/// ([`Backend::clip_scale`]): torch.nn.utils.clip_grad_norm_'s factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clip {
    /// Slot holding the sum of squares of every gradient ([`Backend::sum_squares`]).
    pub sumsq: usize,
    /// Slot receiving the global norm, `sqrt(stats[sumsq])`.
    pub norm: usize,
    /// Slot receiving the factor: `max_norm / (norm + 1e-6)` when `norm > max_norm`, else 1.
    pub scale: usize,
    /// None: no clipping (the factor is 1).
    pub max_norm: Option<f64>,
    /// A slot that must hold a finite value (the step's loss) for the update to happen; when it does not,
    /// `scale` receives NaN, which makes [`Backend::adamw`] leave everything as it was.
    pub guard: Option<usize>,
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

/// Token inputs of a batch, on the device. Cloning shares the device arrays where the backend's ids are
/// shared handles (CUDA) and copies host vectors on the CPU: several passes over one batch (adv's three
/// forwards) use one upload.
#[derive(Clone)]
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
    /// A flat buffer of u32 on the device (token ids, masks, labels). Read-only once made; a clone may
    /// share the device memory.
    type Ids: Clone + Send + Sync;
    /// A few f64 values that live on the device for one training step (losses, the count of correct
    /// predictions, the gradient norm, the clip factor): the ops of the step write them there and the host
    /// reads them all at once at the end ([`Backend::stats_download`]), its one device-to-host transfer.
    /// On the CPU it is host memory and the arithmetic is the same f64 the host did before.
    type Stats: Send + Sync;

    fn name(&self) -> String;

    // ----------------------------------------------------------------- copy: memory
    fn upload(&self, data: &[f32]) -> Self::Buf;
    fn download(&self, buf: &Self::Buf) -> Vec<f32>;
    fn download_f64(&self, buf: &Self::Buf) -> Vec<f64>;
    fn upload_ids(&self, ids: &[u32]) -> Self::Ids;
    /// Several id arrays in ONE host-to-device transfer (a batch's ids, type ids, task ids, mask and labels),
    /// one `Ids` per part, in order.
    fn upload_ids_many(&self, parts: &[&[u32]]) -> Vec<Self::Ids>;
    fn zeros(&self, len: usize) -> Self::Buf;
    fn len(&self, buf: &Self::Buf) -> usize;
    fn copy(&self, buf: &Self::Buf) -> Self::Buf;
    /// Peak bytes held on the device since the last reset (0 where not tracked).
    fn peak_bytes(&self) -> usize {
        0
    }
    fn reset_peak(&self) {}

    // ----------------------------------------------------------------- lanes: data-parallel inference
    /// How many parts an inference batch is split into, each run on its own lane at once (1: no split).
    /// The CPU has one lane per thread: each lane runs its rows' whole forward on one thread, which keeps
    /// both cores busier than splitting every GEMM and attention block between threads (small GEMMs, a
    /// synchronisation per op). A GPU has one lane.
    fn inference_lanes(&self) -> usize {
        1
    }
    /// Tokens per part of an inference batch, or `None` for parts as large as the lanes allow (one per
    /// lane). A part's activations are what an inference forward streams through at every op; on the CPU
    /// parts of a few hundred tokens keep them in the caches, where a whole batch's spill to memory, so a
    /// lane runs several parts in turn. A GPU wants whole batches.
    fn inference_part_tokens(&self) -> Option<usize> {
        None
    }
    /// `job(lane)` for every lane in `0..lanes` at once, each on its own lane, the results in lane order.
    fn run_lanes<R: Send>(&self, lanes: usize, job: &(dyn Fn(usize) -> R + Sync)) -> Vec<R> {
        (0..lanes).map(job).collect()
    }

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
    /// A linear layer's weight `w[n,k]` laid out for [`Backend::linear_prepared`], where this backend's GEMM
    /// reads that layout faster than `w`'s; `None` where it does not (the default). Inference makes these
    /// once per call and drops them after: training changes the weights between evaluations.
    fn prepare_linear(&self, _w: &Self::Buf, _n: usize, _k: usize) -> Option<Self::Buf> {
        None
    }
    /// [`Backend::linear`] with its weight `w` also as [`Backend::prepare_linear`] laid it out (`prepared`):
    /// the same numbers.
    #[allow(clippy::too_many_arguments)]
    fn linear_prepared(
        &self,
        _x: &Self::Buf,
        _w: &Self::Buf,
        _prepared: &Self::Buf,
        _b: Option<&Self::Buf>,
        _m: usize,
        _n: usize,
        _k: usize,
    ) -> Self::Buf {
        unreachable!("linear_prepared: this backend prepares no linear weights (prepare_linear gives None)")
    }
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
    /// Attention for inference (no dropout, no noise): the context alone, the same numbers as
    /// `attention(..).0` with `dropout_p = 0` and no noise. Backends override it to skip keeping the
    /// `[batch, heads, seq, seq]` probabilities that only a backward reads.
    fn attention_infer(
        &self,
        shape: AttnShape,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        key_mask: &Self::Ids,
    ) -> Self::Buf {
        self.attention(shape, q, k, v, key_mask, None, 0.0, RngStream::new(0, 0)).0
    }
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
    // The per-row losses stay on the device (fp32 there, `T` on the CPU); [`Backend::stats_mean`] reduces
    // them into a step's statistics, `download_f64` brings them to the host where a caller wants them.
    /// Fused softmax cross-entropy: `(loss per row, (softmax - onehot) * grad_scale)`.
    fn softmax_ce(
        &self,
        logits: &Self::Buf,
        labels: &Self::Ids,
        classes: usize,
        grad_scale: f64,
    ) -> (Self::Buf, Self::Buf);
    /// Fused symmetric KL `0.5 (KL(p||q) + KL(q||p))` per row with both gradients (scaled).
    fn sym_kl(
        &self,
        a: &Self::Buf,
        b: &Self::Buf,
        classes: usize,
        grad_scale: f64,
    ) -> (Self::Buf, Self::Buf, Self::Buf);
    /// `KL(softmax(a) || softmax(b))` per row with `a` detached, and its gradient w.r.t. `b` (scaled).
    fn kl_detached(&self, a: &Self::Buf, b: &Self::Buf, classes: usize, grad_scale: f64) -> (Self::Buf, Self::Buf);

    // ----------------------------------------------------------------- noise (adversarial)
    /// Noise `N(0, sigma^2)` on `[batch, heads, seq, seq]` scores, zero on padded keys.
    fn randn_key_masked(&self, shape: AttnShape, key_mask: &Self::Ids, sigma: f32, rng: RngStream) -> Self::Buf;
    /// `g * eps / norm(g[b])` with the norm taken over each example's `[heads, seq, seq]` block.
    fn normalize_per_example(&self, g: &Self::Buf, batch: usize, eps: f32, norm: NoiseNorm) -> Self::Buf;

    // ----------------------------------------------------------------- vector
    /// `y = a*y + b*x`.
    fn axpby(&self, y: &mut Self::Buf, a: f64, x: &Self::Buf, b: f64);
    fn fill(&self, buf: &mut Self::Buf, value: f32);
    /// `stats[slot]` = the sum of squares over all buffers, accumulated in f64 (global gradient norm): each
    /// buffer's sum, then those in buffer order.
    fn sum_squares(&self, bufs: &[&Self::Buf], stats: &mut Self::Stats, slot: usize);

    // ----------------------------------------------------------------- stats (a step's scalars, on the device)
    /// `len` zeros (no transfer).
    fn stats_zeros(&self, len: usize) -> Self::Stats;
    /// Values from the host (one upload; tests and tools: a step starts from [`Backend::stats_zeros`]).
    fn stats_upload(&self, values: &[f64]) -> Self::Stats;
    /// Every value, in ONE device-to-host transfer (a step's only read).
    fn stats_download(&self, stats: &Self::Stats) -> Vec<f64>;
    /// `stats[slot] = (scale * sum(rows)) / divisor`, the sum in f64 in row order over all of `rows` (the
    /// per-row losses of a loss op): a batch mean, or a weighted one.
    fn stats_mean(&self, stats: &mut Self::Stats, slot: usize, rows: &Self::Buf, scale: f64, divisor: f64);
    /// `stats[slot]` = how many of the first `rows` rows of `[*, classes]` logits have their first largest
    /// entry (compared in f32) at `labels[r]`.
    fn stats_correct(
        &self,
        stats: &mut Self::Stats,
        slot: usize,
        logits: &Self::Buf,
        labels: &Self::Ids,
        rows: usize,
        classes: usize,
    );
    /// `stats[dst] = w0 * stats[k0] + w1 * stats[k1] + ...`, left to right, for `terms = [(w0, k0), ...]`
    /// (at most [`MAX_COMBINE_TERMS`]; none gives 0): a step's loss from its parts.
    fn stats_combine(&self, stats: &mut Self::Stats, dst: usize, terms: &[(f64, usize)]);
    /// The global-norm clip factor from a sum of squares, and the guard that skips a step (see [`Clip`]).
    fn clip_scale(&self, stats: &mut Self::Stats, clip: &Clip);

    // ----------------------------------------------------------------- adamw
    /// One AdamW step over all parameters (few launches on a GPU). The gradients are multiplied by
    /// `stats[step.scale_slot]`; NaN there leaves every parameter and moment untouched.
    fn adamw(&self, slots: &mut [ParamSlot<'_, Self::Buf>], step: &AdamWStep, stats: &Self::Stats);
}

/// The most terms [`Backend::stats_combine`] takes (the kernel carries them in its parameters).
pub const MAX_COMBINE_TERMS: usize = 4;
