use ernie_backend::cpu::matmul::{matmul, View};
use rayon::prelude::*;
use std::time::Instant;
fn main() {
    let (b, nh, l, d) = (32usize, 12usize, 128usize, 32usize);
    let h = nh * d;
    let x: Vec<f32> = (0..b * l * h).map(|i| (i % 17) as f32 * 0.01).collect();
    let mut p = vec![0.0f32; b * nh * l * l];
    for rep in 0..2 {
        let t = Instant::now();
        p.par_chunks_mut(l * l).enumerate().for_each(|(bh, p)| {
            let (bb, hh) = (bh / nh, bh % nh);
            let q = View { data: &x[..], off: bb * l * h + hh * d, rs: h as isize, cs: 1 };
            let k = View { data: &x[..], off: bb * l * h + hh * d, rs: 1, cs: h as isize };
            matmul(l, l, d, p, 0, l, q, k, false, false);
        });
        let t1 = t.elapsed();
        let t = Instant::now();
        // contiguous copies
        p.par_chunks_mut(l * l).enumerate().for_each(|(bh, p)| {
            let (bb, hh) = (bh / nh, bh % nh);
            let mut qc = vec![0.0f32; l * d];
            for i in 0..l {
                qc[i * d..(i + 1) * d].copy_from_slice(&x[bb * l * h + i * h + hh * d..][..d]);
            }
            matmul(l, l, d, p, 0, l, View::rows(&qc, d), View::rows_t(&qc, d), false, false);
        });
        let t2 = t.elapsed();
        let t = Instant::now();
        p.par_chunks_mut(l).for_each(|row| {
            let mx = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            let mut sum = 0.0;
            for s in row.iter_mut() {
                *s = ernie_backend::float::exp_f32(*s - mx);
                sum += *s;
            }
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|x| *x *= inv);
        });
        let t3 = t.elapsed();
        if rep == 1 {
            println!("qk strided {:?}  qk contiguous {:?}  softmax {:?}", t1, t2, t3);
        }
    }
}
