//! `ernie-ft encode` failing cleanly, run as the real binary on the tiny random model of tests/fixtures
//! (helpers in tests/common/encode.rs): malformed input lines, bad model directories and bad flags are
//! errors naming the file (and line), with exit code 1 (clap's 2 for usage errors), no output file and no
//! temporary file left behind.

mod common;

use std::path::{Path, PathBuf};

use common::encode::*;

const PRECIOUS: &str = "{\"cls\": [1.0], \"mean\": [2.0]}\n";

/// Runs a failing case twice (no output file before; an existing output file) and checks the exit code,
/// the message (every needle), that no output file was created, that the old one is untouched, and that
/// no temporary file is left behind.
fn check_failure(t: &Tiny, input: &Path, model: Option<&Path>, extra: &[&str], needles: &[&str]) {
    check_failure_after(t, input, model, extra, needles, false)
}

/// [`check_failure`]; with `started`, the failure comes after the first window was encoded (and written to
/// the temporary file): the run's header line comes before the error.
fn check_failure_after(t: &Tiny, input: &Path, model: Option<&Path>, extra: &[&str], needles: &[&str], started: bool) {
    for existing in [false, true] {
        let output = t.path("out.jsonl");
        let _ = std::fs::remove_file(&output);
        if existing {
            std::fs::write(&output, PRECIOUS).unwrap();
        }
        let model = model.map(Path::to_path_buf).unwrap_or_else(|| t.model());
        let out = encode_with(&model, input, &output, extra);
        let err = stderr(&out);
        assert!(!out.status.success(), "expected a failure for {needles:?}, got success:\n{err}");
        assert_eq!(out.status.code(), Some(1), "exit code 1 (not a panic, not a signal):\n{err}");
        if started {
            assert!(err.starts_with("encoding ") && err.contains("\nerror: "), "header, then the error:\n{err}");
        } else {
            assert!(err.starts_with("error: "), "message starts with 'error: ':\n{err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        for n in needles {
            assert!(err.contains(n), "message lacks {n:?}:\n{err}");
        }
        if existing {
            assert_eq!(std::fs::read_to_string(&output).unwrap(), PRECIOUS, "existing output changed");
        } else {
            assert!(!output.exists(), "output created despite the error");
        }
        let tmp = t.temp_files();
        assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    }
}

#[test]
fn malformed_input_lines_are_errors_naming_file_and_line() {
    let t = Tiny::new();
    let ok = single("今天天气很好");
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "bad_json.jsonl",
            format!("{ok}\n\n{{\"sentence\": \"好\"\n").into_bytes(),
            vec!["bad_json.jsonl:3", "malformed JSON"],
        ),
        (
            "no_key.jsonl",
            format!("{ok}\n{{\"text\": \"好\"}}\n").into_bytes(),
            vec!["no_key.jsonl:2", "missing key \"sentence\""],
        ),
        (
            "half_pair.jsonl",
            format!("{ok}\r\n{ok}\r\n{{\"sentence1\": \"好\"}}\r\n").into_bytes(),
            vec!["half_pair.jsonl:3", "sentence2"],
        ),
        ("number.jsonl", b"{\"sentence\": 5}\n".to_vec(), vec!["number.jsonl:1", "must be a string", "a number"]),
        (
            "pair_array.jsonl",
            b"{\"sentence1\": \"a\", \"sentence2\": [1]}\n".to_vec(),
            vec!["pair_array.jsonl:1", "sentence2", "an array"],
        ),
        (
            "null.jsonl",
            format!("{ok}\n{{\"sentence\": null}}\n").into_bytes(),
            vec!["null.jsonl:2", "must be a string, found null"],
        ),
        ("array.jsonl", format!("{ok}\n[\"好\"]\n").into_bytes(), vec!["array.jsonl:2", "expected a JSON object"]),
        (
            "both.jsonl",
            b"{\"sentence\": \"a\", \"sentence1\": \"b\", \"sentence2\": \"c\"}\n".to_vec(),
            vec!["both.jsonl:1", "both"],
        ),
        (
            "utf8.jsonl",
            [format!("{ok}\n").into_bytes(), b"{\"sentence\": \"\xff\xfe\"}\n".to_vec()].concat(),
            vec!["utf8.jsonl:2", "UTF-8"],
        ),
        ("blank.jsonl", b"\n  \r\n\n".to_vec(), vec!["blank.jsonl:1", "empty"]),
        ("zero.jsonl", Vec::new(), vec!["zero.jsonl:1", "empty"]),
    ];
    for (name, body, needles) in cases {
        let input = t.write(name, body);
        check_failure(&t, &input, None, &[], &needles);
    }
    check_failure(&t, &t.path("does_not_exist.jsonl"), None, &[], &["does_not_exist.jsonl"]);
}

/// A bad line after the first window (with --batch-size 1 a window is 64 lines): the first window has been
/// encoded and written to the temporary file, yet the error names FILE:LINE, no output file appears, an
/// existing one is untouched and no temporary file is left.
#[test]
fn a_bad_line_in_a_late_window_leaves_no_output() {
    let t = Tiny::new();
    let good: String = (0..70).map(|i| single(&text(i, 1 + i % 9)) + if i % 9 == 3 { "\n\n" } else { "\n" }).collect();
    let last = good.lines().count() + 1;
    let cases = [
        ("late_json.jsonl", "{\"sentence\": ", "malformed JSON"),
        ("late_key.jsonl", "{\"text\": \"好\"}", "missing key \"sentence\""),
        ("late_array.jsonl", "[\"好\"]", "expected a JSON object"),
    ];
    for (name, bad, what) in cases {
        let input = t.write(name, format!("{good}{bad}\n\n"));
        check_failure_after(&t, &input, None, &["--batch-size", "1"], &[&format!("{name}:{last}: "), what], true);
    }
    // A token outside the model's vocabulary (a tokenizer larger than the embedding table) on the last line.
    let m = t.path("m_late_vocab");
    std::fs::create_dir(&m).unwrap();
    for f in ["config.json", "model.safetensors", "vocab.txt"] {
        std::fs::copy(t.model().join(f), m.join(f)).unwrap();
    }
    let mut v = std::fs::read_to_string(m.join("vocab.txt")).unwrap();
    v.extend((0..40).map(|i| format!("tok{i}\n")));
    v.push_str("龙\n");
    std::fs::write(m.join("vocab.txt"), v).unwrap();
    let input = t.write("late_vocab.jsonl", format!("{good}{}\n", single("一条龙")));
    let needles = [format!("late_vocab.jsonl:{last}: "), "vocabulary".to_string()];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    check_failure_after(&t, &input, Some(&m), &["--batch-size", "1"], &needles, true);
}

#[test]
fn bad_model_directories_are_errors_naming_the_file() {
    let t = Tiny::new();
    let input = t.write("in.jsonl", single("今天") + "\n");
    let variant = |name: &str, edit: &dyn Fn(&Path)| -> PathBuf {
        let dir = t.path(name);
        std::fs::create_dir(&dir).unwrap();
        for f in ["config.json", "model.safetensors", "vocab.txt"] {
            std::fs::copy(t.model().join(f), dir.join(f)).unwrap();
        }
        edit(&dir);
        dir
    };
    check_failure(&t, &input, Some(&t.path("no_such_model")), &[], &["no_such_model"]);

    let m = variant("m_no_weights", &|d| std::fs::remove_file(d.join("model.safetensors")).unwrap());
    check_failure(&t, &input, Some(&m), &[], &["m_no_weights", "model.safetensors"]);

    let m = variant("m_no_config", &|d| std::fs::remove_file(d.join("config.json")).unwrap());
    check_failure(&t, &input, Some(&m), &[], &["m_no_config", "config.json"]);

    let m = variant("m_bad_config", &|d| std::fs::write(d.join("config.json"), "{\"hidden_size\": 32,").unwrap());
    check_failure(&t, &input, Some(&m), &[], &["m_bad_config", "config.json"]);

    let m = variant("m_garbage", &|d| {
        std::fs::write(d.join("model.safetensors"), b"\x10\0\0\0\0\0\0\0not a header at all").unwrap()
    });
    check_failure(&t, &input, Some(&m), &[], &["m_garbage", "model.safetensors"]);

    let m = variant("m_truncated", &|d| {
        let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
        std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    });
    check_failure(&t, &input, Some(&m), &[], &["m_truncated", "model.safetensors"]);

    // A tensor renamed away, and one with the wrong shape: the message names the tensor.
    type Tensor = (String, Vec<usize>, Vec<u8>);
    type Edit = dyn Fn(&str, Vec<usize>, Vec<u8>) -> Option<Tensor>;
    let rewrite = |d: &Path, f: &Edit| {
        let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let owned: Vec<Tensor> =
            st.tensors().into_iter().filter_map(|(n, v)| f(&n, v.shape().to_vec(), v.data().to_vec())).collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = owned
            .iter()
            .map(|(n, s, d)| {
                (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap())
            })
            .collect();
        std::fs::write(d.join("model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    };
    let m = variant("m_missing_tensor", &|d| {
        rewrite(d, &|n, s, v| (n != "bert.embeddings.word_embeddings.weight").then(|| (n.to_string(), s, v)))
    });
    check_failure(&t, &input, Some(&m), &[], &["m_missing_tensor", "model.safetensors", "word_embeddings"]);
    let m = variant("m_bad_shape", &|d| {
        rewrite(d, &|n, s, v| {
            if n == "bert.embeddings.position_embeddings.weight" {
                Some((n.to_string(), vec![s[0] / 2, s[1]], v[..v.len() / 2].to_vec()))
            } else {
                Some((n.to_string(), s, v))
            }
        })
    });
    check_failure(&t, &input, Some(&m), &[], &["m_bad_shape", "model.safetensors", "position_embeddings", "shape"]);

    let m = variant("m_no_tokenizer", &|d| std::fs::remove_file(d.join("vocab.txt")).unwrap());
    check_failure(&t, &input, Some(&m), &[], &["m_no_tokenizer", "vocab.txt"]);

    let m = variant("m_bad_vocab", &|d| std::fs::write(d.join("vocab.txt"), "[PAD]\n[CLS]\n[SEP]\n").unwrap());
    check_failure(&t, &input, Some(&m), &[], &["m_bad_vocab", "vocab.txt", "[UNK]"]);

    // A tokenizer larger than the model's embedding table: the line with the out-of-range token is named.
    let m = variant("m_big_vocab", &|d| {
        let mut v = std::fs::read_to_string(d.join("vocab.txt")).unwrap();
        for i in 0..40 {
            v.push_str(&format!("tok{i}\n"));
        }
        v.push_str("龙\n");
        std::fs::write(d.join("vocab.txt"), v).unwrap();
    });
    let input2 = t.write("in2.jsonl", format!("{}\n{}\n", single("今天"), single("一条龙")));
    check_failure(&t, &input2, Some(&m), &[], &["in2.jsonl:2", "vocabulary"]);
}

#[test]
fn bad_flags_are_clear_errors() {
    let t = Tiny::new();
    let input = t.write("in.jsonl", single("今天天气很好") + "\n");
    check_failure(
        &t,
        &input,
        None,
        &["--max-len", "65"],
        &["--max-len 65", "max_position_embeddings 64", "config.json"],
    );
    check_failure(&t, &input, None, &["--max-len", "2"], &["in.jsonl:1", "max_len 2 is too small"]);
    // Without a GPU, --device cuda is a clear error (on a GPU machine it works).
    if ernie_cuda::preflight().is_err() {
        check_failure(&t, &input, None, &["--device", "cuda"], &["--device cuda", "NVIDIA"]);
    }

    // An output directory that does not exist.
    let output = t.path("missing_dir/out.jsonl");
    let out = t.encode(&input, &output, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing_dir") && stderr(&out).contains("does not exist"), "{}", stderr(&out));

    // Usage errors are clap's (exit 2), never a panic.
    for bad in [&["--batch-size", "0"][..], &["--threads", "0"], &["--device", "tpu"], &["--max-len", "x"]] {
        let out = t.encode(&input, &t.path("o.jsonl"), bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(!t.path("o.jsonl").exists());
    }
}
