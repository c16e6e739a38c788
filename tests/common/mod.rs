//! Shared helpers for the integration tests: running the binary, writing safetensors
//! files with the official `safetensors` crate, and reading `.npy`/manifest output.

#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

#[path = "rng.rs"]
mod rng;
pub use rng::Rng;

/// The `tensorheat` binary under test.
pub fn bin() -> Command {
    Command::cargo_bin("tensorheat").expect("binary built")
}

/// `tensorheat render INPUT -o OUT`, to add flags to.
pub fn render_cmd(input: &Path, out: &Path) -> Command {
    let mut c = bin();
    c.arg("render").arg(input).arg("-o").arg(out);
    c
}

/// Path of a committed fixture.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// One tensor to write: name, dtype, shape, little-endian bytes.
pub struct T {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl T {
    /// An F32 tensor from values.
    pub fn f32(name: &str, shape: &[usize], values: &[f32]) -> T {
        T {
            name: name.into(),
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A BF16 tensor from f32 values (truncated to bf16).
    pub fn bf16(name: &str, shape: &[usize], values: &[f32]) -> T {
        T {
            name: name.into(),
            dtype: Dtype::BF16,
            shape: shape.to_vec(),
            data: values
                .iter()
                .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
                .collect(),
        }
    }
}

/// Writes tensors with the official safetensors serializer.
pub fn write_safetensors(path: &Path, tensors: &[T]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|t| {
            let v = TensorView::new(t.dtype, t.shape.clone(), &t.data).expect("valid view");
            (t.name.clone(), v)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("write safetensors");
}

/// Reads a float32 `.npy` written by tensorheat: (shape, values).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(path).expect("read npy");
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00", "npy magic");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hlen]).expect("utf8 header");
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape");
    let shape: Vec<usize> = shape_txt
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().expect("dim"))
        .collect();
    let vals: Vec<f32> = b[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(vals.len(), shape.iter().product::<usize>());
    (shape, vals)
}

/// Parses `DIR/manifest.json`.
pub fn manifest(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest written");
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// The string `field` of each entry of the array `v[list]`, in order (a manifest's
/// tensor names, say).
pub fn fields<'a>(v: &'a serde_json::Value, list: &str, field: &str) -> Vec<&'a str> {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[field].as_str().unwrap())
        .collect()
}

/// Every file below `dir`, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("below").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// F8_E4M3 code → value, from the committed ml_dtypes table (independent of the code
/// under test).
pub fn e4m3_table() -> Vec<f32> {
    f8_table(131072)
}

/// F8_E5M2 code → value, from the same table.
pub fn e5m2_table() -> Vec<f32> {
    f8_table(131328)
}

/// The 256 values of an F8 dtype's codes, from word `at` of the committed table (F16,
/// BF16, F8_E4M3, F8_E5M2; see `tests/data/make_dtype_tables.py`).
fn f8_table(at: usize) -> Vec<f32> {
    let z = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dtype_tables.bin.zlib"),
    )
    .expect("dtype table");
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&z).expect("zlib");
    raw[at * 4..(at + 256) * 4]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Whether `r` gives one of the cell's elements (or its magnitude), so that a result is
/// exact rather than within a tolerance.
pub fn picks_an_element(r: tensorheat::Reduction) -> bool {
    use tensorheat::Reduction;

    matches!(
        r,
        Reduction::Max | Reduction::Min | Reduction::AbsMax | Reduction::Sample
    )
}

/// What a float64 reference computes for one cell under `r` (finite members only; NaN
/// when there is none).
pub fn naive_cell(vals: &[f64], r: tensorheat::Reduction) -> f64 {
    use tensorheat::Reduction;

    let f: Vec<f64> = vals.iter().copied().filter(|v| v.is_finite()).collect();
    if f.is_empty() {
        return f64::NAN;
    }
    let n = f.len() as f64;
    let mean = f.iter().sum::<f64>() / n;
    match r {
        Reduction::Mean => mean,
        Reduction::Rms => (f.iter().map(|v| v * v).sum::<f64>() / n).sqrt(),
        Reduction::AbsMax => f.iter().fold(0.0, |a, v| a.max(v.abs())),
        Reduction::Max => f.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Reduction::Min => f.iter().copied().fold(f64::INFINITY, f64::min),
        Reduction::Std => (f.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt(),
        Reduction::Sample => f[0],
    }
}
