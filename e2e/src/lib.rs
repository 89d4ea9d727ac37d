//! Test harness that behaves like a user of wasmplug: a real Kubernetes API server
//! (etcd + kube-apiserver on loopback, one per test binary) or a real single-node
//! cluster (containerd and a kubelet on a private bridge; crate::node), kubectl, a fresh
//! namespace per test, the operator and host binaries as processes, and plugin
//! sources (Git repositories behind `git daemon`, an HTTP file server).
//!
//! See e2e/README.md for running it by hand and for what it costs.

mod binaries;
mod certs;
mod control_plane;
mod examples;
mod files;
mod git;
mod helm;
mod kubectl;
pub mod memory;
mod namespace;
mod node;
mod oci;
mod oci_token;
mod pods;
mod signing;
mod stall;
mod wasmplug;
mod watchdog;
mod webhook;

pub use binaries::{BIN_DIR_ENV, Binaries};
pub use certs::{Certificates, ClientCredentials};
pub use control_plane::{ControlPlane, control_plane, free_ports, free_ports_on, repository_root};
pub use examples::{example_files, example_package, numbered_plugin, with_custom_section, with_version};
pub use files::{FileServer, Received, Served, zip};
pub use git::{GitHttp, GitServer, Repo};
pub use helm::{HELM_BIN_DIR_ENV, Helm};
pub use kubectl::{Kubectl, KubectlOutput};
pub use namespace::TestNamespace;
pub use node::{ARTIFACTS_CLUSTER_IP, BRIDGE_ADDRESS, Cluster, Footprint, IMAGE, STORE_CLASS, TOOLBOX_IMAGE, cluster};
pub use oci::{CosignKey, OCI_TOOLS_DIR_ENV, OciRegistry, RegistryOptions};
pub use oci_token::{TokenAuth, TokenService};
pub use pods::{Kubelet, Pod, pod_bound_token};
pub use signing::SigningKey;
pub use stall::StallingProxy;
pub use wasmplug::{
    Distribution, HOST_SERVICE_ACCOUNT, HostAnswer, Operator, Process, Stack, eventually, formats_of, metric_value,
    service_account_token, workspace_binary,
};
pub use watchdog::KEEP_ENV;
pub use webhook::Webhooked;
