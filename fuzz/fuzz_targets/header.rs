//! `parse_header` on arbitrary bytes (taken as a whole safetensors file).
//!
//! Besides "never panics, hangs or allocates hugely" (libFuzzer's job), this checks:
//! - the result agrees with the reference `safetensors` crate wherever the two are meant
//!   to agree: a file the reference accepts is accepted by tensorheat unless its JSON
//!   repeats a key (which tensorheat rejects on purpose), and a file tensorheat accepts
//!   with only dtypes it knows is accepted by the reference, with the same tensors;
//! - an accepted header is self-consistent (offsets tile the data section, lengths add
//!   up to the file's length, every known-dtype tensor's size matches its shape);
//! - `parse_header_with_len` on a buffer cut right after the header (what `list` reads)
//!   gives the same answer as `parse_header` on the whole file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tensorheat::source::{parse_header, parse_header_with_len, TensorDtype};
use tensorheat::Error;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    let ours = parse_header(path, data);

    // The header-only path must agree with the whole-file path.
    if data.len() >= 8 {
        let n = u64::from_le_bytes(data[..8].try_into().unwrap());
        if n <= (data.len() - 8) as u64 {
            let cut = &data[..8 + n as usize];
            let partial = parse_header_with_len(path, cut, data.len() as u64);
            assert_eq!(
                ours.as_ref().map(summary).map_err(|e| e.to_string()),
                partial.as_ref().map(summary).map_err(|e| e.to_string()),
                "parse_header and parse_header_with_len disagree"
            );
        }
    }

    let reference = safetensors::SafeTensors::deserialize(data);
    match (&ours, &reference) {
        (Ok(h), _) => {
            check_consistent(h, data.len());
            let all_known = h
                .tensors
                .iter()
                .all(|t| matches!(t.dtype, TensorDtype::Known(_)));
            if all_known {
                let r = match &reference {
                    Ok(r) => r,
                    Err(e) => panic!("tensorheat accepts a file the reference rejects: {e:?}"),
                };
                let mut theirs: Vec<_> = r
                    .tensors()
                    .into_iter()
                    .map(|(name, t)| {
                        let dtype = format!("{:?}", t.dtype());
                        (name, dtype, t.shape().to_vec(), t.data().len())
                    })
                    .collect();
                theirs.sort();
                let mut mine: Vec<_> = h
                    .tensors
                    .iter()
                    .map(|t| (t.name.clone(), t.dtype.name().to_owned(), t.shape.clone(), t.nbytes()))
                    .collect();
                mine.sort();
                assert_eq!(mine, theirs, "tensor lists differ from the reference");
            }
        }
        (Err(e), Ok(_)) => {
            // tensorheat deliberately rejects repeated keys; the reference's HashMap keeps
            // the last one. Every other rejection of a file the reference reads is a bug.
            let repeated = match e {
                Error::Tensor { reason, .. } => reason == "appears twice in the header",
                Error::Header { reason, .. } => reason.starts_with("duplicate \"__metadata__\""),
                _ => false,
            };
            assert!(repeated, "tensorheat rejects a file the reference accepts: {e}");
        }
        (Err(_), Err(_)) => {}
    }
});

type Summary = (Vec<(String, String, Vec<usize>, (usize, usize))>, Vec<(String, String)>, usize);

fn summary(h: &tensorheat::source::Header) -> Summary {
    (
        h.tensors
            .iter()
            .map(|t| (t.name.clone(), t.dtype.name().to_owned(), t.shape.clone(), t.data_offsets))
            .collect(),
        h.metadata.clone(),
        h.header_len,
    )
}

fn check_consistent(h: &tensorheat::source::Header, file_len: usize) {
    let mut end = 0usize;
    for t in &h.tensors {
        assert_eq!(t.data_offsets.0, end, "offsets do not tile the data section");
        assert!(t.data_offsets.1 >= t.data_offsets.0);
        end = t.data_offsets.1;
        let numel = t
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .expect("accepted shape overflows");
        assert_eq!(numel, t.numel());
        if let TensorDtype::Known(d) = t.dtype {
            assert_eq!(numel * d.size(), t.nbytes(), "size does not match the shape");
        }
    }
    assert_eq!(8 + h.header_len + end, file_len, "lengths do not add up");
}
