//! End to end: `dao server` (with its in-process scheduler and controllers) and `dao agent
//! --simulate` nodes, driven by the real kubectl 1.33 and a kube-rs watcher. Needs the kubectl
//! binaries (see kubectl.rs).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use serde_json::Value;

struct Cluster {
    server: support::DaoServer,
    dir: tempfile::TempDir,
    agents: Vec<support::ChildGuard>,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// A server with extra flags.
    fn start_with(extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = vec!["--node-monitor-grace-period".into(), "4".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let server = support::DaoServer::start(&dir.path().join("data"), &args);
        Cluster {
            server,
            dir,
            agents: Vec::new(),
        }
    }

    fn agent(&mut self, args: &[&str]) -> usize {
        let log = self
            .dir
            .path()
            .join(format!("agent-{}.log", self.agents.len()));
        self.agents.push(support::agent(
            &self.server.kubeconfig,
            &log,
            &[&["--lease-renew-seconds", "1"], args].concat(),
        ));
        self.agents.len() - 1
    }

    fn logs(&self) -> String {
        let mut all = format!("server log:\n{}", self.server.log());
        for i in 0..self.agents.len() {
            let log = std::fs::read_to_string(self.dir.path().join(format!("agent-{i}.log")))
                .unwrap_or_default();
            all.push_str(&format!("\nagent {i} log:\n{log}"));
        }
        all
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(support::kubectl_bin(33))
            .env("KUBECONFIG", &self.server.kubeconfig)
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .args(args)
            .output()
            .expect("run kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{stderr}\n{}",
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn apply(&self, manifest: &str) -> String {
        let path = self.dir.path().join("manifest.yaml");
        std::fs::write(&path, manifest).unwrap();
        self.ok(&["apply", "-f", path.to_str().unwrap()])
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl printed JSON")
    }

    /// Polls `check` every 100 ms until it returns true, or fails after `secs`.
    fn eventually(&self, what: &str, secs: u64, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}\n{}", self.logs());
    }

    /// Pods matching a label selector: name → (node, phase, ready, terminating).
    fn pods(&self, selector: &str) -> BTreeMap<String, (String, String, bool, bool)> {
        let list = self.json(&["get", "pods", "-l", selector]);
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let ready = p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                (
                    p["metadata"]["name"].as_str().unwrap().to_owned(),
                    (
                        p["spec"]["nodeName"].as_str().unwrap_or("").to_owned(),
                        p["status"]["phase"].as_str().unwrap_or("").to_owned(),
                        ready,
                        p["metadata"]["deletionTimestamp"].is_string(),
                    ),
                )
            })
            .collect()
    }

    async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.server.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

fn deployment(name: &str, replicas: u32, image: &str, extra_pod_spec: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: main
        image: {image}
        resources:
          requests: {{cpu: 100m, memory: 64Mi}}
{extra_pod_spec}"#
    )
}

/// Watches pods of `app=web` and records the fewest ready, non-terminating pods seen at any
/// point after `armed` is set.
fn watch_min_ready(client: kube::Client, armed: Arc<Mutex<bool>>, min: Arc<Mutex<usize>>) {
    tokio::spawn(async move {
        let api: kube::Api<Pod> = kube::Api::default_namespaced(client);
        let mut ready: BTreeSet<String> = BTreeSet::new();
        let mut stream = watcher(api, watcher::Config::default().labels("app=web")).boxed();
        while let Some(Ok(ev)) = stream.next().await {
            let (pod, deleted) = match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
                watcher::Event::Delete(p) => (p, true),
                _ => continue,
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let is_ready = !deleted
                && pod.metadata.deletion_timestamp.is_none()
                && pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if is_ready {
                ready.insert(name);
            } else {
                ready.remove(&name);
            }
            if *armed.lock().unwrap() {
                let mut m = min.lock().unwrap();
                *m = (*m).min(ready.len());
            }
        }
    });
}

/// (manager, subresource) of each of an object's managedFields entries.
fn field_managers(obj: &Value) -> BTreeSet<(&str, &str)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap(),
                m["subresource"].as_str().unwrap_or(""),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_on_simulated_nodes() {
    let mut c = Cluster::start();
    c.agent(&["--simulate", "3", "--cpu", "4", "--memory", "8Gi"]);
    c.eventually("3 Ready nodes", 30, || {
        c.ok(&["get", "nodes"]).matches(" Ready ").count() == 3
    });

    // A 10-replica Deployment becomes 10 Ready pods spread over the nodes.
    c.apply(&deployment("web", 10, "nginx:1.27", ""));
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let pods = c.pods("app=web");
    assert_eq!(pods.len(), 10, "{pods:?}");
    assert!(
        pods.values()
            .all(|(_, phase, ready, _)| phase == "Running" && *ready)
    );
    let nodes: BTreeSet<&String> = pods.values().map(|(n, ..)| n).collect();
    assert_eq!(nodes.len(), 3, "pods spread over all nodes: {pods:?}");
    let out = c.ok(&["get", "deployment", "web"]);
    assert!(out.contains("10/10"), "{out}");
    // Pod IPs come from the nodes' pod CIDRs (node IPAM), one per pod.
    let list = c.json(&["get", "pods", "-l", "app=web"]);
    let ips: BTreeSet<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 10);
    assert!(ips.iter().all(|ip| ip.starts_with("10.128.")), "{ips:?}");
    // The in-process controllers reach the API through the server's local client and write
    // as their own field manager (upstream: kube-controller-manager), the deployment's
    // status included.
    let deploy = c.json(&["get", "deployment", "web", "--show-managed-fields"]);
    let managers = field_managers(&deploy);
    assert!(
        managers.contains(&("dao-controller-manager", "status")),
        "{managers:?}"
    );
    // The agent writes pod status as `dao-agent` (upstream: kubelet); the in-process
    // informers read pods without managedFields, but other clients still get them.
    let pod_name = pods.keys().next().unwrap();
    let pod = c.json(&["get", "pod", pod_name, "--show-managed-fields"]);
    let managers = field_managers(&pod);
    assert!(managers.contains(&("dao-agent", "status")), "{managers:?}");
    assert!(
        managers.contains(&("dao-controller-manager", "")),
        "{managers:?}"
    );

    // `set image` rolls it; a watcher checks maxUnavailable (25% of 10 = 2) at every step.
    let armed = Arc::new(Mutex::new(false));
    let min = Arc::new(Mutex::new(usize::MAX));
    watch_min_ready(c.client().await, armed.clone(), min.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    *armed.lock().unwrap() = true;
    c.ok(&["set", "image", "deployment/web", "main=nginx:1.28"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    *armed.lock().unwrap() = false;
    let seen = *min.lock().unwrap();
    assert!(
        (8..=10).contains(&seen),
        "ready pods fell to {seen} during the rollout"
    );
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let rs = c.ok(&["get", "rs", "-l", "app=web"]);
    assert_eq!(rs.lines().count(), 3, "two ReplicaSets:\n{rs}");

    // `rollout undo` brings the old template back.
    c.ok(&["rollout", "undo", "deployment/web"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let image = c.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx:1.27");
    c.eventually("10 pods of the old template", 30, || {
        let list = c.json(&["get", "pods", "-l", "app=web"]);
        let items = list["items"].as_array().unwrap().clone();
        items.len() == 10
            && items
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.27")
    });

    // Scale to 0 and back.
    c.ok(&["scale", "deployment/web", "--replicas=0"]);
    c.eventually("no pods", 30, || c.pods("app=web").is_empty());
    c.ok(&["scale", "deployment/web", "--replicas=10"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert_eq!(c.pods("app=web").len(), 10);

    // An unschedulable pod gets upstream's FailedScheduling message.
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: huge
spec:
  containers:
  - name: main
    image: nginx
    resources:
      requests: {cpu: "64"}
"#,
    );
    c.eventually("FailedScheduling event", 30, || {
        c.ok(&["describe", "pod", "huge"]).contains(
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
        )
    });
    let out = c.ok(&["get", "pod", "huge"]);
    assert!(out.contains("Pending"), "{out}");
    c.ok(&["delete", "pod", "huge"]);

    // A tainted node: pods without a toleration stay away; one with it may go there.
    c.agent(&[
        "--simulate",
        "1",
        "--name-prefix",
        "gpu",
        "--taints",
        "dedicated=gpu:NoSchedule",
    ]);
    c.eventually("the tainted node", 30, || {
        c.ok(&["get", "nodes"]).matches(" Ready ").count() == 4
    });
    c.apply(&deployment(
        "plain",
        6,
        "busybox",
        "      nodeSelector: {kubernetes.io/hostname: gpu-0}\n",
    ));
    c.eventually("FailedScheduling for the tainted node", 30, || {
        let out = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=FailedScheduling",
        ]);
        out.contains("1 node(s) had untolerated taint {dedicated: gpu}")
            && out.contains("3 node(s) didn't match Pod's node affinity/selector")
    });
    assert!(
        c.pods("app=plain")
            .values()
            .all(|(node, ..)| node.is_empty())
    );
    c.apply(&deployment(
        "tolerant",
        2,
        "busybox",
        "      nodeSelector: {kubernetes.io/hostname: gpu-0}\n      tolerations:\n      - {key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}\n",
    ));
    c.ok(&["rollout", "status", "deployment/tolerant", "--timeout=60s"]);
    assert!(
        c.pods("app=tolerant")
            .values()
            .all(|(node, ..)| node == "gpu-0")
    );

    // Cascading deletion: background removes ReplicaSets and pods; orphan keeps them.
    c.ok(&["delete", "deployment", "plain", "tolerant"]);
    c.eventually("plain's pods and ReplicaSets gone", 30, || {
        c.pods("app=plain").is_empty()
            && c.pods("app=tolerant").is_empty()
            && c.ok(&["get", "rs", "-l", "app in (plain,tolerant)"])
                .trim()
                .is_empty()
    });
    c.ok(&["delete", "deployment", "web", "--cascade=orphan"]);
    c.eventually("the Deployment gone", 30, || {
        !c.run(&["get", "deployment", "web"]).status.success()
    });
    let rs = c.json(&["get", "rs", "-l", "app=web"]);
    let rs = rs["items"].as_array().unwrap();
    assert!(!rs.is_empty());
    assert!(
        rs.iter().all(|r| r["metadata"]["ownerReferences"].is_null()
            || r["metadata"]["ownerReferences"]
                .as_array()
                .unwrap()
                .is_empty()),
        "orphaned ReplicaSets lost their owner reference"
    );
    assert_eq!(c.pods("app=web").len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_leave_a_node_that_stops_renewing_its_lease() {
    let mut c = Cluster::start();
    c.agent(&["--simulate", "2"]);
    let lonely = c.agent(&["--simulate", "1", "--name-prefix", "lonely"]);
    c.eventually("3 Ready nodes", 30, || {
        c.ok(&["get", "nodes"]).matches(" Ready ").count() == 3
    });
    // Put the pods on lonely-0: cordon the others while they are scheduled.
    c.ok(&["cordon", "sim-0", "sim-1"]);
    c.apply(&deployment(
        "mover",
        2,
        "nginx",
        "      tolerations:\n      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}\n",
    ));
    c.ok(&["rollout", "status", "deployment/mover", "--timeout=60s"]);
    assert!(c.pods("app=mover").values().all(|(n, ..)| n == "lonely-0"));
    c.ok(&["uncordon", "sim-0", "sim-1"]);

    // The node's agent dies: no more lease renewals.
    c.agents[lonely].kill9();
    c.eventually("lonely-0 NotReady", 30, || {
        c.ok(&["get", "node", "lonely-0"]).contains("NotReady")
    });
    // The taints follow in a write of their own (as upstream: the Ready condition is status,
    // the taints spec), so a read between the two sees the condition alone.
    c.eventually("lonely-0 tainted", 10, || {
        c.ok(&["get", "node", "lonely-0", "-o", "jsonpath={.spec.taints}"])
            .contains("node.kubernetes.io/unreachable")
    });
    let taints = c.ok(&["get", "node", "lonely-0", "-o", "jsonpath={.spec.taints}"]);
    assert!(
        taints.contains("node.kubernetes.io/unreachable"),
        "{taints}"
    );
    assert!(taints.contains("NoExecute"), "{taints}");
    // Evicted after their toleration, replaced elsewhere.
    c.eventually("2 Ready pods on other nodes", 60, || {
        let running: Vec<_> = c
            .pods("app=mover")
            .into_values()
            .filter(|(n, phase, ready, terminating)| {
                n.starts_with("sim-") && phase == "Running" && *ready && !terminating
            })
            .collect();
        running.len() == 2
    });
}

/// The `get pdb` row of a budget, split on whitespace: NAME, MIN AVAILABLE, MAX UNAVAILABLE,
/// ALLOWED DISRUPTIONS (AGE dropped).
fn pdb_row(c: &Cluster, name: &str) -> Vec<String> {
    let out = c.ok(&["get", "pdb", name, "--no-headers"]);
    out.split_whitespace().take(4).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_respects_disruption_budgets_and_orphans_are_collected() {
    let mut c = Cluster::start_with(&["--orphaned-pod-quarantine", "2"]);
    c.agent(&["--simulate", "3"]);
    c.eventually("3 Ready nodes", 30, || {
        c.ok(&["get", "nodes"]).matches(" Ready ").count() == 3
    });
    c.apply(&deployment("web", 3, "nginx:1.27", ""));
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);

    // A budget of two: with three Ready pods, one may go.
    c.ok(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--min-available=2",
    ]);
    c.eventually("the budget to allow one disruption", 30, || {
        pdb_row(&c, "web") == ["web", "2", "N/A", "1"]
    });
    let table = c.ok(&["get", "pdb", "web"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MIN",
            "AVAILABLE",
            "MAX",
            "UNAVAILABLE",
            "ALLOWED",
            "DISRUPTIONS",
            "AGE"
        ],
        "{table}"
    );
    let pdb = c.json(&["get", "pdb", "web"]);
    let status = &pdb["status"];
    assert_eq!(
        (
            &status["expectedPods"],
            &status["currentHealthy"],
            &status["desiredHealthy"],
            &status["disruptionsAllowed"],
            &status["observedGeneration"],
        ),
        (
            &3.into(),
            &3.into(),
            &2.into(),
            &1.into(),
            &pdb["metadata"]["generation"]
        ),
        "{pdb}"
    );
    let condition = &status["conditions"][0];
    assert_eq!(
        (
            &condition["type"],
            &condition["status"],
            &condition["reason"]
        ),
        (
            &"DisruptionAllowed".into(),
            &"True".into(),
            &"SufficientPods".into()
        ),
        "{pdb}"
    );

    // Drain the node with the most of them; a watcher checks the budget at every step.
    let armed = Arc::new(Mutex::new(false));
    let min = Arc::new(Mutex::new(usize::MAX));
    watch_min_ready(c.client().await, armed.clone(), min.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    *armed.lock().unwrap() = true;
    let pods = c.pods("app=web");
    let mut per_node: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, (node, ..)) in &pods {
        per_node.entry(node).or_default().push(name);
    }
    let (victim, evicted) = per_node
        .iter()
        .max_by_key(|(_, p)| p.len())
        .map(|(n, p)| (n.to_string(), p.clone()))
        .unwrap();
    let out = c.run(&[
        "drain",
        &victim,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=60s",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "drain failed:\n{stdout}\n{stderr}\n{}",
        c.logs()
    );
    assert!(
        stdout.contains(&format!("node/{victim} cordoned")),
        "{stdout}"
    );
    for p in &evicted {
        assert!(stdout.contains(&format!("pod/{p} evicted")), "{stdout}");
    }
    assert!(
        stdout.contains(&format!("node/{victim} drained")),
        "{stdout}"
    );
    let node = c.ok(&["get", "node", &victim]);
    assert!(node.contains("Ready,SchedulingDisabled"), "{node}");
    c.eventually("three Ready pods on the other nodes", 60, || {
        let pods = c.pods("app=web");
        pods.len() == 3
            && pods.values().all(|(n, phase, ready, terminating)| {
                *n != victim && phase == "Running" && *ready && !terminating
            })
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    *armed.lock().unwrap() = false;
    let seen = *min.lock().unwrap();
    assert!(seen >= 2, "ready pods fell to {seen} during the drain");
    c.eventually("the budget to allow one disruption again", 30, || {
        pdb_row(&c, "web") == ["web", "2", "N/A", "1"]
    });

    // A budget that cannot spare a pod: evictions are refused with 429 and drain says why.
    c.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":3}}"#,
    ]);
    c.eventually("the budget to allow nothing", 30, || {
        pdb_row(&c, "web") == ["web", "3", "N/A", "0"]
    });
    let pods = c.pods("app=web");
    let (pod, (held, ..)) = pods.iter().next().unwrap();
    let held = held.clone();
    let out = c.run(&[
        "drain",
        &held,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=8s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain succeeded against the budget");
    assert!(
        stderr.contains(&format!(
            "error when evicting pods/\"{pod}\" -n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."
        )),
        "{stderr}"
    );
    assert!(stderr.contains("global timeout reached: 8s"), "{stderr}");
    assert_eq!(
        c.pods("app=web")
            .values()
            .filter(|(.., r, t)| *r && !t)
            .count(),
        3,
        "the refused drain took no pod"
    );
    // The API's answer itself (kube-rs, without its retries of 429s): upstream's message and
    // cause.
    let kc = kube::config::Kubeconfig::read_from(&c.server.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    let api: kube::Api<Pod> =
        kube::Api::default_namespaced(kube::Client::try_from(config).unwrap());
    match api.evict(pod, &Default::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(
                (s.code, s.reason.as_str()),
                (429, "TooManyRequests"),
                "{s:?}"
            );
            assert_eq!(
                s.message,
                "Cannot evict pod as it would violate the pod's disruption budget."
            );
            let cause = &s.details.as_ref().expect("details").causes[0];
            assert_eq!(cause.reason, "DisruptionBudget");
            assert_eq!(
                cause.message,
                "The disruption budget web needs 3 healthy pods and has 3 currently"
            );
        }
        other => panic!("eviction against the budget: {other:?}"),
    }
    c.ok(&["uncordon", &held, &victim]);

    // A node deleted under its pods: the pod garbage collector deletes them (the bare one for
    // good; the Deployment's come back elsewhere).
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: stray
spec:
  nodeName: {held}
  containers:
  - name: main
    image: busybox
"#
    ));
    c.eventually("the stray pod running", 30, || {
        c.ok(&["get", "pod", "stray"]).contains("Running")
    });
    c.ok(&["delete", "node", &held]);
    c.eventually("the stray pod collected", 30, || {
        !c.run(&["get", "pod", "stray"]).status.success()
    });
    c.eventually("three Ready pods on the remaining nodes", 60, || {
        let pods = c.pods("app=web");
        pods.len() == 3
            && pods
                .values()
                .all(|(n, _, ready, terminating)| *n != held && *ready && !terminating)
    });
}

/// The controller of a pod or ReplicaSet: (kind, name, uid), if any.
fn controller_of(obj: &Value) -> Option<(String, String, String)> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or("").to_owned(),
                r["name"].as_str().unwrap_or("").to_owned(),
                r["uid"].as_str().unwrap_or("").to_owned(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_adopt_orphans_and_release_strays() {
    let mut c = Cluster::start();
    c.agent(&["--simulate", "2"]);
    c.eventually("2 Ready nodes", 30, || {
        c.ok(&["get", "nodes"]).matches(" Ready ").count() == 2
    });

    // A bare pod that a ReplicaSet created later selects is adopted, not duplicated.
    c.ok(&["run", "stray", "--image=nginx", "--labels=app=rs"]);
    c.eventually("stray Running", 30, || {
        c.pods("app=rs")
            .get("stray")
            .is_some_and(|p| p.1 == "Running")
    });
    c.apply(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: rs\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: rs}\n  template:\n    metadata:\n      labels: {app: rs}\n    spec:\n      containers:\n      - name: main\n        image: nginx\n",
    );
    let rs_uid = c.json(&["get", "rs", "rs"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    c.eventually("stray adopted among 3 pods", 30, || {
        let stray = c.json(&["get", "pod", "stray"]);
        c.pods("app=rs").len() == 3
            && controller_of(&stray).is_some_and(|(kind, name, uid)| {
                kind == "ReplicaSet" && name == "rs" && uid == rs_uid
            })
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.pods("app=rs").len(), 3, "no pod beyond the 3 replicas");

    // Relabelled out of the selector, it is released and replaced.
    c.ok(&["label", "pod", "stray", "app=gone", "--overwrite"]);
    c.eventually("stray released and replaced", 30, || {
        let stray = c.json(&["get", "pod", "stray"]);
        controller_of(&stray).is_none()
            && c.pods("app=rs").len() == 3
            && !c.pods("app=rs").contains_key("stray")
    });

    // A DaemonSet adopts a matching bare pod on a node instead of starting a second one there
    // (OnDelete: under RollingUpdate the adopted pod, lacking the template's revision label,
    // would then be replaced, as upstream does).
    c.ok(&[
        "run",
        "dspod",
        "--image=nginx",
        "--labels=app=ds",
        r#"--overrides={"spec":{"nodeName":"sim-0"}}"#,
    ]);
    c.eventually("dspod Running", 30, || {
        c.pods("app=ds")
            .get("dspod")
            .is_some_and(|p| p.1 == "Running")
    });
    c.apply(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: ds\nspec:\n  selector:\n    matchLabels: {app: ds}\n  updateStrategy: {type: OnDelete}\n  template:\n    metadata:\n      labels: {app: ds}\n    spec:\n      containers:\n      - name: main\n        image: nginx\n",
    );
    c.eventually("one ds pod per node, dspod adopted", 30, || {
        let pods = c.pods("app=ds");
        let nodes: BTreeSet<&String> = pods.values().map(|p| &p.0).collect();
        pods.len() == 2
            && nodes.len() == 2
            && controller_of(&c.json(&["get", "pod", "dspod"]))
                .is_some_and(|(kind, name, _)| kind == "DaemonSet" && name == "ds")
    });

    // A Deployment re-created after an orphaning delete takes its ReplicaSet back: the same
    // ReplicaSet and pods, no rollout.
    let manifest = deployment("web", 2, "nginx", "");
    c.apply(&manifest);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let pods_before: BTreeSet<String> = c.pods("app=web").into_keys().collect();
    let rs_before = c.json(&["get", "rs", "-l", "app=web"]);
    let rs_name = rs_before["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    c.ok(&["delete", "deployment", "web", "--cascade=orphan"]);
    c.eventually("web's ReplicaSet orphaned", 30, || {
        !c.run(&["get", "deployment", "web"]).status.success()
            && controller_of(&c.json(&["get", "rs", &rs_name])).is_none()
    });
    c.apply(&manifest);
    let new_uid = c.json(&["get", "deployment", "web"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    c.eventually("the ReplicaSet adopted by the new Deployment", 30, || {
        controller_of(&c.json(&["get", "rs", &rs_name]))
            .is_some_and(|(kind, _, uid)| kind == "Deployment" && uid == new_uid)
    });
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let rs_after = c.json(&["get", "rs", "-l", "app=web"]);
    assert_eq!(rs_after["items"].as_array().unwrap().len(), 1, "{rs_after}");
    let pods_after: BTreeSet<String> = c.pods("app=web").into_keys().collect();
    assert_eq!(pods_before, pods_after);

    // Foreground deletion: the Deployment stays, with the foregroundDeletion finalizer, until
    // its ReplicaSet and pods are gone.
    c.ok(&[
        "delete",
        "deployment",
        "web",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let d = c.json(&["get", "deployment", "web"]);
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    assert!(
        d["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "foregroundDeletion")),
        "{d}"
    );
    let mut dependents_outlived_owner = false;
    c.eventually("web, its ReplicaSet and pods gone", 60, || {
        let owner_gone = !c.run(&["get", "deployment", "web"]).status.success();
        let pods = c.pods("app=web").len();
        let sets = c.json(&["get", "rs", "-l", "app=web"])["items"]
            .as_array()
            .map_or(0, Vec::len);
        if owner_gone && pods + sets > 0 {
            dependents_outlived_owner = true;
        }
        owner_gone && pods + sets == 0
    });
    assert!(
        !dependents_outlived_owner,
        "the Deployment went before its dependents"
    );

    // A Job with a manual selector adopts a matching bare pod and counts its success: two
    // completions take one more pod, not two.
    c.ok(&[
        "run",
        "batch-stray",
        "--image=busybox",
        "--labels=app=batch",
        "--restart=Never",
    ]);
    c.apply(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: batch\nspec:\n  manualSelector: true\n  selector:\n    matchLabels: {app: batch}\n  completions: 2\n  parallelism: 1\n  template:\n    metadata:\n      labels: {app: batch}\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n",
    );
    let job_uid = c.json(&["get", "job", "batch"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    c.eventually("the Job complete", 60, || {
        c.json(&["get", "job", "batch"])["status"]["succeeded"] == 2
    });
    let stray = c.json(&["get", "pod", "batch-stray"]);
    assert!(
        controller_of(&stray)
            .is_some_and(|(kind, name, uid)| kind == "Job" && name == "batch" && uid == job_uid),
        "{stray}"
    );
    assert_eq!(
        c.pods("app=batch").len(),
        2,
        "one pod created besides the stray"
    );
}

/// Priority as upstream: a pod's priority comes from its PriorityClass (the admission refuses
/// an unknown class), and a pod that fits nowhere preempts lower-priority pods, choosing the
/// node whose victim no PodDisruptionBudget protects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_follows_priority_classes_and_spares_budgets() {
    let mut c = Cluster::start();
    c.agent(&["--simulate", "2", "--cpu", "1"]);
    c.eventually("2 Ready nodes", 30, || {
        c.ok(&["get", "nodes"]).matches(" Ready ").count() == 2
    });
    c.ok(&["create", "priorityclass", "low", "--value=10"]);
    c.ok(&["create", "priorityclass", "high", "--value=1000"]);
    let pod = |name: &str, app: &str, class: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {app}}}\nspec:\n  priorityClassName: {class}\n  containers:\n  - name: main\n    image: nginx\n    resources:\n      requests: {{cpu: \"1\"}}\n"
        )
    };
    // The class sets the priority; an unknown class is refused and nothing is stored.
    let path = c.dir.path().join("ghost.yaml");
    std::fs::write(&path, pod("ghost", "x", "nope")).unwrap();
    let out = c.run(&["create", "-f", path.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "Error from server (Forbidden): error when creating \"{}\": pods \"ghost\" is forbidden: no PriorityClass with name nope was found\n",
            path.display()
        )
    );
    let path = c.dir.path().join("forced.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: forced\nspec:\n  priority: 5\n  containers:\n  - {name: main, image: nginx}\n",
    )
    .unwrap();
    let out = c.run(&["create", "-f", path.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).ends_with("pods \"forced\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !c.run(&["get", "pod", "ghost"]).status.success()
            && !c.run(&["get", "pod", "forced"]).status.success(),
        "refused pods are not stored"
    );
    // web starts first, db a second later: all else equal, preemption prefers the victim
    // that started last (db), so only the budget below sends it to web.
    c.apply(&pod("web", "web", "low"));
    c.eventually("web Running", 30, || {
        c.pods("app=web")
            .get("web")
            .is_some_and(|(_, phase, ..)| phase == "Running")
    });
    std::thread::sleep(Duration::from_millis(1100));
    c.apply(&pod("db", "db", "low"));
    let db = c.json(&["get", "pod", "db"]);
    assert_eq!(db["spec"]["priority"], 10);
    assert_eq!(db["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    c.eventually("db Running", 30, || {
        c.pods("app=db")
            .get("db")
            .is_some_and(|(_, phase, ..)| phase == "Running")
    });
    let web_node = c.pods("app=web")["web"].0.clone();
    let db_node = c.pods("app=db")["db"].0.clone();
    assert_ne!(web_node, db_node, "one pod per node");

    // db may not be disrupted; web may.
    c.apply(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: db\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels: {app: db}\n",
    );
    c.eventually("the budget allows no disruption", 30, || {
        pdb_row(&c, "db") == ["db", "1", "N/A", "0"]
    });
    c.apply(&pod("vip", "vip", "high"));
    c.eventually("vip Running where web was", 60, || {
        c.pods("app=vip")
            .get("vip")
            .is_some_and(|(node, phase, ..)| *node == web_node && phase == "Running")
    });
    assert!(c.pods("app=web").is_empty(), "web was preempted");
    let db_now = c.pods("app=db");
    assert_eq!(db_now["db"].0, db_node);
    assert_eq!(db_now["db"].1, "Running", "the budget's pod was spared");
}

/// Pods per node among those matching `selector`.
fn pods_per_node(c: &Cluster, selector: &str) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for (node, ..) in c.pods(selector).into_values() {
        *per.entry(node).or_insert(0) += 1;
    }
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_of_a_service_or_controller_spread_over_nodes_by_default() {
    let mut c = Cluster::start();
    // One roomy node and one small one: on resources alone, every pod prefers the roomy one.
    c.agent(&[
        "--simulate",
        "1",
        "--name-prefix",
        "big",
        "--cpu",
        "64",
        "--memory",
        "256Gi",
    ]);
    c.agent(&[
        "--simulate",
        "1",
        "--name-prefix",
        "small",
        "--cpu",
        "4",
        "--memory",
        "16Gi",
    ]);
    c.eventually("2 Ready nodes", 30, || {
        c.ok(&["get", "nodes"]).matches(" Ready ").count() == 2
    });
    let bare: String = (0..6)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: solo-{i}\n  labels: {{app: solo}}\nspec:\n  containers:\n  - name: main\n    image: nginx\n    resources:\n      requests: {{cpu: 100m, memory: 64Mi}}\n---\n"
            )
        })
        .collect();
    c.apply(&bare);
    c.eventually("6 solo pods scheduled", 30, || {
        pods_per_node(&c, "app=solo").values().sum::<usize>() == 6
            && !pods_per_node(&c, "app=solo").contains_key("")
    });
    assert_eq!(
        pods_per_node(&c, "app=solo"),
        BTreeMap::from([("big-0".to_owned(), 6)]),
        "pods nothing selects are not spread"
    );

    // A Service and a Deployment select web's pods: upstream's default constraints (hostname,
    // maxSkew 3, ScheduleAnyway) spread them.
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n",
    );
    c.apply(&deployment("web", 6, "nginx", ""));
    c.eventually("6 web pods scheduled", 30, || {
        let per = pods_per_node(&c, "app=web");
        per.values().sum::<usize>() == 6 && !per.contains_key("")
    });
    assert_eq!(
        pods_per_node(&c, "app=web"),
        BTreeMap::from([("big-0".to_owned(), 3), ("small-0".to_owned(), 3)]),
        "{}",
        c.logs()
    );
}

/// `dao bench scheduler` at a small size runs both halves to the end and reports every pod
/// scheduled in process and Running end to end (its speed is measured by hand, not here).
#[test]
fn the_scheduler_bench_runs_end_to_end() {
    let out = support::dao()
        .args(["bench", "scheduler", "--nodes", "20", "--pods", "60"])
        .args(["--clients", "4", "--large", "0,0"])
        .env("DAO_LOG", "warn")
        .output()
        .expect("dao bench scheduler");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for scenario in ["basic", "replicaset", "spread", "anti-affinity"] {
        let row = report
            .lines()
            .find(|l| l.starts_with(&format!("| {scenario} |")))
            .unwrap_or_else(|| panic!("no {scenario} row in\n{report}"));
        assert!(row.ends_with("| 0 |"), "unschedulable pods: {row}");
    }
    assert!(
        report.contains("pods/s end to end"),
        "no end-to-end table in\n{report}"
    );
}
