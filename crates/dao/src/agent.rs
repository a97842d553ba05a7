//! `dao agent`: command-line wiring of the node agent (`dao-agent`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use dao_agent::simulated::{SimConfig, TaintSpec};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Kubeconfig of the cluster to join (any user allowed to write nodes, leases and pods).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Play N simulated nodes instead of running containers.
    #[arg(long, value_name = "N")]
    simulate: usize,
    /// Simulated nodes are named PREFIX-INDEX.
    #[arg(long, default_value = "sim")]
    name_prefix: String,
    /// Index of the first node, so several agents can share a prefix.
    #[arg(long, default_value_t = 0)]
    first_index: usize,
    /// Each node's cpu capacity.
    #[arg(long, default_value = "32")]
    cpu: String,
    /// Each node's memory capacity.
    #[arg(long, default_value = "256Gi")]
    memory: String,
    /// Each node's pod capacity.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Extra node labels, KEY=VALUE, comma separated.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Node taints, KEY[=VALUE]:EFFECT, comma separated.
    #[arg(long, value_delimiter = ',')]
    taints: Vec<TaintSpec>,
    /// Seconds between lease renewals (upstream's kubelet: 10).
    #[arg(long, default_value_t = 10.0)]
    lease_renew_seconds: f64,
    /// Seconds a pod stays ContainerCreating before it runs.
    #[arg(long, default_value_t = 0.0)]
    pod_start_seconds: f64,
    /// Seconds a Job's pod runs before it succeeds.
    #[arg(long, default_value_t = 5.0)]
    job_run_seconds: f64,
    /// Seconds a deleted pod takes to stop (capped by its grace period).
    #[arg(long, default_value_t = 0.0)]
    pod_stop_seconds: f64,
    /// Concurrent writes to the API server.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

pub async fn run(args: AgentArgs) -> Result<()> {
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("label {l:?}: want KEY=VALUE"))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    let cfg = SimConfig {
        nodes: args.simulate,
        name_prefix: args.name_prefix,
        first_index: args.first_index,
        cpu: args.cpu,
        memory: args.memory,
        pods: args.max_pods,
        labels,
        taints: args.taints,
        lease_renew_interval: seconds(args.lease_renew_seconds),
        pod_start_delay: seconds(args.pod_start_seconds),
        job_run_time: seconds(args.job_run_seconds),
        pod_stop_time: seconds(args.pod_stop_seconds),
        concurrency: args.concurrency,
        ..SimConfig::default()
    };
    let client =
        crate::client_from_kubeconfig(&args.kubeconfig, crate::user_agent!("dao-agent")).await?;
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
    };
    dao_agent::simulated::run(client, cfg, shutdown).await?;
    Ok(())
}
