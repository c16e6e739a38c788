//! FP8 block-scaled weights, as in DeepSeek-V3/R1 checkpoints.
//!
//! Such a checkpoint stores a linear weight as F8_E4M3 codes plus a companion
//! `<name>_scale_inv` tensor with one scale per block of the weight (128 × 128 by
//! convention), possibly in another shard; the real weight is
//! `w[i, j] = q[i, j] × s[i / bh, j / bw]`. Every block's codes are scaled to reach ±448
//! on their own, so rendering the codes shows the storage format as a mosaic. By default
//! tensorheat multiplies the scales in while the data streams through the aggregation
//! (no copy); `--fp8 raw` shows the codes.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::Fp8Mode;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::reduce::Scale;
use crate::source::TensorDtype;
use crate::view::view;

/// Suffix of the companion scale tensor's name.
pub const SCALE_SUFFIX: &str = "_scale_inv";

/// How an FP8 weight was rendered, recorded in its manifest entry as `"fp8"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fp8Info {
    /// Name of the scale tensor, or `null` when there is none.
    pub scale: Option<String>,
    /// `[bh, bw]` weight rows and columns per scale, or `null`.
    pub block: Option<[usize; 2]>,
    /// `dequant` or `raw`.
    pub mode: String,
    /// Why the mode differs from the one asked for, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Finds tensors by name in a model, and the checkpoint's declared block size.
pub struct Companions<'m> {
    model: &'m Model,
    by_name: HashMap<&'m str, (usize, usize)>,
    block: Option<[usize; 2]>,
    warning: Option<String>,
}

impl<'m> Companions<'m> {
    /// Indexes `model` (once per input: a lookup per weight would be quadratic).
    pub fn new(model: &'m Model) -> Companions<'m> {
        let by_name = model
            .tensors
            .iter()
            .map(|&r| (model.tensor(r).1.name.as_str(), r))
            .collect();
        let (block, warning) = match model.shards.first() {
            Some(s) => weight_block_size(crate::model::folder_of(&s.path)),
            None => (None, None),
        };
        Companions {
            model,
            by_name,
            block,
            warning,
        }
    }

    /// Why a `config.json` beside the shards could not be read (a missing one is fine).
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// Size and modification time of the shard holding `info`'s scale tensor, if any
    /// (part of the fingerprint that `--skip-existing` compares).
    pub fn source_of(&self, info: &Fp8Info) -> Option<(u64, Option<std::time::SystemTime>)> {
        let r = *self.by_name.get(info.scale.as_deref()?)?;
        let shard = self.model.tensor(r).0;
        Some((shard.len, shard.modified))
    }

    /// For tensor `r`: `None` unless it is an FP8 weight; else how to render it and,
    /// in dequant mode, the scales to multiply in.
    pub fn plan(
        &self,
        r: (usize, usize),
        mode: Fp8Mode,
    ) -> Result<Option<(Fp8Info, Option<Scale<'m>>)>> {
        let (shard, t) = self.model.tensor(r);
        if !matches!(t.dtype, TensorDtype::Known(Dtype::F8E4M3 | Dtype::F8E5M2)) {
            return Ok(None);
        }
        let scale_name = format!("{}{SCALE_SUFFIX}", t.name);
        let Some(&sr) = self.by_name.get(scale_name.as_str()) else {
            return Ok(Some((
                Fp8Info {
                    scale: None,
                    block: None,
                    mode: "raw".into(),
                    note: (mode == Fp8Mode::Dequant).then(|| {
                        format!("no {scale_name:?} in the model: the raw codes are shown")
                    }),
                },
                None,
            )));
        };
        let (sshard, st) = self.model.tensor(sr);
        let bad = |reason: String| Error::Tensor {
            path: shard.path.clone(),
            name: t.name.clone(),
            reason: format!(
                "scale tensor {scale_name:?} in {}: {reason}",
                sshard.file_name()
            ),
        };
        let TensorDtype::Known(sdtype) = st.dtype else {
            return Err(bad(format!("has unsupported dtype {}", st.dtype.name())));
        };
        let [srows, scols] = st.shape[..] else {
            return Err(bad(format!("has shape {:?}, not two dimensions", st.shape)));
        };
        if t.shape.len() != 2 {
            return Err(bad(format!(
                "weight shape {:?} is not two-dimensional",
                t.shape
            )));
        }
        let (rows, cols) = view(&t.shape);
        // (Blocks are never 0: `weight_block_size` does not take a zero.)
        let fits = |[bh, bw]: [usize; 2]| rows.div_ceil(bh) == srows && cols.div_ceil(bw) == scols;
        let block = match self.block {
            Some(b) if fits(b) => b,
            Some(b) => {
                return Err(bad(format!(
                    "shape [{srows}, {scols}] does not fit weight [{rows}, {cols}] in blocks of {b:?} (config.json)"
                )))
            }
            None if fits([128, 128]) => [128, 128],
            None if srows > 0 && scols > 0 && rows % srows == 0 && cols % scols == 0 => {
                [rows / srows, cols / scols]
            }
            None => {
                return Err(bad(format!(
                    "shape [{srows}, {scols}] does not divide weight [{rows}, {cols}] into blocks"
                )))
            }
        };
        let info = Fp8Info {
            scale: Some(scale_name),
            block: Some(block),
            mode: match mode {
                Fp8Mode::Dequant => "dequant".into(),
                Fp8Mode::Raw => "raw".into(),
            },
            note: None,
        };
        let scale = (mode == Fp8Mode::Dequant).then(|| Scale {
            data: sshard.data(st),
            dtype: sdtype,
            rows: srows,
            cols: scols,
            bh: block[0],
            bw: block[1],
        });
        Ok(Some((info, scale)))
    }
}

/// `quantization_config.weight_block_size` from `config.json` in `dir`, if present, and
/// a warning naming the file if it is there but cannot be read (not a regular file, say),
/// is not JSON, or gives a block size that is not two positive whole numbers.
fn weight_block_size(dir: &Path) -> (Option<[usize; 2]>, Option<String>) {
    let path = dir.join("config.json");
    let unused = |why: String| {
        let warning = format!(
            "{}: {why}; its weight_block_size is not used",
            path.display()
        );
        (None, Some(warning))
    };
    match crate::source::read_regular(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => match block_size_in(&v) {
                Ok(block) => (block, None),
                Err(b) => unused(format!(
                    "quantization_config.weight_block_size is {b}, not [rows, columns] of \
                     positive whole numbers"
                )),
            },
            Err(e) => unused(format!("not JSON ({e})")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => unused(e.to_string()),
    }
}

/// `quantization_config.weight_block_size` of a `config.json` (`None` if absent or
/// null); the value itself if it is not two positive whole numbers.
fn block_size_in(v: &serde_json::Value) -> Result<Option<[usize; 2]>, &serde_json::Value> {
    let Some(b) = v
        .get("quantization_config")
        .and_then(|q| q.get("weight_block_size"))
        .filter(|b| !b.is_null())
    else {
        return Ok(None);
    };
    let whole = |x: &serde_json::Value| {
        x.as_u64()
            .filter(|&x| x > 0)
            .and_then(|x| usize::try_from(x).ok())
    };
    match b.as_array().map(Vec::as_slice) {
        Some([h, w]) => whole(h).zip(whole(w)).map(|(h, w)| Some([h, w])).ok_or(b),
        _ => Err(b),
    }
}
