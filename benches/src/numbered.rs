//! A numbered plugin installed from a ZIP and removed again, for the benchmarks
//! that time how plugins reach hosts (`distribution`, `serving`).

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{DeleteParams, PostParams};
use wasmplug_crds::FormatPlugin;
use wasmplug_e2e::{FileServer, Served, numbered_plugin, zip};

/// Longest wait for hosts to serve or unload a plugin.
const PATIENCE: Duration = Duration::from_secs(120);

/// Numbered plugin `n`: its FormatPlugin, name and format key.
pub struct Numbered {
    pub name: String,
    key: String,
    object: FormatPlugin,
    client: reqwest::Client,
}

impl Numbered {
    /// Numbered plugin `n`, served by `files` as a ZIP.
    pub fn new(files: &FileServer, n: u32) -> anyhow::Result<Self> {
        let (manifest, wasm) = numbered_plugin(n);
        let package = zip(&[("plugin.toml", &manifest), ("plugin.wasm", &wasm)]);
        let url = files.put(&format!("/numbered-{n}.zip"), Served::File(package));
        let name = format!("p{n}");
        let object = serde_json::from_value(serde_json::json!({
            "apiVersion": "wasmplug.dev/v1alpha1", "kind": "FormatPlugin",
            "metadata": {"name": name}, "spec": {"source": {"url": {"url": url}}},
        }))?;
        Ok(Numbered { name, key: format!("numbered-{n:06}"), object, client: reqwest::Client::new() })
    }

    /// Creates its FormatPlugin; returns when.
    pub async fn create(&self, api: &Api<FormatPlugin>) -> anyhow::Result<Instant> {
        let started = Instant::now();
        api.create(&PostParams::default(), &self.object).await?;
        Ok(started)
    }

    /// Waits until every host in `urls` answers a call for it with `status`
    /// (204 once it serves it, 404 once it unloaded it); returns the time since
    /// `since`.
    pub async fn answered(&self, urls: &[String], status: u16, since: Instant) -> anyhow::Result<Duration> {
        for url in urls {
            let call = format!("{url}/v1/formats/{}/validate?path=x", self.key);
            while !self.client.post(&call).send().await.is_ok_and(|r| r.status().as_u16() == status) {
                anyhow::ensure!(since.elapsed() < PATIENCE, "{url} did not answer {status} for {} in time", self.key);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(since.elapsed())
    }

    /// Deletes its FormatPlugin and waits until no host in `urls` serves it.
    pub async fn remove(&self, api: &Api<FormatPlugin>, urls: &[String]) -> anyhow::Result<()> {
        api.delete(&self.name, &DeleteParams::default()).await?;
        self.answered(urls, 404, Instant::now()).await.map(drop)
    }
}
