//! `#[repr(C)]` mirrors of the launch parameter structs in `kernels/params.cuh`. Every kernel takes one of
//! these by value, so a launch is one argument whatever the number of scalars.
//!
//! [`layout_asserts`] turns the Rust sizes and field offsets into C++ `static_assert`s; the tests
//! `param_sizes_match_nvrtc` (NVRTC) and `param_offsets_match_host_cxx` (host C++ compiler) compile them
//! after `params.cuh`, so a field added on one side only fails a test, not a kernel at run time.

use cudarc::driver::DeviceRepr;

macro_rules! params {
    ($( $(#[doc = $doc:literal])* struct $name:ident { $( $field:ident : $ty:ty ),* $(,)? } )*) => {
        $(
            $(#[doc = $doc])*
            #[repr(C)]
            #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
            pub struct $name { $( pub $field: $ty ),* }
            // SAFETY: plain old data of fixed layout (repr(C), integers and floats only).
            unsafe impl DeviceRepr for $name {}
        )*

        /// C++ `static_assert`s for the size of each struct and, with `offsets`, every field offset (through
        /// `offsetof` from `<cstddef>`), as Rust lays them out. NVRTC cannot evaluate `offsetof` in a
        /// constant expression, so the tests check sizes with NVRTC and offsets with the host C++ compiler
        /// (CUDA guarantees host and device agree on the layout of such structs).
        pub fn layout_asserts(offsets: bool) -> String {
            let mut s = String::new();
            $(
                s.push_str(&format!(
                    "static_assert(sizeof({0}) == {1}, \"sizeof({0}) differs from the Rust mirror\");\n",
                    stringify!($name), std::mem::size_of::<$name>()));
                if offsets {
                    $(
                        s.push_str(&format!(
                            "static_assert(offsetof({0}, {1}) == {2}, \"{0}.{1}: offset differs from the Rust mirror\");\n",
                            stringify!($name), stringify!($field), std::mem::offset_of!($name, $field)));
                    )*
                }
            )*
            s
        }
    };
}

params! {
    /// A device buffer and its element type (`DT_F32` = 0, `DT_BF16` = 1).
    struct Tensor { ptr: u64, dtype: u32, _pad: u32 }
    /// A Philox stream: ernie_tensor::RngStream's seed, stream id and offset.
    struct Rng { seed: u64, stream: u64, offset: u64 }

    struct UnaryParams { x: Tensor, y: Tensor, n: u64 }
    struct BinaryParams { a: Tensor, b: Tensor, out: Tensor, n: u64 }
    struct DropoutParams { x: Tensor, y: Tensor, rng: Rng, n: u64, per_block: u64, p: f32, scale: f32 }
    struct FillParams { y: Tensor, n: u64, value: f32, _pad: u32 }
    struct AxpbyParams { y: Tensor, x: Tensor, n: u64, a: f32, b: f32 }
    struct AxpbyEntry { y: Tensor, x: Tensor, n: u64, block_start: u64 }
    struct AxpbyManyParams { table: u64, ntensors: u32, chunk: u32, a: f32, b: f32 }
    struct SumSqEntry { x: Tensor, n: u64, block_start: u64 }
    struct SumSqParams { table: u64, partial: u64, ntensors: u32, chunk: u32 }
    struct SumSqFinishParams { table: u64, partial: u64, out: u64, ntensors: u32, total_blocks: u32 }
    struct GatherRowsParams { x: Tensor, y: Tensor, rows: u64, nrows: u64, cols: u64 }
    struct BiasRowsParams { bias: Tensor, y: Tensor, rows: u64, cols: u64 }
    struct ColSumPartialParams { x: Tensor, partial: u64, rows: u64, cols: u64, chunk_rows: u64 }
    struct ColFinishParams { partial: u64, out0: Tensor, out1: Tensor, chunks: u64, width: u64, split: u64 }
    struct RandnParams { out: Tensor, mask: u64, rng: Rng, batch: u64, heads: u64, seq: u64, sigma: f32, _pad: u32 }
    struct NormPartialParams { g: Tensor, partial: u64, per: u64, chunks: u64, chunk: u64, kind: u32, _pad: u32 }
    struct NormFinishParams { partial: u64, scale: u64, batch: u64, chunks: u64, eps: f64, kind: u32, _pad: u32 }
    struct NormApplyParams { g: Tensor, out: Tensor, scale: u64, per: u64, n: u64 }

    struct EmbedFwdParams {
        out: Tensor, word: Tensor, pos: Tensor, typ: Tensor, task: Tensor,
        ids: u64, type_ids: u64, task_ids: u64, tokens: u64, seq: u64, hidden: u64,
    }
    struct SegmentAddParams { d: Tensor, dy: Tensor, perm: u64, seg_start: u64, seg_row: u64, nseg: u64, cols: u64 }

    struct LnFwdParams {
        x: Tensor, res: Tensor, w: Tensor, b: Tensor, s: Tensor, y: Tensor,
        mean: u64, rstd: u64, rows: u64, cols: u64, eps: f32, _pad: u32,
    }
    struct LnBwdParams { dy: Tensor, s: Tensor, w: Tensor, dx: Tensor, mean: u64, rstd: u64, rows: u64, cols: u64 }
    struct LnWbPartialParams { dy: Tensor, s: Tensor, mean: u64, rstd: u64, partial: u64, rows: u64, cols: u64, chunk_rows: u64 }

    struct AttnFwdParams {
        scores: u64, mask: u64, delta: Tensor, probs: Tensor, dropped: Tensor, rng: Rng,
        batch: u64, heads: u64, seq: u64, scale: f32, p: f32, keep_scale: f32, _pad: u32,
    }
    struct AttnBwdParams {
        dp: u64, probs: Tensor, ds: Tensor, dscores: Tensor, rng: Rng,
        batch: u64, heads: u64, seq: u64, scale: f32, p: f32, keep_scale: f32, _pad: u32,
    }

    struct CeParams { logits: Tensor, labels: u64, loss: u64, grad: Tensor, rows: u64, classes: u64, grad_scale: f32, _pad: u32 }
    struct KlParams { a: Tensor, b: Tensor, loss: u64, ga: Tensor, gb: Tensor, rows: u64, classes: u64, grad_scale: f32, _pad: u32 }

    struct AdamEntry {
        param: Tensor, grad: Tensor, m: Tensor, v: Tensor, shadow: u64, n: u64,
        lr: f64, wd: f64, block_start: u64,
    }
    struct AdamParams {
        table: u64, ntensors: u32, chunk: u32, beta1: f64, beta2: f64, one_minus_beta1: f64,
        one_minus_beta2: f64, eps: f64, bc1: f64, bc2: f64, grad_scale: f64,
    }
}

impl From<ernie_tensor::RngStream> for Rng {
    fn from(r: ernie_tensor::RngStream) -> Self {
        Rng {
            seed: r.seed,
            stream: r.stream,
            offset: r.offset,
        }
    }
}

impl Tensor {
    /// The absent tensor (a null pointer): optional inputs and outputs.
    pub const NONE: Tensor = Tensor {
        ptr: 0,
        dtype: 0,
        _pad: 0,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asserts_cover_every_struct() {
        let s = layout_asserts(true);
        assert!(s.contains("offsetof(AdamEntry, block_start)"));
        for name in [
            "Tensor",
            "Rng",
            "AttnFwdParams",
            "AdamParams",
            "AdamEntry",
            "KlParams",
            "LnFwdParams",
        ] {
            assert!(s.contains(&format!("sizeof({name})")), "{name}");
        }
        assert_eq!(std::mem::size_of::<Tensor>(), 16);
        assert_eq!(std::mem::align_of::<AdamParams>(), 8);
    }
}
