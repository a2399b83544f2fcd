//! CLUE JSON-lines reading: the task presets, the errors (each naming the file and line), and the real
//! CLUE files of ../shared.

mod clue_support;
mod common;

use std::path::Path;

use clue_support::{read_err, read_ok};
use common::write;
use ernie_data::{read_examples, Error, LabelSet, TaskSpec};

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
    let ex = read_ok(r#"{"sentence1": "借呗", "sentence2": "花呗", "label": "0"}"#, &TaskSpec::afqmc(), true);
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
    let msg = read_err(&format!("{ok}\n{ok}\n{{\"sentence\": \"b\",\n"), &TaskSpec::iflytek(), true, 3);
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
    let msg = read_err(r#"{"sentence1": "a", "label": "1"}"#, &TaskSpec::afqmc(), true, 1);
    assert!(msg.contains("sentence2"), "{msg}");
}

#[test]
fn error_missing_label_key() {
    let msg =
        read_err("\n{\"sentence\": \"a\", \"label\": \"1\"}\n{\"sentence\": \"b\"}\n", &TaskSpec::iflytek(), true, 3);
    assert!(msg.contains("missing label"), "{msg}");
}

#[test]
fn error_non_string_text() {
    let msg = read_err(r#"{"sentence": 12, "label": "1"}"#, &TaskSpec::iflytek(), true, 1);
    assert!(msg.contains("must be a string"), "{msg}");
    read_err(r#"{"sentence": null, "label": "1"}"#, &TaskSpec::iflytek(), true, 1);
    read_err(r#"{"sentence1": "a", "sentence2": ["b"], "label": "1"}"#, &TaskSpec::afqmc(), true, 1);
}

#[test]
fn error_bad_label_or_id_type() {
    read_err(r#"{"sentence": "a", "label": 1.5}"#, &TaskSpec::iflytek(), true, 1);
    read_err(r#"{"sentence": "a", "label": true}"#, &TaskSpec::iflytek(), false, 1);
    read_err(r#"{"sentence": "a", "id": [0]}"#, &TaskSpec::iflytek(), false, 1);
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
    let msg = read_examples(&path, &TaskSpec::iflytek(), false).expect_err("bad utf-8").to_string();
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
    assert!(matches!(read_examples(&path, &spec, true), Err(Error::Config(_))));
    assert_eq!(read_examples(&path, &spec, false).expect("unlabelled").len(), 1);
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
    assert_eq!((a.text_a_key.as_str(), a.text_b_key.as_deref()), ("sentence1", Some("sentence2")));
    assert!(a.is_pair() && a.labels_file.is_none());
    let i = TaskSpec::iflytek();
    assert_eq!(i.labels_path(Path::new("d")), Some(Path::new("d/labels.json").to_path_buf()));
    // Saved with a model.
    let json = serde_json::to_string(&a).expect("serialize");
    assert_eq!(serde_json::from_str::<TaskSpec>(&json).expect("deserialize"), a);
}

// ---------------------------------------------------------------- the real CLUE files

#[test]
fn real_clue_files_parse() {
    let shared = require_shared!("real_clue_files_parse");
    let data = shared.join("data");
    let iflytek = TaskSpec::iflytek();
    let labels = LabelSet::from_file(&data.join("iflytek/labels.json"), "label").expect("labels.json");
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
    for (file, require, n) in
        [("afqmc/train.json", true, 34334), ("afqmc/dev.json", true, 4316), ("afqmc/test.json", false, 3861)]
    {
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
