//! The kernel for the common case where the AVX-512 kernel does not run (CPUs with AVX2
//! only, ARM; F8 on AVX-512 CPUs without VBMI, F8_E5M2 on all): `mean` of a band of BF16,
//! F16, F32, F8_E4M3 or F8_E5M2 data (FP8 with or without block scales) with no NaN or
//! Inf, in cells at least 4 columns wide.
//!
//! It is the AVX-512 kernel's plan on a smaller scale: each row's [`W`] columns are read
//! straight from the band's bytes and decoded in registers, and down up to [`GROUP`] rows
//! every lane keeps its column's plain `f32` sum, a sum of squared differences from the
//! band's typical value (for unscaled F8, of plain squares, re-based at the end unless
//! they cancel: see [`super::PLAIN_LIMIT`]), a zero count and the extremes of its codes (for F32, which has
//! no short codes, and FP8 with block scales, the extremes of its values, kept per cell,
//! and the differences' sum; see [`F32`]); then each cell's lanes are added together in `f32` and to the cell in
//! `f64`. Nothing is stored per element, where the general kernel decodes every row into
//! a buffer and reads it back. A
//! group's whole chunks are taken in with AVX2 intrinsics on x86 CPUs that have AVX2, FMA
//! and F16C ([`avx2`]), and in plain Rust over fixed-size arrays elsewhere ([`chunks`];
//! NEON, the baseline, on aarch64); the partial last chunk of a row in [`run`].
//! Like the AVX-512 kernel, it does not look for NaN or Inf: a band holding one has a
//! non-finite extreme (for F32, non-finite sums) and is redone by the general kernel.

use super::prefetch::Prefetch;
use super::{
    code_extremes, column_scales, rebase_plain, scale_at, typical, Acc, Band, Scale, ScaleCache,
};
use crate::config::Reduction;
use crate::dtype::Dtype;

/// Columns read from each row at once: 32 bytes of BF16 or F16, one AVX2 register (two
/// NEON ones); 16 bytes of F8, widened into one (with AVX2, two such chunks of a row are
/// read together, see [`avx2::chunks`]); 64 bytes of F32, two.
const W: usize = 16;
/// Rows run down before the lanes' sums are added to their cells (in `f32`, then to the
/// cells in `f64`): at most 32 values per lane, and the squares move to `f64` after at
/// most 64, as in the other kernels, so a cell stays within 1e-5 of `f64`.
const GROUP: usize = 32;
/// Bytes ahead of the current chunk that are prefetched in each row (past the row's end,
/// see [`ahead`]).
const AHEAD: usize = 256;

/// The codes a band holds: BF16, F16, or F8, which is taken in as F16 codes: F8_E5M2's
/// code is the top byte of its value's F16 code, and F8_E4M3 is taken in as the F16 codes
/// of its values scaled by 2^-8 (exact: its magnitude's 7 bits moved up by 7 are the F16
/// code of `|x| / 256`, subnormals included), so that both share F16's lanes and decoding.
type Kind = u8;
const BF16: Kind = 0;
const F16: Kind = 1;
const E4M3: Kind = 2;
const E5M2: Kind = 3;
/// Values, not codes: the band's extremes are its cells', which are kept so that a
/// constant cell comes out exactly (plain `f32` sums of a long-mantissa value round), and
/// the band's sum is one of differences from its typical value (the cells' `f32` sums
/// round by more than the spread of data far from zero), as in the AVX-512 kernel.
const F32: Kind = 4;
/// FP8 with block scales: each code decoded to its value (F8_E4M3 as [`E4M3`]'s F16
/// code, against scales times 256) times its block's scale, then reduced as [`F32`]
/// values are; its codes' extremes are kept too, to find NaN (and E5M2's Inf) codes,
/// which decode to finite values here.
const E4M3_SCALED: Kind = 5;
const E5M2_SCALED: Kind = 6;

/// Bytes per element of `kind`.
const fn size(kind: Kind) -> usize {
    match kind {
        E4M3 | E5M2 | E4M3_SCALED | E5M2_SCALED => 1,
        F32 => 4,
        _ => 2,
    }
}

/// Whether `kind` is reduced as values (its extremes kept per cell), not as codes.
const fn on_values(kind: Kind) -> bool {
    matches!(kind, F32 | E4M3_SCALED | E5M2_SCALED)
}

/// The F16 code of an F8_E4M3 code's value over 256 (see [`Kind`]).
#[inline(always)]
fn e4m3_as_f16(c: u8) -> u16 {
    u16::from(c & 0x7f) << 7 | u16::from(c & 0x80) << 8
}

/// The F8_E4M3 code whose value over 256 has the F16 code `c` ([`e4m3_as_f16`] undone).
fn f16_as_e4m3(c: u16) -> u32 {
    u32::from(c >> 7 & 0x7f | c >> 8 & 0x80)
}

/// The first `n` codes of `bytes` (elements of `KIND`), as the lanes take them; 0 after.
#[inline(always)]
fn codes<const KIND: Kind>(bytes: &[u8], n: usize) -> [u16; W] {
    std::array::from_fn(|k| match KIND {
        _ if k >= n => 0,
        E4M3 | E4M3_SCALED => e4m3_as_f16(bytes[k]),
        E5M2 | E5M2_SCALED => u16::from(bytes[k]) << 8,
        _ => u16::from_le_bytes([bytes[2 * k], bytes[2 * k + 1]]),
    })
}

/// How this machine takes in a group's whole chunks of `dtype` (with block scales if
/// `scaled`), if this kernel takes the dtype and `reduction`.
pub(super) fn group(dtype: Dtype, reduction: Reduction, scaled: bool) -> Option<Group> {
    if reduction != Reduction::Mean {
        return None;
    }
    if scaled {
        return Some(match dtype {
            #[cfg(target_arch = "x86_64")]
            Dtype::F8E4M3 if avx2::available() => avx2::value_chunks::<E4M3_SCALED>,
            #[cfg(target_arch = "x86_64")]
            Dtype::F8E5M2 if avx2::available() => avx2::value_chunks::<E5M2_SCALED>,
            Dtype::F8E4M3 => chunks::<E4M3_SCALED>,
            Dtype::F8E5M2 => chunks::<E5M2_SCALED>,
            _ => return None,
        });
    }
    Some(match dtype {
        #[cfg(target_arch = "x86_64")]
        Dtype::BF16 if avx2::available() => avx2::chunks::<BF16>,
        #[cfg(target_arch = "x86_64")]
        Dtype::F16 if avx2::available() => avx2::chunks::<F16>,
        #[cfg(target_arch = "x86_64")]
        Dtype::F8E4M3 if avx2::available() => avx2::chunks::<E4M3>,
        #[cfg(target_arch = "x86_64")]
        Dtype::F8E5M2 if avx2::available() => avx2::chunks::<E5M2>,
        #[cfg(target_arch = "x86_64")]
        Dtype::F32 if avx2::available() => avx2::value_chunks::<F32>,
        Dtype::BF16 => chunks::<BF16>,
        Dtype::F16 => chunks::<F16>,
        Dtype::F8E4M3 => chunks::<E4M3>,
        Dtype::F8E5M2 => chunks::<E5M2>,
        Dtype::F32 => chunks::<F32>,
        _ => return None,
    })
}

/// A band's block scales: the scale tensor, and the tensor row of the band's first row.
pub(super) type BandScale<'a> = (&'a Scale<'a>, usize);

/// Reduces one band (`rows × cols` elements of `dtype` in `data`, cells `bw` columns
/// wide, FP8 block scales `scale` multiplied in) into `band`'s cells, which must hold zero
/// sums and shifts (and no extremes: infinities), whole chunks with `group` (which
/// [`group`] gives only for the reductions this kernel takes). Returns the band's
/// summary, or `None` when this kernel does not apply (dtype, cells narrower than 4
/// columns, a scale that is not a normal number above 2^-100) or the band holds a NaN, an
/// Inf or values whose `f32` sums overflow; the cells are then in an unspecified state.
pub(super) fn band(
    data: &[u8],
    dtype: Dtype,
    cols: usize,
    bw: usize,
    scale: Option<BandScale<'_>>,
    band: &mut Band,
    group: Group,
) -> Option<Acc> {
    // Unscaled F8 sums plain squares first (see [`super::PLAIN_LIMIT`]), F8_E5M2 too, which the
    // AVX-512 kernel does not take: its groups then skip a subtraction per 8 values (F8
    // here is bound by instructions, not memory).
    let plain = scale.is_none() && matches!(dtype, Dtype::F8E4M3 | Dtype::F8E5M2);
    match reduce(data, dtype, cols, bw, scale, band, group, plain)? {
        (acc, false) => Some(acc),
        (_, true) => {
            // Only the cells' sums were written.
            band.s1.fill(0.0);
            reduce(data, dtype, cols, bw, scale, band, group, false).map(|(acc, _)| acc)
        }
    }
}

/// [`band`], with plain squares if `plain` (the groups' `b` is then 0), re-based onto the
/// band's typical value at the end; and whether they cancel too badly to be used.
#[allow(clippy::too_many_arguments)]
fn reduce(
    data: &[u8],
    dtype: Dtype,
    cols: usize,
    bw: usize,
    scale: Option<BandScale<'_>>,
    band: &mut Band,
    group: Group,
    plain: bool,
) -> Option<(Acc, bool)> {
    let run = match (dtype, scale.is_some()) {
        (Dtype::F8E4M3, true) => run::<E4M3_SCALED>,
        (Dtype::F8E5M2, true) => run::<E5M2_SCALED>,
        (_, true) => return None,
        (Dtype::BF16, _) => run::<BF16>,
        (Dtype::F16, _) => run::<F16>,
        (Dtype::F8E4M3, _) => run::<E4M3>,
        (Dtype::F8E5M2, _) => run::<E5M2>,
        (Dtype::F32, _) => run::<F32>,
        _ => return None,
    };
    if bw < 4 {
        return None;
    }
    let b = typical(data, dtype, scale.is_none().then_some(cols))?;
    // With block scales, in the units of the dequantised values (the first one's scale).
    let b = scale.map_or(b, |(s, row0)| b * scale_at(s, row0 / s.bh, 0));
    let gw = cols.div_ceil(bw);
    let cells = Cells {
        sums: &mut band.s1[..gw],
        min: &mut band.min[..gw],
        max: &mut band.max[..gw],
    };
    let e4m3 = dtype == Dtype::F8E4M3;
    // Unscaled F8_E4M3 is reduced in units of 2^-8 (see [`Kind`]), and scaled back
    // (exactly); with block scales, those are multiplied by 256 instead.
    let unit = if e4m3 && scale.is_none() { 256.0 } else { 1.0 };
    let scales = &mut band.column_scales;
    let shift = if plain { 0.0 } else { b / unit };
    let mut t = run(data, cols, bw, shift, scale, cells, scales, group)?;
    let n = (data.len() / dtype.size()) as u64;
    if dtype == Dtype::F32 {
        return values_band(band, gw, b, &t, n).map(|acc| (acc, false));
    }
    if e4m3 {
        (t.smax, t.umax, t.umin) = (
            f16_as_e4m3(t.smax as u16),
            f16_as_e4m3(t.umax as u16),
            f16_as_e4m3(t.umin as u16),
        );
    } else if dtype == Dtype::F8E5M2 {
        (t.smax, t.umax, t.umin) = (t.smax >> 8, t.umax >> 8, t.umin >> 8);
    }
    let (min, max) = code_extremes(dtype, t.smax, t.umax, || t.umin);
    if scale.is_some() {
        // The codes' extremes only tell NaN (and Inf) codes apart here.
        if !(min.is_finite() && max.is_finite()) {
            return None;
        }
        return values_band(band, gw, b, &t, n).map(|acc| (acc, false));
    }
    let cells = &mut band.s1[..gw];
    if e4m3 {
        cells.iter_mut().for_each(|c| *c *= f64::from(unit));
        t.s2 *= f64::from(unit * unit);
    }
    // The band's plain sum is its cells', re-based onto `b`: added in four chains (one
    // chain of dependent additions took ~7% of a band of 4 rows in 4 × 4 cells).
    let mut four = cells.chunks_exact(4);
    let chains = four
        .by_ref()
        .fold([0f64; 4], |a, c| std::array::from_fn(|k| a[k] + c[k]));
    let total =
        (chains[0] + chains[1]) + (chains[2] + chains[3]) + four.remainder().iter().sum::<f64>();
    let s1 = total - n as f64 * f64::from(b);
    let mut cancels = false;
    // (Plain squares round with their own magnitude, which the re-basing changes.)
    let squares = t.s2;
    if plain {
        (t.s2, cancels) = rebase_plain(t.s2, total, n as f64, f64::from(b));
        // (With `b` 0, differences would give the same sums.)
        cancels &= b != 0.0;
    }
    let acc = Acc {
        n,
        shift: b,
        s1,
        s2: t.s2,
        squares,
        min,
        max,
        nan: 0,
        inf: 0,
        zeros: t.zeros,
    };
    (min.is_finite() && max.is_finite() && s1.is_finite() && t.s2.is_finite())
        .then_some((acc, cancels))
}

/// [`band`]'s ending for the kinds reduced as values (see [`F32`]): the band's extremes
/// from its cells', each constant cell made its value exactly, and the band's sum the
/// differences'.
fn values_band(band: &mut Band, gw: usize, b: f32, t: &Totals, n: u64) -> Option<Acc> {
    // Plain sums near the ends of the `f32` range can overflow where the differences do
    // not (a constant cell of -2^127): then the band is the general kernel's.
    if !band.s1[..gw].iter().all(|s| s.is_finite()) {
        return None;
    }
    let min = band.min[..gw].iter().copied().fold(f32::INFINITY, f32::min);
    let max = band.max[..gw]
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for j in 0..gw {
        if band.min[j] == band.max[j] {
            (band.shift[j], band.s1[j]) = (band.min[j], 0.0);
        }
    }
    (min.is_finite() && max.is_finite() && t.s1.is_finite() && t.s2.is_finite()).then_some(Acc {
        n,
        shift: b,
        s1: t.s1,
        s2: t.s2,
        squares: t.s2,
        min,
        max,
        nan: 0,
        inf: 0,
        zeros: t.zeros,
    })
}

/// The cells a band's chunks are folded into: their sums, and for the kinds reduced as
/// values their extremes.
pub(super) struct Cells<'a> {
    sums: &'a mut [f64],
    min: &'a mut [f32],
    max: &'a mut [f32],
}

/// What [`run`] leaves besides the cells' sums.
struct Totals {
    /// Sum of `x - b` (the kinds reduced as values only: the others' comes from their
    /// cells).
    s1: f64,
    /// Sum of `(x - b)²` (of `x²` when `b` is 0: plain squares, see [`reduce`]).
    s2: f64,
    zeros: u64,
    /// The codes' extremes, for [`code_extremes`].
    smax: u32,
    umax: u32,
    umin: u32,
}

/// The accumulators that outlive a group's whole chunks (the AVX2 version keeps them in
/// registers meanwhile): one lane per column of a chunk (for the squares,
/// whose lanes are only ever added up, in whatever order a [`Group`] keeps them).
struct Lanes {
    /// (The kinds reduced as values only, see [`F32`].)
    d1: [f32; W],
    d2: [f32; W],
    zeros: [u16; W],
    /// (Two's complement codes, kept as `u16`.)
    smax: [u16; W],
    umax: [u16; W],
    umin: [u16; W],
}

/// A band's reduction in progress: the lanes, what has moved out of them, and the walk
/// over the cells that each chunk's sums are added to.
pub(super) struct State<'a> {
    lanes: Lanes,
    s1: f64,
    s2: f64,
    zeros: u64,
    /// Rows of chunks since the squares (and differences) and zeros last moved to `s2`
    /// (and `s1`) and `zeros`: at
    /// most `2 · GROUP` values per lane.
    pending: usize,
    cells: Cells<'a>,
    /// With block scales, each column's scale in the current group's scale row (see
    /// [`E4M3_SCALED`]), kept across the bands a worker takes.
    scales: &'a mut ScaleCache,
    bw: usize,
    /// The cell of the next chunk's first column, and the column where the cell after it
    /// starts.
    j: usize,
    next: usize,
}

impl State<'_> {
    /// Whether the squares, differences and zeros are to move out of the lanes (with
    /// [`State::drain`]) before `g` more values per lane (a chunk of `g` rows, or of
    /// `g / 2` rows whose lanes each take two values).
    #[inline(always)]
    fn full(&self, g: usize) -> bool {
        self.pending + g > 2 * GROUP
    }

    /// Moves the squares, differences and zeros out of the lanes.
    #[inline(always)]
    fn drain(&mut self) {
        let l = &mut self.lanes;
        self.s1 += l.d1.iter().map(|&v| f64::from(v)).sum::<f64>();
        self.s2 += l.d2.iter().map(|&v| f64::from(v)).sum::<f64>();
        self.zeros += l.zeros.iter().map(|&z| u64::from(z)).sum::<u64>();
        (l.d1, l.d2, l.zeros) = ([0.0; W], [0.0; W], [0; W]);
        self.pending = 0;
    }

    /// Adds the sums of the first `n` columns of the chunk at column `c0` (a multiple of
    /// `W`) to their cells: added in `f32` and then to the cell, in pairs and fours first
    /// where every cell's lanes in a whole chunk are whole pairs or fours, and straight
    /// into the cells for 4-column cells (every 4096-column tensor at the default size, in
    /// bands of 4 rows: a walk over single lanes took a third as long as reducing the
    /// bytes). For F32, `extremes` holds the lanes' minima and maxima, taken into the
    /// cells' (by single lanes).
    #[inline(always)]
    fn fold(&mut self, c0: usize, n: usize, sum: &[f32; W], extremes: Option<[&[f32; W]; 2]>) {
        let pairs: [f32; W / 2] = std::array::from_fn(|i| sum[2 * i] + sum[2 * i + 1]);
        let fours: [f32; W / 4] = std::array::from_fn(|i| pairs[2 * i] + pairs[2 * i + 1]);
        let bw = self.bw;
        if bw == 4 && n == W && extremes.is_none() {
            let j0 = c0 / 4;
            for (cell, &v) in self.cells.sums[j0..j0 + W / 4].iter_mut().zip(&fours) {
                *cell += f64::from(v);
            }
            (self.j, self.next) = (j0 + W / 4, c0 + W + 4);
            return;
        }
        let (units, width) = match bw % 4 {
            _ if n < W || extremes.is_some() => (&sum[..n], 1),
            0 => (&fours[..], 4),
            2 => (&pairs[..], 2),
            _ => (&sum[..], 1),
        };
        let mut k = 0;
        while k < units.len() {
            let end = ((self.next - c0) / width).min(units.len());
            self.cells.sums[self.j] += f64::from(units[k..end].iter().sum::<f32>());
            if let Some([lo, hi]) = extremes {
                let (min, max) = (&mut self.cells.min[self.j], &mut self.cells.max[self.j]);
                *min = lo[k..end].iter().fold(*min, |a, &v| a.min(v));
                *max = hi[k..end].iter().fold(*max, |a, &v| a.max(v));
            }
            if c0 + end * width == self.next {
                (self.j, self.next) = (self.j + 1, self.next + bw);
            }
            k = end;
        }
    }
}

/// Takes a group's whole chunks into a band's state: `rows` holds the group's `g` rows,
/// `row_bytes` apart, up to the end of the last one's whole chunks, and the squares are
/// of differences from `b`: the band's typical value, or 0 for plain squares (see
/// [`chunks`], [`reduce`]).
pub(super) type Group = fn(&mut State<'_>, &[u8], usize, usize, f32);

/// The kernel proper, for codes of `KIND`, each group's whole chunks
/// taken in by `group`.
#[allow(clippy::too_many_arguments)]
fn run<const KIND: Kind>(
    data: &[u8],
    cols: usize,
    bw: usize,
    b: f32,
    scale: Option<BandScale<'_>>,
    cells: Cells<'_>,
    scales: &mut ScaleCache,
    group: Group,
) -> Option<Totals> {
    let row_bytes = size(KIND) * cols;
    let rows = data.len() / row_bytes;
    let whole = cols / W * W;
    let mut st = State {
        lanes: Lanes {
            d1: [0.0; W],
            d2: [0.0; W],
            zeros: [0; W],
            smax: [0x8000; W],
            umax: [0; W],
            umin: [u16::MAX; W],
        },
        s1: 0.0,
        s2: 0.0,
        zeros: 0,
        pending: 0,
        cells,
        scales,
        bw,
        j: 0,
        next: bw,
    };
    // Scaled F8_E4M3's codes are of its values over 256 (see [`Kind`]).
    let unit = if KIND == E4M3_SCALED { 256.0 } else { 1.0 };
    let mut g0 = 0;
    while g0 < rows {
        let mut g = GROUP.min(rows - g0);
        // With block scales, groups end where the scale row changes.
        if let Some((s, row0)) = scale {
            let t = row0 + g0;
            g = g.min((t / s.bh + 1) * s.bh - t);
            if st.scales.index != Some(t / s.bh) {
                st.scales.index = None;
                let padded = cols.next_multiple_of(W);
                if !column_scales(&mut st.scales.row, s, t / s.bh, cols, padded, unit) {
                    return None;
                }
                st.scales.index = Some(t / s.bh);
            }
        }
        (st.j, st.next) = (0, bw);
        let at = g0 * row_bytes;
        if whole > 0 {
            group(
                &mut st,
                &data[at..at + (g - 1) * row_bytes + size(KIND) * whole],
                row_bytes,
                g,
                b,
            );
        }
        if whole < cols {
            // The last chunk, partial.
            let n = cols - whole;
            if st.full(g) {
                st.drain();
            }
            st.pending += g;
            let rows = (0..g).map(|r| &data[at + r * row_bytes + size(KIND) * whole..]);
            take_rows::<KIND>(&mut st, rows, whole, n, b);
        }
        g0 += g;
    }
    st.drain();
    let l = &st.lanes;
    Some(Totals {
        s1: st.s1,
        s2: st.s2,
        zeros: st.zeros,
        smax: u32::from(*l.smax.iter().max_by_key(|&&c| c as i16).expect("W lanes")),
        umax: u32::from(*l.umax.iter().max().expect("W lanes")),
        umin: u32::from(*l.umin.iter().min().expect("W lanes")),
    })
}

/// [`Group`] in plain Rust: each row's `W` elements of each chunk taken in with [`row`].
fn chunks<const KIND: Kind>(st: &mut State<'_>, rows: &[u8], row_bytes: usize, g: usize, b: f32) {
    let step = size(KIND) * W;
    let count = (rows.len() - (g - 1) * row_bytes) / step;
    for c in 0..count {
        if st.full(g) {
            st.drain();
        }
        st.pending += g;
        take_rows::<KIND>(st, chunk_rows(rows, row_bytes, step, c, g), c * W, W, b);
    }
}

/// Takes the first `n` elements of each of `rows` (the chunk at column `c0`) into the
/// lanes with [`row`] (F32: [`values`]) and folds their sums into the cells.
#[inline(always)]
fn take_rows<'a, const KIND: Kind>(
    st: &mut State<'_>,
    rows: impl Iterator<Item = &'a [u8]>,
    c0: usize,
    n: usize,
    b: f32,
) {
    let mut sum = [0f32; W];
    if on_values(KIND) {
        let (mut lo, mut hi) = ([f32::INFINITY; W], [f32::NEG_INFINITY; W]);
        for bytes in rows {
            let x = if KIND == F32 {
                std::array::from_fn(|k| match bytes.get(4 * k..4 * k + 4) {
                    Some(v) if k < n => f32::from_le_bytes(v.try_into().expect("4 bytes")),
                    _ => 0.0,
                })
            } else {
                let c = codes::<KIND>(bytes, n);
                take_codes(&mut st.lanes, c, n);
                let scales = &st.scales.row[c0..c0 + W];
                std::array::from_fn(|k| f16(c[k]) * scales[k])
            };
            values(&mut st.lanes, [&mut sum, &mut lo, &mut hi], x, b, n);
        }
        st.fold(c0, n, &sum, Some([&lo, &hi]));
    } else {
        for bytes in rows {
            row::<KIND>(&mut st.lanes, &mut sum, codes::<KIND>(bytes, n), b, n);
        }
        st.fold(c0, n, &sum, None);
    }
}

/// The `step` bytes of whole chunk `c` in each of a group's `g` rows (`row_bytes` apart;
/// `rows` may end right after the last row's whole chunks; a pair of chunks, with `step`
/// twice a chunk's bytes), each row's bytes [`ahead`] of them prefetched as it is given.
/// One bounds check per row: walking the rows with `chunks` and `get` took nine scalar
/// operations per row, as many as the vector work on a row's 16 F8 codes.
#[inline(always)]
fn chunk_rows(
    rows: &[u8],
    row_bytes: usize,
    step: usize,
    c: usize,
    g: usize,
) -> impl Iterator<Item = &[u8]> {
    let prefetch = Prefetch::get();
    let on = ahead(step * c, row_bytes, g, prefetch.reach(AHEAD));
    (0..g).map(move |r| {
        let at = step * c + r * row_bytes;
        let bytes = &rows[at..at + step];
        // (On x86, whose hardware prefetchers follow the rows of a group, each in
        // another page, poorly.)
        prefetch.line(bytes.as_ptr().wrapping_add(on));
        bytes
    })
}

/// How far on from a chunk `at` bytes into its row [`chunk_rows`] asks for bytes:
/// `reach` ([`AHEAD`], further for [`Prefetch::L2`]), or past the row's end, as far into
/// the same row of the next group of `g` rows (`row_bytes` apart), which the same worker
/// usually takes next. (Running on into the group's next row, which is read at the same
/// time, left each band of 4 rows to start its other rows on bytes not asked for: ~4% of
/// an F8 render of 4096 × 4096 tensors with default options.)
#[inline(always)]
fn ahead(at: usize, row_bytes: usize, g: usize, reach: usize) -> usize {
    if at + reach >= row_bytes {
        reach + (g - 1) * row_bytes
    } else {
        reach
    }
}

/// Takes in one row's codes, of which the first `n` are the tensor's (the rest are 0).
#[inline(always)]
fn row<const KIND: Kind>(l: &mut Lanes, sum: &mut [f32; W], codes: [u16; W], b: f32, n: usize) {
    for k in 0..W {
        let (c, inside) = (codes[k], k < n);
        let x = if KIND != BF16 {
            f16(c)
        } else {
            f32::from_bits(u32::from(c) << 16)
        };
        sum[k] += x;
        let d = if inside { x - b } else { 0.0 };
        // (One fused operation where the CPU has it; the C library's `fmaf` otherwise.)
        l.d2[k] = if cfg!(any(target_feature = "fma", target_arch = "aarch64")) {
            d.mul_add(d, l.d2[k])
        } else {
            l.d2[k] + d * d
        };
        l.zeros[k] += u16::from(inside && c & 0x7fff == 0);
    }
    take_codes(l, codes, n);
}

/// Takes the first `n` of `codes` into the lanes' code extremes.
#[inline(always)]
fn take_codes(l: &mut Lanes, codes: [u16; W], n: usize) {
    for (k, &c) in codes.iter().enumerate() {
        if k < n {
            l.smax[k] = (l.smax[k] as i16).max(c as i16) as u16;
            l.umax[k] = l.umax[k].max(c);
            l.umin[k] = l.umin[k].min(c);
        }
    }
}

/// Takes in one row's F32 values `x`, of which the first `n` are the tensor's (the rest
/// are 0): into the lanes' sums, squares, differences and zero counts, and the chunk's
/// per-lane `sum`, minima and maxima (`acc`).
#[inline(always)]
fn values(l: &mut Lanes, acc: [&mut [f32; W]; 3], x: [f32; W], b: f32, n: usize) {
    let [sum, lo, hi] = acc;
    for k in 0..W {
        let inside = k < n;
        sum[k] += x[k];
        let d = if inside { x[k] - b } else { 0.0 };
        l.d1[k] += d;
        l.d2[k] = if cfg!(any(target_feature = "fma", target_arch = "aarch64")) {
            d.mul_add(d, l.d2[k])
        } else {
            l.d2[k] + d * d
        };
        l.zeros[k] += u16::from(inside && x[k] == 0.0);
        if inside {
            lo[k] = lo[k].min(x[k]);
            hi[k] = hi[k].max(x[k]);
        }
    }
}

/// An F16 code's value, in operations that vectorise (exact; NaN and Inf codes give
/// finite values, which is why the band's extremes are checked).
#[inline(always)]
fn f16(c: u16) -> f32 {
    let magnitude = u32::from(c & 0x7fff);
    // The exponent re-biased from 15 to 127.
    let bits = (magnitude << 13) + (112 << 23);
    let x = if magnitude < 0x400 {
        // Zero or subnormal: `m · 2^-24`, as `(1 + m · 2^-10) · 2^-14 - 2^-14` (exact).
        f32::from_bits(bits + (1 << 23)) - f32::from_bits(113 << 23)
    } else {
        f32::from_bits(bits)
    };
    f32::from_bits(x.to_bits() | u32::from(c & 0x8000) << 16)
}

/// [`Group`] in AVX2 registers, for x86 CPUs that have AVX2, FMA and F16C but not the
/// AVX-512 kernel (AMD Zen 2 and 3, most Intel desktop and laptop chips): 16 columns per
/// register (F8: two chunks of 16 columns a row at once, their zeros and extremes kept on
/// the bytes), the lanes' accumulators kept in registers across the group's chunks. (What
/// the compiler made of a first form of [`chunks`], one chunk per call, kept them in
/// memory and ran at ~0.5 of the read ceiling, against 0.64 for these intrinsics in the
/// same form.)
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{chunk_rows, size, Kind, Lanes, State, BF16, E4M3, E4M3_SCALED, F32, W};

    /// The 16 `u16` of `a` in one register.
    #[target_feature(enable = "avx")]
    #[inline]
    fn load(a: &[u16; W]) -> __m256i {
        // SAFETY: 32 bytes; no alignment requirement.
        unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
    }

    /// [`load`] undone.
    #[target_feature(enable = "avx")]
    #[inline]
    fn store(dst: &mut [u16; W], v: __m256i) {
        // SAFETY: 32 bytes; no alignment requirement.
        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), v) }
    }

    /// The first 16 `f32` of `a` in two registers.
    #[target_feature(enable = "avx")]
    #[inline]
    fn load_ps(a: &[f32]) -> [__m256; 2] {
        let (lo, hi) = (&a[..8], &a[8..16]);
        // SAFETY: 8 `f32` each; no alignment requirement.
        unsafe { [_mm256_loadu_ps(lo.as_ptr()), _mm256_loadu_ps(hi.as_ptr())] }
    }

    /// [`load_ps`] undone, into 16 `f32`.
    #[target_feature(enable = "avx")]
    #[inline]
    fn store_ps(dst: &mut [f32; W], v: [__m256; 2]) {
        // SAFETY: 16 `f32`; no alignment requirement.
        unsafe {
            _mm256_storeu_ps(dst.as_mut_ptr(), v[0]);
            _mm256_storeu_ps(dst[8..].as_mut_ptr(), v[1]);
        }
    }

    /// The extremes of the codes taken in, per lane, as [`Lanes`] keeps them.
    #[derive(Clone, Copy)]
    struct Extremes {
        smax: __m256i,
        umax: __m256i,
        umin: __m256i,
    }

    impl Extremes {
        #[target_feature(enable = "avx")]
        #[inline]
        fn load(l: &Lanes) -> Extremes {
            Extremes {
                smax: load(&l.smax),
                umax: load(&l.umax),
                umin: load(&l.umin),
            }
        }

        /// Takes in the 16 codes of `v`.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn take(&mut self, v: __m256i) {
            self.smax = _mm256_max_epi16(self.smax, v);
            self.umax = _mm256_max_epu16(self.umax, v);
            self.umin = _mm256_min_epu16(self.umin, v);
        }

        #[target_feature(enable = "avx")]
        #[inline]
        fn store(self, l: &mut Lanes) {
            store(&mut l.smax, self.smax);
            store(&mut l.umax, self.umax);
            store(&mut l.umin, self.umin);
        }
    }

    /// The first 16 elements of `bytes` (of `KIND`) as the lanes take their codes (see
    /// [`super::codes`]): F8_E4M3 codes widened to the F16 codes of their values over 256
    /// (sign-extended, the magnitude moved up 7 bits and the sign's copies between them
    /// cleared), F8_E5M2 codes as the top bytes of F16 codes, BF16 and F16 as they are.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn codes<const KIND: Kind>(bytes: &[u8]) -> __m256i {
        let bytes = &bytes[..size(KIND) * W];
        // SAFETY: 16 or 32 bytes, as the slice above holds; no alignment requirement.
        unsafe {
            if size(KIND) == 1 {
                widen::<KIND>(_mm_loadu_si128(bytes.as_ptr().cast()))
            } else {
                _mm256_loadu_si256(bytes.as_ptr().cast())
            }
        }
    }

    /// 16 F8 codes as [`codes`] takes them in (`KIND` is an F8 kind). Both orders of the
    /// codes, as signed and as unsigned numbers, are kept.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn widen<const KIND: Kind>(v: __m128i) -> __m256i {
        if matches!(KIND, E4M3 | E4M3_SCALED) {
            let w = _mm256_cvtepi8_epi16(v);
            let bits = _mm256_set1_epi16(0xbf80_u16 as i16);
            _mm256_and_si256(_mm256_slli_epi16::<7>(w), bits)
        } else {
            _mm256_slli_epi16::<8>(_mm256_cvtepu8_epi16(v))
        }
    }

    /// Takes 16 values `x` into a chunk's sums `s` and the lanes' squares `d2`: of `x -
    /// shift`, or with `PLAIN` of `x` (`shift` is then 0).
    #[target_feature(enable = "avx,fma")]
    #[inline]
    fn take<const PLAIN: bool>(
        s: &mut [__m256; 2],
        d2: &mut [__m256; 2],
        x: [__m256; 2],
        shift: __m256,
    ) {
        for u in 0..2 {
            s[u] = _mm256_add_ps(s[u], x[u]);
            let d = if PLAIN {
                x[u]
            } else {
                _mm256_sub_ps(x[u], shift)
            };
            d2[u] = _mm256_fmadd_ps(d, d, d2[u]);
        }
    }

    /// 16 F16 codes' values: columns 0–7 and 8–15.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    fn f16_values(v: __m256i) -> [__m256; 2] {
        [
            _mm256_cvtph_ps(_mm256_castsi256_si128(v)),
            _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(v)),
        ]
    }

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    /// See [`super::Group`].
    pub(super) fn chunks<const KIND: Kind>(
        st: &mut State<'_>,
        rows: &[u8],
        row_bytes: usize,
        g: usize,
        b: f32,
    ) {
        assert!(available());
        // SAFETY: the CPU has the features `chunks_avx2` is compiled with.
        unsafe {
            if b == 0.0 {
                chunks_avx2::<KIND, true>(st, rows, row_bytes, g, b)
            } else {
                chunks_avx2::<KIND, false>(st, rows, row_bytes, g, b)
            }
        }
    }

    /// [`chunks`], with `PLAIN` when `b` is 0 (the squares of `x - 0` without the
    /// subtraction).
    #[target_feature(enable = "avx2,fma,f16c")]
    fn chunks_avx2<const KIND: Kind, const PLAIN: bool>(
        st: &mut State<'_>,
        rows: &[u8],
        row_bytes: usize,
        g: usize,
        b: f32,
    ) {
        let l = &st.lanes;
        let (mut zeros, mut extremes) = (load(&l.zeros), Extremes::load(l));
        let mut d2 = load_ps(&l.d2);
        let shift = _mm256_set1_ps(b);
        let magnitude = _mm256_set1_epi16(0x7fff);
        let high = _mm256_set1_epi32(0xffff_0000_u32 as i32);
        let step = size(KIND) * W;
        let count = (rows.len() - (g - 1) * row_bytes) / step;
        let mut sum = [0f32; W];
        let mut first = 0;
        if size(KIND) == 1 {
            // F8: two chunks at once, 32 bytes of each row, their zeros and extremes taken
            // on the bytes (6 operations for 32 codes, where the F16 codes take 6 or 7 for
            // 16).
            // A byte lane counts at most `GROUP` zeros between drains.
            let pairs = count / 2;
            let (low, zero) = (_mm256_set1_epi8(0x7f), _mm256_setzero_si256());
            let total = |z: __m256i| -> u64 {
                let mut lanes = [0u64; 4];
                // SAFETY: 4 `u64`, one register; no alignment requirement.
                unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), _mm256_sad_epu8(z, zero)) };
                lanes.iter().sum()
            };
            let mut zb = zero;
            let (mut smax, mut umax, mut umin) =
                (_mm256_set1_epi8(i8::MIN), zero, _mm256_set1_epi8(-1));
            for p in 0..pairs {
                if st.full(2 * g) {
                    store_ps(&mut st.lanes.d2, d2);
                    store(&mut st.lanes.zeros, zeros);
                    st.zeros += total(zb);
                    st.drain();
                    (d2, zeros, zb) = ([_mm256_setzero_ps(); 2], zero, zero);
                }
                st.pending += 2 * g;
                let mut s = [[_mm256_setzero_ps(); 2]; 2];
                for bytes in chunk_rows(rows, row_bytes, 2 * step, p, g) {
                    // SAFETY: 32 bytes (`chunk_rows` gives `2 * step`); no alignment
                    // requirement.
                    let raw = unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) };
                    zb = _mm256_sub_epi8(zb, _mm256_cmpeq_epi8(_mm256_and_si256(raw, low), zero));
                    smax = _mm256_max_epi8(smax, raw);
                    umax = _mm256_max_epu8(umax, raw);
                    umin = _mm256_min_epu8(umin, raw);
                    let halves = [
                        _mm256_castsi256_si128(raw),
                        _mm256_extracti128_si256::<1>(raw),
                    ];
                    for (s, half) in s.iter_mut().zip(halves) {
                        take::<PLAIN>(s, &mut d2, f16_values(widen::<KIND>(half)), shift);
                    }
                }
                for (h, s) in s.into_iter().enumerate() {
                    store_ps(&mut sum, s);
                    st.fold((2 * p + h) * W, W, &sum, None);
                }
            }
            if pairs > 0 {
                st.zeros += total(zb);
                // The bytes' extremes, their two halves' first, as F16 codes into the
                // lanes' (only once codes were taken in: `umin`'s start, 0xff, is a code).
                let halves =
                    |v: __m256i| (_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                let (smax, umax, umin) = (halves(smax), halves(umax), halves(umin));
                let smax = widen::<KIND>(_mm_max_epi8(smax.0, smax.1));
                let umax = widen::<KIND>(_mm_max_epu8(umax.0, umax.1));
                let umin = widen::<KIND>(_mm_min_epu8(umin.0, umin.1));
                extremes.smax = _mm256_max_epi16(extremes.smax, smax);
                extremes.umax = _mm256_max_epu16(extremes.umax, umax);
                extremes.umin = _mm256_min_epu16(extremes.umin, umin);
            }
            first = 2 * pairs;
        }
        for c in first..count {
            if st.full(g) {
                store_ps(&mut st.lanes.d2, d2);
                store(&mut st.lanes.zeros, zeros);
                st.drain();
                (d2, zeros) = ([_mm256_setzero_ps(); 2], _mm256_setzero_si256());
            }
            st.pending += g;
            let mut s = [_mm256_setzero_ps(); 2];
            for bytes in chunk_rows(rows, row_bytes, step, c, g) {
                let v = codes::<KIND>(bytes);
                let zero =
                    _mm256_cmpeq_epi16(_mm256_and_si256(v, magnitude), _mm256_setzero_si256());
                zeros = _mm256_sub_epi16(zeros, zero);
                extremes.take(v);
                // F16: columns 0–7 and 8–15; BF16: the even columns and the odd ones.
                let x = if KIND != BF16 {
                    f16_values(v)
                } else {
                    [
                        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v)),
                        _mm256_castsi256_ps(_mm256_and_si256(v, high)),
                    ]
                };
                take::<PLAIN>(&mut s, &mut d2, x, shift);
            }
            if KIND == BF16 {
                // Back in column order: pairs of lanes (even, odd) from each 128-bit half.
                let (lo, hi) = (
                    _mm256_unpacklo_ps(s[0], s[1]),
                    _mm256_unpackhi_ps(s[0], s[1]),
                );
                s = [
                    _mm256_permute2f128_ps::<0x20>(lo, hi),
                    _mm256_permute2f128_ps::<0x31>(lo, hi),
                ];
            }
            store_ps(&mut sum, s);
            st.fold(c * W, W, &sum, None);
        }
        let l = &mut st.lanes;
        store(&mut l.zeros, zeros);
        extremes.store(l);
        store_ps(&mut l.d2, d2);
    }

    /// [`super::Group`] for the kinds reduced as values (see [`super::F32`]): F32, 16
    /// values of a row in two registers; FP8 with block scales, 16 codes widened into F16
    /// codes as [`chunks`] does, their extremes kept, decoded and multiplied by their
    /// columns' scales. The lanes' differences, squares and zero counts (in 32-bit lanes)
    /// are kept in registers across the group's chunks, each chunk's sums and extremes in
    /// its own.
    pub(super) fn value_chunks<const KIND: Kind>(
        st: &mut State<'_>,
        rows: &[u8],
        row_bytes: usize,
        g: usize,
        b: f32,
    ) {
        assert!(available());
        // SAFETY: the CPU has the features `value_chunks_avx2` is compiled with.
        unsafe { value_chunks_avx2::<KIND>(st, rows, row_bytes, g, b) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn value_chunks_avx2<const KIND: Kind>(
        st: &mut State<'_>,
        rows: &[u8],
        row_bytes: usize,
        g: usize,
        b: f32,
    ) {
        // The zero counts' 32-bit lanes, added to the band's count where the lanes' `u16`
        // counts would be (`W` of them: at most `2 · GROUP` each).
        let count = |z: [__m256i; 2]| -> u64 {
            let mut lanes = [0u32; W];
            // SAFETY: 16 `u32`, two registers; no alignment requirement.
            unsafe {
                _mm256_storeu_si256(lanes.as_mut_ptr().cast(), z[0]);
                _mm256_storeu_si256(lanes[8..].as_mut_ptr().cast(), z[1]);
            }
            lanes.iter().map(|&c| u64::from(c)).sum()
        };
        let (mut d1, mut d2) = (load_ps(&st.lanes.d1), load_ps(&st.lanes.d2));
        let mut extremes = Extremes::load(&st.lanes);
        let mut zeros = [_mm256_setzero_si256(); 2];
        let (shift, zero) = (_mm256_set1_ps(b), _mm256_setzero_ps());
        let step = size(KIND) * W;
        let chunks = (rows.len() - (g - 1) * row_bytes) / step;
        let (mut sum, mut lo, mut hi) = ([0f32; W], [0f32; W], [0f32; W]);
        for c in 0..chunks {
            if st.full(g) {
                store_ps(&mut st.lanes.d1, d1);
                store_ps(&mut st.lanes.d2, d2);
                st.zeros += count(zeros);
                st.drain();
                (d1, d2) = ([_mm256_setzero_ps(); 2], [_mm256_setzero_ps(); 2]);
                zeros = [_mm256_setzero_si256(); 2];
            }
            st.pending += g;
            let scales = if KIND == F32 {
                [_mm256_set1_ps(1.0); 2]
            } else {
                load_ps(&st.scales.row[W * c..])
            };
            let mut s = [_mm256_setzero_ps(); 2];
            let mut mn = [_mm256_set1_ps(f32::INFINITY); 2];
            let mut mx = [_mm256_set1_ps(f32::NEG_INFINITY); 2];
            for bytes in chunk_rows(rows, row_bytes, step, c, g) {
                let x = if KIND == F32 {
                    // SAFETY: 64 bytes, 16 `f32`; no alignment requirement.
                    unsafe {
                        [
                            _mm256_loadu_ps(bytes.as_ptr().cast()),
                            _mm256_loadu_ps(bytes[32..].as_ptr().cast()),
                        ]
                    }
                } else {
                    let v = codes::<KIND>(bytes);
                    extremes.take(v);
                    let x = f16_values(v);
                    [
                        _mm256_mul_ps(x[0], scales[0]),
                        _mm256_mul_ps(x[1], scales[1]),
                    ]
                };
                for u in 0..2 {
                    s[u] = _mm256_add_ps(s[u], x[u]);
                    let d = _mm256_sub_ps(x[u], shift);
                    d1[u] = _mm256_add_ps(d1[u], d);
                    d2[u] = _mm256_fmadd_ps(d, d, d2[u]);
                    // All bits set where `x` is ±0: minus one, counted up.
                    let z = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_EQ_OQ>(x[u], zero));
                    zeros[u] = _mm256_sub_epi32(zeros[u], z);
                    mn[u] = _mm256_min_ps(mn[u], x[u]);
                    mx[u] = _mm256_max_ps(mx[u], x[u]);
                }
            }
            store_ps(&mut sum, s);
            store_ps(&mut lo, mn);
            store_ps(&mut hi, mx);
            st.fold(c * W, W, &sum, Some([&lo, &hi]));
        }
        let l = &mut st.lanes;
        store_ps(&mut l.d1, d1);
        store_ps(&mut l.d2, d2);
        extremes.store(l);
        st.zeros += count(zeros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every F8_E4M3 code as the F16 code of its value over 256, and back.
    #[test]
    fn e4m3_codes_are_f16_codes_of_a_256th() {
        for c in 0..=u8::MAX {
            let want = crate::dtype::decode_one(Dtype::F8E4M3, &[c]);
            let h = e4m3_as_f16(c);
            if !want.is_nan() {
                let got = half::f16::from_bits(h).to_f32() * 256.0;
                assert_eq!(got.to_bits(), want.to_bits(), "{c:#04x}");
            }
            assert_eq!(f16_as_e4m3(h), u32::from(c), "{c:#04x}");
            // Ordered as the codes are, read as unsigned and as signed integers (the
            // band's extremes are taken on them).
            if c > 0 {
                let (a, b) = (c - 1, e4m3_as_f16(c - 1));
                assert!(b < h, "{c:#04x}");
                assert_eq!((a as i8) < (c as i8), (b as i16) < (h as i16), "{c:#04x}");
            }
        }
    }

    /// Every F8_E5M2 code is the top byte of its value's F16 code.
    #[test]
    fn e5m2_codes_are_f16_top_bytes() {
        for c in 0..=u8::MAX {
            let want = crate::dtype::decode_one(Dtype::F8E5M2, &[c]);
            let got = half::f16::from_bits(u16::from(c) << 8).to_f32();
            assert!(
                got.to_bits() == want.to_bits() || got.is_nan() && want.is_nan(),
                "{c:#04x}"
            );
        }
    }

    #[test]
    fn f16_codes_decode_exactly() {
        for c in 0..=u16::MAX {
            let want = half::f16::from_bits(c);
            if want.is_finite() {
                assert_eq!(f16(c).to_bits(), want.to_f32().to_bits(), "{c:#06x}");
            }
        }
    }

    /// The ways whole chunks are reduced on this machine, for `dtype`.
    fn groups(dtype: Dtype) -> Vec<(&'static str, Group)> {
        let plain: Group = match dtype {
            Dtype::BF16 => chunks::<BF16>,
            Dtype::F16 => chunks::<F16>,
            Dtype::F32 => chunks::<F32>,
            Dtype::F8E4M3 => chunks::<E4M3>,
            _ => chunks::<E5M2>,
        };
        #[cfg(target_arch = "x86_64")]
        let avx2 = avx2::available().then(|| {
            let avx2: Group = match dtype {
                Dtype::BF16 => avx2::chunks::<BF16>,
                Dtype::F16 => avx2::chunks::<F16>,
                Dtype::F32 => avx2::value_chunks::<F32>,
                Dtype::F8E4M3 => avx2::chunks::<E4M3>,
                _ => avx2::chunks::<E5M2>,
            };
            ("avx2", avx2)
        });
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = None;
        std::iter::once(("plain", plain)).chain(avx2).collect()
    }

    /// A band's codes and their values (decoded by `half`, bit shifts and, for F8_E4M3,
    /// the library's decoder, checked against ml_dtypes' table in `tests/`): with `sign`
    /// 0, both signs, zeros of both signs and subnormals; with 1 or -1, values of that
    /// sign only (whose extremes come from other code extremes). F32 values are those
    /// times 1.1, so that most have long mantissas.
    fn data(dtype: Dtype, len: usize, sign: f32) -> (Vec<u8>, Vec<f64>) {
        let mixed = |i: usize| match i % 11 {
            3 => 0.0,
            7 => -0.0,
            5 => 3e-6 * (i as f32 - 800.0),
            _ => ((i * 37 % 101) as f32 - 40.0) / 16.0,
        };
        let value = |i| match sign {
            0.0 => mixed(i),
            _ => sign * (mixed(i).abs() + 1.0),
        };
        if let Dtype::F8E4M3 | Dtype::F8E5M2 = dtype {
            // Every finite magnitude (E4M3: below 0x7f, its NaN; E5M2: below 0x7c, its
            // Inf) in turn, zeros where `mixed` has them.
            let finite = if dtype == Dtype::F8E4M3 { 0x7f } else { 0x7c };
            let (codes, exact) = (0..len)
                .map(|i| {
                    let magnitude = (i * 37 % finite) as u8;
                    let c = match sign {
                        0.0 if mixed(i) == 0.0 => (mixed(i).is_sign_negative() as u8) << 7,
                        0.0 => magnitude | ((i * 13 % 3 == 0) as u8) << 7,
                        _ => magnitude.max(1) | ((sign < 0.0) as u8) << 7,
                    };
                    (c, f64::from(crate::dtype::decode_one(dtype, &[c])))
                })
                .unzip();
            return (codes, exact);
        }
        if dtype == Dtype::F32 {
            let x = (0..len).map(|i| value(i) * 1.1);
            return (
                x.clone().flat_map(f32::to_le_bytes).collect(),
                x.map(f64::from).collect(),
            );
        }
        let (codes, exact): (Vec<u16>, Vec<f64>) = (0..len)
            .map(|i| match dtype {
                Dtype::BF16 => {
                    let c = (value(i).to_bits() >> 16) as u16;
                    (c, f64::from(f32::from_bits(u32::from(c) << 16)))
                }
                _ => {
                    let h = half::f16::from_f32(value(i));
                    (h.to_bits(), f64::from(h.to_f32()))
                }
            })
            .unzip();
        (codes.iter().flat_map(|c| c.to_le_bytes()).collect(), exact)
    }

    /// Whole bands straight through the kernel, with each way of reducing its chunks (the
    /// integration tests reach it with `TENSORHEAT_NO_AVX512` set, where they cannot tell
    /// it from the general kernel and only one way runs): shapes around its 16-column
    /// chunks and 32-row groups, partial chunks and cells, against sums in `f64`.
    #[test]
    fn clean_bands_match_sums_in_f64() {
        for dtype in DTYPES {
            for ((name, group), sign) in iproduct(groups(dtype), [0.0, 1.0, -1.0]) {
                let shapes = iproduct([1, 5, 32, 45, 70], [4, 16, 17, 37, 64, 80, 100]);
                let widths = [4usize, 6, 8, 12, 14, 16, 19, 20, 32];
                for ((rows, cols), bw) in iproduct(shapes, widths) {
                    let (bytes, exact) = data(dtype, rows * cols, sign);
                    let gw = cols.div_ceil(bw);
                    let mut cells = Band::new(gw);
                    let what = format!("{dtype:?} {name} sign {sign} {rows}×{cols} in {bw}");
                    let acc = band(&bytes, dtype, cols, bw, None, &mut cells, group)
                        .unwrap_or_else(|| panic!("{what}: a clean band is taken"));
                    check(&what, &acc, &cells, &exact, cols, bw);
                }
            }
        }
    }

    /// Checks a band's cells (`bw` columns wide) and summary against its values `exact`,
    /// `cols` to a row, summed in `f64`.
    fn check(what: &str, acc: &Acc, cells: &Band, exact: &[f64], cols: usize, bw: usize) {
        let rows = exact.len() / cols;
        for j in 0..cols.div_ceil(bw) {
            let members = (0..rows).flat_map(|r| {
                let row = &exact[r * cols..(r + 1) * cols];
                row[j * bw..((j + 1) * bw).min(cols)].to_vec()
            });
            let (sum, size, count) = members.fold((0.0, 0.0, 0.0), |(s, a, n), v| {
                (s + v, a + v.abs(), n + 1.0)
            });
            // (Sums of differences from the cell's shift: 0, or for a constant F32 cell
            // its value.)
            let got = cells.s1[j] + count * f64::from(cells.shift[j]);
            assert!(
                (got - sum).abs() <= 1e-6 * size,
                "{what} cell {j}: {got} vs {sum}"
            );
        }
        assert_eq!(acc.n, exact.len() as u64, "{what}");
        let zeros = exact.iter().filter(|&&v| v == 0.0).count() as u64;
        assert_eq!(acc.zeros, zeros, "{what}");
        let min = exact.iter().copied().fold(f64::INFINITY, f64::min);
        let max = exact.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let got = (f64::from(acc.min), f64::from(acc.max));
        assert_eq!(got, (min, max), "{what}");
        let b = f64::from(acc.shift);
        let (s1, s2) = exact.iter().fold((0.0, 0.0), |(s1, s2), v| {
            (s1 + (v - b), s2 + (v - b) * (v - b))
        });
        let size: f64 = exact.iter().map(|v| v.abs() + b.abs()).sum();
        assert!(
            (acc.s1 - s1).abs() <= 1e-6 * size,
            "{what}: {} vs {s1}",
            acc.s1
        );
        assert!(
            (acc.s2 - s2).abs() <= 1e-6 * s2,
            "{what}: {} vs {s2}",
            acc.s2
        );
    }

    /// Every pair of an item of `a` and one of `b`.
    fn iproduct<A: Clone, B: Clone>(
        a: impl IntoIterator<Item = A>,
        b: impl IntoIterator<Item = B> + Clone,
    ) -> Vec<(A, B)> {
        a.into_iter()
            .flat_map(|x| b.clone().into_iter().map(move |y| (x.clone(), y)))
            .collect()
    }

    /// The lanes' zero counts and squares move to `u64` and `f64` before they can wrap
    /// or lose the band's small values: a band of zeros 32 rows by 2100 chunks (67200
    /// values per lane, more than a `u16` counts) with one value of 1 in its last row.
    #[test]
    fn long_bands_count_every_zero() {
        let (rows, cols) = (32, 16 * 2100);
        for dtype in DTYPES {
            let z = dtype.size();
            let mut bytes = vec![0u8; z * rows * cols];
            let one = match dtype {
                Dtype::F32 => 0x3f80_0000u32,
                Dtype::BF16 => 0x3f80,
                Dtype::F16 => 0x3c00,
                Dtype::F8E4M3 => 0x38,
                _ => 0x3c,
            };
            let at = z * (rows * cols - 5);
            bytes[at..at + z].copy_from_slice(&one.to_le_bytes()[..z]);
            for (name, group) in groups(dtype) {
                let mut cells = Band::new(cols / 16);
                let acc = band(&bytes, dtype, cols, 16, None, &mut cells, group)
                    .expect("a clean band is taken");
                assert_eq!(acc.zeros, (rows * cols - 1) as u64, "{dtype:?} {name}");
                assert_eq!((acc.min, acc.max), (0.0, 1.0), "{dtype:?} {name}");
                assert_eq!(cells.s1[cols / 16 - 1], 1.0, "{dtype:?} {name}");
                if dtype == Dtype::F32 {
                    // Constant cells of zeros, made so exactly.
                    assert_eq!((cells.shift[0], cells.s1[0]), (0.0, 0.0), "{name}");
                }
                let b = f64::from(acc.shift);
                let s2 = (rows * cols - 1) as f64 * b * b + (1.0 - b) * (1.0 - b);
                assert!(
                    (acc.s2 - s2).abs() <= 1e-9 * s2.max(1.0),
                    "{dtype:?} {name}"
                );
            }
        }
    }

    /// Left to the general kernel: a NaN or an Inf of either sign anywhere (in a whole
    /// chunk or the partial last one), other reductions, narrower cells, other dtypes.
    #[test]
    fn other_bands_are_left() {
        let (rows, cols, bw): (usize, usize, usize) = (45, 85, 6);
        let gw = cols.div_ceil(bw);
        for dtype in DTYPES {
            let (bytes, _) = data(dtype, rows * cols, 0.0);
            // (E4M3 has no Inf: 0x7f and 0xff are its NaNs.)
            let specials: &[u32] = match dtype {
                Dtype::F32 => &[0x7fc0_0000, 0x7f80_0000, 0xff80_0000, 0xffc0_0001],
                Dtype::BF16 => &[0x7fc0, 0x7f80, 0xff80, 0xffc1],
                Dtype::F16 => &[0x7e00, 0x7c00, 0xfc00, 0xfe01],
                Dtype::F8E4M3 => &[0x7f, 0xff],
                _ => &[0x7e, 0x7c, 0xfc, 0xfd],
            };
            let z = dtype.size();
            for (name, group) in groups(dtype) {
                for &s in specials {
                    // Columns 3 and 20 (whole chunks; for F8 on AVX2, the two halves of
                    // a pair), 70 (the odd whole chunk) and 84 (the partial one).
                    for at in [
                        10 * cols + 3,
                        15 * cols + 20,
                        30 * cols + 70,
                        20 * cols + 84,
                    ] {
                        let mut bad = bytes.clone();
                        bad[z * at..z * (at + 1)].copy_from_slice(&s.to_le_bytes()[..z]);
                        let mut cells = Band::new(gw);
                        let taken = band(&bad, dtype, cols, bw, None, &mut cells, group);
                        assert!(taken.is_none(), "{dtype:?} {name} {s:#06x} at {at}");
                    }
                }
            }
            for r in Reduction::ALL.into_iter().filter(|&r| r != Reduction::Mean) {
                assert!(group(dtype, r, false).is_none(), "{dtype:?} {r:?}");
            }
            let mut cells = Band::new(cols.div_ceil(3));
            let mean = group(dtype, Reduction::Mean, false).unwrap();
            assert!(
                band(&bytes, dtype, cols, 3, None, &mut cells, mean).is_none(),
                "{dtype:?}"
            );
        }
        assert!(group(Dtype::F64, Reduction::Mean, false).is_none());
        assert!(group(Dtype::BF16, Reduction::Mean, true).is_none());
    }

    /// F32 cells that hold one value come out as exactly that value (their `f32` sums
    /// round: 0.1 twelve times is not 1.2 in `f32`), whether they lie in one chunk, span
    /// chunks or end in the partial last one, and the band's extremes are the cells'; a
    /// band whose plain sums overflow where its differences do not is left to the general
    /// kernel.
    #[test]
    fn constant_f32_cells_are_exact() {
        let rows = 3;
        for (cols, bw) in [(40usize, 4usize), (50, 20), (70, 34), (37, 37), (100, 6)] {
            let gw = cols.div_ceil(bw);
            // Cell `j` is 0.1 times `j + 1`, but for one value of 0.25 in the last cell.
            let odd = cols + cols - 1;
            let value = |i: usize| match i {
                _ if i == odd => 0.25,
                _ => 0.1 * ((i % cols) / bw + 1) as f32,
            };
            let bytes: Vec<u8> = (0..rows * cols)
                .flat_map(|i| value(i).to_le_bytes())
                .collect();
            for (name, group) in groups(Dtype::F32) {
                let what = format!("{name} {cols} columns in {bw}");
                let mut cells = Band::new(gw);
                let acc = band(&bytes, Dtype::F32, cols, bw, None, &mut cells, group)
                    .unwrap_or_else(|| panic!("{what}: a clean band is taken"));
                for j in 0..gw - 1 {
                    let v = 0.1 * (j + 1) as f32;
                    assert_eq!((cells.shift[j], cells.s1[j]), (v, 0.0), "{what} cell {j}");
                }
                let (last, width) = (gw - 1, (cols - (gw - 1) * bw) as f64);
                let v = f64::from(0.1 * gw as f32);
                let sum = (rows as f64 * width - 1.0) * v + 0.25;
                let got = cells.s1[last];
                assert!(
                    cells.shift[last] == 0.0 && (got - sum).abs() < 1e-6,
                    "{what}"
                );
                let max = (0.1 * gw as f32).max(0.25);
                assert_eq!((acc.min, acc.max), (0.1, max), "{what}");
            }
        }
        let (cols, bw) = (40, 4);
        let big = (-2f32.powi(127)).to_le_bytes().repeat(rows * cols);
        for (name, group) in groups(Dtype::F32) {
            let mut cells = Band::new(cols / bw);
            assert!(
                band(&big, Dtype::F32, cols, bw, None, &mut cells, group).is_none(),
                "{name}"
            );
        }
    }

    /// The ways whole chunks of FP8 with block scales are reduced on this machine.
    fn scaled_groups(dtype: Dtype) -> Vec<(&'static str, Group)> {
        let e4m3 = dtype == Dtype::F8E4M3;
        let plain: Group = if e4m3 {
            chunks::<E4M3_SCALED>
        } else {
            chunks::<E5M2_SCALED>
        };
        #[cfg(target_arch = "x86_64")]
        let avx2 = avx2::available().then(|| {
            let avx2: Group = if e4m3 {
                avx2::value_chunks::<E4M3_SCALED>
            } else {
                avx2::value_chunks::<E5M2_SCALED>
            };
            ("avx2", avx2)
        });
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = None;
        std::iter::once(("plain", plain)).chain(avx2).collect()
    }

    /// FP8 with block scales: every value is its code's (the library's decoder, checked
    /// against ml_dtypes' table in `tests/`) times its block's `f32` scale, rounded to
    /// `f32` as the general kernel rounds it, and the cells' sums, the band's sums of
    /// differences and squares, zeros and extremes match those in `f64`, for blocks that
    /// cut rows and columns anywhere (or are far wider than the tensor, as a file's
    /// `weight_block_size` may say) and bands that start inside a block row; a NaN or
    /// Inf code, or a scale that is zero, tiny or not finite, leaves the band to the
    /// general kernel.
    #[test]
    fn scaled_fp8_bands_match_sums_in_f64() {
        for dtype in [Dtype::F8E4M3, Dtype::F8E5M2] {
            for ((name, group), (sbh, sbw)) in iproduct(
                scaled_groups(dtype),
                [(3, 5), (32, 16), (128, 128), (7, 48), (7, 1 << 40)],
            ) {
                let shapes = iproduct([5usize, 45, 70], [16usize, 37, 100]);
                for (((rows, cols), bw), row0) in
                    iproduct(iproduct(shapes, [4usize, 6, 16]), [0, 2])
                {
                    let (codes, _) = data(dtype, rows * cols, 0.0);
                    let (srows, scols) = ((row0 + rows).div_ceil(sbh), cols.div_ceil(sbw));
                    let scales: Vec<f32> = (0..srows * scols)
                        .map(|k| 2f32.powi(k as i32 % 5 - 2) * (1.0 + 0.013 * k as f32))
                        .collect();
                    let bytes: Vec<u8> = scales.iter().flat_map(|v| v.to_le_bytes()).collect();
                    let scale = Scale {
                        data: &bytes,
                        dtype: Dtype::F32,
                        rows: srows,
                        cols: scols,
                        bh: sbh,
                        bw: sbw,
                    };
                    let exact: Vec<f64> = (0..rows * cols)
                        .map(|i| {
                            let (r, c) = (row0 + i / cols, i % cols);
                            let v = crate::dtype::decode_one(dtype, &codes[i..=i]);
                            f64::from(v * scales[r / sbh * scols + c / sbw])
                        })
                        .collect();
                    let gw = cols.div_ceil(bw);
                    let what = format!("{dtype:?} {name} {rows}×{cols} in {bw}, blocks {sbh}×{sbw} from row {row0}");
                    let mut cells = Band::new(gw);
                    let acc = band(
                        &codes,
                        dtype,
                        cols,
                        bw,
                        Some((&scale, row0)),
                        &mut cells,
                        group,
                    )
                    .unwrap_or_else(|| panic!("{what}: a clean band is taken"));
                    check(&what, &acc, &cells, &exact, cols, bw);
                    // A NaN or Inf code in a whole chunk or the partial last one, or one
                    // bad scale, and the band is left.
                    let specials: &[u8] = if dtype == Dtype::F8E4M3 {
                        &[0x7f, 0xff]
                    } else {
                        &[0x7c, 0xfc, 0x7e]
                    };
                    for (&c, at) in iproduct(specials, [3, rows * cols - 1]) {
                        let mut bad = codes.clone();
                        bad[at] = c;
                        let mut cells = Band::new(gw);
                        let s = Some((&scale, row0));
                        let taken = band(&bad, dtype, cols, bw, s, &mut cells, group);
                        assert!(taken.is_none(), "{what}: code {c:#04x} at {at}");
                    }
                    for v in [0.0, 2f32.powi(-120), f32::NAN, f32::INFINITY] {
                        let mut bad = bytes.clone();
                        let at = 4 * (scales.len() - 1);
                        bad[at..at + 4].copy_from_slice(&v.to_le_bytes());
                        let scale = Scale {
                            data: &bad,
                            ..scale
                        };
                        let mut cells = Band::new(gw);
                        let s = Some((&scale, row0));
                        let taken = band(&codes, dtype, cols, bw, s, &mut cells, group);
                        assert!(taken.is_none(), "{what}: scale {v}");
                    }
                }
            }
        }
    }

    /// A worker keeps its bands' column scales while the scale row stays the same: bands
    /// of 4 rows taken one after another with one cache (moved from band to band, as a
    /// worker's `Band` keeps it), in blocks of 7 rows, match sums in `f64`; a band whose
    /// scale row holds a zero scale is left to the general kernel, and the next bands,
    /// in the row before it (as a worker may take them) and the row after, are right.
    #[test]
    fn scale_rows_are_kept_across_a_workers_bands() {
        let (rows, cols, bw, sbh, sbw): (usize, usize, usize, usize, usize) = (40, 37, 4, 7, 5);
        let (srows, scols) = (rows.div_ceil(sbh), cols.div_ceil(sbw));
        // Scale row 3 (tensor rows 21..28) holds a zero.
        let scales: Vec<f32> = (0..srows * scols)
            .map(|k| {
                if k == 3 * scols + 2 {
                    0.0
                } else {
                    1.0 + 0.25 * k as f32
                }
            })
            .collect();
        let bytes: Vec<u8> = scales.iter().flat_map(|v| v.to_le_bytes()).collect();
        let scale = Scale {
            data: &bytes,
            dtype: Dtype::F32,
            rows: srows,
            cols: scols,
            bh: sbh,
            bw: sbw,
        };
        for dtype in [Dtype::F8E4M3, Dtype::F8E5M2] {
            let (codes, _) = data(dtype, rows * cols, 0.0);
            for (name, group) in scaled_groups(dtype) {
                let mut cache = ScaleCache::default();
                // (Band 16, in scale row 2, again after band 20 failed in row 3.)
                for row0 in [0, 4, 8, 12, 16, 20, 16, 24, 28, 32, 36] {
                    let what = format!("{dtype:?} {name} band from row {row0}");
                    let band_codes = &codes[row0 * cols..(row0 + 4) * cols];
                    let mut cells = Band::new(cols.div_ceil(bw));
                    cells.column_scales = cache;
                    let s = Some((&scale, row0));
                    let taken = band(band_codes, dtype, cols, bw, s, &mut cells, group);
                    cache = std::mem::take(&mut cells.column_scales);
                    if (20..28).contains(&row0) {
                        assert!(taken.is_none(), "{what}: a zero scale is left");
                        continue;
                    }
                    let exact: Vec<f64> = (0..4 * cols)
                        .map(|i| {
                            let (r, c) = (row0 + i / cols, i % cols);
                            let v = crate::dtype::decode_one(dtype, &band_codes[i..=i]);
                            f64::from(v * scales[r / sbh * scols + c / sbw])
                        })
                        .collect();
                    let acc = taken.unwrap_or_else(|| panic!("{what}: a clean band is taken"));
                    check(&what, &acc, &cells, &exact, cols, bw);
                }
            }
        }
    }

    /// The dtypes this kernel takes.
    const DTYPES: [Dtype; 5] = [
        Dtype::BF16,
        Dtype::F16,
        Dtype::F32,
        Dtype::F8E4M3,
        Dtype::F8E5M2,
    ];
}
