//! Real ERNIE 3.0 checkpoints as users have them: HF safetensors, PyTorch `pytorch_model.bin` (zip and
//! legacy) and PaddleNLP `model_state.pdparams` (with `model_config.json` or `config.json`), on the tiny
//! random models of `tests/fixtures/ernie3/` (written by `scripts/make_ernie_fixtures.py`, which also
//! recorded HF transformers' logits): identical parameters and logits from every format, the reference
//! logits, `layer_norm_eps` 1e-5 and the task-type embeddings honoured, the published configurations
//! read key for key, and every kind of bad file an error naming the file and the tensor or key.
//! (About 600 lines: one file for the one fixture set, so its helpers are not shared across test binaries.)

use ernie_backend::{Backend, Cpu};
use ernie_ft_suite::local_fixtures;
use ernie_model::formats::{convert, paddle, ModelFiles, WeightsFormat};
use ernie_model::{Encoder, ForwardOpts, HeadInit, HostParams, ModelConfig, ModelError, Tokens};
use ernie_testkit::ScratchDir;
use serde_json::Value;
use std::path::{Path, PathBuf};

const SIZES: [&str; 5] = ["base", "medium", "mini", "micro", "nano"];
const FORMATS: [&str; 3] = ["hf", "torch", "paddle"];
const TOL: f32 = 1e-5;

fn fixtures() -> PathBuf {
    local_fixtures().join("ernie3")
}

fn load(dir: &Path) -> HostParams {
    let h = HostParams::load_dir(dir, 3, HeadInit::seed(0)).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert!(h.initialised.is_empty(), "{}: initialised {:?}", dir.display(), h.initialised);
    h
}

fn load_err(dir: &Path) -> String {
    let e: ModelError = HostParams::load_dir(dir, 3, HeadInit::seed(0)).expect_err("must fail");
    e.to_string()
}

fn reference(size: &str) -> Value {
    let p = fixtures().join(size).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn rows(v: &Value, key: &str) -> Vec<Vec<f64>> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect()
}

fn tokens(r: &Value, task_key: &str) -> Tokens {
    let flat = |k: &str| -> Vec<u32> { rows(r, k).concat().into_iter().map(|x| x as u32).collect() };
    let ids = rows(r, "input_ids");
    Tokens {
        batch: ids.len(),
        seq: ids[0].len(),
        ids: flat("input_ids"),
        type_ids: flat("token_type_ids"),
        task_ids: flat(task_key),
        mask: flat("attention_mask"),
    }
}

fn logits(h: &HostParams, t: &Tokens) -> Vec<f32> {
    let b = Cpu::<f32>::new();
    let e = Encoder::from_host(&b, h);
    b.download(&e.forward(&b, t, &ForwardOpts::eval()).logits)
}

fn max_diff(a: &[f32], b: &[f64]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (*x as f64 - y).abs() as f32).fold(0.0, f32::max)
}

/// A copy of a fixture directory to edit.
fn copy_dir(src: &Path, name: &str) -> ScratchDir {
    let d = ScratchDir::new(name);
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
    }
    d
}

/// Replace every occurrence of `from` by `to` in `dir/file` (at least one).
fn patch(dir: &Path, file: &str, from: &[u8], to: &[u8]) {
    let p = dir.join(file);
    let b = std::fs::read(&p).unwrap();
    let n = b.windows(from.len()).filter(|w| *w == from).count();
    assert!(n > 0, "{} has no {:?}", p.display(), String::from_utf8_lossy(from));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    std::fs::write(&p, out).unwrap();
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn every_format_loads_identical_parameters_and_hf_logits() {
    for size in SIZES {
        let r = reference(size);
        let want = rows(&r, "logits").concat();
        let hf = load(&fixtures().join(size).join("hf"));
        assert_eq!(hf.config.layer_norm_eps, 1e-5, "{size}");
        assert!(hf.config.use_task_id, "{size}");
        for fmt in FORMATS {
            let dir = fixtures().join(size).join(fmt);
            let files = ModelFiles::detect(&dir).unwrap();
            let expected = match fmt {
                "hf" => WeightsFormat::Safetensors,
                "torch" => WeightsFormat::PytorchBin,
                _ => WeightsFormat::PaddleParams,
            };
            assert_eq!(files.format, expected);
            let h = load(&dir);
            assert_eq!(h.config, hf.config, "{size}/{fmt}: {:?}", h.config.difference(&hf.config));
            assert_eq!(h.specs, hf.specs);
            for ((s, a), b) in h.specs.iter().zip(&h.values).zip(&hf.values) {
                assert!(a == b, "{size}/{fmt}: {} differs from the safetensors values", s.name);
            }
            let got = logits(&h, &tokens(&r, "task_type_ids"));
            let d = max_diff(&got, &want);
            assert!(d <= TOL, "{size}/{fmt}: logits {got:?} vs HF {want:?} (max |diff| {d:e})");
        }
    }
}

#[test]
fn layer_norm_eps_1e5_is_honoured() {
    // The fixtures' embedding tables have std 0.01 (as trained ERNIE tables do), so the embedding
    // LayerNorm's input variance is ~1e-4 and its eps matters: reading 1e-12 would move the logits far
    // beyond the tolerance the reference comparison uses.
    for size in SIZES {
        let r = reference(size);
        let (ref5, ref12) = (rows(&r, "logits").concat(), rows(&r, "logits_eps_1e-12").concat());
        let gap = ref5.iter().zip(&ref12).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(gap > 100.0 * TOL as f64, "{size}: eps changes HF's logits by only {gap:e}");
        for fmt in FORMATS {
            let mut h = load(&fixtures().join(size).join(fmt));
            assert_eq!(h.config.layer_norm_eps, 1e-5, "{size}/{fmt}");
            let t = tokens(&r, "task_type_ids");
            assert!(max_diff(&logits(&h, &t), &ref5) <= TOL);
            h.config.layer_norm_eps = 1e-12;
            let got = logits(&h, &t);
            assert!(max_diff(&got, &ref12) <= TOL, "{size}/{fmt}: with eps 1e-12 the logits are HF's with 1e-12");
            assert!(max_diff(&got, &ref5) > 10.0 * TOL, "{size}/{fmt}: eps 1e-12 must fail the reference comparison");
        }
    }
}

#[test]
fn task_type_embeddings_are_honoured() {
    for size in SIZES {
        let r = reference(size);
        let want = rows(&r, "logits_task_alt").concat();
        let task0 = rows(&r, "logits").concat();
        for fmt in FORMATS {
            let h = load(&fixtures().join(size).join(fmt));
            let want_rows = if size == "base" { 3 } else { 16 };
            assert_eq!(h.config.task_type_vocab_size, want_rows, "{size}/{fmt}");
            let got = logits(&h, &tokens(&r, "task_type_ids_alt"));
            assert!(max_diff(&got, &want) <= TOL, "{size}/{fmt}: task types {got:?} vs HF {want:?}");
            assert!(max_diff(&got, &task0) > 100.0 * TOL, "{size}/{fmt}: the task type must change the logits");
            // Empty task ids mean task type 0, as in HF and PaddleNLP (task_id 0).
            let mut t = tokens(&r, "task_type_ids");
            t.task_ids.clear();
            assert!(max_diff(&logits(&h, &t), &task0) <= TOL);
        }
    }
}

#[test]
fn half_precision_pickles_load() {
    let nano = load(&fixtures().join("nano/hf"));
    for (dir, round) in [
        ("torch_f16", (|x: f32| half::f16::from_f32(x).to_f32()) as fn(f32) -> f32),
        ("torch_bf16", |x: f32| half::bf16::from_f32(x).to_f32()),
        ("paddle_f16", |x: f32| half::f16::from_f32(x).to_f32()),
    ] {
        let h = load(&fixtures().join("dtypes").join(dir));
        assert_eq!(h.config, nano.config);
        for ((s, a), b) in h.specs.iter().zip(&h.values).zip(&nano.values) {
            let want: Vec<f32> = b.iter().map(|&x| round(x)).collect();
            assert!(*a == want, "{dir}: {} is not the f32 value rounded", s.name);
        }
    }
}

/// The published PaddleNLP configurations (ERNIE_PRETRAINED_INIT_CONFIGURATION) and their HF
/// conversions (nghuyong/ernie-3.0-*-zh, written by ERNIE-Pytorch's convert.py), key for key.
fn published(size: &str) -> (Value, Value) {
    let (hidden, ffn, layers, task) = match size {
        "base" => (768, None, 12, 3),
        "medium" => (768, Some(3072), 6, 16),
        "mini" => (384, Some(1536), 6, 16),
        "micro" => (384, Some(1536), 4, 16),
        "nano" => (312, Some(1248), 4, 16),
        _ => unreachable!(),
    };
    let mut p = serde_json::json!({
        "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": hidden,
        "initializer_range": 0.02, "max_position_embeddings": 2048, "num_attention_heads": 12, "num_hidden_layers": layers,
        "task_type_vocab_size": task, "type_vocab_size": 4, "use_task_id": true, "vocab_size": 40000
    });
    if let Some(f) = ffn {
        p["intermediate_size"] = f.into();
    }
    let mut hf = p.clone();
    hf["layer_norm_eps"] = 1e-5.into();
    hf["model_type"] = "ernie".into();
    hf["architectures"] = serde_json::json!(["ErnieForMaskedLM"]);
    hf["intermediate_size"] = (4 * hidden).into();
    p["init_class"] = "ErnieModel".into();
    (p, hf)
}

#[test]
fn published_configurations_are_read_key_for_key() {
    // (hidden, layers, heads, FFN, task types, HF ErnieModel parameter count incl. the pooler)
    let expect = [
        ("base", 768, 12, 3072, 3, 117_944_832usize),
        ("medium", 768, 6, 3072, 16, 75_427_584),
        ("mini", 384, 6, 1536, 16, 26_949_504),
        ("micro", 384, 4, 1536, 16, 23_400_576),
        ("nano", 312, 4, 1248, 16, 17_912_232),
    ];
    for (size, hidden, layers, ffn, task, params) in expect {
        let (paddle_json, hf_json) = published(size);
        let old_style = serde_json::json!({"init_args": [paddle_json.clone()], "init_class": "ErnieForSequenceClassification", "num_classes": 2});
        let mut newer = paddle_json.clone();
        newer.as_object_mut().unwrap().remove("init_class");
        let from_hf = ModelConfig::from_json(&hf_json.to_string()).unwrap();
        for (what, c) in [
            ("model_config.json", ModelConfig::from_paddle_json(&paddle_json.to_string()).unwrap()),
            ("model_config.json (task model)", ModelConfig::from_paddle_json(&old_style.to_string()).unwrap()),
            ("PaddleNLP config.json", ModelConfig::from_paddle_json(&newer.to_string()).unwrap()),
            ("HF config.json", from_hf.clone()),
        ] {
            let got = (
                c.hidden_size,
                c.num_hidden_layers,
                c.num_attention_heads,
                c.intermediate_size,
                c.task_type_vocab_size,
            );
            assert_eq!(got, (hidden, layers, 12, ffn, task), "{size} {what}");
            assert_eq!((c.vocab_size, c.max_position_embeddings, c.type_vocab_size), (40000, 2048, 4), "{size} {what}");
            assert!(c.use_task_id && c.hidden_act == "gelu" && c.pad_token_id == 0, "{size} {what}");
            assert_eq!(c.layer_norm_eps, 1e-5, "{size} {what}: eps 1e-5, not BERT's 1e-12");
            assert_eq!(c, from_hf, "{size} {what}: {:?}", c.difference(&from_hf));
            let body: usize = ernie_model::params::param_specs(&c, 2)
                .0
                .iter()
                .filter(|s| !s.name.starts_with("classifier"))
                .map(|s| s.numel())
                .sum();
            assert_eq!(body, params, "{size} {what}: parameter count");
        }
    }
    // A PaddleNLP file that names layer_norm_eps is honoured; an HF config without one gets HF's 1e-12.
    let (mut p, mut hf) = published("nano");
    p["layer_norm_eps"] = 1e-12.into();
    assert_eq!(ModelConfig::from_paddle_json(&p.to_string()).unwrap().layer_norm_eps, 1e-12);
    hf.as_object_mut().unwrap().remove("layer_norm_eps");
    assert_eq!(ModelConfig::from_json(&hf.to_string()).unwrap().layer_norm_eps, 1e-12);
}

/// A `model_state.pdparams` as `paddle.save` writes it (protocol 3 here): `{name: ndarray}` through
/// `numpy.core.multiarray._reconstruct` with its BUILD state, and the `StructuredToParameterName@@` table.
fn pdparams(arrays: &[(String, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    fn unicode(b: &mut Vec<u8>, s: &str) {
        b.push(b'X');
        b.extend((s.len() as u32).to_le_bytes());
        b.extend(s.as_bytes());
    }
    fn int(b: &mut Vec<u8>, v: i64) {
        if (0..256).contains(&v) {
            b.extend([b'K', v as u8]);
        } else {
            b.push(b'J');
            b.extend((v as i32).to_le_bytes());
        }
    }
    let mut b = vec![0x80, 3, b'}', b'('];
    for (name, ty, shape, data) in arrays {
        unicode(&mut b, name);
        b.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n");
        b.extend([b'K', 0, 0x85, b'C', 1, b'b', 0x87, b'R']);
        b.extend([b'(', b'K', 1, b'(']);
        for &s in shape {
            int(&mut b, s as i64);
        }
        b.push(b't');
        b.extend(b"cnumpy\ndtype\n");
        unicode(&mut b, ty);
        b.extend([0x89, 0x88, 0x87, b'R', b'(', b'K', 3]);
        unicode(&mut b, "<");
        b.extend(b"NNN");
        int(&mut b, -1);
        int(&mut b, -1);
        int(&mut b, 0);
        b.extend([b't', b'b', 0x89, b'B']);
        b.extend((data.len() as u32).to_le_bytes());
        b.extend(data);
        b.extend([b't', b'b']);
    }
    unicode(&mut b, "StructuredToParameterName@@");
    b.push(b'}');
    b.extend([b'u', b'.']);
    b
}

/// `h` as PaddleNLP stores it: Paddle names, Linear weights `[in, out]`.
fn as_paddle(h: &HostParams) -> Vec<(String, &'static str, Vec<usize>, Vec<u8>)> {
    h.specs
        .iter()
        .zip(&h.values)
        .map(|(s, v)| {
            let name = paddle::paddle_name(&s.name).unwrap();
            let (_, t) = paddle::hf_name(&name).unwrap();
            let (shape, data) = if t {
                let (o, i) = (s.shape[0], s.shape[1]);
                let mut tv = vec![0f32; v.len()];
                for r in 0..o {
                    for c in 0..i {
                        tv[c * o + r] = v[r * i + c];
                    }
                }
                (vec![i, o], tv)
            } else {
                (s.shape.clone(), v.clone())
            };
            (name, "f4", shape, data.iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect()
}

#[test]
fn full_size_nano_loads_from_pdparams_and_safetensors() {
    // ernie-3.0-nano-zh exactly (40000 x 312, 2048 positions, 4 layers, FFN 1248), random weights.
    let (paddle_json, hf_json) = published("nano");
    let cfg = ModelConfig::from_paddle_json(&paddle_json.to_string()).unwrap();
    let h = HostParams::random(cfg, 3, 7);
    let dir = ScratchDir::new("nano-full-paddle");
    std::fs::write(dir.join("model_config.json"), paddle_json.to_string()).unwrap();
    std::fs::write(dir.join("model_state.pdparams"), pdparams(&as_paddle(&h))).unwrap();
    let p = load(&dir);
    assert_eq!(p.config, h.config);
    assert!(p.values == h.values, "pdparams values");
    let hf_dir = ScratchDir::new("nano-full-hf");
    std::fs::write(hf_dir.join("config.json"), hf_json.to_string()).unwrap();
    h.save_safetensors(&hf_dir.join("model.safetensors"), None).unwrap();
    let s = load(&hf_dir);
    assert_eq!(s.config, h.config);
    assert!(s.values == h.values, "safetensors values");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&hf_dir);
}

#[test]
fn pickles_that_ask_for_code_are_refused() {
    // The classic payload, as a pdparams and as a (legacy-format) pytorch_model.bin: nothing runs, and
    // the message names the file and the global.
    let evil = b"\x80\x02cos\nsystem\nX\x0b\x00\x00\x00touch pwnedR.";
    for (file, config) in
        [("model_state.pdparams", "base/paddle/model_config.json"), ("pytorch_model.bin", "base/torch/config.json")]
    {
        let d = ScratchDir::new(&format!("evil-{file}"));
        let config = fixtures().join(config);
        std::fs::copy(&config, d.join(config.file_name().unwrap())).unwrap();
        std::fs::write(d.join(file), evil).unwrap();
        let msg = load_err(&d);
        assert!(msg.contains(file) && msg.contains("os.system") && msg.contains("not an allowed"), "{msg}");
        assert!(!d.join("pwned").exists());
    }
    // A real file whose tensor rebuilder was swapped for another callable (legacy PyTorch format).
    let d = copy_dir(&fixtures().join("mini/torch"), "evil-legacy");
    patch(&d, "pytorch_model.bin", b"ctorch._utils\n_rebuild_tensor_v2\n", b"cposix\nsystem\n");
    let msg = load_err(&d);
    assert!(msg.contains("pytorch_model.bin") && msg.contains("posix.system"), "{msg}");
    // numpy's reconstructor swapped in a protocol 2 pdparams.
    let d = copy_dir(&fixtures().join("base/paddle"), "evil-numpy");
    patch(&d, "model_state.pdparams", b"cnumpy\ndtype\n", b"cbuiltins\neval\n");
    let msg = load_err(&d);
    assert!(msg.contains("model_state.pdparams") && msg.contains("builtins.eval"), "{msg}");
}

#[test]
fn unsupported_opcode_is_an_error_naming_it() {
    let d = copy_dir(&fixtures().join("base/paddle"), "opcode");
    patch(
        &d,
        "model_state.pdparams",
        b"cnumpy.core.multiarray\n_reconstruct\n",
        b"inumpy.core.multiarray\n_reconstruct\n",
    );
    let msg = load_err(&d);
    assert!(msg.contains("model_state.pdparams") && msg.contains("unsupported pickle opcode INST"), "{msg}");
}

#[test]
fn unknown_tensors_are_errors_naming_them() {
    // A name PaddleNLP's ERNIE does not have.
    let d = copy_dir(&fixtures().join("base/paddle"), "unknown-paddle");
    patch(&d, "model_state.pdparams", b"ernie.encoder.layers.1.linear1.bias", b"ernie.encoder.layers.1.linearX.bias");
    let msg = load_err(&d);
    assert!(
        msg.contains("model_state.pdparams")
            && msg.contains("ernie.encoder.layers.1.linearX.bias")
            && msg.contains("unknown"),
        "{msg}"
    );
    // A real name the config does not have room for: two layers of weights, a one-layer config.
    let d = copy_dir(&fixtures().join("base/paddle"), "unknown-layer");
    edit_json(&d.join("model_config.json"), |v| v["num_hidden_layers"] = 1.into());
    let msg = load_err(&d);
    assert!(msg.contains("model_state.pdparams") && msg.contains("unknown tensor ernie.encoder.layers.1."), "{msg}");
    // Task-type embeddings with use_task_id false.
    let d = copy_dir(&fixtures().join("nano/hf"), "unknown-task");
    edit_json(&d.join("config.json"), |v| v["use_task_id"] = false.into());
    let msg = load_err(&d);
    assert!(
        msg.contains("model.safetensors")
            && msg.contains("ernie.embeddings.task_type_embeddings.weight")
            && msg.contains("use_task_id false"),
        "{msg}"
    );
    // HF-named: a tensor of another architecture (relative position embeddings) in a safetensors file.
    let d = copy_dir(&fixtures().join("nano/hf"), "unknown-hf");
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let extra = vec![0u8; 4 * 12];
    let mut views: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    views.push((
        "ernie.encoder.layer.0.attention.self.distance_embedding.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 12], &extra).unwrap(),
    ));
    std::fs::write(d.join("model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    let msg = load_err(&d);
    assert!(
        msg.contains("model.safetensors")
            && msg.contains("unknown tensor ernie.encoder.layer.0.attention.self.distance_embedding.weight"),
        "{msg}"
    );
}

#[test]
fn missing_and_mismatched_tensors_name_the_paddle_tensor() {
    // A body tensor turned into a pre-training head entry (skipped): missing, named the Paddle way.
    let d = copy_dir(&fixtures().join("base/paddle"), "missing");
    let hidden = format!("cls.{}", "x".repeat("ernie.encoder.layers.1.norm2.bias".len() - 4));
    patch(&d, "model_state.pdparams", b"ernie.encoder.layers.1.norm2.bias", hidden.as_bytes());
    let msg = load_err(&d);
    assert!(
        msg.contains("model_state.pdparams")
            && msg.contains("ernie.encoder.layers.1.norm2.bias")
            && msg.contains("missing"),
        "{msg}"
    );
    // A config whose FFN is wider than the weights: the stored [in, out] shape against the expected one.
    let d = copy_dir(&fixtures().join("base/paddle"), "shape");
    edit_json(&d.join("model_config.json"), |v| v["intermediate_size"] = 128.into());
    let msg = load_err(&d);
    assert!(
        msg.contains("model_state.pdparams")
            && msg.contains("ernie.encoder.layers.0.linear1.weight")
            && msg.contains("[16, 64]")
            && msg.contains("[16, 128]"),
        "{msg}"
    );
}

#[test]
fn unsupported_dtypes_name_the_tensor() {
    // int32 arrays (numpy's 'i4'): the first tensor used is named.
    let d = copy_dir(&fixtures().join("base/paddle"), "dtype-i4");
    patch(&d, "model_state.pdparams", b"X\x02\x00\x00\x00f4", b"X\x02\x00\x00\x00i4");
    let msg = load_err(&d);
    assert!(
        msg.contains("model_state.pdparams")
            && msg.contains("tensor ernie.embeddings.word_embeddings.weight")
            && msg.contains("i4"),
        "{msg}"
    );
    // float64 declared over float32 data: the byte count does not fit the shape.
    let d = copy_dir(&fixtures().join("base/paddle"), "dtype-f8");
    patch(&d, "model_state.pdparams", b"X\x02\x00\x00\x00f4", b"X\x02\x00\x00\x00f8");
    let msg = load_err(&d);
    assert!(msg.contains("model_state.pdparams") && msg.contains("bytes of data for shape"), "{msg}");
}

#[test]
fn missing_config_keys_name_the_file_and_key() {
    let d = copy_dir(&fixtures().join("base/paddle"), "nokey-old");
    edit_json(&d.join("model_config.json"), |v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    let msg = load_err(&d);
    assert!(msg.contains("model_config.json") && msg.contains("missing required key \"hidden_size\""), "{msg}");
    let d = copy_dir(&fixtures().join("mini/paddle"), "nokey-new");
    edit_json(&d.join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("vocab_size");
    });
    let msg = load_err(&d);
    assert!(msg.contains("config.json") && msg.contains("\"vocab_size\""), "{msg}");
    let d = copy_dir(&fixtures().join("mini/paddle"), "taskid");
    edit_json(&d.join("config.json"), |v| v["task_id"] = 1.into());
    let msg = load_err(&d);
    assert!(msg.contains("config.json") && msg.contains("task_id 1"), "{msg}");
    let d = copy_dir(&fixtures().join("mini/paddle"), "noconfig");
    std::fs::remove_file(d.join("config.json")).unwrap();
    let msg = load_err(&d);
    assert!(msg.contains("model_config.json") && msg.contains("not found"), "{msg}");
    let d = copy_dir(&fixtures().join("mini/torch"), "torch-noconfig");
    std::fs::remove_file(d.join("config.json")).unwrap();
    let msg = load_err(&d);
    assert!(msg.contains("config.json") && msg.contains("not found"), "{msg}");
}

#[test]
fn damaged_pickles_are_errors_never_panics() {
    // Every truncation point and many single-byte changes of a protocol 2 pdparams, a protocol 4 one and
    // a legacy PyTorch file: an error or a load, never a panic.
    for (src, file) in [
        ("base/paddle", "model_state.pdparams"),
        ("micro/paddle", "model_state.pdparams"),
        ("mini/torch", "pytorch_model.bin"),
    ] {
        let d = copy_dir(&fixtures().join(src), &format!("damaged-{}", src.replace('/', "-")));
        let good = std::fs::read(d.join(file)).unwrap();
        let mut cases: Vec<Vec<u8>> = (0..good.len()).step_by(97).map(|n| good[..n].to_vec()).collect();
        let mut x = 12345u64;
        for _ in 0..300 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut b = good.clone();
            let at = (x >> 33) as usize % b.len();
            b[at] = (x >> 13) as u8;
            cases.push(b);
        }
        let mut errors = 0;
        for b in cases {
            std::fs::write(d.join(file), &b).unwrap();
            if let Err(e) = HostParams::load_dir(&d, 3, HeadInit::seed(0)) {
                assert!(e.to_string().contains(file), "{e}");
                errors += 1;
            }
        }
        assert!(errors > 0);
    }
}

#[test]
fn convert_writes_a_hf_directory_with_the_same_model() {
    for size in ["base", "medium", "micro"] {
        for fmt in FORMATS {
            let src = fixtures().join(size).join(fmt);
            let scratch = ScratchDir::new(&format!("convert-{size}-{fmt}"));
            let out = scratch.join("hf");
            let r = convert::convert_dir(&src, &out).unwrap();
            assert_eq!(r.num_labels, Some(3));
            let a = load(&src);
            let b = load(&out);
            assert_eq!(a.config, b.config, "{size}/{fmt}");
            assert!(a.values == b.values, "{size}/{fmt}");
            assert_eq!(ModelFiles::detect(&out).unwrap().format, WeightsFormat::Safetensors);
            let cfg: Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
            assert_eq!(cfg["model_type"], "ernie");
            assert_eq!(cfg["architectures"], serde_json::json!(["ErnieForSequenceClassification"]));
            assert_eq!(cfg["layer_norm_eps"], 1e-5);
            assert_eq!(cfg["use_task_id"], true);
            assert_eq!(cfg["num_labels"], 3);
            let vocab = std::fs::read_to_string(out.join("vocab.txt")).unwrap();
            assert!(vocab.starts_with("[PAD]\n[CLS]\n[SEP]\n[MASK]\n") && !vocab.contains('\t'), "{size}/{fmt}");
            if fmt == "paddle" {
                let tc: Value =
                    serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap()).unwrap();
                assert_eq!(tc["tokenizer_class"], "BertTokenizer");
                assert_eq!(tc["do_lower_case"], true);
            }
            // Never over a model.
            let e = convert::convert_dir(&src, &out).unwrap_err().to_string();
            assert!(e.contains("already exists"), "{e}");
        }
    }
    // A pretrained body (no classifier): none is written, and the architecture is the bare model.
    let src = copy_dir(&fixtures().join("nano/paddle"), "convert-body");
    let out = src.parent().unwrap().join("convert-body-hf");
    let _ = std::fs::remove_dir_all(&out);
    patch(&src, "model_state.pdparams", b"classifier.", b"cls.ifier_.");
    let r = convert::convert_dir(&src, &out).unwrap();
    assert_eq!(r.num_labels, None);
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"], serde_json::json!(["ErnieModel"]));
    assert!(cfg.get("num_labels").is_none());
    let st = std::fs::read(out.join("model.safetensors")).unwrap();
    let names = safetensors::SafeTensors::deserialize(&st).unwrap().names().len();
    assert_eq!(names, r.tensors);
    assert!(HostParams::load_dir(&out, 3, HeadInit::seed(0)).unwrap().initialised.len() == 2);
}
