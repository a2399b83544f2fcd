//! Text -> token ids for BERT-family encoders.
//!
//! Two kinds of model directories are supported:
//! * `tokenizer.json` (HuggingFace `tokenizers` format, e.g. e5 / XLM-R sentencepiece models), used as is;
//! * `vocab.txt` (BERT / ERNIE WordPiece), for which the standard BERT pipeline is rebuilt here.
//!
//! Truncation is done here rather than through the tokenizer's own settings so that one loaded tokenizer
//! can serve any `max_len` from many threads at once (the `tokenizers` truncation setting needs `&mut`).
//!
//! Padding id: the `padding.pad_id` of `tokenizer.json` if configured, else the id of `<pad>`, else of
//! `[PAD]`, else 0.

use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::utils::truncation::truncate_encodings;
use tokenizers::{
    AddedToken, Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::error::{Error, Result};

/// File names looked up in a model directory, in order of preference.
pub const TOKENIZER_JSON: &str = "tokenizer.json";
pub const VOCAB_TXT: &str = "vocab.txt";
/// Optional HF companion of `vocab.txt`; only its `do_lower_case` is honoured.
pub const TOKENIZER_CONFIG_JSON: &str = "tokenizer_config.json";

/// The token ids of one (possibly pair) input, special tokens included, not padded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Which file a [`TextTokenizer`] was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// `tokenizer.json`, used unchanged (its own template decides type ids).
    TokenizerJson,
    /// `vocab.txt`, BERT WordPiece pipeline with `[CLS] A [SEP] B [SEP]`, type ids 0 / 1.
    WordPieceVocab,
}

/// A loaded tokenizer; cheap to share between threads (`&self` everywhere).
pub struct TextTokenizer {
    inner: Tokenizer,
    kind: TokenizerKind,
    source: PathBuf,
    pad_id: u32,
    cls_id: u32,
    special_single: usize,
    special_pair: usize,
}

impl fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("source", &self.source)
            .field("kind", &self.kind)
            .field("vocab_size", &self.vocab_size())
            .field("pad_id", &self.pad_id)
            .field("cls_id", &self.cls_id)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads `dir/tokenizer.json` if present, else builds a WordPiece tokenizer from `dir/vocab.txt`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::MissingDir { path: dir.to_path_buf() });
        }
        let json = dir.join(TOKENIZER_JSON);
        if json.is_file() {
            return Self::from_tokenizer_json(&json);
        }
        let vocab = dir.join(VOCAB_TXT);
        if vocab.is_file() {
            let config = dir.join(TOKENIZER_CONFIG_JSON);
            let lowercase = if config.is_file() { read_do_lower_case(&config)?.unwrap_or(true) } else { true };
            return Self::from_vocab_txt(&vocab, lowercase);
        }
        Err(Error::NoTokenizer { dir: dir.to_path_buf() })
    }

    /// Loads a HuggingFace `tokenizer.json`. Its truncation and padding settings are dropped
    /// (truncation is per call, padding per batch); its padding id, if any, is kept as [`Self::pad_id`].
    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut inner = Tokenizer::from_bytes(&bytes).map_err(|e| malformed(path, e))?;
        let configured_pad = inner.get_padding().map(|p| p.pad_id);
        inner.with_truncation(None).map_err(|e| malformed(path, e))?;
        inner.with_padding(None);
        Self::finish(inner, TokenizerKind::TokenizerJson, path, configured_pad)
    }

    /// Builds the BERT/ERNIE WordPiece pipeline (BertNormalizer with Chinese-char splitting,
    /// BertPreTokenizer, WordPiece with `[UNK]` and `##`) from a `vocab.txt` (one token per line, id = line index).
    pub fn from_vocab_txt(path: &Path, lowercase: bool) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        if let Err(e) = std::str::from_utf8(bytes) {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(Error::Tokenizer {
                path: path.to_path_buf(),
                message: format!("line {line} is not valid UTF-8"),
            });
        }
        let untabbed;
        let bytes = if bytes.contains(&b'\t') {
            untabbed = strip_tab_ids(path, bytes)?;
            &untabbed[..]
        } else {
            bytes
        };
        let vocab = WordPiece::read_bytes(bytes).map_err(|e| malformed(path, e))?;
        for required in ["[UNK]", "[CLS]", "[SEP]"] {
            if !vocab.contains_key(required) {
                return Err(Error::Tokenizer {
                    path: path.to_path_buf(),
                    message: format!("the vocabulary has no {required} token"),
                });
            }
        }
        let specials: Vec<AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .into_iter()
            .filter(|t| vocab.contains_key(*t))
            .map(|t| AddedToken::from(t, true))
            .collect();
        let (cls, sep) = (vocab["[CLS]"], vocab["[SEP]"]);
        let model = WordPiece::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .continuing_subword_prefix("##".into())
            .build()
            .map_err(|e| malformed(path, e))?;
        let template = TemplateProcessing::builder()
            .try_single("[CLS]:0 $A:0 [SEP]:0")
            .and_then(|b| b.try_pair("[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1"))
            .map_err(|e| malformed(path, e))?
            .special_tokens(vec![("[CLS]", cls), ("[SEP]", sep)])
            .build()
            .map_err(|e| malformed(path, e))?;
        let mut inner = Tokenizer::new(model);
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(template))
            .with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
        inner.add_special_tokens(&specials);
        Self::finish(inner, TokenizerKind::WordPieceVocab, path, None)
    }

    fn finish(inner: Tokenizer, kind: TokenizerKind, path: &Path, configured_pad: Option<u32>) -> Result<Self> {
        let pad_id =
            configured_pad.or_else(|| inner.token_to_id("<pad>")).or_else(|| inner.token_to_id("[PAD]")).unwrap_or(0);
        let (special_single, special_pair) =
            inner.get_post_processor().map_or((0, 0), |p| (p.added_tokens(false), p.added_tokens(true)));
        // The CLS id is whatever special token the template puts first; fall back to the usual names.
        let from_template = inner.post_process(Encoding::default(), None, true).ok().and_then(|e| {
            match (e.get_ids().first(), e.get_special_tokens_mask().first()) {
                (Some(&id), Some(1)) => Some(id),
                _ => None,
            }
        });
        let cls_id = from_template
            .or_else(|| inner.token_to_id("[CLS]"))
            .or_else(|| inner.token_to_id("<s>"))
            .ok_or_else(|| Error::Tokenizer {
                path: path.to_path_buf(),
                message: "cannot tell the CLS token: the template adds no leading special token \
                          and there is no [CLS] or <s> in the vocabulary"
                    .into(),
            })?;
        Ok(Self { inner, kind, source: path.to_path_buf(), pad_id, cls_id, special_single, special_pair })
    }

    /// Id written into padded positions (see the module docs for how it is chosen).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Id of the token at position 0 of every encoding (`[CLS]` / `<s>`), read by the pooler.
    pub fn cls_id(&self) -> u32 {
        self.cls_id
    }

    /// Number of distinct tokens including added ones. Ids are always `< vocab_size()` for
    /// well-formed files; a `vocab.txt` with duplicate lines has gaps (ids go up to its line count).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The file this tokenizer was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of special tokens the template adds around one text (`pair = false`) or two.
    pub fn num_special_tokens(&self, pair: bool) -> usize {
        if pair {
            self.special_pair
        } else {
            self.special_single
        }
    }

    /// Encodes one text or a pair with special tokens, truncating `longest_first` so that the
    /// total length, special tokens included, is at most `max_len`. No padding.
    pub fn encode(&self, first: &str, second: Option<&str>, max_len: usize) -> Result<Encoded> {
        let special = self.num_special_tokens(second.is_some());
        if max_len <= special {
            return Err(Error::MaxLenTooSmall { max_len, special });
        }
        let a = self.encode_plain(first)?;
        let b = second.map(|s| self.encode_plain(s)).transpose()?;
        let params = TruncationParams {
            direction: TruncationDirection::Right,
            max_length: max_len - special,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        };
        let (a, b) = truncate_encodings(a, b, &params).map_err(|e| encode_error(first, e))?;
        let enc = self.inner.post_process(a, b, true).map_err(|e| encode_error(first, e))?;
        Ok(Encoded { ids: enc.get_ids().to_vec(), type_ids: enc.get_type_ids().to_vec() })
    }

    /// [`Self::encode`] over many inputs in parallel (rayon); output order = input order.
    pub fn encode_batch(&self, inputs: &[(String, Option<String>)], max_len: usize) -> Result<Vec<Encoded>> {
        inputs.par_iter().map(|(a, b)| self.encode(a, b.as_deref(), max_len)).collect()
    }

    /// Tokens of one text without special tokens or truncation.
    fn encode_plain(&self, text: &str) -> Result<Encoding> {
        self.inner.encode(text, false).map_err(|e| encode_error(text, e))
    }
}

fn malformed(path: &Path, e: impl fmt::Display) -> Error {
    Error::Tokenizer { path: path.to_path_buf(), message: e.to_string() }
}

fn encode_error(text: &str, e: impl fmt::Display) -> Error {
    let mut what: String = text.chars().take(40).collect();
    if what.len() < text.len() {
        what.push('…');
    }
    Error::Encode { what: format!("{what:?}"), message: e.to_string() }
}

/// PaddleNLP / ERNIE 1.0 vocabularies write `token<TAB>id` lines, the id being the line number: keep the
/// tokens (an id that is not the line number is an error: the ids would not be what the model was trained
/// with).
fn strip_tab_ids(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let token = match line.iter().position(|&b| b == b'\t') {
            Some(t) => {
                let id = std::str::from_utf8(&line[t + 1..]).ok().and_then(|s| s.trim().parse::<usize>().ok());
                if id != Some(i) {
                    return Err(Error::Tokenizer {
                        path: path.to_path_buf(),
                        message: format!("line {}: a token<TAB>id line whose id is not the line's index {i}", i + 1),
                    });
                }
                &line[..t]
            }
            None => line,
        };
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(token);
    }
    Ok(out)
}

/// `do_lower_case` from a HF `tokenizer_config.json` (cased BERT vocabularies set it to false).
fn read_do_lower_case(path: &Path) -> Result<Option<bool>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| malformed(path, e))?;
    Ok(value.get("do_lower_case").and_then(serde_json::Value::as_bool))
}
