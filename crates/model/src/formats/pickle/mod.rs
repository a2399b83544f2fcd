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
//!
//! This module holds the object model: the allow-list ([`Global`]), the objects ([`Obj`]) and the parsed
//! [`Pickle`] with the typed accessors the format readers use. The interpreter, the one opcode table that
//! builds them ([`parse`]), is `machine`.

mod machine;

pub use machine::parse;

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
            ("torch", n) if TORCH_STORAGES.contains(&n) => {
                Global::Storage(TORCH_STORAGES.iter().find(|s| **s == n).expect("listed"))
            }
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
    Call {
        func: Global,
        args: Id,
        state: Option<Id>,
    },
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

impl<'a> Pickle<'a> {
    pub fn get(&self, id: Id) -> &Obj {
        &self.arena[id]
    }
    /// The bytes of a `bytes` object, borrowed from the input where they lie in it.
    pub fn bytes_cow(&self, id: Id) -> Result<std::borrow::Cow<'a, [u8]>, String> {
        match self.get(id) {
            Obj::Bytes(ByteData::Input { start, len }) => {
                Ok(std::borrow::Cow::Borrowed(&self.input[*start..*start + *len]))
            }
            Obj::Bytes(ByteData::Owned(v)) => Ok(std::borrow::Cow::Owned(v.clone())),
            other => Err(format!("{}, not bytes", other.kind())),
        }
    }
    /// A str (or a Python 2 byte string that is UTF-8), for names.
    pub fn str(&self, id: Id) -> Result<&str, String> {
        match self.get(id) {
            Obj::Str(s) => Ok(s),
            Obj::Bytes(ByteData::Input { start, len }) => std::str::from_utf8(&self.input[*start..*start + *len])
                .map_err(|_| "a byte string that is not UTF-8".to_string()),
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
