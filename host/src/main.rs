//! `wasmplug-host`: serves format handlers over HTTP.
//!
//! Local mode (no Kubernetes): `--plugins-dir` names a directory of plugin
//! packages that is watched for changes; `--builtin` picks compiled-in formats.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use wasmplug_host::builtin;
use wasmplug_host::local::LocalSource;
use wasmplug_host::registry::Registry;
use wasmplug_host::runtime::{CallLimits, EngineSettings, Runtime};
use wasmplug_host::server::{App, ServerConfig, serve};

/// Serve artifact-registry format handlers (builtin and WebAssembly plugins) over HTTP.
#[derive(Debug, Parser)]
#[command(name = "wasmplug-host", version)]
struct Args {
    /// Address to serve the HTTP API on.
    #[arg(long, env = "WASMPLUG_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Local mode: a directory of plugin packages (one subdirectory each with
    /// plugin.toml and plugin.wasm), watched for changes.
    #[arg(long, env = "WASMPLUG_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,

    /// Builtin formats to serve, comma-separated, or "all", or "" for none.
    #[arg(long, env = "WASMPLUG_BUILTINS", value_delimiter = ',', default_value = "all")]
    builtin: Vec<String>,

    /// Most memory one call may use, with an optional Ki, Mi or Gi suffix. The
    /// cluster maximum: plugins may ask for less, never more.
    #[arg(long, env = "WASMPLUG_MAX_MEMORY", default_value = "64Mi", value_parser = parse_memory)]
    max_memory: u64,

    /// Longest time one call may take, in milliseconds.
    #[arg(long, env = "WASMPLUG_MAX_CALL_MS", default_value_t = 5000)]
    max_call_ms: u64,

    /// Fuel for one call; setting it turns on fuel metering (slower).
    #[arg(long, env = "WASMPLUG_MAX_FUEL")]
    max_fuel: Option<u64>,

    /// Handler calls running at once; more wait for a turn.
    #[arg(long, env = "WASMPLUG_MAX_CONCURRENT_CALLS", default_value_t = 64)]
    max_concurrent_calls: u32,

    /// Largest request body, in bytes with an optional Ki, Mi or Gi suffix.
    #[arg(long, env = "WASMPLUG_MAX_BODY", default_value = "64Mi", value_parser = parse_memory)]
    max_body: u64,

    /// How often the plugin directory is checked for changes, in milliseconds.
    #[arg(long, env = "WASMPLUG_POLL_MS", default_value_t = 500)]
    poll_ms: u64,

    /// Log as JSON lines (default when stdout is not a terminal) or for people.
    #[arg(long, env = "WASMPLUG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Auto,
    Json,
    Pretty,
}

fn parse_memory(text: &str) -> Result<u64, String> {
    wasmplug_crds::parse_memory(text).ok_or_else(|| format!("{text:?} is not a size such as 64Mi, 1Gi or 1048576"))
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_env("WASMPLUG_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);

    let max_limits = CallLimits {
        memory_bytes: args.max_memory,
        timeout: Duration::from_millis(args.max_call_ms),
        fuel: args.max_fuel,
    };
    let settings = EngineSettings {
        max_memory_bytes: args.max_memory,
        max_concurrent_calls: args.max_concurrent_calls,
        fuel_metering: args.max_fuel.is_some(),
    };
    let runtime = Arc::new(Runtime::new(settings).context("failed to start the WebAssembly runtime")?);
    let registry = Arc::new(Registry::new());
    let builtins: Vec<String> = args.builtin.into_iter().filter(|b| !b.is_empty()).collect();
    let app = App::new(
        registry.clone(),
        ServerConfig {
            max_body_bytes: usize::try_from(args.max_body)?,
            max_concurrent_calls: args.max_concurrent_calls as usize,
        },
    );

    builtin::install(&registry, &builtins).map_err(anyhow::Error::msg)?;
    if let Some(dir) = &args.plugins_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create the plugin directory {}", dir.display()))?;
        let source = LocalSource::new(dir.clone(), runtime.clone(), registry.clone(), max_limits);
        let ready = app.clone();
        tokio::spawn(source.run(Duration::from_millis(args.poll_ms), move || ready.set_ready()));
    } else {
        app.set_ready();
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        plugins_dir = ?args.plugins_dir,
        engine = runtime.engine_id(),
        "serving; try GET /v1/formats"
    );
    serve(listener, app, shutdown_signal()).await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM (what Kubernetes sends).
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
    }
    tracing::info!("shutting down; letting calls in flight finish");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Args::command().debug_assert();
    }
}
