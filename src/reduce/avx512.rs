//! The AVX-512 kernel for the common case: a band of BF16, F16, F32 or F8_E4M3 data
//! (FP8 with or without block scales) with no NaN or Inf, reduced by `mean`, `max`, `min`
//! or `absmax`.
//!
//! It reads the band's bytes straight into registers, 64 bytes of a row at a time, and
//! runs down up to [`GROUP`] rows of that column chunk with every accumulator in a
//! register: per-lane plain sums for the cells (or their extremes) and, for the tensor's
//! statistics, sums of `(x - b)²` around one typical value `b` of the band (and of
//! `x - b`, unless the cells' sums give it), or for `mean` of F8 plain squares re-based
//! onto `b` at the end (with FP8 scales, over at least [`SCALED_MEAN_ROWS`] rows, each
//! lane's sums and squares scaled once per chunk), the band's extremes (on the codes, for
//! `mean` of BF16, F16 and F8; for `mean` of FP8 with scales, on each lane's codes,
//! decoded and scaled once per chunk) and zero count. Each decoded vector costs two to
//! five instructions and nothing is stored per element, which keeps the loop close to the
//! speed at which memory delivers the bytes. NaN and Inf are not looked for: they make the
//! sum of squares (or a cell's sum) non-finite, and such a band (like one whose `f32` sums
//! overflow) is reported back and redone by the general kernel. (F8 `mean` reads NaN
//! codes as numbers, and finds them among the band's or its lanes' largest codes.)

use std::arch::x86_64::*;

use super::prefetch::Prefetch;
use super::{
    code_extremes, column_scales, rebase_plain, scale_at, typical, Acc, Band, Scale, ScaleCache,
};
use crate::config::Reduction;
use crate::dtype::{decode_one, Dtype};

/// Rows whose per-lane `f32` sums are kept before they are added to the cells: at most
/// 64 values per lane, like the general kernel, so a cell stays within 1e-5 of f64.
const GROUP: usize = 32;
/// Bytes of one row read at once (one register).
const CHUNK: usize = 64;
/// Chunks ahead of the current one that are prefetched in each row, counted in the order
/// the group visits its chunks: past the group's last chunk, they are the first chunks of
/// the same row of the next group, so that each group starts on bytes already on their
/// way (at a band's end, those of the next band, which the same worker usually takes
/// next; a prefetch never faults, whatever the address). At least this many...
const AHEAD: usize = 4;
/// ... and at least as many as make this many rows' chunks of work: a group of 4 rows
/// (4 × 4 and 4 × 14 cells, with default options, of 4096-row tensors) does in 4 chunks
/// too little to cover memory's latency. 16 chunks there, not 4: 5% and 7% less time to
/// reduce F8 4096² and 4096 × 14336 tensors, alternating in one process; no change for
/// groups of 14 or more rows.
const AHEAD_ROWS: usize = 64;
/// Rows from which a band of FP8 with scales, for `mean`, redone with differences from
/// `b` (its plain squares would cancel), keeps its lanes' largest codes rather than its
/// extremes (see `LANE_CODES` in the kernel): finding the extremes from
/// them costs ~50 operations a chunk of rows, against six a row saved. (Criterion, 4096²
/// with 128 × 128 scales, two alternating pairs: bands of 16 rows 9.2–9.8 → 10.0–11.4
/// GiB/s; bands of 4 rows went 5.5 → 5.0 when they kept codes too, and a run-time choice
/// inside one kernel cost both.)
const LANE_CODE_ROWS: usize = 16;
/// Rows from which a band of FP8 with scales, for `mean` (summed as unscaled `mean` is,
/// each lane's sums and squares scaled once per chunk), takes its extremes from its
/// lanes' largest codes; shorter bands scale each decoded vector for them. The codes'
/// ~50 operations a chunk cost more than they save in bands of 2 rows (a DeepSeek-style
/// model of 2048 × 7168 experts with default options, CLI: 138–143 → 143–150 ms), and
/// less from 4 (criterion, 4096² with 128 × 128 scales: 5.3 → 6.7 GiB/s in bands of 4
/// rows, 11.8 → 15.6 in bands of 16).
const SCALED_MEAN_ROWS: usize = 4;
/// Bytes of a memory page.
const PAGE: usize = 4096;
/// `vrangeps` as the minimum and maximum with -0 below +0 (`vminps` and `vmaxps` return
/// their second operand for two zeros, so the band's extremes would take the sign of the
/// zero seen last, and the order of a rotated band's chunks depends on the data's address).
/// Bits 1:0 pick the minimum or maximum, bits 3:2 = 01 keep the picked value's sign (00
/// would give it the first operand's).
const MIN0: i32 = 0b0100;
const MAX0: i32 = 0b0101;
/// Most `f64` slots for a band's sums of squares (and differences): one per chunk of a
/// row up to this many chunks (64 KiB), one per run of chunks in longer rows.
const SLOTS: usize = 1024;

/// How a dtype sits in a 64-byte chunk (a const parameter, so each kernel is compiled
/// for one).
type Kind = u8;
/// Two bytes, decoded as even and odd columns (`u32` words split in two).
const BF16: Kind = 0;
/// Two bytes, converted in two halves of 16 columns.
const F16: Kind = 1;
/// Four bytes, 16 columns.
const F32: Kind = 2;
/// One byte, looked up as BF16 and split like it: 64 columns in four vectors, which hold
/// them in the unpack order ([`unpacked`]: the looked-up bytes are paired into BF16 words
/// by unpacking, one cycle each, not a two-cycle byte permute); lane scales are laid out
/// the same way, and [`to_layout`] puts the cells' sums and extremes in [`layout`]'s order
/// once per chunk and group, for folding.
const E4M3: Kind = 3;
/// [`E4M3`] for `mean` without scales: the high bytes are looked up from the code's six
/// top bits (a one-register lookup: one cycle, not the two of a 128-entry one) with its
/// sign, zeros masked off (see [`e4m3_high`]); NaN codes decode as numbers there, and
/// are caught on the band's code extremes instead. Its vectors are in [`E4M3`]'s unpack
/// order too, and whole chunks of cells 4, 6, 10, 12 or 14 columns wide or a multiple of
/// 8 fold straight from it ([`fold_fours`], [`fold_pairs`], [`fold_eights`]); the band's
/// extremes are found on the codes, and the squares are plain, `x²` not `(x - b)²` (one
/// operation fewer per 16 values: F8 is bound by the kernel's instructions more than by
/// memory), re-based onto `b` at the end (see [`super::PLAIN_LIMIT`]).
const E4M3_MEAN: Kind = 4;

/// The kernel's kind for `dtype`, if it takes it.
fn kind_of(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::BF16 => Some(BF16),
        Dtype::F16 => Some(F16),
        Dtype::F32 => Some(F32),
        Dtype::F8E4M3 => Some(E4M3),
        _ => None,
    }
}

/// Whether this kernel runs for `dtype` and `reduction` on this CPU: it is compiled for
/// them, the CPU has the features and `TENSORHEAT_NO_AVX512` is not set (set to any
/// value, it sends these bands to the kernel CPUs without AVX-512 run, to measure or test
/// it there).
pub(super) fn runs(dtype: Dtype, reduction: Reduction) -> bool {
    static DISABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let disabled = *DISABLED.get_or_init(|| std::env::var_os("TENSORHEAT_NO_AVX512").is_some());
    !disabled && keeps_extremes(reduction).is_some() && kind_of(dtype).is_some_and(available)
}

/// Whether the kernel's cells keep extremes (`max`, `min`, `absmax`) or sums (`mean`);
/// `None` for the reductions it does not take.
fn keeps_extremes(reduction: Reduction) -> Option<bool> {
    match reduction {
        Reduction::Mean => Some(false),
        Reduction::Max | Reduction::Min | Reduction::AbsMax => Some(true),
        _ => None,
    }
}

/// Whether this CPU has every feature the kernel for `kind` is compiled with.
fn available(kind: Kind) -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("fma")
        && (kind < E4M3 || is_x86_feature_detected!("avx512vbmi"))
}

/// Whether unscaled F8_E4M3 `mean` takes [`pair_dots`]: on AMD CPUs with AVX512_BF16
/// (Zen 4 on), where `vdpbf16ps` measured cheap enough (2 GiB F8 model at `--max-size
/// 256`, both cores: 0.71–0.73 → 0.74–0.80 of the read ceiling). On Intel's Xeons it
/// holds a port for two cycles (four FMAs' worth) and measured slower, 0.61–0.63
/// against 0.67–0.68.
fn dots_available() -> bool {
    super::cpu::is_amd() && is_x86_feature_detected!("avx512bf16")
}

/// Reduces one band (`rows × cols` elements of `dtype` in `data`, cells `bw` columns
/// wide) into `band`, which must be freshly reset. Returns the band's summary, or `None`
/// when this kernel does not apply (dtype, reduction, CPU) or the band holds a NaN, an
/// Inf or values whose `f32` sums overflow; the band is then in an unspecified state.
pub(super) fn band(
    data: &[u8],
    dtype: Dtype,
    cols: usize,
    bw: usize,
    reduction: Reduction,
    scales: Option<&mut Scales<'_>>,
    band: &mut Band,
) -> Option<Acc> {
    let kind = kind_of(dtype)?;
    if scales.is_some() && kind != E4M3 {
        return None;
    }
    let extremes = keeps_extremes(reduction)?;
    if !available(kind) {
        return None;
    }
    let b = typical(data, dtype, scales.is_none().then_some(cols))?;
    // With FP8 scales, in the units of the dequantised values.
    let b = scales.as_ref().map_or(b, |s| b * s.first());
    // SAFETY: `available` checked every feature `run` is compiled with.
    let s = unsafe {
        match (kind, extremes, scales) {
            (BF16, false, _) if band.one_signed => {
                run::<BF16, false, false, false, true>(data, cols, bw, b, None, band)
            }
            (BF16, false, _) => {
                run::<BF16, false, false, false, false>(data, cols, bw, b, None, band)
            }
            (BF16, true, _) => {
                run::<BF16, true, false, false, false>(data, cols, bw, b, None, band)
            }
            (F16, false, _) if band.one_signed => {
                run::<F16, false, false, false, true>(data, cols, bw, b, None, band)
            }
            (F16, false, _) => {
                run::<F16, false, false, false, false>(data, cols, bw, b, None, band)
            }
            (F16, true, _) => run::<F16, true, false, false, false>(data, cols, bw, b, None, band),
            (F32, false, _) => {
                run::<F32, false, false, false, false>(data, cols, bw, b, None, band)
            }
            (F32, true, _) => run::<F32, true, false, false, false>(data, cols, bw, b, None, band),
            (_, false, None) => {
                let t = if bw.is_multiple_of(2) && dots_available() {
                    // SAFETY: `dots_available` checked the one feature more `run_dots` has.
                    run_dots::<E4M3_MEAN, false, false, false, false>(data, cols, bw, b, None, band)
                } else {
                    run_vbmi::<E4M3_MEAN, false, false, false, false>(data, cols, bw, b, None, band)
                };
                match t {
                    t if t.cancels => {
                        // Only the cells' sums were written (and the slots, which start over).
                        band.s1.fill(0.0);
                        run_vbmi::<E4M3, false, false, false, false>(data, cols, bw, b, None, band)
                    }
                    t => t,
                }
            }
            (_, true, None) => {
                run_vbmi::<E4M3, true, false, false, false>(data, cols, bw, b, None, band)
            }
            (_, false, Some(s)) => {
                let rows = data.len() / cols;
                let first = Some(&mut *s);
                let t = if rows >= SCALED_MEAN_ROWS {
                    run_vbmi::<E4M3_MEAN, false, true, true, false>(data, cols, bw, b, first, band)
                } else {
                    run_vbmi::<E4M3_MEAN, false, true, false, false>(data, cols, bw, b, first, band)
                };
                if t.cancels {
                    // (As unscaled: only the cells' sums were written.)
                    band.s1.fill(0.0);
                    if rows >= LANE_CODE_ROWS {
                        run_vbmi::<E4M3, false, true, true, false>(data, cols, bw, b, Some(s), band)
                    } else {
                        run_vbmi::<E4M3, false, true, false, false>(
                            data,
                            cols,
                            bw,
                            b,
                            Some(s),
                            band,
                        )
                    }
                } else {
                    t
                }
            }
            (_, true, s) => run_vbmi::<E4M3, true, true, false, false>(data, cols, bw, b, s, band),
        }
    };
    if matches!(kind, BF16 | F16) && !extremes {
        band.one_signed = !(s.min < 0.0 && s.max > 0.0);
    }
    if kind == F32 && !extremes {
        // A constant cell is its value exactly.
        for j in 0..band.s1.len() {
            if band.min[j] == band.max[j] {
                (band.shift[j], band.s1[j]) = (band.min[j], 0.0);
            }
        }
    }
    let n = (data.len() / dtype.size()) as u64;
    (s.s2.is_finite() && s.s1.is_finite()).then_some(Acc {
        n,
        shift: b,
        s1: s.s1,
        s2: s.s2,
        squares: s.s2,
        min: s.min,
        max: s.max,
        nan: 0,
        inf: 0,
        zeros: s.zeros,
    })
}

/// FP8 block scales (`w = q · s[row / bh, col / bw]`) in the kernel's lane layout, one
/// scale row at a time; the layout is kept across bands (a band is often a few rows of a
/// 128-row scale block).
pub(super) struct Scales<'a> {
    scale: &'a Scale<'a>,
    /// The band's first row in the tensor.
    row0: usize,
    /// For each 64-column chunk, the scale of each lane of its four vectors, and the
    /// scale row they are for.
    lanes: ScaleCache,
}

impl<'a> Scales<'a> {
    /// Scales for the band starting at tensor row `row0`, reusing `lanes` if it holds the
    /// right scale row (give it back with [`Scales::into_lanes`]).
    pub(super) fn new(scale: &'a Scale<'a>, row0: usize, lanes: ScaleCache) -> Scales<'a> {
        Scales { scale, row0, lanes }
    }

    /// The lane layout, to keep for the next band.
    pub(super) fn into_lanes(self) -> ScaleCache {
        self.lanes
    }

    /// The scale of the band's first element.
    fn first(&self) -> f32 {
        scale_at(self.scale, self.row0 / self.scale.bh, 0)
    }

    /// Rows from band row `r` up to the next scale row.
    fn run(&self, r: usize) -> usize {
        let (t, bh) = (self.row0 + r, self.scale.bh);
        (t / bh + 1) * bh - t
    }

    /// The lane scales for band row `r`, or `None` when one of them is not a normal
    /// number above 2^-100 (zero, tiny, NaN or Inf scales would make zeros or
    /// non-finite values this kernel does not count; the general one does).
    fn lanes(&mut self, r: usize, cols: usize) -> Option<&[f32]> {
        let s = self.scale;
        let sr = (self.row0 + r) / s.bh;
        if self.lanes.index != Some(sr) {
            self.lanes.index = None;
            // Each column's scale, then rearranged into lanes chunk by chunk.
            let mut by_col = Vec::new();
            if !column_scales(&mut by_col, s, sr, cols, cols.next_multiple_of(64), 1.0) {
                return None;
            }
            let lanes = &mut self.lanes.row;
            lanes.clear();
            for chunk in by_col.chunks_exact(64) {
                for u in 0..4 {
                    lanes.extend((0..16).map(|m| chunk[unpacked(u, m)]));
                }
            }
            self.lanes.index = Some(sr);
        }
        Some(&self.lanes.row)
    }
}

/// The band's totals, as the kernel leaves them.
struct Totals {
    s1: f64,
    s2: f64,
    min: f32,
    max: f32,
    zeros: u64,
    /// The plain squares of [`E4M3_MEAN`] would cancel: redo the band with differences.
    cancels: bool,
}

/// Lanes of a chunk's vector `u`: its first column (from the chunk's start) and the
/// distance between the columns of consecutive lanes.
const fn layout(kind: Kind, u: usize) -> (usize, usize) {
    match kind {
        BF16 => (u, 2),
        F16 => (16 * u, 1),
        F32 => (0, 1),
        _ => (32 * (u / 2) + u % 2, 2),
    }
}

/// The element (column from the chunk's start) that lane `m` of vector `u` of an F8 chunk
/// holds as both F8 kinds decode it, in the unpack order ([`to_layout`] puts the vectors
/// in [`layout`]'s).
const fn unpacked(u: usize, m: usize) -> usize {
    16 * (m / 4) + 2 * (m % 4) + (u & 1) + 8 * (u >> 1)
}

/// Columns in one 64-byte chunk and decoded vectors per chunk.
const fn shape(kind: Kind) -> (usize, usize) {
    match kind {
        BF16 | F16 => (32, 2),
        F32 => (16, 1),
        _ => (64, 4),
    }
}

/// Defines the kernel's per-band work (every chunk of every group of rows) as `$name`,
/// compiled with `$features` and decoding with `$decode`: once without AVX-512 VBMI for
/// the 2- and 4-byte types, once with it for F8_E4M3's table lookups, so that CPUs
/// without VBMI (Skylake-X, Cascade Lake) still run the first, and once more with
/// AVX512_BF16 as well, where `$dots` has unscaled [`E4M3_MEAN`] take [`pair_dots`].
macro_rules! kernel {
    ($name:ident, $features:literal, $decode:ident, $dots:literal) => {
        #[target_feature(enable = $features)]
        fn $name<
            const KIND: Kind,
            const EXTREMES: bool,
            const SCALED: bool,
            const LANE_CODES: bool,
            const LANE_MIN: bool,
        >(
            data: &[u8],
            cols: usize,
            bw: usize,
            b: f32,
            mut scales: Option<&mut Scales<'_>>,
            band: &mut Band,
        ) -> Totals {
            let (chunk_cols, nvec) = const { shape(KIND) };
            // F32 cells also keep their extremes, so that a constant cell comes out exactly
            // (plain `f32` sums of its long-mantissa value would round).
            let exact = KIND == F32 && !EXTREMES;
            let size = CHUNK / chunk_cols;
            let row_bytes = cols * size;
            let rows = data.len() / row_bytes;
            let lut = E4m3Lut::new();
            let cells = Cells::new(KIND, bw);
            let pairs = if KIND == E4M3_MEAN {
                PairCells::of(bw)
            } else {
                None
            };
            let odd = if EXTREMES {
                None
            } else {
                OddCells::of(KIND, bw)
            };
            // Cells at least 16 columns wide ([`fold_wide`]; F8 `mean` cells a multiple of 8
            // or 4 × 5–15 wide take [`fold_eights`] and [`fold_odd`] first).
            let wide = bw >= 16 && KIND != F32;
            let mut t = Totals {
                s1: 0.0,
                s2: 0.0,
                min: f32::INFINITY,
                max: f32::NEG_INFINITY,
                zeros: 0,
                cancels: false,
            };
            // One pair of extremes per vector of a chunk: a single pair would chain
            // every vector's update behind the last one's latency.
            let mut mn = [_mm512_set1_ps(f32::INFINITY); 4];
            let mut mx = [_mm512_set1_ps(f32::NEG_INFINITY); 4];
            let shift = _mm512_set1_ps(b);
            // Zeroed when a row's last chunk first needs it: most rows are whole chunks,
            // and zeroing it on every call (once per band) was ~1.5% of an F8 render of
            // 4096-column tensors with default options (bands of 4 rows).
            let mut pad = None;
            // Squares of the differences from `b` (of the values, for [`E4M3_MEAN`]) summed
            // in `f32`, and zeros counted per lane, since the last move to `f64` (and
            // `u64`); at most `2 · GROUP` rows of chunks per lane, so the counters cannot
            // wrap.
            let mut d2 = [_mm512_setzero_ps(); 4];
            // The differences themselves, moved with the squares (with FP8 scales, after
            // each chunk: a lane then sums values of one scale).
            let mut d1 = [_mm512_setzero_ps(); 4];
            // For [`E4M3_MEAN`] with FP8 scales, outside rotated bands: the chunks' plain
            // squares, each scaled by its lanes' squared scales, since that move. (The rows
            // sum the codes' values unscaled: a lane is one column, and a group of rows
            // one scale row, so each lane's sums take its scale once per chunk.)
            let mut q2 = [_mm512_setzero_ps(); 4];
            // Bytes of the band's (or with `LANE_CODES`, the lanes') largest codes that are
            // NaN codes (0x7f, 0xff), which [`E4M3_MEAN`] decodes as numbers.
            let mut nan_codes = 0u64;
            let mut s1 = _mm512_setzero_pd();
            let mut s2 = _mm512_setzero_pd();
            let mut zc = _mm512_setzero_si512();
            // Rows of chunks since that move (in rotated bands, only the zeros wait for it).
            let mut pending = 0;
            // In bands of at least half a group of rows, a group's chunks are taken from
            // the first one at or after the page boundary in its first row, round to the
            // row's start. A row that starts mid-page, as in most files (the header's
            // length sets the data's place in its pages), visits each page in column
            // order in two runs, one of its tail and one of the next row's head, which
            // the hardware prefetchers follow badly; in this order rows whose length is a
            // multiple of a page (every LLM layer in BF16, 4096-wide ones in F8) sweep
            // each page once from its start. The first chunk begins a cell and a slot:
            // the squares (and differences) move to `f64` after each chunk, into its slot
            // in `band.slots`, and the slots are added in one fixed order at the end, so
            // results do not depend on where the data lies. (Moving them after each
            // chunk cost more than the order saved in bands of 4 rows, and for F32, whose
            // chunks hold 16 values and which moves the differences too: 0.78–0.83 of
            // the read ceiling in column order, 0.75–0.78 rotated.)
            let rotate = rows >= GROUP / 2 && KIND != F32;
            let nch = cols.div_ceil(chunk_cols);
            let per = nch.div_ceil(SLOTS);
            let slots = nch.div_ceil(per);
            let unit = lcm(bw / gcd(bw, chunk_cols), per);
            if rotate && band.slots.len() < 16 * slots {
                band.slots.resize(16 * slots, 0.0);
            }
            // All bits set, hidden from the compiler: seeing -1, it turns each masked
            // subtraction into a mask-to-vector move and a subtraction, one more operation
            // per chunk and row.
            let ones = std::hint::black_box(_mm512_set1_epi8(-1));
            // The band's extremes, for `mean`, from the codes: three integer operations per
            // chunk instead of two per decoded vector.
            let on_codes =
                (KIND == E4M3_MEAN && !SCALED) || (matches!(KIND, BF16 | F16) && !EXTREMES);
            // `LANE_CODES` (for `mean` of FP8 with scales): the band's extremes from each
            // lane's largest codes (signed and unsigned) over a chunk's rows, decoded and
            // scaled once per chunk, instead of two operations per decoded vector. A lane
            // that holds codes of both signs gives its largest and smallest value; one of
            // one sign gives one of them twice, still a value of the band. Scaled (by a
            // scale of either sign), they are values of the band among which are its largest
            // if that is above zero and its smallest if below; a band whose values are not
            // of both signs is redone.
            debug_assert!(!LANE_CODES || (SCALED && !EXTREMES));
            // For `mean` of 2-byte and unscaled 1-byte types, the band's plain sum is its
            // cells' (exact in `f32` for values within a few binades of each other, and
            // where they are not, the data is not far from zero for its spread), so the
            // differences need no sums of their own.
            let from_cells = !EXTREMES && (!SCALED || KIND == E4M3_MEAN) && KIND != F32;
            // Unscaled [`E4M3_MEAN`] rows by BF16 dot products ([`pair_dots`]): only where
            // a cell's columns are whole pairs.
            let dots = $dots && KIND == E4M3_MEAN && !SCALED;
            debug_assert!(!dots || bw.is_multiple_of(2));
            // Rows of chunks between moves to `f64`: with `dots` each lane takes two
            // squares a row, so half as many rows keep it at `2 · GROUP` squares.
            let most = if dots { GROUP } else { 2 * GROUP };
            // [`E4M3_MEAN`] finds NaN codes on the band's codes, except with `LANE_CODES`
            // (with scales, the band's codes serve only that).
            let nan_on_codes = KIND == E4M3_MEAN && !LANE_CODES;
            let codes = &mut CodeExtremes::new::<KIND>();
            let prefetch = Prefetch::get();
            let mut g0 = 0;
            while g0 < rows {
                // Groups end where the FP8 scale row changes.
                let g = match &scales {
                    Some(s) if SCALED => GROUP.min(rows - g0).min(s.run(g0)),
                    _ => GROUP.min(rows - g0),
                };
                let lane_scales = match scales.as_deref_mut() {
                    Some(s) if SCALED => match s.lanes(g0, cols) {
                        Some(l) => l,
                        None => {
                            t.s2 = f64::NAN;
                            return t;
                        }
                    },
                    _ => &[],
                };
                let split_at = |row0: usize| {
                    let to_page =
                        (PAGE - (data.as_ptr() as usize + row0 * row_bytes) % PAGE) % PAGE;
                    // (Past the row's last cell start, the next one is the row's first chunk.)
                    let first = to_page.div_ceil(CHUNK).div_ceil(unit) * unit;
                    if rotate && to_page < row_bytes && first < nch {
                        first
                    } else {
                        0
                    }
                };
                let split = split_at(g0);
                let split_next = split_at(g0 + g);
                let steps = prefetch.reach((AHEAD_ROWS / g).max(AHEAD));
                debug_assert!(split % per == 0 && split * chunk_cols % bw == 0);
                for k in 0..nch {
                    let c = if k + split < nch {
                        k + split
                    } else {
                        k + split - nch
                    };
                    let c0 = c * chunk_cols;
                    if pending + g > most {
                        if !rotate {
                            s2 = drain(s2, &mut d2[..nvec]);
                            s1 = drain(s1, &mut d1[..nvec]);
                            if KIND == E4M3_MEAN && SCALED {
                                s2 = drain(s2, &mut q2[..nvec]);
                            }
                        }
                        t.zeros += count::<KIND>(zc);
                        zc = _mm512_setzero_si512();
                        pending = 0;
                    }
                    pending += g;
                    let valid = chunk_cols.min(cols - c0);
                    // Lanes of each vector that hold columns of the tensor (for [`E4M3_MEAN`],
                    // of the vectors put back in [`E4M3`]'s layout: not of the decoded rows).
                    let masks: [__mmask16; 4] = if valid == chunk_cols {
                        [u16::MAX; 4]
                    } else {
                        span::<KIND>(0, valid)
                    };
                    // The same for the vectors as the rows decode them (F8 in the unpack
                    // order).
                    let row_masks: [__mmask16; 4] =
                        if valid == chunk_cols || !matches!(KIND, E4M3 | E4M3_MEAN) {
                            masks
                        } else {
                            std::array::from_fn(|u| {
                                (0..16)
                                    .filter(|&m| unpacked(u, m) < valid)
                                    .fold(0, |k, m| k | 1 << m)
                            })
                        };
                    // Elements of the chunk that are the tensor's (the rest is padding).
                    let elems = if valid == 64 {
                        u64::MAX
                    } else {
                        (1u64 << valid) - 1
                    };
                    // The cells' plain sums and extremes. (Plain `f32` sums over at most
                    // 64 values per lane stay within a few millionths of a cell's mean
                    // magnitude whatever it holds; differences from the band's typical
                    // value `b` would not, for a cell far smaller than `b`.)
                    let mut sum = [_mm512_setzero_ps(); 4];
                    let mut lo = [_mm512_set1_ps(f32::INFINITY); 4];
                    let mut hi = [_mm512_set1_ps(f32::NEG_INFINITY); 4];
                    let sv: [__m512; 4] = if SCALED {
                        let at = c0 / chunk_cols * 64;
                        std::array::from_fn(|u| load_ps(&lane_scales[at + 16 * u..]))
                    } else {
                        [_mm512_set1_ps(1.0); 4]
                    };
                    // For `LANE_CODES`, each lane's largest code as a signed and as an
                    // unsigned byte over the chunk's rows.
                    let mut lane = CodeExtremes::new::<KIND>();
                    let mut row = |raw: __m512i| {
                        // (For [`E4M3_MEAN`], the nonzero elements are counted: their mask
                        // also serves the decode.)
                        let nonzero;
                        (zc, nonzero) = count_zeros::<KIND>(zc, raw, elems, ones);
                        if on_codes || nan_on_codes {
                            codes.update::<KIND, LANE_MIN>(raw, elems);
                        }
                        if LANE_CODES {
                            lane.update::<KIND, false>(raw, elems);
                        }
                        if dots {
                            // SAFETY: `dots` holds only in the kernel compiled with every
                            // feature `pair_dots` is (where the call needs no `unsafe`).
                            #[allow(unused_unsafe)]
                            unsafe {
                                pair_dots(raw, nonzero, &lut, &mut sum, &mut d2)
                            };
                            return;
                        }
                        let v = $decode::<KIND>(raw, nonzero, &lut);
                        for u in 0..nvec {
                            let x = if SCALED && KIND != E4M3_MEAN {
                                _mm512_mul_ps(v[u], sv[u])
                            } else {
                                v[u]
                            };
                            let m = row_masks[u];
                            if EXTREMES || exact {
                                lo[u] = _mm512_min_ps(lo[u], x);
                                hi[u] = _mm512_max_ps(hi[u], x);
                            }
                            if !EXTREMES {
                                sum[u] = _mm512_add_ps(sum[u], x);
                            }
                            if KIND == E4M3_MEAN {
                                // (Padding lanes hold +0.)
                                d2[u] = _mm512_fmadd_ps(x, x, d2[u]);
                            } else {
                                let d = _mm512_maskz_sub_ps(m, x, shift);
                                if !from_cells {
                                    d1[u] = _mm512_add_ps(d1[u], d);
                                }
                                d2[u] = _mm512_fmadd_ps(d, d, d2[u]);
                            }
                            if !EXTREMES && !exact && !on_codes && !LANE_CODES {
                                // (Scaled here, for [`E4M3_MEAN`] with scales.)
                                let x = if SCALED && KIND == E4M3_MEAN {
                                    _mm512_mul_ps(x, sv[u])
                                } else {
                                    x
                                };
                                mn[u] = _mm512_mask_range_ps::<MIN0>(mn[u], m, mn[u], x);
                                mx[u] = _mm512_mask_range_ps::<MAX0>(mx[u], m, mx[u], x);
                            }
                        }
                    };
                    let start = g0 * row_bytes + c0 * size;
                    // The rows' 64 bytes in place, or (in the last chunk of a row) their
                    // tensor bytes copied into `pad`, zeros after them. (One loop calls
                    // `row`, so that it is inlined.)
                    let (mut p, stride) = if valid == chunk_cols {
                        // The last row's 64 bytes end at or before the end of its row.
                        assert!(start + (g - 1) * row_bytes + CHUNK <= data.len());
                        (data[start..].as_ptr(), row_bytes)
                    } else {
                        let n = valid * size;
                        let pad = pad.get_or_insert_with(|| [0u8; GROUP * CHUNK]);
                        for (r, dst) in pad.chunks_exact_mut(CHUNK).take(g).enumerate() {
                            let at = start + r * row_bytes;
                            dst[..n].copy_from_slice(&data[at..at + n]);
                        }
                        (pad.as_ptr(), CHUNK)
                    };
                    let mut q = if nch < steps {
                        data[start..].as_ptr().wrapping_add(steps * CHUNK)
                    } else {
                        let (row0, kk, sp) = if k + steps < nch {
                            (g0, k + steps, split)
                        } else {
                            (g0 + g, k + steps - nch, split_next)
                        };
                        let cc = if kk + sp < nch {
                            kk + sp
                        } else {
                            kk + sp - nch
                        };
                        data.as_ptr().wrapping_add(row0 * row_bytes + cc * CHUNK)
                    };
                    for _ in 0..g {
                        prefetch.line(q);
                        q = q.wrapping_add(row_bytes);
                        // SAFETY: the 64 bytes at `p` are inside `data` (asserted above)
                        // or inside `pad` (`GROUP` rows of 64 bytes); the load has no
                        // alignment requirement.
                        row(unsafe { _mm512_loadu_si512(p.cast()) });
                        p = p.wrapping_add(stride);
                    }
                    if KIND == E4M3_MEAN && SCALED {
                        for u in 0..nvec {
                            let q = _mm512_mul_ps(sv[u], sv[u]);
                            if rotate {
                                d2[u] = _mm512_mul_ps(d2[u], q);
                            } else {
                                q2[u] = _mm512_fmadd_ps(d2[u], q, q2[u]);
                                d2[u] = _mm512_setzero_ps();
                            }
                            sum[u] = _mm512_mul_ps(sum[u], sv[u]);
                        }
                        if LANE_CODES {
                            nan_codes |= lane.nan_codes();
                        }
                    }
                    if rotate {
                        let (at, add) = (8 * (c / per), g0 > 0 || c % per > 0);
                        let (sq, diff) = band.slots.split_at_mut(8 * slots);
                        add_to_slot(&mut sq[at..at + 8], to_f64(&mut d2, nvec), add);
                        if !from_cells {
                            add_to_slot(&mut diff[at..at + 8], to_f64(&mut d1, nvec), add);
                        }
                    } else if SCALED && !from_cells {
                        s1 = drain(s1, &mut d1[..nvec]);
                    }
                    if LANE_CODES {
                        // Each lane's values of those two codes, scaled (the band's signs are
                        // checked at the end).
                        let (sm, um) = (
                            $decode::<E4M3>(lane.signed_max, 0, &lut),
                            $decode::<E4M3>(lane.unsigned_max, 0, &lut),
                        );
                        for k in 0..nvec {
                            let a = _mm512_mul_ps(sm[k], sv[k]);
                            let b = _mm512_mul_ps(um[k], sv[k]);
                            let m = row_masks[k];
                            mn[k] = _mm512_mask_range_ps::<MIN0>(
                                mn[k],
                                m,
                                mn[k],
                                _mm512_range_ps::<MIN0>(a, b),
                            );
                            mx[k] = _mm512_mask_range_ps::<MAX0>(
                                mx[k],
                                m,
                                mx[k],
                                _mm512_range_ps::<MAX0>(a, b),
                            );
                        }
                    }
                    if exact {
                        // The band's extremes from the cells' (padding lanes masked).
                        for u in 0..nvec {
                            mn[u] = _mm512_mask_range_ps::<MIN0>(mn[u], masks[u], mn[u], lo[u]);
                            mx[u] = _mm512_mask_range_ps::<MAX0>(mx[u], masks[u], mx[u], hi[u]);
                        }
                    }
                    let sums = KIND == E4M3_MEAN || (matches!(KIND, BF16 | F16) && !EXTREMES);
                    if sums && bw == 4 && valid == chunk_cols {
                        fold_fours::<KIND, SCALED, LANE_CODES>(c0 / 4, &sum, band);
                    } else if KIND == E4M3_MEAN && bw % 8 == 0 && valid == chunk_cols {
                        fold_eights::<KIND, SCALED, LANE_CODES>(c0, bw, &sum, band);
                    } else if let Some(p) = pairs.filter(|_| valid == chunk_cols) {
                        fold_pairs::<KIND, SCALED, LANE_CODES>(c0, p, &sum, band);
                    } else if let Some(o) = odd.filter(|_| valid == chunk_cols) {
                        fold_odd::<KIND, SCALED, LANE_CODES>(c0, o, &sum, band);
                    } else if wide && valid == chunk_cols {
                        let mut fold_at = |col0, s: &[__m512; 4], l: &[__m512; 4], h: &[_; 4]| {
                            if EXTREMES {
                                fold_wide::<KIND, MIN, SCALED, LANE_CODES>(col0, bw, l, band);
                                fold_wide::<KIND, MAX, SCALED, LANE_CODES>(col0, bw, h, band);
                            } else {
                                fold_wide::<KIND, ADD, SCALED, LANE_CODES>(col0, bw, s, band);
                            }
                        };
                        if matches!(KIND, E4M3 | E4M3_MEAN) {
                            // In E4M3's layout an F8 chunk is two of 32 columns, each laid
                            // out as a BF16 chunk.
                            let z = _mm512_setzero_ps();
                            let [s, l, h] = [sum, lo, hi].map(|v| to_layout(v));
                            let half = |v: [__m512; 4], k: usize| [v[2 * k], v[2 * k + 1], z, z];
                            fold_at(c0, &half(s, 0), &half(l, 0), &half(h, 0));
                            fold_at(c0 + 32, &half(s, 1), &half(l, 1), &half(h, 1));
                        } else {
                            fold_at(c0, &sum, &lo, &hi);
                        }
                    } else {
                        if matches!(KIND, E4M3 | E4M3_MEAN) {
                            sum = to_layout(sum);
                        }
                        if KIND == E4M3 && EXTREMES {
                            (lo, hi) = (to_layout(lo), to_layout(hi));
                        }
                        if EXTREMES || exact {
                            fold::<KIND, true, LANE_MIN>(c0, cells, &masks, &lo, &hi, band);
                        }
                        if !EXTREMES {
                            fold::<KIND, false, LANE_MIN>(c0, cells, &masks, &sum, &hi, band);
                        }
                    }
                }
                g0 += g;
            }
            t.zeros += count::<KIND>(zc);
            if KIND == E4M3_MEAN {
                // Those were the nonzero elements.
                t.zeros = (rows * cols) as u64 - t.zeros;
            }
            if rotate {
                let (sq, diff) = band.slots[..16 * slots].split_at(8 * slots);
                // The slots in a fixed order: `total`'s four chains of eight lanes.
                t.s2 = total(sq);
                if !from_cells {
                    t.s1 = total(diff);
                }
            } else {
                if KIND == E4M3_MEAN && SCALED {
                    s2 = drain(s2, &mut q2[..nvec]);
                }
                t.s2 = _mm512_reduce_add_pd(drain(s2, &mut d2[..nvec]));
                t.s1 = _mm512_reduce_add_pd(drain(s1, &mut d1[..nvec]));
            }
            // Cells hold plain sums. Those of values near the ends of the f32 range can
            // overflow where the differences from `b` do not (a constant cell of -2^127, a
            // fuzz finding): then their total is not finite either, and the band is
            // redone. (Without an early exit, so that the check vectorises.)
            if !EXTREMES && !from_cells && !band.s1.iter().fold(true, |ok, v| ok & v.is_finite()) {
                t.s1 = f64::NAN;
            }
            if from_cells {
                // The cells' plain sums, re-based onto `b`.
                t.s1 = total(&band.s1) - (rows * cols) as f64 * f64::from(b);
            }
            if KIND == E4M3_MEAN {
                // Plain squares, re-based onto `b`.
                let (n, b) = ((rows * cols) as f64, f64::from(b));
                (t.s2, t.cancels) = rebase_plain(t.s2, t.s1 + n * b, n, b);
            }
            if nan_on_codes {
                nan_codes |= codes.nan_codes();
            }
            if on_codes {
                (t.min, t.max) = codes.extremes::<KIND, LANE_MIN>(&data[..rows * row_bytes]);
            } else if EXTREMES {
                t.min = band.min.iter().fold(f32::INFINITY, |a, &v| a.min(v));
                t.max = band.max.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            } else {
                let (lo, hi) = (mn[1..].iter(), mx[1..].iter());
                t.min = _mm512_reduce_min_ps(lo.fold(mn[0], |a, &v| _mm512_min_ps(a, v)));
                t.max = _mm512_reduce_max_ps(hi.fold(mx[0], |a, &v| _mm512_max_ps(a, v)));
                if LANE_CODES && !(t.min < 0.0 && t.max > 0.0) {
                    (t.s2, t.cancels) = (f64::NAN, false);
                }
            }
            if nan_codes != 0 {
                // A NaN code, decoded as a number: the band is redone.
                (t.s2, t.cancels) = (f64::NAN, false);
            }
            t
        }
    };
}

kernel!(run, "avx512f,avx512bw,avx512dq,avx512vl,fma", decode, false);
kernel!(
    run_vbmi,
    "avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi,fma",
    decode_e4m3,
    false
);
kernel!(
    run_dots,
    "avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi,avx512bf16,fma",
    decode_e4m3,
    true
);

/// How the lanes of a chunk's vectors fall into cells `bw` columns wide, worked out
/// once per band so that folding a chunk needs no division for power-of-two cells and
/// no walk over the cells' boundaries for the others.
#[derive(Clone, Copy)]
struct Cells {
    bw: usize,
    /// `bw` is even and the cells are folded from vectors of column pairs: lanes of a
    /// BF16 or F8 vector hold every second column, so the two vectors of a pair cover
    /// the same cells and are combined first; F16's two vectors of 16 neighbouring
    /// columns are regrouped into such pairs.
    paired: bool,
    /// Columns between neighbouring lanes of the vectors folded (1 or 2).
    step: usize,
    /// `log2(bw)` when the cells are whole runs of a power of two lanes, at most 16.
    pow2: Option<u32>,
    /// For cells at most 32 columns wide, the lanes of 16 that begin a cell (and lane 0)
    /// when lane 0 holds the column `o` columns into its cell, by `o`: [`Cells::walk`]
    /// made once per band. (Wider cells begin at most once in 16 lanes, which span at most
    /// 31 columns: their walk is one step.)
    starts: [__mmask16; 32],
}

impl Cells {
    fn new(kind: Kind, bw: usize) -> Cells {
        let paired = bw.is_multiple_of(2) && kind != F32;
        let step = if paired { 2 } else { layout(kind, 1).1 };
        // (Wider cells are walked by `run`: the table would not be read.)
        let mut starts = [0; 32];
        if bw <= starts.len() {
            for (o, s) in starts.iter_mut().enumerate().take(bw) {
                *s = Self::walk(bw, step, o);
            }
        }
        Cells {
            bw,
            paired,
            step,
            pow2: (bw.is_power_of_two() && bw >= step && bw / step <= 16)
                .then(|| bw.trailing_zeros()),
            starts,
        }
    }

    /// The lanes of 16 that begin a cell (and lane 0) when lane 0 holds the column `o`
    /// columns into its cell: the lane holding (or, between two lanes, following) each
    /// later cell's first column.
    fn walk(bw: usize, step: usize, o: usize) -> __mmask16 {
        let mut starts = 1u32;
        let mut d = bw - o;
        while d <= 15 * step {
            starts |= 1 << d.div_ceil(step);
            d += bw;
        }
        starts as __mmask16
    }

    /// The first cell of `n` lanes whose first holds column `col0`, and the lanes that
    /// begin a cell (and lane 0).
    fn run(&self, col0: usize, n: usize) -> (usize, __mmask16) {
        let (j0, o) = (col0 / self.bw, col0 % self.bw);
        let starts = if self.bw <= self.starts.len() {
            self.starts[o]
        } else {
            Self::walk(self.bw, self.step, o)
        };
        (j0, starts & ((1u32 << n) - 1) as __mmask16)
    }
}

/// Adds the per-lane results of one chunk to their cells. Lanes of a vector hold
/// columns `first + step·k`. `CALLER` (the kernel's `LANE_MIN`) makes one instance per
/// kernel: LLVM inlines a function this size into a sole caller only (called from two,
/// once per chunk and group of rows, it cost a model's layers ~7% with default options).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
fn fold<const KIND: Kind, const EXTREMES: bool, const CALLER: bool>(
    c0: usize,
    cells: Cells,
    masks: &[__mmask16; 4],
    acc: &[__m512; 4],
    acc2: &[__m512; 4],
    band: &mut Band,
) {
    let (_, nvec) = const { shape(KIND) };
    let Cells {
        bw, paired, pow2, ..
    } = cells;
    // The vectors to run into their cells: the cells' sums (or minima) and maxima, the
    // first lane's column, the columns between lanes and the lanes that hold the
    // tensor's columns. (Gathered first, so that one loop folds them all, inlined.)
    let mut runs = [(_mm512_setzero_ps(), _mm512_setzero_ps(), 0, 0, 0); 4];
    let mut nruns = 0;
    // Two vectors' lanes of the same cells (sums or minima, and maxima) combined; `m`:
    // the lanes of the second that hold the tensor's columns.
    let combine = |a: (__m512, __m512), b: (__m512, __m512), m: __mmask16| {
        if EXTREMES {
            (
                _mm512_mask_min_ps(a.0, m, a.0, b.0),
                _mm512_mask_max_ps(a.1, m, a.1, b.1),
            )
        } else {
            (_mm512_mask_add_ps(a.0, m, a.0, b.0), a.1)
        }
    };
    if KIND == F16 && paired {
        // The chunk's 32 columns as 16 pairs of neighbours (lane `k`: columns `2k` and
        // `2k + 1`), as a BF16 chunk's paired vectors hold them: one vector of half the
        // lanes per cell to run into its cells, where two vectors took one run each
        // (a 4-column cell: one step of the scan, not two per vector). Lanes past the
        // tensor's columns are left out (an odd last column has no partner).
        let n = (masks[0].count_ones() + masks[1].count_ones()) as usize;
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        let pick = |idx| {
            (
                _mm512_permutex2var_ps(acc[0], idx, acc[1]),
                _mm512_permutex2var_ps(acc2[0], idx, acc2[1]),
            )
        };
        let (lo, hi) = combine(pick(even), pick(odd), ((1u32 << (n / 2)) - 1) as __mmask16);
        runs[0] = (lo, hi, c0, 2, n.div_ceil(2));
        nruns = 1;
    } else {
        let mut u = 0;
        while u < nvec {
            let (first, step) = layout(KIND, u);
            let (lo, hi) = if paired {
                combine((acc[u], acc2[u]), (acc[u + 1], acc2[u + 1]), masks[u + 1])
            } else {
                (acc[u], acc2[u])
            };
            runs[nruns] = (lo, hi, c0 + first, step, masks[u].count_ones() as usize);
            nruns += 1;
            u += if paired { 2 } else { 1 };
        }
    }
    for &(lo, hi, col0, step, n) in &runs[..nruns] {
        if n == 0 {
            continue;
        }
        // `step` is 1 or 2: shifts, not divisions, whether or not the loop is unrolled.
        let log_step = step.trailing_zeros();
        let lanes = |columns: usize| (columns + step - 1) >> log_step;
        // The first cell, the lanes that begin a cell (and lane 0, which may continue
        // one), how many cells and the most lanes one has.
        let (j0, starts, count, longest) = match pow2 {
            // Whole cells of `q` lanes each: every `q`-th lane begins one.
            Some(log) if n == 16 && col0 & (bw - 1) == 0 => {
                // (`q` is a power of two: shifts, not an 8-bit division on the path to
                // the store's mask.)
                let log_q = log - log_step;
                (
                    col0 >> log,
                    STRIDES[log_q as usize],
                    16 >> log_q,
                    1 << log_q,
                )
            }
            // Cells of any width, their starts looked up. At most 8 cells: 16 lanes span
            // at most 32 columns from a chunk's start (or the column after it), cells are
            // at least 4 wide, and a vector of column pairs (BF16, F8, regrouped F16; each
            // starting a multiple of 32 columns into the row) only takes even widths
            // (checked by simulation over every kind and widths 4..259 in review).
            _ => {
                debug_assert_eq!(step, cells.step);
                let (j0, starts) = cells.run(col0, n);
                (j0, starts, starts.count_ones() as usize, lanes(bw).min(16))
            }
        };
        // Each cell's lanes combined into its first, those gathered at the bottom.
        if EXTREMES {
            let mn = _mm512_maskz_compress_ps(starts, scan::<MIN>(lo, starts, n, longest));
            let mx = _mm512_maskz_compress_ps(starts, scan::<MAX>(hi, starts, n, longest));
            update(&mut band.min[j0..j0 + count], mn, _mm512_min_ps);
            update(&mut band.max[j0..j0 + count], mx, _mm512_max_ps);
        } else {
            let sums = _mm512_maskz_compress_ps(starts, scan::<ADD>(lo, starts, n, longest));
            add_f64_lanes(&mut band.s1[j0..j0 + count], sums);
        }
    }
}

/// [`fold`] for a whole chunk of [`E4M3_MEAN`] in cells 4 columns wide (every
/// 4096-column tensor of an FP8 model with default options): its 16 cells, from `j0`,
/// summed from the vectors in the unpack order without [`to_layout`], in the order
/// `fold` adds them (each column pair first, then the cell's two pairs). Vectors 0 and 1
/// hold neighbouring columns, as do 2 and 3, so lane `m` of their sums holds column pair
/// `8(m / 4) + m % 4`, and `+ 4` for the second; cell `4j + i` is pairs `8j + 2i` and
/// `8j + 2i + 1`. Folding these cells the general way took as long as reducing their
/// bytes (bands of 4 rows).
///
/// For the sums (`mean`) of BF16 and F16, the same for their 8 cells, from their column
/// pairs ([`pairs`]), added in the same order: the general fold's segmented scan and its
/// bookkeeping were ~40% of the time `run` spent on BF16 4096 × 4096 tensors with default
/// options, which are 4 × 4 cells in bands of 4 rows (the attention projections of
/// Llama 3 8B and of most 7–8B models).
///
/// This and the other chunk folds ([`fold_eights`], [`fold_pairs`], [`fold_odd`]) take
/// the calling kernel's parameters, unused, so that each kernel has its own copy: LLVM
/// inlines a function with one caller, and when the kernels for FP8 with and without
/// scales shared these, they were called instead, which cost unscaled F8 ~2% at
/// `--max-size 256` (reducing the 2 GiB model, pages mapped: 91–95 → 93–97 ms).
#[target_feature(enable = "avx512f,avx512dq")]
fn fold_fours<const KIND: Kind, const SCALED: bool, const LANE_CODES: bool>(
    j0: usize,
    v: &[__m512; 4],
    band: &mut Band,
) {
    if matches!(KIND, BF16 | F16) {
        // Cell `q` is pairs `2q` and `2q + 1`: lane `2q` of the pairs plus their swap.
        let p = pairs::<KIND>(v);
        let q = _mm512_add_ps(p, _mm512_permute_ps::<0b1011_0001>(p));
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
        add_f64_lanes(&mut band.s1[j0..j0 + 8], _mm512_permutexvar_ps(even, q));
        return;
    }
    let s1 = &mut band.s1[j0..j0 + 16];
    for (dst, v) in s1.chunks_exact_mut(8).zip(widen(fours(v))) {
        add_to_slot(dst, v, true);
    }
}

/// The sums of a whole BF16 or F16 chunk's 16 pairs of columns, in column order (each
/// pair's first column plus its second, as [`fold`] pairs them).
#[target_feature(enable = "avx512f")]
fn pairs<const KIND: Kind>(v: &[__m512; 4]) -> __m512 {
    if KIND == BF16 {
        // Lane `m` of the two vectors: columns `2m` and `2m + 1`.
        _mm512_add_ps(v[0], v[1])
    } else {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        _mm512_add_ps(
            _mm512_permutex2var_ps(v[0], even, v[1]),
            _mm512_permutex2var_ps(v[0], odd, v[1]),
        )
    }
}

/// The sums of a whole chunk's 16 groups of 4 columns, in column order, from the vectors
/// in the unpack order (see [`fold_fours`]).
#[target_feature(enable = "avx512f")]
fn fours(v: &[__m512; 4]) -> __m512 {
    let a = _mm512_add_ps(v[0], v[1]);
    let b = _mm512_add_ps(v[2], v[3]);
    // Each group's first pair (indices 16.. are `b`'s lanes), then its second.
    let first = _mm512_setr_epi32(0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30);
    let second = _mm512_add_epi32(first, _mm512_set1_epi32(1));
    _mm512_add_ps(
        _mm512_permutex2var_ps(a, first, b),
        _mm512_permutex2var_ps(a, second, b),
    )
}

/// [`fold`] for a whole chunk of [`E4M3_MEAN`] in cells a multiple of 8 columns wide
/// (every 4096-column tensor of an FP8 model at `--max-size 256`: 16; a 14336-column
/// one: 56), from the vectors in the unpack order. Lane `m` of `v[0] + v[1]` holds
/// column pair `8(m / 4) + m % 4`, and of `v[2] + v[3]` the pair 4 further, so each run
/// of 4 lanes of either sum is one 8-column group: two in-lane swaps and adds leave each
/// group's sum in the run's first lane, added in the order `fold` adds them, which cells
/// of 8 and 16 columns keep (wider ones add their groups' sums in `f64`, in column
/// order). The general fold took a fifth of such a band's time.
#[target_feature(enable = "avx512f")]
fn fold_eights<const KIND: Kind, const SCALED: bool, const LANE_CODES: bool>(
    c0: usize,
    bw: usize,
    v: &[__m512; 4],
    band: &mut Band,
) {
    let groups = |x: __m512| {
        let x = _mm512_add_ps(x, _mm512_permute_ps::<0b10_11_00_01>(x));
        _mm512_add_ps(x, _mm512_permute_ps::<0b01_00_11_10>(x))
    };
    // Lane `4i`: the sums of columns `16i ..` (`a`) and `16i + 8 ..` (`b`).
    let a = groups(_mm512_add_ps(v[0], v[1]));
    let b = groups(_mm512_add_ps(v[2], v[3]));
    let j0 = c0 / bw;
    match bw {
        8 => {
            let idx = _mm512_setr_epi32(0, 16, 4, 20, 8, 24, 12, 28, 0, 0, 0, 0, 0, 0, 0, 0);
            add_f64_lanes(&mut band.s1[j0..j0 + 8], _mm512_permutex2var_ps(a, idx, b));
        }
        16 => {
            let idx = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
            let cells = _mm512_permutexvar_ps(idx, _mm512_add_ps(a, b));
            add_f64_lanes(&mut band.s1[j0..j0 + 4], cells);
        }
        _ => {
            // SAFETY: `__m512` is 16 `f32` of plain vector data.
            let lanes = |x: __m512| unsafe { std::mem::transmute::<__m512, [f32; 16]>(x) };
            let (a, b) = (lanes(a), lanes(b));
            let (mut j, mut next, mut acc) = (j0, (j0 + 1) * bw, 0.0);
            for k in 0..8 {
                if c0 + 8 * k == next {
                    band.s1[j] += acc;
                    (j, next, acc) = (j + 1, next + bw, 0.0);
                }
                let sum = if k % 2 == 0 { a[2 * k] } else { b[2 * k - 2] };
                acc += f64::from(sum);
            }
            band.s1[j] += acc;
        }
    }
}

/// Where the lanes of a whole chunk of [`E4M3_MEAN`] go in cells of `w` column pairs,
/// `w` 3, 5, 6 or 7 (cells 6, 10, 12 or 14 columns wide: 14 for every 14336-column
/// tensor of an FP8 model with default options), for [`fold_pairs`]: by the offset `o`
/// of the chunk's first pair in its cell, for each place `i < w` in a cell, the lanes of
/// `v[0] + v[1]` and `v[2] + v[3]` (indices 16.. for the second) that hold place `i` of
/// each cell. Output lanes 0–7 are the cells of the chunk's first 16 pairs, lanes 8–15
/// those of the last 16, each half on its own as [`fold`] runs them.
struct PairCells {
    w: usize,
    /// `idx[o][i]`: the lanes holding place `i`, and `mask[o][i]` the output lanes that
    /// have one.
    idx: Vec<[[i32; 16]; 7]>,
    mask: Vec<[__mmask16; 7]>,
    /// `cells[o]`: how many cells each half touches, and how many cells the second
    /// half's first is after the first half's.
    cells: Vec<[usize; 3]>,
}

impl PairCells {
    /// The table for cells `bw` columns wide, if [`fold_pairs`] takes them (made once).
    fn of(bw: usize) -> Option<&'static PairCells> {
        static TABLES: [std::sync::OnceLock<PairCells>; 4] =
            [const { std::sync::OnceLock::new() }; 4];
        let at = [6, 10, 12, 14].iter().position(|&b| b == bw)?;
        Some(TABLES[at].get_or_init(|| PairCells::new(bw / 2)))
    }

    fn new(w: usize) -> PairCells {
        // The lane of `v[0] + v[1]` (or 16 + that of `v[2] + v[3]`) holding pair `p`.
        let lane = |p: usize| (4 * (p / 8) + p % 4 + 16 * (p / 4 % 2)) as i32;
        let mut t = PairCells {
            w,
            idx: vec![[[0; 16]; 7]; w],
            mask: vec![[0; 7]; w],
            cells: vec![[0; 3]; w],
        };
        for o in 0..w {
            for h in 0..2 {
                // The half's cells: the first from its lane 0, the others at each start.
                let first = (o + 16 * h) % w;
                let mut start = 0;
                let mut n = 0;
                while start < 16 {
                    let end = if n == 0 { w - first } else { start + w }.min(16);
                    for i in 0..end - start {
                        t.idx[o][i][8 * h + n] = lane(16 * h + start + i);
                        t.mask[o][i] |= 1 << (8 * h + n);
                    }
                    (start, n) = (end, n + 1);
                }
                t.cells[o][h] = n;
            }
            t.cells[o][2] = (o + 16) / w;
        }
        t
    }
}

/// [`fold`] for a whole chunk of [`E4M3_MEAN`] in cells of 3, 5, 6 or 7 column pairs,
/// from the vectors in the unpack order: each place of the cells gathered by one
/// permute, and the places added in the order [`scan`] adds a cell's lanes (a missing
/// place is +0, which changes no sum), so the cells get the same sums as from `fold`,
/// with half its shuffles and none of its per-run bookkeeping. (The general fold made
/// F8 4096 × 14336 tensors, 4 × 14 cells with default options, a third slower to render
/// than with 4 × 16 cells.)
#[target_feature(enable = "avx512f,avx512dq")]
fn fold_pairs<const KIND: Kind, const SCALED: bool, const LANE_CODES: bool>(
    c0: usize,
    t: &PairCells,
    v: &[__m512; 4],
    band: &mut Band,
) {
    let a = _mm512_add_ps(v[0], v[1]);
    let b = _mm512_add_ps(v[2], v[3]);
    let first = c0 / 2;
    let (j, o) = (first / t.w, first % t.w);
    let place = |i: usize| {
        let idx = load_epi32(&t.idx[o][i]);
        _mm512_maskz_permutex2var_ps(t.mask[o][i], a, idx, b)
    };
    let add = _mm512_add_ps;
    let two = add(place(0), place(1));
    let cells = if t.w == 3 {
        add(two, place(2))
    } else {
        let four = add(two, add(place(2), place(3)));
        match t.w {
            5 => add(four, place(4)),
            6 => add(four, add(place(4), place(5))),
            _ => add(four, add(add(place(4), place(5)), place(6))),
        }
    };
    let [n1, n2, dj] = t.cells[o];
    let [lo, hi] = widen(cells);
    add_pd_lanes(&mut band.s1[j..j + n1], lo);
    add_pd_lanes(&mut band.s1[j + dj..j + dj + n2], hi);
}

/// Where a whole chunk of [`E4M3_MEAN`] (or of BF16 or F16, for `mean`) goes in cells of an odd
/// number `w` (5 to 15) of units, for [`fold_odd`]: columns (cells 5 to 15 columns wide:
/// 7 for the 7168-wide tensors of DeepSeek-V3 with default options, 5 for 5120-wide
/// ones), or, for F8, groups of 4 columns (cells 20 to 60 columns wide: 28 for 7168-wide
/// tensors at `--max-size 256`).
/// By the offset `o` of the chunk's first unit in its cell, for each place `i < w` in a
/// cell, the lanes of the two sources of [`fold_odd`] that hold place `i` of each cell,
/// and the output lanes that have one in each. Output lane `n` is the chunk's `n`-th
/// cell.
struct OddCells {
    /// Where the units are.
    source: Units,
    /// Units in a cell.
    w: usize,
    /// `idx[o][i]`: the lanes of each source holding place `i` (indices 16.. for the
    /// second vector of a source), and `mask[o][i]` the output lanes they go to.
    idx: Vec<[[[i32; 16]; 2]; 15]>,
    mask: Vec<[[__mmask16; 2]; 15]>,
    /// `cells[o]`: how many cells the chunk touches.
    cells: Vec<usize>,
}

/// The units [`OddCells`] gathers, and where they lie.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Units {
    /// F8 columns in the unpack order ([`unpacked`]): in vectors 0 and 1 if the column's
    /// bit 3 is clear, else in vectors 2 and 3.
    F8Columns,
    /// The sums of an F8 chunk's 16 groups of 4 columns ([`fours`]).
    F8Groups,
    /// BF16 columns: the even ones in vector 0, the odd ones in vector 1.
    Bf16Columns,
    /// F16 columns: the first 16 in vector 0, the others in vector 1.
    F16Columns,
}

impl Units {
    /// Columns in a unit.
    fn columns(self) -> usize {
        if self == Units::F8Groups {
            4
        } else {
            1
        }
    }

    /// Units in a whole chunk.
    fn per_chunk(self) -> usize {
        match self {
            Units::F8Columns => CHUNK,
            Units::F8Groups => CHUNK / 4,
            Units::Bf16Columns | Units::F16Columns => CHUNK / 2,
        }
    }

    /// The source (0 or 1) and its lane (indices 16.. for the second vector of a
    /// source) that hold unit `c` of a chunk.
    fn lane(self, c: usize) -> (usize, usize) {
        match self {
            Units::F8Columns => {
                let (u, m) = ((c & 1) + 2 * (c >> 3 & 1), 4 * (c >> 4) + (c & 7) / 2);
                debug_assert_eq!(unpacked(u, m), c);
                (u / 2, m + 16 * (u % 2))
            }
            Units::F8Groups => (0, c),
            Units::Bf16Columns => (0, c / 2 + 16 * (c % 2)),
            Units::F16Columns => (0, c),
        }
    }
}

impl OddCells {
    /// The table for cells `bw` columns wide of `kind`, if [`fold_odd`] takes them (made
    /// once).
    fn of(kind: Kind, bw: usize) -> Option<&'static OddCells> {
        static TABLES: [std::sync::OnceLock<OddCells>; 24] =
            [const { std::sync::OnceLock::new() }; 24];
        let odd = |w: usize| (5..=15).contains(&w) && w % 2 == 1;
        let (source, w) = match kind {
            E4M3_MEAN if odd(bw) => (Units::F8Columns, bw),
            E4M3_MEAN if bw % 8 == 4 && odd(bw / 4) => (Units::F8Groups, bw / 4),
            BF16 if odd(bw) => (Units::Bf16Columns, bw),
            F16 if odd(bw) => (Units::F16Columns, bw),
            _ => return None,
        };
        let at = 6 * source as usize + (w - 5) / 2;
        Some(TABLES[at].get_or_init(|| OddCells::new(source, w)))
    }

    fn new(source: Units, w: usize) -> OddCells {
        let units = source.per_chunk();
        let mut t = OddCells {
            source,
            w,
            idx: vec![[[[0; 16]; 2]; 15]; w],
            mask: vec![[[0; 2]; 15]; w],
            cells: vec![0; w],
        };
        for o in 0..w {
            let n_cells = (units + o).div_ceil(w);
            debug_assert!(n_cells <= 16);
            for n in 0..n_cells {
                for i in 0..w {
                    let Some(c) = (n * w + i).checked_sub(o).filter(|&c| c < units) else {
                        continue;
                    };
                    let (src, lane) = source.lane(c);
                    t.idx[o][i][src][n] = lane as i32;
                    t.mask[o][i][src] |= 1 << n;
                }
            }
            t.cells[o] = n_cells;
        }
        t
    }
}

/// [`fold`] for a whole chunk of [`E4M3_MEAN`] (or of BF16 or F16) in cells of an odd
/// number of units ([`OddCells`]): each place of the cells gathered by a permute from
/// each source (for F8 columns, vectors 0 and 1, and 2 and 3 of the unpack order; for
/// groups of 4 columns, their sums taken as [`fold_fours`] takes them; for BF16 and F16,
/// their two vectors) and the places added in four chains. (The general fold runs
/// each vector's lanes into the cells on its own: F8 in 7-column cells reduced at less
/// than half its speed in 8-column ones, BF16 at ~60%.)
#[target_feature(enable = "avx512f,avx512dq")]
fn fold_odd<const KIND: Kind, const SCALED: bool, const LANE_CODES: bool>(
    c0: usize,
    t: &OddCells,
    v: &[__m512; 4],
    band: &mut Band,
) {
    let first = c0 / t.source.columns();
    let (j, o) = (first / t.w, first % t.w);
    let groups = (t.source == Units::F8Groups).then(|| fours(v));
    let mut acc = [_mm512_setzero_ps(); 4];
    for i in 0..t.w {
        let [ka, kb] = t.mask[o][i];
        let [ia, ib] = &t.idx[o][i];
        let place = match (t.source, groups) {
            (_, Some(g)) => _mm512_maskz_permutexvar_ps(ka, load_epi32(ia), g),
            (Units::Bf16Columns | Units::F16Columns, _) => {
                _mm512_maskz_permutex2var_ps(ka, v[0], load_epi32(ia), v[1])
            }
            _ => _mm512_add_ps(
                _mm512_maskz_permutex2var_ps(ka, v[0], load_epi32(ia), v[1]),
                _mm512_maskz_permutex2var_ps(kb, v[2], load_epi32(ib), v[3]),
            ),
        };
        acc[i % 4] = _mm512_add_ps(acc[i % 4], place);
    }
    let cells = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let n = t.cells[o];
    let [lo, hi] = widen(cells);
    add_pd_lanes(&mut band.s1[j..j + n.min(8)], lo);
    if n > 8 {
        add_pd_lanes(&mut band.s1[j + 8..j + n], hi);
    }
}

/// The lanes of each of a chunk's vectors, as [`layout`] places its columns, that hold its
/// columns `a..b`. (For [`fold_wide`], the first two of an F8 chunk in [`E4M3`]'s layout
/// are its first 32 columns laid out as a BF16 chunk.)
fn span<const KIND: Kind>(a: usize, b: usize) -> [__mmask16; 4] {
    std::array::from_fn(|u| {
        let (first, step) = layout(KIND, u);
        // The first lane holding column `c` or a later one.
        let lane = |c: usize| c.saturating_sub(first).div_ceil(step).min(16);
        ((1u32 << lane(b)) - (1u32 << lane(a))) as __mmask16
    })
}

/// [`fold`] for a whole chunk of BF16 or F16, or half an F8 chunk in [`E4M3`]'s layout
/// (laid out as a BF16 chunk), in cells at least 16 columns wide, which its 32 columns
/// meet at most three of (27 and 19 columns for the MLPs of Qwen2.5-32B and -7B with
/// default options, 28 for Llama-3-70B's, 25 and 17 for Qwen3-32B-FP8's and -14B-FP8's):
/// each cell's lanes of the two vectors picked by masks and combined with `OP` (the sums,
/// or the minima or maxima), and the three results reduced together. The general fold
/// scans each vector on its own, with more steps for longer cells: BF16 in cells of
/// 5 × 27 reduced at 18 GB/s against 35 in 16 × 32 ones; now 27 (5 × 19: 19 → 27,
/// 5 × 28: 24 → 28; F16 5 × 27: 17 → 24; `max` and `absmax` in 5 × 27 and 5 × 19 cells
/// 14 → 20; F8 `mean` 5 × 25 8.1–8.6 → 12.8–13.2, `absmax` 6.4–6.5 → 9.1; no width
/// slower).
#[target_feature(enable = "avx512f,avx512dq")]
fn fold_wide<const KIND: Kind, const OP: u8, const SCALED: bool, const LANE_CODES: bool>(
    c0: usize,
    bw: usize,
    v: &[__m512; 4],
    band: &mut Band,
) {
    let (j, o) = (c0 / bw, c0 % bw);
    // Where the chunk's second and third cells begin (32: it has none).
    let b1 = (bw - o).min(32);
    let b2 = (b1 + bw).min(32);
    let op = |a, b| match OP {
        ADD => _mm512_add_ps(a, b),
        MIN => _mm512_min_ps(a, b),
        _ => _mm512_max_ps(a, b),
    };
    // Lanes outside a cell hold a value that changes nothing.
    let none = _mm512_set1_ps(match OP {
        ADD => 0.0,
        MIN => f32::INFINITY,
        _ => f32::NEG_INFINITY,
    });
    let part = |a: usize, b: usize| {
        let [ka, kb, ..] = span::<KIND>(a, b);
        let x = _mm512_mask_mov_ps(none, ka, v[0]);
        _mm512_mask_mov_ps(x, kb, op(x, v[1]))
    };
    let [t0, t1, t2] = [part(0, b1), part(b1, b2), part(b2, 32)];
    // Lanes `lo` of `a` and `b` (16.. for `b`'s) combined with lanes `hi`.
    let pick = |a, lo: [i32; 16], hi: [i32; 16], b| {
        op(
            _mm512_permutex2var_ps(a, load_epi32(&lo), b),
            _mm512_permutex2var_ps(a, load_epi32(&hi), b),
        )
    };
    // Lanes 0–7: t0's halves combined; 8–15: t1's. Then t2's halves.
    let r01 = pick(
        t0,
        [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23],
        [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31],
        t1,
    );
    let r2 = op(t2, _mm512_shuffle_f32x4::<0b0100_1110>(t2, t2));
    // Lanes 0–3: t0's quarters; 4–7: t1's; 8–11: t2's.
    let q = pick(
        r01,
        [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 16, 16, 16, 16],
        [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 16, 16, 16, 16],
        r2,
    );
    let q = op(q, _mm512_permute_ps::<0b0100_1110>(q));
    let q = op(q, _mm512_permute_ps::<0b1011_0001>(q));
    let cells = _mm512_permutexvar_ps(
        load_epi32(&[0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        q,
    );
    let n = 1 + usize::from(b1 < 32) + usize::from(b2 < 32);
    match OP {
        ADD => add_pd_lanes(&mut band.s1[j..j + n], widen(cells)[0]),
        MIN => update(&mut band.min[j..j + n], cells, _mm512_min_ps),
        _ => update(&mut band.max[j..j + n], cells, _mm512_max_ps),
    }
}

/// For runs of `2^i` lanes, the mask of each run's first lane.
const STRIDES: [__mmask16; 5] = [0xffff, 0x5555, 0x1111, 0x0101, 0x0001];

/// Combines the first `dst.len()` (at most 16) lanes of `v` into `dst` with `op`.
#[target_feature(enable = "avx512f")]
fn update(dst: &mut [f32], v: __m512, op: unsafe fn(__m512, __m512) -> __m512) {
    assert!(dst.len() <= 16);
    let k = ((1u32 << dst.len()) - 1) as __mmask16;
    // SAFETY: lanes `0..dst.len()` (the mask `k`) are inside `dst`; masked-off lanes are
    // neither read nor written. `op` is a lane-wise AVX-512F operation.
    unsafe {
        let old = _mm512_maskz_loadu_ps(k, dst.as_ptr());
        _mm512_mask_storeu_ps(dst.as_mut_ptr(), k, op(old, v));
    }
}

/// Adds the first `dst.len()` (at most 8) lanes of `v` to `dst` in `f64`.
#[target_feature(enable = "avx512f")]
fn add_f64_lanes(dst: &mut [f64], v: __m512) {
    add_pd_lanes(dst, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
}

/// Adds the first `dst.len()` (at most 8) lanes of `v` to `dst`.
#[target_feature(enable = "avx512f")]
fn add_pd_lanes(dst: &mut [f64], v: __m512d) {
    assert!(dst.len() <= 8);
    let k = ((1u16 << dst.len()) - 1) as __mmask8;
    // SAFETY: lanes `0..dst.len()` (the mask `k`) are inside `dst`; masked-off lanes are
    // neither read nor written.
    unsafe {
        let old = _mm512_maskz_loadu_pd(k, dst.as_ptr());
        _mm512_mask_storeu_pd(dst.as_mut_ptr(), k, _mm512_add_pd(old, v));
    }
}

/// The sum of `v`, in 32 interleaved partial sums: four vectors of eight, so that four
/// additions are in flight. (One chain of dependent additions through a band's cells took
/// as long as a fifth of an F8 band's reduction; one vector's chain still took ~6% of
/// an F8 band of 4 rows with 4 × 4 cells.)
#[target_feature(enable = "avx512f")]
fn total(v: &[f64]) -> f64 {
    let mut blocks = v.chunks_exact(32);
    let mut acc = [_mm512_setzero_pd(); 4];
    for c in &mut blocks {
        for (a, part) in acc.iter_mut().zip(c.chunks_exact(8)) {
            *a = _mm512_add_pd(*a, load_pd(part));
        }
    }
    let mut lanes = blocks.remainder().chunks_exact(8);
    for c in &mut lanes {
        acc[0] = _mm512_add_pd(acc[0], load_pd(c));
    }
    let acc = _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3]));
    _mm512_reduce_add_pd(acc) + lanes.remainder().iter().sum::<f64>()
}

/// Adds the `f32` lanes of each of `v`'s vectors to `acc` in `f64`, and clears them.
#[target_feature(enable = "avx512f,avx512dq")]
fn drain(acc: __m512d, v: &mut [__m512]) -> __m512d {
    v.iter_mut().fold(acc, |acc, x| {
        let acc = add_f64(acc, *x);
        *x = _mm512_setzero_ps();
        acc
    })
}

/// Moves the `f32` lanes of a chunk's `n` (at least one) vectors to `f64` (paired first:
/// each holds at most `GROUP` values per lane) and clears them. (The sums start from their
/// first term, not from +0: they are sums of squares or differences that started at +0,
/// so never -0, and adding them to +0 would change nothing but cost three additions a
/// chunk.)
#[target_feature(enable = "avx512f,avx512dq")]
fn to_f64(v: &mut [__m512; 4], n: usize) -> __m512d {
    let mut pairs = v[..n].chunks(2).map(|p| {
        let [lo, hi] = widen(p[1..].iter().fold(p[0], |a, &x| _mm512_add_ps(a, x)));
        _mm512_add_pd(lo, hi)
    });
    let first = pairs.next().expect("at least one vector");
    let acc = pairs.fold(first, |a, s| _mm512_add_pd(a, s));
    v[..n].fill(_mm512_setzero_ps());
    acc
}

/// Moves eight `f64` lanes into `slot` (a chunk's slot of squares, or eight cells' sums),
/// or adds them to it (`slot + v`).
#[target_feature(enable = "avx512f")]
fn add_to_slot(slot: &mut [f64], v: __m512d, add: bool) {
    assert!(slot.len() >= 8);
    let at = slot.as_mut_ptr();
    // SAFETY: `slot` holds at least 8 `f64` (checked above); the load and store have no
    // alignment requirement.
    unsafe {
        let v = if add {
            _mm512_add_pd(_mm512_loadu_pd(at), v)
        } else {
            v
        };
        _mm512_storeu_pd(at, v);
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// Lane operations for [`scan`].
const ADD: u8 = 0;
const MIN: u8 = 1;
const MAX: u8 = 2;

/// Combines each cell's lanes among the first `n` of `v` into its first lane with `OP`:
/// `starts` marks the lanes that begin a cell (and lane 0), a cell has at most
/// `longest` lanes. (A segmented scan: at step `s`, lane `k` takes in lane `k + s` when
/// no cell begins in between.)
#[target_feature(enable = "avx512f")]
fn scan<const OP: u8>(v: __m512, starts: __mmask16, n: usize, longest: usize) -> __m512 {
    let w = |v| _mm512_castps_si512(v);
    // Lanes `k` whose lane `k + 1` is in the same cell.
    let mut same = !(starts >> 1) & (((1u32 << n) - 1) >> 1) as __mmask16;
    // Over the steps as constants, so that the loop is unrolled and each rotation is an
    // immediate (a loop that picked the rotation by the step at run time cost more).
    let mut v = v;
    for s in [1, 2, 4, 8] {
        if s >= longest {
            break;
        }
        let r = _mm512_castsi512_ps(match s {
            1 => _mm512_alignr_epi32::<1>(w(v), w(v)),
            2 => _mm512_alignr_epi32::<2>(w(v), w(v)),
            4 => _mm512_alignr_epi32::<4>(w(v), w(v)),
            _ => _mm512_alignr_epi32::<8>(w(v), w(v)),
        });
        v = match OP {
            ADD => _mm512_mask_add_ps(v, same, v, r),
            MIN => _mm512_mask_min_ps(v, same, v, r),
            _ => _mm512_mask_max_ps(v, same, v, r),
        };
        same &= same >> s;
    }
    v
}

/// Adds the 16 lanes of `v` to the 8 lanes of `acc` in `f64`.
#[target_feature(enable = "avx512f,avx512dq")]
fn add_f64(acc: __m512d, v: __m512) -> __m512d {
    let [lo, hi] = widen(v);
    _mm512_add_pd(acc, _mm512_add_pd(lo, hi))
}

/// The 16 lanes of `v` in `f64`: lanes 0–7, then 8–15.
#[target_feature(enable = "avx512f")]
fn widen(v: __m512) -> [__m512d; 2] {
    [
        _mm512_cvtps_pd(_mm512_castps512_ps256(v)),
        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
            _mm512_castps_pd(v),
        ))),
    ]
}

/// Reads 64 bytes.
#[target_feature(enable = "avx512f")]
fn load(bytes: &[u8]) -> __m512i {
    assert!(bytes.len() >= CHUNK);
    // SAFETY: the slice holds at least the 64 bytes read (checked above); the load
    // has no alignment requirement.
    unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) }
}

/// Reads 8 `f64`.
#[target_feature(enable = "avx512f")]
fn load_pd(values: &[f64]) -> __m512d {
    assert!(values.len() >= 8);
    // SAFETY: the slice holds at least the 8 values read (checked above); the load has
    // no alignment requirement.
    unsafe { _mm512_loadu_pd(values.as_ptr()) }
}

/// Reads 16 `i32`.
#[target_feature(enable = "avx512f")]
fn load_epi32(values: &[i32; 16]) -> __m512i {
    // SAFETY: the array holds the 16 values read; the load has no alignment requirement.
    unsafe { _mm512_loadu_si512(values.as_ptr().cast()) }
}

/// Reads 16 `f32`.
#[target_feature(enable = "avx512f")]
fn load_ps(values: &[f32]) -> __m512 {
    assert!(values.len() >= 16);
    // SAFETY: the slice holds at least the 16 values read (checked above); the load has
    // no alignment requirement.
    unsafe { _mm512_loadu_ps(values.as_ptr()) }
}

/// Adds one to the lane counter of each element of the chunk `raw` in `elems` that is
/// zero (either sign): 64 byte lanes for F8, 32 word lanes for 2-byte types, 16 for F32.
/// For [`E4M3_MEAN`], of each element that is not, and returns their mask (which its
/// decode needs: the count of zeros is then the band's elements less this one).
#[target_feature(enable = "avx512f,avx512bw")]
fn count_zeros<const KIND: Kind>(
    counts: __m512i,
    raw: __m512i,
    elems: u64,
    ones: __m512i,
) -> (__m512i, __mmask64) {
    match KIND {
        BF16 | F16 => {
            let z = _mm512_mask_testn_epi16_mask(elems as u32, raw, _mm512_set1_epi16(0x7fff));
            (_mm512_mask_sub_epi16(counts, z, counts, ones), 0)
        }
        F32 => {
            let z = _mm512_mask_testn_epi32_mask(elems as u16, raw, _mm512_set1_epi32(0x7fff_ffff));
            (_mm512_mask_sub_epi32(counts, z, counts, ones), 0)
        }
        E4M3 => {
            let z = _mm512_mask_testn_epi8_mask(elems, raw, _mm512_set1_epi8(0x7f));
            (_mm512_mask_sub_epi8(counts, z, counts, ones), 0)
        }
        _ => {
            let nz = _mm512_mask_test_epi8_mask(elems, raw, _mm512_set1_epi8(0x7f));
            (_mm512_mask_sub_epi8(counts, nz, counts, ones), nz)
        }
    }
}

/// The total of [`count_zeros`]'s lane counters.
#[target_feature(enable = "avx512f,avx512bw")]
fn count<const KIND: Kind>(counts: __m512i) -> u64 {
    let wide = match KIND {
        BF16 | F16 => _mm512_madd_epi16(counts, _mm512_set1_epi16(1)),
        F32 => counts,
        _ => _mm512_sad_epu8(counts, _mm512_setzero_si512()),
    };
    // At most 2^16 per 32-bit lane (or 64-bit lane for F8): the total fits.
    match KIND {
        BF16 | F16 | F32 => _mm512_reduce_add_epi32(wide) as u32 as u64,
        _ => _mm512_reduce_add_epi64(wide) as u64,
    }
}

/// The chunk's values as up to four vectors of 16 lanes, laid out as [`layout`] says
/// (the 2- and 4-byte types).
#[target_feature(enable = "avx512f")]
fn decode<const KIND: Kind>(raw: __m512i, _: __mmask64, _: &E4m3Lut) -> [__m512; 4] {
    let z = _mm512_setzero_ps();
    match KIND {
        BF16 => {
            let (x, y) = split_bf16(raw);
            [x, y, z, z]
        }
        F16 => [
            _mm512_cvtph_ps(_mm512_castsi512_si256(raw)),
            _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(raw)),
            z,
            z,
        ],
        _ => [_mm512_castsi512_ps(raw), z, z, z],
    }
}

/// [`decode`] for F8_E4M3 (`KIND` is [`E4M3`] or [`E4M3_MEAN`]): each code's BF16 low
/// and high bytes looked up (exact: E4M3 has 3 mantissa bits, BF16 7), paired into words
/// by unpacking, so in the unpack order ([`unpacked`]), and split like BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn decode_e4m3<const KIND: Kind>(raw: __m512i, nonzero: __mmask64, lut: &E4m3Lut) -> [__m512; 4] {
    let [a, b] = e4m3_words::<KIND>(raw, nonzero, lut);
    let (xa, ya) = split_bf16(a);
    let (xb, yb) = split_bf16(b);
    [xa, ya, xb, yb]
}

/// The BF16 words of the 64 F8_E4M3 codes of `raw`, in the unpack order ([`unpacked`]):
/// each code's low and high bytes looked up, paired by unpacking.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn e4m3_words<const KIND: Kind>(raw: __m512i, nonzero: __mmask64, lut: &E4m3Lut) -> [__m512i; 2] {
    let lo = _mm512_permutex2var_epi8(lut.lo[0], raw, lut.lo[1]);
    let hi = e4m3_high::<KIND>(raw, nonzero, lut);
    [_mm512_unpacklo_epi8(lo, hi), _mm512_unpackhi_epi8(lo, hi)]
}

/// One row of unscaled [`E4M3_MEAN`] with AVX512_BF16 dot products: each pair of
/// neighbouring BF16 words of [`e4m3_words`] times one, added to lane `m` of `sum[0]`
/// (`sum[2]` for the second vector), and times itself, to `d2[0]` (`d2[2]`). Lane `m`
/// then holds what lane `m` of `v[0] + v[1]` (`v[2] + v[3]`) holds after [`decode_e4m3`],
/// which is all the folds of [`E4M3_MEAN`] in cells of an even width read; `sum[1]`,
/// `sum[3]`, `d2[1]` and `d2[3]` stay zero. Four instructions where the decode's split
/// and the additions and squares took twelve. The sums are exactly those: E4M3 values
/// are multiples of 2^-9 below 2^9, so 64 of them in a lane add up exactly in `f32`
/// (the instruction flushes subnormals to zero, which these values and their squares,
/// at least 2^-18, never are). The squares round in another order, as statistics only.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512bf16")]
fn pair_dots(
    raw: __m512i,
    nonzero: __mmask64,
    lut: &E4m3Lut,
    sum: &mut [__m512; 4],
    d2: &mut [__m512; 4],
) {
    // SAFETY: `__m512bh` is 32 BF16 words of plain vector data, as `__m512i` is 512 bits.
    let bh = |v: __m512i| unsafe { std::mem::transmute::<__m512i, __m512bh>(v) };
    let one = bh(_mm512_set1_epi16(0x3f80));
    for (k, w) in e4m3_words::<E4M3_MEAN>(raw, nonzero, lut)
        .into_iter()
        .enumerate()
    {
        let w = bh(w);
        sum[2 * k] = _mm512_dpbf16_ps(sum[2 * k], w, one);
        d2[2 * k] = _mm512_dpbf16_ps(d2[2 * k], w, w);
    }
}

/// The high byte (sign and seven exponent bits) of the BF16 value of each of the 64
/// F8_E4M3 codes of `raw`. For [`E4M3`], that of the code's magnitude, looked up in two
/// registers, with the code's sign bit. For [`E4M3_MEAN`], elements not in `nonzero`
/// (zeros, padding) as +0, and the NaN codes as numbers: the low byte needs all seven
/// bits of the magnitude (a subnormal code's differs from the normal one's with the same
/// six low bits), but the high byte only the top six bits of the code, `S.EEEE.M`: a
/// normal value's depends on its sign and exponent alone, and E4M3's subnormals
/// (`S.0000.MMM`) share theirs with the other codes of their top mantissa bit, except
/// zero, which `nonzero` masks off. So it is looked up in one register from the code
/// shifted right by two (a 16-bit shift: the bits shifted in from the next byte fall in
/// the two index bits `vpermb` ignores), and the sign comes with it.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn e4m3_high<const KIND: Kind>(raw: __m512i, nonzero: __mmask64, lut: &E4m3Lut) -> __m512i {
    if KIND == E4M3_MEAN {
        _mm512_maskz_permutexvar_epi8(nonzero, _mm512_srli_epi16::<2>(raw), lut.hi6)
    } else {
        let hi = _mm512_permutex2var_epi8(lut.hi[0], raw, lut.hi[1]);
        _mm512_ternarylogic_epi32::<0xf8>(hi, raw, _mm512_set1_epi8(-128))
    }
}

/// Four vectors of an F8 chunk in the unpack order ([`unpacked`]) put in [`E4M3`]'s
/// [`layout`]. On input, vector 0 lane `m` holds element `16(m / 4) + 2(m % 4)`, vector
/// 2 the same plus 8, vectors 1 and 3 the next element of each.
#[target_feature(enable = "avx512f")]
fn to_layout(v: [__m512; 4]) -> [__m512; 4] {
    let first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    let second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    [
        _mm512_permutex2var_ps(v[0], first, v[2]),
        _mm512_permutex2var_ps(v[1], first, v[3]),
        _mm512_permutex2var_ps(v[0], second, v[2]),
        _mm512_permutex2var_ps(v[1], second, v[3]),
    ]
}

/// The largest codes (F8_E4M3 bytes, BF16 or F16 words, sign-magnitude) as signed and as
/// unsigned numbers, kept per lane: in a band with values of both signs, the first is
/// its largest value's and the second its smallest's. The smallest code, which
/// [`code_extremes`] asks for only when all values have one sign, is kept per lane too
/// when the kernel's `LANE_MIN` asks for it (BF16 and F16 `mean` after a band of one
/// sign), and otherwise found in the band's bytes. Keeping it always was one more
/// instruction per 64 bytes, which cost a model's BF16 layers with default options (in
/// bands of 4 rows) 0.77–0.79 → 0.70–0.74 of the read ceiling, for bands of weights
/// that nearly always have both signs; finding it in the bytes every time left an
/// all-positive 16384 × 32768 BF16 matrix at 0.60 of it against 0.91 at `--max-size
/// 256`, since a band is read again (from L3, for large bands).
#[derive(Clone, Copy)]
struct CodeExtremes {
    signed_max: __m512i,
    unsigned_max: __m512i,
    /// (Only with `LANE_MIN`, of BF16 or F16 codes.)
    unsigned_min: __m512i,
}

impl CodeExtremes {
    #[target_feature(enable = "avx512f")]
    fn new<const KIND: Kind>() -> CodeExtremes {
        CodeExtremes {
            signed_max: match KIND {
                BF16 | F16 => _mm512_set1_epi16(i16::MIN),
                _ => _mm512_set1_epi8(i8::MIN),
            },
            unsigned_max: _mm512_setzero_si512(),
            unsigned_min: _mm512_set1_epi8(-1),
        }
    }

    /// Takes in the codes of `raw` that `elems` selects (with `LANE_MIN`, into the
    /// smallest codes too).
    #[target_feature(enable = "avx512f,avx512bw")]
    fn update<const KIND: Kind, const LANE_MIN: bool>(&mut self, raw: __m512i, elems: u64) {
        let c = *self;
        match KIND {
            BF16 | F16 => {
                let k = elems as u32;
                self.signed_max = _mm512_mask_max_epi16(c.signed_max, k, c.signed_max, raw);
                self.unsigned_max = _mm512_mask_max_epu16(c.unsigned_max, k, c.unsigned_max, raw);
                if LANE_MIN {
                    self.unsigned_min =
                        _mm512_mask_min_epu16(c.unsigned_min, k, c.unsigned_min, raw);
                }
            }
            _ => {
                debug_assert!(!LANE_MIN);
                self.signed_max = _mm512_mask_max_epi8(c.signed_max, elems, c.signed_max, raw);
                self.unsigned_max =
                    _mm512_mask_max_epu8(c.unsigned_max, elems, c.unsigned_max, raw);
            }
        }
    }

    /// The lanes whose F8 codes taken in include a NaN code (0x7f or 0xff, the largest
    /// signed and unsigned byte).
    #[target_feature(enable = "avx512f,avx512bw")]
    fn nan_codes(&self) -> u64 {
        _mm512_cmpeq_epi8_mask(self.signed_max, _mm512_set1_epi8(0x7f))
            | _mm512_cmpeq_epi8_mask(self.unsigned_max, _mm512_set1_epi8(-1))
    }

    /// The smallest and largest value of the band whose codes were taken in (at least
    /// one): `data`, every one of its bytes an element's.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn extremes<const KIND: Kind, const LANE_MIN: bool>(&self, data: &[u8]) -> (f32, f32) {
        let (size, dtype) = match KIND {
            BF16 => (2, Dtype::BF16),
            F16 => (2, Dtype::F16),
            _ => (1, Dtype::F8E4M3),
        };
        let sign = 1u32 << (8 * size - 1);
        // Elements' codes from little-endian bytes, `size` each.
        let code = |c: &[u8]| c.iter().rev().fold(0u32, |a, &b| a << 8 | u32::from(b));
        // SAFETY: `__m512i` is 64 bytes of plain vector data.
        let bytes = |v: __m512i| unsafe { std::mem::transmute::<__m512i, [u8; 64]>(v) };
        let (s, u) = (bytes(self.signed_max), bytes(self.unsigned_max));
        // Flipping the sign bit orders two's complement codes as unsigned ones.
        let smax = s
            .chunks_exact(size)
            .map(|c| code(c) ^ sign)
            .max()
            .unwrap_or(0)
            ^ sign;
        let umax = u.chunks_exact(size).map(code).max().unwrap_or(0);
        // The lanes' smallest codes, or the band's own.
        let lanes = bytes(self.unsigned_min);
        let smallest: &[u8] = if LANE_MIN { &lanes } else { data };
        code_extremes(dtype, smax, umax, || min_code(smallest, size))
    }
}

/// The smallest of the codes in `data` (at least one), `size` (1 or 2) bytes each,
/// little-endian, read as unsigned numbers: [`code_extremes`]'s `umin`, from the band's
/// bytes again (or from the lanes' smallest codes, where they were kept). In lanes of
/// 64 bytes, so that it vectorises (an all-positive BF16 matrix rendered at 0.54–0.57 of
/// the read ceiling with a scan element by element, 0.59–0.62 with this one,
/// `--max-size 256`).
#[target_feature(enable = "avx512f,avx512bw")]
fn min_code(data: &[u8], size: usize) -> u32 {
    // (An empty band would give a NaN code.)
    debug_assert!(!data.is_empty() && matches!(size, 1 | 2));
    let lanes = data.chunks_exact(64);
    let rest = lanes.remainder();
    if size == 1 {
        let m = lanes.fold([u8::MAX; 64], |m, c| {
            std::array::from_fn(|k| m[k].min(c[k]))
        });
        let m = m.into_iter().chain(rest.iter().copied()).min();
        return u32::from(m.unwrap_or(u8::MAX));
    }
    let code = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
    let m = lanes.fold([u16::MAX; 32], |m, c| {
        std::array::from_fn(|k| m[k].min(code(&c[2 * k..])))
    });
    let m = m.into_iter().chain(rest.chunks_exact(2).map(code)).min();
    u32::from(m.unwrap_or(u16::MAX))
}

/// 32 BF16 values as their even and odd elements in `f32`.
#[target_feature(enable = "avx512f")]
fn split_bf16(raw: __m512i) -> (__m512, __m512) {
    (
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(raw)),
        _mm512_castsi512_ps(_mm512_and_si512(raw, _mm512_set1_epi32(-65536))),
    )
}

/// Tables for F8_E4M3: the low and high bytes of each 7-bit magnitude's BF16 value
/// (exact: E4M3 has 3 mantissa bits, BF16 7), and the high byte (with the sign) of each
/// nonzero code by its top six bits ([`e4m3_high`]).
struct E4m3Lut {
    lo: [__m512i; 2],
    hi: [__m512i; 2],
    hi6: __m512i,
}

impl E4m3Lut {
    #[target_feature(enable = "avx512f")]
    fn new() -> E4m3Lut {
        let t = e4m3_tables();
        E4m3Lut {
            lo: [load(&t[0]), load(&t[1])],
            hi: [load(&t[2]), load(&t[3])],
            hi6: load(&t[4]),
        }
    }
}

/// The bytes of [`E4m3Lut`]'s vectors, computed once.
fn e4m3_tables() -> &'static [[u8; 64]; 5] {
    static TABLES: std::sync::OnceLock<[[u8; 64]; 5]> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let bf16 = |c: usize| (decode_one(Dtype::F8E4M3, &[c as u8]).to_bits() >> 16) as u16;
        // Byte `byte` (0 low, 1 high) of the BF16 value of codes `64·half ..`.
        let table = |byte: usize, half: usize| -> [u8; 64] {
            std::array::from_fn(|i| bf16(64 * half + i).to_le_bytes()[byte])
        };
        [
            table(0, 0),
            table(0, 1),
            table(1, 0),
            table(1, 1),
            std::array::from_fn(|i| bf16(i << 2 | 1).to_le_bytes()[1]),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both F8_E4M3 decodes give every code but the two NaNs its value, to the bit (the
    /// `mean` one gives -0 as +0), in the lanes [`layout`] says once [`to_layout`] has
    /// reordered them (so in the lanes [`unpacked`] says before), with and without the
    /// codes' elements masked off as padding (zeros).
    #[test]
    fn e4m3_decodes_give_every_code_its_value() {
        if !available(E4M3) {
            return;
        }
        for chunk in 0..4u8 {
            let codes: [u8; 64] = std::array::from_fn(|i| 64 * chunk + i as u8);
            for elems in [u64::MAX, 0x00ff_ff00_0f0f_ffff] {
                // SAFETY: `available` checked the features both decodes are compiled with.
                let (mean, plain) = unsafe {
                    let (lut, ones) = (E4m3Lut::new(), _mm512_set1_epi8(-1));
                    let raw = load(&codes);
                    let raw = _mm512_maskz_mov_epi8(elems, raw);
                    let (_, nonzero) = count_zeros::<E4M3_MEAN>(raw, raw, elems, ones);
                    let (_, none) = count_zeros::<E4M3>(raw, raw, elems, ones);
                    (
                        to_layout(decode_e4m3::<E4M3_MEAN>(raw, nonzero, &lut)),
                        to_layout(decode_e4m3::<E4M3>(raw, none, &lut)),
                    )
                };
                // SAFETY: `__m512` is 16 `f32` of plain vector data.
                let lanes = |v: __m512| unsafe { std::mem::transmute::<__m512, [f32; 16]>(v) };
                for u in 0..4 {
                    let (first, step) = layout(E4M3, u);
                    let (got, got_plain) = (lanes(mean[u]), lanes(plain[u]));
                    for m in 0..16 {
                        let e = first + step * m;
                        let code = if elems >> e & 1 == 1 { codes[e] } else { 0 };
                        let want = decode_one(Dtype::F8E4M3, &[code]);
                        if want.is_nan() {
                            continue;
                        }
                        let bits = |x: f32| if x == 0.0 { 0 } else { x.to_bits() };
                        assert_eq!(bits(got[m]), bits(want), "mean decode of {code:#04x}");
                        assert_eq!(
                            got_plain[m].to_bits(),
                            want.to_bits(),
                            "decode of {code:#04x}"
                        );
                    }
                }
            }
        }
    }

    /// [`pair_dots`] over a group of 32 rows of random F8_E4M3 codes (zeros and padding
    /// among them) gives lanes 0 and 2 the sums, to the bit, that [`decode_e4m3`]'s pairs
    /// `v[0] + v[1]` and `v[2] + v[3]` add up to (each lane's 64 values are exact in
    /// `f32`), and the squares within rounding of those in `f64`.
    #[test]
    fn pair_dots_sum_as_the_decoded_pairs() {
        if !available(E4M3) || !is_x86_feature_detected!("avx512bf16") {
            return;
        }
        let mut next = xorshift();
        for elems in [u64::MAX, 0x0fff_ffff_ffff_ff00] {
            let rows: Vec<[u8; 64]> = (0..GROUP)
                .map(|_| {
                    std::array::from_fn(|_| match next() as u8 {
                        c if c & 0x7f == 0x7f => 0,
                        c => c,
                    })
                })
                .collect();
            // SAFETY: the features every function here is compiled with were checked.
            let (dots, squares, want, want_squares) = unsafe {
                let (lut, ones) = (E4m3Lut::new(), _mm512_set1_epi8(-1));
                let (mut sum, mut d2) = ([_mm512_setzero_ps(); 4], [_mm512_setzero_ps(); 4]);
                let mut pairs = [[0f32; 16]; 2];
                let mut want_squares = [[0f64; 16]; 2];
                for codes in &rows {
                    let raw = _mm512_maskz_mov_epi8(elems, load(codes));
                    let (_, nonzero) = count_zeros::<E4M3_MEAN>(raw, raw, elems, ones);
                    pair_dots(raw, nonzero, &lut, &mut sum, &mut d2);
                    let v = decode_e4m3::<E4M3_MEAN>(raw, nonzero, &lut)
                        .map(|x| std::mem::transmute::<__m512, [f32; 16]>(x));
                    for (k, (p, q)) in pairs.iter_mut().zip(&mut want_squares).enumerate() {
                        for m in 0..16 {
                            let (a, b) = (v[2 * k][m], v[2 * k + 1][m]);
                            p[m] += a + b;
                            q[m] += f64::from(a) * f64::from(a) + f64::from(b) * f64::from(b);
                        }
                    }
                }
                let lanes = |x: __m512| std::mem::transmute::<__m512, [f32; 16]>(x);
                (
                    [lanes(sum[0]), lanes(sum[2])],
                    [lanes(d2[0]), lanes(d2[2])],
                    pairs,
                    want_squares,
                )
            };
            for k in 0..2 {
                for m in 0..16 {
                    assert_eq!(dots[k][m].to_bits(), want[k][m].to_bits(), "sum, {k} {m}");
                    let (got, want) = (f64::from(squares[k][m]), want_squares[k][m]);
                    assert!(
                        (got - want).abs() <= 1e-6 * want,
                        "squares, {k} {m}: {got} {want}"
                    );
                }
            }
        }
    }

    /// A xorshift generator of 64-bit words.
    fn xorshift() -> impl FnMut() -> u64 {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// A chunk's four vectors of random lanes of magnitudes 2^-12 to 2^12, so that an
    /// addition in another order, or a partial sum added in `f32` where `fold` adds it in
    /// `f64`, changes a result; and `gw` random cells' sums to add them to.
    fn random_chunk(next: &mut impl FnMut() -> u64, gw: usize) -> ([[f32; 16]; 4], Vec<f64>) {
        let mut lanes = [[0f32; 16]; 4];
        for x in lanes.iter_mut().flatten() {
            let r = next();
            let sign = if r & 1 == 0 { 1.0 } else { -1.0 };
            *x = sign * (1.0 + (r >> 40) as f32 / 2f32.powi(24)) * 2f32.powi((r >> 8) as i32 % 13);
        }
        let start = (0..gw)
            .map(|_| (next() >> 11) as f64 / 2f64.powi(40))
            .collect();
        (lanes, start)
    }

    /// The cells' sums after `fold` adds a chunk to `start`, as bits.
    fn folded(start: &[f64], fold: impl FnOnce(&mut Band)) -> Vec<u64> {
        let mut band = Band::new(start.len());
        band.s1.copy_from_slice(start);
        fold(&mut band);
        band.s1.iter().map(|s| s.to_bits()).collect()
    }

    /// [`fold_pairs`] gives every cell the same sum, to the bit, as [`to_layout`] and the
    /// general [`fold`], for chunks starting at every place in a cell.
    #[test]
    fn pair_cells_fold_as_the_general_fold() {
        if !available(E4M3) {
            return;
        }
        let mut next = xorshift();
        for bw in [6, 10, 12, 14] {
            let t = PairCells::of(bw).unwrap();
            for chunk in 0..bw {
                let c0 = 64 * chunk;
                let (lanes, start) = random_chunk(&mut next, (c0 + 64).div_ceil(bw));
                // SAFETY: `available` checked the features both folds are compiled with.
                let v = lanes.map(|l| unsafe { load_ps(&l) });
                let want = folded(&start, |band| unsafe {
                    let cells = Cells::new(E4M3_MEAN, bw);
                    let all = [u16::MAX; 4];
                    fold::<E4M3, false, false>(c0, cells, &all, &to_layout(v), &v, band);
                });
                let got = folded(&start, |band| unsafe {
                    fold_pairs::<E4M3_MEAN, false, false>(c0, t, &v, band);
                });
                assert_eq!(got, want, "cells {bw} wide, chunk {chunk}");
            }
        }
    }

    /// [`fold_fours`] gives BF16 and F16 cells 4 columns wide the same sums, to the bit,
    /// as the general [`fold`].
    #[test]
    fn bf16_and_f16_fours_fold_as_the_general_fold() {
        if !available(BF16) {
            return;
        }
        let mut next = xorshift();
        for chunk in 0..4 {
            let c0 = 32 * chunk;
            let (lanes, start) = random_chunk(&mut next, c0 / 4 + 8);
            // SAFETY: `available` checked the features both folds are compiled with.
            let v = lanes.map(|l| unsafe { load_ps(&l) });
            fours_as_general::<BF16>(c0, &v, &start);
            fours_as_general::<F16>(c0, &v, &start);
        }
    }

    /// Checks [`fold_fours`] of the chunk `v` of `KIND` at column `c0` against [`fold`]
    /// (the CPU must have the features both are compiled with).
    fn fours_as_general<const KIND: Kind>(c0: usize, v: &[__m512; 4], start: &[f64]) {
        // SAFETY: the caller checked the features both folds are compiled with.
        let got = folded(start, |band| unsafe {
            fold_fours::<KIND, false, false>(c0 / 4, v, band);
        });
        let want = folded(start, |band| unsafe {
            let cells = Cells::new(KIND, 4);
            fold::<KIND, false, false>(c0, cells, &[u16::MAX; 4], v, v, band);
        });
        assert_eq!(got, want, "kind {KIND}, chunk at column {c0}");
    }
}
