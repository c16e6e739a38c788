//! Records of finished tensors, so that an interrupted batch can resume.
//!
//! Every finished tensor appends one JSON line — its fingerprint and manifest entry — to
//! `DIR/.tensorheat.state.jsonl` (`.tensorheat.state.K-of-N.jsonl` for a partition), so
//! the record survives a kill at any point; a torn last line is ignored. When a run
//! completes, its record is rewritten to hold exactly its tensors. `--skip-existing`
//! reuses an entry whose fingerprint matches and whose files exist: the fingerprint
//! covers the shard's size and modification time, the tensor's header entry, the output
//! options and the file name, so anything that could change the picture renders again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::TensorEntry;
use crate::output::{fnv1a, write_atomic};
use crate::select::Partition;
use crate::source::{Shard, TensorInfo};

const PREFIX: &str = ".tensorheat.state";

#[derive(Serialize, Deserialize)]
struct Line {
    fingerprint: String,
    entry: TensorEntry,
}

/// The record of one output folder's finished tensors.
pub struct Journal {
    dir: PathBuf,
    name: String,
    file: Mutex<File>,
    previous: HashMap<String, TensorEntry>,
}

impl Journal {
    /// Opens this run's record in `dir`; with `load`, first reads every record there.
    pub fn open(dir: &Path, partition: Option<Partition>, load: bool) -> Result<Journal> {
        let name = match partition {
            Some(p) => format!("{PREFIX}.{}-of-{}.jsonl", p.k, p.n),
            None => format!("{PREFIX}.jsonl"),
        };
        let mut previous = HashMap::new();
        if load {
            for e in std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .flatten()
            {
                let n = e.file_name().to_string_lossy().into_owned();
                // (Only regular files: a FIFO would block the read.)
                let file = e.file_type().is_ok_and(|t| t.is_file());
                if file && n.starts_with(PREFIX) && n.ends_with(".jsonl") {
                    read_lines(&e.path(), &mut previous);
                }
            }
        }
        let path = dir.join(&name);
        // Appending follows a symbolic link, which could point out of the folder: an
        // entry of this name that is not a regular file is not a record of ours, and is
        // replaced, as the pictures replace theirs (a folder only if empty: one with
        // files in it fails the run, naming it, rather than lose them).
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            if m.is_dir() {
                std::fs::remove_dir(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::DirectoryNotEmpty => Error::Input {
                        path: path.clone(),
                        reason: "is a folder with files in it, where the run keeps its \
                                 record of finished tensors; move it away"
                            .into(),
                    },
                    _ => Error::io(&path, e),
                })?;
            } else if !m.is_file() {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        // (And should one appear between the removal and the open, the open fails rather
        // than follow it, or wait on a FIFO.)
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(
            &mut options,
            libc::O_NOFOLLOW | libc::O_NONBLOCK,
        );
        let file = options.open(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Journal {
            dir: dir.into(),
            name,
            file: Mutex::new(file),
            previous,
        })
    }

    /// The entry a previous run recorded under `fingerprint`, if its files still exist.
    pub fn reusable(&self, fingerprint: &str) -> Option<TensorEntry> {
        let e = self.previous.get(fingerprint)?;
        let exists = |f: &str| self.dir.join(f).is_file();
        (exists(&e.image) && e.raw.as_deref().is_none_or(exists)).then(|| e.clone())
    }

    /// Appends one finished tensor.
    pub fn record(&self, fingerprint: &str, entry: &TensorEntry) -> Result<()> {
        let mut line = serde_json::to_vec(&Line {
            fingerprint: fingerprint.to_owned(),
            entry: entry.clone(),
        })
        .map_err(|e| Error::Option(e.to_string()))?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line)
            .map_err(|e| Error::io(self.dir.join(&self.name), e))
    }

    /// Replaces the record with exactly `done` (the completed run's tensors).
    pub fn finish(self, done: &[(String, TensorEntry)]) -> Result<()> {
        let mut text = Vec::new();
        for (fingerprint, entry) in done {
            let line = Line {
                fingerprint: fingerprint.clone(),
                entry: entry.clone(),
            };
            serde_json::to_writer(&mut text, &line).map_err(|e| Error::Option(e.to_string()))?;
            text.push(b'\n');
        }
        write_atomic(&self.dir, &self.name, &text)
    }
}

fn read_lines(path: &Path, into: &mut HashMap<String, TensorEntry>) {
    let Ok((f, _)) = crate::source::open_regular(path) else {
        return;
    };
    for line in BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        if let Ok(l) = serde_json::from_str::<Line>(&line) {
            into.insert(l.fingerprint, l.entry);
        }
    }
}

/// The fingerprint of rendering tensor `t` of `shard` under `options` (the manifest's
/// options as JSON) into `stem`.
pub fn fingerprint(shard: &Shard, t: &TensorInfo, options: &str, stem: &str) -> String {
    let mtime = shard
        .modified
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let key = format!(
        "{}\0{}\0{}\0{mtime}\0{}\0{}\0{:?}\0{:?}\0{options}\0{stem}",
        env!("CARGO_PKG_VERSION"),
        shard.file_name(),
        shard.len,
        t.name,
        t.dtype.name(),
        t.shape,
        t.data_offsets,
    );
    format!(
        "{:016x}{:016x}",
        fnv1a(key.as_bytes()),
        fnv1a(&key.as_bytes().iter().rev().copied().collect::<Vec<u8>>())
    )
}
