//! The BERT/ERNIE WordPiece path (`vocab.txt`) and tokenizer loading errors, on small files written here.

mod common;

use common::{vocab_dir, vocab_id as id, write};
use ernie_data::{Error, TextTokenizer, TokenizerKind};

fn tok() -> (tempfile::TempDir, TextTokenizer) {
    let dir = vocab_dir();
    let tok = TextTokenizer::from_dir(dir.path()).expect("vocab.txt tokenizer");
    (dir, tok)
}

fn ids(tokens: &[&str]) -> Vec<u32> {
    tokens.iter().map(|t| id(t)).collect()
}

#[test]
fn vocab_ids_and_special_tokens() {
    let (_d, t) = tok();
    assert_eq!(t.kind(), TokenizerKind::WordPieceVocab);
    assert_eq!(t.pad_id(), id("[PAD]"));
    assert_eq!(t.cls_id(), id("[CLS]"));
    assert_eq!(t.vocab_size(), common::VOCAB.len());
    assert_eq!((t.num_special_tokens(false), t.num_special_tokens(true)), (2, 3));
}

#[test]
fn chinese_chars_are_split_one_per_token() {
    let (_d, t) = tok();
    let e = t.encode("我爱北京天安门", None, 64).expect("encode");
    assert_eq!(e.ids, ids(&["[CLS]", "我", "爱", "北", "京", "天", "安", "门", "[SEP]"]));
    assert_eq!(e.type_ids, vec![0; 9]);
    // A char missing from the vocabulary becomes [UNK] on its own, not the whole run.
    let e = t.encode("我们爱", None, 64).expect("encode");
    assert_eq!(e.ids, ids(&["[CLS]", "我", "[UNK]", "爱", "[SEP]"]));
}

#[test]
fn wordpiece_lowercase_accents_punctuation() {
    let (_d, t) = tok();
    let e = t.encode("UnAffable Héllo,world!", None, 64).expect("encode");
    assert_eq!(e.ids, ids(&["[CLS]", "un", "##aff", "##able", "hello", ",", "world", "!", "[SEP]"]));
    // A word that cannot be assembled from pieces is a single [UNK].
    let e = t.encode("unxyz", None, 64).expect("encode");
    assert_eq!(e.ids, ids(&["[CLS]", "[UNK]", "[SEP]"]));
}

#[test]
fn special_token_text_is_kept_whole() {
    let (_d, t) = tok();
    let e = t.encode("我[SEP]爱", None, 64).expect("encode");
    assert_eq!(e.ids, ids(&["[CLS]", "我", "[SEP]", "爱", "[SEP]"]));
}

#[test]
fn pair_type_ids_are_0_then_1() {
    let (_d, t) = tok();
    let e = t.encode("我爱", Some("北京"), 64).expect("encode");
    assert_eq!(e.ids, ids(&["[CLS]", "我", "爱", "[SEP]", "北", "京", "[SEP]"]));
    assert_eq!(e.type_ids, vec![0, 0, 0, 0, 1, 1, 1]);
}

#[test]
fn truncation_longest_first_counts_special_tokens() {
    let (_d, t) = tok();
    // Single: 7 chars cut to max_len - 2.
    let e = t.encode("我爱北京天安门", None, 5).expect("encode");
    assert_eq!(e.ids, ids(&["[CLS]", "我", "爱", "北", "[SEP]"]));
    // Pair, only the long side is cut: 5 content tokens = 4 + 1.
    let e = t.encode("我爱北京天安门", Some("hello"), 8).expect("encode");
    assert_eq!(e.ids, ids(&["[CLS]", "我", "爱", "北", "京", "[SEP]", "hello", "[SEP]"]));
    assert_eq!(e.type_ids, vec![0, 0, 0, 0, 0, 0, 1, 1]);
    // Pair, both long: 6 content tokens = 3 + 3.
    let e = t.encode("我爱北京天安门", Some("天安门北京我爱"), 9).expect("encode");
    assert_eq!(e.ids, ids(&["[CLS]", "我", "爱", "北", "[SEP]", "天", "安", "门", "[SEP]"]));
    // Odd budget: the second text gets the extra token (HF behaviour).
    let e = t.encode("我爱北京天安门", Some("天安门北京我爱"), 8).expect("encode");
    assert_eq!(e.ids, ids(&["[CLS]", "我", "爱", "[SEP]", "天", "安", "门", "[SEP]"]));
    // No truncation when it fits exactly.
    let e = t.encode("我爱", Some("北京"), 7).expect("encode");
    assert_eq!(e.len(), 7);
}

#[test]
fn max_len_must_leave_room_for_text() {
    let (_d, t) = tok();
    let err = t.encode("我", None, 2).expect_err("no room");
    assert!(matches!(err, Error::MaxLenTooSmall { max_len: 2, special: 2 }), "{err}");
    assert!(t.encode("我", Some("爱"), 3).is_err());
    assert_eq!(t.encode("我", None, 3).expect("fits").len(), 3);
}

#[test]
fn encode_batch_equals_encode_in_order() {
    let (_d, t) = tok();
    let inputs: Vec<(String, Option<String>)> = (0..200)
        .map(|i| {
            let a = "我爱北京天安门".chars().cycle().skip(i % 7).take(1 + i % 11).collect();
            let b = (i % 3 == 0).then(|| "hello world".repeat(1 + i % 4));
            (a, b)
        })
        .collect();
    let batch = t.encode_batch(&inputs, 12).expect("batch");
    assert_eq!(batch.len(), inputs.len());
    for ((a, b), got) in inputs.iter().zip(&batch) {
        assert_eq!(got, &t.encode(a, b.as_deref(), 12).expect("encode"));
        assert!(got.len() <= 12);
    }
}

#[test]
fn tokenizer_config_can_turn_lowercasing_off() {
    let dir = vocab_dir();
    write(dir.path(), "tokenizer_config.json", r#"{"do_lower_case": false}"#);
    let t = TextTokenizer::from_dir(dir.path()).expect("tokenizer");
    let e = t.encode("Hello hello", None, 16).expect("encode");
    assert_eq!(e.ids, ids(&["[CLS]", "[UNK]", "hello", "[SEP]"]));
}

/// A tiny WordLevel tokenizer.json with its own truncation and padding settings.
fn word_level_json(with_cls: bool) -> String {
    let cls = if with_cls { r#", "<s>": 3"# } else { "" };
    format!(
        r#"{{"version": "1.0",
 "truncation": {{"direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": 0}},
 "padding": {{"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": null,
              "pad_id": 7, "pad_type_id": 0, "pad_token": "<x>"}},
 "added_tokens": [], "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}},
 "post_processor": null, "decoder": null,
 "model": {{"type": "WordLevel", "vocab": {{"<unk>": 0, "a": 1, "b": 2, "<x>": 7{cls}}}, "unk_token": "<unk>"}}}}"#
    )
}

#[test]
fn tokenizer_json_is_preferred_and_its_padding_id_used() {
    let dir = vocab_dir();
    write(dir.path(), "tokenizer.json", &word_level_json(true));
    let t = TextTokenizer::from_dir(dir.path()).expect("tokenizer.json");
    assert_eq!(t.kind(), TokenizerKind::TokenizerJson);
    assert_eq!(t.pad_id(), 7);
    assert_eq!(t.cls_id(), 3);
    // The file's own truncation (2) is ignored; only max_len counts.
    let e = t.encode("a b a b z", None, 100).expect("encode");
    assert_eq!(e.ids, vec![1, 2, 1, 2, 0]);
    assert_eq!(t.encode("a b a b z", None, 3).expect("encode").ids, vec![1, 2, 1]);
}

#[test]
fn tokenizer_json_without_cls_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "tokenizer.json", &word_level_json(false));
    let err = TextTokenizer::from_dir(dir.path()).expect_err("no CLS");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn missing_dir_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-model");
    let err = TextTokenizer::from_dir(&missing).expect_err("missing");
    assert!(matches!(err, Error::MissingDir { .. }));
    assert!(err.to_string().contains("no-such-model"), "{err}");
}

#[test]
fn empty_dir_says_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = TextTokenizer::from_dir(dir.path()).expect_err("empty");
    let msg = err.to_string();
    assert!(msg.contains("no tokenizer.json or vocab.txt in"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[test]
fn malformed_tokenizer_json_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "tokenizer.json", "{ not json");
    let err = TextTokenizer::from_dir(dir.path()).expect_err("malformed");
    assert!(matches!(err, Error::Tokenizer { .. }));
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn vocab_without_unk_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "vocab.txt", "[PAD]\n[CLS]\n[SEP]\n我\n");
    let err = TextTokenizer::from_dir(dir.path()).expect_err("no [UNK]");
    let msg = err.to_string();
    assert!(msg.contains("vocab.txt") && msg.contains("[UNK]"), "{msg}");
}

#[test]
fn vocab_not_utf8_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("vocab.txt"), b"[UNK]\n[CLS]\n\xff\xfe\n").expect("write");
    let err = TextTokenizer::from_dir(dir.path()).expect_err("bad utf-8");
    let msg = err.to_string();
    assert!(msg.contains("vocab.txt") && msg.contains("line 3"), "{msg}");
}

#[test]
fn vocab_with_bom_and_crlf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("\u{feff}{}\r\n", common::VOCAB.join("\r\n"));
    write(dir.path(), "vocab.txt", &text);
    let t = TextTokenizer::from_dir(dir.path()).expect("tokenizer");
    assert_eq!(t.pad_id(), 0);
    assert_eq!(t.encode("我", None, 8).expect("encode").ids, ids(&["[CLS]", "我", "[SEP]"]));
}

#[test]
fn malformed_tokenizer_config_is_named() {
    let dir = vocab_dir();
    write(dir.path(), "tokenizer_config.json", "{oops");
    let err = TextTokenizer::from_dir(dir.path()).expect_err("malformed config");
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
}

#[test]
fn paddlenlp_vocab_with_tab_ids_and_ernie_order() {
    // ERNIE's vocabularies put [PAD], [CLS], [SEP], [MASK] first and [UNK] later; PaddleNLP / ERNIE 1.0
    // files may write `token<TAB>id` lines. PaddleNLP's tokenizer_config.json names its own class.
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "我", "爱", "[UNK]", "hello"];
    let lines: Vec<String> = tokens.iter().enumerate().map(|(i, t)| format!("{t}\t{i}")).collect();
    write(dir.path(), "vocab.txt", &(lines.join("\r\n") + "\r\n"));
    write(
        dir.path(),
        "tokenizer_config.json",
        r#"{"do_lower_case": true, "tokenizer_class": "ErnieTokenizer", "unk_token": "[UNK]"}"#,
    );
    let t = TextTokenizer::from_dir(dir.path()).expect("tokenizer");
    assert_eq!((t.pad_id(), t.cls_id(), t.vocab_size()), (0, 1, tokens.len()));
    assert_eq!(t.encode("我爱HELLO北", None, 16).expect("encode").ids, vec![1, 4, 5, 7, 6, 2]);
    // An id that is not the line number is refused, naming the file and line.
    write(dir.path(), "vocab.txt", "[PAD]\t0\n[CLS]\t1\n[SEP]\t5\n[UNK]\t3\n");
    let err = TextTokenizer::from_dir(dir.path()).expect_err("bad ids").to_string();
    assert!(err.contains("vocab.txt") && err.contains("line 3"), "{err}");
}
