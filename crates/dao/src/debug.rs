//! Hidden subcommands that Dao's own tests drive.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Subcommand;
use dao_store::{Expect, Outcome};

use crate::StoreArgs;

#[derive(Subcommand)]
pub enum DebugCommand {
    /// Write to a store as fast as possible until killed, printing one `ack` line per
    /// acknowledged write (for crash tests).
    StoreWriter {
        #[command(flatten)]
        store: StoreArgs,
        /// Concurrent writers.
        #[arg(long, default_value_t = 8)]
        writers: usize,
    },
    /// Open a store, print its revision and exit (for fault tests).
    StoreOpen {
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn run(cmd: DebugCommand) -> Result<()> {
    match cmd {
        DebugCommand::StoreWriter { store, writers } => store_writer(store, writers).await,
        DebugCommand::StoreOpen { store } => {
            let store = store.open().await?;
            println!("revision {}", store.current_revision().await?);
            Ok(())
        }
    }
}

/// The value written for sequence number `seq` of writer `w`: self-checking, so a torn or
/// mixed-up value is detectable.
pub fn crash_value(w: usize, seq: u64) -> String {
    let body = format!(
        "writer={w} seq={seq} {}",
        "x".repeat(200 + (seq % 300) as usize)
    );
    format!("{body} sum={}", checksum(&body))
}

pub fn checksum(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Each writer alternates: create `/crash/{w}/{seq}`, then CAS-update `/crash/counter/{w}` to
/// `seq`. Every acknowledged write is printed before the next one starts.
async fn store_writer(args: StoreArgs, writers: usize) -> Result<()> {
    let store = args.open().await.context("open store")?;
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let counter = format!("/crash/counter/{w}");
            let mut counter_rev = match store
                .put(&counter, Bytes::from("0"), Expect::Absent)
                .await?
            {
                Outcome::Applied { revision, .. } => revision,
                Outcome::Rejected { current, .. } => current.map(|c| c.mod_revision).unwrap_or(0),
            };
            for seq in 1u64.. {
                let key = format!("/crash/{w}/{seq:09}");
                let value = Bytes::from(crash_value(w, seq));
                loop {
                    match store.put(&key, value.clone(), Expect::Absent).await {
                        Ok(Outcome::Applied { revision, .. }) => {
                            ack(&out, &format!("ack {key} {revision}"));
                            break;
                        }
                        // An earlier attempt that reported an error had applied after all.
                        Ok(Outcome::Rejected {
                            current: Some(kv), ..
                        }) if kv.value == value => {
                            ack(&out, &format!("ack {key} {}", kv.mod_revision));
                            break;
                        }
                        Ok(other) => anyhow::bail!("create of {key} rejected: {other:?}"),
                        Err(e) => {
                            eprintln!("write of {key} failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                match store
                    .put(
                        &counter,
                        Bytes::from(seq.to_string()),
                        Expect::ModRevision(counter_rev),
                    )
                    .await
                {
                    Ok(Outcome::Applied { revision, .. }) => {
                        counter_rev = revision;
                        ack(&out, &format!("ack {counter} {revision} {seq}"));
                    }
                    // A write that errored may still have applied; take the current revision.
                    Ok(Outcome::Rejected { current, .. }) => {
                        counter_rev = current.map(|c| c.mod_revision).unwrap_or(0);
                    }
                    Err(e) => eprintln!("write of {counter} failed: {e}"),
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn ack(out: &std::sync::Mutex<std::io::Stdout>, line: &str) {
    let mut out = out.lock().unwrap();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
