//! What the `ernie-ft` subcommands build on, used as a library on the tiny random model: a checkpoint
//! evaluated and predicting on files ([`ernie_train::inference`]), checkpoints averaged
//! ([`ernie_train::average`]), sentence embeddings ([`ernie_train::embed`]).

use ernie_data::{LabelSet, TaskSpec};
use ernie_model::{HeadInit, HostParams};
use ernie_tensor::Cpu;
use ernie_train::average::Members;
use ernie_train::checkpoint::{self, CheckpointMeta};
use ernie_train::embed::{Embedder, Embedding};
use ernie_train::inference::Finetuned;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const CHARS: &str = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经";
const LABELS: [&str; 3] = ["甲", "乙", "丙"];

/// A copy of the tiny random model with a WordPiece vocab of [PAD] [UNK] [CLS] [SEP] [MASK] + 80 chars.
fn tiny_model(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny_random_model");
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), m.join(f)).unwrap();
    }
    let vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .chain(CHARS.chars().map(String::from))
        .collect();
    std::fs::write(m.join("vocab.txt"), vocab.join("\n")).unwrap();
    m
}

/// `n` texts of 3 to 12 characters, different for each `seed`.
fn texts(n: usize, seed: usize) -> Vec<String> {
    let chars: Vec<char> = CHARS.chars().collect();
    (0..n)
        .map(|i| (0..3 + (i * 7 + seed) % 10).map(|k| chars[(i * 13 + k * 5 + seed) % chars.len()]).collect())
        .collect()
}

/// A checkpoint of the tiny model with a 3-label head initialised from `head_seed` (nothing trained).
fn checkpoint_of(model: &Path, dir: &Path, head_seed: u64) -> PathBuf {
    let labels = LabelSet::from_labels(LABELS.iter().map(|s| s.to_string()).collect(), "test").unwrap();
    let params =
        HostParams::load_dir(model, labels.len(), HeadInit { seed: head_seed, replace_mismatched_classifier: true })
            .unwrap();
    let meta = CheckpointMeta {
        format: 1,
        task: TaskSpec::custom("synthetic", "sentence", None, Some("label")),
        labels,
        max_len: 32,
        base_model: model.display().to_string(),
        train_config: json!({}),
        steps: 0,
        epochs_done: 0.0,
        report: json!({}),
    };
    checkpoint::save(dir, &params, &meta, model).unwrap();
    dir.to_path_buf()
}

fn write_lines(path: &Path, rows: &[Value]) -> PathBuf {
    std::fs::write(path, rows.iter().map(|r| format!("{r}\n")).collect::<String>()).unwrap();
    path.to_path_buf()
}

#[test]
fn eval_and_predict_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let ck = checkpoint_of(&model, &tmp.path().join("ck"), 1);
    let b = Cpu::<f32>::new();
    let m = Finetuned::open(&b, &ck).unwrap();
    assert!(m.check_max_len(32).is_ok() && m.check_max_len(64).is_ok());
    let e = m.check_max_len(2).unwrap_err().to_string();
    assert!(e.starts_with("--max-len 2: "), "{e}");
    let e = m.check_max_len(65).unwrap_err().to_string();
    assert!(e.contains("max_position_embeddings 64") && e.contains("config.json"), "{e}");

    // Labelled: accuracy is the share of predictions equal to the gold label.
    let t = texts(30, 1);
    let dev: Vec<Value> = t.iter().enumerate().map(|(i, s)| json!({ "sentence": s, "label": LABELS[i % 3] })).collect();
    let dev = write_lines(&tmp.path().join("dev.json"), &dev);
    let ds = m.labelled(&dev, None, None).unwrap();
    let mut batches = 0;
    let metrics = m.evaluate(&b, &ds, 8, |n| batches += n);
    assert_eq!((metrics.examples, batches), (30, 30));
    let predictions = m.predict(&b, &m.unlabelled(&dev).unwrap(), 8, |_| {});
    let right = predictions.iter().enumerate().filter(|(i, p)| p.label == LABELS[i % 3]).count();
    assert_eq!(metrics.accuracy, right as f64 / 30.0);
    assert_eq!(m.labelled(&dev, Some(4), Some(16)).unwrap().len(), 4);

    // Unlabelled: ids as written (int, string, a string of digits), the position without one; labels,
    // when present, are not read.
    let ids = [json!(1000), json!("t-1"), json!("0042"), Value::Null];
    let test: Vec<Value> = t
        .iter()
        .take(8)
        .enumerate()
        .map(|(i, s)| match &ids[i % 4] {
            Value::Null => json!({ "sentence": s, "label": "not a label" }),
            id => json!({ "id": id, "sentence": s }),
        })
        .collect();
    let test = write_lines(&tmp.path().join("test.json"), &test);
    let input = m.unlabelled(&test).unwrap();
    assert_eq!(input.len(), 8);
    let predictions = m.predict(&b, &input, 3, |_| {});
    for (i, p) in predictions.iter().enumerate() {
        let want = if i % 4 == 3 { json!(i) } else { ids[i % 4].clone() };
        assert_eq!(p.id, want, "row {i}");
        assert_eq!(p.logits.len(), 3);
        let best = (0..3).max_by(|&x, &y| p.logits[x].total_cmp(&p.logits[y])).unwrap();
        assert_eq!(p.label, LABELS[best]);
        let row = p.to_json(false);
        assert_eq!(row, json!({ "id": want, "label": p.label }));
        assert_eq!(p.to_json(true)["logits"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn average_weighted_and_greedy() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let (c1, c2) = (checkpoint_of(&model, &tmp.path().join("c1"), 1), checkpoint_of(&model, &tmp.path().join("c2"), 2));
    let out = tmp.path().join("avg");
    let e = format!("{:#}", Members::load(&c2, &[c1.clone(), c2.clone()]).err().unwrap());
    assert!(e.contains("--out") && e.contains("c2"), "{e}");

    let members = Members::load(&out, &[c1.clone(), c2.clone()]).unwrap();
    let (a, b) = (&members.checkpoints[0].params, &members.checkpoints[1].params);
    let soup = members.average(Some(&[3.0, 1.0])).unwrap();
    assert_eq!(soup.note, "average of 2 checkpoints");
    let mut differ = false;
    for ((v, x), y) in soup.params.values.iter().zip(&a.values).zip(&b.values) {
        for ((&m, &p), &q) in v.iter().zip(x).zip(y) {
            assert_eq!(m, (0.75 * p as f64 + 0.25 * q as f64) as f32);
            differ |= p != q;
        }
    }
    assert!(differ, "the heads differ (head seeds 1 and 2)");
    for bad in [&[1.0][..], &[0.0, 0.0], &[1.0, f64::NAN]] {
        let e = members.average(Some(bad)).err().unwrap().to_string();
        assert!(e.starts_with("--weights"), "{e}");
    }

    let holdout: Vec<Value> =
        texts(12, 5).iter().enumerate().map(|(i, s)| json!({ "sentence": s, "label": LABELS[i % 3] })).collect();
    let holdout = write_lines(&tmp.path().join("holdout.json"), &holdout);
    let soup = members.greedy_soup(&Cpu::<f32>::new(), &holdout).unwrap();
    assert!(soup.note.starts_with("greedy soup of [") && soup.note.contains("held-out accuracy"), "{}", soup.note);
    members.save(&out, &soup).unwrap();
    let saved = checkpoint::load(&out).unwrap();
    assert_eq!(saved.meta.report, json!({ "fma": soup.note, "members": [c1, c2] }));
    assert_eq!(saved.params.values, soup.params.values);
}

#[test]
fn embeddings_in_input_order_whatever_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let e = Embedder::load(Some(&model), None).unwrap();
    assert_eq!(e.max_len, 64, "the default 128 is capped by the position table");
    let err = format!("{:#}", Embedder::load(Some(&model), Some(65)).err().unwrap());
    assert!(err.contains("--max-len 65") && err.contains("max_position_embeddings 64"), "{err}");

    let t = texts(10, 3);
    let inputs: Vec<(&str, Option<&str>)> =
        t.iter().enumerate().map(|(i, s)| (s.as_str(), (i % 3 == 2).then_some(t[0].as_str()))).collect();
    let b = Cpu::<f32>::new();
    let one = e.embed_texts(&b, &inputs, 1).unwrap();
    let four = e.embed_texts(&b, &inputs, 4).unwrap();
    assert_eq!(one.len(), 10);
    let close = |x: &Embedding, y: &Embedding| {
        x.cls.iter().chain(&x.mean).zip(y.cls.iter().chain(&y.mean)).all(|(a, b)| (a - b).abs() <= 1e-5)
    };
    for (i, (x, y)) in one.iter().zip(&four).enumerate() {
        assert_eq!((x.cls.len(), x.mean.len()), (32, 32));
        assert!(close(x, y), "input {i}: batch 1 vs 4");
    }
    let reversed: Vec<(&str, Option<&str>)> = inputs.iter().rev().cloned().collect();
    let rev = e.embed_texts(&b, &reversed, 4).unwrap();
    for (i, (x, y)) in one.iter().zip(rev.iter().rev()).enumerate() {
        assert!(close(x, y), "input {i}: reversed input, reversed output");
    }
    assert!(!close(&one[0], &one[1]), "distinct inputs, distinct rows");

    // An input the model cannot take is named by its position.
    let short = Embedder { max_len: 2, ..e };
    let err = short.tokenize(&[("的", None)]).unwrap_err();
    assert_eq!(err.index, 0);
    assert!(err.message.contains("max_len 2 is too small"), "{err}");
}
