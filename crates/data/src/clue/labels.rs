//! The mapping label string <-> class index. It is part of a trained model (the classifier rows are in
//! this order), hence serializable.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{for_each_json_line, label_field, Example, TaskSpec};
use crate::error::{Error, Result};

/// The labels file looked for beside the training file (CLUE's name) when the task names none.
pub const DEFAULT_LABELS_FILE: &str = "labels.json";

/// Which rule of [`resolve_labels`] gave the label list; printable ("--labels FILE", ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelSource {
    /// (a) The file given with `--labels`.
    Explicit(PathBuf),
    /// (b) `labels.json` (the task's labels file name) beside the training file.
    BesideTrain(PathBuf),
    /// (c) The training file's labels, in order of first appearance.
    TrainFile(PathBuf),
}

impl fmt::Display for LabelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelSource::Explicit(p) => write!(f, "--labels {}", p.display()),
            LabelSource::BesideTrain(p) => write!(f, "{} (beside the training file)", p.display()),
            LabelSource::TrainFile(p) => {
                write!(f, "the labels of {} in order of first appearance", p.display())
            }
        }
    }
}

/// The label list of a training run, by one rule for every task: (a) `explicit` (the `--labels` file),
/// else (b) the task's labels file (`labels.json` unless the [`TaskSpec`] names another) beside
/// `train_file` when it exists, else (c) the labels of `train_examples` in order of first appearance.
/// Label files are JSON lines with the label under the task's label key (`"label"` if it has none).
///
/// With (a) or (b), every training example's label must be in the list: an unknown label is an error
/// naming the training file and line (never a silent extra class).
pub fn resolve_labels(
    explicit: Option<&Path>,
    train_file: &Path,
    spec: &TaskSpec,
    train_examples: &[Example],
) -> Result<(LabelSet, LabelSource)> {
    let key = spec.label_key.as_deref().unwrap_or("label");
    let beside = train_file
        .parent()
        .map(|d| d.join(spec.labels_file.as_deref().unwrap_or(DEFAULT_LABELS_FILE)))
        .filter(|p| p.is_file());
    let (set, source) = match (explicit, beside) {
        (Some(f), _) => (LabelSet::from_file(f, key)?, LabelSource::Explicit(f.to_path_buf())),
        (None, Some(p)) => (LabelSet::from_file(&p, key)?, LabelSource::BesideTrain(p)),
        (None, None) => {
            let set = LabelSet::from_examples(train_examples)?;
            return Ok((set, LabelSource::TrainFile(train_file.to_path_buf())));
        }
    };
    for ex in train_examples {
        let label = ex.label.as_deref().ok_or_else(|| Error::Data {
            path: ex.file.to_path_buf(),
            line: Some(ex.line),
            message: "example has no label".into(),
        })?;
        if !set.index.contains_key(label) {
            let hint = match &source {
                LabelSource::Explicit(_) => "",
                _ => "; give --labels FILE to use another list",
            };
            return Err(Error::Data {
                path: ex.file.to_path_buf(),
                line: Some(ex.line),
                message: format!("unknown label \"{label}\": not one of the {} labels of {source}{hint}", set.len()),
            });
        }
    }
    Ok((set, source))
}

/// Ordered, duplicate-free list of labels; class index = position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LabelSetRepr", into = "LabelSetRepr")]
pub struct LabelSet {
    labels: Vec<String>,
    index: HashMap<String, u32>,
    /// Where the labels came from, for error messages.
    origin: String,
}

/// On-disk form: `{"labels": [...], "origin": "..."}`.
#[derive(Serialize, Deserialize)]
struct LabelSetRepr {
    labels: Vec<String>,
    #[serde(default)]
    origin: Option<String>,
}

impl TryFrom<LabelSetRepr> for LabelSet {
    type Error = Error;

    fn try_from(r: LabelSetRepr) -> Result<Self> {
        let origin = r.origin.unwrap_or_else(|| "a saved label set".into());
        Self::from_labels(r.labels, &origin)
    }
}

impl From<LabelSet> for LabelSetRepr {
    fn from(s: LabelSet) -> Self {
        Self { labels: s.labels, origin: Some(s.origin) }
    }
}

impl LabelSet {
    /// From an explicit list; `origin` says where it came from (shown in errors).
    pub fn from_labels(labels: Vec<String>, origin: &str) -> Result<Self> {
        let mut index = HashMap::with_capacity(labels.len());
        for (i, label) in labels.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| Error::Config(format!("too many labels in {origin}")))?;
            if index.insert(label.clone(), i).is_some() {
                return Err(Error::Config(format!("label \"{label}\" appears twice in {origin}")));
            }
        }
        if labels.is_empty() {
            return Err(Error::Config(format!("no labels in {origin}")));
        }
        Ok(Self { labels, index, origin: origin.into() })
    }

    /// From a JSON-lines label file (e.g. CLUE `labels.json`), label under `key`, in file order.
    pub fn from_file(path: &Path, key: &str) -> Result<Self> {
        let mut labels = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for_each_json_line(path, |line, obj| {
            let label = label_field(&obj, key)
                .map_err(|m| Error::data(path, line, m))?
                .ok_or_else(|| Error::data(path, line, format!("missing label key \"{key}\"")))?;
            if let Some(first) = seen.insert(label.clone(), line) {
                return Err(Error::data(path, line, format!("duplicate label \"{label}\" (first on line {first})")));
            }
            labels.push(label);
            Ok(())
        })?;
        Self::from_labels(labels, &path.display().to_string())
    }

    /// From (training) examples, in order of first appearance. Every example must have a label.
    pub fn from_examples(examples: &[Example]) -> Result<Self> {
        let mut labels: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for ex in examples {
            let label = ex.label.as_ref().ok_or_else(|| Error::Data {
                path: ex.file.to_path_buf(),
                line: Some(ex.line),
                message: "example has no label".into(),
            })?;
            if seen.insert(label.as_str()) {
                labels.push(label.clone());
            }
        }
        let origin = match examples.first() {
            Some(ex) => format!("the labels of {}", ex.file.display()),
            None => "an empty example list".into(),
        };
        Self::from_labels(labels, &origin)
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Labels in class-index order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Where the labels came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The label of class `index`.
    pub fn name(&self, index: u32) -> Option<&str> {
        self.labels.get(index as usize).map(String::as_str)
    }

    /// Class index of `label`. Prefer [`Self::index_of`] for examples: its error names their file and line.
    pub fn index(&self, label: &str) -> Result<u32> {
        self.index.get(label).copied().ok_or_else(|| {
            Error::Config(format!(
                "unknown label \"{label}\": not one of the {} labels from {}",
                self.len(),
                self.origin
            ))
        })
    }

    /// Class index of an example's label; the error names the example's file and line.
    pub fn index_of(&self, example: &Example) -> Result<u32> {
        let at = |message: String| Error::Data { path: example.file.to_path_buf(), line: Some(example.line), message };
        let label = example.label.as_deref().ok_or_else(|| at("example has no label".into()))?;
        self.index.get(label).copied().ok_or_else(|| {
            at(format!("unknown label \"{label}\": not one of the {} labels from {}", self.len(), self.origin))
        })
    }
}
