//! Data side of ernie-ft: tokenizers for BERT-family encoders ([`tokenize`]), CLUE-style JSON-lines
//! readers (all built on [`JsonLines`]), label sets, batching ([`clue`]) and default locations of model and
//! data ([`paths`]).

pub mod clue;
pub mod error;
pub mod paths;
pub mod tokenize;

pub use clue::{
    count_nonblank_lines, json_kind, read_examples, resolve_labels, split_holdout, Batch, Dataset, Example, Item,
    JsonLine, JsonLines, LabelSet, LabelSource, TaskSpec,
};
pub use error::{Error, Result};
pub use paths::{resolve_data_dir, resolve_model_dir};
pub use tokenize::{Encoded, TextTokenizer, TokenizerKind};
