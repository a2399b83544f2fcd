//! Which dtype each buffer gets under each precision, and bf16 buffers as inputs to every kind of op.

use crate::common::*;
use crate::cpu64;
use ernie_backend::Backend;
use ernie_cuda::{CudaBackend, DType, Precision};

#[test]
fn storage_follows_the_precision() {
    on_backends("storage_follows_the_precision", |g| {
        for (gpu, p) in g.both() {
            let x = gpu.upload(&data(1, 1, 1000, 1.0));
            assert_eq!(x.dtype(), DType::F32, "uploads are fp32 (parameters)");
            assert_eq!(gpu.zeros(10).dtype(), DType::F32, "zeros are fp32 (gradients, moments)");
            let y = gpu.gelu(&x);
            assert_eq!(y.dtype(), p.act(), "op outputs use the activation dtype");
            assert_eq!(gpu.copy(&y).dtype(), p.act(), "copies keep the dtype");
            let w = gpu.upload(&data(1, 2, 1000, 1.0));
            let _ = gpu.linear(&y, &w, None, 10, 10, 100);
            assert_eq!(w.has_shadow(), p == Precision::Bf16, "weights get a bf16 copy for the GEMMs under Bf16 only");
            let mut w = w;
            gpu.fill(&mut w, 1.0);
            assert!(!w.has_shadow(), "a write drops the stale copy");
            gpu.reset_peak();
            let before = gpu.peak_bytes();
            let big = gpu.zeros(1 << 20);
            assert!(gpu.peak_bytes() >= before + 4 * (1 << 20));
            drop(big);
            assert!(!gpu.name().is_empty());
        }
    });
}

#[test]
fn bf16_buffers_work_as_inputs_everywhere() {
    // Op outputs (bf16 under Precision::Bf16) fed back as inputs, including as accumulators' sources and
    // in an fp32 backend via conversion: the mixed-dtype paths of the kernels and GEMM operand handling.
    on_backends("bf16_buffers_work_as_inputs_everywhere", |g| {
        let (m, n, k) = (17, 23, 31);
        let x = data(3, 1, m * k, 1.0);
        let w = data(3, 2, n * k, 0.5);
        let c = cpu64();
        let want = c.linear(&c.gelu(&c.upload(&x)), &c.upload(&w), None, m, n, k);
        let gpu = &g.bf16;
        let h = gpu.gelu(&gpu.upload(&x)); // bf16
        assert_eq!(h.dtype(), DType::Bf16);
        let y = gpu.linear(&h, &gpu.upload(&w), None, m, n, k);
        let got = gpu.download(&y);
        let e = rel_err(&got, &want);
        assert!(e < BF16_CHAIN, "relative error {e}");
        // A bf16 buffer converted for the fp32 backend's view.
        let h32 = gpu.to_dtype(&h, DType::F32);
        assert_eq!(gpu.download(&h32), gpu.download(&h));
        let _: &CudaBackend = gpu;
    });
}
