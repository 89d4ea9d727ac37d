//! Per-call cost on real packages (issue 15): for each kind of package of the
//! corpus and each size bucket, a metadata answer as the host gives it (the
//! handler's answer, then the host's SHA-256 when the handler left it out)
//! from the builtin formats compiled as one plugin vs the same source native;
//! and an upload (`POST …/artifacts`: validate and metadata on one instance) vs
//! the two calls a registry would otherwise make.

use std::sync::Arc;

use wasmplug_host::builtin;
use wasmplug_host::handler::{FormatHandler, SharedHandler, with_checksum};
use wasmplug_host::runtime::{CallLimits, EngineSettings, Runtime};

use crate::corpus::{self, Package, SIZES};
use crate::stats::{Summary, measure_pair};
use crate::{Report, read, summary};

/// `only`, if given, keeps the packages whose description (`npm tarball, 1.0
/// KiB`) contains it, for profiling one kind.
pub fn run(report: &mut Report, runtime: &Arc<Runtime>, only: Option<&str>) -> anyhow::Result<()> {
    let plugin: SharedHandler = Arc::new(runtime.load(&read("builtin-formats")?, CallLimits::DEFAULT)?);
    let unity: SharedHandler = Arc::new(runtime.load(&read("unity-format")?, CallLimits::DEFAULT)?);
    // Large packages again on a host that keeps only 4 MiB resident
    // (`host.keepResident: 4Mi`).
    let lean = EngineSettings { keep_resident_bytes: 4 << 20, ..*runtime.settings() };
    let lean_plugin: SharedHandler =
        Arc::new(Runtime::new(lean)?.load(&read("builtin-formats")?, CallLimits::DEFAULT)?);
    let (mut worst_large, mut worst_lean) = (Worst::default(), Worst::default());
    for size in SIZES {
        let mut packages = corpus::packages(size);
        if size == SIZES[0] {
            packages.push(corpus::pom(size));
        }
        for package in &packages {
            let what = format!("{} {}, {}", package.format, package.kind, size_label(package.data.len()));
            if only.is_some_and(|only| !what.contains(only)) {
                continue;
            }
            let runs = runs_for(package.data.len());
            let routed = format!("{}/{}", package.format, package.path);
            if let Some(native) = builtin::handler(package.format, &CallLimits::DEFAULT) {
                let compare = |plugin: &SharedHandler, report: &mut Report, settings: &str| {
                    let (wasm_time, native_time) = measure_pair(
                        runs / 10,
                        runs,
                        || metadata_answer(plugin, &routed, &package.data),
                        || metadata_answer(&native, &package.path, &package.data),
                    );
                    let ratio = wasm_time.ratio_to(&native_time);
                    report.row(
                        &format!("{what}: metadata answer, plugin vs native{settings}"),
                        summary(&wasm_time),
                        summary(&native_time),
                        format!("{ratio:.2}×"),
                    );
                    ratio
                };
                let ratio = compare(&plugin, report, "");
                if size >= LARGE {
                    worst_large.note(ratio, &what);
                    worst_lean.note(compare(&lean_plugin, report, ", 4 MiB kept resident"), &what);
                }
            }
            let (handler, path) = if package.format == "unity" { (&unity, &package.path) } else { (&plugin, &routed) };
            let (upload, two_calls) = upload_vs_two_calls(handler, path, package, runs);
            report.row(
                &format!("{what}: upload (one call) vs validate + metadata, plugin"),
                summary(&upload),
                summary(&two_calls),
                format!("{:.2}×", upload.ratio_to(&two_calls)),
            );
        }
    }
    for (worst, settings) in [(worst_large, "default settings"), (worst_lean, "4 MiB kept resident")] {
        if let Some((ratio, what)) = worst.0 {
            report.row(
                &format!("plugin vs native, worst of the packages of 100 KiB and more, {settings} (target ≤ 1.5×)"),
                format!("{ratio:.2}×"),
                what,
                crate::met(ratio <= 1.5).to_owned(),
            );
        }
    }
    Ok(())
}

/// Packages this large or larger have the target of 1.5× the native builtin.
const LARGE: usize = 100 << 10;

/// The highest ratio seen, and what it was measured on.
#[derive(Default)]
struct Worst(Option<(f64, String)>);

impl Worst {
    fn note(&mut self, ratio: f64, what: &str) {
        if self.0.as_ref().is_none_or(|(worst, _)| ratio > *worst) {
            self.0 = Some((ratio, what.to_owned()));
        }
    }
}

/// What the host answers to `POST …/metadata`, without the HTTP around it.
pub fn metadata_answer(handler: &SharedHandler, path: &str, data: &[u8]) {
    let metadata = handler.parse_metadata(path, data).unwrap_or_else(|e| panic!("{path}: {e}"));
    std::hint::black_box(with_checksum(metadata, data));
}

fn upload_vs_two_calls(handler: &SharedHandler, path: &str, package: &Package, runs: usize) -> (Summary, Summary) {
    let data = &package.data;
    measure_pair(
        runs / 10,
        runs,
        || {
            let metadata = handler.accept(path, data).unwrap_or_else(|e| panic!("{path}: {e}"));
            std::hint::black_box(with_checksum(metadata, data));
        },
        || {
            FormatHandler::validate(handler.as_ref(), path, data).unwrap_or_else(|e| panic!("{path}: {e}"));
            metadata_answer(handler, path, data);
        },
    )
}

/// Fewer runs for larger packages: about the same time per bucket.
fn runs_for(len: usize) -> usize {
    (50_000_000 / len.max(1)).clamp(10, 1000)
}

fn size_label(len: usize) -> String {
    if len >= 1 << 20 {
        format!("{:.1} MiB", len as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", len as f64 / 1024.0)
    }
}
