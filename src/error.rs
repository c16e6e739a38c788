//! The library's error type.
//!
//! Every message names the file and, where there is one, the tensor at fault, so that a
//! line on stderr or in `manifest.json` is enough to find the problem. Messages are
//! lowercase without a final period, in the style of `std` and the safetensors crate.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading inputs or writing outputs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system error on a file or folder.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is too short to hold the 8-byte header length.
    #[error("{}: file is {len} bytes, too short for a safetensors header", path.display())]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
    },
    /// The declared header length is over the limit or past the end of the file.
    #[error("{}: header length {header_len} is {why}", path.display())]
    HeaderLength {
        /// The file.
        path: PathBuf,
        /// The declared header length.
        header_len: u64,
        /// Why it is rejected.
        why: String,
    },
    /// The header is not valid UTF-8 JSON of the expected form.
    #[error("{}: invalid header: {reason}", path.display())]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// One tensor's header entry is invalid (shape, offsets, sizes).
    #[error("{}: tensor {name:?}: {reason}", path.display())]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// In-memory tensor data that does not fit its dtype and shape.
    #[error("tensor {name:?}: {reason}")]
    Data {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The file's length does not match what the header declares.
    #[error("{}: file is {actual} bytes but its header declares {expected}", path.display())]
    FileLength {
        /// The file.
        path: PathBuf,
        /// Length implied by the header.
        expected: u64,
        /// Actual length.
        actual: u64,
    },
    /// An input path that is neither a safetensors file nor a folder holding some.
    #[error("{}: {reason}", path.display())]
    Input {
        /// The input as given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Encoding a PNG failed.
    #[error("{}: cannot encode png: {reason}", path.display())]
    Png {
        /// The file being written.
        path: PathBuf,
        /// The encoder's message.
        reason: String,
    },
    /// An option value that cannot be used.
    #[error("invalid option: {0}")]
    Option(String),
}

impl Error {
    /// The tensor this error is about, if it is about one.
    pub fn tensor_name(&self) -> Option<&str> {
        match self {
            Error::Tensor { name, .. } | Error::Data { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
