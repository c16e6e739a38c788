//! Streaming block aggregation into a grid, and full-data statistics from the same pass.
//!
//! Each grid row (a band of `bh` source rows) is one task. Its bytes are decoded a short
//! run at a time into an L1-sized `f32` scratch buffer and folded at once, so memory is
//! one grid plus a few KB per thread, whatever the tensor's size. Two kernels share the
//! work: for narrow blocks (`bw ≤ 256`) a *vertical* one keeps per-column partial sums
//! for up to 16 rows in registers (no store per element) and then adds each cell's
//! columns to it; for wide blocks a *horizontal* one folds each cell's run in 16 `f32`
//! lanes. Runs with no NaN/Inf take a branch-free path. Per-cell state is kept as a
//! struct of arrays (`Band`) so that the per-cell work vectorises too: with 4 × 4
//! blocks there are as many cells as 16-element runs. Sums are of `x - shift`, a
//! typical value of the cell (the median of its first three finite values), which keeps
//! variances exact for data far from zero and survives an outlier in front; exact zeros
//! are counted instead, and their differences added in `f64` at the end of each run. A
//! cell stays within ~1e-6 of a float64 reference. The kernels are compiled for AVX-512 and
//! AVX2 as well as the baseline and chosen at run time. On CPUs with AVX-512, the common
//! case (a clean BF16/F16/F32/F8_E4M3 band, blocks at least 4 columns wide, `mean`,
//! `max`, `min` or `absmax`) first goes to the register-only kernel in `reduce/avx512.rs`
//! (about three times faster); on other CPUs, BF16, F16, F32 and F8_E4M3 `mean` (FP8
//! with or without block scales), and F8_E5M2 `mean` on all, go to the smaller one in
//! `reduce/lanes.rs` (AVX2 intrinsics where the CPU has them, plain Rust otherwise).
//! Clean BF16, F16, F32 and F8_E4M3 bands without block scales in cells 1 to 3 columns
//! wide (tensors at most 3072 columns wide with default options) go to the one in
//! `reduce/narrow.rs` on every CPU, for `mean`, `max`, `min` or `absmax`. A band these
//! decline is redone here. Bands are merged in order, so results do not depend on the
//! thread count. A tensor whose statistics' variance is a small remainder of the squares
//! behind it (shifts from a first row far from the rest) has its statistics summed again
//! around its mean (`Acc::loose`).

#[cfg(target_arch = "x86_64")]
mod avx512;
mod cpu;
mod lanes;
mod narrow;
mod prefetch;

use multiversion::multiversion;
use rayon::prelude::*;

use crate::colour::Extent;
use crate::config::Reduction;
use crate::dtype::{decode, Dtype, CHUNK};
use crate::view::Geometry;

/// The fast kernels sum unscaled F8's squares plain, `x²` not `(x - b)²`, and re-base them
/// onto `b` in `f64` at the end. A lane's `f32` sums then round by up to ~64 units in the
/// last place of the band's mean square, not of its spread about `b`, and the rounding of
/// the cells' sums enters the variance times twice the mean, not the mean's distance from
/// `b`; both cancel badly in data far from zero for its spread. So a band whose mean square
/// exceeds this many times its variance (its mean farther from zero than its standard
/// deviation) is redone with differences. (The differences' own bound grows with the
/// distance between `b`, one value of the band, and its mean.)
const PLAIN_LIMIT: f64 = 2.0;

/// The mean square of a cell's differences from its shift, over their variance, past
/// which the general kernel sums the band again around the cells' means
/// ([`Band::recentred`]): the `f32` sums' relative error (~1e-7, at most ~4e-6 over 64
/// values) is magnified by that ratio in the variance.
const RECENTRE: f64 = 16.0;

/// The squares summed in `f32`, over the tensor's variance times its count, past which
/// the statistics' sums are taken again in a second pass, around the tensor's mean
/// ([`Acc::loose`]). Each band's or cell's shift is one of its values, so the squares
/// are about 1.45 times the variance for data without structure (a shift is that far
/// from the mean on average); a first row far from the rest puts them at up to
/// [`RECENTRE`] times (the general kernel recentres cells past that, the fast kernels
/// leave bands past it to the general one).
const STATS_SPREAD: f64 = 3.0;

/// Magnitude under which values' `f32` squares may lose precision: squares below
/// 2^-126 (of values below 2^-63) are subnormal or flushed to 0, which took rms and std
/// of values of 1e-23 to |mean| and 0. Runs of a cell's values (and fast kernels'
/// bands) all smaller than this, and not all zero, have their squares summed in `f64`
/// (the bands by the general kernel); at this bound `f32` rounding is still far inside
/// the 1e-5 of the mean magnitude that a cell may be off.
const TINY: f32 = 1.0 / (1u64 << 40) as f32;

/// Whether the largest magnitude of values whose extremes are `min` and `max` is under
/// [`TINY`] but not 0 (false for no values, whose extremes are infinite).
#[inline(always)]
fn tiny(min: f32, max: f32) -> bool {
    let m = min.abs().max(max.abs());
    m > 0.0 && m < TINY
}

/// Whether `n` values whose differences from a shift sum to `s1`, and their squares to
/// `s2`, have a mean square over [`RECENTRE`] times their variance: `s2/n > RECENTRE
/// (s2/n − (s1/n)²)`, without divisions (false for no values, whose sums are 0).
#[inline(always)]
fn cancels(n: f64, s1: f64, s2: f64) -> bool {
    RECENTRE * s1 * s1 > (RECENTRE - 1.0) * n * s2
}

/// Plain squares `s2` of `n` values whose sum is `sum`, re-based onto `b`: their `Σ(x -
/// b)²`; and whether they cancel too badly to be used (see [`PLAIN_LIMIT`]).
fn rebase_plain(s2: f64, sum: f64, n: f64, b: f64) -> (f64, bool) {
    let cancels = s2 > PLAIN_LIMIT * (s2 - sum * sum / n);
    (s2 + (n * b - 2.0 * sum) * b, cancels)
}

/// Lanes of the `f32` partial sums (one AVX-512 register).
const LANES: usize = 16;
/// Columns per tile of the vertical kernel; blocks wider than this use the horizontal one.
const TILE: usize = 512;
/// Rows whose partial sums stay in `f32` before moving to `f64`.
const GROUP: usize = 16;
/// Columns decoded per row in one sequential pass by the vertical kernel (16 rows of
/// this many `f32` stay within L2).
const SPAN: usize = 8192;

/// Running aggregate of a set of values: counts, shifted sums, extremes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acc {
    /// Number of finite values.
    pub n: u64,
    /// Sums are of `x - shift`, a value near the data (see the module docs).
    shift: f32,
    s1: f64,
    s2: f64,
    /// The squares as the `f32` sums behind `s2` held them, around their own shifts
    /// (the band's, or each cell's): their rounding scales with this, not with the
    /// variance (see [`Acc::loose`]).
    squares: f64,
    min: f32,
    max: f32,
    nan: u64,
    inf: u64,
    zeros: u64,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            n: 0,
            shift: 0.0,
            s1: 0.0,
            s2: 0.0,
            squares: 0.0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            nan: 0,
            inf: 0,
            zeros: 0,
        }
    }
}

impl Acc {
    /// Adds another aggregate to this one (its sums re-based onto this shift).
    pub fn merge(&mut self, o: &Acc) {
        self.nan += o.nan;
        self.inf += o.inf;
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            let (nan, inf) = (self.nan, self.inf);
            *self = *o;
            self.nan = nan;
            self.inf = inf;
            return;
        }
        // Σ(x - a) = Σ(x - b) + n(b - a); Σ(x - a)² = Σ(x - b)² + 2(b - a)Σ(x - b) + n(b - a)².
        let delta = f64::from(o.shift) - f64::from(self.shift);
        let n = o.n as f64;
        self.s1 += o.s1 + n * delta;
        self.s2 += o.s2 + 2.0 * delta * o.s1 + n * delta * delta;
        self.squares += o.squares;
        self.n += o.n;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.zeros += o.zeros;
    }

    fn mean(&self) -> f64 {
        f64::from(self.shift) + self.s1 / self.n as f64
    }

    fn variance(&self) -> f64 {
        let n = self.n as f64;
        let m = self.s1 / n;
        (self.s2 / n - m * m).max(0.0)
    }

    /// Whether the `f32` sums behind these leave the variance imprecise: the mean square
    /// of the differences from `shift` is over [`RECENTRE`] times their variance, or the
    /// values are so small that their squares underflow ([`TINY`]).
    fn imprecise(&self) -> bool {
        cancels(self.n as f64, self.s1, self.s2) || tiny(self.min, self.max)
    }

    /// Whether the statistics' variance is a small remainder of the squares summed in
    /// `f32` behind it: over [`STATS_SPREAD`] times smaller. Their rounding (~5e-7 of
    /// the squares, and coherent when many values are alike) is then magnified in the
    /// statistics' std, as when each band's or cell's shift comes from a first row of
    /// 1e6 over values of 1e-3 (4.4e-6 off before the tensor was summed again).
    fn loose(&self) -> bool {
        let n = self.n as f64;
        self.squares * n > STATS_SPREAD * (self.s2 * n - self.s1 * self.s1)
    }

    /// Summary statistics of everything pushed so far.
    pub fn stats(&self) -> Stats {
        let finite = |v: f64| (self.n > 0).then_some(v);
        Stats {
            count: self.n,
            min: finite(f64::from(self.min)),
            max: finite(f64::from(self.max)),
            mean: finite(self.mean()),
            std: finite(self.variance().sqrt()),
            nan: self.nan,
            inf: self.inf,
            zeros: self.zeros,
        }
    }
}

/// Statistics of a tensor's full data (not of its grid).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Number of finite elements.
    pub count: u64,
    /// Smallest finite element (`None` when there is none).
    pub min: Option<f64>,
    /// Largest finite element.
    pub max: Option<f64>,
    /// Mean of the finite elements.
    pub mean: Option<f64>,
    /// Population standard deviation of the finite elements.
    pub std: Option<f64>,
    /// Number of NaN elements.
    pub nan: u64,
    /// Number of infinite elements (+Inf and −Inf).
    pub inf: u64,
    /// Number of elements exactly zero (including −0).
    pub zeros: u64,
}

/// A reduced tensor: the row-major grid and the full-data statistics.
#[derive(Debug, Clone)]
pub struct Reduced {
    /// `grid_h × grid_w` values in row-major order; NaN for cells without finite members.
    pub grid: Vec<f32>,
    /// Statistics over every element.
    pub stats: Stats,
    /// The grid's finite cells and their extremes, found band by band while each band's
    /// cells are in cache, not in a pass of its own over the finished grid (4 MiB for
    /// 1024 × 1024 cells).
    pub extent: Extent,
}

/// Aggregates the `rows × cols` elements of `dtype` in `data` over `geom`'s blocks.
///
/// # Panics
/// If `data.len()` is not `rows × cols × dtype.size()` (validated headers guarantee it),
/// or `geom` has no columns.
pub fn reduce(data: &[u8], dtype: Dtype, geom: &Geometry, reduction: Reduction) -> Reduced {
    reduce_scaled(data, dtype, None, geom, reduction)
}

/// Block scales applied while reading: `w[i, j] = q[i, j] × s[i / bh, j / bw]`, as in
/// DeepSeek-style FP8 checkpoints (`<name>_scale_inv`).
#[derive(Debug, Clone, Copy)]
pub struct Scale<'a> {
    /// The scale tensor's bytes, `rows × cols` elements of `dtype`.
    pub data: &'a [u8],
    /// The scale tensor's dtype (F32, BF16, F8_E8M0, ...).
    pub dtype: Dtype,
    /// Scale rows: `ceil(weight rows / bh)`.
    pub rows: usize,
    /// Scale columns: `ceil(weight cols / bw)`.
    pub cols: usize,
    /// Weight rows per scale.
    pub bh: usize,
    /// Weight columns per scale.
    pub bw: usize,
}

impl Scale<'_> {
    /// Whether these are the scales of a `rows × cols` view: blocks of at least 1, one
    /// scale per block, and the bytes of exactly that many.
    pub fn fits(&self, rows: usize, cols: usize) -> bool {
        self.bh > 0
            && self.bw > 0
            && self.rows == rows.div_ceil(self.bh)
            && self.cols == cols.div_ceil(self.bw)
            && self
                .rows
                .checked_mul(self.cols)
                .and_then(|n| n.checked_mul(self.dtype.size()))
                == Some(self.data.len())
    }
}

/// [`reduce`] with optional block scales multiplied in as the data streams by.
///
/// # Panics
/// If `data.len()` does not fit `geom` and `dtype`, `scale` does not fit `geom` (the
/// render driver checks both), or `geom` has no columns (a tensor without elements,
/// which the driver skips).
pub fn reduce_scaled(
    data: &[u8],
    dtype: Dtype,
    scale: Option<&Scale<'_>>,
    geom: &Geometry,
    reduction: Reduction,
) -> Reduced {
    let row_bytes = geom.cols * dtype.size();
    assert_eq!(data.len(), geom.rows * row_bytes, "tensor data length");
    // A block taller or wider than the tensor makes the cells one of its height or width
    // makes, and the kernels' index arithmetic assumes no more (`--block 1x2^64-1`
    // overflowed it); a hand-built block of 0 is taken as 1.
    let geom = &Geometry {
        bh: geom.bh.clamp(1, geom.rows.max(1)),
        bw: geom.bw.clamp(1, geom.cols.max(1)),
        ..*geom
    };
    if let Some(s) = scale {
        assert!(
            s.fits(geom.rows, geom.cols),
            "scale does not fit the tensor"
        );
    }
    let gw = geom.grid_w();
    // Every band writes all of its row of the grid, so a recycled grid is kept as it is
    // up to the size wanted (zeroing a 1024 × 1024 grid took ~1.3% of an F8 render with
    // default options).
    let mut grid = SPARE_GRID.take();
    grid.truncate(geom.grid_h() * gw);
    grid.resize(geom.grid_h() * gw, 0.0);
    // Whether a fast band's cells have shifts (the same for every band of the tensor).
    let shifted = keeps_extras(dtype, reduction, scale.is_some());
    let bands: Vec<(Acc, Extent)> = grid
        .par_chunks_mut(gw)
        .enumerate()
        .map_init(
            || Band::new(gw),
            |band, (i, out)| {
                let rows = geom.row_range(i);
                let bytes = &data[rows.start * row_bytes..rows.end * row_bytes];
                let fast = if geom.bw >= 4 {
                    fast_band(bytes, dtype, &rows, scale, geom, reduction, band)
                } else if scale.is_none() {
                    narrow::band(bytes, dtype, rows.len(), geom, reduction, band)
                } else {
                    None
                };
                // (A band whose squares only hold the variance as a small remainder, or
                // underflow, is left to the general kernel, which sums such cells around
                // their means, and such runs in `f64`.)
                let acc = match fast.filter(|acc| !acc.imprecise()) {
                    Some(acc) => {
                        fast_values(band, reduction, shifted, rows.len(), geom, out);
                        acc
                    }
                    None => {
                        reset(band, rows.len(), geom);
                        // The general kernel writes every array.
                        (band.reset_rows, band.extras_clean) = (None, false);
                        let src = Source {
                            data: bytes,
                            dtype,
                            row0: rows.start,
                            scale,
                        };
                        reduce_band(&src, geom, band, reduction, out)
                    }
                };
                (acc, Extent::of(out))
            },
        )
        .collect();
    let mut total = Acc::default();
    let mut extent = Extent::EMPTY;
    for (acc, e) in &bands {
        total.merge(acc);
        extent = extent.merge(*e);
    }
    if total.loose() {
        (total.shift, total.s1, total.s2) = around_mean(data, dtype, scale, geom, &total);
    }
    Reduced {
        grid,
        stats: total.stats(),
        extent,
    }
}

/// The statistics' sums of a tensor's finite values taken again, in `f64`, around the
/// mean `total` found (see [`Acc::loose`]): its new shift and the sums of the
/// differences from it and of their squares. Band by band in parallel, added in order.
fn around_mean(
    data: &[u8],
    dtype: Dtype,
    scale: Option<&Scale<'_>>,
    geom: &Geometry,
    total: &Acc,
) -> (f32, f64, f64) {
    #[cfg(test)]
    tests::SECOND_PASSES.with(|n| n.set(n.get() + 1));
    let shift = total.mean() as f32;
    let centre = f64::from(shift);
    let row_bytes = geom.cols * dtype.size();
    let sums: Vec<(f64, f64)> = (0..geom.grid_h())
        .into_par_iter()
        .map(|i| {
            let rows = geom.row_range(i);
            let src = Source {
                data: &data[rows.start * row_bytes..rows.end * row_bytes],
                dtype,
                row0: rows.start,
                scale,
            };
            let (mut buf, mut cache) = ([0f32; CHUNK], ScaleCache::default());
            let (mut s1, mut s2) = (0f64, 0f64);
            for r in 0..rows.len() {
                for c0 in (0..geom.cols).step_by(CHUNK) {
                    let out = &mut buf[..CHUNK.min(geom.cols - c0)];
                    src.load(r, c0, geom.cols, out, &mut cache);
                    for x in out.iter().filter(|x| x.is_finite()) {
                        let d = f64::from(*x) - centre;
                        s1 += d;
                        s2 += d * d;
                    }
                }
            }
            (s1, s2)
        })
        .collect();
    let (s1, s2) = sums
        .iter()
        .fold((0.0, 0.0), |(a, b), (c, d)| (a + c, b + d));
    (shift, s1, s2)
}

/// Reduces a band (tensor rows `rows`) with a kernel for the common case, if one takes it:
/// the AVX-512 kernel where the CPU has it (unless `TENSORHEAT_NO_AVX512` is set),
/// otherwise the one of `reduce/lanes.rs`. The band is readied for the kernel only once
/// one is chosen. `None`: the band is left to the general kernel.
fn fast_band(
    bytes: &[u8],
    dtype: Dtype,
    rows: &std::ops::Range<usize>,
    scale: Option<&Scale<'_>>,
    geom: &Geometry,
    reduction: Reduction,
    band: &mut Band,
) -> Option<Acc> {
    let (cols, bw) = (geom.cols, geom.bw);
    #[cfg(target_arch = "x86_64")]
    if avx512::runs(dtype, reduction) {
        reset_for_fast(band, rows.len(), geom, dtype, reduction, scale.is_some());
        let lanes = std::mem::take(&mut band.lane_scales);
        let mut scales = scale.map(|s| avx512::Scales::new(s, rows.start, lanes));
        let fast = avx512::band(bytes, dtype, cols, bw, reduction, scales.as_mut(), band);
        if let Some(s) = scales {
            band.lane_scales = s.into_lanes();
        }
        return fast;
    }
    lanes_band(bytes, dtype, rows, scale, geom, reduction, band)
}

/// [`fast_band`] with the kernel of `reduce/lanes.rs`.
fn lanes_band(
    bytes: &[u8],
    dtype: Dtype,
    rows: &std::ops::Range<usize>,
    scale: Option<&Scale<'_>>,
    geom: &Geometry,
    reduction: Reduction,
    band: &mut Band,
) -> Option<Acc> {
    let group = lanes::group(dtype, reduction, scale.is_some())?;
    reset_for_fast(band, rows.len(), geom, dtype, reduction, scale.is_some());
    let scale = scale.map(|s| (s, rows.start));
    lanes::band(bytes, dtype, geom.cols, geom.bw, scale, band, group)
}

/// [`Band::reset`] compiled for the CPU's vector units: with small cells a band's
/// bookkeeping is as large as its data.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn reset(band: &mut Band, rows: usize, geom: &Geometry) {
    band.reset(rows, geom);
}

/// Whether a fast kernel (one of [`fast_band`], or the narrow one) for `dtype` and
/// `reduction` (`scaled`: FP8 with block scales) keeps the cells' shifts and extremes:
/// for `mean` of BF16, F16 and unscaled FP8 it writes only their sums (the extremes of a
/// cell are then not needed, and its shift stays 0). (The narrow kernel writes no shifts,
/// and for `mean` no extremes either: for F32 `mean` it readies the shifts to 0 itself.)
fn keeps_extras(dtype: Dtype, reduction: Reduction, scaled: bool) -> bool {
    reduction != Reduction::Mean || dtype == Dtype::F32 || scaled
}

/// Readies `band` for a fast kernel (see [`keeps_extras`]), which writes only the cells' sums and,
/// if it [`keeps_extras`], their shifts and extremes: when the band was last fully reset
/// for as many rows and only those kernels have run since, only these are reset (a full
/// reset writes ~45 bytes per cell, three times an F8 band's data with 4 × 4 cells), and
/// the shifts and extremes only when the kernel uses them and another has written them
/// since (the sums alone: 8 bytes a cell, not 20).
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn reset_for_fast(
    band: &mut Band,
    rows: usize,
    geom: &Geometry,
    dtype: Dtype,
    reduction: Reduction,
    scaled: bool,
) {
    let extras = keeps_extras(dtype, reduction, scaled);
    if !band.reset_for_height(rows, geom) {
        band.s1.fill(0.0);
        if extras {
            band.clean_extras();
        }
    }
    // The kernel about to run may write them.
    band.extras_clean &= !extras;
}

/// [`Band::fast_values`] compiled for the CPU's vector units, for bands a fast kernel
/// reduced (the general kernel's values are computed inside its multiversioned
/// `reduce_band`).
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn fast_values(
    band: &Band,
    reduction: Reduction,
    shifted: bool,
    rows: usize,
    geom: &Geometry,
    out: &mut [f32],
) {
    let fused =
        multiversion::target::target_cfg_f!(any(target_feature = "fma", target_arch = "aarch64"));
    band.fast_values(reduction, shifted, rows, geom, fused, out);
}

/// `s / n` as the division rounds it, for `s` zero or of magnitude 2^-969 to 2^1000 (a
/// cell's sum of `f32` values: 2^-149 or more unless zero, so that nothing is subnormal)
/// and `n` a whole number 1 to 2^53, from `y`, `1 / n` rounded: the product `s·y`,
/// corrected twice by the remainder `s - n·q`, which a fused multiply-add gives exactly.
/// The first correction leaves the estimate within an ulp of `s / n`, and from there
/// Markstein's theorem makes the second round as the division does (`y` is within half
/// an ulp of `1 / n`). (One
/// correction matched the division in every one of 7·10^8 quotients tried, adversarial
/// divisors such as `2^k - 1` included, but no theorem covers it.) Only where the CPU
/// fuses the operations: the C library's `fma` is far slower than a division. A division
/// per cell (`vdivpd`: ~4.9 ns for 8 here, against ~0.16 for a fused multiply-add) took
/// ~4% of an F8 render with default options, whose cells of 4 × 14 and 14 × 4 columns
/// are not a power of two.
#[inline(always)]
fn quotient(s: f64, n: f64, y: f64) -> f64 {
    /// `q` corrected by its remainder `s - n·q`.
    #[inline(always)]
    fn correct(q: f64, s: f64, n: f64, y: f64) -> f64 {
        (-q).mul_add(n, s).mul_add(y, q)
    }
    // (A zero keeps its sign, as in `s / n`; the corrections would make -0 +0.)
    if s == 0.0 {
        s
    } else {
        correct(correct(s * y, s, n, y), s, n, y)
    }
}

thread_local! {
    /// A grid given back by [`recycle_grid`], for this thread's next reduction.
    static SPARE_GRID: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Gives a grid back for the next [`reduce_scaled`] on this thread: a render goes through
/// many tensors, and a fresh grid each time made the allocator return the pages to the
/// kernel and fault them in again (~5% of a render with default options).
pub(crate) fn recycle_grid(grid: Vec<f32>) {
    SPARE_GRID.set(grid);
}

/// The bytes of one band and how to turn them into values.
struct Source<'a> {
    data: &'a [u8],
    dtype: Dtype,
    /// Index of the band's first row in the whole tensor.
    row0: usize,
    scale: Option<&'a Scale<'a>>,
}

impl Source<'_> {
    /// Decodes columns `c0 .. c0 + cw` of band rows `rows` into `buf`, the `k`-th row at
    /// `k · stride`; returns whether every value is finite.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn load_rows(
        &self,
        rows: std::ops::Range<usize>,
        c0: usize,
        cols: usize,
        buf: &mut [f32],
        stride: usize,
        cw: usize,
        cache: &mut ScaleCache,
    ) -> bool {
        let mut clean = true;
        for (k, r) in rows.enumerate() {
            let out = &mut buf[k * stride..k * stride + cw];
            self.load(r, c0, cols, out, cache);
            clean &= all_finite(out);
        }
        clean
    }

    /// Decodes `out.len()` elements of band row `r` from column `c0`, scaled if needed.
    #[inline(always)]
    fn load(&self, r: usize, c0: usize, cols: usize, out: &mut [f32], cache: &mut ScaleCache) {
        let size = self.dtype.size();
        let start = (r * cols + c0) * size;
        let bytes = &self.data[start..start + out.len() * size];
        for (o, b) in out.chunks_mut(CHUNK).zip(bytes.chunks(CHUNK * size)) {
            decode(self.dtype, b, o);
        }
        if let Some(s) = self.scale {
            let sr = (self.row0 + r) / s.bh;
            if cache.index != Some(sr) {
                cache.row.resize(s.cols, 0.0);
                let z = s.dtype.size();
                let bytes = &s.data[sr * s.cols * z..(sr + 1) * s.cols * z];
                for (o, b) in cache.row.chunks_mut(CHUNK).zip(bytes.chunks(CHUNK * z)) {
                    decode(s.dtype, b, o);
                }
                cache.index = Some(sr);
            }
            let mut c = c0;
            for piece in out.chunk_by_mut_len(c0, s.bw) {
                let f = cache.row[c / s.bw];
                for x in piece.iter_mut() {
                    *x *= f;
                }
                c += piece.len();
            }
        }
    }
}

/// Splits a row piece starting at column `c0` at multiples of `bw`.
trait ChunkByLen {
    fn chunk_by_mut_len(&mut self, c0: usize, bw: usize) -> impl Iterator<Item = &mut [f32]>;
}

impl ChunkByLen for [f32] {
    fn chunk_by_mut_len(&mut self, c0: usize, bw: usize) -> impl Iterator<Item = &mut [f32]> {
        let first = (bw - c0 % bw).min(self.len());
        let (head, tail) = self.split_at_mut(first);
        std::iter::once(head)
            .filter(|h| !h.is_empty())
            .chain(tail.chunks_mut(bw))
    }
}

/// One band's cells, as a struct of arrays, plus the band's NaN/Inf/zero counts.
struct Band {
    shift: Vec<f32>,
    primed: Vec<bool>,
    /// Each cell's first finite value in row-major order (the `sample` reduction).
    first: Vec<f32>,
    s1: Vec<f64>,
    s2: Vec<f64>,
    min: Vec<f32>,
    max: Vec<f32>,
    /// Members of each cell (finite or not).
    members: Vec<u64>,
    nonfinite: Vec<u64>,
    nan: u64,
    inf: u64,
    zeros: u64,
    /// The decoded scale row last used.
    scale: ScaleCache,
    /// The same in the AVX-512 kernel's lane layout.
    #[cfg(target_arch = "x86_64")]
    lane_scales: ScaleCache,
    /// The scale row of the kernel of `reduce/lanes.rs`: each column's scale (times 256
    /// for F8_E4M3), padded to whole chunks.
    column_scales: ScaleCache,
    /// Decoded rows of the vertical kernel: `GROUP` rows of a column chunk.
    rows: Vec<f32>,
    /// The narrow kernel's column sums.
    narrow: narrow::Columns,
    /// The band's height at its last full reset, if only fast kernels have run since (see
    /// `reset_for_fast`).
    reset_rows: Option<usize>,
    /// Whether `shift`, `min` and `max` hold their reset values: a fast kernel for `mean`
    /// of unscaled BF16, F16 or FP8 never writes them (see [`keeps_extras`]).
    extras_clean: bool,
    /// The AVX-512 kernel's sums of squares and differences, eight `f64` lanes of each
    /// per chunk of a row (or run of chunks), in column order.
    #[cfg(target_arch = "x86_64")]
    slots: Vec<f64>,
    /// Whether the last BF16 or F16 `mean` band the AVX-512 kernel took with this `Band`
    /// held values of one sign: the next keeps each lane's smallest code too (a tensor's
    /// bands are alike; a wrong guess costs time, never a different result).
    #[cfg(target_arch = "x86_64")]
    one_signed: bool,
}

/// The decoded scale row last used, and its index.
#[derive(Default)]
struct ScaleCache {
    row: Vec<f32>,
    index: Option<usize>,
}

/// The scale of block row `sr`, column `sc`.
fn scale_at(s: &Scale<'_>, sr: usize, sc: usize) -> f32 {
    let z = s.dtype.size();
    let at = (sr * s.cols + sc) * z;
    crate::dtype::decode_one(s.dtype, &s.data[at..at + z])
}

/// Each column's scale in block row `sr` times `unit`, for `cols` columns, then 1 up to
/// `len`, into `out`, for the kernels of [`fast_band`]; `false` if one is not a normal
/// number above 2^-100 (zero, tiny, NaN or Inf scales would make zeros or non-finite
/// values those kernels do not count; the general one does) or overflows times `unit`.
fn column_scales(
    out: &mut Vec<f32>,
    s: &Scale<'_>,
    sr: usize,
    cols: usize,
    len: usize,
    unit: f32,
) -> bool {
    out.clear();
    for sc in 0..s.cols {
        let v = scale_at(s, sr, sc);
        if !(v.is_finite() && v.abs() >= 2f32.powi(-100) && (v * unit).is_finite()) {
            return false;
        }
        // (No further than `cols`: a block may be wider than the tensor, as wide as a
        // file's `weight_block_size` says.)
        out.extend(std::iter::repeat_n(v * unit, s.bw.min(cols - out.len())));
    }
    out.resize(len, 1.0);
    true
}

impl Band {
    fn new(gw: usize) -> Band {
        Band {
            shift: vec![0.0; gw],
            primed: vec![false; gw],
            first: vec![0.0; gw],
            s1: vec![0.0; gw],
            s2: vec![0.0; gw],
            min: vec![f32::INFINITY; gw],
            max: vec![f32::NEG_INFINITY; gw],
            members: vec![0; gw],
            nonfinite: vec![0; gw],
            nan: 0,
            inf: 0,
            zeros: 0,
            scale: ScaleCache::default(),
            #[cfg(target_arch = "x86_64")]
            lane_scales: ScaleCache::default(),
            column_scales: ScaleCache::default(),
            rows: Vec::new(),
            narrow: narrow::Columns::default(),
            reset_rows: None,
            extras_clean: false,
            #[cfg(target_arch = "x86_64")]
            slots: Vec::new(),
            #[cfg(target_arch = "x86_64")]
            one_signed: false,
        }
    }

    #[inline(always)]
    fn reset(&mut self, rows: usize, geom: &Geometry) {
        self.extras_clean = false;
        self.clean_extras();
        self.primed.fill(false);
        self.s1.fill(0.0);
        self.s2.fill(0.0);
        self.nonfinite.fill(0);
        for (j, m) in self.members.iter_mut().enumerate() {
            let w = geom.bw.min(geom.cols - j * geom.bw);
            *m = (rows * w) as u64;
        }
        (self.nan, self.inf, self.zeros) = (0, 0, 0);
    }

    /// For the fast kernels: a full [`Band::reset`] for bands of `rows` rows, if the band
    /// was last fully reset for another height (or the general kernel has run since);
    /// whether it was.
    fn reset_for_height(&mut self, rows: usize, geom: &Geometry) -> bool {
        let reset = self.reset_rows != Some(rows);
        if reset {
            self.reset(rows, geom);
            self.reset_rows = Some(rows);
        }
        reset
    }

    /// Gives the cells' shifts and extremes their reset values, unless they hold them.
    fn clean_extras(&mut self) {
        if !self.extras_clean {
            self.shift.fill(0.0);
            self.min.fill(f32::INFINITY);
            self.max.fill(f32::NEG_INFINITY);
            self.extras_clean = true;
        }
    }

    /// Gives cell `j` its first finite value and its shift if it has none yet, from
    /// `run` (the cell's next values in row-major order). The shift is the median of the
    /// first three finite values: a typical value, so that one outlier in front does not
    /// make every other value a large difference that f32 sums would round away. Until
    /// primed the cell has seen only NaN/Inf, which add nothing to the sums, so a shift
    /// chosen late is still exact.
    #[inline(always)]
    fn prime<'a>(&mut self, j: usize, run: impl IntoIterator<Item = &'a f32>) {
        if self.primed[j] {
            return;
        }
        let mut finite = run.into_iter().copied().filter(|v| v.is_finite());
        let Some(a) = finite.next() else { return };
        let shift = match (finite.next(), finite.next()) {
            (Some(b), Some(c)) => median3(a, b, c),
            _ => a,
        };
        self.set_first(j, a, shift);
    }

    /// Adds per-lane partials to cells `j0 .. j0 + LANES`, one cell per lane.
    #[inline(always)]
    fn add_lanes(&mut self, j0: usize, p: &Part) {
        let r = j0..j0 + LANES;
        for (k, j) in r.enumerate() {
            self.s1[j] += p.s1[k];
            self.s2[j] += p.s2[k];
            self.min[j] = if p.min[k] < self.min[j] {
                p.min[k]
            } else {
                self.min[j]
            };
            self.max[j] = if p.max[k] > self.max[j] {
                p.max[k]
            } else {
                self.max[j]
            };
            self.nonfinite[j] += u64::from(p.nonfinite[k]);
        }
        p.add_counts(LANES, self);
    }

    #[inline(always)]
    fn set_first(&mut self, j: usize, first: f32, shift: f32) {
        self.first[j] = first;
        self.shift[j] = shift;
        self.primed[j] = true;
    }

    /// Each primed cell's shift for a second pass (its mean for the cells whose
    /// differences from their shift cancel, else the same), if some cell's do. A cell
    /// whose first three values lie far from the rest (a leading row of 1e6 over values
    /// of 1e-3) has a shift far from its mean: its squared differences then hold the
    /// square of that distance many times over, the variance (and with it `rms`, `std`
    /// and the statistics' std) is their small remainder, and the `f32` sums' rounding
    /// is magnified by the ratio (2.7e-4 of the mean magnitude in that example, against
    /// the 1e-5 promised). Past a ratio of [`RECENTRE`] the band is summed again.
    fn recentred(&self) -> Option<Vec<Option<f32>>> {
        // Checked for every cell without an early exit, so that it vectorises: most
        // bands pass.
        let far = |j: usize| cancels(self.n(j), self.s1[j], self.s2[j]);
        let n = self.shift.len();
        assert!(
            self.s1.len() == n
                && self.s2.len() == n
                && self.members.len() == n
                && self.nonfinite.len() == n
        );
        (0..n).fold(false, |any, j| any | far(j)).then(|| {
            (0..n)
                .map(|j| {
                    let mean = f64::from(self.shift[j]) + self.s1[j] / self.n(j);
                    let shift = if far(j) { mean as f32 } else { self.shift[j] };
                    self.primed[j].then_some(shift)
                })
                .collect()
        })
    }

    /// Finite members of cell `j`.
    #[inline(always)]
    fn n(&self, j: usize) -> f64 {
        (self.members[j] - self.nonfinite[j]) as f64
    }

    /// The members of every cell, when all have as many and none is NaN or infinite.
    #[inline(always)]
    fn uniform_members(&self) -> Option<u64> {
        let m = *self.members.first()?;
        let same = self.members.iter().fold(true, |all, &k| all & (k == m));
        let finite = self.nonfinite.iter().fold(true, |all, &k| all & (k == 0));
        (same && finite).then_some(m)
    }

    /// Writes each cell's reduced value into `out` (NaN for cells with no finite member).
    /// One loop per reduction, so each vectorises.
    #[inline(always)]
    fn values(&self, r: Reduction, out: &mut [f32]) {
        // Generic, not `&dyn Fn`: one inlined loop per reduction, no call per cell.
        #[inline(always)]
        fn fill(out: &mut [f32], band: &Band, f: impl Fn(usize, f64) -> f64) {
            // Every array is one per cell; said once, so that the loop has no bounds
            // checks and vectorises.
            let n = out.len();
            assert!([band.s1.len(), band.s2.len(), band.members.len()]
                .iter()
                .all(|&l| l == n));
            assert!([band.shift.len(), band.min.len(), band.max.len()]
                .iter()
                .all(|&l| l == n));
            assert!(band.nonfinite.len() == n && band.first.len() == n);
            for (j, o) in out.iter_mut().enumerate() {
                let n = band.n(j);
                *o = if n > 0.0 { f(j, n) as f32 } else { f32::NAN };
            }
        }
        let shift = |j: usize| f64::from(self.shift[j]);
        match r {
            Reduction::Mean => match self.uniform_members() {
                // Cells of one power-of-two size (4 × 4 with default options) take the
                // exact reciprocal instead of a division each, which weighed as much as
                // reducing an F8 cell's 16 bytes.
                Some(m) if m.is_power_of_two() => {
                    let inv = 1.0 / m as f64;
                    fill(out, self, |j, _| shift(j) + self.s1[j] * inv)
                }
                _ => fill(out, self, |j, n| shift(j) + self.s1[j] / n),
            },
            Reduction::Rms => fill(out, self, |j, n| {
                let s = shift(j);
                (self.s2[j] / n + 2.0 * s * self.s1[j] / n + s * s)
                    .max(0.0)
                    .sqrt()
            }),
            Reduction::AbsMax => fill(out, self, |j, _| {
                f64::from(self.max[j].abs().max(self.min[j].abs()))
            }),
            Reduction::Max => fill(out, self, |j, _| f64::from(self.max[j])),
            Reduction::Min => fill(out, self, |j, _| f64::from(self.min[j])),
            Reduction::Std => fill(out, self, |j, n| {
                let m = self.s1[j] / n;
                (self.s2[j] / n - m * m).max(0.0).sqrt()
            }),
            Reduction::Sample => fill(out, self, |j, _| f64::from(self.first[j])),
        }
    }

    /// [`Band::values`] for a band a kernel of `fast_band` reduced: its cells hold only finite
    /// values and all of them, `rows × bw` each (the last one maybe narrower), so no
    /// cell's member counts are read (with 4 × 4 cells they were three times the bytes
    /// of an F8 band's data). Same values as [`Band::values`]. Unless `shifted` (the
    /// kernel [`keeps_extras`]), the cells' shifts are 0 and not read. `fused`: the CPU
    /// has fused multiply-adds, so that [`quotient`] can stand for a division.
    #[inline(always)]
    fn fast_values(
        &self,
        r: Reduction,
        shifted: bool,
        rows: usize,
        geom: &Geometry,
        fused: bool,
        out: &mut [f32],
    ) {
        /// Each cell's mean, `mean(j, s)` for its sum `s` over its members.
        #[inline(always)]
        fn means(
            out: &mut [f32],
            s1: &[f64],
            rows: usize,
            geom: &Geometry,
            fused: bool,
            mean: impl Fn(usize, f64) -> f64,
        ) {
            // Whole cells, then the narrower last one.
            let whole = (geom.cols / geom.bw).min(out.len());
            let m = rows * geom.bw;
            let (out, last) = out.split_at_mut(whole);
            if m.is_power_of_two() {
                // Its reciprocal is exact, as in `values`.
                let inv = 1.0 / m as f64;
                for (j, o) in out.iter_mut().enumerate() {
                    *o = mean(j, s1[j] * inv) as f32;
                }
            } else if fused {
                let (n, y) = (m as f64, 1.0 / m as f64);
                for (j, o) in out.iter_mut().enumerate() {
                    *o = mean(j, quotient(s1[j], n, y)) as f32;
                }
            } else {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = mean(j, s1[j] / m as f64) as f32;
                }
            }
            for (k, o) in last.iter_mut().enumerate() {
                let j = whole + k;
                let w = geom.cols - j * geom.bw;
                *o = mean(j, s1[j] / (rows * w) as f64) as f32;
            }
        }
        let n = out.len();
        let (s1, shift) = (&self.s1[..n], &self.shift[..n]);
        let (min, max) = (&self.min[..n], &self.max[..n]);
        match r {
            Reduction::Mean if shifted => {
                means(out, s1, rows, geom, fused, |j, s| f64::from(shift[j]) + s);
            }
            Reduction::Mean => means(out, s1, rows, geom, fused, |_, s| s),
            Reduction::Max => out.copy_from_slice(max),
            Reduction::Min => out.copy_from_slice(min),
            Reduction::AbsMax => {
                for ((o, lo), hi) in out.iter_mut().zip(min).zip(max) {
                    *o = hi.abs().max(lo.abs());
                }
            }
            _ => self.values(r, out),
        }
    }

    /// Summarises the band for the tensor's statistics, every cell's sums re-based onto
    /// one shift (the first primed cell's).
    #[inline(always)]
    fn summary(&self) -> Acc {
        let base = self
            .primed
            .iter()
            .position(|&p| p)
            .map_or(0.0, |j| self.shift[j]);
        let mut acc = Acc {
            shift: base,
            nan: self.nan,
            inf: self.inf,
            zeros: self.zeros,
            ..Acc::default()
        };
        let (mut s1, mut s2, mut n) = (0f64, 0f64, 0u64);
        for j in 0..self.shift.len() {
            let nj = self.members[j] - self.nonfinite[j];
            let nf = nj as f64;
            let delta = f64::from(self.shift[j]) - f64::from(base);
            n += nj;
            s1 += self.s1[j] + nf * delta;
            s2 += self.s2[j] + 2.0 * delta * self.s1[j] + nf * delta * delta;
            acc.squares += self.s2[j];
            acc.min = if self.min[j] < acc.min {
                self.min[j]
            } else {
                acc.min
            };
            acc.max = if self.max[j] > acc.max {
                self.max[j]
            } else {
                acc.max
            };
        }
        (acc.n, acc.s1, acc.s2) = (n, s1, s2);
        acc
    }
}

/// Partial aggregates of `N` columns or lanes, each over a short run (at most `GROUP`
/// rows or `CHUNK` elements, so that the `f32` sums behind them stay accurate).
struct Partials<const N: usize> {
    s1: [f64; N],
    s2: [f64; N],
    min: [f32; N],
    max: [f32; N],
    nonfinite: [u32; N],
    nan: [u32; N],
    zeros: [u32; N],
}

/// One vector's partials, as a kernel run produces them.
type Part = Partials<LANES>;
/// A tile's column partials, as a struct of arrays.
type Columns = Partials<TILE>;

impl<const N: usize> Partials<N> {
    /// Adds the NaN, Inf and zero counts of the first `n` columns or lanes to the band's
    /// totals; returns their non-finite count.
    #[inline(always)]
    fn add_counts(&self, n: usize, band: &mut Band) -> u64 {
        let (mut nan, mut nonfinite, mut zeros) = (0u64, 0u64, 0u64);
        for k in 0..n {
            nan += u64::from(self.nan[k]);
            nonfinite += u64::from(self.nonfinite[k]);
            zeros += u64::from(self.zeros[k]);
        }
        band.nan += nan;
        band.inf += nonfinite - nan;
        band.zeros += zeros;
        nonfinite
    }

    fn zeroed() -> Self {
        Partials {
            s1: [0.0; N],
            s2: [0.0; N],
            min: [0.0; N],
            max: [0.0; N],
            nonfinite: [0; N],
            nan: [0; N],
            zeros: [0; N],
        }
    }
}

impl Part {
    /// Aggregates a run of vectors; `CLEAN` promises every value is finite. The sums
    /// live in local arrays so that they stay in vector registers for the whole run.
    #[inline(always)]
    fn of_run<'a, const CLEAN: bool>(
        run: impl Iterator<Item = &'a [f32; LANES]> + Clone,
        shift: &[f32; LANES],
        used: usize,
    ) -> Part {
        let mut s1 = [0f32; LANES];
        let mut s2 = [0f32; LANES];
        let mut min = [f32::INFINITY; LANES];
        let mut max = [f32::NEG_INFINITY; LANES];
        let mut nonfinite = [0u32; LANES];
        let mut nan = [0u32; LANES];
        let mut zeros = [0u32; LANES];
        for x in run.clone() {
            for k in 0..LANES {
                let v = x[k];
                let finite = CLEAN || v.is_finite();
                // Zeros are counted, and their differences added below in `f64`.
                let d = if finite && v != 0.0 {
                    v - shift[k]
                } else {
                    0.0
                };
                s1[k] += d;
                s2[k] += d * d;
                min[k] = if finite && v < min[k] { v } else { min[k] };
                max[k] = if finite && v > max[k] { v } else { max[k] };
                if !CLEAN {
                    nonfinite[k] += u32::from(!finite);
                    nan[k] += u32::from(v.is_nan());
                }
                zeros[k] += u32::from(v == 0.0);
            }
        }
        // Decided on the lanes in use alone: the others may hold whatever the buffer held
        // before (a NaN there, with `CLEAN`, would make their sums NaN), and the lanes'
        // results must not depend on it (nor on which band a worker took before).
        let small = (0..used).fold(false, |t, k| t | tiny(min[k], max[k]));
        let exact = all_finite(&s1[..used]) && all_finite(&s2[..used]) && !small;
        // (The correction below changes nothing without zeros, but making it on every
        // run cost ~5% of `rms` and `std`: runs without any skip it.)
        let (s1, s2) = if exact && no_zeros(&zeros) {
            (s1.map(f64::from), s2.map(f64::from))
        } else if exact {
            // Each zero's difference is `-shift`: added here exactly, not one by one to
            // an `f32` sum. In a cell of mostly zeros whose shift is one of its few other
            // values, every zero added the same square to a much larger partial sum, and
            // the rounding, all the same way, put rms and std up to 20 times the promised
            // 1e-5 of the cell's mean magnitude off.
            (
                std::array::from_fn(|k| {
                    f64::from(s1[k]) - f64::from(zeros[k]) * f64::from(shift[k])
                }),
                std::array::from_fn(|k| {
                    let b = f64::from(shift[k]);
                    f64::from(s2[k]) + f64::from(zeros[k]) * b * b
                }),
            )
        } else {
            // Values near the ends of the f32 range overflowed an f32 sum, or a lane's
            // squares underflowed: redo in f64.
            sums_f64(run, shift)
        };
        Part {
            s1,
            s2,
            min,
            max,
            nonfinite,
            nan,
            zeros,
        }
    }

    /// [`Part::of_run`] with the clean path chosen for the whole run; lanes from `used` on
    /// are not the caller's (their results are not used).
    #[inline(always)]
    fn of<'a>(
        clean: bool,
        run: impl Iterator<Item = &'a [f32; LANES]> + Clone,
        shift: &[f32; LANES],
        used: usize,
    ) -> Part {
        if clean {
            Part::of_run::<true>(run, shift, used)
        } else {
            Part::of_run::<false>(run, shift, used)
        }
    }
}

/// The shifted sums of a run in `f64` (the rare path: an `f32` sum overflowed, or
/// squares underflowed).
#[cold]
fn sums_f64<'a>(
    run: impl Iterator<Item = &'a [f32; LANES]>,
    shift: &[f32; LANES],
) -> ([f64; LANES], [f64; LANES]) {
    let mut s1 = [0f64; LANES];
    let mut s2 = [0f64; LANES];
    for x in run {
        for k in 0..LANES {
            if x[k].is_finite() {
                let d = f64::from(x[k]) - f64::from(shift[k]);
                s1[k] += d;
                s2[k] += d * d;
            }
        }
    }
    (s1, s2)
}

impl Columns {
    #[inline(always)]
    fn store(&mut self, v: usize, p: &Part) {
        let r = v * LANES..(v + 1) * LANES;
        self.s1[r.clone()].copy_from_slice(&p.s1);
        self.s2[r.clone()].copy_from_slice(&p.s2);
        self.min[r.clone()].copy_from_slice(&p.min);
        self.max[r.clone()].copy_from_slice(&p.max);
        self.nonfinite[r.clone()].copy_from_slice(&p.nonfinite);
        self.nan[r.clone()].copy_from_slice(&p.nan);
        self.zeros[r].copy_from_slice(&p.zeros);
    }

    /// Adds the first `w` columns to their cells (`BW` columns each, the last possibly
    /// fewer), the cells starting at `j0`. `BW` is the block width when it is a small
    /// constant (so the loop unrolls and vectorises), else 0 and `bw` is used.
    #[inline(always)]
    fn fold<const BW: usize>(&self, w: usize, bw: usize, j0: usize, band: &mut Band) {
        let bw = if BW > 0 { BW } else { bw };
        let cells = w.div_ceil(bw);
        self.add_counts(w, band);
        for jj in 0..cells {
            let j = j0 + jj;
            let cols = jj * bw..((jj + 1) * bw).min(w);
            let (mut s1, mut s2, mut nf) = (0f64, 0f64, 0u64);
            let (mut mn, mut mx) = (band.min[j], band.max[j]);
            for c in cols {
                s1 += self.s1[c];
                s2 += self.s2[c];
                nf += u64::from(self.nonfinite[c]);
                mn = if self.min[c] < mn { self.min[c] } else { mn };
                mx = if self.max[c] > mx { self.max[c] } else { mx };
            }
            band.s1[j] += s1;
            band.s2[j] += s2;
            band.nonfinite[j] += nf;
            band.min[j] = mn;
            band.max[j] = mx;
        }
    }
}

/// Aggregates one band of whole source rows into its cells, writes their values into
/// `out` and returns the band's summary.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn reduce_band<'a>(
    src: &Source<'a>,
    geom: &Geometry,
    band: &mut Band,
    reduction: Reduction,
    out: &mut [f32],
) -> Acc {
    // One call site, so that the kernels are inlined once.
    let mut again = true;
    loop {
        sum_cells(src, geom, band);
        let Some(shifts) = band.recentred().filter(|_| again) else {
            break;
        };
        // Some cell's differences from its shift cancel: the band again, each such cell
        // summed around its mean from this pass.
        again = false;
        let rows = src.data.len() / (geom.cols * src.dtype.size());
        let first = band.first.clone();
        reset(band, rows, geom);
        (band.reset_rows, band.extras_clean) = (None, false);
        for (j, shift) in shifts.into_iter().enumerate() {
            if let Some(shift) = shift {
                band.set_first(j, first[j], shift);
            }
        }
    }
    band.values(reduction, out);
    band.summary()
}

/// The general kernel's pass over a band: every cell's sums, extremes and counts.
/// (Inlined, so that it is compiled for the CPU features of [`reduce_band`]'s versions.)
#[inline(always)]
fn sum_cells<'a>(src: &Source<'a>, geom: &Geometry, band: &mut Band) {
    match geom.bw {
        1 => {
            let done = cell_lanes::<1>(src, geom, band);
            vertical::<1>(src, geom, band, done);
        }
        2 => {
            let done = cell_lanes::<2>(src, geom, band);
            vertical::<2>(src, geom, band, done);
        }
        4 => {
            let done = cell_lanes::<4>(src, geom, band);
            vertical::<4>(src, geom, band, done);
        }
        8 => {
            let done = cell_lanes::<8>(src, geom, band);
            vertical::<8>(src, geom, band, done);
        }
        ..=TILE => vertical::<0>(src, geom, band, 0),
        _ => horizontal(src, geom, band),
    }
}

/// Small power-of-two blocks (`BW` = 1, 2, 4 or 8 columns): one cell per lane. Each block of `LANES`
/// whole cells is rearranged so that vector `t` holds the `t`-th member (row-major) of
/// each of the 16 cells; then the partial sums, the shifts, the priming and the fold
/// into the band are all lane-parallel, instead of per column and per cell. Returns the
/// columns done (whole blocks of 16 cells); the rest is left to [`vertical`].
#[inline(always)]
fn cell_lanes<'a, const BW: usize>(src: &Source<'a>, geom: &Geometry, band: &mut Band) -> usize {
    const { assert!(BW <= 16) };
    let cols = geom.cols;
    let blk = LANES * BW;
    let full = cols / blk * blk;
    if full == 0 {
        return 0;
    }
    let nrows = src.data.len() / (cols * src.dtype.size());
    let span = (SPAN / blk).max(1) * blk;
    let stride = span.min(full);
    let mut buf = std::mem::take(&mut band.rows);
    buf.resize(GROUP * stride, 0.0);
    // Members per f32 run: at most 64 per lane, as elsewhere.
    let rows_per_run = (64 / BW).clamp(1, GROUP);
    let mut gat = [[0f32; LANES]; GROUP * 16];
    for c0 in (0..full).step_by(span) {
        let cw = span.min(full - c0);
        for g0 in (0..nrows).step_by(GROUP) {
            let g = GROUP.min(nrows - g0);
            let clean = src.load_rows(g0..g0 + g, c0, cols, &mut buf, stride, cw, &mut band.scale);
            for b0 in (0..cw).step_by(blk) {
                let j0 = (c0 + b0) / BW;
                for ri in 0..g {
                    let row = &buf[ri * stride + b0..ri * stride + b0 + blk];
                    for b in 0..BW {
                        gat[ri * BW + b] = std::array::from_fn(|k| row[k * BW + b]);
                    }
                }
                let members = &gat[..g * BW];
                if band.primed[j0..j0 + LANES].iter().any(|p| !p) {
                    match members {
                        [a, b, c, ..] if all_finite(a) && all_finite(b) && all_finite(c) => {
                            for k in 0..LANES {
                                if !band.primed[j0 + k] {
                                    band.set_first(j0 + k, a[k], median3(a[k], b[k], c[k]));
                                }
                            }
                        }
                        _ => {
                            for k in 0..LANES {
                                band.prime(j0 + k, members.iter().map(|v| &v[k]));
                            }
                        }
                    }
                }
                let shift: [f32; LANES] = std::array::from_fn(|k| band.shift[j0 + k]);
                for run in members.chunks(rows_per_run * BW) {
                    let p = Part::of(clean, run.iter(), &shift, LANES);
                    band.add_lanes(j0, &p);
                }
            }
        }
    }
    band.rows = buf;
    full
}

/// Narrow blocks. The band is read in column chunks of up to `SPAN` columns (whole
/// cells), `GROUP` rows at a time, each row piece decoded in one sequential pass (long
/// runs keep the hardware prefetcher streaming; the decoded rows stay in L2). Within a
/// chunk, tiles of up to `TILE` columns accumulate per-column partials down the rows in
/// registers; then each cell's columns are added to it in `f64`. `BW` as in
/// [`Columns::fold`].
#[inline(always)]
fn vertical<'a, const BW: usize>(src: &Source<'a>, geom: &Geometry, band: &mut Band, start: usize) {
    let (cols, bw) = (geom.cols, geom.bw);
    let nrows = src.data.len() / (cols * src.dtype.size());
    let tile_cols = (TILE / bw).max(1) * bw;
    let span = (SPAN / tile_cols).max(1) * tile_cols;
    // Each decoded row has LANES spare slots so the last vector of a tile stays in it.
    let stride = span.min(cols - start) + LANES;
    // Taken out of the band for the loop, so the band's cells can be updated meanwhile.
    let mut buf = std::mem::take(&mut band.rows);
    buf.resize(GROUP * stride, 0.0);
    let mut shifts = [0f32; TILE];
    let mut part = Columns::zeroed();
    for c0 in (start..cols).step_by(span) {
        let cw = span.min(cols - c0);
        for g0 in (0..nrows).step_by(GROUP) {
            let g = GROUP.min(nrows - g0);
            let clean = src.load_rows(g0..g0 + g, c0, cols, &mut buf, stride, cw, &mut band.scale);
            let rows = &buf[..g * stride];
            for t0 in (c0..c0 + cw).step_by(tile_cols) {
                let w = tile_cols.min(c0 + cw - t0);
                let vecs = w.div_ceil(LANES);
                let (j0, off) = (t0 / bw, t0 - c0);
                for jj in 0..w.div_ceil(bw) {
                    let cc = jj * bw..((jj + 1) * bw).min(w);
                    let j = j0 + jj;
                    if !band.primed[j] {
                        match rows[off + cc.start..off + cc.end] {
                            // The usual case, without the general scan.
                            [a, b, c, ..] if all_finite(&[a, b, c]) => {
                                band.set_first(j, a, median3(a, b, c));
                            }
                            _ => band.prime(
                                j,
                                rows.chunks(stride)
                                    .flat_map(|row| &row[off + cc.start..off + cc.end]),
                            ),
                        }
                    }
                    shifts[cc].fill(band.shift[j]);
                }
                for v in 0..vecs {
                    // Lanes past the tile hold other columns (or stale values): each lane
                    // is independent, only the tile's columns are folded, and `Part::of`
                    // chooses its sums' path from the tile's lanes alone.
                    let run = rows.chunks(stride).map(|row| lanes(&row[off..], v));
                    let used = (w - v * LANES).min(LANES);
                    part.store(v, &Part::of(clean, run, lanes(&shifts, v), used));
                }
                part.fold::<BW>(w, bw, j0, band);
            }
        }
    }
    band.rows = buf;
}

/// Wide blocks: each cell's run of every row in `CHUNK`-element pieces over `LANES`
/// lanes, folded into the cell after each piece.
#[inline(always)]
fn horizontal<'a>(src: &Source<'a>, geom: &Geometry, band: &mut Band) {
    let cols = geom.cols;
    let nrows = src.data.len() / (cols * src.dtype.size());
    let mut scratch = [0f32; CHUNK];
    for r in 0..nrows {
        for j in 0..geom.grid_w() {
            let cells = j * geom.bw..((j + 1) * geom.bw).min(cols);
            for c0 in cells.clone().step_by(CHUNK) {
                let n = CHUNK.min(cells.end - c0);
                let xs = &mut scratch[..n];
                src.load(r, c0, cols, xs, &mut band.scale);
                band.prime(j, xs.iter());
                let clean = all_finite(xs);
                let padded = n.next_multiple_of(LANES);
                // Padding repeats the shift: it adds nothing to the sums, and once the
                // cell is primed the shift is a real member, so not to the extremes
                // either. Unprimed, the piece holds no finite value and min/max stay.
                let shift = band.shift[j];
                scratch[n..padded].fill(shift);
                let run = (0..padded / LANES).map(|v| lanes(&scratch, v));
                let p = Part::of(clean, run, &[shift; LANES], LANES);
                let pad = (padded - n) as u64;
                let (mut s1, mut s2) = (0f64, 0f64);
                for k in 0..LANES {
                    s1 += p.s1[k];
                    s2 += p.s2[k];
                    if band.primed[j] {
                        band.min[j] = band.min[j].min(p.min[k]);
                        band.max[j] = band.max[j].max(p.max[k]);
                    }
                }
                band.s1[j] += s1;
                band.s2[j] += s2;
                band.nonfinite[j] += p.add_counts(LANES, band);
                band.zeros -= pad * u64::from(shift == 0.0);
            }
        }
    }
}

/// Rows from which a band's typical value is taken from three of its rows, not its
/// first three values: reading two more rows' first bytes ahead of the kernel cost ~2%
/// of a BF16 render with default options (bands of 4 rows, in which a far first row
/// holds the variance as a remainder at most 4 times smaller).
const SPREAD_ROWS: usize = 16;

/// A band's typical value, around which the fast kernels sum squared differences: the
/// median of three of its values, `None` if one of them is not finite. With `row_len`
/// (bands without block scales) and at least [`SPREAD_ROWS`] rows, the first values of
/// its first, middle and last rows, so that a first row far from the rest (a leading
/// row of 1e6 over values of 1e-3) does not make every difference the distance between
/// them: the band's squares then held its variance as a remainder 16 times smaller, and
/// the statistics' std came out 4e-6 off (such a tensor's statistics are now summed
/// again, [`Acc::loose`], but that costs a second read of it). Otherwise its first three
/// values (with block scales, the value is scaled by the first one's scale).
fn typical(data: &[u8], dtype: Dtype, row_len: Option<usize>) -> Option<f32> {
    let size = dtype.size();
    let n = data.len() / size;
    let at = |i: usize| crate::dtype::decode_one(dtype, &data[i * size..(i + 1) * size]);
    let picks = match row_len {
        Some(cols) if cols > 0 && n / cols >= SPREAD_ROWS => {
            [0, n / cols / 2 * cols, (n / cols - 1) * cols]
        }
        _ if n >= 3 => [0, 1, 2],
        _ if n >= 1 => [0; 3],
        _ => return None,
    };
    let [a, b, c] = picks.map(at);
    (a.is_finite() && b.is_finite() && c.is_finite()).then(|| median3(a, b, c))
}

/// The smallest and largest value of a band of sign-magnitude codes (BF16, F16 or F8, at
/// least one), from three extremes of the codes: the largest read as a
/// signed integer (`smax`, as an unsigned code), and the largest and smallest read as
/// unsigned. Sign and magnitude order the codes without decoding: `smax` is the largest
/// value if any value is positive, `umax` the smallest if any is negative, and `umin`
/// settles the other cases (asked for only then: a band of both signs does not need it).
/// NaN and Inf codes have the largest magnitudes, so a band holding one has a non-finite
/// extreme.
fn code_extremes(dtype: Dtype, smax: u32, umax: u32, umin: impl FnOnce() -> u32) -> (f32, f32) {
    let size = dtype.size();
    let sign = 1u32 << (8 * size - 1);
    let (max, min) = match (smax < sign, umax >= sign) {
        (true, true) => (smax, umax),
        (true, false) => (smax, umin()),
        (false, true) => (umin(), umax),
        (false, false) => {
            let umin = umin();
            (umin, umin)
        }
    };
    let value = |c: u32| crate::dtype::decode_one(dtype, &c.to_le_bytes()[..size]);
    (value(min), value(max))
}

/// The middle one of three values.
#[inline(always)]
fn median3(a: f32, b: f32, c: f32) -> f32 {
    a.min(b).max(a.max(b).min(c))
}

/// Whether every count is 0, without an early exit (so it vectorises).
#[inline(always)]
fn no_zeros(counts: &[u32; LANES]) -> bool {
    counts.iter().fold(0, |m, &c| m | c) == 0
}

/// Whether no value is NaN or infinite, without an early exit (so it vectorises).
#[inline(always)]
fn all_finite(xs: &[f32]) -> bool {
    xs.iter()
        .fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff))
        < 0x7f80_0000
}

/// The `v`-th vector of `LANES` values of a slice.
#[inline(always)]
fn lanes(s: &[f32], v: usize) -> &[f32; LANES] {
    s[v * LANES..(v + 1) * LANES]
        .try_into()
        .expect("slice of LANES elements")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Size;

    /// A xorshift64 generator from `state` (not 0).
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    thread_local! {
        /// Second passes for the statistics ([`around_mean`]) on this thread.
        pub(super) static SECOND_PASSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// The statistics' second pass is for data whose shifts sit far from the mean, not
    /// for data without such structure, which would pay a second read of every tensor:
    /// normal values (around 0, around 5 with spread 0.1, and rounded to FP8's whole
    /// numbers -3 to 3), in bands and cells of every kernel, take none; the same with a
    /// first row of 1e6, in bands of 4 and 15 rows (under the 16 past which bands and
    /// cells are recentred), takes one.
    #[test]
    fn only_a_leading_row_takes_a_second_pass() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let mut uniform = || (next() >> 11) as f64 / (1u64 << 53) as f64;
        let (rows, cols) = (256usize, 512usize);
        // Box-Muller.
        let normal: Vec<f32> = (0..rows * cols)
            .map(|_| {
                let (u, v) = (1.0 - uniform(), uniform());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        let passes = |values: &[f32], dtype: Dtype, bh: usize, bw: usize, r: Reduction| {
            let size = Size::Block(bh.try_into().unwrap(), bw.try_into().unwrap());
            let geom = Geometry::new(rows, cols, size, false);
            let before = SECOND_PASSES.with(|n| n.get());
            reduce(&encoded(dtype, values), dtype, &geom, r);
            SECOND_PASSES.with(|n| n.get()) - before
        };
        let offset: Vec<f32> = normal.iter().map(|x| 5.0 + 0.1 * x).collect();
        let whole: Vec<f32> = normal.iter().map(|x| x.round().clamp(-3.0, 3.0)).collect();
        let mut leading = normal.clone();
        leading[..cols].fill(1e6);
        for (bh, bw) in [
            (1, 1),
            (2, 2),
            (4, 4),
            (16, 4),
            (15, 16),
            (16, 16),
            (64, 64),
        ] {
            for r in [Reduction::Mean, Reduction::Max, Reduction::Std] {
                for (values, dtypes) in [
                    (&normal, &[Dtype::F32, Dtype::BF16, Dtype::F16][..]),
                    (&offset, &[Dtype::F32, Dtype::BF16, Dtype::F16]),
                    (&whole, &[Dtype::F8E4M3, Dtype::F8E5M2]),
                ] {
                    for &dtype in dtypes {
                        let n = passes(values, dtype, bh, bw, r);
                        assert_eq!(n, 0, "{dtype:?} {bh}x{bw} {r:?}");
                    }
                }
                if [4, 15].contains(&bh) {
                    let n = passes(&leading, Dtype::F32, bh, bw, r);
                    assert_eq!(n, 1, "leading row, {bh}x{bw} {r:?}");
                }
            }
        }
    }

    /// [`quotient`] rounds as the division does: values of either sign and magnitudes
    /// 2^-160 to 2^185, near multiples of the divisor and with all-ones significands,
    /// over divisors 1 to 10^4, `2^k ± 1` up to 2^52 and random ones up to 2^40 (a
    /// cell's member count). (The fused multiply-add here is the C library's, exact like
    /// the CPU's.)
    #[test]
    fn quotient_is_the_division() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for k in 0..20_000u64 {
            let n = if k < 10_000 {
                k + 1
            } else if k % 2 == 0 {
                1 + (next() >> (24 + k % 40))
            } else {
                let p = 1u64 << (1 + k / 2 % 52);
                if k % 4 == 1 {
                    p - 1
                } else {
                    p + 1
                }
            } as f64;
            for i in 0..50 {
                let r = next();
                let s = match i % 3 {
                    // Any significand and sign, exponents -160 to 185.
                    0 => f64::from_bits(r & 0x800f_ffff_ffff_ffff | (863 + (r >> 52) % 346) << 52),
                    1 => (r >> 24) as f64 * n + if r & 1 == 0 { 0.5 } else { -0.25 },
                    _ => {
                        let ones =
                            f64::from_bits(0x3fff_ffff_ffff_ffff ^ (r & 0x8000_0000_0000_0fff));
                        ones * (1u64 << (r >> 59)) as f64
                    }
                };
                let want = s / n;
                assert_eq!(
                    quotient(s, n, 1.0 / n).to_bits(),
                    want.to_bits(),
                    "{s:e} / {n}"
                );
            }
        }
        for s in [0.0, -0.0] {
            assert_eq!(quotient(s, 3.0, 1.0 / 3.0).to_bits(), (s / 3.0).to_bits());
        }
    }

    /// `values` as little-endian `dtype` bytes; for FP8 only the whole numbers -3 to 3 and
    /// non-finite values (E4M3's NaN standing in for its missing Inf, E5M2's NaN for both).
    fn encoded(dtype: Dtype, values: &[f32]) -> Vec<u8> {
        let fp8 = |codes: [u8; 7], v: f32| {
            if v.is_finite() {
                codes[(v + 3.0) as usize]
            } else {
                0x7f
            }
        };
        values
            .iter()
            .flat_map(|&v| match dtype {
                Dtype::F32 => v.to_le_bytes().to_vec(),
                Dtype::BF16 => ((v.to_bits() >> 16) as u16).to_le_bytes().to_vec(),
                Dtype::F16 => half::f16::from_f32(v).to_bits().to_le_bytes().to_vec(),
                // (E4M3: 3 as 0x44; E5M2: 3 as 0x42.)
                Dtype::F8E4M3 => vec![fp8([0xc4, 0xc0, 0xb8, 0x00, 0x38, 0x40, 0x44], v)],
                _ => vec![fp8([0xc2, 0xc0, 0xbc, 0x00, 0x3c, 0x40, 0x42], v)],
            })
            .collect()
    }

    /// Clean BF16, F16, F32 and F8 `mean` bands with cells at least 4 columns wide go to a kernel
    /// of [`fast_band`] on every CPU, and the one of `reduce/lanes.rs` (where CPUs without
    /// the AVX-512 kernel send them) takes them.
    #[test]
    fn fast_bands_are_taken() {
        let (rows, cols) = (4usize, 64usize);
        let size = Size::Block(4.try_into().unwrap(), 4.try_into().unwrap());
        let geom = Geometry::new(rows, cols, size, false);
        for dtype in [
            Dtype::BF16,
            Dtype::F16,
            Dtype::F32,
            Dtype::F8E4M3,
            Dtype::F8E5M2,
        ] {
            let values: Vec<f32> = (0..rows * cols).map(|i| (i % 7) as f32 - 3.0).collect();
            let bytes = encoded(dtype, &values);
            for kernel in [fast_band, lanes_band] {
                let mut band = Band::new(geom.grid_w());
                let r = Reduction::Mean;
                let taken = kernel(&bytes, dtype, &(0..rows), None, &geom, r, &mut band);
                assert!(taken.is_some(), "{dtype:?}");
            }
        }
        // FP8 with block scales too.
        let (one, codes) = (1f32.to_le_bytes(), vec![0x38u8; rows * cols]);
        let scale = Scale {
            data: &one,
            dtype: Dtype::F32,
            rows: 1,
            cols: 1,
            bh: rows,
            bw: cols,
        };
        let mut band = Band::new(geom.grid_w());
        let r = Reduction::Mean;
        let f8 = Dtype::F8E4M3;
        assert!(lanes_band(&codes, f8, &(0..rows), Some(&scale), &geom, r, &mut band).is_some());
    }

    /// Clean BF16, F16, F32 and F8_E4M3 bands in cells 1 to 3 columns wide go to the
    /// kernel of `reduce/narrow.rs` for `mean`, `max`, `min` and `absmax`, rows shorter
    /// and longer than one decode piece; it hands back bands with a NaN, an Inf or
    /// values whose `f32` squares overflow, and the cases it does not take.
    #[test]
    fn narrow_bands_are_taken() {
        let take = |dtype: Dtype, values: &[f32], cols: usize, bw: usize, r: Reduction| {
            let rows = values.len() / cols;
            let size = Size::Block(rows.try_into().unwrap(), bw.try_into().unwrap());
            let geom = Geometry::new(rows, cols, size, false);
            let mut band = Band::new(geom.grid_w());
            let bytes = encoded(dtype, values);
            narrow::band(&bytes, dtype, rows, &geom, r, &mut band)
        };
        let reductions = [
            Reduction::Mean,
            Reduction::Max,
            Reduction::Min,
            Reduction::AbsMax,
        ];
        for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32, Dtype::F8E4M3] {
            for cols in [5, 700] {
                let values: Vec<f32> = (0..3 * cols).map(|i| (i % 6) as f32 - 2.0).collect();
                for bw in 1..=3 {
                    for r in reductions {
                        let acc = take(dtype, &values, cols, bw, r);
                        let acc = acc.unwrap_or_else(|| panic!("{dtype:?} {cols} {bw} {r:?}"));
                        assert_eq!(acc.n, values.len() as u64);
                    }
                }
                for bad in [f32::NAN, f32::INFINITY] {
                    let mut v = values.clone();
                    v[cols + 1] = bad;
                    let r = Reduction::Mean;
                    assert!(take(dtype, &v, cols, 2, r).is_none(), "{dtype:?} {bad}");
                }
                assert!(take(dtype, &values, cols, 4, Reduction::Mean).is_none());
                assert!(take(dtype, &values, cols, 2, Reduction::Rms).is_none());
            }
        }
        let values = [0f32, 1.0, 2.0, -1.0];
        assert!(take(Dtype::F8E5M2, &values, 2, 2, Reduction::Mean).is_none());
        // Finite values whose squared differences overflow `f32`: handed back, and the
        // general kernel's statistics are right.
        let huge = [1e20f32, -1e20];
        assert!(take(Dtype::F32, &huge, 2, 2, Reduction::Mean).is_none());
        let bytes = encoded(Dtype::F32, &huge);
        let size = Size::Block(1.try_into().unwrap(), 2.try_into().unwrap());
        let got = reduce(
            &bytes,
            Dtype::F32,
            &Geometry::new(1, 2, size, false),
            Reduction::Mean,
        );
        let std = got.stats.std.unwrap();
        assert!((std - 1e20).abs() <= 1e14, "{std}");
    }

    /// A cell of -0 values comes out +0 whichever kernel reduces its band (the narrow one
    /// for the first band, the general one for the second, which holds a NaN).
    #[test]
    fn negative_zero_cells_are_positive_zero() {
        let mut values = [-0.0f32; 16];
        values[15] = f32::NAN;
        let bytes = encoded(Dtype::BF16, &values);
        let size = Size::Block(2.try_into().unwrap(), 2.try_into().unwrap());
        let geom = Geometry::new(4, 4, size, false);
        let got = reduce(&bytes, Dtype::BF16, &geom, Reduction::Mean);
        let bits: Vec<u32> = got.grid.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, vec![0; 4], "{:?}", got.grid);
    }

    /// A grid handed back for reuse keeps its old values until the bands overwrite them:
    /// a larger grid full of NaN, recycled before each reduction, must leave nothing in a
    /// smaller one, whichever kernel reduces the bands (the fast one for `mean` of 4-column
    /// blocks where the CPU has it, the general one for `rms` and 2-column blocks).
    #[test]
    fn recycled_grids_are_overwritten() {
        let (rows, cols) = (24, 64);
        let values: Vec<f32> = (0..rows * cols).map(|i| (i % 7) as f32 - 3.0).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        for (bw, reduction) in [
            (4, Reduction::Mean),
            (4, Reduction::Rms),
            (2, Reduction::Mean),
        ] {
            let size = Size::Block(4.try_into().unwrap(), bw.try_into().unwrap());
            let geom = Geometry::new(rows, cols, size, false);
            let fresh = reduce(&bytes, Dtype::F32, &geom, reduction).grid;
            recycle_grid(vec![f32::NAN; 4 * fresh.len()]);
            let reused = reduce(&bytes, Dtype::F32, &geom, reduction).grid;
            assert!(fresh.iter().all(|v| v.is_finite()), "{reduction:?}");
            assert_eq!(reused, fresh, "{reduction:?} {bw}");
        }
    }
}
