//! `dao bench scheduler`: scheduling decisions per second in-process (the algorithm on a
//! cache of simulated nodes), and end to end (a `dao server` with its scheduler and controllers,
//! a `dao agent --simulate` process, pods created through the API until all are Running).

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use dao_scheduler::selector::Selector;
use dao_scheduler::testing::{self, NodeExt, PodExt};
use dao_scheduler::{Cache, Config, Scheduler, SpreadSelector, SpreaderKind};
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Resource;
use kube::api::{Api, ListParams, PostParams, WatchParams};

use crate::bench::Latencies;
use crate::bench_api::{ServerProcess, cpu_secs};

#[derive(clap::Args, Clone, Debug)]
pub struct SchedulerBench {
    /// Simulated nodes.
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Pods to schedule.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Concurrent API clients creating pods in the end-to-end run.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Skip the end-to-end run.
    #[arg(long)]
    pub in_process_only: bool,
    /// Also measure server memory and `kubectl get pods -A` with this many nodes and pods
    /// (NODES,PODS; 0,0 skips it).
    #[arg(long, value_delimiter = ',', default_value = "1000,30000")]
    pub large: Vec<usize>,
}

fn progress(msg: &str) {
    eprintln!("[bench scheduler] {msg}");
}

/// Pods of the in-process scenarios: `app-{i % 100}` apps of 100 pods each. In `replicaset`
/// each app is a ReplicaSet's, so upstream's default spread constraints apply.
fn pod_for(scenario: &str, i: usize) -> Pod {
    let app = format!("app-{}", i % 100);
    let p = testing::pod("default", &format!("p-{i}"), "100m", "128Mi").label("app", &app);
    match scenario {
        "spread" => p.spread(
            1,
            "topology.kubernetes.io/zone",
            "DoNotSchedule",
            &[("app", &app)],
        ),
        "anti-affinity" => p.required_anti_affinity(testing::affinity_term(
            &[("app", &app)],
            "kubernetes.io/hostname",
        )),
        "replicaset" => p.controlled_by("apps/v1", "ReplicaSet", &app),
        _ => p,
    }
}

fn in_process(scenario: &str, nodes: usize, pods: usize) -> (f64, Latencies, usize) {
    let mut cache = Cache::new();
    for n in 0..nodes {
        let name = format!("sim-{n}");
        let node = testing::node(&name, "32", "256Gi", 110)
            .label("kubernetes.io/hostname", &name)
            .label("topology.kubernetes.io/zone", &format!("zone-{}", n % 10));
        cache.upsert_node(&node);
    }
    if scenario == "replicaset" {
        for app in 0..100 {
            let app = format!("app-{app}");
            let selector = LabelSelector {
                match_labels: Some([("app".to_owned(), app.clone())].into()),
                ..Default::default()
            };
            cache.upsert_spreader(
                SpreaderKind::ReplicaSet,
                "default",
                &app,
                SpreadSelector::Selector(Selector::from_api(Some(&selector))),
            );
        }
    }
    let mut scheduler = Scheduler::new(Config::default());
    let pods: Vec<Pod> = (0..pods).map(|i| pod_for(scenario, i)).collect();
    let mut lat = Latencies::new();
    let mut failed = 0;
    let started = Instant::now();
    for mut pod in pods {
        let t = Instant::now();
        match scheduler.schedule(&cache, &pod) {
            Ok(r) => {
                pod.spec.get_or_insert_default().node_name = Some(r.node);
                cache.add_pod(&pod);
            }
            Err(_) => failed += 1,
        }
        lat.record(t.elapsed());
    }
    let secs = started.elapsed().as_secs_f64();
    (lat.count() as f64 / secs, lat, failed)
}

struct AgentProcess(Child);

impl AgentProcess {
    fn start(kubeconfig: &Path, nodes: usize) -> Result<AgentProcess> {
        let child = Command::new(std::env::current_exe()?)
            .arg("agent")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--simulate", &nodes.to_string()])
            .env("DAO_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(AgentProcess(child))
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body of a create request for one end-to-end pod.
fn bench_pod(name: String) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "scheduler"}},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }))
    .expect("json")
}

struct EndToEnd {
    register_secs: f64,
    /// CPU time per pod, in ms, from the first create until all are Running: the server, the
    /// agent, and this process's creating clients and watcher.
    cpu_ms_per_pod: [f64; 3],
    pods_per_sec: f64,
    create_secs: f64,
    all_running_secs: f64,
    rss_mib: f64,
    get_pods_ms: Option<f64>,
}

/// Watches the bench pods until `pods` of them have been seen Running, then sends the time.
/// The watch is read line by line into just the fields it needs: on two cores, the load
/// generator's CPU is the cluster's loss, and decoding whole pods (managedFields included)
/// three times each was most of this process's share.
async fn count_running(
    client: kube::Client,
    pods: usize,
    done: tokio::sync::mpsc::Sender<Instant>,
) {
    #[derive(serde::Deserialize)]
    struct Line {
        #[serde(rename = "type")]
        kind: String,
        object: Object,
    }
    #[derive(serde::Deserialize)]
    struct Object {
        #[serde(default)]
        metadata: Meta,
        #[serde(default)]
        status: Status,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        #[serde(default)]
        name: String,
        #[serde(default)]
        resource_version: String,
    }
    #[derive(serde::Deserialize, Default)]
    struct Status {
        #[serde(default)]
        phase: String,
    }

    let request = kube::core::Request::new(Pod::url_path(&(), Some("default")));
    let params = WatchParams::default().labels("bench=scheduler");
    let mut running: HashSet<String> = HashSet::new();
    // "0": the current state first, then changes; after a break, resume where it stopped.
    let mut version = "0".to_owned();
    loop {
        let Ok(watch) = request.watch(&params, &version) else {
            return;
        };
        let body = match client.request_stream(watch).await {
            Ok(body) => body,
            Err(e) => {
                progress(&format!("pod watch failed ({e}); retrying"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut lines = body.lines();
        while let Some(Ok(line)) = lines.next().await {
            let event = match serde_json::from_str::<Line>(&line) {
                Ok(event) if event.kind != "ERROR" => event,
                // Too old or not understood: start over from the current state.
                _ => {
                    version = "0".to_owned();
                    break;
                }
            };
            if !event.object.metadata.resource_version.is_empty() {
                version = event.object.metadata.resource_version;
            }
            if event.kind != "DELETED" && event.object.status.phase == "Running" {
                running.insert(event.object.metadata.name);
                if running.len() >= pods {
                    let _ = done.send(Instant::now()).await;
                    return;
                }
            }
        }
    }
}

/// Starts a server and an agent with `nodes`, creates `pods` pods from `clients` clients and
/// waits until every one is Running.
async fn end_to_end(nodes: usize, pods: usize, clients: usize, kubectl: bool) -> Result<EndToEnd> {
    let dir = tempfile::tempdir()?;
    let (server, _) = ServerProcess::start(&dir.path().join("data")).await?;
    let client = server.client().await?;
    progress(&format!("registering {nodes} simulated nodes"));
    let t = Instant::now();
    let agent = AgentProcess::start(&server.kubeconfig, nodes)?;
    let node_api: Api<Node> = Api::all(client.clone());
    loop {
        let count = node_api.list(&ListParams::default()).await?.items.len();
        if count >= nodes {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(300),
            "only {count} of {nodes} nodes registered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let register_secs = t.elapsed().as_secs_f64();
    // Let node IPAM and the scheduler's cache catch up before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Count Running pods through a watch.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Instant>(1);
    let watch = tokio::spawn(count_running(client.clone(), pods, done_tx));
    progress(&format!("creating {pods} pods from {clients} clients"));
    let pids = [server.pid(), agent.0.id(), std::process::id()];
    let cpu_before = pids.map(cpu_secs);
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = server.client().await?;
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            // The load generator posts JSON and reads the answer without decoding it, so
            // that the two cores go to the cluster rather than to the clients' serde.
            let request = kube::core::Request::new(Pod::url_path(&(), Some("default")));
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= pods {
                    return Ok::<(), kube::Error>(());
                }
                let create = request
                    .create(&PostParams::default(), bench_pod(format!("bench-{i}")))
                    .map_err(kube::Error::BuildRequest)?;
                client.request_text(create).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let create_secs = started.elapsed().as_secs_f64();
    progress(&format!(
        "created in {create_secs:.1}s; waiting for all to run"
    ));
    let finished = tokio::time::timeout(Duration::from_secs(600), done_rx.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("pod watch ended"))?;
    watch.abort();
    let all_running_secs = (finished - started).as_secs_f64();
    let cpu_after = pids.map(cpu_secs);
    let cpu_ms_per_pod =
        std::array::from_fn(|i| (cpu_after[i] - cpu_before[i]) * 1000.0 / pods as f64);
    let (rss, _) = server.memory_kib();
    let get_pods_ms = if kubectl {
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let out = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&server.kubeconfig)
                .args(["get", "pods", "-A"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            anyhow::ensure!(out.success(), "kubectl get pods -A failed");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        Some(times[1])
    } else {
        None
    };
    drop(agent);
    Ok(EndToEnd {
        register_secs,
        cpu_ms_per_pod,
        pods_per_sec: pods as f64 / all_running_secs,
        create_secs,
        all_running_secs,
        rss_mib: rss as f64 / 1024.0,
        get_pods_ms,
    })
}

pub async fn run(args: SchedulerBench) -> Result<()> {
    let mut report = format!(
        "### Scheduler (`dao bench scheduler`): {} simulated nodes, {} pods\n\n\
         In-process (the algorithm and its cache, one thread):\n\n\
         | scenario | decisions/s | p50 ms | p99 ms | unschedulable |\n|---|---|---|---|---|\n",
        args.nodes, args.pods
    );
    for scenario in ["basic", "replicaset", "spread", "anti-affinity"] {
        progress(&format!("in-process: {scenario}"));
        let (rate, lat, failed) = in_process(scenario, args.nodes, args.pods);
        report.push_str(&format!(
            "| {scenario} | {rate:.0} | {:.3} | {:.3} | {failed} |\n",
            lat.ms(0.5),
            lat.ms(0.99)
        ));
    }
    if !args.in_process_only {
        let e = end_to_end(args.nodes, args.pods, args.clients, false).await?;
        report.push_str(&format!(
            "\nEnd to end (`dao server` with scheduler and controllers, `dao agent --simulate {}`, \
             {} kube-rs clients creating pods):\n\n\
             | nodes registered in | pods created in | all Running after | pods/s end to end | server RSS \
             | CPU ms per pod: server / agent / clients |\n\
             |---|---|---|---|---|---|\n\
             | {:.1} s | {:.1} s | {:.1} s | {:.0} | {:.0} MiB | {:.2} / {:.2} / {:.2} |\n",
            args.nodes,
            args.clients,
            e.register_secs,
            e.create_secs,
            e.all_running_secs,
            e.pods_per_sec,
            e.rss_mib,
            e.cpu_ms_per_pod[0],
            e.cpu_ms_per_pod[1],
            e.cpu_ms_per_pod[2],
        ));
        if let [nodes, pods] = args.large[..]
            && nodes > 0
            && pods > 0
        {
            let e = end_to_end(nodes, pods, args.clients, true).await?;
            report.push_str(&format!(
                "\nLarge cluster: {nodes} nodes, {pods} pods all Running: server RSS {:.0} MiB, \
                 `kubectl get pods -A` {:.0} ms (median of 3), {:.0} pods/s end to end.\n",
                e.rss_mib,
                e.get_pods_ms.unwrap_or(0.0),
                e.pods_per_sec
            ));
        }
    }
    println!("{report}");
    Ok(())
}
