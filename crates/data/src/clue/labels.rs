//! The mapping label string <-> class index. It is part of a trained model (the classifier rows are in
//! this order), hence serializable.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{for_each_json_line, label_field, Example};
use crate::error::{Error, Result};

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
        Self {
            labels: s.labels,
            origin: Some(s.origin),
        }
    }
}

impl LabelSet {
    /// From an explicit list; `origin` says where it came from (shown in errors).
    pub fn from_labels(labels: Vec<String>, origin: &str) -> Result<Self> {
        let mut index = HashMap::with_capacity(labels.len());
        for (i, label) in labels.iter().enumerate() {
            let i = u32::try_from(i)
                .map_err(|_| Error::Config(format!("too many labels in {origin}")))?;
            if index.insert(label.clone(), i).is_some() {
                return Err(Error::Config(format!(
                    "label \"{label}\" appears twice in {origin}"
                )));
            }
        }
        if labels.is_empty() {
            return Err(Error::Config(format!("no labels in {origin}")));
        }
        Ok(Self {
            labels,
            index,
            origin: origin.into(),
        })
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
                return Err(Error::data(
                    path,
                    line,
                    format!("duplicate label \"{label}\" (first on line {first})"),
                ));
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
        let at = |message: String| Error::Data {
            path: example.file.to_path_buf(),
            line: Some(example.line),
            message,
        };
        let label = example
            .label
            .as_deref()
            .ok_or_else(|| at("example has no label".into()))?;
        self.index.get(label).copied().ok_or_else(|| {
            at(format!(
                "unknown label \"{label}\": not one of the {} labels from {}",
                self.len(),
                self.origin
            ))
        })
    }
}
