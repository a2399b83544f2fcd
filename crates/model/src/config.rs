//! Model configuration read from a Hugging Face `config.json` (BERT or ERNIE 3.0).

use crate::ModelError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The encoder family, from `model_type`. Both share one architecture; ERNIE 3.0 may add task-type
/// embeddings and stores its weights under the `ernie.` prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    Bert,
    Ernie,
}

impl ModelType {
    /// The state-dict prefix HF uses for the encoder of `*ForSequenceClassification`.
    pub fn prefix(self) -> &'static str {
        match self {
            ModelType::Bert => "bert",
            ModelType::Ernie => "ernie",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub model_type: ModelType,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: String,
    pub hidden_dropout_prob: f32,
    pub attention_probs_dropout_prob: f32,
    pub initializer_range: f32,
    /// ERNIE 3.0: task-type embeddings are added to the input embeddings.
    pub use_task_id: bool,
    pub task_type_vocab_size: usize,
    pub pad_token_id: u32,
}

/// `layer_norm_eps` of a PaddleNLP ERNIE config that does not name one (see
/// [`ModelConfig::from_paddle_json`]).
pub const PADDLE_ERNIE_LAYER_NORM_EPS: f64 = 1e-5;

/// The raw JSON, every field optional so that missing ones get HF's defaults and wrong ones a clear error.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    max_position_embeddings: Option<usize>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    hidden_dropout_prob: Option<f32>,
    attention_probs_dropout_prob: Option<f32>,
    initializer_range: Option<f32>,
    use_task_id: Option<bool>,
    task_type_vocab_size: Option<usize>,
    pad_token_id: Option<u32>,
}

impl ModelConfig {
    /// A BERT encoder of this shape with HF `BertConfig`'s defaults for everything else (what a config.json
    /// that names only the shape means): type vocabulary 2, LayerNorm eps 1e-12, exact GELU, dropout 0.1,
    /// initializer range 0.02, no task-type embedding, pad id 0. Tests build small random models from it.
    pub fn bert(
        vocab_size: usize,
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
        max_position_embeddings: usize,
    ) -> Self {
        ModelConfig {
            model_type: ModelType::Bert,
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            max_position_embeddings,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            initializer_range: 0.02,
            use_task_id: false,
            task_type_vocab_size: 3,
            pad_token_id: 0,
        }
    }

    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json(&text).map_err(|msg| ModelError::Config { path: path.to_path_buf(), msg })
    }

    /// Parse and validate; the error is a message without the file name (the caller adds it).
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
        let model_type = match raw.model_type.as_deref() {
            Some("bert") | None => ModelType::Bert,
            Some("ernie") => ModelType::Ernie,
            Some(other) => return Err(format!("model_type {other:?} is not supported (bert or ernie)")),
        };
        let need = |v: Option<usize>, name: &str| v.ok_or_else(|| format!("missing required field {name:?}"));
        let defaults = ModelConfig::bert(
            need(raw.vocab_size, "vocab_size")?,
            need(raw.hidden_size, "hidden_size")?,
            need(raw.num_hidden_layers, "num_hidden_layers")?,
            need(raw.num_attention_heads, "num_attention_heads")?,
            need(raw.intermediate_size, "intermediate_size")?,
            raw.max_position_embeddings.unwrap_or(512),
        );
        let cfg = ModelConfig {
            model_type,
            type_vocab_size: raw.type_vocab_size.unwrap_or(defaults.type_vocab_size),
            layer_norm_eps: raw.layer_norm_eps.unwrap_or(defaults.layer_norm_eps),
            hidden_act: raw.hidden_act.unwrap_or_else(|| defaults.hidden_act.clone()),
            hidden_dropout_prob: raw.hidden_dropout_prob.unwrap_or(defaults.hidden_dropout_prob),
            attention_probs_dropout_prob: raw
                .attention_probs_dropout_prob
                .unwrap_or(defaults.attention_probs_dropout_prob),
            initializer_range: raw.initializer_range.unwrap_or(defaults.initializer_range),
            use_task_id: raw.use_task_id.unwrap_or(defaults.use_task_id),
            task_type_vocab_size: raw.task_type_vocab_size.unwrap_or(defaults.task_type_vocab_size),
            pad_token_id: raw.pad_token_id.unwrap_or(defaults.pad_token_id),
            ..defaults
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read a PaddleNLP config file (`config.json` or `model_config.json`); see [`Self::from_paddle_json`].
    pub fn from_paddle_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_paddle_json(&text).map_err(|msg| ModelError::Config { path: path.to_path_buf(), msg })
    }

    /// Parse a PaddleNLP ERNIE config: the newer `config.json` (`ErnieConfig` fields at the top level) or
    /// the older `model_config.json` (`{"init_args": [{...}], "init_class": "ErnieModel"}`, nested once
    /// more for a fine-tuned `ErnieForSequenceClassification`).
    ///
    /// The published ERNIE 3.0 files name `vocab_size`, `hidden_size`, `num_hidden_layers`,
    /// `num_attention_heads` (required here), and `hidden_act`, the dropouts, `initializer_range`,
    /// `max_position_embeddings`, `type_vocab_size`, `task_type_vocab_size`, `use_task_id`; base omits
    /// `intermediate_size` (PaddleNLP's default, 3072, is used), and none has `layer_norm_eps` or
    /// `pad_token_id`. Defaults are PaddleNLP's (`intermediate_size` 3072, `hidden_act` gelu, dropouts 0.1,
    /// `max_position_embeddings` 512, `task_type_vocab_size` 3, `pad_token_id` 0; `type_vocab_size` and
    /// `use_task_id` 16 / true for `ErnieConfig`, 2 / false for the older `ErnieModel` arguments) except
    /// `layer_norm_eps`: 1e-5 when absent. PaddleNLP builds ERNIE's LayerNorms with Paddle's default
    /// epsilon 1e-5 and then its `init_weights` hook sets them to 1e-12, whatever the config says; the HF
    /// conversions of these weights (nghuyong/ernie-3.0-*-zh, converted by ERNIE-Pytorch's `convert.py`)
    /// write `layer_norm_eps: 1e-05`, and ernie-ft follows them, so that a PaddleNLP directory and its
    /// published HF conversion are the same model. A `layer_norm_eps` in the file is honoured. A
    /// non-zero `task_id` (the task type PaddleNLP uses when none is given) or another `pool_act` than
    /// tanh is an error, as is `fuse: true` (fused attention weights).
    pub fn from_paddle_json(text: &str) -> Result<Self, String> {
        use serde_json::Value;
        let v: Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
        let mut obj = v.as_object().ok_or("not a JSON object")?;
        let mut old_style = obj.contains_key("init_class");
        // model_config.json: {"init_args": [{...}], "init_class": ...}, possibly nested (task model > ErnieModel).
        for _ in 0..2 {
            let Some(args) = obj.get("init_args") else { break };
            old_style = true;
            let first = args.as_array().and_then(|a| a.first()).ok_or("init_args is not a non-empty list")?;
            obj = first.as_object().ok_or("init_args[0] is not a JSON object")?;
        }
        let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
        let uint = |k: &str| -> Result<Option<usize>, String> {
            get(k)
                .map(|v| {
                    v.as_u64().map(|x| x as usize).ok_or_else(|| format!("{k:?} is {v}, not a non-negative integer"))
                })
                .transpose()
        };
        let float = |k: &str| -> Result<Option<f64>, String> {
            get(k).map(|v| v.as_f64().ok_or_else(|| format!("{k:?} is {v}, not a number"))).transpose()
        };
        let boolean = |k: &str| -> Result<Option<bool>, String> {
            get(k).map(|v| v.as_bool().ok_or_else(|| format!("{k:?} is {v}, not true or false"))).transpose()
        };
        let string = |k: &str| -> Result<Option<String>, String> {
            get(k)
                .map(|v| v.as_str().map(String::from).ok_or_else(|| format!("{k:?} is {v}, not a string")))
                .transpose()
        };
        let need = |k: &str| -> Result<usize, String> { uint(k)?.ok_or_else(|| format!("missing required key {k:?}")) };
        if let Some(t) = string("model_type")? {
            if t != "ernie" {
                return Err(format!("model_type {t:?}: not a PaddleNLP ERNIE config"));
            }
        }
        if let Some(id) = uint("task_id")? {
            if id != 0 {
                return Err(format!("task_id {id} is not supported (ernie-ft, like HF, feeds task type 0)"));
            }
        }
        if let Some(act) = string("pool_act")? {
            if act != "tanh" {
                return Err(format!("pool_act {act:?} is not supported (tanh)"));
            }
        }
        if boolean("fuse")? == Some(true) {
            return Err("fuse: true (fused attention weights) is not supported".into());
        }
        let cfg = ModelConfig {
            model_type: ModelType::Ernie,
            vocab_size: need("vocab_size")?,
            hidden_size: need("hidden_size")?,
            num_hidden_layers: need("num_hidden_layers")?,
            num_attention_heads: need("num_attention_heads")?,
            intermediate_size: uint("intermediate_size")?.unwrap_or(3072),
            max_position_embeddings: uint("max_position_embeddings")?.unwrap_or(512),
            type_vocab_size: uint("type_vocab_size")?.unwrap_or(if old_style { 2 } else { 16 }),
            layer_norm_eps: float("layer_norm_eps")?.unwrap_or(PADDLE_ERNIE_LAYER_NORM_EPS),
            hidden_act: string("hidden_act")?.unwrap_or_else(|| "gelu".into()),
            hidden_dropout_prob: float("hidden_dropout_prob")?.unwrap_or(0.1) as f32,
            attention_probs_dropout_prob: float("attention_probs_dropout_prob")?.unwrap_or(0.1) as f32,
            initializer_range: float("initializer_range")?.unwrap_or(0.02) as f32,
            use_task_id: boolean("use_task_id")?.unwrap_or(!old_style),
            task_type_vocab_size: uint("task_type_vocab_size")?.unwrap_or(3),
            pad_token_id: uint("pad_token_id")?.unwrap_or(0) as u32,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} must be a positive multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        // HF's "gelu" is the exact erf form; the tanh approximations are different functions.
        if self.hidden_act != "gelu" {
            return Err(format!("hidden_act {:?} is not supported (only the exact \"gelu\")", self.hidden_act));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            ("attention_probs_dropout_prob", self.attention_probs_dropout_prob),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} {p} must be in [0, 1)"));
            }
        }
        Ok(())
    }

    /// The first field whose value differs between `self` and `other`, as `field self-value vs
    /// other-value` (e.g. `hidden_size 384 vs 256`), for messages; `None` when the configs are equal.
    pub fn difference(&self, other: &ModelConfig) -> Option<String> {
        if self == other {
            return None;
        }
        let (a, b) = (self.fields(), other.fields());
        a.iter()
            .zip(&b)
            .find(|(x, y)| x.1 != y.1)
            .map(|((name, x), (_, y))| format!("{name} {x} vs {y}"))
            // Equal as text yet unequal (NaN): nothing more precise to say.
            .or_else(|| Some("the model configs differ".into()))
    }

    /// Every field with its value as text, in declaration order.
    fn fields(&self) -> [(&'static str, String); 16] {
        // Destructured so that a new field cannot be forgotten here.
        let ModelConfig {
            model_type,
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            max_position_embeddings,
            type_vocab_size,
            layer_norm_eps,
            hidden_act,
            hidden_dropout_prob,
            attention_probs_dropout_prob,
            initializer_range,
            use_task_id,
            task_type_vocab_size,
            pad_token_id,
        } = self;
        [
            ("model_type", model_type.prefix().to_string()),
            ("vocab_size", vocab_size.to_string()),
            ("hidden_size", hidden_size.to_string()),
            ("num_hidden_layers", num_hidden_layers.to_string()),
            ("num_attention_heads", num_attention_heads.to_string()),
            ("intermediate_size", intermediate_size.to_string()),
            ("max_position_embeddings", max_position_embeddings.to_string()),
            ("type_vocab_size", type_vocab_size.to_string()),
            ("layer_norm_eps", format!("{layer_norm_eps:e}")),
            ("hidden_act", hidden_act.clone()),
            ("hidden_dropout_prob", hidden_dropout_prob.to_string()),
            ("attention_probs_dropout_prob", attention_probs_dropout_prob.to_string()),
            ("initializer_range", initializer_range.to_string()),
            ("use_task_id", use_task_id.to_string()),
            ("task_type_vocab_size", task_type_vocab_size.to_string()),
            ("pad_token_id", pad_token_id.to_string()),
        ]
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The config as HF writes it (what a saved checkpoint carries).
    pub fn to_hf_json(&self, num_labels: usize) -> serde_json::Value {
        let mut v = serde_json::json!({
            "architectures": [if self.model_type == ModelType::Bert { "BertForSequenceClassification" } else { "ErnieForSequenceClassification" }],
            "model_type": self.model_type.prefix(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_act": self.hidden_act,
            "hidden_dropout_prob": self.hidden_dropout_prob,
            "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
            "initializer_range": self.initializer_range,
            "pad_token_id": self.pad_token_id,
            "num_labels": num_labels,
        });
        if self.model_type == ModelType::Ernie {
            v["use_task_id"] = self.use_task_id.into();
            v["task_type_vocab_size"] = self.task_type_vocab_size.into();
        }
        v
    }
}
