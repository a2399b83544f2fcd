//! Checkpoint formats: which files of a model directory hold the weights and the config, and reading the
//! weights of each format into one table of stored tensors under their HF names.
//!
//! | weights file | format | config |
//! |---|---|---|
//! | `model.safetensors` | HF safetensors | HF `config.json` |
//! | `pytorch_model.bin` | PyTorch `torch.save` state dict: zip archive, or the legacy pre-1.6 format ([`pytorch`]) | HF `config.json` |
//! | `model_state.pdparams` | PaddleNLP `paddle.save` state dict: a pickled dict of numpy arrays, Paddle names, `Linear` weights stored `[in, out]` ([`paddle`]) | PaddleNLP `config.json`, else `model_config.json` |
//!
//! A directory with several is read from the first in this order. The two pickle formats are read by
//! [`pickle`], which rebuilds tensors and arrays and executes nothing.

pub mod convert;
pub mod paddle;
pub mod pickle;
pub mod pytorch;

use crate::config::ModelConfig;
use crate::ModelError;
use ernie_backend::dtype::DType;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How the weights of a model directory are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsFormat {
    Safetensors,
    PytorchBin,
    PaddleParams,
}

impl WeightsFormat {
    /// In order of preference.
    pub const ALL: [WeightsFormat; 3] =
        [WeightsFormat::Safetensors, WeightsFormat::PytorchBin, WeightsFormat::PaddleParams];

    pub fn file_name(self) -> &'static str {
        match self {
            WeightsFormat::Safetensors => "model.safetensors",
            WeightsFormat::PytorchBin => "pytorch_model.bin",
            WeightsFormat::PaddleParams => "model_state.pdparams",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            WeightsFormat::Safetensors => "HF safetensors",
            WeightsFormat::PytorchBin => "PyTorch state dict",
            WeightsFormat::PaddleParams => "PaddleNLP state dict",
        }
    }
}

/// Which dialect a config file is read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigStyle {
    /// HF transformers' `config.json`.
    HuggingFace,
    /// PaddleNLP's `config.json` (ErnieConfig) or older `model_config.json` (`init_args`).
    PaddleNlp,
}

/// The files that define a model directory: its weights and its config.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub format: WeightsFormat,
    pub weights: PathBuf,
    pub config: PathBuf,
    pub config_style: ConfigStyle,
}

impl ModelFiles {
    /// Find the weights ([`WeightsFormat::ALL`] order) and the config that goes with them. Errors name the
    /// directory and the files looked for: the config first (as before the other formats existed), then
    /// the weights.
    pub fn detect(dir: &Path) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::Missing { path: dir.to_path_buf(), what: "model directory" });
        }
        let format = WeightsFormat::ALL.into_iter().find(|f| dir.join(f.file_name()).is_file());
        let hf_config = dir.join("config.json");
        let Some(format) = format else {
            if !hf_config.is_file() && !dir.join("model_config.json").is_file() {
                return Err(ModelError::Missing { path: hf_config, what: "config.json" });
            }
            return Err(ModelError::Missing {
                path: dir.to_path_buf(),
                what: "weights file (model.safetensors, pytorch_model.bin or model_state.pdparams)",
            });
        };
        let (config, config_style) = match format {
            WeightsFormat::PaddleParams => {
                let old = dir.join("model_config.json");
                if hf_config.is_file() {
                    (hf_config, ConfigStyle::PaddleNlp)
                } else if old.is_file() {
                    (old, ConfigStyle::PaddleNlp)
                } else {
                    return Err(ModelError::Missing {
                        path: dir.to_path_buf(),
                        what: "config.json or model_config.json (PaddleNLP config)",
                    });
                }
            }
            _ if hf_config.is_file() => (hf_config, ConfigStyle::HuggingFace),
            _ => return Err(ModelError::Missing { path: hf_config, what: "config.json" }),
        };
        Ok(ModelFiles { dir: dir.to_path_buf(), format, weights: dir.join(format.file_name()), config, config_style })
    }

    pub fn read_config(&self) -> Result<ModelConfig, ModelError> {
        match self.config_style {
            ConfigStyle::HuggingFace => ModelConfig::from_file(&self.config),
            ConfigStyle::PaddleNlp => ModelConfig::from_paddle_file(&self.config),
        }
    }
}

/// One tensor as stored in a checkpoint file, its bytes little-endian and in C order.
#[derive(Clone, Debug)]
pub struct Stored<'a> {
    /// Its name in the file (what messages name).
    pub name: String,
    /// `Err(description)` for a dtype ernie-ft does not load (only an error if the tensor is used).
    pub dtype: Result<DType, String>,
    /// Its shape in the file.
    pub shape: Vec<usize>,
    pub bytes: Cow<'a, [u8]>,
    /// Stored as the transpose of the HF layout (Paddle `Linear` weights are `[in, out]`).
    pub transposed: bool,
}

impl Stored<'_> {
    /// The shape under the HF layout.
    pub fn hf_shape(&self) -> Vec<usize> {
        if self.transposed {
            self.shape.iter().rev().copied().collect()
        } else {
            self.shape.clone()
        }
    }
}

/// A checkpoint's tensors under their HF names (`ernie.encoder.layer.0...`, or the file's own names for
/// HF-named formats).
#[derive(Debug, Default)]
pub struct TensorTable<'a> {
    pub tensors: BTreeMap<String, Stored<'a>>,
    /// Whether the names are the file's own (HF formats: a name may carry any prefix the loader accepts).
    pub hf_named: bool,
}

impl<'a> TensorTable<'a> {
    pub fn insert(&mut self, hf_name: String, t: Stored<'a>) -> Result<(), String> {
        if let Some(prev) = self.tensors.get(&hf_name) {
            return Err(format!("tensors {} and {} are both {hf_name}", prev.name, t.name));
        }
        self.tensors.insert(hf_name, t);
        Ok(())
    }
}

/// Names in HF-named checkpoints that are not parameters and are skipped: pre-training heads (`cls.*`,
/// `lm_head.*`) and index buffers older HF versions saved (`*.position_ids`, `*.token_type_ids`).
pub fn ignorable_hf_name(name: &str) -> bool {
    name.starts_with("cls.")
        || name.starts_with("lm_head.")
        || name.ends_with(".position_ids")
        || name.ends_with(".token_type_ids")
}

/// Read the weights file of `files` (whose bytes are `bytes`) into a table.
pub fn read_tensors<'a>(files: &ModelFiles, bytes: &'a [u8]) -> Result<TensorTable<'a>, ModelError> {
    let path = &files.weights;
    let err = |msg: String| ModelError::Checkpoint { path: path.clone(), msg };
    match files.format {
        WeightsFormat::Safetensors => read_safetensors(path, bytes),
        WeightsFormat::PytorchBin => {
            let mut table = TensorTable { tensors: BTreeMap::new(), hf_named: true };
            for t in pytorch::read(bytes).map_err(err)? {
                let name = t.name.clone();
                table.insert(name, t).map_err(err)?;
            }
            Ok(table)
        }
        WeightsFormat::PaddleParams => paddle::read(bytes).map_err(err),
    }
}

pub(crate) fn read_safetensors<'a>(path: &Path, bytes: &'a [u8]) -> Result<TensorTable<'a>, ModelError> {
    use safetensors::tensor::Dtype as StDtype;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| ModelError::Checkpoint {
        path: path.to_path_buf(),
        msg: format!("not a valid safetensors file: {e}"),
    })?;
    let mut table = TensorTable { tensors: BTreeMap::new(), hf_named: true };
    for (name, t) in st.tensors() {
        let dtype = match t.dtype() {
            StDtype::F16 => Ok(DType::F16),
            StDtype::BF16 => Ok(DType::BF16),
            StDtype::F32 => Ok(DType::F32),
            StDtype::F64 => Ok(DType::F64),
            other => Err(format!("{other:?}")),
        };
        let stored = Stored {
            name: name.clone(),
            dtype,
            shape: t.shape().to_vec(),
            bytes: Cow::Borrowed(t.data()),
            transposed: false,
        };
        table.tensors.insert(name, stored);
    }
    Ok(table)
}

/// The elements of a strided view, copied into C order: `size` and `stride` in elements of `elem`
/// bytes, from `offset` elements into `storage`. Bounds are checked (a bad header cannot read outside
/// the storage).
pub(crate) fn gather(
    storage: &[u8],
    elem: usize,
    offset: usize,
    size: &[usize],
    stride: &[usize],
) -> Result<Vec<u8>, String> {
    if size.len() != stride.len() {
        return Err(format!("{} sizes but {} strides", size.len(), stride.len()));
    }
    let numel = size.iter().try_fold(1usize, |a, &s| a.checked_mul(s)).ok_or("the shape overflows")?;
    let have = storage.len() / elem;
    if numel == 0 {
        return Ok(vec![]);
    }
    let last =
        size.iter().zip(stride).try_fold(offset, |a, (&s, &st)| (s - 1).checked_mul(st).and_then(|x| a.checked_add(x)));
    match last {
        Some(l) if l < have => {}
        _ => {
            return Err(format!(
            "the view (offset {offset}, size {size:?}, stride {stride:?}) reaches past its storage of {have} elements"
        ))
        }
    }
    // C-contiguous: one copy.
    let mut expect = 1;
    let contiguous = size.iter().zip(stride).rev().all(|(&s, &st)| {
        let ok = s == 1 || st == expect;
        expect *= s;
        ok
    });
    if contiguous {
        return Ok(storage[offset * elem..(offset + numel) * elem].to_vec());
    }
    let mut out = Vec::with_capacity(numel * elem);
    let mut idx = vec![0usize; size.len()];
    for _ in 0..numel {
        let at = offset + idx.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        out.extend_from_slice(&storage[at * elem..(at + 1) * elem]);
        for d in (0..size.len()).rev() {
            idx[d] += 1;
            if idx[d] < size[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}

/// Reverse the byte order of each `elem`-byte element in place.
pub(crate) fn swap_bytes(data: &mut [u8], elem: usize) {
    if elem > 1 {
        data.chunks_exact_mut(elem).for_each(|c| c.reverse());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_handles_views() {
        let st: Vec<u8> = (0u8..12).collect();
        // [[0,1,2],[3,4,5]] transposed: size [3,2], stride [1,3].
        assert_eq!(gather(&st, 1, 0, &[3, 2], &[1, 3]).unwrap(), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(gather(&st, 2, 1, &[2, 2], &[2, 1]).unwrap(), vec![2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(gather(&st, 4, 0, &[0, 5], &[5, 1]).unwrap(), Vec::<u8>::new());
        assert!(gather(&st, 4, 1, &[3], &[1]).unwrap_err().contains("past its storage"));
        assert!(gather(&st, 1, 0, &[2], &[usize::MAX]).is_err());
    }
}
