//! Streaming block aggregation into a grid, and full-data statistics from the same pass.
//!
//! Each grid row is one task: its source rows are decoded a short run at a time into an
//! L1-sized scratch buffer and folded into one accumulator per cell, so memory is one
//! grid plus one row of accumulators per thread, whatever the tensor's size. Sums are
//! kept relative to the cell's first finite value (`shift`), in eight `f32` lanes over at
//! most 64 elements and then in `f64`, which keeps a cell's mean within ~1e-6 of a
//! float64 reference while the inner loop still vectorises. Grid rows are merged in
//! order, so results do not depend on the thread count.

use rayon::prelude::*;

use crate::config::Reduction;
use crate::dtype::{decode, Dtype, CHUNK};
use crate::view::Geometry;

const LANES: usize = 8;
/// Elements folded in `f32` before the partial sums move to `f64`.
const BLOCK: usize = 64;

/// Running aggregate of a set of values: counts, shifted sums, extremes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acc {
    /// Number of finite values.
    pub n: u64,
    /// The first finite value seen; sums are of `x - shift`.
    shift: f32,
    s1: f64,
    s2: f64,
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
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            nan: 0,
            inf: 0,
            zeros: 0,
        }
    }
}

/// Per-lane partial sums for one short run of values.
struct Lanes {
    s1: [f32; LANES],
    s2: [f32; LANES],
    n: [u32; LANES],
    min: [f32; LANES],
    max: [f32; LANES],
    nan: [u32; LANES],
    inf: [u32; LANES],
    zeros: [u32; LANES],
}

impl Lanes {
    fn new() -> Self {
        Lanes {
            s1: [0.0; LANES],
            s2: [0.0; LANES],
            n: [0; LANES],
            min: [f32::INFINITY; LANES],
            max: [f32::NEG_INFINITY; LANES],
            nan: [0; LANES],
            inf: [0; LANES],
            zeros: [0; LANES],
        }
    }

    #[inline(always)]
    fn step(&mut self, k: usize, x: f32, shift: f32) {
        let finite = x.is_finite();
        let d = if finite { x - shift } else { 0.0 };
        self.s1[k] += d;
        self.s2[k] += d * d;
        self.n[k] += u32::from(finite);
        self.min[k] = if finite && x < self.min[k] {
            x
        } else {
            self.min[k]
        };
        self.max[k] = if finite && x > self.max[k] {
            x
        } else {
            self.max[k]
        };
        self.nan[k] += u32::from(x.is_nan());
        self.inf[k] += u32::from(x.is_infinite());
        self.zeros[k] += u32::from(x == 0.0);
    }
}

impl Acc {
    /// Folds a run of values into the aggregate.
    pub fn push(&mut self, mut xs: &[f32]) {
        if self.n == 0 {
            let first = xs.iter().position(|x| x.is_finite()).unwrap_or(xs.len());
            for &x in &xs[..first] {
                self.nan += u64::from(x.is_nan());
                self.inf += u64::from(x.is_infinite());
            }
            let Some(&f) = xs.get(first) else { return };
            self.shift = f;
            xs = &xs[first..];
        }
        for block in xs.chunks(BLOCK) {
            self.push_block(block);
        }
    }

    fn push_block(&mut self, xs: &[f32]) {
        let shift = self.shift;
        let mut l = Lanes::new();
        let chunks = xs.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for (k, &x) in c.iter().enumerate() {
                l.step(k, x, shift);
            }
        }
        for (k, &x) in rest.iter().enumerate() {
            l.step(k, x, shift);
        }
        for k in 0..LANES {
            self.s1 += f64::from(l.s1[k]);
            self.s2 += f64::from(l.s2[k]);
            self.n += u64::from(l.n[k]);
            self.min = self.min.min(l.min[k]);
            self.max = self.max.max(l.max[k]);
            self.nan += u64::from(l.nan[k]);
            self.inf += u64::from(l.inf[k]);
            self.zeros += u64::from(l.zeros[k]);
        }
    }

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

    /// The reduced value of this cell; NaN when it has no finite member.
    pub fn value(&self, r: Reduction) -> f32 {
        if self.n == 0 {
            return f32::NAN;
        }
        match r {
            Reduction::Mean => self.mean() as f32,
            Reduction::Rms => {
                let n = self.n as f64;
                let s = f64::from(self.shift);
                (self.s2 / n + 2.0 * s * self.s1 / n + s * s)
                    .max(0.0)
                    .sqrt() as f32
            }
            Reduction::AbsMax => self.max.abs().max(self.min.abs()),
            Reduction::Max => self.max,
            Reduction::Min => self.min,
            Reduction::Std => self.variance().sqrt() as f32,
            Reduction::Sample => self.shift,
        }
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
}

/// Aggregates the `rows × cols` elements of `dtype` in `data` over `geom`'s blocks.
///
/// # Panics
/// If `data.len()` is not `rows × cols × dtype.size()` (validated headers guarantee it).
pub fn reduce(data: &[u8], dtype: Dtype, geom: &Geometry, reduction: Reduction) -> Reduced {
    let size = dtype.size();
    let row_bytes = geom.cols * size;
    assert_eq!(data.len(), geom.rows * row_bytes, "tensor data length");
    let gw = geom.grid_w();
    let mut grid = vec![0f32; geom.grid_h() * gw];
    let row_accs: Vec<Acc> = grid
        .par_chunks_mut(gw)
        .enumerate()
        .map(|(i, out)| {
            let mut accs = vec![Acc::default(); gw];
            let mut scratch = [0f32; CHUNK];
            for r in geom.row_range(i) {
                let row = &data[r * row_bytes..(r + 1) * row_bytes];
                push_row(row, dtype, geom.bw, &mut accs, &mut scratch);
            }
            let mut total = Acc::default();
            for (o, a) in out.iter_mut().zip(&accs) {
                *o = a.value(reduction);
                total.merge(a);
            }
            total
        })
        .collect();
    let mut total = Acc::default();
    for a in &row_accs {
        total.merge(a);
    }
    Reduced {
        grid,
        stats: total.stats(),
    }
}

/// Decodes one source row a run at a time and folds each run into its cells.
fn push_row(row: &[u8], dtype: Dtype, bw: usize, accs: &mut [Acc], scratch: &mut [f32; CHUNK]) {
    let size = dtype.size();
    let cols = row.len() / size;
    let mut c = 0;
    while c < cols {
        let end = (c + CHUNK).min(cols);
        let buf = &mut scratch[..end - c];
        decode(dtype, &row[c * size..end * size], buf);
        let mut k = c;
        while k < end {
            let j = k / bw;
            let cell_end = ((j + 1) * bw).min(end);
            accs[j].push(&buf[k - c..cell_end - c]);
            k = cell_end;
        }
        c = end;
    }
}
