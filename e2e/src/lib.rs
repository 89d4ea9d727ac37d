//! Test harness that behaves like a user of wasmplug: a real Kubernetes API server
//! (etcd + kube-apiserver on loopback, one per test binary), kubectl, a fresh
//! namespace per test, and later the operator, hosts and plugin sources.
//!
//! See e2e/README.md for running it by hand and for what it costs.

mod binaries;
mod certs;
mod control_plane;
mod kubectl;
mod namespace;

pub use binaries::{BIN_DIR_ENV, Binaries};
pub use certs::{Certificates, ClientCredentials};
pub use control_plane::{ControlPlane, KEEP_ENV, control_plane, repository_root};
pub use kubectl::{Kubectl, KubectlOutput};
pub use namespace::TestNamespace;
