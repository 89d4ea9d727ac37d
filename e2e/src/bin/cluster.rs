//! Runs the test cluster by hand: a single-node Kubernetes (control plane,
//! containerd, kubelet and kube-proxy on a private bridge) with the wasmplug CRDs
//! installed and wasmplug's image built from `cargo build --bins` on the node,
//! until Ctrl-C. Needs root (it makes a bridge,
//! nftables rules and cgroups); README.md, "On a one-node cluster", uses it.
//!
//!     cargo build --bins && cargo run -p wasmplug-e2e --bin cluster
//!
//! Set WASMPLUG_E2E_KEEP=1 to keep its directory (logs, certificates) afterwards.

use wasmplug_e2e::{ARTIFACTS_CLUSTER_IP, BRIDGE_ADDRESS, Cluster, IMAGE};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cluster = tokio::task::spawn_blocking(Cluster::start).await??;
    let (repository, tag) = IMAGE.rsplit_once(':').expect("the image name has a tag");
    println!("A one-node cluster is ready ({:.0?}); the image {IMAGE} is on the node.", cluster.started_in());
    println!("kubectl and helm are in ~/.cache/wasmplug (.ci/setup prints where):");
    println!();
    println!("  export KUBECONFIG={}", cluster.kubeconfig().display());
    println!("  helm install wasmplug charts/wasmplug --namespace wasmplug --create-namespace --wait \\");
    println!("    --set image.repository={repository} --set image.tag={tag} --set image.pullPolicy=Never \\");
    println!(
        "    --set operator.artifacts.clusterIP={ARTIFACTS_CLUSTER_IP} --set 'operator.allowedDestinations={{{BRIDGE_ADDRESS}/32}}'"
    );
    println!();
    println!("Pods reach servers listening on {BRIDGE_ADDRESS} (this machine) and nothing outside it.");
    println!("Press Ctrl-C to stop; everything it started and changed is removed.");
    tokio::signal::ctrl_c().await?;
    tokio::task::spawn_blocking(move || cluster.finish()).await?
}
