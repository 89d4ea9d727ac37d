//! Benchmarks. Every figure is reported with a baseline measured in the same run
//! (native code, bare wasmtime, compiling from scratch, the operator's pipeline
//! in-process), never checked against a fixed time. Run in release:
//!
//!     cargo run --release -p wasmplug-benches               # the host
//!     cargo run --release -p wasmplug-benches -- http         # HTTP calls/s only
//!     cargo run --release -p wasmplug-benches -- calls [KIND] # per-call cost on real packages (KIND: e.g. "npm tarball, 1.0")
//!     cargo build --release --bins && \
//!       cargo run --release -p wasmplug-benches -- reconcile  # the operator, on a real API server
//!     cargo run --release -p wasmplug-benches -- sources      # the operator against hostile sources
//!     cargo run --release -p wasmplug-benches -- distribution # packages reaching hosts
//!     cargo run --release -p wasmplug-benches -- serving      # which hosts serve, in status
//!
//! The output is a Markdown table (see docs/performance.md).

mod calls;
mod corpus;
mod distribution;
mod hardening;
mod hostile_sources;
mod http_load;
mod numbered;
mod raw;
mod reconcile;
mod serving;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use stats::{Summary, format, measure, measure_pair};
use wasmplug_formats::test_support::{gzip, tar};
use wasmplug_host::builtin;
use wasmplug_host::handler::SharedHandler;
use wasmplug_host::local::LocalSource;
use wasmplug_host::plugin::Package;
use wasmplug_host::registry::{Install, Origin, Registry};
use wasmplug_host::runtime::{CallLimits, EngineSettings, Runtime};
use wasmplug_host::server::{App, ServerConfig, serve};

struct Report(Vec<[String; 4]>);

impl Report {
    fn row(&mut self, what: &str, measured: String, baseline: String, ratio: String) {
        println!("measured: {what}: {measured} (baseline {baseline}, {ratio})");
        self.0.push([what.to_owned(), measured, baseline, ratio]);
    }

    fn print(&self) {
        println!("\n| what | measured | baseline (same run) | ratio |\n| --- | --- | --- | --- |");
        for [what, measured, baseline, ratio] in &self.0 {
            println!("| {what} | {measured} | {baseline} | {ratio} |");
        }
    }
}

fn summary(s: &Summary) -> String {
    format!("median {} (p95 {})", format(s.median), format(s.p95))
}

fn main() -> anyhow::Result<()> {
    let runtime = Arc::new(Runtime::new(EngineSettings::default())?);
    let mut report = Report(Vec::new());
    match std::env::args().nth(1).as_deref() {
        Some("reconcile") => reconcile::run(&mut report)?,
        Some("sources") => hostile_sources::run(&mut report)?,
        Some("distribution") => distribution::run(&mut report)?,
        Some("serving") => serving::run(&mut report)?,
        Some("http") => {
            let (npm_path, tarball) = npm_package(4096);
            let wasm: SharedHandler = Arc::new(runtime.load(&read("npm-format")?, CallLimits::DEFAULT)?);
            http_throughput(&mut report, &wasm, &npm_path, &tarball)?;
        }
        Some("calls") => {
            per_call(&mut report, &runtime)?;
            calls::run(&mut report, &runtime, std::env::args().nth(2).as_deref())?;
        }
        Some("hardening") => {
            hardening::run(&mut report)?;
            per_call(&mut report, &runtime)?;
        }
        _ => host(&mut report, &runtime)?,
    }
    report.print();
    Ok(())
}

fn read(name: &str) -> anyhow::Result<Package> {
    Ok(Package::read_dir(&wasmplug_e2e::example_package(name))?)
}

/// The host in this process: plugin vs builtin, per-call cost, loading,
/// swapping, HTTP throughput and memory.
fn host(report: &mut Report, runtime: &Arc<Runtime>) -> anyhow::Result<()> {
    // Native builtin vs the same source as a plugin, on one real ~4 KiB package.
    let (npm_path, tarball) = npm_package(4096);
    let native = builtin::handler("npm", &CallLimits::DEFAULT).context("npm is builtin")?;
    let wasm: SharedHandler = Arc::new(runtime.load(&read("npm-format")?, CallLimits::DEFAULT)?);
    let (wasm_time, native_time) = measure_pair(
        200,
        3000,
        || calls::metadata_answer(&wasm, &npm_path, &tarball),
        || calls::metadata_answer(&native, &npm_path, &tarball),
    );
    let ratio = wasm_time.ratio_to(&native_time);
    report.row(
        &format!("npm metadata answer, {} B tarball: plugin vs native builtin (target ≤ 3×)", tarball.len()),
        summary(&wasm_time),
        summary(&native_time),
        format!("{ratio:.2}× ({})", met(ratio <= 3.0)),
    );

    per_call(report, runtime)?;
    calls::run(report, runtime, None)?;
    let misbehaving = read("misbehaving")?;

    // Loading: compiling plugin.wasm vs loading the precompiled artifact.
    let unity = read("unity-format")?;
    let compile_time = measure(1, 7, || drop(runtime.load(&unity, CallLimits::DEFAULT).expect("loads")));
    let precompiled = runtime.precompile(&unity.wasm)?;
    let precompiled_time =
        measure(3, 30, || drop(runtime.load_precompiled(&unity, &precompiled, CallLimits::DEFAULT).expect("loads")));
    report.row(
        &format!("load the {} KiB unity plugin: precompiled vs compile", unity.wasm.len() / 1024),
        summary(&precompiled_time),
        summary(&compile_time),
        format!("{:.0}× faster", compile_time.median.as_secs_f64() / precompiled_time.median.as_secs_f64()),
    );

    // Swap: new package in place → first call served by it.
    let (compiled_swap, precompiled_swap) = swap_times(runtime, &misbehaving)?;
    report.row(
        "swap, new package in place → first call served by it (local mode, compiling)",
        summary(&compiled_swap),
        "—".into(),
        "excludes the poll interval (500 ms default)".into(),
    );
    report.row(
        "swap, precompiled artifact in place → first call served by it",
        summary(&precompiled_swap),
        "—".into(),
        "zero failed calls: see host/tests/http.rs".into(),
    );

    http_throughput(report, &wasm, &npm_path, &tarball)?;

    // Memory of an idle host with 50 plugins loaded.
    let before = rss_mib()?;
    let many = Registry::new();
    for i in 0..50 {
        many.install(install(&format!("unity-{i}"), Arc::new(runtime.load(&unity, CallLimits::DEFAULT)?)));
    }
    let after = rss_mib()?;
    report.row(
        "resident memory, 50 plugins loaded (process total)",
        format!("{after:.0} MiB"),
        format!("{before:.0} MiB before loading them"),
        format!("{:.1} MiB per plugin", (after - before) / 50.0),
    );
    drop(many);

    Ok(())
}

/// HTTP metadata calls per second, plugin and builtin, with the load generator
/// on the same machine: with the default config and with 2 calls per format.
fn http_throughput(report: &mut Report, wasm: &SharedHandler, npm_path: &str, tarball: &[u8]) -> anyhow::Result<()> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let default = ServerConfig::default();
    let both_cores = ServerConfig { max_calls_per_format: 2, ..ServerConfig::default() };
    for (config, which) in [
        (default, format!("the default config: {} call(s) per format on this machine", default.max_calls_per_format)),
        (both_cores, "2 calls per format (every core)".to_owned()),
    ] {
        let (native_rate, wasm_rate, failures) = tokio.block_on(http_rates(wasm.clone(), npm_path, tarball, config))?;
        report.row(
            &format!("HTTP metadata calls/s, {} B npm tarball, 16 connections, same machine, {which}", tarball.len()),
            format!("plugin: {wasm_rate:.0}/s"),
            format!("builtin: {native_rate:.0}/s"),
            format!(
                "{:.2}× ({failures} failed; target ≥ 15000/s: {})",
                wasm_rate / native_rate,
                met(wasm_rate >= 15_000.0 && failures == 0)
            ),
        );
    }

    Ok(())
}

/// The host's per-call path (registry lookup + fresh instance + call under a
/// deadline) against bare wasmtime, synchronously (how calls ran before the
/// wall-clock limit) and through the async API under a deadline.
fn per_call(report: &mut Report, runtime: &Arc<Runtime>) -> anyhow::Result<()> {
    let misbehaving = read("misbehaving")?;
    let registry = Registry::new();
    registry.install(install("misbehaving", Arc::new(runtime.load(&misbehaving, CallLimits::DEFAULT)?)));
    let raw = raw::Raw::new(&misbehaving.wasm)?;
    let host_call = || {
        let serving = registry.serving("misbehaving").expect("serving");
        serving.handler().validate("fine", b"").expect("valid");
    };
    let (host_time, raw_time) = measure_pair(500, 5000, host_call, || raw.validate("fine", b"").expect("valid"));
    let (raw_async_time, raw_sync_time) = measure_pair(
        500,
        5000,
        || raw.validate_async("fine", b"").expect("valid"),
        || raw.validate("fine", b"").expect("valid"),
    );
    let ratio = host_time.ratio_to(&raw_time);
    report.row(
        "per call: host (lookup + fresh instance + call under a wall-clock deadline) vs bare wasmtime, default pooling, instantiate + call (target ≤ 0.7×)",
        summary(&host_time),
        summary(&raw_time),
        format!("{ratio:.2}× ({})", met(ratio <= 0.7)),
    );
    report.row(
        "the wall-clock mechanism alone: bare wasmtime async under a tokio deadline vs bare wasmtime sync",
        summary(&raw_async_time),
        summary(&raw_sync_time),
        format!("{:.2}×", raw_async_time.ratio_to(&raw_sync_time)),
    );

    Ok(())
}

fn met(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

fn install(key: &str, handler: SharedHandler) -> Install {
    Install {
        key: key.to_owned(),
        origin: Origin::Plugin { name: key.to_owned(), version: "0.1.0".to_owned() },
        digest: None,
        limits: None,
        compilation: None,
        enabled: true,
        warnings: Vec::new(),
        handler,
    }
}

/// An npm tarball of about `size` bytes (incompressible contents).
fn npm_package(size: usize) -> (String, Vec<u8>) {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let noise: String = (0..size)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b'!' + (seed % 90) as u8)
        })
        .collect();
    let json = r#"{"name":"bench-pkg","version":"1.2.3"}"#;
    let tarball = gzip(&tar(&[("package/package.json", json.as_bytes()), ("package/data.txt", noise.as_bytes())]));
    ("bench-pkg/-/bench-pkg-1.2.3.tgz".to_owned(), tarball)
}

fn swap_times(runtime: &Arc<Runtime>, package: &Package) -> anyhow::Result<(Summary, Summary)> {
    let dir = tempfile::tempdir()?;
    let plugin_dir = dir.path().join("misbehaving");
    std::fs::create_dir_all(&plugin_dir)?;
    std::fs::write(plugin_dir.join("plugin.wasm"), &package.wasm)?;
    let manifest = |version: usize| {
        format!("[plugin]\nname = \"misbehaving\"\nversion = \"0.{version}.0\"\n[format]\nkey = \"misbehaving\"\n")
    };
    std::fs::write(plugin_dir.join("plugin.toml"), manifest(0))?;
    let registry = Arc::new(Registry::new());
    let mut source = LocalSource::new(dir.path().to_owned(), runtime.clone(), registry.clone(), CallLimits::DEFAULT);
    source.sync();

    let mut version = 0;
    let compiled = measure(1, 10, || {
        version += 1;
        std::fs::write(plugin_dir.join("plugin.toml"), manifest(version)).expect("write manifest");
        source.sync();
        let serving = registry.serving("misbehaving").expect("serving");
        assert!(matches!(&serving.format.origin, Origin::Plugin { version: v, .. } if *v == format!("0.{version}.0")));
        serving.handler().validate("fine", b"").expect("valid");
    });

    let precompiled = runtime.precompile(&package.wasm)?;
    let swapped = measure(3, 30, || {
        let plugin = runtime.load_precompiled(package, &precompiled, CallLimits::DEFAULT).expect("loads");
        registry.install(install("misbehaving", Arc::new(plugin)));
        registry.serving("misbehaving").expect("serving").handler().validate("fine", b"").expect("valid");
    });
    Ok((compiled, swapped))
}

async fn http_rates(
    wasm: SharedHandler,
    path: &str,
    tarball: &[u8],
    config: ServerConfig,
) -> anyhow::Result<(f64, f64, usize)> {
    let registry = Arc::new(Registry::new());
    registry.install(Install {
        origin: Origin::Builtin,
        ..install("npm", builtin::handler("npm", &CallLimits::DEFAULT).context("npm")?)
    });
    registry.install(install("npm-wasm", wasm));
    let app = App::new(registry, config, None);
    app.set_ready();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, async {
        let _ = stopped.await;
    }));
    let body = Bytes::copy_from_slice(tarball);
    let seconds = Duration::from_secs(3);
    let (native, native_failed) =
        http_load::run(addr, &format!("/v1/formats/npm/metadata?path={path}"), body.clone(), 16, seconds).await;
    let (plugin, plugin_failed) =
        http_load::run(addr, &format!("/v1/formats/npm-wasm/metadata?path={path}"), body, 16, seconds).await;
    let _ = stop.send(());
    let _ = server.await;
    Ok((native, plugin, native_failed + plugin_failed))
}

fn rss_mib() -> anyhow::Result<f64> {
    wasmplug_e2e::memory::rss_mib(std::process::id())
}
