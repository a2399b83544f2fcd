//! CPU speed of e5-small-zh at batch 32 x seq 128 (the PyTorch anchor's setup, see
//! ../shared/fixtures/scripts/bench_cpu.py): one training step (forward + backward with dropout 0.1 +
//! AdamW) and inference. Run: `cargo bench --bench cpu_encoder`; the side-by-side ratio against PyTorch:
//! `scripts/bench_cpu_ratio.sh`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ernie_ft_suite::e5_or_random;
use ernie_model::{BackwardWants, Encoder, ForwardOpts, Tokens};
use ernie_tensor::{AdamWStep, Backend, Cpu, ParamSlot, RngStream};

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
    let labels = b.upload_ids(&labels);
    let mut g = c.benchmark_group("e5_small_b32_l128");
    g.sample_size(10).throughput(Throughput::Elements(B as u64));
    g.bench_function("inference", |bench| {
        bench.iter(|| enc.infer(&b, &tokens).logits)
    });
    let mut grads = enc.zero_grads(&b);
    let mut m: Vec<Vec<f32>> = enc.specs.iter().map(|s| vec![0.0; s.numel()]).collect();
    let mut v = m.clone();
    let mut step = 0u64;
    g.bench_function("train_step_adamw", |bench| {
        bench.iter(|| {
            step += 1;
            grads.zero(&b);
            let opts = ForwardOpts { train: true, hidden_dropout: 0.1, attn_dropout: 0.1, rng: RngStream::new(0, step), score_noise: None, row_offset: 0 };
            let fw = enc.forward(&b, &tokens, &opts);
            let (_, dl) = b.softmax_ce(&fw.logits, &labels, LABELS, 1.0 / B as f64);
            enc.backward(&b, &fw, &dl, BackwardWants { params: true, score_noise: false }, &mut grads);
            let mut slots: Vec<ParamSlot<'_, Vec<f32>>> = enc
                .params
                .iter_mut()
                .zip(&grads.bufs)
                .zip(m.iter_mut().zip(v.iter_mut()))
                .zip(&enc.specs)
                .map(|(((p, g), (m, v)), s)| ParamSlot { param: p, grad: g, m, v, lr_mult: 1.0, decay: s.weight_decay() })
                .collect();
            b.adamw(&mut slots, &AdamWStep { lr: 2e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, step, grad_scale: 1.0 });
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
