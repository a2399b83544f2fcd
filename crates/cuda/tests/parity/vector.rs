//! axpby and fill bit-identical to Cpu<f32>; the sum of squares against Cpu<f64>.

use crate::common::*;
use crate::{cpu32, cpu64};
use ernie_backend::Backend;
use proptest::prelude::*;

#[test]
fn vector_ops_are_exact() {
    on_backends("vector_ops_are_exact", |g| {
        check(
            g.cases(24),
            (proptest::collection::vec(0usize..9000, 1..6), -2.0f64..2.0, -2.0f64..2.0, any::<u64>()),
            |(lens, a, b, seed)| {
                let ys: Vec<Vec<f32>> =
                    lens.iter().enumerate().map(|(i, &n)| data(seed, 10 + i as u64, n, 1.0)).collect();
                let xs: Vec<Vec<f32>> =
                    lens.iter().enumerate().map(|(i, &n)| data(seed, 20 + i as u64, n, 1.0)).collect();
                let c = cpu32();
                let mut want = ys.clone();
                for (y, x) in want.iter_mut().zip(&xs) {
                    c.axpby(y, a, x, b);
                }
                let c64 = cpu64();
                let c64b: Vec<Vec<f64>> = xs.iter().map(|x| c64.upload(x)).collect();
                let mut cst = c64.stats_zeros(2);
                c64.sum_squares(&c64b.iter().collect::<Vec<_>>(), &mut cst, 1);
                let want_ss = cst[1];
                for (gpu, _) in g.both() {
                    // axpby: the same two fp32 products and one sum, unfused: bit-identical (every length
                    // drawn, empty buffers included).
                    let gx: Vec<_> = xs.iter().map(|x| gpu.upload(x)).collect();
                    for (i, (y, x)) in ys.iter().zip(&gx).enumerate() {
                        let mut gy = gpu.upload(y);
                        gpu.axpby(&mut gy, a, x, b);
                        exact(&format!("axpby[{i}]"), &gpu.download(&gy), &want[i])?;
                    }
                    let mut f = gpu.upload(&xs[0]);
                    gpu.fill(&mut f, a as f32);
                    exact("fill", &gpu.download(&f), &vec![a as f32; xs[0].len()])?;
                    // Squares of fp32 values are exact in f64; only the summation order differs.
                    // Into slot 1 of the step's statistics on the device, read back once.
                    let mut st = gpu.stats_zeros(2);
                    gpu.sum_squares(&gx.iter().collect::<Vec<_>>(), &mut st, 1);
                    let ss = gpu.stats_download(&st)[1];
                    prop_assert!(
                        (ss - want_ss).abs() <= 1e-12 * want_ss.abs().max(1e-300),
                        "sum_squares {} vs {}",
                        ss,
                        want_ss
                    );
                }
                Ok(())
            },
        );
    });
}
