use std::path::PathBuf;

use crate::Revision;

/// What went wrong in the store. The API server classifies these once, at its edge:
/// `Compacted` becomes 410 Gone, `Unavailable` 503/504, the rest 500.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The revision asked for has been compacted away.
    #[error("required revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },

    /// The revision asked for has not been written yet.
    #[error("required revision {requested} is a future revision (current is {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },

    #[error("value for key {key} is {size} bytes, over the limit of {limit}")]
    ValueTooLarge {
        key: String,
        size: usize,
        limit: usize,
    },

    /// Another process holds the embedded database.
    #[error("database {path} is locked by another process: {detail}")]
    Locked { path: PathBuf, detail: String },

    /// The embedded database failed: corrupt, read-only, disk full, ...
    #[error("sqlite database {path}: {message}")]
    Sqlite { path: PathBuf, message: String },

    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The etcd cluster could not be reached or did not answer in time. The write may or may
    /// not have applied if this came back from a write.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),

    /// etcd answered with an error.
    #[error("etcd: {0}")]
    Etcd(String),

    /// Stored data that cannot be decoded.
    #[error("corrupt store data: {0}")]
    Corrupt(String),

    /// The store has been shut down.
    #[error("store is closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
