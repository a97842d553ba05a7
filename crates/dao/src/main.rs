//! `dao`: one binary for every Dao component.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

mod agent;
mod bench;
mod bench_api;
mod bench_scheduler;
mod debug;

/// mimalloc instead of glibc's malloc: the server spends a fifth of its time allocating and
/// freeing the many small strings and maps of JSON objects, and glibc's consolidation and
/// chunk unlinking showed up as hot spots of their own (BENCHMARKS.md, session 5). Built
/// without transparent huge pages (`no_thp`): with them an idle server held 44 MiB, without
/// them 32 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The User-Agent of `component`'s requests, e.g. `dao-agent/v0.1.0`: the server names the
/// writer in managedFields after it, as upstream's kubelet writes as `kubelet`.
macro_rules! user_agent {
    ($component:literal) => {
        concat!($component, "/v", env!("CARGO_PKG_VERSION"))
    };
}
pub(crate) use user_agent;

#[derive(Parser)]
#[command(
    name = "dao",
    version,
    about = "Dao: a Kubernetes-compatible container platform in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Kubernetes API. Creates a CA, certificates and DIR/admin.kubeconfig on first
    /// start; later starts reuse them.
    Server {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on; port 0 picks a free port (written into the kubeconfig).
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        controllers: ControllerArgs,
        /// Serve the API only: no in-process controllers.
        #[arg(long)]
        no_controllers: bool,
        /// No in-process scheduler.
        #[arg(long)]
        no_scheduler: bool,
    },
    /// Run the scheduler against any API server (only the holder of the
    /// kube-system/dao-scheduler Lease works).
    Scheduler {
        /// Kubeconfig of the cluster to schedule for.
        #[arg(long)]
        kubeconfig: PathBuf,
    },
    /// Run the controllers against any API server (only the holder of the
    /// kube-system/dao-controller-manager Lease works).
    ControllerManager {
        /// Kubeconfig of the cluster to manage.
        #[arg(long)]
        kubeconfig: PathBuf,
        #[command(flatten)]
        controllers: ControllerArgs,
    },
    /// Run a node agent. Today: simulated nodes (`--simulate N`), which register, renew their
    /// leases and play their pods' lifecycle without running containers.
    Agent(agent::AgentArgs),
    /// Measure Dao's components; results are printed as Markdown for BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// Tools for Dao's own tests.
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        what: debug::DebugCommand,
    },
}

/// Which store backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Sqlite,
    Etcd,
}

/// Where a store lives: shared by every subcommand that opens one.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// Storage backend.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: Backend,
    /// Data directory (the SQLite file lives here).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// etcd client URLs, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Seconds to keep retrying an unreachable etcd at start.
    #[arg(long, default_value_t = 60)]
    pub etcd_startup_timeout: u64,
}

/// Settings of the controllers, shared by `dao server` and `dao controller-manager`.
#[derive(clap::Args, Clone, Debug)]
pub struct ControllerArgs {
    /// Pod CIDRs for nodes are cut from this cluster CIDR.
    #[arg(long, default_value = "10.128.0.0/9")]
    cluster_cidr: String,
    /// Prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u32,
    /// Seconds without a lease renewal before a node goes NotReady.
    #[arg(long, default_value_t = 40.0)]
    node_monitor_grace_period: f64,
    /// Finished pods to keep before the oldest are garbage-collected; 0 keeps them all.
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: usize,
    /// Seconds a node that pods are bound to must be missing before its pods are
    /// garbage-collected (the pod GC also looks this often, at most every 20 s).
    #[arg(long, default_value_t = 40.0)]
    orphaned_pod_quarantine: f64,
    /// PEM bundle that verifies the API server, published in every namespace as the
    /// `kube-root-ca.crt` ConfigMap [default: `dao server`'s own CA; for `dao
    /// controller-manager`, the kubeconfig's certificate authority]
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
}

impl ControllerArgs {
    /// The controllers' settings; `ca` is the root CA bundle to publish when no
    /// `--root-ca-file` is given.
    fn config(&self, ca: Option<String>) -> Result<dao_controllers::Config> {
        let root_ca = match &self.root_ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
            ),
            None => ca,
        };
        Ok(dao_controllers::Config {
            cluster_cidr: Some(self.cluster_cidr.clone()),
            node_cidr_mask: self.node_cidr_mask_size,
            node_monitor_grace_period: std::time::Duration::from_secs_f64(
                self.node_monitor_grace_period.max(1.0),
            ),
            terminated_pod_gc_threshold: self.terminated_pod_gc_threshold,
            pod_gc_period: std::time::Duration::from_secs_f64(
                self.orphaned_pod_quarantine.clamp(1.0, 20.0),
            ),
            orphaned_pod_quarantine: std::time::Duration::from_secs_f64(
                self.orphaned_pod_quarantine.max(0.0),
            ),
            root_ca,
            ..dao_controllers::Config::default()
        })
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Who holds a Lease: host and process, as upstream's `{hostname}_{uuid}` names a holder.
fn leader_identity() -> String {
    format!(
        "{}_{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "dao".into()),
        std::process::id()
    )
}

/// Runs the controllers behind the controller-manager Lease until `stop`, then releases it.
async fn run_controllers(
    client: kube::Client,
    config: dao_controllers::Config,
    stop: impl std::future::Future<Output = ()>,
) {
    dao_controllers::leader::Election::new("dao-controller-manager", &leader_identity())
        .run(
            client.clone(),
            move || dao_controllers::run(client.clone(), config.clone()),
            stop,
        )
        .await;
}

/// Runs the scheduler behind the scheduler Lease until `stop`, then releases it.
async fn run_scheduler(client: kube::Client, stop: impl std::future::Future<Output = ()>) {
    dao_controllers::leader::Election::new("dao-scheduler", &leader_identity())
        .run(
            client.clone(),
            move || {
                dao_scheduler::run::run(client.clone(), dao_scheduler::run::RunConfig::default())
            },
            stop,
        )
        .await;
}

impl StoreArgs {
    pub async fn open(&self) -> Result<std::sync::Arc<dyn dao_store::Store>> {
        Ok(match self.store {
            Backend::Sqlite => {
                let dir = self
                    .data_dir
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("--data-dir is required with --store sqlite"))?;
                // A server keeps 100,000 revisions of history (etcd under kube-apiserver keeps
                // five minutes): a watcher that falls behind in a burst of writes resumes
                // instead of relisting.
                let config = dao_store::SqliteConfig {
                    retain_revisions: Some(100_000),
                    ..dao_store::SqliteConfig::new(dir.join("dao.db"))
                };
                let store = dao_store::SqliteStore::open(config)?;
                std::sync::Arc::new(store)
            }
            Backend::Etcd => {
                anyhow::ensure!(
                    !self.etcd_endpoints.is_empty(),
                    "--etcd-endpoints is required with --store etcd"
                );
                let store = dao_store::EtcdStore::connect(dao_store::EtcdConfig::new(
                    self.etcd_endpoints.clone(),
                ))
                .await?;
                std::sync::Arc::new(store)
            }
        })
    }
}

async fn server(
    args: StoreArgs,
    listen: std::net::SocketAddr,
    controllers: ControllerArgs,
    no_controllers: bool,
    no_scheduler: bool,
) -> Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--data-dir is required"))?;
    std::fs::create_dir_all(&data_dir)?;
    let store = args.open().await?;
    let pki = data_dir.join("pki");
    let server = dao_apiserver::start(dao_apiserver::ServerConfig {
        data_dir,
        listen,
        store,
    })
    .await?;
    let mut background = tokio::task::JoinSet::new();
    // Told to stop at shutdown, the components release their Leases, so a server started
    // next on this store runs them at once instead of waiting for the Leases to expire.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let stop = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    };
    // In-process components reach the API without TLS and sockets (the same router and
    // handlers); `dao scheduler` and `dao controller-manager` connect through the listener.
    if !no_controllers {
        let client = server.local_client(
            "system:kube-controller-manager",
            user_agent!("dao-controller-manager"),
        );
        let ca = std::fs::read_to_string(pki.join("ca.crt"))?;
        let config = controllers.config(Some(ca))?;
        background.spawn(run_controllers(client, config, stop()));
    }
    if !no_scheduler {
        let client = server.local_client("system:kube-scheduler", user_agent!("dao-scheduler"));
        background.spawn(run_scheduler(client, stop()));
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(());
    let stopped = async { while background.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(3), stopped)
        .await
        .is_err()
    {
        tracing::warn!("components did not stop within 3 s; aborting them");
    }
    background.abort_all();
    server.shutdown().await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DAO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server {
                store,
                listen,
                controllers,
                no_controllers,
                no_scheduler,
            } => server(store, listen, controllers, no_controllers, no_scheduler).await,
            Command::Scheduler { kubeconfig } => {
                let client =
                    client_from_kubeconfig(&kubeconfig, user_agent!("dao-scheduler")).await?;
                run_scheduler(client, shutdown_signal()).await;
                Ok(())
            }
            Command::ControllerManager {
                kubeconfig,
                controllers,
            } => {
                let client =
                    client_from_kubeconfig(&kubeconfig, user_agent!("dao-controller-manager"))
                        .await?;
                let config = controllers.config(kubeconfig_ca(&kubeconfig))?;
                run_controllers(client, config, shutdown_signal()).await;
                Ok(())
            }
            Command::Agent(args) => agent::run(args).await,
            Command::Bench { what } => bench::run(what).await,
            Command::Debug { what } => debug::run(what).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The PEM bundle of the certificate authority that a kubeconfig's current cluster trusts
/// (inline data or a file), if it names one.
fn kubeconfig_ca(path: &std::path::Path) -> Option<String> {
    use base64::Engine;
    let kubeconfig = kube::config::Kubeconfig::read_from(path).ok()?;
    let context = kubeconfig.current_context.as_deref()?;
    let cluster = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?
        .cluster
        .clone();
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster)?
        .cluster
        .as_ref()?;
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()?;
        return String::from_utf8(pem).ok();
    }
    std::fs::read_to_string(cluster.certificate_authority.as_deref()?).ok()
}

/// A kube-rs client for the cluster a kubeconfig names (its current context), sending
/// `user_agent` (kube-rs sends none of its own, and the server would record an empty manager).
pub async fn client_from_kubeconfig(
    path: &std::path::Path,
    user_agent: &'static str,
) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let mut config = config;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(user_agent),
    ));
    Ok(kube::Client::try_from(config)?)
}
