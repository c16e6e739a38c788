//! Element types and their decoders.
//!
//! Decoding works on byte slices with `from_le_bytes`, never on typed slices: tensor data
//! need not be aligned (some writers do not pad the header to 8 bytes). Callers decode a
//! short run of elements into a small, L1-sized `f32` scratch buffer and aggregate it at
//! once; nothing ever decodes a whole tensor.

use half::f16;
use half::slice::HalfFloatSliceExt;

/// A safetensors element type that tensorheat can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// Boolean, one byte, decoded as 0 or 1.
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// 8-bit float, 5 exponent and 2 mantissa bits, with infinities.
    F8E5M2,
    /// 8-bit float, 4 exponent and 3 mantissa bits, "fn" variant (no infinities).
    F8E4M3,
    /// 8-bit power-of-two scale `2^(b-127)` (0xFF is NaN), used for block scales.
    F8E8M0,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// IEEE single precision.
    F32,
    /// IEEE double precision (rounded to `f32` for aggregation).
    F64,
    /// Signed 64-bit integer (rounded to `f32`).
    I64,
    /// Unsigned 64-bit integer (rounded to `f32`).
    U64,
}

const ALL: [Dtype; 16] = [
    Dtype::Bool,
    Dtype::U8,
    Dtype::I8,
    Dtype::F8E5M2,
    Dtype::F8E4M3,
    Dtype::F8E8M0,
    Dtype::I16,
    Dtype::U16,
    Dtype::F16,
    Dtype::BF16,
    Dtype::I32,
    Dtype::U32,
    Dtype::F32,
    Dtype::F64,
    Dtype::I64,
    Dtype::U64,
];

impl Dtype {
    /// Every decodable dtype.
    pub fn all() -> &'static [Dtype] {
        &ALL
    }

    /// Parses a safetensors dtype string (`"BF16"`, `"F8_E4M3"`, ...).
    pub fn parse(s: &str) -> Option<Dtype> {
        ALL.iter().copied().find(|d| d.name() == s)
    }

    /// The safetensors spelling of this dtype.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8E5M2 => "F8_E5M2",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::F8E8M0 => "F8_E8M0",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 | Dtype::F8E5M2 | Dtype::F8E4M3 | Dtype::F8E8M0 => {
                1
            }
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const fn e8m0_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = if b == 255 {
            0x7fc0_0000
        } else if b == 0 {
            0x0040_0000 // 2^-127, an f32 subnormal
        } else {
            (b as u32) << 23
        };
        b += 1;
    }
    t
}

static E8M0: [u32; 256] = e8m0_table();

/// F64 to f32, keeping finite values finite: beyond the f32 range they saturate at
/// ±f32::MAX instead of becoming infinities (which would be counted as such).
#[inline(always)]
fn f64_to_f32(x: f64) -> f32 {
    if x.is_finite() {
        x.clamp(-f64::from(f32::MAX), f64::from(f32::MAX)) as f32
    } else {
        x as f32
    }
}

/// F8_E4M3 ("fn": no infinities, `S.1111.111` is NaN) to f32, branch-free.
#[inline(always)]
fn e4m3(c: u8) -> f32 {
    let c = u32::from(c);
    let sign = (c & 0x80) << 24;
    let em = c & 0x7f;
    // Normal: move exponent and mantissa into place and re-bias the exponent by 127 - 7.
    let normal = f32::from_bits(sign | ((em << 20) + (120 << 23)));
    // Subnormal (exponent 0): m · 2^-9.
    let sub = f32::from_bits(sign | (em as f32 * (1.0 / 512.0)).to_bits());
    let v = if em < 8 { sub } else { normal };
    if em == 0x7f {
        f32::NAN
    } else {
        v
    }
}

/// F8_E5M2 (IEEE-like: exponent 31 is Inf/NaN) to f32, branch-free.
#[inline(always)]
fn e5m2(c: u8) -> f32 {
    let c = u32::from(c);
    let sign = (c & 0x80) << 24;
    let em = c & 0x7f;
    let normal = f32::from_bits(sign | ((em << 21) + (112 << 23)));
    let sub = f32::from_bits(sign | (em as f32 * (1.0 / 65536.0)).to_bits());
    let special = if em == 0x7c {
        f32::from_bits(sign | 0x7f80_0000)
    } else {
        f32::NAN
    };
    if em < 4 {
        sub
    } else if em >= 0x7c {
        special
    } else {
        normal
    }
}

/// Largest number of elements [`decode`] is meant to handle at once: a run this long
/// fits its scratch buffer in L1 alongside the source bytes.
pub const CHUNK: usize = 512;

/// Decodes `out.len()` little-endian elements of `dtype` from `bytes` into `out`.
///
/// `bytes.len()` must equal `out.len() * dtype.size()`; `out.len()` must be at most
/// [`CHUNK`] (F16 uses a stack scratch of that size).
#[inline(always)]
pub fn decode(dtype: Dtype, bytes: &[u8], out: &mut [f32]) {
    debug_assert_eq!(bytes.len(), out.len() * dtype.size());
    fn each<const N: usize>(bytes: &[u8], out: &mut [f32], f: impl Fn([u8; N]) -> f32) {
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(N)) {
            let mut a = [0u8; N];
            a.copy_from_slice(b);
            *o = f(a);
        }
    }
    fn table(bytes: &[u8], out: &mut [f32], t: &[u32; 256]) {
        for (o, &b) in out.iter_mut().zip(bytes) {
            *o = f32::from_bits(t[usize::from(b)]);
        }
    }
    match dtype {
        Dtype::Bool => each(bytes, out, |[b]| f32::from(u8::from(b != 0))),
        Dtype::U8 => each(bytes, out, |[b]| f32::from(b)),
        Dtype::I8 => each(bytes, out, |b| f32::from(i8::from_le_bytes(b))),
        // Arithmetic rather than a table lookup, so that the loop vectorises.
        Dtype::F8E4M3 => each(bytes, out, |[c]| e4m3(c)),
        Dtype::F8E5M2 => each(bytes, out, |[c]| e5m2(c)),
        Dtype::F8E8M0 => table(bytes, out, &E8M0),
        Dtype::I16 => each(bytes, out, |b| f32::from(i16::from_le_bytes(b))),
        Dtype::U16 => each(bytes, out, |b| f32::from(u16::from_le_bytes(b))),
        Dtype::BF16 => each(bytes, out, |b| {
            f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)
        }),
        Dtype::F16 => {
            // `half` converts slices with F16C when the CPU has it (runtime-detected).
            let mut bits = [0u16; CHUNK];
            let bits = &mut bits[..out.len()];
            for (o, b) in bits.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = u16::from_le_bytes([b[0], b[1]]);
            }
            let halves: &[f16] = half::slice::HalfBitsSliceExt::reinterpret_cast(&*bits);
            halves.convert_to_f32_slice(out);
        }
        Dtype::I32 => each(bytes, out, |b| i32::from_le_bytes(b) as f32),
        Dtype::U32 => each(bytes, out, |b| u32::from_le_bytes(b) as f32),
        Dtype::F32 => each(bytes, out, f32::from_le_bytes),
        Dtype::F64 => each(bytes, out, |b| f64_to_f32(f64::from_le_bytes(b))),
        Dtype::I64 => each(bytes, out, |b| i64::from_le_bytes(b) as f32),
        Dtype::U64 => each(bytes, out, |b| u64::from_le_bytes(b) as f32),
    }
}

/// Decodes one element (for tests and one-off lookups; the hot path uses [`decode`]).
///
/// # Panics
/// If `bytes` is shorter than one element of `dtype`.
pub fn decode_one(dtype: Dtype, bytes: &[u8]) -> f32 {
    let mut out = [0f32];
    decode(dtype, &bytes[..dtype.size()], &mut out);
    out[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decoded values for every F16 and BF16 bit pattern and every F8 code, computed by
    /// numpy/ml_dtypes (`tests/data/make_dtype_tables.py`), as f32 bit patterns.
    fn reference() -> Vec<u32> {
        let z = include_bytes!("../tests/data/dtype_tables.bin.zlib");
        let raw = miniz_oxide::inflate::decompress_to_vec_zlib(z).expect("valid zlib");
        raw.chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn check(dtype: Dtype, want: &[u32]) {
        let n = want.len();
        let bytes: Vec<u8> = (0..n)
            .flat_map(|i| {
                let le = (i as u16).to_le_bytes();
                le.into_iter().take(dtype.size())
            })
            .collect();
        let mut got = vec![0f32; n];
        for (o, b) in got
            .chunks_mut(CHUNK)
            .zip(bytes.chunks(CHUNK * dtype.size()))
        {
            decode(dtype, b, o);
        }
        for (i, (g, &w)) in got.iter().zip(want).enumerate() {
            let w = f32::from_bits(w);
            // NaN payloads are not part of the contract; NaN-ness and every other bit are.
            assert!(
                (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits(),
                "{dtype} code {i:#x}: got {g:e} ({:#010x}), want {w:e} ({:#010x})",
                g.to_bits(),
                w.to_bits()
            );
        }
    }

    #[test]
    fn every_half_and_f8_code_matches_ml_dtypes() {
        let t = reference();
        assert_eq!(t.len(), 2 * 65536 + 2 * 256);
        check(Dtype::F16, &t[..65536]);
        check(Dtype::BF16, &t[65536..131072]);
        check(Dtype::F8E4M3, &t[131072..131328]);
        check(Dtype::F8E5M2, &t[131328..]);
    }

    #[test]
    fn e4m3_extremes_are_the_fn_variant() {
        assert_eq!(decode_one(Dtype::F8E4M3, &[0x7e]), 448.0);
        assert!(decode_one(Dtype::F8E4M3, &[0x7f]).is_nan());
        assert_eq!(decode_one(Dtype::F8E4M3, &[0x01]), 2f32.powi(-9));
        assert_eq!(decode_one(Dtype::F8E5M2, &[0x7c]), f32::INFINITY);
        assert_eq!(decode_one(Dtype::F8E8M0, &[127]), 1.0);
        assert_eq!(decode_one(Dtype::F8E8M0, &[130]), 8.0);
        assert!(decode_one(Dtype::F8E8M0, &[255]).is_nan());
    }

    #[test]
    fn integers_and_bool_decode_exactly() {
        assert_eq!(decode_one(Dtype::I8, &[0x80]), -128.0);
        assert_eq!(decode_one(Dtype::U8, &[0xff]), 255.0);
        assert_eq!(decode_one(Dtype::I16, &(-300i16).to_le_bytes()), -300.0);
        assert_eq!(decode_one(Dtype::U16, &65535u16.to_le_bytes()), 65535.0);
        assert_eq!(decode_one(Dtype::I32, &(-7i32).to_le_bytes()), -7.0);
        assert_eq!(
            decode_one(Dtype::U32, &16_777_216u32.to_le_bytes()),
            16_777_216.0
        );
        assert_eq!(decode_one(Dtype::I64, &(-5i64).to_le_bytes()), -5.0);
        assert_eq!(
            decode_one(Dtype::U64, &(1u64 << 40).to_le_bytes()),
            2f32.powi(40)
        );
        assert_eq!(decode_one(Dtype::F64, &0.5f64.to_le_bytes()), 0.5);
        assert_eq!(decode_one(Dtype::F64, &1e300f64.to_le_bytes()), f32::MAX);
        assert_eq!(
            decode_one(Dtype::F64, &(-1e300f64).to_le_bytes()),
            -f32::MAX
        );
        assert_eq!(
            decode_one(Dtype::F64, &f64::NEG_INFINITY.to_le_bytes()),
            f32::NEG_INFINITY
        );
        assert!(decode_one(Dtype::F64, &f64::NAN.to_le_bytes()).is_nan());
        assert_eq!(decode_one(Dtype::Bool, &[0]), 0.0);
        assert_eq!(decode_one(Dtype::Bool, &[7]), 1.0);
    }

    #[test]
    fn names_round_trip() {
        for &d in Dtype::all() {
            assert_eq!(Dtype::parse(d.name()), Some(d));
        }
        assert_eq!(Dtype::parse("C64"), None);
    }

    #[test]
    fn unaligned_input_decodes() {
        let mut buf = [0u8; 1 + 3 * 4];
        for (i, v) in [1.5f32, -2.0, 3.25].iter().enumerate() {
            buf[1 + 4 * i..5 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        let mut out = [0f32; 3];
        decode(Dtype::F32, &buf[1..], &mut out);
        assert_eq!(out, [1.5, -2.0, 3.25]);
    }
}
