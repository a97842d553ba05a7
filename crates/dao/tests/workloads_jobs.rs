//! End to end: the Job and CronJob controllers of `dao server`, with `dao agent --simulate`
//! nodes running the pods, observed through the real kubectl 1.33 (see kubectl.rs for how it
//! is found).
//!
//! The pod templates set `nodeName` so pods run without a scheduler (one is being added to
//! `dao server`); drop it once the scheduler binds pods.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Cluster {
    // Dropped in order: the agent first, then the server, then the directory.
    _agent: support::ChildGuard,
    server: support::DaoServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = support::DaoServer::start(&dir.path().join("data"), &[]);
        let agent = support::agent(
            &server.kubeconfig,
            &dir.path().join("agent.log"),
            &["--simulate", "3", "--job-run-seconds", "1"],
        );
        Cluster {
            _agent: agent,
            server,
            dir,
        }
    }

    fn logs(&self) -> String {
        let agent = std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
        format!("server log:\n{}\nagent log:\n{agent}", self.server.log())
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

    fn apply(&self, name: &str, manifest: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, manifest).unwrap();
        self.ok(&["apply", "-f", path.to_str().unwrap()])
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl printed JSON")
    }

    /// Polls `check` every 200 ms until it returns true, or fails after `secs`.
    fn eventually(&self, what: &str, secs: u64, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !check() {
            assert!(
                Instant::now() < deadline,
                "{what} within {secs} s\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

// `nodeName` binds pods without a scheduler; see the module docs.
const CRONJOB: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          nodeName: sim-2
          restartPolicy: Never
          containers:
          - name: c
            image: busybox
"#;

const JOBS: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: work
spec:
  completions: 5
  parallelism: 2
  template:
    spec:
      nodeName: sim-0
      restartPolicy: Never
      containers:
      - name: c
        image: busybox
---
apiVersion: batch/v1
kind: Job
metadata:
  name: indexed
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      nodeName: sim-1
      restartPolicy: Never
      containers:
      - name: c
        image: busybox
---
apiVersion: batch/v1
kind: Job
metadata:
  name: doomed
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        simulate.dao.dev/exit-code: "1"
        simulate.dao.dev/run-seconds: "1"
    spec:
      nodeName: sim-2
      restartPolicy: Never
      containers:
      - name: c
        image: busybox
"#;

fn active_pods(pods: &Value) -> usize {
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["metadata"].get("deletionTimestamp").is_none()
                && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        })
        .count()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

#[test]
fn jobs_and_cronjobs() {
    let c = Cluster::start();
    c.eventually("three simulated nodes", 30, || {
        c.ok(&["get", "nodes"]).matches(" Ready ").count() == 3
    });

    // The CronJob first: its first run is due at the next minute.
    let started = Instant::now();
    assert!(
        c.apply("cronjob.yaml", CRONJOB)
            .contains("cronjob.batch/tick created")
    );

    // Watch the pods of `work` while the Jobs run: never more than parallelism (2) active.
    let stop = Arc::new(AtomicBool::new(false));
    let max_active = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::<String>::new()));
    let watcher = {
        let (stop, max_active, seen) = (stop.clone(), max_active.clone(), seen.clone());
        let kubeconfig = c.server.kubeconfig.clone();
        let home = c.dir.path().to_owned();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new(support::kubectl_bin(33))
                    .env("KUBECONFIG", &kubeconfig)
                    .env("KUBECACHEDIR", home.join("cache-watch"))
                    .env("HOME", &home)
                    .args(["get", "pods", "-l", "job-name=work", "-o", "json"])
                    .output();
                if let Ok(out) = out
                    && out.status.success()
                    && let Ok(pods) = serde_json::from_slice::<Value>(&out.stdout)
                {
                    max_active.fetch_max(active_pods(&pods), Ordering::Relaxed);
                    let mut seen = seen.lock().unwrap();
                    for p in pods["items"].as_array().into_iter().flatten() {
                        if let Some(n) = p["metadata"]["name"].as_str() {
                            seen.insert(n.to_owned());
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let created = c.apply("jobs.yaml", JOBS);
    for job in ["work", "indexed", "doomed"] {
        assert!(
            created.contains(&format!("job.batch/{job} created")),
            "{created}"
        );
    }

    // completions 5, parallelism 2.
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/work",
        "--timeout=60s",
    ]);
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let max = max_active.load(Ordering::Relaxed);
    assert!((1..=2).contains(&max), "at most 2 active pods, saw {max}");
    let row = c.ok(&["get", "job", "work"]);
    let line = row.lines().nth(1).unwrap_or_default();
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[..3], ["work", "Complete", "5/5"], "{row}");
    let work = c.json(&["get", "job", "work"]);
    assert_eq!(work["status"]["succeeded"], 5, "{work}");
    assert!(work["status"]["completionTime"].is_string(), "{work}");
    assert!(condition(&work, "SuccessCriteriaMet").is_some(), "{work}");
    let complete = condition(&work, "Complete").expect("Complete");
    assert_eq!(complete["reason"], "CompletionsReached");
    let pods = c.json(&["get", "pods", "-l", "job-name=work"]);
    let succeeded = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["phase"] == "Succeeded")
        .count();
    assert_eq!(succeeded, 5, "finished pods stay: {pods}");
    assert!(seen.lock().unwrap().len() >= 5);
    let describe = c.ok(&["describe", "job", "work"]);
    for line in ["SuccessfulCreate", "Created pod: work-", "Completed"] {
        assert!(describe.contains(line), "{line} in:\n{describe}");
    }

    // Indexed: each of 0, 1, 2 once.
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/indexed",
        "--timeout=60s",
    ]);
    let indexed = c.json(&["get", "job", "indexed"]);
    assert_eq!(indexed["status"]["completedIndexes"], "0-2", "{indexed}");
    let pods = c.json(&["get", "pods", "-l", "job-name=indexed"]);
    let indexes: BTreeSet<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["phase"] == "Succeeded")
        .map(|p| {
            let index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(
                p["spec"]["hostname"].as_str(),
                Some(format!("indexed-{index}").as_str())
            );
            index
        })
        .collect();
    assert_eq!(
        indexes,
        BTreeSet::from(["0".into(), "1".into(), "2".into()])
    );

    // backoffLimit 0 and a failing pod: Failed, BackoffLimitExceeded.
    c.ok(&[
        "wait",
        "--for=condition=failed",
        "job/doomed",
        "--timeout=60s",
    ]);
    let doomed = c.json(&["get", "job", "doomed"]);
    let failed = condition(&doomed, "Failed").expect("Failed");
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{doomed}");
    assert!(condition(&doomed, "FailureTarget").is_some(), "{doomed}");
    assert_eq!(doomed["status"]["failed"], 1, "{doomed}");
    let row = c.ok(&["get", "job", "doomed"]);
    assert!(row.contains("Failed"), "{row}");

    // The CronJob's first Job, within the minute (and some slack) of its creation.
    let remaining = 75u64.saturating_sub(started.elapsed().as_secs()).max(5);
    let mut name = String::new();
    c.eventually("a Job of the CronJob", remaining, || {
        let jobs = c.json(&["get", "jobs"]);
        let owned = jobs["items"].as_array().unwrap().iter().find(|j| {
            j["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["kind"] == "CronJob" && o["name"] == "tick" && o["controller"] == true)
        });
        if let Some(j) = owned {
            name = j["metadata"]["name"].as_str().unwrap().to_owned();
            assert!(
                j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
                    .is_string(),
                "{j}"
            );
        }
        owned.is_some()
    });
    let minutes: i64 = name
        .strip_prefix("tick-")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("job name {name}"));
    assert!(minutes > 28_000_000, "{name}");
    c.eventually("the CronJob's status", 20, || {
        let cj = c.json(&["get", "cronjob", "tick"]);
        cj["status"]["lastScheduleTime"].is_string()
    });
}
