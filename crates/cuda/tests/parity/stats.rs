//! A training step's statistics on the device, bit-identical to Cpu<f32>: batch means of per-row losses,
//! the count of correct predictions (ties included), the loss from its parts, and the clip factor with its
//! guard (NaN when the guard is not finite). All f64 in the reference's order, so nothing may differ.

use crate::common::*;
use crate::cpu32;
use ernie_backend::{Backend, Clip};
use proptest::prelude::*;

fn same_bits(what: &str, got: &[f64], want: &[f64]) -> Result<(), TestCaseError> {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        prop_assert!(g.to_bits() == w.to_bits(), "{}: slot {}: {:e} vs reference {:e}", what, i, g, w);
    }
    prop_assert_eq!(got.len(), want.len());
    Ok(())
}

#[test]
fn stats_ops_are_exact() {
    on_backends("stats_ops_are_exact", |g| {
        check(
            g.cases(24),
            (1usize..70, 1usize..40, -2.0f64..2.0, 0.0f64..4.0, 0u8..4, any::<u64>()),
            |(rows, classes, w, max_norm, guard, seed)| {
                let losses = data(seed, 1, rows, 3.0);
                // Logits on a coarse grid: many ties, where the first largest entry wins.
                let logits: Vec<f32> =
                    data(seed, 2, rows * classes, 2.0).iter().map(|x| (x * 2.0).round() / 2.0).collect();
                let labels = ints(seed, 3, rows, classes as u32);
                let counted = rows.div_ceil(2);
                let sumsq = data(seed, 4, 1, 8.0)[0].abs() as f64 * 3.7;
                let guard_value = [1.5, f64::NAN, f64::INFINITY, -0.25][guard as usize];
                let clip =
                    |max_norm: Option<f64>, guard: Option<usize>| Clip { sumsq: 5, norm: 6, scale: 7, max_norm, guard };
                let clips = [clip(Some(max_norm), Some(8)), clip(None, None), clip(Some(max_norm), None)];
                let c = cpu32();
                let init = [0.0, 0.0, 0.0, 0.0, 0.0, sumsq, 0.0, 0.0, guard_value];
                let mut want = Vec::new();
                for cl in &clips {
                    let mut s = c.stats_upload(&init);
                    c.stats_mean(&mut s, 0, &losses, 1.0, rows as f64);
                    c.stats_mean(&mut s, 1, &losses, w, 3.0);
                    c.stats_correct(&mut s, 2, &logits, &labels, counted, classes);
                    c.stats_combine(&mut s, 3, &[(1.0, 0), (w, 1), (0.5, 2), (-1.0, 5)]);
                    c.stats_combine(&mut s, 4, &[]);
                    c.clip_scale(&mut s, cl);
                    want.push(c.stats_download(&s));
                }
                for (gpu, _) in g.both() {
                    let (gl, gg, gy) = (gpu.upload(&losses), gpu.upload(&logits), gpu.upload_ids(&labels));
                    for (cl, want) in clips.iter().zip(&want) {
                        let mut s = gpu.stats_upload(&init);
                        gpu.stats_mean(&mut s, 0, &gl, 1.0, rows as f64);
                        gpu.stats_mean(&mut s, 1, &gl, w, 3.0);
                        gpu.stats_correct(&mut s, 2, &gg, &gy, counted, classes);
                        gpu.stats_combine(&mut s, 3, &[(1.0, 0), (w, 1), (0.5, 2), (-1.0, 5)]);
                        gpu.stats_combine(&mut s, 4, &[]);
                        gpu.clip_scale(&mut s, cl);
                        same_bits(&format!("{cl:?}"), &gpu.stats_download(&s), want)?;
                    }
                }
                Ok(())
            },
        );
    });
}
