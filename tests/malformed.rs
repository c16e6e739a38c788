//! Malformed and hostile inputs, driven through the real binary.
//!
//! Contract under test (DESIGN.md, "Reading" and "Output"):
//! - exit 0 when everything renderable was rendered (skipped dtypes are not failures),
//!   1 when some input or tensor failed (the rest still rendered), 2 on a usage error;
//! - every error line on stderr reads `tensorheat: error: <file>[: tensor "<name>"]: ...`;
//! - no input makes the tool panic or hang;
//! - one malformed input never stops the other inputs of the same run, and its
//!   `manifest.json` records the failure;
//! - nothing half-written (`*.tmp`) is left in the output folders.
//!
//! Every malformed file is built here, byte by byte, so that the test does not depend on
//! any writer's idea of what a safetensors file may look like.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// Kills the binary if it runs this long: a guard against hangs, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------
// Building files
// ---------------------------------------------------------------------------------------

/// A safetensors file: 8-byte little-endian header length, the header, then the data.
fn safetensors_bytes(header: impl AsRef<[u8]>, data: &[u8]) -> Vec<u8> {
    let header = header.as_ref();
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

/// Writes raw bytes to `dir/name`.
fn write_raw(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write test file");
    path
}

/// Writes a safetensors file built from a header and data bytes to `dir/name`.
fn write_st(dir: &Path, name: &str, header: impl AsRef<[u8]>, data: &[u8]) -> PathBuf {
    write_raw(dir, name, &safetensors_bytes(header, data))
}

/// The values of the good tensor `w`, F32 `[2, 3]`.
const GOOD_VALUES: [f32; 6] = [-1.0, 0.0, 1.0, 2.0, 3.0, 4.0];

/// Little-endian bytes of [`GOOD_VALUES`] (24 bytes).
fn good_data() -> Vec<u8> {
    GOOD_VALUES.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Header entry of an F32 `[2, 3]` tensor at `[begin, begin + 24]`.
fn f32_2x3(begin: usize) -> String {
    format!(
        r#"{{"dtype":"F32","shape":[2,3],"data_offsets":[{begin},{}]}}"#,
        begin + 24
    )
}

/// Writes a valid file holding one F32 `[2, 3]` tensor named `w`.
fn write_good(dir: &Path, name: &str) -> PathBuf {
    write_st(
        dir,
        name,
        format!(r#"{{"w":{}}}"#, f32_2x3(0)),
        &good_data(),
    )
}

/// A valid 1 × 1 RGBA PNG.
const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

// ---------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let out: String = self.stdout.chars().take(2000).collect();
        let err: String = self.stderr.chars().take(4000).collect();
        write!(
            f,
            "exit code {:?}\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
            self.code
        )
    }
}

fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_tensorheat"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .timeout(HANG_GUARD)
        .output()
        .expect("run tensorheat");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `tensorheat render INPUT... -o OUT`.
fn render(inputs: &[&Path], out: &Path) -> Run {
    let mut args: Vec<&OsStr> = vec!["render".as_ref()];
    args.extend(inputs.iter().map(|p| p.as_os_str()));
    args.extend(["-o".as_ref(), out.as_os_str()]);
    run(args)
}

/// `tensorheat list INPUT... [--json]`.
fn list(inputs: &[&Path], json: bool) -> Run {
    let mut args: Vec<&OsStr> = vec!["list".as_ref()];
    args.extend(inputs.iter().map(|p| p.as_os_str()));
    if json {
        args.push("--json".as_ref());
    }
    run(args)
}

/// No panic, and every stderr line is the tool's own, with errors as `tensorheat: error:`.
fn assert_stderr_well_formed(r: &Run) {
    assert!(!r.stderr.contains("panicked"), "the tool panicked:\n{r:?}");
    assert!(
        !r.stderr.contains("RUST_BACKTRACE"),
        "the tool panicked:\n{r:?}"
    );
    for line in r.stderr.lines() {
        assert!(
            line.starts_with("tensorheat: "),
            "stderr line not from the tool: {line:?}\n{r:?}"
        );
        if line.contains("error:") {
            assert!(
                line.starts_with("tensorheat: error:"),
                "error line without the `tensorheat: error:` prefix: {line:?}\n{r:?}"
            );
        }
    }
}

/// Error lines (`tensorheat: error: ...`) on stderr.
fn error_lines(r: &Run) -> Vec<&str> {
    r.stderr
        .lines()
        .filter(|l| l.starts_with("tensorheat: error:"))
        .collect()
}

/// Whether `text` contains every expectation; an expectation `a|b` is met by either.
fn mentions_all(text: &str, expect: &[&str]) -> bool {
    let lower = text.to_lowercase();
    expect
        .iter()
        .all(|e| e.split('|').any(|alt| lower.contains(&alt.to_lowercase())))
}

/// Some error line names `file` and mentions everything in `expect`.
fn assert_error_names(r: &Run, file: &str, expect: &[&str]) {
    let lines = error_lines(r);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(file) && mentions_all(l, expect)),
        "no `tensorheat: error:` line names {file:?} and mentions {expect:?}\n{r:?}"
    );
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Nothing half-written is left behind.
fn assert_no_temp_files(dir: &Path) {
    let temps: Vec<PathBuf> = files_under(dir)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.ends_with(".tmp") || name.starts_with(".tensorheat-")
        })
        .collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
}

fn read_manifest(dir: &Path) -> Value {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn array<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key:?} is not an array in {v:#}"))
}

fn names(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["name"].as_str().expect("name is a string"))
        .collect()
}

/// `dir/manifest.json` lists exactly the good tensor `w`, with its PNG on disk.
fn assert_good_output(dir: &Path) {
    let m = read_manifest(dir);
    assert_eq!(names(array(&m, "tensors")), ["w"], "{m:#}");
    assert!(array(&m, "errors").is_empty(), "{m:#}");
    let t = &m["tensors"][0];
    assert_eq!(t["dtype"], "F32");
    assert_eq!(t["shape"], serde_json::json!([2, 3]));
    assert_eq!(t["stats"]["count"], 6);
    let image = t["image"].as_str().expect("image is a string");
    let png = std::fs::read(dir.join(image)).expect("the good tensor's PNG exists");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{image} is not a PNG"
    );
    let pngs = files_under(dir)
        .into_iter()
        .filter(|p| p.extension() == Some(OsStr::new("png")))
        .count();
    assert_eq!(pngs, 1, "exactly one PNG in {}", dir.display());
}

/// Everything a malformed input must do, given the path of the bad input:
///
/// - `render BAD GOOD -o out`: exit 1, an error line naming the bad input (and mentioning
///   `expect`), `out/good/` complete, `out/<bad stem>/manifest.json` with the error, no
///   temporary files, nothing on stdout;
/// - `render BAD -o out1`: the same on its own;
/// - `list BAD`: exit 1 naming the bad input; `list BAD GOOD --json` still lists the
///   good tensor; `list GOOD`: exit 0.
fn check_bad_input(tmp: &TempDir, bad: &Path, bad_stem: &str, expect: &[&str]) {
    let good = write_good(tmp.path(), "good.safetensors");
    let bad_name = bad
        .file_name()
        .expect("bad input has a file name")
        .to_string_lossy()
        .into_owned();

    // Bad input first, then a good one: the good one must still render.
    let out = tmp.path().join("out");
    let r = render(&[bad, &good], &out);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(1), "render bad+good must exit 1\n{r:?}");
    assert_error_names(&r, &bad_name, expect);
    assert!(
        error_lines(&r)
            .iter()
            .all(|l| !l.contains("good.safetensors")),
        "the good file was blamed\n{r:?}"
    );
    assert!(
        r.stdout.is_empty(),
        "render writes nothing to stdout\n{r:?}"
    );
    assert_good_output(&out.join("good"));
    let m = read_manifest(&out.join(bad_stem));
    let errors = array(&m, "errors");
    assert!(
        !errors.is_empty(),
        "bad input's manifest has no errors: {m:#}"
    );
    assert!(
        errors.iter().any(|e| {
            let msg = e["message"].as_str().unwrap_or("");
            msg.contains(&bad_name) && mentions_all(msg, expect)
        }),
        "no manifest error names {bad_name:?} and mentions {expect:?}: {m:#}"
    );
    for e in errors {
        assert_eq!(e["input"], bad.display().to_string(), "{m:#}");
    }
    assert!(array(&m, "tensors").is_empty(), "{m:#}");
    assert_no_temp_files(&out);

    // The bad input on its own.
    let out1 = tmp.path().join("out1");
    let r = render(&[bad], &out1);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(1), "render bad must exit 1\n{r:?}");
    assert_error_names(&r, &bad_name, expect);
    let m = read_manifest(&out1);
    assert!(!array(&m, "errors").is_empty(), "{m:#}");
    assert_no_temp_files(&out1);

    // list
    let r = list(&[bad], false);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(1), "list bad must exit 1\n{r:?}");
    assert_error_names(&r, &bad_name, expect);

    let r = list(&[bad, &good], true);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(1), "list bad good must exit 1\n{r:?}");
    assert_error_names(&r, &bad_name, expect);
    let json: Value = serde_json::from_str(&r.stdout).expect("list --json prints JSON");
    assert_eq!(names(array(&json, "tensors")), ["w"], "{r:?}");

    let r = list(&[&good], true);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(0), "list good must exit 0\n{r:?}");
    assert!(error_lines(&r).is_empty(), "{r:?}");
    let json: Value = serde_json::from_str(&r.stdout).expect("list --json prints JSON");
    assert_eq!(names(array(&json, "tensors")), ["w"], "{r:?}");
}

/// [`check_bad_input`] for a file `bad.safetensors` holding `bytes`.
fn check_bad_bytes(bytes: &[u8], expect: &[&str]) {
    let tmp = TempDir::new().expect("temp dir");
    let bad = write_raw(tmp.path(), "bad.safetensors", bytes);
    check_bad_input(&tmp, &bad, "bad", expect);
}

/// [`check_bad_bytes`] for a file built from a header and data, where the error is about
/// tensor `tensor`, which the message must name as `tensor "<name>"`.
fn check_bad_tensor(header: impl AsRef<[u8]>, data: &[u8], tensor: &str, expect: &[&str]) {
    let quoted = format!("tensor \"{tensor}\"");
    let mut all = vec![quoted.as_str()];
    all.extend_from_slice(expect);
    check_bad_bytes(&safetensors_bytes(header, data), &all);
}

/// The 8-byte little-endian header length prefix declaring `n` bytes.
fn header_len_prefix(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

// ---------------------------------------------------------------------------------------
// Sanity: the helpers build what the reference implementation accepts
// ---------------------------------------------------------------------------------------

#[test]
fn good_file_renders_and_lists_with_exit_0() {
    let tmp = TempDir::new().unwrap();
    let good = write_good(tmp.path(), "good.safetensors");
    // The reference implementation agrees that the helper writes a valid file.
    let bytes = std::fs::read(&good).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("reference accepts it");
    assert_eq!(st.tensor("w").unwrap().shape(), [2, 3]);

    let out = tmp.path().join("out");
    let r = render(&[&good], &out);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(error_lines(&r).is_empty(), "{r:?}");
    // The summary counts in words that agree with their numbers.
    assert!(
        r.stderr
            .contains(": rendered 1 tensor, skipped 0, 0 errors -> "),
        "{r:?}"
    );
    assert_good_output(&out);
    assert_no_temp_files(&out);

    let r = list(&[&good], true);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(0), "{r:?}");
    let json: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(names(array(&json, "tensors")), ["w"]);
    assert_eq!(json["total_params"], 6);
    assert_eq!(json["total_bytes"], 24);
}

#[test]
fn usage_errors_exit_2() {
    let tmp = TempDir::new().unwrap();
    let good = write_good(tmp.path(), "good.safetensors");
    let g = good.to_str().expect("utf-8 temp path");
    let o = tmp.path().join("o");
    let o = o.to_str().expect("utf-8 temp path");
    let cases: [&[&str]; 7] = [
        &[],
        &["render", g],
        &["render", "-o", o],
        &["list"],
        &["frobnicate", g],
        &["render", g, "-o", o, "--max-size", "0"],
        &["render", g, "-o", o, "--reduce", "median"],
    ];
    for args in cases {
        let r = run(args);
        assert!(!r.stderr.contains("panicked"), "{args:?}\n{r:?}");
        assert_eq!(r.code, Some(2), "usage error must exit 2: {args:?}\n{r:?}");
    }
    assert!(
        !Path::new(o).exists(),
        "a usage error must not create the output folder"
    );
}

// ---------------------------------------------------------------------------------------
// The 8-byte length prefix
// ---------------------------------------------------------------------------------------

#[test]
fn empty_file() {
    check_bad_bytes(&[], &["0 bytes|empty|too short"]);
}

#[test]
fn fewer_than_8_bytes() {
    check_bad_bytes(&[1, 0, 0, 0, 0], &["5 bytes|too short"]);
    check_bad_bytes(&[0; 7], &["file is 7 bytes, too short"]);
    // Eight bytes hold the length prefix: the file is long enough, its empty header is
    // what is wrong.
    check_bad_bytes(&[0; 8], &["invalid header"]);
}

#[test]
fn header_length_larger_than_the_file() {
    let mut bytes = header_len_prefix(1000);
    bytes.extend_from_slice(br#"{"w":1}"#);
    check_bad_bytes(&bytes, &["1000"]);
}

#[test]
fn header_length_near_u64_max() {
    for n in [u64::MAX, u64::MAX - 7, u64::MAX - 8, 1 << 63] {
        let mut bytes = header_len_prefix(n);
        bytes.extend_from_slice(b"{}");
        check_bad_bytes(&bytes, &[&n.to_string()]);
    }
}

#[test]
fn header_length_over_100_000_000() {
    // 100,000,001 declared, and the file really is that long: the limit alone rejects it.
    let n: u64 = 100_000_001;
    let mut bytes = header_len_prefix(n);
    bytes.resize(8 + n as usize, b' ');
    bytes[8] = b'{';
    bytes[8 + n as usize - 1] = b'}';
    check_bad_bytes(&bytes, &["100000001", "100000000|limit"]);
}

// ---------------------------------------------------------------------------------------
// The JSON header
// ---------------------------------------------------------------------------------------

#[test]
fn header_not_json() {
    check_bad_bytes(&safetensors_bytes("this is not json", &[]), &["header"]);
}

#[test]
fn header_json_but_not_an_object() {
    for header in ["[]", "null", "42", r#""w""#, "true"] {
        check_bad_bytes(
            &safetensors_bytes(header, &[]),
            &["invalid header", "expected a JSON object"],
        );
    }
}

#[test]
fn deeply_nested_header() {
    let n = 100_000;
    let header = format!("{}{}", "[".repeat(n), "]".repeat(n));
    check_bad_bytes(&safetensors_bytes(header, &[]), &["header"]);
}

#[test]
fn deeply_nested_value_inside_the_header_object() {
    // Past the top level, so the nesting is actually descended into.
    let n = 100_000;
    let header = format!(r#"{{"w":{}{}}}"#, "[".repeat(n), "]".repeat(n));
    check_bad_bytes(&safetensors_bytes(header, &[]), &["header"]);
    // Unknown fields are skipped without descending, so this one is simply an entry
    // without a dtype.
    let header = format!(r#"{{"w":{}1{}}}"#, r#"{"a":"#.repeat(n), "}".repeat(n));
    check_bad_bytes(&safetensors_bytes(header, &[]), &["header|dtype"]);
}

#[test]
fn header_invalid_utf8() {
    let mut header = br#"{"w":"#.to_vec();
    header.extend_from_slice(&f32_2x3(0).into_bytes());
    header.extend_from_slice(b",\"\xff\xfe\":1}");
    check_bad_bytes(&safetensors_bytes(header, &good_data()), &["utf-8|utf8"]);
}

#[test]
fn duplicate_tensor_names() {
    let header = format!(r#"{{"w":{},"w":{}}}"#, f32_2x3(0), f32_2x3(24));
    let data = [good_data(), good_data()].concat();
    check_bad_tensor(header, &data, "w", &["twice|duplicate"]);
}

// ---------------------------------------------------------------------------------------
// Offsets and sizes
// ---------------------------------------------------------------------------------------

#[test]
fn offsets_reversed() {
    let header = r#"{"x":{"dtype":"U8","shape":[6],"data_offsets":[10,4]}}"#;
    check_bad_tensor(header, &[0; 10], "x", &["reversed", "[10, 4]|[10,4]"]);
}

#[test]
fn offsets_overlapping() {
    // a: [0, 24), b: [16, 40)
    let header = format!(
        r#"{{"a":{},"b":{{"dtype":"F32","shape":[2,3],"data_offsets":[16,40]}}}}"#,
        f32_2x3(0)
    );
    check_bad_tensor(header, &[0; 40], "b", &["overlap"]);
}

#[test]
fn offsets_with_a_gap() {
    // a: [0, 24), b: [28, 52)
    let header = format!(r#"{{"a":{},"b":{}}}"#, f32_2x3(0), f32_2x3(28));
    check_bad_tensor(header, &[0; 52], "b", &["gap"]);
}

#[test]
fn offsets_not_starting_at_zero() {
    let header = format!(r#"{{"a":{}}}"#, f32_2x3(4));
    check_bad_tensor(header, &[0; 28], "a", &["gap|start"]);
}

#[test]
fn offsets_past_the_end_of_the_file() {
    // Declares 24 bytes of data; the file holds 8.
    let header = format!(r#"{{"w":{}}}"#, f32_2x3(0));
    let bytes = safetensors_bytes(&header, &[0; 8]);
    let (end, actual) = (8 + header.len() + 24, bytes.len());
    let expect = [
        "tensor \"w\"",
        "past the end",
        &end.to_string(),
        &format!("{actual}-byte"),
    ];
    check_bad_bytes(&bytes, &expect);
}

#[test]
fn offsets_near_u64_max_past_the_end_of_the_file() {
    // Offsets and shape agree, so only the file-length check can catch it; 8 + header
    // length + end must not overflow on the way.
    let max = u64::MAX;
    let header = format!(r#"{{"w":{{"dtype":"U8","shape":[{max}],"data_offsets":[0,{max}]}}}}"#);
    let bytes = safetensors_bytes(&header, &[0; 8]);
    let actual = format!("{}-byte", bytes.len());
    check_bad_bytes(&bytes, &["tensor \"w\"", "past the end", &actual]);
}

#[test]
fn unknown_dtype_with_offsets_near_u64_max() {
    // An unknown dtype's size is not checked, so its offsets alone decide the data length.
    let max = u64::MAX;
    let header = format!(
        r#"{{"w":{{"dtype":"C64","shape":[1],"data_offsets":[0,{}]}}}}"#,
        max - 3
    );
    let bytes = safetensors_bytes(&header, &[0; 8]);
    let actual = format!("{}-byte", bytes.len());
    check_bad_bytes(&bytes, &["tensor \"w\"", "past the end", &actual]);
}

#[test]
fn offsets_negative() {
    let header = r#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[-1,23]}}"#;
    check_bad_tensor(header, &good_data(), "w", &["data_offsets|offset"]);
}

#[test]
fn offsets_fractional() {
    let header = r#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,1.5]}}"#;
    check_bad_tensor(header, &good_data(), "w", &["data_offsets|offset"]);
}

#[test]
fn offsets_not_a_pair() {
    for offsets in ["[0]", "[0,24,48]", "[]", r#""0,24""#, "null"] {
        let header = format!(r#"{{"w":{{"dtype":"F32","shape":[2,3],"data_offsets":{offsets}}}}}"#);
        check_bad_tensor(header, &good_data(), "w", &["data_offsets|offset"]);
    }
}

#[test]
fn shape_negative_or_fractional() {
    for shape in ["[-2,-3]", "[2,1.5]", "[2,\"3\"]", "6"] {
        let header = format!(r#"{{"w":{{"dtype":"F32","shape":{shape},"data_offsets":[0,24]}}}}"#);
        check_bad_tensor(header, &good_data(), "w", &["shape"]);
    }
}

#[test]
fn shape_element_count_overflows_usize() {
    let header =
        r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,24]}}"#;
    check_bad_tensor(header, &good_data(), "w", &["shape"]);
}

#[test]
fn shape_byte_count_overflows_usize() {
    // 2^62 elements fit in usize; 2^62 × 4 bytes do not.
    let header = r#"{"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,24]}}"#;
    check_bad_tensor(header, &good_data(), "w", &["shape|bytes"]);
}

#[test]
fn dtype_size_mismatch() {
    let header = r#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#;
    check_bad_tensor(header, &good_data()[..20], "w", &["24", "20"]);
}

#[test]
fn declared_trillion_element_tensor_in_a_1kb_file() {
    // Offsets agree with the shape (4 × 10^12 bytes); the file is 1024 bytes.
    let header =
        r#"{"w":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]}}"#;
    let data = vec![0u8; 1024 - 8 - header.len()];
    let bytes = safetensors_bytes(header, &data);
    assert_eq!(bytes.len(), 1024);
    check_bad_bytes(&bytes, &["1024"]);
}

#[test]
fn declared_trillion_element_tensor_with_small_offsets() {
    // Offsets agree with the 1 KB file; the shape does not.
    let header = r#"{"w":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,946]}}"#;
    let data = vec![0u8; 1024 - 8 - header.len()];
    assert_eq!(data.len(), 946);
    check_bad_tensor(header, &data, "w", &["4000000000000"]);
}

// ---------------------------------------------------------------------------------------
// __metadata__
// ---------------------------------------------------------------------------------------

#[test]
fn metadata_with_a_non_string_value() {
    for value in ["1", "true", "null", r#"["a"]"#, r#"{"b":"c"}"#] {
        let header = format!(
            r#"{{"__metadata__":{{"format":"pt","n":{value}}},"w":{}}}"#,
            f32_2x3(0)
        );
        check_bad_bytes(&safetensors_bytes(header, &good_data()), &["__metadata__"]);
    }
}

#[test]
fn metadata_not_an_object() {
    for value in ["\"pt\"", "1", "[]", r#"[["format","pt"]]"#] {
        let header = format!(r#"{{"__metadata__":{value},"w":{}}}"#, f32_2x3(0));
        check_bad_bytes(&safetensors_bytes(header, &good_data()), &["__metadata__"]);
    }
}

#[test]
fn metadata_null_is_accepted() {
    let tmp = TempDir::new().unwrap();
    let header = format!(r#"{{"__metadata__":null,"w":{}}}"#, f32_2x3(0));
    let f = write_st(tmp.path(), "meta.safetensors", header, &good_data());
    let out = tmp.path().join("out");
    let r = render(&[&f], &out);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_good_output(&out);
}

// ---------------------------------------------------------------------------------------
// File length
// ---------------------------------------------------------------------------------------

#[test]
fn file_longer_than_the_header_declares() {
    let header = format!(r#"{{"w":{}}}"#, f32_2x3(0));
    let data = [good_data(), vec![0xAB; 5]].concat();
    let bytes = safetensors_bytes(&header, &data);
    let (declared, actual) = (8 + header.len() + 24, bytes.len());
    check_bad_bytes(&bytes, &[&declared.to_string(), &actual.to_string()]);
}

#[test]
fn file_truncated() {
    let header = format!(r#"{{"w":{}}}"#, f32_2x3(0));
    let bytes = safetensors_bytes(&header, &good_data()[..17]);
    let (declared, actual) = (8 + header.len() + 24, bytes.len());
    check_bad_bytes(&bytes, &[&declared.to_string(), &actual.to_string()]);
}

#[test]
fn file_truncated_inside_the_header() {
    let header = format!(r#"{{"w":{}}}"#, f32_2x3(0));
    let bytes = safetensors_bytes(&header, &good_data());
    check_bad_bytes(&bytes[..8 + header.len() / 2], &["header"]);
}

// ---------------------------------------------------------------------------------------
// Tensor entries
// ---------------------------------------------------------------------------------------

#[test]
fn tensor_missing_dtype() {
    let header = r#"{"w":{"shape":[2,3],"data_offsets":[0,24]}}"#;
    check_bad_tensor(header, &good_data(), "w", &["dtype"]);
}

#[test]
fn tensor_missing_shape() {
    let header = r#"{"w":{"dtype":"F32","data_offsets":[0,24]}}"#;
    check_bad_tensor(header, &good_data(), "w", &["shape"]);
}

#[test]
fn tensor_missing_data_offsets() {
    let header = r#"{"w":{"dtype":"F32","shape":[2,3]}}"#;
    check_bad_tensor(header, &good_data(), "w", &["data_offsets"]);
}

#[test]
fn tensor_entry_not_an_object() {
    for (entry, kind) in [
        ("[]", "an array"),
        ("\"F32\"", "a string"),
        ("null", "null"),
        ("1", "a number"),
    ] {
        let header = format!(r#"{{"w":{entry}}}"#);
        let expect = format!("entry is {kind}, not an object");
        check_bad_tensor(header, &[], "w", &[&expect]);
    }
}

#[test]
fn tensor_dtype_not_a_string() {
    let header = r#"{"w":{"dtype":4,"shape":[2,3],"data_offsets":[0,24]}}"#;
    check_bad_tensor(header, &good_data(), "w", &["dtype"]);
}

/// The manifest's error entry carries the tensor's name when the error is about one,
/// whether the file is given directly or found in a folder.
#[test]
fn manifest_error_entry_names_the_tensor() {
    let tmp = TempDir::new().unwrap();
    let header = r#"{"x":{"dtype":"U8","shape":[6],"data_offsets":[10,4]}}"#;
    let folder = tmp.path().join("model");
    std::fs::create_dir(&folder).unwrap();
    let bad = write_st(&folder, "bad.safetensors", header, &[0; 10]);

    for (k, input) in [folder.as_path(), bad.as_path()].into_iter().enumerate() {
        let out = tmp.path().join(format!("out{k}"));
        let r = render(&[input], &out);
        assert_stderr_well_formed(&r);
        assert_eq!(r.code, Some(1), "{r:?}");
        assert_error_names(&r, "bad.safetensors", &["tensor \"x\"", "reversed"]);
        let m = read_manifest(&out);
        let errors = array(&m, "errors");
        assert_eq!(errors.len(), 1, "{m:#}");
        assert_eq!(
            errors[0]["name"],
            "x",
            "input {}: the error entry should name tensor \"x\": {m:#}",
            input.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Tensors that are valid but not rendered
// ---------------------------------------------------------------------------------------

/// `mixed.safetensors` in `dir`: the good F32 tensor "w" and a C64 [2] "z" (16 bytes,
/// after it), a dtype tensorheat does not render.
fn write_mixed(dir: &Path) -> PathBuf {
    let header = format!(
        r#"{{"w":{},"z":{{"dtype":"C64","shape":[2],"data_offsets":[24,40]}}}}"#,
        f32_2x3(0)
    );
    let data = [good_data(), vec![0x3f; 16]].concat();
    write_st(dir, "mixed.safetensors", header, &data)
}

#[test]
fn unknown_dtype_is_skipped_and_the_rest_renders() {
    let tmp = TempDir::new().unwrap();
    let f = write_mixed(tmp.path());
    let out = tmp.path().join("out");

    let r = render(&[&f], &out);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(0), "a skipped dtype is not a failure\n{r:?}");
    assert!(error_lines(&r).is_empty(), "{r:?}");
    assert_good_output(&out);
    let m = read_manifest(&out);
    let skipped = array(&m, "skipped");
    assert_eq!(skipped.len(), 1, "{m:#}");
    assert_eq!(skipped[0]["name"], "z");
    assert_eq!(skipped[0]["dtype"], "C64");
    assert_eq!(skipped[0]["source"], "mixed.safetensors");
    assert_eq!(skipped[0]["reason"], "unsupported dtype");
    assert_no_temp_files(&out);

    let r = list(&[&f], true);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(0), "{r:?}");
    let json: Value = serde_json::from_str(&r.stdout).unwrap();
    let tensors = array(&json, "tensors");
    assert_eq!(names(tensors), ["w", "z"]);
    assert_eq!(tensors[1]["dtype"], "C64");
    assert_eq!(tensors[1]["bytes"], 16);
}

#[test]
fn only_partition_one_records_a_skipped_dtype() {
    // Merging partitions is a union of their lists, so a tensor skipped for its dtype is
    // recorded by partition 1 alone, whichever partition would have drawn it.
    let tmp = TempDir::new().unwrap();
    let f = write_mixed(tmp.path());
    let out = tmp.path().join("out");
    for k in 1..=2 {
        let part = format!("{k}/2");
        let r = run([
            "render".as_ref(),
            f.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--partition".as_ref(),
            part.as_ref() as &OsStr,
        ]);
        assert_eq!(r.code, Some(0), "{part}: {r:?}");
    }
    let skipped = |k: usize| {
        let path = out.join(format!("manifest.{k}-of-2.json"));
        let m: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        names(array(&m, "skipped")).join(",")
    };
    assert_eq!(skipped(1), "z");
    assert_eq!(skipped(2), "");
}

#[test]
fn zero_size_tensor_is_skipped_as_empty() {
    let tmp = TempDir::new().unwrap();
    let header = format!(
        r#"{{"e":{{"dtype":"F32","shape":[0,4],"data_offsets":[24,24]}},"w":{}}}"#,
        f32_2x3(0)
    );
    let f = write_st(tmp.path(), "zero.safetensors", header, &good_data());
    let out = tmp.path().join("out");

    let r = render(&[&f], &out);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(error_lines(&r).is_empty(), "{r:?}");
    assert_good_output(&out);
    let m = read_manifest(&out);
    let skipped = array(&m, "skipped");
    assert_eq!(names(skipped), ["e"], "{m:#}");
    assert_eq!(skipped[0]["reason"], "empty");
    assert_eq!(skipped[0]["dtype"], "F32");
    assert_no_temp_files(&out);

    let r = list(&[&f], true);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(0), "{r:?}");
    let json: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(names(array(&json, "tensors")), ["e", "w"]);
    assert_eq!(json["total_params"], 6);
}

#[test]
fn a_million_tiny_tensors_are_listed() {
    const N: usize = 1_000_000;
    let tmp = TempDir::new().unwrap();
    let mut header = String::with_capacity(N * 64);
    header.push('{');
    for i in 0..N {
        if i > 0 {
            header.push(',');
        }
        write!(
            header,
            r#""t{i}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{}]}}"#,
            i + 1
        )
        .unwrap();
    }
    header.push('}');
    let header_len = header.len();
    assert!(header_len < 100_000_000);
    let data: Vec<u8> = (0..N).map(|i| i as u8).collect();
    let f = write_st(tmp.path(), "many.safetensors", header, &data);

    let r = list(&[&f], true);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(0), "{r:?}");

    #[derive(serde::Deserialize)]
    struct Row {
        name: String,
        dtype: String,
        shape: Vec<u64>,
        source: String,
        offset: u64,
        bytes: u64,
    }
    #[derive(serde::Deserialize)]
    struct Listing {
        tensors: Vec<Row>,
        total_params: u64,
        total_bytes: u64,
    }
    let listing: Listing = serde_json::from_str(&r.stdout).expect("list --json prints JSON");
    assert_eq!(listing.tensors.len(), N);
    assert_eq!(listing.total_params, N as u64);
    assert_eq!(listing.total_bytes, N as u64);
    // Natural order of `t0`, `t1`, ... `t999999` is numeric order.
    for (i, row) in listing.tensors.iter().enumerate() {
        assert_eq!(row.name, format!("t{i}"));
        assert_eq!(row.dtype, "U8");
        assert_eq!(row.shape, [1]);
        assert_eq!(row.source, "many.safetensors");
        assert_eq!(row.offset, (8 + header_len + i) as u64, "{}", row.name);
        assert_eq!(row.bytes, 1);
    }
}

// ---------------------------------------------------------------------------------------
// Inputs that are not safetensors files at all
// ---------------------------------------------------------------------------------------

#[test]
fn input_is_a_png_file() {
    let tmp = TempDir::new().unwrap();
    let bad = write_raw(tmp.path(), "picture.png", PNG_1X1);
    check_bad_input(&tmp, &bad, "picture.png", &[]);
}

#[test]
fn input_is_a_text_file() {
    let tmp = TempDir::new().unwrap();
    let bad = write_raw(
        tmp.path(),
        "notes.txt",
        b"hello, these are my notes about the model\n",
    );
    check_bad_input(&tmp, &bad, "notes.txt", &[]);
}

#[test]
fn input_is_a_text_file_named_safetensors() {
    let tmp = TempDir::new().unwrap();
    let bad = write_raw(
        tmp.path(),
        "bad.safetensors",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n",
    );
    check_bad_input(&tmp, &bad, "bad", &[]);
}

#[test]
fn input_is_a_folder_with_no_shards() {
    let tmp = TempDir::new().unwrap();
    let bad = tmp.path().join("emptymodel");
    std::fs::create_dir(&bad).unwrap();
    write_raw(&bad, "README.md", b"# nothing here\n");
    write_raw(&bad, "config.json", b"{}\n");
    check_bad_input(
        &tmp,
        &bad,
        "emptymodel",
        &["no .safetensors|no safetensors|no shard"],
    );
}

#[cfg(unix)]
#[test]
fn input_is_a_dangling_symlink() {
    let tmp = TempDir::new().unwrap();
    let bad = tmp.path().join("dangling.safetensors");
    std::os::unix::fs::symlink(tmp.path().join("gone.safetensors"), &bad).unwrap();
    check_bad_input(&tmp, &bad, "dangling", &[]);
}

#[test]
fn input_does_not_exist() {
    let tmp = TempDir::new().unwrap();
    let bad = tmp.path().join("nope.safetensors");
    check_bad_input(
        &tmp,
        &bad,
        "nope",
        &["no such file|not found|does not exist"],
    );
}

#[test]
fn malformed_shard_in_a_folder_does_not_stop_the_other_shards() {
    let tmp = TempDir::new().unwrap();
    let folder = tmp.path().join("model");
    std::fs::create_dir(&folder).unwrap();
    write_raw(
        &folder,
        "model-00001-of-00002.safetensors",
        b"garbage!garbage!",
    );
    write_good(&folder, "model-00002-of-00002.safetensors");
    let out = tmp.path().join("out");
    let r = render(&[&folder], &out);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_error_names(&r, "model-00001-of-00002.safetensors", &[]);
    let m = read_manifest(&out);
    assert_eq!(names(array(&m, "tensors")), ["w"], "{m:#}");
    assert!(!array(&m, "errors").is_empty(), "{m:#}");
    assert!(out
        .join(m["tensors"][0]["image"].as_str().unwrap())
        .is_file());
    assert_no_temp_files(&out);

    let r = list(&[&folder], true);
    assert_stderr_well_formed(&r);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_error_names(&r, "model-00001-of-00002.safetensors", &[]);
    let json: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(names(array(&json, "tensors")), ["w"]);
}
