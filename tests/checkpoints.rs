//! Checkpoint loading beyond the fixtures: the ERNIE 3.0 layout (an `ernie.` prefix and task-type
//! embeddings), f16/bf16 storage, save/reload round trips, and bad checkpoints giving errors that name the
//! file and tensor.

use ernie_backend::{Backend, Cpu};
use ernie_ft_suite::local_fixtures;
use ernie_model::{Encoder, ForwardOpts, HeadInit, HostParams, ModelError, Tokens};
use ernie_testkit::ScratchDir;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::BTreeMap;
use std::path::Path;

fn tiny() -> HostParams {
    HostParams::load_dir(&local_fixtures().join("tiny_random_model"), 5, HeadInit::seed(0)).unwrap()
}

fn batch() -> Tokens {
    Tokens::from_rows(&[(vec![2, 5, 7, 9, 3], vec![0, 0, 0, 1, 1]), (vec![2, 8, 3], vec![0, 0, 0])], 0)
}

fn logits(h: &HostParams, t: &Tokens) -> Vec<f32> {
    let b = Cpu::<f32>::new();
    let e = Encoder::from_host(&b, h);
    b.download(&e.forward(&b, t, &ForwardOpts::eval()).logits)
}

/// Write tensors (name -> (dtype, shape, bytes)) and a config into `dir`.
fn write_checkpoint(dir: &Path, config: &serde_json::Value, tensors: &BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(config).unwrap()).unwrap();
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(dir.join("model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
}

fn as_tensors(h: &HostParams, prefix: &str, dtype: Dtype) -> BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    h.specs
        .iter()
        .zip(&h.values)
        .map(|(s, v)| {
            let name = if s.name.starts_with("classifier") { s.name.clone() } else { format!("{prefix}{}", s.name) };
            let bytes: Vec<u8> = match dtype {
                Dtype::F16 => v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
                Dtype::BF16 => v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect(),
                _ => v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
            };
            (name, (dtype, s.shape.clone(), bytes))
        })
        .collect()
}

#[test]
fn ernie_layout_with_task_type_embeddings() {
    let bert = tiny();
    let task_row: Vec<f32> = (0..32).map(|i| 0.01 * i as f32 - 0.1).collect();
    let mut tensors = as_tensors(&bert, "ernie.", Dtype::F32);
    let table: Vec<f32> = task_row.iter().copied().chain((0..64).map(|i| i as f32)).collect();
    tensors.insert(
        "ernie.embeddings.task_type_embeddings.weight".into(),
        (Dtype::F32, vec![3, 32], table.iter().flat_map(|x| x.to_le_bytes()).collect()),
    );
    let mut cfg = bert.config.to_hf_json(5);
    cfg["model_type"] = "ernie".into();
    cfg["use_task_id"] = true.into();
    cfg["task_type_vocab_size"] = 3.into();
    let dir = ScratchDir::new("ernie");
    write_checkpoint(&dir, &cfg, &tensors);
    let ernie = HostParams::load_dir(&dir, 5, HeadInit::seed(0)).unwrap();
    assert_eq!(ernie.specs.len(), bert.specs.len() + 1);
    // Task id 0 everywhere adds task row 0 to every token: the same as adding it to every position row.
    let mut shifted = bert.clone();
    for p in shifted.values[1].chunks_mut(32) {
        for (x, t) in p.iter_mut().zip(&task_row) {
            *x += t;
        }
    }
    let t = batch();
    let (a, b) = (logits(&ernie, &t), logits(&shifted, &t));
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5), "{a:?} vs {b:?}");
    assert!(logits(&bert, &t).iter().zip(&a).any(|(x, y)| (x - y).abs() > 1e-3), "the task embedding must matter");
    // And saved with the ernie. prefix.
    let out = dir.join("saved.safetensors");
    ernie.save_safetensors(&out, None).unwrap();
    let st = std::fs::read(&out).unwrap();
    let names: Vec<String> =
        safetensors::SafeTensors::deserialize(&st).unwrap().names().into_iter().map(String::from).collect();
    assert!(names.contains(&"ernie.embeddings.task_type_embeddings.weight".to_string()));
    assert!(names.contains(&"classifier.weight".to_string()));
}

#[test]
fn half_precision_and_bare_names_load() {
    let h = tiny();
    for (dtype, prefix) in [(Dtype::F16, ""), (Dtype::BF16, "bert.")] {
        let dir = ScratchDir::new(&format!("{dtype:?}"));
        write_checkpoint(&dir, &h.config.to_hf_json(5), &as_tensors(&h, prefix, dtype));
        let loaded = HostParams::load_dir(&dir, 5, HeadInit::seed(0)).unwrap();
        for (a, b) in loaded.values.iter().zip(&h.values) {
            let tol = if dtype == Dtype::F16 { 1e-3 } else { 1e-2 };
            assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * y.abs().max(1.0)));
        }
    }
}

#[test]
fn save_and_reload_is_bit_identical() {
    let h = tiny();
    let dir = ScratchDir::new("roundtrip");
    std::fs::create_dir_all(&dir).unwrap();
    h.save_safetensors(&dir.join("model.safetensors"), None).unwrap();
    std::fs::write(dir.join("config.json"), h.config.to_hf_json(5).to_string()).unwrap();
    let back = HostParams::load_dir(&dir, 5, HeadInit::seed(0)).unwrap();
    assert_eq!(back.values, h.values);
    let t = batch();
    assert_eq!(logits(&back, &t), logits(&h, &t));
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
}

#[test]
fn missing_head_is_created_from_the_head_seed() {
    let h = tiny();
    let mut tensors = as_tensors(&h, "bert.", Dtype::F32);
    tensors.retain(|n, _| !n.contains("pooler") && !n.starts_with("classifier"));
    let dir = ScratchDir::new("nohead");
    write_checkpoint(&dir, &h.config.to_hf_json(5), &tensors);
    let a = HostParams::load_dir(&dir, 7, HeadInit::seed(42)).unwrap();
    let b = HostParams::load_dir(&dir, 7, HeadInit::seed(42)).unwrap();
    let c = HostParams::load_dir(&dir, 7, HeadInit::seed(43)).unwrap();
    assert_eq!(a.initialised.len(), 4);
    assert_eq!(a.values, b.values);
    assert_ne!(a.values, c.values);
    let cls = a.specs.iter().position(|s| s.name == "classifier.weight").unwrap();
    let w = &a.values[cls];
    assert_eq!(w.len(), 7 * 32);
    let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
    assert!((0.012..0.028).contains(&std), "head init std {std}");
    assert!(a.values[cls + 1].iter().all(|&v| v == 0.0));
}

fn load_err(dir: &Path) -> String {
    let e: ModelError = HostParams::load_dir(dir, 5, HeadInit::seed(0)).unwrap_err();
    e.to_string()
}

#[test]
fn bad_checkpoints_name_the_file_and_tensor() {
    let h = tiny();
    let cfg = h.config.to_hf_json(5);
    let msg = load_err(Path::new("/nonexistent/model"));
    assert!(msg.contains("/nonexistent/model") && msg.contains("not found"), "{msg}");

    let dir = ScratchDir::new("bad-missing");
    let mut t = as_tensors(&h, "bert.", Dtype::F32);
    t.remove("bert.encoder.layer.1.output.dense.weight");
    write_checkpoint(&dir, &cfg, &t);
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.safetensors")
            && msg.contains("encoder.layer.1.output.dense.weight")
            && msg.contains("missing"),
        "{msg}"
    );

    let dir = ScratchDir::new("bad-shape");
    let mut t = as_tensors(&h, "bert.", Dtype::F32);
    t.insert(
        "bert.encoder.layer.0.attention.self.query.weight".into(),
        (Dtype::F32, vec![32, 16], vec![0; 32 * 16 * 4]),
    );
    write_checkpoint(&dir, &cfg, &t);
    let msg = load_err(&dir);
    assert!(
        msg.contains("bert.encoder.layer.0.attention.self.query.weight")
            && msg.contains("[32, 16]")
            && msg.contains("[32, 32]"),
        "{msg}"
    );

    let dir = ScratchDir::new("bad-dtype");
    let mut t = as_tensors(&h, "bert.", Dtype::F32);
    t.insert("bert.pooler.dense.bias".into(), (Dtype::I32, vec![32], vec![0; 32 * 4]));
    write_checkpoint(&dir, &cfg, &t);
    let msg = load_err(&dir);
    assert!(msg.contains("bert.pooler.dense.bias") && msg.contains("I32"), "{msg}");

    let dir = ScratchDir::new("bad-config");
    write_checkpoint(&dir, &cfg, &as_tensors(&h, "bert.", Dtype::F32));
    std::fs::write(dir.join("config.json"), "{\"hidden_size\": 32,").unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("config.json") && msg.contains("malformed"), "{msg}");
    std::fs::write(dir.join("config.json"), r#"{"hidden_size": 30, "num_attention_heads": 4, "vocab_size": 9, "num_hidden_layers": 1, "intermediate_size": 8}"#).unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("config.json") && msg.contains("multiple of num_attention_heads"), "{msg}");
    std::fs::write(
        dir.join("config.json"),
        r#"{"hidden_size": 32, "num_attention_heads": 4, "vocab_size": 9, "num_hidden_layers": 1}"#,
    )
    .unwrap();
    assert!(load_err(&dir).contains("intermediate_size"));

    let dir = ScratchDir::new("bad-file");
    write_checkpoint(&dir, &cfg, &as_tensors(&h, "bert.", Dtype::F32));
    std::fs::write(dir.join("model.safetensors"), b"not a safetensors file").unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("model.safetensors") && msg.contains("not a valid safetensors"), "{msg}");
}
