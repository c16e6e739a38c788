//! Checks shared by the `render` and `structured` targets.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use tensorheat::source::parse_header;
use tensorheat::{InputReport, RenderConfig, Size};

/// Writes `bytes` to `<tmp>/in/model.safetensors`, renders it into `<tmp>/out` and checks
/// everything that must hold whatever the bytes are. With `must_be_valid`, the bytes are
/// a well-formed file and its header must validate. Returns the report.
pub fn check_render(bytes: &[u8], config: &RenderConfig, must_be_valid: Option<&str>) -> InputReport {
    let root = tempfile::tempdir().expect("tempdir");
    let in_dir = root.path().join("in");
    fs::create_dir(&in_dir).expect("mkdir in");
    let input = in_dir.join("model.safetensors");
    fs::write(&input, bytes).expect("write input");
    let out = root.path().join("out");

    let header = parse_header(&input, bytes);
    if let (Some(what), Err(e)) = (must_be_valid, &header) {
        panic!("a well-formed file ({what}) is rejected: {e}");
    }

    let mut reports = tensorheat::render(&[input.clone()], &out, config).expect("config is valid");
    assert_eq!(reports.len(), 1);
    let report = reports.pop().unwrap();
    assert_eq!(report.out_dir, out);
    let m = &report.manifest;

    // Nothing outside out/: the temporary root holds in/ and out/, in/ only the input,
    // unchanged.
    assert_eq!(names(root.path()), set(&["in", "out"]), "stray files beside in/ and out/");
    assert_eq!(names(&in_dir), set(&["model.safetensors"]), "files written into in/");
    assert_eq!(fs::read(&input).expect("read input"), bytes, "input was modified");
    assert!(fs::symlink_metadata(&out).unwrap().is_dir());

    // out/ holds exactly manifest.json and the files the manifest lists, all regular
    // files with safe single-component names (no temporary file left behind).
    let mut expected = BTreeSet::from(["manifest.json".to_owned()]);
    for t in &m.tensors {
        assert!(expected.insert(t.image.clone()), "two tensors share {:?}", t.image);
        if let Some(raw) = &t.raw {
            assert!(expected.insert(raw.clone()), "two tensors share {raw:?}");
        }
    }
    // Besides those, render may keep its own bookkeeping: the gallery page and the
    // resume journal (`.tensorheat.state*.jsonl`).
    let extra = |n: &str| n == "index.html" || (n.starts_with(".tensorheat.state") && n.ends_with(".jsonl"));
    let present = names(&out);
    for name in &present {
        assert!(!name.ends_with(".tmp"), "temporary file {name:?} left in out/");
    }
    let listed_present: BTreeSet<String> = present.iter().filter(|n| !extra(n)).cloned().collect();
    assert_eq!(listed_present, expected, "out/ does not hold exactly what the manifest lists");
    for name in &present {
        let meta = fs::symlink_metadata(out.join(name)).unwrap();
        assert!(meta.is_file(), "{name} is not a regular file");
    }
    for name in &expected {
        assert!(
            !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
            "unsafe output file name {name:?}"
        );
    }

    // The manifest on disk is JSON listing the same tensors.
    let on_disk: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).expect("manifest is JSON");
    let listed = on_disk["tensors"].as_array().expect("tensors array").len();
    assert_eq!(listed, m.tensors.len());
    assert_eq!(on_disk["errors"].as_array().expect("errors array").len(), m.errors.len());

    // Per rendered tensor: a PNG of the grid's size, a .npy iff asked, sane statistics.
    for t in &m.tensors {
        let png = fs::read(out.join(&t.image)).unwrap();
        let (w, h) = png_size(&png);
        assert_eq!([h as usize, w as usize], t.grid, "{}: png size is not the grid", t.name);
        if let Size::MaxSize(mh, mw) = config.size {
            // keep_aspect only makes blocks bigger, so the limit holds with it too.
            assert!(t.grid[0] <= mh.get() && t.grid[1] <= mw.get(), "{}: grid {:?}", t.name, t.grid);
        }
        assert_eq!(t.raw.is_some(), config.raw);
        if let Some(raw) = &t.raw {
            let npy = fs::read(out.join(raw)).unwrap();
            assert!(npy.starts_with(b"\x93NUMPY\x01\x00"));
            let hlen = u16::from_le_bytes([npy[8], npy[9]]) as usize;
            assert_eq!(npy.len(), 10 + hlen + 4 * t.grid[0] * t.grid[1], "{}: npy length", t.name);
        }
        let numel: usize = t.shape.iter().product();
        let s = &t.stats;
        assert_eq!(s.count + s.nan + s.inf, numel as u64, "{}: counts do not add up", t.name);
        assert!(s.zeros <= s.count);
        assert_eq!(s.min.is_some(), s.count > 0);
        if let (Some(lo), Some(hi)) = (s.min, s.max) {
            assert!(lo <= hi && lo.is_finite() && hi.is_finite(), "{}: min {lo} max {hi}", t.name);
        }
    }

    match &header {
        Ok(h) => {
            assert!(m.errors.is_empty(), "a file whose header validates fails to render: {:?}", m.errors);
            assert_eq!(m.tensors.len() + m.skipped.len(), h.tensors.len(), "tensors lost");
        }
        Err(_) => {
            assert!(!m.errors.is_empty(), "an invalid file renders without error");
            assert!(m.tensors.is_empty() && m.skipped.is_empty());
        }
    }
    report
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.unwrap().file_name().into_string().expect("utf-8 name"))
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Width and height from a PNG's IHDR, after checking that it decodes.
fn png_size(png: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("png header decodes");
    let mut buf = vec![0; reader.output_buffer_size().expect("png buffer size")];
    let info = reader.next_frame(&mut buf).expect("png data decodes");
    (info.width, info.height)
}
