//! Per-call limits: what a call may use, and how the granted limits are computed
//! from the cluster maximum, the plugin's manifest and its FormatPlugin.
//!
//! The rule, in one place: each limit is the smallest of the cluster maximum and
//! every request that sets it. Nobody can ask for more than the maximum. Fuel is
//! metered only when the cluster sets a fuel maximum (metering slows every
//! call); without one, a requested fuel limit is kept as `ignored_fuel`, so
//! that what a host shows is what it enforces, and why not.

use std::time::Duration;

use wasmplug_crds::FormatPlugin;

use crate::plugin::ResourceRequest;

/// Limits of one call into a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// Most linear memory (all memories of the instance together).
    pub memory_bytes: u64,
    /// Longest wall-clock time of the call, instantiation included.
    pub timeout: Duration,
    /// Fuel for the call; `None` when the plugin is not fuel-metered.
    pub fuel: Option<u64>,
    /// Fuel a plugin manifest or FormatPlugin asked for that is not enforced,
    /// because this host runs without fuel metering.
    pub ignored_fuel: Option<u64>,
}

impl CallLimits {
    /// The defaults of PRODUCT.md: 64 MiB and 5 s per call, no fuel metering.
    pub const DEFAULT: CallLimits =
        CallLimits { memory_bytes: 64 << 20, timeout: Duration::from_secs(5), fuel: None, ignored_fuel: None };

    /// The limits granted under `self` (the cluster maximum) to a plugin whose
    /// manifest and FormatPlugin make `requests`.
    pub fn grant<'a>(&self, requests: impl IntoIterator<Item = &'a ResourceRequest>) -> CallLimits {
        let mut granted = *self;
        for request in requests {
            if let Some(memory) = request.max_memory_bytes {
                granted.memory_bytes = granted.memory_bytes.min(memory);
            }
            if let Some(timeout) = request.max_execution {
                granted.timeout = granted.timeout.min(timeout);
            }
            if let Some(fuel) = request.max_fuel {
                match granted.fuel {
                    Some(max) => granted.fuel = Some(max.min(fuel)),
                    None => granted.ignored_fuel = Some(granted.ignored_fuel.map_or(fuel, |asked| asked.min(fuel))),
                }
            }
        }
        granted
    }
}

/// What a FormatPlugin's `spec.limits` asks for.
pub fn requested_by(plugin: &FormatPlugin) -> ResourceRequest {
    let limits = plugin.spec.limits.as_ref();
    ResourceRequest {
        max_memory_bytes: limits.and_then(|l| l.memory_bytes()),
        max_execution: limits.and_then(|l| l.timeout.as_ref()).map(wasmplug_crds::Duration::as_std),
        max_fuel: limits.and_then(|l| l.fuel),
        ..ResourceRequest::default()
    }
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_only_lower_the_maximum() {
        let max = CallLimits { fuel: Some(1_000_000), ..CallLimits::DEFAULT };
        let manifest = ResourceRequest {
            max_memory_bytes: Some(1 << 30),
            max_execution: Some(Duration::from_secs(2)),
            ..ResourceRequest::default()
        };
        let spec = ResourceRequest {
            max_memory_bytes: Some(16 << 20),
            max_fuel: Some(5_000_000),
            ..ResourceRequest::default()
        };
        assert_eq!(
            max.grant([&manifest, &spec]),
            CallLimits {
                memory_bytes: 16 << 20,
                timeout: Duration::from_secs(2),
                fuel: Some(1_000_000),
                ignored_fuel: None
            }
        );
        assert_eq!(max.grant([]), max);
    }

    /// Finding 8 of issue 10: a fuel limit nobody meters must not look enforced.
    #[test]
    fn fuel_asked_for_without_metering_is_ignored_and_says_so() {
        let request = ResourceRequest { max_fuel: Some(10), ..ResourceRequest::default() };
        let granted = CallLimits::DEFAULT.grant([&request]);
        assert_eq!((granted.fuel, granted.ignored_fuel), (None, Some(10)));
        let metered = CallLimits { fuel: Some(100), ..CallLimits::DEFAULT }.grant([&request]);
        assert_eq!((metered.fuel, metered.ignored_fuel), (Some(10), None));
    }
}
