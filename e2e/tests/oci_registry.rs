//! The registry the OCI source is tested against (issue 16): a plugin package
//! pushed with `oras`, as a plugin author publishes one, is stored as the Wasm
//! OCI artifact convention lays it out; over TLS with basic auth, the registry
//! refuses a pull without the credentials; a stopped registry comes back with
//! what it held.

use wasmplug_e2e::{OciRegistry, RegistryOptions, example_files};

const WASM: &str = "application/wasm";
const TOML: &str = "application/toml";
const ARTIFACT: &str = "application/vnd.wasmplug.plugin.v1";

#[test]
fn a_package_pushed_with_oras_is_served_as_the_wasm_artifact_convention_lays_it_out() {
    let (manifest, wasm) = example_files("unity-format");
    let mut registry = OciRegistry::start(RegistryOptions::default()).expect("the registry starts");
    let files = [("plugin.wasm", wasm.as_slice(), WASM), ("plugin.toml", manifest.as_slice(), TOML)];
    let digest = registry.push("plugins/unity", "v1.0.0", ARTIFACT, &files).expect("oras pushes");
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");

    let stored = registry.manifest("plugins/unity", "v1.0.0").expect("the manifest");
    assert_eq!(stored["artifactType"], ARTIFACT, "{stored}");
    let layers = stored["layers"].as_array().expect("layers");
    let layer = |title: &str| layers.iter().find(|l| l["annotations"]["org.opencontainers.image.title"] == title);
    assert_eq!(layer("plugin.wasm").map(|l| l["mediaType"].clone()), Some(WASM.into()), "{stored}");
    assert_eq!(layer("plugin.wasm").map(|l| l["size"].clone()), Some(wasm.len().into()), "{stored}");
    assert_eq!(layer("plugin.toml").map(|l| l["mediaType"].clone()), Some(TOML.into()), "{stored}");

    registry.tag("plugins/unity", &digest, "v1.1.0").expect("oras tags");
    assert_eq!(registry.manifest("plugins/unity", "v1.1.0").expect("the manifest"), stored);

    registry.stop();
    assert!(registry.manifest("plugins/unity", "v1.0.0").is_err(), "a stopped registry answers nothing");
    registry.restart().expect("the registry starts again");
    assert_eq!(registry.manifest("plugins/unity", "v1.0.0").expect("what it held"), stored);
}

#[tokio::test]
async fn over_tls_with_basic_auth_the_registry_answers_only_with_the_credentials() {
    let (manifest, wasm) = example_files("unity-format");
    let auth = Some(("author".to_owned(), "s3cret-password".to_owned()));
    let registry =
        OciRegistry::start(RegistryOptions { basic_auth: auth, tls: true, token: None }).expect("the registry starts");
    let files = [("plugin.wasm", wasm.as_slice(), WASM), ("plugin.toml", manifest.as_slice(), TOML)];
    registry.push("plugins/unity", "v1.0.0", ARTIFACT, &files).expect("oras pushes with the credentials");

    let ca = std::fs::read(registry.ca_cert().expect("a TLS registry has a CA")).expect("the CA");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a PEM CA"))
        .build()
        .expect("client");
    let manifest_url = format!("https://{}/v2/plugins/unity/manifests/v1.0.0", registry.address());
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let anonymous = client.get(&manifest_url).header("accept", accept).send().await.expect("the registry answers");
    assert_eq!(anonymous.status(), 401, "no credentials");
    let challenge = anonymous.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    let wrong = client.get(&manifest_url).basic_auth("author", Some("wrong")).send().await.expect("answers");
    assert_eq!(wrong.status(), 401, "wrong password");
    let right = client
        .get(&manifest_url)
        .header("accept", accept)
        .basic_auth("author", Some("s3cret-password"))
        .send()
        .await
        .expect("answers");
    assert_eq!(right.status(), 200);

    let plain = reqwest::Client::new().get(manifest_url.replace("https://", "http://")).send().await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() == 400), "plain HTTP is not served");
}
