//! `ernie-ft encode`, run as the real binary on the tiny random model of tests/fixtures (with a small
//! WordPiece vocabulary written next to a copy of it; helpers in tests/common/encode.rs): one row per line
//! in input order, independent of batching and padding, pooled as by hand, truncated longest-first; and
//! once on e5-small-zh when ../shared has it.

mod common;

use std::process::Command;

use common::encode::*;
use common::shared_model;

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
    let alone = [single("今天天气很好"), pair("我喜欢吃苹果", "你喜欢看书"), single("明天下雨"), single("猫很快")];
    for (i, line) in alone.iter().enumerate() {
        let one = t.rows(&format!("alone{i}"), std::slice::from_ref(line), &[]);
        assert_rows_close(&one[0], &rows[i], &format!("line {i}"));
    }
    let err = stderr(&out);
    assert!(err.contains("encoded 4 examples in") && err.contains("examples/s"), "summary line:\n{err}");
    assert!(!err.contains('\r'), "no progress bar when stderr is not a terminal:\n{err}");
    // Nothing but the input, the outputs and the model in the work dir (no temporary files left).
    let leftovers = t.temp_files();
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

/// An input longer than a window (with --batch-size 2 a window is 128 lines) streams: one row per line, in
/// input order, the rows of one window (--batch-size 150) up to float rounding, and the summary counts them.
#[test]
fn a_long_input_streams_in_windows() {
    let t = Tiny::new();
    let inputs: Vec<String> = (0..150)
        .map(|i| {
            let len = 1 + (i * 11) % 29;
            if i % 4 == 1 {
                pair(&text(i, len), &text(i + 3, 1 + i % 7))
            } else {
                single(&text(i, len))
            }
        })
        .collect();
    let input = t.write("long.jsonl", inputs.iter().map(|l| format!("{l}\r\n\n")).collect::<String>());
    let output = t.path("long.out.jsonl");
    let out = t.encode(&input, &output, &["--batch-size", "2"]);
    assert_success(&out);
    let err = stderr(&out);
    assert!(err.contains("encoding 150 inputs") && err.contains("encoded 150 examples in"), "{err}");
    let streamed = read_rows(&output);
    let whole = t.rows("whole", &inputs, &["--batch-size", "150"]);
    assert_eq!((streamed.len(), whole.len()), (150, 150));
    for (i, (a, b)) in streamed.iter().zip(&whole).enumerate() {
        assert_rows_close(a, b, &format!("line {i}: windows of 128 vs one window"));
    }
    assert!(max_diff(&streamed[0].mean, &streamed[1].mean) > 1e-3, "distinct inputs, distinct rows");
    assert!(t.temp_files().is_empty());
}

#[test]
fn padding_does_not_change_results() {
    let t = Tiny::new();
    let short = single("猫");
    let long = pair(&text(0, 40), &text(3, 20));
    let alone = t.rows("alone", std::slice::from_ref(&short), &["--max-len", "64"]);
    let batched = t.rows("batched", &[long.clone(), short.clone(), long], &["--max-len", "64"]);
    assert_rows_close(&alone[0], &batched[1], "short sentence alone vs beside a 64-token pair");
}

#[test]
fn pooling_matches_a_hand_computation() {
    let t = Tiny::new();
    let inputs = [single("今天天气很好。"), pair("我喜欢吃苹果", "他们在公园玩"), single(&text(2, 30))];
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
    assert_eq!(rows[0].cls, want.cls, "cls is a copy of the hidden state and must read back bit for bit");
}

#[test]
fn long_inputs_are_truncated_longest_first() {
    let t = Tiny::new();
    // Single: [CLS] + 6 + [SEP] = 8 tokens.
    let long = text(0, 30);
    let cut: String = long.chars().take(6).collect();
    let rows = t.rows("trunc1", &[single(&long), single(&cut)], &["--max-len", "8"]);
    assert_rows_close(&rows[0], &rows[1], "single truncated to max-len 8");
    // Pair: 3 specials, 7 slots; longest-first trims the 10-token side to 4 and keeps the 3-token side.
    let (a, b) = (text(0, 10), text(20, 3));
    let a_cut: String = a.chars().take(4).collect();
    let rows = t.rows("trunc2", &[pair(&a, &b), pair(&a_cut, &b)], &["--max-len", "10"]);
    assert_rows_close(&rows[0], &rows[1], "pair truncated longest-first to max-len 10");
    // Without truncation the long input differs.
    let rows = t.rows("trunc3", &[single(&long), single(&cut)], &[]);
    assert!(max_diff(&rows[0].mean, &rows[1].mean) > 1e-4);
}

#[test]
fn model_from_environment_variable() {
    let t = Tiny::new();
    let input = t.write("in.jsonl", single("今天天气很好") + "\n");
    let output = t.path("out.jsonl");
    let out = Command::new(BIN)
        .args(["encode".as_ref(), "--input".as_ref(), input.as_os_str(), "--output".as_ref(), output.as_os_str()])
        .env("ERNIE_FT_MODEL", t.model())
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(read_rows(&output)[0].mean.len(), HIDDEN);
}

// ------------------------------------------------------------------------------------------ e5-small-zh

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn e5_paraphrases_are_closer_than_unrelated_sentences() {
    let Some(model) = shared_model() else {
        ernie_testkit::skipped!("SKIPPED (needs ../shared): e5_paraphrases_are_closer_than_unrelated_sentences");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let sentences =
        ["今天天气很好，我们去公园散步吧。", "今天阳光明媚，适合去公园走走。", "这家银行的信用卡年费太贵了。"];
    std::fs::write(&input, sentences.iter().map(|s| single(s) + "\n").collect::<String>()).unwrap();
    let output = tmp.path().join("out.jsonl");
    let out = encode_with(&model, &input, &output, &[]);
    assert_success(&out);
    let rows = read_rows(&output);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.mean.len() == 384 && r.cls.len() == 384));
    let para = cosine(&rows[0].mean, &rows[1].mean);
    let unrelated = cosine(&rows[0].mean, &rows[2].mean);
    eprintln!("cosine(paraphrase) = {para:.4}, cosine(unrelated) = {unrelated:.4}");
    assert!(para > unrelated, "paraphrase {para} should be closer than unrelated {unrelated}");
}
