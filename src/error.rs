//! The crate's error type. Every layer returns `Result<T>`; the FUSE adapter converts to an
//! errno exactly once, at the reply (`Error::errno`).

use std::io;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The medium failed an I/O request.
    #[error("device I/O error: {0}")]
    Io(#[from] io::Error),
    /// A block read from the medium did not match the checksum its parent holds.
    #[error("checksum mismatch at device block {block}: {what}")]
    Checksum { block: u64, what: String },
    /// On-disk bytes that cannot be decoded: the image is damaged or not ours.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// The image needs a newer stablefs (unknown incompat feature or version).
    #[error("unsupported on-disk format: {0}")]
    Unsupported(String),
    /// A POSIX error to return to the caller as is (ENOENT, EEXIST, ...).
    #[error("{}", std::io::Error::from_raw_os_error(*.0))]
    Errno(i32),
    /// Bad user input (options, sizes, paths).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The errno this error is reported to a FUSE caller as.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            Error::Checksum { .. } | Error::Corrupt(_) => libc::EIO,
            Error::Unsupported(_) => libc::EOPNOTSUPP,
            Error::Errno(e) => *e,
            Error::Invalid(_) => libc::EINVAL,
        }
    }
}

/// Shorthand for `Err(Error::Errno(code))`.
pub fn errno<T>(code: i32) -> Result<T> {
    Err(Error::Errno(code))
}
