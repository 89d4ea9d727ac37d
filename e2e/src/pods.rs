//! The chart's Deployments run as local processes, the way a kubelet would run
//! their pods, so that the tests exercise exactly what the chart installed: the
//! container's command and environment (field references resolved), its volumes
//! (PersistentVolumeClaims shared between pods, emptyDirs, Secrets and ConfigMaps written out as
//! files), its ServiceAccount as the identity it talks to the API server with,
//! and its readiness probe.
//!
//! Each pod exists in the API server too (created from the template, never
//! scheduled), so that it has a UID, its ServiceAccount token is bound to it
//! as a kubelet's is (the host's FormatHost record depends on that), and its
//! status says Ready once its readiness probe passes, as a kubelet would
//! report it. `spec.nodeName` is empty: no node runs it.
//!
//! What no pod runtime here can give is mapped: each container port becomes a
//! free port on 127.0.0.1 (or one the test chose), and an environment value
//! `0.0.0.0:<containerPort>` is rewritten to that address; a value under a
//! volume's mountPath is rewritten to the volume's local directory; a value
//! naming a Service of the namespace (`<service>.<namespace>.svc:<port>`)
//! whose pod already runs here is rewritten to that pod's local port (there
//! is no cluster DNS); the pod's IP is 127.0.0.1; a projected ServiceAccount
//! token is requested from the API server. Anything else the pod asks for that
//! this cannot provide fails loudly.
//!
//! When the test that owns them panics, the namespace's FormatPlugins and Events
//! and each pod's log are printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Secret, Service, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::control_plane::{control_plane, free_ports};
use crate::wasmplug::{Process, dump_namespace, workspace_binary};

/// Runs the pods of one namespace's Deployments, sharing claim volumes.
#[derive(Debug)]
pub struct Kubelet {
    namespace: String,
    dir: tempfile::TempDir,
    /// `<service>.<namespace>.svc:<port>` of the pods started so far, and the
    /// local address each stands for.
    services: std::sync::Mutex<BTreeMap<String, String>>,
}

/// One running pod (its single container).
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    /// The pod object's UID.
    pub uid: String,
    pub process: Process,
    /// Local port of each named container port.
    ports: BTreeMap<String, u16>,
    readiness: Option<(String, u16)>,
}

impl Kubelet {
    pub fn new(namespace: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("wasmplug-kubelet-").tempdir()?;
        Ok(Kubelet { namespace: namespace.to_owned(), dir, services: Default::default() })
    }

    /// The local directory backing PersistentVolumeClaim `claim`.
    pub fn claim_dir(&self, claim: &str) -> PathBuf {
        self.dir.path().join("claims").join(claim)
    }

    /// Starts a pod named `pod` of Deployment `deployment`. `fixed_ports` maps
    /// container ports to the local ports they must get (e.g. a webhook port the
    /// API server was told about); the others get free ports.
    pub async fn run(&self, deployment: &str, pod: &str, fixed_ports: &[(i32, u16)]) -> anyhow::Result<Pod> {
        let client = control_plane().client().await;
        let api: Api<Deployment> = Api::namespaced(client.clone(), &self.namespace);
        let object = api.get(deployment).await.with_context(|| format!("failed to read Deployment {deployment}"))?;
        let template = object.spec.map(|s| s.template).context("the Deployment has no pod template")?;
        let labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
        let spec = template.spec.context("the Deployment has no pod spec")?;
        let [container] = spec.containers.as_slice() else {
            bail!("Deployment {deployment} has {} containers; this runs exactly one", spec.containers.len());
        };
        let account = spec.service_account_name.as_deref().context("the pod names no serviceAccountName")?;
        let pod_dir = self.dir.path().join("pods").join(pod);
        let object = k8s_openapi::api::core::v1::Pod {
            metadata: ObjectMeta { name: Some(pod.to_owned()), labels: Some(labels.clone()), ..ObjectMeta::default() },
            spec: Some(spec.clone()),
            status: None,
        };
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &self.namespace);
        let created =
            pods.create(&Default::default(), &object).await.with_context(|| format!("failed to create pod {pod}"))?;
        let uid = created.metadata.uid.context("the API server gave the pod no UID")?;

        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let volume = spec.volumes.iter().flatten().find(|v| v.name == mount.name);
            let volume = volume.with_context(|| format!("volume {} is mounted but not declared", mount.name))?;
            let local = self.provide(volume, &pod_dir, &client, account).await?;
            mounts.push((mount.mount_path.clone(), local));
        }
        // Longest mount path first, so that nested mounts win.
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));

        let mut ports = BTreeMap::new();
        let mut by_number = BTreeMap::new();
        for port in container.ports.iter().flatten() {
            let local = match fixed_ports.iter().find(|(p, _)| *p == port.container_port) {
                Some((_, local)) => *local,
                None => free_ports::<1>()?[0],
            };
            by_number.insert(port.container_port, local);
            if let Some(name) = &port.name {
                ports.insert(name.clone(), local);
            }
        }

        let services = self.services.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let rewrite = |value: &str| -> String {
            if let Some(port) = value.strip_prefix("0.0.0.0:").and_then(|p| p.parse::<i32>().ok())
                && let Some(local) = by_number.get(&port)
            {
                return format!("127.0.0.1:{local}");
            }
            if let Some((service, local)) = services.iter().find(|(service, _)| value.contains(service.as_str())) {
                return value.replace(service.as_str(), local);
            }
            for (path, local) in &mounts {
                if let Some(rest) = value.strip_prefix(path.as_str())
                    && (rest.is_empty() || rest.starts_with('/'))
                {
                    return format!("{}{rest}", local.display());
                }
            }
            value.to_owned()
        };
        let env = container
            .env
            .iter()
            .flatten()
            .map(|var| Ok((var.name.clone(), rewrite(&self.resolve(var, pod, &uid)?))))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (program, args) = command_of(container)?;
        let args: Vec<String> = args.iter().map(|a| rewrite(a)).collect();

        let token = pod_bound_token(&self.namespace, account, pod, &uid).await?;
        let kubeconfig = control_plane().kubeconfig_with_token(&format!("{}-{pod}", self.namespace), &token)?;
        std::fs::create_dir_all(&pod_dir)?;
        let process = Process::start_as(pod, &program, &args, &env, &kubeconfig, pod_dir.join("container.log"))?;

        self.register_services(&client, &labels, &ports).await?;
        let readiness = container.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()).map(|get| {
            let port = match &get.port {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => ports.get(name).copied(),
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => by_number.get(n).copied(),
            };
            (get.path.clone().unwrap_or_else(|| "/".into()), port.unwrap_or_default())
        });
        Ok(Pod { name: pod.to_owned(), namespace: self.namespace.clone(), uid, process, ports, readiness })
    }

    /// Notes the Services of the namespace that select a pod with `labels`,
    /// so that pods started later reach it through them.
    async fn register_services(
        &self,
        client: &kube::Client,
        labels: &BTreeMap<String, String>,
        ports: &BTreeMap<String, u16>,
    ) -> anyhow::Result<()> {
        let api: Api<Service> = Api::namespaced(client.clone(), &self.namespace);
        for service in api.list(&Default::default()).await?.items {
            let spec = service.spec.unwrap_or_default();
            let selector = spec.selector.unwrap_or_default();
            if selector.is_empty() || !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                continue;
            }
            for port in spec.ports.unwrap_or_default() {
                let target = match &port.target_port {
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name)) => ports.get(name),
                    _ => None,
                };
                if let (Some(local), Some(name)) = (target, &service.metadata.name) {
                    let key = format!("{name}.{}.svc:{}", self.namespace, port.port);
                    self.services.lock().unwrap_or_else(|p| p.into_inner()).insert(key, format!("127.0.0.1:{local}"));
                }
            }
        }
        Ok(())
    }

    /// The local directory for `volume`.
    async fn provide(
        &self,
        volume: &Volume,
        pod_dir: &Path,
        client: &kube::Client,
        account: &str,
    ) -> anyhow::Result<PathBuf> {
        let dir = if let Some(claim) = &volume.persistent_volume_claim {
            self.claim_dir(&claim.claim_name)
        } else if volume.empty_dir.is_some() {
            pod_dir.join("volumes").join(&volume.name)
        } else if let Some(source) = &volume.secret {
            let name = source.secret_name.as_deref().context("a secret volume names no Secret")?;
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
            let secret = secrets.get(name).await.with_context(|| format!("failed to read Secret {name} to mount"))?;
            let dir = pod_dir.join("volumes").join(&volume.name);
            std::fs::create_dir_all(&dir)?;
            for (key, value) in secret.data.iter().flatten() {
                std::fs::write(dir.join(key), &value.0)?;
            }
            dir
        } else if let Some(source) = &volume.config_map {
            let name = &source.name;
            let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
            let map = maps.get(name).await.with_context(|| format!("failed to read ConfigMap {name} to mount"))?;
            let dir = pod_dir.join("volumes").join(&volume.name);
            std::fs::create_dir_all(&dir)?;
            for (key, value) in map.data.iter().flatten() {
                std::fs::write(dir.join(key), value)?;
            }
            dir
        } else if let Some(projected) = &volume.projected {
            let dir = pod_dir.join("volumes").join(&volume.name);
            std::fs::create_dir_all(&dir)?;
            for source in projected.sources.iter().flatten() {
                let token = source.service_account_token.as_ref();
                let token = token.with_context(|| format!("volume {} projects what this cannot", volume.name))?;
                let audience = format!("--audience={}", token.audience.as_deref().unwrap_or_default());
                let ttl = format!("--duration={}s", token.expiration_seconds.unwrap_or(3600));
                let args = ["create", "token", account, "-n", &self.namespace, &audience, &ttl];
                let issued = control_plane().kubectl().run(&args).await?.success()?;
                std::fs::write(dir.join(&token.path), issued.trim())?;
            }
            dir
        } else {
            bail!("volume {} is of a kind this cannot provide", volume.name);
        };
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn resolve(&self, var: &EnvVar, pod: &str, uid: &str) -> anyhow::Result<String> {
        if let Some(value) = &var.value {
            return Ok(value.clone());
        }
        let field = var.value_from.as_ref().and_then(|from| from.field_ref.as_ref());
        match field.map(|f| f.field_path.as_str()) {
            Some("metadata.namespace") => Ok(self.namespace.clone()),
            Some("metadata.name") => Ok(pod.to_owned()),
            Some("metadata.uid") => Ok(uid.to_owned()),
            Some("spec.nodeName") => Ok(String::new()),
            Some("status.podIP") => Ok("127.0.0.1".to_owned()),
            other => bail!("environment variable {} comes from {other:?}, which this cannot provide", var.name),
        }
    }
}

/// A token of ServiceAccount `account` bound to pod `pod` (UID `uid`), as a
/// kubelet mounts one: the API server then knows which pod calls.
pub async fn pod_bound_token(namespace: &str, account: &str, pod: &str, uid: &str) -> anyhow::Result<String> {
    let (name, uid) = (format!("--bound-object-name={pod}"), format!("--bound-object-uid={uid}"));
    let args = ["create", "token", account, "-n", namespace, "--bound-object-kind=Pod", &name, &uid, "--duration=2h"];
    Ok(control_plane().kubectl().run(&args).await?.success()?.trim().to_owned())
}

fn command_of(container: &Container) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let command = container.command.clone().unwrap_or_default();
    let (program, rest) = command.split_first().context("the container sets no command")?;
    let mut args = rest.to_vec();
    args.extend(container.args.clone().unwrap_or_default());
    Ok((workspace_binary(program), args))
}

impl Pod {
    /// `http://127.0.0.1:<port>` of the named container port.
    pub fn url(&self, port: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports.get(port).copied().unwrap_or_default())
    }

    /// Waits until the readiness probe answers 2xx, as the kubelet would before
    /// the pod joins its Service, and then says so in the pod's status.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let Some((path, port)) = &self.readiness else { return self.set_ready(true).await };
        let url = format!("http://127.0.0.1:{port}{path}");
        let deadline = Instant::now() + timeout;
        loop {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return self.set_ready(true).await;
            }
            if Instant::now() > deadline {
                bail!("pod {} was not ready within {timeout:?} ({url}); its log:\n{}", self.name, self.process.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Pod {
    /// Writes the pod's Ready condition, as a kubelet reports its probe.
    pub async fn set_ready(&self, ready: bool) -> anyhow::Result<()> {
        let api: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(control_plane().client().await, &self.namespace);
        let status = if ready { "True" } else { "False" };
        let patch =
            serde_json::json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": status}]}});
        api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("failed to write pod {}'s status", self.name))?;
        Ok(())
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_namespace(&self.namespace);
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.process.dump_log();
        }
    }
}
