//! CLUE datasets: encoding, collation into padded batches, batch order and shuffling, hold-out splits.

mod clue_support;
mod common;

use clue_support::read_ok;
use common::{vocab_dir, vocab_id, write};
use ernie_data::{
    read_examples, split_holdout, Batch, Dataset, Encoded, Error, Example, LabelSet, TaskSpec, TextTokenizer,
};
use proptest::prelude::*;

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
    let (w, ai, tian, men) = (vocab_id("我"), vocab_id("爱"), vocab_id("天"), vocab_id("门"));
    let (bei, jing) = (vocab_id("北"), vocab_id("京"));
    assert_eq!((b.batch, b.seq), (2, 7));
    assert_eq!(b.ids, vec![cls, tian, sep, men, sep, 99, 99, cls, w, ai, sep, bei, jing, sep]);
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
    let rows =
        vec![Encoded { ids: vec![5, 6, 7], type_ids: vec![0, 0, 1] }, Encoded { ids: vec![8], type_ids: vec![0] }];
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
    let msg = Dataset::build(&ex, &tok, 32, &labels).expect_err("unknown").to_string();
    assert!(msg.contains("dev_unknown.json:2:"), "{msg}");
    // Labelled and unlabelled lines mixed.
    let mixed = write(
        dir.path(),
        "mixed.json",
        "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": \"1\"}\n{\"sentence1\": \"a\", \"sentence2\": \"b\"}\n",
    );
    let ex = read_examples(&mixed, &TaskSpec::afqmc(), false).expect("read");
    let msg = Dataset::build(&ex, &tok, 32, &labels).expect_err("mixed").to_string();
    assert!(msg.contains("mixed.json:2:"), "{msg}");
    // max_len too small is reported once, for the whole dataset.
    let ex = read_examples(&unknown, &TaskSpec::afqmc(), false).expect("read");
    let ex = &ex[..1];
    assert!(matches!(Dataset::build(ex, &tok, 3, &labels), Err(Error::MaxLenTooSmall { .. })));
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
    assert_eq!(ds.batches(4, None), vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    assert!(dataset_of(0).batches(4, Some(1)).is_empty());
}

#[test]
fn shuffle_is_deterministic_per_seed() {
    let ds = dataset_of(100);
    let a = ds.batches(8, Some(42));
    assert_eq!(a, ds.batches(8, Some(42)), "same seed, same order");
    assert_ne!(a, ds.batches(8, Some(43)), "different seed, different order");
    assert_ne!(a.concat(), (0..100).collect::<Vec<_>>(), "actually shuffled");
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
    assert!(train.windows(2).all(|w| w[0].line < w[1].line), "file order kept");
    assert!(hold.windows(2).all(|w| w[0].line < w[1].line), "file order kept");
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
