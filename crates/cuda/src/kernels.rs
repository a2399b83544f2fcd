//! The CUDA C++ sources of `kernels/`, embedded in the binary. They are compiled at run time by NVRTC for
//! the device at hand ([`crate::nvrtc`]), and ahead of time for sm_80 / sm_90 by `cargo xtask kernels`.

/// A kernel source file: one family of ops.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    /// File name under `kernels/`.
    pub file: &'static str,
    pub text: &'static str,
}

/// Headers every source may include, served to NVRTC from memory.
pub const HEADERS: &[(&str, &str)] = &[
    ("common.cuh", include_str!("../../../kernels/common.cuh")),
    ("params.cuh", include_str!("../../../kernels/params.cuh")),
    ("philox.cuh", include_str!("../../../kernels/philox.cuh")),
];

/// Declares the kernel sources, each with the entry points it defines: [`SOURCES`] and the kernel ids
/// ([`Kernel`]) the backend launches by. A test checks each list against its source text.
macro_rules! kernel_sources {
    ($($file:literal => [$($kernel:ident),* $(,)?]),* $(,)?) => {
        /// Every kernel source: one family of ops each, launched by `crates/cuda/src/ops/<family>.rs`.
        pub const SOURCES: &[Source] = &[
            $(Source { file: $file, text: include_str!(concat!("../../../kernels/", $file)) }),*
        ];

        /// Every kernel of `SOURCES`, by name; the backend keeps function handles in this order.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub(crate) enum Kernel { $($($kernel,)*)* }

        impl Kernel {
            pub(crate) const NAMES: &'static [&'static str] = &[$($(stringify!($kernel),)*)*];
            pub(crate) fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }
        }

        /// Each source file with the kernels the table lists for it.
        #[cfg(test)]
        const LISTED: &[(&str, &[&str])] = &[$(($file, &[$(stringify!($kernel)),*])),*];
    };
}

kernel_sources! {
    "embedding.cu" => [embed_fwd, segment_add],
    "layernorm.cu" => [ln_fwd, ln_bwd_dx, ln_wb_partial],
    "linear.cu" => [bias_rows, colsum_partial, col_finish],
    "activation.cu" => [gelu_fwd, gelu_bwd, tanh_fwd, tanh_bwd, dropout_fwd],
    "attention.cu" => [attn_softmax_fwd, attn_softmax_bwd],
    "loss.cu" => [softmax_ce, sym_kl, kl_detached],
    "noise.cu" => [randn_key_masked, norm_partial, norm_finish, norm_apply],
    "copy.cu" => [cast, gather_rows, copy_rows_strided],
    "vector.cu" => [fill, axpby, sum_squares_partial, sum_squares_finish, sum_squares_total],
    "stats.cu" => [stats_mean, stats_correct, stats_combine, clip_scale],
    "adamw.cu" => [adamw],
}

impl Source {
    /// The `extern "C" __global__` entry points defined in this source, in order of appearance.
    pub fn kernel_names(&self) -> Vec<&'static str> {
        kernel_names(self.text)
    }
}

/// Names of the `extern "C" __global__ void [__launch_bounds__(...)] NAME(` definitions in `text`.
pub fn kernel_names(text: &'static str) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut rest = text;
    const MARK: &str = "extern \"C\" __global__ void";
    while let Some(at) = rest.find(MARK) {
        let mut s = rest[at + MARK.len()..].trim_start();
        if let Some(lb) = s.strip_prefix("__launch_bounds__") {
            // skip the balanced parentheses of __launch_bounds__(...)
            let mut depth = 0usize;
            let mut end = 0usize;
            for (i, ch) in lb.char_indices() {
                match ch {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            s = lb[end..].trim_start();
        }
        let name_len = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
        if name_len > 0 {
            out.push(&s[..name_len]);
        }
        rest = &s[name_len..];
    }
    out
}

/// Every kernel name of every source.
pub fn all_kernel_names() -> Vec<&'static str> {
    SOURCES.iter().flat_map(|s| s.kernel_names()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_table_matches_sources() {
        assert_eq!(LISTED.len(), SOURCES.len());
        for (src, (file, kernels)) in SOURCES.iter().zip(LISTED) {
            assert_eq!(src.file, *file);
            assert_eq!(src.kernel_names(), *kernels, "{file}");
        }
        let mut names = all_kernel_names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Kernel::NAMES.len(), "duplicate kernel names across sources");
    }
}
