//! PyTorch `torch.save` state dicts (`pytorch_model.bin`), without Python or libtorch.
//!
//! Two layouts:
//! - the zip archive (PyTorch >= 1.6): `<name>/data.pkl` is the pickled state dict, each storage a
//!   stored (uncompressed) entry `<name>/data/<key>`, `<name>/byteorder` says `little` or `big`. The zip
//!   directory is read by the `zip` crate (no compression features: PyTorch does not compress);
//! - the legacy format (`_use_new_zipfile_serialization=False`, PyTorch < 1.6): five pickles in a row
//!   (magic number, protocol version, system info, the state dict, the list of storage keys), then each
//!   storage as an 8-byte element count and its raw bytes, in key order.
//!
//! In both, a tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` (perhaps
//! wrapped in `_rebuild_parameter`) and a storage a persistent id `('storage', torch.<Kind>Storage, key,
//! location, numel)`; [`super::pickle`] rebuilds these as data and this module copies each view out of
//! its storage (any strides). Tensors of an integer storage (an `int64` `position_ids` buffer) are kept
//! with their dtype marked unsupported: an error only if the model uses them.

use super::pickle::{self, Global, Id, Obj, Pickle};
use super::{gather, swap_bytes, Stored};
use ernie_backend::dtype::DType;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Cursor, Read};

/// `torch.serialization.MAGIC_NUMBER`, the first pickle of the legacy format.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
const LEGACY_PROTOCOL: i128 = 1001;

/// The element type of a storage class: a loadable dtype or its name, and its size in bytes.
fn storage_dtype(class: &str) -> (Result<DType, String>, usize) {
    match class {
        "FloatStorage" => (Ok(DType::F32), 4),
        "HalfStorage" => (Ok(DType::F16), 2),
        "BFloat16Storage" => (Ok(DType::BF16), 2),
        "DoubleStorage" => (Ok(DType::F64), 8),
        "LongStorage" => (Err("int64 (torch.LongStorage)".into()), 8),
        "IntStorage" => (Err("int32 (torch.IntStorage)".into()), 4),
        "ShortStorage" => (Err("int16 (torch.ShortStorage)".into()), 2),
        "CharStorage" => (Err("int8 (torch.CharStorage)".into()), 1),
        "ByteStorage" => (Err("uint8 (torch.ByteStorage)".into()), 1),
        other => (Err(format!("bool or another type (torch.{other})")), 1),
    }
}

/// One tensor record of the state dict: a view of a storage.
struct TensorRef {
    name: String,
    class: &'static str,
    key: String,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

/// The (name, tensor) entries of the pickled state dict.
fn tensor_refs(p: &Pickle<'_>) -> Result<Vec<TensorRef>, String> {
    let entries = p.dict(p.root).map_err(|e| format!("the pickle holds {e}: not a state dict"))?;
    let mut out = Vec::with_capacity(entries.len());
    for &(k, v) in entries {
        let name = p.str(k).map_err(|e| format!("a state dict key is {e}"))?.to_string();
        let r = tensor_ref(p, v, 0).map_err(|e| format!("tensor {name}: {e}"))?;
        out.push(TensorRef { name, ..r });
    }
    Ok(out)
}

fn tensor_ref(p: &Pickle<'_>, id: Id, depth: usize) -> Result<TensorRef, String> {
    let (func, args) = match p.get(id) {
        Obj::Call { func, args, .. } => (func, *args),
        other => return Err(format!("{} instead of a tensor", other.kind())),
    };
    let a = p.tuple(args)?;
    match func {
        Global::RebuildParameter if depth == 0 && !a.is_empty() => tensor_ref(p, a[0], 1),
        Global::RebuildTensorV2 if a.len() >= 4 => {
            let Obj::PersistentId(pid) = p.get(a[0]) else {
                return Err(format!("storage is {}, not a persistent id", p.get(a[0]).kind()));
            };
            let t = p.tuple(*pid).map_err(|e| format!("storage id is {e}"))?;
            if t.len() < 5 || p.str(t[0]).ok() != Some("storage") {
                return Err("the storage id is not ('storage', type, key, location, numel)".into());
            }
            let class = match p.get(t[1]) {
                Obj::Global(Global::Storage(c)) => *c,
                other => return Err(format!("storage type is {}", other.kind())),
            };
            if let Some(&view) = t.get(5) {
                if !matches!(p.get(view), Obj::None) {
                    return Err("a view of a storage view (PyTorch < 0.4 layout) is not supported".into());
                }
            }
            Ok(TensorRef {
                name: String::new(),
                class,
                key: p.str(t[2]).map_err(|e| format!("storage key is {e}"))?.to_string(),
                offset: p.usize(a[1]).map_err(|e| format!("storage offset: {e}"))?,
                size: p.sizes(a[2]).map_err(|e| format!("size: {e}"))?,
                stride: p.sizes(a[3]).map_err(|e| format!("stride: {e}"))?,
            })
        }
        other => Err(format!("{} with {} arguments instead of a tensor", other.name(), a.len())),
    }
}

/// Copy each tensor out of its storage (`storages[key]`, raw bytes in `big_endian` order or not).
fn materialise(
    refs: Vec<TensorRef>,
    storages: &HashMap<String, Cow<'_, [u8]>>,
    big_endian: bool,
) -> Result<Vec<Stored<'static>>, String> {
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let (dtype, elem) = storage_dtype(r.class);
        let bytes = if dtype.is_ok() {
            let storage = storages
                .get(&r.key)
                .ok_or_else(|| format!("tensor {}: storage {} is missing from the file", r.name, r.key))?;
            let mut b =
                gather(storage, elem, r.offset, &r.size, &r.stride).map_err(|e| format!("tensor {}: {e}", r.name))?;
            if big_endian {
                swap_bytes(&mut b, elem);
            }
            b
        } else {
            vec![]
        };
        out.push(Stored { name: r.name, dtype, shape: r.size, bytes: Cow::Owned(bytes), transposed: false });
    }
    Ok(out)
}

/// Read a `pytorch_model.bin` (either layout) into its tensors, under the names of the state dict.
pub fn read(bytes: &[u8]) -> Result<Vec<Stored<'static>>, String> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(bytes)
    } else if bytes.first() == Some(&0x80) {
        read_legacy(bytes)
    } else {
        Err("not a PyTorch checkpoint (neither a zip archive nor a pickle)".into())
    }
}

fn read_zip(bytes: &[u8]) -> Result<Vec<Stored<'static>>, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a valid zip archive: {e}"))?;
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    let pkls: Vec<&String> = names.iter().filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1).collect();
    let pkl = match pkls.as_slice() {
        [one] => (*one).clone(),
        [] if names.iter().any(|n| n.ends_with("constants.pkl")) => {
            return Err("a TorchScript archive (torch.jit.save), not a state dict saved by torch.save".into())
        }
        [] => return Err("no data.pkl in the zip archive: not a torch.save file".into()),
        _ => return Err(format!("several pickles in the archive: {pkls:?}")),
    };
    let prefix = pkl.strip_suffix("data.pkl").expect("filtered").to_string();
    let mut entry = |name: &str| -> Result<Option<Vec<u8>>, String> {
        let mut f = match zip.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(format!("{name}: {e}")),
        };
        // The declared size is the file's word: no larger than the archive for a stored entry.
        let mut v = Vec::with_capacity((f.size() as usize).min(bytes.len()));
        f.read_to_end(&mut v).map_err(|e| format!("{name}: {e}"))?;
        Ok(Some(v))
    };
    let big_endian = match entry(&format!("{prefix}byteorder"))? {
        None => false,
        Some(b) => match b.as_slice() {
            b"little" => false,
            b"big" => true,
            other => return Err(format!("byteorder {:?}", String::from_utf8_lossy(other))),
        },
    };
    let data = entry(&pkl)?.expect("listed");
    let p = pickle::parse(&data, 0, pickle::Options { persistent_ids: true }).map_err(|e| format!("{pkl}: {e}"))?;
    let refs = tensor_refs(&p).map_err(|e| format!("{pkl}: {e}"))?;
    let mut storages = HashMap::new();
    for r in &refs {
        if storage_dtype(r.class).0.is_err() || storages.contains_key(&r.key) {
            continue;
        }
        let name = format!("{prefix}data/{}", r.key);
        let b =
            entry(&name)?.ok_or_else(|| format!("tensor {}: storage {name} is missing from the archive", r.name))?;
        storages.insert(r.key.clone(), Cow::Owned(b));
    }
    materialise(refs, &storages, big_endian)
}

fn read_legacy(bytes: &[u8]) -> Result<Vec<Stored<'static>>, String> {
    let plain = pickle::Options::default();
    let magic = pickle::parse(bytes, 0, plain).map_err(|e| e.to_string())?;
    if magic.int(magic.root) != Ok(LEGACY_MAGIC) {
        return Err("a pickle, but not a PyTorch checkpoint (no torch.save magic number)".into());
    }
    let version = pickle::parse(bytes, magic.end, plain).map_err(|e| e.to_string())?;
    if version.int(version.root) != Ok(LEGACY_PROTOCOL) {
        return Err("unsupported legacy PyTorch protocol version".into());
    }
    let info = pickle::parse(bytes, version.end, plain).map_err(|e| e.to_string())?;
    let little = info
        .dict(info.root)
        .ok()
        .and_then(|d| d.iter().find(|(k, _)| info.str(*k) == Ok("little_endian")).map(|(_, v)| info.bool(*v)));
    let big_endian = match little {
        Some(Ok(l)) => !l,
        _ => return Err("the legacy header has no little_endian flag".into()),
    };
    let main = pickle::parse(bytes, info.end, pickle::Options { persistent_ids: true }).map_err(|e| e.to_string())?;
    let refs = tensor_refs(&main)?;
    let keys_p = pickle::parse(bytes, main.end, plain).map_err(|e| e.to_string())?;
    let keys: Vec<String> = match keys_p.get(keys_p.root) {
        Obj::List(v) => v.iter().map(|&k| keys_p.str(k).map(String::from)).collect::<Result<_, _>>()?,
        other => return Err(format!("the storage key list is {}", other.kind())),
    };
    let class_of: HashMap<&str, &'static str> = refs.iter().map(|r| (r.key.as_str(), r.class)).collect();
    let mut pos = keys_p.end;
    let mut storages = HashMap::new();
    for key in &keys {
        let class = class_of.get(key.as_str()).ok_or_else(|| format!("storage {key} is not used by any tensor"))?;
        let elem = storage_dtype(class).1;
        let n = bytes.get(pos..pos + 8).ok_or_else(|| format!("storage {key}: truncated file"))?;
        let numel = u64::from_le_bytes(n.try_into().expect("8 bytes"));
        let len = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(elem))
            .ok_or_else(|| format!("storage {key}: size {numel} overflows"))?;
        let data = bytes
            .get(pos + 8..pos + 8 + len)
            .ok_or_else(|| format!("storage {key}: truncated file ({len} bytes announced)"))?;
        storages.insert(key.clone(), Cow::Borrowed(data));
        pos += 8 + len;
    }
    materialise(refs, &storages, big_endian)
}
