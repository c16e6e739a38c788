//! A shard's map drops its page-table entries as soon as its last tensor is rendered, not
//! when the whole input is done: seen through each map's resident size in
//! `/proc/self/smaps` (Linux), from the progress callback, with one worker thread so that
//! the tensors render in name order.

#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::{write_safetensors, T};
use tensorheat::{render_with, Progress, RenderConfig, TensorOutcome};

/// Resident KiB of the mapping of `file`, as `/proc/self/smaps` lists it (0 if unmapped).
fn resident_kib(file: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = file.to_str().unwrap();
    let mut lines = smaps.lines().skip_while(|l| !l.ends_with(name));
    if lines.next().is_none() {
        return 0;
    }
    let rss = lines.find_map(|l| l.strip_prefix("Rss:")).unwrap();
    rss.trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// Records, as each tensor finishes, the resident size of both shards' maps.
struct Watch {
    shards: [PathBuf; 2],
    seen: Mutex<Vec<(String, [u64; 2])>>,
}

impl Progress for Watch {
    fn tensor_finished(&self, name: &str, _: u64, _: TensorOutcome<'_>) {
        let kib = [resident_kib(&self.shards[0]), resident_kib(&self.shards[1])];
        self.seen.lock().unwrap().push((name.to_owned(), kib));
    }
}

#[test]
fn a_shard_is_released_after_its_last_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    // Two shards of one 65 MiB F8 tensor each (releases skip maps of 64 MiB or less).
    let (rows, cols) = (8320, 8192);
    let shards = [model.join("a.safetensors"), model.join("b.safetensors")];
    for (path, name) in shards.iter().zip(["a", "b"]) {
        let t = T {
            name: name.into(),
            dtype: safetensors::Dtype::F8_E4M3,
            shape: vec![rows, cols],
            data: (0..rows * cols).map(|i| (i % 0x7e) as u8).collect(),
        };
        write_safetensors(path, &[t]);
    }
    let watch = Watch {
        shards: shards.clone(),
        seen: Mutex::new(Vec::new()),
    };
    let out = dir.path().join("out");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let reports = pool
        .install(|| render_with(&[model], &out, &RenderConfig::default(), &watch))
        .unwrap();
    assert!(reports[0].manifest.errors.is_empty());
    let seen = watch.seen.into_inner().unwrap();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let full = (rows * cols / 1024) as u64;
    // At most what reading a header maps: with a large folio, 2 MiB.
    let little = 4 << 10;
    // When `a` is done its bytes are mapped and `b`'s not yet read (its header aside).
    let [a, b] = seen[0].1;
    assert!(a >= full && b <= little, "after a: {a} KiB, {b} KiB");
    // When `b` is done, `a`'s shard has been released.
    let [a, b] = seen[1].1;
    assert!(a <= little && b >= full, "after b: {a} KiB, {b} KiB");
}
