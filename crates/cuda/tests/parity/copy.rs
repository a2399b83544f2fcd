//! Row gather, scatter, slice, concatenation and copies: bit-identical (data movement).

use crate::common::*;
use crate::cpu32;
use ernie_backend::Backend;
use proptest::prelude::*;

#[test]
fn row_gather_scatter_slice_concat() {
    on_backends("row_gather_scatter_slice_concat", |g| {
        check(g.cases(24), (1usize..30, 1usize..70, 0usize..40, any::<u64>()), |(rows, cols, picks, seed)| {
            let x = data(seed, 1, rows * cols, 1.0);
            let idx: Vec<usize> = ints(seed, 2, picks, rows as u32).into_iter().map(|r| r as usize).collect();
            let dy = data(seed, 3, picks * cols, 1.0);
            let y = data(seed, 4, (rows / 2 + 1) * cols, 1.0);
            let (first, stride) = ((seed / 3 % 2) as usize % rows, 1 + (seed % 3) as usize);
            let prog: Vec<usize> = (first..rows).step_by(stride).collect();
            let same = vec![rows / 2; 3];
            let dyp = data(seed, 5, rows.max(3) * cols, 1.0);
            let start = rows / 3;
            let count = rows - start;
            let c = cpu32();
            for (gpu, _) in g.both() {
                let (gx, gdy, gy) = (gpu.upload(&x), gpu.upload(&dy), gpu.upload(&y));
                // Data movement keeps the input's dtype (fp32 here), so these are exact in both precisions.
                exact("gather_rows", &gpu.download(&gpu.gather_rows(&gx, &idx, cols)), &c.gather_rows(&x, &idx, cols))?;
                // Repeated rows accumulate in the reference's order.
                exact(
                    "scatter_rows",
                    &gpu.download(&gpu.scatter_rows(&gdy, &idx, cols, rows)),
                    &c.scatter_rows(&dy, &idx, cols, rows),
                )?;
                exact(
                    "slice_rows",
                    &gpu.download(&gpu.slice_rows(&gx, start, count, cols)),
                    &c.slice_rows(&x, start, count, cols),
                )?;
                exact("concat_rows", &gpu.download(&gpu.concat_rows(&gx, &gy)), &c.concat_rows(&x, &y))?;
                exact("copy", &gpu.download(&gpu.copy(&gx)), &x)?;
                // Evenly spaced rows (each example's first token) take the strided path, without an
                // index table; a constant row is a progression for the gather, not for the scatter.
                for (what, prog) in [("strided", &prog), ("constant", &same)] {
                    let dp = dyp[..prog.len() * cols].to_vec();
                    let gdp = gpu.upload(&dp);
                    exact(
                        &format!("gather_rows {what}"),
                        &gpu.download(&gpu.gather_rows(&gx, prog, cols)),
                        &c.gather_rows(&x, prog, cols),
                    )?;
                    exact(
                        &format!("scatter_rows {what}"),
                        &gpu.download(&gpu.scatter_rows(&gdp, prog, cols, rows)),
                        &c.scatter_rows(&dp, prog, cols, rows),
                    )?;
                }
            }
            Ok(())
        });
    });
}
