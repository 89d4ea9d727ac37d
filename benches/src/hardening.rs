//! What the host's limits cost and hold, measured on the real release binary
//! with the chart's default settings (8 calls, 4 per format, 32 MiB bodies,
//! 64 MiB per call) and a 2 s call limit:
//!
//! - the p99 of an unrelated builtin call while 64 callers keep a plugin's calls
//!   sleeping (in WASI) or spinning to their limit, against its idle p99;
//! - the host's peak resident memory under each memory attack of the review,
//!   and under all of them at once, against the chart's 1 GiB limit;
//! - the per-call cost of the wall-clock mechanism (see the host rows).
//!
//! Every attack runs a bounded number of requests for a bounded time.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tokio::task::JoinHandle;
use wasmplug_e2e::{example_package, free_ports, workspace_binary};
use wasmplug_formats::test_support::{gzip, tar};

use crate::Report;
use crate::stats::{Summary, format};

/// The chart's host memory limit.
const CHART_LIMIT_MIB: f64 = 1024.0;
/// Callers attacking at once.
const ATTACKERS: usize = 64;
/// How long each load runs.
const LOAD_TIME: Duration = Duration::from_secs(8);

struct Host {
    process: Child,
    url: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Host {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let plugin = dir.path().join("misbehaving");
        std::fs::create_dir_all(&plugin)?;
        for file in ["plugin.toml", "plugin.wasm"] {
            std::fs::copy(example_package("misbehaving").join(file), plugin.join(file))?;
        }
        let [port] = free_ports()?;
        let process = Command::new(workspace_binary("wasmplug-host"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--builtin", "npm,maven", "--max-call-ms", "2000"])
            .arg("--plugins-dir")
            .arg(dir.path())
            .env("WASMPLUG_LOG_FORMAT", "json")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .context("failed to start the release host; run `cargo build --release --bins` first")?;
        let host = Host { process, url: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new(), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let formats = host.client.get(format!("{}/v1/formats", host.url)).send().await;
            if let Ok(text) = async { formats?.text().await }.await
                && text.contains("\"misbehaving\"")
            {
                return Ok(host);
            }
            anyhow::ensure!(Instant::now() < deadline, "the host did not serve the plugin within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, path: &str, body: Bytes) -> Option<u16> {
        let response = self.client.post(format!("{}{path}", self.url)).body(body).send().await.ok()?;
        let status = response.status().as_u16();
        let _ = response.bytes().await;
        Some(status)
    }

    fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        wasmplug_e2e::memory::peak_rss_mib(self.process.id())
    }

    /// Starts a new peak for [`Self::peak_rss_mib`].
    fn reset_peak(&self) -> anyhow::Result<()> {
        wasmplug_e2e::memory::reset_peak(self.process.id())
    }
}

/// An npm metadata call on a small real package: the unrelated builtin call.
fn npm_call() -> (String, Bytes) {
    let json = r#"{"name":"bench-pkg","version":"1.2.3"}"#;
    let tarball =
        gzip(&tar(&[("package/package.json", json.as_bytes()), ("package/index.js", b"module.exports = 1;")]));
    ("/v1/formats/npm/metadata?path=bench-pkg/-/bench-pkg-1.2.3.tgz".to_owned(), Bytes::from(tarball))
}

/// Latencies of `count` builtin calls, one after another.
async fn builtin_latencies(host: &Host, count: usize) -> Summary {
    let (path, body) = npm_call();
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let response = host.client.post(format!("{}{path}", host.url)).body(body.clone()).send().await;
        let response = response.expect("the host answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "the builtin answers: {text}");
        times.push(started.elapsed());
    }
    Summary::of(times)
}

/// Answers by HTTP status (0: no answer).
type Statuses = BTreeMap<u16, usize>;

/// Runs `ATTACKERS` callers posting `body` to `path` back to back until `stop`
/// (at most 1 000 requests each). Of every three requests to the plugin, two
/// are healthy calls, so that its faults stay below the quarantine threshold
/// and the attack keeps reaching it: the worst case for the host.
fn attack(host: &Arc<Host>, path: &str, body: Bytes, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<Statuses>> {
    (0..ATTACKERS)
        .map(|attacker| {
            let (host, path, body, stop) = (host.clone(), path.to_owned(), body.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Statuses::new();
                for sent in 0..1_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let healthy = path.contains("/misbehaving/") && (sent + attacker) % 3 != 0;
                    let status = match healthy {
                        true => host.post("/v1/formats/misbehaving/validate?path=fine", Bytes::new()).await,
                        false => host.post(&path, body.clone()).await,
                    };
                    *statuses.entry(status.unwrap_or(0)).or_default() += 1;
                }
                statuses
            })
        })
        .collect()
}

async fn finish(attackers: Vec<JoinHandle<Statuses>>, stop: &AtomicBool) -> String {
    stop.store(true, Ordering::Relaxed);
    let mut all = Statuses::new();
    for attacker in attackers {
        for (status, count) in attacker.await.unwrap_or_default() {
            *all.entry(status).or_default() += count;
        }
    }
    all.iter().map(|(status, count)| format!("{count}×{status}")).collect::<Vec<_>>().join(", ")
}

pub fn run(report: &mut Report) -> anyhow::Result<()> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(async {
        let host = Arc::new(Host::start().await?);
        let idle = builtin_latencies(&host, 2_000).await;
        drop(host);
        for (how, what) in [("sleep", "sleep in WASI"), ("loop", "spin")] {
            // A fresh host each time, so that no quarantine carries over.
            let host = Arc::new(Host::start().await?);
            let stop = Arc::new(AtomicBool::new(false));
            let attackers = attack(&host, &format!("/v1/formats/misbehaving/validate?path={how}"), Bytes::new(), &stop);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let loaded = builtin_latencies(&host, 1_000).await;
            finish(attackers, &stop).await;
            report.row(
                &format!(
                    "p99 of an npm builtin call while {ATTACKERS} callers make a plugin's calls {what} to the 2 s limit"
                ),
                format!("p99 {} (median {})", format(loaded.p99), format(loaded.median)),
                format!("idle p99 {} (median {})", format(idle.p99), format(idle.median)),
                format!("+{} (target ≤ +5 ms)", format(loaded.p99.saturating_sub(idle.p99))),
            );
        }
        memory_attacks(report).await
    })
}

async fn memory_attacks(report: &mut Report) -> anyhow::Result<()> {
    let bomb = {
        let member = vec![0u8; 256 << 20];
        Bytes::from(gzip(&tar(&[("package/zeros", member.as_slice())])))
    };
    let pom = Bytes::from(format!("<project>{}", "<a>".repeat((32 << 20) / 3 - 10)));
    let attacks: [(&str, &str, Bytes); 5] = [
        ("32 MiB bodies to a plugin", "/v1/formats/misbehaving/validate?path=fine", Bytes::from(vec![b'x'; 32 << 20])),
        ("plugin calls growing to their memory limit", "/v1/formats/misbehaving/validate?path=alloc", Bytes::new()),
        ("plugin calls hoarding pollables", "/v1/formats/misbehaving/validate?path=pollables", Bytes::new()),
        ("npm gzip bombs (256 MiB of zeros)", "/v1/formats/npm/validate?path=x/-/x-1.0.0.tgz", bomb),
        ("32 MiB nested POMs", "/v1/formats/maven/validate?path=com/x/lib/1.0/lib-1.0.pom", pom),
    ];
    let mut all = Vec::new();
    let stop_all = Arc::new(AtomicBool::new(false));
    for (what, path, body) in &attacks {
        let host = &Arc::new(Host::start().await?);
        let baseline = host.peak_rss_mib()?;
        host.reset_peak()?;
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let attackers = attack(host, path, body.clone(), &stop);
        tokio::time::sleep(LOAD_TIME).await;
        let sent = finish(attackers, &stop).await;
        let peak = host.peak_rss_mib()?;
        report.row(
            &format!("host peak RSS, {ATTACKERS} callers sending {what} for {:.0?}", started.elapsed()),
            format!("{peak:.0} MiB (answers: {sent})"),
            format!("chart limit {CHART_LIMIT_MIB:.0} MiB; idle peak {baseline:.0} MiB"),
            verdict(peak),
        );
    }
    let host = &Arc::new(Host::start().await?);
    for (_, path, body) in &attacks {
        all.extend(attack(host, path, body.clone(), &stop_all));
    }
    tokio::time::sleep(LOAD_TIME).await;
    let sent = finish(all, &stop_all).await;
    let peak = host.peak_rss_mib()?;
    report.row(
        &format!("host peak RSS, all five attacks at once ({} callers)", ATTACKERS * attacks.len()),
        format!("{peak:.0} MiB (answers: {sent})"),
        format!("chart limit {CHART_LIMIT_MIB:.0} MiB"),
        verdict(peak),
    );
    let status = host.post(&npm_call().0, npm_call().1).await;
    anyhow::ensure!(status == Some(200), "the host still serves after the attacks (got {status:?})");
    Ok(())
}

fn verdict(peak_mib: f64) -> String {
    let share = peak_mib / CHART_LIMIT_MIB;
    if share <= 1.0 {
        format!("{:.0}% of the limit — held", share * 100.0)
    } else {
        format!("{share:.2}× the limit — EXCEEDED")
    }
}
