//! Same seed and step -> same dropout masks and the same gradients, bit for bit, on any thread count.

use ernie_backend::{Backend, Cpu, RngStream};
use ernie_ft_suite::local_fixtures;
use ernie_model::{BackwardWants, Encoder, ForwardOpts, HeadInit, HostParams, Tokens};

fn step(threads: usize, seed: u64) -> (Vec<f32>, Vec<Vec<f32>>) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let host = HostParams::load_dir(&local_fixtures().join("tiny_random_model"), 5, HeadInit::seed(0)).unwrap();
        let b = Cpu::<f32>::new();
        let enc = Encoder::from_host(&b, &host);
        let rows: Vec<(Vec<u32>, Vec<u32>)> = (0..9)
            .map(|r| ((0..(20 + 3 * r)).map(|i| 1 + ((i * 7 + r * 13) % 90) as u32).collect(), vec![0; 20 + 3 * r]))
            .collect();
        let t = Tokens::from_rows(&rows, 0);
        let opts = ForwardOpts::train(0.1, 0.1, RngStream::new(seed, 17));
        let fw = enc.forward(&b, &t, &opts);
        let (_, dl) = b.softmax_ce(&fw.logits, &vec![1; 9], 5, 1.0 / 9.0);
        let mut g = enc.zero_grads(&b);
        enc.backward(&b, &fw, &dl, BackwardWants { params: true, score_noise: false }, &mut g);
        (fw.logits.clone(), g.bufs)
    })
}

#[test]
fn dropout_and_gradients_do_not_depend_on_thread_count() {
    let one = step(1, 5);
    assert_eq!(one, step(2, 5));
    assert_eq!(one, step(3, 5));
    assert_ne!(one.0, step(1, 6).0, "another seed gives other masks");
}
