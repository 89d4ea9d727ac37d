//! Per-call limits: what a call may use, and how the granted limits are computed
//! from the cluster maximum, the plugin's manifest and its FormatPlugin.
//!
//! The rule, in one place: each limit is the smallest of the cluster maximum and
//! every request that sets it. Nobody can ask for more than the maximum.

use std::time::Duration;

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
}

impl CallLimits {
    /// The defaults of PRODUCT.md: 64 MiB and 5 s per call, no fuel metering.
    pub const DEFAULT: CallLimits = CallLimits { memory_bytes: 64 << 20, timeout: Duration::from_secs(5), fuel: None };

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
                granted.fuel = Some(granted.fuel.map_or(fuel, |max| max.min(fuel)));
            }
        }
        granted
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
        let max = CallLimits { memory_bytes: 64 << 20, timeout: Duration::from_secs(5), fuel: Some(1_000_000) };
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
            CallLimits { memory_bytes: 16 << 20, timeout: Duration::from_secs(2), fuel: Some(1_000_000) }
        );
        assert_eq!(max.grant([]), max);
    }

    #[test]
    fn fuel_is_granted_when_asked_for_even_without_a_maximum() {
        let request = ResourceRequest { max_fuel: Some(10), ..ResourceRequest::default() };
        assert_eq!(CallLimits::DEFAULT.grant([&request]).fuel, Some(10));
    }
}
