//! File helpers shared by the subcommands: JSON-lines input streamed with 1-based line numbers, and output
//! files written atomically (a temporary file beside the target, renamed into place only on success).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

pub use ernie_data::JsonLine;

/// An error about one line of a file, formatted `FILE:LINE: message`.
pub fn line_error(path: &Path, line: usize, message: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{}:{line}: {message}", path.display())
}

/// The JSON objects of `path`, one line at a time (see [`ernie_data::JsonLines`]: a UTF-8 byte-order mark and
/// CRLF line ends accepted, blank lines skipped but counted, errors `FILE:LINE: ...`, an input without any
/// JSON line an error at line 1).
pub fn json_lines(path: &Path) -> Result<impl Iterator<Item = Result<JsonLine>>> {
    Ok(ernie_data::JsonLines::open(path)?.map(|l| l.map_err(anyhow::Error::from)))
}

/// A string field: `Ok(None)` when absent, an error message when it is not a string (null included).
pub fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("key \"{key}\" must be a string, found {}", kind(other))),
    }
}

pub use ernie_data::json_kind as kind;

/// An output file that appears under its final name only when [`AtomicOutput::commit`] succeeds.
///
/// Writes go to a temporary file in the same directory (so the final rename stays on one file system);
/// dropping the value without committing (an error, a panic) removes the temporary file, and a file that
/// already had the final name is left untouched.
pub struct AtomicOutput {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicOutput {
    pub fn create(path: &Path) -> Result<Self> {
        if path.is_dir() {
            bail!("output {} is a directory", path.display());
        }
        let name = path
            .file_name()
            .ok_or_else(|| anyhow!("output {} does not name a file", path.display()))?
            .to_string_lossy()
            .into_owned();
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() {
            bail!("cannot write {}: directory {} does not exist", path.display(), dir.display());
        }
        let pid = std::process::id();
        for attempt in 0..1000u32 {
            let tmp = dir.join(format!(".{name}.{pid}.{attempt}.tmp"));
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(f) => {
                    return Ok(Self {
                        path: path.to_path_buf(),
                        tmp,
                        writer: Some(BufWriter::with_capacity(1 << 20, f)),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create a temporary file {} for {}", tmp.display(), path.display())
                    })
                }
            }
        }
        bail!("cannot create a temporary file for {} in {}", path.display(), dir.display())
    }

    pub fn writer(&mut self) -> &mut impl Write {
        self.writer.as_mut().expect("writer present until commit")
    }

    /// Write `bytes`, naming the output in the error.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let path = self.path.clone();
        self.writer().write_all(bytes).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Flush, sync and rename into place.
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("commit once");
        let file = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        file.sync_all().with_context(|| format!("cannot write {}", self.path.display()))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("cannot move {} to {}", self.tmp.display(), self.path.display()))?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        self.writer.take();
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_stream_with_errors_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.jsonl");
        std::fs::write(&p, "\u{feff}{\"a\": 1}\r\n\n[1]\n").unwrap();
        let mut lines = json_lines(&p).unwrap();
        assert_eq!(lines.next().unwrap().unwrap().line, 1);
        let msg = lines.next().unwrap().unwrap_err().to_string();
        assert!(msg.contains("bad.jsonl:3:") && msg.contains("an array"), "{msg}");
        assert!(lines.next().is_none());
        let msg = json_lines(&dir.path().join("none.jsonl")).err().unwrap().to_string();
        assert!(msg.contains("none.jsonl"), "{msg}");
    }

    #[test]
    fn atomic_output_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        std::fs::write(&p, "old").unwrap();
        {
            let mut o = AtomicOutput::create(&p).unwrap();
            o.write_all(b"new").unwrap();
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file removed");
        let mut o = AtomicOutput::create(&p).unwrap();
        o.write_all(b"new").unwrap();
        o.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
