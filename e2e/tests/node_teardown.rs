//! The real node leaves nothing behind: a cluster is started, runs a pod with
//! volumes, a network namespace and a Service (what the node suite makes), and is
//! taken down exactly as the watchdog does when a test binary ends; processes,
//! mounts, cgroups, network interfaces, nftables tables, sysctls and paths
//! outside its directory are then as they were before it started.

use std::process::Command;

use wasmplug_e2e::{Cluster, Footprint, TOOLBOX_IMAGE};

fn kubectl(cluster: &Cluster, args: &[&str]) -> String {
    let output = Command::new(cluster.kubectl_program())
        .arg(format!("--kubeconfig={}", cluster.kubeconfig().display()))
        .args(args)
        .output()
        .expect("kubectl runs");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl {}: {printed}", args.join(" "));
    printed
}

#[test]
fn a_cluster_taken_down_leaves_the_machine_as_it_found_it() {
    let before = Footprint::take_when_no_cluster_runs().unwrap_or_else(|e| panic!("{e:#}"));
    let cluster = Cluster::start().unwrap_or_else(|e| panic!("{e:#}"));
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleeper\n  labels: {{app: sleeper}}\nspec:\n  containers:\n  \
         - name: sleeper\n    image: {TOOLBOX_IMAGE}\n    imagePullPolicy: Never\n    command: [sleep, '3600']\n    \
         volumeMounts: [{{name: scratch, mountPath: /scratch}}]\n  volumes: [{{name: scratch, emptyDir: {{}}}}]\n"
    );
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), pod).expect("the pod manifest is written");
    kubectl(&cluster, &["apply", "-f", &file.path().to_string_lossy()]);
    kubectl(&cluster, &["expose", "pod", "sleeper", "--port=8080"]);
    kubectl(&cluster, &["wait", "--for=condition=Ready", "pod/sleeper", "--timeout=90s"]);

    let running = Footprint::take();
    let made = before.differences(&running);
    for expected in ["network interface left behind: wasmplug0", "nftables table left behind: table ip kube-proxy"] {
        assert!(made.iter().any(|d| d == expected), "the footprint sees what the node made ({expected}): {made:#?}");
    }
    assert!(made.iter().any(|d| d.starts_with("mount left behind")), "the pod's mounts are seen: {made:#?}");

    let dir = cluster.dir().to_owned();
    cluster.finish().expect("the teardown runs");
    let after = Footprint::take();
    let left = before.differences(&after);
    assert!(left.is_empty(), "the node left these behind (see {}/teardown.log if kept): {left:#?}", dir.display());
    assert!(!dir.exists(), "the cluster's directory {} is removed", dir.display());
}
