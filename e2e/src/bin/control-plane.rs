//! Runs the test control plane by hand: etcd and kube-apiserver on loopback with the
//! wasmplug CRDs installed, until Ctrl-C.
//!
//!     cargo run -p wasmplug-e2e --bin control-plane
//!
//! Set WASMPLUG_E2E_KEEP=1 to keep its directory (logs, certificates) afterwards.

use wasmplug_e2e::control_plane;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let control_plane = tokio::task::spawn_blocking(control_plane).await?;
    println!("API server {} is ready with the FormatPlugin CRD installed.", control_plane.server());
    println!("Point kubectl at it (a kubectl matching the server is in $WASMPLUG_KUBE_BIN_DIR or ~/.cache/wasmplug):");
    println!();
    println!("  export KUBECONFIG={}", control_plane.kubeconfig().display());
    println!("  kubectl apply -f examples/formatplugins/npm-builtin.yaml");
    println!("  kubectl get fp");
    println!();
    println!("Press Ctrl-C to stop it; everything it started is removed.");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
