//! Renders a safetensors file with hand-picked options instead of the defaults: cells are
//! the largest magnitude of their block (`absmax`), grids at most 8 × 16 cells, the
//! `magma` colormap, and `.npy` grids beside the PNGs.
//!
//! ```text
//! cargo run --example custom_options -- [INPUT] [OUT_DIR]
//! ```
//! INPUT defaults to `tests/fixtures/gradients.safetensors`, OUT_DIR to
//! `target/custom_options`; the PNGs, `.npy` grids, `manifest.json` and `index.html`
//! go there.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use tensorheat::{Reduction, RenderConfig, Size};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let input = args.next().map_or_else(
        || PathBuf::from("tests/fixtures/gradients.safetensors"),
        PathBuf::from,
    );
    let out = args
        .next()
        .map_or_else(|| PathBuf::from("target/custom_options"), PathBuf::from);
    let (h, w) = (NonZeroUsize::new(8), NonZeroUsize::new(16));
    let config = RenderConfig {
        reduce: Reduction::AbsMax,
        size: Size::MaxSize(h.expect("8 is not zero"), w.expect("16 is not zero")),
        colormap: Some("magma".parse()?),
        raw: true,
        ..RenderConfig::default()
    };
    let reports = tensorheat::render(&[input], &out, &config)?;
    let mut failed = false;
    for report in &reports {
        for t in &report.manifest.tensors {
            println!(
                "{:<16} {:>8} {:?} -> {} ({}×{} cells of {}×{}, range {:?})",
                t.name,
                t.dtype,
                t.shape,
                t.image,
                t.grid[0],
                t.grid[1],
                t.block[0],
                t.block[1],
                t.range
            );
        }
        for e in &report.manifest.errors {
            eprintln!("error: {}", e.message);
        }
        failed |= report.failed();
        println!("wrote {}", report.out_dir.join("index.html").display());
    }
    if failed {
        anyhow::bail!("some tensors failed");
    }
    Ok(())
}
