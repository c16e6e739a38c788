//! Output-folder problems and crash safety: a DIR that is a file or cannot be created,
//! a PNG path taken by a folder, a record file that is a symbolic link, inputs that are
//! not regular files, and a render killed with SIGKILL mid-way.

mod common;

use std::time::{Duration, Instant};

use common::{bin, files_below, fixture, manifest, render_cmd, write_safetensors, Rng, T};
use predicates::prelude::*;

#[test]
fn output_dir_that_is_a_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::write(&out, b"not a folder").unwrap();
    render_cmd(&fixture("special.safetensors"), &out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("tensorheat: error:").and(predicate::str::contains("out")))
        .stderr(predicate::str::contains("panicked").not());
    assert_eq!(std::fs::read(&out).unwrap(), b"not a folder");
}

#[cfg(target_os = "linux")]
#[test]
fn output_dir_that_cannot_be_created_is_a_clear_error() {
    // Nobody, not even root, can create folders in /proc.
    let out = std::path::Path::new("/proc/tensorheat-test-out");
    bin()
        .arg("render")
        .arg(fixture("special.safetensors"))
        .arg(fixture("shapes.safetensors"))
        .arg("-o")
        .arg(out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "/proc/tensorheat-test-out/special",
        ))
        .stderr(predicate::str::contains("/proc/tensorheat-test-out/shapes"));
}

/// Makes a FIFO at `path` (with coreutils' `mkfifo`).
#[cfg(unix)]
fn mkfifo(path: &std::path::Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success(), "mkfifo {}", path.display());
}

#[cfg(unix)]
#[test]
fn a_fifo_is_an_error_naming_it_and_the_rest_renders() {
    // Opening a FIFO for reading waits for a writer: without the check the run would
    // hang here (the timeout turns that into a failure).
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(fixture("special.safetensors"), model.join("a.safetensors")).unwrap();
    mkfifo(&model.join("b.safetensors"));
    let out = tmp.path().join("out");
    render_cmd(&model, &out)
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("b.safetensors")
                .and(predicate::str::contains("is not a regular file")),
        );
    assert_eq!(manifest(&out)["tensors"].as_array().unwrap().len(), 4);
    bin()
        .arg("list")
        .arg(model.join("b.safetensors"))
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not a regular file"));
    // A `config.json` that cannot be read is named in a warning (FP8 block sizes then
    // come from the scales' shapes, as without one).
    std::fs::remove_file(model.join("b.safetensors")).unwrap();
    mkfifo(&model.join("config.json"));
    render_cmd(&model, &tmp.path().join("out2"))
        .timeout(Duration::from_secs(60))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("warning:").and(predicate::str::contains(
                "config.json: is not a regular file",
            )),
        );
    // So is one that is not JSON.
    std::fs::remove_file(model.join("config.json")).unwrap();
    std::fs::write(model.join("config.json"), "{not json").unwrap();
    render_cmd(&model, &tmp.path().join("out4"))
        .assert()
        .success()
        .stderr(predicate::str::contains("config.json: not JSON"));
    // And one whose block size is not two whole numbers, which was ignored silently (a
    // robustness audit's finding).
    // (A zero, `[0, 0]`, failed every FP8 tensor with "does not fit ... blocks of".)
    for (i, bad) in [
        "[-1, 128]",
        "\"abc\"",
        "[128]",
        "[1.5, 2.5]",
        "[1, 2, 3]",
        "[0, 0]",
        "[128, 0]",
    ]
    .into_iter()
    .enumerate()
    {
        let config = format!(r#"{{"quantization_config": {{"weight_block_size": {bad}}}}}"#);
        std::fs::write(model.join("config.json"), config).unwrap();
        render_cmd(&model, &tmp.path().join(format!("out5-{i}")))
            .assert()
            .success()
            .stderr(predicate::str::contains(format!(
                "config.json: quantization_config.weight_block_size is {}",
                bad.replace(", ", ",")
            )));
    }
    std::fs::remove_file(model.join("config.json")).unwrap();
    // An index file that is a FIFO fails the model.
    mkfifo(&model.join("model.safetensors.index.json"));
    render_cmd(&model, &tmp.path().join("out3"))
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("model.safetensors.index.json"));
}

#[cfg(unix)]
#[test]
fn fifos_among_records_and_manifests_do_not_block() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    render_cmd(&fixture("special.safetensors"), &out)
        .assert()
        .success();
    // `--skip-existing` reads every record file in the folder: a FIFO among them is
    // passed over, and the run reuses the real record.
    mkfifo(&out.join(".tensorheat.state.2-of-2.jsonl"));
    render_cmd(&fixture("special.safetensors"), &out)
        .args(["--skip-existing", "-v"])
        .timeout(Duration::from_secs(60))
        .assert()
        .success()
        .stderr(predicate::str::contains("kept special_f32"));
    // `gallery` and `merge` read manifests.
    std::fs::remove_file(out.join("manifest.json")).unwrap();
    mkfifo(&out.join("manifest.json"));
    let parts = tmp.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    mkfifo(&parts.join("manifest.1-of-1.json"));
    for (command, dir, file) in [
        ("gallery", &out, "manifest.json"),
        ("merge", &parts, "manifest.1-of-1.json"),
    ] {
        bin()
            .arg(command)
            .arg(dir)
            .timeout(Duration::from_secs(60))
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!(
                "{file}: is not a regular file"
            )));
    }
}

#[cfg(unix)]
#[test]
fn an_input_folder_that_is_a_link_is_refused() {
    // With several inputs each gets DIR/<stem>/: a link planted there would lead the
    // writes out of DIR.
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("special")).unwrap();
    bin()
        .arg("render")
        .arg(fixture("special.safetensors"))
        .arg(fixture("shapes.safetensors"))
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is a symbolic link"));
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    assert!(
        out.join("shapes/manifest.json").is_file(),
        "the other input renders"
    );
}

/// Writes `tmp/outside.txt` ("keep me") and plants `link` pointing at it; returns its
/// path, to check afterwards that nothing was written through the link.
#[cfg(unix)]
fn link_outside(tmp: &std::path::Path, link: &std::path::Path) -> std::path::PathBuf {
    let outside = tmp.join("outside.txt");
    std::fs::write(&outside, b"keep me").unwrap();
    std::os::unix::fs::symlink(&outside, link).unwrap();
    outside
}

#[cfg(unix)]
#[test]
fn a_record_file_that_is_a_link_is_replaced_not_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let record = out.join(".tensorheat.state.jsonl");
    let outside = link_outside(tmp.path(), &record);
    render_cmd(&fixture("special.safetensors"), &out)
        .assert()
        .success();
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    assert!(std::fs::symlink_metadata(&record).unwrap().is_file());
    let text = std::fs::read_to_string(&record).unwrap();
    assert_eq!(text.lines().count(), 4, "one line per tensor:\n{text}");
}

/// An empty folder in the record's place is replaced too (it failed the whole input, a
/// robustness audit's finding); one with files in it fails the input, naming it, and
/// keeps them.
#[test]
fn a_record_path_taken_by_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let record = out.join(".tensorheat.state.jsonl");
    std::fs::create_dir_all(&record).unwrap();
    render_cmd(&fixture("special.safetensors"), &out)
        .assert()
        .success();
    assert_eq!(manifest(&out)["tensors"].as_array().unwrap().len(), 4);
    assert!(std::fs::symlink_metadata(&record).unwrap().is_file());
    let out = tmp.path().join("out2");
    let record = out.join(".tensorheat.state.jsonl");
    std::fs::create_dir_all(&record).unwrap();
    std::fs::write(record.join("mine.txt"), b"keep me").unwrap();
    render_cmd(&fixture("special.safetensors"), &out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            ".tensorheat.state.jsonl: is a folder with files in it, where the run keeps its \
             record of finished tensors",
        ));
    assert_eq!(std::fs::read(record.join("mine.txt")).unwrap(), b"keep me");
}

#[test]
fn png_path_taken_by_a_folder_fails_that_tensor_only() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("special_f32.png")).unwrap();
    render_cmd(&fixture("special.safetensors"), &out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "special.safetensors: tensor \"special_f32\": ",
        ))
        .stderr(predicate::str::contains("special_f32.png: "));
    let m = manifest(&out);
    assert_eq!(m["tensors"].as_array().unwrap().len(), 3);
    assert_eq!(m["errors"][0]["name"], "special_f32");
    assert!(out.join("special_bf16.png").is_file());
    assert!(!files_below(&out)
        .iter()
        .any(|f| f.to_string_lossy().ends_with(".tmp")));
}

#[cfg(unix)]
#[test]
fn sigkill_leaves_no_partial_output_and_a_rerun_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("big.safetensors");
    let mut rng = Rng::new(5);
    let tensors: Vec<T> = (0..48)
        .map(|i| {
            let v: Vec<f32> = (0..700 * 700).map(|_| rng.normal()).collect();
            T::f32(&format!("layers.{i}.weight"), &[700, 700], &v)
        })
        .collect();
    write_safetensors(&model, &tensors);
    let out = tmp.path().join("out");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("tensorheat"))
        .arg("render")
        .arg(&model)
        .arg("-o")
        .arg(&out)
        .args(["--raw", "--threads", "1", "-q"])
        .spawn()
        .unwrap();
    // Killed once the run's record holds a finished tensor (its files written first).
    let record = out.join(".tensorheat.state.jsonl");
    let recorded = || {
        let text = std::fs::read_to_string(&record).unwrap_or_default();
        text.matches('\n').count()
    };
    let start = Instant::now();
    while recorded() == 0 && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    let finished = recorded();
    assert!(finished > 0, "no tensor recorded as finished");
    // (Were the render ever to finish first, the test would check nothing: it needs a
    // larger model then, not a pass.)
    assert!(!status.success(), "render finished before the kill");
    assert!(
        !out.join("manifest.json").exists(),
        "manifest of a killed run"
    );
    for f in files_below(&out) {
        let name = f.to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // temporary files and the run's record
        }
        let path = out.join(&f);
        if name.ends_with(".png") {
            let img = image::open(&path).unwrap_or_else(|e| panic!("partial {name}: {e}"));
            assert_eq!((img.width(), img.height()), (700, 700));
        } else if name.ends_with(".npy") {
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                128 + 700 * 700 * 4,
                "{name}"
            );
        } else {
            panic!("unexpected file {name}");
        }
    }
    // The re-run keeps every tensor the killed run recorded, and renders the rest.
    let rerun = render_cmd(&model, &out)
        .args(["--raw", "--skip-existing", "-v"])
        .assert()
        .success();
    let err = String::from_utf8_lossy(&rerun.get_output().stderr).into_owned();
    assert_eq!(err.matches("tensorheat: kept").count(), finished, "{err}");
    let left: Vec<_> = files_below(&out)
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "stale temporary files: {left:?}");
    assert_eq!(manifest(&out)["tensors"].as_array().unwrap().len(), 48);
}

#[cfg(unix)]
#[test]
fn man_pages_replace_links_instead_of_writing_through_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    std::fs::create_dir(&dir).unwrap();
    let page = dir.join("tensorheat-render.1");
    let outside = link_outside(tmp.path(), &page);
    bin()
        .arg("man")
        .arg("--out-dir")
        .arg(&dir)
        .assert()
        .success();
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    assert!(std::fs::symlink_metadata(&page).unwrap().is_file());
    assert!(std::fs::read_to_string(&page)
        .unwrap()
        .contains(".TH tensorheat-render 1"));
}

#[cfg(unix)]
#[test]
fn merge_leaves_linked_subfolders_alone() {
    // Partitions of two inputs: `out/special/` is a real folder, `out/shapes` a link to a
    // folder outside `out` that also holds partial manifests.
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    render_cmd(&fixture("shapes.safetensors"), &outside)
        .args(["--partition", "1/1", "-q"])
        .assert()
        .success();
    let out = tmp.path().join("out");
    render_cmd(&fixture("special.safetensors"), &out.join("special"))
        .args(["--partition", "1/1", "-q"])
        .assert()
        .success();
    std::os::unix::fs::symlink(&outside, out.join("shapes")).unwrap();
    bin()
        .arg("merge")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "shapes: is a symbolic link; not merged",
        ));
    assert!(out.join("special/manifest.json").is_file());
    assert!(!outside.join("manifest.json").exists());
}
