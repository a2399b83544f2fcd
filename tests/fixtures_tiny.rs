//! The tiny random BERT against PyTorch + HF transformers (../shared/fixtures, copied into tests/fixtures):
//! every hidden state, the pooler output, logits, loss and every parameter gradient.
//!
//! Tolerances: the f64 engine must agree with the f64 reference to round-off (1e-10 relative: the fixture
//! README reports 1e-15-level agreement between independent f64 implementations; we leave room for a
//! different summation order). The f32 engine is compared with the f64 reference: f32 has 2^-24 ~ 6e-8
//! relative precision, and two layers of LayerNorm/softmax/GELU amplify that to ~1e-6; we use 1e-4 relative
//! on gradients and 1e-5 absolute on activations, as the fixture README suggests.

use ernie_backend::{Backend, Cpu, Float};
use ernie_ft_suite::{fixture_tokens, local_fixtures, max_abs_diff, read_fixture, rel_max_err, FixtureTensor};
use ernie_model::{BackwardWants, Encoder, ForwardOpts, HeadInit, HostParams, Tokens};
use std::collections::BTreeMap;

/// The tiny model (its 5-label head from the checkpoint) and the reference tensors of fixture file `file`.
fn tiny_model_and(file: &str) -> (HostParams, BTreeMap<String, FixtureTensor>) {
    let dir = local_fixtures();
    let host = HostParams::load_dir(&dir.join("tiny_random_model"), 5, HeadInit::seed(0)).unwrap();
    (host, read_fixture(&dir.join(file)))
}

/// Run forward + backward of mean cross-entropy; returns (hidden states, pooled, logits, loss, grads by name).
#[allow(clippy::type_complexity)]
fn run<T: Float>(
    host: &HostParams,
    t: &Tokens,
    labels: &[u32],
) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>, f64, BTreeMap<String, Vec<f64>>) {
    let b = Cpu::<T>::new();
    let enc = Encoder::from_host(&b, host);
    let fw = enc.forward(&b, t, &ForwardOpts::eval());
    let (loss, dlogits) = b.softmax_ce(&fw.logits, &b.upload_ids(labels), enc.num_labels, 1.0 / t.batch as f64);
    let mut grads = enc.zero_grads(&b);
    enc.backward(&b, &fw, &dlogits, BackwardWants { params: true, score_noise: false }, &mut grads);
    let hidden = fw.hidden.iter().map(|h| b.download_f64(h)).collect();
    let g = enc
        .specs
        .iter()
        .zip(&grads.bufs)
        .map(|(s, g)| (format!("bert.{}", s.name).replace("bert.classifier", "classifier"), b.download_f64(g)))
        .collect();
    (
        hidden,
        b.download_f64(&fw.pooled),
        b.download_f64(&fw.logits),
        b.download_f64(&loss).iter().sum::<f64>() / t.batch as f64,
        g,
    )
}

fn check(dtype: &str, act_tol: f64, grad_rtol: f64) {
    // The reference for both engines is the f64 file; the f32 file is compared too for the f32 engine.
    let (host, reference) = tiny_model_and("tiny_f64.safetensors");
    assert!(host.initialised.is_empty(), "the tiny checkpoint has a full head");
    let (t, labels) = fixture_tokens(&reference);
    let (hidden, pooled, logits, loss, grads) =
        if dtype == "f64" { run::<f64>(&host, &t, &labels) } else { run::<f32>(&host, &t, &labels) };
    for (i, h) in hidden.iter().enumerate() {
        let d = max_abs_diff(h, &reference[&format!("hidden_states.{i}")].data);
        assert!(d < act_tol, "{dtype}: hidden_states.{i} max abs diff {d:e}");
    }
    let d = max_abs_diff(&pooled, &reference["pooler_output"].data);
    assert!(d < act_tol, "{dtype}: pooler_output {d:e}");
    let d = max_abs_diff(&logits, &reference["logits"].data);
    assert!(d < act_tol, "{dtype}: logits {d:e}");
    let d = (loss - reference["loss"].data[0]).abs();
    assert!(d < act_tol, "{dtype}: loss {loss} vs {} ({d:e})", reference["loss"].data[0]);
    let mut checked = 0;
    for (name, g) in &grads {
        let want = &reference[&format!("grad.{name}")].data;
        if name.contains("attention.self.key.bias") {
            // Mathematically zero (softmax shift invariance): absolute tolerance only.
            assert!(max_abs_diff(g, want) < 1e-6, "{dtype}: grad {name}");
        } else {
            let e = rel_max_err(g, want);
            assert!(e < grad_rtol, "{dtype}: grad {name} relative error {e:e}");
        }
        checked += 1;
    }
    assert_eq!(checked, 41, "every parameter of the tiny model (5 embedding, 2 x 16 layer, 4 head) is checked");
}

#[test]
fn tiny_f64_matches_pytorch_to_roundoff() {
    check("f64", 1e-10, 1e-10);
}

#[test]
fn tiny_f32_matches_pytorch() {
    check("f32", 1e-5, 1e-4);
}

#[test]
fn tiny_f32_fixture_file_agrees_with_f32_engine() {
    // The PyTorch f32 run and ours differ only by f32 summation order.
    let (host, fx) = tiny_model_and("tiny_f32.safetensors");
    let (t, labels) = fixture_tokens(&fx);
    let (_, _, logits, loss, _) = run::<f32>(&host, &t, &labels);
    assert!(max_abs_diff(&logits, &fx["logits"].data) < 1e-5);
    assert!((loss - fx["loss"].data[0]).abs() < 1e-5);
}

#[test]
fn cache_free_inference_equals_the_eval_forward() {
    // `Encoder::infer` (evaluation, prediction, encode) runs the same layers as the training forward but
    // drops each layer's activations: its outputs must be the eval forward's, bit for bit, padding included.
    let (host, fx) = tiny_model_and("tiny_f64.safetensors");
    let (t, _) = fixture_tokens(&fx);
    assert!(t.mask.contains(&0), "the fixture batch is padded");
    let b = Cpu::<f32>::new();
    let enc = Encoder::from_host(&b, &host);
    let fw = enc.forward(&b, &t, &ForwardOpts::eval());
    let inf = enc.infer(&b, &t);
    assert_eq!(b.download(&inf.logits), b.download(&fw.logits));
    assert_eq!(b.download(&inf.pooled), b.download(&fw.pooled));
    assert_eq!(b.download(&inf.final_hidden), b.download(fw.final_hidden()));
}

#[test]
fn first_token_classification_equals_the_full_inference() {
    // `Encoder::classify` (evaluation, `predict`) carries only the first token of each row through the last
    // layer's output projection and feed-forward block: the same pooled states and logits as the full
    // inference up to f32 round-off (its GEMMs run on fewer rows), and PyTorch's logits as closely.
    let (host, fx) = tiny_model_and("tiny_f64.safetensors");
    let (t, _) = fixture_tokens(&fx);
    let b = Cpu::<f32>::new();
    let enc = Encoder::from_host(&b, &host);
    let inf = enc.infer(&b, &t);
    let cls = enc.classify(&b, &t);
    assert_eq!(b.len(&cls.logits), t.batch * 5);
    assert!(max_abs_diff(&b.download_f64(&cls.pooled), &b.download_f64(&inf.pooled)) < 1e-6);
    let logits = b.download_f64(&cls.logits);
    assert!(max_abs_diff(&logits, &b.download_f64(&inf.logits)) < 1e-6);
    assert!(max_abs_diff(&logits, &fx["logits"].data) < 1e-5);
}
