//! The kernel for cells 1 to 3 columns wide, which the other fast kernels do not take:
//! every matrix at most 3072 columns wide with default options, so most matrices of a
//! model of hidden size 768 to 3072 (GPT-2, BERT, Llama 3.2 1B and 3B). `mean`, `max`,
//! `min` and `absmax` of a band of BF16, F16, F32 or F8_E4M3 data without block scales
//! and with no NaN or Inf.
//!
//! Such cells hold one to three columns of a few rows, so the other kernels' plan, sums
//! kept per lane down a group of rows and then folded into cells, has little to fold,
//! and the general kernel spent 1.5–5 ns of CPU time an element on its bookkeeping
//! (0.05–0.13 of the read ceiling for such models). Here the band is decoded a piece at
//! a time (up to 512 values: a part of a long row, or whole short rows), and each row's
//! values are added to their columns' sums in `f64` (the first row sets them, so
//! nothing is zeroed per band) and to the band's sums and squares of differences from
//! its typical value, extremes and zero count, in 16 `f32` lanes down the piece and then
//! in `f64`; each cell's columns are added at the end, in order. Plain `f64` sums make a
//! one-element cell its value exactly, as in the general kernel, and a constant cell
//! too. A NaN or an Inf (or values whose `f32` squares overflow) makes the band's sums
//! non-finite: the band is then redone by the general kernel.

use super::{typical, Acc, Band, Geometry};
use crate::config::Reduction;
use crate::dtype::{decode, Dtype, CHUNK};
use multiversion::multiversion;

/// Lanes of the band's totals: one AVX-512 register of `f32`.
const L: usize = 16;

/// The columns' sums (for `mean`) or extremes down a band's rows.
#[derive(Default)]
pub(super) struct Columns {
    sum: Vec<f64>,
    min: Vec<f32>,
    max: Vec<f32>,
}

/// The band's running totals, lane by lane.
struct Totals {
    s1: [f64; L],
    s2: [f64; L],
    min: [f32; L],
    max: [f32; L],
    zeros: u64,
}

/// Reduces one band (`rows × cols` elements of `dtype` in `data`) into `band`'s cells
/// when this kernel applies (cells narrower than 4 columns, see the module docs).
/// Returns the band's summary, or `None` when the kernel does not apply or the band
/// holds a NaN or an Inf; the band is then in an unspecified state.
pub(super) fn band(
    data: &[u8],
    dtype: Dtype,
    rows: usize,
    geom: &Geometry,
    reduction: Reduction,
    band: &mut Band,
) -> Option<Acc> {
    if geom.bw >= 4 || !matches!(dtype, Dtype::BF16 | Dtype::F16 | Dtype::F32 | Dtype::F8E4M3) {
        return None;
    }
    let extremes = match reduction {
        Reduction::Mean => false,
        Reduction::Max | Reduction::Min | Reduction::AbsMax => true,
        _ => return None,
    };
    let b = typical(data, dtype, Some(geom.cols))?;
    ready(band, rows, geom, dtype, extremes);
    run(data, dtype, geom, extremes, b, band)
}

/// Readies `band` for this kernel, which writes every cell's sum (`mean`) or extremes
/// (`extremes`, the other reductions) and nothing else: a full reset when the band's
/// height changes, as for the other fast kernels, and otherwise only, for F32 `mean`,
/// whose values add the cells' shifts, shifts of 0 (see [`super::keeps_extras`]). (Refilling
/// every cell's sums, shifts and extremes per band, as `reset_for_fast` does, took ~10%
/// of F32 `mean` in bands of two rows.)
fn ready(band: &mut Band, rows: usize, geom: &Geometry, dtype: Dtype, extremes: bool) {
    if !band.reset_for_height(rows, geom) && dtype == Dtype::F32 && !extremes {
        band.clean_extras();
    }
    band.extras_clean &= !extremes;
}

/// [`band`] once it applies, compiled for the CPU's vector units.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn run(
    data: &[u8],
    dtype: Dtype,
    geom: &Geometry,
    extremes: bool,
    b: f32,
    band: &mut Band,
) -> Option<Acc> {
    let c = &mut band.narrow;
    let acc = if extremes {
        columns::<true>(data, dtype, geom.cols, b, c)
    } else {
        columns::<false>(data, dtype, geom.cols, b, c)
    }?;
    if !extremes {
        match geom.bw {
            1 => cells::<1>(&c.sum, &mut band.s1),
            2 => cells::<2>(&c.sum, &mut band.s1),
            _ => cells::<3>(&c.sum, &mut band.s1),
        }
    } else {
        for (m, cells) in band.min.iter_mut().zip(c.min.chunks(geom.bw)) {
            *m = cells.iter().fold(f32::INFINITY, |a, &v| smaller(a, v));
        }
        for (m, cells) in band.max.iter_mut().zip(c.max.chunks(geom.bw)) {
            *m = cells.iter().fold(f32::NEG_INFINITY, |a, &v| larger(a, v));
        }
    }
    Some(acc)
}

/// Adds the band's rows into its columns' sums (`EXTREMES`: extremes) in `c` and
/// returns the band's summary, or `None` if it holds a NaN or an Inf (or values whose
/// `f32` squares overflow).
#[inline(always)]
fn columns<const EXTREMES: bool>(
    data: &[u8],
    dtype: Dtype,
    cols: usize,
    b: f32,
    c: &mut Columns,
) -> Option<Acc> {
    let size = dtype.size();
    if EXTREMES {
        c.min.resize(cols, 0.0);
        c.max.resize(cols, 0.0);
    } else {
        c.sum.resize(cols, 0.0);
    }
    let mut t = Totals {
        s1: [0.0; L],
        s2: [0.0; L],
        min: [f32::INFINITY; L],
        max: [f32::NEG_INFINITY; L],
        zeros: 0,
    };
    let mut buf = [0f32; CHUNK];
    if cols <= CHUNK {
        // Pieces of whole rows, so that a row of a few columns does not take a piece
        // (and a flush of the lanes) of its own.
        let rows = CHUNK / cols;
        for (p, piece) in data.chunks(rows * cols * size).enumerate() {
            let xs = decoded(dtype, piece, &mut buf);
            for (r, row) in xs.chunks_exact(cols).enumerate() {
                if p == 0 && r == 0 {
                    column::<true, EXTREMES>(row, 0, c);
                } else {
                    column::<false, EXTREMES>(row, 0, c);
                }
            }
            lanes(xs, b, &mut t);
        }
    } else {
        for (r, row) in data.chunks_exact(cols * size).enumerate() {
            for (k, piece) in row.chunks(CHUNK * size).enumerate() {
                let xs = decoded(dtype, piece, &mut buf);
                if r == 0 {
                    column::<true, EXTREMES>(xs, k * CHUNK, c);
                } else {
                    column::<false, EXTREMES>(xs, k * CHUNK, c);
                }
                lanes(xs, b, &mut t);
            }
        }
    }
    let s1: f64 = t.s1.iter().sum();
    let s2: f64 = t.s2.iter().sum();
    (s1.is_finite() && s2.is_finite()).then(|| Acc {
        n: (data.len() / size) as u64,
        shift: b,
        s1,
        s2,
        squares: s2,
        min: t.min.iter().fold(f32::INFINITY, |a, &v| smaller(a, v)),
        max: t.max.iter().fold(f32::NEG_INFINITY, |a, &v| larger(a, v)),
        nan: 0,
        inf: 0,
        zeros: t.zeros,
    })
}

/// The values of `piece` (at most [`CHUNK`] elements of `dtype`), decoded into `buf`.
#[inline(always)]
fn decoded<'a>(dtype: Dtype, piece: &[u8], buf: &'a mut [f32; CHUNK]) -> &'a [f32] {
    let xs = &mut buf[..piece.len() / dtype.size()];
    decode(dtype, piece, xs);
    xs
}

/// `v` if it is below `a`, else `a` (of -0 and +0, the one seen first: as the other
/// kernels keep them).
#[inline(always)]
fn smaller(a: f32, v: f32) -> f32 {
    if v < a {
        v
    } else {
        a
    }
}

/// `v` if it is above `a`, else `a`.
#[inline(always)]
fn larger(a: f32, v: f32) -> f32 {
    if v > a {
        v
    } else {
        a
    }
}

/// Adds the values `xs` of columns `at..` of one row to those columns' sums
/// (`EXTREMES`: extremes; `FIRST`: sets them).
#[inline(always)]
fn column<const FIRST: bool, const EXTREMES: bool>(xs: &[f32], at: usize, c: &mut Columns) {
    let at = at..at + xs.len();
    if EXTREMES {
        let (min, max) = (&mut c.min[at.clone()], &mut c.max[at]);
        for ((&x, lo), hi) in xs.iter().zip(min).zip(max) {
            *lo = if FIRST { x } else { smaller(*lo, x) };
            *hi = if FIRST { x } else { larger(*hi, x) };
        }
    } else {
        for (s, &x) in c.sum[at].iter_mut().zip(xs) {
            // (`0.0 +`: a cell of -0 comes out +0, as from the other kernels' sums.)
            *s = if FIRST { 0.0 } else { *s } + f64::from(x);
        }
    }
}

/// Adds the values `xs` (at most [`CHUNK`]) to the band's totals: in `f32` lanes down
/// the piece (at most 32 values each, as in the other kernels), then in `f64`.
#[inline(always)]
fn lanes(xs: &[f32], b: f32, t: &mut Totals) {
    let (mut s1, mut s2) = ([0f32; L], [0f32; L]);
    let (mut lo, mut hi) = (t.min, t.max);
    let mut zeros = [0u32; L];
    let mut whole = xs.chunks_exact(L);
    for x in &mut whole {
        for k in 0..L {
            let d = x[k] - b;
            s1[k] += d;
            s2[k] += d * d;
            zeros[k] += u32::from(x[k] == 0.0);
            lo[k] = smaller(lo[k], x[k]);
            hi[k] = larger(hi[k], x[k]);
        }
    }
    for (k, &x) in whole.remainder().iter().enumerate() {
        let d = x - b;
        s1[k] += d;
        s2[k] += d * d;
        zeros[k] += u32::from(x == 0.0);
        lo[k] = smaller(lo[k], x);
        hi[k] = larger(hi[k], x);
    }
    for k in 0..L {
        t.s1[k] += f64::from(s1[k]);
        t.s2[k] += f64::from(s2[k]);
        t.zeros += u64::from(zeros[k]);
    }
    (t.min, t.max) = (lo, hi);
}

/// Each cell's sum of its `BW` columns' sums `cols` (the last cell's maybe fewer).
#[inline(always)]
fn cells<const BW: usize>(cols: &[f64], out: &mut [f64]) {
    let mut whole = cols.chunks_exact(BW);
    for (o, c) in out.iter_mut().zip(&mut whole) {
        *o = c.iter().sum();
    }
    let last = whole.remainder();
    if !last.is_empty() {
        out[cols.len() / BW] = last.iter().sum();
    }
}
