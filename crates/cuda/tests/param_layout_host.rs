//! Field offsets of the launch-parameter structs: params.cuh compiled by the host C++ compiler against the
//! offsets Rust computes for the mirrors in params.rs and ops/<family>.rs (NVRTC checks the sizes, see
//! nvrtc_compile.rs).

use ernie_testkit::skipped;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn param_offsets_match_host_cxx() {
    let Some(cxx) = ernie_cuda::emu::host_compiler() else {
        skipped!("SKIPPED (no host C++ compiler): param_offsets_match_host_cxx");
        return;
    };
    let kernels = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../kernels");
    let dir = ernie_testkit::ScratchDir::new("layout");
    let src = dir.join("layout.cpp");
    std::fs::write(
        &src,
        format!(
            "#include <cstddef>\n#include \"params.cuh\"\n{}\nint main() {{ return 0; }}\n",
            ernie_cuda::params::layout_asserts(true)
        ),
    )
    .unwrap();
    let out = Command::new(cxx).args(["-std=c++17", "-fsyntax-only", "-I"]).arg(&kernels).arg(&src).output().unwrap();
    assert!(out.status.success(), "params.rs and params.cuh disagree:\n{}", String::from_utf8_lossy(&out.stderr));
}
