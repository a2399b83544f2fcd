//! ernie-model: the BERT / ERNIE 3.0 encoder with its sequence-classification head. Config from HF
//! `config.json` (or PaddleNLP's), weights from HF safetensors, PyTorch `pytorch_model.bin` or PaddleNLP
//! `model_state.pdparams` (`bert.` / `ernie.` prefixes or bare; F32/F16/BF16; see [`formats`]), explicit
//! forward and backward written against [`ernie_backend::Backend`].

pub mod config;
pub mod encoder;
pub mod formats;
pub mod params;

pub use config::{ModelConfig, ModelType};
pub use encoder::{BackwardWants, Classified, Encoder, Forward, ForwardOpts, Grads, Inference, Tokens};
pub use params::{HeadInit, HostParams, ParamGroup, ParamSpec};

use std::path::{Path, PathBuf};

/// Errors that name the file and, where there is one, the tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {what} not found", path.display())]
    Missing { path: PathBuf, what: &'static str },
    /// The OS error is part of the message and deliberately not exposed as `source()`: error chains
    /// (anyhow's `{:#}`) would print it twice.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{}: bad model config: {msg}", path.display())]
    Config { path: PathBuf, msg: String },
    #[error("{}: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },
    #[error("{}: tensor {tensor} is missing", path.display())]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{}: tensor {tensor} has shape {found:?}, expected {expected:?}", path.display())]
    Shape { path: PathBuf, tensor: String, expected: Vec<usize>, found: Vec<usize> },
    /// A tensor that is no parameter of the model the config describes (another architecture, or a
    /// config that does not go with the weights).
    #[error("{}: unknown tensor {tensor}: not a parameter of this model ({model}); is the config the one these weights were saved with?", path.display())]
    UnknownTensor { path: PathBuf, tensor: String, model: String },
}

impl ModelError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io { path: path.to_path_buf(), err: source }
    }
}

/// Write a file atomically: a temporary file in the same directory, then a rename, so a crash never leaves
/// a partial file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ModelError::io(path, e)
    })
}
