//! PaddleNLP `model_state.pdparams`: what `paddle.save(model.state_dict())` writes — a pickled dict
//! (protocol 2 to 4) from structured parameter names to numpy arrays, plus the entry
//! `StructuredToParameterName@@` (Paddle's internal names, skipped). An array is
//! `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')` whose BUILD state is `(1, shape,
//! numpy.dtype(typestr), fortran_order, raw_bytes)` (`numpy._core` under numpy 2; protocol 2 stores the
//! bytes as `_codecs.encode(text, 'latin1')`); some writers store a tensor as a `(name, array)` pair.
//!
//! Names are PaddleNLP's (`ernie.encoder.layers.N.self_attn.q_proj`, `linear1`, `norm1`, ...) and are
//! mapped to HF's here, the map checked against nghuyong's ERNIE-Pytorch conversion script
//! (`convert.py`, `build_params_map`). Paddle's `nn.Linear` stores its weight `[in, out]` (it computes
//! `x @ W`), the transpose of PyTorch's `[out, in]`: every Linear weight (attention projections, FFN,
//! pooler, classifier) is marked transposed and turned back when loaded. Pre-training heads (`cls.*`) are
//! skipped; any other name is an error naming it.

use super::pickle::{self, Global, Id, Obj, Pickle};
use super::{gather, swap_bytes, Stored, TensorTable};
use ernie_backend::dtype::DType;
use std::borrow::Cow;

/// The map from a PaddleNLP ERNIE parameter name to `(HF name, stored transposed)`; `None` for a name
/// that is not an ERNIE parameter. The `ernie.` prefix is optional (a bare `ErnieModel` saves without it).
pub fn hf_name(paddle: &str) -> Option<(String, bool)> {
    if let Some(rest) = paddle.strip_prefix("classifier.") {
        return match rest {
            "weight" => Some(("classifier.weight".into(), true)),
            "bias" => Some(("classifier.bias".into(), false)),
            _ => None,
        };
    }
    let body = paddle.strip_prefix("ernie.").unwrap_or(paddle);
    let (name, t) = match body {
        "embeddings.word_embeddings.weight"
        | "embeddings.position_embeddings.weight"
        | "embeddings.token_type_embeddings.weight"
        | "embeddings.task_type_embeddings.weight" => (body.to_string(), false),
        "embeddings.layer_norm.weight" => ("embeddings.LayerNorm.weight".into(), false),
        "embeddings.layer_norm.bias" => ("embeddings.LayerNorm.bias".into(), false),
        "pooler.dense.weight" => ("pooler.dense.weight".into(), true),
        "pooler.dense.bias" => ("pooler.dense.bias".into(), false),
        _ => {
            let rest = body.strip_prefix("encoder.layers.")?;
            let (n, rest) = rest.split_once('.')?;
            let n: usize = n.parse().ok().filter(|_| !n.starts_with('+'))?;
            let (module, param) = rest.rsplit_once('.')?;
            let hf_module = match module {
                "self_attn.q_proj" => "attention.self.query",
                "self_attn.k_proj" => "attention.self.key",
                "self_attn.v_proj" => "attention.self.value",
                "self_attn.out_proj" => "attention.output.dense",
                "norm1" => "attention.output.LayerNorm",
                "linear1" => "intermediate.dense",
                "linear2" => "output.dense",
                "norm2" => "output.LayerNorm",
                _ => return None,
            };
            if param != "weight" && param != "bias" {
                return None;
            }
            let linear = !module.starts_with("norm");
            (format!("encoder.layer.{n}.{hf_module}.{param}"), linear && param == "weight")
        }
    };
    Some((format!("ernie.{name}"), t))
}

/// The PaddleNLP name of an HF parameter name without its prefix (`encoder.layer.1.output.dense.weight`
/// -> `ernie.encoder.layers.1.linear2.weight`), for messages: the inverse of [`hf_name`].
pub fn paddle_name(hf: &str) -> Option<String> {
    if hf.starts_with("classifier.") {
        return Some(hf.to_string());
    }
    let body = match hf {
        "embeddings.LayerNorm.weight" => "embeddings.layer_norm.weight".to_string(),
        "embeddings.LayerNorm.bias" => "embeddings.layer_norm.bias".to_string(),
        _ if hf.starts_with("embeddings.") || hf.starts_with("pooler.") => hf.to_string(),
        _ => {
            let rest = hf.strip_prefix("encoder.layer.")?;
            let (n, rest) = rest.split_once('.')?;
            let (module, param) = rest.rsplit_once('.')?;
            let m = match module {
                "attention.self.query" => "self_attn.q_proj",
                "attention.self.key" => "self_attn.k_proj",
                "attention.self.value" => "self_attn.v_proj",
                "attention.output.dense" => "self_attn.out_proj",
                "attention.output.LayerNorm" => "norm1",
                "intermediate.dense" => "linear1",
                "output.dense" => "linear2",
                "output.LayerNorm" => "norm2",
                _ => return None,
            };
            format!("encoder.layers.{n}.{m}.{param}")
        }
    };
    Some(format!("ernie.{body}"))
}

/// Entries of a pdparams file that are not parameters and are skipped: Paddle's name table and the
/// pre-training heads of `ErnieForPretraining` / `ErnieForMaskedLM` (`cls.predictions.*`).
pub fn ignorable(name: &str) -> bool {
    name == "StructuredToParameterName@@" || name.starts_with("cls.")
}

/// Read a pdparams file into HF-named tensors (Linear weights still `[in, out]`, marked transposed).
pub fn read(bytes: &[u8]) -> Result<TensorTable<'_>, String> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Err("a zip archive, not a pickled dict of numpy arrays (a PyTorch file named .pdparams?)".into());
    }
    let p = pickle::parse(bytes, 0, pickle::Options::default()).map_err(|e| e.to_string())?;
    let entries = p.dict(p.root).map_err(|e| format!("the pickle holds {e}, not a dict of parameters"))?;
    let mut table = TensorTable::default();
    for &(k, v) in entries {
        let name = p.str(k).map_err(|e| format!("a parameter name is {e}"))?.to_string();
        if name == "UnpackBigParamInfor@@" {
            return Err("parameters split into slices (UnpackBigParamInfor@@, arrays over 4 GB saved with protocol 2 or 3) are not supported".into());
        }
        if ignorable(&name) {
            continue;
        }
        let Some((hf, transposed)) = hf_name(&name) else {
            return Err(format!("tensor {name}: unknown PaddleNLP ERNIE parameter name (expected ernie.embeddings.*, ernie.encoder.layers.N.{{self_attn.{{q,k,v,out}}_proj,linear1,linear2,norm1,norm2}}.*, ernie.pooler.dense.*, classifier.*)"));
        };
        let (dtype, shape, bytes) = array(&p, v).map_err(|e| format!("tensor {name}: {e}"))?;
        table.insert(hf, Stored { name, dtype, shape, bytes, transposed })?;
    }
    Ok(table)
}

/// A numpy array: (dtype, shape, bytes little-endian in C order).
type Array<'a> = (Result<DType, String>, Vec<usize>, Cow<'a, [u8]>);

fn array<'a>(p: &Pickle<'a>, id: Id) -> Result<Array<'a>, String> {
    match p.get(id) {
        // paddle's reduce of a Tensor: (name, ndarray).
        Obj::Tuple(t) if t.len() == 2 && p.str(t[0]).is_ok() => ndarray(p, t[1]),
        _ => ndarray(p, id),
    }
}

fn ndarray<'a>(p: &Pickle<'a>, id: Id) -> Result<Array<'a>, String> {
    match p.get(id) {
        Obj::Call { func: Global::NumpyReconstruct, args, state } => {
            let a = p.tuple(*args)?;
            if !matches!(a.first().map(|&c| p.get(c)), Some(Obj::Global(Global::NumpyNdarray))) {
                return Err("_reconstruct of something other than numpy.ndarray".into());
            }
            let state = state.ok_or("an array without its state (no BUILD)")?;
            let s = p.tuple(state).map_err(|e| format!("array state is {e}"))?;
            let s = match s.len() {
                5 => &s[1..],
                4 => s,
                n => return Err(format!("array state of {n} items")),
            };
            let shape = p.sizes(s[0]).map_err(|e| format!("shape: {e}"))?;
            let fortran = p.bool(s[2]).map_err(|e| format!("fortran flag: {e}"))?;
            if matches!(p.get(s[3]), Obj::List(_)) {
                return Err("an object array, not numbers".into());
            }
            let data = p.bytes_cow(s[3]).map_err(|e| format!("array data is {e}"))?;
            finish(p, s[1], shape, fortran, data)
        }
        Obj::Call { func: Global::NumpyFrombuffer, args, .. } => {
            let a = p.tuple(*args)?;
            if a.len() != 4 {
                return Err("_frombuffer with other than 4 arguments".into());
            }
            let data = p.bytes_cow(a[0]).map_err(|e| format!("array data is {e}"))?;
            let shape = p.sizes(a[2]).map_err(|e| format!("shape: {e}"))?;
            let fortran = match p.str(a[3])? {
                "C" => false,
                "F" => true,
                o => return Err(format!("array order {o:?}")),
            };
            finish(p, a[1], shape, fortran, data)
        }
        other => Err(format!("{} instead of a numpy array", other.kind())),
    }
}

fn finish<'a>(
    p: &Pickle<'a>,
    dtype_id: Id,
    shape: Vec<usize>,
    fortran: bool,
    data: Cow<'a, [u8]>,
) -> Result<Array<'a>, String> {
    let (dtype, size, big_endian) = numpy_dtype(p, dtype_id)?;
    let numel = shape.iter().try_fold(1usize, |a, &s| a.checked_mul(s)).ok_or("the shape overflows")?;
    if numel.checked_mul(size) != Some(data.len()) {
        return Err(format!("{} bytes of data for shape {shape:?} of {size}-byte elements", data.len()));
    }
    if dtype.is_err() {
        return Ok((dtype, shape, Cow::Borrowed(&[])));
    }
    let mut data = data;
    if fortran && shape.iter().filter(|&&s| s > 1).count() > 1 {
        // Column-major: element (i0, .., in) at sum(ik * prod(shape[..k])).
        let mut stride = Vec::with_capacity(shape.len());
        let mut acc = 1;
        for &s in &shape {
            stride.push(acc);
            acc *= s;
        }
        data = Cow::Owned(gather(&data, size, 0, &shape, &stride)?);
    }
    if big_endian {
        swap_bytes(data.to_mut(), size);
    }
    Ok((dtype, shape, data))
}

/// `numpy.dtype(typestr, align, copy)` + BUILD state `(version, byteorder, ...)`: (dtype, element size,
/// big-endian).
fn numpy_dtype(p: &Pickle<'_>, id: Id) -> Result<(Result<DType, String>, usize, bool), String> {
    let Obj::Call { func: Global::NumpyDtype, args, state } = p.get(id) else {
        return Err(format!("dtype is {}, not a numpy.dtype", p.get(id).kind()));
    };
    let a = p.tuple(*args)?;
    let typestr = a.first().map(|&t| p.str(t)).transpose()?.ok_or("numpy.dtype without a type")?;
    let order = match state {
        Some(s) => p.tuple(*s).ok().and_then(|t| t.get(1).and_then(|&o| p.str(o).ok())).unwrap_or("<"),
        None => "<",
    };
    let big = match order {
        ">" => true,
        "<" | "|" | "=" => false,
        o => return Err(format!("numpy byte order {o:?}")),
    };
    let kind = typestr.chars().next().map(String::from).unwrap_or_default();
    let size: usize = typestr[kind.len()..].parse().map_err(|_| format!("numpy dtype {typestr:?}"))?;
    let kind = kind.as_str();
    let dtype = match (kind, size) {
        ("f", 4) => Ok(DType::F32),
        ("f", 2) => Ok(DType::F16),
        ("f", 8) => Ok(DType::F64),
        ("u", 2) => {
            Err("uint16 (numpy's stand-in for Paddle bfloat16; save the model in float32 or float16)".to_string())
        }
        _ => Err(format!("numpy {typestr}")),
    };
    Ok((dtype, size, big))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_map_matches_nghuyong_convert() {
        // (PaddleNLP name, HF name, transposed): the table of ERNIE-Pytorch's build_params_map, with its
        // `gamma`/`beta` written as HF loads them (`weight`/`bias`), and the transposition rule of its
        // extract_and_convert (2-D weights under ernie.encoder / ernie.pooler).
        let cases = [
            ("ernie.embeddings.word_embeddings.weight", "ernie.embeddings.word_embeddings.weight", false),
            ("ernie.embeddings.position_embeddings.weight", "ernie.embeddings.position_embeddings.weight", false),
            ("ernie.embeddings.token_type_embeddings.weight", "ernie.embeddings.token_type_embeddings.weight", false),
            ("ernie.embeddings.task_type_embeddings.weight", "ernie.embeddings.task_type_embeddings.weight", false),
            ("ernie.embeddings.layer_norm.weight", "ernie.embeddings.LayerNorm.weight", false),
            ("ernie.embeddings.layer_norm.bias", "ernie.embeddings.LayerNorm.bias", false),
            (
                "ernie.encoder.layers.3.self_attn.q_proj.weight",
                "ernie.encoder.layer.3.attention.self.query.weight",
                true,
            ),
            ("ernie.encoder.layers.3.self_attn.q_proj.bias", "ernie.encoder.layer.3.attention.self.query.bias", false),
            ("ernie.encoder.layers.3.self_attn.k_proj.weight", "ernie.encoder.layer.3.attention.self.key.weight", true),
            ("ernie.encoder.layers.3.self_attn.k_proj.bias", "ernie.encoder.layer.3.attention.self.key.bias", false),
            (
                "ernie.encoder.layers.3.self_attn.v_proj.weight",
                "ernie.encoder.layer.3.attention.self.value.weight",
                true,
            ),
            ("ernie.encoder.layers.3.self_attn.v_proj.bias", "ernie.encoder.layer.3.attention.self.value.bias", false),
            (
                "ernie.encoder.layers.3.self_attn.out_proj.weight",
                "ernie.encoder.layer.3.attention.output.dense.weight",
                true,
            ),
            (
                "ernie.encoder.layers.3.self_attn.out_proj.bias",
                "ernie.encoder.layer.3.attention.output.dense.bias",
                false,
            ),
            ("ernie.encoder.layers.3.norm1.weight", "ernie.encoder.layer.3.attention.output.LayerNorm.weight", false),
            ("ernie.encoder.layers.3.norm1.bias", "ernie.encoder.layer.3.attention.output.LayerNorm.bias", false),
            ("ernie.encoder.layers.3.linear1.weight", "ernie.encoder.layer.3.intermediate.dense.weight", true),
            ("ernie.encoder.layers.3.linear1.bias", "ernie.encoder.layer.3.intermediate.dense.bias", false),
            ("ernie.encoder.layers.3.linear2.weight", "ernie.encoder.layer.3.output.dense.weight", true),
            ("ernie.encoder.layers.3.linear2.bias", "ernie.encoder.layer.3.output.dense.bias", false),
            ("ernie.encoder.layers.3.norm2.weight", "ernie.encoder.layer.3.output.LayerNorm.weight", false),
            ("ernie.encoder.layers.3.norm2.bias", "ernie.encoder.layer.3.output.LayerNorm.bias", false),
            ("ernie.pooler.dense.weight", "ernie.pooler.dense.weight", true),
            ("ernie.pooler.dense.bias", "ernie.pooler.dense.bias", false),
            ("classifier.weight", "classifier.weight", true),
            ("classifier.bias", "classifier.bias", false),
            // A bare ErnieModel's state dict has no prefix.
            ("encoder.layers.11.linear2.weight", "ernie.encoder.layer.11.output.dense.weight", true),
        ];
        for (paddle, hf, t) in cases {
            assert_eq!(hf_name(paddle), Some((hf.to_string(), t)), "{paddle}");
            let bare = hf.strip_prefix("ernie.").unwrap_or(hf);
            let back = paddle_name(bare).unwrap();
            assert_eq!(hf_name(&back), Some((hf.to_string(), t)), "{hf}");
        }
        for bad in [
            "ernie.encoder.layers.x.linear1.weight",
            "ernie.encoder.layers.0.self_attn.qkv_proj.weight",
            "ernie.encoder.layers.0.linear1.gamma",
            "ernie.encoder.layer.0.attention.self.query.weight",
            "ernie.embeddings.LayerNorm.weight",
            "classifier.dense.weight",
        ] {
            assert_eq!(hf_name(bad), None, "{bad}");
        }
        assert!(ignorable("cls.predictions.decoder_bias") && ignorable("StructuredToParameterName@@"));
    }
}
