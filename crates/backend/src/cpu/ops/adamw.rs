//! AdamW over all parameters of a step (the CUDA side: kernels/adamw.cu, bit-identical in fp32).

use crate::backend::{AdamWStep, ParamSlot};
use crate::Float;
use rayon::prelude::*;

/// `grad_scale` multiplies every gradient (the clip factor); NaN skips the update.
pub fn adamw<T: Float>(slots: &mut [ParamSlot<'_, Vec<T>>], st: &AdamWStep, grad_scale: f64) {
    if grad_scale.is_nan() {
        return;
    }
    let bc1 = 1.0 - st.beta1.powi(st.step as i32);
    let bc2 = 1.0 - st.beta2.powi(st.step as i32);
    for s in slots.iter_mut() {
        let lr = st.lr * s.lr_mult;
        let wd = if s.decay { st.weight_decay } else { 0.0 };
        let (p, g, m, v) = (&mut **s.param, &**s.grad, &mut **s.m, &mut **s.v);
        p.par_iter_mut().zip(g.par_iter()).zip(m.par_iter_mut()).zip(v.par_iter_mut()).for_each(|(((p, &g), m), v)| {
            // f64 arithmetic per element: the reference the GPU kernel is compared against.
            let g = g.as_f64() * grad_scale;
            let mn = st.beta1 * m.as_f64() + (1.0 - st.beta1) * g;
            let vn = st.beta2 * v.as_f64() + (1.0 - st.beta2) * g * g;
            let mut pv = p.as_f64();
            pv -= lr * wd * pv;
            pv -= lr * (mn / bc1) / ((vn / bc2).sqrt() + st.eps);
            *m = T::from_f64(mn);
            *v = T::from_f64(vn);
            *p = T::from_f64(pv);
        });
    }
}
