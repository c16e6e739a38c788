//! Writes a DeepSeek-style FP8 checkpoint (F8_E4M3 weights with per-128×128-tile
//! `_scale_inv` scales in a second shard, an index and a config.json) and renders it
//! twice: as stored (`--fp8 raw`) and dequantised (the default).
//!
//! ```text
//! cargo run --release --example fp8 -- [OUT_DIR]     # default target/fp8
//! ```
//! The weight hides an outlier input column and a band of hot output rows. Raw, each
//! 128 × 128 tile is scaled to ±448 on its own and the picture is a mosaic of tiles;
//! dequantised, the tiles vanish and the column and band appear.

#[path = "../tests/common/rng.rs"]
mod rng;

use std::num::NonZeroUsize;
use std::path::PathBuf;

use rng::Rng;
use safetensors::tensor::TensorView;
use safetensors::Dtype as StDtype;
use tensorheat::config::Fp8Mode;
use tensorheat::dtype::{decode_one, Dtype};
use tensorheat::{RenderConfig, Size};

/// Round-to-nearest F8_E4M3 encoder over the decoder's own table.
struct Encoder(Vec<(f32, u8)>);

impl Encoder {
    fn new() -> Encoder {
        let mut v: Vec<(f32, u8)> = (0..=0x7eu8)
            .map(|c| (decode_one(Dtype::F8E4M3, &[c]), c))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        Encoder(v)
    }
    fn encode(&self, x: f32) -> u8 {
        let a = x.abs();
        let i = self.0.partition_point(|p| p.0 < a);
        let best = match (self.0.get(i.wrapping_sub(1)), self.0.get(i)) {
            (Some(lo), Some(hi)) if a - lo.0 <= hi.0 - a => lo.1,
            (_, Some(hi)) => hi.1,
            (Some(lo), None) => lo.1,
            (None, None) => 0,
        };
        best | if x < 0.0 { 0x80 } else { 0 }
    }
}

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/fp8"), PathBuf::from);
    let model = out.join("model");
    std::fs::create_dir_all(&model)?;
    let (rows, cols, b) = (1024, 1536, 128);
    let (tr, tc) = (rows / b, cols / b);
    let mut rng = Rng::new(8);
    let mut w: Vec<f32> = (0..rows * cols).map(|_| rng.normal() * 0.02).collect();
    for r in 0..rows {
        w[r * cols + 700] *= 8.0;
    }
    for v in &mut w[300 * cols..316 * cols] {
        *v *= 4.0;
    }
    let mut scales = vec![0f32; tr * tc];
    for (k, v) in w.iter().enumerate() {
        let t = (k / cols / b) * tc + (k % cols) / b;
        scales[t] = scales[t].max(v.abs() / 448.0);
    }
    let enc = Encoder::new();
    let codes: Vec<u8> = w
        .iter()
        .enumerate()
        .map(|(k, v)| enc.encode(v / scales[(k / cols / b) * tc + (k % cols) / b]))
        .collect();
    let scale_bytes: Vec<u8> = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
    let name = "model.layers.0.mlp.down_proj.weight";
    let scale_name = format!("{name}_scale_inv");
    safetensors::serialize_to_file(
        [(
            name,
            TensorView::new(StDtype::F8_E4M3, vec![rows, cols], &codes)?,
        )],
        None,
        &model.join("model-00001-of-00002.safetensors"),
    )?;
    safetensors::serialize_to_file(
        [(
            scale_name.as_str(),
            TensorView::new(StDtype::F32, vec![tr, tc], &scale_bytes)?,
        )],
        None,
        &model.join("model-00002-of-00002.safetensors"),
    )?;
    let index = serde_json::json!({"weight_map": {
        name: "model-00001-of-00002.safetensors",
        scale_name: "model-00002-of-00002.safetensors"}});
    std::fs::write(
        model.join("model.safetensors.index.json"),
        index.to_string(),
    )?;
    std::fs::write(
        model.join("config.json"),
        r#"{"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}"#,
    )?;
    let n = NonZeroUsize::new(256).unwrap_or(NonZeroUsize::MIN);
    for (mode, dir) in [(Fp8Mode::Raw, "raw"), (Fp8Mode::Dequant, "dequant")] {
        let config = RenderConfig {
            size: Size::MaxSize(n, n),
            fp8: mode,
            ..RenderConfig::default()
        };
        tensorheat::render(std::slice::from_ref(&model), out.join(dir), &config)?;
        println!("{}", out.join(dir).join(format!("{name}.png")).display());
    }
    Ok(())
}
