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

pub const SOURCES: &[Source] = &[
    Source {
        file: "elementwise.cu",
        text: include_str!("../../../kernels/elementwise.cu"),
    },
    Source {
        file: "embedding.cu",
        text: include_str!("../../../kernels/embedding.cu"),
    },
    Source {
        file: "layernorm.cu",
        text: include_str!("../../../kernels/layernorm.cu"),
    },
    Source {
        file: "gelu.cu",
        text: include_str!("../../../kernels/gelu.cu"),
    },
    Source {
        file: "attention.cu",
        text: include_str!("../../../kernels/attention.cu"),
    },
    Source {
        file: "loss.cu",
        text: include_str!("../../../kernels/loss.cu"),
    },
    Source {
        file: "adamw.cu",
        text: include_str!("../../../kernels/adamw.cu"),
    },
];

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
        let name_len = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
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
    fn finds_kernel_names() {
        let names = all_kernel_names();
        for k in [
            "dropout_fwd",
            "ln_fwd",
            "attn_softmax_fwd",
            "attn_softmax_bwd",
            "adamw",
            "softmax_ce",
            "segment_add",
            "gelu_bwd",
        ] {
            assert!(names.contains(&k), "{k} missing from {names:?}");
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            names.len(),
            "duplicate kernel names across sources"
        );
    }
}
