//! Evaluation (accuracy, macro-F1, loss) and prediction with a model on any backend.

use crate::metrics::{accuracy, argmax_rows, macro_f1, Metrics};
use ernie_data::{Batch, Dataset};
use ernie_model::{Encoder, Tokens};
use ernie_tensor::Backend;

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

/// Predicted class of every example, in dataset order, and the mean CE when labelled.
pub fn predict<B: Backend>(
    b: &B,
    enc: &Encoder<B>,
    data: &Dataset,
    batch_size: usize,
    pad_id: u32,
    on_batch: impl FnMut(usize),
) -> (Vec<u32>, Option<f64>) {
    let (preds, loss, _) = predict_inner(b, enc, data, batch_size, pad_id, on_batch, false);
    (preds, loss)
}

/// [`predict`] that also returns every example's logits (`num_labels` values each), in dataset order.
pub fn predict_with_logits<B: Backend>(
    b: &B,
    enc: &Encoder<B>,
    data: &Dataset,
    batch_size: usize,
    pad_id: u32,
    on_batch: impl FnMut(usize),
) -> (Vec<u32>, Option<f64>, Vec<Vec<f32>>) {
    predict_inner(b, enc, data, batch_size, pad_id, on_batch, true)
}

fn predict_inner<B: Backend>(
    b: &B,
    enc: &Encoder<B>,
    data: &Dataset,
    batch_size: usize,
    pad_id: u32,
    mut on_batch: impl FnMut(usize),
    keep_logits: bool,
) -> (Vec<u32>, Option<f64>, Vec<Vec<f32>>) {
    let mut kept: Vec<Vec<f32>> = if keep_logits { vec![Vec::new(); data.len()] } else { Vec::new() };
    let mut preds = Vec::with_capacity(data.len());
    let mut loss = 0.0;
    // Evaluation order: batches of similar length pad less; results are put back in dataset order.
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| data.items()[i].ids.len());
    let mut out = vec![0u32; data.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let batch = data.collate(chunk, pad_id);
        let fw = enc.infer(b, &tokens_of(&batch));
        let logits = b.download(&fw.logits);
        if let Some(labels) = &batch.labels {
            let (ce, _) = b.softmax_ce(&fw.logits, &b.upload_ids(labels), enc.num_labels, 0.0);
            loss += b.download_f64(&ce).iter().sum::<f64>();
        }
        for (&i, p) in chunk.iter().zip(argmax_rows(&logits, enc.num_labels)) {
            out[i] = p;
        }
        if keep_logits {
            for (&i, row) in chunk.iter().zip(logits.chunks_exact(enc.num_labels)) {
                kept[i] = row.to_vec();
            }
        }
        on_batch(chunk.len());
    }
    preds.extend(out);
    (preds, data.is_labelled().then(|| loss / data.len().max(1) as f64), kept)
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
    let (pred, loss) = predict(b, enc, data, batch_size, pad_id, on_batch);
    let gold: Vec<u32> = data.items().iter().map(|it| it.label.unwrap_or(u32::MAX)).collect();
    Metrics {
        accuracy: accuracy(&pred, &gold),
        macro_f1: macro_f1(&pred, &gold, enc.num_labels),
        loss: loss.unwrap_or(f64::NAN),
        examples: data.len(),
    }
}
