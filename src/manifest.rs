//! `manifest.json`: what was rendered, with which options, and what was not.
//!
//! The key set and order are part of the output contract (see DESIGN.md): scripts read
//! this file instead of parsing file names. Nothing in it depends on the thread count
//! or the clock, so a manifest is as reproducible as the PNGs it lists.

use serde::{Deserialize, Serialize};

use crate::config::{RenderConfig, Size};
use crate::reduce::Stats;

/// The whole manifest of one input's output folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version of tensorheat that wrote it.
    pub tensorheat: String,
    /// The input paths as given.
    pub inputs: Vec<String>,
    /// The options that shaped the output.
    pub options: Options,
    /// Rendered tensors, in natural order of their names.
    pub tensors: Vec<TensorEntry>,
    /// Tensors deliberately not rendered (unknown dtype, no elements).
    pub skipped: Vec<Skipped>,
    /// Inputs or tensors that failed.
    pub errors: Vec<ErrorEntry>,
}

/// The render options, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Cell reduction.
    pub reduce: String,
    /// `[h, w]` grid limit, or `null` with `block`.
    pub max_size: Option<[usize; 2]>,
    /// `[rows, cols]` fixed block, or `null`.
    pub block: Option<[usize; 2]>,
    /// Same block size on both axes.
    pub keep_aspect: bool,
    /// Percentile for the colour range.
    pub clip: f64,
    /// Fixed `[lo, hi]` colour range, or `null`.
    pub range: Option<[f64; 2]>,
    /// Colormap asked for, or `null` for the defaults.
    pub colormap: Option<String>,
    /// Colour of NaN cells.
    pub nan_color: String,
    /// Whether `.npy` grids were written.
    pub raw: bool,
}

impl From<&RenderConfig> for Options {
    fn from(c: &RenderConfig) -> Self {
        let (max_size, block) = match c.size {
            Size::MaxSize(h, w) => (Some([h.get(), w.get()]), None),
            Size::Block(r, k) => (None, Some([r.get(), k.get()])),
        };
        Options {
            reduce: c.reduce.name().to_owned(),
            max_size,
            block,
            keep_aspect: c.keep_aspect,
            clip: c.clip,
            range: c.range.map(|r| [r.lo, r.hi]),
            colormap: c.colormap.map(|m| m.name()),
            nan_color: c.nan_color.to_string(),
            raw: c.raw,
        }
    }
}

/// One rendered tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// Tensor name.
    pub name: String,
    /// File name of the shard holding it.
    pub source: String,
    /// Dtype string.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// PNG file name, relative to the manifest.
    pub image: String,
    /// `.npy` file name, or `null` without `--raw`.
    pub raw: Option<String>,
    /// `[grid_h, grid_w]` (the PNG's height and width).
    pub grid: [usize; 2],
    /// `[bh, bw]` source rows and columns per cell.
    pub block: [usize; 2],
    /// Cell reduction.
    pub reduce: String,
    /// Colormap used.
    pub colormap: String,
    /// `[lo, hi]` of the colour range, or `null` when no cell is finite.
    pub range: Option<[f64; 2]>,
    /// Statistics of the full data.
    pub stats: Stats,
}

/// A tensor that was not rendered, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Tensor name.
    pub name: String,
    /// Shard file name.
    pub source: String,
    /// Dtype string as written in the header.
    pub dtype: String,
    /// `unsupported dtype` or `empty`.
    pub reason: String,
}

/// A failure: of a whole input (`name` null) or of one tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// The input as given.
    pub input: String,
    /// The tensor, when the failure is one tensor's.
    pub name: Option<String>,
    /// The error message, naming the file.
    pub message: String,
}
