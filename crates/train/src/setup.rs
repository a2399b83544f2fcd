//! Setting up a run from a task name, as `ernie-ft` does: the task's [`TaskSpec`] (a preset, else custom
//! keys; [`task_spec`]), its data files under the data directory (`<data>/<task>/train.json`, else
//! `train.partial.json`; `dev.json`; `test.json`; [`task_file`], [`train_files`]), where `--resume PATH`
//! continues ([`Resume::from_arg`], [`Resume::run_dir`]) and the default output directory
//! ([`default_output_dir`]).

use crate::state;
use crate::trainer::Resume;
use anyhow::{bail, Context, Result};
use ernie_data::TaskSpec;
use ernie_strategies::Recipe;
use std::path::{Path, PathBuf};

/// The training file of a task directory: `train.json`, else the partial copy `train.partial.json`.
pub const TRAIN_FILES: [&str; 2] = ["train.json", PARTIAL_TRAIN_FILE];
/// The dev file of a task directory.
pub const DEV_FILES: [&str; 1] = ["dev.json"];
/// The test file of a task directory.
pub const TEST_FILES: [&str; 1] = ["test.json"];

/// The partial training file some data folders ship instead of `train.json` (see the data README).
const PARTIAL_TRAIN_FILE: &str = "train.partial.json";

/// The task `name`: its preset (iflytek, afqmc, tnews; see [`TaskSpec::preset`]), else a custom task with
/// the text under `"sentence"` and the label under `"label"`; each key given here replaces the preset's.
pub fn task_spec(name: &str, text_a_key: Option<&str>, text_b_key: Option<&str>, label_key: Option<&str>) -> TaskSpec {
    let mut s = TaskSpec::preset(name).unwrap_or_else(|| TaskSpec::custom(name, "sentence", None, Some("label")));
    if let Some(k) = text_a_key {
        s.text_a_key = k.to_string();
    }
    if let Some(k) = text_b_key {
        s.text_b_key = Some(k.to_string());
    }
    if let Some(k) = label_key {
        s.label_key = Some(k.to_string());
    }
    s
}

/// `given` if there is one, else `<data>/<task>/<name>` for the first of `names` that exists (the task
/// name lower-cased; the data directory as [`ernie_data::resolve_data_dir`] finds it from `data`).
/// Falling back to `train.partial.json` prints a note on stderr.
pub fn task_file(given: Option<&Path>, data: Option<&Path>, task: &str, names: &[&str]) -> Result<PathBuf> {
    if let Some(f) = given {
        return Ok(f.to_path_buf());
    }
    let data = ernie_data::resolve_data_dir(data).context("cannot find the data (give the file, or --data DIR)")?;
    let dir = data.join(task.to_ascii_lowercase());
    for n in names {
        if dir.join(n).is_file() {
            if *n == PARTIAL_TRAIN_FILE {
                eprintln!(
                    "note: {} not found; using {} (see the data README)",
                    dir.join("train.json").display(),
                    dir.join(n).display()
                );
            }
            return Ok(dir.join(n));
        }
    }
    bail!("none of {} found in {}", names.join(", "), dir.display())
}

/// The files a training run reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainFiles {
    pub train: PathBuf,
    /// `None` with a hold-out split (evaluation is then on the held-out part of the training file).
    pub dev: Option<PathBuf>,
}

/// The training file and the dev file of a run ([`task_file`] with [`TRAIN_FILES`] and [`DEV_FILES`]).
/// With `holdout`, dev is neither resolved nor read: a given `dev` only gets a note on stderr.
pub fn train_files(
    task: &str,
    data: Option<&Path>,
    train: Option<&Path>,
    dev: Option<&Path>,
    holdout: bool,
) -> Result<TrainFiles> {
    let train = task_file(train, data, task, &TRAIN_FILES)?;
    let dev = if holdout {
        if let Some(d) = dev {
            eprintln!(
                "note: --dev {} is not used with --holdout (evaluation is on the held-out part of the training file)",
                d.display()
            );
        }
        None
    } else {
        Some(task_file(dev, data, task, &DEV_FILES)?)
    };
    Ok(TrainFiles { train, dev })
}

/// `output/<task>-<strategies joined by +, or base>-seed<seed>`.
pub fn default_output_dir(task: &str, recipe: &Recipe, seed: u64) -> PathBuf {
    let names: Vec<&str> = recipe.strategies().iter().map(|s| s.name()).collect();
    let strategies = if names.is_empty() { "base".to_string() } else { names.join("+") };
    PathBuf::from("output").join(format!("{task}-{strategies}-seed{seed}"))
}

impl Resume {
    /// `--resume`: none is a new run, `auto` the newest state in the output directory, anything else a run
    /// directory or one of its training states.
    pub fn from_arg(arg: Option<&Path>) -> Resume {
        match arg {
            None => Resume::No,
            Some(p) if p == Path::new("auto") => Resume::Auto,
            Some(p) => Resume::From(p.to_path_buf()),
        }
    }

    /// The run directory a resumption continues in (the output directory when none is given): the run
    /// that a training state belongs to, else the path itself. `None` for a new run and for `auto`.
    pub fn run_dir(&self) -> Option<PathBuf> {
        match self {
            Resume::From(p) if state::is_state_dir(p) => Some(state::run_dir_of(p).unwrap_or_else(|| p.clone())),
            Resume::From(p) => Some(p.clone()),
            Resume::No | Resume::Auto => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ernie_strategies::RDropConfig;

    #[test]
    fn presets_keep_their_keys_unless_overridden() {
        let s = task_spec("AFQMC", None, None, None);
        assert_eq!((s.text_a_key.as_str(), s.text_b_key.as_deref()), ("sentence1", Some("sentence2")));
        let s = task_spec("mine", None, None, None);
        assert_eq!(
            (s.name.as_str(), s.text_a_key.as_str(), s.text_b_key, s.label_key.as_deref()),
            ("mine", "sentence", None, Some("label"))
        );
        let s = task_spec("iflytek", Some("text"), Some("other"), Some("y"));
        assert_eq!(
            (s.text_a_key.as_str(), s.text_b_key.as_deref(), s.label_key.as_deref()),
            ("text", Some("other"), Some("y"))
        );
        assert_eq!(s.labels_file.as_deref(), Some("labels.json"), "the rest of the preset is kept");
    }

    #[test]
    fn task_files_fall_back_to_the_partial_training_file() {
        let d = tempfile::tempdir().unwrap();
        let task = d.path().join("synthetic");
        std::fs::create_dir(&task).unwrap();
        std::fs::write(task.join("train.partial.json"), "{}\n").unwrap();
        std::fs::write(task.join("dev.json"), "{}\n").unwrap();
        let f = train_files("Synthetic", Some(d.path()), None, None, false).unwrap();
        assert_eq!(f, TrainFiles { train: task.join("train.partial.json"), dev: Some(task.join("dev.json")) });
        std::fs::write(task.join("train.json"), "{}\n").unwrap();
        assert_eq!(task_file(None, Some(d.path()), "synthetic", &TRAIN_FILES).unwrap(), task.join("train.json"));
        // A given file is taken as it is; with a hold-out split dev is not looked for.
        let given = Path::new("elsewhere.json");
        assert_eq!(task_file(Some(given), Some(d.path()), "synthetic", &TEST_FILES).unwrap(), given);
        assert_eq!(
            train_files("synthetic", Some(d.path()), None, Some(Path::new("missing.json")), true).unwrap().dev,
            None
        );
        let e = format!("{:#}", task_file(None, Some(d.path()), "synthetic", &TEST_FILES).unwrap_err());
        assert!(e.starts_with("none of test.json found in ") && e.contains("synthetic"), "{e}");
        let e = format!("{:#}", task_file(None, Some(&d.path().join("nope")), "synthetic", &DEV_FILES).unwrap_err());
        assert!(e.starts_with("cannot find the data (give the file, or --data DIR): "), "{e}");
    }

    #[test]
    fn output_and_resume_directories() {
        assert_eq!(default_output_dir("afqmc", &Recipe::default(), 3), Path::new("output/afqmc-base-seed3"));
        let r = Recipe { rdrop: Some(RDropConfig { alpha: 1.0 }), layer_decay: Some(0.8), ..Recipe::default() };
        let want = format!("output/t-{}-seed42", r.strategies().iter().map(|s| s.name()).collect::<Vec<_>>().join("+"));
        assert_eq!(default_output_dir("t", &r, 42), Path::new(&want));
        assert_eq!(Resume::from_arg(None), Resume::No);
        assert_eq!(Resume::from_arg(Some(Path::new("auto"))), Resume::Auto);
        assert_eq!(Resume::Auto.run_dir(), None);
        let run = Resume::from_arg(Some(Path::new("runs/a")));
        assert_eq!(run.run_dir(), Some(PathBuf::from("runs/a")));
        let step = Resume::from_arg(Some(Path::new("runs/a/checkpoints/step-00000012")));
        assert_eq!(step.run_dir(), Some(PathBuf::from("runs/a")));
    }
}
