//! `dao bench ...`: benchmarks whose output goes into BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Subcommand;
use dao_store::{Expect, RangeRequest, Store, WatchMessage, WatchRequest};
use futures::StreamExt;
use hdrhistogram::Histogram;

use crate::Backend;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The revisioned store: write throughput and latency, LIST, watch delivery and fan-out,
    /// for each backend, with raw etcd puts as the yardstick.
    Store(StoreBench),
    /// The API server: start to ready, idle memory, creates at 1/16/64 clients, LIST of 10k
    /// and 100k objects, watch fan-out; a separate `dao server` driven by kube-rs clients.
    Api(crate::bench_api::ApiBench),
    /// The scheduler: decisions/s in-process over simulated nodes (basic, topology spread,
    /// pod anti-affinity), pods/s end to end through the API, memory of a large cluster.
    Scheduler(crate::bench_scheduler::SchedulerBench),
}

#[derive(clap::Args, Clone, Debug)]
pub struct StoreBench {
    /// Backends to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sqlite,etcd")]
    pub backends: Vec<Backend>,
    /// Concurrent writer counts.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub writers: Vec<usize>,
    /// Seconds each write run lasts.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Bytes per value.
    #[arg(long, default_value_t = 512)]
    pub value_bytes: usize,
    /// Keys for the LIST measurement.
    #[arg(long, default_value_t = 100_000)]
    pub list_keys: usize,
    /// Watchers for the fan-out measurement.
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Use this etcd instead of starting a private one.
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
}

pub async fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Store(args) => store_bench(args).await,
        BenchCommand::Api(args) => crate::bench_api::run(args).await,
        BenchCommand::Scheduler(args) => crate::bench_scheduler::run(args).await,
    }
}

fn progress(msg: &str) {
    eprintln!("[bench] {msg}");
}

/// Latencies in microseconds, up to a minute.
pub(crate) struct Latencies(Histogram<u64>);

impl Latencies {
    pub(crate) fn new() -> Self {
        Latencies(Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"))
    }
    pub(crate) fn record(&mut self, d: Duration) {
        let _ = self.0.record((d.as_micros() as u64).clamp(1, 60_000_000));
    }
    /// The `q` quantile in milliseconds.
    pub(crate) fn ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }
    pub(crate) fn add(&mut self, other: &Latencies) -> Result<()> {
        self.0.add(&other.0)?;
        Ok(())
    }
    pub(crate) fn count(&self) -> u64 {
        self.0.len()
    }
}

/// One row of the write table.
struct WriteRow {
    backend: String,
    writers: usize,
    ops: u64,
    per_sec: f64,
    p50: f64,
    p99: f64,
}

async fn store_bench(args: StoreBench) -> Result<()> {
    let mut _etcd_server = None;
    let mut endpoints = args.etcd_endpoints.clone();
    if endpoints.is_empty() && args.backends.contains(&Backend::Etcd) {
        progress("starting a private etcd");
        let server =
            dao_store::testing::EtcdServer::start().context("start etcd (install etcd-server)")?;
        endpoints.push(server.endpoint());
        _etcd_server = Some(server);
    }
    let value = Bytes::from(vec![b'v'; args.value_bytes]);
    let mut writes = Vec::new();
    let mut lists = Vec::new();
    let mut watches = Vec::new();
    let mut fanouts = Vec::new();
    let dir = tempfile::tempdir()?;

    for backend in &args.backends {
        let store: Arc<dyn Store> = match backend {
            Backend::Sqlite => Arc::new(dao_store::SqliteStore::open(
                dao_store::SqliteConfig::new(dir.path().join("bench.db")),
            )?),
            Backend::Etcd => Arc::new(
                dao_store::EtcdStore::connect(dao_store::EtcdConfig::new(endpoints.clone()))
                    .await?,
            ),
        };
        let name = store.backend().to_owned();
        for &w in &args.writers {
            progress(&format!("{name}: {w} writers for {}s", args.seconds));
            let row = write_run(&name, w, args.seconds, |key| {
                let store = store.clone();
                let value = value.clone();
                async move {
                    store.put(&key, value, Expect::Absent).await?;
                    Ok(())
                }
            })
            .await?;
            writes.push(row);
        }
        if *backend == Backend::Etcd {
            let client = etcd_client::Client::connect(&endpoints, None).await?;
            for &w in &args.writers {
                progress(&format!("raw etcd put: {w} writers for {}s", args.seconds));
                let row = write_run("raw etcd-client put", w, args.seconds, |key| {
                    let mut kv = client.kv_client();
                    let value = value.clone();
                    async move {
                        kv.put(format!("/raw{key}"), value.to_vec(), None).await?;
                        Ok(())
                    }
                })
                .await?;
                writes.push(row);
            }
        }
        progress(&format!("{name}: LIST of {} keys", args.list_keys));
        lists.push(list_run(&*store, args.list_keys, &value).await?);
        progress(&format!("{name}: watch delivery latency"));
        watches.push(watch_latency(&*store, 1, 2000).await?);
        progress(&format!("{name}: fan-out to {} watchers", args.watchers));
        fanouts.push(watch_latency(&*store, args.watchers, 200).await?);
    }

    println!(
        "### Writes (creates of {}-byte values, {}s per run)\n",
        args.value_bytes, args.seconds
    );
    println!("| backend | writers | writes | writes/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &writes {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} |",
            r.backend, r.writers, r.ops, r.per_sec, r.p50, r.p99
        );
    }
    let rate = |backend: &str, w: usize| {
        writes
            .iter()
            .find(|r| r.backend == backend && r.writers == w)
            .map(|r| r.per_sec)
    };
    if let (Some(sqlite), Some(raw)) = (rate("sqlite", 64), rate("raw etcd-client put", 64)) {
        println!(
            "\nsqlite at 64 writers / raw etcd put at 64 writers: **{:.1}x**",
            sqlite / raw
        );
    }
    println!("\n### LIST ({} keys, median of 5)\n", args.list_keys);
    println!("| backend | median ms | max ms |");
    println!("|---|---:|---:|");
    for (name, median, max) in &lists {
        println!("| {name} | {median:.1} | {max:.1} |");
    }
    println!("\n### Watch delivery (write start to event received)\n");
    println!("| backend | watchers | events each | p50 ms | p99 ms | max ms | RSS per watcher |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for w in watches.iter().chain(&fanouts) {
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} |",
            w.backend,
            w.watchers,
            w.events,
            w.p50,
            w.p99,
            w.max,
            if w.watchers > 1 {
                format!("{:.1} KiB", w.rss_per_watcher_kib)
            } else {
                "-".into()
            }
        );
    }
    Ok(())
}

/// Run `writers` tasks for `seconds`, each calling `op` with fresh keys back to back.
async fn write_run<F, Fut>(backend: &str, writers: usize, seconds: f64, op: F) -> Result<WriteRow>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let prefix = format!("/bench/{run_id}/{w}/");
        let op = &op;
        tasks.push(async move {
            let mut lat = Latencies::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                op(format!("{prefix}{i:09}")).await?;
                lat.record(t.elapsed());
                i += 1;
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let results = futures::future::join_all(tasks).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = Latencies::new();
    for r in results {
        all.add(&r?)?;
    }
    let ops = all.count();
    Ok(WriteRow {
        backend: backend.to_owned(),
        writers,
        ops,
        per_sec: ops as f64 / elapsed,
        p50: all.ms(0.5),
        p99: all.ms(0.99),
    })
}

async fn list_run(store: &dyn Store, keys: usize, value: &Bytes) -> Result<(String, f64, f64)> {
    const WRITERS: usize = 64;
    let fill = |w: usize| async move {
        for i in (w..keys).step_by(WRITERS) {
            store
                .put(&format!("/list/{i:07}"), value.clone(), Expect::Any)
                .await?;
        }
        Ok::<_, dao_store::Error>(())
    };
    for r in futures::future::join_all((0..WRITERS).map(fill)).await {
        r?;
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let result = store.range(RangeRequest::prefix("/list/")).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            result.kvs.len() == keys,
            "LIST returned {} of {keys} keys",
            result.kvs.len()
        );
    }
    times.sort_by(f64::total_cmp);
    Ok((store.backend().to_owned(), times[2], times[4]))
}

struct WatchRow {
    backend: String,
    watchers: usize,
    events: usize,
    p50: f64,
    p99: f64,
    max: f64,
    rss_per_watcher_kib: f64,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

/// `watchers` watchers on one prefix; one writer writes `events` values one after another,
/// spaced so that the system is not saturated; the latency of each event at each watcher
/// runs from just before its write started to its arrival.
async fn watch_latency(store: &dyn Store, watchers: usize, events: usize) -> Result<WatchRow> {
    let prefix = format!("/watch/{watchers}/");
    let start = store.current_revision().await?;
    let rss_before = rss_kib();
    let mut streams = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        streams.push(
            store
                .watch(WatchRequest::prefix(prefix.clone(), start))
                .await?,
        );
    }
    // Let the watchers settle (etcd confirms each with a "created" response).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib();
    let sent: Arc<std::sync::Mutex<std::collections::HashMap<i64, Instant>>> = Default::default();
    let receivers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut arrivals = Vec::with_capacity(events);
                while arrivals.len() < events {
                    match tokio::time::timeout(Duration::from_secs(60), s.next()).await {
                        Ok(Some(Ok(WatchMessage::Events(batch)))) => {
                            let now = Instant::now();
                            arrivals.extend(batch.iter().map(|e| (e.kv.mod_revision, now)));
                        }
                        Ok(Some(Ok(WatchMessage::Progress(_)))) => {}
                        other => anyhow::bail!("watch ended early: {other:?}"),
                    }
                }
                drop(sent);
                // Hand the stream back so it is still alive when memory is measured.
                Ok((arrivals, s))
            })
        })
        .collect();
    for i in 0..events {
        let t = Instant::now();
        let key = format!("{prefix}{}", i % 16);
        // The revision is known only after the write; record the start under it then.
        let out = store
            .put(&key, Bytes::from(i.to_string()), Expect::Any)
            .await?;
        if let dao_store::Outcome::Applied { revision, .. } = out {
            sent.lock().unwrap().insert(revision, t);
        }
        if watchers > 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut lat = Latencies::new();
    let mut alive = Vec::with_capacity(watchers);
    for r in receivers {
        let (arrivals, stream) = r.await??;
        alive.push(stream);
        for (rev, arrived) in arrivals {
            let started = *sent
                .lock()
                .unwrap()
                .get(&rev)
                .context("event for an unknown write")?;
            lat.record(arrived.saturating_duration_since(started));
        }
    }
    // Memory with every watcher open and past a burst of events.
    let rss_after = rss_kib().max(rss_after);
    drop(alive);
    Ok(WatchRow {
        backend: store.backend().to_owned(),
        watchers,
        events,
        p50: lat.ms(0.5),
        p99: lat.ms(0.99),
        max: lat.ms(1.0),
        rss_per_watcher_kib: rss_after.saturating_sub(rss_before) as f64 / watchers.max(1) as f64,
    })
}
