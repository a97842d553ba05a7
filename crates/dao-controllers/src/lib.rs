//! Dao's controllers: reconcilers that keep workloads in their desired state, talking to the
//! API like any client (list/watch through shared informers, writes through kube-rs).
//!
//! `run` starts one informer per kind and every controller on top of them; `dao server` runs it
//! in-process (behind a Lease), `dao controller-manager` runs it against any API server.

pub mod clusterrole_aggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod informer;
pub mod job;
pub mod leader;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod queue;
pub mod replicaset;
pub mod rootca;
pub mod serviceaccount;
pub mod statefulset;
pub mod util;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, PersistentVolumeClaim, Service};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ReplicationController, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;

use crate::informer::Informer;

/// Settings of the controller manager.
#[derive(Debug, Clone)]
pub struct Config {
    /// Pod CIDRs for nodes are cut from this (`None`: no node IPAM).
    pub cluster_cidr: Option<String>,
    pub node_cidr_mask: u32,
    /// A node whose lease is older than this goes NotReady (upstream: 40 s).
    pub node_monitor_grace_period: Duration,
    /// Workers per busy controller.
    pub workers: usize,
    /// Finished pods kept before the pod garbage collector deletes the oldest (upstream's
    /// `--terminated-pod-gc-threshold`, 12500); 0 keeps them all.
    pub terminated_pod_gc_threshold: usize,
    /// How often the pod garbage collector looks (upstream: 20 s).
    pub pod_gc_period: Duration,
    /// How long a node that pods are bound to must be missing from the cache before the pod
    /// garbage collector asks the API whether it is gone (upstream: 40 s).
    pub orphaned_pod_quarantine: Duration,
    /// The PEM bundle that verifies the API server, published in every namespace as the
    /// `kube-root-ca.crt` ConfigMap (`None`: not published; upstream's `--root-ca-file`).
    pub root_ca: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster_cidr: Some("10.128.0.0/9".into()),
            node_cidr_mask: 24,
            node_monitor_grace_period: Duration::from_secs(40),
            workers: 4,
            terminated_pod_gc_threshold: 12500,
            pod_gc_period: Duration::from_secs(20),
            orphaned_pod_quarantine: Duration::from_secs(40),
            root_ca: None,
        }
    }
}

/// Runs every controller until the future is dropped.
pub async fn run(client: Client, config: Config) {
    let pods = Informer::<Pod>::new();
    let replicasets = Informer::<ReplicaSet>::new();
    let deployments = Informer::<Deployment>::new();
    let nodes = Informer::<Node>::new();
    let namespaces = Informer::<Namespace>::new();
    let accounts = Informer::<ServiceAccount>::new();
    let node_leases = Informer::<Lease>::new();
    let jobs = Informer::<Job>::new();
    let cronjobs = Informer::<CronJob>::new();

    let rs =
        replicaset::ReplicaSetController::new(client.clone(), replicasets.clone(), pods.clone());
    let deploy = deployment::DeploymentController::new(
        client.clone(),
        deployments.clone(),
        replicasets.clone(),
    );
    let sa = serviceaccount::ServiceAccountController::new(
        client.clone(),
        namespaces.clone(),
        accounts.clone(),
    );
    let lifecycle = nodelifecycle::NodeLifecycleController::new(
        client.clone(),
        nodes.clone(),
        node_leases.clone(),
        pods.clone(),
        config.node_monitor_grace_period,
    );
    let job = job::JobController::new(client.clone(), jobs.clone(), pods.clone());
    let cronjob = cronjob::CronJobController::new(client.clone(), cronjobs.clone(), jobs.clone());
    let daemonsets = Informer::<DaemonSet>::new();
    let statefulsets = Informer::<StatefulSet>::new();
    let revisions = Informer::<ControllerRevision>::new();
    let claims = Informer::<PersistentVolumeClaim>::new();
    let services = Informer::<Service>::new();
    let endpoints = Informer::<Endpoints>::new();
    let endpointslices = Informer::<EndpointSlice>::new();
    let ds = daemonset::DaemonSetController::new(
        client.clone(),
        daemonsets.clone(),
        nodes.clone(),
        pods.clone(),
        revisions.clone(),
    );
    let sts = statefulset::StatefulSetController::new(
        client.clone(),
        statefulsets.clone(),
        pods.clone(),
        revisions.clone(),
        claims.clone(),
    );
    let eps = endpoints::EndpointsController::new(
        client.clone(),
        services.clone(),
        pods.clone(),
        endpoints.clone(),
        endpointslices.clone(),
        nodes.clone(),
    );
    let gc = gc::GarbageCollector::new(client.clone());
    gc.owner(&daemonsets);
    gc.owner(&statefulsets);
    gc.owner(&services);
    gc.dependent(&revisions);
    gc.dependent(&claims);
    gc.dependent(&endpointslices);
    gc.dependent(&jobs);
    gc.owner(&jobs);
    gc.owner(&cronjobs);
    gc.dependent(&pods);
    gc.dependent(&replicasets);
    gc.dependent(&node_leases);
    gc.owner(&deployments);
    gc.owner(&replicasets);
    gc.owner(&nodes);
    // Kinds that own nothing here still get a foregroundDeletion finalizer when their owner
    // is deleted in the foreground; as owners without dependents, they lose it at once.
    gc.owner(&pods);
    gc.owner(&revisions);
    gc.owner(&claims);
    gc.owner(&endpointslices);
    gc.owner(&node_leases);
    let pdbs = Informer::<PodDisruptionBudget>::new();
    let rcs = Informer::<ReplicationController>::new();
    let disruption = disruption::DisruptionController::new(
        client.clone(),
        pdbs.clone(),
        pods.clone(),
        replicasets.clone(),
        deployments.clone(),
        statefulsets.clone(),
        rcs.clone(),
    );
    let podgc = podgc::PodGcController::new(
        client.clone(),
        pods.clone(),
        nodes.clone(),
        config.terminated_pod_gc_threshold,
        config.pod_gc_period,
        config.orphaned_pod_quarantine,
    );
    let ipam = config
        .cluster_cidr
        .as_deref()
        .and_then(|c| nodeipam::ClusterCidr::parse(c, config.node_cidr_mask))
        .map(|c| nodeipam::NodeIpamController::new(client.clone(), nodes.clone(), c));

    let mut tasks = tokio::task::JoinSet::new();
    if let Some(ca) = config.root_ca.clone() {
        let configmaps = Informer::<k8s_openapi::api::core::v1::ConfigMap>::new();
        let publisher = rootca::RootCaPublisher::new(
            client.clone(),
            namespaces.clone(),
            configmaps.clone(),
            ca,
        );
        tasks.spawn(configmaps.run(
            Api::all(client.clone()),
            watcher::Config::default().fields(&rootca::RootCaPublisher::selector()),
        ));
        tasks.spawn(publisher.run());
    }
    tasks.spawn(
        pods.clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        replicasets
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        deployments
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        nodes
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        namespaces
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        accounts
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(node_leases.clone().run(
        Api::namespaced(client.clone(), "kube-node-lease"),
        watcher::Config::default(),
    ));
    tasks.spawn(
        jobs.clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        cronjobs
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    let clusterroles = Informer::<ClusterRole>::new();
    let aggregation = clusterrole_aggregation::ClusterRoleAggregationController::new(
        client.clone(),
        clusterroles.clone(),
    );
    tasks.spawn(
        clusterroles
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(aggregation.run());
    tasks.spawn(job.run(config.workers));
    tasks.spawn(cronjob.run(config.workers));
    tasks.spawn(rs.run(config.workers));
    tasks.spawn(deploy.run(config.workers));
    tasks.spawn(sa.run());
    tasks.spawn(lifecycle.run());
    tasks.spawn(
        daemonsets
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        statefulsets
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        revisions
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        claims
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        services
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        endpoints
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        endpointslices
            .clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(ds.run(config.workers));
    tasks.spawn(sts.run(config.workers));
    tasks.spawn(eps.run(config.workers));
    tasks.spawn(gc.run(config.workers));
    tasks.spawn(
        pdbs.clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(
        rcs.clone()
            .run(Api::all(client.clone()), watcher::Config::default()),
    );
    tasks.spawn(disruption.run(config.workers));
    tasks.spawn(podgc.run());
    if let Some(ipam) = ipam {
        tasks.spawn(ipam.run());
    }
    while tasks.join_next().await.is_some() {}
}
