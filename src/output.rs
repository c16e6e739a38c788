//! Writing results: safe file names, atomic files, PNG and `.npy` encoding.
//!
//! Every file is written under a temporary name (`.tensorheat-*.tmp`) in the destination
//! folder and renamed into place, so an interrupted run never leaves a half-written file.
//! File names come only from [`file_stems`], whose output is a single path component of
//! `[A-Za-z0-9._-]` that never starts with `.`: no tensor name can reach outside the
//! output folder.

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::Path;

use multiversion::multiversion;

use crate::colour::{Lut, Range};
use crate::config::Rgb;
use crate::error::{Error, Result};

/// Prefix of temporary files; stale ones from a killed run are removed on the next run.
pub const TEMP_PREFIX: &str = ".tensorheat-";
const MAX_STEM: usize = 200;

/// File stems (without extension) for tensor names given in natural-sort order.
///
/// Bytes outside `[A-Za-z0-9._-]` become `_`; an empty stem or one starting with `.` gets
/// a `_` prefix, as do Windows device names; stems over 200 bytes are cut and end in a
/// hash of the full name; stems equal ignoring ASCII case get `-2`, `-3`, ... in order,
/// skipping any that is another name's own stem (so that `q-2` stays `q-2` beside `q`
/// and `Q`, and `q` becomes `q-3`).
pub fn file_stems<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let bases: Vec<String> = names.into_iter().map(safe_stem).collect();
    // Every name's own stem is taken before any suffix is given out.
    let mut taken: HashSet<String> = bases.iter().map(|b| b.to_ascii_lowercase()).collect();
    let mut own = HashSet::new();
    // Next suffix to try per base, so that many names with one base stay linear.
    let mut next: HashMap<String, usize> = HashMap::new();
    bases
        .into_iter()
        .map(|base| {
            let key = base.to_ascii_lowercase();
            if own.insert(key.clone()) {
                return base;
            }
            let k = next.entry(key).or_insert(2);
            loop {
                let stem = format!("{base}-{k}");
                *k += 1;
                if taken.insert(stem.to_ascii_lowercase()) {
                    return stem;
                }
            }
        })
        .collect()
}

fn safe_stem(name: &str) -> String {
    let mut s: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                char::from(b)
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') || is_device_name(&s) {
        s.insert(0, '_');
    }
    if s.len() > MAX_STEM {
        s.truncate(MAX_STEM - 17);
        s.push_str(&format!("-{:016x}", fnv1a(name.as_bytes())));
    }
    s
}

/// Windows reserves these names in every folder, with any extension.
fn is_device_name(s: &str) -> bool {
    let head = s.split('.').next().unwrap_or("").to_ascii_uppercase();
    matches!(head.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (head.len() == 4
            && (head.starts_with("COM") || head.starts_with("LPT"))
            && head.as_bytes()[3].is_ascii_digit())
}

/// 64-bit FNV-1a: a stable, dependency-free hash for shortened file names.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes `dir/file_name` atomically: into a temporary file in `dir`, then renamed.
pub fn write_atomic(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<()> {
    let target = dir.join(file_name);
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX).suffix(".tmp");
    // Temporary files default to 0600; results should get the usual 0666 & !umask.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let failed = |e| Error::io(&target, without_temp_name(e));
    let tmp = builder.tempfile_in(dir).map_err(failed)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        w.write_all(bytes)
            .and_then(|()| w.flush())
            .map_err(|e| Error::io(&target, e))?;
    }
    tmp.persist(&target).map_err(|e| failed(e.error))?;
    Ok(())
}

/// `e` without the random temporary file name `tempfile` adds to its errors (`... at
/// path "out/.tensorheat-x1Y2z3.tmp"`): the error names the file being written instead,
/// and reads the same in every run (a tensor's lands in the manifest).
fn without_temp_name(e: std::io::Error) -> std::io::Error {
    match e.to_string().split_once(" at path ") {
        Some((why, _)) => std::io::Error::new(e.kind(), why.to_owned()),
        None => e,
    }
}

/// Removes temporary files left in `dir` by an interrupted run. With `shared` (other
/// workers may be writing into `dir` right now) only files older than ten minutes are
/// taken as stale: writing one file takes milliseconds.
pub fn remove_stale_temps(dir: &Path, shared: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let old = |e: &std::fs::DirEntry| {
        e.metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 600)
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) && name.ends_with(".tmp") && (!shared || old(&e)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Colour of `--tile-lines` lines.
pub const LINE: [u8; 3] = [0, 0, 0];

/// Grid rows and columns to draw as lines (`--tile-lines`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marks {
    /// One flag per grid row.
    pub rows: Vec<bool>,
    /// One flag per grid column.
    pub cols: Vec<bool>,
}

impl Marks {
    /// The cells holding source row (column) `k·n` for every `k ≥ 1`, for a grid of
    /// `rows × cols` elements in blocks of `bh × bw`; along an axis whose block is at
    /// least `n / 2` none (lines there would cover half the cells or more: all of them
    /// from a block of `n` on), and `None` when neither axis has a line.
    pub fn every(n: usize, rows: usize, cols: usize, bh: usize, bw: usize) -> Option<Marks> {
        let mark = |len: usize, b: usize| {
            let b = b.max(1);
            let mut v = vec![false; len.div_ceil(b)];
            // (`2b < n`, without overflow for any block.)
            if b < n.div_ceil(2) {
                for r in (n..len).step_by(n) {
                    v[r / b] = true;
                }
            }
            v
        };
        let m = Marks {
            rows: mark(rows, bh),
            cols: mark(cols, bw),
        };
        m.rows.iter().chain(&m.cols).any(|&l| l).then_some(m)
    }
}

/// Encodes a grid as an 8-bit PNG: indexed colour with the LUT as palette when no cell
/// is NaN and no line is drawn (one byte per pixel), RGB otherwise (a palette holds at
/// most 256 colours). `marks` draws [`LINE`]-coloured lines; `text` pairs become iTXt
/// chunks.
pub fn encode_png(
    grid: &[f32],
    width: usize,
    range: Option<Range>,
    lut: &Lut,
    nan: Rgb,
    marks: Option<&Marks>,
    text: &[(&str, String)],
) -> std::result::Result<Vec<u8>, String> {
    let height = grid.len() / width.max(1);
    let mut out = Vec::new();
    let (w, h) = (
        u32::try_from(width).map_err(|e| e.to_string())?,
        u32::try_from(height).map_err(|e| e.to_string())?,
    );
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_depth(png::BitDepth::Eight);
    let palette = lut.0.concat();
    let indexed = match range {
        Some(r) if marks.is_none() => match stored_indexed(grid, width, &r, &palette, text) {
            Some(Indexed::Stored(png)) => return Ok(png),
            Some(Indexed::Pixels(pixels)) => Some(pixels),
            None => None,
        },
        _ => None,
    };
    let pixels: Vec<u8> = match indexed {
        Some(pixels) => {
            enc.set_color(png::ColorType::Indexed);
            enc.set_palette(palette);
            // Differences of palette indices mean nothing; the PNG spec advises no filter
            // for indexed images, and trying all five per row was ~3% of a render.
            enc.set_filter(png::Filter::NoFilter);
            pixels
        }
        None => {
            enc.set_color(png::ColorType::Rgb);
            let colour = |k: usize, v: f32| match (marks, range.and_then(|r| r.index(v))) {
                (Some(m), _) if m.rows[k / width] || m.cols[k % width] => LINE,
                (_, Some(i)) => lut.0[usize::from(i)],
                (_, None) => nan.0,
            };
            grid.iter()
                .enumerate()
                .flat_map(|(k, &v)| colour(k, v))
                .collect()
        }
    };
    let row = pixels.len() / height.max(1);
    let deflate = deflate_pays(height, |r| &pixels[r * row..(r + 1) * row]);
    enc.set_compression(if deflate {
        png::Compression::Fast
    } else {
        png::Compression::NoCompression
    });
    for (k, v) in text {
        enc.add_itxt_chunk((*k).to_owned(), v.clone())
            .map_err(|e| e.to_string())?;
    }
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// An indexed picture as [`stored_indexed`] leaves it.
enum Indexed {
    /// The whole PNG, stored.
    Stored(Vec<u8>),
    /// The palette indices, row by row, for the encoder: the rows are too long for
    /// stored blocks of a row each, or deflate pays.
    Pixels(Vec<u8>),
}

/// `grid` (rows `width` cells long) as an indexed PNG with `range` and `palette`, its
/// pixels stored, not deflated, and written directly: each row, behind its filter byte
/// (none), a stored deflate block of its own, all in one IDAT chunk, after `text` as
/// iTXt chunks; each cell's palette index goes straight into its place. (The encoder's
/// stored path copied the pixels three times through its buffers, ~2% of a render with
/// default options.) The pixels alone when deflate pays, or when a row is too long for
/// one block or the IDAT chunk for the format (the encoder splits those); `None` when a
/// cell is NaN.
fn stored_indexed(
    grid: &[f32],
    width: usize,
    range: &Range,
    palette: &[u8],
    text: &[(&str, String)],
) -> Option<Indexed> {
    let height = grid.len() / width.max(1);
    // The IDAT chunk's data: the zlib header, each row behind its block header and filter
    // byte, the Adler-32.
    let idat = (width + 6)
        .checked_mul(height)
        .and_then(|n| n.checked_add(6))
        .filter(|&n| i32::try_from(n).is_ok());
    let (Some(w), Some(h), Ok(row), Some(idat)) = (
        u32::try_from(width).ok().filter(|&w| w > 0),
        u32::try_from(height).ok().filter(|&h| h > 0),
        u16::try_from(width + 1),
        idat,
    ) else {
        return indices(grid, range).map(Indexed::Pixels);
    };
    let texts: usize = text.iter().map(|(k, v)| 12 + k.len() + 5 + v.len()).sum();
    let mut out = Vec::with_capacity(8 + 25 + 12 + palette.len() + texts + 12 + idat + 12);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    // Width, height, 8 bits, indexed colour, deflate, adaptive filtering, no interlace.
    let at = begin_chunk(&mut out, b"IHDR");
    out.extend_from_slice(&w.to_be_bytes());
    out.extend_from_slice(&h.to_be_bytes());
    out.extend_from_slice(&[8, 3, 0, 0, 0]);
    end_chunk(&mut out, at);
    let at = begin_chunk(&mut out, b"PLTE");
    out.extend_from_slice(palette);
    end_chunk(&mut out, at);
    for (k, v) in text {
        // Keyword, then uncompressed, no language tag and no translated keyword.
        let at = begin_chunk(&mut out, b"iTXt");
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0]);
        out.extend_from_slice(v.as_bytes());
        end_chunk(&mut out, at);
    }
    let at = begin_chunk(&mut out, b"IDAT");
    // zlib: deflate with a 32 KiB window, no dictionary, check bits.
    out.extend_from_slice(&[0x78, 0x01]);
    let first = out.len();
    let adler = index_rows(grid, width, range, &mut out)?;
    // Row `r`'s pixels, behind its block header and filter byte.
    let step = 5 + usize::from(row);
    let pixels = |r: usize| &out[first + r * step + 6..first + (r + 1) * step];
    if deflate_pays(height, pixels) {
        return Some(Indexed::Pixels(
            (0..height).flat_map(pixels).copied().collect(),
        ));
    }
    out.extend_from_slice(&adler.to_be_bytes());
    end_chunk(&mut out, at);
    let at = begin_chunk(&mut out, b"IEND");
    end_chunk(&mut out, at);
    Some(Indexed::Stored(out))
}

/// Appends each row of `grid` (rows `width` cells long, `width` under 65535) as a stored
/// deflate block of its filter byte (0) and its cells' palette indices with `range`
/// (the last block marked final), and returns the Adler-32 of the blocks' contents,
/// each taken while it is in cache; `None` if a cell is NaN.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn index_rows(grid: &[f32], width: usize, range: &Range, out: &mut Vec<u8>) -> Option<u32> {
    let rows = grid.len() / width;
    let len = (width + 1) as u16;
    let mut nan = false;
    let mut adler = simd_adler32::Adler32::new();
    for (r, vs) in grid.chunks_exact(width).enumerate() {
        out.push(u8::from(r + 1 == rows));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        let at = out.len();
        out.push(0);
        nan |= push_indices(vs, range, out);
        adler.write(&out[at..]);
    }
    (!nan).then(|| adler.finish())
}

/// Appends the palette indices of `values` with `range` to `out`, and tells whether one
/// of them is NaN (looked for without an early exit, so that the test vectorises). The
/// bytes are zeroed just before they are written: zeroing a whole picture first was a
/// pass of its own, ~0.6% of an F8 render with default options.
#[inline(always)]
fn push_indices(values: &[f32], range: &Range, out: &mut Vec<u8>) -> bool {
    let at = out.len();
    out.resize(at + values.len(), 0);
    range.index_into(values, &mut out[at..]);
    values.iter().fold(false, |n, v| n | v.is_nan())
}

/// Starts a PNG chunk of type `kind` (its length filled in by [`end_chunk`]), returning
/// where it starts.
fn begin_chunk(out: &mut Vec<u8>, kind: &[u8; 4]) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    start
}

/// Ends the chunk started at `start`: its length, and the CRC of its type and data.
fn end_chunk(out: &mut Vec<u8>, start: usize) {
    let len = u32::try_from(out.len() - start - 8).expect("chunk length checked");
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32fast::hash(&out[start + 4..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Whether deflating an image (`rows` rows, `row(r)` the bytes of row `r`, unfiltered)
/// saves at least a tenth of its size, judged by compressing a sample of rows as the
/// encoder would. The encoder's fast deflate (fdeflate, made for filtered rows) codes
/// runs of zero bytes compactly and other bytes in no fewer bits than they have, so most
/// heatmaps come out no smaller and the encoder stores them after all, having spent ~5%
/// of a render with 1024² grids on the attempt.
fn deflate_pays<'a>(rows: usize, row: impl Fn(usize) -> &'a [u8]) -> bool {
    /// Sampled blocks of consecutive rows, and rows per block.
    const BLOCKS: usize = 8;
    const ROWS: usize = 4;
    let blocks = BLOCKS.min(rows.div_ceil(ROWS));
    let mut sample = Vec::new();
    for b in 0..blocks {
        let first = b * rows / blocks;
        for r in first..(first + ROWS).min(rows) {
            sample.push(0);
            sample.extend_from_slice(row(r));
        }
    }
    fdeflate::compress_to_vec(&sample).len() * 10 < sample.len() * 9
}

/// The LUT index of each cell, or `None` if a cell is NaN.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn indices(grid: &[f32], range: &Range) -> Option<Vec<u8>> {
    // Block by block, so that NaN is looked for in cells read from cache (a pass of its
    // own read the grid twice: ~1.5% of an F8 render with default options).
    const BLOCK: usize = 4096;
    let mut pixels = Vec::with_capacity(grid.len());
    let mut nan = false;
    for vs in grid.chunks(BLOCK) {
        nan |= push_indices(vs, range, &mut pixels);
    }
    (!nan).then_some(pixels)
}

/// Encodes a row-major `f32` grid as a version 1.0 `.npy` file (`<f4`, C order).
pub fn encode_npy(grid: &[f32], height: usize, width: usize) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({height}, {width}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let used = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - used % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + grid.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in grid {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Creates `dir` (and parents) unless it exists, and removes stale temporary files
/// (see [`remove_stale_temps`]). `own` is a folder tensorheat names inside the output
/// folder (an input's, with several inputs): there a symbolic link, which could lead out
/// of the output folder, is refused, not followed.
pub fn prepare_dir(dir: &Path, shared: bool, own: bool) -> Result<()> {
    if own && std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::Input {
            path: dir.into(),
            reason: "is a symbolic link; an input's folder in the output folder must be a \
                     real folder"
                .into(),
        });
    }
    create_folder(dir)?;
    remove_stale_temps(dir, shared);
    Ok(())
}

/// Creates `dir` (and parents) unless it exists; a file (or a link to no folder) in the
/// place of it or of a parent is an error naming that (the system's own are "File
/// exists" and "Not a directory", about `dir`).
pub fn create_folder(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        let in_the_way = dir
            .ancestors()
            .find(|a| std::fs::symlink_metadata(a).is_ok() && !a.is_dir());
        match in_the_way {
            Some(file) => Error::Input {
                path: file.into(),
                reason: "is not a folder".into(),
            },
            None => Error::io(dir, e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_names_the_file_not_its_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("gone");
        let e = write_atomic(&gone, "w.png", b"x").unwrap_err().to_string();
        let want = format!(
            "{}: No such file or directory (os error 2)",
            gone.join("w.png").display()
        );
        assert_eq!(e, want);
    }

    #[test]
    fn marks_leave_out_an_axis_whose_block_is_half_the_period_or_more() {
        // Rows in blocks of 63, under 128 / 2: lines on the cells of rows 128 and 256.
        let m = Marks::every(128, 300, 10, 63, 10).unwrap();
        assert_eq!(m.rows, [false, false, true, false, true]);
        assert!(Marks::every(128, 300, 10, 64, 10).is_none());
        // An odd period: 2 · 2 < 5 draws, 2 · 3 does not.
        assert!(Marks::every(5, 20, 1, 2, 1).is_some());
        assert!(Marks::every(5, 20, 1, 3, 1).is_none());
        // A block of 2^63 or more overflowed `2 · b`; one of 0 (built by hand) divided by 0.
        assert!(Marks::every(128, 300, 10, usize::MAX / 2 + 1, 10).is_none());
        assert_eq!(
            Marks::every(128, 300, 10, 0, 10),
            Marks::every(128, 300, 10, 1, 10)
        );
    }

    #[test]
    fn stems_are_single_safe_components() {
        let names = [
            "model.layers.0.q_proj.weight",
            "../../x",
            "/etc/passwd",
            "a/b/c",
            "..",
            ".",
            "",
            "ünï",
            "nul\0byte\nline",
            "CON",
            "con.weight",
            "COM1.weight",
            "lpt9",
            "COM10",
            "COMX",
            "LPTX.1",
            "ACOM1",
        ];
        let stems = file_stems(names);
        assert_eq!(
            stems,
            [
                "model.layers.0.q_proj.weight",
                "_.._.._x",
                "_etc_passwd",
                "a_b_c",
                "_..",
                "_.",
                "_",
                "__n__",
                "nul_byte_line",
                "_CON",
                "_con.weight",
                "_COM1.weight",
                "_lpt9",
                "COM10",
                "COMX",
                "LPTX.1",
                "ACOM1",
            ]
        );
        for s in stems {
            assert!(!s.contains('/') && !s.starts_with('.') && !s.is_empty());
        }
    }

    #[test]
    fn collisions_get_suffixes_case_insensitively() {
        let stems = file_stems(["a/b", "a_b", "A_B"]);
        assert_eq!(stems, ["a_b", "a_b-2", "A_B-3"]);
        // A name whose own stem is a suffixed one keeps it; the suffixes go around it.
        let stems = file_stems(["Q", "q", "q-2", "q-2", "q-3"]);
        assert_eq!(stems, ["Q", "q-4", "q-2", "q-2-2", "q-3"]);
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long_a = "x".repeat(1000);
        let long_b = format!("{}y", "x".repeat(999));
        let stems = file_stems([long_a.as_str(), long_b.as_str()]);
        assert!(stems.iter().all(|s| s.len() == MAX_STEM));
        assert_ne!(stems[0], stems[1]);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c); // published FNV-1a 64 test vector
                                                     // A stem of exactly 200 bytes is kept whole; one byte more is cut.
        let (fits, over) = ("x".repeat(MAX_STEM), "x".repeat(MAX_STEM + 1));
        let stems = file_stems([fits.as_str(), over.as_str()]);
        assert_eq!(stems[0], fits);
        assert_eq!(stems[1].len(), MAX_STEM);
        assert_eq!(stems[1][MAX_STEM - 17..MAX_STEM - 16], *"-");
    }

    /// A run alone in its folder removes every temporary file an interrupted run left;
    /// with other workers writing there (`shared`), only those over ten minutes old.
    #[test]
    fn stale_temporary_files_are_removed_and_fresh_shared_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let file = |name: &str, age: u64| {
            let path = tmp.path().join(name);
            let f = std::fs::File::create(&path).unwrap();
            let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
            f.set_modified(when).unwrap();
            path
        };
        let make = || {
            [
                file(".tensorheat-fresh.tmp", 0),
                file(".tensorheat-old.tmp", 3600),
                file(".tensorheat-kept.png", 3600),
                file("other.tmp", 3600),
            ]
        };
        let [fresh, old, png, other] = make();
        remove_stale_temps(tmp.path(), true);
        let exists = |p: &std::path::PathBuf| p.exists();
        assert_eq!(
            [&fresh, &old, &png, &other].map(exists),
            [true, false, true, true]
        );
        let [fresh, old, png, other] = make();
        remove_stale_temps(tmp.path(), false);
        assert_eq!(
            [&fresh, &old, &png, &other].map(exists),
            [false, false, true, true]
        );
    }

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        let b = encode_npy(&[1.0, -2.0, f32::NAN], 1, 3);
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (1, 3)") && header.ends_with('\n'));
        assert_eq!(&b[10 + hlen..10 + hlen + 4], &1.0f32.to_le_bytes());
        assert_eq!(b.len(), 10 + hlen + 12);
        // Byte for byte what numpy writes (`np.save` of this float32 array, numpy 2.4):
        // a header of 118 bytes, padded with spaces to end at byte 128.
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }";
        let numpy = [
            b"\x93NUMPY\x01\x00v\x00".as_slice(),
            header.as_bytes(),
            &[b' '; 58],
            b"\n",
        ]
        .concat();
        assert_eq!(&b[..128], numpy);
    }

    /// Decodes an indexed PNG's palette indices.
    fn png_indices(png: &[u8]) -> Vec<u8> {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut buf).unwrap();
        buf.truncate(frame.buffer_size());
        buf
    }

    /// The diverging range -1..1.
    const UNIT: Range = Range {
        lo: -1.0,
        hi: 1.0,
        diverging: true,
    };

    #[test]
    fn noisy_pictures_are_stored_and_flat_ones_deflated_both_losslessly() {
        let (w, h) = (256, 96);
        let range = UNIT;
        // Uniform noise over the range: every palette index, no runs.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<f32> = (0..w * h)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect();
        // Mostly the first colour (fdeflate's fast mode, made for filtered rows, codes
        // runs of zero bytes well and other bytes no shorter than they are).
        let sparse: Vec<f32> = (0..w * h)
            .map(|k| if k % 97 == 0 { 0.5 } else { -1.0 })
            .collect();
        let lut = crate::colour::Colormap::diverging_default().lut();
        for (grid, compressible) in [(&noise, false), (&sparse, true)] {
            let want = indices(grid, &range).unwrap();
            assert_eq!(deflate_pays(h, |r| &want[r * w..(r + 1) * w]), compressible);
            let png = encode_png(grid, w, Some(range), &lut, Rgb([0; 3]), None, &[]).unwrap();
            assert_eq!(png_indices(&png), want);
            // Stored: the pixels, a filter byte per row and framing; deflated: far less.
            if compressible {
                assert!(png.len() < w * h / 4, "{}", png.len());
            } else {
                assert!(png.len() > (w + 1) * h, "{}", png.len());
            }
        }
        // No rows is no picture: an error, not a PNG of height 0 (which PNG forbids).
        assert!(encode_png(&[], w, Some(range), &lut, Rgb([0; 3]), None, &[]).is_err());
    }

    /// A stored indexed PNG, as [`stored_indexed`] writes it directly, decodes to its
    /// palette, pixels and text; its zlib stream (with its Adler-32, which PNG decoders
    /// skip) inflates to each row behind a zero filter byte; the chunks' CRCs are checked
    /// by the decoder. A NaN cell gives `None`; rows too long for a stored block, and
    /// flat pictures that deflate, give the pixels for the encoder.
    #[test]
    fn stored_indexed_pngs_decode_to_their_pixels() {
        let (w, h) = (37, 5);
        let range = UNIT;
        let grid: Vec<f32> = (0..w * h)
            .map(|k| (k * 7 % 200) as f32 / 100.0 - 1.0)
            .collect();
        let pixels = indices(&grid, &range).unwrap();
        let palette: Vec<u8> = (0..768).map(|k| (k % 251) as u8).collect();
        let text = [
            ("tensor", "q_proj".to_string()),
            ("range", "±0.5".to_string()),
        ];
        let Some(Indexed::Stored(png)) = stored_indexed(&grid, w, &range, &palette, &text) else {
            panic!("not stored");
        };
        let mut reader = png::Decoder::new(std::io::Cursor::new(&png))
            .read_info()
            .unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), (w as u32, h as u32));
        assert_eq!(info.color_type, png::ColorType::Indexed);
        assert_eq!(info.palette.as_deref(), Some(&palette[..]));
        let texts: Vec<(String, String)> = info
            .utf8_text
            .iter()
            .map(|t| (t.keyword.clone(), t.get_text().unwrap()))
            .collect();
        let want: Vec<(String, String)> = text
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(texts, want);
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(buf, pixels);
        // The IDAT chunk's data: after the signature, IHDR, PLTE and the two iTXt chunks.
        let idat = png.windows(4).position(|c| c == b"IDAT").unwrap();
        let len = u32::from_be_bytes(png[idat - 4..idat].try_into().unwrap()) as usize;
        let raw = fdeflate::decompress_to_vec(&png[idat + 4..idat + 4 + len]).unwrap();
        let rows: Vec<u8> = pixels
            .chunks(w)
            .flat_map(|r| [&[0u8][..], r].concat())
            .collect();
        assert_eq!(raw, rows);
        let mut nan = grid.clone();
        nan[w * h - 1] = f32::NAN;
        assert!(stored_indexed(&nan, w, &range, &palette, &[]).is_none());
        let long = vec![0.5; 70_000];
        let Some(Indexed::Pixels(p)) = stored_indexed(&long, 70_000, &range, &palette, &[]) else {
            panic!("a row too long for a stored block");
        };
        assert_eq!(p, indices(&long, &range).unwrap());
        let flat = vec![-1.0; 256 * 64];
        let Some(Indexed::Pixels(p)) = stored_indexed(&flat, 256, &range, &palette, &[]) else {
            panic!("a flat picture, which deflates");
        };
        assert_eq!(p, indices(&flat, &range).unwrap());
    }
}
