//! Deciding whether fetched files make a plugin every host can load: the host's own
//! rules (`wasmplug_host::plugin` for the manifest, `wasmplug_host::runtime` for the
//! component), plus the FormatPlugin's sha256 pin, then ahead-of-time compilation
//! for the hosts' engine.
//!
//! Pure apart from CPU: bytes in, verdict out. Every error here is permanent; the
//! package or the FormatPlugin must change.

use wasmplug_host::plugin::{Digest, MANIFEST_FILE, Package, PackageError, WASM_FILE};
use wasmplug_host::runtime::{CallLimits, LoadError, Precompiled, Runtime};

use crate::fetch::Fetched;

/// A valid plugin, compiled for the hosts' engine.
#[derive(Debug)]
pub struct Validated {
    pub package: Package,
    /// plugin.toml as fetched, for the store.
    pub manifest_file: Vec<u8>,
    /// The component compiled by [`Runtime::precompile`], with its digest.
    pub precompiled: Precompiled,
    /// The engine the component was compiled for ([`Runtime::engine_id`]).
    pub engine: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(
        "failed to match spec.sha256: {at} has plugin.wasm {actual}, but {pinned} is pinned; \
             update spec.sha256 if this version is intended"
    )]
    DigestMismatch { at: String, pinned: String, actual: Digest },
    #[error(
        "failed to match spec.formatKey: {at} declares format key {actual:?} in plugin.toml, but the \
         FormatPlugin expects {expected:?}; fix spec.formatKey or point the source at the intended plugin"
    )]
    FormatKeyMismatch { at: String, expected: String, actual: String },
    #[error("{at}: {source}")]
    Component { at: String, source: LoadError },
}

/// What the FormatPlugin expects of the package, beyond the host's own rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expected<'a> {
    /// `spec.sha256`: the digest plugin.wasm must have.
    pub sha256: Option<&'a str>,
    /// `spec.formatKey`: the key plugin.toml must declare.
    pub format_key: Option<&'a str>,
    /// The limits hosts grant the plugin before its manifest asks for less:
    /// the cluster's maximum, lowered by `spec.limits`. The plugin must load
    /// under what it will be granted.
    pub limits: CallLimits,
}

/// Checks `fetched` against every rule and compiles it. CPU-heavy; run it off the
/// executor.
pub fn validate(fetched: Fetched, expected: Expected<'_>, runtime: &Runtime) -> Result<Validated, ValidateError> {
    let Fetched { at, manifest, wasm, .. } = fetched;
    let manifest = manifest.ok_or_else(|| PackageError::Missing { at: at.clone(), file: MANIFEST_FILE })?;
    let wasm = wasm.ok_or_else(|| PackageError::Missing { at: at.clone(), file: WASM_FILE })?;
    let package = Package::from_files(&at, &manifest, wasm)?;
    if let Some(key) = expected.format_key.filter(|key| *key != package.manifest.format_key) {
        let actual = package.manifest.format_key.clone();
        return Err(ValidateError::FormatKeyMismatch { at, expected: key.to_owned(), actual });
    }
    if let Some(pinned) = expected.sha256 {
        let matches = pinned.parse::<Digest>().is_ok_and(|pinned| pinned == package.digest);
        if !matches {
            return Err(ValidateError::DigestMismatch { at, pinned: pinned.to_owned(), actual: package.digest });
        }
    }
    let component = |source| ValidateError::Component { at: at.clone(), source };
    // Compile once, then check the compiled form: what the store gets is what was checked.
    let precompiled = runtime.precompile(&package.wasm).map_err(component)?;
    let limits = expected.limits.grant([&package.manifest.resources]);
    runtime.load_precompiled(&package, &precompiled, limits).map_err(component)?;
    Ok(Validated { package, manifest_file: manifest, precompiled, engine: runtime.engine_id().to_owned() })
}
