//! Dao's revisioned key-value store.
//!
//! Every API object lives under a string key. The store follows etcd's model: one global
//! revision that grows by one on every successful write, per-key `create_revision`,
//! `mod_revision` and `version`, reads at the current or any uncompacted past revision,
//! compare-and-swap writes, and watches that replay history from a revision without gaps or
//! duplicates.
//!
//! Two backends implement [`Store`]: [`SqliteStore`] (embedded, the default) and
//! [`EtcdStore`] (a real etcd cluster). [`conformance`] holds one suite that every backend
//! must pass unchanged.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub mod conformance;
mod error;
mod etcd;
mod sqlite;
pub mod testing;

pub use error::{Error, Result};
pub use etcd::{EtcdConfig, EtcdStore};
pub use sqlite::{SqliteConfig, SqliteStore, Synchronous};

/// A point in the store's history. Revision 0 means "nothing written yet".
pub type Revision = i64;

/// The largest value the store accepts. Upstream kube-apiserver rejects request bodies over
/// 3 MiB, so an object never needs more than that.
pub const MAX_VALUE_BYTES: usize = 3 * 1024 * 1024;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision of the write that created this incarnation of the key.
    pub create_revision: Revision,
    /// The revision of the last write to the key.
    pub mod_revision: Revision,
    /// Writes since creation; 1 after the create.
    pub version: i64,
}

/// What a guarded write expects to find before it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist (create).
    Absent,
    /// The key must exist with exactly this `mod_revision` (optimistic concurrency).
    ModRevision(Revision),
    /// The key must exist, at any revision.
    Present,
    /// No guard.
    Any,
}

/// The result of a guarded write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The write applied at `revision`. For a put, `kv` is the new value; for a delete, it is
    /// the value that was deleted.
    Applied { revision: Revision, kv: KeyValue },
    /// The guard did not hold; nothing changed. `current` is what the key holds now, so the
    /// caller can report a conflict without reading again.
    Rejected {
        revision: Revision,
        current: Option<KeyValue>,
    },
}

impl Outcome {
    pub fn is_applied(&self) -> bool {
        matches!(self, Outcome::Applied { .. })
    }
}

/// A read of a key range: every key that starts with `prefix`, from `start` on.
#[derive(Clone, Debug, Default)]
pub struct RangeRequest {
    pub prefix: String,
    /// Inclusive first key (a continuation point); must start with `prefix`. `None` starts
    /// at the beginning of the prefix.
    pub start: Option<String>,
    /// At most this many keys; `None` or 0 means no limit.
    pub limit: Option<usize>,
    /// Read at this past revision; `None` reads the current state.
    pub revision: Option<Revision>,
}

impl RangeRequest {
    pub fn prefix(prefix: impl Into<String>) -> Self {
        RangeRequest {
            prefix: prefix.into(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// More keys follow the last one returned.
    pub more: bool,
    /// How many keys the range holds from `start` on, ignoring `limit`.
    pub count: i64,
    /// The revision the read was served at.
    pub revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The key after the change. For a delete, `value` is empty, `mod_revision` is the
    /// revision of the delete and `version` is 0.
    pub kv: KeyValue,
    /// The key before the change, if it existed.
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A watch of every key starting with `prefix`.
#[derive(Clone, Debug)]
pub struct WatchRequest {
    pub prefix: String,
    /// Deliver every change with a revision greater than this one.
    pub after: Revision,
    /// Send a [`WatchMessage::Progress`] this often when nothing else is sent.
    pub progress_interval: Option<Duration>,
}

impl WatchRequest {
    pub fn prefix(prefix: impl Into<String>, after: Revision) -> Self {
        WatchRequest {
            prefix: prefix.into(),
            after,
            progress_interval: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// Changes in revision order; never empty.
    Events(Vec<Event>),
    /// Every change up to and including this revision has been delivered.
    Progress(Revision),
}

/// The stream a watch yields. It ends with an `Err` when it cannot go on (for example
/// [`Error::Compacted`]), and never yields after an error.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchMessage>> + Send>>;

/// A revisioned key-value store with etcd's semantics.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key at the current revision, or at `revision`.
    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)>;

    /// Keys under a prefix in key order.
    async fn range(&self, req: RangeRequest) -> Result<RangeResult>;

    /// Write `value` under `key` if `expect` holds.
    async fn put(&self, key: &str, value: Bytes, expect: Expect) -> Result<Outcome>;

    /// Delete `key` if `expect` holds. Deleting a missing key is `Rejected`.
    async fn delete(&self, key: &str, expect: Expect) -> Result<Outcome>;

    /// Changes under a prefix after a revision.
    async fn watch(&self, req: WatchRequest) -> Result<WatchStream>;

    /// Forget history before `revision`. Reads and watches at older revisions then fail with
    /// [`Error::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The newest revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// The oldest revision that can still be read or watched from.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// A short name for logs and benchmarks.
    fn backend(&self) -> &'static str;
}

/// The first key after every key that starts with `prefix` (etcd's "range end").
/// An empty result means "no upper bound".
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

fn check_value_size(key: &str, value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::ValueTooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_cases() {
        let check =
            |input: &str, expected: &[u8]| assert_eq!(prefix_end(input), expected, "{input:?}");
        check("/registry/pods/", b"/registry/pods0");
        check("a", b"b");
        check("", b"");
    }
}
