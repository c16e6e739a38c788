//! Decode + reduce kernels per dtype, and the colour + PNG stage, on in-memory data.
//!
//! `cargo bench --bench kernels`. Throughput is reported in bytes of tensor data (or of
//! grid cells for the encoding stage) per second.

use std::num::NonZeroUsize;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tensorheat::colour::{choose_range, Colormap};
use tensorheat::output::encode_png;
use tensorheat::reduce::{reduce, reduce_scaled, Scale};
use tensorheat::view::Geometry;
use tensorheat::{Dtype, Reduction, Rgb, Size};

/// Pseudo-random bytes that decode to ordinary finite weights in every dtype.
fn weights(dtype: Dtype, n: usize) -> Vec<u8> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut out = Vec::with_capacity(n * dtype.size());
    for _ in 0..n {
        let r = next();
        let w = ((r >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1;
        match dtype {
            Dtype::BF16 => out.extend_from_slice(&((w.to_bits() >> 16) as u16).to_le_bytes()),
            Dtype::F16 => out.extend_from_slice(&half::f16::from_f32(w).to_le_bytes()),
            Dtype::F32 => out.extend_from_slice(&w.to_le_bytes()),
            // Any E4M3 code but NaN.
            _ => out.push(((r & 0xff) as u8).min(0x7e) | ((r >> 8) as u8 & 0x80)),
        }
    }
    out
}

fn kernels(c: &mut Criterion) {
    let (rows, cols) = (4096, 4096);
    let mut g = c.benchmark_group("reduce");
    for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32, Dtype::F8E4M3] {
        let data = weights(dtype, rows * cols);
        g.throughput(Throughput::Bytes(data.len() as u64));
        for max in [256, 1024, 8] {
            let n = NonZeroUsize::new(max).unwrap();
            let geom = Geometry::new(rows, cols, Size::MaxSize(n, n), false);
            let id = BenchmarkId::new(dtype.name(), format!("max{max}"));
            g.bench_with_input(id, &data, |b, d| {
                b.iter(|| reduce(d, dtype, &geom, Reduction::Mean))
            });
        }
    }
    // A down projection's width at the default size: cells 14 columns wide, not a power
    // of two, which the kernel folds by a segmented scan (BF16) or, for F8 `mean`, by
    // one permute per place in a cell.
    for dtype in [Dtype::BF16, Dtype::F16, Dtype::F8E4M3] {
        let (rows, cols) = (4096, 14336);
        let data = weights(dtype, rows * cols);
        g.throughput(Throughput::Bytes(data.len() as u64));
        let n = NonZeroUsize::new(1024).unwrap();
        let geom = Geometry::new(rows, cols, Size::MaxSize(n, n), false);
        let id = BenchmarkId::new(dtype.name(), "4096x14336-max1024");
        g.bench_with_input(id, &data, |b, d| {
            b.iter(|| reduce(d, dtype, &geom, Reduction::Mean))
        });
    }
    // The MLP of Qwen2.5-32B (27648 wide) at the default size: cells of 5 rows and 27
    // columns, which a 32-column chunk meets at most three of (folded by masked sums;
    // an F8 chunk as two such halves).
    for dtype in [Dtype::BF16, Dtype::F16, Dtype::F8E4M3] {
        let (rows, cols) = (1280, 27648);
        let data = weights(dtype, rows * cols);
        g.throughput(Throughput::Bytes(data.len() as u64));
        let (bh, bw) = (
            NonZeroUsize::new(5).unwrap(),
            NonZeroUsize::new(27).unwrap(),
        );
        let geom = Geometry::new(rows, cols, Size::Block(bh, bw), false);
        let id = BenchmarkId::new(dtype.name(), "1280x27648-5x27");
        g.bench_with_input(id, &data, |b, d| {
            b.iter(|| reduce(d, dtype, &geom, Reduction::Mean))
        });
    }
    // A model of hidden size 2048 at the default size: cells 2 columns wide (the narrow
    // kernel), in bands of 2 rows (an attention matrix) and 7 (an up projection).
    for dtype in [Dtype::BF16, Dtype::F32] {
        for rows in [2048, 7168] {
            let cols = 2048;
            let data = weights(dtype, rows * cols);
            g.throughput(Throughput::Bytes(data.len() as u64));
            let n = NonZeroUsize::new(1024).unwrap();
            let geom = Geometry::new(rows, cols, Size::MaxSize(n, n), false);
            let id = BenchmarkId::new(dtype.name(), format!("{rows}x{cols}-max1024"));
            g.bench_with_input(id, &data, |b, d| {
                b.iter(|| reduce(d, dtype, &geom, Reduction::Mean))
            });
        }
    }
    // FP8 with per-128x128 F32 scales multiplied in, against the plain F8 rows above.
    let data = weights(Dtype::F8E4M3, rows * cols);
    let scales: Vec<u8> = (0..32 * 32)
        .flat_map(|i| (1e-3 * (1 + i % 7) as f32).to_le_bytes())
        .collect();
    let scale = Scale {
        data: &scales,
        dtype: Dtype::F32,
        rows: 32,
        cols: 32,
        bh: 128,
        bw: 128,
    };
    g.throughput(Throughput::Bytes(data.len() as u64));
    for max in [256, 1024] {
        let n = NonZeroUsize::new(max).unwrap();
        let geom = Geometry::new(rows, cols, Size::MaxSize(n, n), false);
        let id = BenchmarkId::new("F8_E4M3-dequant", format!("max{max}"));
        g.bench_with_input(id, &data, |b, d| {
            b.iter(|| reduce_scaled(d, Dtype::F8E4M3, Some(&scale), &geom, Reduction::Mean))
        });
    }
    g.finish();
}

fn encoding(c: &mut Criterion) {
    let n = NonZeroUsize::new(1024).unwrap();
    let geom = Geometry::new(4096, 4096, Size::MaxSize(n, n), false);
    let data = weights(Dtype::BF16, 4096 * 4096);
    let grid = reduce(&data, Dtype::BF16, &geom, Reduction::Mean).grid;
    let lut = Colormap::diverging_default().lut();
    let mut g = c.benchmark_group("colour+png");
    g.throughput(Throughput::Elements(grid.len() as u64));
    g.bench_function("1024x1024", |b| {
        b.iter(|| {
            let range = choose_range(&grid, Reduction::Mean, 99.5, None);
            encode_png(&grid, 1024, range, &lut, Rgb([255, 0, 255]), None, &[]).unwrap()
        })
    });
    // The colour range alone: its percentile's partition pass.
    g.bench_function("range-1024x1024", |b| {
        b.iter(|| choose_range(&grid, Reduction::Mean, 99.5, None))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = kernels, encoding
}
criterion_main!(benches);
