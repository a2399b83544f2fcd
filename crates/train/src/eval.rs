//! Batched inference with a model on any backend: inputs are run in batches of similar length (sorted by
//! [`LengthOrder`], so batches carry little padding) and their results put back in input order.
//!
//! - [`predict`] / [`evaluate`]: the classes (and logits, loss, accuracy, macro-F1) of a tokenized
//!   [`Dataset`] held in memory, as training's evaluation does.
//! - [`windowed`]: the same over a stream of inputs of any length, window by window ([`Windows`]): read a
//!   window, tokenize it in parallel, run it sorted by length, hand the results to a sink in input order,
//!   drop it, continue. Memory is bounded by the window; `ernie-ft predict` ([`crate::inference`]) and
//!   `ernie-ft encode` ([`crate::embed`]) run on it. A stream that fits in one window is run exactly as
//!   [`predict`] runs a dataset.

use crate::metrics::{accuracy, argmax_rows, macro_f1, Metrics};
use anyhow::Result;
use ernie_backend::Backend;
use ernie_data::{Batch, Dataset, Encoded};
use ernie_model::{Encoder, Tokens};
use rayon::prelude::*;

/// Batches per window when none is given: a window holds `batch_size * WINDOW_BATCHES` inputs.
pub const WINDOW_BATCHES: usize = 64;

pub fn tokens_of(b: &Batch) -> Tokens {
    Tokens {
        batch: b.batch,
        seq: b.seq,
        ids: b.ids.clone(),
        type_ids: b.type_ids.clone(),
        task_ids: vec![],
        mask: b.mask.clone(),
    }
}

/// The order inputs are run in, within a window (ties keep input order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthOrder {
    /// Shortest first (prediction and evaluation).
    ShortestFirst,
    /// Longest first (embeddings: the largest batch, and so the peak memory, comes first).
    LongestFirst,
}

/// The positions `0..n` sorted by `len(i)` in `order`, ties in input order; batches are its chunks.
pub fn length_order(n: usize, len: impl Fn(usize) -> usize, order: LengthOrder) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    match order {
        LengthOrder::ShortestFirst => idx.sort_by_key(|&i| len(i)),
        LengthOrder::LongestFirst => idx.sort_by_key(|&i| std::cmp::Reverse(len(i))),
    }
    idx
}

/// How [`windowed`] groups a stream: windows of `window_batches` batches of `batch_size` inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Inputs per forward pass (at least 1).
    pub batch_size: usize,
    /// Batches per window (at least 1): the inputs held (read, tokenized, with their results) at once are
    /// `batch_size * window_batches`.
    pub window_batches: usize,
}

impl Windows {
    /// `batch_size` inputs per batch, [`WINDOW_BATCHES`] batches per window.
    pub fn new(batch_size: usize) -> Self {
        Self::with_batches(batch_size, WINDOW_BATCHES)
    }

    /// `batch_size` inputs per batch, `window_batches` batches per window (0 counts as 1 for both).
    pub fn with_batches(batch_size: usize, window_batches: usize) -> Self {
        Self { batch_size: batch_size.max(1), window_batches: window_batches.max(1) }
    }

    /// Inputs per window.
    pub fn inputs(&self) -> usize {
        self.batch_size.max(1).saturating_mul(self.window_batches.max(1))
    }
}

/// Runs a stream of inputs window by window: reads [`Windows::inputs`] of them, `prepare`s (tokenizes) the
/// window in parallel, runs it in batches sorted by length in `order` (`run` gets the rows of one batch and
/// their 0-based positions in the stream, and returns one result per row, in the rows' order), then hands
/// each input with its result to `sink`, in input order, and drops the window before reading the next.
///
/// The first error stops the run: an `Err` of `inputs` (a window is read whole before any of it runs), the
/// first failing input of a window in input order from `prepare`, or an error of `run` or `sink`. Results
/// of earlier windows have been given to `sink` by then.
pub fn windowed<X: Sync, R>(
    inputs: impl IntoIterator<Item = Result<X>>,
    windows: Windows,
    order: LengthOrder,
    prepare: impl Fn(&X) -> Result<Encoded> + Sync,
    mut run: impl FnMut(&[&Encoded], &[usize]) -> Result<Vec<R>>,
    mut sink: impl FnMut(X, R) -> Result<()>,
) -> Result<()> {
    let size = windows.inputs();
    let batch_size = windows.batch_size.max(1);
    let mut inputs = inputs.into_iter();
    let mut base = 0;
    loop {
        let window: Vec<X> = inputs.by_ref().take(size).collect::<Result<_>>()?;
        if window.is_empty() {
            return Ok(());
        }
        let prepared: Vec<Result<Encoded>> = window.par_iter().map(&prepare).collect();
        let encoded: Vec<Encoded> = prepared.into_iter().collect::<Result<_>>()?;
        let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(window.len()).collect();
        for batch in length_order(encoded.len(), |i| encoded[i].len(), order).chunks(batch_size) {
            let rows: Vec<&Encoded> = batch.iter().map(|&i| &encoded[i]).collect();
            let positions: Vec<usize> = batch.iter().map(|&i| base + i).collect();
            let out = run(&rows, &positions)?;
            anyhow::ensure!(out.len() == batch.len(), "internal: {} results for a batch of {}", out.len(), batch.len());
            for (&i, r) in batch.iter().zip(out) {
                results[i] = Some(r);
            }
        }
        drop(encoded);
        base += window.len();
        let done = window.len() < size;
        for (x, r) in window.into_iter().zip(results) {
            sink(x, r.expect("every input of a window is in one batch"))?;
        }
        if done {
            return Ok(());
        }
    }
}

/// The padded tokens of `rows` (as [`Dataset::collate`] pads them).
pub fn tokens_of_rows(rows: &[&Encoded], pad_id: u32) -> Tokens {
    let rows: Vec<(Vec<u32>, Vec<u32>)> = rows.iter().map(|e| (e.ids.clone(), e.type_ids.clone())).collect();
    Tokens::from_rows(&rows, pad_id)
}

/// The logits of a batch (`batch * num_labels`, row-major) and, given the labels, the sum of the rows' CE.
pub fn classify<B: Backend>(b: &B, enc: &Encoder<B>, tokens: &Tokens, labels: Option<&[u32]>) -> (Vec<f32>, f64) {
    let fw = enc.classify(b, tokens);
    let logits = b.download(&fw.logits);
    let loss = match labels {
        Some(labels) => {
            let (ce, _) = b.softmax_ce(&fw.logits, &b.upload_ids(labels), enc.num_labels, 0.0);
            b.download_f64(&ce).iter().sum::<f64>()
        }
        None => 0.0,
    };
    (logits, loss)
}

/// What [`predict`] returns, in dataset order.
#[derive(Clone, Debug, PartialEq)]
pub struct Predictions {
    /// The predicted class of every example.
    pub classes: Vec<u32>,
    /// Every example's logits (`num_labels` values each) when asked for, else empty.
    pub logits: Vec<Vec<f32>>,
    /// The mean CE when the dataset is labelled.
    pub loss: Option<f64>,
}

/// The predicted class of every example of `data` (and its logits with `keep_logits`), and the mean CE
/// when labelled. The examples run in batches of `batch_size` sorted shortest first (ties in dataset
/// order); `on_batch` gets the number of examples of each batch.
pub fn predict<B: Backend>(
    b: &B,
    enc: &Encoder<B>,
    data: &Dataset,
    batch_size: usize,
    pad_id: u32,
    keep_logits: bool,
    mut on_batch: impl FnMut(usize),
) -> Predictions {
    let n = data.len();
    let mut logits_of: Vec<Vec<f32>> = if keep_logits { vec![Vec::new(); n] } else { Vec::new() };
    let mut classes = vec![0u32; n];
    let mut loss = 0.0;
    let order = length_order(n, |i| data.items()[i].ids.len(), LengthOrder::ShortestFirst);
    for chunk in order.chunks(batch_size.max(1)) {
        let batch = data.collate(chunk, pad_id);
        let (logits, ce) = classify(b, enc, &tokens_of(&batch), batch.labels.as_deref());
        loss += ce;
        for (&i, p) in chunk.iter().zip(argmax_rows(&logits, enc.num_labels)) {
            classes[i] = p;
        }
        if keep_logits {
            for (&i, row) in chunk.iter().zip(logits.chunks_exact(enc.num_labels)) {
                logits_of[i] = row.to_vec();
            }
        }
        on_batch(chunk.len());
    }
    Predictions { classes, logits: logits_of, loss: data.is_labelled().then(|| loss / n.max(1) as f64) }
}

/// Accuracy, macro-F1 and loss on a labelled dataset.
pub fn evaluate<B: Backend>(
    b: &B,
    enc: &Encoder<B>,
    data: &Dataset,
    batch_size: usize,
    pad_id: u32,
    on_batch: impl FnMut(usize),
) -> Metrics {
    let p = predict(b, enc, data, batch_size, pad_id, false, on_batch);
    let gold: Vec<u32> = data.items().iter().map(|it| it.label.unwrap_or(u32::MAX)).collect();
    Metrics {
        accuracy: accuracy(&p.classes, &gold),
        macro_f1: macro_f1(&p.classes, &gold, enc.num_labels),
        loss: p.loss.unwrap_or(f64::NAN),
        examples: data.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    fn enc(len: usize) -> Encoded {
        Encoded { ids: vec![7; len], type_ids: vec![0; len] }
    }

    #[test]
    fn length_order_is_stable() {
        let lens = [3, 1, 3, 2, 1];
        assert_eq!(length_order(5, |i| lens[i], LengthOrder::ShortestFirst), vec![1, 4, 3, 0, 2]);
        assert_eq!(length_order(5, |i| lens[i], LengthOrder::LongestFirst), vec![0, 2, 3, 1, 4]);
    }

    /// Windows of 3 batches of 2: batches sorted within each window, results back in input order.
    #[test]
    fn windows_run_sorted_and_come_back_in_order() {
        let lens = [5, 1, 4, 2, 3, 6, 2, 9, 1, 1, 8, 7, 3, 2];
        let mut batches = Vec::new();
        let mut got = Vec::new();
        windowed(
            lens.iter().map(|&l| Ok(l)),
            Windows::with_batches(2, 3),
            LengthOrder::ShortestFirst,
            |&l| Ok(enc(l)),
            |rows, positions| {
                batches.push(positions.to_vec());
                Ok(rows.iter().map(|e| e.len() * 10).collect())
            },
            |l, r| {
                got.push((l, r));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(got, lens.iter().map(|&l| (l, l * 10)).collect::<Vec<_>>());
        let want: Vec<Vec<usize>> =
            vec![vec![1, 3], vec![4, 2], vec![0, 5], vec![8, 9], vec![6, 11], vec![10, 7], vec![13, 12]];
        assert_eq!(batches, want);
    }

    #[test]
    fn the_first_error_stops_the_stream() {
        // A bad input in the second window: the first window reaches the sink, nothing after it.
        let inputs = (0..10).map(|i| if i == 7 { Err(anyhow!("bad line {i}")) } else { Ok(i) });
        let mut seen = Vec::new();
        let err = windowed(
            inputs,
            Windows::with_batches(2, 2),
            LengthOrder::LongestFirst,
            |_| Ok(enc(1)),
            |rows, _| Ok(vec![(); rows.len()]),
            |i, ()| {
                seen.push(i);
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "bad line 7");
        assert_eq!(seen, vec![0, 1, 2, 3]);
        // prepare: the first failing input of the window, in input order.
        let err = windowed(
            (0..6).map(Ok),
            Windows::with_batches(3, 2),
            LengthOrder::ShortestFirst,
            |&i| if i >= 2 { Err(anyhow!("cannot tokenize {i}")) } else { Ok(enc(1)) },
            |rows, _| Ok(vec![(); rows.len()]),
            |_, ()| Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "cannot tokenize 2");
    }

    #[test]
    fn window_sizes() {
        assert_eq!(Windows::new(32).inputs(), 32 * WINDOW_BATCHES);
        assert_eq!(Windows::with_batches(0, 0).inputs(), 1);
        assert_eq!(Windows::with_batches(usize::MAX, 2).inputs(), usize::MAX);
    }
}
