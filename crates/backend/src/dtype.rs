//! Decoding stored tensor bytes (little-endian F32 / F16 / BF16 / F64) into f32 or f64 host vectors.

use half::{bf16, f16};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F16,
    BF16,
    F32,
    F64,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{len} bytes is not a whole number of {dtype:?} values")]
pub struct BadLength {
    pub len: usize,
    pub dtype: DType,
}

/// Decode to f64 (exact for every supported dtype).
pub fn decode_f64(dtype: DType, bytes: &[u8]) -> Result<Vec<f64>, BadLength> {
    if !bytes.len().is_multiple_of(dtype.size()) {
        return Err(BadLength { len: bytes.len(), dtype });
    }
    let c = bytes.chunks_exact(dtype.size());
    Ok(match dtype {
        DType::F16 => c.map(|b| f16::from_le_bytes([b[0], b[1]]).to_f64()).collect(),
        DType::BF16 => c.map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f64()).collect(),
        DType::F32 => c.map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        DType::F64 => c.map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
    })
}

/// Decode to f32 (exact for F16/BF16/F32; F64 is rounded).
pub fn decode_f32(dtype: DType, bytes: &[u8]) -> Result<Vec<f32>, BadLength> {
    if !bytes.len().is_multiple_of(dtype.size()) {
        return Err(BadLength { len: bytes.len(), dtype });
    }
    let c = bytes.chunks_exact(dtype.size());
    Ok(match dtype {
        DType::F16 => c.map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        DType::BF16 => c.map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        DType::F32 => c.map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        DType::F64 => c.map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
    })
}

pub fn encode_f32(values: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(values).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn decodes_each_dtype() {
        let v = [1.5f32, -2.25, 0.0];
        let f16b: Vec<u8> = v.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
        let bf16b: Vec<u8> = v.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect();
        assert_eq!(decode_f32(DType::F16, &f16b).unwrap(), v);
        assert_eq!(decode_f32(DType::BF16, &bf16b).unwrap(), v);
        assert_eq!(decode_f32(DType::F32, &encode_f32(&v)).unwrap(), v);
        assert!(decode_f32(DType::F32, &[0u8; 3]).is_err());
    }
}
