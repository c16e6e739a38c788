//! The binary on committed fixtures (written by the official Python safetensors writer)
//! against float64 expectations computed by numpy (`tests/fixtures/make_fixtures.py`):
//! every dtype, rank 0 to 4, partial edge cells, NaN/Inf/subnormal values, unaligned
//! data, each reduction. Both the `.npy` grid and the decoded PNG pixels are checked.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{fields, fixture, manifest, read_npy, render_cmd};
use serde::Deserialize;
use serde_json::Value;
use tensorheat::colour::Colormap;

#[derive(Deserialize)]
struct Expected {
    dtype: String,
    shape: Vec<usize>,
    stats: Option<ExpStats>,
    grids: Option<BTreeMap<String, ExpGrid>>,
    skipped: Option<String>,
}

#[derive(Deserialize)]
struct ExpStats {
    count: u64,
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
    std: Option<f64>,
    nan: u64,
    inf: u64,
    zeros: u64,
    /// The tensor's mean |x| (finite values), to three digits: what tolerances scale by.
    mean_abs: Option<f64>,
}

#[derive(Deserialize)]
struct ExpGrid {
    block: [usize; 2],
    grid: [usize; 2],
    /// Each cell's mean |x| (finite members), to three digits; absent for one-element
    /// cells, whose mean |x| is their mean's magnitude.
    mean_abs: Option<Vec<Vec<Option<f64>>>>,
    #[serde(flatten)]
    reductions: BTreeMap<String, Vec<Vec<Option<f64>>>>,
}

type File = BTreeMap<String, Expected>;

fn expected() -> BTreeMap<String, File> {
    let text = std::fs::read_to_string(fixture("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("parse expected.json")
}

/// Command-line flags for an expectation key.
fn size_flags(key: &str) -> Vec<String> {
    let (flag, value) = key.split_once('=').expect("key is flag=value");
    vec![format!("--{}", flag.replace('_', "-")), value.to_owned()]
}

fn close(got: f64, want: f64, scale: f64) -> bool {
    (got - want).abs() <= 1e-6 * want.abs() + 1e-5 * scale
}

/// How far a cell reduced by `reduce` may be from numpy's `want`: not at all for the
/// reductions that pick an element (but for its rounding to `f32`), otherwise the
/// contract's 1e-5 of the cell's mean |x|, plus the answer's rounding to `f32`.
fn cell_tolerance(reduce: &str, want: f64, mean_abs: f64) -> f64 {
    if matches!(reduce, "max" | "min" | "absmax" | "sample") {
        0.0
    } else {
        1e-5 * mean_abs + f64::from(f32::EPSILON) * want.abs()
    }
}

/// `want` rounded to `f32`, as the tool reports every value.
fn as_f32(want: f64) -> f64 {
    f64::from(want as f32)
}

/// numpy's default (linear) percentile, written naively.
fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let pos = p / 100.0 * (v.len() - 1) as f64;
    let (k, f) = (pos.floor() as usize, pos - pos.floor());
    if k + 1 < v.len() {
        v[k] + (v[k + 1] - v[k]) * f
    } else {
        v[k]
    }
}

/// The colour-range rule of DESIGN.md, re-derived from the expected grid.
fn expected_range(cells: &[f64], signed: bool, clip: f64) -> (f64, f64) {
    let mags: Vec<f64> = cells.iter().map(|v| v.abs()).collect();
    let hi = percentile(mags.clone(), clip);
    let (mn, mx) = cells
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if signed && mn < 0.0 && mx > 0.0 {
        let v = if hi > 0.0 { hi } else { mn.abs().max(mx) };
        return (-v, v);
    }
    let lo = percentile(mags, 100.0 - clip);
    let lo = if lo > hi / 2.0 { lo } else { 0.0 };
    if mx <= 0.0 {
        (-hi, -lo)
    } else {
        (lo, hi)
    }
}

/// The picture's pixels: each cell takes the colour of its bin of the range, cells
/// outside it the end colours, NaN cells `--nan-color`. A cell whose value lies closer to
/// an inner bin edge than its tolerance (`tol`) may land on either side.
fn check_png(dir: &Path, entry: &Value, want: &[Option<f64>], gw: usize, tol: &[f64]) {
    let img = image::open(dir.join(entry["image"].as_str().unwrap()))
        .expect("decode png")
        .to_rgb8();
    assert_eq!(img.width() as usize, gw);
    assert_eq!((img.width() * img.height()) as usize, want.len());
    let lut = entry["colormap"]
        .as_str()
        .unwrap()
        .parse::<Colormap>()
        .unwrap()
        .lut();
    let range = &entry["range"];
    for (k, w) in want.iter().enumerate() {
        let px = img.get_pixel((k % gw) as u32, (k / gw) as u32).0;
        match w {
            None => assert_eq!(px, [255, 0, 255], "NaN cell {k} takes --nan-color"),
            Some(v) => {
                let (lo, hi) = (range[0].as_f64().unwrap(), range[1].as_f64().unwrap());
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                let (raw, near) = (t * 256.0, (t * 256.0).round());
                // (Plus the binning's own `f32` arithmetic.)
                let slack = tol[k] + 1e-6 * v.abs() + 1e-6 * (hi - lo);
                let edge = (1.0..=255.0).contains(&near)
                    && (raw - near).abs() * (hi - lo) / 256.0 <= slack;
                if !edge {
                    let bin = raw.floor().clamp(0.0, 255.0) as usize;
                    assert_eq!(px, lut.0[bin], "cell {k} value {v} (bin {bin})");
                }
            }
        }
    }
}

fn run_file(file: &str, tensors: &File) {
    let mut keys: BTreeMap<(String, String), ()> = BTreeMap::new();
    for t in tensors.values() {
        for (key, g) in t.grids.iter().flatten() {
            for r in g.reductions.keys() {
                keys.insert((key.clone(), r.clone()), ());
            }
        }
    }
    for (key, reduce) in keys.keys() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        render_cmd(&fixture(file), &out)
            .args(["--raw", "--reduce", reduce])
            .args(size_flags(key))
            .assert()
            .success();
        let m = manifest(&out);
        let entries: BTreeMap<&str, &Value> = m["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e))
            .collect();
        let skipped = fields(&m, "skipped", "name");
        for (name, t) in tensors {
            let ctx = format!("{file} {name} {key} {reduce}");
            if let Some(reason) = &t.skipped {
                assert!(
                    skipped.contains(&name.as_str()),
                    "{ctx}: skipped ({reason})"
                );
                continue;
            }
            let e = entries
                .get(name.as_str())
                .unwrap_or_else(|| panic!("{ctx}: rendered"));
            assert_eq!(e["dtype"], t.dtype.as_str(), "{ctx}");
            assert_eq!(e["shape"], serde_json::json!(t.shape), "{ctx}");
            let s = t.stats.as_ref().unwrap();
            let scale = s.min.unwrap_or(0.0).abs().max(s.max.unwrap_or(0.0).abs());
            check_stats(&e["stats"], s, &ctx);
            let Some(g) = t.grids.as_ref().and_then(|g| g.get(key)) else {
                continue;
            };
            assert_eq!(e["block"], serde_json::json!(g.block), "{ctx}");
            assert_eq!(e["grid"], serde_json::json!(g.grid), "{ctx}");
            let Some(want) = g.reductions.get(reduce) else {
                continue;
            };
            let want: Vec<Option<f64>> = want.iter().flatten().copied().collect();
            let tol: Vec<f64> = match &g.mean_abs {
                Some(m) => m.iter().flatten().map(|m| m.unwrap_or(0.0)).collect(),
                None => want.iter().map(|w| w.unwrap_or(0.0).abs()).collect(),
            };
            assert_eq!(tol.len(), want.len(), "{ctx}");
            let tol: Vec<f64> = (want.iter().zip(&tol))
                .map(|(w, &m)| cell_tolerance(reduce, w.unwrap_or(0.0), m))
                .collect();
            let (shape, got) = read_npy(&out.join(e["raw"].as_str().unwrap()));
            assert_eq!(shape, g.grid.to_vec(), "{ctx}");
            assert_eq!(got.len(), want.len(), "{ctx}");
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                match w {
                    None => assert!(g.is_nan(), "{ctx}: cell {k} should be NaN, got {g}"),
                    Some(w) => assert!(
                        (f64::from(*g) - if tol[k] == 0.0 { as_f32(*w) } else { *w }).abs()
                            <= tol[k],
                        "{ctx}: cell {k}: got {g}, want {w}"
                    ),
                }
            }
            let finite: Vec<f64> = want.iter().flatten().copied().collect();
            if !finite.is_empty() {
                let signed = matches!(reduce.as_str(), "mean" | "max" | "min" | "sample");
                let (lo, hi) = expected_range(&finite, signed, 99.5);
                let r = &e["range"];
                assert!(close(r[0].as_f64().unwrap(), lo, scale), "{ctx}: range lo");
                assert!(close(r[1].as_f64().unwrap(), hi, scale), "{ctx}: range hi");
                let cmap = e["colormap"].as_str().unwrap();
                let diverging = lo < 0.0 && hi > 0.0;
                assert_eq!(cmap, if diverging { "RdBu_r" } else { "viridis" }, "{ctx}");
            }
            check_png(&out, e, &want, g.grid[1], &tol);
        }
    }
}

/// The statistics: counts exactly, extremes as the values' `f32`, mean and std within a
/// millionth of the mean |x| (and of themselves).
fn check_stats(got: &Value, want: &ExpStats, ctx: &str) {
    for (k, w) in [
        ("count", want.count),
        ("nan", want.nan),
        ("inf", want.inf),
        ("zeros", want.zeros),
    ] {
        assert_eq!(got[k].as_u64(), Some(w), "{ctx}: stats.{k}");
    }
    for (k, w) in [
        ("min", want.min),
        ("max", want.max),
        ("mean", want.mean),
        ("std", want.std),
    ] {
        match w {
            None => assert!(got[k].is_null(), "{ctx}: stats.{k} should be null"),
            Some(w) => {
                let g = got[k]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{ctx}: stats.{k}"));
                let tol = if matches!(k, "min" | "max") {
                    0.0
                } else {
                    1e-6 * (want.mean_abs.unwrap() + w.abs())
                };
                let w = if tol == 0.0 { as_f32(w) } else { w };
                assert!((g - w).abs() <= tol, "{ctx}: stats.{k}: got {g}, want {w}");
            }
        }
    }
}

#[test]
fn gradients_in_every_dtype_match_numpy() {
    run_file(
        "gradients.safetensors",
        &expected()["gradients.safetensors"],
    );
}

#[test]
fn every_rank_and_odd_shape_matches_numpy() {
    run_file("shapes.safetensors", &expected()["shapes.safetensors"]);
}

#[test]
fn nan_inf_and_subnormals_match_numpy() {
    run_file("special.safetensors", &expected()["special.safetensors"]);
}

#[test]
fn unaligned_data_matches_numpy() {
    run_file(
        "unaligned.safetensors",
        &expected()["unaligned.safetensors"],
    );
}

#[test]
fn png_text_chunks_describe_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    render_cmd(&fixture("gradients.safetensors"), tmp.path())
        .assert()
        .success();
    let text = png_text(&tmp.path().join("grad_bf16.png"));
    assert_eq!(text["tensor"], "grad_bf16");
    assert_eq!(text["dtype"], "BF16");
    assert_eq!(text["shape"], "[12, 20]");
    assert_eq!(text["reduce"], "mean");
    assert!(text["range"].starts_with("[-3.69"), "{}", text["range"]);
    // Every picture's range in the manifest's numbers, written the same way ("0.0", not
    // "0"; "2.37e30", not thirty digits).
    for e in manifest(tmp.path())["tensors"].as_array().unwrap() {
        let text = png_text(&tmp.path().join(e["image"].as_str().unwrap()));
        assert_eq!(text["range"], e["range"].to_string().replace(',', ", "));
    }
}

/// A PNG's iTXt chunks by keyword.
fn png_text(path: &Path) -> BTreeMap<String, String> {
    let f = std::fs::File::open(path).unwrap();
    let reader = png::Decoder::new(std::io::BufReader::new(f))
        .read_info()
        .unwrap();
    reader
        .info()
        .utf8_text
        .iter()
        .map(|t| (t.keyword.clone(), t.get_text().unwrap()))
        .collect()
}
