//! The transfer budget of one training step on the CUDA backend, counted by the backend itself
//! (`CudaBackend::transfers`): for every strategy, ONE upload of the caller's data (the batch's tokens and
//! labels, doubled under R-Drop, shared by adv's three forwards) and ONE read of the device (loss, its parts,
//! the correct count, the gradient norm and the clip factor together, at the end). On a GPU, and on the host
//! emulation of the kernels (a small random model, and bf16 for the plain step only: the emulation is
//! slow). The step's values are checked against the CPU as well, which runs every strategy's device-side
//! statistics on the emulation.
//!
//! Besides the data, ops upload tables they build for their own launches (the embedding backward's
//! segments, the AdamW and sum-of-squares tables): those are counted apart, printed and bounded.

mod common;

use common::on_backends;
use ernie_backend::{Backend, Cpu};
use ernie_cuda::{CudaBackend, Transfers};
use ernie_model::{Encoder, HostParams, ModelConfig, Tokens};
use ernie_optim::{AdamWConfig, STAT_SLOTS};
use ernie_strategies::{stat, AdvConfig, Dropout, LabelledBatch, RDropConfig, Recipe, StepReport};
use ernie_train::TrainStep;

fn config() -> ModelConfig {
    ModelConfig::bert(23, 16, 1, 2, 24, 16)
}

fn batch() -> (Tokens, Vec<u32>) {
    let rows: Vec<(Vec<u32>, Vec<u32>)> = (0..3)
        .map(|r| {
            (
                (0..(4 + 2 * r)).map(|i| 1 + ((i * 7 + r * 5) % 20) as u32).collect(),
                (0..(4 + 2 * r)).map(|i| u32::from(i > 2)).collect(),
            )
        })
        .collect();
    (Tokens::from_rows(&rows, 0), vec![0, 2, 1])
}

/// One update with `recipe` on a fresh model; `before` runs after the setup (whose uploads of the weights
/// are not the step's) and just before the update.
fn one_step<B: Backend>(b: &B, recipe: &Recipe, before: impl FnOnce()) -> StepReport {
    let host = HostParams::random(config(), 3, 4);
    let mut enc = Encoder::from_host(b, &host);
    let (t, y) = batch();
    let mut stepper =
        TrainStep::new(b, &enc, *recipe, Dropout { hidden: 0.1, attention: 0.1 }, AdamWConfig::default(), 9);
    before();
    stepper.run(b, &mut enc, LabelledBatch { tokens: &t, labels: &y }, 1, 1e-3).expect("finite loss")
}

fn counted(b: &CudaBackend, recipe: &Recipe) -> (Transfers, StepReport) {
    let start = std::cell::Cell::new(Transfers::default());
    let rep = one_step(b, recipe, || start.set(b.transfers()));
    (b.transfers() - start.get(), rep)
}

#[test]
fn one_upload_and_one_read_per_training_step() {
    on_backends("one_upload_and_one_read_per_training_step", |g| {
        let cpu = Cpu::<f32>::new();
        let rdrop = Some(RDropConfig { alpha: 1.0 });
        let adv = Some(AdvConfig { epsilon: 0.5, ..AdvConfig::default() });
        let rows = [
            ("base", Recipe::default()),
            ("adv", Recipe { adv, ..Recipe::default() }),
            ("rdrop", Recipe { rdrop, ..Recipe::default() }),
            ("adv+rdrop+layer-decay", Recipe { adv, rdrop, layer_decay: Some(0.8) }),
        ];
        for (name, recipe) in rows {
            let want = one_step(&cpu, &recipe, || ());
            for (gpu, precision) in g.both() {
                if g.emulated && precision != ernie_cuda::Precision::F32 && name != "base" {
                    continue; // the emulation is slow; transfers do not depend on the precision
                }
                let (t, rep) = counted(gpu, &recipe);
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "{name} ({precision:?}{}): {} upload(s) of data ({} bytes), {} download(s) ({} bytes), {} launch-table upload(s) ({} bytes)",
                    if g.emulated { ", emulated" } else { "" },
                    t.uploads,
                    t.upload_bytes,
                    t.downloads,
                    t.download_bytes,
                    t.table_uploads,
                    t.table_upload_bytes
                );
                assert_eq!(t.downloads, 1, "{name} {precision:?}: device reads in one step");
                assert_eq!(
                    t.download_bytes,
                    8 * (stat::LEN + STAT_SLOTS) as u64,
                    "{name}: the one read is the step's statistics"
                );
                assert_eq!(t.uploads, 1, "{name} {precision:?}: uploads of the batch in one step");
                // Launch tables: the optimizer's two multi-tensor tables (sum of squares, AdamW) and at most
                // one of embedding-backward segments per backward (adv's probe stops above the embeddings);
                // evenly spaced rows (the [CLS] gather and its scatter) need none.
                assert!(
                    t.table_uploads <= 2 + rep.backwards as u64,
                    "{name}: {} launch-table uploads",
                    t.table_uploads
                );
                // The values read back are the step's: as on the CPU (fp32; adv's noise direction is round-off
                // of a tiny KL, hence its looser bound, as in model_parity.rs).
                if precision == ernie_cuda::Precision::F32 {
                    let tol = if recipe.adv.is_some() { 1e-3 } else { 1e-5 };
                    assert!(
                        (rep.loss - want.loss).abs() <= tol * want.loss.abs().max(1.0),
                        "{name}: loss {} vs CPU {}",
                        rep.loss,
                        want.loss
                    );
                    assert!(
                        (rep.ce - want.ce).abs() <= tol * want.ce.abs().max(1.0),
                        "{name}: ce {} vs CPU {}",
                        rep.ce,
                        want.ce
                    );
                    assert_eq!(rep.rdrop_kl.is_some(), want.rdrop_kl.is_some());
                    assert_eq!(rep.adv_kl.is_some(), want.adv_kl.is_some());
                    assert_eq!(rep.correct, want.correct, "{name}: correct predictions");
                }
                assert!(rep.loss.is_finite() && rep.correct <= 3);
                assert_eq!((rep.forwards, rep.backwards), (want.forwards, want.backwards));
            }
        }
    });
}
