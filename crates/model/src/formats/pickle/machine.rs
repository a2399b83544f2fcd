//! The pickle interpreter: a stack machine with CPython's metastack of MARKs and a memo, one `match` arm
//! per opcode, building the object tree of [`super`] in an arena and refusing every global outside the
//! allow-list and every opcode no tensor file uses.

use super::{ByteData, Global, Id, Obj, Options, Pickle, PickleError};
use std::collections::HashMap;

/// Parse one pickle that starts at `start` in `input`.
pub fn parse(input: &[u8], start: usize, opts: Options) -> Result<Pickle<'_>, PickleError> {
    Machine { input, pos: start, opts, arena: Vec::new(), stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() }
        .run()
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    opts: Options,
    arena: Vec<Obj>,
    stack: Vec<Id>,
    /// Stack lengths at each MARK (CPython's metastack).
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

/// Names of the opcodes refused, for messages.
fn unsupported_name(op: u8) -> Option<&'static str> {
    Some(match op {
        b'i' => "INST",
        b'o' => "OBJ",
        0x92 => "NEWOBJ_EX",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        b'S' => "STRING",
        b'V' => "UNICODE",
        _ => return None,
    })
}

impl<'a> Machine<'a> {
    fn err<T>(&self, at: usize, msg: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError { pos: at, msg: msg.into() })
    }

    fn take(&mut self, n: usize) -> Result<(usize, &'a [u8]), PickleError> {
        let start = self.pos;
        match start.checked_add(n).filter(|&end| end <= self.input.len()) {
            Some(end) => {
                self.pos = end;
                Ok((start, &self.input[start..end]))
            }
            None => self.err(
                start,
                format!("truncated: {n} more bytes needed, {} left", self.input.len() - start.min(self.input.len())),
            ),
        }
    }
    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?.1[0])
    }
    fn u16(&mut self) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(self.take(2)?.1.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take(4)?.1.try_into().expect("4 bytes")))
    }
    fn i32(&mut self) -> Result<i32, PickleError> {
        Ok(i32::from_le_bytes(self.take(4)?.1.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.take(8)?.1.try_into().expect("8 bytes")))
    }
    fn len_u64(&mut self) -> Result<usize, PickleError> {
        let at = self.pos;
        let n = self.u64()?;
        usize::try_from(n).or_else(|_| self.err(at, format!("length {n} is too large")))
    }
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let start = self.pos;
        let rest = &self.input[start.min(self.input.len())..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return self.err(start, "truncated: no end of line");
        };
        self.pos = start + n + 1;
        let line = &rest[..n];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        std::str::from_utf8(line).or_else(|_| self.err(start, "a text argument is not UTF-8"))
    }

    fn alloc(&mut self, o: Obj) -> Id {
        self.arena.push(o);
        self.arena.len() - 1
    }
    fn push(&mut self, o: Obj) {
        let id = self.alloc(o);
        self.stack.push(id);
    }
    fn pop(&mut self, at: usize) -> Result<Id, PickleError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return self.err(at, "stack underflow (past a MARK)");
        }
        match self.stack.pop() {
            Some(id) => Ok(id),
            None => self.err(at, "stack underflow"),
        }
    }
    fn top(&self, at: usize) -> Result<Id, PickleError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return self.err(at, "empty stack (after a MARK)");
        }
        match self.stack.last() {
            Some(&id) => Ok(id),
            None => self.err(at, "empty stack"),
        }
    }
    fn pop_mark(&mut self, at: usize) -> Result<Vec<Id>, PickleError> {
        let Some(m) = self.marks.pop() else { return self.err(at, "no MARK to pop to") };
        Ok(self.stack.split_off(m))
    }
    fn memo_put(&mut self, at: usize, key: u64) -> Result<(), PickleError> {
        let id = self.top(at)?;
        self.memo.insert(key, id);
        Ok(())
    }
    fn memo_get(&mut self, at: usize, key: u64) -> Result<(), PickleError> {
        match self.memo.get(&key) {
            Some(&id) => {
                self.stack.push(id);
                Ok(())
            }
            None => self.err(at, format!("memo entry {key} is not defined")),
        }
    }
    fn string(&self, at: usize, b: &[u8]) -> Result<String, PickleError> {
        String::from_utf8(b.to_vec()).or_else(|_| self.err(at, "a str is not valid UTF-8"))
    }
    fn int_le(&self, at: usize, b: &[u8]) -> Result<i128, PickleError> {
        if b.is_empty() {
            return Ok(0);
        }
        if b.len() > 16 {
            return self.err(at, format!("an integer of {} bytes is too large", b.len()));
        }
        let fill = if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
        let mut buf = [fill; 16];
        buf[..b.len()].copy_from_slice(b);
        Ok(i128::from_le_bytes(buf))
    }
    fn set_items(&mut self, at: usize, target: Id, items: Vec<Id>) -> Result<(), PickleError> {
        if items.len() % 2 == 1 {
            return self.err(at, "SETITEMS with an odd number of items");
        }
        let pairs: Vec<(Id, Id)> = items.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        match &mut self.arena[target] {
            Obj::Dict(d) => {
                d.extend(pairs);
                Ok(())
            }
            other => {
                let k = other.kind();
                self.err(at, format!("SETITEM(S) on {k}, not a dict"))
            }
        }
    }

    /// `callable(*args)` for an allowed global: evaluated here when it only rebuilds plain data
    /// (`OrderedDict()`, `_codecs.encode`, `bytes()`), kept as an [`Obj::Call`] otherwise.
    fn call(&mut self, at: usize, callable: Id, args: Id) -> Result<Obj, PickleError> {
        let func = match &self.arena[callable] {
            Obj::Global(g) => g.clone(),
            other => return self.err(at, format!("REDUCE of {}, not an allowed constructor", other.kind())),
        };
        let argv = match &self.arena[args] {
            Obj::Tuple(v) => v.clone(),
            other => return self.err(at, format!("{} called with {}, not a tuple", func.name(), other.kind())),
        };
        match func {
            Global::OrderedDict => match argv.as_slice() {
                [] => Ok(Obj::Dict(vec![])),
                [items] => {
                    let list = match &self.arena[*items] {
                        Obj::List(v) | Obj::Tuple(v) => v.clone(),
                        other => return self.err(at, format!("OrderedDict of {}", other.kind())),
                    };
                    let mut pairs = vec![];
                    for p in list {
                        match &self.arena[p] {
                            Obj::Tuple(kv) if kv.len() == 2 => pairs.push((kv[0], kv[1])),
                            other => return self.err(at, format!("OrderedDict item {}, not a pair", other.kind())),
                        }
                    }
                    Ok(Obj::Dict(pairs))
                }
                _ => self.err(at, "OrderedDict with more than one argument"),
            },
            Global::CodecsEncode => {
                let (text, enc) = match argv.as_slice() {
                    [t, e] => (*t, *e),
                    _ => return self.err(at, "_codecs.encode needs 2 arguments"),
                };
                match &self.arena[enc] {
                    Obj::Str(e) if matches!(e.to_ascii_lowercase().as_str(), "latin1" | "latin-1" | "iso-8859-1") => {}
                    other => {
                        return self
                            .err(at, format!("_codecs.encode with encoding {}, not latin1", describe_short(other)))
                    }
                }
                let Obj::Str(s) = &self.arena[text] else { return self.err(at, "_codecs.encode of a non-str") };
                let mut out = Vec::with_capacity(s.len());
                for c in s.chars() {
                    match u8::try_from(c as u32) {
                        Ok(b) => out.push(b),
                        Err(_) => return self.err(at, "_codecs.encode: a character outside latin-1"),
                    }
                }
                Ok(Obj::Bytes(ByteData::Owned(out)))
            }
            Global::Bytes => match argv.as_slice() {
                [] => Ok(Obj::Bytes(ByteData::Owned(vec![]))),
                _ => self.err(at, "bytes() with arguments"),
            },
            Global::RebuildTensorV2
            | Global::RebuildParameter
            | Global::NumpyReconstruct
            | Global::NumpyDtype
            | Global::NumpyFrombuffer => Ok(Obj::Call { func, args, state: None }),
            Global::Storage(_) | Global::NumpyNdarray => {
                self.err(at, format!("{} is not called by tensor pickles", func.name()))
            }
        }
    }

    fn run(mut self) -> Result<Pickle<'a>, PickleError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let v = self.u8()?;
                    if v > 5 {
                        return self.err(at, format!("pickle protocol {v} is not supported (0 to 5)"));
                    }
                }
                0x95 => {
                    // FRAME: a length hint; the whole input is in memory.
                    self.u64()?;
                }
                b'.' => {
                    let root = self.pop(at)?;
                    return Ok(Pickle { input: self.input, arena: self.arena, root, end: self.pos });
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop(at)?;
                }
                b'1' => {
                    self.pop_mark(at)?;
                }
                b'2' => {
                    let id = self.top(at)?;
                    self.stack.push(id);
                }
                b'N' => self.push(Obj::None),
                0x88 => self.push(Obj::Bool(true)),
                0x89 => self.push(Obj::Bool(false)),
                b'I' => {
                    let l = self.line()?;
                    let o = match l {
                        "00" => Obj::Bool(false),
                        "01" => Obj::Bool(true),
                        _ => Obj::Int(l.parse().or_else(|_| self.err(at, format!("bad INT {l:?}")))?),
                    };
                    self.push(o);
                }
                b'L' => {
                    let l = self.line()?;
                    let v = l
                        .strip_suffix('L')
                        .unwrap_or(l)
                        .parse()
                        .or_else(|_| self.err(at, format!("bad LONG {l:?}")))?;
                    self.push(Obj::Int(v));
                }
                b'J' => {
                    let v = self.i32()?;
                    self.push(Obj::Int(v as i128));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Obj::Int(v as i128));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Obj::Int(v as i128));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let (_, b) = self.take(n)?;
                    let v = self.int_le(at, b)?;
                    self.push(Obj::Int(v));
                }
                0x8b => {
                    let n = self.i32()?;
                    if n < 0 {
                        return self.err(at, "LONG4 with a negative length");
                    }
                    let (_, b) = self.take(n as usize)?;
                    let v = self.int_le(at, b)?;
                    self.push(Obj::Int(v));
                }
                b'F' => {
                    let l = self.line()?;
                    let v = l.parse().or_else(|_| self.err(at, format!("bad FLOAT {l:?}")))?;
                    self.push(Obj::Float(v));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.1.try_into().expect("8 bytes"));
                    self.push(Obj::Float(v));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.u32()? as usize,
                        0x8c => self.u8()? as usize,
                        _ => self.len_u64()?,
                    };
                    let (_, b) = self.take(n)?;
                    let s = self.string(at, b)?;
                    self.push(Obj::Str(s));
                }
                b'T' | b'U' | b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'T' => {
                            let n = self.i32()?;
                            if n < 0 {
                                return self.err(at, "BINSTRING with a negative length");
                            }
                            n as usize
                        }
                        b'U' | b'C' => self.u8()? as usize,
                        b'B' => self.u32()? as usize,
                        _ => self.len_u64()?,
                    };
                    let (start, _) = self.take(n)?;
                    self.push(Obj::Bytes(ByteData::Input { start, len: n }));
                }
                b')' => self.push(Obj::Tuple(vec![])),
                b't' => {
                    let v = self.pop_mark(at)?;
                    self.push(Obj::Tuple(v));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut v = Vec::with_capacity(n);
                    for _ in 0..n {
                        v.push(self.pop(at)?);
                    }
                    v.reverse();
                    self.push(Obj::Tuple(v));
                }
                b']' => self.push(Obj::List(vec![])),
                b'l' => {
                    let v = self.pop_mark(at)?;
                    self.push(Obj::List(v));
                }
                b'a' | b'e' => {
                    let items = if op == b'a' { vec![self.pop(at)?] } else { self.pop_mark(at)? };
                    let target = self.top(at)?;
                    match &mut self.arena[target] {
                        Obj::List(l) => l.extend(items),
                        other => {
                            let k = other.kind();
                            return self.err(at, format!("APPEND(S) on {k}, not a list"));
                        }
                    }
                }
                b'}' => self.push(Obj::Dict(vec![])),
                b'd' => {
                    let items = self.pop_mark(at)?;
                    let d = self.alloc(Obj::Dict(vec![]));
                    self.set_items(at, d, items)?;
                    self.stack.push(d);
                }
                b's' => {
                    let v = self.pop(at)?;
                    let k = self.pop(at)?;
                    let target = self.top(at)?;
                    self.set_items(at, target, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark(at)?;
                    let target = self.top(at)?;
                    self.set_items(at, target, items)?;
                }
                0x8f => self.push(Obj::Set(vec![])),
                0x90 => {
                    let items = self.pop_mark(at)?;
                    let target = self.top(at)?;
                    match &mut self.arena[target] {
                        Obj::Set(s) => s.extend(items),
                        other => {
                            let k = other.kind();
                            return self.err(at, format!("ADDITEMS on {k}, not a set"));
                        }
                    }
                }
                0x91 => {
                    let v = self.pop_mark(at)?;
                    self.push(Obj::Set(v));
                }
                b'p' => {
                    let l = self.line()?;
                    let k = l.parse().or_else(|_| self.err(at, format!("bad PUT {l:?}")))?;
                    self.memo_put(at, k)?;
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo_put(at, k)?;
                }
                b'r' => {
                    let k = self.u32()? as u64;
                    self.memo_put(at, k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(at, k)?;
                }
                b'g' => {
                    let l = self.line()?;
                    let k = l.parse().or_else(|_| self.err(at, format!("bad GET {l:?}")))?;
                    self.memo_get(at, k)?;
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    self.memo_get(at, k)?;
                }
                b'j' => {
                    let k = self.u32()? as u64;
                    self.memo_get(at, k)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = Global::resolve(module, name).or_else(|m| self.err(at, m))?;
                    self.push(Obj::Global(g));
                }
                0x93 => {
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    let (Obj::Str(m), Obj::Str(n)) = (&self.arena[module], &self.arena[name]) else {
                        return self.err(at, "STACK_GLOBAL of non-strings");
                    };
                    let g = Global::resolve(m, n).or_else(|m| self.err(at, m))?;
                    self.push(Obj::Global(g));
                }
                b'R' | 0x81 => {
                    let args = self.pop(at)?;
                    let callable = self.pop(at)?;
                    let o = self.call(at, callable, args)?;
                    self.push(o);
                }
                b'b' => {
                    let state = self.pop(at)?;
                    let target = self.top(at)?;
                    let extra = match &self.arena[state] {
                        Obj::Dict(d) => Some(d.clone()),
                        _ => None,
                    };
                    match &mut self.arena[target] {
                        Obj::Call { state: s @ None, .. } => *s = Some(state),
                        // A dict's instance attributes (a PyTorch state dict's `_metadata`), not items.
                        Obj::Dict(_) if extra.is_some() => {}
                        other => {
                            let k = other.kind();
                            return self.err(at, format!("BUILD on {k}"));
                        }
                    }
                }
                b'P' | b'Q' => {
                    if !self.opts.persistent_ids {
                        return self.err(at, "a persistent id, which this format does not use");
                    }
                    let id = if op == b'P' {
                        let l = self.line()?.to_string();
                        self.alloc(Obj::Str(l))
                    } else {
                        self.pop(at)?
                    };
                    self.push(Obj::PersistentId(id));
                }
                _ => {
                    return match unsupported_name(op) {
                        Some(name) => self.err(
                            at,
                            format!("unsupported pickle opcode {name} (0x{op:02x}): not used by tensor files"),
                        ),
                        None => self.err(at, format!("unknown pickle opcode 0x{op:02x}")),
                    }
                }
            }
        }
    }
}

fn describe_short(o: &Obj) -> String {
    match o {
        Obj::Str(s) => format!("{s:?}"),
        other => other.kind(),
    }
}
