//! Whole models and batches: sharded models with an index, stray/missing shards, wrong
//! weight_map entries, several model folders, filters, resuming with --skip-existing,
//! and partitions merged into one run.

mod common;

use std::path::{Path, PathBuf};

use common::{bin, fields, files_below, fixture, manifest, render_cmd, write_safetensors, Rng, T};
use predicates::prelude::*;

/// Writes a model of `shards` shards (three tensors each, of varied sizes) with an
/// index into `dir`; returns the tensor names.
fn write_sharded(dir: &Path, shards: usize, with_index: bool) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(shards as u64);
    let mut map = serde_json::Map::new();
    let mut names = Vec::new();
    for s in 0..shards {
        let file = format!("model-{:05}-of-{:05}.safetensors", s + 1, shards);
        let tensors: Vec<T> = (0..3)
            .map(|i| {
                let layer = s * 3 + i;
                let (r, c) = (16 + 8 * layer, 24 + 4 * i);
                let v: Vec<f32> = (0..r * c).map(|_| rng.normal()).collect();
                let name = format!("model.layers.{layer}.mlp.weight");
                map.insert(name.clone(), serde_json::json!(file));
                names.push(name.clone());
                if i == 2 {
                    T::bf16(&name, &[r, c], &v)
                } else {
                    T::f32(&name, &[r, c], &v)
                }
            })
            .collect();
        write_safetensors(&dir.join(&file), &tensors);
    }
    if with_index {
        let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::to_vec_pretty(&index).unwrap(),
        )
        .unwrap();
    }
    names
}

fn render(args: &[&std::ffi::OsStr]) -> assert_cmd::assert::Assert {
    bin().arg("render").args(args).arg("-q").assert()
}

fn names_in(m: &serde_json::Value) -> Vec<String> {
    fields(m, "tensors", "name")
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Asserts that two output folders hold the same result files with the same bytes.
fn assert_same_results(a: &Path, b: &Path) {
    let (ra, rb) = (results(a), results(b));
    let names = |r: &[(PathBuf, Vec<u8>)]| r.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ra), names(&rb));
    for ((f, x), (_, y)) in ra.iter().zip(&rb) {
        if x != y {
            let (x, y) = (String::from_utf8_lossy(x), String::from_utf8_lossy(y));
            let line = x.lines().zip(y.lines()).find(|(p, q)| p != q);
            panic!("{f:?} differs, first at {line:?}");
        }
    }
}

/// Result files (everything but hidden bookkeeping and partial manifests) with contents.
fn results(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_below(dir)
        .into_iter()
        .filter(|f| {
            let n = f.to_string_lossy();
            !n.starts_with('.') && !n.contains("-of-")
        })
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

#[test]
fn three_shards_through_the_index_render_in_natural_order() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("llama");
    let names = write_sharded(&model, 3, true);
    let out = tmp.path().join("out");
    render(&[model.as_os_str(), "-o".as_ref(), out.as_os_str()]).success();
    let m = manifest(&out);
    assert_eq!(names_in(&m), names, "layers.2 before layers.10");
    assert_eq!(
        m["tensors"][8]["source"],
        "model-00003-of-00003.safetensors"
    );
    assert_eq!(m["tensors"][8]["dtype"], "BF16");
    // The index file itself is an input too, with the same result.
    let out2 = tmp.path().join("out2");
    let index = model.join("model.safetensors.index.json");
    render(&[index.as_os_str(), "-o".as_ref(), out2.as_os_str()]).success();
    let pngs = |d: &Path| {
        let r = results(d);
        r.into_iter()
            .filter(|f| f.0.extension().is_some_and(|e| e == "png"))
            .collect::<Vec<_>>()
    };
    assert_eq!(pngs(&out), pngs(&out2));
    // And `list` reads the same model.
    let json = bin()
        .arg("list")
        .arg("--json")
        .arg(&model)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    assert_eq!(v["tensors"].as_array().unwrap().len(), 9);
}

#[test]
fn folder_without_index_renders_every_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    let names = write_sharded(&model, 2, false);
    let out = tmp.path().join("out");
    render(&[model.as_os_str(), "-o".as_ref(), out.as_os_str()]).success();
    assert_eq!(names_in(&manifest(&out)), names);
}

#[test]
fn stray_shard_is_ignored_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    write_sharded(&model, 2, true);
    write_safetensors(
        &model.join("extra.safetensors"),
        &[T::f32("stray", &[1], &[1.0])],
    );
    let out = tmp.path().join("out");
    render_cmd(&model, &out).assert().success().stderr(
        predicate::str::contains("warning").and(predicate::str::contains("extra.safetensors")),
    );
    let m = manifest(&out);
    assert!(!names_in(&m).contains(&"stray".to_owned()));
    assert_eq!(names_in(&m).len(), 6);
}

#[test]
fn missing_shard_is_an_error_naming_index_and_shard_and_the_rest_renders() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    write_sharded(&model, 3, true);
    std::fs::remove_file(model.join("model-00002-of-00003.safetensors")).unwrap();
    let out = tmp.path().join("out");
    render_cmd(&model, &out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "model.safetensors.index.json: shard model-00002-of-00003.safetensors listed in \
             the index does not exist",
        ));
    let m = manifest(&out);
    assert_eq!(names_in(&m).len(), 6);
    assert_eq!(m["errors"].as_array().unwrap().len(), 1);
    // A shard name the system cannot open at all (over 255 bytes) is named as the
    // index's entry too: the error named only the path.
    let index = model.join("model.safetensors.index.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    let long = format!("{}.safetensors", "x".repeat(256));
    v["weight_map"]["model.layers.1.mlp.weight"] = long.as_str().into();
    std::fs::write(&index, serde_json::to_vec(&v).unwrap()).unwrap();
    render_cmd(&model, &tmp.path().join("long"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "model.safetensors.index.json: shard {long} listed in the index cannot be opened: "
        )));
}

#[test]
fn wrong_weight_map_entry_names_tensor_shard_and_index() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    write_sharded(&model, 2, true);
    let index = model.join("model.safetensors.index.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    v["weight_map"]["model.layers.0.mlp.weight"] = "model-00002-of-00002.safetensors".into();
    std::fs::write(&index, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = tmp.path().join("out");
    render_cmd(&model, &out).assert().code(1).stderr(
        predicate::str::contains("model.layers.0.mlp.weight")
            .and(predicate::str::contains("model-00002-of-00002.safetensors"))
            .and(predicate::str::contains("index.json")),
    );
    let m = manifest(&out);
    assert_eq!(m["errors"][0]["name"], "model.layers.0.mlp.weight");
    assert_eq!(names_in(&m).len(), 5);
}

/// A weight_map value must be a file name beside the index: an empty one, `.`, `..`, a
/// path or a non-string fails the index, naming the entry, before any shard is read.
#[test]
fn weight_map_entries_that_are_not_file_names_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    write_sharded(&model, 2, true);
    let index = model.join("model.safetensors.index.json");
    let good = std::fs::read(&index).unwrap();
    let bad: [serde_json::Value; 8] = [
        "".into(),
        ".".into(),
        "..".into(),
        "../m/model-00001-of-00002.safetensors".into(),
        "/etc/passwd".into(),
        "sub\\model-00001-of-00002.safetensors".into(),
        "nul\u{0}.safetensors".into(),
        7.into(),
    ];
    for value in bad {
        let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        v["weight_map"]["model.layers.0.mlp.weight"] = value.clone();
        std::fs::write(&index, serde_json::to_vec(&v).unwrap()).unwrap();
        render_cmd(&model, &tmp.path().join("out"))
            .assert()
            .code(1)
            .stderr(predicate::str::contains(
                "weight_map entry for \"model.layers.0.mlp.weight\" is not a shard file name \
                 in the index's folder",
            ));
    }
}

#[test]
fn two_model_folders_in_one_call() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("alpha"), tmp.path().join("beta"));
    write_sharded(&a, 1, true);
    write_sharded(&b, 2, false);
    let out = tmp.path().join("out");
    render(&[a.as_os_str(), b.as_os_str(), "-o".as_ref(), out.as_os_str()]).success();
    assert_eq!(names_in(&manifest(&out.join("alpha"))).len(), 3);
    assert_eq!(names_in(&manifest(&out.join("beta"))).len(), 6);
}

#[test]
fn filters_apply_to_render_and_list() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    write_sharded(&model, 4, true);
    let cases: [(&[&str], Vec<&str>); 4] = [
        (
            &["--include", "model.layers.1*"],
            vec![
                "model.layers.1.mlp.weight",
                "model.layers.10.mlp.weight",
                "model.layers.11.mlp.weight",
            ],
        ),
        (
            &["--include", "model.layers.1*", "--exclude", "*.10.*"],
            vec!["model.layers.1.mlp.weight", "model.layers.11.mlp.weight"],
        ),
        (
            &["--regex", r"layers\.[23]\."],
            vec!["model.layers.2.mlp.weight", "model.layers.3.mlp.weight"],
        ),
        (
            &["--dtype", "bf16", "--include", "*.[0-5].*"],
            vec!["model.layers.2.mlp.weight", "model.layers.5.mlp.weight"],
        ),
    ];
    for (i, (flags, want)) in cases.iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        render_cmd(&model, &out).args(*flags).assert().success();
        let m = manifest(&out);
        assert_eq!(names_in(&m), *want, "{flags:?}");
        let pngs = files_below(&out)
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "png"))
            .count();
        assert_eq!(pngs, want.len());
        let listed = bin()
            .arg("list")
            .arg("--json")
            .arg(&model)
            .args(*flags)
            .assert()
            .success();
        let v: serde_json::Value = serde_json::from_slice(&listed.get_output().stdout).unwrap();
        let names = fields(&v, "tensors", "name");
        assert_eq!(names, *want, "list {flags:?}");
    }
    bin()
        .arg("list")
        .arg(&model)
        .args(["--regex", "("])
        .assert()
        .code(2);
}

#[test]
fn interrupted_run_resumes_with_skip_existing_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    write_sharded(&model, 3, true);
    let clean = tmp.path().join("clean");
    render(&[
        model.as_os_str(),
        "-o".as_ref(),
        clean.as_os_str(),
        "--raw".as_ref(),
    ])
    .success();
    // An "interrupted" run: only part of the tensors done, their records written, no
    // manifest.json yet.
    let resumed = tmp.path().join("resumed");
    let part = ["--raw", "--partition", "1/2"];
    render_cmd(&model, &resumed)
        .args(part)
        .arg("-q")
        .assert()
        .success();
    std::fs::remove_file(resumed.join("manifest.1-of-2.json")).unwrap();
    let done_before: Vec<_> = results(&resumed);
    assert!(!done_before.is_empty() && done_before.len() < results(&clean).len());
    // A run into `resumed` with `args`; what it said.
    let rerun = |args: &[&str]| {
        let out = render_cmd(&model, &resumed).args(args).assert().success();
        String::from_utf8_lossy(&out.get_output().stderr).into_owned()
    };
    let err = rerun(&["--raw", "--skip-existing", "-v"]);
    assert_eq!(
        err.matches("tensorheat: kept").count(),
        done_before.len() / 2,
        "{err}"
    );
    assert_same_results(&resumed, &clean);
    // A picture deleted since is rendered again, though its .npy is still there; so is a
    // .npy deleted since, though its picture is.
    for ext in ["png", "npy"] {
        let file = (results(&resumed).into_iter().map(|(p, _)| p))
            .find(|p| p.extension().is_some_and(|e| e == ext))
            .unwrap();
        std::fs::remove_file(resumed.join(&file)).unwrap();
        let err = rerun(&["--raw", "--skip-existing", "-v"]);
        assert_eq!(
            err.matches("tensorheat: rendered").count(),
            1,
            "{ext}: {err}"
        );
        assert_same_results(&resumed, &clean);
    }
    // Changed options render everything again.
    let err = rerun(&["--skip-existing", "-v", "--reduce", "max"]);
    assert_eq!(err.matches("tensorheat: kept").count(), 0, "{err}");
}

#[test]
fn three_partitions_merged_equal_a_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    write_sharded(&model, 3, true);
    // One tensor name collides with another's file name, so names must be global.
    let single = tmp.path().join("single");
    render(&[
        model.as_os_str(),
        "-o".as_ref(),
        single.as_os_str(),
        "--raw".as_ref(),
    ])
    .success();
    let parts = tmp.path().join("parts");
    for k in 1..=3 {
        let p = format!("{k}/3");
        render_cmd(&model, &parts)
            .args(["--raw", "--partition", &p, "-q"])
            .assert()
            .success();
    }
    let each: Vec<usize> = (1..=3)
        .map(|k| {
            names_in(&manifest_file(
                &parts.join(format!("manifest.{k}-of-3.json")),
            ))
            .len()
        })
        .collect();
    assert_eq!(each.iter().sum::<usize>(), 9);
    assert!(
        each.iter().all(|&n| n > 0),
        "byte-balanced: every worker has work {each:?}"
    );
    // Before merging, partition 2's manifest missing: reported, nothing written.
    std::fs::rename(
        parts.join("manifest.2-of-3.json"),
        tmp.path().join("saved.json"),
    )
    .unwrap();
    merge(&parts, &[])
        .code(1)
        .stderr(predicate::str::contains("missing partitions 2/3"));
    assert!(!parts.join("manifest.json").exists());
    std::fs::rename(
        tmp.path().join("saved.json"),
        parts.join("manifest.2-of-3.json"),
    )
    .unwrap();
    merge(&parts, &[])
        .success()
        .stderr(predicate::str::contains(
            "merged 3 partitions, 9 tensors, 0 errors",
        ));
    assert_same_results(&parts, &single);
    // A partial manifest no worker writes (the only one in its folder) is an error
    // naming it: of 2^64 - 1 workers, whose missing partitions took forever to list, or
    // not a number at all, which merge skipped, exiting 0 having written nothing.
    for (i, name) in [
        "manifest.1-of-18446744073709551615.json",
        "manifest.x-of-2.json",
    ]
    .into_iter()
    .enumerate()
    {
        let stray = tmp.path().join(format!("stray{i}"));
        std::fs::create_dir(&stray).unwrap();
        std::fs::copy(parts.join("manifest.1-of-3.json"), stray.join(name)).unwrap();
        bin()
            .arg("merge")
            .arg(&stray)
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .code(1)
            .stderr(predicate::str::contains(name));
    }
}

#[test]
fn merge_says_why_it_fails_when_a_partition_met_an_error() {
    // Worker 1 reports the input that cannot be read; merge exited 1 with only
    // "merged 2 partitions, 0 tensors" to show for it.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.safetensors");
    std::fs::write(&bad, b"not a safetensors file").unwrap();
    let out = tmp.path().join("out");
    for (k, code) in [(1, 1), (2, 0)] {
        render_cmd(&bad, &out)
            .args(["--partition", &format!("{k}/2"), "-q"])
            .assert()
            .code(code);
    }
    merge(&out, &[]).code(1).stderr(predicate::str::contains(
        "merged 2 partitions, 0 tensors, 1 error (in manifest.json)",
    ));
    // The errors themselves too (the workers may have printed them on other machines),
    // and with `-q` only those.
    let error = "tensorheat: error: ";
    let says = format!("{error}{}: header length ", bad.display());
    merge(&out, &[]).stderr(predicate::str::contains(says.as_str()));
    let quiet = merge(&out, &["-q"]).code(1);
    let err = String::from_utf8_lossy(&quiet.get_output().stderr).into_owned();
    assert!(
        err.lines().all(|l| l.starts_with(error)) && err.contains(&says),
        "{err}"
    );
    let good = tmp.path().join("good");
    for k in 1..=2 {
        render_cmd(&fixture("shapes.safetensors"), &good)
            .args(["--partition", &format!("{k}/2"), "-q"])
            .assert()
            .success();
    }
    merge(&good, &["-q"]).success().stderr("");
    // A partial manifest that is not one is named, in the words `gallery` uses.
    std::fs::write(good.join("manifest.2-of-2.json"), b"{}").unwrap();
    merge(&good, &[]).code(1).stderr(predicate::str::contains(
        "manifest.2-of-2.json: not a valid tensorheat manifest: ",
    ));
}

/// `tensorheat merge [ARGS] DIR`, run.
fn merge(dir: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    bin().arg("merge").args(args).arg(dir).assert()
}

fn manifest_file(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn a_tensor_in_two_shards_is_an_error_unless_the_index_picks_one() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    std::fs::create_dir_all(&model).unwrap();
    write_safetensors(
        &model.join("a.safetensors"),
        &[T::f32("x", &[1, 2], &[1.0, 2.0]), T::f32("y", &[1], &[3.0])],
    );
    write_safetensors(
        &model.join("b.safetensors"),
        &[T::f32("x", &[1, 2], &[5.0, 6.0]), T::f32("z", &[1], &[4.0])],
    );
    let out = tmp.path().join("no-index");
    render_cmd(&model, &out).assert().code(1).stderr(
        predicate::str::contains("\"x\"")
            .and(predicate::str::contains("a.safetensors, b.safetensors")),
    );
    let m = manifest(&out);
    assert_eq!(names_in(&m), ["y", "z"]);
    assert_eq!(m["errors"][0]["name"], "x");
    let index = serde_json::json!({"weight_map": {"x": "b.safetensors", "y": "a.safetensors", "z": "b.safetensors"}});
    std::fs::write(
        model.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let out = tmp.path().join("index");
    render_cmd(&model, &out).arg("-q").assert().success();
    let m = manifest(&out);
    assert_eq!(names_in(&m), ["x", "y", "z"]);
    assert_eq!(m["tensors"][0]["source"], "b.safetensors");
    assert_eq!(m["tensors"][0]["stats"]["max"], 6.0);
    // The copy the index does not pick is left out silently; a tensor it does not list
    // at all (here "z") is left out with a warning naming it, as a shard it does not
    // list is.
    let index = serde_json::json!({"weight_map": {"x": "b.safetensors", "y": "a.safetensors"}});
    std::fs::write(
        model.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let out = tmp.path().join("unlisted");
    let run = render_cmd(&model, &out).assert().success();
    let err = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(
        err.contains("b.safetensors: 1 tensor not in ")
            && err.contains("model.safetensors.index.json (\"z\"); ignored"),
        "{err}"
    );
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert_eq!(names_in(&manifest(&out)), ["x", "y"]);
    bin()
        .arg("list")
        .arg(&model)
        .assert()
        .success()
        .stderr(predicate::str::contains("(\"z\"); ignored"));
}

/// The warning about tensors a listed shard holds but the index does not list names up
/// to three of them, and says there are more only when there are.
#[test]
fn unlisted_tensors_are_named_up_to_three() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    std::fs::create_dir_all(&model).unwrap();
    let tensors: Vec<T> = (1..=5)
        .map(|i| T::f32(&format!("t{i}"), &[1], &[1.0]))
        .collect();
    write_safetensors(&model.join("s.safetensors"), &tensors);
    for (listed, want) in [
        (&["t1"][..], "4 tensors not in"),
        (&["t1", "t2"][..], "3 tensors not in"),
    ] {
        let map: serde_json::Map<String, serde_json::Value> = listed
            .iter()
            .map(|t| (t.to_string(), "s.safetensors".into()))
            .collect();
        let index = serde_json::json!({ "weight_map": map });
        std::fs::write(
            model.join("model.safetensors.index.json"),
            index.to_string(),
        )
        .unwrap();
        let run = render_cmd(&model, &tmp.path().join("out"))
            .assert()
            .success();
        let err = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
        let names = if listed.len() == 1 {
            r#"("t2", "t3", "t4", ...); ignored"#
        } else {
            r#"("t3", "t4", "t5"); ignored"#
        };
        assert!(err.contains(want) && err.contains(names), "{err}");
    }
}

#[test]
fn many_names_with_one_file_stem_get_distinct_suffixes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.safetensors");
    // Every name maps to the stem "__" (two-byte characters): suffixes -2, -3, ...
    let names: Vec<String> = (0..1500u32)
        .map(|i| char::from_u32(0x100 + i).unwrap().to_string())
        .collect();
    let tensors: Vec<T> = names.iter().map(|n| T::f32(n, &[1], &[1.0])).collect();
    write_safetensors(&model, &tensors);
    let out = tmp.path().join("out");
    render_cmd(&model, &out).arg("-q").assert().success();
    let m = manifest(&out);
    let mut images = fields(&m, "tensors", "image");
    assert!(images.contains(&"__.png") && images.contains(&"__-1500.png"));
    images.sort_unstable();
    images.dedup();
    assert_eq!(images.len(), 1500);
}

#[test]
fn the_library_takes_str_paths_and_renders_what_the_cli_does() {
    // `render` took `&[PathBuf]` and `&Path` only: `render(&["m.safetensors"], "out", ..)`
    // did not compile.
    let tmp = tempfile::tempdir().unwrap();
    let shapes = fixture("shapes.safetensors");
    let (lib, cli) = (tmp.path().join("lib"), tmp.path().join("cli"));
    let config = tensorheat::RenderConfig::default();
    let reports =
        tensorheat::render(&[shapes.to_str().unwrap()], lib.to_str().unwrap(), &config).unwrap();
    assert_eq!(reports.len(), 1);
    render_cmd(&shapes, &cli).arg("-q").assert().success();
    assert_eq!(manifest(&lib)["tensors"], manifest(&cli)["tensors"]);
}
