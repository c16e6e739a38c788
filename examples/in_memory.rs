//! Renders one tensor held in memory, no safetensors file involved: a 64 × 96 float32
//! matrix with a diagonal ridge and one hot column, turned into PNG bytes by
//! [`tensorheat::heatmap`] and written to a file.
//!
//! ```text
//! cargo run --example in_memory -- [OUT.png]
//! ```
//! writes `OUT.png` (default `target/in_memory.png`) and prints the grid, range and
//! statistics.

use std::path::PathBuf;

use tensorheat::{heatmap, Dtype, RenderConfig};

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/in_memory.png"), PathBuf::from);
    let (rows, cols) = (64usize, 96usize);
    let values: Vec<f32> = (0..rows * cols)
        .map(|k| {
            let (i, j) = ((k / cols) as f32, (k % cols) as f32);
            let ridge = (-((j - i * 1.5) / 6.0).powi(2)).exp();
            let hot = if k % cols == 70 { 2.0 } else { 0.0 };
            ridge - 0.3 + hot
        })
        .collect();
    // Tensors arrive as little-endian bytes, exactly as they sit in a safetensors file.
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let map = heatmap(
        "demo.ridge",
        &bytes,
        Dtype::F32,
        &[rows, cols],
        &RenderConfig::default(),
    )?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &map.png)?;
    let range = match map.range {
        Some(r) => format!("{:.4} to {:.4}", r.lo, r.hi),
        None => "none: no finite cell".into(),
    };
    let mean = map.stats.mean.map_or("none".into(), |m| format!("{m:.6}"));
    println!(
        "{}: {} × {} pixels, colormap {}, range {range}, mean {mean}",
        out.display(),
        map.geometry.grid_w(),
        map.geometry.grid_h(),
        map.colormap.name(),
    );
    Ok(())
}
