//! OCI sources: a plugin artifact pulled from an OCI registry with oci-client,
//! whose every connection goes through the fetch's [`EgressGate`].
//!
//! Two artifact shapes are taken, told apart by their layers' media types:
//! - a WebAssembly component (`application/wasm`, as wkg and oras push it, or
//!   the older `application/vnd.wasm.content.layer.v1+wasm`) with the plugin
//!   manifest as a second layer (`application/toml`);
//! - one layer holding the same ZIP package a URL source takes (`application/zip`).
//!
//! The config blob is not read (wkg writes a Wasm config, oras an empty one), and
//! any other layer is refused by name. Blobs are verified against their digests
//! by the client; a digest reference is checked against the manifest's own
//! digest here.
//!
//! Credentials (a dockerconfigjson login) go only where they are configured:
//! before the client is given them, the registry's challenge is read, and a
//! token service on another origin than the registry's is refused unless the
//! Secret gives its host the same login.

use std::sync::Arc;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use wasmplug_host::plugin::{Digest, MANIFEST_FILE, WASM_FILE};

use crate::verify::cosign::{self, CosignSignature, CosignSignatures};
use crate::verify::{MAX_SIGNATURE_BYTES, SIGNATURE_FILE};

use super::{EgressGate, FetchError, FetchLimits, Fetched, RegistryLogin, archive};
use crate::policy::SourcePolicy;
use crate::source_url::SourceUrl;

/// The artifact type of a plugin pushed by `wasmplug push` (and by the oras
/// commands docs/plugin-authoring.md gives). Not checked when pulling.
pub const ARTIFACT_TYPE: &str = "application/vnd.wasmplug.plugin.v1";
/// The component layer, as wkg and oras push it.
pub const WASM_LAYER: &str = "application/wasm";
/// The component layer of the older Wasm OCI convention.
pub const WASM_LAYER_V1: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// The plugin manifest layer, beside a component layer.
pub const MANIFEST_LAYER: &str = "application/toml";
/// A layer holding a package ZIP.
pub const ZIP_LAYER: &str = "application/zip";
/// plugin.wasm.sig (a detached Ed25519 signature, base64), beside a component layer.
pub const SIGNATURE_LAYER: &str = "application/vnd.wasmplug.signature.ed25519.v1";

/// What a fetch may receive beyond its download limit: manifests, tag lists,
/// tokens and TLS handshakes.
const PROTOCOL_ALLOWANCE: u64 = 1 << 20;

/// Which artifact of the repository to fetch.
#[derive(Clone, Copy, Debug)]
pub enum OciTarget<'a> {
    Tag(&'a str),
    Digest(&'a str),
    /// The highest tag that is a version in this range.
    Semver(&'a str),
}

/// One OCI fetch.
#[derive(Debug)]
pub struct OciRequest<'a> {
    pub url: &'a SourceUrl,
    pub target: OciTarget<'a>,
    pub login: Option<&'a RegistryLogin>,
    /// PEM certificates to trust besides the system's roots.
    pub ca: Option<&'a [u8]>,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// Read the artifact's cosign signatures too (`spec.verify.provider: cosign`).
    pub cosign: bool,
}

/// Pulls the artifact `request` names, under `limits`, through a gate that
/// holds every connection to `policy`.
pub async fn fetch(
    policy: Arc<SourcePolicy>,
    request: &OciRequest<'_>,
    limits: &FetchLimits,
) -> Result<Fetched, FetchError> {
    let at = request.url.as_fetched().to_owned();
    let gate = EgressGate::open(policy, limits.max_download_bytes.saturating_add(PROTOCOL_ALLOWANCE)).await.map_err(
        |error| FetchError::Unreachable { url: at.clone(), reason: format!("cannot open the egress gate: {error}") },
    )?;
    let pull = pull(&gate, request, limits);
    let outcome = tokio::time::timeout(limits.timeout, pull).await;
    // What the gate saw explains a failure better than the client's view of it.
    if let Some(reason) = gate.denied() {
        return Err(FetchError::NotAllowed { url: at, reason });
    }
    if gate.exceeded() {
        return Err(FetchError::TooLarge { url: at, max: limits.max_download_bytes });
    }
    outcome.map_err(|_| FetchError::TimedOut { url: at, timeout: limits.timeout })?
}

async fn pull(gate: &EgressGate, request: &OciRequest<'_>, limits: &FetchLimits) -> Result<Fetched, FetchError> {
    let at = request.url.as_fetched();
    let (registry, repository) = request.url.oci_repository().ok_or_else(|| FetchError::NotAllowed {
        url: at.to_owned(),
        reason: "it does not name a registry and a repository".into(),
    })?;
    let (client, auth) = connect(gate, request, &registry, limits).await?;
    let fail = |error: OciDistributionError| registry_error(at, request.login, error);
    let reference = |tag: &str| Reference::with_tag(registry.clone(), repository.clone(), tag.to_owned());
    let (reference, tag) = match request.target {
        OciTarget::Tag(tag) => (reference(tag), Some(tag.to_owned())),
        OciTarget::Digest(digest) => {
            (Reference::with_digest(registry.clone(), repository.clone(), digest.to_owned()), None)
        }
        OciTarget::Semver(range) => {
            let tags = client.list_tags(&reference("latest"), &auth, None, None).await.map_err(fail)?;
            let tag = highest_in_range(at, range, &tags.tags)?;
            (reference(&tag), Some(tag))
        }
    };
    let accepted = [OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE];
    let (raw, _) = client.pull_manifest_raw(&reference, &auth, &accepted).await.map_err(fail)?;
    let digest = Digest::of(&raw).to_string();
    if let OciTarget::Digest(expected) = request.target
        && digest != expected
    {
        let detail = format!("its manifest has digest {digest}, not {expected} (spec.source.oci.ref.digest)");
        return Err(FetchError::ContentDigest { url: at.to_owned(), detail });
    }
    let manifest: OciImageManifest = serde_json::from_slice(&raw).map_err(|error| FetchError::Oci {
        url: at.to_owned(),
        reason: format!(
            "its manifest is not an OCI image manifest ({error}); push the plugin as an artifact with oras or wkg"
        ),
        transient: false,
    })?;
    let (revision, at) = match tag {
        Some(tag) => (format!("{tag}@{digest}"), format!("{at}:{tag}@{digest}")),
        None => (digest.clone(), format!("{at}@{digest}")),
    };
    let layers = Layers::of(&at, &manifest)?;
    let total = layers.all().fold(0u64, |sum, layer| sum.saturating_add(u64::try_from(layer.size).unwrap_or(u64::MAX)));
    if total > limits.max_download_bytes {
        return Err(FetchError::TooLarge { url: at, max: limits.max_download_bytes });
    }
    let blob = |layer| pull_layer(&client, &reference, layer, &at, request.login);
    let signatures = async {
        match request.cosign {
            true => cosign_signatures(&client, &auth, &reference, &digest, &at, request.login).await.map(Some),
            false => Ok(None),
        }
    };
    let (mut fetched, signatures) = tokio::try_join!(files(layers, blob, &at, revision, limits), signatures)?;
    fetched.cosign = signatures;
    Ok(fetched)
}

/// The package files in `layers`, each pulled with `blob`.
async fn files<'a, F, Fut>(
    layers: Layers<'a>,
    blob: F,
    at: &str,
    revision: String,
    limits: &FetchLimits,
) -> Result<Fetched, FetchError>
where
    F: Fn(&'a OciDescriptor) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, FetchError>>,
{
    let at = at.to_owned();
    match layers {
        Layers::Component { wasm, manifest, signature } => {
            // The blobs at once: each is a round trip or two (oci-client asks
            // the registry for a token before each anonymous one).
            let signature = async {
                match signature {
                    Some(layer) => blob(layer).await.map(Some),
                    None => Ok(None),
                }
            };
            let (wasm, manifest, signature) = tokio::try_join!(blob(wasm), blob(manifest), signature)?;
            let files = [(WASM_FILE, Some(wasm)), (MANIFEST_FILE, Some(manifest)), (SIGNATURE_FILE, signature)];
            let files = files.into_iter().filter_map(|(name, bytes)| Some((name.to_owned(), bytes?)));
            Ok(Fetched::from_files(at, revision, files))
        }
        Layers::Zip(zip) => {
            let bytes = blob(zip).await?;
            archive::unpack(&at, revision, &bytes, &limits.archive)
        }
    }
}

/// The cosign signatures stored for the manifest `digest` of `reference`'s
/// repository (none when its signature tag does not exist).
async fn cosign_signatures(
    client: &Client,
    auth: &RegistryAuth,
    reference: &Reference,
    digest: &str,
    at: &str,
    login: Option<&RegistryLogin>,
) -> Result<CosignSignatures, FetchError> {
    let tag = cosign::signature_tag(digest);
    let signatures_at =
        Reference::with_tag(reference.registry().to_owned(), reference.repository().to_owned(), tag.clone());
    let mut found = CosignSignatures { manifest_digest: digest.to_owned(), tag, ..CosignSignatures::default() };
    let accepted = [OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE];
    let raw = match client.pull_manifest_raw(&signatures_at, auth, &accepted).await {
        Ok((raw, _)) => raw,
        Err(error) if is_not_found(&error) => return Ok(found),
        Err(error) => return Err(registry_error(at, login, error)),
    };
    found.tag_found = true;
    let manifest: OciImageManifest = serde_json::from_slice(&raw).map_err(|error| FetchError::ArtifactShape {
        at: format!("{at} (its cosign signatures, tag {})", found.tag),
        problem: format!("the signature manifest is not an OCI image manifest ({error})"),
    })?;
    let layers: Vec<_> = manifest.layers.iter().filter(|layer| layer.media_type == cosign::SIGNATURE_LAYER).collect();
    if layers.len() > cosign::MAX_SIGNATURES {
        let more = layers.len() - cosign::MAX_SIGNATURES;
        found.ignored.push(format!("{more} signature layers past the first {}", cosign::MAX_SIGNATURES));
    }
    for layer in layers.into_iter().take(cosign::MAX_SIGNATURES) {
        let annotation = layer.annotations.as_ref().and_then(|a| a.get(cosign::SIGNATURE_ANNOTATION));
        let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
        let Some(signature) = annotation else {
            found.ignored.push(format!("layer {} has no {} annotation", layer.digest, cosign::SIGNATURE_ANNOTATION));
            continue;
        };
        if size > cosign::MAX_PAYLOAD_BYTES {
            let max = cosign::MAX_PAYLOAD_BYTES;
            found.ignored.push(format!("layer {} is {size} bytes, over the {max}-byte limit", layer.digest));
            continue;
        }
        let payload = pull_layer(client, &signatures_at, layer, at, login).await?;
        found.signatures.push(CosignSignature { payload, signature: signature.clone() });
    }
    Ok(found)
}

/// Whether the registry says it has no such manifest or repository.
fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(e.code, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound)
        }),
        _ => false,
    }
}

/// A registry client for `request` whose every connection goes through
/// `gate`, and the authentication to give it (a login only after its token
/// service is known to be allowed to receive it).
async fn connect(
    gate: &EgressGate,
    request: &OciRequest<'_>,
    registry: &str,
    limits: &FetchLimits,
) -> Result<(Client, RegistryAuth), FetchError> {
    let scheme = if request.insecure { "http" } else { "https" };
    let auth = match request.login {
        Some(login) => {
            check_token_service(gate, scheme, registry, request.ca, login).await?;
            RegistryAuth::Basic(login.username.clone(), login.password.clone())
        }
        None => RegistryAuth::Anonymous,
    };
    ensure_crypto_provider();
    let ca = request.ca.map(|pem| Certificate { encoding: CertificateEncoding::Pem, data: pem.to_vec() });
    let config = ClientConfig {
        protocol: if request.insecure { ClientProtocol::Http } else { ClientProtocol::Https },
        tls_certs_only: system_roots().iter().cloned().chain(ca).collect(),
        platform_resolver: None,
        max_concurrent_download: 1,
        connect_timeout: Some(limits.timeout),
        read_timeout: Some(limits.timeout),
        user_agent: concat!("wasmplug-operator/", env!("CARGO_PKG_VERSION")),
        https_proxy: Some(gate.proxy_url()),
        http_proxy: Some(gate.proxy_url()),
        ..ClientConfig::default()
    };
    let client = Client::try_from(config).map_err(|error| FetchError::Oci {
        url: request.url.as_fetched().to_owned(),
        reason: error.to_string(),
        transient: false,
    })?;
    Ok((client, auth))
}

/// The bytes of `layer`, checked against its digest by the client.
async fn pull_layer(
    client: &Client,
    reference: &Reference,
    layer: &OciDescriptor,
    at: &str,
    login: Option<&RegistryLogin>,
) -> Result<Vec<u8>, FetchError> {
    let mut bytes = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0));
    client.pull_blob(reference, layer, &mut bytes).await.map_err(|error| registry_error(at, login, error))?;
    Ok(bytes)
}

/// The layers of an artifact of a shape wasmplug takes.
enum Layers<'a> {
    Component { wasm: &'a OciDescriptor, manifest: &'a OciDescriptor, signature: Option<&'a OciDescriptor> },
    Zip(&'a OciDescriptor),
}

impl<'a> Layers<'a> {
    fn of(at: &str, manifest: &'a OciImageManifest) -> Result<Self, FetchError> {
        let of_type = |types: &[&str]| {
            manifest.layers.iter().filter(|l| types.contains(&l.media_type.as_str())).collect::<Vec<_>>()
        };
        let unknown: Vec<&str> = manifest
            .layers
            .iter()
            .map(|layer| layer.media_type.as_str())
            .filter(|media_type| {
                ![WASM_LAYER, WASM_LAYER_V1, MANIFEST_LAYER, ZIP_LAYER, SIGNATURE_LAYER].contains(media_type)
            })
            .collect();
        let shape_error = |problem: String| FetchError::ArtifactShape { at: at.to_owned(), problem };
        if !unknown.is_empty() {
            return Err(shape_error(format!(
                "it has layers of media types wasmplug does not take: {}",
                unknown.join(", ")
            )));
        }
        let signatures = of_type(&[SIGNATURE_LAYER]);
        if let Some(large) =
            signatures.iter().find(|l| u64::try_from(l.size).unwrap_or(u64::MAX) > MAX_SIGNATURE_BYTES as u64)
        {
            return Err(shape_error(format!(
                "its {SIGNATURE_FILE} layer has {} bytes; a signature has at most {MAX_SIGNATURE_BYTES}",
                large.size
            )));
        }
        match (
            of_type(&[WASM_LAYER, WASM_LAYER_V1]).as_slice(),
            of_type(&[MANIFEST_LAYER]).as_slice(),
            of_type(&[ZIP_LAYER]).as_slice(),
            signatures.as_slice(),
        ) {
            ([wasm], [manifest], [], [] | [_]) => {
                Ok(Layers::Component { wasm, manifest, signature: signatures.first().copied() })
            }
            (_, _, [_], [_, ..]) => Err(shape_error(format!(
                "it has a package ZIP and a {SIGNATURE_FILE} layer ({SIGNATURE_LAYER}); put {SIGNATURE_FILE} in the ZIP"
            ))),
            (_, _, _, [_, _, ..]) => Err(shape_error(format!(
                "it has {} {SIGNATURE_FILE} layers ({SIGNATURE_LAYER}); push one",
                signatures.len()
            ))),
            ([_], [], [], _) => Err(shape_error(format!(
                "it has a component layer but no {MANIFEST_FILE} layer ({MANIFEST_LAYER}); push {MANIFEST_FILE} beside {WASM_FILE}"
            ))),
            ([], [], [zip], []) => Ok(Layers::Zip(zip)),
            ([], [], [], []) => Err(shape_error("it has no layers".into())),
            _ => Err(shape_error(format!(
                "it has {} component, {} manifest and {} ZIP layers; an artifact holds one component ({WASM_LAYER}) \
                 with one {MANIFEST_FILE} ({MANIFEST_LAYER}) and at most one {SIGNATURE_FILE} ({SIGNATURE_LAYER}), \
                 or one package ZIP ({ZIP_LAYER})",
                of_type(&[WASM_LAYER, WASM_LAYER_V1]).len(),
                of_type(&[MANIFEST_LAYER]).len(),
                of_type(&[ZIP_LAYER]).len()
            ))),
        }
    }

    fn all(&self) -> impl Iterator<Item = &'a OciDescriptor> {
        let layers = match *self {
            Layers::Component { wasm, manifest, signature } => [Some(wasm), Some(manifest), signature],
            Layers::Zip(zip) => [Some(zip), None, None],
        };
        layers.into_iter().flatten()
    }
}

/// The highest of `tags` that is a version (a leading `v` allowed) in `range`.
fn highest_in_range(at: &str, range: &str, tags: &[String]) -> Result<String, FetchError> {
    let requirement = semver::VersionReq::parse(range).map_err(|error| FetchError::Oci {
        url: at.to_owned(),
        reason: format!(
            "spec.source.oci.ref.semver {range:?} is not a version range ({error}); write e.g. \">=1.2.0, <2\""
        ),
        transient: false,
    })?;
    tags.iter()
        .filter_map(|tag| semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok().map(|version| (version, tag)))
        .filter(|(version, _)| requirement.matches(version))
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, tag)| tag.clone())
        .ok_or_else(|| FetchError::Oci {
            url: at.to_owned(),
            reason: format!("no tag is a version in the range {range:?} (of {} tags); push one, or widen spec.source.oci.ref.semver", tags.len()),
            transient: true,
        })
}

/// Reads the registry's challenge (through the gate, following no redirect) and
/// refuses a token service on another origin than the registry's: the client
/// would send it the login.
async fn check_token_service(
    gate: &EgressGate,
    scheme: &str,
    registry: &str,
    ca: Option<&[u8]>,
    login: &RegistryLogin,
) -> Result<(), FetchError> {
    let origin = format!("{scheme}://{registry}");
    let ping = format!("{origin}/v2/");
    let unreachable = |error: reqwest::Error| unreachable(&ping, &error);
    let proxy = reqwest::Proxy::all(gate.proxy_url()).map_err(unreachable)?;
    let mut builder = reqwest::Client::builder().proxy(proxy).redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca {
        for certificate in reqwest::Certificate::from_pem_bundle(pem).map_err(unreachable)? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    let response = builder.build().map_err(unreachable)?.get(&ping).send().await.map_err(unreachable)?;
    let challenges = response.headers().get_all(reqwest::header::WWW_AUTHENTICATE);
    for value in challenges {
        let Ok(text) = value.to_str() else { continue };
        for challenge in http_auth::parser::ChallengeParser::new(text).flatten() {
            if !challenge.scheme.eq_ignore_ascii_case("bearer") {
                continue;
            }
            let realm = challenge.params.iter().find(|(key, _)| key.eq_ignore_ascii_case("realm"));
            let Some(realm) = realm.map(|(_, value)| value.to_unescaped()) else { continue };
            if let Err(reason) = may_receive_login(&realm, &origin, login) {
                return Err(FetchError::NotAllowed { url: ping, reason });
            }
        }
    }
    Ok(())
}

/// Whether a token service at `realm` may be sent `login`, configured for the
/// registry at `origin`: on the registry's own origin, or on a host the
/// Secret gives the same login to, over HTTPS (or HTTP when the registry
/// itself is plain HTTP).
fn may_receive_login(realm: &str, origin: &str, login: &RegistryLogin) -> Result<(), String> {
    if same_origin(realm, origin) {
        return Ok(());
    }
    let parsed = url::Url::parse(realm)
        .map_err(|error| format!("the registry names a token service {realm:?} that is not a URL ({error})"))?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    };
    let secure = parsed.scheme() == "https" || (parsed.scheme() == "http" && origin.starts_with("http://"));
    if secure && login.also_for.contains(&host.to_ascii_lowercase()) {
        return Ok(());
    }
    Err(format!(
        "the registry asks for the login in Secret {secret} to be sent to a token service at {realm}, another \
         origin than {origin}; wasmplug sends a login only where it is configured: if that is the registry's own \
         token service, add an auths entry for {host} with the same login to Secret {secret}",
        secret = login.secret,
    ))
}

/// Whether URL `a` is on origin `origin` (scheme://host[:port], default ports implied).
fn same_origin(a: &str, origin: &str) -> bool {
    SourceUrl::origin_of(a).is_some_and(|a| SourceUrl::origin_of(origin) == Some(a))
}

/// oci-client's error as a fetch error that says what to check.
fn registry_error(at: &str, login: Option<&RegistryLogin>, error: OciDistributionError) -> FetchError {
    let url = at.to_owned();
    let unknown = is_not_found(&error);
    let credentials = || match login {
        Some(login) => {
            format!("; check the login for this registry in Secret {} (spec.source.oci.secretRef)", login.secret)
        }
        None => "; a private repository needs spec.source.oci.secretRef".to_owned(),
    };
    let denied = |what: String| FetchError::Oci {
        url: url.clone(),
        reason: format!("{what}{}", credentials()),
        transient: false,
    };
    match error {
        OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
            denied("the registry refused the credentials".into())
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let messages: Vec<String> =
                envelope.errors.iter().map(|e| format!("{:?}: {}", e.code, e.message)).collect();
            let refused = codes.iter().any(|code| matches!(code, OciErrorCode::Unauthorized | OciErrorCode::Denied));
            match (unknown, refused) {
                (true, _) => FetchError::Oci {
                    url,
                    reason: format!(
                        "the registry has no such artifact ({}); check spec.source.oci.url and ref",
                        messages.join("; ")
                    ),
                    transient: false,
                },
                (_, true) => denied(format!("the registry refused access ({})", messages.join("; "))),
                _ => FetchError::Oci {
                    url,
                    reason: format!("the registry answered {}", messages.join("; ")),
                    transient: false,
                },
            }
        }
        OciDistributionError::ServerError { code, message, .. } => {
            let message: String = message.chars().take(200).collect();
            match code {
                401 | 403 => denied(format!("the registry answered {code}")),
                404 => FetchError::Oci {
                    url,
                    reason: "the registry has no such artifact (404); check spec.source.oci.url and ref".into(),
                    transient: false,
                },
                _ => FetchError::Oci {
                    url,
                    reason: format!("the registry answered {code}: {message}"),
                    transient: code >= 500 || code == 429,
                },
            }
        }
        OciDistributionError::RequestError(error) => unreachable(&url, &error),
        OciDistributionError::DigestError(error) => FetchError::ContentDigest { url, detail: error.to_string() },
        OciDistributionError::IoError(error) => FetchError::Unreachable { url, reason: error.to_string() },
        other => FetchError::Oci { url, reason: other.to_string(), transient: false },
    }
}

/// A registry that could not be reached; an untrusted certificate says where
/// to configure trust.
fn unreachable(url: &str, error: &dyn std::error::Error) -> FetchError {
    let mut reason = super::url::describe(error);
    if reason.contains("certificate") {
        reason.push_str(" (trust the registry's CA with spec.source.oci.certSecretRef)");
    }
    FetchError::Unreachable { url: url.to_owned(), reason }
}

/// The system's root certificates (as the platform verifier would read them),
/// read once: the client reads them from disk on every build otherwise, which
/// was a third of a fetch from a local registry.
pub fn system_roots() -> &'static [Certificate] {
    static ROOTS: std::sync::OnceLock<Vec<Certificate>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::warn!(%error, "failed to read a system root certificate; OCI registries signed by it are not trusted");
        }
        let der = |certificate: rustls::pki_types::CertificateDer<'static>| Certificate {
            encoding: CertificateEncoding::Der,
            data: certificate.to_vec(),
        };
        loaded.certs.into_iter().map(der).collect()
    })
}

/// oci-client's TLS (rustls without a bundled provider) uses the process's
/// default provider: the same ring provider as the rest of the operator.
pub fn ensure_crypto_provider() {
    // Fails only when one is installed already, which is what is wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_version_in_range_wins() {
        let tags: Vec<String> =
            ["latest", "v1.0.0", "1.2.0", "1.10.0", "2.0.0", "1.11.0-rc.1"].map(String::from).to_vec();
        assert_eq!(highest_in_range("r", ">=1.0, <2", &tags).unwrap(), "1.10.0");
        assert_eq!(highest_in_range("r", "1.0.x", &tags).unwrap(), "v1.0.0");
        let none = highest_in_range("r", ">=3", &tags).unwrap_err().to_string();
        assert!(none.contains("no tag is a version in the range") && none.contains("6 tags"), "{none}");
        assert!(
            highest_in_range("r", "not a range", &tags).unwrap_err().to_string().contains("is not a version range")
        );
    }

    #[test]
    fn a_login_goes_to_a_token_service_elsewhere_only_when_the_secret_names_its_host() {
        let login = |also_for: &[&str]| RegistryLogin {
            secret: "pull".into(),
            username: "u".into(),
            password: "p".into(),
            also_for: also_for.iter().map(|h| h.to_string()).collect(),
        };
        let registry = "https://r.example.com";
        assert!(may_receive_login("https://r.example.com/token", registry, &login(&[])).is_ok());
        let refused = may_receive_login("https://auth.example.com/token", registry, &login(&[])).unwrap_err();
        assert!(
            refused.contains("add an auths entry for auth.example.com with the same login to Secret pull"),
            "{refused}"
        );
        assert!(may_receive_login("https://auth.example.com/token", registry, &login(&["auth.example.com"])).is_ok());
        assert!(may_receive_login("https://auth.example.com:8443/t", registry, &login(&["auth.example.com"])).is_err());
        // Never over plain HTTP to another origin when the registry is HTTPS.
        assert!(may_receive_login("http://auth.example.com/token", registry, &login(&["auth.example.com"])).is_err());
        assert!(
            may_receive_login("http://127.0.0.1:9/token", "http://127.0.0.1:5000", &login(&["127.0.0.1:9"])).is_ok()
        );
    }

    fn artifact(media_types: &[&str]) -> OciImageManifest {
        let layers = media_types
            .iter()
            .map(|media_type| OciDescriptor {
                media_type: media_type.to_string(),
                size: 88,
                ..OciDescriptor::default()
            })
            .collect();
        OciImageManifest { layers, ..OciImageManifest::default() }
    }

    #[test]
    fn a_signature_layer_goes_beside_a_component_only() {
        let signed = artifact(&[WASM_LAYER, MANIFEST_LAYER, SIGNATURE_LAYER]);
        assert!(matches!(Layers::of("r", &signed), Ok(Layers::Component { signature: Some(_), .. })));
        assert_eq!(Layers::of("r", &signed).map(|l| l.all().count()).unwrap_or_default(), 3);
        let refusal =
            |types: &[&str]| Layers::of("r", &artifact(types)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refusal(&[ZIP_LAYER, SIGNATURE_LAYER]).contains("put plugin.wasm.sig in the ZIP"));
        assert!(
            refusal(&[WASM_LAYER, MANIFEST_LAYER, SIGNATURE_LAYER, SIGNATURE_LAYER])
                .contains("2 plugin.wasm.sig layers")
        );
        let mut large = artifact(&[WASM_LAYER, MANIFEST_LAYER, SIGNATURE_LAYER]);
        large.layers[2].size = 1 << 20;
        assert!(Layers::of("r", &large).err().is_some_and(|e| e.to_string().contains("a signature has at most 1024")));
    }

    #[test]
    fn a_token_service_must_share_the_registry_origin() {
        assert!(same_origin("https://r.example.com/token?x=1", "https://r.example.com"));
        assert!(same_origin("https://r.example.com:443/token", "https://r.example.com"));
        assert!(!same_origin("https://auth.example.com/token", "https://r.example.com"));
        assert!(!same_origin("http://r.example.com/token", "https://r.example.com"));
        assert!(!same_origin("https://r.example.com:8443/token", "https://r.example.com"));
    }
}
