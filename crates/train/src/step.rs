//! One optimizer update, assembled in this one place: zero the gradients, the gradient of the recipe's
//! objective ([`compute_gradients`]: R-Drop and adv), global-norm clipping and AdamW with the recipe's
//! layer-decay multipliers. The trainer, `ernie-ft bench`, the examples, the benchmarks and the CUDA tests
//! all step through it, so what they time and check is what training does.
//!
//! Transfer budget of one update, whatever the strategies: ONE upload of the batch (tokens and labels,
//! shared by every forward of the step) and ONE read of the device at the end (loss, its parts, the
//! correct count, the gradient norm and the clip factor together). Between the two everything stays on the
//! device: the clip factor is computed there and AdamW reads it there, and a non-finite loss makes the
//! device skip the update. `crates/cuda/tests/transfers.rs` counts this on the CUDA backend.

use ernie_backend::{Backend, RngStream};
use ernie_model::{Encoder, Grads};
use ernie_optim::{AdamW, AdamWConfig, STAT_SLOTS};
use ernie_strategies::{compute_gradients, layer_decay, stat, Dropout, LabelledBatch, Recipe, StepReport};

/// The loss of an update was NaN or infinite (nothing was applied).
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("the loss became {loss} at update {update}: lower the learning rate")]
pub struct NonFiniteLoss {
    pub loss: f64,
    pub update: u64,
}

/// The optimizer state and gradient buffers of one model, and how every update is computed.
pub struct TrainStep<B: Backend> {
    pub recipe: Recipe,
    pub dropout: Dropout,
    /// Update `k` draws its dropout masks and adv noise from `RngStream::new(seed, k)`, so an update's
    /// randomness depends on nothing but the seed and its number (what makes resumed runs bit-identical).
    pub seed: u64,
    pub opt: AdamW<B>,
    pub grads: Grads<B>,
}

impl<B: Backend> TrainStep<B> {
    /// AdamW over `enc`'s parameters (no weight decay on biases and LayerNorms), its per-parameter lr
    /// multipliers set by the recipe's layer decay.
    pub fn new(b: &B, enc: &Encoder<B>, recipe: Recipe, dropout: Dropout, optim: AdamWConfig, seed: u64) -> Self {
        let sizes: Vec<usize> = enc.specs.iter().map(|s| s.numel()).collect();
        let decay = enc.specs.iter().map(|s| s.weight_decay()).collect();
        let mut opt = AdamW::new(b, optim, &sizes, decay);
        if let Some(rate) = recipe.layer_decay {
            opt.lr_mult = layer_decay::multipliers(&enc.specs, enc.config.num_hidden_layers, rate);
        }
        TrainStep { recipe, dropout, seed, opt, grads: enc.zero_grads(b) }
    }

    /// Update number `update` (0-based) on one batch, with base learning rate `lr` (the schedule's value
    /// for this update). A non-finite loss is an error and leaves the parameters and the optimizer state as
    /// they were.
    pub fn run(
        &mut self,
        b: &B,
        enc: &mut Encoder<B>,
        batch: LabelledBatch<'_>,
        update: u64,
        lr: f64,
    ) -> Result<StepReport, NonFiniteLoss> {
        self.grads.zero(b);
        let rng = RngStream::new(self.seed, update);
        let mut stats = b.stats_zeros(stat::LEN + STAT_SLOTS);
        let pending = compute_gradients(b, enc, &mut self.grads, batch, &self.recipe, self.dropout, rng, &mut stats);
        // Clipping and AdamW on the device; with the loss as the guard, a non-finite loss skips the update.
        self.opt.step(b, &mut enc.params, &self.grads.bufs, lr, &mut stats, stat::LEN, Some(stat::LOSS));
        // The update's one read of the device.
        let values = b.stats_download(&stats);
        let rep = pending.read(&values);
        if !rep.loss.is_finite() {
            // The device skipped the update; the optimizer's count goes back with it.
            self.opt.steps_done -= 1;
            return Err(NonFiniteLoss { loss: rep.loss, update });
        }
        Ok(rep)
    }
}
