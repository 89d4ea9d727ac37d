//! How a call's memory is made fresh for the next call on its slot.
//!
//! Where Linux can say which pages a call wrote (`PAGEMAP_SCAN`, 6.7+), the
//! pooling allocator zeroes those in place and keeps them resident, which is
//! what makes a fresh instance per call cheap. But the scan only sees pages
//! that are present: a page the kernel swapped out while a call held it is
//! neither zeroed nor unmapped, and the next call on that slot would read it
//! back (bytecodealliance/wasmtime#14357). So the scan is used only where this
//! process's memory cannot be swapped out; elsewhere every page a call touched
//! is unmapped, which also drops its copy in swap.

use std::path::{Path, PathBuf};

use wasmtime::PoolingAllocationConfig;

/// How the pools reset linear memory between calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoryReset {
    /// Written pages zeroed in place, up to what each slot keeps resident.
    PageScan,
    /// Every page a call touched unmapped; `reason` says why not [`PageScan`](Self::PageScan).
    Unmap { reason: String },
}

impl MemoryReset {
    /// What this process may use, decided from the kernel and the swap it has
    /// now: swap turned on later is not seen until the host restarts.
    pub fn for_this_process() -> Self {
        if !PoolingAllocationConfig::is_pagemap_scan_available() {
            return MemoryReset::Unmap { reason: "the kernel has no PAGEMAP_SCAN (Linux 6.7+)".to_owned() };
        }
        match swap_reachable(Path::new("/proc"), Path::new("/sys/fs/cgroup")) {
            Ok(None) => MemoryReset::PageScan,
            Ok(Some(swap)) => MemoryReset::Unmap {
                reason: format!(
                    "{swap}, so a page a call wrote could be swapped out where the page scan cannot see it; \
                     run hosts without swap (a Guaranteed pod, or memory.swap.max 0 for their cgroup) to keep \
                     call memory resident"
                ),
            },
            Err(error) => {
                MemoryReset::Unmap { reason: format!("could not tell whether memory may be swapped: {error}") }
            }
        }
    }
}

/// `None` when no page of this process can go to swap: no swap area is on, or
/// this process's cgroup (v2), or one above it, allows it none. Otherwise what
/// allows it.
fn swap_reachable(proc: &Path, cgroup_root: &Path) -> std::io::Result<Option<String>> {
    let swaps = std::fs::read_to_string(proc.join("swaps"))?;
    // The first line is a header; each further line is a swap area.
    let areas = swaps.lines().skip(1).filter(|line| !line.trim().is_empty()).count();
    if areas == 0 {
        return Ok(None);
    }
    let on = format!("{areas} swap area(s) are on ({})", proc.join("swaps").display());
    let Some(cgroup) = unified_cgroup(proc, cgroup_root)? else {
        return Ok(Some(format!("{on} and this process is not in a cgroup v2 hierarchy that could forbid it")));
    };
    let mut dir = cgroup.as_path();
    loop {
        if std::fs::read_to_string(dir.join("memory.swap.max")).is_ok_and(|max| max.trim() == "0") {
            return Ok(None);
        }
        match dir.parent() {
            Some(parent) if dir != cgroup_root => dir = parent,
            _ => break,
        }
    }
    Ok(Some(format!("{on} and {} allows this process to use them (memory.swap.max is not 0)", cgroup.display())))
}

/// This process's cgroup directory in the unified (v2) hierarchy mounted at
/// `root`, if that is where its memory is accounted.
fn unified_cgroup(proc: &Path, root: &Path) -> std::io::Result<Option<PathBuf>> {
    if !root.join("cgroup.controllers").exists() {
        return Ok(None);
    }
    let cgroups = std::fs::read_to_string(proc.join("self/cgroup"))?;
    Ok(cgroups.lines().find_map(|line| line.strip_prefix("0::")).map(|path| root.join(path.trim_start_matches('/'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc and cgroup mount: `swaps` lines after the header, this
    /// process's cgroup path, and the memory.swap.max of directories on it.
    fn fixture(swap_areas: &[&str], cgroup: &str, swap_max: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(proc.join("self")).unwrap();
        let mut swaps = "Filename\tType\tSize\tUsed\tPriority\n".to_owned();
        for area in swap_areas {
            swaps.push_str(&format!("{area}\tfile\t65532\t0\t-2\n"));
        }
        std::fs::write(proc.join("swaps"), swaps).unwrap();
        std::fs::write(proc.join("self/cgroup"), format!("0::{cgroup}\n")).unwrap();
        let root = dir.path().join("cgroup");
        std::fs::create_dir_all(root.join(cgroup.trim_start_matches('/'))).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory\n").unwrap();
        for (path, max) in swap_max {
            std::fs::write(root.join(path.trim_start_matches('/')).join("memory.swap.max"), max).unwrap();
        }
        dir
    }

    fn reachable(dir: &tempfile::TempDir) -> Option<String> {
        swap_reachable(&dir.path().join("proc"), &dir.path().join("cgroup")).expect("readable")
    }

    #[test]
    fn without_a_swap_area_nothing_can_be_swapped() {
        assert_eq!(reachable(&fixture(&[], "/kubepods/pod1/c1", &[])), None);
    }

    #[test]
    fn a_cgroup_with_no_swap_on_the_way_up_keeps_memory_resident() {
        let pod = fixture(&["/swapfile"], "/kubepods/pod1/c1", &[("/kubepods/pod1/c1", "0\n")]);
        assert_eq!(reachable(&pod), None);
        let parent =
            fixture(&["/swapfile"], "/kubepods/pod1/c1", &[("/kubepods/pod1/c1", "max\n"), ("/kubepods", "0\n")]);
        assert_eq!(reachable(&parent), None);
    }

    #[test]
    fn swap_on_and_allowed_is_named() {
        let allowed =
            fixture(&["/swapfile"], "/kubepods/burstable/pod1/c1", &[("/kubepods/burstable/pod1/c1", "max\n")]);
        let why = reachable(&allowed).expect("swap is reachable");
        assert!(why.contains("1 swap area(s) are on"), "{why}");
        assert!(why.contains("kubepods/burstable/pod1/c1 allows this process"), "{why}");
        let limited = fixture(&["/swapfile"], "/c", &[("/c", "1048576\n")]);
        assert!(reachable(&limited).is_some(), "a non-zero swap limit still lets pages go to swap");
    }

    #[test]
    fn swap_on_outside_a_unified_hierarchy_cannot_be_ruled_out() {
        let dir = fixture(&["/swapfile"], "/", &[]);
        std::fs::remove_file(dir.path().join("cgroup/cgroup.controllers")).unwrap();
        let why = reachable(&dir).expect("swap is reachable");
        assert!(why.contains("not in a cgroup v2 hierarchy"), "{why}");
    }
}
