//! ernie-strategies: the four fine-tuning strategies, each one module, all combinable.
//! - [`adv`]: adversarial noise on every layer's pre-softmax attention scores (3 forwards, 2 backwards).
//! - [`rdrop`]: one forward of the batch doubled, symmetric KL between the two halves' predictions.
//! - [`layer_decay`]: per-parameter lr multipliers `decay ** (n_layers + 2 - depth)`.
//! - [`fma`]: parameter averaging of fine-tuned models (uniform or greedy soup).
//!
//! [`Recipe`] says which a training run applies and with what settings; [`objective::compute_gradients`]
//! composes the loss-changing ones (R-Drop, adv) for one step, layer decay sets the optimizer's per-parameter
//! multipliers, and FMA runs after training. [`Strategy`] is their one vocabulary. The model knows none of
//! them.

pub mod adv;
pub mod fma;
pub mod layer_decay;
pub mod objective;
pub mod rdrop;
pub mod strategy;

pub use adv::{AdvConfig, AdvObjective};
pub use objective::{compute_gradients, stat, Dropout, LabelledBatch, PendingReport, Recipe, StepReport};
pub use rdrop::RDropConfig;
pub use strategy::{Strategy, UnknownStrategy};
