//! File helpers shared by the subcommands: JSON-lines input with 1-based line numbers, and output files
//! written atomically (a temporary file beside the target, renamed into place only on success).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

/// One non-blank line of a JSON-lines file.
#[derive(Debug, Clone)]
pub struct JsonLine {
    /// 1-based line number in the file.
    pub line: usize,
    pub obj: Map<String, Value>,
}

/// An error about one line of a file, formatted `FILE:LINE: message`.
pub fn line_error(path: &Path, line: usize, message: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{}:{line}: {message}", path.display())
}

/// Reads every non-blank line of `path` as a JSON object. A UTF-8 byte-order mark and CRLF line ends are
/// accepted. Errors name the file and the 1-based line; a file without any JSON line is an error (line 1).
pub fn read_json_lines(path: &Path) -> Result<Vec<JsonLine>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw).map_err(|e| line_error(path, line, format!("not valid UTF-8 ({e})")))?;
        if text.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(text).map_err(|e| line_error(path, line, json_message(&e)))?;
        match value {
            Value::Object(obj) => out.push(JsonLine { line, obj }),
            other => return Err(line_error(path, line, format!("expected a JSON object, found {}", kind(&other)))),
        }
    }
    if out.is_empty() {
        return Err(line_error(path, 1, "the input is empty (no JSON lines)"));
    }
    Ok(out)
}

/// serde_json's message with the position as a column only (the line is the file's, given separately).
fn json_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&suffix) {
        Some(msg) if e.line() == 1 => format!("malformed JSON at column {}: {msg}", e.column()),
        _ => format!("malformed JSON: {full}"),
    }
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
    fn reads_lines_with_numbers_bom_crlf_and_blanks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, b"\xEF\xBB\xBF{\"a\": 1}\r\n\r\n  \n{\"b\": 2}\r\n").unwrap();
        let lines = read_json_lines(&p).unwrap();
        assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), vec![1, 4]);
        assert!(lines[1].obj.contains_key("b"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.jsonl");
        std::fs::write(&p, "{\"a\": 1}\n\n[1]\n").unwrap();
        let msg = read_json_lines(&p).unwrap_err().to_string();
        assert!(msg.contains("bad.jsonl:3:") && msg.contains("an array"), "{msg}");
        std::fs::write(&p, "\n \n").unwrap();
        let msg = read_json_lines(&p).unwrap_err().to_string();
        assert!(msg.contains("bad.jsonl:1:") && msg.contains("empty"), "{msg}");
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
