//! Converting a model directory of any format ernie-ft reads (HF safetensors, `pytorch_model.bin`,
//! PaddleNLP `model_state.pdparams`) into a HF transformers directory: `model.safetensors` (F32, HF
//! names, only the tensors the source has), `config.json` (HF, `model_type` `bert` / `ernie`) and the
//! tokenizer files, made readable by HF (`ernie-ft convert`).

use super::{read_tensors, ConfigStyle, ModelFiles};
use crate::params::{HeadInit, HostParams};
use crate::{write_atomic, ModelError};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use std::path::Path;

/// What [`convert_dir`] did.
#[derive(Debug)]
pub struct ConvertReport {
    pub source: ModelFiles,
    /// Tensors written.
    pub tensors: usize,
    /// Labels of the source's classifier; `None` for a pretrained body (no classifier written).
    pub num_labels: Option<usize>,
    /// The files written, in `out`.
    pub files: Vec<String>,
}

/// Tokenizer files that a model directory may hold and that go with it into a HF directory.
pub const TOKENIZER_FILES: [&str; 4] =
    ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"];

/// The tokenizer files of `dir` as a HF directory needs them: unchanged, except a PaddleNLP `vocab.txt`
/// in the `token<TAB>id` form (one token per line is what HF reads) and a `tokenizer_config.json` naming
/// a PaddleNLP tokenizer class HF does not have (`ErnieTokenizer`, `init_class`): the class becomes HF's
/// `BertTokenizer` (the same WordPiece), the other keys (`do_lower_case`, special tokens) are kept.
pub fn hf_tokenizer_files(dir: &Path) -> Result<Vec<(&'static str, Vec<u8>)>, ModelError> {
    let mut out = Vec::new();
    for name in TOKENIZER_FILES {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        let bytes = match name {
            "vocab.txt" => hf_vocab(bytes),
            "tokenizer_config.json" => hf_tokenizer_config(&path, bytes)?,
            _ => bytes,
        };
        out.push((name, bytes));
    }
    Ok(out)
}

/// `token\tid` lines (PaddleNLP / ERNIE 1.0 style) to `token` lines; any other vocab unchanged.
fn hf_vocab(bytes: Vec<u8>) -> Vec<u8> {
    if !bytes.contains(&b'\t') {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        match line.iter().position(|&b| b == b'\t') {
            Some(t) => {
                out.extend_from_slice(&line[..t]);
                if line.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
            None => out.extend_from_slice(line),
        }
    }
    out
}

fn hf_tokenizer_config(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, ModelError> {
    use serde_json::Value;
    let bad = |msg: String| ModelError::Config { path: path.to_path_buf(), msg };
    let mut v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    let Some(obj) = v.as_object_mut() else { return Err(bad("not a JSON object".into())) };
    let paddle_class = |k: &str| obj.get(k).and_then(Value::as_str).is_some_and(|c| c.starts_with("Ernie"));
    if !paddle_class("tokenizer_class") && !paddle_class("init_class") {
        return Ok(bytes);
    }
    obj.remove("init_class");
    obj.insert("tokenizer_class".into(), "BertTokenizer".into());
    Ok(serde_json::to_vec_pretty(&v).expect("a JSON value serialises"))
}

/// Convert the model directory `from` into a HF directory `out` (created; it must not hold a model).
pub fn convert_dir(from: &Path, out: &Path) -> Result<ConvertReport, ModelError> {
    let files = ModelFiles::detect(from)?;
    let config = files.read_config()?;
    let bytes = std::fs::read(&files.weights).map_err(|e| ModelError::io(&files.weights, e))?;
    let table = read_tensors(&files, &bytes)?;
    let num_labels =
        table.tensors.get("classifier.weight").map(|t| t.hf_shape()).filter(|s| s.len() == 2).map(|s| s[0]);
    let host = HostParams::from_table(config, &files.weights, &table, num_labels.unwrap_or(2), HeadInit::seed(0))?;
    drop(table);
    drop(bytes);

    if same_dir(from, out) {
        return Err(ModelError::Checkpoint {
            path: out.to_path_buf(),
            msg: "--out is the source directory; convert into another one".into(),
        });
    }
    for f in ["model.safetensors", "config.json", "pytorch_model.bin", "model_state.pdparams"] {
        if out.join(f).exists() {
            return Err(ModelError::Checkpoint {
                path: out.join(f),
                msg: "already exists: convert into a new or empty directory".into(),
            });
        }
    }
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;

    let model_type = host.config.model_type;
    let views: Vec<(String, TensorView)> = host
        .specs
        .iter()
        .zip(&host.values)
        .filter(|(s, _)| !host.initialised.contains(&s.name))
        .map(|(s, v)| {
            (
                s.hf_name(model_type),
                TensorView::new(StDtype::F32, s.shape.clone(), bytemuck::cast_slice(v)).expect("shape matches data"),
            )
        })
        .collect();
    let tensors = views.len();
    let st = safetensors::serialize(views, None)
        .map_err(|e| ModelError::Checkpoint { path: out.join("model.safetensors"), msg: e.to_string() })?;

    let config_json = hf_config(&files, &host, num_labels)?;
    let mut written = vec![
        ("model.safetensors", st),
        ("config.json", serde_json::to_vec_pretty(&config_json).expect("JSON serialises")),
    ];
    written.extend(hf_tokenizer_files(from)?);
    let mut names = vec![];
    for (name, data) in &written {
        write_atomic(&out.join(name), data)?;
        names.push(name.to_string());
    }
    Ok(ConvertReport { source: files, tensors, num_labels, files: names })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The HF `config.json`: for an HF source its own keys kept and ernie-ft's model keys written over them;
/// for a PaddleNLP source ernie-ft's alone. Without a classifier: no `num_labels` / label maps, and
/// `architectures` the bare model (`ErnieModel` / `BertModel`).
fn hf_config(
    files: &ModelFiles,
    host: &HostParams,
    num_labels: Option<usize>,
) -> Result<serde_json::Value, ModelError> {
    use serde_json::{Map, Value};
    let mut cfg: Map<String, Value> = match files.config_style {
        ConfigStyle::HuggingFace => {
            let text = std::fs::read_to_string(&files.config).map_err(|e| ModelError::io(&files.config, e))?;
            match serde_json::from_str(&text) {
                Ok(Value::Object(m)) => m,
                _ => return Err(ModelError::Config { path: files.config.clone(), msg: "not a JSON object".into() }),
            }
        }
        ConfigStyle::PaddleNlp => Map::new(),
    };
    let Value::Object(ours) = host.config.to_hf_json(num_labels.unwrap_or(2)) else {
        unreachable!("to_hf_json is an object")
    };
    cfg.extend(ours);
    for k in ["torch_dtype", "dtype"] {
        if cfg.contains_key(k) {
            cfg.insert(k.into(), "float32".into());
        }
    }
    let labels_fit = |m: &Map<String, Value>| {
        num_labels.is_some_and(|n| m.get("id2label").and_then(Value::as_object).is_some_and(|l| l.len() == n))
    };
    if !labels_fit(&cfg) {
        cfg.remove("id2label");
        cfg.remove("label2id");
    }
    if num_labels.is_none() {
        cfg.remove("num_labels");
        let bare = match host.config.model_type {
            crate::ModelType::Bert => "BertModel",
            crate::ModelType::Ernie => "ErnieModel",
        };
        cfg.insert("architectures".into(), serde_json::json!([bare]));
    }
    Ok(Value::Object(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_and_tokenizer_config_for_hf() {
        assert_eq!(hf_vocab(b"[PAD]\n[CLS]\n".to_vec()), b"[PAD]\n[CLS]\n");
        assert_eq!(hf_vocab(b"[PAD]\t0\n[CLS]\t1\n\xe7\x9a\x84\t2".to_vec()), b"[PAD]\n[CLS]\n\xe7\x9a\x84");
        let p = Path::new("tokenizer_config.json");
        let hf = br#"{"do_lower_case": false, "tokenizer_class": "BertTokenizer"}"#.to_vec();
        assert_eq!(hf_tokenizer_config(p, hf.clone()).unwrap(), hf);
        let paddle = br#"{"do_lower_case": true, "init_class": "ErnieTokenizer", "unk_token": "[UNK]"}"#.to_vec();
        let v: serde_json::Value = serde_json::from_slice(&hf_tokenizer_config(p, paddle).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"do_lower_case": true, "tokenizer_class": "BertTokenizer", "unk_token": "[UNK]"})
        );
    }
}
