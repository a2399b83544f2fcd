//! Inference cut into parts of rows and split between lanes (the CPU: one per thread, each running its
//! parts' whole forwards in turn) computes every row's numbers bit for bit as the whole batch uncut on one
//! lane does, at the model's real widths (hidden 384, feed-forward 1536: the GEMM shapes evaluation,
//! `predict` and `encode` run), whatever the layout of the linear weights (`WeightLayout`).

use ernie_backend::{Backend, Cpu, WeightLayout};
use ernie_ft_suite::E5_SMALL_CONFIG;
use ernie_model::{Encoder, HostParams, ModelConfig, Tokens};

/// (logits, pooled, final hidden states of `infer`; logits, pooled of `classify`) on a pool of `threads`,
/// batches cut into parts of about `part_tokens` tokens (`None`: one part per lane), linear weights laid out
/// as `layout` says.
fn outputs(
    host: &HostParams,
    t: &Tokens,
    threads: usize,
    part_tokens: Option<usize>,
    layout: WeightLayout,
) -> (usize, [Vec<f32>; 5]) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let b = Cpu::<f32>::new().with_inference_part_tokens(part_tokens).with_weight_layout(layout);
        let enc = Encoder::from_host(&b, host);
        let inf = enc.infer(&b, t);
        let cls = enc.classify(&b, t);
        let d = |x| b.download(x);
        (b.inference_lanes(), [d(&inf.logits), d(&inf.pooled), d(&inf.final_hidden), d(&cls.logits), d(&cls.pooled)])
    })
}

#[test]
fn lanes_compute_every_row_as_the_whole_batch_does() {
    let mut config = ModelConfig::from_json(E5_SMALL_CONFIG).unwrap();
    config.num_hidden_layers = 2;
    let host = HostParams::random(config, 7, 3);
    // Pairs of different lengths (padding in every row but the longest), 7 rows of 96 tokens. Uncut on one
    // lane is the reference; 2 lanes split them 4 + 3, 3 lanes 3 + 2 + 2, and 4 lanes again 3 + 2 + 2 (a
    // part of one row would sum in another order); parts of 64 tokens (2-row parts at the least: 3 + 2 + 2
    // on one lane) and of the default size (4 + 3 on one lane) are cut on every lane count.
    let rows: Vec<(Vec<u32>, Vec<u32>)> = (0..7)
        .map(|r| {
            let n = 30 + 11 * r;
            let ids = (0..n).map(|i| 1 + ((i * 31 + r * 17) % 5000) as u32).collect();
            (ids, (0..n).map(|i| u32::from(i >= n / 2)).collect())
        })
        .collect();
    let t = Tokens::from_rows(&rows, 0);
    let (lanes, whole) = outputs(&host, &t, 1, None, WeightLayout::AsIs);
    assert_eq!(lanes, 1);
    let default = Cpu::<f32>::new().inference_part_tokens();
    assert!(default.is_some_and(|d| d < t.batch * t.seq), "the default parts must cut this batch");
    for layout in [WeightLayout::AsIs, WeightLayout::Transposed, WeightLayout::Auto] {
        for part_tokens in [None, Some(64), default] {
            for threads in [1, 2, 3, 4] {
                let (lanes, split) = outputs(&host, &t, threads, part_tokens, layout);
                assert_eq!(lanes, threads);
                same(&whole, &split, &format!("{layout:?}, {threads} lanes, parts of {part_tokens:?} tokens"));
            }
        }
    }
    // One row alone (a single line to `predict`): its classification is a product of one row.
    let one = Tokens::from_rows(&rows[..1], 0);
    let (_, as_is) = outputs(&host, &one, 1, None, WeightLayout::AsIs);
    let (_, transposed) = outputs(&host, &one, 1, None, WeightLayout::Transposed);
    same(&as_is, &transposed, "one row, weights transposed");
}

fn same(whole: &[Vec<f32>; 5], split: &[Vec<f32>; 5], what: &str) {
    for (i, (a, b)) in whole.iter().zip(split).enumerate() {
        assert_eq!(a.len(), b.len(), "output {i}, {what}");
        assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "output {i}, {what}: differs");
    }
}

/// Small widths and short rows take gemm's small-product paths, where the weight's layout changes the
/// order of summation: there the transposed layout must fall back to the weight as it is.
#[test]
fn weight_layouts_agree_on_small_widths() {
    let mut config = ModelConfig::from_json(E5_SMALL_CONFIG).unwrap();
    (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size) =
        (2, 32, 2, 64);
    let host = HostParams::random(config, 5, 3);
    for lens in [vec![1], vec![4], vec![3, 9], vec![2, 5, 17], vec![40, 40]] {
        let rows: Vec<(Vec<u32>, Vec<u32>)> =
            lens.iter().map(|&n| ((0..n).map(|i| 1 + (i * 7 + n) as u32 % 300).collect(), vec![0; n])).collect();
        let t = Tokens::from_rows(&rows, 0);
        let (_, as_is) = outputs(&host, &t, 1, None, WeightLayout::AsIs);
        let (_, transposed) = outputs(&host, &t, 1, None, WeightLayout::Transposed);
        same(&as_is, &transposed, &format!("rows of {lens:?} tokens, weights transposed"));
    }
}
