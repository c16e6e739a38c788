//! Inputs the fuzzers found (`fuzz/regressions/`), as ordinary tests.

mod common;

use std::path::PathBuf;

use common::{manifest, read_npy, render_cmd};

fn regression(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(name)
}

/// `[3e38, -3e38]`: the f32 lane sum of `x - shift` overflowed to -inf, and the mean of
/// the cell and of the tensor came out infinite. It is 0.
#[test]
fn opposite_huge_values_average_to_zero() {
    let tmp = tempfile::tempdir().unwrap();
    render_cmd(
        &regression("f32-lane-overflow-mean.safetensors"),
        tmp.path(),
    )
    .args(["--raw", "--block", "1x2"])
    .assert()
    .success();
    let m = manifest(tmp.path());
    let s = &m["tensors"][0]["stats"];
    assert_eq!(s["mean"].as_f64(), Some(0.0));
    let x = f64::from(f32::from_le_bytes([0xe6, 0xb1, 0x61, 0x7f]));
    assert_eq!(s["std"].as_f64(), Some(x));
    let (_, grid) = read_npy(&tmp.path().join("w.npy"));
    assert_eq!(grid, [0.0]);
}

/// `[0, 1e20]`: the square of the deviation overflowed the f32 lane sum of squares and
/// the standard deviation came out infinite. It is 5e19.
#[test]
fn squares_of_huge_deviations_do_not_overflow() {
    let tmp = tempfile::tempdir().unwrap();
    render_cmd(&regression("f32-lane-overflow-std.safetensors"), tmp.path())
        .args(["--raw", "--block", "1x2", "--reduce", "std"])
        .assert()
        .success();
    let x = f64::from(f32::from_le_bytes([0xec, 0x78, 0xad, 0x60]));
    let s = &manifest(tmp.path())["tensors"][0]["stats"];
    assert_eq!(s["std"].as_f64(), Some(x / 2.0));
    let (_, grid) = read_npy(&tmp.path().join("w.npy"));
    assert!((f64::from(grid[0]) - x / 2.0).abs() <= 1e-6 * x);
}

/// `--clip 40` made the low percentile (60) exceed the high one and the colour range
/// came out inverted; clip now takes 50 to 100, and at 50 the range is still ordered:
/// `hi` and `lo` are both the 50th percentile of the cells 1..=16, 8.5 by numpy
/// (`np.percentile(np.arange(1, 17), 50)`), and `lo > hi / 2` makes the range `[lo, hi]`
/// (README, "Colour range").
#[test]
fn clip_below_50_is_a_usage_error_and_50_keeps_the_range_ordered() {
    let tmp = tempfile::tempdir().unwrap();
    let input = regression("clip-below-50.safetensors");
    render_cmd(&input, tmp.path())
        .args(["--clip", "40"])
        .assert()
        .code(2);
    render_cmd(&input, tmp.path())
        .args(["--clip", "50"])
        .assert()
        .success();
    let r = &manifest(tmp.path())["tensors"][0]["range"];
    assert_eq!(r, &serde_json::json!([8.5, 8.5]));
}
