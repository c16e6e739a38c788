//! Writes a small synthetic "model" whose weights hide the patterns people look for in
//! real checkpoints, then renders it with the library:
//!
//! - `q_proj`: an outlier input dimension (column 1337) — a vertical line;
//! - `o_proj`: a band of hot output rows (600..640) — a horizontal band;
//! - `up_proj`: every 128 × 128 tile scaled on its own, as raw FP8 codes look — a mosaic;
//! - `embed_tokens`: the last 1,000 rows never trained (all zero) — a flat block;
//! - `norm`: weights near 1 — the colour range hugs the data, not zero.
//!
//! ```text
//! cargo run --release --example synthetic -- [OUT_DIR] [--max-size N]
//! ```
//! writes `OUT_DIR/synthetic.safetensors` (default `target/synthetic`) and the PNGs and
//! manifest in `OUT_DIR/render/`.

#[path = "../tests/common/rng.rs"]
mod rng;

use std::num::NonZeroUsize;
use std::path::PathBuf;

use rng::Rng;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use tensorheat::{RenderConfig, Size};

fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| ((x.to_bits() + 0x8000) >> 16).to_le_bytes()[..2].to_vec())
        .collect()
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut out = PathBuf::from("target/synthetic");
    let mut max = 1024;
    while let Some(a) = args.next() {
        if a == "--max-size" {
            max = args.next().and_then(|n| n.parse().ok()).unwrap_or(max);
        } else {
            out = PathBuf::from(a);
        }
    }
    std::fs::create_dir_all(&out)?;
    let mut rng = Rng::new(2024);
    let mut normal = |n: usize, s: f32| (0..n).map(|_| rng.normal() * s).collect::<Vec<f32>>();

    let d = 2048;
    let mut q = normal(d * d, 0.02);
    for r in 0..d {
        q[r * d + 1337] *= 12.0;
    }
    let mut o = normal(d * d, 0.02);
    for v in &mut o[600 * d..640 * d] {
        *v *= 6.0;
    }
    let (ur, uc) = (1536, 2048);
    let mut up = normal(ur * uc, 0.02);
    let mut tile_rng = Rng::new(99);
    let scales: Vec<f32> = (0..(ur / 128) * (uc / 128))
        .map(|_| 0.15 + 3.0 * tile_rng.uniform())
        .collect();
    for r in 0..ur {
        for c in 0..uc {
            up[r * uc + c] *= scales[(r / 128) * (uc / 128) + c / 128];
        }
    }
    let (vocab, hidden) = (8192, 512);
    let mut embed = normal(vocab * hidden, 0.05);
    for v in &mut embed[(vocab - 1000) * hidden..] {
        *v = 0.0;
    }
    let norm: Vec<f32> = normal(d, 0.05).iter().map(|x| 1.0 + x).collect();

    let tensors = [
        ("model.layers.0.self_attn.q_proj.weight", vec![d, d], q),
        ("model.layers.0.self_attn.o_proj.weight", vec![d, d], o),
        ("model.layers.0.mlp.up_proj.weight", vec![ur, uc], up),
        ("model.embed_tokens.weight", vec![vocab, hidden], embed),
        ("model.norm.weight", vec![d], norm),
    ];
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n.to_owned(), s, bf16_bytes(&v)))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::BF16, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let file = out.join("synthetic.safetensors");
    safetensors::serialize_to_file(views, None, &file)?;

    let n = NonZeroUsize::new(max).unwrap_or(NonZeroUsize::MIN);
    let config = RenderConfig {
        size: Size::MaxSize(n, n),
        ..RenderConfig::default()
    };
    let render_dir = out.join("render");
    for report in tensorheat::render(&[file], &render_dir, &config)? {
        for t in &report.manifest.tensors {
            let range = match t.range {
                Some([lo, hi]) => format!("{lo:.4} to {hi:.4}"),
                None => "none: no finite cell".into(),
            };
            println!(
                "{:<45} {:?} -> {} ({}x{}, range {range})",
                t.name, t.shape, t.image, t.grid[0], t.grid[1]
            );
        }
    }
    println!("wrote {}", render_dir.display());
    Ok(())
}
