//! Shared helpers for the `dao` binary's end-to-end tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dao_store::{RangeRequest, Store};

pub fn dao() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dao"));
    cmd.env("DAO_LOG", "info");
    cmd
}

/// The kubectl binary of a given minor version.
pub fn kubectl_bin(minor: u32) -> std::path::PathBuf {
    if minor == 33
        && let Ok(p) = std::env::var("DAO_KUBECTL")
    {
        return p.into();
    }
    let which = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v kubectl)\""])
        .output()
        .expect("sh");
    let real = std::path::PathBuf::from(String::from_utf8_lossy(&which.stdout).trim());
    let candidate = real
        .parent()
        .expect("kubectl has a directory")
        .join(format!("kubectl.1.{minor}"));
    assert!(
        candidate.exists(),
        "kubectl 1.{minor} not found at {}",
        candidate.display()
    );
    candidate
}

/// A child process, killed when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `dao agent --kubeconfig KUBECONFIG ARGS...`, its log appended to `log`.
pub fn agent(kubeconfig: &std::path::Path, log: &std::path::Path, args: &[&str]) -> ChildGuard {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = dao()
        .arg("agent")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn dao agent");
    ChildGuard(child)
}

/// A running `dao debug store-writer` and the `ack` lines it printed so far.
pub struct Writer {
    child: Child,
    pub acks: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    pub stderr: Arc<Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(store_args: &[String]) -> Writer {
        let mut child = dao()
            .args(["debug", "store-writer", "--writers", "8"])
            .args(store_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dao");
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = acks.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = err_sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Writer {
            child,
            acks,
            reader: Some(reader),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub fn ack_count(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Wait until at least `n` writes were acknowledged.
    pub fn wait_for_acks(&self, n: usize, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.ack_count() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} acks in {timeout:?}; stderr:\n{}",
                self.ack_count(),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL the writer and return every line it acknowledged.
    pub fn kill(mut self) -> (Vec<String>, String) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "writer was killed, not finished");
        self.reader.take().unwrap().join().unwrap();
        self.stderr_reader.take().unwrap().join().unwrap();
        let acks = std::mem::take(&mut *self.acks.lock().unwrap());
        let stderr = std::mem::take(&mut *self.stderr.lock().unwrap());
        (acks, stderr)
    }
}

/// Check a store after a crash: every acknowledged write is there, every value is whole, and
/// each writer's keys form an unbroken run (nothing half-applied or reordered).
pub async fn verify_after_crash(store: &dyn Store, acks: &[String]) {
    let mut last_seq = BTreeMap::<usize, u64>::new();
    let mut counters = BTreeMap::<usize, u64>::new();
    let mut max_rev = 0;
    for line in acks {
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts[0], "ack", "unexpected line {line}");
        let rev: i64 = parts[2].parse().unwrap();
        max_rev = max_rev.max(rev);
        let segments: Vec<&str> = parts[1].split('/').collect();
        if segments[2] == "counter" {
            let w: usize = segments[3].parse().unwrap();
            let seq: u64 = parts[3].parse().unwrap();
            let e = counters.entry(w).or_default();
            *e = (*e).max(seq);
        } else {
            let w: usize = segments[2].parse().unwrap();
            let seq: u64 = segments[3].parse().unwrap();
            let e = last_seq.entry(w).or_default();
            *e = (*e).max(seq);
        }
    }
    assert!(!last_seq.is_empty(), "the writer acknowledged nothing");
    assert!(
        store.current_revision().await.unwrap() >= max_rev,
        "revision went backwards"
    );
    for (&w, &seq) in &last_seq {
        let keys = store
            .range(RangeRequest::prefix(format!("/crash/{w}/")))
            .await
            .unwrap();
        let seqs: Vec<u64> = keys
            .kvs
            .iter()
            .map(|kv| kv.key.rsplit('/').next().unwrap().parse().unwrap())
            .collect();
        let n = seqs.len() as u64;
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<_>>(),
            "writer {w}: keys form an unbroken run"
        );
        assert!(
            n >= seq,
            "writer {w}: acknowledged seq {seq} but only {n} keys survived"
        );
        // At most the one write in flight at the kill may have landed unacknowledged.
        assert!(n <= seq + 1, "writer {w}: {n} keys but last ack was {seq}");
        for kv in &keys.kvs {
            let seq: u64 = kv.key.rsplit('/').next().unwrap().parse().unwrap();
            assert_eq!(
                kv.value,
                crash_value(w, seq).into_bytes(),
                "value of {} is whole",
                kv.key
            );
        }
    }
    for (&w, &seq) in &counters {
        let kv = store
            .get(&format!("/crash/counter/{w}"), None)
            .await
            .unwrap()
            .0
            .expect("counter survives");
        let value: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
        assert!(
            value == seq || value == seq + 1,
            "counter {w} is {value}, last ack {seq}"
        );
    }
}

/// Must match `dao debug store-writer`'s values.
pub fn crash_value(w: usize, seq: u64) -> String {
    let body = format!(
        "writer={w} seq={seq} {}",
        "x".repeat(200 + (seq % 300) as usize)
    );
    format!("{body} sum={}", checksum(&body))
}

fn checksum(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// A `dao server` child process on a free port.
pub struct DaoServer {
    child: Child,
    pub data_dir: std::path::PathBuf,
    pub kubeconfig: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl DaoServer {
    /// Start `dao server` on `data_dir` (extra flags choose the store) and wait until it
    /// accepts connections.
    pub fn start(data_dir: &std::path::Path, extra: &[String]) -> DaoServer {
        std::fs::create_dir_all(data_dir).unwrap();
        let kubeconfig = data_dir.join("admin.kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = dao()
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn dao server");
        let server = DaoServer {
            child,
            data_dir: data_dir.to_owned(),
            kubeconfig,
            log,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(addr) = server.address()
                && std::net::TcpStream::connect(&addr).is_ok()
            {
                return server;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "dao server not ready:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `host:port` from the kubeconfig, once written.
    pub fn address(&self) -> Option<String> {
        let config = std::fs::read_to_string(&self.kubeconfig).ok()?;
        let url = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: https://"))?;
        Some(url.to_owned())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for DaoServer {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl DaoServer {
    /// SIGTERM, as an operator stops it, then SIGKILL after 10 s; nothing if it has exited.
    pub fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
