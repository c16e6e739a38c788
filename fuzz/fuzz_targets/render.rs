//! `tensorheat::render` on arbitrary bytes written to `in/model.safetensors` in a
//! temporary folder, rendering into `out/` beside it (created by `render`), with a small
//! grid and `.npy` output on. The checks live in `common::check_render`: nothing is
//! written outside `out/`, the input is untouched, no temporary file is left, every file
//! in `out/` is listed in the manifest, and a file whose header validates renders with
//! no error.
#![no_main]

use std::num::NonZeroUsize;

use libfuzzer_sys::fuzz_target;
use tensorheat::{RenderConfig, Size};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let n = NonZeroUsize::new(16).unwrap();
    let config = RenderConfig {
        size: Size::MaxSize(n, n),
        raw: true,
        ..RenderConfig::default()
    };
    common::check_render(data, &config, None);
});
