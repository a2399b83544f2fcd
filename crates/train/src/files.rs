//! Files that must be whole or absent, and identities of the files a run depends on.
//!
//! - [`FileIdentity`]: size and blake3 of a model or data file, recorded when a run starts and compared
//!   when it resumes (contents, not paths: a run may resume on another machine).
//! - [`DirWriter`] + [`verify_manifest`]: a checkpoint directory is committed by `manifest.json`, written
//!   last, listing every file with its size and blake3. A reader accepts a directory only when every listed
//!   file matches, and names the one that does not. Training-state directories are also built under a
//!   temporary name and renamed into place ([`publish_dir`]), so a kill during a save leaves at worst a
//!   temporary directory that the next run removes ([`remove_stale_temporaries`]).

use anyhow::{bail, Context, Result};
use ernie_model::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "manifest.json";

/// Size and content hash of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// The path it was read from (for messages; not compared).
    pub path: PathBuf,
    pub size: u64,
    pub blake3: String,
}

impl FileIdentity {
    /// Hash a file (blake3 runs at several GB/s: a 100 MB model adds tens of milliseconds to start-up).
    pub fn of(path: &Path) -> Result<Self> {
        let mut hasher = blake3::Hasher::new();
        let file = std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
        hasher
            .update_reader(std::io::BufReader::with_capacity(1 << 20, file))
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let size = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?.len();
        Ok(FileIdentity { path: path.to_path_buf(), size, blake3: hasher.finalize().to_hex().to_string() })
    }

    /// Same contents (the path may differ).
    pub fn same_content(&self, other: &FileIdentity) -> bool {
        self.size == other.size && self.blake3 == other.blake3
    }
}

/// One file of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    pub size: u64,
    pub blake3: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub files: Vec<ManifestEntry>,
}

/// Writes the files of a checkpoint directory, each atomically, remembering their sizes and hashes for the
/// manifest that [`DirWriter::commit`] writes last.
pub struct DirWriter {
    dir: PathBuf,
    entries: Vec<ManifestEntry>,
}

impl DirWriter {
    /// Start (re)writing `dir`: an existing manifest is removed first, so that the directory reads as
    /// incomplete until [`commit`](Self::commit) runs.
    pub fn begin(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the directory", dir.display()))?;
        let manifest = dir.join(MANIFEST_FILE);
        if manifest.exists() {
            std::fs::remove_file(&manifest).with_context(|| format!("{}: cannot remove", manifest.display()))?;
        }
        Ok(DirWriter { dir: dir.to_path_buf(), entries: vec![] })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write `name` with `bytes` (atomically) and list it in the manifest.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.dir.join(name), bytes)?;
        self.entries.retain(|e| e.name != name);
        self.entries.push(ManifestEntry {
            name: name.into(),
            size: bytes.len() as u64,
            blake3: blake3::hash(bytes).to_hex().to_string(),
        });
        Ok(())
    }

    /// Write the manifest: from here on the directory reads as complete.
    pub fn commit(self) -> Result<()> {
        let m = Manifest { format: 1, files: self.entries };
        write_atomic(&self.dir.join(MANIFEST_FILE), serde_json::to_string_pretty(&m)?.as_bytes())?;
        sync_dir(&self.dir);
        Ok(())
    }
}

/// Check every file listed in `dir`'s manifest; the error names the file at fault.
pub fn verify_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    if !path.is_file() {
        bail!("{}: incomplete checkpoint ({MANIFEST_FILE} missing: its save was interrupted, or it was not written by this version of ernie-ft)", dir.display());
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let m: Manifest = serde_json::from_str(&text).with_context(|| format!("{}: malformed manifest", path.display()))?;
    for e in &m.files {
        let f = dir.join(&e.name);
        let id = FileIdentity::of(&f)
            .with_context(|| format!("{}: listed in {} but unreadable", f.display(), path.display()))?;
        if id.size != e.size {
            bail!(
                "{}: {} bytes, but the manifest lists {} (a damaged or partly written checkpoint)",
                f.display(),
                id.size,
                e.size
            );
        }
        if id.blake3 != e.blake3 {
            bail!("{}: its contents differ from what the manifest lists (blake3 {} vs {}): a damaged or modified checkpoint", f.display(), id.blake3, e.blake3);
        }
    }
    Ok(m)
}

/// Move a fully written directory `tmp` to `dest`, replacing a previous `dest` (a checkpoint of the same
/// step written before an interruption).
pub fn publish_dir(tmp: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        let parent = dest.parent().unwrap_or(Path::new("."));
        let trash = parent.join(format!(
            ".trash-{}-{}",
            dest.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        std::fs::rename(dest, &trash).with_context(|| format!("{}: cannot move aside", dest.display()))?;
        std::fs::rename(tmp, dest).with_context(|| format!("{}: cannot publish {}", dest.display(), tmp.display()))?;
        let _ = std::fs::remove_dir_all(&trash);
    } else {
        std::fs::rename(tmp, dest).with_context(|| format!("{}: cannot publish {}", dest.display(), tmp.display()))?;
    }
    if let Some(parent) = dest.parent() {
        sync_dir(parent);
    }
    Ok(())
}

/// Whether a directory entry is a temporary of an interrupted save: `.NAME.PID.tmp` files of
/// [`write_atomic`], `.tmp-*` directories of a training-state save, `.trash-*` of [`publish_dir`].
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && (name.ends_with(".tmp") || name.starts_with(".tmp-") || name.starts_with(".trash-"))
}

/// Remove the temporaries an interrupted save left in `dir` (not recursive). Returns what was removed.
pub fn remove_stale_temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut removed = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else { return removed };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_temporary(&name) {
            continue;
        }
        let p = e.path();
        let ok = if p.is_dir() { std::fs::remove_dir_all(&p).is_ok() } else { std::fs::remove_file(&p).is_ok() };
        if ok {
            removed.push(p);
        }
    }
    removed
}

/// Make a rename in `dir` durable (best effort: not every filesystem supports syncing a directory).
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_the_damaged_file() {
        let d = tempfile::tempdir().unwrap();
        let mut w = DirWriter::begin(d.path()).unwrap();
        w.write("a.bin", b"hello").unwrap();
        w.write("b.json", b"{}").unwrap();
        w.commit().unwrap();
        verify_manifest(d.path()).unwrap();
        std::fs::write(d.path().join("a.bin"), b"hellO").unwrap();
        let e = format!("{:#}", verify_manifest(d.path()).unwrap_err());
        assert!(e.contains("a.bin") && e.contains("contents differ"), "{e}");
        std::fs::write(d.path().join("a.bin"), b"hell").unwrap();
        let e = format!("{:#}", verify_manifest(d.path()).unwrap_err());
        assert!(e.contains("a.bin") && e.contains("4 bytes"), "{e}");
        std::fs::remove_file(d.path().join("b.json")).unwrap();
        std::fs::write(d.path().join("a.bin"), b"hello").unwrap();
        let e = format!("{:#}", verify_manifest(d.path()).unwrap_err());
        assert!(e.contains("b.json"), "{e}");
    }

    #[test]
    fn rewriting_uncommits_until_the_manifest_is_written() {
        let d = tempfile::tempdir().unwrap();
        let mut w = DirWriter::begin(d.path()).unwrap();
        w.write("a.bin", b"1").unwrap();
        w.commit().unwrap();
        let mut w = DirWriter::begin(d.path()).unwrap();
        w.write("a.bin", b"22").unwrap();
        // Killed here: no manifest, so the directory is not accepted.
        let e = format!("{:#}", verify_manifest(d.path()).unwrap_err());
        assert!(e.contains("incomplete"), "{e}");
        w.commit().unwrap();
        assert_eq!(verify_manifest(d.path()).unwrap().files[0].size, 2);
    }

    #[test]
    fn temporaries_are_recognised_and_removed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".model.safetensors.123.tmp"), b"x").unwrap();
        std::fs::create_dir(d.path().join(".tmp-step-00000004-77")).unwrap();
        std::fs::write(d.path().join("config.json"), b"{}").unwrap();
        let removed = remove_stale_temporaries(d.path());
        assert_eq!(removed.len(), 2);
        assert!(d.path().join("config.json").is_file());
        assert!(!is_temporary("step-00000004") && !is_temporary("model.safetensors"));
    }
}
