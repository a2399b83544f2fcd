//! CLUE-style JSON-lines classification data: one JSON object per line, texts and label under task
//! specific keys (see [`TaskSpec`]).

mod dataset;
mod json_lines;
mod labels;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub use dataset::{split_holdout, Batch, Dataset, Item};
pub use json_lines::{count_nonblank_lines, JsonLine, JsonLines};
pub use labels::{resolve_labels, LabelSet, LabelSource, DEFAULT_LABELS_FILE};

/// Which JSON keys hold what for one task. Serializable so it can be saved next to a fine-tuned model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    pub text_a_key: String,
    /// Set for sentence-pair tasks.
    pub text_b_key: Option<String>,
    /// `None` for tasks read without labels.
    pub label_key: Option<String>,
    /// Key of the example id (present in CLUE test files), read when present.
    pub id_key: String,
    /// Name of the label list file beside the training file (JSON lines, the label under `label_key`);
    /// `None` means the default `labels.json` (see [`resolve_labels`], which applies to every task).
    pub labels_file: Option<String>,
}

impl TaskSpec {
    /// IFLYTEK: app description -> one of 119 categories; labels listed in `labels.json`.
    pub fn iflytek() -> Self {
        Self {
            name: "iflytek".into(),
            text_a_key: "sentence".into(),
            text_b_key: None,
            label_key: Some("label".into()),
            id_key: "id".into(),
            labels_file: Some("labels.json".into()),
        }
    }

    /// TNEWS: news title -> one of 15 categories; same layout as IFLYTEK.
    pub fn tnews() -> Self {
        Self { name: "tnews".into(), ..Self::iflytek() }
    }

    /// AFQMC: sentence pair -> "0"/"1" (same meaning or not).
    pub fn afqmc() -> Self {
        Self::custom("afqmc", "sentence1", Some("sentence2"), Some("label"))
    }

    /// A preset by (case-insensitive) name: `iflytek`, `tnews`, `afqmc`.
    pub fn preset(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "iflytek" => Some(Self::iflytek()),
            "tnews" => Some(Self::tnews()),
            "afqmc" => Some(Self::afqmc()),
            _ => None,
        }
    }

    /// Names accepted by [`Self::preset`].
    pub const PRESETS: &'static [&'static str] = &["iflytek", "tnews", "afqmc"];

    /// Any other layout; `id_key` is `"id"`, and the labels file is the default `labels.json` beside the
    /// training file when there is one (else labels come from train; see [`resolve_labels`]).
    pub fn custom(name: &str, text_a_key: &str, text_b_key: Option<&str>, label_key: Option<&str>) -> Self {
        Self {
            name: name.into(),
            text_a_key: text_a_key.into(),
            text_b_key: text_b_key.map(Into::into),
            label_key: label_key.map(Into::into),
            id_key: "id".into(),
            labels_file: None,
        }
    }

    /// `task_dir/<labels_file>` if the task has a labels file.
    pub fn labels_path(&self, task_dir: &Path) -> Option<PathBuf> {
        self.labels_file.as_ref().map(|f| task_dir.join(f))
    }

    pub fn is_pair(&self) -> bool {
        self.text_b_key.is_some()
    }
}

/// One line of a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The file it was read from, kept so that later errors (unknown label, ...) can point at it.
    pub file: Arc<Path>,
    /// 1-based line number in `file`.
    pub line: usize,
    /// The `id` field (int or string in the file), if present.
    pub id: Option<String>,
    pub text_a: String,
    pub text_b: Option<String>,
    /// The label as written (ints become their decimal string).
    pub label: Option<String>,
}

impl Example {
    /// An example not read from a file (e.g. typed by the user); reported as `<input>:line`.
    pub fn new(text_a: impl Into<String>, text_b: Option<String>, label: Option<String>) -> Self {
        Self { file: Arc::from(Path::new("<input>")), line: 0, id: None, text_a: text_a.into(), text_b, label }
    }

    /// `file:line`, for messages.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// The example on one line of `file`, its texts, label and id under `spec`'s keys.
    ///
    /// With `require_label`, the line must carry the label (string or integer); without it a label is read
    /// when present and `spec` has a label key. Errors name `file` and the line.
    pub fn from_line(file: &Arc<Path>, line: &JsonLine, spec: &TaskSpec, require_label: bool) -> Result<Self> {
        let (obj, n) = (&line.obj, line.line);
        let at = |message: String| Error::data(file.as_ref(), n, message);
        let text_a = text_field(obj, &spec.text_a_key).map_err(at)?;
        let text_b = match &spec.text_b_key {
            Some(key) => Some(text_field(obj, key).map_err(at)?),
            None => None,
        };
        let label = match &spec.label_key {
            Some(key) => {
                let label = label_field(obj, key).map_err(at)?;
                if require_label && label.is_none() {
                    return Err(at(format!("missing label key \"{key}\"")));
                }
                label
            }
            None => None,
        };
        let id = id_field(obj, &spec.id_key).map_err(at)?;
        Ok(Example { file: Arc::clone(file), line: n, id, text_a, text_b, label })
    }
}

/// Reads every non-blank line of `path` as an [`Example`] (a collect of [`JsonLines`] and
/// [`Example::from_line`]).
///
/// With `require_label`, every line must carry the label (string or integer); without it a label is read
/// when present (test files have none, but have `id`). A UTF-8 BOM and CRLF line ends are accepted.
pub fn read_examples(path: &Path, spec: &TaskSpec, require_label: bool) -> Result<Vec<Example>> {
    if require_label && spec.label_key.is_none() {
        return Err(Error::Config(format!(
            "task {} has no label key, so {} cannot be read as labelled data",
            spec.name,
            path.display()
        )));
    }
    let file: Arc<Path> = Arc::from(path);
    JsonLines::open(path)?.map(|line| Example::from_line(&file, &line?, spec, require_label)).collect()
}

/// Calls `f(line_number, object)` for every non-blank line of `path` (see [`JsonLines`]).
pub(crate) fn for_each_json_line(
    path: &Path,
    mut f: impl FnMut(usize, Map<String, Value>) -> Result<()>,
) -> Result<()> {
    for line in JsonLines::open(path)? {
        let JsonLine { line, obj } = line?;
        f(line, obj)?;
    }
    Ok(())
}

fn text_field(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("text key \"{key}\" must be a string, found {}", json_kind(other))),
        None => Err(format!("missing text key \"{key}\"")),
    }
}

/// Labels may be written as strings or integers; `null` counts as absent.
pub(crate) fn label_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(other) => Err(format!("label key \"{key}\" must be a string or an integer, found {}", json_kind(other))),
    }
}

fn id_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(other) => Err(format!("id key \"{key}\" must be a string or an integer, found {}", json_kind(other))),
    }
}

/// "a number", "an array", ... for messages about JSON values of the wrong type.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
