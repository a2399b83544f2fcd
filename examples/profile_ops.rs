//! Times each CPU op of one e5-small layer at batch 32 x seq 128 (where the forward's time goes).
//! `cargo run --release --example profile_ops`
use ernie_backend::cpu::ops;
use ernie_backend::{AttnShape, RngStream};
use std::time::Instant;

fn time<R>(name: &str, reps: usize, mut f: impl FnMut() -> R) {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(f());
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
    println!("{name:<28} {ms:8.2} ms   x12 layers = {:7.1} ms", ms * 12.0);
}

fn main() {
    let (m, h, i) = (32 * 128, 384, 1536);
    let r = RngStream::new(1, 2);
    let v = |n: usize| (0..n).map(|k| r.normal(k as u64) * 0.1).collect::<Vec<f32>>();
    let (x, w, wi, wo, xi) = (v(m * h), v(h * h), v(i * h), v(h * i), v(m * i));
    let b = v(i);
    time("linear 4096x384x384 (x4)", 5, || ops::linear_fwd(&x, &w, Some(&b[..h]), m, h, h));
    time("linear 4096x1536x384", 5, || ops::linear_fwd(&x, &wi, Some(&b), m, i, h));
    time("linear 4096x384x1536", 5, || ops::linear_fwd(&xi, &wo, Some(&b[..h]), m, h, i));
    let gf = (2.0 * m as f64 * h as f64 * i as f64) / 1e9;
    let t = Instant::now();
    for _ in 0..5 {
        std::hint::black_box(ops::linear_fwd(&x, &wi, Some(&b), m, i, h));
    }
    println!("  -> {:.1} GFLOP/s", gf * 5.0 / t.elapsed().as_secs_f64());
    let a = AttnShape { batch: 32, seq: 128, heads: 12, head_dim: 32 };
    let mask = vec![1u32; m];
    time("attention fwd (p=0)", 3, || ops::attention_fwd(a, &x, &x, &x, &mask, None, 0.0, r));
    time("attention fwd (p=0.1)", 3, || ops::attention_fwd(a, &x, &x, &x, &mask, None, 0.1, r));
    let (ctx, probs) = ops::attention_fwd(a, &x, &x, &x, &mask, None, 0.1, r);
    time("attention bwd (p=0.1)", 3, || ops::attention_bwd(a, &ctx, &x, &x, &x, &probs, 0.1, r, false));
    time("gelu fwd 4096x1536", 5, || ops::gelu_fwd(&xi));
    time("gelu bwd", 5, || ops::gelu_bwd(&xi, &xi));
    time("layernorm+res fwd (x2)", 5, || ops::layer_norm_fwd(&x, Some(&x), &b[..h], &b[..h], 1e-12, h));
    time("dropout 4096x384 (x3)", 5, || ops::dropout(&x, 0.1, r));
    time("adv noise on scores (adv)", 3, || ops::randn_key_masked::<f32>(a, &mask, 1.0, r));
    time("linear bwd input 384<-1536", 5, || ops::linear_bwd_input(&x, &wo, m, h, i));
    let mut dw = vec![0.0; h * i];
    time("linear bwd params 384x1536", 5, || ops::linear_bwd_params(&x, &xi, m, h, i, &mut dw, None));
}
