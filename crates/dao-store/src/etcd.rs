//! The etcd backend: the etcd v3 API through etcd-client, for HA.
//!
//! Writes are etcd transactions: compare the key's `mod_revision` (or `version`), then put or
//! delete; otherwise get the current value, so a failed guard answers with it in the same
//! round trip. All of Dao's keys live under `config.prefix`, so one etcd cluster can hold
//! several Dao clusters or other users' data.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{
    Error, Event, EventKind, Expect, KeyValue, Outcome, RangeRequest, RangeResult, Result,
    Revision, Store, WatchMessage, WatchRequest, WatchStream, check_value_size, prefix_end,
};

#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Every key is stored as `prefix + "/data" + key`.
    pub prefix: String,
    /// How long to keep trying to reach etcd at start before giving up.
    pub startup_timeout: Duration,
    /// Deadline for one request.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: "/dao".to_owned(),
            startup_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Responses can carry a whole LIST of 100k objects; tonic's default is 4 MiB.
const MAX_MESSAGE_BYTES: usize = 512 * 1024 * 1024;

#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    kv: KvClient,
    watch: WatchClient,
    /// `prefix + "/data"`: prepended to every key.
    root: String,
    /// Where the compaction mark is recorded, outside the data range.
    compact_key: String,
}

impl EtcdStore {
    /// Connect, retrying with backoff (and saying so in the log) until etcd answers or
    /// `startup_timeout` passes.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(config.request_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let deadline = tokio::time::Instant::now() + config.startup_timeout;
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = async {
                let mut client = Client::connect(&config.endpoints, Some(options.clone())).await?;
                client.status().await?;
                Ok::<_, etcd_client::Error>(client)
            };
            match attempt.await {
                Ok(client) => {
                    info!(endpoints = ?config.endpoints, "connected to etcd");
                    return Ok(EtcdStore {
                        kv: client
                            .kv_client()
                            .max_decoding_message_size(MAX_MESSAGE_BYTES)
                            .max_encoding_message_size(MAX_MESSAGE_BYTES),
                        watch: client
                            .watch_client()
                            .max_decoding_message_size(MAX_MESSAGE_BYTES),
                        client,
                        root: format!("{}/data", config.prefix),
                        compact_key: format!("{}/meta/compacted", config.prefix),
                    });
                }
                Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                    warn!(endpoints = ?config.endpoints, error = %e, retry_in = ?backoff, "etcd not reachable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(Error::Unavailable(format!(
                        "no answer from etcd at {:?} within {:?}: {e}",
                        config.endpoints, config.startup_timeout
                    )));
                }
            }
        }
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.root)
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        let key = kv
            .key_str()
            .map_err(|e| Error::Corrupt(format!("etcd key is not UTF-8: {e}")))?;
        let key = key
            .strip_prefix(&self.root)
            .ok_or_else(|| Error::Corrupt(format!("etcd key {key} outside {}", self.root)))?;
        Ok(KeyValue {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
        })
    }

    async fn compacted_mark(&self) -> Revision {
        let mut kv = self.kv.clone();
        match kv.get(self.compact_key.as_str(), None).await {
            Ok(resp) => resp
                .kvs()
                .first()
                .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok())
                .unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Turn an etcd error into the store's, recognising etcd's compaction messages.
    async fn classify(&self, e: etcd_client::Error, requested: Revision) -> Error {
        let message = e.to_string();
        if message.contains("required revision has been compacted") {
            Error::Compacted {
                requested,
                compacted: self.compacted_mark().await,
            }
        } else if message.contains("required revision is a future revision") {
            Error::FutureRevision {
                requested,
                current: self.current_revision().await.unwrap_or(0),
            }
        } else {
            classify_transport(e)
        }
    }

    async fn guarded(
        &self,
        key: &str,
        expect: Expect,
        op: TxnOp,
    ) -> Result<(bool, Revision, Vec<TxnOpResponse>)> {
        let full = self.full_key(key);
        let compare = match expect {
            Expect::Absent => vec![Compare::mod_revision(full.as_str(), CompareOp::Equal, 0)],
            Expect::ModRevision(r) => {
                vec![Compare::mod_revision(full.as_str(), CompareOp::Equal, r)]
            }
            Expect::Present => vec![Compare::version(full.as_str(), CompareOp::Greater, 0)],
            Expect::Any => vec![],
        };
        let txn = Txn::new()
            .when(compare)
            .and_then(vec![op])
            .or_else(vec![TxnOp::get(full.as_str(), None)]);
        let mut kv = self.kv.clone();
        let resp = kv.txn(txn).await.map_err(classify_transport)?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((resp.succeeded(), revision, resp.op_responses()))
    }

    fn rejected(&self, revision: Revision, responses: &[TxnOpResponse]) -> Result<Outcome> {
        let current = match responses.first() {
            Some(TxnOpResponse::Get(get)) => {
                get.kvs().first().map(|kv| self.convert(kv)).transpose()?
            }
            _ => None,
        };
        Ok(Outcome::Rejected { revision, current })
    }
}

/// Transport failures and timeouts mean "unavailable"; anything else etcd said is passed on.
fn classify_transport(e: etcd_client::Error) -> Error {
    match &e {
        etcd_client::Error::GRpcStatus(status)
            if !matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown
            ) =>
        {
            Error::Etcd(status.message().to_owned())
        }
        _ => Error::Unavailable(e.to_string()),
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        let mut options = GetOptions::new();
        if let Some(r) = revision.filter(|r| *r > 0) {
            options = options.with_revision(r);
        }
        let mut kv = self.kv.clone();
        let resp = match kv.get(self.full_key(key), Some(options)).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.classify(e, revision.unwrap_or(0)).await),
        };
        let current = resp.header().map_or(0, |h| h.revision());
        let kv = resp.kvs().first().map(|kv| self.convert(kv)).transpose()?;
        Ok((kv, revision.filter(|r| *r > 0).unwrap_or(current)))
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResult> {
        let prefix = self.full_key(&req.prefix);
        let start = match &req.start {
            Some(s) if s.as_str() > req.prefix.as_str() => self.full_key(s),
            _ => prefix.clone(),
        };
        let mut options = GetOptions::new().with_range(prefix_end(&prefix));
        if let Some(limit) = req.limit.filter(|l| *l > 0) {
            options = options.with_limit(limit as i64);
        }
        if let Some(r) = req.revision.filter(|r| *r > 0) {
            options = options.with_revision(r);
        }
        let mut kv = self.kv.clone();
        let resp = match kv.get(start, Some(options)).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.classify(e, req.revision.unwrap_or(0)).await),
        };
        let current = resp.header().map_or(0, |h| h.revision());
        let kvs = resp
            .kvs()
            .iter()
            .map(|kv| self.convert(kv))
            .collect::<Result<Vec<_>>>()?;
        Ok(RangeResult {
            kvs,
            more: resp.more(),
            count: resp.count(),
            revision: req.revision.filter(|r| *r > 0).unwrap_or(current),
        })
    }

    async fn put(&self, key: &str, value: Bytes, expect: Expect) -> Result<Outcome> {
        check_value_size(key, &value)?;
        let op = TxnOp::put(
            self.full_key(key),
            value.to_vec(),
            Some(PutOptions::new().with_prev_key()),
        );
        let (succeeded, revision, responses) = self.guarded(key, expect, op).await?;
        if !succeeded {
            return self.rejected(revision, &responses);
        }
        let prev = match responses.first() {
            Some(TxnOpResponse::Put(put)) => {
                put.prev_key().map(|kv| self.convert(kv)).transpose()?
            }
            _ => return Err(Error::Etcd("transaction answered without its put".into())),
        };
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
        };
        Ok(Outcome::Applied { revision, kv })
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<Outcome> {
        // Deleting needs a key to delete, whatever else the guard says.
        let expect = match expect {
            Expect::Any => Expect::Present,
            other => other,
        };
        if expect == Expect::Absent {
            let (current, revision) = self.get(key, None).await?;
            return Ok(Outcome::Rejected { revision, current });
        }
        let op = TxnOp::delete(
            self.full_key(key),
            Some(DeleteOptions::new().with_prev_key()),
        );
        let (succeeded, revision, responses) = self.guarded(key, expect, op).await?;
        if !succeeded {
            return self.rejected(revision, &responses);
        }
        let prev = match responses.first() {
            Some(TxnOpResponse::Delete(del)) => del
                .prev_kvs()
                .first()
                .map(|kv| self.convert(kv))
                .transpose()?,
            _ => None,
        };
        match prev {
            Some(kv) => Ok(Outcome::Applied { revision, kv }),
            None => Err(Error::Etcd(
                "delete applied without a previous value".into(),
            )),
        }
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        // etcd reports a compacted start revision on the stream; check first so that callers
        // get the error from `watch` itself, as with the embedded store.
        let compacted = self.compacted_mark().await;
        if req.after < compacted {
            return Err(Error::Compacted {
                requested: req.after + 1,
                compacted,
            });
        }
        let (tx, rx) = mpsc::channel(64);
        let store = self.clone();
        tokio::spawn(async move { store.run_watch(req, tx).await });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut client = self.client.clone();
        if let Err(e) = client
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
        {
            return Err(self.classify(e, revision).await);
        }
        let mut kv = self.kv.clone();
        kv.put(self.compact_key.as_str(), revision.to_string(), None)
            .await
            .map_err(classify_transport)?;
        Ok(())
    }

    async fn current_revision(&self) -> Result<Revision> {
        let mut kv = self.kv.clone();
        let resp = kv
            .get(
                self.compact_key.as_str(),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(classify_transport)?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.compacted_mark().await)
    }

    fn backend(&self) -> &'static str {
        "etcd"
    }
}

impl EtcdStore {
    /// One etcd watch, re-established from the last delivered revision (with backoff, logged)
    /// when the connection breaks.
    async fn run_watch(self, req: WatchRequest, out: mpsc::Sender<Result<WatchMessage>>) {
        let prefix = self.full_key(&req.prefix);
        let end = prefix_end(&prefix);
        let mut delivered = req.after;
        let mut backoff = Duration::from_millis(100);
        let mut ticker = req
            .progress_interval
            .map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
        loop {
            let options = WatchOptions::new()
                .with_range(end.clone())
                .with_start_revision(delivered + 1)
                .with_prev_key()
                .with_progress_notify();
            let mut watch_client = self.watch.clone();
            let mut stream = tokio::select! {
                _ = out.closed() => return,
                opened = watch_client.watch(prefix.as_str(), Some(options)) => match opened {
                    Ok(stream) => stream,
                    Err(e) => {
                        warn!(prefix = %req.prefix, error = %e, retry_in = ?backoff, "cannot open etcd watch; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            };
            loop {
                let tick = async {
                    match ticker.as_mut() {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                let message = tokio::select! {
                    _ = out.closed() => return,
                    _ = tick => {
                        if let Err(e) = stream.request_progress().await {
                            warn!(error = %e, "etcd watch progress request failed");
                        }
                        continue;
                    }
                    message = stream.message() => message,
                };
                let resp = match message {
                    Ok(Some(resp)) => resp,
                    Ok(None) | Err(_) => {
                        warn!(prefix = %req.prefix, delivered, retry_in = ?backoff, "etcd watch broke; resuming");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        break;
                    }
                };
                backoff = Duration::from_millis(100);
                if resp.compact_revision() > 0 {
                    let _ = out
                        .send(Err(Error::Compacted {
                            requested: delivered + 1,
                            compacted: resp.compact_revision(),
                        }))
                        .await;
                    return;
                }
                if resp.canceled() {
                    let _ = out
                        .send(Err(Error::Etcd(format!(
                            "watch canceled: {}",
                            resp.cancel_reason()
                        ))))
                        .await;
                    return;
                }
                if resp.events().is_empty() {
                    if !resp.created() {
                        let revision = resp.header().map_or(delivered, |h| h.revision());
                        delivered = delivered.max(revision);
                        if out
                            .send(Ok(WatchMessage::Progress(delivered)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    continue;
                }
                let mut events = Vec::with_capacity(resp.events().len());
                for e in resp.events() {
                    let Some(kv) = e.kv() else { continue };
                    let converted = self.convert(kv).and_then(|kv| {
                        let prev = e.prev_kv().map(|p| self.convert(p)).transpose()?;
                        Ok(Event {
                            kind: match e.event_type() {
                                EventType::Put => EventKind::Put,
                                EventType::Delete => EventKind::Delete,
                            },
                            kv,
                            prev,
                        })
                    });
                    match converted {
                        Ok(event) if event.kv.mod_revision > delivered => events.push(event),
                        Ok(_) => {}
                        Err(err) => {
                            let _ = out.send(Err(err)).await;
                            return;
                        }
                    }
                }
                if let Some(last) = events.last() {
                    delivered = last.kv.mod_revision;
                    if out.send(Ok(WatchMessage::Events(events))).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
