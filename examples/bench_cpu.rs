//! ernie-ft's side of the CPU speed comparison, with the protocol of
//! ../shared/fixtures/scripts/bench_cpu.py: e5-small-zh with a 119-label head, batch 32 x seq 128, random
//! ids, all-ones mask; `train` = dropout 0.1 forward + backward + AdamW(lr 2e-5, wd 0.01), `infer` = eval
//! forward to the logits (`Encoder::classify`, what evaluation and `predict` run: the last layer's
//! feed-forward on the first tokens only), `encode` = eval forward to every token's final state
//! (`Encoder::infer`, what `encode` runs); 2 warm-up steps, 5 timed, median. Prints one JSON line.
//! `cargo run --release --example bench_cpu -- train|infer|encode [auto|as-is|transposed]`: the optional
//! second argument lays out inference's linear weights (`WeightLayout`; default auto, this host's choice),
//! to measure the layouts against each other on a host; every layout computes the same numbers.
use ernie_backend::{Cpu, RngStream, WeightLayout};
use ernie_ft_suite::e5_or_random;
use ernie_model::{Encoder, Tokens};
use ernie_optim::AdamWConfig;
use ernie_strategies::{Dropout, LabelledBatch, Recipe};
use ernie_train::TrainStep;
use std::time::Instant;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "train".into());
    let layout_arg = std::env::args().nth(2).unwrap_or_else(|| "auto".into());
    let layout = match layout_arg.as_str() {
        "auto" => WeightLayout::Auto,
        "as-is" => WeightLayout::AsIs,
        "transposed" => WeightLayout::Transposed,
        other => panic!("weight layout {other:?}: expected auto, as-is or transposed"),
    };
    let (b_, l_, labels_n) = (32usize, 128usize, 119usize);
    let t0 = Instant::now();
    let (host, what) = e5_or_random(labels_n);
    let load_s = t0.elapsed().as_secs_f64();
    let b = Cpu::<f32>::new().with_weight_layout(layout);
    let mut enc = Encoder::from_host(&b, &host);
    let r = RngStream::new(0, 1);
    let tokens = Tokens {
        batch: b_,
        seq: l_,
        ids: (0..b_ * l_).map(|i| r.word(i as u64) % host.config.vocab_size as u32).collect(),
        type_ids: vec![0; b_ * l_],
        task_ids: vec![],
        mask: vec![1; b_ * l_],
    };
    let labels: Vec<u32> = (0..b_).map(|i| r.word(1_000_000 + i as u64) % labels_n as u32).collect();
    // The anchor's torch.optim.AdamW does not clip.
    let optim = AdamWConfig { weight_decay: 0.01, max_grad_norm: None, ..Default::default() };
    let mut stepper = TrainStep::new(&b, &enc, Recipe::default(), Dropout { hidden: 0.1, attention: 0.1 }, optim, 0);
    let mut step = 0u64;
    let mut run = || {
        step += 1;
        if mode == "train" {
            stepper
                .run(&b, &mut enc, LabelledBatch { tokens: &tokens, labels: &labels }, step, 2e-5)
                .expect("finite loss");
        } else if mode == "infer" {
            std::hint::black_box(enc.classify(&b, &tokens).logits);
        } else {
            std::hint::black_box(enc.infer(&b, &tokens).final_hidden);
        }
    };
    let mut warm = vec![];
    for _ in 0..2 {
        let t = Instant::now();
        run();
        warm.push(t.elapsed().as_secs_f64());
    }
    let mut times = vec![];
    for _ in 0..5 {
        let t = Instant::now();
        run();
        times.push(t.elapsed().as_secs_f64());
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let med = sorted[2];
    println!(
        "{}",
        serde_json::json!({
            "engine": "ernie-ft", "mode": mode, "weights": what, "weight_layout": layout_arg, "threads": rayon::current_num_threads(), "batch": b_, "seq_len": l_,
            "load_s": load_s, "warmup_s": warm, "step_s": times, "median_s": med,
            "samples_per_s_median": b_ as f64 / med, "peak_rss_mb": ernie_train::memory::peak_rss_bytes().map(|x| x as f64 / 1048576.0),
        })
    );
}
