//! Resolving an input to a model: one file, a folder of shards, or an index.
//!
//! A folder with a `*.safetensors.index.json` is read through its `weight_map`; without
//! one, every `*.safetensors` in it is a shard, in name order. Problems with one shard
//! are recorded and the other shards still render; only an input that cannot be read
//! at all is an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::select::natural_cmp;
use crate::source::{Shard, TensorInfo};

/// How much of each shard to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Headers only (for `list`): no tensor data is mapped.
    HeaderOnly,
    /// Memory-map the data too.
    Data,
}

/// An input resolved to shards and a naturally ordered list of its tensors.
#[derive(Debug)]
pub struct Model {
    /// The input as given.
    pub input: PathBuf,
    /// Shards that opened and validated.
    pub shards: Vec<Shard>,
    /// `(shard index, tensor index)` in natural order of the tensor names.
    pub tensors: Vec<(usize, usize)>,
    /// Shard-level problems; the rest of the model is still usable.
    pub errors: Vec<Error>,
    /// Things worth telling the user that are not errors.
    pub warnings: Vec<String>,
}

impl Model {
    /// Resolves and opens `input`.
    pub fn open(input: &Path, access: Access) -> Result<Model> {
        let meta = std::fs::metadata(input).map_err(|e| Error::io(input, e))?;
        if meta.is_dir() {
            let (indexes, shards) = scan_dir(input)?;
            match indexes.as_slice() {
                [] if shards.is_empty() => Err(Error::Input {
                    path: input.into(),
                    reason: "folder holds no .safetensors files".into(),
                }),
                [] => Ok(Model::from_files(input, &shards, access)),
                [index] => Model::from_index(input, index, &shards, access),
                _ => Err(Error::Input {
                    path: input.into(),
                    reason: format!(
                        "folder holds {} *.safetensors.index.json files; name one of them",
                        indexes.len()
                    ),
                }),
            }
        } else if input.to_string_lossy().ends_with(".json") {
            let (_, shards) = scan_dir(folder_of(input))?;
            Model::from_index(input, input, &shards, access)
        } else {
            let shard = open_shard(input, access)?;
            let mut m = Model::empty(input);
            m.add(shard);
            m.sort();
            Ok(m)
        }
    }

    /// Looks up a tensor reference from [`Model::tensors`].
    pub fn tensor(&self, (s, t): (usize, usize)) -> (&Shard, &TensorInfo) {
        let shard = &self.shards[s];
        (shard, &shard.header.tensors[t])
    }

    fn empty(input: &Path) -> Model {
        Model {
            input: input.into(),
            shards: Vec::new(),
            tensors: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn add(&mut self, shard: Shard) {
        let s = self.shards.len();
        self.tensors
            .extend((0..shard.header.tensors.len()).map(|t| (s, t)));
        self.shards.push(shard);
    }

    fn sort(&mut self) {
        let shards = &self.shards;
        self.tensors.sort_by(|&(sa, ta), &(sb, tb)| {
            let a = &shards[sa].header.tensors[ta].name;
            let b = &shards[sb].header.tensors[tb].name;
            natural_cmp(a, b).then(sa.cmp(&sb))
        });
    }

    fn from_files(input: &Path, files: &[PathBuf], access: Access) -> Model {
        let mut m = Model::empty(input);
        for f in files {
            match open_shard(f, access) {
                Ok(s) => m.add(s),
                Err(e) => m.errors.push(e),
            }
        }
        m.sort();
        m.reject_duplicates();
        m
    }

    fn from_index(
        input: &Path,
        index: &Path,
        on_disk: &[PathBuf],
        access: Access,
    ) -> Result<Model> {
        let bytes = crate::source::read_regular(index).map_err(|e| Error::io(index, e))?;
        let bad = |reason: String| Error::Input {
            path: index.into(),
            reason,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid index: {e}")))?;
        let Some(map) = json.get("weight_map").and_then(|m| m.as_object()) else {
            return Err(bad("index has no \"weight_map\" object".into()));
        };
        let mut wanted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (tensor, file) in map {
            let Some(file) = file.as_str().filter(|f| is_plain_file_name(f)) else {
                return Err(bad(format!(
                    "weight_map entry for {tensor:?} is not a shard file name in the index's folder"
                )));
            };
            wanted.entry(file).or_default().push(tensor);
        }
        let dir = folder_of(index);
        let mut m = Model::empty(input);
        let listed: BTreeSet<PathBuf> = wanted.keys().map(|f| dir.join(f)).collect();
        for stray in on_disk.iter().filter(|p| !listed.contains(*p)) {
            m.warnings.push(format!(
                "{}: not in {}; ignored",
                stray.display(),
                index.display()
            ));
        }
        for (file, tensors) in &wanted {
            let path = dir.join(file);
            let shard = match open_shard(&path, access) {
                Ok(s) => s,
                Err(e) => {
                    // (Named as the index's entry: the shard's own path may be no file's,
                    // such as a name over the system's limit.)
                    m.errors.push(match e {
                        Error::Io { source, .. }
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            bad(format!("shard {file} listed in the index does not exist"))
                        }
                        Error::Io { source, .. } => bad(format!(
                            "shard {file} listed in the index cannot be opened: {source}"
                        )),
                        other => other,
                    });
                    continue;
                }
            };
            let names: HashMap<&str, ()> = shard
                .header
                .tensors
                .iter()
                .map(|t| (t.name.as_str(), ()))
                .collect();
            for t in tensors {
                if !names.contains_key(t) {
                    m.errors.push(Error::Tensor {
                        path: path.clone(),
                        name: (*t).to_owned(),
                        reason: format!("listed in {} but not in this shard", index.display()),
                    });
                }
            }
            m.add(shard);
        }
        // Only tensors the index assigns to a shard belong to the model: where a tensor
        // is in several shards, the index says which copy is meant. One it does not list
        // at all is left out with a warning, as a shard it does not list is.
        let shards = &m.shards;
        let mut unlisted: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
        m.tensors.retain(|&(s, t)| {
            let name = shards[s].header.tensors[t].name.as_str();
            match map.get(name) {
                Some(f) => f.as_str() == Some(shards[s].file_name().as_str()),
                None => {
                    unlisted.entry(s).or_default().push(name);
                    false
                }
            }
        });
        for (s, mut names) in unlisted {
            names.sort_by(|a, b| natural_cmp(a, b));
            let n = names.len();
            let shown: Vec<String> = names.iter().take(3).map(|t| format!("{t:?}")).collect();
            let more = if n > 3 { ", ..." } else { "" };
            let what = if n == 1 { "tensor" } else { "tensors" };
            m.warnings.push(format!(
                "{}: {n} {what} not in {} ({}{more}); ignored",
                m.shards[s].path.display(),
                index.display(),
                shown.join(", ")
            ));
        }
        m.sort();
        Ok(m)
    }

    /// Records tensors present in more than one shard as errors and drops them. The
    /// list is sorted by name, so each name's copies are adjacent: one pass.
    fn reject_duplicates(&mut self) {
        let mut kept = Vec::with_capacity(self.tensors.len());
        let mut i = 0;
        while i < self.tensors.len() {
            let name = &self.tensor(self.tensors[i]).1.name;
            let mut j = i + 1;
            while j < self.tensors.len() && &self.tensor(self.tensors[j]).1.name == name {
                j += 1;
            }
            if j - i == 1 {
                kept.push(self.tensors[i]);
            } else {
                let shards: Vec<String> = self.tensors[i..j]
                    .iter()
                    .map(|&r| self.tensor(r).0.file_name())
                    .collect();
                self.errors.push(Error::Tensor {
                    path: self.input.clone(),
                    name: name.clone(),
                    reason: format!("is in several shards: {}", shards.join(", ")),
                });
            }
            i = j;
        }
        self.tensors = kept;
    }
}

fn open_shard(path: &Path, access: Access) -> Result<Shard> {
    match access {
        Access::HeaderOnly => Shard::open_header(path),
        Access::Data => Shard::open(path),
    }
}

/// A weight_map value must name a file beside the index, never a path elsewhere.
fn is_plain_file_name(f: &str) -> bool {
    !f.is_empty() && f != "." && f != ".." && !f.contains(['/', '\\', '\0'])
}

/// The folder holding the file `path` (`.` for a bare file name, whose parent is empty).
pub(crate) fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Index files and `*.safetensors` files directly in `dir`, each sorted by name.
fn scan_dir(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut indexes = Vec::new();
    let mut shards = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".safetensors.index.json") {
            indexes.push(e.path());
        } else if name.ends_with(".safetensors") && !e.path().is_dir() {
            shards.push(e.path());
        }
    }
    indexes.sort();
    shards.sort();
    Ok((indexes, shards))
}
