//! Operator benchmarks on the real control plane, with the release operator and
//! host as processes: apply → Ready and apply → first served call for ZIP, OCI and
//! Git sources, and 100 FormatPlugins at once. The baseline, measured in the same run,
//! is the operator's own pipeline (fetch → validate → precompile → publish) called
//! in-process on the same sources: the ratio is what Kubernetes round trips, the
//! controller and the host's watch add. Then the admission webhook: a FormatPlugin
//! write in a namespace it checks against one in a namespace it does not.
//!
//!     cargo build --release --bins && cargo run --release -p wasmplug-benches -- reconcile

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use wasmplug_crds::{FormatPlugin, Precompiled};
use wasmplug_e2e::memory::{peak_rss_mib, rss_mib};
use wasmplug_e2e::{
    FileServer, GitServer, OciRegistry, RegistryOptions, Served, Stack, Webhooked, control_plane, numbered_plugin, zip,
};
use wasmplug_host::runtime::{EngineSettings, Runtime};
use wasmplug_operator::fetch::{self, FetchLimits, GitRequest, OciRequest, OciTarget};
use wasmplug_operator::policy::{Destinations, SourcePolicy, parse_range};
use wasmplug_operator::source_url::{SourceKind, SourceUrl};
use wasmplug_operator::store::Store;
use wasmplug_operator::validate;

use crate::Report;
use crate::stats::{Summary, format};

const INSTALLS: u32 = 20;
const MANY: u32 = 100;
const WRITES: u32 = 200;

pub fn run(report: &mut Report) -> anyhow::Result<()> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(run_async(report))
}

async fn run_async(report: &mut Report) -> anyhow::Result<()> {
    let plane = control_plane();
    let ns = plane.namespace("bench").await;
    let stack = Stack::start(ns.name(), &[]).await?;
    let files = FileServer::start().await?;
    let git = GitServer::start()?;
    let api = ns.api::<FormatPlugin>();
    let pipeline = Pipeline::new()?;
    let loopback = vec![parse_range("127.0.0.0/8").map_err(anyhow::Error::msg)?];
    let sources = SourcePolicy { destinations: Destinations::new(loopback, Vec::new()), ..SourcePolicy::default() };
    let http = fetch::http_client(Arc::new(sources.clone()))?;

    // The first write of a FormatPlugin to a fresh API server takes it about 2 s
    // (kubectl apply alone measures the same); install one untimed first.
    let (manifest, wasm) = numbered_plugin(0);
    let url = files.put("/p0.zip", Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])));
    install(&api, &stack, 0, serde_json::json!({"source": {"url": {"url": url}}})).await?;

    // ZIP: install, wait, delete; a new plugin (new digest, new key) each time.
    let (mut ready, mut served, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
    for n in 1..=INSTALLS {
        let (manifest, wasm) = numbered_plugin(n);
        let url =
            files.put(&format!("/p{n}.zip"), Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])));
        let started = Instant::now();
        let source = SourceUrl::parse(&url, SourceKind::Url)?;
        let fetched = fetch::url(&http, &source, None, &FetchLimits::default()).await?;
        pipeline.finish(fetched)?;
        baseline.push(started.elapsed());
        let spec = serde_json::json!({"source": {"url": {"url": url}}});
        let (to_ready, to_served) = install(&api, &stack, n, spec).await?;
        ready.push(to_ready);
        served.push(to_served);
    }
    let (zip_ready, served, baseline) = (Summary::of(ready), Summary::of(served), Summary::of(baseline));
    report.row(
        "ZIP source: apply → Ready (target p50 ≤ 2 s)",
        summary(&zip_ready),
        summary(&baseline),
        ratio(&zip_ready, &baseline),
    );
    report.row(
        "ZIP source: apply → first served call (target ≤ 3 s)",
        summary(&served),
        summary(&baseline),
        ratio(&served, &baseline),
    );

    // OCI: a tag per plugin in one repository of a real registry, pushed with oras.
    let registry = OciRegistry::start(RegistryOptions::default())?;
    let (mut ready, mut baseline) = (Vec::new(), Vec::new());
    let oci_url = registry.url("plugins/numbered");
    let oci_source = SourceUrl::parse(&oci_url, SourceKind::Oci)?;
    let policy = Arc::new(sources.clone());
    for n in INSTALLS * 3 / 2 + 1..=INSTALLS * 2 {
        let (manifest, wasm) = numbered_plugin(n);
        let tag = format!("{n}.0.0");
        let layers = [
            ("plugin.wasm", wasm.as_slice(), "application/wasm"),
            ("plugin.toml", manifest.as_slice(), "application/toml"),
        ];
        registry.push("plugins/numbered", &tag, "application/vnd.wasmplug.plugin.v1", &layers)?;
        let started = Instant::now();
        let request = OciRequest {
            url: &oci_source,
            target: OciTarget::Tag(&tag),
            login: None,
            ca: None,
            insecure: true,
            cosign: false,
        };
        pipeline.finish(fetch::oci(policy.clone(), &request, &FetchLimits::default()).await?)?;
        baseline.push(started.elapsed());
        let spec = serde_json::json!({"source": {"oci": {"url": oci_url, "ref": {"tag": tag}, "insecure": true}}});
        ready.push(install(&api, &stack, n, spec).await?.0);
    }
    let (ready, baseline) = (Summary::of(ready), Summary::of(baseline));
    report.row(
        "OCI tag source: apply → Ready, vs the ZIP source's apply → Ready above (target p50 ≤ 1.2×)",
        summary(&ready),
        summary(&zip_ready),
        format!("{:.2}× ({})", ready.ratio_to(&zip_ready), crate::met(ready.ratio_to(&zip_ready) <= 1.2)),
    );
    report.row(
        "OCI tag source: apply → Ready vs its pipeline in-process",
        summary(&ready),
        summary(&baseline),
        ratio(&ready, &baseline),
    );

    // Git: a tag per plugin in one repository.
    let repo = git.create("plugins")?;
    let (mut ready, mut baseline) = (Vec::new(), Vec::new());
    let scratch = tempfile::tempdir()?;
    for n in INSTALLS + 1..=INSTALLS * 3 / 2 {
        let (manifest, wasm) = numbered_plugin(n);
        repo.commit(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)], &format!("plugin {n}"))?;
        let tag = format!("v{n}.0.0");
        repo.tag(&tag)?;
        let reference = wasmplug_crds::GitRef { tag: Some(tag.clone()), branch: None, commit: None };
        let started = Instant::now();
        let url = SourceUrl::parse(repo.url(), SourceKind::Git)?;
        let request = GitRequest { url: &url, reference: Some(&reference), path: None, credentials: None };
        pipeline.finish(fetch::git(&request, scratch.path(), &FetchLimits::default())?)?;
        baseline.push(started.elapsed());
        let spec = serde_json::json!({"source": {"git": {"url": repo.url(), "ref": {"tag": tag}}}});
        ready.push(install(&api, &stack, n, spec).await?.0);
    }
    let (ready, baseline) = (Summary::of(ready), Summary::of(baseline));
    report.row(
        "Git tag source: apply → Ready (target p50 ≤ 5 s)",
        summary(&ready),
        summary(&baseline),
        ratio(&ready, &baseline),
    );

    // 100 FormatPlugins applied at once.
    let pid = stack.operator.process.pid().context("the operator is not running")?;
    let idle = rss_mib(pid)?;
    let mut baseline = Duration::ZERO;
    let mut names = Vec::new();
    for n in 1000..1000 + MANY {
        let (manifest, wasm) = numbered_plugin(n);
        let url =
            files.put(&format!("/p{n}.zip"), Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])));
        let started = Instant::now();
        let source = SourceUrl::parse(&url, SourceKind::Url)?;
        pipeline.finish(fetch::url(&http, &source, None, &FetchLimits::default()).await?)?;
        baseline += started.elapsed();
        names.push((format!("many-{n}"), url));
    }
    let started = Instant::now();
    for (name, url) in &names {
        let object = object(name, serde_json::json!({"source": {"url": {"url": url}}}))?;
        api.create(&PostParams::default(), &object).await?;
    }
    loop {
        let list = api.list(&Default::default()).await?;
        let ready = list.items.iter().filter(|p| p.is_ready_at_current_generation()).count();
        if ready == names.len() {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "only {ready} of {MANY} Ready after 300 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_ready = started.elapsed();
    let peak = peak_rss_mib(pid)?;
    report.row(
        &format!("{MANY} FormatPlugins applied at once → all Ready (target ≤ 30 s)"),
        format(all_ready),
        format!("{} in-process, one after another", format(baseline)),
        format!("{:.2}×", all_ready.as_secs_f64() / baseline.as_secs_f64()),
    );
    report.row(
        &format!("operator memory with {MANY} FormatPlugins (target ≤ 100 MiB)"),
        format!("peak {peak:.0} MiB, now {:.0} MiB", rss_mib(pid)?),
        format!("{idle:.0} MiB idle before"),
        format!("{:.2} MiB per plugin", (peak - idle) / f64::from(MANY)),
    );
    drop(stack);
    admission(report, &ns.api::<FormatPlugin>()).await
}

/// Server-side dry-run creates (which run admission, store nothing and wake no
/// controller) in a namespace the webhook checks, against the same in `plain`,
/// which it does not: what the webhook adds to each write, its list of the
/// namespace's FormatPlugins (the 100 above) included.
async fn admission(report: &mut Report, plain: &Api<FormatPlugin>) -> anyhow::Result<()> {
    let checked_ns = control_plane().namespace("bench-webhook").await;
    let webhooked = Webhooked::start(checked_ns.name(), &[]).await?;
    webhooked.register().await?;
    let checked = checked_ns.api::<FormatPlugin>();
    // The same 100 objects for the webhook to list.
    for n in 0..MANY {
        let spec =
            serde_json::json!({"source": {"url": {"url": format!("http://127.0.0.1:9/p{n}.zip")}}, "suspend": true});
        checked.create(&PostParams::default(), &object(&format!("many-{n}"), spec)?).await?;
    }
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    let probe = object("probe", serde_json::json!({"source": {"builtin": {"format": "maven"}}}))?;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..WRITES {
        let started = Instant::now();
        plain.create(&dry_run, &probe).await?;
        without.push(started.elapsed());
        let started = Instant::now();
        checked.create(&dry_run, &probe).await?;
        with.push(started.elapsed());
    }
    let (with, without) = (Summary::of(with), Summary::of(without));
    report.row(
        &format!("a FormatPlugin write through the webhook ({MANY} objects listed)"),
        summary(&with),
        format!("{} without it", summary(&without)),
        ratio(&with, &without),
    );
    Ok(())
}

/// Creates a FormatPlugin for numbered plugin `n` with `spec`, times apply → Ready
/// and apply → first call served by the host, then deletes it and waits until the
/// host has unloaded it.
async fn install(
    api: &Api<FormatPlugin>,
    stack: &Stack,
    n: u32,
    spec: serde_json::Value,
) -> anyhow::Result<(Duration, Duration)> {
    let name = format!("p{n}");
    let key = format!("numbered-{n:06}");
    let started = Instant::now();
    api.create(&PostParams::default(), &object(&name, spec)?).await?;
    let ready = async {
        loop {
            if api.get(&name).await?.is_ready_at_current_generation() {
                return anyhow::Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let served = async {
        loop {
            if stack.validate(&key, "x", b"").await?.status == 204 {
                return anyhow::Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (ready, served) = tokio::time::timeout(Duration::from_secs(120), async { tokio::try_join!(ready, served) })
        .await
        .with_context(|| format!("{name} was not Ready and served within 120 s"))??;
    api.delete(&name, &DeleteParams::default()).await?;
    while stack.validate(&key, "x", b"").await?.status != 404 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((ready, served))
}

fn object(name: &str, spec: serde_json::Value) -> anyhow::Result<FormatPlugin> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "wasmplug.dev/v1alpha1", "kind": "FormatPlugin",
        "metadata": {"name": name}, "spec": spec,
    }))?)
}

/// The operator's work without Kubernetes: validate, precompile, publish.
struct Pipeline {
    runtime: Arc<Runtime>,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        Ok(Pipeline {
            runtime: Arc::new(Runtime::new(EngineSettings::default())?),
            store: Store::new(dir.path()),
            _dir: dir,
        })
    }

    /// Validates, precompiles and publishes, as the operator does on its
    /// blocking threads (validation runs the plugin's `format-key` under the
    /// runtime's own driver, which may not be entered from an async task).
    fn finish(&self, fetched: fetch::Fetched) -> anyhow::Result<()> {
        let valid =
            tokio::task::block_in_place(|| validate::validate(fetched, validate::Expected::default(), &self.runtime))?;
        let digest = valid.package.digest;
        self.store.publish(&digest, &[("plugin.toml", &valid.manifest_file), ("plugin.wasm", &valid.package.wasm)])?;
        self.store.add_file(&digest, &Precompiled::file_for(&valid.engine), valid.precompiled.bytes())?;
        Ok(())
    }
}

fn summary(s: &Summary) -> String {
    format!("p50 {} (p95 {})", format(s.median), format(s.p95))
}

fn ratio(measured: &Summary, baseline: &Summary) -> String {
    format!("{:.1}×", measured.ratio_to(baseline))
}
