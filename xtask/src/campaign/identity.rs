//! Who computed a cell: the host (CPU model, AVX-512, cores, GPUs), the commit, and the numerics
//! fingerprint.
//!
//! The fingerprint is what decides whether cells may share a table. It is the blake3 of the final weights
//! (`final_weights_blake3` of metrics.json; the hash of model.safetensors where the binary does not write
//! that field) and the final dev loss of five short `ernie-ft train` runs on the tiny random model of
//! tests/fixtures with a synthetic task: base, adv, rdrop, layer-decay and all three, 3 steps each, 2
//! threads, on the campaign's device and precision, plus the SIMD class the runs report (CPU: AVX-512 and
//! AVX2 hosts run different GEMM microkernels, which the tiny shapes may not all reach) or the GPU model
//! (CUDA). It changes when the numbers a run computes change: a refactor that keeps them keeps it, a
//! changed kernel gets another, and so does a host of another class. It is cached per binary (blake3 of
//! the file), device and host. Fingerprints are compared within a numerics class
//! ([`Identity::numerics_class`]): a campaign may continue on a host of another class, keeping the finished
//! cells of the first.

use anyhow::{bail, Context, Result};
use ernie_strategies::Strategy;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub hostname: String,
    pub cpu_model: String,
    pub avx512f: bool,
    pub cores: usize,
    /// GPU names (with --device cuda; from nvidia-smi).
    #[serde(default)]
    pub gpus: Vec<String>,
    /// The processor generation, "<vendor> family <f> model <m>" from /proc/cpuinfo: virtual machines often
    /// show one model name ("AMD EPYC") for generations of different speed. Part of the machine a step
    /// time was measured on, not of the numerics class. Empty in records written before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpu_id: String,
}

impl Host {
    pub fn detect(cuda: bool) -> Host {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_string())
        };
        let gpus = if cuda {
            Command::new("nvidia-smi")
                .args(["--query-gpu=name", "--format=csv,noheader"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            vec![]
        };
        Host {
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            cpu_model: field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            avx512f: field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "avx512f")),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            gpus,
            cpu_id: match (field("vendor_id"), field("cpu family"), field("model")) {
                (Some(v), Some(f), Some(m)) => format!("{v} family {f} model {m}"),
                _ => String::new(),
            },
        }
    }

    /// What decides the numerics of the CPU backend: the CPU model and whether it has AVX-512.
    pub fn class(&self) -> String {
        format!("{} ({})", self.cpu_model, self.simd())
    }

    /// The SIMD width gemm's CPU kernels use: "avx512f" or "no avx512f".
    pub fn simd(&self) -> &'static str {
        if self.avx512f {
            "avx512f"
        } else {
            "no avx512f"
        }
    }

    /// One line for the table's settings; cells whose lines differ ran on different machines.
    pub fn describe(&self) -> String {
        let mut s = self.class();
        if !self.cpu_id.is_empty() {
            s += &format!(", {}", self.cpu_id);
        }
        s += &format!(", {} cores", self.cores);
        if !self.gpus.is_empty() {
            s += &format!(", GPU {}", self.gpus.join(" + "));
        }
        if !self.hostname.is_empty() {
            s += &format!(" [host {}]", self.hostname);
        }
        s
    }
}

/// The identity recorded with each cell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `git rev-parse HEAD` of the workspace ("unknown" outside git).
    pub commit: String,
    /// Whether tracked files outside results/ differed from that commit.
    pub dirty: bool,
    /// The numerics fingerprint (16 hex digits).
    pub fingerprint: String,
    /// What the fingerprint hashes: "final_weights_blake3" or "model.safetensors".
    pub fingerprint_source: String,
    /// `cpu`, `cuda-bf16`, `cuda-f32`.
    pub device: String,
    pub host: Host,
    /// blake3 of the ernie-ft binary (16 hex digits).
    pub binary: String,
}

impl Identity {
    /// What may legitimately give the same code another fingerprint: the device, and on the CPU the SIMD
    /// width gemm's kernels use (AVX-512 or not), on CUDA the GPU model. Fingerprints are compared within a
    /// class only: cells of another class come from a host this one cannot reproduce bit for bit.
    pub fn numerics_class(&self) -> String {
        if self.host.gpus.is_empty() || !self.device.starts_with("cuda") {
            format!("{}, {}", self.device, self.host.simd())
        } else {
            format!("{}, {}", self.device, self.host.gpus.join(" + "))
        }
    }

    pub fn commit_short(&self) -> String {
        format!("{}{}", &self.commit[..self.commit.len().min(10)], if self.dirty { "+dirty" } else { "" })
    }
}

/// (commit, dirty) of the git work tree at `root`; changes under results/ do not count as dirty.
pub fn commit(root: &Path) -> (String, bool) {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"])
                .is_some_and(|s| !s.is_empty());
            (c, dirty)
        }
        _ => ("unknown".into(), false),
    }
}

pub fn hash_file(p: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(p).with_context(|| format!("{}: cannot open", p.display()))?)
        .with_context(|| format!("{}: cannot read", p.display()))?;
    Ok(h.finalize().to_hex().to_string())
}

/// The device flags every ernie-ft command of a campaign gets (besides --threads and --gpu).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// `cpu` or `cuda`.
    pub device: String,
    /// With cuda: `bf16` or `f32` (None: ernie-ft's default).
    pub precision: Option<String>,
}

impl DeviceSpec {
    pub fn flags(&self) -> Vec<String> {
        let mut v = vec!["--device".to_string(), self.device.clone()];
        if self.device == "cuda" {
            if let Some(p) = &self.precision {
                v.extend(["--precision".to_string(), p.clone()]);
            }
        }
        v
    }

    pub fn name(&self) -> String {
        match (self.device.as_str(), &self.precision) {
            ("cuda", Some(p)) => format!("cuda-{p}"),
            ("cuda", None) => "cuda-bf16".into(),
            (d, _) => d.to_string(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fingerprint {
    pub value: String,
    pub source: String,
    /// Per run: (weights hash, final dev loss).
    pub runs: BTreeMap<String, (String, String)>,
    pub binary: String,
    pub device: String,
    pub host_class: String,
}

/// (run name, strategies) of the fingerprint's runs. The names are hashed and the `--strategy` values are
/// the strategies' names joined by `,`: both must stay as they are for the fingerprint to keep its values.
const FINGERPRINT_RUNS: [(&str, &[Strategy]); 5] = [
    ("base", &[]),
    ("adv", &[Strategy::Adv]),
    ("rdrop", &[Strategy::Rdrop]),
    ("layer-decay", &[Strategy::LayerDecay]),
    ("all", &[Strategy::Adv, Strategy::Rdrop, Strategy::LayerDecay]),
];

/// The `--strategy` value of a fingerprint run ("" for none).
fn strategy_arg(strategies: &[Strategy]) -> String {
    strategies.iter().map(|s| s.name()).collect::<Vec<_>>().join(",")
}

/// The numerics fingerprint of `bin` on this host and device, from `cache` when it holds one for the same
/// binary, device and host class; `work` is a scratch directory.
pub fn fingerprint(bin: &Path, dev: &DeviceSpec, gpu: Option<usize>, host: &Host, cache: &Path) -> Result<Fingerprint> {
    let binary = hash_file(bin)?[..16].to_string();
    let key = blake3::hash(format!("v2|{binary}|{}|{}|{}", dev.name(), host.class(), host.gpus.join(",")).as_bytes())
        .to_hex()[..16]
        .to_string();
    let cache_file = cache.join(format!("fingerprint-{key}.json"));
    if let Some(fp) =
        std::fs::read_to_string(&cache_file).ok().and_then(|t| serde_json::from_str::<Fingerprint>(&t).ok())
    {
        return Ok(fp);
    }
    let work = cache.join(format!("fingerprint-{key}-work"));
    let _ = std::fs::remove_dir_all(&work);
    let model = work.join("model");
    ernie_testkit::write_model(&model).context("writing the tiny model for the numerics fingerprint")?;
    let (train, dev_file) = (work.join("train.json"), work.join("dev.json"));
    ernie_testkit::write_task(&train, 48, 11)?;
    ernie_testkit::write_task(&dev_file, 24, 12)?;
    eprintln!("numerics fingerprint: {} tiny runs of 3 steps on {}", FINGERPRINT_RUNS.len(), dev.name());
    let mut runs = BTreeMap::new();
    let mut sources = vec![];
    let mut simd = vec![];
    for (name, strategies) in FINGERPRINT_RUNS {
        let out = work.join(name);
        let mut args: Vec<String> = vec!["train".into(), "--model".into(), model.display().to_string()];
        args.extend(ernie_testkit::TASK_FLAGS.map(String::from));
        args.extend(
            [
                "--max-len",
                "32",
                "--batch-size",
                "8",
                "--max-steps",
                "3",
                "--seed",
                "7",
                "--head-seed",
                "0",
                "--hidden-dropout",
                "0.1",
                "--threads",
                "2",
            ]
            .map(String::from),
        );
        args.extend(["--train".into(), train.display().to_string(), "--dev".into(), dev_file.display().to_string()]);
        args.extend(["--output-dir".into(), out.display().to_string()]);
        args.extend(dev.flags());
        if let Some(g) = gpu {
            args.extend(["--gpu".into(), g.to_string()]);
        }
        if !strategies.is_empty() {
            args.extend(["--strategy".into(), strategy_arg(strategies)]);
        }
        let o = Command::new(bin).args(&args).output().with_context(|| format!("running {}", bin.display()))?;
        if !o.status.success() {
            bail!(
                "numerics fingerprint: `ernie-ft {}` failed ({}):\n{}",
                args.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let text =
            std::fs::read_to_string(out.join("metrics.json")).context("numerics fingerprint: no metrics.json")?;
        let m: Value = serde_json::from_str(&text)?;
        let (weights, source) = match m["final_weights_blake3"].as_str() {
            Some(h) => (h.to_string(), "final_weights_blake3"),
            None => (hash_file(&out.join("model.safetensors"))?, "model.safetensors"),
        };
        let loss = m["final_dev"]["loss"].as_f64().map_or("none".to_string(), |l| format!("{l:e}"));
        sources.push(source);
        if let Some(c) = m["simd_class"].as_str() {
            simd.push(c.to_string());
        }
        runs.insert(name.to_string(), (weights, loss));
    }
    sources.dedup();
    simd.dedup();
    let mut h = blake3::Hasher::new();
    h.update(b"ernie-ft numerics fingerprint v1\n");
    for (name, (w, loss)) in &runs {
        h.update(format!("{name} {w} {loss}\n").as_bytes());
    }
    // The tiny model's shapes may not reach every kernel that differs between SIMD classes (AVX-512 and
    // AVX2 GEMM microkernels) or GPU models: those are part of the identity too.
    if dev.device == "cpu" {
        h.update(format!("simd {}\n", simd.join(",")).as_bytes());
    } else {
        h.update(format!("gpus {}\n", host.gpus.join(",")).as_bytes());
    }
    let fp = Fingerprint {
        value: h.finalize().to_hex()[..16].to_string(),
        source: sources.join("+"),
        runs,
        binary,
        device: dev.name(),
        host_class: host.class(),
    };
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(cache)?;
    super::write_atomic(&cache_file, serde_json::to_string_pretty(&fp)?.as_bytes())?;
    Ok(fp)
}

/// Copies of the ernie-ft binary that no campaign has used for this long may be removed (beyond the three
/// used last). A campaign marks its copy used whenever it starts a cell ([`mark_used`]), and no cell runs
/// this long, so no running campaign loses its binary.
const COPY_KEEP_UNUSED: std::time::Duration = std::time::Duration::from_secs(3 * 24 * 3600);

/// A private copy of the built binary in `cache` (`ernie-ft-<hash>`), so that a rebuild during the campaign
/// cannot change its numerics under the fingerprint computed for it; marked used. Copies beyond the three
/// used last and unused for [`COPY_KEEP_UNUSED`] are removed.
pub fn private_copy(built: &Path, cache: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(cache)?;
    let bin = cache.join(format!("ernie-ft-{}", &hash_file(built)?[..16]));
    if !bin.is_file() {
        let tmp = bin.with_extension("tmp");
        std::fs::copy(built, &tmp).with_context(|| format!("copying {} to {}", built.display(), tmp.display()))?;
        std::fs::rename(&tmp, &bin)?;
    }
    mark_used(&bin);
    let mut copies: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(cache)?
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("ernie-ft-") && !name.ends_with(".tmp")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    copies.sort();
    let now = std::time::SystemTime::now();
    for (used, p) in copies.iter().rev().skip(3) {
        if now.duration_since(*used).unwrap_or_default() > COPY_KEEP_UNUSED {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(bin)
}

/// Records that a campaign uses `bin` now (its modification time; opened read-only, as a running binary
/// cannot be opened for writing). Best effort: a failure only makes the copy look older to the clean-up.
pub fn mark_used(bin: &Path) {
    if let Ok(f) = std::fs::File::open(bin) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// Where fingerprints are cached: `<target dir>/campaign/`.
pub fn cache_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target")).join("campaign")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_copies_in_use_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("campaign");
        std::fs::create_dir_all(&cache).unwrap();
        let day = std::time::Duration::from_secs(24 * 3600);
        let now = std::time::SystemTime::now();
        // Copies used 1 ("a", "b"), 2 ("f"), 4, 5 and 6 days ago ("c", "d", "e").
        for (name, days) in [("a", 1), ("b", 1), ("f", 2), ("c", 4), ("d", 5), ("e", 6)] {
            let p = cache.join(format!("ernie-ft-{name}"));
            std::fs::write(&p, name).unwrap();
            std::fs::File::open(&p).unwrap().set_modified(now - day * days).unwrap();
        }
        let built = dir.path().join("ernie-ft");
        std::fs::write(&built, "new build").unwrap();
        let bin = private_copy(&built, &cache).unwrap();
        assert_eq!(std::fs::read_to_string(&bin).unwrap(), "new build");
        let mut left: Vec<String> =
            std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        // The three used last (the new copy, "a", "b") stay, "f" too (used two days ago); the others, unused
        // for more than three days, go.
        let new_name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let mut want = vec!["ernie-ft-a".to_string(), "ernie-ft-b".to_string(), "ernie-ft-f".to_string(), new_name];
        want.sort();
        assert_eq!(left, want);
        // Used again (a running campaign starting a cell): the copy counts as used now.
        let c = cache.join("ernie-ft-c");
        std::fs::write(&c, "c").unwrap();
        std::fs::File::open(&c).unwrap().set_modified(now - day * 10).unwrap();
        mark_used(&c);
        let age = now.duration_since(std::fs::metadata(&c).unwrap().modified().unwrap()).unwrap_or_default();
        assert!(age < day, "mark_used did not refresh the copy");
    }

    #[test]
    fn fingerprint_runs_are_spelled_as_before() {
        // What the fingerprint runs and hashes; a change here changes every campaign's fingerprint.
        let runs: Vec<(&str, String)> = FINGERPRINT_RUNS.iter().map(|(n, s)| (*n, strategy_arg(s))).collect();
        assert_eq!(
            runs,
            [
                ("base", "".to_string()),
                ("adv", "adv".into()),
                ("rdrop", "rdrop".into()),
                ("layer-decay", "layer-decay".into()),
                ("all", "adv,rdrop,layer-decay".into()),
            ]
        );
    }
}
