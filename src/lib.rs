//! tensorheat turns the tensors in `.safetensors` files into faithful PNG heatmaps.
//!
//! The pipeline runs one way, one module per stage: [`model`] and [`source`] find shards,
//! memory-map them and validate their headers; [`select`] orders tensors; [`view`] lays
//! an integer block grid over each tensor's 2-D view; [`reduce`] streams the bytes
//! through [`dtype`] decoders into per-cell aggregates and full-data statistics;
//! [`colour`] picks a range and a 256-entry lookup table; [`output`] and [`manifest`]
//! write PNGs, `.npy` grids and `manifest.json` atomically, and [`gallery`] the
//! `index.html` page to browse them. [`render()`] runs them all.
//!
//! ```
//! use tensorheat::{heatmap, Dtype, RenderConfig};
//!
//! // A 2 × 3 float32 tensor, as it would sit in a safetensors file.
//! let values = [-1.0f32, 0.0, 1.0, 2.0, 3.0, 4.0];
//! let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
//! let map = heatmap("demo", &bytes, Dtype::F32, &[2, 3], &RenderConfig::default())?;
//! assert_eq!((map.geometry.grid_h(), map.geometry.grid_w()), (2, 3));
//! assert_eq!(map.stats.count, 6);
//! assert!(map.png.starts_with(b"\x89PNG"));
//! # Ok::<(), tensorheat::Error>(())
//! ```

#![warn(missing_docs)]

pub mod colour;
pub mod config;
pub mod dtype;
pub mod error;
pub mod fp8;
pub mod gallery;
pub mod journal;
pub mod manifest;
pub mod model;
pub mod output;
pub mod reduce;
pub mod render;
pub mod select;
pub mod source;
pub mod view;

pub use config::{FixedRange, Reduction, RenderConfig, Rgb, Size};
pub use dtype::Dtype;
pub use error::{Error, Result};
pub use render::{heatmap, render, render_with, Heatmap, InputReport, Progress, TensorOutcome};
