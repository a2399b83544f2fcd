//! Tokenized examples, batching and padding.

use rayon::prelude::*;

use super::{Example, LabelSet};
use crate::error::{Error, Result};
use crate::tokenize::{Encoded, TextTokenizer};

/// One tokenized example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Class index, `None` for unlabelled (test) data.
    pub label: Option<u32>,
    /// The example's `id` field, carried through for prediction files.
    pub id: Option<String>,
    /// 1-based line in the source file.
    pub line: usize,
}

/// Tokenized examples, all labelled or all unlabelled.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    items: Vec<Item>,
    labelled: bool,
}

/// A padded batch, row-major `[batch, seq]` buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub batch: usize,
    /// Length of the longest row; shorter rows are right-padded.
    pub seq: usize,
    pub ids: Vec<u32>,
    /// 0 on padding.
    pub type_ids: Vec<u32>,
    /// 1 on real tokens, 0 on padding.
    pub mask: Vec<u32>,
    /// Class indices, `Some` when the dataset is labelled.
    pub labels: Option<Vec<u32>>,
    pub ids_of_examples: Vec<Option<String>>,
}

impl Batch {
    /// Pads raw encodings (e.g. texts typed by a user) into a batch without labels or ids.
    pub fn from_encoded(rows: &[Encoded], pad_id: u32) -> Self {
        let padded = pad_rows(rows.iter().map(|e| (e.ids.as_slice(), e.type_ids.as_slice())), pad_id);
        padded.into_batch(None, vec![None; rows.len()])
    }
}

impl Dataset {
    /// Tokenizes `examples` in parallel. If any example has a label, all must, and all must be in `labels`
    /// (errors name the example's file and line).
    pub fn build(examples: &[Example], tokenizer: &TextTokenizer, max_len: usize, labels: &LabelSet) -> Result<Self> {
        let labelled = examples.iter().any(|e| e.label.is_some());
        let classes: Vec<Option<u32>> = examples
            .iter()
            .map(|e| if labelled { labels.index_of(e).map(Some) } else { Ok(None) })
            .collect::<Result<_>>()?;
        // Fail once, up front, rather than once per example.
        let pair = examples.iter().any(|e| e.text_b.is_some());
        let special = tokenizer.num_special_tokens(pair);
        if max_len <= special {
            return Err(Error::MaxLenTooSmall { max_len, special });
        }
        let items = examples
            .par_iter()
            .zip(classes)
            .map(|(e, label)| {
                let enc = tokenizer.encode(&e.text_a, e.text_b.as_deref(), max_len).map_err(|err| Error::Data {
                    path: e.file.to_path_buf(),
                    line: Some(e.line),
                    message: err.to_string(),
                })?;
                Ok(Item { ids: enc.ids, type_ids: enc.type_ids, label, id: e.id.clone(), line: e.line })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { items, labelled })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn is_labelled(&self) -> bool {
        self.labelled
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// Index batches covering every example exactly once, in file order or shuffled
    /// deterministically by `shuffle_seed` (use e.g. `seed + epoch` for a new order per epoch).
    /// The last batch may be smaller.
    ///
    /// # Panics
    /// If `batch_size` is 0 (validate user input before).
    pub fn batches(&self, batch_size: usize, shuffle_seed: Option<u64>) -> Vec<Vec<usize>> {
        assert!(batch_size > 0, "batch_size must be positive");
        let order = match shuffle_seed {
            Some(seed) => permutation(self.len(), seed),
            None => (0..self.len()).collect(),
        };
        order.chunks(batch_size).map(<[usize]>::to_vec).collect()
    }

    /// Pads the rows `indices` to the longest of them.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn collate(&self, indices: &[usize], pad_id: u32) -> Batch {
        let rows: Vec<&Item> = indices.iter().map(|&i| &self.items[i]).collect();
        let padded = pad_rows(rows.iter().map(|r| (r.ids.as_slice(), r.type_ids.as_slice())), pad_id);
        let labels = self.labelled.then(|| rows.iter().map(|r| r.label.unwrap_or(0)).collect());
        padded.into_batch(labels, rows.iter().map(|r| r.id.clone()).collect())
    }
}

struct Padded {
    batch: usize,
    seq: usize,
    ids: Vec<u32>,
    type_ids: Vec<u32>,
    mask: Vec<u32>,
}

impl Padded {
    fn into_batch(self, labels: Option<Vec<u32>>, ids_of_examples: Vec<Option<String>>) -> Batch {
        Batch {
            batch: self.batch,
            seq: self.seq,
            ids: self.ids,
            type_ids: self.type_ids,
            mask: self.mask,
            labels,
            ids_of_examples,
        }
    }
}

fn pad_rows<'a>(rows: impl Iterator<Item = (&'a [u32], &'a [u32])> + Clone, pad_id: u32) -> Padded {
    let batch = rows.clone().count();
    let seq = rows.clone().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let mut ids = vec![pad_id; batch * seq];
    let mut type_ids = vec![0; batch * seq];
    let mut mask = vec![0; batch * seq];
    for (b, (row_ids, row_types)) in rows.enumerate() {
        let start = b * seq;
        let n = row_ids.len();
        ids[start..start + n].copy_from_slice(row_ids);
        type_ids[start..start + n].copy_from_slice(row_types);
        mask[start..start + n].fill(1);
    }
    Padded { batch, seq, ids, type_ids, mask }
}

/// Splits off `round(fraction * n)` examples chosen by `seed` (e.g. a validation part of TRAIN).
/// Both parts keep file order. `fraction` is clamped to `[0, 1]` (NaN counts as 0).
pub fn split_holdout(examples: Vec<Example>, fraction: f64, seed: u64) -> (Vec<Example>, Vec<Example>) {
    let n = examples.len();
    let fraction = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
    // Exact for any realistic n; the cast saturates rather than wraps.
    let n_hold = ((n as f64) * fraction).round() as usize;
    let mut in_holdout = vec![false; n];
    for &i in permutation(n, seed).iter().take(n_hold) {
        in_holdout[i] = true;
    }
    let (mut train, mut holdout) = (Vec::new(), Vec::new());
    for (e, hold) in examples.into_iter().zip(in_holdout) {
        if hold {
            holdout.push(e);
        } else {
            train.push(e);
        }
    }
    (train, holdout)
}

/// Fisher-Yates shuffle of `0..n` driven by SplitMix64: tiny, fast, and stable across platforms and
/// crate versions (unlike `rand`'s algorithms), so a seed reproduces a run forever.
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough value in `0..bound` (multiply-shift; bias < bound / 2^64).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs for seed 0 from the reference implementation (Vigna).
        let mut r = SplitMix64(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn permutation_is_a_permutation() {
        for n in [0, 1, 2, 17, 1000] {
            let mut p = permutation(n, 42);
            p.sort_unstable();
            assert_eq!(p, (0..n).collect::<Vec<_>>());
        }
    }

    /// Pinned: runs reproduce their data order and `--holdout` split forever, and
    /// scripts/gpu/finetune_torch.py (`splitmix_permutation`, `--holdout`) holds out the same examples; these
    /// values are what that script computes.
    #[test]
    fn permutation_reference_values() {
        assert_eq!(permutation(10, 7), [9, 5, 8, 6, 1, 2, 4, 7, 0, 3]);
        // The first examples held out of IFLYTEK's train.partial.json (5,951 lines) by `--holdout`'s seed.
        assert_eq!(permutation(5951, 1234)[..8], [2889, 5508, 5891, 5206, 1151, 3368, 2112, 106]);
    }
}
