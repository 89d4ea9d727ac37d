//! A process's resident memory, from /proc: the peak since start (or since the
//! last reset), and now. For tests that bound a process's memory and for the
//! benchmarks that report it.

use anyhow::Context;

/// Peak resident memory of process `pid`, in MiB (VmHWM).
pub fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmHWM:")
}

/// Resident memory of process `pid` now, in MiB (VmRSS).
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmRSS:")
}

/// Starts a new peak for [`peak_rss_mib`].
pub fn reset_peak(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("failed to reset the peak RSS")
}

fn status_mib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no {field} in the status of process {pid}"))?;
    Ok(kib / 1024.0)
}
