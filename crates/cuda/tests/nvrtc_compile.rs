//! Compiles every kernel source through NVRTC, and checks the launch-parameter layouts shared by Rust and
//! CUDA. Needs NVRTC and the CUDA headers (`.ci/install-nvrtc.sh`), not a GPU: this runs on CI machines.
//! Without NVRTC it prints a SKIPPED line and passes.

use ernie_cuda::kernels::{Source, SOURCES};
use ernie_cuda::nvrtc::{self, Options, Target};
use ernie_testkit::skipped;

fn nvrtc_or_skip(test: &str) -> bool {
    if !nvrtc::is_available() {
        skipped!("SKIPPED (no NVRTC: run .ci/install-nvrtc.sh and export what it prints): {test}");
        return false;
    }
    if !nvrtc::headers_found() {
        skipped!("SKIPPED (cuda_bf16.h not on ERNIE_FT_CUDA_INCLUDE or a CUDA include dir): {test}");
        return false;
    }
    true
}

#[test]
fn all_kernels_compile_without_spills() {
    if !nvrtc_or_skip("all_kernels_compile_without_spills") {
        return;
    }
    let supported = nvrtc::supported_archs().unwrap();
    for cc in [80u32, 90] {
        assert!(supported.contains(&cc), "NVRTC cannot target sm_{cc}: {supported:?}");
        let opts = Options { cc, target: Target::Cubin, ptxas_verbose: true, extra: Vec::new() };
        for src in SOURCES {
            let c = nvrtc::compile(src, &opts).unwrap_or_else(|e| panic!("{e}"));
            assert!(!c.image.is_empty(), "{}: empty cubin", src.file);
            let usage = nvrtc::parse_ptxas_log(&c.log);
            for name in src.kernel_names() {
                let u = usage
                    .iter()
                    .find(|u| u.name == name)
                    .unwrap_or_else(|| panic!("{}: no ptxas report for {name}:\n{}", src.file, c.log));
                assert_eq!((u.spill_stores, u.spill_loads), (0, 0), "{name} spills on sm_{cc}");
                assert!(u.registers <= 64, "{name} uses {} registers on sm_{cc}", u.registers);
            }
        }
    }
    // The PTX path the backend takes for an architecture NVRTC does not know.
    let dropout_src =
        SOURCES.iter().find(|s| s.kernel_names().contains(&"dropout_fwd")).expect("a source defines dropout_fwd");
    let ptx = nvrtc::compile(dropout_src, &Options { target: Target::Ptx, ..Options::cubin(80) }).unwrap();
    assert!(String::from_utf8_lossy(&ptx.image).contains(".entry dropout_fwd"));
}

#[test]
fn param_sizes_match_nvrtc() {
    if !nvrtc_or_skip("param_sizes_match_nvrtc") {
        return;
    }
    let text = format!(
        "#include \"common.cuh\"\n{}\nextern \"C\" __global__ void layout_probe() {{}}\n",
        ernie_cuda::params::layout_asserts(false)
    );
    let src = Source { file: "layout_probe.cu", text: Box::leak(text.into_boxed_str()) };
    if let Err(e) = nvrtc::compile(&src, &Options::cubin(80)) {
        panic!("the Rust parameter structs (params.rs, ops/<family>.rs) and params.cuh disagree:\n{e}");
    }
}

#[test]
fn compile_errors_are_reported_with_the_log() {
    if !nvrtc_or_skip("compile_errors_are_reported_with_the_log") {
        return;
    }
    let src = Source { file: "broken.cu", text: "extern \"C\" __global__ void k() { undefined_thing(); }" };
    let e = nvrtc::compile(&src, &Options::cubin(90)).unwrap_err().to_string();
    assert!(e.contains("broken.cu") && e.contains("undefined_thing"), "{e}");
}
