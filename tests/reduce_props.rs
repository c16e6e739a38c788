//! Property tests of the block reduction against a naive float64 reference written here:
//! random shapes and block sizes (so edge cells are partial), random NaN/±Inf members,
//! all-NaN cells, every reduction, every element counted once, constant in → constant
//! out, and identical results on 1 and 2 threads.

mod common;

use common::{naive_cell, picks_an_element};
use proptest::prelude::*;
use tensorheat::colour::Extent;
use tensorheat::reduce::reduce;
use tensorheat::view::Geometry;
use tensorheat::{Dtype, Reduction, Size};

fn naive_grid(m: &[f32], rows: usize, cols: usize, bh: usize, bw: usize, r: Reduction) -> Vec<f64> {
    let (gh, gw) = (rows.div_ceil(bh), cols.div_ceil(bw));
    let mut out = Vec::new();
    for i in 0..gh {
        for j in 0..gw {
            let mut cell = Vec::new();
            for y in i * bh..((i + 1) * bh).min(rows) {
                for x in j * bw..((j + 1) * bw).min(cols) {
                    cell.push(f64::from(m[y * cols + x]));
                }
            }
            out.push(naive_cell(&cell, r));
        }
    }
    out
}

fn bytes(m: &[f32]) -> Vec<u8> {
    m.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn nz(n: usize) -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(n).unwrap()
}

/// A matrix whose first row is 1e6 and the rest normal values of scale 1e-3.
fn leading_row(rng: &mut common::Rng, rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| if i < cols { 1e6 } else { 1e-3 * rng.normal() })
        .collect()
}

/// Asserts that `s`, the statistics' std of `m` (`rows × cols`), is within 1e-6 of the
/// naive float64 reference's.
fn assert_stats_std(s: f64, m: &[f32], rows: usize, cols: usize, what: &str) {
    let std = naive_grid(m, rows, cols, rows, cols, Reduction::Std)[0];
    assert!(
        (s - std).abs() <= 1e-6 * std,
        "{what}: std {s:e} vs {std:e}"
    );
}

/// Checks every cell of `grid` (`m`, `rows × cols`, reduced by `r` in blocks of `bh × bw`)
/// against the naive float64 reference: `max`, `min`, `absmax` and `sample` pick an
/// element, so exactly; the others within the contract's 1e-5 of the cell's mean
/// magnitude (over its finite members), plus the rounding of the answer to `f32`.
fn check_cells(
    grid: &[f32],
    m: &[f32],
    (rows, cols): (usize, usize),
    (bh, bw): (usize, usize),
    r: Reduction,
) -> Result<(), String> {
    let want = naive_grid(m, rows, cols, bh, bw, r);
    if grid.len() != want.len() {
        return Err(format!("{r:?}: {} cells, want {}", grid.len(), want.len()));
    }
    let gw = cols.div_ceil(bw);
    let exact = picks_an_element(r);
    for (i, (&g, &w)) in grid.iter().zip(&want).enumerate() {
        let (y, x) = (i / gw, i % gw);
        let cell = (y * bh..((y + 1) * bh).min(rows))
            .flat_map(|r| (x * bw..((x + 1) * bw).min(cols)).map(move |c| m[r * cols + c]));
        let (sum, n) = (cell.filter(|v| v.is_finite()))
            .fold((0.0, 0.0), |(s, n), v| (s + f64::from(v.abs()), n + 1.0));
        let g = f64::from(g);
        let ok = if w.is_nan() {
            g.is_nan()
        } else if exact {
            g == w
        } else {
            (g - w).abs() <= 1e-5 * sum / n + f64::from(f32::EPSILON) * w.abs()
        };
        if !ok {
            return Err(format!("{r:?} cell {i}: {g:e} vs {w:e}"));
        }
    }
    Ok(())
}

/// [`check_cells`], as an assertion.
fn assert_cells_within(
    grid: &[f32],
    m: &[f32],
    dims: (usize, usize),
    block: (usize, usize),
    r: Reduction,
    what: &str,
) {
    if let Err(e) = check_cells(grid, m, dims, block, r) {
        panic!("{what} {e}");
    }
}

/// A value that is usually an ordinary weight, sometimes NaN, ±Inf, zero or an outlier.
fn element() -> impl Strategy<Value = f32> {
    prop_oneof![
        20 => -3.0f32..3.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(0.0f32),
        1 => -1e4f32..1e4,
    ]
}

fn matrix() -> impl Strategy<Value = (usize, usize, Vec<f32>, usize, usize)> {
    prop_oneof![
        // Narrow blocks (the vertical kernel), tiles of several cells.
        (1usize..40, 1usize..70, 1usize..20, 1usize..12),
        // Blocks of up to 300 columns, around the 256-column switch to the horizontal
        // kernel, and runs longer than one decode chunk.
        (1usize..5, 200usize..2000, 1usize..4, 200usize..1100),
        // Power-of-two blocks (one cell per lane), with whole blocks of 16 cells and a
        // remainder.
        (
            1usize..20,
            16usize..700,
            1usize..20,
            prop::sample::select(vec![1usize, 2, 4, 8, 16])
        ),
    ]
    .prop_flat_map(|(rows, cols, bh, bw)| {
        (
            Just(rows),
            Just(cols),
            prop::collection::vec(element(), rows * cols),
            Just(bh),
            Just(bw),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_reduction_matches_the_naive_reference((rows, cols, m, bh, bw) in matrix()) {
        let geom = Geometry::new(rows, cols, Size::Block(nz(bh), nz(bw)), false);
        let data = bytes(&m);
        for r in Reduction::ALL {
            let reduced = reduce(&data, Dtype::F32, &geom, r);
            // The extent found band by band is the whole grid's.
            prop_assert_eq!(reduced.extent, Extent::of(&reduced.grid));
            check_cells(&reduced.grid, &m, (rows, cols), (bh, bw), r).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn stats_count_every_element_once((rows, cols, m, bh, bw) in matrix()) {
        let geom = Geometry::new(rows, cols, Size::Block(nz(bh), nz(bw)), false);
        let s = reduce(&bytes(&m), Dtype::F32, &geom, Reduction::Mean).stats;
        let finite: Vec<f64> = m.iter().filter(|v| v.is_finite()).map(|&v| f64::from(v)).collect();
        prop_assert_eq!(s.count, finite.len() as u64);
        prop_assert_eq!(s.nan, m.iter().filter(|v| v.is_nan()).count() as u64);
        prop_assert_eq!(s.inf, m.iter().filter(|v| v.is_infinite()).count() as u64);
        prop_assert_eq!(s.zeros, m.iter().filter(|&&v| v == 0.0).count() as u64);
        prop_assert_eq!(s.count + s.nan + s.inf, (rows * cols) as u64);
        if let Some(mean) = s.mean {
            let n = finite.len() as f64;
            let want = finite.iter().sum::<f64>() / n;
            // Within a millionth of the mean magnitude (and of the std itself).
            let mean_abs = finite.iter().map(|v| v.abs()).sum::<f64>() / n;
            prop_assert!((mean - want).abs() <= 1e-6 * mean_abs, "mean {} vs {}", mean, want);
            let std = (finite.iter().map(|v| (v - want) * (v - want)).sum::<f64>() / n).sqrt();
            let err = (s.std.unwrap() - std).abs();
            prop_assert!(err <= 1e-6 * (mean_abs + std), "std {:?} vs {}", s.std, std);
            prop_assert_eq!(s.min, finite.iter().copied().reduce(f64::min));
            prop_assert_eq!(s.max, finite.iter().copied().reduce(f64::max));
        } else {
            prop_assert!(finite.is_empty());
        }
    }

    #[test]
    fn grid_size_follows_the_formula(rows in 1usize..5000, cols in 1usize..5000, h in 1usize..300, w in 1usize..300, keep in any::<bool>()) {
        let g = Geometry::new(rows, cols, Size::MaxSize(nz(h), nz(w)), keep);
        let (mut bh, mut bw) = (rows.div_ceil(h), cols.div_ceil(w));
        if keep {
            bh = bh.max(bw);
            bw = bh;
        }
        prop_assert_eq!((g.bh, g.bw), (bh, bw));
        prop_assert_eq!((g.grid_h(), g.grid_w()), (rows.div_ceil(bh), cols.div_ceil(bw)));
        prop_assert!(g.grid_h() <= h && g.grid_w() <= w || keep);
        // Every source row lands in exactly one grid row.
        let covered: usize = (0..g.grid_h()).map(|i| g.row_range(i).len()).sum();
        prop_assert_eq!(covered, rows);
    }

    #[test]
    fn constant_matrix_gives_constant_grid(rows in 1usize..50, cols in 1usize..50, bh in 1usize..9, bw in 1usize..9, c in -100f32..100.0) {
        let m = vec![c; rows * cols];
        let geom = Geometry::new(rows, cols, Size::Block(nz(bh), nz(bw)), false);
        let data = bytes(&m);
        for r in [Reduction::Mean, Reduction::Max, Reduction::Min, Reduction::Sample] {
            prop_assert!(reduce(&data, Dtype::F32, &geom, r).grid.iter().all(|&v| v == c));
        }
        prop_assert!(reduce(&data, Dtype::F32, &geom, Reduction::Std).grid.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn one_and_two_threads_agree_bit_for_bit((rows, cols, m, bh, bw) in matrix()) {
        threads_agree(rows, cols, &m, bh, bw)?;
    }
}

/// `std` of `m` (`rows × cols` F32, `bh × bw` cells) on one thread and on two: the same
/// grid bits and statistics.
fn threads_agree(
    rows: usize,
    cols: usize,
    m: &[f32],
    bh: usize,
    bw: usize,
) -> Result<(), TestCaseError> {
    let geom = Geometry::new(rows, cols, Size::Block(nz(bh), nz(bw)), false);
    let data = bytes(m);
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| reduce(&data, Dtype::F32, &geom, Reduction::Std))
    };
    let (a, b) = (run(1), run(2));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    prop_assert_eq!(bits(&a.grid), bits(&b.grid));
    prop_assert_eq!(a.stats, b.stats);
    Ok(())
}

/// A band reduced after another on the same worker gives the same bits as on a worker of
/// its own. 14 × 21 in 6 × 1 cells: columns 16–20 take the general kernel's vertical
/// path, whose last vector's lanes past those 5 columns hold what its buffer held before.
/// On one thread that was the NaN of the band before, and one NaN lane sent the whole
/// vector's sums to `f64` (found by `one_and_two_threads_agree_bit_for_bit`: the std's
/// last digits differed).
#[test]
fn a_band_does_not_see_the_band_before_it() {
    let (rows, cols) = (14, 21);
    let mut m = vec![0f32; rows * cols];
    m[8 * cols + 4] = f32::NAN;
    m[12 * cols + 19] = -1.549_645_5;
    m[13 * cols + 19] = 1.312_963_4;
    threads_agree(rows, cols, &m, 6, 1).unwrap();
}

/// Data whose mean is far from zero relative to its spread: sums relative to a shift keep
/// the variance exact where naive Σx² − (Σx)²/n in f32 would be noise.
#[test]
fn std_survives_a_large_offset() {
    let m: Vec<f32> = (0..4096)
        .map(|i| 1000.0 + ((i % 7) as f32 - 3.0) * 1e-2)
        .collect();
    let geom = Geometry::new(64, 64, Size::Block(nz(64), nz(64)), false);
    let got = reduce(&bytes(&m), Dtype::F32, &geom, Reduction::Std).grid[0];
    let want = naive_grid(&m, 64, 64, 64, 64, Reduction::Std)[0];
    assert!(
        (f64::from(got) - want).abs() < 1e-4 * want,
        "{got} vs {want}"
    );
}

/// Values near the ends of the f32 range overflow an f32 partial sum; the statistics and
/// every reduction must still be those of the numbers (found by fuzzing).
#[test]
fn huge_values_do_not_overflow_partial_sums() {
    for (bh, bw) in [(3, 2), (1, 600)] {
        let (rows, cols) = (6, 1200);
        let m: Vec<f32> = (0..rows * cols)
            .map(|k| {
                if k % 3 == 0 {
                    f32::MAX
                } else {
                    -f32::MAX * 0.5
                }
            })
            .collect();
        let geom = Geometry::new(rows, cols, Size::Block(nz(bh), nz(bw)), false);
        for r in Reduction::ALL {
            let got = reduce(&bytes(&m), Dtype::F32, &geom, r);
            let want = naive_grid(&m, rows, cols, bh, bw, r);
            assert_eq!(got.grid.len(), want.len());
            for (g, w) in got.grid.iter().zip(&want) {
                assert!(
                    g.is_finite() || w.abs() > f64::from(f32::MAX),
                    "{r:?}: {g} vs {w}"
                );
                assert!(
                    (f64::from(*g) - w).abs() <= 1e-5 * f64::from(f32::MAX),
                    "{r:?}: {g} vs {w}"
                );
            }
            let s = got.stats;
            assert!(
                s.mean.unwrap().is_finite() && s.std.unwrap().is_finite(),
                "{s:?}"
            );
        }
    }
}

/// Rows wider than the vertical kernel's column span (8192) are read in several spans;
/// cells must not notice where one ends.
#[test]
fn rows_wider_than_one_span_match_the_reference() {
    let (rows, cols) = (19, 17_000);
    let mut s = 1u64;
    let m: Vec<f32> = (0..rows * cols)
        .map(|k| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if k % 4099 == 0 {
                f32::NAN
            } else {
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            }
        })
        .collect();
    for (bh, bw) in [
        (4, 3),
        (16, 1),
        (5, 7),
        (2, 256),
        (3, 4),
        (2, 8),
        (5, 16),
        (1, 2),
    ] {
        let geom = Geometry::new(rows, cols, Size::Block(nz(bh), nz(bw)), false);
        for r in Reduction::ALL {
            let got = reduce(&bytes(&m), Dtype::F32, &geom, r).grid;
            assert_cells_within(&got, &m, (rows, cols), (bh, bw), r, &format!("{bh}x{bw}"));
        }
    }
}

/// A whole first row far from the rest (found by a review): the median of a cell's first
/// three values, its shift, is then 1e6 while the mean is ~4e3 and the spread ~6e4, so
/// the squared differences hold 1e12 per element and the variance is their remainder.
/// Every reduction and the statistics' std must still be those of the numbers.
#[test]
fn a_leading_row_far_from_the_rest_keeps_rms_and_std() {
    let mut rng = common::Rng::new(7);
    for (rows, cols) in [(256, 256), (1024, 64), (64, 600)] {
        let m = leading_row(&mut rng, rows, cols);
        let geom = Geometry::new(rows, cols, Size::Block(nz(rows), nz(cols)), false);
        let mean_abs = m.iter().map(|v| f64::from(v.abs())).sum::<f64>() / m.len() as f64;
        for r in [Reduction::Rms, Reduction::Std, Reduction::Mean] {
            let got = reduce(&bytes(&m), Dtype::F32, &geom, r);
            let want = naive_grid(&m, rows, cols, rows, cols, r)[0];
            let err = (f64::from(got.grid[0]) - want).abs();
            assert!(
                err <= 1e-5 * mean_abs,
                "{rows}x{cols} {r:?}: {} vs {want} (err {err})",
                got.grid[0]
            );
            let what = format!("{rows}x{cols} {r:?}");
            assert_stats_std(got.stats.std.unwrap(), &m, rows, cols, &what);
        }
    }
}

/// Values so small that their `f32` squares underflow (an optimiser's second moments,
/// say) keep their rms, std and the statistics' std: squares summed in `f32` came out
/// 0 for values of 1e-23 (std 0, rms |mean|).
#[test]
fn values_whose_squares_underflow_keep_rms_and_std() {
    let mut rng = common::Rng::new(11);
    // A whole tensor of tiny values (the fast kernels' bands, and the general kernel's
    // cells), and tiny cells among ordinary ones (the general kernel's runs).
    for (rows, cols, bh, bw, mixed) in [
        (64, 4096, 16, 16, false),
        (256, 256, 4, 4, false),
        (8, 600, 8, 7, false),
        (64, 96, 8, 2, false),
        (4, 2048, 4, 1024, false),
        (64, 4096, 16, 16, true),
        (32, 96, 8, 8, true),
    ] {
        for scale in [1e-23f32, 1e-30, 3e-21] {
            let m: Vec<f32> = (0..rows * cols)
                .map(|i| {
                    let tiny = !mixed || (i % cols) / bw % 2 == 0;
                    let v = 1.0 + 0.5 * rng.normal().abs();
                    v * if tiny { scale } else { 1.0 }
                })
                .collect();
            let geom = Geometry::new(rows, cols, Size::Block(nz(bh), nz(bw)), false);
            for r in [Reduction::Rms, Reduction::Std, Reduction::Mean] {
                let got = reduce(&bytes(&m), Dtype::F32, &geom, r);
                let what = format!("{rows}x{cols} {scale:e} {r:?}");
                assert_cells_within(&got.grid, &m, (rows, cols), (bh, bw), r, &what);
                if !mixed {
                    assert_stats_std(got.stats.std.unwrap(), &m, rows, cols, &what);
                }
            }
        }
    }
}

/// The same leading row in blocks of every kernel (block heights around 16, where a band's
/// or cell's squared differences from a shift taken from that row hold its variance as a
/// remainder up to 16 times smaller, and the fast kernels do not yet give the band to the
/// general one): the statistics' std stays within 1e-6. It came out 4.4e-6 off in bands
/// of 16 rows (a numeric audit's finding), and in the general kernel's 16 × 4 cells and
/// the fast kernels' bands of 15 rows after that.
#[test]
fn a_leading_row_far_from_the_rest_keeps_the_statistics_std() {
    for rows in [64, 256] {
        let cols = 64;
        let mut rng = common::Rng::new(9);
        let m = leading_row(&mut rng, rows, cols);
        for bh in [1, 2, 3, 4, 8, 12, 15, 16, 17, 32, 64] {
            for bw in [1, 2, 3, 4, 8, 16, 64] {
                let geom = Geometry::new(rows, cols, Size::Block(nz(bh), nz(bw)), false);
                for r in [Reduction::Mean, Reduction::Max, Reduction::Std] {
                    let s = reduce(&bytes(&m), Dtype::F32, &geom, r).stats.std.unwrap();
                    let what = format!("{rows} rows in {bh}x{bw} {r:?}");
                    assert_stats_std(s, &m, rows, cols, &what);
                }
            }
        }
    }
}

/// One huge value at the start of a cell (an outlier dimension) must not swallow the
/// small values after it: sums relative to that value would round them all away.
#[test]
fn an_outlier_first_in_its_cell_does_not_swallow_the_rest() {
    for (rows, cols, bh, bw) in [
        (64, 64, 64, 64),
        (1, 4096, 1, 4096),
        (16, 16, 16, 16),
        (8, 600, 8, 600),
    ] {
        let mut m = vec![0.03f32; rows * cols];
        m[0] = 1e6;
        let geom = Geometry::new(rows, cols, Size::Block(nz(bh), nz(bw)), false);
        let mean_abs = m.iter().map(|v| f64::from(v.abs())).sum::<f64>() / m.len() as f64;
        for r in [
            Reduction::Mean,
            Reduction::Std,
            Reduction::Rms,
            Reduction::Sample,
        ] {
            let got = reduce(&bytes(&m), Dtype::F32, &geom, r);
            let want = naive_grid(&m, rows, cols, bh, bw, r);
            let err = (f64::from(got.grid[0]) - want[0]).abs();
            assert!(
                err <= 1e-5 * mean_abs,
                "{rows}x{cols} {r:?}: {} vs {} (err {err})",
                got.grid[0],
                want[0]
            );
        }
        let s = reduce(&bytes(&m), Dtype::F32, &geom, Reduction::Mean).stats;
        let n = m.len() as f64;
        let mean = m.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let std = (m
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        assert!((s.mean.unwrap() - mean).abs() <= 1e-5 * mean_abs, "{s:?}");
        assert!(
            (s.std.unwrap() - std).abs() <= 1e-5 * mean_abs,
            "{s:?} vs {std}"
        );
    }
}

/// Cells of mostly zeros whose shift (the median of their first three values) is one of
/// their few other values (a numeric audit's finding): every zero then added the same
/// square to a much larger `f32` partial sum, and the rounding, all the same way, put
/// rms and std up to 20 times the bound off. F32 and BF16, through each of the general
/// kernel's layouts: cells one per lane (4 and 8 columns), narrow blocks of columns, and
/// wide blocks.
#[test]
fn sparse_cells_keep_rms_and_std() {
    let mut rng = common::Rng::new(102);
    for (rows, cols, bh, bw) in [
        (33, 256, 32, 8),
        (48, 64, 28, 4),
        (44, 234, 34, 105),
        (62, 204, 17, 74),
        (16, 1800, 16, 900),
    ] {
        for (dtype, offset) in [(Dtype::F32, 0.0), (Dtype::F32, 1e3), (Dtype::BF16, 0.0)] {
            // Each cell's first three values nonzero, then 2% of the rest.
            let mut m: Vec<f32> = (0..rows * cols)
                .map(|i| {
                    let lead = (i / cols) % bh == 0 && (i % cols) % bw < 3;
                    if lead || rng.uniform() < 0.02 {
                        let scale = 10f32.powi((rng.next_u64() % 5) as i32 - 2);
                        offset + rng.normal() * scale
                    } else {
                        0.0
                    }
                })
                .collect();
            let data: Vec<u8> = if dtype == Dtype::BF16 {
                // The reference sees the values as stored.
                m.iter_mut()
                    .for_each(|v| *v = f32::from_bits(v.to_bits() & 0xffff_0000));
                m.iter()
                    .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
                    .collect()
            } else {
                bytes(&m)
            };
            let geom = Geometry::new(rows, cols, Size::Block(nz(bh), nz(bw)), false);
            for r in [Reduction::Rms, Reduction::Std, Reduction::Mean] {
                let got = reduce(&data, dtype, &geom, r);
                let what = format!("{rows}x{cols} {bh}x{bw} {dtype:?} +{offset}");
                assert_cells_within(&got.grid, &m, (rows, cols), (bh, bw), r, &what);
            }
        }
    }
}
