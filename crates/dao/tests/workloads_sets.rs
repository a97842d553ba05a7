//! End to end: StatefulSets, DaemonSets and Service endpoints on a real `dao server` with
//! simulated nodes (`dao agent --simulate`), driven by the real kubectl (`DAO_KUBECTL`, or
//! `kubectl.1.33` beside the file `kubectl` links to, or `kubectl` itself).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Cluster {
    // Agents before the server, so they stop first.
    agents: Vec<support::ChildGuard>,
    server: support::DaoServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = support::DaoServer::start(&dir.path().join("data"), &[]);
        let mut c = Cluster {
            agents: Vec::new(),
            server,
            dir,
        };
        c.agent(&["--simulate", "3"]);
        c
    }

    fn agent(&mut self, args: &[&str]) {
        let log = self.dir.path().join("agent.log");
        self.agents
            .push(support::agent(&self.server.kubeconfig, &log, args));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(support::kubectl_bin(33));
        cmd.env("KUBECONFIG", &self.server.kubeconfig)
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run kubectl")
    }

    fn logs(&self) -> String {
        format!(
            "server log:\n{}\nagent log:\n{}",
            self.server.log(),
            std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    fn apply(&self, name: &str, manifest: &str) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, manifest).unwrap();
        self.ok(&["apply", "-f", path.to_str().unwrap()]);
    }

    /// Polls `f` until it returns Some, for at most `secs` seconds.
    fn wait<T>(&self, what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn pods(&self, selector: &str) -> Vec<Value> {
        self.json(&["get", "pods", "-l", selector])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn ready_since(pod: &Value) -> Option<String> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .map(str::to_owned)
}

fn time(s: &str) -> chrono_like::Seconds {
    chrono_like::parse(s)
}

/// RFC 3339 UTC timestamps (`2024-01-02T03:04:05Z`) as seconds, enough to order them.
mod chrono_like {
    pub type Seconds = i64;
    pub fn parse(s: &str) -> Seconds {
        let digits: Vec<i64> = s
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .take(6)
            .map(|p| p.parse().unwrap())
            .collect();
        let [y, mo, d, h, mi, se] = digits[..] else {
            panic!("timestamp {s}")
        };
        // Days from civil (proleptic Gregorian).
        let (y, m) = if mo <= 2 {
            (y - 1, mo + 9)
        } else {
            (y, mo - 3)
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400 + h * 3600 + mi * 60 + se
    }
}

const STATEFULSET: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
  template:
    metadata:
      labels: {app: web}
    spec:
      # Bound by hand so the simulated node runs the pods without a scheduler; with the
      # scheduler in `dao server` this line is unnecessary.
      nodeName: sim-0
      containers:
      - name: web
        image: nginx:1
        ports:
        - name: http
          containerPort: 8080
"#;

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: busybox:1
"#;

/// `kubectl get pods --watch` in the background: the (event type, pod name) lines it saw.
/// (event type, pod name) lines seen by a `kubectl get pods --watch`.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn watch_pods(c: &Cluster, selector: &str) -> (support::ChildGuard, Seen) {
    let mut child = c
        .command(&[
            "get",
            "pods",
            "-l",
            selector,
            "--watch",
            "--output-watch-events",
            "-o",
            "jsonpath={.type} {.object.metadata.name}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl watch");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some((t, n)) = line.trim().split_once(' ') {
                sink.lock().unwrap().push((t.to_owned(), n.to_owned()));
            }
        }
    });
    (support::ChildGuard(child), events)
}

#[test]
fn statefulset_daemonset_and_endpoints() {
    let mut c = Cluster::start();
    c.wait("3 simulated nodes", 30, || {
        let nodes = c.json(&["get", "nodes"]);
        (nodes["items"].as_array().map_or(0, Vec::len) == 3).then_some(())
    });

    // StatefulSet: web-0, web-1, web-2, each created after the one before is Ready.
    c.apply("sts.yaml", STATEFULSET);
    let pods = c.wait("web-0..2 Ready", 60, || {
        let pods = c.pods("app=web");
        let mut by_name: Vec<Value> = pods;
        by_name.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap_or("").to_owned());
        let names: Vec<&str> = by_name
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str())
            .collect();
        (names == ["web-0", "web-1", "web-2"] && by_name.iter().all(|p| ready_since(p).is_some()))
            .then_some(by_name)
    });
    for pair in pods.windows(2) {
        let ready = time(&ready_since(&pair[0]).unwrap());
        let created = time(pair[1]["metadata"]["creationTimestamp"].as_str().unwrap());
        assert!(
            created >= ready,
            "{} created before {} was Ready",
            pair[1]["metadata"]["name"],
            pair[0]["metadata"]["name"]
        );
    }
    for (i, p) in pods.iter().enumerate() {
        let name = format!("web-{i}");
        assert_eq!(p["spec"]["hostname"], name.as_str());
        assert_eq!(p["spec"]["subdomain"], "web");
        assert_eq!(
            p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            name.as_str()
        );
        assert_eq!(
            p["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
            i.to_string().as_str()
        );
        assert_eq!(
            p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            format!("data-web-{i}").as_str()
        );
    }
    let claims = c.ok(&["get", "pvc", "-o", "name"]);
    for i in 0..3 {
        assert!(
            claims.contains(&format!("persistentvolumeclaim/data-web-{i}")),
            "{claims}"
        );
    }
    c.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    let sts = c.json(&["get", "sts", "web"]);
    let status = &sts["status"];
    assert_eq!(
        (
            &status["replicas"],
            &status["readyReplicas"],
            &status["updatedReplicas"]
        ),
        (&Value::from(3), &Value::from(3), &Value::from(3)),
        "{status}"
    );
    assert_eq!(status["currentRevision"], status["updateRevision"]);
    let revision = status["updateRevision"].as_str().unwrap().to_owned();
    assert!(
        pods.iter()
            .all(|p| p["metadata"]["labels"]["controller-revision-hash"] == revision.as_str())
    );
    assert!(c.ok(&["rollout", "history", "sts/web"]).contains('1'));

    // The Service's Endpoints and EndpointSlice.
    let ep = c.wait("3 endpoint addresses", 30, || {
        let ep = c.run(&["get", "endpoints", "web", "-o", "json"]);
        let ep: Value = serde_json::from_slice(&ep.stdout).ok()?;
        (ep["subsets"][0]["addresses"].as_array().map_or(0, Vec::len) == 3).then_some(ep)
    });
    let subset = &ep["subsets"][0];
    assert_eq!(subset["ports"][0]["port"], 8080, "{ep}");
    assert_eq!(subset["ports"][0]["name"], "http", "{ep}");
    let mut hostnames: Vec<&str> = subset["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["hostname"].as_str().unwrap_or(""))
        .collect();
    hostnames.sort();
    assert_eq!(hostnames, ["web-0", "web-1", "web-2"], "{ep}");
    assert!(subset["addresses"][0]["targetRef"]["name"].is_string());
    let slices = c.wait("an EndpointSlice with 3 ready endpoints", 30, || {
        let s = c.json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ]);
        let items = s["items"].as_array()?.clone();
        (items.len() == 1
            && items[0]["endpoints"].as_array().map_or(0, Vec::len) == 3
            && items[0]["endpoints"]
                .as_array()?
                .iter()
                .all(|e| e["conditions"]["ready"] == true))
        .then_some(items)
    });
    let slice = &slices[0];
    assert_eq!(slice["addressType"], "IPv4");
    assert!(
        slice["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("web-")
    );
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["ports"][0]["port"], 8080);

    // Scale down to 1: web-2 goes first, then web-1.
    let (_watch, events) = watch_pods(&c, "app=web");
    std::thread::sleep(Duration::from_millis(500));
    c.ok(&["scale", "sts/web", "--replicas=1"]);
    c.wait("only web-0 left", 60, || {
        let pods = c.pods("app=web");
        let names: Vec<&str> = pods
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str())
            .collect();
        (names == ["web-0"]).then_some(())
    });
    c.wait("both deletions watched", 10, || {
        let ev = events.lock().unwrap();
        let pos = |n: &str| ev.iter().position(|(t, p)| t == "DELETED" && p == n);
        let (two, one) = (pos("web-2")?, pos("web-1")?);
        assert!(two < one, "web-1 deleted before web-2: {ev:?}");
        Some(())
    });
    c.wait("1 endpoint address", 30, || {
        let ep = c.json(&["get", "endpoints", "web"]);
        (ep["subsets"][0]["addresses"].as_array().map_or(0, Vec::len) == 1).then_some(())
    });

    // A rolling update of the StatefulSet replaces web-0 with the new revision.
    c.ok(&["set", "image", "sts/web", "web=nginx:2"]);
    c.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    let sts = c.json(&["get", "sts", "web"]);
    let updated = sts["status"]["updateRevision"].as_str().unwrap().to_owned();
    assert_ne!(updated, revision);
    assert_eq!(sts["status"]["currentRevision"], updated.as_str());
    let web0 = c.json(&["get", "pod", "web-0"]);
    assert_eq!(
        web0["metadata"]["labels"]["controller-revision-hash"],
        updated.as_str()
    );
    assert_eq!(web0["spec"]["containers"][0]["image"], "nginx:2");
    let history = c.ok(&["rollout", "history", "sts/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");

    // DaemonSet: one pod per node, pinned by a required node affinity.
    c.apply("ds.yaml", DAEMONSET);
    let target = |p: &Value| -> String {
        p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let nodes_of = |pods: &[Value]| -> Vec<String> {
        let mut n: Vec<String> = pods.iter().map(target).collect();
        n.sort();
        n
    };
    let pods = c.wait("3 daemon pods", 30, || {
        let pods = c.pods("app=agent");
        (nodes_of(&pods) == ["sim-0", "sim-1", "sim-2"]).then_some(pods)
    });
    for p in &pods {
        assert!(p["metadata"]["labels"]["controller-revision-hash"].is_string());
        assert_eq!(p["metadata"]["labels"]["pod-template-generation"], "1");
        let tolerations = p["spec"]["tolerations"].as_array().unwrap();
        assert!(
            tolerations
                .iter()
                .any(|t| t["key"] == "node.kubernetes.io/unschedulable")
        );
    }
    assert!(c.ok(&["rollout", "history", "ds/agent"]).contains('1'));
    c.agent(&["--simulate", "1", "--name-prefix", "extra"]);
    c.wait("a 4th daemon pod for extra-0", 30, || {
        let pods = c.pods("app=agent");
        (nodes_of(&pods) == ["extra-0", "sim-0", "sim-1", "sim-2"]).then_some(())
    });
    let ds = c.wait("DaemonSet status", 30, || {
        let ds = c.json(&["get", "ds", "agent"]);
        (ds["status"]["desiredNumberScheduled"] == 4 && ds["status"]["currentNumberScheduled"] == 4)
            .then_some(ds)
    });
    assert_eq!(ds["status"]["numberMisscheduled"], 0);

    // Binding needs the scheduler; once `dao server` has one, the rollout must finish.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut bound = false;
    while Instant::now() < deadline {
        let pods = c.pods("app=agent");
        if pods.len() == 4 && pods.iter().all(|p| p["spec"]["nodeName"].is_string()) {
            bound = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    if bound {
        for p in c.pods("app=agent") {
            assert_eq!(p["spec"]["nodeName"].as_str().unwrap(), target(&p));
        }
        c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
        // A rolling update (maxUnavailable 1) replaces every pod.
        c.ok(&["set", "image", "ds/agent", "agent=busybox:2"]);
        c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
        let pods = c.pods("app=agent");
        let live: Vec<&Value> = pods
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        assert_eq!(live.len(), 4);
        assert!(
            live.iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "busybox:2")
        );
        let history = c.ok(&["rollout", "history", "ds/agent"]);
        assert!(history.contains('2'), "{history}");
    } else {
        eprintln!("daemon pods are not bound (no scheduler yet): skipping rollout status");
    }
}
