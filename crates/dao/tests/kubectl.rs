//! End to end: the real `dao server` driven by the real kubectl (1.33, and 1.27 to 1.32 for
//! the basics), on both store backends. Needs kubectl binaries (`kubectl.1.33` beside the file
//! `kubectl` links to, or `DAO_KUBECTL`) and the etcd-server package.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use dao_store::testing::EtcdServer;

struct Cluster {
    server: support::DaoServer,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    /// The server's flags (the store), for restarts.
    extra: Vec<String>,
    _etcd: Option<EtcdServer>,
}

impl Cluster {
    fn start(etcd: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let etcd_server =
            etcd.then(|| EtcdServer::start().expect("start etcd (needs etcd-server)"));
        let extra: Vec<String> = match &etcd_server {
            Some(e) => vec![
                "--store".into(),
                "etcd".into(),
                "--etcd-endpoints".into(),
                e.endpoint(),
            ],
            None => vec![],
        };
        let server = support::DaoServer::start(&dir.path().join("data"), &extra);
        let kubeconfig = server.kubeconfig.clone();
        Cluster {
            server,
            dir,
            kubeconfig,
            extra,
            _etcd: etcd_server,
        }
    }

    /// Stops the server cleanly (SIGTERM) and starts another on the same data dir; the
    /// kubeconfig stays where it was, naming the new port.
    fn restart(&mut self) {
        self.server.terminate();
        self.server = support::DaoServer::start(&self.dir.path().join("data"), &self.extra);
    }

    fn log(&self) -> String {
        self.server.log()
    }

    fn command(&self, minor: u32, args: &[&str]) -> Command {
        let mut cmd = Command::new(support::kubectl_bin(minor));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env(
                "KUBECACHEDIR",
                self.dir.path().join(format!("cache-{minor}")),
            )
            .env("HOME", self.dir.path())
            .args(args);
        cmd
    }

    fn run(&self, minor: u32, args: &[&str]) -> Output {
        self.command(minor, args).output().expect("run kubectl")
    }

    /// Run kubectl 1.33, expect success, return stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_with(33, args)
    }

    /// `kubectl ARGS -o json`, parsed.
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn ok_with(&self, minor: u32, args: &[&str]) -> String {
        let out = self.run(minor, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl 1.{minor} {args:?} failed:\n{stderr}\nserver log:\n{}",
            self.log()
        );
        assert!(
            !stderr.to_lowercase().contains("warning"),
            "kubectl 1.{minor} {args:?} warned:\n{stderr}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run kubectl 1.33, expect failure, return stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(33, args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail; stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Creates namespace `ns` and service account `name` in it, and a kubeconfig that holds
    /// only a token of that account (`kubectl create token`), its namespace current. Returns
    /// the kubeconfig's path and the token.
    fn service_account_kubeconfig(&self, ns: &str, name: &str) -> (String, String) {
        self.ok(&["create", "namespace", ns]);
        self.ok(&["-n", ns, "create", "serviceaccount", name]);
        let token = self
            .ok(&["-n", ns, "create", "token", name])
            .trim()
            .to_owned();
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::copy(&self.kubeconfig, &path).unwrap();
        let path = path.display().to_string();
        self.ok(&[
            "--kubeconfig",
            &path,
            "config",
            "set-credentials",
            name,
            "--token",
            &token,
        ]);
        self.ok(&[
            "--kubeconfig",
            &path,
            "config",
            "set-context",
            "--current",
            "--user",
            name,
            "--namespace",
            ns,
        ]);
        (path, token)
    }

    /// The API server's URL, as the admin kubeconfig names it.
    fn server_url(&self) -> String {
        std::fs::read_to_string(&self.kubeconfig)
            .unwrap()
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .unwrap()
            .to_owned()
    }

    /// The admin bearer token the server created on first start.
    fn admin_token(&self) -> String {
        let path = Path::new(&self.kubeconfig)
            .parent()
            .unwrap()
            .join("pki/admin.token");
        std::fs::read_to_string(path).unwrap().trim().to_owned()
    }

    fn file(&self, name: &str, content: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: web}
data:
  mode: fast
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  labels: {app: web}
stringData:
  password: s3cret
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web}
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
"#;

fn lines_with(out: &str, words: &[&str]) -> usize {
    out.lines()
        .filter(|l| words.iter().all(|w| l.split_whitespace().any(|t| t == *w)))
        .count()
}

fn everyday(c: &Cluster) {
    // Discovery and namespaces.
    let ns = c.ok(&["get", "ns"]);
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert_eq!(
            lines_with(&ns, &[name, "Active"]),
            1,
            "namespace {name} in:\n{ns}"
        );
    }
    let resources = c.ok(&["api-resources"]);
    assert_eq!(
        lines_with(
            &resources,
            &["deployments", "deploy", "apps/v1", "true", "Deployment"]
        ),
        1,
        "{resources}"
    );
    assert_eq!(
        lines_with(
            &resources,
            &["namespaces", "ns", "v1", "false", "Namespace"]
        ),
        1,
        "{resources}"
    );
    let versions = c.ok(&["api-versions"]);
    for gv in [
        "v1",
        "apps/v1",
        "batch/v1",
        "rbac.authorization.k8s.io/v1",
        "autoscaling/v2",
    ] {
        assert!(versions.lines().any(|l| l == gv), "{gv} in:\n{versions}");
    }

    // apply: created, unchanged, configured.
    let manifest = c.file("manifest.yaml", MANIFEST);
    let created = c.ok(&["apply", "-f", &manifest]);
    for line in [
        "configmap/settings created",
        "secret/creds created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert!(created.contains(line), "{line} in:\n{created}");
    }
    let unchanged = c.ok(&["apply", "-f", &manifest]);
    assert_eq!(unchanged.matches("unchanged").count(), 3, "{unchanged}");
    // As upstream: stringData is never stored, so kubectl always finds it to re-apply.
    assert!(unchanged.contains("secret/creds configured"), "{unchanged}");
    let changed = c.file(
        "changed.yaml",
        &MANIFEST.replace("replicas: 2", "replicas: 3"),
    );
    let configured = c.ok(&["apply", "-f", &changed]);
    assert!(
        configured.contains("deployment.apps/web configured"),
        "{configured}"
    );
    assert!(
        configured.contains("configmap/settings unchanged"),
        "{configured}"
    );

    // kubectl's typed `create` commands send protobuf.
    assert_eq!(
        c.ok(&["create", "namespace", "team-a"]).trim(),
        "namespace/team-a created"
    );
    assert_eq!(
        c.ok(&[
            "create",
            "configmap",
            "lit",
            "-n",
            "team-a",
            "--from-literal=a=b"
        ])
        .trim(),
        "configmap/lit created"
    );
    assert_eq!(
        c.ok(&[
            "create",
            "secret",
            "generic",
            "pw",
            "-n",
            "team-a",
            "--from-literal=p=q"
        ])
        .trim(),
        "secret/pw created"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "cm",
            "lit",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.a}"
        ]),
        "b"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "secret",
            "pw",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.p}"
        ]),
        "cQ=="
    );
    let bad = c.fails(&["create", "configmap", "Bad_Name"]);
    assert_eq!(
        bad.trim(),
        "error: failed to create configmap: ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    // `--sort-by` asks for Tables that carry whole objects (`includeObject=Object`), so any
    // field sorts, here one only the objects' data holds.
    for (name, rank) in [("third", "3"), ("first", "1"), ("second", "2")] {
        c.ok(&[
            "create",
            "configmap",
            name,
            "-n",
            "team-a",
            &format!("--from-literal=rank={rank}"),
            "--from-literal=sorted=yes",
        ]);
    }
    c.ok(&["delete", "configmap", "lit", "-n", "team-a"]);
    let sorted = c.ok(&["get", "cm", "-n", "team-a", "--sort-by=.data.rank"]);
    // (kube-root-ca.crt, which has no rank, is the controllers'.)
    let names: Vec<&str> = sorted
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "kube-root-ca.crt")
        .collect();
    assert_eq!(names, ["NAME", "first", "second", "third"], "{sorted}");
    // Deleting a namespace empties it, then removes it.
    c.ok(&["delete", "namespace", "team-a"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c.run(33, &["get", "namespace", "team-a"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "namespace team-a still there"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !c.run(33, &["get", "cm", "first", "-n", "team-a"])
            .status
            .success()
    );

    // Services: defaults, a ClusterIP from 10.96.0.0/12, the `kubernetes` Service, NodePorts.
    let svcs = c.ok(&["get", "svc", "-o", "wide"]);
    assert_eq!(
        lines_with(
            &svcs,
            &[
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
                "SELECTOR"
            ]
        ),
        1,
        "{svcs}"
    );
    assert_eq!(
        lines_with(
            &svcs,
            &["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
        ),
        1,
        "{svcs}"
    );
    let svc: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "svc", "web", "-o", "json"])).unwrap();
    let ip: std::net::Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        u32::from(ip) >> 20,
        u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) >> 20,
        "{ip} in 10.96.0.0/12"
    );
    assert_eq!(svc["spec"]["clusterIPs"][0], svc["spec"]["clusterIP"]);
    assert_eq!(
        (
            &svc["spec"]["type"],
            &svc["spec"]["sessionAffinity"],
            &svc["spec"]["ports"][0]["protocol"]
        ),
        (
            &serde_json::json!("ClusterIP"),
            &serde_json::json!("None"),
            &serde_json::json!("TCP")
        )
    );
    let node_port = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30080\n"
        )
    };
    let np1 = c.file("np1.yaml", &node_port("np1"));
    let np2 = c.file("np2.yaml", &node_port("np2"));
    assert!(c.ok(&["apply", "-f", &np1]).contains("service/np1 created"));
    let taken = c.fails(&["apply", "-f", &np2]);
    assert!(
        taken.contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{taken}"
    );
    c.ok(&["delete", "svc", "np1"]);
    assert!(
        c.ok(&["apply", "-f", &np2]).contains("service/np2 created"),
        "a released port can be taken again"
    );
    c.ok(&["delete", "svc", "np2"]);

    // Output formats.
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    let yaml = c.ok(&["get", "cm", "settings", "-o", "yaml"]);
    assert!(
        yaml.contains("mode: fast") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "secret", "creds", "-o", "json"])).unwrap();
    assert_eq!(
        json["data"]["password"], "czNjcmV0",
        "stringData folded into base64 data"
    );
    assert!(json.pointer("/stringData").is_none());
    let wide = c.ok(&["get", "deploy", "-o", "wide"]);
    assert_eq!(
        lines_with(
            &wide,
            &[
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ]
        ),
        1,
        "{wide}"
    );
    assert_eq!(
        lines_with(&wide, &["web", "0/3", "web", "nginx:1", "app=web"]),
        1,
        "{wide}"
    );
    let names = c.ok(&["get", "cm,secret,deploy,svc", "-l", "app=web", "-o", "name"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "configmap/settings",
            "deployment.apps/web",
            "secret/creds",
            "service/web"
        ]
    );
    let table = c.ok(&["get", "cm", "settings"]);
    assert_eq!(lines_with(&table, &["NAME", "DATA", "AGE"]), 1, "{table}");
    assert_eq!(lines_with(&table, &["settings", "1"]), 1, "{table}");
    let described = c.ok(&["describe", "cm", "settings"]);
    assert!(
        described.contains("Name:") && described.contains("settings") && described.contains("mode"),
        "{described}"
    );

    // Mutations.
    assert!(
        c.ok(&["label", "cm", "settings", "tier=fe"])
            .contains("configmap/settings labeled")
    );
    assert!(
        c.ok(&["annotate", "cm", "settings", "note=hello"])
            .contains("configmap/settings annotated")
    );
    assert_eq!(
        c.ok(&["get", "cm", "-l", "tier=fe", "-o", "name"]).trim(),
        "configmap/settings"
    );
    assert!(
        c.ok(&["scale", "deploy", "web", "--replicas=5"])
            .contains("deployment.apps/web scaled")
    );
    assert!(
        c.ok(&["set", "image", "deploy/web", "web=nginx:2"])
            .contains("deployment.apps/web image updated")
    );
    let deploy: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "deploy", "web", "-o", "json"])).unwrap();
    assert_eq!(deploy["spec"]["replicas"], 5);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 80,
        "strategic merge kept the ports"
    );
    // Upstream's defaults, filled in by the server.
    assert_eq!(deploy["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        "25%"
    );
    assert_eq!(deploy["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(deploy["spec"]["progressDeadlineSeconds"], 600);
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(container["terminationMessagePolicy"], "File");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["restartPolicy"],
        "Always"
    );
    assert!(
        deploy["metadata"]["generation"].as_i64().unwrap() >= 3,
        "generation follows spec changes"
    );
    c.ok(&[
        "patch",
        "cm",
        "settings",
        "-p",
        r#"{"data":{"strategic":"1"}}"#,
    ]);
    c.ok(&[
        "patch",
        "cm",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"merge":"2"}}"#,
    ]);
    c.ok(&[
        "patch",
        "cm",
        "settings",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/json","value":"3"}]"#,
    ]);
    let data = c.ok(&["get", "cm", "settings", "-o", "jsonpath={.data}"]);
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        data,
        serde_json::json!({"mode": "fast", "strategic": "1", "merge": "2", "json": "3"})
    );
    let editor = c.file(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/mode: fast/mode: edited/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let edited = c
        .command(33, &["edit", "cm", "settings"])
        .env("KUBE_EDITOR", &editor)
        .output()
        .unwrap();
    assert!(
        edited.status.success(),
        "edit: {}",
        String::from_utf8_lossy(&edited.stderr)
    );
    assert_eq!(
        c.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"]),
        "edited"
    );

    // A stale replace is a Conflict, and changes nothing.
    let stale = c.file(
        "stale.json",
        &c.ok(&["get", "cm", "settings", "-o", "json"]),
    );
    c.ok(&["label", "cm", "settings", "bump=1"]);
    let stale_body = std::fs::read_to_string(&stale)
        .unwrap()
        .replace("\"edited\"", "\"stale\"");
    std::fs::write(&stale, stale_body).unwrap();
    let conflict = c.fails(&["replace", "-f", &stale]);
    assert!(
        conflict.contains("Error from server (Conflict)")
            && conflict.contains("Operation cannot be fulfilled on configmaps \"settings\": the object has been modified; please apply your changes to the latest version and try again"),
        "{conflict}"
    );
    assert_eq!(
        c.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"]),
        "edited"
    );

    // Watch sees a change made by another kubectl: first the current state, then the change.
    let mut watch = c
        .command(
            33,
            &[
                "get",
                "cm",
                "settings",
                "-w",
                "-o",
                "jsonpath={.data.mode}{\"\\n\"}",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let next_line = || {
        lines
            .recv_timeout(Duration::from_secs(20))
            .expect("watch output")
    };
    assert_eq!(next_line(), "edited");
    c.ok(&[
        "patch",
        "cm",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"mode":"watched"}}"#,
    ]);
    assert_eq!(next_line(), "watched");
    let _ = watch.kill();
    let _ = watch.wait();

    // Errors, with upstream's words, storing nothing.
    let missing = c.fails(&["get", "cm", "nope"]);
    assert_eq!(
        missing.trim(),
        "Error from server (NotFound): configmaps \"nope\" not found"
    );
    let bad_name = c.file(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
    );
    let invalid = c.fails(&["apply", "-f", &bad_name]);
    assert!(
        invalid.contains("The ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"),
        "{invalid}"
    );
    let unknown = c.file(
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unknown\nfoo: 1\n",
    );
    let strict = c.fails(&["apply", "-f", &unknown]);
    assert!(
        strict.contains("Error from server (BadRequest)")
            && strict.contains("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"foo\""),
        "{strict}"
    );
    let wrong_type = c.file(
        "wrong.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: wrong\ndata:\n  a: 1\n",
    );
    let wrong = c.fails(&["apply", "-f", &wrong_type]);
    assert!(
        wrong.contains("Error from server (BadRequest)")
            && wrong.contains("ConfigMap in version \"v1\" cannot be handled as a ConfigMap"),
        "{wrong}"
    );
    let typo = c.file(
        "typo.yaml",
        &MANIFEST.replace("image: nginx:1", "image: nginx:1\n        imagee: typo"),
    );
    let nested = c.fails(&["apply", "-f", &typo]);
    assert!(
        nested.contains("unknown field \"spec.template.spec.containers[0].imagee\""),
        "{nested}"
    );
    // --validate=warn: stored without the field, with upstream's warning.
    let warned = c.run(33, &["create", "-f", &unknown, "--validate=warn"]);
    assert!(warned.status.success());
    assert!(String::from_utf8_lossy(&warned.stderr).contains("Warning: unknown field \"foo\""));
    let stored: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "cm", "unknown", "-o", "json"])).unwrap();
    assert!(stored.get("foo").is_none(), "unknown field pruned");
    c.ok(&["delete", "cm", "unknown"]);
    let malformed = c.file(
        "malformed.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n",
    );
    c.fails(&["apply", "-f", &malformed]);
    let big = c.file(
        "big.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  blob: {}\n",
            "x".repeat(3 * 1024 * 1024 + 10)
        ),
    );
    let too_large = c.fails(&["create", "-f", &big, "--validate=false"]);
    assert!(
        too_large.contains("Error from server (RequestEntityTooLarge)"),
        "{too_large}"
    );
    let all_cms = c.ok(&["get", "cm", "-o", "name"]);
    assert_eq!(
        all_cms.trim(),
        "configmap/kube-root-ca.crt\nconfigmap/settings",
        "failed requests stored nothing"
    );

    // Delete: wait for it, by name, by label, --all.
    let waiter = c
        .command(33, &["wait", "--for=delete", "deploy/web", "--timeout=20s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        c.ok(&["delete", "deploy", "web"])
            .contains("deployment.apps \"web\" deleted")
    );
    let waited = waiter.wait_with_output().unwrap();
    assert!(waited.status.success(), "wait --for=delete");
    assert!(
        c.ok(&["delete", "cm,secret", "-l", "app=web"])
            .contains("secret \"creds\" deleted")
    );
    assert!(
        c.ok(&["delete", "svc", "--all"])
            .contains("service \"web\" deleted")
    );
    let rest = c.run(33, &["get", "cm,secret,deploy,svc", "-o", "name"]);
    assert_eq!(
        String::from_utf8_lossy(&rest.stdout).trim(),
        "configmap/kube-root-ca.crt"
    );
}

#[test]
fn kubectl_everyday_on_sqlite() {
    everyday(&Cluster::start(false));
}

#[test]
fn kubectl_everyday_on_etcd() {
    everyday(&Cluster::start(true));
}

#[test]
fn older_kubectl_versions_work() {
    let c = Cluster::start(false);
    let cm = c.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old\ndata:\n  a: b\n",
    );
    for minor in 27..=32 {
        let ns = c.ok_with(minor, &["get", "ns"]);
        assert!(ns.contains("kube-system"), "1.{minor}: {ns}");
        // kubectl 1.27 and 1.28 read OpenAPI v2 in protobuf first, to learn that the server
        // validates fields.
        assert!(
            c.ok_with(minor, &["apply", "-f", &cm])
                .contains("configmap/old"),
            "1.{minor} apply"
        );
        assert_eq!(
            c.ok_with(minor, &["get", "cm", "old", "-o", "jsonpath={.data.a}"]),
            "b"
        );
        assert!(
            c.ok_with(minor, &["label", "cm", "old", &format!("v=1-{minor}")])
                .contains("labeled")
        );
        assert!(
            c.ok_with(minor, &["delete", "cm", "old"])
                .contains("deleted")
        );
    }
}

#[test]
fn kubectl_explain_reads_openapi_v3() {
    let c = Cluster::start(false);
    // 1.29 is the oldest kubectl that explains from OpenAPI v3 alone.
    for minor in [29, 33] {
        let spec = c.ok_with(minor, &["explain", "deployment.spec"]);
        for line in [
            "GROUP:      apps",
            "KIND:       Deployment",
            "VERSION:    v1",
            "FIELD: spec <DeploymentSpec>",
            "    Specification of the desired behavior of the Deployment.",
            "  replicas\t<integer>",
            "  template\t<PodTemplateSpec> -required-",
        ] {
            assert!(
                spec.lines().any(|l| l == line),
                "1.{minor}: {line:?} in:\n{spec}"
            );
        }
        assert!(
            spec.contains("Number of desired pods."),
            "1.{minor}:\n{spec}"
        );

        let image = c.ok_with(minor, &["explain", "pods.spec.containers.image"]);
        for line in ["KIND:       Pod", "VERSION:    v1", "FIELD: image <string>"] {
            assert!(
                image.lines().any(|l| l == line),
                "1.{minor}: {line:?} in:\n{image}"
            );
        }
        assert!(
            image.contains("Container image name."),
            "1.{minor}:\n{image}"
        );
        assert!(!image.contains("GROUP:"), "1.{minor}:\n{image}");
    }
    // metadata is optional, as upstream has it.
    let pod = c.ok(&["explain", "pods"]);
    assert!(
        pod.lines().any(|l| l == "  metadata\t<ObjectMeta>"),
        "{pod}"
    );
    // A list of objects, a map, and a kind of another group.
    let containers = c.ok(&["explain", "pod.spec.containers"]);
    assert!(
        containers.contains("FIELD: containers <[]Container>"),
        "{containers}"
    );
    let labels = c.ok(&["explain", "cm.metadata.labels"]);
    assert!(
        labels.contains("FIELD: labels <map[string]string>"),
        "{labels}"
    );
    let hpa = c.ok(&[
        "explain",
        "hpa.spec.metrics",
        "--api-version=autoscaling/v2",
    ]);
    assert!(hpa.contains("FIELD: metrics <[]MetricSpec>"), "{hpa}");
    let missing = c.fails(&["explain", "deployment.spec.nosuchfield"]);
    assert!(
        missing.contains("field \"nosuchfield\" does not exist"),
        "{missing}"
    );

    // OpenAPI v2 as JSON, for JSON clients, with the same definitions.
    let v2: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/openapi/v2"])).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    assert_eq!(
        v2["definitions"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
}

#[test]
fn kubectl_explain_and_validation_read_openapi_v2_protobuf() {
    let c = Cluster::start(false);
    for minor in [27, 28] {
        // kubectl 1.27 and 1.28 find the resource through OpenAPI v2, which they ask for in
        // protobuf only, and then print from v3 by default...
        let spec = c.ok_with(minor, &["explain", "deployment.spec"]);
        for line in [
            "GROUP:      apps",
            "KIND:       Deployment",
            "FIELD: spec <DeploymentSpec>",
            "  template\t<PodTemplateSpec> -required-",
        ] {
            assert!(
                spec.lines().any(|l| l == line),
                "1.{minor}: {line:?} in:\n{spec}"
            );
        }
        // ... or from v2 alone, in v2's layout.
        let explain =
            |what: &str| c.ok_with(minor, &["explain", what, "--output=plaintext-openapiv2"]);
        let spec = explain("deployment.spec");
        for line in [
            "KIND:     Deployment",
            "VERSION:  apps/v1",
            "RESOURCE: spec <Object>",
            "DESCRIPTION:",
            "     Specification of the desired behavior of the Deployment.",
            "     DeploymentSpec is the specification of the desired behavior of the",
            "FIELDS:",
            "   replicas\t<integer>",
            "     Number of desired pods. This is a pointer to distinguish between explicit",
            "   selector\t<Object> -required-",
            "   strategy\t<Object>",
            "   template\t<Object> -required-",
        ] {
            assert!(
                spec.lines().any(|l| l == line),
                "1.{minor}: {line:?} in:\n{spec}"
            );
        }
        let image = explain("pods.spec.containers.image");
        for line in ["KIND:     Pod", "VERSION:  v1", "FIELD:    image <string>"] {
            assert!(
                image.lines().any(|l| l == line),
                "1.{minor}: {line:?} in:\n{image}"
            );
        }
        assert!(
            image.contains("Container image name."),
            "1.{minor}:\n{image}"
        );
        let pod = explain("pods");
        assert!(
            pod.lines().any(|l| l == "   metadata\t<Object>"),
            "1.{minor}:\n{pod}"
        );
        let containers = explain("pod.spec.containers");
        assert!(
            containers
                .lines()
                .any(|l| l == "RESOURCE: containers <[]Object>"),
            "1.{minor}:\n{containers}"
        );
        let labels = explain("cm.metadata.labels");
        assert!(
            labels
                .lines()
                .any(|l| l == "FIELD:    labels <map[string]string>"),
            "1.{minor}:\n{labels}"
        );
        let missing = c.run(
            minor,
            &[
                "explain",
                "deployment.spec.nosuchfield",
                "--output=plaintext-openapiv2",
            ],
        );
        assert!(!missing.status.success());
        let stderr = String::from_utf8_lossy(&missing.stderr);
        assert_eq!(
            stderr.trim(),
            "error: field \"nosuchfield\" does not exist",
            "1.{minor}"
        );

        // `apply` with an unknown field: the server validates (the v2 PATCH operations list
        // fieldValidation), and rejects it as upstream.
        let name = format!("unknown-{minor}");
        let unknown = c.file(
            &format!("{name}.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\nfoo: 1\n"),
        );
        let strict = c.run(minor, &["apply", "-f", &unknown]);
        assert!(!strict.status.success());
        let stderr = String::from_utf8_lossy(&strict.stderr);
        assert!(
            stderr.contains("Error from server (BadRequest)")
                && stderr.contains("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"foo\""),
            "1.{minor}: {stderr}"
        );
        let warned = c.run(minor, &["apply", "-f", &unknown, "--validate=warn"]);
        assert!(warned.status.success(), "1.{minor}: {warned:?}");
        assert!(
            String::from_utf8_lossy(&warned.stderr).contains("Warning: unknown field \"foo\""),
            "1.{minor}: {warned:?}"
        );
        c.ok_with(minor, &["delete", "cm", &name]);
    }
}

#[test]
fn anonymous_requests_are_refused_except_health() {
    let c = Cluster::start(false);
    let server = c.server_url();
    let curl = |path: &str| {
        let out = Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{server}{path}"),
            ])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(curl(path), "200", "{path}");
    }
    for path in [
        "/api",
        "/api/v1/namespaces",
        "/apis/apps/v1/deployments",
        "/metrics",
    ] {
        assert_eq!(curl(path), "401", "{path}");
    }
    let token = c.admin_token();
    let out = Command::new("curl")
        .args([
            "-sk",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{server}/api/v1/namespaces/default"),
        ])
        .output()
        .unwrap();
    let ns: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ns["metadata"]["name"], "default");
    // Metrics for authenticated callers, counting that request.
    let metrics = c.ok(&["get", "--raw", "/metrics"]);
    assert!(
        metrics.contains("# TYPE apiserver_request_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("apiserver_request_total{verb=\"GET\",code=\"200\"}"),
        "{metrics}"
    );
}

/// Large responses go out gzip-encoded to clients that accept gzip, as upstream's
/// APIResponseCompression does above 128 KiB: kubectl (whose HTTP transport asks for gzip)
/// reads them as ever; raw HTTP shows the encoding, and that small responses, clients that do
/// not ask and watches get none.
#[test]
fn large_responses_are_gzip_encoded() {
    let c = Cluster::start(false);
    c.ok(&["create", "namespace", "big"]);
    let items: Vec<serde_json::Value> = (0..300)
        .map(|i| {
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i:03}"), "namespace": "big"},
                "data": {"payload": "p".repeat(600)}})
        })
        .collect();
    let list = c.file(
        "big.json",
        &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    );
    c.ok(&["create", "-f", &list]);
    let listed = c.ok(&["get", "cm", "-n", "big", "--no-headers"]);
    let ours = |name: &str| name.starts_with("cm-");
    assert_eq!(listed.lines().filter(|l| ours(l)).count(), 300, "{listed}");

    let server = c.server_url();
    let token = c.admin_token();
    let auth = format!("Authorization: Bearer {token}");
    // The response headers (lower-cased) and the body as curl hands it over.
    let curl = |path: &str, extra: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-sk",
                "-D",
                "-",
                "-o",
                "/dev/stderr",
                "-m",
                "2",
                "-H",
                &auth,
            ])
            .args(extra)
            .arg(format!("{server}{path}"))
            .output()
            .expect("curl");
        (
            String::from_utf8_lossy(&out.stdout).to_ascii_lowercase(),
            out.stderr,
        )
    };
    let gzip = ["-H", "Accept-Encoding: gzip"];
    let (headers, body) = curl("/api/v1/namespaces/big/configmaps", &gzip);
    assert!(headers.contains("content-encoding: gzip"), "{headers}");
    assert!(headers.contains("vary: accept-encoding"), "{headers}");
    assert!(body.len() < 64 * 1024, "compressed to {} bytes", body.len());
    assert_eq!(&body[..2], b"\x1f\x8b", "a gzip stream");
    let (_, body) = curl("/api/v1/namespaces/big/configmaps", &["--compressed"]);
    let decoded: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let items = decoded["items"].as_array().unwrap().iter();
    let names = items.filter_map(|i| i["metadata"]["name"].as_str());
    assert_eq!(names.filter(|n| ours(n)).count(), 300);
    for (path, extra) in [
        ("/api/v1/namespaces/big/configmaps", &[][..]),
        ("/api/v1/namespaces/big/configmaps/cm-000", &gzip[..]),
        ("/api/v1/namespaces/big/configmaps?watch=true", &gzip[..]),
    ] {
        let (headers, _) = curl(path, extra);
        assert!(headers.starts_with("http/"), "{path}: {headers}");
        assert!(!headers.contains("content-encoding"), "{path}: {headers}");
    }
}

/// kubectl's generators (`create deployment|job|cronjob|service|ingress|...`, `run`,
/// `expose`) send protobuf bodies; what gets stored is what upstream stores for them.
#[test]
fn kubectl_create_generators_send_protobuf() {
    let c = Cluster::start(false);
    let json = |args: &[&str]| c.json(args);
    assert!(
        c.ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--port=80",
            "--replicas=0"
        ])
        .contains("deployment.apps/web created")
    );
    let d = json(&["get", "deployment", "web"]);
    // A pointer set to zero survives; Go's always-sent plain zeros and empty strings do not.
    assert_eq!(d["spec"]["replicas"], 0);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        container["ports"],
        serde_json::json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    for noise in ["paused", "minReadySeconds"] {
        assert!(d["spec"].get(noise).is_none(), "{noise} in {}", d["spec"]);
    }
    assert!(container.get("stdin").is_none(), "{container}");
    assert!(
        d["spec"]["template"]["metadata"]
            .get("creationTimestamp")
            .is_none()
    );

    assert!(
        c.ok(&[
            "create",
            "job",
            "once",
            "--image=busybox",
            "--",
            "echo",
            "hi"
        ])
        .contains("job.batch/once created")
    );
    let job = json(&["get", "job", "once"]);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"].is_string()
    );

    // `kubectl autoscale` without --cpu-percent: the server's defaults give the autoscaler its
    // floor and the CPU target, as upstream's.
    assert!(
        c.ok(&["autoscale", "deployment", "web", "--max=4"])
            .contains("horizontalpodautoscaler.autoscaling/web autoscaled")
    );
    let hpa = json(&["get", "horizontalpodautoscalers.v2.autoscaling", "web"]);
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(
        hpa["spec"]["metrics"],
        serde_json::json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );

    c.ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox",
        "--schedule=*/5 * * * *",
    ]);
    assert_eq!(
        json(&["get", "cronjob", "tick"])["spec"]["schedule"],
        "*/5 * * * *"
    );

    c.ok(&["create", "service", "clusterip", "back", "--tcp=80:8080"]);
    let svc = json(&["get", "service", "back"]);
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["targetPort"], 8080);
    assert!(port.get("nodePort").is_none(), "{port}");
    c.ok(&["create", "service", "nodeport", "edge", "--tcp=80"]);
    let node_port = json(&["get", "service", "edge"])["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap();
    assert!((30000..=32767).contains(&node_port), "{node_port}");

    // Go's inline structs (IngressRuleValue) flatten into their parent in JSON.
    c.ok(&[
        "create",
        "ingress",
        "front",
        "--rule=example.com/app=back:80",
    ]);
    let ing = json(&["get", "ingress", "front"]);
    let rule = &ing["spec"]["rules"][0];
    assert_eq!(rule["host"], "example.com");
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"]["name"],
        "back"
    );
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"]["port"]["number"],
        80
    );

    for args in [
        &["create", "serviceaccount", "robot"][..],
        &["create", "role", "reader", "--verb=get", "--resource=pods"],
        &[
            "create",
            "rolebinding",
            "reads",
            "--role=reader",
            "--user=bob",
        ],
        &[
            "create",
            "clusterrole",
            "nodes",
            "--verb=list",
            "--resource=nodes",
        ],
        &["create", "quota", "small", "--hard=pods=10"],
        &["create", "priorityclass", "high", "--value=1000"],
        &[
            "create",
            "pdb",
            "keep",
            "--selector=app=web",
            "--min-available=1",
        ],
        &[
            "create",
            "secret",
            "docker-registry",
            "pull",
            "--docker-server=r",
            "--docker-username=u",
            "--docker-password=p",
        ],
        &["run", "solo", "--image=nginx", "--labels=app=solo"],
        &[
            "expose",
            "deployment",
            "web",
            "--port=8080",
            "--name=web-svc",
        ],
    ] {
        let out = c.ok(args);
        assert!(
            out.trim_end().ends_with(" created") || out.trim_end().ends_with(" exposed"),
            "{args:?}: {out}"
        );
    }
    assert_eq!(
        json(&["get", "role", "reader"])["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
    );
    assert_eq!(json(&["get", "pdb", "keep"])["spec"]["minAvailable"], 1);
    assert_eq!(json(&["get", "priorityclass", "high"])["value"], 1000);
    assert_eq!(
        json(&["get", "pod", "solo"])["metadata"]["labels"]["app"],
        "solo"
    );
    assert_eq!(
        json(&["get", "service", "web-svc"])["spec"]["selector"],
        serde_json::json!({"app": "web"})
    );
}

/// An autoscaler written in autoscaling/v1 reads in v2 and back, as upstream converts it:
/// v1's CPU target is v2's CPU utilization metric, and what v1 has no field for travels in
/// annotations.
#[test]
fn autoscalers_read_in_either_version() {
    let c = Cluster::start(false);
    let json = |args: &[&str]| c.json(args);
    let v1 = c.file(
        "v1.yaml",
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: old\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 4\n  targetCPUUtilizationPercentage: 70\n",
    );
    assert!(c.ok(&["apply", "-f", &v1]).contains("created"));
    let as_v2 = json(&["get", "horizontalpodautoscalers.v2.autoscaling", "old"]);
    assert_eq!(as_v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        as_v2["spec"]["metrics"],
        serde_json::json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 70}}}])
    );
    assert!(
        as_v2["spec"]
            .get("targetCPUUtilizationPercentage")
            .is_none()
    );
    let as_v1 = json(&["get", "horizontalpodautoscalers.v1.autoscaling", "old"]);
    assert_eq!(as_v1["apiVersion"], "autoscaling/v1");
    assert_eq!(as_v1["spec"]["targetCPUUtilizationPercentage"], 70);
    assert!(as_v1["spec"].get("metrics").is_none());
    // The v1 manifest applied again changes nothing.
    assert!(c.ok(&["apply", "-f", &v1]).contains("unchanged"));
    // A v1 list and a v1 watch are converted too.
    let list = json(&["get", "horizontalpodautoscalers.v1.autoscaling"]);
    assert_eq!(
        list["items"][0]["spec"]["targetCPUUtilizationPercentage"],
        70
    );
    let watched = c.ok(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers?watch=true&timeoutSeconds=1",
    ]);
    let event: serde_json::Value = serde_json::from_str(watched.lines().next().unwrap()).unwrap();
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["apiVersion"], "autoscaling/v1");
    assert_eq!(
        event["object"]["spec"]["targetCPUUtilizationPercentage"],
        70
    );

    // A v2 autoscaler with a metric v1 cannot express: v1 sees it in the annotation.
    c.ok(&[
        "apply",
        "-f",
        &c.file(
            "v2.yaml",
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: new\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 4\n  metrics:\n  - type: Pods\n    pods:\n      metric: {name: rps}\n      target: {type: AverageValue, averageValue: 1k}\n",
        ),
    ]);
    let as_v1 = json(&["get", "horizontalpodautoscalers.v1.autoscaling", "new"]);
    let annotation = as_v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&annotation).unwrap(),
        serde_json::json!([{"type": "Pods", "pods": {"metricName": "rps", "targetAverageValue": "1k"}}])
    );
    // Labelled through v1, the metric survives in v2.
    c.ok(&[
        "label",
        "horizontalpodautoscalers.v1.autoscaling",
        "new",
        "tier=web",
    ]);
    let as_v2 = json(&["get", "horizontalpodautoscalers.v2.autoscaling", "new"]);
    assert_eq!(as_v2["metadata"]["labels"]["tier"], "web");
    assert_eq!(as_v2["spec"]["metrics"][0]["pods"]["metric"]["name"], "rps");
    assert!(
        as_v2["metadata"]
            .get("annotations")
            .and_then(|a| a.get("autoscaling.alpha.kubernetes.io/metrics"))
            .is_none(),
        "{as_v2}"
    );
}

/// `--dry-run=server` and `kubectl diff` (a dry-run PATCH): everything is checked and the
/// answer shows the result, but nothing is stored.
#[test]
fn server_side_dry_run_and_diff() {
    let c = Cluster::start(false);
    assert_eq!(
        c.ok(&[
            "create",
            "configmap",
            "dry",
            "--from-literal=a=b",
            "--dry-run=server"
        ])
        .trim(),
        "configmap/dry created (server dry run)"
    );
    assert!(c.fails(&["get", "configmap", "dry"]).contains("NotFound"));

    let deploy = |replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n"
        )
    };
    let one = c.file("one.yaml", &deploy(1));
    let three = c.file("three.yaml", &deploy(3));
    c.ok(&["apply", "-f", &one]);
    let replicas = || c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]);
    // The generation, not the resourceVersion: the deployment controller writes status
    // meanwhile, but only a spec change (what a dry run must not store) bumps the generation.
    let generation = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.metadata.generation}",
    ]);

    // kubectl diff exits 1 when there are differences.
    let out = c.run(33, &["diff", "-f", &three]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(
        diff.contains("-  replicas: 1") && diff.contains("+  replicas: 3"),
        "{diff}"
    );
    assert_eq!(c.run(33, &["diff", "-f", &one]).status.code(), Some(0));

    assert!(
        c.ok(&["apply", "-f", &three, "--dry-run=server"])
            .contains("(server dry run)")
    );
    assert!(
        c.ok(&["scale", "deploy", "web", "--replicas=7", "--dry-run=server"])
            .contains("(server dry run)")
    );
    assert!(
        c.ok(&["delete", "deploy", "web", "--dry-run=server"])
            .contains("(server dry run)")
    );
    assert_eq!(replicas(), "1");
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.generation}"
        ]),
        generation,
        "a dry run wrote"
    );
}

/// Per-kind validation: upstream's field errors for everyday mistakes, and nothing stored.
#[test]
fn invalid_objects_get_upstream_field_errors() {
    let c = Cluster::start(false);
    let not_found = |kind: &str, name: &str| {
        let out = c.fails(&["get", kind, name]);
        assert!(out.contains("NotFound"), "{kind}/{name} was stored: {out}");
    };
    let has_lines = |out: &str, lines: &[&str]| {
        for line in lines {
            assert!(out.lines().any(|l| l == *line), "{line:?} in:\n{out}");
        }
    };

    // A selector that does not select the template's pods.
    let mismatch = c.file(
        "mismatch.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: other}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n",
    );
    let out = c.fails(&["apply", "-f", &mismatch]);
    assert!(
        out.contains("The Deployment \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"),
        "{out}"
    );
    not_found("deploy", "web");

    // Several errors at once: kubectl lists each cause.
    let several = c.file(
        "several.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {tier: \"front end\"}\nspec:\n  replicas: -1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: Web\n",
    );
    let out = c.fails(&["apply", "-f", &several]);
    has_lines(
        &out,
        &[
            "The Deployment \"web\" is invalid: ",
            "* metadata.labels: Invalid value: \"front end\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            "* spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "* spec.template.spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            "* spec.template.spec.containers[0].image: Required value",
        ],
    );
    not_found("deploy", "web");

    // A probe without a handler, a probe on port 0 and a spread constraint that cannot skew.
    let probes = c.file(
        "probes.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n        livenessProbe:\n          periodSeconds: 5\n        readinessProbe:\n          httpGet: {path: /ready, port: 0}\n      topologySpreadConstraints:\n      - maxSkew: 0\n        topologyKey: topology.kubernetes.io/zone\n        whenUnsatisfiable: DoNotSchedule\n        labelSelector:\n          matchLabels: {app: web}\n",
    );
    let out = c.fails(&["apply", "-f", &probes]);
    has_lines(
        &out,
        &[
            "The Deployment \"web\" is invalid: ",
            "* spec.template.spec.containers[0].livenessProbe: Required value: must specify a handler type",
            "* spec.template.spec.containers[0].readinessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "* spec.template.spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero",
        ],
    );
    not_found("deploy", "web");

    // Two containers on one host port, and `dnsPolicy: None` with no nameserver.
    let pod = c.file(
        "hostports.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hp\nspec:\n  dnsPolicy: None\n  dnsConfig:\n    searches: [cluster.local]\n  containers:\n  - name: a\n    image: nginx\n    ports: [{containerPort: 80, hostPort: 8080}]\n  - name: b\n    image: nginx\n    ports: [{containerPort: 81, hostPort: 8080}]\n",
    );
    let out = c.fails(&["apply", "-f", &pod]);
    has_lines(
        &out,
        &[
            "The Pod \"hp\" is invalid: ",
            "* spec.containers[1].ports[0].hostPort: Duplicate value: \"TCP//8080\"",
            "* spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None",
        ],
    );
    not_found("pod", "hp");

    // A token that expires within ten minutes, a downward API file of a spec field and a
    // divisor the memory resource does not take.
    let pod = c.file(
        "volumes.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: vol\nspec:\n  containers:\n  - name: a\n    image: nginx\n    env:\n    - name: MEM\n      valueFrom:\n        resourceFieldRef: {resource: limits.memory, divisor: 3Mi}\n  volumes:\n  - name: token\n    projected:\n      sources:\n      - serviceAccountToken: {path: token, expirationSeconds: 60}\n  - name: info\n    downwardAPI:\n      items:\n      - path: node\n        fieldRef: {fieldPath: spec.nodeName}\n",
    );
    let out = c.fails(&["apply", "-f", &pod]);
    has_lines(
        &out,
        &[
            "The Pod \"vol\" is invalid: ",
            "* spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes",
            "* spec.volumes[1].downwardAPI.fieldRef.fieldPath: Unsupported value: \"spec.nodeName\": supported values: \"metadata.annotations\", \"metadata.labels\", \"metadata.name\", \"metadata.namespace\", \"metadata.uid\"",
            "* spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: Invalid value: \"limits.memory\": only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource",
        ],
    );
    not_found("pod", "vol");

    // A disruption budget that asks for more than all of its pods.
    let pdb = c.file(
        "pdb.yaml",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: budget\nspec:\n  minAvailable: 150%\n  selector:\n    matchLabels: {app: web}\n",
    );
    let out = c.fails(&["apply", "-f", &pdb]);
    assert_eq!(
        out,
        "The PodDisruptionBudget \"budget\" is invalid: spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%\n"
    );
    not_found("pdb", "budget");

    // A claim that asks for no storage.
    let pvc = c.file(
        "pvc.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {}}\n",
    );
    let out = c.fails(&["apply", "-f", &pvc]);
    assert_eq!(
        out,
        "The PersistentVolumeClaim \"data\" is invalid: spec.resources[storage]: Required value\n"
    );
    not_found("pvc", "data");

    // A network policy peer that mixes an ipBlock with a pod selector.
    let np = c.file(
        "np.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: np\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8}\n      podSelector: {}\n",
    );
    let out = c.fails(&["apply", "-f", &np]);
    assert_eq!(
        out,
        "The NetworkPolicy \"np\" is invalid: spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer\n"
    );
    not_found("networkpolicy", "np");

    // A binding's roleRef is fixed once created; an empty rule grants nothing and is refused.
    let binding = |role: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: rb\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\nsubjects:\n- {{kind: User, name: jane}}\n"
        )
    };
    c.ok(&["apply", "-f", &c.file("rb.yaml", &binding("view"))]);
    let out = c.fails(&["apply", "-f", &c.file("rb2.yaml", &binding("edit"))]);
    assert!(
        out.contains("The RoleBinding \"rb\" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef"),
        "{out}"
    );
    c.ok(&["delete", "rolebinding", "rb"]);
    let role = c.file(
        "role.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: reader\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n",
    );
    let out = c.fails(&["apply", "-f", &role]);
    assert_eq!(
        out,
        "The Role \"reader\" is invalid: rules[0].verbs: Required value: verbs must contain at least one value\n"
    );
    not_found("role", "reader");

    // A user's priority class above the user range.
    let pc = c.file(
        "pc.yaml",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: too-high\nvalue: 2000000000\n",
    );
    let out = c.fails(&["apply", "-f", &pc]);
    assert_eq!(
        out,
        "The PriorityClass \"too-high\" is invalid: value: Forbidden: maximum allowed value of a user defined priority is 1000000000\n"
    );
    not_found("priorityclass", "too-high");

    // A storage class with no provisioner.
    let sc = c.file(
        "sc.yaml",
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: fast\nparameters: {type: ssd}\n",
    );
    let out = c.fails(&["apply", "-f", &sc]);
    assert_eq!(
        out,
        "The StorageClass \"fast\" is invalid: provisioner: Required value\n"
    );
    not_found("storageclass", "fast");

    // An Ingress with a malformed wildcard host and a relative Prefix path; an autoscaler
    // whose range is upside down.
    let out = c.fails(&[
        "apply",
        "-f",
        &c.file(
            "ingress.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: ing\nspec:\n  rules:\n  - host: \"*.bad*host\"\n    http:\n      paths:\n      - path: noslash\n        pathType: Prefix\n        backend: {service: {name: web, port: {number: 80}}}\n",
        ),
    ]);
    has_lines(
        &out,
        &[
            "The Ingress \"ing\" is invalid: ",
            "* spec.rules[0].host: Invalid value: \"*.bad*host\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            "* spec.rules[0].http.paths[0].path: Invalid value: \"noslash\": must be an absolute path",
        ],
    );
    not_found("ingress", "ing");
    let out = c.fails(&[
        "apply",
        "-f",
        &c.file(
            "hpa.yaml",
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: h\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  minReplicas: 5\n  maxReplicas: 2\n",
        ),
    ]);
    assert!(
        out.contains("The HorizontalPodAutoscaler \"h\" is invalid: spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"),
        "{out}"
    );
    not_found("hpa", "h");
    // Scaling rules out of range, after the server filled in the rest of `behavior`.
    let out = c.fails(&[
        "apply",
        "-f",
        &c.file(
            "hpa-behavior.yaml",
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: h\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 4\n  behavior:\n    scaleDown:\n      policies:\n      - {type: Percent, value: 0, periodSeconds: 2000}\n",
        ),
    ]);
    has_lines(
        &out,
        &[
            "The HorizontalPodAutoscaler \"h\" is invalid: ",
            "* spec.behavior.scaleDown.policies[0].value: Invalid value: 0: must be greater than zero",
            "* spec.behavior.scaleDown.policies[0].periodSeconds: Invalid value: 2000: must be less than or equal to 1800",
        ],
    );
    not_found("hpa", "h");

    // A CronJob schedule upstream's cron parser refuses, in its words.
    assert_eq!(
        c.fails(&[
            "create",
            "cronjob",
            "cj",
            "--image=busybox",
            "--schedule=61 * * * *",
        ]),
        "error: failed to create cronjob: CronJob.batch \"cj\" is invalid: spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61\n"
    );
    not_found("cronjob", "cj");
    // A time zone the tz database does not have.
    let out = c.fails(&[
        "apply",
        "-f",
        &c.file(
            "zoned.yaml",
            "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: cj\nspec:\n  schedule: \"0 9 * * *\"\n  timeZone: Mars/Olympus\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers:\n          - name: c\n            image: busybox\n",
        ),
    ]);
    assert!(
        out.contains("The CronJob \"cj\" is invalid: spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"),
        "{out}"
    );
    not_found("cronjob", "cj");

    // A Job's pods may not restart forever: the defaulted restartPolicy is refused.
    let out = c.fails(&[
        "create",
        "-f",
        &c.file(
            "job.yaml",
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pi\nspec:\n  template:\n    spec:\n      containers:\n      - name: pi\n        image: perl\n",
        ),
    ]);
    assert!(
        out.contains("The Job \"pi\" is invalid: spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""),
        "{out}"
    );
    not_found("job", "pi");

    // A container may not request more than its limit.
    let out = c.fails(&[
        "create",
        "-f",
        &c.file(
            "pod.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: greedy\nspec:\n  containers:\n  - name: c\n    image: nginx\n    resources:\n      requests: {cpu: \"2\"}\n      limits: {cpu: \"1\"}\n",
        ),
    ]);
    assert!(
        out.contains("The Pod \"greedy\" is invalid: spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"),
        "{out}"
    );
    not_found("pod", "greedy");

    // A Service needs ports.
    let out = c.fails(&[
        "create",
        "-f",
        &c.file(
            "svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  selector: {app: web}\n",
        ),
    ]);
    assert!(
        out.contains("The Service \"s\" is invalid: spec.ports: Required value"),
        "{out}"
    );
    not_found("svc", "s");

    // Updates: a bad label through a patch, an immutable selector, an immutable ConfigMap.
    c.ok(&["create", "configmap", "c1", "--from-literal=a=1"]);
    let out = c.fails(&[
        "patch",
        "cm",
        "c1",
        "-p",
        r#"{"metadata":{"labels":{"a":"bad value!"}}}"#,
    ]);
    assert!(
        out.contains("The ConfigMap \"c1\" is invalid: metadata.labels: Invalid value: \"bad value!\": a valid label must be an empty string"),
        "{out}"
    );
    assert_eq!(
        c.ok(&["get", "cm", "c1", "-o", "jsonpath={.metadata.labels}"]),
        ""
    );
    // (kubectl's own `create configmap` checks keys before sending; apply does not.)
    let bad_key = c.file(
        "badkey.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c2\ndata:\n  bad key: \"1\"\n",
    );
    let out = c.fails(&["apply", "-f", &bad_key]);
    assert!(
        out.contains("The ConfigMap \"c2\" is invalid: data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
        "{out}"
    );

    c.ok(&["create", "deployment", "web2", "--image=nginx"]);
    let out = c.fails(&[
        "patch",
        "deploy",
        "web2",
        "-p",
        r#"{"spec":{"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":{"labels":{"app":"x"}}}}}"#,
    ]);
    assert!(
        out.contains("The Deployment \"web2\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"),
        "{out}"
    );

    let frozen = c.file(
        "frozen.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\nimmutable: true\ndata:\n  a: \"1\"\n",
    );
    c.ok(&["apply", "-f", &frozen]);
    let out = c.fails(&["patch", "cm", "frozen", "-p", r#"{"data":{"a":"2"}}"#]);
    assert!(
        out.contains("The ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set"),
        "{out}"
    );
    assert_eq!(
        c.ok(&["get", "cm", "frozen", "-o", "jsonpath={.data.a}"]),
        "1"
    );

    // A pod's spec is fixed but for images and a few fields.
    c.ok(&["run", "p", "--image=nginx:1"]);
    c.ok(&["set", "image", "pod/p", "p=nginx:2"]);
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.spec.containers[0].image}"
        ]),
        "nginx:2"
    );
    let out = c.fails(&["set", "env", "pod/p", "A=1"]);
    assert!(
        out.contains("Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"),
        "{out}"
    );

    // RBAC names are path segments: colons are fine.
    c.ok(&[
        "create",
        "clusterrole",
        "system:aggregate-to-test",
        "--verb=get",
        "--resource=pods",
    ]);
}

/// Fields given twice in a JSON body: a warning by default, a strict decoding error under
/// `fieldValidation=Strict`, as upstream's decoder reports them.
#[test]
fn duplicate_fields_are_reported() {
    let c = Cluster::start(false);
    let dup = c.file(
        "dup.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"a":"1","a":"2"},"bogus":1}"#,
    );
    let strict = c.run(
        33,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
            "-f",
            &dup,
        ],
    );
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(!strict.status.success());
    assert!(
        stderr.contains("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"data.a\", unknown field \"bogus\""),
        "{stderr}"
    );
    assert!(c.fails(&["get", "cm", "dup"]).contains("NotFound"));

    let warn = c.run(
        33,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            &dup,
        ],
    );
    let stderr = String::from_utf8_lossy(&warn.stderr);
    assert!(warn.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: duplicate field \"data.a\"")
            && stderr.contains("Warning: unknown field \"bogus\""),
        "{stderr}"
    );
    // The last value wins, as with Go's decoder.
    assert_eq!(c.ok(&["get", "cm", "dup", "-o", "jsonpath={.data.a}"]), "2");
}

#[test]
fn server_side_apply() {
    let c = Cluster::start(false);
    let manifest = |replicas: u32, image: &str, labels: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {{{labels}}}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: {image}\n        ports:\n        - containerPort: 80\n"
        )
    };
    let get = |path: &str| c.ok(&["get", "deploy", "web", "-o", &format!("jsonpath={path}")]);

    // Creates.
    let first = c.file("first.yaml", &manifest(2, "nginx:1", "app: web, tier: fe"));
    assert_eq!(
        c.ok(&["apply", "--server-side", "-f", &first]),
        "deployment.apps/web serverside-applied\n"
    );
    assert_eq!(get("{.spec.replicas}"), "2");
    assert_eq!(get("{.spec.strategy.type}"), "RollingUpdate", "defaulted");

    // A changed manifest updates; a label dropped from it is removed from the object.
    let second = c.file("second.yaml", &manifest(2, "nginx:2", "app: web"));
    c.ok(&["apply", "--server-side", "-f", &second]);
    assert_eq!(get("{.spec.template.spec.containers[0].image}"), "nginx:2");
    assert_eq!(get("{.metadata.labels}"), r#"{"app":"web"}"#);

    // Managers show with --show-managed-fields (and not without).
    let yaml = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(yaml.contains("manager: kubectl\n"), "{yaml}");
    assert!(yaml.contains("operation: Apply"), "{yaml}");
    assert!(yaml.contains("fieldsType: FieldsV1"), "{yaml}");
    assert!(yaml.contains(r#"k:{"name":"web"}:"#), "{yaml}");
    assert!(
        !c.ok(&["get", "deploy", "web", "-o", "yaml"])
            .contains("managedFields")
    );

    // kubectl scale takes .spec.replicas; applying another value conflicts with it.
    c.ok(&["scale", "deploy", "web", "--replicas=5"]);
    let yaml = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(yaml.contains("subresource: scale"), "{yaml}");
    let third = c.file("third.yaml", &manifest(3, "nginx:2", "app: web"));
    let err = c.fails(&["apply", "--server-side", "-f", &third]);
    // kubectl scale sends no fieldManager: the manager is its User-Agent's product, which is
    // kubectl's file name ("kubectl" when installed as such).
    let bin = support::kubectl_bin(33);
    let scaler = bin.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains(&format!(
            "error: Apply failed with 1 conflict: conflict with \"{scaler}\" with subresource \"scale\" using apps/v1: .spec.replicas\n"
        )),
        "{err}"
    );
    assert!(
        err.contains("Please review the fields above--they currently have other managers."),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    assert_eq!(get("{.spec.replicas}"), "5");

    // Applying the live value is no conflict (the field is shared), forcing wins.
    c.ok(&[
        "apply",
        "--server-side",
        "-f",
        &c.file("five.yaml", &manifest(5, "nginx:2", "app: web")),
    ]);
    c.ok(&["apply", "--server-side", "--force-conflicts", "-f", &third]);
    assert_eq!(get("{.spec.replicas}"), "3");
    let yaml = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(
        !yaml.contains("subresource: scale"),
        "the scaler lost its only field:\n{yaml}"
    );

    // --dry-run=server stores nothing (the generation: the deployment controller may write
    // status meanwhile).
    let generation = get("{.metadata.generation}");
    let dry = c.ok(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        &c.file("dry.yaml", &manifest(9, "nginx:9", "app: web")),
    ]);
    assert!(dry.contains("serverside-applied (server dry run)"), "{dry}");
    assert_eq!(get("{.metadata.generation}"), generation);
    assert_eq!(get("{.spec.replicas}"), "3");
}

/// `kubectl apply --server-side` over what client-side `kubectl apply` created takes over the
/// fields whose values are still the ones the last-applied annotation records, and keeps that
/// annotation current, as upstream's server does; a field someone else changed since still
/// conflicts.
#[test]
fn server_side_apply_takes_over_from_client_side_apply() {
    let c = Cluster::start(false);
    let manifest = |image: &str, labels: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {{{labels}}}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: {image}\n"
        )
    };
    let get = |path: &str| c.ok(&["get", "deploy", "web", "-o", &format!("jsonpath={path}")]);

    assert_eq!(
        c.ok(&[
            "apply",
            "-f",
            &c.file("one.yaml", &manifest("nginx:1", "app: web"))
        ]),
        "deployment.apps/web created\n"
    );
    let two = c.file("two.yaml", &manifest("nginx:2", "app: web, tier: fe"));
    assert_eq!(
        c.ok(&["apply", "--server-side", "-f", &two]),
        "deployment.apps/web serverside-applied\n"
    );
    assert_eq!(get("{.spec.template.spec.containers[0].image}"), "nginx:2");
    assert_eq!(get("{.metadata.labels.tier}"), "fe");
    let text = get(r"{.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}");
    assert!(text.ends_with('\n'), "{text:?}");
    let annotation: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        annotation["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:2",
        "{annotation}"
    );
    assert!(
        annotation.pointer("/metadata/annotations").is_none(),
        "the annotation does not record itself: {annotation}"
    );
    let managers =
        c.json(&["get", "deploy", "web", "--show-managed-fields"])["metadata"]["managedFields"]
            .clone();
    let fields_of = |manager: &str| {
        managers
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == manager)
            .map(|e| e["fieldsV1"].clone())
            .unwrap_or_default()
    };
    let image_field = r#"/f:spec/f:template/f:spec/f:containers/k:{"name":"web"}/f:image"#;
    assert!(
        fields_of("kubectl").pointer(image_field).is_some(),
        "{managers}"
    );
    assert!(
        fields_of("kubectl-client-side-apply")
            .pointer(image_field)
            .is_none(),
        "{managers}"
    );
    // A later client-side apply starts from what the server-side one applied: the label
    // that its file no longer has is removed.
    c.ok(&[
        "apply",
        "-f",
        &c.file("three.yaml", &manifest("nginx:2", "app: web")),
    ]);
    assert_eq!(get("{.metadata.labels}"), r#"{"app":"web"}"#);

    // An image someone set since is theirs: it conflicts, with them alone.
    c.ok(&["set", "image", "deploy/web", "web=nginx:3"]);
    let err = c.fails(&[
        "apply",
        "--server-side",
        "-f",
        &c.file("four.yaml", &manifest("nginx:4", "app: web")),
    ]);
    assert!(
        err.contains(
            "error: Apply failed with 1 conflict: conflict with \"kubectl-set\" using apps/v1: .spec.template.spec.containers[name=\"web\"].image\n"
        ),
        "{err}"
    );
    assert_eq!(get("{.spec.template.spec.containers[0].image}"), "nginx:3");

    // A pod: kubectl 1.33 migrates its managedFields itself, then applies again. The second
    // apply no longer lists spec.priority, which Priority admission set at creation; the pod
    // keeps it (as upstream's admission copies it on update) instead of failing as a change
    // to the pod spec.
    let pod = c.file(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
    );
    c.ok(&["apply", "-f", &pod]);
    let out = c.run(33, &["apply", "--server-side", "-f", &pod]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pod/p serverside-applied\n"
    );
    assert_eq!(
        c.ok(&["get", "pod", "p", "-o", "jsonpath={.spec.priority}"]),
        "0"
    );
}

/// At most ten managers' updates are kept apart; older ones merge into "ancient-changes", as
/// upstream caps them, and every field stays owned.
#[test]
fn managed_fields_keep_at_most_ten_updaters() {
    let c = Cluster::start(false);
    c.ok(&["create", "configmap", "capped"]);
    for i in 1..=11 {
        c.ok(&[
            "annotate",
            "cm",
            "capped",
            &format!("a{i}=v"),
            &format!("--field-manager=m{i}"),
        ]);
    }
    let cm = c.json(&["get", "cm", "capped", "--show-managed-fields"]);
    let entries = cm["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 10, "{entries:#?}");
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["manager"] == "ancient-changes" && e["operation"] == "Update")
            .count(),
        1,
        "{entries:#?}"
    );
    for i in 1..=11 {
        let field = format!("/fieldsV1/f:metadata/f:annotations/f:a{i}");
        assert_eq!(
            entries
                .iter()
                .filter(|e| e.pointer(&field).is_some())
                .count(),
            1,
            "a{i} has one owner: {entries:#?}"
        );
    }
}

/// Service account tokens and RBAC as upstream: `kubectl create token` signs a token that
/// authenticates as the service account, which may do exactly what its bindings grant
/// (upstream's 403 messages otherwise); `auth whoami` and `auth can-i` answer from the same
/// rules; TokenReview and SubjectAccessReview answer for others; a deleted service account's
/// token stops working.
#[test]
fn service_account_tokens_and_rbac() {
    let c = Cluster::start(false);
    let who = c.ok(&["auth", "whoami"]);
    assert!(
        who.contains("kubernetes-admin") && who.contains("[system:masters system:authenticated]"),
        "{who}"
    );
    assert_eq!(c.ok(&["auth", "can-i", "delete", "pods"]), "yes\n");
    let (sa, token) = c.service_account_kubeconfig("team", "builder");
    let token = token.as_str();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let as_sa = |args: &[&str]| -> Vec<String> {
        ["--kubeconfig", sa.as_str()]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    };
    let run_sa = |args: &[&str]| {
        let args = as_sa(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        c.run(33, &args)
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let user = "system:serviceaccount:team:builder";

    let who = text(&run_sa(&["auth", "whoami"]).stdout);
    assert!(who.contains(user), "{who}");
    assert!(
        who.contains("[system:serviceaccounts system:serviceaccounts:team system:authenticated]"),
        "{who}"
    );
    let denied = run_sa(&["get", "pods"]);
    assert_eq!(
        text(&denied.stderr),
        format!(
            "Error from server (Forbidden): pods is forbidden: User \"{user}\" cannot list resource \"pods\" in API group \"\" in the namespace \"team\"\n"
        )
    );
    let no = run_sa(&["auth", "can-i", "list", "pods"]);
    assert_eq!(
        (text(&no.stdout), no.status.code()),
        ("no\n".into(), Some(1))
    );

    // A Role and a RoleBinding grant reading pods in the namespace, and nothing more.
    c.ok(&[
        "-n",
        "team",
        "create",
        "role",
        "pod-reader",
        "--verb=get,list,watch",
        "--resource=pods",
    ]);
    c.ok(&[
        "-n",
        "team",
        "create",
        "rolebinding",
        "builder-reads",
        "--role=pod-reader",
        "--serviceaccount=team:builder",
    ]);
    let allowed = run_sa(&["get", "pods"]);
    assert!(allowed.status.success(), "{}", text(&allowed.stderr));
    assert_eq!(
        text(&allowed.stderr),
        "No resources found in team namespace.\n"
    );
    assert_eq!(
        text(&run_sa(&["auth", "can-i", "list", "pods"]).stdout),
        "yes\n"
    );
    assert_eq!(
        text(&run_sa(&["auth", "can-i", "delete", "pods"]).stdout),
        "no\n"
    );
    assert_eq!(
        text(&run_sa(&["-n", "default", "get", "pods"]).stderr),
        format!(
            "Error from server (Forbidden): pods is forbidden: User \"{user}\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"\n"
        )
    );
    assert_eq!(
        text(&run_sa(&["get", "nodes"]).stderr),
        format!(
            "Error from server (Forbidden): nodes is forbidden: User \"{user}\" cannot list resource \"nodes\" in API group \"\" at the cluster scope\n"
        )
    );
    assert_eq!(
        text(&run_sa(&["create", "configmap", "x"]).stderr),
        format!(
            "error: failed to create configmap: configmaps is forbidden: User \"{user}\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"team\"\n"
        )
    );
    let rules = text(&run_sa(&["auth", "can-i", "--list"]).stdout);
    assert!(
        rules
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["pods", "[]", "[]", "[get", "list", "watch]"]),
        "{rules}"
    );
    // Nothing was stored by the refused write.
    assert!(
        c.fails(&["-n", "team", "get", "configmap", "x"])
            .contains("NotFound")
    );

    // The reviews, for callers that check others' tokens and rights.
    let review = c.file(
        "tokenreview.json",
        &format!(r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}"}}}}"#),
    );
    let answer: serde_json::Value = serde_json::from_str(&c.ok(&[
        "create",
        "--raw",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "-f",
        &review,
    ]))
    .unwrap();
    assert_eq!(answer["status"]["authenticated"], true, "{answer}");
    assert_eq!(answer["status"]["user"]["username"], user);
    let sar = c.file(
        "sar.json",
        &format!(r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{{"user":"{user}","groups":["system:serviceaccounts"],"resourceAttributes":{{"namespace":"team","verb":"watch","resource":"pods"}}}}}}"#),
    );
    let answer: serde_json::Value = serde_json::from_str(&c.ok(&[
        "create",
        "--raw",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "-f",
        &sar,
    ]))
    .unwrap();
    assert_eq!(
        answer["status"],
        serde_json::json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"builder-reads/team\" of Role \"pod-reader\" to ServiceAccount \"team/builder\""})
    );

    // Escalation: with `admin` in the namespace the service account may hand out what it
    // holds (`view`), not what it does not (`cluster-admin`, nodes); nothing refused is stored.
    c.ok(&[
        "-n",
        "team",
        "create",
        "rolebinding",
        "builder-admin",
        "--clusterrole=admin",
        "--serviceaccount=team:builder",
    ]);
    let granted = run_sa(&[
        "create",
        "rolebinding",
        "viewers",
        "--clusterrole=view",
        "--user=carol",
    ]);
    assert!(granted.status.success(), "{}", text(&granted.stderr));
    let held_by = format!(
        "user \"{user}\" (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:team\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:"
    );
    let takeover = text(
        &run_sa(&[
            "create",
            "rolebinding",
            "takeover",
            "--clusterrole=cluster-admin",
            "--serviceaccount=team:builder",
        ])
        .stderr,
    );
    assert!(
        takeover.starts_with(&format!("error: failed to create rolebinding: rolebindings.rbac.authorization.k8s.io \"takeover\" is forbidden: {held_by}\n{{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}}")),
        "{takeover}"
    );
    let role = text(
        &run_sa(&[
            "create",
            "role",
            "node-reader",
            "--verb=get",
            "--resource=nodes",
        ])
        .stderr,
    );
    assert_eq!(
        role,
        format!(
            "Error from server (Forbidden): roles.rbac.authorization.k8s.io \"node-reader\" is forbidden: {held_by}\n{{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"get\"]}}\n"
        )
    );
    assert!(
        c.fails(&["-n", "team", "get", "rolebinding", "takeover"])
            .contains("NotFound")
    );
    assert!(
        c.fails(&["-n", "team", "get", "role", "node-reader"])
            .contains("NotFound")
    );

    // Token requests that cannot be granted.
    assert_eq!(
        c.fails(&["-n", "team", "create", "token", "nobody"]),
        "error: failed to create token: serviceaccounts \"nobody\" not found\n"
    );
    assert_eq!(
        c.fails(&["-n", "team", "create", "token", "builder", "--duration=5m"]),
        "error: failed to create token: TokenRequest.authentication.k8s.io \"builder\" is invalid: spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes\n"
    );

    // A token bound to a pod lives as long as the pod (and fails to bind to a pod that runs
    // as another service account, or does not exist).
    c.ok(&[
        "-n",
        "team",
        "run",
        "bound",
        "--image=nginx:1",
        "--overrides={\"spec\":{\"serviceAccountName\":\"builder\"}}",
    ]);
    let pod_token = c.ok(&[
        "-n",
        "team",
        "create",
        "token",
        "builder",
        "--bound-object-kind=Pod",
        "--bound-object-name=bound",
    ]);
    let with_pod_token = format!("--token={}", pod_token.trim());
    let listed = run_sa(&[&with_pod_token, "get", "pods", "-o", "name"]);
    assert_eq!(
        text(&listed.stdout),
        "pod/bound\n",
        "{}",
        text(&listed.stderr)
    );
    assert_eq!(
        c.fails(&[
            "-n",
            "team",
            "create",
            "token",
            "default",
            "--bound-object-kind=Pod",
            "--bound-object-name=bound",
        ]),
        "error: failed to create token: cannot bind token for serviceaccount \"default\" to pod running with different serviceaccount name.\n"
    );
    assert_eq!(
        c.fails(&[
            "-n",
            "team",
            "create",
            "token",
            "builder",
            "--bound-object-kind=Pod",
            "--bound-object-name=nope",
        ]),
        "error: failed to create token: pods \"nope\" not found\n"
    );
    c.ok(&["-n", "team", "delete", "pod", "bound"]);
    assert_eq!(
        text(&run_sa(&[&with_pod_token, "get", "pods"]).stderr),
        "error: You must be logged in to the server (Unauthorized)\n"
    );
    assert!(
        run_sa(&["get", "pods"]).status.success(),
        "the unbound token still works"
    );

    // The token dies with its service account.
    c.ok(&["-n", "team", "delete", "serviceaccount", "builder"]);
    let gone = run_sa(&["get", "pods"]);
    assert_eq!(
        text(&gone.stderr),
        "error: You must be logged in to the server (Unauthorized)\n"
    );
}

#[test]
fn impersonation_and_the_review_resources() {
    let c = Cluster::start(false);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    // The reviews are in discovery, create-only, and in OpenAPI for `kubectl explain`.
    let reviews = c.ok(&[
        "api-resources",
        "--api-group=authorization.k8s.io",
        "-o",
        "wide",
    ]);
    for (name, namespaced, kind) in [
        (
            "localsubjectaccessreviews",
            "true",
            "LocalSubjectAccessReview",
        ),
        (
            "selfsubjectaccessreviews",
            "false",
            "SelfSubjectAccessReview",
        ),
        ("selfsubjectrulesreviews", "false", "SelfSubjectRulesReview"),
        ("subjectaccessreviews", "false", "SubjectAccessReview"),
    ] {
        assert_eq!(
            lines_with(
                &reviews,
                &[name, "authorization.k8s.io/v1", namespaced, kind, "create"]
            ),
            1,
            "{reviews}"
        );
    }
    let authn = c.ok(&["api-resources", "--api-group=authentication.k8s.io"]);
    assert_eq!(
        lines_with(&authn, &["tokenreviews", "TokenReview"]),
        1,
        "{authn}"
    );
    assert_eq!(lines_with(&authn, &["selfsubjectreviews"]), 1, "{authn}");
    let explained = c.ok(&["explain", "selfsubjectaccessreview.spec"]);
    assert!(explained.contains("resourceAttributes"), "{explained}");
    assert!(
        c.fails(&[
            "get",
            "--raw",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        ])
        .contains("(MethodNotAllowed)")
    );

    // The admin (system:masters) may act as anyone; the identity is what the flags say.
    let who = c.ok(&[
        "auth",
        "whoami",
        "--as=jane",
        "--as-group=devs",
        "--as-uid=u-7",
    ]);
    assert_eq!(lines_with(&who, &["Username", "jane"]), 1, "{who}");
    assert_eq!(lines_with(&who, &["UID", "u-7"]), 1, "{who}");
    assert!(who.contains("[devs system:authenticated]"), "{who}");
    let no = c.run(33, &["auth", "can-i", "list", "pods", "--as=jane"]);
    assert_eq!(
        (text(&no.stdout), no.status.code()),
        ("no\n".into(), Some(1))
    );
    assert_eq!(
        c.fails(&["get", "pods", "--as=jane"]),
        "Error from server (Forbidden): pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"\n"
    );
    c.ok(&[
        "create",
        "rolebinding",
        "jane-views",
        "--clusterrole=view",
        "--user=jane",
    ]);
    c.ok(&["create", "configmap", "settings", "--from-literal=a=1"]);
    assert!(
        c.ok(&["get", "configmaps", "--as=jane"])
            .contains("settings")
    );
    assert_eq!(
        c.fails(&["delete", "configmap", "settings", "--as=jane"]),
        "Error from server (Forbidden): configmaps \"settings\" is forbidden: User \"jane\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"default\"\n"
    );
    let sa = c.ok(&[
        "auth",
        "whoami",
        "--as=system:serviceaccount:default:default",
    ]);
    assert!(
        sa.contains("[system:serviceaccounts system:serviceaccounts:default system:authenticated]"),
        "{sa}"
    );

    // Anyone else needs the `impersonate` verb on each user, group (and uid) asked for.
    let (kubeconfig, _) = c.service_account_kubeconfig("team", "support");
    let support = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
        all.extend_from_slice(args);
        c.run(33, &all)
    };
    let user = "system:serviceaccount:team:support";
    assert_eq!(
        text(&support(&["-n", "default", "get", "configmaps", "--as=jane"]).stderr),
        format!(
            "Error from server (Forbidden): users \"jane\" is forbidden: User \"{user}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope\n"
        )
    );
    c.ok(&[
        "create",
        "clusterrole",
        "impersonate-jane",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=jane",
    ]);
    c.ok(&[
        "create",
        "clusterrolebinding",
        "support-is-jane",
        "--clusterrole=impersonate-jane",
        "--serviceaccount=team:support",
    ]);
    let as_jane = support(&["-n", "default", "get", "configmaps", "--as=jane"]);
    assert!(as_jane.status.success(), "{}", text(&as_jane.stderr));
    assert!(text(&as_jane.stdout).contains("settings"));
    assert_eq!(
        text(&support(&["-n", "default", "get", "configmaps", "--as=carol"]).stderr),
        format!(
            "Error from server (Forbidden): users \"carol\" is forbidden: User \"{user}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope\n"
        )
    );
    assert_eq!(
        text(
            &support(&[
                "-n",
                "default",
                "get",
                "configmaps",
                "--as=jane",
                "--as-group=system:masters"
            ])
            .stderr
        ),
        format!(
            "Error from server (Forbidden): groups \"system:masters\" is forbidden: User \"{user}\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope\n"
        )
    );
    // Acting as jane gives jane's rights, not the requester's or more.
    assert_eq!(
        text(
            &support(&[
                "-n",
                "default",
                "delete",
                "configmap",
                "settings",
                "--as=jane"
            ])
            .stderr
        ),
        "Error from server (Forbidden): configmaps \"settings\" is forbidden: User \"jane\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"default\"\n"
    );
    assert!(c.ok(&["get", "configmap", "settings"]).contains("settings"));
}

#[test]
fn clusterroles_aggregate_into_admin_edit_and_view() {
    let c = Cluster::start(false);
    let rules_of = |role: &str| -> Vec<serde_json::Value> {
        let obj: serde_json::Value =
            serde_json::from_str(&c.ok(&["get", "clusterrole", role, "-o", "json"])).unwrap();
        obj["rules"].as_array().cloned().unwrap_or_default()
    };
    let view = c.ok(&["get", "clusterrole", "view", "-o", "json"]);
    assert!(
        view.contains("rbac.authorization.k8s.io/aggregate-to-view"),
        "{view}"
    );
    let before = rules_of("admin").len();
    assert!(before > rules_of("edit").len() && rules_of("edit").len() > rules_of("view").len());

    // A role labelled aggregate-to-view adds its rule to view, and through edit to admin:
    // here reading secrets, which view alone does not grant.
    c.ok(&[
        "create",
        "rolebinding",
        "jane-views",
        "--clusterrole=view",
        "--user=jane",
    ]);
    let can_list_secrets = || {
        let out = c.run(33, &["auth", "can-i", "list", "secrets", "--as=jane"]);
        // can-i answers in its exit status as well as on stdout.
        let yes = String::from_utf8_lossy(&out.stdout).trim() == "yes";
        assert_eq!(yes, out.status.success());
        yes
    };
    assert!(!can_list_secrets());
    let widgets = c.file(
        "secret-lister.yaml",
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: secret-lister
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list"]
"#,
    );
    c.ok(&["apply", "-f", &widgets]);
    let added = serde_json::json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]});
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ["view", "edit", "admin"]
        .iter()
        .any(|r| !rules_of(r).contains(&added))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not aggregated: view {:?}\nserver log:\n{}",
            rules_of("view"),
            c.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(rules_of("admin").len(), before + 1);
    assert!(can_list_secrets());

    // Deleting it takes the rule away again.
    c.ok(&["delete", "clusterrole", "secret-lister"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while rules_of("admin").contains(&added) || rules_of("view").contains(&added) {
        assert!(std::time::Instant::now() < deadline, "still aggregated");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(rules_of("admin").len(), before);
    assert!(!can_list_secrets());
}

#[test]
fn bootstrap_roles_are_reconciled_when_the_server_starts() {
    let mut c = Cluster::start(false);
    let role = |c: &Cluster, name: &str| -> serde_json::Value {
        serde_json::from_str(&c.ok(&["get", "clusterrole", name, "-o", "json"])).unwrap()
    };
    let replace = |c: &Cluster, obj: &serde_json::Value, file: &str| {
        c.ok(&["replace", "-f", &c.file(file, &obj.to_string())]);
    };

    // Make `view` look as an older server seeded it (no aggregation, its own rules), pin
    // another role with autoupdate "false", and delete one outright.
    let mut view = role(&c, "view");
    view.as_object_mut().unwrap().remove("aggregationRule");
    view["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("rbac.authorization.k8s.io/aggregate-to-edit");
    view["rules"] =
        serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
    replace(&c, &view, "view.json");
    let mut pinned = role(&c, "system:public-info-viewer");
    pinned["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] =
        serde_json::json!("false");
    pinned["rules"] = serde_json::json!([{"nonResourceURLs": ["/version"], "verbs": ["get"]}]);
    replace(&c, &pinned, "pinned.json");
    c.ok(&["delete", "clusterrole", "system:aggregate-to-view"]);
    let uid = role(&c, "view")["metadata"]["uid"].clone();
    // roleRef is immutable, so a bootstrap binding to another role is one made anew.
    let binding = |c: &Cluster| -> serde_json::Value {
        let out = c.ok(&[
            "get",
            "clusterrolebinding",
            "system:basic-user",
            "-o",
            "json",
        ]);
        serde_json::from_str(&out).unwrap()
    };
    c.ok(&["delete", "clusterrolebinding", "system:basic-user"]);
    c.ok(&[
        "create",
        "clusterrolebinding",
        "system:basic-user",
        "--clusterrole=view",
        "--user=jane",
    ]);
    let old_binding = binding(&c);
    assert_eq!(old_binding["roleRef"]["name"], "view");

    // A clean shutdown (SIGTERM) releases the scheduler's and controllers' Leases, so the
    // next server runs them at once rather than after the Leases expire.
    c.restart();
    let log = c.log();
    for lease in ["dao-controller-manager", "dao-scheduler"] {
        assert!(
            log.lines()
                .any(|l| l.contains("released the lease") && l.contains(lease)),
            "{log}"
        );
    }

    // view is the same object, aggregating again, and so has the aggregated rules back.
    let recreated = role(&c, "system:aggregate-to-view")["rules"].clone();
    assert!(
        recreated.as_array().is_some_and(|r| r.len() > 5),
        "{recreated}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let view = role(&c, "view");
        assert_eq!(view["metadata"]["uid"], uid);
        if view["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]["rbac.authorization.k8s.io/aggregate-to-view"]
            == "true"
            && view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
            && view["rules"] == recreated
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "view not reconciled: {view}\n{}",
            c.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The pinned role is left as it was.
    assert_eq!(
        role(&c, "system:public-info-viewer")["rules"],
        serde_json::json!([{"nonResourceURLs": ["/version"], "verbs": ["get"]}])
    );
    // The binding was recreated: a new object with the bootstrap roleRef, keeping its subjects
    // and gaining the bootstrap ones.
    let new_binding = binding(&c);
    assert_eq!(new_binding["roleRef"]["name"], "system:basic-user");
    assert_ne!(
        new_binding["metadata"]["uid"],
        old_binding["metadata"]["uid"]
    );
    let subjects: Vec<&str> = new_binding["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["jane", "system:authenticated"], "{new_binding}");
}

#[test]
fn service_account_issuer_discovery() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let c = Cluster::start(false);
    let (kubeconfig, token) = c.service_account_kubeconfig("team", "relying-party");
    let as_sa = |path: &str| -> serde_json::Value {
        serde_json::from_str(&c.ok(&["--kubeconfig", &kubeconfig, "get", "--raw", path])).unwrap()
    };

    // Service accounts may read the issuer's configuration and keys (upstream's
    // system:service-account-issuer-discovery binding).
    let config = as_sa("/.well-known/openid-configuration");
    let server = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let server = server
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_owned();
    assert_eq!(
        config,
        serde_json::json!({
            "issuer": "https://kubernetes.default.svc.cluster.local",
            "jwks_uri": format!("{server}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    );
    let jwks = as_sa("/openid/v1/jwks");
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let key = &keys[0];
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &serde_json::json!("EC"),
            &serde_json::json!("P-256"),
            &serde_json::json!("ES256"),
            &serde_json::json!("sig")
        )
    );

    // What a relying party does: find the key by the token's kid and check the signature.
    let parts: Vec<&str> = token.split('.').collect();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["kid"], key["kid"]);
    let mut point = vec![4u8];
    for coordinate in ["x", "y"] {
        point.extend(
            URL_SAFE_NO_PAD
                .decode(key[coordinate].as_str().unwrap())
                .unwrap(),
        );
    }
    let public =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
    let signed = format!("{}.{}", parts[0], parts[1]);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    assert!(public.verify(signed.as_bytes(), &signature).is_ok());
    let mut forged = signature.clone();
    forged[0] ^= 1;
    assert!(public.verify(signed.as_bytes(), &forged).is_err());

    // Other users need the grant too: a user with no roles is refused.
    assert_eq!(
        c.fails(&["get", "--raw", "/openid/v1/jwks", "--as=nobody"]),
        "Error from server (Forbidden): forbidden: User \"nobody\" cannot get path \"/openid/v1/jwks\"\n"
    );
}

/// Polls `check` every 100 ms for up to `secs` seconds; `why` says what did not happen.
fn within(secs: u64, mut check: impl FnMut() -> bool, why: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out: {}", why());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn pods_run_as_their_service_account_with_the_root_ca() {
    let c = Cluster::start(false);
    let ca = std::fs::read_to_string(c.server.data_dir.join("pki/ca.crt")).unwrap();
    let root_ca = |ns: &str| {
        let out = c.run(
            33,
            &[
                "-n",
                ns,
                "get",
                "configmap",
                "kube-root-ca.crt",
                "-o",
                "json",
            ],
        );
        out.status
            .success()
            .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap())
    };

    // Every namespace gets the CA bundle, a new one too, with upstream's description.
    c.ok(&["create", "namespace", "team"]);
    within(
        10,
        || root_ca("team").is_some(),
        || "kube-root-ca.crt in team".into(),
    );
    for ns in ["default", "kube-system", "team"] {
        let cm = root_ca(ns).unwrap_or_else(|| panic!("no kube-root-ca.crt in {ns}"));
        assert_eq!(cm["data"], serde_json::json!({"ca.crt": ca}), "{ns}");
        assert!(
            cm["metadata"]["annotations"]["kubernetes.io/description"]
                .as_str()
                .unwrap()
                .starts_with("Contains a CA bundle that can be used to verify the kube-apiserver"),
            "{cm}"
        );
    }
    // Deleted or changed, it is put back.
    c.ok(&["-n", "team", "delete", "configmap", "kube-root-ca.crt"]);
    within(
        10,
        || root_ca("team").is_some(),
        || "kube-root-ca.crt recreated".into(),
    );
    c.ok(&[
        "-n",
        "team",
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"forged"}}"#,
    ]);
    within(
        10,
        || root_ca("team").is_some_and(|cm| cm["data"]["ca.crt"] == ca.as_str()),
        || "kube-root-ca.crt restored".into(),
    );

    // A pod that names no service account runs as `default` and mounts its token, the CA
    // bundle and its namespace, as upstream's ServiceAccount admission arranges.
    c.ok(&["-n", "team", "run", "web", "--image=nginx"]);
    let pod = c.json(&["-n", "team", "get", "pod", "web"]);
    let spec = &pod["spec"];
    assert_eq!(
        (&spec["serviceAccountName"], &spec["serviceAccount"]),
        (&serde_json::json!("default"), &serde_json::json!("default"))
    );
    let volume = &spec["volumes"][0];
    let name = volume["name"].as_str().unwrap();
    assert!(
        name.len() == "kube-api-access-".len() + 5 && name.starts_with("kube-api-access-"),
        "{volume}"
    );
    assert_eq!(
        volume["projected"],
        serde_json::json!({
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        })
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"],
        serde_json::json!([{"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}])
    );
    // Admission's additions are not the writer's fields.
    let fields = pod["metadata"]["managedFields"].to_string();
    assert!(!fields.contains("f:volumes"), "{fields}");
    let described = c.ok(&["-n", "team", "describe", "pod", "web"]);
    for line in [
        "Service Account:  default".to_owned(),
        format!("/var/run/secrets/kubernetes.io/serviceaccount from {name} (ro)"),
    ] {
        assert!(
            described.lines().any(|l| l.trim() == line),
            "{line:?} in:\n{described}"
        );
    }

    // An account of its own, with pull secrets and automounting turned off.
    c.ok(&["-n", "team", "create", "serviceaccount", "robot"]);
    c.ok(&[
        "-n",
        "team",
        "patch",
        "serviceaccount",
        "robot",
        "-p",
        r#"{"imagePullSecrets":[{"name":"registry"}],"automountServiceAccountToken":false}"#,
    ]);
    c.ok(&[
        "-n",
        "team",
        "run",
        "bot",
        "--image=nginx",
        r#"--overrides={"spec":{"serviceAccountName":"robot"}}"#,
    ]);
    let spec = c.json(&["-n", "team", "get", "pod", "bot"])["spec"].clone();
    assert_eq!(spec["serviceAccountName"], "robot");
    assert_eq!(
        spec["imagePullSecrets"],
        serde_json::json!([{"name": "registry"}])
    );
    assert!(spec.get("volumes").is_none(), "{spec}");
    assert!(
        spec["containers"][0].get("volumeMounts").is_none(),
        "{spec}"
    );

    // An account that does not exist: upstream's 403, and nothing stored.
    let refused = c.fails(&[
        "-n",
        "team",
        "run",
        "ghost",
        "--image=nginx",
        r#"--overrides={"spec":{"serviceAccountName":"ghost"}}"#,
    ]);
    assert_eq!(
        refused,
        "Error from server (Forbidden): pods \"ghost\" is forbidden: error looking up service account team/ghost: serviceaccount \"ghost\" not found\n"
    );
    let out = c.fails(&["-n", "team", "get", "pod", "ghost"]);
    assert!(
        out.contains("NotFound"),
        "the refused pod was stored: {out}"
    );
}

/// `dao controller-manager` in a process of its own publishes the CA bundle its kubeconfig
/// trusts, as `dao server`'s in-process controllers publish the server's own.
#[test]
fn a_separate_controller_manager_publishes_its_kubeconfigs_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::DaoServer::start(&dir.path().join("data"), &["--no-controllers".into()]);
    let log = std::fs::File::create(dir.path().join("controller-manager.log")).unwrap();
    let _manager = support::ChildGuard(
        support::dao()
            .arg("controller-manager")
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dao controller-manager"),
    );
    let ca = std::fs::read_to_string(server.data_dir.join("pki/ca.crt")).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let published = || {
        let out = Command::new(support::kubectl_bin(33))
            .env("KUBECONFIG", &server.kubeconfig)
            .env("HOME", dir.path())
            .args([
                "get",
                "configmap",
                "kube-root-ca.crt",
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let log_text = || std::fs::read_to_string(dir.path().join("controller-manager.log")).unwrap();
    within(
        20,
        || published() == ca,
        || {
            format!(
                "kube-root-ca.crt not published; controller-manager log:\n{}",
                log_text()
            )
        },
    );
}
