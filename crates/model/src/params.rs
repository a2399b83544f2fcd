//! The parameter list of a sequence-classification encoder, its checkpoint names, and checkpoint I/O.
//!
//! Parameters are kept as one ordered list (names, shapes, buffers) so that the optimizer, the strategies
//! (layer decay, averaging) and the checkpoint writer all walk the same thing.

use crate::config::{ModelConfig, ModelType};
use crate::formats::{self, ModelFiles, TensorTable};
use crate::ModelError;
use ernie_backend::dtype::{decode_f32, DType};
use ernie_backend::RngStream;
use safetensors::tensor::{Dtype as StDtype, TensorView};
use safetensors::SafeTensors;
use std::path::Path;

/// The part of the network a parameter belongs to (what layer decay assigns depths to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamGroup {
    /// Embedding tables and the embedding LayerNorm.
    Embeddings,
    /// Encoder layer `i` (0-based).
    Layer(usize),
    /// Pooler and classifier.
    Head,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// Name without the encoder prefix, e.g. `encoder.layer.0.attention.self.query.weight`, `classifier.bias`.
    pub name: String,
    pub shape: Vec<usize>,
    pub group: ParamGroup,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Biases and LayerNorm parameters get no weight decay (HF / PaddleNLP convention).
    pub fn weight_decay(&self) -> bool {
        !(self.name.ends_with(".bias") || self.name.contains("LayerNorm"))
    }
    /// Whether the parameter belongs to the task head (pooler, classifier) rather than the pretrained body.
    pub fn is_head(&self) -> bool {
        self.group == ParamGroup::Head
    }
    /// Its name in a HF `*ForSequenceClassification` state dict.
    pub fn hf_name(&self, model_type: ModelType) -> String {
        if self.name.starts_with("classifier.") {
            self.name.clone()
        } else {
            format!("{}.{}", model_type.prefix(), self.name)
        }
    }
}

/// Index of each parameter in the ordered list; the encoder uses these to find its weights.
pub mod idx {
    pub const WORD: usize = 0;
    pub const POS: usize = 1;
    pub const TYPE: usize = 2;
    /// Offsets inside a layer's block of [`super::LAYER_PARAMS`] parameters.
    pub const Q_W: usize = 0;
    pub const Q_B: usize = 1;
    pub const K_W: usize = 2;
    pub const K_B: usize = 3;
    pub const V_W: usize = 4;
    pub const V_B: usize = 5;
    pub const AO_W: usize = 6;
    pub const AO_B: usize = 7;
    pub const LN1_W: usize = 8;
    pub const LN1_B: usize = 9;
    pub const I_W: usize = 10;
    pub const I_B: usize = 11;
    pub const O_W: usize = 12;
    pub const O_B: usize = 13;
    pub const LN2_W: usize = 14;
    pub const LN2_B: usize = 15;
}

pub const LAYER_PARAMS: usize = 16;

/// Positions of the parameters in the ordered list for one config.
#[derive(Clone, Debug)]
pub struct ParamIndex {
    pub task: Option<usize>,
    pub emb_ln_w: usize,
    pub emb_ln_b: usize,
    pub layer0: usize,
    pub pooler_w: usize,
    pub pooler_b: usize,
    pub cls_w: usize,
    pub cls_b: usize,
}

impl ParamIndex {
    pub fn layer(&self, i: usize, off: usize) -> usize {
        self.layer0 + i * LAYER_PARAMS + off
    }
}

/// The ordered parameter list of a config with `num_labels` classes.
pub fn param_specs(cfg: &ModelConfig, num_labels: usize) -> (Vec<ParamSpec>, ParamIndex) {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let mut s = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, group: ParamGroup| {
        s.push(ParamSpec { name, shape, group });
        s.len() - 1
    };
    push("embeddings.word_embeddings.weight".into(), vec![cfg.vocab_size, h], ParamGroup::Embeddings);
    push("embeddings.position_embeddings.weight".into(), vec![cfg.max_position_embeddings, h], ParamGroup::Embeddings);
    push("embeddings.token_type_embeddings.weight".into(), vec![cfg.type_vocab_size, h], ParamGroup::Embeddings);
    let task = cfg.use_task_id.then(|| {
        push("embeddings.task_type_embeddings.weight".into(), vec![cfg.task_type_vocab_size, h], ParamGroup::Embeddings)
    });
    let emb_ln_w = push("embeddings.LayerNorm.weight".into(), vec![h], ParamGroup::Embeddings);
    let emb_ln_b = push("embeddings.LayerNorm.bias".into(), vec![h], ParamGroup::Embeddings);
    let layer0 = emb_ln_b + 1;
    for l in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{l}.");
        let group = ParamGroup::Layer(l);
        for (n, shape) in [
            ("attention.self.query.weight", vec![h, h]),
            ("attention.self.query.bias", vec![h]),
            ("attention.self.key.weight", vec![h, h]),
            ("attention.self.key.bias", vec![h]),
            ("attention.self.value.weight", vec![h, h]),
            ("attention.self.value.bias", vec![h]),
            ("attention.output.dense.weight", vec![h, h]),
            ("attention.output.dense.bias", vec![h]),
            ("attention.output.LayerNorm.weight", vec![h]),
            ("attention.output.LayerNorm.bias", vec![h]),
            ("intermediate.dense.weight", vec![i, h]),
            ("intermediate.dense.bias", vec![i]),
            ("output.dense.weight", vec![h, i]),
            ("output.dense.bias", vec![h]),
            ("output.LayerNorm.weight", vec![h]),
            ("output.LayerNorm.bias", vec![h]),
        ] {
            push(format!("{p}{n}"), shape, group);
        }
    }
    let pooler_w = push("pooler.dense.weight".into(), vec![h, h], ParamGroup::Head);
    let pooler_b = push("pooler.dense.bias".into(), vec![h], ParamGroup::Head);
    let cls_w = push("classifier.weight".into(), vec![num_labels, h], ParamGroup::Head);
    let cls_b = push("classifier.bias".into(), vec![num_labels], ParamGroup::Head);
    (s, ParamIndex { task, emb_ln_w, emb_ln_b, layer0, pooler_w, pooler_b, cls_w, cls_b })
}

/// Parameters on the host in f32, in [`param_specs`] order.
#[derive(Clone, Debug)]
pub struct HostParams {
    pub config: ModelConfig,
    pub num_labels: usize,
    pub specs: Vec<ParamSpec>,
    pub values: Vec<Vec<f32>>,
    /// Names of head parameters that were not in the checkpoint and were initialised from the head seed.
    pub initialised: Vec<String>,
}

/// How to fill head parameters the checkpoint lacks (e5 has no pooler; a pretrained body has no classifier).
#[derive(Clone, Copy, Debug)]
pub struct HeadInit {
    pub seed: u64,
    /// A classifier of another number of labels is replaced by a fresh one (fine-tuning a checkpoint
    /// trained on another task, like HF's `ignore_mismatched_sizes`) instead of being an error.
    pub replace_mismatched_classifier: bool,
}

impl HeadInit {
    /// Head parameters the checkpoint lacks come from `seed`; a mismatched classifier is an error.
    pub fn seed(seed: u64) -> Self {
        HeadInit { seed, replace_mismatched_classifier: false }
    }
}

fn st_dtype(d: StDtype) -> Option<DType> {
    match d {
        StDtype::F16 => Some(DType::F16),
        StDtype::BF16 => Some(DType::BF16),
        StDtype::F32 => Some(DType::F32),
        StDtype::F64 => Some(DType::F64),
        _ => None,
    }
}

/// Candidate names of a parameter in a checkpoint: HF prefixed, other family's prefix, or bare.
fn candidates(spec: &ParamSpec) -> Vec<String> {
    if spec.name.starts_with("classifier.") {
        return vec![spec.name.clone()];
    }
    vec![format!("bert.{}", spec.name), format!("ernie.{}", spec.name), spec.name.clone()]
}

/// [`candidates`], and for LayerNorm parameters the TF-era names `gamma` / `beta` that older HF
/// checkpoints (e.g. nghuyong's ERNIE conversions) use and HF transformers renames on loading.
fn candidates_with_aliases(spec: &ParamSpec) -> Vec<String> {
    let mut c = candidates(spec);
    let alias = if spec.name.ends_with("LayerNorm.weight") {
        Some(("weight", "gamma"))
    } else if spec.name.ends_with("LayerNorm.bias") {
        Some(("bias", "beta"))
    } else {
        None
    };
    if let Some((from, to)) = alias {
        let more: Vec<String> = c.iter().map(|n| format!("{}{to}", &n[..n.len() - from.len()])).collect();
        c.extend(more);
    }
    c
}

impl HostParams {
    /// Load a model directory: its config and weights in any of the formats of [`crate::formats`] (HF
    /// safetensors, PyTorch `pytorch_model.bin`, PaddleNLP `model_state.pdparams`).
    pub fn load_dir(dir: &Path, num_labels: usize, head: HeadInit) -> Result<Self, ModelError> {
        let files = ModelFiles::detect(dir)?;
        let config = files.read_config()?;
        Self::load_files(config, &files, num_labels, head)
    }

    /// Load the weights of `files` for `config`.
    pub fn load_files(
        config: ModelConfig,
        files: &ModelFiles,
        num_labels: usize,
        head: HeadInit,
    ) -> Result<Self, ModelError> {
        let path = &files.weights;
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let table = formats::read_tensors(files, &bytes)?;
        Self::from_table(config, path, &table, num_labels, head)
    }

    pub fn load_safetensors(
        config: ModelConfig,
        path: &Path,
        num_labels: usize,
        head: HeadInit,
    ) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let table = formats::read_safetensors(path, &bytes)?;
        Self::from_table(config, path, &table, num_labels, head)
    }

    /// Every parameter of `config` from `table` (read from `path`): shapes and dtypes checked, Paddle's
    /// transposed weights turned back, head parameters the table lacks initialised from the head seed,
    /// and a tensor that is no parameter of this model an error.
    pub fn from_table(
        config: ModelConfig,
        path: &Path,
        table: &TensorTable<'_>,
        num_labels: usize,
        head: HeadInit,
    ) -> Result<Self, ModelError> {
        let (specs, _) = param_specs(&config, num_labels);
        let mut values = Vec::with_capacity(specs.len());
        let mut initialised = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        let checkpoint = |msg: String| ModelError::Checkpoint { path: path.to_path_buf(), msg };
        for spec in &specs {
            let names = if table.hf_named { candidates_with_aliases(spec) } else { candidates(spec) };
            let found = names.iter().find_map(|n| table.tensors.get(n));
            used.extend(names.iter().filter(|n| table.tensors.contains_key(*n)).cloned());
            match found {
                Some(t)
                    if head.replace_mismatched_classifier
                        && spec.name.starts_with("classifier.")
                        && t.hf_shape() != spec.shape =>
                {
                    values.push(init_head_param(spec, head.seed, config.initializer_range));
                    initialised.push(format!("{} (checkpoint has {:?})", spec.name, t.hf_shape()));
                }
                Some(t) => {
                    if t.hf_shape() != spec.shape {
                        let expected =
                            if t.transposed { spec.shape.iter().rev().copied().collect() } else { spec.shape.clone() };
                        let tensor = if t.transposed {
                            format!("{} (stored [in, out], as Paddle's Linear)", t.name)
                        } else {
                            t.name.clone()
                        };
                        return Err(ModelError::Shape {
                            path: path.to_path_buf(),
                            tensor,
                            expected,
                            found: t.shape.clone(),
                        });
                    }
                    let dtype = t.dtype.as_ref().map_err(|d| {
                        checkpoint(format!("tensor {}: dtype {d} is not supported (F32, F16, BF16, F64)", t.name))
                    })?;
                    let v = decode_f32(*dtype, &t.bytes).map_err(|e| checkpoint(format!("tensor {}: {e}", t.name)))?;
                    if v.len() != spec.numel() {
                        return Err(checkpoint(format!(
                            "tensor {}: {} values for shape {:?}",
                            t.name,
                            v.len(),
                            t.shape
                        )));
                    }
                    values.push(if t.transposed { transpose(&v, spec.shape[1], spec.shape[0]) } else { v });
                }
                None if spec.is_head() => {
                    values.push(init_head_param(spec, head.seed, config.initializer_range));
                    initialised.push(spec.name.clone());
                }
                None => {
                    let tensor = match formats::paddle::paddle_name(&spec.name) {
                        Some(paddle) if !table.hf_named => format!("{paddle} (HF {})", spec.hf_name(config.model_type)),
                        _ => candidates(spec).join(" / "),
                    };
                    return Err(ModelError::MissingTensor { path: path.to_path_buf(), tensor });
                }
            }
        }
        if let Some(t) = table
            .tensors
            .iter()
            .find(|(n, _)| !(used.contains(*n) || table.hf_named && formats::ignorable_hf_name(n)))
            .map(|(_, t)| t)
        {
            return Err(ModelError::UnknownTensor {
                path: path.to_path_buf(),
                tensor: t.name.clone(),
                model: format!(
                    "{} layers, use_task_id {}, model_type {}",
                    config.num_hidden_layers,
                    config.use_task_id,
                    config.model_type.prefix()
                ),
            });
        }
        Ok(HostParams { config, num_labels, specs, values, initialised })
    }

    /// A model with every parameter drawn from `seed` (tests, speed benchmarks on random weights).
    pub fn random(config: ModelConfig, num_labels: usize, seed: u64) -> Self {
        let (specs, _) = param_specs(&config, num_labels);
        let values = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let rng = RngStream::new(seed, 0x5EED_0000 + i as u64);
                if s.name.contains("LayerNorm.weight") {
                    (0..s.numel()).map(|j| 1.0 + 0.1 * rng.normal(j as u64)).collect()
                } else if s.shape.len() == 1 {
                    (0..s.numel()).map(|j| 0.1 * rng.normal(j as u64)).collect()
                } else {
                    let std = if s.name.contains("embeddings") { 1.0 } else { 1.0 / (s.shape[1] as f32).sqrt() };
                    (0..s.numel()).map(|j| std * rng.normal(j as u64)).collect()
                }
            })
            .collect();
        HostParams { config, num_labels, specs, values, initialised: vec![] }
    }

    /// Replace parameters by those found in another safetensors file (e.g. a fixture's head weights).
    pub fn override_from(&mut self, path: &Path) -> Result<usize, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| ModelError::Checkpoint { path: path.to_path_buf(), msg: e.to_string() })?;
        let mut n = 0;
        for (i, spec) in self.specs.iter().enumerate() {
            for name in candidates(spec) {
                if let Ok(t) = st.tensor(&name) {
                    if t.shape() != spec.shape.as_slice() {
                        return Err(ModelError::Shape {
                            path: path.to_path_buf(),
                            tensor: name,
                            expected: spec.shape.clone(),
                            found: t.shape().to_vec(),
                        });
                    }
                    let dtype = st_dtype(t.dtype()).ok_or_else(|| ModelError::Checkpoint {
                        path: path.to_path_buf(),
                        msg: format!("tensor {name}: unsupported dtype"),
                    })?;
                    self.values[i] = decode_f32(dtype, t.data())
                        .map_err(|e| ModelError::Checkpoint { path: path.to_path_buf(), msg: e.to_string() })?;
                    self.initialised.retain(|x| x != &spec.name);
                    n += 1;
                    break;
                }
            }
        }
        Ok(n)
    }

    /// Write every parameter as F32 under its HF name (loadable by HF transformers), atomically.
    pub fn save_safetensors(
        &self,
        path: &Path,
        metadata: Option<std::collections::HashMap<String, String>>,
    ) -> Result<(), ModelError> {
        let bytes =
            self.safetensors_bytes(metadata).map_err(|msg| ModelError::Checkpoint { path: path.to_path_buf(), msg })?;
        crate::write_atomic(path, &bytes)
    }

    /// The safetensors file [`save_safetensors`](Self::save_safetensors) writes, in memory.
    pub fn safetensors_bytes(
        &self,
        metadata: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Vec<u8>, String> {
        let views: Vec<(String, TensorView)> = self
            .specs
            .iter()
            .zip(&self.values)
            .map(|(s, v)| {
                let view = TensorView::new(StDtype::F32, s.shape.clone(), bytemuck::cast_slice(v))
                    .expect("shape matches data");
                (s.hf_name(self.config.model_type), view)
            })
            .collect();
        safetensors::serialize(views, metadata).map_err(|e| e.to_string())
    }
}

/// `[rows, cols]` row-major into `[cols, rows]` (a stored `[in, out]` Paddle weight into HF's `[out, in]`).
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

/// Head parameters the checkpoint lacks: weights N(0, initializer_range), biases 0 (HF's init), drawn from
/// the head seed and the parameter's name only, so every run with the same head seed starts from the same
/// head (what parameter averaging needs) whatever its run seed.
pub fn init_head_param(spec: &ParamSpec, seed: u64, std: f32) -> Vec<f32> {
    if spec.shape.len() == 1 {
        return vec![0.0; spec.numel()];
    }
    let name_hash =
        spec.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let rng = RngStream::new(seed, name_hash);
    (0..spec.numel()).map(|j| std * rng.normal(j as u64)).collect()
}
