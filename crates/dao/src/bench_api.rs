//! `dao bench api`: the API server measured from outside, as a separate `dao server` process
//! driven by kube-rs clients (the same client library as the upstream yardstick).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::bench::Latencies;

#[derive(clap::Args, Clone, Debug)]
pub struct ApiBench {
    /// Concurrent client counts for the create runs.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,
    /// Seconds each create run lasts.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Object counts for the LIST measurements.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub list_sizes: Vec<usize>,
    /// Watchers for the fan-out measurement.
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Starts measured for start-to-ready.
    #[arg(long, default_value_t = 5)]
    pub starts: usize,
    /// ConfigMaps created on a fresh server before its memory is read (the upstream
    /// yardstick's 13k objects); 0 skips it.
    #[arg(long, default_value_t = 13_000)]
    pub memory_objects: usize,
    /// Who the create runs authenticate as: `admin` (the admin client certificate, in
    /// `system:masters`, which skips RBAC) and `service-account` (a service account token
    /// bound to ClusterRole `edit` in the namespace: token authentication and RBAC on every
    /// request, as for a workload or a controller run out of process).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "admin,service-account"
    )]
    pub identities: Vec<Identity>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    Admin,
    ServiceAccount,
}

impl Identity {
    fn name(self) -> &'static str {
        match self {
            Identity::Admin => "admin",
            Identity::ServiceAccount => "service account",
        }
    }
}

fn progress(msg: &str) {
    eprintln!("[bench api] {msg}");
}

pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) kubeconfig: PathBuf,
}

impl ServerProcess {
    /// Start `dao server` on a fresh data directory; return it with the time from spawn to
    /// the first `ok` from `/readyz`.
    pub(crate) async fn start(data_dir: &Path) -> Result<(ServerProcess, Duration)> {
        let kubeconfig = data_dir.join("admin.kubeconfig");
        let started = Instant::now();
        let child = Command::new(std::env::current_exe()?)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("DAO_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let server = ServerProcess { child, kubeconfig };
        loop {
            if server.kubeconfig.exists()
                && let Ok(client) = server.client().await
            {
                let req = http::Request::get("/readyz").body(Vec::new())?;
                if let Ok(body) = client.request_text(req).await
                    && body == "ok"
                {
                    return Ok((server, started.elapsed()));
                }
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "dao server not ready in 30s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub(crate) async fn client(&self) -> Result<Client> {
        Ok(Client::try_from(self.config().await?)?)
    }

    /// The admin kubeconfig as a kube-rs `Config`.
    pub(crate) async fn config(&self) -> Result<Config> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (current RSS, peak RSS) in KiB.
    pub(crate) fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// CPU time (user and system) a process has used so far, in seconds, from `/proc/PID/stat`;
/// 0 when it cannot be read.
pub(crate) fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces, so split after its ')'):
    // state is field 3, utime and stime are fields 14 and 15, in clock ticks.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    match (ticks(14), ticks(15)) {
        // USER_HZ is 100 on every Linux architecture Dao builds for.
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => 0.0,
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn configmap(name: String, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("payload".to_owned(), value.to_owned())])),
        ..Default::default()
    }
}

async fn namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

/// A kube-rs `Config` that authenticates as service account `bench` in `ns`, which a
/// RoleBinding gives ClusterRole `edit` there: created through `admin`, token from the
/// TokenRequest API.
async fn service_account_config(admin: &Client, base: &Config, ns: &str) -> Result<Config> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("bench".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    sas.create(&PostParams::default(), &sa).await?;
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("bench-edit".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "edit".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "bench".into(),
            namespace: Some(ns.into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = sas
        .create_token_request("bench", &PostParams::default(), &request)
        .await?
        .status
        .context("TokenRequest answered without a status")?
        .token;
    let mut config = base.clone();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    Ok(config)
}

/// Create ConfigMaps from `clients` clients (each its own kube::Client and connections, all
/// with `config`) for `seconds`; returns (creates, creates/s, latencies).
async fn create_run(
    config: &Config,
    ns: &str,
    clients: usize,
    seconds: f64,
    value: &str,
) -> Result<(u64, f64, Latencies)> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let api: Api<ConfigMap> = Api::namespaced(Client::try_from(config.clone())?, ns);
        let value = value.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Latencies::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                api.create(
                    &PostParams::default(),
                    &configmap(format!("c{clients}-{c}-{i}"), &value),
                )
                .await?;
                lat.record(t.elapsed());
                i += 1;
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Latencies::new();
    for t in tasks {
        all.add(&t.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((all.count(), all.count() as f64 / elapsed, all))
}

/// Fill `ns` with `n` ConfigMaps from 64 clients.
async fn fill(server: &ServerProcess, ns: &str, n: usize, value: &str) -> Result<()> {
    const CLIENTS: usize = 64;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let api: Api<ConfigMap> = Api::namespaced(server.client().await?, ns);
        let value = value.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in (c..n).step_by(CLIENTS) {
                api.create(
                    &PostParams::default(),
                    &configmap(format!("cm-{i:06}"), &value),
                )
                .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

pub async fn run(args: ApiBench) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let value = "v".repeat(512);

    // Start to ready, on fresh data directories.
    let mut starts = Vec::new();
    for i in 0..args.starts {
        let (server, ready) = ServerProcess::start(&dir.path().join(format!("start-{i}"))).await?;
        starts.push(ready.as_secs_f64() * 1000.0);
        drop(server);
    }
    starts.sort_by(f64::total_cmp);
    progress(&format!("start to ready: {starts:?} ms"));

    // Memory with the yardstick's object count, like for like: a fresh server, 512-byte
    // ConfigMaps created through kube-rs, RSS a second after the last create.
    let mut memory = None;
    if args.memory_objects > 0 {
        let (server, _) = ServerProcess::start(&dir.path().join("memory")).await?;
        let client = server.client().await?;
        namespace(&client, "memory").await?;
        progress(&format!(
            "memory: filling a fresh server with {} ConfigMaps",
            args.memory_objects
        ));
        fill(&server, "memory", args.memory_objects, &value).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        memory = Some(server.memory_kib());
    }

    let (server, _) = ServerProcess::start(&dir.path().join("main")).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_rss, _) = server.memory_kib();
    let admin_config = server.config().await?;
    let client = Client::try_from(admin_config.clone())?;

    let mut rows = Vec::new();
    for &c in &args.clients {
        for &identity in &args.identities {
            let ns = match identity {
                Identity::Admin => format!("create-{c}"),
                Identity::ServiceAccount => format!("create-sa-{c}"),
            };
            namespace(&client, &ns).await?;
            let config = match identity {
                Identity::Admin => admin_config.clone(),
                Identity::ServiceAccount => {
                    service_account_config(&client, &admin_config, &ns).await?
                }
            };
            progress(&format!(
                "{c} clients creating for {}s as {}",
                args.seconds,
                identity.name()
            ));
            let (n, rate, lat) = create_run(&config, &ns, c, args.seconds, &value).await?;
            rows.push((identity, c, n, rate, lat.ms(0.5), lat.ms(0.99)));
        }
    }

    let mut lists = Vec::new();
    for &size in &args.list_sizes {
        let ns = format!("list-{size}");
        namespace(&client, &ns).await?;
        progress(&format!("filling {ns} with {size} ConfigMaps"));
        fill(&server, &ns, size, &value).await?;
        // What `Api::<ConfigMap>::list` does (kube's `Client::request`: the whole body as
        // text, then serde_json), in its two steps, so the table can say where the time goes.
        let mut times = Vec::new();
        let mut received = Vec::new();
        for _ in 0..3 {
            let request = kube::core::Request::new(format!("/api/v1/namespaces/{ns}/configmaps"))
                .list(&ListParams::default())?;
            let t = Instant::now();
            let text = client.request_text(request).await?;
            received.push(t.elapsed().as_secs_f64() * 1000.0);
            let list: kube::core::ObjectList<ConfigMap> =
                serde_json::from_str(&text).context("decoding the LIST")?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            // The namespace also holds the controllers' `kube-root-ca.crt`.
            let filled = list
                .items
                .iter()
                .filter(|cm| cm.metadata.name.as_deref() != Some("kube-root-ca.crt"))
                .count();
            anyhow::ensure!(filled == size, "LIST returned {filled} of {size}");
        }
        times.sort_by(f64::total_cmp);
        received.sort_by(f64::total_cmp);
        let (rss, peak) = server.memory_kib();
        lists.push((size, times[1], received[1], rss, peak));
    }

    progress(&format!("watch fan-out to {} watchers", args.watchers));
    namespace(&client, "fan").await?;
    let fan = watch_fan_out(&server, args.watchers, 20).await?;
    let (rss_end, peak_end) = server.memory_kib();

    println!(
        "### API server (`dao bench api`): separate `dao server` process, SQLite store, kube-rs clients\n"
    );
    println!(
        "Start to `/readyz` ok (fresh data directory, {} starts): median {:.1} ms, max {:.1} ms.  ",
        starts.len(),
        starts[starts.len() / 2],
        starts[starts.len() - 1]
    );
    println!(
        "Idle RSS after start: {:.1} MiB.\n",
        idle_rss as f64 / 1024.0
    );
    println!("| identity | clients | creates | creates/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (identity, c, n, rate, p50, p99) in &rows {
        println!(
            "| {} | {c} | {n} | {rate:.0} | {p50:.2} | {p99:.2} |",
            identity.name()
        );
    }
    println!(
        "\n| LIST of ConfigMaps (512 B) | median ms (of 3), decoded | of which body received | server RSS after | server peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for (size, ms, received, rss, peak) in &lists {
        println!(
            "| {size} | {ms:.1} | {received:.1} | {:.1} MiB | {:.1} MiB |",
            *rss as f64 / 1024.0,
            *peak as f64 / 1024.0
        );
    }
    if let Some((rss, peak)) = memory {
        println!(
            "\nMemory after {} ConfigMaps (512 B) created on a fresh server: RSS {:.1} MiB, peak {:.1} MiB.",
            args.memory_objects,
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
    println!(
        "\nWatch fan-out: {} watchers, {} writes; time from a write's start until every watcher has its event: median {:.1} ms, max {:.1} ms; per-event delivery p99 {:.1} ms.",
        args.watchers, fan.writes, fan.all_median_ms, fan.all_max_ms, fan.each_p99_ms
    );
    println!(
        "Server RSS at the end: {:.1} MiB (peak {:.1} MiB).",
        rss_end as f64 / 1024.0,
        peak_end as f64 / 1024.0
    );
    Ok(())
}

struct FanOut {
    writes: usize,
    all_median_ms: f64,
    all_max_ms: f64,
    each_p99_ms: f64,
}

async fn watch_fan_out(server: &ServerProcess, watchers: usize, writes: usize) -> Result<FanOut> {
    // Watchers share a few clients (HTTP/2 streams or pooled connections, as kube-rs decides).
    let clients: Vec<Client> = {
        let mut v = Vec::new();
        for _ in 0..8 {
            v.push(server.client().await?);
        }
        v
    };
    let writer: Api<ConfigMap> = Api::namespaced(clients[0].clone(), "fan");
    let rv = writer
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .context("list resourceVersion")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut tasks = Vec::with_capacity(watchers);
    for w in 0..watchers {
        let api: Api<ConfigMap> = Api::namespaced(clients[w % clients.len()].clone(), "fan");
        let mut stream = api
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?
            .boxed();
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                if let WatchEvent::Added(cm) = event {
                    let _ = tx.send((cm.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut all_times = Vec::new();
    let mut each = Latencies::new();
    for i in 0..writes {
        let name = format!("fan-{i}");
        let t = Instant::now();
        writer
            .create(&PostParams::default(), &configmap(name.clone(), "x"))
            .await?;
        let mut got = 0;
        let mut last = t;
        while got < watchers {
            let (n, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .context("watchers did not all receive the event in 30s")?
                .context("watchers ended")?;
            anyhow::ensure!(n == name, "event {n} arrived while waiting for {name}");
            each.record(at.duration_since(t));
            last = last.max(at);
            got += 1;
        }
        all_times.push(last.duration_since(t).as_secs_f64() * 1000.0);
    }
    for t in tasks {
        t.abort();
    }
    all_times.sort_by(f64::total_cmp);
    Ok(FanOut {
        writes,
        all_median_ms: all_times[all_times.len() / 2],
        all_max_ms: all_times[all_times.len() - 1],
        each_p99_ms: each.ms(0.99),
    })
}
