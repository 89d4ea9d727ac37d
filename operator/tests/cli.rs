//! The `wasmplug-operator` binary's command line: flags and their environment
//! variables, and a clear error when there is no cluster to talk to.

use std::process::Command;

fn operator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wasmplug-operator"))
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let output = operator().arg("--help").output().expect("the operator runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for (flag, env) in [
        ("--store-dir", "WASMPLUG_STORE_DIR"),
        ("--watch-namespace", "WASMPLUG_WATCH_NAMESPACE"),
        ("--max-memory", "WASMPLUG_MAX_MEMORY"),
        ("--max-concurrent-calls", "WASMPLUG_MAX_CONCURRENT_CALLS"),
        ("--leader-election", "WASMPLUG_LEADER_ELECTION"),
        ("--metrics-listen", "WASMPLUG_METRICS_LISTEN"),
        ("--gc-grace", "WASMPLUG_GC_GRACE"),
    ] {
        assert!(help.contains(flag) && help.contains(env), "{flag} [{env}] in:\n{help}");
    }
}

#[test]
fn without_a_cluster_it_says_so_and_exits() {
    let store = tempfile::tempdir().expect("tempdir");
    let output = operator()
        .env("KUBECONFIG", store.path().join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", store.path())
        .args(["--store-dir"])
        .arg(store.path())
        .output()
        .expect("the operator runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("failed to configure the Kubernetes client"), "{stderr}");
}

#[test]
fn a_bad_size_names_the_value_and_the_expected_form() {
    let output = operator().args(["--store-dir", "/tmp/x", "--max-download", "lots"]).output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"lots\" is not a size such as 64Mi"), "{stderr}");
}
