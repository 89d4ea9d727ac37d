//! The real node leaves nothing behind, even when what started it is killed: the
//! `cluster` program starts a cluster, a pod with a volume, a network namespace
//! and a Service runs on it (what the node suite makes), and the program is
//! killed with SIGKILL; once its watchdog is done, processes, mounts, cgroups,
//! network interfaces, nftables tables, sysctls and paths outside its directory
//! are as they were before it started, and its directory is gone.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use wasmplug_e2e::{Binaries, Footprint, Kubectl, TOOLBOX_IMAGE};

#[test]
fn a_killed_cluster_leaves_the_machine_as_it_found_it() {
    let before = Footprint::take_when_no_cluster_runs().unwrap_or_else(|e| panic!("{e:#}"));
    let mut program = Command::new(env!("CARGO_BIN_EXE_cluster"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the cluster program starts");
    let mut lines = BufReader::new(program.stdout.take().expect("a stdout pipe")).lines();
    let kubeconfig = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| line.trim().strip_prefix("export KUBECONFIG=").map(PathBuf::from))
        .expect("the cluster program prints its KUBECONFIG once the node is Ready");
    // Keep reading what it prints, so that it never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let dir = kubeconfig.parent().expect("the kubeconfig is in the cluster's directory").to_owned();
    let binaries = Binaries::locate().unwrap_or_else(|e| panic!("{e:#}"));
    let kubectl = Kubectl::new(binaries.kubectl, kubeconfig);
    let kubectl = |args: &[&str], stdin: &str| {
        kubectl.run_blocking(args, stdin).and_then(|output| output.success()).unwrap_or_else(|e| panic!("{e:#}"))
    };

    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleeper\n  labels: {{app: sleeper}}\nspec:\n  containers:\n  \
         - name: sleeper\n    image: {TOOLBOX_IMAGE}\n    imagePullPolicy: Never\n    command: [sleep, '3600']\n    \
         volumeMounts: [{{name: scratch, mountPath: /scratch}}]\n  volumes: [{{name: scratch, emptyDir: {{}}}}]\n"
    );
    kubectl(&["apply", "-f", "-"], &pod);
    kubectl(&["expose", "pod", "sleeper", "--port=8080"], "");
    kubectl(&["wait", "--for=condition=Ready", "pod/sleeper", "--timeout=90s"], "");

    let running = Footprint::take();
    let made = before.differences(&running);
    for expected in ["network interface left behind: wasmplug0", "nftables table left behind: table ip kube-proxy"] {
        assert!(made.iter().any(|d| d == expected), "the footprint sees what the node made ({expected}): {made:#?}");
    }
    assert!(made.iter().any(|d| d.starts_with("mount left behind")), "the pod's mounts are seen: {made:#?}");

    program.kill().expect("the cluster program is killed");
    program.wait().expect("the cluster program ends");
    // Its watchdog holds the node lock until the teardown is done.
    let after = Footprint::take_when_no_cluster_runs().unwrap_or_else(|e| panic!("{e:#}"));
    let left = before.differences(&after);
    assert!(left.is_empty(), "the node left these behind: {left:#?}");
    assert!(!dir.exists(), "the cluster's directory {} is removed", dir.display());
}
