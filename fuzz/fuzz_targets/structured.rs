//! Builds a well-formed safetensors file from structured fuzzer input (random names,
//! dtypes including unknown ones, shapes, data, header entry order, `__metadata__`,
//! padding) and a random `RenderConfig`, so that the fuzzer gets past JSON parsing at
//! once and spends its time in the render pipeline.
//!
//! Unmutated, the file must validate, describe exactly the tensors built, and render
//! with no error (plus the checks of `common::check_render`); each tensor's `heatmap` is
//! then checked against a float64 reference computed here: block geometry, every grid
//! cell (NaN exactly when the cell has no finite member; max/min/absmax/sample exact;
//! mean/rms/std within a tolerance) and the full-data statistics.
//!
//! Optionally one mutation (flip, insert, truncate, append, change the header length)
//! is applied after building; then only the `check_render` invariants apply.
#![no_main]

use std::collections::HashSet;
use std::num::NonZeroUsize;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tensorheat::colour::Colormap;
use tensorheat::dtype::decode_one;
use tensorheat::source::{parse_header, TensorDtype};
use tensorheat::{heatmap, Dtype, FixedRange, Reduction, RenderConfig, Rgb, Size};

#[path = "common.rs"]
mod common;

const MAX_TENSORS: usize = 6;
const MAX_RANK: usize = 5;
const MAX_NUMEL: usize = 1 << 15;
const MAX_DATA: usize = 1 << 18;
#[derive(Arbitrary, Debug)]
struct Input {
    tensors: Vec<Spec>,
    metadata: Option<Vec<(String, String)>>,
    metadata_pos: u8,
    pad: u8,
    pool: Vec<u8>,
    config: Cfg,
    mutation: Option<Mutation>,
}

#[derive(Arbitrary, Debug)]
struct Spec {
    name: String,
    dtype: DtypeSel,
    shape: Vec<u32>,
    /// Position of the entry in the JSON header (data stay in spec order).
    order: u8,
    pool_start: u16,
}

#[derive(Arbitrary, Debug)]
enum DtypeSel {
    Known(u8),
    /// A dtype string (kept if tensorheat does not know it) and a byte length.
    Unknown(String, u8),
}

#[derive(Arbitrary, Debug)]
struct Cfg {
    reduce: u8,
    block: bool,
    h: u8,
    w: u8,
    keep_aspect: bool,
    clip: u8,
    range: Option<(i16, u16)>,
    colormap: Option<(u8, bool)>,
    nan: [u8; 3],
    raw: bool,
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    Flip { pos: u32, xor: u8 },
    Insert { pos: u32, byte: u8 },
    Truncate { by: u16 },
    Append { bytes: Vec<u8> },
    HeaderLen { delta: i16 },
}

struct Built {
    name: String,
    dtype: TensorDtype,
    shape: Vec<usize>,
    offsets: (usize, usize),
}

fuzz_target!(|input: Input| {
    let config = make_config(&input.config);
    let (mut file, built) = build(&input);

    if let Some(m) = &input.mutation {
        mutate(&mut file, m);
        common::check_render(&file, &config, None);
        return;
    }

    // The header says exactly what was built.
    let header = parse_header(std::path::Path::new("structured.safetensors"), &file)
        .unwrap_or_else(|e| panic!("a well-formed file is rejected: {e}"));
    let got: Vec<_> = header
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.dtype.clone(), t.shape.clone(), t.data_offsets))
        .collect();
    let want: Vec<_> = built
        .iter()
        .map(|b| (b.name.clone(), b.dtype.clone(), b.shape.clone(), b.offsets))
        .collect();
    // Equal offsets (empty tensors) may come in either order.
    let (mut g, mut w) = (got, want);
    g.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
    w.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
    assert_eq!(g, w, "parsed header differs from the one built");

    let report = common::check_render(&file, &config, Some("structured"));
    let m = &report.manifest;
    let renderable: Vec<&Built> = built
        .iter()
        .filter(|b| matches!(b.dtype, TensorDtype::Known(_)) && b.shape.iter().product::<usize>() > 0)
        .collect();
    assert_eq!(m.tensors.len(), renderable.len(), "rendered {:?}", m.tensors);
    assert_eq!(m.skipped.len(), built.len() - renderable.len());

    let data_start = 8 + header.header_len;
    for b in renderable {
        let TensorDtype::Known(dtype) = b.dtype else { unreachable!() };
        let entry = m.tensors.iter().find(|t| t.name == b.name).expect("tensor in manifest");
        assert_eq!(entry.shape, b.shape);
        assert_eq!(entry.dtype, dtype.name());
        let data = &file[data_start + b.offsets.0..data_start + b.offsets.1];
        let h = heatmap(&b.name, data, dtype, &b.shape, &config)
            .unwrap_or_else(|e| panic!("heatmap of a valid tensor fails: {e}"));
        // Debug text, so that a NaN would compare equal to itself.
        assert_eq!(
            format!("{:?}", entry.stats),
            format!("{:?}", h.stats),
            "{}: manifest stats differ from heatmap's",
            b.name
        );
        check_heatmap(&b.name, &h, data, dtype, &b.shape, &config);
    }
});

fn make_config(c: &Cfg) -> RenderConfig {
    let nz = |v: u8| NonZeroUsize::new(usize::from(v % 64) + 1).unwrap();
    let size = if c.block {
        Size::Block(nz(c.h), nz(c.w))
    } else {
        Size::MaxSize(nz(c.h), nz(c.w))
    };
    let range = c.range.map(|(lo, width)| {
        let lo = f64::from(lo) / 16.0;
        FixedRange {
            lo,
            hi: lo + (f64::from(width) + 1.0) / 16.0,
        }
    });
    let colormap = c.colormap.map(|(i, rev)| {
        let names: Vec<&str> = Colormap::names().collect();
        let name = names[usize::from(i) % names.len()];
        let name = if rev { format!("{name}_r") } else { name.to_owned() };
        name.parse::<Colormap>().expect("listed colormap parses")
    });
    RenderConfig {
        reduce: Reduction::ALL[usize::from(c.reduce) % Reduction::ALL.len()],
        size,
        keep_aspect: c.keep_aspect,
        // validate() takes clip in [50, 100].
        clip: 50.0 + f64::from(c.clip) * 50.0 / 255.0,
        range,
        colormap,
        nan_color: Rgb(c.nan),
        raw: c.raw,
        ..RenderConfig::default()
    }
}

fn build(input: &Input) -> (Vec<u8>, Vec<Built>) {
    let mut built = Vec::new();
    let mut entries = Vec::new();
    let mut data = Vec::new();
    let mut seen = HashSet::new();
    for (i, spec) in input.tensors.iter().take(MAX_TENSORS).enumerate() {
        let mut name = spec.name.clone();
        let mut k = 0;
        while name == "__metadata__" || seen.contains(&name) {
            name = format!("{}#{i}.{k}", spec.name);
            k += 1;
        }
        let mut shape: Vec<usize> = spec.shape.iter().take(MAX_RANK).map(|&d| d as usize).collect();
        let numel = |s: &[usize]| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel(&shape).is_none_or(|n| n > MAX_NUMEL) {
            shape.iter_mut().for_each(|d| *d %= 8);
        }
        let numel = numel(&shape).expect("small shape");
        let (dtype, nbytes) = match &spec.dtype {
            DtypeSel::Known(k) => {
                let d = Dtype::all()[usize::from(*k) % Dtype::all().len()];
                (TensorDtype::Known(d), numel * d.size())
            }
            DtypeSel::Unknown(s, n) => match Dtype::parse(s) {
                Some(d) => (TensorDtype::Known(d), numel * d.size()),
                None => (TensorDtype::Unknown(s.clone()), usize::from(*n)),
            },
        };
        if data.len() + nbytes > MAX_DATA {
            break;
        }
        seen.insert(name.clone());
        let begin = data.len();
        if input.pool.is_empty() {
            data.resize(begin + nbytes, 0);
        } else {
            let start = usize::from(spec.pool_start) % input.pool.len();
            data.extend(input.pool.iter().cycle().skip(start).take(nbytes));
        }
        let offsets = (begin, data.len());
        let json = format!(
            "{}:{{\"dtype\":{},\"shape\":{},\"data_offsets\":[{},{}]}}",
            serde_json::to_string(&name).unwrap(),
            serde_json::to_string(dtype.name()).unwrap(),
            serde_json::to_string(&shape).unwrap(),
            offsets.0,
            offsets.1
        );
        entries.push((spec.order, i, json));
        built.push(Built {
            name,
            dtype,
            shape,
            offsets,
        });
    }
    entries.sort_by_key(|e| (e.0, e.1));
    let mut parts: Vec<String> = entries.into_iter().map(|e| e.2).collect();
    if let Some(meta) = &input.metadata {
        let map: serde_json::Map<String, serde_json::Value> = meta
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let json = format!("\"__metadata__\":{}", serde_json::Value::Object(map));
        let pos = usize::from(input.metadata_pos) % (parts.len() + 1);
        parts.insert(pos, json);
    }
    let mut header = format!("{{{}}}", parts.join(","));
    header.extend(std::iter::repeat_n(' ', usize::from(input.pad % 9)));
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&data);
    (file, built)
}

fn mutate(file: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip { pos, xor } => {
            let n = file.len();
            file[*pos as usize % n] ^= xor.max(&1);
        }
        Mutation::Insert { pos, byte } => {
            let at = *pos as usize % (file.len() + 1);
            file.insert(at, *byte);
        }
        Mutation::Truncate { by } => {
            let keep = file.len().saturating_sub(usize::from(*by).max(1));
            file.truncate(keep);
        }
        Mutation::Append { bytes } => file.extend_from_slice(bytes),
        Mutation::HeaderLen { delta } => {
            let n = u64::from_le_bytes(file[..8].try_into().unwrap());
            let n = n.wrapping_add_signed(i64::from(*delta));
            file[..8].copy_from_slice(&n.to_le_bytes());
        }
    }
}

fn check_heatmap(
    name: &str,
    h: &tensorheat::Heatmap,
    data: &[u8],
    dtype: Dtype,
    shape: &[usize],
    config: &RenderConfig,
) {
    // Geometry, as documented in view.rs.
    let (rows, cols) = match shape.split_last() {
        None => (1, 1),
        Some((&c, lead)) => (lead.iter().product(), c),
    };
    let g = h.geometry;
    assert_eq!((g.rows, g.cols), (rows, cols), "{name}: view");
    let (mut bh, mut bw) = match config.size {
        Size::MaxSize(mh, mw) => (rows.div_ceil(mh.get()), cols.div_ceil(mw.get())),
        Size::Block(r, c) => (r.get(), c.get()),
    };
    if config.keep_aspect {
        bh = bh.max(bw);
        bw = bh;
    }
    assert_eq!((g.bh, g.bw), (bh.max(1), bw.max(1)), "{name}: blocks");
    let (gh, gw) = (rows.div_ceil(g.bh), cols.div_ceil(g.bw));
    assert_eq!(h.grid.len(), gh * gw, "{name}: grid length");
    assert!(h.png.starts_with(b"\x89PNG\r\n\x1a\n"));

    let size = dtype.size();
    let vals: Vec<f32> = data.chunks_exact(size).map(|b| decode_one(dtype, b)).collect();
    assert_eq!(vals.len(), rows * cols);

    // Full-data statistics.
    let finite: Vec<f64> = vals.iter().filter(|v| v.is_finite()).map(|&v| f64::from(v)).collect();
    let s = &h.stats;
    assert_eq!(s.count, finite.len() as u64, "{name}: count");
    assert_eq!(s.nan, vals.iter().filter(|v| v.is_nan()).count() as u64, "{name}: nan");
    assert_eq!(s.inf, vals.iter().filter(|v| v.is_infinite()).count() as u64, "{name}: inf");
    assert_eq!(s.zeros, vals.iter().filter(|&&v| v == 0.0).count() as u64, "{name}: zeros");
    if finite.is_empty() {
        assert!(s.min.is_none() && s.max.is_none() && s.mean.is_none() && s.std.is_none());
    } else {
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!((s.min, s.max), (Some(lo), Some(hi)), "{name}: min/max");
        let maxabs = lo.abs().max(hi.abs());
        let n = finite.len() as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let var = finite.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        let (m, sd) = (s.mean.unwrap(), s.std.unwrap());
        assert!(
            m.is_finite() && (m - mean).abs() <= 2e-5 * maxabs + 1e-40,
            "{name}: stats mean {m} vs {mean}"
        );
        assert!(
            sd.is_finite() && (sd * sd - var).abs() <= 4e-5 * maxabs * maxabs + 1e-40,
            "{name}: stats std {sd} vs {}",
            var.sqrt()
        );
    }

    // Every cell against a float64 reference.
    let mut cell = Vec::new();
    for i in 0..gh {
        for j in 0..gw {
            cell.clear();
            for r in i * g.bh..((i + 1) * g.bh).min(rows) {
                for c in j * g.bw..((j + 1) * g.bw).min(cols) {
                    let v = vals[r * cols + c];
                    if v.is_finite() {
                        cell.push(v);
                    }
                }
            }
            let got = h.grid[i * gw + j];
            check_cell(name, (i, j), &cell, got, config.reduce);
        }
    }

    // Colour range.
    let any_finite = h.grid.iter().any(|v| v.is_finite());
    assert_eq!(h.range.is_some(), any_finite || config.range.is_some(), "{name}: range");
    if let (Some(r), Some(f)) = (h.range, config.range) {
        assert_eq!((r.lo, r.hi), (f.lo, f.hi));
    }
    if let Some(r) = h.range {
        assert!(r.lo.is_finite() && r.hi.is_finite() && r.lo <= r.hi, "{name}: range {r:?}");
    }
}

fn check_cell(name: &str, at: (usize, usize), cell: &[f32], got: f32, reduce: Reduction) {
    if cell.is_empty() {
        assert!(got.is_nan(), "{name} cell {at:?}: no finite member but value {got}");
        return;
    }
    let lo = cell.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = cell.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exact = match reduce {
        Reduction::Max => Some(hi),
        Reduction::Min => Some(lo),
        Reduction::AbsMax => Some(lo.abs().max(hi.abs())),
        Reduction::Sample => Some(cell[0]),
        _ => None,
    };
    if let Some(want) = exact {
        assert!(got == want, "{name} cell {at:?}: {reduce:?} is {got}, want {want} ({cell:?})");
        return;
    }
    let n = cell.len() as f64;
    let x: Vec<f64> = cell.iter().map(|&v| f64::from(v)).collect();
    let shift = x[0];
    let e_d2 = x.iter().map(|v| (v - shift) * (v - shift)).sum::<f64>() / n;
    let e_d = x.iter().map(|v| (v - shift).abs()).sum::<f64>() / n;
    let max_d = x.iter().map(|v| (v - shift).abs()).fold(0.0, f64::max);
    let mean = x.iter().sum::<f64>() / n;
    let got = f64::from(got);
    assert!(got.is_finite(), "{name} cell {at:?}: {reduce:?} of finite values is {got} ({cell:?})");
    match reduce {
        Reduction::Mean => {
            let tol = 1e-5 * max_d + 1e-6 * mean.abs() + 1e-44;
            assert!((got - mean).abs() <= tol, "{name} cell {at:?}: mean {got}, want {mean} ({cell:?})");
        }
        Reduction::Std => {
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let tol = 1e-5 * e_d2 + 1e-40;
            assert!(
                got >= 0.0 && (got * got - var).abs() <= tol,
                "{name} cell {at:?}: std {got}, want {} ({cell:?})",
                var.sqrt()
            );
        }
        Reduction::Rms => {
            let ms = x.iter().map(|v| v * v).sum::<f64>() / n;
            let tol = 1e-5 * (e_d2 + 2.0 * shift.abs() * e_d + shift * shift) + 1e-40;
            assert!(
                got >= 0.0 && (got * got - ms).abs() <= tol,
                "{name} cell {at:?}: rms {got}, want {} ({cell:?})",
                ms.sqrt()
            );
        }
        _ => unreachable!(),
    }
}
