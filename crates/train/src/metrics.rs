//! Classification metrics: accuracy and macro-F1 (averaged over the classes that occur in the gold labels
//! or the predictions, as scikit-learn's `f1_score(average="macro")` does).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    pub examples: usize,
}

pub fn accuracy(pred: &[u32], gold: &[u32]) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / gold.len() as f64
}

pub fn macro_f1(pred: &[u32], gold: &[u32], classes: usize) -> f64 {
    let (mut tp, mut fp, mut fneg) = (vec![0usize; classes], vec![0usize; classes], vec![0usize; classes]);
    for (&p, &g) in pred.iter().zip(gold) {
        if p == g {
            tp[p as usize] += 1;
        } else {
            fp[p as usize] += 1;
            fneg[g as usize] += 1;
        }
    }
    let present: Vec<usize> = (0..classes).filter(|&c| tp[c] + fp[c] + fneg[c] > 0).collect();
    if present.is_empty() {
        return 0.0;
    }
    present
        .iter()
        .map(|&c| {
            let denom = 2 * tp[c] + fp[c] + fneg[c];
            if denom == 0 {
                0.0
            } else {
                2.0 * tp[c] as f64 / denom as f64
            }
        })
        .sum::<f64>()
        / present.len() as f64
}

/// Index of the largest logit of each row.
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<u32> {
    logits
        .chunks(classes)
        .map(|row| row.iter().enumerate().fold(0, |bi, (i, &v)| if v > row[bi] { i } else { bi }) as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn f1_by_hand() {
        // class 0: tp 1 fp 1 fn 1 -> f1 0.5 ; class 1: tp 1 fp 0 fn 1 -> 2/3 ; class 2: tp 0 fp 1 fn 0 -> 0
        let gold = [0, 0, 1, 1];
        let pred = [0, 1, 1, 2];
        assert!((macro_f1(&pred, &gold, 4) - (0.5 + 2.0 / 3.0 + 0.0) / 3.0).abs() < 1e-12);
        assert_eq!(accuracy(&pred, &gold), 0.5);
        assert_eq!(argmax_rows(&[0.1, 0.7, 0.2, 3.0, -1.0, 0.0], 3), vec![1, 0]);
    }
}
