//! FMA, fine-tuned model averaging: the parameter average of several models fine-tuned from the same
//! pretrained body and the same head initialisation (the head seed is separate from the run seed, so runs
//! meant to be averaged share it). Uniform by default; the greedy soup (Wortsman et al. 2022) adds models
//! in order of their held-out accuracy and keeps each only if the held-out accuracy of the average does
//! not drop. Selection uses a held-out part of TRAIN, never dev.

use ernie_model::HostParams;

#[derive(Debug, thiserror::Error)]
pub enum AverageError {
    #[error("nothing to average")]
    Empty,
    /// `what`: the first differing field, `field name-value vs first-value`.
    #[error("{name}: model config differs from {first}'s: {what}")]
    Config { name: String, first: String, what: String },
    #[error("{name}: tensor {tensor} has shape {found:?}, {first} has {expected:?}")]
    Shape { name: String, first: String, tensor: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("{name}: tensor {tensor} is missing (present in {first})")]
    Missing { name: String, first: String, tensor: String },
}

/// Check that `models` (named for error messages) can be averaged.
pub fn check_compatible(models: &[(String, &HostParams)]) -> Result<(), AverageError> {
    let (first_name, first) = models.first().ok_or(AverageError::Empty)?;
    for (name, m) in &models[1..] {
        if let Some(what) = m.config.difference(&first.config) {
            return Err(AverageError::Config { name: name.clone(), first: first_name.clone(), what });
        }
        for (i, s) in first.specs.iter().enumerate() {
            match m.specs.iter().find(|t| t.name == s.name) {
                None => {
                    return Err(AverageError::Missing {
                        name: name.clone(),
                        first: first_name.clone(),
                        tensor: s.name.clone(),
                    })
                }
                Some(t) if t.shape != s.shape => {
                    return Err(AverageError::Shape {
                        name: name.clone(),
                        first: first_name.clone(),
                        tensor: s.hf_name(first.config.model_type),
                        expected: s.shape.clone(),
                        found: t.shape.clone(),
                    })
                }
                Some(_) => debug_assert_eq!(m.specs[i].name, s.name),
            }
        }
        if m.specs.len() != first.specs.len() {
            let extra = m
                .specs
                .iter()
                .find(|t| !first.specs.iter().any(|s| s.name == t.name))
                .map(|t| t.name.clone())
                .unwrap_or_default();
            return Err(AverageError::Missing { name: first_name.clone(), first: name.clone(), tensor: extra });
        }
    }
    Ok(())
}

/// Weighted parameter average (weights are normalised to sum 1), accumulated in f64.
pub fn average(models: &[(String, &HostParams)], weights: Option<&[f64]>) -> Result<HostParams, AverageError> {
    check_compatible(models)?;
    let n = models.len();
    let w: Vec<f64> = match weights {
        Some(w) => {
            let s: f64 = w.iter().sum();
            w.iter().map(|x| x / s).collect()
        }
        None => vec![1.0 / n as f64; n],
    };
    let first = models[0].1;
    let mut out = first.clone();
    out.initialised.clear();
    for (i, vals) in out.values.iter_mut().enumerate() {
        let mut acc = vec![0f64; vals.len()];
        for ((_, m), &wk) in models.iter().zip(&w) {
            for (a, &v) in acc.iter_mut().zip(&m.values[i]) {
                *a += wk * v as f64;
            }
        }
        *vals = acc.into_iter().map(|v| v as f32).collect();
    }
    Ok(out)
}

/// The greedy soup: `scores[i]` is model i's own held-out score; `evaluate` scores a candidate average on
/// the held-out set. Returns the indices kept and the soup.
pub fn greedy_soup(
    models: &[(String, &HostParams)],
    scores: &[f64],
    mut evaluate: impl FnMut(&HostParams) -> f64,
) -> Result<(Vec<usize>, HostParams, f64), AverageError> {
    check_compatible(models)?;
    let mut order: Vec<usize> = (0..models.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut kept = vec![order[0]];
    let mut best = scores[order[0]];
    let mut soup = models[order[0]].1.clone();
    for &i in &order[1..] {
        let trial: Vec<(String, &HostParams)> =
            kept.iter().chain(std::iter::once(&i)).map(|&k| models[k].clone()).collect();
        let cand = average(&trial, None)?;
        let s = evaluate(&cand);
        if s >= best {
            kept.push(i);
            best = s;
            soup = cand;
        }
    }
    Ok((kept, soup, best))
}
