//! `wasmplug`: the plugin author's command. It makes, builds, checks, calls,
//! signs, verifies and publishes plugin packages with the operator's and the
//! host's own code, so "valid", "answers" and "signed" mean here exactly what
//! they mean in a cluster.

mod build;
mod call;
mod package;
mod push;
mod scaffold;
mod signing;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmplug_host::cli::EngineArgs;
use wasmplug_host::runtime::Runtime;
use wasmplug_operator::fetch::{self, FetchLimits, Fetched};
use wasmplug_operator::validate::{self, Expected, Validated};

use call::CallKind;
use package::SourceArgs;

/// Make, build, check, call, sign and publish wasmplug plugins (a package is a
/// directory or ZIP holding plugin.toml and plugin.wasm) exactly as the
/// operator and hosts judge and run them.
#[derive(Debug, Parser)]
#[command(name = "wasmplug", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a new plugin crate: a format handler that builds on its own
    /// (Cargo.toml, plugin.toml, the WIT contract, a unit test, a sample
    /// artifact and a README with the next commands).
    New(scaffold::NewArgs),
    /// Build the plugin crate for wasm32-wasip2, check it as the operator
    /// would, and write target/wasmplug/<name>/ (the package a host loads)
    /// and target/wasmplug/<name>-<version>.zip. A build that fails the check
    /// writes nothing.
    Build(build::BuildArgs),
    /// Check a package by the operator's rules: both files, the manifest, the
    /// component's world and imports, and its compilation for the hosts'
    /// engine. Exits with status 1 naming the first problem.
    Check {
        /// The package: a directory or a ZIP file.
        package: PathBuf,
        /// The format key the package must declare (a FormatPlugin's spec.formatKey).
        #[arg(long)]
        format_key: Option<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Pack a package directory into the ZIP a url (or git, oci) source takes:
    /// plugin.toml, plugin.wasm and plugin.wasm.sig when there is one, at the
    /// root. Checks the package first; never packs an invalid one.
    Package {
        /// The package directory.
        package: PathBuf,
        /// The ZIP to write; defaults to <name>-<version>.zip beside the directory.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Print a FormatPlugin for the package, to kubectl apply or commit to
    /// GitOps: named after the plugin, with its format key, and the source
    /// given here.
    #[command(group(clap::ArgGroup::new("source").required(true).multiple(false)))]
    Manifest {
        /// The package: a directory or a ZIP file.
        package: PathBuf,
        #[command(flatten)]
        source: SourceArgs,
        /// Pin plugin.wasm's digest (spec.sha256): only this build installs.
        #[arg(long)]
        pin: bool,
    },
    /// Run the plugin on artifacts as a host would, under the same limits,
    /// without a server: Artifact Keeper's "format test". Prints the answer as
    /// JSON, the same as the host's HTTP API (metadata gets the artifact's
    /// SHA-256 when the plugin leaves it out); exits with status 1 when the
    /// plugin refuses an artifact or fails.
    Call {
        /// The package: a directory or a ZIP file.
        package: PathBuf,
        #[command(subcommand)]
        call: CallKind,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Sign a package directory's plugin.wasm with an Ed25519 private key,
    /// writing plugin.wasm.sig beside it: Artifact Keeper's detached signature,
    /// what spec.verify and the chart's signatures.required check.
    Sign {
        /// The package directory.
        package: PathBuf,
        /// The private key, PEM (openssl genpkey -algorithm ed25519 -out key.pem).
        #[arg(long)]
        key: PathBuf,
    },
    /// Push a package to an OCI registry as the artifact an oci source pulls
    /// (plugin.wasm, plugin.toml and plugin.wasm.sig when signed). Checks it
    /// first; prints the manifest digest to pin.
    Push(push::PushArgs),
    /// Verify a package's plugin.wasm.sig with trusted public keys, as the
    /// operator does. Exits with status 1 when none of them verifies it.
    Verify {
        /// The package: a directory or a ZIP file.
        package: PathBuf,
        /// A trusted public key file: PEM (openssl pkey -pubout), or the base64
        /// of an Ed25519 key's 32 bytes. Repeat for several.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::New(args) => scaffold::new(&args),
        Command::Build(args) => build::build(&args),
        Command::Check { package, format_key, engine } => package::check(&package, format_key.as_deref(), &engine),
        Command::Package { package, out, engine } => package::pack(&package, out.as_deref(), &engine),
        Command::Manifest { package, source, pin } => package::manifest(&package, &source, pin),
        Command::Call { package, call, engine } => call::run_call(&package, &call, &engine),
        Command::Sign { package, key } => signing::sign(&package, &key),
        Command::Push(args) => push::push(&args),
        Command::Verify { package, keys } => signing::verify(&package, &keys),
    };
    match outcome {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// `error` and those of its causes its message does not already include.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1).map(ToString::to_string) {
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

/// The package at `path`, read as a `local` source reads it.
fn read(path: &Path) -> anyhow::Result<Fetched> {
    if std::fs::symlink_metadata(path).is_err() {
        anyhow::bail!("{} does not exist; give a package directory or ZIP", path.display());
    }
    let path = std::path::absolute(path)?;
    Ok(fetch::local(&path, &FetchLimits::default())?)
}

/// A package the operator's validation accepted, with the runtime that
/// compiled it for `engine`.
struct Checked {
    /// Where it was read, for messages.
    at: String,
    /// Its plugin.wasm.sig, if it has one.
    signature: Option<Vec<u8>>,
    validated: Validated,
    runtime: Runtime,
}

impl Checked {
    /// Prints, to standard error, a warning per plugin.toml field no rule reads.
    fn warn(&self) {
        for warning in self.validated.package.manifest.warnings() {
            eprintln!("warning: {}: {warning}", self.at);
        }
    }
}

/// Reads the package at `path` and validates it as the operator does.
fn checked(path: &Path, format_key: Option<&str>, engine: &EngineArgs) -> anyhow::Result<Checked> {
    validated(read(path)?, format_key, engine)
}

/// Validates the package `fetched` as the operator does.
fn validated(fetched: Fetched, format_key: Option<&str>, engine: &EngineArgs) -> anyhow::Result<Checked> {
    let (at, signature) = (fetched.at.clone(), fetched.signature.clone());
    let runtime = Runtime::new(engine.settings()).context("failed to start the WebAssembly runtime")?;
    let expected = Expected { sha256: None, format_key, limits: engine.max_limits() };
    let validated = validate::validate(fetched, expected, &runtime)?;
    Ok(Checked { at, signature, validated, runtime })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
