//! DeepSeek-style FP8 checkpoints: F8_E4M3 weights with per-128×128-tile scales in
//! another shard, partial edge tiles; dequantised grids against a float64 reference,
//! raw codes reaching ±448 in every tile, a missing scale, a config.json block size,
//! a scale that does not fit, and tile lines.

mod common;

use std::path::Path;

use common::{e4m3_table, manifest, read_npy, render_cmd, write_safetensors, Rng, T};
use predicates::prelude::*;
use safetensors::Dtype;

struct Quantised {
    rows: usize,
    cols: usize,
    codes: Vec<u8>,
    /// Per-tile scales, row-major `[ceil(rows/b), ceil(cols/b)]`.
    scales: Vec<f32>,
    block: usize,
}

/// Quantises random weights (each tile with its own spread) per `block × block` tile
/// the way FP8 checkpoints do: scale = amax / 448, code = nearest E4M3 value.
fn quantise(rows: usize, cols: usize, block: usize, seed: u64) -> Quantised {
    let table = e4m3_table();
    let mut rng = Rng::new(seed);
    let (tr, tc) = (rows.div_ceil(block), cols.div_ceil(block));
    let spread: Vec<f32> = (0..tr * tc).map(|_| 0.005 + 0.05 * rng.uniform()).collect();
    let w: Vec<f32> = (0..rows * cols)
        .map(|k| rng.normal() * spread[(k / cols / block) * tc + (k % cols) / block])
        .collect();
    let mut scales = vec![0f32; tr * tc];
    for (k, v) in w.iter().enumerate() {
        let t = (k / cols / block) * tc + (k % cols) / block;
        scales[t] = scales[t].max(v.abs() / 448.0);
    }
    let codes = w
        .iter()
        .enumerate()
        .map(|(k, v)| {
            let x = v / scales[(k / cols / block) * tc + (k % cols) / block];
            (0..=255u8)
                .filter(|&c| !table[c as usize].is_nan())
                .min_by(|&a, &b| {
                    (table[a as usize] - x)
                        .abs()
                        .total_cmp(&(table[b as usize] - x).abs())
                })
                .unwrap()
        })
        .collect();
    Quantised {
        rows,
        cols,
        codes,
        scales,
        block,
    }
}

impl Quantised {
    /// The dequantised weight at `(r, c)`, in float64: its code's value times its tile's
    /// scale.
    fn value(&self, table: &[f32], r: usize, c: usize) -> f64 {
        let tc = self.cols.div_ceil(self.block);
        f64::from(table[usize::from(self.codes[r * self.cols + c])])
            * f64::from(self.scales[(r / self.block) * tc + c / self.block])
    }
}

/// Asserts that `got`, the grid of `q`'s weights reduced by `mean` in `bh × bw` cells, is
/// within the contract's 1e-5 of each cell's mean |x| (plus the answer's rounding to
/// `f32`) of the float64 reference.
fn assert_dequantised_means(got: &[f32], q: &Quantised, bh: usize, bw: usize) {
    let table = e4m3_table();
    let value = |r, c| q.value(&table, r, c);
    let want = block_means(q.rows, q.cols, bh, bw, value);
    let mean_abs = block_means(q.rows, q.cols, bh, bw, |r, c| value(r, c).abs());
    assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        let tol = 1e-5 * mean_abs[k] + f64::from(f32::EPSILON) * w.abs();
        assert!((f64::from(*g) - w).abs() <= tol, "cell {k}: {g} vs {w}");
    }
}

fn f8(name: &str, q: &Quantised) -> T {
    T {
        name: name.into(),
        dtype: Dtype::F8_E4M3,
        shape: vec![q.rows, q.cols],
        data: q.codes.clone(),
    }
}

fn scale_tensor(name: &str, q: &Quantised) -> T {
    let shape = [q.rows.div_ceil(q.block), q.cols.div_ceil(q.block)];
    T::f32(&format!("{name}_scale_inv"), &shape, &q.scales)
}

/// Two shards and an index: weights in the first, their scales in the second.
fn write_model(dir: &Path, weights: &[(&str, &Quantised)], unscaled: Option<&Quantised>) {
    std::fs::create_dir_all(dir).unwrap();
    let mut shard1: Vec<T> = weights.iter().map(|(n, q)| f8(n, q)).collect();
    if let Some(q) = unscaled {
        shard1.push(f8("model.layers.0.mlp.gate_proj.weight", q));
    }
    let shard2: Vec<T> = weights.iter().map(|(n, q)| scale_tensor(n, q)).collect();
    let mut map = serde_json::Map::new();
    for (file, ts) in [
        ("model-00001-of-00002.safetensors", &shard1),
        ("model-00002-of-00002.safetensors", &shard2),
    ] {
        for t in ts.iter() {
            map.insert(t.name.clone(), file.into());
        }
        write_safetensors(&dir.join(file), ts);
    }
    let index = serde_json::json!({ "weight_map": map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

/// Mean of `value(r, c)` over each `bh × bw` cell, in float64.
fn block_means(
    rows: usize,
    cols: usize,
    bh: usize,
    bw: usize,
    value: impl Fn(usize, usize) -> f64,
) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..rows.div_ceil(bh) {
        for j in 0..cols.div_ceil(bw) {
            let (mut s, mut n) = (0.0, 0.0);
            for r in i * bh..((i + 1) * bh).min(rows) {
                for c in j * bw..((j + 1) * bw).min(cols) {
                    s += value(r, c);
                    n += 1.0;
                }
            }
            out.push(s / n);
        }
    }
    out
}

fn entry<'a>(m: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    m["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap()
}

const W: &str = "model.layers.0.self_attn.q_proj.weight";

#[test]
fn dequantised_grids_match_a_float64_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let q = quantise(300, 260, 128, 1);
    let model = tmp.path().join("ds");
    write_model(&model, &[(W, &q)], None);
    let out = tmp.path().join("out");
    render_cmd(&model, &out)
        .args(["--raw", "--block", "7x9", "-q"])
        .assert()
        .success();
    let m = manifest(&out);
    let e = entry(&m, W);
    assert_eq!(
        e["fp8"],
        serde_json::json!({"scale": format!("{W}_scale_inv"), "block": [128, 128], "mode": "dequant"})
    );
    let (shape, got) = read_npy(&out.join(e["raw"].as_str().unwrap()));
    assert_eq!(shape, [300usize.div_ceil(7), 260usize.div_ceil(9)]);
    assert_dequantised_means(&got, &q, 7, 9);
    // The scale tensor still renders as its own small heatmap.
    assert_eq!(
        entry(&m, &format!("{W}_scale_inv"))["shape"],
        serde_json::json!([3, 3])
    );
    // The statistics are those of the real weights: mean and std within a millionth of
    // the mean |x| (and of the std), the extremes exactly (one f32 product each).
    let table = e4m3_table();
    let all: Vec<f64> = (0..300 * 260)
        .map(|k| q.value(&table, k / 260, k % 260))
        .collect();
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let abs = all.iter().map(|v| v.abs()).sum::<f64>() / n;
    let std = (all.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    let stat = |k: &str| e["stats"][k].as_f64().unwrap();
    assert!(
        (stat("mean") - mean).abs() <= 1e-6 * abs,
        "mean {} vs {mean}",
        stat("mean")
    );
    assert!(
        (stat("std") - std).abs() <= 1e-6 * std,
        "std {} vs {std}",
        stat("std")
    );
    let f32_of = |v: f64| f64::from(v as f32);
    assert_eq!(
        stat("min"),
        f32_of(all.iter().copied().fold(f64::INFINITY, f64::min))
    );
    assert_eq!(
        stat("max"),
        f32_of(all.iter().copied().fold(f64::NEG_INFINITY, f64::max))
    );
}

#[test]
fn raw_codes_reach_448_in_every_tile() {
    let tmp = tempfile::tempdir().unwrap();
    let q = quantise(300, 260, 128, 2);
    let model = tmp.path().join("ds");
    write_model(&model, &[(W, &q)], None);
    let out = tmp.path().join("out");
    render_cmd(&model, &out)
        .args([
            "--raw", "--fp8", "raw", "--reduce", "absmax", "--block", "128x128", "-q",
        ])
        .assert()
        .success();
    let m = manifest(&out);
    let e = entry(&m, W);
    assert_eq!(e["fp8"]["mode"], "raw");
    let (_, got) = read_npy(&out.join(e["raw"].as_str().unwrap()));
    assert_eq!(
        got,
        vec![448.0; 9],
        "every tile, partial ones included, is scaled to ±448"
    );
    // Dequantised, the same cells are the tiles' real amax = 448 × scale.
    let out2 = tmp.path().join("out2");
    render_cmd(&model, &out2)
        .args(["--raw", "--reduce", "absmax", "--block", "128x128", "-q"])
        .assert()
        .success();
    let m2 = manifest(&out2);
    let (_, got) = read_npy(&out2.join(entry(&m2, W)["raw"].as_str().unwrap()));
    assert_eq!(got.len(), q.scales.len());
    for (g, s) in got.iter().zip(&q.scales) {
        assert!((f64::from(*g) - 448.0 * f64::from(*s)).abs() <= 1e-6 * f64::from(*g));
    }
}

#[test]
fn missing_scale_falls_back_to_raw_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (quantise(130, 140, 128, 3), quantise(140, 130, 128, 4));
    let model = tmp.path().join("ds");
    write_model(&model, &[(W, &a)], Some(&b));
    let out = tmp.path().join("out");
    render_cmd(&model, &out).arg("-q").assert().success();
    let m = manifest(&out);
    let e = entry(&m, "model.layers.0.mlp.gate_proj.weight");
    assert_eq!(e["fp8"]["mode"], "raw");
    assert!(e["fp8"]["scale"].is_null());
    assert!(e["fp8"]["note"]
        .as_str()
        .unwrap()
        .contains("gate_proj.weight_scale_inv"));
    assert_eq!(entry(&m, W)["fp8"]["mode"], "dequant");
    // Non-FP8 tensors carry no fp8 key at all.
    assert!(entry(&m, &format!("{W}_scale_inv")).get("fp8").is_none());
}

#[test]
fn config_json_block_size_wins_and_misfits_are_errors_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let q = quantise(200, 192, 64, 5);
    let model = tmp.path().join("ds");
    write_model(&model, &[(W, &q)], None);
    // Without config.json, [4, 3] scales do not fit 128-blocks but divide 200 × 192
    // exactly: blocks of [50, 64]; with it, [64, 64] as declared.
    let out = tmp.path().join("a");
    render_cmd(&model, &out).arg("-q").assert().success();
    assert_eq!(
        entry(&manifest(&out), W)["fp8"]["block"],
        serde_json::json!([50, 64])
    );
    std::fs::write(
        model.join("config.json"),
        r#"{"quantization_config": {"quant_method": "fp8", "weight_block_size": [64, 64]}}"#,
    )
    .unwrap();
    let out = tmp.path().join("b");
    render_cmd(&model, &out)
        .args(["--raw", "--block", "1x1", "-q"])
        .assert()
        .success();
    let m = manifest(&out);
    let e = entry(&m, W);
    assert_eq!(e["fp8"]["block"], serde_json::json!([64, 64]));
    let table = e4m3_table();
    let (_, got) = read_npy(&out.join(e["raw"].as_str().unwrap()));
    let k = 199 * 192 + 191; // last element: the partial corner tile
    let want = f64::from(table[q.codes[k] as usize]) * f64::from(q.scales[3 * 3 + 2]);
    assert!((f64::from(got[k]) - want).abs() <= 1e-7 * want.abs());
    // A block size the scales do not fit is an error naming weight and scale.
    std::fs::write(
        model.join("config.json"),
        r#"{"quantization_config": {"weight_block_size": [128, 128]}}"#,
    )
    .unwrap();
    let out = tmp.path().join("c");
    render_cmd(&model, &out).assert().code(1).stderr(
        predicate::str::contains(W).and(predicate::str::contains(format!("{W}_scale_inv"))),
    );
    // A block size with a zero is not used (a warning), and the scales' shapes give it:
    // it was an error on every FP8 weight.
    std::fs::write(
        model.join("config.json"),
        r#"{"quantization_config": {"weight_block_size": [0, 0]}}"#,
    )
    .unwrap();
    let out = tmp.path().join("d");
    render_cmd(&model, &out)
        .assert()
        .success()
        .stderr(predicate::str::contains("weight_block_size is [0,0]"));
    assert_eq!(
        entry(&manifest(&out), W)["fp8"]["block"],
        serde_json::json!([50, 64])
    );
}

/// Scales with no rows or no columns divide the weight into no blocks: an error naming
/// weight and scales, not a division by zero.
#[test]
fn empty_scales_are_an_error_naming_both() {
    for shape in [[0usize, 2], [2, 0]] {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("m.safetensors");
        let q = quantise(256, 256, 128, 3);
        let s = T::f32(&format!("{W}_scale_inv"), &shape, &[]);
        write_safetensors(&model, &[f8(W, &q), s]);
        let out = tmp.path().join("out");
        let why = format!("shape {shape:?} does not divide weight [256, 256] into blocks");
        render_cmd(&model, &out).assert().code(1).stderr(
            predicate::str::contains(format!("{W}_scale_inv")).and(predicate::str::contains(why)),
        );
    }
}

/// A scale tensor that is not two-dimensional is an error naming the file, the weight and
/// the scales once each: the message, already about the tensor, is not wrapped again.
#[test]
fn scales_not_two_dimensional_are_named_once() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.safetensors");
    let q = quantise(256, 256, 128, 3);
    let s = T::f32(&format!("{W}_scale_inv"), &[4], &[1.0; 4]);
    write_safetensors(&model, &[f8(W, &q), s]);
    let out = tmp.path().join("out");
    let want = format!(
        "{}: tensor \"{W}\": scale tensor \"{W}_scale_inv\" in m.safetensors: has shape [4], not two dimensions",
        model.display()
    );
    let got = render_cmd(&model, &out)
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let got = String::from_utf8(got).unwrap();
    let line = got.lines().find(|l| l.contains("not two dimensions"));
    let line = line.unwrap_or_else(|| panic!("no error line in {got:?}"));
    assert!(line.ends_with(&want), "{line:?}");
    assert_eq!(line.matches("m.safetensors").count(), 2, "{line:?}");
}

/// A `weight_block_size` far wider than the tensor still fits its one column of scales:
/// the same values as blocks exactly as wide (the kernels once laid each scale out across
/// the whole declared width, and a width of 2^40 aborted the process).
#[test]
fn blocks_wider_than_the_tensor_are_its_width() {
    let tmp = tempfile::tempdir().unwrap();
    let q = quantise(200, 40, 64, 7);
    let model = tmp.path().join("ds");
    write_model(&model, &[(W, &q)], None);
    let mut grids = Vec::new();
    for width in [64u64, 1 << 40] {
        std::fs::write(
            model.join("config.json"),
            format!(r#"{{"quantization_config": {{"weight_block_size": [64, {width}]}}}}"#),
        )
        .unwrap();
        let out = tmp.path().join(width.to_string());
        render_cmd(&model, &out)
            .args(["--raw", "--block", "4x4", "-q"])
            .assert()
            .success();
        let m = manifest(&out);
        let e = entry(&m, W);
        assert_eq!(e["fp8"]["block"], serde_json::json!([64, width]));
        grids.push(read_npy(&out.join(e["raw"].as_str().unwrap())).1);
    }
    // Both are the weights' true cells: a tile 64 wide already spans the 40 columns.
    assert_dequantised_means(&grids[0], &q, 4, 4);
    assert_eq!(grids[0], grids[1]);
}

#[test]
fn tile_lines_mark_every_nth_row_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let q = quantise(300, 260, 128, 6);
    let model = tmp.path().join("ds");
    write_model(&model, &[(W, &q)], None);
    let out = tmp.path().join("out");
    render_cmd(&model, &out)
        .args(["--block", "4x4", "--tile-lines", "128", "-q"])
        .assert()
        .success();
    let img = image::open(out.join(format!("{W}.png"))).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (65, 75));
    assert_lines(&img, &[32, 64], &[32, 64], "4x4");
}

/// Checks that exactly the pixels of grid rows `rows` and columns `cols` are black.
fn assert_lines(img: &image::RgbImage, rows: &[u32], cols: &[u32], what: &str) {
    for y in 0..img.height() {
        for x in 0..img.width() {
            let line = rows.contains(&y) || cols.contains(&x);
            let black = img.get_pixel(x, y).0 == [0, 0, 0];
            assert_eq!(black, line, "{what}: pixel ({x}, {y})");
        }
    }
}

#[test]
fn tile_lines_are_left_out_along_an_axis_whose_cells_they_would_cover() {
    // A block of at least half the period: lines there would mark half the cells or
    // more (from a block of 128 on, every one), hiding the data. Just under it, they
    // are drawn.
    let tmp = tempfile::tempdir().unwrap();
    let q = quantise(300, 260, 128, 6);
    let model = tmp.path().join("ds");
    write_model(&model, &[(W, &q)], None);
    for (block, row_lines, col_lines) in [
        ("63x4", vec![2, 4], vec![32, 64]),
        ("64x4", vec![], vec![32, 64]),
        ("4x130", vec![32, 64], vec![]),
        ("200x200", vec![], vec![]),
    ] {
        let out = tmp.path().join(block);
        render_cmd(&model, &out)
            .args(["--block", block, "--tile-lines", "128", "-q"])
            .assert()
            .success();
        let png = std::fs::read(out.join(format!("{W}.png"))).unwrap();
        // Colour type 3 (indexed) when no line is drawn, 2 (RGB) otherwise.
        let indexed = png[25] == 3;
        assert_eq!(
            indexed,
            row_lines.is_empty() && col_lines.is_empty(),
            "{block}"
        );
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_lines(&img, &row_lines, &col_lines, block);
    }
}

#[test]
fn skip_existing_renders_again_when_only_the_scales_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut q = quantise(130, 140, 128, 7);
    let model = tmp.path().join("ds");
    write_model(&model, &[(W, &q)], None);
    let out = tmp.path().join("out");
    render_cmd(&model, &out).arg("-q").assert().success();
    let before = entry(&manifest(&out), W)["stats"]["max"].as_f64().unwrap();
    // Same size, new contents, later mtime: only the scale shard changes. (The mtime is
    // set a minute on, so that the test does not depend on how finely the file system
    // keeps times.)
    let shard = model.join("model-00002-of-00002.safetensors");
    let was = std::fs::metadata(&shard).unwrap().modified().unwrap();
    q.scales.iter_mut().for_each(|s| *s *= 2.0);
    write_safetensors(&shard, &[scale_tensor(W, &q)]);
    let file = std::fs::File::options().write(true).open(&shard).unwrap();
    file.set_modified(was + std::time::Duration::from_secs(60))
        .unwrap();
    let run = render_cmd(&model, &out)
        .args(["--skip-existing", "-v"])
        .assert()
        .success();
    let err = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(err.contains(&format!("rendered {W}")), "{err}");
    let after = entry(&manifest(&out), W)["stats"]["max"].as_f64().unwrap();
    assert_eq!(after, 2.0 * before);
}

#[test]
fn bf16_and_e8m0_scales_are_multiplied_in_too() {
    let table = e4m3_table();
    let q = quantise(200, 150, 128, 9);
    let (tr, tc) = (2, 2);
    // E8M0 holds powers of two: 2^(b - 127). Round each scale to one, and to BF16.
    let e8m0: Vec<u8> = q
        .scales
        .iter()
        .map(|s| (s.log2().round() as i32 + 127) as u8)
        .collect();
    let bf16: Vec<u8> = q
        .scales
        .iter()
        .flat_map(|s| ((s.to_bits() >> 16) as u16).to_le_bytes())
        .collect();
    type ScaleOf = Box<dyn Fn(usize) -> f64>;
    let cases: [(Dtype, Vec<u8>, ScaleOf); 2] = [
        (
            Dtype::F8_E8M0,
            e8m0.clone(),
            Box::new(move |t| 2f64.powi(i32::from(e8m0[t]) - 127)),
        ),
        (
            Dtype::BF16,
            bf16.clone(),
            Box::new(move |t| {
                f64::from(f32::from_bits(
                    u32::from(u16::from_le_bytes([bf16[2 * t], bf16[2 * t + 1]])) << 16,
                ))
            }),
        ),
    ];
    for (dtype, bytes, scale) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("ds");
        std::fs::create_dir_all(&model).unwrap();
        let s = T {
            name: format!("{W}_scale_inv"),
            dtype,
            shape: vec![tr, tc],
            data: bytes,
        };
        write_safetensors(&model.join("model.safetensors"), &[f8(W, &q), s]);
        let out = tmp.path().join("out");
        render_cmd(&model, &out)
            .args(["--raw", "--block", "10x10", "-q"])
            .assert()
            .success();
        let m = manifest(&out);
        let (_, got) = read_npy(&out.join(entry(&m, W)["raw"].as_str().unwrap()));
        let want = block_means(200, 150, 10, 10, |r, c| {
            f64::from(table[q.codes[r * 150 + c] as usize]) * scale((r / 128) * tc + c / 128)
        });
        assert_eq!(got.len(), want.len(), "{dtype:?}");
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= 1e-6 * w.abs() + 1e-9,
                "{dtype:?} cell {k}: {g} vs {w}"
            );
        }
    }
}
