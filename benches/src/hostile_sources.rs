//! The operator against hostile sources, on a real API server: for each, how
//! long the operator takes to refuse it (against the object's spec.timeout)
//! and its peak resident memory while doing so (against its idle memory and
//! the chart's limit). A fresh operator per source, so each peak is its own.
//!
//! - a Git repository whose plugin.wasm is 200 MiB of zeros (a few hundred KiB
//!   on the wire) and whose tree names that blob forty more times;
//! - a ZIP whose central directory holds 500 000 entries;
//! - a download that does not stop (128 MiB, more than the 64 MiB limit);
//! - a Git server that accepts and then says nothing.
//!
//! Servers listen on 127.0.0.1; each source is refused once.

use std::time::{Duration, Instant};

use anyhow::Context;
use kube::api::{Api, PostParams};
use wasmplug_crds::FormatPlugin;
use wasmplug_crds::conditions::ConditionType;
use wasmplug_e2e::{FileServer, GitServer, Served, Stack, control_plane, numbered_plugin, zip};

use crate::Report;
use crate::stats::format;
use wasmplug_e2e::memory::{peak_rss_mib, rss_mib};

/// The chart's operator memory limit.
const CHART_LIMIT_MIB: f64 = 1024.0;
/// spec.timeout of every hostile source.
const TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(report: &mut Report) -> anyhow::Result<()> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(run_async(report))
}

async fn run_async(report: &mut Report) -> anyhow::Result<()> {
    let git = GitServer::start()?;
    let files = FileServer::start().await?;
    let (manifest, _) = numbered_plugin(1);

    let huge = vec![0u8; 200 << 20];
    let bomb = git.create("bomb")?;
    let mut entries: Vec<(String, &[u8])> = vec![("plugin.toml".into(), &manifest), ("plugin.wasm".into(), &huge)];
    entries.extend((0..40).map(|n| (format!("assets/copy-{n}.bin"), huge.as_slice())));
    let entries: Vec<(&str, &[u8])> = entries.iter().map(|(name, bytes)| (name.as_str(), *bytes)).collect();
    bomb.commit(&entries, "a 200 MiB blob, named 41 times")?;
    drop(huge);
    measure(report, "Git repository naming a 200 MiB blob 41 times", serde_json::json!({"git": {"url": bomb.url()}}))
        .await?;

    let many: Vec<(String, &[u8])> = (0..500_000).map(|n| (format!("{n:06}"), b"" as &[u8])).collect();
    let many: Vec<(&str, &[u8])> = many.iter().map(|(name, bytes)| (name.as_str(), *bytes)).collect();
    let url = files.put("/many.zip", Served::File(zip(&many)));
    measure(report, "ZIP with 500 000 entries", serde_json::json!({"url": {"url": url}})).await?;

    let endless = Served::Trickle { bytes: vec![0u8; 128 << 20], chunk: 1 << 20, every: Duration::from_millis(5) };
    let url = files.put("/endless.zip", endless);
    measure(report, "download past the 64 MiB limit", serde_json::json!({"url": {"url": url}})).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let source = serde_json::json!({"git": {"url": format!("git://127.0.0.1:{port}/plugin")}});
    measure(report, "Git server that never answers", source).await?;
    silent.abort();
    Ok(())
}

/// Applies a FormatPlugin with `source` to a fresh operator and reports how
/// long it takes to be refused, and the operator's peak memory meanwhile.
async fn measure(report: &mut Report, what: &str, source: serde_json::Value) -> anyhow::Result<()> {
    let ns = control_plane().namespace("hostile").await;
    let stack = Stack::start(ns.name(), &[]).await?;
    let pid = stack.operator.process.pid().context("the operator runs")?;
    let idle = rss_mib(pid)?;
    let api: Api<FormatPlugin> = ns.api();
    let object: FormatPlugin = serde_json::from_value(serde_json::json!({
        "apiVersion": "wasmplug.dev/v1alpha1",
        "kind": "FormatPlugin",
        "metadata": {"name": "hostile"},
        "spec": {"source": source, "timeout": format!("{}s", TIMEOUT.as_secs())},
    }))?;
    let started = Instant::now();
    api.create(&PostParams::default(), &object).await?;
    let reason = loop {
        let plugin = api.get("hostile").await?;
        if let Some(ready) = plugin.condition(ConditionType::Ready).filter(|ready| ready.status == "False") {
            break ready.reason.clone();
        }
        anyhow::ensure!(started.elapsed() < TIMEOUT * 3, "{what}: not refused within {:?}", TIMEOUT * 3);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = started.elapsed();
    let peak = peak_rss_mib(pid)?;
    anyhow::ensure!(stack.operator.is_leading().await, "{what}: the operator stopped leading");
    report.row(
        &format!("{what}: time to refuse ({reason}; target within spec.timeout)"),
        format(took),
        format!("spec.timeout {}", format(TIMEOUT)),
        format!("{:.2}×", took.as_secs_f64() / TIMEOUT.as_secs_f64()),
    );
    report.row(
        &format!("{what}: operator peak RSS (target below the chart's {CHART_LIMIT_MIB:.0} MiB)"),
        format!("{peak:.0} MiB"),
        format!("idle {idle:.0} MiB"),
        format!("{:.2}× idle, {:.0}% of the limit", peak / idle, peak / CHART_LIMIT_MIB * 100.0),
    );
    Ok(())
}
