//! Range checks of a [`TrainConfig`] before anything is read or written: every numeric setting, with errors
//! that name the `ernie-ft train` flag the value came from (that is where users meet them), e.g.
//! `--lr 0: the learning rate must be positive`.

use crate::config::TrainConfig;
use anyhow::{bail, Result};
use std::fmt::Display;

/// Check every numeric field of `cfg` (and of its recipe and layer-decay rate). Call it before any file is
/// read or any directory created.
pub fn validate(cfg: &TrainConfig) -> Result<()> {
    // The learning rate: a fraction of the weights' scale; above 1 is surely a typo (1e-5 vs 1e5).
    let lr = finite("--lr", cfg.lr)?;
    if lr <= 0.0 {
        bail!("--lr {lr}: the learning rate must be positive");
    }
    if lr > 1.0 {
        bail!("--lr {lr}: the learning rate must be at most 1 (typical values are 1e-5 to 1e-4)");
    }
    at_least_1("--batch-size", "the batch size", cfg.batch_size as u64)?;
    at_least_1("--epochs", "the number of epochs", cfg.epochs as u64)?;
    if cfg.max_len < 3 {
        bail!("--max-len {}: the maximum length must be at least 3 ([CLS], one text token, [SEP])", cfg.max_len);
    }
    let w = finite("--warmup-ratio", cfg.warmup_ratio)?;
    if !(0.0..=1.0).contains(&w) {
        bail!("--warmup-ratio {w}: the warmup fraction of the steps must be between 0 and 1");
    }
    let wd = finite("--weight-decay", cfg.weight_decay)?;
    if wd < 0.0 {
        bail!("--weight-decay {wd}: the weight decay must not be negative");
    }
    let g = finite("--max-grad-norm", cfg.max_grad_norm)?;
    if g <= 0.0 {
        bail!("--max-grad-norm {g}: the gradient-norm limit must be positive");
    }
    dropout("--hidden-dropout", cfg.hidden_dropout)?;
    if let Some(p) = cfg.attention_dropout {
        dropout("--attention-dropout", p)?;
    }
    if let Some(adv) = &cfg.recipe.adv {
        positive("--adv-epsilon", "the noise size", adv.epsilon)?;
        positive("--adv-alpha", "the weight of the adversarial term", adv.alpha)?;
        positive("--adv-init-sigma", "the probe noise's standard deviation", adv.init_sigma)?;
    }
    if let Some(rdrop) = &cfg.recipe.rdrop {
        positive("--rdrop-alpha", "the weight of the R-Drop KL term", rdrop.alpha)?;
    }
    if let Some(rate) = cfg.recipe.layer_decay {
        let r = finite("--layer-decay-rate", rate)?;
        if !(r > 0.0 && r <= 1.0) {
            bail!("--layer-decay-rate {r}: the layer decay rate must be in (0, 1] (1 is no decay)");
        }
    }
    if let Some(n) = cfg.eval_every {
        at_least_1("--eval-every", "the evaluation interval (in steps)", n)?;
    }
    if let Some(n) = cfg.max_steps {
        at_least_1("--max-steps", "the number of steps", n)?;
    }
    if let Some(n) = cfg.train_limit {
        at_least_1("--train-limit", "the number of training examples", n as u64)?;
    }
    if let Some(n) = cfg.dev_limit {
        at_least_1("--dev-limit", "the number of dev examples", n as u64)?;
    }
    if let Some(f) = cfg.holdout {
        let f = finite("--holdout", f)?;
        if !(f > 0.0 && f < 1.0) {
            bail!("--holdout {f}: the held-out fraction must be between 0 and 1 (exclusive)");
        }
    }
    // save_every: any value (Some(0) means never).
    if cfg.save_total_limit == 0 {
        bail!("--save-total-limit 0: at least 1 training-state checkpoint must be kept (--save-every 0 writes none)");
    }
    Ok(())
}

/// `v` as f64 when it is a finite number; else an error naming `flag`.
fn finite<T: Into<f64> + Display + Copy>(flag: &str, v: T) -> Result<f64> {
    let x: f64 = v.into();
    if !x.is_finite() {
        bail!("{flag} {v}: not a finite number");
    }
    Ok(x)
}

fn positive<T: Into<f64> + Display + Copy>(flag: &str, what: &str, v: T) -> Result<()> {
    if finite(flag, v)? <= 0.0 {
        bail!("{flag} {v}: {what} must be positive");
    }
    Ok(())
}

fn dropout(flag: &str, p: f32) -> Result<()> {
    let x = finite(flag, p)?;
    if !(0.0..1.0).contains(&x) {
        bail!("{flag} {p}: a dropout probability must be in [0, 1)");
    }
    Ok(())
}

fn at_least_1(flag: &str, what: &str, n: u64) -> Result<()> {
    if n == 0 {
        bail!("{flag} 0: {what} must be at least 1");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ernie_data::TaskSpec;
    use ernie_strategies::{AdvConfig, RDropConfig, Recipe};

    /// A valid configuration with every optional setting on.
    fn base() -> TrainConfig {
        TrainConfig {
            task: TaskSpec::afqmc(),
            train_file: "train.json".into(),
            dev_file: Some("dev.json".into()),
            labels_file: None,
            model_dir: "model".into(),
            output_dir: "out".into(),
            lr: 3e-5,
            batch_size: 16,
            epochs: 3,
            max_len: 128,
            warmup_ratio: 0.1,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            seed: 42,
            head_seed: 0,
            hidden_dropout: 0.1,
            attention_dropout: Some(0.1),
            recipe: Recipe {
                rdrop: Some(RDropConfig::default()),
                adv: Some(AdvConfig::default()),
                layer_decay: Some(0.8),
            },
            eval_every: Some(100),
            max_steps: Some(1000),
            train_limit: Some(512),
            dev_limit: Some(512),
            holdout: Some(0.1),
            save: true,
            save_every: Some(100),
            save_total_limit: 2,
        }
    }

    /// The error of `base()` changed by `f`; it must name `flag`.
    fn err(flag: &str, f: impl FnOnce(&mut TrainConfig)) -> String {
        let mut c = base();
        f(&mut c);
        let e = validate(&c).expect_err("should be rejected").to_string();
        assert!(e.starts_with(&format!("{flag} ")), "{e:?} does not start with {flag}");
        e
    }

    fn ok(f: impl FnOnce(&mut TrainConfig)) {
        let mut c = base();
        f(&mut c);
        validate(&c).unwrap_or_else(|e| panic!("rejected: {e}"));
    }

    #[test]
    fn defaults_and_edges_pass() {
        ok(|_| {});
        ok(|c| {
            c.recipe = Recipe::default();
            c.recipe.layer_decay = None;
            c.attention_dropout = None;
            c.eval_every = None;
            c.max_steps = None;
            c.train_limit = None;
            c.dev_limit = None;
            c.holdout = None;
            c.save_every = None;
        });
        ok(|c| c.save_every = Some(0));
        ok(|c| {
            c.lr = 1.0;
            c.warmup_ratio = 0.0;
            c.weight_decay = 0.0;
            c.hidden_dropout = 0.0;
            c.recipe.layer_decay = Some(1.0);
            c.max_len = 3;
            c.batch_size = 1;
            c.epochs = 1;
            c.eval_every = Some(1);
            c.max_steps = Some(1);
        });
        ok(|c| c.warmup_ratio = 1.0);
    }

    #[test]
    fn learning_rate() {
        assert_eq!(err("--lr", |c| c.lr = 0.0), "--lr 0: the learning rate must be positive");
        err("--lr", |c| c.lr = -1e-5);
        assert!(err("--lr", |c| c.lr = 5.0).contains("at most 1"));
    }

    #[test]
    fn nan_and_infinities() {
        assert!(err("--lr", |c| c.lr = f64::NAN).contains("not a finite number"));
        assert!(err("--lr", |c| c.lr = f64::INFINITY).contains("not a finite number"));
        err("--warmup-ratio", |c| c.warmup_ratio = f64::NAN);
        err("--weight-decay", |c| c.weight_decay = f64::INFINITY);
        err("--max-grad-norm", |c| c.max_grad_norm = f64::INFINITY);
        err("--max-grad-norm", |c| c.max_grad_norm = f64::NAN);
        err("--hidden-dropout", |c| c.hidden_dropout = f32::NAN);
        err("--attention-dropout", |c| c.attention_dropout = Some(f32::NEG_INFINITY));
        err("--adv-epsilon", |c| c.recipe.adv.as_mut().unwrap().epsilon = f32::INFINITY);
        err("--adv-alpha", |c| c.recipe.adv.as_mut().unwrap().alpha = f64::NAN);
        err("--adv-init-sigma", |c| c.recipe.adv.as_mut().unwrap().init_sigma = f32::NAN);
        err("--rdrop-alpha", |c| c.recipe.rdrop.as_mut().unwrap().alpha = f64::INFINITY);
        err("--layer-decay-rate", |c| c.recipe.layer_decay = Some(f64::NAN));
    }

    #[test]
    fn dropouts() {
        let e = err("--hidden-dropout", |c| c.hidden_dropout = 1.0);
        assert!(e.contains("[0, 1)"), "{e}");
        err("--hidden-dropout", |c| c.hidden_dropout = -0.1);
        err("--attention-dropout", |c| c.attention_dropout = Some(1.5));
    }

    #[test]
    fn warmup_ratio() {
        err("--warmup-ratio", |c| c.warmup_ratio = 1.5);
        err("--warmup-ratio", |c| c.warmup_ratio = -0.1);
    }

    #[test]
    fn weight_decay_and_grad_norm() {
        err("--weight-decay", |c| c.weight_decay = -0.01);
        err("--max-grad-norm", |c| c.max_grad_norm = 0.0);
        err("--max-grad-norm", |c| c.max_grad_norm = -1.0);
    }

    #[test]
    fn eval_every_zero() {
        assert_eq!(
            err("--eval-every", |c| c.eval_every = Some(0)),
            "--eval-every 0: the evaluation interval (in steps) must be at least 1"
        );
    }

    #[test]
    fn counts() {
        err("--batch-size", |c| c.batch_size = 0);
        err("--epochs", |c| c.epochs = 0);
        err("--max-steps", |c| c.max_steps = Some(0));
        err("--train-limit", |c| c.train_limit = Some(0));
        err("--dev-limit", |c| c.dev_limit = Some(0));
        err("--max-len", |c| c.max_len = 2);
        err("--max-len", |c| c.max_len = 0);
    }

    #[test]
    fn adv_and_rdrop() {
        let e = err("--adv-epsilon", |c| c.recipe.adv.as_mut().unwrap().epsilon = 0.0);
        assert!(e.contains("must be positive"), "{e}");
        err("--adv-epsilon", |c| c.recipe.adv.as_mut().unwrap().epsilon = -1.0);
        err("--adv-alpha", |c| c.recipe.adv.as_mut().unwrap().alpha = 0.0);
        err("--adv-init-sigma", |c| c.recipe.adv.as_mut().unwrap().init_sigma = 0.0);
        err("--rdrop-alpha", |c| c.recipe.rdrop.as_mut().unwrap().alpha = -1.0);
        // Off strategies' settings are not looked at (they are not in the recipe).
        ok(|c| c.recipe = Recipe::default());
    }

    #[test]
    fn holdout_fraction() {
        for f in [0.0, 1.0, -0.2, 1.5, f64::NAN] {
            err("--holdout", |c| c.holdout = Some(f));
        }
        ok(|c| c.holdout = Some(0.5));
    }

    #[test]
    fn save_total_limit() {
        err("--save-total-limit", |c| c.save_total_limit = 0);
        ok(|c| c.save_total_limit = 1);
    }

    #[test]
    fn layer_decay_rate() {
        err("--layer-decay-rate", |c| c.recipe.layer_decay = Some(0.0));
        err("--layer-decay-rate", |c| c.recipe.layer_decay = Some(1.2));
        let e = err("--layer-decay-rate", |c| c.recipe.layer_decay = Some(-0.5));
        assert!(e.contains("(0, 1]"), "{e}");
    }
}
