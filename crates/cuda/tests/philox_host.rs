//! The device Philox (kernels/philox.cuh) compiled for the host with the system C++ compiler and compared
//! with ernie_backend's RngStream: the same (seed, stream, index) must give the same word, the same derived
//! stream, the same uniform and (with the host's libm on both sides) the same normal. This checks the CUDA
//! source's logic without a GPU; only the device's own log/cos in the normal draw remain unchecked here.

use ernie_backend::cpu::ops::attention_block_stream;
use ernie_backend::philox::{to_uniform, RngStream};
use ernie_testkit::skipped;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const HARNESS: &str = r#"
#include <math.h>
#include <stdio.h>
struct uint4 { unsigned int x, y, z, w; };
struct uint2 { unsigned int x, y; };
static inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { uint4 r = {a, b, c, d}; return r; }
static inline uint2 make_uint2(unsigned a, unsigned b) { uint2 r = {a, b}; return r; }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
#define ERNIE_DEVICE static inline
#include "philox.cuh"
int main() {
    unsigned long long seed, stream, i, site, offset;
    while (scanf("%llu %llu %llu %llu %llu", &seed, &stream, &i, &site, &offset) == 5) {
        const unsigned int w = rng_word(seed, stream, offset + i);
        const unsigned long long d = rng_derive(stream, site);
        const float u = to_uniform(w);
        const float n = rng_normal(seed, stream, offset, i);
        const unsigned long long att = rng_attention_stream(stream, offset, site);
        unsigned int ub, nb;
        memcpy(&ub, &u, 4);
        memcpy(&nb, &n, 4);
        printf("%u %llu %u %u %llu\n", w, d, ub, nb, att);
    }
    return 0;
}
"#;

fn compiler() -> Option<String> {
    ernie_cuda::emu::host_compiler()
}

#[test]
fn device_philox_matches_rust() {
    let Some(cxx) = compiler() else {
        skipped!("SKIPPED (no host C++ compiler): device_philox_matches_rust");
        return;
    };
    let kernels = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../kernels");
    let dir = ernie_testkit::ScratchDir::new("philox");
    let src = dir.join("harness.cpp");
    std::fs::write(&src, HARNESS.replace("#include <stdio.h>", "#include <stdio.h>\n#include <string.h>")).unwrap();
    let exe = dir.join("harness");
    let out = Command::new(&cxx)
        .args(["-O1", "-std=c++17", "-Wno-unknown-pragmas", "-ffp-contract=off", "-I"])
        .arg(&kernels)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(out.status.success(), "host build of philox.cuh failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let mut cases = Vec::new();
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for k in 0..2000u64 {
        let seed = if k % 3 == 0 { k } else { next() };
        let stream = if k % 5 == 0 { k / 5 } else { next() };
        let i = if k % 2 == 0 { k } else { next() >> 2 };
        let offset = match k % 4 {
            0 => 0,
            1 => next() % 7,
            _ => next() >> 8,
        };
        cases.push((seed, stream, i, next() % 100_000, offset));
    }
    let input: String = cases.iter().map(|(a, b, c, d, e)| format!("{a} {b} {c} {d} {e}\n")).collect();
    let mut child = Command::new(&exe).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), cases.len());
    for (line, &(seed, stream, i, site, offset)) in lines.iter().zip(&cases) {
        let f: Vec<u64> = line.split_whitespace().map(|t| t.parse().unwrap()).collect();
        let r = RngStream::new(seed, stream).with_offset(offset);
        assert_eq!(f[0] as u32, r.word(i), "word({seed}, {stream}, +{offset}, {i})");
        assert_eq!(f[1], r.derive(site).stream, "derive({stream}, {site})");
        assert_eq!(f[2] as u32, to_uniform(r.word(i)).to_bits(), "uniform({seed}, {stream}, +{offset}, {i})");
        assert_eq!(f[3] as u32, r.normal(i).to_bits(), "normal({seed}, {stream}, +{offset}, {i})");
        assert_eq!(
            f[4],
            attention_block_stream(r, site as usize).stream,
            "attention stream({stream}, +{offset}, {site})"
        );
    }
}
