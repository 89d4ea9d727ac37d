//! How packages reach hosts (issue 13), on the real control plane with the
//! release operator and hosts as processes: apply → first call served on every
//! host, for 1, 2 and 4 hosts, with hosts downloading from the operator's
//! artifact server (the chart's default) against hosts reading the operator's
//! store directory (the shared-volume mode), measured in the same run; and the
//! bytes the operator serves per install against the package's size.
//!
//!     cargo build --release --bins && cargo run --release -p wasmplug-benches -- distribution

use std::time::Duration;

use anyhow::Context;
use kube::Api;
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{Distribution, FileServer, Process, Stack, control_plane, metric_value};

use crate::Report;
use crate::numbered::Numbered;
use crate::stats::{Summary, format};

const INSTALLS: u32 = 10;
const HOSTS: [usize; 3] = [1, 2, 4];

pub fn run(report: &mut Report) -> anyhow::Result<()> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(run_async(report))
}

async fn run_async(report: &mut Report) -> anyhow::Result<()> {
    let files = FileServer::start().await?;
    let mut plugin = 2000;
    for hosts in HOSTS {
        let shared = measure(&files, Distribution::SharedVolume, hosts, &mut plugin).await?;
        let http = measure(&files, Distribution::Http, hosts, &mut plugin).await?;
        report.row(
            &format!("apply → first call served on each of {hosts} host(s), downloading (target ≤ 1.2× for one)"),
            summary(&http.served),
            format!("{} reading a shared store", summary(&shared.served)),
            format!("{:.2}×", http.served.ratio_to(&shared.served)),
        );
        let package = http.package_bytes as f64;
        report.row(
            &format!("bytes the operator serves per install, {hosts} host(s)"),
            format!("{:.0} KiB", http.served_bytes / 1024.0),
            format!("{:.0} KiB: the package (plugin.toml, plugin.wasm, precompiled) once per host", package / 1024.0),
            format!("{:.2}×", http.served_bytes / (package * hosts as f64)),
        );
    }
    Ok(())
}

struct Measured {
    served: Summary,
    /// Mean bytes the operator served per install.
    served_bytes: f64,
    /// Size of one published package's files.
    package_bytes: u64,
}

/// Installs [`INSTALLS`] plugins one after another on a stack with `hosts`
/// hosts that get packages as `distribution` says; times apply → served by all.
async fn measure(
    files: &FileServer,
    distribution: Distribution,
    hosts: usize,
    plugin: &mut u32,
) -> anyhow::Result<Measured> {
    let ns = control_plane().namespace("bench-distribution").await;
    let stack = Stack::start_with(ns.name(), &[], distribution).await?;
    let mut extra: Vec<(Process, String)> = Vec::new();
    for n in 1..hosts {
        extra.push(stack.another_host(&format!("host-{n}")).await?);
    }
    let urls: Vec<String> =
        std::iter::once(stack.host_url.clone()).chain(extra.iter().map(|(_, url)| url.clone())).collect();
    let api = ns.api::<FormatPlugin>();
    let bytes_before = served_bytes(&stack).await?;
    let (mut served, mut package_bytes) = (Vec::new(), 0);
    // One untimed install first: the first write of a FormatPlugin to a fresh
    // namespace is slower for the API server alone.
    for round in 0..=INSTALLS {
        *plugin += 1;
        let (took, package) = install(&api, files, *plugin, &urls).await?;
        if round > 0 {
            served.push(took);
            package_bytes = package;
        }
    }
    let total = served_bytes(&stack).await? - bytes_before;
    drop(extra);
    Ok(Measured { served: Summary::of(served), served_bytes: total / f64::from(INSTALLS + 1), package_bytes })
}

/// Applies numbered plugin `n` from a ZIP, waits until every host in `urls`
/// answers a call with it, deletes it and waits until every host has unloaded
/// it. Returns apply → served by all, and the size of the published package.
async fn install(
    api: &Api<FormatPlugin>,
    files: &FileServer,
    n: u32,
    urls: &[String],
) -> anyhow::Result<(Duration, u64)> {
    let plugin = Numbered::new(files, n)?;
    let started = plugin.create(api).await?;
    let took = plugin.answered(urls, 204, started).await?;
    let artifact = api.get(&plugin.name).await?.status.and_then(|s| s.artifact).context("published")?;
    let precompiled = artifact.precompiled.and_then(|p| p.size).unwrap_or(0);
    let package = artifact.size + artifact.manifest.map_or(0, |m| m.size) + precompiled;
    plugin.remove(api, urls).await?;
    Ok((took, u64::try_from(package).unwrap_or(0)))
}

/// The operator's `wasmplug_operator_artifact_served_bytes_total`.
async fn served_bytes(stack: &Stack) -> anyhow::Result<f64> {
    let metrics = stack.operator.metrics().await?;
    Ok(metric_value(&metrics, "wasmplug_operator_artifact_served_bytes_total").unwrap_or(0.0))
}

fn summary(s: &Summary) -> String {
    format!("p50 {} (p95 {})", format(s.median), format(s.p95))
}
