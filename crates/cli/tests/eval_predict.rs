//! `ernie-ft train` then `eval` and `predict` of its checkpoint, run as the real binary on the tiny random
//! model of tests/fixtures (hidden 32, 2 layers, 64 positions; a copy with a small WordPiece vocabulary)
//! and a synthetic 3-class task it learns in a second or two: the label is which of three marker
//! characters the sentence contains (helpers in tests/common/mod.rs).

mod common;

use common::*;
use ernie_testkit::{examples, LABELS};

use serde_json::Value;

/// The names of the files in `dir` that `keep` accepts.
fn files_in(dir: &std::path::Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| keep(n))
        .collect()
}

/// 1-3: `train` with every strategy, then `eval` and `predict` of its checkpoint.
#[test]
fn train_eval_and_predict() {
    let w = Work::new();
    let train = w.task("train.json", 240, 1);
    let dev = w.task("dev.json", 90, 2);
    let d = w.path("run");
    let out = w.train(
        &train,
        Some(&dev),
        &d,
        &["--strategy", "adv,rdrop,layer-decay", "--lr", "3e-3", "--epochs", "6", "--head-seed", "3"],
    );
    assert_ok(&out);
    let err = stderr(&out);
    // The layer-decay multiplier table: embeddings, both layers and the head, with their multipliers.
    assert!(err.contains("layer decay 0.8: lr multiplier"), "{err}");
    for row in ["embeddings", "encoder.layer.0", "encoder.layer.1", "pooler+classifier"] {
        assert!(err.lines().any(|l| l.trim_start().starts_with(row)), "no row {row} in:\n{err}");
    }
    assert!(err.contains("1.000000") && err.contains("0.409600"), "{err}");

    for f in ["model.safetensors", "config.json", "vocab.txt", "ernie_ft.json", "metrics.json"] {
        assert!(d.join(f).is_file(), "{f} missing from the checkpoint");
    }
    let config = json(&d.join("config.json"));
    assert_eq!(config["num_labels"], 3, "{config}");
    let id2label = config["id2label"].as_object().expect("id2label");
    let label2id = config["label2id"].as_object().expect("label2id");
    let mut names: Vec<&str> = id2label.values().map(|v| v.as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["丙", "乙", "甲"]);
    for (i, l) in id2label {
        assert_eq!(label2id[l.as_str().unwrap()].to_string(), *i, "label2id inverts id2label");
    }
    assert_eq!(std::fs::read(d.join("vocab.txt")).unwrap(), std::fs::read(w.path("model/vocab.txt")).unwrap());
    let meta = json(&d.join("ernie_ft.json"));
    assert_eq!(meta["max_len"], 32);
    let metrics = json(&d.join("metrics.json"));
    let final_acc = metrics["final_dev"]["accuracy"].as_f64().expect("final_dev accuracy");
    assert!(final_acc > 0.8, "final dev accuracy {final_acc} (chance 0.33): {metrics}");
    assert_eq!(metrics["strategies"], serde_json::json!(["adv", "rdrop", "layer-decay"]));
    assert_eq!(
        (metrics["train_examples"].as_u64(), metrics["dev_examples"].as_u64(), metrics["steps"].as_u64()),
        (Some(240), Some(90), Some(90))
    );

    // 2. eval reproduces the final dev accuracy.
    let m = w.path("eval.json");
    let acc = eval_accuracy(&d, &dev, &m);
    assert_eq!(acc, final_acc, "eval of the checkpoint vs metrics.json final_dev");
    assert_eq!(json(&m)["examples"], 90);

    // 3. predict: ids as written (ints stay ints, strings stay strings), input order, known labels.
    let test: Vec<(Value, String, usize)> = examples(40, 9)
        .into_iter()
        .enumerate()
        .map(|(i, (text, label))| {
            let id = match i % 4 {
                0 => Value::from(1000 + i as i64),
                1 => Value::from(format!("t-{i}")),
                2 => Value::from(format!("{:04}", i)), // a string that looks like a number
                _ => Value::from(i as i64),
            };
            (id, text, label)
        })
        .collect();
    let lines: Vec<String> =
        test.iter().map(|(id, text, _)| serde_json::json!({ "id": id, "sentence": text }).to_string()).collect();
    let t = w.write("test.json", &(lines.join("\n") + "\n"));
    let p = w.path("pred.json");
    let out = run(&[
        "predict".into(),
        "--model".into(),
        s(&d),
        "--test".into(),
        s(&t),
        "--output".into(),
        s(&p),
        "--threads".into(),
        "2".into(),
    ]);
    assert_ok(&out);
    let text = std::fs::read_to_string(&p).unwrap();
    let rows: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(rows.len(), test.len());
    let mut correct = 0;
    for (row, (id, _, label)) in rows.iter().zip(&test) {
        let obj = row.as_object().expect("an object");
        assert_eq!(obj.len(), 2, "{row}");
        assert_eq!(&row["id"], id, "ids preserved, in input order");
        let l = row["label"].as_str().expect("label is a string");
        assert!(LABELS.contains(&l), "{l}");
        correct += usize::from(l == LABELS[*label]);
    }
    assert!(correct * 10 > test.len() * 7, "{correct}/{} predictions right", test.len());

    // A failing predict names FILE:LINE and leaves no output.
    let mut bad = lines.clone();
    bad[2] = "{\"id\": 3, \"sentence\": ".into();
    let t_bad = w.write("test_bad.json", &(bad.join("\n") + "\n"));
    let p_bad = w.path("pred_bad.json");
    let out = run(&[
        "predict".into(),
        "--model".into(),
        s(&d),
        "--test".into(),
        s(&t_bad),
        "--output".into(),
        s(&p_bad),
        "--threads".into(),
        "2".into(),
    ]);
    let err = assert_fails(&out);
    assert!(err.contains(&format!("{}:3", t_bad.display())), "{err}");
    assert!(!p_bad.exists(), "no output after a failure");
    let leftovers = files_in(w.tmp.path(), |n| n.contains("pred_bad"));
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// 10. `predict --logits` and the range checks of `eval`.
///
/// Each row gets its logits (their argmax is the label); `eval --max-len` and `--dev-limit` are checked.
#[test]
fn predict_logits_and_eval_ranges() {
    let w = Work::new();
    let train = w.task("train.json", 60, 71);
    let d = w.path("ck");
    assert_ok(&w.train(&train, Some(&train), &d, &["--max-steps", "3", "--lr", "3e-3"]));
    let labels: Vec<String> = json(&d.join("ernie_ft.json"))["labels"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let p = w.path("pred.json");
    let predict = |extra: &[&str]| {
        let mut args = vec![
            "predict".to_string(),
            "--model".into(),
            s(&d),
            "--test".into(),
            s(&train),
            "--output".into(),
            s(&p),
            "--threads".into(),
            "2".into(),
        ];
        args.extend(extra.iter().map(|x| x.to_string()));
        run(&args)
    };
    assert_ok(&predict(&["--logits"]));
    let rows: Vec<Value> =
        std::fs::read_to_string(&p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 60);
    for row in &rows {
        let logits: Vec<f64> = row["logits"].as_array().expect("logits").iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(logits.len(), labels.len(), "{row}");
        let best = (0..logits.len()).max_by(|&i, &j| logits[i].total_cmp(&logits[j])).unwrap();
        assert_eq!(row["label"], labels[best].as_str(), "{row}");
    }
    assert_ok(&predict(&[]));
    let first: Value = serde_json::from_str(std::fs::read_to_string(&p).unwrap().lines().next().unwrap()).unwrap();
    assert!(first.get("logits").is_none(), "no logits without --logits: {first}");

    // Streaming: with --batch-size 1 a window is 64 lines, so these 75 lines (blank ones between) run in two
    // windows; the rows are those of one window (--batch-size 75): ids as written, labels, and logits up to
    // float rounding (the last bits depend on which rows share a batch).
    let mut body = String::new();
    for (i, (text, _)) in examples(75, 5).into_iter().enumerate() {
        let row = match i % 3 {
            0 => serde_json::json!({ "id": format!("{i:04}"), "sentence": text }),
            1 => serde_json::json!({ "id": i, "sentence": text }),
            _ => serde_json::json!({ "sentence": text }),
        };
        body.push_str(&format!("{row}\n"));
        if i % 10 == 4 {
            body.push_str("\r\n");
        }
    }
    let long = w.write("long.json", &body);
    let rows_of = |p: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let p_one = w.path("pred_one.json");
    let p_two = w.path("pred_two.json");
    let run_predict = |file: &std::path::Path, out: &std::path::Path, batch: &str| {
        run(&[
            "predict".to_string(),
            "--model".into(),
            s(&d),
            "--test".into(),
            s(file),
            "--output".into(),
            s(out),
            "--threads".into(),
            "2".into(),
            "--batch-size".into(),
            batch.into(),
            "--logits".into(),
        ])
    };
    assert_ok(&run_predict(&long, &p_one, "75"));
    let out = run_predict(&long, &p_two, "1");
    assert_ok(&out);
    assert!(stderr(&out).contains("75 predictions written to"), "{}", stderr(&out));
    let (one, two) = (rows_of(&p_one), rows_of(&p_two));
    assert_eq!((one.len(), two.len()), (75, 75));
    for (i, (x, y)) in one.iter().zip(&two).enumerate() {
        let want_id = match i % 3 {
            0 => Value::from(format!("{i:04}")),
            _ => Value::from(i),
        };
        assert_eq!((&x["id"], &y["id"]), (&want_id, &want_id), "line {i}: ids as written, in input order");
        assert_eq!(x["label"], y["label"], "line {i}");
        let (lx, ly) = (x["logits"].as_array().unwrap(), y["logits"].as_array().unwrap());
        for (a, b) in lx.iter().zip(ly) {
            assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() <= 1e-5, "line {i}: {x} vs {y}");
        }
    }

    // A bad line in the second window: the first window was predicted and written to the temporary file,
    // yet the existing output is untouched and no temporary file is left.
    for (name, bad, what) in [
        ("late_json.json", "{\"id\": 1, \"sentence\": ", "malformed JSON"),
        ("late_key.json", "{\"id\": 1, \"text\": \"的\"}", "missing text key \"sentence\""),
    ] {
        let file = w.write(name, &format!("{body}{bad}\n"));
        let before = std::fs::read(&p_two).unwrap();
        let err = assert_fails(&run_predict(&file, &p_two, "1"));
        let at = format!("{}:{}: ", file.display(), body.lines().count() + 1);
        assert!(err.contains(&at) && err.contains(what), "{at} {what}: {err}");
        assert_eq!(std::fs::read(&p_two).unwrap(), before, "the existing output is untouched");
        let tmp = files_in(w.tmp.path(), |n| n.ends_with(".tmp"));
        assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    }

    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval".to_string(),
            "--model".into(),
            s(&d),
            "--dev".into(),
            s(&train),
            "--threads".into(),
            "2".into(),
        ];
        args.extend(extra.iter().map(|x| x.to_string()));
        run(&args)
    };
    let err = assert_fails(&eval(&["--max-len", "2"]));
    assert!(err.contains("--max-len 2"), "{err}");
    let err = assert_fails(&eval(&["--max-len", "65"]));
    assert!(err.contains("--max-len 65") && err.contains("max_position_embeddings 64"), "{err}");
    let out = eval(&["--dev-limit", "0"]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", stderr(&out));
    assert!(stderr(&out).contains("--dev-limit"), "{}", stderr(&out));
    assert_ok(&eval(&["--dev-limit", "5", "--max-len", "16"]));
}
