//! CLUE label sets: labels.json, labels from the examples, and the rule that applies to every task.

mod clue_support;
mod common;

use clue_support::read_ok;
use common::write;
use ernie_data::{read_examples, resolve_labels, LabelSet, LabelSource, TaskSpec};

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
    let dup = write(dir.path(), "dup_labels.json", "{\"label\": \"a\"}\n{\"label\": \"b\"}\n{\"label\": \"a\"}\n");
    let msg = LabelSet::from_file(&dup, "label").expect_err("dup").to_string();
    assert!(msg.contains("dup_labels.json:3:") && msg.contains("line 1"), "{msg}");
    let missing = write(dir.path(), "nokey_labels.json", "{\"label\": \"a\"}\n{\"name\": \"b\"}\n");
    let msg = LabelSet::from_file(&missing, "label").expect_err("missing").to_string();
    assert!(msg.contains("nokey_labels.json:2:"), "{msg}");
    let empty = write(dir.path(), "empty_labels.json", "");
    let msg = LabelSet::from_file(&empty, "label").expect_err("empty").to_string();
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
    let msg = LabelSet::from_examples(&ex2).expect_err("unlabelled").to_string();
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
    assert!(msg.contains("input.json:2:") && msg.contains("\"7\""), "{msg}");
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
        "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"0\"}\n{\"sentence1\": \"c\", \"sentence2\": \"d\", \"label\": 1}\n",
    );
    let ex = read_examples(&train, &spec, true).expect("read");
    let (set, source) = resolve_labels(None, &train, &spec, &ex).expect("labels");
    assert_eq!(set.labels(), ["1", "0"], "the file's order, not the train file's");
    assert_eq!(source, LabelSource::BesideTrain(labels.clone()));
    assert!(source.to_string().contains("labels.json"), "{source}");

    // A training label missing from labels.json: an error naming the train file and line, not a new class.
    let pairs = [("a", "b", "0"), ("c", "d", "1"), ("e", "f", "2")];
    let lines: String = pairs
        .iter()
        .map(|(a, b, l)| format!("{{\"sentence1\": \"{a}\", \"sentence2\": \"{b}\", \"label\": \"{l}\"}}\n"))
        .collect();
    let bad = write(dir.path(), "train.json", &lines);
    let ex = read_examples(&bad, &spec, true).expect("read");
    let msg = resolve_labels(None, &bad, &spec, &ex).expect_err("unknown label").to_string();
    assert!(msg.contains(&format!("{}:3:", bad.display())) && msg.contains("unknown label \"2\""), "{msg}");
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
    let set = LabelSet::from_labels(vec!["x".into(), "y".into(), "z".into()], "origin").expect("labels");
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
