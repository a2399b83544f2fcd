//! The encoder with its classification head: explicit forward that keeps what the backward needs, and an
//! explicit backward that yields every parameter's gradient (and, for the adv strategy, the gradient with
//! respect to the attention-score noise of every layer). No autograd graph: the backward is written out.
//!
//! About 700 lines in one file on purpose: each block's forward and backward stand in the same file so the
//! backward can be read against the forward that produced its cache.

use crate::params::{idx, param_specs, HostParams, ParamIndex, ParamSpec};
use crate::ModelConfig;
use ernie_backend::{AttnShape, Backend, RngStream, TokShape, TokenBatch};
use std::collections::HashMap;

/// Token inputs of a batch on the host: `batch` rows of `seq` tokens, right-padded.
#[derive(Clone, Debug, PartialEq)]
pub struct Tokens {
    pub batch: usize,
    pub seq: usize,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// ERNIE task-type ids; all 0 when empty.
    pub task_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<u32>,
}

impl Tokens {
    /// Rows of `[batch, seq]` from per-example id lists, right-padded with `pad_id`.
    pub fn from_rows(rows: &[(Vec<u32>, Vec<u32>)], pad_id: u32) -> Self {
        let seq = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let mut t = Tokens { batch: rows.len(), seq, ids: vec![], type_ids: vec![], task_ids: vec![], mask: vec![] };
        for (ids, types) in rows {
            let pad = seq - ids.len();
            t.ids.extend(ids.iter().copied().chain(std::iter::repeat_n(pad_id, pad)));
            t.type_ids.extend(types.iter().copied().chain(std::iter::repeat_n(0, pad)));
            t.mask.extend(std::iter::repeat_n(1, ids.len()).chain(std::iter::repeat_n(0, pad)));
        }
        t
    }

    /// The same rows twice, stacked along the batch dimension (R-Drop).
    pub fn doubled(&self) -> Self {
        let cat = |v: &Vec<u32>| [v.clone(), v.clone()].concat();
        Tokens {
            batch: 2 * self.batch,
            seq: self.seq,
            ids: cat(&self.ids),
            type_ids: cat(&self.type_ids),
            task_ids: if self.task_ids.is_empty() { vec![] } else { cat(&self.task_ids) },
            mask: cat(&self.mask),
        }
    }

    /// The rows split into `parts` consecutive groups of (nearly) equal size, the larger groups first, each
    /// with this batch's `seq` (no group is empty: fewer groups when there are fewer rows).
    pub fn split_rows(&self, parts: usize) -> Vec<Tokens> {
        let parts = parts.clamp(1, self.batch.max(1));
        let (base, extra) = (self.batch / parts, self.batch % parts);
        let mut start = 0;
        (0..parts)
            .map(|i| {
                let rows = base + usize::from(i < extra);
                let cut = |v: &Vec<u32>| v[start * self.seq..(start + rows) * self.seq].to_vec();
                let part = Tokens {
                    batch: rows,
                    seq: self.seq,
                    ids: cut(&self.ids),
                    type_ids: cut(&self.type_ids),
                    task_ids: if self.task_ids.is_empty() { vec![] } else { cut(&self.task_ids) },
                    mask: cut(&self.mask),
                };
                start += rows;
                part
            })
            .collect()
    }

    /// The batch on the device in ONE host-to-device transfer; `extra` ids (a training step's labels) ride
    /// along in the same transfer and come back as the second value.
    pub fn upload<B: Backend>(
        &self,
        b: &B,
        hidden: usize,
        extra: Option<&[u32]>,
    ) -> (TokenBatch<B::Ids>, Option<B::Ids>) {
        let n = self.batch * self.seq;
        let zeros;
        let task: &[u32] = if self.task_ids.is_empty() {
            zeros = vec![0; n];
            &zeros
        } else {
            &self.task_ids
        };
        let mut parts: Vec<&[u32]> = vec![&self.ids, &self.type_ids, task, &self.mask];
        parts.extend(extra);
        let mut up = b.upload_ids_many(&parts).into_iter();
        let mut next = || up.next().expect("one array per part");
        let tb = TokenBatch {
            shape: TokShape { batch: self.batch, seq: self.seq, hidden },
            ids: next(),
            type_ids: next(),
            task_ids: next(),
            key_mask: next(),
        };
        let extra = extra.map(|_| next());
        (tb, extra)
    }

    /// The batch on the device, in one transfer.
    pub fn to_device<B: Backend>(&self, b: &B, hidden: usize) -> TokenBatch<B::Ids> {
        self.upload(b, hidden, None).0
    }
}

/// How one forward pass runs.
pub struct ForwardOpts<'a, B: Backend> {
    /// Dropout on (training) or off (evaluation).
    pub train: bool,
    /// Hidden dropout (embeddings, attention output, FFN output, pooler output).
    pub hidden_dropout: f32,
    /// Dropout on the attention probabilities.
    pub attn_dropout: f32,
    /// Stream for every dropout mask of this pass; each site derives its own sub-stream.
    pub rng: RngStream,
    /// Noise added to each layer's pre-softmax attention scores (adv), `[batch, heads, seq, seq]` each.
    pub score_noise: Option<&'a [B::Buf]>,
    /// Index of this batch's first row in a larger batch: dropout masks are a function of (seed, site,
    /// row, element), so a forward of rows `r0..r0+n` with `row_offset = r0` draws exactly the masks those
    /// rows get in the full batch.
    pub row_offset: usize,
}

impl<B: Backend> ForwardOpts<'_, B> {
    /// A training pass: dropout `hidden` and `attention` with masks from `rng`, no attention-score noise,
    /// the batch on its own (row offset 0).
    pub fn train(hidden: f32, attention: f32, rng: RngStream) -> Self {
        ForwardOpts {
            train: true,
            hidden_dropout: hidden,
            attn_dropout: attention,
            rng,
            score_noise: None,
            row_offset: 0,
        }
    }

    pub fn eval() -> Self {
        ForwardOpts {
            train: false,
            hidden_dropout: 0.0,
            attn_dropout: 0.0,
            rng: RngStream::new(0, 0),
            score_noise: None,
            row_offset: 0,
        }
    }
    fn p_hidden(&self) -> f32 {
        if self.train {
            self.hidden_dropout
        } else {
            0.0
        }
    }
    fn p_attn(&self) -> f32 {
        if self.train {
            self.attn_dropout
        } else {
            0.0
        }
    }
}

/// What one layer's forward keeps for its backward.
pub struct LayerCache<B: Backend> {
    q: B::Buf,
    k: B::Buf,
    v: B::Buf,
    probs: B::Buf,
    ctx: B::Buf,
    s1: B::Buf,
    mean1: B::Buf,
    rstd1: B::Buf,
    y1: B::Buf,
    inter_pre: B::Buf,
    inter: B::Buf,
    s2: B::Buf,
    mean2: B::Buf,
    rstd2: B::Buf,
}

/// The result of a forward pass and everything its backward needs.
pub struct Forward<B: Backend> {
    pub tokens: TokenBatch<B::Ids>,
    /// `hidden[0]` is the embedding output, `hidden[i + 1]` the output of layer `i`; the last one is the
    /// final hidden state `[batch*seq, hidden]`.
    pub hidden: Vec<B::Buf>,
    pub pooled: B::Buf,
    pub logits: B::Buf,
    emb_sum: B::Buf,
    emb_mean: B::Buf,
    emb_rstd: B::Buf,
    layers: Vec<LayerCache<B>>,
    /// The first token's final hidden state, the pooler's input.
    cls: B::Buf,
    pooled_dropped: B::Buf,
    /// Geometry, dropout rates and random sites of this pass: the backward regenerates the same masks.
    pass: Pass,
}

impl<B: Backend> Forward<B> {
    pub fn batch(&self) -> usize {
        self.tokens.shape.batch
    }
    pub fn final_hidden(&self) -> &B::Buf {
        self.hidden.last().expect("at least the embedding output")
    }
}

/// What a backward pass should produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackwardWants {
    /// Accumulate parameter gradients. When false the weight-gradient GEMMs are skipped entirely.
    pub params: bool,
    /// Return the gradient with respect to each layer's attention-score noise.
    pub score_noise: bool,
}

/// Gradients in parameter order.
pub struct Grads<B: Backend> {
    pub bufs: Vec<B::Buf>,
}

impl<B: Backend> Grads<B> {
    pub fn zero(&mut self, b: &B) {
        for g in &mut self.bufs {
            b.fill(g, 0.0);
        }
    }
}

/// The random stream of one dropout site, offset to this batch's first row.
struct DropoutStreams {
    rng: RngStream,
    row_offset: usize,
    seq: usize,
    hidden: usize,
    heads: usize,
}

impl DropoutStreams {
    /// A site over `[rows*seq, hidden]` activations.
    fn tokens(&self, site: u64) -> RngStream {
        self.rng.derive(site).with_offset((self.row_offset * self.seq * self.hidden) as u64)
    }
    /// The attention-probability site (offset in (batch, head) blocks).
    fn attention(&self, site: u64) -> RngStream {
        self.rng.derive(site).with_offset((self.row_offset * self.heads) as u64)
    }
    /// A site over `[rows, hidden]` (the pooler output).
    fn rows(&self, site: u64) -> RngStream {
        self.rng.derive(site).with_offset((self.row_offset * self.hidden) as u64)
    }
}

/// What every layer of one forward pass shares: geometry, dropout rates and random sites.
struct Pass {
    rows: usize,
    attn: AttnShape,
    p_hidden: f32,
    p_attn: f32,
    dropout: DropoutStreams,
}

impl Pass {
    fn new<B: Backend>(enc: &Encoder<B>, tb: &TokenBatch<B::Ids>, opts: &ForwardOpts<'_, B>) -> Self {
        let ts = tb.shape;
        let cfg = &enc.config;
        Pass {
            rows: ts.batch * ts.seq,
            attn: enc.attn_shape(ts),
            p_hidden: opts.p_hidden(),
            p_attn: opts.p_attn(),
            dropout: DropoutStreams {
                rng: opts.rng,
                row_offset: opts.row_offset,
                seq: ts.seq,
                hidden: cfg.hidden_size,
                heads: cfg.num_attention_heads,
            },
        }
    }
}

/// Linear weights laid out anew for inference by the backend ([`Backend::prepare_linear`]), by (layer,
/// weight offset); empty where the backend keeps them as they are.
struct PreparedLinears<B: Backend>(HashMap<(usize, usize), B::Buf>);

/// The result of [`Encoder::infer`]: outputs only, nothing for a backward.
pub struct Inference<B: Backend> {
    /// `[batch*seq, hidden]`.
    pub final_hidden: B::Buf,
    /// `[batch, hidden]`, the pooler's output.
    pub pooled: B::Buf,
    /// `[batch, labels]`.
    pub logits: B::Buf,
}

/// The result of [`Encoder::classify`]: the first tokens' pooled states and the logits.
pub struct Classified<B: Backend> {
    /// `[batch, hidden]`, the pooler's output.
    pub pooled: B::Buf,
    /// `[batch, labels]`.
    pub logits: B::Buf,
}

/// Which rows an inference pass carries through its last layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rows {
    /// Every token (the final hidden states are the output).
    All,
    /// The first token of each row (only the pooler reads the output).
    FirstTokens,
}

/// A layer's activations after attention ([`Encoder::layer_tail`]); the training forward keeps them all.
struct LayerTail<B: Backend> {
    s1: B::Buf,
    y1: B::Buf,
    mean1: B::Buf,
    rstd1: B::Buf,
    inter_pre: B::Buf,
    inter: B::Buf,
    s2: B::Buf,
    y2: B::Buf,
    mean2: B::Buf,
    rstd2: B::Buf,
}

/// How an inference batch of `batch` rows of `seq` tokens is cut: `(lanes, parts per lane)`, the rows
/// split evenly into `lanes * parts per lane` parts. Parts of about `part_tokens` tokens where given
/// (`Backend::inference_part_tokens`), at least one per lane, the same number on every lane (so that the
/// lanes finish together). Every part has two rows or more: a one-row part would send the last layer's
/// first-token GEMMs and the pooler down `gemm`'s matrix-vector path, which sums in another order, and the
/// cut must not change a bit.
pub fn parts_plan(batch: usize, seq: usize, lanes: usize, part_tokens: Option<usize>) -> (usize, usize) {
    let max_parts = (batch / 2).max(1);
    let lanes = lanes.clamp(1, max_parts);
    let wanted = part_tokens.map_or(1, |t| batch.div_ceil((t / seq.max(1)).max(2)));
    let per_lane = wanted.div_ceil(lanes).min(max_parts / lanes).max(1);
    (lanes, per_lane)
}

/// The rows of two or more `parts`, one part after the other.
fn concat<B: Backend>(b: &B, parts: &[&B::Buf]) -> B::Buf {
    assert!(parts.len() >= 2, "two or more parts");
    parts[2..].iter().fold(b.concat_rows(parts[0], parts[1]), |acc, p| b.concat_rows(&acc, p))
}

/// `x` after dropout `p`; `x` itself when `p` is 0 (dropout would only copy it).
fn dropped<B: Backend>(b: &B, x: B::Buf, p: f32, rng: RngStream) -> B::Buf {
    if p > 0.0 {
        b.dropout(&x, p, rng)
    } else {
        x
    }
}

/// Sub-stream ids of the dropout sites in one pass.
mod site {
    pub const EMB: u64 = 1;
    pub const POOLER: u64 = 2;
    pub fn layer(l: usize, which: u64) -> u64 {
        0x100 + 4 * l as u64 + which
    }
    pub const ATTN_PROBS: u64 = 0;
    pub const ATTN_OUT: u64 = 1;
    pub const FFN_OUT: u64 = 2;
}

/// A BERT/ERNIE encoder with pooler and classifier, its parameters on backend `B`.
pub struct Encoder<B: Backend> {
    pub config: ModelConfig,
    pub num_labels: usize,
    pub specs: Vec<ParamSpec>,
    pub index: ParamIndex,
    pub params: Vec<B::Buf>,
}

impl<B: Backend> Encoder<B> {
    pub fn from_host(b: &B, host: &HostParams) -> Self {
        let (specs, index) = param_specs(&host.config, host.num_labels);
        debug_assert_eq!(specs, host.specs);
        let params = host.values.iter().map(|v| b.upload(v)).collect();
        Encoder { config: host.config.clone(), num_labels: host.num_labels, specs, index, params }
    }

    pub fn to_host(&self, b: &B) -> HostParams {
        HostParams {
            config: self.config.clone(),
            num_labels: self.num_labels,
            specs: self.specs.clone(),
            values: self.params.iter().map(|p| b.download(p)).collect(),
            initialised: vec![],
        }
    }

    pub fn zero_grads(&self, b: &B) -> Grads<B> {
        Grads { bufs: self.specs.iter().map(|s| b.zeros(s.numel())).collect() }
    }

    pub fn num_parameters(&self) -> usize {
        self.specs.iter().map(|s| s.numel()).sum()
    }

    fn p(&self, i: usize) -> &B::Buf {
        &self.params[i]
    }
    fn lp(&self, layer: usize, off: usize) -> &B::Buf {
        &self.params[self.index.layer(layer, off)]
    }

    fn attn_shape(&self, t: TokShape) -> AttnShape {
        AttnShape {
            batch: t.batch,
            seq: t.seq,
            heads: self.config.num_attention_heads,
            head_dim: self.config.head_dim(),
        }
    }

    /// Check a batch against the model's limits (an error, never an out-of-bounds read).
    pub fn check_tokens(&self, t: &Tokens) -> Result<(), String> {
        let n = t.batch * t.seq;
        if t.ids.len() != n
            || t.type_ids.len() != n
            || t.mask.len() != n
            || !(t.task_ids.is_empty() || t.task_ids.len() == n)
        {
            return Err(format!("token arrays do not match batch {} x seq {}", t.batch, t.seq));
        }
        if t.seq > self.config.max_position_embeddings {
            return Err(format!(
                "sequence length {} exceeds max_position_embeddings {}",
                t.seq, self.config.max_position_embeddings
            ));
        }
        if let Some(&id) = t.ids.iter().find(|&&id| id as usize >= self.config.vocab_size) {
            return Err(format!("token id {id} is outside the vocabulary ({} entries)", self.config.vocab_size));
        }
        if let Some(&ty) = t.type_ids.iter().find(|&&x| x as usize >= self.config.type_vocab_size) {
            return Err(format!("token type id {ty} is outside type_vocab_size {}", self.config.type_vocab_size));
        }
        if let Some(&ty) = t
            .task_ids
            .iter()
            .find(|&&x| !self.config.use_task_id && x != 0 || x as usize >= self.config.task_type_vocab_size)
        {
            return Err(format!("task type id {ty} is not valid for this model"));
        }
        for r in 0..t.batch {
            if t.mask[r * t.seq] == 0 {
                return Err(format!("row {r} has no real first token (every row needs its [CLS])"));
            }
        }
        Ok(())
    }

    /// Forward pass to the logits, keeping everything the backward needs.
    pub fn forward(&self, b: &B, tokens: &Tokens, opts: &ForwardOpts<'_, B>) -> Forward<B> {
        self.forward_owned(b, tokens.to_device(b, self.config.hidden_size), opts)
    }

    /// [`Encoder::forward`] on a batch already on the device ([`Tokens::upload`]): several passes over one
    /// batch (a training step's clean, probe and adversarial forwards) share one upload.
    pub fn forward_on(&self, b: &B, tokens: &TokenBatch<B::Ids>, opts: &ForwardOpts<'_, B>) -> Forward<B> {
        assert_eq!(tokens.shape.hidden, self.config.hidden_size, "a token batch made for another hidden size");
        self.forward_owned(b, tokens.clone(), opts)
    }

    fn forward_owned(&self, b: &B, tb: TokenBatch<B::Ids>, opts: &ForwardOpts<'_, B>) -> Forward<B> {
        let pass = Pass::new(self, &tb, opts);
        let (emb_sum, x0, emb_mean, emb_rstd) = self.embed(b, &tb, &pass);
        let mut hidden = vec![x0];
        let mut layers = Vec::with_capacity(self.config.num_hidden_layers);
        for l in 0..self.config.num_hidden_layers {
            let (y2, cache) = self.layer(b, l, hidden.last().unwrap(), &tb, &pass, opts.score_noise.map(|n| &n[l]));
            layers.push(cache);
            hidden.push(y2);
        }
        let (cls, pooled, pooled_dropped, logits) = self.head(b, hidden.last().unwrap(), &tb, &pass);
        Forward { tokens: tb, hidden, pooled, logits, emb_sum, emb_mean, emb_rstd, layers, cls, pooled_dropped, pass }
    }

    /// Evaluation forward (no dropout) that keeps nothing for a backward: each layer's activations are
    /// freed as soon as the next layer has its input, so memory stays at about one layer's working set
    /// (`encode`, which needs every token's final state). The same numbers as `forward` with
    /// [`ForwardOpts::eval`] up to f32 round-off (bit-identical on the CPU).
    ///
    /// On a backend with several [inference lanes](Backend::inference_lanes) the rows are split between
    /// them and run at once; every row computes the same numbers as in the whole batch.
    pub fn infer(&self, b: &B, tokens: &Tokens) -> Inference<B> {
        let prepared = self.prepare_linears(b);
        let mut parts = self.in_lanes(b, tokens, |t| self.infer_rows(b, t, &prepared));
        if parts.len() == 1 {
            return parts.pop().expect("one part");
        }
        let cat = |f: fn(&Inference<B>) -> &B::Buf| concat(b, &parts.iter().map(f).collect::<Vec<_>>());
        Inference { final_hidden: cat(|p| &p.final_hidden), pooled: cat(|p| &p.pooled), logits: cat(|p| &p.logits) }
    }

    fn infer_rows(&self, b: &B, tokens: &Tokens, prepared: &PreparedLinears<B>) -> Inference<B> {
        let tb = tokens.to_device(b, self.config.hidden_size);
        let x = self.infer_layers(b, &tb, Rows::All, prepared);
        let cls = self.first_tokens(b, &x, tb.shape);
        let (pooled, logits) = self.pool_and_classify(b, &cls);
        Inference { final_hidden: x, pooled, logits }
    }

    /// Evaluation forward to the pooled state and logits alone (evaluation, `predict`). Only the first
    /// token's state reaches the pooler, so the last layer computes its attention output projection and
    /// feed-forward block for the first token of each row only (the keys and values still come from every
    /// token): about 6/7 of the last layer's work, 1/14 of a 12-layer forward, is skipped. The same numbers
    /// as [`Encoder::infer`]'s up to f32 round-off (the GEMMs run on fewer rows).
    ///
    /// Split between [inference lanes](Backend::inference_lanes) as [`Encoder::infer`] is.
    pub fn classify(&self, b: &B, tokens: &Tokens) -> Classified<B> {
        let prepared = self.prepare_linears(b);
        let mut parts = self.in_lanes(b, tokens, |t| self.classify_rows(b, t, &prepared));
        if parts.len() == 1 {
            return parts.pop().expect("one part");
        }
        let cat = |f: fn(&Classified<B>) -> &B::Buf| concat(b, &parts.iter().map(f).collect::<Vec<_>>());
        Classified { pooled: cat(|p| &p.pooled), logits: cat(|p| &p.logits) }
    }

    fn classify_rows(&self, b: &B, tokens: &Tokens, prepared: &PreparedLinears<B>) -> Classified<B> {
        let tb = tokens.to_device(b, self.config.hidden_size);
        let cls = self.infer_layers(b, &tb, Rows::FirstTokens, prepared);
        let (pooled, logits) = self.pool_and_classify(b, &cls);
        Classified { pooled, logits }
    }

    /// `run` on the whole batch, or on parts of its rows ([`parts_plan`]) run by the backend's inference
    /// lanes at once, each lane its share of the parts in turn; the parts' results in row order.
    fn in_lanes<R: Send>(&self, b: &B, tokens: &Tokens, run: impl Fn(&Tokens) -> R + Sync) -> Vec<R> {
        let (lanes, per_lane) = parts_plan(tokens.batch, tokens.seq, b.inference_lanes(), b.inference_part_tokens());
        if lanes * per_lane <= 1 {
            return vec![run(tokens)];
        }
        let parts = tokens.split_rows(lanes * per_lane);
        let by_lane = b.run_lanes(lanes, &|lane| {
            parts[lane * per_lane..(lane + 1) * per_lane].iter().map(&run).collect::<Vec<R>>()
        });
        by_lane.into_iter().flatten().collect()
    }

    /// Embeddings and every layer without dropout or caches; the last layer's output holds the `rows`
    /// asked for (`[batch*seq, hidden]` or `[batch, hidden]`).
    fn infer_layers(&self, b: &B, tb: &TokenBatch<B::Ids>, rows: Rows, prepared: &PreparedLinears<B>) -> B::Buf {
        let pass = Pass::new(self, tb, &ForwardOpts::eval());
        let (_, mut x, _, _) = self.embed(b, tb, &pass);
        let n = self.config.num_hidden_layers;
        for l in 0..n {
            let (q, k, v) = self.project_qkv(b, l, &x, pass.rows, Some(prepared));
            let ctx = b.attention_infer(pass.attn, &q, &k, &v, &tb.key_mask);
            drop((q, k, v));
            x = if rows == Rows::FirstTokens && l + 1 == n {
                let (ctx, x) = (self.first_tokens(b, &ctx, tb.shape), self.first_tokens(b, &x, tb.shape));
                self.layer_tail(b, l, &ctx, &x, tb.shape.batch, &pass, Some(prepared)).y2
            } else {
                self.layer_tail(b, l, &ctx, &x, pass.rows, &pass, Some(prepared)).y2
            };
        }
        x
    }

    /// Embeddings: sum of the tables, LayerNorm, dropout. Returns (sum, output, LN mean, LN rstd).
    fn embed(&self, b: &B, tb: &TokenBatch<B::Ids>, pass: &Pass) -> (B::Buf, B::Buf, B::Buf, B::Buf) {
        let h = self.config.hidden_size;
        let task = self.index.task.map(|i| self.p(i));
        let emb = b.embed_sum(tb, self.p(idx::WORD), self.p(idx::POS), self.p(idx::TYPE), task);
        let (_, emb_y, mean, rstd) = b.layer_norm(
            &emb,
            None,
            self.p(self.index.emb_ln_w),
            self.p(self.index.emb_ln_b),
            self.config.layer_norm_eps,
            h,
        );
        let x0 = b.dropout(&emb_y, pass.p_hidden, pass.dropout.tokens(site::EMB));
        (emb, x0, mean, rstd)
    }

    /// Transformer layer `l` on input `x`: returns its output and what its backward needs.
    fn layer(
        &self,
        b: &B,
        l: usize,
        x: &B::Buf,
        tb: &TokenBatch<B::Ids>,
        pass: &Pass,
        noise: Option<&B::Buf>,
    ) -> (B::Buf, LayerCache<B>) {
        let (m, rng) = (pass.rows, &pass.dropout);
        let (q, k, v) = self.project_qkv(b, l, x, m, None);
        let (ctx, probs) = b.attention(
            pass.attn,
            &q,
            &k,
            &v,
            &tb.key_mask,
            noise,
            pass.p_attn,
            rng.attention(site::layer(l, site::ATTN_PROBS)),
        );
        let LayerTail { s1, y1, mean1, rstd1, inter_pre, inter, s2, y2, mean2, rstd2 } =
            self.layer_tail(b, l, &ctx, x, m, pass, None);
        (y2, LayerCache { q, k, v, probs, ctx, s1, mean1, rstd1, y1, inter_pre, inter, s2, mean2, rstd2 })
    }

    /// Layer `l`'s query, key and value projections of its input `x` (`m` rows).
    fn project_qkv(
        &self,
        b: &B,
        l: usize,
        x: &B::Buf,
        m: usize,
        prepared: Option<&PreparedLinears<B>>,
    ) -> (B::Buf, B::Buf, B::Buf) {
        let h = self.config.hidden_size;
        let q = self.linear(b, l, idx::Q_W, x, m, h, h, prepared);
        let k = self.linear(b, l, idx::K_W, x, m, h, h, prepared);
        let v = self.linear(b, l, idx::V_W, x, m, h, h, prepared);
        (q, k, v)
    }

    /// Layer `l`'s linear layer of weight `w` (its bias follows it) on `m` rows of `x`: `n` outputs, `k`
    /// inputs; with the weight as `prepared` laid it out where it did.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        b: &B,
        l: usize,
        w: usize,
        x: &B::Buf,
        m: usize,
        n: usize,
        k: usize,
        prepared: Option<&PreparedLinears<B>>,
    ) -> B::Buf {
        let bias = Some(self.lp(l, w + 1));
        match prepared.and_then(|p| p.0.get(&(l, w))) {
            Some(pw) => b.linear_prepared(x, self.lp(l, w), pw, bias, m, n, k),
            None => b.linear(x, self.lp(l, w), bias, m, n, k),
        }
    }

    /// Every layer's linear weights that the backend lays out anew for inference ([`Backend::prepare_linear`]);
    /// none on most backends. Made once per inference call, shared by its lanes.
    fn prepare_linears(&self, b: &B) -> PreparedLinears<B> {
        let mut map = HashMap::new();
        for l in 0..self.config.num_hidden_layers {
            for w in [idx::Q_W, idx::K_W, idx::V_W, idx::AO_W, idx::I_W, idx::O_W] {
                let i = self.index.layer(l, w);
                let [n, k] = self.specs[i].shape[..] else { unreachable!("a linear weight is [out, in]") };
                if let Some(p) = b.prepare_linear(&self.params[i], n, k) {
                    map.insert((l, w), p);
                }
            }
        }
        PreparedLinears(map)
    }

    /// Layer `l` after attention, on `m` rows of its context `ctx` and input `x`: output projection,
    /// dropout, residual LayerNorm, feed-forward, dropout, residual LayerNorm.
    #[allow(clippy::too_many_arguments)]
    fn layer_tail(
        &self,
        b: &B,
        l: usize,
        ctx: &B::Buf,
        x: &B::Buf,
        m: usize,
        pass: &Pass,
        prepared: Option<&PreparedLinears<B>>,
    ) -> LayerTail<B> {
        let cfg = &self.config;
        let (h, i, eps, ph, rng) =
            (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps, pass.p_hidden, &pass.dropout);
        let ao = self.linear(b, l, idx::AO_W, ctx, m, h, h, prepared);
        let ao = dropped(b, ao, ph, rng.tokens(site::layer(l, site::ATTN_OUT)));
        let (s1, y1, mean1, rstd1) = b.layer_norm(&ao, Some(x), self.lp(l, idx::LN1_W), self.lp(l, idx::LN1_B), eps, h);
        let inter_pre = self.linear(b, l, idx::I_W, &y1, m, i, h, prepared);
        let inter = b.gelu(&inter_pre);
        let out = self.linear(b, l, idx::O_W, &inter, m, h, i, prepared);
        let out = dropped(b, out, ph, rng.tokens(site::layer(l, site::FFN_OUT)));
        let (s2, y2, mean2, rstd2) =
            b.layer_norm(&out, Some(&y1), self.lp(l, idx::LN2_W), self.lp(l, idx::LN2_B), eps, h);
        LayerTail { s1, y1, mean1, rstd1, inter_pre, inter, s2, y2, mean2, rstd2 }
    }

    /// The first token's row of each batch row of `x` (`[batch*seq, hidden]` -> `[batch, hidden]`).
    fn first_tokens(&self, b: &B, x: &B::Buf, ts: TokShape) -> B::Buf {
        let cls_rows: Vec<usize> = (0..ts.batch).map(|r| r * ts.seq).collect();
        b.gather_rows(x, &cls_rows, self.config.hidden_size)
    }

    /// The pooler: tanh of a dense layer on the first tokens' states `cls` (`rows` of them).
    fn pool(&self, b: &B, cls: &B::Buf, rows: usize) -> B::Buf {
        let h = self.config.hidden_size;
        b.tanh(&b.linear(cls, self.p(self.index.pooler_w), Some(self.p(self.index.pooler_b)), rows, h, h))
    }

    /// The classifier's logits of `rows` pooled states.
    fn classifier(&self, b: &B, pooled: &B::Buf, rows: usize) -> B::Buf {
        let (h, n) = (self.config.hidden_size, self.num_labels);
        b.linear(pooled, self.p(self.index.cls_w), Some(self.p(self.index.cls_b)), rows, n, h)
    }

    /// Pooler and classifier on the first tokens' states, without dropout: (pooled, logits).
    fn pool_and_classify(&self, b: &B, cls: &B::Buf) -> (B::Buf, B::Buf) {
        let rows = b.len(cls) / self.config.hidden_size;
        let pooled = self.pool(b, cls, rows);
        let logits = self.classifier(b, &pooled, rows);
        (pooled, logits)
    }

    /// Pooler and classifier on the first token of `last`: returns (that token's state, pooled, pooled
    /// after dropout, logits).
    fn head(&self, b: &B, last: &B::Buf, tb: &TokenBatch<B::Ids>, pass: &Pass) -> (B::Buf, B::Buf, B::Buf, B::Buf) {
        let ts = tb.shape;
        let cls = self.first_tokens(b, last, ts);
        let pooled = self.pool(b, &cls, ts.batch);
        let pooled_dropped = b.dropout(&pooled, pass.p_hidden, pass.dropout.rows(site::POOLER));
        let logits = self.classifier(b, &pooled_dropped, ts.batch);
        (cls, pooled, pooled_dropped, logits)
    }

    /// Backward from `dlogits` through a cached forward. Adds parameter gradients into `grads` when
    /// `wants.params` (otherwise `grads` is not touched and may be empty); returns the per-layer gradient w.r.t. the attention-score noise when
    /// `wants.score_noise` (empty otherwise).
    pub fn backward(
        &self,
        b: &B,
        fw: &Forward<B>,
        dlogits: &B::Buf,
        wants: BackwardWants,
        grads: &mut Grads<B>,
    ) -> Vec<B::Buf> {
        let cfg = &self.config;
        let h = cfg.hidden_size;
        let ts = fw.tokens.shape;
        let (m, a, ph, pa, rng) = (fw.pass.rows, fw.pass.attn, fw.pass.p_hidden, fw.pass.p_attn, &fw.pass.dropout);
        let lay = &self.index;
        let g = &mut grads.bufs;
        // LayerNorm backward always yields its dw/db; when parameter gradients are not wanted they go to
        // scratch buffers (they are vectors: negligible next to the skipped weight GEMMs).
        let mut scratch_w = b.zeros(h);
        let mut scratch_b = b.zeros(h);

        // Classifier and pooler.
        if wants.params {
            let (cls_w, cls_b) = two_mut(g, lay.cls_w, lay.cls_b);
            b.linear_bwd_params(dlogits, &fw.pooled_dropped, ts.batch, self.num_labels, h, cls_w, Some(cls_b));
        }
        let dpooled = b.linear_bwd_input(dlogits, self.p(lay.cls_w), ts.batch, self.num_labels, h);
        let dpooled = b.dropout(&dpooled, ph, rng.rows(site::POOLER));
        let dpool_pre = b.tanh_bwd(&dpooled, &fw.pooled);
        let cls_rows: Vec<usize> = (0..ts.batch).map(|r| r * ts.seq).collect();
        if wants.params {
            let (pw, pb) = two_mut(g, lay.pooler_w, lay.pooler_b);
            b.linear_bwd_params(&dpool_pre, &fw.cls, ts.batch, h, h, pw, Some(pb));
        }
        let dcls = b.linear_bwd_input(&dpool_pre, self.p(lay.pooler_w), ts.batch, h, h);
        let mut dx = b.scatter_rows(&dcls, &cls_rows, h, m);

        let mut dnoise = Vec::new();
        for l in (0..cfg.num_hidden_layers).rev() {
            let c = &fw.layers[l];
            let x_in = &fw.hidden[l];
            let i_size = cfg.intermediate_size;
            // Output LayerNorm (residual y1 + dropout(out)).
            let ds2 = {
                let (w, bb) = if wants.params {
                    two_mut(g, lay.layer(l, idx::LN2_W), lay.layer(l, idx::LN2_B))
                } else {
                    (&mut scratch_w, &mut scratch_b)
                };
                b.layer_norm_bwd(&dx, &c.s2, self.lp(l, idx::LN2_W), &c.mean2, &c.rstd2, h, w, bb)
            };
            let dout = b.dropout(&ds2, ph, rng.tokens(site::layer(l, site::FFN_OUT)));
            if wants.params {
                let (w, bb) = two_mut(g, lay.layer(l, idx::O_W), lay.layer(l, idx::O_B));
                b.linear_bwd_params(&dout, &c.inter, m, h, i_size, w, Some(bb));
            }
            let dinter = b.linear_bwd_input(&dout, self.lp(l, idx::O_W), m, h, i_size);
            let dinter_pre = b.gelu_bwd(&dinter, &c.inter_pre);
            if wants.params {
                let (w, bb) = two_mut(g, lay.layer(l, idx::I_W), lay.layer(l, idx::I_B));
                b.linear_bwd_params(&dinter_pre, &c.y1, m, i_size, h, w, Some(bb));
            }
            let mut dy1 = b.linear_bwd_input(&dinter_pre, self.lp(l, idx::I_W), m, i_size, h);
            b.axpby(&mut dy1, 1.0, &ds2, 1.0);
            // Attention LayerNorm (residual x_in + dropout(attn_out)).
            let ds1 = {
                let (w, bb) = if wants.params {
                    two_mut(g, lay.layer(l, idx::LN1_W), lay.layer(l, idx::LN1_B))
                } else {
                    (&mut scratch_w, &mut scratch_b)
                };
                b.layer_norm_bwd(&dy1, &c.s1, self.lp(l, idx::LN1_W), &c.mean1, &c.rstd1, h, w, bb)
            };
            let dao = b.dropout(&ds1, ph, rng.tokens(site::layer(l, site::ATTN_OUT)));
            if wants.params {
                let (w, bb) = two_mut(g, lay.layer(l, idx::AO_W), lay.layer(l, idx::AO_B));
                b.linear_bwd_params(&dao, &c.ctx, m, h, h, w, Some(bb));
            }
            let dctx = b.linear_bwd_input(&dao, self.lp(l, idx::AO_W), m, h, h);
            let (dq, dk, dv, dscores) = b.attention_bwd(
                a,
                &dctx,
                &c.q,
                &c.k,
                &c.v,
                &c.probs,
                pa,
                rng.attention(site::layer(l, site::ATTN_PROBS)),
                wants.score_noise,
            );
            if let Some(ds) = dscores {
                dnoise.push(ds);
            }
            // The adv probe needs only the noise gradients: below layer 0 there is nothing left to compute.
            if !wants.params && l == 0 {
                break;
            }
            let mut dx_in = ds1;
            for (dproj, w_off, b_off) in
                [(&dq, idx::Q_W, idx::Q_B), (&dk, idx::K_W, idx::K_B), (&dv, idx::V_W, idx::V_B)]
            {
                if wants.params {
                    let (w, bb) = two_mut(g, lay.layer(l, w_off), lay.layer(l, b_off));
                    b.linear_bwd_params(dproj, x_in, m, h, h, w, Some(bb));
                }
                let d = b.linear_bwd_input(dproj, self.lp(l, w_off), m, h, h);
                b.axpby(&mut dx_in, 1.0, &d, 1.0);
            }
            dx = dx_in;
        }
        dnoise.reverse();
        if !wants.params {
            return dnoise;
        }
        // Embeddings: dropout, LayerNorm, then the scatter into the tables.
        let demb_y = b.dropout(&dx, ph, rng.tokens(site::EMB));
        let demb = {
            let (w, bb) = two_mut(g, lay.emb_ln_w, lay.emb_ln_b);
            b.layer_norm_bwd(&demb_y, &fw.emb_sum, self.p(lay.emb_ln_w), &fw.emb_mean, &fw.emb_rstd, h, w, bb)
        };
        let (word, rest) = g.split_at_mut(idx::POS);
        let (pos, rest) = rest.split_at_mut(1);
        let (typ, rest) = rest.split_at_mut(1);
        let dtask = lay.task.map(|t| &mut rest[t - idx::TYPE - 1]);
        b.embed_sum_bwd(&fw.tokens, &demb, &mut word[idx::WORD], &mut pos[0], &mut typ[0], dtask);
        dnoise
    }
}

/// Two distinct mutable elements of a slice.
fn two_mut<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert!(i < j, "two_mut expects i < j");
    let (a, b) = v.split_at_mut(j);
    (&mut a[i], &mut b[0])
}

#[cfg(test)]
mod tests {
    use super::{parts_plan, Tokens};

    #[test]
    fn parts_plan_cuts_into_even_parts_of_two_rows_or_more() {
        // (batch, seq, lanes, part tokens) -> (lanes, parts per lane)
        let cases = [
            ((32, 128, 2, Some(512)), (2, 4)), // 8 parts of 4 rows (512 tokens)
            ((32, 128, 1, Some(512)), (1, 8)),
            ((32, 128, 2, None), (2, 1)),     // one part per lane
            ((64, 20, 2, Some(512)), (2, 2)), // short rows: 4 parts of 16
            ((7, 96, 1, Some(512)), (1, 2)),  // 4 + 3 rows
            ((7, 96, 3, Some(512)), (3, 1)),  // 3 + 2 + 2
            ((7, 96, 4, Some(512)), (3, 1)),  // no more lanes than 2-row parts
            ((7, 96, 1, Some(64)), (1, 3)),   // parts of 2 rows at the least: 3 + 2 + 2
            ((3, 128, 2, Some(512)), (1, 1)), // too few rows to cut
            ((1, 128, 2, Some(16)), (1, 1)),
            ((0, 0, 2, Some(512)), (1, 1)),
        ];
        for ((batch, seq, lanes, tokens), want) in cases {
            let got = parts_plan(batch, seq, lanes, tokens);
            assert_eq!(got, want, "batch {batch}, seq {seq}, lanes {lanes}, part tokens {tokens:?}");
            assert!(batch < 2 || batch / (got.0 * got.1) >= 2, "a part of fewer than 2 rows: {got:?}");
        }
    }

    #[test]
    fn split_rows_keeps_every_row_once_in_order() {
        let rows: Vec<(Vec<u32>, Vec<u32>)> =
            (0..5).map(|r| (vec![r + 1; 1 + r as usize], vec![1; 1 + r as usize])).collect();
        let mut t = Tokens::from_rows(&rows, 0);
        t.task_ids = vec![2; t.ids.len()];
        let parts = t.split_rows(3);
        assert_eq!(parts.iter().map(|p| p.batch).collect::<Vec<_>>(), [2, 2, 1]);
        assert!(parts.iter().all(|p| p.seq == t.seq));
        let join = |f: fn(&Tokens) -> &Vec<u32>| parts.iter().flat_map(f).copied().collect::<Vec<_>>();
        assert_eq!(join(|p| &p.ids), t.ids);
        assert_eq!(join(|p| &p.type_ids), t.type_ids);
        assert_eq!(join(|p| &p.task_ids), t.task_ids);
        assert_eq!(join(|p| &p.mask), t.mask);
        assert_eq!(t.split_rows(9).len(), 5, "no empty part");
        assert_eq!(t.split_rows(0).len(), 1);
    }
}
