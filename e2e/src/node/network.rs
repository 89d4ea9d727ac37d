//! The node's network, made before the first pod starts so that pod traffic can
//! never leave the machine: a bridge with the node's address and forwarding
//! turned on for it alone (the global `ip_forward` stays off), and an nftables
//! guard that counts and drops every forwarded packet entering or leaving
//! through any other interface. Removed by `e2e/scripts/node-teardown.sh`.

use std::process::Command;

use anyhow::{Context, bail};

use super::{BRIDGE, BRIDGE_ADDRESS, GUARD_TABLE};

/// The guard's counter of dropped packets.
const GUARD_COUNTER: &str = "escaped";

pub fn create() -> anyhow::Result<()> {
    let address = format!("{BRIDGE_ADDRESS}/24");
    run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    run("ip", &["addr", "add", &address, "dev", BRIDGE])?;
    run("ip", &["link", "set", BRIDGE, "up"])?;
    run("sysctl", &["-q", "-w", &format!("net.ipv4.conf.{BRIDGE}.forwarding=1")])?;
    install_guard()
}

/// Runs before anything else may forward: at a priority ahead of every other
/// filter, in a table of its own.
fn install_guard() -> anyhow::Result<()> {
    let rules = format!(
        r#"table inet {GUARD_TABLE} {{
    counter {GUARD_COUNTER} {{ }}
    chain forward {{
        type filter hook forward priority -400; policy accept;
        iifname != "{BRIDGE}" counter name "{GUARD_COUNTER}" drop
        oifname != "{BRIDGE}" counter name "{GUARD_COUNTER}" drop
    }}
}}
"#
    );
    let file = tempfile::NamedTempFile::new().context("failed to write the guard's rules")?;
    std::fs::write(file.path(), rules).context("failed to write the guard's rules")?;
    run("nft", &["-f", &file.path().to_string_lossy()])
}

/// How many packets the guard has dropped; an error when the guard is missing.
pub fn guard_drops() -> anyhow::Result<u64> {
    let output = Command::new("nft")
        .args(["list", "counter", "inet", GUARD_TABLE, GUARD_COUNTER])
        .output()
        .context("failed to run nft")?;
    if !output.status.success() {
        bail!("the network guard is missing: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let listing = String::from_utf8_lossy(&output.stdout);
    let packets = listing
        .split_whitespace()
        .skip_while(|word| *word != "packets")
        .nth(1)
        .with_context(|| format!("no packet count in the guard's counter: {listing}"))?;
    packets.parse().with_context(|| format!("the guard's packet count is not a number: {packets}"))
}

/// The guard's rules, as nft lists them (for a failure message).
pub fn guard_rules() -> String {
    Command::new("nft")
        .args(["list", "table", "inet", GUARD_TABLE])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program).args(args).output().with_context(|| format!("failed to run {program}"))?;
    if !output.status.success() {
        bail!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
