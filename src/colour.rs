//! Colour ranges, colormaps and 256-entry lookup tables.
//!
//! A grid value becomes a colour in two steps: its position `t` in the chosen range picks
//! one of 256 equal-width bins (`floor(t · 256)`, clamped, as matplotlib does), and the
//! bin indexes a lookup table sampled once from the colormap. Nothing evaluates a
//! gradient per pixel, and the same table doubles as an indexed PNG's palette.

use std::str::FromStr;

use multiversion::multiversion;

use crate::config::{FixedRange, Reduction};
use crate::error::Error;

/// Matplotlib names accepted by `--colormap` (case-insensitive, `_r` reverses), each
/// with its gradient and whether colorous runs it the other way round from matplotlib.
const MAPS: &[(&str, colorous::Gradient, bool)] = &[
    ("viridis", colorous::VIRIDIS, false),
    ("magma", colorous::MAGMA, false),
    ("inferno", colorous::INFERNO, false),
    ("plasma", colorous::PLASMA, false),
    ("cividis", colorous::CIVIDIS, false),
    ("turbo", colorous::TURBO, false),
    ("Greys", colorous::GREYS, false),
    ("Blues", colorous::BLUES, false),
    ("Greens", colorous::GREENS, false),
    ("Oranges", colorous::ORANGES, false),
    ("Purples", colorous::PURPLES, false),
    ("Reds", colorous::REDS, false),
    ("YlOrRd", colorous::YELLOW_ORANGE_RED, false),
    ("YlGnBu", colorous::YELLOW_GREEN_BLUE, false),
    ("RdBu", colorous::RED_BLUE, false),
    ("RdYlBu", colorous::RED_YELLOW_BLUE, false),
    ("RdYlGn", colorous::RED_YELLOW_GREEN, false),
    ("Spectral", colorous::SPECTRAL, false),
    ("BrBG", colorous::BROWN_GREEN, false),
    ("PiYG", colorous::PINK_GREEN, false),
    ("PRGn", colorous::PURPLE_GREEN, false),
    // matplotlib's PuOr runs from orange (0) to purple (1); colorous's the other way.
    ("PuOr", colorous::PURPLE_ORANGE, true),
    ("RdGy", colorous::RED_GREY, false),
];

/// A named colormap, possibly reversed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Colormap {
    index: usize,
    reversed: bool,
}

impl std::fmt::Debug for Colormap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Colormap({})", self.name())
    }
}

impl Colormap {
    /// Default for data with both signs: blue below zero, red above.
    pub fn diverging_default() -> Colormap {
        "RdBu_r".parse().expect("RdBu_r is a known colormap")
    }

    /// Default for one-signed data.
    pub fn sequential_default() -> Colormap {
        "viridis".parse().expect("viridis is a known colormap")
    }

    /// Every accepted name (without the `_r` variants).
    pub fn names() -> impl Iterator<Item = &'static str> {
        MAPS.iter().map(|m| m.0)
    }

    /// The canonical name, e.g. `RdBu_r`.
    pub fn name(&self) -> String {
        let base = MAPS[self.index].0;
        if self.reversed {
            format!("{base}_r")
        } else {
            base.to_owned()
        }
    }

    /// The 256-entry lookup table: sampled from the gradient once per process (~9 µs,
    /// a seventh of colouring and encoding a 256 × 256 picture), then copied.
    pub fn lut(&self) -> Lut {
        static LUTS: [[std::sync::OnceLock<Lut>; 2]; MAPS.len()] =
            [const { [const { std::sync::OnceLock::new() }; 2] }; MAPS.len()];
        let lut = LUTS[self.index][usize::from(self.reversed)].get_or_init(|| {
            let (_, gradient, flip) = MAPS[self.index];
            let mut colors = [[0u8; 3]; 256];
            for (i, c) in colors.iter_mut().enumerate() {
                let k = if self.reversed != flip { 255 - i } else { i };
                let rgb = gradient.eval_rational(k, 256);
                *c = [rgb.r, rgb.g, rgb.b];
            }
            Lut(colors)
        });
        lut.clone()
    }
}

impl FromStr for Colormap {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let lower = s.to_ascii_lowercase();
        let (base, reversed) = match lower.strip_suffix("_r") {
            Some(b) => (b, true),
            None => (lower.as_str(), false),
        };
        MAPS.iter()
            .position(|m| m.0.eq_ignore_ascii_case(base))
            .map(|index| Colormap { index, reversed })
            .ok_or_else(|| {
                let known: Vec<_> = Colormap::names().collect();
                Error::Option(format!(
                    "unknown colormap {s:?} (known: {}, each also with _r)",
                    known.join(", ")
                ))
            })
    }
}

/// 256 sRGB colours, index 0 for the low end of the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lut(pub [[u8; 3]; 256]);

/// The value range mapped onto the colormap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// Value of the first colour.
    pub lo: f64,
    /// Value of the last colour.
    pub hi: f64,
    /// Whether the range is symmetric about zero for data of both signs.
    pub diverging: bool,
}

impl Range {
    /// The LUT index for `v`, or `None` for NaN. Values outside the range take the end
    /// colours; a degenerate range (`lo == hi`) maps its one value to the middle.
    #[inline]
    pub fn index(&self, v: f32) -> Option<u8> {
        (!v.is_nan()).then(|| self.index_of_number(v))
    }

    /// [`Range::index`] of a value that is not NaN.
    #[inline(always)]
    pub fn index_of_number(&self, v: f32) -> u8 {
        let (v, span) = (f64::from(v), self.hi - self.lo);
        let t = if span > 0.0 {
            (v - self.lo) / span
        } else if v < self.lo {
            0.0
        } else if v > self.hi {
            1.0
        } else {
            0.5
        };
        bin(t * 256.0)
    }

    /// [`Range::index_of_number`] of each of `values` into `out`, which is as long.
    ///
    /// Dividing in `f64` is the slow step (a vector division per 8 values), so each
    /// value's place is first worked out in `f32`, 16 at a time, by a subtraction and a
    /// multiplication by `256 / span`. That place is within `edge` (below) of the exact
    /// one, so the two bins differ only when the place lies that close to an integer: a
    /// run of values with such a place is done the exact way (all runs, for a range too
    /// narrow for its distance from zero). Without a usable `f32` range (degenerate or
    /// too wide), all values are.
    #[inline(always)]
    pub fn index_into(&self, values: &[f32], out: &mut [u8]) {
        /// Values per run: one test of their places' distances to an integer per run.
        const RUN: usize = 16;
        assert_eq!(values.len(), out.len(), "one index per value");
        let (lo, scale) = (self.lo as f32, (256.0 / (self.hi - self.lo)) as f32);
        // Bound on the place's error: the rounding of `lo`, of the difference, of the
        // scale and of the product, each at most 2^-24 of its size, for places up to 257
        // (further out, both bins are an end one), with a margin of two. (A `lo` below
        // f32's normal range rounds by at most 2^-150, under 2^-22 of a place, as `scale`
        // is below 2^128: inside the constant term. A subnormal difference is exact.)
        let edge = (2.0 * (257.0 * 3.0 + f64::from(scale) * self.lo.abs() * 1.01) + 1.0)
            / f64::from(1u32 << 24);
        // (Differences of values in the range must not overflow either.)
        let usable = self.hi > self.lo
            && (self.hi - self.lo) * 1.01 < f64::from(f32::MAX)
            && lo.is_finite()
            && scale.is_normal();
        if !usable {
            for (o, &v) in out.iter_mut().zip(values) {
                *o = self.index_of_number(v);
            }
            return;
        }
        let inner = 0.5 - edge as f32;
        let mut runs = values.chunks_exact(RUN);
        let mut outs = out.chunks_exact_mut(RUN);
        for (vs, os) in (&mut runs).zip(&mut outs) {
            let mut near = false;
            for (o, &v) in os.iter_mut().zip(vs) {
                // Clamped first, so that places far out are not near an integer.
                #[allow(clippy::manual_clamp)]
                let x = ((v - lo) * scale).max(-0.5).min(255.5);
                let whole = x.floor();
                near |= (x - whole - 0.5).abs() > inner;
                // As in `bin`: adding 2^23 puts the bin in the mantissa's low bits.
                *o = ((whole.max(0.0) + 8_388_608.0).to_bits() & 0xff) as u8;
            }
            if near {
                for (o, &v) in os.iter_mut().zip(vs) {
                    *o = self.index_of_number(v);
                }
            }
        }
        for (o, &v) in outs.into_remainder().iter_mut().zip(runs.remainder()) {
            *o = self.index_of_number(v);
        }
    }
}

/// The LUT index of `x`, a value's place in its range times 256: `floor(x)` clamped to
/// 0..=255 (0 for NaN).
#[inline(always)]
fn bin(x: f64) -> u8 {
    // `max` first turns a NaN `x` (an infinite value over an infinite span) into 0, as
    // the saturating cast did; `clamp` would keep the NaN.
    #[allow(clippy::manual_clamp)]
    let x = x.max(0.0).min(255.0);
    // The bin is `floor(x)`; adding 2^52 puts it in the low bits of the mantissa. (A
    // float-to-integer `as` cast would not vectorise: it saturates and checks NaN.)
    ((x.floor() + 4_503_599_627_370_496.0).to_bits() & 0xff) as u8
}

/// Chooses the colour range of a grid (see the README's "Colour" section).
///
/// - `fixed` wins; it is diverging when `lo < 0 < hi`.
/// - A signed reduction over cells of both signs: `±v`, `v` the `clip` percentile of
///   `|cell|` (the largest `|cell|` if that is 0).
/// - One-signed cells: with `a = |cell|`, `hi` the `clip` percentile of `a` (the largest
///   `a` if that is 0) and `lo` its `100 − clip` percentile: the range is `[lo, hi]`
///   when `lo > hi / 2` (data far from zero, such as norm weights near 1), else
///   `[0, hi]`; mirrored for non-positive cells.
///
/// Returns `None` when the grid has no finite cell. `clip` is taken as
/// [`RenderConfig::validate`](crate::RenderConfig::validate) accepts it, in [50, 100]:
/// below 50 the low percentile passes the high one.
pub fn choose_range(
    grid: &[f32],
    reduction: Reduction,
    clip: f64,
    fixed: Option<FixedRange>,
) -> Option<Range> {
    choose_range_in(grid, Extent::of(grid), reduction, clip, fixed)
}

/// [`choose_range`] for a grid whose [`Extent`] is known.
pub(crate) fn choose_range_in(
    grid: &[f32],
    extent: Extent,
    reduction: Reduction,
    clip: f64,
    fixed: Option<FixedRange>,
) -> Option<Range> {
    if let Some(f) = fixed {
        return Some(Range {
            lo: f.lo,
            hi: f.hi,
            diverging: f.lo < 0.0 && f.hi > 0.0,
        });
    }
    let (finite, gmin, gmax) = extent.values();
    if finite == 0 {
        return None;
    }
    // The cells' magnitudes as keys: their float bits without the sign bit, read in place
    // when every cell is finite (a copy was a pass of its own and 4 MiB to write per
    // 1024 × 1024 grid).
    let finite_magnitudes;
    let mags = if finite == grid.len() {
        Keys {
            raw: float_bits(grid),
            mask: 0x7fff_ffff,
        }
    } else {
        finite_magnitudes = magnitudes(grid);
        Keys::all(&finite_magnitudes)
    };
    let magnitude = |b: u32| f64::from(f32::from_bits(b));
    // With at least `clip`% of the cells zero (a sparse tensor), the largest `|cell|`:
    // a range of zero width would show the few others in one colour at an end.
    let hi = match percentile_of(mags, clip, magnitude) {
        0.0 => f64::from(gmin.abs().max(gmax.abs())),
        hi => hi,
    };
    if reduction.is_signed() && gmin < 0.0 && gmax > 0.0 {
        return Some(Range {
            lo: -hi,
            hi,
            diverging: true,
        });
    }
    let lo = percentile_of(mags, 100.0 - clip, magnitude);
    let lo = if lo > hi / 2.0 { lo } else { 0.0 };
    // (`0.0 - x`, not `-x`: a zero end is written as 0, not -0.)
    let (lo, hi) = if gmax <= 0.0 {
        (0.0 - hi, 0.0 - lo)
    } else {
        (lo, hi)
    };
    Some(Range {
        lo,
        hi,
        diverging: false,
    })
}

/// How many cells of a grid are finite, and the smallest and largest of those, kept as
/// integer keys that order like the floats (-0 below +0), so that the extents of parts
/// of a grid combine exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    finite: usize,
    lo: u32,
    hi: u32,
}

impl Extent {
    /// The extent of no cells.
    pub const EMPTY: Extent = Extent {
        finite: 0,
        lo: u32::MAX,
        hi: 0,
    };

    /// The extent of `grid`'s cells.
    pub fn of(grid: &[f32]) -> Extent {
        scan(grid)
    }

    /// The extent of both parts' cells.
    #[must_use]
    pub fn merge(self, o: Extent) -> Extent {
        Extent {
            finite: self.finite + o.finite,
            lo: self.lo.min(o.lo),
            hi: self.hi.max(o.hi),
        }
    }

    /// How many cells are finite, the smallest and the largest of those (any values when
    /// none is).
    pub fn values(&self) -> (usize, f32, f32) {
        let value = |k| f32::from_bits(order_key_inverse(k));
        (self.finite, value(self.lo), value(self.hi))
    }
}

/// [`Extent::of`]: one branch-free pass over integer keys that order like the floats, so
/// that it vectorises, counting in `u32` (a `usize` count made the compiler fill vectors
/// with half as many cells, ~1.4 vector operations a cell against ~0.6).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2", "x86_64+avx2"))]
fn scan(grid: &[f32]) -> Extent {
    let Extent {
        mut finite,
        mut lo,
        mut hi,
    } = Extent::EMPTY;
    for block in grid.chunks(1 << 20) {
        let mut count = 0u32;
        for &v in block {
            let b = v.to_bits();
            let is_finite = b & 0x7f80_0000 != 0x7f80_0000;
            let k = order_key(b);
            count += u32::from(is_finite);
            lo = lo.min(if is_finite { k } else { u32::MAX });
            hi = hi.max(if is_finite { k } else { 0 });
        }
        finite += count as usize;
    }
    Extent { finite, lo, hi }
}

/// The magnitudes of the finite cells of `grid` as bits, which sort like non-negative
/// floats.
fn magnitudes(grid: &[f32]) -> Vec<u32> {
    let finite = grid.iter().filter(|v| v.is_finite());
    finite.map(|v| v.to_bits() & 0x7fff_ffff).collect()
}

/// The bits of `values`, in place.
fn float_bits(values: &[f32]) -> &[u32] {
    // SAFETY: `f32` and `u32` have the same size and alignment, and every bit pattern is
    // a valid `u32`; the slice borrows `values` for its lifetime.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u32>(), values.len()) }
}

/// Keys that sort like the values they stand for: the bits of `raw` that `mask` keeps
/// (a grid's float bits without the sign bit order like its magnitudes).
#[derive(Clone, Copy)]
struct Keys<'a> {
    raw: &'a [u32],
    mask: u32,
}

impl<'a> Keys<'a> {
    /// `keys` as they are.
    fn all(keys: &'a [u32]) -> Keys<'a> {
        Keys {
            raw: keys,
            mask: u32::MAX,
        }
    }

    fn len(&self) -> usize {
        self.raw.len()
    }

    fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        let mask = self.mask;
        self.raw.iter().map(move |&x| x & mask)
    }

    /// The keys from `at` on.
    fn tail(&self, at: usize) -> Keys<'a> {
        Keys {
            raw: &self.raw[at..],
            mask: self.mask,
        }
    }
}

/// A key for float bits `b` that orders like the float (NaN aside): sign-magnitude made
/// offset binary.
#[inline(always)]
fn order_key(b: u32) -> u32 {
    b ^ (((b as i32 >> 31) as u32) | 0x8000_0000)
}

/// The float bits of [`order_key`]'s key `k`.
#[inline(always)]
fn order_key_inverse(k: u32) -> u32 {
    k ^ ((((!k) as i32 >> 31) as u32) | 0x8000_0000)
}

/// The `p`-th percentile of `vals` with numpy's default linear interpolation.
/// `vals` must be non-empty and NaN-free.
pub fn percentile(vals: &[f32], p: f64) -> f64 {
    let keys: Vec<u32> = vals.iter().map(|v| order_key(v.to_bits())).collect();
    percentile_of(Keys::all(&keys), p, |k| {
        f64::from(f32::from_bits(order_key_inverse(k)))
    })
}

/// [`percentile`] over keys that sort like the values they stand for (`value` turns a
/// key back).
fn percentile_of(keys: Keys, p: f64, value: impl Fn(u32) -> f64) -> f64 {
    let n = keys.len();
    let pos = (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
    let k = pos.floor() as usize;
    let frac = pos - k as f64;
    let (a, next) = nth_and_next(keys, k);
    let a = value(a);
    match next {
        Some(b) if frac > 0.0 => a + (value(b) - a) * frac,
        _ => a,
    }
}

/// The `k`-th smallest of `keys` (from 0) and the next one up, if any.
fn nth_and_next(keys: Keys, k: usize) -> (u32, Option<u32>) {
    assert!(k < keys.len(), "rank {k} of {} keys", keys.len());
    bracketed(keys, k).unwrap_or_else(|| by_histogram(keys, k))
}

/// Keys in an evenly spaced sample of [`nth_and_next`]'s input.
const SAMPLE: usize = 1024;

/// [`nth_and_next`] through a bracket: order statistics of an evenly spaced sample of
/// the keys, 16 ranks either side of rank `k`'s place, give a range of keys that holds
/// the `k`-th (16 standard deviations of its rank in the sample at the 99th
/// percentile). One pass counts the keys below the range, keeps those in it (~3%) and
/// finds the smallest above; a selection among the kept ones ends it. `None` for short
/// inputs and when the range missed (data laid out in step with the sample).
fn bracketed(keys: Keys, k: usize) -> Option<(u32, Option<u32>)> {
    const MARGIN: usize = 16;
    let n = keys.len();
    if n < 64 * SAMPLE {
        return None;
    }
    let step = n / SAMPLE;
    // (Stepping through the raw slice: a mapped iterator's `step_by` visits every key.)
    let sample = keys.raw.iter().step_by(step).take(SAMPLE);
    let mut sample: Vec<u32> = sample.map(|&x| x & keys.mask).collect();
    sample.sort_unstable();
    let r = k / step;
    let lo = sample[r.saturating_sub(MARGIN).min(SAMPLE - 1)];
    let hi = sample[(r + MARGIN).min(SAMPLE - 1)];
    let (below, mut inside, above) = partition(keys, lo, hi);
    let j = k.checked_sub(below).filter(|&j| j < inside.len())?;
    Some(select(&mut inside, j, || above))
}

/// The `j`-th smallest of `members` and the next one up: the smallest of the rest, else
/// `above()` (the smallest key above all of `members`, if any).
fn select(
    members: &mut [u32],
    j: usize,
    above: impl FnOnce() -> Option<u32>,
) -> (u32, Option<u32>) {
    let (_, &mut a, rest) = members.select_nth_unstable(j);
    (a, rest.iter().min().copied().or_else(above))
}

/// How many `keys` are below `lo`, those from `lo` to `hi` (in their order) and the
/// smallest above `hi`.
fn partition(keys: Keys, lo: u32, hi: u32) -> (usize, Vec<u32>, Option<u32>) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU has both features (checked above).
        return unsafe { partition_avx512(keys, lo, hi) };
    }
    partition_scalar(keys, lo, hi, (0, Vec::new(), None))
}

/// [`partition`] one key at a time, continuing from `acc`.
fn partition_scalar(
    keys: Keys,
    lo: u32,
    hi: u32,
    acc: (usize, Vec<u32>, Option<u32>),
) -> (usize, Vec<u32>, Option<u32>) {
    let (mut below, mut inside, mut above) = acc;
    for x in keys.iter() {
        if x < lo {
            below += 1;
        } else if x <= hi {
            inside.push(x);
        } else {
            above = Some(above.map_or(x, |a: u32| a.min(x)));
        }
    }
    (below, inside, above)
}

/// [`partition`] 16 keys at a time: compares for masks, a population count, and the
/// keys inside compressed into place.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
fn partition_avx512(keys: Keys, lo: u32, hi: u32) -> (usize, Vec<u32>, Option<u32>) {
    use std::arch::x86_64::*;
    let (vlo, vhi) = (_mm512_set1_epi32(lo as i32), _mm512_set1_epi32(hi as i32));
    let mask = _mm512_set1_epi32(keys.mask as i32);
    let mut below = 0;
    let mut inside: Vec<u32> = Vec::new();
    let mut above = _mm512_set1_epi32(-1);
    let mut any_above = false;
    let whole = keys.len() / 16 * 16;
    // Room for a block's keys is made before it, so that the loop calls nothing.
    for block in keys.raw[..whole].chunks(4096) {
        inside.reserve(block.len());
        for c in block.chunks_exact(16) {
            // SAFETY: `c` holds 16 keys (64 bytes); the load has no alignment requirement.
            let v = unsafe { _mm512_loadu_si512(c.as_ptr().cast()) };
            let v = _mm512_and_si512(v, mask);
            let under = _mm512_cmplt_epu32_mask(v, vlo);
            let over = _mm512_cmpgt_epu32_mask(v, vhi);
            below += under.count_ones() as usize;
            above = _mm512_mask_min_epu32(above, over, above, v);
            any_above |= over != 0;
            let keep = !(under | over);
            let len = inside.len();
            // The kept keys packed in a register, then stored whole: a compressing store
            // to memory is microcoded on AMD Zen 4, where it made this loop most of
            // `choose_range`'s time (a million-cell grid's range: 1.47 → 0.29–0.34 ms,
            // medians of 101, alternating builds).
            let packed = _mm512_maskz_compress_epi32(keep, v);
            // SAFETY: there is room for the block's keys (reserved above), and at most 16
            // were kept from each of its vectors before this one, so the 16 stored from
            // `len` fit in it; the first `keep.count_ones()` of them are the kept keys,
            // which are then initialised.
            unsafe {
                _mm512_storeu_si512(inside.as_mut_ptr().add(len).cast(), packed);
                inside.set_len(len + keep.count_ones() as usize);
            }
        }
    }
    let above = any_above.then(|| _mm512_reduce_min_epu32(above));
    partition_scalar(keys.tail(whole), lo, hi, (below, inside, above))
}

/// [`nth_and_next`] by a histogram of the top 12 bits, which finds the bucket that holds
/// the `k`-th key; only that bucket's keys (a small share of a grid's, whose values
/// spread over many binades) are selected among.
fn by_histogram(keys: Keys, k: usize) -> (u32, Option<u32>) {
    const SHIFT: u32 = 20;
    let bucket = |x: u32| (x >> SHIFT) as usize;
    // Four interleaved histograms, so that runs of one bucket do not wait on each other.
    let mut hist = vec![[0u32; 4]; 1 << (32 - SHIFT)];
    let mut quads = keys.raw.chunks_exact(4);
    for q in &mut quads {
        for (i, &x) in q.iter().enumerate() {
            hist[bucket(x & keys.mask)][i] += 1;
        }
    }
    for &x in quads.remainder() {
        hist[bucket(x & keys.mask)][0] += 1;
    }
    let mut below = 0;
    let mut b = 0;
    loop {
        let count: usize = hist[b].iter().map(|&c| c as usize).sum();
        if below + count > k {
            break;
        }
        below += count;
        b += 1;
    }
    let mut members: Vec<u32> = keys.iter().filter(|&x| bucket(x) == b).collect();
    select(&mut members, k - below, || {
        keys.iter().filter(|&x| bucket(x) > b).min()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_with_reverse() {
        let c: Colormap = "rdbu_R".parse().unwrap();
        assert_eq!(c.name(), "RdBu_r");
        assert!("nope".parse::<Colormap>().is_err());
        for name in [
            "viridis", "magma", "inferno", "plasma", "cividis", "turbo", "greys", "RdBu", "RdYlBu",
            "Spectral", "BrBG", "PiYG", "PRGn", "PuOr", "RdGy",
        ] {
            let c: Colormap = name.parse().unwrap();
            let r: Colormap = format!("{name}_r").parse().unwrap();
            let (a, b) = (c.lut(), r.lut());
            assert_eq!(a.0[0], b.0[255], "{name}");
            assert_eq!(a.0[255], b.0[0], "{name}");
        }
    }

    #[test]
    fn luts_run_the_matplotlib_way() {
        // RdBu_r: blue for negative, red for positive.
        let l = Colormap::diverging_default().lut();
        assert!(l.0[0][2] > l.0[0][0] && l.0[255][0] > l.0[255][2]);
        // Greys: white to black; viridis: dark purple to yellow.
        let g: Colormap = "greys".parse().unwrap();
        assert!(g.lut().0[0][0] > 240 && g.lut().0[255][0] < 10);
        assert_eq!(Colormap::sequential_default().lut().0[0], [68, 1, 84]);
        // PuOr: orange at 0, purple at 1.
        let p = "PuOr".parse::<Colormap>().unwrap().lut();
        assert!(p.0[0][0] > p.0[0][2] && p.0[255][2] > p.0[255][1]);
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([1, 2, 3, 4], [0, 50, 90, 100]) == [1, 2.5, 3.7, 4]
        for (p, want) in [(0.0, 1.0), (50.0, 2.5), (90.0, 3.7), (100.0, 4.0)] {
            let v = [4.0, 1.0, 3.0, 2.0];
            assert!((percentile(&v, p) - want).abs() < 1e-12, "{p}");
        }
        // Signed values: np.percentile([-3, -1, 2, 0.5, -0.0], [0, 30, 50, 100])
        for (p, want) in [(0.0, -3.0), (30.0, -0.8), (50.0, 0.0), (100.0, 2.0)] {
            let v = [-3.0, -1.0, 2.0, 0.5, -0.0];
            assert!((percentile(&v, p) - want).abs() < 1e-7, "{p}");
        }
    }

    /// Keys from a xorshift generator: `f(state)` each.
    fn keys(n: usize, f: impl Fn(u64) -> u32) -> Vec<u32> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f(x)
            })
            .collect()
    }

    #[test]
    fn bracketed_selection_matches_a_sort_on_large_inputs() {
        let n = 100_003;
        // Magnitudes of weight-like values, many equal keys, and keys laid out in step
        // with the sample (it sees only zeros, so the bracket misses).
        let weights = keys(n, |x| {
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 0.04).to_bits()
        });
        let few = keys(n, |x| (x % 5) as u32);
        let step = n / SAMPLE;
        let stepped: Vec<u32> = (0..n)
            .map(|i| if i % step == 0 { 0 } else { i as u32 })
            .collect();
        for (keys, bracket) in [(&weights, true), (&few, true), (&stepped, false)] {
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            for k in [0, 1, n / 2, n * 99 / 100, n * 995 / 1000, n - 2, n - 1] {
                let want = (sorted[k], sorted.get(k + 1).copied());
                assert_eq!(nth_and_next(Keys::all(keys), k), want, "rank {k}");
            }
            assert_eq!(bracketed(Keys::all(keys), n * 99 / 100).is_some(), bracket);
        }
    }

    /// Float bits read as magnitudes in place (the sign bit masked off) rank like a copy
    /// of the magnitudes, in the bracketed search (a grid's size), the histogram (a
    /// short one) and both partitions.
    #[test]
    fn masked_keys_rank_like_the_magnitudes() {
        for n in [64 * SAMPLE + 5, 1000] {
            // Normal numbers of both signs over 8 binades.
            let grid: Vec<f32> = keys(n, |x| (x >> 32) as u32)
                .iter()
                .map(|&b| f32::from_bits(b & 0x83ff_ffff | 0x3000_0000))
                .collect();
            let bits = float_bits(&grid);
            let masked = Keys {
                raw: bits,
                mask: 0x7fff_ffff,
            };
            let mags = magnitudes(&grid);
            let mut sorted = mags.clone();
            sorted.sort_unstable();
            for k in [0, 1, n / 2, n * 99 / 100, n - 1] {
                let want = (sorted[k], sorted.get(k + 1).copied());
                assert_eq!(nth_and_next(masked, k), want, "rank {k} of {n}");
            }
            let (lo, hi) = (sorted[n / 4], sorted[3 * n / 4]);
            assert!(0 < lo && lo < hi);
            let want = partition_scalar(Keys::all(&mags), lo, hi, (0, Vec::new(), None));
            assert_eq!(partition(masked, lo, hi), want);
            assert_eq!(
                partition_scalar(masked, lo, hi, (0, Vec::new(), None)),
                want
            );
        }
    }

    #[test]
    fn partitions_agree_with_one_key_at_a_time() {
        let all = keys(4099, |x| (x >> 52) as u32);
        for (lo, hi) in [
            (0, 0),
            (100, 2000),
            (4095, 4095),
            (5000, 6000),
            (0, u32::MAX),
        ] {
            let want = partition_scalar(Keys::all(&all), lo, hi, (0, Vec::new(), None));
            assert_eq!(partition(Keys::all(&all), lo, hi), want, "{lo}..={hi}");
        }
    }

    proptest::proptest! {
        /// Every rank against a sorted copy, for keys from a narrow range (many in one
        /// histogram bucket, many equal) and from anywhere.
        #[test]
        fn nth_and_next_match_a_sort(
            keys in proptest::collection::vec(
                proptest::prop_oneof![0x3f80_0000u32..0x3f80_0040, proptest::num::u32::ANY],
                1..300,
            ),
        ) {
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            for k in 0..keys.len() {
                proptest::prop_assert_eq!(nth_and_next(Keys::all(&keys), k), (sorted[k], sorted.get(k + 1).copied()));
            }
        }

        /// Float keys round-trip and order like the floats.
        #[test]
        fn order_keys_order_like_floats(a in proptest::num::f32::ANY, b in proptest::num::f32::ANY) {
            let (ka, kb) = (order_key(a.to_bits()), order_key(b.to_bits()));
            proptest::prop_assert_eq!(order_key_inverse(ka), a.to_bits());
            if a < b {
                proptest::prop_assert!(ka < kb);
            }
        }
    }

    proptest::proptest! {
        /// [`Range::index_into`] against the plain saturating cast, on values anywhere
        /// and at bin edges.
        #[test]
        fn indices_match_a_saturating_cast(
            values in proptest::collection::vec(proptest::num::f32::NORMAL | proptest::num::f32::ZERO, 0..64),
            lo in -1e3f64..1e3,
            span in 1e-3f64..1e3,
            near in proptest::collection::vec(0u32..=256, 0..64),
        ) {
            let r = Range { lo, hi: lo + span, diverging: false };
            // Values anywhere, and values at bin edges.
            let edges = near.iter().map(|&k| (lo + span * f64::from(k) / 256.0) as f32);
            let values: Vec<f32> = values.into_iter().chain(edges).collect();
            check_index_into(&r, &values);
        }

        /// The vectorisable bin arithmetic against the plain saturating cast.
        #[test]
        fn index_matches_a_saturating_cast(
            v in proptest::num::f32::ANY,
            lo in -1e3f64..1e3,
            span in proptest::prop_oneof![0.0..1e3f64, proptest::strategy::Just(f64::INFINITY)],
        ) {
            let r = Range { lo, hi: lo + span, diverging: false };
            let want = (!v.is_nan()).then(|| reference_bin(&r, v));
            proptest::prop_assert_eq!(r.index(v), want);
        }
    }

    /// The bin of `v` as matplotlib computes it: the place in `f64`, cast with saturation.
    fn reference_bin(r: &Range, v: f32) -> u8 {
        let span = r.hi - r.lo;
        let v = f64::from(v);
        match span > 0.0 {
            true => ((v - r.lo) / span * 256.0).clamp(0.0, 255.0) as u8,
            // A range of zero width: its value in the middle, the others at the ends.
            false if v < r.lo => 0,
            false if v > r.hi => 255,
            false => 128,
        }
    }

    /// [`Range::index_into`] against [`reference_bin`], value by value.
    fn check_index_into(r: &Range, values: &[f32]) {
        let mut got = vec![0; values.len()];
        r.index_into(values, &mut got);
        for (&v, &g) in values.iter().zip(&got) {
            assert_eq!(g, reference_bin(r, v), "{v:e} in {r:?}");
        }
    }

    #[test]
    fn indices_match_the_division_at_every_bin_edge() {
        let ranges = [
            (-1.0, 1.0),
            (-0.031, 0.031),
            (-3.3e-3, 3.3e-3),
            (0.0, 4.0),
            (0.9, 1.1),
            (0.999, 1.001),
            (-2.5, -0.5),
            (1e-30, 3e-30),
            (-3e38, 3e38),
            // Too narrow for its distance from zero in `f32`: done by division.
            (1000.0, 1000.001),
            (2.0, 2.0),
            (f64::NEG_INFINITY, 1.0),
        ];
        for (lo, hi) in ranges {
            let r = Range {
                lo,
                hi,
                diverging: lo < 0.0 && hi > 0.0,
            };
            let mut values = vec![
                0.0,
                -0.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::MAX,
                f32::MIN,
                f32::MIN_POSITIVE,
                -1e-45,
            ];
            // Each bin's lower edge and the floats around it.
            for k in 0..=256 {
                let e = (lo + (hi - lo) * f64::from(k) / 256.0) as f32;
                let (mut up, mut down) = (e, e);
                values.push(e);
                for _ in 0..3 {
                    (up, down) = (up.next_up(), down.next_down());
                    values.extend([up, down]);
                }
            }
            // Runs of 16 with one edge each, and a remainder (`values.len()` is not a
            // multiple of 16).
            assert_ne!(values.len() % 16, 0);
            check_index_into(&r, &values);
            for start in 1..16 {
                check_index_into(&r, &values[start..]);
            }
        }
    }

    #[test]
    fn scan_counts_finite_cells_and_their_extremes() {
        let grid = [
            f32::NAN,
            -0.5,
            f32::INFINITY,
            3.0,
            -2.0,
            f32::NEG_INFINITY,
            0.0,
        ];
        let values = |g: &[f32]| Extent::of(g).values();
        assert_eq!(values(&grid), (4, -2.0, 3.0));
        assert_eq!(values(&[f32::NAN, f32::INFINITY]).0, 0);
        let (n, lo, hi) = values(&[-1e-40, -0.0, 0.0]);
        assert_eq!((n, lo, hi.to_bits()), (3, -1e-40, 0));
        assert_eq!(values(&[0.0, -0.0]).1.to_bits(), (-0.0f32).to_bits());
        // Parts merge into the whole's extent, wherever the grid is cut.
        let mut long: Vec<f32> = (0..100).map(|i| (i as f32 - 37.5) * 0.25).collect();
        long.extend([f32::NAN, -0.0, f32::NEG_INFINITY, 0.0, 1e30]);
        for cut in 0..=long.len() {
            let (a, b) = long.split_at(cut);
            assert_eq!(Extent::of(a).merge(Extent::of(b)), Extent::of(&long));
        }
        assert_eq!(Extent::EMPTY.merge(Extent::of(&grid)), Extent::of(&grid));
    }

    #[test]
    fn ranges_follow_the_rules() {
        let both = [-2.0, -1.0, 0.5, 4.0];
        let r = choose_range(&both, Reduction::Mean, 100.0, None).unwrap();
        assert_eq!((r.lo, r.hi, r.diverging), (-4.0, 4.0, true));
        // The same cells under rms are one-signed by nature: [0, max].
        let pos = [0.5, 1.0, 4.0];
        let r = choose_range(&pos, Reduction::Rms, 100.0, None).unwrap();
        assert_eq!((r.lo, r.hi, r.diverging), (0.0, 4.0, false));
        // Far from zero (norm weights): [min, max].
        let norm = [0.9, 1.0, 1.1];
        let r = choose_range(&norm, Reduction::Mean, 100.0, None).unwrap();
        assert_eq!((r.lo as f32, r.hi as f32), (0.9, 1.1));
        let neg = [-3.0, -1.0, f32::NAN];
        let r = choose_range(&neg, Reduction::Min, 100.0, None).unwrap();
        assert_eq!((r.lo, r.hi), (-3.0, 0.0));
        // Ends at zero are +0 (the manifest writes them), whatever the zeros' signs.
        assert!(r.hi.is_sign_positive());
        for zeros in [[0.0, 0.0], [-0.0, 0.0], [-0.0, -0.0]] {
            let r = choose_range(&zeros, Reduction::Mean, 99.5, None).unwrap();
            assert_eq!((r.lo.to_bits(), r.hi.to_bits()), (0, 0), "{zeros:?}");
        }
        assert!(choose_range(&[f32::NAN], Reduction::Mean, 99.5, None).is_none());
        // A fixed range is diverging only when it holds zero strictly inside
        // (`LO < 0 < HI`), whatever the cells.
        for (lo, hi, diverging) in [
            (-1.0, 3.0, true),
            (0.0, 3.0, false),
            (-1.0, 0.0, false),
            (-3.0, -1.0, false),
            (1.0, 3.0, false),
        ] {
            let fixed = FixedRange { lo, hi };
            let r = choose_range(&both, Reduction::Mean, 99.5, Some(fixed)).unwrap();
            assert_eq!((r.lo, r.hi, r.diverging), (lo, hi, diverging));
        }
    }

    #[test]
    fn index_bins_like_matplotlib() {
        let r = Range {
            lo: -1.0,
            hi: 1.0,
            diverging: true,
        };
        assert_eq!(r.index(-5.0), Some(0));
        assert_eq!(r.index(-1.0), Some(0));
        assert_eq!(r.index(0.0), Some(128));
        assert_eq!(r.index(1.0), Some(255));
        assert_eq!(r.index(9.0), Some(255));
        assert_eq!(r.index(f32::NAN), None);
        let flat = Range {
            lo: 2.0,
            hi: 2.0,
            diverging: false,
        };
        assert_eq!(flat.index(2.0), Some(128));
        // Outside a range of zero width: the end colours, as outside any other.
        assert_eq!(flat.index(1.5), Some(0));
        assert_eq!(flat.index(2.5), Some(255));
        let mut out = [0; 3];
        flat.index_into(&[1.5, 2.0, 2.5], &mut out);
        assert_eq!(out, [0, 128, 255]);
    }

    #[test]
    fn a_grid_of_mostly_zeros_gets_the_largest_cell_as_its_end() {
        // 99.5% of the cells zero: the percentile is 0 and the few others would all take
        // one end colour.
        let mut sparse = vec![0.0f32; 1000];
        sparse.extend([5.0, 3.0]);
        for r in [Reduction::Mean, Reduction::AbsMax] {
            let got = choose_range(&sparse, r, 99.5, None).unwrap();
            assert_eq!((got.lo, got.hi, got.diverging), (0.0, 5.0, false));
        }
        sparse[1000] = -5.0;
        let got = choose_range(&sparse, Reduction::Mean, 99.5, None).unwrap();
        assert_eq!((got.lo, got.hi, got.diverging), (-5.0, 5.0, true));
        let neg: Vec<f32> = sparse.iter().map(|v| -v.abs()).collect();
        let got = choose_range(&neg, Reduction::Min, 99.5, None).unwrap();
        assert_eq!((got.lo, got.hi), (-5.0, 0.0));
        // All zeros: a constant grid, one colour.
        let got = choose_range(&[0.0; 8], Reduction::Mean, 99.5, None).unwrap();
        assert_eq!((got.lo, got.hi), (0.0, 0.0));
    }
}
