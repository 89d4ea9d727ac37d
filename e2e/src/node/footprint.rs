//! What a real node changes on the machine outside its own directory, read
//! before it starts and after it is gone, so that a test can prove the teardown
//! leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use super::{OUTSIDE_PATHS, RESTORED_SYSCTLS};
use crate::binaries::run_build_script;

/// Process names (as /proc/<pid>/comm shows them, 15 bytes at most) of what
/// only a node runs: its runtime and its components.
const NODE_PROCESSES: &[&str] = &[
    "containerd",
    "containerd-shim",
    "containerd-shim-runc-v2",
    "runc",
    "kubelet",
    "kube-proxy",
    "kube-controller",
    "kube-scheduler",
];

/// Every other process of a cluster names its directory on its command line
/// (etcd and kube-apiserver, which other test binaries also run on loopback)…
const CLUSTER_DIR_MARK: &[u8] = b"/wasmplug-node-";
/// …or runs in a pod's cgroup (containers, whatever their program).
const POD_CGROUP_MARK: &str = "/kubepods";

/// Sysctls the node must leave as it found them: the kubelet's, and those of
/// forwarding and bridge filtering.
const WATCHED_SYSCTLS: &[&str] =
    &["net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding", "net.bridge.bridge-nf-call-iptables"];

#[derive(Debug, PartialEq, Eq)]
pub struct Footprint {
    mounts: BTreeSet<String>,
    links: BTreeSet<String>,
    nft_tables: BTreeSet<String>,
    cgroups: BTreeSet<String>,
    sysctls: BTreeMap<String, String>,
    paths: BTreeSet<String>,
    processes: BTreeMap<String, usize>,
}

impl Footprint {
    /// The machine's footprint once no cluster runs on it: waits (up to five
    /// minutes) until the node lock is free, since the teardown of the previous
    /// test binary's cluster may still be running.
    pub fn take_when_no_cluster_runs() -> anyhow::Result<Footprint> {
        let lock = run_build_script("node.sh")?;
        let status = Command::new("flock")
            .args(["--shared", "--wait", "300"])
            .arg(&lock)
            .arg("true")
            .status()
            .context("failed to run flock")?;
        if !status.success() {
            bail!("a cluster still held {} after five minutes", lock.display());
        }
        Ok(Footprint::take())
    }

    pub fn take() -> Footprint {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
            .collect();
        let nft = Command::new("nft").args(["list", "tables"]).output();
        let nft_tables =
            nft.map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect()).unwrap_or_default();
        let cgroups = dir_names("/sys/fs/cgroup")
            .into_iter()
            .flat_map(|controller| {
                dir_names(&format!("/sys/fs/cgroup/{controller}")).into_iter().map(move |c| format!("{controller}/{c}"))
            })
            .collect();
        let sysctls = RESTORED_SYSCTLS
            .iter()
            .chain(WATCHED_SYSCTLS)
            .map(|key| (key.to_string(), read_sysctl(key).unwrap_or_else(|| "(absent)".into())))
            .collect();
        let paths = OUTSIDE_PATHS.iter().filter(|p| Path::new(p).exists()).map(|p| p.to_string()).collect();
        let mut processes = BTreeMap::new();
        for pid in dir_names("/proc").into_iter().filter(|name| name.bytes().all(|b| b.is_ascii_digit())) {
            // "<pid> (<comm>) <state> ...": zombies hold nothing but their PID
            // until whoever adopted them reaps them.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some((comm, rest)) = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')) else { continue };
            if rest.trim_start().starts_with('Z') {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let of_a_cluster = cmdline.windows(CLUSTER_DIR_MARK.len()).any(|w| w == CLUSTER_DIR_MARK)
                || cgroup.contains(POD_CGROUP_MARK);
            if NODE_PROCESSES.contains(&comm) || of_a_cluster {
                *processes.entry(comm.to_owned()).or_default() += 1;
            }
        }
        Footprint { mounts, links: names("/sys/class/net"), nft_tables, cgroups, sysctls, paths, processes }
    }

    /// What `after` has that this footprint had not, and the reverse, one line
    /// per difference; empty when the machine is as it was.
    pub fn differences(&self, after: &Footprint) -> Vec<String> {
        let mut out = Vec::new();
        set_changes("mount", &self.mounts, &after.mounts, &mut out);
        set_changes("network interface", &self.links, &after.links, &mut out);
        set_changes("nftables table", &self.nft_tables, &after.nft_tables, &mut out);
        set_changes("cgroup", &self.cgroups, &after.cgroups, &mut out);
        set_changes("path", &self.paths, &after.paths, &mut out);
        for (key, value) in &self.sysctls {
            let now = &after.sysctls[key];
            if now != value {
                out.push(format!("sysctl {key} was {value}, is {now}"));
            }
        }
        for name in self.processes.keys().chain(after.processes.keys()).collect::<BTreeSet<_>>() {
            let (before, now) = (self.processes.get(name).unwrap_or(&0), after.processes.get(name).unwrap_or(&0));
            if before != now {
                out.push(format!("{before} processes named {name} before, {now} after"));
            }
        }
        out
    }
}

fn set_changes(what: &str, before: &BTreeSet<String>, after: &BTreeSet<String>, out: &mut Vec<String>) {
    out.extend(after.difference(before).map(|item| format!("{what} left behind: {item}")));
    out.extend(before.difference(after).map(|item| format!("{what} gone: {item}")));
}

/// The names in a directory (of any type: /sys/class/net holds symbolic links).
fn names(path: &str) -> BTreeSet<String> {
    std::fs::read_dir(path)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn dir_names(path: &str) -> BTreeSet<String> {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn read_sysctl(key: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::read_to_string(path).ok().map(|v| v.trim().to_owned())
}
