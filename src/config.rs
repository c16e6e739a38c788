//! Render options: what to aggregate, how big, which colours, what to write.
//!
//! [`RenderConfig`] is plain data with documented defaults and no command-line types, so
//! library callers and the binary build it the same way. Every option that changes the
//! output is recorded in `manifest.json`.

use std::num::NonZeroUsize;
use std::str::FromStr;

use crate::colour::Colormap;
use crate::error::Error;
use crate::select::{Partition, Selection};

/// How a grid cell's members are reduced to one number (finite members only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Arithmetic mean (the default).
    #[default]
    Mean,
    /// Root mean square, `√mean(x²)`.
    Rms,
    /// Largest magnitude, `max |x|`.
    AbsMax,
    /// Largest value.
    Max,
    /// Smallest value.
    Min,
    /// Population standard deviation.
    Std,
    /// The cell's first finite member in row-major order.
    Sample,
}

impl Reduction {
    /// Every reduction, in documentation order.
    pub const ALL: [Reduction; 7] = [
        Reduction::Mean,
        Reduction::Rms,
        Reduction::AbsMax,
        Reduction::Max,
        Reduction::Min,
        Reduction::Std,
        Reduction::Sample,
    ];

    /// The option spelling (`mean`, `rms`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Rms => "rms",
            Reduction::AbsMax => "absmax",
            Reduction::Max => "max",
            Reduction::Min => "min",
            Reduction::Std => "std",
            Reduction::Sample => "sample",
        }
    }

    /// Whether the reduction keeps the sign of the data (and so may need a diverging map).
    pub fn is_signed(self) -> bool {
        matches!(
            self,
            Reduction::Mean | Reduction::Max | Reduction::Min | Reduction::Sample
        )
    }
}

impl FromStr for Reduction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Reduction::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::Option(format!("unknown reduction {s:?}")))
    }
}

/// How FP8 weights with a `<name>_scale_inv` companion are shown (`--fp8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fp8Mode {
    /// Multiply the block scales in: the real weights (the default).
    #[default]
    Dequant,
    /// The codes as stored.
    Raw,
}

impl Fp8Mode {
    /// The option spelling.
    pub fn name(self) -> &'static str {
        match self {
            Fp8Mode::Dequant => "dequant",
            Fp8Mode::Raw => "raw",
        }
    }
}

/// How block sizes are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// At most this many grid rows and columns (`--max-size`); default 1024 × 1024.
    MaxSize(NonZeroUsize, NonZeroUsize),
    /// Exactly this many source rows and columns per cell (`--block`).
    Block(NonZeroUsize, NonZeroUsize),
}

impl Default for Size {
    fn default() -> Self {
        let n = NonZeroUsize::new(1024).expect("1024 is not zero");
        Size::MaxSize(n, n)
    }
}

/// Parses `N` (square) or `HxW` into two non-zero numbers.
pub fn parse_pair(s: &str) -> Result<(NonZeroUsize, NonZeroUsize), Error> {
    let num = |t: &str| {
        t.trim().parse::<NonZeroUsize>().map_err(|_| {
            Error::Option(format!("{s:?} is not N or HxW with positive whole numbers"))
        })
    };
    match s.split_once(['x', 'X', '×']) {
        Some((h, w)) => Ok((num(h)?, num(w)?)),
        None => {
            let n = num(s)?;
            Ok((n, n))
        }
    }
}

/// A fixed colour range `LO:HI` (`--range`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedRange {
    /// Value mapped to the first colour.
    pub lo: f64,
    /// Value mapped to the last colour.
    pub hi: f64,
}

impl FixedRange {
    /// Whether colours can be placed in it: finite `lo < hi`, whose width is finite too
    /// (`-1.7e308:1.7e308` made every cell the first colour).
    fn usable(&self) -> bool {
        self.lo.is_finite()
            && self.hi.is_finite()
            && self.lo < self.hi
            && (self.hi - self.lo).is_finite()
    }
}

impl FromStr for FixedRange {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::Option(format!(
                "range {s:?} is not LO:HI with finite LO < HI and a finite HI - LO"
            ))
        };
        let (lo, hi) = s.split_once(':').ok_or_else(bad)?;
        let lo: f64 = lo.trim().parse().map_err(|_| bad())?;
        let hi: f64 = hi.trim().parse().map_err(|_| bad())?;
        let r = FixedRange { lo, hi };
        r.usable().then_some(r).ok_or_else(bad)
    }
}

/// An sRGB colour, parsed from `#rrggbb` or `rrggbb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub [u8; 3]);

impl FromStr for Rgb {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let hex = s.strip_prefix('#').unwrap_or(s);
        let bad = || Error::Option(format!("colour {s:?} is not #rrggbb"));
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
        Ok(Rgb([byte(0)?, byte(2)?, byte(4)?]))
    }
}

impl std::fmt::Display for Rgb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [r, g, b] = self.0;
        write!(f, "#{r:02x}{g:02x}{b:02x}")
    }
}

/// Everything that shapes a render's output.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderConfig {
    /// Cell reduction; default [`Reduction::Mean`].
    pub reduce: Reduction,
    /// Block sizing; default at most 1024 × 1024 cells.
    pub size: Size,
    /// Use one block size `max(bh, bw)` on both axes; default off.
    pub keep_aspect: bool,
    /// Percentile of |cell value| that sets the colour range, 50 to 100; default 99.5
    /// (100 means the full min/max).
    pub clip: f64,
    /// A fixed colour range instead of the percentile rule; default none.
    pub range: Option<FixedRange>,
    /// Colormap; default `RdBu_r` for diverging data and `viridis` for sequential.
    pub colormap: Option<Colormap>,
    /// Colour of cells with no finite member; default `#ff00ff`.
    pub nan_color: Rgb,
    /// Also write each grid as float32 `.npy`; default off.
    pub raw: bool,
    /// Which tensors to render; default all.
    pub select: Selection,
    /// FP8 weights with block scales: dequantised (default) or raw codes.
    pub fp8: Fp8Mode,
    /// Draw a one-pixel line on the cells holding every N-th source row and column;
    /// default none.
    pub tile_lines: Option<NonZeroUsize>,
    /// Render only this worker's share and write `manifest.K-of-N.json`; default none.
    pub partition: Option<Partition>,
    /// Reuse tensors whose PNG exists and whose fingerprint (shard size and mtime,
    /// tensor, options) matches the last run's record; default off.
    pub skip_existing: bool,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            reduce: Reduction::Mean,
            size: Size::default(),
            keep_aspect: false,
            clip: 99.5,
            range: None,
            colormap: None,
            nan_color: Rgb([0xff, 0x00, 0xff]),
            raw: false,
            select: Selection::default(),
            fp8: Fp8Mode::Dequant,
            tile_lines: None,
            partition: None,
            skip_existing: false,
        }
    }
}

impl RenderConfig {
    /// Checks values that the types alone do not constrain.
    pub fn validate(&self) -> Result<(), Error> {
        // Below 50 the low percentile would exceed the high one.
        if !(self.clip >= 50.0 && self.clip <= 100.0) {
            return Err(Error::Option(format!(
                "clip {} is not a percentile in [50, 100]",
                self.clip
            )));
        }
        if let Some(r) = self.range.filter(|r| !r.usable()) {
            return Err(Error::Option(format!(
                "range {}:{} is not finite LO < HI with a finite HI - LO",
                r.lo, r.hi
            )));
        }
        // (The fields are public: `Partition::new` is not the only way to make one.)
        if let Some(p) = self
            .partition
            .filter(|p| Partition::new(p.k, p.n).is_none())
        {
            return Err(Error::Option(format!(
                "partition {}/{} is not K/N with 1 <= K <= N <= {}",
                p.k,
                p.n,
                Partition::MAX_WORKERS
            )));
        }
        if self.keep_aspect && matches!(self.size, Size::Block(..)) {
            // `--block` is exact; squaring it would silently change what was asked for.
            return Err(Error::Option(
                "keep-aspect applies to a maximum size, not to an exact block (for square \
                 blocks give --block N)"
                    .into(),
            ));
        }
        self.select.compile()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_square_and_rect() {
        let p = parse_pair("256").unwrap();
        assert_eq!((p.0.get(), p.1.get()), (256, 256));
        let p = parse_pair("64x128").unwrap();
        assert_eq!((p.0.get(), p.1.get()), (64, 128));
        for bad in ["0", "x", "3x", "-1", "1.5", "2x0", ""] {
            assert!(parse_pair(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_and_colours_parse() {
        let r: FixedRange = "-0.5:2".parse().unwrap();
        assert_eq!((r.lo, r.hi), (-0.5, 2.0));
        for bad in ["1:1", "2:1", "nan:1", "1", "a:b", "-1.7e308:1.7e308"] {
            assert!(bad.parse::<FixedRange>().is_err(), "{bad}");
        }
        // Also when built by hand.
        let wide = RenderConfig {
            range: Some(FixedRange {
                lo: -f64::MAX,
                hi: f64::MAX,
            }),
            ..RenderConfig::default()
        };
        assert!(wide.validate().is_err());
        assert_eq!("#FF8000".parse::<Rgb>().unwrap(), Rgb([255, 128, 0]));
        assert_eq!("ff8000".parse::<Rgb>().unwrap(), Rgb([255, 128, 0]));
        assert_eq!(Rgb([1, 2, 255]).to_string(), "#0102ff");
        assert!("#12345".parse::<Rgb>().is_err());
        assert!("zzzzzz".parse::<Rgb>().is_err());
    }

    #[test]
    fn partitions_built_by_hand_are_checked() {
        let with = |k, n| RenderConfig {
            partition: Some(Partition { k, n }),
            ..RenderConfig::default()
        };
        assert!(with(2, 3).validate().is_ok());
        // 7 of 2 wrote `manifest.7-of-2.json`; 0 of 0 rendered and reported nothing.
        for (k, n) in [(7, 2), (0, 0), (0, 3), (1, Partition::MAX_WORKERS + 1)] {
            assert!(
                matches!(with(k, n).validate(), Err(Error::Option(m)) if m.contains("partition")),
                "{k}/{n}"
            );
        }
    }

    #[test]
    fn keep_aspect_squares_a_maximum_size_only() {
        let n = NonZeroUsize::new(4).unwrap();
        let with = |size| RenderConfig {
            size,
            keep_aspect: true,
            ..RenderConfig::default()
        };
        assert!(with(Size::MaxSize(n, n)).validate().is_ok());
        assert!(matches!(
            with(Size::Block(n, n)).validate(),
            Err(Error::Option(m)) if m.contains("keep-aspect")
        ));
    }

    #[test]
    fn reductions_round_trip() {
        for r in Reduction::ALL {
            assert_eq!(r.name().parse::<Reduction>().unwrap(), r);
        }
        assert!("median".parse::<Reduction>().is_err());
    }
}
