//! CPU speed of e5-small-zh at batch 32 x seq 128 (the PyTorch anchor's setup, see
//! ../shared/fixtures/scripts/bench_cpu.py): one training step (forward + backward with dropout 0.1 +
//! AdamW) and inference. Run: `cargo bench --bench cpu_encoder`; the side-by-side ratio against PyTorch:
//! `scripts/bench_cpu_ratio.sh`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ernie_backend::{Cpu, RngStream};
use ernie_ft_suite::e5_or_random;
use ernie_model::{Encoder, Tokens};
use ernie_optim::AdamWConfig;
use ernie_strategies::{Dropout, LabelledBatch, Recipe};
use ernie_train::TrainStep;

const B: usize = 32;
const L: usize = 128;
const LABELS: usize = 119;

fn batch(vocab: usize) -> (Tokens, Vec<u32>) {
    let r = RngStream::new(0, 1);
    let t = Tokens {
        batch: B,
        seq: L,
        ids: (0..B * L).map(|i| r.word(i as u64) % vocab as u32).collect(),
        type_ids: vec![0; B * L],
        task_ids: vec![],
        mask: vec![1; B * L],
    };
    (t, (0..B).map(|i| r.word(100_000 + i as u64) % LABELS as u32).collect())
}

fn bench(c: &mut Criterion) {
    let (host, what) = e5_or_random(LABELS);
    eprintln!("cpu_encoder: {what}, {} threads", rayon::current_num_threads());
    let b = Cpu::<f32>::new();
    let mut enc = Encoder::from_host(&b, &host);
    let (tokens, labels) = batch(host.config.vocab_size);
    let mut g = c.benchmark_group("e5_small_b32_l128");
    g.sample_size(10).throughput(Throughput::Elements(B as u64));
    g.bench_function("inference", |bench| bench.iter(|| enc.infer(&b, &tokens).logits));
    // The anchor's torch.optim.AdamW does not clip.
    let optim = AdamWConfig { weight_decay: 0.01, max_grad_norm: None, ..Default::default() };
    let mut stepper = TrainStep::new(&b, &enc, Recipe::default(), Dropout { hidden: 0.1, attention: 0.1 }, optim, 0);
    let mut step = 0u64;
    g.bench_function("train_step_adamw", |bench| {
        bench.iter(|| {
            step += 1;
            stepper
                .run(&b, &mut enc, LabelledBatch { tokens: &tokens, labels: &labels }, step, 2e-5)
                .expect("finite loss");
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
