//! The render driver: inputs in, PNGs, `.npy` grids and a manifest out.
//!
//! Tensors render in parallel (rayon), and inside one tensor the grid rows do too; one
//! tensor's or one input's failure is recorded and the rest goes on. Results are
//! collected in natural name order before anything order-dependent (file names,
//! manifest) is decided, so the output is the same whatever the thread count.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::colour::{choose_range_in, Colormap, Range};
use crate::config::RenderConfig;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::fp8::{Companions, Fp8Info};
use crate::journal::{fingerprint, Journal};
use crate::manifest::{ErrorEntry, Manifest, Options, Skipped, TensorEntry};
use crate::model::{Access, Model};
use crate::output::Marks;
use crate::output::{encode_npy, encode_png, file_stems, prepare_dir, write_atomic};
use crate::reduce::{recycle_grid, reduce_scaled, Scale, Stats};
use crate::select::Matcher;
use crate::source::TensorDtype;
use crate::view::{view, Geometry};

/// One tensor turned into a picture, in memory.
#[derive(Debug, Clone)]
pub struct Heatmap {
    /// Block geometry used.
    pub geometry: Geometry,
    /// The grid, row-major, `grid_h × grid_w`; NaN for cells without finite members.
    pub grid: Vec<f32>,
    /// The colour range (`None` when no cell is finite).
    pub range: Option<Range>,
    /// The colormap used.
    pub colormap: Colormap,
    /// Statistics of the full data.
    pub stats: Stats,
    /// The encoded PNG.
    pub png: Vec<u8>,
}

/// Reduces, colours and encodes one tensor held in `data` (little-endian, C order).
///
/// `name` is only used for messages and the PNG's text chunks.
///
/// # Errors
/// [`Error::Data`] when the shape has no elements or does not fit `data`'s length (or,
/// for [`heatmap_scaled`], the scales do not fit the shape), and [`Error::Option`] when
/// the configuration does not validate ([`RenderConfig::validate`], which also checks
/// the filters this function does not use).
pub fn heatmap(
    name: &str,
    data: &[u8],
    dtype: Dtype,
    shape: &[usize],
    config: &RenderConfig,
) -> Result<Heatmap> {
    heatmap_scaled(name, data, dtype, shape, None, config)
}

/// [`heatmap`] with optional block scales multiplied in (FP8 dequantisation).
pub fn heatmap_scaled(
    name: &str,
    data: &[u8],
    dtype: Dtype,
    shape: &[usize],
    scale: Option<&Scale<'_>>,
    config: &RenderConfig,
) -> Result<Heatmap> {
    let bad = |reason: String| Error::Data {
        name: name.to_owned(),
        reason,
    };
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {shape:?} has too many elements")))?;
    if numel == 0 {
        return Err(bad(format!("shape {shape:?} has no elements")));
    }
    let size = numel.checked_mul(dtype.size());
    if size != Some(data.len()) {
        let needs = size.map_or_else(
            || "more bytes than fit in memory".to_owned(),
            |n| format!("{n} bytes"),
        );
        return Err(bad(format!(
            "{dtype} shape {shape:?} needs {needs}, not {}",
            data.len()
        )));
    }
    config.validate()?;
    let (rows, cols) = view(shape);
    if let Some(s) = scale.filter(|s| !s.fits(rows, cols)) {
        return Err(bad(format!(
            "{} scales [{}, {}] in blocks of [{}, {}] ({} bytes) do not fit shape {shape:?}",
            s.dtype,
            s.rows,
            s.cols,
            s.bh,
            s.bw,
            s.data.len()
        )));
    }
    let geometry = Geometry::new(rows, cols, config.size, config.keep_aspect);
    let reduced = reduce_scaled(data, dtype, scale, &geometry, config.reduce);
    let range = choose_range_in(
        &reduced.grid,
        reduced.extent,
        config.reduce,
        config.clip,
        config.range,
    );
    let colormap = config.colormap.unwrap_or_else(|| match range {
        Some(r) if r.diverging => Colormap::diverging_default(),
        _ => Colormap::sequential_default(),
    });
    let text = [
        ("tensor", name.to_owned()),
        ("dtype", dtype.name().to_owned()),
        ("shape", format!("{shape:?}")),
        ("reduce", config.reduce.name().to_owned()),
        ("range", range_text(range)),
    ];
    let png = encode_png(
        &reduced.grid,
        geometry.grid_w(),
        range,
        &colormap.lut(),
        config.nan_color,
        config
            .tile_lines
            .and_then(|n| Marks::every(n.get(), rows, cols, geometry.bh, geometry.bw))
            .as_ref(),
        &text,
    )
    .map_err(|reason| bad(format!("cannot encode png: {reason}")))?;
    Ok(Heatmap {
        geometry,
        grid: reduced.grid,
        range,
        colormap,
        stats: reduced.stats,
        png,
    })
}

/// The range as the manifest writes its numbers (`2.37e30`, not thirty digits).
fn range_text(range: Option<Range>) -> String {
    let num = |v: f64| serde_json::Value::from(v).to_string();
    match range {
        Some(r) => format!("[{}, {}]", num(r.lo), num(r.hi)),
        None => "none".to_owned(),
    }
}

/// What happened to one input.
#[derive(Debug, Clone)]
pub struct InputReport {
    /// The input as given.
    pub input: PathBuf,
    /// The folder its files went to.
    pub out_dir: PathBuf,
    /// The manifest written (also when everything failed).
    pub manifest: Manifest,
    /// Notes that are not failures (e.g. shards not in the index).
    pub warnings: Vec<String>,
}

impl InputReport {
    /// Whether anything in this input failed.
    pub fn failed(&self) -> bool {
        !self.manifest.errors.is_empty()
    }
}

/// Hooks for progress display; every method has a no-op default.
pub trait Progress: Sync {
    /// An input is about to render `tensors` tensors holding `bytes` bytes.
    fn input_started(&self, _input: &Path, _tensors: usize, _bytes: u64) {}
    /// One tensor is done: rendered, reused from an earlier run, or failed.
    fn tensor_finished(&self, _name: &str, _bytes: u64, _outcome: TensorOutcome<'_>) {}
}

/// What happened to one tensor, for [`Progress`].
#[derive(Debug, Clone, Copy)]
pub enum TensorOutcome<'a> {
    /// Rendered now; the PNG's file name.
    Rendered(&'a str),
    /// Reused from an earlier run (`--skip-existing`).
    Reused(&'a str),
    /// Failed with this message.
    Failed(&'a str),
}

/// A [`Progress`] that shows nothing.
pub struct Silent;
impl Progress for Silent {}

/// Renders every input into `out`: with one input directly, with several each into
/// `out/<stem of the input>/`. Errors are recorded per input and per tensor in the
/// reports (and manifests); only an invalid configuration is returned as `Err`. Paths
/// are anything that is one (`&[&str]`, `&[PathBuf]`, `"out"`, `&Path`).
pub fn render(
    inputs: &[impl AsRef<Path>],
    out: impl AsRef<Path>,
    config: &RenderConfig,
) -> Result<Vec<InputReport>> {
    render_with(inputs, out, config, &Silent)
}

/// [`render()`] with progress reported to `progress`.
pub fn render_with(
    inputs: &[impl AsRef<Path>],
    out: impl AsRef<Path>,
    config: &RenderConfig,
    progress: &dyn Progress,
) -> Result<Vec<InputReport>> {
    config.validate()?;
    let matcher = config.select.compile()?;
    let inputs: Vec<PathBuf> = inputs.iter().map(|p| p.as_ref().to_path_buf()).collect();
    let out = out.as_ref();
    let dirs = output_dirs(&inputs, out);
    Ok(inputs
        .iter()
        .zip(dirs)
        .map(|(input, dir)| render_input(input, &dir, *dir != *out, config, &matcher, progress))
        .collect())
}

/// `out` for a single input, else `out/<stem>` with `-2`, `-3` for repeated stems.
fn output_dirs(inputs: &[PathBuf], out: &Path) -> Vec<PathBuf> {
    if inputs.len() == 1 {
        return vec![out.to_path_buf()];
    }
    let stems: Vec<String> = inputs.iter().map(|p| input_stem(p)).collect();
    file_stems(stems.iter().map(String::as_str))
        .into_iter()
        .map(|s| out.join(s))
        .collect()
}

/// `model.safetensors` → `model`; a folder → its name; an index → the model's name.
fn input_stem(p: &Path) -> String {
    let name = p
        .canonicalize()
        .ok()
        .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let name = name.strip_suffix(".index.json").unwrap_or(&name);
    name.strip_suffix(".safetensors").unwrap_or(name).to_owned()
}

fn render_input(
    input: &Path,
    dir: &Path,
    own_dir: bool,
    config: &RenderConfig,
    matcher: &Matcher,
    progress: &dyn Progress,
) -> InputReport {
    let input_str = input.display().to_string();
    let mut report = InputReport {
        input: input.into(),
        out_dir: dir.into(),
        manifest: Manifest {
            tensorheat: env!("CARGO_PKG_VERSION").to_owned(),
            inputs: vec![input_str.clone()],
            options: Options::from(config),
            tensors: Vec::new(),
            skipped: Vec::new(),
            errors: Vec::new(),
        },
        warnings: Vec::new(),
    };
    let error = |name: Option<&str>, e: &Error| ErrorEntry {
        input: input_str.clone(),
        name: name.map(str::to_owned),
        message: e.to_string(),
    };
    let manifest = &mut report.manifest;
    // Only partition 1 reports what belongs to no tensor, so that merging is a union.
    let first = config.partition.is_none_or(|p| p.k == 1);
    if let Err(e) = prepare_dir(dir, config.partition.is_some(), own_dir) {
        manifest.errors.push(error(None, &e));
        return report;
    }
    let model = match Model::open(input, Access::Data) {
        Ok(m) => m,
        Err(e) => {
            if first {
                manifest.errors.push(error(e.tensor_name(), &e));
            }
            finish_manifest(dir, config, &mut report, &error);
            return report;
        }
    };
    if first {
        report.warnings.extend(model.warnings.iter().cloned());
        for e in &model.errors {
            manifest.errors.push(error(e.tensor_name(), e));
        }
    }
    let mut jobs = Vec::new();
    let mut selected = 0;
    for &r in &model.tensors {
        let (shard, t) = model.tensor(r);
        if !matcher.matches(&t.name, t.dtype.name()) {
            continue;
        }
        selected += 1;
        let skip = |reason: &str| Skipped {
            name: t.name.clone(),
            source: shard.file_name(),
            dtype: t.dtype.name().to_owned(),
            reason: reason.to_owned(),
        };
        match &t.dtype {
            TensorDtype::Unknown(_) if first => manifest.skipped.push(skip("unsupported dtype")),
            TensorDtype::Known(_) if t.numel() == 0 => {
                if first {
                    manifest.skipped.push(skip("empty"));
                }
            }
            TensorDtype::Known(d) => jobs.push((r, *d)),
            TensorDtype::Unknown(_) => {}
        }
    }
    // A filter that leaves nothing is most often a typo ("model.layer.*").
    if first && selected == 0 && !model.tensors.is_empty() && !config.select.is_empty() {
        let which = match model.tensors.len() {
            1 => "its only tensor does not match".to_owned(),
            n => format!("none of its {n} tensors matches"),
        };
        report
            .warnings
            .push(format!("{input_str}: {which} the filters"));
    }
    // File names are decided over the whole selection, before partitioning.
    let stems = file_stems(jobs.iter().map(|&(r, _)| model.tensor(r).1.name.as_str()));
    let mut jobs: Vec<_> = jobs.into_iter().zip(stems).collect();
    if let Some(p) = config.partition {
        let sizes: Vec<u64> = jobs
            .iter()
            .map(|((r, _), _)| model.tensor(*r).1.nbytes() as u64)
            .collect();
        let mine = p.assign(&sizes);
        let mut it = mine.into_iter();
        jobs.retain(|_| it.next().unwrap_or(false));
    }
    let journal = match Journal::open(dir, config.partition, config.skip_existing) {
        Ok(j) => j,
        Err(e) => {
            manifest.errors.push(error(None, &e));
            finish_manifest(dir, config, &mut report, &error);
            return report;
        }
    };
    let bytes = jobs
        .iter()
        .map(|((r, _), _)| model.tensor(*r).1.nbytes() as u64)
        .sum();
    progress.input_started(input, jobs.len(), bytes);
    let options = serde_json::to_string(&manifest.options).unwrap_or_default();
    let companions = Companions::new(&model);
    if first {
        report
            .warnings
            .extend(companions.warning().map(str::to_owned));
    }
    let left = ShardsLeft::new(model.shards.len(), jobs.iter().map(|((r, _), _)| r.0));
    let results: Vec<(String, Result<TensorEntry>)> = jobs
        .par_iter()
        .map(|&((r, dtype), ref stem)| {
            let (shard, t) = model.tensor(r);
            let plan = companions.plan(r, config.fp8);
            // An FP8 weight's picture also depends on its scales and their block size.
            let scales = match &plan {
                Ok(Some((info, _))) => format!("{info:?}{:?}", companions.source_of(info)),
                _ => String::new(),
            };
            let fp = fingerprint(shard, t, &format!("{options}{scales}"), stem);
            let reused = config
                .skip_existing
                .then(|| journal.reusable(&fp))
                .flatten();
            let was_reused = reused.is_some();
            let result = match reused {
                Some(entry) => Ok(entry),
                None => plan
                    .and_then(|fp8| render_tensor(&model, r, dtype, fp8, stem, dir, config))
                    .and_then(|entry| journal.record(&fp, &entry).map(|()| entry)),
            };
            // Every failure names the tensor and its file (a failed write named only
            // the file written; the data's errors name only the tensor).
            let result = result.map_err(|e| match e {
                Error::Data { name, reason } => Error::Tensor {
                    path: shard.path.clone(),
                    name,
                    reason,
                },
                e if e.tensor_name().is_some() => e,
                e => Error::Tensor {
                    path: shard.path.clone(),
                    name: t.name.clone(),
                    reason: e.to_string(),
                },
            });
            let message = result.as_ref().err().map(ToString::to_string);
            let outcome = match (&result, &message) {
                (Ok(e), _) if was_reused => TensorOutcome::Reused(&e.image),
                (Ok(e), _) => TensorOutcome::Rendered(&e.image),
                (Err(_), m) => TensorOutcome::Failed(m.as_deref().unwrap_or_default()),
            };
            progress.tensor_finished(&t.name, t.nbytes() as u64, outcome);
            if left.done(r.0) {
                shard.release();
            }
            (fp, result)
        })
        .collect();
    let mut done = Vec::new();
    for (((r, _), _), (fp, res)) in jobs.iter().zip(results) {
        match res {
            Ok(entry) => {
                done.push((fp, entry.clone()));
                manifest.tensors.push(entry);
            }
            Err(e) => manifest
                .errors
                .push(error(Some(&model.tensor(*r).1.name), &e)),
        }
    }
    if let Err(e) = journal.finish(&done) {
        manifest.errors.push(error(None, &e));
    }
    finish_manifest(dir, config, &mut report, &error);
    report
}

/// How many of each shard's selected tensors are still to render, so that a shard's
/// page-table entries are dropped ([`crate::source::Shard::release`]) as soon as its
/// last one is done. Where the kernel frees emptied page tables, their memory (up to
/// 2 MiB per GB read) then stays that of the shards in flight, not of the whole model:
/// over 1 GB by the end of a 700 GB model of many shards. (The workers take the tensors
/// in name order, which in the usual checkpoints groups each shard's. A tensor that
/// reads an FP8 scale from a released shard faults the scale's pages in again.)
struct ShardsLeft(Vec<AtomicUsize>);

impl ShardsLeft {
    /// Counts for `shards` shards from the shard index of each selected tensor.
    fn new(shards: usize, tensors: impl Iterator<Item = usize>) -> ShardsLeft {
        let mut counts = vec![0; shards];
        for s in tensors {
            counts[s] += 1;
        }
        ShardsLeft(counts.into_iter().map(AtomicUsize::new).collect())
    }

    /// Marks one tensor of shard `s` done; true for the shard's last.
    fn done(&self, s: usize) -> bool {
        self.0[s].fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// Puts the manifest's lists in canonical order and writes it (`manifest.json`, or the
/// partition's `manifest.K-of-N.json`), then, unless partitioned, `index.html`.
fn finish_manifest(
    dir: &Path,
    config: &RenderConfig,
    report: &mut InputReport,
    error: &dyn Fn(Option<&str>, &Error) -> ErrorEntry,
) {
    let m = &mut report.manifest;
    m.canonicalize();
    let name = config
        .partition
        .map_or_else(|| "manifest.json".to_owned(), |p| p.manifest_name());
    if let Err(e) = write_manifest(dir, &name, m) {
        m.errors.push(error(None, &e));
    }
    // A partition's page would show only its share of the folder.
    if config.partition.is_none() {
        if let Err(e) = crate::gallery::write_gallery(dir, m) {
            m.errors.push(error(None, &e));
        }
    }
}

fn render_tensor(
    model: &Model,
    r: (usize, usize),
    dtype: Dtype,
    fp8: Option<(Fp8Info, Option<Scale<'_>>)>,
    stem: &str,
    dir: &Path,
    config: &RenderConfig,
) -> Result<TensorEntry> {
    let (shard, t) = model.tensor(r);
    let (fp8, scale) = fp8.map_or((None, None), |(i, s)| (Some(i), s));
    let h = heatmap_scaled(
        &t.name,
        shard.data(t),
        dtype,
        &t.shape,
        scale.as_ref(),
        config,
    )?;
    let image = format!("{stem}.png");
    write_atomic(dir, &image, &h.png)?;
    let raw = if config.raw {
        let name = format!("{stem}.npy");
        let npy = encode_npy(&h.grid, h.geometry.grid_h(), h.geometry.grid_w());
        write_atomic(dir, &name, &npy)?;
        Some(name)
    } else {
        None
    };
    let entry = TensorEntry {
        name: t.name.clone(),
        source: shard.file_name(),
        dtype: dtype.name().to_owned(),
        shape: t.shape.clone(),
        image,
        raw,
        grid: [h.geometry.grid_h(), h.geometry.grid_w()],
        block: [h.geometry.bh, h.geometry.bw],
        reduce: config.reduce.name().to_owned(),
        colormap: h.colormap.name(),
        range: h.range.map(|r| [r.lo, r.hi]),
        stats: h.stats,
        fp8,
    };
    recycle_grid(h.grid);
    Ok(entry)
}

/// Writes a manifest atomically as pretty JSON.
pub fn write_manifest(dir: &Path, name: &str, m: &Manifest) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(m).map_err(|e| Error::Option(e.to_string()))?;
    json.push(b'\n');
    write_atomic(dir, name, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_that_do_not_fit_are_errors_not_panics() {
        // A [4, 6] FP8 weight in blocks of [2, 3]: 2 × 2 F32 scales.
        let codes = [0x38u8; 24];
        let scales: Vec<u8> = [1f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let ok = Scale {
            data: &scales,
            dtype: Dtype::F32,
            rows: 2,
            cols: 2,
            bh: 2,
            bw: 3,
        };
        let run = |s: Scale<'_>| {
            let b = |n| std::num::NonZeroUsize::new(n).unwrap();
            let cfg = RenderConfig {
                size: crate::config::Size::Block(b(2), b(3)),
                ..RenderConfig::default()
            };
            heatmap_scaled("w", &codes, Dtype::F8E4M3, &[4, 6], Some(&s), &cfg)
        };
        // 0x38 is 1.0: cells of the scales' blocks are their scales.
        assert_eq!(run(ok).unwrap().grid, [1.0, 2.0, 3.0, 4.0]);
        // Each of these tripped an assertion or divided by zero in the reduction.
        for bad in [
            Scale { rows: 3, ..ok },
            Scale { cols: 1, ..ok },
            Scale { bh: 0, ..ok },
            Scale { bw: 0, ..ok },
            Scale {
                data: &scales[..8],
                ..ok
            },
        ] {
            match run(bad) {
                Err(Error::Data { name, reason }) => {
                    assert_eq!(name, "w");
                    assert!(reason.contains("do not fit shape [4, 6]"), "{reason}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // And the data's own error says how many bytes the shape needs.
        let short = heatmap(
            "w",
            &codes[..20],
            Dtype::F8E4M3,
            &[4, 6],
            &RenderConfig::default(),
        );
        assert!(
            matches!(&short, Err(Error::Data { reason, .. }) if reason.ends_with("needs 24 bytes, not 20")),
            "{short:?}"
        );
    }

    #[test]
    fn a_shard_is_done_once_after_its_last_tensor() {
        // Shard of each selected tensor: shard 1 has none, shard 3 one.
        let jobs: Vec<usize> = [0, 2, 0, 3, 2, 2, 0, 2, 0, 0].repeat(50);
        let mut total = [0usize; 4];
        for &s in &jobs {
            total[s] += 1;
        }
        let left = ShardsLeft::new(4, jobs.iter().copied());
        let finished: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
        let last: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
        jobs.par_iter().with_max_len(1).for_each(|&s| {
            finished[s].fetch_add(1, Ordering::Relaxed);
            if left.done(s) {
                // Every other tensor of the shard finished before this one was counted.
                assert_eq!(finished[s].load(Ordering::Relaxed), total[s]);
                last[s].fetch_add(1, Ordering::Relaxed);
            }
        });
        let last: Vec<usize> = last.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        assert_eq!(last, [1, 0, 1, 1]);
    }
}
