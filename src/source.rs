//! Finding shards, memory-mapping them and validating their headers.
//!
//! Validation follows the reference `safetensors` implementation (header ≤ 100,000,000
//! bytes and within the file, a JSON object, offsets contiguous from 0, sizes checked
//! with overflow-checked arithmetic, file length exact), with one difference: a dtype
//! string tensorheat does not know does not make the file unreadable. Such a tensor is
//! kept with [`TensorDtype::Unknown`] so that it can be reported as skipped while the
//! others render. The memory map is the crate's only `unsafe`.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::dtype::Dtype;
use crate::error::{Error, Result};

/// Largest header the reference implementation accepts.
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// A tensor's dtype as written in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorDtype {
    /// A dtype tensorheat decodes.
    Known(Dtype),
    /// Any other string; the tensor is listed as skipped.
    Unknown(String),
}

impl TensorDtype {
    /// The dtype string as it appears in the header.
    pub fn name(&self) -> &str {
        match self {
            TensorDtype::Known(d) => d.name(),
            TensorDtype::Unknown(s) => s,
        }
    }
}

/// One tensor's header entry, validated.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: TensorDtype,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Byte range relative to the start of the data section.
    pub data_offsets: (usize, usize),
}

impl TensorInfo {
    /// Number of elements (cannot overflow: checked during validation).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the tensor's data in bytes.
    pub fn nbytes(&self) -> usize {
        self.data_offsets.1 - self.data_offsets.0
    }
}

/// A parsed and validated header.
#[derive(Debug, Clone)]
pub struct Header {
    /// Tensors in file order of their data.
    pub tensors: Vec<TensorInfo>,
    /// The optional `__metadata__` string map.
    pub metadata: Vec<(String, String)>,
    /// Length in bytes of the JSON header.
    pub header_len: usize,
}

/// An open, memory-mapped shard with a validated header.
#[derive(Debug)]
pub struct Shard {
    /// Path of the file.
    pub path: PathBuf,
    /// Its header.
    pub header: Header,
    /// File length in bytes.
    pub len: u64,
    /// Last modification time, when the platform reports one.
    pub modified: Option<std::time::SystemTime>,
    mmap: Option<Mmap>,
}

impl Drop for Shard {
    /// Unmapping a file's pages is work for one core (~10 ms per 2 GB mapped with 4 KiB
    /// pages), with the address space held exclusively. Their page-table entries are
    /// first dropped in 64 MiB pieces in parallel (`MADV_DONTNEED` holds it shared), so
    /// the unmap that follows finds them gone: ~10 → ~6 ms on 2 cores. A render has
    /// usually released the map already (`Shard::release`); this finds little left
    /// then, but catches pages read back in since (FP8 scales). A failure only leaves
    /// the work to the unmap.
    fn drop(&mut self) {
        self.release();
    }
}

/// Drops the page-table entries of `map` in pieces of `piece` bytes (a multiple of the
/// page size), in parallel. Its contents stay as they are: a later read faults the
/// file's page back in.
#[cfg(unix)]
fn release_pages(map: &Mmap, piece: usize) -> std::io::Result<()> {
    use rayon::prelude::*;
    if map.len() <= piece {
        return Ok(());
    }
    (0..map.len())
        .into_par_iter()
        .step_by(piece)
        .try_for_each(|at| {
            // SAFETY: the map is shared, read-only and file-backed: dropping its entries
            // changes no data, and a later read, through a reference taken before this
            // call or after it, faults the same file bytes back in (under the map's own
            // assumption that nobody modifies the file). The range is in bounds and
            // starts on a page (the map's start is one).
            unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    at,
                    piece.min(map.len() - at),
                )
            }
        })
}

#[cfg(not(unix))]
fn release_pages(_: &Mmap, _: usize) -> std::io::Result<()> {
    Ok(())
}

impl Shard {
    /// Opens, maps and validates a `.safetensors` file.
    pub fn open(path: &Path) -> Result<Shard> {
        let (file, meta) = open_file(path)?;
        let len = meta.len();
        // SAFETY: the map is read-only and lives as long as the `Shard`. Other processes
        // modifying or truncating the file while it is mapped would be undefined
        // behaviour (or SIGBUS); the README tells users not to do that, and the file
        // length is checked against the header before any tensor data is touched.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let header = parse_header(path, &mmap)?;
        Ok(Shard {
            path: path.into(),
            header,
            len,
            modified: meta.modified().ok(),
            mmap: Some(mmap),
        })
    }

    /// Reads and validates only the header (for `list`), without mapping the data.
    pub fn open_header(path: &Path) -> Result<Shard> {
        use std::io::Read;
        let (mut file, meta) = open_file(path)?;
        let len = meta.len();
        let mut prefix = [0u8; 8];
        file.read_exact(&mut prefix)
            .map_err(|e| Error::io(path, e))?;
        let n = check_header_len(path, u64::from_le_bytes(prefix), len)?;
        let mut bytes = vec![0u8; 8 + n];
        bytes[..8].copy_from_slice(&prefix);
        file.read_exact(&mut bytes[8..])
            .map_err(|e| Error::io(path, e))?;
        let header = parse_header_with_len(path, &bytes, len)?;
        Ok(Shard {
            path: path.into(),
            header,
            len,
            modified: meta.modified().ok(),
            mmap: None,
        })
    }

    /// The bytes of one tensor of this shard (empty for a header-only shard).
    pub fn data(&self, t: &TensorInfo) -> &[u8] {
        let start = 8 + self.header.header_len;
        self.mmap
            .as_deref()
            .and_then(|m| m.get(start + t.data_offsets.0..start + t.data_offsets.1))
            .unwrap_or(&[])
    }

    /// Drops the page-table entries of the whole map, in 64 MiB pieces in parallel; later
    /// reads fault the file's pages in again. On kernels that free emptied page tables
    /// (Linux built with `CONFIG_PT_RECLAIM`) their memory, up to 2 MiB per GB read, goes
    /// back; elsewhere it waits for the unmap. Maps of 64 MiB or less are left to the
    /// unmap.
    pub(crate) fn release(&self) {
        if let Some(map) = &self.mmap {
            let _ = release_pages(map, 64 << 20);
        }
    }

    /// The file name (for manifests and messages).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

/// Opens `path` for reading if it is a regular file (or a link to one). Anything else
/// fails with a reason: opening a FIFO waits until something writes to it, and a device
/// may never end, so neither must stop a batch. (Checked before opening, for the reason,
/// and on the opened file, opened without blocking, in case the path changed between;
/// the open file's metadata is returned with it.)
pub(crate) fn open_regular(path: &Path) -> std::io::Result<(File, std::fs::Metadata)> {
    let not_regular = |kind: std::fs::FileType| {
        let what = if kind.is_dir() {
            "is a directory, not a file"
        } else {
            "is not a regular file (a FIFO, socket or device)"
        };
        std::io::Error::new(std::io::ErrorKind::InvalidInput, what)
    };
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        return Err(not_regular(kind));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NONBLOCK | libc::O_NOCTTY,
    );
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() {
        Ok((file, meta))
    } else {
        Err(not_regular(meta.file_type()))
    }
}

/// [`std::fs::read`] through [`open_regular`].
pub(crate) fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?.0.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Opens a file that could be a shard: a regular file, long enough for the 8-byte header
/// length.
fn open_file(path: &Path) -> Result<(File, std::fs::Metadata)> {
    let (file, meta) = open_regular(path).map_err(|e| Error::io(path, e))?;
    if meta.len() < 8 {
        return Err(Error::TooShort {
            path: path.into(),
            len: meta.len(),
        });
    }
    Ok((file, meta))
}

fn check_header_len(path: &Path, n: u64, file_len: u64) -> Result<usize> {
    let why = if n > MAX_HEADER_LEN {
        format!("over the limit of {MAX_HEADER_LEN} bytes (not a safetensors file?)")
    } else if n > file_len.saturating_sub(8) {
        format!("past the end of the {file_len}-byte file (not a safetensors file, or truncated?)")
    } else {
        return Ok(n as usize);
    };
    Err(Error::HeaderLength {
        path: path.into(),
        header_len: n,
        why,
    })
}

/// Parses and validates the header at the start of `file` (the whole file's bytes).
pub fn parse_header(path: &Path, file: &[u8]) -> Result<Header> {
    parse_header_with_len(path, file, file.len() as u64)
}

/// Like [`parse_header`] but for a buffer holding at least the 8-byte prefix and the
/// header, from a file of `file_len` bytes.
pub fn parse_header_with_len(path: &Path, buf: &[u8], file_len: u64) -> Result<Header> {
    let Some(prefix) = buf.get(..8) else {
        return Err(Error::TooShort {
            path: path.into(),
            len: file_len,
        });
    };
    let mut p = [0u8; 8];
    p.copy_from_slice(prefix);
    let n = check_header_len(path, u64::from_le_bytes(p), file_len)?;
    let Some(json) = buf.get(8..8 + n) else {
        return Err(Error::HeaderLength {
            path: path.into(),
            header_len: n as u64,
            why: "past the end of the data read".into(),
        });
    };
    let bad = |reason: String| Error::Header {
        path: path.into(),
        reason,
    };
    let text = std::str::from_utf8(json).map_err(|e| bad(format!("not utf-8: {e}")))?;
    let entries: Entries = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut metadata = Vec::new();
    let mut tensors = Vec::with_capacity(entries.0.len());
    let mut seen = HashSet::with_capacity(entries.0.len());
    let mut seen_metadata = false;
    for (name, value) in entries.0 {
        if name == "__metadata__" {
            if seen_metadata {
                return Err(bad("duplicate \"__metadata__\"".into()));
            }
            seen_metadata = true;
            let value = serde_json::from_str(value.get()).map_err(|e| bad(e.to_string()))?;
            metadata = parse_metadata(value).map_err(bad)?;
            continue;
        }
        if !seen.insert(name.clone()) {
            return Err(Error::Tensor {
                path: path.into(),
                name,
                reason: "appears twice in the header".into(),
            });
        }
        match parse_entry(&name, value) {
            Ok(t) => tensors.push(t),
            Err(reason) => {
                return Err(Error::Tensor {
                    path: path.into(),
                    name,
                    reason,
                })
            }
        }
    }
    let data_len = validate_layout(path, &mut tensors, 8 + n as u64, file_len)?;
    let expected = 8 + n as u64 + data_len;
    if expected != file_len {
        return Err(Error::FileLength {
            path: path.into(),
            expected,
            actual: file_len,
        });
    }
    Ok(Header {
        tensors,
        metadata,
        header_len: n,
    })
}

/// Checks that offsets tile the data section from 0 with no gap or overlap and that each
/// known-dtype tensor's byte size matches its shape and that no tensor ends past the end
/// of the `file_len`-byte file whose data section starts at `header_end`. Sorts `tensors` by offset. Returns
/// the data section's length.
fn validate_layout(
    path: &Path,
    tensors: &mut [TensorInfo],
    header_end: u64,
    file_len: u64,
) -> Result<u64> {
    let data_cap = file_len - header_end;
    tensors.sort_by_key(|t| t.data_offsets);
    let mut end = 0usize;
    for t in tensors.iter() {
        let err = |reason: String| Error::Tensor {
            path: path.into(),
            name: t.name.clone(),
            reason,
        };
        let (b, e) = t.data_offsets;
        if b > e {
            return Err(err(format!("data offsets [{b}, {e}] are reversed")));
        }
        if e as u64 > data_cap {
            return Err(err(format!(
                "data offsets [{b}, {e}] end at byte {}, past the end of the {file_len}-byte file",
                (e as u64).saturating_add(header_end)
            )));
        }
        if b != end {
            let what = if b > end { "leave a gap" } else { "overlap" };
            return Err(err(format!(
                "data offsets [{b}, {e}] {what}: the previous tensor ends at {end}"
            )));
        }
        let numel = t
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| err(format!("shape {:?} has too many elements", t.shape)))?;
        if let TensorDtype::Known(d) = &t.dtype {
            let want = numel
                .checked_mul(d.size())
                .ok_or_else(|| err(format!("shape {:?} has too many bytes", t.shape)))?;
            if want != e - b {
                return Err(err(format!(
                    "{} shape {:?} needs {want} bytes but data offsets [{b}, {e}] hold {}",
                    d,
                    t.shape,
                    e - b
                )));
            }
        }
        end = e;
    }
    Ok(end as u64)
}

fn parse_metadata(value: Value) -> std::result::Result<Vec<(String, String)>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                other => Err(format!(
                    "\"__metadata__\" value for {k:?} is {}, not a string",
                    json_kind(&other)
                )),
            })
            .collect(),
        other => Err(format!(
            "\"__metadata__\" is {}, not a string map",
            json_kind(&other)
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The fields of a tensor entry that tensorheat reads; others are ignored.
#[derive(serde::Deserialize)]
struct Fields {
    dtype: Option<Value>,
    shape: Option<Value>,
    data_offsets: Option<Value>,
}

fn parse_entry(name: &str, raw: &RawValue) -> std::result::Result<TensorInfo, String> {
    let map: Fields = serde_json::from_str(raw.get()).map_err(|e| {
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(v) if !v.is_object() => format!("entry is {}, not an object", json_kind(&v)),
            _ => format!("invalid header entry: {e}"),
        }
    })?;
    let dtype = match &map.dtype {
        Some(Value::String(s)) => match Dtype::parse(s) {
            Some(d) => TensorDtype::Known(d),
            None => TensorDtype::Unknown(s.clone()),
        },
        Some(v) => return Err(format!("dtype is {}, not a string", json_kind(v))),
        None => return Err("missing \"dtype\"".into()),
    };
    let shape = match &map.shape {
        Some(v) => usize_list(v).ok_or("shape must be a list of non-negative integers")?,
        None => return Err("missing \"shape\"".into()),
    };
    let offsets = match &map.data_offsets {
        Some(v) => usize_list(v)
            .filter(|o| o.len() == 2)
            .ok_or("data_offsets must be two non-negative integers")?,
        None => return Err("missing \"data_offsets\"".into()),
    };
    Ok(TensorInfo {
        name: name.to_owned(),
        dtype,
        shape,
        data_offsets: (offsets[0], offsets[1]),
    })
}

fn usize_list(v: &Value) -> Option<Vec<usize>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_u64().and_then(|u| usize::try_from(u).ok()))
        .collect()
}

/// The header's top-level entries in file order, keeping duplicates (which a map would
/// silently merge) so that they can be reported. Values stay unparsed slices of the
/// header until each is read into [`Fields`], so a header of a million tensors costs
/// little more than its own size.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<Entries<'de>, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
                while let Some(entry) = a.next_entry::<String, &'de RawValue>()? {
                    v.push(entry);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_pages_read_back_unchanged() {
        let bytes: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        // SAFETY: a private temporary file nobody else writes.
        let map = unsafe { Mmap::map(&file) }.unwrap();
        assert_eq!(&map[..], &bytes[..]);
        // Sixteen pieces of 64 KiB.
        release_pages(&map, 64 << 10).unwrap();
        assert_eq!(&map[..], &bytes[..]);
        // Two pieces of 768 KiB and 256 KiB, in a fresh map.
        drop(map);
        // SAFETY: as above.
        let map = unsafe { Mmap::map(&file) }.unwrap();
        release_pages(&map, 3 << 18).unwrap();
        assert_eq!(&map[..], &bytes[..]);
    }

    #[test]
    fn a_released_shard_reads_back_unchanged() {
        // One tensor of 65 MiB (releases skip maps of 64 MiB or less).
        let n = 65usize << 20;
        let mut header =
            format!(r#"{{"t":{{"dtype":"F8_E4M3","shape":[{n}],"data_offsets":[0,{n}]}}}}"#)
                .into_bytes();
        header.resize(header.len().next_multiple_of(8), b' ');
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.safetensors");
        let code = |i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8 & 0x7e;
        let mut body = (header.len() as u64).to_le_bytes().to_vec();
        body.extend_from_slice(&header);
        body.extend((0..n).map(code));
        std::fs::write(&path, &body).unwrap();
        let shard = Shard::open(&path).unwrap();
        let t = &shard.header.tensors[0];
        let same =
            |data: &[u8]| data.len() == n && data.iter().enumerate().all(|(i, &c)| c == code(i));
        assert!(same(shard.data(t)));
        #[cfg(target_os = "linux")]
        let start = shard.data(t).as_ptr() as usize - (8 + shard.header.header_len);
        #[cfg(target_os = "linux")]
        assert!(mapped_kib(start) >= 65 << 10);
        shard.release();
        #[cfg(target_os = "linux")]
        assert_eq!(mapped_kib(start), 0);
        assert!(same(shard.data(t)));
    }

    /// The resident size (`Rss` in `/proc/self/smaps`) of the mapping that starts at
    /// address `start`: the file pages it has entries for.
    #[cfg(target_os = "linux")]
    fn mapped_kib(start: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let head = format!("{start:08x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head)).skip(1);
        let rss = lines.find_map(|l| l.strip_prefix("Rss:")).unwrap();
        rss.trim().trim_end_matches("kB").trim().parse().unwrap()
    }
}
