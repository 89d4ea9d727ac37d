//! The configuration files of the node's components, each written into the
//! cluster's directory. Every setting that differs from a component's default is
//! here for a reason given beside it (../shared/REAL-NODE.md has the failures
//! they fix).

use std::path::Path;

use super::{BRIDGE, BRIDGE_ADDRESS, NODE_NAME, POD_SUBNET};

/// containerd 1.6: its own root, state and socket; the CRI plugin with the
/// locally built sandbox image, cgroupfs (no systemd here), no AppArmor (the
/// kernel has none), and OOM score adjustments kept within what root may set
/// here (no CAP_SYS_RESOURCE: without it runc fails with "can't get final
/// child's PID from pipe").
pub fn containerd(dir: &Path, socket: &Path, sandbox_image: &str) -> String {
    let d = dir.display();
    let socket = socket.display();
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni/net.d"
"#
    )
}

/// The pod network: the `bridge` plugin on the harness's bridge, which already
/// has its address (`isGateway: false`: the plugin neither assigns it nor turns
/// on forwarding globally), no masquerade, addresses from a private /24 kept
/// under the cluster's directory, every route via the bridge address.
pub fn cni(dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "wasmplug-e2e",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": false,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_SUBNET, "rangeStart": "10.244.0.10", "gateway": BRIDGE_ADDRESS.to_string()}]],
                "routes": [{"dst": "0.0.0.0/0", "gw": BRIDGE_ADDRESS.to_string()}],
                "dataDir": dir.join("cni/ipam"),
            },
        }],
    })
    .to_string()
}

/// The pods' resolver: the bridge address, where nothing answers, so that no
/// pod's DNS query is ever sent towards the machine's own resolver.
pub fn resolv_conf() -> String {
    format!("nameserver {BRIDGE_ADDRESS}\noptions ndots:1 timeout:1 attempts:1\n")
}

pub struct KubeletPorts {
    pub serving: u16,
    pub healthz: u16,
}

/// The kubelet: cgroup v1 with cgroupfs, containerd's socket, client
/// certificates checked against the cluster CA (the API server calls it for
/// logs and exec), no iptables chains of its own, our resolv.conf, relaxed
/// eviction and image GC (a test machine's disk is often fuller than a node's),
/// every directory it may choose under the cluster's directory.
pub fn kubelet(dir: &Path, containerd_socket: &Path, ports: &KubeletPorts) -> String {
    let d = dir.display();
    let socket = containerd_socket.display();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{socket}
address: {BRIDGE_ADDRESS}
port: {serving}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {d}/ca.crt
authorization:
  mode: Webhook
makeIPTablesUtilChains: false
resolvConf: {d}/resolv.conf
podLogsDir: {d}/pod-logs
volumePluginDir: {d}/volume-plugins
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
registerNode: true
"#,
        serving = ports.serving,
        healthz = ports.healthz,
    )
}

/// kube-proxy: nftables (every rule in its own tables, removed by `--cleanup`),
/// the pod range as the cluster range, node ports only on the bridge address,
/// no conntrack sysctl changes.
pub fn kube_proxy(kubeconfig: &Path, healthz_port: u16, metrics_port: u16) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clusterCIDR: {POD_SUBNET}
hostnameOverride: {NODE_NAME}
bindAddress: {BRIDGE_ADDRESS}
healthzBindAddress: 127.0.0.1:{healthz_port}
metricsBindAddress: 127.0.0.1:{metrics_port}
nodePortAddresses: ["{BRIDGE_ADDRESS}/32"]
clientConnection:
  kubeconfig: {kubeconfig}
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
"#,
        kubeconfig = kubeconfig.display(),
    )
}
