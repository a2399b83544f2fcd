//! ernie-optim: AdamW (decoupled weight decay, none on biases and LayerNorm), a per-parameter learning-rate
//! multiplier (what layer decay sets), global gradient-norm clipping, and the linear warmup / linear decay
//! schedule of HF `get_linear_schedule_with_warmup` (PaddleNLP's `LinearDecayWithWarmup` is the same).

use ernie_backend::{AdamWStep, Backend, Clip, ParamSlot};
use serde::{Deserialize, Serialize};

/// AdamW's settings; the learning rate is given to each [`AdamW::step`] (the schedule's value).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Clip the global gradient L2 norm to this value (None: no clipping).
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, max_grad_norm: Some(1.0) }
    }
}

/// Linear warmup over `warmup_steps`, then linear decay to 0 at `total_steps`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearSchedule {
    pub total_steps: u64,
    pub warmup_steps: u64,
}

impl LinearSchedule {
    /// `warmup_ratio` of the steps, rounded up as HF's `get_warmup_steps` does.
    pub fn with_ratio(total_steps: u64, warmup_ratio: f64) -> Self {
        LinearSchedule { total_steps, warmup_steps: (total_steps as f64 * warmup_ratio).ceil() as u64 }
    }

    /// The lr factor for update number `step` (0-based: the first update is step 0, which gets factor 0
    /// under warmup, exactly as HF's LambdaLR does).
    pub fn factor(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let rest = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        (self.total_steps.saturating_sub(step) as f64 / rest as f64).max(0.0)
    }
}

/// What one update did, read from the step's statistics after the step ([`StepStats::read`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Global L2 norm of the gradients before clipping.
    pub grad_norm: f64,
    /// The factor the gradients were scaled by (1 when under the clip norm); NaN when the update was
    /// skipped (the guard was not finite).
    pub clip_scale: f64,
    /// The base lr of this update (before per-parameter multipliers).
    pub lr: f64,
}

/// Slots [`AdamW::step`] uses in a step's statistics from its `at`: the sum of squares, the norm, the clip
/// factor.
pub const STAT_SLOTS: usize = 3;

impl StepStats {
    /// From the downloaded statistics of a step whose [`AdamW::step`] wrote at `at`.
    pub fn read(stats: &[f64], at: usize, lr: f64) -> Self {
        StepStats { grad_norm: stats[at + 1], clip_scale: stats[at + 2], lr }
    }
}

/// AdamW state for one model's parameter list.
pub struct AdamW<B: Backend> {
    pub config: AdamWConfig,
    /// Per-parameter lr multiplier (layer decay), 1.0 by default.
    pub lr_mult: Vec<f64>,
    /// Per-parameter weight-decay flag.
    pub decay: Vec<bool>,
    pub m: Vec<B::Buf>,
    pub v: Vec<B::Buf>,
    /// Updates done so far.
    pub steps_done: u64,
}

impl<B: Backend> AdamW<B> {
    /// `sizes[i]` elements and `decay[i]` for parameter `i`.
    pub fn new(b: &B, config: AdamWConfig, sizes: &[usize], decay: Vec<bool>) -> Self {
        assert_eq!(sizes.len(), decay.len());
        AdamW {
            config,
            lr_mult: vec![1.0; sizes.len()],
            decay,
            m: sizes.iter().map(|&n| b.zeros(n)).collect(),
            v: sizes.iter().map(|&n| b.zeros(n)).collect(),
            steps_done: 0,
        }
    }

    /// One update with base lr `lr` (the schedule's value for this step). Nothing comes back to the host:
    /// the global gradient norm and the clip factor are computed on the device into
    /// `stats[at..at + STAT_SLOTS]` (read them after the step with [`StepStats::read`]), and the AdamW kernel
    /// reads the factor from there. When `guard` is given and `stats[guard]` (the step's loss) is not finite,
    /// the update is skipped on the device and parameters and moments stay as they were; `steps_done`
    /// counts it all the same, so the caller that finds the loss non-finite after its read takes it back.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        b: &B,
        params: &mut [B::Buf],
        grads: &[B::Buf],
        lr: f64,
        stats: &mut B::Stats,
        at: usize,
        guard: Option<usize>,
    ) {
        assert_eq!(params.len(), grads.len());
        b.sum_squares(&grads.iter().collect::<Vec<_>>(), stats, at);
        // torch.nn.utils.clip_grad_norm_: scale = max_norm / (norm + 1e-6), applied only when < 1.
        b.clip_scale(
            stats,
            &Clip { sumsq: at, norm: at + 1, scale: at + 2, max_norm: self.config.max_grad_norm, guard },
        );
        self.steps_done += 1;
        let c = &self.config;
        let st = AdamWStep {
            lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            step: self.steps_done,
            scale_slot: at + 2,
        };
        let mut slots: Vec<ParamSlot<'_, B::Buf>> = params
            .iter_mut()
            .zip(grads)
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
            .enumerate()
            .map(|(i, ((param, grad), (m, v)))| ParamSlot {
                param,
                grad,
                m,
                v,
                lr_mult: self.lr_mult[i],
                decay: self.decay[i],
            })
            .collect();
        b.adamw(&mut slots, &st, stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ernie_backend::Cpu;

    #[test]
    fn schedule_matches_hf_linear_with_warmup() {
        let s = LinearSchedule::with_ratio(100, 0.1);
        assert_eq!(s.warmup_steps, 10);
        assert_eq!(s.factor(0), 0.0);
        assert_eq!(s.factor(5), 0.5);
        assert_eq!(s.factor(10), 1.0);
        assert_eq!(s.factor(55), 0.5);
        assert_eq!(s.factor(100), 0.0);
        assert_eq!(s.factor(150), 0.0);
        let none = LinearSchedule::with_ratio(4, 0.0);
        assert_eq!((none.factor(0), none.factor(2)), (1.0, 0.5));
        assert_eq!(LinearSchedule::with_ratio(7, 0.1).warmup_steps, 1);
    }

    /// Two AdamW steps computed by hand (PyTorch's AdamW formulas) on a 2-parameter model with one decayed
    /// weight, one bias, an lr multiplier and clipping.
    #[test]
    fn adamw_matches_hand_computed_steps() {
        let b = Cpu::<f64>::new();
        let cfg = AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, max_grad_norm: Some(1.0) };
        let mut opt = AdamW::new(&b, cfg, &[2, 1], vec![true, false]);
        opt.lr_mult = vec![0.5, 1.0];
        let mut params = vec![vec![1.0, -2.0], vec![0.5]];
        // Step 1: grads with norm 5 -> clipped by 1/(5+1e-6).
        let g1 = vec![vec![3.0, 0.0], vec![4.0]];
        let step = |opt: &mut AdamW<Cpu<f64>>, params: &mut [Vec<f64>], g: &[Vec<f64>], lr: f64| {
            let mut stats = b.stats_zeros(STAT_SLOTS);
            opt.step(&b, params, g, lr, &mut stats, 0, None);
            StepStats::read(&b.stats_download(&stats), 0, lr)
        };
        let st = step(&mut opt, &mut params, &g1, 0.1);
        assert!((st.grad_norm - 5.0).abs() < 1e-12);
        let k = 1.0 / (5.0 + 1e-6);
        let hand = |p: f64, g: f64, m0: f64, v0: f64, t: i32, lr: f64, wd: f64| {
            let m = 0.9 * m0 + 0.1 * g;
            let v = 0.999 * v0 + 0.001 * g * g;
            let p = p - lr * wd * p;
            (p - lr * (m / (1.0 - 0.9f64.powi(t))) / ((v / (1.0 - 0.999f64.powi(t))).sqrt() + 1e-8), m, v)
        };
        let (p0, m0, v0) = hand(1.0, 3.0 * k, 0.0, 0.0, 1, 0.05, 0.01);
        let (p1, m1, v1) = hand(-2.0, 0.0, 0.0, 0.0, 1, 0.05, 0.01);
        let (p2, m2, v2) = hand(0.5, 4.0 * k, 0.0, 0.0, 1, 0.1, 0.0);
        assert!(
            (params[0][0] - p0).abs() < 1e-12 && (params[0][1] - p1).abs() < 1e-12 && (params[1][0] - p2).abs() < 1e-12
        );
        // Step 2: small grads, no clipping.
        let g2 = vec![vec![0.1, -0.2], vec![0.3]];
        let st = step(&mut opt, &mut params, &g2, 0.05);
        assert_eq!(st.clip_scale, 1.0);
        let (q0, _, _) = hand(p0, 0.1, m0, v0, 2, 0.025, 0.01);
        let (q1, _, _) = hand(p1, -0.2, m1, v1, 2, 0.025, 0.01);
        let (q2, _, _) = hand(p2, 0.3, m2, v2, 2, 0.05, 0.0);
        assert!((params[0][0] - q0).abs() < 1e-12, "{} vs {q0}", params[0][0]);
        assert!((params[0][1] - q1).abs() < 1e-12 && (params[1][0] - q2).abs() < 1e-12);
    }

    /// A guard that is not finite (the step's loss) leaves parameters and moments as they were.
    #[test]
    fn a_non_finite_guard_skips_the_update() {
        let b = Cpu::<f64>::new();
        let mut opt = AdamW::new(&b, AdamWConfig::default(), &[2], vec![true]);
        let mut params = vec![vec![1.0, -2.0]];
        let mut stats = b.stats_upload(&[f64::NAN, 0.0, 0.0, 0.0]);
        opt.step(&b, &mut params, &[vec![3.0, 4.0]], 0.1, &mut stats, 1, Some(0));
        let st = StepStats::read(&b.stats_download(&stats), 1, 0.1);
        assert_eq!(st.grad_norm, 5.0);
        assert!(st.clip_scale.is_nan());
        assert_eq!(params, vec![vec![1.0, -2.0]]);
        assert_eq!((&opt.m[0], &opt.v[0]), (&vec![0.0, 0.0], &vec![0.0, 0.0]));
    }
}
