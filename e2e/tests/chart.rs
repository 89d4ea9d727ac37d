//! The Helm chart against the real API server: what it renders passes a
//! server-side dry run for each supported shape of values, and an installed
//! release runs — its Deployments' containers started as they are declared
//! (command, environment, volumes, probes; see `wasmplug_e2e::Kubelet`), each as
//! its own ServiceAccount, so that a verb missing from the chart's RBAC fails
//! here — with the chart's webhook configuration routing to the operator.

mod support;

use std::time::Duration;

use base64::Engine as _;
use support::{apply, format_plugin, wait_condition, wait_ready};
use wasmplug_crds::{FormatHost, FormatPlugin};
use wasmplug_e2e::{
    GitServer, Helm, Kubectl, Kubelet, SigningKey, control_plane, eventually, free_ports, numbered_plugin,
    pod_bound_token,
};

const SOON: Duration = Duration::from_secs(60);

/// Values a user might install with, each rendered and dry-run on the server.
const VALUE_SETS: &[(&str, &[&str])] = &[
    ("defaults", &[]),
    (
        "one namespace, allowlist, source Secrets, own certificate",
        &[
            "--set=watchNamespace={ns}",
            "--set=operator.allowedSourceHosts={git.example.com,*.plugins.example.org}",
            "--set=operator.sourceSecrets[0].namespace={ns}",
            "--set=operator.sourceSecrets[0].name=git-credentials",
            "--set=operator.sourceSecrets[1].namespace={ns}",
            "--set=operator.sourceSecrets[1].name=zip-token",
            "--set=webhook.certificate.existingSecret=webhook-tls",
            "--set=webhook.certificate.caBundle=Y2E=",
            "--set=limits.maxFuel=100000000",
        ],
    ),
    (
        "shared store on an existing claim, no webhook, no PodDisruptionBudget, no builtins",
        &[
            "--set=store.mode=shared",
            "--set=store.existingClaim=shared-store",
            "--set=webhook.enabled=false",
            "--set=host.podDisruptionBudget.enabled=false",
            "--set=operator.podDisruptionBudget.enabled=false",
            "--set=builtinFormats=null",
        ],
    ),
    ("shared store, created claim", &["--set=store.mode=shared", "--set=store.storageClassName=standard"]),
    ("artifact Service on a chosen cluster IP", &["--set=operator.artifacts.clusterIP=10.0.0.200"]),
    (
        "signatures required, two trusted keys",
        &[
            "--set=signatures.required=true",
            "--set=signatures.trustedKeys.release-2026\\.pub=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
            "--set=signatures.trustedKeys.release-2027\\.pub=Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=",
        ],
    ),
];

#[tokio::test]
async fn every_shape_of_values_renders_and_passes_a_server_side_dry_run() {
    let helm = Helm::locate().expect("helm is available");
    let kubectl = control_plane().kubectl();
    for (what, values) in VALUE_SETS {
        let ns = control_plane().namespace("chart-dry-run").await;
        let values: Vec<String> = values.iter().map(|v| v.replace("{ns}", ns.name())).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let manifests = helm.template("wasmplug", ns.name(), &values).await.unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let output = kubectl
            .run_with_stdin(&["apply", "--dry-run=server", "-n", ns.name(), "-f", "-"], &manifests)
            .await
            .expect("kubectl runs");
        let stdout = output.success().unwrap_or_else(|e| panic!("{what}: the dry run failed: {e:#}\n{manifests}"));
        for kind in ["deployment.apps/wasmplug-operator", "deployment.apps/wasmplug-host", "serviceaccount/"] {
            assert!(stdout.contains(kind), "{what}: {kind} missing from the dry run:\n{stdout}");
        }
    }
}

/// Trust invariant 3: the chart refuses a host memory limit its own call limits
/// could exceed (docs/operations.md, "Sizing a host"), and its defaults fit.
#[tokio::test]
async fn a_host_memory_limit_below_what_its_calls_may_use_is_refused() {
    let helm = Helm::locate().expect("helm is available");
    helm.template("wasmplug", "wasmplug", &[SHOW_HOST]).await.expect("the defaults fit their own limit");
    let (error, _) = host_memory_refused_then_fits(&helm, "--set=limits.maxConcurrentCalls=64", "6385Mi").await;
    assert!(error.contains("host.resources.limits.memory (1280Mi) is below what a host may use"), "{error}");
    assert!(error.contains("= 6385Mi"), "{error}");

    // Warm slots keep host.keepResident each: 12 × 32Mi more than 1280Mi holds.
    let (error, rendered) = host_memory_refused_then_fits(&helm, "--set=host.keepResident=32Mi", "1376Mi").await;
    assert!(error.contains("(8 + 4) × host.keepResident (32Mi) + host.largeCalls.slots (2) × "), "{error}");
    assert!(error.contains("= 1376Mi"), "{error}");
    assert!(rendered.contains("name: WASMPLUG_KEEP_RESIDENT\n              value: \"32Mi\""), "{rendered}");

    // Large-call slots keep host.largeCalls.keepResident each: 20 × 16Mi.
    let (error, rendered) = host_memory_refused_then_fits(&helm, "--set=host.largeCalls.slots=20", "1283Mi").await;
    assert!(error.contains("host.largeCalls.slots (20) × host.largeCalls.keepResident (16Mi) = 1283Mi"), "{error}");
    assert!(rendered.contains("name: WASMPLUG_LARGE_CALL_SLOTS\n              value: \"20\""), "{rendered}");
    assert!(rendered.contains("name: WASMPLUG_LARGE_KEEP_RESIDENT\n              value: \"16Mi\""), "{rendered}");
}

const SHOW_HOST: &str = "--show-only=templates/host-deployment.yaml";

/// The host Deployment rendered with `setting`: the chart's refusal while the
/// host memory limit is the default, and the manifest once the limit is `limit`.
async fn host_memory_refused_then_fits(helm: &Helm, setting: &str, limit: &str) -> (String, String) {
    let error = helm
        .template("wasmplug", "wasmplug", &[SHOW_HOST, setting])
        .await
        .expect_err("the setting does not fit in the default host memory limit");
    let raised = format!("--set=host.resources.limits.memory={limit}");
    let rendered = helm
        .template("wasmplug", "wasmplug", &[SHOW_HOST, setting, &raised])
        .await
        .unwrap_or_else(|e| panic!("{setting} fits in {limit}: {e:#}"));
    (format!("{error:#}"), rendered)
}

/// Finding 12 of issue 11: the operator's limit could not hold one maximum
/// fetch; the chart now refuses a limit below what its own settings allow,
/// and its defaults fit.
#[tokio::test]
async fn an_operator_memory_limit_below_what_its_fetches_may_use_is_refused() {
    let helm = Helm::locate().expect("helm is available");
    let show = "--show-only=templates/operator-deployment.yaml";
    helm.template("wasmplug", "wasmplug", &[show]).await.expect("the defaults fit their own limit");
    let error = helm
        .template("wasmplug", "wasmplug", &[show, "--set=operator.resources.limits.memory=512Mi"])
        .await
        .expect_err("two fetches of 64Mi + 128Mi do not fit in 512Mi");
    let error = format!("{error:#}");
    assert!(error.contains("operator.resources.limits.memory (512Mi) is below what the operator may use"), "{error}");
    assert!(error.contains("= 640Mi"), "{error}");
    let one = [show, "--set=operator.resources.limits.memory=512Mi", "--set=operator.maxConcurrentFetches=1"];
    helm.template("wasmplug", "wasmplug", &one).await.expect("one fetch fits in 512Mi");
}

/// Finding 12 of issue 11: without NetworkPolicies, every pod reached the
/// unauthenticated host API, the webhook and metrics.
#[tokio::test]
async fn network_policies_admit_only_registry_clients_scrapers_and_the_webhook_port() {
    let helm = Helm::locate().expect("helm is available");
    let rendered =
        helm.template("wasmplug", "wasmplug", &["--show-only=templates/networkpolicies.yaml"]).await.expect("renders");
    let policies: Vec<serde_json::Value> = rendered
        .split("\n---")
        .filter(|doc| doc.contains("kind:"))
        .map(|doc| serde_saphyr::from_str(doc).expect("a YAML document"))
        .collect();
    let policy = |component: &str| {
        policies
            .iter()
            .find(|p| p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component)
            .unwrap_or_else(|| panic!("no NetworkPolicy selects the {component}:\n{rendered}"))
    };
    let (host, operator) = (policy("host"), policy("operator"));
    for policy in [host, operator] {
        assert_eq!(policy["spec"]["policyTypes"], serde_json::json!(["Ingress", "Egress"]));
    }
    let host_ingress = host["spec"]["ingress"].as_array().expect("ingress rules");
    assert_eq!(host_ingress.len(), 1, "{host_ingress:?}");
    assert_eq!(host_ingress[0]["ports"], serde_json::json!([{"port": "http"}]));
    let clients: Vec<&serde_json::Value> = host_ingress[0]["from"].as_array().expect("from").iter().collect();
    assert!(clients.iter().all(|peer| peer["podSelector"]["matchLabels"].is_object()), "{clients:?}");
    let operator_ingress = operator["spec"]["ingress"].as_array().expect("ingress rules");
    let webhook = operator_ingress.iter().find(|rule| rule["ports"][0]["port"] == "webhook").expect("webhook rule");
    assert!(webhook.get("from").is_none(), "the API server reaches the webhook from an address the chart cannot name");
    let metrics = operator_ingress.iter().find(|rule| rule["ports"][0]["port"] == "metrics").expect("metrics rule");
    assert!(metrics["from"].as_array().is_some_and(|from| !from.is_empty()), "{metrics}");
    // Packages: only the hosts and the other replicas reach the artifact server.
    let artifacts = operator_ingress.iter().find(|rule| rule["ports"][0]["port"] == "artifacts").expect("artifacts");
    let readers: Vec<&serde_json::Value> = artifacts["from"].as_array().expect("from").iter().collect();
    let components: Vec<&serde_json::Value> =
        readers.iter().map(|peer| &peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]).collect();
    assert_eq!(components, ["host", "operator"], "{readers:?}");
    for policy in [host, operator] {
        let egress = policy["spec"]["egress"].as_array().expect("egress rules");
        let to_artifacts = egress.iter().find(|rule| rule["ports"][0]["port"] == 8081).expect("egress to artifacts");
        assert_eq!(to_artifacts["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "operator");
    }
    let disabled = helm
        .template(
            "wasmplug",
            "wasmplug",
            &["--show-only=templates/networkpolicies.yaml", "--set=networkPolicy.enabled=false"],
        )
        .await;
    assert!(disabled.is_err(), "nothing renders when turned off");
}

#[tokio::test]
async fn the_service_monitor_scrapes_both_components() {
    let helm = Helm::locate().expect("helm is available");
    let values = ["--set=serviceMonitor.enabled=true", "--show-only=templates/servicemonitor.yaml"];
    let rendered = helm.template("wasmplug", "monitoring", &values).await.expect("renders");
    let monitor: serde_json::Value = serde_saphyr::from_str(&rendered).expect("one YAML document");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    let ports: Vec<&str> =
        monitor["spec"]["endpoints"].as_array().expect("endpoints").iter().filter_map(|e| e["port"].as_str()).collect();
    // The port names the two Services declare: the operator's metrics, the hosts' API.
    assert_eq!(ports, ["metrics", "http"]);
    let services =
        helm.template("wasmplug", "monitoring", &["--show-only=templates/services.yaml"]).await.expect("renders");
    assert!(services.contains("name: metrics") && services.contains("name: http"), "{services}");
}

/// The shutdown delay (proven on the real node: without it a rolling update
/// fails calls routed to a stopping host) is a preStop sleep of the configured
/// length, and none when turned off.
#[tokio::test]
async fn stopping_pods_serve_out_the_shutdown_delay() {
    let helm = Helm::locate().expect("helm is available");
    for (template, value) in [
        ("templates/host-deployment.yaml", "host.shutdownDelaySeconds"),
        ("templates/operator-deployment.yaml", "operator.shutdownDelaySeconds"),
    ] {
        let sleep = |rendered: &str| {
            let deployment: serde_json::Value = serde_saphyr::from_str(rendered).expect("one YAML document");
            deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64()
        };
        let show = format!("--show-only={template}");
        let default = helm.template("wasmplug", "wasmplug", &[&show]).await.expect("renders");
        assert_eq!(sleep(&default), Some(5), "{template}: five seconds by default");
        let seven = format!("--set={value}=7");
        let rendered = helm.template("wasmplug", "wasmplug", &[&show, &seven]).await.expect("renders");
        assert_eq!(sleep(&rendered), Some(7), "{template}: as set");
        let off = format!("--set={value}=0");
        let rendered = helm.template("wasmplug", "wasmplug", &[&show, &off]).await.expect("renders");
        assert!(!rendered.contains("preStop"), "{template}: none when 0");
    }
}

#[tokio::test]
async fn the_generated_webhook_certificate_is_kept_across_upgrades_and_rotated_on_request() {
    let ns = control_plane().namespace("chart-certificate").await;
    let helm = Helm::locate().expect("helm is available");
    let kubectl = control_plane().kubectl();
    let chart = Helm::chart().display().to_string();
    // Checks no namespace: the Service it names does not run here. Its operator
    // follows only its own namespace, so that it leaves other tests' objects alone.
    let values = ["--set=webhook.namespaceSelector.matchLabels.wasmplug\\.dev/none=none", "--set=builtinFormats=null"];
    let watch = format!("--set=watchNamespace={}", ns.name());
    let release = |verb: &'static str, extra: &'static [&'static str]| {
        let (chart, ns, watch) = (chart.clone(), ns.name().to_owned(), watch.clone());
        let helm = &helm;
        async move {
            let mut args = vec![verb, "wasmplug", &chart, "--namespace", &ns, &watch];
            args.extend(values);
            args.extend(extra);
            helm.run(&args).await.unwrap_or_else(|e| panic!("{e:#}"));
        }
    };
    let secret = || async {
        kubectl
            .succeed(&["get", "secret", "wasmplug-webhook-tls", "-n", ns.name(), "-o", "jsonpath={.data.tls\\.crt}"])
            .await
    };
    let bundle = || async {
        let name = format!("wasmplug-{}-webhook", ns.name());
        let bundle = kubectl
            .succeed(&[
                "get",
                "validatingwebhookconfiguration",
                &name,
                "-o",
                "jsonpath={.webhooks[0].clientConfig.caBundle}",
            ])
            .await;
        let pem = base64::engine::general_purpose::STANDARD.decode(bundle.trim()).expect("base64");
        String::from_utf8(pem).expect("PEM")
    };

    release("install", &[]).await;
    let (first, first_bundle) = (secret().await, bundle().await);
    assert_eq!(first_bundle.matches("BEGIN CERTIFICATE").count(), 1);
    release("upgrade", &[]).await;
    assert_eq!(secret().await, first, "an upgrade replaced the certificate");
    assert_eq!(bundle().await, first_bundle);

    release("upgrade", &["--set=webhook.certificate.rotate=true"]).await;
    let rotated = secret().await;
    assert_ne!(rotated, first, "rotate did not replace the certificate");
    let both = bundle().await;
    assert_eq!(both.matches("BEGIN CERTIFICATE").count(), 2, "the old CA is trusted while pods pick up the new one");
    assert!(both.contains(first_bundle.trim()), "{both}");

    release("upgrade", &[]).await;
    assert_eq!(secret().await, rotated, "the rotated certificate is kept");
    assert_eq!(bundle().await.matches("BEGIN CERTIFICATE").count(), 1);

    // The operator, run as the chart declares it (the Secret mounted), serves the
    // generated certificate, and it is valid for the name the API server calls.
    let kubelet = Kubelet::new(ns.name()).expect("kubelet");
    let [port] = free_ports().expect("a free port");
    let operator = kubelet.run("wasmplug-operator", "wasmplug-operator-0", &[(9443, port)]).await.expect("operator");
    operator.wait_ready(SOON).await.expect("the operator is ready");
    let ca = kubectl
        .succeed(&["get", "secret", "wasmplug-webhook-tls", "-n", ns.name(), "-o", "jsonpath={.data.ca\\.crt}"])
        .await;
    let ca = base64::engine::general_purpose::STANDARD.decode(ca.trim()).expect("base64");
    let service = format!("wasmplug-operator.{}.svc", ns.name());
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"))
        .resolve(&service, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .build()
        .expect("client");
    let response = client.get(format!("https://{service}:{port}/validate")).send().await;
    let response = response.unwrap_or_else(|e| panic!("TLS to {service} with the generated certificate: {e:?}"));
    assert_eq!(response.status(), 405, "GET is not how the API server calls");
}

/// The host pod reported what it serves in its own FormatHost, through the
/// chart's admission policy, and the operator counted it; with the same
/// identity (a token bound to that pod), no other record and no FormatPlugin
/// can be written.
async fn a_host_writes_only_its_own_record(namespace: &str, host: &wasmplug_e2e::Pod) {
    let client = control_plane().client().await;
    let records: kube::Api<FormatHost> = kube::Api::namespaced(client.clone(), namespace);
    let plugins: kube::Api<FormatPlugin> = kube::Api::namespaced(client, namespace);
    let record = eventually("the host's record", SOON, || async {
        records.get_opt(&host.name).await.map_err(|e| e.to_string())?.ok_or("no record yet".to_owned())
    })
    .await;
    let owner = record.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(
        owner.iter().map(|o| (o.kind.as_str(), o.uid.as_str())).collect::<Vec<_>>(),
        [("Pod", host.uid.as_str())]
    );
    eventually("the host counted for unity", SOON, || async {
        let plugin = plugins.get("unity").await;
        let summary = plugin.map_err(|e| e.to_string())?.status.and_then(|s| s.hosts).map(|h| h.summary);
        (summary.as_deref() == Some("1/1")).then_some(()).ok_or(format!("{summary:?}"))
    })
    .await;

    let account = "wasmplug-host";
    let bound = pod_bound_token(namespace, account, &host.name, &host.uid).await.expect("a token bound to the pod");
    let as_host = Kubectl::new(
        control_plane().kubectl_program().to_path_buf(),
        control_plane().kubeconfig_with_token("chart-host", &bound).expect("kubeconfig"),
    );
    let record_yaml = |name: &str, owned: bool| {
        let owner = if owned {
            format!(
                "  ownerReferences:\n  - apiVersion: v1\n    kind: Pod\n    name: {}\n    uid: {}\n",
                host.name, host.uid
            )
        } else {
            String::new()
        };
        format!(
            "apiVersion: wasmplug.dev/v1alpha1\nkind: FormatHost\nmetadata:\n  name: {name}\n{owner}spec:\n  summary: forged\n"
        )
    };
    let apply_as = |kubectl: Kubectl, yaml: String| async move {
        let args = [
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=wasmplug-host",
            "-n",
            namespace,
            "-f",
            "-",
        ];
        kubectl.run_with_stdin(&args, &yaml).await.expect("kubectl runs")
    };
    // Its own record, owned by its pod: allowed (what the host itself does).
    apply_as(as_host.clone(), record_yaml(&host.name, true)).await.success().expect("the host writes its own record");
    // Another host's record, or its own not owned by its pod: refused.
    let refused = apply_as(as_host.clone(), record_yaml("wasmplug-host-1", true)).await.failure().expect("refused");
    assert!(refused.contains(&format!("a host may write only its own FormatHost, {}", host.name)), "{refused}");
    let refused = apply_as(as_host.clone(), record_yaml(&host.name, false)).await.failure().expect("refused");
    assert!(refused.contains("must be owned by its pod"), "{refused}");
    let admin = control_plane().kubectl();
    admin
        .run_with_stdin(&["apply", "-n", namespace, "-f", "-"], &record_yaml("wasmplug-host-1", false))
        .await
        .expect("kubectl runs")
        .success()
        .expect("an administrator writes any record");
    let refused = as_host.run(&["delete", "formathost/wasmplug-host-1", "-n", namespace]).await.expect("runs");
    assert!(refused.failure().expect("refused").contains("a host may write only its own FormatHost"));
    // No FormatPlugin field, spec or status.
    let patch = r#"{"spec":{"enabled":false}}"#;
    let refused =
        as_host.run(&["patch", "fp/unity", "-n", namespace, "--type=merge", "-p", patch]).await.expect("runs");
    assert!(refused.failure().expect("refused").contains("forbidden"));
    let status =
        ["patch", "fp/unity", "-n", namespace, "--subresource=status", "--type=merge", "-p", r#"{"status":{}}"#];
    assert!(as_host.run(&status).await.expect("runs").failure().expect("refused").contains("forbidden"));
    // A token of the same account that names no pod writes no record.
    let unbound = control_plane().kubectl().succeed(&["create", "token", account, "-n", namespace]).await;
    let as_account = Kubectl::new(
        control_plane().kubectl_program().to_path_buf(),
        control_plane().kubeconfig_with_token("chart-host-unbound", unbound.trim()).expect("kubeconfig"),
    );
    let refused = apply_as(as_account, record_yaml(&host.name, true)).await.failure().expect("refused");
    assert!(refused.contains("names no pod"), "{refused}");
}

/// Both store modes, one after the other (each release's operator follows
/// every namespace): hosts downloading over HTTP (the default), then hosts
/// reading the operator's shared claim, which stays an option.
#[tokio::test]
async fn an_installed_release_runs_as_its_own_identities() {
    installed_release_runs_as_its_own_identities(Store::Http).await;
    installed_release_runs_as_its_own_identities(Store::Shared).await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    Http,
    Shared,
}

async fn installed_release_runs_as_its_own_identities(store: Store) {
    let ns = control_plane().namespace("chart").await;
    let kubectl = control_plane().kubectl();
    let helm = Helm::locate().expect("helm is available");

    // A private Git repository and the Secret for it, which the chart lets the
    // operator read; and the webhook's certificate for 127.0.0.1, as a user
    // bringing their own (cert-manager) would provide it.
    let git = GitServer::start().expect("git daemon starts");
    let repo = git.create("unity").expect("repository");
    // Format keys are cluster-wide: each store mode's release publishes its own.
    let n = if store == Store::Http { 7 } else { 9 };
    let (format_key, unlisted_key) = (format!("numbered-{n:06}"), format!("numbered-{:06}", n + 1));
    let (manifest, wasm) = numbered_plugin(n);
    // Signed by the publisher's key, which the release trusts and requires.
    let publisher = SigningKey::generate().expect("openssl makes a key");
    let signature = publisher.sign(&wasm);
    let files = [("plugin.toml", &manifest[..]), ("plugin.wasm", &wasm[..]), ("plugin.wasm.sig", &signature[..])];
    repo.commit(&files, "plugin").expect("commit");
    let http = git.serve_http("reader", "s3cret").await.expect("git over HTTP");
    let create = ["create", "secret", "generic"];
    let git_secret = ["git-credentials", "--from-literal=username=reader", "--from-literal=password=s3cret"];
    kubectl.succeed(&[&create[..], &git_secret, &["-n", ns.name()]].concat()).await;
    kubectl.succeed(&[&create[..], &["unrelated", "--from-literal=password=hidden", "-n", ns.name()]].concat()).await;
    let certs = control_plane().certificates();
    let webhook_cert = certs.server("chart-webhook").expect("webhook certificate");
    let (cert, key) = (webhook_cert.cert.display().to_string(), webhook_cert.key.display().to_string());
    kubectl.succeed(&["create", "secret", "tls", "webhook-tls", "-n", ns.name(), "--cert", &cert, "--key", &key]).await;
    let ca = std::fs::read(certs.ca_cert()).expect("CA certificate");
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    let [webhook_port] = free_ports().expect("a free port");

    // The cluster quickstart's install, with what this machine needs: the
    // webhook reached by URL (no Service routing without a cluster network) and
    // checking only this test's namespace.
    let values = [
        format!("--set=webhook.url=https://127.0.0.1:{webhook_port}/validate"),
        "--set=webhook.certificate.existingSecret=webhook-tls".to_owned(),
        format!("--set=webhook.certificate.caBundle={ca_bundle}"),
        format!("--set=webhook.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name={}", ns.name()),
        format!("--set=operator.sourceSecrets[0].namespace={}", ns.name()),
        "--set=operator.sourceSecrets[0].name=git-credentials".to_owned(),
        "--set=builtinFormats={npm}".to_owned(),
        "--set=operator.leaseDuration=3s".to_owned(),
        "--set=operator.allowedDestinations={127.0.0.0/8}".to_owned(),
        format!("--set=store.mode={}", if store == Store::Http { "http" } else { "shared" }),
        "--set=signatures.required=true".to_owned(),
        format!("--set=signatures.trustedKeys.release\\.pub={}", publisher.public_base64()),
    ];
    let chart = Helm::chart().display().to_string();
    let mut install = vec!["install", "wasmplug", &chart, "--namespace", ns.name()];
    install.extend(values.iter().map(String::as_str));
    let notes = helm.run(&install).await.expect("helm install succeeds");
    assert!(notes.contains("STATUS: deployed"), "{notes}");

    let kubelet = Kubelet::new(ns.name()).expect("kubelet");
    let operator = kubelet.run("wasmplug-operator", "wasmplug-operator-0", &[(9443, webhook_port)]).await.expect("op");
    let host = kubelet.run("wasmplug-host", "wasmplug-host-0", &[]).await.expect("host");
    operator.wait_ready(SOON).await.expect("the operator is ready");
    host.wait_ready(SOON).await.expect("the host is ready");

    // The chart's builtin format, then a plugin from the private repository.
    wait_ready(ns.name(), "builtin-npm", SOON).await;
    let spec = format!(
        "source:\n  git:\n    url: {}\n    ref:\n      branch: main\n    secretRef:\n      name: git-credentials\nformatKey: {format_key}",
        http.url("unity")
    );
    apply(ns.name(), &format_plugin("unity", &spec)).await;
    wait_ready(ns.name(), "unity", SOON).await;
    // The chart's signature policy: the key from its values verified the plugin.
    let plugin = ns.api::<FormatPlugin>().get("unity").await.expect("the plugin");
    let verified = plugin.condition(wasmplug_crds::conditions::ConditionType::SourceVerified).cloned();
    let verified = verified.expect("SourceVerified is reported");
    assert_eq!(verified.status, "True", "{verified:?}");
    assert!(verified.message.contains("trusted key cluster/release.pub"), "{verified:?}");
    let formats_url = format!("{}/v1/formats", host.url("http"));
    eventually("the host serves npm and the plugin", SOON, || async {
        let text =
            reqwest::get(&formats_url).await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
        let serves = |key: &str| text.contains(&format!("\"key\":\"{key}\""));
        (serves("npm") && serves(&format_key)).then_some(()).ok_or(text)
    })
    .await;

    // The host downloaded the plugin's three files over HTTP, with its own token.
    let metrics = reqwest::get(format!("{}/metrics", host.url("http"))).await.expect("metrics").text().await;
    let downloaded = metrics.expect("text").contains("wasmplug_host_artifact_downloads_total{result=\"ok\"} 3");
    assert_eq!(downloaded, store == Store::Http, "downloads over HTTP only in http mode");

    // A Secret the chart does not let the operator read is reported, not hidden.
    let unlisted = spec.replace("name: git-credentials", "name: unrelated").replace(&format_key, &unlisted_key);
    apply(ns.name(), &format_plugin("unlisted", &unlisted)).await;
    let message = wait_condition(&ns.api::<FormatPlugin>(), "unlisted", "False", "FetchFailed").await;
    assert!(message.contains(&format!("Secret {}/unrelated", ns.name())), "{message}");
    assert!(message.contains("operator.sourceSecrets"), "{message}");

    // The operator wrote Events and holds its Lease, as its own identity.
    let events = kubectl.succeed(&["get", "events.events.k8s.io", "-n", ns.name(), "-o", "name"]).await;
    assert!(!events.trim().is_empty(), "the operator recorded no Events");
    let lease = kubectl
        .succeed(&["get", "lease", "wasmplug-operator", "-n", ns.name(), "-o", "jsonpath={.spec.holderIdentity}"])
        .await;
    assert_eq!(lease, "wasmplug-operator-0");

    // The chart's webhook configuration reaches the operator: a second plugin for
    // the owned key is refused at apply time.
    let second = format_plugin("unity-copy", &spec);
    let refused = kubectl.run_with_stdin(&["apply", "-n", ns.name(), "-f", "-"], &second).await.expect("kubectl runs");
    let stderr = refused.failure().expect("the second plugin is refused");
    assert!(stderr.contains(&format!("already owned by FormatPlugin {}/unity", ns.name())), "{stderr}");

    // Least privilege: what each identity must not do.
    let operator_sa = format!("--as=system:serviceaccount:{}:wasmplug-operator", ns.name());
    let host_sa = format!("--as=system:serviceaccount:{}:wasmplug-host", ns.name());
    let can = |who: String, what: &'static [&'static str]| {
        let ns = ns.name().to_owned();
        async move {
            let mut args = vec!["auth", "can-i", "-n", &ns, &who];
            args.extend_from_slice(what);
            let output = control_plane().kubectl().run(&args).await.expect("kubectl runs");
            output.stdout.trim() == "yes"
        }
    };
    assert!(can(operator_sa.clone(), &["get", "secret/git-credentials"]).await);
    assert!(!can(operator_sa.clone(), &["get", "secret/unrelated"]).await, "the operator reads any Secret");
    assert!(!can(operator_sa.clone(), &["list", "secrets"]).await, "the operator lists Secrets");
    assert!(!can(operator_sa.clone(), &["delete", "formatplugins"]).await, "the operator deletes FormatPlugins");
    assert!(!can(operator_sa.clone(), &["update", "formatplugins"]).await, "the operator replaces FormatPlugins");
    assert!(can(host_sa.clone(), &["watch", "formatplugins"]).await);
    assert!(!can(host_sa.clone(), &["patch", "formatplugins"]).await, "the host writes FormatPlugins");
    assert!(!can(host_sa.clone(), &["patch", "formatplugins/status"]).await, "the host writes status");
    assert!(!can(host_sa.clone(), &["get", "secret/git-credentials"]).await, "the host reads Secrets");
    assert!(!can(host_sa.clone(), &["create", "tokenreviews"]).await, "the host reviews tokens");
    let reviews = can(operator_sa.clone(), &["create", "tokenreviews"]).await;
    assert_eq!(reviews, store == Store::Http, "the operator reviews download tokens in http mode only");

    assert!(!can(host_sa.clone(), &["patch", "formathosts", "-n", "default"]).await, "the host writes elsewhere");
    if store == Store::Http {
        a_host_writes_only_its_own_record(ns.name(), &host).await;
    }

    // GitOps re-applies the release: nothing changes for the plugins.
    let before =
        kubectl.succeed(&["get", "fp", "-n", ns.name(), "-o", "jsonpath={.items[*].metadata.resourceVersion}"]).await;
    let mut upgrade = vec!["upgrade", "wasmplug", &chart, "--namespace", ns.name()];
    upgrade.extend(values.iter().map(String::as_str));
    helm.run(&upgrade).await.expect("helm upgrade with the same values succeeds");
    let after =
        kubectl.succeed(&["get", "fp", "-n", ns.name(), "-o", "jsonpath={.items[*].metadata.resourceVersion}"]).await;
    assert_eq!(before, after, "an unchanged upgrade changed FormatPlugins");

    // Uninstalling keeps the builtin formats (resource-policy keep) and the CRD.
    helm.run(&["uninstall", "wasmplug", "--namespace", ns.name()]).await.expect("helm uninstall succeeds");
    kubectl.succeed(&["get", "fp/builtin-npm", "-n", ns.name()]).await;
    kubectl.succeed(&["get", "crd/formatplugins.wasmplug.dev"]).await;
}
