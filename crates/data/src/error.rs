//! The one error type of this crate. Every variant that stems from a file names it (and the
//! 1-based line where one applies) so that a user can fix the input without reading code.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while locating, reading or tokenizing inputs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory given by the user (flag, environment variable) does not exist.
    #[error("directory {} does not exist (or is not a directory)", path.display())]
    MissingDir { path: PathBuf },

    /// A model directory holds neither tokenizer file.
    #[error("no tokenizer.json or vocab.txt in {}", dir.display())]
    NoTokenizer { dir: PathBuf },

    /// A file could not be opened or read. The OS error is part of the message and deliberately not
    /// exposed as `source()`: error chains (anyhow's `{:#}`) would print it twice.
    #[error("cannot read {}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },

    /// A tokenizer file (tokenizer.json, vocab.txt, tokenizer_config.json) is malformed.
    #[error("malformed tokenizer file {}: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },

    /// A problem with one line (or, with `line: None`, the whole) of a data file.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Data { path: PathBuf, line: Option<usize>, message: String },

    /// The tokenizer failed on a text (should not happen with well-formed tokenizer files).
    #[error("tokenization of {what} failed: {message}")]
    Encode { what: String, message: String },

    /// `max_len` leaves no room for a single text token after the special tokens.
    #[error("max_len {max_len} is too small: the template adds {special} special tokens, so at least {} is needed", special + 1)]
    MaxLenTooSmall { max_len: usize, special: usize },

    /// Nothing was found at any of the places searched by the `paths` module.
    #[error("{what} not found; searched:\n{}\n{hint}", searched.iter().map(|p| format!("  {}", p.display())).collect::<Vec<_>>().join("\n"))]
    NotFound { what: &'static str, searched: Vec<PathBuf>, hint: String },

    /// Inconsistent caller-supplied configuration (e.g. labels required for a task without a label key).
    #[error("{0}")]
    Config(String),
}

impl Error {
    pub(crate) fn data(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Error::Data { path: path.into(), line: Some(line), message: message.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }
}
