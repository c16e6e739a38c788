//! The command line end to end: determinism across thread counts, hostile tensor names,
//! several inputs, `list`, exit codes.

mod common;

use std::path::Path;

use common::{bin, fields, files_below, fixture, manifest, render_cmd, write_safetensors, Rng, T};
use predicates::prelude::*;

/// A small "model" with a few realistic tensors, a few MB in all.
fn write_model(path: &Path) {
    let mut rng = Rng::new(7);
    let mut normal = |n: usize| (0..n).map(|_| rng.normal() * 0.02).collect::<Vec<f32>>();
    write_safetensors(
        path,
        &[
            T::bf16(
                "model.layers.0.mlp.up_proj.weight",
                &[1500, 700],
                &normal(1500 * 700),
            ),
            T::f32(
                "model.layers.0.self_attn.q_proj.weight",
                &[512, 512],
                &normal(512 * 512),
            ),
            T::bf16(
                "model.layers.10.input_layernorm.weight",
                &[700],
                &normal(700),
            ),
            T::f32("model.embed_tokens.weight", &[3000, 64], &normal(3000 * 64)),
        ],
    );
}

/// Files that are results (PNG, npy, manifest, gallery), not hidden bookkeeping.
fn visible(files: &[std::path::PathBuf]) -> Vec<&std::path::PathBuf> {
    files
        .iter()
        .filter(|f| {
            let n = f.to_string_lossy();
            !n.starts_with('.') && n != "index.html"
        })
        .collect()
}

fn render_all(input: &Path, out: &Path, extra: &[&str]) {
    render_cmd(input, out)
        .args(["--raw", "-q"])
        .args(extra)
        .assert()
        .success()
        .stdout("");
}

#[test]
fn output_is_byte_identical_for_one_and_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model.safetensors");
    write_model(&model);
    for reduce in ["mean", "std", "absmax"] {
        let (a, b) = (
            tmp.path().join(format!("a-{reduce}")),
            tmp.path().join(format!("b-{reduce}")),
        );
        render_all(
            &model,
            &a,
            &[
                "--threads",
                "1",
                "--reduce",
                reduce,
                "--max-size",
                "300x200",
            ],
        );
        render_all(
            &model,
            &b,
            &[
                "--threads",
                "2",
                "--reduce",
                reduce,
                "--max-size",
                "300x200",
            ],
        );
        let files = files_below(&a);
        assert_eq!(files, files_below(&b));
        assert_eq!(visible(&files).len(), 4 * 2 + 1, "{files:?}");
        for f in files {
            assert_eq!(
                std::fs::read(a.join(&f)).unwrap(),
                std::fs::read(b.join(&f)).unwrap(),
                "{f:?}"
            );
        }
    }
}

#[test]
fn hostile_names_stay_inside_the_output_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("evil.safetensors");
    let long = "n".repeat(1000);
    let names = [
        "../../x",
        "/etc/passwd",
        "a/b/c",
        "..",
        ".",
        "",
        "ünïcödé/ä",
        "nul\0byte",
        "new\nline",
        "CON",
        "Name",
        "name",
        "NAME",
        long.as_str(),
    ];
    let tensors: Vec<T> = names
        .iter()
        .enumerate()
        .map(|(i, n)| T::f32(n, &[2, 2], &[i as f32, 1.0, -1.0, 0.5]))
        .collect();
    write_safetensors(&model, &tensors);
    let out = tmp.path().join("deep").join("out");
    render_all(&model, &out, &[]);
    // Only the model and the output folder exist around it.
    let all = files_below(tmp.path());
    let outside: Vec<_> = all
        .iter()
        .filter(|p| !p.starts_with("deep/out") && p.as_os_str() != "evil.safetensors")
        .collect();
    assert!(outside.is_empty(), "written outside: {outside:?}");
    let inside = files_below(&out);
    assert_eq!(visible(&inside).len(), 2 * names.len() + 1, "{inside:?}");
    // Distinct files, one PNG per tensor, each listed in the manifest.
    let m = manifest(&out);
    let mut images = fields(&m, "tensors", "image");
    assert_eq!(images.len(), names.len());
    images.sort_unstable();
    images.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    assert_eq!(images.len(), names.len(), "case-insensitively distinct");
    for img in images {
        assert!(out.join(img).is_file() && !img.contains('/') && !img.starts_with('.'));
        assert!(img.len() <= 204, "{img}");
    }
}

#[test]
fn several_inputs_get_their_own_folders_and_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    bin()
        .arg("render")
        .arg(fixture("gradients.safetensors"))
        .arg(fixture("shapes.safetensors"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    let g = manifest(&out.join("gradients"));
    assert_eq!(g["tensors"].as_array().unwrap().len(), 15);
    assert_eq!(
        g["inputs"][0].as_str().unwrap(),
        fixture("gradients.safetensors").display().to_string()
    );
    let s = manifest(&out.join("shapes"));
    let names = fields(&s, "tensors", "name");
    assert_eq!(names, ["cube", "hyper", "scalar", "tall", "vector", "wide"]);
    assert_eq!(s["skipped"][0]["name"], "empty");
    assert_eq!(s["skipped"][0]["reason"], "empty");
    // 1-D tensors are one pixel tall; a scalar is one pixel.
    let by_name = |n: &str| {
        s["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .unwrap()
            .clone()
    };
    // Inputs whose stems collide get suffixed folders, as file names do.
    let (x, y) = (tmp.path().join("x"), tmp.path().join("y"));
    for d in [&x, &y] {
        std::fs::create_dir(d).unwrap();
        std::fs::copy(fixture("shapes.safetensors"), d.join("a.safetensors")).unwrap();
    }
    let twins = tmp.path().join("twins");
    bin()
        .arg("render")
        .args([x.join("a.safetensors"), y.join("a.safetensors")])
        .arg("-o")
        .arg(&twins)
        .arg("-q")
        .assert()
        .success();
    for (dir, input) in [("a", &x), ("a-2", &y)] {
        let m = manifest(&twins.join(dir));
        let want = input.join("a.safetensors").display().to_string();
        assert_eq!(m["inputs"][0].as_str().unwrap(), want, "{dir}");
    }
    assert_eq!(by_name("vector")["grid"], serde_json::json!([1, 37]));
    assert_eq!(by_name("scalar")["grid"], serde_json::json!([1, 1]));
    assert_eq!(by_name("hyper")["grid"], serde_json::json!([24, 5]));
    let img = image::open(out.join("shapes").join("vector.png")).unwrap();
    assert_eq!((img.width(), img.height()), (37, 1));
}

#[test]
fn manifest_has_exactly_the_documented_keys() {
    let tmp = tempfile::tempdir().unwrap();
    render_cmd(&fixture("special.safetensors"), tmp.path())
        .assert()
        .success();
    let m = manifest(tmp.path());
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let mut top = keys(&m);
    top.sort();
    assert_eq!(
        top,
        [
            "errors",
            "inputs",
            "options",
            "skipped",
            "tensorheat",
            "tensors"
        ]
    );
    let mut t = keys(&m["tensors"][0]);
    t.sort();
    assert_eq!(
        t,
        [
            "block", "colormap", "dtype", "grid", "image", "name", "range", "raw", "reduce",
            "shape", "source", "stats"
        ]
    );
    let mut s = keys(&m["tensors"][0]["stats"]);
    s.sort();
    assert_eq!(
        s,
        ["count", "inf", "max", "mean", "min", "nan", "std", "zeros"]
    );
    assert_eq!(m["tensorheat"], env!("CARGO_PKG_VERSION"));
    assert_eq!(m["options"]["max_size"], serde_json::json!([1024, 1024]));
    // An all-NaN tensor renders (magenta) with null statistics and no range.
    let all_nan = m["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "all_nan")
        .unwrap();
    assert!(all_nan["range"].is_null() && all_nan["stats"]["mean"].is_null());
    assert_eq!(all_nan["stats"]["nan"], 9);
}

#[test]
fn options_shape_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    render_cmd(&fixture("gradients.safetensors"), &out)
        .args([
            "--block",
            "4x5",
            "--range=-1:1",
            "--colormap",
            "greys",
            "--nan-color",
            "00ff00",
        ])
        .assert()
        .success();
    let m = manifest(&out);
    let e = &m["tensors"][0];
    assert_eq!(e["block"], serde_json::json!([4, 5]));
    assert_eq!(e["grid"], serde_json::json!([3, 4]));
    assert_eq!(e["range"], serde_json::json!([-1.0, 1.0]));
    assert_eq!(e["colormap"], "Greys");
    assert_eq!(m["options"]["block"], serde_json::json!([4, 5]));
    assert!(m["options"]["max_size"].is_null());
    // --keep-aspect: one block size for both axes.
    let out2 = tmp.path().join("k");
    render_cmd(&fixture("shapes.safetensors"), &out2)
        .args(["--max-size", "10", "--keep-aspect"])
        .assert()
        .success();
    let m = manifest(&out2);
    let tall = m["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "tall")
        .unwrap();
    assert_eq!(tall["block"], serde_json::json!([110, 110]));
    assert_eq!(tall["grid"], serde_json::json!([10, 1]));
}

/// `tensorheat list --json INPUTS...`, parsed.
fn list_json(inputs: &[&Path]) -> serde_json::Value {
    let out = bin()
        .args(["list", "--json"])
        .args(inputs)
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

#[test]
fn list_reads_headers_and_prints_json() {
    let v = list_json(&[&fixture("unaligned.safetensors")]);
    assert_eq!(v["total_params"], 5 * 7 + 3 * 9);
    assert_eq!(v["total_bytes"], 5 * 7 * 2 + 3 * 9 * 4);
    let t = &v["tensors"][0];
    assert_eq!(t["name"], "odd_bf16");
    assert_eq!(t["dtype"], "BF16");
    assert_eq!(t["shape"], serde_json::json!([5, 7]));
    assert_eq!(t["source"], "unaligned.safetensors");
    assert_eq!(t["offset"], 139, "absolute file offset of the data");
    assert_eq!(t["bytes"], 70);
    // With several inputs, each row says which one it came through.
    let (a, b) = (
        fixture("unaligned.safetensors"),
        fixture("shapes.safetensors"),
    );
    let v = list_json(&[&a, &b]);
    let inputs = fields(&v, "tensors", "input");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    assert_eq!(inputs.iter().filter(|&&i| i == a).count(), 2, "{inputs:?}");
    assert_eq!(inputs.iter().filter(|&&i| i == b).count(), 7, "{inputs:?}");
    bin()
        .arg("list")
        .arg(fixture("shapes.safetensors"))
        .assert()
        .success()
        .stdout(predicate::str::contains("wide").and(predicate::str::contains("total: 7 tensors")));
}

#[test]
fn usage_errors_exit_2() {
    bin().assert().code(2);
    bin().args(["render", "x.safetensors"]).assert().code(2);
    bin()
        .args(["render", "x.safetensors", "-o", "o", "--clip", "49"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("clip"));
    bin()
        .args(["render", "x", "-o", "o", "--reduce", "median"])
        .assert()
        .code(2);
    // A misspelt dtype would select nothing; an exact block cannot also be squared.
    let shapes = fixture("shapes.safetensors");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    render_cmd(&shapes, &out)
        .args(["--dtype", "f32,BF61"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("unknown dtype \"BF61\"")
                .and(predicate::str::contains("F8_E4M3")),
        );
    bin()
        .arg("list")
        .arg(&shapes)
        .args(["--dtype", "FOO"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown dtype \"FOO\""));
    render_cmd(&shapes, &out)
        .args(["--block", "2x3", "--keep-aspect"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--keep-aspect"));
    // A fixed range leaves nothing for a percentile to do.
    render_cmd(&shapes, &out)
        .args(["--range", "-1:1", "--clip", "90"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--clip"));
    // Counts the tool cannot serve, instead of an abort allocating a load per worker
    // (`--partition` near 2^64) or minutes spent starting threads.
    for (flag, value) in [
        ("--partition", "18446744073709551615/18446744073709551615"),
        ("-j", "100000"),
    ] {
        render_cmd(&shapes, &out)
            .args([flag, value])
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains(value).and(predicate::str::contains("panicked").not()),
            );
    }
    // Messages on one line, each saying what is wrong once.
    for (flag, value, says) in [
        (
            "--regex",
            "(",
            "tensorheat: error: invalid option: regex \"(\": unclosed group\n",
        ),
        (
            "--include",
            "[a",
            "tensorheat: error: invalid option: glob \"[a\": unclosed character class; \
             missing ']'\n",
        ),
        (
            "--range",
            "2:1",
            "error: invalid value '2:1' for '--range <LO:HI>': range \"2:1\" is not LO:HI",
        ),
        (
            "--tile-lines",
            "0",
            "error: invalid value '0' for '--tile-lines <N>': must be a whole number from 1 up\n",
        ),
    ] {
        render_cmd(&shapes, &out)
            .args([flag, value])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
    }
    assert!(!out.exists(), "a usage error writes nothing");
}

#[test]
fn an_output_folder_that_is_a_file_is_named_as_such_and_blocks_take_a_times_sign() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("afile");
    std::fs::write(&file, b"keep").unwrap();
    let shapes = fixture("shapes.safetensors");
    render_cmd(&shapes, &file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("afile: is not a folder"));
    bin()
        .args(["man", "--out-dir"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("afile: is not a folder"));
    // Also in the place of a parent (several inputs write into `afile/<stem>/`), or as
    // a link to nothing: the error names it, not the folder asked for.
    render_cmd(&shapes, &file.join("sub"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("afile: is not a folder"));
    bin()
        .arg("render")
        .args([&shapes, &fixture("special.safetensors")])
        .arg("-o")
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("afile: is not a folder"));
    #[cfg(unix)]
    {
        let link = tmp.path().join("dangling");
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), &link).unwrap();
        render_cmd(&shapes, &link)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("dangling: is not a folder"));
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    // The README writes block sizes as `R × C`.
    let (times, x) = (tmp.path().join("times"), tmp.path().join("x"));
    render_cmd(&shapes, &times)
        .args(["--block", "2×3", "-q"])
        .assert()
        .success();
    render_cmd(&shapes, &x)
        .args(["--block", "2x3", "-q"])
        .assert()
        .success();
    assert_eq!(manifest(&times)["tensors"], manifest(&x)["tensors"]);
}

#[test]
fn names_and_dtypes_from_files_are_printed_escaped() {
    // A header written by hand: the dtype string is the file's too.
    let header = serde_json::json!({
        "a\u{1b}[31mred\nx": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b\u{202e}": {"dtype": "Q\u{1b}]0;title\u{7}", "shape": [1], "data_offsets": [8, 9]},
    })
    .to_string();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.safetensors");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0; 9]);
    std::fs::write(&path, bytes).unwrap();
    let out = bin()
        .arg("list")
        .arg(&path)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("a\\u{1b}[31mred\\nx"), "{text}");
    assert!(text.contains("b\\u{202e}"), "{text}");
    assert!(text.contains("Q\\u{1b}]0;title\\u{7}"), "{text}");
    // `render -v` names each tensor, and errors and warnings name files and tensors.
    let err = render_cmd(&path, &tmp.path().join("o"))
        .arg("-v")
        .assert()
        .success()
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(err).unwrap();
    assert!(err.contains("rendered a\\u{1b}[31mred\\nx"), "{err}");
    // So are paths in the reports of what a command did (the summary of each input,
    // and `gallery`'s), which printed them raw (a robustness audit's finding).
    let hostile = tmp.path().join("e\u{1b}[2Jv\u{202e}il.safetensors");
    std::fs::copy(&path, &hostile).unwrap();
    let out_dir = tmp.path().join("o\u{1b}[31m");
    let mut reports = Vec::new();
    for cmd in [
        render_cmd(&hostile, &out_dir).assert().success(),
        bin().arg("gallery").arg(&out_dir).assert().success(),
    ] {
        reports.push(String::from_utf8(cmd.get_output().stderr.clone()).unwrap());
    }
    assert!(
        reports[0].contains("e\\u{1b}[2Jv\\u{202e}il.safetensors: rendered"),
        "{reports:?}"
    );
    assert!(reports[1].contains("o\\u{1b}[31m"), "{reports:?}");
    for t in [&text, &err, &reports[0], &reports[1]] {
        assert!(!t.contains(['\u{1b}', '\u{7}', '\u{202e}']), "{t:?}");
    }
}

#[test]
fn a_command_that_fails_as_a_whole_exits_1() {
    // Not a usage error: the folder to merge does not exist.
    let tmp = tempfile::tempdir().unwrap();
    bin()
        .arg("merge")
        .arg(tmp.path().join("nope"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nope"));
    #[cfg(target_os = "linux")]
    {
        // Nor is a full disk under stdout, which the error names.
        let shapes = fixture("shapes.safetensors");
        let shapes = shapes.to_str().unwrap();
        for args in [
            vec!["list", "--json", shapes],
            vec!["list", shapes],
            vec!["man"],
            vec!["completions", "bash"],
            // clap printed these and exited 0.
            vec!["--help"],
            vec!["--version"],
            vec!["render", "--help"],
        ] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_tensorheat"))
                .args(&args)
                .stdout(std::fs::File::create("/dev/full").unwrap())
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("error: stdout: No space left on device"),
                "{args:?}: {err}"
            );
        }
    }
}

#[test]
fn dtype_filter_takes_any_safetensors_dtype() {
    // `list` shows tensors of dtypes tensorheat does not decode, so they can be chosen.
    bin()
        .arg("list")
        .arg(fixture("shapes.safetensors"))
        .args(["--dtype", "c64,F4"])
        .assert()
        .success()
        .stdout(predicate::str::contains("total: 0 tensors"));
}

#[test]
fn an_index_named_without_its_folder_is_read_from_the_current_one() {
    // `Path::new("x.json").parent()` is empty, not `.`.
    let tmp = tempfile::tempdir().unwrap();
    write_safetensors(
        &tmp.path().join("a.safetensors"),
        &[T::f32("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0])],
    );
    let index = serde_json::json!({"weight_map": {"w": "a.safetensors"}});
    std::fs::write(
        tmp.path().join("m.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    bin()
        .current_dir(tmp.path())
        .args(["list", "m.safetensors.index.json"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("F32: 1 tensor, 16 bytes")
                .and(predicate::str::contains("total: 1 tensor, 4 params")),
        );
}

#[test]
fn missing_input_fails_but_others_render() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    bin()
        .arg("render")
        .arg(tmp.path().join("nope.safetensors"))
        .arg(fixture("special.safetensors"))
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("tensorheat: error:")
                .and(predicate::str::contains("nope.safetensors")),
        );
    assert_eq!(
        manifest(&out.join("special"))["tensors"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let m = manifest(&out.join("nope"));
    assert!(m["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("nope.safetensors"));
}

#[test]
fn broken_pipe_on_stdout_exits_quietly() {
    // `list` of more than a pipe buffer into a closed pipe: no panic message, no error.
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("many.safetensors");
    let tensors: Vec<T> = (0..3000)
        .map(|i| T::f32(&format!("t.{i}"), &[1], &[1.0]))
        .collect();
    write_safetensors(&model, &tensors);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("tensorheat"))
        .arg("list")
        .arg(&model)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // Rust ignores SIGPIPE, so the write fails with EPIPE, which ends the run with 0.
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
}

#[cfg(unix)]
#[test]
fn outputs_are_readable_by_others_like_any_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    render_all(&fixture("special.safetensors"), &out, &[]);
    // A file created the ordinary way gets 0666 & !umask; outputs must match it, not the
    // 0600 of a temporary file.
    let plain = tmp.path().join("plain");
    std::fs::write(&plain, b"x").unwrap();
    let want = std::fs::metadata(&plain).unwrap().permissions().mode();
    for f in files_below(&out) {
        let mode = std::fs::metadata(out.join(&f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode, want, "{f:?}: {mode:o}");
    }
}

#[test]
fn filters_that_leave_nothing_are_warned_about() {
    // A typo in a glob rendered nothing and said nothing but "rendered 0 tensors".
    let shapes = fixture("shapes.safetensors");
    let tmp = tempfile::tempdir().unwrap();
    let warning = "shapes.safetensors: none of its 7 tensors matches the filters";
    render_cmd(&shapes, &tmp.path().join("typo"))
        .args(["--include", "model.layer.*"])
        .assert()
        .success()
        .stderr(predicate::str::contains(warning));
    render_cmd(&shapes, &tmp.path().join("some"))
        .args(["--include", "wide*"])
        .assert()
        .success()
        .stderr(predicate::str::contains("warning").not());
}

#[test]
fn filters_are_recorded_as_sets_so_case_order_and_repeats_do_not_matter() {
    // The manifest kept `bf16` as typed and the globs in the order given, so
    // `--skip-existing` with `BF16`, or the same globs in another order, rendered again.
    let shapes = fixture("shapes.safetensors");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    render_cmd(&shapes, &out)
        .args([
            "--dtype",
            "f32,bf16",
            "--include",
            "w*",
            "--include",
            "c*",
            "-q",
        ])
        .args(["--exclude", "x", "--exclude", "e*"])
        .assert()
        .success();
    let options = &manifest(&out)["options"];
    assert_eq!(options["dtype"], serde_json::json!(["BF16", "F32"]));
    assert_eq!(options["include"], serde_json::json!(["c*", "w*"]));
    assert_eq!(options["exclude"], serde_json::json!(["e*", "x"]));
    let again = render_cmd(&shapes, &out)
        .args([
            "--dtype",
            "BF16,F32,bf16",
            "--include",
            "c*",
            "--include",
            "w*",
        ])
        .args(["--include", "c*", "--exclude", "e*", "--exclude", "x"])
        .args(["--skip-existing", "-v"])
        .assert()
        .success();
    let err = String::from_utf8_lossy(&again.get_output().stderr).into_owned();
    assert!(!err.contains("tensorheat: rendered"), "{err}");
    assert!(err.contains("tensorheat: kept"), "{err}");
}
