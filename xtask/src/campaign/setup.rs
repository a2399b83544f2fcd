//! Setting a campaign up from its options: the files it reads, resolved as `ernie-ft` resolves them and
//! recorded by content ([`Input`], the model directory's hash), the `ernie-ft` binary, and the
//! [`Campaign`] with its cells.

use super::identity::{self, DeviceSpec, Identity};
use super::invocation::Campaign;
use super::options::{Opts, QUICK_FLAGS};
use super::{root, rows};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A file input of the cells: its path, line count and blake3.
#[derive(Clone, Debug)]
pub struct Input {
    pub path: PathBuf,
    pub lines: usize,
    pub blake3: String,
}

impl Input {
    pub fn read(p: &Path) -> Result<Input> {
        let bytes = std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
        Ok(Input {
            path: p.to_path_buf(),
            lines: bytes.iter().filter(|&&b| b == b'\n').count(),
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        })
    }

    pub fn identity(&self) -> Value {
        json!({"lines": self.lines, "blake3": self.blake3})
    }
}

/// `$ERNIE_FT_BIN` (a prebuilt binary, e.g. on a machine without a Rust toolchain), else a fresh release
/// build of this workspace's.
pub fn ernie_ft_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ERNIE_FT_BIN").map(PathBuf::from) {
        if !p.is_file() {
            bail!("ERNIE_FT_BIN={} is not a file", p.display());
        }
        return Ok(p);
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--bin", "ernie-ft"])
        .current_dir(root())
        .status()?;
    if !status.success() {
        bail!("building ernie-ft failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    Ok(target.join("release/ernie-ft"))
}

fn model_blake3(dir: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    let mut any = false;
    // Every file ernie-ft may read from a model directory (see ernie_model::formats); those present are
    // hashed, so a safetensors-only directory hashes as it always did.
    for f in [
        "config.json",
        "model_config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "model_state.pdparams",
        "tokenizer.json",
        "vocab.txt",
    ] {
        let p = dir.join(f);
        if p.is_file() {
            h.update(f.as_bytes());
            h.update(identity::hash_file(&p)?.as_bytes());
            any = true;
        }
    }
    if !any {
        bail!("{}: no config.json, model_config.json or weights file: not a model directory", dir.display());
    }
    Ok(h.finalize().to_hex().to_string())
}

pub fn setup(o: Opts) -> Result<Campaign> {
    let task = o.task.to_ascii_lowercase();
    let seeds: Vec<u64> = (1..=o.n_seeds.unwrap_or(if o.quick { 2 } else { 3 })).collect();
    let rows = rows::select(o.rows.as_deref())?;
    let out = o
        .out
        .clone()
        .unwrap_or_else(|| root().join("results").join(if o.quick { format!("{task}-quick") } else { task.clone() }));
    // The files, resolved as ernie-ft resolves them, then passed explicitly to every cell.
    let model = ernie_data::resolve_model_dir(o.model.as_deref())
        .context("cannot find the model (--model DIR or $ERNIE_FT_MODEL)")?;
    let need_data = o.train.is_none() || o.dev.is_none();
    let data_dir = if need_data {
        Some(
            ernie_data::resolve_data_dir(o.data.as_deref())
                .context("cannot find the data (--data DIR, $ERNIE_FT_DATA, or --train/--dev FILE)")?
                .join(&task),
        )
    } else {
        None
    };
    let pick = |given: &Option<PathBuf>, names: &[&str]| -> Result<PathBuf> {
        if let Some(p) = given {
            return Ok(p.clone());
        }
        let d = data_dir.as_ref().expect("resolved above");
        names
            .iter()
            .map(|n| d.join(n))
            .find(|p| p.is_file())
            .with_context(|| format!("none of {} in {}", names.join(", "), d.display()))
    };
    let train = Input::read(&pick(&o.train, &["train.json", "train.partial.json"])?)?;
    let dev = Input::read(&pick(&o.dev, &["dev.json"])?)?;
    let labels = match &o.labels {
        Some(p) => Some(Input::read(p)?),
        // As ernie-ft resolves them: the task's labels file (labels.json) beside the train file, if any.
        None => {
            let name =
                ernie_data::TaskSpec::preset(&task).and_then(|s| s.labels_file).unwrap_or_else(|| "labels.json".into());
            train.path.parent().map(|d| d.join(name)).filter(|p| p.is_file()).map(|p| Input::read(&p)).transpose()?
        }
    };
    let model_blake3 = model_blake3(&model)?;
    let device = DeviceSpec { device: o.device.clone(), precision: o.precision.clone() };
    let mut common: Vec<String> = vec!["--task".into(), task.clone(), "--head-seed".into(), "0".into()];
    common.extend(device.flags());
    if o.quick {
        common.extend(QUICK_FLAGS.map(String::from));
    }
    common.extend(o.extra.iter().cloned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = o.jobs.max(1);
    let paths = json!({
        "model": model, "train": train.path, "dev": dev.path, "labels": labels.as_ref().map(|l| &l.path),
    });
    let mut c = Campaign {
        task,
        out,
        seeds,
        rows,
        specs: vec![],
        spec_index: BTreeMap::new(),
        device,
        common,
        model,
        model_blake3,
        train,
        dev,
        labels,
        paths,
        jobs,
        threads_per_job: (o.threads.unwrap_or(cores) / jobs).max(1),
        gpus: o.gpus.clone(),
        keep_checkpoints: o.keep_checkpoints,
        models_for_other_rows: Default::default(),
        save_every: o.save_every.unwrap_or(if o.quick { 8 } else { 50 }),
        bin: PathBuf::new(),
        identity: Identity {
            commit: String::new(),
            dirty: false,
            fingerprint: String::new(),
            fingerprint_source: String::new(),
            device: String::new(),
            host: identity::Host::detect(false),
            binary: String::new(),
        },
        resume_supported: false,
        save_every_supported: false,
        opts: o,
    };
    c.build_specs();
    Ok(c)
}
