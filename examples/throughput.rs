//! Measures rendering speed against the machine's own read ceiling, in one process.
//!
//! ```text
//! cargo run --release --example throughput -- [--gib G] [--dtype bf16|f16|f32|f8]
//!     [--hidden H] [--no-embedding] [--max-size N] [--runs N] [--threads N] [--single]
//!     [--keep FILE] [--file MODEL]
//! ```
//!
//! Writes a synthetic model of about G GiB (default 2) with the shapes of real LLM layers
//! (4096×4096, 14336×4096, 4096×14336, a 128256×4096 embedding, 1-D norms) into a
//! temporary folder, or with `--single` one square tensor of that size. `--hidden H` (at
//! least 64) scales the layers to hidden size H (H×H, 3.5H×H, H×3.5H, 128256×H): 2048
//! gives a model whose matrices but the down projections are at most 3072 columns wide,
//! so reduced in cells 1 to 3 columns wide with default options. `--no-embedding` leaves
//! the embedding out: at 2 GiB it is half the model (in a real model of this hidden size,
//! 16 GB, it is a sixteenth), and its tall cells reduce faster per byte than the layers'
//! (with default options, 4 × 4 and 4 × 14 cells in bands of 4 rows). Then, alternating,
//! `--runs` times (default 5): (a) the read ceiling, a parallel sum of the file's u64 words
//! on all cores, in the widest vector loads the CPU has and with a software prefetch 4
//! KiB ahead, through the library's own memory map (`source::Shard`), opened and released
//! as `render` does it; (b) a full `tensorheat::render` with the given options, into a
//! new folder that is removed after it is timed. Prints the median GB/s of each, their
//! ratio, and the peak heap during (b), from a counting global allocator. Each run also
//! times a plain sum (16-byte loads, no prefetch), the read ceiling of the tables before
//! 2026-12-02, and prints the ratio to it too: on some CPUs it reads far below what
//! memory gives, and a render beats it.
//!
//! Both timings include releasing the map: dropping a file's page-table entries is part
//! of reading it through a map (4–6% of the ceiling's time for a 2 GiB file here), and
//! `render` cannot return before it is done. For comparison with earlier measurements
//! (the ceiling used to stop its clock before its release), the ratio to the ceiling
//! without its release is printed too.
//!
//! The model is flushed to disk before anything is timed, and each run writes into a
//! folder of its own: otherwise the runs would also time the disk. The model's own
//! write-back competes for the cores; earlier runs' pictures left in place pile up as
//! dirty pages until the kernel throttles further writes to the disk's speed (F8 with
//! default options writes 46 MB a run, and from the fourth run on each PNG took ~3 ms
//! instead of ~0.3); and on ext4, renaming a new file over an old one starts its
//! write-back at once (~5% of an F8 render at `--max-size 256`).
//!
//! `--keep FILE` writes the model to FILE and leaves it there (to time other tools on the
//! same bytes). `--file MODEL` times an existing `.safetensors` file instead of writing
//! one (`--gib`, `--dtype`, `--single` and `--keep` are then ignored, with a warning):
//! your own model, or one in another page-cache state than a freshly written file's (a
//! model read in from disk sits in larger folios, which changes both timings). It is
//! flushed to disk first as a written model is, and read once before the timed runs, so
//! these always run on pages in the cache.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufWriter, Write};
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use tensorheat::source::Shard;
use tensorheat::{RenderConfig, Size};

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwards the caller's layout to the system allocator unchanged.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

struct Args {
    gib: f64,
    dtype: String,
    max_size: usize,
    runs: usize,
    threads: Option<usize>,
    single: bool,
    hidden: usize,
    embedding: bool,
    keep: Option<std::path::PathBuf>,
    file: Option<std::path::PathBuf>,
    /// The options given that only describe a model to write.
    model_options: Vec<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        gib: 2.0,
        dtype: "bf16".into(),
        max_size: 1024,
        runs: 5,
        threads: None,
        single: false,
        hidden: 4096,
        embedding: true,
        keep: None,
        file: None,
        model_options: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if matches!(
            k.as_str(),
            "--gib" | "--dtype" | "--single" | "--hidden" | "--no-embedding" | "--keep"
        ) {
            a.model_options.push(k.clone());
        }
        let mut v = || it.next().unwrap_or_default();
        match k.as_str() {
            "--gib" => a.gib = v().parse().unwrap_or(a.gib),
            "--dtype" => a.dtype = v(),
            "--max-size" => a.max_size = v().parse().unwrap_or(a.max_size),
            "--runs" => a.runs = v().parse().unwrap_or(a.runs),
            "--threads" => a.threads = v().parse().ok(),
            "--single" => a.single = true,
            "--hidden" => a.hidden = v().parse().unwrap_or(a.hidden),
            "--no-embedding" => a.embedding = false,
            "--keep" => a.keep = Some(v().into()),
            "--file" => a.file = Some(v().into()),
            other => eprintln!("ignoring unknown argument {other:?}"),
        }
    }
    a
}

/// Makes one element's little-endian bytes (the first `size` of four) from 64 random bits.
type Gen = fn(u64) -> [u8; 4];

/// (safetensors dtype, bytes per element, element generator).
fn dtype_info(name: &str) -> (&'static str, usize, Gen) {
    fn normalish(r: u64) -> f32 {
        // Sum of four 16-bit uniforms: roughly normal, scaled like a weight.
        let s: u32 = (0..4).map(|i| ((r >> (16 * i)) & 0xffff) as u32).sum();
        (s as f32 / 65536.0 - 2.0) * 0.035
    }
    match name {
        "f32" => ("F32", 4, |r| normalish(r).to_le_bytes()),
        "f16" => ("F16", 2, |r| {
            let b = half::f16::from_f32(normalish(r)).to_le_bytes();
            [b[0], b[1], 0, 0]
        }),
        "f8" => ("F8_E4M3", 1, |r| {
            // Any code but the two NaNs (S.1111.111).
            let c = (r & 0xff) as u8;
            [if c & 0x7f == 0x7f { c - 1 } else { c }, 0, 0, 0]
        }),
        _ => ("BF16", 2, |r| {
            let b = ((normalish(r).to_bits() + 0x8000) >> 16) as u16;
            let b = b.to_le_bytes();
            [b[0], b[1], 0, 0]
        }),
    }
}

/// Tensor shapes of hidden size `h` adding up to about `bytes` for elements of `size`
/// bytes, with an embedding if asked for and it fits.
fn shapes(
    bytes: u64,
    size: usize,
    single: bool,
    h: usize,
    embedding: bool,
) -> Vec<(String, Vec<usize>)> {
    if single {
        let side = ((bytes / size as u64) as f64).sqrt() as usize;
        return vec![("weight".into(), vec![side, side])];
    }
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![128256, h])];
    let ffn = h * 7 / 2;
    let layer = [
        ("self_attn.q_proj.weight", vec![h, h]),
        ("self_attn.o_proj.weight", vec![h, h]),
        ("mlp.gate_proj.weight", vec![ffn, h]),
        ("mlp.down_proj.weight", vec![h, ffn]),
        ("input_layernorm.weight", vec![h]),
    ];
    let bytes_of = |s: &[usize]| s.iter().product::<usize>() as u64 * size as u64;
    let mut total = bytes_of(&out[0].1);
    if total > bytes || !embedding {
        // Small runs, or none asked for: no embedding, whole layers only.
        out.clear();
        total = 0;
    }
    'layers: for l in 0.. {
        for (n, s) in &layer {
            let next = bytes_of(s);
            if total + next > bytes && !out.is_empty() {
                break 'layers;
            }
            out.push((format!("model.layers.{l}.{n}"), s.clone()));
            total += next;
        }
    }
    out
}

fn write_model(
    path: &Path,
    gib: f64,
    dtype: &str,
    single: bool,
    hidden: usize,
    embedding: bool,
) -> std::io::Result<u64> {
    let (name, size, gen) = dtype_info(dtype);
    let target = (gib * (1u64 << 30) as f64) as u64;
    let tensors = shapes(target, size, single, hidden, embedding);
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (n, s) in &tensors {
        let bytes = s.iter().product::<usize>() as u64 * size as u64;
        header.insert(
            n.clone(),
            serde_json::json!({"dtype": name, "shape": s, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut h = serde_json::to_vec(&header)?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut w = BufWriter::with_capacity(1 << 22, std::fs::File::create(path)?);
    w.write_all(&(h.len() as u64).to_le_bytes())?;
    w.write_all(&h)?;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut left = offset / size as u64;
    while left > 0 {
        buf.clear();
        let n = left.min((1 << 20) / size as u64);
        for _ in 0..n {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            buf.extend_from_slice(&gen(state)[..size]);
        }
        w.write_all(&buf)?;
        left -= n;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(8 + h.len() as u64 + offset)
}

/// One pass of the read ceiling: the file mapped and released as `render` maps and
/// releases it (a [`Shard`]), every tensor byte summed by `sum` on all cores in between,
/// in 1 MiB pieces. Returns the seconds with and without the release, and the sum.
fn read_ceiling(path: &Path, sum: fn(&[u8]) -> u64) -> anyhow::Result<(f64, f64, u64)> {
    let t = Instant::now();
    let shard = Shard::open(path)?;
    let pieces: Vec<&[u8]> = (shard.header.tensors.iter())
        .flat_map(|info| shard.data(info).chunks(1 << 20))
        .collect();
    let total = pieces
        .par_iter()
        .map(|c| sum(c))
        .reduce(|| 0, u64::wrapping_add);
    let read = t.elapsed().as_secs_f64();
    drop(pieces);
    drop(shard);
    Ok((t.elapsed().as_secs_f64(), read, total))
}

/// The plain sum of a piece's u64 words, in order: the read ceiling of every table
/// before 2026-12-02.
fn plain_sum(c: &[u8]) -> u64 {
    c.chunks_exact(8)
        .map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
        .fold(0u64, u64::wrapping_add)
}

/// Bytes ahead of the current line that [`prefetching_sum`] prefetches.
const AHEAD: usize = 4096;

/// The read ceiling's sum: a piece's u64 words a 64-byte line at a time, each line's
/// eight words into eight sums (one vector add with AVX-512, two with AVX2, chosen at
/// run time), with a software prefetch [`AHEAD`] bytes on. On the development machine
/// the plain sum, with 16-byte loads and the hardware prefetchers alone, read at 19–21
/// GB/s on 2 cores where this one read at 27–29 (and with 16-byte loads at 25–28),
/// alternating on fresh maps of one file; a render there ran at up to 1.3 times the
/// plain sum, as the kernels load whole lines and prefetch.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2", "x86_64+avx2"))]
fn prefetching_sum(c: &[u8]) -> u64 {
    let mut sums = [0u64; 8];
    for (k, line) in c.chunks_exact(64).enumerate() {
        let ahead = k * 64 + AHEAD;
        if ahead < c.len() {
            prefetch(c[ahead..].as_ptr());
        }
        for (s, w) in sums.iter_mut().zip(line.chunks_exact(8)) {
            *s = s.wrapping_add(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
    }
    let tail = plain_sum(&c[c.len() / 64 * 64..]);
    sums.into_iter().fold(tail, u64::wrapping_add)
}

#[cfg(target_arch = "x86_64")]
fn prefetch(p: *const u8) {
    // SAFETY: SSE, the intrinsic's one target feature, is part of x86-64; a prefetch
    // only hints the cache and never faults, whatever the address.
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast()) };
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch(_: *const u8) {}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let a = parse_args();
    // (Smaller layers would make a model of hundreds of thousands of tensors.)
    anyhow::ensure!(a.hidden >= 64, "--hidden must be at least 64");
    if let Some(n) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()?;
    }
    let dir = tempfile::tempdir()?;
    let (model, bytes) = match &a.file {
        Some(f) => {
            if !a.model_options.is_empty() {
                eprintln!("--file given: ignoring {}", a.model_options.join(", "));
            }
            let open = || -> std::io::Result<u64> {
                let file = std::fs::File::open(f)?;
                file.sync_all()?;
                Ok(file.metadata()?.len())
            };
            let bytes = open().with_context(|| f.display().to_string())?;
            (f.clone(), bytes)
        }
        None => {
            let model = a
                .keep
                .clone()
                .unwrap_or_else(|| dir.path().join("model.safetensors"));
            let bytes = write_model(&model, a.gib, &a.dtype, a.single, a.hidden, a.embedding)?;
            (model, bytes)
        }
    };
    let n = NonZeroUsize::new(a.max_size).unwrap_or(NonZeroUsize::MIN);
    let config = RenderConfig {
        size: Size::MaxSize(n, n),
        ..RenderConfig::default()
    };
    let gb = bytes as f64 / 1e9;
    let what = match &a.file {
        Some(f) => f.display().to_string(),
        None if a.single => format!("{} (one tensor)", a.dtype),
        None => format!(
            "{} (LLM layer shapes, hidden size {}{})",
            a.dtype,
            a.hidden,
            if a.embedding { "" } else { ", no embedding" }
        ),
    };
    println!(
        "model: {:.2} GB {}, max-size {}, {} threads, {} runs",
        gb,
        what,
        a.max_size,
        rayon::current_num_threads(),
        a.runs
    );
    // Warm the page cache once.
    read_ceiling(&model, plain_sum)?;
    let (mut read, mut unreleased, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    let (mut render, mut peaks) = (Vec::new(), Vec::new());
    for run in 0..a.runs {
        let (plain_secs, _, a) = read_ceiling(&model, plain_sum)?;
        let (secs, before_release, b) = read_ceiling(&model, prefetching_sum)?;
        anyhow::ensure!(a == b, "the two sums of the file disagree");
        read.push(gb / secs);
        unreleased.push(gb / before_release);
        plain.push(gb / plain_secs);
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let out = dir.path().join(format!("out-{run}"));
        let t = Instant::now();
        let reports = tensorheat::render(std::slice::from_ref(&model), &out, &config)?;
        render.push(gb / t.elapsed().as_secs_f64());
        peaks.push(PEAK.load(Ordering::Relaxed) - base);
        std::fs::remove_dir_all(&out)?;
        if let Some(e) = reports.iter().flat_map(|r| &r.manifest.errors).next() {
            anyhow::bail!("render failed: {}", e.message);
        }
    }
    let (r, w) = (median(&mut read), median(&mut render));
    let (u, p) = (median(&mut unreleased), median(&mut plain));
    let peak = peaks.iter().copied().max().unwrap_or(0);
    println!("read ceiling  {r:7.2} GB/s (median)");
    println!("render        {w:7.2} GB/s (median)");
    println!("ratio         {:7.2}", w / r);
    println!(
        "(the ceiling without releasing its map: {u:.2} GB/s, ratio {:.2})",
        w / u
    );
    println!(
        "(the plain sum alone, as earlier tables: {p:.2} GB/s, ratio {:.2})",
        w / p
    );
    println!(
        "peak heap     {:7.1} MiB during render",
        peak as f64 / (1 << 20) as f64
    );
    Ok(())
}
