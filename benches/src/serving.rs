//! What the fleet view costs (issue 14), on the real control plane with the
//! release operator and hosts as processes: apply → "all hosts serving" shown
//! in the FormatPlugin's status, against apply → the first call served by
//! every host in the same installs (what the status reports on); and the API
//! writes it takes: each host's record writes per minute while nothing changes
//! (target: none) and per install, and the operator's status writes per install.
//!
//!     cargo build --release --bins && cargo run --release -p wasmplug-benches -- serving

use std::time::Duration;

use anyhow::Context;
use kube::Api;
use wasmplug_crds::FormatPlugin;
use wasmplug_crds::conditions::ConditionType;
use wasmplug_e2e::{FileServer, Process, Stack, control_plane, metric_value};

use crate::Report;
use crate::numbered::Numbered;
use crate::stats::{Summary, format};

const INSTALLS: u32 = 5;
const HOSTS: [usize; 3] = [1, 3, 10];
/// How long nothing changes while idle writes are counted.
const IDLE: Duration = Duration::from_secs(20);

pub fn run(report: &mut Report) -> anyhow::Result<()> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(run_async(report))
}

async fn run_async(report: &mut Report) -> anyhow::Result<()> {
    let files = FileServer::start().await?;
    let mut plugin = 3000;
    for hosts in HOSTS {
        let ns = control_plane().namespace("bench-serving").await;
        let stack = Stack::start(ns.name(), &[]).await?;
        let mut extra: Vec<(Process, String)> = Vec::new();
        for n in 1..hosts {
            extra.push(stack.another_host(&format!("host-{n}")).await?);
        }
        let urls: Vec<String> =
            std::iter::once(stack.host_url.clone()).chain(extra.iter().map(|(_, url)| url.clone())).collect();
        let api = ns.api::<FormatPlugin>();
        let (mut served, mut shown) = (Vec::new(), Vec::new());
        let (hosts_before, rollup_before) = (host_writes(&urls).await?, rollup_writes(&stack).await?);
        // One untimed install first: the first write of a FormatPlugin to a
        // fresh namespace is slower for the API server alone.
        for round in 0..=INSTALLS {
            plugin += 1;
            let (to_serve, to_show) = install(&api, &files, plugin, &urls).await?;
            if round > 0 {
                served.push(to_serve);
                shown.push(to_show);
            }
        }
        let installs = f64::from(INSTALLS + 1);
        let per_install = (host_writes(&urls).await? - hosts_before) / installs / hosts as f64;
        let status_per_install = (rollup_writes(&stack).await? - rollup_before) / installs;
        // The last removal's record writes land within a moment; then idle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_before = host_writes(&urls).await?;
        let idle_rollup = rollup_writes(&stack).await?;
        tokio::time::sleep(IDLE).await;
        let per_minute = (host_writes(&urls).await? - idle_before) / hosts as f64 * 60.0 / IDLE.as_secs_f64();
        let idle_rollup = rollup_writes(&stack).await? - idle_rollup;
        drop(extra);

        let (served, shown) = (Summary::of(served), Summary::of(shown));
        report.row(
            &format!("apply → all {hosts} host(s) serving shown in status.hosts"),
            summary(&shown),
            format!("{} to the first call served by every host", summary(&served)),
            format!("{:.2}×", shown.ratio_to(&served)),
        );
        report.row(
            &format!("API writes per host, {hosts} host(s) (target: none while idle)"),
            format!("{per_minute:.1}/min idle ({IDLE:?} without changes; {idle_rollup:.0} status writes)"),
            format!("{per_install:.1} record writes per install and removal"),
            format!("{status_per_install:.1} status writes per install"),
        );
    }
    Ok(())
}

/// Applies numbered plugin `n`, times apply → every host in `urls` serves it
/// and apply → its status says every host serves it, then deletes it and waits
/// until no host serves it.
async fn install(
    api: &Api<FormatPlugin>,
    files: &FileServer,
    n: u32,
    urls: &[String],
) -> anyhow::Result<(Duration, Duration)> {
    let plugin = Numbered::new(files, n)?;
    let all = format!("{}/{}", urls.len(), urls.len());
    let started = plugin.create(api).await?;
    let shown = async {
        loop {
            let object = api.get(&plugin.name).await?;
            let serving = object.condition(ConditionType::Serving).is_some_and(|c| c.reason == "AllHostsServing");
            let summary = object.status.and_then(|s| s.hosts).map(|h| h.summary);
            if serving && summary.as_deref() == Some(all.as_str()) {
                return Ok::<_, anyhow::Error>(started.elapsed());
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "{} not shown served in 120 s", plugin.name);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (shown, served) = tokio::join!(shown, plugin.answered(urls, 204, started));
    let (shown, served) = (shown?, served?);
    plugin.remove(api, urls).await?;
    Ok((served, shown))
}

/// Successful record writes of every host in `urls`, summed.
async fn host_writes(urls: &[String]) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for url in urls {
        let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
        total += metric_value(&text, "wasmplug_host_record_writes_total{result=\"ok\"}")
            .with_context(|| format!("{url} reports no record writes"))?;
    }
    Ok(total)
}

/// The operator's `wasmplug_operator_host_rollup_writes_total`.
async fn rollup_writes(stack: &Stack) -> anyhow::Result<f64> {
    let metrics = stack.operator.metrics().await?;
    Ok(metric_value(&metrics, "wasmplug_operator_host_rollup_writes_total").unwrap_or(0.0))
}

fn summary(s: &Summary) -> String {
    format!("p50 {} (p95 {})", format(s.median), format(s.p95))
}
