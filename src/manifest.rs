//! `manifest.json`: what was rendered, with which options, and what was not.
//!
//! The key set and order are part of the output contract (see DESIGN.md): scripts read
//! this file instead of parsing file names. Nothing in it depends on the thread count
//! or the clock, so a manifest is as reproducible as the PNGs it lists.

use serde::{Deserialize, Serialize};

use crate::config::{RenderConfig, Size};
use crate::reduce::Stats;
use crate::select::natural_cmp;

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

impl Manifest {
    /// Puts every list in its canonical order: tensors and skipped tensors by natural
    /// order of their names, errors of whole inputs first, then by tensor name. Any run,
    /// or merge of partitions, that saw the same things writes the same manifest.
    pub fn canonicalize(&mut self) {
        self.tensors.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        self.skipped.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        self.errors.sort_by(|a, b| match (&a.name, &b.name) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => natural_cmp(x, y),
        });
    }
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
    /// `--include` globs.
    pub include: Vec<String>,
    /// `--exclude` globs.
    pub exclude: Vec<String>,
    /// `--regex`, or `null`.
    pub regex: Option<String>,
    /// `--dtype` list.
    pub dtype: Vec<String>,
    /// `--fp8` mode.
    pub fp8: String,
    /// `--tile-lines` period, or `null`.
    pub tile_lines: Option<usize>,
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
            include: c.select.include_set(),
            exclude: c.select.exclude_set(),
            regex: c.select.regex.clone(),
            dtype: c.select.dtype_set(),
            fp8: c.fp8.name().to_owned(),
            tile_lines: c.tile_lines.map(|n| n.get()),
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
    /// For FP8 weights: scale tensor, block and mode (absent for other tensors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp8: Option<crate::fp8::Fp8Info>,
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

/// What [`merge_partials`] found.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The joined manifest (written only when nothing is missing).
    pub manifest: Manifest,
    /// Number of partitions `N`.
    pub parts: usize,
    /// Partition numbers `K` with no `manifest.K-of-N.json`.
    pub missing: Vec<usize>,
}

/// Joins the `manifest.K-of-N.json` files in `dir` and, when all `N` are there, writes
/// `manifest.json` and the gallery. Returns `None` when `dir` holds no partial manifest.
pub fn merge_partials(dir: &std::path::Path) -> crate::Result<Option<Merged>> {
    use crate::error::Error;
    let mut parts: Vec<(usize, usize, std::path::PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(kn) = name
            .strip_prefix("manifest.")
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        if let Some((k, n)) = kn.split_once("-of-") {
            // A name no `render --partition` writes (x-of-2, 5-of-3, or 1-of-2^64, whose
            // missing partitions would take forever to list) is an error, not skipped.
            let Some(p) = crate::select::Partition::of_numbers(k, n) else {
                return Err(Error::Input {
                    path: e.path(),
                    reason: format!(
                        "not a partial manifest of partition K/N with 1 <= K <= N <= {}",
                        crate::select::Partition::MAX_WORKERS
                    ),
                });
            };
            parts.push((p.k, p.n, e.path()));
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    parts.sort();
    let n = parts[0].1;
    if let Some(p) = parts.iter().find(|p| p.1 != n) {
        return Err(Error::Input {
            path: p.2.clone(),
            reason: format!("partition of {} workers beside partitions of {n}", p.1),
        });
    }
    let mut merged: Option<Manifest> = None;
    for (_, _, path) in &parts {
        let bytes = crate::source::read_regular(path).map_err(|e| Error::io(path, e))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Input {
            path: path.clone(),
            reason: format!("not a valid tensorheat manifest: {e}"),
        })?;
        match &mut merged {
            None => merged = Some(m),
            Some(all) => {
                if (&all.tensorheat, &all.inputs, &all.options)
                    != (&m.tensorheat, &m.inputs, &m.options)
                {
                    return Err(Error::Input {
                        path: path.clone(),
                        reason: "written by a run with other inputs, options or version".into(),
                    });
                }
                all.tensors.extend(m.tensors);
                all.skipped.extend(m.skipped);
                all.errors.extend(m.errors);
            }
        }
    }
    let mut manifest = merged.unwrap_or_else(|| unreachable!("parts is not empty"));
    manifest.canonicalize();
    let missing: Vec<usize> = (1..=n)
        .filter(|k| !parts.iter().any(|p| p.0 == *k))
        .collect();
    if missing.is_empty() {
        crate::render::write_manifest(dir, "manifest.json", &manifest)?;
        crate::gallery::write_gallery(dir, &manifest)?;
    }
    Ok(Some(Merged {
        manifest,
        parts: n,
        missing,
    }))
}
