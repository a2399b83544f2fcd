//! The one JSON-lines reader of ernie-ft: [`JsonLines`] streams the objects of a file (or any
//! [`BufRead`]) with their 1-based line numbers, and [`count_nonblank_lines`] counts them with a byte scan
//! (for a progress bar's total). The whole-file readers ([`super::read_examples`], the label files) are
//! collects of it.
//!
//! Rules: a UTF-8 byte-order mark at the start is skipped, CRLF line ends are accepted, blank lines
//! (nothing but whitespace) are skipped but counted, every other line must be one JSON object. Errors name
//! the file and the line (`FILE:LINE: ...`); an input without any JSON line is an error at line 1.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::json_kind;
use crate::error::{Error, Result};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One non-blank line of a JSON-lines input.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonLine {
    /// 1-based line number in the input (blank lines counted).
    pub line: usize,
    pub obj: Map<String, Value>,
}

/// The JSON objects of a JSON-lines input, one line at a time (see the [module docs](self) for the
/// rules). Yields `Err` at the first bad line and nothing after it.
pub struct JsonLines<R> {
    reader: R,
    path: PathBuf,
    /// Lines read so far (the number of the last one).
    line: usize,
    /// Non-blank lines yielded so far.
    seen: usize,
    buf: Vec<u8>,
    done: bool,
}

impl JsonLines<BufReader<File>> {
    /// Opens `path` for reading; errors name it.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self::new(BufReader::with_capacity(1 << 16, file), path))
    }
}

impl<R: BufRead> JsonLines<R> {
    /// Reads `reader`; `path` is the name its errors give.
    pub fn new(reader: R, path: impl Into<PathBuf>) -> Self {
        Self { reader, path: path.into(), line: 0, seen: 0, buf: Vec::new(), done: false }
    }

    /// The name errors give.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next non-blank line, `None` at the end.
    fn read_next(&mut self) -> Result<Option<JsonLine>> {
        loop {
            self.buf.clear();
            let n = self.reader.read_until(b'\n', &mut self.buf).map_err(|e| Error::io(&self.path, e))?;
            if n == 0 {
                if self.seen == 0 {
                    return Err(Error::data(&self.path, 1, "the file is empty (no JSON lines)"));
                }
                return Ok(None);
            }
            self.line += 1;
            let line = self.line;
            let mut raw = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            if line == 1 {
                raw = raw.strip_prefix(BOM).unwrap_or(raw);
            }
            let text = std::str::from_utf8(raw)
                .map_err(|e| Error::data(&self.path, line, format!("not valid UTF-8 ({e})")))?;
            let trimmed = text.trim_start();
            let lead = text.len() - trimmed.len();
            let trimmed = trimmed.trim_end();
            if trimmed.is_empty() {
                continue;
            }
            let value: Value =
                serde_json::from_str(trimmed).map_err(|e| Error::data(&self.path, line, json_message(&e, lead)))?;
            let Value::Object(obj) = value else {
                let message = format!("expected a JSON object, found {}", json_kind(&value));
                return Err(Error::data(&self.path, line, message));
            };
            self.seen += 1;
            return Ok(Some(JsonLine { line, obj }));
        }
    }
}

impl<R: BufRead> Iterator for JsonLines<R> {
    type Item = Result<JsonLine>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.read_next();
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next.transpose()
    }
}

impl<R: BufRead> std::iter::FusedIterator for JsonLines<R> {}

/// serde_json's message with the position as a column of the file's line (the text parsed started `lead`
/// bytes into it); the line number is given separately.
fn json_message(e: &serde_json::Error, lead: usize) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&suffix) {
        Some(msg) if e.line() == 1 => format!("malformed JSON at column {}: {msg}", e.column() + lead),
        _ => format!("malformed JSON: {full}"),
    }
}

/// The number of non-blank lines of `path` (those [`JsonLines`] parses), by a byte scan that parses
/// nothing: meant for the total of a progress bar. A line of Unicode whitespace other than ASCII counts.
pub fn count_nonblank_lines(path: &Path) -> Result<usize> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    count_in(BufReader::with_capacity(1 << 16, file)).map_err(|e| Error::io(path, e))
}

fn count_in(mut reader: impl BufRead) -> std::io::Result<usize> {
    let (mut count, mut in_text, mut first) = (0, false, true);
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(count + usize::from(in_text));
        }
        let n = chunk.len();
        let bytes = if first { chunk.strip_prefix(BOM).unwrap_or(chunk) } else { chunk };
        first = false;
        for &b in bytes {
            match b {
                b'\n' => {
                    count += usize::from(in_text);
                    in_text = false;
                }
                b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c' => {}
                _ => in_text = true,
            }
        }
        reader.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(bytes: &[u8]) -> Result<Vec<JsonLine>> {
        JsonLines::new(bytes, "in.jsonl").collect()
    }

    fn err(bytes: &[u8]) -> String {
        lines(bytes).unwrap_err().to_string()
    }

    #[test]
    fn bom_crlf_and_blank_lines_counted() {
        let got = lines(b"\xEF\xBB\xBF{\"a\": 1}\r\n\r\n  \n\t\n{\"b\": 2}\r\n\n").unwrap();
        assert_eq!(got.iter().map(|l| l.line).collect::<Vec<_>>(), vec![1, 5]);
        assert_eq!(got[0].obj["a"], 1);
        assert_eq!(got[1].obj["b"], 2);
        // No final newline, leading and trailing blanks around the object, Unicode whitespace.
        let got = lines(b"\n\n  {\"c\": \"x\"}  \n\xE3\x80\x80\n{}").unwrap();
        assert_eq!(got.iter().map(|l| l.line).collect::<Vec<_>>(), vec![3, 5]);
        assert_eq!(count_in(&b"\n\n  {\"c\": \"x\"}  \n\n{}"[..]).unwrap(), 2);
    }

    #[test]
    fn a_bom_is_only_skipped_at_the_start() {
        let msg = err(b"{\"a\": 1}\n\xEF\xBB\xBF{\"b\": 2}\n");
        assert!(msg.starts_with("in.jsonl:2: "), "{msg}");
    }

    #[test]
    fn empty_inputs_are_an_error_at_line_1() {
        for body in [&b""[..], b"\n", b"\xEF\xBB\xBF", b"  \r\n\n\t\n"] {
            let msg = err(body);
            assert_eq!(msg, "in.jsonl:1: the file is empty (no JSON lines)", "{body:?}");
            assert_eq!(count_in(body).unwrap(), 0, "{body:?}");
        }
    }

    #[test]
    fn errors_name_the_line_and_stop_the_stream() {
        let msg = err(b"{\"a\": 1}\n\n[1]\n{\"b\": 2}\n");
        assert_eq!(msg, "in.jsonl:3: expected a JSON object, found an array");
        let msg = err(b"{\"a\": 1}\n  {\"a\": \n");
        assert!(msg.starts_with("in.jsonl:2: malformed JSON at column "), "{msg}");
        let msg = err(b"\n{\"a\": \"\xff\"}\n");
        assert!(msg.starts_with("in.jsonl:2: not valid UTF-8"), "{msg}");
        // Nothing after the first error.
        let mut it = JsonLines::new(&b"{}\nnope\n{}\n"[..], "in.jsonl");
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn malformed_json_columns_count_from_the_start_of_the_line() {
        let at = |body: &[u8]| err(body).split(": ").nth(1).unwrap().to_string();
        assert_eq!(at(b"{\"a\" 1}\n"), "malformed JSON at column 6");
        assert_eq!(at(b"   {\"a\" 1}\n"), "malformed JSON at column 9");
    }

    #[test]
    fn counts_what_the_reader_reads() {
        let body = b"\xEF\xBB\xBF{\"a\": 1}\r\n\r\n  \n{\"b\": 2}\r\n{}";
        assert_eq!(count_in(&body[..]).unwrap(), lines(body).unwrap().len());
        // A chunked reader: the count does not depend on where reads end.
        let reader = BufReader::with_capacity(2, &body[..]);
        assert_eq!(count_in(reader).unwrap(), 3);
    }

    #[test]
    fn files_are_read_and_missing_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        std::fs::write(&p, "{\"a\": 1}\n\n{\"a\": 2}\n").unwrap();
        let got: Vec<JsonLine> = JsonLines::open(&p).unwrap().collect::<Result<_>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(count_nonblank_lines(&p).unwrap(), 2);
        let missing = dir.path().join("missing.jsonl");
        let msg = JsonLines::open(&missing).err().unwrap().to_string();
        assert!(msg.starts_with("cannot read ") && msg.contains("missing.jsonl"), "{msg}");
        assert!(count_nonblank_lines(&missing).is_err());
    }
}
