//! `#[repr(C)]` mirrors of the launch parameter structs in `kernels/params.cuh`. Every kernel takes one of
//! these by value, so a launch is one argument whatever the number of scalars.
//!
//! The structs of one kernel family are declared beside its launch code, in `ops/<family>.rs`, with
//! `launch_params!`; the ones several families share are here. [`layout_asserts`] turns the Rust sizes and
//! field offsets of all of them into C++ `static_assert`s; the tests `param_sizes_match_nvrtc` (NVRTC) and
//! `param_offsets_match_host_cxx` (host C++ compiler) compile them after `params.cuh`, so a field added on
//! one side only fails a test, not a kernel at run time.

use crate::ops;

/// Declares `#[repr(C)]` launch parameter structs (plain old data, passable to a kernel by value) and a
/// `layout_asserts(offsets)` for them: C++ `static_assert`s of each struct's size and, with `offsets`, of
/// every field offset (through `offsetof` from `<cstddef>`), as Rust lays them out. NVRTC cannot evaluate
/// `offsetof` in a constant expression, so the tests check sizes with NVRTC and offsets with the host C++
/// compiler (CUDA guarantees host and device agree on the layout of such structs).
macro_rules! launch_params {
    ($( $(#[doc = $doc:literal])* struct $name:ident { $( $field:ident : $ty:ty ),* $(,)? } )*) => {
        $(
            $(#[doc = $doc])*
            #[repr(C)]
            #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
            pub struct $name { $( pub $field: $ty ),* }
            // SAFETY: plain old data of fixed layout (repr(C), integers and floats only).
            unsafe impl cudarc::driver::DeviceRepr for $name {}
        )*

        /// C++ `static_assert`s on the layout of this module's launch parameter structs.
        pub(crate) fn layout_asserts(offsets: bool) -> String {
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
pub(crate) use launch_params;

mod shared {
    super::launch_params! {
        /// A device buffer and its element type (`DT_F32` = 0, `DT_BF16` = 1).
        struct Tensor { ptr: u64, dtype: u32, _pad: u32 }
        /// A Philox stream: ernie_backend::RngStream's seed, stream id and offset.
        struct Rng { seed: u64, stream: u64, offset: u64 }
        /// `y = f(x)`: gelu, tanh (activation), cast (copy).
        struct UnaryParams { x: Tensor, y: Tensor, n: u64 }
    }
}
pub use shared::{Rng, Tensor, UnaryParams};

/// The `static_assert`s of every launch parameter struct, shared and per family.
pub fn layout_asserts(offsets: bool) -> String {
    let families: [fn(bool) -> String; 12] = [
        shared::layout_asserts,
        ops::embedding::layout_asserts,
        ops::layernorm::layout_asserts,
        ops::linear::layout_asserts,
        ops::activation::layout_asserts,
        ops::attention::layout_asserts,
        ops::loss::layout_asserts,
        ops::noise::layout_asserts,
        ops::copy::layout_asserts,
        ops::vector::layout_asserts,
        ops::stats::layout_asserts,
        ops::adamw::layout_asserts,
    ];
    families.iter().map(|f| f(offsets)).collect()
}

impl From<ernie_backend::RngStream> for Rng {
    fn from(r: ernie_backend::RngStream) -> Self {
        Rng { seed: r.seed, stream: r.stream, offset: r.offset }
    }
}

impl Tensor {
    /// The absent tensor (a null pointer): optional inputs and outputs.
    pub const NONE: Tensor = Tensor { ptr: 0, dtype: 0, _pad: 0 };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asserts_cover_every_struct() {
        let s = layout_asserts(true);
        assert!(s.contains("offsetof(AdamEntry, block_start)"));
        for name in ["Tensor", "Rng", "AttnFwdParams", "AdamParams", "AdamEntry", "KlParams", "LnFwdParams"] {
            assert!(s.contains(&format!("sizeof({name})")), "{name}");
        }
        assert_eq!(std::mem::size_of::<Tensor>(), 16);
        assert_eq!(std::mem::align_of::<ops::adamw::AdamParams>(), 8);
    }

    /// Every struct of params.cuh has a Rust mirror (and no mirror lacks a struct: that fails to compile).
    #[test]
    fn every_cuda_struct_is_mirrored() {
        let asserts = layout_asserts(false);
        let header = include_str!("../../../kernels/params.cuh");
        for line in header.lines() {
            if let Some(rest) = line.strip_prefix("struct ") {
                let name = rest.split_whitespace().next().unwrap();
                assert!(asserts.contains(&format!("sizeof({name})")), "{name} of params.cuh has no Rust mirror");
            }
        }
    }
}
