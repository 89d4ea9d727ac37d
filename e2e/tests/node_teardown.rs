//! The real node leaves nothing behind, even when what started it is killed: the
//! `cluster` program starts a cluster, a pod with a volume, a network namespace
//! and a Service runs on it (what the node suite makes), and the program is
//! killed with SIGKILL; once its watchdog is done, processes, mounts, cgroups,
//! network interfaces, nftables tables, sysctls and paths outside its directory
//! are as they were before it started, and its directory is gone.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use wasmplug_e2e::{Binaries, Footprint, TOOLBOX_IMAGE};

struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new(&self.program)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut pipe = child.stdin.take().expect("a stdin pipe");
        std::io::Write::write_all(&mut pipe, stdin.unwrap_or_default().as_bytes()).expect("kubectl reads");
        drop(pipe);
        let output = child.wait_with_output().expect("kubectl runs");
        let printed = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kubectl {}: {printed}", args.join(" "));
        printed
    }
}

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
    let kubectl = Kubectl { program: binaries.kubectl, kubeconfig };

    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleeper\n  labels: {{app: sleeper}}\nspec:\n  containers:\n  \
         - name: sleeper\n    image: {TOOLBOX_IMAGE}\n    imagePullPolicy: Never\n    command: [sleep, '3600']\n    \
         volumeMounts: [{{name: scratch, mountPath: /scratch}}]\n  volumes: [{{name: scratch, emptyDir: {{}}}}]\n"
    );
    kubectl.run(&["apply", "-f", "-"], Some(&pod));
    kubectl.run(&["expose", "pod", "sleeper", "--port=8080"], None);
    kubectl.run(&["wait", "--for=condition=Ready", "pod/sleeper", "--timeout=90s"], None);

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
