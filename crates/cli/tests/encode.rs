//! `ernie-ft encode`, run as the real binary on the tiny random model of tests/fixtures (with a small
//! WordPiece vocabulary written next to a copy of it), and once on e5-small-zh when ../shared has it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ernie_data::TextTokenizer;
use ernie_model::{Encoder, ForwardOpts, HeadInit, HostParams, Tokens};
use ernie_tensor::{Backend, Cpu};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_ernie-ft");
const HIDDEN: usize = 32;
const TOL: f32 = 1e-5;

/// Every character of the test sentences is in the vocabulary, so one character is one token.
const CHARS: &str = "我你他她们的是在有不了人这中大来上国个到说时要就出会可也天好今气很去公园玩吧明下雨学习文喜欢吃苹果书看电影工作家猫狗跑快慢红花，。";

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny_random_model")
}

/// A temporary work dir with `model/` (the tiny model plus a vocab.txt). Its classifier has 5 labels, so
/// every test also checks that `encode` loads a checkpoint whatever its head.
struct Tiny {
    tmp: TempDir,
}

impl Tiny {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let model = tmp.path().join("model");
        std::fs::create_dir(&model).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(fixture_model().join(f), model.join(f))
                .unwrap_or_else(|e| panic!("copy {f}: {e}"));
        }
        let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for c in CHARS.chars() {
            let c = c.to_string();
            assert!(!vocab.contains(&c), "duplicate {c}");
            vocab.push(c);
        }
        assert!(
            vocab.len() < 97,
            "vocab {} must fit the tiny model's 97 ids",
            vocab.len()
        );
        std::fs::write(model.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
        Tiny { tmp }
    }
    fn dir(&self) -> &Path {
        self.tmp.path()
    }
    fn model(&self) -> PathBuf {
        self.dir().join("model")
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }
    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }
    /// Runs `encode` on the tiny model: `input` -> `output`, with `extra` flags.
    fn encode(&self, input: &Path, output: &Path, extra: &[&str]) -> Output {
        let model = self.model();
        let mut args: Vec<&OsStr> = vec!["encode".as_ref(), "--model".as_ref(), model.as_os_str()];
        args.extend([
            "--input".as_ref(),
            input.as_os_str(),
            "--output".as_ref(),
            output.as_os_str(),
        ]);
        args.extend(extra.iter().map(OsStr::new));
        run(&args)
    }
    /// Encodes `lines` (JSON strings) and returns the rows; panics on failure.
    fn rows(&self, name: &str, lines: &[String], extra: &[&str]) -> Vec<Row> {
        let input = self.write(&format!("{name}.jsonl"), lines.join("\n") + "\n");
        let output = self.path(&format!("{name}.out.jsonl"));
        let out = self.encode(&input, &output, extra);
        assert_success(&out);
        read_rows(&output)
    }
}

fn run(args: &[&OsStr]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("ERNIE_FT_MODEL")
        .output()
        .expect("run ernie-ft")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "ernie-ft failed ({}):\n{}",
        out.status,
        stderr(out)
    );
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    cls: Vec<f32>,
    mean: Vec<f32>,
}

fn floats(v: &serde_json::Value, key: &str) -> Vec<f32> {
    v.get(key)
        .and_then(|a| a.as_array())
        .unwrap_or_else(|| panic!("no array {key} in {v}"))
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn read_rows(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("output line is JSON");
            assert_eq!(v.as_object().unwrap().len(), 2, "only cls and mean: {l}");
            Row {
                cls: floats(&v, "cls"),
                mean: floats(&v, "mean"),
            }
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_rows_close(a: &Row, b: &Row, what: &str) {
    let d = max_diff(&a.cls, &b.cls).max(max_diff(&a.mean, &b.mean));
    assert!(d <= TOL, "{what}: rows differ by {d}");
}

fn single(s: &str) -> String {
    serde_json::json!({ "sentence": s }).to_string()
}

fn pair(a: &str, b: &str) -> String {
    serde_json::json!({ "sentence1": a, "sentence2": b }).to_string()
}

/// `n` characters of the vocabulary starting at `start` (wrapping).
fn text(start: usize, n: usize) -> String {
    let chars: Vec<char> = CHARS.chars().filter(|c| !"，。".contains(*c)).collect();
    (0..n).map(|i| chars[(start + i) % chars.len()]).collect()
}

/// Twenty inputs of very different lengths, singles and pairs.
fn mixed_inputs() -> Vec<String> {
    (0..20)
        .map(|i| {
            let len = 1 + (i * 7) % 23;
            if i % 3 == 2 {
                pair(&text(i, len), &text(i + 5, 1 + (i * 5) % 13))
            } else {
                single(&text(i, len))
            }
        })
        .collect()
}

#[test]
fn one_row_per_line_in_input_order() {
    let t = Tiny::new();
    // BOM, CRLF, blank lines, extra keys.
    let body = format!(
        "\u{feff}{}\r\n\r\n{}\r\n   \n{}\n{{\"sentence\": \"猫很快\", \"label\": \"3\", \"id\": 7}}\n\n",
        single("今天天气很好"),
        pair("我喜欢吃苹果", "你喜欢看书"),
        single("明天下雨")
    );
    let input = t.write("in.jsonl", body);
    let output = t.path("out.jsonl");
    let out = t.encode(&input, &output, &[]);
    assert_success(&out);
    let rows = read_rows(&output);
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!((r.cls.len(), r.mean.len()), (HIDDEN, HIDDEN));
        assert!(r.cls.iter().chain(&r.mean).all(|v| v.is_finite()));
    }
    // Each row is the encoding of its own line: compare with the lines encoded one by one.
    let alone = [
        single("今天天气很好"),
        pair("我喜欢吃苹果", "你喜欢看书"),
        single("明天下雨"),
        single("猫很快"),
    ];
    for (i, line) in alone.iter().enumerate() {
        let one = t.rows(&format!("alone{i}"), std::slice::from_ref(line), &[]);
        assert_rows_close(&one[0], &rows[i], &format!("line {i}"));
    }
    let err = stderr(&out);
    assert!(
        err.contains("encoded 4 examples in") && err.contains("examples/s"),
        "summary line:\n{err}"
    );
    assert!(
        !err.contains('\r'),
        "no progress bar when stderr is not a terminal:\n{err}"
    );
    // Nothing but the input, the outputs and the model in the work dir (no temporary files left).
    let leftovers: Vec<_> = std::fs::read_dir(t.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn reversed_input_gives_reversed_output() {
    let t = Tiny::new();
    let inputs = mixed_inputs();
    let fwd = t.rows("fwd", &inputs, &["--batch-size", "4"]);
    let rev_in: Vec<String> = inputs.iter().rev().cloned().collect();
    let rev = t.rows("rev", &rev_in, &["--batch-size", "4"]);
    assert_eq!(fwd.len(), inputs.len());
    for (i, (a, b)) in fwd.iter().zip(rev.iter().rev()).enumerate() {
        assert_rows_close(a, b, &format!("input {i}"));
    }
    // Distinct inputs give distinct rows, so order mistakes cannot hide.
    assert!(max_diff(&fwd[0].mean, &fwd[1].mean) > 1e-3);
}

#[test]
fn batch_size_does_not_change_results() {
    let t = Tiny::new();
    let inputs = mixed_inputs();
    let one = t.rows("bs1", &inputs, &["--batch-size", "1"]);
    let seven = t.rows("bs7", &inputs, &["--batch-size", "7", "--threads", "2"]);
    let all = t.rows("bs32", &inputs, &[]);
    for i in 0..inputs.len() {
        assert_rows_close(&one[i], &seven[i], &format!("input {i}, batch 1 vs 7"));
        assert_rows_close(&one[i], &all[i], &format!("input {i}, batch 1 vs 32"));
    }
}

#[test]
fn padding_does_not_change_results() {
    let t = Tiny::new();
    let short = single("猫");
    let long = pair(&text(0, 40), &text(3, 20));
    let alone = t.rows("alone", std::slice::from_ref(&short), &["--max-len", "64"]);
    let batched = t.rows(
        "batched",
        &[long.clone(), short.clone(), long],
        &["--max-len", "64"],
    );
    assert_rows_close(
        &alone[0],
        &batched[1],
        "short sentence alone vs beside a 64-token pair",
    );
}

/// Forward pass of one input with the library, pooled by hand.
fn by_hand(model: &Path, first: &str, second: Option<&str>, max_len: usize) -> Row {
    let host = HostParams::load_dir(model, 5, HeadInit::seed(0)).unwrap();
    let tok = TextTokenizer::from_dir(model).unwrap();
    let b = Cpu::<f32>::new();
    let enc = Encoder::from_host(&b, &host);
    let e = tok.encode(first, second, max_len).unwrap();
    let n = e.ids.len();
    let tokens = Tokens::from_rows(&[(e.ids, e.type_ids)], tok.pad_id());
    let fw = enc.forward(&b, &tokens, &ForwardOpts::eval());
    let hidden = b.download(fw.final_hidden());
    assert_eq!(hidden.len(), n * HIDDEN, "a single row has no padding");
    let mean = (0..HIDDEN)
        .map(|j| (0..n).map(|t| hidden[t * HIDDEN + j] as f64).sum::<f64>() / n as f64)
        .map(|v| v as f32)
        .collect();
    Row {
        cls: hidden[..HIDDEN].to_vec(),
        mean,
    }
}

#[test]
fn pooling_matches_a_hand_computation() {
    let t = Tiny::new();
    let inputs = [
        single("今天天气很好。"),
        pair("我喜欢吃苹果", "他们在公园玩"),
        single(&text(2, 30)),
    ];
    let rows = t.rows("hand", &inputs, &["--batch-size", "3"]);
    let want = [
        by_hand(&t.model(), "今天天气很好。", None, 128),
        by_hand(&t.model(), "我喜欢吃苹果", Some("他们在公园玩"), 128),
        by_hand(&t.model(), &text(2, 30), None, 128),
    ];
    for (i, (got, want)) in rows.iter().zip(&want).enumerate() {
        assert_rows_close(got, want, &format!("input {i}"));
    }
    // The mean is not the first token's state.
    assert!(max_diff(&rows[0].cls, &rows[0].mean) > 1e-3);
}

#[test]
fn numbers_round_trip_f32() {
    let t = Tiny::new();
    let rows = t.rows("rt", &[single("我们")], &[]);
    let want = by_hand(&t.model(), "我们", None, 128);
    // Written with enough digits to read back the very same f32 (up to the pooling's own rounding).
    assert_eq!(
        rows[0].cls, want.cls,
        "cls is a copy of the hidden state and must read back bit for bit"
    );
}

#[test]
fn long_inputs_are_truncated_longest_first() {
    let t = Tiny::new();
    // Single: [CLS] + 6 + [SEP] = 8 tokens.
    let long = text(0, 30);
    let cut: String = long.chars().take(6).collect();
    let rows = t.rows(
        "trunc1",
        &[single(&long), single(&cut)],
        &["--max-len", "8"],
    );
    assert_rows_close(&rows[0], &rows[1], "single truncated to max-len 8");
    // Pair: 3 specials, 7 slots; longest-first trims the 10-token side to 4 and keeps the 3-token side.
    let (a, b) = (text(0, 10), text(20, 3));
    let a_cut: String = a.chars().take(4).collect();
    let rows = t.rows(
        "trunc2",
        &[pair(&a, &b), pair(&a_cut, &b)],
        &["--max-len", "10"],
    );
    assert_rows_close(
        &rows[0],
        &rows[1],
        "pair truncated longest-first to max-len 10",
    );
    // Without truncation the long input differs.
    let rows = t.rows("trunc3", &[single(&long), single(&cut)], &[]);
    assert!(max_diff(&rows[0].mean, &rows[1].mean) > 1e-4);
}

// ------------------------------------------------------------------------------------------ errors

const PRECIOUS: &str = "{\"cls\": [1.0], \"mean\": [2.0]}\n";

/// Runs a failing case twice (no output file before; an existing output file) and checks the exit code,
/// the message (every needle), that no output file was created, that the old one is untouched, and that
/// no temporary file is left behind.
fn check_failure(t: &Tiny, input: &Path, model: Option<&Path>, extra: &[&str], needles: &[&str]) {
    for existing in [false, true] {
        let output = t.path("out.jsonl");
        let _ = std::fs::remove_file(&output);
        if existing {
            std::fs::write(&output, PRECIOUS).unwrap();
        }
        let model = model.map(Path::to_path_buf).unwrap_or_else(|| t.model());
        let mut args: Vec<&OsStr> = vec!["encode".as_ref(), "--model".as_ref(), model.as_os_str()];
        args.extend([
            "--input".as_ref(),
            input.as_os_str(),
            "--output".as_ref(),
            output.as_os_str(),
        ]);
        args.extend(extra.iter().map(OsStr::new));
        let out = run(&args);
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "expected a failure for {needles:?}, got success:\n{err}"
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "exit code 1 (not a panic, not a signal):\n{err}"
        );
        assert!(
            err.starts_with("error: "),
            "message starts with 'error: ':\n{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        for n in needles {
            assert!(err.contains(n), "message lacks {n:?}:\n{err}");
        }
        if existing {
            assert_eq!(
                std::fs::read_to_string(&output).unwrap(),
                PRECIOUS,
                "existing output changed"
            );
        } else {
            assert!(!output.exists(), "output created despite the error");
        }
        let tmp: Vec<_> = std::fs::read_dir(t.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
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
        (
            "number.jsonl",
            b"{\"sentence\": 5}\n".to_vec(),
            vec!["number.jsonl:1", "must be a string", "a number"],
        ),
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
        (
            "array.jsonl",
            format!("{ok}\n[\"好\"]\n").into_bytes(),
            vec!["array.jsonl:2", "expected a JSON object"],
        ),
        (
            "both.jsonl",
            b"{\"sentence\": \"a\", \"sentence1\": \"b\", \"sentence2\": \"c\"}\n".to_vec(),
            vec!["both.jsonl:1", "both"],
        ),
        (
            "utf8.jsonl",
            [
                format!("{ok}\n").into_bytes(),
                b"{\"sentence\": \"\xff\xfe\"}\n".to_vec(),
            ]
            .concat(),
            vec!["utf8.jsonl:2", "UTF-8"],
        ),
        (
            "blank.jsonl",
            b"\n  \r\n\n".to_vec(),
            vec!["blank.jsonl:1", "empty"],
        ),
        ("zero.jsonl", Vec::new(), vec!["zero.jsonl:1", "empty"]),
    ];
    for (name, body, needles) in cases {
        let input = t.write(name, body);
        check_failure(&t, &input, None, &[], &needles);
    }
    check_failure(
        &t,
        &t.path("does_not_exist.jsonl"),
        None,
        &[],
        &["does_not_exist.jsonl"],
    );
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
    check_failure(
        &t,
        &input,
        Some(&t.path("no_such_model")),
        &[],
        &["no_such_model"],
    );

    let m = variant("m_no_weights", &|d| {
        std::fs::remove_file(d.join("model.safetensors")).unwrap()
    });
    check_failure(
        &t,
        &input,
        Some(&m),
        &[],
        &["m_no_weights", "model.safetensors"],
    );

    let m = variant("m_no_config", &|d| {
        std::fs::remove_file(d.join("config.json")).unwrap()
    });
    check_failure(&t, &input, Some(&m), &[], &["m_no_config", "config.json"]);

    let m = variant("m_bad_config", &|d| {
        std::fs::write(d.join("config.json"), "{\"hidden_size\": 32,").unwrap()
    });
    check_failure(&t, &input, Some(&m), &[], &["m_bad_config", "config.json"]);

    let m = variant("m_garbage", &|d| {
        std::fs::write(
            d.join("model.safetensors"),
            b"\x10\0\0\0\0\0\0\0not a header at all",
        )
        .unwrap()
    });
    check_failure(
        &t,
        &input,
        Some(&m),
        &[],
        &["m_garbage", "model.safetensors"],
    );

    let m = variant("m_truncated", &|d| {
        let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
        std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    });
    check_failure(
        &t,
        &input,
        Some(&m),
        &[],
        &["m_truncated", "model.safetensors"],
    );

    // A tensor renamed away, and one with the wrong shape: the message names the tensor.
    type Tensor = (String, Vec<usize>, Vec<u8>);
    type Edit = dyn Fn(&str, Vec<usize>, Vec<u8>) -> Option<Tensor>;
    let rewrite = |d: &Path, f: &Edit| {
        let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let owned: Vec<Tensor> = st
            .tensors()
            .into_iter()
            .filter_map(|(n, v)| f(&n, v.shape().to_vec(), v.data().to_vec()))
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = owned
            .iter()
            .map(|(n, s, d)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                        .unwrap(),
                )
            })
            .collect();
        std::fs::write(
            d.join("model.safetensors"),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
    };
    let m = variant("m_missing_tensor", &|d| {
        rewrite(d, &|n, s, v| {
            (n != "bert.embeddings.word_embeddings.weight").then(|| (n.to_string(), s, v))
        })
    });
    check_failure(
        &t,
        &input,
        Some(&m),
        &[],
        &["m_missing_tensor", "model.safetensors", "word_embeddings"],
    );
    let m = variant("m_bad_shape", &|d| {
        rewrite(d, &|n, s, v| {
            if n == "bert.embeddings.position_embeddings.weight" {
                Some((
                    n.to_string(),
                    vec![s[0] / 2, s[1]],
                    v[..v.len() / 2].to_vec(),
                ))
            } else {
                Some((n.to_string(), s, v))
            }
        })
    });
    check_failure(
        &t,
        &input,
        Some(&m),
        &[],
        &[
            "m_bad_shape",
            "model.safetensors",
            "position_embeddings",
            "shape",
        ],
    );

    let m = variant("m_no_tokenizer", &|d| {
        std::fs::remove_file(d.join("vocab.txt")).unwrap()
    });
    check_failure(&t, &input, Some(&m), &[], &["m_no_tokenizer", "vocab.txt"]);

    let m = variant("m_bad_vocab", &|d| {
        std::fs::write(d.join("vocab.txt"), "[PAD]\n[CLS]\n[SEP]\n").unwrap()
    });
    check_failure(
        &t,
        &input,
        Some(&m),
        &[],
        &["m_bad_vocab", "vocab.txt", "[UNK]"],
    );

    // A tokenizer larger than the model's embedding table: the line with the out-of-range token is named.
    let m = variant("m_big_vocab", &|d| {
        let mut v = std::fs::read_to_string(d.join("vocab.txt")).unwrap();
        for i in 0..40 {
            v.push_str(&format!("tok{i}\n"));
        }
        v.push_str("龙\n");
        std::fs::write(d.join("vocab.txt"), v).unwrap();
    });
    let input2 = t.write(
        "in2.jsonl",
        format!("{}\n{}\n", single("今天"), single("一条龙")),
    );
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
    check_failure(
        &t,
        &input,
        None,
        &["--max-len", "2"],
        &["in.jsonl:1", "max_len 2 is too small"],
    );
    // Without a GPU, --device cuda is a clear error (on a GPU machine it works).
    if ernie_cuda::preflight().is_err() {
        check_failure(
            &t,
            &input,
            None,
            &["--device", "cuda"],
            &["--device cuda", "NVIDIA"],
        );
    }

    // An output directory that does not exist.
    let output = t.path("missing_dir/out.jsonl");
    let model = t.model();
    let args: Vec<&OsStr> = vec![
        "encode".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--output".as_ref(),
        output.as_os_str(),
    ];
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("missing_dir") && stderr(&out).contains("does not exist"),
        "{}",
        stderr(&out)
    );

    // Usage errors are clap's (exit 2), never a panic.
    for bad in [
        &["--batch-size", "0"][..],
        &["--threads", "0"],
        &["--device", "tpu"],
        &["--max-len", "x"],
    ] {
        let out = t.encode(&input, &t.path("o.jsonl"), bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(!t.path("o.jsonl").exists());
    }
}

#[test]
fn model_from_environment_variable() {
    let t = Tiny::new();
    let input = t.write("in.jsonl", single("今天天气很好") + "\n");
    let output = t.path("out.jsonl");
    let out = Command::new(BIN)
        .args([
            "encode".as_ref(),
            "--input".as_ref(),
            input.as_os_str(),
            "--output".as_ref(),
            output.as_os_str(),
        ])
        .env("ERNIE_FT_MODEL", t.model())
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(read_rows(&output)[0].mean.len(), HIDDEN);
}

// ------------------------------------------------------------------------------------------ e5-small-zh

fn shared_model() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ERNIE_FT_MODEL").map(PathBuf::from) {
        return p.is_dir().then_some(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/e5-small-zh");
    p.is_dir().then_some(p)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn e5_paraphrases_are_closer_than_unrelated_sentences() {
    let Some(model) = shared_model() else {
        eprintln!("SKIPPED (needs ../shared): e5_paraphrases_are_closer_than_unrelated_sentences");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let sentences = [
        "今天天气很好，我们去公园散步吧。",
        "今天阳光明媚，适合去公园走走。",
        "这家银行的信用卡年费太贵了。",
    ];
    std::fs::write(
        &input,
        sentences
            .iter()
            .map(|s| single(s) + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let output = tmp.path().join("out.jsonl");
    let out = run(&[
        "encode".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--output".as_ref(),
        output.as_os_str(),
    ]);
    assert_success(&out);
    let rows = read_rows(&output);
    assert_eq!(rows.len(), 3);
    assert!(rows
        .iter()
        .all(|r| r.mean.len() == 384 && r.cls.len() == 384));
    let para = cosine(&rows[0].mean, &rows[1].mean);
    let unrelated = cosine(&rows[0].mean, &rows[2].mean);
    eprintln!("cosine(paraphrase) = {para:.4}, cosine(unrelated) = {unrelated:.4}");
    assert!(
        para > unrelated,
        "paraphrase {para} should be closer than unrelated {unrelated}"
    );
}
