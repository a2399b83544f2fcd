//! CLUE JSON-lines reading, label sets, datasets, batching and hold-out splits.

mod common;

use std::path::Path;

use common::{vocab_dir, vocab_id, write};
use ernie_data::{
    read_examples, resolve_labels, split_holdout, Batch, Dataset, Encoded, Error, Example,
    LabelSet, LabelSource, TaskSpec, TextTokenizer,
};
use proptest::prelude::*;

/// The error of reading `content` as `spec`; asserts that it names the file and `line`.
fn read_err(content: &str, spec: &TaskSpec, require_label: bool, line: usize) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "bad_input.json", content);
    let err = read_examples(&path, spec, require_label).expect_err("should fail");
    let msg = err.to_string();
    assert!(msg.contains("bad_input.json"), "no file name in: {msg}");
    assert!(
        msg.contains(&format!(":{line}:")),
        "no line {line} in: {msg}"
    );
    msg
}

fn read_ok(content: &str, spec: &TaskSpec, require_label: bool) -> Vec<Example> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "input.json", content);
    read_examples(&path, spec, require_label).expect("should parse")
}

// ---------------------------------------------------------------- reading

#[test]
fn reads_iflytek_lines_with_string_and_int_labels() {
    let ex = read_ok(
        concat!(
            r#"{"label": "110", "label_des": "社区超市", "sentence": "朴朴快送超市"}"#,
            "\n",
            r#"{"label": 7, "sentence": "家政"}"#,
            "\n"
        ),
        &TaskSpec::iflytek(),
        true,
    );
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].text_a, "朴朴快送超市");
    assert_eq!(ex[0].label.as_deref(), Some("110"));
    assert_eq!(ex[0].text_b, None);
    assert_eq!(ex[0].id, None);
    assert_eq!(ex[1].label.as_deref(), Some("7"));
    assert_eq!((ex[0].line, ex[1].line), (1, 2));
    assert!(ex[1].location().ends_with("input.json:2"));
}

#[test]
fn reads_afqmc_pairs() {
    let ex = read_ok(
        r#"{"sentence1": "借呗", "sentence2": "花呗", "label": "0"}"#,
        &TaskSpec::afqmc(),
        true,
    );
    assert_eq!(ex[0].text_a, "借呗");
    assert_eq!(ex[0].text_b.as_deref(), Some("花呗"));
    assert_eq!(ex[0].label.as_deref(), Some("0"));
}

#[test]
fn test_files_without_labels_with_int_or_string_ids() {
    let content = concat!(
        r#"{"id": 0, "sentence1": "a", "sentence2": "b"}"#,
        "\n",
        r#"{"id": "x-1", "sentence1": "c", "sentence2": "d"}"#,
        "\n"
    );
    let ex = read_ok(content, &TaskSpec::afqmc(), false);
    assert_eq!(ex[0].id.as_deref(), Some("0"));
    assert_eq!(ex[1].id.as_deref(), Some("x-1"));
    assert!(ex.iter().all(|e| e.label.is_none()));
    // The same file read as training data: the label is missing on line 1.
    let msg = read_err(content, &TaskSpec::afqmc(), true, 1);
    assert!(msg.contains("label"), "{msg}");
}

#[test]
fn bom_crlf_and_blank_lines_are_tolerated() {
    let content = "\u{feff}{\"sentence\": \"一\", \"label\": \"1\"}\r\n\r\n   \r\n{\"sentence\": \"二\", \"label\": \"2\"}\r\n\r\n";
    let ex = read_ok(content, &TaskSpec::iflytek(), true);
    assert_eq!(ex.len(), 2);
    assert_eq!((ex[0].text_a.as_str(), ex[0].line), ("一", 1));
    // Blank lines still count for line numbers.
    assert_eq!((ex[1].text_a.as_str(), ex[1].line), ("二", 4));
    assert_eq!(ex[1].label.as_deref(), Some("2"));
}

#[test]
fn error_malformed_json() {
    let ok = r#"{"sentence": "a", "label": "1"}"#;
    let msg = read_err(
        &format!("{ok}\n{ok}\n{{\"sentence\": \"b\",\n"),
        &TaskSpec::iflytek(),
        true,
        3,
    );
    assert!(msg.contains("malformed JSON"), "{msg}");
}

#[test]
fn error_not_an_object() {
    read_err("[1, 2]\n", &TaskSpec::iflytek(), true, 1);
}

#[test]
fn error_missing_text_key() {
    let msg = read_err(
        "{\"sentence\": \"a\", \"label\": \"1\"}\n{\"sentense\": \"b\", \"label\": \"1\"}\n",
        &TaskSpec::iflytek(),
        true,
        2,
    );
    assert!(msg.contains("\"sentence\""), "{msg}");
}

#[test]
fn error_missing_second_text_key() {
    let msg = read_err(
        r#"{"sentence1": "a", "label": "1"}"#,
        &TaskSpec::afqmc(),
        true,
        1,
    );
    assert!(msg.contains("sentence2"), "{msg}");
}

#[test]
fn error_missing_label_key() {
    let msg = read_err(
        "\n{\"sentence\": \"a\", \"label\": \"1\"}\n{\"sentence\": \"b\"}\n",
        &TaskSpec::iflytek(),
        true,
        3,
    );
    assert!(msg.contains("missing label"), "{msg}");
}

#[test]
fn error_non_string_text() {
    let msg = read_err(
        r#"{"sentence": 12, "label": "1"}"#,
        &TaskSpec::iflytek(),
        true,
        1,
    );
    assert!(msg.contains("must be a string"), "{msg}");
    read_err(
        r#"{"sentence": null, "label": "1"}"#,
        &TaskSpec::iflytek(),
        true,
        1,
    );
    read_err(
        r#"{"sentence1": "a", "sentence2": ["b"], "label": "1"}"#,
        &TaskSpec::afqmc(),
        true,
        1,
    );
}

#[test]
fn error_bad_label_or_id_type() {
    read_err(
        r#"{"sentence": "a", "label": 1.5}"#,
        &TaskSpec::iflytek(),
        true,
        1,
    );
    read_err(
        r#"{"sentence": "a", "label": true}"#,
        &TaskSpec::iflytek(),
        false,
        1,
    );
    read_err(
        r#"{"sentence": "a", "id": [0]}"#,
        &TaskSpec::iflytek(),
        false,
        1,
    );
}

#[test]
fn error_empty_file() {
    let msg = read_err("", &TaskSpec::iflytek(), true, 1);
    assert!(msg.contains("empty"), "{msg}");
    read_err("\n \r\n\n", &TaskSpec::iflytek(), false, 1);
    read_err("\u{feff}", &TaskSpec::iflytek(), false, 1);
}

#[test]
fn error_invalid_utf8() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("latin1.json");
    std::fs::write(&path, b"{\"sentence\": \"a\"}\n{\"sentence\": \"\xe9\"}\n").expect("write");
    let msg = read_examples(&path, &TaskSpec::iflytek(), false)
        .expect_err("bad utf-8")
        .to_string();
    assert!(msg.contains("latin1.json:2:"), "{msg}");
}

#[test]
fn error_missing_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nowhere.json");
    let err = read_examples(&path, &TaskSpec::iflytek(), true).expect_err("missing");
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("nowhere.json"), "{err}");
}

#[test]
fn requiring_labels_of_a_task_without_label_key_is_an_error() {
    let spec = TaskSpec::custom("plain", "text", None, None);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "x.json", r#"{"text": "a"}"#);
    assert!(matches!(
        read_examples(&path, &spec, true),
        Err(Error::Config(_))
    ));
    assert_eq!(
        read_examples(&path, &spec, false)
            .expect("unlabelled")
            .len(),
        1
    );
}

#[test]
fn presets() {
    assert_eq!(TaskSpec::preset("IFLYTEK"), Some(TaskSpec::iflytek()));
    assert_eq!(TaskSpec::preset("afqmc"), Some(TaskSpec::afqmc()));
    assert_eq!(TaskSpec::preset("nope"), None);
    for name in TaskSpec::PRESETS {
        assert_eq!(TaskSpec::preset(name).expect("preset").name, *name);
    }
    let a = TaskSpec::afqmc();
    assert_eq!(
        (a.text_a_key.as_str(), a.text_b_key.as_deref()),
        ("sentence1", Some("sentence2"))
    );
    assert!(a.is_pair() && a.labels_file.is_none());
    let i = TaskSpec::iflytek();
    assert_eq!(
        i.labels_path(Path::new("d")),
        Some(Path::new("d/labels.json").to_path_buf())
    );
    // Saved with a model.
    let json = serde_json::to_string(&a).expect("serialize");
    assert_eq!(
        serde_json::from_str::<TaskSpec>(&json).expect("deserialize"),
        a
    );
}

// ---------------------------------------------------------------- labels

#[test]
fn labels_json_keeps_file_order_and_accepts_ints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "labels.json",
        "{\"label\": \"10\", \"label_des\": \"x\"}\r\n\n{\"label\": 2}\n{\"label\": \"0\"}\n",
    );
    let set = LabelSet::from_file(&path, "label").expect("labels");
    assert_eq!(set.labels(), ["10", "2", "0"]);
    assert_eq!(set.index("10").expect("10"), 0);
    assert_eq!(set.index("2").expect("2"), 1);
    assert_eq!(set.index("0").expect("0"), 2);
    assert_eq!(set.name(1), Some("2"));
    assert_eq!(set.name(3), None);
    assert!(set.index("3").is_err());
}

#[test]
fn labels_json_errors_name_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dup = write(
        dir.path(),
        "dup_labels.json",
        "{\"label\": \"a\"}\n{\"label\": \"b\"}\n{\"label\": \"a\"}\n",
    );
    let msg = LabelSet::from_file(&dup, "label")
        .expect_err("dup")
        .to_string();
    assert!(
        msg.contains("dup_labels.json:3:") && msg.contains("line 1"),
        "{msg}"
    );
    let missing = write(
        dir.path(),
        "nokey_labels.json",
        "{\"label\": \"a\"}\n{\"name\": \"b\"}\n",
    );
    let msg = LabelSet::from_file(&missing, "label")
        .expect_err("missing")
        .to_string();
    assert!(msg.contains("nokey_labels.json:2:"), "{msg}");
    let empty = write(dir.path(), "empty_labels.json", "");
    let msg = LabelSet::from_file(&empty, "label")
        .expect_err("empty")
        .to_string();
    assert!(msg.contains("empty_labels.json:1:"), "{msg}");
}

#[test]
fn labels_from_examples_in_first_appearance_order() {
    let ex = read_ok(
        "{\"sentence\": \"a\", \"label\": \"b\"}\n{\"sentence\": \"a\", \"label\": 3}\n{\"sentence\": \"a\", \"label\": \"b\"}\n{\"sentence\": \"a\", \"label\": \"a\"}\n",
        &TaskSpec::iflytek(),
        true,
    );
    let set = LabelSet::from_examples(&ex).expect("labels");
    assert_eq!(set.labels(), ["b", "3", "a"]);
    // An unlabelled example cannot contribute.
    let mut ex2 = ex.clone();
    ex2[2].label = None;
    let msg = LabelSet::from_examples(&ex2)
        .expect_err("unlabelled")
        .to_string();
    assert!(msg.contains("input.json:3:"), "{msg}");
}

#[test]
fn unknown_label_names_file_and_line() {
    let set = LabelSet::from_labels(vec!["0".into(), "1".into()], "test").expect("labels");
    let ex = read_ok(
        "{\"sentence\": \"a\", \"label\": \"1\"}\n{\"sentence\": \"b\", \"label\": \"7\"}\n",
        &TaskSpec::iflytek(),
        true,
    );
    assert_eq!(set.index_of(&ex[0]).expect("known"), 1);
    let msg = set.index_of(&ex[1]).expect_err("unknown").to_string();
    assert!(
        msg.contains("input.json:2:") && msg.contains("\"7\""),
        "{msg}"
    );
}

// ---------------------------------------------------------------- the labels rule (every task)

#[test]
fn labels_json_beside_train_applies_to_pair_tasks_and_rejects_unknown_labels() {
    let dir = tempfile::tempdir().expect("tempdir");
    // AFQMC's preset names no labels file: labels.json beside train is used all the same.
    let spec = TaskSpec::afqmc();
    let labels = write(dir.path(), "labels.json", "{\"label\": \"1\"}\n{\"label\": \"0\"}\n");
    let train = write(
        dir.path(),
        "train.json",
        concat!(
            r#"{"sentence1": "a", "sentence2": "b", "label": "0"}"#,
            "\n",
            r#"{"sentence1": "c", "sentence2": "d", "label": 1}"#,
            "\n"
        ),
    );
    let ex = read_examples(&train, &spec, true).expect("read");
    let (set, source) = resolve_labels(None, &train, &spec, &ex).expect("labels");
    assert_eq!(set.labels(), ["1", "0"], "the file's order, not the train file's");
    assert_eq!(source, LabelSource::BesideTrain(labels.clone()));
    assert!(source.to_string().contains("labels.json"), "{source}");

    // A training label missing from labels.json: an error naming the train file and line, not a new class.
    let bad = write(
        dir.path(),
        "train.json",
        concat!(
            r#"{"sentence1": "a", "sentence2": "b", "label": "0"}"#,
            "\n",
            r#"{"sentence1": "c", "sentence2": "d", "label": "1"}"#,
            "\n",
            r#"{"sentence1": "e", "sentence2": "f", "label": "2"}"#,
            "\n"
        ),
    );
    let ex = read_examples(&bad, &spec, true).expect("read");
    let msg = resolve_labels(None, &bad, &spec, &ex)
        .expect_err("unknown label")
        .to_string();
    assert!(
        msg.contains(&format!("{}:3:", bad.display())) && msg.contains("unknown label \"2\""),
        "{msg}"
    );
    assert!(msg.contains(&labels.display().to_string()), "names the label list: {msg}");
}

#[test]
fn custom_task_without_labels_json_uses_first_appearance_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = TaskSpec::custom("mine", "text", None, Some("tag"));
    let train = write(
        dir.path(),
        "train.json",
        "{\"text\": \"a\", \"tag\": \"pos\"}\n{\"text\": \"b\", \"tag\": \"neg\"}\n{\"text\": \"c\", \"tag\": \"pos\"}\n{\"text\": \"d\", \"tag\": \"mid\"}\n",
    );
    let ex = read_examples(&train, &spec, true).expect("read");
    let (set, source) = resolve_labels(None, &train, &spec, &ex).expect("labels");
    assert_eq!(set.labels(), ["pos", "neg", "mid"]);
    assert_eq!(source, LabelSource::TrainFile(train.clone()));
    assert!(source.to_string().contains("first appearance"), "{source}");

    // The same custom task with a labels.json beside train (label under the task's key): that list.
    write(dir.path(), "labels.json", "{\"tag\": \"neg\"}\n{\"tag\": \"mid\"}\n{\"tag\": \"pos\"}\n");
    let (set, source) = resolve_labels(None, &train, &spec, &ex).expect("labels");
    assert_eq!(set.labels(), ["neg", "mid", "pos"]);
    assert!(matches!(source, LabelSource::BesideTrain(_)), "{source:?}");

    // An explicit file wins over labels.json beside train.
    let explicit = write(
        dir.path(),
        "other.json",
        "{\"tag\": \"mid\"}\n{\"tag\": \"pos\"}\n{\"tag\": \"neg\"}\n{\"tag\": \"extra\"}\n",
    );
    let (set, source) = resolve_labels(Some(&explicit), &train, &spec, &ex).expect("labels");
    assert_eq!(set.labels(), ["mid", "pos", "neg", "extra"]);
    assert_eq!(source, LabelSource::Explicit(explicit.clone()));
    assert!(source.to_string().starts_with("--labels "), "{source}");
}

#[test]
fn label_set_serde_round_trip() {
    let set =
        LabelSet::from_labels(vec!["x".into(), "y".into(), "z".into()], "origin").expect("labels");
    let json = serde_json::to_string(&set).expect("serialize");
    let back: LabelSet = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, set);
    assert_eq!(back.index("z").expect("z"), 2);
    // Minimal hand-written form, and duplicates rejected on load.
    let min: LabelSet = serde_json::from_str(r#"{"labels": ["p", "q"]}"#).expect("minimal");
    assert_eq!(min.labels(), ["p", "q"]);
    assert!(serde_json::from_str::<LabelSet>(r#"{"labels": ["p", "p"]}"#).is_err());
    assert!(LabelSet::from_labels(vec![], "nothing").is_err());
}

// ---------------------------------------------------------------- datasets

fn tokenizer() -> (tempfile::TempDir, TextTokenizer) {
    let dir = vocab_dir();
    let tok = TextTokenizer::from_dir(dir.path()).expect("tokenizer");
    (dir, tok)
}

const PAIRS: &str = concat!(
    r#"{"id": 5, "sentence1": "我爱", "sentence2": "北京", "label": "1"}"#,
    "\n",
    r#"{"sentence1": "天", "sentence2": "门", "label": 0}"#,
    "\n",
    r#"{"sentence1": "我爱北京天安门", "sentence2": "hello world", "label": "1"}"#,
    "\n"
);

#[test]
fn collate_pads_right_with_mask_and_type_ids() {
    let (_d, tok) = tokenizer();
    let ex = read_ok(PAIRS, &TaskSpec::afqmc(), true);
    let labels = LabelSet::from_labels(vec!["0".into(), "1".into()], "afqmc").expect("labels");
    let ds = Dataset::build(&ex, &tok, 64, &labels).expect("dataset");
    assert_eq!(ds.len(), 3);
    assert!(ds.is_labelled());
    let b = ds.collate(&[1, 0], 99);
    let (cls, sep) = (vocab_id("[CLS]"), vocab_id("[SEP]"));
    let (w, ai, tian, men) = (
        vocab_id("我"),
        vocab_id("爱"),
        vocab_id("天"),
        vocab_id("门"),
    );
    let (bei, jing) = (vocab_id("北"), vocab_id("京"));
    assert_eq!((b.batch, b.seq), (2, 7));
    assert_eq!(
        b.ids,
        vec![cls, tian, sep, men, sep, 99, 99, cls, w, ai, sep, bei, jing, sep]
    );
    assert_eq!(b.mask, vec![1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
    assert_eq!(b.type_ids, vec![0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1]);
    assert_eq!(b.labels, Some(vec![0, 1]));
    assert_eq!(b.ids_of_examples, vec![None, Some("5".to_string())]);
    // Every row keeps its own length; truncation by max_len applies at build time.
    let short = Dataset::build(&ex, &tok, 6, &labels).expect("dataset");
    assert!(short.items().iter().all(|i| i.ids.len() <= 6));
    assert_eq!(short.collate(&[2], 0).seq, 6);
    let empty = ds.collate(&[], 0);
    assert_eq!((empty.batch, empty.seq, empty.ids.len()), (0, 0, 0));
}

#[test]
fn batch_from_encoded() {
    let rows = vec![
        Encoded {
            ids: vec![5, 6, 7],
            type_ids: vec![0, 0, 1],
        },
        Encoded {
            ids: vec![8],
            type_ids: vec![0],
        },
    ];
    let b = Batch::from_encoded(&rows, 1);
    assert_eq!((b.batch, b.seq), (2, 3));
    assert_eq!(b.ids, vec![5, 6, 7, 8, 1, 1]);
    assert_eq!(b.type_ids, vec![0, 0, 1, 0, 0, 0]);
    assert_eq!(b.mask, vec![1, 1, 1, 1, 0, 0]);
    assert_eq!(b.labels, None);
    assert_eq!(b.ids_of_examples, vec![None, None]);
}

#[test]
fn unlabelled_dataset_has_no_labels_and_keeps_ids() {
    let (_d, tok) = tokenizer();
    let ex = read_ok(
        "{\"id\": 0, \"sentence\": \"我\"}\n{\"id\": \"t1\", \"sentence\": \"爱\"}\n",
        &TaskSpec::iflytek(),
        false,
    );
    let labels = LabelSet::from_labels(vec!["0".into()], "x").expect("labels");
    let ds = Dataset::build(&ex, &tok, 16, &labels).expect("dataset");
    assert!(!ds.is_labelled());
    let b = ds.collate(&[0, 1], tok.pad_id());
    assert_eq!(b.labels, None);
    assert_eq!(b.ids_of_examples, vec![Some("0".into()), Some("t1".into())]);
}

#[test]
fn dataset_errors_name_file_and_line() {
    let (_d, tok) = tokenizer();
    let labels = LabelSet::from_labels(vec!["0".into(), "1".into()], "afqmc").expect("labels");
    let dir = tempfile::tempdir().expect("tempdir");
    let unknown = write(
        dir.path(),
        "dev_unknown.json",
        "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"1\"}\n{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"2\"}\n",
    );
    let ex = read_examples(&unknown, &TaskSpec::afqmc(), true).expect("read");
    let msg = Dataset::build(&ex, &tok, 32, &labels)
        .expect_err("unknown")
        .to_string();
    assert!(msg.contains("dev_unknown.json:2:"), "{msg}");
    // Labelled and unlabelled lines mixed.
    let mixed = write(
        dir.path(),
        "mixed.json",
        "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"1\"}\n{\"sentence1\": \"a\", \"sentence2\": \"b\"}\n",
    );
    let ex = read_examples(&mixed, &TaskSpec::afqmc(), false).expect("read");
    let msg = Dataset::build(&ex, &tok, 32, &labels)
        .expect_err("mixed")
        .to_string();
    assert!(msg.contains("mixed.json:2:"), "{msg}");
    // max_len too small is reported once, for the whole dataset.
    let ex = read_examples(&unknown, &TaskSpec::afqmc(), false).expect("read");
    let ex = &ex[..1];
    assert!(matches!(
        Dataset::build(ex, &tok, 3, &labels),
        Err(Error::MaxLenTooSmall { .. })
    ));
}

fn dataset_of(n: usize) -> Dataset {
    let (_d, tok) = tokenizer();
    let ex: Vec<Example> = (0..n).map(|_| Example::new("我", None, None)).collect();
    let labels = LabelSet::from_labels(vec!["0".into()], "x").expect("labels");
    Dataset::build(&ex, &tok, 8, &labels).expect("dataset")
}

#[test]
fn batches_in_order_without_seed() {
    let ds = dataset_of(10);
    assert_eq!(
        ds.batches(4, None),
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
    );
    assert!(dataset_of(0).batches(4, Some(1)).is_empty());
}

#[test]
fn shuffle_is_deterministic_per_seed() {
    let ds = dataset_of(100);
    let a = ds.batches(8, Some(42));
    assert_eq!(a, ds.batches(8, Some(42)), "same seed, same order");
    assert_ne!(
        a,
        ds.batches(8, Some(43)),
        "different seed, different order"
    );
    assert_ne!(
        a.concat(),
        (0..100).collect::<Vec<_>>(),
        "actually shuffled"
    );
    let mut all = a.concat();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    assert!(a[..a.len() - 1].iter().all(|b| b.len() == 8));
    assert_eq!(a.last().map(Vec::len), Some(4));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_index_exactly_once(n in 0usize..300, batch in 1usize..40, seed in any::<Option<u64>>()) {
        let ds = dataset_of(n);
        let batches = ds.batches(batch, seed);
        prop_assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= batch));
        let mut all = batches.concat();
        all.sort_unstable();
        prop_assert_eq!(all, (0..n).collect::<Vec<_>>());
    }
}

// ---------------------------------------------------------------- hold-out split

fn numbered(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| {
            let mut e = Example::new(format!("t{i}"), None, Some("0".into()));
            e.line = i + 1;
            e
        })
        .collect()
}

#[test]
fn split_holdout_is_deterministic_disjoint_and_ordered() {
    let (train, hold) = split_holdout(numbered(100), 0.1, 7);
    assert_eq!((train.len(), hold.len()), (90, 10));
    let (train2, hold2) = split_holdout(numbered(100), 0.1, 7);
    assert_eq!((&train, &hold), (&train2, &hold2));
    let (_, hold3) = split_holdout(numbered(100), 0.1, 8);
    assert_ne!(hold, hold3);
    let mut lines: Vec<usize> = train.iter().chain(&hold).map(|e| e.line).collect();
    assert!(
        train.windows(2).all(|w| w[0].line < w[1].line),
        "file order kept"
    );
    assert!(
        hold.windows(2).all(|w| w[0].line < w[1].line),
        "file order kept"
    );
    lines.sort_unstable();
    assert_eq!(lines, (1..=100).collect::<Vec<_>>());
}

#[test]
fn split_holdout_edge_fractions() {
    assert_eq!(split_holdout(numbered(10), 0.0, 1).1.len(), 0);
    assert_eq!(split_holdout(numbered(10), 1.0, 1).0.len(), 0);
    assert_eq!(split_holdout(numbered(10), 2.0, 1).1.len(), 10);
    assert_eq!(split_holdout(numbered(10), f64::NAN, 1).1.len(), 0);
    assert_eq!(split_holdout(numbered(10), 0.25, 1).1.len(), 3);
    assert_eq!(split_holdout(Vec::new(), 0.5, 1), (vec![], vec![]));
}

// ---------------------------------------------------------------- the real CLUE files

#[test]
fn real_clue_files_parse() {
    let shared = require_shared!("real_clue_files_parse");
    let data = shared.join("data");
    let iflytek = TaskSpec::iflytek();
    let labels =
        LabelSet::from_file(&data.join("iflytek/labels.json"), "label").expect("labels.json");
    assert_eq!(labels.len(), 119);
    assert_eq!(labels.labels()[..3], ["0", "1", "2"]);
    for (file, require, n) in [
        ("iflytek/dev.json", true, 2599),
        ("iflytek/train.partial.json", true, 5951),
        ("iflytek/test.json", false, 2600),
    ] {
        let ex = read_examples(&data.join(file), &iflytek, require).expect(file);
        assert_eq!(ex.len(), n, "{file}");
        if require {
            for e in &ex {
                labels.index_of(e).expect("label in labels.json");
            }
        } else {
            assert!(ex.iter().all(|e| e.id.is_some()), "{file} ids");
        }
    }
    let afqmc = TaskSpec::afqmc();
    for (file, require, n) in [
        ("afqmc/train.json", true, 34334),
        ("afqmc/dev.json", true, 4316),
        ("afqmc/test.json", false, 3861),
    ] {
        let ex = read_examples(&data.join(file), &afqmc, require).expect(file);
        assert_eq!(ex.len(), n, "{file}");
        if require {
            let set = LabelSet::from_examples(&ex).expect("labels");
            let mut got = set.labels().to_vec();
            got.sort();
            assert_eq!(got, ["0", "1"], "{file}");
        }
    }
}
