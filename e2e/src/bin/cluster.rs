//! Runs the test cluster by hand: a single-node Kubernetes (control plane,
//! containerd, kubelet and kube-proxy on a private bridge) with the wasmplug CRDs
//! installed and wasmplug's image (from `cargo build --bins`) on the node, until
//! Ctrl-C. Needs root (it makes a bridge, nftables rules and cgroups).
//!
//!     cargo build --bins && cargo run -p wasmplug-e2e --bin cluster
//!
//! Set WASMPLUG_E2E_KEEP=1 to keep its directory (logs, certificates) afterwards.

use wasmplug_e2e::{BRIDGE_ADDRESS, Cluster, IMAGE};

fn main() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let (repository, tag) = IMAGE.rsplit_once(':').expect("the image name has a tag");
    println!("A one-node cluster is ready in {:.0?}; wasmplug's image {IMAGE} is on the node.", cluster.started_in());
    println!(
        "Point kubectl and helm at it (both are in $WASMPLUG_KUBE_BIN_DIR / $WASMPLUG_HELM_BIN_DIR, or ~/.cache/wasmplug):"
    );
    println!();
    println!("  export KUBECONFIG={}", cluster.kubeconfig().display());
    println!("  kubectl get nodes");
    println!(
        "  helm install wasmplug charts/wasmplug --namespace wasmplug --create-namespace \\\n    \
         --set image.repository={repository} --set image.tag={tag} --set image.pullPolicy=Never \\\n    \
         --set store.accessModes={{ReadWriteOnce}} --set store.storageClassName=manual --wait"
    );
    println!();
    println!("The node is {BRIDGE_ADDRESS}; pods reach servers listening there, and nothing outside this machine.");
    println!("Press Ctrl-C to stop it; everything it started and changed is removed.");
    let (stop, stopped) = std::sync::mpsc::channel();
    ctrlc_wait(stop)?;
    let _ = stopped.recv();
    cluster.finish()
}

/// Waits for SIGINT or SIGTERM on a small runtime of its own.
fn ctrlc_wait(stop: std::sync::mpsc::Sender<()>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        });
        let _ = stop.send(());
    });
    Ok(())
}
