//! The e5-small-zh `tokenizer.json` path must reproduce the reference fixtures bit for bit
//! (see shared/fixtures/README.md section 3).

mod common;

use std::path::Path;

use ernie_data::{read_examples, Batch, Dataset, LabelSet, TaskSpec, TextTokenizer, TokenizerKind};
use safetensors::{Dtype, SafeTensors};

const MAX_LEN: usize = 128;

struct Fixture {
    batch: usize,
    seq: usize,
    input_ids: Vec<i64>,
    attention_mask: Vec<i64>,
    token_type_ids: Vec<i64>,
    labels: Vec<i64>,
}

fn i64_tensor(st: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<i64>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"));
    assert_eq!(t.dtype(), Dtype::I64, "{name}");
    let values = t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    (t.shape().to_vec(), values)
}

fn load_fixture(path: &Path) -> Fixture {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).expect("fixture parses");
    let (shape, input_ids) = i64_tensor(&st, "input_ids");
    let (mshape, attention_mask) = i64_tensor(&st, "attention_mask");
    let (tshape, token_type_ids) = i64_tensor(&st, "token_type_ids");
    let (_, labels) = i64_tensor(&st, "labels");
    assert_eq!(shape, mshape);
    assert_eq!(shape, tshape);
    Fixture { batch: shape[0], seq: shape[1], input_ids, attention_mask, token_type_ids, labels }
}

fn widen(v: &[u32]) -> Vec<i64> {
    v.iter().map(|&x| i64::from(x)).collect()
}

fn assert_batch_matches(batch: &Batch, fx: &Fixture) {
    assert_eq!((batch.batch, batch.seq), (fx.batch, fx.seq));
    assert_eq!(widen(&batch.ids), fx.input_ids, "input_ids");
    assert_eq!(widen(&batch.mask), fx.attention_mask, "attention_mask");
    assert_eq!(widen(&batch.type_ids), fx.token_type_ids, "token_type_ids");
}

/// Encodes the first 4 lines of `task/dev.json` with `encode_batch` + `Batch::from_encoded`, and again
/// through `read_examples` + `Dataset::build` + `collate`; both must equal the fixture.
fn check_task(shared: &Path, spec: &TaskSpec, fixture: &str) {
    let tok = TextTokenizer::from_dir(&shared.join("models/e5-small-zh")).expect("tokenizer");
    assert_eq!(tok.kind(), TokenizerKind::TokenizerJson);
    assert_eq!(tok.pad_id(), 1, "<pad>");
    assert_eq!(tok.cls_id(), 0, "<s>");
    let fx = load_fixture(&shared.join("fixtures").join(fixture));

    let task_dir = shared.join("data").join(&spec.name);
    let examples = read_examples(&task_dir.join("dev.json"), spec, true).expect("dev.json");
    let first4 = &examples[..4];

    let inputs: Vec<(String, Option<String>)> = first4.iter().map(|e| (e.text_a.clone(), e.text_b.clone())).collect();
    let encoded = tok.encode_batch(&inputs, MAX_LEN).expect("encode");
    assert!(encoded.iter().all(|e| e.len() <= MAX_LEN));
    assert_batch_matches(&Batch::from_encoded(&encoded, tok.pad_id()), &fx);

    let labels = match spec.labels_path(&task_dir) {
        Some(p) => LabelSet::from_file(&p, spec.label_key.as_deref().expect("label key")).expect("labels.json"),
        None => LabelSet::from_labels(vec!["0".into(), "1".into()], "afqmc").expect("labels"),
    };
    let ds = Dataset::build(first4, &tok, MAX_LEN, &labels).expect("dataset");
    let batch = ds.collate(&[0, 1, 2, 3], tok.pad_id());
    assert_batch_matches(&batch, &fx);
    assert_eq!(batch.labels.as_deref().map(widen), Some(fx.labels.clone()));
}

#[test]
fn e5_iflytek_inputs_equal_fixture() {
    let shared = require_shared!("e5_iflytek_inputs_equal_fixture");
    check_task(&shared, &TaskSpec::iflytek(), "e5_iflytek_f32.safetensors");
}

#[test]
fn e5_afqmc_inputs_equal_fixture() {
    let shared = require_shared!("e5_afqmc_inputs_equal_fixture");
    check_task(&shared, &TaskSpec::afqmc(), "e5_afqmc_f32.safetensors");
}

#[test]
fn e5_single_and_pair_templates() {
    let shared = require_shared!("e5_single_and_pair_templates");
    let tok = TextTokenizer::from_dir(&shared.join("models/e5-small-zh")).expect("tokenizer");
    assert_eq!(tok.num_special_tokens(false), 2);
    assert_eq!(tok.num_special_tokens(true), 4);
    let s = tok.encode("你好", None, 16).expect("single");
    assert_eq!((s.ids[0], *s.ids.last().expect("nonempty")), (0, 2));
    let p = tok.encode("你好", Some("世界"), 16).expect("pair");
    // <s> A </s> </s> B </s>, every type id 0 (XLM-R template).
    assert!(p.type_ids.iter().all(|&t| t == 0));
    assert_eq!(p.ids.iter().filter(|&&i| i == 2).count(), 3);
    // Truncation counts the specials: pair of long texts cut to exactly max_len.
    let long = "很长的句子".repeat(50);
    let t = tok.encode(&long, Some(&long), 20).expect("truncated pair");
    assert_eq!(t.len(), 20);
    assert!(tok.encode("x", Some("y"), 4).is_err(), "4 specials leave no room");
}
