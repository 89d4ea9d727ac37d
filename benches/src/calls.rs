//! Per-call cost on real packages (issue 15): for each kind of package of the
//! corpus and each size bucket, a metadata answer as the host gives it (the
//! handler's answer, then the host's SHA-256 when the handler left it out)
//! from the builtin formats compiled as one plugin vs the same source native;
//! the host's `parse-metadata` call vs bare wasmtime's (default pooling) on the
//! same component; and an upload (`POST …/artifacts`: validate and metadata on
//! one instance) vs the two calls a registry would otherwise make.

use std::sync::Arc;

use wasmplug_host::builtin;
use wasmplug_host::handler::{FormatHandler, SharedHandler, with_checksum};
use wasmplug_host::runtime::{CallLimits, EngineSettings, MemoryReset, Runtime};

use crate::corpus::{self, Package, SIZES};
use crate::raw::Raw;
use crate::stats::{Summary, measure_pair};
use crate::{Report, read, summary};

/// `only`, if given, keeps the packages whose description (`npm tarball, 1.0
/// KiB`) contains it, for profiling one kind.
pub fn run(report: &mut Report, runtime: &Arc<Runtime>, only: Option<&str>) -> anyhow::Result<()> {
    // Every figure below depends on it: where memory may be swapped out, no
    // memory stays resident between calls.
    let reset = match runtime.memory_reset() {
        MemoryReset::PageScan => "written pages zeroed in place (PAGEMAP_SCAN), memory kept resident".to_owned(),
        MemoryReset::Unmap { reason } => format!("every touched page unmapped: {reason}"),
    };
    report.row("how this machine resets a call's memory", reset, "—".to_owned(), String::new());
    let (builtin_formats, unity_format) = (read("builtin-formats")?, read("unity-format")?);
    let plugin: SharedHandler = Arc::new(runtime.load(&builtin_formats, CallLimits::DEFAULT)?);
    let unity: SharedHandler = Arc::new(runtime.load(&unity_format, CallLimits::DEFAULT)?);
    let (bare_plugin, bare_unity) = (Raw::new(&builtin_formats.wasm)?, Raw::new(&unity_format.wasm)?);
    // Large packages again on a host without the large-call pool
    // (`host.largeCalls.slots: 0`): what the pool buys them.
    let one_pool = EngineSettings { large_call_slots: 0, ..*runtime.settings() };
    let one_pool_plugin = builtin_formats_on(one_pool)?;
    let (mut worst_large, mut worst_one_pool) = (Worst::default(), Worst::default());
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
                    worst_one_pool.note(compare(&one_pool_plugin, report, ", without the large-call pool"), &what);
                }
            }
            let (handler, bare, path) = if package.format == "unity" {
                (&unity, &bare_unity, &package.path)
            } else {
                (&plugin, &bare_plugin, &routed)
            };
            let (host_time, bare_time) = measure_pair(
                runs / 10,
                runs,
                || drop(std::hint::black_box(handler.parse_metadata(path, &package.data).expect("metadata"))),
                || drop(std::hint::black_box(bare.parse_metadata(path, &package.data).expect("metadata"))),
            );
            report.row(
                &format!("{what}: parse-metadata call, host vs bare wasmtime (default pooling, instantiate + call)"),
                summary(&host_time),
                summary(&bare_time),
                format!("{:.2}×", host_time.ratio_to(&bare_time)),
            );
            let (upload, two_calls) = upload_vs_two_calls(handler, path, package, runs);
            report.row(
                &format!("{what}: upload (one call) vs validate + metadata, plugin"),
                summary(&upload),
                summary(&two_calls),
                format!("{:.2}×", upload.ratio_to(&two_calls)),
            );
        }
    }
    if only.is_none() {
        after_a_large_upload(report, runtime.settings())?;
        // One pool keeping what a large upload touches: what the large-call
        // pool spares small calls.
        after_a_large_upload(report, &EngineSettings { keep_resident_bytes: ROOMY, ..one_pool })?;
    }
    for (worst, settings) in [(worst_large, "default settings"), (worst_one_pool, "without the large-call pool")] {
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

/// A small call on a host that took one large upload before, against the same
/// call on a host that never did (two runtimes with the same settings, calls
/// alternating). The pages a call used stay resident, zeroed, up to what its
/// slot keeps, and the kernel cannot tell a zeroed page from a written one:
/// every later call on that slot zeroes them all again, unless large uploads
/// have slots of their own.
fn after_a_large_upload(report: &mut Report, settings: &EngineSettings) -> anyhow::Result<()> {
    let (fresh, used) = (builtin_formats_on(*settings)?, builtin_formats_on(*settings)?);
    let npm = |size| corpus::packages(size).into_iter().find(|p| p.format == "npm").expect("an npm tarball");
    let (small, large) = (npm(SIZES[0]), npm(SIZES[3]));
    let (small_path, large_path) = (format!("npm/{}", small.path), format!("npm/{}", large.path));
    metadata_answer(&used, &large_path, &large.data);
    let (after, before) = measure_pair(
        100,
        2000,
        || metadata_answer(&used, &small_path, &small.data),
        || metadata_answer(&fresh, &small_path, &small.data),
    );
    report.row(
        &format!(
            "npm tarball, {}: metadata answer on a host that took one {} upload before vs on one that did not ({} kept resident, {})",
            size_label(small.data.len()),
            size_label(large.data.len()),
            size_label(settings.keep_resident_bytes as usize),
            match settings.large_call_slots {
                0 => "no large-call pool".to_owned(),
                slots => format!("{slots} large-call slots keeping {}", size_label(settings.large_keep_resident_bytes as usize)),
            },
        ),
        summary(&after),
        summary(&before),
        format!("{:.2}×", after.ratio_to(&before)),
    );
    Ok(())
}

/// The builtin formats as one plugin, on a runtime of its own with `settings`.
fn builtin_formats_on(settings: EngineSettings) -> anyhow::Result<SharedHandler> {
    Ok(Arc::new(Runtime::new(settings)?.load(&read("builtin-formats")?, CallLimits::DEFAULT)?))
}

/// `host.keepResident` of a one-pool host that suits large uploads.
const ROOMY: u64 = 16 << 20;

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
