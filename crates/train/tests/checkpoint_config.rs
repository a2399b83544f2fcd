//! A saved checkpoint's config.json starts from the source directory's (base model or source checkpoint):
//! keys ernie-ft does not own are kept (`tokenizer_class` makes HF transformers pick the right tokenizer),
//! ours are overwritten.

use ernie_data::{LabelSet, TaskSpec};
use ernie_model::{HeadInit, HostParams, ModelConfig};
use ernie_train::checkpoint::{self, CheckpointMeta};
use serde_json::{json, Value};
use std::path::Path;

fn tiny_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny_random_model")
}

fn meta(labels: &LabelSet) -> CheckpointMeta {
    CheckpointMeta {
        format: 1,
        task: TaskSpec::custom("synthetic", "sentence", None, Some("label")),
        labels: labels.clone(),
        max_len: 32,
        base_model: "base".into(),
        train_config: json!({}),
        steps: 0,
        epochs_done: 0.0,
        report: json!({}),
    }
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn saved_config_keeps_the_base_models_other_keys_and_overwrites_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = LabelSet::from_labels(vec!["甲".into(), "乙".into(), "丙".into()], "test").unwrap();
    let params =
        HostParams::load_dir(&tiny_dir(), labels.len(), HeadInit { seed: 0, replace_mismatched_classifier: true })
            .unwrap();

    // A base model directory whose config.json has keys of its own and stale values of ours.
    let base = tmp.path().join("base");
    std::fs::create_dir(&base).unwrap();
    let mut cfg = read(&tiny_dir().join("config.json"));
    cfg["tokenizer_class"] = json!("XLMRobertaTokenizer");
    cfg["foo"] = json!({ "bar": [1, 2] });
    cfg["architectures"] = json!(["BertModel"]);
    cfg["num_labels"] = json!(5);
    cfg["dtype"] = json!("float16");
    cfg["hidden_dropout_prob"] = json!(0.3);
    std::fs::write(base.join("config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    std::fs::write(base.join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n").unwrap();

    let out = tmp.path().join("ckpt");
    checkpoint::save(&out, &params, &meta(&labels), &base).unwrap();
    let saved = read(&out.join("config.json"));
    // Kept.
    assert_eq!(saved["tokenizer_class"], "XLMRobertaTokenizer", "{saved}");
    assert_eq!(saved["foo"], json!({ "bar": [1, 2] }));
    assert_eq!(saved["is_decoder"], false, "a key of the base config that ernie-ft does not write");
    // Overwritten.
    assert_eq!(saved["architectures"], json!(["BertForSequenceClassification"]));
    assert_eq!(saved["num_labels"], 3);
    assert_eq!(saved["dtype"], "float32", "the weights are saved as float32");
    assert_eq!(saved["id2label"], json!({ "0": "甲", "1": "乙", "2": "丙" }));
    assert_eq!(saved["label2id"], json!({ "甲": 0, "乙": 1, "丙": 2 }));
    let ours = params.config.to_hf_json(3);
    for (k, v) in ours.as_object().unwrap() {
        assert_eq!(&saved[k], v, "{k}");
    }
    let hidden_dropout = saved["hidden_dropout_prob"].as_f64().unwrap();
    assert!((hidden_dropout - 0.1).abs() < 1e-6, "ours (the params' config), not the base's 0.3: {hidden_dropout}");
    assert_eq!(ModelConfig::from_file(&out.join("config.json")).unwrap(), params.config);

    // The checkpoint reloads, and a checkpoint saved from it (e.g. an average) keeps the keys again.
    let ck = checkpoint::load(&out).unwrap();
    let out2 = tmp.path().join("ckpt2");
    checkpoint::save(&out2, &ck.params, &ck.meta, &out).unwrap();
    let saved2 = read(&out2.join("config.json"));
    assert_eq!(saved2, saved);
}

#[test]
fn without_a_source_config_ours_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = LabelSet::from_labels(vec!["a".into(), "b".into()], "test").unwrap();
    let params =
        HostParams::load_dir(&tiny_dir(), labels.len(), HeadInit { seed: 0, replace_mismatched_classifier: true })
            .unwrap();
    let tok = tmp.path().join("tok");
    std::fs::create_dir(&tok).unwrap();
    std::fs::write(tok.join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n").unwrap();
    let out = tmp.path().join("ckpt");
    checkpoint::save(&out, &params, &meta(&labels), &tok).unwrap();
    let saved = read(&out.join("config.json"));
    let mut want = params.config.to_hf_json(2);
    want["id2label"] = json!({ "0": "a", "1": "b" });
    want["label2id"] = json!({ "a": 0, "b": 1 });
    assert_eq!(saved, want);
}
