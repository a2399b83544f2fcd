//! `ernie-ft train` then `eval` and `predict` of its checkpoint, run as the real binary on the tiny random
//! model of tests/fixtures (hidden 32, 2 layers, 64 positions; a copy with a small WordPiece vocabulary)
//! and a synthetic 3-class task it learns in a second or two: the label is which of three marker
//! characters the sentence contains (helpers in tests/common/mod.rs).

mod common;

use common::*;

use serde_json::Value;

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
    let leftovers: Vec<_> = std::fs::read_dir(w.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("pred_bad"))
        .collect();
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
