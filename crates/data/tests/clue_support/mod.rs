//! Reading a CLUE JSON-lines file from a string, for the clue_* test files.
#![allow(dead_code)]

use crate::common::write;
use ernie_data::{read_examples, Example, TaskSpec};

/// The error of reading `content` as `spec`; asserts that it names the file and `line`.
pub fn read_err(content: &str, spec: &TaskSpec, require_label: bool, line: usize) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "bad_input.json", content);
    let err = read_examples(&path, spec, require_label).expect_err("should fail");
    let msg = err.to_string();
    assert!(msg.contains("bad_input.json"), "no file name in: {msg}");
    assert!(msg.contains(&format!(":{line}:")), "no line {line} in: {msg}");
    msg
}

pub fn read_ok(content: &str, spec: &TaskSpec, require_label: bool) -> Vec<Example> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "input.json", content);
    read_examples(&path, spec, require_label).expect("should parse")
}
