//! Image layers on disk: extraction of layer tars (gzip, zstd or plain) into directories that
//! overlayfs stacks, the store of extracted layers shared by every image that has them, and the
//! overlay root filesystems of containers.
//!
//! - [`extract`]: one tar stream into a layer directory, translating OCI whiteouts and opaque
//!   directories into overlayfs ones and refusing entries that would write outside it.
//! - [`decompress`] / [`Compression`]: blob decompression chosen by the blob's magic bytes.
//! - [`LayerStore`]: `ROOT/layers/<diffid-hex>/`, one directory per uncompressed layer digest,
//!   extracted into a temporary directory, checked against the diff_id and renamed into place.
//! - [`rootfs`]: mounting and unmounting overlay root filesystems.
//! - [`mountpoints`]: the shared layer with the mount points (`/proc`, `/etc/hosts`, ...) an image
//!   lacks, so containers do not each create them in their writable layer.

use std::io;
use std::path::PathBuf;

mod compression;
mod extract;
pub mod mountpoints;
#[cfg(target_os = "linux")]
pub mod rootfs;
mod store;

pub use compression::{decompress, Compression};
pub use extract::extract;
pub use store::LayerStore;

/// Errors from extracting, storing and mounting layers.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing layer tar entry {entry:?}: {reason}; the layer is malformed or hostile, check where the image came from")]
    Refused { entry: String, reason: String },
    #[error("layer tar entry {entry:?}: cannot {action}")]
    Entry {
        entry: String,
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("layer tar entry {entry:?} has type {kind}, which a layer cannot hold")]
    UnsupportedEntry { entry: String, kind: String },
    #[error("cannot read the layer tar stream; the blob may be truncated or corrupt")]
    Tar {
        #[source]
        source: io::Error,
    },
    #[error("cannot extract layer {diff_id} from blob {blob}")]
    Extract {
        diff_id: String,
        blob: PathBuf,
        #[source]
        source: Box<LayerError>,
    },
    #[error("layer blob {blob} does not match its diff_id: expected {expected}, got {actual}; the image is corrupt, pull or load it again")]
    DiffIdMismatch {
        blob: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("invalid layer diff_id {diff_id:?}: expected sha256:<64 lower-case hex digits>")]
    InvalidDiffId { diff_id: String },
    #[error("cannot mount overlay root filesystem on {target}")]
    Mount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot mount overlay root filesystem on {target}: {reason}")]
    MountConfig { target: PathBuf, reason: String },
    #[error("cannot unmount {target}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
}
