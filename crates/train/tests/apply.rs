//! What the `ernie-ft` subcommands build on, used as a library on the tiny random model: a checkpoint
//! evaluated and predicting on files ([`ernie_train::inference`]), checkpoints averaged
//! ([`ernie_train::average`]), sentence embeddings ([`ernie_train::embed`]).

use anyhow::Result;
use ernie_backend::{Backend, Cpu};
use ernie_data::{read_examples, Dataset, LabelSet, TaskSpec};
use ernie_model::{HeadInit, HostParams};
use ernie_testkit::{model_in, CHARS, LABELS};
use ernie_train::average::Members;
use ernie_train::checkpoint::{self, CheckpointMeta};
use ernie_train::embed::{Embedder, Embedding};
use ernie_train::eval::{self, Windows};
use ernie_train::inference::{Finetuned, Prediction};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

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

/// A checkpoint of the tiny model (head seed 1, see [`checkpoint_of`]) in `dir/ck`, opened on the CPU.
fn finetuned(dir: &Path) -> (Cpu<f32>, Finetuned<Cpu<f32>>) {
    let ck = checkpoint_of(&model_in(dir), &dir.join("ck"), 1);
    let b = Cpu::<f32>::new();
    let m = Finetuned::open(&b, &ck).unwrap();
    (b, m)
}

fn write_lines(path: &Path, rows: &[Value]) -> PathBuf {
    std::fs::write(path, rows.iter().map(|r| format!("{r}\n")).collect::<String>()).unwrap();
    path.to_path_buf()
}

/// Largest difference allowed between results computed in different batches.
const TOL: f32 = 1e-5;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The predictions of `file`, streamed in `windows`, and the examples counted by `on_batch`.
fn predict_all<B: Backend>(m: &Finetuned<B>, b: &B, file: &Path, windows: Windows) -> Result<(Vec<Prediction>, usize)> {
    let (mut out, mut counted) = (Vec::new(), 0);
    let n = m.predict_file(
        b,
        file,
        windows,
        |n| counted += n,
        |p| {
            out.push(p);
            Ok(())
        },
    )?;
    assert_eq!(n, out.len());
    Ok((out, counted))
}

/// The embeddings of `inputs`, streamed in `windows`, each with its input.
fn embed_all(e: &Embedder, inputs: &[(String, Option<String>)], windows: Windows) -> Result<Vec<Embedding>> {
    let mut out = Vec::new();
    e.embed(
        &Cpu::<f32>::new(),
        windows,
        inputs.iter().map(Ok),
        |(a, b)| e.encode_one(a, b.as_deref()).map_err(anyhow::Error::msg),
        |_| {},
        |x, row| {
            assert!(std::ptr::eq(x, &inputs[out.len()]), "each row comes with its own input");
            out.push(row);
            Ok(())
        },
    )?;
    Ok(out)
}

/// `n` lines to predict, of lengths 3 to 12, with ids of every kind: an int, a string, a string of digits,
/// none (then a label that is not one of the checkpoint's, never read), and blank lines between some.
fn test_file(path: &Path, n: usize) -> (PathBuf, Vec<Value>) {
    let ids = [json!(1000), json!("t-1"), json!("0042"), Value::Null];
    let mut body = String::new();
    let mut want = Vec::new();
    for (i, s) in texts(n, 7).iter().enumerate() {
        let row = match &ids[i % 4] {
            Value::Null => json!({ "sentence": s, "label": "not a label" }),
            id => json!({ "id": id, "sentence": s }),
        };
        want.push(if i % 4 == 3 { json!(i) } else { ids[i % 4].clone() });
        body.push_str(&format!("{row}\n"));
        if i % 5 == 1 {
            body.push_str("\r\n");
        }
    }
    std::fs::write(path, body).unwrap();
    (path.to_path_buf(), want)
}

#[test]
fn eval_and_predict_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, m) = finetuned(tmp.path());
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
    let (predictions, counted) = predict_all(&m, &b, &dev, Windows::new(8)).unwrap();
    assert_eq!(counted, 30);
    let right = predictions.iter().enumerate().filter(|(i, p)| p.label == LABELS[i % 3]).count();
    assert_eq!(metrics.accuracy, right as f64 / 30.0);
    assert_eq!(m.labelled(&dev, Some(4), Some(16)).unwrap().len(), 4);

    // Unlabelled: ids as written (int, string, a string of digits), the position without one; labels,
    // when present, are not read.
    let (test, ids) = test_file(&tmp.path().join("test.json"), 8);
    let (predictions, _) = predict_all(&m, &b, &test, Windows::new(3)).unwrap();
    assert_eq!(predictions.len(), 8);
    for (i, p) in predictions.iter().enumerate() {
        assert_eq!(p.id, ids[i], "row {i}");
        assert_eq!(p.logits.len(), 3);
        let best = (0..3).max_by(|&x, &y| p.logits[x].total_cmp(&p.logits[y])).unwrap();
        assert_eq!(p.label, LABELS[best]);
        let row = p.to_json(false);
        assert_eq!(row, json!({ "id": ids[i], "label": p.label }));
        assert_eq!(p.to_json(true)["logits"].as_array().unwrap().len(), 3);
    }
}

/// Predictions streamed in windows of 3 batches of 2 are those of one window of the whole file, line for
/// line (the same ids as written, labels, and logits up to float rounding: the CPU kernels' last bits depend
/// on which rows share a batch); one window of the whole file is what `eval::predict` computes on its
/// dataset, bit for bit.
#[test]
fn streamed_predictions_equal_one_window() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, m) = finetuned(tmp.path());
    let (test, ids) = test_file(&tmp.path().join("test.json"), 23);

    let (small, counted) = predict_all(&m, &b, &test, Windows::with_batches(2, 3)).unwrap();
    assert_eq!((small.len(), counted), (23, 23));
    let (whole, _) = predict_all(&m, &b, &test, Windows::with_batches(2, 1000)).unwrap();
    assert_eq!(small.len(), whole.len());
    for (i, (x, y)) in small.iter().zip(&whole).enumerate() {
        assert_eq!((&x.id, &x.label), (&y.id, &y.label), "line {i}: windows of 6 vs one window");
        assert!(max_diff(&x.logits, &y.logits) <= TOL, "line {i}: {:?} vs {:?}", x.logits, y.logits);
    }
    assert_eq!(small.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), ids, "ids as written, in input order");

    // One window runs exactly what eval::predict runs on the file's dataset.
    let mut spec = m.checkpoint.meta.task.clone();
    spec.label_key = None;
    let ds = Dataset::build(&read_examples(&test, &spec, false).unwrap(), &m.tokenizer, 32, &m.checkpoint.meta.labels)
        .unwrap();
    let p = eval::predict(&b, &m.encoder, &ds, 2, m.tokenizer.pad_id(), true, |_| {});
    assert_eq!(p.loss, None);
    assert_eq!(p.logits, whole.iter().map(|x| x.logits.clone()).collect::<Vec<_>>());
    let labels: Vec<&str> = p.classes.iter().map(|&c| LABELS[c as usize]).collect();
    assert_eq!(labels, whole.iter().map(|x| x.label.as_str()).collect::<Vec<_>>());
    // Without logits, the same classes.
    let q = eval::predict(&b, &m.encoder, &ds, 2, m.tokenizer.pad_id(), false, |_| {});
    assert_eq!((q.classes, q.logits.len()), (p.classes, 0));
}

/// A bad line in a late window: the windows before it reach the sink, the error names FILE:LINE, and
/// nothing after it is predicted.
#[test]
fn a_bad_line_in_a_late_window_stops_the_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, m) = finetuned(tmp.path());
    let (test, _) = test_file(&tmp.path().join("test.json"), 20);
    let good = std::fs::read_to_string(&test).unwrap();
    let lines = good.lines().count();
    let stream = |file: &Path, sink: &mut dyn FnMut(Prediction) -> Result<()>| {
        m.predict_file(&b, file, Windows::with_batches(2, 3), |_| {}, sink).unwrap_err().to_string()
    };
    for (name, bad, what) in [
        ("json", "{\"id\": 9, \"sentence\": ", "malformed JSON"),
        ("key", "{\"id\": 9, \"text\": \"的\"}", "missing text key \"sentence\""),
        ("id", "{\"id\": 1.5, \"sentence\": \"的\"}", "id key \"id\""),
    ] {
        let file = tmp.path().join(format!("bad_{name}.json"));
        std::fs::write(&file, format!("{good}{bad}\n")).unwrap();
        let mut seen = 0;
        let err = stream(&file, &mut |_| {
            seen += 1;
            Ok(())
        });
        assert!(err.contains(&format!("{}:{}: ", file.display(), lines + 1)), "{err}");
        assert!(err.contains(what), "{err}");
        assert_eq!(seen, 18, "the three windows before the bad line's, then nothing");
    }
    // An error of the sink stops the stream too.
    let mut calls = 0;
    let err = stream(&test, &mut |_| {
        calls += 1;
        anyhow::ensure!(calls < 8, "disk full");
        Ok(())
    });
    assert_eq!((err, calls), ("disk full".to_string(), 8));
}

#[test]
fn average_weighted_and_greedy() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_in(tmp.path());
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
    let model = model_in(tmp.path());
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

    // Streamed in windows of 3 batches of 2: the rows of one window of all the inputs (up to float
    // rounding: which rows share a batch moves the last bits).
    let owned: Vec<(String, Option<String>)> =
        texts(23, 4).into_iter().enumerate().map(|(i, s)| (s, (i % 3 == 1).then(|| t[i % 10].clone()))).collect();
    let small = embed_all(&e, &owned, Windows::with_batches(2, 3)).unwrap();
    let whole = embed_all(&e, &owned, Windows::with_batches(2, 1000)).unwrap();
    assert_eq!((small.len(), whole.len()), (23, 23));
    for (i, (x, y)) in small.iter().zip(&whole).enumerate() {
        assert!(close(x, y), "input {i}: windows of 6 vs one window");
    }
    assert_eq!(whole, e.embed_texts(&b, &owned, 2).unwrap(), "embed_texts: one window of 64 batches");
    // An error in a late window (here, of the input stream): the windows before it reach the sink, then
    // the error and nothing more.
    let mut rows = 0;
    let err = e
        .embed(
            &b,
            Windows::with_batches(2, 3),
            owned
                .iter()
                .enumerate()
                .map(|(i, x)| if i == 21 { Err(anyhow::anyhow!("in.jsonl:22: bad")) } else { Ok(x) }),
            |(a, b)| e.encode_one(a, b.as_deref()).map_err(anyhow::Error::msg),
            |_| {},
            |_, _| {
                rows += 1;
                Ok(())
            },
        )
        .unwrap_err();
    assert_eq!((err.to_string(), rows), ("in.jsonl:22: bad".to_string(), 18));

    // An input the model cannot take is named by its position.
    let short = Embedder { max_len: 2, ..e };
    let err = short.tokenize(&[("的", None)]).unwrap_err();
    assert_eq!(err.index, 0);
    assert!(err.message.contains("max_len 2 is too small"), "{err}");
}
