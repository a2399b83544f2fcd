//! `ernie-ft bench`, run as the real binary on the tiny shape: one JSON line with consistent figures for
//! every strategy and mode, and a clear error for `--device cuda` while the CUDA backend is not built in.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ernie-ft");

fn bench(args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args([
            "bench",
            "--shape",
            "tiny",
            "--batch",
            "3",
            "--seq",
            "16",
            "--warmup",
            "1",
            "--steps",
            "3",
            "--threads",
            "1",
        ])
        .args(args)
        .output()
        .expect("run ernie-ft");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ernie-ft bench {args:?} failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON line expected, got {stdout}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", lines[0]))
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} missing or not a number in {v}"))
}

#[test]
fn every_strategy_prints_consistent_figures() {
    let mut flops = std::collections::BTreeMap::new();
    for strategy in ["base", "adv", "rdrop"] {
        let v = bench(&["--strategy", strategy, "--peak-tflops", "2.5"]);
        assert_eq!(v["engine"], "ernie-ft");
        assert_eq!(v["strategy"], strategy);
        assert_eq!(v["mode"], "train");
        assert_eq!(v["shape"], "tiny");
        assert_eq!((v["batch"].as_u64(), v["seq"].as_u64()), (Some(3), Some(16)));
        assert_eq!(v["step_s"].as_array().map(|a| a.len()), Some(3));
        assert_eq!(v["warmup_s"].as_array().map(|a| a.len()), Some(1));
        let med = f(&v, "median_step_s");
        assert!(med > 0.0 && med.is_finite());
        assert!((f(&v, "samples_per_s") - 3.0 / med).abs() < 1e-9 * f(&v, "samples_per_s"));
        assert!((f(&v, "achieved_tflops") - f(&v, "flops_per_step") / med / 1e12).abs() < 1e-12);
        assert!((f(&v, "mfu") - f(&v, "achieved_tflops") / 2.5).abs() < 1e-12);
        assert!(f(&v, "peak_memory_bytes") > 0.0, "{v}");
        assert_eq!(v["peak_memory_source"], "host_rss", "the CPU backend tracks no device memory");
        assert!(f(&v, "last_loss").is_finite());
        let (fw, bw) = (v["forwards"].as_u64().unwrap(), v["backwards"].as_u64().unwrap());
        match strategy {
            "adv" => assert_eq!((fw, bw), (3, 2), "adv: 3 forwards, 2 full backwards (+ the probe's)"),
            _ => assert_eq!((fw, bw), (1, 1)),
        }
        flops.insert(strategy, f(&v, "flops_per_step"));
    }
    assert_eq!(flops["rdrop"], 2.0 * flops["base"]);
    let adv = flops["adv"] / flops["base"];
    assert!(adv > 8.0 / 3.0 && adv < 3.0, "adv/base FLOPs {adv}");
}

#[test]
fn infer_mode_and_no_mfu_without_peak_on_cpu() {
    let v = bench(&["--mode", "infer"]);
    assert_eq!(v["mode"], "infer");
    assert_eq!(v["backwards"].as_u64(), Some(0));
    assert!(v["mfu"].is_null() && v["peak_tflops"].is_null(), "{v}");
    assert!(v["last_loss"].is_null());
    let train = bench(&[]);
    assert!((f(&train, "flops_per_step") / f(&v, "flops_per_step") - 3.0).abs() < 1e-12);
}

/// Without a GPU (CI, this machine) `--device cuda` is a clear error, not a panic; with one it measures.
#[test]
fn cuda_is_a_clear_error_without_a_gpu_or_a_measurement_with_one() {
    let out = Command::new(BIN)
        .args(["bench", "--shape", "tiny", "--batch", "2", "--seq", "16", "--steps", "2", "--device", "cuda"])
        .output()
        .unwrap();
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!err.contains("panicked"), "{err}");
    if out.status.success() {
        let v: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["device_kind"], "cuda");
        assert_eq!(v["precision"], "bf16");
        assert!(f(&v, "median_step_s") > 0.0 && f(&v, "mfu") > 0.0);
        assert_eq!(v["peak_memory_source"], "device", "the CUDA backend tracks its memory");
    } else {
        assert!(err.contains("--device cuda"), "{err}");
    }
}

#[test]
fn too_long_sequences_are_refused() {
    let out = Command::new(BIN).args(["bench", "--shape", "tiny", "--seq", "600", "--steps", "1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_position_embeddings"));
}
