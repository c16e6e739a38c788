//! `DIR/index.html`: written by every render and by `tensorheat gallery DIR`, one card per
//! tensor, hostile names escaped, nothing but local files referenced.
//!
//! The last test loads the page in headless Chromium and checks that every image really
//! loaded. It needs a browser, so it is ignored by default:
//!
//! ```text
//! apt-get install chromium
//! cargo test --test gallery -- --ignored
//! ```
//!
//! (`TENSORHEAT_CHROMIUM=/path/to/chrome` picks another Chromium-based browser.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{bin, fixture, manifest, write_safetensors, T};
use predicates::prelude::*;

fn render(input: &Path, out: &Path, extra: &[&str]) {
    bin()
        .arg("render")
        .arg(input)
        .arg("-o")
        .arg(out)
        .arg("-q")
        .args(extra)
        .assert()
        .success()
        .stdout("");
}

fn page(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("index.html")).expect("index.html written")
}

/// The values of every `name="..."` attribute in `html`, in order.
fn attributes<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let key = format!(" {name}=\"");
    html.match_indices(&key)
        .map(|(i, _)| {
            let rest = &html[i + key.len()..];
            &rest[..rest.find('"').expect("attribute is closed")]
        })
        .collect()
}

#[test]
fn every_render_writes_a_gallery_with_one_card_per_tensor_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    render(&fixture("gradients.safetensors"), &out, &[]);
    let html = page(&out);
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..80]);
    assert!(html.trim_end().ends_with("</html>"));
    let m = manifest(&out);
    let tensors = m["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 15);
    assert_eq!(
        html.matches("<article class=\"card\"").count(),
        tensors.len()
    );
    // Cards in manifest (natural) order, each showing its own PNG.
    let names: Vec<&str> = tensors
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(attributes(&html, "data-name"), names);
    let images: Vec<&str> = tensors
        .iter()
        .map(|t| t["image"].as_str().unwrap())
        .collect();
    assert_eq!(attributes(&html, "src"), images);
    // Each card carries its dtype, shape, grid, block, reduction, range ticks and stats.
    for t in tensors {
        let dtype = t["dtype"].as_str().unwrap();
        assert!(html.contains(&format!("<b>{dtype}</b> [12, 20] · grid 12×20 · block 1×1")));
    }
    assert_eq!(html.matches("<dl class=\"stats\">").count(), 15);
    assert_eq!(html.matches("<div class=\"bar cm").count(), 15);
    assert!(html.contains("<span class=\"zero\""));
    assert!(html.contains("id=\"filter\""));
}

#[test]
fn hostile_names_are_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("evil.safetensors");
    let names = [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(2)>",
        "a&b",
        "q\"uote",
        "it's",
        "model.layers.1.</section>",
    ];
    let tensors: Vec<T> = names
        .iter()
        .map(|n| T::f32(n, &[2, 2], &[1.0, -1.0, 0.5, 0.0]))
        .collect();
    write_safetensors(&model, &tensors);
    let out = tmp.path().join("out");
    render(&model, &out, &[]);
    let html = page(&out);
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<img src=x"));
    assert!(!html.contains("a&b") && html.contains("a&amp;b"));
    assert!(!html.contains("q\"uote") && html.contains("q&quot;uote"));
    assert!(!html.contains("it's") && html.contains("it&#39;s"));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert_eq!(
        html.matches("</section>").count(),
        html.matches("<section").count()
    );
    assert_eq!(html.matches("<article class=\"card\"").count(), names.len());
}

#[test]
fn references_only_local_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    render(&fixture("special.safetensors"), &out, &["--raw"]);
    let html = page(&out);
    // Protocol-relative `//host/x` links are caught below: no link holds a `/`.
    for scheme in ["http://", "https://", "url(", "@import", "file:"] {
        assert!(!html.contains(scheme), "{scheme} in index.html");
    }
    let mut local = 0;
    for value in attributes(&html, "src")
        .into_iter()
        .chain(attributes(&html, "href"))
    {
        if value.starts_with('#') {
            continue;
        }
        assert!(
            value.ends_with(".png") || value.ends_with(".npy"),
            "{value}"
        );
        assert!(!value.contains('/') && !value.contains(':'), "{value}");
        assert!(out.join(value).is_file(), "{value} missing");
        local += 1;
    }
    // Each tensor: the image, its link, and the .npy link.
    let tensors = manifest(&out)["tensors"].as_array().unwrap().len();
    assert_eq!(local, 3 * tensors);
}

#[test]
fn gallery_subcommand_regenerates_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    render(&fixture("gradients.safetensors"), &out, &["--raw"]);
    let written = std::fs::read(out.join("index.html")).unwrap();
    std::fs::remove_file(out.join("index.html")).unwrap();
    bin()
        .arg("gallery")
        .arg(&out)
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains("gallery of 15 tensors"));
    assert_eq!(std::fs::read(out.join("index.html")).unwrap(), written);
    // Over an existing page, quietly.
    bin()
        .args(["gallery", "-q"])
        .arg(&out)
        .assert()
        .success()
        .stderr("");
    assert_eq!(std::fs::read(out.join("index.html")).unwrap(), written);
}

#[test]
fn gallery_subcommand_names_a_missing_or_invalid_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    bin()
        .arg("gallery")
        .arg(tmp.path())
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::starts_with("tensorheat: error: "))
        .stderr(predicate::str::contains("manifest.json"));
    std::fs::write(tmp.path().join("manifest.json"), b"{\"tensors\": 3}").unwrap();
    bin()
        .arg("gallery")
        .arg(tmp.path())
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("tensorheat: error: "))
        .stderr(predicate::str::contains(
            "manifest.json: not a valid tensorheat manifest",
        ));
    assert!(!tmp.path().join("index.html").exists());
}

#[test]
fn skipped_tensors_and_errors_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.safetensors");
    write_safetensors(
        &model,
        &[
            T::f32("model.layers.0.w", &[2, 2], &[1.0, 2.0, 3.0, 4.0]),
            T::f32("model.layers.0.empty<>", &[0, 3], &[]),
            T::f32("model.layers.1.w", &[2], &[1.0, 2.0]),
            T::f32("lm_head.weight", &[1, 2], &[1.0, 2.0]),
        ],
    );
    let missing = tmp.path().join("gone&lost.safetensors");
    let out = tmp.path().join("out");
    bin()
        .arg("render")
        .arg(&model)
        .arg(&missing)
        .arg("-o")
        .arg(&out)
        .arg("-q")
        .assert()
        .code(1);
    let html = page(&out.join("m"));
    assert!(html.contains("Skipped <span class=\"count\">1</span>"));
    assert!(html.contains("<code>model.layers.0.empty&lt;&gt;</code>"));
    assert!(html.contains("Errors <span class=\"count\">0</span>"));
    // Groups by layer prefix, and by first dotted component otherwise.
    assert!(html.contains("<h2>model.layers.0 <span class=\"count\">1</span></h2>"));
    assert!(html.contains("<h2>model.layers.1 <span class=\"count\">1</span></h2>"));
    assert!(html.contains("<h2>lm_head <span class=\"count\">1</span></h2>"));
    let html = page(&out.join("gone_lost"));
    assert!(html.contains("Errors <span class=\"count\">1</span>"));
    assert!(html.contains("gone&amp;lost.safetensors"));
    assert!(!html.contains("gone&lost"));
    assert!(html.contains("No tensor was rendered."));
}

/// The browser to drive: `$TENSORHEAT_CHROMIUM`, else the first of the usual names on PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("TENSORHEAT_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("no Chromium found: `apt-get install chromium` or set TENSORHEAT_CHROMIUM");
}

/// `file://` URL of an absolute path (percent-encoding all but unreserved bytes and `/`).
fn file_url(path: &Path, fragment: &str) -> String {
    let path = path.canonicalize().expect("page exists");
    let mut url = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url + fragment
}

/// Runs headless Chromium with `args` on `url`, killing it after a minute; its stdout.
fn run_chromium(profile: &Path, args: &[&str], url: &str) -> String {
    let mut child = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait for chromium").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().expect("reader").expect("chromium's stdout")
}

/// The `data-*` count set on `<body>` by the page's script.
fn body_count(dom: &str, key: &str) -> usize {
    let body = &dom[dom.find("<body").expect("a body")..];
    let body = &body[..body.find('>').expect("body tag closed")];
    let attr = attributes(body, &format!("data-{key}"));
    attr.first()
        .unwrap_or_else(|| panic!("no data-{key} on <body>: {body}"))
        .parse()
        .expect("a count")
}

#[test]
#[ignore = "needs Chromium: apt-get install chromium; cargo test --test gallery -- --ignored"]
fn gallery_loads_every_image_in_headless_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out dir");
    render(&fixture("gradients.safetensors"), &out, &[]);
    let profile = tmp.path().join("profile");
    let index = out.join("index.html");
    let window = "--window-size=1200,6000"; // every card in view, so lazy images load too
    let budget = "--virtual-time-budget=5000";

    let dom = run_chromium(
        &profile,
        &[window, budget, "--dump-dom"],
        &file_url(&index, ""),
    );
    assert_eq!(body_count(&dom, "images"), 15, "{dom}");
    assert_eq!(body_count(&dom, "failed"), 0);
    assert_eq!(body_count(&dom, "loaded"), 15);

    // The filter (here from the URL fragment) hides the cards that do not match.
    let dom = run_chromium(
        &profile,
        &[window, budget, "--dump-dom"],
        &file_url(&index, "#q=F8_"),
    );
    let visible = dom
        .match_indices("<article class=\"card\"")
        .filter(|(i, _)| !dom[*i..].split('>').next().unwrap_or("").contains("hidden"))
        .count();
    assert_eq!(visible, 2, "grad_f8_e4m3 and grad_f8_e5m2 only");
    assert!(dom.contains("2 of 15 shown"));

    // A screenshot of the page is a real picture, not a blank window.
    let shot = tmp.path().join("shot.png");
    let arg = format!("--screenshot={}", shot.display());
    run_chromium(
        &profile,
        &["--window-size=1200,900", budget, &arg],
        &file_url(&index, ""),
    );
    let img = image::open(&shot).expect("a PNG screenshot").to_rgb8();
    assert_eq!(img.dimensions(), (1200, 900));
    let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 100, "only {} colours", colours.len());
}
