//! The embedded backend: one SQLite file in WAL mode.
//!
//! Layout:
//! - `log(rev, key, deleted, create_rev, version, prev_rev, value)`: one row per write, the
//!   revision as primary key. A delete writes a tombstone row. `prev_rev` points at the row the
//!   write replaced, which gives watches their previous value and compaction its victims.
//! - No table of live keys: the index of live keys (key → newest row's revision, create
//!   revision, version) lives in memory as a persistent ordered map, rebuilt from the log at
//!   open. The writer updates it and publishes an O(1) snapshot after each commit; readers
//!   take a snapshot, then a database snapshot (which is never older), and fetch rows by
//!   revision. Keeping the live-key B-tree out of the file means a batch of writes dirties only
//!   the log's tail pages, instead of one random page per key.
//! - `meta(name, value)`: the current revision, the compacted revision and the compaction
//!   sweep's cursor.
//!
//! One writer thread owns the only writing connection. It drains every queued write into one
//! transaction (group commit), gives each applied write its own revision, commits with one
//! fsync, then publishes the batch's events to watchers and answers the callers. Readers use
//! a small pool of connections; WAL gives each read a consistent snapshot.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{broadcast, oneshot};
use tracing::{debug, info, warn};

use crate::{
    Error, Event, EventKind, Expect, KeyValue, Outcome, RangeRequest, RangeResult, Result,
    Revision, Store, WatchMessage, WatchRequest, WatchStream, check_value_size, prefix_end,
};

/// How hard SQLite pushes each commit to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync the WAL on every commit: an acknowledged write survives power loss.
    Full,
    /// fsync only at checkpoints: an acknowledged write survives a process crash but not a
    /// power loss.
    Normal,
}

#[derive(Clone, Debug)]
pub struct SqliteConfig {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// The most writes one transaction takes.
    pub max_batch: usize,
    /// Keep this many revisions of history and compact older ones automatically.
    /// `None` turns automatic compaction off.
    pub retain_revisions: Option<i64>,
    /// Live events kept for watchers that fall behind before they must re-read the log.
    pub watch_buffer: usize,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            synchronous: Synchronous::Full,
            max_batch: 1024,
            retain_revisions: Some(10_000),
            watch_buffer: 4096,
        }
    }
}

/// Rows the compaction sweep handles per transaction, so that it never holds the write lock
/// for long.
const COMPACTION_CHUNK: i64 = 4096;
/// Log rows a catching-up watcher reads per query.
const CATCH_UP_CHUNK: i64 = 2048;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev        INTEGER PRIMARY KEY,
    key        BLOB    NOT NULL,
    deleted    INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    prev_rev   INTEGER NOT NULL,
    value      BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(name, value) VALUES ('rev', 0), ('compacted', 0), ('swept', 0);
";

/// The embedded store. Cheap to clone; the writer thread stops when the last clone drops.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<WriteMsg>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    hub: Hub,
    current: AtomicI64,
    compacted: AtomicI64,
    /// The live keys as of the last commit.
    index: Mutex<IndexSnapshot>,
    checkpointer: Mutex<
        Option<(
            Arc<std::sync::atomic::AtomicBool>,
            std::thread::JoinHandle<()>,
        )>,
    >,
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.checkpointer.lock().unwrap().take() {
            stop.store(true, Ordering::Release);
            let _ = thread.join();
        }
        self.writer.lock().unwrap().take();
        if let Some(thread) = self.writer_thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }
}

enum WriteMsg {
    Put {
        key: String,
        value: Bytes,
        expect: Expect,
        reply: oneshot::Sender<Result<Outcome>>,
    },
    Delete {
        key: String,
        expect: Expect,
        reply: oneshot::Sender<Result<Outcome>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
}

impl SqliteStore {
    /// Open (or create) the database at `config.path`.
    ///
    /// Fails with [`Error::Locked`] when another process has it open, and with
    /// [`Error::Sqlite`] when the file is not a database, is read-only or cannot be created.
    pub fn open(config: SqliteConfig) -> Result<Self> {
        let path = config.path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let lock = lock_database(&path)?;
        let sql = |source: rusqlite::Error| sqlite_error(&path, source);

        let conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        let mode: String = conn
            .execute_batch("PRAGMA page_size=2048")
            .and_then(|()| conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Sqlite {
                path,
                message: format!("cannot switch to WAL journal mode (got {mode})"),
            });
        }
        let sync = match config.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous={sync}; PRAGMA journal_size_limit=16777216; PRAGMA cache_size=-8192; PRAGMA wal_autocheckpoint=0;"
        ))
        .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        let meta = |conn: &Connection, name: &str| -> Result<i64> {
            conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .map_err(sql)
        };
        let current = meta(&conn, "rev")?;
        let compacted = meta(&conn, "compacted")?;
        let swept = meta(&conn, "swept")?;
        // A log row beyond the recorded revision would mean a half-applied transaction, which
        // SQLite's atomic commit rules out; check anyway, it is one index lookup.
        let max_rev: Option<i64> = conn
            .query_row("SELECT MAX(rev) FROM log", [], |r| r.get(0))
            .map_err(sql)?;
        if max_rev.unwrap_or(0) > current {
            return Err(Error::Corrupt(format!(
                "{}: log holds revision {} beyond the recorded revision {current}",
                path.display(),
                max_rev.unwrap_or(0)
            )));
        }
        conn.set_prepared_statement_cache_capacity(64);
        let index = load_index(&conn).map_err(sql)?;
        info!(path = %path.display(), revision = current, compacted, "opened sqlite store");

        let (tx, rx) = mpsc::channel();
        let restart_wal = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let inner = Arc::new(Inner {
            path: path.clone(),
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            hub: Hub::new(current, config.watch_buffer),
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
            index: Mutex::new(IndexSnapshot {
                rev: current,
                map: index.clone(),
            }),
            checkpointer: Mutex::new(None),
            _lock: lock,
        });
        let writer = Writer {
            conn,
            path,
            rev: current,
            index,
            restart_wal: restart_wal.clone(),
            compacted,
            swept,
            config,
            inner: Arc::downgrade(&inner),
        };
        let thread = std::thread::Builder::new()
            .name("dao-sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| Error::Io {
                path: inner.path.clone(),
                source,
            })?;
        *inner.writer_thread.lock().unwrap() = Some(thread);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpointer = {
            let conn = Connection::open(&inner.path).map_err(|e| sqlite_error(&inner.path, e))?;
            let stop = stop.clone();
            let path = inner.path.clone();
            let restart = restart_wal.clone();
            std::thread::Builder::new()
                .name("dao-sqlite-checkpoint".into())
                .spawn(move || run_checkpointer(conn, path, stop, restart))
                .map_err(|source| Error::Io {
                    path: inner.path.clone(),
                    source,
                })?
        };
        *inner.checkpointer.lock().unwrap() = Some((stop, checkpointer));
        Ok(SqliteStore { inner })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn send_write<T>(
        &self,
        msg: impl FnOnce(oneshot::Sender<Result<T>>) -> WriteMsg,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        {
            let guard = self.inner.writer.lock().unwrap();
            let sender = guard.as_ref().ok_or(Error::Closed)?;
            sender.send(msg(reply)).map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Run `f` on a pooled read connection, off the async runtime, with the index of live
    /// keys as of the last commit. `f` must open its database transaction after being called,
    /// so that the database snapshot is never older than the index.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &IndexSnapshot) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.readers.lock().unwrap().pop();
            let mut conn = match conn {
                Some(c) => c,
                None => open_reader(&inner.path)?,
            };
            let index = inner.index.lock().unwrap().clone();
            let result = f(&mut conn, &index);
            let mut pool = inner.readers.lock().unwrap();
            if pool.len() < 8 {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| {
            if e.is_cancelled() {
                // The runtime is shutting down.
                Error::Closed
            } else {
                Error::Corrupt(format!("read task failed: {e}"))
            }
        })?
    }
}

/// WAL frames past which the writer restarts the WAL between two batches: 16 MiB with
/// 2 KiB pages.
const WAL_RESTART_FRAMES: i64 = 8192;

/// Copies committed WAL frames into the database file off the writer's thread, so that the
/// writer never stalls on a checkpoint's I/O. PASSIVE checkpoints do not block the writer.
/// A writer that never pauses keeps the WAL from starting over, so when it has grown past
/// `WAL_RESTART_FRAMES` the checkpointer asks the writer to restart it (cheap: by then
/// almost every frame has been copied). Restarting keeps the file's blocks, so the commits
/// after it overwrite the WAL in place: with fdatasync (see `.cargo/config.toml`) they
/// flush data only, where appends also journal the file's new size.
fn run_checkpointer(
    conn: Connection,
    path: PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
    restart: Arc<std::sync::atomic::AtomicBool>,
) {
    let _ = conn.busy_timeout(Duration::from_secs(5));
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
        let passive = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match passive {
            Ok((frames, _)) if frames > WAL_RESTART_FRAMES => {
                restart.store(true, Ordering::Release);
            }
            Ok(_) => {}
            Err(e) => {
                warn!(path = %path.display(), error = %e, "checkpoint failed; will retry");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    // A last full checkpoint keeps the WAL small for the next start.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

fn lock_database(path: &Path) -> Result<File> {
    let lock_path = path.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|source| Error::Io {
            path: lock_path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.to_owned(),
            detail: format!(
                "{} is held; is another dao server using this data directory?",
                lock_path.display()
            ),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::Io {
            path: lock_path,
            source,
        }),
    }
}

fn sqlite_error(path: &Path, source: rusqlite::Error) -> Error {
    Error::Sqlite {
        path: path.to_owned(),
        message: source.to_string(),
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let sql = |source| sqlite_error(path, source);
    let conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
    conn.execute_batch("PRAGMA query_only=1; PRAGMA cache_size=-4096;")
        .map_err(sql)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// What the writer knows of a live key, its value included: reads at the current revision
/// (nearly all of them) and the writer's look at the value it replaces never touch SQLite.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    rev: Revision,
    create_rev: Revision,
    version: i64,
    value: Bytes,
}

impl Entry {
    fn kv(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            mod_revision: self.rev,
            create_revision: self.create_rev,
            version: self.version,
            value: self.value.clone(),
        }
    }
}

type Index = imbl::OrdMap<String, Entry>;

/// The live keys at one revision.
#[derive(Clone)]
struct IndexSnapshot {
    rev: Revision,
    map: Index,
}

/// Replay the log into the index of live keys.
fn load_index(conn: &Connection) -> rusqlite::Result<Index> {
    let mut index = Index::new();
    let mut stmt =
        conn.prepare("SELECT rev, key, deleted, create_rev, version, value FROM log ORDER BY rev")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let key = key_string(row.get(1)?)?;
        if row.get::<_, bool>(2)? {
            index.remove(&key);
        } else {
            let entry = Entry {
                rev: row.get(0)?,
                create_rev: row.get(3)?,
                version: row.get(4)?,
                value: Bytes::from(row.get::<_, Vec<u8>>(5)?),
            };
            index.insert(key, entry);
        }
    }
    Ok(index)
}

/// The revisions a read sees: the index snapshot's revision as current (the database
/// snapshot, taken after it, holds at least that much) and the compaction mark.
struct Snapshot {
    current: Revision,
    compacted: Revision,
}

fn snapshot(tx: &rusqlite::Transaction<'_>, index: &IndexSnapshot) -> rusqlite::Result<Snapshot> {
    let compacted = tx
        .prepare_cached("SELECT value FROM meta WHERE name = 'compacted'")?
        .query_row([], |r| r.get(0))?;
    Ok(Snapshot {
        current: index.rev,
        compacted,
    })
}

impl Snapshot {
    /// Resolve a requested read revision against this snapshot.
    fn resolve(&self, requested: Option<Revision>) -> Result<Revision> {
        match requested {
            None | Some(0) => Ok(self.current),
            Some(r) if r > self.current => Err(Error::FutureRevision {
                requested: r,
                current: self.current,
            }),
            Some(r) if r < self.compacted => Err(Error::Compacted {
                requested: r,
                compacted: self.compacted,
            }),
            Some(r) => Ok(r),
        }
    }
}

fn key_string(bytes: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// Reads `key, rev, create_rev, version, value` columns starting at `at`.
fn row_kv(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: key_string(row.get(at)?)?,
        mod_revision: row.get(at + 1)?,
        create_revision: row.get(at + 2)?,
        version: row.get(at + 3)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(at + 4)?),
    })
}

const ROW_BY_REV: &str = "SELECT key, rev, create_rev, version, value FROM log WHERE rev = ?1";

/// The row a key pointed at, by its revision. Rows that were current at any uncompacted
/// revision are never swept, so a miss means the data is damaged.
fn row_by_rev(tx: &rusqlite::Connection, rev: Revision) -> Result<KeyValue, rusqlite::Error> {
    tx.prepare_cached(ROW_BY_REV)?
        .query_row([rev], |r| row_kv(r, 0))
}

/// For every key in `[start, end)` written after `at`, what it held at `at`: the revision
/// of that value (`prev_rev` of the first later write), 0 when it did not exist. The log has
/// no index by key; this walks the revisions after `at`, which the compaction window bounds.
fn changed_since(
    tx: &rusqlite::Transaction<'_>,
    at: Revision,
    upto: Revision,
    start: &[u8],
    end: &[u8],
) -> rusqlite::Result<std::collections::BTreeMap<String, Revision>> {
    let mut stmt = tx.prepare_cached(
        "SELECT key, prev_rev FROM log WHERE rev > ?1 AND rev <= ?2 AND key >= ?3 AND key < ?4
         ORDER BY rev",
    )?;
    let mut rows = stmt.query(params![at, upto, start, end])?;
    let mut changed = std::collections::BTreeMap::new();
    while let Some(row) = rows.next()? {
        let key = key_string(row.get(0)?)?;
        let prev: Revision = row.get(1)?;
        changed.entry(key).or_insert(prev);
    }
    Ok(changed)
}

fn read_get(
    conn: &mut Connection,
    path: &Path,
    index: &IndexSnapshot,
    key: &str,
    revision: Option<Revision>,
) -> Result<(Option<KeyValue>, Revision)> {
    let sql = |source| sqlite_error(path, source);
    let tx = conn.transaction().map_err(sql)?;
    let snap = snapshot(&tx, index).map_err(sql)?;
    let at = snap.resolve(revision)?;
    let mut end = key.as_bytes().to_vec();
    end.push(0);
    if at == snap.current {
        return Ok((index.map.get(key).map(|e| e.kv(key)), at));
    }
    let kv = match changed_since(&tx, at, snap.current, key.as_bytes(), &end)
        .map_err(sql)?
        .get(key)
    {
        None => index.map.get(key).map(|e| e.kv(key)),
        Some(0) => None,
        Some(&rev) => Some(row_by_rev(&tx, rev).map_err(sql)?),
    };
    Ok((kv, at))
}

fn read_range(
    conn: &mut Connection,
    path: &Path,
    index: &IndexSnapshot,
    req: &RangeRequest,
) -> Result<RangeResult> {
    let sql = |source| sqlite_error(path, source);
    let tx = conn.transaction().map_err(sql)?;
    let snap = snapshot(&tx, index).map_err(sql)?;
    let at = snap.resolve(req.revision)?;
    if at == snap.current {
        return Ok(range_live(index, req));
    }
    let start = range_start(req);
    let end_bytes = prefix_end(&req.prefix);
    // Keys are UTF-8 and no UTF-8 string starts with 0xff, so that bound is "no bound".
    let end_bytes = if end_bytes.is_empty() {
        vec![0xff]
    } else {
        end_bytes
    };
    let today = || live_keys(index, req);
    let limit = req.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);

    // What each key in the range held at `at`, in key order: a live value, or the revision
    // of an older one still in the log.
    let mut revs: Vec<Pick> = Vec::new();
    let mut more = false;
    // Today's keys, with every key written since `at` put back as it was.
    let changed =
        changed_since(&tx, at, snap.current, start.as_bytes(), &end_bytes).map_err(sql)?;
    let mut count = today().count() as i64;
    for (key, &then) in &changed {
        count += i64::from(then > 0) - i64::from(index.map.contains_key(key));
    }
    let mut now = today().peekable();
    let mut then = changed.iter().peekable();
    loop {
        let pick = match (now.peek(), then.peek()) {
            (None, None) => break,
            (Some((k, e)), None) => {
                let r = (!changed.contains_key(*k)).then(|| Pick::Live(e.kv(k)));
                now.next();
                r
            }
            (Some((k, e)), Some((ck, _))) if k < ck => {
                let r = (!changed.contains_key(*k)).then(|| Pick::Live(e.kv(k)));
                now.next();
                r
            }
            (Some((k, _)), Some((ck, crev))) => {
                let r = (**crev > 0).then_some(Pick::Logged(**crev));
                if k == ck {
                    now.next();
                }
                then.next();
                r
            }
            (None, Some((_, crev))) => {
                let r = (**crev > 0).then_some(Pick::Logged(**crev));
                then.next();
                r
            }
        };
        if let Some(rev) = pick {
            if revs.len() == limit {
                more = true;
                break;
            }
            revs.push(rev);
        }
    }
    let kvs = revs
        .into_iter()
        .map(|pick| match pick {
            Pick::Live(kv) => Ok(kv),
            Pick::Logged(rev) => row_by_rev(&tx, rev),
        })
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql)?;
    Ok(RangeResult {
        kvs,
        more,
        count,
        revision: at,
    })
}

/// A key's value at a past revision: unchanged since (the live value) or an older row.
enum Pick {
    Live(KeyValue),
    Logged(Revision),
}

/// Where a range request starts: its continuation key, or its prefix.
fn range_start(req: &RangeRequest) -> &str {
    match &req.start {
        Some(s) if s.as_str() > req.prefix.as_str() => s,
        _ => &req.prefix,
    }
}

/// The live keys a range request covers, in key order.
fn live_keys<'a>(
    index: &'a IndexSnapshot,
    req: &'a RangeRequest,
) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
    let end = prefix_end(&req.prefix);
    index
        .map
        .range::<_, str>((
            std::ops::Bound::Included(range_start(req)),
            std::ops::Bound::Unbounded,
        ))
        .take_while(move |(k, _)| end.is_empty() || k.as_bytes() < end.as_slice())
}

/// A range at the index's revision, from memory.
fn range_live(index: &IndexSnapshot, req: &RangeRequest) -> RangeResult {
    let today = || live_keys(index, req);
    let limit = req.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let kvs: Vec<KeyValue> = today().take(limit).map(|(k, e)| e.kv(k)).collect();
    let more = kvs.len() == limit && today().nth(limit).is_some();
    let count = if more { today().count() } else { kvs.len() };
    RangeResult {
        kvs,
        more,
        count: count as i64,
        revision: index.rev,
    }
}

/// Changes under `prefix` with revisions in `(after, upto]`, at most one chunk.
/// Returns the events and the highest revision examined.
fn read_events(
    conn: &mut Connection,
    path: &Path,
    prefix: &str,
    after: Revision,
    upto: Revision,
) -> Result<(Vec<Event>, Revision)> {
    let sql = |source| sqlite_error(path, source);
    let tx = conn.transaction().map_err(sql)?;
    let compacted: Revision = tx
        .query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
            r.get(0)
        })
        .map_err(sql)?;
    if after < compacted {
        return Err(Error::Compacted {
            requested: after + 1,
            compacted,
        });
    }
    let hi = upto.min(after + CATCH_UP_CHUNK);
    let mut end = prefix_end(prefix);
    if end.is_empty() {
        end = vec![0xff];
    }
    let mut stmt = tx
        .prepare_cached(
            "SELECT l.key, l.rev, l.create_rev, l.version, l.value, l.deleted,
                    p.key, p.rev, p.create_rev, p.version, p.value
             FROM log l LEFT JOIN log p ON p.rev = l.prev_rev AND l.prev_rev > 0
             WHERE l.rev > ?1 AND l.rev <= ?2 AND l.key >= ?3 AND l.key < ?4
             ORDER BY l.rev",
        )
        .map_err(sql)?;
    let events = stmt
        .query_map(params![after, hi, prefix.as_bytes(), end], |r| {
            let kv = row_kv(r, 0)?;
            let deleted: bool = r.get(5)?;
            let prev = match r.get::<_, Option<i64>>(7)? {
                Some(_) => Some(row_kv(r, 6)?),
                None => None,
            };
            Ok(Event {
                kind: if deleted {
                    EventKind::Delete
                } else {
                    EventKind::Put
                },
                kv,
                prev,
            })
        })
        .map_err(sql)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql)?;
    Ok((events, hi))
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        {
            let index = self.inner.index.lock().unwrap();
            if revision.is_none_or(|r| r == 0 || r == index.rev) {
                return Ok((index.map.get(key).map(|e| e.kv(key)), index.rev));
            }
        }
        let key = key.to_owned();
        let path = self.inner.path.clone();
        self.read(move |conn, index| read_get(conn, &path, index, &key, revision))
            .await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResult> {
        let index = self.inner.index.lock().unwrap().clone();
        if req.revision.is_none_or(|r| r == 0 || r == index.rev) {
            return Ok(range_live(&index, &req));
        }
        let path = self.inner.path.clone();
        self.read(move |conn, index| read_range(conn, &path, index, &req))
            .await
    }

    async fn put(&self, key: &str, value: Bytes, expect: Expect) -> Result<Outcome> {
        check_value_size(key, &value)?;
        let key = key.to_owned();
        self.send_write(|reply| WriteMsg::Put {
            key,
            value,
            expect,
            reply,
        })
        .await
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<Outcome> {
        let key = key.to_owned();
        self.send_write(|reply| WriteMsg::Delete { key, expect, reply })
            .await
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        let compacted = self.inner.compacted.load(Ordering::Acquire);
        if req.after < compacted {
            return Err(Error::Compacted {
                requested: req.after + 1,
                compacted,
            });
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let store = self.clone();
        tokio::spawn(async move { store.run_watch(req, tx).await });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.send_write(|reply| WriteMsg::Compact { revision, reply })
            .await
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.current.load(Ordering::Acquire))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.inner.compacted.load(Ordering::Acquire))
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

type WatchSender = tokio::sync::mpsc::Sender<Result<WatchMessage>>;

impl SqliteStore {
    /// One watcher: catch up from the log, then follow the live broadcast; when it falls too
    /// far behind the broadcast, catch up from the log again.
    async fn run_watch(self, req: WatchRequest, out: WatchSender) {
        let mut delivered = req.after;
        let mut ticker = req.progress_interval.map(|d| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut sent_since_tick = false;
        'resubscribe: loop {
            let (mut live, published) = self.inner.hub.subscribe();
            // Catch up: everything in (delivered, published] comes from the log.
            while delivered < published {
                let path = self.inner.path.clone();
                let prefix = req.prefix.clone();
                let after = delivered;
                let read = self
                    .read(move |conn, _| read_events(conn, &path, &prefix, after, published))
                    .await;
                match read {
                    Ok((events, upto)) => {
                        delivered = upto;
                        if !events.is_empty() {
                            sent_since_tick = true;
                            if out.send(Ok(WatchMessage::Events(events))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = out.send(Err(e)).await;
                        return;
                    }
                }
            }
            // Live: batches arrive in revision order; skip what the catch-up covered.
            loop {
                let tick = async {
                    match ticker.as_mut() {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = out.closed() => return,
                    _ = tick => {
                        if !sent_since_tick && out.send(Ok(WatchMessage::Progress(delivered))).await.is_err() {
                            return;
                        }
                        sent_since_tick = false;
                    }
                    batch = live.recv() => match batch {
                        Ok(batch) => {
                            if batch.revision <= delivered {
                                continue;
                            }
                            let events: Vec<Event> = batch
                                .events
                                .iter()
                                .filter(|e| e.kv.mod_revision > delivered && e.kv.key.starts_with(&req.prefix))
                                .cloned()
                                .collect();
                            delivered = batch.revision;
                            if !events.is_empty() {
                                sent_since_tick = true;
                                if out.send(Ok(WatchMessage::Events(events))).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            debug!(missed, delivered, "watcher fell behind the live stream, catching up from the log");
                            continue 'resubscribe;
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            let _ = out.send(Err(Error::Closed)).await;
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// A batch of committed events, shared by every watcher.
struct Batch {
    /// The store's revision after the batch.
    revision: Revision,
    events: Vec<Event>,
}

/// Fan-out of committed batches. Subscribing and publishing share one lock so that a new
/// watcher learns exactly which revision the live stream starts after.
struct Hub {
    published: Mutex<Revision>,
    tx: broadcast::Sender<Arc<Batch>>,
}

impl Hub {
    fn new(revision: Revision, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Hub {
            published: Mutex::new(revision),
            tx,
        }
    }

    fn subscribe(&self) -> (broadcast::Receiver<Arc<Batch>>, Revision) {
        let published = self.published.lock().unwrap();
        (self.tx.subscribe(), *published)
    }

    fn publish(&self, batch: Batch) {
        let mut published = self.published.lock().unwrap();
        *published = batch.revision;
        let _ = self.tx.send(Arc::new(batch));
    }
}

/// The single writer. Owns the writing connection and the revision counter.
struct Writer {
    conn: Connection,
    path: PathBuf,
    rev: Revision,
    /// The live keys, including the batch being applied.
    index: Index,
    /// Set by the checkpointer when the WAL should start over.
    restart_wal: Arc<std::sync::atomic::AtomicBool>,
    compacted: Revision,
    /// Compaction has removed superseded rows up to here.
    swept: Revision,
    config: SqliteConfig,
    inner: std::sync::Weak<Inner>,
}

/// A write waiting for its batch to commit.
enum Pending {
    Write(oneshot::Sender<Result<Outcome>>, Outcome),
    Compact(oneshot::Sender<Result<()>>, Result<()>),
}

/// etcd's rule: compaction must move forward and cannot pass the current revision.
fn validate_compact(revision: Revision, current: Revision, compacted: Revision) -> Result<()> {
    if revision > current {
        return Err(Error::FutureRevision {
            requested: revision,
            current,
        });
    }
    if revision <= compacted {
        return Err(Error::Compacted {
            requested: revision,
            compacted,
        });
    }
    Ok(())
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<WriteMsg>) {
        loop {
            let first = if self.swept < self.compacted {
                match rx.try_recv() {
                    Ok(msg) => Some(msg),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => break,
                }
            };
            if let Some(first) = first {
                let mut batch = vec![first];
                while batch.len() < self.config.max_batch {
                    match rx.try_recv() {
                        Ok(msg) => batch.push(msg),
                        Err(_) => break,
                    }
                }
                self.commit_batch(batch);
                self.auto_compact();
                if self.restart_wal.swap(false, Ordering::AcqRel) {
                    self.restart_wal();
                }
            }
            if self.swept < self.compacted
                && let Err(e) = self.sweep_chunk()
            {
                warn!(error = %e, "compaction sweep failed; will retry");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        debug!(path = %self.path.display(), "sqlite writer stopped");
    }

    fn commit_batch(&mut self, batch: Vec<WriteMsg>) {
        let mut pending = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        let replies: Vec<Reply>;
        match self.apply(batch, &mut pending, &mut events) {
            Ok((next, compacted)) => {
                let wrote = next > self.rev;
                if compacted > self.compacted {
                    info!(compacted, "compacted sqlite store");
                }
                self.rev = next;
                self.compacted = compacted;
                if let Some(inner) = self.inner.upgrade() {
                    // Index first: a reader that sees the new revision must find its keys.
                    *inner.index.lock().unwrap() = IndexSnapshot {
                        rev: next,
                        map: self.index.clone(),
                    };
                    inner.current.store(next, Ordering::Release);
                    inner.compacted.store(compacted, Ordering::Release);
                    if wrote {
                        inner.hub.publish(Batch {
                            revision: next,
                            events,
                        });
                    }
                }
                for p in pending {
                    match p {
                        Pending::Write(reply, outcome) => {
                            let _ = reply.send(Ok(outcome));
                        }
                        Pending::Compact(reply, result) => {
                            let _ = reply.send(result);
                        }
                    }
                }
            }
            Err((e, rest)) => {
                warn!(error = %e, path = %self.path.display(), "write batch failed; nothing in it was applied");
                replies = pending
                    .into_iter()
                    .map(|p| match p {
                        Pending::Write(r, _) => Reply::Write(r),
                        Pending::Compact(r, _) => Reply::Compact(r),
                    })
                    .chain(rest)
                    .collect();
                let message = e.to_string();
                for reply in replies {
                    let err = Error::Sqlite {
                        path: self.path.clone(),
                        message: message.clone(),
                    };
                    match reply {
                        Reply::Write(r) => {
                            let _ = r.send(Err(err));
                        }
                        Reply::Compact(r) => {
                            let _ = r.send(Err(err));
                        }
                    }
                }
            }
        }
    }

    /// Apply a batch in one transaction and return the new revision and compaction mark.
    /// On failure nothing applied, and the error comes back with the callers not yet in
    /// `pending`, so that every caller hears of it.
    fn apply(
        &mut self,
        batch: Vec<WriteMsg>,
        pending: &mut Vec<Pending>,
        events: &mut Vec<Event>,
    ) -> Result<(Revision, Revision), (rusqlite::Error, Vec<Reply>)> {
        let tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => return Err((e, batch.into_iter().map(WriteMsg::into_reply).collect())),
        };
        let mut next = self.rev;
        let mut compacted = self.compacted;
        // O(1): the persistent map shares structure with its copy.
        let before = self.index.clone();
        let mut iter = batch.into_iter();
        while let Some(msg) = iter.next() {
            let (key, value, expect, reply) = match msg {
                WriteMsg::Put {
                    key,
                    value,
                    expect,
                    reply,
                } => (key, Some(value), expect, reply),
                WriteMsg::Delete { key, expect, reply } => (key, None, expect, reply),
                WriteMsg::Compact { revision, reply } => {
                    let result = validate_compact(revision, next, compacted);
                    if result.is_ok() {
                        compacted = revision;
                    }
                    pending.push(Pending::Compact(reply, result));
                    continue;
                }
            };
            match write_one(&tx, &mut self.index, &mut next, &key, value, expect) {
                Ok((outcome, event)) => {
                    events.extend(event);
                    pending.push(Pending::Write(reply, outcome));
                }
                Err(e) => {
                    let rest = std::iter::once(Reply::Write(reply))
                        .chain(iter.map(WriteMsg::into_reply))
                        .collect();
                    self.index = before;
                    return Err((e, rest));
                }
            }
        }
        let commit = tx
            .prepare_cached(
                "UPDATE meta SET value = CASE name WHEN 'rev' THEN ?1 ELSE ?2 END
                 WHERE name IN ('rev', 'compacted')",
            )
            .and_then(|mut stmt| stmt.execute(params![next, compacted]))
            .and_then(|_| tx.commit());
        match commit {
            Ok(()) => Ok((next, compacted)),
            Err(e) => {
                self.index = before;
                Err((e, Vec::new()))
            }
        }
    }

    /// Start the WAL over. Waits at most 50 ms for readers on old frames, so that writes
    /// never stall behind a long read; the checkpointer asks again later if it did not finish.
    fn restart_wal(&mut self) {
        let _ = self.conn.busy_timeout(Duration::from_millis(50));
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
        {
            debug!(error = %e, "WAL restart did not complete; will retry");
        }
        let _ = self.conn.busy_timeout(Duration::from_secs(5));
    }

    fn auto_compact(&mut self) {
        let Some(retain) = self.config.retain_revisions else {
            return;
        };
        // Compact in steps of a quarter window so the sweep has steady, small work.
        let target = self.rev - retain;
        if target - self.compacted < (retain / 4).max(1) {
            return;
        }
        match self.conn.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
            [target],
        ) {
            Ok(_) => {
                self.compacted = target;
                if let Some(inner) = self.inner.upgrade() {
                    inner.compacted.store(target, Ordering::Release);
                }
                debug!(compacted = target, "automatic compaction");
            }
            Err(e) => warn!(error = %e, "automatic compaction failed; will retry"),
        }
    }

    /// Delete the rows superseded by writes in the next chunk of `(swept, compacted]`, and
    /// the tombstones there. A row is superseded at the compacted revision when a later write
    /// to its key is at or below it; that later write names it in `prev_rev`.
    fn sweep_chunk(&mut self) -> rusqlite::Result<()> {
        let lo = self.swept;
        let hi = self.compacted.min(lo + COMPACTION_CHUNK);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM log WHERE rev IN
               (SELECT prev_rev FROM log WHERE rev > ?1 AND rev <= ?2 AND prev_rev > 0)",
            params![lo, hi],
        )?;
        tx.execute(
            "DELETE FROM log WHERE rev > ?1 AND rev <= ?2 AND deleted = 1",
            params![lo, hi],
        )?;
        tx.execute("UPDATE meta SET value = ?1 WHERE name = 'swept'", [hi])?;
        tx.commit()?;
        self.swept = hi;
        Ok(())
    }
}

enum Reply {
    Write(oneshot::Sender<Result<Outcome>>),
    Compact(oneshot::Sender<Result<()>>),
}

impl WriteMsg {
    fn into_reply(self) -> Reply {
        match self {
            WriteMsg::Put { reply, .. } | WriteMsg::Delete { reply, .. } => Reply::Write(reply),
            WriteMsg::Compact { reply, .. } => Reply::Compact(reply),
        }
    }
}

/// Look up, check the guard, and apply one put (`value` is `Some`) or delete.
fn write_one(
    tx: &rusqlite::Transaction<'_>,
    index: &mut Index,
    next: &mut Revision,
    key: &str,
    value: Option<Bytes>,
    expect: Expect,
) -> rusqlite::Result<(Outcome, Option<Event>)> {
    let entry = index.get(key).cloned();
    let holds = match expect {
        Expect::Absent => entry.is_none(),
        Expect::ModRevision(r) => entry.as_ref().is_some_and(|e| e.rev == r),
        Expect::Present => entry.is_some(),
        Expect::Any => true,
    };
    // A delete needs something to delete.
    let holds = holds && (value.is_some() || entry.is_some());
    // The previous value: for the caller on a rejection, for watchers on a change.
    let current = entry.as_ref().map(|e| e.kv(key));
    if !holds {
        return Ok((
            Outcome::Rejected {
                revision: *next,
                current,
            },
            None,
        ));
    }
    *next += 1;
    let rev = *next;
    let prev_rev = entry.as_ref().map_or(0, |e| e.rev);
    match value {
        Some(value) => {
            let kv = KeyValue {
                key: key.to_owned(),
                value,
                create_revision: entry.as_ref().map_or(rev, |e| e.create_rev),
                mod_revision: rev,
                version: entry.as_ref().map_or(1, |e| e.version + 1),
            };
            tx.prepare_cached(
                "INSERT INTO log(rev, key, deleted, create_rev, version, prev_rev, value)
                 VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                rev,
                key.as_bytes(),
                kv.create_revision,
                kv.version,
                prev_rev,
                &kv.value[..]
            ])?;
            index.insert(
                key.to_owned(),
                Entry {
                    rev,
                    create_rev: kv.create_revision,
                    version: kv.version,
                    value: kv.value.clone(),
                },
            );
            let event = Event {
                kind: EventKind::Put,
                kv: kv.clone(),
                prev: current,
            };
            Ok((Outcome::Applied { revision: rev, kv }, Some(event)))
        }
        None => {
            let prev = current.expect("guard holds only for a present key");
            tx.prepare_cached(
                "INSERT INTO log(rev, key, deleted, create_rev, version, prev_rev, value)
                 VALUES (?1, ?2, 1, 0, 0, ?3, x'')",
            )?
            .execute(params![rev, key.as_bytes(), prev_rev])?;
            index.remove(key);
            let event = Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.to_owned(),
                    value: Bytes::new(),
                    create_revision: 0,
                    mod_revision: rev,
                    version: 0,
                },
                prev: Some(prev.clone()),
            };
            Ok((
                Outcome::Applied {
                    revision: rev,
                    kv: prev,
                },
                Some(event),
            ))
        }
    }
}
