//! The fast path of the reduction: on CPUs with AVX-512, clean BF16, F16, F32 and
//! F8_E4M3 bands with blocks at least 4 columns wide are reduced by a dedicated kernel
//! (`mean`, `max`, `min`, `absmax`). Checked here against a naive float64 reference with
//! values decoded independently of the library (bit shifts, `half`, the committed
//! ml_dtypes F8 table): random shapes around the kernel's 64-byte chunks, its 32-row
//! groups and partial edge cells, sprinkled zeros, an offset far from zero, and one NaN
//! or Inf that hands the band back to the general kernel. On other CPUs the same
//! assertions hold for the general kernel and, for BF16, F16 and F8 `mean`, the kernel of
//! `reduce/lanes.rs` (also checked here with `TENSORHEAT_NO_AVX512` set). Cells 1 to 3
//! columns wide go to the kernel of `reduce/narrow.rs` on every CPU: the same checks.

mod common;

use common::{e4m3_table, e5m2_table, naive_cell, picks_an_element, Rng};
use proptest::prelude::*;
use tensorheat::reduce::{reduce, reduce_scaled, Scale};
use tensorheat::view::Geometry;
use tensorheat::{Dtype, Reduction, Size};

/// The members of grid cell `(i, j)` of a row-major `rows × cols` matrix in `bh × bw`
/// blocks, in row-major order.
fn cell_members(
    m: &[f64],
    rows: usize,
    cols: usize,
    bh: usize,
    bw: usize,
    i: usize,
    j: usize,
) -> Vec<f64> {
    (i * bh..((i + 1) * bh).min(rows))
        .flat_map(|y| &m[y * cols + j * bw..y * cols + ((j + 1) * bw).min(cols)])
        .copied()
        .collect()
}

/// The geometry of a `rows × cols` matrix in `bh × bw` blocks.
fn blocks(rows: usize, cols: usize, bh: usize, bw: usize) -> Geometry {
    let size = Size::Block(bh.try_into().unwrap(), bw.try_into().unwrap());
    Geometry::new(rows, cols, size, false)
}

/// `F32` FP8 block scales of a `rows × cols` matrix in `bh × bw` blocks, from their
/// little-endian bytes.
fn f32_scales(bytes: &[u8], rows: usize, cols: usize, bh: usize, bw: usize) -> Scale<'_> {
    Scale {
        data: bytes,
        dtype: Dtype::F32,
        rows: rows.div_ceil(bh),
        cols: cols.div_ceil(bw),
        bh,
        bw,
    }
}

/// `n` random F8_E4M3 codes, any but the two NaN codes (0x7f, 0xff).
fn finite_codes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            let c = (rng.next_u64() & 0xff) as u8;
            if c & 0x7f == 0x7f {
                c - 1
            } else {
                c
            }
        })
        .collect()
}

/// The little-endian bytes of `values`.
fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Encodes values as `dtype`, returning the bytes and the exact values they hold.
fn encode(dtype: Dtype, vals: &[f32], f8: &[f32]) -> (Vec<u8>, Vec<f64>) {
    // Finite F8 codes by value, for a nearest-code search.
    let mut codes: Vec<(f32, u8)> = (0..=255u8)
        .map(|c| (f8[usize::from(c)], c))
        .filter(|(v, _)| !v.is_nan())
        .collect();
    codes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut bytes = Vec::new();
    let mut exact = Vec::new();
    for &v in vals {
        let x = match dtype {
            Dtype::F32 => {
                bytes.extend(v.to_le_bytes());
                v
            }
            Dtype::BF16 => {
                let b = (v.to_bits() >> 16) as u16;
                bytes.extend(b.to_le_bytes());
                f32::from_bits(u32::from(b) << 16)
            }
            Dtype::F16 => {
                let h = half::f16::from_f32(v);
                bytes.extend(h.to_bits().to_le_bytes());
                h.to_f32()
            }
            _ => {
                // The nearest finite code (E4M3 has no Inf: NaN stands in for both).
                let code = if v.is_finite() {
                    let i = codes.partition_point(|&(x, _)| x < v).min(codes.len() - 1);
                    codes[i].1
                } else {
                    0x7f
                };
                bytes.push(code);
                f8[usize::from(code)]
            }
        };
        exact.push(f64::from(x));
    }
    (bytes, exact)
}

#[derive(Debug)]
struct Case {
    dtype: Dtype,
    rows: usize,
    cols: usize,
    bh: usize,
    bw: usize,
    values: Vec<f32>,
}

/// Random cases with cells `widths` columns wide.
fn case(widths: std::ops::Range<usize>) -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec![Dtype::BF16, Dtype::F16, Dtype::F32, Dtype::F8E4M3]),
        1usize..80,
        1usize..300,
        1usize..70,
        widths,
        any::<u64>(),
        // Offset of the data: zero-centred weights, or norm-like values near ±1 or ±100
        // (all of one sign: extremes found on the codes depend on it).
        prop::sample::select(vec![0.0f32, 1.0, 100.0, -1.0, -100.0]),
        // Sprinkle zeros; put one NaN or Inf somewhere.
        any::<bool>(),
        prop::sample::select(vec![None, Some(f32::NAN), Some(f32::INFINITY)]),
    )
        .prop_map(
            |(dtype, rows, cols, bh, bw, seed, offset, zeros, special)| {
                let mut rng = Rng::new(seed);
                let spread = if offset == 0.0 {
                    1.0
                } else {
                    offset.abs() * 0.05
                };
                let mut values: Vec<f32> = (0..rows * cols)
                    .map(|_| {
                        if zeros && rng.uniform() < 0.1 {
                            0.0
                        } else {
                            offset + spread * rng.normal()
                        }
                    })
                    .collect();
                if let Some(s) = special {
                    let at = (rng.next_u64() % values.len() as u64) as usize;
                    values[at] = s;
                }
                Case {
                    dtype,
                    rows,
                    cols,
                    bh,
                    bw,
                    values,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn fast_kernel_matches_the_naive_reference(c in case(4..130)) {
        check_against_the_naive_reference(&c)?;
    }

    /// Cells 1 to 3 columns wide, which the kernel of `reduce/narrow.rs` takes (on every
    /// CPU): the same checks.
    #[test]
    fn narrow_kernel_matches_the_naive_reference(c in case(1..4)) {
        check_against_the_naive_reference(&c)?;
    }
}

/// Cells 1 to 3 columns wide in rows longer than the narrow kernel's 512-value decode
/// pieces (2048 columns, Llama 3.2 1B's width, and 1500, which ends in a partial piece
/// and, for 2 and 3 columns, a partial cell), in bands of 1 to 3 rows, every dtype, data
/// near zero and far from it: the checks of the tests above.
#[test]
fn narrow_cells_over_several_decode_pieces() {
    let mut rng = Rng::new(7);
    for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32, Dtype::F8E4M3] {
        for cols in [1500, 2048] {
            for (bh, bw) in [(1, 1), (2, 2), (3, 3), (1, 3)] {
                for offset in [0.0f32, 100.0] {
                    check_normal_data(&mut rng, dtype, 7, cols, bh, bw, offset);
                }
            }
        }
    }
}

/// Cells 4 to 14 columns wide, which the AVX-512 kernel folds each in its own way (4: the
/// attention projections of most 7–8B models with default options, from each chunk's
/// pairs of columns; 14: Llama 3 8B's down projection; odd widths from the columns):
/// every width, in rows of whole chunks that start at every place of a cell (448
/// columns: 14 chunks of 32 BF16 or F16 values) and in rows with a partial last chunk
/// (300), every dtype, data near zero and far from it, bands from 1 row (the row's
/// chunks in order) to 20 (from a page's start).
#[test]
fn cells_4_to_14_columns_wide() {
    let mut rng = Rng::new(11);
    for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32, Dtype::F8E4M3] {
        for cols in [300, 448] {
            for bw in 4..=14 {
                for (bh, offset) in [(1, 0.0f32), (3, 100.0), (20, 0.0)] {
                    check_normal_data(&mut rng, dtype, 2 * bh + 1, cols, bh, bw, offset);
                }
            }
        }
    }
}

/// Bands whose values all have one sign, whose smallest code (their smallest positive
/// or largest negative value) the AVX-512 kernel finds in the band's bytes again, in
/// lanes of 64 bytes and a rest (rows here are not a multiple of 64 bytes long), or for
/// BF16 and F16 `mean` in a band after one of one sign keeps per lane (400 rows: each
/// worker takes several bands). The values spread from 0.01 to 50, most of them small
/// (their mean square under twice their variance, so that F8's plain squares are used and
/// the band is not redone); one of 0.005 is planted last in the tensor, or in a tensor of
/// one band at each place where a lane or the rest begins or ends.
#[test]
fn one_signed_bands() {
    let mut rng = Rng::new(12);
    let cols = 300;
    for dtype in [Dtype::BF16, Dtype::F16, Dtype::F8E4M3] {
        for sign in [1.0, -1.0] {
            let mut check = |rows: usize, bh: usize, plant: Option<usize>| {
                let mut values: Vec<f32> = (0..rows * cols)
                    .map(|_| sign * (0.01 + 50.0 * rng.uniform().powi(4)))
                    .collect();
                if let Some(p) = plant {
                    values[p] = sign * 0.005;
                }
                let c = Case {
                    dtype,
                    rows,
                    cols,
                    bh,
                    bw: 4,
                    values,
                };
                check_against_the_naive_reference(&c).unwrap();
            };
            check(9, 4, None);
            check(70, 64, None);
            check(9, 4, Some(9 * cols - 1));
            check(400, 4, Some(400 * cols - 1));
            // Elements per 64-byte lane; those of the band's whole lanes.
            let (per, n) = (64 / dtype.size(), 4 * cols);
            let whole = n / per * per;
            for p in [0, per / 2 - 1, per / 2, per - 1, whole - 1, whole, n - 1] {
                check(4, 4, Some(p));
            }
        }
    }
}

/// The checks of [`check_against_the_naive_reference`] on `rows × cols` normal values
/// around `offset` (spread 1, or 5% of a nonzero offset) in `bh × bw` cells.
fn check_normal_data(
    rng: &mut Rng,
    dtype: Dtype,
    rows: usize,
    cols: usize,
    bh: usize,
    bw: usize,
    offset: f32,
) {
    let values = (0..rows * cols)
        .map(|_| offset + (1.0 + offset * 0.05) * rng.normal())
        .collect();
    let c = Case {
        dtype,
        rows,
        cols,
        bh,
        bw,
        values,
    };
    check_against_the_naive_reference(&c).unwrap();
}

/// Every reduction of `c`: each cell against the naive float64 reference, the
/// statistics against float64 ones.
fn check_against_the_naive_reference(c: &Case) -> Result<(), TestCaseError> {
    let f8 = e4m3_table();
    let (bytes, exact) = encode(c.dtype, &c.values, &f8);
    let geom = Geometry::new(
        c.rows,
        c.cols,
        Size::Block(c.bh.try_into().unwrap(), c.bw.try_into().unwrap()),
        false,
    );
    let finite: Vec<f64> = exact.iter().copied().filter(|v| v.is_finite()).collect();
    let mean_abs = finite.iter().map(|v| v.abs()).sum::<f64>() / finite.len().max(1) as f64;
    for r in Reduction::ALL {
        let got = reduce(&bytes, c.dtype, &geom, r);
        // The grid, cell by cell.
        let (gh, gw) = (c.rows.div_ceil(c.bh), c.cols.div_ceil(c.bw));
        prop_assert_eq!(got.grid.len(), gh * gw);
        for i in 0..gh {
            for j in 0..gw {
                let cell = cell_members(&exact, c.rows, c.cols, c.bh, c.bw, i, j);
                let want = naive_cell(&cell, r);
                let g = f64::from(got.grid[i * gw + j]);
                if want.is_nan() {
                    prop_assert!(g.is_nan());
                } else if picks_an_element(r) {
                    prop_assert_eq!(g, want, "{:?} {:?} cell ({}, {})", c.dtype, r, i, j);
                } else {
                    let cell_abs = cell
                        .iter()
                        .filter(|v| v.is_finite())
                        .map(|v| v.abs())
                        .sum::<f64>()
                        / cell.len() as f64;
                    let tol = 1e-6 * want.abs() + 1e-5 * cell_abs.max(1e-30);
                    prop_assert!(
                        (g - want).abs() <= tol,
                        "{:?} {:?} cell ({}, {}): got {}, want {}",
                        c.dtype,
                        r,
                        i,
                        j,
                        g,
                        want
                    );
                }
            }
        }
        // The statistics: counts and extremes exact, moments to 1e-6 of the data's size.
        let s = got.stats;
        prop_assert_eq!(s.count, finite.len() as u64);
        prop_assert_eq!(s.nan, exact.iter().filter(|v| v.is_nan()).count() as u64);
        prop_assert_eq!(
            s.inf,
            exact.iter().filter(|v| v.is_infinite()).count() as u64
        );
        prop_assert_eq!(s.zeros, exact.iter().filter(|&&v| v == 0.0).count() as u64);
        prop_assert_eq!(s.min, finite.iter().copied().reduce(f64::min));
        prop_assert_eq!(s.max, finite.iter().copied().reduce(f64::max));
        // With no finite element (one NaN or Inf in a 1-element tensor) there is no
        // mean or std to report.
        if finite.is_empty() {
            prop_assert!(s.mean.is_none() && s.std.is_none(), "{:?}", s);
            continue;
        }
        let n = finite.len() as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let std = exact_std(&finite);
        prop_assert!(
            (s.mean.unwrap() - mean).abs() <= 1e-6 * mean_abs,
            "{:?} vs {}",
            s,
            mean
        );
        prop_assert!(
            (s.std.unwrap() - std).abs() <= 1e-6 * mean_abs + 1e-5 * std,
            "{:?} vs {}",
            s,
            std
        );
    }
    Ok(())
}

/// CPUs without AVX-512 take clean BF16, F16, F32 and F8 `mean` bands (FP8 with block
/// scales too) through the kernel of `reduce/lanes.rs`: the test above, the FP8 block
/// test and the two tests of statistics far from zero below (F8's plain squares there
/// too) again, in a child process where `TENSORHEAT_NO_AVX512` keeps the AVX-512 kernel
/// out (the library reads it once).
#[test]
fn without_avx512_the_reference_test_holds() {
    if std::env::var_os("TENSORHEAT_NO_AVX512").is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([
            "fast_kernel_matches_the_naive_reference",
            "fast_kernel_dequantises_fp8_blocks",
            "f8_std_near_the_plain_squares_limit",
            "std_far_from_zero_with_small_outliers",
            "--exact",
        ])
        .env("TENSORHEAT_NO_AVX512", "1")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 4 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// FP8 weights with block scales (`w = q · s[i / sbh, j / sbw]`), scale blocks smaller
    /// and larger than the kernel's 32-row groups and 64-column chunks, against the
    /// dequantised values in float64.
    #[test]
    fn fast_kernel_dequantises_fp8_blocks(
        rows in 1usize..90,
        cols in 4usize..300,
        bh in 1usize..70,
        bw in 4usize..130,
        sbh in 1usize..80,
        // (Or far wider than the tensor, as a file's `weight_block_size` may say.)
        sbw in prop_oneof![1usize..150, Just(1usize << 40)],
        seed in any::<u64>(),
    ) {
        let f8 = e4m3_table();
        let mut rng = Rng::new(seed);
        // Any finite code; scales of either sign over several orders of magnitude.
        let codes = finite_codes(&mut rng, rows * cols);
        let (srows, scols) = (rows.div_ceil(sbh), cols.div_ceil(sbw));
        let scales: Vec<f32> = (0..srows * scols)
            .map(|_| (rng.uniform() - 0.3) * 10f32.powi((rng.next_u64() % 7) as i32 - 4))
            .collect();
        let scale_bytes = le_bytes(&scales);
        let scale = f32_scales(&scale_bytes, rows, cols, sbh, sbw);
        let exact: Vec<f64> = (0..rows * cols)
            .map(|i| {
                let (y, x) = (i / cols, i % cols);
                f64::from(f8[usize::from(codes[i])]) * f64::from(scales[y / sbh * scols + x / sbw])
            })
            .collect();
        let geom = blocks(rows, cols, bh, bw);
        for r in [Reduction::Mean, Reduction::Max, Reduction::Min, Reduction::AbsMax] {
            let got = reduce_scaled(&codes, Dtype::F8E4M3, Some(&scale), &geom, r);
            let gw = cols.div_ceil(bw);
            assert_eq!(got.grid.len(), rows.div_ceil(bh) * cols.div_ceil(bw));
            for (k, &g) in got.grid.iter().enumerate() {
                let (i, j) = (k / gw, k % gw);
                let cell = cell_members(&exact, rows, cols, bh, bw, i, j);
                let want = naive_cell(&cell, r);
                let cell_abs = cell.iter().map(|v| v.abs()).sum::<f64>() / cell.len() as f64;
                if picks_an_element(r) {
                    // One element times its scale: one `f32` product, rounded once.
                    prop_assert_eq!(g, want as f32, "{:?} cell ({}, {})", r, i, j);
                }
                prop_assert!(
                    (f64::from(g) - want).abs() <= 1e-6 * want.abs() + 1e-5 * cell_abs,
                    "{:?} cell ({}, {}): got {}, want {}", r, i, j, g, want
                );
            }
            let s = got.stats;
            let n = exact.len() as f64;
            let mean = exact.iter().sum::<f64>() / n;
            let mean_abs = exact.iter().map(|v| v.abs()).sum::<f64>() / n;
            prop_assert_eq!(s.count, exact.len() as u64);
            prop_assert_eq!(s.zeros, exact.iter().filter(|&&v| v == 0.0).count() as u64);
            // The design's accuracy for sums: 1e-5 of the mean magnitude. (1e-6 failed about
            // one case in 3000, before and after this kernel's rework: blocks scaled up to 1e6
            // apart, f32 lanes summing values near 2e4.)
            prop_assert!((s.mean.unwrap() - mean).abs() <= 1e-5 * mean_abs, "{:?} vs {}", s, mean);
            let std = exact_std(&exact);
            // Blocks scaled up to 1e6 apart make every band's typical value far from some
            // of its blocks' values: the worst of 6000 cases was 1.5e-5 of the mean
            // magnitude plus the std, so the bound is twice that.
            prop_assert!(
                (s.std.unwrap() - std).abs() <= 3e-5 * (mean_abs + std),
                "{:?} vs {}", s, std
            );
            let lo = exact.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = exact.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!((s.min.unwrap() - lo).abs() <= 1e-6 * lo.abs());
            prop_assert!((s.max.unwrap() - hi).abs() <= 1e-6 * hi.abs());
        }
    }
}

/// FP8 with block scales whose values all have one sign, though their codes may not
/// (negative codes in blocks of negative scale): the kernel finds a scaled band's
/// extremes from each lane's largest codes, which hold its largest value only if that is
/// above zero and its smallest only if below, and must hand such bands back. The
/// statistics and every cell's mean against float64, for `mean` (the other reductions
/// keep each cell's extremes).
#[test]
fn fp8_blocks_of_one_sign() {
    let f8 = e4m3_table();
    let (rows, cols, sbw) = (64, 256, 128);
    let mut rng = Rng::new(7);
    for case in 0..3 {
        // 0: positive codes, positive scales; 1: the same negated; 2: negative codes where
        // the scale is negative (the right half), so every value is positive.
        let scales: Vec<f32> = match case {
            0 => vec![0.5, 2.0],
            1 => vec![-0.5, -2.0],
            _ => vec![0.5, -2.0],
        };
        let codes: Vec<u8> = (0..rows * cols)
            .map(|i| {
                // Nonzero finite magnitudes, the sign bit from the scale's.
                let m = 1 + (rng.next_u64() % 0x7e) as u8;
                let negative = case == 2 && i % cols >= sbw;
                if negative {
                    m | 0x80
                } else {
                    m
                }
            })
            .collect();
        let scale_bytes = le_bytes(&scales);
        let scale = f32_scales(&scale_bytes, rows, cols, rows, sbw);
        let exact: Vec<f64> = (0..rows * cols)
            .map(|i| f64::from(f8[usize::from(codes[i])]) * f64::from(scales[i % cols / sbw]))
            .collect();
        let (bh, bw) = (16, 16);
        let geom = blocks(rows, cols, bh, bw);
        let got = reduce_scaled(&codes, Dtype::F8E4M3, Some(&scale), &geom, Reduction::Mean);
        let lo = exact.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = exact.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s = got.stats;
        assert_eq!(s.min, Some(lo), "case {case}");
        assert_eq!(s.max, Some(hi), "case {case}");
        let n = exact.len() as f64;
        let mean = exact.iter().sum::<f64>() / n;
        assert!(
            (s.mean.unwrap() - mean).abs() <= 1e-6 * mean.abs(),
            "case {case}"
        );
        let std = exact_std(&exact);
        assert!((s.std.unwrap() - std).abs() <= 1e-5 * std, "case {case}");
        let gw = cols / bw;
        assert_eq!(got.grid.len(), rows.div_ceil(bh) * cols.div_ceil(bw));
        for (k, &g) in got.grid.iter().enumerate() {
            let cell = cell_members(&exact, rows, cols, bh, bw, k / gw, k % gw);
            let want = naive_cell(&cell, Reduction::Mean);
            assert!(
                (f64::from(g) - want).abs() <= 1e-6 * want.abs(),
                "case {case} cell {k}"
            );
        }
    }
}

/// FP8 with block scales holding a NaN code (0x7f or 0xff) among finite ones, in bands
/// of 2, 4 and 40 rows: F8 `mean` takes the high byte of each code's value from the
/// code's top six bits, which makes NaN codes numbers, so a scaled band must find them
/// in its lanes' largest codes and be handed back. The NaN count, the statistics of the
/// rest and every cell's mean (of its finite members) against float64.
#[test]
fn fp8_blocks_with_nan_codes() {
    let f8 = e4m3_table();
    let (rows, cols, sbh, sbw) = (80, 256, 8, 128);
    let mut rng = Rng::new(11);
    let scales: Vec<f32> = (0..rows / sbh * 2)
        .map(|_| 0.25 + rng.uniform() * 4.0)
        .collect();
    let scale_bytes = le_bytes(&scales);
    let scale = f32_scales(&scale_bytes, rows, cols, sbh, sbw);
    for (nan_code, at) in [(0x7f, 3 * cols + 70), (0xff, 57 * cols + 200), (0x7f, 255)] {
        let mut codes = finite_codes(&mut rng, rows * cols);
        codes[at] = nan_code;
        let exact: Vec<f64> = (0..rows * cols)
            .map(|i| {
                let (y, x) = (i / cols, i % cols);
                f64::from(f8[usize::from(codes[i])]) * f64::from(scales[y / sbh * 2 + x / sbw])
            })
            .collect();
        let finite: Vec<f64> = exact.iter().copied().filter(|v| v.is_finite()).collect();
        assert_eq!(finite.len(), rows * cols - 1);
        for (bh, bw) in [(2, 7), (4, 4), (40, 16)] {
            let ctx = format!("NaN code {nan_code:#x} at {at}, {bh} x {bw} cells");
            let geom = blocks(rows, cols, bh, bw);
            let got = reduce_scaled(&codes, Dtype::F8E4M3, Some(&scale), &geom, Reduction::Mean);
            let s = got.stats;
            assert_eq!((s.nan, s.count), (1, finite.len() as u64), "{ctx}");
            let n = finite.len() as f64;
            let mean = finite.iter().sum::<f64>() / n;
            let mean_abs = finite.iter().map(|v| v.abs()).sum::<f64>() / n;
            assert!((s.mean.unwrap() - mean).abs() <= 1e-6 * mean_abs, "{ctx}");
            let std = exact_std(&finite);
            assert!((s.std.unwrap() - std).abs() <= 1e-5 * std, "{ctx}");
            let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            // (The library multiplies in `f32`.)
            assert!((s.min.unwrap() - lo).abs() <= 1e-6 * lo.abs(), "{ctx}");
            assert!((s.max.unwrap() - hi).abs() <= 1e-6 * hi.abs(), "{ctx}");
            let gw = cols.div_ceil(bw);
            assert_eq!(got.grid.len(), rows.div_ceil(bh) * cols.div_ceil(bw));
            for (k, &g) in got.grid.iter().enumerate() {
                let cell = cell_members(&exact, rows, cols, bh, bw, k / gw, k % gw);
                let want = naive_cell(&cell, Reduction::Mean);
                let cell_abs = naive_cell(
                    &cell.iter().map(|v| v.abs()).collect::<Vec<_>>(),
                    Reduction::Mean,
                );
                assert!(
                    (f64::from(g) - want).abs() <= 1e-6 * want.abs() + 1e-6 * cell_abs,
                    "{ctx} cell {k}: got {g}, want {want}"
                );
            }
        }
    }
}

/// Cells 4 columns wide (every 4096-column tensor with default options), 6, 10, 12 and
/// 14 (a 14336-column one), odd widths from 5 to 15 (7 for a 7168-column one), 4 times
/// those (28 for a 7168-column one at `--max-size 256`) and multiples of 8 (16 at
/// `--max-size 256`; 56 for a 14336-column one; 512, wider than the tensor), which F8
/// `mean` folds by paths of their own (BF16 and F16 the odd ones), and widths of 16 or
/// more, odd and even (27 for a 27648-column one), which BF16, F16 and F8 fold by masks;
/// in bands of 4, 14 and 40 rows (one group of rows, and two), over fifteen whole
/// 64-byte chunks of F8 (so a chunk starts at every place in a cell of up to 15 columns
/// or groups of 4) and a partial one: every cell's mean and the statistics against
/// float64, and its max, min and absmax exactly, in every dtype. Each column has its own
/// level, so a sum credited to the wrong cell shows; the levels are centred on zero, as
/// F8 `mean` bands whose mean square is over twice their variance are redone without
/// those paths (see `PLAIN_LIMIT`).
#[test]
fn narrow_cells_match_the_naive_reference() {
    let f8 = e4m3_table();
    let mut rng = Rng::new(0x4444);
    let (rows, cols) = (40, 15 * 64 + 20);
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i % cols) as f32 - cols as f32 / 2.0) * 0.125 + rng.normal())
        .collect();
    for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32, Dtype::F8E4M3] {
        let (bytes, exact) = encode(dtype, &values, &f8);
        for (bh, bw) in [4, 14, 40].into_iter().flat_map(|bh| {
            [
                4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19, 20, 24, 27, 28, 31, 32, 33,
                36, 45, 52, 56, 60, 64, 72, 128, 512,
            ]
            .map(|bw| (bh, bw))
        }) {
            let geom = blocks(rows, cols, bh, bw);
            for r in [Reduction::Max, Reduction::Min, Reduction::AbsMax] {
                let got = reduce(&bytes, dtype, &geom, r);
                let gw = cols.div_ceil(bw);
                assert_eq!(got.grid.len(), rows.div_ceil(bh) * cols.div_ceil(bw));
                for (k, &g) in got.grid.iter().enumerate() {
                    let cell = cell_members(&exact, rows, cols, bh, bw, k / gw, k % gw);
                    let want = naive_cell(&cell, r);
                    assert_eq!(f64::from(g), want, "{dtype:?} {r:?} {bh}×{bw} cell {k}");
                }
            }
            let got = reduce(&bytes, dtype, &geom, Reduction::Mean);
            let gw = cols.div_ceil(bw);
            assert_eq!(got.grid.len(), rows.div_ceil(bh) * gw);
            for (k, &g) in got.grid.iter().enumerate() {
                let cell = cell_members(&exact, rows, cols, bh, bw, k / gw, k % gw);
                let want = cell.iter().sum::<f64>() / cell.len() as f64;
                let scale = cell.iter().map(|v| v.abs()).sum::<f64>() / cell.len() as f64;
                assert!(
                    (f64::from(g) - want).abs() <= 1e-6 * want.abs() + 1e-6 * scale,
                    "{dtype:?} {bh}×{bw} cell {k}: got {g}, want {want}"
                );
            }
            // (Moments to 1e-6 of the data's size, as in the proptest.)
            let n = exact.len() as f64;
            let mean = exact.iter().sum::<f64>() / n;
            let mean_abs = exact.iter().map(|v| v.abs()).sum::<f64>() / n;
            let s = got.stats;
            assert!(
                (s.mean.unwrap() - mean).abs() <= 1e-6 * mean_abs,
                "{dtype:?} {s:?}"
            );
            let std = exact_std(&exact);
            assert!((s.std.unwrap() - std).abs() <= 1e-6 * mean_abs + 1e-5 * std);
        }
    }
}

/// A dead (all-zero) column block and a constant block in a band whose typical value is
/// far from zero come out exactly 0 and exactly the constant, in every dtype.
#[test]
fn dead_and_constant_cells_are_exact() {
    let f8 = e4m3_table();
    let (rows, cols) = (40, 128);
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| if i % cols < 64 { 96.123_45 } else { 0.0 })
        .collect();
    for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32, Dtype::F8E4M3] {
        // (The constant as this dtype holds it: a long mantissa for F32.)
        let (bytes, exact) = encode(dtype, &values, &f8);
        let geom = Geometry::new(
            rows,
            cols,
            Size::Block(16.try_into().unwrap(), 16.try_into().unwrap()),
            false,
        );
        let got = reduce(&bytes, dtype, &geom, Reduction::Mean);
        assert_eq!(got.grid.len(), rows.div_ceil(16) * cols.div_ceil(16));
        for (k, &g) in got.grid.iter().enumerate() {
            let want = if k % 8 < 4 { exact[0] } else { 0.0 };
            assert_eq!(f64::from(g), want, "{dtype:?} cell {k}");
        }
        assert_eq!(got.stats.zeros, (rows * 64) as u64);
    }
}

/// The F32 `mean` of a `rows × cols` matrix in `bh × bw` blocks, reduced on one thread
/// (so that its bands reuse one band's arrays), and the values' exact `f64`s.
fn f32_mean_on_one_thread(
    values: &[f32],
    rows: usize,
    cols: usize,
    bh: usize,
    bw: usize,
) -> (tensorheat::reduce::Reduced, Vec<f64>) {
    let (bytes, exact) = encode(Dtype::F32, values, &e4m3_table());
    let size = Size::Block(bh.try_into().unwrap(), bw.try_into().unwrap());
    let geom = Geometry::new(rows, cols, size, false);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let got = pool.install(|| reduce(&bytes, Dtype::F32, &geom, Reduction::Mean));
    (got, exact)
}

/// Bands reduced one after another on one thread reuse their cells' arrays: a constant
/// F32 cell (whose value is kept as its shift) must leave nothing behind for the cell
/// below it, in a band that is not constant.
#[test]
fn cells_reused_across_bands_start_clean() {
    let (rows, cols, b) = (64, 64, 16);
    let mut rng = Rng::new(7);
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| {
            if (i / cols / b) % 2 == 0 {
                96.123_45
            } else {
                rng.normal()
            }
        })
        .collect();
    let (got, exact) = f32_mean_on_one_thread(&values, rows, cols, b, b);
    for i in 0..rows / b {
        for j in 0..cols / b {
            let cell = cell_members(&exact, rows, cols, b, b, i, j);
            let want = cell.iter().sum::<f64>() / cell.len() as f64;
            let g = f64::from(got.grid[i * (cols / b) + j]);
            assert!((g - want).abs() <= 1e-6, "cell ({i}, {j}): {g} vs {want}");
        }
    }
}

/// The same for cells 2 columns wide: a band the narrow kernel hands back (it holds a NaN)
/// goes to the general kernel, which leaves its cells' shifts (~96) behind; the clean
/// bands after it, on the same thread, must not add them to their F32 means.
#[test]
fn narrow_bands_after_a_general_one_start_clean() {
    let (rows, cols, bh, bw) = (8, 6, 2, 2);
    let mut rng = Rng::new(9);
    let mut values: Vec<f32> = (0..rows * cols)
        .map(|i| {
            if i < bh * cols {
                96.123_45 + rng.normal()
            } else {
                rng.normal()
            }
        })
        .collect();
    values[0] = f32::NAN;
    let (got, exact) = f32_mean_on_one_thread(&values, rows, cols, bh, bw);
    for i in 0..rows / bh {
        for j in 0..cols / bw {
            let cell = cell_members(&exact, rows, cols, bh, bw, i, j);
            let want = naive_cell(&cell, Reduction::Mean);
            let g = f64::from(got.grid[i * (cols / bw) + j]);
            assert!((g - want).abs() <= 1e-5, "cell ({i}, {j}): {g} vs {want}");
        }
    }
}

/// Plain sums of values near the f32 limit overflow even when their differences from the
/// band's typical value are zero: the band must go to the general kernel, which sums in
/// f64 (a fuzz finding: a constant cell of -2^127 came out as -inf).
#[test]
fn sums_near_the_f32_limit_do_not_overflow() {
    let f8 = e4m3_table();
    let values = vec![-2f32.powi(127); 32 * 64];
    // (F16 and F8 cannot hold values large enough to overflow an f32 sum.)
    for dtype in [Dtype::BF16, Dtype::F32] {
        let (bytes, exact) = encode(dtype, &values, &f8);
        let geom = Geometry::new(
            32,
            64,
            Size::Block(32.try_into().unwrap(), 16.try_into().unwrap()),
            false,
        );
        let got = reduce(&bytes, dtype, &geom, Reduction::Mean);
        for &g in &got.grid {
            assert_eq!(f64::from(g), exact[0], "{dtype:?}");
        }
        assert_eq!(got.stats.mean, Some(exact[0]), "{dtype:?}");
    }
}

/// Population standard deviation of exact values, in f64.
fn exact_std(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt()
}

/// Data far from zero for its spread, with a few values far smaller (found in review: a
/// kernel that summed plain squares and rebased them with the cells' `f32` sums lost the
/// small values' share of those sums, an error the rebasing multiplies by the mean), and
/// FP8 blocks whose scales differ by a little (every dequantised value has a long
/// mantissa). The tensor's std must stay within a millionth of itself.
#[test]
fn std_far_from_zero_with_small_outliers() {
    let f8 = e4m3_table();
    let mut rng = Rng::new(0x5eed);
    let (rows, cols) = (32usize, 64usize);
    let close = |got: f64, want: f64, what: &str| {
        assert!(
            (got - want).abs() <= 1e-6 * want,
            "{what}: std {got} vs {want}"
        );
    };
    for trial in 0..200 {
        let bw = if trial % 2 == 0 { 32 } else { 31 };
        let geom = blocks(rows, cols, 32, bw);
        // BF16 near m0, one to three values up to 2^-15 times smaller.
        let m0 = 1.0 + rng.uniform();
        let mut vals = vec![m0; rows * cols];
        let mut codes = vec![0x70 + (rng.next_u64() % 15) as u8; rows * cols];
        for _ in 0..1 + rng.next_u64() % 3 {
            let at = 3 + (rng.next_u64() as usize) % (rows * cols - 3);
            vals[at] =
                m0 * (0.5 + 0.5 * rng.uniform()) * 2f32.powi(-((rng.next_u64() % 16) as i32));
            codes[at] = (rng.next_u64() % 0x40) as u8;
        }
        let (bytes, exact) = encode(Dtype::BF16, &vals, &f8);
        let got = reduce(&bytes, Dtype::BF16, &geom, Reduction::Mean)
            .stats
            .std
            .unwrap();
        close(got, exact_std(&exact), &format!("BF16 trial {trial}"));
        let exact: Vec<f64> = codes
            .iter()
            .map(|&c| f64::from(f8[usize::from(c)]))
            .collect();
        let got = reduce(&codes, Dtype::F8E4M3, &geom, Reduction::Mean)
            .stats
            .std
            .unwrap();
        close(got, exact_std(&exact), &format!("F8 trial {trial}"));
        // One code everywhere; two 32-column scale blocks 1e-3 apart at most.
        let code = codes[0];
        let sa = 1.0f32 + rng.uniform() * 1e-3;
        let scales = [sa, sa * (1.0 + 1e-3 * rng.uniform())];
        let sbytes = le_bytes(&scales);
        let scale = f32_scales(&sbytes, rows, cols, 32, 32);
        let flat = vec![code; rows * cols];
        let exact: Vec<f64> = (0..rows * cols)
            .map(|i| f64::from(f8[usize::from(code)] * scales[(i % cols) / 32]))
            .collect();
        let got = reduce_scaled(&flat, Dtype::F8E4M3, Some(&scale), &geom, Reduction::Mean);
        close(
            got.stats.std.unwrap(),
            exact_std(&exact),
            &format!("scaled trial {trial}"),
        );
    }
}

/// The unscaled F8 `mean` kernels sum plain squares and re-base them onto the band's
/// typical value at the end, unless the band's mean square is over twice its variance
/// (then they sum differences). Bands on either side of that limit (means 0.5 to 1.5
/// standard deviations from zero, either sign; spreads from 2^-8 to 8, and a few values of
/// ±2^-9, E4M3's smallest, among them) keep the std within a millionth of itself and the
/// mean within a millionth of the spread, in F8_E4M3 and in F8_E5M2 (which only the
/// kernel of `reduce/lanes.rs` takes).
#[test]
fn f8_std_near_the_plain_squares_limit() {
    let (f8, e5m2) = (e4m3_table(), e5m2_table());
    let mut rng = Rng::new(0xf8);
    let (rows, cols) = (64usize, 320usize);
    // Trials inside and outside the limit.
    let mut sides = [0; 2];
    for trial in 0..40 {
        let sigma = 2f32.powi((rng.next_u64() % 12) as i32 - 8);
        let ratio = [0.5f32, 0.9, 0.95, 1.05, 1.5][trial % 5];
        let mean = if trial % 2 == 0 { ratio } else { -ratio } * sigma;
        let mut vals: Vec<f32> = (0..rows * cols)
            .map(|_| mean + sigma * rng.normal())
            .collect();
        for _ in 0..4 {
            let at = (rng.next_u64() as usize) % vals.len();
            vals[at] = if at.is_multiple_of(2) { 1.0 } else { -1.0 } * 2f32.powi(-9);
        }
        let (bytes, exact) = encode(Dtype::F8E4M3, &vals, &f8);
        // Mean square over variance: the kernel's limit is 2.
        let n = exact.len() as f64;
        let q = exact.iter().map(|x| x * x).sum::<f64>() / n / exact_std(&exact).powi(2);
        sides[usize::from(q > 2.0)] += 1;
        let bw = [16, 20, 56, 64][trial % 4];
        let geom = Geometry::new(
            rows,
            cols,
            Size::Block(32.try_into().unwrap(), bw.try_into().unwrap()),
            false,
        );
        let (bytes5, exact5) = encode(Dtype::F8E5M2, &vals, &e5m2);
        for (dtype, bytes, exact) in [
            (Dtype::F8E4M3, &bytes, &exact),
            (Dtype::F8E5M2, &bytes5, &exact5),
        ] {
            let stats = reduce(bytes, dtype, &geom, Reduction::Mean).stats;
            let (want_mean, want_std) = (exact.iter().sum::<f64>() / n, exact_std(exact));
            let (got_mean, got_std) = (stats.mean.unwrap(), stats.std.unwrap());
            assert!(
                (got_std - want_std).abs() <= 1e-6 * want_std,
                "{dtype:?} trial {trial} (mean {ratio} sd, bw {bw}): std {got_std} vs {want_std}"
            );
            assert!(
                (got_mean - want_mean).abs() <= 1e-6 * want_std,
                "{dtype:?} trial {trial}: mean {got_mean} vs {want_mean}"
            );
        }
    }
    assert!(sides[0] >= 10 && sides[1] >= 10, "{sides:?}");
}

/// How [`results_do_not_depend_on_where_the_data_lies`] fills a tensor.
#[derive(Clone, Copy, PartialEq)]
enum Fill {
    /// Values near ±1 in a block's first 32 rows (its first group) and near ±2^40 below
    /// them (F16: ±2^14, near its limit): the `f64` sums of the chunks' `f32` shares
    /// round, differently in another order.
    Wide,
    /// BF16, 96-column cells of three 32-column chunks. A cell's sum is
    /// ((s + x0) + h) - h = 0 in column order, with s = 1 from the first group and
    /// x0 = 1, h = 2^60 from the second; a group that started at the cell's second chunk
    /// would make it ((s + h) - h) + x0 = 1.
    Cells96,
    /// F8 ones (times block scales) with a -0 and a +0 in different chunks: the band's
    /// minimum is -0 whichever chunk comes first.
    SignedZeros,
}

/// The kernel starts each group of rows at the chunk where its first row crosses into a
/// new page, so the order of its work depends on where the data lies in memory; its
/// results must not. The same tensors placed at every 64-byte step of a page, and at a
/// few unaligned places, reduce to the same bits: grid and statistics. Blocks are taller
/// than a 32-row group (a cell's sum then takes several chunks' shares in turn), some
/// widths do not divide a chunk's columns (a group may only start where a cell does),
/// some rows are shorter than a page and end before the next cell would start (the
/// group then starts at the row's start), and some rows are longer than 1024 chunks (a
/// slot sums a run of them), one with cells as wide as the row.
#[test]
fn results_do_not_depend_on_where_the_data_lies() {
    const PAGE: usize = 4096;
    let f8 = e4m3_table();
    let mut rng = Rng::new(0x9a6e);
    let block = |bh: usize, bw: usize| Size::Block(bh.try_into().unwrap(), bw.try_into().unwrap());
    for (dtype, rows, cols, bh, bw, fill) in [
        (Dtype::F8E4M3, 70, 4096, 40, 16, Fill::Wide),
        (Dtype::F8E4M3, 66, 8192, 33, 56, Fill::Wide),
        (Dtype::BF16, 70, 2048, 40, 24, Fill::Wide),
        (Dtype::F16, 45, 4096, 36, 40, Fill::Wide),
        (Dtype::F32, 40, 3072, 36, 48, Fill::Wide),
        (Dtype::BF16, 40, 3072, 36, 96, Fill::Cells96),
        (Dtype::BF16, 36, 640, 36, 96, Fill::Cells96),
        (Dtype::F8E4M3, 32, 128, 32, 16, Fill::SignedZeros),
        (Dtype::BF16, 34, 40_000, 33, 24, Fill::Wide),
        (Dtype::BF16, 32, 40_001, 32, 40_001, Fill::Wide),
    ] {
        let big = if dtype == Dtype::F16 { 14.0 } else { 40.0f32 }.exp2();
        let mut vals: Vec<f32> = (0..rows * cols)
            .map(|i| {
                let v = rng.normal().signum() * (1.0 + rng.uniform());
                if i / cols % bh < 32 {
                    v
                } else {
                    v * big
                }
            })
            .collect();
        if fill == Fill::Cells96 {
            vals.fill(0.0);
            for j in (0..cols).step_by(bw) {
                vals[j] = 1.0;
                vals[32 * cols + j] = 1.0;
                for (at, v) in [(j + 32, 2f32.powi(60)), (j + 64, -(2f32.powi(60)))] {
                    if at < cols {
                        vals[32 * cols + at] = v;
                    }
                }
            }
        }
        if fill == Fill::SignedZeros {
            vals.fill(1.0);
        }
        let (mut bytes, mut exact) = encode(dtype, &vals, &f8);
        if fill == Fill::SignedZeros {
            (bytes[0], bytes[64]) = (0x80, 0x00);
            (exact[0], exact[64]) = (-0.0, 0.0);
        }
        let geom = Geometry::new(rows, cols, block(bh, bw), false);
        // FP8 block scales too (the kernel's scaled variant).
        let sbytes: Vec<u8> = (0..rows.div_ceil(32) * cols.div_ceil(128))
            .flat_map(|_| (40.0 * rng.uniform() - 20.0).exp2().to_le_bytes())
            .collect();
        let scale = f32_scales(&sbytes, rows, cols, 32, 128);
        let scale = (dtype == Dtype::F8E4M3).then_some(&scale);
        let mut buf = vec![0u8; bytes.len() + 2 * PAGE];
        let page = (PAGE - buf.as_ptr() as usize % PAGE) % PAGE;
        let mut first = None;
        for at in (0..PAGE).step_by(64).chain([8, 24, 2184, 4094]) {
            let start = page + at;
            buf[start..start + bytes.len()].copy_from_slice(&bytes);
            let data = &buf[start..start + bytes.len()];
            let got: Vec<_> = [Reduction::Mean, Reduction::AbsMax]
                .into_iter()
                .map(|r| {
                    let g = reduce_scaled(data, dtype, scale, &geom, r);
                    let bits: Vec<u32> = g.grid.iter().map(|v| v.to_bits()).collect();
                    // (Debug output tells -0 from +0 and every other two values apart.)
                    (bits, format!("{:?}", g.stats))
                })
                .collect();
            match &first {
                None => {
                    // And right, without scales: std to a millionth of the data's size.
                    let s = reduce(data, dtype, &geom, Reduction::Mean).stats;
                    let mean_abs = exact.iter().map(|v| v.abs()).sum::<f64>() / exact.len() as f64;
                    let std = exact_std(&exact);
                    assert!(
                        (s.std.unwrap() - std).abs() <= 1e-6 * (mean_abs + std),
                        "{dtype:?} {rows}×{cols}: std {:?} vs {std}",
                        s.std
                    );
                    if fill == Fill::SignedZeros {
                        assert_eq!(s.min.map(f64::to_bits), Some((-0.0f64).to_bits()));
                    }
                    first = Some(got);
                }
                Some(want) => assert!(
                    *want == got,
                    "{dtype:?} {rows}×{cols} in {bh}×{bw} blocks at page offset {at}"
                ),
            }
        }
    }
}

/// Rows longer than the kernel's 1024 slots of chunks (64 KiB) share a slot between
/// neighbouring chunks: each chunk's squares must still count. (Blocks of 20 rows: bands
/// of fewer than 16 rows keep column order and use no slots.)
#[test]
fn long_rows_count_every_chunk() {
    let f8 = e4m3_table();
    let mut rng = Rng::new(0x10e6);
    let (rows, cols) = (40usize, 70_000usize);
    let geom = Geometry::new(
        rows,
        cols,
        Size::Block(20.try_into().unwrap(), 100.try_into().unwrap()),
        false,
    );
    let vals: Vec<f32> = (0..rows * cols).map(|_| 0.5 + rng.normal()).collect();
    for dtype in [Dtype::BF16, Dtype::F8E4M3, Dtype::F32] {
        let (bytes, exact) = encode(dtype, &vals, &f8);
        let s = reduce(&bytes, dtype, &geom, Reduction::Mean).stats;
        let n = exact.len() as f64;
        let mean = exact.iter().sum::<f64>() / n;
        let std = exact_std(&exact);
        assert!(
            (s.mean.unwrap() - mean).abs() <= 1e-6 * std,
            "{dtype:?}: {s:?} vs {mean}"
        );
        assert!(
            (s.std.unwrap() - std).abs() <= 1e-6 * std,
            "{dtype:?}: {s:?} vs {std}"
        );
    }
}

#[test]
fn blocks_larger_than_the_tensor_make_its_whole_rows_and_columns() {
    // A block of up to 2^64 - 1 columns (`--block 1x18446744073709551615`) overflowed the
    // kernels' index arithmetic: a panic on AVX-512 CPUs.
    let f8 = e4m3_table();
    let mut rng = Rng::new(0xb10c);
    let (rows, cols) = (24usize, 200usize);
    let vals: Vec<f32> = (0..rows * cols).map(|_| 0.25 + rng.normal()).collect();
    for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32, Dtype::F8E4M3] {
        let (bytes, exact) = encode(dtype, &vals, &f8);
        // A hand-built block of 0 divided by zero: it is taken as 1.
        let ones = blocks(rows, cols, 1, 1);
        let zero = Geometry {
            bh: 0,
            bw: 0,
            ..ones
        };
        assert_eq!(
            reduce(&bytes, dtype, &zero, Reduction::Mean).grid,
            reduce(&bytes, dtype, &ones, Reduction::Mean).grid
        );
        for (bh, bw) in [
            (1, usize::MAX),
            (usize::MAX, 1),
            (usize::MAX, usize::MAX),
            (5, cols + 1),
        ] {
            let geom = blocks(rows, cols, bh, bw);
            let (gh, gw) = (geom.grid_h(), geom.grid_w());
            for reduction in [Reduction::Mean, Reduction::Max] {
                let grid = reduce(&bytes, dtype, &geom, reduction).grid;
                assert_eq!(grid.len(), gh * gw);
                for i in 0..gh {
                    for j in 0..gw {
                        let m = cell_members(&exact, rows, cols, bh.min(rows), bw.min(cols), i, j);
                        let want = naive_cell(&m, reduction);
                        let got = f64::from(grid[i * gw + j]);
                        let magnitude = m.iter().map(|v| v.abs()).sum::<f64>() / m.len() as f64;
                        assert!(
                            if picks_an_element(reduction) {
                                got == want
                            } else {
                                (got - want).abs() <= 1e-5 * magnitude
                            },
                            "{dtype:?} {bh}x{bw} {reduction:?} ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
