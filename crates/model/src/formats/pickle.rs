//! A pickle reader that rebuilds data and never runs anything.
//!
//! PyTorch's `pytorch_model.bin` and PaddleNLP's `model_state.pdparams` are Python pickles. A pickle is a
//! program for a small stack machine whose `GLOBAL` + `REDUCE` opcodes import and call arbitrary Python
//! functions, so a checkpoint from the internet is untrusted input. This reader builds an object tree (an
//! arena of [`Obj`]) and calls nothing: a `GLOBAL` is accepted only when it names one of the data
//! constructors on the allow-list ([`Global`]) — PyTorch's tensor and storage rebuilders, numpy's array
//! and dtype reconstructors, `collections.OrderedDict` and `_codecs.encode` (how protocol 2 stores bytes)
//! — and a call of one of them becomes an [`Obj::Call`] node that the format readers ([`super::pytorch`],
//! [`super::paddle`]) interpret by hand. Any other global is an error naming it, before anything else is
//! read; so are the opcodes no tensor file uses (`INST`, `OBJ`, `NEWOBJ_EX`, the extension registry,
//! out-of-band buffers, the text `STRING` / `UNICODE` forms), each named with its byte offset.
//!
//! Why not a crate: candle-core's `pickle` module (the reference this follows: an object tree, tensors
//! recognised by `torch._utils._rebuild_tensor_v2` and persistent ids) reads only the opcodes of protocol
//! 2 as PyTorch writes it — not the protocol 4 opcodes (`FRAME`, `STACK_GLOBAL`, `MEMOIZE`,
//! `SHORT_BINUNICODE`, `BINBYTES`) that `paddle.save` writes, nor PyTorch's legacy non-zip format — it
//! restricts no globals, and depending on it would compile candle-core with its own tokenizers, rand,
//! float8 and zip versions on a 2-core CI. serde-pickle keeps no global names (it cannot tell an allowed
//! constructor from `os.system`, nor a numpy dtype's `'f4'` from its byte order) and has no persistent
//! ids. So this is a small interpreter (one opcode table, an arena, a memo), written from the pickle
//! protocol's definition (CPython's `Lib/pickletools.py`).
//!
//! Memo semantics are Python's: `PUT` stores a reference, so a `BUILD`, `SETITEMS` or `APPENDS` applied to
//! an object later is seen through every `GET` of it (numpy pickles its dtype once and refers to it from
//! every array).

use std::collections::HashMap;
use std::fmt;

/// Index of an object in [`Pickle::arena`].
pub type Id = usize;

/// The Python globals a checkpoint pickle may name: data constructors only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Global {
    /// `collections.OrderedDict` (a state dict, or a tensor's empty backward hooks).
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter(data, requires_grad, hooks[, state])`.
    RebuildParameter,
    /// `torch.<Kind>Storage` (the class name, e.g. `FloatStorage`).
    Storage(&'static str),
    /// `numpy.core.multiarray._reconstruct` / `numpy._core.multiarray._reconstruct`.
    NumpyReconstruct,
    /// `numpy.ndarray` (an argument of `_reconstruct`).
    NumpyNdarray,
    /// `numpy.dtype(typestr, align, copy)`, byte order in its BUILD state.
    NumpyDtype,
    /// `numpy.core.numeric._frombuffer(bytes, dtype, shape, order)` (numpy's protocol 5 form).
    NumpyFrombuffer,
    /// `_codecs.encode(text, 'latin1')`: how protocol 2 stores a `bytes` object.
    CodecsEncode,
    /// `builtins.bytes()` / `__builtin__.bytes()`: protocol 2's empty `bytes`.
    Bytes,
}

/// The storage classes a PyTorch pickle may name (their element types are decided by the reader).
pub const TORCH_STORAGES: [&str; 10] = [
    "FloatStorage",
    "HalfStorage",
    "BFloat16Storage",
    "DoubleStorage",
    "LongStorage",
    "IntStorage",
    "ShortStorage",
    "CharStorage",
    "ByteStorage",
    "BoolStorage",
];

impl Global {
    /// The allow-list. Anything else is refused with the name of the global.
    fn resolve(module: &str, name: &str) -> Result<Global, String> {
        Ok(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch", n) if TORCH_STORAGES.contains(&n) => Global::Storage(TORCH_STORAGES.iter().find(|s| **s == n).expect("listed")),
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => Global::NumpyReconstruct,
            ("numpy", "ndarray") => Global::NumpyNdarray,
            ("numpy", "dtype") => Global::NumpyDtype,
            ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Global::NumpyFrombuffer,
            ("_codecs", "encode") => Global::CodecsEncode,
            ("builtins" | "__builtin__", "bytes") => Global::Bytes,
            _ => {
                return Err(format!(
                    "the pickle names the Python global {module}.{name}, which is not an allowed tensor or array \
                     constructor: refused (nothing in the file is executed)"
                ))
            }
        })
    }

    pub fn name(&self) -> String {
        match self {
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::Storage(s) => format!("torch.{s}"),
            Global::NumpyReconstruct => "numpy.core.multiarray._reconstruct".into(),
            Global::NumpyNdarray => "numpy.ndarray".into(),
            Global::NumpyDtype => "numpy.dtype".into(),
            Global::NumpyFrombuffer => "numpy.core.numeric._frombuffer".into(),
            Global::CodecsEncode => "_codecs.encode".into(),
            Global::Bytes => "builtins.bytes".into(),
        }
    }
}

/// Bytes of a `bytes` object: a range of the input (no copy), or decoded from protocol 2's latin-1 text.
#[derive(Clone, Debug)]
pub enum ByteData {
    Input { start: usize, len: usize },
    Owned(Vec<u8>),
}

#[derive(Clone, Debug)]
pub enum Obj {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(ByteData),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    Global(Global),
    /// A call of an allowed constructor, not made: `func(*args)`, then `__setstate__(state)` if BUILT.
    Call { func: Global, args: Id, state: Option<Id> },
    /// `persistent_load(id)`: PyTorch's reference to a storage.
    PersistentId(Id),
}

impl Obj {
    pub fn kind(&self) -> String {
        match self {
            Obj::None => "None".into(),
            Obj::Bool(_) => "a bool".into(),
            Obj::Int(_) => "an int".into(),
            Obj::Float(_) => "a float".into(),
            Obj::Str(_) => "a str".into(),
            Obj::Bytes(_) => "bytes".into(),
            Obj::Tuple(_) => "a tuple".into(),
            Obj::List(_) => "a list".into(),
            Obj::Dict(_) => "a dict".into(),
            Obj::Set(_) => "a set".into(),
            Obj::Global(g) => g.name(),
            Obj::Call { func, .. } => format!("a {} call", func.name()),
            Obj::PersistentId(_) => "a persistent id".into(),
        }
    }
}

/// A parse error: the byte offset in the input and what went wrong.
#[derive(Debug, Clone)]
pub struct PickleError {
    pub pos: usize,
    pub msg: String,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pickle byte {}: {}", self.pos, self.msg)
    }
}

/// What a reader accepts besides plain data.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `PERSID` / `BINPERSID` (PyTorch storages).
    pub persistent_ids: bool,
}

/// A parsed pickle: its objects and the one `STOP` returned.
pub struct Pickle<'a> {
    input: &'a [u8],
    pub arena: Vec<Obj>,
    pub root: Id,
    /// Offset just after the `STOP` opcode (PyTorch's legacy format is several pickles in a row).
    pub end: usize,
}

/// Parse one pickle that starts at `start` in `input`.
pub fn parse(input: &[u8], start: usize, opts: Options) -> Result<Pickle<'_>, PickleError> {
    Machine { input, pos: start, opts, arena: Vec::new(), stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() }.run()
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
            None => self.err(start, format!("truncated: {n} more bytes needed, {} left", self.input.len() - start.min(self.input.len()))),
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
        let Some(n) = rest.iter().position(|&b| b == b'\n') else { return self.err(start, "truncated: no end of line") };
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
                    other => return self.err(at, format!("_codecs.encode with encoding {}, not latin1", describe_short(other))),
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
            Global::RebuildTensorV2 | Global::RebuildParameter | Global::NumpyReconstruct | Global::NumpyDtype | Global::NumpyFrombuffer => {
                Ok(Obj::Call { func, args, state: None })
            }
            Global::Storage(_) | Global::NumpyNdarray => self.err(at, format!("{} is not called by tensor pickles", func.name())),
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
                    let v = l.strip_suffix('L').unwrap_or(l).parse().or_else(|_| self.err(at, format!("bad LONG {l:?}")))?;
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
                        Some(name) => self.err(at, format!("unsupported pickle opcode {name} (0x{op:02x}): not used by tensor files")),
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

impl<'a> Pickle<'a> {
    pub fn get(&self, id: Id) -> &Obj {
        &self.arena[id]
    }
    /// The bytes of a `bytes` object, borrowed from the input where they lie in it.
    pub fn bytes_cow(&self, id: Id) -> Result<std::borrow::Cow<'a, [u8]>, String> {
        match self.get(id) {
            Obj::Bytes(ByteData::Input { start, len }) => Ok(std::borrow::Cow::Borrowed(&self.input[*start..*start + *len])),
            Obj::Bytes(ByteData::Owned(v)) => Ok(std::borrow::Cow::Owned(v.clone())),
            other => Err(format!("{}, not bytes", other.kind())),
        }
    }
    /// A str (or a Python 2 byte string that is UTF-8), for names.
    pub fn str(&self, id: Id) -> Result<&str, String> {
        match self.get(id) {
            Obj::Str(s) => Ok(s),
            Obj::Bytes(ByteData::Input { start, len }) => {
                std::str::from_utf8(&self.input[*start..*start + *len]).map_err(|_| "a byte string that is not UTF-8".to_string())
            }
            other => Err(format!("{}, not a str", other.kind())),
        }
    }
    pub fn int(&self, id: Id) -> Result<i128, String> {
        match self.get(id) {
            Obj::Int(v) => Ok(*v),
            Obj::Bool(b) => Ok(*b as i128),
            other => Err(format!("{}, not an int", other.kind())),
        }
    }
    pub fn usize(&self, id: Id) -> Result<usize, String> {
        let v = self.int(id)?;
        usize::try_from(v).map_err(|_| format!("{v} is not a size"))
    }
    pub fn bool(&self, id: Id) -> Result<bool, String> {
        match self.get(id) {
            Obj::Bool(b) => Ok(*b),
            Obj::Int(v) => Ok(*v != 0),
            other => Err(format!("{}, not a bool", other.kind())),
        }
    }
    pub fn tuple(&self, id: Id) -> Result<&[Id], String> {
        match self.get(id) {
            Obj::Tuple(v) => Ok(v),
            other => Err(format!("{}, not a tuple", other.kind())),
        }
    }
    /// A tuple or list of sizes (a shape or strides).
    pub fn sizes(&self, id: Id) -> Result<Vec<usize>, String> {
        match self.get(id) {
            Obj::Tuple(v) | Obj::List(v) => v.iter().map(|&i| self.usize(i)).collect(),
            other => Err(format!("{}, not a tuple of sizes", other.kind())),
        }
    }
    pub fn dict(&self, id: Id) -> Result<&[(Id, Id)], String> {
        match self.get(id) {
            Obj::Dict(v) => Ok(v),
            other => Err(format!("{}, not a dict", other.kind())),
        }
    }
    pub fn byte_data(&self, id: Id) -> Result<&[u8], String> {
        match self.get(id) {
            Obj::Bytes(ByteData::Input { start, len }) => Ok(&self.input[*start..*start + *len]),
            Obj::Bytes(ByteData::Owned(v)) => Ok(v),
            other => Err(format!("{}, not bytes", other.kind())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_kind(bytes: &[u8]) -> Result<String, String> {
        parse(bytes, 0, Options::default()).map(|p| p.get(p.root).kind()).map_err(|e| e.to_string())
    }

    #[test]
    fn refuses_code_and_names_the_global() {
        // The classic: os.system("echo pwned") in protocol 0.
        let evil = b"cos\nsystem\n(S'echo pwned'\ntR.";
        let e = root_kind(evil).unwrap_err();
        assert!(e.contains("os.system") && e.contains("not an allowed") && e.contains("byte 0"), "{e}");
        // STACK_GLOBAL form (protocol 4).
        let evil4 = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.";
        let e = root_kind(evil4).unwrap_err();
        assert!(e.contains("builtins.eval"), "{e}");
    }

    #[test]
    fn refuses_unsupported_opcodes() {
        let e = root_kind(b"(i__main__\nC\n.").unwrap_err();
        assert!(e.contains("INST") && e.contains("0x69"), "{e}");
        let e = root_kind(b"\x80\x02\xff.").unwrap_err();
        assert!(e.contains("unknown pickle opcode 0xff"), "{e}");
        let e = root_kind(b"\x80\x02X\x10\x00\x00\x00ab").unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let e = root_kind(b"Q.").unwrap_err();
        assert!(e.contains("persistent id"), "{e}");
    }

    #[test]
    fn memo_is_by_reference() {
        // d = {}; memo[0] = d; d['a'] = 1 (after the PUT); GET 0 sees it.
        let p = parse(b"\x80\x02}q\x00X\x01\x00\x00\x00aK\x01sh\x00\x86.", 0, Options::default()).unwrap();
        let t = p.tuple(p.root).unwrap().to_vec();
        assert_eq!(t[0], t[1]);
        assert_eq!(p.dict(t[1]).unwrap().len(), 1);
    }

    #[test]
    fn protocol_2_bytes_and_big_ints() {
        // _codecs.encode('\xff\x00', 'latin1') and a 10-byte LONG1.
        let mut b = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00\xc3\xbf\x00X\x06\x00\x00\x00latin1\x86R".to_vec();
        b.extend_from_slice(b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19\x86.");
        let p = parse(&b, 0, Options::default()).unwrap();
        let t = p.tuple(p.root).unwrap().to_vec();
        assert_eq!(p.byte_data(t[0]).unwrap(), &[0xff, 0x00]);
        assert_eq!(p.int(t[1]).unwrap(), 0x1950a86a20f9469cfc6c);
    }
}
