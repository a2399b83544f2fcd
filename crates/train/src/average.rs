//! FMA on checkpoints, as `ernie-ft average` does it: fine-tuned checkpoints loaded and checked
//! ([`Members::load`]), averaged uniformly or with weights ([`Members::average`]) or as a greedy soup scored
//! on a held-out labelled file ([`Members::greedy_soup`]), and saved as a checkpoint that records how it was
//! made ([`Members::save`]). The arithmetic is [`ernie_strategies::fma`]'s.

use crate::checkpoint::{self, Checkpoint};
use crate::eval;
use anyhow::{bail, Result};
use ernie_backend::Backend;
use ernie_data::{read_examples, Dataset, TextTokenizer};
use ernie_model::{Encoder, HostParams};
use ernie_strategies::fma;
use std::path::{Path, PathBuf};

/// Checkpoints that can be averaged (same model config, task, labels, max length and head seed).
pub struct Members {
    pub checkpoints: Vec<Checkpoint>,
}

/// Averaged weights and how they were made (`"average of 2 checkpoints"`, `"greedy soup of [...] ..."`).
pub struct Soup {
    pub params: HostParams,
    pub note: String,
}

impl Members {
    /// Load the checkpoints in `dirs`, to be averaged into `out`: `out` must not be one of them, and they
    /// must be averageable ([`checkpoint::check_averageable`]); errors name the directories.
    pub fn load(out: &Path, dirs: &[PathBuf]) -> Result<Self> {
        let inputs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        checkpoint::check_average_out(out, &inputs)?;
        let checkpoints: Vec<Checkpoint> = dirs.iter().map(|d| checkpoint::load(d)).collect::<Result<_>>()?;
        checkpoint::check_averageable(&checkpoints)?;
        Ok(Members { checkpoints })
    }

    fn named(&self) -> Vec<(String, &HostParams)> {
        self.checkpoints.iter().map(|c| (c.dir.display().to_string(), &c.params)).collect()
    }

    /// The uniform average, or the one weighted by `weights` (one per checkpoint, finite, not negative,
    /// not all zero; normalised by their sum).
    pub fn average(&self, weights: Option<&[f64]>) -> Result<Soup> {
        let n = self.checkpoints.len();
        if let Some(w) = weights {
            if w.len() != n {
                bail!("--weights has {} values for {n} checkpoints", w.len());
            }
            if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f64>() <= 0.0 {
                bail!("--weights {w:?}: the weights must be finite, not negative, and not all zero");
            }
        }
        Ok(Soup { params: fma::average(&self.named(), weights)?, note: format!("average of {n} checkpoints") })
    }

    /// The greedy soup: checkpoints added in order of their accuracy on the labelled file `holdout` (a
    /// held-out part of the training data, never dev), each kept only if the soup's accuracy does not drop.
    pub fn greedy_soup<B: Backend>(&self, b: &B, holdout: &Path) -> Result<Soup> {
        let named = self.named();
        let first = &self.checkpoints[0];
        let tok = TextTokenizer::from_dir(&first.dir)?;
        let ex = read_examples(holdout, &first.meta.task, true)?;
        let ds = Dataset::build(&ex, &tok, first.meta.max_len, &first.meta.labels)?;
        let score =
            |h: &HostParams| eval::evaluate(b, &Encoder::from_host(b, h), &ds, 64, tok.pad_id(), |_| {}).accuracy;
        let scores: Vec<f64> = self.checkpoints.iter().map(|c| score(&c.params)).collect();
        let (kept, params, best) = fma::greedy_soup(&named, &scores, score)?;
        let note = format!(
            "greedy soup of {:?} (held-out accuracy {best:.4})",
            kept.iter().map(|&k| &named[k].0).collect::<Vec<_>>()
        );
        Ok(Soup { params, note })
    }

    /// Write `soup` as a checkpoint in `out`: the first member's metadata and tokenizer, with the report
    /// `{"fma": note, "members": [dirs]}`.
    pub fn save(&self, out: &Path, soup: &Soup) -> Result<()> {
        let first = &self.checkpoints[0];
        let members: Vec<&Path> = self.checkpoints.iter().map(|c| c.dir.as_path()).collect();
        let mut meta = first.meta.clone();
        meta.report = serde_json::json!({ "fma": soup.note, "members": members });
        checkpoint::save(out, &soup.params, &meta, &first.dir)
    }
}
