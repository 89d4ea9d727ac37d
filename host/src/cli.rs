//! Command-line pieces shared by `wasmplug-host` and `wasmplug-operator`: the
//! engine flags (which must be equal in both, or the operator's precompiled
//! components are useless to the hosts), size parsing and log setup.

use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::runtime::{CallLimits, EngineSettings};
use crate::server::ConnectionLimits;

/// Flags that configure the WebAssembly engine and the cluster-wide call limits.
#[derive(Clone, Debug, clap::Args)]
pub struct EngineArgs {
    /// Most memory one call may use, with an optional Ki, Mi or Gi suffix. The
    /// cluster maximum: plugins may ask for less, never more.
    #[arg(long, env = "WASMPLUG_MAX_MEMORY", default_value = "64Mi", value_parser = parse_size)]
    pub max_memory: u64,

    /// Longest time one call may take, in milliseconds.
    #[arg(long, env = "WASMPLUG_MAX_CALL_MS", default_value_t = 5000)]
    pub max_call_ms: u64,

    /// Fuel for one call; setting it turns on fuel metering (slower).
    #[arg(long, env = "WASMPLUG_MAX_FUEL")]
    pub max_fuel: Option<u64>,

    /// Handler calls running at once in a host; more wait for a turn. Sizes the
    /// engine's instance pool. Plugin calls are CPU-bound: a few per core is
    /// plenty, and each may use --max-memory.
    #[arg(long, env = "WASMPLUG_MAX_CONCURRENT_CALLS", default_value_t = 8)]
    pub max_concurrent_calls: u32,

    /// How much of a call's memory stays resident, zeroed, for the next call on
    /// its instance slot (Ki, Mi or Gi suffix); calls that fit in it fault in
    /// no fresh pages, but once a slot's calls have used it all, every later
    /// call on the slot zeroes all of it again. Idle hosts keep up to
    /// (max-concurrent-calls + 4) times this (needs Linux 6.7+ to take
    /// effect). Changes no compiled code: it need not match the operator's.
    #[arg(long, env = "WASMPLUG_KEEP_RESIDENT", default_value = "256Ki", value_parser = parse_size)]
    pub keep_resident: u64,

    /// Instance slots for calls on inputs larger than --keep-resident, in a
    /// pool of their own so that a small call never zeroes what a large
    /// upload left; a large call runs in the ordinary pool when they are all
    /// busy. 0 turns the pool off. Needs Linux 6.7+ to take effect.
    #[arg(long, env = "WASMPLUG_LARGE_CALL_SLOTS", default_value_t = 2)]
    pub large_call_slots: u32,

    /// How much of a large call's memory stays resident, zeroed, for the next
    /// large call on its slot (Ki, Mi or Gi suffix). Idle hosts keep up to
    /// --large-call-slots times this.
    #[arg(long, env = "WASMPLUG_LARGE_KEEP_RESIDENT", default_value = "16Mi", value_parser = parse_size)]
    pub large_keep_resident: u64,
}

impl EngineArgs {
    pub fn settings(&self) -> EngineSettings {
        EngineSettings {
            max_memory_bytes: self.max_memory,
            max_concurrent_calls: self.max_concurrent_calls,
            fuel_metering: self.max_fuel.is_some(),
            keep_resident_bytes: self.keep_resident,
            large_call_slots: self.large_call_slots,
            large_keep_resident_bytes: self.large_keep_resident,
        }
    }

    /// Settings for a runtime that validates and precompiles plugins and
    /// serves no uploads (the operator): no large-call pool, whose engine
    /// would load every plugin's code once more for nothing.
    pub fn validation_settings(&self) -> EngineSettings {
        EngineSettings { large_call_slots: 0, ..self.settings() }
    }

    pub fn max_limits(&self) -> CallLimits {
        CallLimits {
            memory_bytes: self.max_memory,
            timeout: Duration::from_millis(self.max_call_ms),
            fuel: self.max_fuel,
            ignored_fuel: None,
        }
    }
}

/// Limits of an HTTP server's connections (the host's API, the operator's
/// webhook and metrics endpoint).
#[derive(Clone, Debug, clap::Args)]
pub struct ConnectionArgs {
    /// Connections open at once; further ones wait in the listen backlog.
    #[arg(long, env = "WASMPLUG_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Time for a request's head (and a TLS handshake) to arrive, in
    /// milliseconds; also how long an idle keep-alive connection stays open.
    #[arg(long, env = "WASMPLUG_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,

    /// Time for a request's whole body to arrive, in milliseconds.
    #[arg(long, env = "WASMPLUG_BODY_READ_TIMEOUT_MS", default_value_t = 60_000)]
    pub body_read_timeout_ms: u64,

    /// Time a response may wait for the client to read some of it, in milliseconds.
    #[arg(long, env = "WASMPLUG_WRITE_TIMEOUT_MS", default_value_t = 30_000)]
    pub write_timeout_ms: u64,
}

impl ConnectionArgs {
    pub fn limits(&self) -> ConnectionLimits {
        let header = Duration::from_millis(self.header_read_timeout_ms);
        ConnectionLimits {
            max_connections: self.max_connections,
            handshake_timeout: header,
            header_read_timeout: header,
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
        }
    }
}

/// Parses a size such as 64Mi, 1Gi or 1048576.
pub fn parse_size(text: &str) -> Result<u64, String> {
    wasmplug_crds::parse_memory(text).ok_or_else(|| format!("{text:?} is not a size such as 64Mi, 1Gi or 1048576"))
}

/// How logs are written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON lines when stdout is not a terminal (in a cluster), else for people.
    Auto,
    Json,
    Pretty,
}

/// The logging flag both binaries take.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Log as JSON lines (default when stdout is not a terminal) or for people.
    /// The level comes from WASMPLUG_LOG (default info), e.g. debug or
    /// info,wasmplug_operator=debug.
    #[arg(long, env = "WASMPLUG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Starts logging as these flags say.
    pub fn init(&self) {
        init_logging(self.log_format);
    }
}

/// Starts logging; the filter comes from `WASMPLUG_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_env("WASMPLUG_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stdout().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Completes on Ctrl-C or SIGTERM (what Kubernetes sends), logging that the
/// `work` in flight is being let finish.
pub async fn shutdown_signal(work: &str) {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match terminate.as_mut() {
            Some(signal) => drop(signal.recv().await),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
    tracing::info!("shutting down; letting {work} in flight finish");
}
