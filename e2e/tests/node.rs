//! The chart on a real node, as a cluster user meets it: `helm install` of the
//! image built from this run's binaries into a one-node cluster (containerd,
//! kubelet, kube-proxy; see `wasmplug_e2e::Cluster`), pods Ready through their
//! real probes, the webhook called by the API server through its Service, plugins
//! from a Git repository and a ZIP URL called through the host Service from a
//! client pod, and the faults a cluster delivers: a deleted leader, hosts
//! deleted and drained under load, a rolling upgrade under load (to the image the
//! Dockerfile builds), a killed container.
//!
//! One release serves every test; tests that change it take turns. Each test
//! checks at its end that the network guard dropped nothing, so the last one to
//! finish proves that no pod packet of the suite tried to leave the machine.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::EvictParams;
use kube::{Api, ResourceExt};
use tokio::sync::Mutex;
use wasmplug_e2e::{
    ARTIFACTS_CLUSTER_IP, BRIDGE_ADDRESS, FileServer, GitServer, IMAGE, STORE_CLASS, Served, TOOLBOX_IMAGE, cluster,
    eventually, example_package, numbered_plugin, zip,
};

const RELEASE: &str = "wasmplug";
const NAMESPACE: &str = "wasmplug";
const CLIENTS: &str = "registry";
const SOON: Duration = Duration::from_secs(90);

/// The tests change the release (formats enabled, pods deleted, upgrades) and
/// read what it serves: they run one at a time.
static TURN: Mutex<()> = Mutex::const_new(());

/// The release every test uses, installed once.
struct Release {
    /// The host Service's ClusterIP and port.
    host_service: String,
    /// How long `helm install --wait` took, every pod Ready.
    installed_in: Duration,
}

fn release() -> &'static Release {
    static RELEASE_ONCE: OnceLock<Release> = OnceLock::new();
    RELEASE_ONCE.get_or_init(|| {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(install())
        })
        .join()
        .unwrap_or_else(|_| panic!("installing the chart failed; see the output above"))
    })
}

/// `helm install` as the README's cluster quickstart does: the default store
/// mode (packages over HTTP, no claim), the artifact Service at a chosen address
/// (the node has no cluster DNS), the bridge address an allowed source
/// destination (the tests' Git and file servers listen there).
async fn install() -> Release {
    let cluster = cluster();
    let _dump = Dump::on_failure(&[NAMESPACE]);
    let kubectl = cluster.kubectl();
    let helm = cluster.helm().expect("helm is available");
    let chart = wasmplug_e2e::Helm::chart();
    let began = Instant::now();
    let args = install_args(&chart.to_string_lossy(), "e2e");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    helm.run(&args).await.unwrap_or_else(|e| panic!("{e:#}"));
    let installed_in = began.elapsed();
    eprintln!("helm install --wait: every pod Ready in {installed_in:.1?}");
    let ip =
        kubectl.succeed(&["get", "service", "-n", NAMESPACE, "wasmplug-host", "-o=jsonpath={.spec.clusterIP}"]).await;
    start_caller().await;
    Release { host_service: format!("{ip}:8080"), installed_in }
}

/// The arguments of `helm install` (or `helm upgrade`) with image tag `tag`.
fn install_args(chart: &str, tag: &str) -> Vec<String> {
    let (repository, _) = IMAGE.rsplit_once(':').expect("the image has a tag");
    [
        "upgrade",
        "--install",
        RELEASE,
        chart,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout=3m",
        &format!("--set=image.repository={repository}"),
        &format!("--set=image.tag={tag}"),
        "--set=image.pullPolicy=Never",
        &format!("--set=operator.artifacts.clusterIP={ARTIFACTS_CLUSTER_IP}"),
        &format!("--set=operator.allowedDestinations={{{BRIDGE_ADDRESS}/32}}"),
        "--set=operator.leaseDuration=8s",
        "--set=logFormat=pretty",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A client pod in another namespace, labelled as the hosts' NetworkPolicy
/// expects of an artifact registry's pods, with a shell and wget.
async fn start_caller() {
    let kubectl = cluster().kubectl();
    kubectl.succeed(&["create", "namespace", CLIENTS]).await;
    eventually("the default ServiceAccount of the clients' namespace", SOON, || async {
        let output = kubectl.run(&["get", "serviceaccount/default", "-n", CLIENTS]).await.map_err(|e| e.to_string())?;
        output.success().map(drop).map_err(|e| e.to_string())
    })
    .await;
    kubectl
        .succeed(&[
            "run",
            "caller",
            "-n",
            CLIENTS,
            &format!("--image={TOOLBOX_IMAGE}"),
            "--image-pull-policy=Never",
            "--labels=wasmplug.dev/client=true",
            "--restart=Never",
            "--command",
            "--",
            "sleep",
            "86400",
        ])
        .await;
    kubectl.succeed(&["wait", "-n", CLIENTS, "--for=condition=Ready", "pod/caller", "--timeout=60s"]).await;
}

/// Runs wget in the client pod (with `kubectl exec`, as a person debugging
/// would) against the host Service; returns the HTTP status (0 when there was no
/// answer), the body, and what wget printed besides.
async fn call_through_service(path: &str, post: Option<&str>) -> (u16, String, String) {
    call(&release().host_service, path, post).await
}

/// Like [`call_through_service`], to `address` (a host pod's, say).
async fn call(address: &str, path: &str, post: Option<&str>) -> (u16, String, String) {
    let url = format!("http://{address}{path}");
    let mut args = vec!["exec", "-n", CLIENTS, "caller", "--", "timeout", "10", "wget", "-S", "-q", "-O", "-"];
    let post = post.map(|body| format!("--post-data={body}"));
    args.extend(post.as_deref());
    args.push(&url);
    let output = cluster().kubectl().run(&args).await.expect("kubectl runs");
    // wget -S prints the status line ("  HTTP/1.1 409 Conflict") on stderr.
    let status = output
        .stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("HTTP/1.1 ").and_then(|rest| rest.split(' ').next()?.parse().ok()))
        .unwrap_or(0);
    (status, output.stdout, output.stderr)
}

/// A plugin call through the host Service: `POST /v1/formats/<key>/validate`
/// with a body that is no package. The plugin answering gives 204 (valid) or
/// 422 (rejected); 404, 409 and 503 are the host's own refusals.
async fn validate_through_service(key: &str, path: &str) -> (u16, String) {
    let (status, body, printed) =
        call_through_service(&format!("/v1/formats/{key}/validate?path={path}"), Some("not a package")).await;
    (status, format!("{body}\n{printed}"))
}

/// The format `key` as `GET /v1/formats` lists it through the host Service.
async fn listed_through_service(key: &str) -> Result<serde_json::Value, String> {
    listed_by(&release().host_service, key).await
}

/// The format `key` as `GET /v1/formats` of the host at `address` lists it.
async fn listed_by(address: &str, key: &str) -> Result<serde_json::Value, String> {
    let (status, body, printed) = call(address, "/v1/formats", None).await;
    let listing: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{status} {e}: {body}\n{printed}"))?;
    let formats = listing["formats"].as_array().cloned().unwrap_or_default();
    formats.into_iter().find(|f| f["key"] == key).ok_or(format!("{key} not listed: {body}"))
}

/// Calls `GET /v1/formats` through the host Service `calls` times in a loop in
/// the client pod, one connection per call, for at most `limit`; returns
/// (calls made, calls failed).
async fn load_through_service(calls: u32, limit: Duration) -> (u32, u32) {
    let url = format!("http://{}/v1/formats", release().host_service);
    let script = format!(
        "i=0; failed=0; end=$(( $(date +%s) + {limit} )); \
         while [ $i -lt {calls} ] && [ $(date +%s) -lt $end ]; do \
           timeout 5 wget -q -O /dev/null {url} || failed=$((failed + 1)); i=$((i + 1)); sleep 0.05; \
         done; echo \"$i $failed\"",
        limit = limit.as_secs()
    );
    let output = cluster().kubectl().run(&["exec", "-n", CLIENTS, "caller", "--", "sh", "-c", &script]).await;
    let stdout = output.expect("kubectl runs").success().unwrap_or_else(|e| panic!("{e:#}"));
    let mut numbers = stdout.split_whitespace().map(|n| n.parse::<u32>().expect("a count"));
    (numbers.next().expect("calls made"), numbers.next().expect("calls failed"))
}

/// Asserts the network guard is installed and has dropped nothing so far.
fn assert_nothing_escaped() {
    let drops = cluster().guard_drops().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(drops, 0, "pod traffic tried to leave the machine; the guard dropped it:\n{}", cluster().guard_rules());
}

/// kubectl commands run when a test ends, whether it passed or not, so that a
/// failing test leaves the release as it found it for the next.
struct Cleanup(Vec<Vec<String>>);

impl Cleanup {
    fn kubectl(commands: &[&[&str]]) -> Cleanup {
        Cleanup(commands.iter().map(|args| args.iter().map(|a| a.to_string()).collect()).collect())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let kubectl = cluster().kubectl();
        for args in &self.0 {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = kubectl.run_blocking(&args, "");
        }
    }
}

/// On a failing test: every pod's description and logs, and recent Events.
struct Dump(Vec<String>);

impl Dump {
    fn on_failure(namespaces: &[&str]) -> Dump {
        Dump(namespaces.iter().map(|n| n.to_string()).collect())
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let cluster = cluster();
        let kubectl = |args: &[&str]| cluster.kubectl().run_blocking(args, "").map(|o| o.stdout + &o.stderr);
        let mut dump = String::from("\n===== cluster state at the failure =====\n");
        dump += &kubectl(&["get", "pods", "-A", "-o", "wide"]).unwrap_or_default();
        dump += &kubectl(&["get", "fp", "-A", "-o", "wide"]).unwrap_or_default();
        for ns in &self.0 {
            dump += &kubectl(&["describe", "pods", "-n", ns]).unwrap_or_default();
            dump += &kubectl(&[
                "logs",
                "-n",
                ns,
                "--all-containers",
                "--prefix",
                "--tail=40",
                "-l",
                "app.kubernetes.io/name=wasmplug",
            ])
            .unwrap_or_default();
            dump += &kubectl(&["get", "events", "-n", ns, "--sort-by=.lastTimestamp"]).unwrap_or_default();
        }
        eprintln!("{dump}\n{}", cluster.log_tails());
    }
}

fn format_plugin(name: &str, key: &str, source: &str) -> String {
    format!(
        "apiVersion: wasmplug.dev/v1alpha1\nkind: FormatPlugin\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\n\
         spec:\n  formatKey: {key}\n  source:\n{source}"
    )
}

async fn apply(yaml: &str) -> Result<String, String> {
    let output = cluster().kubectl().run_with_stdin(&["apply", "-f", "-"], yaml).await.expect("kubectl runs");
    if output.status.success() { Ok(output.stdout) } else { Err(output.stderr) }
}

async fn wait_ready(object: &str) {
    cluster().kubectl().succeed(&["wait", "-n", NAMESPACE, "--for=condition=Ready", object, "--timeout=90s"]).await;
}

async fn set_enabled(name: &str, enabled: bool) -> Result<String, String> {
    let patch = format!(r#"{{"spec":{{"enabled":{enabled}}}}}"#);
    let output = cluster()
        .kubectl()
        .run(&["patch", "fp", name, "-n", NAMESPACE, "--type=merge", "-p", &patch])
        .await
        .expect("kubectl runs");
    if output.status.success() { Ok(output.stdout) } else { Err(output.stderr) }
}

/// A ZIP URL source for numbered plugin `n`, served from the bridge address.
async fn zip_source(files: &FileServer, n: u32) -> String {
    let (manifest, wasm) = numbered_plugin(n);
    let url = files
        .put(&format!("/numbered-{n}.zip"), Served::File(zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)])));
    format!("    url:\n      url: {url}\n")
}

async fn file_server() -> FileServer {
    FileServer::start_on(IpAddr::V4(BRIDGE_ADDRESS)).await.expect("the file server starts on the bridge address")
}

#[tokio::test]
async fn the_chart_installs_with_every_pod_ready_through_its_probes() {
    let release = release();
    let _turn = TURN.lock().await;
    let _dump = Dump::on_failure(&[NAMESPACE]);
    settled().await;
    let kubectl = cluster().kubectl();
    let pods = kubectl
        .succeed(&[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-o=jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status} \
             {.spec.containers[0].readinessProbe.httpGet.path} {.spec.containers[0].livenessProbe.httpGet.path}{\"\\n\"}{end}",
        ])
        .await;
    let pods: Vec<&str> = pods.lines().collect();
    assert_eq!(pods.len(), 4, "two operators and two hosts: {pods:?}");
    for pod in &pods {
        let fields: Vec<&str> = pod.split_whitespace().collect();
        assert_eq!(fields.get(1), Some(&"True"), "every pod Ready: {pod}");
        assert_eq!(fields.get(2), Some(&"/readyz"), "Ready through the chart's readiness probe: {pod}");
        assert_eq!(fields.get(3), Some(&"/healthz"), "with a liveness probe: {pod}");
    }
    // The default install needs no shared volume: it claims nothing, and the
    // node's only storage (ReadWriteOnce) stays unbound.
    let claims = kubectl.succeed(&["get", "pvc", "-n", NAMESPACE, "-o=name"]).await;
    assert_eq!(claims.trim(), "", "the default install claims no volume");
    let volume = kubectl
        .succeed(&["get", "pv", "-o=jsonpath={.items[?(@.spec.storageClassName==\"node-local\")].status.phase}"])
        .await;
    assert_eq!(volume, "Available", "the node's {STORE_CLASS} volume is unused");
    kubectl.succeed(&["wait", "-n", NAMESPACE, "--for=condition=Ready", "fp", "--all", "--timeout=90s"]).await;
    let listed = kubectl.succeed(&["get", "fp", "-n", NAMESPACE]).await;
    for name in ["builtin-maven", "builtin-npm", "builtin-pypi"] {
        let line = listed.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} listed: {listed}"));
        assert!(line.contains("True"), "{name} Ready in `kubectl get fp`: {line}");
    }
    let (status, output) = validate_through_service("npm", "left-pad/-/left-pad-1.3.0.tgz").await;
    assert_eq!(status, 422, "the npm handler rejects a body that is no tarball, through the Service: {output}");
    eprintln!("installed in {:.1?}; cluster started in {:.1?}", release.installed_in, cluster().started_in());
    assert_nothing_escaped();
}

#[tokio::test]
async fn the_api_server_calls_the_webhook_through_its_service() {
    release();
    let _turn = TURN.lock().await;
    let _dump = Dump::on_failure(&[NAMESPACE]);
    let enable = r#"{"spec":{"enabled":true}}"#;
    let _cleanup = Cleanup::kubectl(&[
        &["patch", "fp", "-n", NAMESPACE, "builtin-maven", "--type=merge", "-p", enable],
        &["patch", "fp", "-n", NAMESPACE, "builtin-pypi", "--type=merge", "-p", enable],
        &["delete", "fp", "-n", NAMESPACE, "npm-again", "--ignore-not-found"],
    ]);
    let kubectl = cluster().kubectl();
    let client_config = kubectl
        .succeed(&["get", "validatingwebhookconfigurations", "-o=jsonpath={.items[*].webhooks[*].clientConfig}"])
        .await;
    assert!(client_config.contains("\"service\"") && !client_config.contains("\"url\""), "{client_config}");

    // The owner of a format key keeps it.
    let second_npm = format_plugin("npm-again", "npm", "    builtin:\n      format: npm\n");
    let refused = apply(&second_npm).await.expect_err("a second owner of npm is refused");
    assert!(refused.contains(&format!("already owned by FormatPlugin {NAMESPACE}/builtin-npm")), "{refused}");

    // The last enabled format stays enabled.
    set_enabled("builtin-maven", false).await.expect("maven disabled");
    set_enabled("builtin-pypi", false).await.expect("pypi disabled");
    let refused = set_enabled("builtin-npm", false).await.expect_err("the last enabled format stays");
    assert!(refused.contains("at least one format must remain enabled"), "{refused}");
    set_enabled("builtin-maven", true).await.expect("maven enabled");
    set_enabled("builtin-pypi", true).await.expect("pypi enabled");
    assert_nothing_escaped();
}

#[tokio::test]
async fn plugins_from_git_and_a_zip_url_serve_through_the_host_service() {
    release();
    let _turn = TURN.lock().await;
    let _dump = Dump::on_failure(&[NAMESPACE, CLIENTS]);
    let _cleanup =
        Cleanup::kubectl(&[&["delete", "fp", "-n", NAMESPACE, "unity", "numbered-1", "--ignore-not-found", "--wait"]]);
    let git = GitServer::start_on(IpAddr::V4(BRIDGE_ADDRESS)).expect("git daemon starts on the bridge address");
    cluster().guard(git.pid());
    let repo = git.create("unity-format").expect("repository");
    repo.commit_package("package", &example_package("unity-format"), "unity-format 0.1.0").expect("commit");
    repo.tag("v0.1.0").expect("tag");
    let files = file_server().await;

    let from_git =
        format!("    git:\n      url: {}\n      ref:\n        tag: v0.1.0\n      path: package\n", repo.url());
    apply(&format_plugin("unity", "unity", &from_git)).await.expect("applied");
    apply(&format_plugin("numbered-1", "numbered-000001", &zip_source(&files, 1).await)).await.expect("applied");
    wait_ready("fp/unity").await;
    wait_ready("fp/numbered-1").await;

    for key in ["unity", "numbered-000001"] {
        eventually(&format!("{key} active on the hosts behind the Service"), SOON, || async {
            let format = listed_through_service(key).await?;
            (format["state"] == "active").then_some(()).ok_or(format.to_string())
        })
        .await;
        let (status, output) = validate_through_service(key, "x.unitypackage").await;
        assert!(status == 204 || status == 422, "the {key} plugin answers through the Service: {output}");
    }

    // Disabled: every host refuses new calls within 5 s, through the Service.
    set_enabled("unity", false).await.expect("unity disabled");
    let began = Instant::now();
    for _ in 0..2 {
        eventually("unity unavailable through the Service", Duration::from_secs(5), || async {
            let (status, output) = validate_through_service("unity", "Assets/x.unitypackage").await;
            (status == 409).then_some(()).ok_or(output)
        })
        .await;
    }
    eprintln!("disabled → 409 through the Service in {:.1?}", began.elapsed());
    assert_nothing_escaped();
}

#[tokio::test]
async fn the_standby_operator_takes_over_when_the_leader_pod_is_deleted() {
    release();
    let _turn = TURN.lock().await;
    let _dump = Dump::on_failure(&[NAMESPACE]);
    let kubectl = cluster().kubectl();
    let holder = || async {
        kubectl.succeed(&["get", "lease", "-n", NAMESPACE, "-o=jsonpath={.items[*].spec.holderIdentity}"]).await
    };
    let leader = holder().await;
    assert!(leader.starts_with("wasmplug-operator-"), "an operator pod holds the Lease: {leader:?}");
    let _cleanup =
        Cleanup::kubectl(&[&["delete", "fp", "-n", NAMESPACE, "numbered-2", "--ignore-not-found", "--wait"]]);
    let began = Instant::now();
    kubectl.succeed(&["delete", "pod", "-n", NAMESPACE, &leader, "--wait=false"]).await;
    // The leader serves out its shutdown delay, then releases the Lease on SIGTERM.
    let new_leader = eventually("the standby holds the Lease", SOON, || async {
        let now = holder().await;
        (now.starts_with("wasmplug-operator-") && now != leader).then_some(now.clone()).ok_or(now)
    })
    .await;
    let took_over = began.elapsed();
    let files = file_server().await;
    apply(&format_plugin("numbered-2", "numbered-000002", &zip_source(&files, 2).await)).await.expect("applied");
    wait_ready("fp/numbered-2").await;
    eprintln!(
        "leader {leader} deleted: {new_leader} led {took_over:.1?} later and published a new plugin {:.1?} later",
        began.elapsed()
    );
    settled().await;
    assert_nothing_escaped();
}

/// Issue 13 on the node: packages reach hosts over HTTP from operator replicas
/// with stores of their own. A plugin whose source is gone outlives the
/// deletion of each operator pod in turn, and every host that replaces a
/// deleted one (with an empty cache) downloads and serves it.
#[tokio::test]
async fn a_plugin_whose_source_is_gone_outlives_each_operator_pod_and_reaches_new_hosts() {
    release();
    let _turn = TURN.lock().await;
    let _dump = Dump::on_failure(&[NAMESPACE]);
    let _cleanup =
        Cleanup::kubectl(&[&["delete", "fp", "-n", NAMESPACE, "numbered-3", "--ignore-not-found", "--wait"]]);
    let kubectl = cluster().kubectl();
    {
        let files = file_server().await;
        apply(&format_plugin("numbered-3", "numbered-000003", &zip_source(&files, 3).await)).await.expect("applied");
        wait_ready("fp/numbered-3").await;
    }
    // The file server is gone, and with it the plugin's source.
    let jsonpath = "-o=jsonpath={.status.artifact.digest}";
    let digest = kubectl.succeed(&["get", "fp/numbered-3", "-n", NAMESPACE, jsonpath]).await;
    let pods_of = async |component: &str| {
        let selector = format!("-l=app.kubernetes.io/component={component}");
        let jsonpath = "-o=jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}";
        let listed = kubectl.succeed(&["get", "pods", "-n", NAMESPACE, &selector, jsonpath]).await;
        listed
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(n, ip)| (n.to_owned(), ip.to_owned())))
            .collect::<Vec<_>>()
    };
    let began = Instant::now();
    for round in 0..2 {
        settled().await;
        let (operator, _) = pods_of("operator").await.remove(round % 2);
        kubectl.succeed(&["delete", "pod", "-n", NAMESPACE, &operator, "--wait=false"]).await;
        settled().await;
        let (host, _) = pods_of("host").await.remove(0);
        kubectl.succeed(&["delete", "pod", "-n", NAMESPACE, &host, "--wait=false"]).await;
        settled().await;
        for (host, ip) in pods_of("host").await {
            eventually(&format!("{host} to serve numbered-000003 ({digest})"), SOON, || async {
                let format = listed_by(&format!("{ip}:8080"), "numbered-000003").await?;
                (format["state"] == "active" && format["digest"] == digest.as_str())
                    .then_some(())
                    .ok_or(format.to_string())
            })
            .await;
        }
        eprintln!("round {round}: operator {operator} and host {host} replaced; every host serves the plugin");
    }
    eprintln!("two operator pods and two host pods replaced in {:.1?}, the source gone", began.elapsed());
    assert_nothing_escaped();
}

#[tokio::test]
async fn deleting_and_draining_hosts_under_load_fails_no_call() {
    release();
    let _turn = TURN.lock().await;
    let _dump = Dump::on_failure(&[NAMESPACE, CLIENTS]);
    let hosts = settled().await;
    let pods: Api<Pod> = Api::namespaced(cluster().control_plane().client().await, NAMESPACE);
    let load = tokio::spawn(load_through_service(900, Duration::from_secs(120)));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A host pod deleted, as `kubectl delete pod` does.
    let began = Instant::now();
    cluster().kubectl().succeed(&["delete", "pod", "-n", NAMESPACE, &hosts[0], "--wait=false"]).await;
    let hosts = settled().await;
    let replaced_in = began.elapsed();

    // Then every host evicted through the eviction API, as `kubectl drain` does:
    // an eviction the PodDisruptionBudget refuses (429) is retried every second.
    let mut refused = 0;
    for host in &hosts {
        let deadline = Instant::now() + SOON;
        loop {
            match pods.evict(host, &EvictParams::default()).await {
                Ok(_) => break,
                Err(kube::Error::Api(status)) if status.code == 429 && Instant::now() < deadline => {
                    refused += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => panic!("evicting {host}: {error}"),
            }
        }
    }
    settled().await;
    assert!(!load.is_finished(), "the load outlasted the deletion and the drain; give it more calls");
    let (calls, failed) = load.await.expect("the load finished");
    eprintln!(
        "a host deleted (replaced and stopped in {replaced_in:.1?}) and both drained ({refused} evictions refused \
         by the PodDisruptionBudget first) under load: {failed} of {calls} calls through the Service failed"
    );
    assert_eq!(failed, 0, "no call fails while hosts are deleted and drained ({failed} of {calls} failed)");
    // The records of the deleted and drained pods went with them (the garbage
    // collector), and the FormatPlugins count the hosts that replaced them.
    let hosts = settled().await;
    let records = eventually("one FormatHost per host pod", SOON, || async {
        let records = host_records().await;
        (records == hosts).then_some(records.clone()).ok_or(format!("records {records:?}, pods {hosts:?}"))
    })
    .await;
    wait_serving("builtin-npm", "2/2").await;
    eprintln!("host records after the drain: {records:?}");
    assert_nothing_escaped();
}

/// The FormatHost records in the release namespace, by name.
async fn host_records() -> Vec<String> {
    let jsonpath = "-o=jsonpath={.items[*].metadata.name}";
    let names = cluster().kubectl().succeed(&["get", "formathosts", "-n", NAMESPACE, jsonpath]).await;
    let mut names: Vec<String> = names.split_whitespace().map(str::to_owned).collect();
    names.sort();
    names
}

/// Waits until FormatPlugin `name` (release namespace) says `summary` hosts
/// serve it; returns how long that took.
async fn wait_serving(name: &str, summary: &str) -> Duration {
    let began = Instant::now();
    eventually(&format!("{name} served by {summary} hosts"), SOON, || async {
        let jsonpath = "-o=jsonpath={.status.hosts.summary}";
        let now = cluster().kubectl().succeed(&["get", "fp", name, "-n", NAMESPACE, jsonpath]).await;
        (now == summary).then_some(()).ok_or(now)
    })
    .await;
    began.elapsed()
}

/// The upgrade goes to the image the repository's Dockerfile builds (from the
/// same binaries), so the file users build is proven to run the chart.
#[tokio::test]
async fn a_helm_upgrade_to_the_dockerfile_image_rolls_with_no_failed_call() {
    release();
    let _turn = TURN.lock().await;
    let _dump = Dump::on_failure(&[NAMESPACE, CLIENTS]);
    let image = tokio::task::spawn_blocking(|| cluster().import_dockerfile_image("dockerfile"))
        .await
        .expect("the build ran")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let helm = cluster().helm().expect("helm");
    let chart = wasmplug_e2e::Helm::chart();
    let load = tokio::spawn(load_through_service(600, Duration::from_secs(120)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let args = install_args(&chart.to_string_lossy(), "dockerfile");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let began = Instant::now();
    helm.run(&args).await.unwrap_or_else(|e| panic!("{e:#}"));
    let rolled_in = began.elapsed();
    let (calls, failed) = load.await.expect("the load finished");
    eprintln!("helm upgrade rolled every pod in {rolled_in:.1?}: {failed} of {calls} calls failed");
    assert_eq!(failed, 0, "no call fails during the rolling update ({failed} of {calls} failed)");
    settled().await;
    let images = cluster()
        .kubectl()
        .succeed(&["get", "pods", "-n", NAMESPACE, "-o=jsonpath={.items[*].spec.containers[0].image}"])
        .await;
    assert!(images.split_whitespace().all(|running| running == image), "every pod runs {image}: {images}");
    let (status, output) = validate_through_service("npm", "left-pad/-/left-pad-1.3.0.tgz").await;
    assert_eq!(status, 422, "the Dockerfile's image serves: {output}");
    let host = settled().await.remove(0);
    let author = cluster().kubectl().succeed(&["exec", "-n", NAMESPACE, &host, "--", "wasmplug", "--version"]).await;
    assert!(author.starts_with("wasmplug "), "the image carries the author's command: {author}");
    assert_nothing_escaped();
}

#[tokio::test]
async fn a_restarted_host_container_serves_again() {
    release();
    let _turn = TURN.lock().await;
    let _dump = Dump::on_failure(&[NAMESPACE]);
    let kubectl = cluster().kubectl();
    let host = settled().await.remove(0);
    let restarts = || async {
        let jsonpath = "-o=jsonpath={.status.containerStatuses[0].restartCount}";
        kubectl.succeed(&["get", "pod", "-n", NAMESPACE, &host, jsonpath]).await.trim().parse::<u32>().unwrap_or(0)
    };
    let before = restarts().await;
    wait_serving("builtin-npm", "2/2").await;
    // The node kills the container's process, as the OOM killer or a crash would.
    let version = kubectl.succeed(&["exec", "-n", NAMESPACE, &host, "--", "wasmplug-host", "--version"]).await;
    assert!(version.contains("wasmplug-host"), "kubectl exec runs in the host container: {version}");
    let author = kubectl.succeed(&["exec", "-n", NAMESPACE, &host, "--", "wasmplug", "--version"]).await;
    assert!(author.starts_with("wasmplug "), "the image carries the author's command: {author}");
    let container = kubectl
        .succeed(&["get", "pod", "-n", NAMESPACE, &host, "-o=jsonpath={.status.containerStatuses[0].containerID}"])
        .await;
    cluster().kill_container(&container).expect("the host's process is killed");
    // The kubelet marks the pod not Ready, so the FormatPlugins stop counting it.
    let uncounted_in = wait_serving("builtin-npm", "1/1").await;
    eprintln!("a killed host stopped counting in {uncounted_in:.1?}");
    eventually("the host container restarted and Ready", SOON, || async {
        let ready = kubectl
            .succeed(&[
                "get",
                "pod",
                "-n",
                NAMESPACE,
                &host,
                "-o=jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .await;
        let now = restarts().await;
        (now > before && ready == "True").then_some(()).ok_or(format!("restarts {now}, Ready {ready}"))
    })
    .await;
    let logs = kubectl.succeed(&["logs", "-n", NAMESPACE, &host, "--previous", "--tail=5"]).await;
    assert!(!logs.is_empty(), "kubectl logs --previous shows the killed container's log");
    let (status, output) = validate_through_service("npm", "left-pad/-/left-pad-1.3.0.tgz").await;
    assert_eq!(status, 422, "served again: {output}");
    settled().await;
    wait_serving("builtin-npm", "2/2").await;
    assert_nothing_escaped();
}

/// Waits until the release is steady: two operator and two host pods, every one
/// Ready, none stopping (a deleted pod serves out its shutdown delay first).
/// Returns the host pods' names.
async fn settled() -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(cluster().control_plane().client().await, NAMESPACE);
    let params = kube::api::ListParams::default().labels("app.kubernetes.io/name=wasmplug");
    eventually("two operators and two hosts, all Ready, none stopping", SOON, || async {
        let list = pods.list(&params).await.map_err(|e| e.to_string())?;
        let ready = |pod: &Pod| {
            let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
            conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        let component = |pod: &Pod| pod.labels().get("app.kubernetes.io/component").cloned().unwrap_or_default();
        let steady = list.items.iter().all(|pod| pod.metadata.deletion_timestamp.is_none() && ready(pod));
        let hosts: Vec<String> =
            list.items.iter().filter(|pod| component(pod) == "host").map(|pod| pod.name_any()).collect();
        let operators = list.items.iter().filter(|pod| component(pod) == "operator").count();
        if steady && hosts.len() == 2 && operators == 2 {
            Ok(hosts)
        } else {
            Err(list
                .items
                .iter()
                .map(|pod| format!("{} ready={}", pod.name_any(), ready(pod)))
                .collect::<Vec<_>>()
                .join(", "))
        }
    })
    .await
}
